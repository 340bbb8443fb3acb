//! Embedded journal write latency under group commit: how long a write waits for the fsync that
//! covers it, at 1, 4 and 16 concurrent writers. A lost wake-up of the sync thread shows as
//! writes waiting out its 50 ms poll (p99 and max near 50 ms).
//!
//! `cargo bench --bench journal` (under `cargo test`, without `--bench`, a smoke run only).

use std::sync::Arc;
use std::time::{Duration, Instant};

use statusads::capping::Retention;
use statusads::domain::event::EventType;
use statusads::store::{EmbeddedStore, EventWrite};

fn event(i: usize) -> EventWrite {
    EventWrite {
        // A render: every one writes (a view of an unrendered slot would be refused unwritten).
        kind: EventType::Render,
        decision_id: format!("{i:032x}"),
        user: format!("bench-user-{i}"),
        campaign: "cmp_00000000000000aa".into(),
        advertiser: "adv_00000000000000aa".into(),
        price_micros: 2_000,
        token_ttl_ms: 1_200_000,
        user_ttl_ms: 86_400_000,
        campaign_caps: Vec::new(),
        advertiser_caps: Vec::new(),
        campaign_keep: Retention {
            count: 0,
            window_ms: 0,
        },
        advertiser_keep: Retention {
            count: 0,
            window_ms: 0,
        },
        daily_max: 10,
        client_at: String::new(),
        audience: Default::default(),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn run(store: Arc<EmbeddedStore>, writers: usize, writes: usize) -> Vec<Duration> {
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(writes);
                for i in 0..writes {
                    let started = Instant::now();
                    store
                        .redis()
                        .apply_events(0, 0, 20261126, &[event(w * writes + i)])
                        .await
                        .unwrap();
                    latencies.push(started.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all.sort();
    all
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let writes = if full { 2_000 } else { 20 };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("| writers | writes | p50 | p90 | p99 | max | writes/s |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for writers in [1, 4, 16] {
        let dir = std::env::temp_dir().join(format!(
            "statusads-journal-bench-{}-{writers}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        // Opened on the runtime: the store's connections live on it.
        let store = Arc::new(runtime.block_on(async { EmbeddedStore::open(&dir).unwrap() }));
        let started = Instant::now();
        let latencies = runtime.block_on(run(store, writers, writes / writers.min(4)));
        let elapsed = started.elapsed();
        let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1000.0);
        println!(
            "| {writers} | {} | {} | {} | {} | {} | {:.0} |",
            latencies.len(),
            ms(percentile(&latencies, 0.5)),
            ms(percentile(&latencies, 0.9)),
            ms(percentile(&latencies, 0.99)),
            ms(*latencies.last().unwrap()),
            latencies.len() as f64 / elapsed.as_secs_f64()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
    if !full {
        eprintln!("journal: smoke run only (pass --bench via `cargo bench` for the measurement)");
    }
}
