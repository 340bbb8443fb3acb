//! The real `statusads` binary as a child process, for crash and restart tests (`kill -9`,
//! SIGTERM, a start while Redis is away). Its stderr goes to a log file kept across restarts
//! ([`ServiceProcess::log`]), printed when a test fails.

use std::fs::OpenOptions;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::app::{Api, ADMIN, CLIENT, SIGNING_KEY};
use super::ports::free_port;
use super::scratch::ScratchDir;

pub struct ServiceProcess {
    pub api: Api,
    port: u16,
    redis_url: String,
    data_dir: ScratchDir,
    log_dir: ScratchDir,
    child: Option<Child>,
    /// More environment for every start (configuration a test needs).
    env: Vec<(String, String)>,
}

/// What a start waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// `/readyz` 200: store reachable and catalog loaded.
    Ready,
    /// `/healthz` 200 only: the process serves (e.g. while Redis is away).
    Serving,
}

impl ServiceProcess {
    /// The service on Redis, or on the embedded backend when `redis_url` is empty (its journal
    /// stays in this process's data dir across restarts).
    pub async fn start(redis_url: &str) -> Self {
        Self::start_until(redis_url, Until::Ready).await
    }

    pub async fn start_until(redis_url: &str, until: Until) -> Self {
        Self::start_configured(redis_url, until, &[]).await
    }

    /// With more environment (`STATUSADS__…` keys) for this and every later start.
    pub async fn start_configured(redis_url: &str, until: Until, env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let mut service = Self {
            api: Api {
                address: format!("http://127.0.0.1:{port}"),
                http: reqwest::Client::new(),
            },
            port,
            redis_url: redis_url.to_owned(),
            data_dir: ScratchDir::new("service"),
            log_dir: ScratchDir::new("service-log"),
            child: None,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        service.spawn(until).await;
        service
    }

    fn log_path(&self) -> PathBuf {
        self.log_dir.path().join("stderr.log")
    }

    /// Everything the process (all its runs) wrote to stderr.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The service's environment, as every start of this process gets it.
    fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_statusads"));
        command
            .env("STATUSADS__HTTP__BIND", format!("127.0.0.1:{}", self.port))
            .env("STATUSADS__STORE__REDIS_URL", &self.redis_url)
            .env("STATUSADS__STORE__DATABASE_URL", self.database_url())
            .env("STATUSADS__STORE__DATA_DIR", self.data_dir.path())
            .env("STATUSADS__STORE__SHARDS", "16")
            .env("STATUSADS__AUTH__ADMIN_TOKEN", ADMIN)
            .env("STATUSADS__AUTH__CLIENT_TOKENS", CLIENT)
            .env("STATUSADS__TOKENS__SIGNING_KEY", SIGNING_KEY)
            .env("STATUSADS__DEMO__SEED", "false")
            .env("STATUSADS_LOG", "warn")
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }

    /// Starts the binary again on the same port and data dir (after a kill or a SIGTERM).
    pub async fn spawn(&mut self, until: Until) {
        assert!(self.child.is_none(), "already running");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let child = self
            .command()
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("the statusads binary");
        self.child = Some(child);
        let path = match until {
            Until::Ready => "/readyz",
            Until::Serving => "/healthz",
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("statusads exited at start ({status}):\n{}", self.log());
            }
            if let Ok(res) = self.api.http.get(self.api.url(path)).send().await {
                if res.status().is_success() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "statusads did not answer {path} on port {}:\n{}",
            self.port,
            self.log()
        );
    }

    /// SIGKILL: no graceful shutdown, no flush.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGTERM, as an orchestrator stops a node; waits (up to 30 s) for the process to exit.
    pub async fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                child.kill().unwrap();
                panic!(
                    "statusads did not exit within 30 s of SIGTERM:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn restart(&mut self) {
        self.kill9();
        self.spawn(Until::Ready).await;
    }

    /// Stops the running process (`kill -9`), then starts it again expecting the start to
    /// fail: returns what it wrote to stderr. Panics if it starts serving instead.
    pub fn restart_expecting_failure(&mut self) -> String {
        self.kill9();
        let mut child = self
            .command()
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the statusads binary");
        let deadline = Instant::now() + Duration::from_secs(20);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                child.kill().unwrap();
                panic!("statusads kept running; a failed start was expected");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let output = child.wait_with_output().unwrap();
        assert!(!output.status.success(), "the failed start exits non-zero");
        String::from_utf8_lossy(&output.stderr).into_owned()
    }

    /// Runs another `statusads` command on this service's configuration and data dir.
    pub fn run(&self, args: &[&str]) -> std::process::Output {
        self.command()
            .args(args)
            .output()
            .expect("the statusads binary")
    }

    /// On Redis, the deployment's PostgreSQL database (see `postgres::database_for`).
    pub fn database_url(&self) -> String {
        if self.redis_url.is_empty() {
            String::new()
        } else {
            super::postgres::shared().database_for(&self.redis_url)
        }
    }

    pub fn data_dir(&self) -> &std::path::Path {
        self.data_dir.path()
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("--- statusads stderr ---\n{}", self.log());
        }
    }
}

/// The invoice months (`YYYY-MM`) from `since` to now, on the real clock a service process
/// bills by: one, or two when the test ran across the end of a month.
pub fn months_since(since: time::OffsetDateTime) -> Vec<String> {
    let month = |at: time::OffsetDateTime| format!("{}-{:02}", at.year(), u8::from(at.month()));
    let mut months = vec![month(since), month(time::OffsetDateTime::now_utc())];
    months.dedup();
    months
}

impl Api {
    /// The advertiser's invoices of `months`: their totals summed, and each (total, digest).
    pub async fn invoices(&self, key: &str, months: &[String]) -> (i64, Vec<serde_json::Value>) {
        let mut total = 0;
        let mut each = Vec::new();
        for month in months {
            let invoice: serde_json::Value = self
                .get(&format!("/v1/invoices/{month}"), key)
                .await
                .json()
                .await
                .unwrap();
            total += invoice["total_micros"].as_i64().unwrap();
            each.push(serde_json::json!([
                invoice["total_micros"],
                invoice["digest"]
            ]));
        }
        (total, each)
    }
}
