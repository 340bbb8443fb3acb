//! Ledger records as the outbox carries them, and reconciliation: the spend the hot store keeps
//! for budgets (moved by the event script with every billed render) against the ledger in the
//! system of record. Reports and invoices read the record itself, so spend is the one derived
//! figure left to reconcile.

use std::collections::BTreeSet;

use crate::clock::{utc_day, Millis};
use crate::domain::event::EventType;
use crate::domain::ids::CampaignId;
use crate::domain::Micros;
use crate::record::exporter::export_waiting;
use crate::record::Record;
use crate::store::{Store, StoreError};

/// What a ledger record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum LedgerKind {
    Event(EventType),
    /// A click-to-chat conversation started (`conversation_started`).
    Conversation,
    /// A message through a click-to-chat ad (`message`).
    ConversionMessage,
    /// A rated business message (`business_message`), charged (when final at once) or not.
    BusinessMessage,
    /// The delivery status of a message recorded as sent (`message_status`): its final charge,
    /// or 0 when voided.
    MessageStatus,
}

impl LedgerKind {
    /// The `type` a record is stored under (the inverse of [`LedgerKind::parse`]).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Event(kind) => kind.as_str(),
            Self::Conversation => "conversation_started",
            Self::ConversionMessage => "message",
            Self::BusinessMessage => "business_message",
            Self::MessageStatus => "message_status",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "conversation_started" => Self::Conversation,
            "message" => Self::ConversionMessage,
            "business_message" => Self::BusinessMessage,
            "message_status" => Self::MessageStatus,
            other => Self::Event(
                serde_json::from_value(serde_json::Value::String(other.to_owned())).ok()?,
            ),
        })
    }
}

/// One ledger record as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LedgerRecord {
    pub id: String,
    pub kind: LedgerKind,
    /// Business messages: the click-to-chat campaign their conversation came from ("" when
    /// none; they belong to the advertiser).
    pub campaign: String,
    pub advertiser: String,
    /// Business messages: the billed category ("" when free).
    pub category: String,
    /// Business messages: the recipient's country; events: the decision's ("" = unknown).
    pub country: String,
    pub price_micros: Micros,
    pub at_ms: Millis,
    /// Events: the creative, the decision's OS and age band and the user's reach key (see
    /// `domain::audience`), "" where unknown or not applicable.
    pub creative: String,
    pub os: String,
    pub age_band: String,
    pub user_key: String,
    /// Click-to-chat conversions: the click id they were reported with ("" otherwise).
    #[serde(default)]
    pub click_id: String,
}

/// Reconciliation's finding: what the record holds and where hot spend differs from it.
#[derive(Debug, Default)]
pub struct ReconcileReport {
    /// Ledger records in the system of record.
    pub records: u64,
    /// Records reconcile found waiting in the outbox and exported first.
    pub exported: u64,
    /// `campaign: record says X, hot store has Y`, for total and today's spend.
    pub differences: Vec<String>,
    pub repaired: bool,
}

/// Compares the hot store's spend (what budgets read) with the ledger in the record, for every
/// campaign, in all and for the UTC day of `now_ms`. Whatever waits in the outbox is exported
/// first, so a quiet deployment compares like with like. With `repair`, the hot spend of each
/// differing campaign is set to the record's (run it with traffic stopped). No per-shard
/// pattern SCAN: one pipelined read of the spend hashes and one grouped query.
pub async fn reconcile(
    store: &Store,
    record: &Record,
    now_ms: Millis,
    repair: bool,
) -> Result<ReconcileReport, StoreError> {
    let exported = export_waiting(store, record, Vec::new())
        .await
        .map_err(|(err, _)| err)?;
    let day = utc_day(now_ms);
    let day_start = now_ms - now_ms.rem_euclid(86_400_000);
    let expected = record.spend_by_campaign(day_start).await?;
    let actual = store.spend(day).await?;
    let mut campaigns: BTreeSet<String> = expected.keys().cloned().collect();
    campaigns.extend(actual.keys().map(|c| c.to_string()));
    let mut report = ReconcileReport {
        records: record.ledger_count().await?,
        exported: exported.inserted,
        repaired: repair,
        ..ReconcileReport::default()
    };
    let mut fixes = Vec::new();
    for campaign in campaigns {
        let (total, today) = expected.get(&campaign).copied().unwrap_or((0, 0));
        let hot = CampaignId::parse(&campaign)
            .and_then(|id| actual.get(&id).copied())
            .unwrap_or_default();
        if hot.total_micros != total {
            report.differences.push(format!(
                "spend of {campaign}: the record says {total}, the hot store has {}",
                hot.total_micros
            ));
        }
        if hot.today_micros != today {
            report.differences.push(format!(
                "spend of {campaign} on {day}: the record says {today}, the hot store has {}",
                hot.today_micros
            ));
        }
        if hot.total_micros != total || hot.today_micros != today {
            fixes.push((campaign, total, today));
        }
    }
    if repair && !fixes.is_empty() {
        store.set_spend(day, &fixes).await?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_stored_names() {
        for kind in [
            LedgerKind::Event(EventType::Render),
            LedgerKind::Event(EventType::Report),
            LedgerKind::Conversation,
            LedgerKind::ConversionMessage,
            LedgerKind::BusinessMessage,
            LedgerKind::MessageStatus,
        ] {
            assert_eq!(LedgerKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(LedgerKind::parse("served"), None);
    }
}
