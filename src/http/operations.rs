//! Liveness, readiness and metrics.

use actix_web::{web, HttpResponse};

use super::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics));
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

/// Ready when the store answers and the catalog is loaded from it (not only from the cache).
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let unready = |why: &'static str| {
        HttpResponse::ServiceUnavailable()
            .content_type("text/plain")
            .body(why)
    };
    match state.store.ping().await {
        Ok(()) if state.catalog.origin() == crate::catalog::Origin::Store => {
            HttpResponse::Ok().content_type("text/plain").body("ready")
        }
        Ok(()) => unready("catalog not loaded from the store yet"),
        Err(_) => unready("store unavailable"),
    }
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}
