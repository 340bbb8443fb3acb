//! Forecast before buying: what a proposed campaign would have got over the basis period, by
//! replaying the sampled requests through the same decision code with it added.
//!
//! The replay is the real `selection::decide` over the catalog plus the proposed campaign (with
//! an approved creative), in the order the requests came, on one simulated state per keyed
//! user: every slot it places counts against that user's caps and daily load, and against the
//! proposed campaign's budget (daily budgets per basis day, even pacing as an hourly share of
//! the day's). Competitors keep their bids, caps and pacing throttles as they are now. The
//! basis period stands for the flight, so the proposal's schedule is not replayed.
//!
//! A sample stands for `1 / sample_rate` requests: impressions and spend are scaled by that,
//! each user's impressions bounded by what their caps allow over the basis period (a user seen
//! in few samples is seen more often in reality, but never past a cap). Reach counts the users
//! of the sample (a lower bound). Requests without consent carry no keyed user: each counts as
//! a user of its own.
//!
//! It runs on a thread of its own at the lowest scheduling priority, so that it takes only
//! CPU that decisions leave idle; one forecast runs at a time, and forecasts within a minute
//! of each other replay the same basis (read once from the record).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use rand::rngs::SmallRng;
use rand::SeedableRng;
use serde::Serialize;

use super::{Insight, SampledRequest, BASIS_MS, FORECAST_REQUESTS};
use crate::capping::{render_stamp, UserState, DAY_MS};
use crate::clock::{utc_day, Millis};
use crate::config::AdLoadSettings;
use crate::domain::campaign::{Campaign, Pacing, Spend};
use crate::domain::ids::CampaignId;
use crate::domain::slot::SlotRequest;
use crate::domain::{Micros, UserId};
use crate::ledger::SpendBoard;
use crate::record::insight::StoredRequest;
use crate::selection::{self, Budgets, DecisionInput};
use crate::store::StoreError;

const HOUR_MS: Millis = 3_600_000;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Forecast {
    pub basis: Basis,
    pub sample_rate: f64,
    /// Requests whose targeting the campaign matches (estimated: scaled by the sample rate).
    pub matched_requests: i64,
    /// Estimated renders.
    pub impressions: i64,
    /// Users of the sample it reached (a lower bound of the real reach).
    pub reach: i64,
    pub spend_micros: Micros,
    /// Other campaigns that won slots in the requests it matched.
    pub competing_campaigns: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Basis {
    /// The first and last sampled request replayed (RFC 3339; null without any).
    pub from: Option<String>,
    pub to: Option<String>,
    pub sampled_requests: i64,
}

/// Everything the replay needs besides the samples.
pub struct Market {
    pub catalog: Arc<crate::catalog::Snapshot>,
    pub spend: Arc<SpendBoard>,
    pub policy: AdLoadSettings,
    pub reserve_cpm_micros: Micros,
    pub rate: f64,
}

impl Insight {
    /// The forecast of `proposed` (validated, not saved) over the newest sampled requests.
    pub async fn forecast(
        &self,
        proposed: Campaign,
        market: Market,
    ) -> Result<Forecast, StoreError> {
        let permit = self
            .forecasting
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::unavailable("forecasts are shut down"))?;
        let now = self.clock.now_ms();
        let reused = self
            .basis
            .lock()
            .as_ref()
            .filter(|(read_at, _)| now - read_at < super::BASIS_REUSE_MS && *read_at <= now)
            .map(|(_, basis)| basis.clone());
        let basis = match reused {
            Some(basis) => basis,
            None => {
                let erasures = self.erasures.load(std::sync::atomic::Ordering::SeqCst);
                self.flush().await?;
                let (stored, in_basis) = self
                    .record
                    .sampled_requests(now - BASIS_MS, FORECAST_REQUESTS)
                    .await?;
                let read = Arc::new(super::Basis {
                    stored,
                    in_basis,
                    parsed: std::sync::OnceLock::new(),
                });
                let mut kept = self.basis.lock();
                if self.erasures.load(std::sync::atomic::Ordering::SeqCst) == erasures {
                    *kept = Some((now, read.clone()));
                }
                drop(kept);
                read
            }
        };
        let (done, answer) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("forecast".into())
            .spawn(move || {
                let _permit = permit;
                lowest_priority();
                let samples = basis.parsed.get_or_init(|| Samples::parse(&basis.stored));
                let _ = done.send(replay(proposed, &market, samples, basis.in_basis));
            })
            .map_err(|e| StoreError::unavailable_from("forecast thread", e))?;
        answer
            .await
            .map_err(|_| StoreError::corrupt("the forecast thread ended without an answer"))
    }
}

/// The calling thread yields the CPU to every other thread that wants it: `SCHED_IDLE`, which
/// the scheduler preempts at once when any other thread wakes and places woken threads on as if
/// its CPU were idle. Nice 19 alone was not enough: in the load bench a forecast thread at nice
/// 19 still took 87% of a core beside a decision round at full load, whose rate fell by 16%.
#[cfg(target_os = "linux")]
fn lowest_priority() {
    // SAFETY: gettid, sched_setscheduler and setpriority only read their arguments; on Linux a
    // thread id names one thread for both calls.
    let failed = unsafe {
        let tid = libc::gettid();
        let param = libc::sched_param { sched_priority: 0 };
        libc::sched_setscheduler(tid, libc::SCHED_IDLE, &param) != 0
            && libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19) != 0
    };
    if failed {
        tracing::debug!(error = %std::io::Error::last_os_error(), "forecast thread keeps its priority");
    }
}

#[cfg(not(target_os = "linux"))]
fn lowest_priority() {}

/// What the proposed campaign has spent in the replay (scaled to all requests).
struct Simulated<'a> {
    real: &'a SpendBoard,
    proposed: &'a Campaign,
    total: Micros,
    by_day: HashMap<u32, Micros>,
    by_hour: HashMap<Millis, Micros>,
    day: u32,
    hour: Millis,
}

impl Budgets for Simulated<'_> {
    fn committed(&self, campaign: &CampaignId) -> Spend {
        if campaign != &self.proposed.id {
            return self.real.committed(campaign);
        }
        let today = self.by_day.get(&self.day).copied().unwrap_or(0);
        let daily = self.proposed.budget.and_then(|b| b.daily_micros);
        // Even pacing spends a day's budget over its hours: an hour's share used up reads as
        // the day's budget spent.
        let paced_out = match (self.proposed.pacing, daily) {
            (Pacing::Even, Some(daily)) => {
                self.by_hour.get(&self.hour).copied().unwrap_or(0) >= (daily + 23) / 24
            }
            _ => false,
        };
        Spend {
            total_micros: self.total,
            today_micros: if paced_out {
                daily.unwrap_or(today)
            } else {
                today
            },
        }
    }

    fn pacing_throttle(&self, campaign: &CampaignId) -> f64 {
        if campaign == &self.proposed.id {
            1.0
        } else {
            self.real.pacing_throttle(campaign)
        }
    }
}

/// Sampled requests ready to replay: parsed, in the order they came, each with the index of its
/// user among the sample's users (a request without a keyed user is a user of its own), so the
/// replay keeps its simulated users in a vector instead of maps keyed by strings.
pub struct Samples {
    /// When, whose, the ads its session had been served, and the request as decided on.
    requests: Vec<(Millis, usize, u32, SlotRequest)>,
    users: usize,
    /// Rows read, parsed or not: what each replayed request is scaled by.
    read: usize,
    /// The first and last request read.
    span: Option<(Millis, Millis)>,
}

impl Samples {
    /// Rows that do not parse (written by another build) are left out of the replay.
    pub fn parse(stored: &[StoredRequest]) -> Self {
        let mut users: HashMap<&str, usize> = HashMap::new();
        let mut next = 0;
        let anonymous = UserId::parse("forecast").expect("a valid user id");
        let requests = stored
            .iter()
            .filter_map(|row| {
                let sample = serde_json::from_str::<SampledRequest>(&row.request).ok()?;
                let user = if row.user_key.is_empty() {
                    next += 1;
                    next - 1
                } else {
                    *users.entry(&row.user_key).or_insert_with(|| {
                        next += 1;
                        next - 1
                    })
                };
                let request = SlotRequest {
                    user: anonymous.clone(),
                    session: None,
                    statuses: sample.statuses,
                    context: sample.context,
                    personalized: None,
                    state: None,
                };
                Some((row.at_ms, user, sample.session_served, request))
            })
            .collect();
        Self {
            requests,
            users: next,
            read: stored.len(),
            span: stored
                .first()
                .zip(stored.last())
                .map(|(f, l)| (f.at_ms, l.at_ms)),
        }
    }
}

/// The replay itself (pure: the forecast endpoint runs it on its own thread; benches call it).
/// `samples` is a uniform sample of the `in_basis` sampled requests of the basis period.
pub fn replay(proposed: Campaign, market: &Market, samples: &Samples, in_basis: u64) -> Forecast {
    let rate = market.rate.clamp(f64::MIN_POSITIVE, 1.0);
    // Each replayed request stands for this many requests.
    let scale = (in_basis.max(samples.read as u64) as f64 / samples.read.max(1) as f64) / rate;
    let mut proposed = proposed;
    proposed.start_at = time::OffsetDateTime::UNIX_EPOCH;
    proposed.end_at = None;
    let mut data = market.catalog.data();
    data.creatives.push(placeholder_creative(&proposed));
    data.campaigns.push(proposed.clone());
    let snapshot = crate::catalog::snapshot::Snapshot::build(data, market.catalog.money().clone());
    let mut rng = SmallRng::seed_from_u64(0x5eed);
    let mut users: Vec<UserState> = Vec::new();
    users.resize_with(samples.users, UserState::default);
    // Per user of the sample: slots won by the proposal, and what they cost (micros, unscaled).
    let mut won: Vec<(i64, Micros)> = vec![(0, 0); samples.users];
    let mut competing: HashSet<String> = HashSet::new();
    let mut matched = 0_i64;
    let mut budgets = Simulated {
        real: &market.spend,
        proposed: &proposed,
        total: 0,
        by_day: HashMap::new(),
        by_hour: HashMap::new(),
        day: 0,
        hour: 0,
    };
    for (at_ms, user, session_served, request) in &samples.requests {
        let (at_ms, user) = (*at_ms, *user);
        if !proposed.targeting.matches(&request.context) {
            continue;
        }
        matched += 1;
        budgets.day = utc_day(at_ms);
        budgets.hour = at_ms - at_ms.rem_euclid(HOUR_MS);
        let state = &users[user];
        let placed: Vec<(CampaignId, crate::domain::ids::AdvertiserId, Micros)> = {
            let input = DecisionInput {
                snapshot: &snapshot,
                budgets: &budgets,
                user: state,
                session: crate::capping::SessionState {
                    served: *session_served,
                    carry: 0,
                },
                request,
                policy: market.policy,
                reserve_cpm_micros: market.reserve_cpm_micros,
                now_ms: at_ms,
            };
            selection::decide(&input, &mut rng)
                .placements
                .iter()
                .map(|p| {
                    let c = &p.servable.campaign;
                    (c.id.clone(), c.advertiser_id.clone(), p.price_micros)
                })
                .collect()
        };
        let state = &mut users[user];
        let stamp = render_stamp(at_ms);
        for (campaign, advertiser, price) in placed {
            state.count_render(campaign.as_str(), advertiser.as_str(), stamp);
            if campaign == proposed.id {
                let entry = &mut won[user];
                entry.0 += 1;
                entry.1 += price;
                let scaled = (price as f64 * scale).round() as Micros;
                budgets.total += scaled;
                *budgets.by_day.entry(budgets.day).or_default() += scaled;
                *budgets.by_hour.entry(budgets.hour).or_default() += scaled;
            } else {
                competing.insert(campaign.to_string());
            }
        }
    }
    let span_ms = samples
        .span
        .map_or(1, |(first, last)| (last - first).max(1));
    // What a user's caps allow over the basis period.
    let per_user_cap = proposed
        .frequency_caps
        .iter()
        .map(|cap| {
            let per_ms = cap.per_seconds as i64 * 1000;
            cap.max as f64 * (span_ms as f64 / per_ms as f64).ceil().max(1.0)
        })
        .fold(f64::INFINITY, f64::min);
    let (mut impressions, mut spend) = (0.0_f64, 0.0_f64);
    for (wins, cost) in won.iter().filter(|(wins, _)| *wins > 0) {
        let estimated = (*wins as f64 * scale).min(per_user_cap);
        impressions += estimated;
        spend += *cost as f64 * estimated / *wins as f64;
    }
    if let Some(budget) = proposed.budget {
        let days = (span_ms as f64 / DAY_MS as f64).ceil().max(1.0);
        let mut cap = budget.total_micros as f64;
        if let Some(daily) = budget.daily_micros {
            cap = cap.min(daily as f64 * days);
        }
        if spend > cap && spend > 0.0 {
            impressions *= cap / spend;
            spend = cap;
        }
    }
    let at = |ms: Millis| crate::ledger::report::rfc3339(ms);
    Forecast {
        basis: Basis {
            from: samples.span.map(|(first, _)| at(first)),
            to: samples.span.map(|(_, last)| at(last)),
            sampled_requests: in_basis as i64,
        },
        sample_rate: market.rate,
        matched_requests: (matched as f64 * scale).round() as i64,
        impressions: impressions.round() as i64,
        reach: won.iter().filter(|(wins, _)| *wins > 0).count() as i64,
        spend_micros: spend.round() as Micros,
        competing_campaigns: competing.len() as i64,
    }
}

/// An approved creative for the proposal: a forecast assumes the campaign will have one.
fn placeholder_creative(campaign: &Campaign) -> crate::domain::creative::Creative {
    use crate::domain::creative::{Asset, Creative, CreativeStatus};
    Creative {
        id: crate::domain::ids::CreativeId::generate(),
        campaign_id: campaign.id.clone(),
        advertiser_id: campaign.advertiser_id.clone(),
        status: CreativeStatus::Approved,
        reject_reason: None,
        format: "image".into(),
        headline: String::new(),
        body: String::new(),
        cta_label: String::new(),
        asset: Asset {
            url: String::new(),
            sha256: String::new(),
            mime: "image/png".into(),
            width: 1080,
            height: 1920,
            duration_ms: None,
            bytes: 0,
        },
        created_at: campaign.created_at,
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    /// The calling thread's scheduling policy and nice value.
    fn priority() -> (i32, i32) {
        // SAFETY: both read the calling thread's settings (gettid names it for getpriority).
        unsafe {
            (
                libc::sched_getscheduler(0),
                libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t),
            )
        }
    }

    #[test]
    fn a_forecast_thread_runs_only_when_nothing_else_wants_the_cpu() {
        let before = priority();
        let forecast = std::thread::spawn(|| {
            super::lowest_priority();
            priority()
        })
        .join()
        .unwrap();
        assert!(
            forecast.0 == libc::SCHED_IDLE || forecast.1 == 19,
            "policy {} nice {}",
            forecast.0,
            forecast.1
        );
        assert_eq!(priority(), before, "only the forecast thread changes");
    }
}
