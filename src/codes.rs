//! Every stable error code the API answers and the HTTP status it comes with: the one table
//! (API.md "Conventions"). A code exists only as a row here. Errors are built from these
//! constants, so a code without a row does not compile, and the OpenAPI document and
//! `docs/API.md` are checked against [`TABLE`].

use std::fmt;

/// A stable snake_case error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Code(&'static str);

impl Code {
    pub const fn as_str(self) -> &'static str {
        self.0
    }

    /// The HTTP status this code is answered with.
    pub fn status(self) -> u16 {
        TABLE
            .iter()
            .find(|(code, _)| *code == self)
            .map_or(500, |(_, status)| *status)
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl PartialEq<&str> for Code {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

macro_rules! table {
    ($($(#[doc = $doc:literal])* $name:ident = $text:literal, $status:literal;)*) => {
        $($(#[doc = $doc])* pub const $name: Code = Code($text);)*

        /// Every code and its status.
        pub const TABLE: &[(Code, u16)] = &[$(($name, $status)),*];

        #[cfg(test)]
        const NAMES: &[(&str, Code)] = &[$((stringify!($name), $name)),*];
    };
}

table! {
    /// The request is not valid JSON, misses a field or names an unknown one.
    INVALID_REQUEST = "invalid_request", 400;
    /// No bearer token, or one the service does not know.
    UNAUTHORIZED = "unauthorized", 401;
    /// A known token whose role may not do that.
    FORBIDDEN = "forbidden", 403;
    /// No such path, method or object (another advertiser's objects included).
    NOT_FOUND = "not_found", 404;
    /// The body did not arrive within `http.body_timeout_ms`.
    REQUEST_TIMEOUT = "request_timeout", 408;
    /// The change conflicts with the object's state.
    CONFLICT = "conflict", 409;
    /// The body or upload is over its limit.
    PAYLOAD_TOO_LARGE = "payload_too_large", 413;
    /// The body's type is not one the endpoint takes.
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type", 415;
    /// Too many requests; `Retry-After` says when to retry.
    RATE_LIMITED = "rate_limited", 429;
    /// A defect: logged with the request id, never detailed to the caller.
    INTERNAL = "internal", 500;
    /// The store did not answer: nothing was recorded; retry.
    UNAVAILABLE = "unavailable", 503;
    /// The advertiser's currency has no exchange rate (`money.rates`): nothing was recorded;
    /// retry once the operator has configured it.
    UNPRICED_CURRENCY = "unpriced_currency", 503;
    // A rule of the contract broken by the request's content: 422, each with its own code.
    BUDGET_TOO_SMALL = "budget_too_small", 422;
    FREE_FORM_WITH_CATEGORY = "free_form_with_category", 422;
    INBOUND_TEMPLATE = "inbound_template", 422;
    INBOUND_WITH_CATEGORY = "inbound_with_category", 422;
    INVALID_ASPECT_RATIO = "invalid_aspect_ratio", 422;
    INVALID_BID = "invalid_bid", 422;
    INVALID_BUDGET = "invalid_budget", 422;
    INVALID_CHAT = "invalid_chat", 422;
    INVALID_CHAT_NUMBER = "invalid_chat_number", 422;
    INVALID_CONTEXT = "invalid_context", 422;
    INVALID_COUNTRY = "invalid_country", 422;
    INVALID_CURRENCY = "invalid_currency", 422;
    INVALID_DATE = "invalid_date", 422;
    INVALID_DIMENSIONS = "invalid_dimensions", 422;
    INVALID_DURATION = "invalid_duration", 422;
    INVALID_FREQUENCY_CAP = "invalid_frequency_cap", 422;
    INVALID_MESSAGE = "invalid_message", 422;
    INVALID_MESSAGING_LIMIT = "invalid_messaging_limit", 422;
    INVALID_NAME = "invalid_name", 422;
    INVALID_OBJECTIVE = "invalid_objective", 422;
    INVALID_REASON = "invalid_reason", 422;
    INVALID_SCHEDULE = "invalid_schedule", 422;
    INVALID_SESSION = "invalid_session", 422;
    INVALID_STATUS = "invalid_status", 422;
    INVALID_STATUSES = "invalid_statuses", 422;
    INVALID_TARGETING = "invalid_targeting", 422;
    INVALID_TEXT = "invalid_text", 422;
    INVALID_USER = "invalid_user", 422;
    MESSAGING_LIMIT_REACHED = "messaging_limit_reached", 422;
    MISSING_KIND = "missing_kind", 422;
    OUTBOUND_CALL = "outbound_call", 422;
    OUTSIDE_SERVICE_WINDOW = "outside_service_window", 422;
    TEMPLATE_WITHOUT_CATEGORY = "template_without_category", 422;
    UNSUPPORTED_CURRENCY = "unsupported_currency", 422;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_code_is_its_constant_in_snake_case_once() {
        let mut seen = std::collections::HashSet::new();
        for (name, code) in NAMES {
            assert_eq!(name.to_ascii_lowercase(), code.as_str());
            assert!(seen.insert(code.as_str()), "{code} twice");
        }
        assert_eq!(BUDGET_TOO_SMALL.status(), 422);
        assert_eq!(UNAVAILABLE.status(), 503);
    }
}
