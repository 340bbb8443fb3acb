//! Advertisers: who pays. The API key is never stored, only its SHA-256.

use crate::codes;
use crate::domain::money::Money;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::ids::AdvertiserId;
use super::text::check_one_line;
use super::ValidationError;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Advertiser {
    pub id: AdvertiserId,
    pub name: String,
    pub chat_number: Option<String>,
    pub currency: String,
    /// Hex SHA-256 of the current API key.
    pub api_key_hash: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Business-initiated limit: distinct users reached by templates outside a
    /// customer-service window in any rolling 24 h; `None` is unlimited.
    #[serde(default)]
    pub messaging_limit: Option<u32>,
}

/// The tiers the messaging platform grants a business (API.md).
pub const MESSAGING_LIMITS: [u32; 4] = [250, 1_000, 10_000, 100_000];

/// `PATCH /v1/advertisers/{id}` (operator).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdvertiserPatch {
    /// 250, 1000, 10000, 100000, or null for unlimited; absent leaves it unchanged.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<u32>)]
    pub messaging_limit: Option<Option<u32>>,
}

fn nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

impl AdvertiserPatch {
    pub fn apply(&self, advertiser: &mut Advertiser) -> Result<(), ValidationError> {
        if let Some(limit) = self.messaging_limit {
            if limit.is_some_and(|l| !MESSAGING_LIMITS.contains(&l)) {
                return Err(ValidationError::new(
                    codes::INVALID_MESSAGING_LIMIT,
                    "messaging_limit must be 250, 1000, 10000, 100000 or null (unlimited)",
                ));
            }
            advertiser.messaging_limit = limit;
        }
        Ok(())
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAdvertiser {
    pub name: String,
    #[serde(default)]
    pub chat_number: Option<String>,
    pub currency: String,
}

impl NewAdvertiser {
    /// Validates and builds the advertiser; returns it with the plaintext key (shown once).
    /// Its currency must be one `money` prices (see `domain::money`).
    pub fn into_advertiser(
        self,
        now: OffsetDateTime,
        money: &Money,
    ) -> Result<(Advertiser, String), ValidationError> {
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(ValidationError::new(
                codes::INVALID_NAME,
                "name must be 1-100 characters",
            ));
        }
        check_one_line("name", name, codes::INVALID_NAME)?;
        if let Some(number) = &self.chat_number {
            validate_chat_number(number)?;
        }
        if iso_currency::Currency::from_code(&self.currency).is_none() {
            return Err(ValidationError::new(
                codes::INVALID_CURRENCY,
                "currency must be an ISO 4217 code such as EUR",
            ));
        }
        if money.rate(&self.currency).is_none() {
            return Err(ValidationError::new(
                codes::UNSUPPORTED_CURRENCY,
                format!(
                    "this service prices in {}; the currencies it bills in are {} (another needs an exchange rate in money.rates)",
                    money.currency(),
                    money.currencies().join(", ")
                ),
            ));
        }
        let key = new_api_key();
        Ok((
            Advertiser {
                id: AdvertiserId::generate(),
                name: name.to_owned(),
                chat_number: self.chat_number,
                currency: self.currency,
                api_key_hash: hash_api_key(&key),
                created_at: now,
                messaging_limit: None,
            },
            key,
        ))
    }
}

/// E.164: '+' then 8 to 15 digits, no leading zero.
fn validate_chat_number(number: &str) -> Result<(), ValidationError> {
    let digits = number.strip_prefix('+').unwrap_or("");
    let ok = (8..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    if ok {
        Ok(())
    } else {
        Err(ValidationError::new(
            codes::INVALID_CHAT_NUMBER,
            "chat_number must be E.164, e.g. +390612345678",
        ))
    }
}

/// 32 random alphanumerics behind a recognisable prefix (so leaked keys can be found by scanners).
pub fn new_api_key() -> String {
    use rand::distributions::{Alphanumeric, DistString};
    format!(
        "sa_adv_{}",
        Alphanumeric.sample_string(&mut rand::thread_rng(), 32)
    )
}

pub fn hash_api_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The operator's view: everything but the key hash.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AdvertiserView<'a> {
    pub id: &'a AdvertiserId,
    pub name: &'a str,
    pub chat_number: Option<&'a str>,
    pub currency: &'a str,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Business-initiated limit (distinct users per rolling 24 h); null is unlimited.
    pub messaging_limit: Option<u32>,
}

impl<'a> From<&'a Advertiser> for AdvertiserView<'a> {
    fn from(a: &'a Advertiser) -> Self {
        Self {
            id: &a.id,
            name: &a.name,
            chat_number: a.chat_number.as_deref(),
            currency: &a.currency,
            created_at: a.created_at,
            messaging_limit: a.messaging_limit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(name: &str, number: Option<&str>, currency: &str) -> NewAdvertiser {
        NewAdvertiser {
            name: name.into(),
            chat_number: number.map(Into::into),
            currency: currency.into(),
        }
    }

    #[test]
    fn validates_and_hashes_the_key() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let money = Money::new(
            "EUR",
            &[("USD".to_owned(), 0.92), ("JPY".to_owned(), 0.0061)].into(),
        )
        .unwrap();
        let (adv, key) = new("Pizzeria Roma", Some("+390612345678"), "EUR")
            .into_advertiser(now, &money)
            .unwrap();
        assert!(key.starts_with("sa_adv_"));
        for currency in ["USD", "JPY"] {
            assert!(
                new("x", None, currency)
                    .into_advertiser(now, &money)
                    .is_ok(),
                "{currency}"
            );
        }
        assert_eq!(adv.api_key_hash, hash_api_key(&key));
        assert!(!adv.api_key_hash.contains(&key));
        for (bad, code) in [
            (new("", None, "EUR"), "invalid_name"),
            (new("x", Some("0612345678"), "EUR"), "invalid_chat_number"),
            (new("x", Some("+0612345678"), "EUR"), "invalid_chat_number"),
            (new("x", None, "eur"), "invalid_currency"),
            (new("x", None, "ABC"), "invalid_currency"),
            (new("x", None, "EURO"), "invalid_currency"),
            (new("x", None, "CHF"), "unsupported_currency"),
            (new("Pizza\u{202e}", None, "EUR"), "invalid_name"),
        ] {
            assert_eq!(bad.into_advertiser(now, &money).unwrap_err().code, code);
        }
    }
}
