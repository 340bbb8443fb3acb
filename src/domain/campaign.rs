//! Campaigns: what an advertiser buys. [`CampaignInput`] is the writable subset of the API
//! object (every field optional so that PATCH can send any subset); [`Campaign::create`] and
//! [`Campaign::update`] apply every rule of API.md and produce a valid campaign or a 422 code.

use crate::codes;
use serde::{Deserialize, Deserializer, Serialize};
use time::OffsetDateTime;

use super::advertiser::Advertiser;
use super::ids::{AdvertiserId, CampaignId};
use super::money::Money;
use super::targeting::Targeting;
use super::text::check_one_line;
use super::{Micros, ValidationError};

pub const MIN_BUDGET_MICROS: Micros = 1_000_000;
pub const MAX_BID_CPM_MICROS: Micros = 1_000_000_000;
/// The bid ceiling of a currency worth a tiny fraction of the service's (see
/// [`Campaign::bid_ceiling`]) stops here, far from where sums of prices could overflow.
pub const MAX_CONVERTED_BID_CPM_MICROS: Micros = 1_000_000_000_000_000;
pub const MAX_FREQUENCY_CAPS: usize = 4;
/// The longest window a frequency cap may have (a year): no cap reads a render older.
pub const MAX_CAP_WINDOW_S: u32 = 31_536_000;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CampaignStatus {
    Active,
    Paused,
    Archived,
}

/// What the API shows: the stored status, refined by schedule and budget while active.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EffectiveStatus {
    Active,
    Paused,
    Archived,
    Exhausted,
    Ended,
    Scheduled,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Pacing {
    #[default]
    Even,
    Asap,
}

#[derive(
    Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default, Hash, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Sponsorship,
    #[default]
    Auction,
    House,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Sponsorship => "sponsorship",
            Priority::Auction => "auction",
            Priority::House => "house",
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    #[default]
    Awareness,
    Chat,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    pub total_micros: Micros,
    #[serde(default)]
    pub daily_micros: Option<Micros>,
}

/// A rolling window: at most `max` renders in any `per_seconds` interval.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FrequencyCap {
    pub max: u32,
    pub per_seconds: u32,
}

impl FrequencyCap {
    pub const fn new(max: u32, per_seconds: u32) -> Self {
        Self { max, per_seconds }
    }
}

/// What ends a campaign for one user.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SuppressAfter {
    /// A user who started a conversation from one of the campaign's ads is not shown it again.
    Conversation,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatSettings {
    #[serde(default)]
    pub prefilled_text: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Campaign {
    pub id: CampaignId,
    pub advertiser_id: AdvertiserId,
    pub name: String,
    pub status: CampaignStatus,
    #[serde(
        serialize_with = "time::serde::rfc3339::serialize",
        deserialize_with = "utc"
    )]
    pub start_at: OffsetDateTime,
    #[serde(
        serialize_with = "time::serde::rfc3339::option::serialize",
        deserialize_with = "utc_option"
    )]
    pub end_at: Option<OffsetDateTime>,
    pub bid_cpm_micros: Micros,
    pub budget: Option<Budget>,
    pub pacing: Pacing,
    pub priority: Priority,
    pub targeting: Targeting,
    pub frequency_caps: Vec<FrequencyCap>,
    pub advertiser_caps: bool,
    pub objective: Objective,
    pub chat: Option<ChatSettings>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(default)]
    pub suppress_after: Option<SuppressAfter>,
}

/// The writable fields. Absent means "unchanged" (PATCH) or "default" (POST).
#[derive(Debug, Default, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CampaignInput {
    pub name: Option<String>,
    pub status: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub start_at: Option<OffsetDateTime>,
    #[serde(default, deserialize_with = "nullable")]
    pub end_at: Option<Option<Rfc3339>>,
    pub bid_cpm_micros: Option<Micros>,
    #[serde(default, deserialize_with = "nullable")]
    pub budget: Option<Option<Budget>>,
    pub pacing: Option<Pacing>,
    pub priority: Option<Priority>,
    pub targeting: Option<Targeting>,
    pub frequency_caps: Option<Vec<FrequencyCap>>,
    pub advertiser_caps: Option<bool>,
    pub objective: Option<Objective>,
    #[serde(default, deserialize_with = "nullable")]
    pub chat: Option<Option<ChatSettings>>,
    /// `"conversation"`, or null for none.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<SuppressAfter>)]
    pub suppress_after: Option<Option<SuppressAfter>>,
}

#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(transparent)]
pub struct Rfc3339(#[serde(with = "time::serde::rfc3339")] pub OffsetDateTime);

/// A stored time, read in UTC: campaigns written by builds that kept the sender's offset read
/// back as new ones are kept, so day arithmetic (pacing, reports) never sees another offset.
fn utc<'de, D: Deserializer<'de>>(deserializer: D) -> Result<OffsetDateTime, D::Error> {
    time::serde::rfc3339::deserialize(deserializer).map(|at| at.to_offset(time::UtcOffset::UTC))
}

fn utc_option<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<OffsetDateTime>, D::Error> {
    time::serde::rfc3339::option::deserialize(deserializer)
        .map(|at| at.map(|at| at.to_offset(time::UtcOffset::UTC)))
}

/// Distinguishes an explicit `null` (Some(None): clear it) from an absent field (None).
fn nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

impl Campaign {
    /// `money` prices the advertiser's currency (the bid ceiling depends on it).
    pub fn create(
        input: CampaignInput,
        advertiser: &Advertiser,
        money: &Money,
        now: OffsetDateTime,
    ) -> Result<Self, ValidationError> {
        let name = input
            .name
            .clone()
            .ok_or_else(|| ValidationError::new(codes::INVALID_NAME, "name is required"))?;
        if input.status.as_deref() == Some("archived") {
            return Err(ValidationError::new(
                codes::INVALID_STATUS,
                "a new campaign is active or paused",
            ));
        }
        let draft = Campaign {
            id: CampaignId::generate(),
            advertiser_id: advertiser.id.clone(),
            name,
            status: CampaignStatus::Active,
            start_at: now,
            end_at: None,
            bid_cpm_micros: 0,
            budget: None,
            pacing: Pacing::default(),
            priority: Priority::default(),
            targeting: Targeting::default(),
            frequency_caps: Vec::new(),
            advertiser_caps: false,
            objective: Objective::default(),
            chat: None,
            created_at: now,
            suppress_after: None,
        };
        draft.update(input, advertiser, money)
    }

    /// Applies a PATCH (or the POST body over defaults) and re-validates the whole campaign,
    /// so rules that span fields (schedule, budget vs priority) always hold.
    pub fn update(
        mut self,
        input: CampaignInput,
        advertiser: &Advertiser,
        money: &Money,
    ) -> Result<Self, ValidationError> {
        // What a bid may be depends on the exchange rate of the day: checked against it when
        // the bid, or what it is weighed with, is given, so that a rate moved since leaves the
        // campaign's other edits possible.
        let bid_given =
            input.bid_cpm_micros.is_some() || input.budget.is_some() || input.priority.is_some();
        if let Some(name) = input.name {
            self.name = name.trim().to_owned();
        }
        if let Some(status) = input.status {
            self.status = match status.as_str() {
                "active" => CampaignStatus::Active,
                "paused" => CampaignStatus::Paused,
                // As DELETE does: archived for good.
                "archived" => CampaignStatus::Archived,
                _ => {
                    return Err(ValidationError::new(
                        codes::INVALID_STATUS,
                        "status can be set to active, paused or archived",
                    ))
                }
            };
        }
        // Kept (and answered) in UTC, whatever offset the advertiser wrote.
        if let Some(start) = input.start_at {
            self.start_at = start.to_offset(time::UtcOffset::UTC);
        }
        if let Some(end) = input.end_at {
            self.end_at = end.map(|e| e.0.to_offset(time::UtcOffset::UTC));
        }
        if let Some(bid) = input.bid_cpm_micros {
            self.bid_cpm_micros = bid;
        }
        if let Some(budget) = input.budget {
            self.budget = budget;
        }
        if let Some(pacing) = input.pacing {
            self.pacing = pacing;
        }
        if let Some(priority) = input.priority {
            self.priority = priority;
        }
        // Targeting is checked when it is given: one an earlier build accepted (an interest kind
        // that no longer exists) must not stop every other edit of the campaign. Such an
        // interest never matches a request (the campaign's other interests still do).
        if let Some(targeting) = input.targeting {
            targeting.validate()?;
            self.targeting = targeting;
        }
        if let Some(caps) = input.frequency_caps {
            self.frequency_caps = caps;
        }
        if let Some(flag) = input.advertiser_caps {
            self.advertiser_caps = flag;
        }
        if let Some(objective) = input.objective {
            self.objective = objective;
        }
        if let Some(chat) = input.chat {
            self.chat = chat;
        }
        if let Some(suppress) = input.suppress_after {
            self.suppress_after = suppress;
        }
        self.validate(advertiser, money, bid_given)?;
        Ok(self)
    }

    /// The highest bid a campaign of `advertiser` may make: [`MAX_BID_CPM_MICROS`] of its own
    /// currency, or what that many micros of the service currency are worth in it if more (a
    /// currency worth a fraction of the service's would otherwise be capped near the reserve).
    /// A currency without a rate has no ceiling of its own: its campaigns do not serve until it
    /// has one, and a bid given meanwhile stays under the highest any currency has.
    pub fn bid_ceiling(advertiser: &Advertiser, money: &Money) -> Micros {
        money
            .rate(&advertiser.currency)
            .map_or(MAX_CONVERTED_BID_CPM_MICROS, |rate| {
                rate.from_service(MAX_BID_CPM_MICROS)
            })
            .clamp(MAX_BID_CPM_MICROS, MAX_CONVERTED_BID_CPM_MICROS)
    }

    /// `bid_given`: the bid is checked against the ceiling and the budget (see `update`).
    fn validate(
        &self,
        advertiser: &Advertiser,
        money: &Money,
        bid_given: bool,
    ) -> Result<(), ValidationError> {
        if self.name.is_empty() || self.name.chars().count() > 100 {
            return Err(ValidationError::new(
                codes::INVALID_NAME,
                "name must be 1-100 characters",
            ));
        }
        check_one_line("name", &self.name, codes::INVALID_NAME)?;
        if self.end_at.is_some_and(|end| end <= self.start_at) {
            return Err(ValidationError::new(
                codes::INVALID_SCHEDULE,
                "end_at must be after start_at",
            ));
        }
        let billed = self.priority != Priority::House;
        let ceiling = Self::bid_ceiling(advertiser, money);
        let over = bid_given && self.bid_cpm_micros > ceiling;
        if billed && (self.bid_cpm_micros < 1 || over) {
            return Err(ValidationError::new(
                codes::INVALID_BID,
                format!("bid_cpm_micros must be between 1 and {ceiling}"),
            ));
        }
        if !billed && self.bid_cpm_micros != 0 {
            return Err(ValidationError::new(
                codes::INVALID_BID,
                "house campaigns are never billed: bid_cpm_micros must be 0",
            ));
        }
        match (billed, self.budget) {
            (true, None) => {
                return Err(ValidationError::new(
                    codes::BUDGET_TOO_SMALL,
                    "budget.total_micros is required",
                ))
            }
            (_, Some(budget)) => validate_budget(budget)?,
            (false, None) => {}
        }
        // A budget that cannot pay for one render at the bid would win slots whose budget
        // hold is then refused: each one lost to every other campaign.
        let render = self.bid_cpm_micros.saturating_add(999) / 1000;
        let smallest = self
            .budget
            .map(|b| b.daily_micros.unwrap_or(b.total_micros).min(b.total_micros));
        if let Some(smallest) = smallest.filter(|s| billed && bid_given && *s < render) {
            return Err(ValidationError::new(
                codes::BUDGET_TOO_SMALL,
                format!(
                    "the budget ({smallest} micros) cannot pay for one render at the bid ({render} micros)"
                ),
            ));
        }
        if self.frequency_caps.len() > MAX_FREQUENCY_CAPS {
            return Err(ValidationError::new(
                codes::INVALID_FREQUENCY_CAP,
                format!("at most {MAX_FREQUENCY_CAPS} frequency caps"),
            ));
        }
        for cap in &self.frequency_caps {
            if !(1..=1000).contains(&cap.max) || !(60..=MAX_CAP_WINDOW_S).contains(&cap.per_seconds)
            {
                return Err(ValidationError::new(
                    codes::INVALID_FREQUENCY_CAP,
                    "each cap needs max in 1..1000 and per_seconds in 60..31536000",
                ));
            }
        }
        if self.objective == Objective::Chat && advertiser.chat_number.is_none() {
            return Err(ValidationError::new(
                codes::INVALID_OBJECTIVE,
                "a chat campaign needs an advertiser with a chat_number",
            ));
        }
        if let Some(chat) = &self.chat {
            if chat.prefilled_text.chars().count() > 500 {
                return Err(ValidationError::new(
                    codes::INVALID_CHAT,
                    "chat.prefilled_text is at most 500 characters",
                ));
            }
            check_one_line(
                "chat.prefilled_text",
                &chat.prefilled_text,
                codes::INVALID_CHAT,
            )?;
        }
        Ok(())
    }

    /// The read-only refinements of `active` that API.md lists.
    pub fn effective_status(&self, now: OffsetDateTime, spend: Spend) -> EffectiveStatus {
        match self.status {
            CampaignStatus::Paused => EffectiveStatus::Paused,
            CampaignStatus::Archived => EffectiveStatus::Archived,
            CampaignStatus::Active if now < self.start_at => EffectiveStatus::Scheduled,
            CampaignStatus::Active if self.end_at.is_some_and(|end| now >= end) => {
                EffectiveStatus::Ended
            }
            CampaignStatus::Active if !self.has_budget_left(spend) => EffectiveStatus::Exhausted,
            CampaignStatus::Active => EffectiveStatus::Active,
        }
    }

    pub fn has_budget_left(&self, spend: Spend) -> bool {
        match (self.priority, self.budget) {
            (Priority::House, _) | (_, None) => true,
            (_, Some(budget)) => {
                spend.total_micros < budget.total_micros
                    && budget
                        .daily_micros
                        .is_none_or(|daily| spend.today_micros < daily)
            }
        }
    }

    /// The least a billed campaign can pay per 1,000 renders: a render below it would be
    /// billed nothing (a price of 0 is the house tier's, which no budget check stops).
    pub const MIN_BILLED_CPM_MICROS: Micros = 1_000;

    /// Price of one render at a clearing CPM: micros per thousand, truncated (never rounds up
    /// against the advertiser).
    pub fn render_price(clearing_cpm_micros: Micros) -> Micros {
        clearing_cpm_micros / 1000
    }
}

fn validate_budget(budget: Budget) -> Result<(), ValidationError> {
    if budget.total_micros < MIN_BUDGET_MICROS {
        return Err(ValidationError::new(
            codes::BUDGET_TOO_SMALL,
            format!("budget.total_micros must be at least {MIN_BUDGET_MICROS}"),
        ));
    }
    if let Some(daily) = budget.daily_micros {
        if daily < MIN_BUDGET_MICROS {
            return Err(ValidationError::new(
                codes::BUDGET_TOO_SMALL,
                format!("budget.daily_micros must be at least {MIN_BUDGET_MICROS}"),
            ));
        }
        if daily > budget.total_micros {
            return Err(ValidationError::new(
                codes::INVALID_BUDGET,
                "budget.daily_micros cannot exceed total_micros",
            ));
        }
    }
    Ok(())
}

/// Spend of one campaign as the ledger knows it.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Spend {
    pub total_micros: Micros,
    pub today_micros: Micros,
}

/// The API object.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CampaignView<'a> {
    pub id: &'a CampaignId,
    pub advertiser_id: &'a AdvertiserId,
    pub name: &'a str,
    pub status: EffectiveStatus,
    #[serde(with = "time::serde::rfc3339")]
    pub start_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub end_at: Option<OffsetDateTime>,
    pub bid_cpm_micros: Micros,
    pub budget: Option<Budget>,
    pub pacing: Pacing,
    pub priority: Priority,
    pub targeting: &'a Targeting,
    pub frequency_caps: &'a [FrequencyCap],
    pub advertiser_caps: bool,
    pub objective: Objective,
    pub chat: Option<&'a ChatSettings>,
    pub suppress_after: Option<SuppressAfter>,
    pub spend: Spend,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl<'a> CampaignView<'a> {
    pub fn new(c: &'a Campaign, now: OffsetDateTime, spend: Spend) -> Self {
        Self {
            id: &c.id,
            advertiser_id: &c.advertiser_id,
            name: &c.name,
            status: c.effective_status(now, spend),
            start_at: c.start_at,
            end_at: c.end_at,
            bid_cpm_micros: c.bid_cpm_micros,
            budget: c.budget,
            pacing: c.pacing,
            priority: c.priority,
            targeting: &c.targeting,
            frequency_caps: &c.frequency_caps,
            advertiser_caps: c.advertiser_caps,
            objective: c.objective,
            chat: c.chat.as_ref(),
            suppress_after: c.suppress_after,
            spend,
            created_at: c.created_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::advertiser::NewAdvertiser;

    fn advertiser(chat: bool) -> Advertiser {
        NewAdvertiser {
            name: "A".into(),
            chat_number: chat.then(|| "+390612345678".into()),
            currency: "EUR".into(),
        }
        .into_advertiser(OffsetDateTime::UNIX_EPOCH, &Default::default())
        .unwrap()
        .0
    }

    fn input(json: serde_json::Value) -> CampaignInput {
        serde_json::from_value(json).unwrap()
    }

    fn valid() -> serde_json::Value {
        serde_json::json!({"name": "Winter", "bid_cpm_micros": 2_500_000,
            "budget": {"total_micros": 100_000_000, "daily_micros": 10_000_000}})
    }

    /// Targeting an earlier build accepted (an interest kind that no longer exists) does not
    /// stop other edits; setting it again is refused.
    #[test]
    fn a_stored_interest_of_a_retired_kind_leaves_other_edits_possible() {
        let owner = advertiser(false);
        let mut campaign = Campaign::create(
            input(valid()),
            &owner,
            &Money::default(),
            OffsetDateTime::UNIX_EPOCH,
        )
        .unwrap();
        campaign.targeting.interests = vec!["app:games".into()];
        let paused = campaign
            .clone()
            .update(
                input(serde_json::json!({"status": "paused"})),
                &owner,
                &Money::default(),
            )
            .unwrap();
        assert_eq!(paused.status, CampaignStatus::Paused);
        let again = serde_json::json!({"targeting": {"interests": ["app:games"]}});
        assert_eq!(
            campaign
                .update(input(again), &owner, &Money::default())
                .unwrap_err()
                .code,
            codes::INVALID_TARGETING
        );
    }

    /// The ceiling follows the exchange rate of the day: a rate moved since a bid was set
    /// leaves the campaign's other edits possible, and a bid set again meets today's ceiling.
    #[test]
    fn a_bid_over_a_ceiling_moved_since_leaves_other_edits_possible() {
        let yen = |rate: f64| {
            let rates = [("JPY".to_owned(), rate)].into_iter().collect();
            Money::new("EUR", &rates).unwrap()
        };
        let mut owner = advertiser(false);
        owner.currency = "JPY".into();
        let body = serde_json::json!({"name": "Yen", "bid_cpm_micros": 163_934_426_229_i64,
            "budget": {"total_micros": 1_000_000_000_000_i64}});
        let campaign = Campaign::create(
            input(body),
            &owner,
            &yen(0.0061),
            OffsetDateTime::UNIX_EPOCH,
        )
        .unwrap();
        // The yen is worth more now: its ceiling is 100,000 JPY.
        let renamed = campaign
            .clone()
            .update(
                input(serde_json::json!({"name": "Yen again"})),
                &owner,
                &yen(0.01),
            )
            .unwrap();
        assert_eq!(renamed.bid_cpm_micros, 163_934_426_229);
        for patch in [
            serde_json::json!({"bid_cpm_micros": 163_934_426_229_i64}),
            serde_json::json!({"budget": {"total_micros": 2_000_000_000_000_i64}}),
            serde_json::json!({"priority": "sponsorship"}),
        ] {
            let err = campaign
                .clone()
                .update(input(patch.clone()), &owner, &yen(0.01))
                .unwrap_err();
            assert_eq!(err.code, codes::INVALID_BID, "{patch}");
            assert!(err.message.contains("100000000000"), "{}", err.message);
        }
        // A currency worth a billionth of the service's is capped far from overflow.
        assert_eq!(
            Campaign::bid_ceiling(&owner, &yen(1e-9)),
            MAX_CONVERTED_BID_CPM_MICROS
        );
    }

    /// A budget under one render at the bid would win slots it cannot hold.
    #[test]
    fn a_budget_pays_for_at_least_one_render_at_the_bid() {
        let rates = [("JPY".to_owned(), 0.0061)].into_iter().collect();
        let money = Money::new("EUR", &rates).unwrap();
        let mut owner = advertiser(false);
        owner.currency = "JPY".into();
        let create = |bid: i64, total: i64, daily: Option<i64>| {
            let body = serde_json::json!({"name": "Yen", "bid_cpm_micros": bid,
                "budget": {"total_micros": total, "daily_micros": daily}});
            Campaign::create(input(body), &owner, &money, OffsetDateTime::UNIX_EPOCH)
                .map(drop)
                .map_err(|e| e.code)
        };
        // 100,000 JPY per 1,000: 100 JPY a render.
        assert_eq!(create(100_000_000_000, 100_000_000, None), Ok(()));
        assert_eq!(
            create(100_000_000_000, 99_999_999, None),
            Err(codes::BUDGET_TOO_SMALL)
        );
        assert_eq!(
            create(100_000_000_000, 1_000_000_000, Some(99_999_999)),
            Err(codes::BUDGET_TOO_SMALL)
        );
        assert!(create(100_000_000_001, 100_000_000, None).is_err());
        // In the service currency the smallest budget pays for a render at the highest bid.
        assert_eq!(
            Campaign::create(
                input(
                    serde_json::json!({"name": "E", "bid_cpm_micros": MAX_BID_CPM_MICROS,
                    "budget": {"total_micros": MIN_BUDGET_MICROS}})
                ),
                &advertiser(false),
                &Money::default(),
                OffsetDateTime::UNIX_EPOCH,
            )
            .map(drop)
            .map_err(|e| e.code),
            Ok(())
        );
    }

    fn code_of(patch: serde_json::Value) -> &'static str {
        let mut body = valid();
        body.as_object_mut()
            .unwrap()
            .extend(patch.as_object().unwrap().clone());
        Campaign::create(
            input(body),
            &advertiser(false),
            &Money::default(),
            OffsetDateTime::UNIX_EPOCH,
        )
        .unwrap_err()
        .code
        .as_str()
    }

    #[test]
    fn a_valid_campaign_gets_defaults() {
        let c = Campaign::create(
            input(valid()),
            &advertiser(false),
            &Money::default(),
            OffsetDateTime::UNIX_EPOCH,
        )
        .unwrap();
        assert_eq!(c.status, CampaignStatus::Active);
        assert_eq!(c.priority, Priority::Auction);
        assert_eq!(c.pacing, Pacing::Even);
    }

    #[test]
    fn every_rule_has_its_code() {
        use serde_json::json;
        assert_eq!(code_of(json!({"name": ""})), "invalid_name");
        assert_eq!(code_of(json!({"bid_cpm_micros": 0})), "invalid_bid");
        assert_eq!(
            code_of(json!({"budget": {"total_micros": 10}})),
            "budget_too_small"
        );
        assert_eq!(code_of(json!({"budget": null})), "budget_too_small");
        assert_eq!(
            code_of(json!({"budget": {"total_micros": 2_000_000, "daily_micros": 3_000_000}})),
            "invalid_budget"
        );
        assert_eq!(
            code_of(json!({"start_at": "2026-12-01T00:00:00Z", "end_at": "2026-11-01T00:00:00Z"})),
            "invalid_schedule"
        );
        assert_eq!(
            code_of(json!({"frequency_caps": [{"max": 0, "per_seconds": 3600}]})),
            "invalid_frequency_cap"
        );
        assert_eq!(
            code_of(json!({"frequency_caps": [{"max": 1, "per_seconds": 59}]})),
            "invalid_frequency_cap"
        );
        assert_eq!(
            code_of(
                json!({"frequency_caps": [{"max": 1, "per_seconds": 60}, {"max": 1, "per_seconds": 60},
                {"max": 1, "per_seconds": 60}, {"max": 1, "per_seconds": 60}, {"max": 1, "per_seconds": 60}]})
            ),
            "invalid_frequency_cap"
        );
        assert_eq!(code_of(json!({"objective": "chat"})), "invalid_objective");
        assert_eq!(code_of(json!({"status": "exhausted"})), "invalid_status");
        assert_eq!(
            code_of(json!({"targeting": {"countries": ["Italy"]}})),
            "invalid_targeting"
        );
    }

    #[test]
    fn unknown_and_privacy_fields_are_rejected() {
        let err = serde_json::from_value::<CampaignInput>(
            serde_json::json!({"name": "x", "contacts": []}),
        );
        assert!(err.is_err());
        let err = serde_json::from_value::<CampaignInput>(
            serde_json::json!({"targeting": {"message_keywords": ["pizza"]}}),
        );
        assert!(err.is_err());
    }

    #[test]
    fn effective_status_reflects_schedule_and_budget() {
        let c = Campaign::create(
            input(valid()),
            &advertiser(false),
            &Money::default(),
            OffsetDateTime::UNIX_EPOCH,
        )
        .unwrap();
        let later = OffsetDateTime::UNIX_EPOCH + time::Duration::days(1);
        assert_eq!(
            c.effective_status(later, Spend::default()),
            EffectiveStatus::Active
        );
        let spent = Spend {
            total_micros: 100_000_000,
            today_micros: 0,
        };
        assert_eq!(c.effective_status(later, spent), EffectiveStatus::Exhausted);
        let today = Spend {
            total_micros: 10_000_000,
            today_micros: 10_000_000,
        };
        assert_eq!(c.effective_status(later, today), EffectiveStatus::Exhausted);
        let early = OffsetDateTime::UNIX_EPOCH - time::Duration::days(1);
        assert_eq!(
            c.effective_status(early, Spend::default()),
            EffectiveStatus::Scheduled
        );
    }
}
