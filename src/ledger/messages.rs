//! Business messages: each message the messaging platform reports is rated by
//! [`crate::messaging::rate`] against the stored (advertiser, user) conversation, priced by the
//! rule set in force at its time, and recorded with its charge in the ledger, once per message
//! id. Rating happens in Rust; the store commits it only if the conversation did not change
//! meanwhile (else it is rated again), so concurrent messages of one conversation are rated in
//! some serial order and a duplicate id is charged once. Everything of one advertiser's messages
//! lives in the advertiser's shard, where the store decides atomically what only it can know:
//! the tier (the month's count), and whether a business-initiated template fits the limit.
//!
//! Only delivered messages are charged: a message recorded as `sent` holds a pending charge
//! until its delivery status makes it final (`delivered`, `read`) or void (`failed`), once.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::conversions::parse_click_id;
use crate::capping::shard_of;
use crate::catalog::Catalog;
use crate::clock::{datetime_from_ms, SharedClock};
use crate::codes;
use crate::domain::campaign::Rfc3339;
use crate::domain::ids::AdvertiserId;
use crate::domain::{Micros, UserId, ValidationError};
use crate::messaging::rules::RuleBook;
use crate::messaging::{
    self, Category, Conversation, Direction, Message, MessageKind, RatingError, Reason,
};
use crate::metrics::{MessageCategory, MessageFate, Metrics, SettleStatus};
use crate::store::{
    MessageCommit, MessageOutcome, SettleOutcome, SettleWrite, Store, StoreError, StoredMessage,
};

const ATTEMPTS: usize = 5;
/// What a message's delivery-status ledger record appends to the message's record id
/// (`message_status.lua` writes it too).
pub const STATUS_SUFFIX: &str = ":status";

/// Whether the platform reports the message delivered already or only sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    #[default]
    Delivered,
    Sent,
}

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
    #[serde(default)]
    pub delivery: Delivery,
}

#[derive(Debug, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct MessageResult {
    pub status: &'static str,
    /// Final: what is charged; pending: what it would cost if delivered now.
    pub charge_micros: Micros,
    pub currency: String,
    pub reason: &'static str,
    #[serde(with = "time::serde::rfc3339::option")]
    pub window_expires_at: Option<OffsetDateTime>,
    /// `final`, `pending` (sent, not yet delivered) or `void` (delivery failed).
    pub billing: String,
    /// The `effective_from` of the rule set that rated it.
    pub rule_set: String,
    /// The volume tier (1-based) when its (country, category) has tiers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<u32>,
}

/// The delivery status the messaging platform reports for a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Delivered,
    Read,
    Failed,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusBody {
    pub advertiser_id: String,
    pub status: DeliveryStatus,
    pub at: Rfc3339,
}

#[derive(Debug, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct StatusResult {
    /// `accepted` when this status settled the charge, `duplicate` when it was settled before.
    pub status: &'static str,
    /// `final` (charged) or `void`.
    pub billing: String,
    pub charge_micros: Micros,
}

#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("unknown advertiser or message")]
    NotFound,
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The advertiser's currency has no exchange rate: the rate card cannot price it.
    #[error("currency {0} has no exchange rate")]
    UnpricedCurrency(String),
}

pub struct Messages<'a> {
    pub store: &'a Store,
    pub catalog: &'a Catalog,
    pub rules: &'a RuleBook,
    pub metrics: &'a Metrics,
    pub shards: u32,
    /// Now: when a message is written (its dedupe window runs from here).
    pub clock: &'a SharedClock,
}

impl Messages<'_> {
    pub async fn record(&self, body: &MessageBody) -> Result<MessageResult, MessageError> {
        let snapshot = self.catalog.snapshot();
        let advertiser = AdvertiserId::parse(&body.advertiser_id)
            .and_then(|id| snapshot.advertiser(&id).cloned())
            .ok_or(MessageError::NotFound)?;
        let user = UserId::parse(&body.user)?;
        // The ledger names a message's delivery status `<its record id>:status`: an id with
        // that ending would share the record id of another message's status, and one of the
        // two charges would be dropped as a repeat.
        if body.id.is_empty()
            || body.id.len() > 128
            || !body.id.bytes().all(|b| b.is_ascii_graphic())
            || body.id.ends_with(STATUS_SUFFIX)
        {
            return Err(ValidationError::new(
                codes::INVALID_MESSAGE,
                "id must be 1-128 visible ASCII characters, not ending in \":status\"",
            )
            .into());
        }
        if body.country.len() != 2 || !body.country.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(ValidationError::new(
                codes::INVALID_COUNTRY,
                "country must be ISO 3166-1 alpha-2, e.g. IT",
            )
            .into());
        }
        let at_ms = super::event_time(body.at.0)?;
        // Only an inbound carrying a click of *this* advertiser's ad opens a free entry point.
        let click_campaign = match (&body.click_id, body.direction) {
            (Some(click), Direction::Inbound) => match parse_click_id(click, self.shards) {
                Some((shard, decision)) => self
                    .store
                    .click_owner(shard, decision, at_ms)
                    .await?
                    .filter(|owner| owner.advertiser == advertiser.id.as_str())
                    .map(|owner| owner.campaign),
                None => None,
            },
            _ => None,
        };
        let message = Message {
            direction: body.direction,
            kind: body.kind,
            category: body.category,
            at_ms,
            click_campaign: click_campaign.as_deref(),
        };
        let rules = self.rules.in_force(at_ms);
        // The advertiser's shard: its counts and limit are one script's keys.
        let shard = shard_of(advertiser.id.as_str(), self.shards);
        let category_label = MessageCategory::from(body.category);
        let currency = &advertiser.currency;
        for _ in 0..ATTEMPTS {
            let (state, seen) = self
                .store
                .load_conversation(shard, advertiser.id.as_str(), user.as_str(), &body.id)
                .await?;
            if let Some(stored) = seen {
                self.metrics.message(category_label, MessageFate::Duplicate);
                return Ok(answer(&decode(&stored)?, "duplicate", currency));
            }
            let mut rating = messaging::rate(&Conversation::decode(&state), &message, rules.window)
                .map_err(|err| {
                    self.metrics.message(category_label, MessageFate::Refused);
                    match err {
                        RatingError::OutsideServiceWindow => ValidationError::new(
                            codes::OUTSIDE_SERVICE_WINDOW,
                            "a free-form message needs an open 24-hour customer-service window",
                        ),
                        RatingError::InvalidMessage(code) => {
                            ValidationError::new(code, format!("invalid message: {code}"))
                        }
                    }
                })?;
            // The rate card is in the service currency; the advertiser is charged in its own
            // (a free message needs no rate).
            let charge = match rules.charge(&rating, &body.country) {
                Some(charge) => Some(charge.in_currency(
                    snapshot.money().rate(currency).ok_or_else(|| {
                        self.metrics.message(category_label, MessageFate::Refused);
                        MessageError::UnpricedCurrency(currency.clone())
                    })?,
                )),
                None => None,
            };
            if !self.rules.keeps_lapsed_windows() {
                rating.conversation_after.earlier_windows.clear();
            }
            let after = &rating.conversation_after;
            let new_state = if *after == Conversation::default() {
                String::new()
            } else {
                after.encode()
            };
            // Counted from now, as the store applies it: a message dated ahead (or reported
            // late) keeps its state until its window ends and LATE_MS more, no shorter or longer.
            let now_ms = self.clock.now_ms();
            let state_ttl_ms = after
                .relevant_until_ms()
                .map_or(messaging::LATE_MS, |until| {
                    (until - now_ms).max(0) + messaging::LATE_MS
                });
            // The UTC day, whatever offset the platform wrote: it picks the invoice month.
            let day = crate::clock::utc_day(at_ms);
            let stored = StoredMessage {
                reason: rating.reason.as_str().to_owned(),
                window_expires_ms: rating.window_expires_ms,
                rule_set: rules.name.clone(),
                billing: String::new(),
                charge_micros: 0,
                tier: None,
                month: day / 100,
                day,
                line: charge.as_ref().map(|c| c.line).unwrap_or("").to_owned(),
                country: body.country.clone(),
                counter: charge
                    .as_ref()
                    .map(|c| c.counter.clone())
                    .unwrap_or_default(),
                schedule: charge
                    .as_ref()
                    .map(|c| c.schedule.encode())
                    .unwrap_or_default(),
                campaign: rating
                    .campaign
                    .clone()
                    .filter(|_| charge.is_some())
                    .unwrap_or_default(),
                at_ms,
                tiered: charge.as_ref().is_some_and(|c| c.tiered),
            };
            let commit = MessageCommit {
                shard,
                now_ms,
                advertiser: advertiser.id.as_str(),
                user: user.as_str(),
                message_id: &body.id,
                expected_state: &state,
                new_state,
                state_ttl_ms,
                stored,
                deliver: body.delivery == Delivery::Delivered,
                direction: match body.direction {
                    Direction::Inbound => "inbound",
                    Direction::Outbound => "outbound",
                },
                limit: advertiser
                    .messaging_limit
                    .filter(|_| rating.business_initiated),
            };
            match self.store.commit_message(&commit).await? {
                MessageOutcome::Committed(stored) => {
                    self.metrics.message(category_label, rating.reason.into());
                    if stored.charge_micros > 0 && stored.billing == "final" {
                        self.metrics.message_charged();
                    }
                    return Ok(answer(&stored, "accepted", currency));
                }
                MessageOutcome::Duplicate(stored) => {
                    self.metrics.message(category_label, MessageFate::Duplicate);
                    return Ok(answer(&stored, "duplicate", currency));
                }
                MessageOutcome::LimitReached => {
                    self.metrics.message(category_label, MessageFate::Refused);
                    return Err(ValidationError::new(
                        codes::MESSAGING_LIMIT_REACHED,
                        "the advertiser's business-initiated messaging limit (distinct users in 24 hours) is reached",
                    )
                    .into());
                }
                MessageOutcome::Conflict => continue,
            }
        }
        Err(StoreError::unavailable("conversation kept changing; retry").into())
    }

    /// Applies a delivery status to a message recorded as sent: the first one settles its
    /// charge; a later one (or one for a message charged on arrival) is a duplicate.
    pub async fn settle(
        &self,
        message_id: &str,
        body: &StatusBody,
    ) -> Result<StatusResult, MessageError> {
        let snapshot = self.catalog.snapshot();
        let advertiser = AdvertiserId::parse(&body.advertiser_id)
            .and_then(|id| snapshot.advertiser(&id).cloned())
            .ok_or(MessageError::NotFound)?;
        super::event_time(body.at.0)?;
        let shard = shard_of(advertiser.id.as_str(), self.shards);
        let adv = advertiser.id.as_str();
        let stored = self
            .store
            .message_state(shard, adv, message_id)
            .await?
            .ok_or(MessageError::NotFound)?;
        let month = decode(&stored)?.month;
        let write = SettleWrite {
            shard,
            advertiser: adv,
            message_id,
            month,
            void: body.status == DeliveryStatus::Failed,
        };
        let (status, stored) = match self.store.settle_message(&write).await? {
            SettleOutcome::Settled(stored) => (SettleStatus::Accepted, stored),
            SettleOutcome::Duplicate(stored) => (SettleStatus::Duplicate, stored),
            SettleOutcome::Unknown => return Err(MessageError::NotFound),
        };
        self.metrics.message_status(status, &stored.billing);
        let status = status.as_str();
        Ok(StatusResult {
            status,
            billing: stored.billing,
            charge_micros: stored.charge_micros,
        })
    }
}

fn decode(raw: &str) -> Result<StoredMessage, StoreError> {
    StoredMessage::decode(raw).ok_or_else(|| StoreError::corrupt(format!("stored message {raw:?}")))
}

fn answer(stored: &StoredMessage, status: &'static str, currency: &str) -> MessageResult {
    MessageResult {
        status,
        charge_micros: stored.charge_micros,
        currency: currency.to_owned(),
        reason: Reason::parse(&stored.reason)
            .unwrap_or(Reason::Rated)
            .as_str(),
        window_expires_at: stored.window_expires_ms.map(datetime_from_ms),
        billing: stored.billing.clone(),
        rule_set: stored.rule_set.clone(),
        tier: stored.tier,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_messages_round_trip_and_earlier_results_read_as_final() {
        let stored = StoredMessage {
            reason: "rated".into(),
            window_expires_ms: Some(1_795_000_000_000),
            rule_set: "2025-07-01".into(),
            billing: "pending".into(),
            charge_micros: 61_000,
            tier: Some(2),
            month: 202611,
            day: 20261126,
            line: "marketing".into(),
            country: "IT".into(),
            counter: "marketing:IT".into(),
            schedule: "1:61000".into(),
            campaign: "cmp_00000000000000aa".into(),
            at_ms: 1_795_000_000_000,
            tiered: true,
        };
        assert_eq!(StoredMessage::decode(&stored.encode()), Some(stored));
        let old = decode("rated|61000|1795000000000").unwrap();
        let result = answer(&old, "duplicate", "EUR");
        assert_eq!(
            (result.reason, result.charge_micros, result.billing.as_str()),
            ("rated", 61_000, "final")
        );
        assert_eq!(
            result.window_expires_at,
            Some(datetime_from_ms(1_795_000_000_000))
        );
        assert!(decode("nonsense").is_err());
    }
}
