//! This node's last view of the users it served: what a decision is computed on, so that the
//! common decision costs one store round trip (the commit) instead of a read and a commit.
//!
//! A view is only ever a hint for decisions with ads: the commit checks the decision against the
//! live state ([`super::UserState::admits`]: winners, price setters, daily load, session, and
//! that every reservation the view counted is still pending) and, when it does not hold, answers
//! that live state to decide again on; a user this node has not seen is assumed new. So a stale
//! view can cost a second round trip, never a cap or a price.
//!
//! A decision with no ad on a view is answered without the store. That can miss an ad the live
//! state would allow, when the view is stricter than the live state: a reservation here that
//! another node has since turned into a render counting for less time, or a session continued
//! on another node. Views are therefore used for at most [`MAX_AGE_MS`] after the live read
//! they rest on, and dropped when this node accepts one of the user's events.
//!
//! An erasure must leave no view of the user, also when a decision read the view before the
//! erasure and commits after it: every erasure moves an epoch ([`RecentUsers::erase`],
//! [`RecentUsers::forget_where`]), and a decision's view is remembered again only if no erasure
//! came between its read and its commit (erasures are rare; the other users' views of such a
//! decision are simply read again).
//!
//! Why hand-written rather than `moka` or `lru`: a view's age is measured on the injected
//! clock (tests step it; a cache with its own timer would not follow), the bound is on memory,
//! not on recency (a full shard simply starts over, with no bookkeeping per read on the decision
//! path), and losing a view only costs one round trip.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::{Reservation, UserState};
use crate::clock::Millis;
use crate::store::SessionValue;

/// Views resting on a live read older than this are not used: the bound on how long an answer
/// without ads can be stricter than the live state.
pub const MAX_AGE_MS: Millis = 30_000;
const SHARDS: usize = 64;
/// Users remembered per shard (65,536 in all, a few tens of MB); a full shard starts over:
/// cheap, and a lost view only costs a round trip.
const PER_SHARD: usize = 1_024;

/// What a decision is computed on.
#[derive(Debug, Clone, Default)]
pub struct Assumed {
    /// Shared with the view: most decisions only read it, and a copy per decision was a
    /// tenth of the decision's CPU for users with many reservations.
    pub state: Arc<UserState>,
    /// The stored value of the requested session as last seen (`None`: assumed new).
    pub session: Option<SessionValue>,
    /// When the live state this view rests on was read (`None`: a user assumed new).
    pub read_at_ms: Option<Millis>,
    /// The erasure epoch when the view was read: what it becomes is remembered only within it.
    erasures: u64,
}

#[derive(Debug)]
struct Seen {
    state: Arc<UserState>,
    /// (session id, stored value) of the user's last session seen.
    session: Option<(String, SessionValue)>,
    /// When the live state this view rests on was read.
    read_at_ms: Millis,
}

pub struct RecentUsers {
    shards: Vec<Mutex<HashMap<String, Seen>>>,
    hasher: RandomState,
    /// Moved by every erasure before it drops views; read under a shard's lock before a view
    /// is remembered.
    erasures: AtomicU64,
}

impl Default for RecentUsers {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            erasures: AtomicU64::new(0),
        }
    }
}

impl RecentUsers {
    fn shard(&self, user: &str) -> &Mutex<HashMap<String, Seen>> {
        &self.shards[self.hasher.hash_one(user) as usize % SHARDS]
    }

    /// The view to decide on: the last one seen if young enough, else a new user.
    pub fn assume(&self, user: &str, session: Option<&str>, now_ms: Millis) -> Assumed {
        let shard = self.shard(user).lock();
        let erasures = self.erasures.load(Ordering::SeqCst);
        let Some(seen) = shard
            .get(user)
            .filter(|seen| now_ms - seen.read_at_ms < MAX_AGE_MS && seen.read_at_ms <= now_ms)
        else {
            return Assumed {
                erasures,
                ..Assumed::default()
            };
        };
        Assumed {
            state: Arc::clone(&seen.state),
            session: match (&seen.session, session) {
                (Some((id, value)), Some(wanted)) if id == wanted => Some(value.clone()),
                _ => None,
            },
            read_at_ms: Some(seen.read_at_ms),
            erasures,
        }
    }

    /// Remembers the live state a store answered, read at `read_at_ms` by a decision that
    /// began on `before`, and returns it as the view to decide on (`stored`: the value of the
    /// requested session `session`, if any).
    pub fn saw(
        &self,
        before: &Assumed,
        user: &str,
        state: UserState,
        session: Option<&str>,
        stored: Option<SessionValue>,
        read_at_ms: Millis,
    ) -> Assumed {
        let state = Arc::new(state);
        self.remember(
            user,
            before.erasures,
            Seen {
                state: Arc::clone(&state),
                session: session
                    .zip(stored.clone())
                    .map(|(id, v)| (id.to_owned(), v)),
                read_at_ms,
            },
        );
        Assumed {
            state,
            session: stored,
            read_at_ms: Some(read_at_ms),
            erasures: before.erasures,
        }
    }

    /// Remembers a committed decision: the view it was decided on plus its reservations and
    /// the session's new value, still resting on that view's read (a user assumed new: on
    /// this commit, which the live state admitted).
    pub fn committed(
        &self,
        user: &str,
        decided_on: Assumed,
        reservations: Vec<Reservation>,
        session: Option<(&str, SessionValue)>,
        now_ms: Millis,
    ) {
        let read_at_ms = decided_on.read_at_ms.unwrap_or(now_ms);
        let mut state = decided_on.state;
        let mut shard = self.shard(user).lock();
        // Dropping the remembered copy first usually leaves the view unshared, so it is updated
        // in place: a deep copy of the user's maps per decision was most of this call's cost.
        shard.remove(user);
        if self.erasures.load(Ordering::SeqCst) != decided_on.erasures {
            return;
        }
        let view = Arc::make_mut(&mut state);
        view.reservations.retain(|r| r.expires_ms > now_ms);
        view.reservations.extend(reservations);
        Self::insert(
            &mut shard,
            user,
            Seen {
                state,
                session: session.map(|(id, value)| (id.to_owned(), value)),
                read_at_ms,
            },
        );
    }

    fn remember(&self, user: &str, erasures: u64, seen: Seen) {
        let mut shard = self.shard(user).lock();
        if self.erasures.load(Ordering::SeqCst) == erasures {
            Self::insert(&mut shard, user, seen);
        }
    }

    fn insert(shard: &mut HashMap<String, Seen>, user: &str, seen: Seen) {
        if shard.len() >= PER_SHARD && !shard.contains_key(user) {
            shard.clear();
        }
        shard.insert(user.to_owned(), seen);
    }

    /// Drops the view of a user whose state an event just moved.
    pub fn forget(&self, user: &str) {
        self.shard(user).lock().remove(user);
    }

    /// Drops the view of an erased user; a decision in flight keeps none it read before. The
    /// epoch moves under the shard's lock, with the removal: a view read before it is one whose
    /// commit sees the new epoch, and one read after it finds nothing.
    pub fn erase(&self, user: &str) {
        let mut shard = self.shard(user).lock();
        self.erasures.fetch_add(1, Ordering::SeqCst);
        shard.remove(user);
    }

    /// Drops the views too old to be used (called every second): a view holds a user's state
    /// and session id, and no rule keeps them longer than their use.
    pub fn expire(&self, now_ms: Millis) {
        for shard in &self.shards {
            shard
                .lock()
                .retain(|_, seen| now_ms - seen.read_at_ms < MAX_AGE_MS);
        }
    }

    /// Whether a view of `user` is held, however old (the right of access lists it).
    pub fn holds(&self, user: &str) -> bool {
        self.shard(user).lock().contains_key(user)
    }

    /// Drops the views of every user `erased` selects (erasures announced by other nodes); a
    /// decision in flight keeps none it read before.
    pub fn forget_where(&self, erased: impl Fn(&str) -> bool) {
        for shard in &self.shards {
            let mut shard = shard.lock();
            // Under each shard's lock, as in `erase`.
            self.erasures.fetch_add(1, Ordering::SeqCst);
            shard.retain(|user, _| !erased(user));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capping::SessionState;

    #[test]
    fn views_are_young_per_session_and_forgettable() {
        let recent = RecentUsers::default();
        let mut state = UserState::default();
        state.daily_renders.push(1);
        let stored = SessionValue::of(
            SessionState {
                served: 1,
                carry: 2,
            },
            3,
        );
        let began = recent.assume("u", Some("s1"), 1_000);
        let view = recent.saw(
            &began,
            "u",
            state.clone(),
            Some("s1"),
            Some(stored.clone()),
            1_000,
        );
        assert_eq!(view.read_at_ms, Some(1_000));
        let seen = recent.assume("u", Some("s1"), 1_000 + MAX_AGE_MS - 1);
        assert_eq!(*seen.state, state);
        assert_eq!(seen.session, Some(stored));
        assert_eq!(recent.assume("u", Some("s2"), 1_000).session, None);
        assert_eq!(recent.assume("u", None, 1_000).session, None);
        // Too old, or from the future of a clock set back: assumed new.
        assert_eq!(
            *recent.assume("u", None, 1_000 + MAX_AGE_MS).state,
            UserState::default()
        );
        assert_eq!(*recent.assume("u", None, 999).state, UserState::default());
        recent.forget("u");
        assert_eq!(*recent.assume("u", None, 1_000).state, UserState::default());
        // Kept no longer than it may be used.
        recent.saw(&began, "u", state.clone(), None, None, 1_000);
        recent.expire(1_000 + MAX_AGE_MS - 1);
        assert!(recent.holds("u"));
        recent.expire(1_000 + MAX_AGE_MS);
        assert!(!recent.holds("u"));
    }

    #[test]
    fn a_commit_adds_its_reservations_and_drops_expired_ones() {
        let recent = RecentUsers::default();
        let reservation = |id: &str, expires_ms| Reservation {
            decision_id: id.into(),
            campaign: "cmp_1".into(),
            advertiser: "adv_1".into(),
            expires_ms,
        };
        let view = Assumed {
            state: Arc::new(UserState {
                reservations: vec![reservation("old", 10)],
                ..UserState::default()
            }),
            session: None,
            read_at_ms: Some(50),
            erasures: 0,
        };
        recent.committed("u", view, vec![reservation("new", 500)], None, 100);
        let seen = recent.assume("u", None, 100);
        assert_eq!(seen.state.reservations, vec![reservation("new", 500)]);
        // Still resting on the read at 50: it ages from there, not from the commit.
        assert_eq!(seen.read_at_ms, Some(50));
        assert!(recent
            .assume("u", None, 50 + MAX_AGE_MS)
            .read_at_ms
            .is_none());
    }

    #[test]
    fn a_decision_in_flight_across_an_erasure_keeps_no_view() {
        let recent = RecentUsers::default();
        let mut state = UserState::default();
        state.daily_renders.push(1);
        // Read before the user was erased, on this node or announced by another.
        for erase in [
            &(|r: &RecentUsers| r.erase("u")) as &dyn Fn(&RecentUsers),
            &|r: &RecentUsers| r.forget_where(|user| user == "u"),
        ] {
            let began = recent.assume("u", None, 1_000);
            recent.saw(&began, "u", state.clone(), None, None, 1_000);
            let in_flight = recent.assume("u", None, 1_000);
            assert_eq!(*in_flight.state, state);
            erase(&recent);
            recent.committed("u", in_flight, Vec::new(), None, 1_001);
            assert!(!recent.holds("u"), "committed after the erasure");
            let read = recent.assume("u", None, 1_000);
            erase(&recent);
            recent.saw(&read, "u", state.clone(), None, None, 1_002);
            assert!(!recent.holds("u"), "a live read from before the erasure");
        }
        // Decisions begun after it are remembered as before.
        let after = recent.assume("u", None, 2_000);
        recent.committed("u", after, Vec::new(), None, 2_000);
        assert!(recent.holds("u"));
    }
}
