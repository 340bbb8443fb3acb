//! Pure decision logic: given the catalog snapshot, spend, the user's state and the request,
//! which ads go where and at what price. No I/O and no clock: everything arrives as arguments,
//! and randomness (auction ties, creative choice) comes from the caller's RNG.
//!
//! Order of work: [`placement`] decides how many ads fit and where; eligibility filters the
//! servable campaigns; then each position is filled by tier: sponsorship (no auction, pays its
//! bid), auction (second price with reserve), house (free filler only when nothing else fits).
//! An advertiser appears at most once per response.

pub mod auction;
pub mod pacing;
pub mod placement;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use rand::seq::SliceRandom;
use rand::Rng;

use crate::capping::{SessionState, UserState};
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
    /// What one render of this slot costs the advertiser (0 for house).
    pub price_micros: Micros,
}

#[derive(Debug)]
pub struct Decision<'a> {
    pub placements: Vec<Placement<'a>>,
    pub session_after: SessionState,
}

pub fn decide<'a>(input: &DecisionInput<'a>, rng: &mut impl Rng) -> Decision<'a> {
    let request = input.request;
    let quota = input
        .policy
        .max_per_session
        .saturating_sub(input.session.served)
        .min(
            input
                .user
                .daily_remaining(input.policy.max_per_user_per_day, input.now_ms),
        );
    let positions = placement::positions(&input.policy, input.session, request.statuses, quota);

    let mut placements = Vec::with_capacity(positions.len());
    if !positions.is_empty() {
        let mut candidates: Vec<&Servable> = input
            .snapshot
            .servable
            .iter()
            .filter(|s| eligible(s, input) && paced_in(s, input, rng))
            .collect();
        let mut used_advertisers = HashSet::new();
        for position in positions {
            candidates.retain(|s| !used_advertisers.contains(&s.campaign.advertiser_id));
            let Some((servable, clearing_cpm)) = pick(&candidates, input.reserve_cpm_micros, rng)
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

fn eligible(servable: &Servable, input: &DecisionInput<'_>) -> bool {
    let campaign = &servable.campaign;
    let now = crate::clock::datetime_from_ms(input.now_ms);
    campaign.start_at <= now
        && campaign.end_at.is_none_or(|end| now < end)
        && (campaign.priority != Priority::Auction
            || campaign.bid_cpm_micros >= input.reserve_cpm_micros)
        && campaign.has_budget_left(input.budgets.committed(&campaign.id))
        && campaign.targeting.matches(&input.request.context)
        && !input
            .user
            .is_hidden(campaign.advertiser_id.as_str(), input.now_ms)
        && input.user.caps_allow(campaign, input.now_ms)
}

/// Even pacing: the campaign takes part with its current throttle probability.
fn paced_in(servable: &Servable, input: &DecisionInput<'_>, rng: &mut impl Rng) -> bool {
    let campaign = &servable.campaign;
    campaign.pacing != Pacing::Even
        || rng.gen::<f64>() < input.budgets.pacing_throttle(&campaign.id)
}

/// The best candidate by tier and its clearing CPM.
fn pick<'a>(
    candidates: &[&'a Servable],
    reserve: Micros,
    rng: &mut impl Rng,
) -> Option<(&'a Servable, Micros)> {
    let tier = |priority| {
        candidates
            .iter()
            .copied()
            .filter(move |s| s.campaign.priority == priority)
    };
    let sponsorships: Vec<&Servable> = tier(Priority::Sponsorship).collect();
    if let Some(chosen) = sponsorships.choose(rng) {
        return Some((chosen, chosen.campaign.bid_cpm_micros));
    }
    let bids: Vec<auction::Bid<&Servable>> = tier(Priority::Auction)
        .map(|s| auction::Bid {
            item: s,
            advertiser: s.campaign.advertiser_id.as_str(),
            cpm_micros: s.campaign.bid_cpm_micros,
        })
        .collect();
    if let Some(won) = auction::run(bids, reserve, rng) {
        return Some((won.item, won.clearing_cpm_micros));
    }
    let house: Vec<&Servable> = tier(Priority::House).collect();
    house.choose(rng).map(|chosen| (*chosen, 0))
}
