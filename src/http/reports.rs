//! Campaign reports: the owning advertiser (or the operator) only.

use actix_web::{web, HttpResponse};

use super::auth::Reader;
use super::campaigns::parse_id;
use super::error::ApiError;
use super::AppState;
use crate::ledger::report::{self, ReportQuery};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/reports/campaigns/{id}", web::get().to(campaign_report));
}

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
