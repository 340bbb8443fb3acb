//! Load benchmark: the service on the redis backend with N synthetic campaigns, driven by `wrk`
//! over loopback. It measures, in one run on one machine, every performance target of
//! DESIGN.md as a ratio to a trivial request (CPU per request of each process, read from
//! `/proc`), and prints them first, each with PASS or MISS, then the details: `/healthz`
//! against decisions that place three ads for a new user, a Redis GET (`redis-benchmark`)
//! against the decision's and a billed render's Redis CPU, event ingestion in batches of 10
//! with the exporter, the p99 at half load, a second service with `--scale-campaigns` against
//! the first, and with `--soak-minutes` memory and decision cost minute by minute.
//!
//! `cargo bench --bench load -- --campaigns 1000 --scale-campaigns 100000 --seconds 20 --soak-minutes 10`
//!
//! `--quick` runs everything small (under two minutes); `cargo test` (no `--bench` argument)
//! runs a smoke run of it, two rounds and a second catalog of 500, so the bench cannot rot. Needs `redis-server`, `redis-benchmark` and `wrk` on
//! PATH (`scripts/test` installs them). Figures are printed, never asserted: a timed test would
//! measure the machine.

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
/// Rounds of the alternating /healthz and decision runs (see `run`; the smoke run: two).
const ROUNDS: u64 = 4;
/// Sampled requests a forecast replays in the full run (`--quick`: a tenth).
const FORECAST_SAMPLES: i64 = 100_000;

/// `cargo bench --bench load -- [--campaigns N] [--requests N] [--seconds N] [--connections N]`.
#[derive(Clone, Copy, clap::Parser)]
#[command(about = "statusads load bench: the service on Redis and PostgreSQL, driven by wrk")]
struct Args {
    /// Synthetic campaigns in the catalog.
    #[arg(long, default_value_t = 1_000)]
    campaigns: usize,
    /// Campaigns of a second service measured against the first (0: none).
    #[arg(long, default_value_t = 100_000)]
    scale_campaigns: usize,
    /// Minutes of full load at the end, printing memory and decision cost each minute.
    #[arg(long, default_value_t = 0)]
    soak_minutes: u64,
    /// Everything small: under two minutes (what `cargo test` runs).
    #[arg(long)]
    quick: bool,
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
    /// Not a flag: `ROUNDS`, or two in the smoke run.
    #[arg(skip = ROUNDS)]
    rounds: u64,
}

fn args() -> Args {
    // `cargo test` may pass test-harness arguments (filters, `--nocapture`): the quick run then.
    let raw: Vec<String> = std::env::args().collect();
    let args = <Args as clap::Parser>::try_parse_from(&raw).unwrap_or_else(|err| {
        if raw.iter().any(|a| a == "--bench") {
            err.exit()
        }
        <Args as clap::Parser>::parse_from(["load"])
    });
    if args.full && !args.quick {
        return args;
    }
    // `cargo test` builds for debugging, where no figure is worth reading: the smoke run keeps
    // every measure and path but the fewest rounds and a smaller second catalog.
    let smoke = !args.full;
    Args {
        campaigns: 200,
        scale_campaigns: if smoke { 500 } else { 2_000 },
        requests: 20_000,
        seconds: if smoke { 2 } else { 4 },
        rounds: if smoke { 2 } else { ROUNDS },
        soak_minutes: args.soak_minutes.min(1),
        quick: true,
        ..args
    }
}

struct Redis(Child, u16);

impl Redis {
    fn start() -> Self {
        let port = ports::free_port();
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

#[path = "../tests/api/support/ports.rs"]
mod ports;
#[path = "../tests/api/support/postgres.rs"]
#[allow(dead_code)]
mod postgres;
#[path = "../tests/api/support/scratch.rs"]
mod scratch;

fn main() {
    // The service's warnings (a failing export, say) go to stderr, as the binary's would.
    let filter = tracing_subscriber::EnvFilter::try_from_env("STATUSADS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let args = args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(args));
}

async fn run(args: Args) {
    let redis = Redis::start();
    let database = postgres::PostgresServer::start();
    let main = Service::start(&redis, &database, args.campaigns, "main").await;
    let scale_redis = (args.scale_campaigns > 0).then(Redis::start);
    let scale = match &scale_redis {
        Some(scale_redis) => {
            Some(Service::start(scale_redis, &database, args.scale_campaigns, "scale").await)
        }
        None => None,
    };
    let scripts = main.data_dir.join("wrk");
    std::fs::create_dir_all(&scripts).unwrap();
    let slots_file = scripts.join("slots.txt");
    std::fs::write(&slots_file, slot_bodies(args.requests).join("\n")).unwrap();
    let returning_script = scripts.join("slots.lua");
    std::fs::write(
        &returning_script,
        replay_lua(&slots_file.display().to_string(), None),
    )
    .unwrap();
    let scripts_before = script_stats(redis.1);
    let decided_before = main.decisions();
    // This machine's speed drifts by tens of percent within minutes, so the measures alternate
    // in short rounds; each ratio compares sums over the same rounds.
    let round = Args {
        seconds: (args.seconds / args.rounds).max(1),
        ..args
    };
    let mut runs = Rounds::default();
    let mut fresh = FreshUsers::new(&scripts, args.requests);
    for i in 0..args.rounds {
        runs.healthz
            .push(wrk(&round, &redis, &main.url("/healthz"), None));
        runs.gets
            .push(redis_gets(&redis, args.connections, round.seconds));
        // The same decisions with `insight.sample_rate` at its default, 0.01, and without;
        // in alternating order.
        for sampling in if i % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        } {
            main.state
                .server
                .insight
                .set_rate(if sampling { 0.01 } else { 0.0 });
            let (slots_before, decisions_before) = (main.slots_served(), main.decisions());
            let run = wrk(&round, &redis, &main.url("/v1/slots"), Some(&fresh.next()));
            if sampling {
                runs.sampled.push(run);
            } else {
                runs.ads += main.slots_served() - slots_before;
                runs.ads_decisions += main.decisions() - decisions_before;
                runs.decisions.push(run);
            }
        }
        main.state.server.insight.set_rate(0.0);
        if let (Some(scale), Some(scale_redis)) = (&scale, &scale_redis) {
            runs.scaled.push(wrk(
                &round,
                scale_redis,
                &scale.url("/v1/slots"),
                Some(&fresh.next()),
            ));
        }
    }
    let returning = wrk(
        &round,
        &redis,
        &main.url("/v1/slots"),
        Some(&returning_script),
    );
    // The decision path's only Redis call is the commit script (the background refreshers use
    // plain commands), so script calls per decision are its round trips.
    let (commits, commit_us) = script_stats(redis.1).since(scripts_before);
    let decided = main.decisions() - decided_before;
    // DESIGN's latency target is the p99 at half the decision throughput: each connection
    // pauses so that the offered load is about half of what the rounds reached.
    // (wrk pauses in whole milliseconds; the run prints the rate it reached.)
    let full_rps = median(runs.decisions.iter().map(|d| d.rps).collect());
    let pause_ms = (1000.0 * args.connections as f64 / (full_rps / 2.0)).max(1.0);
    // Two pacings: the same pause after every answer, which keeps the 32 connections in step
    // (their requests arrive in bursts), and pauses drawn from an exponential distribution of
    // the same mean, whose arrivals are independent like those of many separate devices.
    let fixed = Pacing::Fixed(pause_ms.round() as u64);
    let independent = Pacing::Exponential(pause_ms);
    let tail_before = TailShares::now(&main.state);
    let half = wrk(
        &round,
        &redis,
        &main.url("/v1/slots"),
        Some(&fresh.paced(fixed)),
    );
    let half_tail = TailShares::now(&main.state).since(&tail_before);
    let half_independent = wrk(
        &round,
        &redis,
        &main.url("/v1/slots"),
        Some(&fresh.paced(independent)),
    );
    // The same pacings of /healthz: the machine's own latency floor at that rate (each request
    // wakes sleeping threads).
    let paced_healthz = |pacing: Pacing, name: &str| {
        let script = scripts.join(format!("healthz-{name}.lua"));
        std::fs::write(&script, format!("{}{LATENCY_REPORT}", pacing.lua())).unwrap();
        wrk(&round, &redis, &main.url("/healthz"), Some(&script))
    };
    let half_healthz = paced_healthz(fixed, "fixed");
    let half_healthz_independent = paced_healthz(independent, "independent");

    // Decisions while forecasts run: sampled requests in the record, forecasts of a campaign
    // replaying them one after another (each on its low-priority thread), and a decision round
    // beside them.
    let samples = if args.quick {
        FORECAST_SAMPLES / 10
    } else {
        FORECAST_SAMPLES
    };
    let forecasting = forecasts_while(&main.state, samples, || {
        wrk(&round, &redis, &main.url("/v1/slots"), Some(&fresh.next()))
    })
    .await;

    // Events: batches of 10 events of real tokens, from decisions made in process, in the two
    // shapes of `BatchShape`.
    let mut events = Vec::new();
    for shape in [BatchShape::Device, BatchShape::Mixed] {
        let batches =
            event_batches(&main.state, if args.quick { 2_000 } else { 20_000 }, shape).await;
        events.push(drive_events(
            &args,
            &main.base,
            &scripts,
            &redis,
            shape,
            &batches,
            &main.state,
            database.pid().expect("PostgreSQL runs"),
        ));
    }
    let cap_entry_bytes = bytes_per_cap_entry(redis.1);
    let soak = soak(&args, &main, &redis, &scripts);

    let [healthz_cpu, _, _] = per_request(&runs.healthz);
    let [decision_cpu, decision_redis, _] = per_request(&runs.decisions);
    let [sampled_cpu, _, _] = per_request(&runs.sampled);
    let get_us = {
        let (cpu, requests) = runs
            .gets
            .iter()
            .fold((0.0, 0.0), |(c, n), g| (c + g.redis_cpu, n + g.requests));
        cpu * 1e6 / requests.max(1.0)
    };
    let mixed = events
        .iter()
        .find(|e| matches!(e.shape, BatchShape::Mixed))
        .expect("a mixed run");
    let render_redis = mixed.wrk.cpu.redis * 1e6 / (mixed.wrk.window_requests() * 10.0).max(1.0);
    let (during, forecasts_run, forecast_time) = &forecasting;

    println!(
        "\n## statusads load: targets ({} campaigns{}, {} connections, {} s per measure, {} cores{})",
        args.campaigns,
        if scale.is_some() {
            format!(" and {} in a second service", args.scale_campaigns)
        } else {
            String::new()
        },
        args.connections,
        args.seconds,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        match (args.quick, cfg!(debug_assertions)) {
            (_, true) => ", --quick, a debug build: not figures to read",
            (true, false) => ", --quick",
            (false, false) => "",
        }
    );
    println!("| target | measured | bound | result |\n|---|---|---|---|");
    let mut targets = Targets::default();
    targets.at_most(
        "decision placing 3 ads: service CPU vs a /healthz request",
        decision_cpu / healthz_cpu,
        3.0,
        "x",
    );
    targets.at_most(
        "decision placing 3 ads: Redis CPU vs a GET round trip",
        decision_redis / get_us,
        2.5,
        "x",
    );
    targets.at_most(
        "billed render: Redis CPU vs a GET round trip",
        render_redis / get_us,
        1.5,
        "x",
    );
    targets.at_least(
        "events/s in mixed batches of 10 (answered)",
        mixed.wrk.rps * 10.0,
        60_000.0,
        "/s",
    );
    targets.at_most(
        "export: longest as_of lag during the mixed run",
        mixed.lag_max_s,
        2.0,
        " s",
    );
    targets.at_most(
        "decision p99 at half load (connections in step)",
        half.p99_ms,
        2.0,
        " ms",
    );
    targets.at_most(
        "decision p99 at half load (independent arrivals)",
        half_independent.p99_ms,
        2.0,
        " ms",
    );
    if scale.is_some() {
        targets.at_most(
            &format!(
                "service CPU per decision: {} vs {} campaigns",
                args.scale_campaigns, args.campaigns
            ),
            per_request(&runs.scaled)[0] / decision_cpu,
            1.5,
            "x",
        );
    }
    match &soak {
        Some(minutes) if minutes.len() >= 2 => {
            let (first, last) = (&minutes[0], &minutes[minutes.len() - 1]);
            targets.at_most(
                &format!("soak: service RSS, minute {} vs minute 1", minutes.len()),
                last.rss_mib / first.rss_mib,
                1.1,
                "x",
            );
            targets.at_most(
                &format!(
                    "soak: service CPU per decision, minute {} vs minute 1",
                    minutes.len()
                ),
                last.cpu_us / first.cpu_us,
                1.15,
                "x",
            );
        }
        _ => targets.not_run("soak: memory and decision cost flat (--soak-minutes 2 or more)"),
    }
    targets.at_most(
        "insight sampling at 0.01: service CPU per decision vs off",
        100.0 * (sampled_cpu - decision_cpu) / decision_cpu,
        3.0,
        "%",
    );
    targets.at_least(
        "decisions/s while forecasts run vs the rounds' median",
        100.0 * (during.rps - full_rps) / full_rps,
        -5.0,
        "%",
    );
    println!(
        "{} of {} measured targets pass.",
        targets.passed, targets.measured
    );

    println!("\n## details\n| measure | value |\n|---|---|");
    let per_round = |runs: &[WrkResult]| {
        runs.iter()
            .map(|r| format!("{:.0}", r.rps))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    println!(
        "| /healthz requests/s, per round | {} |",
        per_round(&runs.healthz)
    );
    println!(
        "| decisions/s (new users, {:.2} ads each), per round | {} |",
        runs.ads / runs.ads_decisions.max(1.0),
        per_round(&runs.decisions)
    );
    if scale.is_some() {
        println!(
            "| decisions/s with {} campaigns, per round | {} |",
            args.scale_campaigns,
            per_round(&runs.scaled)
        );
    }
    println!(
        "| Redis GET round trip (redis-benchmark, -c{}): Redis CPU per GET, GETs/s per round | {get_us:.1} µs, {} |",
        args.connections,
        runs.gets
            .iter()
            .map(|g| format!("{:.0}", g.requests / g.seconds))
            .collect::<Vec<_>>()
            .join(" / ")
    );
    // Over all rounds: what one request costs each process. With the cores busy, the ratio of
    // the two totals is about the throughput ratio, and the split says which part limits it.
    let mut cpu_rows = vec![
        ("/healthz request".to_owned(), &runs.healthz),
        ("decision (new user)".to_owned(), &runs.decisions),
        ("decision sampled at 0.01".to_owned(), &runs.sampled),
    ];
    if scale.is_some() {
        cpu_rows.push((
            format!("decision with {} campaigns", args.scale_campaigns),
            &runs.scaled,
        ));
    }
    for (what, rows) in cpu_rows {
        let [service, redis, client] = per_request(rows);
        println!(
            "| CPU per {what}: service + Redis + wrk (total) | {service:.1} + {redis:.1} + {client:.1} ({:.1}) µs |",
            service + redis + client
        );
    }
    let [service, redis_us, client] = per_request(std::slice::from_ref(&returning));
    println!(
        "| returning users (long tail, {} distinct requests): decisions/s, CPU service + Redis + wrk | {:.0}, {service:.1} + {redis_us:.1} + {client:.1} µs |",
        args.requests, returning.rps
    );
    println!(
        "| decisions/s while forecasts run ({forecasts_run} forecasts of {samples} sampled requests, median {:.2} s) vs the rounds' median | {:.0} vs {:.0} |",
        forecast_time.as_secs_f64(),
        during.rps,
        full_rps,
    );
    println!(
        "| decision latency p50 (median round) / p99 (worst round) | {:.2} / {:.2} ms |",
        median(runs.decisions.iter().map(|d| d.p50_ms).collect()),
        runs.decisions.iter().map(|d| d.p99_ms).fold(0.0, f64::max)
    );
    println!(
        "| at about half load ({:.0} decisions/s, {:.0}% of the rounds' median): p50 / p99 | {:.2} / {:.2} ms |",
        half.rps,
        100.0 * half.rps / full_rps,
        half.p50_ms,
        half.p99_ms
    );
    println!(
        "| at about half load (connections in step), inside the service: decisions answered over 1 / 2.5 ms; their Redis commit over 1 ms | {:.2}% / {:.2}%; {:.2}% |",
        half_tail.decisions_over_1ms, half_tail.decisions_over_2_5ms, half_tail.commits_over_1ms
    );
    println!(
        "| /healthz at the same pacing ({:.0} requests/s): p50 / p99 | {:.2} / {:.2} ms |",
        half_healthz.rps, half_healthz.p50_ms, half_healthz.p99_ms
    );
    println!(
        "| independent arrivals, same mean pause: decisions ({:.0}/s) p50 / p99; /healthz ({:.0}/s) p50 / p99 | {:.2} / {:.2} ms; {:.2} / {:.2} ms |",
        half_independent.rps,
        half_healthz_independent.rps,
        half_independent.p50_ms,
        half_independent.p99_ms,
        half_healthz_independent.p50_ms,
        half_healthz_independent.p99_ms
    );
    println!(
        "| Redis round trips per decision | {:.2} |",
        commits / decided.max(1.0)
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
        runs.decisions.iter().map(|d| d.errors).sum::<u64>(),
        events.iter().map(|e| e.wrk.errors).sum::<u64>()
    );
    println!("| Redis bytes per (user, campaign) cap entry | {cap_entry_bytes:.0} |");
    println!(
        "| service RSS (MiB, includes the bench harness) | {:.0} |",
        rss_mib()
    );
    if let Some(minutes) = &soak {
        println!("\n## soak: full load, new users, every other slot rendered\n| minute | decisions/s | service CPU per decision (and its renders) | service RSS (MiB) |\n|---|---|---|---|");
        for (i, m) in minutes.iter().enumerate() {
            println!(
                "| {} | {:.0} | {:.1} µs | {:.0} |",
                i + 1,
                m.decisions_per_s,
                m.cpu_us,
                m.rss_mib
            );
        }
    }
    for service in [Some(main), scale].into_iter().flatten() {
        let _ = std::fs::remove_dir_all(&service.data_dir);
    }
}

/// The measured runs of the rounds.
#[derive(Default)]
struct Rounds {
    healthz: Vec<WrkResult>,
    gets: Vec<GetRun>,
    decisions: Vec<WrkResult>,
    sampled: Vec<WrkResult>,
    scaled: Vec<WrkResult>,
    /// Slots served and decisions made in the `decisions` runs.
    ads: f64,
    ads_decisions: f64,
}

/// Service, Redis and wrk CPU per request over `runs`, in µs.
fn per_request(runs: &[WrkResult]) -> [f64; 3] {
    let cpu = runs
        .iter()
        .fold(CpuTimes::default(), |acc, r| acc.plus(r.cpu));
    cpu.per_request_us(runs.iter().map(WrkResult::window_requests).sum())
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    (v[(v.len() - 1) / 2] + v[v.len() / 2]) / 2.0
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .unwrap_or(0.0)
        / 1024.0
}

/// The targets table: each row printed as it is judged.
#[derive(Default)]
struct Targets {
    measured: usize,
    passed: usize,
}

impl Targets {
    fn at_most(&mut self, what: &str, value: f64, bound: f64, unit: &str) {
        self.row(
            what,
            value,
            &format!("≤ {bound}{unit}"),
            value <= bound,
            unit,
        );
    }

    fn at_least(&mut self, what: &str, value: f64, bound: f64, unit: &str) {
        self.row(
            what,
            value,
            &format!("≥ {bound}{unit}"),
            value >= bound,
            unit,
        );
    }

    fn row(&mut self, what: &str, value: f64, bound: &str, pass: bool, unit: &str) {
        self.measured += 1;
        self.passed += usize::from(pass);
        let value = if value.abs() >= 100.0 {
            format!("{value:.0}{unit}")
        } else {
            format!("{value:.2}{unit}")
        };
        println!(
            "| {what} | {value} | {bound} | {} |",
            if pass { "PASS" } else { "MISS" }
        );
    }

    fn not_run(&self, what: &str) {
        println!("| {what} | not run | | - |");
    }
}

/// A running service of the bench: its own database on the shared PostgreSQL, `campaigns`
/// synthetic campaigns, and the Redis given.
struct Service {
    state: actix_web::web::Data<statusads::http::AppState>,
    base: String,
    data_dir: std::path::PathBuf,
}

impl Service {
    async fn start(
        redis: &Redis,
        database: &postgres::PostgresServer,
        campaigns: usize,
        name: &str,
    ) -> Self {
        let data_dir =
            std::env::temp_dir().join(format!("statusads-load-{}-{name}", std::process::id()));
        let mut settings = Settings::defaults();
        settings.http.bind = "127.0.0.1:0".into();
        let redis_url = format!("redis://127.0.0.1:{}", redis.1);
        let database_url = database.database_for(&redis_url);
        settings.store.redis_url = redis_url.into();
        settings.store.database_url = database_url.into();
        settings.store.data_dir = data_dir.clone();
        settings.auth.admin_token = "bench-admin-token".into();
        settings.auth.client_tokens = vec![CLIENT.into()];
        settings.demo.seed = Some(false);
        // Sampling is measured apart: off in every run but the sampled one (see the rounds).
        settings.insight.sample_rate = 0.0;
        // Measure the service, not the limits (heavy synthetic users would hit the per-user
        // limit).
        settings.rate_limits.client_per_second = 0.0;
        settings.rate_limits.user_per_minute = 0.0;
        // Seed before the service starts: this measures serving a catalog, not absorbing a
        // burst of catalog writes (each of which would trigger a snapshot rebuild).
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
            "{name}: seeded and loaded {campaigns} campaigns in {:.1}s",
            started.elapsed().as_secs_f64()
        );
        let base = format!("http://127.0.0.1:{}", app.port());
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
        Self {
            state,
            base,
            data_dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn decisions(&self) -> f64 {
        sum_of(&self.state, "statusads_decisions_total{")
    }

    fn slots_served(&self) -> f64 {
        sum_of(&self.state, "statusads_slots_served_total{")
    }
}

/// The sum of every series of a metric in the service's own /metrics text.
fn sum_of(state: &statusads::http::AppState, prefix: &str) -> f64 {
    state
        .metrics
        .render()
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit_once(' ')?.1.trim().parse::<f64>().ok())
        .sum()
}

/// Slot requests of users never seen before: each wrk run replays a file of its own.
struct FreshUsers {
    dir: std::path::PathBuf,
    count: usize,
    runs: usize,
}

impl FreshUsers {
    fn new(dir: &std::path::Path, count: usize) -> Self {
        Self {
            dir: dir.to_owned(),
            count,
            runs: 0,
        }
    }

    fn next(&mut self) -> std::path::PathBuf {
        self.script(None)
    }

    fn paced(&mut self, pacing: Pacing) -> std::path::PathBuf {
        self.script(Some(pacing))
    }

    fn script(&mut self, pacing: Option<Pacing>) -> std::path::PathBuf {
        self.runs += 1;
        let mut rng = rand::thread_rng();
        let bodies: Vec<String> = (0..self.count)
            .map(|i| {
                let context = synthetic::context(&mut rng);
                serde_json::json!({"user": format!("new{}-{i}", self.runs), "statuses": 12,
                    "context": {"country": context.country, "language": context.language,
                    "os": context.os, "age": context.age, "interests": context.interests}})
                .to_string()
            })
            .collect();
        let file = self.dir.join(format!("fresh-{}.txt", self.runs));
        std::fs::write(&file, bodies.join("\n")).unwrap();
        let script = self.dir.join(format!("fresh-{}.lua", self.runs));
        std::fs::write(&script, replay_lua(&file.display().to_string(), pacing)).unwrap();
        script
    }
}

/// A `redis-benchmark` run of plain GETs against the bench's Redis.
struct GetRun {
    requests: f64,
    seconds: f64,
    redis_cpu: f64,
}

/// GETs of one key over `connections` connections for about `seconds`, with Redis's CPU over
/// the run (its setup is a few connections: negligible against the GETs).
fn redis_gets(redis: &Redis, connections: u32, seconds: u64) -> GetRun {
    let requests = 60_000 * seconds.max(1);
    let redis_cpu = || tree_cpu_seconds(redis.0.id());
    let (cpu_before, started) = (redis_cpu(), Instant::now());
    let status = Command::new("redis-benchmark")
        .args([
            "-p",
            &redis.1.to_string(),
            "-c",
            &connections.to_string(),
            "-n",
            &requests.to_string(),
            "-t",
            "get",
            "-q",
        ])
        .stdout(Stdio::null())
        .status()
        .expect("redis-benchmark on PATH (it comes with redis-server)");
    assert!(status.success(), "redis-benchmark failed");
    GetRun {
        requests: requests as f64,
        seconds: started.elapsed().as_secs_f64(),
        redis_cpu: redis_cpu() - cpu_before,
    }
}

/// One minute of the soak.
struct SoakMinute {
    decisions_per_s: f64,
    cpu_us: f64,
    rss_mib: f64,
}

/// `--soak-minutes` of full load (in `--quick`, minutes of 10 s): new users (from a pool of
/// two million, so some come back), each decision followed by a batch rendering every other slot
/// it served; the rest are never rendered and hold their budget until their tokens lapse.
fn soak(
    args: &Args,
    main: &Service,
    redis: &Redis,
    scripts: &std::path::Path,
) -> Option<Vec<SoakMinute>> {
    if args.soak_minutes == 0 {
        return None;
    }
    let minute = if args.quick { 10 } else { 60 };
    let mut rng = rand::thread_rng();
    let contexts: Vec<String> = (0..64)
        .map(|_| {
            let c = synthetic::context(&mut rng);
            serde_json::json!({"country": c.country, "language": c.language, "os": c.os,
                "age": c.age, "interests": c.interests})
            .to_string()
        })
        .collect();
    let mut out = Vec::new();
    for m in 0..args.soak_minutes {
        let script = scripts.join(format!("soak-{m}.lua"));
        std::fs::write(&script, soak_lua(&contexts, m)).unwrap();
        let before = main.decisions();
        let run = wrk(
            &Args {
                seconds: minute,
                ..*args
            },
            redis,
            &main.url("/v1/slots"),
            Some(&script),
        );
        let decided = main.decisions() - before;
        out.push(SoakMinute {
            decisions_per_s: decided / minute as f64,
            cpu_us: run.cpu.service * 1e6 / (decided * run.cpu.window / minute as f64).max(1.0),
            rss_mib: rss_mib(),
        });
    }
    Some(out)
}

/// The soak's wrk script: a decision, then (on the same connection's next request) a batch
/// rendering every other slot it served.
fn soak_lua(contexts: &[String], minute: u64) -> String {
    let contexts = contexts
        .iter()
        .map(|c| format!("[[{c}]]"))
        .collect::<Vec<_>>()
        .join(",\n");
    format!(
        r#"local contexts = {{
{contexts}
}}
local n, pending = {start}, {{}}
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {CLIENT}"
request = function()
  local body = table.remove(pending)
  if body then
    return wrk.format("POST", "/v1/events", nil, body)
  end
  n = n + 1
  body = string.format('{{"user":"soak%d","statuses":12,"context":%s}}', n % 2000000, contexts[n % #contexts + 1])
  return wrk.format("POST", "/v1/slots", nil, body)
end
response = function(status, headers, body)
  local events, k = {{}}, 0
  for token in string.gmatch(body, '"token":"([^"]+)"') do
    k = k + 1
    if k % 2 == 1 then
      events[#events + 1] = string.format('{{"token":"%s","type":"render"}}', token)
    end
  end
  if #events > 0 then
    pending[#pending + 1] = '{{"events":[' .. table.concat(events, ",") .. ']}}'
  end
end
{LATENCY_REPORT}"#,
        start = minute * 10_000_000
    )
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
/// Runs `measure` while forecasts of a broad campaign replay `samples` sampled requests one
/// after another; answers its result, the forecasts run and the median forecast time.
async fn forecasts_while(
    state: &actix_web::web::Data<statusads::http::AppState>,
    samples: i64,
    measure: impl FnOnce() -> WrkResult,
) -> (WrkResult, usize, Duration) {
    use statusads::insight::SampledRequest;
    use statusads::record::insight::InsightBatch;
    let now_ms = statusads::clock::ms_from_datetime(time::OffsetDateTime::now_utc());
    let mut rng = rand::thread_rng();
    let mut batch = InsightBatch::default();
    for i in 0..samples {
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
        &Default::default(),
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

/// Where the slow answers of a run were slow, from the service's own histograms: time inside
/// the service (handler to answer) and the Redis commit within it, as cumulative bucket counts.
struct TailShares {
    decisions: [f64; 3],
    commits: [f64; 2],
}

/// Percentages of a run's decisions above each bound (see [`TailShares::since`]).
struct Tail {
    decisions_over_1ms: f64,
    decisions_over_2_5ms: f64,
    commits_over_1ms: f64,
}

impl TailShares {
    fn now(state: &statusads::http::AppState) -> Self {
        let text = state.metrics.render();
        let bucket = |series: &str, le: &str| {
            text.lines()
                .find(|l| l.starts_with(series) && l.contains(&format!("le=\"{le}\"")))
                .and_then(|l| l.rsplit(' ').next()?.parse().ok())
                .unwrap_or(0.0)
        };
        let decision = "statusads_decision_duration_seconds_bucket";
        let commit = "statusads_redis_duration_seconds_bucket{op=\"reserve\"";
        Self {
            decisions: [
                bucket(decision, "0.001"),
                bucket(decision, "0.0025"),
                bucket(decision, "+Inf"),
            ],
            commits: [bucket(commit, "0.001"), bucket(commit, "+Inf")],
        }
    }

    fn since(&self, before: &Self) -> Tail {
        let over = |within: f64, all: f64| {
            if all > 0.0 {
                100.0 * (1.0 - within / all)
            } else {
                0.0
            }
        };
        let d = |i: usize| self.decisions[i] - before.decisions[i];
        let c = |i: usize| self.commits[i] - before.commits[i];
        Tail {
            decisions_over_1ms: over(d(0), d(2)),
            decisions_over_2_5ms: over(d(1), d(2)),
            commits_over_1ms: over(c(0), c(1)),
        }
    }
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

/// How long each wrk connection pauses after an answer before its next request.
#[derive(Clone, Copy)]
enum Pacing {
    /// The same pause every time (milliseconds).
    Fixed(u64),
    /// Pauses of this mean (milliseconds), exponentially distributed (wrk pauses in whole ms).
    Exponential(f64),
}

impl Pacing {
    /// wrk's `delay` function.
    fn lua(self) -> String {
        match self {
            Pacing::Fixed(ms) => format!("delay = function() return {ms} end\n"),
            Pacing::Exponential(mean) => format!(
                "math.randomseed(os.time())\n\
                 delay = function() return math.floor(-{mean} * math.log(1 - math.random()) + 0.5) end\n"
            ),
        }
    }
}

/// A wrk script that POSTs the lines of `path` in turn.
/// The requests are formatted once, in `init`: formatting each on the fly cost wrk (which shares
/// the 2 cores with the service) a third of the machine.
/// With a `pacing`, each connection pauses between requests (a lighter load).
fn replay_lua(path: &str, pacing: Option<Pacing>) -> String {
    let delay = pacing.map(Pacing::lua).unwrap_or_default();
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
