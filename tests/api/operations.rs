//! Health, readiness, metrics, and behaviour while Redis is down or hung: the circuit breaker,
//! a start without Redis, a shutdown with events in the spool.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::support::app::{spawn_app_on, token_of, Api, TestApp, CLIENT};
use crate::support::postgres::PostgresServer;
use crate::support::redis_server::RedisServer;
use crate::support::service::{ServiceProcess, Until};
use crate::support::vanishing::VanishingProxy;
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
    // Budgets count each render once too: past the tokens' lifetime (no slot holds budget
    // any more), what they are checked against is the ledger's 12 renders, the 7 spooled ones
    // (one a repeat) no longer counted beside them since the replay.
    app.clock.advance_secs(3600);
    app.refresh_spend().await;
    let campaign = statusads::domain::ids::CampaignId::parse(&campaign).unwrap();
    assert_eq!(app.state.spend.committed(&campaign).total_micros, 12 * 2000);
}

/// Renders acknowledged during an outage are replayed under the caps as they stand then: one
/// that an advertiser-wide cap refuses (spent meanwhile by another of the brand's campaigns)
/// is billed nowhere, and the replay says so in the log and a counter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spooled_render_over_a_cap_at_replay_is_counted_not_billed() {
    let mut app = spawn_app_on(Some(RedisServer::start_durable()), |_| {}).await;
    let (_, key) = app.advertiser("Brand").await;
    let capped = app
        .live_campaign(
            &key,
            json!({"priority": "sponsorship", "advertiser_caps": true,
                "frequency_caps": [{"max": 1, "per_seconds": 86400}]}),
        )
        .await;
    let first = app.slots("u1", Some("s1"), 12).await;
    assert_eq!(first[0]["ad"]["campaign_id"], capped.as_str());
    // The capped campaign's slot holds its cap: the user's next answer is the other campaign.
    let open = app
        .live_campaign(&key, json!({"priority": "sponsorship"}))
        .await;
    let second = app.slots("u1", Some("s2"), 12).await;
    assert_eq!(second[0]["ad"]["campaign_id"], open.as_str());
    let (capped_token, open_token) = (&token_of(&first[0]), &token_of(&second[0]));

    app.redis.as_mut().unwrap().kill();
    // The open campaign's render first: it spends the brand's cap at replay.
    assert_eq!(app.render(open_token).await, "accepted");
    assert_eq!(app.render(capped_token).await, "accepted");
    app.redis.as_mut().unwrap().restart();
    app.wait_for_metrics("the spool replay", |m| {
        m.contains("statusads_spool_events 0") && m.contains("statusads_spool_replayed_total 2")
    })
    .await;
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("statusads_spool_over_cap_total 1"),
        "{metrics}"
    );
    assert_eq!(app.report_totals(&key, &open).await["rendered"], 1);
    assert_eq!(app.report_totals(&key, &capped).await["rendered"], 0);
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

/// Two nodes on one Redis and one record, and Redis gone for one of them only (a dropped
/// route): that node acknowledges a render into its spool, listed in the record. The other
/// node's exporter still drains every outbox, but as long as the spool holds the render its
/// reports' `as_of` stays before the render was acknowledged, whatever its own clock says; once
/// the spool replays, `as_of` moves on and the render is in the report, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_nodes_outage_spool_holds_as_of_until_it_replays() {
    let redis = RedisServer::start_durable();
    let proxy = VanishingProxy::start(redis.port).await;
    let exporting = spawn_app_on(Some(redis), |_| {}).await;
    let database_url = exporting.database_url.clone();
    let cut_off = spawn_app_on(None, |s| {
        s.store.redis_url = proxy.url().into();
        s.store.database_url = database_url.into();
    })
    .await;
    let (_, key) = exporting.advertiser("Two nodes").await;
    let campaign = exporting.live_campaign(&key, json!({})).await;
    cut_off.state.catalog.refresh().await.unwrap();
    let token = token_of(&cut_off.slots("u1", None, 12).await[0]);

    proxy.vanish();
    assert_eq!(cut_off.render(&token).await, "accepted", "spooled");
    let acknowledged = statusads::clock::Clock::now_ms(&*cut_off.clock);
    let listed = cut_off.state.record.outage_spools().await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert!(listed[0].since_ms <= acknowledged, "{listed:?}");

    // Ten minutes on for the exporting node: its rounds drain every outbox all along.
    exporting.clock.advance_secs(600);
    let as_of = |report: &serde_json::Value| {
        let at = time::OffsetDateTime::parse(
            report["as_of"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        (at.unix_timestamp_nanos() / 1_000_000) as i64
    };
    let path = format!("/v1/reports/campaigns/{campaign}");
    for _ in 0..3 {
        let report: serde_json::Value = exporting.get(&path, &key).await.json().await.unwrap();
        assert!(
            as_of(&report) <= acknowledged,
            "as_of claims a render still in another node's spool: {} {}",
            report["as_of"],
            report["totals"]
        );
        assert_eq!(report["totals"]["rendered"], 0, "{}", report["totals"]);
    }
    let metrics = exporting.metrics().await;
    assert!(metrics.contains("statusads_outage_spools 1"), "{metrics}");
    let (ok, printed) = spools_command(&exporting, &[]);
    assert!(ok, "{printed}");
    assert!(
        printed.contains(&format!("{}\tsince 2026-11-26T10:00:00", listed[0].node)),
        "{printed}"
    );

    proxy.come_back();
    cut_off
        .wait_for_metrics("the spool replay", |m| {
            m.contains("statusads_spool_events 0") && m.contains("statusads_spool_replayed_total 1")
        })
        .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let report: serde_json::Value = exporting.get(&path, &key).await.json().await.unwrap();
        if as_of(&report) > acknowledged {
            assert_eq!(
                report["totals"]["rendered"], 1,
                "replayed, once: {}",
                report["totals"]
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "as_of never moved on: {}",
            report["as_of"]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(cut_off
        .state
        .record
        .outage_spools()
        .await
        .unwrap()
        .is_empty());
    exporting
        .wait_for_metrics("no spool listed", |m| {
            m.contains("statusads_outage_spools 0")
        })
        .await;

    // A node gone for good with its spool: the operator forgets it, once.
    let record = &exporting.state.record;
    record
        .register_outage_spool("node_gone", 1, "gone")
        .await
        .unwrap();
    let (ok, printed) = spools_command(&exporting, &["--forget", "node_gone"]);
    assert!(ok && printed.contains("forgot node_gone"), "{printed}");
    assert!(record.outage_spools().await.unwrap().is_empty());
    let (ok, printed) = spools_command(&exporting, &["--forget", "node_gone"]);
    assert!(!ok, "nothing to forget: {printed}");
    let (ok, printed) = spools_command(&exporting, &[]);
    assert!(
        ok && printed.contains("no outage spool listed"),
        "{printed}"
    );
}

/// `statusads spools ARGS` for the deployment of `node`: whether it succeeded, and what it
/// printed.
fn spools_command(node: &TestApp, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_statusads"))
        .arg("spools")
        .args(args)
        .env(
            "STATUSADS__STORE__REDIS_URL",
            node.redis.as_ref().unwrap().url(),
        )
        .env("STATUSADS__STORE__DATABASE_URL", &node.database_url)
        .output()
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), printed)
}

/// Redis and the record both away. The first batch goes to Redis and fails there: Redis may
/// have run its script (a missed deadline looks the same), so it is spooled although it cannot
/// be listed, and acknowledged. The next batch queues behind it, cannot be listed and is refused with 503,
/// nothing kept. With the record back the spool is listed at the next drain (Redis still
/// away) and takes the retry; with Redis back both are replayed and reported once, and the
/// listing is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_and_the_record_both_away_a_batch_that_cannot_be_listed_is_refused() {
    let mut database = PostgresServer::start();
    let redis = RedisServer::start_durable();
    let url = database.database_for(&redis.url());
    let mut app = spawn_app_on(Some(redis), move |s| s.store.database_url = url.into()).await;
    let (_, key) = app.advertiser("Both away").await;
    let campaign = app.live_campaign(&key, json!({})).await;
    let first = token_of(&app.slots("u1", None, 12).await[0]);
    let second = token_of(&app.slots("u2", None, 12).await[0]);

    app.redis.as_mut().unwrap().kill();
    database.kill9();
    assert_eq!(app.render(&first).await, "accepted", "spooled, unlisted");
    let res = app
        .post(
            "/v1/events",
            CLIENT,
            json!({"events": [{"token": second, "type": "render"}]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("statusads_spool_events 1"),
        "the refused batch left nothing: {metrics}"
    );

    database.restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    while app
        .state
        .record
        .outage_spools()
        .await
        .map_or(true, |listed| listed.is_empty())
    {
        assert!(Instant::now() < deadline, "the spool was never listed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.render(&second).await, "accepted", "spooled, listed");

    app.redis.as_mut().unwrap().restart();
    app.wait_for_metrics("the spool replay", |m| {
        m.contains("statusads_spool_events 0") && m.contains("statusads_spool_replayed_total 2")
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while app.report_totals(&key, &campaign).await["rendered"] != 2 {
        assert!(
            Instant::now() < deadline,
            "the replayed renders never reached the record"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(app.state.record.outage_spools().await.unwrap().is_empty());
    assert_eq!(app.render(&first).await, "duplicate");
    assert_eq!(app.render(&second).await, "duplicate");
}

/// `n` sequential decisions for fresh users (each one would place an ad): how long each took
/// end to end, and how many placed one.
async fn timed_decisions(api: &Api, n: usize, label: &str) -> (Vec<Duration>, usize) {
    let mut latencies = Vec::with_capacity(n);
    let mut filled = 0;
    for i in 0..n {
        let started = Instant::now();
        let slots = api.slots(&format!("{label}-{i}"), None, 12).await;
        latencies.push(started.elapsed());
        filled += usize::from(!slots.is_empty());
    }
    (latencies, filled)
}

/// (p50, max) of some latencies, printed for the record.
fn summarise(label: &str, latencies: &[Duration]) -> (Duration, Duration) {
    let mut sorted = latencies.to_vec();
    sorted.sort();
    let (p50, max) = (sorted[sorted.len() / 2], sorted[sorted.len() - 1]);
    println!(
        "{label}: {} decisions, p50 {:.1} ms, max {:.1} ms",
        sorted.len(),
        p50.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3
    );
    (p50, max)
}

/// Generous bounds for a loaded 2-core machine; the deadline they are compared with is
/// `store.timeout_ms` (250 ms), which every decision waited before the breaker.
const OPEN_P50: Duration = Duration::from_millis(20);
const OPEN_MAX: Duration = Duration::from_millis(150);

/// A hung store (or a dead one, `kill`): after a few deadline misses the breaker opens and
/// decisions stop waiting for Redis; renders go to the spool at once. When Redis answers again
/// the probe closes the breaker, decisions place ads, and the spool replays exactly once.
async fn breaker_opens_and_closes_around(outage: Outage) {
    let redis = RedisServer::start_durable();
    let proxy = VanishingProxy::start(redis.port).await;
    let mut app = spawn_app_on(Some(redis), |s| {
        if matches!(outage, Outage::Vanished) {
            s.store.redis_url = proxy.url().into();
        }
    })
    .await;
    let (_, key) = app.advertiser("Breaker").await;
    let campaign = app
        .live_campaign(
            &key,
            json!({"priority": "sponsorship", "bid_cpm_micros": 2_000_000}),
        )
        .await;
    let token = token_of(&app.slots("before", None, 12).await[0]);
    let label = outage.label();
    let (healthy, filled) = timed_decisions(&app, 20, &format!("{label}-healthy")).await;
    assert_eq!(filled, 20, "Redis up: every decision places an ad");
    summarise(&format!("{label}, Redis up"), &healthy);

    let redis = app.redis.as_mut().unwrap();
    match outage {
        Outage::Hung => redis.pause(),
        Outage::Killed => redis.kill(),
        Outage::Vanished => proxy.vanish(),
    }
    if matches!(outage, Outage::Vanished) {
        // The refresher's reads (every second) begin on the silenced connections and wait out
        // their deadlines there: the spool's replay below must not wait behind them.
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    // The first decisions wait out the deadline: these open the breaker.
    let (opening, _) = timed_decisions(&app, 5, &format!("{label}-opening")).await;
    summarise(&format!("{label}, first 5 (opening)"), &opening);
    let (open, filled) = timed_decisions(&app, 50, &format!("{label}-open")).await;
    let (p50, max) = summarise(&format!("{label}, breaker open"), &open);
    assert_eq!(filled, 0, "no ads without the store");
    assert!(
        p50 < OPEN_P50 && max < OPEN_MAX,
        "decisions must not wait for a {label} Redis (deadline 250 ms): p50 {p50:?}, max {max:?}"
    );
    let started = Instant::now();
    assert_eq!(app.render(&token).await, "accepted", "spooled");
    println!(
        "{label}, breaker open: a render spooled in {:.1} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("statusads_store_breaker_open 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("statusads_store_breaker_transitions_total{to=\"open\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("statusads_spool_events 1"), "{metrics}");

    let redis = app.redis.as_mut().unwrap();
    match outage {
        Outage::Hung => redis.resume(),
        Outage::Killed => redis.restart(),
        Outage::Vanished => proxy.come_back(),
    }
    let back = Instant::now();
    let deadline = back + Duration::from_secs(20);
    let mut i = 0;
    while app
        .slots(&format!("{label}-back-{i}"), None, 12)
        .await
        .is_empty()
    {
        assert!(Instant::now() < deadline, "the breaker never closed");
        tokio::time::sleep(Duration::from_millis(50)).await;
        i += 1;
    }
    println!(
        "{label}: ads again {:.0} ms after Redis answered",
        back.elapsed().as_secs_f64() * 1e3
    );
    let metrics = app
        .wait_for_metrics("the spool replay", |m| {
            m.contains("statusads_spool_events 0") && m.contains("statusads_spool_replayed_total 1")
        })
        .await;
    assert!(
        metrics.contains("statusads_store_breaker_open 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("statusads_store_breaker_transitions_total{to=\"closed\"} 1"),
        "{metrics}"
    );
    // An export round that began in the outage waits out its deadline on the old connection
    // (vanished: 5 s) before the next one reads the outbox: the report says so by its `as_of`.
    let deadline = Instant::now() + Duration::from_secs(20);
    while app.report_totals(&key, &campaign).await["rendered"] == 0 {
        assert!(
            Instant::now() < deadline,
            "the spooled render never reached the record"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let totals = app.report_totals(&key, &campaign).await;
    assert_eq!(totals["rendered"], 1, "the spooled render, once");
    assert_eq!(app.render(&token).await, "duplicate");
}

#[derive(Clone, Copy)]
enum Outage {
    /// SIGSTOP: connections stay open, nothing answers.
    Hung,
    /// `kill -9`, later restarted on the same port (AOF).
    Killed,
    /// Gone from under the open connections without a reset (see `VanishingProxy`); reachable
    /// later through new connections only.
    Vanished,
}

impl Outage {
    fn label(self) -> &'static str {
        match self {
            Outage::Hung => "hung",
            Outage::Killed => "killed",
            Outage::Vanished => "vanished",
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_opens_the_breaker_and_decisions_stop_waiting() {
    breaker_opens_and_closes_around(Outage::Hung).await;
}

/// The connections open when Redis vanished never answer again: the probe makes new ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_gone_from_under_its_connections_is_reached_through_new_ones() {
    breaker_opens_and_closes_around(Outage::Vanished).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_redis_opens_the_breaker_and_decisions_stop_waiting() {
    breaker_opens_and_closes_around(Outage::Killed).await;
}

async fn readyz(api: &Api) -> StatusCode {
    api.http
        .get(api.url("/readyz"))
        .send()
        .await
        .unwrap()
        .status()
}

async fn wait_ready(api: &Api) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while readyz(api).await != StatusCode::OK {
        assert!(Instant::now() < deadline, "never ready again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A node stopped by SIGTERM takes its heartbeat and erasure count with it: the others stop
/// sharing budgets with it and no erasure waits for it (a node killed is counted until its
/// heartbeat ages, 5 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_stopped_gracefully_is_no_longer_counted() {
    use redis::AsyncCommands;
    let redis = RedisServer::start();
    let mut service = ServiceProcess::start(&redis.url()).await;
    let mut conn = redis.async_connection().await;
    let beats: std::collections::HashMap<String, i64> =
        conn.hgetall("nodes:{catalog}").await.unwrap();
    assert_eq!(beats.len(), 1, "{beats:?}");
    let node = beats.keys().next().unwrap().clone();
    let () = conn
        .hset("erasures:{catalog}:watched", &node, 3)
        .await
        .unwrap();
    let status = service.terminate().await;
    assert!(status.success(), "{status:?}");
    for key in ["nodes:{catalog}", "erasures:{catalog}:watched"] {
        let left: std::collections::HashMap<String, i64> = conn.hgetall(key).await.unwrap();
        assert!(left.is_empty(), "{key}: {left:?}");
    }
    // A command that starts the application to do its work leaves no heartbeat either.
    let seeded = service.run(&["seed-demo"]);
    assert!(seeded.status.success(), "{seeded:?}");
    let beats: std::collections::HashMap<String, i64> =
        conn.hgetall("nodes:{catalog}").await.unwrap();
    assert!(beats.is_empty(), "{beats:?}");
}

/// A node that has run before restarts while Redis is down: it starts from its catalog cache,
/// is not ready, answers empty slots fast and spools the render of a token it served before;
/// when Redis returns the spool replays and the render is counted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_starts_without_redis_from_its_catalog_cache() {
    let mut redis = RedisServer::start_durable();
    let mut service = ServiceProcess::start(&redis.url()).await;
    let api = &service.api;
    let (_, key) = api.advertiser("Cached").await;
    let campaign = api
        .live_campaign(
            &key,
            json!({"priority": "sponsorship", "bid_cpm_micros": 2_000_000}),
        )
        .await;
    let token = token_of(&api.slots("u1", None, 12).await[0]);
    service.terminate().await;
    redis.kill();

    service.spawn(Until::Serving).await;
    let api = &service.api;
    assert_eq!(readyz(api).await, StatusCode::SERVICE_UNAVAILABLE);
    let (latencies, filled) = timed_decisions(api, 30, "cold").await;
    let (p50, max) = summarise("started without Redis", &latencies);
    assert_eq!(filled, 0);
    assert!(p50 < OPEN_P50 && max < OPEN_MAX, "p50 {p50:?}, max {max:?}");
    assert_eq!(api.render(&token).await, "accepted", "spooled, not invalid");
    let metrics = api.metrics().await;
    assert!(metrics.contains("statusads_spool_events 1"), "{metrics}");

    redis.restart();
    api.wait_for_metrics("the spool replay", |m| {
        m.contains("statusads_spool_events 0") && m.contains("statusads_spool_replayed_total 1")
    })
    .await;
    wait_ready(api).await;
    let totals = api.report_totals(&key, &campaign).await;
    assert_eq!(
        totals["rendered"], 1,
        "served before, spooled, replayed: once"
    );
    assert_eq!(api.render(&token).await, "duplicate");
    assert!(!api.slots("u2", None, 12).await.is_empty(), "ads again");
}

/// A node that never ran before (its own, empty `data_dir`) starts while Redis is down: the
/// catalog comes from the system of record, so it knows the campaign of a token another node
/// served, spools its render (acknowledged) and counts it once when Redis returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_node_starts_without_redis_with_the_catalog_from_the_record() {
    let mut redis = RedisServer::start_durable();
    let mut first = ServiceProcess::start(&redis.url()).await;
    let (_, key) = first.api.advertiser("Fresh").await;
    let campaign = first.api.live_campaign(&key, json!({})).await;
    let token = token_of(&first.api.slots("u1", None, 12).await[0]);
    first.kill9();
    redis.kill();

    let fresh = ServiceProcess::start_until(&redis.url(), Until::Serving).await;
    let api = &fresh.api;
    assert_eq!(readyz(api).await, StatusCode::SERVICE_UNAVAILABLE);
    assert!(api.slots("u2", None, 12).await.is_empty());
    assert_eq!(api.render(&token).await, "accepted", "spooled");
    assert_eq!(
        api.get(&format!("/v1/campaigns/{campaign}"), &key)
            .await
            .status(),
        StatusCode::OK,
        "the advertiser's key and campaign are known without Redis"
    );

    redis.restart();
    wait_ready(api).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while api.report_totals(&key, &campaign).await["rendered"] != 1 {
        assert!(std::time::Instant::now() < deadline, "the spool replays");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(api.render(&token).await, "duplicate");
}

/// An unreachable system of record stops the start with a message naming the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_stops_the_start_naming_the_key() {
    let redis = RedisServer::start();
    let port = crate::support::ports::free_port();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_statusads"))
        .env("STATUSADS__STORE__REDIS_URL", redis.url())
        .env(
            "STATUSADS__STORE__DATABASE_URL",
            format!("postgres://statusads:secret-password@127.0.0.1:{port}/nowhere"),
        )
        .env("STATUSADS__HTTP__BIND", "127.0.0.1:0")
        .env(
            "STATUSADS__STORE__DATA_DIR",
            crate::support::scratch::ScratchDir::new("nodb").path(),
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("store.database_url"), "{stderr}");
    assert!(
        !stderr.contains("secret-password"),
        "no password in the message: {stderr}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_statusads"))
        .env("STATUSADS__STORE__REDIS_URL", redis.url())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("store.database_url") && stderr.contains("required"),
        "{stderr}"
    );
}

/// A `data_dir` the service cannot use stops the start with a message naming the key and the
/// path that failed (once: "cannot start: Not a directory (os error 20)"): a regular file, a
/// path under one, and a file it keeps inside that is not a file.
#[test]
fn an_unusable_data_dir_stops_the_start_naming_the_path() {
    let scratch = crate::support::scratch::ScratchDir::new("bad-data-dir");
    let file = scratch.path().join("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    let kept_as_dir = scratch.path().join("data");
    std::fs::create_dir_all(kept_as_dir.join("admin_token")).unwrap();
    for (data_dir, named) in [
        (file.clone(), file.clone()),
        (file.join("data"), file.join("data")),
        (kept_as_dir.clone(), kept_as_dir.join("admin_token")),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_statusads"))
            .env("STATUSADS__HTTP__BIND", "127.0.0.1:0")
            .env("STATUSADS__STORE__DATA_DIR", &data_dir)
            .env("STATUSADS__STORE__SHARDS", "16")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(
            stderr.contains(&format!(
                "cannot start: config key `store.data_dir`: {}: ",
                named.display()
            )),
            "{}: {stderr}",
            data_dir.display()
        );
    }
}

/// SIGTERM while Redis is down and the spool holds events, with clients still asking for slots
/// and reports: the node stops in order (stops accepting, stops the refresher and the probe,
/// drains in-flight requests), exits 0 without a panic and keeps the spool; the next start, with
/// Redis back, replays it exactly once. Three rounds: the panic this guards against depended on
/// which task was waiting on Redis at the signal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_redis_down_keeps_the_spool_and_exits_cleanly() {
    let mut redis = RedisServer::start_durable();
    let mut service = ServiceProcess::start(&redis.url()).await;
    let (_, key) = service.api.advertiser("Shutdown").await;
    let campaign = service
        .api
        .live_campaign(
            &key,
            json!({"priority": "sponsorship", "bid_cpm_micros": 2_000_000}),
        )
        .await;
    let mut spooled = Vec::new();
    for round in 0..3 {
        let api = &service.api;
        let mut tokens = Vec::new();
        for user in 0..4 {
            tokens.push(token_of(
                &api.slots(&format!("r{round}-u{user}"), None, 12).await[0],
            ));
        }
        redis.kill();
        for token in &tokens {
            assert_eq!(api.render(token).await, "accepted");
        }
        let metrics = api.metrics().await;
        assert!(metrics.contains("statusads_spool_events 4"), "{metrics}");
        // Clients keep calling while the refresher retries the replay, up to the signal.
        let traffic = Api {
            address: api.address.clone(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()
                .unwrap(),
        };
        let key_for_reports = key.clone();
        let campaign_for_reports = campaign.clone();
        let clients = tokio::spawn(async move {
            let mut i = 0;
            loop {
                i += 1;
                let slots = traffic
                    .http
                    .post(traffic.url("/v1/slots"))
                    .bearer_auth(CLIENT)
                    .json(&json!({"user": format!("t{i}"), "statuses": 12}))
                    .send();
                let report = traffic
                    .http
                    .get(traffic.url(&format!("/v1/reports/campaigns/{campaign_for_reports}")))
                    .bearer_auth(&key_for_reports)
                    .send();
                let (slots, _) = futures_util::join!(slots, report);
                if slots.is_err() {
                    return;
                }
            }
        });
        tokio::time::sleep(Duration::from_millis(1500)).await;

        let status = service.terminate().await;
        clients.await.unwrap();
        let log = service.log();
        assert!(!log.contains("panicked"), "no panic at shutdown:\n{log}");
        assert_eq!(status.code(), Some(0), "clean exit:\n{log}");
        spooled.extend(tokens);

        redis.restart();
        service.spawn(Until::Ready).await;
        let api = &service.api;
        api.wait_for_metrics("the spool replay", |m| {
            m.contains("statusads_spool_events 0") && m.contains("statusads_spool_replayed_total 4")
        })
        .await;
        let totals = api.report_totals(&key, &campaign).await;
        assert_eq!(
            totals["rendered"],
            spooled.len(),
            "each spooled render once"
        );
    }
    for token in &spooled {
        assert_eq!(service.api.render(token).await, "duplicate");
    }
}

/// The quick start as a new user meets it: the real binary with nothing configured prints its
/// generated tokens and the demo key; after a restart it prints the same ones and they still
/// work (they are kept in `data_dir`, readable by the owner only).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_tokens_survive_a_restart() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let data_dir = crate::support::scratch::ScratchDir::new("quickstart");
    let port = crate::support::ports::free_port();
    let start = || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_statusads"))
            .env("STATUSADS__HTTP__BIND", format!("127.0.0.1:{port}"))
            .env("STATUSADS__STORE__DATA_DIR", data_dir.path())
            .env("STATUSADS__STORE__SHARDS", "16")
            .env("STATUSADS_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut printed = std::collections::BTreeMap::new();
        for line in BufReader::new(child.stdout.take().unwrap()).lines() {
            let line = line.unwrap();
            if let Some((what, value)) = line.split_once("): ") {
                let what = what.split(" (").next().unwrap().to_owned();
                printed.insert(what, value.to_owned());
            }
            if line.starts_with("try:") {
                break;
            }
        }
        (child, printed)
    };
    let (mut first, printed) = start();
    let admin = printed["operator token"].clone();
    assert!(admin.starts_with("sa_admin_"), "{printed:?}");
    assert!(
        printed.contains_key("client token")
            && printed.contains_key("demo advertiser API key, as seeded")
    );
    first.kill().unwrap();
    first.wait().unwrap();
    let (mut second, again) = start();
    assert_eq!(again, printed, "the same secrets at the next start");
    let api = crate::support::app::Api {
        address: format!("http://127.0.0.1:{port}"),
        http: reqwest::Client::new(),
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let res = loop {
        if let Ok(res) = api
            .http
            .get(api.url("/v1/advertisers"))
            .bearer_auth(&admin)
            .send()
            .await
        {
            break res;
        }
        assert!(std::time::Instant::now() < deadline, "the service answers");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "the first start's operator token still works"
    );
    let key = &printed["demo advertiser API key, as seeded"];
    assert_eq!(api.get("/v1/campaigns", key).await.status(), StatusCode::OK);
    second.kill().unwrap();
    second.wait().unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for file in ["admin_token", "client_token", "signing_key", "demo_api_key"] {
            let mode = std::fs::metadata(data_dir.path().join(file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
    }
}

/// Two deployments can share one Redis through its databases: every key of a node whose URL
/// names database 3 is in database 3, none in database 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_in_the_redis_url_holds_every_key() {
    let redis = RedisServer::start();
    let url = format!("{}/3", redis.url());
    let app = spawn_app_on(Some(redis), move |s| s.store.redis_url = url.into()).await;
    let (_, key) = app.advertiser("Tenant").await;
    app.live_campaign(&key, json!({})).await;
    let token = token_of(&app.slots("u1", None, 12).await[0]);
    assert_eq!(app.render(&token).await, "accepted");
    let mut conn = app.redis.as_ref().unwrap().connection();
    let size = |conn: &mut redis::Connection, db: u32| -> u64 {
        redis::cmd("SELECT").arg(db).query::<()>(conn).unwrap();
        redis::cmd("DBSIZE").query(conn).unwrap()
    };
    assert!(size(&mut conn, 3) > 0);
    assert_eq!(size(&mut conn, 0), 0);
}
