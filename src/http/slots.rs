//! `POST /v1/slots`: the client asks where to put ads in a user's status queue.

use actix_web::{post, web, HttpResponse};
use utoipa_actix_web::service_config::ServiceConfig;

use super::auth::Client;
use super::error::ApiError;
use super::AppState;
use crate::domain::slot::{SlotRequestBody, SlotsResponse};
use crate::metrics::RateLimitScope;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(slots);
}

#[utoipa::path(
    summary = "Ad slots for a user's status queue",
    request_body = crate::domain::slot::SlotRequestBody,
    responses((status = 200, body = crate::domain::slot::SlotsResponse)),
    security(("bearer" = ["client"])),
)]
#[post("/v1/slots")]
async fn slots(
    _: Client,
    state: web::Data<AppState>,
    body: web::Json<SlotRequestBody>,
) -> Result<HttpResponse, ApiError> {
    let request = body.into_inner().parse()?;
    state.limit(RateLimitScope::User, request.user.as_str())?;
    let answer: SlotsResponse = state.server.slots(&request).await;
    Ok(HttpResponse::Ok().json(answer))
}
