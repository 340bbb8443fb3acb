//! Advertiser insight: delivery diagnostics (advertiser, operator), the decision explainer
//! (operator) and forecasts (advertiser). See `crate::insight`.

use actix_web::{get, post, web, HttpResponse};
use serde::Deserialize;
use utoipa_actix_web::service_config::ServiceConfig;

use super::auth::{AdvertiserAuth, Operator, Reader};
use super::campaigns::parse_id;
use super::error::ApiError;
use super::AppState;
use crate::domain::campaign::{Campaign, CampaignInput};
use crate::domain::slot::SlotRequestBody;
use crate::ledger::report::{self, ReportQuery};

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(explain).service(forecast).service(delivery);
}

/// `from` / `to`: inclusive UTC days (YYYY-MM-DD), the last 30 days by default.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryQuery {
    pub from: Option<String>,
    pub to: Option<String>,
}

#[utoipa::path(
    summary = "Why the campaign served or not, from sampled decisions (?from&to: YYYY-MM-DD)",
    responses((status = 200, body = crate::insight::Delivery)),
    security(("bearer" = ["operator"]), ("bearer" = ["advertiser"])),
)]
#[get("/v1/campaigns/{id}/delivery")]
async fn delivery(
    reader: Reader,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<DeliveryQuery>,
) -> Result<HttpResponse, ApiError> {
    let campaign = super::campaigns::readable(&state, reader, &parse_id(&path)?)?;
    let query = query.into_inner();
    let range = ReportQuery {
        from: query.from,
        to: query.to,
        by: Default::default(),
    };
    let (from, to) = report::parse_range(&range, state.clock.now().date())?;
    let day_ms = |day: time::Date| crate::clock::ms_from_datetime(day.midnight().assume_utc());
    let answer = state
        .server
        .insight
        .delivery(&campaign, day_ms(from), day_ms(to) + 86_400_000)
        .await?;
    Ok(HttpResponse::Ok().json(answer))
}

#[utoipa::path(
    summary = "The decision the service would make for a slot request, with every campaign's outcome; no effect",
    request_body = crate::domain::slot::SlotRequestBody,
    responses((status = 200, body = crate::serving::Explanation)),
    security(("bearer" = ["operator"])),
)]
#[post("/v1/slots/explain")]
async fn explain(
    _: Operator,
    state: web::Data<AppState>,
    body: web::Json<SlotRequestBody>,
) -> Result<HttpResponse, ApiError> {
    let request = body.into_inner().parse()?;
    Ok(HttpResponse::Ok().json(state.server.explain(&request).await?))
}

#[utoipa::path(
    summary = "What a proposed campaign (not saved) would have got over the basis period",
    request_body = crate::domain::campaign::CampaignInput,
    responses((status = 200, body = crate::insight::forecast::Forecast)),
    security(("bearer" = ["advertiser"])),
)]
#[post("/v1/forecast")]
async fn forecast(
    AdvertiserAuth(owner): AdvertiserAuth,
    state: web::Data<AppState>,
    body: web::Json<CampaignInput>,
) -> Result<HttpResponse, ApiError> {
    let proposed = Campaign::create(
        body.into_inner(),
        &owner,
        state.server.catalog.snapshot().money(),
        state.clock.now(),
    )?;
    let server = &state.server;
    let market = server.forecast_market();
    Ok(HttpResponse::Ok().json(server.insight.forecast(proposed, market).await?))
}
