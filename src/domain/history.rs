//! What changed in a campaign, and who changed it: the rows of
//! `GET /v1/campaigns/{id}/history`. A change is the difference between two versions of the
//! campaign's document, field by field (creation is a change from nothing).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use super::campaign::Campaign;

/// Who made a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Actor {
    Advertiser,
    Operator,
}

impl Actor {
    pub fn as_str(self) -> &'static str {
        match self {
            Actor::Advertiser => "advertiser",
            Actor::Operator => "operator",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "advertiser" => Some(Actor::Advertiser),
            "operator" => Some(Actor::Operator),
            _ => None,
        }
    }
}

/// One field's value before and after (`null` before creation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FieldChange {
    #[schema(value_type = Object)]
    pub from: Value,
    #[schema(value_type = Object)]
    pub to: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CampaignChange {
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: OffsetDateTime,
    pub actor: Actor,
    pub fields: BTreeMap<String, FieldChange>,
}

/// Fields that never change after creation, so they are not history.
const FIXED: [&str; 3] = ["id", "advertiser_id", "created_at"];

impl CampaignChange {
    /// The change from `before` (`None`: the campaign is new) to `after`; `None` when no field
    /// differs.
    pub fn between(
        before: Option<&Campaign>,
        after: &Campaign,
        actor: Actor,
        at: OffsetDateTime,
    ) -> Option<Self> {
        let document = |c: &Campaign| match serde_json::to_value(c) {
            Ok(Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        };
        let old = before.map(document).unwrap_or_default();
        let new = document(after);
        let fields: BTreeMap<String, FieldChange> = new
            .iter()
            .filter(|(name, _)| !FIXED.contains(&name.as_str()))
            .filter_map(|(name, to)| {
                let from = old.get(name).cloned().unwrap_or(Value::Null);
                (&from != to).then(|| {
                    (
                        name.clone(),
                        FieldChange {
                            from,
                            to: to.clone(),
                        },
                    )
                })
            })
            .collect();
        (!fields.is_empty()).then_some(Self { at, actor, fields })
    }
}
