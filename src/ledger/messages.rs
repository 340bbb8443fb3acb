//! Business messages: each message the messaging platform reports is rated by
//! [`crate::messaging::rate`] against the stored (advertiser, user) conversation and recorded
//! with its charge in the ledger, once per message id. Rating happens in Rust; the store commits
//! it only if the conversation did not change meanwhile (else it is rated again), so concurrent
//! messages of one conversation are rated in some serial order and a duplicate id is charged once.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::conversions::parse_click_id;
use crate::capping::shard_of;
use crate::catalog::Catalog;
use crate::clock::{datetime_from_ms, day_key, ms_from_datetime, Millis};
use crate::domain::campaign::Rfc3339;
use crate::domain::ids::AdvertiserId;
use crate::domain::{Micros, UserId, ValidationError};
use crate::messaging::{
    self, Category, Conversation, Direction, Message, MessageKind, PriceTable, RatingError, Reason,
};
use crate::metrics::Metrics;
use crate::store::{MessageCommit, MessageOutcome, Store, StoreError};

const ATTEMPTS: usize = 5;
const DAY_MS: Millis = 86_400_000;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageBody {
    pub id: String,
    pub advertiser_id: String,
    pub user: String,
    pub direction: Direction,
    #[serde(default)]
    pub kind: Option<MessageKind>,
    #[serde(default)]
    pub category: Option<Category>,
    pub country: String,
    #[serde(default)]
    pub click_id: Option<String>,
    pub at: Rfc3339,
}

#[derive(Debug, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct MessageResult {
    pub status: &'static str,
    pub charge_micros: Micros,
    pub currency: String,
    pub reason: &'static str,
    #[serde(with = "time::serde::rfc3339::option")]
    pub window_expires_at: Option<OffsetDateTime>,
}

#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("unknown advertiser")]
    UnknownAdvertiser,
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct Messages<'a> {
    pub store: &'a Store,
    pub catalog: &'a Catalog,
    pub prices: &'a PriceTable,
    pub metrics: &'a Metrics,
    pub shards: u32,
}

impl Messages<'_> {
    pub async fn record(&self, body: &MessageBody) -> Result<MessageResult, MessageError> {
        let snapshot = self.catalog.snapshot();
        let advertiser = AdvertiserId::parse(&body.advertiser_id)
            .and_then(|id| snapshot.advertiser(&id).cloned())
            .ok_or(MessageError::UnknownAdvertiser)?;
        let user = UserId::parse(&body.user)?;
        if body.id.is_empty()
            || body.id.len() > 128
            || !body.id.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(ValidationError::new(
                "invalid_message",
                "id must be 1-128 visible ASCII characters",
            )
            .into());
        }
        if body.country.len() != 2 || !body.country.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(ValidationError::new(
                "invalid_country",
                "country must be ISO 3166-1 alpha-2, e.g. IT",
            )
            .into());
        }
        let at_ms = ms_from_datetime(body.at.0);
        // Only an inbound carrying a click of *this* advertiser's ad opens a free entry point.
        let valid_click = match (&body.click_id, body.direction) {
            (Some(click), Direction::Inbound) => match parse_click_id(click, self.shards) {
                Some((shard, decision)) => {
                    self.store
                        .click_owner(shard, decision, at_ms)
                        .await?
                        .as_deref()
                        == Some(advertiser.id.as_str())
                }
                None => false,
            },
            _ => false,
        };
        let message = Message {
            direction: body.direction,
            kind: body.kind,
            category: body.category,
            at_ms,
            valid_click,
        };
        let shard = shard_of(user.as_str(), self.shards);
        let category_label = body.category.map(Category::as_str).unwrap_or("none");
        for _ in 0..ATTEMPTS {
            let (state, seen) = self
                .store
                .load_conversation(shard, advertiser.id.as_str(), user.as_str(), &body.id)
                .await?;
            if let Some(stored) = seen {
                self.metrics.message(category_label, "duplicate");
                return Ok(decode_result(&stored, "duplicate", &advertiser.currency));
            }
            let rating =
                messaging::rate(Conversation::decode(&state), &message).map_err(|err| {
                    self.metrics.message(category_label, "refused");
                    match err {
                        RatingError::OutsideServiceWindow => ValidationError::new(
                            "outside_service_window",
                            "a free-form message needs an open 24-hour customer-service window",
                        ),
                        RatingError::InvalidMessage(code) => {
                            ValidationError::new(code, format!("invalid message: {code}"))
                        }
                    }
                })?;
            let charge = match rating.category_billed {
                Some(category) if rating.chargeable => self.prices.price(&body.country, category),
                _ => 0,
            };
            let after = rating.conversation_after;
            let new_state = if after == Conversation::default() {
                String::new()
            } else {
                after.encode()
            };
            let state_ttl_ms = after
                .relevant_until_ms()
                .map_or(DAY_MS, |until| (until - at_ms).max(0) + DAY_MS);
            let result = encode_result(rating.reason, charge, rating.window_expires_ms);
            let date = body.at.0.date();
            let commit = MessageCommit {
                shard,
                advertiser: advertiser.id.as_str(),
                user: user.as_str(),
                message_id: &body.id,
                expected_state: &state,
                new_state,
                state_ttl_ms,
                result: result.clone(),
                category: rating.category_billed.map(Category::as_str).unwrap_or(""),
                country: &body.country,
                price_micros: charge,
                at_ms,
                month: day_key(date) / 100,
                direction: match body.direction {
                    Direction::Inbound => "inbound",
                    Direction::Outbound => "outbound",
                },
                reason: rating.reason.as_str(),
            };
            match self.store.commit_message(&commit).await? {
                MessageOutcome::Committed => {
                    self.metrics.message(category_label, rating.reason.as_str());
                    if charge > 0 {
                        self.metrics.message_charged();
                    }
                    return Ok(decode_result(&result, "accepted", &advertiser.currency));
                }
                MessageOutcome::Duplicate(stored) => {
                    self.metrics.message(category_label, "duplicate");
                    return Ok(decode_result(&stored, "duplicate", &advertiser.currency));
                }
                MessageOutcome::Conflict => continue,
            }
        }
        Err(StoreError::Unavailable("conversation kept changing; retry".into()).into())
    }
}

/// `reason|charge|window_expires_ms` (empty window when none).
fn encode_result(reason: Reason, charge: Micros, window: Option<Millis>) -> String {
    format!(
        "{}|{charge}|{}",
        reason.as_str(),
        window.map(|w| w.to_string()).unwrap_or_default()
    )
}

fn decode_result(raw: &str, status: &'static str, currency: &str) -> MessageResult {
    let mut parts = raw.split('|');
    let reason = match parts.next() {
        Some("inbound") => Reason::Inbound,
        Some("service_window") => Reason::ServiceWindow,
        Some("free_entry_point") => Reason::FreeEntryPoint,
        _ => Reason::Rated,
    };
    let charge = parts.next().and_then(|c| c.parse().ok()).unwrap_or(0);
    let window = parts
        .next()
        .and_then(|w| w.parse().ok())
        .map(datetime_from_ms);
    MessageResult {
        status,
        charge_micros: charge,
        currency: currency.to_owned(),
        reason: reason.as_str(),
        window_expires_at: window,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_round_trip() {
        let raw = encode_result(Reason::Rated, 61_000, Some(1_795_000_000_000));
        let result = decode_result(&raw, "duplicate", "EUR");
        assert_eq!(
            (result.reason, result.charge_micros, result.status),
            ("rated", 61_000, "duplicate")
        );
        assert_eq!(
            result.window_expires_at,
            Some(datetime_from_ms(1_795_000_000_000))
        );
        assert_eq!(
            decode_result(&encode_result(Reason::Inbound, 0, None), "accepted", "EUR")
                .window_expires_at,
            None
        );
    }
}
