//! The one error type of the HTTP boundary and the one table mapping each stable error code to
//! its HTTP status (API.md "Conventions"). Bodies are `{"error": {"code", "message"}}`; a 5xx body
//! never carries internals (they go to the log with the request id).

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::catalog::CatalogError;
use crate::domain::ValidationError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("a valid bearer token is required")]
    Unauthorized,
    #[error("this token's role may not do that")]
    Forbidden,
    #[error("not found")]
    NotFound,
    #[error("the request body did not arrive within {0} ms")]
    RequestTimeout(u64),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{}", .0.message)]
    Validation(ValidationError),
    #[error("too many requests; retry after {0} s")]
    RateLimited(u64),
    #[error("the store is unavailable, retry later")]
    Unavailable(String),
    #[error("internal error")]
    Internal(String),
}

/// Every error response: `{"error": {"code", "message"}}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable snake_case code (see the error table).
    pub code: &'static str,
    pub message: String,
}

/// Code and status of every error, in one place.
pub const ERROR_TABLE: &[(&str, u16)] = &[
    ("invalid_request", 400),
    ("unauthorized", 401),
    ("forbidden", 403),
    ("not_found", 404),
    ("request_timeout", 408),
    ("conflict", 409),
    ("payload_too_large", 413),
    ("unsupported_media_type", 415),
    ("rate_limited", 429),
    ("internal", 500),
    ("unavailable", 503),
];

/// Validation codes are 422 whatever their name.
const VALIDATION_STATUS: u16 = 422;

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::RequestTimeout(_) => "request_timeout",
            Self::Conflict(_) => "conflict",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::Validation(v) => v.code,
            Self::RateLimited(_) => "rate_limited",
            Self::Unavailable(_) => "unavailable",
            Self::Internal(_) => "internal",
        }
    }

    pub fn validation(code: &'static str, message: impl Into<String>) -> Self {
        Self::Validation(ValidationError::new(code, message))
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        let code = self.code();
        let status = match self {
            Self::Validation(_) => VALIDATION_STATUS,
            _ => ERROR_TABLE
                .iter()
                .find(|(c, _)| *c == code)
                .map(|(_, s)| *s)
                .unwrap_or(500),
        };
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            Self::Internal(detail) => tracing::error!(%detail, "internal error"),
            Self::Unavailable(detail) => tracing::warn!(%detail, "store unavailable"),
            _ => {}
        }
        let mut response = HttpResponse::build(self.status_code());
        match self {
            Self::Unavailable(_) => {
                response.insert_header((header::RETRY_AFTER, "1"));
            }
            Self::RateLimited(seconds) => {
                response.insert_header((header::RETRY_AFTER, seconds.to_string()));
            }
            _ => {}
        }
        response.json(ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message: self.to_string(),
            },
        })
    }
}

impl From<ValidationError> for ApiError {
    fn from(err: ValidationError) -> Self {
        Self::Validation(err)
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable { .. } => Self::Unavailable(err.report().to_string()),
            StoreError::Corrupt { .. } => Self::Internal(err.report().to_string()),
        }
    }
}

impl From<crate::privacy::subject::SubjectError> for ApiError {
    fn from(err: crate::privacy::subject::SubjectError) -> Self {
        use crate::privacy::subject::SubjectError;
        match err {
            SubjectError::Store(err) => err.into(),
            SubjectError::RecordBehind => Self::Unavailable(err.to_string()),
        }
    }
}

impl From<CatalogError> for ApiError {
    fn from(err: CatalogError) -> Self {
        match err {
            CatalogError::NotFound => Self::NotFound,
            CatalogError::Conflict(message) => Self::Conflict(message),
            CatalogError::Invalid(v) => Self::Validation(v),
            CatalogError::Store(s) => s.into(),
        }
    }
}

impl From<actix_web::error::JsonPayloadError> for ApiError {
    fn from(err: actix_web::error::JsonPayloadError) -> Self {
        use actix_web::error::JsonPayloadError as E;
        match err {
            E::Overflow { limit } | E::OverflowKnownLength { limit, .. } => {
                Self::PayloadTooLarge(format!("JSON bodies are limited to {limit} bytes"))
            }
            E::ContentType => {
                Self::UnsupportedMediaType("expected Content-Type: application/json".into())
            }
            E::Deserialize(e) => Self::InvalidRequest(format!("invalid JSON body: {e}")),
            other => Self::InvalidRequest(format!("cannot read the body: {other}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_maps_through_the_table() {
        let cases = [
            (ApiError::InvalidRequest("x".into()), 400),
            (ApiError::Unauthorized, 401),
            (ApiError::Forbidden, 403),
            (ApiError::NotFound, 404),
            (ApiError::RequestTimeout(300), 408),
            (ApiError::Conflict("x".into()), 409),
            (ApiError::PayloadTooLarge("x".into()), 413),
            (ApiError::UnsupportedMediaType("x".into()), 415),
            (ApiError::validation("invalid_aspect_ratio", "x"), 422),
            (ApiError::RateLimited(2), 429),
            (ApiError::Unavailable("x".into()), 503),
            (ApiError::Internal("secret detail".into()), 500),
        ];
        for (err, status) in cases {
            assert_eq!(err.status_code().as_u16(), status, "{}", err.code());
        }
        assert!(!ApiError::Internal("secret detail".into())
            .to_string()
            .contains("secret"));
    }
}
