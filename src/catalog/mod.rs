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
use crate::domain::money::Money;
use crate::domain::ValidationError;
use crate::metrics::Metrics;
use crate::record::catalog::{Expected, Saved};
use crate::record::Record;
use crate::store::{CatalogData, CatalogRecord, StoreError};

pub use self::snapshot::Snapshot;

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    /// The record changed on another node since this one read it: the edit is applied again
    /// to the record as it now is (never answered as such).
    #[error("the record changed while the change was made")]
    Stale,
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("{}", .0.report())]
    Store(#[from] StoreError),
}

/// The catalog's records by id.
#[derive(Default)]
struct Records {
    /// What every snapshot prices with (configuration: fixed for the process).
    money: Arc<Money>,
    version: u64,
    /// Each record's own version: what an edit of it is conditional on.
    record_versions: HashMap<String, u64>,
    advertisers: HashMap<AdvertiserId, Advertiser>,
    campaigns: HashMap<CampaignId, Campaign>,
    creatives: HashMap<CreativeId, Creative>,
}

impl Records {
    fn apply(&mut self, changes: CatalogData) {
        self.version = changes.version;
        self.record_versions.extend(changes.record_versions);
        self.advertisers
            .extend(changes.advertisers.into_iter().map(|a| (a.id.clone(), a)));
        self.campaigns
            .extend(changes.campaigns.into_iter().map(|c| (c.id.clone(), c)));
        self.creatives
            .extend(changes.creatives.into_iter().map(|c| (c.id.clone(), c)));
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot::build(
            CatalogData {
                version: self.version,
                advertisers: self.advertisers.values().cloned().collect(),
                campaigns: self.campaigns.values().cloned().collect(),
                creatives: self.creatives.values().cloned().collect(),
                ..CatalogData::default()
            },
            self.money.clone(),
        )
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
    pub async fn load(
        record: Arc<Record>,
        metrics: Arc<Metrics>,
        money: Arc<Money>,
    ) -> Result<Self, StoreError> {
        let mut records = Records {
            money,
            ..Records::default()
        };
        records.apply(record.load_catalog().await?);
        for advertiser in records.advertisers.values() {
            if records.money.rate(&advertiser.currency).is_none() {
                tracing::error!(
                    advertiser = %advertiser.id,
                    currency = %advertiser.currency,
                    "the advertiser's currency has no exchange rate (money.rates): its billed campaigns do not serve (house ones do) and its charged messages are refused until it has one"
                );
            }
        }
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

    /// Writes `record` if the stored one is still `expected`; [`CatalogError::Stale`] if not.
    async fn persist(
        &self,
        record: CatalogRecord<'_>,
        change: Option<CampaignChange>,
        expected: Expected,
    ) -> Result<(), CatalogError> {
        let saved = self
            .record
            .save_expecting(record, change.as_ref(), expected)
            .await?;
        self.committed(record, saved).await
    }

    /// After a conditional write of `record`: brings this node's snapshot up to it, or answers
    /// that the record had moved on.
    async fn committed(&self, record: CatalogRecord<'_>, saved: Saved) -> Result<(), CatalogError> {
        let version = match saved {
            Saved::At(version) => version,
            Saved::Stale => return Err(CatalogError::Stale),
        };
        // The change is committed, and its answer must say so: a 503 here would have the
        // client retry a write that happened (a second campaign, a key never shown).
        if let Err(err) = self.refresh().await {
            tracing::warn!(
                error = %err.report(),
                "catalog refresh after a committed write failed; the periodic refresh retries"
            );
            self.show_committed(record, version).await;
        }
        Ok(())
    }

    /// Runs one read-modify-write of the catalog, from the records as this node holds them;
    /// when another node wrote the record since, refreshes and runs it again on what is now
    /// stored. Past a few rounds (a record changed that often), answers a conflict.
    async fn editing<T, F, Fut>(&self, mut edit: F) -> Result<T, CatalogError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, CatalogError>>,
    {
        const ROUNDS: usize = 4;
        let _guard = self.writes.lock().await;
        for _ in 1..ROUNDS {
            match edit().await {
                Err(CatalogError::Stale) => self.refresh().await?,
                done => return done,
            }
        }
        match edit().await {
            Err(CatalogError::Stale) => Err(CatalogError::Conflict(
                "the record kept changing while this change was made; retry".into(),
            )),
            done => done,
        }
    }

    /// A record as this node holds it, with its version (what an edit of it expects).
    async fn base<T: Clone>(
        &self,
        id: &str,
        pick: impl FnOnce(&Records) -> Option<&T>,
    ) -> Option<(T, Expected)> {
        let records = self.records.lock().await;
        let record = pick(&records)?.clone();
        let expected = records
            .record_versions
            .get(id)
            .map_or(Expected::Anything, |v| Expected::At(*v));
        Some((record, expected))
    }

    /// Puts a record this node has just committed into its snapshot when reading the record's
    /// changes failed: its own writes stay visible, and are what its next edit starts from,
    /// until a refresh reads them back. The version stays, so that refresh still reads every
    /// change since.
    async fn show_committed(&self, record: CatalogRecord<'_>, record_version: u64) {
        let mut records = self.records.lock().await;
        let mut committed = CatalogData {
            version: records.version,
            ..CatalogData::default()
        };
        let id = match record {
            CatalogRecord::Advertiser(a) => {
                committed.advertisers.push(a.clone());
                a.id.to_string()
            }
            CatalogRecord::Campaign(c) => {
                committed.campaigns.push(c.clone());
                c.id.to_string()
            }
            CatalogRecord::Creative(c) => {
                committed.creatives.push(c.clone());
                c.id.to_string()
            }
        };
        committed.record_versions.insert(id, record_version);
        records.apply(committed);
        self.current.store(Arc::new(records.snapshot()));
    }

    /// Saves a campaign with the change it makes to its history.
    async fn persist_campaign(
        &self,
        before: Option<&Campaign>,
        after: &Campaign,
        at: OffsetDateTime,
        expected: Expected,
    ) -> Result<(), CatalogError> {
        let change = CampaignChange::between(before, after, Actor::Advertiser, at);
        self.persist(CatalogRecord::Campaign(after), change, expected)
            .await
    }

    pub async fn create_advertiser(
        &self,
        new: NewAdvertiser,
        now: OffsetDateTime,
    ) -> Result<(Advertiser, String), CatalogError> {
        let (advertiser, key) = new.into_advertiser(now, self.snapshot().money())?;
        let _guard = self.writes.lock().await;
        self.persist(
            CatalogRecord::Advertiser(&advertiser),
            None,
            Expected::Absent,
        )
        .await?;
        Ok((advertiser, key))
    }

    async fn advertiser_base(
        &self,
        id: &AdvertiserId,
    ) -> Result<(Advertiser, Expected), CatalogError> {
        self.base(id.as_str(), |r| r.advertisers.get(id))
            .await
            .ok_or(CatalogError::NotFound)
    }

    /// Issues a new key; the old one stops working as soon as each node's snapshot refreshes.
    pub async fn rotate_key(&self, id: &AdvertiserId) -> Result<String, CatalogError> {
        self.editing(|| async move {
            let (mut advertiser, expected) = self.advertiser_base(id).await?;
            let key = new_api_key();
            advertiser.api_key_hash = hash_api_key(&key);
            self.persist(CatalogRecord::Advertiser(&advertiser), None, expected)
                .await?;
            Ok(key)
        })
        .await
    }

    /// Applies an operator's change to an advertiser.
    pub async fn update_advertiser(
        &self,
        id: &AdvertiserId,
        patch: &AdvertiserPatch,
    ) -> Result<Advertiser, CatalogError> {
        self.editing(|| async move {
            let (mut advertiser, expected) = self.advertiser_base(id).await?;
            patch.apply(&mut advertiser)?;
            self.persist(CatalogRecord::Advertiser(&advertiser), None, expected)
                .await?;
            Ok(advertiser)
        })
        .await
    }

    pub async fn create_campaign(
        &self,
        owner: &Advertiser,
        input: CampaignInput,
        now: OffsetDateTime,
    ) -> Result<Campaign, CatalogError> {
        let campaign = Campaign::create(input, owner, self.snapshot().money(), now)?;
        let _guard = self.writes.lock().await;
        self.persist_campaign(None, &campaign, now, Expected::Absent)
            .await?;
        Ok(campaign)
    }

    /// One of `owner`'s campaigns as this node holds it, with what an edit of it expects.
    async fn campaign_base(
        &self,
        owner: &Advertiser,
        id: &CampaignId,
    ) -> Result<(Campaign, Expected), CatalogError> {
        self.base(id.as_str(), |r| r.campaigns.get(id))
            .await
            .filter(|(c, _)| c.advertiser_id == owner.id)
            .ok_or(CatalogError::NotFound)
    }

    pub async fn update_campaign(
        &self,
        owner: &Advertiser,
        id: &CampaignId,
        input: CampaignInput,
        now: OffsetDateTime,
    ) -> Result<Campaign, CatalogError> {
        let input = &input;
        self.editing(|| async move {
            let (current, expected) = self.campaign_base(owner, id).await?;
            if current.status == CampaignStatus::Archived {
                return Err(CatalogError::Conflict(
                    "an archived campaign cannot be changed".into(),
                ));
            }
            let updated = current
                .clone()
                .update(input.clone(), owner, self.snapshot().money())?;
            self.persist_campaign(Some(&current), &updated, now, expected)
                .await?;
            Ok(updated)
        })
        .await
    }

    /// Archives: never served again, history and spend stay.
    pub async fn archive_campaign(
        &self,
        owner: &Advertiser,
        id: &CampaignId,
        now: OffsetDateTime,
    ) -> Result<Campaign, CatalogError> {
        self.editing(|| async move {
            let (current, expected) = self.campaign_base(owner, id).await?;
            let mut campaign = current.clone();
            campaign.status = CampaignStatus::Archived;
            self.persist_campaign(Some(&current), &campaign, now, expected)
                .await?;
            Ok(campaign)
        })
        .await
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

    /// Adds a creative to its campaign, if the campaign takes creatives as stored: checked on
    /// this node's copy, and written only if the record still holds that copy.
    pub async fn add_creative(&self, creative: Creative) -> Result<Creative, CatalogError> {
        let campaign_id = &creative.campaign_id;
        self.editing(|| async {
            let (campaign, campaign_at) = self
                .base(campaign_id.as_str(), |r| r.campaigns.get(campaign_id))
                .await
                .ok_or(CatalogError::NotFound)?;
            takes_creatives(&campaign)?;
            let saved = self.record.save_creative(&creative, campaign_at).await?;
            self.committed(CatalogRecord::Creative(&creative), saved)
                .await
        })
        .await?;
        Ok(creative)
    }

    pub async fn moderate(
        &self,
        id: &CreativeId,
        decision: &Moderation,
    ) -> Result<Creative, CatalogError> {
        self.editing(|| async move {
            let (mut creative, expected) = self
                .base(id.as_str(), |r| r.creatives.get(id))
                .await
                .ok_or(CatalogError::NotFound)?;
            match decision {
                Moderation::Approve => {
                    creative.status = CreativeStatus::Approved;
                    creative.reject_reason = None;
                }
                Moderation::Reject(reason) => {
                    creative.status = CreativeStatus::Rejected;
                    creative.reject_reason = Some(reason.clone());
                }
            }
            self.persist(CatalogRecord::Creative(&creative), None, expected)
                .await?;
            Ok(creative)
        })
        .await
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

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_795_000_000 + second).unwrap()
    }

    fn input(json: serde_json::Value) -> CampaignInput {
        serde_json::from_value(json).unwrap()
    }

    /// Two catalogs over one record, as two nodes have, and an active campaign both know.
    struct TwoNodes {
        _dir: tempfile::TempDir,
        record: Arc<Record>,
        metrics: Arc<Metrics>,
        first: Catalog,
        second: Catalog,
        owner: Advertiser,
        campaign: Campaign,
    }

    async fn two_nodes() -> TwoNodes {
        let dir = tempfile::tempdir().unwrap();
        let record = Arc::new(Record::open("", dir.path()).await.unwrap());
        let metrics = Arc::new(Metrics::default());
        let first = Catalog::load(record.clone(), metrics.clone(), Arc::default())
            .await
            .unwrap();
        let new: NewAdvertiser =
            serde_json::from_value(serde_json::json!({"name": "Two nodes", "currency": "EUR"}))
                .unwrap();
        let (owner, _) = first.create_advertiser(new, at(0)).await.unwrap();
        let campaign = first
            .create_campaign(
                &owner,
                input(serde_json::json!({"name": "Spring", "bid_cpm_micros": 1_000_000, "status": "active", "budget": {"total_micros": 100_000_000}})),
                at(1),
            )
            .await
            .unwrap();
        let second = Catalog::load(record.clone(), metrics.clone(), Arc::default())
            .await
            .unwrap();
        TwoNodes {
            _dir: dir,
            record,
            metrics,
            first,
            second,
            owner,
            campaign,
        }
    }

    /// Two nodes over one record, the second never refreshed: its edit is made to what is
    /// stored, not to its stale copy, so neither node's change is lost (a stale copy written
    /// back would undo the first node's pause, and the campaign would spend again).
    #[tokio::test]
    async fn an_edit_through_a_node_that_is_behind_keeps_the_other_nodes_change() {
        let TwoNodes {
            _dir,
            record,
            metrics,
            first,
            second,
            owner,
            campaign,
        } = two_nodes().await;

        let paused = input(serde_json::json!({"status": "paused"}));
        first
            .update_campaign(&owner, &campaign.id, paused, at(2))
            .await
            .unwrap();
        let rebid = input(serde_json::json!({"bid_cpm_micros": 3_000_000}));
        let answered = second
            .update_campaign(&owner, &campaign.id, rebid, at(3))
            .await
            .unwrap();
        assert_eq!(answered.status, CampaignStatus::Paused);
        assert_eq!(answered.bid_cpm_micros, 3_000_000);

        let fresh = Catalog::load(record.clone(), metrics, Arc::default())
            .await
            .unwrap();
        let stored = fresh.snapshot().campaign(&campaign.id).cloned().unwrap();
        assert_eq!(
            (stored.status, stored.bid_cpm_micros),
            (CampaignStatus::Paused, 3_000_000)
        );
        // The history holds each change once: the refused write left nothing behind.
        let history = fresh.history(&campaign.id).await.unwrap();
        assert_eq!(history.len(), 3, "{history:?}");
    }

    /// A campaign archived through one node takes no creative through another that has not
    /// caught up: the add is checked against what is stored (409, nothing written), since a
    /// creative written there would belong to a campaign that never serves again.
    #[tokio::test]
    async fn a_creative_for_a_campaign_archived_through_another_node_is_refused() {
        use crate::domain::creative::Asset;

        let TwoNodes {
            _dir,
            record,
            first,
            second,
            owner,
            campaign,
            ..
        } = two_nodes().await;
        let creative = |headline: &str| Creative {
            id: CreativeId::generate(),
            campaign_id: campaign.id.clone(),
            advertiser_id: owner.id.clone(),
            status: CreativeStatus::Pending,
            reject_reason: None,
            format: "image".into(),
            headline: headline.into(),
            body: String::new(),
            cta_label: "Learn more".into(),
            asset: Asset {
                url: "/assets/0".into(),
                sha256: "0".repeat(64),
                mime: "image/png".into(),
                width: 1080,
                height: 1920,
                duration_ms: None,
                bytes: 1,
            },
            created_at: at(2),
        };
        second.add_creative(creative("before")).await.unwrap();
        // Another change to the campaign: the add is tried again on what is stored, and stands.
        let rebid = input(serde_json::json!({"bid_cpm_micros": 3_000_000}));
        first
            .update_campaign(&owner, &campaign.id, rebid, at(3))
            .await
            .unwrap();
        second.add_creative(creative("rebid")).await.unwrap();

        first
            .archive_campaign(&owner, &campaign.id, at(4))
            .await
            .unwrap();
        let refused = second.add_creative(creative("after")).await;
        assert!(
            matches!(&refused, Err(CatalogError::Conflict(why)) if why.contains("archived")),
            "{refused:?}"
        );
        let stored = record.load_catalog().await.unwrap();
        let mut headlines: Vec<&str> = stored
            .creatives
            .iter()
            .map(|c| c.headline.as_str())
            .collect();
        headlines.sort();
        assert_eq!(headlines, ["before", "rebid"]);
    }

    /// A write expected to find a record at a version it no longer has changes nothing.
    #[tokio::test]
    async fn a_stale_write_is_refused_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let record = Record::open("", dir.path()).await.unwrap();
        let new: NewAdvertiser =
            serde_json::from_value(serde_json::json!({"name": "Stale", "currency": "EUR"}))
                .unwrap();
        let (mut advertiser, _) = new.into_advertiser(at(0), &Money::default()).unwrap();
        let first = record
            .save_expecting(
                CatalogRecord::Advertiser(&advertiser),
                None,
                Expected::Absent,
            )
            .await
            .unwrap();
        let Saved::At(version) = first else {
            panic!("{first:?}")
        };
        assert_eq!(
            record
                .save_expecting(
                    CatalogRecord::Advertiser(&advertiser),
                    None,
                    Expected::Absent
                )
                .await
                .unwrap(),
            Saved::Stale
        );
        advertiser.name = "Renamed".into();
        let renamed = record
            .save_expecting(
                CatalogRecord::Advertiser(&advertiser),
                None,
                Expected::At(version),
            )
            .await
            .unwrap();
        assert!(
            matches!(renamed, Saved::At(v) if v > version),
            "{renamed:?}"
        );
        advertiser.name = "Lost".into();
        assert_eq!(
            record
                .save_expecting(
                    CatalogRecord::Advertiser(&advertiser),
                    None,
                    Expected::At(version)
                )
                .await
                .unwrap(),
            Saved::Stale
        );
        let stored = record.load_catalog().await.unwrap();
        assert_eq!(stored.advertisers[0].name, "Renamed");
        let Saved::At(now) = renamed else {
            unreachable!()
        };
        assert_eq!(stored.version, now, "a refused write takes no version");
    }
}
