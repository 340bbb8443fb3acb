//! Client events about served slots and their per-event outcomes.

use serde::{Deserialize, Serialize};

pub const MAX_BATCH: usize = 100;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    Render,
    View,
    Click,
    Hide,
    Report,
}

impl EventType {
    pub const ALL: [EventType; 5] = [
        Self::Render,
        Self::View,
        Self::Click,
        Self::Hide,
        Self::Report,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Render => "render",
            Self::View => "view",
            Self::Click => "click",
            Self::Hide => "hide",
            Self::Report => "report",
        }
    }

    /// One bit per type in a token's dedupe state.
    pub fn bit(self) -> u32 {
        match self {
            Self::Render => 1,
            Self::View => 2,
            Self::Click => 4,
            Self::Hide => 8,
            Self::Report => 16,
        }
    }

    /// View and click only make sense after the token rendered.
    pub fn needs_render(self) -> bool {
        matches!(self, Self::View | Self::Click)
    }

    /// Hiding (or reporting) an advertiser stops its campaigns for this user.
    pub fn hides(self) -> bool {
        matches!(self, Self::Hide | Self::Report)
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventBatch {
    pub events: Vec<ClientEvent>,
    /// The signed state of a user without personalisation (as `POST /v1/slots` answered it):
    /// the answer then carries it updated with the batch's hides and reports.
    #[serde(default)]
    pub state: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientEvent {
    pub token: String,
    #[serde(rename = "type")]
    pub kind: EventType,
    /// When the client says it happened. Informational: caps and billing use the server clock,
    /// which a client cannot move.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub at: Option<time::OffsetDateTime>,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, Hash, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventStatus {
    Accepted,
    Duplicate,
    Expired,
    Invalid,
    Rejected,
}

impl EventStatus {
    pub const ALL: [EventStatus; 5] = [
        Self::Accepted,
        Self::Duplicate,
        Self::Expired,
        Self::Invalid,
        Self::Rejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Duplicate => "duplicate",
            Self::Expired => "expired",
            Self::Invalid => "invalid",
            Self::Rejected => "rejected",
        }
    }
}

/// Why an event was `rejected`; an optional extra field beside `status`.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// `view`/`click` before the token's `render`.
    OutOfOrder,
    /// A render that would break a frequency cap or the daily ad load.
    CapReached,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct EventResult {
    pub status: EventStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<RejectReason>,
}

impl EventResult {
    pub fn of(status: EventStatus) -> Self {
        Self {
            status,
            reason: None,
        }
    }

    pub fn rejected(reason: RejectReason) -> Self {
        Self {
            status: EventStatus::Rejected,
            reason: Some(reason),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventsResponse {
    pub results: Vec<EventResult>,
    /// Present when the batch carried a state: the state to keep from now on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}
