//! The ledger in the record: every record exactly once, with the report counters it moves.
//!
//! [`Record::export`] writes a batch in one transaction: the records, unique by their stable
//! id (`ON CONFLICT DO NOTHING RETURNING id`: a record exported twice, by a retry after a crash
//! or by two nodes at once, is inserted once and counted once), then the counters of exactly
//! the rows inserted. Rows are written in id order and counters in key order, so concurrent
//! exporters take row locks in one order and cannot deadlock.
//!
//! Invoices are summed from the billed rows they list (one read), reports from the counters
//! (and reach from the rows' keyed user hashes), so an invoice equals its records to the micro
//! by construction.

use std::collections::{BTreeMap, HashSet};

use sqlx::Row;

use super::{unavailable, Database, Record};
use crate::clock::Millis;
use crate::domain::Micros;
use crate::ledger::reconcile::{LedgerKind, LedgerRecord};
use crate::ledger::report::DayCounters;
use crate::ledger::served::ServedKey;
use crate::store::StoreError;

const HOUR_MS: Millis = 3_600_000;
const DAY_MS: Millis = 86_400_000;
/// Rows per INSERT statement: at 17 parameters a row, far below both databases' limits.
const ROWS_PER_STATEMENT: usize = 500;
/// The counter columns, in the order of [`DayCounters::set`]'s indexes.
const COUNTERS: [&str; 11] = [
    "served",
    "rendered",
    "viewed",
    "clicks",
    "hides",
    "reports",
    "conversations",
    "messages",
    "spend_micros",
    "billed",
    "message_charges_micros",
];

/// What report rows are grouped by besides the campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grouping {
    Hour,
    Country,
    Os,
    AgeBand,
    Creative,
}

impl Grouping {
    fn column(self) -> &'static str {
        match self {
            Self::Hour => "hour_ms",
            Self::Country => "country",
            Self::Os => "os",
            Self::AgeBand => "age_band",
            Self::Creative => "creative_id",
        }
    }
}

/// One group's counters: `hour_ms` set when grouped by hour, `key` otherwise.
#[derive(Debug, Clone)]
pub struct CounterRow {
    pub hour_ms: Millis,
    pub key: String,
    pub counters: DayCounters,
}

/// One billed record of an invoice (API.md, `/v1/invoices/{month}/records`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BilledRecord {
    pub id: String,
    /// `impressions` or `messages`, as on the invoice lines.
    pub kind: &'static str,
    pub campaign_id: String,
    pub creative_id: String,
    pub category: String,
    pub country: String,
    pub at_ms: Millis,
    pub amount_micros: Micros,
}

/// Counter deltas of one report cell.
type Cell = (String, Millis, String, String, String, String);

fn cell_of(record: &LedgerRecord) -> Cell {
    // A message's country is its recipient's (the invoice groups charges by it), not a request
    // context's: reports file message charges under `unknown` (API.md).
    let country = match record.kind {
        LedgerKind::BusinessMessage | LedgerKind::MessageStatus => String::new(),
        _ => record.country.clone(),
    };
    (
        record.campaign.clone(),
        record.at_ms - record.at_ms.rem_euclid(HOUR_MS),
        country,
        record.os.clone(),
        record.age_band.clone(),
        record.creative.clone(),
    )
}

/// Which counters (indexes into [`COUNTERS`]) a record moves, and by how much.
fn moves(record: &LedgerRecord) -> Vec<(usize, i64)> {
    use crate::domain::event::EventType;
    match record.kind {
        LedgerKind::Event(EventType::Render) if record.price_micros > 0 => {
            vec![(1, 1), (9, 1), (8, record.price_micros)]
        }
        LedgerKind::Event(EventType::Render) => vec![(1, 1)],
        LedgerKind::Event(EventType::View) => vec![(2, 1)],
        LedgerKind::Event(EventType::Click) => vec![(3, 1)],
        LedgerKind::Event(EventType::Hide) => vec![(4, 1)],
        LedgerKind::Event(EventType::Report) => vec![(5, 1)],
        LedgerKind::Conversation => vec![(6, 1)],
        LedgerKind::ConversionMessage => vec![(7, 1)],
        LedgerKind::BusinessMessage | LedgerKind::MessageStatus
            if record.price_micros > 0 && !record.campaign.is_empty() =>
        {
            vec![(10, record.price_micros)]
        }
        LedgerKind::BusinessMessage | LedgerKind::MessageStatus => Vec::new(),
    }
}

impl Record {
    /// The deployment's secret named `name`, created on first use (every node reads the same).
    pub async fn deployment_key(&self, name: &str) -> Result<String, StoreError> {
        let fresh = crate::secrets::random("");
        sqlx::query(
            "INSERT INTO deployment_keys (name, secret) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(&fresh)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        sqlx::query_scalar("SELECT secret FROM deployment_keys WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await
            .map_err(unavailable)
    }

    /// Writes `records` (each once, whoever else writes them) and their counters, with the
    /// `served` counts, in one transaction. Answers how many records were new.
    pub async fn export(
        &self,
        records: &[&LedgerRecord],
        served: &[(ServedKey, u64)],
    ) -> Result<u64, StoreError> {
        let mut sorted: Vec<&LedgerRecord> = records.to_vec();
        sorted.sort_by(|a, b| a.id.cmp(&b.id));
        sorted.dedup_by(|a, b| a.id == b.id);
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let mut inserted: HashSet<String> = HashSet::new();
        for chunk in sorted.chunks(ROWS_PER_STATEMENT) {
            const COLUMNS: usize = 13;
            let mut sql = String::from(
                "INSERT INTO ledger_records (id, kind, advertiser_id, campaign_id, creative_id, \
                 category, country, os, age_band, user_key, at_ms, amount_micros, click_id) VALUES ",
            );
            for row in 0..chunk.len() {
                if row > 0 {
                    sql.push(',');
                }
                sql.push('(');
                for column in 0..COLUMNS {
                    if column > 0 {
                        sql.push(',');
                    }
                    sql.push_str(&format!("${}", row * COLUMNS + column + 1));
                }
                sql.push(')');
            }
            sql.push_str(" ON CONFLICT (id) DO NOTHING RETURNING id");
            let mut query = sqlx::query(&sql);
            for r in chunk {
                query = query
                    .bind(&r.id)
                    .bind(r.kind.as_str())
                    .bind(&r.advertiser)
                    .bind(&r.campaign)
                    .bind(&r.creative)
                    .bind(&r.category)
                    .bind(&r.country)
                    .bind(&r.os)
                    .bind(&r.age_band)
                    .bind(&r.user_key)
                    .bind(r.at_ms)
                    .bind(r.price_micros)
                    .bind(&r.click_id);
            }
            for row in query.fetch_all(&mut *tx).await.map_err(unavailable)? {
                inserted.insert(row.try_get::<String, _>(0).map_err(unavailable)?);
            }
        }
        // A conversion an earlier build exported without its click id, written again (an
        // embedded journal replayed): the click id is added, nothing counted again.
        for record in sorted
            .iter()
            .filter(|r| !r.click_id.is_empty() && !inserted.contains(&r.id))
        {
            sqlx::query("UPDATE ledger_records SET click_id = $1 WHERE id = $2 AND click_id = ''")
                .bind(&record.click_id)
                .bind(&record.id)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
        }
        let mut cells: BTreeMap<Cell, [i64; 11]> = BTreeMap::new();
        for record in sorted.iter().filter(|r| inserted.contains(&r.id)) {
            let moved = moves(record);
            if moved.is_empty() || record.campaign.is_empty() {
                continue;
            }
            let cell = cells.entry(cell_of(record)).or_default();
            for (index, by) in moved {
                cell[index] += by;
            }
        }
        for (key, n) in served {
            let cell = (
                key.campaign.clone(),
                key.hour_ms,
                key.coarse.country.clone(),
                key.coarse.os.clone(),
                key.coarse.age_band.clone(),
                key.creative.clone(),
            );
            cells.entry(cell).or_default()[0] += *n as i64;
        }
        // One statement per chunk of cells (each cell once per statement, as an upsert needs).
        let cells: Vec<(&Cell, &[i64; 11])> = cells.iter().collect();
        let columns = 6 + COUNTERS.len();
        for chunk in cells.chunks(ROWS_PER_STATEMENT) {
            let mut sql = format!(
                "INSERT INTO report_counters (campaign_id, hour_ms, country, os, age_band, \
                 creative_id, {}) VALUES ",
                COUNTERS.join(", ")
            );
            for row in 0..chunk.len() {
                sql.push_str(if row == 0 { "(" } else { ",(" });
                for column in 0..columns {
                    if column > 0 {
                        sql.push(',');
                    }
                    sql.push_str(&format!("${}", row * columns + column + 1));
                }
                sql.push(')');
            }
            sql.push_str(
                " ON CONFLICT (campaign_id, hour_ms, country, os, age_band, creative_id) DO UPDATE SET ",
            );
            sql.push_str(
                &COUNTERS
                    .iter()
                    .map(|c| format!("{c} = report_counters.{c} + excluded.{c}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            );
            let mut query = sqlx::query(&sql);
            for ((campaign, hour, country, os, age_band, creative), deltas) in chunk {
                query = query
                    .bind(campaign)
                    .bind(*hour)
                    .bind(country)
                    .bind(os)
                    .bind(age_band)
                    .bind(creative);
                for delta in deltas.iter() {
                    query = query.bind(*delta);
                }
            }
            query.execute(&mut *tx).await.map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(inserted.len() as u64)
    }

    /// A campaign's counters in `[from_ms, to_ms)`, grouped.
    pub async fn report_counters(
        &self,
        campaign: &str,
        from_ms: Millis,
        to_ms: Millis,
        grouping: Grouping,
    ) -> Result<Vec<CounterRow>, StoreError> {
        let column = grouping.column();
        let sums = COUNTERS
            .iter()
            .map(|c| format!("CAST(SUM({c}) AS BIGINT)"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT {column}, {sums} FROM report_counters \
             WHERE campaign_id = $1 AND hour_ms >= $2 AND hour_ms < $3 GROUP BY {column}"
        );
        let rows = self.campaign_rows(&sql, campaign, from_ms, to_ms).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let (hour_ms, key) = if grouping == Grouping::Hour {
                (
                    row.try_get::<i64, _>(0).map_err(unavailable)?,
                    String::new(),
                )
            } else {
                (0, row.try_get::<String, _>(0).map_err(unavailable)?)
            };
            let mut counters = DayCounters::default();
            for index in 0..COUNTERS.len() {
                let value: i64 = row.try_get(index + 1).map_err(unavailable)?;
                counters.set(index, value);
            }
            out.push(CounterRow {
                hour_ms,
                key,
                counters,
            });
        }
        Ok(out)
    }

    /// Distinct users with an accepted render of `campaign` in `[from_ms, to_ms)`: in all, and
    /// per UTC day (day number since the epoch).
    pub async fn reach(
        &self,
        campaign: &str,
        from_ms: Millis,
        to_ms: Millis,
    ) -> Result<(u64, BTreeMap<i64, u64>), StoreError> {
        const RENDERS: &str = "FROM ledger_records WHERE campaign_id = $1 AND kind = 'render' \
             AND user_key <> '' AND at_ms >= $2 AND at_ms < $3";
        let total: i64 = sqlx::query_scalar(&format!("SELECT COUNT(DISTINCT user_key) {RENDERS}"))
            .bind(campaign)
            .bind(from_ms)
            .bind(to_ms)
            .fetch_one(&self.pool)
            .await
            .map_err(unavailable)?;
        let by_day = format!(
            "SELECT at_ms / {DAY_MS}, COUNT(DISTINCT user_key) {RENDERS} GROUP BY at_ms / {DAY_MS}"
        );
        let rows = self
            .campaign_rows(&by_day, campaign, from_ms, to_ms)
            .await?;
        let mut days = BTreeMap::new();
        for row in rows {
            let day: i64 = row.try_get(0).map_err(unavailable)?;
            let users: i64 = row.try_get(1).map_err(unavailable)?;
            days.insert(day, users as u64);
        }
        Ok((total as u64, days))
    }

    /// Every record billed to `advertiser` in `[from_ms, to_ms)`, in byte order of id.
    pub async fn billed_records(
        &self,
        advertiser: &str,
        from_ms: Millis,
        to_ms: Millis,
    ) -> Result<Vec<BilledRecord>, StoreError> {
        // Byte order on both databases (PostgreSQL's default collation is the locale's).
        let order = match self.database {
            Database::Postgres => "id COLLATE \"C\"",
            Database::Sqlite => "id",
        };
        let rows = sqlx::query(&format!(
            "SELECT id, kind, campaign_id, creative_id, category, country, at_ms, amount_micros \
             FROM ledger_records WHERE advertiser_id = $1 AND amount_micros > 0 \
             AND kind IN ('render', 'business_message', 'message_status') \
             AND at_ms >= $2 AND at_ms < $3 ORDER BY {order}"
        ))
        .bind(advertiser)
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let kind: String = row.try_get(1).map_err(unavailable)?;
            let billed_as = if kind == "render" {
                "impressions"
            } else {
                "messages"
            };
            out.push(BilledRecord {
                id: row.try_get(0).map_err(unavailable)?,
                kind: billed_as,
                campaign_id: row.try_get(2).map_err(unavailable)?,
                creative_id: row.try_get(3).map_err(unavailable)?,
                category: row.try_get(4).map_err(unavailable)?,
                country: row.try_get(5).map_err(unavailable)?,
                at_ms: row.try_get(6).map_err(unavailable)?,
                amount_micros: row.try_get(7).map_err(unavailable)?,
            });
        }
        Ok(out)
    }

    /// Billed spend per campaign: in all, and since `day_start_ms` (today's).
    pub async fn spend_by_campaign(
        &self,
        day_start_ms: Millis,
    ) -> Result<BTreeMap<String, (Micros, Micros)>, StoreError> {
        let rows = sqlx::query(
            "SELECT campaign_id, CAST(SUM(amount_micros) AS BIGINT), \
             CAST(SUM(CASE WHEN at_ms >= $1 THEN amount_micros ELSE 0 END) AS BIGINT) \
             FROM ledger_records WHERE kind = 'render' AND amount_micros > 0 GROUP BY campaign_id",
        )
        .bind(day_start_ms)
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        let mut out = BTreeMap::new();
        for row in rows {
            out.insert(
                row.try_get(0).map_err(unavailable)?,
                (
                    row.try_get(1).map_err(unavailable)?,
                    row.try_get(2).map_err(unavailable)?,
                ),
            );
        }
        Ok(out)
    }

    /// How many ledger records the record holds (tests and `statusads reconcile`).
    pub async fn ledger_count(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ledger_records")
            .fetch_one(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(n as u64)
    }

    /// The records linked to the user whose keyed hash is `user_key`: how many, and the
    /// decision ids of their clicks (where the hot store keeps click owners).
    pub async fn linked_to(&self, user_key: &str) -> Result<(u64, Vec<String>), StoreError> {
        let ids: Vec<(String, String)> = sqlx::query_as(
            "SELECT id, kind FROM ledger_records WHERE user_key = $1 AND user_key <> ''",
        )
        .bind(user_key)
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        let clicks = ids
            .iter()
            .filter(|(_, kind)| kind == "click")
            .filter_map(|(id, _)| id.strip_suffix(":click").map(str::to_owned))
            .collect();
        Ok((ids.len() as u64, clicks))
    }

    /// Unlinks the user whose keyed hash is `user_key` from every record: the records stay
    /// (invoices read them), no longer countable as that user's. Answers how many changed.
    pub async fn unlink(&self, user_key: &str) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE ledger_records SET user_key = '' WHERE user_key = $1 AND user_key <> ''",
        )
        .bind(user_key)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(done.rows_affected())
    }

    /// Clears the keyed hash of every record older than `before_ms` (its retention is over):
    /// the records stay, no longer countable towards reach. Answers how many changed.
    pub async fn clear_user_keys_before(&self, before_ms: Millis) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE ledger_records SET user_key = '' WHERE user_key <> '' AND at_ms < $1",
        )
        .bind(before_ms)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(done.rows_affected())
    }
}
