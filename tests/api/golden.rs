//! A data dir of the embedded backend as the 2026-12-03 build wrote it, kept in
//! `tests/golden/embedded/`: the snapshot, the journal after it (a decision, events, a
//! conversion, messages and a delivery status; one charged message whose ledger record the
//! SQLite copy does not hold yet, so the outbox must replay), the SQLite record, and
//! `inputs.json` (what the scenario created: advertiser keys, campaigns, a rendered token).
//! Every later build must open a copy and answer what that build answered (`answers.json`):
//! access, caps, spend, dedupe of a rendered token and of messages, invoices, reports, what is
//! served, and a late reply rated by a lapsed window. A change to the journal's, snapshot's or
//! record's readers that loses or changes any of it fails here.
//!
//! The answers rest on the test harness's clock start ([`GOLDEN_NOW`]) and signing key. The
//! files are written on purpose only, by the ignored `write` below (`cargo test --test api
//! golden::write -- --ignored` with `STATUSADS_WRITE_GOLDEN` set):
//! - `answers`: an intended change of an answer. `answers.json` is written again from the kept
//!   data files, read by this build.
//! - `all`: the data files too, from this build's scenario. That retires the earlier build's
//!   files from the test: only once no deployment can hold them.

use std::path::{Path, PathBuf};

use reqwest::StatusCode;
use serde_json::{json, Value};
use statusads::clock::Clock;
use time::macros::datetime;

use crate::privacy::{a_user_who_did_everything, access, erase, Activity};
use crate::support::app::{campaigns_of, spawn_app_with, token_of, ADMIN};
use crate::support::scratch::ScratchDir;
use crate::support::{Backend, TestApp};

/// Where the harness's manual clock starts: every time in the golden files is read against it.
const GOLDEN_NOW: time::OffsetDateTime = datetime!(2026-11-26 10:00:00 UTC);

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/embedded")
}

/// The files of a data dir that make its state (the rest is recreated at start).
const FILES: [&str; 3] = [
    "journal.log",
    "snapshot.json",
    statusads::record::SQLITE_FILE,
];

/// An embedded app on `data_dir` that samples nothing (a sampled decision is a record that
/// access counts: one in a hundred runs would differ).
async fn embedded(data_dir: Option<PathBuf>) -> TestApp {
    let app = spawn_app_with(Backend::Embedded, move |s| {
        s.insight.sample_rate = 0.0;
        if let Some(dir) = data_dir {
            s.store.data_dir = dir;
        }
    })
    .await;
    assert_eq!(
        app.clock.now_ms(),
        statusads::clock::ms_from_datetime(GOLDEN_NOW),
        "the golden answers are read at the harness's clock start"
    );
    app
}

async fn post(app: &TestApp, path: &str, body: Value) -> (StatusCode, Value) {
    let res = app.post(path, ADMIN, body).await;
    (res.status(), res.json().await.unwrap())
}

/// A business message: `kind` is `inbound`, `free_form` (outbound) or a template category.
fn message(id: &str, advertiser: &str, user: &str, kind: &str, at: &str) -> Value {
    let (direction, kind, category) = match kind {
        "inbound" => ("inbound", "free_form", None),
        "free_form" => ("outbound", "free_form", None),
        category => ("outbound", "template", Some(category)),
    };
    json!({"id": id, "advertiser_id": advertiser, "user": user, "direction": direction,
           "kind": kind, "category": category, "country": "IT", "at": at})
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap()
}

/// Sorts every array under `value`: for answers whose lists come from hash maps.
fn sorted(value: Value) -> Value {
    match value {
        Value::Array(items) => {
            let mut items: Vec<Value> = items.into_iter().map(sorted).collect();
            items.sort_by_key(|v| v.to_string());
            Value::Array(items)
        }
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k, sorted(v))).collect()),
        other => other,
    }
}

/// Everything the scenario left, as the API answers it; the last answers change state (a late
/// reply recorded, decisions served).
async fn answers(app: &TestApp, inputs: &Value) -> Value {
    app.state.exporter.caught_up().await;
    // Campaigns show the spend of the last refresh (every second): read it now.
    app.refresh_spend().await;
    let keys: Vec<&str> = inputs["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(text)
        .collect();
    let mut users = serde_json::Map::new();
    for user in ["wa-user-1", "wa-user-2", "wa-user-3", "late"] {
        users.insert(user.into(), sorted(access(app, user).await));
    }
    let mut invoices = Vec::new();
    let mut campaigns = serde_json::Map::new();
    let mut reports = serde_json::Map::new();
    for (key, name) in keys.iter().zip(["chat", "capped", "hidden"]) {
        let res = app.get("/v1/invoices/2026-11", key).await;
        assert_eq!(res.status(), StatusCode::OK);
        invoices.push(res.json::<Value>().await.unwrap());
        let id = text(&inputs[name]);
        let res = app.get(&format!("/v1/campaigns/{id}"), key).await;
        assert_eq!(res.status(), StatusCode::OK);
        campaigns.insert(name.into(), res.json::<Value>().await.unwrap());
        reports.insert(name.into(), app.report_totals(key, id).await);
    }
    let rendered_again = app.events(&[(text(&inputs["rendered"]), "render")]).await;
    let mut messages = serde_json::Map::new();
    for (id, advertiser, user) in [
        ("in-1", "chat_adv", "wa-user-1"),
        ("tpl-1", "hidden_adv", "wa-user-1"),
        ("tpl-3", "hidden_adv", "wa-user-3"),
        ("late-in-2", "chat_adv", "late"),
    ] {
        let body = message(
            id,
            text(&inputs[advertiser]),
            user,
            "inbound",
            "2026-11-26T10:05:00Z",
        );
        messages.insert(id.into(), post(app, "/v1/messages", body).await.1);
    }
    let (status, late) = post(
        app,
        "/v1/messages",
        message(
            "late-reply",
            text(&inputs["chat_adv"]),
            "late",
            "free_form",
            "2026-11-25T12:00:00Z",
        ),
    )
    .await;
    let served_again = campaigns_of(&app.slots("wa-user-1", Some("session-2"), 12).await);
    let mut served_new = campaigns_of(&app.slots("wa-user-9", None, 12).await);
    served_new.sort();
    json!({
        "users": users,
        "invoices": invoices,
        "campaigns": campaigns,
        "reports": reports,
        "rendered_again": rendered_again,
        "messages": messages,
        "late_reply": {"status": status.as_u16(), "reason": late["reason"],
                       "window_expires_at": late["window_expires_at"]},
        "served_again": served_again,
        "served_to_a_new_user": served_new,
    })
}

/// The scenario: everything `a_user_who_did_everything` does; a second user served, rendered
/// and erased (the embedded backend compacts at an erasure: the snapshot); then, in the journal
/// after it, a third user served, rendered, clicked and converted, a template sent and settled
/// as delivered, and a conversation whose first window lapsed 2 h before the second opened.
/// The record is copied into `dir` before the last charged message.
async fn scenario(app: &TestApp, dir: &Path) -> Value {
    let Activity {
        chat,
        capped,
        hidden,
        chat_adv,
        hidden_adv,
        keys,
    } = a_user_who_did_everything(app).await;
    let slots = app.slots("wa-user-2", None, 12).await;
    let token = token_of(&slots[0]);
    assert_eq!(app.events(&[(&token, "render")]).await, vec!["accepted"]);
    assert_eq!(erase(app, "wa-user-2").await["erased"], true);

    let slots = app.slots("wa-user-3", Some("session-3"), 12).await;
    assert_eq!(slots.len(), 3);
    let tokens: Vec<String> = slots.iter().map(token_of).collect();
    let renders: Vec<(&str, &str)> = tokens.iter().map(|t| (t.as_str(), "render")).collect();
    assert!(app.events(&renders).await.iter().all(|s| s == "accepted"));
    let chat_slot = slots
        .iter()
        .find(|s| s["ad"]["campaign_id"] == chat.as_str())
        .unwrap();
    let chat_token = token_of(chat_slot);
    assert_eq!(
        app.events(&[(&chat_token, "click")]).await,
        vec!["accepted"]
    );
    assert_eq!(
        app.convert(
            &chat_adv,
            text(&chat_slot["ad"]["cta"]["click_id"]),
            "conversation_started",
            "2026-11-26T10:02:00Z"
        )
        .await,
        "accepted"
    );
    let mut sent = message(
        "sent-3",
        &hidden_adv,
        "wa-user-3",
        "marketing",
        "2026-11-26T10:03:00Z",
    );
    sent["delivery"] = json!("sent");
    assert_eq!(
        post(app, "/v1/messages", sent).await.1["billing"],
        "pending"
    );
    let (status, _) = post(
        app,
        "/v1/messages/sent-3/status",
        json!({"advertiser_id": hidden_adv, "status": "delivered", "at": "2026-11-26T10:04:00Z"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    for (id, at) in [
        ("late-in-1", "2026-11-25T00:00:00Z"),
        ("late-in-2", "2026-11-26T02:00:00Z"),
    ] {
        let (status, _) = post(
            app,
            "/v1/messages",
            message(id, &chat_adv, "late", "inbound", at),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{id}");
    }
    app.state.exporter.caught_up().await;
    let sqlite = dir.join(statusads::record::SQLITE_FILE);
    let _ = std::fs::remove_file(&sqlite);
    vacuum_into(
        &app.state.data_dir.join(statusads::record::SQLITE_FILE),
        &sqlite,
    )
    .await;
    let template = message(
        "tpl-3",
        &hidden_adv,
        "wa-user-3",
        "marketing",
        "2026-11-26T10:06:00Z",
    );
    let (_, charged) = post(app, "/v1/messages", template).await;
    assert!(charged["charge_micros"].as_i64().unwrap() > 0, "{charged}");
    json!({"chat": chat, "capped": capped, "hidden": hidden, "chat_adv": chat_adv,
           "hidden_adv": hidden_adv, "keys": keys, "rendered": tokens[0]})
}

/// Writes `tests/golden/embedded/` (on purpose only: see the module docs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes the golden data dir; run on purpose"]
async fn write() {
    let mode = std::env::var("STATUSADS_WRITE_GOLDEN").unwrap_or_default();
    assert!(
        ["answers", "all"].contains(&mode.as_str()),
        "set STATUSADS_WRITE_GOLDEN=answers or =all (see tests/api/golden.rs)"
    );
    let dir = golden_dir();
    let live = if mode == "all" {
        let app = embedded(None).await;
        std::fs::create_dir_all(&dir).unwrap();
        let inputs = scenario(&app, &dir).await;
        // The journal and snapshot change only with the writes above, all answered.
        for file in &FILES[..2] {
            std::fs::copy(app.state.data_dir.join(file), dir.join(file)).unwrap();
        }
        std::fs::write(
            dir.join("inputs.json"),
            serde_json::to_string_pretty(&inputs).unwrap() + "\n",
        )
        .unwrap();
        Some(answers(&app, &inputs).await)
    } else {
        None
    };
    let (reopened, _copy) = open_copy().await;
    let expected = answers(&reopened, &inputs()).await;
    // What this build reads back is what it answered before it stopped.
    if let Some(live) = live {
        assert_eq!(expected, live);
    }
    std::fs::write(
        dir.join("answers.json"),
        serde_json::to_string_pretty(&expected).unwrap() + "\n",
    )
    .unwrap();
}

fn inputs() -> Value {
    serde_json::from_str(&std::fs::read_to_string(golden_dir().join("inputs.json")).unwrap())
        .unwrap()
}

async fn vacuum_into(from: &Path, to: &Path) {
    use sqlx::Connection;
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(from);
    let mut conn = sqlx::SqliteConnection::connect_with(&options)
        .await
        .unwrap();
    sqlx::query("VACUUM INTO ?")
        .bind(to.to_str().unwrap())
        .execute(&mut conn)
        .await
        .unwrap();
}

/// An app on a copy of the golden data dir (opening may replay, compact and migrate it).
async fn open_copy() -> (TestApp, ScratchDir) {
    let copy = ScratchDir::new("golden");
    for file in FILES {
        std::fs::copy(golden_dir().join(file), copy.path().join(file)).unwrap();
    }
    let app = embedded(Some(copy.path().to_path_buf())).await;
    (app, copy)
}

/// This build opens the data dir an earlier one wrote and answers what it answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_data_dir_of_an_earlier_build_answers_as_it_did() {
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(golden_dir().join("answers.json")).unwrap())
            .unwrap();
    let (app, _copy) = open_copy().await;
    assert_eq!(answers(&app, &inputs()).await, expected);
    // The files hold what the scenario did, not empty state answering alike.
    assert_eq!(expected["rendered_again"], json!(["duplicate"]));
    assert_eq!(expected["late_reply"]["reason"], "service_window");
    assert_eq!(expected["messages"]["tpl-3"]["status"], "duplicate");
    assert!(expected["users"]["wa-user-3"]["records"].as_u64().unwrap() > 0);
}
