//! `POST /v1/conversions`: the messaging platform (operator token) reports conversations started
//! and messages sent through click-to-chat ads.

use actix_web::{web, HttpResponse};
use serde::Serialize;

use super::auth::Operator;
use super::error::ApiError;
use super::AppState;
use crate::ledger::conversions::{self, ConversionBody, ConversionStatus};

#[derive(Serialize, utoipa::ToSchema)]
pub struct ConversionResult {
    pub status: ConversionStatus,
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/conversions", web::post().to(convert));
}

async fn convert(
    _: Operator,
    state: web::Data<AppState>,
    body: web::Json<ConversionBody>,
) -> Result<HttpResponse, ApiError> {
    let status = conversions::convert(
        &state.store,
        &state.catalog,
        &state.metrics,
        state.shards,
        &body,
    )
    .await?
    .ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok().json(ConversionResult { status }))
}
