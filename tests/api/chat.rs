//! Click-to-chat ads, conversions, and business messages rated under the service-window rules.

use reqwest::StatusCode;
use serde_json::{json, Value};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

use crate::contract;
use crate::support::app::ADMIN;
use crate::support::{spawn_app, Backend, TestApp};

const T0: OffsetDateTime = datetime!(2026-11-26 10:00:00 UTC);

fn at(offset: Duration) -> String {
    (T0 + offset)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// A chat campaign's slot rendered and clicked by `user`: returns (advertiser id, key, campaign, click id).
async fn clicked_chat_ad(app: &TestApp, user: &str) -> (String, String, String, String) {
    let (adv, key) = app.advertiser("Pizzeria Roma").await;
    let campaign = app
        .live_campaign(
            &key,
            json!({"objective": "chat", "chat": {"prefilled_text": "Hi! I saw your ad"}}),
        )
        .await;
    let click_id = app.click_chat_ad(user).await;
    (adv, key, campaign, click_id)
}

/// A conversion of `click_id` at the clock's start; answers its status.
async fn convert(app: &TestApp, advertiser: &str, click_id: &str, kind: &str) -> String {
    app.convert(advertiser, click_id, kind, &at(Duration::ZERO))
        .await
}

/// Posts a message; returns (HTTP status, body).
async fn message(app: &TestApp, body: Value) -> (StatusCode, Value) {
    let res = app.post("/v1/messages", ADMIN, body).await;
    (res.status(), res.json().await.unwrap())
}

fn inbound(id: &str, advertiser: &str, offset: Duration, click_id: Option<&str>) -> Value {
    json!({"id": id, "advertiser_id": advertiser, "user": "wa-user-1", "direction": "inbound",
           "kind": "free_form", "category": null, "country": "IT", "click_id": click_id, "at": at(offset)})
}

fn outbound(
    id: &str,
    advertiser: &str,
    offset: Duration,
    kind: &str,
    category: Option<&str>,
    country: &str,
) -> Value {
    json!({"id": id, "advertiser_id": advertiser, "user": "wa-user-1", "direction": "outbound",
           "kind": kind, "category": category, "country": country, "at": at(offset)})
}

async fn chat_ads_carry_a_cta_and_conversions_attribute_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let (adv, key, campaign, click_id) = clicked_chat_ad(&app, "u1").await;
    let slots = app.slots("u2", None, 12).await;
    let cta = &slots[0]["ad"]["cta"];
    assert_eq!(
        cta["url"],
        "https://wa.me/390612345678?text=Hi%21%20I%20saw%20your%20ad"
    );
    assert_eq!(cta["label"], "Learn more");
    // A click id that was served but never clicked is not attributable yet.
    assert_eq!(
        convert(
            &app,
            &adv,
            cta["click_id"].as_str().unwrap(),
            "conversation_started"
        )
        .await,
        "unknown_click"
    );

    assert_eq!(
        convert(&app, &adv, &click_id, "conversation_started").await,
        "accepted"
    );
    assert_eq!(
        convert(&app, &adv, &click_id, "conversation_started").await,
        "duplicate"
    );
    assert_eq!(convert(&app, &adv, &click_id, "message").await, "accepted");
    assert_eq!(convert(&app, &adv, &click_id, "message").await, "accepted");
    let (other, _) = app.advertiser("Other").await;
    assert_eq!(
        convert(&app, &other, &click_id, "message").await,
        "unknown_click"
    );
    assert_eq!(
        convert(&app, &adv, "c1.nonsense", "message").await,
        "unknown_click"
    );
    assert_eq!(convert(&app, &adv, "", "message").await, "unknown_click");
    // Dated past the click's 30 days of attribution: unknown, on both backends alike.
    assert_eq!(
        app.convert(&adv, &click_id, "message", &at(Duration::days(31)))
            .await,
        "unknown_click"
    );

    let totals = app.report_totals(&key, &campaign).await;
    assert_eq!(
        (
            totals["conversations"].as_u64(),
            totals["messages"].as_u64()
        ),
        (Some(1), Some(2))
    );
    // Advertisers cannot report their own conversions.
    let res = app.post("/v1/conversions", &key, json!({"advertiser_id": adv, "click_id": click_id, "type": "message", "at": at(Duration::ZERO)})).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = app.post("/v1/conversions", ADMIN, json!({"advertiser_id": "adv_0000000000000000", "click_id": click_id, "type": "message", "at": at(Duration::ZERO)})).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    // A time outside the years 2000-2999 is refused and counts nothing.
    for when in ["1999-12-31T23:59:59Z", "3000-01-01T00:00:00Z"] {
        let res = app
            .post(
                "/v1/conversions",
                ADMIN,
                json!({"advertiser_id": adv, "click_id": click_id, "type": "message", "at": when}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_date", "{body}");
    }
    assert_eq!(
        app.report_totals(&key, &campaign).await["messages"].as_u64(),
        Some(2)
    );

    // Awareness campaigns have no CTA.
    let (_, plain_key) = app.advertiser("Plain").await;
    app.live_campaign(&plain_key, json!({})).await;
    let slots = app.slots("u3", None, 12).await;
    let plain = slots
        .iter()
        .find(|s| s["ad"]["advertiser"]["name"] == "Plain")
        .unwrap();
    assert_eq!(plain["ad"]["cta"], Value::Null);
}

async fn service_window_boundaries(backend: Backend) {
    let app = spawn_app(backend).await;
    let (adv, _) = app.advertiser("Shop").await;
    let (status, body) = message(&app, inbound("in-1", &adv, Duration::ZERO, None)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"status": "accepted", "charge_micros": 0, "currency": "EUR", "reason": "inbound",
               "window_expires_at": at(Duration::hours(24)), "billing": "final", "rule_set": "2025-07-01"})
    );

    let (_, body) = message(
        &app,
        outbound(
            "out-1",
            &adv,
            Duration::hours(23) + Duration::minutes(59),
            "free_form",
            None,
            "IT",
        ),
    )
    .await;
    assert_eq!(
        (body["reason"].as_str(), body["charge_micros"].as_i64()),
        (Some("service_window"), Some(0))
    );
    let (_, body) = message(
        &app,
        outbound(
            "out-2",
            &adv,
            Duration::hours(1),
            "template",
            Some("utility"),
            "IT",
        ),
    )
    .await;
    assert_eq!(
        (body["reason"].as_str(), body["charge_micros"].as_i64()),
        (Some("service_window"), Some(0)),
        "utility is free inside"
    );
    let (_, body) = message(
        &app,
        outbound(
            "out-3",
            &adv,
            Duration::hours(1),
            "template",
            Some("marketing"),
            "IT",
        ),
    )
    .await;

    assert_eq!(
        (body["reason"].as_str(), body["charge_micros"].as_i64()),
        (Some("rated"), Some(61_000)),
        "marketing always charged"
    );
    let (_, body) = message(
        &app,
        outbound(
            "out-4",
            &adv,
            Duration::hours(2),
            "template",
            Some("authentication"),
            "FR",
        ),
    )
    .await;
    assert_eq!(body["charge_micros"], 25_000);

    let late = Duration::hours(24) + Duration::minutes(1);
    let (status, body) =
        message(&app, outbound("out-5", &adv, late, "free_form", None, "IT")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["code"], "outside_service_window");
    let (_, body) = message(
        &app,
        outbound("out-6", &adv, late, "template", Some("utility"), "FR"),
    )
    .await;
    assert_eq!(
        (body["reason"].as_str(), body["charge_micros"].as_i64()),
        (Some("rated"), Some(8_000))
    );

    // A new inbound resets the window.
    let (_, body) = message(&app, inbound("in-2", &adv, Duration::hours(30), None)).await;
    assert_eq!(body["window_expires_at"], at(Duration::hours(54)));
    let (_, body) = message(
        &app,
        outbound("out-7", &adv, Duration::hours(31), "free_form", None, "IT"),
    )
    .await;
    assert_eq!(body["reason"], "service_window");

    // Bad shapes are refused with a code and change nothing.
    for (bad, code) in [
        (
            outbound("bad-1", &adv, Duration::hours(31), "template", None, "IT"),
            "template_without_category",
        ),
        (
            outbound(
                "bad-2",
                &adv,
                Duration::hours(31),
                "free_form",
                Some("marketing"),
                "IT",
            ),
            "free_form_with_category",
        ),
        (
            outbound(
                "bad-3",
                &adv,
                Duration::hours(31),
                "free_form",
                None,
                "Italy",
            ),
            "invalid_country",
        ),
    ] {
        let (status, body) = message(&app, bad).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some(code))
        );
    }
    let (status, _) = message(&app, json!({"id": "x", "advertiser_id": adv, "user": "u", "direction": "sideways", "country": "IT", "at": at(Duration::ZERO)})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = message(
        &app,
        inbound("in-3", "adv_0000000000000000", Duration::ZERO, None),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn free_entry_point_only_from_a_valid_click_of_the_same_advertiser(backend: Backend) {
    let app = spawn_app(backend).await;
    let (adv, _, _, click_id) = clicked_chat_ad(&app, "u1").await;
    let (status, body) =
        message(&app, inbound("in-1", &adv, Duration::ZERO, Some(&click_id))).await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (StatusCode::OK, Some("inbound"))
    );
    let marketing =
        |id: &'static str, offset| outbound(id, &adv, offset, "template", Some("marketing"), "IT");
    let (_, body) = message(&app, marketing("m-1", Duration::hours(2))).await;
    assert_eq!(
        (body["reason"].as_str(), body["charge_micros"].as_i64()),
        (Some("free_entry_point"), Some(0))
    );
    let (_, body) = message(&app, marketing("m-2", Duration::hours(48))).await;
    assert_eq!(body["reason"], "free_entry_point");
    let (_, body) = message(
        &app,
        marketing("m-3", Duration::hours(72) + Duration::minutes(1)),
    )
    .await;
    assert_eq!(
        body["reason"], "free_entry_point",
        "72 hours from the first reply (+2 h), not from the click"
    );
    let (_, body) = message(&app, marketing("m-4", Duration::hours(74))).await;
    assert_eq!(
        (body["reason"].as_str(), body["charge_micros"].as_i64()),
        (Some("rated"), Some(61_000))
    );

    // Another advertiser presenting this click id gets no entry point; neither does a made-up id.
    let (other, _) = app.advertiser("Other").await;
    message(
        &app,
        inbound("o-in", &other, Duration::ZERO, Some(&click_id)),
    )
    .await;
    let (_, body) = message(
        &app,
        outbound(
            "o-m",
            &other,
            Duration::hours(2),
            "template",
            Some("marketing"),
            "IT",
        ),
    )
    .await;
    assert_eq!(body["reason"], "rated");
    let (third, _) = app.advertiser("Third").await;
    message(
        &app,
        inbound(
            "t-in",
            &third,
            Duration::ZERO,
            Some("c3.0123456789abcdef0123456789abcdef"),
        ),
    )
    .await;
    let (_, body) = message(
        &app,
        outbound(
            "t-m",
            &third,
            Duration::hours(2),
            "template",
            Some("marketing"),
            "IT",
        ),
    )
    .await;
    assert_eq!(body["reason"], "rated");

    // A first reply later than 24 h after the click inbound opens no entry point.
    let (late, _, _, late_click) = clicked_chat_ad(&app, "u9").await;
    let user = |mut body: Value| {
        body["user"] = json!("wa-user-late");
        body
    };
    message(
        &app,
        user(inbound("l-in", &late, Duration::ZERO, Some(&late_click))),
    )
    .await;
    let (_, body) = message(
        &app,
        user(outbound(
            "l-m",
            &late,
            Duration::hours(25),
            "template",
            Some("marketing"),
            "IT",
        )),
    )
    .await;
    assert_eq!(body["reason"], "rated");
}

async fn the_same_message_id_concurrently_is_charged_once(backend: Backend) {
    let app = std::sync::Arc::new(spawn_app(backend).await);
    let (adv, key) = app.advertiser("Once").await;
    let sends = (0..20).map(|_| {
        let (app, adv) = (app.clone(), adv.clone());
        tokio::spawn(async move {
            message(
                &app,
                outbound(
                    "same-id",
                    &adv,
                    Duration::ZERO,
                    "template",
                    Some("marketing"),
                    "IT",
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
    let accepted = answers
        .iter()
        .filter(|(_, b)| b["status"] == "accepted")
        .count();
    let duplicates = answers
        .iter()
        .filter(|(_, b)| b["status"] == "duplicate")
        .count();
    assert_eq!((accepted, duplicates), (1, 19), "{answers:?}");
    assert!(answers
        .iter()
        .all(|(_, b)| b["charge_micros"] == 61_000 && b["reason"] == "rated"));

    let invoice: Value = app
        .get("/v1/invoices/2026-11", &key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        invoice["lines"],
        json!([{"kind": "messages", "category": "marketing", "country": "IT", "quantity": 1, "amount_micros": 61_000}])
    );
}

async fn message_invoice_lines_equal_the_ledger(backend: Backend) {
    let app = spawn_app(backend).await;
    let (adv, key) = app.advertiser("Invoiced").await;
    let (other, other_key) = app.advertiser("Someone else").await;
    let mut expected_total = 0;
    for (i, (category, country, price)) in [
        ("marketing", "IT", 61_000),
        ("marketing", "IT", 61_000),
        ("marketing", "IN", 9_000),
        ("utility", "FR", 8_000),
        ("authentication", "BR", 25_000),
    ]
    .into_iter()
    .enumerate()
    {
        let (_, body) = message(
            &app,
            outbound(
                &format!("inv-{i}"),
                &adv,
                Duration::hours(i as i64),
                "template",
                Some(category),
                country,
            ),
        )
        .await;
        assert_eq!(body["charge_micros"], price);
        expected_total += price;
    }
    message(
        &app,
        outbound(
            "other-1",
            &other,
            Duration::ZERO,
            "template",
            Some("marketing"),
            "IT",
        ),
    )
    .await;
    // Free messages are never invoiced.
    message(&app, inbound("free-in", &adv, Duration::hours(10), None)).await;
    message(
        &app,
        outbound(
            "free-out",
            &adv,
            Duration::hours(11),
            "free_form",
            None,
            "IT",
        ),
    )
    .await;

    let invoice: Value = app
        .get("/v1/invoices/2026-11", &key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        invoice["lines"],
        json!([
            {"kind": "messages", "category": "authentication", "country": "BR", "quantity": 1, "amount_micros": 25_000},
            {"kind": "messages", "category": "marketing", "country": "IN", "quantity": 1, "amount_micros": 9_000},
            {"kind": "messages", "category": "marketing", "country": "IT", "quantity": 2, "amount_micros": 122_000},
            {"kind": "messages", "category": "utility", "country": "FR", "quantity": 1, "amount_micros": 8_000},
        ])
    );
    assert_eq!(invoice["total_micros"], expected_total);
    let csv = app
        .http
        .get(app.url("/v1/invoices/2026-11"))
        .bearer_auth(&key)
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(csv.contains("messages,,marketing,IT,2,122000\r\n"), "{csv}");
    let theirs: Value = app
        .get("/v1/invoices/2026-11", &other_key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(theirs["total_micros"], 61_000);

    if backend != Backend::Embedded {
        let report = app.reconcile(false).await;
        assert!(report.differences.is_empty(), "{:?}", report.differences);
        assert_eq!(
            report.records, 8,
            "every message is a ledger record, charged or free"
        );
    }
}

async fn report(app: &TestApp, key: &str, campaign: &str) -> Value {
    let res = app
        .get(
            &format!("/v1/reports/campaigns/{campaign}?from=2026-11-01&to=2026-11-30"),
            key,
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

async fn conversation_funnel_suppression_and_cost(backend: Backend) {
    let app = spawn_app(backend).await;
    let (adv, key) = app.advertiser("Funnel").await;
    let campaign = app
        .live_campaign(
            &key,
            json!({"objective": "chat", "chat": {"prefilled_text": "Hi"}, "suppress_after": "conversation"}),
        )
        .await;
    let view: Value = app
        .get(&format!("/v1/campaigns/{campaign}"), &key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(view["suppress_after"], "conversation");
    let click_id = app.click_chat_ad("u1").await;
    // Before a conversation the campaign still serves this user.
    assert_eq!(app.slots("u1", None, 12).await.len(), 1);
    assert_eq!(
        convert(&app, &adv, &click_id, "conversation_started").await,
        "accepted"
    );
    assert_eq!(convert(&app, &adv, &click_id, "message").await, "accepted");
    assert!(
        app.slots("u1", None, 12).await.is_empty(),
        "never shown again to a user who started a conversation"
    );
    assert_eq!(
        app.slots("u2", None, 12).await.len(),
        1,
        "others still see it"
    );

    // The conversions API lists both, no user identifier.
    let res = app
        .get(
            &format!("/v1/conversions?campaign_id={campaign}&from=2026-11-01&to=2026-11-30"),
            &key,
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body["conversions"],
        json!([
            {"click_id": click_id, "campaign_id": campaign, "type": "conversation_started", "at": at(Duration::ZERO)},
            {"click_id": click_id, "campaign_id": campaign, "type": "message", "at": at(Duration::ZERO)},
        ])
    );
    assert_eq!(
        body.as_object().unwrap().len(),
        2,
        "conversions and as_of: {body}"
    );
    let as_of = body["as_of"].as_str().unwrap();
    assert!(
        OffsetDateTime::parse(as_of, &time::format_description::well_known::Rfc3339).is_ok(),
        "{as_of}"
    );
    assert!(!body.to_string().contains("u1"));
    let (other, other_key) = app.advertiser("Nosy").await;
    let _ = other;
    let res = app
        .get(
            &format!("/v1/conversions?campaign_id={campaign}"),
            &other_key,
        )
        .await;
    assert_eq!(
        res.status(),
        StatusCode::NOT_FOUND,
        "another advertiser's campaign"
    );
    let res = app.get("/v1/conversions", ADMIN).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    // Charged messages of the conversation count for the campaign; a failed one does not.
    message(&app, inbound("in", &adv, Duration::ZERO, Some(&click_id))).await;
    let late = Duration::hours(25);
    let (_, body) = message(
        &app,
        outbound("late", &adv, late, "template", Some("marketing"), "IT"),
    )
    .await;
    assert_eq!(
        (body["reason"].as_str(), body["charge_micros"].as_i64()),
        (Some("rated"), Some(61_000))
    );
    let mut sent = outbound("lost", &adv, late, "template", Some("marketing"), "IT");
    sent["delivery"] = json!("sent");
    message(&app, sent).await;
    let res = app
        .post(
            "/v1/messages/lost/status",
            ADMIN,
            json!({"advertiser_id": adv, "status": "failed", "at": at(late)}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let report = report(&app, &key, &campaign).await;
    let totals = &report["totals"];
    assert_eq!(
        (
            totals["rendered"].as_u64(),
            totals["conversations"].as_u64(),
            totals["messages"].as_u64(),
            totals["spend_micros"].as_i64(),
            totals["message_charges_micros"].as_i64(),
            totals["cost_per_conversation_micros"].as_i64(),
        ),
        (
            Some(1),
            Some(1),
            Some(1),
            Some(500),
            Some(61_000),
            Some(500)
        )
    );
    let day = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["date"] == "2026-11-27")
        .unwrap();
    assert_eq!(
        day["message_charges_micros"], 61_000,
        "on the message's day"
    );
    // A message has no request context: by country, its charge is under `unknown` (its
    // recipient's country is on the invoice line, not in the report).
    let res = app
        .get(
            &format!("/v1/reports/campaigns/{campaign}?from=2026-11-01&to=2026-11-30&by=country"),
            &key,
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let by_country: Value = res.json().await.unwrap();
    let charges: Vec<(&str, i64)> = by_country["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["message_charges_micros"].as_i64() != Some(0))
        .map(|r| {
            (
                r["key"].as_str().unwrap(),
                r["message_charges_micros"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(charges, [("unknown", 61_000)], "{by_country}");
}

/// A click attributes for 30 days: an inbound message carrying it dated later opens no free
/// entry point (the marketing template after it is rated), on both backends alike.
async fn a_click_past_its_attribution_opens_no_free_entry_point(backend: Backend) {
    let app = spawn_app(backend).await;
    let (adv, _, _, click_id) = clicked_chat_ad(&app, "u1").await;
    let (status, body) = message(
        &app,
        inbound("late-in", &adv, Duration::days(31), Some(&click_id)),
    )
    .await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (StatusCode::OK, Some("inbound"))
    );
    let (_, body) = message(
        &app,
        outbound(
            "late-m",
            &adv,
            Duration::days(31) + Duration::hours(2),
            "template",
            Some("marketing"),
            "IT",
        ),
    )
    .await;
    assert_eq!(
        (body["reason"].as_str(), body["charge_micros"].as_i64()),
        (Some("rated"), Some(61_000)),
        "{body}"
    );
}

contract!(
    a_click_past_its_attribution_opens_no_free_entry_point,
    conversation_funnel_suppression_and_cost,
    chat_ads_carry_a_cta_and_conversions_attribute_once,
    service_window_boundaries,
    free_entry_point_only_from_a_valid_click_of_the_same_advertiser,
    the_same_message_id_concurrently_is_charged_once,
    message_invoice_lines_equal_the_ledger,
);
