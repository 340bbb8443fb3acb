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
    let text = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_means_no_slots_fast_503_ready_and_503_events() {
    let mut app = spawn_app_on(Some(RedisServer::start_durable()), |_| {}).await;
    let (_, key) = app.advertiser("Down").await;
    app.live_campaign(&key, json!({})).await;
    let token = app.slots("u1", None, 12).await[0]["token"]
        .as_str()
        .unwrap()
        .to_owned();

    app.redis.as_mut().unwrap().kill();
    let started = std::time::Instant::now();
    assert!(app.slots("u2", None, 12).await.is_empty());
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
    let res = app
        .post(
            "/v1/events",
            crate::support::app::CLIENT,
            json!({"events": [{"token": token, "type": "render"}]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unavailable");
    assert!(
        !body.to_string().contains("127.0.0.1"),
        "no internals leak: {body}"
    );

    // Redis back (AOF, appendfsync always): the unacknowledged render can be retried.
    app.redis.as_mut().unwrap().restart();
    let mut status = String::new();
    let mut attempts = Vec::new();
    for _ in 0..100 {
        let res = app
            .post(
                "/v1/events",
                crate::support::app::CLIENT,
                json!({"events": [{"token": token, "type": "render"}]}),
            )
            .await;
        attempts.push(res.status());
        if res.status() == StatusCode::OK {
            status = res.json::<serde_json::Value>().await.unwrap()["results"][0]["status"]
                .as_str()
                .unwrap()
                .to_owned();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status, "accepted", "after {attempts:?}");
}
