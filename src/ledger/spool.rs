//! The outage spool: while Redis is unreachable, verified events are appended to a bounded file
//! under `data_dir` (fsynced, checksummed lines) and acknowledged; when Redis answers again they
//! are replayed in order through the same atomic script, whose per-(token, type) dedupe makes a
//! replay (even a repeated one after a crash mid-replay) count each event exactly once. When the
//! spool is full, events are refused with 503, never dropped. While it holds anything, new
//! events queue behind it, so a view never overtakes its spooled render.
//!
//! A batch is spooled whole: the lines of all its shards go to the file in one write and one
//! fsync, cut back if either fails, so a batch answered 503 left nothing behind. The size limit
//! applies to batches as they arrive; a batch already sent to Redis whose shards then fail
//! there ([`Limit::Admitted`]) may take the spool past it, since its other shards are recorded
//! and refusing the rest would leave it half-recorded behind a 503. The overshoot is bounded by
//! the events in flight on the node. The file is read under the one policy of `store::lines` (a
//! damaged line before intact ones stops the start).
//!
//! Other nodes' exporters see only the outboxes, so the spool is listed in the system of record
//! (`record::outages`) before the first event is acknowledged into it and withdrawn once a
//! replay has emptied it: `as_of` on every node waits for it. A batch arriving while the spool
//! holds events and that cannot be listed is refused whole (503). A batch that went to Redis
//! first ([`Limit::Admitted`]) is spooled even unlisted: Redis may have run its scripts (a
//! missed deadline) or recorded its other shards, so a 503 could not claim nothing was
//! recorded. Then this node's own `as_of` waits for it and the listing is retried at every
//! drain and export round; other nodes cannot know of it until that succeeds, the price of
//! Redis and the record failing at the same moment.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::clock::Millis;
use crate::record::outages::Registration;
use crate::store::{lines, EventOutcome, EventWrite, Store, StoreError};

/// The spool's file under `data_dir`.
pub const FILE: &str = "spool.log";
#[derive(Serialize, Deserialize)]
struct Batch {
    shard: u32,
    now_ms: Millis,
    day: u32,
    events: Vec<EventWrite>,
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("the outage spool is full")]
    Full,
    /// Not full but unusable (see [`Spool::trouble`]).
    #[error("the outage spool takes no events: {0}")]
    Refusing(&'static str),
    #[error("cannot write the outage spool: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Damaged(#[from] lines::LogError),
    #[error("cannot list the outage spool in the system of record")]
    Unlisted(#[source] StoreError),
}

pub struct Spool {
    path: PathBuf,
    max_bytes: u64,
    /// Serialises appends and replays (a replay truncates the file).
    file: tokio::sync::Mutex<File>,
    bytes: AtomicU64,
    events: AtomicU64,
    damaged: std::sync::atomic::AtomicBool,
    /// Set when a replay found a damaged line (bytes changed while running): nothing more is
    /// replayed or emptied until an operator quarantines it.
    unreadable: std::sync::atomic::AtomicBool,
    /// Counts replays that emptied the spool: what a push writes belongs to the current
    /// generation, replayed by the next replay to succeed (see `SpendBoard::spool_replayed`).
    generation: AtomicU64,
    /// This node's entry among the record's outage spools (`None` in unit tests only).
    registration: Option<Registration>,
    /// The `now_ms` of the oldest batch waiting (`Millis::MAX` when empty): what a listing
    /// made while the spool holds batches says it holds them since.
    oldest_ms: AtomicI64,
}

/// Whether a push is held to `store.spool_max_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// A batch arriving: refused whole (`Full`) if it does not fit.
    Strict,
    /// The shards Redis failed on, of a batch whose other shards are recorded.
    Admitted,
}

impl Spool {
    /// Opens the spool, counting what a previous run left in it (replayed on the next drain).
    /// A damaged line with intact ones after it is an error naming the file and offset.
    pub fn open(
        data_dir: &Path,
        max_bytes: u64,
        registration: Option<Registration>,
    ) -> Result<Self, SpoolError> {
        let path = data_dir.join(FILE);
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)?;
        lines::lock(&file, &path)?;
        let (batches, tail) = batches(&path)?;
        let events = batches.iter().map(|b| b.events.len() as u64).sum();
        let oldest_ms = batches
            .iter()
            .map(|b| b.now_ms)
            .min()
            .unwrap_or(Millis::MAX);
        lines::cut_torn_tail(&file, &path, tail)?;
        Ok(Self {
            path,
            max_bytes,
            file: tokio::sync::Mutex::new(file),
            bytes: AtomicU64::new(tail.keep_len),
            events: AtomicU64::new(events),
            damaged: Default::default(),
            unreadable: Default::default(),
            generation: AtomicU64::new(0),
            registration,
            oldest_ms: AtomicI64::new(oldest_ms),
        })
    }

    /// Why a batch arriving now may not go to Redis, if it may not: a batch must not start unless
    /// the shards Redis could fail on may follow into the spool (see [`Limit::Admitted`]). Damage
    /// first (an operator must act), else no room.
    pub fn refusal(&self) -> Option<SpoolError> {
        match self.trouble() {
            Some(reason) => Some(SpoolError::Refusing(reason)),
            None => {
                (self.bytes.load(Ordering::SeqCst) >= self.max_bytes).then_some(SpoolError::Full)
            }
        }
    }

    /// Why the spool cannot keep what it is given, if it cannot: an append that could not be
    /// cut back, or damage found by a replay.
    pub fn trouble(&self) -> Option<&'static str> {
        if self.damaged.load(Ordering::SeqCst) {
            Some("outage spool damaged by a failed write")
        } else if self.unreadable.load(Ordering::SeqCst) {
            Some("outage spool holds a damaged line (see the log; statusads quarantine)")
        } else {
            None
        }
    }

    /// Events waiting for Redis.
    pub fn pending(&self) -> u64 {
        self.events.load(Ordering::SeqCst)
    }

    /// Whether [`Spool::drain`] has nothing to do: no events, and no listing in the record left
    /// to withdraw.
    pub fn idle(&self) -> bool {
        self.pending() == 0 && self.registration.as_ref().is_none_or(|r| !r.listed())
    }

    /// Appends a batch's events (grouped by shard) durably, in one write and one fsync, before
    /// they are acknowledged.
    pub async fn push(
        &self,
        now_ms: Millis,
        day: u32,
        shards: &[(u32, &[EventWrite])],
        limit: Limit,
    ) -> Result<u64, SpoolError> {
        let mut text = String::new();
        for (shard, events) in shards {
            let batch = Batch {
                shard: *shard,
                now_ms,
                day,
                events: events.to_vec(),
            };
            text.push_str(&lines::encode(
                &serde_json::to_string(&batch).map_err(std::io::Error::other)?,
            ));
        }
        let count: u64 = shards.iter().map(|(_, e)| e.len() as u64).sum();
        let mut file = self.file.lock().await;
        if self.damaged.load(Ordering::SeqCst) {
            return Err(SpoolError::Io(std::io::Error::other(
                "spool damaged by an earlier write error",
            )));
        }
        if limit == Limit::Strict
            && self.bytes.load(Ordering::SeqCst) + text.len() as u64 > self.max_bytes
        {
            return Err(SpoolError::Full);
        }
        if let Some(registration) = &self.registration {
            let since = now_ms.min(self.oldest_ms.load(Ordering::SeqCst));
            if let Err(err) = registration.ensure(since).await {
                if limit == Limit::Strict {
                    return Err(SpoolError::Unlisted(err));
                }
                // Refusing would answer 503 for a batch perhaps recorded (see the module's doc).
                tracing::error!(error = %err.report(), "outage spool not listed in the record: \
                    other nodes' reports may claim these events until a drain lists it");
            }
        }
        if let Err(failed) = lines::append_durably(&mut file, text.as_bytes()) {
            // A partial line left behind would hide every later batch: stop taking more.
            self.damaged.store(!failed.repaired, Ordering::SeqCst);
            return Err(SpoolError::Io(failed.error));
        }
        self.bytes.fetch_add(text.len() as u64, Ordering::SeqCst);
        self.events.fetch_add(count, Ordering::SeqCst);
        self.oldest_ms.fetch_min(now_ms, Ordering::SeqCst);
        Ok(self.generation.load(Ordering::SeqCst))
    }

    /// Replays everything into the store, oldest first, then empties the spool and withdraws its
    /// listing. Stops at the first store error (Redis still away); the next drain starts over,
    /// which dedupe makes safe.
    pub async fn drain(&self, store: &Store) -> Result<Drained, StoreError> {
        let file = self.file.lock().await;
        let mut drained = Drained::default();
        if self.events.load(Ordering::SeqCst) == 0 {
            self.withdraw().await;
            return Ok(drained);
        }
        // Damage found now (bytes changed since the start) stops the replay before anything
        // is applied or emptied: the intact batches after it were acknowledged too.
        let (batches, _) = batches(&self.path).map_err(|e| {
            self.unreadable.store(true, Ordering::SeqCst);
            StoreError::corrupt_from("outage spool", e)
        })?;
        // Listed already, unless a listing failed (see the module's doc) or an earlier build
        // spooled these: late is better than never.
        self.list().await;
        for batch in &batches {
            let outcomes = store
                .apply_events(batch.shard, batch.now_ms, batch.day, &batch.events)
                .await?;
            drained.replayed += batch.events.len() as u64;
            drained.over_cap += outcomes
                .iter()
                .filter(|o| **o == EventOutcome::CapReached)
                .count() as u64;
        }
        file.set_len(0)
            .and_then(|_| file.sync_all())
            .map_err(|e| StoreError::corrupt_from("outage spool", e))?;
        self.bytes.store(0, Ordering::SeqCst);
        self.events.store(0, Ordering::SeqCst);
        self.oldest_ms.store(Millis::MAX, Ordering::SeqCst);
        drained.generation = Some(self.generation.fetch_add(1, Ordering::SeqCst));
        self.withdraw().await;
        Ok(drained)
    }

    /// This node's id among the record's outage spools.
    pub fn node(&self) -> Option<&str> {
        self.registration.as_ref().map(Registration::node)
    }

    /// Holds the record's list (`listed`: the token of this node's row, as an export round read
    /// it) against what the spool holds: a row behind an empty spool (an earlier run's, an
    /// insert answered after its withdrawal) is withdrawn, and a spool holding events its row
    /// lacks (a withdrawal whose answer was lost, an operator who forgot a live node) is listed
    /// again. A list read before a change this node made since only repeats a write already
    /// done or removes a listing by a token no longer in use.
    pub async fn reconcile_listing(&self, listed: Option<&str>) {
        let Some(registration) = &self.registration else {
            return;
        };
        if (self.pending() > 0) == listed.is_some() {
            return;
        }
        let _file = self.file.lock().await;
        match (self.pending() > 0, listed) {
            (false, Some(token)) => {
                if let Err(err) = registration.withdraw_listed(token).await {
                    tracing::warn!(error = %err.report(), "empty outage spool still listed in the record; retrying");
                }
            }
            (true, None) => {
                registration.missing();
                self.list().await;
            }
            _ => {}
        }
    }

    /// Lists the batches waiting, best effort (called under the lock).
    async fn list(&self) {
        let oldest = self.oldest_ms.load(Ordering::SeqCst);
        if let (Some(registration), true) = (&self.registration, oldest < Millis::MAX) {
            if let Err(err) = registration.ensure(oldest).await {
                tracing::warn!(error = %err.report(), "outage spool not listed in the record; retrying");
            }
        }
    }

    /// Withdraws the listing of an empty spool (called under the lock, so no push lists it
    /// meanwhile); a failure leaves it for the next drain, `as_of` held until then.
    async fn withdraw(&self) {
        if let Some(registration) = &self.registration {
            if let Err(err) = registration.withdraw().await {
                tracing::warn!(error = %err.report(), "empty outage spool still listed in the record; retrying");
            }
        }
    }
}

/// What a replay of the spool did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Drained {
    pub replayed: u64,
    /// Renders acknowledged during the outage that the replay found over a frequency cap (an
    /// advertiser-wide cap spent meanwhile by another campaign's render, or a cap tightened):
    /// the cap holds, so they are recorded and billed nowhere.
    pub over_cap: u64,
    /// The generation replayed (everything written before the replay began): `None` when the
    /// spool was empty.
    pub generation: Option<u64>,
}

/// The batches of the spool file and where its intact part ends (see `store::lines`).
fn batches(path: &Path) -> Result<(Vec<Batch>, lines::Tail), lines::LogError> {
    let mut out = Vec::new();
    let tail = lines::read(path, |json| {
        out.push(serde_json::from_str::<Batch>(json).map_err(|e| e.to_string())?);
        Ok(())
    })?;
    Ok((out, tail))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capping::Retention;
    use crate::domain::campaign::FrequencyCap;
    use crate::domain::event::EventType;

    /// A data dir removed when the test ends, passed or not.
    fn scratch() -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix("statusads-spool-")
            .tempdir()
            .unwrap()
    }

    fn event() -> EventWrite {
        EventWrite {
            kind: EventType::Render,
            decision_id: "f".repeat(32),
            user: "u".repeat(128),
            campaign: format!("cmp_{}", "f".repeat(16)),
            advertiser: format!("adv_{}", "f".repeat(16)),
            price_micros: 2_000,
            token_ttl_ms: 1_200_000,
            user_ttl_ms: 90 * 86_400_000,
            campaign_caps: vec![FrequencyCap::new(1, 3600), FrequencyCap::new(3, 86_400)],
            advertiser_caps: Vec::new(),
            campaign_keep: Retention {
                count: 3,
                window_ms: 86_400_000,
            },
            advertiser_keep: Retention {
                count: 0,
                window_ms: 0,
            },
            daily_max: 10,
            client_at: "2026-11-26T10:00:00Z".into(),
            audience: Default::default(),
        }
    }

    #[test]
    fn caps_are_spooled_as_every_build_spooled_them() {
        // Earlier builds read (and wrote) the scripts' form: a node rolled back with a full
        // spool replays it.
        let spooled = serde_json::to_value(event()).unwrap();
        assert_eq!(spooled["campaign_caps"], "1:3600,3:86400");
        assert_eq!(spooled["advertiser_caps"], "");
        let read: EventWrite = serde_json::from_value(spooled).unwrap();
        assert_eq!(read.campaign_caps, event().campaign_caps);
        assert!(read.advertiser_caps.is_empty());
    }

    /// The record lists the spool from before its first event until a replay has emptied it.
    /// Export rounds withdraw a row behind an empty spool (an earlier run's, an insert answered
    /// after its withdrawal) and list again a spool whose row went missing; a removal names its
    /// listing, so one answered late leaves a later listing in place.
    #[tokio::test]
    async fn the_spool_is_listed_from_its_first_event_until_replayed() {
        use crate::record::outages::OutageSpool;
        use crate::record::Record;
        use crate::store::embedded::EmbeddedStore;
        use std::sync::Arc;

        let scratch = scratch();
        let dir = scratch.path();
        let hot = dir.join("hot");
        std::fs::create_dir_all(&hot).unwrap();
        let store = Store::Embedded(EmbeddedStore::open(&hot).unwrap());
        let record = Arc::new(Record::open("", dir).await.unwrap());
        let node = Registration::open(record.clone(), dir)
            .unwrap()
            .node()
            .to_owned();
        let listed = || async { record.outage_spools().await.unwrap() };
        let since = |listed: Vec<OutageSpool>| {
            listed
                .into_iter()
                .map(|l| (l.node, l.since_ms))
                .collect::<Vec<_>>()
        };

        // An earlier run's row: the first export round withdraws it.
        record
            .register_outage_spool(&node, 5, "earlier")
            .await
            .unwrap();
        let registration = Registration::open(record.clone(), dir).unwrap();
        assert_eq!(registration.node(), node, "the node keeps its id");
        let spool = Spool::open(dir, u64::MAX, Some(registration)).unwrap();
        spool.reconcile_listing(Some("earlier")).await;
        assert!(listed().await.is_empty());
        assert!(spool.idle());

        let event = [event()];
        spool
            .push(1_000, 0, &[(1, &event)], Limit::Strict)
            .await
            .unwrap();
        assert_eq!(since(listed().await), [(node.clone(), 1_000)]);
        spool
            .push(2_000, 0, &[(2, &event)], Limit::Strict)
            .await
            .unwrap();
        assert_eq!(
            since(listed().await),
            [(node.clone(), 1_000)],
            "listed since the first event"
        );
        let first_listing = listed().await[0].token.clone();
        assert_eq!(spool.drain(&store).await.unwrap().replayed, 2);
        assert!(listed().await.is_empty());
        assert!(spool.idle());

        spool
            .push(3_000, 0, &[(1, &event)], Limit::Strict)
            .await
            .unwrap();
        spool
            .push(4_000, 0, &[(1, &event)], Limit::Strict)
            .await
            .unwrap();
        // The first listing's removal, answered late, arrives now: this one stays.
        record
            .forget_outage_listing(&node, &first_listing)
            .await
            .unwrap();
        assert_eq!(since(listed().await), [(node.clone(), 3_000)]);

        // An operator forgot this live node: the next export round lists it again, since its
        // oldest batch.
        assert!(record.forget_outage_spool(&node).await.unwrap());
        spool.reconcile_listing(None).await;
        assert_eq!(since(listed().await), [(node.clone(), 3_000)]);
        spool.drain(&store).await.unwrap();
        assert!(listed().await.is_empty());

        // An insert answered too late lands after the withdrawal: the round that reads it
        // withdraws it.
        record
            .register_outage_spool(&node, 5_000, "late")
            .await
            .unwrap();
        assert!(spool.idle(), "this node believes nothing is listed");
        spool.reconcile_listing(Some("late")).await;
        assert!(listed().await.is_empty());

        // A listing keeps its oldest instant, and the newest token names it.
        for (at, token) in [(3_000, "a"), (2_000, "b"), (4_000, "c")] {
            record
                .register_outage_spool("node_other", at, token)
                .await
                .unwrap();
        }
        let other = listed().await;
        assert_eq!((other[0].since_ms, other[0].token.as_str()), (2_000, "c"));
    }

    #[tokio::test]
    async fn a_batch_that_does_not_fit_is_refused_whole() {
        let scratch = scratch();
        let dir = scratch.path();
        let event = [event()];
        let line = lines::encode(
            &serde_json::to_string(&Batch {
                shard: 1,
                now_ms: 0,
                day: 0,
                events: event.to_vec(),
            })
            .unwrap(),
        )
        .len() as u64;
        // Room for one shard's line, not for two.
        let spool = Spool::open(dir, line + line / 2, None).unwrap();
        let refused = spool
            .push(0, 0, &[(1, &event), (2, &event)], Limit::Strict)
            .await;
        assert!(matches!(refused, Err(SpoolError::Full)), "{refused:?}");
        assert_eq!(std::fs::metadata(dir.join(FILE)).unwrap().len(), 0);
        assert_eq!(spool.pending(), 0);
        spool
            .push(0, 0, &[(1, &event)], Limit::Strict)
            .await
            .unwrap();
        assert_eq!(spool.pending(), 1);
    }

    #[tokio::test]
    async fn an_admitted_batch_may_finish_past_the_limit() {
        let scratch = scratch();
        let dir = scratch.path();
        let event = [event()];
        let spool = Spool::open(dir, 10, None).unwrap();
        assert!(spool.refusal().is_none());
        spool
            .push(0, 0, &[(1, &event), (2, &event)], Limit::Admitted)
            .await
            .unwrap();
        assert_eq!(spool.pending(), 2);
        assert!(
            matches!(spool.refusal(), Some(SpoolError::Full)),
            "past the limit, new batches are refused"
        );
        let refused = spool.push(0, 0, &[(3, &event)], Limit::Strict).await;
        assert!(matches!(refused, Err(SpoolError::Full)), "{refused:?}");
    }

    #[tokio::test]
    async fn a_damaged_middle_batch_stops_the_start_and_nothing_is_emptied() {
        let scratch = scratch();
        let dir = scratch.path();
        let event = [event()];
        {
            let spool = Spool::open(dir, u64::MAX, None).unwrap();
            for shard in 0..3 {
                spool
                    .push(0, 0, &[(shard, &event)], Limit::Strict)
                    .await
                    .unwrap();
            }
        }
        let path = dir.join(FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        let second = bytes.iter().position(|&b| b == b'\n').unwrap() + 1;
        bytes[second + 20] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let err = Spool::open(dir, u64::MAX, None).err().expect("refused");
        let message = err.to_string();
        assert!(message.contains(&format!("byte {second}")), "{message}");
        assert!(message.contains("spool.log"), "{message}");
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "nothing cut");
        lines::quarantine(&path).unwrap();
        let spool = Spool::open(dir, u64::MAX, None).unwrap();
        assert_eq!(
            spool.pending(),
            2,
            "the intact batches after the damage are kept"
        );
    }
}
