//! Advertiser insight: why a campaign serves or not, from a sample of real decisions.
//!
//! A decision is sampled with probability `insight.sample_rate`. A sampled decision runs the
//! same decision code with its candidates walk traced (`selection::decide_explained`) and notes
//! each campaign the request's targeting matched with its outcome, what winners paid, and the
//! request itself (its signals and the user's keyed hash, never the id) for forecasts
//! ([`forecast`]). Everything is gathered in memory and written to the record every
//! [`FLUSH_EVERY`] by [`Insight::run`] (counters are per hour, so a longer interval writes the
//! same rows less often), and at once when a delivery answer or a forecast reads them; a
//! sample lost to a crash only makes an estimate a little less precise. Campaigns whose targeting a request misses are counted by difference (every
//! sampled decision less the campaign's other outcomes), so a sampled decision costs what the
//! matching campaigns cost, not the whole catalog.

pub mod forecast;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::catalog::Catalog;
use crate::clock::{Millis, SharedClock};
use crate::domain::audience::ReachKey;
use crate::domain::campaign::Campaign;
use crate::domain::slot::{SlotContext, SlotRequest};
use crate::record::insight::InsightBatch;
use crate::record::Record;
use crate::selection::explain::{Explained, Ineligible, LostBy, Outcome};
use crate::selection::Decision;
use crate::shutdown::Shutdown;
use crate::store::StoreError;

const HOUR_MS: Millis = 3_600_000;
/// How long sampled requests are kept for forecasts: their basis period.
pub const BASIS_MS: Millis = 7 * 86_400_000;
/// At most this many sampled requests (the newest) are replayed by one forecast.
pub const FORECAST_REQUESTS: i64 = 100_000;
/// The outcome under which the campaign '' counts every sampled decision.
const DECISION: &str = "decision";
/// How often noted samples are written to the record.
pub const FLUSH_EVERY: Duration = Duration::from_secs(30);
/// Clearing prices are kept to 0.01 per 1,000 renders.
const PRICE_STEP_MICROS: i64 = 10_000;

/// A sampled request as a forecast replays it: the signals the decision used, without the user.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SampledRequest {
    pub statuses: u32,
    /// Ads the session had already been served when the request came.
    pub session_served: u32,
    pub context: SlotContext,
}

pub struct Insight {
    /// `insight.sample_rate` as `f64` bits (the load bench changes it while running).
    rate: std::sync::atomic::AtomicU64,
    record: Arc<Record>,
    catalog: Arc<Catalog>,
    reach: Arc<ReachKey>,
    clock: SharedClock,
    pending: Mutex<Pending>,
    /// Held by a flush from taking what is pending until it is written, and by an erasure
    /// (`forgetting`): a flush in flight would write an erased user's samples back.
    flushing: tokio::sync::Mutex<()>,
    pruned_at: AtomicI64,
    /// One forecast at a time (each takes a thread for up to a few seconds); the permit goes
    /// with the thread, so a caller that goes away does not free it early.
    forecasting: Arc<tokio::sync::Semaphore>,
    /// The basis last read for a forecast, with when: reused for [`BASIS_REUSE_MS`], so that
    /// forecasts one after another do not each read 100,000 rows at the database's priority.
    basis: Mutex<Option<(Millis, Arc<Basis>)>>,
    /// Erasures seen ([`Insight::forget_users`]), counted under the `basis` lock: a basis whose
    /// read began before an erasure is used once, never kept.
    erasures: AtomicU64,
}

/// A forecast's basis: a uniform sample of the basis period's sampled requests as read, how
/// many there are, and the sample parsed for replay (once, by the first forecast that replays
/// it, on its low-priority thread).
pub struct Basis {
    pub stored: Vec<crate::record::insight::StoredRequest>,
    pub in_basis: u64,
    pub parsed: std::sync::OnceLock<forecast::Samples>,
}

/// How long a forecast basis read from the record is reused.
pub const BASIS_REUSE_MS: Millis = 60_000;

#[derive(Default)]
struct Pending {
    /// (campaign, hour, outcome) -> decisions: keyed by the catalog's own `Arc`, so noting a
    /// sampled decision copies no id (the texts are made once per flush).
    outcomes: HashMap<(ById, Millis, Outcome), i64>,
    prices: HashMap<(ById, Millis, i64), i64>,
    requests: Vec<(String, Millis, String, String)>,
    /// Sampled decisions per hour since the last flush.
    decisions: BTreeMap<Millis, i64>,
    /// What a failed flush left to write again.
    unwritten: InsightBatch,
}

/// A campaign compared and hashed by its id.
#[derive(Clone)]
struct ById(Arc<Campaign>);

impl PartialEq for ById {
    fn eq(&self, other: &Self) -> bool {
        self.0.id == other.0.id
    }
}

impl Eq for ById {}

impl std::hash::Hash for ById {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.id.hash(state)
    }
}

impl Insight {
    pub fn new(
        rate: f64,
        record: Arc<Record>,
        catalog: Arc<Catalog>,
        reach: Arc<ReachKey>,
        clock: SharedClock,
    ) -> Self {
        Self {
            rate: std::sync::atomic::AtomicU64::new(rate.to_bits()),
            record,
            catalog,
            reach,
            clock,
            pending: Mutex::new(Pending::default()),
            flushing: tokio::sync::Mutex::new(()),
            pruned_at: AtomicI64::new(Millis::MIN / 2),
            forecasting: Arc::new(tokio::sync::Semaphore::new(1)),
            basis: Mutex::new(None),
            erasures: AtomicU64::new(0),
        }
    }

    pub fn rate(&self) -> f64 {
        f64::from_bits(self.rate.load(Ordering::Relaxed))
    }

    /// A new sample rate from now on (counts already taken keep theirs).
    pub fn set_rate(&self, rate: f64) {
        self.rate
            .store(rate.clamp(0.0, 1.0).to_bits(), Ordering::Relaxed);
    }

    /// Whether this decision is sampled (one draw of the thread's generator).
    pub fn sample(&self) -> bool {
        let rate = self.rate();
        rate >= 1.0 || (rate > 0.0 && rand::thread_rng().gen::<f64>() < rate)
    }

    /// Notes one sampled decision: `request` as decided on (without consent: its contextual
    /// signals only), whether the user consented (a keyed hash is kept only then), the ads
    /// the session had been served, the decision and every matching campaign's outcome.
    pub fn note(
        &self,
        request: &SlotRequest,
        personalized: bool,
        session_served: u32,
        decision: &Decision<'_>,
        explained: &[Explained<'_>],
        now_ms: Millis,
    ) {
        let hour = now_ms - now_ms.rem_euclid(HOUR_MS);
        // What beating the cheapest slot of this decision would have taken, in the service
        // currency (every bid is compared in it; a delivery report converts it back).
        let cleared = decision
            .placements
            .iter()
            .map(|p| p.clearing_service_cpm_micros)
            .filter(|cpm| *cpm > 0)
            .min()
            .map(step_up);
        let sample = SampledRequest {
            statuses: request.statuses,
            session_served,
            context: request.context.clone(),
        };
        let json = serde_json::to_string(&sample).unwrap_or_default();
        let user_key = if personalized {
            self.reach.of(request.user.as_str())
        } else {
            String::new()
        };
        let id = crate::domain::ids::new_decision_id();
        let mut pending = self.pending.lock();
        *pending.decisions.entry(hour).or_default() += 1;
        for e in explained {
            let campaign = ById(e.campaign.clone());
            if let (Outcome::Lost(LostBy::Outbid), Some(cpm)) = (e.outcome, cleared) {
                *pending
                    .prices
                    .entry((campaign.clone(), hour, cpm))
                    .or_default() += 1;
            }
            *pending
                .outcomes
                .entry((campaign, hour, e.outcome))
                .or_default() += 1;
        }
        // Bounded while the record is away: a forecast replays at most this many anyway.
        if pending.requests.len() < FORECAST_REQUESTS as usize {
            pending.requests.push((id, now_ms, user_key, json));
        }
    }

    /// Forgets `user_keys`' samples still pending and runs `delete` (of what the record holds)
    /// with no flush in flight: one that took them before would write them after the delete.
    pub async fn forgetting<T>(
        &self,
        user_keys: &std::collections::HashSet<String>,
        delete: impl std::future::Future<Output = T>,
    ) -> T {
        let _no_flush = self.flushing.lock().await;
        self.forget_users(user_keys);
        delete.await
    }

    /// Drops the noted samples of the users with these keyed hashes (erased), and the basis
    /// kept for forecasts (read again from the record, without them).
    fn forget_users(&self, user_keys: &std::collections::HashSet<String>) {
        {
            let mut basis = self.basis.lock();
            self.erasures.fetch_add(1, Ordering::SeqCst);
            *basis = None;
        }
        let mut pending = self.pending.lock();
        pending
            .requests
            .retain(|(_, _, key, _)| !user_keys.contains(key));
        pending
            .unwritten
            .requests
            .retain(|(_, _, key, _)| !user_keys.contains(key));
    }

    /// Writes what was noted since the last flush. The campaigns that could not serve at all
    /// (not active, no approved creative) get their outcome for every decision sampled since,
    /// as the catalog is now. Kept for the next flush if the record cannot take it.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let _one = self.flushing.lock().await;
        let Pending {
            outcomes,
            prices,
            requests,
            decisions,
            unwritten: mut batch,
        } = std::mem::take(&mut *self.pending.lock());
        for ((campaign, hour, outcome), n) in outcomes {
            *batch
                .outcomes
                .entry((campaign.0.id.to_string(), hour, outcome.code()))
                .or_default() += n;
        }
        for ((campaign, hour, cpm), n) in prices {
            *batch
                .prices
                .entry((campaign.0.id.to_string(), hour, cpm))
                .or_default() += n;
        }
        batch.requests.extend(requests);
        if !decisions.is_empty() {
            let snapshot = self.catalog.snapshot();
            let servable: std::collections::HashSet<&str> = snapshot
                .servable
                .iter()
                .map(|s| s.campaign.id.as_str())
                .collect();
            for (hour, n) in &decisions {
                *batch
                    .outcomes
                    .entry((String::new(), *hour, DECISION.to_owned()))
                    .or_default() += n;
                for campaign in snapshot
                    .campaigns()
                    .filter(|c| !servable.contains(c.id.as_str()))
                {
                    let why = snapshot.unservable(campaign);
                    *batch
                        .outcomes
                        .entry((
                            campaign.id.to_string(),
                            *hour,
                            Outcome::NotEligible(why).code(),
                        ))
                        .or_default() += n;
                }
            }
        }
        if !batch.is_empty() {
            if let Err(err) = self.record.write_insight(&batch).await {
                let mut pending = self.pending.lock();
                let unwritten = &mut pending.unwritten;
                for (key, n) in batch.outcomes {
                    *unwritten.outcomes.entry(key).or_default() += n;
                }
                for (key, n) in batch.prices {
                    *unwritten.prices.entry(key).or_default() += n;
                }
                unwritten.requests.extend(batch.requests);
                let excess = unwritten
                    .requests
                    .len()
                    .saturating_sub(FORECAST_REQUESTS as usize);
                unwritten.requests.drain(..excess);
                return Err(err);
            }
        }
        let now = self.clock.now_ms();
        if now - self.pruned_at.load(Ordering::SeqCst) >= 60_000 {
            self.pruned_at.store(now, Ordering::SeqCst);
            self.record.prune_sampled_requests(now - BASIS_MS).await?;
        }
        Ok(())
    }

    /// Flushes every [`FLUSH_EVERY`] until `shutdown`, then once more.
    pub async fn run(self: Arc<Self>, mut shutdown: Shutdown) {
        loop {
            tokio::select! {
                _ = shutdown.recv() => break,
                _ = tokio::time::sleep(FLUSH_EVERY) => {}
            }
            if let Err(err) = self.flush().await {
                tracing::warn!(error = %err.report(), "insight samples not written; retrying");
            }
        }
        if let Err(err) = self.flush().await {
            tracing::warn!(error = %err.report(), "insight samples not written at shutdown");
        }
    }

    /// Why `campaign` served or not in `[from_ms, to_ms)`, from the sampled decisions.
    pub async fn delivery(
        &self,
        campaign: &Campaign,
        from_ms: Millis,
        to_ms: Millis,
    ) -> Result<Delivery, StoreError> {
        self.flush().await?;
        let created = crate::clock::ms_from_datetime(campaign.created_at);
        let from_ms = from_ms.max(created - created.rem_euclid(HOUR_MS));
        let id = campaign.id.as_str();
        let all = self.record.delivery_counts("", from_ms, to_ms).await?;
        let mine = self.record.delivery_counts(id, from_ms, to_ms).await?;
        let prices = self.record.delivery_prices(id, from_ms, to_ms).await?;
        let sampled = all.get(DECISION).copied().unwrap_or(0);
        let count = |outcome: Outcome| mine.get(&outcome.code()).copied().unwrap_or(0);
        let lost: BTreeMap<&'static str, i64> = LostBy::ALL
            .into_iter()
            .map(|by| (by.as_str(), count(Outcome::Lost(by))))
            .collect();
        let won = count(Outcome::Won);
        let eligible = won + lost.values().sum::<i64>();
        let mut not_eligible: BTreeMap<&'static str, i64> = Ineligible::ALL
            .into_iter()
            .map(|why| (why.as_str(), count(Outcome::NotEligible(why))))
            .collect();
        let known: i64 = eligible + not_eligible.values().sum::<i64>();
        *not_eligible
            .get_mut(Ineligible::Targeting.as_str())
            .expect("every reason is listed") += (sampled - known).max(0);
        // Sampled in the service currency: reported in the campaign's own, as the least bid of
        // it worth what winners paid (rounded down, a bid of that much could still lose).
        let snapshot = self.catalog.snapshot();
        let exchange = snapshot
            .advertiser(&campaign.advertiser_id)
            .and_then(|a| snapshot.money().rate(&a.currency));
        let own = |cpm: Option<i64>| {
            cpm.zip(exchange)
                .map(|(cpm, rate)| rate.from_service_up(cpm))
        };
        let clearing = Percentiles {
            p50: own(percentile(&prices, 0.5)),
            p90: own(percentile(&prices, 0.9)),
        };
        let rate = self.rate();
        let scale = |n: i64| {
            if rate > 0.0 {
                (n as f64 / rate).round() as i64
            } else {
                0
            }
        };
        let summary = summary(sampled, eligible, won, &lost, &not_eligible, clearing.p50);
        Ok(Delivery {
            campaign_id: id.to_owned(),
            sample_rate: rate,
            sampled_decisions: sampled,
            eligible,
            won,
            lost,
            not_eligible,
            clearing_cpm_micros: clearing,
            estimated: Estimated {
                decisions: scale(sampled),
                eligible: scale(eligible),
                won: scale(won),
            },
            summary,
        })
    }
}

/// A clearing price as sampled: rounded up to the step, so never under what was paid (what a
/// bid must reach).
fn step_up(cpm: i64) -> i64 {
    cpm + (PRICE_STEP_MICROS - cpm.rem_euclid(PRICE_STEP_MICROS)) % PRICE_STEP_MICROS
}

/// The smallest price at or above which `share` of the decisions lie.
fn percentile(prices: &[(i64, i64)], share: f64) -> Option<i64> {
    let total: i64 = prices.iter().map(|(_, n)| n).sum();
    if total == 0 {
        return None;
    }
    let wanted = (total as f64 * share).ceil().max(1.0) as i64;
    let mut seen = 0;
    prices.iter().find_map(|(cpm, n)| {
        seen += n;
        (seen >= wanted).then_some(*cpm)
    })
}

/// One plain sentence for the console: the main reason the campaign did not serve.
fn summary(
    sampled: i64,
    eligible: i64,
    won: i64,
    lost: &BTreeMap<&'static str, i64>,
    not_eligible: &BTreeMap<&'static str, i64>,
    clearing_p50: Option<i64>,
) -> String {
    if sampled == 0 {
        return "no sampled decisions in this period yet".to_owned();
    }
    if eligible == 0 {
        let (reason, _) = not_eligible
            .iter()
            .max_by_key(|(_, n)| **n)
            .expect("reasons are listed");
        return format!(
            "eligible for none of {sampled} sampled requests, mostly because of {}",
            match *reason {
                "targeting" => "its targeting",
                "schedule" => "its schedule",
                "no_approved_creative" => "no approved creative",
                "currency" => "its currency having no exchange rate (money.rates)",
                _ => "its status",
            }
        );
    }
    let percent = |n: i64| (n as f64 * 100.0 / eligible as f64).round() as i64;
    let (reason, n) = lost
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(r, n)| (*r, *n))
        .expect("reasons are listed");
    if n == 0 {
        return format!("won all {won} of its eligible sampled requests");
    }
    let why = match reason {
        "outbid" => "to higher bids",
        "frequency_cap" => "to its frequency caps",
        "ad_load" => "to the ad-load policy (no room for an ad)",
        "pacing" => "to even pacing",
        "budget" => "to its spent budget",
        "hidden" => "to users who hid the advertiser",
        _ => "to another campaign of the same advertiser",
    };
    let mut sentence = format!(
        "won {}% of eligible requests; lost {}% {why}",
        percent(won),
        percent(n)
    );
    if let (Some(p50), "outbid") = (clearing_p50, reason) {
        // To the cent above (a step is a hundredth), as the figure it names.
        let cents = step_up(p50) / PRICE_STEP_MICROS;
        sentence.push_str(&format!(
            "; winners paid a median of {}.{:02} per 1,000",
            cents / 100,
            cents % 100
        ));
    }
    sentence
}

/// `GET /v1/campaigns/{id}/delivery`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Delivery {
    pub campaign_id: String,
    pub sample_rate: f64,
    /// Decisions sampled in the period (since the campaign was created).
    pub sampled_decisions: i64,
    /// Sampled decisions the campaign was eligible for: won plus every `lost`.
    pub eligible: i64,
    pub won: i64,
    #[schema(value_type = Object)]
    pub lost: BTreeMap<&'static str, i64>,
    #[schema(value_type = Object)]
    pub not_eligible: BTreeMap<&'static str, i64>,
    /// What winners paid (per 1,000 renders) in the sampled decisions it lost by bid.
    pub clearing_cpm_micros: Percentiles,
    /// The counts scaled by the sample rate: estimates of all decisions.
    pub estimated: Estimated,
    /// The main reason in one plain sentence.
    pub summary: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Percentiles {
    pub p50: Option<i64>,
    pub p90: Option<i64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Estimated {
    pub decisions: i64,
    pub eligible: i64,
    pub won: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_round_up_to_what_a_bid_must_reach() {
        assert_eq!(step_up(2_282_600), 2_290_000);
        assert_eq!(step_up(2_280_000), 2_280_000);
        assert_eq!(step_up(1), PRICE_STEP_MICROS);
        let lost: BTreeMap<&'static str, i64> = LostBy::ALL
            .into_iter()
            .map(|by| (by.as_str(), i64::from(by == LostBy::Outbid)))
            .collect();
        let said = summary(2, 2, 1, &lost, &BTreeMap::new(), Some(2_282_600));
        assert!(said.ends_with("a median of 2.29 per 1,000"), "{said}");
        let said = summary(2, 2, 1, &lost, &BTreeMap::new(), Some(2_280_000));
        assert!(said.ends_with("a median of 2.28 per 1,000"), "{said}");
    }
}
