//! Catalog records and campaign history in the record. Every write takes the next catalog
//! version and stamps the record with it in one transaction (with the campaign's change, if
//! any), so a node holding version `v` catches up by reading the records above `v`.
//!
//! A record's version is also what an edit is conditional on ([`Expected`]): a node whose
//! snapshot is behind (another node wrote since its last refresh) must not write its stale copy
//! back over the newer one, so the write is refused as [`Saved::Stale`] and the catalog applies
//! the edit again to the record as it now is.

use sqlx::Row;

use super::{unavailable, Record};
use crate::domain::creative::Creative;
use crate::domain::history::{Actor, CampaignChange};
use crate::domain::ids::CampaignId;
use crate::store::{CatalogData, CatalogRecord, StoreError};

const ADVERTISER: &str = "advertiser";
const CAMPAIGN: &str = "campaign";
const CREATIVE: &str = "creative";

/// What a write of one record is conditional on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// Whatever is stored (moving records in from an earlier build).
    Anything,
    /// No record with this id yet.
    Absent,
    /// The record as of this version (the one the edit was made to).
    At(u64),
}

/// The outcome of a conditional write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saved {
    /// Written: the record's version now.
    At(u64),
    /// Not written: the record is not what the edit expected (nothing changed).
    Stale,
}

fn corrupt(what: &str, err: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::corrupt_from(format!("system of record: {what}"), err)
}

impl Record {
    pub async fn load_catalog(&self) -> Result<CatalogData, StoreError> {
        self.catalog_changes(0).await
    }

    pub async fn catalog_version(&self) -> Result<u64, StoreError> {
        let version: i64 = sqlx::query_scalar("SELECT version FROM catalog_version WHERE id = 1")
            .fetch_one(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(version as u64)
    }

    /// The records changed after version `since`, and the version read before them (a record
    /// newer than it is fetched again by the next call; applying it twice is harmless).
    pub async fn catalog_changes(&self, since: u64) -> Result<CatalogData, StoreError> {
        let version = self.catalog_version().await?;
        let rows =
            sqlx::query("SELECT kind, id, version, json FROM catalog_records WHERE version > $1")
                .bind(since as i64)
                .fetch_all(&self.pool)
                .await
                .map_err(unavailable)?;
        let mut data = CatalogData {
            version,
            ..CatalogData::default()
        };
        for row in rows {
            let kind: String = row.try_get(0).map_err(unavailable)?;
            let id: String = row.try_get(1).map_err(unavailable)?;
            let record_version: i64 = row.try_get(2).map_err(unavailable)?;
            let json: String = row.try_get(3).map_err(unavailable)?;
            data.record_versions.insert(id, record_version as u64);
            match kind.as_str() {
                ADVERTISER => data
                    .advertisers
                    .push(serde_json::from_str(&json).map_err(|e| corrupt("advertiser", e))?),
                CAMPAIGN => data
                    .campaigns
                    .push(serde_json::from_str(&json).map_err(|e| corrupt("campaign", e))?),
                CREATIVE => data
                    .creatives
                    .push(serde_json::from_str(&json).map_err(|e| corrupt("creative", e))?),
                other => {
                    return Err(StoreError::corrupt(format!(
                        "system of record: unknown catalog record kind {other:?}"
                    )))
                }
            }
        }
        Ok(data)
    }

    /// Saves one record (and the campaign change it makes, if any) under the next version,
    /// whatever is stored.
    pub async fn save(
        &self,
        record: CatalogRecord<'_>,
        change: Option<&CampaignChange>,
    ) -> Result<(), StoreError> {
        self.save_expecting(record, change, Expected::Anything)
            .await
            .map(drop)
    }

    /// Saves one record (and its campaign change) under the next version if what is stored is
    /// what `expected` says; otherwise changes nothing and answers [`Saved::Stale`].
    pub async fn save_expecting(
        &self,
        record: CatalogRecord<'_>,
        change: Option<&CampaignChange>,
        expected: Expected,
    ) -> Result<Saved, StoreError> {
        self.save_under(record, change, expected, None).await
    }

    /// Saves a new creative under the next version if its campaign is still stored as
    /// `campaign` says (the copy whose status allowed it: a campaign archived meanwhile through
    /// another node takes none); otherwise changes nothing and answers [`Saved::Stale`].
    pub async fn save_creative(
        &self,
        creative: &Creative,
        campaign: Expected,
    ) -> Result<Saved, StoreError> {
        let parent = match campaign {
            Expected::At(at) => Some((creative.campaign_id.as_str(), at)),
            Expected::Anything | Expected::Absent => None,
        };
        self.save_under(
            CatalogRecord::Creative(creative),
            None,
            Expected::Absent,
            parent,
        )
        .await
    }

    /// [`Record::save_expecting`], and when `parent` names a campaign and a version, only if
    /// that campaign is still stored at it.
    async fn save_under(
        &self,
        record: CatalogRecord<'_>,
        change: Option<&CampaignChange>,
        expected: Expected,
        parent: Option<(&str, u64)>,
    ) -> Result<Saved, StoreError> {
        let encode = |json: serde_json::Result<String>| json.map_err(|e| corrupt("encode", e));
        let (kind, id, json) = match record {
            CatalogRecord::Advertiser(a) => (
                ADVERTISER,
                a.id.to_string(),
                encode(serde_json::to_string(a))?,
            ),
            CatalogRecord::Campaign(c) => (
                CAMPAIGN,
                c.id.to_string(),
                encode(serde_json::to_string(c))?,
            ),
            CatalogRecord::Creative(c) => (
                CREATIVE,
                c.id.to_string(),
                encode(serde_json::to_string(c))?,
            ),
        };
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let version: i64 = sqlx::query_scalar(
            "UPDATE catalog_version SET version = version + 1 WHERE id = 1 RETURNING version",
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(unavailable)?;
        // The version row's lock (taken above) orders every catalog write, so the conditions
        // read what the writer before committed.
        if let Some((campaign, at)) = parent {
            let stored: Option<i64> = sqlx::query_scalar(
                "SELECT version FROM catalog_records WHERE kind = $1 AND id = $2",
            )
            .bind(CAMPAIGN)
            .bind(campaign)
            .fetch_optional(&mut *tx)
            .await
            .map_err(unavailable)?;
            if stored != Some(at as i64) {
                return Ok(Saved::Stale);
            }
        }
        let sql = match expected {
            Expected::Anything => {
                "INSERT INTO catalog_records (kind, id, version, json) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (kind, id) DO UPDATE SET version = excluded.version, json = excluded.json"
            }
            Expected::Absent => {
                "INSERT INTO catalog_records (kind, id, version, json) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (kind, id) DO NOTHING"
            }
            Expected::At(_) => {
                "UPDATE catalog_records SET version = $3, json = $4 \
                 WHERE kind = $1 AND id = $2 AND version = $5"
            }
        };
        let mut query = sqlx::query(sql)
            .bind(kind)
            .bind(&id)
            .bind(version)
            .bind(json);
        if let Expected::At(at) = expected {
            query = query.bind(at as i64);
        }
        let written = query
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?
            .rows_affected();
        if written == 0 {
            // Dropping the transaction rolls the version back too.
            return Ok(Saved::Stale);
        }
        if let Some(change) = change {
            sqlx::query(
                "INSERT INTO campaign_changes (campaign_id, version, at_ms, actor, fields) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&id)
            .bind(version)
            .bind((change.at.unix_timestamp_nanos() / 1_000_000) as i64)
            .bind(change.actor.as_str())
            .bind(encode(serde_json::to_string(&change.fields))?)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(Saved::At(version as u64))
    }

    /// Every change to a campaign, oldest first.
    pub async fn campaign_history(
        &self,
        campaign: &CampaignId,
    ) -> Result<Vec<CampaignChange>, StoreError> {
        let rows = sqlx::query(
            "SELECT at_ms, actor, fields FROM campaign_changes WHERE campaign_id = $1 \
             ORDER BY version",
        )
        .bind(campaign.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        rows.into_iter()
            .map(|row| {
                let at_ms: i64 = row.try_get(0).map_err(unavailable)?;
                let actor: String = row.try_get(1).map_err(unavailable)?;
                let fields: String = row.try_get(2).map_err(unavailable)?;
                Ok(CampaignChange {
                    at: time::OffsetDateTime::from_unix_timestamp_nanos(at_ms as i128 * 1_000_000)
                        .map_err(|e| corrupt("change time", e))?,
                    actor: Actor::parse(&actor).ok_or_else(|| {
                        StoreError::corrupt(format!("system of record: actor {actor:?}"))
                    })?,
                    fields: serde_json::from_str(&fields).map_err(|e| corrupt("fields", e))?,
                })
            })
            .collect()
    }
}
