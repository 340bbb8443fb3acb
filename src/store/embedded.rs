//! The embedded backend: one node, no Redis. State lives in process memory and every change is
//! first appended to a journal under `data_dir` (`journal.log`), fsynced before the caller is
//! answered. At start the journal is replayed through the same code that applied it, so caps,
//! counters, spend and the catalog come back exactly (`now` is recorded with each entry, which
//! makes replay deterministic).
//!
//! Group commit: a write appends its line under the state lock, then waits (without the lock)
//! until a dedicated thread's next fsync covers it; one fsync serves every write in between.
//! Every answer that depends on the journal waits for the lines before it, so nothing is
//! acknowledged before it is durable.
//!
//! Journal lines are `<crc32 hex> <json>`, read back under the one policy of `store::lines`: a
//! torn tail (a crash mid-write, never acknowledged) is cut; a damaged line followed by intact
//! ones stops the start, naming the byte offset, until `statusads quarantine` moves it aside.
//! A failed fsync cuts the journal back to the last synced line before anyone is answered, so
//! an answer of 503 never hides a change that a restart would bring back.
//!
//! The per-user semantics mirror `redis/scripts/*.lua` line for line; the contract tests run the
//! same behaviour suite against both backends.

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::codec::{
    self, advertiser_field, campaign_field, decode_caps, decode_stamps, encode_caps, encode_stamps,
    hide_field, reservation_expiry, reservation_field, SessionValue,
};
use super::{
    CatalogData, ClickOwner, CommitOutcome, ConversionOutcome, ConversionRecord, ConversionWrite,
    DecisionCommit, EventOutcome, EventWrite, MessageCommit, MessageOutcome, SettleOutcome,
    SettleWrite, StoreError, StoredMessage, StoredSession, UserClick, UserLocator, UserRecords,
    UserView,
};
use crate::capping::{
    self, count_since, render_stamp, window_now, within_caps, Reservation, UserState, DAY_MS,
    HIDE_MS,
};
use crate::clock::Millis;
use crate::domain::audience::Audience;
use crate::domain::campaign::Spend;
use crate::domain::event::EventType;
use crate::domain::ids::CampaignId;
use crate::ledger::reconcile::{LedgerKind, LedgerRecord};
use crate::messaging::rules::{price_at, within_limit, Schedule};
use crate::messaging::Conversation;

const JOURNAL: &str = "journal.log";
const SNAPSHOT: &str = "snapshot.json";
/// Default of `store.journal_compact_bytes`.
pub const COMPACT_BYTES: u64 = 64 << 20;
const REFUSED: u32 = 32;

/// One journaled change: everything needed to apply it again.
#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Entry {
    Catalog {
        kind: String,
        id: String,
        json: String,
    },
    Decision {
        user: String,
        /// The session id itself, as earlier builds wrote it (this one writes `session_field`).
        session: Option<String>,
        /// The session's user-hash field: a hash of its id, which the store keeps instead of
        /// the id (entries of earlier builds have `session`).
        #[serde(default)]
        session_field: Option<String>,
        now_ms: Millis,
        day: u32,
        reservations: Vec<JournaledReservation>,
        session_after: String,
        /// How long the user's hash must live now (entries of earlier builds have none: see
        /// `State::user_to_write`).
        #[serde(default)]
        user_ttl_ms: Option<Millis>,
    },
    Events {
        now_ms: Millis,
        day: u32,
        events: Vec<JournaledEvent>,
    },
    Conversion {
        decision_id: String,
        advertiser: String,
        kind: String,
        /// The UTC day of `at_ms`: unused here, kept for earlier builds reading this journal
        /// (a rollback).
        #[serde(default)]
        day: u32,
        at_ms: Millis,
        /// Listed by the conversions API (entries of earlier builds are not).
        #[serde(default)]
        click_id: Option<String>,
        /// The user-hash field and until when a conversation suppresses the campaign.
        #[serde(default)]
        suppress: Option<(String, Millis)>,
    },
    /// A rated business message. Entries of earlier builds carry a final `result` and its
    /// `price_micros`; this build's carry the `stored` message whose charge is decided on apply
    /// (the month's count moves), exactly as `message.lua` does.
    Message {
        advertiser: String,
        user: String,
        message_id: String,
        new_state: String,
        #[serde(default)]
        result: String,
        #[serde(default)]
        category: String,
        #[serde(default)]
        country: String,
        #[serde(default)]
        price_micros: i64,
        month: u32,
        #[serde(default)]
        stored: Option<String>,
        #[serde(default)]
        deliver: bool,
        /// The template was business-initiated: its user counts towards the limit.
        #[serde(default)]
        initiated: bool,
        /// When it was written (entries of earlier builds have none: see `State::sweep`).
        #[serde(default)]
        written_ms: Option<Millis>,
    },
    MessageStatus {
        advertiser: String,
        message_id: String,
        void: bool,
    },
    /// A user's right of erasure: every record of theirs goes (see `State::erase_user`).
    EraseUser { user: String },
    /// The first line of a journal begun by compaction: the snapshot of generation
    /// `generation - 1` holds everything before it. A journal without it is generation 0.
    Generation { generation: u64 },
}

/// A reservation as journaled: `(field, value, campaign)` of the user hash (see `capping`), or
/// `(encoded, campaign)` as builds before the compact user hash wrote it, read on replay so
/// that their journals keep working.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
enum JournaledReservation {
    Fields(String, String, String),
    Encoded(String, String),
}

impl JournaledReservation {
    /// `(field, value, campaign)`; `None` for an earlier entry that does not parse.
    fn fields(&self) -> Option<(String, String, &str)> {
        match self {
            Self::Fields(field, value, campaign) => {
                Some((field.clone(), value.clone(), campaign.as_str()))
            }
            Self::Encoded(encoded, campaign) => {
                let mut parts = encoded.split('|');
                let reservation = Reservation {
                    decision_id: parts.next()?.to_owned(),
                    campaign: parts.next()?.to_owned(),
                    advertiser: parts.next()?.to_owned(),
                    expires_ms: parts.next()?.parse().ok()?,
                };
                Some((reservation.field(), reservation.value(), campaign.as_str()))
            }
        }
    }
}

#[derive(Default, Serialize, Deserialize)]
struct Click {
    advertiser: String,
    campaign: String,
    /// The clicking user (a conversation may suppress the campaign for them).
    user: String,
    conversation: bool,
    /// Like the Redis key's TTL: a click is attributable for `CLICK_TTL_MS`.
    expires_ms: Millis,
    /// `message` conversions so far (each one's record id is numbered, as in conversion.lua).
    messages: u64,
}

#[derive(Serialize, Deserialize, Clone)]
struct JournaledEvent {
    kind: EventType,
    decision_id: String,
    user: String,
    campaign: String,
    advertiser: String,
    price_micros: i64,
    token_ttl_ms: Millis,
    campaign_caps: String,
    advertiser_caps: String,
    campaign_keep: (u32, Millis),
    advertiser_keep: (u32, Millis),
    daily_max: u32,
    #[serde(default)]
    audience: Audience,
    /// As `EventWrite::user_ttl_ms` (entries of earlier builds have none: derived from what
    /// they carry, as that build's Redis TTL was).
    #[serde(default)]
    user_ttl_ms: Option<Millis>,
}

impl JournaledEvent {
    fn user_ttl_ms(&self) -> Millis {
        self.user_ttl_ms.unwrap_or_else(|| {
            capping::user_ttl_ms(
                self.campaign_keep.1.max(self.advertiser_keep.1),
                self.kind.hides(),
            )
        })
    }
}

/// The hot state, also as a snapshot (see [`EmbeddedStore::compact`]).
#[derive(Default, Serialize, Deserialize)]
struct State {
    catalog_version: u64,
    /// kind -> id -> (catalog version of its last change, JSON)
    catalog: HashMap<String, HashMap<String, (u64, String)>>,
    /// user -> fields, the same fields as the Redis user hash.
    users: HashMap<String, HashMap<String, String>>,
    /// user -> when their hash expires (ms), as the Redis key's TTL: every write extends it,
    /// never shortens it, and an expired user is a new one.
    #[serde(default)]
    user_expires: HashMap<String, Millis>,
    /// decision id -> (flags, expires_ms)
    tokens: HashMap<String, (u32, Millis)>,
    spend_total: HashMap<String, i64>,
    #[serde(with = "pairs")]
    spend_day: HashMap<(u32, String), i64>,
    clicks: HashMap<String, Click>,
    /// (advertiser, user) -> encoded conversation
    #[serde(with = "pairs")]
    conversations: HashMap<(String, String), String>,
    /// (advertiser, message id) -> stored result
    #[serde(with = "pairs")]
    messages: HashMap<(String, String), String>,
    /// (advertiser, message id) -> when it was written: it is forgotten `MESSAGE_DEDUPE_MS`
    /// after, as its Redis key expires.
    #[serde(default, with = "pairs")]
    message_written: HashMap<(String, String), Millis>,
    /// (month, `<advertiser>|<counter>`) -> messages counted (volume tiers, service allowance)
    #[serde(with = "pairs")]
    message_counts: HashMap<(u32, String), u64>,
    /// (day, `<advertiser>|<campaign>|<click id>|<type>|<at_ms>`): the conversion log of an
    /// earlier build's snapshot, until its click ids are moved into the record.
    #[serde(default)]
    conversion_log: Vec<(u32, String)>,
    /// advertiser -> user -> latest business-initiated template (ms)
    initiated: HashMap<String, HashMap<String, Millis>>,
    /// Ledger records not yet in the system of record, oldest first, each with the journal line
    /// (of this process; 0 = replayed at start, so on disk) whose entry made it: the exporter
    /// takes only records whose line is on disk.
    outbox: VecDeque<(u64, LedgerRecord)>,
    /// The line of the entry being applied (see `outbox`).
    #[serde(skip)]
    line: u64,
}

pub struct EmbeddedStore {
    inner: Arc<Mutex<(State, File)>>,
    data_dir: std::path::PathBuf,
    /// The journal's generation (see `Entry::Generation`), changed under `inner`.
    generation: AtomicU64,
    /// The journal length the last fsync covered (a failed fsync cuts back to it).
    synced_len: Arc<AtomicU64>,
    compact_bytes: u64,
    /// Set when a write could not be cut back or an fsync failed: no further writes.
    damaged: Arc<AtomicBool>,
    /// Group commit: lines written so far (under `inner`), and the count known to be on disk.
    written: Arc<AtomicU64>,
    synced: tokio::sync::watch::Receiver<u64>,
    wake: Arc<(parking_lot::Mutex<bool>, parking_lot::Condvar)>,
    /// The group-commit thread: it holds the journal (and its lock) until it ends.
    sync_thread: Option<std::thread::JoinHandle<()>>,
    /// When [`EmbeddedStore::sweep`] last ran (ms; as `i64` bits).
    swept_at: std::sync::atomic::AtomicI64,
    /// When the daily compaction last ran, as the snapshot keeps it (`Millis::MIN`: never), or
    /// a minute less than a day before its next try after a failed one (ms).
    compacted_at: std::sync::atomic::AtomicI64,
}

const SWEEP_EVERY_MS: Millis = 60_000;
/// The expiry given to a user's hash that has none (see `State::user_to_write`).
const LEGACY_USER_TTL_MS: Millis = capping::UNEXPIRING_USER_TTL_MS;

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        {
            let (closed, signal) = &*self.wake;
            *closed.lock() = true;
            signal.notify_one();
        }
        // Joined so the journal's lock is released when the store is gone: the next open of
        // this data_dir (a restart in process) must not find it still held.
        if let Some(thread) = self.sync_thread.take() {
            let _ = thread.join();
        }
    }
}

/// The group-commit thread: one fsync covers every line written since the last one, then
/// wakes everyone waiting for those lines. A failed fsync fails them all (never acknowledged):
/// the journal is cut back to its last synced length, so none of their lines can come back at
/// the next start, and the store takes no more writes.
fn sync_forever(
    file: File,
    inner: Arc<Mutex<(State, File)>>,
    written: Arc<AtomicU64>,
    synced: tokio::sync::watch::Sender<u64>,
    damaged: Arc<AtomicBool>,
    wake: Arc<(parking_lot::Mutex<bool>, parking_lot::Condvar)>,
    synced_len: Arc<AtomicU64>,
) {
    let (closed, signal) = &*wake;
    synced_len.store(
        file.metadata().map(|m| m.len()).unwrap_or(0),
        Ordering::SeqCst,
    );
    loop {
        {
            let mut closed = closed.lock();
            while !*closed && written.load(Ordering::SeqCst) == *synced.borrow() {
                signal.wait_for(&mut closed, std::time::Duration::from_millis(50));
            }
            if *closed {
                return;
            }
        }
        // Lines and length read together: writers append under `inner`.
        let (target, target_len) = {
            let locked = inner.lock();
            let len = locked.1.metadata().map(|m| m.len());
            (written.load(Ordering::SeqCst), len)
        };
        match target_len.and_then(|len| file.sync_data().map(|()| len)) {
            Ok(len) => synced_len.store(len, Ordering::SeqCst),
            Err(err) => {
                let locked = inner.lock();
                damaged.store(true, Ordering::SeqCst);
                match super::lines::cut_back(&locked.1, synced_len.load(Ordering::SeqCst)) {
                    Ok(()) => tracing::error!(
                        error = %err,
                        "journal fsync failed; unsynced lines cut off, refusing further writes (restart)"
                    ),
                    Err(cut) => tracing::error!(
                        error = %err,
                        cut_error = %cut,
                        "journal fsync failed and the unsynced lines could not be cut off; refusing further writes"
                    ),
                }
            }
        }
        synced.send_replace(target);
    }
}

impl EmbeddedStore {
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(data_dir, COMPACT_BYTES)
    }

    /// Opens the store under `data_dir`: the last snapshot, then the journal after it. The
    /// exporter compacts the journal once it is longer than `compact_bytes`.
    pub fn open_with(data_dir: &Path, compact_bytes: u64) -> Result<Self, StoreError> {
        let io = |e: std::io::Error| {
            StoreError::corrupt_from(
                format!("config key `store.data_dir`: {}", data_dir.display()),
                e,
            )
        };
        std::fs::create_dir_all(data_dir).map_err(io)?;
        let path = data_dir.join(JOURNAL);
        let (covered, mut state, compacted_ms) = match read_snapshot(&data_dir.join(SNAPSHOT))? {
            Some(snapshot) => (
                Some(snapshot.generation),
                snapshot.state,
                snapshot.compacted_ms,
            ),
            None => (None, State::default(), None),
        };
        let mut journal_generation = None;
        let mut skip = false;
        // The one reading policy (`lines`): a torn tail is cut; a damaged line with intact
        // records after it, or an intact entry this build cannot read, stops the start.
        let tail = super::lines::read(&path, |json| {
            let entry: Entry = serde_json::from_str(json).map_err(|err| err.to_string())?;
            if journal_generation.is_none() {
                let generation = match entry {
                    Entry::Generation { generation } => generation,
                    _ => 0,
                };
                journal_generation = Some(generation);
                skip = match covered {
                    // A compaction stopped before it emptied this journal: the snapshot has it.
                    Some(snapshot) if generation <= snapshot => true,
                    Some(snapshot) if generation == snapshot + 1 => false,
                    None if generation == 0 => false,
                    _ => {
                        return Err(format!(
                            "journal generation {generation} does not follow the snapshot \
                             ({covered:?}); is {SNAPSHOT} missing or from another data_dir?"
                        ))
                    }
                };
            }
            if !skip {
                state.apply(&entry);
            }
            Ok(())
        })
        .map_err(|err| StoreError::corrupt_from("journal", err))?;
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        super::lines::lock(&file, &path).map_err(io)?;
        super::lines::cut_torn_tail(&file, &path, tail).map_err(io)?;
        let generation = match (covered, journal_generation) {
            (Some(snapshot), found) if skip || found.is_none() => {
                // Begin the journal after the snapshot (what was here is in it).
                file.set_len(0).map_err(io)?;
                begin_generation(&mut file, snapshot + 1).map_err(io)?;
                snapshot + 1
            }
            (_, found) => found.unwrap_or(0),
        };
        let (sync_file, damaged, written) = (
            file.try_clone().map_err(io)?,
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
        );
        let (synced_tx, synced) = tokio::sync::watch::channel(0);
        let wake = Arc::new((parking_lot::Mutex::new(false), parking_lot::Condvar::new()));
        let synced_len = Arc::new(AtomicU64::new(file.metadata().map_err(io)?.len()));
        let inner = Arc::new(Mutex::new((state, file)));
        let (i, w, d, k, l) = (
            inner.clone(),
            written.clone(),
            damaged.clone(),
            wake.clone(),
            synced_len.clone(),
        );
        let sync_thread = std::thread::Builder::new()
            .name("journal-sync".into())
            .spawn(move || sync_forever(sync_file, i, w, synced_tx, d, k, l))
            .map_err(io)?;
        Ok(Self {
            inner,
            data_dir: data_dir.to_path_buf(),
            generation: AtomicU64::new(generation),
            synced_len,
            compact_bytes,
            damaged,
            written,
            synced,
            wake,
            sync_thread: Some(sync_thread),
            swept_at: std::sync::atomic::AtomicI64::new(Millis::MIN / 2),
            compacted_at: std::sync::atomic::AtomicI64::new(compacted_ms.unwrap_or(Millis::MIN)),
        })
    }

    /// What the exporter runs after each round: expiry, then compaction once the journal is
    /// `compact_bytes` long and at least daily. The journal and the snapshot hold what the hot
    /// state held when they were written, so state that expired (sessions, reservations, users
    /// past their rules) leaves the disk within a day of leaving memory.
    /// The day counts from the last compaction, kept in the snapshot, so restarts do not
    /// postpone it (a data dir with no such snapshot is due at once).
    pub fn maintain(&self, now_ms: Millis) -> Result<(), StoreError> {
        let last = self.compacted_at.load(Ordering::SeqCst);
        let daily = last == Millis::MIN || now_ms - last >= DAY_MS;
        if daily {
            // Whenever the once-a-minute sweep last ran: the snapshot holds nothing expired.
            self.swept_at.store(now_ms, Ordering::SeqCst);
            self.inner.lock().0.sweep(now_ms);
        } else {
            self.sweep(now_ms);
        }
        let compacted = self.compact_over(if daily { 0 } else { self.compact_bytes }, now_ms);
        match compacted {
            Ok(true) => self.compacted_at.store(now_ms, Ordering::SeqCst),
            // Lines still to be fsynced, a damaged journal, a failed write: try again in a
            // minute, not at every round with a full sweep each time.
            _ if daily => self
                .compacted_at
                .store(now_ms - DAY_MS + SWEEP_EVERY_MS, Ordering::SeqCst),
            _ => {}
        }
        compacted.map(drop)
    }

    /// Once the journal is at least `min_bytes` long: writes the whole hot state (and the
    /// outbox) as a snapshot, then begins the journal again after it, so a start replays one
    /// snapshot and a short journal instead of all history. Holds the state lock throughout
    /// (writers wait). A crash at any point leaves a start that reads the same state: the
    /// snapshot is renamed into place whole, and a journal it covers is skipped (its
    /// generation says so). Answers whether it compacted. `compacted_ms`: what the snapshot
    /// records as the last daily compaction (`Millis::MIN`: none).
    fn compact_over(&self, min_bytes: u64, compacted_ms: Millis) -> Result<bool, StoreError> {
        let mut locked = self.inner.lock();
        let (state, file) = &mut *locked;
        let io = |e: std::io::Error| StoreError::unavailable_from("journal compaction", e);
        let len = file.metadata().map_err(io)?.len();
        // Only with every line on disk: a line still to be fsynced might yet be cut back.
        if len < min_bytes
            || self.damaged.load(Ordering::SeqCst)
            || self.written.load(Ordering::SeqCst) != *self.synced.borrow()
        {
            return Ok(false);
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let compacted_ms = (compacted_ms != Millis::MIN).then_some(compacted_ms);
        let json = serde_json::to_string(&SnapshotRef {
            generation,
            state,
            compacted_ms,
        })
        .map_err(|e| StoreError::corrupt_from("snapshot encoding", e))?;
        let target = self.data_dir.join(SNAPSHOT);
        let staged = self.data_dir.join(format!("{SNAPSHOT}.tmp"));
        (|| {
            let mut out = File::create(&staged)?;
            std::io::Write::write_all(&mut out, super::lines::encode(&json).as_bytes())?;
            out.sync_all()?;
            std::fs::rename(&staged, &target)
        })()
        .map_err(io)?;
        // From here the snapshot may be what the next start reads, and it covers this
        // journal: a line acknowledged into this journal now would be skipped then. So any
        // failure before the next generation has begun takes no more writes (restart).
        let switched = (|| {
            File::open(&self.data_dir)?.sync_all()?;
            file.set_len(0)?;
            begin_generation(file, generation + 1)?;
            file.metadata().map(|m| m.len())
        })();
        let len_after = match switched {
            Ok(len) => len,
            Err(err) => {
                self.damaged.store(true, Ordering::SeqCst);
                tracing::error!(error = %err, "journal compaction failed after the snapshot; refusing further writes (restart)");
                return Err(io(err));
            }
        };
        self.synced_len.store(len_after, Ordering::SeqCst);
        self.generation.store(generation + 1, Ordering::SeqCst);
        tracing::info!(
            journal_bytes = len,
            snapshot_bytes = json.len(),
            "compacted the journal into a snapshot"
        );
        Ok(true)
    }

    /// Waits until every line written up to `line` is on disk (group commit).
    async fn durable(&self, line: u64) -> Result<(), StoreError> {
        let mut synced = self.synced.clone();
        if *synced.borrow() < line {
            // Notified under the mutex the sync thread checks and waits under, so the wake-up
            // cannot fall between its check and its wait.
            {
                let _checking = self.wake.0.lock();
                self.wake.1.notify_one();
            }
            synced
                .wait_for(|on_disk| *on_disk >= line)
                .await
                .map_err(|_| StoreError::unavailable("journal sync stopped"))?;
        }
        if self.damaged.load(Ordering::SeqCst) {
            return Err(StoreError::unavailable("journal fsync failed; restart"));
        }
        Ok(())
    }

    /// Journals then applies under one lock, so the journal order is the apply order; `guard`
    /// decides (under the same lock) whether the entry happens at all. Either way the answer
    /// waits until every line written so far is on disk: an outcome that depends on an earlier
    /// entry (a duplicate, a refused compare-and-set) is never given before that entry is durable.
    async fn commit<T>(
        &self,
        entry: Entry,
        guard: impl FnOnce(&State) -> bool,
        apply: impl FnOnce(&mut State, &Entry) -> T,
    ) -> Result<Option<T>, StoreError> {
        let (result, line) = {
            let mut locked = self.inner.lock();
            let (state, file) = &mut *locked;
            if !guard(state) {
                (None, self.written.load(Ordering::SeqCst))
            } else {
                if self.damaged.load(Ordering::SeqCst) {
                    return Err(StoreError::unavailable(
                        "journal damaged by an earlier write error; restart",
                    ));
                }
                let json = serde_json::to_string(&entry)
                    .map_err(|e| StoreError::corrupt_from("journal entry encoding", e))?;
                if let Err(failed) =
                    super::lines::append(file, super::lines::encode(&json).as_bytes())
                {
                    if !failed.repaired {
                        self.damaged.store(true, Ordering::SeqCst);
                    }
                    return Err(StoreError::unavailable_from(
                        "journal write failed",
                        failed.error,
                    ));
                }
                state.line = self.written.load(Ordering::SeqCst) + 1;
                (
                    Some(apply(state, &entry)),
                    self.written.fetch_add(1, Ordering::SeqCst) + 1,
                )
            }
        };
        self.durable(line).await?;
        Ok(result)
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    pub fn write_trouble(&self) -> Option<&'static str> {
        self.damaged
            .load(Ordering::SeqCst)
            .then_some("journal damaged by a failed write or fsync; restart")
    }

    /// The catalog an earlier build's journal holds (its catalog entries, replayed at open),
    /// read once to move it into the system of record (`record::migration`). New catalog
    /// writes go to the record, never to the journal.
    pub async fn load_catalog(&self) -> Result<CatalogData, StoreError> {
        let guard = self.inner.lock();
        let state = &guard.0;
        Ok(CatalogData {
            version: state.catalog_version,
            advertisers: decode_records(state, "advertiser", 0)?,
            campaigns: decode_records(state, "campaign", 0)?,
            creatives: decode_records(state, "creative", 0)?,
            ..CatalogData::default()
        })
    }

    /// Mirrors `reserve.lua`: commits under the lock if the live state admits the decision,
    /// else answers that live state.
    pub async fn commit_decision(
        &self,
        commit: &DecisionCommit<'_>,
    ) -> Result<CommitOutcome, StoreError> {
        let entry = Entry::Decision {
            user: commit.user.to_owned(),
            session: None,
            session_field: commit.session.map(codec::session_field),
            now_ms: commit.now_ms,
            day: commit.day,
            reservations: commit
                .reservations
                .iter()
                .map(|r| JournaledReservation::Fields(r.field(), r.value(), r.campaign.clone()))
                .collect(),
            session_after: commit.session_after.as_str().to_owned(),
            user_ttl_ms: Some(commit.user_ttl_ms),
        };
        let mut refused = None;
        let committed = self
            .commit(
                entry,
                |state| {
                    let view = state.view(commit.user, commit.session, commit.now_ms);
                    let holds = commit
                        .session
                        .is_none_or(|_| view.session.as_ref() == commit.session_seen)
                        && view.state.admits(&commit.proof, commit.now_ms);
                    if !holds {
                        refused = Some(view);
                    }
                    holds
                },
                State::apply,
            )
            .await?;
        Ok(match (committed, refused) {
            (Some(()), _) => CommitOutcome::Committed,
            (None, view) => CommitOutcome::Stale(Box::new(view.unwrap_or_default())),
        })
    }

    /// Journals the events as one entry (all of them or none); the shard does not matter here.
    pub async fn apply_events<'a>(
        &self,
        _shard: u32,
        now_ms: Millis,
        day: u32,
        events: impl IntoIterator<Item = &'a EventWrite>,
    ) -> Result<Vec<EventOutcome>, StoreError> {
        let entry = Entry::Events {
            now_ms,
            day,
            events: events
                .into_iter()
                .map(|e| JournaledEvent {
                    kind: e.kind,
                    decision_id: e.decision_id.clone(),
                    user: e.user.clone(),
                    campaign: e.campaign.clone(),
                    advertiser: e.advertiser.clone(),
                    price_micros: e.price_micros,
                    token_ttl_ms: e.token_ttl_ms,
                    user_ttl_ms: Some(e.user_ttl_ms),
                    campaign_caps: encode_caps(&e.campaign_caps),
                    advertiser_caps: encode_caps(&e.advertiser_caps),
                    campaign_keep: (e.campaign_keep.count, e.campaign_keep.window_ms),
                    advertiser_keep: (e.advertiser_keep.count, e.advertiser_keep.window_ms),
                    daily_max: e.daily_max,
                    audience: e.audience.clone(),
                })
                .collect(),
        };
        let outcomes = self
            .commit(
                entry,
                |_| true,
                |state, entry| match entry {
                    Entry::Events {
                        now_ms,
                        day,
                        events,
                    } => state.apply_events(*now_ms, *day, events),
                    _ => unreachable!("an events entry"),
                },
            )
            .await?;
        Ok(outcomes.unwrap_or_default())
    }

    pub async fn spend(
        &self,
        day: u32,
    ) -> Result<hashbrown::HashMap<CampaignId, Spend>, StoreError> {
        let guard = self.inner.lock();
        let state = &guard.0;
        let mut out: hashbrown::HashMap<CampaignId, Spend> = hashbrown::HashMap::new();
        for (campaign, total) in &state.spend_total {
            if let Some(id) = CampaignId::parse(campaign) {
                out.entry(id).or_default().total_micros += total;
            }
        }
        for ((d, campaign), micros) in &state.spend_day {
            if let (true, Some(id)) = (*d == day, CampaignId::parse(campaign)) {
                out.entry(id).or_default().today_micros += micros;
            }
        }
        Ok(out)
    }
}

impl EmbeddedStore {
    /// Drops what has expired by `now_ms` (see `State::sweep`), at most once a minute: it
    /// walks every user. Not journaled: replaying the journal and sweeping again gives the
    /// same state, and what has expired reads as absent meanwhile.
    pub fn sweep(&self, now_ms: Millis) {
        if now_ms - self.swept_at.load(Ordering::SeqCst) < SWEEP_EVERY_MS {
            return;
        }
        self.swept_at.store(now_ms, Ordering::SeqCst);
        self.inner.lock().0.sweep(now_ms);
    }

    pub async fn user_records(&self, who: &UserLocator<'_>) -> Result<UserRecords, StoreError> {
        Ok(self.inner.lock().0.user_records(who.user, who.now_ms))
    }

    /// Journals the erasure, applies it, then compacts so that no journal line written before
    /// it still names the user (compaction waits for every line to be on disk: retried briefly
    /// while other writes are in flight). It writes the snapshot on this worker thread: an
    /// erasure is a rare operator request, and the embedded backend serves one node.
    pub async fn erase_user(&self, who: &UserLocator<'_>) -> Result<(), StoreError> {
        let entry = Entry::EraseUser {
            user: who.user.to_owned(),
        };
        self.commit(entry, |_| true, State::apply).await?;
        for _ in 0..100 {
            if self.compact_over(0, self.compacted_at.load(Ordering::SeqCst))? {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        Err(StoreError::unavailable(
            "erasure recorded, but the journal could not be compacted yet: retry",
        ))
    }

    pub async fn click_owner(
        &self,
        _shard: u32,
        decision_id: &str,
        at_ms: Millis,
    ) -> Result<Option<ClickOwner>, StoreError> {
        Ok(self
            .inner
            .lock()
            .0
            .clicks
            .get(decision_id)
            .filter(|click| at_ms < click.expires_ms)
            .map(|c| ClickOwner {
                advertiser: c.advertiser.clone(),
                campaign: c.campaign.clone(),
                user: c.user.clone(),
            }))
    }

    pub async fn apply_conversion(
        &self,
        write: &ConversionWrite<'_>,
    ) -> Result<ConversionOutcome, StoreError> {
        let outcome = |state: &State| match state
            .clicks
            .get(write.decision_id)
            .filter(|c| write.at_ms < c.expires_ms)
        {
            Some(click) if click.advertiser == write.advertiser => {
                if write.kind == "conversation_started" && click.conversation {
                    ConversionOutcome::Duplicate
                } else {
                    ConversionOutcome::Accepted
                }
            }
            _ => ConversionOutcome::UnknownClick,
        };
        let entry = Entry::Conversion {
            decision_id: write.decision_id.to_owned(),
            advertiser: write.advertiser.to_owned(),
            kind: write.kind.to_owned(),
            day: crate::clock::utc_day(write.at_ms),
            at_ms: write.at_ms,
            click_id: Some(write.click_id.to_owned()),
            suppress: write.suppress_field(),
        };
        // Decided and journaled under one lock: only accepted conversions are journaled.
        let mut decided = ConversionOutcome::UnknownClick;
        self.commit(
            entry,
            |state| {
                decided = outcome(state);
                decided == ConversionOutcome::Accepted
            },
            State::apply,
        )
        .await?;
        Ok(decided)
    }

    /// The conversion log an earlier build kept (in its snapshot), every advertiser's.
    pub async fn earlier_conversion_log(
        &self,
        days: &[u32],
    ) -> Result<Vec<(String, ConversionRecord)>, StoreError> {
        let guard = self.inner.lock();
        Ok(guard
            .0
            .conversion_log
            .iter()
            .filter(|(day, _)| days.contains(day))
            .filter_map(|(_, entry)| super::parse_conversion_entry(entry))
            .collect())
    }

    pub async fn load_conversation(
        &self,
        _shard: u32,
        advertiser: &str,
        user: &str,
        message_id: &str,
    ) -> Result<(String, Option<String>), StoreError> {
        let (found, line) = {
            let guard = self.inner.lock();
            let state = &guard.0;
            let found = (
                state
                    .conversations
                    .get(&(advertiser.to_owned(), user.to_owned()))
                    .cloned()
                    .unwrap_or_default(),
                state
                    .messages
                    .get(&(advertiser.to_owned(), message_id.to_owned()))
                    .cloned(),
            );
            (found, self.written.load(Ordering::SeqCst))
        };
        // A duplicate is answered from here: only once the original is on disk.
        if found.1.is_some() {
            self.durable(line).await?;
        }
        Ok(found)
    }

    /// Mirrors `message.lua`.
    pub async fn commit_message(
        &self,
        commit: &MessageCommit<'_>,
    ) -> Result<MessageOutcome, StoreError> {
        let entry = Entry::Message {
            advertiser: commit.advertiser.to_owned(),
            user: commit.user.to_owned(),
            message_id: commit.message_id.to_owned(),
            new_state: commit.new_state.clone(),
            result: String::new(),
            category: String::new(),
            country: String::new(),
            price_micros: 0,
            month: commit.stored.month,
            stored: Some(commit.stored.encode()),
            deliver: commit.deliver,
            initiated: commit.limit.is_some(),
            written_ms: Some(commit.now_ms),
        };
        let mut outcome = MessageOutcome::Conflict;
        let applied = self
            .commit(
                entry,
                |state| {
                    let key = (commit.advertiser.to_owned(), commit.message_id.to_owned());
                    if let Some(result) = state.messages.get(&key) {
                        outcome = match StoredMessage::decode(result) {
                            Some(stored) => MessageOutcome::Duplicate(stored),
                            None => MessageOutcome::Conflict,
                        };
                        return false;
                    }
                    let current = state
                        .conversations
                        .get(&(commit.advertiser.to_owned(), commit.user.to_owned()));
                    if current.map(String::as_str).unwrap_or("") != commit.expected_state {
                        return false;
                    }
                    if let Some(limit) = commit.limit {
                        if !state.admits_initiated(
                            commit.advertiser,
                            commit.user,
                            commit.stored.at_ms,
                            limit,
                        ) {
                            outcome = MessageOutcome::LimitReached;
                            return false;
                        }
                    }
                    true
                },
                State::apply_message,
            )
            .await?;
        if let Some(stored) = applied.flatten() {
            outcome = MessageOutcome::Committed(stored);
        }
        Ok(outcome)
    }

    pub async fn message_state(
        &self,
        _shard: u32,
        advertiser: &str,
        message_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let (found, line) = {
            let guard = self.inner.lock();
            let found = guard
                .0
                .messages
                .get(&(advertiser.to_owned(), message_id.to_owned()))
                .cloned();
            (found, self.written.load(Ordering::SeqCst))
        };
        if found.is_some() {
            self.durable(line).await?;
        }
        Ok(found)
    }

    /// Mirrors `message_status.lua`.
    pub async fn settle_message(
        &self,
        write: &SettleWrite<'_>,
    ) -> Result<SettleOutcome, StoreError> {
        let entry = Entry::MessageStatus {
            advertiser: write.advertiser.to_owned(),
            message_id: write.message_id.to_owned(),
            void: write.void,
        };
        let mut outcome = SettleOutcome::Unknown;
        let applied = self
            .commit(
                entry,
                |state| {
                    let key = (write.advertiser.to_owned(), write.message_id.to_owned());
                    match state
                        .messages
                        .get(&key)
                        .map(|raw| StoredMessage::decode(raw))
                    {
                        None => false,
                        Some(Some(stored)) if stored.billing == "pending" => true,
                        Some(Some(stored)) => {
                            outcome = SettleOutcome::Duplicate(stored);
                            false
                        }
                        Some(None) => {
                            outcome = SettleOutcome::Duplicate(StoredMessage::default());
                            false
                        }
                    }
                },
                State::apply_message,
            )
            .await?;
        if let Some(stored) = applied.flatten() {
            outcome = SettleOutcome::Settled(stored);
        }
        Ok(outcome)
    }

    /// Up to `limit` of the oldest ledger records not yet exported whose journal entry is on
    /// disk (a record of an entry whose fsync is still to come, or failed, is never exported:
    /// its event may yet be answered 503).
    ///
    /// Once the journal is damaged this fails: records it still holds wait for the restart,
    /// and `as_of` must not move past them meanwhile.
    pub fn outbox(&self, limit: usize) -> Result<Vec<LedgerRecord>, StoreError> {
        let on_disk = *self.synced.borrow();
        if self.damaged.load(Ordering::SeqCst) {
            return Err(StoreError::unavailable(
                "journal damaged: records wait in the outbox until a restart",
            ));
        }
        let guard = self.inner.lock();
        Ok(guard
            .0
            .outbox
            .iter()
            .take(limit)
            .take_while(|(line, _)| *line <= on_disk)
            .map(|(_, record)| record.clone())
            .collect())
    }

    /// `records` (read from the front of the outbox, in order) are in the system of record:
    /// drops them from the front. Only while the front is still them: a second drainer (a
    /// reconcile in this process) that exported the same records drops nothing twice.
    pub fn exported(&self, records: &[LedgerRecord]) {
        let mut guard = self.inner.lock();
        let outbox = &mut guard.0.outbox;
        for record in records {
            if outbox
                .front()
                .is_some_and(|(_, front)| front.id == record.id)
            {
                outbox.pop_front();
            } else {
                break;
            }
        }
    }

    /// Ledger records waiting for export.
    pub fn outbox_len(&self) -> usize {
        self.inner.lock().0.outbox.len()
    }
}

/// Records of `kind` changed after catalog version `since` (0: all).
fn decode_records<T: serde::de::DeserializeOwned>(
    state: &State,
    kind: &str,
    since: u64,
) -> Result<Vec<T>, StoreError> {
    state
        .catalog
        .get(kind)
        .into_iter()
        .flat_map(|records| records.values())
        .filter(|(version, _)| *version > since)
        .map(|(_, json)| {
            serde_json::from_str(json).map_err(|e| StoreError::corrupt_from("catalog record", e))
        })
        .collect()
}

impl State {
    fn view(&self, user: &str, session: Option<&str>, now: Millis) -> UserView {
        let fields = self.live_fields(user, now);
        UserView {
            state: UserState::from_fields(
                fields
                    .into_iter()
                    .flat_map(|f| f.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
            ),
            session: session
                .and_then(|s| fields?.get(&codec::session_field(s)))
                .cloned()
                .map(SessionValue::stored),
        }
    }

    /// The user's hash as of `now` (`None` once it has expired, as a Redis key would).
    fn live_fields(&self, user: &str, now: Millis) -> Option<&HashMap<String, String>> {
        let expired = self
            .user_expires
            .get(user)
            .is_some_and(|until| *until <= now);
        self.users.get(user).filter(|_| !expired)
    }

    /// The user's hash to write at `now`: a new one if it had expired. A hash kept without an
    /// expiry (written by a build before expiry was tracked, or by its journal entries) is
    /// given the longest rule from now: never shorter than its Redis TTL was. (Over the two
    /// maps, so that callers can hold it beside the state's other maps.)
    fn user_to_write<'a>(
        users: &'a mut HashMap<String, HashMap<String, String>>,
        expires: &mut HashMap<String, Millis>,
        user: &str,
        now: Millis,
    ) -> &'a mut HashMap<String, String> {
        match expires.get(user) {
            Some(until) if *until <= now => {
                users.remove(user);
                expires.remove(user);
            }
            None if users.contains_key(user) => {
                expires.insert(user.to_owned(), now + LEGACY_USER_TTL_MS);
            }
            _ => {}
        }
        users.entry(user.to_owned()).or_default()
    }

    /// Like `PEXPIRE` when the TTL is shorter: the hash lives at least until `until`.
    fn keep_user(&mut self, user: &str, until: Millis) {
        let expires = self.user_expires.entry(user.to_owned()).or_insert(until);
        *expires = (*expires).max(until);
    }

    /// Drops what has expired, as Redis would have: users' hashes, clicks, conversations past
    /// their relevance, business-initiated entries past the limit's window, messages past
    /// their dedupe window (from their write) and conversion-log days past their retention
    /// (from the day; Redis counts from the list's last write, days later at most). A user or
    /// message kept by a build before expiry was tracked is given its longest rule from now.
    fn sweep(&mut self, now: Millis) {
        for user in self.users.keys() {
            if !self.user_expires.contains_key(user) {
                self.user_expires
                    .insert(user.clone(), now + LEGACY_USER_TTL_MS);
            }
        }
        let expired: Vec<String> = self
            .user_expires
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(user, _)| user.clone())
            .collect();
        for user in expired {
            self.users.remove(&user);
            self.user_expires.remove(&user);
        }
        self.clicks.retain(|_, click| click.expires_ms > now);
        self.conversations.retain(|_, raw| {
            Conversation::decode(raw)
                .relevant_until_ms()
                .is_some_and(|until| until + crate::messaging::LATE_MS > now)
        });
        let horizon = now - 2 * super::BUSINESS_LIMIT_WINDOW_MS;
        for users in self.initiated.values_mut() {
            users.retain(|_, at| *at > horizon);
        }
        self.initiated.retain(|_, users| !users.is_empty());
        // A message written by an earlier build, with no time kept, is given the window from
        // now.
        for key in self.messages.keys() {
            if !self.message_written.contains_key(key) {
                self.message_written.insert(key.clone(), now);
            }
        }
        let written = &mut self.message_written;
        written.retain(|_, at| *at + super::MESSAGE_DEDUPE_MS > now);
        self.messages.retain(|key, _| written.contains_key(key));
        self.conversion_log
            .retain(|(day, _)| day_start_ms(*day) + DAY_MS + super::CONVERSION_LOG_MS > now);
    }

    /// Everything kept about `user` (the same records as the Redis keys `RedisStore` reads).
    fn user_records(&self, user: &str, now: Millis) -> UserRecords {
        let fields = self.live_fields(user, now);
        let pairs = || {
            fields
                .into_iter()
                .flat_map(|f| f.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        };
        let mut clicks: Vec<UserClick> = self
            .clicks
            .iter()
            .filter(|(_, click)| click.user == user && click.expires_ms > now)
            .map(|(decision, click)| UserClick {
                decision_id: decision.clone(),
                advertiser: click.advertiser.clone(),
                campaign: click.campaign.clone(),
                conversation_started: click.conversation,
            })
            .collect();
        clicks.sort_by(|a, b| a.decision_id.cmp(&b.decision_id));
        let mut conversations: Vec<_> = self
            .conversations
            .iter()
            .filter(|((_, owner), _)| owner == user)
            .map(|((advertiser, _), raw)| (advertiser.clone(), Conversation::decode(raw)))
            .collect();
        conversations.sort_by(|a, b| a.0.cmp(&b.0));
        let mut initiated: Vec<_> = self
            .initiated
            .iter()
            .filter_map(|(advertiser, users)| Some((advertiser.clone(), *users.get(user)?)))
            .collect();
        initiated.sort();
        UserRecords {
            state: UserState::from_fields(pairs()),
            sessions: StoredSession::from_fields(pairs()),
            clicks,
            conversations,
            initiated,
        }
    }

    fn erase_user(&mut self, user: &str) {
        self.users.remove(user);
        self.user_expires.remove(user);
        self.clicks.retain(|_, click| click.user != user);
        self.conversations.retain(|(_, owner), _| owner != user);
        for users in self.initiated.values_mut() {
            users.remove(user);
        }
    }

    fn apply(&mut self, entry: &Entry) {
        match entry {
            Entry::Catalog { kind, id, json } => {
                self.catalog_version += 1;
                self.catalog
                    .entry(kind.clone())
                    .or_default()
                    .insert(id.clone(), (self.catalog_version, json.clone()));
            }
            Entry::Decision {
                user,
                session,
                session_field,
                now_ms,
                day: _,
                reservations,
                session_after,
                user_ttl_ms,
            } => {
                let fields =
                    Self::user_to_write(&mut self.users, &mut self.user_expires, user, *now_ms);
                let current = session_field
                    .clone()
                    .or_else(|| session.as_deref().map(codec::session_field));
                fields.retain(|field, value| match field.as_bytes().first() {
                    Some(b'r') => reservation_expiry(value).is_some_and(|e| e > *now_ms),
                    Some(b's') if current.as_ref() != Some(field) => {
                        codec::forget_after(value).is_some_and(|t| t > *now_ms)
                    }
                    _ => !codec::outlived(field, value, *now_ms),
                });
                for (field, value, _) in reservations.iter().filter_map(|r| r.fields()) {
                    fields.insert(field, value);
                }
                if let Some(field) = current {
                    fields.insert(field, session_after.clone());
                }
                if let Some(ttl) = user_ttl_ms {
                    self.keep_user(user, now_ms + ttl);
                }
            }
            Entry::Events {
                now_ms,
                day,
                events,
            } => {
                self.apply_events(*now_ms, *day, events);
            }
            Entry::Conversion {
                decision_id,
                advertiser,
                kind,
                day: _,
                at_ms,
                click_id,
                suppress,
            } => {
                let Some(click) = self.clicks.get_mut(decision_id) else {
                    return;
                };
                let (stat, record_id) = if kind == "conversation_started" {
                    click.conversation = true;
                    if let Some((field, until)) =
                        suppress.as_ref().filter(|_| !click.user.is_empty())
                    {
                        let user = click.user.clone();
                        Self::user_to_write(&mut self.users, &mut self.user_expires, &user, *at_ms)
                            .insert(field.clone(), until.to_string());
                        let expires = self.user_expires.entry(user).or_insert(*until);
                        *expires = (*expires).max(*until);
                    }
                    ("cv", format!("{decision_id}:conversation"))
                } else {
                    click.messages += 1;
                    ("m", format!("{decision_id}:message:{}", click.messages))
                };
                let kind_of = if stat == "cv" {
                    LedgerKind::Conversation
                } else {
                    LedgerKind::ConversionMessage
                };
                let record = LedgerRecord {
                    id: record_id,
                    kind: kind_of,
                    campaign: click.campaign.clone(),
                    advertiser: advertiser.clone(),
                    category: String::new(),
                    country: String::new(),
                    price_micros: 0,
                    at_ms: *at_ms,
                    creative: String::new(),
                    os: String::new(),
                    age_band: String::new(),
                    user_key: String::new(),
                    click_id: click_id.clone().unwrap_or_default(),
                };
                self.outbox.push_back((self.line, record));
            }
            Entry::Message { .. } | Entry::MessageStatus { .. } => {
                self.apply_message(entry);
            }
            Entry::EraseUser { user } => self.erase_user(user),
            Entry::Generation { .. } => {}
        }
    }

    /// Makes a stored message's charge final: moves its month's count (mirrors `charge_final`
    /// in messaging_shared.lua); the caller's ledger record bills it.
    fn charge_final(&mut self, advertiser: &str, stored: &mut StoredMessage) {
        let count = self
            .message_counts
            .entry((stored.month, format!("{advertiser}|{}", stored.counter)))
            .or_default();
        *count += 1;
        let n = *count;
        let schedule = Schedule::decode(&stored.schedule).unwrap_or(Schedule::flat(0));
        let (price, tier) = price_at(&schedule, n);
        stored.charge_micros = price;
        stored.tier = stored.tiered.then_some(tier);
        stored.billing = "final".into();
    }

    /// A business-initiated template to `user` at `at` keeps the advertiser within `limit`
    /// (mirrors message.lua).
    fn admits_initiated(&self, advertiser: &str, user: &str, at: Millis, limit: u32) -> bool {
        let window = super::BUSINESS_LIMIT_WINDOW_MS;
        let since = at - window;
        let users = self.initiated.get(advertiser);
        let already = users
            .and_then(|u| u.get(user))
            .is_some_and(|mine| *mine > since);
        let others = users.map_or(0, |u| {
            u.values()
                .filter(|t| **t > since && **t < at + window)
                .count() as u64
        });
        within_limit(limit, already, others)
    }

    /// Applies a message or status entry; returns the stored message it leaves (`None` for
    /// entries of earlier builds).
    fn apply_message(&mut self, entry: &Entry) -> Option<StoredMessage> {
        match entry {
            Entry::Message {
                advertiser,
                user,
                message_id,
                new_state,
                result,
                category,
                country,
                price_micros,
                month,
                stored,
                deliver,
                initiated,
                written_ms,
            } => {
                let conversation = (advertiser.clone(), user.clone());
                if let Some(at) = written_ms {
                    self.message_written
                        .insert((advertiser.clone(), message_id.clone()), *at);
                }
                if new_state.is_empty() {
                    self.conversations.remove(&conversation);
                } else {
                    self.conversations.insert(conversation, new_state.clone());
                }
                let key = (advertiser.clone(), message_id.clone());
                let Some(mut stored) = stored.as_deref().and_then(StoredMessage::decode) else {
                    // An entry of an earlier build: its charge was decided when it was written.
                    self.messages.insert(key, result.clone());
                    // Its record is dated the first instant of its month, all it knows.
                    let legacy = StoredMessage {
                        line: category.clone(),
                        country: country.clone(),
                        at_ms: month_start_ms(*month),
                        ..StoredMessage::default()
                    };
                    self.message_record(
                        format!("msg:{advertiser}:{message_id}"),
                        LedgerKind::BusinessMessage,
                        advertiser,
                        &legacy,
                        *price_micros,
                    );
                    return None;
                };
                if *initiated {
                    let users = self.initiated.entry(advertiser.clone()).or_default();
                    let at = users.entry(user.clone()).or_insert(stored.at_ms);
                    *at = (*at).max(stored.at_ms);
                    // From the earlier of its date and now: a message dated ahead must not
                    // drop the users reached until then (mirrors message.lua).
                    let from = written_ms.map_or(stored.at_ms, |now| now.min(stored.at_ms));
                    let oldest = from - 2 * super::BUSINESS_LIMIT_WINDOW_MS;
                    users.retain(|_, t| *t >= oldest);
                }
                if stored.counter.is_empty() {
                    stored.billing = "final".into();
                    stored.charge_micros = 0;
                    stored.tier = None;
                } else if *deliver {
                    self.charge_final(advertiser, &mut stored);
                } else {
                    let n = self
                        .message_counts
                        .get(&(stored.month, format!("{advertiser}|{}", stored.counter)))
                        .copied()
                        .unwrap_or(0)
                        + 1;
                    let schedule = Schedule::decode(&stored.schedule).unwrap_or(Schedule::flat(0));
                    let (price, tier) = price_at(&schedule, n);
                    stored.billing = "pending".into();
                    stored.charge_micros = price;
                    stored.tier = stored.tiered.then_some(tier);
                }
                self.messages.insert(key, stored.encode());
                let billed = if stored.billing == "final" {
                    stored.charge_micros
                } else {
                    0
                };
                self.message_record(
                    format!("msg:{advertiser}:{message_id}"),
                    LedgerKind::BusinessMessage,
                    advertiser,
                    &stored,
                    billed,
                );
                Some(stored)
            }
            Entry::MessageStatus {
                advertiser,
                message_id,
                void,
            } => {
                let key = (advertiser.clone(), message_id.clone());
                let mut stored = self
                    .messages
                    .get(&key)
                    .and_then(|raw| StoredMessage::decode(raw))
                    .filter(|s| s.billing == "pending")?;
                if *void {
                    stored.billing = "void".into();
                    stored.charge_micros = 0;
                    stored.tier = None;
                } else {
                    self.charge_final(advertiser, &mut stored);
                }
                self.messages.insert(key, stored.encode());
                self.message_record(
                    format!(
                        "msg:{advertiser}:{message_id}{}",
                        crate::ledger::messages::STATUS_SUFFIX
                    ),
                    LedgerKind::MessageStatus,
                    advertiser,
                    &stored,
                    stored.charge_micros,
                );
                Some(stored)
            }
            _ => None,
        }
    }

    /// The ledger record of a rated message or of its status (mirrors message.lua and
    /// message_status.lua).
    fn message_record(
        &mut self,
        id: String,
        kind: LedgerKind,
        advertiser: &str,
        stored: &StoredMessage,
        billed: i64,
    ) {
        let record = LedgerRecord {
            id,
            kind,
            campaign: stored.campaign.clone(),
            advertiser: advertiser.to_owned(),
            category: if billed > 0 {
                stored.line.clone()
            } else {
                String::new()
            },
            country: stored.country.clone(),
            price_micros: billed,
            at_ms: stored.at_ms,
            creative: String::new(),
            os: String::new(),
            age_band: String::new(),
            user_key: String::new(),
            click_id: String::new(),
        };
        self.outbox.push_back((self.line, record));
    }

    /// Mirrors `events.lua`.
    fn apply_events(
        &mut self,
        now: Millis,
        day: u32,
        events: &[JournaledEvent],
    ) -> Vec<EventOutcome> {
        self.tokens.retain(|_, (_, expires)| *expires > now);
        events
            .iter()
            .map(|event| self.apply_event(now, day, event))
            .collect()
    }

    fn apply_event(&mut self, now: Millis, day: u32, e: &JournaledEvent) -> EventOutcome {
        let bit = e.kind.bit();
        let flags = self.tokens.get(&e.decision_id).map(|t| t.0).unwrap_or(0);
        let token_expiry = now + e.token_ttl_ms;
        if e.kind == EventType::Render && flags & REFUSED != 0 {
            return EventOutcome::CapReached;
        }
        if flags & bit != 0 {
            return EventOutcome::Duplicate;
        }
        if e.kind.needs_render() && flags & EventType::Render.bit() == 0 {
            return EventOutcome::OutOfOrder;
        }
        // Served without consent to personalisation: nothing per user (see `events.lua`).
        let personal = !e.user.is_empty();
        let mut scratch = HashMap::new();
        let fields = if personal {
            Self::user_to_write(&mut self.users, &mut self.user_expires, &e.user, now)
        } else {
            &mut scratch
        };
        let (campaign_field, advertiser_field) =
            (campaign_field(&e.campaign), advertiser_field(&e.advertiser));
        let now_floor = window_now(now);
        if !personal {
            if e.kind == EventType::Click {
                let click = self.clicks.entry(e.decision_id.clone()).or_default();
                click.advertiser.clone_from(&e.advertiser);
                click.campaign.clone_from(&e.campaign);
                click.user.clear();
                click.expires_ms = now + super::CLICK_TTL_MS;
            }
        } else if e.kind == EventType::Render {
            let renders = times(fields.get(&campaign_field));
            let adv_renders = times(fields.get(&advertiser_field));
            let daily = times(fields.get("d"));
            if !allows(&renders, &e.campaign_caps, now)
                || (!e.advertiser_caps.is_empty() && !allows(&adv_renders, &e.advertiser_caps, now))
                || count_since(&daily, now_floor - DAY_MS / 1000) >= e.daily_max as usize
            {
                self.tokens
                    .insert(e.decision_id.clone(), (flags | REFUSED, token_expiry));
                return EventOutcome::CapReached;
            }
            fields.remove(&reservation_field(&e.decision_id));
            if e.campaign_keep.0 > 0 {
                fields.insert(campaign_field, append(renders, e.campaign_keep, now));
            }
            if e.advertiser_keep.0 > 0 {
                fields.insert(
                    advertiser_field,
                    append(adv_renders, e.advertiser_keep, now),
                );
            }
            fields.insert("d".into(), append(daily, (e.daily_max, DAY_MS), now));
        } else if e.kind.hides() {
            fields.insert(hide_field(&e.advertiser), (now + HIDE_MS).to_string());
        } else if e.kind == EventType::Click {
            let click = self.clicks.entry(e.decision_id.clone()).or_default();
            click.advertiser.clone_from(&e.advertiser);
            click.campaign.clone_from(&e.campaign);
            click.user.clone_from(&e.user);
            click.expires_ms = now + super::CLICK_TTL_MS;
        }
        self.tokens
            .insert(e.decision_id.clone(), (flags | bit, token_expiry));
        if personal {
            if self.users.get(&e.user).is_some_and(HashMap::is_empty) {
                // Redis never creates a hash for a view or a click.
                self.users.remove(&e.user);
            } else if e.kind == EventType::Render || e.kind.hides() {
                self.keep_user(&e.user, now + e.user_ttl_ms());
            }
        }
        let billed = if e.kind == EventType::Render {
            e.price_micros.max(0)
        } else {
            0
        };
        if billed > 0 {
            *self.spend_total.entry(e.campaign.clone()).or_default() += billed;
            *self.spend_day.entry((day, e.campaign.clone())).or_default() += billed;
        }
        let record = LedgerRecord {
            id: format!("{}:{}", e.decision_id, e.kind.as_str()),
            kind: LedgerKind::Event(e.kind),
            campaign: e.campaign.clone(),
            advertiser: e.advertiser.clone(),
            category: String::new(),
            country: e.audience.coarse.country.clone(),
            price_micros: billed,
            at_ms: now,
            creative: e.audience.creative.clone(),
            os: e.audience.coarse.os.clone(),
            age_band: e.audience.coarse.age_band.clone(),
            user_key: e.audience.user_key.clone(),
            click_id: String::new(),
        };
        self.outbox.push_back((self.line, record));
        EventOutcome::Accepted
    }
}

#[derive(Deserialize)]
struct Snapshot {
    generation: u64,
    state: State,
    /// When the daily compaction last ran (snapshots of earlier builds have none: due at the
    /// first maintenance).
    #[serde(default)]
    compacted_ms: Option<Millis>,
}

#[derive(Serialize)]
struct SnapshotRef<'a> {
    generation: u64,
    state: &'a State,
    compacted_ms: Option<Millis>,
}

/// The snapshot at `path`, if any, read under the one reading policy (a one-line file).
fn read_snapshot(path: &Path) -> Result<Option<Snapshot>, StoreError> {
    let mut found = None;
    let tail = super::lines::read(path, |json| {
        let mut snapshot: Snapshot = serde_json::from_str(json).map_err(|e| e.to_string())?;
        // Everything in a snapshot was on disk before it was written.
        for (line, _) in &mut snapshot.state.outbox {
            *line = 0;
        }
        found = Some(snapshot);
        Ok(())
    })
    .map_err(|err| StoreError::corrupt_from("snapshot", err))?;
    if tail.torn_bytes > 0 {
        // Renamed into place whole: a torn snapshot is damage, not a crash mid-write.
        return Err(StoreError::corrupt(format!(
            "{} is damaged; restore it from a backup",
            path.display()
        )));
    }
    Ok(found)
}

/// Writes a new journal's first line, durably.
fn begin_generation(file: &mut File, generation: u64) -> std::io::Result<()> {
    let json =
        serde_json::to_string(&Entry::Generation { generation }).map_err(std::io::Error::other)?;
    super::lines::append_durably(file, super::lines::encode(&json).as_bytes())
        .map_err(|failed| failed.error)
}

/// Maps with tuple keys, as a list of pairs (JSON keys are strings).
mod pairs {
    use std::collections::HashMap;
    use std::hash::Hash;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<K: Serialize, V: Serialize, S: Serializer>(
        map: &HashMap<K, V>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(map.iter())
    }

    pub fn deserialize<'de, K, V, D>(d: D) -> Result<HashMap<K, V>, D::Error>
    where
        K: Deserialize<'de> + Eq + Hash,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Vec::<(K, V)>::deserialize(d).map(|pairs| pairs.into_iter().collect())
    }
}

/// The first instant (ms) of a `YYYYMM` month.
fn month_start_ms(month: u32) -> Millis {
    day_start_ms(month * 100 + 1)
}

/// The first instant (ms) of a `YYYYMMDD` day (0 for a day that does not exist).
fn day_start_ms(day: u32) -> Millis {
    let date = time::Month::try_from((day / 100 % 100) as u8)
        .ok()
        .and_then(|m| {
            time::Date::from_calendar_date((day / 10_000) as i32, m, (day % 100) as u8).ok()
        });
    date.map_or(0, |d| {
        crate::clock::ms_from_datetime(d.midnight().assume_utc())
    })
}

/// Render times, whole seconds.
fn times(raw: Option<&String>) -> Vec<i64> {
    raw.map(|r| decode_stamps(r)).unwrap_or_default()
}

/// True when one more render keeps every cap encoded as `max:per_seconds,...`.
fn allows(renders: &[i64], caps: &str, now: Millis) -> bool {
    within_caps(&decode_caps(caps), renders, 0, now)
}

/// Appends a render at `now` and keeps the newest `keep_n` younger than `keep_ms` (mirrors
/// `append` in events.lua, in whole seconds).
fn append(mut list: Vec<i64>, (keep_n, keep_ms): (u32, Millis), now: Millis) -> String {
    list.push(render_stamp(now));
    let skip = list.len().saturating_sub(keep_n as usize);
    let oldest = window_now(now) - keep_ms / 1000;
    let kept: Vec<i64> = list[skip..]
        .iter()
        .copied()
        .filter(|t| *t > oldest)
        .collect();
    encode_stamps(&kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_conversion_days_are_forgotten_after_their_windows() {
        use super::super::{CONVERSION_LOG_MS, MESSAGE_DEDUPE_MS};
        let at = month_start_ms(202612) + 5 * DAY_MS;
        let mut state = State::default();
        let key = |id: &str| ("adv".to_owned(), id.to_owned());
        // Dated long before: the window runs from the write, never from the message's `at`.
        let old = StoredMessage {
            at_ms: at - 400 * DAY_MS,
            ..StoredMessage::default()
        };
        for id in ["written", "later"] {
            state.messages.insert(key(id), old.encode());
        }
        state.message_written.insert(key("written"), at);
        state.message_written.insert(key("later"), at + DAY_MS);
        state.messages.insert(key("legacy"), "accepted".into());
        state.conversion_log.push((20261206, "old".into()));
        state.conversion_log.push((20261207, "new".into()));
        assert_eq!(day_start_ms(20261206), at);

        state.sweep(at);
        assert_eq!(state.messages.len(), 3, "inside every window");
        state.sweep(at + MESSAGE_DEDUPE_MS);
        assert_eq!(
            state.messages.keys().collect::<Vec<_>>(),
            [&key("later")],
            "an earlier build's message had its window from the first sweep"
        );
        state.sweep(at + MESSAGE_DEDUPE_MS + DAY_MS);
        assert!(state.messages.is_empty() && state.message_written.is_empty());

        state.sweep(at + DAY_MS + CONVERSION_LOG_MS - 1);
        assert_eq!(
            state.conversion_log.len(),
            2,
            "the day's last instant is inside"
        );
        state.sweep(at + DAY_MS + CONVERSION_LOG_MS);
        assert_eq!(state.conversion_log, [(20261207, "new".to_owned())]);
    }

    fn journal_with(lines: &[&str]) -> (std::path::PathBuf, u64) {
        let dir = std::env::temp_dir().join(format!(
            "statusads-journal-{}-{}",
            std::process::id(),
            crate::domain::ids::new_decision_id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let text: String = lines.concat();
        std::fs::write(dir.join(JOURNAL), &text).unwrap();
        (dir, text.len() as u64)
    }

    fn decision(reservations: &str) -> String {
        super::super::lines::encode(&format!(
            r#"{{"op":"decision","user":"u1","session":null,"now_ms":1795000000000,"day":20261123,"reservations":{reservations},"session_after":"1,0,0"}}"#
        ))
    }

    fn billed_render(decision: &str) -> EventWrite {
        EventWrite {
            kind: EventType::Render,
            decision_id: decision.into(),
            user: "u1".into(),
            campaign: "cmp_00000000000000aa".into(),
            advertiser: "adv_00000000000000bb".into(),
            price_micros: 2_000,
            token_ttl_ms: 3_600_000,
            user_ttl_ms: 86_400_000,
            campaign_caps: Vec::new(),
            advertiser_caps: Vec::new(),
            campaign_keep: crate::capping::Retention {
                count: 0,
                window_ms: 0,
            },
            advertiser_keep: crate::capping::Retention {
                count: 0,
                window_ms: 0,
            },
            daily_max: 10,
            client_at: String::new(),
            audience: Audience::default(),
        }
    }

    async fn spent(store: &EmbeddedStore) -> i64 {
        store
            .spend(20261123)
            .await
            .unwrap()
            .values()
            .map(|s| s.total_micros)
            .sum()
    }

    /// The journal is compacted at least daily, the day counted from the last compaction as
    /// the snapshot keeps it: a restart neither postpones it nor compacts again.
    #[tokio::test]
    async fn the_daily_compaction_counts_across_restarts() {
        const T0: Millis = 1_795_000_000_000;
        let (dir, _) = journal_with(&[]);
        let journal_len = || std::fs::metadata(dir.join(JOURNAL)).unwrap().len();
        let store = EmbeddedStore::open_with(&dir, u64::MAX).unwrap();
        store.maintain(T0).unwrap();
        let compacted = journal_len();
        let event = billed_render("d1");
        store.apply_events(0, T0, 20261123, [&event]).await.unwrap();
        drop(store);

        let store = EmbeddedStore::open_with(&dir, u64::MAX).unwrap();
        store.maintain(T0 + 3_600_000).unwrap();
        assert!(
            journal_len() > compacted,
            "an hour on, after a restart: not due"
        );
        store.maintain(T0 + DAY_MS).unwrap();
        assert_eq!(journal_len(), compacted, "a day on: compacted");
        assert_eq!(spent(&store).await, 2_000);
    }

    /// A crash after the snapshot is in place but before the journal is begun again leaves the
    /// old journal beside a snapshot that holds it: the start skips it (nothing counted twice),
    /// and a journal begun after the snapshot is replayed on top of it.
    #[tokio::test]
    async fn a_snapshot_and_the_journal_it_covers_count_once() {
        let (dir, _) = journal_with(&[]);
        let store = EmbeddedStore::open_with(&dir, 1).unwrap();
        for decision in ["d1", "d2"] {
            let event = billed_render(decision);
            store
                .apply_events(0, 1_795_000_000_000, 20261123, [&event])
                .await
                .unwrap();
        }
        let covered = std::fs::read(dir.join(JOURNAL)).unwrap();
        assert!(store.compact_over(1, Millis::MIN).unwrap());
        let event = billed_render("d3");
        store
            .apply_events(0, 1_795_000_000_000, 20261123, [&event])
            .await
            .unwrap();
        assert_eq!(spent(&store).await, 6_000);
        assert_eq!(
            store.outbox(100).unwrap().len(),
            3,
            "the outbox survives compaction"
        );
        drop(store);

        let reopened = EmbeddedStore::open_with(&dir, u64::MAX).unwrap();
        assert_eq!(
            spent(&reopened).await,
            6_000,
            "snapshot and the journal after it"
        );
        assert_eq!(reopened.outbox(100).unwrap().len(), 3);
        drop(reopened);

        // The crash window: the snapshot renamed into place, the journal not yet begun again.
        std::fs::write(dir.join(JOURNAL), &covered).unwrap();
        let reopened = EmbeddedStore::open_with(&dir, u64::MAX).unwrap();
        assert_eq!(
            spent(&reopened).await,
            4_000,
            "the covered journal is skipped"
        );
        drop(reopened);
        // ...and it was begun again after the snapshot, so the next start agrees.
        let again = EmbeddedStore::open_with(&dir, u64::MAX).unwrap();
        assert_eq!(spent(&again).await, 4_000);
        drop(again);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn journals_of_earlier_builds_replay() {
        // Before the compact user hash, a reservation was journaled as one encoded string.
        let old = decision(
            r#"[["d1|cmp_00000000000000aa|adv_00000000000000bb|1795000900000","cmp_00000000000000aa"]]"#,
        );
        let (dir, _) = journal_with(&[&old]);
        let store = EmbeddedStore::open(&dir).unwrap();
        let fields = store.inner.lock().0.users["u1"].clone();
        assert_eq!(
            fields.get("rd1").map(String::as_str),
            Some("00000000000000aa|00000000000000bb|1795000900000")
        );
        drop(store);
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// Entries of builds before expiry was tracked carry no user TTL: a hide lives its 90 days
    /// (as that build's Redis TTL did), and a hash written without one is kept for the
    /// longest rule rather than dropped.
    #[tokio::test]
    async fn caps_and_hides_journaled_by_earlier_builds_keep_their_lifetime() {
        const T: Millis = 1_795_000_000_000;
        let hide = super::super::lines::encode(&format!(
            r#"{{"op":"events","now_ms":{T},"day":20261123,"events":[{{"kind":"hide","decision_id":"d1","user":"u2","campaign":"cmp_00000000000000aa","advertiser":"adv_00000000000000bb","price_micros":0,"token_ttl_ms":3600000,"campaign_caps":"","advertiser_caps":"","campaign_keep":[0,0],"advertiser_keep":[0,0],"daily_max":10}}]}}"#
        ));
        let reserved = decision(
            r#"[["rd9","00000000000000aa|00000000000000bb|1795000900000","cmp_00000000000000aa"]]"#,
        );
        let (dir, _) = journal_with(&[&reserved, &hide]);
        let store = EmbeddedStore::open(&dir).unwrap();
        let hidden = |at: Millis| {
            store
                .inner
                .lock()
                .0
                .view("u2", None, at)
                .state
                .is_hidden("adv_00000000000000bb", at)
        };
        assert!(
            hidden(T + 5 * DAY_MS),
            "a hide journaled by an earlier build holds"
        );
        assert!(hidden(T + 89 * DAY_MS));
        assert!(!hidden(T + 92 * DAY_MS), "and ends with its rule");
        store.sweep(T + 10 * DAY_MS);
        let kept = store
            .inner
            .lock()
            .0
            .live_fields("u1", T + 300 * DAY_MS)
            .is_some();
        assert!(
            kept,
            "a hash without an expiry is kept for the longest rule"
        );
        drop(store);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn a_torn_tail_is_cut_but_an_unreadable_whole_entry_stops_the_start() {
        let good = decision("[]");
        let (dir, whole) = journal_with(&[&good, "0badc0de {\"op\":\"deci"]);
        drop(EmbeddedStore::open(&dir).unwrap());
        assert_eq!(
            std::fs::metadata(dir.join(JOURNAL)).unwrap().len(),
            good.len() as u64,
            "the torn tail was cut (it was {whole} bytes)"
        );
        std::fs::remove_dir_all(&dir).unwrap();

        // A checksummed entry this build cannot read, with acknowledged entries after it.
        let unknown = super::super::lines::encode(r#"{"op":"from_the_future"}"#);
        let (dir, len) = journal_with(&[&good, &unknown, &good]);
        assert!(matches!(
            EmbeddedStore::open(&dir),
            Err(StoreError::Corrupt { .. })
        ));
        assert_eq!(
            std::fs::metadata(dir.join(JOURNAL)).unwrap().len(),
            len,
            "nothing was cut"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
