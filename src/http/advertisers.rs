//! Operator endpoints for advertisers.

use actix_web::{get, patch, post, web, HttpResponse};
use serde::Serialize;
use utoipa_actix_web::service_config::ServiceConfig;

use super::auth::Operator;
use super::error::ApiError;
use super::AppState;
use crate::domain::advertiser::{AdvertiserPatch, AdvertiserView, NewAdvertiser};
use crate::domain::ids::AdvertiserId;

/// `201` of `POST /v1/advertisers`: the only time the key is shown.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AdvertiserCreated<'a> {
    #[serde(flatten)]
    pub advertiser: AdvertiserView<'a>,
    pub api_key: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AdvertiserList<'a> {
    pub advertisers: Vec<AdvertiserView<'a>>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ApiKey {
    pub api_key: String,
}

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(create)
        .service(list)
        .service(update)
        .service(rotate_key);
}

#[utoipa::path(
    summary = "Set an advertiser's business-initiated messaging limit",
    request_body = crate::domain::advertiser::AdvertiserPatch,
    responses((status = 200, body = crate::domain::advertiser::AdvertiserView)),
    security(("bearer" = ["operator"])),
)]
#[patch("/v1/advertisers/{id}")]
async fn update(
    _: Operator,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<AdvertiserPatch>,
) -> Result<HttpResponse, ApiError> {
    let id = AdvertiserId::parse(&path).ok_or(ApiError::NotFound)?;
    let advertiser = state.catalog.update_advertiser(&id, &body).await?;
    Ok(HttpResponse::Ok().json(AdvertiserView::from(&advertiser)))
}

#[utoipa::path(
    summary = "Create an advertiser (its API key is shown once)",
    request_body = crate::domain::advertiser::NewAdvertiser,
    responses((status = 201, body = AdvertiserCreated)),
    security(("bearer" = ["operator"])),
)]
#[post("/v1/advertisers")]
async fn create(
    _: Operator,
    state: web::Data<AppState>,
    body: web::Json<NewAdvertiser>,
) -> Result<HttpResponse, ApiError> {
    let (advertiser, api_key) = state
        .catalog
        .create_advertiser(body.into_inner(), state.clock.now())
        .await?;
    Ok(HttpResponse::Created().json(AdvertiserCreated {
        advertiser: AdvertiserView::from(&advertiser),
        api_key,
    }))
}

#[utoipa::path(
    summary = "List advertisers (no keys)",
    responses((status = 200, body = AdvertiserList)),
    security(("bearer" = ["operator"])),
)]
#[get("/v1/advertisers")]
async fn list(_: Operator, state: web::Data<AppState>) -> HttpResponse {
    let snapshot = state.catalog.snapshot();
    let mut advertisers: Vec<AdvertiserView<'_>> = snapshot
        .advertisers()
        .map(|a| AdvertiserView::from(&**a))
        .collect();
    advertisers.sort_by_key(|a| a.created_at);
    HttpResponse::Ok().json(AdvertiserList { advertisers })
}

#[utoipa::path(
    summary = "Rotate an advertiser's API key",
    responses((status = 201, body = ApiKey)),
    security(("bearer" = ["operator"])),
)]
#[post("/v1/advertisers/{id}/keys")]
async fn rotate_key(
    _: Operator,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = AdvertiserId::parse(&path).ok_or(ApiError::NotFound)?;
    let key = state.catalog.rotate_key(&id).await?;
    Ok(HttpResponse::Created().json(ApiKey { api_key: key }))
}
