//! Pure decision logic: given the catalog snapshot, spend, the user's state and the request,
//! which ads go where and at what price. No I/O and no clock: everything arrives as arguments,
//! and randomness (auction ties, creative choice) comes from the caller's RNG.
//!
//! Order of work: [`placement`] decides how many ads fit and where; eligibility filters the
//! servable campaigns; then each position is filled by tier: sponsorship (no auction, pays its
//! bid), auction (second price with reserve), house (free filler only when nothing else fits).
//! An advertiser appears at most once per response. Bids compete and meet the reserve in the
//! service currency; a winner pays in its own (see `domain::money`).

pub mod auction;
pub mod explain;
pub mod index;
pub mod pacing;
pub mod placement;

use std::collections::HashMap;
use std::sync::Arc;

// foldhash (hashbrown's default), not SipHash: a few inserts of catalog ids per decision.
use hashbrown::HashSet;
use rand::seq::SliceRandom;
use rand::Rng;

use crate::capping::{CapCheck, DecisionProof, SessionState, UserState};
use crate::catalog::snapshot::{Servable, Snapshot};
use crate::clock::Millis;
use crate::config::AdLoadSettings;
use crate::domain::campaign::{Campaign, Pacing, Priority, Spend};
use crate::domain::creative::Creative;
use crate::domain::ids::CampaignId;
use crate::domain::slot::SlotRequest;
use crate::domain::Micros;

/// What decisions need to know about money, per campaign.
pub trait Budgets {
    /// Spend to check budgets against (the ledger plus this node's outstanding commitments).
    fn committed(&self, campaign: &CampaignId) -> Spend;

    /// Probability that an even-paced campaign takes part in a decision (see [`pacing`]).
    fn pacing_throttle(&self, _campaign: &CampaignId) -> f64 {
        1.0
    }
}

impl Budgets for HashMap<CampaignId, Spend> {
    fn committed(&self, campaign: &CampaignId) -> Spend {
        self.get(campaign).copied().unwrap_or_default()
    }
}

pub struct DecisionInput<'a> {
    pub snapshot: &'a Snapshot,
    pub budgets: &'a dyn Budgets,
    pub user: &'a UserState,
    pub session: SessionState,
    pub request: &'a SlotRequest,
    pub policy: AdLoadSettings,
    pub reserve_cpm_micros: Micros,
    pub now_ms: Millis,
}

#[derive(Debug)]
pub struct Placement<'a> {
    pub position: u32,
    pub servable: &'a Servable,
    pub creative: &'a Arc<Creative>,
    /// What one render of this slot costs the advertiser (0 for house), in its currency.
    pub price_micros: Micros,
    /// The competing campaign whose bid set the price (second-price auctions).
    pub price_setter: Option<&'a Servable>,
    /// What the slot cleared at per 1,000 renders (0 for house), in the advertiser's currency.
    pub clearing_cpm_micros: Micros,
    /// The same in the service currency, which every campaign's bid is compared in.
    pub clearing_service_cpm_micros: Micros,
}

#[derive(Debug)]
pub struct Decision<'a> {
    pub placements: Vec<Placement<'a>>,
    pub session_after: SessionState,
}

pub fn decide<'a>(input: &DecisionInput<'a>, rng: &mut impl Rng) -> Decision<'a> {
    decide_traced(input, rng, None)
}

/// [`decide`], also answering why every campaign did or did not get a slot (see [`explain`]):
/// the same code, with the candidates walk traced.
pub fn decide_explained<'a>(
    input: &DecisionInput<'a>,
    rng: &mut impl Rng,
) -> (Decision<'a>, Vec<explain::Explained<'a>>) {
    let mut walked = Vec::new();
    let decision = decide_traced(input, rng, Some(&mut walked));
    let explained = explain::classify(input, &decision, &walked);
    (decision, explained)
}

fn decide_traced<'a>(
    input: &DecisionInput<'a>,
    rng: &mut impl Rng,
    trace: Option<&mut Vec<(usize, Option<explain::Outcome>)>>,
) -> Decision<'a> {
    let request = input.request;
    let positions = positions(input);

    let mut placements = Vec::with_capacity(positions.len());
    if !positions.is_empty() {
        let mut candidates = candidates(input, positions.len(), rng, trace);
        let mut used_advertisers = HashSet::new();
        for position in positions {
            candidates.retain(|s| !used_advertisers.contains(&s.campaign.advertiser_id));
            let Some(Picked {
                servable,
                clearing_cpm,
                clearing_service_cpm,
                price_setter,
            }) = pick(&candidates, input.reserve_cpm_micros, rng)
            else {
                break;
            };
            used_advertisers.insert(servable.campaign.advertiser_id.clone());
            let creative = servable
                .creatives
                .choose(rng)
                .expect("servable campaigns have a creative");
            placements.push(Placement {
                position,
                servable,
                creative,
                price_micros: Campaign::render_price(clearing_cpm),
                price_setter,
                clearing_cpm_micros: clearing_cpm,
                clearing_service_cpm_micros: clearing_service_cpm,
            });
        }
    }
    let session_after = placement::advance(
        input.session,
        request.statuses,
        placements.iter().map(|p| p.position),
    );
    Decision {
        placements,
        session_after,
    }
}

/// Where this decision may place ads: the ad-load policy over the session and the user's
/// daily load.
fn positions(input: &DecisionInput<'_>) -> Vec<u32> {
    let quota = input
        .policy
        .max_per_session
        .saturating_sub(input.session.served)
        .min(
            input
                .user
                .daily_remaining(input.policy.max_per_user_per_day, input.now_ms),
        );
    placement::positions(&input.policy, input.session, input.request.statuses, quota)
}

/// What the live user state must still allow for `placements`, decided on the copy
/// `decided_on`, to be exactly the decision the live state gives: each winner and each
/// price-setting runner-up still eligible (the others can only have been outbid by them), the
/// daily load, and every reservation the copy counted still there (see [`DecisionProof`]).
pub fn proof<'p, 'a: 'p>(
    placements: impl IntoIterator<Item = &'p Placement<'a>>,
    decided_on: &UserState,
    daily_max: u32,
    now_ms: Millis,
) -> DecisionProof {
    let mut checks: Vec<CapCheck> = Vec::new();
    let mut slots = 0;
    for placement in placements {
        slots += 1;
        for servable in std::iter::once(placement.servable).chain(placement.price_setter) {
            if !checks
                .iter()
                .any(|c| c.campaign == servable.campaign.id.as_str())
            {
                checks.push(CapCheck::of(&servable.campaign));
            }
        }
    }
    DecisionProof {
        checks,
        slots,
        daily_max,
        held: decided_on.held(now_ms),
    }
}

/// The eligible campaigns the per-slot picks can need, walking the index in rank order:
/// every eligible sponsorship; auction campaigns down to the bid of the (slots + 1)-th distinct
/// advertiser beyond the sponsors (runner-ups set prices), ties at that bid included; house
/// campaigns only if the others cannot fill every slot. Picking from this set gives the same
/// outcome as picking from all eligible campaigns, without looking at the long tail.
/// With `trace`, each campaign walked is noted with why it is not a candidate (`None`: it is).
fn candidates<'a>(
    input: &DecisionInput<'a>,
    slots: usize,
    rng: &mut impl Rng,
    mut trace: Option<&mut Vec<(usize, Option<explain::Outcome>)>>,
) -> Vec<&'a Servable> {
    let snapshot = input.snapshot;
    let now = crate::clock::datetime_from_ms(input.now_ms);
    let mut out = Vec::new();
    let mut sponsors = HashSet::new();
    let mut bidders = HashSet::new();
    let mut cutoff: Option<Micros> = None;
    for i in snapshot.index.candidates(&input.request.context) {
        let servable = &snapshot.servable[i];
        let campaign = &servable.campaign;
        match campaign.priority {
            // Everything further is lower, and house is not needed either.
            Priority::Auction
                if cutoff.is_some_and(|bid| servable.bid_service_cpm_micros < bid) =>
            {
                break
            }
            Priority::House if sponsors.union(&bidders).count() >= slots => break,
            _ => {}
        }
        let excluded = match verdict(servable, input, now) {
            None if paced_in(servable, input, rng) => None,
            None => Some(explain::Outcome::Lost(explain::LostBy::Pacing)),
            reason => reason,
        };
        if let Some(trace) = trace.as_deref_mut() {
            trace.push((i, excluded));
        }
        if excluded.is_some() {
            continue;
        }
        out.push(servable);
        match campaign.priority {
            Priority::Sponsorship => {
                sponsors.insert(&campaign.advertiser_id);
            }
            Priority::Auction => {
                bidders.insert(&campaign.advertiser_id);
                let distinct = bidders.iter().filter(|a| !sponsors.contains(*a)).count();
                if cutoff.is_none() && distinct > slots {
                    cutoff = Some(servable.bid_service_cpm_micros);
                }
            }
            Priority::House => {}
        }
    }
    out
}

#[cfg(test)]
fn eligible(servable: &Servable, input: &DecisionInput<'_>, now: time::OffsetDateTime) -> bool {
    verdict(servable, input, now).is_none()
}

/// Why a servable campaign cannot take a slot in this decision (`None`: it can), the first
/// rule it breaks in this order. The one copy of the eligibility rule.
fn verdict(
    servable: &Servable,
    input: &DecisionInput<'_>,
    now: time::OffsetDateTime,
) -> Option<explain::Outcome> {
    use explain::{Ineligible, LostBy, Outcome};
    let campaign = &servable.campaign;
    let user = input.user;
    Some(
        if !(campaign.start_at <= now && campaign.end_at.is_none_or(|end| now < end)) {
            Outcome::NotEligible(Ineligible::Schedule)
        } else if campaign.priority != Priority::House
            && (servable.bid_service_cpm_micros < input.reserve_cpm_micros
                || campaign.bid_cpm_micros < Campaign::MIN_BILLED_CPM_MICROS)
        {
            // A sponsorship pays its own bid: below the reserve it would be served first for
            // less than any auction may clear at (under 1,000 micros of its own currency, for
            // nothing at all).
            Outcome::Lost(LostBy::Outbid)
        } else if !campaign.has_budget_left(input.budgets.committed(&campaign.id)) {
            Outcome::Lost(LostBy::Budget)
        } else if !campaign.targeting.matches(&input.request.context) {
            Outcome::NotEligible(Ineligible::Targeting)
        } else if user.is_hidden(campaign.advertiser_id.as_str(), input.now_ms)
            || user.is_suppressed(campaign.id.as_str(), input.now_ms)
        {
            Outcome::Lost(LostBy::Hidden)
        } else if !user.caps_allow(campaign, input.now_ms) {
            Outcome::Lost(LostBy::FrequencyCap)
        } else {
            return None;
        },
    )
}

/// Even pacing: the campaign takes part with its current throttle probability.
fn paced_in(servable: &Servable, input: &DecisionInput<'_>, rng: &mut impl Rng) -> bool {
    let campaign = &servable.campaign;
    campaign.pacing != Pacing::Even
        || rng.gen::<f64>() < input.budgets.pacing_throttle(&campaign.id)
}

/// What [`pick`] chose for one position.
struct Picked<'a> {
    servable: &'a Servable,
    /// In the winner's currency: what it pays per 1,000 renders.
    clearing_cpm: Micros,
    /// In the service currency.
    clearing_service_cpm: Micros,
    price_setter: Option<&'a Servable>,
}

/// The best candidate by tier, its clearing CPM and the competitor that set it. The auction
/// runs in the service currency; the winner pays the clearing price in its own, rounded down
/// but never under [`Campaign::MIN_BILLED_CPM_MICROS`] (a render is billed at least a micro)
/// nor over its bid.
fn pick<'a>(
    candidates: &[&'a Servable],
    reserve: Micros,
    rng: &mut impl Rng,
) -> Option<Picked<'a>> {
    let tier = |priority| {
        candidates
            .iter()
            .copied()
            .filter(move |s| s.campaign.priority == priority)
    };
    let sponsorships: Vec<&Servable> = tier(Priority::Sponsorship).collect();
    if let Some(chosen) = sponsorships.choose(rng) {
        return Some(Picked {
            servable: chosen,
            clearing_cpm: chosen.campaign.bid_cpm_micros,
            clearing_service_cpm: chosen.bid_service_cpm_micros,
            price_setter: None,
        });
    }
    let bids: Vec<auction::Bid<&Servable>> = tier(Priority::Auction)
        .map(|s| auction::Bid {
            item: s,
            advertiser: s.campaign.advertiser_id.as_str(),
            cpm_micros: s.bid_service_cpm_micros,
        })
        .collect();
    if let Some(won) = auction::run(bids, reserve, rng) {
        let bid = won.item.campaign.bid_cpm_micros;
        return Some(Picked {
            servable: won.item,
            clearing_cpm: won
                .item
                .rate
                .from_service(won.clearing_cpm_micros)
                .max(Campaign::MIN_BILLED_CPM_MICROS)
                .min(bid),
            clearing_service_cpm: won.clearing_cpm_micros,
            price_setter: won.price_setter,
        });
    }
    let house: Vec<&Servable> = tier(Priority::House).collect();
    house.choose(rng).map(|chosen| Picked {
        servable: chosen,
        clearing_cpm: 0,
        clearing_service_cpm: 0,
        price_setter: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::advertiser::Advertiser;
    use crate::domain::creative::Creative;
    use crate::domain::money::Money;
    use crate::domain::slot::SlotContext;
    use crate::domain::UserId;
    use crate::store::CatalogData;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use serde_json::json;

    const POLICY: AdLoadSettings = AdLoadSettings {
        first_after: 1,
        min_gap: 1,
        max_per_session: 5,
        max_per_user_per_day: 10,
    };

    /// What [`catalog`] prices with: EUR, and USD and JPY at rates of the day.
    fn money() -> Arc<Money> {
        Arc::new(
            Money::new(
                "EUR",
                &[
                    ("USD".to_owned(), 0.92),
                    ("JPY".to_owned(), 0.0061),
                    ("GBP".to_owned(), 1.17),
                ]
                .into(),
            )
            .unwrap(),
        )
    }

    /// A random catalog: `n` campaigns over `n / 3` advertisers, distinct bids (in the service
    /// currency), mixed tiers and targeting on two countries; in every third catalog the
    /// advertisers bill in EUR, USD and JPY in turn.
    fn catalog(seed: u64, n: usize) -> Snapshot {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut data = CatalogData::default();
        let advertisers = (n / 3).max(1);
        let money = money();
        let currency = |a: usize| match a % 3 {
            _ if !seed.is_multiple_of(3) => "EUR",
            0 => "EUR",
            1 => "USD",
            _ => "JPY",
        };
        for a in 0..advertisers {
            data.advertisers.push(
                serde_json::from_value::<Advertiser>(json!({"id": format!("adv_{a:016x}"), "name": "a", "chat_number": null,
                    "currency": currency(a), "api_key_hash": format!("{a}"), "created_at": "2026-01-01T00:00:00Z"}))
                .unwrap(),
            );
        }
        let mut bids: Vec<i64> = (0..n as i64).map(|i| 450_000 + i * 10_000).collect();
        bids.shuffle(&mut rng);
        for (i, bid) in bids.into_iter().enumerate() {
            // Sponsorships are random draws; leave them out of every other catalog so the
            // auction comparison below runs.
            let priority = match rng.gen_range(0..10) {
                0 if seed.is_multiple_of(2) => "sponsorship",
                1 => "house",
                _ => "auction",
            };
            let countries = match rng.gen_range(0..3) {
                0 => json!([]),
                1 => json!(["IT"]),
                _ => json!(["FR"]),
            };
            let advertiser = rng.gen_range(0..advertisers);
            let bid = money.rate(currency(advertiser)).unwrap().from_service(bid);
            let campaign = json!({"id": format!("cmp_{i:016x}"), "advertiser_id": format!("adv_{advertiser:016x}"),
                "name": "c", "status": "active", "start_at": "2026-01-01T00:00:00Z", "end_at": null,
                "bid_cpm_micros": if priority == "house" { 0 } else { bid }, "budget": null, "pacing": "asap", "priority": priority,
                "targeting": {"countries": countries}, "frequency_caps": [], "advertiser_caps": false, "objective": "awareness",
                "chat": null, "created_at": "2026-01-01T00:00:00Z"});
            data.campaigns
                .push(serde_json::from_value(campaign).unwrap());
            data.creatives.push(
                serde_json::from_value::<Creative>(json!({"id": format!("cre_{i:016x}"), "campaign_id": format!("cmp_{i:016x}"),
                    "advertiser_id": "adv_0000000000000000", "status": "approved", "reject_reason": null, "format": "image",
                    "headline": "h", "body": "", "cta_label": "c", "created_at": "2026-01-01T00:00:00Z",
                    "asset": {"url": "/a", "sha256": "x", "mime": "image/png", "width": 1080, "height": 1920, "duration_ms": null, "bytes": 1}}))
                .unwrap(),
            );
        }
        Snapshot::build(data, money)
    }

    /// A slot request of 10 statuses from `country`.
    fn request_in(country: &str) -> SlotRequest {
        SlotRequest {
            user: UserId::parse("u").unwrap(),
            session: None,
            statuses: 10,
            context: SlotContext {
                country: Some(country.into()),
                ..SlotContext::default()
            },
            personalized: None,
            state: None,
        }
    }

    /// A decision of a new session at a fixed time under the tests' policy.
    fn input_for<'a>(
        snapshot: &'a Snapshot,
        spend: &'a HashMap<CampaignId, Spend>,
        user: &'a UserState,
        request: &'a SlotRequest,
    ) -> DecisionInput<'a> {
        DecisionInput {
            snapshot,
            budgets: spend,
            user,
            session: SessionState::default(),
            request,
            policy: POLICY,
            reserve_cpm_micros: 500_000,
            now_ms: 1_795_000_000_000,
        }
    }

    /// Reference: the same per-slot picks over *every* eligible campaign.
    fn reference<'a>(
        input: &DecisionInput<'a>,
        slots: usize,
        rng: &mut impl Rng,
    ) -> Vec<(String, Micros)> {
        let now = crate::clock::datetime_from_ms(input.now_ms);
        let mut all: Vec<&Servable> = input
            .snapshot
            .servable
            .iter()
            .filter(|s| eligible(s, input, now))
            .collect();
        let mut out = Vec::new();
        for _ in 0..slots {
            let Some(picked) = pick(&all, input.reserve_cpm_micros, rng) else {
                break;
            };
            let s = picked.servable;
            let price = Campaign::render_price(picked.clearing_cpm) * 1000;
            out.push((s.campaign.id.to_string(), price));
            let advertiser = s.campaign.advertiser_id.clone();
            all.retain(|c| c.campaign.advertiser_id != advertiser);
        }
        out
    }

    fn service_bid(snapshot: &Snapshot, campaign: &Campaign) -> Micros {
        let advertiser = snapshot.advertiser(&campaign.advertiser_id).unwrap();
        let rate = snapshot.money().rate(&advertiser.currency).unwrap();
        rate.to_service(campaign.bid_cpm_micros)
    }

    /// A sampled decision is the same decision: explaining it draws nothing more and changes
    /// nothing, and its outcomes name exactly the campaigns placed as won.
    #[test]
    fn an_explained_decision_is_the_same_decision() {
        use explain::{Ineligible, LostBy, Outcome};
        for seed in 0..40 {
            let snapshot = catalog(seed, 60);
            let spend = HashMap::new();
            let user = UserState::default();
            let request = request_in(if seed % 2 == 0 { "IT" } else { "FR" });
            let mut input = input_for(&snapshot, &spend, &user, &request);
            let placed = |d: &Decision<'_>| -> Vec<(String, Micros, u32)> {
                d.placements
                    .iter()
                    .map(|p| {
                        (
                            p.servable.campaign.id.to_string(),
                            p.price_micros,
                            p.position,
                        )
                    })
                    .collect()
            };
            let plain = decide(&input, &mut StdRng::seed_from_u64(seed));
            let (explained, outcomes) = decide_explained(&input, &mut StdRng::seed_from_u64(seed));
            assert_eq!(placed(&plain), placed(&explained), "seed {seed}");
            let mut won: Vec<String> = outcomes
                .iter()
                .filter(|e| e.outcome == Outcome::Won)
                .map(|e| e.campaign.id.to_string())
                .collect();
            won.sort();
            let mut want: Vec<String> = placed(&plain).into_iter().map(|(id, _, _)| id).collect();
            want.sort();
            assert_eq!(won, want, "seed {seed}");
            for e in &outcomes {
                let campaign = &e.campaign;
                if !campaign.targeting.matches(&request.context) {
                    assert_eq!(e.outcome, Outcome::NotEligible(Ineligible::Targeting));
                } else if campaign.priority != Priority::House
                    && service_bid(&snapshot, campaign) < input.reserve_cpm_micros
                {
                    // Below the reserve, unless its advertiser's placement said so first.
                    assert!(
                        matches!(
                            e.outcome,
                            Outcome::Lost(LostBy::Outbid | LostBy::AdvertiserOnce)
                        ),
                        "{:?}",
                        e.outcome
                    );
                } else if e.outcome != Outcome::Won
                    && plain
                        .placements
                        .iter()
                        .any(|p| p.servable.campaign.advertiser_id == campaign.advertiser_id)
                {
                    assert_eq!(e.outcome, Outcome::Lost(LostBy::AdvertiserOnce));
                }
            }

            // No room for an ad: every campaign that could serve lost to the ad load.
            input.session = SessionState {
                served: POLICY.max_per_session,
                carry: 0,
            };
            let (none, outcomes) = decide_explained(&input, &mut StdRng::seed_from_u64(seed));
            assert!(none.placements.is_empty());
            assert!(outcomes.iter().all(|e| matches!(
                e.outcome,
                Outcome::Lost(LostBy::AdLoad) | Outcome::NotEligible(_)
            )));
            assert!(outcomes
                .iter()
                .any(|e| e.outcome == Outcome::Lost(LostBy::AdLoad)));
        }
    }

    #[test]
    fn early_exit_picks_exactly_what_a_full_scan_picks() {
        let mut compared = 0;
        for seed in 0..40 {
            let snapshot = catalog(seed, 60);
            let spend = HashMap::new();
            let user = UserState::default();
            let request = request_in(if seed % 2 == 0 { "IT" } else { "FR" });
            let input = input_for(&snapshot, &spend, &user, &request);
            let decision = decide(&input, &mut StdRng::seed_from_u64(seed));
            let got: Vec<(String, Micros)> = decision
                .placements
                .iter()
                .map(|p| (p.servable.campaign.id.to_string(), p.price_micros * 1000))
                .collect();
            let sponsored = got
                .iter()
                .filter(|(id, _)| {
                    snapshot
                        .campaign(&CampaignId::parse(id).unwrap())
                        .unwrap()
                        .priority
                        == Priority::Sponsorship
                })
                .count();
            let want = reference(&input, 5, &mut StdRng::seed_from_u64(seed));
            // Sponsorships and house are random draws; the auction part is deterministic with
            // distinct bids and must agree exactly, winners and prices.
            let auction = |v: &[(String, Micros)]| -> Vec<(String, Micros)> {
                v.iter()
                    .filter(|(id, _)| {
                        snapshot
                            .campaign(&CampaignId::parse(id).unwrap())
                            .unwrap()
                            .priority
                            == Priority::Auction
                    })
                    .cloned()
                    .collect()
            };
            assert_eq!(got.len(), want.len(), "seed {seed}");
            if sponsored == 0 {
                assert_eq!(auction(&got), auction(&want), "seed {seed}");
                compared += auction(&got).len();
            }
        }
        assert!(
            compared > 40,
            "the comparison must exercise auctions: {compared} auction slots compared"
        );
    }

    /// Bids of different currencies meet in the service currency, and the winner pays the
    /// runner-up's bid converted into its own, rounded down; a lone bidder pays the reserve in
    /// its own currency. (Compared as plain numbers, a bid in yen beat every bid in euros and
    /// paid a euro bid's figure in yen: a 160th of the price.)
    #[test]
    fn bids_of_different_currencies_meet_in_the_service_currency() {
        let advertiser = |id: &str, currency: &str| {
            serde_json::from_value::<Advertiser>(json!({"id": id, "name": "a", "chat_number": null,
                "currency": currency, "api_key_hash": id, "created_at": "2026-01-01T00:00:00Z"}))
            .unwrap()
        };
        let campaign = |id: &str, advertiser: &str, bid: Micros| -> Campaign {
            serde_json::from_value(json!({"id": id, "advertiser_id": advertiser,
                "name": "c", "status": "active", "start_at": "2026-01-01T00:00:00Z", "end_at": null,
                "bid_cpm_micros": bid, "budget": null, "pacing": "asap", "priority": "auction",
                "targeting": {}, "frequency_caps": [], "advertiser_caps": false, "objective": "awareness",
                "chat": null, "created_at": "2026-01-01T00:00:00Z"}))
            .unwrap()
        };
        let creative = |campaign: &str| -> Creative {
            serde_json::from_value(json!({"id": format!("cre_{}", &campaign[4..]), "campaign_id": campaign,
                "advertiser_id": "adv_0000000000000000", "status": "approved", "reject_reason": null, "format": "image",
                "headline": "h", "body": "", "cta_label": "c", "created_at": "2026-01-01T00:00:00Z",
                "asset": {"url": "/a", "sha256": "x", "mime": "image/png", "width": 1080, "height": 1920, "duration_ms": null, "bytes": 1}}))
            .unwrap()
        };
        let (eur, jpy) = ("cmp_000000000000000e", "cmp_000000000000000a");
        for (jpy_bid, winner, price, lone_price) in [
            // 300 JPY per 1,000 is 1.83 EUR: the bid of 2 EUR wins and pays 1.83 EUR (1,830
            // micros a render); the JPY campaign, alone for the next slot, pays the reserve of
            // 0.5 EUR in JPY (81.967213…: 81,967 micros a render).
            (300_000_000, eur, 1_830, 81_967),
            // 400 JPY is 2.44 EUR: the JPY bid wins and pays 2 EUR in JPY (327.868852… per
            // 1,000); the EUR campaign then pays the reserve.
            (400_000_000, jpy, 327_868, 500),
        ] {
            let data = CatalogData {
                advertisers: vec![
                    advertiser("adv_000000000000000e", "EUR"),
                    advertiser("adv_000000000000000a", "JPY"),
                ],
                campaigns: vec![
                    campaign(eur, "adv_000000000000000e", 2_000_000),
                    campaign(jpy, "adv_000000000000000a", jpy_bid),
                ],
                creatives: vec![creative(eur), creative(jpy)],
                ..CatalogData::default()
            };
            let snapshot = Snapshot::build(data, money());
            let (spend, user, request) = (HashMap::new(), UserState::default(), request_in("IT"));
            let input = input_for(&snapshot, &spend, &user, &request);
            let decision = decide(&input, &mut StdRng::seed_from_u64(1));
            let placed: Vec<(&str, Micros)> = decision
                .placements
                .iter()
                .map(|p| (p.servable.campaign.id.as_str(), p.price_micros))
                .collect();
            let other = if winner == eur { jpy } else { eur };
            assert_eq!(
                placed,
                [(winner, price), (other, lone_price)],
                "JPY bid {jpy_bid}"
            );
        }

        // A currency worth more than the service's: at the lowest reserve a lone bidder's
        // clearing price is 854 GBP micros per 1,000, which would bill a render nothing; it
        // pays the least billable price instead. A bid under that least price never serves,
        // though it is worth more than the reserve.
        for (bid, placed) in [(5_000, Some(1)), (900, None)] {
            let data = CatalogData {
                advertisers: vec![advertiser("adv_000000000000000b", "GBP")],
                campaigns: vec![campaign(eur, "adv_000000000000000b", bid)],
                creatives: vec![creative(eur)],
                ..CatalogData::default()
            };
            let snapshot = Snapshot::build(data, money());
            let (spend, user, request) = (HashMap::new(), UserState::default(), request_in("IT"));
            let mut input = input_for(&snapshot, &spend, &user, &request);
            input.reserve_cpm_micros = Campaign::MIN_BILLED_CPM_MICROS;
            let decision = decide(&input, &mut StdRng::seed_from_u64(1));
            assert_eq!(
                decision.placements.first().map(|p| p.price_micros),
                placed,
                "GBP bid {bid}"
            );
        }

        // A currency the service does not price does not serve at all.
        let data = CatalogData {
            advertisers: vec![advertiser("adv_000000000000000a", "CHF")],
            campaigns: vec![campaign(jpy, "adv_000000000000000a", 9_000_000)],
            creatives: vec![creative(jpy)],
            ..CatalogData::default()
        };
        let snapshot = Snapshot::build(data, money());
        assert!(snapshot.servable.is_empty());
        let unpriced = snapshot.campaigns().next().unwrap();
        assert_eq!(snapshot.unservable(unpriced), explain::Ineligible::Currency);
        // Its house campaign still serves: it is never billed.
        let mut house = campaign(eur, "adv_000000000000000a", 0);
        house.priority = Priority::House;
        let data = CatalogData {
            advertisers: vec![advertiser("adv_000000000000000a", "CHF")],
            campaigns: vec![house],
            creatives: vec![creative(eur)],
            ..CatalogData::default()
        };
        let snapshot = Snapshot::build(data, money());
        let (spend, user, request) = (HashMap::new(), UserState::default(), request_in("IT"));
        let input = input_for(&snapshot, &spend, &user, &request);
        let decision = decide(&input, &mut StdRng::seed_from_u64(1));
        assert_eq!(
            decision
                .placements
                .iter()
                .map(|p| (p.servable.campaign.id.as_str(), p.price_micros))
                .collect::<Vec<_>>(),
            [(eur, 0)]
        );
    }
}
