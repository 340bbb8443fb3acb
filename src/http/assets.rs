//! Public, immutable creative media by SHA-256. The bytes are advertisers' uploads: every answer
//! says `nosniff`, so a browser never reinterprets one as HTML or script whatever it contains.

use actix_web::http::header;
use actix_web::{get, web, HttpRequest, HttpResponse};
use utoipa_actix_web::service_config::ServiceConfig;

use super::error::ApiError;
use super::AppState;
use crate::media;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(asset);
}

/// A creative's bytes, exactly as uploaded.
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct Media(pub Vec<u8>);

#[utoipa::path(
    summary = "A creative's media (immutable, ETag)",
    responses((status = 200, body = Media, content_type = "application/octet-stream")),
)]
#[get("/assets/{sha256}")]
async fn asset(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let sha = path.into_inner();
    let etag = format!("\"{sha}\"");
    // The content is its name: a matching ETag never needs the bytes.
    let cached = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let bytes = state.assets.get(&sha).await?.ok_or(ApiError::NotFound)?;
    let mut response = if cached {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((header::CACHE_CONTROL, "public, max-age=31536000, immutable"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::ETAG, etag));
    if cached {
        return Ok(response.finish());
    }
    let mime = media::inspect(&bytes)
        .map(|info| info.mime)
        .unwrap_or("application/octet-stream");
    Ok(response.content_type(mime).body(bytes))
}
