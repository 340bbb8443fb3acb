//! Business messaging as billed today (API.md "Business messaging, as rated today"): windows
//! with a start, calls, the entry point from the first reply, delivered-only billing, dated
//! rule sets with volume tiers, the business-initiated limit, and the worked month of the README.
//! Message times are offsets from the app's manual clock start, never today's date.

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{json, Value};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

use crate::contract;
use crate::support::app::{spawn_app_with, token_of, ADMIN};
use crate::support::{spawn_app, Backend, TestApp};

/// Where the test app's manual clock starts.
const T0: OffsetDateTime = datetime!(2026-11-26 10:00:00 UTC);

fn at(offset: Duration) -> String {
    rfc3339(T0 + offset)
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

async fn post(app: &TestApp, path: &str, body: Value) -> (StatusCode, Value) {
    let res = app.post(path, ADMIN, body).await;
    (res.status(), res.json().await.unwrap())
}

fn inbound(id: &str, adv: &str, user: &str, when: String) -> Value {
    json!({"id": id, "advertiser_id": adv, "user": user, "direction": "inbound",
           "country": "IT", "at": when})
}

fn outbound(
    id: &str,
    adv: &str,
    user: &str,
    kind: &str,
    category: Option<&str>,
    when: String,
) -> Value {
    json!({"id": id, "advertiser_id": adv, "user": user, "direction": "outbound",
           "kind": kind, "category": category, "country": "IT", "at": when})
}

fn rule_sets(toml_text: &str) -> Vec<statusads::messaging::rules::RuleSetConfig> {
    #[derive(serde::Deserialize)]
    struct Root {
        rule_sets: Vec<statusads::messaging::rules::RuleSetConfig>,
    }
    toml::from_str::<Root>(toml_text).unwrap().rule_sets
}

async fn app_with_rules(backend: Backend, toml_text: &str) -> TestApp {
    let sets = rule_sets(toml_text);
    spawn_app_with(backend, move |s| s.messaging.rule_sets = sets).await
}

async fn invoice(app: &TestApp, key: &str, month: &str) -> Value {
    let res = app.get(&format!("/v1/invoices/{month}"), key).await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

async fn window_start_and_end_at_the_instant(backend: Backend) {
    let app = spawn_app(backend).await;
    let (adv, key) = app.advertiser("Shop").await;
    let (status, _) = post(
        &app,
        "/v1/messages",
        inbound("in", &adv, "u", at(Duration::ZERO)),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let free_form = |id: &str, offset| outbound(id, &adv, "u", "free_form", None, at(offset));
    let (_, body) = post(
        &app,
        "/v1/messages",
        free_form("in-at-start", Duration::ZERO),
    )
    .await;
    assert_eq!(
        body["reason"], "service_window",
        "the opening instant is inside"
    );
    let last = Duration::hours(23) + Duration::minutes(59) + Duration::seconds(59);
    let (_, body) = post(&app, "/v1/messages", free_form("last-second", last)).await;
    assert_eq!(body["reason"], "service_window", "23:59:59 is inside");
    for (id, offset) in [
        ("at-end", Duration::hours(24)),
        ("before", Duration::seconds(-1)),
    ] {
        let (status, body) = post(&app, "/v1/messages", free_form(id, offset)).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("outside_service_window")
            ),
            "{id}"
        );
    }

    // The defects as reported: an inbound on the 30th, then messages dated before it.
    let (other, other_key) = app.advertiser("Other").await;
    post(
        &app,
        "/v1/messages",
        inbound("i", &other, "v", at(Duration::days(4))),
    )
    .await;
    let (status, body) = post(
        &app,
        "/v1/messages",
        outbound("f", &other, "v", "free_form", None, at(Duration::days(3))),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("outside_service_window")
        )
    );
    let (_, body) = post(
        &app,
        "/v1/messages",
        outbound(
            "t",
            &other,
            "v",
            "template",
            Some("utility"),
            at(-Duration::days(25)),
        ),
    )
    .await;
    assert_eq!(
        (body["reason"].as_str(), body["charge_micros"].as_i64()),
        (Some("rated"), Some(8_000)),
        "a utility template before the window opened is charged"
    );
    assert_eq!(
        invoice(&app, &other_key, "2026-11").await["total_micros"],
        8_000
    );

    // An id ending in ":status" would share the ledger id of message "m1"'s delivery status
    // (one of the two charges then dropped as a repeat): refused.
    let (status, body) = post(
        &app,
        "/v1/messages",
        inbound("m1:status", &adv, "u", at(Duration::hours(1))),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_message"))
    );

    // Far-future and far-past times are refused, and change nothing.
    for when in [
        "9999-12-31T23:59:59Z",
        "1999-12-31T23:59:59Z",
        "3000-01-01T00:00:00Z",
    ] {
        let (status, body) =
            post(&app, "/v1/messages", inbound("far", &adv, "u", when.into())).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_date")),
            "{when}"
        );
    }
    let (_, body) = post(
        &app,
        "/v1/messages",
        outbound(
            "after-far",
            &adv,
            "u",
            "template",
            Some("marketing"),
            at(Duration::days(2)),
        ),
    )
    .await;
    assert_eq!(body["charge_micros"], 61_000);
    assert_eq!(invoice(&app, &key, "2026-11").await["total_micros"], 61_000);
}

/// Inbounds at 0 and 40 h (the first window lapsed 16 h before the second opened), then a
/// free-form reply dated 1 h, reported now: its answer.
async fn a_late_reply(app: &TestApp, adv: &str) -> (StatusCode, Value) {
    for (id, offset) in [("first", Duration::ZERO), ("second", Duration::hours(40))] {
        let (status, _) = post(app, "/v1/messages", inbound(id, adv, "u", at(offset))).await;
        assert_eq!(status, StatusCode::OK, "{id}");
    }
    let reply = outbound("reply", adv, "u", "free_form", None, at(Duration::hours(1)));
    post(app, "/v1/messages", reply).await
}

/// A later inbound opened a new window after the first lapsed; messages sent inside the first
/// and reported only now are rated by it: free, never refused, never counted as
/// business-initiated.
async fn a_message_reported_late_is_rated_by_the_window_of_its_time(backend: Backend) {
    let app = spawn_app(backend).await;
    let (adv, key) = app.advertiser("Late").await;
    let (status, body) = a_late_reply(&app, &adv).await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (StatusCode::OK, Some("service_window")),
        "{body}"
    );
    assert_eq!(body["window_expires_at"], at(Duration::hours(24)));
    let utility =
        |id: &str, offset| outbound(id, &adv, "u", "template", Some("utility"), at(offset));
    let rated = |body: Value| {
        let app = &app;
        async move {
            let (_, answer) = post(app, "/v1/messages", body).await;
            (
                answer["reason"].as_str().map(str::to_owned),
                answer["charge_micros"].as_i64(),
            )
        }
    };
    let free = (Some("service_window".to_owned()), Some(0));
    assert_eq!(rated(utility("in-first", Duration::hours(2))).await, free);
    // Nothing was open between the two windows.
    assert_eq!(
        rated(utility("between", Duration::hours(30))).await,
        (Some("rated".to_owned()), Some(8_000))
    );
    assert_eq!(rated(utility("in-second", Duration::hours(50))).await, free);
    assert_eq!(invoice(&app, &key, "2026-11").await["total_micros"], 8_000);
}

/// With `messaging.keep_lapsed_windows = false` (nodes of an earlier build share the store),
/// a conversation is stored in the form they read, and a late reply finds no window again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_lapsed_windows_the_state_keeps_the_earlier_form() {
    use redis::AsyncCommands;
    let app = spawn_app_with(Backend::Redis, |s| {
        s.messaging.keep_lapsed_windows = false;
    })
    .await;
    let (adv, _) = app.advertiser("Late").await;
    let (status, body) = a_late_reply(&app, &adv).await;
    let mut redis = app.redis.as_ref().unwrap().async_connection().await;
    let keys: Vec<String> = redis.keys("conv:*").await.unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let state: String = redis.get(&keys[0]).await.unwrap();
    assert!(state.starts_with("2,"), "{state}");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("outside_service_window")
        )
    );
}

/// A conversation's state is kept, counted from now, until a day after the last instant it can
/// change a rating: an inbound reported 20 h late keeps it 28 h, one dated 3 days ahead 5 days.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_lives_a_day_past_its_window_counted_from_now() {
    use redis::AsyncCommands;
    let app = spawn_app(Backend::Redis).await;
    let (adv, _) = app.advertiser("Shop").await;
    let mut redis = app.redis.as_ref().unwrap().async_connection().await;
    for (user, offset, lives) in [
        ("late", -Duration::hours(20), Duration::hours(28)),
        ("ahead", Duration::days(3), Duration::days(5)),
    ] {
        let (status, _) = post(&app, "/v1/messages", inbound(user, &adv, user, at(offset))).await;
        assert_eq!(status, StatusCode::OK, "{user}");
        let keys: Vec<String> = redis.keys(format!("conv:*:{user}")).await.unwrap();
        assert_eq!(keys.len(), 1, "{user}: {keys:?}");
        let ttl_ms: i64 = redis.pttl(&keys[0]).await.unwrap();
        let expected = lives.whole_milliseconds() as i64;
        assert!(
            (expected - 60_000..=expected).contains(&ttl_ms),
            "{user}: {ttl_ms} ms, expected {expected}"
        );
    }
}

async fn a_call_opens_a_window(backend: Backend) {
    let app = spawn_app(backend).await;
    let (adv, _) = app.advertiser("Callee").await;
    let mut call = inbound("call-1", &adv, "u", at(Duration::ZERO));
    call["kind"] = json!("call");
    let (status, body) = post(&app, "/v1/messages", call).await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (StatusCode::OK, Some("inbound"))
    );
    assert_eq!(body["window_expires_at"], at(Duration::hours(24)));
    let (_, body) = post(
        &app,
        "/v1/messages",
        outbound(
            "reply",
            &adv,
            "u",
            "free_form",
            None,
            at(Duration::hours(3)),
        ),
    )
    .await;
    assert_eq!(body["reason"], "service_window");
    let mut outbound_call = outbound("oc", &adv, "u", "call", None, at(Duration::hours(3)));
    outbound_call["category"] = Value::Null;
    let (status, body) = post(&app, "/v1/messages", outbound_call).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("outbound_call"))
    );
}

/// A chat campaign's ad clicked by `user`: (advertiser, key, campaign, click id).
async fn clicked(
    app: &TestApp,
    name: &str,
    user: &str,
    extra: Value,
) -> (String, String, String, String) {
    let (adv, key) = app.advertiser(name).await;
    let mut body = json!({"objective": "chat", "chat": {"prefilled_text": "Hi"}});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let campaign = app.live_campaign(&key, body).await;
    let slots = app.slots(user, None, 12).await;
    let slot = slots
        .iter()
        .find(|s| s["ad"]["campaign_id"] == campaign.as_str())
        .expect("the chat ad is served");
    let click_id = slot["ad"]["cta"]["click_id"].as_str().unwrap().to_owned();
    let token = token_of(slot);
    assert_eq!(
        app.events(&[(&token, "render"), (&token, "click")]).await,
        vec!["accepted", "accepted"]
    );
    (adv, key, campaign, click_id)
}

async fn entry_point_counts_from_the_first_reply(backend: Backend) {
    let app = spawn_app(backend).await;
    let (adv, _, _, click) = clicked(&app, "Entry", "u1", json!({})).await;
    let mut first = inbound("in", &adv, "wa-1", at(Duration::ZERO));
    first["click_id"] = json!(click);
    post(&app, "/v1/messages", first).await;
    let reply = Duration::hours(23);
    let marketing =
        |id: &str, offset| outbound(id, &adv, "wa-1", "template", Some("marketing"), at(offset));
    let (_, body) = post(&app, "/v1/messages", marketing("r", reply)).await;
    assert_eq!(
        body["reason"], "free_entry_point",
        "reply at +23 h opens it"
    );
    let (_, body) = post(
        &app,
        "/v1/messages",
        marketing("r2", reply + Duration::hours(72) - Duration::seconds(1)),
    )
    .await;
    assert_eq!(
        body["reason"], "free_entry_point",
        "free until reply + 72 h"
    );
    let (_, body) = post(
        &app,
        "/v1/messages",
        marketing("r3", reply + Duration::hours(72)),
    )
    .await;
    assert_eq!(
        (body["reason"].as_str(), body["charge_micros"].as_i64()),
        (Some("rated"), Some(61_000))
    );
    // Free-form during the entry point, with the window closed: refused.
    let (status, body) = post(
        &app,
        "/v1/messages",
        outbound(
            "ff",
            &adv,
            "wa-1",
            "free_form",
            None,
            at(Duration::hours(30)),
        ),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("outside_service_window")
        )
    );
    let (_, body) = post(
        &app,
        "/v1/messages",
        outbound(
            "ff-in",
            &adv,
            "wa-1",
            "free_form",
            None,
            at(Duration::hours(23) + Duration::minutes(30)),
        ),
    )
    .await;
    assert_eq!(
        body["reason"], "free_entry_point",
        "inside the window it is free"
    );

    // A first reply at +25 h opens no entry point.
    let (late, _, _, late_click) = clicked(&app, "Late", "u2", json!({})).await;
    let mut first = inbound("in", &late, "wa-2", at(Duration::ZERO));
    first["click_id"] = json!(late_click);
    post(&app, "/v1/messages", first).await;
    let (_, body) = post(
        &app,
        "/v1/messages",
        outbound(
            "r",
            &late,
            "wa-2",
            "template",
            Some("marketing"),
            at(Duration::hours(25)),
        ),
    )
    .await;
    assert_eq!(body["reason"], "rated");
    let (_, body) = post(
        &app,
        "/v1/messages",
        outbound(
            "r2",
            &late,
            "wa-2",
            "template",
            Some("marketing"),
            at(Duration::hours(30)),
        ),
    )
    .await;
    assert_eq!(body["reason"], "rated");
}

async fn sent_then_failed_voids_and_delivered_charges_once(backend: Backend) {
    let app = Arc::new(spawn_app(backend).await);
    let (adv, key) = app.advertiser("Delivery").await;
    let sent = |id: &str| {
        let mut body = outbound(
            id,
            &adv,
            "u",
            "template",
            Some("marketing"),
            at(Duration::ZERO),
        );
        body["delivery"] = json!("sent");
        body
    };
    let (_, body) = post(&app, "/v1/messages", sent("will-fail")).await;
    assert_eq!(
        (body["billing"].as_str(), body["charge_micros"].as_i64()),
        (Some("pending"), Some(61_000))
    );
    assert_eq!(
        invoice(&app, &key, "2026-11").await["total_micros"],
        0,
        "pending is not invoiced"
    );
    let status =
        |s: &str| json!({"advertiser_id": adv, "status": s, "at": at(Duration::minutes(1))});
    let (code, body) = post(&app, "/v1/messages/will-fail/status", status("failed")).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        body,
        json!({"status": "accepted", "billing": "void", "charge_micros": 0})
    );
    let (_, body) = post(&app, "/v1/messages/will-fail/status", status("delivered")).await;
    assert_eq!(
        body,
        json!({"status": "duplicate", "billing": "void", "charge_micros": 0})
    );

    post(&app, "/v1/messages", sent("will-arrive")).await;
    let callbacks = (0..20).map(|i| {
        let (app, body) = (
            app.clone(),
            status(if i % 2 == 0 { "delivered" } else { "read" }),
        );
        tokio::spawn(async move { post(&app, "/v1/messages/will-arrive/status", body).await })
    });
    let answers: Vec<(StatusCode, Value)> = futures_util::future::join_all(callbacks)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let accepted = answers
        .iter()
        .filter(|(_, b)| b["status"] == "accepted")
        .count();
    assert_eq!(accepted, 1, "{answers:?}");
    assert!(answers.iter().all(|(c, b)| *c == StatusCode::OK
        && b["billing"] == "final"
        && b["charge_micros"] == 61_000));
    // The message itself, sent again, is a duplicate and says it is final now.
    let (_, body) = post(&app, "/v1/messages", sent("will-arrive")).await;
    assert_eq!(
        (body["status"].as_str(), body["billing"].as_str()),
        (Some("duplicate"), Some("final"))
    );

    let lines = invoice(&app, &key, "2026-11").await["lines"].clone();
    assert_eq!(
        lines,
        json!([{"kind": "messages", "category": "marketing", "country": "IT", "quantity": 1, "amount_micros": 61_000}])
    );
    let (code, _) = post(&app, "/v1/messages/never-sent/status", status("delivered")).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let (code, _) = post(
        &app,
        "/v1/messages/will-arrive/status",
        json!({"advertiser_id": adv, "status": "lost", "at": at(Duration::ZERO)}),
    )
    .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    let (code, body) = post(
        &app,
        "/v1/messages/will-arrive/status",
        json!({"advertiser_id": adv, "status": "read", "at": "9999-01-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_date"))
    );
    let res = app
        .post("/v1/messages/will-arrive/status", &key, status("read"))
        .await;
    assert_eq!(
        res.status(),
        StatusCode::FORBIDDEN,
        "advertisers cannot report deliveries"
    );
}

const TIERED: &str = r#"
[[rule_sets]]
effective_from = "2025-07-01"
utility_free_in_window = true
default_micros = 50000
category_defaults = { utility = 8000, marketing = 40000, authentication = 25000 }
tiers = [{ country = "IT", category = "utility", steps = [{ from = 1, micros = 8000 }, { from = 3, micros = 6000 }] }]
"#;

async fn tiers_cross_a_boundary_within_a_month_and_reset_the_next(backend: Backend) {
    let app = app_with_rules(backend, TIERED).await;
    let (adv, key) = app.advertiser("Tiered").await;
    let (other, _) = app.advertiser("Elsewhere").await;
    let utility = |adv: &str, id: &str, user: &str, when: String| {
        outbound(id, adv, user, "template", Some("utility"), when)
    };
    // Another advertiser's messages do not move this one's count.
    post(
        &app,
        "/v1/messages",
        utility(&other, "x", "a", at(Duration::ZERO)),
    )
    .await;
    let mut charged = Vec::new();
    for i in 0..4 {
        let (_, body) = post(
            &app,
            "/v1/messages",
            utility(
                &adv,
                &format!("n{i}"),
                &format!("user-{i}"),
                at(Duration::hours(i)),
            ),
        )
        .await;
        charged.push((
            body["charge_micros"].as_i64().unwrap(),
            body["tier"].as_u64().unwrap(),
        ));
    }
    assert_eq!(charged, [(8_000, 1), (8_000, 1), (6_000, 2), (6_000, 2)]);
    // Next month the count starts again.
    let december = datetime!(2026-12-01 00:00:00 UTC);
    let (_, body) = post(
        &app,
        "/v1/messages",
        utility(&adv, "dec", "user-0", rfc3339(december)),
    )
    .await;
    assert_eq!(
        (body["charge_micros"].as_i64(), body["tier"].as_u64()),
        (Some(8_000), Some(1))
    );
    let mut france = utility(&adv, "fr", "u", at(Duration::ZERO));
    france["country"] = json!("FR");
    let (_, body) = post(&app, "/v1/messages", france).await;
    assert_eq!(body.get("tier"), None, "untiered markets name no tier");
    let nov = invoice(&app, &key, "2026-11").await;
    assert_eq!(
        nov["lines"],
        json!([
            {"kind": "messages", "category": "utility", "country": "FR", "quantity": 1, "amount_micros": 8_000},
            {"kind": "messages", "category": "utility", "country": "IT", "quantity": 4, "amount_micros": 28_000},
        ])
    );
    assert_eq!(invoice(&app, &key, "2026-12").await["total_micros"], 8_000);
}

async fn rule_set_boundary(backend: Backend) {
    // A second set from five days after the clock's start: dates derived from it.
    let boundary = (T0 + Duration::days(5)).date();
    let text = format!(
        "{TIERED}
[[rule_sets]]
effective_from = \"{boundary}\"
utility_free_in_window = false
default_micros = 50000
category_defaults = {{ utility = 9000, marketing = 40000, authentication = 25000 }}
service_allowance = {{ free_per_month = 1, category = \"utility\" }}
"
    );
    let app = app_with_rules(backend, &text).await;
    let (adv, _) = app.advertiser("Dated").await;
    let midnight = boundary.midnight().assume_utc();
    let send = |id: &str, kind: &str, category: Option<&str>, when: OffsetDateTime| {
        let mut body = outbound(id, &adv, "u", kind, category, rfc3339(when));
        body["country"] = json!("DE");
        body
    };
    post(
        &app,
        "/v1/messages",
        inbound("in", &adv, "u", rfc3339(midnight - Duration::hours(1))),
    )
    .await;
    let (_, before) = post(
        &app,
        "/v1/messages",
        send(
            "before",
            "template",
            Some("utility"),
            midnight - Duration::seconds(1),
        ),
    )
    .await;
    assert_eq!(
        (
            before["reason"].as_str(),
            before["charge_micros"].as_i64(),
            before["rule_set"].as_str()
        ),
        (Some("service_window"), Some(0), Some("2025-07-01"))
    );
    let (_, after) = post(
        &app,
        "/v1/messages",
        send("after", "template", Some("utility"), midnight),
    )
    .await;
    assert_eq!(
        (
            after["reason"].as_str(),
            after["charge_micros"].as_i64(),
            after["rule_set"].as_str()
        ),
        (
            Some("rated"),
            Some(9_000),
            Some(boundary.to_string().as_str())
        ),
        "utility charged inside the window from the boundary on"
    );
    // Service messages: the first of the month free, the next at the utility rate.
    let (_, first) = post(
        &app,
        "/v1/messages",
        send("s1", "free_form", None, midnight + Duration::minutes(1)),
    )
    .await;
    let (_, second) = post(
        &app,
        "/v1/messages",
        send("s2", "free_form", None, midnight + Duration::minutes(2)),
    )
    .await;
    assert_eq!(
        (
            first["reason"].as_str(),
            first["charge_micros"].as_i64(),
            second["charge_micros"].as_i64()
        ),
        (Some("service_window"), Some(0), Some(9_000))
    );
}

/// Sets an advertiser's `messaging_limit` as the operator.
async fn set_limit(app: &TestApp, adv: &str, limit: Value) -> reqwest::Response {
    app.send(
        reqwest::Method::PATCH,
        &format!("/v1/advertisers/{adv}"),
        Some(ADMIN),
        Some(json!({ "messaging_limit": limit })),
    )
    .await
}

async fn limit_reached_at_exactly_n_distinct_users(backend: Backend) {
    let app = Arc::new(spawn_app(backend).await);
    let (adv, _) = app.advertiser("Bulk").await;
    assert_eq!(
        set_limit(&app, &adv, json!(7)).await.status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let res = set_limit(&app, &adv, json!(250)).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["messaging_limit"], 250);
    // 260 distinct users at once: exactly 250 get through.
    let sends = (0..260).map(|i| {
        let (app, adv) = (app.clone(), adv.clone());
        tokio::spawn(async move {
            post(
                &app,
                "/v1/messages",
                outbound(
                    &format!("m{i}"),
                    &adv,
                    &format!("user-{i}"),
                    "template",
                    Some("marketing"),
                    at(Duration::ZERO),
                ),
            )
            .await
        })
    });
    let answers: Vec<(StatusCode, Value)> = futures_util::future::join_all(sends)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let ok: Vec<usize> = (0..answers.len())
        .filter(|i| answers[*i].0 == StatusCode::OK)
        .collect();
    let refused = answers
        .iter()
        .filter(|(c, b)| {
            *c == StatusCode::UNPROCESSABLE_ENTITY
                && b["error"]["code"] == "messaging_limit_reached"
        })
        .count();
    assert_eq!((ok.len(), refused), (250, 10));
    // A user already reached may be reached again; inside a window nothing is business-initiated.
    let reached = format!("user-{}", ok[0]);
    let (code, _) = post(
        &app,
        "/v1/messages",
        outbound(
            "again",
            &adv,
            &reached,
            "template",
            Some("marketing"),
            at(Duration::hours(1)),
        ),
    )
    .await;
    assert_eq!(
        code,
        StatusCode::OK,
        "a user reached in the last 24 h may be reached again"
    );
    post(
        &app,
        "/v1/messages",
        inbound("open", &adv, "fresh", at(Duration::hours(1))),
    )
    .await;
    let (code, _) = post(
        &app,
        "/v1/messages",
        outbound(
            "in-window",
            &adv,
            "fresh",
            "template",
            Some("marketing"),
            at(Duration::hours(2)),
        ),
    )
    .await;
    assert_eq!(
        code,
        StatusCode::OK,
        "inside a window the limit does not apply"
    );
    let (code, body) = post(
        &app,
        "/v1/messages",
        outbound(
            "new",
            &adv,
            "newcomer",
            "template",
            Some("marketing"),
            at(Duration::hours(2)),
        ),
    )
    .await;
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("messaging_limit_reached")
        )
    );
    // 24 hours later the first users have rolled out of the window.
    let (code, _) = post(
        &app,
        "/v1/messages",
        outbound(
            "later",
            &adv,
            "newcomer",
            "template",
            Some("marketing"),
            at(Duration::hours(24)),
        ),
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    // Unlimited again.
    let res = set_limit(&app, &adv, Value::Null).await;
    assert_eq!(
        res.json::<Value>().await.unwrap()["messaging_limit"],
        Value::Null
    );
}

/// A business-initiated template dated days ahead is admitted (nobody was reached near its
/// date) but must not make the limit forget the users reached today: the next new user today
/// is still one too many.
async fn a_message_dated_ahead_keeps_the_limit_of_today(backend: Backend) {
    let app = Arc::new(spawn_app(backend).await);
    let (adv, _) = app.advertiser("Ahead").await;
    assert_eq!(
        set_limit(&app, &adv, json!(250)).await.status(),
        StatusCode::OK
    );
    let template = |id: &str, user: &str, when: Duration| {
        outbound(id, &adv, user, "template", Some("marketing"), at(when))
    };
    let sends = (0..250).map(|i| {
        let (app, body) = (
            app.clone(),
            template(&format!("m{i}"), &format!("user-{i}"), Duration::ZERO),
        );
        tokio::spawn(async move { post(&app, "/v1/messages", body).await.0 })
    });
    for code in futures_util::future::join_all(sends).await {
        assert_eq!(code.unwrap(), StatusCode::OK);
    }
    let (code, _) = post(
        &app,
        "/v1/messages",
        template("ahead", "user-ahead", Duration::days(3)),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "nobody was reached near its date");
    let (code, body) = post(
        &app,
        "/v1/messages",
        template("one-too-many", "user-251", Duration::hours(1)),
    )
    .await;
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("messaging_limit_reached")
        ),
        "{body}"
    );
}

/// The rule set of the README's worked month: the default July-2025 rates, with utility tiers
/// in Italy small enough to cross in a few messages.
pub const WORKED_MONTH_RULES: &str = r#"
[[rule_sets]]
effective_from = "2025-07-01"
utility_free_in_window = true
default_micros = 50000
category_defaults = { utility = 8000, marketing = 40000, authentication = 25000 }
prices = [{ country = "IT", category = "marketing", micros = 61000 }]
tiers = [{ country = "IT", category = "utility", steps = [{ from = 1, micros = 8000 }, { from = 3, micros = 6000 }] }]
"#;

/// The README's worked month, step by step: its invoice to the micro.
async fn the_readme_worked_month_invoice(backend: Backend) {
    let app = app_with_rules(backend, WORKED_MONTH_RULES).await;
    // 1. A click-to-chat ad is rendered and tapped by Anna (one billed render at the reserve).
    let (adv, key, campaign, click) = clicked(&app, "Trattoria", "anna-device", json!({})).await;
    let send = |id: &str, user: &str, kind: &str, category: Option<&str>, hours: i64| {
        outbound(id, &adv, user, kind, category, at(Duration::hours(hours)))
    };
    let expect = |body: &Value, reason: &str, charge: i64| {
        assert_eq!(
            (body["reason"].as_str(), body["charge_micros"].as_i64()),
            (Some(reason), Some(charge)),
            "{body}"
        );
    };
    // 2. Anna writes from the ad; the platform reports the conversation.
    let mut first = inbound("anna-1", &adv, "anna", at(Duration::ZERO));
    first["click_id"] = json!(click);
    post(&app, "/v1/messages", first).await;
    let (status, _) = post(&app, "/v1/conversions", json!({"advertiser_id": adv, "click_id": click, "type": "conversation_started", "at": at(Duration::ZERO)})).await;
    assert_eq!(status, StatusCode::OK);
    // 3. The first reply, an hour later, opens the free entry point for 72 h.
    expect(
        &post(
            &app,
            "/v1/messages",
            send("r1", "anna", "template", Some("marketing"), 1),
        )
        .await
        .1,
        "free_entry_point",
        0,
    );
    // 4. Two days on, outside the 24 h window but inside the entry point: still free.
    expect(
        &post(
            &app,
            "/v1/messages",
            send("r2", "anna", "template", Some("marketing"), 48),
        )
        .await
        .1,
        "free_entry_point",
        0,
    );
    // 5-8. Order updates (utility) to four other customers, none in a window.
    expect(
        &post(
            &app,
            "/v1/messages",
            send("u1", "bruno", "template", Some("utility"), 0),
        )
        .await
        .1,
        "rated",
        8_000,
    );
    expect(
        &post(
            &app,
            "/v1/messages",
            send("u2", "carla", "template", Some("utility"), 1),
        )
        .await
        .1,
        "rated",
        8_000,
    );
    let mut lost = send("u3", "dario", "template", Some("utility"), 2);
    lost["delivery"] = json!("sent");
    let (_, pending) = post(&app, "/v1/messages", lost).await;
    assert_eq!(
        (pending["billing"].as_str(), pending["tier"].as_u64()),
        (Some("pending"), Some(2))
    );
    let (_, failed) = post(
        &app,
        "/v1/messages/u3/status",
        json!({"advertiser_id": adv, "status": "failed", "at": at(Duration::hours(2))}),
    )
    .await;
    assert_eq!(
        failed,
        json!({"status": "accepted", "billing": "void", "charge_micros": 0})
    );
    let (_, third) = post(
        &app,
        "/v1/messages",
        send("u4", "elena", "template", Some("utility"), 3),
    )
    .await;
    expect(&third, "rated", 6_000);
    assert_eq!(
        third["tier"], 2,
        "the failed delivery took no place in the tiers"
    );
    // 9. After the entry point, a promotion to Anna is charged, and counts for the campaign.
    expect(
        &post(
            &app,
            "/v1/messages",
            send("r3", "anna", "template", Some("marketing"), 80),
        )
        .await
        .1,
        "rated",
        61_000,
    );

    let expected = json!({
        "lines": [
            {"kind": "impressions", "campaign_id": campaign, "quantity": 1, "amount_micros": 500},
            {"kind": "messages", "category": "marketing", "country": "IT", "quantity": 1, "amount_micros": 61_000},
            {"kind": "messages", "category": "utility", "country": "IT", "quantity": 3, "amount_micros": 22_000},
        ],
        "total_micros": 83_500,
    });
    let bill = invoice(&app, &key, "2026-11").await;
    assert_eq!(
        json!({"lines": bill["lines"], "total_micros": bill["total_micros"]}),
        expected
    );
    let res = app
        .get(
            &format!("/v1/reports/campaigns/{campaign}?from=2026-11-01&to=2026-11-30"),
            &key,
        )
        .await;
    let totals = res.json::<Value>().await.unwrap()["totals"].clone();
    assert_eq!(
        (
            totals["conversations"].as_u64(),
            totals["message_charges_micros"].as_i64(),
            totals["cost_per_conversation_micros"].as_i64()
        ),
        (Some(1), Some(61_000), Some(500))
    );

    match backend {
        Backend::Redis | Backend::InProcess => {
            let report = app.reconcile(false).await;
            assert!(report.differences.is_empty(), "{:?}", report.differences);
        }
        Backend::Embedded => {
            // The journal replays to the same invoice: on a copy of the data dir, since the
            // running app holds the lock on its own journal (one process per data_dir).
            let copy = crate::support::scratch::ScratchDir::new("worked-month-copy");
            let status = std::process::Command::new("cp")
                .arg("-a")
                .arg(app._data_dir.path().join("."))
                .arg(copy.path())
                .status()
                .unwrap();
            assert!(status.success());
            let dir = copy.path().to_path_buf();
            let sets = rule_sets(WORKED_MONTH_RULES);
            let again = spawn_app_with(Backend::Embedded, move |s| {
                s.store.data_dir = dir;
                s.messaging.rule_sets = sets;
            })
            .await;
            let bill = invoice(&again, &key, "2026-11").await;
            assert_eq!(
                json!({"lines": bill["lines"], "total_micros": bill["total_micros"]}),
                expected
            );
        }
    }
}

contract!(
    the_readme_worked_month_invoice,
    window_start_and_end_at_the_instant,
    a_message_reported_late_is_rated_by_the_window_of_its_time,
    a_call_opens_a_window,
    entry_point_counts_from_the_first_reply,
    sent_then_failed_voids_and_delivered_charges_once,
    tiers_cross_a_boundary_within_a_month_and_reset_the_next,
    rule_set_boundary,
    limit_reached_at_exactly_n_distinct_users,
    a_message_dated_ahead_keeps_the_limit_of_today,
);
