//! `GET` / `DELETE /v1/users/{user}` (operator): a user's rights of access and erasure.

use actix_web::{web, HttpResponse};

use super::auth::Operator;
use super::error::ApiError;
use super::AppState;
use crate::domain::UserId;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/users/{user}", web::get().to(access))
        .route("/v1/users/{user}", web::delete().to(erase));
}

fn user_of(path: &str) -> Result<UserId, ApiError> {
    UserId::parse(path).map_err(ApiError::Validation)
}

async fn access(
    _: Operator,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let user = user_of(&path)?;
    Ok(HttpResponse::Ok().json(state.subjects.access(&user).await?))
}

async fn erase(
    _: Operator,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let user = user_of(&path)?;
    Ok(HttpResponse::Ok().json(state.subjects.erase(&user).await?))
}
