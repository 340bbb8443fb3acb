//! The exporter: moves ledger records from the hot store's outbox into the system of record,
//! exactly once, and keeps `as_of`, the instant before which every acknowledged event is in
//! the record.
//!
//! Every node runs one. A round reads the oldest records of every shard's outbox (one `XRANGE`
//! per shard stream, pipelined; the embedded backend's in-process Redis keeps the same
//! streams, refilled by its journal at start), writes them and this node's served counts in
//! one transaction (`Record::export`: unique by record id, counters moved only for rows
//! inserted), and only then drops them from the outbox (`XDEL`). A crash between the two re-exports the records next round as no-ops;
//! two nodes exporting the same records insert them once. Nothing is ever removed from an
//! outbox before it is committed.
//!
//! `as_of` is the start of the last round that found every outbox drained while this node's
//! outage spool was empty and no node's spool was listed in the record (`super::outages`): an
//! event acknowledged before that instant was in an outbox then (its script ran before the
//! answer) or already exported. A round reads the list *before* the outboxes: a spool withdrawn
//! after that read had been replayed into an outbox before it, so the round's drain finds its
//! events; a spool listed after it acknowledges only events after the round's start. A round
//! that finds a spool listed leaves `as_of` where it was rather than compare another node's
//! clock with its own. A report waits (briefly) for a round that started after it arrived, so a
//! reader sees its own events.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};

use super::Record;
use crate::clock::{Millis, SharedClock};
use crate::ledger::reconcile::LedgerRecord;
use crate::ledger::served::{ServedKey, ServedTally};
use crate::ledger::spool::Spool;
use crate::metrics::Metrics;
use crate::record::outages::OutageSpool;
use crate::shutdown::Shutdown;
use crate::store::{Store, StoreError};

/// Records read per shard per step: a step's transaction holds at most this times the shards.
const PER_SHARD: usize = 200;
/// Between rounds when nothing asks for one sooner.
const INTERVAL: Duration = Duration::from_millis(500);
/// How long a report waits for a fresh round before answering an older `as_of`.
const CATCH_UP: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, Default)]
struct Progress {
    /// The last round that completed (whether or not it could move `as_of`).
    round: u64,
    as_of_ms: Millis,
}

pub struct Exporter {
    record: Arc<Record>,
    store: Arc<Store>,
    served: Arc<ServedTally>,
    spool: Option<Arc<Spool>>,
    clock: SharedClock,
    metrics: Arc<Metrics>,
    started: AtomicU64,
    /// When the record's old keyed hashes were last cleared (ms).
    user_keys_cleared_at: std::sync::atomic::AtomicI64,
    /// The last clearing failed: the next failure is not warned about again (the record being
    /// away already is, once a round).
    user_keys_failing: std::sync::atomic::AtomicBool,
    /// When [`Exporter::rewrite_redis_files`] last looked (ms).
    aof_checked_at: std::sync::atomic::AtomicI64,
    progress: watch::Sender<Progress>,
    wake: Notify,
    /// The hot store's shards (click ids name one).
    shards: u32,
    /// Whether the move of an earlier build's conversion click ids has run (see
    /// `record::conversions`).
    click_ids_moved: std::sync::atomic::AtomicBool,
    /// The node whose spool held `as_of` back in the last round that read the list (logged when
    /// it changes).
    held_by: parking_lot::Mutex<Option<String>>,
}

impl Exporter {
    pub fn new(
        record: Arc<Record>,
        store: Arc<Store>,
        served: Arc<ServedTally>,
        spool: Option<Arc<Spool>>,
        clock: SharedClock,
        metrics: Arc<Metrics>,
        shards: u32,
    ) -> Self {
        Self {
            record,
            store,
            served,
            spool,
            clock,
            metrics,
            started: AtomicU64::new(0),
            user_keys_cleared_at: std::sync::atomic::AtomicI64::new(Millis::MIN / 2),
            user_keys_failing: std::sync::atomic::AtomicBool::new(false),
            aof_checked_at: std::sync::atomic::AtomicI64::new(Millis::MIN / 2),
            progress: watch::channel(Progress::default()).0,
            wake: Notify::new(),
            shards,
            click_ids_moved: std::sync::atomic::AtomicBool::new(false),
            held_by: parking_lot::Mutex::new(None),
        }
    }

    /// Exports until `shutdown`, then once more (the served counts and whatever the last
    /// requests added).
    pub async fn run(self: Arc<Self>, mut shutdown: Shutdown) {
        loop {
            self.round_supervised().await;
            tokio::select! {
                _ = shutdown.recv() => break,
                _ = tokio::time::sleep(INTERVAL) => {}
                _ = self.wake.notified() => {}
            }
        }
        self.round_supervised().await;
    }

    /// One round; a panic in it fails that round only. A dead exporter would leave the
    /// outboxes growing, reports frozen and its lag gauge at its last value, so no alert.
    async fn round_supervised(&self) {
        use futures_util::FutureExt;
        if let Err(panic) = std::panic::AssertUnwindSafe(self.round_logged())
            .catch_unwind()
            .await
        {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            // The round is over for a report waiting on it, as a failed one is.
            let round = self.started.load(Ordering::SeqCst);
            self.progress.send_modify(|p| p.round = p.round.max(round));
            self.metrics.export_failed();
            self.metrics.export_state(self.lag(), 0);
            tracing::error!(panic = %what, "ledger export round panicked; the next round retries");
        }
    }

    /// The `as_of` of a round that started after this call, waiting up to two seconds for it;
    /// past that (export stuck), the last one known.
    pub async fn caught_up(&self) -> Millis {
        let wanted = self.started.load(Ordering::SeqCst) + 1;
        self.wake.notify_one();
        let mut progress = self.progress.subscribe();
        let fresh = tokio::time::timeout(CATCH_UP, progress.wait_for(|p| p.round >= wanted)).await;
        match fresh {
            Ok(Ok(p)) => p.as_of_ms,
            _ => self.progress.borrow().as_of_ms,
        }
    }

    /// How old `as_of` is now.
    fn lag(&self) -> Duration {
        let as_of = self.progress.borrow().as_of_ms;
        Duration::from_millis((self.clock.now_ms() - as_of).max(0) as u64)
    }

    async fn round_logged(&self) {
        let round = self.started.fetch_add(1, Ordering::SeqCst) + 1;
        let started_ms = self.clock.now_ms();
        // Both before the outboxes (see the module's doc). The local spool counts even when its
        // listing failed.
        let own_spool_clear = self.spool.as_ref().is_none_or(|s| s.pending() == 0);
        let spools = self.listed_spools().await;
        let clear = own_spool_clear && spools.as_ref().is_some_and(|s| s.is_empty());
        match self.drain().await {
            Ok(waiting) => {
                self.progress.send_modify(|p| {
                    p.round = p.round.max(round);
                    if clear {
                        p.as_of_ms = p.as_of_ms.max(started_ms);
                    }
                });
                self.metrics.export_state(self.lag(), waiting);
                if clear {
                    self.move_earlier_click_ids().await;
                }
                // Compaction writes a file under the state lock: off the async workers.
                let store = self.store.clone();
                let now_ms = self.clock.now_ms();
                match tokio::task::spawn_blocking(move || store.maintain(now_ms)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(err)) => {
                        tracing::warn!(error = %err.report(), "journal compaction failed; retrying later")
                    }
                    Err(panicked) => tracing::error!(%panicked, "journal compaction panicked"),
                }
            }
            Err(err) => {
                // The round is over: a report waiting for it answers the `as_of` it had, at
                // once, rather than waiting out its deadline.
                self.progress.send_modify(|p| p.round = p.round.max(round));
                self.metrics.export_failed();
                self.metrics.export_state(self.lag(), 0);
                tracing::warn!(error = %err.report(), "ledger export failed; retrying (nothing is lost)");
            }
        }
        // Privacy rules, whether or not the outboxes drained.
        self.clear_old_user_keys().await;
        self.rewrite_redis_files().await;
    }

    /// The outage spools every node has listed (none on the embedded backend, which has no
    /// spool and shares its record with no node); `None` when the record cannot say. Holds
    /// this node's own row against its spool on the way (`Spool::reconcile_listing`).
    async fn listed_spools(&self) -> Option<Vec<OutageSpool>> {
        let Some(spool) = &self.spool else {
            return Some(Vec::new());
        };
        let spools = match self.record.outage_spools().await {
            Ok(spools) => spools,
            Err(err) => {
                tracing::warn!(error = %err.report(), "outage spools unread; as_of stays");
                return None;
            }
        };
        self.metrics.outage_spools(spools.len() as u64);
        let listed = spools
            .iter()
            .find(|s| Some(s.node.as_str()) == spool.node());
        spool
            .reconcile_listing(listed.map(|s| s.token.as_str()))
            .await;
        let oldest = spools.first().map(|s| s.node.clone());
        let mut held_by = self.held_by.lock();
        if *held_by != oldest {
            match spools.first() {
                Some(spool) => tracing::warn!(
                    node = %spool.node,
                    since = %crate::ledger::report::rfc3339(spool.since_ms),
                    nodes = spools.len(),
                    "as_of waits for a node's outage spool (events acknowledged during a Redis outage, not replayed yet)"
                ),
                None => tracing::info!("no outage spool listed; as_of moves again"),
            }
            *held_by = oldest;
        }
        Some(spools)
    }

    /// After a round that drained the outboxes, until it has run once: an earlier build's
    /// conversion click ids onto their records (see `record::conversions`).
    async fn move_earlier_click_ids(&self) {
        if self.click_ids_moved.load(Ordering::SeqCst) {
            return;
        }
        let moved = super::conversions::move_earlier_click_ids(
            &self.store,
            &self.record,
            self.shards,
            self.clock.now_ms(),
        )
        .await;
        match moved {
            Ok(moved) => {
                if let Some(records) = moved {
                    tracing::info!(
                        records,
                        "an earlier build's conversion click ids moved into the record"
                    );
                }
                self.click_ids_moved.store(true, Ordering::SeqCst);
            }
            Err(err) => {
                tracing::warn!(error = %err.report(), "conversion click ids not moved into the record; retrying after the next round")
            }
        }
    }

    /// At most once a minute: the record's keyed hashes past their retention are cleared.
    async fn clear_old_user_keys(&self) {
        let now_ms = self.clock.now_ms();
        if now_ms - self.user_keys_cleared_at.load(Ordering::SeqCst) < 60_000 {
            return;
        }
        self.user_keys_cleared_at.store(now_ms, Ordering::SeqCst);
        let before = now_ms - crate::privacy::RECORD_USER_KEY_MS;
        match self.record.clear_user_keys_before(before).await {
            Ok(cleared) => {
                self.user_keys_failing.store(false, Ordering::SeqCst);
                if cleared > 0 {
                    tracing::info!(cleared, "cleared keyed hashes past their retention");
                }
            }
            Err(err) if self.user_keys_failing.swap(true, Ordering::SeqCst) => {
                tracing::debug!(error = %err.report(), "keyed hashes still not cleared; retrying in a minute")
            }
            Err(err) => {
                tracing::warn!(error = %err.report(), "keyed hashes not cleared; retrying every minute")
            }
        }
    }

    /// What an erasure or an expiry removed from Redis leaves its disk within a day (the
    /// embedded backend's daily compaction does the same for its files). Checked every ten
    /// minutes; the day is shared by every node.
    async fn rewrite_redis_files(&self) {
        let now_ms = self.clock.now_ms();
        if now_ms - self.aof_checked_at.load(Ordering::SeqCst) < 600_000 {
            return;
        }
        // Nodes not checked this time (Redis away, another service node checking) are
        // checked at the next interval: a day is many intervals.
        self.aof_checked_at.store(now_ms, Ordering::SeqCst);
        if let Err(err) = self.store.rewrite_aof_if_due(now_ms).await {
            tracing::warn!(
                error = %err.report(),
                "Redis append-only files not checked; checking again in ten minutes"
            )
        }
    }

    async fn drain(&self) -> Result<u64, StoreError> {
        let served = self.served.take();
        match export_waiting(&self.store, &self.record, served).await {
            Ok(moved) => {
                self.metrics.exported(moved.inserted);
                Ok(moved.waiting)
            }
            Err((err, served)) => {
                self.served.put_back(served);
                Err(err)
            }
        }
    }
}

/// What one [`export_waiting`] did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Moved {
    /// Records the first pass over the outbox parts found.
    pub waiting: u64,
    /// Records new to the record (the rest were there already).
    pub inserted: u64,
}

/// Exports in passes over the outbox parts (one read of each, in turn, so that a busy part
/// cannot starve the others) until a pass finds every part's read short of a full batch,
/// `served` with the first batch. A part whose read fails (a damaged key, a master away) is
/// passed over, not the others after it, and the round then fails. On failure, answers the
/// served counts not written.
pub async fn export_waiting(
    store: &Store,
    record: &Record,
    mut served: Vec<(ServedKey, u64)>,
) -> Result<Moved, (StoreError, Vec<(ServedKey, u64)>)> {
    let mut moved = Moved::default();
    let mut first_pass = true;
    let mut unread: Option<StoreError> = None;
    loop {
        let mut any_full = false;
        for part in 0..store.outbox_parts() {
            let batches = match store.outbox(part, PER_SHARD).await {
                Ok(batches) => batches,
                Err(err) => {
                    tracing::warn!(error = %err.report(), part, "outbox part unread; exporting the others");
                    unread.get_or_insert(err);
                    continue;
                }
            };
            let records: Vec<&LedgerRecord> =
                batches.iter().flat_map(|b| b.records.iter()).collect();
            if first_pass {
                moved.waiting += records.len() as u64;
            }
            if records.is_empty() && served.is_empty() {
                continue;
            }
            match record.export(&records, &served).await {
                Ok(new) => moved.inserted += new,
                Err(err) => return Err((err, served)),
            }
            served = Vec::new();
            store
                .exported(&batches)
                .await
                .map_err(|err| (err, Vec::new()))?;
            any_full |= batches.iter().any(|b| b.records.len() >= PER_SHARD);
        }
        first_pass = false;
        if !any_full || unread.is_some() {
            break;
        }
    }
    match unread {
        Some(err) => Err((err, served)),
        None => Ok(moved),
    }
}
