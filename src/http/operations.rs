//! Liveness, readiness and metrics.

use actix_web::{get, web, HttpResponse};
use utoipa_actix_web::service_config::ServiceConfig;

use super::AppState;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(healthz).service(readyz).service(metrics);
}

#[utoipa::path(
    summary = "Liveness",
    responses((status = 200, body = String, content_type = "text/plain")),
)]
#[get("/healthz")]
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

/// Ready when the hot store and the system of record answer and this node can make writes
/// durable (journal, spool and `data_dir` writable); the body says what is wrong.
#[utoipa::path(
    summary = "Readiness: store reachable and catalog loaded",
    responses((status = 200, body = String, content_type = "text/plain")),
)]
#[get("/readyz")]
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let mut trouble = match (state.store.ping().await, state.record.ping().await) {
        (Err(_), _) => Some("store unavailable"),
        (_, Err(_)) => Some("system of record unavailable"),
        (Ok(()), Ok(())) => state
            .store
            .write_trouble()
            .or_else(|| state.ledger.spool.as_ref().and_then(|s| s.trouble())),
    };
    if trouble.is_none() {
        // An fsync may take a while on a busy disk: off the worker thread.
        let dir = state.data_dir.clone();
        let probed = web::block(move || crate::store::durability::probe(&dir)).await;
        if let Err(err) = probed.map_err(std::io::Error::other).and_then(|r| r) {
            tracing::warn!(error = %err, "data_dir cannot take durable writes");
            trouble = Some("data_dir cannot take durable writes");
        }
    }
    match trouble {
        None => HttpResponse::Ok().content_type("text/plain").body("ready"),
        Some(reason) => {
            tracing::warn!(%reason, "not ready");
            HttpResponse::ServiceUnavailable()
                .content_type("text/plain")
                .body(reason)
        }
    }
}

#[utoipa::path(
    summary = "Prometheus metrics",
    responses((status = 200, body = String, content_type = "text/plain")),
)]
#[get("/metrics")]
async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}
