//! The slot-decision use case: decide (pure) on this node's last view of the user (or, for a
//! user it has not seen, on a new user), commit the reservations with one script that checks
//! the decision against the live state and, if it does not hold, answers that state to decide
//! again on (see `capping::recent`), then sign the tokens. The common decision is one round
//! trip. A store outage answers no slots, quickly: the feed must never wait for ads.
//!
//! The click-to-chat URL ([`chat_url`]) is percent-encoded by the `percent-encoding` crate.

use std::sync::Arc;
use std::time::Instant;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::capping::recent::RecentUsers;
use crate::capping::{self, Reservation, SessionState, UserState};
use crate::catalog::Catalog;
use crate::catalog::Snapshot;
use crate::clock::{utc_day, SharedClock};
use crate::config::{AdLoadSettings, ChatSettings};
use crate::domain::audience::Coarse;
use crate::domain::campaign::Objective;
use crate::domain::event::{ClientEvent, EventResult, EventStatus};
use crate::domain::ids::{AdvertiserId, CampaignId};
use crate::domain::slot::{Ad, AdAdvertiser, Cta, Slot, SlotRequest, SlotsResponse};
use crate::ledger::conversions::click_id;
use crate::ledger::served::ServedTally;
use crate::ledger::spend::Hold;
use crate::ledger::SpendBoard;
use crate::metrics::{DecisionOutcome, DecisionView, Metrics};
use crate::privacy::{self, state, state::CarriedSession};
use crate::selection::explain::{Explained, LostBy, Outcome};
use crate::selection::{self, Decision, DecisionInput, Placement};
use crate::store::{CommitOutcome, DecisionCommit, SessionValue, Store, UserView};
use crate::tokens::{Claims, TokenKeys};

/// A stale view costs one more attempt; concurrent decisions for one user are rare. After this
/// many attempts, serve nothing.
const COMMIT_ATTEMPTS: usize = 3;

pub struct Server {
    pub store: Arc<Store>,
    pub recent: Arc<RecentUsers>,
    pub catalog: Arc<Catalog>,
    pub spend: Arc<SpendBoard>,
    pub keys: Arc<TokenKeys>,
    pub clock: SharedClock,
    pub metrics: Arc<Metrics>,
    /// Slots served, for reports (written to the record by the exporter).
    pub served: Arc<ServedTally>,
    pub policy: AdLoadSettings,
    pub reserve_cpm_micros: i64,
    pub token_ttl_ms: i64,
    pub grace_ms: i64,
    pub shards: u32,
    pub chat: ChatSettings,
    /// Consent assumed for a request that carries none (`privacy.default_personalized`).
    pub default_personalized: bool,
    /// Sampled decisions go here.
    pub insight: Arc<crate::insight::Insight>,
}

impl Server {
    pub async fn slots(&self, request: &SlotRequest) -> SlotsResponse {
        let started = Instant::now();
        let result = if request.personalized.unwrap_or(self.default_personalized) {
            self.decide_and_commit(request)
                .await
                .map(|slots| SlotsResponse { slots, state: None })
        } else {
            Ok(self.decide_contextual(request))
        };
        let outcome = match &result {
            Ok(answer) if answer.slots.is_empty() => DecisionOutcome::Empty,
            Ok(_) => DecisionOutcome::Filled,
            Err(err) => {
                tracing::warn!(error = %err.report(), "decision without store: serving no slots");
                DecisionOutcome::Unavailable
            }
        };
        self.metrics.decision(outcome, started.elapsed());
        result.unwrap_or(SlotsResponse {
            slots: Vec::new(),
            state: None,
        })
    }

    /// A decision without consent to personalisation (see [`crate::privacy`]): on the request's
    /// contextual signals and the state it carries, with no per-user record read or written.
    /// Every slot served counts in the answered state as rendered now.
    fn decide_contextual(&self, request: &SlotRequest) -> SlotsResponse {
        let now_ms = self.clock.now_ms();
        let user = request.user.as_str();
        let session = request.session.as_deref();
        let (mut carried, session_state, request) = self.contextual_view(request, now_ms);
        let snapshot = self.catalog.snapshot();
        // The placements borrow what they were decided on; the state then gains them.
        let history = carried.user.clone();
        let input = self.input(&snapshot, &history, session_state, &request, now_ms);
        let (decision, explained) = self.decide(&input, self.insight.sample(), &mut decision_rng());
        let expires_ms = now_ms + self.token_ttl_ms;
        let planned = self.hold_budgets(&decision.placements, expires_ms + self.grace_ms);
        self.note(&input, false, &decision, explained, &planned);
        let stamp = capping::render_stamp(now_ms);
        for (_, p) in &planned {
            let campaign = &p.servable.campaign;
            carried
                .user
                .count_render(campaign.id.as_str(), campaign.advertiser_id.as_str(), stamp);
        }
        if let (Some(id), false) = (session, planned.is_empty()) {
            let after = selection::placement::advance(
                session_state,
                request.statuses,
                planned.iter().map(|(_, p)| p.position),
            );
            carried.session = Some(CarriedSession::new(id, after, now_ms));
        }
        let sealed = self.reseal(user, carried, now_ms);
        let shard = capping::shard_of(user, self.shards);
        let slots = planned
            .into_iter()
            .map(|(id, p)| self.slot(&request, shard, id, p, now_ms, expires_ms, false))
            .collect();
        SlotsResponse {
            slots,
            state: Some(sealed),
        }
    }

    async fn decide_and_commit(
        &self,
        request: &SlotRequest,
    ) -> Result<Vec<Slot>, crate::store::StoreError> {
        let user = request.user.as_str();
        let shard = capping::shard_of(user, self.shards);
        let session = request.session.as_deref();
        let mut rng = decision_rng();
        let sampled = self.insight.sample();
        let mut assumed = self.recent.assume(user, session, self.clock.now_ms());
        self.metrics.decision_view(match assumed.read_at_ms {
            Some(_) => DecisionView::Recent,
            None => DecisionView::AssumedNew,
        });
        for _ in 0..COMMIT_ATTEMPTS {
            let now_ms = self.clock.now_ms();
            let session_state = assumed
                .session
                .as_ref()
                .map(|stored| stored.state(now_ms))
                .unwrap_or_default();
            let snapshot = self.catalog.snapshot();
            let input = self.input(&snapshot, &assumed.state, session_state, request, now_ms);
            // A sampled decision is noted once it holds (a stale view's is decided again).
            let (decision, explained) = self.decide(&input, sampled, &mut rng);
            if decision.placements.is_empty() {
                // Answered without the store: no ad is never a cap or a price broken, and a view
                // stricter than the live state is bounded (see `capping::recent`). Not recording
                // the statuses passed only makes the session's next request more conservative.
                self.note(&input, true, &decision, explained, &[]);
                return Ok(Vec::new());
            }
            let expires_ms = now_ms + self.token_ttl_ms;
            // A reservation (of caps and of budget) holds until the last moment its token can
            // still render.
            let hold_until = expires_ms + self.grace_ms;
            let planned = self.hold_budgets(&decision.placements, hold_until);
            if planned.is_empty() {
                self.note(&input, true, &decision, explained, &planned);
                return Ok(Vec::new());
            }
            let session_after = SessionValue::of(
                selection::placement::advance(
                    session_state,
                    request.statuses,
                    planned.iter().map(|(_, p)| p.position),
                ),
                now_ms,
            );
            let commit = DecisionCommit {
                shard,
                user,
                session,
                session_seen: assumed.session.as_ref(),
                proof: selection::proof(
                    planned.iter().map(|(_, p)| *p),
                    &assumed.state,
                    self.policy.max_per_user_per_day,
                    now_ms,
                ),
                now_ms,
                day: utc_day(now_ms),
                reservations: planned
                    .iter()
                    .map(|(id, p)| Reservation {
                        decision_id: id.clone(),
                        campaign: p.servable.campaign.id.to_string(),
                        advertiser: p.servable.campaign.advertiser_id.to_string(),
                        expires_ms: hold_until,
                    })
                    .collect(),
                session_after,
                user_ttl_ms: capping::decision_ttl_ms(hold_until - now_ms),
            };
            let outcome = self.store.commit_decision(&commit).await;
            if !matches!(outcome, Ok(CommitOutcome::Committed)) {
                for (id, p) in &planned {
                    let campaign = &p.servable.campaign.id;
                    self.spend.release(id, campaign, p.price_micros, hold_until);
                }
            }
            match outcome? {
                CommitOutcome::Committed => {
                    self.note(&input, true, &decision, explained, &planned);
                    let slots = planned
                        .into_iter()
                        .map(|(id, p)| self.slot(request, shard, id, p, now_ms, expires_ms, true))
                        .collect();
                    let DecisionCommit {
                        reservations,
                        session_after,
                        ..
                    } = commit;
                    self.recent.committed(
                        user,
                        assumed,
                        reservations,
                        session.map(|id| (id, session_after)),
                        now_ms,
                    );
                    return Ok(slots);
                }
                CommitOutcome::Stale(live) => {
                    self.metrics.decision_conflict();
                    let UserView {
                        state,
                        session: stored,
                    } = *live;
                    assumed = self
                        .recent
                        .saw(&assumed, user, state, session, stored, now_ms);
                }
            }
        }
        Ok(Vec::new())
    }

    /// `POST /v1/slots/explain`: the decision the service would make for `request` and the
    /// outcome of every campaign, with no effect at all: the user's live state is read (or,
    /// without consent, the carried state opened), and nothing is held, reserved, counted,
    /// sampled or signed. Budget holds are not taken, so a campaign whose budget concurrent
    /// decisions have just held may be shown placed here.
    pub async fn explain(
        &self,
        request: &SlotRequest,
    ) -> Result<Explanation, crate::store::StoreError> {
        let now_ms = self.clock.now_ms();
        let user = request.user.as_str();
        let session = request.session.as_deref();
        let (user_state, session_state, request) =
            if request.personalized.unwrap_or(self.default_personalized) {
                let found = self
                    .store
                    .user_records(&crate::store::UserLocator {
                        shard: capping::shard_of(user, self.shards),
                        user,
                        now_ms,
                        advertisers: Vec::new(),
                        clicks: Vec::new(),
                    })
                    .await?;
                let session_state = found
                    .sessions
                    .iter()
                    .find(|s| session.is_some_and(|id| s.is_of(id)) && s.forget_after_ms > now_ms)
                    .map(|s| s.state)
                    .unwrap_or_default();
                (found.state, session_state, request.clone())
            } else {
                let (carried, session_state, contextual) = self.contextual_view(request, now_ms);
                (carried.user, session_state, contextual)
            };
        let snapshot = self.catalog.snapshot();
        let input = self.input(&snapshot, &user_state, session_state, &request, now_ms);
        let (decision, explained) = selection::decide_explained(&input, &mut decision_rng());
        let candidates = selection::explain::every_campaign(&input, explained)
            .into_iter()
            .map(|e| {
                let currency = snapshot
                    .advertiser(&e.campaign.advertiser_id)
                    .map(|a| a.currency.clone());
                let rate = currency.as_deref().and_then(|c| snapshot.money().rate(c));
                ExplainedCandidate {
                    campaign_id: e.campaign.id.to_string(),
                    outcome: e.outcome.kind(),
                    reason: e.outcome.reason(),
                    bid_cpm_micros: e.campaign.bid_cpm_micros,
                    currency,
                    bid_service_cpm_micros: rate.map(|r| r.to_service(e.campaign.bid_cpm_micros)),
                }
            })
            .collect();
        Ok(Explanation {
            slots: decision
                .placements
                .iter()
                .map(|p| ExplainedSlot {
                    position: p.position,
                    campaign_id: p.servable.campaign.id.to_string(),
                    creative_id: p.creative.id.to_string(),
                    price_micros: p.price_micros,
                })
                .collect(),
            candidates,
        })
    }

    /// What a decision of this server reads besides the user, the session and the request.
    fn input<'a>(
        &'a self,
        snapshot: &'a Snapshot,
        user: &'a UserState,
        session: SessionState,
        request: &'a SlotRequest,
        now_ms: i64,
    ) -> DecisionInput<'a> {
        DecisionInput {
            snapshot,
            budgets: &*self.spend,
            user,
            session,
            request,
            policy: self.policy,
            reserve_cpm_micros: self.reserve_cpm_micros,
            now_ms,
        }
    }

    /// What a forecast replays against: the catalog and budgets as they are now, this
    /// server's ad-load policy and floor, and the sample rate.
    pub fn forecast_market(&self) -> crate::insight::forecast::Market {
        crate::insight::forecast::Market {
            catalog: self.catalog.snapshot(),
            spend: self.spend.clone(),
            policy: self.policy,
            reserve_cpm_micros: self.reserve_cpm_micros,
            rate: self.insight.rate(),
        }
    }

    /// Budget first, atomically: a slot whose budget concurrent decisions have just taken is
    /// dropped here rather than served. Each slot kept gets its decision id.
    fn hold_budgets<'p, 'a>(
        &self,
        placements: &'p [Placement<'a>],
        hold_until: i64,
    ) -> Vec<(String, &'p Placement<'a>)> {
        placements
            .iter()
            .filter_map(|p| {
                match self
                    .spend
                    .try_hold(&p.servable.campaign, p.price_micros, hold_until)
                {
                    Hold::Refused => None,
                    hold => Some((self.spend.decision_id(hold), p)),
                }
            })
            .collect()
    }

    /// A request without consent as a decision sees it: the state it carries (or a user never
    /// seen), its session's state, and the request with its contextual signals only.
    fn contextual_view(
        &self,
        request: &SlotRequest,
        now_ms: i64,
    ) -> (state::Carried, capping::SessionState, SlotRequest) {
        let carried = request
            .state
            .as_deref()
            .and_then(|encoded| state::open(&self.keys, request.user.as_str(), encoded, now_ms))
            .unwrap_or_default();
        let session_state = carried.session_state(request.session.as_deref(), now_ms);
        let contextual = SlotRequest {
            context: privacy::contextual(&request.context),
            state: None,
            ..request.clone()
        };
        (carried, session_state, contextual)
    }

    /// Decides; a sampled decision is explained too (the same code, traced) for [`Self::note`].
    fn decide<'a>(
        &self,
        input: &DecisionInput<'a>,
        sampled: bool,
        rng: &mut SmallRng,
    ) -> (Decision<'a>, Option<Vec<Explained<'a>>>) {
        if sampled {
            let (decision, explained) = selection::decide_explained(input, rng);
            (decision, Some(explained))
        } else {
            (selection::decide(input, rng), None)
        }
    }

    /// Hands a sampled decision to insight (delivery diagnostics, forecasts).
    /// (`served`: the placements whose budget was held; one dropped there lost on budget.)
    fn note(
        &self,
        input: &DecisionInput<'_>,
        personalized: bool,
        decision: &Decision<'_>,
        explained: Option<Vec<Explained<'_>>>,
        served: &[(String, &Placement<'_>)],
    ) {
        if let Some(mut explained) = explained {
            for e in explained.iter_mut().filter(|e| e.outcome == Outcome::Won) {
                if !served
                    .iter()
                    .any(|(_, p)| p.servable.campaign.id == e.campaign.id)
                {
                    e.outcome = Outcome::Lost(LostBy::Budget);
                }
            }
            self.insight.note(
                input.request,
                personalized,
                input.session.served,
                decision,
                &explained,
                input.now_ms,
            );
        }
    }

    /// The state to answer: pruned to what the rules of today's catalog need, signed.
    fn reseal(&self, user: &str, mut carried: state::Carried, now_ms: i64) -> String {
        let snapshot = self.catalog.snapshot();
        carried.prune(
            now_ms,
            |id| {
                let id = CampaignId::parse(id)?;
                snapshot.cap_spec(&id).map(|spec| spec.campaign_keep)
            },
            |id| {
                AdvertiserId::parse(id)
                    .map(|id| snapshot.advertiser_keep(&id))
                    .unwrap_or_default()
            },
        );
        state::seal(&self.keys, user, &carried, now_ms)
    }

    /// The state `encoded` with the hides and reports of `events` that were counted (or had
    /// been: a retry must get its state again): those of slots served without personalisation
    /// to the state's user, the first such token's user. An invalid state counts as absent.
    pub fn carry_events(
        &self,
        encoded: &str,
        events: &[ClientEvent],
        results: &[EventResult],
    ) -> String {
        let now_ms = self.clock.now_ms();
        let hides: Vec<Claims> = events
            .iter()
            .zip(results)
            .filter(|(event, result)| {
                event.kind.hides()
                    && matches!(
                        result.status,
                        EventStatus::Accepted | EventStatus::Duplicate
                    )
            })
            .filter_map(|(event, _)| self.keys.verify(&event.token).ok())
            .filter(|claims| !claims.personalized)
            .collect();
        let Some(user) = hides.first().map(|claims| claims.user.clone()) else {
            // Nothing to add: the state as it came.
            return encoded.to_owned();
        };
        let mut carried =
            state::open(&self.keys, user.as_str(), encoded, now_ms).unwrap_or_default();
        for claims in hides.iter().filter(|claims| claims.user == user) {
            carried
                .user
                .hidden_until
                .insert(claims.advertiser.to_string(), now_ms + capping::HIDE_MS);
        }
        self.reseal(user.as_str(), carried, now_ms)
    }

    #[allow(clippy::too_many_arguments)]
    fn slot(
        &self,
        request: &SlotRequest,
        shard: u32,
        decision_id: String,
        placement: &Placement<'_>,
        now_ms: i64,
        expires_ms: i64,
        personalized: bool,
    ) -> Slot {
        let campaign = &placement.servable.campaign;
        let advertiser = &placement.servable.advertiser;
        let creative = placement.creative;
        self.metrics.slot_served(campaign.priority);
        let coarse = Coarse::of(&request.context);
        self.served
            .count(campaign.id.as_str(), creative.id.as_str(), &coarse, now_ms);
        let token = self.keys.sign(&Claims {
            decision_id: decision_id.clone(),
            user: request.user.clone(),
            campaign: campaign.id.clone(),
            creative: creative.id.clone(),
            advertiser: advertiser.id.clone(),
            price_micros: placement.price_micros,
            expires_at_ms: expires_ms,
            coarse,
            personalized,
        });
        let cta = match (campaign.objective, advertiser.chat_number.as_deref()) {
            (Objective::Chat, Some(number)) => {
                // The click id names the decision (unique, unguessable, bound to campaign and
                // advertiser by the token) and the user's shard, where the click is recorded.
                let click_id = click_id(shard, &decision_id);
                let text = campaign
                    .chat
                    .as_ref()
                    .map(|c| c.prefilled_text.as_str())
                    .unwrap_or("");
                Some(Cta {
                    kind: "chat",
                    label: creative.cta_label.clone(),
                    url: chat_url(&self.chat.url_template, number, text, &click_id),
                    click_id,
                })
            }
            _ => None,
        };
        Slot {
            position: placement.position,
            token,
            expires_at: crate::clock::datetime_from_ms(expires_ms),
            ad: Ad {
                creative_id: creative.id.to_string(),
                campaign_id: campaign.id.to_string(),
                advertiser: AdAdvertiser {
                    id: advertiser.id.to_string(),
                    name: advertiser.name.clone(),
                },
                format: creative.format.clone(),
                asset_url: creative.asset.url.clone(),
                width: creative.asset.width,
                height: creative.asset.height,
                duration_ms: creative.asset.duration_ms,
                headline: creative.headline.clone(),
                body: creative.body.clone(),
                label: "Sponsored",
                cta,
            },
        }
    }
}

/// `POST /v1/slots/explain`'s answer.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Explanation {
    pub slots: Vec<ExplainedSlot>,
    /// Every campaign of the catalog: placed first, then those that lost, then the rest.
    pub candidates: Vec<ExplainedCandidate>,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ExplainedSlot {
    pub position: u32,
    pub campaign_id: String,
    pub creative_id: String,
    pub price_micros: i64,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ExplainedCandidate {
    pub campaign_id: String,
    /// `placed`, `lost` or `not_eligible`.
    pub outcome: &'static str,
    /// Why it lost or was not eligible (the keys of the delivery answer's `lost` and
    /// `not_eligible`); null when placed.
    pub reason: Option<&'static str>,
    /// In `currency`, the advertiser's.
    pub bid_cpm_micros: i64,
    /// Null when its advertiser is gone.
    pub currency: Option<String>,
    /// The bid in `money.currency`, as the auction ranks it (rounded down); null when the
    /// currency has no exchange rate.
    pub bid_service_cpm_micros: Option<i64>,
}

/// A decision's randomness (ties between equal bids), seeded from the thread's generator:
/// `SmallRng::from_entropy` asks the kernel (a `getrandom` system call) on every decision.
fn decision_rng() -> SmallRng {
    SmallRng::seed_from_u64(rand::thread_rng().gen())
}

/// Fills the configured chat URL template: `{number}` without its '+', `{text}` and
/// `{click_id}` percent-encoded by the `percent-encoding` crate (RFC 3986 unreserved characters
/// pass through).
pub fn chat_url(template: &str, number: &str, text: &str, click_id: &str) -> String {
    template
        .replace("{number}", number.trim_start_matches('+'))
        .replace("{text}", &percent_encode(text))
        .replace("{click_id}", &percent_encode(click_id))
}

/// RFC 3986 unreserved characters (`A-Z a-z 0-9 - . _ ~`) pass through; every other byte of
/// the UTF-8 text is percent-encoded.
const NOT_UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn percent_encode(text: &str) -> String {
    utf8_percent_encode(text, NOT_UNRESERVED).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_urls_are_percent_encoded() {
        assert_eq!(
            chat_url(
                "https://wa.me/{number}?text={text}&ref={click_id}",
                "+390612345678",
                "Hi! I saw your ad & café",
                "c1.ab"
            ),
            "https://wa.me/390612345678?text=Hi%21%20I%20saw%20your%20ad%20%26%20caf%C3%A9&ref=c1.ab"
        );
        assert_eq!(
            percent_encode("A-z_0.9~ /?#+%\u{1F600}"),
            "A-z_0.9~%20%2F%3F%23%2B%25%F0%9F%98%80",
            "unreserved characters pass, every other byte is encoded"
        );
    }
}
