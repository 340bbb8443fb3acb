//! The system of record (PostgreSQL with Redis, SQLite embedded): campaign history, assets
//! served by every node, the one-time move of an earlier build's catalog out of the hot store,
//! and a database outage while serving.

use reqwest::StatusCode;
use serde_json::{json, Value};
use time::macros::datetime;

use crate::contract;
use crate::support::app::{portrait_png, spawn_app_on, token_of, ADMIN};
use crate::support::postgres::PostgresServer;
use crate::support::redis_server::RedisServer;
use crate::support::{spawn_app, Backend};

contract!(every_change_to_a_campaign_is_in_its_history);

/// A catalog write the record committed is answered as committed even when the node cannot
/// rebuild its snapshot right after (here another writer left a record it cannot read): an
/// error would have the client retry a write that happened, creating a second campaign.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_catalog_write_is_answered_even_when_the_snapshot_cannot_be_rebuilt() {
    use crate::support::postgres::{count, execute};
    let app = spawn_app(Backend::Embedded).await;
    let (_, key) = app.advertiser("Committed").await;
    execute(
        &app.database_url,
        &[
            "UPDATE catalog_version SET version = version + 1 WHERE id = 1",
            "INSERT INTO catalog_records (kind, id, version, json) \
             SELECT 'campaign', 'cmp_unreadable', version, '{' FROM catalog_version WHERE id = 1",
        ],
    )
    .await;
    let body = json!({"name": "Kept once", "bid_cpm_micros": 2_000_000,
        "budget": {"total_micros": 1_000_000_000}});
    let res = app.post("/v1/campaigns", &key, body).await;
    let status = res.status();
    let created: Value = res.json().await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["name"], "Kept once");
    // This node shows its own write (and builds its next edit on it) although its refresh
    // cannot read the record's changes.
    let id = created["id"].as_str().unwrap();
    let shown = app.get(&format!("/v1/campaigns/{id}"), &key).await;
    assert_eq!(shown.status(), StatusCode::OK);
    let stored = count(
        &app.database_url,
        "SELECT COUNT(*) FROM catalog_records WHERE kind = 'campaign' AND json LIKE '%Kept once%'",
    )
    .await;
    assert_eq!(stored, 1);
}

async fn every_change_to_a_campaign_is_in_its_history(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, key) = app.advertiser("Historian").await;
    let campaign = app
        .campaign(&key, json!({"bid_cpm_micros": 1_000_000}))
        .await;
    app.clock.set(datetime!(2026-11-26 11:00:00 UTC));
    let res = app
        .send(
            reqwest::Method::PATCH,
            &format!("/v1/campaigns/{campaign}"),
            Some(&key),
            Some(json!({"bid_cpm_micros": 1_500_000, "name": "Renamed"})),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    // A PATCH that changes nothing is no change.
    app.send(
        reqwest::Method::PATCH,
        &format!("/v1/campaigns/{campaign}"),
        Some(&key),
        Some(json!({"bid_cpm_micros": 1_500_000})),
    )
    .await;
    app.clock.set(datetime!(2026-11-26 12:00:00 UTC));
    app.send(
        reqwest::Method::DELETE,
        &format!("/v1/campaigns/{campaign}"),
        Some(&key),
        None,
    )
    .await;

    let res = app
        .get(&format!("/v1/campaigns/{campaign}/history"), &key)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let history: Value = res.json().await.unwrap();
    let changes = history["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 3, "{history}");
    assert_eq!(changes[0]["at"], "2026-11-26T10:00:00Z");
    assert_eq!(changes[0]["actor"], "advertiser");
    assert_eq!(
        changes[0]["fields"]["bid_cpm_micros"],
        json!({"from": null, "to": 1_000_000})
    );
    assert_eq!(changes[1]["at"], "2026-11-26T11:00:00Z");
    assert_eq!(
        changes[1]["fields"],
        json!({"bid_cpm_micros": {"from": 1_000_000, "to": 1_500_000},
               "name": {"from": "Campaign", "to": "Renamed"}})
    );
    assert_eq!(
        changes[2]["fields"],
        json!({"status": {"from": "active", "to": "archived"}})
    );
    let operator: Value = app
        .get(&format!("/v1/campaigns/{campaign}/history"), ADMIN)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(operator, history, "the operator reads it too");
    let (_, other) = app.advertiser("Other").await;
    let res = app
        .get(&format!("/v1/campaigns/{campaign}/history"), &other)
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

async fn upload(app: &crate::support::TestApp, key: &str) -> (String, Vec<u8>) {
    let campaign = app.campaign(key, json!({})).await;
    let png = portrait_png();
    let res = app
        .upload(
            key,
            &campaign,
            png.clone(),
            "ad.png",
            json!({"headline": "Everywhere"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let creative: Value = res.json().await.unwrap();
    (creative["asset"]["url"].as_str().unwrap().to_owned(), png)
}

/// Two nodes with separate data dirs on one deployment: an upload through one is served by the
/// other, byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_asset_uploaded_through_one_node_is_served_by_another() {
    let first = spawn_app(Backend::Redis).await;
    let url = first.redis.as_ref().unwrap().url();
    let second = spawn_app_on(None, |s| s.store.redis_url = url.into()).await;
    let (_, key) = first.advertiser("Two nodes").await;
    let (asset, png) = upload(&first, &key).await;
    let res = second.http.get(second.url(&asset)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    assert_eq!(res.bytes().await.unwrap().as_ref(), png.as_slice());
}

/// Embedded: the local asset cache is only a cache; with it gone the asset comes from SQLite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_asset_outlives_its_local_cache() {
    let app = spawn_app(Backend::Embedded).await;
    let (_, key) = app.advertiser("Cached").await;
    let (asset, png) = upload(&app, &key).await;
    std::fs::remove_dir_all(app._data_dir.path().join("assets")).unwrap();
    std::fs::create_dir_all(app._data_dir.path().join("assets")).unwrap();
    let res = app.http.get(app.url(&asset)).send().await.unwrap();
    assert_eq!(res.bytes().await.unwrap().as_ref(), png.as_slice());
}

/// A Redis that an earlier build kept the catalog in: the first start with a system of record
/// moves it there (keys work, campaigns list, history starts at creation), the records left in
/// its ledger streams are exported and billed once; later starts do not
/// move it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_earlier_builds_redis_catalog_moves_into_the_record() {
    let redis = RedisServer::start();
    let (advertiser, key) = statusads::domain::advertiser::NewAdvertiser {
        name: "From before".into(),
        chat_number: None,
        currency: "EUR".into(),
    }
    .into_advertiser(datetime!(2026-11-01 09:00:00 UTC), &Default::default())
    .unwrap();
    let mut conn = redis.connection();
    let _: () = redis::cmd("HSET")
        .arg("catalog:{catalog}:advertisers")
        .arg(advertiser.id.to_string())
        .arg(serde_json::to_string(&advertiser).unwrap())
        .query(&mut conn)
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg("catalog:{catalog}:version")
        .arg(1)
        .query(&mut conn)
        .unwrap();
    // A billed render that build left in its ledger stream (fields of that build only).
    let _: String = redis::cmd("XADD")
        .arg("ledger:{s3}")
        .arg("*")
        .arg(&[
            ("id", format!("{}:render", "a".repeat(32))),
            ("type", "render".into()),
            ("campaign", "cmp_00000000000000aa".into()),
            ("advertiser", advertiser.id.to_string()),
            ("price", "2500".into()),
            ("at_ms", "1795000000000".into()),
            ("client_at", String::new()),
        ])
        .query(&mut conn)
        .unwrap();
    let app = spawn_app_on(Some(redis), |_| {}).await;
    // It is billed from the record, once.
    let invoice: Value = app
        .get("/v1/invoices/2026-11", &key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(invoice["total_micros"], 2500, "{invoice}");
    let again: Value = app
        .get("/v1/invoices/2026-11", &key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["digest"], invoice["digest"]);
    let res = app.get("/v1/campaigns", &key).await;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "the earlier advertiser's key works"
    );
    let campaign = app.campaign(&key, json!({})).await;
    // Later catalog writes go to the record only.
    let mut conn = app.redis.as_ref().unwrap().connection();
    let stored: Option<String> = redis::cmd("HGET")
        .arg("catalog:{catalog}:campaigns")
        .arg(&campaign)
        .query(&mut conn)
        .unwrap();
    assert_eq!(stored, None);
}

/// PostgreSQL `kill -9`ed while serving: `/readyz` is 503 and catalog writes answer 503, while
/// decisions and events go on (they need only the hot store); when it is back, so is everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_while_serving_stops_catalog_writes_only() {
    let mut database = PostgresServer::start();
    let redis = RedisServer::start();
    let url = database.database_for(&redis.url());
    let app = spawn_app_on(Some(redis), move |s| s.store.database_url = url.into()).await;
    let (_, key) = app.advertiser("Outage").await;
    let campaign = app
        .live_campaign(
            &key,
            json!({"bid_cpm_micros": 2_000_000, "frequency_caps": []}),
        )
        .await;
    // Renders flow while PostgreSQL is killed (mid-export, for some of them) and stays away.
    let mut acknowledged = Vec::new();
    for user in 0..10 {
        if user == 3 {
            database.kill9();
        }
        let slots = app.slots(&format!("u{user}"), None, 12).await;
        assert_eq!(slots.len(), 1, "decisions need only the hot store");
        let token = slots[0]["token"].as_str().unwrap().to_owned();
        assert_eq!(app.render(&token).await, "accepted");
        acknowledged.push(token);
    }

    let ready = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let res = app
        .post("/v1/campaigns", &key, json!({"name": "Later", "bid_cpm_micros": 1_000_000, "budget": {"total_micros": 10_000_000}}))
        .await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = res.text().await.unwrap();
    assert!(
        !body.contains("127.0.0.1") && !body.contains("postgres"),
        "{body}"
    );
    // The outbox holds what could not be exported, and the lag shows it.
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let metrics = app.http.get(app.url("/metrics")).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(
        !metrics.contains("statusads_export_failures_total 0"),
        "{metrics}"
    );

    database.restart();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let ready = app.http.get(app.url("/readyz")).send().await.unwrap();
        if ready.status() == StatusCode::OK {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "ready again");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    app.campaign(&key, json!({"name": "After"})).await;
    // Everything acknowledged reached the record once, and the invoice is exactly it.
    let invoice: Value = app
        .get("/v1/invoices/2026-11", &key)
        .await
        .json()
        .await
        .unwrap();
    let stored = crate::support::postgres::ledger_records(&app.database_url).await;
    assert_eq!(stored.len(), acknowledged.len(), "{stored:?}");
    let billed: i64 = stored.iter().map(|r| r.amount_micros).sum();
    assert!(billed > 0);
    assert_eq!(invoice["total_micros"], billed);
    assert_eq!(app.report_totals(&key, &campaign).await["rendered"], 10);
}

/// A long outbox backlog (the record away for a while under traffic) is exported in bounded
/// reads, a group of shards at a time: the export catches up, and the store's breaker, which
/// guards decisions, never opens. (One read of every shard's page used to move the whole
/// backlog at once, past the request deadline: each retry timed out and opened the breaker.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_outbox_backlog_is_exported_while_decisions_go_on() {
    let mut database = PostgresServer::start();
    let redis = RedisServer::start();
    let url = database.database_for(&redis.url());
    let app = spawn_app_on(Some(redis), move |s| {
        s.store.database_url = url.into();
        s.store.shards = 1024;
    })
    .await;
    let (_, key) = app.advertiser("Backlog").await;
    app.live_campaign(
        &key,
        json!({"bid_cpm_micros": 2_000_000, "frequency_caps": []}),
    )
    .await;
    database.kill9();
    // A real record, then copies of it in every shard's outbox: 61,440 records waiting.
    let slots = app.slots("backlog-user", None, 12).await;
    assert_eq!(app.render(&token_of(&slots[0])).await, "accepted");
    let mut conn = app.redis.as_ref().unwrap().connection();
    let fields: Vec<String> = (0..1024)
        .find_map(|shard| {
            let page: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
                .arg(format!("ledger:{{s{shard}}}"))
                .arg("-")
                .arg("+")
                .arg("COUNT")
                .arg(1)
                .query(&mut conn)
                .unwrap();
            page.into_iter().next().map(|(_, fields)| fields)
        })
        .expect("the render's record waits in its shard's outbox");
    let mut pipe = redis::pipe();
    for shard in 0..1024 {
        for _ in 0..60 {
            pipe.cmd("XADD")
                .arg(format!("ledger:{{s{shard}}}"))
                .arg("*")
                .arg(&fields)
                .ignore();
        }
    }
    pipe.query::<()>(&mut conn).unwrap();
    let waiting = |conn: &mut redis::Connection| -> u64 {
        let mut pipe = redis::pipe();
        for shard in 0..1024 {
            pipe.cmd("XLEN").arg(format!("ledger:{{s{shard}}}"));
        }
        pipe.query::<Vec<u64>>(conn).unwrap().iter().sum()
    };
    assert!(waiting(&mut conn) > 61_000);

    database.restart();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut user = 0;
    while waiting(&mut conn) > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the backlog is exported"
        );
        let metrics = app.metrics().await;
        assert!(
            metrics.contains("statusads_store_breaker_open 0"),
            "the breaker stays closed while the backlog is exported"
        );
        user += 1;
        let served = app.slots(&format!("during-{user}"), None, 12).await;
        assert_eq!(
            served.len(),
            1,
            "decisions go on while the backlog is exported"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let stored = crate::support::postgres::ledger_records(&app.database_url).await;
    assert_eq!(stored.len(), 1, "the copies are one record, exported once");
}

/// An embedded journal of an earlier build (catalog entries in it, asset files on disk): the
/// first start moves them into SQLite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_earlier_builds_journal_catalog_and_assets_move_into_sqlite() {
    let data_dir = crate::support::scratch::ScratchDir::new("old-journal");
    let (advertiser, key) = statusads::domain::advertiser::NewAdvertiser {
        name: "Journal era".into(),
        chat_number: None,
        currency: "EUR".into(),
    }
    .into_advertiser(datetime!(2026-11-01 09:00:00 UTC), &Default::default())
    .unwrap();
    let entry = json!({"op": "catalog", "kind": "advertiser", "id": advertiser.id.to_string(),
        "json": serde_json::to_string(&advertiser).unwrap()});
    std::fs::write(
        data_dir.path().join("journal.log"),
        statusads::store::lines::encode(&entry.to_string()),
    )
    .unwrap();
    let png = portrait_png();
    let sha = statusads::catalog::assets::AssetStore::digest(&png);
    std::fs::create_dir_all(data_dir.path().join("assets")).unwrap();
    std::fs::write(data_dir.path().join("assets").join(&sha), &png).unwrap();

    let path = data_dir.path().to_path_buf();
    let app = crate::support::spawn_app_with(Backend::Embedded, |s| s.store.data_dir = path).await;
    assert_eq!(
        app.get("/v1/campaigns", &key).await.status(),
        StatusCode::OK
    );
    std::fs::remove_file(data_dir.path().join("assets").join(&sha)).unwrap();
    let res = app
        .send(reqwest::Method::GET, &format!("/assets/{sha}"), None, None)
        .await;
    assert_eq!(
        res.bytes().await.unwrap().as_ref(),
        png.as_slice(),
        "from SQLite"
    );
}

/// Two nodes on one record (PostgreSQL): an advertiser pauses a campaign through one node and
/// at once raises its bid through the other, whose catalog has not caught up yet. Both
/// changes stand: the second node's edit is applied to the record as stored, never its stale
/// copy written back (which would silently unpause the campaign). The history lists each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_through_two_nodes_at_once_both_stand() {
    let first = spawn_app(Backend::Redis).await;
    let url = first.redis.as_ref().unwrap().url();
    let second = spawn_app_on(None, |s| s.store.redis_url = url.into()).await;
    let (_, key) = first.advertiser("Two editors").await;
    let campaign = first.live_campaign(&key, json!({})).await;
    second.state.catalog.refresh().await.unwrap();
    let path = format!("/v1/campaigns/{campaign}");
    for _ in 0..5 {
        let (paused, rebid) = tokio::join!(
            first.send(
                reqwest::Method::PATCH,
                &path,
                Some(&key),
                Some(json!({"status": "paused"}))
            ),
            second.send(
                reqwest::Method::PATCH,
                &path,
                Some(&key),
                Some(json!({"bid_cpm_micros": 3_000_000}))
            ),
        );
        assert_eq!(
            (paused.status(), rebid.status()),
            (StatusCode::OK, StatusCode::OK)
        );
        for node in [&first, &second] {
            node.state.catalog.refresh().await.unwrap();
            let shown: Value = node.get(&path, &key).await.json().await.unwrap();
            assert_eq!(
                (shown["status"].as_str(), shown["bid_cpm_micros"].as_i64()),
                (Some("paused"), Some(3_000_000)),
                "{shown}"
            );
        }
        // Back to the start for the next round, through one node, seen by both.
        let reset = first
            .send(
                reqwest::Method::PATCH,
                &path,
                Some(&key),
                Some(json!({"status": "active", "bid_cpm_micros": 1_000_000})),
            )
            .await;
        assert_eq!(reset.status(), StatusCode::OK);
        second.state.catalog.refresh().await.unwrap();
    }
}

/// An earlier build wrote conversion records without a click id and kept the ids in a
/// hot-store log per shard and day. A node of this build puts them on the records: from that
/// log for records already in the record (once, after its first export round), and from the
/// shard and decision for records still in an outbox (as they are exported). The conversions
/// API, which reads the record, then lists every one with its click id; the log is left to
/// expire (an earlier-build node may still read it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_earlier_builds_conversion_log_moves_into_the_record() {
    use crate::support::postgres::{count, execute};
    let first = spawn_app(Backend::Redis).await;
    let url = first.redis.as_ref().unwrap().url();
    let (adv, key) = first.advertiser("Earlier chats").await;
    let campaign = first
        .live_campaign(
            &key,
            json!({"objective": "chat", "chat": {"prefilled_text": "Hi"}}),
        )
        .await;
    let (exported, waiting) = (
        first.click_chat_ad("exported").await,
        first.click_chat_ad("waiting").await,
    );
    let at = "2026-11-26T10:00:00Z";
    for kind in ["conversation_started", "message"] {
        assert_eq!(first.convert(&adv, &exported, kind, at).await, "accepted");
    }
    let listed = |body: Value| body["conversions"].as_array().unwrap().len();
    let list = format!("/v1/conversions?campaign_id={campaign}");
    assert_eq!(
        listed(first.get(&list, &key).await.json().await.unwrap()),
        2
    );

    // As the earlier build left it: records without click ids, the ids in its log, and one
    // conversion of its still in an outbox.
    execute(
        &first.database_url,
        &[
            "UPDATE ledger_records SET click_id = ''",
            "DELETE FROM record_upgrades",
        ],
    )
    .await;
    assert_eq!(
        listed(first.get(&list, &key).await.json().await.unwrap()),
        0
    );
    let shard_of = |click: &str| -> u32 { click[1..click.find('.').unwrap()].parse().unwrap() };
    let log = format!("cvlog:{{s{}}}:20261126", shard_of(&exported));
    let at_ms = 1_795_687_200_000_i64; // 2026-11-26T10:00:00Z
    let mut conn = first.redis.as_ref().unwrap().connection();
    for kind in ["conversation_started", "message"] {
        let _: () = redis::cmd("RPUSH")
            .arg(&log)
            .arg(format!("{adv}|{campaign}|{exported}|{kind}|{at_ms}"))
            .query(&mut conn)
            .unwrap();
    }
    let decision = &waiting[waiting.find('.').unwrap() + 1..];
    let _: () = redis::cmd("XADD")
        .arg(format!("ledger:{{s{}}}", shard_of(&waiting)))
        .arg("*")
        .arg(&[
            "id",
            &format!("{decision}:conversation"),
            "type",
            "conversation_started",
            "campaign",
            &campaign,
            "advertiser",
            &adv,
            "price",
            "0",
            "at_ms",
            &at_ms.to_string(),
        ])
        .query(&mut conn)
        .unwrap();

    let second = spawn_app_on(None, |s| s.store.redis_url = url.into()).await;
    let want = json!([
        {"click_id": exported, "campaign_id": campaign, "type": "conversation_started", "at": at},
        {"click_id": exported, "campaign_id": campaign, "type": "message", "at": at},
        {"click_id": waiting, "campaign_id": campaign, "type": "conversation_started", "at": at},
    ]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let body: Value = second.get(&list, &key).await.json().await.unwrap();
        let mut got = body["conversions"].as_array().unwrap().clone();
        got.sort_by_key(|c| (c["click_id"] != exported, c["type"].to_string()));
        if got.len() == 3 {
            assert_eq!(Value::Array(got), want);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not moved: {body}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let kept: i64 = redis::cmd("LLEN").arg(&log).query(&mut conn).unwrap();
    assert_eq!(kept, 2, "the log is left to expire");
    assert_eq!(
        count(
            &first.database_url,
            "SELECT COUNT(*) FROM ledger_records WHERE click_id <> ''"
        )
        .await,
        3
    );
}
