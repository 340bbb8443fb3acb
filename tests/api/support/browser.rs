//! Headless Chromium driven over WebDriver with `fantoccini`, through `chromedriver` started per
//! test on a free port. chromedriver leads its own process group, and Chromium and its helpers
//! join it: dropping the browser, also when a test panics, ends every one of them (chromedriver
//! does not end its browser when it is killed).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};

use super::ports::free_port;
use super::process_group::ProcessGroup;
use super::scratch::ScratchDir;

pub struct Browser {
    client: Client,
    /// Held for its drop, which ends chromedriver and the browser.
    _driver: ProcessGroup,
    _profile: ScratchDir,
}

impl Browser {
    pub async fn start(width: u32, height: u32) -> Self {
        let port = free_port();
        let driver = ProcessGroup::spawn(
            Command::new("chromedriver")
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .expect("chromedriver on PATH (apt-get install chromium-driver)");
        let base = format!("http://127.0.0.1:{port}");
        let profile = ScratchDir::new("chromium");
        let args = [
            "--headless=new".to_owned(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let capabilities = json!({"browserName": "chrome",
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args}});
        let Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        // chromedriver takes a moment to listen: a refused connection is retried.
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = loop {
            match ClientBuilder::new(HttpConnector::new())
                .capabilities(capabilities.clone())
                .connect(&base)
                .await
            {
                Ok(client) => break client,
                Err(err) => assert!(
                    Instant::now() < deadline,
                    "chromedriver did not start a session: {err}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        Self {
            client,
            _driver: driver,
            _profile: profile,
        }
    }

    pub async fn open(&self, url: &str) {
        self.client.goto(url).await.expect("navigation");
    }

    /// Waits until `css` matches a displayed element.
    pub async fn find(&self, css: &str) -> Element {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(element) = self.client.find(Locator::Css(css)).await {
                if element.is_displayed().await.unwrap_or(false) {
                    return element;
                }
            }
            assert!(Instant::now() < deadline, "no visible element {css}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        element.clear().await.expect("clear");
        element.send_keys(text).await.expect("typing");
    }

    /// File inputs may be visually hidden behind a styled label: no visibility wait.
    pub async fn choose_file(&self, css: &str, path: &std::path::Path) {
        let element = self
            .client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|err| panic!("no element {css}: {err}"));
        element
            .send_keys(&path.display().to_string())
            .await
            .expect("choosing the file");
    }

    pub async fn click(&self, css: &str) {
        self.find(css).await.click().await.expect("click");
    }

    /// Sends keys to `css` as the keyboard would (focusing it first), e.g. "\u{E007}" for
    /// Enter on a button.
    pub async fn press(&self, css: &str, keys: &str) {
        self.find(css).await.send_keys(keys).await.expect("keys");
    }

    /// Runs `script` (a function body returning a value) in the page.
    pub async fn eval(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.expect("script")
    }

    /// Waits until `script` returns something truthy; returns it.
    pub async fn wait_for(&self, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let value = self.eval(script).await;
            if !matches!(value, Value::Null | Value::Bool(false)) && value != json!("") {
                return value;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn screenshot(&self) -> Vec<u8> {
        self.client.screenshot().await.expect("screenshot")
    }
}

impl Browser {
    /// The browser's profile, named on the command line of every Chromium process it runs.
    pub fn profile_dir(&self) -> &std::path::Path {
        self._profile.path()
    }
}

/// Pids of the processes whose command line names `profile` as their Chromium profile.
pub fn chromium_processes_of(profile: &std::path::Path) -> Vec<u32> {
    let flag = format!("--user-data-dir={}", profile.display());
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            cmdline
                .split(|b| *b == 0)
                .any(|arg| arg == flag.as_bytes())
                .then_some(pid)
        })
        .collect()
}
