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
//! Writes can be answered late or not at all. Each listing therefore carries a token, and a
//! removal names the listing it removes, so a removal answered late cannot remove a later
//! listing; and each export round holds the list against this node's spool
//! (`Spool::reconcile_listing`): a row left behind an empty spool (an earlier run's, an insert
//! answered after its withdrawal) is withdrawn, a spool whose row is missing is listed again.
//!
//! A node gone for good with events in its spool holds `as_of`, and with it erasures, on every
//! node until an operator forgets it (`statusads spools --forget NODE`): its events were
//! acknowledged and are not in the record, so that is the truth to report.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::Row;

use super::{unavailable, Record};
use crate::clock::Millis;
use crate::store::StoreError;

/// The file under `data_dir` that keeps this node's id, the same at every start.
pub const NODE_ID_FILE: &str = "node_id";

/// The registration's writes wait at most this: an event batch waits for the first before it is
/// acknowledged into the spool.
const DEADLINE: Duration = Duration::from_secs(2);

/// How long after a listing failed an event batch is refused at once instead of trying again:
/// while the record is away, each try would hold the spool's lock for the whole deadline.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// One node's spool as the record lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutageSpool {
    pub node: String,
    /// No event of the spool was acknowledged before this instant (the listing node's clock).
    pub since_ms: Millis,
    /// Names this listing: a removal names the listing it removes.
    pub token: String,
}

/// This node's entry among the outage spools. Its calls are made under the spool's lock, so
/// they never overlap; the mutex is there for `Sync`, never held across an await.
pub struct Registration {
    record: Arc<Record>,
    node: String,
    state: parking_lot::Mutex<Listing>,
}

#[derive(Default)]
struct Listing {
    /// The listing this run last wrote or tried to write: it may be in the record (an insert
    /// whose answer was lost may still have committed) until a withdrawal removes it.
    token: Option<String>,
    /// The record is known to hold it.
    confirmed: bool,
    /// When a write of it last failed.
    failed_at: Option<Instant>,
}

impl Registration {
    /// This node's registration under the id kept in `data_dir` (created on first start). A
    /// row an earlier run left is the export rounds' to find (`Spool::reconcile_listing`).
    pub fn open(record: Arc<Record>, data_dir: &Path) -> std::io::Result<Self> {
        let node = crate::secrets::kept(data_dir, NODE_ID_FILE, "node_", 16)?.value;
        Ok(Self {
            record,
            node,
            state: Default::default(),
        })
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// Makes sure the record lists this node's spool, since `since_ms` unless it is listed
    /// since earlier, before an event is acknowledged into it. Within a second of a failed
    /// try, fails at once.
    pub async fn ensure(&self, since_ms: Millis) -> Result<(), StoreError> {
        let token = {
            let mut listing = self.state.lock();
            if listing.confirmed {
                return Ok(());
            }
            if listing
                .failed_at
                .is_some_and(|at| at.elapsed() < RETRY_AFTER)
            {
                return Err(StoreError::unavailable(
                    "system of record: listing the outage spool failed moments ago",
                ));
            }
            let token = crate::secrets::random("");
            listing.token = Some(token.clone());
            token
        };
        let written = tokio::time::timeout(
            DEADLINE,
            self.record
                .register_outage_spool(&self.node, since_ms, &token),
        )
        .await
        .map_err(|_| StoreError::unavailable("system of record: listing the outage spool"))
        .and_then(|done| done);
        let mut listing = self.state.lock();
        match written {
            Ok(()) => {
                listing.confirmed = true;
                listing.failed_at = None;
            }
            Err(_) => listing.failed_at = Some(Instant::now()),
        }
        written
    }

    /// Whether a listing of this run may be in the record.
    pub fn listed(&self) -> bool {
        self.state.lock().token.is_some()
    }

    /// The record lacks this node's listing although its spool holds events (a withdrawal
    /// whose answer was lost, an operator who forgot a live node): the next
    /// [`Registration::ensure`] writes a new one.
    pub fn missing(&self) {
        self.state.lock().confirmed = false;
    }

    /// Removes this run's listing, once the spool is empty.
    pub async fn withdraw(&self) -> Result<(), StoreError> {
        let token = self.state.lock().token.clone();
        match token {
            Some(token) => self.withdraw_listed(&token).await,
            None => Ok(()),
        }
    }

    /// Removes the listing `token` of this node, whose spool is empty: this run's, an earlier
    /// run's, or an insert answered after its withdrawal.
    pub async fn withdraw_listed(&self, token: &str) -> Result<(), StoreError> {
        // Before the delete: one that commits but whose answer is lost must not leave the next
        // push believing the row is there.
        self.state.lock().confirmed = false;
        tokio::time::timeout(
            DEADLINE,
            self.record.forget_outage_listing(&self.node, token),
        )
        .await
        .map_err(|_| StoreError::unavailable("system of record: withdrawing the outage spool"))??;
        let mut listing = self.state.lock();
        if listing.token.as_deref() == Some(token) {
            listing.token = None;
        }
        Ok(())
    }
}

impl Record {
    /// Lists `node`'s spool as `token`, since `since_ms` or since its listed instant if that
    /// is older.
    pub async fn register_outage_spool(
        &self,
        node: &str,
        since_ms: Millis,
        token: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO outage_spools (node, since_ms, token) VALUES ($1, $2, $3) \
             ON CONFLICT (node) DO UPDATE SET token = excluded.token, since_ms = CASE \
             WHEN excluded.since_ms < outage_spools.since_ms THEN excluded.since_ms \
             ELSE outage_spools.since_ms END",
        )
        .bind(node)
        .bind(since_ms)
        .bind(token)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    /// Removes `node`'s listing `token`, if it is still that one.
    pub async fn forget_outage_listing(&self, node: &str, token: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM outage_spools WHERE node = $1 AND token = $2")
            .bind(node)
            .bind(token)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Removes `node`'s row whatever its listing (an operator's call); answers whether there
    /// was one.
    pub async fn forget_outage_spool(&self, node: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM outage_spools WHERE node = $1")
            .bind(node)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(done.rows_affected() > 0)
    }

    /// Every node's listed spool, oldest first.
    pub async fn outage_spools(&self) -> Result<Vec<OutageSpool>, StoreError> {
        let rows =
            sqlx::query("SELECT node, since_ms, token FROM outage_spools ORDER BY since_ms, node")
                .fetch_all(&self.pool)
                .await
                .map_err(unavailable)?;
        rows.iter()
            .map(|row| {
                Ok(OutageSpool {
                    node: row.try_get(0).map_err(unavailable)?,
                    since_ms: row.try_get(1).map_err(unavailable)?,
                    token: row.try_get(2).map_err(unavailable)?,
                })
            })
            .collect()
    }
}
