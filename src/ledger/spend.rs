//! The spend view that budget checks read. Two parts:
//!
//! - `ledger`: spend per campaign as the store knows it (total and today), refreshed at least
//!   every second and swapped whole (readers never lock);
//! - `local`: what this node has committed since: the price of every slot it served that has not
//!   yet rendered (until its token can no longer render) and of every render it acknowledged
//!   that the last refresh may not include yet.
//!
//! A slot is served only if `ledger + local + its price` fits the budget, checked and held
//! atomically per campaign, so one node never overspends. Several nodes do not see each other's
//! holds, only each other's renders one refresh later; so while more than one node is alive
//! (heartbeats in the store), each node may add during one refresh interval at most its 1/N
//! share of what was free when the interval began. That keeps what all nodes add in one interval
//! within the free budget; the residual overspend comes from slots other nodes served but had
//! not rendered at the refresh (measured in tests/api/billing.rs, stated in the README).

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use parking_lot::{Mutex, RwLock};

use crate::catalog::Snapshot;
use crate::clock::{datetime_from_ms, utc_day, Millis};
use crate::domain::campaign::{Campaign, Pacing, Spend};
use crate::domain::ids::CampaignId;
use crate::domain::Micros;
use crate::selection::pacing::Pacer;
use crate::store::{Store, StoreError};

struct Commitment {
    campaign: CampaignId,
    price: Micros,
    /// After this, the slot can no longer render: the commitment lapses.
    expires_ms: Millis,
    /// The refresh epoch during which this node acknowledged the render, if it did.
    rendered_in_epoch: Option<u64>,
}

/// This node's money in flight for one campaign.
#[derive(Default)]
struct Held {
    /// Everything held and not yet in the ledger view.
    total: AtomicI64,
    /// Held since the current refresh interval began (the 1/N share rule).
    added: AtomicI64,
    /// Serialises check-and-hold for the campaign; reads never take it.
    hold: Mutex<()>,
}

pub struct SpendBoard {
    ledger: ArcSwap<HashMap<CampaignId, Spend>>,
    local: RwLock<HashMap<CampaignId, Held>>,
    commitments: Mutex<HashMap<String, Commitment>>,
    /// Incremented as each refresh starts reading the store.
    epoch: AtomicU64,
    /// Nodes alive at the last refresh (1 on the embedded backend).
    nodes: AtomicU32,
    node_id: String,
    pacers: Mutex<HashMap<CampaignId, Pacer>>,
    /// Published throttles of even-paced campaigns; absent means 1.
    throttles: ArcSwap<HashMap<CampaignId, f64>>,
}

impl Default for SpendBoard {
    fn default() -> Self {
        Self {
            ledger: ArcSwap::default(),
            local: RwLock::default(),
            commitments: Mutex::default(),
            epoch: AtomicU64::new(0),
            nodes: AtomicU32::new(1),
            node_id: crate::domain::ids::new_decision_id(),
            pacers: Mutex::default(),
            throttles: ArcSwap::default(),
        }
    }
}

impl crate::selection::Budgets for SpendBoard {
    fn committed(&self, campaign: &CampaignId) -> Spend {
        SpendBoard::committed(self, campaign)
    }

    fn pacing_throttle(&self, campaign: &CampaignId) -> f64 {
        self.throttles.load().get(campaign).copied().unwrap_or(1.0)
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
        if let Some(held) = self.local.read().get(campaign) {
            let micros = held.total.load(Ordering::SeqCst);
            spend.total_micros += micros;
            spend.today_micros += micros;
        }
        spend
    }

    /// Holds `price` of `campaign`'s budget for a slot about to be served, if the budget (total
    /// and daily, and this node's share of it) still has room; atomically per campaign, so
    /// concurrent decisions cannot together commit more than the budget. The hold lasts until
    /// the slot renders or lapses.
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
        if self.local.read().get(&campaign.id).is_none() {
            self.local.write().entry(campaign.id.clone()).or_default();
        }
        let nodes = self.nodes.load(Ordering::SeqCst).max(1) as i64;
        {
            let local = self.local.read();
            let held = local.get(&campaign.id).expect("inserted above");
            let _hold = held.hold.lock();
            let ledger = self.of(&campaign.id);
            let (total, added) = (
                held.total.load(Ordering::SeqCst),
                held.added.load(Ordering::SeqCst),
            );
            let room = |budget: Micros, spent: Micros| {
                let fits = spent + total + price <= budget;
                // What was free when this interval began, shared among the nodes.
                let share = (budget - spent - (total - added)) / nodes;
                fits && (nodes == 1 || added + price <= share)
            };
            let fits = room(budget.total_micros, ledger.total_micros)
                && budget
                    .daily_micros
                    .is_none_or(|daily| room(daily, ledger.today_micros));
            if !fits {
                return false;
            }
            held.total.fetch_add(price, Ordering::SeqCst);
            held.added.fetch_add(price, Ordering::SeqCst);
        }
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
            self.add_local(&commitment.campaign, -commitment.price);
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
        if let Some(held) = self.local.read().get(campaign) {
            held.total.fetch_add(micros, Ordering::SeqCst);
            return;
        }
        self.local
            .write()
            .entry(campaign.clone())
            .or_default()
            .total
            .fetch_add(micros, Ordering::SeqCst);
    }

    pub async fn refresh(&self, store: &Store, now_ms: Millis) -> Result<(), StoreError> {
        // Renders acknowledged before this increment were applied by the store before the read
        // below, so the new ledger view includes them.
        let epoch = self.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        let nodes = store.heartbeat(&self.node_id, now_ms).await?;
        let spend = store.spend(utc_day(now_ms)).await?;
        self.ledger.store(Arc::new(spend));
        self.nodes.store(nodes.max(1), Ordering::SeqCst);
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
            if let Some(held) = local.get(&campaign) {
                held.total.fetch_sub(price, Ordering::SeqCst);
            }
        }
        // A new interval: every node's share is recomputed from what is free now.
        for held in local.values() {
            let _hold = held.hold.lock();
            held.added.store(0, Ordering::SeqCst);
        }
        Ok(())
    }

    /// Re-aims every even-paced campaign's throttle at its ideal spend line (after a refresh).
    pub fn update_pacing(&self, snapshot: &Snapshot, now_ms: Millis) {
        let mut pacers = self.pacers.lock();
        let mut throttles = HashMap::new();
        for servable in &snapshot.servable {
            let campaign = &servable.campaign;
            if campaign.pacing != Pacing::Even {
                continue;
            }
            let spend = self.committed(&campaign.id);
            let Some(target) = daily_target(campaign, spend, now_ms) else {
                continue;
            };
            let pacer = pacers.entry(campaign.id.clone()).or_default();
            pacer.update(target, spend.today_micros, now_ms);
            throttles.insert(campaign.id.clone(), pacer.throttle());
        }
        pacers.retain(|id, _| throttles.contains_key(id));
        self.throttles.store(Arc::new(throttles));
    }
}

/// What an even-paced campaign should spend today: its daily budget, or else what is left of
/// its total spread over the days to `end_at`. Neither: nothing to pace against (spends asap).
fn daily_target(campaign: &Campaign, spend: Spend, now_ms: Millis) -> Option<Micros> {
    let budget = campaign.budget?;
    if let Some(daily) = budget.daily_micros {
        return Some(daily);
    }
    let end = campaign.end_at?;
    let now = datetime_from_ms(now_ms);
    let days_left = (end.date() - now.date()).whole_days().max(0) + 1;
    let before_today = spend.total_micros - spend.today_micros;
    Some((budget.total_micros - before_today).max(0) / days_left)
}
