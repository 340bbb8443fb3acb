//! An immutable view of the catalog, rebuilt on change and swapped atomically. Decisions iterate
//! [`Snapshot::servable`]: campaigns that are active with at least one approved creative, with
//! everything a decision and an event need precomputed (caps, retention, the bid in the
//! service currency).

use std::collections::HashMap;
use std::sync::Arc;

use crate::capping::Retention;
use crate::domain::advertiser::Advertiser;
use crate::domain::campaign::{Campaign, CampaignStatus, FrequencyCap, Priority};
use crate::domain::creative::{Creative, CreativeStatus};
use crate::domain::ids::{AdvertiserId, CampaignId, CreativeId};
use crate::domain::money::{Money, Rate};
use crate::domain::Micros;
use crate::selection::explain::Ineligible;
use crate::selection::index::EligibilityIndex;
use crate::store::CatalogData;

/// A campaign that may be served, with its approved creatives.
#[derive(Debug)]
pub struct Servable {
    pub campaign: Arc<Campaign>,
    pub advertiser: Arc<Advertiser>,
    pub creatives: Vec<Arc<Creative>>,
    /// The advertiser's currency against the service's (see `domain::money`).
    pub rate: Rate,
    /// The campaign's bid in the service currency: what the auction ranks and the reserve
    /// applies to.
    pub bid_service_cpm_micros: Micros,
}

/// What the event path needs to know about a campaign's caps.
#[derive(Debug, Clone, Default)]
pub struct CapSpec {
    pub campaign_caps: Vec<FrequencyCap>,
    pub campaign_keep: Retention,
    /// Empty unless the campaign has `advertiser_caps`.
    pub advertiser_caps: Vec<FrequencyCap>,
}

#[derive(Debug, Default)]
pub struct Snapshot {
    pub version: u64,
    money: Arc<Money>,
    advertisers: HashMap<AdvertiserId, Arc<Advertiser>>,
    by_key_hash: HashMap<String, AdvertiserId>,
    campaigns: HashMap<CampaignId, Arc<Campaign>>,
    creatives: HashMap<CreativeId, Arc<Creative>>,
    cap_specs: HashMap<CampaignId, CapSpec>,
    /// Per advertiser: what to keep of its cross-campaign render list (zero when none of its
    /// campaigns uses advertiser-level caps, so nothing is stored).
    advertiser_keep: HashMap<AdvertiserId, Retention>,
    pub servable: Vec<Servable>,
    /// Targeting index over `servable`, by position.
    pub index: EligibilityIndex,
}

fn tier_rank(priority: Priority) -> u8 {
    match priority {
        Priority::Sponsorship => 0,
        Priority::Auction => 1,
        Priority::House => 2,
    }
}

impl Snapshot {
    /// Billed campaigns of an advertiser whose currency `money` does not price are not
    /// servable (house ones are: they bid and pay nothing).
    pub fn build(data: CatalogData, money: Arc<Money>) -> Self {
        let advertisers: HashMap<_, _> = data
            .advertisers
            .into_iter()
            .map(|a| (a.id.clone(), Arc::new(a)))
            .collect();
        let by_key_hash = advertisers
            .values()
            .map(|a| (a.api_key_hash.clone(), a.id.clone()))
            .collect();
        let campaigns: HashMap<_, _> = data
            .campaigns
            .into_iter()
            .map(|c| (c.id.clone(), Arc::new(c)))
            .collect();
        let creatives: HashMap<_, _> = data
            .creatives
            .into_iter()
            .map(|c| (c.id.clone(), Arc::new(c)))
            .collect();

        let mut approved: HashMap<&CampaignId, Vec<Arc<Creative>>> = HashMap::new();
        let mut sorted: Vec<&Arc<Creative>> = creatives.values().collect();
        sorted.sort_by(|a, b| a.id.cmp(&b.id));
        for creative in sorted
            .into_iter()
            .filter(|c| c.status == CreativeStatus::Approved)
        {
            approved
                .entry(&creative.campaign_id)
                .or_default()
                .push(creative.clone());
        }

        let mut advertiser_keep: HashMap<AdvertiserId, Retention> = HashMap::new();
        for campaign in campaigns.values().filter(|c| c.advertiser_caps) {
            let keep = advertiser_keep
                .entry(campaign.advertiser_id.clone())
                .or_default();
            let own = Retention::for_caps(&campaign.frequency_caps);
            *keep = Retention {
                count: keep.count.max(own.count),
                window_ms: keep.window_ms.max(own.window_ms),
            };
        }
        let cap_specs = campaigns
            .values()
            .map(|c| {
                let caps = c.frequency_caps.clone();
                let spec = CapSpec {
                    campaign_keep: Retention::for_caps(&caps),
                    advertiser_caps: if c.advertiser_caps {
                        caps.clone()
                    } else {
                        Vec::new()
                    },
                    campaign_caps: caps,
                };
                (c.id.clone(), spec)
            })
            .collect();

        let mut servable: Vec<Servable> = campaigns
            .values()
            .filter(|c| c.status == CampaignStatus::Active)
            .filter_map(|c| {
                let advertiser = advertisers.get(&c.advertiser_id)?;
                // A house campaign bids and pays nothing: no rate needed to serve it.
                let rate = match money.rate(&advertiser.currency) {
                    Some(rate) => rate,
                    None if c.priority == Priority::House => Rate::PAR,
                    None => return None,
                };
                Some(Servable {
                    campaign: c.clone(),
                    advertiser: advertiser.clone(),
                    creatives: approved.remove(&c.id)?,
                    rate,
                    bid_service_cpm_micros: rate.to_service(c.bid_cpm_micros),
                })
            })
            .collect();
        // Tier, then highest bid first: the order the auction ranks candidates in, so a decision
        // walking the index can stop early (see `selection`). Ids make it deterministic.
        servable.sort_by(|a, b| {
            let rank = |s: &Servable| {
                (
                    tier_rank(s.campaign.priority),
                    std::cmp::Reverse(s.bid_service_cpm_micros),
                )
            };
            rank(a)
                .cmp(&rank(b))
                .then_with(|| a.campaign.id.cmp(&b.campaign.id))
        });
        let index = EligibilityIndex::build(servable.iter().map(|s| &s.campaign.targeting));

        Self {
            version: data.version,
            money,
            advertisers,
            by_key_hash,
            campaigns,
            creatives,
            cap_specs,
            advertiser_keep,
            servable,
            index,
        }
    }

    /// The service currency and the rates this snapshot was built with.
    pub fn money(&self) -> &Arc<Money> {
        &self.money
    }

    /// Why `campaign` is not in [`Snapshot::servable`] (for one that is not): the one copy of
    /// this rule, for explanations and delivery insight.
    pub fn unservable(&self, campaign: &Campaign) -> Ineligible {
        match self.advertiser(&campaign.advertiser_id) {
            _ if campaign.status != CampaignStatus::Active => Ineligible::Status,
            None => Ineligible::Status,
            Some(a)
                if campaign.priority != Priority::House
                    && self.money.rate(&a.currency).is_none() =>
            {
                Ineligible::Currency
            }
            Some(_) => Ineligible::NoApprovedCreative,
        }
    }

    pub fn advertiser(&self, id: &AdvertiserId) -> Option<&Arc<Advertiser>> {
        self.advertisers.get(id)
    }

    pub fn advertiser_by_key_hash(&self, hash: &str) -> Option<&Arc<Advertiser>> {
        self.by_key_hash
            .get(hash)
            .and_then(|id| self.advertisers.get(id))
    }

    pub fn advertisers(&self) -> impl Iterator<Item = &Arc<Advertiser>> {
        self.advertisers.values()
    }

    pub fn campaign(&self, id: &CampaignId) -> Option<&Arc<Campaign>> {
        self.campaigns.get(id)
    }

    /// The catalog as data again (what a forecast builds its own snapshot from).
    pub fn data(&self) -> CatalogData {
        CatalogData {
            version: self.version,
            advertisers: self.advertisers.values().map(|a| (**a).clone()).collect(),
            campaigns: self.campaigns.values().map(|c| (**c).clone()).collect(),
            creatives: self.creatives.values().map(|c| (**c).clone()).collect(),
            ..CatalogData::default()
        }
    }

    /// Every campaign, servable or not.
    pub fn campaigns(&self) -> impl Iterator<Item = &Arc<Campaign>> {
        self.campaigns.values()
    }

    pub fn campaigns_of<'a>(
        &'a self,
        owner: &'a AdvertiserId,
    ) -> impl Iterator<Item = &'a Arc<Campaign>> + 'a {
        self.campaigns
            .values()
            .filter(move |c| &c.advertiser_id == owner)
    }

    pub fn creative(&self, id: &CreativeId) -> Option<&Arc<Creative>> {
        self.creatives.get(id)
    }

    pub fn creatives(&self) -> impl Iterator<Item = &Arc<Creative>> {
        self.creatives.values()
    }

    pub fn cap_spec(&self, id: &CampaignId) -> Option<&CapSpec> {
        self.cap_specs.get(id)
    }

    pub fn advertiser_keep(&self, id: &AdvertiserId) -> Retention {
        self.advertiser_keep.get(id).copied().unwrap_or_default()
    }
}
