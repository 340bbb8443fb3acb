//! Price of one rated outbound template, per (country, category), from configuration.
//!
//! Lookup order: exact (country, category) row → that category's default → global default, so a
//! price always exists. Countries compare ASCII-case-insensitively (`"br"` = `"BR"`). Amounts
//! are taken as configured; validating them (e.g. non-negative) is the config loader's job.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::{Category, Micros};

/// One configured price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceRow {
    pub country: String,
    pub category: Category,
    pub micros: Micros,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceTable {
    rows: HashMap<(String, Category), Micros>,
    category_defaults: HashMap<Category, Micros>,
    global_default: Micros,
}

impl PriceTable {
    /// Later duplicates of a (country, category) row or of a category default win, as in a
    /// config file where the last entry overrides.
    pub fn new(
        rows: Vec<PriceRow>,
        category_defaults: Vec<(Category, Micros)>,
        global_default: Micros,
    ) -> Self {
        Self {
            rows: rows
                .into_iter()
                .map(|r| ((r.country.to_ascii_uppercase(), r.category), r.micros))
                .collect(),
            category_defaults: category_defaults.into_iter().collect(),
            global_default,
        }
    }

    pub fn price(&self, country: &str, category: Category) -> Micros {
        self.rows
            .get(&(country.to_ascii_uppercase(), category))
            .or_else(|| self.category_defaults.get(&category))
            .copied()
            .unwrap_or(self.global_default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(country: &str, category: Category, micros: Micros) -> PriceRow {
        PriceRow {
            country: country.to_owned(),
            category,
            micros,
        }
    }

    fn table() -> PriceTable {
        PriceTable::new(
            vec![
                row("BR", Category::Marketing, 62_500),
                row("br", Category::Utility, 8_000),
                row("IN", Category::Marketing, 10_700),
                row("IN", Category::Marketing, 11_000),
            ],
            vec![(Category::Marketing, 50_000), (Category::Utility, 5_000)],
            40_000,
        )
    }

    #[test]
    fn exact_row_wins() {
        let t = table();
        assert_eq!(t.price("BR", Category::Marketing), 62_500);
        assert_eq!(t.price("br", Category::Marketing), 62_500);
        assert_eq!(t.price("BR", Category::Utility), 8_000);
        // Last duplicate wins.
        assert_eq!(t.price("IN", Category::Marketing), 11_000);
    }

    #[test]
    fn falls_back_to_category_default() {
        let t = table();
        assert_eq!(t.price("DE", Category::Marketing), 50_000);
        assert_eq!(t.price("IN", Category::Utility), 5_000);
        assert_eq!(t.price("", Category::Utility), 5_000);
    }

    #[test]
    fn falls_back_to_global_default() {
        let t = table();
        assert_eq!(t.price("BR", Category::Authentication), 40_000);
        assert_eq!(t.price("DE", Category::Authentication), 40_000);
        let empty = PriceTable::new(Vec::new(), Vec::new(), 7);
        for c in Category::ALL {
            assert_eq!(empty.price("US", c), 7);
        }
    }
}
