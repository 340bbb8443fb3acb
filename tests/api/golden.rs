//! Data dirs of the embedded backend, each as one build wrote it, kept in `tests/golden/`:
//! `embedded/` by the builds to 2026-12-03 (an entry per operation, applied by their own copy
//! of the rules; this build translates it once), `embedded-commands/` by the builds since (the
//! writes of the Redis scripts, run on the in-process Redis). Each holds the snapshot, the journal after it (a decision, events, a
//! conversion, messages and a delivery status; one charged message whose ledger record the
//! SQLite copy does not hold yet, so the outbox must replay), the SQLite record, and
//! `inputs.json` (what the scenario created: advertiser keys, campaigns, a rendered token).
//! Every later build must open a copy and answer what that build answered (`answers.json`):
//! access, caps, spend, dedupe of a rendered token and of messages, invoices, reports, what is
//! served, and a late reply rated by a lapsed window. A change to the journal's, snapshot's or
//! record's readers that loses or changes any of it fails here.
//!
//! The answers rest on the test harness's clock start ([`GOLDEN_NOW`]), signing key and shard
//! count, and on `Settings::defaults()` (rule sets, ad load, reserve): a change of those is an
//! intended change of the answers. The files are written on purpose only, by the ignored `write` below (`cargo test --test api
//! golden::write -- --ignored` with `STATUSADS_WRITE_GOLDEN` set):
//! - `answers`: an intended change of an answer. `answers.json` is written again from the kept
//!   data files, read by this build.
//! - `all`: the data files of this build's form (`embedded-commands/`) too, from this build's
//!   scenario. The earlier form's files are never written again; they leave the test only once
//!   no deployment can hold them.

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

/// The kept data dirs, oldest form first; this build writes the last.
const FORMS: [&str; 2] = ["embedded", "embedded-commands"];

fn golden_dir(form: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(form)
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

/// The scenario's messages: (id, advertiser in `inputs.json`, user, kind, at).
const MESSAGES: [(&str, &str, &str, &str, &str); 6] = [
    (
        "in-1",
        "chat_adv",
        "wa-user-1",
        "inbound",
        "2026-11-26T10:05:00Z",
    ),
    (
        "tpl-1",
        "hidden_adv",
        "wa-user-1",
        "marketing",
        "2026-11-26T10:05:00Z",
    ),
    (
        "sent-3",
        "hidden_adv",
        "wa-user-3",
        "marketing",
        "2026-11-26T10:03:00Z",
    ),
    (
        "tpl-3",
        "hidden_adv",
        "wa-user-3",
        "marketing",
        "2026-11-26T10:06:00Z",
    ),
    (
        "late-in-1",
        "chat_adv",
        "late",
        "inbound",
        "2026-11-25T00:00:00Z",
    ),
    (
        "late-in-2",
        "chat_adv",
        "late",
        "inbound",
        "2026-11-26T02:00:00Z",
    ),
];

/// Until the exporter has caught up with now (one call gives up after 2 s).
async fn exported(app: &TestApp) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while app.state.exporter.caught_up().await < app.clock.now_ms() {
        assert!(
            std::time::Instant::now() < deadline,
            "the exporter never caught up"
        );
    }
}

/// How many ledger records of message `id` a SQLite record file holds.
async fn records_of_message(file: &Path, id: &str) -> i64 {
    use sqlx::Connection;
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(file)
        .read_only(true);
    let mut conn = sqlx::SqliteConnection::connect_with(&options)
        .await
        .unwrap();
    sqlx::query_scalar("SELECT COUNT(*) FROM ledger_records WHERE id LIKE ?")
        .bind(format!("msg:%:{id}"))
        .fetch_one(&mut conn)
        .await
        .unwrap()
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
    exported(app).await;
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
    // Every message recorded, sent again as it was.
    let mut messages = serde_json::Map::new();
    for (id, advertiser, user, kind, at) in MESSAGES {
        let mut body = message(id, text(&inputs[advertiser]), user, kind, at);
        if id == "sent-3" {
            body["delivery"] = json!("sent");
        }
        messages.insert(id.into(), post(app, "/v1/messages", body).await.1);
    }
    let (_, settled_again) = post(
        app,
        "/v1/messages/sent-3/status",
        json!({"advertiser_id": text(&inputs["hidden_adv"]), "status": "delivered",
               "at": "2026-11-26T10:04:00Z"}),
    )
    .await;
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
    let mut served_again = campaigns_of(&app.slots("wa-user-1", Some("session-2"), 12).await);
    served_again.sort();
    let mut served_new = campaigns_of(&app.slots("wa-user-9", None, 12).await);
    served_new.sort();
    json!({
        "users": users,
        "invoices": invoices,
        "campaigns": campaigns,
        "reports": reports,
        "rendered_again": rendered_again,
        "messages": messages,
        "settled_again": settled_again,
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
    let (_, _, user, kind, at) = MESSAGES[2];
    let mut sent = message("sent-3", &hidden_adv, user, kind, at);
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
    for (id, _, user, kind, at) in &MESSAGES[4..] {
        let (status, _) = post(app, "/v1/messages", message(id, &chat_adv, user, kind, at)).await;
        assert_eq!(status, StatusCode::OK, "{id}");
    }
    exported(app).await;
    let sqlite = dir.join(statusads::record::SQLITE_FILE);
    let _ = std::fs::remove_file(&sqlite);
    vacuum_into(
        &app.state.data_dir.join(statusads::record::SQLITE_FILE),
        &sqlite,
    )
    .await;
    let (_, _, user, kind, at) = MESSAGES[3];
    let template = message("tpl-3", &hidden_adv, user, kind, at);
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
    // `all` writes this build's form; `answers` rewrites each form's answers.
    for form in if mode == "all" {
        &FORMS[1..]
    } else {
        &FORMS[..]
    } {
        write_form(form, &mode).await;
    }
}

async fn write_form(form: &str, mode: &str) {
    // Everything is written to a staging dir first, and moved in once checked.
    let staging = ScratchDir::new("golden-staging");
    let live = if mode == "all" {
        let app = embedded(None).await;
        let inputs = scenario(&app, staging.path()).await;
        // The journal and snapshot change only with the writes above, all answered.
        for file in &FILES[..2] {
            std::fs::copy(app.state.data_dir.join(file), staging.path().join(file)).unwrap();
        }
        std::fs::write(
            staging.path().join("inputs.json"),
            serde_json::to_string_pretty(&inputs).unwrap() + "\n",
        )
        .unwrap();
        let journal = std::fs::read_to_string(staging.path().join("journal.log")).unwrap();
        let mut ops: Vec<String> = journal
            .lines()
            .map(|line| {
                let json: Value = serde_json::from_str(line.split_once(' ').unwrap().1).unwrap();
                json["op"].as_str().unwrap().to_owned()
            })
            .collect();
        ops.sort();
        ops.dedup();
        assert_eq!(ops, ["commands", "generation"]);
        assert!(
            journal.contains("\"XADD\""),
            "ledger records written after the snapshot are in the journal"
        );
        Some(answers(&app, &inputs).await)
    } else {
        for file in FILES.iter().chain(&["inputs.json"]) {
            std::fs::copy(golden_dir(form).join(file), staging.path().join(file)).unwrap();
        }
        None
    };
    let inputs: Value =
        serde_json::from_str(&std::fs::read_to_string(staging.path().join("inputs.json")).unwrap())
            .unwrap();
    let (reopened, _copy) = open_copy_of(staging.path()).await;
    let expected = answers(&reopened, &inputs).await;
    // What this build reads back is what it answered before it stopped.
    if let Some(live) = live {
        assert_eq!(expected, live);
    }
    check(&expected, staging.path()).await;
    std::fs::write(
        staging.path().join("answers.json"),
        serde_json::to_string_pretty(&expected).unwrap() + "\n",
    )
    .unwrap();
    std::fs::create_dir_all(golden_dir(form)).unwrap();
    for file in FILES.iter().chain(&["inputs.json", "answers.json"]) {
        std::fs::copy(staging.path().join(file), golden_dir(form).join(file)).unwrap();
    }
}

/// What the answers must show whatever this build reads (so that a regeneration cannot write
/// a loss into them), and that the record file lacks the message only the journal holds.
async fn check(expected: &Value, dir: &Path) {
    assert_eq!(expected["rendered_again"], json!(["duplicate"]));
    assert_eq!(expected["late_reply"]["reason"], "service_window");
    for (id, ..) in MESSAGES {
        assert_eq!(expected["messages"][id]["status"], "duplicate", "{id}");
    }
    assert_eq!(expected["messages"]["sent-3"]["billing"], "final");
    assert_eq!(expected["settled_again"]["status"], "duplicate");
    let messages_line = expected["invoices"][2]["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|line| line["kind"] == "messages")
        .cloned()
        .unwrap();
    assert_eq!(messages_line["quantity"], 3, "tpl-1, sent-3 and tpl-3");
    let third = &expected["users"]["wa-user-3"];
    assert_eq!(third["clicks"][0]["conversation_started"], true);
    assert_eq!(third["suppressions"].as_array().unwrap().len(), 1);
    for name in ["chat", "capped", "hidden"] {
        assert!(
            expected["campaigns"][name]["spend"]["total_micros"]
                .as_i64()
                .unwrap()
                > 0
        );
    }
    let sqlite = dir.join(statusads::record::SQLITE_FILE);
    assert_eq!(records_of_message(&sqlite, "tpl-3").await, 0);
    assert_eq!(records_of_message(&sqlite, "tpl-1").await, 1);
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
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

/// An app on a copy of the data dir in `dir` (opening may replay, compact and migrate it).
async fn open_copy_of(dir: &Path) -> (TestApp, ScratchDir) {
    let copy = ScratchDir::new("golden");
    for file in FILES {
        std::fs::copy(dir.join(file), copy.path().join(file)).unwrap();
    }
    let app = embedded(Some(copy.path().to_path_buf())).await;
    (app, copy)
}

/// Whether every file of the data dir in `dir` is in this build's form.
fn in_this_form(dir: &Path) -> bool {
    let journal = std::fs::read_to_string(dir.join("journal.log")).unwrap();
    let snapshot = std::fs::read_to_string(dir.join("snapshot.json")).unwrap_or_default();
    journal.lines().all(|line| {
        let json: Value = serde_json::from_str(line.split_once(' ').unwrap().1).unwrap();
        ["commands", "generation"].contains(&json["op"].as_str().unwrap())
    }) && (snapshot.is_empty() || !snapshot.contains("\"state\""))
}

/// This build opens the data dir each form was written in and answers what the build that
/// wrote it answered; an earlier form is then in this build's form, and the snapshot it was
/// translated into answers the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_data_dir_of_an_earlier_build_answers_as_it_did() {
    for form in FORMS {
        let dir = golden_dir(form);
        let (expected, inputs) = (
            read_json(&dir.join("answers.json")),
            read_json(&dir.join("inputs.json")),
        );
        check(&expected, &dir).await;
        let (app, copy) = open_copy_of(&dir).await;
        // Translated at open, before anything ran: the snapshot then holds everything.
        let translated = ScratchDir::new("golden-translated");
        if form != FORMS[FORMS.len() - 1] {
            std::fs::copy(
                copy.path().join("snapshot.json"),
                translated.path().join("snapshot.json"),
            )
            .unwrap();
        }
        assert_eq!(answers(&app, &inputs).await, expected, "{form}");
        assert!(
            in_this_form(copy.path()),
            "{form}: the files are in this build's form"
        );
        if form != FORMS[FORMS.len() - 1] {
            // That snapshot alone, with the record as it was, answers the same (a restart
            // after the translation reads only this build's form).
            let record = statusads::record::SQLITE_FILE;
            std::fs::copy(dir.join(record), translated.path().join(record)).unwrap();
            let again = embedded(Some(translated.path().to_path_buf())).await;
            assert_eq!(
                answers(&again, &inputs).await,
                expected,
                "{form}, translated"
            );
        }
    }
}

/// A click id an earlier embedded build gave an advertiser names the shard it used then
/// (`store.shards`); this build keeps the click in its one shard and still knows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_click_id_from_an_earlier_build_still_converts() {
    let dir = golden_dir(FORMS[0]);
    let journal = std::fs::read_to_string(dir.join("journal.log")).unwrap();
    let click_id = journal
        .split("\"click_id\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the earlier journal holds a conversion");
    assert!(
        !click_id.starts_with("c0."),
        "issued on another shard: {click_id}"
    );
    let chat_adv = read_json(&dir.join("inputs.json"))["chat_adv"]
        .as_str()
        .unwrap()
        .to_owned();
    let (app, _copy) = open_copy_of(&dir).await;
    let at = "2026-11-26T10:00:30Z";
    assert_eq!(
        app.convert(&chat_adv, click_id, "conversation_started", at)
            .await,
        "duplicate",
        "its conversation was reported before the upgrade"
    );
    assert_eq!(
        app.convert(&chat_adv, click_id, "message", at).await,
        "accepted"
    );
}
