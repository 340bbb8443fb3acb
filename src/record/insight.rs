//! Advertiser insight in the record: delivery counters and prices of sampled decisions, and
//! the sampled requests forecasts replay (see `crate::insight`). Written in one transaction per
//! flush, counters added to (`ON CONFLICT DO UPDATE`), in key order so concurrent nodes cannot
//! deadlock.

use std::collections::BTreeMap;

use sqlx::Row;

use super::{unavailable, Record};
use crate::clock::Millis;
use crate::store::StoreError;

/// Rows per statement: at four parameters a row, far below both databases' limits.
const ROWS_PER_STATEMENT: usize = 500;

/// One flush of sampled decisions.
#[derive(Debug, Default)]
pub struct InsightBatch {
    /// (campaign, hour, outcome code) -> decisions
    pub outcomes: BTreeMap<(String, Millis, String), i64>,
    /// (campaign, hour, cpm micros) -> decisions
    pub prices: BTreeMap<(String, Millis, i64), i64>,
    /// (id, at_ms, user key, request JSON)
    pub requests: Vec<(String, Millis, String, String)>,
}

impl InsightBatch {
    pub fn is_empty(&self) -> bool {
        self.outcomes.is_empty() && self.prices.is_empty() && self.requests.is_empty()
    }
}

/// A sampled request as kept: when, the user's keyed hash ('' for none) and the request.
#[derive(Debug, Clone)]
pub struct StoredRequest {
    pub at_ms: Millis,
    pub user_key: String,
    pub request: String,
}

fn placeholders(rows: usize, columns: usize) -> String {
    (0..rows)
        .map(|row| {
            let cells: Vec<String> = (1..=columns)
                .map(|c| format!("${}", row * columns + c))
                .collect();
            format!("({})", cells.join(","))
        })
        .collect::<Vec<_>>()
        .join(",")
}

impl Record {
    pub async fn write_insight(&self, batch: &InsightBatch) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let outcomes: Vec<_> = batch.outcomes.iter().collect();
        for chunk in outcomes.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO delivery_counters (campaign_id, hour_ms, outcome, decisions) VALUES {} \
                 ON CONFLICT (campaign_id, hour_ms, outcome) \
                 DO UPDATE SET decisions = delivery_counters.decisions + excluded.decisions",
                placeholders(chunk.len(), 4)
            );
            let mut query = sqlx::query(&sql);
            for ((campaign, hour, outcome), n) in chunk {
                query = query.bind(campaign).bind(*hour).bind(outcome).bind(**n);
            }
            query.execute(&mut *tx).await.map_err(unavailable)?;
        }
        let prices: Vec<_> = batch.prices.iter().collect();
        for chunk in prices.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO delivery_prices (campaign_id, hour_ms, cpm_micros, decisions) VALUES {} \
                 ON CONFLICT (campaign_id, hour_ms, cpm_micros) \
                 DO UPDATE SET decisions = delivery_prices.decisions + excluded.decisions",
                placeholders(chunk.len(), 4)
            );
            let mut query = sqlx::query(&sql);
            for ((campaign, hour, cpm), n) in chunk {
                query = query.bind(campaign).bind(*hour).bind(*cpm).bind(**n);
            }
            query.execute(&mut *tx).await.map_err(unavailable)?;
        }
        for chunk in batch.requests.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO sampled_requests (id, at_ms, user_key, request) VALUES {} \
                 ON CONFLICT (id) DO NOTHING",
                placeholders(chunk.len(), 4)
            );
            let mut query = sqlx::query(&sql);
            for (id, at, key, request) in chunk {
                query = query.bind(id).bind(*at).bind(key).bind(request);
            }
            query.execute(&mut *tx).await.map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)
    }

    /// Sampled decisions per outcome code for `campaign` ('' = every sampled decision) in
    /// `[from_ms, to_ms)`.
    pub async fn delivery_counts(
        &self,
        campaign: &str,
        from_ms: Millis,
        to_ms: Millis,
    ) -> Result<BTreeMap<String, i64>, StoreError> {
        let counts = self
            .decisions_by("delivery_counters", "outcome", campaign, from_ms, to_ms)
            .await?;
        Ok(counts.into_iter().collect())
    }

    /// What winners paid in the decisions `campaign` lost by bid: (CPM micros, decisions),
    /// cheapest first.
    pub async fn delivery_prices(
        &self,
        campaign: &str,
        from_ms: Millis,
        to_ms: Millis,
    ) -> Result<Vec<(i64, i64)>, StoreError> {
        self.decisions_by("delivery_prices", "cpm_micros", campaign, from_ms, to_ms)
            .await
    }

    /// Sampled decisions of `campaign` in `[from_ms, to_ms)` summed per `key` of `table` (one
    /// of this module's two tables and its key column), in key order.
    async fn decisions_by<K>(
        &self,
        table: &'static str,
        key: &'static str,
        campaign: &str,
        from_ms: Millis,
        to_ms: Millis,
    ) -> Result<Vec<(K, i64)>, StoreError>
    where
        K: for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
    {
        let sql = format!(
            "SELECT {key}, CAST(SUM(decisions) AS BIGINT) FROM {table} \
             WHERE campaign_id = $1 AND hour_ms >= $2 AND hour_ms < $3 \
             GROUP BY {key} ORDER BY {key}"
        );
        let rows = self.campaign_rows(&sql, campaign, from_ms, to_ms).await?;
        rows.into_iter()
            .map(|row| {
                Ok((
                    row.try_get(0).map_err(unavailable)?,
                    row.try_get(1).map_err(unavailable)?,
                ))
            })
            .collect()
    }

    /// A uniform sample of at most `limit` of the sampled requests at or after `since_ms`
    /// (their ids are random: the first `limit` by id), oldest first, and how many there are.
    pub async fn sampled_requests(
        &self,
        since_ms: Millis,
        limit: i64,
    ) -> Result<(Vec<StoredRequest>, u64), StoreError> {
        let total: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM sampled_requests WHERE at_ms >= $1")
                .bind(since_ms)
                .fetch_one(&self.pool)
                .await
                .map_err(unavailable)?;
        let rows = sqlx::query(
            "SELECT at_ms, user_key, request FROM sampled_requests WHERE at_ms >= $1 \
             ORDER BY id LIMIT $2",
        )
        .bind(since_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        let mut out: Vec<StoredRequest> = rows
            .into_iter()
            .map(|row| {
                Ok(StoredRequest {
                    at_ms: row.try_get(0).map_err(unavailable)?,
                    user_key: row.try_get(1).map_err(unavailable)?,
                    request: row.try_get(2).map_err(unavailable)?,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        out.sort_by_key(|r| r.at_ms);
        Ok((out, total as u64))
    }

    /// Drops the sampled requests of the user with this keyed hash (erasure).
    pub async fn delete_samples_of(&self, user_keys: &[&str]) -> Result<u64, StoreError> {
        // A few statements however many users: an erasure waits on this with insight flushes
        // held off (see `insight::Insight::forgetting`).
        let mut deleted = 0;
        for chunk in user_keys.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "DELETE FROM sampled_requests WHERE user_key IN ({}) AND user_key <> ''",
                placeholders(chunk.len(), 1)
            );
            let done = chunk
                .iter()
                .fold(sqlx::query(&sql), |query, key| query.bind(*key))
                .execute(&self.pool)
                .await
                .map_err(unavailable)?;
            deleted += done.rows_affected();
        }
        Ok(deleted)
    }

    /// Drops sampled requests older than `before_ms` (past the forecast basis period).
    pub async fn prune_sampled_requests(&self, before_ms: Millis) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM sampled_requests WHERE at_ms < $1")
            .bind(before_ms)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(done.rows_affected())
    }

    /// How many sampled requests carry the user's keyed hash (the right of access).
    pub async fn sampled_requests_of(&self, user_key: &str) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sampled_requests WHERE user_key = $1 AND user_key <> ''",
        )
        .bind(user_key)
        .fetch_one(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(n as u64)
    }
}
