//! Health, readiness, metrics, and behaviour while Redis is down.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::app::spawn_app_on;
use crate::support::redis_server::RedisServer;
use crate::support::{spawn_app, Backend};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_ready_and_metrics() {
    let app = spawn_app(Backend::Redis).await;
    let res = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(
        (res.status(), res.text().await.unwrap().as_str()),
        (StatusCode::OK, "ok")
    );
    assert_eq!(
        app.http
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );

    let (_, key) = app.advertiser("M").await;
    app.live_campaign(&key, json!({})).await;
    let slots = app.slots("u1", None, 12).await;
    app.render(slots[0]["token"].as_str().unwrap()).await;
    let text = app.metrics().await;
    assert!(
        text.contains("statusads_events_total{type=\"render\",status=\"accepted\"} 1"),
        "{text}"
    );
    assert!(text.contains("statusads_decisions_total{outcome=\"filled\"} 1"));
    assert!(text.contains("statusads_slots_served_total{priority=\"auction\"} 1"));
    assert!(text.contains("statusads_ledger_appends_total 1"));
    assert!(text.contains("statusads_redis_duration_seconds_count{op=\"events\"} 1"));
    assert!(
        !text.contains("u1") && !text.contains("cmp_"),
        "no per-user or per-campaign labels"
    );
    let res = app.http.get(app.url("/nowhere")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        res.json::<serde_json::Value>().await.unwrap()["error"]["code"],
        "not_found"
    );
}

/// Stop Redis mid-stream, keep sending renders, start it again: decisions answer no slots fast,
/// `/readyz` is 503, renders are acknowledged into the spool and, once Redis is back, replayed so
/// that every acknowledged render is counted exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_spools_events_and_replays_them_exactly_once() {
    let mut app = spawn_app_on(Some(RedisServer::start_durable()), |_| {}).await;
    let (_, key) = app.advertiser("Down").await;
    let campaign = app
        .live_campaign(
            &key,
            json!({"priority": "sponsorship", "bid_cpm_micros": 2_000_000}),
        )
        .await;
    let mut tokens = Vec::new();
    for user in 0..12 {
        tokens.push(
            app.slots(&format!("u{user}"), None, 12).await[0]["token"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    // Some renders before the outage.
    for token in &tokens[..4] {
        assert_eq!(app.render(token).await, "accepted");
    }

    app.redis.as_mut().unwrap().kill();
    let started = std::time::Instant::now();
    assert!(app.slots("during", None, 12).await.is_empty());
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "bounded by store.timeout_ms"
    );
    assert_eq!(
        app.http
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    // During the outage renders are acknowledged (spooled); a retry of one is too.
    for token in &tokens[4..10] {
        assert_eq!(app.render(token).await, "accepted");
    }
    assert_eq!(app.render(&tokens[4]).await, "accepted");
    let metrics = app.metrics().await;
    assert!(metrics.contains("statusads_spool_events 7"), "{metrics}");

    // Redis back (AOF, appendfsync always): the refresher replays the spool.
    app.redis.as_mut().unwrap().restart();
    app.wait_for_metrics("the spool replay", |m| {
        m.contains("statusads_spool_events 0") && m.contains("statusads_spool_replayed_total 7")
    })
    .await;
    // After the outage: new renders go straight to Redis again.
    for token in &tokens[10..] {
        assert_eq!(app.render(token).await, "accepted");
    }
    let totals = app.report_totals(&key, &campaign).await;
    assert_eq!(
        totals["rendered"], 12,
        "4 before, 6 spooled (one twice), 2 after: each once"
    );
    assert_eq!(totals["spend_micros"], 12 * 2000);
    for token in &tokens {
        assert_eq!(app.render(token).await, "duplicate");
    }
}

/// A full spool refuses with 503: never acknowledged, never silently dropped. The first batch
/// of an outage finds the spool empty and tries Redis; the shards Redis fails on are spooled
/// even past the limit (the batch is acknowledged whole); the next batch is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_refuses_events_with_503() {
    let mut app = spawn_app_on(Some(RedisServer::start()), |s| {
        s.store.spool_max_bytes = 100
    })
    .await;
    let (_, key) = app.advertiser("Full").await;
    app.live_campaign(&key, json!({})).await;
    let mut tokens = Vec::new();
    for user in ["u1", "u2"] {
        tokens.push(
            app.slots(user, None, 12).await[0]["token"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    app.redis.as_mut().unwrap().kill();
    assert_eq!(
        app.render(&tokens[0]).await,
        "accepted",
        "spooled past the limit"
    );
    let res = app
        .post(
            "/v1/events",
            crate::support::app::CLIENT,
            json!({"events": [{"token": tokens[1], "type": "render"}]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()["retry-after"], "1");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unavailable");
    assert!(
        !body.to_string().contains("127.0.0.1"),
        "no internals leak: {body}"
    );
}
