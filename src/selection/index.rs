//! The eligibility index: one bitset per targeting value (country, language, os, interest, age
//! band) over the snapshot's servable campaigns, plus one per dimension for campaigns that do
//! not target it. A request's plausible campaigns are the AND over dimensions of
//! `untargeted | targeting this value`: word operations over N/64 words, no per-campaign work.
//! Cities and exact ages are checked afterwards on the few candidates that are looked at.
//!
//! Servable campaigns are ordered by tier, then bid (highest first), so walking the bits in
//! order meets candidates in the order the auction ranks them and a decision can stop early.

// foldhash (hashbrown's default), not SipHash: looked up per request attribute; the keys are
// the catalog's targeting values.
use hashbrown::HashMap;

use crate::domain::slot::SlotContext;
use crate::domain::targeting::Targeting;

/// Age bands for indexing; an exact range check follows.
const AGE_BANDS: [(u8, u8); 7] = [
    (0, 17),
    (18, 24),
    (25, 34),
    (35, 44),
    (45, 54),
    (55, 64),
    (65, 255),
];

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bitset {
    words: Vec<u64>,
}

impl Bitset {
    fn new(len: usize) -> Self {
        Self {
            words: vec![0; len.div_ceil(64)],
        }
    }

    fn set(&mut self, index: usize) {
        self.words[index / 64] |= 1 << (index % 64);
    }
}

#[derive(Debug, Default)]
struct Dimension {
    untargeted: Bitset,
    by_value: HashMap<String, Bitset>,
}

impl Dimension {
    fn new(len: usize) -> Self {
        Self {
            untargeted: Bitset::new(len),
            by_value: HashMap::new(),
        }
    }

    fn add(&mut self, index: usize, len: usize, values: &[String], normalise: fn(&str) -> String) {
        if values.is_empty() {
            self.untargeted.set(index);
        }
        for value in values {
            self.by_value
                .entry(normalise(value))
                .or_insert_with(|| Bitset::new(len))
                .set(index);
        }
    }

    /// The bitsets whose union is "does not target this dimension or targets one of `values`".
    fn term<'a, 'v>(
        &'a self,
        values: impl IntoIterator<Item = &'v str>,
        normalise: fn(&str) -> String,
    ) -> Term<'a> {
        let mut sets = vec![self.untargeted.words.as_slice()];
        sets.extend(
            values
                .into_iter()
                .filter_map(|v| self.by_value.get(&normalise(v)))
                .map(|b| b.words.as_slice()),
        );
        Term { sets }
    }
}

/// One dimension of a query: a candidate needs a bit in at least one of `sets`.
struct Term<'a> {
    sets: Vec<&'a [u64]>,
}

/// Candidate positions in increasing order, computed one 64-bit word at a time, so a decision
/// that stops after the first few ranked candidates never touches the rest of the index.
pub struct Candidates<'a> {
    terms: Vec<Term<'a>>,
    words: usize,
    next_word: usize,
    current: u64,
    base: usize,
}

impl Iterator for Candidates<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        while self.current == 0 {
            if self.next_word == self.words {
                return None;
            }
            let w = self.next_word;
            // Bits past the end are zero in every set, so no tail mask is needed.
            self.current = self.terms.iter().fold(!0u64, |acc, term| {
                acc & term.sets.iter().fold(0, |any, set| any | set[w])
            });
            self.base = w * 64;
            self.next_word += 1;
        }
        let bit = self.current.trailing_zeros() as usize;
        self.current &= self.current - 1;
        Some(self.base + bit)
    }
}

#[derive(Debug, Default)]
pub struct EligibilityIndex {
    len: usize,
    countries: Dimension,
    languages: Dimension,
    os: Dimension,
    interests: Dimension,
    age_untargeted: Bitset,
    age_bands: Vec<Bitset>,
}

fn upper(value: &str) -> String {
    value.to_ascii_uppercase()
}

fn lower(value: &str) -> String {
    value.to_ascii_lowercase()
}

fn exact(value: &str) -> String {
    value.to_owned()
}

impl EligibilityIndex {
    /// Indexes campaigns by position in `targetings` (the snapshot's servable order).
    pub fn build<'a>(targetings: impl ExactSizeIterator<Item = &'a Targeting>) -> Self {
        let len = targetings.len();
        let mut index = Self {
            len,
            countries: Dimension::new(len),
            languages: Dimension::new(len),
            os: Dimension::new(len),
            interests: Dimension::new(len),
            age_untargeted: Bitset::new(len),
            age_bands: vec![Bitset::new(len); AGE_BANDS.len()],
        };
        for (i, targeting) in targetings.enumerate() {
            index.countries.add(i, len, &targeting.countries, upper);
            index.languages.add(i, len, &targeting.languages, lower);
            index.os.add(i, len, &targeting.os, lower);
            index.interests.add(i, len, &targeting.interests, exact);
            match targeting.age {
                None => index.age_untargeted.set(i),
                Some(range) => {
                    for (band, (low, high)) in AGE_BANDS.iter().enumerate() {
                        if range.min <= *high && range.max >= *low {
                            index.age_bands[band].set(i);
                        }
                    }
                }
            }
        }
        index
    }

    /// Campaigns whose indexed targeting can match `ctx` (a superset of the exact matches).
    pub fn candidates(&self, ctx: &SlotContext) -> Candidates<'_> {
        let band = ctx.age.and_then(|age| {
            AGE_BANDS
                .iter()
                .position(|(low, high)| (*low..=*high).contains(&age))
        });
        let mut ages = vec![self.age_untargeted.words.as_slice()];
        ages.extend(band.map(|b| self.age_bands[b].words.as_slice()));
        let terms = vec![
            self.countries.term(ctx.country.as_deref(), upper),
            self.languages.term(ctx.language.as_deref(), lower),
            self.os.term(ctx.os.as_deref(), lower),
            self.interests
                .term(ctx.interests.iter().map(String::as_str), exact),
            Term { sets: ages },
        ];
        Candidates {
            terms,
            words: self.len.div_ceil(64),
            next_word: 0,
            current: 0,
            base: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::targeting::AgeRange;

    fn targeting(countries: &[&str], interests: &[&str], age: Option<(u8, u8)>) -> Targeting {
        Targeting {
            countries: countries.iter().map(|s| s.to_string()).collect(),
            interests: interests.iter().map(|s| s.to_string()).collect(),
            age: age.map(|(min, max)| AgeRange { min, max }),
            ..Targeting::default()
        }
    }

    #[test]
    fn candidates_are_a_superset_of_exact_matches_and_prune_the_rest() {
        let campaigns = [
            targeting(&[], &[], None),
            targeting(&["IT"], &[], None),
            targeting(&["FR"], &[], None),
            targeting(&["IT", "FR"], &["channel:football"], None),
            targeting(&[], &[], Some((18, 24))),
            targeting(&[], &[], Some((40, 50))),
        ];
        let index = EligibilityIndex::build(campaigns.iter());
        let ctx = SlotContext {
            country: Some("it".into()),
            age: Some(20),
            interests: vec!["channel:football".into()],
            ..SlotContext::default()
        };
        let found: Vec<usize> = index.candidates(&ctx).collect();
        assert_eq!(found, vec![0, 1, 3, 4]);
        // Exhaustive cross-check: every exact match is a candidate.
        for (i, t) in campaigns.iter().enumerate() {
            if t.matches(&ctx) {
                assert!(found.contains(&i), "{i}");
            }
        }
        let unknown = SlotContext::default();
        assert_eq!(index.candidates(&unknown).collect::<Vec<_>>(), vec![0]);
    }

    #[test]
    fn candidates_cross_word_boundaries_in_order() {
        for len in [1usize, 63, 64, 65, 130] {
            let campaigns = vec![Targeting::default(); len];
            let index = EligibilityIndex::build(campaigns.iter());
            let all: Vec<usize> = index.candidates(&SlotContext::default()).collect();
            assert_eq!(all, (0..len).collect::<Vec<_>>());
        }
    }
}
