//! `POST /v1/messages`: the messaging platform (operator token) reports one business message;
//! it is rated and, when charged, billed. `POST /v1/messages/{id}/status`: its delivery status
//! settles a charge left pending by `"delivery": "sent"`.

use actix_web::{post, web, HttpResponse};
use utoipa_actix_web::service_config::ServiceConfig;

use super::auth::Operator;
use super::error::ApiError;
use super::AppState;
use crate::ledger::messages::{MessageBody, MessageError, Messages, StatusBody};

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(record).service(status);
}

fn messages(state: &AppState) -> Messages<'_> {
    Messages {
        store: &state.store,
        catalog: &state.catalog,
        rules: &state.rules,
        metrics: &state.metrics,
        shards: state.shards,
        clock: &state.clock,
    }
}

impl From<MessageError> for ApiError {
    fn from(err: MessageError) -> Self {
        match err {
            MessageError::NotFound => ApiError::NotFound,
            MessageError::Invalid(invalid) => invalid.into(),
            MessageError::Store(store) => store.into(),
            MessageError::UnpricedCurrency(currency) => ApiError::UnpricedCurrency(currency),
        }
    }
}

#[utoipa::path(
    summary = "Record and rate a business message (messaging platform)",
    request_body = crate::ledger::messages::MessageBody,
    responses((status = 200, body = crate::ledger::messages::MessageResult)),
    security(("bearer" = ["operator"])),
)]
#[post("/v1/messages")]
async fn record(
    _: Operator,
    state: web::Data<AppState>,
    body: web::Json<MessageBody>,
) -> Result<HttpResponse, ApiError> {
    let result = messages(&state).record(&body).await?;
    Ok(HttpResponse::Ok().json(result))
}

#[utoipa::path(
    summary = "Settle a sent message's charge by its delivery status (messaging platform)",
    request_body = crate::ledger::messages::StatusBody,
    responses((status = 200, body = crate::ledger::messages::StatusResult)),
    security(("bearer" = ["operator"])),
)]
#[post("/v1/messages/{id}/status")]
async fn status(
    _: Operator,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<StatusBody>,
) -> Result<HttpResponse, ApiError> {
    let result = messages(&state).settle(&path, &body).await?;
    Ok(HttpResponse::Ok().json(result))
}
