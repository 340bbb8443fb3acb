//! Creative upload (advertiser) and moderation (operator). An upload is read with hard limits
//! (size, parts, uploads in flight per advertiser, and the body deadline every request has),
//! recognised by content, validated whole, and only then stored: a rejected upload stores nothing.

use actix_multipart::{Multipart, MultipartError};
use actix_web::{get, post, web, HttpResponse};
use futures_util::TryStreamExt;
use serde::Deserialize;
use serde::Serialize;
use utoipa_actix_web::service_config::ServiceConfig;

use super::auth::{AdvertiserAuth, Operator};
use super::campaigns::parse_id;
use super::error::ApiError;
use super::AppState;
use crate::catalog::Moderation;
use crate::codes;
use crate::domain::creative::{Asset, Creative, CreativeMeta, CreativeStatus, Rejection};
use crate::domain::ids::CreativeId;
use crate::media::{self, MediaError};

/// The largest file any format allows; reading stops one byte past it.
const MAX_FILE_BYTES: usize = media::MAX_VIDEO_BYTES;
const MAX_META_BYTES: usize = 4 * 1024;
const MAX_PARTS: usize = 4;

#[derive(Serialize, utoipa::ToSchema)]
pub struct CreativeList<'a> {
    #[schema(value_type = Vec<Creative>)]
    pub creatives: Vec<&'a std::sync::Arc<Creative>>,
}

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(upload)
        .service(list)
        .service(show)
        .service(approve)
        .service(reject)
        .service(moderation_queue);
}

fn multipart_error(err: MultipartError) -> ApiError {
    match err {
        MultipartError::ContentTypeMissing
        | MultipartError::ContentTypeIncompatible
        | MultipartError::ContentTypeParse => {
            ApiError::UnsupportedMediaType("expected multipart/form-data".into())
        }
        other => ApiError::InvalidRequest(format!("malformed multipart body: {other}")),
    }
}

/// Reads one part into memory, refusing to buffer more than `limit` bytes.
async fn read_part(
    field: &mut actix_multipart::Field,
    limit: usize,
    name: &str,
) -> Result<Vec<u8>, ApiError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field.try_next().await.map_err(multipart_error)? {
        if bytes.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge(format!(
                "part {name:?} exceeds {limit} bytes"
            )));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

fn media_error(err: MediaError) -> ApiError {
    let message = err.to_string();
    match err {
        MediaError::Unsupported(_) => ApiError::UnsupportedMediaType(message),
        MediaError::TooLarge { .. } => ApiError::PayloadTooLarge(message),
        MediaError::InvalidDimensions(_) => {
            ApiError::validation(codes::INVALID_DIMENSIONS, message)
        }
        MediaError::InvalidAspectRatio(_) => {
            ApiError::validation(codes::INVALID_ASPECT_RATIO, message)
        }
        MediaError::InvalidDuration(_) => ApiError::validation(codes::INVALID_DURATION, message),
    }
}

#[utoipa::path(
    summary = "Upload a creative (parts `file` and `meta`)",
    request_body(content = crate::domain::creative::CreativeMeta, content_type = "multipart/form-data"),
    responses((status = 201, body = crate::domain::creative::Creative)),
    security(("bearer" = ["advertiser"])),
)]
#[post("/v1/campaigns/{id}/creatives")]
async fn upload(
    AdvertiserAuth(owner): AdvertiserAuth,
    state: web::Data<AppState>,
    path: web::Path<String>,
    mut payload: Multipart,
) -> Result<HttpResponse, ApiError> {
    // Refused before the body is read and its asset stored.
    let campaign = state
        .catalog
        .campaign_taking_creatives(&owner, &parse_id(&path)?)?;
    // Held until the upload ends, however it ends: bounds the bodies one advertiser can have
    // buffered at once.
    let _slot = state
        .uploads
        .enter(owner.id.as_str(), &state.metrics)
        .map_err(ApiError::RateLimited)?;
    let (mut file, mut meta) = (None, None);
    let mut parts = 0;
    while let Some(mut field) = payload.try_next().await.map_err(multipart_error)? {
        parts += 1;
        if parts > MAX_PARTS {
            return Err(ApiError::InvalidRequest(format!(
                "at most {MAX_PARTS} parts"
            )));
        }
        match field.name() {
            Some("file") => file = Some(read_part(&mut field, MAX_FILE_BYTES, "file").await?),
            Some("meta") => meta = Some(read_part(&mut field, MAX_META_BYTES, "meta").await?),
            _ => {
                return Err(ApiError::InvalidRequest(
                    "unexpected part: only `file` and `meta`".into(),
                ))
            }
        }
    }
    let file = file.ok_or_else(|| ApiError::InvalidRequest("missing part `file`".into()))?;
    let meta = meta.ok_or_else(|| ApiError::InvalidRequest("missing part `meta`".into()))?;
    let meta: CreativeMeta = serde_json::from_slice(&meta)
        .map_err(|e| ApiError::InvalidRequest(format!("invalid `meta` JSON: {e}")))?;
    let info = media::inspect(&file).map_err(media_error)?;
    meta.validate()?;

    let sha = state.assets.put(&file).await?;
    let creative = Creative {
        id: CreativeId::generate(),
        campaign_id: campaign.id.clone(),
        advertiser_id: owner.id.clone(),
        status: CreativeStatus::Pending,
        reject_reason: None,
        format: info.format.as_str().to_owned(),
        headline: meta.headline,
        body: meta.body,
        cta_label: meta.cta_label.unwrap_or_else(|| "Learn more".into()),
        asset: Asset {
            url: format!("/assets/{sha}"),
            sha256: sha,
            mime: info.mime.to_owned(),
            width: info.width,
            height: info.height,
            duration_ms: info.duration_ms,
            bytes: file.len() as u64,
        },
        created_at: state.clock.now(),
    };
    let creative = state.catalog.add_creative(creative).await?;
    Ok(HttpResponse::Created().json(creative))
}

#[utoipa::path(
    summary = "A campaign's creatives",
    responses((status = 200, body = CreativeList)),
    security(("bearer" = ["advertiser"])),
)]
#[get("/v1/campaigns/{id}/creatives")]
async fn list(
    AdvertiserAuth(owner): AdvertiserAuth,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let campaign = state.catalog.owned_campaign(&owner, &parse_id(&path)?)?;
    let snapshot = state.catalog.snapshot();
    let mut creatives: Vec<_> = snapshot
        .creatives()
        .filter(|c| c.campaign_id == campaign.id)
        .collect();
    creatives.sort_by_key(|c| (c.created_at, c.id.clone()));
    Ok(HttpResponse::Ok().json(CreativeList { creatives }))
}

#[utoipa::path(
    summary = "A creative",
    responses((status = 200, body = crate::domain::creative::Creative)),
    security(("bearer" = ["advertiser"])),
)]
#[get("/v1/creatives/{id}")]
async fn show(
    AdvertiserAuth(owner): AdvertiserAuth,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = CreativeId::parse(&path).ok_or(ApiError::NotFound)?;
    let snapshot = state.catalog.snapshot();
    let creative = snapshot
        .creative(&id)
        .filter(|c| c.advertiser_id == owner.id)
        .ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok().json(creative))
}

#[utoipa::path(
    summary = "Approve a creative",
    responses((status = 200, body = crate::domain::creative::Creative)),
    security(("bearer" = ["operator"])),
)]
#[post("/v1/creatives/{id}/approve")]
async fn approve(
    _: Operator,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = CreativeId::parse(&path).ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok().json(state.catalog.moderate(&id, &Moderation::Approve).await?))
}

#[utoipa::path(
    summary = "Reject a creative with a reason",
    request_body = crate::domain::creative::Rejection,
    responses((status = 200, body = crate::domain::creative::Creative)),
    security(("bearer" = ["operator"])),
)]
#[post("/v1/creatives/{id}/reject")]
async fn reject(
    _: Operator,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<Rejection>,
) -> Result<HttpResponse, ApiError> {
    let id = CreativeId::parse(&path).ok_or(ApiError::NotFound)?;
    body.validate()?;
    let reason = body.into_inner().reason.trim().to_owned();
    Ok(HttpResponse::Ok().json(
        state
            .catalog
            .moderate(&id, &Moderation::Reject(reason))
            .await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QueueQuery {
    status: Option<CreativeStatus>,
}

#[utoipa::path(
    summary = "Creatives by moderation status (default pending)",
    responses((status = 200, body = CreativeList)),
    security(("bearer" = ["operator"])),
)]
#[get("/v1/moderation/creatives")]
async fn moderation_queue(
    _: Operator,
    state: web::Data<AppState>,
    query: web::Query<QueueQuery>,
) -> HttpResponse {
    let wanted = query.status.unwrap_or(CreativeStatus::Pending);
    let snapshot = state.catalog.snapshot();
    let mut creatives: Vec<_> = snapshot
        .creatives()
        .filter(|c| c.status == wanted)
        .collect();
    creatives.sort_by_key(|c| (c.created_at, c.id.clone()));
    HttpResponse::Ok().json(CreativeList { creatives })
}
