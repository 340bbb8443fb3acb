//! The one metrics catalogue, recorded through the `metrics` crate and rendered by
//! `metrics-exporter-prometheus`.
//!
//! Every metric is declared once, in the [`catalogue!`] invocation below: its field, its handle
//! type (which fixes the Prometheus type and the label sets), its name, unit and help. That one
//! entry generates the [`CATALOGUE`] row (described to the recorder with `describe_*!`, checked
//! against the dashboard and alert rules by tests), the cached handles and their registration.
//! Adding a metric is that entry plus the [`Metrics`] method that records it.
//!
//! Labels only take values from closed enums ([`LabelValue`]): never a user, campaign or
//! advertiser id, so cardinality stays fixed. Every series of every label combination is
//! registered up front (a scrape shows zeros rather than missing series, as dashboards expect)
//! and its handle is kept in an array indexed by the enum, so an unknown label value cannot be
//! expressed and recording on the hot path is an index plus the crate's atomic update: no string
//! formatting, no map lookup.
//!
//! Why no global recorder: tests run several [`Application`](crate::startup::Application)s in
//! one process and each must see its own values. So each [`Metrics`] owns a local
//! [`PrometheusRecorder`]; handles are registered through it once (inside
//! `metrics::with_local_recorder`, so the ordinary `counter!`/`describe_counter!` macros apply)
//! and afterwards talk to that recorder's storage directly. `/metrics` is served by actix and
//! renders this recorder's [`PrometheusHandle`]; the exporter's HTTP listener is not compiled
//! in. Histogram samples queue in the recorder until a render or [`Metrics::run_upkeep`] folds
//! them into buckets; the refresher calls the latter so an unscraped node does not grow.

use std::marker::PhantomData;
use std::sync::OnceLock;
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Label, Unit};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use crate::domain::campaign::Priority;
use crate::domain::event::{EventStatus, EventType};
use crate::ledger::conversions::{ConversionStatus, ConversionType};
use crate::messaging::{Category, Reason};
use crate::store::breaker::Transition;

/// Seconds, for every histogram; fine at the low end because decisions are expected well under
/// 5 ms.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// The Prometheus type of a catalogued metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        }
    }
}

/// One row of the catalogue.
#[derive(Debug, Clone, Copy)]
pub struct Definition {
    pub name: &'static str,
    pub kind: Kind,
    pub unit: Unit,
    pub help: &'static str,
}

/// A closed set of label values: the key, every value, and a dense index into handle arrays.
pub trait LabelValue: Copy + 'static {
    const KEY: &'static str;
    const ALL: &'static [Self];
    fn label(self) -> &'static str;
    /// The position of `self` in [`ALL`](Self::ALL).
    fn index(self) -> usize;
}

/// Declares a label enum owned here, with its values.
macro_rules! label_enum {
    ($(#[$meta:meta])* pub enum $name:ident: $key:literal {
        $($(#[$vmeta:meta])* $variant:ident => $value:literal),+ $(,)?
    }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $value),+ }
            }
        }

        impl LabelValue for $name {
            const KEY: &'static str = $key;
            const ALL: &'static [Self] = &[$(Self::$variant),+];
            fn label(self) -> &'static str { self.as_str() }
            fn index(self) -> usize { self as usize }
        }
    };
}

/// Uses an enum of another module as a label, with its own `as_str`. The exhaustive match makes a
/// new variant a compile error here; `labels_are_dense` checks the order.
macro_rules! label_of {
    ($ty:ty: $key:literal { $($variant:ident),+ $(,)? }) => {
        impl LabelValue for $ty {
            const KEY: &'static str = $key;
            const ALL: &'static [Self] = &[$(<$ty>::$variant),+];
            fn label(self) -> &'static str { self.as_str() }
            fn index(self) -> usize {
                match self { $(<$ty>::$variant)|+ => self as usize }
            }
        }
    };
}

label_enum! {
    pub enum DecisionOutcome: "outcome" {
        Filled => "filled",
        Empty => "empty",
        Unavailable => "unavailable",
    }
}

label_enum! {
    /// The user state a decision was first computed on (see `capping::recent`).
    pub enum DecisionView: "view" {
        /// This node's recent view of the user.
        Recent => "recent",
        /// A user not seen here within the view age, assumed new.
        AssumedNew => "assumed_new",
    }
}

label_enum! {
    /// Kinds of Redis interaction, each one round trip.
    pub enum RedisOp: "op" {
        Ping => "ping",
        Catalog => "catalog",
        Reserve => "reserve",
        Events => "events",
        Spend => "spend",
        Report => "report",
        Ledger => "ledger",
        Messaging => "messaging",
        /// Reading and trimming the ledger outbox for export.
        Outbox => "outbox",
        /// A user's access or erasure request.
        Privacy => "privacy",
        /// Keeping Redis's own files: the append-only file rewrite.
        Files => "files",
    }
}

label_enum! {
    pub enum RateLimitScope: "scope" {
        Client => "client",
        User => "user",
        Advertiser => "advertiser",
        /// Concurrent uploads of one advertiser.
        Uploads => "uploads",
    }
}

label_enum! {
    /// An HTTP status code's class (see [`HttpClass::of`]).
    pub enum HttpClass: "class" {
        Informational => "1xx",
        Success => "2xx",
        Redirection => "3xx",
        ClientError => "4xx",
        ServerError => "5xx",
    }
}

impl HttpClass {
    /// Codes outside 100-599 are filed under the nearest class, as before.
    pub fn of(status: u16) -> Self {
        Self::ALL[(status / 100).clamp(1, 5) as usize - 1]
    }
}

label_enum! {
    /// A business message's template category; `None` for free-form and inbound messages.
    pub enum MessageCategory: "category" {
        None => "none",
        Utility => "utility",
        Marketing => "marketing",
        Authentication => "authentication",
    }
}

impl From<Option<Category>> for MessageCategory {
    fn from(category: Option<Category>) -> Self {
        match category {
            None => Self::None,
            Some(Category::Utility) => Self::Utility,
            Some(Category::Marketing) => Self::Marketing,
            Some(Category::Authentication) => Self::Authentication,
        }
    }
}

label_enum! {
    /// What became of a business message: its rating reason, or why it was not rated.
    pub enum MessageFate: "outcome" {
        Inbound => "inbound",
        ServiceWindow => "service_window",
        FreeEntryPoint => "free_entry_point",
        Rated => "rated",
        Refused => "refused",
        Duplicate => "duplicate",
    }
}

impl From<Reason> for MessageFate {
    fn from(reason: Reason) -> Self {
        match reason {
            Reason::Inbound => Self::Inbound,
            Reason::ServiceWindow => Self::ServiceWindow,
            Reason::FreeEntryPoint => Self::FreeEntryPoint,
            Reason::Rated => Self::Rated,
        }
    }
}

label_enum! {
    /// A delivery status applied to a sent message: it settled the charge, or came again.
    pub enum SettleStatus: "status" {
        Accepted => "accepted",
        Duplicate => "duplicate",
    }
}

label_enum! {
    /// A sent message's billing after a delivery status.
    pub enum Billing: "billing" {
        Final => "final",
        Void => "void",
    }
}

impl Billing {
    /// The store's billing field; `None` for anything else (not yet settled).
    pub fn parse(stored: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|b| b.as_str() == stored)
    }
}

label_of!(Priority: "priority" { Sponsorship, Auction, House });
label_of!(EventType: "type" { Render, View, Click, Hide, Report });
label_of!(EventStatus: "status" { Accepted, Duplicate, Expired, Invalid, Rejected });
label_of!(ConversionType: "type" { ConversationStarted, Message });
label_of!(ConversionStatus: "status" { Accepted, Duplicate, UnknownClick });

/// The state a breaker transition enters, labelled `to`.
impl LabelValue for Transition {
    const KEY: &'static str = "to";
    const ALL: &'static [Self] = &[Transition::Opened, Transition::Closed];
    fn label(self) -> &'static str {
        match self {
            Transition::Opened => "open",
            Transition::Closed => "closed",
        }
    }
    fn index(self) -> usize {
        match self {
            Transition::Opened | Transition::Closed => self as usize,
        }
    }
}

/// A metric's cached handles: registered once against the recorder in scope.
trait Series: Sized {
    const KIND: Kind;
    fn register(name: &'static str, labels: Vec<Label>) -> Self;
}

impl Series for Counter {
    const KIND: Kind = Kind::Counter;
    fn register(name: &'static str, labels: Vec<Label>) -> Self {
        metrics::counter!(name, labels)
    }
}

impl Series for Gauge {
    const KIND: Kind = Kind::Gauge;
    fn register(name: &'static str, labels: Vec<Label>) -> Self {
        metrics::gauge!(name, labels)
    }
}

impl Series for Histogram {
    const KIND: Kind = Kind::Histogram;
    fn register(name: &'static str, labels: Vec<Label>) -> Self {
        metrics::histogram!(name, labels)
    }
}

/// One series per value of `L`.
struct Family<L, H> {
    series: Box<[H]>,
    label: PhantomData<L>,
}

impl<L: LabelValue, H: Series> Series for Family<L, H> {
    const KIND: Kind = H::KIND;
    fn register(name: &'static str, labels: Vec<Label>) -> Self {
        let series = L::ALL
            .iter()
            .map(|l| {
                let mut labels = labels.clone();
                labels.push(Label::from_static_parts(L::KEY, l.label()));
                H::register(name, labels)
            })
            .collect();
        Self {
            series,
            label: PhantomData,
        }
    }
}

impl<L: LabelValue, H> Family<L, H> {
    fn get(&self, label: L) -> &H {
        &self.series[label.index()]
    }
}

/// One series per pair of values (`A` outer, `B` inner), label `A` first.
type Grid<A, B, H> = Family<A, Family<B, H>>;

/// A series that only appears once first set (a gauge that is absent until known).
struct Deferred<H> {
    name: &'static str,
    handle: OnceLock<H>,
}

impl<H: Series> Series for Deferred<H> {
    const KIND: Kind = H::KIND;
    fn register(name: &'static str, _: Vec<Label>) -> Self {
        Self {
            name,
            handle: OnceLock::new(),
        }
    }
}

impl<H: Series> Deferred<H> {
    fn get(&self, recorder: &PrometheusRecorder) -> &H {
        self.handle.get_or_init(|| {
            metrics::with_local_recorder(recorder, || H::register(self.name, Vec::new()))
        })
    }
}

/// Declares every metric once: `field: HandleType = (name, unit, help)`.
macro_rules! catalogue {
    ($($field:ident: $ty:ty = ($name:literal, $unit:ident, $help:literal),)+) => {
        /// Every metric the service exports, in declaration order.
        pub const CATALOGUE: &[Definition] = &[$(Definition {
            name: $name,
            kind: <$ty as Series>::KIND,
            unit: Unit::$unit,
            help: $help,
        }),+];

        struct Handles { $($field: $ty,)+ }

        impl Handles {
            /// Registers every series; runs inside `with_local_recorder`.
            fn register() -> Self {
                Self { $($field: <$ty as Series>::register($name, Vec::new()),)+ }
            }
        }
    };
}

catalogue! {
    decisions: Family<DecisionOutcome, Counter> = ("statusads_decisions_total", Count,
        "Slot decisions by outcome (filled: at least one slot; empty; unavailable: store outage)."),
    decision_duration: Histogram = ("statusads_decision_duration_seconds", Seconds,
        "Time to answer POST /v1/slots, store calls included."),
    slots_served: Family<Priority, Counter> = ("statusads_slots_served_total", Count,
        "Slots served, by campaign priority tier."),
    decision_conflicts: Counter = ("statusads_decision_conflicts_total", Count,
        "Decisions recomputed on the live user state their commit returned (the node's copy of the user was stale or assumed)."),
    decision_views: Family<DecisionView, Counter> = ("statusads_decision_views_total", Count,
        "Decisions by the user state first decided on: this node's recent view of the user, or a user assumed new (not seen here within 30 s)."),
    events: Grid<EventType, EventStatus, Counter> = ("statusads_events_total", Count,
        "Client events by type and resulting status."),
    ledger_appends: Counter = ("statusads_ledger_appends_total", Count,
        "Records appended to the ledger."),
    redis_duration: Family<RedisOp, Histogram> = ("statusads_redis_duration_seconds", Seconds,
        "Latency of Redis interactions (one script or pipeline each), by operation."),
    redis_errors: Family<RedisOp, Counter> = ("statusads_redis_errors_total", Count,
        "Redis interactions that failed or timed out, by operation."),
    catalog_reloads: Counter = ("statusads_catalog_reloads_total", Count,
        "Catalog snapshots rebuilt after a change."),
    http_responses: Family<HttpClass, Counter> = ("statusads_http_responses_total", Count,
        "HTTP responses by status class."),
    conversions: Grid<ConversionType, ConversionStatus, Counter> = ("statusads_conversions_total", Count,
        "Click-to-chat conversions by type and status."),
    messages: Grid<MessageCategory, MessageFate, Counter> = ("statusads_messages_total", Count,
        "Business messages by template category (none for free-form and inbound) and outcome (rating reason, refused or duplicate)."),
    message_charges: Counter = ("statusads_message_charges_total", Count,
        "Business messages that were charged."),
    message_statuses: Grid<SettleStatus, Billing, Counter> = ("statusads_message_statuses_total", Count,
        "Delivery statuses of messages recorded as sent, by status (accepted: it settled the charge; duplicate) and billing (final, void)."),
    rate_limited: Family<RateLimitScope, Counter> = ("statusads_rate_limited_total", Count,
        "Requests refused with 429, by limit scope (client token, user, advertiser, uploads in flight per advertiser)."),
    panics: Counter = ("statusads_panics_total", Count,
        "Request handlers that panicked (answered 500; the worker survives)."),
    spool_events: Gauge = ("statusads_spool_events", Count,
        "Events acknowledged during a Redis outage and waiting in the local spool."),
    spool_replayed: Counter = ("statusads_spool_replayed_total", Count,
        "Spooled events replayed into Redis after an outage."),
    spool_over_cap: Counter = ("statusads_spool_over_cap_total", Count,
        "Renders acknowledged during a Redis outage that the replay found over a frequency cap (the cap holds: they are not billed)."),
    outage_spools: Gauge = ("statusads_outage_spools", Count,
        "Nodes whose outage spool holds events Redis has not seen, as the system of record lists them (any node's; as_of waits for the oldest, so a node gone for good with a spool holds reports until an operator forgets it)."),
    breaker_open: Gauge = ("statusads_store_breaker_open", Count,
        "1 while the store's circuit breaker is open (Redis failed store.breaker_failures times in a row; calls fail at once until a probe answers), else 0."),
    breaker_transitions: Family<Transition, Counter> = ("statusads_store_breaker_transitions_total", Count,
        "Store circuit breaker state changes, by the state entered (open, closed)."),
    exported: Counter = ("statusads_exported_records_total", Count,
        "Ledger records this node wrote to the system of record (each record is written once across all nodes)."),
    export_failures: Counter = ("statusads_export_failures_total", Count,
        "Export rounds that failed (hot store or system of record unreachable); the outbox keeps the records."),
    export_lag: Gauge = ("statusads_ledger_lag_seconds", Seconds,
        "Seconds since as_of: every event acknowledged before it is in the system of record. Grows while export is stuck."),
    spend_age: Gauge = ("statusads_spend_age_seconds", Seconds,
        "Seconds since budgets last read every node's spend from the store (every second normally; grows while Redis does not answer, and budgets then count only this node's own renders since)."),
    outbox_records: Gauge = ("statusads_outbox_records", Count,
        "Ledger records waiting for export in the last round's read (at most one batch per shard)."),
    nodes_pricing_apart: Deferred<Gauge> = ("statusads_nodes_pricing_apart", Count,
        "Other nodes seen within the last three minutes whose money settings (money.currency, money.rates) differ from this node's: the same decision is priced differently on each. Checked every minute; absent until the first check, always 0 on the embedded backend. A rollout of new rates shows here until every node runs them, and three minutes more."),
    clock_offset: Deferred<Gauge> = ("statusads_clock_offset_seconds", Seconds,
        "This node's clock minus Redis's (positive: ahead), measured every minute to within half a round trip of at most 250 ms; NaN when the last comparison failed. Nodes compare each other's times through Redis (heartbeats and budget shares, erasure confirmations, the settings comparison, caps windows of renders served on one node and rendered on another): nodes further apart than a second or two mis-share budgets and may count a live node as gone. On the embedded backend: the node's clock minus its in-process Redis's, which never goes back (negative while a journal written ahead of the clock holds it)."),
    redis_aof: Deferred<Gauge> = ("statusads_redis_aof_enabled", Count,
        "1 when Redis reports append-only persistence on, 0 when off (an acknowledged event would not survive a Redis crash); absent until Redis has answered."),
    redis_evicting: Deferred<Gauge> = ("statusads_redis_evicting", Count,
        "1 when Redis's maxmemory-policy may evict keys (anything but noeviction: an evicted dedupe or outbox key loses acknowledged events or counts one twice), 0 when not; absent until Redis has answered."),
}

/// One application's metrics: its own recorder, and the handles registered on it.
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    handles: Handles,
}

impl Default for Metrics {
    fn default() -> Self {
        let builder = CATALOGUE.iter().filter(|m| m.kind == Kind::Histogram).fold(
            PrometheusBuilder::new(),
            |builder, m| {
                builder
                    .set_buckets_for_metric(Matcher::Full(m.name.to_owned()), &BUCKETS)
                    .expect("BUCKETS is not empty")
            },
        );
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        let handles = metrics::with_local_recorder(&recorder, || {
            for m in CATALOGUE {
                match m.kind {
                    Kind::Counter => metrics::describe_counter!(m.name, m.unit, m.help),
                    Kind::Gauge => metrics::describe_gauge!(m.name, m.unit, m.help),
                    Kind::Histogram => metrics::describe_histogram!(m.name, m.unit, m.help),
                }
            }
            Handles::register()
        });
        Self {
            recorder,
            handle,
            handles,
        }
    }
}

impl Metrics {
    pub fn decision(&self, outcome: DecisionOutcome, elapsed: Duration) {
        self.handles.decisions.get(outcome).increment(1);
        self.handles.decision_duration.record(elapsed);
    }

    pub fn slot_served(&self, priority: Priority) {
        self.handles.slots_served.get(priority).increment(1);
    }

    pub fn decision_conflict(&self) {
        self.handles.decision_conflicts.increment(1);
    }

    pub fn decision_view(&self, view: DecisionView) {
        self.handles.decision_views.get(view).increment(1);
    }

    pub fn event(&self, kind: EventType, status: EventStatus) {
        self.handles.events.get(kind).get(status).increment(1);
    }

    pub fn exported(&self, records: u64) {
        self.handles.exported.increment(records);
    }

    pub fn export_failed(&self) {
        self.handles.export_failures.increment(1);
    }

    /// After each export round: how old `as_of` is, and what the round found waiting.
    pub fn export_state(&self, lag: Duration, waiting: u64) {
        self.handles.export_lag.set(lag.as_secs_f64());
        self.handles.outbox_records.set(waiting as f64);
    }

    /// After each export round that could read them: the nodes with a registered spool.
    pub fn outage_spools(&self, nodes: u64) {
        self.handles.outage_spools.set(nodes as f64);
    }

    pub fn spend_age(&self, age: Duration) {
        self.handles.spend_age.set(age.as_secs_f64());
    }

    pub fn ledger_appended(&self, records: u64) {
        self.handles.ledger_appends.increment(records);
    }

    pub fn redis_latency(&self, op: RedisOp, elapsed: Duration) {
        self.handles.redis_duration.get(op).record(elapsed);
    }

    pub fn redis_error(&self, op: RedisOp) {
        self.handles.redis_errors.get(op).increment(1);
    }

    pub fn catalog_reloaded(&self) {
        self.handles.catalog_reloads.increment(1);
    }

    pub fn http_response(&self, status: u16) {
        self.handles
            .http_responses
            .get(HttpClass::of(status))
            .increment(1);
    }

    pub fn conversion(&self, kind: ConversionType, status: ConversionStatus) {
        self.handles.conversions.get(kind).get(status).increment(1);
    }

    pub fn message(&self, category: MessageCategory, outcome: MessageFate) {
        self.handles
            .messages
            .get(category)
            .get(outcome)
            .increment(1);
    }

    pub fn rate_limited(&self, scope: RateLimitScope) {
        self.handles.rate_limited.get(scope).increment(1);
    }

    pub fn spool(&self, pending: u64, replayed: u64, over_cap: u64) {
        self.handles.spool_events.set(pending as f64);
        self.handles.spool_replayed.increment(replayed);
        self.handles.spool_over_cap.increment(over_cap);
    }

    /// How Redis keeps what it acknowledged (see the README's durability table).
    pub fn redis_keeping(&self, keeping: &crate::store::Keeping) {
        let aof = self.handles.redis_aof.get(&self.recorder);
        aof.set(f64::from(u8::from(keeping.aof)));
        let evicting = self.handles.redis_evicting.get(&self.recorder);
        evicting.set(f64::from(u8::from(keeping.evicting.is_some())));
    }

    /// `None`: the last comparison failed (NaN, which no alert threshold matches).
    pub fn clock_offset(&self, offset_ms: Option<i64>) {
        let gauge = self.handles.clock_offset.get(&self.recorder);
        gauge.set(offset_ms.map_or(f64::NAN, |ms| ms as f64 / 1000.0));
    }

    pub fn nodes_pricing_apart(&self, nodes: u32) {
        let gauge = self.handles.nodes_pricing_apart.get(&self.recorder);
        gauge.set(f64::from(nodes));
    }

    /// The breaker's state now, and the transition that led there if this is one.
    pub fn breaker_state(&self, open: bool, transition: Option<Transition>) {
        self.handles.breaker_open.set(f64::from(u8::from(open)));
        if let Some(entered) = transition {
            self.handles.breaker_transitions.get(entered).increment(1);
        }
    }

    pub fn panicked(&self) {
        self.handles.panics.increment(1);
    }

    /// A delivery status applied (`billing` of the message after it as stored; a message not
    /// yet final or void is not counted).
    pub fn message_status(&self, status: SettleStatus, billing: &str) {
        if let Some(billing) = Billing::parse(billing) {
            self.handles
                .message_statuses
                .get(status)
                .get(billing)
                .increment(1);
        }
    }

    pub fn message_charged(&self) {
        self.handles.message_charges.increment(1);
    }

    /// Folds queued histogram samples into their buckets (a render does it too); called
    /// periodically so memory stays bounded between scrapes.
    pub fn run_upkeep(&self) {
        self.handle.run_upkeep();
    }

    /// The Prometheus text exposition of every metric in the catalogue.
    pub fn render(&self) -> String {
        self.handle.render()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dense<L: LabelValue + std::fmt::Debug>() {
        for (i, label) in L::ALL.iter().enumerate() {
            assert_eq!(label.index(), i, "{label:?}");
        }
    }

    #[test]
    fn labels_are_dense() {
        dense::<DecisionOutcome>();
        dense::<DecisionView>();
        dense::<RedisOp>();
        dense::<RateLimitScope>();
        dense::<HttpClass>();
        dense::<MessageCategory>();
        dense::<MessageFate>();
        dense::<SettleStatus>();
        dense::<Billing>();
        dense::<Priority>();
        dense::<EventType>();
        dense::<EventStatus>();
        dense::<ConversionType>();
        dense::<ConversionStatus>();
        dense::<Transition>();
    }

    #[test]
    fn every_catalogued_metric_renders_with_sane_names() {
        let m = Metrics::default();
        m.event(EventType::Render, EventStatus::Accepted);
        m.event(EventType::Render, EventStatus::Accepted);
        m.decision(DecisionOutcome::Filled, Duration::from_micros(700));
        m.redis_latency(RedisOp::Events, Duration::from_millis(2));
        m.redis_error(RedisOp::Messaging);
        m.decision_view(DecisionView::AssumedNew);
        m.message(MessageCategory::None, MessageFate::Refused);
        m.message_status(SettleStatus::Duplicate, "void");
        m.message_status(SettleStatus::Accepted, "");
        m.http_response(204);
        m.redis_keeping(&crate::store::Keeping {
            aof: true,
            evicting: None,
        });
        m.nodes_pricing_apart(0);
        m.clock_offset(Some(0));
        let text = m.render();
        for def in CATALOGUE {
            let (name, kind) = (def.name, def.kind.as_str());
            assert!(name.starts_with("statusads_"));
            assert_eq!(
                def.kind == Kind::Counter,
                name.ends_with("_total"),
                "{name}"
            );
            assert!(text.contains(&format!("# TYPE {name} {kind}\n")), "{name}");
            assert!(
                text.contains(&format!("# HELP {name} {}\n", def.help)),
                "{name}"
            );
        }
        // Nothing is exported that the catalogue does not declare.
        let typed = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
        assert_eq!(typed, CATALOGUE.len(), "{text}");
        assert!(text.contains("statusads_events_total{type=\"render\",status=\"accepted\"} 2\n"));
        assert!(text.contains("statusads_events_total{type=\"report\",status=\"rejected\"} 0\n"));
        assert!(text.contains("statusads_decision_duration_seconds_bucket{le=\"0.001\"} 1\n"));
        assert!(text.contains("statusads_decision_duration_seconds_bucket{le=\"0.0005\"} 0\n"));
        assert!(text.contains("statusads_decision_duration_seconds_bucket{le=\"+Inf\"} 1\n"));
        assert!(text.contains("statusads_decision_duration_seconds_count 1\n"));
        assert!(text.contains("statusads_redis_duration_seconds_count{op=\"events\"} 1\n"));
        // Every operation has its own series (none is folded into another's).
        assert!(text.contains("statusads_redis_errors_total{op=\"messaging\"} 1\n"));
        assert!(text.contains("statusads_redis_errors_total{op=\"ping\"} 0\n"));
        assert!(text.contains("statusads_redis_duration_seconds_count{op=\"ledger\"} 0\n"));
        assert!(text.contains("statusads_decision_views_total{view=\"assumed_new\"} 1\n"));
        assert!(text.contains("statusads_decision_views_total{view=\"recent\"} 0\n"));
        assert!(
            text.contains("statusads_messages_total{category=\"none\",outcome=\"refused\"} 1\n")
        );
        assert!(text.contains(
            "statusads_message_statuses_total{status=\"duplicate\",billing=\"void\"} 1\n"
        ));
        assert!(text.contains(
            "statusads_message_statuses_total{status=\"accepted\",billing=\"final\"} 0\n"
        ));
        assert!(text.contains("statusads_http_responses_total{class=\"2xx\"} 1\n"));
        assert!(text.contains("statusads_redis_aof_enabled 1\n"));
        assert!(text.contains("statusads_redis_evicting 0\n"));
    }

    #[test]
    fn two_instances_keep_their_own_values() {
        let (a, b) = (Metrics::default(), Metrics::default());
        a.panicked();
        assert!(a.render().contains("statusads_panics_total 1\n"));
        assert!(b.render().contains("statusads_panics_total 0\n"));
        // Absent until Redis has answered.
        assert!(!b.render().contains("statusads_redis_aof_enabled"));
    }
}
