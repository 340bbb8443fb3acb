//! Advertiser endpoints for campaigns. Another advertiser's campaign is a 404.

use actix_web::{web, HttpResponse};
use serde::Serialize;

use super::auth::{AdvertiserAuth, Reader};
use super::error::ApiError;
use super::AppState;
use crate::domain::campaign::{Campaign, CampaignInput, CampaignView};
use crate::domain::history::CampaignChange;
use crate::domain::ids::CampaignId;

#[derive(Serialize, utoipa::ToSchema)]
pub struct CampaignList {
    #[schema(value_type = Vec<crate::domain::campaign::CampaignView>)]
    pub campaigns: Vec<serde_json::Value>,
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/campaigns", web::post().to(create))
        .route("/v1/campaigns", web::get().to(list))
        .route("/v1/campaigns/{id}", web::get().to(show))
        .route("/v1/campaigns/{id}", web::patch().to(update))
        .route("/v1/campaigns/{id}", web::delete().to(archive))
        .route("/v1/campaigns/{id}/history", web::get().to(history));
}

/// Every change to a campaign, oldest first (`GET /v1/campaigns/{id}/history`).
#[derive(Serialize, utoipa::ToSchema)]
pub struct CampaignHistory {
    pub changes: Vec<CampaignChange>,
}

/// The campaign a reader may see: the operator any, an advertiser its own (else 404).
pub fn readable(
    state: &AppState,
    reader: Reader,
    id: &CampaignId,
) -> Result<std::sync::Arc<Campaign>, ApiError> {
    Ok(match reader {
        Reader::Advertiser(owner) => state.catalog.owned_campaign(&owner, id)?,
        Reader::Operator => state
            .catalog
            .snapshot()
            .campaign(id)
            .cloned()
            .ok_or(ApiError::NotFound)?,
    })
}

async fn history(
    reader: Reader,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let campaign = readable(&state, reader, &parse_id(&path)?)?;
    let changes = state.catalog.history(&campaign.id).await?;
    Ok(HttpResponse::Ok().json(CampaignHistory { changes }))
}

fn view(state: &AppState, campaign: &Campaign) -> serde_json::Value {
    let view = CampaignView::new(campaign, state.clock.now(), state.spend.of(&campaign.id));
    serde_json::to_value(view).unwrap_or_default()
}

pub fn parse_id(raw: &str) -> Result<CampaignId, ApiError> {
    CampaignId::parse(raw).ok_or(ApiError::NotFound)
}

async fn create(
    AdvertiserAuth(owner): AdvertiserAuth,
    state: web::Data<AppState>,
    body: web::Json<CampaignInput>,
) -> Result<HttpResponse, ApiError> {
    let campaign = state
        .catalog
        .create_campaign(&owner, body.into_inner(), state.clock.now())
        .await?;
    Ok(HttpResponse::Created().json(view(&state, &campaign)))
}

async fn list(AdvertiserAuth(owner): AdvertiserAuth, state: web::Data<AppState>) -> HttpResponse {
    let snapshot = state.catalog.snapshot();
    let mut campaigns: Vec<_> = snapshot.campaigns_of(&owner.id).collect();
    campaigns.sort_by_key(|c| (c.created_at, c.id.clone()));
    let views: Vec<_> = campaigns.into_iter().map(|c| view(&state, c)).collect();
    HttpResponse::Ok().json(CampaignList { campaigns: views })
}

async fn show(
    AdvertiserAuth(owner): AdvertiserAuth,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let campaign = state.catalog.owned_campaign(&owner, &parse_id(&path)?)?;
    Ok(HttpResponse::Ok().json(view(&state, &campaign)))
}

async fn update(
    AdvertiserAuth(owner): AdvertiserAuth,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<CampaignInput>,
) -> Result<HttpResponse, ApiError> {
    let campaign = state
        .catalog
        .update_campaign(
            &owner,
            &parse_id(&path)?,
            body.into_inner(),
            state.clock.now(),
        )
        .await?;
    Ok(HttpResponse::Ok().json(view(&state, &campaign)))
}

async fn archive(
    AdvertiserAuth(owner): AdvertiserAuth,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let campaign = state
        .catalog
        .archive_campaign(&owner, &parse_id(&path)?, state.clock.now())
        .await?;
    Ok(HttpResponse::Ok().json(view(&state, &campaign)))
}
