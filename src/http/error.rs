//! The one error type of the HTTP boundary; each answers a code of the one table,
//! [`crate::codes`] (API.md "Conventions"). Bodies are `{"error": {"code", "message"}}`; a 5xx body
//! never carries internals (they go to the log with the request id).

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::catalog::CatalogError;
use crate::codes::{self, Code};
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
    #[error("the advertiser's currency {0} has no exchange rate configured (money.rates); nothing was recorded, retry later")]
    UnpricedCurrency(String),
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

/// Code and status of every error: the one table, [`codes::TABLE`].
pub use crate::codes::TABLE as ERROR_TABLE;

impl ApiError {
    pub fn code(&self) -> Code {
        match self {
            Self::InvalidRequest(_) => codes::INVALID_REQUEST,
            Self::Unauthorized => codes::UNAUTHORIZED,
            Self::Forbidden => codes::FORBIDDEN,
            Self::NotFound => codes::NOT_FOUND,
            Self::RequestTimeout(_) => codes::REQUEST_TIMEOUT,
            Self::Conflict(_) => codes::CONFLICT,
            Self::PayloadTooLarge(_) => codes::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => codes::UNSUPPORTED_MEDIA_TYPE,
            Self::Validation(v) => v.code,
            Self::RateLimited(_) => codes::RATE_LIMITED,
            Self::Unavailable(_) => codes::UNAVAILABLE,
            Self::UnpricedCurrency(_) => codes::UNPRICED_CURRENCY,
            Self::Internal(_) => codes::INTERNAL,
        }
    }

    pub fn validation(code: Code, message: impl Into<String>) -> Self {
        Self::Validation(ValidationError::new(code, message))
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.code().status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            Self::Internal(detail) => tracing::error!(%detail, "internal error"),
            Self::Unavailable(detail) => tracing::warn!(%detail, "store unavailable"),
            Self::UnpricedCurrency(currency) => {
                tracing::warn!(%currency, "a message was refused: its advertiser's currency has no exchange rate (money.rates)")
            }
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
            // An operator has to add the rate: no point retrying at once.
            Self::UnpricedCurrency(_) => {
                response.insert_header((header::RETRY_AFTER, "60"));
            }
            _ => {}
        }
        response.json(ErrorBody {
            error: ErrorDetail {
                code: self.code().as_str(),
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
            stale @ CatalogError::Stale => Self::Conflict(stale.to_string()),
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
            (ApiError::validation(codes::INVALID_ASPECT_RATIO, "x"), 422),
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
