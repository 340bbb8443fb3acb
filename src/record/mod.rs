//! The system of record: what must outlive any cache, in PostgreSQL (`store.database_url`,
//! required with Redis) or SQLite (`data_dir/statusads.db`, the embedded backend). Today it
//! holds the catalog (advertisers, campaigns, creatives), every campaign's change history and
//! the creative asset bytes, and the ledger: every accepted event, conversion and business
//! message, exported from the hot store's outbox, with the counters reports read. The hot store
//! (Redis or the embedded journal) keeps hot, expiring state and the outbox. See DESIGN.md, "Storage: hot state and the system of record".
//!
//! # Layout
//!
//! - this module: opening either database through one `sqlx::AnyPool` (the same SQL runs on
//!   both; the schema differs only where the types do, so each has its migrations under
//!   `migrations/<database>/`, run at every start), and the error mapping.
//! - [`catalog`]: catalog records stamped with catalog versions, and campaign history.
//! - [`assets`]: content-addressed asset bytes.
//! - [`ledger`]: ledger records and report counters, written exactly once; invoice and report
//!   reads.
//! - [`exporter`]: the task that moves the outbox into the ledger and keeps `as_of`.
//! - [`outages`]: every node's outage spool that holds events Redis has not seen, which
//!   `as_of` waits for.
//! - [`migration`]: the one-time move of a deployment's catalog and assets out of Redis or an
//!   embedded journal.
//!
//! Encodings stay here: callers see domain types and `CatalogData`, never rows.

pub mod assets;
pub mod catalog;
pub mod conversions;
pub mod exporter;
pub mod insight;
pub mod ledger;
pub mod migration;
pub mod outages;
mod schema;

use std::path::Path;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;

use crate::store::StoreError;

/// Which database the record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Database {
    Postgres,
    Sqlite,
}

pub struct Record {
    pool: AnyPool,
    database: Database,
}

/// The SQLite file of the embedded backend.
pub const SQLITE_FILE: &str = "statusads.db";

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("store.database_url: cannot connect to the system of record: {0}")]
    Connect(String),
    #[error("store.database_url: cannot migrate the system of record: {0}")]
    Migrate(String),
}

impl Record {
    /// Opens the record at `database_url`, or SQLite under `data_dir` when it is empty, and
    /// brings its schema up to date.
    pub async fn open(database_url: &str, data_dir: &Path) -> Result<Self, OpenError> {
        sqlx::any::install_default_drivers();
        let (url, database) = if database_url.is_empty() {
            // `mode=rwc`: created on first start. FULL sync: a write is on disk when it returns.
            let path = data_dir.join(SQLITE_FILE);
            (
                format!("sqlite://{}?mode=rwc", path.display()),
                Database::Sqlite,
            )
        } else {
            (database_url.to_owned(), Database::Postgres)
        };
        let pool = AnyPoolOptions::new()
            // One writer at a time is what SQLite allows anyway; a pool of one avoids
            // "database is locked" between our own connections.
            .max_connections(match database {
                Database::Sqlite => 1,
                Database::Postgres => 8,
            })
            .acquire_timeout(Duration::from_secs(5))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if database == Database::Sqlite {
                        sqlx::query("PRAGMA journal_mode = WAL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA synchronous = FULL")
                            .execute(&mut *conn)
                            .await?;
                    } else {
                        // A node that stops mid-transaction (frozen, partitioned) would hold its
                        // row locks until TCP gives up, hours later, and with them every other
                        // node's catalog writes (the version row) and exports (the same record
                        // ids): the server ends such a session after 30 s instead.
                        sqlx::query("SET idle_in_transaction_session_timeout = '30s'")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            // sqlx errors can echo the URL (with its password): name the cause only.
            .map_err(|err| OpenError::Connect(describe(&err)))?;
        schema::migrator(database)
            .await
            .map_err(|err| OpenError::Migrate(err.to_string()))?
            .run(&pool)
            .await
            .map_err(|err| OpenError::Migrate(err.to_string()))?;
        Ok(Self { pool, database })
    }

    pub fn database(&self) -> Database {
        self.database
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(unavailable)
    }

    /// The rows of `sql`, whose parameters are a campaign ($1) and a range `[from_ms, to_ms)`
    /// ($2, $3): the shape of every per-campaign report read.
    async fn campaign_rows(
        &self,
        sql: &str,
        campaign: &str,
        from_ms: crate::clock::Millis,
        to_ms: crate::clock::Millis,
    ) -> Result<Vec<sqlx::any::AnyRow>, StoreError> {
        sqlx::query(sql)
            .bind(campaign)
            .bind(from_ms)
            .bind(to_ms)
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)
    }
}

/// A failure to reach or use the database: an outage (retryable); answers carry no internals.
fn unavailable(err: sqlx::Error) -> StoreError {
    match err {
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_) => StoreError::corrupt_from("system of record", err),
        other => StoreError::unavailable_from("system of record", other),
    }
}

fn describe(err: &sqlx::Error) -> String {
    match err {
        sqlx::Error::Database(db) => db.message().to_owned(),
        sqlx::Error::Io(io) => io.to_string(),
        sqlx::Error::PoolTimedOut => "no connection within 5 s".into(),
        other => other.to_string(),
    }
}
