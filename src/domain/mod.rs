//! Parse-once domain types. A value of these types has passed every rule of API.md, so the rest
//! of the crate never re-validates. Validation failures are [`ValidationError`]s carrying the
//! stable 422 code of API.md.

pub mod advertiser;
pub mod audience;
pub mod campaign;
pub mod creative;
pub mod event;
pub mod history;
pub mod ids;
pub mod money;
pub mod slot;
pub mod targeting;
pub mod text;

use crate::codes::{self, Code};

/// A rule of the contract was broken; `code` is its stable code (a 422 row of `codes`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ValidationError {
    pub code: Code,
    pub message: String,
}

impl ValidationError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        debug_assert_eq!(code.status(), 422, "{code} is not a validation code");
        Self {
            code,
            message: message.into(),
        }
    }
}

/// Micros of the owning object's currency (1 unit = 1,000,000).
pub type Micros = i64;

/// Opaque pseudonymous user id from the client: 1–128 visible ASCII characters.
/// Visible ASCII keeps it safe inside Redis keys and token payloads.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserId(String);

impl UserId {
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        if raw.is_empty() || raw.len() > 128 || !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ValidationError::new(
                codes::INVALID_USER,
                "user must be 1-128 visible ASCII characters",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_are_bounded_visible_ascii() {
        assert!(UserId::parse("u-123_ABC=").is_ok());
        assert!(UserId::parse("").is_err());
        assert!(UserId::parse("has space").is_err());
        assert!(UserId::parse("new\nline").is_err());
        assert!(UserId::parse(&"x".repeat(129)).is_err());
        assert!(UserId::parse(&"x".repeat(128)).is_ok());
    }
}
