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

    async fn spawn(&mut self) {
        let child = Command::new(env!("CARGO_BIN_EXE_statusads"))
            .arg("serve")
            .env("STATUSADS__HTTP__BIND", format!("127.0.0.1:{}", self.port))
            .env("STATUSADS__STORE__REDIS_URL", &self.redis_url)
            .env("STATUSADS__STORE__DATA_DIR", self.data_dir.path())
            .env("STATUSADS__STORE__SHARDS", "16")
            .env("STATUSADS__AUTH__ADMIN_TOKEN", ADMIN)
            .env("STATUSADS__AUTH__CLIENT_TOKENS", CLIENT)
            .env("STATUSADS__TOKENS__SIGNING_KEY", SIGNING_KEY)
            .env("STATUSADS__DEMO__SEED", "false")
            .env("STATUSADS_LOG", "warn")
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
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}
