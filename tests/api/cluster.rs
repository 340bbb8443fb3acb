//! The main flows through two service instances at once over a real 3-master Redis Cluster:
//! no CROSSSLOT errors, caps and exactly-once billing hold across nodes, both nodes export the
//! one outbox into the one record, and reconcile finds hot spend equal to it.

use serde_json::{json, Value};

use crate::support::app::{spawn_app_on, token_of};
use crate::support::redis_cluster::RedisCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_a_redis_cluster_keep_caps_and_bill_once() {
    let cluster = RedisCluster::start();
    let seeds = cluster.seeds();
    let first = spawn_app_on(None, |s| s.store.cluster_nodes = seeds.clone()).await;
    let second = spawn_app_on(None, |s| s.store.cluster_nodes = seeds.clone()).await;
    let (_, key) = first.advertiser("Clustered").await;
    let campaign = first
        .live_campaign(&key, json!({"priority": "sponsorship", "bid_cpm_micros": 2_000_000, "frequency_caps": [{"max": 1, "per_seconds": 86400}]}))
        .await;
    second.state.catalog.refresh().await.unwrap();

    // Users spread over every shard (and so every node): served on one node, the reservation
    // holds the cap on the other; rendered on the other; counted once.
    let users = 24;
    for user in 0..users {
        let name = format!("cluster-user-{user}");
        let (server, other) = if user % 2 == 0 {
            (&first, &second)
        } else {
            (&second, &first)
        };
        let slots = server.slots(&name, None, 12).await;
        assert_eq!(slots.len(), 1, "{name}");
        assert!(
            other.slots(&name, None, 12).await.is_empty(),
            "reservation holds across nodes for {name}"
        );
        let token = token_of(&slots[0]);
        assert_eq!(other.render(&token).await, "accepted");
        assert_eq!(server.render(&token).await, "duplicate");
        assert!(
            server.slots(&name, None, 12).await.is_empty(),
            "cap of 1 holds for {name}"
        );
    }

    // The reports read the record, which both nodes fill from the one outbox. A report waits
    // up to 2 s for its node's next export round, which a loaded machine can outlast: wait for
    // the export itself (and say how it went if it stalls), then hold every figure exact.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while (crate::support::postgres::ledger_records(&first.database_url)
        .await
        .len() as u64)
        < users
    {
        if std::time::Instant::now() > deadline {
            let mut export = String::new();
            for node in [&first, &second] {
                for line in node.metrics().await.lines() {
                    if line.starts_with("statusads_export")
                        || line.starts_with("statusads_outbox")
                        || line.starts_with("statusads_redis_errors")
                    {
                        export.push_str(line);
                        export.push('\n');
                    }
                }
            }
            panic!("the record lacks renders after 30 s:\n{export}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    for node in [&first, &second] {
        let totals = node.report_totals(&key, &campaign).await;
        assert_eq!(
            (totals["rendered"].as_u64(), totals["spend_micros"].as_i64()),
            (Some(users), Some(users as i64 * 2000))
        );
        node.refresh_spend().await;
        let shown: Value = node
            .get(&format!("/v1/campaigns/{campaign}"), &key)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(shown["spend"]["total_micros"], users * 2000);
        let invoice: Value = node
            .get("/v1/invoices/2026-11", &key)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(invoice["total_micros"], users * 2000);
    }
    let ready = first.http.get(first.url("/readyz")).send().await.unwrap();
    assert!(ready.status().is_success());
    // Every master answers how it keeps data (each keeps an AOF), and asking is no Redis
    // error (nor is the daily request to rewrite it, made at the first round).
    first
        .wait_for_metrics("the cluster's persistence", |m| {
            m.contains("statusads_redis_aof_enabled 1\n")
                && m.contains("statusads_redis_evicting 0\n")
                && m.contains("statusads_redis_errors_total{op=\"ping\"} 0\n")
        })
        .await;

    // Both nodes exported; each render is in the record once (renders only: no views sent).
    let stored = crate::support::postgres::ledger_records(&first.database_url).await;
    assert_eq!(stored.len() as u64, users, "{stored:?}");
    let report = first.reconcile(false).await;
    assert!(report.differences.is_empty(), "{:?}", report.differences);
    assert_eq!(report.records, users);
}
