//! Campaign reports, read from the system of record: the counters the exporter moves with each
//! ledger record, per UTC day (the version-1 rows), hour, or coarse context (country, OS, age
//! band, creative), with reach (distinct users rendered, from the records' keyed user hashes)
//! and frequency in the totals.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::{Date, Duration};

use crate::clock::{datetime_from_ms, ms_from_datetime, Millis};
use crate::codes;
use crate::domain::ids::CampaignId;
use crate::domain::Micros;
use crate::domain::ValidationError;
use crate::record::ledger::{CounterRow, Grouping};
use crate::record::Record;
use crate::store::StoreError;

/// Longest range one report may span.
pub const MAX_DAYS: i64 = 366;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    pub from: Option<String>,
    pub to: Option<String>,
    #[serde(default)]
    pub by: Breakdown,
}

/// What one report row stands for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Breakdown {
    #[default]
    Day,
    Hour,
    Country,
    Os,
    AgeBand,
    Creative,
}

/// Longest range of an hourly report: 744 rows.
pub const MAX_HOURLY_DAYS: i64 = 31;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReportRow {
    /// `by=day`: the UTC day.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    /// `by=hour`: the start of the UTC hour (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hour: Option<String>,
    /// The country, OS, age band or creative id (`unknown` where the request did not say).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(flatten)]
    pub counters: DayCounters,
    /// `by=day`: distinct users with an accepted render that day.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reach: Option<u64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Totals {
    #[serde(flatten)]
    pub counters: DayCounters,
    /// Distinct users with at least one accepted render in the range.
    pub reach: u64,
    /// Renders per user reached, two decimals (0 when none).
    pub frequency: f64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Report {
    pub rows: Vec<ReportRow>,
    pub totals: Totals,
    /// Every event acknowledged before this instant is counted (RFC 3339).
    pub as_of: String,
}

/// Parses `from`/`to` (inclusive, YYYY-MM-DD); defaults to the last 30 days up to today.
pub fn parse_range(query: &ReportQuery, today: Date) -> Result<(Date, Date), ValidationError> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let parse = |raw: &Option<String>, default: Date| match raw {
        None => Ok(default),
        Some(text) => Date::parse(text, format).map_err(|_| {
            ValidationError::new(
                codes::INVALID_DATE,
                format!("{text:?} is not a YYYY-MM-DD date"),
            )
        }),
    };
    let to = parse(&query.to, today)?;
    let from = parse(&query.from, to - Duration::days(29))?;
    if from > to {
        return Err(ValidationError::new(
            codes::INVALID_DATE,
            "from must not be after to",
        ));
    }
    if (to - from).whole_days() >= MAX_DAYS {
        return Err(ValidationError::new(
            codes::INVALID_DATE,
            format!("a report spans at most {MAX_DAYS} days"),
        ));
    }
    if query.by == Breakdown::Hour && (to - from).whole_days() >= MAX_HOURLY_DAYS {
        return Err(ValidationError::new(
            codes::INVALID_DATE,
            format!("an hourly report spans at most {MAX_HOURLY_DAYS} days"),
        ));
    }
    Ok((from, to))
}

/// RFC 3339 at second precision, or with milliseconds when it has them.
pub fn rfc3339(ms: Millis) -> String {
    datetime_from_ms(ms)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn start_ms(day: Date) -> Millis {
    ms_from_datetime(day.midnight().assume_utc())
}

/// The report of `campaign` for the UTC days `from..=to`, as the record holds it at `as_of_ms`.
pub async fn campaign_report(
    record: &Record,
    campaign: &CampaignId,
    from: Date,
    to: Date,
    by: Breakdown,
    as_of_ms: Millis,
) -> Result<Report, StoreError> {
    const DAY_MS: Millis = 86_400_000;
    const HOUR_MS: Millis = 3_600_000;
    let (from_ms, to_ms) = (start_ms(from), start_ms(to) + DAY_MS);
    let grouping = match by {
        Breakdown::Day | Breakdown::Hour => Grouping::Hour,
        Breakdown::Country => Grouping::Country,
        Breakdown::Os => Grouping::Os,
        Breakdown::AgeBand => Grouping::AgeBand,
        Breakdown::Creative => Grouping::Creative,
    };
    let groups = record
        .report_counters(campaign.as_str(), from_ms, to_ms, grouping)
        .await?;
    let (reach, reach_by_day) = record.reach(campaign.as_str(), from_ms, to_ms).await?;
    let mut totals = DayCounters::default();
    for group in &groups {
        totals.add(&group.counters);
    }
    let rows = match by {
        Breakdown::Day | Breakdown::Hour => {
            // Every day (hour) of the range has its row, zero or not, as in version 1.
            let step = if by == Breakdown::Day {
                DAY_MS
            } else {
                HOUR_MS
            };
            let mut cells: BTreeMap<Millis, DayCounters> = BTreeMap::new();
            for group in &groups {
                let at = group.hour_ms - group.hour_ms.rem_euclid(step);
                cells.entry(at).or_default().add(&group.counters);
            }
            (0..(to_ms - from_ms) / step)
                .map(|i| {
                    let at = from_ms + i * step;
                    let counters = cells.remove(&at).unwrap_or_default();
                    if by == Breakdown::Day {
                        ReportRow {
                            date: Some(datetime_from_ms(at).date().to_string()),
                            hour: None,
                            key: None,
                            counters,
                            reach: Some(reach_by_day.get(&(at / DAY_MS)).copied().unwrap_or(0)),
                        }
                    } else {
                        ReportRow {
                            date: None,
                            hour: Some(rfc3339(at)),
                            key: None,
                            counters,
                            reach: None,
                        }
                    }
                })
                .collect()
        }
        _ => {
            let mut keyed: Vec<CounterRow> = groups;
            keyed.sort_by(|a, b| a.key.cmp(&b.key));
            keyed
                .into_iter()
                .map(|group| ReportRow {
                    date: None,
                    hour: None,
                    key: Some(if group.key.is_empty() {
                        "unknown".to_owned()
                    } else {
                        group.key
                    }),
                    counters: group.counters,
                    reach: None,
                })
                .collect()
        }
    };
    Ok(Report {
        rows,
        totals: Totals {
            frequency: frequency(totals.rendered, reach),
            counters: totals,
            reach,
        },
        as_of: rfc3339(as_of_ms),
    })
}

/// Renders per user reached, rounded to two decimals; 0 when nobody was reached.
pub fn frequency(rendered: u64, reach: u64) -> f64 {
    if reach == 0 {
        return 0.0;
    }
    (rendered as f64 * 100.0 / reach as f64).round() / 100.0
}

/// Counters of one campaign on one UTC day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct DayCounters {
    pub served: u64,
    pub rendered: u64,
    pub viewed: u64,
    pub clicks: u64,
    pub hides: u64,
    pub reports: u64,
    pub conversations: u64,
    pub messages: u64,
    pub spend_micros: Micros,
    /// Charged business messages whose conversation came from this campaign's clicks.
    pub message_charges_micros: Micros,
    /// `spend_micros / conversations` (integer micros, rounded down), 0 when none.
    pub cost_per_conversation_micros: Micros,
    /// Renders that were billed (price > 0): the invoice quantity.
    #[serde(skip)]
    pub billed_renders: u64,
}

impl DayCounters {
    pub fn set(&mut self, field_index: usize, value: i64) {
        let v = value.max(0) as u64;
        match field_index {
            0 => self.served += v,
            1 => self.rendered += v,
            2 => self.viewed += v,
            3 => self.clicks += v,
            4 => self.hides += v,
            5 => self.reports += v,
            6 => self.conversations += v,
            7 => self.messages += v,
            8 => self.spend_micros += value,
            9 => self.billed_renders += v,
            _ => self.message_charges_micros += value,
        }
        self.cost_per_conversation_micros = self
            .spend_micros
            .checked_div(self.conversations as i64)
            .unwrap_or(0);
    }

    pub fn add(&mut self, other: &DayCounters) {
        self.served += other.served;
        self.rendered += other.rendered;
        self.viewed += other.viewed;
        self.clicks += other.clicks;
        self.hides += other.hides;
        self.reports += other.reports;
        self.conversations += other.conversations;
        self.messages += other.messages;
        self.spend_micros += other.spend_micros;
        self.billed_renders += other.billed_renders;
        self.message_charges_micros += other.message_charges_micros;
        self.cost_per_conversation_micros = self
            .spend_micros
            .checked_div(self.conversations as i64)
            .unwrap_or(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frequency_has_two_decimals_and_no_division_by_zero() {
        assert_eq!(frequency(0, 0), 0.0);
        assert_eq!(frequency(5, 0), 0.0);
        assert_eq!(frequency(10, 3), 3.33);
        assert_eq!(frequency(2, 3), 0.67);
        assert_eq!(frequency(4, 2), 2.0);
    }

    #[test]
    fn hourly_reports_are_bounded() {
        let today = time::macros::date!(2026 - 11 - 30);
        let query = |from: &str, by| ReportQuery {
            from: Some(from.into()),
            to: Some("2026-11-30".into()),
            by,
        };
        assert!(parse_range(&query("2026-10-31", Breakdown::Hour), today).is_ok());
        assert!(parse_range(&query("2026-10-30", Breakdown::Hour), today).is_err());
        assert!(parse_range(&query("2026-01-01", Breakdown::Day), today).is_ok());
    }
}
