//! Slots served, counted on the node that served them and written to the system of record by
//! the exporter with its next batch. A decision is not billable and is not a ledger record: the
//! count is kept in memory per (campaign, creative, coarse context, UTC hour) rather than
//! appended to the outbox, which keeps the decision path free of a write per slot. A node
//! killed with `kill -9` loses the counts of its last export interval (about a second); billing
//! never reads them.

use std::collections::HashMap;

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

#[derive(Default)]
pub struct ServedTally {
    counts: Mutex<HashMap<ServedKey, u64>>,
}

impl ServedTally {
    pub fn count(&self, campaign: &str, creative: &str, coarse: &Coarse, now_ms: Millis) {
        let key = ServedKey {
            campaign: campaign.to_owned(),
            creative: creative.to_owned(),
            coarse: coarse.clone(),
            hour_ms: now_ms - now_ms.rem_euclid(HOUR_MS),
        };
        *self.counts.lock().entry(key).or_default() += 1;
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
