//! The client's slot request and the slots it gets back.

use crate::codes;
use serde::{Deserialize, Serialize};

use super::text::check_one_line;
use super::{UserId, ValidationError};

pub const MAX_STATUSES: u32 = 500;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SlotRequestBody {
    pub user: String,
    #[serde(default)]
    pub session: Option<String>,
    pub statuses: u32,
    #[serde(default)]
    pub context: SlotContext,
    /// Absent: the configured `privacy.default_personalized`.
    #[serde(default)]
    pub consent: Option<Consent>,
    /// The signed state the last answer carried (users without personalisation); absent, or
    /// one that is altered, expired or another user's: a user never seen.
    #[serde(default)]
    pub state: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Consent {
    pub personalized: bool,
}

/// Coarse signals only, every one optional (absent = unknown).
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SlotContext {
    pub country: Option<String>,
    pub city: Option<String>,
    pub language: Option<String>,
    pub os: Option<String>,
    pub age: Option<u8>,
    #[serde(default)]
    pub interests: Vec<String>,
}

/// A validated slot request.
#[derive(Debug, Clone)]
pub struct SlotRequest {
    pub user: UserId,
    pub session: Option<String>,
    pub statuses: u32,
    pub context: SlotContext,
    /// The request's own answer (`None`: the configured default).
    pub personalized: Option<bool>,
    pub state: Option<String>,
}

impl SlotRequestBody {
    pub fn parse(self) -> Result<SlotRequest, ValidationError> {
        let user = UserId::parse(&self.user)?;
        if self.statuses > MAX_STATUSES {
            return Err(ValidationError::new(
                codes::INVALID_STATUSES,
                "statuses must be 0-500",
            ));
        }
        if let Some(session) = &self.session {
            if session.is_empty()
                || session.len() > 128
                || !session.bytes().all(|b| b.is_ascii_graphic())
            {
                return Err(ValidationError::new(
                    codes::INVALID_SESSION,
                    "session must be 1-128 visible ASCII characters",
                ));
            }
        }
        let ctx = &self.context;
        let too_long = |v: &Option<String>| v.as_ref().is_some_and(|s| s.len() > 100);
        if too_long(&ctx.country)
            || too_long(&ctx.city)
            || too_long(&ctx.language)
            || too_long(&ctx.os)
        {
            return Err(ValidationError::new(
                codes::INVALID_CONTEXT,
                "context values are at most 100 bytes",
            ));
        }
        if ctx.interests.len() > 100 || ctx.interests.iter().any(|i| i.len() > 100) {
            return Err(ValidationError::new(
                codes::INVALID_CONTEXT,
                "at most 100 interests of at most 100 bytes each",
            ));
        }
        for (field, value) in [
            ("context.country", &ctx.country),
            ("context.city", &ctx.city),
            ("context.language", &ctx.language),
            ("context.os", &ctx.os),
        ] {
            if let Some(value) = value {
                check_one_line(field, value, codes::INVALID_CONTEXT)?;
            }
        }
        for interest in &ctx.interests {
            check_one_line("context.interests", interest, codes::INVALID_CONTEXT)?;
        }
        // An interest of no known kind could name people or groups: it is never matched, so it
        // goes here, before anything can keep it (insight samples).
        let mut context = self.context;
        context
            .interests
            .retain(|interest| super::targeting::is_interest(interest));
        Ok(SlotRequest {
            user,
            session: self.session,
            statuses: self.statuses,
            context,
            personalized: self.consent.map(|c| c.personalized),
            state: self.state,
        })
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SlotsResponse {
    pub slots: Vec<Slot>,
    /// For a user without personalisation: the state to send with the next request (and with
    /// events), also when no slot was served.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Slot {
    pub position: u32,
    pub token: String,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: time::OffsetDateTime,
    pub ad: Ad,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Ad {
    pub creative_id: String,
    pub campaign_id: String,
    pub advertiser: AdAdvertiser,
    pub format: String,
    pub asset_url: String,
    pub width: u32,
    pub height: u32,
    pub duration_ms: Option<u64>,
    pub headline: String,
    pub body: String,
    pub label: &'static str,
    pub cta: Option<Cta>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AdAdvertiser {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Cta {
    pub kind: &'static str,
    pub label: String,
    pub url: String,
    pub click_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An interest of no known kind is dropped at parse: never matched, never sampled.
    #[test]
    fn a_request_keeps_only_interests_of_known_kinds() {
        let body: SlotRequestBody = serde_json::from_value(serde_json::json!({
            "user": "u1", "statuses": 12,
            "context": {"interests": ["contact:+393331234567", "channel:football", "group:family"]}
        }))
        .unwrap();
        assert_eq!(
            body.parse().unwrap().context.interests,
            ["channel:football"]
        );
    }
}
