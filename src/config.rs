//! Typed settings, layered by `figment`: the built-in `config/default.toml` < an optional
//! `config/<env>.toml` (`STATUSADS_ENV=<env>`) or `--config FILE` < `STATUSADS__SECTION__KEY`
//! environment variables (comma-separated for the keys in `LIST_KEYS`). A bad value fails
//! start-up with a message naming the key and the layer it came from, e.g. "config key
//! `store.shards` (from environment variable STATUSADS__STORE__SHARDS): …". Secrets are
//! [`SecretString`]s: `Debug` never shows them, and the one place that needs a value calls
//! `expose_secret()`.

use std::path::{Path, PathBuf};

use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Map};
use figment::{Figment, Metadata, Profile, Provider, Source};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

const DEFAULTS: &str = include_str!("../config/default.toml");
const DEFAULTS_LAYER: &str = "config/default.toml (built in)";
const ENV_PREFIX: &str = "STATUSADS__";
/// The most `store.shards` may be (click ids name a shard below it).
pub const MAX_SHARDS: u32 = 16384;
/// Keys whose environment value is a comma-separated list.
const LIST_KEYS: [&str; 3] = [
    "store.cluster_nodes",
    "auth.client_tokens",
    "tokens.previous_signing_keys",
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{layer} is not valid TOML: {message}")]
    Parse { layer: String, message: String },
    /// `layer` says where the value came from: the built-in defaults, a config file or an
    /// environment variable.
    #[error("config key `{key}` (from {layer}): {message}")]
    Invalid {
        key: String,
        layer: String,
        message: String,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub http: HttpSettings,
    pub store: StoreSettings,
    pub auth: AuthSettings,
    pub tokens: TokenSettings,
    pub ad_load: AdLoadSettings,
    pub auction: AuctionSettings,
    pub money: MoneySettings,
    pub chat: ChatSettings,
    pub messaging: MessagingSettings,
    pub rate_limits: RateLimitSettings,
    pub demo: DemoSettings,
    pub privacy: PrivacySettings,
    pub insight: InsightSettings,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettings {
    pub client_per_second: f64,
    pub client_burst: f64,
    pub user_per_minute: f64,
    pub user_burst: f64,
    pub advertiser_per_second: f64,
    pub advertiser_burst: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessagingSettings {
    /// Dated rule sets (`[[messaging.rule_sets]]`); see `messaging::rules`.
    pub rule_sets: Vec<crate::messaging::rules::RuleSetConfig>,
    /// Conversations keep a lapsed window beside a later one, for messages reported late;
    /// false while nodes of an earlier build share the store (README: Upgrading).
    pub keep_lapsed_windows: bool,
}

impl MessagingSettings {
    /// The validated rule sets; the error names the offending set.
    pub fn rule_book(&self) -> Result<crate::messaging::rules::RuleBook, String> {
        Ok(
            crate::messaging::rules::RuleBook::from_config(&self.rule_sets)?
                .keeping_lapsed_windows(self.keep_lapsed_windows),
        )
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    pub bind: String,
    pub json_logs: bool,
    /// Deadline for a whole request body, counted from its head.
    pub body_timeout_ms: u64,
    pub max_concurrent_uploads_per_advertiser: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    /// `redis://[:password@]host:port[/db]`: it may carry a password.
    pub redis_url: SecretString,
    /// The system of record: `postgres://…` (required with Redis), or empty for SQLite in
    /// `data_dir/statusads.db` on the embedded backend.
    /// It may carry a password.
    pub database_url: SecretString,
    pub cluster_nodes: Vec<String>,
    pub data_dir: PathBuf,
    pub shards: u32,
    pub timeout_ms: u64,
    pub spool_max_bytes: u64,
    /// Embedded: the journal length past which it is compacted into a snapshot.
    pub journal_compact_bytes: u64,
    pub breaker_failures: u32,
    pub breaker_probe_ms: u64,
}

impl StoreSettings {
    pub fn breaker_policy(&self) -> crate::store::breaker::BreakerPolicy {
        crate::store::breaker::BreakerPolicy {
            failures_to_open: self.breaker_failures,
            probe_every_ms: self.breaker_probe_ms as i64,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    pub admin_token: SecretString,
    pub client_tokens: Vec<SecretString>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSettings {
    pub signing_key: SecretString,
    pub previous_signing_keys: Vec<SecretString>,
    pub ttl_seconds: u32,
    pub grace_seconds: u32,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AdLoadSettings {
    pub first_after: u32,
    pub min_gap: u32,
    pub max_per_session: u32,
    pub max_per_user_per_day: u32,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuctionSettings {
    pub reserve_cpm_micros: i64,
}

/// The service currency and exchange rates (see `domain::money`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoneySettings {
    /// What `auction.reserve_cpm_micros` and the messaging rate card are in.
    pub currency: String,
    /// Per other currency an advertiser may bill in: units of `currency` one unit is worth.
    #[serde(default)]
    pub rates: std::collections::BTreeMap<String, f64>,
}

impl MoneySettings {
    pub fn money(&self) -> Result<crate::domain::money::Money, crate::domain::money::MoneyError> {
        crate::domain::money::Money::new(&self.currency, &self.rates)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatSettings {
    pub url_template: String,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InsightSettings {
    /// Share of decisions sampled for delivery diagnostics and forecasts.
    pub sample_rate: f64,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacySettings {
    /// Consent assumed for a slot request that carries none.
    pub default_personalized: bool,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoSettings {
    /// `true`, `false` or `"auto"`: seed on the embedded backend (the quick start), not on Redis.
    #[serde(deserialize_with = "seed_setting")]
    pub seed: Option<bool>,
}

fn seed_setting<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<bool>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Flag(bool),
        Text(String),
    }
    match Raw::deserialize(deserializer)? {
        Raw::Flag(flag) => Ok(Some(flag)),
        Raw::Text(text) => match text.as_str() {
            "auto" => Ok(None),
            "true" => Ok(Some(true)),
            "false" => Ok(Some(false)),
            other => Err(serde::de::Error::custom(format!(
                "expected true, false or \"auto\", got {other:?}"
            ))),
        },
    }
}

impl Settings {
    /// Loads the layered configuration from the process environment.
    pub fn load(config_file: Option<&Path>) -> Result<Self, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        let env_file = std::env::var("STATUSADS_ENV")
            .ok()
            .map(|name| PathBuf::from(format!("config/{name}.toml")));
        Self::from_layers(config_file.or(env_file.as_deref()), &env)
    }

    /// The defaults alone (what tests start from).
    pub fn defaults() -> Self {
        Self::from_layers(None, &[]).expect("built-in defaults are valid")
    }

    pub fn from_layers(file: Option<&Path>, env: &[(String, String)]) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Toml::string(DEFAULTS));
        if let Some(path) = file {
            // figment skips a missing file; a named one must exist.
            std::fs::File::open(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            figment = figment.merge(Toml::file_exact(path));
        }
        for (name, value) in env {
            if let Some(rest) = name.strip_prefix(ENV_PREFIX) {
                let mut key = rest.to_ascii_lowercase().replace("__", ".");
                // A currency code as the files spell it (`USD = 0.92`), so that the variable
                // overrides the file's entry rather than standing beside it.
                if let Some(code) = key.strip_prefix("money.rates.") {
                    key = format!("money.rates.{}", code.to_ascii_uppercase());
                }
                figment = figment.merge(EnvVar { name, key, value });
            }
        }
        // Lossy: a string ("6", "true", as every environment value is) is read as the number or
        // flag its field asks for.
        let settings: Settings = figment
            .extract_lossy()
            .map_err(|err| config_error(&figment, err))?;
        settings
            .validate()
            .map_err(|(key, message)| ConfigError::Invalid {
                layer: layer_of(&figment, &key),
                key,
                message,
            })?;
        Ok(settings)
    }

    /// The first rule broken, as (key, message).
    fn validate(&self) -> Result<(), (String, String)> {
        let invalid = |key: &str, message: &str| Err((key.to_owned(), message.to_owned()));
        if self.http.bind.parse::<std::net::SocketAddr>().is_err() {
            return invalid("http.bind", "must be host:port, e.g. 127.0.0.1:8080");
        }
        if self.http.body_timeout_ms == 0 {
            return invalid("http.body_timeout_ms", "must be positive");
        }
        if self.http.max_concurrent_uploads_per_advertiser == 0 {
            return invalid(
                "http.max_concurrent_uploads_per_advertiser",
                "must be at least 1",
            );
        }
        let redis_url = self.store.redis_url.expose_secret();
        if !redis_url.is_empty() && !redis_url.starts_with("redis://") {
            return invalid("store.redis_url", "must start with redis://");
        }
        if let Some(bad) = self
            .store
            .cluster_nodes
            .iter()
            .find(|n| !n.starts_with("redis://"))
        {
            return invalid(
                "store.cluster_nodes",
                &format!("{bad:?} must start with redis://"),
            );
        }
        let database = self.store.database_url.expose_secret();
        if self.uses_redis() && database.is_empty() {
            return invalid(
                "store.database_url",
                "is required with Redis: the system of record (postgres://user@host:5432/db)",
            );
        }
        if !database.is_empty()
            && !database.starts_with("postgres://")
            && !database.starts_with("postgresql://")
        {
            return invalid(
                "store.database_url",
                "must start with postgres:// (leave it empty for SQLite in data_dir on the embedded backend)",
            );
        }
        if !(1..=MAX_SHARDS).contains(&self.store.shards) {
            return invalid("store.shards", "must be between 1 and 16384");
        }
        if self.store.timeout_ms == 0 {
            return invalid("store.timeout_ms", "must be positive");
        }
        if self.store.breaker_failures == 0 {
            return invalid("store.breaker_failures", "must be at least 1");
        }
        if !(10..=60_000).contains(&self.store.breaker_probe_ms) {
            return invalid(
                "store.breaker_probe_ms",
                "must be between 10 and 60000 (milliseconds)",
            );
        }
        let signing_key = self.tokens.signing_key.expose_secret();
        if !signing_key.is_empty() && signing_key.len() < 32 {
            return invalid("tokens.signing_key", "must be at least 32 characters");
        }
        if self.tokens.ttl_seconds < 10 {
            return invalid("tokens.ttl_seconds", "must be at least 10");
        }
        if self.ad_load.max_per_session == 0 || self.ad_load.min_gap == 0 {
            return invalid("ad_load", "max_per_session and min_gap must be positive");
        }
        if !(0.0..=1.0).contains(&self.insight.sample_rate) {
            return invalid("insight.sample_rate", "must be between 0 and 1");
        }
        if self.ad_load.max_per_user_per_day as usize > crate::privacy::state::MAX_DAILY {
            return invalid(
                "ad_load.max_per_user_per_day",
                "must be at most 100 (what a user's carried state counts)",
            );
        }
        // A render is billed its CPM / 1,000 in whole micros: below 1,000 a lone bidder, who
        // pays the reserve, would be billed nothing.
        if self.auction.reserve_cpm_micros
            < crate::domain::campaign::Campaign::MIN_BILLED_CPM_MICROS
        {
            return invalid(
                "auction.reserve_cpm_micros",
                "must be at least 1000 (a render below it is billed nothing)",
            );
        }
        if let Err(err) = self.money.money() {
            return Err((err.key, err.message));
        }
        if let Err(message) = self.messaging.rule_book() {
            return invalid("messaging.rule_sets", &message);
        }
        if !self.chat.url_template.contains("{number}") {
            return invalid("chat.url_template", "must contain {number}");
        }
        Ok(())
    }

    /// Whether to seed demo data on an empty catalog.
    pub fn seeds_demo(&self) -> bool {
        self.demo.seed.unwrap_or(!self.uses_redis())
    }

    /// The hot state's shards: `store.shards` on Redis; one on the embedded backend, which is
    /// one node (and whose earlier journals name no shard).
    pub fn hot_shards(&self) -> u32 {
        if self.uses_redis() {
            self.store.shards
        } else {
            1
        }
    }

    /// True when a Redis URL or cluster nodes are configured.
    pub fn uses_redis(&self) -> bool {
        !self.store.redis_url.expose_secret().is_empty() || !self.store.cluster_nodes.is_empty()
    }
}

/// One `STATUSADS__SECTION__KEY` variable as a layer of its own, so that an error names it.
struct EnvVar<'a> {
    name: &'a str,
    /// `section.key`, lower case.
    key: String,
    value: &'a str,
}

impl Provider for EnvVar<'_> {
    fn metadata(&self) -> Metadata {
        Metadata::named(format!("environment variable {}", self.name))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        // figment would read a short decimal such as 0.92 as an f32 (0.92000001…): an
        // exchange rate is parsed here as TOML parses it, as an f64.
        if let Some(rate) = self
            .key
            .strip_prefix("money.rates.")
            .and(self.value.trim().parse::<f64>().ok())
        {
            return Serialized::default(&self.key, rate).data();
        }
        if LIST_KEYS.contains(&self.key.as_str()) {
            let items: Vec<&str> = self
                .value
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .collect();
            Serialized::default(&self.key, items).data()
        } else {
            Serialized::default(&self.key, self.value).data()
        }
    }
}

/// Where the value at `key` came from.
fn layer_of(figment: &Figment, key: &str) -> String {
    figment
        .find_metadata(key)
        .map_or_else(|| DEFAULTS_LAYER.to_owned(), describe)
}

fn describe(metadata: &Metadata) -> String {
    match &metadata.source {
        Some(Source::File(path)) => format!("config file {}", path.display()),
        Some(Source::Code(_)) => DEFAULTS_LAYER.to_owned(),
        _ => metadata.name.to_string(),
    }
}

fn config_error(figment: &Figment, err: figment::Error) -> ConfigError {
    let message = err.kind.to_string();
    if err.path.is_empty() {
        // Only a provider fails without a key: a file that is not TOML.
        return ConfigError::Parse {
            layer: err
                .metadata
                .as_ref()
                .map_or_else(|| DEFAULTS_LAYER.to_owned(), describe),
            message,
        };
    }
    let key = err.path.join(".");
    let layer = match &err.metadata {
        Some(metadata) => describe(metadata),
        None => layer_of(figment, &key),
    };
    ConfigError::Invalid {
        key,
        layer,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_match_the_design_table() {
        let s = Settings::defaults();
        assert_eq!(s.http.bind, "127.0.0.1:8080");
        assert_eq!(s.http.body_timeout_ms, 10_000);
        assert_eq!(s.http.max_concurrent_uploads_per_advertiser, 4);
        assert!(!s.uses_redis());
        assert_eq!(s.store.data_dir, PathBuf::from("./data"));
        assert_eq!(
            s.ad_load,
            AdLoadSettings {
                first_after: 2,
                min_gap: 4,
                max_per_session: 3,
                max_per_user_per_day: 10
            }
        );
        assert_eq!(s.auction.reserve_cpm_micros, 500_000);
        assert_eq!(
            (s.store.breaker_failures, s.store.breaker_probe_ms),
            (3, 500)
        );
        assert!(s.seeds_demo(), "the embedded quick start seeds demo data");
        let book = s.messaging.rule_book().unwrap();
        assert_eq!(book.sets().len(), 1);
        assert_eq!(book.sets()[0].name, "2025-07-01");
        assert!(book.sets()[0].window.utility_free_in_window);
    }

    #[test]
    fn exchange_rates_from_the_environment_are_exact_and_errors_name_the_entry() {
        let s = Settings::from_layers(
            None,
            &env(&[
                ("STATUSADS__MONEY__RATES__USD", "0.92"),
                ("STATUSADS__MONEY__RATES__JPY", "6.1e-3"),
            ]),
        )
        .unwrap();
        let money = s.money.money().unwrap();
        // Read as an f32, 0.92 was 0.92000001…: 920,000 EUR micros were 999,999 USD micros.
        assert_eq!(money.rate("USD").unwrap().from_service(920_000), 1_000_000);
        assert_eq!(
            money.rate("JPY").unwrap().to_service(1_000_000_000),
            6_100_000
        );
        // The variable overrides the file's entry of the same code.
        use crate::domain::money::Rate;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("statusads.toml");
        std::fs::write(&file, "[money.rates]\nUSD = 0.5\n").unwrap();
        let s = Settings::from_layers(
            Some(&file),
            &env(&[("STATUSADS__MONEY__RATES__USD", "0.92")]),
        )
        .unwrap();
        assert_eq!(
            s.money.money().unwrap().rate("USD"),
            Rate::from_decimal(0.92)
        );
        let err = Settings::from_layers(None, &env(&[("STATUSADS__MONEY__RATES__XYZ", "1")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("money.rates.XYZ")
                && err.contains("environment variable STATUSADS__MONEY__RATES__XYZ"),
            "{err}"
        );
    }

    #[test]
    fn environment_overrides_with_types_and_lists() {
        let s = Settings::from_layers(
            None,
            &env(&[
                ("STATUSADS__AD_LOAD__MIN_GAP", "6"),
                ("STATUSADS__AUTH__CLIENT_TOKENS", "a, b,,c"),
                ("STATUSADS__STORE__REDIS_URL", "redis://127.0.0.1:6379"),
                (
                    "STATUSADS__STORE__DATABASE_URL",
                    "postgres://ads:pw@db:5432/ads",
                ),
                ("STATUSADS__DEMO__SEED", "true"),
                ("STATUSADS__HTTP__BODY_TIMEOUT_MS", "2500"),
                ("OTHER", "ignored"),
            ]),
        )
        .unwrap();
        assert_eq!(s.ad_load.min_gap, 6);
        assert_eq!(s.http.body_timeout_ms, 2500);
        let tokens: Vec<&str> = s
            .auth
            .client_tokens
            .iter()
            .map(|t| t.expose_secret())
            .collect();
        assert_eq!(tokens, ["a", "b", "c"]);
        assert!(s.uses_redis());
        assert!(s.seeds_demo());
        assert_eq!(
            s.store.database_url.expose_secret(),
            "postgres://ads:pw@db:5432/ads"
        );
        let shown = format!("{:?}", s.store);
        assert!(
            !shown.contains("pw@") && !shown.contains("db:5432"),
            "{shown}"
        );
        let err = Settings::from_layers(
            None,
            &env(&[("STATUSADS__STORE__REDIS_URL", "redis://127.0.0.1:6379")]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("store.database_url"),
            "required with Redis: {err}"
        );
        let s = Settings::from_layers(
            None,
            &env(&[
                ("STATUSADS__STORE__REDIS_URL", "redis://127.0.0.1:6379"),
                ("STATUSADS__STORE__DATABASE_URL", "postgres://db/ads"),
            ]),
        )
        .unwrap();
        assert!(
            !s.seeds_demo(),
            "redis deployments are not seeded unless asked"
        );
    }

    #[test]
    fn bad_values_name_the_key() {
        let err = Settings::from_layers(None, &env(&[("STATUSADS__AD_LOAD__MIN_GAP", "many")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("ad_load.min_gap"), "{err}");
        let err = Settings::from_layers(None, &env(&[("STATUSADS__HTTP__BIND", "nowhere")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("http.bind"), "{err}");
        let err = Settings::from_layers(None, &env(&[("STATUSADS__STORE__BREAKER_FAILURES", "0")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("store.breaker_failures"), "{err}");
        let err = Settings::from_layers(None, &env(&[("STATUSADS__STORE__BREAKER_PROBE_MS", "0")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("store.breaker_probe_ms"), "{err}");
        for (name, value, key) in [
            (
                "STATUSADS__HTTP__BODY_TIMEOUT_MS",
                "0",
                "http.body_timeout_ms",
            ),
            (
                "STATUSADS__HTTP__MAX_CONCURRENT_UPLOADS_PER_ADVERTISER",
                "0",
                "http.max_concurrent_uploads_per_advertiser",
            ),
            (
                "STATUSADS__AUCTION__RESERVE_CPM_MICROS",
                "999",
                "auction.reserve_cpm_micros",
            ),
        ] {
            let err = Settings::from_layers(None, &env(&[(name, value)]))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{err}");
        }
        let err = Settings::from_layers(None, &env(&[("STATUSADS__HTTP__TYPO", "1")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("http.typo"), "{err}");
    }

    #[test]
    fn the_october_2026_example_loads_both_sets() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("config/messaging-2026-10.example.toml");
        let s = Settings::from_layers(Some(&path), &[]).unwrap();
        let book = s.messaging.rule_book().unwrap();
        let names: Vec<&str> = book.sets().iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["2025-07-01", "2026-10-01"]);
        assert!(!book.sets()[1].window.utility_free_in_window);
    }

    #[test]
    fn a_bad_rule_set_stops_the_start_naming_it() {
        let dir = std::env::temp_dir().join(format!("statusads-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.toml");
        std::fs::write(
            &path,
            r#"
[[messaging.rule_sets]]
effective_from = "2026-10-01"
utility_free_in_window = false
default_micros = 1
category_defaults = { utility = 1, marketing = 1, authentication = 1 }
tiers = [{ country = "IT", category = "utility", steps = [{ from = 1, micros = 2 }, { from = 1, micros = 1 }] }]
"#,
        )
        .unwrap();
        let err = Settings::from_layers(Some(&path), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("messaging.rule_sets"), "{err}");
        assert!(err.contains("2026-10-01"), "{err}");
        assert!(err.contains("not increasing"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn debug_output_never_shows_secrets() {
        let secrets = [
            ("STATUSADS__AUTH__ADMIN_TOKEN", "super-secret-admin"),
            (
                "STATUSADS__AUTH__CLIENT_TOKENS",
                "client-secret-1,client-secret-2",
            ),
            (
                "STATUSADS__TOKENS__SIGNING_KEY",
                "0123456789abcdef0123456789abcdef-secret",
            ),
            (
                "STATUSADS__TOKENS__PREVIOUS_SIGNING_KEYS",
                "previous-secret-0123456789abcdef",
            ),
            (
                "STATUSADS__STORE__REDIS_URL",
                "redis://:redis-secret@cache:6379",
            ),
            (
                "STATUSADS__STORE__DATABASE_URL",
                "postgres://ads:database-secret@db/ads",
            ),
        ];
        let s = Settings::from_layers(None, &env(&secrets)).unwrap();
        let printed = format!("{s:?}");
        for (_, value) in secrets {
            for part in value.split(',') {
                assert!(!printed.contains(part), "{part} in {printed}");
            }
        }
        assert!(!printed.contains("secret"), "{printed}");
        assert_eq!(s.auth.admin_token.expose_secret(), "super-secret-admin");
        assert_eq!(s.auth.client_tokens.len(), 2);
        assert_eq!(s.tokens.previous_signing_keys.len(), 1);
    }

    #[test]
    fn errors_name_the_environment_variable() {
        let err = Settings::from_layers(None, &env(&[("STATUSADS__STORE__SHARDS", "0")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "config key `store.shards` (from environment variable STATUSADS__STORE__SHARDS): "
            ),
            "{err}"
        );
        let err = Settings::from_layers(None, &env(&[("STATUSADS__STORE__SHARDS", "many")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`store.shards` (from environment variable STATUSADS__STORE__SHARDS)")
                && err.contains("many"),
            "{err}"
        );
        let err = Settings::from_layers(None, &env(&[("STATUSADS__HTTP__TYPO", "1")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`http.typo` (from environment variable STATUSADS__HTTP__TYPO)"),
            "{err}"
        );
        let err = Settings::from_layers(None, &env(&[("STATUSADS__NOWHERE__KEY", "1")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`nowhere` (from environment variable STATUSADS__NOWHERE__KEY)"),
            "{err}"
        );
    }

    #[test]
    fn errors_name_the_config_file() {
        let dir = std::env::temp_dir().join(format!("statusads-layers-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("prod.toml");
        let layer = format!("(from config file {})", path.display());
        for (text, key) in [
            ("[store]\nshards = 0\n", "store.shards"),
            ("[store]\nshards = \"many\"\n", "store.shards"),
            ("[http]\ntypo = 1\n", "http.typo"),
            ("[tokens]\nsigning_key = \"short\"\n", "tokens.signing_key"),
        ] {
            std::fs::write(&path, text).unwrap();
            let err = Settings::from_layers(Some(&path), &[])
                .unwrap_err()
                .to_string();
            assert!(err.contains(&format!("`{key}` {layer}")), "{text}: {err}");
        }
        // A later layer wins, and its name is the one given.
        std::fs::write(&path, "[store]\nshards = 0\n").unwrap();
        let err = Settings::from_layers(Some(&path), &env(&[("STATUSADS__STORE__SHARDS", "-1")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("STATUSADS__STORE__SHARDS"), "{err}");
        std::fs::write(&path, "[store]\nshards = 8\n").unwrap();
        let s = Settings::from_layers(Some(&path), &[]).unwrap();
        assert_eq!(s.store.shards, 8);
        std::fs::write(&path, "[store\nshards = 8\n").unwrap();
        let err = Settings::from_layers(Some(&path), &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("config file {} is not valid TOML", path.display())),
            "{err}"
        );
        let missing = dir.join("missing.toml");
        let err = Settings::from_layers(Some(&missing), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot read config file"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
