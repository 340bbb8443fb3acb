//! Wiring: [`Application::build`] opens the store, loads the catalog, starts the background
//! refresher, the store breaker's probe and the ledger exporter, and binds the HTTP server (port 0 in tests),
//! returning a handle that knows its port. [`Application::run_until_stopped`] serves until a
//! signal and then stops in the order `shutdown` describes.
//!
//! The system of record (`record`) is opened first and must answer: the catalog comes from it.
//! On Redis, a node starts even while Redis is unreachable: the store's breaker starts open,
//! decisions answer no slots and events are spooled; the refresher replays the spool once the
//! probe has closed the breaker. (The very first start with a record needs the hot store, to
//! move an earlier build's catalog out of it: `record::migration`.)

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use std::panic::AssertUnwindSafe;

use actix_web::dev::{Server as HttpServer, Service};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{web, App};
use futures_util::FutureExt;
use rand::Rng;
use secrecy::ExposeSecret;
use tracing::Instrument;
use utoipa_actix_web::AppExt;

use crate::catalog::assets::AssetStore;
use crate::catalog::Catalog;
use crate::clock::{Millis, SharedClock};
use crate::config::Settings;
use crate::domain::audience::ReachKey;
use crate::http::body_deadline::BodyDeadline;
use crate::http::{self, AppState};
use crate::ledger::served::ServedTally;
use crate::ledger::spool::{self, SpoolError};
use crate::ledger::{Ledger, SpendBoard};
use crate::metrics::Metrics;
use crate::record::exporter::Exporter;
use crate::record::outages::{self, Registration};
use crate::record::Record;
use crate::secrets::{self, Kept};
use crate::serving::Server;
use crate::shutdown::{Shutdown, ShutdownSignal};
use crate::store::{EmbeddedStore, RedisStore, Store, StoreError};
use crate::tokens::TokenKeys;

/// How often a node looks for catalog changes made by other nodes.
const CATALOG_POLL: Duration = Duration::from_millis(500);
/// The longest round trip a clock comparison with Redis is used from (its reading lies
/// somewhere in it).
const CLOCK_ROUND_TRIP: Duration = Duration::from_millis(250);
/// How long a stopping node takes, at most, to act on the erasures announced and to tell the
/// others it has gone.
const LEAVE_WITHIN: Duration = Duration::from_secs(1);
/// Budget checks read spend at most this old (DESIGN.md: at least every second).
const SPEND_REFRESH: Duration = Duration::from_millis(1000);
/// How long the background tasks may take, together, to stop once the server has: most stop at
/// their next await; the exporter runs one last round and insight flushes once more. One cut
/// short is aborted, which loses nothing (export is exactly once, and its records wait).
const BACKGROUND_STOP: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("{}", .0.report())]
    Store(#[from] crate::store::StoreError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// An I/O error under `store.data_dir`, naming the path it was on.
    #[error("config key `store.data_dir`: {}: {source}", path.display())]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Catalog(#[from] crate::catalog::CatalogError),
    #[error("{0}")]
    Spool(#[from] SpoolError),
    #[error("{0}")]
    Record(#[from] crate::record::OpenError),
    #[error("config key `messaging.rule_sets`: {0}")]
    Rules(String),
    #[error("config key `{0}`")]
    Money(String),
}

pub struct Application {
    port: u16,
    server: HttpServer,
    pub state: web::Data<AppState>,
    shutdown: ShutdownSignal,
    /// The refresher, the exporter, the erasure watch, insight and the store breaker's probe.
    background: Vec<tokio::task::JoinHandle<()>>,
}

/// Secrets this data dir keeps because configuration left them empty (see `secrets`); `main`
/// prints them at every start.
#[derive(Default)]
pub struct GeneratedSecrets {
    pub admin_token: Option<Kept>,
    pub client_token: Option<Kept>,
    /// The demo advertiser's key as seeded (a later rotation is not reflected).
    pub demo_api_key: Option<Kept>,
}

/// The files under `data_dir` that keep generated secrets.
const ADMIN_TOKEN_FILE: &str = "admin_token";
const CLIENT_TOKEN_FILE: &str = "client_token";
const SIGNING_KEY_FILE: &str = "signing_key";
const DEMO_KEY_FILE: &str = "demo_api_key";
/// The deployment key (in the record) that hashes users into reach keys.
const REACH_KEY: &str = "reach";

impl Application {
    pub async fn build(
        settings: Settings,
        clock: SharedClock,
    ) -> Result<(Self, GeneratedSecrets), StartupError> {
        Self::build_with_routes(settings, clock, |_| {}).await
    }

    /// As [`build`](Self::build), with extra routes (tests use it to mount failure probes).
    pub async fn build_with_routes(
        settings: Settings,
        clock: SharedClock,
        extra_routes: fn(&mut web::ServiceConfig),
    ) -> Result<(Self, GeneratedSecrets), StartupError> {
        let metrics = Arc::new(Metrics::default());
        let data_dir = settings.store.data_dir.clone();
        std::fs::create_dir_all(&data_dir).map_err(on(&data_dir))?;
        let store = Arc::new(open_store(&settings, metrics.clone(), clock.clone()).await?);
        let mut secrets = GeneratedSecrets {
            demo_api_key: secrets::read(&data_dir, DEMO_KEY_FILE),
            ..GeneratedSecrets::default()
        };
        let kept = |name: &str, prefix: &str, min_len: usize| {
            secrets::kept(&data_dir, name, prefix, min_len).map_err(on(&data_dir.join(name)))
        };
        let admin_token = match settings.auth.admin_token.expose_secret() {
            "" => {
                let kept = kept(ADMIN_TOKEN_FILE, "sa_admin_", 16)?;
                secrets.admin_token.insert(kept).value.clone()
            }
            token => token.to_owned(),
        };
        let client_tokens = if settings.auth.client_tokens.is_empty() {
            let kept = kept(CLIENT_TOKEN_FILE, "sa_client_", 16)?;
            vec![secrets.client_token.insert(kept).value.clone()]
        } else {
            settings
                .auth
                .client_tokens
                .iter()
                .map(|token| token.expose_secret().to_owned())
                .collect()
        };
        let signing_key = match settings.tokens.signing_key.expose_secret() {
            "" => kept(SIGNING_KEY_FILE, "", 32)?.value,
            key => key.to_owned(),
        };
        let previous: Vec<&[u8]> = settings
            .tokens
            .previous_signing_keys
            .iter()
            .map(|k| k.expose_secret().as_bytes())
            .collect();
        let keys = Arc::new(TokenKeys::new(signing_key.as_bytes(), &previous));

        let record =
            Arc::new(Record::open(settings.store.database_url.expose_secret(), &data_dir).await?);
        if let Some(moved) = record
            .migrate_from(&store, &data_dir, clock.now_ms())
            .await?
        {
            if moved != Default::default() {
                tracing::info!(
                    ?moved,
                    "moved the hot store's catalog and assets into the system of record"
                );
            }
        }
        let money = Arc::new(
            settings
                .money
                .money()
                .map_err(|err| StartupError::Money(format!("{}: {}", err.key, err.message)))?,
        );
        let catalog = Arc::new(Catalog::load(record.clone(), metrics.clone(), money).await?);
        let assets =
            AssetStore::open(&data_dir, record.clone()).map_err(on(&data_dir.join("assets")))?;
        if settings.seeds_demo() {
            if let Some(seeded) = crate::demo::seed(&catalog, &assets, clock.now()).await? {
                tracing::info!(advertiser = %seeded.advertiser_id, "seeded demo data");
                let path = secrets::keep(&data_dir, DEMO_KEY_FILE, &seeded.api_key)
                    .map_err(on(&data_dir.join(DEMO_KEY_FILE)))?;
                secrets.demo_api_key = Some(Kept {
                    value: seeded.api_key,
                    path,
                    created: true,
                });
            }
        }
        let spend = Arc::new(SpendBoard::default());
        match spend.refresh(&store, clock.now_ms()).await {
            // The refresher retries every second; budgets are read as unspent meanwhile, which
            // serves nothing while the store is away (no decision commits without it).
            Err(err @ StoreError::Unavailable { .. }) => {
                tracing::warn!(error = %err.report(), "spend not loaded at start")
            }
            other => other?,
        }

        let reach = Arc::new(ReachKey::new(
            record.deployment_key(REACH_KEY).await?.as_bytes(),
        ));
        let served = Arc::new(ServedTally::default());
        let grace_ms = settings.tokens.grace_seconds as i64 * 1000;
        let recent = Arc::new(crate::capping::recent::RecentUsers::default());
        let insight = Arc::new(crate::insight::Insight::new(
            settings.insight.sample_rate,
            record.clone(),
            catalog.clone(),
            reach.clone(),
            clock.clone(),
        ));
        let server = Arc::new(Server {
            store: store.clone(),
            recent: recent.clone(),
            catalog: catalog.clone(),
            spend: spend.clone(),
            keys: keys.clone(),
            clock: clock.clone(),
            metrics: metrics.clone(),
            served: served.clone(),
            policy: settings.ad_load,
            reserve_cpm_micros: settings.auction.reserve_cpm_micros,
            token_ttl_ms: settings.tokens.ttl_seconds as i64 * 1000,
            grace_ms,
            shards: settings.hot_shards(),
            chat: settings.chat.clone(),
            default_personalized: settings.privacy.default_personalized,
            insight: insight.clone(),
        });
        let ledger = Arc::new(Ledger {
            store: store.clone(),
            recent: recent.clone(),
            catalog: catalog.clone(),
            keys,
            clock: clock.clone(),
            metrics: metrics.clone(),
            shards: settings.hot_shards(),
            grace_ms,
            daily_max: settings.ad_load.max_per_user_per_day,
            spend: spend.clone(),
            reach: reach.clone(),
            spool: match store.backend_name() {
                "redis" => {
                    let registration =
                        Registration::open(record.clone(), &data_dir).map_err(|source| {
                            StartupError::DataDir {
                                path: data_dir.join(outages::NODE_ID_FILE),
                                source,
                            }
                        })?;
                    Some(Arc::new(
                        spool::Spool::open(
                            &data_dir,
                            settings.store.spool_max_bytes,
                            Some(registration),
                        )
                        .map_err(|err| match err {
                            SpoolError::Io(source) => StartupError::DataDir {
                                path: data_dir.join(spool::FILE),
                                source,
                            },
                            other => other.into(),
                        })?,
                    ))
                }
                _ => None,
            },
        });
        let exporter = Arc::new(Exporter::new(
            record.clone(),
            store.clone(),
            served,
            ledger.spool.clone(),
            clock.clone(),
            metrics.clone(),
            settings.hot_shards(),
        ));
        let subjects = Arc::new(crate::privacy::subject::Subjects {
            store: store.clone(),
            record: record.clone(),
            exporter: exporter.clone(),
            recent,
            catalog: catalog.clone(),
            reach,
            clock: clock.clone(),
            shards: settings.hot_shards(),
            spool: ledger.spool.clone(),
            insight: insight.clone(),
            node: spend.node_id().to_owned(),
        });
        let state = web::Data::new(AppState {
            store: store.clone(),
            subjects,
            record,
            exporter: exporter.clone(),
            catalog: catalog.clone(),
            server,
            ledger,
            spend: spend.clone(),
            assets,
            data_dir: data_dir.clone(),
            metrics: metrics.clone(),
            clock: clock.clone(),
            admin_token,
            client_tokens,
            rules: Arc::new(
                settings
                    .messaging
                    .rule_book()
                    .map_err(StartupError::Rules)?,
            ),
            shards: settings.hot_shards(),
            rate_limits: crate::http::rate_limit::RateLimits::new(
                &settings.rate_limits,
                clock.clone(),
            ),
            uploads: crate::http::rate_limit::Concurrency::new(
                settings.http.max_concurrent_uploads_per_advertiser,
                crate::metrics::RateLimitScope::Uploads,
            ),
        });
        let shutdown = ShutdownSignal::default();
        let refresher = tokio::spawn(refresh_forever(
            Refresher {
                catalog,
                spend,
                store: store.clone(),
                started_ms: clock.now_ms(),
                clock,
                ledger: state.ledger.clone(),
                persistence_checked: false,
                settings_compared: (Millis::MIN / 2, 0),
                clock_apart: false,
            },
            shutdown.listener(),
        ));
        let exporting = tokio::spawn(exporter.run(shutdown.listener()));
        let erasures = tokio::spawn(state.subjects.clone().watch_erasures(shutdown.listener()));
        let sampling = tokio::spawn(insight.run(shutdown.listener()));
        let prober = tokio::spawn({
            let mut shutdown = shutdown.listener();
            async move { store.probe_while_open(&mut shutdown).await }
        });

        let listener = TcpListener::bind(&settings.http.bind)?;
        let port = listener.local_addr()?.port();
        let app_state = state.clone();
        let body_deadline = BodyDeadline {
            timeout: Duration::from_millis(settings.http.body_timeout_ms),
        };
        let server = actix_web::HttpServer::new(move || {
            let metrics = app_state.metrics.clone();
            App::new()
                .app_data(app_state.clone())
                // Registered first, so it runs inside the request-id wrapper: a 408 is logged,
                // counted and carries its request id like any other answer.
                .wrap_fn(move |mut req, srv| {
                    let body = body_deadline.arm(&mut req);
                    let fut = srv.call(req);
                    async move { body_deadline.answer(body, fut.await) }
                })
                .wrap_fn(move |req, srv| {
                    // Every request gets an id, in its log span and echoed to the caller. The
                    // span names the route, not the path: a path can carry a user id
                    // (`/v1/users/{user}`), and logs outlive erasures.
                    let request_id = format!("{:016x}", rand::thread_rng().gen::<u64>());
                    let route = req.match_pattern().unwrap_or_else(|| "(no route)".into());
                    let span = tracing::info_span!("request", id = %request_id, method = %req.method(), route = %route);
                    let metrics = metrics.clone();
                    let fut = srv.call(req);
                    async move {
                        // A panicking handler answers 500 (no internals) and the worker lives on.
                        let mut res = match AssertUnwindSafe(fut).catch_unwind().await {
                            Ok(res) => res?,
                            Err(_) => {
                                metrics.panicked();
                                metrics.http_response(500);
                                tracing::error!("request handler panicked");
                                return Err(http::error::ApiError::Internal("handler panicked".into()).into());
                            }
                        };
                        metrics.http_response(res.status().as_u16());
                        if let Ok(value) = HeaderValue::from_str(&request_id) {
                            res.headers_mut().insert(HeaderName::from_static("x-request-id"), value);
                        }
                        tracing::debug!(status = res.status().as_u16(), "done");
                        Ok(res)
                    }
                    .instrument(span)
                })
                .configure(extra_routes)
                .into_utoipa_app()
                .configure(http::configure)
                .into_app()
        })
        // Slow clients (slow-loris) lose their connection instead of holding a worker slot.
        // This bounds the head only; `BodyDeadline` bounds the body.
        .client_request_timeout(Duration::from_secs(5))
        .client_disconnect_timeout(Duration::from_secs(2))
        .keep_alive(Duration::from_secs(30))
        .listen(listener)?
        .shutdown_timeout(10)
        .run();
        Ok((
            Self {
                port,
                server,
                state,
                shutdown,
                background: vec![refresher, prober, exporting, erasures, sampling],
            },
            secrets,
        ))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGINT/SIGTERM, then stops in order (see `shutdown`): the HTTP server
    /// (stop accepting, finish in-flight requests), then the background tasks (see
    /// [`wind_down`]); last, the node leaves, so the others neither share budgets with it nor
    /// wait for it.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        wind_down(self.shutdown, self.background, &self.state).await;
        result
    }

    /// Stops what was started, for a command that built the application only to do its work
    /// (`seed-demo`; its HTTP server was never run): background tasks first, then the node
    /// leaves.
    pub async fn finish(self) {
        wind_down(self.shutdown, self.background, &self.state).await;
    }
}

/// After the HTTP server: the background tasks, joined (nothing still waits on Redis when the
/// runtime goes, and none writes a heartbeat again), then one last erasure round and the
/// node's leaving.
async fn wind_down(
    shutdown: ShutdownSignal,
    background: Vec<tokio::task::JoinHandle<()>>,
    state: &AppState,
) {
    shutdown.fire();
    // One deadline for all: an orchestrator's grace period is one too.
    let deadline = tokio::time::Instant::now() + BACKGROUND_STOP;
    for task in background {
        let abort = task.abort_handle();
        if tokio::time::timeout_at(deadline, task).await.is_err() {
            tracing::error!("a background task did not stop in time");
            abort.abort();
        }
    }
    // Best effort, and briefly: an orchestrator's grace period is already running.
    let leaving = async {
        state.subjects.act_on_erasures().await;
        state.store.leave(state.spend.node_id()).await
    };
    let error = match tokio::time::timeout(LEAVE_WITHIN, leaving).await {
        Ok(Ok(())) => None,
        Ok(Err(err)) => Some(err.report().to_string()),
        Err(_) => Some(format!("no answer within {LEAVE_WITHIN:?}")),
    };
    if let Some(error) = error {
        tracing::warn!(%error, "the other nodes count this one until its heartbeat ages (5 s)");
    }
    if let Some(spool) = &state.ledger.spool {
        if spool.pending() > 0 {
            tracing::warn!(
                events = spool.pending(),
                "stopped with events in the outage spool: replayed at the next start"
            );
        }
    }
}

/// Names the path (and the key) of an I/O error under `store.data_dir`.
fn on(path: &Path) -> impl FnOnce(std::io::Error) -> StartupError + '_ {
    move |source| StartupError::DataDir {
        path: path.to_path_buf(),
        source,
    }
}

/// The configured backend: Redis when a URL is set, otherwise embedded under `data_dir`.
/// `clock` is the in-process Redis's (see `store::redis::in_process`); a real Redis keeps its
/// own.
pub async fn open_store(
    settings: &Settings,
    metrics: Arc<Metrics>,
    clock: SharedClock,
) -> Result<Store, StartupError> {
    Ok(if settings.uses_redis() {
        Store::Redis(
            RedisStore::connect(
                settings.store.redis_url.expose_secret(),
                &settings.store.cluster_nodes,
                settings.hot_shards(),
                settings.store.timeout_ms,
                settings.store.breaker_policy(),
                metrics,
                clock,
            )
            .await?,
        )
    } else {
        Store::Embedded(EmbeddedStore::open_with(
            &settings.store.data_dir,
            settings.store.journal_compact_bytes,
            clock,
            metrics,
        )?)
    })
}

/// Each loop of [`refresh_forever`] runs its own copy; only the spool's reads
/// `persistence_checked`, only the spend loop's `settings_compared`.
#[derive(Clone)]
struct Refresher {
    catalog: Arc<Catalog>,
    spend: Arc<SpendBoard>,
    store: Arc<Store>,
    clock: SharedClock,
    ledger: Arc<Ledger>,
    /// Whether Redis's persistence setting has been read (once, when Redis first answers).
    persistence_checked: bool,
    /// When the refresher began (ms).
    started_ms: Millis,
    /// When money settings were last compared with the other nodes' (ms), and how many
    /// differed then.
    settings_compared: (Millis, u32),
    /// The last clock comparison found this node more than a second from Redis.
    clock_apart: bool,
}

#[derive(Clone, Copy)]
enum Tick {
    Catalog,
    Spend,
    Spool,
}

/// Keeps the catalog and spend snapshots fresh and the spool replayed; errors are logged and
/// retried next tick. Each of the three runs on its own: a read that waits out its deadline on
/// a Redis connection that stopped answering (5 s for a spend read) holds up neither the
/// catalog poll (the record) nor the spool's replay (on the connections the probe made anew).
/// Stops at the next await once `shutdown` fires: a replay cut short leaves the spool whole for
/// the next one (dedupe makes it safe).
async fn refresh_forever(refresher: Refresher, shutdown: Shutdown) {
    let every = |period: Duration, tick: Tick| {
        let (mut refresher, mut shutdown) = (refresher.clone(), shutdown.clone());
        async move {
            let mut interval = tokio::time::interval(period);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.recv() => break,
                    _ = interval.tick() => {}
                }
                tokio::select! {
                    _ = shutdown.recv() => break,
                    _ = refresher.run(tick) => {}
                }
            }
        }
    };
    tokio::join!(
        every(CATALOG_POLL, Tick::Catalog),
        every(SPEND_REFRESH, Tick::Spend),
        every(SPEND_REFRESH, Tick::Spool),
    );
}

impl Refresher {
    async fn run(&mut self, tick: Tick) {
        match tick {
            Tick::Catalog => {
                if let Err(err) = self.catalog.refresh().await {
                    tracing::warn!(error = %err.report(), "catalog refresh failed");
                }
            }
            Tick::Spend => {
                match self.spend.refresh(&self.store, self.clock.now_ms()).await {
                    Ok(()) => self
                        .spend
                        .update_pacing(&self.catalog.snapshot(), self.clock.now_ms()),
                    Err(err) => tracing::warn!(error = %err.report(), "spend refresh failed"),
                }
                // On the spend loop, which waits on Redis anyway: never holding up the spool.
                self.compare_settings(self.clock.now_ms()).await;
            }
            Tick::Spool => {
                // Histogram samples queue until folded; a node nobody scrapes stays bounded.
                self.ledger.metrics.run_upkeep();
                // Set here, not by the spend loop: it must grow while a spend read hangs (and
                // from the start until the first read).
                let now_ms = self.clock.now_ms();
                let age = self.spend.age(now_ms).unwrap_or_else(|| {
                    Duration::from_millis((now_ms - self.started_ms).max(0) as u64)
                });
                self.ledger.metrics.spend_age(age);
                self.ledger.recent.expire(now_ms);
                self.check_persistence().await;
                self.ledger.drain_spool().await;
            }
        }
    }

    /// Once a minute: warns (log and metric) while another node prices with other money
    /// settings. Exchange rates are configuration, so a node started with other ones would
    /// rank and bill the same bids differently.
    async fn compare_settings(&mut self, now_ms: Millis) {
        // A clock stepped back compares at once rather than waiting for it to catch up.
        let last = self.settings_compared.0;
        if now_ms >= last && now_ms - last < 60_000 {
            return;
        }
        let settings = self.catalog.snapshot().money().fingerprint();
        self.measure_clock().await;
        let node = self.spend.node_id();
        match self.store.compare_settings(node, &settings, now_ms).await {
            Ok(apart) => {
                if apart > 0 && apart != self.settings_compared.1 {
                    tracing::warn!(
                        nodes = apart,
                        %settings,
                        "other nodes price with other money settings (money.currency, money.rates): start every node with the same ones"
                    );
                }
                self.ledger.metrics.nodes_pricing_apart(apart);
                self.settings_compared = (now_ms, apart);
            }
            Err(err) => {
                self.settings_compared.0 = now_ms;
                tracing::debug!(error = %err.report(), "money settings not compared; next minute")
            }
        }
    }

    /// This node's clock against Redis's (metric; a warning when it moves past a second or
    /// back): every time one node writes for others to read is read against their clocks. A
    /// round trip too slow to place Redis's reading within a quarter of a second is not used,
    /// and a failed one leaves the gauge NaN (no stale value for the alert).
    async fn measure_clock(&mut self) {
        let before = self.clock.now_ms();
        let asked = std::time::Instant::now();
        match self.store.time_ms().await {
            Ok(Some(redis_ms)) if asked.elapsed() <= CLOCK_ROUND_TRIP => {
                // Positive: this node's clock is ahead of Redis's.
                let offset_ms = (before + self.clock.now_ms()) / 2 - redis_ms;
                let apart = offset_ms.abs() > 1_000;
                if apart != self.clock_apart {
                    if apart {
                        tracing::warn!(
                            offset_ms,
                            "this node's clock is apart from Redis's (positive: ahead): synchronise the nodes' clocks (NTP)"
                        );
                    } else {
                        tracing::info!(
                            offset_ms,
                            "this node's clock is within a second of Redis's again"
                        );
                    }
                    self.clock_apart = apart;
                }
                self.ledger.metrics.clock_offset(Some(offset_ms));
            }
            Ok(Some(_)) => tracing::debug!("clock not compared (slow round trip); next minute"),
            Ok(None) => {}
            Err(err) => {
                self.ledger.metrics.clock_offset(None);
                tracing::debug!(error = %err.report(), "clock not compared; next minute")
            }
        }
    }

    /// Warns (log and metric) when Redis keeps no append-only file or may evict keys: the
    /// README's durability table calls either not acceptable for billing.
    async fn check_persistence(&mut self) {
        if self.persistence_checked {
            return;
        }
        match self.store.keeping().await {
            None => self.persistence_checked = true,
            Some(Ok(keeping)) => {
                self.persistence_checked = true;
                self.ledger.metrics.redis_keeping(&keeping);
                if !keeping.aof {
                    tracing::warn!(
                        "Redis has no append-only file (appendonly no): events acknowledged \
                         since its last snapshot would be lost in a Redis crash; set \
                         appendonly yes (README: Durability)"
                    );
                }
                if let Some(policy) = &keeping.evicting {
                    tracing::warn!(
                        policy = %policy,
                        "Redis may evict keys under memory pressure (maxmemory-policy): an \
                         evicted dedupe or outbox key loses acknowledged events or counts one \
                         twice; set maxmemory-policy noeviction (README: Durability)"
                    );
                }
            }
            Some(Err(err)) => {
                tracing::debug!(error = %err.report(), "Redis persistence not known yet")
            }
        }
    }
}
