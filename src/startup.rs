//! Wiring: [`Application::build`] opens the store, loads the catalog, starts the background
//! refresher and binds the HTTP server (port 0 in tests), returning a handle that knows its port.

use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use std::panic::AssertUnwindSafe;

use actix_web::dev::{Server as HttpServer, Service};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{web, App};
use futures_util::FutureExt;
use rand::Rng;
use tracing::Instrument;

use crate::catalog::assets::AssetStore;
use crate::catalog::Catalog;
use crate::clock::SharedClock;
use crate::config::Settings;
use crate::http::{self, AppState};
use crate::ledger::{Ledger, SpendBoard};
use crate::metrics::Metrics;
use crate::serving::Server;
use crate::store::{EmbeddedStore, RedisStore, Store};
use crate::tokens::TokenKeys;

/// How often a node looks for catalog changes made by other nodes.
const CATALOG_POLL: Duration = Duration::from_millis(500);
/// Budget checks read spend at most this old (DESIGN.md: at least every second).
const SPEND_REFRESH: Duration = Duration::from_millis(1000);

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Catalog(#[from] crate::catalog::CatalogError),
    #[error("{0}")]
    Spool(#[from] crate::ledger::spool::SpoolError),
    #[error("config key `messaging.rule_sets`: {0}")]
    Rules(String),
}

pub struct Application {
    port: u16,
    server: HttpServer,
    pub state: web::Data<AppState>,
    refresher: tokio::task::JoinHandle<()>,
}

/// Secrets generated at start because configuration left them empty; printed once by `main`.
#[derive(Default)]
pub struct GeneratedSecrets {
    pub admin_token: Option<String>,
    pub client_token: Option<String>,
    pub demo_api_key: Option<String>,
}

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
        std::fs::create_dir_all(&data_dir)?;
        let store = Arc::new(open_store(&settings, metrics.clone()).await?);
        let mut secrets = GeneratedSecrets::default();
        let admin_token = non_empty_or(&settings.auth.admin_token, || {
            let token = random_secret("sa_admin_");
            secrets.admin_token = Some(token.clone());
            token
        });
        let client_tokens = if settings.auth.client_tokens.is_empty() {
            let token = random_secret("sa_client_");
            secrets.client_token = Some(token.clone());
            vec![token]
        } else {
            settings.auth.client_tokens.clone()
        };
        let signing_key = match settings.tokens.signing_key.as_str() {
            "" => signing_key_of(&data_dir)?,
            key => key.to_owned(),
        };
        let previous: Vec<&[u8]> = settings
            .tokens
            .previous_signing_keys
            .iter()
            .map(|k| k.as_bytes())
            .collect();
        let keys = Arc::new(TokenKeys::new(signing_key.as_bytes(), &previous));

        let catalog = Arc::new(Catalog::load(store.clone(), metrics.clone()).await?);
        let assets = AssetStore::open(&data_dir)?;
        if settings.seeds_demo() {
            if let Some(seeded) = crate::demo::seed(&catalog, &assets, clock.now()).await? {
                tracing::info!(advertiser = %seeded.advertiser_id, "seeded demo data");
                secrets.demo_api_key = Some(seeded.api_key);
            }
        }
        let spend = Arc::new(SpendBoard::default());
        spend.refresh(&store, clock.now_ms()).await?;

        let grace_ms = settings.tokens.grace_seconds as i64 * 1000;
        let recent = Arc::new(crate::capping::recent::RecentUsers::default());
        let server = Arc::new(Server {
            store: store.clone(),
            recent: recent.clone(),
            catalog: catalog.clone(),
            spend: spend.clone(),
            keys: keys.clone(),
            clock: clock.clone(),
            metrics: metrics.clone(),
            policy: settings.ad_load,
            reserve_cpm_micros: settings.auction.reserve_cpm_micros,
            token_ttl_ms: settings.tokens.ttl_seconds as i64 * 1000,
            grace_ms,
            shards: settings.store.shards,
            chat: settings.chat.clone(),
        });
        let ledger = Arc::new(Ledger {
            store: store.clone(),
            recent,
            catalog: catalog.clone(),
            keys,
            clock: clock.clone(),
            metrics: metrics.clone(),
            shards: settings.store.shards,
            grace_ms,
            daily_max: settings.ad_load.max_per_user_per_day,
            spend: spend.clone(),
            spool: match store.backend_name() {
                "redis" => Some(Arc::new(crate::ledger::spool::Spool::open(
                    &data_dir,
                    settings.store.spool_max_bytes,
                )?)),
                _ => None,
            },
        });
        let state = web::Data::new(AppState {
            store: store.clone(),
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
            shards: settings.store.shards,
            rate_limits: crate::http::rate_limit::RateLimits::new(&settings.rate_limits),
        });
        let refresher = tokio::spawn(refresh_forever(
            catalog,
            spend,
            store,
            clock,
            state.ledger.clone(),
        ));

        let listener = TcpListener::bind(&settings.http.bind)?;
        let port = listener.local_addr()?.port();
        let app_state = state.clone();
        let server = actix_web::HttpServer::new(move || {
            let metrics = app_state.metrics.clone();
            App::new()
                .app_data(app_state.clone())
                .wrap_fn(move |req, srv| {
                    // Every request gets an id, in its log span and echoed to the caller.
                    let request_id = format!("{:016x}", rand::thread_rng().gen::<u64>());
                    let span = tracing::info_span!("request", id = %request_id, method = %req.method(), path = %req.path());
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
                .configure(http::configure)
        })
        // Slow clients (slow-loris) lose their connection instead of holding a worker slot.
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
                refresher,
            },
            secrets,
        ))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGINT/SIGTERM (graceful: stop accepting, finish in-flight requests).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        self.refresher.abort();
        result
    }
}

/// The configured backend: Redis when a URL is set, otherwise embedded under `data_dir`.
pub async fn open_store(settings: &Settings, metrics: Arc<Metrics>) -> Result<Store, StartupError> {
    Ok(if settings.uses_redis() {
        Store::Redis(
            RedisStore::connect(
                &settings.store.redis_url,
                &settings.store.cluster_nodes,
                settings.store.shards,
                settings.store.timeout_ms,
                metrics,
            )
            .await?,
        )
    } else {
        Store::Embedded(EmbeddedStore::open(&settings.store.data_dir)?)
    })
}

/// Keeps the catalog and spend snapshots fresh; errors are logged and retried next tick.
async fn refresh_forever(
    catalog: Arc<Catalog>,
    spend: Arc<SpendBoard>,
    store: Arc<Store>,
    clock: SharedClock,
    ledger: Arc<Ledger>,
) {
    let mut catalog_tick = tokio::time::interval(CATALOG_POLL);
    let mut spend_tick = tokio::time::interval(SPEND_REFRESH);
    loop {
        tokio::select! {
            _ = catalog_tick.tick() => {
                if let Err(err) = catalog.refresh().await {
                    tracing::warn!(error = %err, "catalog refresh failed");
                }
            }
            _ = spend_tick.tick() => {
                ledger.drain_spool().await;
                match spend.refresh(&store, clock.now_ms()).await {
                    Ok(()) => spend.update_pacing(&catalog.snapshot(), clock.now_ms()),
                    Err(err) => tracing::warn!(error = %err, "spend refresh failed"),
                }
            }
        }
    }
}

fn non_empty_or(value: &str, generate: impl FnOnce() -> String) -> String {
    if value.is_empty() {
        generate()
    } else {
        value.to_owned()
    }
}

fn random_secret(prefix: &str) -> String {
    use rand::distributions::{Alphanumeric, DistString};
    format!(
        "{prefix}{}",
        Alphanumeric.sample_string(&mut rand::thread_rng(), 32)
    )
}

/// The token signing key of this data dir, created on first use (readable by the owner only).
fn signing_key_of(data_dir: &Path) -> std::io::Result<String> {
    let path = data_dir.join("signing_key");
    match std::fs::read_to_string(&path) {
        Ok(key) if key.trim().len() >= 32 => Ok(key.trim().to_owned()),
        _ => {
            let key = random_secret("");
            std::fs::write(&path, &key)?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
            }
            Ok(key)
        }
    }
}
