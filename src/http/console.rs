//! The advertiser and operator console: static files from `web/`, embedded in the binary (no
//! separate server, no CDN, works offline). It talks to the same JSON API with the user's token.

use actix_web::http::header;
use actix_web::{web, HttpResponse};

const INDEX: &str = include_str!("../../web/index.html");
const SCRIPT: &str = include_str!("../../web/console.js");
const STYLE: &str = include_str!("../../web/console.css");

/// Same-origin only; `blob:` for the live preview of a file before it is uploaded.
const POLICY: &str = "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; \
                      style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/console",
        web::get().to(|| async { page(INDEX, "text/html; charset=utf-8") }),
    )
    .route(
        "/console/",
        web::get().to(|| async { page(INDEX, "text/html; charset=utf-8") }),
    )
    .route(
        "/console/console.js",
        web::get().to(|| async { page(SCRIPT, "text/javascript; charset=utf-8") }),
    )
    .route(
        "/console/console.css",
        web::get().to(|| async { page(STYLE, "text/css; charset=utf-8") }),
    );
}

fn page(body: &'static str, content_type: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CONTENT_SECURITY_POLICY, POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(body)
}
