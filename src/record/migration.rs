//! The one-time move of what earlier builds kept in the hot store: the catalog (Redis keys, or
//! the catalog entries of an embedded journal) and the asset files under `data_dir/assets`. It
//! runs at the first start against an empty record, copies everything (campaign history begins
//! with each campaign's creation), and records that it ran; re-running after a crash midway is
//! harmless (records are upserted by id, assets by digest). The hot store's copy is left in
//! place and no longer written.

use std::path::Path;

use sqlx::Row;

use super::{unavailable, Record};
use crate::domain::history::{Actor, CampaignChange};
use crate::store::{CatalogRecord, Store, StoreError};

/// What a migration copied.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Migrated {
    pub advertisers: usize,
    pub campaigns: usize,
    pub creatives: usize,
    pub assets: usize,
}

impl Record {
    async fn migration_done(&self) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT done_at_ms FROM hot_store_migration WHERE id = 1")
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(row.map(|r| r.try_get::<i64, _>(0).is_ok()).unwrap_or(false))
    }

    /// Copies the hot store's catalog and `data_dir`'s assets here unless that already ran.
    /// `None` when it had run before.
    pub async fn migrate_from(
        &self,
        store: &Store,
        data_dir: &Path,
        now_ms: i64,
    ) -> Result<Option<Migrated>, StoreError> {
        if self.migration_done().await? {
            return Ok(None);
        }
        let data = store.load_catalog().await.map_err(|err| match err {
            err @ StoreError::Unavailable { .. } => err.within(
                "the first start with a system of record copies the catalog out of the hot \
                 store, which must answer",
            ),
            other => other,
        })?;
        let mut migrated = Migrated::default();
        for advertiser in &data.advertisers {
            self.save(CatalogRecord::Advertiser(advertiser), None)
                .await?;
            migrated.advertisers += 1;
        }
        for campaign in &data.campaigns {
            let created =
                CampaignChange::between(None, campaign, Actor::Advertiser, campaign.created_at);
            self.save(CatalogRecord::Campaign(campaign), created.as_ref())
                .await?;
            migrated.campaigns += 1;
        }
        for creative in &data.creatives {
            self.save(CatalogRecord::Creative(creative), None).await?;
            migrated.creatives += 1;
        }
        if let Ok(files) = std::fs::read_dir(data_dir.join("assets")) {
            for file in files.filter_map(Result::ok) {
                let name = file.file_name().to_string_lossy().into_owned();
                let Ok(bytes) = std::fs::read(file.path()) else {
                    continue;
                };
                // Only complete files under their own digest (never a temporary).
                if crate::catalog::assets::AssetStore::digest(&bytes) == name {
                    self.put_asset(&name, &bytes).await?;
                    migrated.assets += 1;
                }
            }
        }
        sqlx::query("INSERT INTO hot_store_migration (id, done_at_ms) VALUES (1, $1)")
            .bind(now_ms)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(Some(migrated))
    }
}
