//! Click-to-chat conversions. A click id names the clicking user's shard and the slot's decision
//! (`c<shard>.<decision>`), so the click event, the click record and every conversion of it live
//! in one cluster slot and each is one atomic script.

use serde::{Deserialize, Serialize};

use crate::catalog::Catalog;
use crate::clock::{ms_from_datetime, utc_day};
use crate::domain::campaign::Rfc3339;
use crate::domain::ids::AdvertiserId;
use crate::metrics::Metrics;
use crate::store::{ConversionOutcome, ConversionWrite, Store, StoreError};

pub fn click_id(shard: u32, decision_id: &str) -> String {
    format!("c{shard}.{decision_id}")
}

/// The (shard, decision id) a click id names; `None` for anything we did not issue.
pub fn parse_click_id(raw: &str, shards: u32) -> Option<(u32, &str)> {
    let (shard, decision) = raw.strip_prefix('c')?.split_once('.')?;
    let shard: u32 = shard.parse().ok()?;
    let valid =
        shard < shards && decision.len() == 32 && decision.bytes().all(|b| b.is_ascii_hexdigit());
    valid.then_some((shard, decision))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConversionType {
    ConversationStarted,
    Message,
}

impl ConversionType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConversationStarted => "conversation_started",
            Self::Message => "message",
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConversionBody {
    pub advertiser_id: String,
    pub click_id: String,
    #[serde(rename = "type")]
    pub kind: ConversionType,
    pub at: Rfc3339,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConversionStatus {
    Accepted,
    Duplicate,
    UnknownClick,
}

impl ConversionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Duplicate => "duplicate",
            Self::UnknownClick => "unknown_click",
        }
    }
}

/// `None` when the advertiser does not exist.
pub async fn convert(
    store: &Store,
    catalog: &Catalog,
    metrics: &Metrics,
    shards: u32,
    body: &ConversionBody,
) -> Result<Option<ConversionStatus>, StoreError> {
    let Some(advertiser) = AdvertiserId::parse(&body.advertiser_id)
        .filter(|id| catalog.snapshot().advertiser(id).is_some())
    else {
        return Ok(None);
    };
    let status = match parse_click_id(&body.click_id, shards) {
        None => ConversionStatus::UnknownClick,
        Some((shard, decision_id)) => {
            let at_ms = ms_from_datetime(body.at.0);
            let write = ConversionWrite {
                shard,
                decision_id,
                advertiser: advertiser.as_str(),
                kind: body.kind.as_str(),
                day: utc_day(at_ms),
                at_ms,
            };
            match store.apply_conversion(&write).await? {
                ConversionOutcome::Accepted => ConversionStatus::Accepted,
                ConversionOutcome::Duplicate => ConversionStatus::Duplicate,
                ConversionOutcome::UnknownClick => ConversionStatus::UnknownClick,
            }
        }
    };
    metrics.conversion(body.kind.as_str(), status.as_str());
    Ok(Some(status))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn click_ids_round_trip_and_reject_the_rest() {
        let decision = "0123456789abcdef0123456789abcdef";
        let id = click_id(417, decision);
        assert_eq!(parse_click_id(&id, 1024), Some((417, decision)));
        assert_eq!(parse_click_id(&id, 100), None, "shard out of range");
        for bad in [
            "",
            "c",
            "c1",
            "c1.",
            "x1.0123456789abcdef0123456789abcdef",
            "c-1.0123456789abcdef0123456789abcdef",
            "c1.xyz",
        ] {
            assert_eq!(parse_click_id(bad, 1024), None, "{bad}");
        }
    }
}
