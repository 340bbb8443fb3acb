use super::*;
use crate::codes;

const H: Millis = 3_600_000;
const M: Millis = 60_000;
const S: Millis = 1_000;
const T0: Millis = 1_795_000_000_000;
const JULY_2025: WindowRules = WindowRules {
    utility_free_in_window: true,
};
const OCTOBER_2026: WindowRules = WindowRules {
    utility_free_in_window: false,
};

fn inbound(at_ms: Millis, click: bool) -> Message<'static> {
    Message {
        direction: Direction::Inbound,
        kind: None,
        category: None,
        at_ms,
        click_campaign: click.then_some("cmp_00000000000000aa"),
    }
}

fn call(at_ms: Millis) -> Message<'static> {
    Message {
        kind: Some(MessageKind::Call),
        ..inbound(at_ms, false)
    }
}

fn free_form(at_ms: Millis) -> Message<'static> {
    Message {
        direction: Direction::Outbound,
        kind: Some(MessageKind::FreeForm),
        category: None,
        at_ms,
        click_campaign: None,
    }
}

fn template(category: Category, at_ms: Millis) -> Message<'static> {
    Message {
        direction: Direction::Outbound,
        kind: Some(MessageKind::Template),
        category: Some(category),
        at_ms,
        click_campaign: None,
    }
}

/// Applies messages in order, persisting state like the caller would (errors keep state).
fn run(msgs: &[Message<'_>]) -> Conversation {
    msgs.iter().fold(Conversation::default(), |conv, m| {
        rate(&conv, m, JULY_2025).map_or(conv, |r| r.conversation_after)
    })
}

fn reason(conv: &Conversation, msg: Message<'_>) -> Result<Reason, RatingError> {
    rate(conv, &msg, JULY_2025).map(|r| r.reason)
}

#[test]
fn inbound_is_free_and_opens_the_window_from_its_own_instant() {
    let r = rate(&Conversation::default(), &inbound(T0, false), JULY_2025).unwrap();
    assert_eq!(r.reason, Reason::Inbound);
    assert!(!r.chargeable);
    assert_eq!(r.window_expires_ms, Some(T0 + 24 * H));
    assert_eq!(
        r.conversation_after.window,
        Some(Span {
            start: T0,
            end: T0 + 24 * H
        })
    );
}

#[test]
fn window_start_and_end_at_the_instant() {
    let conv = run(&[inbound(T0, false)]);
    assert_eq!(reason(&conv, free_form(T0)), Ok(Reason::ServiceWindow));
    assert_eq!(
        reason(&conv, free_form(T0 + 24 * H - S)),
        Ok(Reason::ServiceWindow)
    );
    assert_eq!(
        reason(&conv, free_form(T0 + 24 * H)),
        Err(RatingError::OutsideServiceWindow)
    );
    assert_eq!(
        reason(&conv, free_form(T0 - S)),
        Err(RatingError::OutsideServiceWindow),
        "one second before the window opened"
    );
    // A utility template before the inbound is not inside its window: charged.
    assert_eq!(
        reason(&conv, template(Category::Utility, T0 - 25 * 24 * H)),
        Ok(Reason::Rated)
    );
    assert_eq!(
        reason(&conv, template(Category::Utility, T0 + H)),
        Ok(Reason::ServiceWindow)
    );
}

#[test]
fn a_call_opens_or_resets_the_window() {
    let conv = run(&[call(T0)]);
    assert_eq!(reason(&conv, free_form(T0 + H)), Ok(Reason::ServiceWindow));
    let conv = run(&[inbound(T0, false), call(T0 + 20 * H)]);
    assert_eq!(
        reason(&conv, free_form(T0 + 40 * H)),
        Ok(Reason::ServiceWindow)
    );
    assert_eq!(
        reason(&conv, free_form(T0 + 10 * H)),
        Ok(Reason::ServiceWindow)
    );
}

#[test]
fn new_inbound_extends_and_older_inbound_does_not_shorten() {
    let conv = run(&[inbound(T0, false), inbound(T0 + 10 * H, false)]);
    assert_eq!(
        conv.window,
        Some(Span {
            start: T0,
            end: T0 + 34 * H
        })
    );
    // Out of order: the older inbound is delivered after the newer one; the windows touch.
    let late = run(&[inbound(T0 + 10 * H, false), inbound(T0, false)]);
    assert_eq!(late.window, conv.window);
    // A window that lapsed, then a new inbound: the gap stays outside.
    let gap = run(&[inbound(T0, false), inbound(T0 + 30 * H, false)]);
    assert_eq!(
        reason(&gap, free_form(T0 + 26 * H)),
        Err(RatingError::OutsideServiceWindow)
    );
    assert_eq!(
        reason(&gap, free_form(T0 + 31 * H)),
        Ok(Reason::ServiceWindow)
    );
    // An older disjoint window reported late does not replace the current one, and is kept
    // beside it.
    let older = run(&[inbound(T0 + 30 * H, false), inbound(T0, false)]);
    assert_eq!(older.window, gap.window);
    assert_eq!(older, gap);
}

#[test]
fn a_message_reported_late_is_rated_by_the_window_of_its_time() {
    let conv = run(&[inbound(T0, false), inbound(T0 + 40 * H, false)]);
    assert_eq!(
        conv.earlier_windows,
        vec![Span {
            start: T0,
            end: T0 + 24 * H
        }]
    );
    let r = rate(&conv, &free_form(T0 + H), JULY_2025).unwrap();
    assert_eq!(r.reason, Reason::ServiceWindow);
    assert_eq!(
        r.window_expires_ms,
        Some(T0 + 24 * H),
        "the window it was in"
    );
    assert_eq!(r.conversation_after, conv);
    let r = rate(&conv, &template(Category::Utility, T0 + 2 * H), JULY_2025).unwrap();
    assert_eq!(r.reason, Reason::ServiceWindow);
    assert!(!r.chargeable && !r.business_initiated);
    // Between the windows, nothing was open.
    assert_eq!(
        reason(&conv, free_form(T0 + 30 * H)),
        Err(RatingError::OutsideServiceWindow)
    );
    let r = rate(&conv, &template(Category::Utility, T0 + 30 * H), JULY_2025).unwrap();
    assert!(r.chargeable && r.business_initiated);
    assert_eq!(r.window_expires_ms, Some(T0 + 64 * H), "the latest window");
}

#[test]
fn a_late_inbound_bridging_two_windows_joins_them() {
    let conv = run(&[
        inbound(T0, false),
        inbound(T0 + 40 * H, false),
        inbound(T0 + 20 * H, false),
    ]);
    assert_eq!(
        (conv.window, conv.earlier_windows.as_slice()),
        (
            Some(Span {
                start: T0,
                end: T0 + 64 * H
            }),
            &[][..]
        )
    );
    assert_eq!(
        reason(&conv, free_form(T0 + 30 * H)),
        Ok(Reason::ServiceWindow)
    );
}

#[test]
fn a_lapsed_window_is_forgotten_a_day_after_it_ended() {
    let conv = run(&[inbound(T0, false), inbound(T0 + 48 * H - S, false)]);
    assert_eq!(
        conv.earlier_windows.len(),
        1,
        "ended a day less a second before"
    );
    let conv = run(&[inbound(T0, false), inbound(T0 + 48 * H, false)]);
    assert_eq!(
        conv.earlier_windows,
        vec![],
        "ended a day before the next opened"
    );
    assert_eq!(
        reason(&conv, free_form(T0 + H)),
        Err(RatingError::OutsideServiceWindow)
    );
    // Reported later still, an inbound older than that opens nothing that is kept.
    let again = rate(&conv, &inbound(T0 - 2 * H, false), JULY_2025).unwrap();
    assert_eq!(again.conversation_after, conv);
    // A daily chat keeps at most one lapsed window.
    let daily: Vec<_> = (0..30).map(|d| inbound(T0 + d * 25 * H, false)).collect();
    assert_eq!(run(&daily).earlier_windows.len(), 1);
}

#[test]
fn reply_outside_the_window_is_refused_or_charged() {
    let conv = run(&[inbound(T0, false)]);
    let at = T0 + 24 * H + M;
    assert_eq!(
        reason(&conv, free_form(at)),
        Err(RatingError::OutsideServiceWindow)
    );
    for category in Category::ALL {
        let r = rate(&conv, &template(category, at), JULY_2025).unwrap();
        assert_eq!(r.reason, Reason::Rated, "{category:?}");
        assert!(r.chargeable && r.business_initiated);
        assert_eq!(r.category_billed, Some(category));
    }
    assert_eq!(
        reason(&Conversation::default(), free_form(T0)),
        Err(RatingError::OutsideServiceWindow)
    );
}

#[test]
fn marketing_and_authentication_are_charged_inside_the_window() {
    let conv = run(&[inbound(T0, false)]);
    for category in [Category::Marketing, Category::Authentication] {
        let r = rate(&conv, &template(category, T0 + H), JULY_2025).unwrap();
        assert_eq!(r.reason, Reason::Rated);
        assert!(r.chargeable && !r.business_initiated);
    }
}

#[test]
fn utility_inside_the_window_follows_the_rule_set() {
    let conv = run(&[inbound(T0, false)]);
    let r = rate(&conv, &template(Category::Utility, T0 + H), OCTOBER_2026).unwrap();
    assert_eq!(
        (r.reason, r.category_billed),
        (Reason::Rated, Some(Category::Utility))
    );
    assert!(
        !r.business_initiated,
        "inside a window is not business-initiated"
    );
    let r = rate(&conv, &free_form(T0 + H), OCTOBER_2026).unwrap();
    assert!(r.service && !r.chargeable);
}

#[test]
fn entry_point_runs_72h_from_the_first_reply() {
    let conv = run(&[inbound(T0, true)]);
    assert_eq!(conv.click_inbound_ms, Some(T0));
    // First reply at +23 h: free until reply + 72 h.
    let reply = T0 + 23 * H;
    let r = rate(&conv, &template(Category::Marketing, reply), JULY_2025).unwrap();
    assert_eq!(r.reason, Reason::FreeEntryPoint);
    assert!(!r.chargeable && !r.business_initiated);
    let active = r.conversation_after;
    assert_eq!(
        active.entry_point,
        Some(Span {
            start: reply,
            end: reply + 72 * H
        })
    );
    assert_eq!(active.click_inbound_ms, None);
    for at in [reply + 48 * H, reply + 72 * H - S] {
        for category in Category::ALL {
            assert_eq!(
                reason(&active, template(category, at)),
                Ok(Reason::FreeEntryPoint)
            );
        }
    }
    assert_eq!(
        reason(&active, template(Category::Marketing, reply + 72 * H)),
        Ok(Reason::Rated)
    );
    // Free-form still needs the window: inside it, free; outside it, refused.
    assert_eq!(
        reason(&active, free_form(reply + 30 * M)),
        Ok(Reason::FreeEntryPoint)
    );
    assert_eq!(
        reason(&active, free_form(reply + 48 * H)),
        Err(RatingError::OutsideServiceWindow)
    );
}

#[test]
fn late_first_reply_opens_no_entry_point() {
    let conv = run(&[inbound(T0, true)]);
    let r = rate(
        &conv,
        &template(Category::Marketing, T0 + 25 * H),
        JULY_2025,
    )
    .unwrap();
    assert_eq!(r.reason, Reason::Rated);
    assert_eq!(r.conversation_after.entry_point, None);
    assert_eq!(r.conversation_after.click_inbound_ms, None);
    // The deadline is exclusive.
    assert_eq!(
        reason(&conv, template(Category::Marketing, T0 + 24 * H)),
        Ok(Reason::Rated)
    );
}

#[test]
fn a_refused_free_form_does_not_consume_the_click() {
    let conv = run(&[inbound(T0, true), free_form(T0 + 25 * H)]);
    assert_eq!(conv.click_inbound_ms, Some(T0));
}

#[test]
fn outbound_before_the_click_inbound_neither_opens_nor_consumes_it() {
    let conv = run(&[inbound(T0, true)]);
    let r = rate(&conv, &template(Category::Marketing, T0 - M), JULY_2025).unwrap();
    assert_eq!(r.reason, Reason::Rated);
    assert_eq!(r.conversation_after, conv);
    assert_eq!(
        reason(&conv, template(Category::Marketing, T0 + H)),
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
    assert_eq!(
        conv.entry_point,
        Some(Span {
            start: T0 + H,
            end: T0 + 123 * H
        })
    );
}

#[test]
fn a_click_attributes_the_conversation_to_its_campaign() {
    let conv = run(&[inbound(T0, true)]);
    let r = rate(
        &conv,
        &template(Category::Marketing, T0 + 100 * H),
        JULY_2025,
    )
    .unwrap();
    assert_eq!(r.campaign.as_deref(), Some("cmp_00000000000000aa"));
    let r = rate(
        &conv,
        &template(Category::Marketing, T0 + ATTRIBUTION_MS),
        JULY_2025,
    )
    .unwrap();
    assert_eq!(r.campaign, None);
    let plain = run(&[inbound(T0, false)]);
    assert_eq!(
        rate(&plain, &template(Category::Marketing, T0 + H), JULY_2025)
            .unwrap()
            .campaign,
        None
    );
}

#[test]
fn message_shape_is_validated() {
    let conv = run(&[inbound(T0, false)]);
    let bad = |m: Message<'_>| rate(&conv, &m, JULY_2025).map(|r| r.reason);
    let mut m = free_form(T0 + H);
    m.kind = None;
    assert_eq!(
        bad(m),
        Err(RatingError::InvalidMessage(codes::MISSING_KIND))
    );
    let mut m = template(Category::Utility, T0 + H);
    m.category = None;
    assert_eq!(
        bad(m),
        Err(RatingError::InvalidMessage(
            codes::TEMPLATE_WITHOUT_CATEGORY
        ))
    );
    let mut m = free_form(T0 + H);
    m.category = Some(Category::Utility);
    assert_eq!(
        bad(m),
        Err(RatingError::InvalidMessage(codes::FREE_FORM_WITH_CATEGORY))
    );
    let mut m = free_form(T0 + H);
    m.kind = Some(MessageKind::Call);
    assert_eq!(
        bad(m),
        Err(RatingError::InvalidMessage(codes::OUTBOUND_CALL))
    );
    let mut m = inbound(T0, false);
    m.kind = Some(MessageKind::Template);
    assert_eq!(
        bad(m),
        Err(RatingError::InvalidMessage(codes::INBOUND_TEMPLATE))
    );
    let mut m = inbound(T0, false);
    m.category = Some(Category::Marketing);
    assert_eq!(
        bad(m),
        Err(RatingError::InvalidMessage(codes::INBOUND_WITH_CATEGORY))
    );
    let mut m = inbound(T0, false);
    m.kind = Some(MessageKind::FreeForm);
    assert_eq!(bad(m), Ok(Reason::Inbound));
}

#[test]
fn times_outside_2000_to_2999_are_invalid() {
    assert!(valid_time(EARLIEST_MS));
    assert!(!valid_time(EARLIEST_MS - 1));
    assert!(valid_time(END_MS - 1));
    assert!(!valid_time(END_MS));
    // 9999-12-31T23:59:59Z
    assert!(!valid_time(253_402_300_799_000));
}

#[test]
fn encode_decode_round_trip() {
    let cases = [
        Conversation::default(),
        Conversation {
            window: Some(Span {
                start: T0,
                end: T0 + 24 * H,
            }),
            earlier_windows: Vec::new(),
            click_inbound_ms: Some(T0),
            entry_point: Some(Span {
                start: T0 + H,
                end: T0 + 73 * H,
            }),
            attribution: Some(Attribution {
                campaign: "cmp_00000000000000aa".into(),
                until_ms: T0 + ATTRIBUTION_MS,
            }),
        },
    ];
    for conv in cases {
        assert_eq!(Conversation::decode(&conv.encode()), conv);
    }
    let late = run(&[inbound(T0, false), inbound(T0 + 30 * H, true)]);
    assert_eq!(late.earlier_windows.len(), 1);
    assert!(late.encode().starts_with("3,"), "{}", late.encode());
    assert_eq!(Conversation::decode(&late.encode()), late);
    let single = run(&[inbound(T0, false)]);
    assert!(
        single.encode().starts_with("2,"),
        "without earlier windows, the form earlier builds read"
    );
}

#[test]
fn earlier_builds_three_field_state_reads_with_its_implied_starts() {
    let conv = Conversation::decode(&format!("{},,{}", T0 + 24 * H, T0 + 72 * H));
    assert_eq!(
        conv.window,
        Some(Span {
            start: T0,
            end: T0 + 24 * H
        })
    );
    assert_eq!(
        conv.entry_point,
        Some(Span {
            start: T0,
            end: T0 + 72 * H
        })
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
        "2,1,,,,,,",
        "2,,,,,,cmp_a,",
        "2,1,2,,,,,,1:2",
        "3,1,2,,,,,",
        "3,5,9,,,,,,1:x",
        "3,5,9,,,,,,2:1",
        "3,5,9,,,,,,1:2,3:4",
        "3,,,,,,,,1:2",
        "3,50,90,,,,,,10:20;5:8",
        "3,50,90,,,,,,10:20;20:30",
        "3,50,90,,,,,,10:50",
        "3,50,90,,,,,,60:70",
        "3,50,90,,,,,,",
        "99999999999999999999,,",
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
    let conv = run(&[inbound(T0, false), inbound(T0 + 10 * H, true)]);
    assert_eq!(conv.relevant_until_ms(), Some(T0 + 10 * H + ATTRIBUTION_MS));
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
        assert_eq!(Reason::parse(r.as_str()), Some(r));
    }
    for c in Category::ALL {
        assert_eq!(parse::<Category>(c.as_str()), c);
        assert_eq!(Category::parse(c.as_str()), Some(c));
    }
}
