//! Campaign reports: the owning advertiser (or the operator) only.

use actix_web::{get, web, HttpResponse};
use utoipa_actix_web::service_config::ServiceConfig;

use super::auth::Reader;
use super::campaigns::parse_id;
use super::error::ApiError;
use super::AppState;
use crate::ledger::report::{self, ReportQuery};

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(campaign_report);
}

#[utoipa::path(
    summary = "Counters, spend and reach of a campaign (`from`, `to`: YYYY-MM-DD; `by`: day, hour, country, os, age_band, creative)",
    responses((status = 200, body = crate::ledger::report::Report)),
    security(("bearer" = ["operator"]), ("bearer" = ["advertiser"])),
)]
#[get("/v1/reports/campaigns/{id}")]
async fn campaign_report(
    reader: Reader,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<ReportQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path)?;
    let campaign = super::campaigns::readable(&state, reader, &id)?;
    let (from, to) = report::parse_range(&query, state.clock.now().date())?;
    let as_of = state.exporter.caught_up().await;
    let report =
        report::campaign_report(&state.record, &campaign.id, from, to, query.by, as_of).await?;
    Ok(HttpResponse::Ok().json(report))
}
