//! Operators' tools for real: Debian's Prometheus scrapes the service and answers a
//! `statusads_` query; `promtool` accepts the shipped alert rules and a real scrape; the Grafana
//! dashboard only queries metrics the service exports.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use statusads::metrics::CATALOGUE;

use crate::support::app::token_of;
use crate::support::ports::free_port;
use crate::support::process_group::ProcessGroup;
use crate::support::scratch::ScratchDir;
use crate::support::{spawn_app, spawn_app_with, Backend};

fn repo(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[test]
fn promtool_accepts_the_alert_rules() {
    let output = Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(repo("config/prometheus/alerts.yml"))
        .output()
        .expect("promtool (apt-get install prometheus)");
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn dashboards_and_alerts_only_use_exported_metrics() {
    let known = |name: &str| {
        let base = name
            .trim_end_matches("_bucket")
            .trim_end_matches("_sum")
            .trim_end_matches("_count");
        CATALOGUE.iter().any(|m| m.name == base || m.name == name)
    };
    for file in [
        "config/grafana/statusads-dashboard.json",
        "config/prometheus/alerts.yml",
    ] {
        let text = std::fs::read_to_string(repo(file)).unwrap();
        if file.ends_with(".json") {
            serde_json::from_str::<Value>(&text).expect("valid dashboard JSON");
        }
        let mut found = 0;
        for (i, _) in text.match_indices("statusads_") {
            let name: String = text[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            assert!(
                known(&name),
                "{file} uses {name}, which the service does not export"
            );
            found += 1;
        }
        assert!(found > 5, "{file} queries statusads metrics");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_service() {
    let app = spawn_app(Backend::Redis).await;
    let dir = ScratchDir::new("prometheus");
    let target = app.address.trim_start_matches("http://");
    std::fs::copy(
        repo("config/prometheus/alerts.yml"),
        dir.path().join("alerts.yml"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [alerts.yml]\n\
             scrape_configs:\n  - job_name: statusads\n    metrics_path: /metrics\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let port = free_port();
    // Ends with the test, also when an assertion below fails.
    let _prometheus = ProcessGroup::spawn(
        Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .expect("prometheus (apt-get install prometheus)");

    let (_, key) = app.advertiser("Observed").await;
    app.live_campaign(&key, json!({})).await;
    for user in 0..5 {
        let slots = app.slots(&format!("u{user}"), None, 12).await;
        assert_eq!(app.render(&token_of(&slots[0])).await, "accepted");
    }

    // promtool's own linter accepts a real scrape (types, help, names, histogram series).
    let scrape = app.metrics().await;
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (apt-get install prometheus)");
    std::io::Write::write_all(&mut promtool.stdin.take().unwrap(), scrape.as_bytes()).unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}\n{scrape}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    let query = format!("http://127.0.0.1:{port}/api/v1/query");
    let deadline = Instant::now() + Duration::from_secs(30);
    let value = loop {
        let answer = app
            .http
            .get(&query)
            .query(&[(
                "query",
                "statusads_events_total{type=\"render\",status=\"accepted\"}",
            )])
            .send()
            .await;
        if let Ok(answer) = answer {
            let body: Value = answer.json().await.unwrap_or_default();
            // The first scrape may predate some renders: wait for the full count.
            if let Some(value) = body["data"]["result"][0]["value"][1]
                .as_str()
                .filter(|v| *v == "5")
            {
                break value.to_owned();
            }
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never returned the metric"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(value, "5");
    let rules: Value = app
        .http
        .get(format!("http://127.0.0.1:{port}/api/v1/rules"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        rules["data"]["groups"]
            .as_array()
            .is_some_and(|g| !g.is_empty()),
        "alert rules loaded: {rules}"
    );
}

/// Nodes sharing a Redis compare their money settings: one started with another exchange rate
/// is counted by every other node (absent before a node's first comparison); once it is gone,
/// the count falls back to 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_pricing_with_other_rates_is_a_metric() {
    use crate::support::app::spawn_app_on;

    async fn counts_apart(node: &crate::support::TestApp, others: u32) {
        let line = format!("statusads_nodes_pricing_apart {others}\n");
        node.wait_for_metrics("settings compared", |m| m.contains(&line))
            .await;
    }
    let first = spawn_app_with(Backend::Redis, |s| {
        s.money.rates.insert("JPY".into(), 0.0061);
    })
    .await;
    // Each waits for the one before to have compared (its entry is written then).
    counts_apart(&first, 0).await;
    let redis_url = first.redis.as_ref().unwrap().url();
    let database_url = first.database_url.clone();
    let same = {
        let (redis_url, database_url) = (redis_url.clone(), database_url.clone());
        spawn_app_on(None, move |s| {
            s.store.redis_url = redis_url.into();
            s.store.database_url = database_url.into();
            s.money.rates.insert("jpy".into(), 0.0061);
        })
        .await
    };
    counts_apart(&same, 0).await;
    let apart = spawn_app_on(None, move |s| {
        s.store.redis_url = redis_url.into();
        s.store.database_url = database_url.into();
        s.money.rates.insert("JPY".into(), 0.0062);
    })
    .await;
    counts_apart(&apart, 2).await;
    // Each compares once a minute (nodes' clocks move together).
    for node in [&first, &same, &apart] {
        node.clock.advance_secs(61);
    }
    for (node, others) in [(&first, 1), (&same, 1), (&apart, 2)] {
        counts_apart(node, others).await;
    }
    // A node whose clock stopped (as one gone would) no longer counts after three minutes.
    for node in [&first, &same] {
        node.clock.advance_secs(181);
        counts_apart(node, 0).await;
    }
}

/// Each node measures its clock against Redis's once a minute: the test app's clock, set apart
/// from the real one, reads as that far apart, and once it follows the real time as within a
/// second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_clock_apart_from_redis_is_a_metric() {
    fn offset(metrics: &str) -> Option<f64> {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix("statusads_clock_offset_seconds "))
            .map(|value| value.trim().parse().unwrap())
    }
    use statusads::clock::Clock;
    let real_now = time::OffsetDateTime::now_utc;
    let app = spawn_app(Backend::Redis).await;
    let real_ms = (real_now().unix_timestamp_nanos() / 1_000_000) as i64;
    let apart = (app.clock.now_ms() - real_ms) as f64 / 1000.0;
    assert!(apart.abs() > 60.0, "the test clock is not the real one");
    let metrics = app
        .wait_for_metrics("clock measured", |m| offset(m).is_some())
        .await;
    let measured = offset(&metrics).unwrap();
    assert!((measured - apart).abs() < 5.0, "{measured} vs {apart}");
    // Set to the real time and kept there (a manual clock stands still between two readings
    // otherwise): the clock moved by more than a minute, so it is compared at once.
    let clock = app.clock.clone();
    let follow = tokio::spawn(async move {
        loop {
            clock.set(real_now());
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    });
    let metrics = app
        .wait_for_metrics("clock measured again", |m| {
            offset(m).is_some_and(|o| o.abs() < 1.0)
        })
        .await;
    follow.abort();
    assert!(offset(&metrics).unwrap().abs() < 1.0);
}

/// A Redis that keeps no append-only file, or may evict keys under memory pressure, is named at
/// start in a metric (and the log) for the alert rules; one that does neither reads 1 and 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn how_redis_keeps_acknowledged_events_is_a_metric() {
    use crate::support::app::spawn_app_on;
    use crate::support::redis_server::RedisServer;

    let lax = RedisServer::start();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("allkeys-lru")
        .query(&mut lax.connection())
        .unwrap();
    let app = spawn_app_on(Some(lax), |_| {}).await;
    app.wait_for_metrics("Redis's persistence", |m| {
        m.contains("statusads_redis_aof_enabled 0\n") && m.contains("statusads_redis_evicting 1\n")
    })
    .await;

    let strict = spawn_app_on(Some(RedisServer::start_durable()), |_| {}).await;
    strict
        .wait_for_metrics("Redis's persistence", |m| {
            m.contains("statusads_redis_aof_enabled 1\n")
                && m.contains("statusads_redis_evicting 0\n")
        })
        .await;
}
