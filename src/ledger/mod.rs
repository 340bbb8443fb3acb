//! Counting and billing. [`Ledger::ingest`] turns a batch of client events into per-event
//! statuses: tokens are verified here (signature, expiry), then each shard's events go to the
//! store in one atomic script that dedupes, checks caps, appends the ledger record and moves the
//! derived counters and spend. [`SpendBoard`] is the spend snapshot that budget checks read,
//! refreshed from the store at least every second. Reports read the derived counters.

pub mod conversions;
pub mod invoice;
pub mod messages;
pub mod reconcile;
pub mod report;
pub mod served;
pub mod spend;
pub mod spool;

use self::spend::RenderedInto;
pub use self::spend::SpendBoard;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::capping::recent::RecentUsers;
use crate::capping::{self, Retention};
use crate::catalog::Catalog;
use crate::clock::{utc_day, Millis, SharedClock};
use crate::domain::audience::{Audience, ReachKey};
use crate::domain::event::{ClientEvent, EventResult, EventStatus, EventType, RejectReason};
use crate::domain::ids::CampaignId;
use crate::domain::ValidationError;
use crate::metrics::Metrics;
use crate::store::{EventOutcome, EventWrite, Store, StoreError};
use crate::tokens::TokenKeys;

/// Dedupe state outlives the token's last valid moment by this much, so a late retry is still
/// recognised as a duplicate rather than re-judged.
const DEDUPE_MARGIN_MS: i64 = 3_600_000;

pub struct Ledger {
    pub store: Arc<Store>,
    /// Views of users whose state events move are dropped (see `capping::recent`).
    pub recent: Arc<RecentUsers>,
    pub catalog: Arc<Catalog>,
    pub keys: Arc<TokenKeys>,
    pub clock: SharedClock,
    pub metrics: Arc<Metrics>,
    pub shards: u32,
    pub grace_ms: i64,
    pub daily_max: u32,
    pub spend: Arc<SpendBoard>,
    /// Hashes users into the reach keys ledger records carry.
    pub reach: Arc<ReachKey>,
    /// Where events wait out a Redis outage (`None` on the embedded backend).
    pub spool: Option<Arc<spool::Spool>>,
}

impl Ledger {
    /// Records a batch's events (grouped by shard) and answers each shard's outcomes, or fails:
    /// having recorded none of them when the store is away, or on an error reply having kept
    /// what a retry then finds exactly.
    ///
    /// Embedded: one journal entry. Redis: while the spool holds anything the batch queues
    /// behind it (so no event overtakes a spooled one), spooled whole. Otherwise each shard goes
    /// to Redis, and the shards Redis is away for (down, or a deadline missed: the script may or
    /// may not have run, which dedupe makes the same on replay) are spooled even past the
    /// spool's limit, so the batch is acknowledged whole. An error reply fails the batch (see
    /// below for why a retry of it is exact).
    async fn record(
        &self,
        now_ms: i64,
        day: u32,
        shards: &[(u32, Vec<EventWrite>)],
    ) -> Result<Vec<Applied>, StoreError> {
        if shards.is_empty() {
            return Ok(Vec::new());
        }
        let Some(spool) = &self.spool else {
            return self
                .store
                .apply_batch(now_ms, day, shards)
                .await
                .into_iter()
                .map(|outcomes| outcomes.map(Applied::Now))
                .collect();
        };
        let unavailable =
            |err: spool::SpoolError| StoreError::unavailable_from("outage spool", err);
        if spool.pending() > 0 {
            let everything: Vec<(u32, &[EventWrite])> =
                shards.iter().map(|(s, e)| (*s, e.as_slice())).collect();
            let generation = spool
                .push(now_ms, day, &everything, spool::Limit::Strict)
                .await
                .map_err(unavailable)?;
            self.metrics.spool(spool.pending(), 0, 0);
            return Ok(shards
                .iter()
                .map(|_| Applied::Spooled(generation))
                .collect());
        }
        if let Some(refusal) = spool.refusal() {
            return Err(unavailable(refusal));
        }
        let results = self.store.apply_batch(now_ms, day, shards).await;
        // An error reply is no outage: replaying it would most likely fail the same way, and a
        // spool that cannot drain would hold every later batch of this node behind it. The
        // batch is answered with the error, after the shards Redis was away for are spooled (their
        // scripts may have run). What the failed script had written stays, and is exact on a
        // retry: it writes an event's record before anything that marks the event counted, so a
        // retry finds each event either counted (`duplicate`) or new.
        let mut failed = Vec::new();
        let mut broken = None;
        let mut applied = Vec::with_capacity(shards.len());
        for ((shard, writes), result) in shards.iter().zip(results) {
            applied.push(match result {
                Ok(outcomes) => Some(outcomes),
                Err(err @ StoreError::Unavailable { .. }) => {
                    tracing::warn!(error = %err.report(), shard, "Redis unavailable: spooling events");
                    failed.push((*shard, writes.as_slice()));
                    None
                }
                Err(err @ StoreError::Corrupt { .. }) => {
                    tracing::error!(error = %err.report(), shard, "event batch failed on a store error");
                    broken.get_or_insert(err);
                    None
                }
            });
        }
        let mut generation = 0;
        if !failed.is_empty() {
            generation = spool
                .push(now_ms, day, &failed, spool::Limit::Admitted)
                .await
                .map_err(unavailable)?;
            self.metrics.spool(spool.pending(), 0, 0);
        }
        if let Some(err) = broken {
            return Err(err);
        }
        Ok(applied
            .into_iter()
            .map(|a| a.map_or(Applied::Spooled(generation), Applied::Now))
            .collect())
    }

    /// Replays the spool once Redis answers again; called by the refresher.
    pub async fn drain_spool(&self) {
        let Some(spool) = &self.spool else { return };
        if spool.idle() {
            return;
        }
        match spool.drain(&self.store).await {
            Ok(drained) => {
                // None: nothing was waiting (at most an empty spool's listing withdrawn).
                let Some(generation) = drained.generation else {
                    return;
                };
                self.spend.spool_replayed(generation);
                if drained.over_cap > 0 {
                    tracing::warn!(
                        replayed = drained.replayed,
                        over_cap = drained.over_cap,
                        "outage spool replayed; renders acknowledged during the outage were over a cap and are not billed"
                    );
                } else {
                    tracing::info!(replayed = drained.replayed, "outage spool replayed");
                }
                self.metrics
                    .spool(spool.pending(), drained.replayed, drained.over_cap);
            }
            Err(err @ StoreError::Corrupt { .. }) => {
                tracing::error!(error = %err.report(), "outage spool replay stopped")
            }
            Err(err) => tracing::debug!(error = %err.report(), "spool replay waits for Redis"),
        }
    }
}

/// One shard's part of a batch: the indexes into the batch's events, each with its token's last
/// render moment (where its budget hold lapses), and their writes.
type ShardWrites = (Vec<(usize, Millis)>, Vec<EventWrite>);

/// What happened to one shard's events.
enum Applied {
    Now(Vec<EventOutcome>),
    /// Into the spool, in this generation of it.
    Spooled(u64),
}

impl Ledger {
    /// One result per event, in order. A store failure fails the whole batch ([`Ledger::record`]):
    /// the client retries, and dedupe makes the retry exact.
    pub async fn ingest(&self, events: &[ClientEvent]) -> Result<Vec<EventResult>, StoreError> {
        let now_ms = self.clock.now_ms();
        let day = utc_day(now_ms);
        let snapshot = self.catalog.snapshot();
        let mut results: Vec<Option<EventResult>> = vec![None; events.len()];
        let mut by_shard: BTreeMap<u32, ShardWrites> = BTreeMap::new();

        for (index, event) in events.iter().enumerate() {
            let Ok(claims) = self.keys.verify(&event.token) else {
                results[index] = Some(EventResult::of(EventStatus::Invalid));
                continue;
            };
            if now_ms > claims.expires_at_ms + self.grace_ms {
                results[index] = Some(EventResult::of(EventStatus::Expired));
                continue;
            }
            // A validly signed token names a campaign we created; if it is gone the record
            // cannot be billed correctly, so it is refused as invalid rather than guessed.
            let Some(spec) = snapshot.cap_spec(&claims.campaign) else {
                results[index] = Some(EventResult::of(EventStatus::Invalid));
                continue;
            };
            let shard = capping::shard_of(claims.user.as_str(), self.shards);
            let advertiser_keep = snapshot.advertiser_keep(&claims.advertiser);
            let longest = spec.campaign_keep.window_ms.max(advertiser_keep.window_ms);
            // Without consent to personalisation, nothing of the event names the user: the
            // store then keeps no per-user state for it and the record no reach key.
            let (user, user_key) = if claims.personalized {
                let user = claims.user.as_str();
                (user.to_owned(), self.reach.of(user))
            } else {
                (String::new(), String::new())
            };
            let write = EventWrite {
                kind: event.kind,
                token_ttl_ms: claims.expires_at_ms + self.grace_ms - now_ms + DEDUPE_MARGIN_MS,
                user_ttl_ms: capping::user_ttl_ms(longest, event.kind.hides()),
                decision_id: claims.decision_id,
                user,
                campaign: claims.campaign.to_string(),
                advertiser: claims.advertiser.to_string(),
                price_micros: claims.price_micros,
                campaign_caps: spec.campaign_caps.clone(),
                advertiser_caps: spec.advertiser_caps.clone(),
                campaign_keep: spec.campaign_keep,
                advertiser_keep: Retention {
                    count: advertiser_keep.count,
                    window_ms: advertiser_keep.window_ms,
                },
                daily_max: self.daily_max,
                client_at: event
                    .at
                    .and_then(|at| {
                        at.format(&time::format_description::well_known::Rfc3339)
                            .ok()
                    })
                    .unwrap_or_default(),
                audience: Audience {
                    user_key,
                    creative: claims.creative.to_string(),
                    coarse: claims.coarse,
                },
            };
            let entry = by_shard.entry(shard).or_default();
            entry.0.push((index, claims.expires_at_ms + self.grace_ms));
            entry.1.push(write);
        }

        let (indexes, shards): (Vec<_>, Vec<_>) = by_shard
            .into_iter()
            .map(|(shard, (indexes, writes))| (indexes, (shard, writes)))
            .unzip();
        let applied = self.record(now_ms, day, &shards).await?;
        for ((indexes, (_, writes)), applied) in indexes.iter().zip(&shards).zip(applied) {
            let (outcomes, into) = match applied {
                Applied::Now(outcomes) => (outcomes, RenderedInto::Store),
                // Durably queued: acknowledged now, counted (exactly once) on replay.
                Applied::Spooled(generation) => (
                    vec![EventOutcome::Accepted; writes.len()],
                    RenderedInto::Spool(generation),
                ),
            };
            for ((&(index, hold_until), write), outcome) in indexes.iter().zip(writes).zip(outcomes)
            {
                if outcome == EventOutcome::Accepted
                    && !write.user.is_empty()
                    && (write.kind == EventType::Render || write.kind.hides())
                {
                    self.recent.forget(&write.user);
                }
                if outcome == EventOutcome::Accepted && write.kind == EventType::Render {
                    if let Some(campaign) = CampaignId::parse(&write.campaign) {
                        self.spend.rendered(
                            &write.decision_id,
                            &campaign,
                            write.price_micros,
                            hold_until,
                            into,
                        );
                    }
                }
                results[index] = Some(match outcome {
                    EventOutcome::Accepted => EventResult::of(EventStatus::Accepted),
                    EventOutcome::Duplicate => EventResult::of(EventStatus::Duplicate),
                    EventOutcome::OutOfOrder => EventResult::rejected(RejectReason::OutOfOrder),
                    EventOutcome::CapReached => EventResult::rejected(RejectReason::CapReached),
                });
            }
        }
        let results: Vec<EventResult> = results
            .into_iter()
            .map(|r| r.expect("every event has a result"))
            .collect();
        for (event, result) in events.iter().zip(&results) {
            self.metrics.event(event.kind, result.status);
        }
        Ok(results)
    }
}

/// The time of a messaging-platform event (a business message or a conversion), if in the
/// years 2000-2999 (see `messaging::valid_time`).
pub(crate) fn event_time(at: time::OffsetDateTime) -> Result<Millis, ValidationError> {
    let at_ms = crate::clock::ms_from_datetime(at);
    if crate::messaging::valid_time(at_ms) {
        Ok(at_ms)
    } else {
        Err(ValidationError::new(
            crate::codes::INVALID_DATE,
            "times must lie in the years 2000-2999",
        ))
    }
}
