//! Advertisers, campaigns and creatives: the writes (validated by `domain`, persisted in the
//! system of record with each campaign's change history) and the in-memory [`Snapshot`] that
//! every decision and auth check reads without locks. A write rebuilds the snapshot at once;
//! other nodes notice the record's catalog version moving (polled by the refresher) and
//! rebuild theirs. The catalog never depends on the hot store: a node starts with it while
//! Redis is away.

pub mod assets;
pub mod snapshot;

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use time::OffsetDateTime;

use crate::domain::advertiser::{
    hash_api_key, new_api_key, Advertiser, AdvertiserPatch, NewAdvertiser,
};
use crate::domain::campaign::{Campaign, CampaignInput, CampaignStatus};
use crate::domain::creative::{Creative, CreativeStatus};
use crate::domain::history::{Actor, CampaignChange};
use crate::domain::ids::{AdvertiserId, CampaignId, CreativeId};
use crate::domain::ValidationError;
use crate::metrics::Metrics;
use crate::record::Record;
use crate::store::{CatalogData, CatalogRecord, StoreError};

pub use self::snapshot::Snapshot;

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("{}", .0.report())]
    Store(#[from] StoreError),
}

/// The catalog's records by id.
#[derive(Default)]
struct Records {
    version: u64,
    advertisers: HashMap<AdvertiserId, Advertiser>,
    campaigns: HashMap<CampaignId, Campaign>,
    creatives: HashMap<CreativeId, Creative>,
}

impl Records {
    fn apply(&mut self, changes: CatalogData) {
        self.version = changes.version;
        self.advertisers
            .extend(changes.advertisers.into_iter().map(|a| (a.id.clone(), a)));
        self.campaigns
            .extend(changes.campaigns.into_iter().map(|c| (c.id.clone(), c)));
        self.creatives
            .extend(changes.creatives.into_iter().map(|c| (c.id.clone(), c)));
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot::build(CatalogData {
            version: self.version,
            advertisers: self.advertisers.values().cloned().collect(),
            campaigns: self.campaigns.values().cloned().collect(),
            creatives: self.creatives.values().cloned().collect(),
        })
    }
}

pub enum Moderation {
    Approve,
    Reject(String),
}

pub struct Catalog {
    record: Arc<Record>,
    current: ArcSwap<Snapshot>,
    /// Every record as of `records.version`, the base that changes are applied to.
    records: tokio::sync::Mutex<Records>,
    metrics: Arc<Metrics>,
    /// Serialises this node's writes so a read-modify-write (PATCH) sees its own predecessor.
    writes: tokio::sync::Mutex<()>,
}

impl Catalog {
    pub async fn load(record: Arc<Record>, metrics: Arc<Metrics>) -> Result<Self, StoreError> {
        let mut records = Records::default();
        records.apply(record.load_catalog().await?);
        Ok(Self {
            record,
            current: ArcSwap::from_pointee(records.snapshot()),
            records: tokio::sync::Mutex::new(records),
            metrics,
            writes: tokio::sync::Mutex::new(()),
        })
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Every change to a campaign, oldest first.
    pub async fn history(&self, id: &CampaignId) -> Result<Vec<CampaignChange>, StoreError> {
        self.record.campaign_history(id).await
    }

    /// Rebuilds the snapshot when the record's version moved (a write here or on another
    /// node), reading only the records that changed since.
    pub async fn refresh(&self) -> Result<(), StoreError> {
        let mut records = self.records.lock().await;
        if self.record.catalog_version().await? == records.version {
            return Ok(());
        }
        let changes = self.record.catalog_changes(records.version).await?;
        records.apply(changes);
        self.current.store(Arc::new(records.snapshot()));
        self.metrics.catalog_reloaded();
        Ok(())
    }

    async fn persist(
        &self,
        record: CatalogRecord<'_>,
        change: Option<CampaignChange>,
    ) -> Result<(), CatalogError> {
        self.record.save(record, change.as_ref()).await?;
        // The change is committed, and its answer must say so: a 503 here would have the
        // client retry a write that happened (a second campaign, a key never shown).
        if let Err(err) = self.refresh().await {
            tracing::warn!(
                error = %err.report(),
                "catalog refresh after a committed write failed; the periodic refresh retries"
            );
            self.show_committed(record).await;
        }
        Ok(())
    }

    /// Puts a record this node has just committed into its snapshot when reading the record's
    /// changes failed: its own writes stay visible, and are what its next edit starts from,
    /// until a refresh reads them back. The version stays, so that refresh still reads every
    /// change since.
    async fn show_committed(&self, record: CatalogRecord<'_>) {
        let mut records = self.records.lock().await;
        let mut committed = CatalogData {
            version: records.version,
            ..CatalogData::default()
        };
        match record {
            CatalogRecord::Advertiser(a) => committed.advertisers.push(a.clone()),
            CatalogRecord::Campaign(c) => committed.campaigns.push(c.clone()),
            CatalogRecord::Creative(c) => committed.creatives.push(c.clone()),
        }
        records.apply(committed);
        self.current.store(Arc::new(records.snapshot()));
    }

    /// Saves a campaign with the change it makes to its history.
    async fn persist_campaign(
        &self,
        before: Option<&Campaign>,
        after: &Campaign,
        at: OffsetDateTime,
    ) -> Result<(), CatalogError> {
        let change = CampaignChange::between(before, after, Actor::Advertiser, at);
        self.persist(CatalogRecord::Campaign(after), change).await
    }

    pub async fn create_advertiser(
        &self,
        new: NewAdvertiser,
        now: OffsetDateTime,
    ) -> Result<(Advertiser, String), CatalogError> {
        let (advertiser, key) = new.into_advertiser(now)?;
        let _guard = self.writes.lock().await;
        self.persist(CatalogRecord::Advertiser(&advertiser), None)
            .await?;
        Ok((advertiser, key))
    }

    /// Issues a new key; the old one stops working as soon as each node's snapshot refreshes.
    pub async fn rotate_key(&self, id: &AdvertiserId) -> Result<String, CatalogError> {
        let _guard = self.writes.lock().await;
        let mut advertiser = (**self
            .snapshot()
            .advertiser(id)
            .ok_or(CatalogError::NotFound)?)
        .clone();
        let key = new_api_key();
        advertiser.api_key_hash = hash_api_key(&key);
        self.persist(CatalogRecord::Advertiser(&advertiser), None)
            .await?;
        Ok(key)
    }

    /// Applies an operator's change to an advertiser.
    pub async fn update_advertiser(
        &self,
        id: &AdvertiserId,
        patch: &AdvertiserPatch,
    ) -> Result<Advertiser, CatalogError> {
        let _guard = self.writes.lock().await;
        let mut advertiser = (**self
            .snapshot()
            .advertiser(id)
            .ok_or(CatalogError::NotFound)?)
        .clone();
        patch.apply(&mut advertiser)?;
        self.persist(CatalogRecord::Advertiser(&advertiser), None)
            .await?;
        Ok(advertiser)
    }

    pub async fn create_campaign(
        &self,
        owner: &Advertiser,
        input: CampaignInput,
        now: OffsetDateTime,
    ) -> Result<Campaign, CatalogError> {
        let campaign = Campaign::create(input, owner, now)?;
        let _guard = self.writes.lock().await;
        self.persist_campaign(None, &campaign, now).await?;
        Ok(campaign)
    }

    pub async fn update_campaign(
        &self,
        owner: &Advertiser,
        id: &CampaignId,
        input: CampaignInput,
        now: OffsetDateTime,
    ) -> Result<Campaign, CatalogError> {
        let _guard = self.writes.lock().await;
        let current = self.owned_campaign(owner, id)?;
        if current.status == CampaignStatus::Archived {
            return Err(CatalogError::Conflict(
                "an archived campaign cannot be changed".into(),
            ));
        }
        let updated = (*current).clone().update(input, owner)?;
        self.persist_campaign(Some(&current), &updated, now).await?;
        Ok(updated)
    }

    /// Archives: never served again, history and spend stay.
    pub async fn archive_campaign(
        &self,
        owner: &Advertiser,
        id: &CampaignId,
        now: OffsetDateTime,
    ) -> Result<Campaign, CatalogError> {
        let _guard = self.writes.lock().await;
        let current = self.owned_campaign(owner, id)?;
        let mut campaign = (*current).clone();
        campaign.status = CampaignStatus::Archived;
        self.persist_campaign(Some(&current), &campaign, now)
            .await?;
        Ok(campaign)
    }

    /// A campaign of `owner`'s that a creative can be added to (checked again under the write
    /// lock when it is added).
    pub fn campaign_taking_creatives(
        &self,
        owner: &Advertiser,
        id: &CampaignId,
    ) -> Result<Arc<Campaign>, CatalogError> {
        let campaign = self.owned_campaign(owner, id)?;
        takes_creatives(&campaign)?;
        Ok(campaign)
    }

    /// A campaign of another advertiser is indistinguishable from a missing one.
    pub fn owned_campaign(
        &self,
        owner: &Advertiser,
        id: &CampaignId,
    ) -> Result<Arc<Campaign>, CatalogError> {
        self.snapshot()
            .campaign(id)
            .filter(|c| c.advertiser_id == owner.id)
            .cloned()
            .ok_or(CatalogError::NotFound)
    }

    pub async fn add_creative(&self, creative: Creative) -> Result<Creative, CatalogError> {
        let _guard = self.writes.lock().await;
        let campaign = self
            .snapshot()
            .campaign(&creative.campaign_id)
            .cloned()
            .ok_or(CatalogError::NotFound)?;
        takes_creatives(&campaign)?;
        self.persist(CatalogRecord::Creative(&creative), None)
            .await?;
        Ok(creative)
    }

    pub async fn moderate(
        &self,
        id: &CreativeId,
        decision: Moderation,
    ) -> Result<Creative, CatalogError> {
        let _guard = self.writes.lock().await;
        let mut creative = (**self.snapshot().creative(id).ok_or(CatalogError::NotFound)?).clone();
        match decision {
            Moderation::Approve => {
                creative.status = CreativeStatus::Approved;
                creative.reject_reason = None;
            }
            Moderation::Reject(reason) => {
                creative.status = CreativeStatus::Rejected;
                creative.reject_reason = Some(reason);
            }
        }
        self.persist(CatalogRecord::Creative(&creative), None)
            .await?;
        Ok(creative)
    }
}

fn takes_creatives(campaign: &Campaign) -> Result<(), CatalogError> {
    if campaign.status == CampaignStatus::Archived {
        return Err(CatalogError::Conflict(
            "an archived campaign takes no creatives".into(),
        ));
    }
    Ok(())
}
