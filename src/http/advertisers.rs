//! Operator endpoints for advertisers.

use actix_web::{web, HttpResponse};
use serde::Serialize;

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

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/advertisers", web::post().to(create))
        .route("/v1/advertisers", web::get().to(list))
        .route("/v1/advertisers/{id}", web::patch().to(update))
        .route("/v1/advertisers/{id}/keys", web::post().to(rotate_key));
}

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

async fn list(_: Operator, state: web::Data<AppState>) -> HttpResponse {
    let snapshot = state.catalog.snapshot();
    let mut advertisers: Vec<AdvertiserView<'_>> = snapshot
        .advertisers()
        .map(|a| AdvertiserView::from(&**a))
        .collect();
    advertisers.sort_by_key(|a| a.created_at);
    HttpResponse::Ok().json(AdvertiserList { advertisers })
}

async fn rotate_key(
    _: Operator,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = AdvertiserId::parse(&path).ok_or(ApiError::NotFound)?;
    let key = state.catalog.rotate_key(&id).await?;
    Ok(HttpResponse::Created().json(ApiKey { api_key: key }))
}
