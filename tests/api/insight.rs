//! Advertiser insight with every decision sampled: delivery diagnostics, the explainer (no
//! effect at all) and forecasts replaying the sampled requests.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::contract;
use crate::support::app::{token_of, ADMIN, CLIENT};
use crate::support::{spawn_app_with, Backend, TestApp};

async fn sampling_everything(backend: Backend) -> TestApp {
    spawn_app_with(backend, |s| s.insight.sample_rate = 1.0).await
}

/// One slot (3 statuses: room for one ad) for `user` in Italy.
async fn one_slot(app: &TestApp, user: &str) -> Vec<Value> {
    let res = app
        .post(
            "/v1/slots",
            CLIENT,
            json!({"user": user, "statuses": 3, "context": {"country": "IT"}}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json::<Value>().await.unwrap()["slots"]
        .as_array()
        .unwrap()
        .clone()
}

async fn delivery(app: &TestApp, key: &str, campaign: &str) -> Value {
    let res = app
        .get(&format!("/v1/campaigns/{campaign}/delivery"), key)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

async fn delivery_says_why_each_campaign_served_or_not(backend: Backend) {
    let app = sampling_everything(backend).await;
    let (_, capped_key) = app.advertiser("Capped").await;
    let capped = app
        .live_campaign(
            &capped_key,
            json!({"bid_cpm_micros": 3_000_000, "frequency_caps": [{"max": 1, "per_seconds": 86400}]}),
        )
        .await;
    let (_, low_key) = app.advertiser("Low").await;
    let low = app
        .live_campaign(&low_key, json!({"bid_cpm_micros": 1_000_000}))
        .await;
    let (_, away_key) = app.advertiser("Away").await;
    let away = app
        .live_campaign(&away_key, json!({"targeting": {"countries": ["FR"]}}))
        .await;

    let first = one_slot(&app, "u1").await;
    assert_eq!(first[0]["ad"]["campaign_id"], capped.as_str());
    assert_eq!(app.render(&token_of(&first[0])).await, "accepted");
    let second = one_slot(&app, "u1").await;
    assert_eq!(second[0]["ad"]["campaign_id"], low.as_str());

    let shown = delivery(&app, &capped_key, &capped).await;
    assert_eq!(shown["sample_rate"], 1.0);
    assert_eq!(shown["sampled_decisions"], 2, "{shown}");
    assert_eq!(shown["won"], 1);
    assert_eq!(shown["lost"]["frequency_cap"], 1, "{shown}");
    assert_eq!(shown["eligible"], 2);

    let shown = delivery(&app, &low_key, &low).await;
    assert_eq!(shown["lost"]["outbid"], 1, "{shown}");
    assert_eq!(shown["won"], 1);
    // The winner paid the second price: the low bid itself.
    assert_eq!(shown["clearing_cpm_micros"]["p50"], 1_000_000, "{shown}");
    let summary = shown["summary"].as_str().unwrap();
    assert!(
        summary.contains("higher bids") && summary.contains("1.00 per 1,000"),
        "{summary}"
    );

    let shown = delivery(&app, &away_key, &away).await;
    assert_eq!(shown["eligible"], 0);
    assert_eq!(shown["not_eligible"]["targeting"], 2, "{shown}");
    assert!(shown["summary"].as_str().unwrap().contains("targeting"));

    // Another advertiser's campaign is not found; a bad range is refused.
    let res = app
        .get(&format!("/v1/campaigns/{capped}/delivery"), &low_key)
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = app
        .get(
            &format!("/v1/campaigns/{capped}/delivery?from=yesterday"),
            &capped_key,
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

/// What the stores hold, to compare before and after an explain.
async fn stores(app: &TestApp) -> (Vec<(String, Vec<u8>)>, Vec<u8>, u64, usize) {
    let redis = match &app.redis {
        Some(redis) => {
            let mut conn = redis.connection();
            let mut keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut conn).unwrap();
            keys.sort();
            // Node heartbeats move every second, whatever the requests.
            keys.retain(|key| key != "nodes:{catalog}" && key != "nodes:{catalog}:settings");
            keys.into_iter()
                .map(|key| {
                    let dump: Vec<u8> = redis::cmd("DUMP").arg(&key).query(&mut conn).unwrap();
                    (key, dump)
                })
                .collect()
        }
        None => Vec::new(),
    };
    let journal = std::fs::read(app._data_dir.path().join("journal.log")).unwrap_or_default();
    let records = app.state.record.ledger_count().await.unwrap();
    let samples = app
        .state
        .record
        .sampled_requests(0, 1_000_000)
        .await
        .unwrap();
    (redis, journal, records, samples.1 as usize)
}

async fn explain_answers_the_decision_and_changes_nothing(backend: Backend) {
    let app = sampling_everything(backend).await;
    let (_, key) = app.advertiser("Shown").await;
    let shown = app
        .live_campaign(&key, json!({"bid_cpm_micros": 3_000_000}))
        .await;
    let (_, away_key) = app.advertiser("Away").await;
    let away = app
        .live_campaign(&away_key, json!({"targeting": {"countries": ["FR"]}}))
        .await;
    // Some history first, so that there is state to leave alone.
    let slots = one_slot(&app, "u1").await;
    assert_eq!(app.render(&token_of(&slots[0])).await, "accepted");
    app.state.exporter.caught_up().await;
    app.state.server.insight.flush().await.unwrap();

    let before = stores(&app).await;
    let id = statusads::domain::ids::CampaignId::parse(&shown).unwrap();
    let held = app.state.spend.committed(&id);
    let body = json!({"user": "u1", "statuses": 3, "context": {"country": "IT"}});
    let res = app.post("/v1/slots/explain", ADMIN, body.clone()).await;
    assert_eq!(res.status(), StatusCode::OK);
    let answer: Value = res.json().await.unwrap();
    app.state.server.insight.flush().await.unwrap();
    app.state.exporter.caught_up().await;
    assert_eq!(stores(&app).await, before, "explain changed a store");
    assert_eq!(
        app.state.spend.committed(&id),
        held,
        "explain held a budget"
    );
    assert!(
        !app.state.server.recent.holds("u1"),
        "explain left a recent view"
    );
    assert!(
        !answer.to_string().contains("token"),
        "no token issued: {answer}"
    );
    assert_eq!(answer["slots"][0]["campaign_id"], shown.as_str());
    assert_eq!(answer["slots"][0]["price_micros"], 500, "the reserve price");
    let outcome = |campaign: &str| {
        answer["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["campaign_id"] == campaign)
            .cloned()
            .unwrap()
    };
    assert_eq!(outcome(&shown)["outcome"], "placed");
    assert_eq!(outcome(&away)["outcome"], "not_eligible");
    assert_eq!(outcome(&away)["reason"], "targeting");

    // The same validation as `POST /v1/slots`; only the operator may ask.
    for (bad, status) in [
        (json!({"user": "u1", "statuses": 501}), 422),
        (json!({"user": "u1"}), 400),
    ] {
        let slots = app.post("/v1/slots", CLIENT, bad.clone()).await;
        let explained = app.post("/v1/slots/explain", ADMIN, bad).await;
        assert_eq!(slots.status().as_u16(), status);
        assert_eq!(explained.status().as_u16(), status);
        let (a, b): (Value, Value) = (slots.json().await.unwrap(), explained.json().await.unwrap());
        assert_eq!(a["error"]["code"], b["error"]["code"]);
    }
    let res = app.post("/v1/slots/explain", CLIENT, body).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
}

async fn forecast(app: &TestApp, key: &str, body: Value) -> Value {
    let mut campaign = json!({"name": "Proposal", "pacing": "asap",
                              "budget": {"total_micros": 1_000_000_000}});
    campaign
        .as_object_mut()
        .unwrap()
        .extend(body.as_object().unwrap().clone());
    let res = app.post("/v1/forecast", key, campaign).await;
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn forecasts_replay_the_sampled_requests(backend: Backend) {
    let app = sampling_everything(backend).await;
    let (_, rival_key) = app.advertiser("Rival").await;
    app.live_campaign(&rival_key, json!({"bid_cpm_micros": 2_000_000}))
        .await;
    // Ten users, three requests each, every one with room for one ad.
    for round in 0..3 {
        for user in 0..10 {
            assert_eq!(one_slot(&app, &format!("user-{user}")).await.len(), 1);
        }
        app.clock.advance_secs(600 + round);
    }
    let (_, key) = app.advertiser("Newcomer").await;
    let cases = [
        (
            "a country no request came from",
            json!({"bid_cpm_micros": 9_000_000, "targeting": {"countries": ["FR"]}}),
        ),
        ("below the rival", json!({"bid_cpm_micros": 1_000_000})),
        ("above the rival", json!({"bid_cpm_micros": 9_000_000})),
        (
            "above, capped at 1 a day",
            json!({"bid_cpm_micros": 9_000_000,
            "frequency_caps": [{"max": 1, "per_seconds": 86400}]}),
        ),
    ];
    let mut answers = Vec::new();
    for (name, body) in cases {
        let answer = forecast(&app, &key, body).await;
        assert_eq!(answer["basis"]["sampled_requests"], 30, "{name}: {answer}");
        answers.push(answer);
    }
    assert_eq!(answers[0]["impressions"], 0, "{}", answers[0]);
    assert_eq!(answers[0]["matched_requests"], 0);
    assert_eq!(answers[1]["matched_requests"], 30);
    assert_eq!(
        answers[1]["impressions"], 0,
        "outbid everywhere: {}",
        answers[1]
    );
    assert_eq!(
        answers[2]["impressions"], 30,
        "wins every request: {}",
        answers[2]
    );
    assert_eq!(answers[2]["competing_campaigns"], 0);
    assert_eq!(answers[2]["reach"], 10);
    assert_eq!(
        answers[2]["spend_micros"],
        30 * 2_000,
        "second price: the rival's bid"
    );
    assert_eq!(
        answers[3]["impressions"], 10,
        "a cap of 1 a day: one per distinct user: {}",
        answers[3]
    );

    // The validation of a campaign body, with the same codes.
    let bad = json!({"name": "Proposal", "bid_cpm_micros": -1, "budget": {"total_micros": 1_000_000_000}});
    let created = app.post("/v1/campaigns", &key, bad.clone()).await;
    let forecast = app.post("/v1/forecast", &key, bad).await;
    assert_eq!(created.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(forecast.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let (a, b): (Value, Value) = (
        created.json().await.unwrap(),
        forecast.json().await.unwrap(),
    );
    assert_eq!(a["error"]["code"], b["error"]["code"]);
    let res = app.post("/v1/forecast", ADMIN, json!({"name": "x"})).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
}

contract!(
    delivery_says_why_each_campaign_served_or_not,
    explain_answers_the_decision_and_changes_nothing,
    forecasts_replay_the_sampled_requests,
);
