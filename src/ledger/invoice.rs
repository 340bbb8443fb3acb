//! Monthly invoices per advertiser: one line per billed campaign (renders billed and their
//! amount) and one per (message category, country) of charged business messages, summed from
//! the ledger records in the system of record, and those records themselves (CSV or NDJSON)
//! with the CSV's SHA-256 as the invoice digest: an advertiser recomputes both. House renders
//! are priced 0 and never make a line.

use serde::Serialize;
use time::{Date, Month};

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::clock::{datetime_from_ms, day_key, ms_from_datetime, Millis};
use crate::codes;
use crate::domain::advertiser::Advertiser;
use crate::domain::{Micros, ValidationError};
use crate::ledger::report::rfc3339;
use crate::record::ledger::BilledRecord;
use crate::record::Record;
use crate::store::StoreError;

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
    /// `sha256:<hex>` of `GET /v1/invoices/{month}/records` as CSV.
    pub digest: String,
    /// Every event acknowledged before this instant is billed here (RFC 3339).
    pub as_of: String,
}

/// The UTC days of a `YYYY-MM` month as `YYYYMMDD` keys.
pub fn month_days(month: &str) -> Result<Vec<u32>, ValidationError> {
    let invalid = || {
        ValidationError::new(
            codes::INVALID_DATE,
            format!("{month:?} is not a YYYY-MM month"),
        )
    };
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

/// `[start, end)` of a `YYYY-MM` month in ms.
pub fn month_range_ms(month: &str) -> Result<(Millis, Millis), ValidationError> {
    let days = month_days(month)?;
    let day = |key: u32| {
        let (y, m, d) = (key / 10_000, (key / 100) % 100, key % 100);
        Date::from_calendar_date(y as i32, Month::try_from(m as u8).expect("valid"), d as u8)
            .expect("a day of the month")
    };
    let first = day(days[0]);
    let after = day(*days.last().expect("a month has days"))
        .next_day()
        .expect("dates in range");
    let ms = |d: Date| ms_from_datetime(d.midnight().assume_utc());
    Ok((ms(first), ms(after)))
}

/// The advertiser's invoice for `month`, from the ledger records in the system of record.
pub async fn monthly(
    record: &Record,
    advertiser: &Advertiser,
    month: &str,
    as_of_ms: Millis,
) -> Result<Result<(Invoice, InvoiceRecords), ValidationError>, StoreError> {
    let (from_ms, to_ms) = match month_range_ms(month) {
        Ok(range) => range,
        Err(err) => return Ok(Err(err)),
    };
    let id = advertiser.id.as_str();
    // The lines are summed from the very records listed (one read): the invoice, its records
    // and its digest agree even while exports commit.
    let records = InvoiceRecords(record.billed_records(id, from_ms, to_ms).await?);
    let mut impressions: BTreeMap<&str, (u64, Micros)> = BTreeMap::new();
    let mut messages: BTreeMap<(&str, &str), (u64, Micros)> = BTreeMap::new();
    for billed in &records.0 {
        let line = if billed.kind == "impressions" {
            impressions.entry(&billed.campaign_id).or_default()
        } else {
            messages
                .entry((&billed.category, &billed.country))
                .or_default()
        };
        line.0 += 1;
        line.1 += billed.amount_micros;
    }
    let lines: Vec<InvoiceLine> = impressions
        .into_iter()
        .map(|(campaign, (quantity, amount_micros))| InvoiceLine {
            kind: "impressions",
            campaign_id: Some(campaign.to_owned()),
            category: None,
            country: None,
            quantity,
            amount_micros,
        })
        .chain(
            messages
                .into_iter()
                .map(
                    |((category, country), (quantity, amount_micros))| InvoiceLine {
                        kind: "messages",
                        campaign_id: None,
                        category: Some(category.to_owned()),
                        country: Some(country.to_owned()),
                        quantity,
                        amount_micros,
                    },
                ),
        )
        .collect();
    let total_micros = lines.iter().map(|l| l.amount_micros).sum();
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(records.to_csv())));
    Ok(Ok((
        Invoice {
            advertiser_id: advertiser.id.to_string(),
            month: month.to_owned(),
            currency: advertiser.currency.clone(),
            lines,
            total_micros,
            digest,
            as_of: rfc3339(as_of_ms),
        },
        records,
    )))
}

/// The records billed on one invoice, in id order (API.md, `/v1/invoices/{month}/records`).
pub struct InvoiceRecords(pub Vec<BilledRecord>);

#[derive(Serialize)]
struct RecordLine<'a> {
    id: &'a str,
    kind: &'a str,
    campaign_id: Option<&'a str>,
    creative_id: Option<&'a str>,
    category: Option<&'a str>,
    country: Option<&'a str>,
    at: String,
    amount_micros: Micros,
}

impl InvoiceRecords {
    fn lines(&self) -> impl Iterator<Item = RecordLine<'_>> {
        fn some(v: &str) -> Option<&str> {
            (!v.is_empty()).then_some(v)
        }
        self.0.iter().map(|r| RecordLine {
            id: &r.id,
            kind: r.kind,
            campaign_id: some(&r.campaign_id),
            creative_id: some(&r.creative_id),
            category: some(&r.category),
            country: some(&r.country),
            at: record_time(r.at_ms),
            amount_micros: r.amount_micros,
        })
    }

    /// The CSV whose SHA-256 is the invoice digest: a header row, `\n` line ends, empty
    /// fields where not applicable.
    pub fn to_csv(&self) -> String {
        let mut out =
            String::from("id,kind,campaign_id,creative_id,category,country,at,amount_micros\n");
        for line in self.lines() {
            let field = |v: Option<&str>| v.map(csv_field).unwrap_or_default();
            out.push_str(&format!(
                "{},{},{},{},{},{},{},{}\n",
                csv_field(line.id),
                line.kind,
                field(line.campaign_id),
                field(line.creative_id),
                field(line.category),
                field(line.country),
                line.at,
                line.amount_micros
            ));
        }
        out
    }

    /// One JSON object per line (null where not applicable).
    pub fn to_ndjson(&self) -> String {
        let mut out = String::new();
        for line in self.lines() {
            out.push_str(&serde_json::to_string(&line).expect("plain values serialize"));
            out.push('\n');
        }
        out
    }
}

/// A record's time, always with milliseconds, so the CSV bytes have one form.
fn record_time(ms: Millis) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    datetime_from_ms(ms).format(format).unwrap_or_default()
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
        let (start, end) = month_range_ms("2026-12").unwrap();
        assert_eq!(rfc3339(start), "2026-12-01T00:00:00Z");
        assert_eq!(rfc3339(end), "2027-01-01T00:00:00Z");
        for bad in ["2026-13", "2026-1", "26-11", "2026/11", "abcd-ef", ""] {
            assert!(month_days(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn records_have_one_byte_form() {
        let records = InvoiceRecords(vec![BilledRecord {
            id: "msg:adv_1:m,1".into(),
            kind: "messages",
            campaign_id: String::new(),
            creative_id: String::new(),
            category: "marketing".into(),
            country: "IT".into(),
            at_ms: 1_795_000_000_000,
            amount_micros: 52_000,
        }]);
        assert_eq!(
            records.to_csv(),
            "id,kind,campaign_id,creative_id,category,country,at,amount_micros\n\
             \"msg:adv_1:m,1\",messages,,,marketing,IT,2026-11-18T11:06:40.000Z,52000\n"
        );
        assert_eq!(
            records.to_ndjson(),
            "{\"id\":\"msg:adv_1:m,1\",\"kind\":\"messages\",\"campaign_id\":null,\
             \"creative_id\":null,\"category\":\"marketing\",\"country\":\"IT\",\
             \"at\":\"2026-11-18T11:06:40.000Z\",\"amount_micros\":52000}\n"
        );
    }

    #[test]
    fn csv_quotes_only_when_needed() {
        assert_eq!(csv_field("cmp_1"), "cmp_1");
        assert_eq!(csv_field("a,\"b\""), "\"a,\"\"b\"\"\"");
    }
}
