//! The actix-web boundary: one file per resource, each with a `configure(cfg)`; handlers parse,
//! call one domain operation and map the result. No store command is issued from here.

pub mod advertisers;
pub mod assets;
pub mod auth;
pub mod body_deadline;
pub mod campaigns;
pub mod console;
pub mod conversions;
pub mod creatives;
pub mod error;
pub mod events;
pub mod insight;
pub mod invoices;
pub mod messages;
pub mod openapi;
pub mod operations;
pub mod rate_limit;
pub mod reports;
pub mod slots;
pub mod users;

use std::sync::Arc;
use utoipa_actix_web::service_config::ServiceConfig;

use actix_web::web;

use crate::catalog::assets::AssetStore;
use crate::catalog::Catalog;
use crate::clock::SharedClock;
use crate::ledger::{Ledger, SpendBoard};
use crate::metrics::Metrics;
use crate::serving::Server;
use crate::store::Store;

use self::error::ApiError;

/// JSON bodies are limited to 64 KiB (API.md).
pub const JSON_LIMIT: usize = 64 * 1024;

/// Everything handlers reach, shared by all workers.
pub struct AppState {
    pub store: Arc<Store>,
    pub record: Arc<crate::record::Record>,
    /// Moves the outbox into the record; reports and invoices read its `as_of`.
    pub exporter: Arc<crate::record::exporter::Exporter>,
    pub catalog: Arc<Catalog>,
    pub server: Arc<Server>,
    /// Access and erasure requests.
    pub subjects: Arc<crate::privacy::subject::Subjects>,
    pub ledger: Arc<Ledger>,
    pub spend: Arc<SpendBoard>,
    pub assets: AssetStore,
    /// Where journal, spool and assets live; `/readyz` probes it.
    pub data_dir: std::path::PathBuf,
    pub metrics: Arc<Metrics>,
    pub clock: SharedClock,
    pub admin_token: String,
    pub client_tokens: Vec<String>,
    pub rules: Arc<crate::messaging::rules::RuleBook>,
    pub shards: u32,
    pub rate_limits: rate_limit::RateLimits,
    /// Uploads in flight per advertiser.
    pub uploads: rate_limit::Concurrency,
}

impl AppState {
    /// Takes one token of `scope` for `key`, or the 429 to answer.
    pub fn limit(&self, scope: crate::metrics::RateLimitScope, key: &str) -> Result<(), ApiError> {
        self.rate_limits
            .check(scope, key, &self.metrics)
            .map_err(ApiError::RateLimited)
    }
}

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(JSON_LIMIT)
            .error_handler(|err, _| ApiError::from(err).into()),
    )
    .app_data(
        web::QueryConfig::default().error_handler(|err, _| {
            ApiError::InvalidRequest(format!("invalid query: {err}")).into()
        }),
    )
    // The router tries resources in this order, and each path with a `{param}` costs a regex
    // match: the app's hot static routes (slots, events) go first, before any such path.
    .configure(operations::configure)
    .configure(slots::configure)
    .configure(events::configure)
    .configure(insight::configure)
    .configure(conversions::configure)
    .configure(messages::configure)
    .configure(console::configure)
    .configure(openapi::configure)
    .configure(advertisers::configure)
    .configure(campaigns::configure)
    .configure(creatives::configure)
    .configure(assets::configure)
    .configure(reports::configure)
    .configure(invoices::configure)
    .configure(users::configure)
    .default_service(web::to(|| async {
        Err::<actix_web::HttpResponse, _>(ApiError::NotFound)
    }));
}
