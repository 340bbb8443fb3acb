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

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
// foldhash (hashbrown's default), not SipHash: these maps are read for every candidate of
// every decision, and their keys are ids the catalog made, not bytes a client chose.
use hashbrown::HashMap;
use parking_lot::{Mutex, RwLock};

use crate::catalog::Snapshot;
use crate::clock::{datetime_from_ms, utc_day, Millis};
use crate::domain::campaign::{Campaign, Pacing, Spend};
use crate::domain::ids::CampaignId;
use crate::domain::Micros;
use crate::selection::pacing::Pacer;
use crate::store::{Store, StoreError};

/// Holds lapse in buckets of this width: a hold is kept until the end of the bucket in which
/// its token's last render moment falls. A node then keeps at most (hold lifetime / width) sums
/// per campaign, however many slots it serves and however few of them render; lapsing up to this
/// much late only makes the budget check stricter for that long.
pub const HOLD_BUCKET_MS: Millis = 30_000;

/// Adds renders acknowledged during `epoch`: a read that begins later includes them. Refreshes
/// that fail (Redis away) still start epochs: older entries merge into the newest of them,
/// released with it (later, never earlier), so there are at most two.
fn add_rendered(rendered: &mut Vec<(u64, Micros)>, epoch: u64, price: Micros) {
    match rendered.iter_mut().find(|(e, _)| *e == epoch) {
        Some((_, micros)) => *micros += price,
        None => {
            if rendered.len() >= 2 {
                let merged: Micros = rendered.iter().map(|(_, m)| m).sum();
                let newest = rendered.iter().map(|(e, _)| *e).max().unwrap_or(epoch);
                *rendered = vec![(newest, merged)];
            }
            rendered.push((epoch, price));
        }
    }
}

fn bucket_end(hold_until: Millis) -> Millis {
    (hold_until.div_euclid(HOLD_BUCKET_MS) + 1) * HOLD_BUCKET_MS
}

/// The money behind [`Held::total`], by when it leaves.
#[derive(Default)]
struct Pending {
    /// Holds of served slots that have not rendered here, by the end of their bucket.
    unrendered: BTreeMap<Millis, Micros>,
    /// Renders this node acknowledged, by the refresh epoch during which it did; a refresh that
    /// starts later reads a ledger that includes them. At most two entries (see `add_rendered`).
    rendered: Vec<(u64, Micros)>,
    /// Renders acknowledged into the outage spool, by the spool generation they were written
    /// in: no read includes them before the spool has replayed that generation into the store
    /// (see [`SpendBoard::spool_replayed`]), however many reads begin meanwhile.
    spooled: Vec<(u64, Micros)>,
}

/// Where an acknowledged render went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenderedInto {
    /// Applied by the store now, exactly once.
    Store,
    /// Written into the outage spool in this generation of it (see `ledger::spool`).
    Spool(u64),
}

/// This node's money in flight for one campaign.
#[derive(Default)]
struct Held {
    /// Everything held and not yet in the ledger view: the sum of `pending`, readable without
    /// its lock.
    total: AtomicI64,
    /// Held since the current refresh interval began (the 1/N share rule).
    added: AtomicI64,
    /// Also serialises check-and-hold for the campaign; reads of `total` never take it.
    pending: Mutex<Pending>,
}

/// What [`SpendBoard::try_hold`] did for a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Its price is held (it is written into the slot's decision id, see
    /// [`SpendBoard::decision_id`]).
    Taken,
    /// Nothing to hold: the campaign has no budget or the slot is free.
    NotNeeded,
    /// The budget has no room: the slot must not be served.
    Refused,
}

pub struct SpendBoard {
    ledger: ArcSwap<HashMap<CampaignId, Spend>>,
    local: RwLock<HashMap<CampaignId, Held>>,
    /// Incremented as each refresh starts reading the store.
    epoch: AtomicU64,
    /// The epoch of the ledger view in use: a read never replaces a later one (see
    /// [`Self::apply`]).
    applied: Mutex<u64>,
    /// Nodes alive at the last refresh (1 on the embedded backend).
    nodes: AtomicU32,
    node_id: String,
    /// The first four bytes of every decision id this node makes (see [`Self::decision_id`]).
    tag: [u8; 4],
    pacers: Mutex<HashMap<CampaignId, Pacer>>,
    /// When the ledger view in use was read (ms; `Millis::MIN` before the first read).
    read_at: AtomicI64,
    /// Published throttles of even-paced campaigns; absent means 1.
    throttles: ArcSwap<HashMap<CampaignId, f64>>,
}

impl Default for SpendBoard {
    fn default() -> Self {
        let tag: [u8; 4] = rand::random();
        Self {
            ledger: ArcSwap::default(),
            local: RwLock::default(),
            epoch: AtomicU64::new(0),
            applied: Mutex::new(0),
            nodes: AtomicU32::new(1),
            node_id: crate::domain::ids::new_decision_id(),
            tag,
            pacers: Mutex::default(),
            read_at: AtomicI64::new(Millis::MIN),
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
    /// the slot renders here or `hold_until` (its token's last render moment) has passed.
    pub fn try_hold(&self, campaign: &Campaign, price: Micros, hold_until: Millis) -> Hold {
        let Some(budget) = campaign.budget.filter(|_| price > 0) else {
            return Hold::NotNeeded;
        };
        let nodes = self.nodes.load(Ordering::SeqCst).max(1) as i64;
        self.with_held(&campaign.id, |held| {
            let mut pending = held.pending.lock();
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
                return Hold::Refused;
            }
            *pending
                .unrendered
                .entry(bucket_end(hold_until))
                .or_default() += price;
            held.total.fetch_add(price, Ordering::SeqCst);
            held.added.fetch_add(price, Ordering::SeqCst);
            Hold::Taken
        })
    }

    /// A new decision id for a slot this node serves: 32 hex digits, the first eight this node's
    /// tag, with the lowest bit saying whether the slot's price is held. A render then finds its
    /// hold by its campaign, price and time alone, so holds need no entry per slot.
    pub fn decision_id(&self, hold: Hold) -> String {
        let mut bytes: [u8; 16] = rand::random();
        bytes[..4].copy_from_slice(&self.tag);
        bytes[3] = (bytes[3] & !1) | u8::from(hold == Hold::Taken);
        hex::encode(bytes)
    }

    /// Whether `decision_id` is of a slot whose price this node holds.
    fn holds(&self, decision_id: &str) -> bool {
        let mut prefix = [0u8; 4];
        hex::decode_to_slice(decision_id.get(..8).unwrap_or_default(), &mut prefix).is_ok()
            && prefix[..3] == self.tag[..3]
            && prefix[3] == (self.tag[3] & !1) | 1
    }

    /// Gives back a hold whose slot was never served (the decision did not commit).
    pub fn release(
        &self,
        decision_id: &str,
        campaign: &CampaignId,
        price: Micros,
        hold_until: Millis,
    ) {
        if !self.holds(decision_id) {
            return;
        }
        self.with_held(campaign, |held| {
            let mut pending = held.pending.lock();
            if take(&mut pending.unrendered, bucket_end(hold_until), price) {
                held.total.fetch_sub(price, Ordering::SeqCst);
            }
        });
    }

    /// This node acknowledged the render of a slot; the next refresh that starts after now
    /// includes it in the ledger view, and only then its money leaves the local part. A slot this
    /// node holds moves from unrendered to rendered; any other (served by another node, or its
    /// hold lapsed) counts here until then.
    ///
    /// A render acknowledged into the outage spool may be a repeat the spool cannot tell (a
    /// retried batch), so it never takes a hold, which would be another slot's: it counts as
    /// another node's, and the slot's own hold stays until its bucket lapses (stricter for that
    /// long, never looser).
    pub fn rendered(
        &self,
        decision_id: &str,
        campaign: &CampaignId,
        price: Micros,
        hold_until: Millis,
        into: RenderedInto,
    ) {
        if price <= 0 {
            return;
        }
        let epoch = self.epoch.load(Ordering::SeqCst);
        let own = into == RenderedInto::Store && self.holds(decision_id);
        self.with_held(campaign, |held| {
            let mut pending = held.pending.lock();
            if !(own && take(&mut pending.unrendered, bucket_end(hold_until), price)) {
                held.total.fetch_add(price, Ordering::SeqCst);
            }
            match into {
                RenderedInto::Store => add_rendered(&mut pending.rendered, epoch, price),
                RenderedInto::Spool(generation) => {
                    match pending.spooled.iter_mut().find(|(g, _)| *g == generation) {
                        Some((_, micros)) => *micros += price,
                        None => pending.spooled.push((generation, price)),
                    }
                }
            }
        });
    }

    /// The spool has replayed everything written in `generation` and before into the store: a
    /// read that begins from now on includes those renders, so they leave with it.
    pub fn spool_replayed(&self, generation: u64) {
        let epoch = self.epoch.load(Ordering::SeqCst);
        for held in self.local.read().values() {
            let mut pending = held.pending.lock();
            let mut replayed: Micros = 0;
            pending.spooled.retain(|&(g, micros)| {
                if g <= generation {
                    replayed += micros;
                }
                g > generation
            });
            if replayed > 0 {
                add_rendered(&mut pending.rendered, epoch, replayed);
            }
        }
    }

    fn with_held<T>(&self, campaign: &CampaignId, f: impl FnOnce(&Held) -> T) -> T {
        if let Some(held) = self.local.read().get(campaign) {
            return f(held);
        }
        self.local.write().entry(campaign.clone()).or_default();
        f(self.local.read().get(campaign).expect("inserted above"))
    }

    /// This node's id among the nodes sharing the store.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    pub async fn refresh(&self, store: &Store, now_ms: Millis) -> Result<(), StoreError> {
        // Refreshes may overlap and finish out of order: `apply` keeps the later read's view.
        let epoch = self.begin();
        let nodes = store.heartbeat(&self.node_id, now_ms).await?;
        let spend = store.spend(utc_day(now_ms)).await?;
        self.apply(epoch, spend, nodes, now_ms);
        Ok(())
    }

    /// How old the ledger view in use is at `now_ms` (`None` before the first read).
    pub fn age(&self, now_ms: Millis) -> Option<std::time::Duration> {
        let read_at = self.read_at.load(Ordering::SeqCst);
        (read_at != Millis::MIN)
            .then(|| std::time::Duration::from_millis((now_ms - read_at).max(0) as u64))
    }

    /// Starts a read of the ledger. Renders acknowledged before this increment were applied by
    /// the store before the read, so the view it returns includes them.
    fn begin(&self) -> u64 {
        self.epoch.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Puts the ledger view read in `epoch` in use, unless a later read already is: that one
    /// has settled renders away as included which this one may lack, and they would then count
    /// nowhere (an overspend).
    fn apply(&self, epoch: u64, spend: HashMap<CampaignId, Spend>, nodes: u32, now_ms: Millis) {
        let mut applied = self.applied.lock();
        if *applied > epoch {
            return;
        }
        *applied = epoch;
        self.ledger.store(Arc::new(spend));
        self.read_at.fetch_max(now_ms, Ordering::SeqCst);
        self.nodes.store(nodes.max(1), Ordering::SeqCst);
        self.settle(epoch, now_ms);
    }

    /// After a refresh of `epoch` read the ledger: holds whose tokens can no longer render lapse,
    /// renders that read includes leave, and a new interval begins (every node's share is
    /// recomputed from what is free now). The work is per campaign, never per slot.
    fn settle(&self, epoch: u64, now_ms: Millis) {
        for held in self.local.read().values() {
            let mut pending = held.pending.lock();
            let live = pending.unrendered.split_off(&(now_ms + 1));
            let mut freed: Micros = std::mem::replace(&mut pending.unrendered, live)
                .into_values()
                .sum();
            pending.rendered.retain(|&(e, micros)| {
                let included = e < epoch;
                if included {
                    freed += micros;
                }
                !included
            });
            held.total.fetch_sub(freed, Ordering::SeqCst);
            held.added.store(0, Ordering::SeqCst);
        }
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

/// Takes `price` out of the sum of `bucket`, if it is there.
fn take(buckets: &mut BTreeMap<Millis, Micros>, bucket: Millis, price: Micros) -> bool {
    match buckets.get_mut(&bucket) {
        Some(sum) if *sum >= price => {
            *sum -= price;
            if *sum == 0 {
                buckets.remove(&bucket);
            }
            true
        }
        _ => false,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::advertiser::NewAdvertiser;
    use crate::domain::campaign::{Budget, CampaignInput};
    use time::OffsetDateTime;

    const MINUTE: Millis = 60_000;

    fn campaign(total_micros: Micros) -> Campaign {
        let owner = NewAdvertiser {
            name: "A".into(),
            chat_number: None,
            currency: "EUR".into(),
        }
        .into_advertiser(OffsetDateTime::UNIX_EPOCH, &Default::default())
        .unwrap()
        .0;
        let mut campaign = Campaign::create(
            serde_json::from_value::<CampaignInput>(
                serde_json::json!({"name": "C", "bid_cpm_micros": 1_000_000,
                    "budget": {"total_micros": 1_000_000_000_000_i64}}),
            )
            .unwrap(),
            &owner,
            &Default::default(),
            OffsetDateTime::UNIX_EPOCH,
        )
        .unwrap();
        campaign.budget = Some(Budget {
            total_micros,
            daily_micros: None,
        });
        campaign
    }

    /// Serves a slot at `now_ms` whose token can render for 20 minutes.
    fn serve(
        board: &SpendBoard,
        campaign: &Campaign,
        price: Micros,
        now_ms: Millis,
    ) -> Option<String> {
        match board.try_hold(campaign, price, now_ms + 20 * MINUTE) {
            Hold::Refused => None,
            hold => Some(board.decision_id(hold)),
        }
    }

    fn held(board: &SpendBoard, campaign: &Campaign) -> Micros {
        board.committed(&campaign.id).total_micros
    }

    fn refresh(board: &SpendBoard, now_ms: Millis) {
        let epoch = board.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        board.settle(epoch, now_ms);
    }

    #[test]
    fn a_read_finishing_after_a_later_one_never_replaces_its_view() {
        let board = SpendBoard::default();
        let c = campaign(1_000);
        let slot = serve(&board, &c, 300, 0).unwrap();
        let earlier = board.begin();
        // Rendered after the earlier read, before the later one.
        board.rendered(&slot, &c.id, 300, 20 * MINUTE, RenderedInto::Store);
        let later = board.begin();
        let spend = |micros| Spend {
            total_micros: micros,
            today_micros: micros,
        };
        board.apply(
            later,
            HashMap::from([(c.id.clone(), spend(300))]),
            1,
            MINUTE,
        );
        assert_eq!(held(&board, &c), 300);
        // The earlier read finishes last, without the render.
        board.apply(earlier, HashMap::new(), 1, MINUTE);
        assert_eq!(held(&board, &c), 300, "the render still counts, once");
    }

    #[test]
    fn holds_keep_one_sum_per_bucket_however_many_slots_are_served() {
        let board = SpendBoard::default();
        let c = campaign(i64::MAX / 2);
        // 200,000 slots over 10 minutes, none rendered.
        for i in 0..200_000 {
            assert!(serve(&board, &c, 7, i * 3).is_some());
        }
        assert_eq!(held(&board, &c), 1_400_000);
        let local = board.local.read();
        let buckets = local[&c.id].pending.lock().unrendered.len();
        assert!(
            buckets <= (10 * MINUTE / HOLD_BUCKET_MS) as usize + 1,
            "{buckets} buckets"
        );
    }

    #[test]
    fn a_hold_lasts_until_its_token_cannot_render_then_lapses() {
        let board = SpendBoard::default();
        let c = campaign(1_000);
        serve(&board, &c, 600, 0).unwrap();
        assert!(
            serve(&board, &c, 600, 0).is_none(),
            "the budget has room for one"
        );
        refresh(&board, 20 * MINUTE);
        assert_eq!(held(&board, &c), 600, "still renderable at its last moment");
        refresh(&board, 20 * MINUTE + HOLD_BUCKET_MS);
        assert_eq!(held(&board, &c), 0);
        assert!(serve(&board, &c, 600, 0).is_some());
    }

    #[test]
    fn a_render_here_moves_its_hold_until_a_later_refresh_reads_it() {
        let board = SpendBoard::default();
        let c = campaign(1_000);
        let first = serve(&board, &c, 300, 0).unwrap();
        serve(&board, &c, 300, 0).unwrap();
        board.rendered(&first, &c.id, 300, 20 * MINUTE, RenderedInto::Store);
        assert_eq!(held(&board, &c), 600, "a render moves money, it adds none");
        // A refresh that began before the render does not include it.
        board.settle(board.epoch.load(Ordering::SeqCst), MINUTE);
        assert_eq!(held(&board, &c), 600);
        refresh(&board, MINUTE);
        assert_eq!(
            held(&board, &c),
            300,
            "the render is in the ledger view now"
        );
        // The other slot's hold is untouched and lapses on time.
        refresh(&board, 21 * MINUTE);
        assert_eq!(held(&board, &c), 0);
    }

    #[test]
    fn renders_of_slots_this_node_holds_nothing_for_add_their_price() {
        let board = SpendBoard::default();
        let other = SpendBoard::default();
        let c = campaign(1_000);
        serve(&board, &c, 300, 0).unwrap();
        // Served by another node; and served here with nothing held (free, or no budget then).
        let foreign = serve(&other, &c, 300, 0).unwrap();
        let unheld = board.decision_id(Hold::NotNeeded);
        board.rendered(&foreign, &c.id, 300, 20 * MINUTE, RenderedInto::Store);
        board.rendered(&unheld, &c.id, 300, 20 * MINUTE, RenderedInto::Store);
        assert_eq!(
            held(&board, &c),
            900,
            "neither takes the unrendered hold's money"
        );
        refresh(&board, MINUTE);
        assert_eq!(held(&board, &c), 300);
    }

    #[test]
    fn a_render_after_its_hold_lapsed_still_counts_until_the_ledger_has_it() {
        let board = SpendBoard::default();
        let c = campaign(1_000);
        let id = serve(&board, &c, 300, 0).unwrap();
        refresh(&board, 21 * MINUTE);
        board.rendered(&id, &c.id, 300, 20 * MINUTE, RenderedInto::Store);
        assert_eq!(held(&board, &c), 300);
        refresh(&board, 21 * MINUTE);
        assert_eq!(held(&board, &c), 0);
    }

    #[test]
    fn a_render_the_spool_acknowledged_never_takes_a_hold() {
        let board = SpendBoard::default();
        let c = campaign(1_000);
        let first = serve(&board, &c, 300, 0).unwrap();
        serve(&board, &c, 300, 0).unwrap();
        // The same render acknowledged twice into the spool (a retried batch).
        board.rendered(&first, &c.id, 300, 20 * MINUTE, RenderedInto::Spool(0));
        board.rendered(&first, &c.id, 300, 20 * MINUTE, RenderedInto::Spool(0));
        assert_eq!(
            held(&board, &c),
            1_200,
            "both holds stay, the renders count on top"
        );
        refresh(&board, MINUTE);
        assert_eq!(
            held(&board, &c),
            1_200,
            "a read that began before the replay has neither render"
        );
        // Written after the replay began: the next generation, still only in the spool.
        board.rendered(&first, &c.id, 100, 20 * MINUTE, RenderedInto::Spool(1));
        board.spool_replayed(0);
        assert_eq!(held(&board, &c), 1_300);
        refresh(&board, MINUTE);
        assert_eq!(
            held(&board, &c),
            700,
            "the replayed renders leave; the other slot's hold and the later render stay"
        );
        board.spool_replayed(1);
        refresh(&board, MINUTE);
        assert_eq!(held(&board, &c), 600);
    }

    #[test]
    fn renders_during_failed_refreshes_keep_two_entries_and_release_later() {
        let board = SpendBoard::default();
        let c = campaign(i64::MAX / 2);
        for _ in 0..100 {
            // A refresh that fails still starts an epoch.
            board.epoch.fetch_add(1, Ordering::SeqCst);
            board.rendered(
                &board.decision_id(Hold::NotNeeded),
                &c.id,
                5,
                0,
                RenderedInto::Store,
            );
        }
        assert!(board.local.read()[&c.id].pending.lock().rendered.len() <= 2);
        assert_eq!(held(&board, &c), 500);
        refresh(&board, MINUTE);
        assert_eq!(held(&board, &c), 0);
    }

    #[test]
    fn a_slot_never_served_gives_its_hold_back() {
        let board = SpendBoard::default();
        let c = campaign(1_000);
        let id = serve(&board, &c, 1_000, 0).unwrap();
        assert!(serve(&board, &c, 1, 0).is_none());
        board.release(&id, &c.id, 1_000, 20 * MINUTE);
        assert_eq!(held(&board, &c), 0);
        // Releasing what was never held here changes nothing.
        let foreign = serve(&SpendBoard::default(), &c, 1_000, 0).unwrap();
        serve(&board, &c, 1_000, 0).unwrap();
        board.release(&foreign, &c.id, 1_000, 20 * MINUTE);
        assert_eq!(held(&board, &c), 1_000);
    }

    #[test]
    fn decision_ids_are_32_hex_digits_and_say_whose_hold_they_are() {
        let board = SpendBoard::default();
        let taken = board.decision_id(Hold::Taken);
        let free = board.decision_id(Hold::NotNeeded);
        for id in [&taken, &free] {
            assert_eq!(id.len(), 32);
            assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        }
        assert!(board.holds(&taken) && !board.holds(&free));
        assert!(!SpendBoard::default().holds(&taken));
        assert!(!board.holds("") && !board.holds("zz"));
    }
}
