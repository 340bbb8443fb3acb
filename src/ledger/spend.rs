//! The spend view that budget checks read. Two parts:
//!
//! - `ledger`: spend per campaign as the store knows it (total and today), refreshed at least
//!   every second and swapped whole (readers never lock);
//! - `local`: what this node has committed since: the price of every slot it served that has not
//!   yet rendered (until its token can no longer render) and of every render it acknowledged
//!   that the last refresh may not include yet.
//!
//! Decisions check `ledger + local + one more render <= budget`. On one node that makes
//! overspend impossible; with N nodes each node sees the others' renders within one refresh
//! and never sees their unrendered slots, which bounds overspend by what the other N-1 nodes
//! commit for the campaign within one refresh interval plus their outstanding slots (README).

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use parking_lot::{Mutex, RwLock};

use crate::clock::{utc_day, Millis};
use crate::domain::campaign::{Campaign, Spend};
use crate::domain::ids::CampaignId;
use crate::domain::Micros;
use crate::store::{Store, StoreError};

struct Commitment {
    campaign: CampaignId,
    price: Micros,
    /// After this, the slot can no longer render: the commitment lapses.
    expires_ms: Millis,
    /// The refresh epoch during which this node acknowledged the render, if it did.
    rendered_in_epoch: Option<u64>,
}

#[derive(Default)]
pub struct SpendBoard {
    ledger: ArcSwap<HashMap<CampaignId, Spend>>,
    local: RwLock<HashMap<CampaignId, AtomicI64>>,
    commitments: Mutex<HashMap<String, Commitment>>,
    /// Incremented as each refresh starts reading the store.
    epoch: AtomicU64,
}

impl crate::selection::Budgets for SpendBoard {
    fn committed(&self, campaign: &CampaignId) -> Spend {
        SpendBoard::committed(self, campaign)
    }
}

impl SpendBoard {
    /// Spend as the ledger knows it (what the API shows).
    pub fn of(&self, campaign: &CampaignId) -> Spend {
        self.ledger
            .load()
            .get(campaign)
            .copied()
            .unwrap_or_default()
    }

    /// Spend to check budgets against: the ledger plus this node's outstanding commitments.
    pub fn committed(&self, campaign: &CampaignId) -> Spend {
        let mut spend = self.of(campaign);
        if let Some(local) = self.local.read().get(campaign) {
            let micros = local.load(Ordering::Relaxed);
            spend.total_micros += micros;
            spend.today_micros += micros;
        }
        spend
    }

    /// Holds `price` of `campaign`'s budget for a slot about to be served, if the budget (total
    /// and daily) still has room for it; atomically, so concurrent decisions cannot together
    /// commit more than the budget. The hold lasts until the slot renders or lapses.
    pub fn try_hold(
        &self,
        decision_id: &str,
        campaign: &Campaign,
        price: Micros,
        expires_ms: Millis,
    ) -> bool {
        if price <= 0 {
            return true;
        }
        let Some(budget) = campaign.budget else {
            return true;
        };
        let ledger = self.of(&campaign.id);
        let fits = |local: Micros| {
            ledger.total_micros + local + price <= budget.total_micros
                && budget
                    .daily_micros
                    .is_none_or(|daily| ledger.today_micros + local + price <= daily)
        };
        if self.local.read().get(&campaign.id).is_none() {
            self.local.write().entry(campaign.id.clone()).or_default();
        }
        let local = self.local.read();
        let counter = local.get(&campaign.id).expect("inserted above");
        let mut current = counter.load(Ordering::SeqCst);
        loop {
            if !fits(current) {
                return false;
            }
            match counter.compare_exchange(
                current,
                current + price,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
        drop(local);
        self.commitments.lock().insert(
            decision_id.to_owned(),
            Commitment {
                campaign: campaign.id.clone(),
                price,
                expires_ms,
                rendered_in_epoch: None,
            },
        );
        true
    }

    /// Gives back a hold whose slot was never served (the decision did not commit).
    pub fn release(&self, decision_id: &str) {
        if let Some(commitment) = self.commitments.lock().remove(decision_id) {
            if let Some(counter) = self.local.read().get(&commitment.campaign) {
                counter.fetch_sub(commitment.price, Ordering::SeqCst);
            }
        }
    }

    /// This node acknowledged the render of a slot; the next refresh that starts after now
    /// includes it in the ledger view, and only then the local commitment goes.
    pub fn rendered(&self, decision_id: &str, campaign: &CampaignId, price: Micros) {
        let epoch = self.epoch.load(Ordering::SeqCst);
        let mut commitments = self.commitments.lock();
        match commitments.get_mut(decision_id) {
            Some(commitment) => commitment.rendered_in_epoch = Some(epoch),
            // Served by another node: count it here until our view of the ledger has it.
            None if price > 0 => {
                commitments.insert(
                    decision_id.to_owned(),
                    Commitment {
                        campaign: campaign.clone(),
                        price,
                        expires_ms: Millis::MAX,
                        rendered_in_epoch: Some(epoch),
                    },
                );
                drop(commitments);
                self.add_local(campaign, price);
            }
            None => {}
        }
    }

    fn add_local(&self, campaign: &CampaignId, micros: Micros) {
        if let Some(counter) = self.local.read().get(campaign) {
            counter.fetch_add(micros, Ordering::Relaxed);
            return;
        }
        self.local
            .write()
            .entry(campaign.clone())
            .or_default()
            .fetch_add(micros, Ordering::Relaxed);
    }

    pub async fn refresh(&self, store: &Store, now_ms: Millis) -> Result<(), StoreError> {
        // Renders acknowledged before this increment were applied by the store before the read
        // below, so the new ledger view includes them.
        let epoch = self.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        let spend = store.spend(utc_day(now_ms)).await?;
        self.ledger.store(Arc::new(spend));
        let mut released: Vec<(CampaignId, Micros)> = Vec::new();
        self.commitments.lock().retain(|_, c| {
            let in_ledger = c.rendered_in_epoch.is_some_and(|e| e < epoch);
            let lapsed = c.rendered_in_epoch.is_none() && c.expires_ms <= now_ms;
            if in_ledger || lapsed {
                released.push((c.campaign.clone(), c.price));
            }
            !(in_ledger || lapsed)
        });
        let local = self.local.read();
        for (campaign, price) in released {
            if let Some(counter) = local.get(&campaign) {
                counter.fetch_sub(price, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// Commitments this node holds (served or rendered, not yet in its ledger view).
    pub fn outstanding(&self) -> usize {
        self.commitments.lock().len()
    }
}
