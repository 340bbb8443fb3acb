//! Synthetic catalogs and requests shared by the benchmarks: realistic targeting (most
//! campaigns target a few countries, many a language, some an OS, interests or an age range),
//! log-uniform bids, one advertiser per ten campaigns.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use statusads::domain::advertiser::Advertiser;
use statusads::domain::campaign::{
    Budget, Campaign, CampaignStatus, FrequencyCap, Objective, Pacing, Priority,
};
use statusads::domain::creative::{Asset, Creative, CreativeStatus};
use statusads::domain::ids::{AdvertiserId, CampaignId, CreativeId};
use statusads::domain::slot::SlotContext;
use statusads::domain::targeting::{AgeRange, Targeting};
use statusads::store::CatalogData;
use time::macros::datetime;

pub const COUNTRIES: [&str; 30] = [
    "IT", "FR", "DE", "ES", "PT", "GB", "IE", "NL", "BE", "AT", "CH", "PL", "SE", "NO", "DK", "FI",
    "GR", "RO", "BR", "IN", "MX", "AR", "CO", "ID", "NG", "EG", "TR", "ZA", "KE", "PH",
];
const LANGUAGES: [&str; 10] = ["it", "fr", "de", "es", "pt", "en", "nl", "pl", "hi", "tr"];
const OS: [&str; 2] = ["android", "ios"];

fn interest(i: usize) -> String {
    format!("channel:topic{i}")
}

pub fn catalog(campaigns: usize, seed: u64) -> CatalogData {
    let mut rng = StdRng::seed_from_u64(seed);
    let created = datetime!(2026-01-01 00:00:00 UTC);
    let advertisers: Vec<Advertiser> = (0..campaigns.div_ceil(10))
        .map(|i| Advertiser {
            id: AdvertiserId::generate(),
            name: format!("Advertiser {i}"),
            chat_number: None,
            currency: "EUR".into(),
            api_key_hash: format!("{i:064x}"),
            created_at: created,
            messaging_limit: None,
        })
        .collect();
    let mut data = CatalogData {
        advertisers,
        ..CatalogData::default()
    };
    for i in 0..campaigns {
        let advertiser = data.advertisers[i / 10].id.clone();
        let priority = match rng.gen_range(0..1000) {
            0..=4 => Priority::Sponsorship,
            5..=9 => Priority::House,
            _ => Priority::Auction,
        };
        let pick = |rng: &mut StdRng, from: &[&str], max: usize| -> Vec<String> {
            let n = rng.gen_range(1..=max);
            from.choose_multiple(rng, n)
                .map(|s| s.to_string())
                .collect()
        };
        let targeting = Targeting {
            countries: if rng.gen_bool(0.9) {
                pick(&mut rng, &COUNTRIES, 3)
            } else {
                Vec::new()
            },
            cities: Vec::new(),
            languages: if rng.gen_bool(0.5) {
                pick(&mut rng, &LANGUAGES, 1)
            } else {
                Vec::new()
            },
            os: if rng.gen_bool(0.3) {
                pick(&mut rng, &OS, 1)
            } else {
                Vec::new()
            },
            age: rng.gen_bool(0.5).then(|| {
                let min = rng.gen_range(13..50);
                AgeRange {
                    min,
                    max: rng.gen_range(min..=80),
                }
            }),
            interests: if rng.gen_bool(0.4) {
                (0..rng.gen_range(1..=3))
                    .map(|_| interest(rng.gen_range(0..200)))
                    .collect()
            } else {
                Vec::new()
            },
        };
        let bid = if priority == Priority::House {
            0
        } else {
            (500_000.0 * 20f64.powf(rng.gen::<f64>())) as i64
        };
        let campaign = Campaign {
            id: CampaignId::generate(),
            advertiser_id: advertiser.clone(),
            name: format!("Campaign {i}"),
            status: CampaignStatus::Active,
            start_at: created,
            end_at: None,
            bid_cpm_micros: bid,
            budget: (priority != Priority::House).then_some(Budget {
                total_micros: 1_000_000_000_000,
                daily_micros: None,
            }),
            pacing: Pacing::Asap,
            priority,
            targeting,
            frequency_caps: vec![FrequencyCap {
                max: 3,
                per_seconds: 86_400,
            }],
            advertiser_caps: false,
            objective: Objective::Awareness,
            chat: None,
            created_at: created,
            suppress_after: None,
        };
        data.creatives.push(Creative {
            id: CreativeId::generate(),
            campaign_id: campaign.id.clone(),
            advertiser_id: advertiser,
            status: CreativeStatus::Approved,
            reject_reason: None,
            format: "image".into(),
            headline: "Bench".into(),
            body: String::new(),
            cta_label: "Learn more".into(),
            asset: Asset {
                url: "/assets/bench".into(),
                sha256: "bench".into(),
                mime: "image/png".into(),
                width: 1080,
                height: 1920,
                duration_ms: None,
                bytes: 1,
            },
            created_at: created,
        });
        data.campaigns.push(campaign);
    }
    data
}

/// A random request context in the same distribution.
pub fn context(rng: &mut impl Rng) -> SlotContext {
    SlotContext {
        country: Some(COUNTRIES.choose(rng).unwrap().to_string()),
        city: None,
        language: Some(LANGUAGES.choose(rng).unwrap().to_string()),
        os: Some(OS.choose(rng).unwrap().to_string()),
        age: rng.gen_bool(0.7).then(|| rng.gen_range(13..80)),
        interests: (0..rng.gen_range(0..=5))
            .map(|_| interest(rng.gen_range(0..200)))
            .collect(),
    }
}
