//! Reconciliation: recompute every counter and spend figure from the ledger records alone,
//! compare with the derived state the event script maintains, report differences and (with
//! `repair`) overwrite the derived state. Run `--repair` with traffic stopped: records appended
//! while it runs would be counted in one view and not the other.
//!
//! `served` counts are not ledger events (a decision is not billable) and are left alone.

use std::collections::{BTreeMap, HashSet};

use crate::clock::{utc_day, Millis};
use crate::domain::event::EventType;
use crate::domain::Micros;
use crate::store::{DayCounters, Store, StoreError};

/// What a ledger record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerRecord {
    pub id: String,
    pub kind: LedgerKind,
    /// Business messages: the click-to-chat campaign their conversation came from ("" when
    /// none; they belong to the advertiser).
    pub campaign: String,
    pub advertiser: String,
    /// Business messages: the billed category ("" when free) and the country.
    pub category: String,
    pub country: String,
    pub price_micros: Micros,
    pub at_ms: Millis,
}

/// The state the event script derives from records, keyed as stored.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Derived {
    /// `<campaign>|<day>|<stat>` for the stats records move (r, v, c, h, p, b, $, cv, m, mc).
    pub stats: BTreeMap<String, i64>,
    pub spend_total: BTreeMap<String, i64>,
    pub spend_day: BTreeMap<(u32, String), i64>,
    /// (`YYYYMM`, `<advertiser>|<category>|<country>|q|$`) of charged business messages.
    pub message_billing: BTreeMap<(u32, String), i64>,
}

/// Stats that come from ledger records (not `s`, served).
pub const EVENT_STATS: [&str; 10] = ["r", "v", "c", "h", "p", "b", "$", "cv", "m", "mc"];

impl Derived {
    pub fn from_records<'a>(records: impl IntoIterator<Item = &'a LedgerRecord>) -> (Self, u64) {
        let mut derived = Self::default();
        let mut seen = HashSet::new();
        let mut duplicates = 0;
        for record in records {
            if !seen.insert(record.id.as_str()) {
                // Never billed twice: a duplicate record is reported and not counted again.
                duplicates += 1;
                continue;
            }
            derived.add(record);
        }
        (derived, duplicates)
    }

    fn add(&mut self, record: &LedgerRecord) {
        let day = utc_day(record.at_ms);
        let mut stat = |name: &str, by: i64| {
            *self
                .stats
                .entry(format!("{}|{day}|{name}", record.campaign))
                .or_default() += by;
        };
        match record.kind {
            LedgerKind::Event(kind) => {
                stat(DayCounters::field_of(kind), 1);
                if record.price_micros > 0 {
                    stat("b", 1);
                    stat("$", record.price_micros);
                    *self.spend_total.entry(record.campaign.clone()).or_default() +=
                        record.price_micros;
                    *self
                        .spend_day
                        .entry((day, record.campaign.clone()))
                        .or_default() += record.price_micros;
                }
            }
            LedgerKind::Conversation => stat("cv", 1),
            LedgerKind::ConversionMessage => stat("m", 1),
            LedgerKind::BusinessMessage | LedgerKind::MessageStatus if record.price_micros > 0 => {
                if !record.campaign.is_empty() {
                    stat("mc", record.price_micros);
                }
                let month = day / 100;
                let field = format!(
                    "{}|{}|{}",
                    record.advertiser, record.category, record.country
                );
                *self
                    .message_billing
                    .entry((month, format!("{field}|q")))
                    .or_default() += 1;
                *self
                    .message_billing
                    .entry((month, format!("{field}|$")))
                    .or_default() += record.price_micros;
            }
            LedgerKind::BusinessMessage | LedgerKind::MessageStatus => {}
        }
    }

    /// Human-readable differences between what the ledger says (`self`) and `actual`.
    pub fn differences(&self, actual: &Derived) -> Vec<String> {
        fn diff<K: Ord + std::fmt::Debug>(
            what: &str,
            want: &BTreeMap<K, i64>,
            have: &BTreeMap<K, i64>,
            out: &mut Vec<String>,
        ) {
            let keys: std::collections::BTreeSet<&K> = want.keys().chain(have.keys()).collect();
            for key in keys {
                let (w, h) = (
                    want.get(key).copied().unwrap_or(0),
                    have.get(key).copied().unwrap_or(0),
                );
                if w != h {
                    out.push(format!(
                        "{what} {key:?}: ledger says {w}, derived state has {h}"
                    ));
                }
            }
        }
        let mut out = Vec::new();
        diff("stat", &self.stats, &actual.stats, &mut out);
        diff("spend", &self.spend_total, &actual.spend_total, &mut out);
        diff("spend on day", &self.spend_day, &actual.spend_day, &mut out);
        diff(
            "message billing",
            &self.message_billing,
            &actual.message_billing,
            &mut out,
        );
        out
    }
}

#[derive(Debug, Default)]
pub struct ReconcileReport {
    pub records: u64,
    pub duplicates: u64,
    pub differences: Vec<String>,
    pub repaired: bool,
}

/// Reconciles every shard of the store.
pub async fn reconcile(
    store: &Store,
    shards: u32,
    repair: bool,
) -> Result<ReconcileReport, StoreError> {
    let mut report = ReconcileReport {
        repaired: repair,
        ..ReconcileReport::default()
    };
    for shard in 0..shards {
        let Some(records) = store.ledger_records(shard).await? else {
            // The embedded backend rebuilds derived state from its journal at every start.
            return Ok(report);
        };
        report.records += records.len() as u64;
        let (expected, duplicates) = Derived::from_records(&records);
        report.duplicates += duplicates;
        let actual = store.derived_state(shard).await?;
        let differences = expected.differences(&actual);
        if repair && !differences.is_empty() {
            store.write_derived(shard, &expected, &actual).await?;
        }
        report.differences.extend(
            differences
                .into_iter()
                .map(|d| format!("shard {shard}: {d}")),
        );
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, kind: EventType, price: Micros) -> LedgerRecord {
        LedgerRecord {
            id: id.into(),
            kind: LedgerKind::Event(kind),
            campaign: "cmp_a".into(),
            advertiser: "adv_a".into(),
            category: String::new(),
            country: String::new(),
            price_micros: price,
            at_ms: 1_795_000_000_000,
        }
    }

    #[test]
    fn derives_counters_and_ignores_duplicate_records() {
        let records = [
            record("d1:render", EventType::Render, 500),
            record("d1:render", EventType::Render, 500),
            record("d1:view", EventType::View, 0),
            record("d2:render", EventType::Render, 700),
        ];
        let (derived, duplicates) = Derived::from_records(&records);
        assert_eq!(duplicates, 1);
        let day = utc_day(1_795_000_000_000);
        assert_eq!(derived.stats[&format!("cmp_a|{day}|r")], 2);
        assert_eq!(derived.stats[&format!("cmp_a|{day}|b")], 2);
        assert_eq!(derived.stats[&format!("cmp_a|{day}|$")], 1200);
        assert_eq!(derived.spend_total["cmp_a"], 1200);

        let mut drifted = derived.clone();
        drifted.spend_total.insert("cmp_a".into(), 1199);
        drifted.stats.insert("cmp_b|20260101|r".into(), 3);
        let diffs = derived.differences(&drifted);
        assert_eq!(diffs.len(), 2, "{diffs:?}");
        assert!(derived.differences(&derived).is_empty());
    }
}
