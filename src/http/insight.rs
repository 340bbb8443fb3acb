//! Advertiser insight: delivery diagnostics (advertiser, operator), the decision explainer
//! (operator) and forecasts (advertiser). See `crate::insight`.

use actix_web::{web, HttpResponse};
use serde::Deserialize;

use super::auth::{AdvertiserAuth, Operator, Reader};
use super::campaigns::parse_id;
use super::error::ApiError;
use super::AppState;
use crate::domain::campaign::{Campaign, CampaignInput};
use crate::domain::slot::SlotRequestBody;
use crate::ledger::report::{self, ReportQuery};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/slots/explain", web::post().to(explain))
        .route("/v1/forecast", web::post().to(forecast))
        .route("/v1/campaigns/{id}/delivery", web::get().to(delivery));
}

/// `from` / `to`: inclusive UTC days (YYYY-MM-DD), the last 30 days by default.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryQuery {
    pub from: Option<String>,
    pub to: Option<String>,
}

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

async fn explain(
    _: Operator,
    state: web::Data<AppState>,
    body: web::Json<SlotRequestBody>,
) -> Result<HttpResponse, ApiError> {
    let request = body.into_inner().parse()?;
    Ok(HttpResponse::Ok().json(state.server.explain(&request).await?))
}

async fn forecast(
    AdvertiserAuth(owner): AdvertiserAuth,
    state: web::Data<AppState>,
    body: web::Json<CampaignInput>,
) -> Result<HttpResponse, ApiError> {
    let proposed = Campaign::create(body.into_inner(), &owner, state.clock.now())?;
    let server = &state.server;
    let market = server.forecast_market();
    Ok(HttpResponse::Ok().json(server.insight.forecast(proposed, market).await?))
}
