//! Advertiser endpoints for campaigns. Another advertiser's campaign is a 404.

use actix_web::{delete, get, patch, post, web, HttpResponse};
use serde::Serialize;
use utoipa_actix_web::service_config::ServiceConfig;

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

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(create)
        .service(list)
        .service(show)
        .service(update)
        .service(archive)
        .service(history);
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

#[utoipa::path(
    summary = "Every change to a campaign, oldest first",
    responses((status = 200, body = CampaignHistory)),
    security(("bearer" = ["operator"]), ("bearer" = ["advertiser"])),
)]
#[get("/v1/campaigns/{id}/history")]
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

#[utoipa::path(
    summary = "Create a campaign",
    request_body = crate::domain::campaign::CampaignInput,
    responses((status = 201, body = crate::domain::campaign::CampaignView)),
    security(("bearer" = ["advertiser"])),
)]
#[post("/v1/campaigns")]
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

#[utoipa::path(
    summary = "List the advertiser's campaigns",
    responses((status = 200, body = CampaignList)),
    security(("bearer" = ["advertiser"])),
)]
#[get("/v1/campaigns")]
async fn list(AdvertiserAuth(owner): AdvertiserAuth, state: web::Data<AppState>) -> HttpResponse {
    let snapshot = state.catalog.snapshot();
    let mut campaigns: Vec<_> = snapshot.campaigns_of(&owner.id).collect();
    campaigns.sort_by_key(|c| (c.created_at, c.id.clone()));
    let views: Vec<_> = campaigns.into_iter().map(|c| view(&state, c)).collect();
    HttpResponse::Ok().json(CampaignList { campaigns: views })
}

#[utoipa::path(
    summary = "A campaign",
    responses((status = 200, body = crate::domain::campaign::CampaignView)),
    security(("bearer" = ["advertiser"])),
)]
#[get("/v1/campaigns/{id}")]
async fn show(
    AdvertiserAuth(owner): AdvertiserAuth,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let campaign = state.catalog.owned_campaign(&owner, &parse_id(&path)?)?;
    Ok(HttpResponse::Ok().json(view(&state, &campaign)))
}

#[utoipa::path(
    summary = "Change any subset of a campaign's writable fields",
    request_body = crate::domain::campaign::CampaignInput,
    responses((status = 200, body = crate::domain::campaign::CampaignView)),
    security(("bearer" = ["advertiser"])),
)]
#[patch("/v1/campaigns/{id}")]
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

#[utoipa::path(
    summary = "Archive a campaign (history and spend stay)",
    responses((status = 200, body = crate::domain::campaign::CampaignView)),
    security(("bearer" = ["advertiser"])),
)]
#[delete("/v1/campaigns/{id}")]
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
