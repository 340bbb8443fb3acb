//! Rolling-window frequency caps with reservations: never exceeded, whatever the client does.

use serde_json::json;
use statusads::clock::Clock;
use statusads::domain::ids::{AdvertiserId, CampaignId, CreativeId};
use statusads::domain::UserId;
use statusads::tokens::Claims;

use crate::contract;
use crate::support::app::{campaigns_of, token_of};
use crate::support::{spawn_app, Backend, TestApp};

/// A correctly signed token for a slot that was never served (no reservation behind it): what a
/// replaying or buggy client could produce. Caps must hold against it too.
fn unserved_token(
    app: &TestApp,
    user: &str,
    campaign: &str,
    advertiser: &str,
    creative: &str,
) -> String {
    app.state.ledger.keys.sign(&Claims {
        decision_id: statusads::domain::ids::new_decision_id(),
        user: UserId::parse(user).unwrap(),
        campaign: CampaignId::parse(campaign).unwrap(),
        creative: CreativeId::parse(creative).unwrap(),
        advertiser: AdvertiserId::parse(advertiser).unwrap(),
        price_micros: 1000,
        expires_at_ms: app.clock.now_ms() + 600_000,
    })
}

async fn cap_of_two_per_hour_holds_and_rolls(backend: Backend) {
    let app = spawn_app(backend).await;
    let (adv, key) = app.advertiser("Capped").await;
    let campaign = app
        .live_campaign(
            &key,
            json!({"frequency_caps": [{"max": 2, "per_seconds": 3600}]}),
        )
        .await;

    let first = app.slots("u1", None, 12).await;
    assert_eq!(campaigns_of(&first), vec![campaign.clone()]);
    let creative = first[0]["ad"]["creative_id"].as_str().unwrap().to_owned();
    assert_eq!(app.render(&token_of(&first[0])).await, "accepted");
    app.clock.advance_secs(600);
    let second = app.slots("u1", None, 12).await;
    assert_eq!(campaigns_of(&second), vec![campaign.clone()]);
    assert_eq!(app.render(&token_of(&second[0])).await, "accepted");

    // Two renders in the window: no more slots of it.
    app.clock.advance_secs(60);
    assert!(app.slots("u1", None, 12).await.is_empty());
    // A fresh, validly signed token is not counted beyond the cap.
    let forged = unserved_token(&app, "u1", &campaign, &adv, &creative);
    let res = app
        .post(
            "/v1/events",
            crate::support::app::CLIENT,
            json!({"events": [{"token": forged, "type": "render"}]}),
        )
        .await;
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["results"][0]["status"], "rejected");
    assert_eq!(body["results"][0]["reason"], "cap_reached");
    // Retrying it does not change the answer.
    assert_eq!(app.render(&forged).await, "rejected");
    assert_eq!(app.report_totals(&key, &campaign).await["rendered"], 2);

    // The window rolls: one hour after the first render, one render leaves the window.
    app.clock.advance_secs(3600 - 660 - 1);
    assert!(
        app.slots("u1", None, 12).await.is_empty(),
        "first render still inside the window"
    );
    app.clock.advance_secs(1);
    let third = app.slots("u1", None, 12).await;
    assert_eq!(campaigns_of(&third), vec![campaign.clone()]);
    assert_eq!(app.render(&token_of(&third[0])).await, "accepted");
    // Other users were never affected.
    assert_eq!(
        campaigns_of(&app.slots("u2", None, 12).await),
        vec![campaign]
    );
}

async fn prefetch_cannot_exceed_a_cap(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, key) = app.advertiser("Once").await;
    let campaign = app
        .live_campaign(
            &key,
            json!({"frequency_caps": [{"max": 1, "per_seconds": 86400}]}),
        )
        .await;

    // Sequential prefetch: the first decision's reservation holds the cap.
    let first = app.slots("u1", Some("a"), 12).await;
    let second = app.slots("u1", Some("b"), 12).await;
    assert_eq!(campaigns_of(&first), vec![campaign.clone()]);
    assert!(second.is_empty());

    // Concurrent prefetch by another user: at most one of many requests gets it.
    let requests = (0..8).map(|i| {
        let app = &app;
        async move { app.slots("u2", Some(&format!("s{i}")), 12).await }
    });
    let answers = futures_util::future::join_all(requests).await;
    let served: usize = answers.iter().map(|slots| slots.len()).sum();
    assert_eq!(served, 1, "{answers:?}");

    // The reservation expires with the token (ttl + grace): then the cap is free again.
    app.clock.advance_secs(900 + 300 + 1);
    assert_eq!(
        campaigns_of(&app.slots("u1", Some("c"), 12).await),
        vec![campaign]
    );
}

async fn advertiser_caps_span_campaigns(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, key) = app.advertiser("Brand").await;
    let caps =
        json!({"frequency_caps": [{"max": 1, "per_seconds": 86400}], "advertiser_caps": true});
    let a = app.live_campaign(&key, caps.clone()).await;
    let b = app.live_campaign(&key, caps).await;
    let slots = app.slots("u1", None, 12).await;
    assert_eq!(slots.len(), 1);
    assert_eq!(app.render(&token_of(&slots[0])).await, "accepted");
    assert!(
        app.slots("u1", None, 12).await.is_empty(),
        "neither {a} nor {b} after one render of the brand"
    );
}

async fn daily_ad_load_is_a_rolling_day(backend: Backend) {
    let app = crate::support::spawn_app_with(backend, |s| s.ad_load.max_per_user_per_day = 2).await;
    for name in ["A", "B", "C"] {
        let (_, key) = app.advertiser(name).await;
        app.live_campaign(&key, json!({})).await;
    }
    let first = app.slots("u1", Some("s1"), 12).await;
    assert_eq!(first.len(), 2, "the daily load caps a single response too");
    for slot in &first {
        assert_eq!(app.render(&token_of(slot)).await, "accepted");
    }
    assert!(app.slots("u1", Some("s2"), 12).await.is_empty());
    app.clock.advance_secs(86_399);
    assert!(
        app.slots("u1", Some("s3"), 12).await.is_empty(),
        "a second short of 24 h: still inside"
    );
    app.clock.advance_secs(1);
    assert_eq!(app.slots("u1", Some("s4"), 12).await.len(), 2);
}

async fn hidden_advertisers_are_never_served(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, key) = app.advertiser("Annoying").await;
    app.live_campaign(&key, json!({})).await;
    let slots = app.slots("u1", None, 12).await;
    assert_eq!(
        app.events(&[(&token_of(&slots[0]), "hide")]).await,
        vec!["accepted"]
    );
    assert!(app.slots("u1", None, 12).await.is_empty());
    app.clock.advance_secs(89 * 86_400);
    assert!(app.slots("u1", None, 12).await.is_empty());
    app.clock.advance_secs(86_400 + 1);
    assert_eq!(
        app.slots("u1", None, 12).await.len(),
        1,
        "a hide lasts 90 days"
    );
    assert_eq!(app.slots("u2", None, 12).await.len(), 1);
}

contract!(
    cap_of_two_per_hour_holds_and_rolls,
    prefetch_cannot_exceed_a_cap,
    advertiser_caps_span_campaigns,
    daily_ad_load_is_a_rolling_day,
    hidden_advertisers_are_never_served,
);
