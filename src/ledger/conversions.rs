//! Click-to-chat conversions. A click id names the clicking user's shard and the slot's decision
//! (`c<shard>.<decision>`), so the click event, the click record, every conversion of it and the
//! clicking user's hash live in one cluster slot and each is one atomic script: a conversation
//! from a campaign with `suppress_after: conversation` suppresses it for that user in the same
//! step. Conversions are listed back to the advertiser (no user identifier) for its CRM.

use serde::{Deserialize, Serialize};

use time::{Date, OffsetDateTime};

use crate::capping::SUPPRESS_MS;
use crate::catalog::Catalog;
use crate::clock::{datetime_from_ms, ms_from_datetime, Millis};
use crate::domain::campaign::Rfc3339;
use crate::domain::ids::{AdvertiserId, CampaignId};
use crate::domain::ValidationError;
use crate::metrics::Metrics;
use crate::record::Record;
use crate::store::{ConversionOutcome, ConversionWrite, Store, StoreError};

pub fn click_id(shard: u32, decision_id: &str) -> String {
    format!("c{shard}.{decision_id}")
}

/// The shard of `shards` to look for the click a click id names in, and its decision id;
/// `None` for anything we did not issue. The embedded backend's earlier builds issued ids
/// under `store.shards`; it keeps one shard now, where those clicks are. (On Redis an id of a
/// shard past `store.shards` finds no click there.)
pub fn parse_click_id(raw: &str, shards: u32) -> Option<(u32, &str)> {
    let (digits, decision) = raw.strip_prefix('c')?.split_once('.')?;
    let shard: u32 = digits.parse().ok()?;
    let valid = shard.to_string() == digits
        && shard < crate::config::MAX_SHARDS
        && decision.len() == 32
        && decision.bytes().all(|b| b.is_ascii_hexdigit());
    valid.then_some((shard % shards, decision))
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

impl ConversionBody {
    /// `at`, if in the years 2000-2999 (as a business message's).
    pub fn at_ms(&self) -> Result<Millis, ValidationError> {
        super::event_time(self.at.0)
    }
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

/// `None` when the advertiser does not exist. A conversation that suppresses its campaign for
/// the clicking user drops this node's remembered view of that user (`forget`), so its next
/// decision reads the suppression.
pub async fn convert(
    store: &Store,
    catalog: &Catalog,
    metrics: &Metrics,
    shards: u32,
    body: &ConversionBody,
    at_ms: Millis,
    forget: impl FnOnce(&str),
) -> Result<Option<ConversionStatus>, StoreError> {
    let Some(advertiser) = AdvertiserId::parse(&body.advertiser_id)
        .filter(|id| catalog.snapshot().advertiser(id).is_some())
    else {
        return Ok(None);
    };
    let status = match parse_click_id(&body.click_id, shards) {
        None => ConversionStatus::UnknownClick,
        Some((shard, decision_id)) => {
            // Only a conversation started from a campaign that asks for it suppresses.
            let (suppress, user) = match body.kind {
                ConversionType::ConversationStarted => store
                    .click_owner(shard, decision_id, at_ms)
                    .await?
                    .and_then(|owner| {
                        let id = CampaignId::parse(&owner.campaign)?;
                        let campaign = catalog.snapshot().campaign(&id).cloned()?;
                        campaign.suppress_after.map(|_| {
                            let until = at_ms.saturating_add(SUPPRESS_MS);
                            ((id, until), owner.user)
                        })
                    })
                    .unzip(),
                ConversionType::Message => (None, None),
            };
            let write = ConversionWrite {
                shard,
                decision_id,
                advertiser: advertiser.as_str(),
                kind: body.kind.as_str(),
                at_ms,
                click_id: &body.click_id,
                suppress,
            };
            match store.apply_conversion(&write).await? {
                ConversionOutcome::Accepted => {
                    if let Some(user) = user.filter(|u| !u.is_empty()) {
                        forget(&user);
                    }
                    ConversionStatus::Accepted
                }
                ConversionOutcome::Duplicate => ConversionStatus::Duplicate,
                ConversionOutcome::UnknownClick => ConversionStatus::UnknownClick,
            }
        }
    };
    metrics.conversion(body.kind, status);
    Ok(Some(status))
}

/// One conversion as the advertiser's conversions API lists it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConversionView {
    pub click_id: String,
    pub campaign_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConversionList {
    pub conversions: Vec<ConversionView>,
    /// Every conversion accepted before this instant is listed (RFC 3339), as in reports.
    pub as_of: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConversionQuery {
    pub campaign_id: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
}

/// The advertiser's conversions on the UTC days `from..=to`, oldest first, of one campaign when
/// `campaign` is given, as the record holds them at `as_of_ms`.
pub async fn list(
    record: &Record,
    advertiser: &AdvertiserId,
    campaign: Option<&CampaignId>,
    from: Date,
    to: Date,
    as_of_ms: Millis,
) -> Result<ConversionList, StoreError> {
    let start = |day: Date| ms_from_datetime(day.midnight().assume_utc());
    let end = to.next_day().map_or(Millis::MAX, start);
    let conversions = record
        .conversions(
            advertiser.as_str(),
            campaign.map(CampaignId::as_str),
            start(from),
            end,
        )
        .await?
        .into_iter()
        .map(|r| ConversionView {
            click_id: r.click_id,
            campaign_id: r.campaign,
            kind: r.kind,
            at: datetime_from_ms(r.at_ms),
        })
        .collect();
    Ok(ConversionList {
        conversions,
        as_of: super::report::rfc3339(as_of_ms),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn click_ids_round_trip_and_reject_the_rest() {
        let decision = "0123456789abcdef0123456789abcdef";
        let id = click_id(417, decision);
        assert_eq!(parse_click_id(&id, 1024), Some((417, decision)));
        assert_eq!(
            parse_click_id(&id, 1),
            Some((0, decision)),
            "issued by an earlier embedded build: kept in its one shard now"
        );
        assert_eq!(parse_click_id(&click_id(16384, decision), 1024), None);
        assert_eq!(
            parse_click_id(&format!("c0{}", &id[1..]), 1024),
            None,
            "c0417."
        );
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
