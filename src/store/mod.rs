//! The backends behind user state and the ledger's outbox. One code path, [`RedisStore`] and
//! its Lua scripts, serves both (one contract test suite runs against each):
//!
//! - [`redis`](RedisStore): production, many stateless nodes over one Redis.
//! - embedded: one node, the same store on the in-process Redis, its writes journaled under
//!   `data_dir` (see `embedded`).
//! - [`breaker`]: the circuit breaker in front of Redis, so an outage costs requests nothing.
//! - [`codec`]: how both backends encode per-user state; nothing above the store sees it.
//!
//! Dispatch is a plain enum rather than a trait object: two variants, no boxing of futures; they
//! differ only where one node has nothing to share (heartbeats, erasure announcements) and in
//! their files.

pub mod breaker;
pub mod codec;
pub mod durability;
pub mod embedded;
pub mod lines;
pub mod redis;

use std::collections::HashMap;

use crate::capping::{DecisionProof, Retention, UserState};
use crate::clock::Millis;
use crate::domain::advertiser::Advertiser;
use crate::domain::audience::Audience;
use crate::domain::campaign::{Campaign, FrequencyCap, Spend};
use crate::domain::creative::Creative;
use crate::domain::event::EventType;
use crate::domain::ids::CampaignId;
use crate::domain::Micros;
use crate::ledger::reconcile::LedgerRecord;

pub use self::codec::SessionValue;
pub use self::embedded::EmbeddedStore;
pub use self::redis::in_process::URL as IN_PROCESS_REDIS_URL;
pub use self::redis::RedisStore;

/// What made a store call fail underneath: a Redis, I/O, SQL or JSON error, kept whole for the
/// log (never for the client) and shared, so one failure can answer every part of a request.
pub type Cause = std::sync::Arc<dyn std::error::Error + Send + Sync + 'static>;

/// Every failure of a store: `what` says what was being done, in the store's words; `cause` is
/// the error beneath it, when there is one. [`StoreError::report`] prints the whole chain.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The backend did not answer in time or the connection failed (an outage), or it
    /// answered that it takes no writes for now (`answered`: Redis out of memory, which
    /// neither opens the breaker nor drops the connection); retryable either way.
    #[error("store unavailable: {what}")]
    Unavailable {
        what: String,
        #[source]
        cause: Option<Cause>,
        answered: bool,
    },
    /// The backend answered something this code cannot understand: a bug or corruption.
    #[error("store error: {what}")]
    Corrupt {
        what: String,
        #[source]
        cause: Option<Cause>,
    },
}

impl StoreError {
    pub fn unavailable(what: impl Into<String>) -> Self {
        Self::Unavailable {
            what: what.into(),
            cause: None,
            answered: false,
        }
    }

    pub fn unavailable_from(
        what: impl Into<String>,
        cause: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::unavailable_because(what, cause, false)
    }

    /// The backend answered, refusing writes for now (see `Unavailable`).
    pub fn refused_from(
        what: impl Into<String>,
        cause: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::unavailable_because(what, cause, true)
    }

    fn unavailable_because(
        what: impl Into<String>,
        cause: impl std::error::Error + Send + Sync + 'static,
        answered: bool,
    ) -> Self {
        Self::Unavailable {
            what: what.into(),
            cause: Some(std::sync::Arc::new(cause)),
            answered,
        }
    }

    pub fn corrupt(what: impl Into<String>) -> Self {
        Self::Corrupt {
            what: what.into(),
            cause: None,
        }
    }

    pub fn corrupt_from(
        what: impl Into<String>,
        cause: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Corrupt {
            what: what.into(),
            cause: Some(std::sync::Arc::new(cause)),
        }
    }

    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }

    /// The same kind of failure, with `context` said first: "context: what".
    pub fn within(self, context: &str) -> Self {
        match self {
            Self::Unavailable {
                what,
                cause,
                answered,
            } => Self::Unavailable {
                what: format!("{context}: {what}"),
                cause,
                answered,
            },
            Self::Corrupt { what, cause } => Self::Corrupt {
                what: format!("{context}: {what}"),
                cause,
            },
        }
    }

    /// This error and every cause beneath it, "a: b: c", for logs (formatted when printed).
    pub fn report(&self) -> Report<'_> {
        Report(self)
    }
}

/// A [`StoreError`] with its causes, as logs print it.
pub struct Report<'a>(&'a StoreError);

impl std::fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut last = self.0.to_string();
        f.write_str(&last)?;
        let mut next = std::error::Error::source(self.0);
        while let Some(cause) = next {
            let text = cause.to_string();
            // Many errors end their own message with their source's: say it once.
            if !last.ends_with(&text) {
                write!(f, ": {text}")?;
            }
            last = text;
            next = cause.source();
        }
        Ok(())
    }
}

/// Everything the catalog persists, loaded at once.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct CatalogData {
    pub version: u64,
    /// Each record's own version (by id; ids carry their kind's prefix): what an edit of it is
    /// conditional on. Only the system of record keeps them.
    #[serde(skip)]
    pub record_versions: std::collections::HashMap<String, u64>,
    pub advertisers: Vec<Advertiser>,
    pub campaigns: Vec<Campaign>,
    pub creatives: Vec<Creative>,
}

/// One catalog record to persist.
#[derive(Clone, Copy)]
pub enum CatalogRecord<'a> {
    Advertiser(&'a Advertiser),
    Campaign(&'a Campaign),
    Creative(&'a Creative),
}

/// A decision to commit for one user (see `reserve.lua`).
pub struct DecisionCommit<'a> {
    pub shard: u32,
    pub user: &'a str,
    pub session: Option<&'a str>,
    /// The stored session value the decision assumed (`None`: no such session yet); compared
    /// exactly, so concurrent requests of one session cannot both place by the same state.
    pub session_seen: Option<&'a SessionValue>,
    /// What the live user state must still allow.
    pub proof: DecisionProof,
    pub now_ms: Millis,
    pub day: u32,
    pub reservations: Vec<crate::capping::Reservation>,
    /// The session's value after this decision.
    pub session_after: SessionValue,
    pub user_ttl_ms: Millis,
}

/// The live state of one user, as a commit that could not happen returns it.
#[derive(Debug, Clone, Default)]
pub struct UserView {
    pub state: UserState,
    /// The stored value of the requested session, if there is one.
    pub session: Option<SessionValue>,
}

#[derive(Debug)]
pub enum CommitOutcome {
    Committed,
    /// The decision does not hold on the live state, which comes back in the same answer:
    /// decide again on it.
    Stale(Box<UserView>),
}

/// One verified event, with what the store needs to apply it without the catalog.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct EventWrite {
    pub kind: EventType,
    pub decision_id: String,
    /// Empty for a slot served without consent to personalisation: the stores then keep
    /// nothing per user for the event (see `crate::privacy`).
    pub user: String,
    pub campaign: String,
    pub advertiser: String,
    pub price_micros: Micros,
    pub token_ttl_ms: Millis,
    pub user_ttl_ms: Millis,
    /// Spooled in the codec's form (`max:per,…`), as every build has spooled them.
    #[serde(
        serialize_with = "codec::spool_caps",
        deserialize_with = "codec::spooled_caps"
    )]
    pub campaign_caps: Vec<FrequencyCap>,
    /// Empty unless the campaign caps its advertiser's renders too.
    #[serde(
        serialize_with = "codec::spool_caps",
        deserialize_with = "codec::spooled_caps"
    )]
    pub advertiser_caps: Vec<FrequencyCap>,
    pub campaign_keep: Retention,
    pub advertiser_keep: Retention,
    pub daily_max: u32,
    pub client_at: String,
    /// What the ledger record carries for reports (spooled batches of earlier builds lack it).
    #[serde(default)]
    pub audience: Audience,
}

/// Shards whose outboxes one export read takes: at most this many times the exporter's
/// per-shard page (a few MB), however long the backlog.
pub const OUTBOX_GROUP: u32 = 64;

/// How long a click stays attributable to conversions.
pub const CLICK_TTL_MS: Millis = 30 * 86_400_000;
/// How long a day's hot spend lives from the day's first billed write: it is read only that
/// day (daily budgets, reconcile), so it goes about two days after the day has ended.
pub const SPEND_DAY_TTL_MS: Millis = 3 * 86_400_000;
/// How long a business message's rating is kept to answer duplicates of it.
pub const MESSAGE_DEDUPE_MS: Millis = 35 * 86_400_000;

/// A click-to-chat conversion to attribute (see `conversion.lua`).
pub struct ConversionWrite<'a> {
    pub shard: u32,
    pub decision_id: &'a str,
    pub advertiser: &'a str,
    /// `conversation_started` or `message`.
    pub kind: &'a str,
    pub at_ms: Millis,
    /// As the advertiser's conversions API lists it.
    pub click_id: &'a str,
    /// The campaign a conversation suppresses for the clicking user, and until when (when
    /// its campaign suppresses after a conversation).
    pub suppress: Option<(CampaignId, Millis)>,
}

/// Whose a recorded click is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClickOwner {
    pub advertiser: String,
    pub campaign: String,
    /// The clicking user ("" for clicks recorded by earlier builds).
    pub user: String,
}

/// How long the conversions API can list a conversion (reports span at most 366 days).
pub const CONVERSION_LOG_MS: Millis = 400 * 86_400_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConversionOutcome {
    Accepted,
    Duplicate,
    UnknownClick,
}

/// A rated business message to record if the conversation did not move (see `message.lua`).
/// Every key it touches lives in the advertiser's shard (`shard`): the monthly tier counts and
/// the business-initiated limit are per advertiser, so one script sees all of them atomically.
pub struct MessageCommit<'a> {
    pub shard: u32,
    /// When it is written: the message is remembered `MESSAGE_DEDUPE_MS` from here (Redis
    /// counts that on its own clock).
    pub now_ms: Millis,
    pub advertiser: &'a str,
    pub user: &'a str,
    pub message_id: &'a str,
    /// The stored conversation the rating was computed from ("" = none).
    pub expected_state: &'a str,
    /// The conversation after the message ("" = nothing to keep).
    pub new_state: String,
    pub state_ttl_ms: Millis,
    /// What to store for the message (billing, charge and tier are filled in by the store).
    pub stored: StoredMessage,
    /// Charge now (delivered) or leave it pending until its delivery status.
    pub deliver: bool,
    pub direction: &'a str,
    /// `Some(limit)`: a business-initiated template, refused when its user would make more
    /// than `limit` distinct users in 24 h.
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageOutcome {
    /// Recorded; carries what was stored.
    Committed(StoredMessage),
    /// The conversation changed since it was read: rate again.
    Conflict,
    /// Seen before; carries the stored message.
    Duplicate(StoredMessage),
    /// The advertiser's business-initiated limit is reached; nothing was recorded.
    LimitReached,
}

/// A delivery status for a message recorded as sent (see `message_status.lua`).
pub struct SettleWrite<'a> {
    pub shard: u32,
    pub advertiser: &'a str,
    pub message_id: &'a str,
    /// The message's month (its counters and billing live there).
    pub month: u32,
    /// `failed`: the charge is voided instead of made final.
    pub void: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettleOutcome {
    /// This call made the charge final or void.
    Settled(StoredMessage),
    /// Already final or void: the stored message, unchanged.
    Duplicate(StoredMessage),
    Unknown,
}

/// Business-initiated templates reach at most `limit` distinct users per rolling 24 h.
pub const BUSINESS_LIMIT_WINDOW_MS: Millis = 86_400_000;

/// The rating of one business message as stored, answered again to its duplicates and read by
/// its delivery status. One `|`-separated line (the Lua scripts split it by position):
/// `m2|reason|window_expires_ms|rule_set|billing|charge|tier|month|day|line|country|counter|
/// schedule|campaign|at_ms|tiered`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoredMessage {
    pub reason: String,
    pub window_expires_ms: Option<Millis>,
    pub rule_set: String,
    /// `final`, `pending` or `void`.
    pub billing: String,
    /// Final: what was charged; pending: what it would cost if delivered now; void: 0.
    pub charge_micros: Micros,
    pub tier: Option<u32>,
    pub month: u32,
    pub day: u32,
    /// Invoice category of the charge ("" when free whatever the count).
    pub line: String,
    pub country: String,
    /// The monthly count the charge moves ("" when free whatever the count).
    pub counter: String,
    /// Encoded [`crate::messaging::rules::Schedule`].
    pub schedule: String,
    /// The click-to-chat campaign the conversation came from, if its charges count there.
    pub campaign: String,
    pub at_ms: Millis,
    /// Answers name the tier.
    pub tiered: bool,
}

impl StoredMessage {
    pub fn encode(&self) -> String {
        let opt = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
        format!(
            "m2|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}",
            self.reason,
            opt(self.window_expires_ms),
            self.rule_set,
            self.billing,
            self.charge_micros,
            opt(self.tier.map(i64::from)),
            self.month,
            self.day,
            self.line,
            self.country,
            self.counter,
            self.schedule,
            self.campaign,
            self.at_ms,
            if self.tiered { "1" } else { "" },
        )
    }

    /// `None` when malformed. Earlier builds stored `reason|charge|window_expires_ms`: final.
    pub fn decode(raw: &str) -> Option<Self> {
        let parts: Vec<&str> = raw.split('|').collect();
        let opt = |s: &str| -> Option<Option<i64>> {
            if s.is_empty() {
                Some(None)
            } else {
                s.parse().ok().map(Some)
            }
        };
        match parts.as_slice() {
            [reason, charge, window] => Some(Self {
                reason: (*reason).to_owned(),
                charge_micros: charge.parse().ok()?,
                window_expires_ms: opt(window)?,
                billing: "final".into(),
                ..Self::default()
            }),
            ["m2", reason, window, rule_set, billing, charge, tier, month, day, line, country, counter, schedule, campaign, at, tiered] => {
                Some(Self {
                    reason: (*reason).to_owned(),
                    window_expires_ms: opt(window)?,
                    rule_set: (*rule_set).to_owned(),
                    billing: (*billing).to_owned(),
                    charge_micros: charge.parse().ok()?,
                    tier: match opt(tier)? {
                        None => None,
                        Some(t) => Some(u32::try_from(t).ok()?),
                    },
                    month: month.parse().ok()?,
                    day: day.parse().ok()?,
                    line: (*line).to_owned(),
                    country: (*country).to_owned(),
                    counter: (*counter).to_owned(),
                    schedule: (*schedule).to_owned(),
                    campaign: (*campaign).to_owned(),
                    at_ms: at.parse().ok()?,
                    tiered: *tiered == "1",
                })
            }
            _ => None,
        }
    }
}

/// A click-to-chat conversion as the advertiser's conversions API lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversionRecord {
    pub click_id: String,
    pub campaign: String,
    pub kind: String,
    pub at_ms: Millis,
}

/// How Redis keeps what it acknowledged (see the README's durability table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keeping {
    /// An append-only file: an acknowledged event survives a Redis crash.
    pub aof: bool,
    /// The `maxmemory-policy` when it may evict keys (anything but `noeviction`): an evicted
    /// dedupe, user or outbox key loses acknowledged events or counts one twice.
    pub evicting: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventOutcome {
    Accepted,
    Duplicate,
    OutOfOrder,
    CapReached,
}

impl EventOutcome {
    fn from_code(code: i64) -> Result<Self, StoreError> {
        Ok(match code {
            1 => Self::Accepted,
            2 => Self::Duplicate,
            3 => Self::OutOfOrder,
            4 => Self::CapReached,
            other => {
                return Err(StoreError::corrupt(format!(
                    "unknown event outcome {other}"
                )))
            }
        })
    }
}

/// Parses an earlier build's conversion log entry
/// `<advertiser>|<campaign>|<click id>|<type>|<at_ms>` into its advertiser and conversion
/// (`None` for a malformed one).
pub fn parse_conversion_entry(entry: &str) -> Option<(String, ConversionRecord)> {
    let mut parts = entry.split('|');
    let (advertiser, campaign, click_id, kind, at) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    parts.next().is_none().then_some(())?;
    Some((
        advertiser.to_owned(),
        ConversionRecord {
            click_id: click_id.to_owned(),
            campaign: campaign.to_owned(),
            kind: kind.to_owned(),
            at_ms: at.parse().ok()?,
        },
    ))
}

/// Where one user's records live, for access and erasure.
pub struct UserLocator<'a> {
    pub shard: u32,
    pub user: &'a str,
    /// The service's clock, now.
    pub now_ms: Millis,
    /// Every advertiser, with its shard: where conversation windows and business-initiated
    /// lists name the user.
    pub advertisers: Vec<(u32, String)>,
    /// Decision ids of the user's clicks (from the record): the store finds click keys by them.
    pub clicks: Vec<String>,
}

/// Everything the hot store keeps about one user, decoded.
#[derive(Debug, Default)]
pub struct UserRecords {
    /// Caps (render times), reservations, hides and suppressions.
    pub state: UserState,
    pub sessions: Vec<StoredSession>,
    pub clicks: Vec<UserClick>,
    /// (advertiser, its conversation with the user)
    pub conversations: Vec<(String, crate::messaging::Conversation)>,
    /// (advertiser, the latest business-initiated template to the user, ms)
    pub initiated: Vec<(String, Millis)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    /// The session id's hash (see `codec::session_field`): the store never keeps the id.
    pub tag: String,
    pub state: crate::capping::SessionState,
    pub forget_after_ms: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserClick {
    pub decision_id: String,
    pub advertiser: String,
    pub campaign: String,
    pub conversation_started: bool,
}

/// Ledger records read from one shard's outbox, with their ids there.
pub struct OutboxBatch {
    pub shard: u32,
    /// Redis stream ids (embedded: none; its outbox drops the oldest records exported).
    pub ids: Vec<String>,
    pub records: Vec<LedgerRecord>,
}

// One per process, behind an `Arc`: its size never moves, boxing would only add a hop per call.
#[allow(clippy::large_enum_variant)]
pub enum Store {
    Redis(RedisStore),
    Embedded(EmbeddedStore),
}

impl Store {
    /// The redis backend's store: on a Redis server, or on the embedded backend's in-process
    /// Redis.
    fn redis(&self) -> &RedisStore {
        match self {
            Store::Redis(s) => s,
            Store::Embedded(s) => s.redis(),
        }
    }

    pub fn backend_name(&self) -> &'static str {
        match self {
            Store::Redis(_) => "redis",
            Store::Embedded(_) => "embedded",
        }
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        self.redis().ping().await
    }

    /// Why the store cannot make writes durable, if it cannot (the embedded journal after a
    /// failed write or fsync; Redis durability is Redis's own).
    pub fn write_trouble(&self) -> Option<&'static str> {
        match self {
            Store::Redis(_) => None,
            Store::Embedded(s) => s.write_trouble(),
        }
    }

    /// How Redis keeps what it acknowledged: across its own crash (AOF) and under memory
    /// pressure (no eviction). `None` on the embedded backend, whose journal is always fsynced
    /// and which evicts nothing.
    pub async fn keeping(&self) -> Option<Result<Keeping, StoreError>> {
        match self {
            Store::Redis(s) => Some(s.keeping().await),
            Store::Embedded(_) => None,
        }
    }

    /// Probes Redis while its breaker is open (see [`breaker`]) until `shutdown`; the embedded
    /// backend has nothing to probe.
    pub async fn probe_while_open(&self, shutdown: &mut crate::shutdown::Shutdown) {
        match self {
            Store::Redis(s) => s.probe_while_open(shutdown).await,
            Store::Embedded(_) => shutdown.recv().await,
        }
    }

    /// The catalog earlier builds kept here (Redis keys, or an embedded journal's catalog
    /// entries); read once, to move it into the system of record (`record::migration`).
    pub async fn load_catalog(&self) -> Result<CatalogData, StoreError> {
        self.redis().load_catalog().await
    }

    /// Commits the decision if the live user state still allows it (all or nothing), else
    /// returns that live state. One round trip: the read rides on the commit.
    pub async fn commit_decision(
        &self,
        commit: &DecisionCommit<'_>,
    ) -> Result<CommitOutcome, StoreError> {
        self.redis().commit_decision(commit).await
    }

    /// Applies a batch's events, grouped by shard; per shard, one outcome per event in order.
    /// One script per shard (shards live in different cluster slots; the embedded backend has
    /// one, journaled as one line), so each shard's result stands alone; on Redis the ledger
    /// spools the shards that failed.
    pub async fn apply_batch(
        &self,
        now_ms: Millis,
        day: u32,
        shards: &[(u32, Vec<EventWrite>)],
    ) -> Vec<Result<Vec<EventOutcome>, StoreError>> {
        let s = self.redis();
        futures_util::future::join_all(
            shards
                .iter()
                .map(|(shard, events)| s.apply_events(*shard, now_ms, day, events)),
        )
        .await
    }

    /// Applies the events of one shard atomically; one outcome per event, in order.
    pub async fn apply_events(
        &self,
        shard: u32,
        now_ms: Millis,
        day: u32,
        events: &[EventWrite],
    ) -> Result<Vec<EventOutcome>, StoreError> {
        self.redis().apply_events(shard, now_ms, day, events).await
    }

    /// Spend of every campaign: total and on `day`.
    /// Spend per campaign, in the map the spend board keeps (see `ledger::spend`).
    pub async fn spend(
        &self,
        day: u32,
    ) -> Result<hashbrown::HashMap<CampaignId, Spend>, StoreError> {
        self.redis().spend(day).await
    }

    /// The (advertiser, campaign) a click (by decision id) belongs to, if it was recorded.
    /// (`at_ms`: when the asking message happened; a click is attributable for `CLICK_TTL_MS`.)
    pub async fn click_owner(
        &self,
        shard: u32,
        decision_id: &str,
        at_ms: Millis,
    ) -> Result<Option<ClickOwner>, StoreError> {
        self.redis().click_owner(shard, decision_id, at_ms).await
    }

    pub async fn apply_conversion(
        &self,
        write: &ConversionWrite<'_>,
    ) -> Result<ConversionOutcome, StoreError> {
        self.redis().apply_conversion(write).await
    }

    /// An earlier build's conversion logs of these UTC days (`YYYYMMDD`), every advertiser's:
    /// what the one-off move of their click ids into the record reads.
    pub async fn earlier_conversion_log(
        &self,
        days: &[u32],
    ) -> Result<Vec<(String, ConversionRecord)>, StoreError> {
        self.redis().earlier_conversion_log(days).await
    }

    /// The stored conversation state ("" = none) and, if this message id was seen, its result.
    pub async fn load_conversation(
        &self,
        shard: u32,
        advertiser: &str,
        user: &str,
        message_id: &str,
    ) -> Result<(String, Option<String>), StoreError> {
        self.redis()
            .load_conversation(shard, advertiser, user, message_id)
            .await
    }

    pub async fn commit_message(
        &self,
        commit: &MessageCommit<'_>,
    ) -> Result<MessageOutcome, StoreError> {
        self.redis().commit_message(commit).await
    }

    /// The stored message of this id, if it was recorded.
    pub async fn message_state(
        &self,
        shard: u32,
        advertiser: &str,
        message_id: &str,
    ) -> Result<Option<String>, StoreError> {
        self.redis()
            .message_state(shard, advertiser, message_id)
            .await
    }

    /// Makes a pending charge final or void, once.
    pub async fn settle_message(
        &self,
        write: &SettleWrite<'_>,
    ) -> Result<SettleOutcome, StoreError> {
        self.redis().settle_message(write).await
    }

    /// How many other nodes price with other money settings (see
    /// `RedisStore::compare_settings`); none on the embedded backend, which is one node.
    pub async fn compare_settings(
        &self,
        node: &str,
        fingerprint: &str,
        now_ms: Millis,
    ) -> Result<u32, StoreError> {
        match self {
            Store::Redis(s) => s.compare_settings(node, fingerprint, now_ms).await,
            Store::Embedded(_) => Ok(0),
        }
    }

    /// Records this node as alive at `now_ms`; returns how many nodes are (1 when embedded).
    pub async fn heartbeat(&self, node: &str, now_ms: Millis) -> Result<u32, StoreError> {
        match self {
            Store::Redis(s) => s.heartbeat(node, now_ms).await,
            Store::Embedded(_) => Ok(1),
        }
    }

    /// How many parts [`Store::outbox`] reads the outboxes in: groups of [`OUTBOX_GROUP`]
    /// shards on Redis, so that one read's reply stays bounded however long the backlog.
    pub fn outbox_parts(&self) -> u32 {
        self.redis().shards().div_ceil(OUTBOX_GROUP)
    }

    /// The oldest ledger records waiting for export in outbox part `part` (of
    /// [`Store::outbox_parts`]): up to `limit` per shard (embedded: from its one outbox, as
    /// shard 0), only records whose event was acknowledged or may yet be.
    pub async fn outbox(&self, part: u32, limit: usize) -> Result<Vec<OutboxBatch>, StoreError> {
        let s = self.redis();
        let first = part * OUTBOX_GROUP;
        let shards: Vec<u32> = (first..(first + OUTBOX_GROUP).min(s.shards())).collect();
        Ok(s.outbox(&shards, limit)
            .await?
            .into_iter()
            .map(|(shard, entries)| {
                let (ids, records) = entries.into_iter().unzip();
                OutboxBatch {
                    shard,
                    ids,
                    records,
                }
            })
            .collect())
    }

    /// Housekeeping of Redis's files (see `RedisStore::rewrite_aof_if_due`): its append-only
    /// file rewritten daily. The embedded backend compacts its own files (`maintain`).
    pub async fn rewrite_aof_if_due(&self, now_ms: Millis) -> Result<(), StoreError> {
        match self {
            Store::Redis(s) => s.rewrite_aof_if_due(now_ms, crate::capping::DAY_MS).await,
            Store::Embedded(_) => Ok(()),
        }
    }

    /// Housekeeping after an export round: the embedded backend drops what has expired by
    /// `now_ms` (Redis expires keys itself; the in-process one on its own clock) and compacts
    /// its journal when it is long.
    pub fn maintain(&self, now_ms: Millis) -> Result<(), StoreError> {
        match self {
            Store::Redis(s) => {
                s.purge_expired();
                Ok(())
            }
            Store::Embedded(s) => s.maintain(now_ms),
        }
    }

    /// The batches' records are in the system of record: drop them from the outbox.
    pub async fn exported(&self, batches: &[OutboxBatch]) -> Result<(), StoreError> {
        let done: Vec<(u32, Vec<String>)> =
            batches.iter().map(|b| (b.shard, b.ids.clone())).collect();
        self.redis().exported(&done).await
    }

    /// Everything stored about one user (the right of access).
    pub async fn user_records(&self, who: &UserLocator<'_>) -> Result<UserRecords, StoreError> {
        self.redis().user_records(who).await
    }

    /// Removes every record of one user (the right of erasure); idempotent.
    pub async fn erase_user(&self, who: &UserLocator<'_>) -> Result<(), StoreError> {
        match self {
            Store::Redis(s) => s.erase_user(who).await,
            // Compacted after, so that no journal line still names the user.
            Store::Embedded(s) => s.erase_user(who).await,
        }
    }

    /// Tells the other nodes that the user with this keyed hash was erased (one node on the
    /// embedded backend: nothing to tell).
    pub async fn announce_erasure(
        &self,
        user_key: &str,
        now_ms: Millis,
        keep_ms: Millis,
    ) -> Result<(), StoreError> {
        match self {
            Store::Redis(s) => s.announce_erasure(user_key, now_ms, keep_ms).await,
            Store::Embedded(_) => Ok(()),
        }
    }

    /// The erasures announced and still kept: (user key, when).
    pub async fn erasures(&self) -> Result<Vec<(String, Millis)>, StoreError> {
        match self {
            Store::Redis(s) => s.erasures().await,
            Store::Embedded(_) => Ok(Vec::new()),
        }
    }

    /// The hot store's clock, in ms (the embedded backend's never goes back: a journal written
    /// ahead of this node's clock holds it there).
    pub async fn time_ms(&self) -> Result<Option<Millis>, StoreError> {
        self.redis().time_ms().await.map(Some)
    }

    /// Tells the other nodes this one has stopped (a graceful stop); nothing on the embedded
    /// backend, which is one node.
    pub async fn leave(&self, node: &str) -> Result<(), StoreError> {
        match self {
            Store::Redis(s) => s.leave(node).await,
            Store::Embedded(_) => Ok(()),
        }
    }

    /// Counts one completed round of this node acting on the erasures others announced.
    pub async fn erasures_watched(&self, node: &str) -> Result<(), StoreError> {
        match self {
            Store::Redis(s) => s.erasures_watched(node).await,
            Store::Embedded(_) => Ok(()),
        }
    }

    /// The other live nodes and the erasure rounds each has completed; none on the embedded
    /// backend.
    pub async fn erasure_watchers(
        &self,
        node: &str,
        now_ms: Millis,
    ) -> Result<HashMap<String, u64>, StoreError> {
        match self {
            Store::Redis(s) => s.erasure_watchers(node, now_ms).await,
            Store::Embedded(_) => Ok(HashMap::new()),
        }
    }

    /// Sets hot spend per campaign `(id, total, on day)`: `statusads reconcile --repair`.
    pub async fn set_spend(
        &self,
        day: u32,
        spend: &[(String, Micros, Micros)],
    ) -> Result<(), StoreError> {
        self.redis().set_spend(day, spend).await
    }
}

#[cfg(test)]
mod tests {
    use super::StoreError;

    #[derive(Debug, thiserror::Error)]
    #[error("outer: {0}")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn a_report_names_what_failed_and_each_cause_once() {
        let err = StoreError::unavailable_from(
            "journal write failed",
            std::io::Error::other("disk on fire"),
        );
        assert!(err.is_unavailable());
        assert_eq!(err.to_string(), "store unavailable: journal write failed");
        assert_eq!(
            err.report().to_string(),
            "store unavailable: journal write failed: disk on fire"
        );
        let err = StoreError::corrupt_from("x", Outer(std::io::Error::other("inner")));
        assert_eq!(err.report().to_string(), "store error: x: outer: inner");
        let err = err.within("context");
        assert!(!err.is_unavailable());
        assert_eq!(
            err.report().to_string(),
            "store error: context: x: outer: inner"
        );
    }
}
