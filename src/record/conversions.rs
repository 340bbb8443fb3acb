//! Click-to-chat conversions in the record: each conversion's ledger record carries the click
//! id it was reported with, and the advertiser's conversions API lists them from here, one
//! indexed range read however many shards and days the range spans.
//!
//! Earlier builds wrote conversion records without a click id and kept the ids in a hot-store
//! log per shard and day. Their records still in an outbox get one as they are exported (the
//! click id names the shard and the decision, see `store::redis`); those already in the record
//! get one from that log, once ([`move_earlier_click_ids`]). The log is left to expire: a node
//! of the earlier build still running (a rolling deploy) keeps writing it and reading it.

use sqlx::Row;

use super::{unavailable, Record};
use crate::clock::{day_key, Millis};
use crate::ledger::conversions::parse_click_id;
use crate::store::{ConversionRecord, Store, StoreError, CONVERSION_LOG_MS};

/// The name the click-id move is noted under in `record_upgrades`.
const CLICK_IDS: &str = "conversion_click_ids";

impl Record {
    /// `advertiser`'s conversions with `from_ms <= at < to_ms`, of one campaign when given,
    /// oldest first.
    pub async fn conversions(
        &self,
        advertiser: &str,
        campaign: Option<&str>,
        from_ms: Millis,
        to_ms: Millis,
    ) -> Result<Vec<ConversionRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT click_id, campaign_id, kind, at_ms FROM ledger_records \
             WHERE advertiser_id = $1 AND click_id <> '' AND at_ms >= $2 AND at_ms < $3 \
             AND ($4 = '' OR campaign_id = $4) ORDER BY at_ms, id",
        )
        .bind(advertiser)
        .bind(from_ms)
        .bind(to_ms)
        .bind(campaign.unwrap_or(""))
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        rows.iter()
            .map(|row| {
                Ok(ConversionRecord {
                    click_id: row.try_get(0).map_err(unavailable)?,
                    campaign: row.try_get(1).map_err(unavailable)?,
                    kind: row.try_get(2).map_err(unavailable)?,
                    at_ms: row.try_get(3).map_err(unavailable)?,
                })
            })
            .collect()
    }

    async fn upgrade_done(&self, name: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT done_ms FROM record_upgrades WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(row.is_some())
    }

    async fn note_upgrade(&self, name: &str, now_ms: Millis) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO record_upgrades (name, done_ms) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(now_ms)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    /// Puts `click_id` on the conversion record(s) of `decision`'s click: its conversation, or
    /// every message through it. Answers how many records took it.
    async fn add_click_id(
        &self,
        decision: &str,
        kind: &str,
        click_id: &str,
    ) -> Result<u64, StoreError> {
        let query = if kind == "conversation_started" {
            sqlx::query("UPDATE ledger_records SET click_id = $1 WHERE id = $2 AND click_id = ''")
                .bind(click_id)
                .bind(format!("{decision}:conversation"))
        } else {
            // The ids `<decision>:message:<n>` as a key range (';' follows ':'), which the
            // primary key's index serves; LIKE would scan under some collations.
            sqlx::query(
                "UPDATE ledger_records SET click_id = $1 \
                 WHERE id >= $2 AND id < $3 AND click_id = ''",
            )
            .bind(click_id)
            .bind(format!("{decision}:message:"))
            .bind(format!("{decision}:message;"))
        };
        Ok(query
            .execute(&self.pool)
            .await
            .map_err(unavailable)?
            .rows_affected())
    }
}

/// Copies the click ids an earlier build kept in its hot conversion log (the days it kept)
/// onto conversion records that lack one, once per deployment (noted in `record_upgrades`;
/// re-running it, after a crash midway or by two nodes at once, is harmless). Called after an
/// export round that drained the outboxes. Records an earlier-build node exports after it ran
/// (a rolling deploy still under way) keep no click id until it runs again: delete its note and
/// restart a node. Answers the records that took a click id (`None` when it had run before).
pub async fn move_earlier_click_ids(
    store: &Store,
    record: &Record,
    shards: u32,
    now_ms: Millis,
) -> Result<Option<u64>, StoreError> {
    if record.upgrade_done(CLICK_IDS).await? {
        return Ok(None);
    }
    const DAY_MS: Millis = 86_400_000;
    let days: Vec<u32> = (0..=CONVERSION_LOG_MS / DAY_MS)
        .map(|back| day_key(crate::clock::datetime_from_ms(now_ms - back * DAY_MS).date()))
        .collect();
    let mut moved = 0;
    for (_, conversion) in store.earlier_conversion_log(&days).await? {
        if let Some((_, decision)) = parse_click_id(&conversion.click_id, shards) {
            moved += record
                .add_click_id(decision, &conversion.kind, &conversion.click_id)
                .await?;
        }
    }
    record.note_upgrade(CLICK_IDS, now_ms).await?;
    Ok(Some(moved))
}
