//! The advertiser and operator console: static files from `web/`, embedded in the binary (no
//! separate server, no CDN, works offline). It talks to the same JSON API with the user's token.

use actix_web::http::header;
use actix_web::{get, web, HttpResponse};
use utoipa_actix_web::service_config::ServiceConfig;

const INDEX: &str = include_str!("../../web/index.html");
const SCRIPT: &str = include_str!("../../web/console.js");
const STYLE: &str = include_str!("../../web/console.css");

/// Same-origin only; `blob:` for the live preview of a file before it is uploaded.
const POLICY: &str = "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; \
                      style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'";

/// The console's own files are not API operations: only its page is in the OpenAPI document.
pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(index)
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

#[utoipa::path(
    summary = "The advertiser and operator console",
    responses((
        status = 200,
        description = "The console page",
        body = String,
        content_type = "text/html",
    )),
)]
#[get("/console")]
async fn index() -> HttpResponse {
    page(INDEX, "text/html; charset=utf-8")
}

fn page(body: &'static str, content_type: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CONTENT_SECURITY_POLICY, POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(body)
}
