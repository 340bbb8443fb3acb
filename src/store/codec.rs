//! The one encoding of per-user state in the hot store: the fields of a user's hash, render
//! times, reservation and session values, and cap lists and retentions as the scripts take them.
//! Both backends store exactly these strings, and the Lua scripts read the same ones
//! (`redis/scripts/user_state.lua`). Above the store, state is typed: `capping::UserState`,
//! `SessionState`, `FrequencyCap`, `Retention`.
//!
//! One Redis hash per user (the embedded backend's in-process Redis keeps the same). There is one field per (user,
//! campaign) seen, so every field and value is kept under 64 bytes: Redis then keeps the hash as
//! a listpack (no per-entry pointers), which is what makes an entry cost ~30 bytes. (A cap above
//! 10 per window, or a daily load above 10, makes that user's lists longer than 64 bytes: their
//! hash then leaves the compact encoding, which costs memory, nothing else.)
//! - `c<campaign hex>` / `a<advertiser hex>` / `d`: render times (see [`encode_stamps`]), newest
//!   last, of the campaign, the advertiser (advertiser-level caps) and of every ad (daily load);
//! - `r<decision id>`: a reservation, `<campaign hex>|<advertiser hex>|<expires_ms>`;
//! - `h<advertiser hex>`: the advertiser is hidden until this time (ms);
//! - `x<campaign hex>`: the user started a conversation from the campaign (`suppress_after:
//!   conversation`), which is not shown to them until this time (ms);
//! - `s<session hash>`: the placement state of one session ([`SessionValue`]), under the first
//!   8 bytes of the session id's SHA-256 as hex: every session of a user lives in their hash, so
//!   access and erasure find them without a scan, and the field stays short however long the
//!   client's session id.

use super::{ConversionWrite, StoredSession};
use crate::capping::{Reservation, Retention, SessionState, UserState, DAY_MS, SESSION_TTL_MS};
use crate::clock::Millis;
use crate::domain::campaign::{FrequencyCap, MAX_CAP_WINDOW_S};

/// Render times count whole seconds from here (2000-01-01T00:00:00Z): six base-36 digits then
/// last until 2068.
pub const STAMP_EPOCH_S: i64 = 946_684_800;
const STAMP_WIDTH: usize = 6;
const STAMP_MAX: i64 = 36_i64.pow(STAMP_WIDTH as u32) - 1;

/// The hash field of a campaign's render times: `c` and the id's hex part.
pub fn campaign_field(campaign: &str) -> String {
    format!("c{}", hex_of(campaign))
}

/// The hash field of an advertiser's render times (advertiser-level caps).
pub fn advertiser_field(advertiser: &str) -> String {
    format!("a{}", hex_of(advertiser))
}

/// The hash field of a campaign suppressed for this user by a conversation.
pub fn suppress_field(campaign: &str) -> String {
    format!("x{}", hex_of(campaign))
}

/// The hash field of an advertiser hidden by this user.
pub fn hide_field(advertiser: &str) -> String {
    format!("h{}", hex_of(advertiser))
}

/// The hash field of one session of the user.
pub fn session_field(session: &str) -> String {
    format!("s{}", session_tag(session))
}

/// What the store keeps of a session id: the first 8 bytes of its SHA-256, as hex.
fn session_tag(session: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(session.as_bytes())[..8])
}

/// The 16 hex digits of a `cmp_…` / `adv_…` id: what the compact fields store.
pub fn hex_of(id: &str) -> &str {
    id.split_once('_').map_or(id, |(_, hex)| hex)
}

/// Render times (unix seconds) as stored: six base-36 digits each (seconds since
/// [`STAMP_EPOCH_S`]), no separator. Ten renders fit the 64 bytes that keep the hash compact,
/// where decimal with commas took 109.
pub fn encode_stamps(stamps: &[i64]) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = String::with_capacity(stamps.len() * STAMP_WIDTH);
    for stamp in stamps {
        let mut n = (stamp - STAMP_EPOCH_S).clamp(0, STAMP_MAX);
        let mut digits = [b'0'; STAMP_WIDTH];
        for digit in digits.iter_mut().rev() {
            *digit = DIGITS[(n % 36) as usize];
            n /= 36;
        }
        out.extend(digits.iter().map(|d| *d as char));
    }
    out
}

/// Whether no rule reads a user-hash field any more at `now_ms`, so it goes: a hide or a
/// suppression past its end, render times all older than the longest cap window (a campaign's
/// or an advertiser's list) or than a day (the daily list). Mirrored in `reserve.lua`.
pub fn outlived(field: &str, value: &str, now_ms: Millis) -> bool {
    let newest = || decode_stamps(value).into_iter().max().unwrap_or(i64::MIN);
    let now_s = now_ms.div_euclid(1000);
    match field.as_bytes().first() {
        Some(b'h' | b'x') => value.parse::<Millis>().is_ok_and(|until| until <= now_ms),
        Some(b'c' | b'a') => newest() <= now_s - i64::from(MAX_CAP_WINDOW_S),
        Some(b'd') if field == "d" => newest() <= now_s - DAY_MS / 1000,
        _ => false,
    }
}

/// The inverse of [`encode_stamps`]; a malformed chunk is skipped. Lists written by builds
/// before this encoding (decimal seconds joined by commas) are read too, so caps hold across
/// the upgrade; the next write of a list rewrites it.
pub fn decode_stamps(raw: &str) -> Vec<i64> {
    if raw.contains(',') || !raw.len().is_multiple_of(STAMP_WIDTH) {
        return raw.split(',').filter_map(|t| t.parse().ok()).collect();
    }
    raw.as_bytes()
        .chunks(STAMP_WIDTH)
        .filter_map(|chunk| {
            let digits = chunk.len() == STAMP_WIDTH
                && chunk
                    .iter()
                    .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase());
            let text = std::str::from_utf8(chunk).ok().filter(|_| digits)?;
            i64::from_str_radix(text, 36)
                .ok()
                .map(|n| n + STAMP_EPOCH_S)
        })
        .collect()
}

impl Reservation {
    /// The hash field holding this reservation.
    pub fn field(&self) -> String {
        reservation_field(&self.decision_id)
    }

    /// The field's value: `<campaign hex>|<advertiser hex>|<expires_ms>`.
    pub fn value(&self) -> String {
        format!(
            "{}|{}|{}",
            hex_of(&self.campaign),
            hex_of(&self.advertiser),
            self.expires_ms
        )
    }

    fn decode(decision_id: &str, value: &str) -> Option<Self> {
        let (campaign, advertiser, expires_ms) = reservation_parts(value)?;
        Some(Self {
            decision_id: decision_id.to_owned(),
            campaign: format!("cmp_{campaign}"),
            advertiser: format!("adv_{advertiser}"),
            expires_ms,
        })
    }
}

/// The hash field of the reservation made by decision `decision_id`.
pub fn reservation_field(decision_id: &str) -> String {
    format!("r{decision_id}")
}

/// A stored reservation value's (campaign hex, advertiser hex, expiry): exactly three parts,
/// as `reservation` in user_state.lua reads it.
fn reservation_parts(value: &str) -> Option<(&str, &str, Millis)> {
    let mut parts = value.split('|');
    let (campaign, advertiser) = (parts.next()?, parts.next()?);
    let expires_ms = parts.next()?.parse().ok()?;
    parts
        .next()
        .is_none()
        .then_some((campaign, advertiser, expires_ms))
}

/// The expiry of a stored reservation value (`None` when corrupt: prune it).
pub fn reservation_expiry(value: &str) -> Option<Millis> {
    reservation_parts(value).map(|(_, _, expires_ms)| expires_ms)
}

impl UserState {
    /// Parses the stored hash. Unknown or corrupt fields are ignored rather than failing a
    /// decision: the checks in the store's scripts remain the authority.
    pub fn from_fields<'a>(fields: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut state = Self::default();
        for (field, value) in fields {
            let Some(rest) = field.get(1..) else { continue };
            // Id fields are one letter and the id's 16 hex digits.
            let hex = Some(rest).filter(|hex| hex.len() == 16);
            match (field.as_bytes().first(), hex) {
                (Some(b'c'), Some(hex)) => {
                    state
                        .campaign_renders
                        .insert(format!("cmp_{hex}"), decode_stamps(value));
                }
                (Some(b'a'), Some(hex)) => {
                    state
                        .advertiser_renders
                        .insert(format!("adv_{hex}"), decode_stamps(value));
                }
                (Some(b'h'), Some(hex)) => {
                    if let Ok(until) = value.parse() {
                        state.hidden_until.insert(format!("adv_{hex}"), until);
                    }
                }
                (Some(b'x'), Some(hex)) => {
                    if let Ok(until) = value.parse() {
                        state.suppressed_until.insert(format!("cmp_{hex}"), until);
                    }
                }
                (Some(b'r'), _) => state.reservations.extend(Reservation::decode(rest, value)),
                _ if field == "d" => state.daily_renders = decode_stamps(value),
                _ => {}
            }
        }
        state
    }
}

impl Retention {
    /// `count:window_seconds`, as the stores read it.
    pub fn encode(self) -> String {
        format!("{}:{}", self.count, self.window_ms / 1000)
    }
}

/// Caps as the stores read them: `max:per_seconds` joined by commas.
pub fn encode_caps(caps: &[FrequencyCap]) -> String {
    use std::fmt::Write;
    // Once per event and per checked campaign: built in place, no list of pieces.
    let mut out = String::with_capacity(caps.len() * 12);
    for (i, cap) in caps.iter().enumerate() {
        let comma = if i == 0 { "" } else { "," };
        let _ = write!(out, "{comma}{}:{}", cap.max, cap.per_seconds);
    }
    out
}

/// The inverse of [`encode_caps`]. A malformed cap reads as `max` 0, which nothing fits.
pub fn decode_caps(encoded: &str) -> Vec<FrequencyCap> {
    encoded
        .split(',')
        .filter(|cap| !cap.is_empty())
        .map(|cap| {
            let mut parts = cap.split(':').map(|x| x.parse::<u32>().unwrap_or(0));
            FrequencyCap {
                max: parts.next().unwrap_or(0),
                per_seconds: parts.next().unwrap_or(0),
            }
        })
        .collect()
}

/// Caps of an event in the outage spool, encoded as the scripts take them: the form every
/// build has spooled, so a node rolled back with a full spool still replays it.
pub fn spool_caps<S: serde::Serializer>(caps: &[FrequencyCap], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&encode_caps(caps))
}

/// The inverse of [`spool_caps`].
pub fn spooled_caps<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<FrequencyCap>, D::Error> {
    let encoded: String = serde::Deserialize::deserialize(d)?;
    Ok(decode_caps(&encoded))
}

/// A session's placement state as the store holds it (`served,carry,forget_after_ms`). Callers
/// read it with [`SessionValue::state`] and hand it back whole: a decision commits only if the
/// stored value is still exactly the one it was decided on, so concurrent requests of one
/// session cannot both place by the same state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionValue(String);

impl SessionValue {
    /// `state` as stored at `now_ms`. The expiry travels in the value so that both backends
    /// forget a session at the same (injected) time; Redis's key TTL only collects garbage.
    pub fn of(state: SessionState, now_ms: Millis) -> Self {
        Self(format!(
            "{},{},{}",
            state.served,
            state.carry,
            now_ms + SESSION_TTL_MS
        ))
    }

    /// A value read from the store, as it is.
    pub(crate) fn stored(raw: String) -> Self {
        Self(raw)
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// The session as of `now_ms`: a fresh one once it has been forgotten (or is corrupt).
    pub fn state(&self, now_ms: Millis) -> SessionState {
        session_state(&self.0, now_ms)
    }
}

fn session_state(raw: &str, now_ms: Millis) -> SessionState {
    if forget_after(raw).is_none_or(|until| now_ms >= until) {
        return SessionState::default();
    }
    let mut parts = raw.split(',').map(|p| p.parse::<i64>().unwrap_or(0));
    SessionState {
        served: parts.next().unwrap_or(0) as u32,
        carry: parts.next().unwrap_or(0) as u32,
    }
}

/// When a stored session value is forgotten (`None` when corrupt: prune it).
pub fn forget_after(raw: &str) -> Option<Millis> {
    raw.split(',').nth(2)?.parse().ok()
}

impl ConversionWrite<'_> {
    /// The user-hash field a conversation suppresses, and until when.
    pub(crate) fn suppress_field(&self) -> Option<(String, Millis)> {
        self.suppress
            .as_ref()
            .map(|(campaign, until)| (suppress_field(campaign.as_str()), *until))
    }
}

impl StoredSession {
    /// Whether this is the stored session of the client's session id `session`.
    pub fn is_of(&self, session: &str) -> bool {
        self.tag == session_tag(session)
    }

    /// The user-hash sessions among `fields`.
    pub fn from_fields<'a>(fields: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<Self> {
        fields
            .into_iter()
            .filter_map(|(field, value)| {
                let tag = field.strip_prefix('s')?;
                let forget_after_ms = forget_after(value)?;
                Some(Self {
                    tag: tag.to_owned(),
                    state: session_state(value, forget_after_ms - 1),
                    forget_after_ms,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_no_rule_reads_is_outlived() {
        let now_ms = 1_795_000_000_000;
        let now_s = now_ms / 1000;
        assert!(outlived("hadv", &(now_ms - 1).to_string(), now_ms));
        assert!(!outlived("hadv", &(now_ms + 1).to_string(), now_ms));
        assert!(outlived("xcmp", &now_ms.to_string(), now_ms));
        let year = i64::from(MAX_CAP_WINDOW_S);
        assert!(outlived("ccmp", &encode_stamps(&[now_s - year]), now_ms));
        assert!(!outlived(
            "ccmp",
            &encode_stamps(&[now_s - year, now_s - 10]),
            now_ms
        ));
        assert!(outlived("d", &encode_stamps(&[now_s - 86_400]), now_ms));
        assert!(!outlived("d", &encode_stamps(&[now_s - 86_399]), now_ms));
        assert!(
            !outlived("s1234", "1,0,0", now_ms),
            "sessions have their own rule"
        );
    }

    #[test]
    fn parses_its_own_encoding() {
        let (cmp, adv, hidden) = (
            "cmp_00000000000000aa",
            "adv_00000000000000bb",
            "adv_00000000000000cc",
        );
        let r = Reservation {
            decision_id: "0123456789abcdef0123456789abcdef".into(),
            campaign: cmp.into(),
            advertiser: adv.into(),
            expires_ms: 1_795_000_000_000,
        };
        let (c, a, h) = (
            campaign_field(cmp),
            advertiser_field(adv),
            hide_field(hidden),
        );
        assert_eq!(
            c, "c00000000000000aa",
            "one letter and 16 hex digits: compact per entry"
        );
        assert_eq!(r.field(), "r0123456789abcdef0123456789abcdef");
        assert_eq!(r.value(), "00000000000000aa|00000000000000bb|1795000000000");
        // Redis keeps a hash compact (listpack) only while every field and value is <= 64 bytes.
        assert!(r.field().len() <= 64 && r.value().len() <= 64);
        let (value, stamps) = (r.value(), encode_stamps(&[1_795_000_001, 1_795_000_002]));
        let state = UserState::from_fields([
            (c.as_str(), stamps.as_str()),
            (a.as_str(), encode_stamps(&[1_795_000_005]).as_str()),
            ("d", stamps.as_str()),
            (r.field().as_str(), value.as_str()),
            (h.as_str(), "1000"),
            ("junk", "?"),
            ("cshort", "1"),
        ]);
        assert_eq!(
            state.campaign_renders[cmp],
            vec![1_795_000_001, 1_795_000_002]
        );
        assert_eq!(state.advertiser_renders[adv], vec![1_795_000_005]);
        assert_eq!(state.daily_renders, vec![1_795_000_001, 1_795_000_002]);
        assert_eq!(state.campaign_renders.len(), 1);
        assert_eq!(state.reservations, vec![r]);
        assert_eq!(reservation_expiry(&value), Some(1_795_000_000_000));
        assert_eq!(reservation_expiry("a|b|1|extra"), None, "as strict as Lua");
        assert!(state.is_hidden(hidden, 999));
        assert!(!state.is_hidden(hidden, 1000));
    }

    #[test]
    fn render_times_are_six_base36_digits_each() {
        let times = [STAMP_EPOCH_S, 1_795_000_000, STAMP_EPOCH_S + STAMP_MAX];
        let encoded = encode_stamps(&times);
        assert_eq!(encoded.len(), 18);
        assert_eq!(&encoded[..6], "000000");
        assert_eq!(decode_stamps(&encoded), times);
        // A full day of the default ad load (10) still fits one compact listpack value.
        assert_eq!(encode_stamps(&[1_795_000_000; 10]).len(), 60);
        // Malformed input is skipped, never misread.
        assert_eq!(decode_stamps("zz!zzz00000"), Vec::<i64>::new());
        assert_eq!(
            decode_stamps("-00001+00001"),
            Vec::<i64>::new(),
            "as strict as Lua"
        );
        // Lists of earlier builds: decimal seconds joined by commas.
        assert_eq!(decode_stamps("1795000000"), vec![1_795_000_000]);
        assert_eq!(
            decode_stamps("1795000000,1795000001"),
            vec![1_795_000_000, 1_795_000_001]
        );
    }

    #[test]
    fn caps_retentions_and_sessions() {
        let caps = [FrequencyCap::new(1, 3600), FrequencyCap::new(3, 86_400)];
        assert_eq!(encode_caps(&caps), "1:3600,3:86400");
        assert_eq!(decode_caps(&encode_caps(&caps)), caps);
        assert_eq!(decode_caps(""), Vec::new());
        assert_eq!(decode_caps("x:60")[0].max, 0, "malformed: nothing fits");
        assert_eq!(Retention::for_caps(&caps).encode(), "3:86400");
        let session = SessionState {
            served: 2,
            carry: 5,
        };
        let stored = SessionValue::of(session, 1_000);
        assert_eq!(stored.state(1_000 + SESSION_TTL_MS - 1), session);
        assert_eq!(
            stored.state(1_000 + SESSION_TTL_MS),
            SessionState::default(),
            "forgotten"
        );
        assert_eq!(
            SessionValue::stored("2,5".into()).state(0),
            SessionState::default(),
            "no expiry: not trusted"
        );
    }
}
