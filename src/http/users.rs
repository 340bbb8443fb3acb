//! `GET` / `DELETE /v1/users/{user}` (operator): a user's rights of access and erasure.

use actix_web::{delete, get, web, HttpResponse};
use utoipa_actix_web::service_config::ServiceConfig;

use super::auth::Operator;
use super::error::ApiError;
use super::AppState;
use crate::domain::UserId;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(access).service(erase);
}

fn user_of(path: &str) -> Result<UserId, ApiError> {
    UserId::parse(path).map_err(ApiError::Validation)
}

#[utoipa::path(
    summary = "Everything stored about a user, by kind (the right of access)",
    responses((status = 200, body = crate::privacy::subject::UserAccess)),
    security(("bearer" = ["operator"])),
)]
#[get("/v1/users/{user}")]
async fn access(
    _: Operator,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let user = user_of(&path)?;
    Ok(HttpResponse::Ok().json(state.subjects.access(&user).await?))
}

#[utoipa::path(
    summary = "Erase every per-user record; billing records stay, unlinked (the right of erasure)",
    responses((status = 200, body = crate::privacy::subject::Erased)),
    security(("bearer" = ["operator"])),
)]
#[delete("/v1/users/{user}")]
async fn erase(
    _: Operator,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let user = user_of(&path)?;
    Ok(HttpResponse::Ok().json(state.subjects.erase(&user).await?))
}
