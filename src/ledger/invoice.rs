//! Monthly invoices per advertiser: one line per billed campaign (renders billed and their
//! amount) and one per (message category, country) of charged business messages. Amounts come from the counters the
//! ledger script moves with every record, so the invoice equals the ledger to the micro
//! (`statusads reconcile` proves it). House renders are priced 0 and never make a line.

use serde::Serialize;
use time::{Date, Month};

use crate::catalog::Snapshot;
use crate::clock::day_key;
use crate::domain::advertiser::Advertiser;
use crate::domain::{Micros, ValidationError};
use crate::store::{Store, StoreError};

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InvoiceLine {
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub campaign_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    pub quantity: u64,
    pub amount_micros: Micros,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Invoice {
    pub advertiser_id: String,
    pub month: String,
    pub currency: String,
    pub lines: Vec<InvoiceLine>,
    pub total_micros: Micros,
}

/// The UTC days of a `YYYY-MM` month as `YYYYMMDD` keys.
pub fn month_days(month: &str) -> Result<Vec<u32>, ValidationError> {
    let invalid =
        || ValidationError::new("invalid_date", format!("{month:?} is not a YYYY-MM month"));
    let (year, number) = month.split_once('-').ok_or_else(invalid)?;
    if year.len() != 4 || number.len() != 2 {
        return Err(invalid());
    }
    let year: i32 = year.parse().map_err(|_| invalid())?;
    let number: u8 = number.parse().map_err(|_| invalid())?;
    let month_of_year = Month::try_from(number).map_err(|_| invalid())?;
    let mut day = Date::from_calendar_date(year, month_of_year, 1).map_err(|_| invalid())?;
    let mut days = Vec::with_capacity(31);
    while day.month() == month_of_year {
        days.push(day_key(day));
        match day.next_day() {
            Some(next) => day = next,
            None => break,
        }
    }
    Ok(days)
}

pub async fn monthly(
    store: &Store,
    snapshot: &Snapshot,
    advertiser: &Advertiser,
    month: &str,
) -> Result<Result<Invoice, ValidationError>, StoreError> {
    let days = match month_days(month) {
        Ok(days) => days,
        Err(err) => return Ok(Err(err)),
    };
    // Every campaign, house included: a campaign switched to house after billed renders still
    // owes them (house renders themselves are priced 0 and make no line).
    let mut campaigns: Vec<_> = snapshot.campaigns_of(&advertiser.id).collect();
    campaigns.sort_by(|a, b| a.id.cmp(&b.id));
    let mut lines = Vec::new();
    for campaign in campaigns {
        let rows = store.campaign_report(&campaign.id, &days).await?;
        let (quantity, amount) = rows.iter().fold((0, 0), |(q, a), row| {
            (q + row.billed_renders, a + row.spend_micros)
        });
        if quantity > 0 || amount != 0 {
            lines.push(InvoiceLine {
                kind: "impressions",
                campaign_id: Some(campaign.id.to_string()),
                category: None,
                country: None,
                quantity,
                amount_micros: amount,
            });
        }
    }
    let month_key = days[0] / 100;
    for billed in store
        .message_billing(month_key, advertiser.id.as_str())
        .await?
    {
        lines.push(InvoiceLine {
            kind: "messages",
            campaign_id: None,
            category: Some(billed.category),
            country: Some(billed.country),
            quantity: billed.quantity,
            amount_micros: billed.amount_micros,
        });
    }
    let total_micros = lines.iter().map(|l| l.amount_micros).sum();
    Ok(Ok(Invoice {
        advertiser_id: advertiser.id.to_string(),
        month: month.to_owned(),
        currency: advertiser.currency.clone(),
        lines,
        total_micros,
    }))
}

impl Invoice {
    /// The same lines as CSV (RFC 4180), one header row.
    pub fn to_csv(&self) -> String {
        let mut out = String::from("kind,campaign_id,category,country,quantity,amount_micros\r\n");
        for line in &self.lines {
            let field = |v: &Option<String>| v.as_deref().map(csv_field).unwrap_or_default();
            out.push_str(&format!(
                "{},{},{},{},{},{}\r\n",
                line.kind,
                field(&line.campaign_id),
                field(&line.category),
                field(&line.country),
                line.quantity,
                line.amount_micros
            ));
        }
        out
    }
}

/// Quotes a field when it needs it; ids and codes never do, but the format stays correct.
fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_have_their_days() {
        assert_eq!(month_days("2026-11").unwrap().len(), 30);
        assert_eq!(month_days("2028-02").unwrap().len(), 29);
        assert_eq!(month_days("2026-12").unwrap().last(), Some(&20261231));
        for bad in ["2026-13", "2026-1", "26-11", "2026/11", "abcd-ef", ""] {
            assert!(month_days(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn csv_quotes_only_when_needed() {
        assert_eq!(csv_field("cmp_1"), "cmp_1");
        assert_eq!(csv_field("a,\"b\""), "\"a,\"\"b\"\"\"");
    }
}
