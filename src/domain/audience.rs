//! What a ledger record says about who saw an ad, for reports: the decision's coarse request
//! context (country, OS, age band) and the creative, carried in the signed token from the
//! decision to the event, and a keyed hash of the user for exact reach. Nothing finer (city,
//! exact age, interests) and never the user id itself: a report can break down by these and
//! count distinct viewers, and can name nobody.

use serde::{Deserialize, Serialize};

use super::slot::SlotContext;

/// The age bands reports break down by (API.md: `18-24` … `65+`, else `unknown`). Ages under
/// 18 are reported as `unknown`: no band of the contract names them.
pub fn age_band(age: Option<u8>) -> &'static str {
    match age {
        Some(18..=24) => "18-24",
        Some(25..=34) => "25-34",
        Some(35..=44) => "35-44",
        Some(45..=54) => "45-54",
        Some(55..=64) => "55-64",
        Some(65..) => "65+",
        _ => "",
    }
}

/// The coarse context of one decision, as the token carries it ("" = unknown).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Coarse {
    pub country: String,
    pub os: String,
    pub age_band: String,
}

impl Coarse {
    pub fn of(context: &SlotContext) -> Self {
        Self {
            country: context.country.clone().unwrap_or_default(),
            os: context.os.clone().unwrap_or_default(),
            age_band: age_band(context.age).to_owned(),
        }
    }
}

/// What an event's ledger record carries for reports beyond what it bills.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Audience {
    #[serde(default)]
    pub creative: String,
    #[serde(default, flatten)]
    pub coarse: Coarse,
    /// [`ReachKey::of`] the user: counts distinct users, names none.
    #[serde(default)]
    pub user_key: String,
}

/// The deployment's key for hashing user ids into reach keys. One per deployment (kept in the
/// system of record, so every node hashes alike); without it a reach key cannot be linked back
/// to a user id by hashing candidates.
#[derive(Clone)]
pub struct ReachKey(hmac::Hmac<sha2::Sha256>);

impl ReachKey {
    pub fn new(secret: &[u8]) -> Self {
        use hmac::Mac;
        Self(hmac::Hmac::new_from_slice(secret).expect("HMAC accepts any key length"))
    }

    /// 16 bytes of HMAC-SHA256, hex: collisions are negligible at any audience size.
    pub fn of(&self, user: &str) -> String {
        use hmac::Mac;
        let mut mac = self.0.clone();
        mac.update(user.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..16])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_fall_in_the_contract_bands() {
        assert_eq!(age_band(None), "");
        assert_eq!(age_band(Some(17)), "");
        assert_eq!(age_band(Some(18)), "18-24");
        assert_eq!(age_band(Some(24)), "18-24");
        assert_eq!(age_band(Some(25)), "25-34");
        assert_eq!(age_band(Some(64)), "55-64");
        assert_eq!(age_band(Some(65)), "65+");
        assert_eq!(age_band(Some(120)), "65+");
    }

    #[test]
    fn reach_keys_are_stable_per_key_and_differ_between_keys() {
        let (a, b) = (ReachKey::new(b"one"), ReachKey::new(b"two"));
        assert_eq!(a.of("u-1"), a.of("u-1"));
        assert_ne!(a.of("u-1"), a.of("u-2"));
        assert_ne!(a.of("u-1"), b.of("u-1"));
        assert_eq!(a.of("u-1").len(), 32);
        assert!(!a.of("u-1").contains("u-1"));
    }
}
