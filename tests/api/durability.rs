//! What the service writes to its own files is never lost behind a failed answer or silently
//! cut: damaged journal and spool lines stop the start (naming file and offset) until an
//! operator quarantines them, and a batch answered 503 recorded nothing.

use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::app::{spawn_app_on, token_of, Api, TestApp, CLIENT};
use crate::support::failing_fsync::FailingFsync;
use crate::support::redis_server::RedisServer;
use crate::support::service::{ServiceProcess, Until};
use crate::support::small_disk::SmallDisk;
use crate::support::{spawn_app_with, Backend};

/// A sponsorship campaign without caps: every new user gets one slot of it.
async fn live(api: &Api) -> (String, String) {
    let (_, key) = api.advertiser("Durable").await;
    let campaign = api
        .live_campaign(
            &key,
            json!({"priority": "sponsorship", "bid_cpm_micros": 2_000_000}),
        )
        .await;
    (key, campaign)
}

async fn tokens(api: &Api, prefix: &str, count: usize) -> Vec<String> {
    let mut tokens = Vec::new();
    for user in 0..count {
        let slots = api.slots(&format!("{prefix}{user}"), None, 12).await;
        tokens.push(slots[0]["token"].as_str().unwrap().to_owned());
    }
    tokens
}

/// Changes one digit inside the record of the middle line among those containing `needle`;
/// returns that line's byte offset.
fn damage_a_middle_line(path: &Path, needle: &str) -> usize {
    let text = std::fs::read_to_string(path).unwrap();
    let mut offset = 0;
    let mut candidates = Vec::new();
    for line in text.split_inclusive('\n') {
        if line.contains(needle) {
            candidates.push((offset, line.len()));
        }
        offset += line.len();
    }
    assert!(
        candidates.len() >= 3,
        "{} lines with {needle}",
        candidates.len()
    );
    let (at, len) = candidates[candidates.len() / 2];
    let mut bytes = text.into_bytes();
    // A digit of the JSON (after the 9-byte checksum prefix): the line still looks whole.
    let digit = (at + 9..at + len)
        .find(|&i| bytes[i].is_ascii_digit())
        .unwrap();
    bytes[digit] = if bytes[digit] == b'9' {
        b'1'
    } else {
        bytes[digit] + 1
    };
    std::fs::write(path, bytes).unwrap();
    at
}

/// The per-event results of posting `batch`.
async fn results(api: &Api, batch: Value) -> Value {
    let body: Value = api
        .post("/v1/events", CLIENT, batch)
        .await
        .json()
        .await
        .unwrap();
    body["results"].clone()
}

fn rendered(totals: &Value) -> u64 {
    totals["rendered"].as_u64().unwrap()
}

/// A batch rendering each of `tokens`.
fn renders(tokens: &[String]) -> Value {
    json!({"events": tokens
        .iter()
        .map(|token| json!({"token": token, "type": "render"}))
        .collect::<Vec<_>>()})
}

/// `tokens` as the renders [`Api::events`] takes.
fn as_renders(tokens: &[String]) -> Vec<(&str, &str)> {
    tokens.iter().map(|t| (t.as_str(), "render")).collect()
}

/// The real binary on `redis_url` (empty: the embedded backend) over a disk whose `calls` of
/// the file at `path` fail while `disk` says so, with a live campaign: the service and the
/// campaign's advertiser key and id.
async fn on_failing_disk(
    disk: &FailingFsync,
    redis_url: &str,
    path: &str,
    calls: &str,
) -> (ServiceProcess, String, String) {
    let env = disk.env(path, calls);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let service = ServiceProcess::start_configured(redis_url, Until::Ready, &env).await;
    let (key, campaign) = live(&service.api).await;
    (service, key, campaign)
}

/// One changed digit in the middle of `journal.log` with the real binary: the start is refused,
/// naming the file and offset, and the file is left as it was; `statusads quarantine` moves that
/// line aside and keeps every later record (renders, an advertiser created afterwards).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_journal_line_stops_the_start_and_quarantine_keeps_every_later_record() {
    let mut service = ServiceProcess::start("").await;
    let (key, campaign) = live(&service.api).await;
    let tokens = tokens(&service.api, "j", 30).await;
    for token in &tokens {
        assert_eq!(service.api.render(token).await, "accepted");
    }
    let (_, later_key) = service.api.advertiser("Created after the damage").await;
    // The report waits for the exporter: every render is in the record before the damage.
    assert_eq!(
        rendered(&service.api.report_totals(&key, &campaign).await),
        30
    );

    let journal = service.data_dir().join("journal.log");
    // A line of a render: the events script's writes, its ledger record among them.
    let offset = damage_a_middle_line(&journal, r#""XADD""#);
    let damaged = std::fs::read(&journal).unwrap();
    let stderr = service.restart_expecting_failure();
    assert!(stderr.contains("journal.log"), "{stderr}");
    assert!(stderr.contains(&format!("byte {offset}")), "{stderr}");
    assert!(stderr.contains("statusads quarantine"), "{stderr}");
    assert_eq!(std::fs::read(&journal).unwrap(), damaged, "nothing was cut");

    let out = service.run(&["quarantine", journal.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(&format!("at byte {offset}")), "{stdout}");
    let aside = std::fs::read(service.data_dir().join("journal.log.quarantine")).unwrap();
    assert!(!aside.is_empty());

    service.restart().await;
    let api = &service.api;
    // The one quarantined entry held one render: the hot state lost it (its token renders
    // again below), the record, which already held it, did not.
    assert_eq!(rendered(&api.report_totals(&key, &campaign).await), 30);
    let statuses: Vec<String> = {
        let mut out = Vec::new();
        for token in &tokens {
            out.push(api.render(token).await);
        }
        out
    };
    assert_eq!(statuses.iter().filter(|s| *s == "duplicate").count(), 29);
    assert_eq!(statuses.iter().filter(|s| *s == "accepted").count(), 1);
    assert_eq!(
        rendered(&api.report_totals(&key, &campaign).await),
        30,
        "the render accepted again is the same record: counted once"
    );
    let res = api.get("/v1/campaigns", &later_key).await;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "a later advertiser keeps its key"
    );
}

/// One changed digit in the middle of `spool.log` with the real binary: the start is refused
/// (never "replayed" up to the damage and emptied); after `statusads quarantine` every intact
/// spooled render is replayed and counted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_spool_line_stops_the_start_and_quarantine_replays_every_later_batch() {
    let mut redis = RedisServer::start_durable();
    let mut service = ServiceProcess::start(&redis.url()).await;
    let (key, campaign) = live(&service.api).await;
    let tokens = tokens(&service.api, "s", 30).await;
    redis.kill();
    for token in &tokens {
        assert_eq!(service.api.render(token).await, "accepted", "spooled");
    }
    // Stopped before the damage: a drain of the running service that read the spool intact
    // just before it could otherwise replay and empty it once Redis is back.
    service.kill9();
    let spool = service.data_dir().join("spool.log");
    let offset = damage_a_middle_line(&spool, r#""kind":"render""#);
    redis.restart();
    let stderr = service.restart_expecting_failure();
    assert!(stderr.contains("spool.log"), "{stderr}");
    assert!(stderr.contains(&format!("byte {offset}")), "{stderr}");

    let out = service.run(&["quarantine", spool.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    service.restart().await;
    let api = &service.api;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while rendered(&api.report_totals(&key, &campaign).await) < 29 {
        assert!(std::time::Instant::now() < deadline, "the spool replays");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut accepted = 0;
    for token in &tokens {
        if api.render(token).await == "accepted" {
            accepted += 1;
        }
    }
    assert_eq!(accepted, 1, "only the quarantined render was not counted");
    assert_eq!(rendered(&api.report_totals(&key, &campaign).await), 30);
}

/// Sends `tokens` as renders in batches of `size`; returns each batch and its HTTP status.
async fn send_batches(api: &Api, tokens: &[String], size: usize) -> Vec<(Vec<String>, StatusCode)> {
    let mut out = Vec::new();
    for batch in tokens.chunks(size) {
        let res = api.post("/v1/events", CLIENT, renders(batch)).await;
        out.push((batch.to_vec(), res.status()));
    }
    out
}

/// Resends every batch: those acknowledged before are all `duplicate`, those answered 503 are
/// all `accepted` (nothing of them had been recorded).
async fn assert_503_recorded_nothing(api: &Api, sent: &[(Vec<String>, StatusCode)]) {
    for (batch, status) in sent {
        let again = api.events(&as_renders(batch)).await;
        let expected = match *status {
            StatusCode::OK => "duplicate",
            StatusCode::SERVICE_UNAVAILABLE => "accepted",
            other => panic!("unexpected answer {other}"),
        };
        assert!(
            again.iter().all(|s| s == expected),
            "a batch answered {status} was {again:?} on retry"
        );
    }
}

async fn ready(api: &Api) -> StatusCode {
    api.http
        .get(api.url("/readyz"))
        .send()
        .await
        .unwrap()
        .status()
}

/// Embedded journal on a full disk: batches spanning many shards are answered 200 (all
/// recorded) or 503 (none recorded); `/readyz` says so while the disk is full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_full_disk_a_batch_answered_503_recorded_nothing() {
    let disk = SmallDisk::mount(4 << 20);
    let data_dir = disk.path().join("data");
    let app = spawn_app_with(Backend::Embedded, |s| s.store.data_dir = data_dir.clone()).await;
    let (key, campaign) = live(&app).await;
    let tokens = tokens(&app, "d", 400).await;
    assert_eq!(ready(&app).await, StatusCode::OK);

    disk.fill();
    let sent = send_batches(&app, &tokens, 10).await;
    let refused = sent
        .iter()
        .filter(|(_, s)| *s == StatusCode::SERVICE_UNAVAILABLE)
        .count();
    assert!(refused > 0, "the disk filled up: {refused} batches refused");
    assert_eq!(ready(&app).await, StatusCode::SERVICE_UNAVAILABLE);

    disk.free();
    assert_eq!(ready(&app).await, StatusCode::OK);
    assert_503_recorded_nothing(&app, &sent).await;
    assert_eq!(rendered(&app.report_totals(&key, &campaign).await), 400);
}

/// The embedded journal's fsync fails (the real binary, on a disk that fails syncs on demand):
/// the batch whose line that sync was to cover is answered 503, everything is refused from then
/// on, even once the disk is well again, and `/readyz` names the journal. After a restart the
/// batch has left nothing: what was acknowledged before is all there and counted once, and the
/// batch sent again counts once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_journal_fsync_answers_503_and_the_restart_keeps_only_what_was_acknowledged() {
    let disk = FailingFsync::build();
    // The group commit's `fdatasync` fails; the cut back to the synced length (`fsync`) works.
    let (mut service, key, campaign) =
        on_failing_disk(&disk, "", "/journal.log", "fdatasync").await;
    let tokens = tokens(&service.api, "f", 10).await;
    let (before, during) = tokens.split_at(5);
    for token in before {
        assert_eq!(service.api.render(token).await, "accepted");
    }
    // The report waits for the exporter: the five are in the record before the failure.
    assert_eq!(
        rendered(&service.api.report_totals(&key, &campaign).await),
        5
    );

    disk.fail();
    let batch = renders(during);
    let res = service.api.post("/v1/events", CLIENT, batch.clone()).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    let ready = service
        .api
        .http
        .get(service.api.url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let reason = ready.text().await.unwrap();
    assert!(reason.contains("journal"), "{reason}");
    disk.heal();
    let again = service.api.post("/v1/events", CLIENT, batch).await;
    assert_eq!(
        again.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "refused until a restart"
    );
    assert!(
        service
            .log()
            .contains("journal fsync failed; unsynced lines cut off"),
        "{}",
        service.log()
    );

    service.restart().await;
    let api = &service.api;
    assert_eq!(
        rendered(&api.report_totals(&key, &campaign).await),
        5,
        "the batch answered 503 recorded nothing"
    );
    assert_eq!(
        api.events(&as_renders(during)).await,
        vec!["accepted"; 5],
        "sent again, counted now"
    );
    for token in before {
        assert_eq!(api.render(token).await, "duplicate");
    }
    assert_eq!(rendered(&api.report_totals(&key, &campaign).await), 10);
}

/// The outage spool's fsync fails while Redis is away (the real binary, on a disk that fails
/// syncs on demand): the batch is answered 503 and the spool, whose cut-back could not be synced
/// either, takes no more until a restart, even once the disk is well. After the restart, with
/// Redis back, neither batch answered 503 had been recorded: each counts once when sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_spool_fsync_answers_503_and_records_nothing() {
    let disk = FailingFsync::build();
    let mut redis = RedisServer::start_durable();
    // The append's `fdatasync` fails, and so does the `fsync` of its cut-back.
    let (mut service, key, campaign) =
        on_failing_disk(&disk, &redis.url(), "/spool.log", "fsync,fdatasync").await;
    let tokens = tokens(&service.api, "s", 4).await;
    assert_eq!(service.api.render(&tokens[0]).await, "accepted");

    redis.kill();
    disk.fail();
    let res = service
        .api
        .post("/v1/events", CLIENT, renders(&tokens[1..3]))
        .await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    disk.heal();
    let res = service
        .api
        .post("/v1/events", CLIENT, renders(&tokens[3..]))
        .await;
    assert_eq!(
        res.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "a spool whose cut-back was not synced takes nothing more"
    );
    let log = service.log();
    assert!(
        log.contains("cannot write the outage spool: Input/output error"),
        "the first refusal is the failed sync: {log}"
    );
    assert!(
        log.contains("the outage spool takes no events: outage spool damaged by a failed write"),
        "the second names the damage: {log}"
    );

    redis.restart();
    service.restart().await;
    let api = &service.api;
    assert_eq!(
        api.events(&as_renders(&tokens)).await,
        ["duplicate", "accepted", "accepted", "accepted"],
        "only the render acknowledged before was recorded"
    );
    assert_eq!(rendered(&api.report_totals(&key, &campaign).await), 4);
}

/// The bytes one spooled render takes (a batch of one event), measured on a throwaway app.
async fn spooled_render_bytes() -> u64 {
    let mut app = spawn_app_on(Some(RedisServer::start()), |_| {}).await;
    live(&app).await;
    let token = tokens(&app, "m", 1).await.remove(0);
    app.redis.as_mut().unwrap().kill();
    assert_eq!(app.render(&token).await, "accepted");
    std::fs::metadata(app._data_dir.path().join("spool.log"))
        .unwrap()
        .len()
}

/// Redis down and the spool filling up: a batch of ten users on ten shards is spooled whole or
/// refused whole, even when the spool has room for some of its shards; after Redis returns,
/// the refused batches were never counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_and_the_spool_full_a_batch_answered_503_recorded_nothing() {
    let line = spooled_render_bytes().await;
    // Room for two and a half single-event lines.
    let mut app = spawn_app_on(Some(RedisServer::start_durable()), |s| {
        s.store.spool_max_bytes = line * 5 / 2
    })
    .await;
    let (key, campaign) = live(&app).await;
    let shards = app.state.shards;
    let mut tokens = Vec::new();
    let mut used = std::collections::HashSet::new();
    for user in 0.. {
        let user = format!("f{user:03}");
        if used.insert(statusads::capping::shard_of(&user, shards)) {
            tokens.push(
                app.slots(&user, None, 12).await[0]["token"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
        if tokens.len() == 13 {
            break;
        }
    }
    app.redis.as_mut().unwrap().kill();
    // The first batch of the outage finds the spool empty, tries Redis and is spooled.
    let mut sent = send_batches(&app, &tokens[..1], 1).await;
    assert_eq!(sent[0].1, StatusCode::OK, "one line fits");
    sent.extend(send_batches(&app, &tokens[1..11], 10).await);
    assert_eq!(
        sent[1].1,
        StatusCode::SERVICE_UNAVAILABLE,
        "ten more lines do not fit, though one would"
    );
    sent.extend(send_batches(&app, &tokens[11..], 1).await);
    assert_eq!(sent[2].1, StatusCode::OK, "a second line fits");
    assert_eq!(
        sent[3].1,
        StatusCode::SERVICE_UNAVAILABLE,
        "a third does not"
    );
    app.redis.as_mut().unwrap().restart();
    app.wait_for_metrics("the spool replay", |m| {
        m.contains("statusads_spool_events 0")
    })
    .await;
    assert_503_recorded_nothing(&app, &sent).await;
    assert_eq!(rendered(&app.report_totals(&key, &campaign).await), 13);
}

/// `statusads quarantine` run by mistake while the service still serves: had it renamed a
/// rewritten copy over `journal.log`, the service would go on appending to the old, unlinked
/// file and acknowledge renders the next start no longer has. The service holds a lock on the
/// file, so the command refuses and every acknowledged render survives the restart (a second
/// service on the same `data_dir` is refused the same way).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarantine_while_the_service_runs_loses_nothing_acknowledged() {
    let mut service = ServiceProcess::start("").await;
    let (key, campaign) = live(&service.api).await;
    let tokens = tokens(&service.api, "q", 10).await;
    for token in &tokens[..5] {
        assert_eq!(service.api.render(token).await, "accepted");
    }
    let journal = service.data_dir().join("journal.log");
    let out = service.run(&["quarantine", journal.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("in use"),
        "{stderr}"
    );
    for token in &tokens[5..] {
        assert_eq!(service.api.render(token).await, "accepted");
    }
    service.restart().await;
    assert_eq!(
        rendered(&service.api.report_totals(&key, &campaign).await),
        10,
        "every acknowledged render is back after the restart"
    );
}

/// A slot token each for two users (named `prefix` and a number) on different shards, with
/// each one's shard.
async fn tokens_on_two_shards(app: &TestApp, prefix: &str) -> ((String, u32), (String, u32)) {
    let shards = app.state.shards;
    let first = format!("{prefix}0");
    let first_shard = statusads::capping::shard_of(&first, shards);
    let second = (1..)
        .map(|i| format!("{prefix}{i}"))
        .find(|u| statusads::capping::shard_of(u, shards) != first_shard)
        .unwrap();
    let second_shard = statusads::capping::shard_of(&second, shards);
    let token = |slots: Vec<Value>| slots[0]["token"].as_str().unwrap().to_owned();
    (
        (token(app.slots(&first, None, 12).await), first_shard),
        (token(app.slots(&second, None, 12).await), second_shard),
    )
}

/// Redis out of memory (`maxmemory`, noeviction) refuses a script at its first write that
/// needs memory, before it has changed anything: as in an outage, a batch spanning two shards
/// is spooled and acknowledged whole, and replayed once Redis has room. (Views: a render's
/// first write frees its reservation, which Redis allows, and the script then runs on.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_refused_for_memory_are_spooled_and_replayed() {
    let app = spawn_app_with(Backend::Redis, |_| {}).await;
    let (key, campaign) = live(&app).await;
    let ((a, _), (b, _)) = tokens_on_two_shards(&app, "m").await;
    assert_eq!(app.render(&a).await, "accepted");
    assert_eq!(app.render(&b).await, "accepted");
    let mut conn = app.redis.as_ref().unwrap().connection();
    let maxmemory = |conn: &mut redis::Connection, bytes: &str| {
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory")
            .arg(bytes)
            .query(conn)
            .unwrap();
    };
    maxmemory(&mut conn, "1");
    let views = json!({"events": [
        {"token": a, "type": "view"},
        {"token": b, "type": "view"},
    ]});
    let res = app.post("/v1/events", CLIENT, views.clone()).await;
    let status = res.status();
    let answer: Value = res.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        answer["results"],
        json!([{"status": "accepted"}, {"status": "accepted"}])
    );
    let metrics = app.metrics().await;
    assert!(metrics.contains("statusads_spool_events 2"), "{metrics}");
    // Decisions are refused too (nothing can be reserved), yet Redis answers at once: the
    // breaker stays closed, so the exporter keeps freeing the outbox.
    for user in 0..8 {
        assert!(app.slots(&format!("oom-{user}"), None, 12).await.is_empty());
    }
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("statusads_store_breaker_transitions_total{to=\"open\"} 0"),
        "{metrics}"
    );

    maxmemory(&mut conn, "0");
    app.wait_for_metrics("the spool replay", |m| {
        m.contains("statusads_spool_events 0") && m.contains("statusads_spool_replayed_total 2")
    })
    .await;
    let totals = app.report_totals(&key, &campaign).await;
    assert_eq!((rendered(&totals), totals["viewed"].as_u64()), (2, Some(2)));
    assert_eq!(
        results(&app, views).await,
        json!([{"status": "duplicate"}, {"status": "duplicate"}])
    );
}

/// A batch spanning two shards where Redis answers one shard with an error reply (here the
/// shard's outbox is a key of the wrong type, a keyspace damaged by hand; out of memory is an
/// outage, see above). That is no outage, so the batch is answered 500 and nothing is spooled
/// (a replay would fail the same way and hold every later batch behind it); the other shard's
/// script has run. The failed script wrote nothing that marks its render counted (an event's
/// record comes first), so once the key is mended a re-send finds the first render counted and
/// the second new: both are in the record, each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_reply_on_one_shard_leaves_a_retry_exact() {
    let app = spawn_app_with(Backend::Redis, |_| {}).await;
    let (key, campaign) = live(&app).await;
    let ((a, _), (b, second_shard)) = tokens_on_two_shards(&app, "p").await;
    let mut conn = app.redis.as_ref().unwrap().connection();
    let broken = format!("ledger:{{s{second_shard}}}");
    let _: () = redis::cmd("DEL").arg(&broken).query(&mut conn).unwrap();
    let _: () = redis::cmd("SET")
        .arg(&broken)
        .arg("not a stream")
        .query(&mut conn)
        .unwrap();
    let batch = json!({"events": [
        {"token": a, "type": "render"},
        {"token": b, "type": "render"},
    ]});
    let res = app.post("/v1/events", CLIENT, batch.clone()).await;
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "internal", "{body}");
    assert!(
        !body.to_string().contains("WRONGTYPE"),
        "no internals: {body}"
    );
    assert!(app.metrics().await.contains("statusads_spool_events 0\n"));

    let _: () = redis::cmd("DEL").arg(&broken).query(&mut conn).unwrap();
    assert_eq!(
        results(&app, batch).await,
        json!([{"status": "duplicate"}, {"status": "accepted"}])
    );
    let totals = app.report_totals(&key, &campaign).await;
    assert_eq!(
        (totals["rendered"].as_u64(), totals["spend_micros"].as_i64()),
        (Some(2), Some(4000)),
        "{totals}"
    );
    let renders = crate::support::postgres::ledger_records(&app.database_url)
        .await
        .into_iter()
        .filter(|r| r.kind == "render")
        .count();
    assert_eq!(renders, 2);
}

/// One part of the outboxes cannot be read (a shard of the first 64 holds a key of the wrong
/// type where its outbox belongs): the export goes on with the other parts, so a render on a
/// shard of the second is in the record and its report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_outbox_part_holds_up_only_itself() {
    let app = spawn_app_with(Backend::Redis, |s| s.store.shards = 128).await;
    let (key, campaign) = live(&app).await;
    let mut conn = app.redis.as_ref().unwrap().connection();
    let _: () = redis::cmd("SET")
        .arg("ledger:{s0}")
        .arg("damaged")
        .query(&mut conn)
        .unwrap();
    let late = (0..)
        .map(|i| format!("part-{i}"))
        .find(|u| statusads::capping::shard_of(u, 128) >= 64)
        .unwrap();
    let token = token_of(&app.slots(&late, None, 12).await[0]);
    assert_eq!(app.render(&token).await, "accepted");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while rendered(&app.report_totals(&key, &campaign).await) < 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the readable part was not exported"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(rendered(&app.report_totals(&key, &campaign).await), 1);
}

/// The embedded journal is compacted into a snapshot once long (4 KiB here): a `kill -9` and a
/// start afterwards read the snapshot and the short journal after it, and nothing moves: caps
/// still hold, every acknowledged render is in the record once, the invoice is unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_journal_restarts_to_the_same_state() {
    let started = time::OffsetDateTime::now_utc();
    let mut service = ServiceProcess::start_configured(
        "",
        crate::support::service::Until::Ready,
        &[("STATUSADS__STORE__JOURNAL_COMPACT_BYTES", "4096")],
    )
    .await;
    let api = &service.api;
    let (_, key) = api.advertiser("Compact").await;
    api.live_campaign(
        &key,
        json!({"priority": "sponsorship", "bid_cpm_micros": 2_000_000,
               "frequency_caps": [{"max": 1, "per_seconds": 86400}]}),
    )
    .await;
    let users = 40;
    for token in tokens(api, "compact-", users).await {
        assert_eq!(api.render(&token).await, "accepted");
    }
    let snapshot = service.data_dir().join("snapshot.json");
    let journal_len = || {
        std::fs::metadata(service.data_dir().join("journal.log"))
            .map(|m| m.len())
            .unwrap_or(0)
    };
    // Compacted, and the exporter's later rounds caught up with the renders since (a loaded
    // machine runs them late).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !snapshot.exists() || journal_len() >= 8192 {
        assert!(std::time::Instant::now() < deadline, "compacted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let months = crate::support::service::months_since(started);
    let (total, before) = api.invoices(&key, &months).await;
    assert_eq!(total, users as i64 * 2000);

    service.kill9();
    service.restart().await;
    let api = &service.api;
    let journal = std::fs::metadata(service.data_dir().join("journal.log")).unwrap();
    assert!(
        journal.len() < 8192,
        "journal begun again: {} bytes",
        journal.len()
    );
    for user in 0..users {
        assert!(
            api.slots(&format!("compact-{user}"), None, 12)
                .await
                .is_empty(),
            "the cap of compact-{user} survived compaction and restart"
        );
    }
    let (_, after) = api.invoices(&key, &months).await;
    assert_eq!(after, before, "each month's total and digest");
    let sqlite = format!(
        "sqlite://{}",
        service.data_dir().join("statusads.db").display()
    );
    let stored = crate::support::postgres::ledger_records(&sqlite).await;
    assert_eq!(
        stored.iter().filter(|r| r.kind == "render").count(),
        users,
        "each render once"
    );
    // New events after the restart still land.
    let fresh = tokens(api, "after-", 1).await;
    assert_eq!(api.render(&fresh[0]).await, "accepted");
}
