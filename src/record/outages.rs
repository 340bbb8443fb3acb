//! Every node's outage spool as the record lists it: which nodes hold events they acknowledged
//! during a Redis outage and Redis has not seen yet, and since when.
//!
//! `as_of` promises that every event acknowledged before it is in the record. An exporter sees
//! only the outboxes, and another node's spool is in neither, so a node lists its spool here
//! before it acknowledges the first event into it ([`Registration::ensure`], under the spool's
//! lock) and withdraws it under the same lock once a replay has emptied the spool. No export
//! round moves `as_of` while any spool is listed (see [`super::exporter`] for why the order of
//! its reads makes that exact; `since_ms` is for operators, since nodes' clocks differ).
//!
//! Writes can be answered late or not at all, so each export round also holds the list against
//! this node's spool (`Spool::reconcile_listing`): a row left behind an empty spool is
//! withdrawn, and a spool holding events its row lacks is listed again.
//!
//! A node gone for good with events in its spool holds `as_of`, and with it erasures, on every
//! node until an operator forgets it (`statusads spools --forget NODE`): its events were
//! acknowledged and are not in the record, so that is the truth to report.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::Row;

use super::{unavailable, Record};
use crate::clock::Millis;
use crate::store::StoreError;

/// The file under `data_dir` that keeps this node's id, the same at every start.
pub const NODE_ID_FILE: &str = "node_id";

/// The registration's writes wait at most this: an event batch waits for the first before it is
/// acknowledged into the spool.
const DEADLINE: Duration = Duration::from_secs(2);

/// One node's spool as the record lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutageSpool {
    pub node: String,
    /// No event of the spool was acknowledged before this instant.
    pub since_ms: Millis,
}

/// This node's entry among the outage spools.
pub struct Registration {
    record: Arc<Record>,
    node: String,
    /// A row of this node's may be in the record: set before every insert, cleared only by a
    /// withdrawal that succeeded (an insert whose answer was lost may still have committed).
    may_exist: AtomicBool,
    /// A row is known to be in the record since the last withdrawal.
    confirmed: AtomicBool,
}

impl Registration {
    /// This node's registration under the id kept in `data_dir` (created on first start). A
    /// row an earlier run left is assumed until the first withdrawal removes it.
    pub fn open(record: Arc<Record>, data_dir: &Path) -> std::io::Result<Self> {
        let node = crate::secrets::kept(data_dir, NODE_ID_FILE, "node_", 16)?.value;
        Ok(Self {
            record,
            node,
            may_exist: AtomicBool::new(true),
            confirmed: AtomicBool::new(false),
        })
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// Makes sure the record lists this node's spool, since `since_ms` unless it is listed
    /// already, before an event is acknowledged into it.
    pub async fn ensure(&self, since_ms: Millis) -> Result<(), StoreError> {
        if self.confirmed.load(Ordering::SeqCst) {
            return Ok(());
        }
        self.may_exist.store(true, Ordering::SeqCst);
        tokio::time::timeout(
            DEADLINE,
            self.record.register_outage_spool(&self.node, since_ms),
        )
        .await
        .map_err(|_| StoreError::unavailable("system of record: registering the outage spool"))??;
        self.confirmed.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Whether a row may be left for [`Registration::withdraw`].
    pub fn listed(&self) -> bool {
        self.may_exist.load(Ordering::SeqCst)
    }

    /// What the record shows overrides what this node believes: a row it shows is removed by
    /// the next withdrawal, a row it lacks is written by the next [`Registration::ensure`].
    pub fn seen(&self, listed: bool) {
        if listed {
            self.may_exist.store(true, Ordering::SeqCst);
        } else {
            self.confirmed.store(false, Ordering::SeqCst);
        }
    }

    /// Removes this node's row, once its spool is empty.
    pub async fn withdraw(&self) -> Result<(), StoreError> {
        if !self.listed() {
            return Ok(());
        }
        // Before the delete: one that commits but whose answer is lost must not leave the next
        // push believing the row is there.
        self.confirmed.store(false, Ordering::SeqCst);
        tokio::time::timeout(DEADLINE, self.record.forget_outage_spool(&self.node))
            .await
            .map_err(|_| {
                StoreError::unavailable("system of record: withdrawing the outage spool")
            })??;
        self.may_exist.store(false, Ordering::SeqCst);
        Ok(())
    }
}

impl Record {
    /// Lists `node`'s spool since `since_ms`, or since its listed instant if that is older.
    pub async fn register_outage_spool(
        &self,
        node: &str,
        since_ms: Millis,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO outage_spools (node, since_ms) VALUES ($1, $2) \
             ON CONFLICT (node) DO UPDATE SET since_ms = CASE \
             WHEN excluded.since_ms < outage_spools.since_ms THEN excluded.since_ms \
             ELSE outage_spools.since_ms END",
        )
        .bind(node)
        .bind(since_ms)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    /// Removes `node`'s row; answers whether there was one.
    pub async fn forget_outage_spool(&self, node: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM outage_spools WHERE node = $1")
            .bind(node)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(done.rows_affected() > 0)
    }

    /// Every node's registered spool, oldest first.
    pub async fn outage_spools(&self) -> Result<Vec<OutageSpool>, StoreError> {
        let rows = sqlx::query("SELECT node, since_ms FROM outage_spools ORDER BY since_ms, node")
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        rows.iter()
            .map(|row| {
                Ok(OutageSpool {
                    node: row.try_get(0).map_err(unavailable)?,
                    since_ms: row.try_get(1).map_err(unavailable)?,
                })
            })
            .collect()
    }
}
