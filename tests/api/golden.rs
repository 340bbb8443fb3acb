//! A data dir of the embedded backend as this build wrote it, kept in `tests/golden/embedded/`:
//! its journal (entries after a snapshot), the snapshot, the SQLite record and `inputs.json`
//! (what the scenario created: advertiser keys, campaigns). Every later build must open it and
//! answer what this build answered (`answers.json`): access, erasure's effect, caps, invoices,
//! reports, message duplicates and a conversation stored in the form that keeps a lapsed window.
//! A change to the journal's or snapshot's readers that loses or changes anything fails here.
//!
//! The files are written on purpose only, by the ignored test below
//! (`cargo test --test api golden::write -- --ignored` with `STATUSADS_WRITE_GOLDEN` set):
//! - `answers`: an intended change of an answer. `answers.json` is written again from the kept
//!   data files, read by this build.
//! - `all`: the data files too, from this build's scenario. That retires the earlier build's
//!   files from the test: only once no deployment can hold them.

use std::path::{Path, PathBuf};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::privacy::{a_user_who_did_everything, access, erase, Activity};
use crate::support::app::{spawn_app_with, ADMIN};
use crate::support::scratch::ScratchDir;
use crate::support::{spawn_app, Backend, TestApp};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/embedded")
}

/// The files of a data dir that make its state (the rest is recreated at start).
const FILES: [&str; 3] = [
    "journal.log",
    "snapshot.json",
    statusads::record::SQLITE_FILE,
];

async fn post(app: &TestApp, path: &str, body: Value) -> (StatusCode, Value) {
    let res = app.post(path, ADMIN, body).await;
    (res.status(), res.json().await.unwrap())
}

fn message(id: &str, advertiser: &str, user: &str, kind: &str, at: &str) -> Value {
    let (direction, category) = match kind {
        "inbound" => ("inbound", None),
        "free_form" => ("outbound", None),
        _ => ("outbound", Some("utility")),
    };
    let kind = if kind == "template" {
        "template"
    } else {
        "free_form"
    };
    json!({"id": id, "advertiser_id": advertiser, "user": user, "direction": direction,
           "kind": kind, "category": category, "country": "IT", "at": at})
}

/// Everything the scenario left, as the API answers it. Arrays are sorted, so that an order
/// no contract fixes does not count as a difference.
async fn answers(app: &TestApp, inputs: &Value) -> Value {
    let keys: Vec<&str> = inputs["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    let mut invoices = Vec::new();
    for key in &keys {
        let res = app.get("/v1/invoices/2026-11", key).await;
        assert_eq!(res.status(), StatusCode::OK);
        invoices.push(res.json::<Value>().await.unwrap());
    }
    let mut reports = Vec::new();
    for (key, campaign) in [
        (keys[0], &inputs["chat"]),
        (keys[1], &inputs["capped"]),
        (keys[2], &inputs["hidden"]),
    ] {
        reports.push(app.report_totals(key, campaign.as_str().unwrap()).await);
    }
    let slots = app.slots("wa-user-1", Some("session-2"), 12).await;
    // A repeat of a recorded message answers its first rating.
    let (_, duplicate) = post(
        app,
        "/v1/messages",
        message(
            "late-in-2",
            inputs["chat_adv"].as_str().unwrap(),
            "late",
            "inbound",
            "2026-11-26T02:00:00Z",
        ),
    )
    .await;
    canonical(json!({
        "access": [access(app, "wa-user-1").await, access(app, "wa-user-2").await,
                   access(app, "late").await],
        "invoices": invoices,
        "reports": reports,
        "slots": crate::support::app::campaigns_of(&slots),
        "duplicate": duplicate,
    }))
}

fn canonical(value: Value) -> Value {
    match value {
        Value::Array(items) => {
            let mut items: Vec<Value> = items.into_iter().map(canonical).collect();
            items.sort_by_key(|v| v.to_string());
            Value::Array(items)
        }
        Value::Object(map) => {
            Value::Object(map.into_iter().map(|(k, v)| (k, canonical(v))).collect())
        }
        other => other,
    }
}

/// A late reply after the scenario, rated by the lapsed window the stored conversation keeps.
async fn late_reply(app: &TestApp, inputs: &Value) -> Value {
    let (status, body) = post(
        app,
        "/v1/messages",
        message(
            "late-reply",
            inputs["chat_adv"].as_str().unwrap(),
            "late",
            "free_form",
            "2026-11-25T12:00:00Z",
        ),
    )
    .await;
    json!({"status": status.as_u16(), "reason": body["reason"], "window_expires_at": body["window_expires_at"]})
}

/// The scenario: everything `a_user_who_did_everything` does; a second user served, rendered
/// and erased (the embedded backend compacts at an erasure, so a snapshot is written); then,
/// in the journal after it, a conversation whose first window lapsed 2 h before the second
/// opened.
async fn scenario(app: &TestApp) -> Value {
    let Activity {
        chat,
        capped,
        hidden,
        chat_adv,
        keys,
        ..
    } = a_user_who_did_everything(app).await;
    let slots = app.slots("wa-user-2", None, 12).await;
    let token = crate::support::app::token_of(&slots[0]);
    assert_eq!(app.events(&[(&token, "render")]).await, vec!["accepted"]);
    assert_eq!(erase(app, "wa-user-2").await["erased"], true);
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
    json!({"chat": chat, "capped": capped, "hidden": hidden, "chat_adv": chat_adv, "keys": keys})
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
    if mode == "all" {
        let app = spawn_app(Backend::Embedded).await;
        let inputs = scenario(&app).await;
        std::fs::create_dir_all(&dir).unwrap();
        let data_dir = app.state.data_dir.clone();
        // A consistent copy of the record while the app runs; the journal and snapshot are
        // only written by changes, and none is in flight.
        let sqlite = dir.join(statusads::record::SQLITE_FILE);
        let _ = std::fs::remove_file(&sqlite);
        vacuum_into(&data_dir.join(statusads::record::SQLITE_FILE), &sqlite).await;
        for file in &FILES[..2] {
            std::fs::copy(data_dir.join(file), dir.join(file)).unwrap();
        }
        std::fs::write(
            dir.join("inputs.json"),
            serde_json::to_string_pretty(&inputs).unwrap() + "\n",
        )
        .unwrap();
    }
    let inputs: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("inputs.json")).unwrap()).unwrap();
    let reopened = open_copy().await;
    let expected = json!({
        "answers": answers(&reopened.0, &inputs).await,
        "late_reply": late_reply(&reopened.0, &inputs).await,
    });
    std::fs::write(
        dir.join("answers.json"),
        serde_json::to_string_pretty(&expected).unwrap() + "\n",
    )
    .unwrap();
}

async fn vacuum_into(from: &Path, to: &Path) {
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", from.display()))
        .await
        .unwrap();
    sqlx::query(&format!("VACUUM INTO '{}'", to.display()))
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
    let dir = copy.path().to_path_buf();
    let app = spawn_app_with(Backend::Embedded, move |s| s.store.data_dir = dir).await;
    (app, copy)
}

/// This build opens the data dir an earlier one wrote and answers what it answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_data_dir_of_an_earlier_build_answers_as_it_did() {
    let inputs: Value =
        serde_json::from_str(&std::fs::read_to_string(golden_dir().join("inputs.json")).unwrap())
            .unwrap();
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(golden_dir().join("answers.json")).unwrap())
            .unwrap();
    let (app, _copy) = open_copy().await;
    let found = json!({
        "answers": answers(&app, &inputs).await,
        "late_reply": late_reply(&app, &inputs).await,
    });
    assert_eq!(found, expected);
    // What the files hold is what this build reads, not empty state answering alike.
    assert!(expected["answers"]["access"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["records"].as_u64().unwrap() > 0));
    assert_eq!(expected["late_reply"]["reason"], "service_window");
}
