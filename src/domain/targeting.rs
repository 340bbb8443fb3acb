//! Targeting on coarse signals only. There is deliberately no field for message content,
//! contacts or groups: such fields are rejected as unknown.

use crate::codes;
use serde::{Deserialize, Serialize};

use super::slot::SlotContext;
use super::text::check_one_line;
use super::ValidationError;

const MAX_LIST: usize = 250;
const OPERATING_SYSTEMS: [&str; 4] = ["android", "ios", "web", "kaios"];

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Targeting {
    #[serde(default)]
    pub countries: Vec<String>,
    #[serde(default)]
    pub cities: Vec<String>,
    #[serde(default)]
    pub languages: Vec<String>,
    #[serde(default)]
    pub os: Vec<String>,
    #[serde(default)]
    pub age: Option<AgeRange>,
    #[serde(default)]
    pub interests: Vec<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgeRange {
    pub min: u8,
    pub max: u8,
}

fn invalid(message: impl Into<String>) -> ValidationError {
    ValidationError::new(codes::INVALID_TARGETING, message)
}

impl Targeting {
    pub fn validate(&self) -> Result<(), ValidationError> {
        for (name, list) in [
            ("countries", &self.countries),
            ("cities", &self.cities),
            ("languages", &self.languages),
            ("os", &self.os),
            ("interests", &self.interests),
        ] {
            if list.len() > MAX_LIST {
                return Err(invalid(format!(
                    "targeting.{name} has more than {MAX_LIST} entries"
                )));
            }
        }
        if let Some(bad) = self.countries.iter().find(|c| !is_country(c)) {
            return Err(invalid(format!(
                "country {bad:?} is not an ISO 3166-1 alpha-2 code like IT"
            )));
        }
        if let Some(bad) = self.languages.iter().find(|l| !is_language(l)) {
            return Err(invalid(format!(
                "language {bad:?} is not an ISO 639-1 code like it"
            )));
        }
        if let Some(bad) = self
            .os
            .iter()
            .find(|o| !OPERATING_SYSTEMS.contains(&o.as_str()))
        {
            return Err(invalid(format!(
                "os {bad:?} is not one of {OPERATING_SYSTEMS:?}"
            )));
        }
        if let Some(bad) = self
            .cities
            .iter()
            .find(|c| c.trim().is_empty() || c.chars().count() > 100)
        {
            return Err(invalid(format!("city {bad:?} must be 1-100 characters")));
        }
        for city in &self.cities {
            check_one_line("targeting.cities", city, codes::INVALID_TARGETING)?;
        }
        if let Some(bad) = self.interests.iter().find(|i| !is_interest(i)) {
            return Err(invalid(format!(
                "interest {bad:?} must look like kind:name with kind channel or topic, e.g. channel:football"
            )));
        }
        if let Some(AgeRange { min, max }) = self.age {
            if min < 13 || max > 120 || min > max {
                return Err(invalid("age must satisfy 13 <= min <= max <= 120"));
            }
        }
        Ok(())
    }

    /// A targeted dimension never matches an unknown value of it.
    pub fn matches(&self, ctx: &SlotContext) -> bool {
        fn one_of(list: &[String], value: Option<&str>, fold: bool) -> bool {
            list.is_empty()
                || value.is_some_and(|v| {
                    list.iter().any(|item| {
                        if fold {
                            item.eq_ignore_ascii_case(v)
                        } else {
                            item == v
                        }
                    })
                })
        }
        one_of(&self.countries, ctx.country.as_deref(), true)
            && one_of(&self.languages, ctx.language.as_deref(), true)
            && one_of(&self.os, ctx.os.as_deref(), true)
            && one_of(&self.cities, ctx.city.as_deref(), true)
            && (self.interests.is_empty()
                || ctx.interests.iter().any(|i| self.interests.contains(i)))
            && self.age.is_none_or(|range| {
                ctx.age
                    .is_some_and(|age| (range.min..=range.max).contains(&age))
            })
    }
}

fn is_country(code: &str) -> bool {
    code.len() == 2 && code.bytes().all(|b| b.is_ascii_uppercase())
}

fn is_language(code: &str) -> bool {
    code.len() == 2 && code.bytes().all(|b| b.is_ascii_lowercase())
}

/// The kinds of interest there are: public things a user follows or reads about. A free kind
/// could name people or groups (`contact:…`, `group:…`), which no field may carry.
pub const INTEREST_KINDS: [&str; 2] = ["channel", "topic"];

/// An interest as campaigns target it and requests may carry it: `kind:name`, the kind one of
/// [`INTEREST_KINDS`].
pub fn is_interest(value: &str) -> bool {
    let Some((kind, name)) = value.split_once(':') else {
        return false;
    };
    INTEREST_KINDS.contains(&kind)
        && (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interests_name_channels_and_topics_never_people_or_groups() {
        assert!(is_interest("channel:football"));
        assert!(is_interest("topic:cooking"));
        for bad in [
            "group:family",
            "contact:mom",
            "football",
            "channel:",
            "Channel:x",
        ] {
            assert!(!is_interest(bad), "{bad}");
        }
    }

    fn ctx(country: Option<&str>, age: Option<u8>, interests: &[&str]) -> SlotContext {
        SlotContext {
            country: country.map(Into::into),
            age,
            interests: interests.iter().map(|s| s.to_string()).collect(),
            ..SlotContext::default()
        }
    }

    #[test]
    fn empty_targeting_matches_everyone() {
        assert!(Targeting::default().matches(&ctx(None, None, &[])));
    }

    #[test]
    fn targeted_dimensions_never_match_unknown_values() {
        let t = Targeting {
            countries: vec!["IT".into()],
            age: Some(AgeRange { min: 18, max: 30 }),
            interests: vec!["channel:football".into()],
            ..Targeting::default()
        };
        assert!(t.matches(&ctx(Some("IT"), Some(25), &["channel:football", "x:y"])));
        assert!(t.matches(&ctx(Some("it"), Some(18), &["channel:football"])));
        assert!(!t.matches(&ctx(None, Some(25), &["channel:football"])));
        assert!(!t.matches(&ctx(Some("IT"), None, &["channel:football"])));
        assert!(!t.matches(&ctx(Some("IT"), Some(31), &["channel:football"])));
        assert!(!t.matches(&ctx(Some("FR"), Some(25), &["channel:football"])));
        assert!(!t.matches(&ctx(Some("IT"), Some(25), &["channel:tennis"])));
    }

    #[test]
    fn validation_names_the_problem() {
        let bad = Targeting {
            countries: vec!["Italy".into()],
            ..Targeting::default()
        };
        assert_eq!(bad.validate().unwrap_err().code, "invalid_targeting");
        let bad = Targeting {
            age: Some(AgeRange { min: 40, max: 20 }),
            ..Targeting::default()
        };
        assert!(bad.validate().is_err());
        let bad = Targeting {
            interests: vec!["football".into()],
            ..Targeting::default()
        };
        assert!(bad.validate().is_err());
        let good = Targeting {
            countries: vec!["IT".into()],
            languages: vec!["it".into()],
            os: vec!["android".into(), "ios".into()],
            age: Some(AgeRange { min: 18, max: 65 }),
            interests: vec!["channel:football".into()],
            cities: vec!["Milano".into()],
        };
        assert!(good.validate().is_ok());
    }
}
