//! Per-user state that decisions read and events move: rolling-window render timestamps per
//! campaign and per advertiser, the rolling 24 h ad load, pending reservations and hidden
//! advertisers, plus the per-session placement state. This module holds the pure rules and the
//! compact text encoding both backends store; the atomic updates live in the stores.
//!
//! Encoding (one Redis hash per user, mirrored by the embedded backend), compact because there is
//! one entry per (user, campaign) seen:
//! `v` version (bumped by every write, the compare-and-set guard of decisions),
//! `c<campaign hex>` / `a<advertiser hex>` / `d` comma-separated render times in whole seconds
//! (rounded up), newest last,
//! `r` reservations `decision|campaign|advertiser|expires_ms` joined by `;`,
//! `h<advertiser hex>` hidden-until (ms).
//!
//! Windows are checked in whole seconds: a render stored as `ceil(t)` counts while
//! `ceil(t) > floor(now) - per`, which holds whenever the exact `t > now - per` does, so
//! rounding can only keep a render in its window a little longer, never release it early.

use std::collections::HashMap;

use crate::clock::Millis;
use crate::domain::campaign::{Campaign, FrequencyCap};

pub const DAY_MS: Millis = 86_400_000;
/// `hide` (and `report`) stop an advertiser for this user for 90 days.
pub const HIDE_MS: Millis = 90 * DAY_MS;
/// Sessions are forgotten after this long without a decision.
pub const SESSION_TTL_MS: Millis = 6 * 3_600_000;

/// The hash field of a campaign's render times: `c` and the id's hex part.
pub fn campaign_field(campaign: &str) -> String {
    format!("c{}", campaign.strip_prefix("cmp_").unwrap_or(campaign))
}

/// The hash field of an advertiser's render times (advertiser-level caps).
pub fn advertiser_field(advertiser: &str) -> String {
    format!("a{}", advertiser.strip_prefix("adv_").unwrap_or(advertiser))
}

/// The hash field of an advertiser hidden by this user.
pub fn hide_field(advertiser: &str) -> String {
    format!("h{}", advertiser.strip_prefix("adv_").unwrap_or(advertiser))
}

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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub decision_id: String,
    pub campaign: String,
    pub advertiser: String,
    pub expires_ms: Millis,
}

impl Reservation {
    pub fn encode(&self) -> String {
        format!(
            "{}|{}|{}|{}",
            self.decision_id, self.campaign, self.advertiser, self.expires_ms
        )
    }

    fn decode(raw: &str) -> Option<Self> {
        let mut parts = raw.split('|');
        Some(Self {
            decision_id: parts.next()?.to_owned(),
            campaign: parts.next()?.to_owned(),
            advertiser: parts.next()?.to_owned(),
            expires_ms: parts.next()?.parse().ok()?,
        })
    }
}

/// The encoded reservations `raw` minus those expired at `now` and the one of `release`
/// (a decision that just rendered): the pruning both stores apply on every write.
pub fn live_reservations(raw: &str, now: Millis, release: Option<&str>) -> Vec<String> {
    raw.split(';')
        .filter(|entry| {
            Reservation::decode(entry)
                .is_some_and(|r| r.expires_ms > now && Some(r.decision_id.as_str()) != release)
        })
        .map(str::to_owned)
        .collect()
}

/// What the store knows about one user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserState {
    pub version: u64,
    /// Render times in whole seconds (see the module docs), by campaign id.
    pub campaign_renders: HashMap<String, Vec<i64>>,
    pub advertiser_renders: HashMap<String, Vec<i64>>,
    pub daily_renders: Vec<i64>,
    pub reservations: Vec<Reservation>,
    pub hidden_until: HashMap<String, Millis>,
}

impl UserState {
    /// Parses the stored hash. Unknown or corrupt fields are ignored rather than failing a
    /// decision: the render-time checks in the store remain the authority.
    pub fn from_fields<'a>(fields: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut state = Self::default();
        for (field, value) in fields {
            // Id fields are one letter and the id's 16 hex digits.
            let id = field.get(1..).filter(|hex| hex.len() == 16);
            match (field.as_bytes().first(), id) {
                (Some(b'c'), Some(hex)) => {
                    state
                        .campaign_renders
                        .insert(format!("cmp_{hex}"), parse_times(value));
                }
                (Some(b'a'), Some(hex)) => {
                    state
                        .advertiser_renders
                        .insert(format!("adv_{hex}"), parse_times(value));
                }
                (Some(b'h'), Some(hex)) => {
                    if let Ok(until) = value.parse() {
                        state.hidden_until.insert(format!("adv_{hex}"), until);
                    }
                }
                _ => match field {
                    "v" => state.version = value.parse().unwrap_or(0),
                    "d" => state.daily_renders = parse_times(value),
                    "r" => {
                        state.reservations =
                            value.split(';').filter_map(Reservation::decode).collect()
                    }
                    _ => {}
                },
            }
        }
        state
    }

    fn live_reservations(&self, now: Millis) -> impl Iterator<Item = &Reservation> {
        self.reservations.iter().filter(move |r| r.expires_ms > now)
    }

    pub fn is_hidden(&self, advertiser: &str, now: Millis) -> bool {
        self.hidden_until
            .get(advertiser)
            .is_some_and(|until| *until > now)
    }

    /// True when one more slot of `campaign` keeps every cap, counting pending reservations.
    pub fn caps_allow(&self, campaign: &Campaign, now: Millis) -> bool {
        let id = campaign.id.as_str();
        let renders = self
            .campaign_renders
            .get(id)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let reserved = self
            .live_reservations(now)
            .filter(|r| r.campaign == id)
            .count();
        if !within_caps(&campaign.frequency_caps, renders, reserved, now) {
            return false;
        }
        if campaign.advertiser_caps {
            let adv = campaign.advertiser_id.as_str();
            let renders = self
                .advertiser_renders
                .get(adv)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            let reserved = self
                .live_reservations(now)
                .filter(|r| r.advertiser == adv)
                .count();
            return within_caps(&campaign.frequency_caps, renders, reserved, now);
        }
        true
    }

    /// How many more ads this user may get in the rolling 24 h, counting reservations.
    pub fn daily_remaining(&self, max_per_day: u32, now: Millis) -> u32 {
        let used = count_since(&self.daily_renders, window_now(now) - DAY_MS / 1000)
            + self.live_reservations(now).count();
        max_per_day.saturating_sub(used as u32)
    }
}

fn within_caps(caps: &[FrequencyCap], renders: &[i64], reserved: usize, now: Millis) -> bool {
    caps.iter().all(|cap| {
        let window_start = window_now(now) - cap.per_seconds as i64;
        count_since(renders, window_start) + reserved < cap.max as usize
    })
}

/// Renders (whole seconds) strictly after `start`: the window `(now - per, now]`.
pub fn count_since(times: &[i64], start: i64) -> usize {
    times.iter().filter(|t| **t > start).count()
}

fn parse_times(raw: &str) -> Vec<i64> {
    raw.split(',').filter_map(|t| t.parse().ok()).collect()
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

    /// `count:window_seconds`, as the stores read it.
    pub fn encode(self) -> String {
        format!("{}:{}", self.count, self.window_ms / 1000)
    }
}

/// Caps as the stores read them: `max:per_seconds` joined by commas.
pub fn encode_caps(caps: &[FrequencyCap]) -> String {
    caps.iter()
        .map(|cap| format!("{}:{}", cap.max, cap.per_seconds))
        .collect::<Vec<_>>()
        .join(",")
}

/// Placement state of one session across its requests: ads served so far and statuses the user
/// has passed since the last ad (or since the session began, before its first ad).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionState {
    pub served: u32,
    pub carry: u32,
}

impl SessionState {
    /// `served,carry,forget_after_ms`: the expiry travels in the value so that both backends
    /// forget a session at the same (injected) time; Redis's key TTL only collects garbage.
    pub fn encode(self, now_ms: Millis) -> String {
        format!("{},{},{}", self.served, self.carry, now_ms + SESSION_TTL_MS)
    }

    /// The stored session as of `now_ms`: a fresh one once it has been forgotten.
    pub fn decode(raw: &str, now_ms: Millis) -> Self {
        let mut parts = raw.split(',').map(|p| p.parse::<i64>().unwrap_or(0));
        let (served, carry, forget_after) = (parts.next(), parts.next(), parts.next());
        if forget_after.is_none_or(|until| now_ms >= until) {
            return Self::default();
        }
        Self {
            served: served.unwrap_or(0) as u32,
            carry: carry.unwrap_or(0) as u32,
        }
    }
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
    fn parses_its_own_encoding() {
        let (cmp, adv, hidden) = (
            "cmp_00000000000000aa",
            "adv_00000000000000bb",
            "adv_00000000000000cc",
        );
        let r = Reservation {
            decision_id: "d1".into(),
            campaign: cmp.into(),
            advertiser: adv.into(),
            expires_ms: 99,
        };
        let encoded = r.encode();
        let (c, a, h) = (
            campaign_field(cmp),
            advertiser_field(adv),
            hide_field(hidden),
        );
        assert_eq!(
            c, "c00000000000000aa",
            "one letter and 16 hex digits: compact per entry"
        );
        let state = UserState::from_fields([
            ("v", "7"),
            (c.as_str(), "1,2,3"),
            (a.as_str(), "5"),
            ("d", "1,2"),
            ("r", encoded.as_str()),
            (h.as_str(), "1000"),
            ("junk", "?"),
            ("cshort", "1"),
        ]);
        assert_eq!(state.version, 7);
        assert_eq!(state.campaign_renders[cmp], vec![1, 2, 3]);
        assert_eq!(state.advertiser_renders[adv], vec![5]);
        assert_eq!(state.campaign_renders.len(), 1);
        assert_eq!(state.reservations, vec![r]);
        assert!(state.is_hidden(hidden, 999));
        assert!(!state.is_hidden(hidden, 1000));
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
    fn pruning_drops_expired_and_released_reservations() {
        let r = |d: &str, exp: Millis| {
            Reservation {
                decision_id: d.into(),
                campaign: "c".into(),
                advertiser: "a".into(),
                expires_ms: exp,
            }
            .encode()
        };
        let raw = [r("d1", 10), r("d2", 20), r("d3", 30)].join(";");
        assert_eq!(
            live_reservations(&raw, 10, None),
            vec![r("d2", 20), r("d3", 30)]
        );
        assert_eq!(live_reservations(&raw, 10, Some("d3")), vec![r("d2", 20)]);
        assert!(live_reservations("garbage;;|", 0, None).is_empty());
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
        let caps = [
            FrequencyCap {
                max: 1,
                per_seconds: 3600,
            },
            FrequencyCap {
                max: 3,
                per_seconds: 86_400,
            },
        ];
        assert_eq!(
            Retention::for_caps(&caps),
            Retention {
                count: 3,
                window_ms: 86_400_000
            }
        );
        assert_eq!(encode_caps(&caps), "1:3600,3:86400");
        assert_eq!(Retention::for_caps(&caps).encode(), "3:86400");
        assert_eq!((render_stamp(1_500), window_now(1_500)), (2, 1));
        assert_eq!((render_stamp(2_000), window_now(2_000)), (2, 2));
        assert_eq!(shard_of("user-1", 1024), shard_of("user-1", 1024));
        assert!(shard_of("user-1", 1024) < 1024);
        let session = SessionState {
            served: 2,
            carry: 5,
        };
        let stored = session.encode(1_000);
        assert_eq!(
            SessionState::decode(&stored, 1_000 + SESSION_TTL_MS - 1),
            session
        );
        assert_eq!(
            SessionState::decode(&stored, 1_000 + SESSION_TTL_MS),
            SessionState::default(),
            "forgotten"
        );
        assert_eq!(
            SessionState::decode("2,5", 0),
            SessionState::default(),
            "no expiry: not trusted"
        );
    }
}
