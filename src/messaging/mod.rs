//! Business-messaging rating: decides, for each message the messaging platform reports between a
//! business (advertiser) and a user, whether it is free, charged or refused, and how the stored
//! per-(advertiser, user) [`Conversation`] changes. Pure: no I/O, no clock; the caller passes
//! the message time and persists [`Rating::conversation_after`] (see [`Conversation::encode`]).
//! What a charged message costs comes from the dated rule set in force at its time
//! ([`rules::RuleBook`]); which tier it falls in is decided where the monthly count is kept,
//! atomically, by the store's scripts (the rule of [`rules::price_at`]).
//!
//! Rules (every interval is half-open: inside means `start <= at < end`):
//! - **Inbound** (user → business), a message or a call, is always free (reason `inbound`) and
//!   opens or resets the 24 h customer-service window `[at, at + 24h)`. A window still open at
//!   `at` is extended (its start kept); a late-delivered older inbound only moves the start back
//!   when its own window reaches the current one, and never shortens the end. A window that
//!   lapsed less than [`LATE_MS`] before a later inbound opened a new one is kept beside it, so
//!   a message reported late is rated against the window open at its own time (an older
//!   inbound reported late opens its own); the windows kept live as long as the stored state.
//! - An inbound carrying this advertiser's click-to-chat click id records a pending click and
//!   attributes the conversation to the click's campaign for [`ATTRIBUTION_MS`]. The first
//!   outbound at or after that inbound consumes the click: sent within 24 h of it, it opens the
//!   free entry point `[reply, reply + 72h)`; later, the click lapses.
//! - **Outbound** (business → user), first match wins:
//!   1. inside a free entry point (or opening one): templates are free; free-form is free when
//!      the service window is open, else refused (`outside_service_window`);
//!   2. free-form inside the service window → `service_window` (counted as a service message:
//!      a rule set may charge those beyond a monthly allowance);
//!   3. free-form outside → [`RatingError::OutsideServiceWindow`] (never charged);
//!   4. utility template inside the window → free when the rule set says so, else charged;
//!   5. any other template → charged, `rated`, billed under its category. A template outside
//!      the window and outside an entry point is *business-initiated* (the per-advertiser limit
//!      counts its user).
//! - Message shape: outbound needs `free_form` or `template`; a template needs a `category`; a
//!   free-form message must not have one. Inbound is `free_form` (or absent) or `call`, never
//!   with a category. A click id is ignored on outbound.
//! - Out-of-order delivery: a message is rated against the stored state as is, so the result
//!   depends only on (state, message). An outbound timed before the pending click inbound is not
//!   a reply to it, so it neither opens nor consumes the entry point.

mod price;
pub mod rules;

pub use price::{PriceRow, PriceTable};

use crate::codes::{self, Code};
use serde::{Deserialize, Serialize};

pub use crate::clock::Millis;
pub use crate::domain::Micros;

/// Length of the customer-service window opened by an inbound message or call.
pub const SERVICE_WINDOW_MS: Millis = 24 * 3_600_000;
/// The business must reply to a click inbound within this long for an entry point.
pub const REPLY_DEADLINE_MS: Millis = 24 * 3_600_000;
/// Length of a free entry point, counted from the business's first reply.
pub const ENTRY_POINT_MS: Millis = 72 * 3_600_000;
/// How late a message may be reported and still be rated against the window open at its time:
/// a conversation's state lives this long after the last instant it can change a rating, and a
/// lapsed window is kept beside a later one when it ended less than this before the later one
/// opened (without a click or entry point, a report later than that finds the state gone
/// anyway). A choice: the platform's rules fix none. Windows last at least 24 h and never
/// overlap, so at most one is kept.
pub const LATE_MS: Millis = 86_400_000;
/// Charged messages of a conversation count towards the clicked campaign for this long after
/// the click inbound (as long as a click stays attributable to conversions).
pub const ATTRIBUTION_MS: Millis = 30 * 86_400_000;
/// Messages are accepted with times in the years 2000-2999 only: every window end then stays
/// far from overflow, and a typo'd year cannot open a window for centuries.
pub const EARLIEST_MS: Millis = 946_684_800_000;
/// 3000-01-01T00:00:00Z.
pub const END_MS: Millis = 32_503_680_000_000;

/// True when `at_ms` lies in the years 2000-2999 (API.md: else 422 `invalid_date`).
pub fn valid_time(at_ms: Millis) -> bool {
    (EARLIEST_MS..END_MS).contains(&at_ms)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// User → business.
    Inbound,
    /// Business → user.
    Outbound,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    FreeForm,
    Template,
    /// Inbound only: the user called the business.
    Call,
}

/// Template category; also the billing category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Utility,
    Marketing,
    Authentication,
}

impl Category {
    pub const ALL: [Category; 3] = [
        Category::Utility,
        Category::Marketing,
        Category::Authentication,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Utility => "utility",
            Category::Marketing => "marketing",
            Category::Authentication => "authentication",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

/// Why a message got its rating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    Inbound,
    ServiceWindow,
    FreeEntryPoint,
    Rated,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Inbound => "inbound",
            Reason::ServiceWindow => "service_window",
            Reason::FreeEntryPoint => "free_entry_point",
            Reason::Rated => "rated",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        [
            Reason::Inbound,
            Reason::ServiceWindow,
            Reason::FreeEntryPoint,
            Reason::Rated,
        ]
        .into_iter()
        .find(|r| r.as_str() == name)
    }
}

/// A half-open interval of time `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    pub start: Millis,
    pub end: Millis,
}

impl Span {
    pub fn contains(&self, at: Millis) -> bool {
        self.start <= at && at < self.end
    }

    /// `self` joined with `new`: one span when they touch or overlap, else the later one (the
    /// free entry point is one span: an older disjoint one reported late is not kept).
    fn join(existing: Option<Span>, new: Span) -> Span {
        match existing {
            None => new,
            Some(old) if new.start <= old.end && old.start <= new.end => Span {
                start: old.start.min(new.start),
                end: old.end.max(new.end),
            },
            Some(old) if old.start > new.start => old,
            Some(_) => new,
        }
    }
}

/// The click-to-chat campaign a conversation came from, and until when its charges count there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attribution {
    pub campaign: String,
    pub until_ms: Millis,
}

/// What we store per (advertiser, user) conversation: only times and a campaign id, never
/// content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    /// The customer-service window opened last.
    pub window: Option<Span>,
    /// Customer-service windows that lapsed before `window` opened, oldest first, each ending
    /// less than [`LATE_MS`] before its start: messages reported late are rated by them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub earlier_windows: Vec<Span>,
    /// Set by an inbound with this advertiser's click id: the inbound's time (the 24 h reply
    /// deadline runs from it). Cleared by the first outbound at or after it, which either
    /// opens the entry point or lets it lapse.
    pub click_inbound_ms: Option<Millis>,
    /// The free entry point, once opened by a timely first reply.
    pub entry_point: Option<Span>,
    pub attribution: Option<Attribution>,
}

impl Conversation {
    /// Compact storage form: `2,<window start>,<window end>,<click>,<entry start>,<entry end>,
    /// <campaign>,<attributed until>`, decimal millis, empty for none. With earlier windows the
    /// form is `3,` and the same fields, then `<start>:<end>;…` oldest first; without, it stays
    /// the form earlier builds read (a rollback keeps the conversation).
    pub fn encode(&self) -> String {
        fn field(v: Option<Millis>) -> String {
            v.map(|ms| ms.to_string()).unwrap_or_default()
        }
        let earlier = self
            .earlier_windows
            .iter()
            .map(|w| format!("{}:{}", w.start, w.end))
            .collect::<Vec<_>>()
            .join(";");
        let (form, earlier) = if earlier.is_empty() {
            ('2', earlier)
        } else {
            ('3', format!(",{earlier}"))
        };
        format!(
            "{form},{},{},{},{},{},{},{}{earlier}",
            field(self.window.map(|w| w.start)),
            field(self.window.map(|w| w.end)),
            field(self.click_inbound_ms),
            field(self.entry_point.map(|e| e.start)),
            field(self.entry_point.map(|e| e.end)),
            self.attribution
                .as_ref()
                .map(|a| a.campaign.as_str())
                .unwrap_or(""),
            field(self.attribution.as_ref().map(|a| a.until_ms)),
        )
    }

    /// The customer-service window open at `at`, if any.
    pub fn window_at(&self, at: Millis) -> Option<Span> {
        self.window
            .iter()
            .chain(&self.earlier_windows)
            .find(|w| w.contains(at))
            .copied()
    }

    /// Adds the window an inbound opens, merged with every window it touches or overlaps; the
    /// latest is `window`, and earlier ones stay while they ended within [`LATE_MS`] of its start.
    fn open_window(&mut self, new: Span) {
        let mut spans: Vec<Span> = self.earlier_windows.drain(..).chain(self.window).collect();
        spans.push(new);
        spans.sort_by_key(|w| w.start);
        let mut merged: Vec<Span> = Vec::with_capacity(spans.len());
        for span in spans {
            match merged.last_mut() {
                Some(last) if span.start <= last.end => last.end = last.end.max(span.end),
                _ => merged.push(span),
            }
        }
        self.window = merged.pop();
        if let Some(latest) = self.window {
            let horizon = latest.start.saturating_sub(LATE_MS);
            merged.retain(|w| w.end > horizon);
        }
        self.earlier_windows = merged;
    }

    /// Inverse of [`encode`](Self::encode); never fails. Anything malformed decodes to the
    /// default (a new conversation), so a corrupt entry cannot block rating. The three-field
    /// form of earlier builds (`window end, click, entry end`; windows then had no start) reads
    /// with the start each span had by construction (end − 24 h, end − 72 h).
    pub fn decode(raw: &str) -> Conversation {
        Self::try_decode(raw).unwrap_or_default()
    }

    fn try_decode(raw: &str) -> Option<Conversation> {
        fn field(s: &str) -> Option<Option<Millis>> {
            if s.is_empty() {
                Some(None)
            } else {
                s.parse().ok().map(Some)
            }
        }
        fn span(start: Option<Millis>, end: Option<Millis>) -> Option<Option<Span>> {
            match (start, end) {
                (Some(start), Some(end)) => Some(Some(Span { start, end })),
                (None, None) => Some(None),
                _ => None,
            }
        }
        let parts: Vec<&str> = raw.split(',').collect();
        match parts.as_slice() {
            [w, c, e] => {
                let (w, c, e) = (field(w)?, field(c)?, field(e)?);
                Some(Conversation {
                    window: w.map(|end| Span {
                        start: end.saturating_sub(SERVICE_WINDOW_MS),
                        end,
                    }),
                    earlier_windows: Vec::new(),
                    click_inbound_ms: c,
                    entry_point: e.map(|end| Span {
                        start: end.saturating_sub(ENTRY_POINT_MS),
                        end,
                    }),
                    attribution: None,
                })
            }
            [form @ ("2" | "3"), ws, we, c, es, ee, campaign, until, earlier @ ..] => {
                let attribution = match (campaign.is_empty(), field(until)?) {
                    (true, None) => None,
                    (false, Some(until_ms)) if !campaign.contains([',', '|']) => {
                        Some(Attribution {
                            campaign: (*campaign).to_owned(),
                            until_ms,
                        })
                    }
                    _ => return None,
                };
                let window = span(field(ws)?, field(we)?)?;
                let earlier_windows = match (*form, earlier, window) {
                    ("2", [], _) => Vec::new(),
                    ("3", [list], Some(latest)) => {
                        let spans = list
                            .split(';')
                            .map(|pair| {
                                let (start, end) = pair.split_once(':')?;
                                let (start, end) = (start.parse().ok()?, end.parse().ok()?);
                                (start < end).then_some(Span { start, end })
                            })
                            .collect::<Option<Vec<_>>>()?;
                        // What `open_window` keeps: apart, in order, and before the latest.
                        let apart = spans
                            .iter()
                            .chain([&latest])
                            .zip(spans.iter().chain([&latest]).skip(1))
                            .all(|(a, b)| a.end < b.start);
                        apart.then_some(spans)?
                    }
                    _ => return None,
                };
                Some(Conversation {
                    window,
                    earlier_windows,
                    click_inbound_ms: field(c)?,
                    entry_point: span(field(es)?, field(ee)?)?,
                    attribution,
                })
            }
            _ => None,
        }
    }

    /// Last instant at which this state can still change a rating; `None` when empty. A pending
    /// click matters until its reply deadline. Stores keep the state [`LATE_MS`] longer.
    pub fn relevant_until_ms(&self) -> Option<Millis> {
        [
            self.window.map(|w| w.end),
            self.click_inbound_ms
                .map(|c| c.saturating_add(REPLY_DEADLINE_MS)),
            self.entry_point.map(|e| e.end),
            self.attribution.as_ref().map(|a| a.until_ms),
        ]
        .into_iter()
        .flatten()
        .max()
    }
}

/// One message as reported by the messaging platform (content never reaches us).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    pub direction: Direction,
    pub kind: Option<MessageKind>,
    pub category: Option<Category>,
    pub at_ms: Millis,
    /// Inbound only: the message carried a click id of *this* advertiser's click-to-chat ad
    /// (checked by the caller); the click's campaign.
    pub click_campaign: Option<&'a str>,
}

/// The rules a rating depends on that change between rule sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowRules {
    /// Utility templates inside the customer-service window are free.
    pub utility_free_in_window: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rating {
    pub reason: Reason,
    /// A template charged under its category (`category_billed`).
    pub chargeable: bool,
    /// The category to price when chargeable, else `None`.
    pub category_billed: Option<Category>,
    /// A free-form message inside the service window: a rule set may charge it beyond a
    /// monthly allowance.
    pub service: bool,
    /// A template outside the service window and outside an entry point: its user counts
    /// towards the advertiser's business-initiated limit.
    pub business_initiated: bool,
    /// The campaign whose click this conversation came from, if it still counts there.
    pub campaign: Option<String>,
    /// State to persist; equal to the input state when nothing changed.
    pub conversation_after: Conversation,
    /// End of the service window open at the message's time after it, else of the latest (for
    /// a message in no window).
    pub window_expires_ms: Option<Millis>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RatingError {
    /// Free-form outbound with no open service window (HTTP 422).
    OutsideServiceWindow,
    /// Inconsistent message shape; the payload is a stable snake_case code (HTTP 422):
    /// `missing_kind`, `template_without_category`, `free_form_with_category`,
    /// `inbound_template`, `inbound_with_category`, `outbound_call`.
    InvalidMessage(Code),
}

impl RatingError {
    /// Stable code for the API.
    pub fn code(&self) -> Code {
        match self {
            RatingError::OutsideServiceWindow => codes::OUTSIDE_SERVICE_WINDOW,
            RatingError::InvalidMessage(code) => *code,
        }
    }
}

impl std::fmt::Display for RatingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RatingError::OutsideServiceWindow => f.write_str(
                "outside_service_window: free-form messages need an open 24h service window",
            ),
            RatingError::InvalidMessage(code) => write!(f, "{code}: invalid message shape"),
        }
    }
}

impl std::error::Error for RatingError {}

/// Rates `message` against the stored `conversation` (see the module rules). On error the
/// stored state must be left unchanged.
pub fn rate(
    conversation: &Conversation,
    message: &Message<'_>,
    rules: WindowRules,
) -> Result<Rating, RatingError> {
    match message.direction {
        Direction::Inbound => rate_inbound(conversation.clone(), message),
        Direction::Outbound => rate_outbound(conversation, message, rules),
    }
}

fn attributed(conv: &Conversation, at: Millis) -> Option<String> {
    conv.attribution
        .as_ref()
        .filter(|a| at < a.until_ms)
        .map(|a| a.campaign.clone())
}

fn rate_inbound(mut conv: Conversation, msg: &Message<'_>) -> Result<Rating, RatingError> {
    if msg.kind == Some(MessageKind::Template) {
        return Err(RatingError::InvalidMessage(codes::INBOUND_TEMPLATE));
    }
    if msg.category.is_some() {
        return Err(RatingError::InvalidMessage(codes::INBOUND_WITH_CATEGORY));
    }
    let at = msg.at_ms;
    conv.open_window(Span {
        start: at,
        end: at.saturating_add(SERVICE_WINDOW_MS),
    });
    if let Some(campaign) = msg.click_campaign {
        // Keep the newest pending click: it gives the business the latest reply deadline.
        conv.click_inbound_ms = Some(conv.click_inbound_ms.map_or(at, |c| c.max(at)));
        let until_ms = at.saturating_add(ATTRIBUTION_MS);
        if conv
            .attribution
            .as_ref()
            .is_none_or(|a| a.until_ms <= until_ms)
        {
            conv.attribution = Some(Attribution {
                campaign: campaign.to_owned(),
                until_ms,
            });
        }
    }
    Ok(Rating {
        reason: Reason::Inbound,
        chargeable: false,
        category_billed: None,
        service: false,
        business_initiated: false,
        campaign: attributed(&conv, at),
        window_expires_ms: conv.window_at(at).or(conv.window).map(|w| w.end),
        conversation_after: conv,
    })
}

fn rate_outbound(
    conv: &Conversation,
    msg: &Message<'_>,
    rules: WindowRules,
) -> Result<Rating, RatingError> {
    let kind = msg
        .kind
        .ok_or(RatingError::InvalidMessage(codes::MISSING_KIND))?;
    let template_category = match (kind, msg.category) {
        (MessageKind::Call, _) => return Err(RatingError::InvalidMessage(codes::OUTBOUND_CALL)),
        (MessageKind::Template, Some(category)) => Some(category),
        (MessageKind::Template, None) => {
            return Err(RatingError::InvalidMessage(
                codes::TEMPLATE_WITHOUT_CATEGORY,
            ))
        }
        (MessageKind::FreeForm, Some(_)) => {
            return Err(RatingError::InvalidMessage(codes::FREE_FORM_WITH_CATEGORY))
        }
        (MessageKind::FreeForm, None) => None,
    };

    let at = msg.at_ms;
    let mut after = conv.clone();
    let mut free_entry_point = conv.entry_point.is_some_and(|e| e.contains(at));
    if let Some(click) = conv.click_inbound_ms {
        // Only a message sent at or after the click inbound is a reply to it.
        if at >= click {
            after.click_inbound_ms = None;
            if at < click.saturating_add(REPLY_DEADLINE_MS) {
                after.entry_point = Some(Span::join(
                    conv.entry_point,
                    Span {
                        start: at,
                        end: at.saturating_add(ENTRY_POINT_MS),
                    },
                ));
                free_entry_point = true;
            }
        }
    }
    let in_window = conv.window_at(at).is_some();

    let reason = match template_category {
        None if !in_window => return Err(RatingError::OutsideServiceWindow),
        _ if free_entry_point => Reason::FreeEntryPoint,
        None => Reason::ServiceWindow,
        Some(Category::Utility) if in_window && rules.utility_free_in_window => {
            Reason::ServiceWindow
        }
        Some(_) => Reason::Rated,
    };
    let chargeable = reason == Reason::Rated;
    Ok(Rating {
        reason,
        chargeable,
        category_billed: template_category.filter(|_| chargeable),
        service: template_category.is_none() && reason == Reason::ServiceWindow,
        business_initiated: template_category.is_some() && !in_window && !free_entry_point,
        campaign: attributed(conv, at),
        window_expires_ms: after.window_at(at).or(after.window).map(|w| w.end),
        conversation_after: after,
    })
}

#[cfg(test)]
mod tests;
