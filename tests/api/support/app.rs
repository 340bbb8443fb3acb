//! The application under test, built in-process on port 0 against a real store.

use std::sync::Arc;

use actix_web::web;
use reqwest::{Response, StatusCode};
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use statusads::clock::{Clock, ManualClock};
use statusads::config::Settings;
use statusads::http::AppState;
use statusads::media;
use statusads::startup::Application;
use time::macros::datetime;

use super::redis_server::RedisServer;
use super::scratch::ScratchDir;

pub const ADMIN: &str = "test-admin-token";
pub const CLIENT: &str = "test-client-token";
pub const SIGNING_KEY: &str = "test-signing-key-0123456789abcdef0123456789";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Redis,
    Embedded,
    /// The Redis backend on the in-process Redis: the same store code and Lua scripts over
    /// memory (`store::redis::in_process`).
    InProcess,
}

/// HTTP helpers against a running service (in process or a real process).
pub struct Api {
    pub address: String,
    pub http: reqwest::Client,
}

pub struct TestApp {
    pub api: Api,
    pub clock: Arc<ManualClock>,
    pub state: web::Data<AppState>,
    pub redis: Option<RedisServer>,
    /// The system of record (PostgreSQL, or the embedded backend's SQLite file).
    pub database_url: String,
    /// Kept for its lifetime: the app's files live here until the test ends.
    pub _data_dir: ScratchDir,
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

pub async fn spawn_app_with(backend: Backend, configure: impl FnOnce(&mut Settings)) -> TestApp {
    match backend {
        Backend::Redis => spawn_app_on(Some(RedisServer::start()), configure).await,
        Backend::Embedded => spawn_app_on(None, configure).await,
        Backend::InProcess => {
            spawn_app_on(None, |s| {
                s.store.redis_url = statusads::store::IN_PROCESS_REDIS_URL.into();
                configure(s)
            })
            .await
        }
    }
}

/// The app on a given Redis (e.g. a durable one), or on the embedded backend when `None`.
pub async fn spawn_app_on(
    redis: Option<RedisServer>,
    configure: impl FnOnce(&mut Settings),
) -> TestApp {
    spawn_app_full(redis, configure, |_| {}).await
}

/// The full form: a store, settings and extra routes (failure probes).
pub async fn spawn_app_full(
    redis: Option<RedisServer>,
    configure: impl FnOnce(&mut Settings),
    extra_routes: fn(&mut actix_web::web::ServiceConfig),
) -> TestApp {
    super::logs::capture();
    let data_dir = ScratchDir::new("app");
    let mut settings = Settings::defaults();
    settings.http.bind = "127.0.0.1:0".into();
    settings.store.data_dir = data_dir.path().to_path_buf();
    settings.store.redis_url = redis
        .as_ref()
        .map(RedisServer::url)
        .unwrap_or_default()
        .into();
    // Few shards keep spend and report scans cheap; the key schema is the same.
    settings.store.shards = 16;
    settings.auth.admin_token = ADMIN.into();
    settings.auth.client_tokens = vec![CLIENT.into()];
    settings.tokens.signing_key = SIGNING_KEY.into();
    settings.demo.seed = Some(false);
    configure(&mut settings);
    if settings.uses_redis() && settings.store.database_url.expose_secret().is_empty() {
        let mut deployment = format!(
            "{}{}",
            settings.store.redis_url.expose_secret(),
            settings.store.cluster_nodes.join(",")
        );
        if deployment == statusads::store::IN_PROCESS_REDIS_URL {
            // Every in-process Redis is a deployment of its own.
            deployment.push_str(&data_dir.path().display().to_string());
        }
        settings.store.database_url = super::postgres::shared().database_for(&deployment).into();
    }
    let database_url = match settings.store.database_url.expose_secret() {
        "" => format!(
            "sqlite://{}",
            settings
                .store
                .data_dir
                .join(statusads::record::SQLITE_FILE)
                .display()
        ),
        url => url.to_owned(),
    };
    let clock = ManualClock::new(datetime!(2026-11-26 10:00:00 UTC));
    let (app, _) = Application::build_with_routes(settings, clock.clone(), extra_routes)
        .await
        .expect("the app starts");
    let address = format!("http://127.0.0.1:{}", app.port());
    let state = app.state.clone();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        api: Api {
            address,
            http: reqwest::Client::new(),
        },
        clock,
        state,
        redis,
        database_url,
        _data_dir: data_dir,
    }
}

/// A valid 9:16 image.
pub fn portrait_png() -> Vec<u8> {
    media::png::solid_png(1080, 1920, [200, 30, 30])
}

/// A valid 9:16 image grown by `filler` bytes in an ancillary chunk before IEND.
pub fn padded_png(filler: usize) -> Vec<u8> {
    let mut png = portrait_png();
    let iend = png.len() - 12;
    let mut chunk = (filler as u32).to_be_bytes().to_vec();
    chunk.extend_from_slice(b"tEXt");
    chunk.extend(std::iter::repeat_n(b'x', filler));
    chunk.extend_from_slice(&[0, 0, 0, 0]);
    png.splice(iend..iend, chunk);
    png
}

impl std::ops::Deref for TestApp {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

impl TestApp {
    /// `statusads reconcile` against this app's stores, on its clock.
    pub async fn reconcile(&self, repair: bool) -> statusads::ledger::reconcile::ReconcileReport {
        statusads::ledger::reconcile::reconcile(
            &self.state.store,
            &self.state.record,
            self.clock.now_ms(),
            repair,
        )
        .await
        .expect("reconcile runs")
    }

    /// Asset files stored on disk.
    pub async fn stored_assets(&self) -> usize {
        self.state.assets.count().await.unwrap() as usize
    }

    /// Refreshes the spend snapshot now (budget checks read it; the app also does every second).
    pub async fn refresh_spend(&self) {
        self.state
            .spend
            .refresh(&self.state.store, self.clock.now_ms())
            .await
            .unwrap();
    }
}

impl Api {
    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Polls `/metrics` (up to 20 s) until `done` holds; returns that text.
    pub async fn wait_for_metrics(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let text = self.metrics().await;
            if done(&text) {
                return text;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}: {text}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        let mut request = self.http.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("request sent")
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Response {
        self.send(reqwest::Method::POST, path, Some(token), Some(body))
            .await
    }

    pub async fn get(&self, path: &str, token: &str) -> Response {
        self.send(reqwest::Method::GET, path, Some(token), None)
            .await
    }

    /// Creates an advertiser; returns (id, api key).
    pub async fn advertiser(&self, name: &str) -> (String, String) {
        let res = self
            .post(
                "/v1/advertisers",
                ADMIN,
                json!({"name": name, "chat_number": "+390612345678", "currency": "EUR"}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
        let body: Value = res.json().await.unwrap();
        (
            body["id"].as_str().unwrap().into(),
            body["api_key"].as_str().unwrap().into(),
        )
    }

    pub async fn campaign(&self, key: &str, extra: Value) -> String {
        let mut body = json!({"name": "Campaign", "bid_cpm_micros": 2_000_000, "pacing": "asap",
            "budget": {"total_micros": 1_000_000_000}});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let res = self.post("/v1/campaigns", key, body).await;
        let status = res.status();
        let body: Value = res.json().await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().unwrap().into()
    }

    pub async fn upload(
        &self,
        key: &str,
        campaign: &str,
        file: Vec<u8>,
        filename: &str,
        meta: Value,
    ) -> Response {
        let form = reqwest::multipart::Form::new()
            .part(
                "file",
                reqwest::multipart::Part::bytes(file).file_name(filename.to_owned()),
            )
            .text("meta", meta.to_string());
        self.http
            .post(self.url(&format!("/v1/campaigns/{campaign}/creatives")))
            .bearer_auth(key)
            .multipart(form)
            .send()
            .await
            .unwrap()
    }

    /// A campaign with an approved creative: servable.
    pub async fn live_campaign(&self, key: &str, extra: Value) -> String {
        let campaign = self.campaign(key, extra).await;
        let res = self
            .upload(
                key,
                &campaign,
                portrait_png(),
                "ad.png",
                json!({"headline": "Pizza!"}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
        let creative: Value = res.json().await.unwrap();
        let res = self
            .post(
                &format!("/v1/creatives/{}/approve", creative["id"].as_str().unwrap()),
                ADMIN,
                json!({}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::OK);
        campaign
    }

    pub async fn slots(&self, user: &str, session: Option<&str>, statuses: u32) -> Vec<Value> {
        let mut body = json!({"user": user, "statuses": statuses});
        if let Some(session) = session {
            body["session"] = json!(session);
        }
        let res = self.post("/v1/slots", CLIENT, body).await;
        assert_eq!(res.status(), StatusCode::OK);
        let body: Value = res.json().await.unwrap();
        body["slots"].as_array().unwrap().clone()
    }

    /// Sends events, returns each result's status.
    pub async fn events(&self, events: &[(&str, &str)]) -> Vec<String> {
        let events: Vec<Value> = events
            .iter()
            .map(
                |(token, kind)| json!({"token": token, "type": kind, "at": "2026-11-26T10:00:00Z"}),
            )
            .collect();
        let res = self
            .post("/v1/events", CLIENT, json!({ "events": events }))
            .await;
        assert_eq!(res.status(), StatusCode::OK);
        let body: Value = res.json().await.unwrap();
        body["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["status"].as_str().unwrap().to_owned())
            .collect()
    }

    pub async fn render(&self, token: &str) -> String {
        self.events(&[(token, "render")]).await.remove(0)
    }

    /// Serves `user` a feed whose first slot is a chat ad, renders and clicks it; answers the
    /// click id a conversion names.
    pub async fn click_chat_ad(&self, user: &str) -> String {
        let slots = self.slots(user, None, 12).await;
        let cta = &slots[0]["ad"]["cta"];
        assert_eq!(cta["kind"], "chat", "{cta}");
        let click_id = cta["click_id"].as_str().expect("a click id").to_owned();
        let token = token_of(&slots[0]);
        assert_eq!(
            self.events(&[(&token, "render"), (&token, "click")]).await,
            ["accepted", "accepted"]
        );
        click_id
    }

    /// Reports a conversion of `kind` for `click_id` at `at` (RFC 3339) as the operator;
    /// answers its status (`accepted`, `duplicate`, `unknown_click`).
    pub async fn convert(&self, advertiser: &str, click_id: &str, kind: &str, at: &str) -> String {
        let res = self
            .post(
                "/v1/conversions",
                ADMIN,
                json!({"advertiser_id": advertiser, "click_id": click_id, "type": kind, "at": at}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::OK);
        let body: Value = res.json().await.unwrap();
        body["status"].as_str().expect("a status").to_owned()
    }

    /// Totals of the report's default range: the 30 days up to the service's own today, so the
    /// same call reads an in-process app on its manual clock and the real binary on the real one.
    pub async fn report_totals(&self, key: &str, campaign: &str) -> Value {
        let res = self
            .get(&format!("/v1/reports/campaigns/{campaign}"), key)
            .await;
        assert_eq!(res.status(), StatusCode::OK);
        let body: Value = res.json().await.unwrap();
        body["totals"].clone()
    }
}

/// The campaign ids in a slots answer.
pub fn campaigns_of(slots: &[Value]) -> Vec<String> {
    slots
        .iter()
        .map(|s| s["ad"]["campaign_id"].as_str().unwrap().to_owned())
        .collect()
}

pub fn token_of(slot: &Value) -> String {
    slot["token"].as_str().unwrap().to_owned()
}
