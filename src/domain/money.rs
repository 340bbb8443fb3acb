//! Money across currencies. An advertiser is billed in its own currency (`currency`): its
//! budgets, bids, render prices, message charges and invoices are micros of it. The service
//! prices in one currency (`money.currency`): the auction's reserve and the messaging rate card
//! are micros of that one, and bids of different currencies meet in the auction only there.
//! Another currency enters through the operator's exchange rate for it (`money.rates`): bids
//! are converted to the service currency to be ranked, and what a winner pays, or what a rate
//! card charges, is converted back to the advertiser's currency, each time rounded down; a
//! campaign never pays above its own bid (but a render always at least one micro: see
//! `selection::pick`). Delivery insight's prices round up instead: they tell the advertiser
//! what to bid.
//!
//! A currency without a rate cannot be priced: an advertiser cannot be created in it, and one
//! left without (its rate removed from the configuration) serves only its house campaigns
//! (never billed) and has no charged message rated until the rate is back.
//!
//! Exchange rates are configuration, read at start: every node must run with the same ones,
//! or the same decision is priced differently on each. Nodes compare [`Money::fingerprint`]s
//! through Redis and warn while one differs.

use std::collections::BTreeMap;

use super::Micros;

/// How many units of the service currency one unit of another currency is worth, in
/// billionths (10^-9), so that a currency worth a fraction of a cent still converts to the micro.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate(i64);

const NANOS: i128 = 1_000_000_000;

impl Rate {
    /// The service currency itself: conversions are the identity.
    pub const PAR: Rate = Rate(NANOS as i64);

    /// A configured rate (units of the service currency per unit), to the billionth: between
    /// 1e-9 and 1e9, and kept in billionths to within 0.1 % (a rate of 5e-10 would otherwise
    /// be kept as 1e-9, twice what was configured).
    pub fn from_decimal(value: f64) -> Option<Rate> {
        let nanos = (value * NANOS as f64).round();
        let kept = (value.is_finite() && (1.0..=NANOS as f64 * 1e9).contains(&nanos))
            .then_some(Rate(nanos as i64))?;
        ((nanos / NANOS as f64 - value).abs() <= value * 1e-3).then_some(kept)
    }

    /// `micros` of this currency in the service currency, rounded down.
    pub fn to_service(self, micros: Micros) -> Micros {
        saturate(i128::from(micros) * i128::from(self.0) / NANOS)
    }

    /// `micros` of the service currency in this currency, rounded down.
    pub fn from_service(self, micros: Micros) -> Micros {
        saturate(i128::from(micros) * NANOS / i128::from(self.0))
    }

    /// The fewest micros of this currency worth at least `micros` of the service currency: a
    /// bid that matches a price the auction paid (what delivery insight reports).
    pub fn from_service_up(self, micros: Micros) -> Micros {
        let rate = i128::from(self.0);
        saturate((i128::from(micros) * NANOS + rate - 1).div_euclid(rate))
    }
}

fn saturate(value: i128) -> Micros {
    Micros::try_from(value).unwrap_or(if value < 0 { Micros::MIN } else { Micros::MAX })
}

/// A configuration of [`Money`] that cannot be used: `key` names the entry (`money.currency`, or
/// `money.rates.<code>` as the configuration spells it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoneyError {
    pub key: String,
    pub message: String,
}

/// The service currency and the rate of every other currency it prices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Money {
    currency: String,
    /// By code, in order (what `currencies` and `fingerprint` list).
    rates: BTreeMap<String, Rate>,
}

impl Default for Money {
    /// The built-in configuration: EUR, no other currency.
    fn default() -> Self {
        Self::single("EUR")
    }
}

impl Money {
    /// One currency and no other.
    pub fn single(currency: &str) -> Self {
        Self {
            currency: currency.to_owned(),
            rates: BTreeMap::new(),
        }
    }

    /// From configuration: `currency` and, per other ISO 4217 code (any case), its rate.
    /// The error names the entry that is wrong.
    pub fn new(currency: &str, rates: &BTreeMap<String, f64>) -> Result<Self, MoneyError> {
        let iso = |code: &str| iso_currency::Currency::from_code(code).is_some();
        if !iso(currency) {
            return Err(MoneyError {
                key: "money.currency".into(),
                message: format!("{currency:?} is not an ISO 4217 code such as EUR"),
            });
        }
        let mut out = Self::single(currency);
        for (given, value) in rates {
            let wrong = |message: String| MoneyError {
                key: format!("money.rates.{given}"),
                message,
            };
            let code = given.to_ascii_uppercase();
            if !iso(&code) {
                return Err(wrong(format!("{code:?} is not an ISO 4217 code")));
            }
            if let Some(other) = rates
                .keys()
                .find(|other| *other != given && other.eq_ignore_ascii_case(given))
            {
                return Err(wrong(format!(
                    "{code} is given twice (also as money.rates.{other})"
                )));
            }
            if code == currency {
                return Err(wrong(format!(
                    "{code} is the service currency (its rate is 1)"
                )));
            }
            let rate = Rate::from_decimal(*value).ok_or_else(|| {
                wrong(format!(
                    "{value} is not a rate between 1e-9 and 1e9 that billionths keep to 0.1 % (units of {currency} one {code} is worth)"
                ))
            })?;
            out.rates.insert(code, rate);
        }
        Ok(out)
    }

    /// The currency the reserve and the rate card are in.
    pub fn currency(&self) -> &str {
        &self.currency
    }

    /// The rate of `currency`, if the service prices it.
    pub fn rate(&self, currency: &str) -> Option<Rate> {
        if currency == self.currency {
            Some(Rate::PAR)
        } else {
            self.rates.get(currency).copied()
        }
    }

    /// The same text on every node configured alike, and a different one otherwise: what nodes
    /// compare to find one pricing differently (`store::Store::compare_settings`).
    pub fn fingerprint(&self) -> String {
        let mut out = self.currency.clone();
        for (code, rate) in &self.rates {
            out.push_str(&format!(" {code}={}", rate.0));
        }
        out
    }

    /// Every currency the service prices, the service currency first, then alphabetically.
    pub fn currencies(&self) -> Vec<&str> {
        std::iter::once(self.currency.as_str())
            .chain(self.rates.keys().map(String::as_str))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_round_down_both_ways_and_par_is_the_identity() {
        let usd = Rate::from_decimal(0.92).unwrap();
        assert_eq!(usd.to_service(1_000_000), 920_000);
        assert_eq!(usd.from_service(920_000), 1_000_000);
        // 1 EUR micro is 1.0869… USD micros: rounded down.
        assert_eq!(usd.from_service(1), 1);
        assert_eq!(usd.to_service(1), 0);
        let jpy = Rate::from_decimal(0.0061).unwrap();
        assert_eq!(jpy.to_service(1_000_000_000), 6_100_000);
        assert_eq!(jpy.from_service(500_000), 81_967_213);
        for micros in [0, 1, 999, 1_000_000, 123_456_789_000] {
            assert_eq!(Rate::PAR.to_service(micros), micros);
            assert_eq!(Rate::PAR.from_service(micros), micros);
        }
        // A tiny rate cannot overflow back into the currency.
        assert_eq!(Rate(1).from_service(Micros::MAX), Micros::MAX);
    }

    #[test]
    fn a_price_converted_up_is_the_least_bid_worth_it() {
        let rates = [0.92, 0.0061, 1.17, 1.0, 150.25, 1e-9, 1e9];
        for rate in rates.map(|r| Rate::from_decimal(r).unwrap()) {
            for price in [0, 1, 999, 1_000_000, 2_100_000, 123_456_789] {
                let bid = rate.from_service_up(price);
                assert!(rate.to_service(bid) >= price, "{rate:?} {price}");
                assert!(
                    bid == 0 || rate.to_service(bid - 1) < price,
                    "{rate:?} {price}: {bid} is not the least"
                );
                assert!(bid >= rate.from_service(price));
            }
        }
        // 1 EUR micro is 1.0869… USD micros: 2 are needed to be worth it.
        assert_eq!(Rate::from_decimal(0.92).unwrap().from_service_up(1), 2);
        assert_eq!(Rate::PAR.from_service_up(2_100_000), 2_100_000);
    }

    #[test]
    fn configuration_is_checked_entry_by_entry() {
        let rates = |pairs: &[(&str, f64)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect::<BTreeMap<_, _>>()
        };
        let money = Money::new("EUR", &rates(&[("usd", 0.92), ("JPY", 0.0061)])).unwrap();
        assert_eq!(money.currencies(), ["EUR", "JPY", "USD"]);
        assert_eq!(money.fingerprint(), "EUR JPY=6100000 USD=920000000");
        assert_ne!(
            Money::new("EUR", &rates(&[("usd", 0.92)]))
                .unwrap()
                .fingerprint(),
            money.fingerprint()
        );
        assert_eq!(money.rate("EUR"), Some(Rate::PAR));
        assert_eq!(money.rate("USD"), Rate::from_decimal(0.92));
        assert_eq!(money.rate("GBP"), None);
        assert_eq!(Rate::from_decimal(1e-9), Some(Rate(1)));
        assert_eq!(Rate::from_decimal(0.0061), Some(Rate(6_100_000)));
        assert_eq!(Rate::from_decimal(1.0000000004), Some(Rate::PAR));
        assert_eq!(
            Rate::from_decimal(1e9),
            Some(Rate(NANOS as i64 * 1_000_000_000))
        );
        for (currency, pairs, key, part) in [
            ("EURO", &[][..], "money.currency", "not an ISO 4217"),
            ("EUR", &[("xyz", 1.0)][..], "money.rates.xyz", "\"XYZ\""),
            (
                "EUR",
                &[("eur", 1.0)][..],
                "money.rates.eur",
                "service currency",
            ),
            ("EUR", &[("USD", 0.0)][..], "money.rates.USD", "0 is not"),
            ("EUR", &[("USD", -1.0)][..], "money.rates.USD", "-1 is not"),
            (
                "EUR",
                &[("USD", f64::NAN)][..],
                "money.rates.USD",
                "NaN is not",
            ),
            ("EUR", &[("USD", 1e-10)][..], "money.rates.USD", "is not"),
            ("EUR", &[("USD", 5e-10)][..], "money.rates.USD", "is not"),
            ("EUR", &[("USD", 1.4e-9)][..], "money.rates.USD", "is not"),
            (
                "EUR",
                &[("JPY", 0.0061), ("jpy", 0.0062)][..],
                "money.rates.JPY",
                "given twice (also as money.rates.jpy)",
            ),
            ("EUR", &[("USD", 2e9)][..], "money.rates.USD", "is not"),
        ] {
            let err = Money::new(currency, &rates(pairs)).unwrap_err();
            assert_eq!(err.key, key, "{err:?}");
            assert!(err.message.contains(part), "{err:?}");
        }
    }
}
