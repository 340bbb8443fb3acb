//! Campaign CRUD: full validation, PATCH subsets, archive, read-only status and spend.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use sha2::{Digest, Sha256};

use crate::contract;
use crate::support::app::portrait_png;
use crate::support::{spawn_app, Backend};

async fn create_read_update_archive(backend: Backend) {
    let app = spawn_app(backend).await;
    let (adv, key) = app.advertiser("Pizzeria Roma").await;
    let body = json!({
        "name": "Winter sale", "start_at": "2026-12-01T00:00:00Z", "bid_cpm_micros": 2_500_000,
        "budget": {"total_micros": 100_000_000, "daily_micros": 10_000_000}, "pacing": "even",
        "priority": "auction",
        "targeting": {"countries": ["IT"], "cities": [], "languages": ["it"], "os": ["android", "ios"],
                      "age": {"min": 18, "max": 65}, "interests": ["channel:football"]},
        "frequency_caps": [{"max": 1, "per_seconds": 3600}, {"max": 3, "per_seconds": 86400}],
        "advertiser_caps": false, "objective": "chat", "chat": {"prefilled_text": "Hi! I saw your ad"}
    });
    let res = app.post("/v1/campaigns", &key, body).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let created: Value = res.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("cmp_"));
    assert_eq!(created["advertiser_id"], adv.as_str());
    assert_eq!(created["status"], "scheduled", "before start_at");
    assert_eq!(
        created["spend"],
        json!({"total_micros": 0, "today_micros": 0})
    );
    assert_eq!(
        created["frequency_caps"][1],
        json!({"max": 3, "per_seconds": 86400})
    );

    let res = app
        .send(
            Method::PATCH,
            &format!("/v1/campaigns/{id}"),
            Some(&key),
            Some(json!({"status": "paused", "end_at": "2027-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let patched: Value = res.json().await.unwrap();
    assert_eq!(patched["status"], "paused");
    assert_eq!(
        patched["name"], "Winter sale",
        "unsent fields are unchanged"
    );
    assert_eq!(patched["end_at"], "2027-01-01T00:00:00Z");
    let res = app
        .send(
            Method::PATCH,
            &format!("/v1/campaigns/{id}"),
            Some(&key),
            Some(json!({"end_at": null})),
        )
        .await;
    assert_eq!(res.json::<Value>().await.unwrap()["end_at"], Value::Null);

    let list: Value = app.get("/v1/campaigns", &key).await.json().await.unwrap();
    assert_eq!(list["campaigns"].as_array().unwrap().len(), 1);

    let res = app
        .send(
            Method::DELETE,
            &format!("/v1/campaigns/{id}"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "archived");
    let res = app
        .send(
            Method::PATCH,
            &format!("/v1/campaigns/{id}"),
            Some(&key),
            Some(json!({"status": "active"})),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    let shown: Value = app
        .get(&format!("/v1/campaigns/{id}"), &key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(shown["status"], "archived", "history stays");
}

async fn every_invalid_campaign_is_refused_and_changes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, key) = app.advertiser("Strict").await;
    let cases = [
        (
            json!({"name": "x", "bid_cpm_micros": "lots", "budget": {"total_micros": 100_000_000}}),
            400,
            "invalid_request",
        ),
        (
            json!({"name": "x", "bid_cpm_micros": 1, "budget": {"total_micros": 100_000_000}, "contacts": ["+39"]}),
            400,
            "invalid_request",
        ),
        (
            json!({"name": "x", "bid_cpm_micros": 1, "budget": {"total_micros": 100_000_000}, "targeting": {"groups": ["g"]}}),
            400,
            "invalid_request",
        ),
        (
            json!({"name": "x", "bid_cpm_micros": 1, "budget": {"total_micros": 100}}),
            422,
            "budget_too_small",
        ),
        (
            json!({"name": "", "bid_cpm_micros": 1, "budget": {"total_micros": 100_000_000}}),
            422,
            "invalid_name",
        ),
        (
            json!({"name": "x", "bid_cpm_micros": 1, "budget": {"total_micros": 100_000_000}, "status": "archived"}),
            422,
            "invalid_status",
        ),
        (
            json!({"name": "x", "bid_cpm_micros": 0, "budget": {"total_micros": 100_000_000}}),
            422,
            "invalid_bid",
        ),
        (
            json!({"name": "x", "bid_cpm_micros": 1, "budget": {"total_micros": 100_000_000}, "frequency_caps": [{"max": 1001, "per_seconds": 60}]}),
            422,
            "invalid_frequency_cap",
        ),
        (
            json!({"name": "x", "bid_cpm_micros": 1, "budget": {"total_micros": 100_000_000}, "start_at": "2026-12-02T00:00:00Z", "end_at": "2026-12-01T00:00:00Z"}),
            422,
            "invalid_schedule",
        ),
        (
            json!({"name": "x", "bid_cpm_micros": 1, "budget": {"total_micros": 100_000_000}, "targeting": {"os": ["symbian"]}}),
            422,
            "invalid_targeting",
        ),
        // An interest kind that could name people or groups does not exist.
        (
            json!({"name": "x", "bid_cpm_micros": 1, "budget": {"total_micros": 100_000_000}, "targeting": {"interests": ["group:family"]}}),
            422,
            "invalid_targeting",
        ),
    ];
    for (body, status, code) in cases {
        let res = app.post("/v1/campaigns", &key, body.clone()).await;
        assert_eq!(res.status().as_u16(), status, "{body}");
        let err: Value = res.json().await.unwrap();
        assert_eq!(err["error"]["code"], code, "{body}");
        assert!(err["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
    let list: Value = app.get("/v1/campaigns", &key).await.json().await.unwrap();
    assert_eq!(list["campaigns"], json!([]));

    // A bad PATCH leaves the campaign as it was.
    let id = app.campaign(&key, json!({"name": "Keep"})).await;
    let res = app
        .send(
            Method::PATCH,
            &format!("/v1/campaigns/{id}"),
            Some(&key),
            Some(json!({"name": "New", "bid_cpm_micros": -5})),
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let shown: Value = app
        .get(&format!("/v1/campaigns/{id}"), &key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (shown["name"].as_str(), shown["bid_cpm_micros"].as_i64()),
        (Some("Keep"), Some(2_000_000))
    );
}

async fn paused_archived_and_exhausted_campaigns_are_not_served(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, key) = app.advertiser("Budget").await;
    // A sponsorship pays its bid: 100,000 micros per render, so 10 renders spend 1,000,000.
    let id = app
        .live_campaign(&key, json!({"priority": "sponsorship", "bid_cpm_micros": 100_000_000, "budget": {"total_micros": 1_000_000}}))
        .await;
    assert_eq!(app.slots("u0", None, 12).await.len(), 1);
    app.send(
        Method::PATCH,
        &format!("/v1/campaigns/{id}"),
        Some(&key),
        Some(json!({"status": "paused"})),
    )
    .await;
    assert!(app.slots("u1", None, 12).await.is_empty());
    app.send(
        Method::PATCH,
        &format!("/v1/campaigns/{id}"),
        Some(&key),
        Some(json!({"status": "active"})),
    )
    .await;
    assert_eq!(app.slots("u2", None, 12).await.len(), 1);

    let spend_all = |prefix: &'static str| {
        let app = &app;
        async move {
            let mut rendered = 0;
            for user in 0..100 {
                let slots = app.slots(&format!("{prefix}{user}"), None, 12).await;
                let Some(slot) = slots.first() else { break };
                assert_eq!(
                    app.render(slot["token"].as_str().unwrap()).await,
                    "accepted"
                );
                rendered += 1;
                app.refresh_spend().await;
            }
            rendered
        }
    };
    assert_eq!(
        spend_all("spender").await,
        8,
        "the two unrendered slots still hold their budget"
    );
    // Their tokens lapse (ttl + grace), their holds with the 30-second bucket that moment falls
    // in: the held budget returns.
    app.clock.advance_secs(900 + 300 - 1);
    app.refresh_spend().await;
    assert_eq!(
        spend_all("early-spender").await,
        0,
        "held until the tokens lapse"
    );
    app.clock
        .advance_secs(1 + statusads::ledger::spend::HOLD_BUCKET_MS / 1000);
    app.refresh_spend().await;
    assert_eq!(spend_all("late-spender").await, 2);
    let shown: Value = app
        .get(&format!("/v1/campaigns/{id}"), &key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(shown["status"], "exhausted");
    assert_eq!(shown["spend"]["total_micros"], 1_000_000);
    assert!(app.slots("late", None, 12).await.is_empty());
}

/// Times are answered in UTC whatever offset was sent; `PATCH {"status": "archived"}` archives
/// as DELETE does; and an archived campaign refuses an upload before its asset is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn times_are_utc_and_an_archived_campaign_stores_no_upload() {
    let app = spawn_app(Backend::Embedded).await;
    let (_, key) = app.advertiser("Offsets").await;
    let id = app.campaign(&key, json!({})).await;
    let path = format!("/v1/campaigns/{id}");
    let res = app
        .send(
            Method::PATCH,
            &path,
            Some(&key),
            Some(json!({"start_at": "2027-01-01T01:30:00+01:00", "end_at": "2027-02-01T00:00:00-05:00"})),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let patched: Value = res.json().await.unwrap();
    assert_eq!(patched["start_at"], "2027-01-01T00:30:00Z");
    assert_eq!(patched["end_at"], "2027-02-01T05:00:00Z");

    let res = app
        .send(
            Method::PATCH,
            &path,
            Some(&key),
            Some(json!({"status": "archived"})),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let shown: Value = app.get(&path, &key).await.json().await.unwrap();
    assert_eq!(shown["status"], "archived");
    assert_eq!(shown["start_at"], "2027-01-01T00:30:00Z");

    let png = portrait_png();
    let sha = hex::encode(Sha256::digest(&png));
    let res = app
        .upload(
            &key,
            &id,
            png,
            "ad.png",
            json!({"headline": "Late", "body": "Too late"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "conflict", "{body}");
    let asset = app
        .send(Method::GET, &format!("/assets/{sha}"), None, None)
        .await;
    assert_eq!(
        asset.status(),
        StatusCode::NOT_FOUND,
        "the refused upload's asset"
    );
}

contract!(
    create_read_update_archive,
    every_invalid_campaign_is_refused_and_changes_nothing,
    paused_archived_and_exhausted_campaigns_are_not_served,
);
