//! `POST /v1/events`: renders, views, clicks, hides and reports of served slots.

use actix_web::{post, web, HttpResponse};
use utoipa_actix_web::service_config::ServiceConfig;

use super::auth::Client;
use super::error::ApiError;
use super::AppState;
use crate::domain::event::{EventBatch, EventsResponse, MAX_BATCH};

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(events);
}

#[utoipa::path(
    summary = "Report renders, views, clicks, hides and reports",
    request_body = crate::domain::event::EventBatch,
    responses((status = 200, body = crate::domain::event::EventsResponse)),
    security(("bearer" = ["client"])),
)]
#[post("/v1/events")]
async fn events(
    _: Client,
    state: web::Data<AppState>,
    body: web::Json<EventBatch>,
) -> Result<HttpResponse, ApiError> {
    let batch = body.into_inner();
    if batch.events.is_empty() || batch.events.len() > MAX_BATCH {
        return Err(ApiError::InvalidRequest(format!(
            "a batch holds 1 to {MAX_BATCH} events"
        )));
    }
    let results = state.ledger.ingest(&batch.events).await?;
    let carried = batch
        .state
        .as_deref()
        .map(|carried| state.server.carry_events(carried, &batch.events, &results));
    Ok(HttpResponse::Ok().json(EventsResponse {
        results,
        state: carried,
    }))
}
