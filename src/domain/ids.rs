//! Server-chosen opaque ids: a type prefix and 16 random hex digits.

use std::fmt;

use rand::Rng;
use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($name:ident, $prefix:literal) => {
        #[derive(
            Debug,
            Clone,
            PartialEq,
            Eq,
            Hash,
            PartialOrd,
            Ord,
            Serialize,
            Deserialize,
            utoipa::ToSchema,
        )]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            pub fn generate() -> Self {
                Self(format!(
                    "{}{:016x}",
                    $prefix,
                    rand::thread_rng().gen::<u64>()
                ))
            }

            /// Accepts only ids of this type's shape; anything else cannot exist.
            pub fn parse(raw: &str) -> Option<Self> {
                let hex = raw.strip_prefix($prefix)?;
                (hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
                    .then(|| Self(raw.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(AdvertiserId, "adv_");
id_type!(CampaignId, "cmp_");
id_type!(CreativeId, "cre_");

/// The 8 random bytes behind the 16 hex digits of an id of any type (`cmp_…`, `adv_…`).
pub fn id_bytes(id: &str) -> Option<[u8; 8]> {
    let hex = id.split_once('_').map_or(id, |(_, hex)| hex);
    let mut bytes = [0u8; 8];
    hex::decode_to_slice(hex, &mut bytes).ok()?;
    Some(bytes)
}

/// Identifies one served slot; bound into its token and the key of its dedupe state.
pub fn new_decision_id() -> String {
    hex::encode(rand::thread_rng().gen::<[u8; 16]>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_reject_other_shapes() {
        let id = CampaignId::generate();
        assert_eq!(CampaignId::parse(id.as_str()), Some(id.clone()));
        assert!(AdvertiserId::parse(id.as_str()).is_none());
        assert!(CampaignId::parse("cmp_xyz").is_none());
        assert!(CampaignId::parse("cmp_0123456789abcdeg").is_none());
    }
}
