//! Load benchmark: the service on the redis backend with N synthetic campaigns, driven by `wrk`
//! over loopback. Prints, from one run on one machine: `/healthz` requests/s, slot decisions/s
//! with p50/p99, their ratio, event ingestion (batches of 10) and the service's RSS.
//!
//! `cargo bench --bench load -- --campaigns 10000 --seconds 10 --connections 32`
//!
//! Needs `redis-server` and `wrk` on PATH. Under `cargo test` (no `--bench` argument) it only
//! checks that it can seed a small catalog and answer one decision.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::Rng;
use statusads::catalog::assets::AssetStore;
use statusads::clock::{Clock, SystemClock};
use statusads::config::Settings;
use statusads::domain::advertiser::NewAdvertiser;
use statusads::domain::campaign::{Campaign, CampaignInput};
use statusads::domain::creative::{Asset, Creative, CreativeStatus};
use statusads::domain::ids::CreativeId;
use statusads::domain::slot::{SlotContext, SlotRequest};
use statusads::domain::UserId;
use statusads::media;
use statusads::startup::Application;
use statusads::store::CatalogRecord;

const CLIENT: &str = "bench-client-token";
const COUNTRIES: [&str; 20] = [
    "IT", "FR", "DE", "ES", "PT", "GB", "IE", "NL", "BE", "AT", "CH", "PL", "SE", "NO", "DK", "FI",
    "GR", "RO", "BR", "IN",
];
const USERS: u32 = 1_000_000;

struct Args {
    campaigns: usize,
    seconds: u64,
    connections: u32,
    full: bool,
}

fn args() -> Args {
    let raw: Vec<String> = std::env::args().collect();
    let value = |name: &str, default: u64| {
        raw.iter()
            .position(|a| a == name)
            .and_then(|i| raw.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    Args {
        campaigns: value("--campaigns", 10_000) as usize,
        seconds: value("--seconds", 10),
        connections: value("--connections", 32) as u32,
        full: raw.iter().any(|a| a == "--bench"),
    }
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
    settings.store.redis_url = format!("redis://127.0.0.1:{}", redis.1);
    settings.store.data_dir = data_dir.clone();
    settings.auth.admin_token = "bench-admin-token".into();
    settings.auth.client_tokens = vec![CLIENT.into()];
    settings.demo.seed = Some(false);
    let (app, _) = Application::build(settings, Arc::new(SystemClock))
        .await
        .expect("app starts");
    let port = app.port();
    let state = app.state.clone();
    tokio::spawn(app.run_until_stopped());

    let started = Instant::now();
    seed(&state, campaigns).await;
    eprintln!(
        "seeded {campaigns} campaigns in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    // Sanity: a decision with ads, in process.
    let request = SlotRequest {
        user: UserId::parse("bench-user").unwrap(),
        session: None,
        statuses: 12,
        context: SlotContext {
            country: Some("IT".into()),
            ..SlotContext::default()
        },
    };
    let slots = state.server.slots(&request).await;
    assert!(!slots.is_empty(), "the synthetic catalog serves ads");
    if !args.full {
        eprintln!("load: smoke run only (pass --bench via `cargo bench` for the measurement)");
        let _ = std::fs::remove_dir_all(&data_dir);
        return;
    }

    let base = format!("http://127.0.0.1:{port}");
    let scripts = data_dir.join("wrk");
    std::fs::create_dir_all(&scripts).unwrap();
    let healthz = wrk(&args, &format!("{base}/healthz"), None);
    let slots_script = scripts.join("slots.lua");
    std::fs::write(&slots_script, slots_lua()).unwrap();
    let decisions = wrk(&args, &format!("{base}/v1/slots"), Some(&slots_script));

    // Events: batches of 10 renders of real tokens, from decisions made in process.
    let batches = event_batches(&state, 4000).await;
    let events_file = scripts.join("events.txt");
    std::fs::write(&events_file, batches.join("\n")).unwrap();
    let events_script = scripts.join("events.lua");
    std::fs::write(
        &events_script,
        events_lua(&events_file.display().to_string()),
    )
    .unwrap();
    let events = wrk(&args, &format!("{base}/v1/events"), Some(&events_script));

    let rss_kib = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_owned())
        })
        .unwrap_or_default();
    println!(
        "\n## statusads load ({} campaigns, {} connections, {} s per endpoint, 2 cores)",
        campaigns, args.connections, args.seconds
    );
    println!("| measure | value |\n|---|---|");
    println!("| /healthz requests/s | {:.0} |", healthz.rps);
    println!("| /v1/slots decisions/s | {:.0} |", decisions.rps);
    println!(
        "| decisions / healthz ratio | {:.2} |",
        decisions.rps / healthz.rps
    );
    println!(
        "| decision latency p50 / p99 | {} / {} |",
        decisions.p50, decisions.p99
    );
    println!("| events/s (batches of 10) | {:.0} |", events.rps * 10.0);
    println!(
        "| non-2xx responses (slots, events) | {}, {} |",
        decisions.errors, events.errors
    );
    println!(
        "| service RSS (MiB, includes the bench harness) | {:.0} |",
        rss_kib.parse::<f64>().unwrap_or(0.0) / 1024.0
    );
    let _ = std::fs::remove_dir_all(&data_dir);
}

/// Synthetic catalog: one advertiser per 10 campaigns; 70% target one country, the rest any.
async fn seed(state: &statusads::http::AppState, campaigns: usize) {
    let store = &state.store;
    let now = SystemClock.now();
    let png = media::png::solid_png(1080, 1920, [10, 120, 200]);
    let sha = AssetStore::digest(&png);
    let mut rng = rand::thread_rng();
    let mut advertiser = None;
    for i in 0..campaigns {
        if i % 10 == 0 {
            let (adv, _) = NewAdvertiser {
                name: format!("Advertiser {i}"),
                chat_number: None,
                currency: "EUR".into(),
            }
            .into_advertiser(now)
            .unwrap();
            store.save(CatalogRecord::Advertiser(&adv)).await.unwrap();
            advertiser = Some(adv);
        }
        let adv = advertiser.as_ref().unwrap();
        let mut body: HashMap<&str, serde_json::Value> = HashMap::new();
        body.insert("name", format!("Campaign {i}").into());
        body.insert("bid_cpm_micros", rng.gen_range(500_000..5_000_000).into());
        body.insert("pacing", "asap".into());
        body.insert(
            "budget",
            serde_json::json!({"total_micros": 1_000_000_000_000i64}),
        );
        body.insert(
            "frequency_caps",
            serde_json::json!([{"max": 3, "per_seconds": 86400}]),
        );
        if rng.gen_bool(0.7) {
            body.insert(
                "targeting",
                serde_json::json!({"countries": [COUNTRIES.choose(&mut rng).unwrap()]}),
            );
        }
        let input: CampaignInput =
            serde_json::from_value(serde_json::to_value(&body).unwrap()).unwrap();
        let campaign = Campaign::create(input, adv, now).unwrap();
        store
            .save(CatalogRecord::Campaign(&campaign))
            .await
            .unwrap();
        let creative = Creative {
            id: CreativeId::generate(),
            campaign_id: campaign.id.clone(),
            advertiser_id: adv.id.clone(),
            status: CreativeStatus::Approved,
            reject_reason: None,
            format: "image".into(),
            headline: "Bench".into(),
            body: String::new(),
            cta_label: "Learn more".into(),
            asset: Asset {
                url: format!("/assets/{sha}"),
                sha256: sha.clone(),
                mime: "image/png".into(),
                width: 1080,
                height: 1920,
                duration_ms: None,
                bytes: png.len() as u64,
            },
            created_at: now,
        };
        store
            .save(CatalogRecord::Creative(&creative))
            .await
            .unwrap();
    }
    state.catalog.refresh().await.unwrap();
}

async fn event_batches(state: &statusads::http::AppState, batches: usize) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut user = 0u32;
    while tokens.len() < batches * 10 {
        user += 1;
        let request = SlotRequest {
            user: UserId::parse(&format!("event-user-{user}")).unwrap(),
            session: None,
            statuses: 20,
            context: SlotContext {
                country: Some(COUNTRIES[user as usize % COUNTRIES.len()].into()),
                ..SlotContext::default()
            },
        };
        tokens.extend(
            state
                .server
                .slots(&request)
                .await
                .into_iter()
                .map(|s| s.token),
        );
    }
    tokens
        .chunks(10)
        .take(batches)
        .map(|chunk| {
            let events: Vec<_> = chunk
                .iter()
                .map(|t| serde_json::json!({"token": t, "type": "render"}))
                .collect();
            serde_json::json!({ "events": events }).to_string()
        })
        .collect()
}

fn slots_lua() -> String {
    let countries: Vec<String> = COUNTRIES.iter().map(|c| format!("\"{c}\"")).collect();
    format!(
        r#"local countries = {{{}}}
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {CLIENT}"
request = function()
  -- Zipf-like (log-uniform) users: a few heavy users, a long tail.
  local user = math.floor(math.exp(math.random() * math.log({USERS})))
  local country = countries[math.random(#countries)]
  local body = '{{"user":"u' .. user .. '","statuses":12,"context":{{"country":"' .. country .. '"}}}}'
  return wrk.format(nil, nil, nil, body)
end
{}"#,
        countries.join(","),
        LATENCY_REPORT
    )
}

fn events_lua(path: &str) -> String {
    format!(
        r#"local bodies = {{}}
for line in io.lines("{path}") do bodies[#bodies + 1] = line end
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {CLIENT}"
request = function()
  i = i % #bodies + 1
  return wrk.format(nil, nil, nil, bodies[i])
end
{LATENCY_REPORT}"#
    )
}

/// Machine-readable summary line appended by every wrk script.
const LATENCY_REPORT: &str = r#"done = function(summary, latency, requests)
  local errors = summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  io.write(string.format("BENCH %d %d %d %d %d\n", summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), errors))
end"#;

struct WrkResult {
    rps: f64,
    p50: String,
    p99: String,
    errors: u64,
}

fn wrk(args: &Args, url: &str, script: Option<&std::path::Path>) -> WrkResult {
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
    cmd.arg("-s").arg(script).arg(url);
    let output = cmd.output().expect("wrk on PATH (apt-get install wrk)");
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
    let micros = |us: u64| format!("{:.2} ms", us as f64 / 1000.0);
    WrkResult {
        rps: numbers[0] as f64 / (numbers[1] as f64 / 1e6),
        p50: micros(numbers[2]),
        p99: micros(numbers[3]),
        errors: numbers[4],
    }
}
