//! The embedded backend: one node, no Redis server. It is the redis backend's own code and Lua
//! scripts on the in-process Redis (`store::redis::in_process`), so every rule exists once,
//! with every change made durable here: each call's writes (a command, a script, a pipeline)
//! are appended to a journal under `data_dir` (`journal.log`) as one line, and a reply is given
//! only once an fsync covers the lines it depends on. At start the snapshot and the journal
//! are run again, each line at the instant it was written, which gives the same keyspace.
//!
//! Group commit: a call appends its line under the engine's lock, then its reply waits
//! (without the lock) until a dedicated thread's next fsync covers it; one fsync serves every
//! write in between. Replies that only read wait for the lines before them too, so nothing is
//! answered from a change that a restart would not bring back.
//!
//! Journal lines are `<crc32 hex> <json>`, read back under the one policy of `store::lines`: a
//! torn tail (a crash mid-write, never acknowledged) is cut; a damaged line followed by intact
//! ones stops the start, naming the byte offset, until `statusads quarantine` moves it aside.
//! A write the journal cannot take is taken back before anyone is answered (503, nothing
//! recorded). A failed fsync cuts the journal back to the last synced line; the keyspace is
//! then ahead of the disk, so from then on every command is refused until a restart.
//!
//! A data dir of an earlier build (journal entries per operation) is read through `earlier`
//! once and compacted into this build's form at the first start.

mod earlier;

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};
use serde::{Deserialize, Serialize};

use super::redis::in_process::keyspace::Keyspace;
use super::redis::in_process::{InProcessRedis, Journal};
use super::{RedisStore, StoreError, UserLocator};
use crate::capping::DAY_MS;
use crate::clock::{Millis, SharedClock};
use crate::metrics::Metrics;

const JOURNAL: &str = "journal.log";
const SNAPSHOT: &str = "snapshot.json";
/// Default of `store.journal_compact_bytes`.
pub const COMPACT_BYTES: u64 = 64 << 20;
/// How often [`EmbeddedStore::maintain`] drops expired keys (it walks every key).
const PURGE_EVERY_MS: Millis = 60_000;

/// One journal line of this build.
#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Line {
    /// One call's writes (a command or a pipeline), run again at `now_ms`.
    Commands {
        now_ms: Millis,
        commands: Vec<Vec<String>>,
    },
    /// The first line of a journal begun by compaction: the snapshot of generation
    /// `generation - 1` holds everything before it. A journal without it is generation 0.
    Generation { generation: u64 },
}

/// `snapshot.json`: this build's (`commands`, run at `now_ms`) or an earlier one's (`state`).
#[derive(Serialize, Deserialize)]
struct Snapshot {
    generation: u64,
    /// When the daily compaction last ran (snapshots of earlier builds may have none: due at
    /// the first maintenance).
    #[serde(default)]
    compacted_ms: Option<Millis>,
    #[serde(default)]
    now_ms: Millis,
    #[serde(default)]
    commands: Vec<Vec<String>>,
    #[serde(default, skip_serializing)]
    state: Option<earlier::State>,
}

/// The journal file and its group commit, shared with the in-process Redis (see [`Journal`]).
struct JournalFile {
    file: Mutex<File>,
    /// Lines written so far (under `file`), and the count known to be on disk (`u64::MAX`
    /// once an fsync failed: see `on_disk`).
    written: AtomicU64,
    synced: tokio::sync::watch::Receiver<u64>,
    /// The lines the last fsync that succeeded covered.
    on_disk: AtomicU64,
    /// The journal length the last fsync covered (a failed fsync cuts back to it).
    synced_len: AtomicU64,
    /// Set when a write could not be cut back or an fsync failed: nothing more is answered.
    damaged: AtomicBool,
    wake: (Mutex<bool>, Condvar),
}

impl Journal for JournalFile {
    fn append(&self, now_ms: Millis, writes: &[Vec<Vec<u8>>]) -> std::io::Result<u64> {
        let invalid = |_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8");
        let commands = writes
            .iter()
            .map(|args| {
                args.iter()
                    .map(|arg| String::from_utf8(arg.clone()).map_err(invalid))
                    .collect()
            })
            .collect::<std::io::Result<_>>()?;
        let json = serde_json::to_string(&Line::Commands { now_ms, commands })
            .map_err(std::io::Error::other)?;
        let mut file = self.file.lock();
        // Read under the lock the sync thread cuts the file back under: a line appended after
        // a failed fsync's cut would come back at the next start though answered 503.
        if self.damaged.load(Ordering::SeqCst) {
            return Err(std::io::Error::other(
                "journal damaged by a failed write or fsync; restart",
            ));
        }
        if let Err(failed) = super::lines::append(&mut file, super::lines::encode(&json).as_bytes())
        {
            if !failed.repaired {
                self.damaged.store(true, Ordering::SeqCst);
            }
            return Err(failed.error);
        }
        Ok(self.written.fetch_add(1, Ordering::SeqCst) + 1)
    }

    fn appended(&self) -> u64 {
        self.written.load(Ordering::SeqCst)
    }

    fn durable(
        self: Arc<Self>,
        line: u64,
    ) -> futures_util::future::BoxFuture<'static, std::io::Result<()>> {
        let mut synced = self.synced.clone();
        let behind = *synced.borrow() < line;
        if behind {
            // Notified under the mutex the sync thread checks and waits under, so the wake-up
            // cannot fall between its check and its wait.
            let _checking = self.wake.0.lock();
            self.wake.1.notify_one();
        }
        Box::pin(async move {
            if behind {
                synced
                    .wait_for(|on_disk| *on_disk >= line)
                    .await
                    .map_err(|_| std::io::Error::other("journal sync stopped"))?;
            }
            // Past the last fsync that succeeded: the one meant to cover the line failed, and
            // the line was cut back. (A later write that failed leaves it whole: answered.)
            if line > self.on_disk.load(Ordering::SeqCst) {
                return Err(std::io::Error::other("journal fsync failed; restart"));
            }
            Ok(())
        })
    }

    fn refusal(&self) -> Option<&'static str> {
        self.damaged
            .load(Ordering::SeqCst)
            .then_some("journal damaged by a failed write or fsync; restart")
    }
}

impl JournalFile {
    /// The group-commit thread: one fsync covers every line written since the last one,
    /// then wakes everyone waiting for those lines. A failed fsync fails them all (never
    /// acknowledged): the journal is cut back to its last synced length, so none of their
    /// lines can come back at the next start, and nothing more is answered.
    fn sync_forever(self: Arc<Self>, file: File, synced: tokio::sync::watch::Sender<u64>) {
        let (closed, signal) = &self.wake;
        loop {
            {
                let mut closed = closed.lock();
                while !*closed && self.written.load(Ordering::SeqCst) == *synced.borrow() {
                    signal.wait_for(&mut closed, std::time::Duration::from_millis(50));
                }
                // Closing syncs what was written first: a line left in the file unsynced
                // would come back at the next start, though its caller was answered 503.
                if *closed && self.written.load(Ordering::SeqCst) == *synced.borrow() {
                    return;
                }
            }
            // Lines and length read together: writers append under `file`.
            let (target, target_len) = {
                let locked = self.file.lock();
                let len = locked.metadata().map(|m| m.len());
                (self.written.load(Ordering::SeqCst), len)
            };
            match target_len.and_then(|len| file.sync_data().map(|()| len)) {
                Ok(len) => {
                    self.synced_len.store(len, Ordering::SeqCst);
                    self.on_disk.store(target, Ordering::SeqCst);
                    synced.send_replace(target);
                }
                Err(err) => {
                    let locked = self.file.lock();
                    self.damaged.store(true, Ordering::SeqCst);
                    match super::lines::cut_back(&locked, self.synced_len.load(Ordering::SeqCst)) {
                        Ok(()) => tracing::error!(
                            error = %err,
                            "journal fsync failed; unsynced lines cut off, refusing everything (restart)"
                        ),
                        Err(cut) => tracing::error!(
                            error = %err,
                            cut_error = %cut,
                            "journal fsync failed and the unsynced lines could not be cut off; refusing everything"
                        ),
                    }
                    // Wakes the waiters, who find the journal damaged; nothing is appended
                    // any more (see `refusal`).
                    synced.send_replace(u64::MAX);
                    return;
                }
            }
        }
    }
}

pub struct EmbeddedStore {
    redis: RedisStore,
    engine: InProcessRedis,
    journal: Arc<JournalFile>,
    data_dir: PathBuf,
    /// The journal's generation (see [`Line::Generation`]), changed under the engine's lock.
    generation: AtomicU64,
    compact_bytes: u64,
    /// The group-commit thread: it holds the journal (and its lock) until it ends.
    sync_thread: Option<std::thread::JoinHandle<()>>,
    /// When expired keys were last dropped (ms).
    purged_at: AtomicI64,
    /// When the daily compaction last ran, as the snapshot keeps it (`Millis::MIN`: never), or
    /// a minute less than a day before its next try after a failed one (ms).
    compacted_at: AtomicI64,
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        {
            let (closed, signal) = &self.journal.wake;
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

/// Runs one journaled command again (it succeeded when it was written, so it does again).
fn run_again(keyspace: &mut Keyspace, command: &[String], now_ms: Millis) -> Result<(), String> {
    let args: Vec<&[u8]> = command.iter().map(|a| a.as_bytes()).collect();
    keyspace.execute(&args, now_ms).map(drop).map_err(|e| {
        format!(
            "{:?} at {now_ms} failed: {} {}",
            command.first(),
            e.code,
            e.message
        )
    })
}

impl EmbeddedStore {
    /// Opens `data_dir` on the system clock (tools and tests).
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(
            data_dir,
            COMPACT_BYTES,
            Arc::new(crate::clock::SystemClock),
            Arc::new(Metrics::default()),
        )
    }

    /// Opens the store under `data_dir`: the last snapshot, then the journal after it (an
    /// earlier build's files are translated and compacted at once). The exporter compacts the
    /// journal once it is longer than `compact_bytes`. Keys expire on `clock`, the service's.
    pub fn open_with(
        data_dir: &Path,
        compact_bytes: u64,
        clock: SharedClock,
        metrics: Arc<Metrics>,
    ) -> Result<Self, StoreError> {
        let io = |e: std::io::Error| {
            StoreError::corrupt_from(
                format!("config key `store.data_dir`: {}", data_dir.display()),
                e,
            )
        };
        std::fs::create_dir_all(data_dir).map_err(io)?;
        let path = data_dir.join(JOURNAL);
        let mut keyspace = Keyspace::default();
        // The latest instant a line ran at: the keyspace's clock goes on from it.
        let mut latest = Millis::MIN;
        let mut earlier_state: Option<earlier::State> = None;
        let snapshot = read_snapshot(&data_dir.join(SNAPSHOT))?;
        let (covered, compacted_ms) = match snapshot {
            Some(snapshot) => {
                for command in &snapshot.commands {
                    run_again(&mut keyspace, command, snapshot.now_ms)
                        .map_err(|e| StoreError::corrupt(format!("snapshot: {e}")))?;
                }
                latest = latest.max(snapshot.now_ms);
                earlier_state = snapshot.state;
                (Some(snapshot.generation), snapshot.compacted_ms)
            }
            None => (None, None),
        };
        let mut journal_generation = None;
        let mut skip = false;
        // The one reading policy (`lines`): a torn tail is cut; a damaged line with intact
        // records after it, or an intact entry this build cannot read, stops the start.
        let tail = super::lines::read(&path, |json| {
            let line = serde_json::from_str::<Line>(json);
            let entry = match &line {
                Ok(_) => None,
                Err(_) => Some(
                    serde_json::from_str::<earlier::Entry>(json).map_err(|err| err.to_string())?,
                ),
            };
            if journal_generation.is_none() {
                let generation = match (&line, &entry) {
                    (Ok(Line::Generation { generation }), _) => *generation,
                    (_, Some(earlier::Entry::Generation { generation })) => *generation,
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
            if skip {
                return Ok(());
            }
            match (line, entry) {
                (Ok(Line::Commands { now_ms, commands }), _) => {
                    for command in &commands {
                        run_again(&mut keyspace, command, now_ms)?;
                    }
                    latest = latest.max(now_ms);
                }
                (_, Some(entry)) => earlier_state.get_or_insert_default().apply(&entry),
                _ => {}
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
        let translated = earlier_state.is_some();
        if let Some(state) = earlier_state {
            let now_ms = clock.now_ms().max(latest);
            latest = now_ms;
            for command in earlier::translate(state, now_ms) {
                run_again(&mut keyspace, &command, now_ms)
                    .map_err(|e| StoreError::corrupt(format!("an earlier build's state: {e}")))?;
            }
        }
        let sync_file = file.try_clone().map_err(io)?;
        let (synced_tx, synced) = tokio::sync::watch::channel(0);
        let journal = Arc::new(JournalFile {
            synced_len: AtomicU64::new(file.metadata().map_err(io)?.len()),
            file: Mutex::new(file),
            written: AtomicU64::new(0),
            synced,
            on_disk: AtomicU64::new(0),
            damaged: AtomicBool::new(false),
            wake: (Mutex::new(false), Condvar::new()),
        });
        let syncing = journal.clone();
        let sync_thread = std::thread::Builder::new()
            .name("journal-sync".into())
            .spawn(move || syncing.sync_forever(sync_file, synced_tx))
            .map_err(io)?;
        if latest > clock.now_ms() + 1_000 {
            // Expiry waits for the clock to pass it: `statusads_clock_offset_seconds` shows it.
            tracing::warn!(
                ahead_ms = latest - clock.now_ms(),
                "the journal was written at a time ahead of this clock: keys expire as of that time until the clock passes it"
            );
        }
        let engine = InProcessRedis::durable(keyspace, latest, clock, journal.clone())
            .map_err(|e| StoreError::corrupt_from("the in-process Redis's Lua", e))?;
        let store = Self {
            redis: RedisStore::in_process(engine.clone(), metrics),
            engine,
            journal,
            data_dir: data_dir.to_path_buf(),
            generation: AtomicU64::new(generation),
            compact_bytes,
            sync_thread: Some(sync_thread),
            purged_at: AtomicI64::new(Millis::MIN / 2),
            compacted_at: AtomicI64::new(compacted_ms.unwrap_or(Millis::MIN)),
        };
        if translated {
            // Nothing of the earlier form is read again: the snapshot covers its journal.
            if !store.compact_over(0, store.compacted_at.load(Ordering::SeqCst))? {
                return Err(StoreError::corrupt(
                    "an earlier build's data dir could not be compacted into this build's form",
                ));
            }
            tracing::info!(data_dir = %data_dir.display(), "an earlier build's journal and snapshot are now in this build's form");
        }
        Ok(store)
    }

    /// The store every operation goes through.
    pub fn redis(&self) -> &RedisStore {
        &self.redis
    }

    /// What the exporter runs after each round: expiry (at most once a minute, it walks every
    /// key), then compaction once the journal is `compact_bytes` long and at least daily. The
    /// journal and the snapshot hold what the keyspace held when they were written, so what
    /// expired (sessions, reservations, users past their rules) leaves the disk within a day
    /// of leaving memory. The day counts from the last compaction, kept in the snapshot, so
    /// restarts do not postpone it (a data dir with no such snapshot is due at once).
    pub fn maintain(&self, now_ms: Millis) -> Result<(), StoreError> {
        let last = self.compacted_at.load(Ordering::SeqCst);
        let daily = last == Millis::MIN || now_ms - last >= DAY_MS;
        if daily || now_ms - self.purged_at.load(Ordering::SeqCst) >= PURGE_EVERY_MS {
            self.purged_at.store(now_ms, Ordering::SeqCst);
            self.engine.purge_expired();
        }
        let compacted = self.compact_over(if daily { 0 } else { self.compact_bytes }, now_ms);
        match compacted {
            Ok(true) => self.compacted_at.store(now_ms, Ordering::SeqCst),
            // Lines still to be fsynced, a damaged journal, a failed write: try again in a
            // minute, not at every round with a full walk each time.
            _ if daily => self
                .compacted_at
                .store(now_ms - DAY_MS + PURGE_EVERY_MS, Ordering::SeqCst),
            _ => {}
        }
        compacted.map(drop)
    }

    /// Once the journal is at least `min_bytes` long: writes the whole keyspace as a snapshot
    /// (the commands that make it), then begins the journal again after it, so a start runs
    /// one snapshot and a short journal instead of all history. Holds the engine's lock
    /// throughout (commands wait). A crash at any point leaves a start that reads the same
    /// keyspace: the snapshot is renamed into place whole, and a journal it covers is skipped
    /// (its generation says so). Answers whether it compacted. `compacted_ms`: what the
    /// snapshot records as the last daily compaction (`Millis::MIN`: none).
    fn compact_over(&self, min_bytes: u64, compacted_ms: Millis) -> Result<bool, StoreError> {
        let io = |e: std::io::Error| StoreError::unavailable_from("journal compaction", e);
        self.engine.locked(|keyspace, now_ms| {
            let journal = &self.journal;
            let mut file = journal.file.lock();
            let len = file.metadata().map_err(io)?.len();
            // Only with every line on disk: a line still to be fsynced might yet be cut back.
            if len < min_bytes
                || journal.damaged.load(Ordering::SeqCst)
                || journal.written.load(Ordering::SeqCst) != *journal.synced.borrow()
            {
                return Ok(false);
            }
            let commands = keyspace
                .dump(now_ms)
                .into_iter()
                .map(|args| {
                    args.into_iter()
                        .map(|arg| String::from_utf8_lossy(&arg).into_owned())
                        .collect()
                })
                .collect();
            let generation = self.generation.load(Ordering::SeqCst);
            let json = serde_json::to_string(&Snapshot {
                generation,
                compacted_ms: (compacted_ms != Millis::MIN).then_some(compacted_ms),
                now_ms,
                commands,
                state: None,
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
            // failure before the next generation has begun takes nothing more (restart).
            let switched = (|| {
                File::open(&self.data_dir)?.sync_all()?;
                file.set_len(0)?;
                begin_generation(&mut file, generation + 1)?;
                file.metadata().map(|m| m.len())
            })();
            let len_after = match switched {
                Ok(len) => len,
                Err(err) => {
                    journal.damaged.store(true, Ordering::SeqCst);
                    tracing::error!(error = %err, "journal compaction failed after the snapshot; refusing everything (restart)");
                    return Err(io(err));
                }
            };
            journal.synced_len.store(len_after, Ordering::SeqCst);
            self.generation.store(generation + 1, Ordering::SeqCst);
            tracing::info!(
                journal_bytes = len,
                snapshot_bytes = json.len(),
                "compacted the journal into a snapshot"
            );
            Ok(true)
        })
    }

    /// Erases the user, then compacts so that no journal line written before the erasure
    /// still names them (compaction waits for every line to be on disk: retried briefly
    /// while other writes are in flight). It writes the snapshot on this worker thread: an
    /// erasure is a rare operator request, and the embedded backend serves one node.
    pub async fn erase_user(&self, who: &UserLocator<'_>) -> Result<(), StoreError> {
        self.redis.erase_user(who).await?;
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

    pub fn write_trouble(&self) -> Option<&'static str> {
        self.journal.refusal()
    }
}

/// The snapshot at `path`, if any, read under the one reading policy (a one-line file).
fn read_snapshot(path: &Path) -> Result<Option<Snapshot>, StoreError> {
    let mut found = None;
    let tail = super::lines::read(path, |json| {
        found = Some(serde_json::from_str(json).map_err(|e| e.to_string())?);
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
        serde_json::to_string(&Line::Generation { generation }).map_err(std::io::Error::other)?;
    super::lines::append_durably(file, super::lines::encode(&json).as_bytes())
        .map_err(|failed| failed.error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::audience::Audience;
    use crate::domain::event::EventType;
    use crate::store::EventWrite;

    const T0: Millis = 1_795_000_000_000;
    const DAY: u32 = 20261118;

    fn scratch_with(lines: &[&str]) -> (PathBuf, u64) {
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

    /// On a clock that stands still: what a start reads back can be compared to the ms.
    fn open(dir: &Path, compact_bytes: u64) -> EmbeddedStore {
        let metrics = Arc::new(Metrics::default());
        let clock = crate::clock::ManualClock::new(crate::clock::datetime_from_ms(T0));
        EmbeddedStore::open_with(dir, compact_bytes, clock, metrics).unwrap()
    }

    async fn render(store: &EmbeddedStore, decision: &str) {
        let event = EventWrite {
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
        };
        let outcomes = store
            .redis()
            .apply_events(0, T0, DAY, &[event])
            .await
            .unwrap();
        assert_eq!(outcomes, [crate::store::EventOutcome::Accepted]);
    }

    async fn spent(store: &EmbeddedStore) -> i64 {
        let spend = store.redis().spend(DAY).await.unwrap();
        spend.values().map(|s| s.total_micros).sum()
    }

    async fn outbox_len(store: &EmbeddedStore) -> usize {
        let outbox = store.redis().outbox(&[0], 100).await.unwrap();
        outbox.iter().map(|(_, records)| records.len()).sum()
    }

    fn dump(store: &EmbeddedStore) -> Vec<Vec<Vec<u8>>> {
        store
            .engine
            .locked(|keyspace, now_ms| keyspace.dump(now_ms))
    }

    async fn outbox_ids(store: &EmbeddedStore) -> Vec<String> {
        let outbox = store.redis().outbox(&[0], 100).await.unwrap();
        outbox
            .into_iter()
            .flat_map(|(_, records)| records)
            .map(|(id, _)| id)
            .collect()
    }

    /// What a start reads back is the keyspace that was written: every write, at its instant.
    /// The clock stands still, so every outbox id is of one ms: after an export emptied the
    /// outbox and a compaction, the ids go on from the last one given, as the journal's later
    /// deletions name them.
    #[tokio::test]
    async fn a_journal_runs_again_into_the_same_keyspace() {
        let (dir, _) = scratch_with(&[]);
        let store = open(&dir, u64::MAX);
        for decision in ["d1", "d2"] {
            render(&store, decision).await;
        }
        let exported = outbox_ids(&store).await;
        store.redis().exported(&[(0, exported)]).await.unwrap();
        assert!(store.compact_over(0, Millis::MIN).unwrap());
        for decision in ["d3", "d4"] {
            render(&store, decision).await;
        }
        let ids = outbox_ids(&store).await;
        store
            .redis()
            .exported(&[(0, ids[..1].to_vec())])
            .await
            .unwrap();
        let written = dump(&store);
        assert!(written.len() > 5, "{written:?}");
        drop(store);
        let reopened = open(&dir, u64::MAX);
        assert_eq!(dump(&reopened), written);
        assert_eq!(
            outbox_ids(&reopened).await,
            ids[1..],
            "d4's record alone waits"
        );
        assert_eq!(spent(&reopened).await, 8_000);
        drop(reopened);
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// The journal is compacted at least daily, the day counted from the last compaction as
    /// the snapshot keeps it: a restart neither postpones it nor compacts again.
    #[tokio::test]
    async fn the_daily_compaction_counts_across_restarts() {
        let (dir, _) = scratch_with(&[]);
        let journal_len = || std::fs::metadata(dir.join(JOURNAL)).unwrap().len();
        let store = open(&dir, u64::MAX);
        store.maintain(T0).unwrap();
        let compacted = journal_len();
        render(&store, "d1").await;
        drop(store);

        let store = open(&dir, u64::MAX);
        store.maintain(T0 + 3_600_000).unwrap();
        assert!(
            journal_len() > compacted,
            "an hour on, after a restart: not due"
        );
        store.maintain(T0 + DAY_MS).unwrap();
        assert_eq!(journal_len(), compacted, "a day on: compacted");
        assert_eq!(spent(&store).await, 2_000);
        drop(store);
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A crash after the snapshot is in place but before the journal is begun again leaves the
    /// old journal beside a snapshot that holds it: the start skips it (nothing counted twice),
    /// and a journal begun after the snapshot is run on top of it.
    #[tokio::test]
    async fn a_snapshot_and_the_journal_it_covers_count_once() {
        let (dir, _) = scratch_with(&[]);
        let store = open(&dir, 1);
        for decision in ["d1", "d2"] {
            render(&store, decision).await;
        }
        let covered = std::fs::read(dir.join(JOURNAL)).unwrap();
        assert!(store.compact_over(1, Millis::MIN).unwrap());
        render(&store, "d3").await;
        assert_eq!(spent(&store).await, 6_000);
        assert_eq!(
            outbox_len(&store).await,
            3,
            "the outbox survives compaction"
        );
        drop(store);

        let reopened = open(&dir, u64::MAX);
        assert_eq!(
            spent(&reopened).await,
            6_000,
            "snapshot and the journal after it"
        );
        assert_eq!(outbox_len(&reopened).await, 3);
        drop(reopened);

        // The crash window: the snapshot renamed into place, the journal not yet begun again.
        std::fs::write(dir.join(JOURNAL), &covered).unwrap();
        let reopened = open(&dir, u64::MAX);
        assert_eq!(
            spent(&reopened).await,
            4_000,
            "the covered journal is skipped"
        );
        drop(reopened);
        // ...and it was begun again after the snapshot, so the next start agrees.
        let again = open(&dir, u64::MAX);
        assert_eq!(spent(&again).await, 4_000);
        drop(again);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn a_torn_tail_is_cut_but_an_unreadable_whole_entry_stops_the_start() {
        let good = super::super::lines::encode(
            r#"{"op":"commands","now_ms":1795000000000,"commands":[["SET","k","v"]]}"#,
        );
        let (dir, whole) = scratch_with(&[&good, "0badc0de {\"op\":\"comm"]);
        drop(open(&dir, u64::MAX));
        assert_eq!(
            std::fs::metadata(dir.join(JOURNAL)).unwrap().len(),
            good.len() as u64,
            "the torn tail was cut (it was {whole} bytes)"
        );
        std::fs::remove_dir_all(&dir).unwrap();

        // A checksummed entry this build cannot read, with acknowledged entries after it.
        let unknown = super::super::lines::encode(r#"{"op":"from_the_future"}"#);
        let (dir, len) = scratch_with(&[&good, &unknown, &good]);
        let metrics = Arc::new(Metrics::default());
        let clock = Arc::new(crate::clock::SystemClock);
        assert!(matches!(
            EmbeddedStore::open_with(&dir, u64::MAX, clock, metrics),
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
