//! Per-user state that decisions read and events move: rolling-window render timestamps per
//! campaign and per advertiser, the rolling 24 h ad load, pending reservations and hidden
//! advertisers, plus the per-session placement state. This module holds the pure rules over
//! typed values (including the check a decision must pass against the live state to commit);
//! how the stores encode that state is defined once, in `store::codec` (tests and benches use
//! it to build stored state), and the atomic updates live in the stores.
//!
//! Windows are checked in whole seconds: a render stored as `ceil(t)` counts while
//! `ceil(t) > floor(now) - per`, which holds whenever the exact `t > now - per` does, so
//! rounding can only keep a render in its window a little longer, never release it early.

pub mod recent;

use std::collections::HashMap;

use crate::clock::Millis;
use crate::domain::campaign::{Campaign, FrequencyCap};

pub const DAY_MS: Millis = 86_400_000;
/// `hide` (and `report`) stop an advertiser for this user for 90 days.
pub const HIDE_MS: Millis = 90 * DAY_MS;
/// Sessions are forgotten after this long without a decision.
pub const SESSION_TTL_MS: Millis = 6 * 3_600_000;
/// A conversation suppresses its campaign for the user this long (their record's lifetime).
pub const SUPPRESS_MS: Millis = 365 * DAY_MS;
/// The expiry given to a user's hash found without one (a script that failed before its
/// expiry, or a build before expiries were tracked): the longest rule, a conversation's
/// suppression, and a day.
pub const UNEXPIRING_USER_TTL_MS: Millis = SUPPRESS_MS + DAY_MS;

/// A render's stored time: whole seconds, rounded up.
pub fn render_stamp(now_ms: Millis) -> i64 {
    (now_ms + 999).div_euclid(1000)
}

/// `now` for window checks: whole seconds, rounded down.
pub fn window_now(now_ms: Millis) -> i64 {
    now_ms.div_euclid(1000)
}

/// How long a user's stored state must live: past every window it holds, every reservation
/// and (after a hide) the hide itself.
pub fn user_ttl_ms(longest_window_ms: Millis, hide: bool) -> Millis {
    longest_window_ms
        .max(DAY_MS)
        .max(if hide { HIDE_MS } else { 0 })
        + DAY_MS
}

/// How long a user's stored state must live after a decision that reserved until `hold_ms`
/// from now: its reservations and its session. Render times, which caps keep for their
/// windows, extend it when a render is recorded (`user_ttl_ms`); a slot served and never
/// rendered keeps nothing longer.
pub fn decision_ttl_ms(hold_ms: Millis) -> Millis {
    hold_ms.max(SESSION_TTL_MS)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub decision_id: String,
    pub campaign: String,
    pub advertiser: String,
    pub expires_ms: Millis,
}

/// What the store knows about one user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserState {
    /// Render times in whole seconds (see the module docs), by campaign id.
    pub campaign_renders: HashMap<String, Vec<i64>>,
    pub advertiser_renders: HashMap<String, Vec<i64>>,
    pub daily_renders: Vec<i64>,
    pub reservations: Vec<Reservation>,
    pub hidden_until: HashMap<String, Millis>,
    /// Campaigns suppressed by a conversation, until (ms).
    pub suppressed_until: HashMap<String, Millis>,
}

impl UserState {
    fn live_reservations(&self, now: Millis) -> impl Iterator<Item = &Reservation> {
        self.reservations.iter().filter(move |r| r.expires_ms > now)
    }

    pub fn is_hidden(&self, advertiser: &str, now: Millis) -> bool {
        self.hidden_until
            .get(advertiser)
            .is_some_and(|until| *until > now)
    }

    /// The user started a conversation from this campaign while it suppressed after one (it
    /// stays suppressed for them even if the campaign stops asking for it later).
    pub fn is_suppressed(&self, campaign: &str, now: Millis) -> bool {
        self.suppressed_until
            .get(campaign)
            .is_some_and(|until| *until > now)
    }

    /// True when one more slot of `campaign` keeps every cap, counting pending reservations.
    pub fn caps_allow(&self, campaign: &Campaign, now: Millis) -> bool {
        self.within(
            campaign.id.as_str(),
            campaign.advertiser_id.as_str(),
            &campaign.frequency_caps,
            campaign.advertiser_caps,
            now,
        )
    }

    fn within(
        &self,
        campaign: &str,
        advertiser: &str,
        caps: &[FrequencyCap],
        advertiser_caps: bool,
        now: Millis,
    ) -> bool {
        let reserved = self
            .live_reservations(now)
            .filter(|r| r.campaign == campaign)
            .count();
        if !within_caps(
            caps,
            renders_of(&self.campaign_renders, campaign),
            reserved,
            now,
        ) {
            return false;
        }
        if advertiser_caps {
            let reserved = self
                .live_reservations(now)
                .filter(|r| r.advertiser == advertiser)
                .count();
            return within_caps(
                caps,
                renders_of(&self.advertiser_renders, advertiser),
                reserved,
                now,
            );
        }
        true
    }

    /// How many more ads this user may get in the rolling 24 h, counting reservations.
    pub fn daily_remaining(&self, max_per_day: u32, now: Millis) -> u32 {
        let used = count_since(&self.daily_renders, window_now(now) - DAY_MS / 1000)
            + self.live_reservations(now).count();
        max_per_day.saturating_sub(used as u32)
    }

    /// Whether a decision taken on some earlier or assumed copy of this state may commit on
    /// this (live) one: every campaign its outcome rests on is still eligible for the user and
    /// its slots still fit the daily load. `reserve.lua` applies the same rule in Redis.
    pub fn admits(&self, proof: &DecisionProof, now: Millis) -> bool {
        proof.checks.iter().all(|check| {
            !self.is_hidden(&check.advertiser, now)
                && !self.is_suppressed(&check.campaign, now)
                && self.within(
                    &check.campaign,
                    &check.advertiser,
                    &check.caps,
                    check.advertiser_caps,
                    now,
                )
        }) && self.daily_remaining(proof.daily_max, now) >= proof.slots
            && proof.held.iter().all(|id| {
                self.live_reservations(now)
                    .any(|r| r.decision_id == id.as_str())
            })
    }

    /// Counts one render (stored time `stamp`, see [`render_stamp`]) of `campaign` for its
    /// caps, its advertiser's and the daily load: what a state kept outside the store (the
    /// carried state, a forecast's replay) does where the stores run `events.lua`.
    pub fn count_render(&mut self, campaign: &str, advertiser: &str, stamp: i64) {
        self.campaign_renders
            .entry(campaign.to_owned())
            .or_default()
            .push(stamp);
        self.advertiser_renders
            .entry(advertiser.to_owned())
            .or_default()
            .push(stamp);
        self.daily_renders.push(stamp);
    }

    /// Decision ids of the reservations still pending at `now`.
    pub fn held(&self, now: Millis) -> Vec<String> {
        self.live_reservations(now)
            .map(|r| r.decision_id.clone())
            .collect()
    }
}

/// What must still hold on the user's live state for a decision to commit. The decision was
/// computed on a copy that may be stale (this node's last view of the user) or assumed (a user
/// this node has not seen). Everything the live state can have beyond the copy (renders, hides,
/// other reservations) only excludes campaigns, which matters exactly when it excludes a winner
/// or a price setter, or shrinks the daily load below the slots; the copy can have beyond the
/// live state only reservations that are gone. Checking both sides, the decision commits only
/// if it is the one the live state gives (up to the random draws among equals).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionProof {
    /// The winners and the runner-ups that set their prices: if one of these were no longer
    /// eligible, the live state would pick or price differently.
    pub checks: Vec<CapCheck>,
    /// Slots the decision reserves.
    pub slots: u32,
    pub daily_max: u32,
    /// The reservations the decision counted (decision ids). A view can only ever be stricter
    /// than the live state through one of these: another node may have rendered it meanwhile,
    /// and a render can count for less time than its reservation did. If one is gone, the live
    /// state might pick or price differently, so the decision does not commit.
    pub held: Vec<String>,
}

/// One campaign's eligibility rule as it depends on the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapCheck {
    pub campaign: String,
    pub advertiser: String,
    pub caps: Vec<FrequencyCap>,
    pub advertiser_caps: bool,
}

impl CapCheck {
    pub fn of(campaign: &Campaign) -> Self {
        Self {
            campaign: campaign.id.to_string(),
            advertiser: campaign.advertiser_id.to_string(),
            caps: campaign.frequency_caps.clone(),
            advertiser_caps: campaign.advertiser_caps,
        }
    }
}

fn renders_of<'a>(renders: &'a HashMap<String, Vec<i64>>, id: &str) -> &'a [i64] {
    renders.get(id).map(Vec::as_slice).unwrap_or(&[])
}

/// True when `reserved` more slots plus one keep every cap over `renders` at `now`.
pub fn within_caps(caps: &[FrequencyCap], renders: &[i64], reserved: usize, now: Millis) -> bool {
    caps.iter().all(|cap| {
        let window_start = window_now(now) - cap.per_seconds as i64;
        count_since(renders, window_start) + reserved < cap.max as usize
    })
}

/// Renders (whole seconds) strictly after `start`: the window `(now - per, now]`.
pub fn count_since(times: &[i64], start: i64) -> usize {
    times.iter().filter(|t| **t > start).count()
}

/// What a store must keep of a render list so every cap stays exact: the newest `count`
/// entries younger than `window_ms`. Zero count means "do not record".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Retention {
    pub count: u32,
    pub window_ms: Millis,
}

impl Retention {
    pub fn for_caps<'a>(caps: impl IntoIterator<Item = &'a FrequencyCap>) -> Self {
        caps.into_iter().fold(Self::default(), |acc, cap| Self {
            count: acc.count.max(cap.max),
            window_ms: acc.window_ms.max(cap.per_seconds as Millis * 1000),
        })
    }
}

/// Placement state of one session across its requests: ads served so far and statuses the user
/// has passed since the last ad (or since the session began, before its first ad).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionState {
    pub served: u32,
    pub carry: u32,
}

/// Stable virtual shard of a user (FNV-1a): everything keyed by this user lives in it.
pub fn shard_of(user: &str, shards: u32) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in user.bytes() {
        hash ^= byte as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash % shards as u64) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn campaign(caps: &[(u32, u32)], advertiser_caps: bool) -> Campaign {
        let mut c: Campaign = serde_json::from_value(serde_json::json!({
            "id": "cmp_0000000000000001", "advertiser_id": "adv_0000000000000001", "name": "c",
            "status": "active", "start_at": "2026-01-01T00:00:00Z", "end_at": null,
            "bid_cpm_micros": 1000000, "budget": null, "pacing": "asap", "priority": "auction",
            "targeting": {}, "frequency_caps": [], "advertiser_caps": false, "objective": "awareness",
            "chat": null, "created_at": "2026-01-01T00:00:00Z"
        }))
        .unwrap();
        c.frequency_caps = caps
            .iter()
            .map(|&(max, per_seconds)| FrequencyCap { max, per_seconds })
            .collect();
        c.advertiser_caps = advertiser_caps;
        c
    }

    #[test]
    fn a_decision_commits_only_if_the_live_state_still_admits_it() {
        let c = campaign(&[(1, 3600)], false);
        let now = 1_795_000_000_000;
        let mut proof = DecisionProof {
            checks: vec![CapCheck::of(&c)],
            slots: 2,
            daily_max: 3,
            held: Vec::new(),
        };
        let mut live = UserState::default();
        assert!(live.admits(&proof, now));
        // The daily load: one render today plus two slots fits 3, two renders do not.
        live.daily_renders = vec![window_now(now) - 10];
        assert!(live.admits(&proof, now));
        live.daily_renders.push(window_now(now) - 5);
        assert!(!live.admits(&proof, now));
        live.daily_renders.clear();
        // A campaign the decision rests on reached its cap elsewhere meanwhile.
        live.campaign_renders
            .insert(c.id.to_string(), vec![window_now(now) - 60]);
        assert!(!live.admits(&proof, now));
        live.campaign_renders.clear();
        live.hidden_until
            .insert(c.advertiser_id.to_string(), now + 1);
        assert!(!live.admits(&proof, now));
        live.hidden_until.clear();
        // A reservation the decision counted was rendered elsewhere meanwhile: the live state
        // may allow more than the copy did, so the decision is taken again.
        proof.held = vec!["d1".into()];
        assert!(!live.admits(&proof, now));
        live.reservations.push(Reservation {
            decision_id: "d1".into(),
            campaign: "cmp_0000000000000002".into(),
            advertiser: "adv_0000000000000002".into(),
            expires_ms: now + 1,
        });
        proof.daily_max = 4;
        assert!(live.admits(&proof, now));
    }

    #[test]
    fn rolling_window_counts_renders_and_live_reservations() {
        let c = campaign(&[(2, 3600)], false);
        let now = 10_000_000;
        let mut state = UserState::default();
        // Stored in whole seconds: one render exactly an hour ago, one just now.
        state
            .campaign_renders
            .insert(c.id.as_str().into(), vec![10_000 - 3600, 10_000]);
        // The render exactly one window ago has left the window.
        assert!(state.caps_allow(&c, now));
        // Rounding never releases early: a render stored as second 6401 (rounded up from
        // 6400.5) still counts at 10000.9 s, although exactly it left at 10000.5 s.
        state
            .campaign_renders
            .insert(c.id.as_str().into(), vec![6401, 10_000]);
        assert!(!state.caps_allow(&c, 10_000_900));
        assert!(state.caps_allow(&c, 10_001_000));
        state
            .campaign_renders
            .insert(c.id.as_str().into(), vec![10_000 - 3600, 10_000]);
        state.reservations.push(Reservation {
            decision_id: "d".into(),
            campaign: c.id.as_str().into(),
            advertiser: c.advertiser_id.as_str().into(),
            expires_ms: now + 1,
        });
        assert!(!state.caps_allow(&c, now));
        // Once the reservation expires it no longer holds the cap.
        assert!(state.caps_allow(&c, now + 1));
    }

    #[test]
    fn advertiser_caps_count_every_campaign_of_the_advertiser() {
        let c = campaign(&[(1, 86_400)], true);
        let mut state = UserState::default();
        state
            .advertiser_renders
            .insert(c.advertiser_id.as_str().into(), vec![500]);
        assert!(!state.caps_allow(&c, 1_000_000));
        let mut lenient = c.clone();
        lenient.advertiser_caps = false;
        assert!(state.caps_allow(&lenient, 1_000_000));
    }

    #[test]
    fn daily_load_counts_reservations() {
        let day_s = DAY_MS / 1000;
        let state = UserState {
            daily_renders: vec![day_s, day_s + 5],
            ..UserState::default()
        };
        assert_eq!(state.daily_remaining(3, DAY_MS + 10_000), 1);
        assert_eq!(state.daily_remaining(3, 2 * DAY_MS + 1000), 2);
    }

    #[test]
    fn retention_and_shards() {
        let caps = [FrequencyCap::new(1, 3600), FrequencyCap::new(3, 86_400)];
        assert_eq!(
            Retention::for_caps(&caps),
            Retention {
                count: 3,
                window_ms: 86_400_000
            }
        );
        assert_eq!((render_stamp(1_500), window_now(1_500)), (2, 1));
        assert_eq!((render_stamp(2_000), window_now(2_000)), (2, 2));
        assert_eq!(shard_of("user-1", 1024), shard_of("user-1", 1024));
        assert!(shard_of("user-1", 1024) < 1024);
    }
}
