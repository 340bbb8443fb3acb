//! Slots served, counted on the node that served them and written to the system of record by
//! the exporter with its next batch. A decision is not billable and is not a ledger record: the
//! count is kept in memory per (campaign, creative, coarse context, UTC hour) rather than
//! appended to the outbox, which keeps the decision path free of a write per slot. A node
//! killed with `kill -9` loses the counts of its last export interval (about a second); billing
//! never reads them.
//!
//! The tally is a `hashbrown` map so that counting looks a key up by borrowed parts
//! ([`Equivalent`]): an existing key, the common case, allocates nothing.

use hashbrown::{Equivalent, HashMap};
use parking_lot::Mutex;

use crate::clock::Millis;
use crate::domain::audience::Coarse;

const HOUR_MS: Millis = 3_600_000;

/// Where a served slot is counted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServedKey {
    pub campaign: String,
    pub creative: String,
    pub coarse: Coarse,
    /// Start of the UTC hour, ms.
    pub hour_ms: Millis,
}

/// A [`ServedKey`] by reference: hashes as it does (the same fields in the same order).
#[derive(Hash)]
struct ServedRef<'a> {
    campaign: &'a str,
    creative: &'a str,
    coarse: &'a Coarse,
    hour_ms: Millis,
}

impl Equivalent<ServedKey> for ServedRef<'_> {
    fn equivalent(&self, key: &ServedKey) -> bool {
        self.hour_ms == key.hour_ms
            && self.campaign == key.campaign
            && self.creative == key.creative
            && *self.coarse == key.coarse
    }
}

#[derive(Default)]
pub struct ServedTally {
    counts: Mutex<HashMap<ServedKey, u64>>,
}

impl ServedTally {
    pub fn count(&self, campaign: &str, creative: &str, coarse: &Coarse, now_ms: Millis) {
        let hour_ms = now_ms - now_ms.rem_euclid(HOUR_MS);
        let found = ServedRef {
            campaign,
            creative,
            coarse,
            hour_ms,
        };
        let mut counts = self.counts.lock();
        if let Some(n) = counts.get_mut(&found) {
            *n += 1;
            return;
        }
        counts.insert(
            ServedKey {
                campaign: campaign.to_owned(),
                creative: creative.to_owned(),
                coarse: coarse.clone(),
                hour_ms,
            },
            1,
        );
    }

    /// Everything counted since the last take.
    pub fn take(&self) -> Vec<(ServedKey, u64)> {
        std::mem::take(&mut *self.counts.lock())
            .into_iter()
            .collect()
    }

    /// Counts taken for a write that failed, to go with the next one.
    pub fn put_back(&self, counts: Vec<(ServedKey, u64)>) {
        let mut held = self.counts.lock();
        for (key, n) in counts {
            *held.entry(key).or_default() += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_hour_and_survive_a_failed_write() {
        let tally = ServedTally::default();
        let coarse = Coarse::default();
        tally.count("cmp_a", "cre_a", &coarse, 3_600_000 + 5);
        tally.count("cmp_a", "cre_a", &coarse, 2 * 3_600_000 - 1);
        tally.count("cmp_a", "cre_a", &coarse, 2 * 3_600_000);
        let mut taken = tally.take();
        taken.sort_by_key(|(k, _)| k.hour_ms);
        assert_eq!(
            taken
                .iter()
                .map(|(k, n)| (k.hour_ms, *n))
                .collect::<Vec<_>>(),
            vec![(3_600_000, 2), (7_200_000, 1)]
        );
        assert!(tally.take().is_empty());
        tally.put_back(taken);
        tally.count("cmp_a", "cre_a", &coarse, 3_600_000);
        let back: u64 = tally.take().iter().map(|(_, n)| n).sum();
        assert_eq!(back, 4);
    }
}
