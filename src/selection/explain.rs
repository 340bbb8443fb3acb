//! Why each campaign did or did not get a slot in one decision. [`super::decide_explained`]
//! runs the decision itself with its candidates walk traced, then [`classify`] reads every
//! campaign's outcome back from the trace and from the one eligibility rule
//! (`super::verdict`), so an explanation can never disagree with the decision it explains.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde::Serialize;

use super::{Decision, DecisionInput};
use crate::domain::campaign::Campaign;

/// What one campaign got from one decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    Won,
    Lost(LostBy),
    NotEligible(Ineligible),
}

/// Eligible for the request, and still no slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LostBy {
    /// Another campaign bid more (or its bid is under the auction's floor).
    Outbid,
    FrequencyCap,
    /// The ad-load policy left no room for an ad in this request.
    AdLoad,
    /// Even pacing held it back from this decision.
    Pacing,
    Budget,
    /// The user hid the advertiser (or a conversation suppressed the campaign for them).
    Hidden,
    /// Another campaign of the same advertiser got the advertiser's one slot.
    AdvertiserOnce,
}

/// Not a candidate for the request at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ineligible {
    Targeting,
    Schedule,
    NoApprovedCreative,
    /// Not active (paused, archived, or its advertiser gone).
    Status,
    /// Its advertiser's currency has no exchange rate (`money.rates`): it cannot be priced.
    Currency,
}

impl LostBy {
    pub const ALL: [LostBy; 7] = [
        Self::Outbid,
        Self::FrequencyCap,
        Self::AdLoad,
        Self::Pacing,
        Self::Budget,
        Self::Hidden,
        Self::AdvertiserOnce,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Outbid => "outbid",
            Self::FrequencyCap => "frequency_cap",
            Self::AdLoad => "ad_load",
            Self::Pacing => "pacing",
            Self::Budget => "budget",
            Self::Hidden => "hidden",
            Self::AdvertiserOnce => "advertiser_once",
        }
    }
}

impl Ineligible {
    pub const ALL: [Ineligible; 5] = [
        Self::Targeting,
        Self::Schedule,
        Self::NoApprovedCreative,
        Self::Status,
        Self::Currency,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Targeting => "targeting",
            Self::Schedule => "schedule",
            Self::NoApprovedCreative => "no_approved_creative",
            Self::Status => "status",
            Self::Currency => "currency",
        }
    }
}

impl Outcome {
    /// `placed`, `lost` or `not_eligible` (the explain answer's `outcome`).
    pub fn kind(self) -> &'static str {
        match self {
            Self::Won => "placed",
            Self::Lost(_) => "lost",
            Self::NotEligible(_) => "not_eligible",
        }
    }

    /// The key under `lost` / `not_eligible` (`None` for a slot won).
    pub fn reason(self) -> Option<&'static str> {
        match self {
            Self::Won => None,
            Self::Lost(by) => Some(by.as_str()),
            Self::NotEligible(why) => Some(why.as_str()),
        }
    }

    /// One stable text per outcome (how the record stores it): `won`, `lost.outbid`, ...
    pub fn code(self) -> String {
        match self.reason() {
            None => "won".to_owned(),
            Some(reason) => format!("{}.{reason}", self.kind()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Explained<'a> {
    pub campaign: &'a Arc<Campaign>,
    pub outcome: Outcome,
}

/// The outcome of every campaign the index offers for the request, from the decision and the
/// trace of its candidates walk (`walked`: each campaign walked, with why it was not a
/// candidate). A campaign that is not eligible at all (schedule, targeting the index only
/// approximates: city, exact age) says so first, whatever else would also hold it back.
/// Campaigns the walk stopped before are ranked below the auction's cut-off (or not needed,
/// for house), so they are `outbid` (or `advertiser_once`) whatever else holds them back; with
/// no room for an ad at all, `ad_load`. Neither draws pacing nor reads budgets or the user.
pub fn classify<'a>(
    input: &DecisionInput<'a>,
    decision: &Decision<'a>,
    walked: &[(usize, Option<Outcome>)],
) -> Vec<Explained<'a>> {
    let snapshot = input.snapshot;
    let now = crate::clock::datetime_from_ms(input.now_ms);
    let walked: HashMap<usize, Option<Outcome>> = walked.iter().copied().collect();
    let won: HashSet<&str> = decision
        .placements
        .iter()
        .map(|p| p.servable.campaign.id.as_str())
        .collect();
    let placed_advertisers: HashSet<&str> = decision
        .placements
        .iter()
        .map(|p| p.servable.campaign.advertiser_id.as_str())
        .collect();
    let room = !super::positions(input).is_empty();
    snapshot
        .index
        .candidates(&input.request.context)
        .map(|i| {
            let servable = &snapshot.servable[i];
            let campaign = &servable.campaign;
            let outcome = if won.contains(campaign.id.as_str()) {
                Outcome::Won
            } else if let Some(reason) = not_eligible(campaign, input, now) {
                reason
            } else if let Some(Some(reason)) = walked.get(&i) {
                *reason
            } else if !room {
                Outcome::Lost(LostBy::AdLoad)
            } else if placed_advertisers.contains(campaign.advertiser_id.as_str()) {
                Outcome::Lost(LostBy::AdvertiserOnce)
            } else {
                Outcome::Lost(LostBy::Outbid)
            };
            Explained {
                campaign: &servable.campaign,
                outcome,
            }
        })
        .collect()
}

/// Schedule and targeting: the checks that do not depend on the user, money or the draw.
fn not_eligible(
    campaign: &Campaign,
    input: &DecisionInput<'_>,
    now: time::OffsetDateTime,
) -> Option<Outcome> {
    if !(campaign.start_at <= now && campaign.end_at.is_none_or(|end| now < end)) {
        Some(Outcome::NotEligible(Ineligible::Schedule))
    } else if !campaign.targeting.matches(&input.request.context) {
        Some(Outcome::NotEligible(Ineligible::Targeting))
    } else {
        None
    }
}

/// [`classify`] and every other campaign of the catalog, each with why it was no candidate:
/// not servable (status, no approved creative) or not matching the request's targeting.
pub fn every_campaign<'a>(
    input: &DecisionInput<'a>,
    classified: Vec<Explained<'a>>,
) -> Vec<Explained<'a>> {
    let snapshot = input.snapshot;
    let seen: HashSet<&str> = classified.iter().map(|e| e.campaign.id.as_str()).collect();
    let servable: HashSet<&str> = snapshot
        .servable
        .iter()
        .map(|s| s.campaign.id.as_str())
        .collect();
    let mut all = classified;
    let mut rest: Vec<Explained<'a>> = snapshot
        .campaigns()
        .filter(|c| !seen.contains(c.id.as_str()))
        .map(|campaign| Explained {
            campaign,
            outcome: Outcome::NotEligible(if servable.contains(campaign.id.as_str()) {
                Ineligible::Targeting
            } else {
                snapshot.unservable(campaign)
            }),
        })
        .collect();
    rest.sort_by(|a, b| a.campaign.id.cmp(&b.campaign.id));
    all.extend(rest);
    // Placed first, then lost, then not eligible (stable: rank order within each).
    all.sort_by_key(|e| match e.outcome {
        Outcome::Won => 0,
        Outcome::Lost(_) => 1,
        Outcome::NotEligible(_) => 2,
    });
    all
}
