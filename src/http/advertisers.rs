//! Operator endpoints for advertisers.

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::auth::Operator;
use super::error::ApiError;
use super::AppState;
use crate::domain::advertiser::{AdvertiserView, NewAdvertiser};
use crate::domain::ids::AdvertiserId;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/advertisers", web::post().to(create))
        .route("/v1/advertisers", web::get().to(list))
        .route("/v1/advertisers/{id}/keys", web::post().to(rotate_key));
}

async fn create(
    _: Operator,
    state: web::Data<AppState>,
    body: web::Json<NewAdvertiser>,
) -> Result<HttpResponse, ApiError> {
    let (advertiser, key) = state
        .catalog
        .create_advertiser(body.into_inner(), state.clock.now())
        .await?;
    let mut view = serde_json::to_value(AdvertiserView::from(&advertiser))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    view["api_key"] = json!(key);
    Ok(HttpResponse::Created().json(view))
}

async fn list(_: Operator, state: web::Data<AppState>) -> HttpResponse {
    let snapshot = state.catalog.snapshot();
    let mut advertisers: Vec<AdvertiserView<'_>> = snapshot
        .advertisers()
        .map(|a| AdvertiserView::from(&**a))
        .collect();
    advertisers.sort_by_key(|a| a.created_at);
    HttpResponse::Ok().json(json!({ "advertisers": advertisers }))
}

async fn rotate_key(
    _: Operator,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = AdvertiserId::parse(&path).ok_or(ApiError::NotFound)?;
    let key = state.catalog.rotate_key(&id).await?;
    Ok(HttpResponse::Created().json(json!({ "api_key": key })))
}
