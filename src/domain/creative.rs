//! Creatives: the media and text an ad shows. Only `approved` creatives are ever served.

use crate::codes;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::ids::{AdvertiserId, CampaignId, CreativeId};
use super::text::check_one_line;
use super::ValidationError;

pub const MAX_HEADLINE_CHARS: usize = 40;
pub const MAX_BODY_CHARS: usize = 125;
pub const MAX_CTA_CHARS: usize = 20;
pub const MAX_REASON_CHARS: usize = 500;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CreativeStatus {
    Pending,
    Approved,
    Rejected,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Asset {
    pub url: String,
    pub sha256: String,
    pub mime: String,
    pub width: u32,
    pub height: u32,
    pub duration_ms: Option<u64>,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Creative {
    pub id: CreativeId,
    pub campaign_id: CampaignId,
    /// Owner, kept so ownership checks never need the campaign.
    #[serde(skip_serializing_if = "skip_owner")]
    pub advertiser_id: AdvertiserId,
    pub status: CreativeStatus,
    pub reject_reason: Option<String>,
    pub format: String,
    pub headline: String,
    pub body: String,
    pub cta_label: String,
    pub asset: Asset,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

fn skip_owner(_: &AdvertiserId) -> bool {
    false
}

/// The `meta` part of an upload.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreativeMeta {
    #[serde(default)]
    pub headline: String,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub cta_label: Option<String>,
}

impl CreativeMeta {
    pub fn validate(&self) -> Result<(), ValidationError> {
        let too_long = |text: &str, max: usize| text.chars().count() > max;
        if self.headline.trim().is_empty() || too_long(&self.headline, MAX_HEADLINE_CHARS) {
            return Err(ValidationError::new(
                codes::INVALID_TEXT,
                format!("headline must be 1-{MAX_HEADLINE_CHARS} characters"),
            ));
        }
        if too_long(&self.body, MAX_BODY_CHARS) {
            return Err(ValidationError::new(
                codes::INVALID_TEXT,
                format!("body must be at most {MAX_BODY_CHARS} characters"),
            ));
        }
        if self
            .cta_label
            .as_deref()
            .is_some_and(|l| l.trim().is_empty() || too_long(l, MAX_CTA_CHARS))
        {
            return Err(ValidationError::new(
                codes::INVALID_TEXT,
                format!("cta_label must be 1-{MAX_CTA_CHARS} characters"),
            ));
        }
        check_one_line("headline", &self.headline, codes::INVALID_TEXT)?;
        check_one_line("body", &self.body, codes::INVALID_TEXT)?;
        if let Some(label) = &self.cta_label {
            check_one_line("cta_label", label, codes::INVALID_TEXT)?;
        }
        Ok(())
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rejection {
    pub reason: String,
}

impl Rejection {
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.reason.trim().is_empty() || self.reason.chars().count() > MAX_REASON_CHARS {
            return Err(ValidationError::new(
                codes::INVALID_REASON,
                format!("reason must be 1-{MAX_REASON_CHARS} characters"),
            ));
        }
        check_one_line("reason", &self.reason, codes::INVALID_REASON)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(headline: &str, body: &str) -> CreativeMeta {
        CreativeMeta {
            headline: headline.into(),
            body: body.into(),
            cta_label: None,
        }
    }

    #[test]
    fn text_limits_count_characters_not_bytes() {
        assert!(meta(&"è".repeat(40), "").validate().is_ok());
        assert_eq!(
            meta(&"x".repeat(41), "").validate().unwrap_err().code,
            "invalid_text"
        );
        assert_eq!(
            meta("ok", &"x".repeat(126)).validate().unwrap_err().code,
            "invalid_text"
        );
        assert_eq!(meta("", "").validate().unwrap_err().code, "invalid_text");
        let err = meta("ok", "Two lines:\nsecond").validate().unwrap_err();
        assert_eq!(
            (err.code.as_str(), err.message.starts_with("body ")),
            ("invalid_text", true),
            "a creative's body is one line too"
        );
    }
}
