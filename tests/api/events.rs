//! Events: exactly-once renders, per-event statuses, tokens that cannot be forged or stretched.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::contract;
use crate::support::app::{token_of, CLIENT};
use crate::support::{spawn_app, Backend};

async fn the_same_render_sent_50_times_concurrently_is_billed_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, key) = app.advertiser("Once").await;
    let campaign = app
        .live_campaign(&key, json!({"bid_cpm_micros": 3_000_000}))
        .await;
    let slots = app.slots("u1", None, 12).await;
    let token = token_of(&slots[0]);

    let sends = (0..50).map(|_| {
        let (app, token) = (&app, token.clone());
        tokio::spawn({
            let http = app.http.clone();
            let url = app.url("/v1/events");
            async move {
                let res = http
                    .post(url)
                    .bearer_auth(CLIENT)
                    .json(&json!({"events": [{"token": token, "type": "render", "at": "2026-11-26T10:00:00Z"}]}))
                    .send()
                    .await
                    .unwrap();
                let body: Value = res.json().await.unwrap();
                body["results"][0]["status"].as_str().unwrap().to_owned()
            }
        })
    });
    let statuses: Vec<String> = futures_util::future::join_all(sends)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| *s == "accepted").count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(statuses.iter().filter(|s| *s == "duplicate").count(), 49);

    // Lone bidder pays the reserve: 500,000 CPM = 500 micros per render, billed once.
    let totals = app.report_totals(&key, &campaign).await;
    assert_eq!(totals["rendered"], 1);
    assert_eq!(totals["served"], 1);
    assert_eq!(totals["spend_micros"], 500);
    app.refresh_spend().await;
    let res = app.get(&format!("/v1/campaigns/{campaign}"), &key).await;
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["spend"]["total_micros"], 500);
    assert_eq!(body["spend"]["today_micros"], 500);
}

async fn forged_altered_and_expired_tokens_bill_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, key) = app.advertiser("Victim").await;
    let campaign = app.live_campaign(&key, json!({})).await;
    let slots = app.slots("u1", None, 12).await;
    let token = token_of(&slots[0]);

    // Altered: the price inside the payload lowered, the tag kept.
    let parts: Vec<&str> = token.split('.').collect();
    let payload = String::from_utf8(URL_SAFE_NO_PAD.decode(parts[2]).unwrap()).unwrap();
    let mut fields: Vec<&str> = payload.split('\n').collect();
    fields[5] = "1";
    let altered = format!(
        "{}.{}.{}.{}",
        parts[0],
        parts[1],
        URL_SAFE_NO_PAD.encode(fields.join("\n")),
        parts[3]
    );
    // Forged: signed with another key.
    let forged = format!(
        "{}.{}.{}.{}",
        parts[0],
        parts[1],
        parts[2],
        URL_SAFE_NO_PAD.encode([7u8; 32])
    );
    let statuses = app
        .events(&[
            (&altered, "render"),
            (&forged, "render"),
            ("not-a-token", "render"),
            ("", "click"),
        ])
        .await;
    assert_eq!(statuses, vec!["invalid", "invalid", "invalid", "invalid"]);

    // Expired: past expires_at plus the 5-minute grace.
    app.clock.advance_secs(900 + 300);
    assert_eq!(
        app.render(&token).await,
        "accepted",
        "inside the grace period"
    );
    let later = app.slots("u2", None, 12).await;
    app.clock.advance_secs(900 + 301);
    assert_eq!(app.render(&token_of(&later[0])).await, "expired");
    let totals = app.report_totals(&key, &campaign).await;
    assert_eq!(totals["rendered"], 1);
}

async fn view_and_click_need_a_render_first(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, key) = app.advertiser("Order").await;
    let campaign = app.live_campaign(&key, json!({})).await;
    let token = token_of(&app.slots("u1", None, 12).await[0]);
    assert_eq!(
        app.events(&[(&token, "view"), (&token, "click")]).await,
        vec!["rejected", "rejected"]
    );
    assert_eq!(
        app.events(&[
            (&token, "render"),
            (&token, "view"),
            (&token, "click"),
            (&token, "click"),
            (&token, "render")
        ])
        .await,
        vec!["accepted", "accepted", "accepted", "duplicate", "duplicate"]
    );
    assert_eq!(app.events(&[(&token, "report")]).await, vec!["accepted"]);
    let totals = app.report_totals(&key, &campaign).await;
    assert_eq!(
        (
            totals["rendered"].as_u64(),
            totals["viewed"].as_u64(),
            totals["clicks"].as_u64()
        ),
        (Some(1), Some(1), Some(1))
    );
    assert_eq!(totals["reports"], 1);
    // A report also hides the advertiser.
    assert!(app.slots("u1", None, 12).await.is_empty());
}

async fn malformed_batches_are_400_and_change_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    for body in [
        json!({"events": [{"token": "x", "type": "purchase"}]}),
        json!({"events": [{"token": "x", "type": "render", "extra": 1}]}),
        json!({"events": []}),
        json!({"evnts": []}),
        json!({"events": (0..101).map(|_| json!({"token": "x", "type": "render"})).collect::<Vec<_>>()}),
    ] {
        let res = app.post("/v1/events", CLIENT, body.clone()).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{body}");
        let err: Value = res.json().await.unwrap();
        assert_eq!(err["error"]["code"], "invalid_request");
    }
    let res = app
        .http
        .post(app.url("/v1/events"))
        .bearer_auth(CLIENT)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let res = app
        .http
        .post(app.url("/v1/events"))
        .bearer_auth(CLIENT)
        .body("x".repeat(70_000))
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

contract!(
    the_same_render_sent_50_times_concurrently_is_billed_once,
    forged_altered_and_expired_tokens_bill_nothing,
    view_and_click_need_a_render_first,
    malformed_batches_are_400_and_change_nothing,
);

/// Rotating the signing key: a token signed before the rotation still renders (the old key is in
/// `tokens.previous_signing_keys`); without it, the same token is invalid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_signing_keys_keep_verifying_old_tokens() {
    let before = spawn_app(Backend::Redis).await;
    let (_, key) = before.advertiser("Rotate").await;
    before.live_campaign(&key, json!({})).await;
    let token = token_of(&before.slots("u1", None, 12).await[0]);
    let redis_url = before.redis.as_ref().unwrap().url();
    let new_key = "rotated-signing-key-0123456789abcdef0123456789";
    let rotated = crate::support::app::spawn_app_on(None, |s| {
        s.store.redis_url = redis_url.clone().into();
        s.tokens.signing_key = new_key.into();
        s.tokens.previous_signing_keys = vec![crate::support::app::SIGNING_KEY.into()];
    })
    .await;
    assert_eq!(rotated.render(&token).await, "accepted");
    let forgotten = crate::support::app::spawn_app_on(None, |s| {
        s.store.redis_url = redis_url.clone().into();
        s.tokens.signing_key = new_key.into();
    })
    .await;
    assert_eq!(forgotten.events(&[(&token, "view")]).await, vec!["invalid"]);
}
