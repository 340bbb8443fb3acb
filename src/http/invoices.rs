//! `GET /v1/invoices/{YYYY-MM}`: the advertiser's invoice, JSON or (`Accept: text/csv`) CSV;
//! `GET /v1/invoices/{YYYY-MM}/records`: the ledger records it bills, CSV (default) or NDJSON.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use super::auth::AdvertiserAuth;
use super::error::ApiError;
use super::AppState;
use crate::ledger::invoice::{self, Invoice, InvoiceRecords};
use crate::ledger::report::rfc3339;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/invoices/{month}", web::get().to(show))
        .route("/v1/invoices/{month}/records", web::get().to(records));
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

async fn records(
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
