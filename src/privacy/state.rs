//! The signed state a user without personalisation carries between requests: their render
//! times, hides and session, which the server would otherwise keep in its user hash.
//!
//! The codec is hand-written because it is small and must stay compact and stable: a generic
//! serializer (`bincode`, `postcard`) would tie the wire format to a crate's versioning, and the
//! bounds below are checked while reading, before anything is allocated.
//!
//! Wire format (then base64url, no padding), every number an unsigned LEB128 varint and every
//! time in whole seconds relative to `issued` (seconds since [`EPOCH_S`]):
//!
//! ```text
//! 0x01 issued
//! daily:       n, n × age                      (renders of every ad: the daily load)
//! campaigns:   n, n × (8-byte id, k, k × age)  (renders per campaign)
//! advertisers: n, n × (8-byte id, k, k × age)  (renders per advertiser, advertiser caps)
//! hides:       n, n × (8-byte id, remaining)
//! session:     0 | 1, 8-byte session tag, served, carry, remaining
//! tag:         16 bytes of HMAC-SHA256 over ("state\n", user, "\n", everything above)
//! ```
//!
//! Ids are the 16 hex digits of `cmp_…` / `adv_…` as 8 bytes. The format is hand-written
//! because it is a versioned wire format that must stay readable across builds and a few
//! hundred bytes long; a serde format would tie it to struct layout and cost a dependency for
//! sixty lines. It is bounded ([`MAX_ENTRIES`] campaigns and advertisers each, [`MAX_HIDES`]
//! hides, [`MAX_STAMPS`] render times in all: at most about 7 KB encoded) and expires
//! [`STATE_TTL_MS`] after it was issued (each answer issues a new one). Within the bounds it
//! holds exactly what the caps need; past them the least recently shown campaigns lose their
//! oldest render times first, which can only let them be shown again sooner.

use sha2::{Digest, Sha256};

use crate::capping::{
    render_stamp, window_now, Retention, SessionState, UserState, DAY_MS, SESSION_TTL_MS,
};
use crate::clock::Millis;
use crate::domain::ids::id_bytes;
use crate::tokens::TokenKeys;

/// The state's times count whole seconds from 2000-01-01T00:00:00Z.
const EPOCH_S: i64 = 946_684_800;

const VERSION: u8 = 1;
const TAG_BYTES: usize = 16;
/// A state lives as long as its longest rule: a cap's window is at most 365 days.
pub const STATE_TTL_MS: Millis = 366 * DAY_MS;
/// Campaigns (and, apart, advertisers) with render times kept: the most recently shown.
pub const MAX_ENTRIES: usize = 128;
/// Hides kept: the latest.
pub const MAX_HIDES: usize = 64;
/// Render times kept in all lists together, the daily load's included (at most
/// `ad_load.max_per_user_per_day`, itself at most [`MAX_DAILY`]).
pub const MAX_STAMPS: usize = 512;
/// The daily load a state can count (`ad_load.max_per_user_per_day` is validated against it).
pub const MAX_DAILY: usize = 100;
/// A state longer than this is not read (above anything [`seal`] writes).
pub const MAX_ENCODED: usize = 12_288;

/// What a state holds: the user's caps, load and hides (no reservations: a state is written
/// when slots are served, and counts every slot served as rendered), and their session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Carried {
    pub user: UserState,
    pub session: Option<CarriedSession>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CarriedSession {
    /// Which session (a hash of its id: the state never holds the id itself).
    pub tag: [u8; 8],
    pub state: SessionState,
    pub forget_after_ms: Millis,
}

impl CarriedSession {
    pub fn tag_of(session: &str) -> [u8; 8] {
        let digest = Sha256::digest(session.as_bytes());
        digest[..8].try_into().expect("8 of 32 bytes")
    }

    pub fn new(session: &str, state: SessionState, now_ms: Millis) -> Self {
        Self {
            tag: Self::tag_of(session),
            state,
            forget_after_ms: now_ms + SESSION_TTL_MS,
        }
    }
}

impl Carried {
    /// The session state of `session` at `now_ms` (new when the state holds another session
    /// or one forgotten).
    pub fn session_state(&self, session: Option<&str>, now_ms: Millis) -> SessionState {
        match (session, &self.session) {
            (Some(id), Some(carried))
                if carried.tag == CarriedSession::tag_of(id)
                    && now_ms < carried.forget_after_ms =>
            {
                carried.state
            }
            _ => SessionState::default(),
        }
    }

    /// Drops what no rule needs any more: render times outside their campaign's (or
    /// advertiser's) retention, campaigns no longer known (`keep` answers none), daily renders
    /// older than a day, past hides and sessions; then applies the size bounds.
    pub fn prune(
        &mut self,
        now_ms: Millis,
        keep_campaign: impl Fn(&str) -> Option<Retention>,
        keep_advertiser: impl Fn(&str) -> Retention,
    ) {
        let now_s = window_now(now_ms);
        let keep = |list: &mut Vec<i64>, retention: Retention| {
            list.retain(|t| *t > now_s - retention.window_ms / 1000);
            list.sort_unstable();
            let excess = list.len().saturating_sub(retention.count as usize);
            list.drain(..excess);
        };
        let user = &mut self.user;
        user.reservations.clear();
        keep(
            &mut user.daily_renders,
            Retention {
                count: MAX_DAILY as u32,
                window_ms: DAY_MS,
            },
        );
        user.campaign_renders.retain(|id, list| {
            keep(list, keep_campaign(id).unwrap_or_default());
            !list.is_empty()
        });
        user.advertiser_renders.retain(|id, list| {
            keep(list, keep_advertiser(id));
            !list.is_empty()
        });
        user.hidden_until.retain(|_, until| *until > now_ms);
        user.suppressed_until.clear();
        if self
            .session
            .is_some_and(|session| session.forget_after_ms <= now_ms)
        {
            self.session = None;
        }
        bound_lists(&mut user.campaign_renders, MAX_ENTRIES);
        bound_lists(&mut user.advertiser_renders, MAX_ENTRIES);
        if user.hidden_until.len() > MAX_HIDES {
            let mut hides: Vec<_> = user.hidden_until.drain().collect();
            hides.sort_unstable_by_key(|(_, until)| std::cmp::Reverse(*until));
            hides.truncate(MAX_HIDES);
            user.hidden_until.extend(hides);
        }
        // The render-time budget goes to the most recently shown lists first, campaigns and
        // advertisers alike; a list that does not fit whole keeps its newest times.
        let mut budget = MAX_STAMPS.saturating_sub(user.daily_renders.len());
        let mut lists: Vec<(bool, String, Vec<i64>)> = user
            .campaign_renders
            .drain()
            .map(|(id, list)| (true, id, list))
            .chain(
                user.advertiser_renders
                    .drain()
                    .map(|(id, list)| (false, id, list)),
            )
            .collect();
        lists.sort_unstable_by(|a, b| b.2.last().cmp(&a.2.last()).then_with(|| a.1.cmp(&b.1)));
        for (campaign, id, mut list) in lists {
            let excess = list.len().saturating_sub(budget);
            list.drain(..excess);
            budget -= list.len();
            if !list.is_empty() {
                let into = if campaign {
                    &mut user.campaign_renders
                } else {
                    &mut user.advertiser_renders
                };
                into.insert(id, list);
            }
        }
    }
}

/// Keeps the `max` lists with the most recent renders.
fn bound_lists(lists: &mut std::collections::HashMap<String, Vec<i64>>, max: usize) {
    if lists.len() <= max {
        return;
    }
    let mut all: Vec<_> = lists.drain().collect();
    all.sort_unstable_by_key(|(_, l)| std::cmp::Reverse(l.last().copied()));
    all.truncate(max);
    lists.extend(all);
}

/// The signed, encoded state for `user` (call [`Carried::prune`] first).
pub fn seal(keys: &TokenKeys, user: &str, carried: &Carried, now_ms: Millis) -> String {
    // Rounded up, as render times are: every render time is at or before it.
    let issued = render_stamp(now_ms) - EPOCH_S;
    let mut out = vec![VERSION];
    put(&mut out, issued as u64);
    let age = |t: i64| (issued - (t - EPOCH_S)).max(0) as u64;
    let remaining = |until_ms: Millis| ((until_ms - now_ms).max(0) as u64).div_ceil(1000);
    let u = &carried.user;
    put(&mut out, u.daily_renders.len() as u64);
    for t in &u.daily_renders {
        put(&mut out, age(*t));
    }
    for lists in [&u.campaign_renders, &u.advertiser_renders] {
        let entries: Vec<_> = lists
            .iter()
            .filter_map(|(id, list)| Some((id_bytes(id)?, list)))
            .collect();
        put(&mut out, entries.len() as u64);
        for (id, list) in entries {
            out.extend_from_slice(&id);
            put(&mut out, list.len() as u64);
            for t in list {
                put(&mut out, age(*t));
            }
        }
    }
    let hides: Vec<_> = u
        .hidden_until
        .iter()
        .filter_map(|(id, until)| Some((id_bytes(id)?, *until)))
        .collect();
    put(&mut out, hides.len() as u64);
    for (id, until) in hides {
        out.extend_from_slice(&id);
        put(&mut out, remaining(until));
    }
    match &carried.session {
        None => out.push(0),
        Some(session) => {
            out.push(1);
            out.extend_from_slice(&session.tag);
            put(&mut out, session.state.served as u64);
            put(&mut out, session.state.carry as u64);
            put(&mut out, remaining(session.forget_after_ms));
        }
    }
    let tag = keys.state_tag(user.as_bytes(), &out);
    out.extend_from_slice(&tag[..TAG_BYTES]);
    base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, out)
}

/// The state `encoded` carries for `user` at `now_ms`; `None` (treat as absent) when it is
/// malformed, altered, expired, issued in the future or another user's.
pub fn open(keys: &TokenKeys, user: &str, encoded: &str, now_ms: Millis) -> Option<Carried> {
    if encoded.len() > MAX_ENCODED {
        return None;
    }
    let raw =
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, encoded).ok()?;
    let (body, tag) = raw.split_at(raw.len().checked_sub(TAG_BYTES)?);
    if !keys.verify_state_tag(user.as_bytes(), body, tag) {
        return None;
    }
    let mut r = Reader { bytes: body };
    (r.byte()? == VERSION).then_some(())?;
    let issued = r.num()? as i64;
    let issued_ms = (issued + EPOCH_S) * 1000;
    if issued_ms > now_ms + 60_000 || now_ms - issued_ms >= STATE_TTL_MS {
        return None;
    }
    let read_stamps = |r: &mut Reader| -> Option<Vec<i64>> {
        let n = r.count()?;
        let mut list = Vec::with_capacity(n);
        for _ in 0..n {
            list.push(issued + EPOCH_S - r.num()? as i64);
        }
        list.sort_unstable();
        Some(list)
    };
    let mut user_state = UserState {
        daily_renders: read_stamps(&mut r)?,
        ..UserState::default()
    };
    for (prefix, lists) in [
        ("cmp_", &mut user_state.campaign_renders),
        ("adv_", &mut user_state.advertiser_renders),
    ] {
        for _ in 0..r.count()? {
            let id = format!("{prefix}{}", hex::encode(r.take(8)?));
            lists.insert(id, read_stamps(&mut r)?);
        }
    }
    for _ in 0..r.count()? {
        let id = format!("adv_{}", hex::encode(r.take(8)?));
        let until = issued_ms + r.num()? as i64 * 1000;
        user_state.hidden_until.insert(id, until);
    }
    let session = match r.byte()? {
        0 => None,
        1 => Some(CarriedSession {
            tag: r.take(8)?.try_into().ok()?,
            state: SessionState {
                served: u32::try_from(r.num()?).ok()?,
                carry: u32::try_from(r.num()?).ok()?,
            },
            forget_after_ms: issued_ms + r.num()? as i64 * 1000,
        }),
        _ => return None,
    };
    r.bytes.is_empty().then_some(Carried {
        user: user_state,
        session,
    })
}

fn put(out: &mut Vec<u8>, mut n: u64) {
    loop {
        let low = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(low);
            return;
        }
        out.push(low | 0x80);
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (first, rest) = self.bytes.split_first()?;
        self.bytes = rest;
        Some(*first)
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        (self.bytes.len() >= n).then(|| {
            let (head, rest) = self.bytes.split_at(n);
            self.bytes = rest;
            head
        })
    }

    fn num(&mut self) -> Option<u64> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            n |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(n);
            }
        }
        None
    }

    /// A list length, bounded so that no length can make a reader allocate much.
    fn count(&mut self) -> Option<usize> {
        usize::try_from(self.num()?)
            .ok()
            .filter(|n| *n <= MAX_STAMPS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capping::HIDE_MS;

    const NOW: Millis = 1_795_000_000_000;

    fn keys() -> TokenKeys {
        TokenKeys::new(b"k1-0123456789abcdef0123456789abcdef", &[])
    }

    fn ten_campaigns() -> Carried {
        let mut carried = Carried::default();
        let now_s = window_now(NOW);
        for i in 0..10 {
            let t = now_s - 600 * i;
            carried
                .user
                .campaign_renders
                .insert(format!("cmp_{:016x}", 0xabc0 + i), vec![t]);
            carried.user.daily_renders.push(t);
        }
        carried
            .user
            .hidden_until
            .insert("adv_00000000000000ff".into(), NOW + HIDE_MS);
        carried.session = Some(CarriedSession::new(
            "session-1",
            SessionState {
                served: 2,
                carry: 3,
            },
            NOW,
        ));
        carried
    }

    fn pruned(mut carried: Carried, now_ms: Millis) -> Carried {
        let keep = Retention {
            count: 5,
            window_ms: 30 * DAY_MS,
        };
        carried.prune(now_ms, |_| Some(keep), |_| keep);
        carried
    }

    #[test]
    fn a_state_opens_to_what_was_sealed_and_stays_compact() {
        let carried = pruned(ten_campaigns(), NOW);
        let sealed = seal(&keys(), "user-1", &carried, NOW);
        eprintln!(
            "state of ten campaigns, a hide and a session: {} bytes",
            sealed.len()
        );
        assert!(
            sealed.len() < 300,
            "ten campaigns, a hide and a session: {} bytes",
            sealed.len()
        );
        let mut opened = open(&keys(), "user-1", &sealed, NOW + 5_000).expect("opens");
        // Hides and sessions travel in whole seconds, rounded up.
        let hide = opened.user.hidden_until["adv_00000000000000ff"];
        assert!((NOW + HIDE_MS..NOW + HIDE_MS + 1000).contains(&hide));
        opened.user.hidden_until = carried.user.hidden_until.clone();
        let session = opened.session.as_mut().unwrap();
        assert!(session.forget_after_ms - (NOW + SESSION_TTL_MS) < 1000);
        session.forget_after_ms = NOW + SESSION_TTL_MS;
        let mut expected = carried.clone();
        expected.user.daily_renders.sort_unstable();
        assert_eq!(opened, expected);
        assert_eq!(
            opened.session_state(Some("session-1"), NOW),
            SessionState {
                served: 2,
                carry: 3
            }
        );
        assert_eq!(
            opened.session_state(Some("session-2"), NOW),
            SessionState::default()
        );
    }

    #[test]
    fn altered_expired_or_another_users_states_are_absent() {
        let carried = pruned(ten_campaigns(), NOW);
        let sealed = seal(&keys(), "user-1", &carried, NOW);
        assert!(
            open(&keys(), "user-2", &sealed, NOW).is_none(),
            "another user's"
        );
        assert!(open(&keys(), "user-1", &sealed, NOW + STATE_TTL_MS).is_none());
        assert!(
            open(&keys(), "user-1", &sealed, NOW - 120_000).is_none(),
            "future"
        );
        let other = TokenKeys::new(b"k2-0123456789abcdef0123456789abcdef", &[]);
        assert!(
            open(&other, "user-1", &sealed, NOW).is_none(),
            "another key"
        );
        let rotated = TokenKeys::new(
            b"k2-0123456789abcdef0123456789abcdef",
            &[b"k1-0123456789abcdef0123456789abcdef"],
        );
        assert!(open(&rotated, "user-1", &sealed, NOW).is_some(), "old key");
        let raw = base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            sealed.as_str(),
        )
        .unwrap();
        for i in 0..raw.len() {
            let mut altered = raw.clone();
            altered[i] ^= 0x01;
            let text =
                base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, altered);
            assert!(open(&keys(), "user-1", &text, NOW).is_none(), "byte {i}");
        }
        for garbage in ["", "AAAA", "!!!", &"A".repeat(MAX_ENCODED + 1)] {
            assert!(open(&keys(), "user-1", garbage, NOW).is_none());
        }
    }

    #[test]
    fn pruning_keeps_what_rules_need_and_bounds_the_rest() {
        let mut carried = Carried::default();
        let now_s = window_now(NOW);
        for i in 0..200 {
            carried.user.campaign_renders.insert(
                format!("cmp_{i:016x}"),
                (0..8).map(|k| now_s - i - k).collect(),
            );
        }
        carried.user.daily_renders = vec![now_s - 2 * DAY_MS / 1000, now_s - 10];
        carried
            .user
            .hidden_until
            .insert("adv_0000000000000001".into(), NOW - 1);
        let keep = Retention {
            count: 6,
            window_ms: 3_600_000,
        };
        carried.prune(
            NOW,
            |id| (id != "cmp_0000000000000000").then_some(keep),
            |_| keep,
        );
        let u = &carried.user;
        assert_eq!(u.daily_renders, vec![now_s - 10], "a day of load");
        assert!(u.hidden_until.is_empty(), "past hides go");
        assert!(
            !u.campaign_renders.contains_key("cmp_0000000000000000"),
            "unknown"
        );
        let kept: usize = u.campaign_renders.values().map(Vec::len).sum();
        assert_eq!(
            kept + u.daily_renders.len(),
            MAX_STAMPS,
            "the budget is used up"
        );
        assert_eq!(u.campaign_renders.len(), (MAX_STAMPS - 1).div_ceil(6));
        assert!(
            u.campaign_renders.values().filter(|l| l.len() < 6).count() <= 1,
            "only the last list to fit is trimmed, keeping its newest"
        );
        assert!(
            u.campaign_renders.contains_key("cmp_0000000000000001"),
            "the most recent stay"
        );
        let sealed = seal(&keys(), "u", &carried, NOW);
        assert!(open(&keys(), "u", &sealed, NOW).is_some());
    }
}
