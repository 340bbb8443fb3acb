//! Load benchmark: the service on the redis backend with N synthetic campaigns, driven by `wrk`
//! over loopback. Prints, from one run on one machine: `/healthz` requests/s, slot decisions/s
//! with p50/p99, their ratio, event ingestion (batches of 10) and the service's RSS.
//!
//! `cargo bench --bench load -- --campaigns 10000 --seconds 10 --connections 32 --requests 300000`
//!
//! Needs `redis-server` and `wrk` on PATH. Under `cargo test` (no `--bench` argument) it only
//! checks that it can seed a small catalog and answer one decision.

#[path = "support/synthetic.rs"]
mod synthetic;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use statusads::clock::SystemClock;
use statusads::config::Settings;
use statusads::domain::slot::SlotRequest;
use statusads::domain::UserId;
use statusads::startup::Application;
use statusads::store::CatalogRecord;

const CLIENT: &str = "bench-client-token";
const USERS: u32 = 1_000_000;
/// Distinct slot requests wrk cycles through by default: enough that a run reaches far into the
/// long tail of users (about 40% of the decisions place ads, as in a feed where most users are
/// under their daily load) rather than replaying a few thousand heavy users who have long
/// exhausted it (`--requests 20000`: about one decision in 20 places ads).
const SLOT_REQUESTS: u64 = 300_000;
/// Alternating /healthz and decision runs (see `run`).
const ROUNDS: u64 = 4;

/// `cargo bench --bench load -- [--campaigns N] [--requests N] [--seconds N] [--connections N]`.
#[derive(Clone, Copy, clap::Parser)]
#[command(about = "statusads load bench: the service on Redis and PostgreSQL, driven by wrk")]
struct Args {
    /// Synthetic campaigns in the catalog.
    #[arg(long, default_value_t = 10_000)]
    campaigns: usize,
    /// Distinct slot request bodies replayed.
    #[arg(long, default_value_t = SLOT_REQUESTS as usize)]
    requests: usize,
    /// Seconds per endpoint (split over the rounds).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// wrk connections.
    #[arg(long, default_value_t = 32)]
    connections: u32,
    /// Passed by `cargo bench`; without it (`cargo test`) only a smoke run.
    #[arg(long = "bench")]
    full: bool,
}

fn args() -> Args {
    // `cargo test` may pass test-harness arguments (filters, `--nocapture`): a smoke run then.
    let raw: Vec<String> = std::env::args().collect();
    <Args as clap::Parser>::try_parse_from(&raw).unwrap_or_else(|err| {
        if raw.iter().any(|a| a == "--bench") {
            err.exit()
        }
        <Args as clap::Parser>::parse_from(["load"])
    })
}

struct Redis(Child, u16);

impl Redis {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--logfile",
                "/tmp/statusads-load-redis.log",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server on PATH");
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
        for _ in 0..200 {
            if client.get_connection().is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Self(child, port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
    }
}

#[path = "../tests/api/support/postgres.rs"]
#[allow(dead_code)]
mod postgres;
#[path = "../tests/api/support/scratch.rs"]
mod scratch;

fn main() {
    let args = args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(args));
}

async fn run(args: Args) {
    let campaigns = if args.full { args.campaigns } else { 50 };
    let redis = Redis::start();
    let data_dir = std::env::temp_dir().join(format!("statusads-load-{}", std::process::id()));
    let mut settings = Settings::defaults();
    settings.http.bind = "127.0.0.1:0".into();
    let redis_url = format!("redis://127.0.0.1:{}", redis.1);
    let database = postgres::PostgresServer::start();
    let database_url = database.database_for(&redis_url);
    settings.store.redis_url = redis_url.into();
    settings.store.database_url = database_url.into();
    settings.store.data_dir = data_dir.clone();
    settings.auth.admin_token = "bench-admin-token".into();
    settings.auth.client_tokens = vec![CLIENT.into()];
    settings.demo.seed = Some(false);
    // Sampling is measured apart: off in every run but the sampled one (see the rounds).
    settings.insight.sample_rate = 0.0;
    // Measure the service, not the limits (heavy synthetic users would hit the per-user limit).
    settings.rate_limits.client_per_second = 0.0;
    settings.rate_limits.user_per_minute = 0.0;
    // Seed before the service starts: this measures serving a catalog, not absorbing a burst of
    // 200k catalog writes (each of which would trigger a snapshot rebuild).
    let started = Instant::now();
    let record = statusads::record::Record::open(
        settings.store.database_url.expose_secret(),
        &settings.store.data_dir,
    )
    .await
    .expect("the system of record");
    seed(&record, campaigns).await;
    drop(record);
    let (app, _) = Application::build(settings, Arc::new(SystemClock))
        .await
        .expect("app starts");
    eprintln!(
        "seeded and loaded {campaigns} campaigns in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let port = app.port();
    let state = app.state.clone();
    tokio::spawn(app.run_until_stopped());

    // Sanity: requests in the synthetic distribution get ads, in process.
    let mut rng = rand::thread_rng();
    let mut served = 0;
    for i in 0..100 {
        let request = SlotRequest {
            user: UserId::parse(&format!("bench-user-{i}")).unwrap(),
            session: None,
            statuses: 12,
            context: synthetic::context(&mut rng),
            personalized: None,
            state: None,
        };
        served += state.server.slots(&request).await.slots.len();
    }
    assert!(served > 0, "the synthetic catalog serves ads");
    if !args.full {
        eprintln!("load: smoke run only (pass --bench via `cargo bench` for the measurement)");
        let _ = std::fs::remove_dir_all(&data_dir);
        return;
    }

    let base = format!("http://127.0.0.1:{port}");
    let scripts = data_dir.join("wrk");
    std::fs::create_dir_all(&scripts).unwrap();
    let slots_file = scripts.join("slots.txt");
    std::fs::write(&slots_file, slot_bodies(args.requests).join("\n")).unwrap();
    let slots_script = scripts.join("slots.lua");
    std::fs::write(
        &slots_script,
        replay_lua(&slots_file.display().to_string(), None),
    )
    .unwrap();
    let filled_before = counter(&state, "statusads_decisions_total{outcome=\"filled\"}");
    let scripts_before = script_stats(redis.1);
    // This machine's speed drifts by tens of percent within minutes, so /healthz and decisions
    // alternate in short rounds and each round's ratio compares neighbours; the median is
    // reported.
    let round = Args {
        seconds: (args.seconds / ROUNDS).max(1),
        ..args
    };
    let (mut healthz, mut decisions, mut sampled) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..ROUNDS {
        healthz.push(wrk(&round, &redis, &format!("{base}/healthz"), None));
        // The same decisions with `insight.sample_rate` at its default, 0.01, and without;
        // in alternating order, since the long tail's users fill up from run to run.
        for sampling in if i % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        } {
            state
                .server
                .insight
                .set_rate(if sampling { 0.01 } else { 0.0 });
            let run = wrk(
                &round,
                &redis,
                &format!("{base}/v1/slots"),
                Some(&slots_script),
            );
            if sampling {
                sampled.push(run);
            } else {
                decisions.push(run);
            }
        }
        state.server.insight.set_rate(0.0);
    }
    // The decision path's only Redis call is the commit script (the background refreshers use
    // plain commands), so script calls per decision are its round trips.
    let (commits, commit_us) = script_stats(redis.1).since(scripts_before);
    let filled = counter(&state, "statusads_decisions_total{outcome=\"filled\"}") - filled_before;
    let decided: u64 = decisions.iter().chain(&sampled).map(|d| d.requests).sum();
    let mut ratios: Vec<f64> = healthz
        .iter()
        .zip(&decisions)
        .map(|(h, d)| d.rps / h.rps)
        .collect();
    ratios.sort_by(f64::total_cmp);
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[(v.len() - 1) / 2] + v[v.len() / 2]) / 2.0
    };
    // DESIGN's latency target is the p99 at half the decision throughput: each connection
    // pauses so that the offered load is about half of what the rounds reached.
    // (wrk pauses in whole milliseconds; the run prints the rate it reached.)
    let full_rps = median(decisions.iter().map(|d| d.rps).collect());
    let pause_ms = (1000.0 * args.connections as f64 / (full_rps / 2.0)).max(1.0);
    let half_script = scripts.join("slots-half.lua");
    std::fs::write(
        &half_script,
        replay_lua(
            &slots_file.display().to_string(),
            Some(pause_ms.round() as u64),
        ),
    )
    .unwrap();
    let half = wrk(
        &round,
        &redis,
        &format!("{base}/v1/slots"),
        Some(&half_script),
    );
    let per_round = |runs: &[WrkResult]| {
        runs.iter()
            .map(|r| format!("{:.0}", r.rps))
            .collect::<Vec<_>>()
            .join(" / ")
    };

    // Decisions while forecasts run: 100,000 sampled requests in the record, forecasts of a
    // campaign replaying them one after another (each on its low-priority thread), and a
    // decision round beside them.
    let forecasting = forecasts_while(&state, || {
        wrk(
            &round,
            &redis,
            &format!("{base}/v1/slots"),
            Some(&slots_script),
        )
    })
    .await;

    // Events: batches of 10 events of real tokens, from decisions made in process, in the two
    // shapes of `BatchShape`.
    let mut events = Vec::new();
    for shape in [BatchShape::Device, BatchShape::Mixed] {
        let batches = event_batches(&state, 20_000, shape).await;
        events.push(drive_events(
            &args,
            &base,
            &scripts,
            &redis,
            shape,
            &batches,
            &state,
            database.pid().expect("PostgreSQL runs"),
        ));
    }
    let cap_entry_bytes = bytes_per_cap_entry(redis.1);

    let rss_kib = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_owned())
        })
        .unwrap_or_default();
    println!(
        "\n## statusads load ({} campaigns, {} distinct slot requests, {} connections, {} s per endpoint, 2 cores)",
        campaigns, args.requests, args.connections, args.seconds
    );
    println!("| measure | value |\n|---|---|");
    println!(
        "| /healthz requests/s, per round | {} |",
        per_round(&healthz)
    );
    println!(
        "| /v1/slots decisions/s, per round | {} |",
        per_round(&decisions)
    );
    println!(
        "| decisions / healthz ratio: median (lowest-highest round) | {:.2} ({:.2}-{:.2}) |",
        median(ratios.clone()),
        ratios[0],
        ratios[ratios.len() - 1]
    );
    // Over all rounds: what one request costs each process. With the cores busy, the ratio of
    // the two totals is about the throughput ratio, and the split says which part limits it.
    let per_request = |runs: &[WrkResult]| {
        let cpu = runs
            .iter()
            .fold(CpuTimes::default(), |acc, r| acc.plus(r.cpu));
        cpu.per_request_us(runs.iter().map(WrkResult::window_requests).sum())
    };
    for (what, runs) in [
        ("/healthz request", &healthz),
        ("decision", &decisions),
        ("decision sampled at 0.01", &sampled),
    ] {
        let [service, redis, client] = per_request(runs);
        println!(
            "| CPU per {what}: service + Redis + wrk (total) | {service:.1} + {redis:.1} + {client:.1} ({:.1}) µs |",
            service + redis + client
        );
    }
    let (during, forecasts_run, forecast_time) = &forecasting;
    println!(
        "| decisions/s while forecasts run ({forecasts_run} forecasts of 100,000 sampled requests, median {:.2} s) vs the rounds' median | {:.0} vs {:.0} ({:+.1}%) |",
        forecast_time.as_secs_f64(),
        during.rps,
        full_rps,
        100.0 * (during.rps - full_rps) / full_rps
    );
    let (plain, with_sampling) = (per_request(&decisions)[0], per_request(&sampled)[0]);
    println!(
        "| insight sampling at 0.01: service CPU per decision vs off (target within 3%) | {:+.1}% |",
        100.0 * (with_sampling - plain) / plain
    );
    println!(
        "| decision latency p50 (median round) / p99 (worst round) | {:.2} / {:.2} ms |",
        median(decisions.iter().map(|d| d.p50_ms).collect()),
        decisions.iter().map(|d| d.p99_ms).fold(0.0, f64::max)
    );
    println!(
        "| at about half load ({:.0} decisions/s, {:.0}% of the rounds' median): p50 / p99 | {:.2} / {:.2} ms |",
        half.rps,
        100.0 * half.rps / full_rps,
        half.p50_ms,
        half.p99_ms
    );
    println!(
        "| decisions with ads | {:.0}% |",
        100.0 * filled / decided as f64
    );
    println!(
        "| Redis round trips per decision (all / with ads) | {:.2} / {:.2} |",
        commits / decided as f64,
        commits / filled.max(1.0)
    );
    for run in &events {
        println!(
            "| events/s, {} (all answered / accepted) | {:.0} / {:.0} |",
            run.shape.describe(),
            run.wrk.rps * 10.0,
            run.accepted_per_s
        );
        let [service, redis, client] = run.wrk.cpu.per_request_us(run.wrk.window_requests());
        println!(
            "| CPU per batch of 10: service + Redis + wrk (total) | {service:.1} + {redis:.1} + {client:.1} ({:.1}) µs |",
            service + redis + client
        );
        println!(
            "| Redis time per events script call ({:.1} per batch; commandstats) | {:.1} µs |",
            run.script_calls / run.wrk.requests.max(1) as f64,
            run.script_us / run.script_calls.max(1.0)
        );
        println!(
            "| export: longest outbox / longest as_of lag / outbox empty after the run | {} records / {:.1} s / {:.0} ms |",
            run.outbox_max, run.lag_max_s, run.drained_after_ms
        );
        println!(
            "| export: PostgreSQL CPU per exported record / Redis bytes kept per record | {:.1} µs / {:.0} B |",
            run.postgres_us_per_record, run.redis_bytes_per_record
        );
    }
    println!(
        "| Redis time per decision commit script (commandstats) | {:.1} µs |",
        commit_us / commits.max(1.0)
    );
    println!(
        "| non-2xx responses (slots, events) | {}, {} |",
        decisions.iter().map(|d| d.errors).sum::<u64>(),
        events.iter().map(|e| e.wrk.errors).sum::<u64>()
    );
    println!("| Redis bytes per (user, campaign) cap entry | {cap_entry_bytes:.0} |");
    println!(
        "| service RSS (MiB, includes the bench harness) | {:.0} |",
        rss_kib.parse::<f64>().unwrap_or(0.0) / 1024.0
    );
    let _ = std::fs::remove_dir_all(&data_dir);
}

/// The synthetic catalog of `support/synthetic.rs`, written straight to the record, then loaded.
async fn seed(record: &statusads::record::Record, campaigns: usize) {
    let data = synthetic::catalog(campaigns, 11);
    for advertiser in &data.advertisers {
        record
            .save(CatalogRecord::Advertiser(advertiser), None)
            .await
            .unwrap();
    }
    for campaign in &data.campaigns {
        record
            .save(CatalogRecord::Campaign(campaign), None)
            .await
            .unwrap();
    }
    for creative in &data.creatives {
        record
            .save(CatalogRecord::Creative(creative), None)
            .await
            .unwrap();
    }
}

/// A counter of the service's own /metrics text.
/// Runs `measure` while forecasts of a broad campaign replay 100,000 sampled requests one
/// after another; answers its result, the forecasts run and the median forecast time.
async fn forecasts_while(
    state: &actix_web::web::Data<statusads::http::AppState>,
    measure: impl FnOnce() -> WrkResult,
) -> (WrkResult, usize, Duration) {
    use statusads::insight::SampledRequest;
    use statusads::record::insight::InsightBatch;
    let now_ms = statusads::clock::ms_from_datetime(time::OffsetDateTime::now_utc());
    let mut rng = rand::thread_rng();
    let mut batch = InsightBatch::default();
    for i in 0..100_000_i64 {
        batch.requests.push((
            format!("{:032x}", rand::Rng::gen::<u128>(&mut rng)),
            now_ms - i * 5_000,
            format!("{:032x}", i % 25_000),
            serde_json::to_string(&SampledRequest {
                statuses: 12,
                session_served: 0,
                context: synthetic::context(&mut rng),
            })
            .unwrap(),
        ));
    }
    state.record.write_insight(&batch).await.unwrap();
    let owner = (**state.catalog.snapshot().advertisers().next().unwrap()).clone();
    let input = serde_json::from_value(serde_json::json!({"name": "Proposal",
        "bid_cpm_micros": 3_000_000, "budget": {"total_micros": 1_000_000_000},
        "frequency_caps": [{"max": 2, "per_seconds": 86400}]}))
    .unwrap();
    let proposed = statusads::domain::campaign::Campaign::create(
        input,
        &owner,
        time::OffsetDateTime::now_utc(),
    )
    .unwrap();
    let running = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let forecasts = tokio::spawn({
        let (state, running) = (state.clone(), running.clone());
        async move {
            let mut took = Vec::new();
            while running.load(std::sync::atomic::Ordering::SeqCst) {
                let server = &state.server;
                // Sampling is off in this round; the forecast scales as at the default rate.
                let mut market = server.forecast_market();
                market.rate = market.rate.max(0.01);
                let started = Instant::now();
                server
                    .insight
                    .forecast(proposed.clone(), market)
                    .await
                    .unwrap();
                took.push(started.elapsed());
            }
            took
        }
    });
    // The first forecast reads the samples before the measured round starts.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let result = tokio::task::block_in_place(measure);
    running.store(false, std::sync::atomic::Ordering::SeqCst);
    let mut took = forecasts.await.unwrap();
    took.sort();
    let median = took.get(took.len() / 2).copied().unwrap_or_default();
    (result, took.len(), median)
}

fn counter(state: &statusads::http::AppState, series: &str) -> f64 {
    state
        .metrics
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Lua script calls Redis has served (EVALSHA and EVAL) and the time they took. Redis times a
/// command by the wall clock, so with the cores contended this includes the moments Redis was
/// preempted mid-script: an upper bound on the CPU (the per-process CPU rows are exact).
#[derive(Clone, Copy)]
struct ScriptStats {
    calls: f64,
    usec: f64,
}

impl ScriptStats {
    /// (calls, microseconds) since `before`.
    fn since(self, before: Self) -> (f64, f64) {
        (self.calls - before.calls, self.usec - before.usec)
    }
}

fn script_stats(port: u16) -> ScriptStats {
    let mut conn = redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .unwrap()
        .get_connection()
        .unwrap();
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut conn)
        .unwrap();
    let field = |line: &str, name: &str| -> f64 {
        line.split(&format!("{name}="))
            .nth(1)
            .and_then(|rest| rest.split(',').next()?.parse().ok())
            .unwrap_or(0.0)
    };
    info.lines()
        .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
        .fold(
            ScriptStats {
                calls: 0.0,
                usec: 0.0,
            },
            |acc, l| ScriptStats {
                calls: acc.calls + field(l, "calls"),
                usec: acc.usec + field(l, "usec"),
            },
        )
}

/// Ledger records waiting in every shard's outbox (stream).
fn ledger_records(port: u16) -> u64 {
    let mut conn = redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .unwrap()
        .get_connection()
        .unwrap();
    (0..1024)
        .map(|s| {
            redis::cmd("XLEN")
                .arg(format!("ledger:{{s{s}}}"))
                .query::<u64>(&mut conn)
                .unwrap()
        })
        .sum()
}

/// Redis memory per (user, campaign) cap entry: for sampled user hashes, `MEMORY USAGE` of the
/// hash minus that of a copy without its campaign entries, divided by the entries: what each
/// entry adds (the user's fixed overhead, version, daily list and reservations excluded).
fn bytes_per_cap_entry(port: u16) -> f64 {
    let mut conn = redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .unwrap()
        .get_connection()
        .unwrap();
    let keys: Vec<String> = redis::cmd("SCAN")
        .arg(0)
        .arg("MATCH")
        .arg("u:*")
        .arg("COUNT")
        .arg(5000)
        .query::<(u64, Vec<String>)>(&mut conn)
        .unwrap()
        .1;
    let usage = |conn: &mut redis::Connection, key: &str| -> u64 {
        redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(key)
            .arg("SAMPLES")
            .arg(0)
            .query::<Option<u64>>(conn)
            .unwrap()
            .unwrap_or(0)
    };
    let (mut bytes, mut entries) = (0u64, 0u64);
    for key in keys.iter().take(2000) {
        let fields: Vec<String> = redis::cmd("HKEYS").arg(key).query(&mut conn).unwrap();
        let cap_fields: Vec<&String> = fields
            .iter()
            .filter(|f| f.starts_with('c') && f.len() == 17)
            .collect();
        if cap_fields.is_empty() || cap_fields.len() == fields.len() {
            continue;
        }
        let copy = "bench:copy";
        redis::cmd("COPY")
            .arg(key)
            .arg(copy)
            .arg("REPLACE")
            .query::<i64>(&mut conn)
            .unwrap();
        redis::cmd("HDEL")
            .arg(copy)
            .arg(&cap_fields)
            .query::<i64>(&mut conn)
            .unwrap();
        bytes += usage(&mut conn, key).saturating_sub(usage(&mut conn, copy));
        entries += cap_fields.len() as u64;
        redis::cmd("DEL").arg(copy).query::<i64>(&mut conn).unwrap();
    }
    if entries == 0 {
        return 0.0;
    }
    bytes as f64 / entries as f64
}

/// How a batch of 10 events is made up.
#[derive(Clone, Copy)]
enum BatchShape {
    /// What one device sends: its user's renders of the slots of two decisions (5-6) and views
    /// of the rest. One user, so one shard and one script call per batch.
    Device,
    /// Renders only, of consecutive users' slots (about 4 users, so about 4 shards and script
    /// calls per batch): the costlier shape.
    Mixed,
}

impl BatchShape {
    fn describe(self) -> &'static str {
        match self {
            Self::Device => "device batches (one user: ~6 renders + ~4 views)",
            Self::Mixed => "mixed batches (10 renders, ~4 users)",
        }
    }
}

async fn event_batches(
    state: &statusads::http::AppState,
    batches: usize,
    shape: BatchShape,
) -> Vec<String> {
    let mut rng = rand::thread_rng();
    let mut out = Vec::new();
    let mut pending: Vec<(String, &str)> = Vec::new();
    let mut user = 0u32;
    while out.len() < batches {
        user += 1;
        let tag = match shape {
            BatchShape::Device => "device",
            BatchShape::Mixed => "mixed",
        };
        let id = UserId::parse(&format!("{tag}-user-{user}")).unwrap();
        let decisions = if matches!(shape, BatchShape::Device) {
            2
        } else {
            1
        };
        let mut tokens = Vec::new();
        for _ in 0..decisions {
            let request = SlotRequest {
                user: id.clone(),
                session: None,
                statuses: 20,
                context: synthetic::context(&mut rng),
                personalized: None,
                state: None,
            };
            tokens.extend(
                state
                    .server
                    .slots(&request)
                    .await
                    .slots
                    .into_iter()
                    .map(|s| s.token),
            );
        }
        match shape {
            BatchShape::Device if tokens.len() >= 5 => {
                let views =
                    tokens[..10usize.saturating_sub(tokens.len()).min(tokens.len())].to_vec();
                let batch = tokens
                    .into_iter()
                    .map(|t| (t, "render"))
                    .chain(views.into_iter().map(|t| (t, "view")));
                out.push(batch_json(batch));
            }
            BatchShape::Device => {}
            BatchShape::Mixed => {
                pending.extend(tokens.into_iter().map(|t| (t, "render")));
                while pending.len() >= 10 && out.len() < batches {
                    out.push(batch_json(pending.drain(..10)));
                }
            }
        }
    }
    out
}

fn batch_json<'a>(events: impl Iterator<Item = (String, &'a str)>) -> String {
    let events: Vec<_> = events
        .map(|(token, kind)| serde_json::json!({"token": token, "type": kind}))
        .collect();
    serde_json::json!({ "events": events }).to_string()
}

struct EventsRun {
    shape: BatchShape,
    wrk: WrkResult,
    accepted_per_s: f64,
    script_calls: f64,
    script_us: f64,
    /// The exporter: the longest outbox seen and `as_of` lag during the run, how long after
    /// the run the outbox was empty, PostgreSQL CPU per exported record (run and drain), and
    /// what Redis keeps per exported record afterwards.
    outbox_max: u64,
    lag_max_s: f64,
    drained_after_ms: f64,
    postgres_us_per_record: f64,
    redis_bytes_per_record: f64,
}

/// CPU seconds of process `pid` and its children (PostgreSQL: the postmaster and backends).
fn tree_cpu_seconds(pid: u32) -> f64 {
    let stat_of = |path: &std::path::Path| -> Option<(u32, f64)> {
        let stat = std::fs::read_to_string(path).ok()?;
        let rest = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ppid = fields.get(1)?.parse().ok()?;
        let cpu = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
        Some((ppid, cpu / 100.0))
    };
    let mut total =
        stat_of(&std::path::PathBuf::from(format!("/proc/{pid}/stat"))).map_or(0.0, |(_, cpu)| cpu);
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Some((ppid, cpu)) = stat_of(&entry.path().join("stat")) {
            if ppid == pid {
                total += cpu;
            }
        }
    }
    total
}

fn redis_used_memory(port: u16) -> i64 {
    let mut conn = redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .unwrap()
        .get_connection()
        .unwrap();
    let info: String = redis::cmd("INFO").arg("memory").query(&mut conn).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// A short run (every batch carries fresh tokens only until the supply is used up), counting
/// what the ledger accepted and what the scripts cost Redis.
#[allow(clippy::too_many_arguments)]
fn drive_events(
    args: &Args,
    base: &str,
    scripts: &std::path::Path,
    redis: &Redis,
    shape: BatchShape,
    batches: &[String],
    state: &statusads::http::AppState,
    postgres_pid: u32,
) -> EventsRun {
    let redis_port = redis.1;
    let appends = "statusads_ledger_appends_total";
    let ledger_before = counter(state, appends);
    let exported_before = counter(state, "statusads_exported_records_total");
    let memory_before = redis_used_memory(redis_port);
    let postgres_before = tree_cpu_seconds(postgres_pid);
    let scripts_before = script_stats(redis_port);
    // Samples the outbox and the export lag while wrk runs.
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (sampling, metrics) = (sampling.clone(), state.metrics.clone());
        std::thread::spawn(move || {
            let (mut outbox, mut lag) = (0u64, 0f64);
            while sampling.load(std::sync::atomic::Ordering::SeqCst) {
                outbox = outbox.max(ledger_records(redis_port));
                let text = metrics.render();
                let now = text
                    .lines()
                    .find_map(|l| l.strip_prefix("statusads_ledger_lag_seconds "))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0.0);
                lag = lag.max(now);
                std::thread::sleep(Duration::from_millis(100));
            }
            (outbox, lag)
        })
    };
    let file = scripts.join("events.txt");
    std::fs::write(&file, batches.join("\n")).unwrap();
    let script = scripts.join("events.lua");
    std::fs::write(&script, replay_lua(&file.display().to_string(), None)).unwrap();
    let short = Args {
        seconds: args.seconds.min(2),
        ..*args
    };
    let wrk = wrk(&short, redis, &format!("{base}/v1/events"), Some(&script));
    let ended = Instant::now();
    while ledger_records(redis_port) > 0 && ended.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let drained_after_ms = ended.elapsed().as_secs_f64() * 1000.0;
    sampling.store(false, std::sync::atomic::Ordering::SeqCst);
    let (outbox_max, lag_max_s) = sampler.join().unwrap();
    let accepted = counter(state, appends) - ledger_before;
    let exported = counter(state, "statusads_exported_records_total") - exported_before;
    let (script_calls, script_us) = script_stats(redis_port).since(scripts_before);
    EventsRun {
        shape,
        wrk,
        accepted_per_s: accepted / short.seconds as f64,
        script_calls,
        script_us,
        outbox_max,
        lag_max_s,
        drained_after_ms,
        postgres_us_per_record: (tree_cpu_seconds(postgres_pid) - postgres_before) * 1e6
            / exported.max(1.0),
        redis_bytes_per_record: (redis_used_memory(redis_port) - memory_before) as f64
            / exported.max(1.0),
    }
}

/// Slot requests in the synthetic distribution, users log-uniform over 1M (a Zipf-like few
/// heavy users and a long tail).
fn slot_bodies(count: usize) -> Vec<String> {
    let mut rng = rand::thread_rng();
    (0..count)
        .map(|_| {
            let user = (rand::Rng::gen::<f64>(&mut rng) * (USERS as f64).ln()).exp() as u32;
            let context = synthetic::context(&mut rng);
            serde_json::json!({"user": format!("u{user}"), "statuses": 12, "context": {
                "country": context.country, "language": context.language, "os": context.os,
                "age": context.age, "interests": context.interests}})
            .to_string()
        })
        .collect()
}

/// A wrk script that POSTs the lines of `path` in turn.
/// The requests are formatted once, in `init`: formatting each on the fly cost wrk (which shares
/// the 2 cores with the service) a third of the machine.
/// With `delay_ms`, each connection waits that long between requests (a lighter, steady load).
fn replay_lua(path: &str, delay_ms: Option<u64>) -> String {
    let delay = delay_ms
        .map(|ms| format!("delay = function() return {ms} end\n"))
        .unwrap_or_default();
    format!(
        r#"local bodies, requests = {{}}, {{}}
for line in io.lines("{path}") do bodies[#bodies + 1] = line end
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {CLIENT}"
init = function(args)
  for j, body in ipairs(bodies) do requests[j] = wrk.format(nil, nil, nil, body) end
  ready(args)
end
request = function()
  i = i % #requests + 1
  return requests[i]
end
{delay}{LATENCY_REPORT}"#
    )
}

/// Appended to every wrk script: `ready` creates the file named by the script's argument when
/// the requests are formatted (the harness measures CPU from then), `done` prints a
/// machine-readable summary line.
const LATENCY_REPORT: &str = r#"function ready(args)
  local marker = io.open(args[1], "w")
  marker:write("ready")
  marker:close()
end
init = init or ready
done = function(summary, latency, requests)
  local errors = summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  io.write(string.format("BENCH %d %d %d %d %d\n", summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), errors))
end"#;

struct WrkResult {
    requests: u64,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
    /// CPU the run took, per process.
    cpu: CpuTimes,
}

impl WrkResult {
    /// Requests served during the CPU window, at the run's rate.
    fn window_requests(&self) -> f64 {
        self.rps * self.cpu.window
    }
}

/// CPU seconds (user + system) of the service (this process: the harness is idle while wrk
/// runs), of Redis and of wrk, over a window in the middle of a run (after wrk has formatted
/// its requests, before it stops). The three share the machine's cores, so a request's total is
/// what bounds throughput once the cores are busy.
#[derive(Clone, Copy, Default)]
struct CpuTimes {
    service: f64,
    redis: f64,
    client: f64,
    /// Wall seconds the window lasted.
    window: f64,
}

impl CpuTimes {
    fn now(redis: &Redis, client: u32) -> (Instant, Self) {
        // /proc/PID/stat fields 14-15: utime, stime, in clock ticks (100/s on Linux); the command
        // name (field 2) may hold spaces, so count from after its ')'.
        let seconds = |pid: &str| -> f64 {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
            rest.split_whitespace()
                .skip(11)
                .take(2)
                .map(|f| f.parse::<f64>().unwrap_or(0.0) / 100.0)
                .sum()
        };
        let at = Instant::now();
        let times = Self {
            service: seconds("self"),
            redis: seconds(&redis.0.id().to_string()),
            client: seconds(&client.to_string()),
            window: 0.0,
        };
        (at, times)
    }

    fn since(self, (at, before): (Instant, Self)) -> Self {
        Self {
            service: self.service - before.service,
            redis: self.redis - before.redis,
            client: self.client - before.client,
            window: at.elapsed().as_secs_f64(),
        }
    }

    fn plus(self, other: Self) -> Self {
        Self {
            service: self.service + other.service,
            redis: self.redis + other.redis,
            client: self.client + other.client,
            window: self.window + other.window,
        }
    }

    /// Microseconds per request of the service, Redis and wrk, over `requests` requests.
    fn per_request_us(self, requests: f64) -> [f64; 3] {
        let per = |seconds: f64| seconds * 1e6 / requests.max(1.0);
        [per(self.service), per(self.redis), per(self.client)]
    }
}

fn wrk(args: &Args, redis: &Redis, url: &str, script: Option<&std::path::Path>) -> WrkResult {
    let mut cmd = Command::new("wrk");
    cmd.args([
        "-t1",
        &format!("-c{}", args.connections),
        &format!("-d{}s", args.seconds),
    ]);
    let fallback;
    let script = match script {
        Some(path) => path,
        None => {
            fallback =
                std::env::temp_dir().join(format!("statusads-get-{}.lua", std::process::id()));
            std::fs::write(&fallback, LATENCY_REPORT).unwrap();
            &fallback
        }
    };
    let marker = std::env::temp_dir().join(format!("statusads-wrk-{}.ready", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    cmd.arg("-s").arg(script).arg(url).arg("--").arg(&marker);
    let child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .expect("wrk on PATH (apt-get install wrk)");
    // wrk formats its requests (up to a second) before its run starts: the CPU window starts
    // just after the script says it is ready and ends before the run does.
    let spawned = Instant::now();
    while !marker.exists() && spawned.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let duration = args.seconds as f64;
    let cpu = if marker.exists() && duration >= 1.0 {
        let ready = Instant::now();
        std::thread::sleep(Duration::from_secs_f64(0.1 * duration));
        let before = CpuTimes::now(redis, child.id());
        std::thread::sleep(Duration::from_secs_f64(0.9 * duration).saturating_sub(ready.elapsed()));
        CpuTimes::now(redis, child.id()).1.since(before)
    } else {
        CpuTimes::default()
    };
    let output = child.wait_with_output().expect("wrk runs");
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("BENCH "))
        .unwrap_or_else(|| panic!("wrk output: {text}"));
    let numbers: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|n| n.parse().unwrap())
        .collect();
    WrkResult {
        requests: numbers[0],
        rps: numbers[0] as f64 / (numbers[1] as f64 / 1e6),
        p50_ms: numbers[2] as f64 / 1000.0,
        p99_ms: numbers[3] as f64 / 1000.0,
        errors: numbers[4],
        cpu,
    }
}
