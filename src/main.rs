//! The `statusads` command line: `serve` (the default), `seed-demo`, `reconcile` and
//! `quarantine`. Nothing else lives here.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use secrecy::ExposeSecret;
use statusads::clock::SystemClock;
use statusads::config::Settings;
use statusads::secrets::Kept;
use statusads::startup::{Application, GeneratedSecrets};

#[derive(Parser)]
#[command(
    name = "statusads",
    version,
    about = "Sponsored items in the Status feed: decide, cap, count, bill."
)]
struct Cli {
    /// A TOML file layered over the built-in defaults (environment variables still win).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP service (what a bare `statusads` does).
    Serve,
    /// Seed demo data into an empty catalog, print the key and exit.
    SeedDemo,
    /// Recompute counters and spend from the ledger and report differences (exit 1 if any).
    Reconcile {
        /// Overwrite the derived state with what the ledger says. Run with traffic stopped.
        #[arg(long)]
        repair: bool,
    },
    /// Move the damaged lines of a journal or spool file (the service refused to start, naming
    /// it) to `<FILE>.quarantine` and keep every intact record. Run with the service stopped.
    Quarantine {
        /// The file the start-up error names, e.g. `data/journal.log` or `data/spool.log`.
        file: PathBuf,
    },
    /// List the nodes whose outage spool holds events Redis has not seen (reports' `as_of`
    /// waits for the oldest), or forget a node gone for good with its spool.
    Spools {
        /// The node to forget, as listed. Only for a stopped node whose spool is lost: reports
        /// stop waiting for its acknowledged events (replayed after all, they appear later).
        #[arg(long, value_name = "NODE")]
        forget: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut settings = match Settings::load(cli.config.as_deref()) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("statusads: bad configuration: {err}");
            return ExitCode::from(2);
        }
    };
    init_tracing(settings.http.json_logs);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = runtime.block_on(async {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => serve(settings).await,
            Command::SeedDemo => {
                settings.demo.seed = Some(true);
                settings.http.bind = "127.0.0.1:0".into();
                let (app, secrets) = Application::build(settings, Arc::new(SystemClock))
                    .await
                    .map_err(|e| e.to_string())?;
                // Its start wrote a heartbeat: nodes must not share budgets with (or wait for)
                // a command that has done its work.
                app.finish().await;
                match secrets.demo_api_key {
                    Some(key) if key.created => println!("demo advertiser API key: {}", key.value),
                    _ => println!("the catalog is not empty; nothing seeded"),
                }
                Ok(())
            }
            Command::Reconcile { repair } => reconcile(settings, repair).await,
            Command::Quarantine { file } => quarantine(&file),
            Command::Spools { forget } => spools(settings, forget).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("statusads: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: Settings) -> Result<(), String> {
    let backend = if settings.uses_redis() {
        "redis"
    } else {
        "embedded"
    };
    let (app, secrets) = Application::build(settings.clone(), Arc::new(SystemClock))
        .await
        .map_err(|e| format!("cannot start: {e}"))?;
    print_generated(&secrets, app.port(), backend);
    tracing::info!(address = %format!("http://{}", settings.http.bind), backend, "statusads ready");
    app.run_until_stopped().await.map_err(|e| e.to_string())
}

async fn reconcile(settings: Settings, repair: bool) -> Result<(), String> {
    let metrics = Arc::new(statusads::metrics::Metrics::default());
    let clock = Arc::new(statusads::clock::SystemClock);
    let store = statusads::startup::open_store(&settings, metrics, clock)
        .await
        .map_err(|e| e.to_string())?;
    let record = statusads::record::Record::open(
        settings.store.database_url.expose_secret(),
        &settings.store.data_dir,
    )
    .await
    .map_err(|e| e.to_string())?;
    let now_ms = statusads::clock::Clock::now_ms(&SystemClock);
    let report = statusads::ledger::reconcile::reconcile(&store, &record, now_ms, repair)
        .await
        .map_err(|e| e.report().to_string())?;
    println!("ledger records in the system of record: {}", report.records);
    println!("exported from the outbox first: {}", report.exported);
    for difference in &report.differences {
        println!("difference: {difference}");
    }
    match (report.differences.is_empty(), repair) {
        (true, _) => {
            println!("hot spend matches the ledger");
            Ok(())
        }
        (false, true) => {
            println!("repaired {} differences", report.differences.len());
            Ok(())
        }
        (false, false) => Err(format!(
            "{} differences (run with --repair to fix)",
            report.differences.len()
        )),
    }
}

async fn spools(settings: Settings, forget: Option<String>) -> Result<(), String> {
    if !settings.uses_redis() {
        return Err(
            "outage spools exist on the Redis backend only (store.redis_url is not set)".into(),
        );
    }
    let record = statusads::record::Record::open(
        settings.store.database_url.expose_secret(),
        &settings.store.data_dir,
    )
    .await
    .map_err(|e| e.to_string())?;
    let failed = |e: statusads::store::StoreError| e.report().to_string();
    if let Some(node) = forget {
        return match record.forget_outage_spool(&node).await.map_err(failed)? {
            true => {
                println!("forgot {node}'s outage spool; as_of no longer waits for it");
                Ok(())
            }
            false => Err(format!("no outage spool of {node} is listed")),
        };
    }
    let listed = record.outage_spools().await.map_err(failed)?;
    if listed.is_empty() {
        println!("no outage spool listed");
    }
    for spool in listed {
        println!(
            "{}\tsince {} (its clock)",
            spool.node,
            statusads::ledger::report::rfc3339(spool.since_ms)
        );
    }
    Ok(())
}

fn quarantine(file: &std::path::Path) -> Result<(), String> {
    let done = statusads::store::lines::quarantine(file).map_err(|e| e.to_string())?;
    for (offset, len) in &done.moved {
        println!("moved aside: {len} bytes at byte {offset}");
    }
    match done.moved.len() {
        0 => println!("{}: no damaged lines; nothing moved", file.display()),
        n => println!(
            "{}: {n} damaged lines moved to {}; {} intact records kept",
            file.display(),
            done.quarantine_file.display(),
            done.kept_records
        ),
    }
    Ok(())
}

/// Generated secrets go to stdout (never to the log) at every start, with the file that keeps
/// each, so a restart never strands the tokens a user already has.
fn print_generated(secrets: &GeneratedSecrets, port: u16, backend: &str) {
    let kept = |what: &str, secret: &Kept| {
        let how = if secret.created { "generated" } else { "kept" };
        println!(
            "{what} ({how} in {}): {}",
            secret.path.display(),
            secret.value
        );
    };
    if let Some(token) = &secrets.admin_token {
        kept("operator token", token);
    }
    if let Some(key) = &secrets.demo_api_key {
        kept("demo advertiser API key, as seeded", key);
    }
    if let Some(token) = &secrets.client_token {
        kept("client token", token);
        println!(
            "try: curl -s -X POST http://127.0.0.1:{port}/v1/slots -H 'Authorization: Bearer {}' \
             -H 'Content-Type: application/json' -d '{{\"user\":\"u1\",\"session\":\"s1\",\"statuses\":12}}'",
            token.value
        );
        if secrets.demo_api_key.is_none() {
            println!(
                "     (no demo data on the {backend} backend: slots stay empty until an advertiser's \
                 creative is approved; STATUSADS__DEMO__SEED=true seeds the demo campaigns)"
            );
        }
    }
}

fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STATUSADS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
