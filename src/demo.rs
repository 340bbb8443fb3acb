//! Demo data for the quick start: one advertiser, three campaigns (one per tier) with approved,
//! generated 9:16 creatives, so `POST /v1/slots` answers with ads on a fresh machine.

use time::OffsetDateTime;

use crate::catalog::assets::AssetStore;
use crate::catalog::{Catalog, CatalogError, Moderation};
use crate::domain::advertiser::NewAdvertiser;
use crate::domain::campaign::CampaignInput;
use crate::domain::creative::{Asset, Creative, CreativeStatus};
use crate::domain::ids::CreativeId;
use crate::media;

pub struct Seeded {
    pub advertiser_id: String,
    pub api_key: String,
}

/// Seeds only an empty catalog; returns what it created.
pub async fn seed(
    catalog: &Catalog,
    assets: &AssetStore,
    now: OffsetDateTime,
) -> Result<Option<Seeded>, CatalogError> {
    if catalog.snapshot().advertisers().next().is_some() {
        return Ok(None);
    }
    let (advertiser, api_key) = catalog
        .create_advertiser(
            NewAdvertiser {
                name: "Pizzeria Roma".into(),
                chat_number: Some("+390612345678".into()),
                // The service's own currency: priced whatever the configuration.
                currency: catalog.snapshot().money().currency().to_owned(),
            },
            now,
        )
        .await?;
    let campaigns = [
        (
            r#"{"name": "Winter sale", "bid_cpm_micros": 2500000, "priority": "auction", "pacing": "asap",
             "budget": {"total_micros": 100000000, "daily_micros": 10000000},
             "frequency_caps": [{"max": 3, "per_seconds": 86400}]}"#,
            [200, 40, 40],
            "Pizza night, 2 for 1",
        ),
        (
            r#"{"name": "Chat with us", "bid_cpm_micros": 1500000, "objective": "chat", "pacing": "asap",
             "chat": {"prefilled_text": "Hi! I saw your ad"},
             "budget": {"total_micros": 50000000}, "frequency_caps": [{"max": 2, "per_seconds": 3600}]}"#,
            [40, 160, 60],
            "Book a table by chat",
        ),
        (
            r#"{"name": "House filler", "priority": "house", "bid_cpm_micros": 0}"#,
            [40, 40, 160],
            "Status tips",
        ),
    ];
    for (json, rgb, headline) in campaigns {
        let input: CampaignInput =
            serde_json::from_str(json).expect("demo campaigns are valid JSON");
        let campaign = catalog.create_campaign(&advertiser, input, now).await?;
        let png = media::png::solid_png(1080, 1920, rgb);
        let info = media::inspect(&png).expect("generated demo images are valid");
        let sha = assets.put(&png).await?;
        let creative = Creative {
            id: CreativeId::generate(),
            campaign_id: campaign.id.clone(),
            advertiser_id: advertiser.id.clone(),
            status: CreativeStatus::Pending,
            reject_reason: None,
            format: info.format.as_str().into(),
            headline: headline.into(),
            body: "Only this week at Pizzeria Roma.".into(),
            cta_label: "Chat now".into(),
            asset: Asset {
                url: format!("/assets/{sha}"),
                sha256: sha,
                mime: info.mime.into(),
                width: info.width,
                height: info.height,
                duration_ms: None,
                bytes: png.len() as u64,
            },
            created_at: now,
        };
        let creative = catalog.add_creative(creative).await?;
        catalog.moderate(&creative.id, &Moderation::Approve).await?;
    }
    Ok(Some(Seeded {
        advertiser_id: advertiser.id.to_string(),
        api_key,
    }))
}
