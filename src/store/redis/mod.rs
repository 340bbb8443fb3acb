//! The Redis backend. Every call is bounded by `store.timeout_ms` (an outage must never hold a
//! request) and goes through the circuit breaker (`store::breaker`), which after a few failures
//! in a row fails calls at once until its probe sees Redis answer; scripts are loaded once and
//! invoked by SHA (see `lua`), and `now` is always passed in.
//!
//! The connections are made at start if Redis answers, otherwise by the first probe that
//! reaches it: a node starts (and serves empty slots, spooling events) while Redis is away.
//!
//! Every Redis future is polled inside the runtime the store was opened on (its "home", see
//! [`OnHome`]). The client spawns reconnection tasks and timers on whatever runtime polls it;
//! actix-web's workers each run their own, and they stop before the home runtime does, so a
//! reconnection started from a worker could be awaited from another runtime after its own had
//! shut down, which panics ("A Tokio 1.x context was found, but it is being shutdown").
//! The request path's scripts instead run on each worker's own connection where it has one
//! (see `worker`): no thread hop per decision.

mod files;
pub mod in_process;
pub mod keys;
mod lua;
mod worker;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::AsyncCommands;

use self::lua::{LuaScript, Scripts};
use super::breaker::{Breaker, BreakerPolicy};
use super::codec::{self, SessionValue};

use super::{
    CatalogData, ClickOwner, CommitOutcome, ConversionOutcome, ConversionRecord, ConversionWrite,
    DecisionCommit, EventOutcome, EventWrite, Keeping, MessageCommit, MessageOutcome,
    SettleOutcome, SettleWrite, StoreError, StoredMessage, StoredSession, UserClick, UserLocator,
    UserRecords, UserView, CLICK_TTL_MS, MESSAGE_DEDUPE_MS, SPEND_DAY_TTL_MS,
};
use crate::capping::{UserState, HIDE_MS, UNEXPIRING_USER_TTL_MS};
use crate::clock::{Millis, SystemClock};
use crate::domain::campaign::Spend;
use crate::domain::ids::CampaignId;
use crate::ledger::reconcile::{LedgerKind, LedgerRecord};
use crate::messaging::Conversation;
use crate::metrics::{Metrics, RedisOp};
use crate::shutdown::Shutdown;

const BULK_TIMEOUT: Duration = Duration::from_secs(30);
/// An export's outbox page (at most 200 records a shard) or its deletion takes Redis
/// milliseconds: a round waits no longer than this on a connection that stopped answering, so
/// `as_of` moves again soon after new connections are made.
const OUTBOX_TIMEOUT: Duration = Duration::from_secs(5);
/// Budgets read every node's spend every second: a read (two hashes a shard, pipelined) waits
/// no longer than this on a connection that stopped answering, so the next one, on the
/// connections the probe made anew, comes soon after Redis answers again.
const SPEND_TIMEOUT: Duration = Duration::from_secs(5);

/// A Redis node asked about its own files (see `files`).
struct FileNode {
    /// The node's field in `keys::AOF_FILES`: its address, `primary` when standalone.
    name: String,
    /// Where the cluster client reaches it; standalone, the one connection there is.
    address: Option<(String, u16)>,
}

/// A connection to standalone Redis or to a Redis Cluster. Every command (and every pipeline
/// or script) this store sends touches keys of one hash slot, so the cluster client can route
/// it; only the per-shard scans need one request per shard there (see `per_shard`).
#[derive(Clone)]
// Cloned for every call: boxing the larger variant would allocate on the hot path instead.
#[allow(clippy::large_enum_variant)]
enum Conn {
    Single(ConnectionManager),
    Cluster(redis::cluster_async::ClusterConnection),
    /// An actix-web worker's own (see `worker`).
    Worker(redis::aio::MultiplexedConnection),
    InProcess(in_process::InProcessRedis),
}

impl redis::aio::ConnectionLike for Conn {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
            Conn::Worker(c) => c.req_packed_command(cmd),
            Conn::InProcess(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Worker(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::InProcess(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        0
    }
}

pub struct RedisStore {
    clients: Clients,
    /// Made at the start or by the first probe that reaches Redis, and made again by a probe
    /// when they stop answering (see [`probe`](Self::probe)).
    conns: arc_swap::ArcSwapOption<Conns>,
    cluster: bool,
    shards: u32,
    timeout: Duration,
    scripts: Scripts,
    metrics: Arc<Metrics>,
    breaker: Breaker,
    home: tokio::runtime::Handle,
    /// Names this store's connections on the actix-web workers (see `worker`).
    id: u64,
    /// Calls that found Redis unavailable so far: worker connections begun before the last one
    /// are made again (see `worker::connection`).
    unavailable: std::sync::atomic::AtomicU64,
}

/// What connections are made from (parsed at start: a bad address stops the start).
enum Clients {
    Single(redis::Client),
    /// Hot-path and bulk clients (boxed: read only when connecting).
    Cluster(Box<[redis::cluster::ClusterClient; 2]>),
    /// `redis_url` [`in_process::URL`]: the in-process Redis (tests and development).
    InProcess(in_process::InProcessRedis),
}

#[derive(Clone)]
struct Conns {
    /// The request path: decisions, events, messages.
    hot: Conn,
    /// Bulk reads (catalog, spend, reports, ledger) get their own connection: a large reply
    /// must not queue the next decision behind it on the multiplexed hot-path connection.
    bulk: Conn,
}

impl RedisStore {
    /// Connects to `url`, or to the Redis Cluster behind `cluster_nodes` when any are given.
    /// A Redis that does not answer now is no error: the store starts with its breaker open
    /// and the probe connects when Redis comes (see [`probe_while_open`](Self::probe_while_open)).
    pub async fn connect(
        url: &str,
        cluster_nodes: &[String],
        shards: u32,
        timeout_ms: u64,
        breaker: BreakerPolicy,
        metrics: Arc<Metrics>,
        in_process_clock: crate::clock::SharedClock,
    ) -> Result<Self, StoreError> {
        let timeout = Duration::from_millis(timeout_ms);
        let bad_address = |e: redis::RedisError| StoreError::corrupt_from("Redis address", e);
        let clients = if url == in_process::URL && cluster_nodes.is_empty() {
            tracing::warn!("the in-process Redis keeps everything in memory: nothing survives a stop (for tests and development, never for billing)");
            Clients::InProcess(
                in_process::InProcessRedis::new(in_process_clock)
                    .map_err(|e| StoreError::corrupt_from("the in-process Redis's Lua", e))?,
            )
        } else if cluster_nodes.is_empty() {
            Clients::Single(redis::Client::open(url).map_err(bad_address)?)
        } else {
            let cluster = |response_timeout| {
                redis::cluster::ClusterClient::builder(cluster_nodes.to_vec())
                    .connection_timeout(timeout)
                    .response_timeout(response_timeout)
                    .retries(1)
                    .build()
            };
            Clients::Cluster(Box::new([
                cluster(timeout).map_err(bad_address)?,
                cluster(BULK_TIMEOUT).map_err(bad_address)?,
            ]))
        };
        let mut store = Self::unconnected(clients, shards, timeout, breaker, metrics);
        match store.establish().await {
            Ok(conns) => store.conns.store(Some(Arc::new(conns))),
            Err(err) => {
                tracing::warn!(error = %err.report(), "Redis unreachable at start: serving without it until a probe reaches it");
                store.breaker =
                    Breaker::new(breaker, Arc::new(SystemClock), store.metrics.clone(), true);
            }
        }
        Ok(store)
    }

    /// The store on `redis`, an in-process Redis with a journal: the embedded backend (see
    /// `store::embedded`). One shard (its earlier journals name none), no deadline (see
    /// `attempt`), and no breaker: a write the journal cannot take fails alone.
    pub fn in_process(redis: in_process::InProcessRedis, metrics: Arc<Metrics>) -> Self {
        let never_opens = BreakerPolicy {
            failures_to_open: u32::MAX,
            probe_every_ms: 60_000,
        };
        let conns = in_process_conns(&redis);
        let store = Self::unconnected(
            Clients::InProcess(redis),
            1,
            BULK_TIMEOUT,
            never_opens,
            metrics,
        );
        store.conns.store(Some(Arc::new(conns)));
        store
    }

    /// The store on `clients`, its connections not made yet, its breaker closed.
    fn unconnected(
        clients: Clients,
        shards: u32,
        timeout: Duration,
        breaker: BreakerPolicy,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            cluster: matches!(clients, Clients::Cluster(_)),
            clients,
            conns: arc_swap::ArcSwapOption::empty(),
            shards,
            timeout,
            scripts: Scripts::default(),
            breaker: Breaker::new(breaker, Arc::new(SystemClock), metrics.clone(), false),
            metrics,
            home: tokio::runtime::Handle::current(),
            id: worker::new_store_id(),
            unavailable: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Opens both connections, each attempt bounded.
    async fn establish(&self) -> Result<Conns, StoreError> {
        let timeout = self.timeout;
        let no_answer = || StoreError::unavailable("no answer from Redis");
        let (hot, bulk) = match &self.clients {
            Clients::Single(client) => {
                let manager = |response_timeout| {
                    let config = ConnectionManagerConfig::new()
                        .set_connection_timeout(timeout)
                        .set_response_timeout(response_timeout)
                        .set_number_of_retries(1);
                    ConnectionManager::new_with_config(client.clone(), config)
                };
                let hot = tokio::time::timeout(timeout * 4, manager(timeout))
                    .await
                    .map_err(|_| no_answer())?
                    .map_err(unavailable)?;
                let bulk = tokio::time::timeout(timeout * 4, manager(BULK_TIMEOUT))
                    .await
                    .map_err(|_| no_answer())?
                    .map_err(unavailable)?;
                (Conn::Single(hot), Conn::Single(bulk))
            }
            Clients::Cluster(clients) => {
                let [hot, bulk] = &**clients;
                let hot = tokio::time::timeout(timeout * 8, hot.get_async_connection())
                    .await
                    .map_err(|_| no_answer())?
                    .map_err(unavailable)?;
                let bulk = tokio::time::timeout(timeout * 8, bulk.get_async_connection())
                    .await
                    .map_err(|_| no_answer())?
                    .map_err(unavailable)?;
                (Conn::Cluster(hot), Conn::Cluster(bulk))
            }
            Clients::InProcess(redis) => return Ok(in_process_conns(redis)),
        };
        Ok(Conns { hot, bulk })
    }

    fn not_connected() -> StoreError {
        StoreError::unavailable("not connected to Redis yet")
    }

    /// The request-path connection.
    fn conn(&self) -> Result<Conn, StoreError> {
        let conns = self.conns.load();
        Ok(conns.as_ref().ok_or_else(Self::not_connected)?.hot.clone())
    }

    fn bulk(&self) -> Result<Conn, StoreError> {
        let conns = self.conns.load();
        Ok(conns.as_ref().ok_or_else(Self::not_connected)?.bulk.clone())
    }

    /// While the breaker is open, one probe per `store.breaker_probe_ms`: connect if never
    /// connected, then PING both connections with the request deadline; both answering closes
    /// the breaker. Runs until `shutdown`; sleeps while the breaker is closed.
    pub async fn probe_while_open(&self, shutdown: &mut Shutdown) {
        loop {
            tokio::select! {
                _ = shutdown.recv() => return,
                _ = self.breaker.wait_open() => {}
            }
            let Some(due) = self.breaker.probe_in() else {
                continue;
            };
            tokio::select! {
                _ = shutdown.recv() => return,
                _ = tokio::time::sleep(due) => {}
            }
            let answered = tokio::select! {
                _ = shutdown.recv() => return,
                answered = self.probe() => answered,
            };
            self.breaker.probed(answered);
        }
    }

    /// The connections answer, or fresh ones do (and replace them). A connection whose peer
    /// vanished without a reset (a failover behind an address, a dropped route) never fails on
    /// its own: every call on it just times out, so probing it again would keep the breaker
    /// open for good.
    async fn probe(&self) -> bool {
        if let Some(conns) = self.conns.load_full() {
            if self.answers(&conns).await {
                return true;
            }
        }
        match self.establish().await {
            Ok(fresh) => {
                if !self.answers(&fresh).await {
                    return false;
                }
                if self.conns.load().is_some() {
                    tracing::warn!("Redis answers on new connections only: replacing them");
                }
                self.conns.store(Some(Arc::new(fresh)));
                true
            }
            Err(err) => {
                tracing::debug!(error = %err.report(), "probe: Redis still unreachable");
                false
            }
        }
    }

    /// Both connections answer a PING within the request deadline.
    async fn answers(&self, conns: &Conns) -> bool {
        for mut conn in [conns.hot.clone(), conns.bulk.clone()] {
            let pinged = self
                .attempt(
                    RedisOp::Ping,
                    async move { redis::cmd("PING").query_async::<String>(&mut conn).await },
                    true,
                )
                .await;
            if let Err(err) = pinged {
                tracing::debug!(error = %err.report(), "probe: no answer from Redis");
                return false;
            }
        }
        true
    }

    /// One pipeline per shard (each within the shard's slot), as one round trip on standalone
    /// Redis or as concurrent per-shard requests on a cluster (pipelines there cannot span nodes).
    async fn per_shard<T: redis::FromRedisValue + Send + 'static>(
        &self,
        op: RedisOp,
        build: impl Fn(u32, &mut redis::Pipeline),
    ) -> Result<Vec<T>, StoreError> {
        let all: Vec<u32> = (0..self.shards).collect();
        self.for_shards(op, &all, build).await
    }

    /// One pipeline over `shards` (one per shard on a cluster, where shards live on different
    /// nodes), replies in shard order.
    async fn for_shards<T: redis::FromRedisValue + Send + 'static>(
        &self,
        op: RedisOp,
        shards: &[u32],
        build: impl Fn(u32, &mut redis::Pipeline),
    ) -> Result<Vec<T>, StoreError> {
        if shards.is_empty() {
            return Ok(Vec::new());
        }
        if !self.cluster {
            let mut pipe = redis::pipe();
            for shard in shards {
                build(*shard, &mut pipe);
            }
            let mut conn = self.bulk()?;
            return self
                .call(op, async move { pipe.query_async(&mut conn).await })
                .await;
        }
        let bulk = self.bulk()?;
        let requests = shards.iter().map(|shard| {
            let mut pipe = redis::pipe();
            build(*shard, &mut pipe);
            let mut conn = bulk.clone();
            async move { pipe.query_async::<Vec<T>>(&mut conn).await }
        });
        let replies = self
            .call(op, futures_util::future::try_join_all(requests))
            .await?;
        Ok(replies.into_iter().flatten().collect())
    }

    /// Runs one Redis interaction through the breaker: at once `Unavailable` while it is open,
    /// otherwise under the deadline, its outcome counted toward opening it.
    async fn call<T, F>(&self, op: RedisOp, fut: F) -> Result<T, StoreError>
    where
        F: Future<Output = redis::RedisResult<T>>,
    {
        self.through_breaker(op, self.attempt(op, fut, true)).await
    }

    /// A request-path interaction: on this actix-web worker's own connection when it has one
    /// (see `worker`), else on the shared hot connection.
    async fn hot_call<T, F, Fut>(&self, op: RedisOp, run: F) -> Result<T, StoreError>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        // A worker connection is made only while Redis answers the shared ones.
        let own = match &self.clients {
            Clients::Single(client) if self.conns.load().is_some() && self.breaker.admits() => {
                let failures = self.unavailable.load(std::sync::atomic::Ordering::SeqCst);
                worker::connection(self.id, failures, client, self.timeout)
            }
            _ => None,
        };
        let Some((number, own)) = own else {
            let conn = self.conn()?;
            return self.call(op, run(conn)).await;
        };
        // Polled where it is driven: no home runtime entered (see `worker`).
        let result = self
            .through_breaker(op, self.attempt(op, run(Conn::Worker(own)), false))
            .await;
        // A refusal (out of memory) came over a working connection: it stays.
        if matches!(
            &result,
            Err(StoreError::Unavailable {
                answered: false,
                ..
            })
        ) {
            worker::forget(self.id, number);
        }
        result
    }

    async fn through_breaker<T>(
        &self,
        op: RedisOp,
        attempt: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        if !self.breaker.admits() {
            return Err(StoreError::unavailable(format!(
                "{}: store breaker open",
                op.as_str()
            )));
        }
        let result = attempt.await;
        match &result {
            Err(
                err @ StoreError::Unavailable {
                    answered: false, ..
                },
            ) => {
                self.unavailable
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                self.breaker.failed(&err.report())
            }
            // An error reply or a refusal is an answer: Redis is there, and answers at once.
            _ => self.breaker.succeeded(),
        }
        result
    }

    /// Runs one Redis interaction under the timeout, on the home runtime when `on_home`, and
    /// records its latency.
    async fn attempt<T, F>(&self, op: RedisOp, fut: F, on_home: bool) -> Result<T, StoreError>
    where
        F: Future<Output = redis::RedisResult<T>>,
    {
        let started = Instant::now();
        // Bulk reads off the request path (whole catalog, ledger scans, an export's outbox
        // pages) move far more data than a decision; they get a budget of their own.
        let timeout = match op {
            RedisOp::Catalog | RedisOp::Ledger | RedisOp::Report => self.timeout.max(BULK_TIMEOUT),
            // An append-only file rewrite answers once Redis has forked, which takes longer
            // the more memory it holds.
            RedisOp::Outbox | RedisOp::Files => self.timeout.max(OUTBOX_TIMEOUT),
            RedisOp::Spend => self.timeout.max(SPEND_TIMEOUT),
            _ => self.timeout,
        };
        // The in-process Redis answers at once but for the fsync of its journal: a deadline
        // there could answer 503 for a write already journaled, so it has none.
        let in_process = matches!(self.clients, Clients::InProcess(_));
        let bounded = async move {
            if in_process {
                Ok(fut.await)
            } else {
                tokio::time::timeout(timeout, fut).await
            }
        };
        let result = if on_home {
            OnHome {
                home: &self.home,
                future: bounded,
            }
            .await
        } else {
            bounded.await
        };
        self.metrics.redis_latency(op, started.elapsed());
        match result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => {
                self.metrics.redis_error(op);
                Err(classify(err))
            }
            Err(_) => {
                self.metrics.redis_error(op);
                Err(StoreError::unavailable(format!(
                    "{} timed out",
                    op.as_str()
                )))
            }
        }
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        self.call(RedisOp::Ping, async move {
            redis::cmd("PING").query_async::<String>(&mut conn).await
        })
        .await
        .map(drop)
    }

    /// How Redis keeps what it acknowledged (`INFO persistence` and `memory`). A cluster
    /// answers for every master: AOF only if all keep one, evicting if any may evict.
    pub async fn keeping(&self) -> Result<Keeping, StoreError> {
        let mut conn = self.bulk()?;
        let reply: redis::Value = self
            .call(RedisOp::Ping, async move {
                redis::cmd("INFO")
                    .arg("persistence")
                    .arg("memory")
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        let nodes: Vec<String> = match reply {
            redis::Value::Map(by_node) => by_node.into_iter().map(|(_, info)| info).collect(),
            one => vec![one],
        }
        .into_iter()
        .map(|info| redis::from_redis_value::<String>(&info))
        .collect::<Result<_, _>>()
        .map_err(|e| StoreError::corrupt_from("Redis INFO", e))?;
        Ok(Keeping {
            aof: !nodes.is_empty()
                && nodes
                    .iter()
                    .all(|info| files::info_field(info, "aof_enabled") == Some("1")),
            evicting: nodes
                .iter()
                .filter_map(|info| files::info_field(info, "maxmemory_policy"))
                .find(|policy| *policy != "noeviction")
                .map(str::to_owned),
        })
    }

    /// The catalog earlier builds kept in Redis, read once to move it into the system of
    /// record (`record::migration`); nothing writes these keys any more.
    pub async fn load_catalog(&self) -> Result<CatalogData, StoreError> {
        let mut conn = self.bulk()?;
        type Raw = (
            Option<u64>,
            HashMap<String, String>,
            HashMap<String, String>,
            HashMap<String, String>,
        );
        let (version, advertisers, campaigns, creatives): Raw = self
            .call(RedisOp::Catalog, async move {
                // Not MULTI (a cluster client may not route it); read the version first: any
                // record newer than it is fetched again by the next refresh.
                redis::pipe()
                    .get(keys::CATALOG_VERSION)
                    .hgetall(keys::CATALOG_ADVERTISERS)
                    .hgetall(keys::CATALOG_CAMPAIGNS)
                    .hgetall(keys::CATALOG_CREATIVES)
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        Ok(CatalogData {
            version: version.unwrap_or(0),
            advertisers: decode_all(advertisers.into_values())?,
            campaigns: decode_all(campaigns.into_values())?,
            creatives: decode_all(creatives.into_values())?,
            ..CatalogData::default()
        })
    }

    pub async fn commit_decision(
        &self,
        commit: &DecisionCommit<'_>,
    ) -> Result<CommitOutcome, StoreError> {
        let script = &self.scripts.reserve;
        let mut call = script.command(1);
        call.arg(keys::user(commit.shard, commit.user))
            .arg(commit.now_ms)
            .arg(commit.user_ttl_ms)
            .arg(commit.session.map(codec::session_field).unwrap_or_default())
            .arg(commit.session_seen.map(SessionValue::as_str).unwrap_or(""))
            .arg(commit.session_after.as_str())
            .arg(commit.proof.daily_max)
            .arg(commit.reservations.len())
            .arg(commit.proof.checks.len())
            .arg(commit.proof.held.len())
            .arg(UNEXPIRING_USER_TTL_MS)
            .arg(crate::domain::campaign::MAX_CAP_WINDOW_S);
        for reservation in &commit.reservations {
            call.arg(reservation.field()).arg(reservation.value());
        }
        for check in &commit.proof.checks {
            call.arg(codec::hex_of(&check.campaign))
                .arg(codec::hex_of(&check.advertiser))
                .arg(codec::encode_caps(&check.caps))
                .arg(if check.advertiser_caps { "1" } else { "0" });
        }
        for decision in &commit.proof.held {
            call.arg(decision);
        }
        let reply: redis::Value = self
            .hot_call(RedisOp::Reserve, |mut conn| async move {
                script.run(&call, &mut conn).await
            })
            .await?;
        live_view(reply)
    }

    pub async fn apply_events(
        &self,
        shard: u32,
        now_ms: Millis,
        day: u32,
        events: &[EventWrite],
    ) -> Result<Vec<EventOutcome>, StoreError> {
        let script = &self.scripts.events;
        let mut call = script.command(3 + 3 * events.len());
        call.arg(keys::ledger(shard))
            .arg(keys::spend_total(shard))
            .arg(keys::spend_day(shard, day));
        for event in events {
            call.arg(keys::user(shard, &event.user))
                .arg(keys::token(shard, &event.decision_id))
                .arg(keys::click(shard, &event.decision_id));
        }
        call.arg(now_ms)
            .arg(day)
            .arg(events.len())
            .arg(UNEXPIRING_USER_TTL_MS)
            .arg(SPEND_DAY_TTL_MS);
        for event in events {
            // The argument order is the FIELDS list at the top of events.lua.
            call.arg(event.kind.as_str())
                .arg(&event.decision_id)
                .arg(&event.campaign)
                .arg(&event.advertiser)
                .arg(event.price_micros)
                .arg(event.token_ttl_ms)
                .arg(event.user_ttl_ms)
                .arg(codec::encode_caps(&event.campaign_caps))
                .arg(codec::encode_caps(&event.advertiser_caps))
                .arg(event.campaign_keep.encode())
                .arg(event.advertiser_keep.encode())
                .arg(event.daily_max)
                .arg(HIDE_MS)
                .arg(&event.client_at)
                .arg(CLICK_TTL_MS)
                .arg(codec::campaign_field(&event.campaign))
                .arg(codec::advertiser_field(&event.advertiser))
                .arg(codec::hide_field(&event.advertiser))
                .arg(&event.audience.creative)
                .arg(&event.audience.coarse.country)
                .arg(&event.audience.coarse.os)
                .arg(&event.audience.coarse.age_band)
                .arg(&event.audience.user_key)
                .arg(if event.user.is_empty() { "0" } else { "1" });
        }
        let codes: Vec<i64> = self
            .hot_call(RedisOp::Events, |mut conn| async move {
                script.run(&call, &mut conn).await
            })
            .await?;
        if codes.len() != events.len() {
            return Err(StoreError::corrupt(format!(
                "{} outcomes for {} events",
                codes.len(),
                events.len()
            )));
        }
        self.metrics
            .ledger_appended(codes.iter().filter(|c| **c == 1).count() as u64);
        codes.into_iter().map(EventOutcome::from_code).collect()
    }

    pub async fn spend(
        &self,
        day: u32,
    ) -> Result<hashbrown::HashMap<CampaignId, Spend>, StoreError> {
        let replies: Vec<HashMap<String, i64>> = self
            .per_shard(RedisOp::Spend, |shard, pipe| {
                pipe.hgetall(keys::spend_total(shard))
                    .hgetall(keys::spend_day(shard, day));
            })
            .await?;
        let mut spend: hashbrown::HashMap<CampaignId, Spend> = hashbrown::HashMap::new();
        for (index, reply) in replies.into_iter().enumerate() {
            for (campaign, micros) in reply {
                let Some(id) = CampaignId::parse(&campaign) else {
                    continue;
                };
                let entry = spend.entry(id).or_default();
                if index % 2 == 0 {
                    entry.total_micros += micros;
                } else {
                    entry.today_micros += micros;
                }
            }
        }
        Ok(spend)
    }
}

impl RedisStore {
    pub async fn click_owner(
        &self,
        shard: u32,
        decision_id: &str,
        at_ms: Millis,
    ) -> Result<Option<ClickOwner>, StoreError> {
        let mut conn = self.conn()?;
        let key = keys::click(shard, decision_id);
        type Fields = (
            Option<String>,
            Option<String>,
            Option<String>,
            Option<Millis>,
        );
        let (adv, cmp, usr, expires): Fields = self
            .call(RedisOp::Messaging, async move {
                redis::cmd("HMGET")
                    .arg(key)
                    .arg("adv")
                    .arg("cmp")
                    .arg("usr")
                    .arg("exp")
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        // Past its attribution for a message dated then (clicks of earlier builds carry no
        // `exp`: their key's TTL bounds them).
        if expires.is_some_and(|expires| at_ms >= expires) {
            return Ok(None);
        }
        Ok(adv.zip(cmp).map(|(advertiser, campaign)| ClickOwner {
            advertiser,
            campaign,
            user: usr
                .as_deref()
                .and_then(|key| keys::user_of(shard, key))
                .unwrap_or_default()
                .to_owned(),
        }))
    }

    /// The user's hash and clicks (one pipeline on their shard), then their conversations and
    /// business-initiated entries (one pipeline per advertiser shard).
    pub async fn user_records(&self, who: &UserLocator<'_>) -> Result<UserRecords, StoreError> {
        let user_key = keys::user(who.shard, who.user);
        let hashes: Vec<HashMap<String, String>> = self
            .for_shards(RedisOp::Privacy, &[who.shard], |shard, pipe| {
                pipe.hgetall(&user_key);
                for decision in &who.clicks {
                    pipe.hgetall(keys::click(shard, decision));
                }
            })
            .await?;
        let mut hashes = hashes.into_iter();
        let fields = hashes.next().unwrap_or_default();
        let pairs = || fields.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        let mut records = UserRecords {
            state: UserState::from_fields(pairs()),
            sessions: StoredSession::from_fields(pairs()),
            ..UserRecords::default()
        };
        for (decision, click) in who.clicks.iter().zip(hashes) {
            // Only a click this user's hash owns (`usr`); one served without consent names no one.
            if click.get("usr") == Some(&user_key) {
                records.clicks.push(UserClick {
                    decision_id: decision.clone(),
                    advertiser: click.get("adv").cloned().unwrap_or_default(),
                    campaign: click.get("cmp").cloned().unwrap_or_default(),
                    conversation_started: click.contains_key("conv"),
                });
            }
        }
        let by_shard = advertisers_by_shard(&who.advertisers);
        let shards: Vec<u32> = by_shard.keys().copied().collect();
        let replies: Vec<redis::Value> = self
            .for_shards(RedisOp::Privacy, &shards, |shard, pipe| {
                for advertiser in &by_shard[&shard] {
                    pipe.get(keys::conversation(shard, advertiser, who.user))
                        .zscore(keys::business_initiated(shard, advertiser), who.user);
                }
            })
            .await?;
        let advertisers = shards.iter().flat_map(|shard| &by_shard[shard]);
        for (advertiser, pair) in advertisers.zip(replies.chunks(2)) {
            let text = |value: &redis::Value| {
                redis::from_redis_value::<Option<String>>(value)
                    .ok()
                    .flatten()
            };
            if let Some(conversation) = pair.first().and_then(text) {
                records
                    .conversations
                    .push((advertiser.to_string(), Conversation::decode(&conversation)));
            }
            if let Some(at) = pair
                .get(1)
                .and_then(text)
                .and_then(|t| t.parse::<f64>().ok())
            {
                records
                    .initiated
                    .push((advertiser.to_string(), at as Millis));
            }
        }
        Ok(records)
    }

    /// Deletes the user's hash and clicks, conversations and business-initiated entries.
    pub async fn erase_user(&self, who: &UserLocator<'_>) -> Result<(), StoreError> {
        let user_key = keys::user(who.shard, who.user);
        let _: Vec<redis::Value> = self
            .for_shards(RedisOp::Privacy, &[who.shard], |shard, pipe| {
                pipe.del(&user_key).ignore();
                for decision in &who.clicks {
                    pipe.del(keys::click(shard, decision)).ignore();
                }
            })
            .await?;
        let by_shard = advertisers_by_shard(&who.advertisers);
        let shards: Vec<u32> = by_shard.keys().copied().collect();
        let _: Vec<redis::Value> = self
            .for_shards(RedisOp::Privacy, &shards, |shard, pipe| {
                for advertiser in &by_shard[&shard] {
                    pipe.del(keys::conversation(shard, advertiser, who.user))
                        .ignore()
                        .zrem(keys::business_initiated(shard, advertiser), who.user)
                        .ignore();
                }
            })
            .await?;
        Ok(())
    }

    /// Asks each Redis node whose append-only file is due (see `files`) to rewrite it, so that
    /// what an erasure or an expiry removed leaves Redis's disk within `period_ms`. On a
    /// cluster every node the cluster lists, replicas too; standalone, the primary only (its
    /// replicas are not known to the service). One check at a time across the service's
    /// nodes (`keys::AOF_CHECKED`). A node that is away or refuses is logged and checked again
    /// next time; it holds up no other.
    pub async fn rewrite_aof_if_due(
        &self,
        now_ms: Millis,
        period_ms: Millis,
    ) -> Result<(), StoreError> {
        // Longer than one check can take (every node, each under its deadline), shorter than
        // a node's interval between checks.
        const ONE_CHECK_MS: Millis = 5 * 60_000;
        let mut claim = self.scripts.periodic.command(1);
        claim.arg(keys::AOF_CHECKED).arg(now_ms).arg(ONE_CHECK_MS);
        let mut conn = self.bulk()?;
        let script = &self.scripts.periodic;
        let claimed: i64 = self
            .call(RedisOp::Files, async move {
                script.run(&claim, &mut conn).await
            })
            .await?;
        if claimed == 0 {
            return Ok(());
        }
        let nodes = self.file_nodes().await?;
        let mut conn = self.bulk()?;
        let kept: HashMap<String, String> = self
            .call(RedisOp::Files, async move {
                conn.hgetall(keys::AOF_FILES).await
            })
            .await?;
        // Concurrently: a node away costs one deadline, not one per node.
        let checks = nodes.iter().map(|node| {
            let before = kept
                .get(&node.name)
                .map(|k| files::Kept::decode(k))
                .unwrap_or_default();
            self.check_file(node, before, now_ms, period_ms)
        });
        let changed: Vec<(String, String)> = futures_util::future::join_all(checks)
            .await
            .into_iter()
            .flatten()
            .collect();
        let gone: Vec<&String> = kept
            .keys()
            .filter(|name| nodes.iter().all(|node| &node.name != *name))
            .collect();
        if !changed.is_empty() || !gone.is_empty() {
            let mut pipe = redis::pipe();
            if !changed.is_empty() {
                pipe.hset_multiple(keys::AOF_FILES, &changed).ignore();
            }
            if !gone.is_empty() {
                pipe.hdel(keys::AOF_FILES, gone).ignore();
            }
            let mut conn = self.bulk()?;
            self.call(RedisOp::Files, async move {
                pipe.query_async::<()>(&mut conn).await
            })
            .await?;
        }
        Ok(())
    }

    /// One node's check (see `files`): its new entry in `keys::AOF_FILES` if it changed.
    async fn check_file(
        &self,
        node: &FileNode,
        before: files::Kept,
        now_ms: Millis,
        period_ms: Millis,
    ) -> Option<(String, String)> {
        let info: String = match self.on_node(node, &redis::cmd("INFO")).await {
            Ok(info) => info,
            Err(err) => {
                tracing::warn!(node = %node.name, error = %err.report(), "Redis node's append-only file unchecked; checking again next time");
                return None;
            }
        };
        let file = files::NodeFile::parse(&info);
        if files::failed(&file, &before) {
            // Counted where the alerts on Redis errors look.
            self.metrics.redis_error(RedisOp::Files);
            tracing::warn!(node = %node.name, "Redis node's append-only file rewrite failed; asking again");
        }
        let (mut after, ask) = files::next(&file, before, now_ms, period_ms);
        if ask {
            let rewrite: Result<redis::Value, _> =
                self.on_node(node, &redis::cmd("BGREWRITEAOF")).await;
            match rewrite {
                Ok(_) => {
                    tracing::info!(node = %node.name, "asked a Redis node to rewrite its append-only file")
                }
                // What the node confirmed stays; the ask is made again next time.
                Err(err) => {
                    tracing::warn!(node = %node.name, error = %err.report(), "Redis node refused to rewrite its append-only file; asking again next time");
                    after.asked = None;
                }
            }
        }
        (after != before).then(|| (node.name.clone(), after.encode()))
    }

    /// The Redis nodes with files of their own: standalone, the one the service talks to; on
    /// a cluster, every master and replica `CLUSTER SLOTS` lists (the addresses the client
    /// itself connects to, and the only ones it can route to). A master left without slots
    /// after resharding is not among them: its file keeps the keys it held until its own
    /// growth trigger rewrites it.
    async fn file_nodes(&self) -> Result<Vec<FileNode>, StoreError> {
        if !self.cluster {
            return Ok(vec![FileNode {
                name: "primary".to_owned(),
                address: None,
            }]);
        }
        let mut conn = self.bulk()?;
        let slots: Vec<Vec<redis::Value>> = self
            .call(RedisOp::Files, async move {
                redis::cmd("CLUSTER")
                    .arg("SLOTS")
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        let mut nodes: Vec<FileNode> = Vec::new();
        for node in slots.iter().flat_map(|range| range.iter().skip(2)) {
            let (host, port) = match node {
                redis::Value::Array(parts) if parts.len() >= 2 => (
                    redis::from_redis_value::<String>(&parts[0]),
                    redis::from_redis_value::<u16>(&parts[1]),
                ),
                _ => continue,
            };
            // An unknown address ("" or "?") is one the client cannot reach by address either.
            let (Ok(host), Ok(port)) = (host, port) else {
                continue;
            };
            if host.is_empty() || host == "?" {
                continue;
            }
            let name = format!("{host}:{port}");
            if nodes.iter().all(|n| n.name != name) {
                nodes.push(FileNode {
                    name,
                    address: Some((host, port)),
                });
            }
        }
        Ok(nodes)
    }

    /// One command on one node, under the housekeeping deadline.
    async fn on_node<T: redis::FromRedisValue>(
        &self,
        node: &FileNode,
        cmd: &redis::Cmd,
    ) -> Result<T, StoreError> {
        let mut conn = self.bulk()?;
        let address = node.address.clone();
        // Not through the breaker: a replica away (the request path never uses one) must not
        // open it for every decision.
        self.attempt(
            RedisOp::Files,
            async move {
                let reply = match (&mut conn, address) {
                    (Conn::Cluster(c), Some((host, port))) => {
                        use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
                        c.route_command(
                            cmd,
                            RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                                host,
                                port,
                            }),
                        )
                        .await?
                    }
                    (conn, _) => cmd.query_async::<redis::Value>(conn).await?,
                };
                redis::from_redis_value(&reply)
            },
            true,
        )
        .await
    }

    /// Announces an erasure to the other nodes for `keep_ms` (see `privacy::subject`).
    pub async fn announce_erasure(
        &self,
        user_key: &str,
        now_ms: Millis,
        keep_ms: Millis,
    ) -> Result<(), StoreError> {
        let mut conn = self.bulk()?;
        let user_key = user_key.to_owned();
        self.call(RedisOp::Privacy, async move {
            redis::pipe()
                .zadd(keys::ERASURES, user_key, now_ms)
                .ignore()
                .zrembyscore(keys::ERASURES, "-inf", now_ms - keep_ms)
                .ignore()
                .pexpire(keys::ERASURES, keep_ms)
                .ignore()
                .query_async::<()>(&mut conn)
                .await
        })
        .await
    }

    /// The erasures announced and still kept (the announcers trim them): (user key, when).
    pub async fn erasures(&self) -> Result<Vec<(String, Millis)>, StoreError> {
        let mut conn = self.bulk()?;
        self.call(RedisOp::Privacy, async move {
            conn.zrange_withscores(keys::ERASURES, 0, -1).await
        })
        .await
    }

    /// Redis's own clock (`TIME`), in ms: nodes compare their clocks with it (heartbeats, erasure
    /// announcements and claims are times of the node that wrote them). Asked in a script keyed
    /// in the `{catalog}` slot, so that on a cluster every node asks the same master (a bare
    /// `TIME` goes to any node), on the hot connection (not queued behind exports).
    pub async fn time_ms(&self) -> Result<Millis, StoreError> {
        let mut conn = self.conn()?;
        let (seconds, micros): (i64, i64) = self
            .call(RedisOp::Ping, async move {
                redis::cmd("EVAL")
                    .arg("return redis.call('TIME')")
                    .arg(1)
                    .arg(keys::NODE_SETTINGS)
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        Ok(seconds * 1000 + micros / 1000)
    }

    /// Removes `node`'s heartbeat, erasure count and money settings: the other nodes stop
    /// counting it in budget shares, waiting for it and comparing with it, without waiting for
    /// the entries to age.
    pub async fn leave(&self, node: &str) -> Result<(), StoreError> {
        let mut conn = self.bulk()?;
        let node = node.to_owned();
        self.call(RedisOp::Spend, async move {
            redis::pipe()
                .hdel(keys::NODES, &node)
                .ignore()
                .hdel(keys::ERASURES_WATCHED, &node)
                .ignore()
                .hdel(keys::NODE_SETTINGS, &node)
                .ignore()
                .query_async::<()>(&mut conn)
                .await
        })
        .await
    }

    /// Counts one completed round of `node` reading erasures and acting on them.
    pub async fn erasures_watched(&self, node: &str) -> Result<(), StoreError> {
        let mut conn = self.bulk()?;
        let node = node.to_owned();
        self.call(RedisOp::Privacy, async move {
            conn.hincr::<_, _, _, ()>(keys::ERASURES_WATCHED, node, 1)
                .await
        })
        .await
    }

    /// The live nodes other than `node` and how many erasure rounds each has completed (0 for
    /// none counted). Counts of nodes not alive are dropped (one that comes back counts again
    /// from 0, which only makes a wait start there).
    pub async fn erasure_watchers(
        &self,
        node: &str,
        now_ms: Millis,
    ) -> Result<HashMap<String, u64>, StoreError> {
        let mut conn = self.bulk()?;
        let node = node.to_owned();
        self.call(RedisOp::Privacy, async move {
            let (beats, watched): (HashMap<String, Millis>, HashMap<String, u64>) = redis::pipe()
                .hgetall(keys::NODES)
                .hgetall(keys::ERASURES_WATCHED)
                .query_async(&mut conn)
                .await?;
            let alive = |other: &String| beats.get(other).is_some_and(|at| alive_at(*at, now_ms));
            let gone: Vec<&String> = watched.keys().filter(|n| !alive(n)).collect();
            if !gone.is_empty() {
                conn.hdel::<_, _, ()>(keys::ERASURES_WATCHED, gone).await?;
            }
            Ok(beats
                .keys()
                .filter(|other| **other != node && alive(other))
                .map(|other| (other.clone(), watched.get(other).copied().unwrap_or(0)))
                .collect())
        })
        .await
    }

    pub async fn apply_conversion(
        &self,
        write: &ConversionWrite<'_>,
    ) -> Result<ConversionOutcome, StoreError> {
        let click = keys::click(write.shard, write.decision_id);
        // The clicking user's hash, recorded by the click: the script checks it again.
        let user = match &write.suppress {
            Some(_) => {
                let mut conn = self.conn()?;
                let key = click.clone();
                let user: Option<String> = self
                    .call(
                        RedisOp::Messaging,
                        async move { conn.hget(key, "usr").await },
                    )
                    .await?;
                // A click served without consent names no one (`usr` empty): nothing to
                // suppress, and an empty key would hash outside the shard's slot.
                user.filter(|key| !key.is_empty())
            }
            None => None,
        };
        let script = &self.scripts.conversion;
        let mut call = script.command(3);
        let (field, until) = write.suppress_field().unwrap_or_default();
        call.arg(&click)
            .arg(keys::ledger(write.shard))
            // Not suppressing: the click key again (a real key of this slot, never written).
            .arg(user.as_deref().unwrap_or(&click))
            .arg(write.advertiser)
            .arg(write.kind)
            .arg(write.at_ms)
            .arg(write.decision_id)
            .arg(write.click_id)
            .arg(if user.is_some() { field.as_str() } else { "" })
            .arg(until);
        let mut conn = self.conn()?;
        let code: i64 = self
            .call(RedisOp::Messaging, async move {
                script.run(&call, &mut conn).await
            })
            .await?;
        Ok(match code {
            1 => ConversionOutcome::Accepted,
            2 => ConversionOutcome::Duplicate,
            _ => ConversionOutcome::UnknownClick,
        })
    }

    /// An earlier build's conversion logs of these days, every advertiser's (the one-off move of
    /// their click ids into the record reads them).
    pub async fn earlier_conversion_log(
        &self,
        days: &[u32],
    ) -> Result<Vec<(String, ConversionRecord)>, StoreError> {
        let replies: Vec<Vec<String>> = self
            .per_shard(RedisOp::Report, |shard, pipe| {
                for day in days {
                    pipe.lrange(keys::conversion_log(shard, *day), 0, -1);
                }
            })
            .await?;
        Ok(replies
            .iter()
            .flatten()
            .filter_map(|entry| super::parse_conversion_entry(entry))
            .collect())
    }

    pub async fn load_conversation(
        &self,
        shard: u32,
        advertiser: &str,
        user: &str,
        message_id: &str,
    ) -> Result<(String, Option<String>), StoreError> {
        let mut pipe = redis::pipe();
        pipe.get(keys::conversation(shard, advertiser, user))
            .get(keys::message(shard, advertiser, message_id));
        let mut conn = self.conn()?;
        let (state, seen): (Option<String>, Option<String>) = self
            .call(RedisOp::Messaging, async move {
                pipe.query_async(&mut conn).await
            })
            .await?;
        Ok((state.unwrap_or_default(), seen))
    }

    pub async fn commit_message(
        &self,
        commit: &MessageCommit<'_>,
    ) -> Result<MessageOutcome, StoreError> {
        let script = &self.scripts.message;
        let (shard, month) = (commit.shard, commit.stored.month);
        let mut call = script.command(5);
        call.arg(keys::conversation(shard, commit.advertiser, commit.user))
            .arg(keys::message(shard, commit.advertiser, commit.message_id))
            .arg(keys::ledger(shard))
            .arg(keys::message_counts(shard, month))
            .arg(keys::business_initiated(shard, commit.advertiser))
            .arg(commit.expected_state)
            .arg(&commit.new_state)
            .arg(commit.state_ttl_ms)
            .arg(commit.stored.encode())
            .arg(MESSAGE_DEDUPE_MS)
            .arg(commit.advertiser)
            .arg(commit.message_id)
            .arg(commit.direction)
            .arg(if commit.deliver { "1" } else { "0" })
            .arg(commit.limit.map_or(-1, i64::from))
            .arg(commit.user)
            .arg(super::BUSINESS_LIMIT_WINDOW_MS)
            .arg(commit.now_ms);
        let (code, stored) = self.run_message_script(script, call).await?;
        Ok(match code {
            1 => MessageOutcome::Committed(stored()?),
            2 => MessageOutcome::Duplicate(stored()?),
            3 => MessageOutcome::LimitReached,
            _ => MessageOutcome::Conflict,
        })
    }

    /// Runs `message.lua` or `message_status.lua`, which both answer `(code, stored message)`;
    /// the message is decoded only by the outcomes that carry one.
    async fn run_message_script(
        &self,
        script: &LuaScript,
        call: redis::Cmd,
    ) -> Result<(i64, impl Fn() -> Result<StoredMessage, StoreError>), StoreError> {
        let mut conn = self.conn()?;
        let (code, raw): (i64, String) = self
            .call(RedisOp::Messaging, async move {
                script.run(&call, &mut conn).await
            })
            .await?;
        let stored = move || {
            StoredMessage::decode(&raw)
                .ok_or_else(|| StoreError::corrupt(format!("stored message {raw:?}")))
        };
        Ok((code, stored))
    }

    /// The stored message, if this id was recorded.
    pub async fn message_state(
        &self,
        shard: u32,
        advertiser: &str,
        message_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let mut conn = self.conn()?;
        let key = keys::message(shard, advertiser, message_id);
        self.call(RedisOp::Messaging, async move { conn.get(key).await })
            .await
    }

    pub async fn settle_message(
        &self,
        write: &SettleWrite<'_>,
    ) -> Result<SettleOutcome, StoreError> {
        let script = &self.scripts.message_status;
        let (shard, month) = (write.shard, write.month);
        let mut call = script.command(3);
        call.arg(keys::message(shard, write.advertiser, write.message_id))
            .arg(keys::ledger(shard))
            .arg(keys::message_counts(shard, month))
            .arg(write.advertiser)
            .arg(write.message_id)
            .arg(if write.void { "1" } else { "0" });
        let (code, stored) = self.run_message_script(script, call).await?;
        Ok(match code {
            1 => SettleOutcome::Settled(stored()?),
            2 => SettleOutcome::Duplicate(stored()?),
            _ => SettleOutcome::Unknown,
        })
    }
}

/// A node that has not refreshed for this long is no longer counted alive.
const NODE_ALIVE_MS: Millis = 5_000;

/// Whether a node whose last heartbeat was at `beat` counts as alive at `now_ms`.
fn alive_at(beat: Millis, now_ms: Millis) -> bool {
    beat > now_ms - NODE_ALIVE_MS
}

impl RedisStore {
    pub async fn heartbeat(&self, node: &str, now_ms: Millis) -> Result<u32, StoreError> {
        let mut conn = self.bulk()?;
        let node = node.to_owned();
        // Part of the spend refresh (the nodes alive divide each budget): its deadline.
        let beats: HashMap<String, Millis> = self
            .call(RedisOp::Spend, async move {
                let (_, beats): ((), HashMap<String, Millis>) = redis::pipe()
                    .hset(keys::NODES, &node, now_ms)
                    .hgetall(keys::NODES)
                    .query_async(&mut conn)
                    .await?;
                let stale: Vec<&String> = beats
                    .iter()
                    .filter(|(_, at)| **at < now_ms - NODE_ALIVE_MS * 12)
                    .map(|(n, _)| n)
                    .collect();
                if !stale.is_empty() {
                    conn.hdel::<_, _, ()>(keys::NODES, stale).await?;
                }
                Ok(beats)
            })
            .await?;
        Ok(beats.values().filter(|at| alive_at(**at, now_ms)).count() as u32)
    }

    /// Records what this node prices with (`fingerprint`) and answers how many other nodes
    /// seen within the last three minutes price with something else. Entries of nodes gone
    /// for half an hour are dropped.
    pub async fn compare_settings(
        &self,
        node: &str,
        fingerprint: &str,
        now_ms: Millis,
    ) -> Result<u32, StoreError> {
        // Three times the interval between one node's comparisons, so that a node checking
        // just before another restamps its entry still sees it.
        const SEEN_MS: Millis = 180_000;
        let mut conn = self.bulk()?;
        let (node, fingerprint) = (node.to_owned(), fingerprint.to_owned());
        self.call(RedisOp::Spend, async move {
            let (_, all): ((), HashMap<String, String>) = redis::pipe()
                .hset(
                    keys::NODE_SETTINGS,
                    &node,
                    format!("{now_ms} {fingerprint}"),
                )
                .hgetall(keys::NODE_SETTINGS)
                .query_async(&mut conn)
                .await?;
            let mut differing = 0;
            let mut gone = Vec::new();
            for (other, entry) in &all {
                let (at, theirs) = entry.split_once(' ').unwrap_or((entry, ""));
                let at = at.parse::<Millis>().unwrap_or(Millis::MIN);
                if at < now_ms - SEEN_MS * 10 {
                    gone.push(other);
                } else if other != &node
                    && (now_ms - SEEN_MS..=now_ms + SEEN_MS).contains(&at)
                    && theirs != fingerprint
                {
                    differing += 1;
                }
            }
            if !gone.is_empty() {
                conn.hdel::<_, _, ()>(keys::NODE_SETTINGS, gone).await?;
            }
            Ok(differing)
        })
        .await
    }

    /// Up to `limit` of the oldest records of each shard's outbox (its ledger stream), with
    /// their stream ids; shards with none are left out.
    pub async fn outbox(
        &self,
        shards: &[u32],
        limit: usize,
    ) -> Result<Vec<(u32, Vec<(String, LedgerRecord)>)>, StoreError> {
        type Entry = (String, Vec<String>);
        let pages: Vec<Vec<Entry>> = self
            .for_shards(RedisOp::Outbox, shards, |shard, pipe| {
                pipe.cmd("XRANGE")
                    .arg(keys::ledger(shard))
                    .arg("-")
                    .arg("+")
                    .arg("COUNT")
                    .arg(limit);
            })
            .await?;
        let mut out = Vec::new();
        for (&shard, page) in shards.iter().zip(pages) {
            if page.is_empty() {
                continue;
            }
            let records = page
                .iter()
                .map(|(id, fields)| {
                    let mut record = parse_record(id, fields)?;
                    // An earlier build's conversion carries no click id; the click id names
                    // the shard and the decision, both known here.
                    let conversion = matches!(
                        record.kind,
                        LedgerKind::Conversation | LedgerKind::ConversionMessage
                    );
                    if conversion && record.click_id.is_empty() {
                        if let Some((decision, _)) = record.id.split_once(':') {
                            record.click_id = crate::ledger::conversions::click_id(shard, decision);
                        }
                    }
                    Ok((id.clone(), record))
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            out.push((shard, records));
        }
        Ok(out)
    }

    /// Drops the in-process Redis's expired keys (a real Redis expires its own).
    pub fn purge_expired(&self) {
        if let Clients::InProcess(redis) = &self.clients {
            redis.purge_expired();
        }
    }

    /// Shards in all (the exporter reads their outboxes a group at a time).
    pub fn shards(&self) -> u32 {
        self.shards
    }

    /// Removes exported records from their shards' outboxes.
    pub async fn exported(&self, done: &[(u32, Vec<String>)]) -> Result<(), StoreError> {
        let shards: Vec<u32> = done.iter().map(|(shard, _)| *shard).collect();
        let ids: HashMap<u32, &Vec<String>> = done.iter().map(|(s, ids)| (*s, ids)).collect();
        let _: Vec<i64> = self
            .for_shards(RedisOp::Outbox, &shards, |shard, pipe| {
                pipe.cmd("XDEL").arg(keys::ledger(shard)).arg(ids[&shard]);
            })
            .await?;
        Ok(())
    }

    /// Sets each campaign's hot spend (total, and on `day`) to the given figures: all in
    /// shard 0, the campaign's fields removed from every other shard (reads sum the shards).
    pub async fn set_spend(
        &self,
        day: u32,
        spend: &[(String, crate::domain::Micros, crate::domain::Micros)],
    ) -> Result<(), StoreError> {
        let _: Vec<redis::Value> = self
            .per_shard(RedisOp::Spend, |shard, pipe| {
                for (campaign, total, today) in spend {
                    if shard == 0 {
                        pipe.hset(keys::spend_total(shard), campaign, total)
                            .hset(keys::spend_day(shard, day), campaign, today)
                            // As events.lua keeps a day's spend (this may make the hash).
                            .pexpire(keys::spend_day(shard, day), SPEND_DAY_TTL_MS);
                    } else {
                        pipe.hdel(keys::spend_total(shard), campaign)
                            .hdel(keys::spend_day(shard, day), campaign);
                    }
                }
            })
            .await?;
        Ok(())
    }
}

fn parse_record(stream_id: &str, fields: &[String]) -> Result<LedgerRecord, StoreError> {
    let field = |name: &str| {
        fields
            .chunks(2)
            .find(|pair| pair.first().map(String::as_str) == Some(name))
            .and_then(|pair| pair.get(1))
    };
    let get = |name: &str| {
        field(name)
            .ok_or_else(|| StoreError::corrupt(format!("ledger record {stream_id} lacks {name}")))
    };
    let kind = LedgerKind::parse(get("type")?).ok_or_else(|| {
        StoreError::corrupt(format!("ledger record {stream_id} has an unknown type"))
    })?;
    let number = |name: &str| -> Result<i64, StoreError> {
        get(name)?
            .parse()
            .map_err(|_| StoreError::corrupt(format!("ledger record {stream_id}: bad {name}")))
    };
    let optional = |name: &str| field(name).cloned().unwrap_or_default();
    Ok(LedgerRecord {
        id: get("id")?.clone(),
        kind,
        campaign: optional("campaign"),
        advertiser: optional("advertiser"),
        category: optional("category"),
        country: optional("country"),
        price_micros: number("price")?,
        at_ms: number("at_ms")?,
        creative: optional("creative"),
        os: optional("os"),
        age_band: optional("age"),
        user_key: optional("uk"),
        click_id: optional("click"),
    })
}

fn advertisers_by_shard(
    advertisers: &[(u32, String)],
) -> std::collections::BTreeMap<u32, Vec<&str>> {
    let mut by_shard = std::collections::BTreeMap::<u32, Vec<&str>>::new();
    for (shard, advertiser) in advertisers {
        by_shard.entry(*shard).or_default().push(advertiser);
    }
    by_shard
}

/// `reserve.lua`'s answer: 1, or the live user hash (flat field, value list) and session value.
fn live_view(reply: redis::Value) -> Result<CommitOutcome, StoreError> {
    use redis::Value;
    let text = |value: &Value| match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(text) => Some(text.clone()),
        _ => None,
    };
    let corrupt = || StoreError::corrupt("unexpected reply from reserve.lua");
    match reply {
        Value::Int(1) => Ok(CommitOutcome::Committed),
        Value::Array(parts) => {
            let [Value::Array(flat), session] = parts.as_slice() else {
                return Err(corrupt());
            };
            let flat: Vec<String> = flat
                .iter()
                .map(text)
                .collect::<Option<_>>()
                .ok_or_else(corrupt)?;
            let state = UserState::from_fields(
                flat.chunks(2)
                    .filter_map(|pair| Some((pair.first()?.as_str(), pair.get(1)?.as_str()))),
            );
            Ok(CommitOutcome::Stale(Box::new(UserView {
                state,
                session: text(session)
                    .filter(|s| !s.is_empty())
                    .map(SessionValue::stored),
            })))
        }
        _ => Err(corrupt()),
    }
}

pin_project_lite::pin_project! {
    /// A future polled with the store's home runtime entered, so that whatever the Redis client
    /// spawns or times while polling it (reconnections, their backoff, response deadlines) lives
    /// on that runtime, whichever runtime (an actix-web worker's) awaits it.
    struct OnHome<'a, F> {
        home: &'a tokio::runtime::Handle,
        #[pin]
        future: F,
    }
}

impl<F: Future> Future for OnHome<'_, F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _entered = this.home.enter();
        this.future.poll(cx)
    }
}

/// Both connections to the in-process Redis: one engine, nothing to open.
fn in_process_conns(redis: &in_process::InProcessRedis) -> Conns {
    Conns {
        hot: Conn::InProcess(redis.clone()),
        bulk: Conn::InProcess(redis.clone()),
    }
}

fn unavailable(err: redis::RedisError) -> StoreError {
    StoreError::unavailable_from("Redis", err)
}

fn classify(err: redis::RedisError) -> StoreError {
    use redis::ErrorKind;
    // Loading after a restart, a read-only replica or a failover in progress: Redis is away
    // for now (spool and retry), not broken.
    let transient = matches!(
        err.kind(),
        ErrorKind::BusyLoadingError
            | ErrorKind::ReadOnly
            | ErrorKind::MasterDown
            | ErrorKind::TryAgain
            | ErrorKind::ClusterDown
            // A slot moving between masters, or a master the client has no connection to:
            // the cluster's layout is changing under the client's single retry.
            | ErrorKind::Moved
            | ErrorKind::Ask
            | ErrorKind::ClusterConnectionNotFound
    );
    // Out of memory under `maxmemory` (noeviction): Redis takes no writes for now, as in an
    // outage, but answers at once. It refuses a command that needs memory only while a script
    // has changed nothing yet (after a delete, say, the script runs to its end), so a refused
    // script wrote nothing.
    if err.code() == Some("OOM") {
        return StoreError::refused_from("Redis", err);
    }
    if transient
        || err.is_io_error()
        || err.is_timeout()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
    {
        StoreError::unavailable_from("Redis", err)
    } else {
        StoreError::corrupt_from("Redis", err)
    }
}

fn decode_all<T: serde::de::DeserializeOwned>(
    raw: impl IntoIterator<Item = String>,
) -> Result<Vec<T>, StoreError> {
    raw.into_iter()
        .map(|json| {
            serde_json::from_str(&json).map_err(|e| StoreError::corrupt_from("stored JSON", e))
        })
        .collect()
}
