//! The one metrics catalogue. Every metric the service exports is declared in [`CATALOGUE`] with
//! its name, type and help text, and recorded through a method of [`Metrics`]. Labels only take
//! values from closed enums: never a user, campaign or advertiser id (cardinality stays fixed).
//!
//! Counters are plain atomics indexed by label enums, so recording on the hot path is one
//! relaxed `fetch_add` and no allocation.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::domain::campaign::Priority;
use crate::domain::event::{EventStatus, EventType};
use crate::store::breaker::Transition;

/// Declared once: (name, type, help).
pub const CATALOGUE: &[(&str, &str, &str)] = &[
    (
        "statusads_decisions_total",
        "counter",
        "Slot decisions by outcome (filled: at least one slot; empty; unavailable: store outage).",
    ),
    (
        "statusads_decision_duration_seconds",
        "histogram",
        "Time to answer POST /v1/slots, store calls included.",
    ),
    (
        "statusads_slots_served_total",
        "counter",
        "Slots served, by campaign priority tier.",
    ),
    (
        "statusads_decision_conflicts_total",
        "counter",
        "Decisions recomputed on the live user state their commit returned (the node's copy of the user was stale or assumed).",
    ),
    (
        "statusads_decision_views_total",
        "counter",
        "Decisions by the user state first decided on: this node's recent view of the user, or a user assumed new (not seen here within 30 s).",
    ),
    (
        "statusads_events_total",
        "counter",
        "Client events by type and resulting status.",
    ),
    (
        "statusads_ledger_appends_total",
        "counter",
        "Records appended to the ledger.",
    ),
    (
        "statusads_redis_duration_seconds",
        "histogram",
        "Latency of Redis interactions (one script or pipeline each), by operation.",
    ),
    (
        "statusads_redis_errors_total",
        "counter",
        "Redis interactions that failed or timed out, by operation.",
    ),
    (
        "statusads_catalog_reloads_total",
        "counter",
        "Catalog snapshots rebuilt after a change.",
    ),
    (
        "statusads_http_responses_total",
        "counter",
        "HTTP responses by status class.",
    ),
    ("statusads_conversions_total", "counter", "Click-to-chat conversions by type and status."),
    ("statusads_messages_total", "counter", "Business messages by template category (none for free-form and inbound) and outcome (rating reason, refused or duplicate)."),
    ("statusads_message_charges_total", "counter", "Business messages that were charged."),
    ("statusads_message_statuses_total", "counter", "Delivery statuses of messages recorded as sent, by status (accepted: it settled the charge; duplicate) and billing (final, void)."),
    ("statusads_rate_limited_total", "counter", "Requests refused with 429, by limit scope (client token, user, advertiser, uploads in flight per advertiser)."),
    ("statusads_panics_total", "counter", "Request handlers that panicked (answered 500; the worker survives)."),
    ("statusads_spool_events", "gauge", "Events acknowledged during a Redis outage and waiting in the local spool."),
    ("statusads_spool_replayed_total", "counter", "Spooled events replayed into Redis after an outage."),
    ("statusads_store_breaker_open", "gauge", "1 while the store's circuit breaker is open (Redis failed store.breaker_failures times in a row; calls fail at once until a probe answers), else 0."),
    ("statusads_store_breaker_transitions_total", "counter", "Store circuit breaker state changes, by the state entered (open, closed)."),
    ("statusads_redis_aof_enabled", "gauge", "1 when Redis reports append-only persistence on, 0 when off (an acknowledged event would not survive a Redis crash); absent until Redis has answered."),
];

const CONVERSION_TYPES: [&str; 2] = ["conversation_started", "message"];
const CONVERSION_STATUSES: [&str; 3] = ["accepted", "duplicate", "unknown_click"];
const MESSAGE_STATUSES: [&str; 2] = ["accepted", "duplicate"];
const MESSAGE_BILLINGS: [&str; 2] = ["final", "void"];
const MESSAGE_CATEGORIES: [&str; 4] = ["none", "utility", "marketing", "authentication"];
const MESSAGE_OUTCOMES: [&str; 6] = [
    "inbound",
    "service_window",
    "free_entry_point",
    "rated",
    "refused",
    "duplicate",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimitScope {
    Client,
    User,
    Advertiser,
    /// Concurrent uploads of one advertiser.
    Uploads,
}

impl RateLimitScope {
    const ALL: [Self; 4] = [Self::Client, Self::User, Self::Advertiser, Self::Uploads];

    fn as_str(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::User => "user",
            Self::Advertiser => "advertiser",
            Self::Uploads => "uploads",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionOutcome {
    Filled,
    Empty,
    Unavailable,
}

impl DecisionOutcome {
    const ALL: [Self; 3] = [Self::Filled, Self::Empty, Self::Unavailable];

    fn as_str(self) -> &'static str {
        match self {
            Self::Filled => "filled",
            Self::Empty => "empty",
            Self::Unavailable => "unavailable",
        }
    }
}

/// The user state a decision was first computed on (see `capping::recent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionView {
    /// This node's recent view of the user.
    Recent,
    /// A user not seen here within the view age, assumed new.
    AssumedNew,
}

impl DecisionView {
    const ALL: [Self; 2] = [Self::Recent, Self::AssumedNew];

    fn as_str(self) -> &'static str {
        match self {
            Self::Recent => "recent",
            Self::AssumedNew => "assumed_new",
        }
    }
}

/// Kinds of Redis interaction, each one round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisOp {
    Ping,
    Catalog,
    Reserve,
    Events,
    Spend,
    Report,
    Ledger,
    Messaging,
}

impl RedisOp {
    const ALL: [Self; 8] = [
        Self::Ping,
        Self::Catalog,
        Self::Reserve,
        Self::Events,
        Self::Spend,
        Self::Report,
        Self::Ledger,
        Self::Messaging,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ping => "ping",
            Self::Catalog => "catalog",
            Self::Reserve => "reserve",
            Self::Events => "events",
            Self::Spend => "spend",
            Self::Report => "report",
            Self::Ledger => "ledger",
            Self::Messaging => "messaging",
        }
    }
}

const PRIORITIES: [Priority; 3] = [Priority::Sponsorship, Priority::Auction, Priority::House];
const HTTP_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
/// Seconds; fine at the low end because decisions are expected well under 5 ms.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Histogram {
    fn new() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_nanos: AtomicU64::new(0),
        }
    }

    fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        if let Some(index) = BUCKETS.iter().position(|bound| secs <= *bound) {
            self.buckets[index].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_nanos
            .fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {count}");
    }
}

fn counters<const N: usize>() -> [AtomicU64; N] {
    std::array::from_fn(|_| AtomicU64::new(0))
}

pub struct Metrics {
    decisions: [AtomicU64; 3],
    decision_duration: Histogram,
    slots_served: [AtomicU64; 3],
    decision_conflicts: AtomicU64,
    decision_views: [AtomicU64; DecisionView::ALL.len()],
    events: [AtomicU64; 25],
    ledger_appends: AtomicU64,
    redis_duration: [Histogram; RedisOp::ALL.len()],
    redis_errors: [AtomicU64; RedisOp::ALL.len()],
    catalog_reloads: AtomicU64,
    http_responses: [AtomicU64; 5],
    conversions: [AtomicU64; 6],
    messages: [AtomicU64; 24],
    message_charges: AtomicU64,
    message_statuses: [AtomicU64; 4],
    rate_limited: [AtomicU64; 4],
    panics: AtomicU64,
    spool_events: AtomicU64,
    spool_replayed: AtomicU64,
    breaker_open: AtomicU64,
    /// Indexed like [`BREAKER_STATES`].
    breaker_transitions: [AtomicU64; 2],
    /// 0 or 1; [`UNKNOWN`] until Redis has answered.
    redis_aof: AtomicU64,
}

const UNKNOWN: u64 = u64::MAX;

/// The states a breaker transition enters, as labelled.
const BREAKER_STATES: [&str; 2] = ["open", "closed"];

impl Default for Metrics {
    fn default() -> Self {
        Self {
            decisions: counters(),
            decision_duration: Histogram::new(),
            slots_served: counters(),
            decision_conflicts: AtomicU64::new(0),
            decision_views: counters(),
            events: counters(),
            ledger_appends: AtomicU64::new(0),
            redis_duration: std::array::from_fn(|_| Histogram::new()),
            redis_errors: counters(),
            catalog_reloads: AtomicU64::new(0),
            http_responses: counters(),
            conversions: counters(),
            messages: counters(),
            message_charges: AtomicU64::new(0),
            message_statuses: counters(),
            rate_limited: counters(),
            panics: AtomicU64::new(0),
            spool_events: AtomicU64::new(0),
            spool_replayed: AtomicU64::new(0),
            breaker_open: AtomicU64::new(0),
            breaker_transitions: counters(),
            redis_aof: AtomicU64::new(UNKNOWN),
        }
    }
}

fn index_of<T: PartialEq>(all: &[T], value: &T) -> usize {
    all.iter().position(|v| v == value).unwrap_or(0)
}

impl Metrics {
    pub fn decision(&self, outcome: DecisionOutcome, elapsed: Duration) {
        self.decisions[index_of(&DecisionOutcome::ALL, &outcome)].fetch_add(1, Ordering::Relaxed);
        self.decision_duration.observe(elapsed);
    }

    pub fn slot_served(&self, priority: Priority) {
        self.slots_served[index_of(&PRIORITIES, &priority)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn decision_conflict(&self) {
        self.decision_conflicts.fetch_add(1, Ordering::Relaxed);
    }

    pub fn decision_view(&self, view: DecisionView) {
        self.decision_views[index_of(&DecisionView::ALL, &view)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn event(&self, kind: EventType, status: EventStatus) {
        let index = index_of(&EventType::ALL, &kind) * EventStatus::ALL.len()
            + index_of(&EventStatus::ALL, &status);
        self.events[index].fetch_add(1, Ordering::Relaxed);
    }

    pub fn ledger_appended(&self, records: u64) {
        self.ledger_appends.fetch_add(records, Ordering::Relaxed);
    }

    pub fn redis_latency(&self, op: RedisOp, elapsed: Duration) {
        self.redis_duration[index_of(&RedisOp::ALL, &op)].observe(elapsed);
    }

    pub fn redis_error(&self, op: RedisOp) {
        self.redis_errors[index_of(&RedisOp::ALL, &op)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn catalog_reloaded(&self) {
        self.catalog_reloads.fetch_add(1, Ordering::Relaxed);
    }

    pub fn http_response(&self, status: u16) {
        let class = (status / 100).clamp(1, 5) as usize - 1;
        self.http_responses[class].fetch_add(1, Ordering::Relaxed);
    }

    pub fn conversion(&self, kind: &'static str, status: &'static str) {
        let index = index_of(&CONVERSION_TYPES, &kind) * CONVERSION_STATUSES.len()
            + index_of(&CONVERSION_STATUSES, &status);
        self.conversions[index].fetch_add(1, Ordering::Relaxed);
    }

    pub fn message(&self, category: &'static str, outcome: &'static str) {
        let index = index_of(&MESSAGE_CATEGORIES, &category) * MESSAGE_OUTCOMES.len()
            + index_of(&MESSAGE_OUTCOMES, &outcome);
        self.messages[index].fetch_add(1, Ordering::Relaxed);
    }

    pub fn rate_limited(&self, scope: RateLimitScope) {
        self.rate_limited[index_of(&RateLimitScope::ALL, &scope)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn spool(&self, pending: u64, replayed: u64) {
        self.spool_events.store(pending, Ordering::Relaxed);
        self.spool_replayed.fetch_add(replayed, Ordering::Relaxed);
    }

    /// Whether Redis keeps an append-only file (see the README's durability table).
    pub fn redis_aof(&self, enabled: bool) {
        self.redis_aof.store(u64::from(enabled), Ordering::Relaxed);
    }

    /// The breaker's state now, and the transition that led there if this is one.
    pub fn breaker_state(&self, open: bool, transition: Option<Transition>) {
        self.breaker_open.store(u64::from(open), Ordering::Relaxed);
        let entered = match transition {
            Some(Transition::Opened) => 0,
            Some(Transition::Closed) => 1,
            None => return,
        };
        self.breaker_transitions[entered].fetch_add(1, Ordering::Relaxed);
    }

    pub fn panicked(&self) {
        self.panics.fetch_add(1, Ordering::Relaxed);
    }

    /// A delivery status applied (`billing` of the message after it; anything else is ignored).
    pub fn message_status(&self, status: &'static str, billing: &str) {
        let Some(b) = MESSAGE_BILLINGS.iter().position(|x| *x == billing) else {
            return;
        };
        let index = index_of(&MESSAGE_STATUSES, &status) * MESSAGE_BILLINGS.len() + b;
        self.message_statuses[index].fetch_add(1, Ordering::Relaxed);
    }

    pub fn message_charged(&self) {
        self.message_charges.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition of every metric in the catalogue.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8192);
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        for (name, kind, help) in CATALOGUE {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            match *name {
                "statusads_decisions_total" => {
                    for (o, c) in DecisionOutcome::ALL.iter().zip(&self.decisions) {
                        let _ = writeln!(out, "{name}{{outcome=\"{}\"}} {}", o.as_str(), load(c));
                    }
                }
                "statusads_decision_duration_seconds" => {
                    self.decision_duration.render(&mut out, name, "")
                }
                "statusads_slots_served_total" => {
                    for (p, c) in PRIORITIES.iter().zip(&self.slots_served) {
                        let _ = writeln!(out, "{name}{{priority=\"{}\"}} {}", p.as_str(), load(c));
                    }
                }
                "statusads_decision_views_total" => {
                    for (v, c) in DecisionView::ALL.iter().zip(&self.decision_views) {
                        let _ = writeln!(out, "{name}{{view=\"{}\"}} {}", v.as_str(), load(c));
                    }
                }
                "statusads_decision_conflicts_total" => {
                    let _ = writeln!(out, "{name} {}", load(&self.decision_conflicts));
                }
                "statusads_events_total" => {
                    for (i, kind) in EventType::ALL.iter().enumerate() {
                        for (j, status) in EventStatus::ALL.iter().enumerate() {
                            let value = load(&self.events[i * EventStatus::ALL.len() + j]);
                            let _ = writeln!(
                                out,
                                "{name}{{type=\"{}\",status=\"{}\"}} {value}",
                                kind.as_str(),
                                status.as_str()
                            );
                        }
                    }
                }
                "statusads_ledger_appends_total" => {
                    let _ = writeln!(out, "{name} {}", load(&self.ledger_appends));
                }
                "statusads_redis_duration_seconds" => {
                    for (op, h) in RedisOp::ALL.iter().zip(&self.redis_duration) {
                        h.render(&mut out, name, &format!("op=\"{}\"", op.as_str()));
                    }
                }
                "statusads_redis_errors_total" => {
                    for (op, c) in RedisOp::ALL.iter().zip(&self.redis_errors) {
                        let _ = writeln!(out, "{name}{{op=\"{}\"}} {}", op.as_str(), load(c));
                    }
                }
                "statusads_catalog_reloads_total" => {
                    let _ = writeln!(out, "{name} {}", load(&self.catalog_reloads));
                }
                "statusads_http_responses_total" => {
                    for (class, c) in HTTP_CLASSES.iter().zip(&self.http_responses) {
                        let _ = writeln!(out, "{name}{{class=\"{class}\"}} {}", load(c));
                    }
                }
                "statusads_conversions_total" => render_grid(
                    &mut out,
                    name,
                    ("type", &CONVERSION_TYPES),
                    ("status", &CONVERSION_STATUSES),
                    &self.conversions,
                ),
                "statusads_messages_total" => render_grid(
                    &mut out,
                    name,
                    ("category", &MESSAGE_CATEGORIES),
                    ("outcome", &MESSAGE_OUTCOMES),
                    &self.messages,
                ),
                "statusads_rate_limited_total" => {
                    for (scope, c) in RateLimitScope::ALL.iter().zip(&self.rate_limited) {
                        let _ = writeln!(out, "{name}{{scope=\"{}\"}} {}", scope.as_str(), load(c));
                    }
                }
                "statusads_spool_events" => {
                    let _ = writeln!(out, "{name} {}", load(&self.spool_events));
                }
                "statusads_spool_replayed_total" => {
                    let _ = writeln!(out, "{name} {}", load(&self.spool_replayed));
                }
                "statusads_redis_aof_enabled" => match load(&self.redis_aof) {
                    UNKNOWN => {}
                    known => {
                        let _ = writeln!(out, "{name} {known}");
                    }
                },
                "statusads_store_breaker_open" => {
                    let _ = writeln!(out, "{name} {}", load(&self.breaker_open));
                }
                "statusads_store_breaker_transitions_total" => {
                    for (to, c) in BREAKER_STATES.iter().zip(&self.breaker_transitions) {
                        let _ = writeln!(out, "{name}{{to=\"{to}\"}} {}", load(c));
                    }
                }
                "statusads_panics_total" => {
                    let _ = writeln!(out, "{name} {}", load(&self.panics));
                }
                "statusads_message_statuses_total" => render_grid(
                    &mut out,
                    name,
                    ("status", &MESSAGE_STATUSES),
                    ("billing", &MESSAGE_BILLINGS),
                    &self.message_statuses,
                ),
                "statusads_message_charges_total" => {
                    let _ = writeln!(out, "{name} {}", load(&self.message_charges));
                }
                other => unreachable!("metric {other} is in the catalogue but never rendered"),
            }
        }
        out
    }
}

/// A counter with two closed label sets, stored row-major.
fn render_grid(
    out: &mut String,
    name: &str,
    rows: (&str, &[&str]),
    columns: (&str, &[&str]),
    values: &[AtomicU64],
) {
    for (i, row) in rows.1.iter().enumerate() {
        for (j, column) in columns.1.iter().enumerate() {
            let value = values[i * columns.1.len() + j].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}{{{}=\"{row}\",{}=\"{column}\"}} {value}",
                rows.0, columns.0
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_catalogued_metric_renders_with_sane_names() {
        let m = Metrics::default();
        m.event(EventType::Render, EventStatus::Accepted);
        m.event(EventType::Render, EventStatus::Accepted);
        m.decision(DecisionOutcome::Filled, Duration::from_micros(700));
        m.redis_latency(RedisOp::Events, Duration::from_millis(2));
        m.redis_error(RedisOp::Messaging);
        m.decision_view(DecisionView::AssumedNew);
        let text = m.render();
        for (name, kind, _) in CATALOGUE {
            assert!(name.starts_with("statusads_"));
            assert_eq!(*kind == "counter", name.ends_with("_total"), "{name}");
            assert!(text.contains(&format!("# TYPE {name} {kind}")), "{name}");
        }
        assert!(text.contains("statusads_events_total{type=\"render\",status=\"accepted\"} 2"));
        assert!(text.contains("statusads_decision_duration_seconds_bucket{le=\"0.001\"} 1"));
        assert!(text.contains("statusads_decision_duration_seconds_bucket{le=\"0.0005\"} 0"));
        assert!(text.contains("statusads_redis_duration_seconds_count{op=\"events\"} 1"));
        // Every operation has its own series (none is folded into another's).
        assert!(text.contains("statusads_redis_errors_total{op=\"messaging\"} 1"));
        assert!(text.contains("statusads_redis_errors_total{op=\"ping\"} 0"));
        assert!(text.contains("statusads_redis_duration_seconds_count{op=\"ledger\"} 0"));
        assert!(text.contains("statusads_decision_views_total{view=\"assumed_new\"} 1"));
        assert!(text.contains("statusads_decision_views_total{view=\"recent\"} 0"));
    }
}
