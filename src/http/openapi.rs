//! `GET /openapi.json`: the API as OpenAPI 3.1, generated from the handlers. Each handler carries
//! its `#[utoipa::path]` beside its actix route macro, so its method and path, summary, request
//! and response types and the roles that may call it (bearer scopes) are written once, on the
//! handler; `utoipa-actix-web` collects the operations from the services the `configure`
//! functions register (a service without `#[utoipa::path]` does not compile there). Every
//! schema is derived from the Rust type the handler (de)serialises.
//!
//! What all operations share is added here, from each operation's shape, so no handler repeats
//! it: the bearer scheme, path parameters, and the error answers (by role, body and path).

use std::sync::OnceLock;

use actix_web::{get, HttpResponse};
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, ObjectBuilder, Ref, Required, ResponseBuilder, Type};
use utoipa::OpenApi;
use utoipa_actix_web::service_config::ServiceConfig;
use utoipa_actix_web::AppExt;

use super::error::{ErrorBody, ERROR_TABLE};

/// The security scheme every role's scope names.
pub const BEARER: &str = "bearer";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "statusads",
        version = "1",
        description = "Sponsored items in the Status feed: decide, cap, count, bill."
    ),
    components(schemas(ErrorBody))
)]
struct Base;

/// The whole document: the operations of every registered handler, completed.
pub fn document() -> utoipa::openapi::OpenApi {
    let (_, mut doc) = actix_web::App::new()
        .into_utoipa_app()
        .openapi(Base::openapi())
        .configure(super::configure)
        .split_for_parts();
    if let Some(components) = doc.components.as_mut() {
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
    for (path, item) in doc.paths.paths.iter_mut() {
        for (method, operation) in [
            ("get", &mut item.get),
            ("post", &mut item.post),
            ("put", &mut item.put),
            ("patch", &mut item.patch),
            ("delete", &mut item.delete),
        ] {
            if let Some(operation) = operation {
                complete(method, path, operation);
            }
        }
    }
    doc
}

/// Names the operation by method and path (handlers' own names repeat across resources), adds
/// the path parameters a handler did not name and the error answers its shape implies.
fn complete(method: &str, path: &str, operation: &mut Operation) {
    let slug: String = path
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    operation.operation_id =
        Some(format!("{method}{}", slug.trim_end_matches('_')).replace("__", "_"));
    let parameters = operation.parameters.get_or_insert_with(Vec::new);
    for name in path
        .split('/')
        .filter_map(|part| part.strip_prefix('{')?.strip_suffix('}'))
    {
        if !parameters.iter().any(|p| p.name == name) {
            parameters.push(
                ParameterBuilder::new()
                    .name(name)
                    .parameter_in(ParameterIn::Path)
                    .required(Required::True)
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String).build()))
                    .build(),
            );
        }
    }
    if parameters.is_empty() {
        operation.parameters = None;
    }
    // A success answer says what the operation does unless its handler says more.
    for response in operation.responses.responses.values_mut() {
        if let utoipa::openapi::RefOr::T(response) = response {
            if response.description.is_empty() {
                response.description = operation.summary.clone().unwrap_or_default();
            }
        }
    }
    for status in error_statuses(path, operation) {
        let code = ERROR_TABLE
            .iter()
            .find(|(_, s)| *s == status)
            .map_or("validation error", |(c, _)| c.as_str());
        let response = ResponseBuilder::new()
            .description(if status == 422 {
                "a named validation code (see `error.code`)"
            } else {
                code
            })
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build();
        operation
            .responses
            .responses
            .entry(status.to_string())
            .or_insert(response.into());
    }
}

/// The error statuses an operation can answer, from its roles, body and path.
fn error_statuses(path: &str, operation: &Operation) -> Vec<u16> {
    let mut statuses = Vec::new();
    if operation.security.as_ref().is_some_and(|s| !s.is_empty()) {
        statuses.extend([401, 403, 429]);
    }
    if operation.request_body.is_some() {
        // 408: the body did not arrive within `http.body_timeout_ms`.
        statuses.extend([400, 408, 413, 415, 422]);
    }
    if path.contains('{') {
        statuses.push(404);
    }
    if path.contains("{user}") {
        // A path that is not a user id (1-128 visible ASCII characters).
        statuses.push(422);
    }
    if path.starts_with("/v1/") {
        statuses.extend([500, 503]);
    }
    statuses
}

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(openapi_json);
}

#[utoipa::path(
    summary = "This document",
    responses((status = 200, body = Object)),
)]
#[get("/openapi.json")]
async fn openapi_json() -> HttpResponse {
    // A function of the code alone: built once per process.
    static JSON: OnceLock<String> = OnceLock::new();
    let json = JSON.get_or_init(|| {
        document()
            .to_json()
            .expect("the OpenAPI document serialises")
    });
    HttpResponse::Ok()
        .content_type("application/json")
        .body(json.as_str())
}
