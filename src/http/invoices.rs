//! `GET /v1/invoices/{YYYY-MM}`: the advertiser's invoice, JSON or (`Accept: text/csv`) CSV.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use super::auth::AdvertiserAuth;
use super::error::ApiError;
use super::AppState;
use crate::ledger::invoice;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/invoices/{month}", web::get().to(show));
}

async fn show(
    req: HttpRequest,
    AdvertiserAuth(owner): AdvertiserAuth,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let snapshot = state.catalog.snapshot();
    let invoice = invoice::monthly(&state.store, &snapshot, &owner, &path).await??;
    let wants_csv = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/csv"));
    Ok(if wants_csv {
        HttpResponse::Ok()
            .content_type("text/csv; charset=utf-8")
            .body(invoice.to_csv())
    } else {
        HttpResponse::Ok().json(invoice)
    })
}
