//! `POST /v1/messages`: the messaging platform (operator token) reports one business message;
//! it is rated and, when charged, billed.

use actix_web::{web, HttpResponse};

use super::auth::Operator;
use super::error::ApiError;
use super::AppState;
use crate::ledger::messages::{MessageBody, MessageError, Messages};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/messages", web::post().to(record));
}

async fn record(
    _: Operator,
    state: web::Data<AppState>,
    body: web::Json<MessageBody>,
) -> Result<HttpResponse, ApiError> {
    let messages = Messages {
        store: &state.store,
        catalog: &state.catalog,
        prices: &state.prices,
        metrics: &state.metrics,
        shards: state.shards,
    };
    match messages.record(&body).await {
        Ok(result) => Ok(HttpResponse::Ok().json(result)),
        Err(MessageError::UnknownAdvertiser) => Err(ApiError::NotFound),
        Err(MessageError::Invalid(invalid)) => Err(invalid.into()),
        Err(MessageError::Store(store)) => Err(store.into()),
    }
}
