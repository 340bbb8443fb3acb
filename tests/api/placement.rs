//! The ad-load policy across the requests of one session, tiers and the auction.

use serde_json::{json, Value};

use crate::contract;
use crate::support::app::{campaigns_of, token_of};
use crate::support::{spawn_app, spawn_app_with, Backend};

fn positions(slots: &[Value]) -> Vec<u64> {
    slots
        .iter()
        .map(|s| s["position"].as_u64().unwrap())
        .collect()
}

async fn positions_obey_the_policy_across_a_session(backend: Backend) {
    let app = spawn_app(backend).await;
    for name in ["A", "B", "C", "D"] {
        let (_, key) = app.advertiser(name).await;
        app.live_campaign(&key, json!({})).await;
    }
    // first_after 2, min_gap 4, max_per_session 3; one advertiser per response.
    let first = app.slots("u1", Some("s1"), 12).await;
    assert_eq!(positions(&first), vec![2, 6, 10]);
    let advertisers: std::collections::HashSet<_> = first
        .iter()
        .map(|s| s["ad"]["advertiser"]["id"].clone())
        .collect();
    assert_eq!(advertisers.len(), 3);
    assert!(
        app.slots("u1", Some("s1"), 12).await.is_empty(),
        "max_per_session reached"
    );

    // A session that saw 3 statuses and one ad at 2: the next request continues the gap.
    let start = app.slots("u1", Some("s2"), 3).await;
    assert_eq!(positions(&start), vec![2]);
    let next = app.slots("u1", Some("s2"), 12).await;
    assert_eq!(
        positions(&next),
        vec![3, 7],
        "1 status already passed since the ad at 2"
    );

    // Too short a queue for any ad; its statuses still count towards first_after... only once
    // an ad was committed: an empty answer records nothing, which is conservative.
    assert!(app.slots("u2", Some("s3"), 1).await.is_empty());
    assert_eq!(
        positions(&app.slots("u2", Some("s3"), 12).await),
        vec![2, 6, 10]
    );

    // A session is forgotten six hours after its last decision (on both backends, by the
    // injected clock): the same id then starts afresh.
    app.clock.advance_secs(6 * 3600 - 1);
    assert!(
        app.slots("u1", Some("s1"), 12).await.is_empty(),
        "still the same session"
    );
    app.clock.advance_secs(1);
    assert_eq!(
        positions(&app.slots("u1", Some("s1"), 12).await),
        vec![2, 6, 10]
    );

    // Without a session each request stands alone.
    assert_eq!(positions(&app.slots("u3", None, 5).await), vec![2]);
}

async fn tiers_sponsorship_then_auction_then_house(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.ad_load.max_per_session = 1).await;
    let (_, house_key) = app.advertiser("House").await;
    let house = app
        .live_campaign(
            &house_key,
            json!({"priority": "house", "bid_cpm_micros": 0, "budget": null}),
        )
        .await;
    let filler = app.slots("u1", None, 12).await;
    assert_eq!(campaigns_of(&filler), vec![house.clone()]);
    assert_eq!(app.render(&token_of(&filler[0])).await, "accepted");
    let totals = app.report_totals(&house_key, &house).await;
    assert_eq!(
        (totals["rendered"].as_u64(), totals["spend_micros"].as_i64()),
        (Some(1), Some(0)),
        "house is never billed"
    );

    let (_, low_key) = app.advertiser("Low").await;
    app.live_campaign(&low_key, json!({"bid_cpm_micros": 1_000_000}))
        .await;
    let (_, high_key) = app.advertiser("High").await;
    let high = app
        .live_campaign(&high_key, json!({"bid_cpm_micros": 4_000_000}))
        .await;
    let (_, cheap_key) = app.advertiser("Below reserve").await;
    app.live_campaign(&cheap_key, json!({"bid_cpm_micros": 400_000}))
        .await;

    // The highest bid wins and pays the runner-up's bid: 1,000,000 CPM = 1,000 micros.
    let slots = app.slots("u2", None, 12).await;
    assert_eq!(campaigns_of(&slots), vec![high.clone()]);
    assert_eq!(app.render(&token_of(&slots[0])).await, "accepted");
    assert_eq!(
        app.report_totals(&high_key, &high).await["spend_micros"],
        1000
    );

    let (_, sponsor_key) = app.advertiser("Sponsor").await;
    let sponsor = app
        .live_campaign(
            &sponsor_key,
            json!({"priority": "sponsorship", "bid_cpm_micros": 3_000_000}),
        )
        .await;
    let slots = app.slots("u3", None, 12).await;
    assert_eq!(campaigns_of(&slots), vec![sponsor.clone()]);
    assert_eq!(app.render(&token_of(&slots[0])).await, "accepted");
    assert_eq!(
        app.report_totals(&sponsor_key, &sponsor).await["spend_micros"],
        3000,
        "sponsorships pay their bid"
    );

    // A sponsorship below the reserve never serves: it would go first, for next to nothing
    // (under 1,000 micros, for nothing at all).
    let res = app
        .send(
            reqwest::Method::PATCH,
            &format!("/v1/campaigns/{sponsor}"),
            Some(&sponsor_key),
            Some(json!({"bid_cpm_micros": 999})),
        )
        .await;
    assert_eq!(res.status(), reqwest::StatusCode::OK);
    app.state.catalog.refresh().await.unwrap();
    let slots = app.slots("u4", None, 12).await;
    assert_eq!(
        campaigns_of(&slots),
        vec![high.clone()],
        "the auction serves"
    );
}

async fn targeting_never_matches_unknown_values(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, key) = app.advertiser("Italy").await;
    let campaign = app
        .live_campaign(
            &key,
            json!({"targeting": {"countries": ["IT"], "age": {"min": 18, "max": 30}}}),
        )
        .await;
    let ask = |context: Value| {
        let app = &app;
        async move {
            let res = app
                .post(
                    "/v1/slots",
                    crate::support::app::CLIENT,
                    json!({"user": "u1", "statuses": 12, "context": context}),
                )
                .await;
            let body: Value = res.json().await.unwrap();
            campaigns_of(body["slots"].as_array().unwrap())
        }
    };
    assert_eq!(
        ask(json!({"country": "IT", "age": 25})).await,
        vec![campaign.clone()]
    );
    assert!(ask(json!({"country": "IT"})).await.is_empty());
    assert!(ask(json!({"country": "FR", "age": 25})).await.is_empty());
    assert!(ask(json!({"age": 25})).await.is_empty());
}

contract!(
    positions_obey_the_policy_across_a_session,
    tiers_sponsorship_then_auction_then_house,
    targeting_never_matches_unknown_values,
);
