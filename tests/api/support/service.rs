//! The real `statusads` binary as a child process, for crash tests (`kill -9`, restart).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::app::{Api, ADMIN, CLIENT, SIGNING_KEY};
use super::redis_server::free_port;
use super::scratch::ScratchDir;

pub struct ServiceProcess {
    pub api: Api,
    port: u16,
    redis_url: String,
    data_dir: ScratchDir,
    child: Option<Child>,
}

impl ServiceProcess {
    /// The service on Redis, or on the embedded backend when `redis_url` is empty (its journal
    /// stays in this process's data dir across restarts).
    pub async fn start(redis_url: &str) -> Self {
        let port = free_port();
        let mut service = Self {
            api: Api {
                address: format!("http://127.0.0.1:{port}"),
                http: reqwest::Client::new(),
            },
            port,
            redis_url: redis_url.to_owned(),
            data_dir: ScratchDir::new("service"),
            child: None,
        };
        service.spawn().await;
        service
    }

    /// The service's environment, as every start of this process gets it.
    fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_statusads"));
        command
            .env("STATUSADS__HTTP__BIND", format!("127.0.0.1:{}", self.port))
            .env("STATUSADS__STORE__REDIS_URL", &self.redis_url)
            .env("STATUSADS__STORE__DATA_DIR", self.data_dir.path())
            .env("STATUSADS__STORE__SHARDS", "16")
            .env("STATUSADS__AUTH__ADMIN_TOKEN", ADMIN)
            .env("STATUSADS__AUTH__CLIENT_TOKENS", CLIENT)
            .env("STATUSADS__TOKENS__SIGNING_KEY", SIGNING_KEY)
            .env("STATUSADS__DEMO__SEED", "false")
            .env("STATUSADS_LOG", "warn");
        command
    }

    async fn spawn(&mut self) {
        let child = self
            .command()
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the statusads binary");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(res) = self.api.http.get(self.api.url("/readyz")).send().await {
                if res.status().is_success() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("statusads did not become ready on port {}", self.port);
    }

    /// SIGKILL: no graceful shutdown, no flush.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    pub async fn restart(&mut self) {
        self.kill9();
        self.spawn().await;
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

    pub fn data_dir(&self) -> &std::path::Path {
        self.data_dir.path()
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}
