//! `POST /v1/conversions`: the messaging platform (operator token) reports conversations started
//! and messages sent through click-to-chat ads. `GET /v1/conversions`: the advertiser reads them
//! back for its CRM or conversion API.

use actix_web::{get, post, web, HttpResponse};
use serde::Serialize;
use utoipa_actix_web::service_config::ServiceConfig;

use super::auth::{AdvertiserAuth, Operator};
use super::campaigns::parse_id;
use super::error::ApiError;
use super::AppState;
use crate::ledger::conversions::{self, ConversionBody, ConversionQuery, ConversionStatus};
use crate::ledger::report::{parse_range, ReportQuery};

#[derive(Serialize, utoipa::ToSchema)]
pub struct ConversionResult {
    pub status: ConversionStatus,
}

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(convert).service(list);
}

#[utoipa::path(
    summary = "The advertiser's click-to-chat conversions (`campaign_id`, `from`, `to`: YYYY-MM-DD)",
    responses((status = 200, body = crate::ledger::conversions::ConversionList)),
    security(("bearer" = ["advertiser"])),
)]
#[get("/v1/conversions")]
async fn list(
    AdvertiserAuth(owner): AdvertiserAuth,
    state: web::Data<AppState>,
    query: web::Query<ConversionQuery>,
) -> Result<HttpResponse, ApiError> {
    let campaign = match &query.campaign_id {
        Some(raw) => Some(
            state
                .catalog
                .owned_campaign(&owner, &parse_id(raw)?)?
                .id
                .clone(),
        ),
        None => None,
    };
    let range = ReportQuery {
        from: query.from.clone(),
        to: query.to.clone(),
        by: Default::default(),
    };
    let (from, to) = parse_range(&range, state.clock.now().date())?;
    let as_of = state.exporter.caught_up().await;
    let list =
        conversions::list(&state.record, &owner.id, campaign.as_ref(), from, to, as_of).await?;
    Ok(HttpResponse::Ok().json(list))
}

#[utoipa::path(
    summary = "Attribute a click-to-chat conversion (messaging platform)",
    request_body = crate::ledger::conversions::ConversionBody,
    responses((status = 200, body = ConversionResult)),
    security(("bearer" = ["operator"])),
)]
#[post("/v1/conversions")]
async fn convert(
    _: Operator,
    state: web::Data<AppState>,
    body: web::Json<ConversionBody>,
) -> Result<HttpResponse, ApiError> {
    let at_ms = body.at_ms()?;
    let status = conversions::convert(
        &state.store,
        &state.catalog,
        &state.metrics,
        state.shards,
        &body,
        at_ms,
        |user| state.server.recent.forget(user),
    )
    .await?
    .ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok().json(ConversionResult { status }))
}
