//! Business-messaging rating: decides, for each message the messaging platform reports between a
//! business (advertiser) and a user, whether it is free, charged or refused, and how the stored
//! per-(advertiser, user) [`Conversation`] changes. Pure: no I/O, no clock; the caller passes
//! the message time and persists [`Rating::conversation_after`] (see [`Conversation::encode`]).
//!
//! Rules (all windows are half-open: "inside" means `at < expires`, so exactly at expiry is out):
//! - **Inbound** (user → business) is always free (reason `inbound`) and opens or extends the
//!   24 h service window: `window = max(existing, at + 24h)`, so a late-delivered older inbound
//!   never shortens it.
//! - An inbound carrying this advertiser's click-to-chat click id (`valid_click`) records a
//!   pending click. The first outbound sent at or after that inbound consumes it: if it is sent
//!   within 24 h of the click inbound it *activates* a free entry point lasting until
//!   `click + 72h`; if later, the click is dropped and normal rules apply.
//! - **Outbound** (business → user), precedence first match wins:
//!   1. active (or activated by this very message) free entry point → free, `free_entry_point`;
//!   2. free-form or utility template inside the service window → free, `service_window`;
//!   3. free-form outside → [`RatingError::OutsideServiceWindow`] (never charged);
//!   4. any other template (utility outside the window, marketing, authentication) → charged,
//!      `rated`, billed under its category (see [`PriceTable`] for the price).
//! - Message shape: outbound needs a `kind`; a template needs a `category`; a free-form message
//!   must not have one. Inbound is free-form by nature: `kind` may be absent or free-form, a
//!   template kind or any category is rejected. `valid_click` is ignored on outbound.
//! - Out-of-order delivery: a message is rated against the stored state as is, so the result
//!   depends only on (state, message). An outbound timed before the pending click inbound is not
//!   a reply to it, so it neither activates nor consumes it.

mod price;

pub use price::{PriceRow, PriceTable};

use serde::{Deserialize, Serialize};

pub use crate::clock::Millis;
pub use crate::domain::Micros;

/// Length of the customer-service window opened by an inbound message.
pub const SERVICE_WINDOW_MS: Millis = 24 * 3_600_000;
/// Length of a free entry point, counted from the click inbound.
pub const ENTRY_POINT_MS: Millis = 72 * 3_600_000;

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
}

/// What we store per (advertiser, user) conversation: only times, never content.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    /// End (exclusive) of the customer-service window.
    pub window_expires_ms: Option<Millis>,
    /// Set by an inbound with this advertiser's click id: the inbound's time (the 24 h reply
    /// deadline runs from it). Cleared by the first outbound at or after it, which either
    /// activates the entry point or lets it lapse.
    pub click_inbound_ms: Option<Millis>,
    /// End (exclusive) of the free entry point; set once activated by a timely reply.
    pub entry_point_expires_ms: Option<Millis>,
}

impl Conversation {
    /// Compact storage form `"w,c,e"`: decimal millis, empty for `None` (default is `",,"`).
    pub fn encode(&self) -> String {
        fn field(v: Option<Millis>) -> String {
            v.map(|ms| ms.to_string()).unwrap_or_default()
        }
        format!(
            "{},{},{}",
            field(self.window_expires_ms),
            field(self.click_inbound_ms),
            field(self.entry_point_expires_ms)
        )
    }

    /// Inverse of [`encode`](Self::encode); never fails. Anything malformed decodes to the
    /// default (a new conversation), so a corrupt entry cannot block rating.
    pub fn decode(raw: &str) -> Conversation {
        fn field(s: &str) -> Result<Option<Millis>, ()> {
            if s.is_empty() {
                Ok(None)
            } else {
                s.parse().map(Some).map_err(|_| ())
            }
        }
        let mut parts = raw.split(',');
        let (Some(w), Some(c), Some(e), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Conversation::default();
        };
        match (field(w), field(c), field(e)) {
            (Ok(w), Ok(c), Ok(e)) => Conversation {
                window_expires_ms: w,
                click_inbound_ms: c,
                entry_point_expires_ms: e,
            },
            _ => Conversation::default(),
        }
    }

    /// Last instant at which this state can still change a rating (for a storage TTL); `None`
    /// when empty. A pending click matters until its 24 h reply deadline.
    pub fn relevant_until_ms(&self) -> Option<Millis> {
        [
            self.window_expires_ms,
            self.click_inbound_ms
                .map(|c| c.saturating_add(SERVICE_WINDOW_MS)),
            self.entry_point_expires_ms,
        ]
        .into_iter()
        .flatten()
        .max()
    }
}

/// One message as reported by the messaging platform (content never reaches us).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message {
    pub direction: Direction,
    pub kind: Option<MessageKind>,
    pub category: Option<Category>,
    pub at_ms: Millis,
    /// Inbound only: the message carried a click id of *this* advertiser's click-to-chat ad
    /// (checked by the caller).
    pub valid_click: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Rating {
    pub reason: Reason,
    /// True exactly when `reason == Rated`.
    pub chargeable: bool,
    /// The category to price when chargeable, else `None`.
    pub category_billed: Option<Category>,
    /// State to persist; equal to the input state when nothing changed.
    pub conversation_after: Conversation,
    /// Service-window end after this message (copy of `conversation_after.window_expires_ms`).
    pub window_expires_ms: Option<Millis>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RatingError {
    /// Free-form outbound with no open service window nor free entry point (HTTP 422).
    OutsideServiceWindow,
    /// Inconsistent message shape; the payload is a stable snake_case code (HTTP 422):
    /// `missing_kind`, `template_without_category`, `free_form_with_category`,
    /// `inbound_template`, `inbound_with_category`.
    InvalidMessage(&'static str),
}

impl RatingError {
    /// Stable snake_case code for the API.
    pub fn code(&self) -> &'static str {
        match self {
            RatingError::OutsideServiceWindow => "outside_service_window",
            RatingError::InvalidMessage(code) => code,
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
pub fn rate(conversation: Conversation, message: &Message) -> Result<Rating, RatingError> {
    match message.direction {
        Direction::Inbound => rate_inbound(conversation, message),
        Direction::Outbound => rate_outbound(conversation, message),
    }
}

fn rate_inbound(mut conv: Conversation, msg: &Message) -> Result<Rating, RatingError> {
    if msg.kind == Some(MessageKind::Template) {
        return Err(RatingError::InvalidMessage("inbound_template"));
    }
    if msg.category.is_some() {
        return Err(RatingError::InvalidMessage("inbound_with_category"));
    }
    let at = msg.at_ms;
    // max(): a late-delivered older inbound must never shorten the window.
    let opened = at.saturating_add(SERVICE_WINDOW_MS);
    conv.window_expires_ms = Some(conv.window_expires_ms.map_or(opened, |w| w.max(opened)));
    if msg.valid_click {
        // Keep the newest pending click: it gives the business the latest reply deadline.
        conv.click_inbound_ms = Some(conv.click_inbound_ms.map_or(at, |c| c.max(at)));
    }
    Ok(Rating {
        reason: Reason::Inbound,
        chargeable: false,
        category_billed: None,
        conversation_after: conv,
        window_expires_ms: conv.window_expires_ms,
    })
}

fn rate_outbound(conv: Conversation, msg: &Message) -> Result<Rating, RatingError> {
    let kind = msg
        .kind
        .ok_or(RatingError::InvalidMessage("missing_kind"))?;
    let template_category = match (kind, msg.category) {
        (MessageKind::Template, Some(category)) => Some(category),
        (MessageKind::Template, None) => {
            return Err(RatingError::InvalidMessage("template_without_category"))
        }
        (MessageKind::FreeForm, Some(_)) => {
            return Err(RatingError::InvalidMessage("free_form_with_category"))
        }
        (MessageKind::FreeForm, None) => None,
    };

    let at = msg.at_ms;
    let mut after = conv;
    let mut free_entry_point = conv.entry_point_expires_ms.is_some_and(|e| at < e);
    if let Some(click) = conv.click_inbound_ms {
        // Only a message sent at or after the click inbound is a reply to it.
        if at >= click {
            after.click_inbound_ms = None;
            if at < click.saturating_add(SERVICE_WINDOW_MS) {
                let expires = click.saturating_add(ENTRY_POINT_MS);
                after.entry_point_expires_ms = Some(
                    conv.entry_point_expires_ms
                        .map_or(expires, |e| e.max(expires)),
                );
                free_entry_point = true;
            }
        }
    }
    let in_window = conv.window_expires_ms.is_some_and(|w| at < w);

    let reason = if free_entry_point {
        Reason::FreeEntryPoint
    } else {
        match template_category {
            None if in_window => Reason::ServiceWindow,
            None => return Err(RatingError::OutsideServiceWindow),
            Some(Category::Utility) if in_window => Reason::ServiceWindow,
            Some(_) => Reason::Rated,
        }
    };
    let chargeable = reason == Reason::Rated;
    Ok(Rating {
        reason,
        chargeable,
        category_billed: template_category.filter(|_| chargeable),
        conversation_after: after,
        window_expires_ms: after.window_expires_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: Millis = 3_600_000;
    const M: Millis = 60_000;
    const T0: Millis = 1_700_000_000_000;

    fn inbound(at_ms: Millis, valid_click: bool) -> Message {
        Message {
            direction: Direction::Inbound,
            kind: None,
            category: None,
            at_ms,
            valid_click,
        }
    }

    fn free_form(at_ms: Millis) -> Message {
        Message {
            direction: Direction::Outbound,
            kind: Some(MessageKind::FreeForm),
            category: None,
            at_ms,
            valid_click: false,
        }
    }

    fn template(category: Category, at_ms: Millis) -> Message {
        Message {
            direction: Direction::Outbound,
            kind: Some(MessageKind::Template),
            category: Some(category),
            at_ms,
            valid_click: false,
        }
    }

    /// Applies messages in order, persisting state like the caller would (errors keep state).
    fn run(msgs: &[Message]) -> Conversation {
        msgs.iter().fold(Conversation::default(), |conv, m| {
            rate(conv, m).map_or(conv, |r| r.conversation_after)
        })
    }

    fn reason(conv: Conversation, msg: Message) -> Result<Reason, RatingError> {
        rate(conv, &msg).map(|r| r.reason)
    }

    #[test]
    fn inbound_is_free_and_opens_the_window() {
        let r = rate(Conversation::default(), &inbound(T0, false)).unwrap();
        assert_eq!(r.reason, Reason::Inbound);
        assert!(!r.chargeable);
        assert_eq!(r.category_billed, None);
        assert_eq!(r.window_expires_ms, Some(T0 + 24 * H));
        assert_eq!(
            r.conversation_after,
            Conversation {
                window_expires_ms: Some(T0 + 24 * H),
                click_inbound_ms: None,
                entry_point_expires_ms: None,
            }
        );
    }

    #[test]
    fn reply_just_inside_the_window_is_free() {
        let conv = run(&[inbound(T0, false)]);
        let at = T0 + 23 * H + 59 * M;
        assert_eq!(reason(conv, free_form(at)), Ok(Reason::ServiceWindow));
        let r = rate(conv, &template(Category::Utility, at)).unwrap();
        assert_eq!(r.reason, Reason::ServiceWindow);
        assert!(!r.chargeable);
        assert_eq!(r.category_billed, None);
        assert_eq!(r.conversation_after, conv);
    }

    #[test]
    fn reply_just_outside_the_window() {
        let conv = run(&[inbound(T0, false)]);
        let at = T0 + 24 * H + M;
        assert_eq!(
            reason(conv, free_form(at)),
            Err(RatingError::OutsideServiceWindow)
        );
        for category in Category::ALL {
            let r = rate(conv, &template(category, at)).unwrap();
            assert_eq!(r.reason, Reason::Rated, "{category:?}");
            assert!(r.chargeable);
            assert_eq!(r.category_billed, Some(category));
        }
    }

    #[test]
    fn window_end_is_exclusive() {
        let conv = run(&[inbound(T0, false)]);
        let at = T0 + 24 * H;
        assert_eq!(
            reason(conv, free_form(at)),
            Err(RatingError::OutsideServiceWindow)
        );
        assert_eq!(
            reason(conv, template(Category::Utility, at)),
            Ok(Reason::Rated)
        );
        assert_eq!(reason(conv, free_form(at - 1)), Ok(Reason::ServiceWindow));
    }

    #[test]
    fn no_conversation_means_no_window() {
        let conv = Conversation::default();
        assert_eq!(
            reason(conv, free_form(T0)),
            Err(RatingError::OutsideServiceWindow)
        );
        assert_eq!(
            reason(conv, template(Category::Utility, T0)),
            Ok(Reason::Rated)
        );
    }

    #[test]
    fn new_inbound_extends_and_older_inbound_does_not_shorten() {
        let conv = run(&[inbound(T0, false), inbound(T0 + 10 * H, false)]);
        assert_eq!(conv.window_expires_ms, Some(T0 + 34 * H));
        assert_eq!(
            reason(conv, free_form(T0 + 30 * H)),
            Ok(Reason::ServiceWindow)
        );

        // Out of order: the older inbound is delivered after the newer one.
        let late = run(&[inbound(T0 + 10 * H, false), inbound(T0, false)]);
        assert_eq!(late.window_expires_ms, Some(T0 + 34 * H));
    }

    #[test]
    fn marketing_and_authentication_are_charged_inside_the_window() {
        let conv = run(&[inbound(T0, false)]);
        assert_eq!(
            reason(conv, template(Category::Utility, T0 + H)),
            Ok(Reason::ServiceWindow)
        );
        for category in [Category::Marketing, Category::Authentication] {
            let r = rate(conv, &template(category, T0 + H)).unwrap();
            assert_eq!(r.reason, Reason::Rated);
            assert!(r.chargeable);
            assert_eq!(r.category_billed, Some(category));
        }
    }

    #[test]
    fn timely_reply_to_a_click_opens_a_72h_free_entry_point() {
        let conv = run(&[inbound(T0, true)]);
        assert_eq!(conv.click_inbound_ms, Some(T0));

        let r = rate(conv, &template(Category::Marketing, T0 + 2 * H)).unwrap();
        assert_eq!(r.reason, Reason::FreeEntryPoint);
        assert!(!r.chargeable);
        assert_eq!(r.category_billed, None);
        let active = r.conversation_after;
        assert_eq!(active.entry_point_expires_ms, Some(T0 + 72 * H));
        assert_eq!(active.click_inbound_ms, None);

        // Everything is free until +72h, even outside the service window.
        let late = T0 + 72 * H - M;
        for msg in [
            free_form(late),
            template(Category::Utility, late),
            template(Category::Marketing, late),
            template(Category::Authentication, late),
            template(Category::Marketing, T0 + 30 * H),
        ] {
            let r = rate(active, &msg).unwrap();
            assert_eq!(r.reason, Reason::FreeEntryPoint, "{msg:?}");
            assert!(!r.chargeable);
            assert_eq!(r.conversation_after, active);
        }

        // Exactly at +72h and after, normal rules again.
        for at in [T0 + 72 * H, T0 + 72 * H + M] {
            assert_eq!(
                reason(active, template(Category::Marketing, at)),
                Ok(Reason::Rated)
            );
            assert_eq!(
                reason(active, free_form(at)),
                Err(RatingError::OutsideServiceWindow)
            );
        }
        // ... unless the user wrote again: the service window applies, not the entry point.
        let reopened = run(&[
            inbound(T0, true),
            template(Category::Marketing, T0 + 2 * H),
            inbound(T0 + 70 * H, false),
        ]);
        let at = T0 + 72 * H + M;
        assert_eq!(reason(reopened, free_form(at)), Ok(Reason::ServiceWindow));
        assert_eq!(
            reason(reopened, template(Category::Marketing, at)),
            Ok(Reason::Rated)
        );
    }

    #[test]
    fn free_form_reply_also_activates_the_entry_point() {
        let r = rate(run(&[inbound(T0, true)]), &free_form(T0 + H)).unwrap();
        assert_eq!(r.reason, Reason::FreeEntryPoint);
        assert_eq!(
            r.conversation_after.entry_point_expires_ms,
            Some(T0 + 72 * H)
        );
    }

    #[test]
    fn late_first_reply_to_a_click_gets_no_entry_point() {
        let conv = run(&[inbound(T0, true)]);
        let at = T0 + 25 * H;
        let r = rate(conv, &template(Category::Marketing, at)).unwrap();
        assert_eq!(r.reason, Reason::Rated);
        assert!(r.chargeable);
        assert_eq!(r.conversation_after.entry_point_expires_ms, None);
        assert_eq!(r.conversation_after.click_inbound_ms, None);
        assert_eq!(
            reason(conv, free_form(at)),
            Err(RatingError::OutsideServiceWindow)
        );
        // The deadline is exclusive too.
        assert_eq!(
            reason(conv, template(Category::Marketing, T0 + 24 * H)),
            Ok(Reason::Rated)
        );
        // Once lapsed, the click stays consumed.
        let after = r.conversation_after;
        assert_eq!(
            reason(after, template(Category::Marketing, T0 + 26 * H)),
            Ok(Reason::Rated)
        );
    }

    #[test]
    fn a_refused_free_form_does_not_consume_the_click() {
        // Free-form after the deadline is refused, so the caller keeps the old state; the
        // click is still lapsed for any later reply.
        let conv = run(&[inbound(T0, true), free_form(T0 + 25 * H)]);
        assert_eq!(conv.click_inbound_ms, Some(T0));
        assert_eq!(
            reason(conv, template(Category::Marketing, T0 + 26 * H)),
            Ok(Reason::Rated)
        );
    }

    #[test]
    fn inbound_without_a_valid_click_opens_no_entry_point() {
        let conv = run(&[inbound(T0, false)]);
        assert_eq!(conv.click_inbound_ms, None);
        let r = rate(conv, &template(Category::Marketing, T0 + 2 * H)).unwrap();
        assert_eq!(r.reason, Reason::Rated);
        assert_eq!(r.conversation_after.entry_point_expires_ms, None);
    }

    #[test]
    fn outbound_before_the_click_inbound_neither_activates_nor_consumes_it() {
        let conv = run(&[inbound(T0, true)]);
        let r = rate(conv, &template(Category::Marketing, T0 - M)).unwrap();
        assert_eq!(r.reason, Reason::Rated);
        assert_eq!(r.conversation_after, conv);
        assert_eq!(
            reason(conv, template(Category::Marketing, T0 + H)),
            Ok(Reason::FreeEntryPoint)
        );
    }

    #[test]
    fn newer_click_extends_an_active_entry_point() {
        let conv = run(&[
            inbound(T0, true),
            free_form(T0 + H),
            inbound(T0 + 50 * H, true),
            free_form(T0 + 51 * H),
        ]);
        assert_eq!(conv.entry_point_expires_ms, Some(T0 + 122 * H));
        // An older click delivered late keeps the newer pending click.
        let pending = run(&[inbound(T0 + 5 * H, true), inbound(T0, true)]);
        assert_eq!(pending.click_inbound_ms, Some(T0 + 5 * H));
    }

    #[test]
    fn message_shape_is_validated() {
        let conv = run(&[inbound(T0, false)]);
        let bad = |m: Message| rate(conv, &m).map(|r| r.reason);
        let mut m = free_form(T0 + H);
        m.kind = None;
        assert_eq!(bad(m), Err(RatingError::InvalidMessage("missing_kind")));
        let mut m = template(Category::Utility, T0 + H);
        m.category = None;
        assert_eq!(
            bad(m),
            Err(RatingError::InvalidMessage("template_without_category"))
        );
        let mut m = free_form(T0 + H);
        m.category = Some(Category::Utility);
        assert_eq!(
            bad(m),
            Err(RatingError::InvalidMessage("free_form_with_category"))
        );
        let mut m = inbound(T0, false);
        m.kind = Some(MessageKind::Template);
        assert_eq!(bad(m), Err(RatingError::InvalidMessage("inbound_template")));
        let mut m = inbound(T0, false);
        m.category = Some(Category::Marketing);
        assert_eq!(
            bad(m),
            Err(RatingError::InvalidMessage("inbound_with_category"))
        );
        let mut m = inbound(T0, false);
        m.kind = Some(MessageKind::FreeForm);
        assert_eq!(bad(m), Ok(Reason::Inbound));
        assert_eq!(
            RatingError::OutsideServiceWindow.code(),
            "outside_service_window"
        );
        assert_eq!(
            RatingError::InvalidMessage("missing_kind").code(),
            "missing_kind"
        );
    }

    #[test]
    fn extreme_times_do_not_overflow() {
        let conv = run(&[inbound(Millis::MAX - H, true)]);
        assert_eq!(conv.window_expires_ms, Some(Millis::MAX));
        let r = rate(conv, &template(Category::Marketing, Millis::MAX - 1)).unwrap();
        assert_eq!(r.reason, Reason::FreeEntryPoint);
        assert_eq!(
            r.conversation_after.entry_point_expires_ms,
            Some(Millis::MAX)
        );
        assert_eq!(conv.relevant_until_ms(), Some(Millis::MAX));
        assert!(rate(conv, &free_form(Millis::MIN)).is_ok());
    }

    #[test]
    fn encode_decode_round_trip() {
        let cases = [
            Conversation::default(),
            Conversation {
                window_expires_ms: Some(T0),
                click_inbound_ms: None,
                entry_point_expires_ms: Some(-5),
            },
            Conversation {
                window_expires_ms: Some(Millis::MAX),
                click_inbound_ms: Some(Millis::MIN),
                entry_point_expires_ms: Some(0),
            },
        ];
        for conv in cases {
            assert_eq!(Conversation::decode(&conv.encode()), conv);
        }
        assert_eq!(Conversation::default().encode(), ",,");
        assert_eq!(
            Conversation {
                window_expires_ms: Some(1),
                click_inbound_ms: None,
                entry_point_expires_ms: Some(3),
            }
            .encode(),
            "1,,3"
        );
    }

    #[test]
    fn decode_garbage_is_default() {
        for raw in [
            "",
            ",",
            ",,,",
            "1,2",
            "1,2,3,4",
            "a,b,c",
            "1,,x",
            " 1,,",
            "1.5,,",
            "99999999999999999999,,",
            "\u{0}\u{ff},é,",
        ] {
            assert_eq!(
                Conversation::decode(raw),
                Conversation::default(),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn relevant_until_covers_every_live_field() {
        assert_eq!(Conversation::default().relevant_until_ms(), None);
        let conv = Conversation {
            window_expires_ms: Some(T0 + 24 * H),
            click_inbound_ms: Some(T0 + 10 * H),
            entry_point_expires_ms: None,
        };
        assert_eq!(conv.relevant_until_ms(), Some(T0 + 34 * H));
        let conv = Conversation {
            entry_point_expires_ms: Some(T0 + 72 * H),
            ..conv
        };
        assert_eq!(conv.relevant_until_ms(), Some(T0 + 72 * H));
    }

    #[test]
    fn as_str_matches_serde_names() {
        use serde::de::value::{Error, StrDeserializer};
        use serde::de::IntoDeserializer;
        fn parse<T: for<'de> Deserialize<'de>>(name: &str) -> T {
            let de: StrDeserializer<'_, Error> = name.into_deserializer();
            T::deserialize(de).unwrap()
        }
        for r in [
            Reason::Inbound,
            Reason::ServiceWindow,
            Reason::FreeEntryPoint,
            Reason::Rated,
        ] {
            assert_eq!(parse::<Reason>(r.as_str()), r);
        }
        for c in Category::ALL {
            assert_eq!(parse::<Category>(c.as_str()), c);
        }
    }
}
