//! Dated rule sets: what a charged business message costs, and the rules that change over time
//! (whether utility templates are free inside the window, a monthly free allowance of service
//! messages). Each set applies from its `effective_from` (00:00 UTC) until the next one; a
//! message is rated by the set in force at its own time. Messages older than the earliest set
//! are rated by it.
//!
//! A charge is a [`Schedule`]: the rate of each monthly volume tier. Which tier a message falls
//! in depends on how many messages of its counter (advertiser, month, category, country) were
//! charged before it, which only the store knows atomically: `messaging_shared.lua` picks the
//! tier as [`price_at`] does (which prices a message's first tier here, and the earlier
//! embedded builds' journals in `store::embedded`).

use std::collections::HashMap;

use serde::Deserialize;
use time::Date;

use super::{Category, Micros, Millis, PriceRow, PriceTable, Rating, WindowRules};
use crate::clock::ms_from_datetime;
use crate::domain::money::Rate;

/// Invoice line of service messages charged beyond a rule set's free allowance.
pub const SERVICE_LINE: &str = "service";

/// One volume tier: from the `from`-th message of the month on (1-based), `micros` each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub from: u64,
    pub micros: Micros,
}

/// Tier rates in increasing `from` order; the first starts at 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule(pub Vec<Step>);

impl Schedule {
    pub fn flat(micros: Micros) -> Self {
        Self(vec![Step { from: 1, micros }])
    }

    /// `from:micros,from:micros,…` (what the store scripts read).
    pub fn encode(&self) -> String {
        self.0
            .iter()
            .map(|s| format!("{}:{}", s.from, s.micros))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn decode(raw: &str) -> Option<Self> {
        raw.split(',')
            .map(|step| {
                let (from, micros) = step.split_once(':')?;
                Some(Step {
                    from: from.parse().ok()?,
                    micros: micros.parse().ok()?,
                })
            })
            .collect::<Option<Vec<_>>>()
            .filter(|steps| !steps.is_empty())
            .map(Self)
    }
}

/// The rate of the `n`-th counted message of the month (1-based) and its tier (1-based).
pub fn price_at(schedule: &Schedule, n: u64) -> (Micros, u32) {
    let mut found = (schedule.0.first().map_or(0, |s| s.micros), 1);
    for (index, step) in schedule.0.iter().enumerate() {
        if n >= step.from {
            found = (step.micros, index as u32 + 1);
        }
    }
    found
}

/// What a rated message is charged by, once delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    /// The invoice line's category: a template category, or [`SERVICE_LINE`].
    pub line: &'static str,
    /// The advertiser's monthly count this message moves: `<line>:<country>` (tiers count per
    /// market) or `service:` (the allowance counts every market).
    pub counter: String,
    pub schedule: Schedule,
    /// The (country, category) has volume tiers: the answer names the tier.
    pub tiered: bool,
}

impl Charge {
    /// Rule sets price in the service currency: each rate of the schedule in the advertiser's
    /// currency, rounded down (see `domain::money`).
    pub fn in_currency(self, rate: Rate) -> Self {
        let steps = self
            .schedule
            .0
            .iter()
            .map(|step| Step {
                from: step.from,
                micros: rate.from_service(step.micros),
            })
            .collect();
        Self {
            schedule: Schedule(steps),
            ..self
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSet {
    /// `YYYY-MM-DD`, as configured; answers name the set by it.
    pub name: String,
    pub effective_from_ms: Millis,
    pub window: WindowRules,
    prices: PriceTable,
    tiers: HashMap<(String, Category), Schedule>,
    /// Service messages free per advertiser and month, then charged at this category's rate.
    service_allowance: Option<(u64, Category)>,
}

impl RuleSet {
    fn schedule(&self, country: &str, category: Category) -> (Schedule, bool) {
        match self.tiers.get(&(country.to_ascii_uppercase(), category)) {
            Some(tiers) => (tiers.clone(), true),
            None => (Schedule::flat(self.prices.price(country, category)), false),
        }
    }

    /// The charge of a rated message, `None` when it is free whatever the month's count.
    pub fn charge(&self, rating: &Rating, country: &str) -> Option<Charge> {
        if let Some(category) = rating.category_billed.filter(|_| rating.chargeable) {
            let (schedule, tiered) = self.schedule(country, category);
            return Some(Charge {
                line: category.as_str(),
                counter: format!("{}:{}", category.as_str(), country),
                schedule,
                tiered,
            });
        }
        let (free, category) = self.service_allowance.filter(|_| rating.service)?;
        let (rate, _) = price_at(&self.schedule(country, category).0, 1);
        Some(Charge {
            line: SERVICE_LINE,
            counter: format!("{SERVICE_LINE}:"),
            schedule: Schedule(vec![
                Step { from: 1, micros: 0 },
                Step {
                    from: free + 1,
                    micros: rate,
                },
            ]),
            tiered: false,
        })
    }
}

/// Every configured rule set, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleBook {
    sets: Vec<RuleSet>,
    /// Conversations keep lapsed windows for messages reported late (`Conversation::encode`'s
    /// form 3, which earlier builds read as a new conversation: off while they run).
    keep_lapsed_windows: bool,
}

impl RuleBook {
    /// `messaging.keep_lapsed_windows`.
    pub fn keeping_lapsed_windows(self, keep: bool) -> Self {
        Self {
            keep_lapsed_windows: keep,
            ..self
        }
    }

    pub fn keeps_lapsed_windows(&self) -> bool {
        self.keep_lapsed_windows
    }

    /// The set in force at `at_ms`.
    pub fn in_force(&self, at_ms: Millis) -> &RuleSet {
        self.sets
            .iter()
            .rev()
            .find(|s| s.effective_from_ms <= at_ms)
            .unwrap_or(&self.sets[0])
    }

    pub fn sets(&self) -> &[RuleSet] {
        &self.sets
    }

    /// Validates the configured sets; the error names the offending set.
    pub fn from_config(configs: &[RuleSetConfig]) -> Result<Self, String> {
        if configs.is_empty() {
            return Err("at least one rule set is required".into());
        }
        let mut sets: Vec<RuleSet> = Vec::with_capacity(configs.len());
        for (index, config) in configs.iter().enumerate() {
            let named = |message: String| {
                format!(
                    "rule set {index} (effective_from {:?}): {message}",
                    config.effective_from
                )
            };
            let set = config.validate().map_err(named)?;
            if let Some(other) = sets.iter().find(|s| s.name == set.name) {
                return Err(named(format!(
                    "overlaps the rule set with the same effective_from {}",
                    other.name
                )));
            }
            sets.push(set);
        }
        sets.sort_by_key(|s| s.effective_from_ms);
        Ok(Self {
            sets,
            keep_lapsed_windows: true,
        })
    }
}

/// One rule set as configured (`[[messaging.rule_sets]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSetConfig {
    /// `YYYY-MM-DD` (a quoted string): in force from 00:00 UTC that day.
    pub effective_from: String,
    /// Where the figures come from (free text for operators; never read by the service).
    #[serde(default)]
    pub source: String,
    pub utility_free_in_window: bool,
    pub default_micros: Micros,
    pub category_defaults: CategoryDefaults,
    #[serde(default)]
    pub prices: Vec<PriceConfig>,
    #[serde(default)]
    pub tiers: Vec<TiersConfig>,
    #[serde(default)]
    pub service_allowance: Option<AllowanceConfig>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CategoryDefaults {
    pub utility: Micros,
    pub marketing: Micros,
    pub authentication: Micros,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceConfig {
    pub country: String,
    pub category: String,
    pub micros: Micros,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TiersConfig {
    pub country: String,
    pub category: String,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowanceConfig {
    pub free_per_month: u64,
    /// Beyond the allowance, a service message costs this category's (first-tier) rate.
    pub category: String,
}

fn category(name: &str) -> Result<Category, String> {
    Category::parse(name).ok_or_else(|| {
        format!("unknown category {name:?} (expected utility, marketing or authentication)")
    })
}

fn country(code: &str) -> Result<String, String> {
    if code.len() == 2 && code.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(code.to_owned())
    } else {
        Err(format!(
            "country {code:?} is not an ISO 3166-1 alpha-2 code"
        ))
    }
}

fn micros(value: Micros) -> Result<Micros, String> {
    if value < 0 {
        Err(format!("price {value} is negative"))
    } else {
        Ok(value)
    }
}

impl RuleSetConfig {
    fn validate(&self) -> Result<RuleSet, String> {
        let format = time::macros::format_description!("[year]-[month]-[day]");
        let date = Date::parse(&self.effective_from, format)
            .map_err(|_| "effective_from must be a YYYY-MM-DD date".to_owned())?;
        let d = self.category_defaults;
        for value in [
            self.default_micros,
            d.utility,
            d.marketing,
            d.authentication,
        ] {
            micros(value)?;
        }
        let mut rows = Vec::with_capacity(self.prices.len());
        for row in &self.prices {
            rows.push(PriceRow {
                country: country(&row.country)?,
                category: category(&row.category)?,
                micros: micros(row.micros)?,
            });
        }
        let mut tiers = HashMap::new();
        for tier in &self.tiers {
            let key = (country(&tier.country)?, category(&tier.category)?);
            let what = format!("tiers of {} {}", tier.country, tier.category);
            if tier.steps.first().map(|s| s.from) != Some(1) {
                return Err(format!("{what}: the first tier must start at from = 1"));
            }
            if tier.steps.windows(2).any(|w| w[1].from <= w[0].from) {
                return Err(format!("{what}: tiers are not increasing"));
            }
            for step in &tier.steps {
                micros(step.micros)?;
            }
            if tiers.insert(key, Schedule(tier.steps.clone())).is_some() {
                return Err(format!("{what}: configured twice"));
            }
        }
        let service_allowance = match &self.service_allowance {
            None => None,
            Some(a) => Some((a.free_per_month, category(&a.category)?)),
        };
        Ok(RuleSet {
            name: self.effective_from.clone(),
            effective_from_ms: ms_from_datetime(date.midnight().assume_utc()),
            window: WindowRules {
                utility_free_in_window: self.utility_free_in_window,
            },
            prices: PriceTable::new(
                rows,
                vec![
                    (Category::Utility, d.utility),
                    (Category::Marketing, d.marketing),
                    (Category::Authentication, d.authentication),
                ],
                self.default_micros,
            ),
            tiers,
            service_allowance,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml: &str) -> Vec<RuleSetConfig> {
        #[derive(Deserialize)]
        struct Root {
            rule_sets: Vec<RuleSetConfig>,
        }
        toml::from_str::<Root>(toml).unwrap().rule_sets
    }

    const TWO_SETS: &str = r#"
        [[rule_sets]]
        effective_from = "2025-07-01"
        utility_free_in_window = true
        default_micros = 50000
        category_defaults = { utility = 8000, marketing = 40000, authentication = 25000 }
        tiers = [{ country = "IT", category = "utility", steps = [{ from = 1, micros = 8000 }, { from = 3, micros = 6000 }] }]

        [[rule_sets]]
        effective_from = "2026-10-01"
        utility_free_in_window = false
        default_micros = 50000
        category_defaults = { utility = 9000, marketing = 40000, authentication = 25000 }
        service_allowance = { free_per_month = 2, category = "utility" }
    "#;

    #[test]
    fn the_set_in_force_at_a_time() {
        let book = RuleBook::from_config(&config(TWO_SETS)).unwrap();
        let boundary = book.sets()[1].effective_from_ms;
        assert_eq!(book.in_force(boundary - 1).name, "2025-07-01");
        assert_eq!(book.in_force(boundary).name, "2026-10-01");
        assert_eq!(
            book.in_force(0).name,
            "2025-07-01",
            "before all: the earliest"
        );
        assert!(!book.in_force(boundary).window.utility_free_in_window);
    }

    #[test]
    fn tiers_price_the_nth_message() {
        let schedule = Schedule(vec![
            Step {
                from: 1,
                micros: 8000,
            },
            Step {
                from: 3,
                micros: 6000,
            },
            Step {
                from: 10,
                micros: 4000,
            },
        ]);
        assert_eq!(price_at(&schedule, 1), (8000, 1));
        assert_eq!(price_at(&schedule, 2), (8000, 1));
        assert_eq!(price_at(&schedule, 3), (6000, 2));
        assert_eq!(price_at(&schedule, 10), (4000, 3));
        assert_eq!(Schedule::decode(&schedule.encode()), Some(schedule));
        assert_eq!(Schedule::decode(""), None);
        assert_eq!(Schedule::decode("1:x"), None);
    }

    #[test]
    fn service_messages_beyond_the_allowance_cost_the_named_rate() {
        let book = RuleBook::from_config(&config(TWO_SETS)).unwrap();
        let rating = Rating {
            reason: super::super::Reason::ServiceWindow,
            chargeable: false,
            category_billed: None,
            service: true,
            business_initiated: false,
            campaign: None,
            conversation_after: Default::default(),
            window_expires_ms: None,
        };
        assert_eq!(book.sets()[0].charge(&rating, "IT"), None);
        let charge = book.sets()[1].charge(&rating, "IT").unwrap();
        assert_eq!(charge.line, SERVICE_LINE);
        assert_eq!(charge.counter, "service:");
        assert_eq!(price_at(&charge.schedule, 2), (0, 1));
        assert_eq!(price_at(&charge.schedule, 3), (9000, 2));
    }

    #[test]
    fn a_bad_rule_set_is_named() {
        let cases = [
            (TWO_SETS.replace("2026-10-01", "2025-07-01"), "overlaps"),
            (
                TWO_SETS.replace("from = 3", "from = 1"),
                "tiers are not increasing",
            ),
            (
                TWO_SETS.replace(
                    r#"category = "utility", steps"#,
                    r#"category = "service", steps"#,
                ),
                "unknown category \"service\"",
            ),
            (
                TWO_SETS.replace(r#"category = "utility" }"#, r#"category = "promo" }"#),
                "unknown category \"promo\"",
            ),
            (TWO_SETS.replace("2026-10-01", "October"), "YYYY-MM-DD"),
        ];
        for (text, wanted) in cases {
            let err = RuleBook::from_config(&config(&text)).unwrap_err();
            assert!(err.contains(wanted), "{err}");
            assert!(err.contains("effective_from"), "{err}");
        }
        assert!(RuleBook::from_config(&[]).is_err());
    }
}
