//! A user's rights of access and erasure (`GET` / `DELETE /v1/users/{user}`, operator).
//!
//! What is kept about a user lives in three places: the hot store (their hash of caps,
//! reservations, hides, suppressions and sessions on their shard, their clicks there, and
//! conversation windows and business-initiated entries on each advertiser's shard), the system
//! of record (ledger records carrying their keyed hash, for reach), and every node's recent
//! view of them. Access reads all three; erasure removes the first and the third and unlinks
//! the second (the records stay: invoices are computed from them).
//!
//! An erasure first waits for the exporter to drain the outboxes, so that no record of the user
//! is still on its way into the record when it is unlinked. Other nodes learn of an erasure
//! through the store within [`WATCH_INTERVAL`] and drop their view of the user; the
//! announcement carries the keyed hash, never the id, and lasts [`ANNOUNCED_MS`]. The erasure
//! answers once every other live node has acted on it (each counts its completed rounds of
//! reading announcements in the store), or after [`CONFIRM_WITHIN`] with the number that had
//! not.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::capping::recent::RecentUsers;
use crate::capping::shard_of;
use crate::catalog::Catalog;
use crate::clock::{datetime_from_ms, Millis, SharedClock};
use crate::domain::audience::ReachKey;
use crate::domain::UserId;
use crate::record::exporter::Exporter;
use crate::record::Record;
use crate::shutdown::Shutdown;
use crate::store::{Store, StoreError, UserLocator, UserRecords};

/// How often a node reads the erasures announced by the others.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(1);
/// How long an erasure stays announced: well past the watch interval of every live node.
pub const ANNOUNCED_MS: Millis = 60_000;
/// How long an erasure waits for the other live nodes to act on it before answering.
pub const CONFIRM_WITHIN: Duration = Duration::from_secs(5);

/// Erasures a node has acted on: (user key, announced at) -> when it read them.
type Acted = std::collections::HashMap<(String, Millis), Millis>;

#[derive(Debug, thiserror::Error)]
pub enum SubjectError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The exporter has not drained the outboxes since the request arrived, or events held
    /// during a Redis outage are still to be applied: records of the user may still be on
    /// their way. Nothing was changed.
    #[error("the system of record is behind the hot store; retry shortly")]
    RecordBehind,
}

pub struct Subjects {
    pub store: Arc<Store>,
    pub record: Arc<Record>,
    pub exporter: Arc<Exporter>,
    pub recent: Arc<RecentUsers>,
    pub catalog: Arc<Catalog>,
    pub reach: Arc<ReachKey>,
    pub clock: SharedClock,
    pub shards: u32,
    /// Events held while Redis was unreachable (they name users): an erasure waits for them.
    pub spool: Option<Arc<crate::ledger::spool::Spool>>,
    /// Sampled requests (keyed hashes) waiting to be written: flushed before reading them.
    pub insight: Arc<crate::insight::Insight>,
    /// This node's id among the nodes sharing the store (`SpendBoard::node_id`).
    pub node: String,
}

/// Everything stored about one user, by kind (the answer to an access request).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserAccess {
    pub user: String,
    /// How many records are listed here, all kinds together (0: nothing is stored).
    pub records: u64,
    pub caps: CapsAccess,
    pub hides: Vec<AdvertiserUntil>,
    /// Campaigns not shown to the user after they started a conversation from them.
    pub suppressions: Vec<CampaignUntil>,
    pub sessions: Vec<SessionAccess>,
    pub clicks: Vec<ClickAccess>,
    pub conversation_windows: Vec<ConversationAccess>,
    /// Advertisers that sent the user a business-initiated template (the daily limit).
    pub business_initiated: Vec<AdvertiserAt>,
    /// Ledger records in the system of record that carry the user's keyed hash (reach).
    pub billing_records: u64,
    /// Sampled requests kept for forecasts that carry the user's keyed hash (7 days).
    pub insight_samples: u64,
    /// Whether this node holds a recent view of the user (decisions read it).
    pub recent_view: bool,
    /// The record is complete up to this time.
    #[serde(with = "time::serde::rfc3339")]
    pub as_of: time::OffsetDateTime,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CapsAccess {
    pub campaigns: Vec<Renders>,
    pub advertisers: Vec<Renders>,
    /// Every ad rendered in the last 24 h (the daily ad load).
    #[schema(value_type = Vec<String>)]
    pub daily: Vec<Time>,
    pub reservations: Vec<ReservationAccess>,
}

type Time = String;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Renders {
    pub id: String,
    #[schema(value_type = Vec<String>)]
    pub renders: Vec<Time>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReservationAccess {
    pub campaign_id: String,
    pub advertiser_id: String,
    pub expires_at: Time,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AdvertiserUntil {
    pub advertiser_id: String,
    pub until: Time,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CampaignUntil {
    pub campaign_id: String,
    pub until: Time,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AdvertiserAt {
    pub advertiser_id: String,
    pub at: Time,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionAccess {
    /// A hash of the session id: the service never keeps the id.
    pub session_hash: String,
    pub ads_served: u32,
    pub forget_after: Time,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ClickAccess {
    pub decision_id: String,
    pub campaign_id: String,
    pub advertiser_id: String,
    pub conversation_started: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConversationAccess {
    pub advertiser_id: String,
    #[schema(value_type = Object)]
    pub state: crate::messaging::Conversation,
}

/// The answer to an erasure request.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Erased {
    pub user: String,
    pub erased: bool,
    /// Ledger records that no longer carry the user's keyed hash (they stay for invoices).
    pub billing_records_unlinked: u64,
    /// Other live nodes that had not confirmed dropping their view of the user when the
    /// answer was given (0: all had); each does when it next reads the store.
    pub nodes_pending: u32,
}

impl Subjects {
    pub async fn access(&self, user: &UserId) -> Result<UserAccess, SubjectError> {
        let as_of = self.exporter.caught_up().await;
        let user_key = self.reach.of(user.as_str());
        let (billing_records, clicks) = self.record.linked_to(&user_key).await?;
        self.insight.flush().await?;
        let insight_samples = self.record.sampled_requests_of(&user_key).await?;
        let found = self
            .store
            .user_records(&self.locate(user.as_str(), clicks))
            .await?;
        let recent_view = self.recent.holds(user.as_str());
        let mut access = describe(user, found, billing_records, recent_view, as_of);
        access.insight_samples = insight_samples;
        access.records += insight_samples;
        Ok(access)
    }

    pub async fn erase(&self, user: &UserId) -> Result<Erased, SubjectError> {
        let asked = self.clock.now_ms();
        let spooled = || self.spool.as_ref().is_some_and(|s| s.pending() > 0);
        if spooled() || self.exporter.caught_up().await < asked || spooled() {
            return Err(SubjectError::RecordBehind);
        }
        let user_key = self.reach.of(user.as_str());
        let (_, clicks) = self.record.linked_to(&user_key).await?;
        // A decision of this node in flight keeps no view it read before (see
        // `capping::recent`).
        self.recent.erase(user.as_str());
        self.store
            .erase_user(&self.locate(user.as_str(), clicks))
            .await?;
        let unlinked = self.record.unlink(&user_key).await?;
        // The insight samples a forecast replays carry the same keyed hash: they go whole
        // (they are no billing record), with no flush in flight to write them back.
        self.insight
            .forgetting(
                &std::iter::once(user_key.clone()).collect(),
                self.record.delete_samples_of(&[user_key.as_str()]),
            )
            .await?;
        // Again: a decision that began during the erasure may have committed a view of the
        // user as new, resting on state the erasure then deleted.
        self.recent.erase(user.as_str());
        self.store
            .announce_erasure(&user_key, self.clock.now_ms(), ANNOUNCED_MS)
            .await?;
        let nodes_pending = self.confirmations().await?;
        if nodes_pending > 0 {
            tracing::warn!(
                user_key = %user_key,
                nodes_pending,
                "erased, but live nodes have not yet acted on the erasure"
            );
        }
        tracing::info!(
            user_key = %user_key,
            unlinked,
            "erased a user's records on request"
        );
        Ok(Erased {
            user: user.as_str().to_owned(),
            erased: true,
            billing_records_unlinked: unlinked,
            nodes_pending,
        })
    }

    /// Waits until every other live node has completed two rounds of reading erasures since
    /// the announcement (the first may have read just before it), up to [`CONFIRM_WITHIN`];
    /// answers how many had not. A node yet to count its first round counts from 0 (one of an
    /// earlier build never does, and is waited for in vain); one that stops beating holds
    /// nothing any more and is no longer waited for. Only the first read failing is an error:
    /// later, the erasure is done and announced, a failed read is tried again, and the nodes
    /// still waited for at the deadline are pending.
    async fn confirmations(&self) -> Result<u32, StoreError> {
        let deadline = tokio::time::Instant::now() + CONFIRM_WITHIN;
        let mut waiting: std::collections::HashMap<String, u64> = self
            .store
            .erasure_watchers(&self.node, self.clock.now_ms())
            .await?
            .into_iter()
            .map(|(node, rounds)| (node, rounds + 2))
            .collect();
        while !waiting.is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(WATCH_INTERVAL / 10).await;
            let now = match self
                .store
                .erasure_watchers(&self.node, self.clock.now_ms())
                .await
            {
                Ok(now) => now,
                Err(err) => {
                    tracing::debug!(error = %err.report(), "erasure confirmations not read; retrying");
                    continue;
                }
            };
            waiting.retain(|node, needed| now.get(node).is_some_and(|rounds| rounds < needed));
        }
        Ok(waiting.len() as u32)
    }

    fn locate<'a>(&self, user: &'a str, clicks: Vec<String>) -> UserLocator<'a> {
        let snapshot = self.catalog.snapshot();
        UserLocator {
            shard: shard_of(user, self.shards),
            user,
            now_ms: self.clock.now_ms(),
            advertisers: snapshot
                .advertisers()
                .map(|a| (shard_of(a.id.as_str(), self.shards), a.id.to_string()))
                .collect(),
            clicks,
        }
    }

    /// Until `shutdown`: drops this node's view of every user another node erased, one round
    /// every [`WATCH_INTERVAL`] (see [`Self::watch_round`]).
    pub async fn watch_erasures(self: Arc<Self>, mut shutdown: Shutdown) {
        let mut acted = Acted::new();
        loop {
            tokio::select! {
                _ = shutdown.recv() => return,
                _ = tokio::time::sleep(WATCH_INTERVAL) => {}
            }
            self.watch_round(&mut acted).await;
        }
    }

    /// One last round on every erasure still announced, for a node that is stopping: its last
    /// insight flush may have written samples of a user erased meanwhile.
    pub async fn act_on_erasures(&self) {
        self.watch_round(&mut Acted::new()).await;
    }

    /// Reads every announcement kept (announcing nodes' clocks differ, and two erasures can
    /// share a millisecond) and acts on those not in `acted`. A round that read some and acted
    /// on all is counted in the store: erasures waiting for this node read the count (rounds
    /// reading none are not, so an idle service writes nothing).
    async fn watch_round(&self, acted: &mut Acted) {
        let now = self.clock.now_ms();
        acted.retain(|_, read_at| *read_at > now - 2 * ANNOUNCED_MS);
        let erased = match self.store.erasures().await {
            Ok(erased) => erased,
            Err(err) => {
                tracing::debug!(error = %err.report(), "erasures not read; retrying");
                return;
            }
        };
        let announced = !erased.is_empty();
        let fresh: std::collections::HashSet<String> = erased
            .into_iter()
            .filter(|announced| acted.insert(announced.clone(), now).is_none())
            .map(|(key, _)| key)
            .collect();
        if !fresh.is_empty() {
            self.recent
                .forget_where(|user| fresh.contains(&self.reach.of(user)));
            // This node's samples of those users, noted before the erasure. An announcement
            // whose delete failed is read again next time, and the round is not counted.
            let keys: Vec<&str> = fresh.iter().map(String::as_str).collect();
            let deleted = async {
                match self.record.delete_samples_of(&keys).await {
                    Ok(_) => Vec::new(),
                    Err(err) => {
                        tracing::warn!(error = %err.report(), "erased users' samples not deleted; retrying");
                        fresh.iter().cloned().collect()
                    }
                }
            };
            let failed = self.insight.forgetting(&fresh, deleted).await;
            acted.retain(|(key, _), _| !failed.contains(key));
            if !failed.is_empty() {
                return;
            }
        }
        if announced {
            if let Err(err) = self.store.erasures_watched(&self.node).await {
                tracing::debug!(error = %err.report(), "erasure round not counted");
            }
        }
    }
}

fn describe(
    user: &UserId,
    found: UserRecords,
    billing_records: u64,
    recent_view: bool,
    as_of: Millis,
) -> UserAccess {
    let at = |ms: Millis| {
        datetime_from_ms(ms)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    };
    let seconds = |list: &[i64]| list.iter().map(|s| at(s * 1000)).collect::<Vec<_>>();
    let renders = |map: &std::collections::HashMap<String, Vec<i64>>| {
        let mut out: Vec<Renders> = map
            .iter()
            .map(|(id, list)| Renders {
                id: id.clone(),
                renders: seconds(list),
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    };
    let state = &found.state;
    let mut hides: Vec<AdvertiserUntil> = state
        .hidden_until
        .iter()
        .map(|(id, until)| AdvertiserUntil {
            advertiser_id: id.clone(),
            until: at(*until),
        })
        .collect();
    hides.sort_by(|a, b| a.advertiser_id.cmp(&b.advertiser_id));
    let mut suppressions: Vec<CampaignUntil> = state
        .suppressed_until
        .iter()
        .map(|(id, until)| CampaignUntil {
            campaign_id: id.clone(),
            until: at(*until),
        })
        .collect();
    suppressions.sort_by(|a, b| a.campaign_id.cmp(&b.campaign_id));
    let caps = CapsAccess {
        campaigns: renders(&state.campaign_renders),
        advertisers: renders(&state.advertiser_renders),
        daily: seconds(&state.daily_renders),
        reservations: state
            .reservations
            .iter()
            .map(|r| ReservationAccess {
                campaign_id: r.campaign.clone(),
                advertiser_id: r.advertiser.clone(),
                expires_at: at(r.expires_ms),
            })
            .collect(),
    };
    let access = UserAccess {
        user: user.as_str().to_owned(),
        records: 0,
        hides,
        suppressions,
        sessions: found
            .sessions
            .iter()
            .map(|s| SessionAccess {
                session_hash: s.tag.clone(),
                ads_served: s.state.served,
                forget_after: at(s.forget_after_ms),
            })
            .collect(),
        clicks: found
            .clicks
            .iter()
            .map(|c| ClickAccess {
                decision_id: c.decision_id.clone(),
                campaign_id: c.campaign.clone(),
                advertiser_id: c.advertiser.clone(),
                conversation_started: c.conversation_started,
            })
            .collect(),
        conversation_windows: found
            .conversations
            .into_iter()
            .map(|(advertiser_id, state)| ConversationAccess {
                advertiser_id,
                state,
            })
            .collect(),
        business_initiated: found
            .initiated
            .iter()
            .map(|(advertiser_id, ms)| AdvertiserAt {
                advertiser_id: advertiser_id.clone(),
                at: at(*ms),
            })
            .collect(),
        billing_records,
        insight_samples: 0,
        recent_view,
        as_of: datetime_from_ms(as_of),
        caps,
    };
    let records = access.caps.campaigns.len()
        + access.caps.advertisers.len()
        + access.caps.daily.len()
        + access.caps.reservations.len()
        + access.hides.len()
        + access.suppressions.len()
        + access.sessions.len()
        + access.clicks.len()
        + access.conversation_windows.len()
        + access.business_initiated.len()
        + usize::from(access.recent_view);
    UserAccess {
        records: records as u64 + access.billing_records,
        ..access
    }
}
