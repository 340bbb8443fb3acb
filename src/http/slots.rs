//! `POST /v1/slots`: the client asks where to put ads in a user's status queue.

use actix_web::{web, HttpResponse};

use super::auth::Client;
use super::error::ApiError;
use super::AppState;
use crate::domain::slot::{SlotRequestBody, SlotsResponse};
use crate::metrics::RateLimitScope;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/slots", web::post().to(slots));
}

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
