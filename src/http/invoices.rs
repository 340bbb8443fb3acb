//! `GET /v1/invoices/{YYYY-MM}`: the advertiser's invoice, JSON or (`Accept: text/csv`) CSV;
//! `GET /v1/invoices/{YYYY-MM}/records`: the ledger records it bills, CSV (default) or NDJSON.

use actix_web::http::header;
use actix_web::{get, web, HttpRequest, HttpResponse};
use utoipa_actix_web::service_config::ServiceConfig;

use super::auth::AdvertiserAuth;
use super::error::ApiError;
use super::AppState;
use crate::ledger::invoice::{self, Invoice, InvoiceRecords};
use crate::ledger::report::rfc3339;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(show).service(billed_records);
}

fn accepts(req: &HttpRequest, mime: &str) -> bool {
    req.headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains(mime))
}

async fn load(
    state: &AppState,
    owner: &crate::domain::advertiser::Advertiser,
    month: &str,
) -> Result<(Invoice, InvoiceRecords, String), ApiError> {
    let as_of = state.exporter.caught_up().await;
    let (invoice, records) = invoice::monthly(&state.record, owner, month, as_of).await??;
    Ok((invoice, records, rfc3339(as_of)))
}

#[utoipa::path(
    summary = "The advertiser's invoice for a YYYY-MM month (CSV with Accept: text/csv)",
    responses((
        status = 200,
        content((crate::ledger::invoice::Invoice = "application/json"), (String = "text/csv")),
    )),
    security(("bearer" = ["advertiser"])),
)]
#[get("/v1/invoices/{month}")]
async fn show(
    req: HttpRequest,
    AdvertiserAuth(owner): AdvertiserAuth,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (invoice, _, as_of) = load(&state, &owner, &path).await?;
    Ok(if accepts(&req, "text/csv") {
        HttpResponse::Ok()
            .content_type("text/csv; charset=utf-8")
            .insert_header(("X-As-Of", as_of))
            .body(invoice.to_csv())
    } else {
        HttpResponse::Ok().json(invoice)
    })
}

#[utoipa::path(
    summary = "Every ledger record the invoice bills, CSV (default) or NDJSON (Accept: application/x-ndjson); its SHA-256 is the invoice digest",
    responses((status = 200, content((String = "text/csv"), (String = "application/x-ndjson")))),
    security(("bearer" = ["advertiser"])),
)]
#[get("/v1/invoices/{month}/records")]
async fn billed_records(
    req: HttpRequest,
    AdvertiserAuth(owner): AdvertiserAuth,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (_, records, as_of) = load(&state, &owner, &path).await?;
    Ok(if accepts(&req, "application/x-ndjson") {
        HttpResponse::Ok()
            .content_type("application/x-ndjson")
            .insert_header(("X-As-Of", as_of))
            .body(records.to_ndjson())
    } else {
        HttpResponse::Ok()
            .content_type("text/csv; charset=utf-8")
            .insert_header(("X-As-Of", as_of))
            .body(records.to_csv())
    })
}
