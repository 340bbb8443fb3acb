//! statusads: sponsored items in a messaging app's Status feed. It decides which ads go between a
//! user's statuses, caps how often each user sees them, counts every billable render exactly once
//! and bills advertisers from a durable ledger.
//!
//! # Layout
//!
//! - [`config`]: typed settings, layered defaults < file < `STATUSADS__*` environment.
//! - [`startup`]: `Application::build` wires store, catalog, refresher and HTTP server.
//! - [`shutdown`]: the signal that stops background tasks in order when the server stops.
//! - [`clock`]: `now` as an injectable dependency (tests move time, scripts receive it).
//! - [`domain`]: parse-once newtypes and entities; validation with stable error codes.
//! - [`catalog`]: advertisers, campaigns, creatives; the lock-free snapshot decisions read;
//!   content-addressed creative assets; the local cache a node starts from without Redis.
//! - [`media`]: recognising uploads by content and checking size, 9:16 and duration by headers.
//! - [`selection`]: pure decision logic: eligibility, placement, tiers, second-price auction.
//! - [`capping`]: per-user state rules: rolling-window caps, reservations, hides, sessions, the
//!   check a decision must pass on the live state, and this node's recent views of users.
//! - [`serving`]: the slot-decision use case (decide on the recent view, commit-or-recompute, sign).
//! - [`privacy`]: consent, the signed state a user without personalisation carries, and the
//!   rights of access and erasure.
//! - [`insight`]: advertiser insight: delivery diagnostics from sampled decisions, forecasts
//!   replaying the sampled requests.
//! - [`tokens`]: signed, expiring slot tokens with key ids.
//! - [`ledger`]: event ingestion (dedupe, caps, spend, append), spend holds and pacing,
//!   reports, invoices, reconciliation, click-to-chat conversions and business messages.
//! - [`messaging`]: pure rating of business messages (service windows, free entry points).
//! - [`record`]: the system of record (PostgreSQL or SQLite): catalog, campaign history,
//!   creative assets.
//! - [`store`]: the hot state: the `redis` and `embedded` backends behind capping and ledger; the
//!   one codec of what they store; the circuit breaker in front of Redis.
//! - [`http`]: the actix-web boundary, one module per resource; each handler carries its
//!   OpenAPI operation.
//! - [`codes`]: the one table of error codes and their HTTP statuses.
//! - [`metrics`]: the one catalogue of Prometheus metrics.
//! - [`demo`]: demo data for the quick start.
//! - [`secrets`]: generated tokens and keys, kept under `data_dir` (owner-only) across restarts.

/// Every binary linking the crate (the service, its tests and benches) allocates with mimalloc:
/// a decision makes a few hundred short-lived allocations across threads, and glibc's malloc
/// and free took about a sixth of its CPU in the load bench's profile.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod capping;
pub mod catalog;
pub mod clock;
pub mod codes;
pub mod config;
pub mod demo;
pub mod domain;
pub mod http;
pub mod insight;
pub mod ledger;
pub mod media;
pub mod messaging;
pub mod metrics;
pub mod privacy;
pub mod record;
pub mod secrets;
pub mod selection;
pub mod serving;
pub mod shutdown;
pub mod startup;
pub mod store;
pub mod tokens;
