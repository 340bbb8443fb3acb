//! Catalog records and campaign history in the record. Every write takes the next catalog
//! version and stamps the record with it in one transaction (with the campaign's change, if
//! any), so a node holding version `v` catches up by reading the records above `v`.

use sqlx::Row;

use super::{unavailable, Record};
use crate::domain::history::{Actor, CampaignChange};
use crate::domain::ids::CampaignId;
use crate::store::{CatalogData, CatalogRecord, StoreError};

const ADVERTISER: &str = "advertiser";
const CAMPAIGN: &str = "campaign";
const CREATIVE: &str = "creative";

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
        let rows = sqlx::query("SELECT kind, json FROM catalog_records WHERE version > $1")
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
            let json: String = row.try_get(1).map_err(unavailable)?;
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

    /// Saves one record (and the campaign change it makes, if any) under the next version.
    pub async fn save(
        &self,
        record: CatalogRecord<'_>,
        change: Option<&CampaignChange>,
    ) -> Result<(), StoreError> {
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
        sqlx::query(
            "INSERT INTO catalog_records (kind, id, version, json) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (kind, id) DO UPDATE SET version = excluded.version, json = excluded.json",
        )
        .bind(kind)
        .bind(&id)
        .bind(version)
        .bind(json)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
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
        tx.commit().await.map_err(unavailable)
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
