//! Campaign reports: per UTC day counters derived from the ledger, with totals.

use serde::{Deserialize, Serialize};
use time::{Date, Duration};

use crate::clock::day_key;
use crate::domain::ids::CampaignId;
use crate::domain::ValidationError;
use crate::store::{DayCounters, Store, StoreError};

/// Longest range one report may span.
pub const MAX_DAYS: i64 = 366;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    pub from: Option<String>,
    pub to: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReportRow {
    pub date: String,
    #[serde(flatten)]
    pub counters: DayCounters,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Report {
    pub rows: Vec<ReportRow>,
    pub totals: DayCounters,
}

/// Parses `from`/`to` (inclusive, YYYY-MM-DD); defaults to the last 30 days up to today.
pub fn parse_range(query: &ReportQuery, today: Date) -> Result<(Date, Date), ValidationError> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let parse = |raw: &Option<String>, default: Date| match raw {
        None => Ok(default),
        Some(text) => Date::parse(text, format).map_err(|_| {
            ValidationError::new("invalid_date", format!("{text:?} is not a YYYY-MM-DD date"))
        }),
    };
    let to = parse(&query.to, today)?;
    let from = parse(&query.from, to - Duration::days(29))?;
    if from > to {
        return Err(ValidationError::new(
            "invalid_date",
            "from must not be after to",
        ));
    }
    if (to - from).whole_days() >= MAX_DAYS {
        return Err(ValidationError::new(
            "invalid_date",
            format!("a report spans at most {MAX_DAYS} days"),
        ));
    }
    Ok((from, to))
}

pub async fn campaign_report(
    store: &Store,
    campaign: &CampaignId,
    from: Date,
    to: Date,
) -> Result<Report, StoreError> {
    let mut dates = Vec::new();
    let mut day = from;
    while day <= to {
        dates.push(day);
        day = day.next_day().expect("dates in range");
    }
    let keys: Vec<u32> = dates.iter().copied().map(day_key).collect();
    let counters = store.campaign_report(campaign, &keys).await?;
    let mut totals = DayCounters::default();
    let rows = dates
        .iter()
        .zip(counters)
        .map(|(date, counters)| {
            totals.add(&counters);
            ReportRow {
                date: date.to_string(),
                counters,
            }
        })
        .collect();
    Ok(Report { rows, totals })
}
