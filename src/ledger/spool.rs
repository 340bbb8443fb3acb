//! The outage spool: while Redis is unreachable, verified events are appended to a bounded file
//! under `data_dir` (fsynced, checksummed lines) and acknowledged; when Redis answers again they
//! are replayed in order through the same atomic script, whose per-(token, type) dedupe makes a
//! replay (even a repeated one after a crash mid-replay) count each event exactly once. When the
//! spool is full, events are refused with 503, never dropped. While it holds anything, new
//! events queue behind it, so a view never overtakes its spooled render.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::clock::Millis;
use crate::store::{lines, EventWrite, Store, StoreError};

const FILE: &str = "spool.log";

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
    #[error("cannot write the outage spool: {0}")]
    Io(#[from] std::io::Error),
}

pub struct Spool {
    path: PathBuf,
    max_bytes: u64,
    /// Serialises appends and replays (a replay truncates the file).
    file: tokio::sync::Mutex<File>,
    bytes: AtomicU64,
    events: AtomicU64,
    damaged: std::sync::atomic::AtomicBool,
}

impl Spool {
    /// Opens the spool, counting what a previous run left in it (replayed on the next drain).
    pub fn open(data_dir: &Path, max_bytes: u64) -> std::io::Result<Self> {
        let path = data_dir.join(FILE);
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)?;
        let (bytes, events) = batches(&path)?.iter().fold((0, 0), |(b, e), (len, batch)| {
            (b + len, e + batch.events.len() as u64)
        });
        // Cut a torn tail (a crash mid-append, never acknowledged) so new batches follow the
        // last intact one instead of hiding behind the damage.
        file.set_len(bytes)?;
        file.sync_all()?;
        Ok(Self {
            path,
            max_bytes,
            file: tokio::sync::Mutex::new(file),
            bytes: AtomicU64::new(bytes),
            events: AtomicU64::new(events),
            damaged: Default::default(),
        })
    }

    /// Events waiting for Redis.
    pub fn pending(&self) -> u64 {
        self.events.load(Ordering::SeqCst)
    }

    /// Appends one shard's events durably (fsync) before they are acknowledged.
    pub async fn push(
        &self,
        shard: u32,
        now_ms: Millis,
        day: u32,
        events: &[EventWrite],
    ) -> Result<(), SpoolError> {
        let batch = Batch {
            shard,
            now_ms,
            day,
            events: events.to_vec(),
        };
        let line = lines::encode(&serde_json::to_string(&batch).map_err(std::io::Error::other)?);
        let mut file = self.file.lock().await;
        if self.damaged.load(Ordering::SeqCst) {
            return Err(SpoolError::Io(std::io::Error::other(
                "spool damaged by an earlier write error",
            )));
        }
        if self.bytes.load(Ordering::SeqCst) + line.len() as u64 > self.max_bytes {
            return Err(SpoolError::Full);
        }
        if let Err(failed) = lines::append_durably(&mut file, &line) {
            // A partial line left behind would hide every later batch: stop taking more.
            self.damaged.store(!failed.repaired, Ordering::SeqCst);
            return Err(SpoolError::Io(failed.error));
        }
        self.bytes.fetch_add(line.len() as u64, Ordering::SeqCst);
        self.events.fetch_add(events.len() as u64, Ordering::SeqCst);
        Ok(())
    }

    /// Replays everything into the store, oldest first, then empties the spool. Stops at the
    /// first store error (Redis still away); the next drain starts over, which dedupe makes safe.
    pub async fn drain(&self, store: &Store) -> Result<u64, StoreError> {
        let file = self.file.lock().await;
        if self.events.load(Ordering::SeqCst) == 0 {
            return Ok(0);
        }
        let batches = batches(&self.path).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut replayed = 0;
        for (_, batch) in &batches {
            store
                .apply_events(batch.shard, batch.now_ms, batch.day, &batch.events)
                .await?;
            replayed += batch.events.len() as u64;
        }
        file.set_len(0)
            .and_then(|_| file.sync_all())
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.bytes.store(0, Ordering::SeqCst);
        self.events.store(0, Ordering::SeqCst);
        Ok(replayed)
    }
}

/// The intact batches of the spool file with their line lengths; a torn last line (a crash
/// mid-append, never acknowledged) is ignored.
fn batches(path: &Path) -> std::io::Result<Vec<(u64, Batch)>> {
    let mut out = Vec::new();
    let mut reader = BufReader::new(File::open(path)?);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(out);
        }
        match lines::decode(&line).and_then(|json| serde_json::from_str::<Batch>(json).ok()) {
            Some(batch) => out.push((line.len() as u64, batch)),
            None => return Ok(out),
        }
    }
}
