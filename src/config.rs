//! Typed settings, layered: the built-in `config/default.toml` < an optional `config/<env>.toml`
//! (`STATUSADS_ENV=<env>`) or `--config FILE` < `STATUSADS__SECTION__KEY` environment variables.
//! A bad value fails start-up with a message naming the key. Secrets never reach `Debug` output.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

const DEFAULTS: &str = include_str!("../config/default.toml");
const ENV_PREFIX: &str = "STATUSADS__";
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
    #[error("config file {path} is not valid TOML: {message}")]
    Parse { path: String, message: String },
    #[error("config key `{key}`: {message}")]
    Invalid { key: String, message: String },
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
    pub chat: ChatSettings,
    pub messaging: MessagingSettings,
    pub rate_limits: RateLimitSettings,
    pub demo: DemoSettings,
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
}

impl MessagingSettings {
    /// The validated rule sets; the error names the offending set.
    pub fn rule_book(&self) -> Result<crate::messaging::rules::RuleBook, String> {
        crate::messaging::rules::RuleBook::from_config(&self.rule_sets)
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
    pub redis_url: String,
    /// The system of record: `postgres://…` (required with Redis), or empty for SQLite in
    /// `data_dir/statusads.db` on the embedded backend.
    pub database_url: DatabaseUrl,
    pub cluster_nodes: Vec<String>,
    pub data_dir: PathBuf,
    pub shards: u32,
    pub timeout_ms: u64,
    pub spool_max_bytes: u64,
    pub breaker_failures: u32,
    pub breaker_probe_ms: u64,
}

/// A database URL, which may carry a password: `Debug` shows it without.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct DatabaseUrl(pub String);

impl DatabaseUrl {
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // scheme://user:password@host/db -> scheme://user:***@host/db
        match (self.0.find("://"), self.0.rfind('@')) {
            (Some(scheme), Some(at)) if self.0[scheme + 3..at].contains(':') => {
                let colon = scheme + 3 + self.0[scheme + 3..at].find(':').unwrap_or(0);
                write!(
                    f,
                    "{:?}",
                    format!("{}:***{}", &self.0[..colon], &self.0[at..])
                )
            }
            _ => write!(f, "{:?}", self.0),
        }
    }
}

impl StoreSettings {
    pub fn breaker_policy(&self) -> crate::store::breaker::BreakerPolicy {
        crate::store::breaker::BreakerPolicy {
            failures_to_open: self.breaker_failures,
            probe_every_ms: self.breaker_probe_ms as i64,
        }
    }
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    pub admin_token: String,
    pub client_tokens: Vec<String>,
}

impl fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthSettings")
            .field("admin_token", &"<redacted>")
            .field(
                "client_tokens",
                &format_args!("<{} redacted>", self.client_tokens.len()),
            )
            .finish()
    }
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSettings {
    pub signing_key: String,
    pub previous_signing_keys: Vec<String>,
    pub ttl_seconds: u32,
    pub grace_seconds: u32,
}

impl fmt::Debug for TokenSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSettings")
            .field("signing_key", &"<redacted>")
            .field(
                "previous_signing_keys",
                &format_args!("<{} redacted>", self.previous_signing_keys.len()),
            )
            .field("ttl_seconds", &self.ttl_seconds)
            .field("grace_seconds", &self.grace_seconds)
            .finish()
    }
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatSettings {
    pub url_template: String,
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
        let mut root = parse_toml("config/default.toml (built in)", DEFAULTS)?;
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            merge(&mut root, parse_toml(&path.display().to_string(), &text)?);
        }
        for (name, value) in env {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let key = rest.to_ascii_lowercase().replace("__", ".");
            set_from_env(&mut root, &key, value)?;
        }
        let settings: Settings = serde_path_to_error::deserialize(toml::Value::Table(root))
            .map_err(|err| ConfigError::Invalid {
                key: err.path().to_string(),
                message: err.inner().to_string(),
            })?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: &str| {
            Err(ConfigError::Invalid {
                key: key.into(),
                message: message.into(),
            })
        };
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
        if !self.store.redis_url.is_empty() && !self.store.redis_url.starts_with("redis://") {
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
        let database = self.store.database_url.expose();
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
        if !(1..=16384).contains(&self.store.shards) {
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
        if !self.tokens.signing_key.is_empty() && self.tokens.signing_key.len() < 32 {
            return invalid("tokens.signing_key", "must be at least 32 characters");
        }
        if self.tokens.ttl_seconds < 10 {
            return invalid("tokens.ttl_seconds", "must be at least 10");
        }
        if self.ad_load.max_per_session == 0 || self.ad_load.min_gap == 0 {
            return invalid("ad_load", "max_per_session and min_gap must be positive");
        }
        if self.auction.reserve_cpm_micros < 0 {
            return invalid("auction.reserve_cpm_micros", "must not be negative");
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

    /// True when a Redis URL or cluster nodes are configured.
    pub fn uses_redis(&self) -> bool {
        !self.store.redis_url.is_empty() || !self.store.cluster_nodes.is_empty()
    }
}

fn parse_toml(origin: &str, text: &str) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>()
        .map_err(|err| ConfigError::Parse {
            path: origin.into(),
            message: err.to_string(),
        })
}

fn merge(base: &mut toml::Table, overlay: toml::Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(into)), toml::Value::Table(from)) => merge(into, from),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// Environment values are strings; give them the type the default has so that
/// `STATUSADS__AD_LOAD__MIN_GAP=5` becomes an integer and unknown keys are named.
fn set_from_env(root: &mut toml::Table, key: &str, raw: &str) -> Result<(), ConfigError> {
    let unknown = || ConfigError::Invalid {
        key: key.into(),
        message: "unknown configuration key (from environment)".into(),
    };
    let (section, field) = key.split_once('.').ok_or_else(unknown)?;
    let table = root
        .get_mut(section)
        .and_then(toml::Value::as_table_mut)
        .ok_or_else(unknown)?;
    let current = table.get(field).ok_or_else(unknown)?;
    let bad = |what: &str| ConfigError::Invalid {
        key: key.into(),
        message: format!("expected {what}, got {raw:?}"),
    };
    let value = match current {
        _ if LIST_KEYS.contains(&key) => toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| toml::Value::String(item.into()))
                .collect(),
        ),
        toml::Value::Integer(_) => {
            toml::Value::Integer(raw.trim().parse().map_err(|_| bad("an integer"))?)
        }
        toml::Value::Float(_) => {
            toml::Value::Float(raw.trim().parse().map_err(|_| bad("a number"))?)
        }
        toml::Value::Boolean(_) => {
            toml::Value::Boolean(raw.trim().parse().map_err(|_| bad("true or false"))?)
        }
        _ => toml::Value::String(raw.into()),
    };
    table.insert(field.into(), value);
    Ok(())
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
        assert_eq!(s.auth.client_tokens, vec!["a", "b", "c"]);
        assert!(s.uses_redis());
        assert!(s.seeds_demo());
        let shown = format!("{:?}", s.store);
        assert!(
            shown.contains("postgres://ads:***@db:5432/ads") && !shown.contains("pw@"),
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
        let s = Settings::from_layers(
            None,
            &env(&[
                ("STATUSADS__AUTH__ADMIN_TOKEN", "super-secret-admin"),
                (
                    "STATUSADS__TOKENS__SIGNING_KEY",
                    "0123456789abcdef0123456789abcdef-secret",
                ),
            ]),
        )
        .unwrap();
        let printed = format!("{s:?}");
        assert!(!printed.contains("super-secret-admin"));
        assert!(!printed.contains("-secret"));
    }
}
