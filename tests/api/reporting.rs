//! Reports and invoices read from the system of record: breakdowns by the decision's coarse
//! context, exact reach, `as_of`, and invoices an advertiser can verify record by record.

use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use time::macros::datetime;

use crate::contract;
use crate::support::app::{TestApp, CLIENT};
use crate::support::postgres::ledger_records;
use crate::support::{spawn_app, Backend};

contract!(
    reports_break_down_by_context_and_count_reach_exactly,
    an_invoice_equals_its_records_and_their_digest,
);

/// One decision for `user` with `context`; its single slot's token and creative.
async fn serve(app: &TestApp, user: &str, context: Value) -> (String, String) {
    let res = app
        .post(
            "/v1/slots",
            CLIENT,
            json!({"user": user, "statuses": 12, "context": context}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    let slot = &body["slots"][0];
    (
        slot["token"].as_str().expect("a slot").to_owned(),
        slot["ad"]["creative_id"].as_str().unwrap().to_owned(),
    )
}

async fn report(app: &TestApp, key: &str, campaign: &str, query: &str) -> Value {
    let res = app
        .get(&format!("/v1/reports/campaigns/{campaign}?{query}"), key)
        .await;
    assert_eq!(res.status(), StatusCode::OK, "{query}");
    res.json().await.unwrap()
}

fn row<'a>(report: &'a Value, field: &str, value: &str) -> &'a Value {
    report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r[field] == value)
        .unwrap_or_else(|| panic!("no row {field}={value} in {report}"))
}

async fn reports_break_down_by_context_and_count_reach_exactly(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, key) = app.advertiser("Breakdown").await;
    let campaign = app
        .live_campaign(
            &key,
            json!({"priority": "sponsorship", "bid_cpm_micros": 2_000_000, "frequency_caps": []}),
        )
        .await;
    let italy = json!({"country": "IT", "os": "android", "age": 31});
    // Two renders by one user in Italy, in two hours; one in France; one slot never rendered.
    let (first, creative) = serve(&app, "user-it", italy.clone()).await;
    assert_eq!(app.render(&first).await, "accepted");
    app.clock.set(datetime!(2026-11-26 11:30:00 UTC));
    let (second, _) = serve(&app, "user-it", italy).await;
    assert_eq!(app.render(&second).await, "accepted");
    assert_eq!(app.events(&[(&second, "view")]).await, ["accepted"]);
    let (third, _) = serve(&app, "user-fr", json!({"country": "FR", "os": "ios"})).await;
    assert_eq!(app.render(&third).await, "accepted");
    serve(&app, "user-prefetch", json!({"country": "FR"})).await;

    let by_day = report(&app, &key, &campaign, "from=2026-11-25&to=2026-11-26").await;
    assert_eq!(by_day["rows"].as_array().unwrap().len(), 2);
    let today = row(&by_day, "date", "2026-11-26");
    assert_eq!(
        (
            &today["served"],
            &today["rendered"],
            &today["viewed"],
            &today["reach"]
        ),
        (&json!(4), &json!(3), &json!(1), &json!(2))
    );
    assert_eq!(row(&by_day, "date", "2026-11-25")["reach"], 0);
    let totals = &by_day["totals"];
    assert_eq!(
        (&totals["reach"], &totals["frequency"]),
        (&json!(2), &json!(1.5))
    );
    assert_eq!(totals["spend_micros"], 3 * 2000);
    let as_of = time::OffsetDateTime::parse(
        by_day["as_of"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert!(as_of >= datetime!(2026-11-26 11:30:00 UTC), "{as_of}");

    let by_hour = report(
        &app,
        &key,
        &campaign,
        "from=2026-11-26&to=2026-11-26&by=hour",
    )
    .await;
    assert_eq!(by_hour["rows"].as_array().unwrap().len(), 24);
    assert_eq!(row(&by_hour, "hour", "2026-11-26T10:00:00Z")["rendered"], 1);
    assert_eq!(row(&by_hour, "hour", "2026-11-26T11:00:00Z")["rendered"], 2);
    assert!(by_hour["rows"][0].get("reach").is_none());

    let by_country = report(&app, &key, &campaign, "to=2026-11-26&by=country").await;
    let keys: Vec<&str> = by_country["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["FR", "IT"]);
    assert_eq!(
        (
            &row(&by_country, "key", "FR")["served"],
            &row(&by_country, "key", "FR")["rendered"]
        ),
        (&json!(2), &json!(1))
    );
    assert_eq!(row(&by_country, "key", "IT")["rendered"], 2);
    assert_eq!(by_country["totals"]["reach"], 2);
    let by_os = report(&app, &key, &campaign, "to=2026-11-26&by=os").await;
    assert_eq!(row(&by_os, "key", "android")["rendered"], 2);
    assert_eq!(row(&by_os, "key", "ios")["rendered"], 1);
    assert_eq!(row(&by_os, "key", "unknown")["served"], 1);
    let by_age = report(&app, &key, &campaign, "to=2026-11-26&by=age_band").await;
    assert_eq!(row(&by_age, "key", "25-34")["rendered"], 2);
    assert_eq!(row(&by_age, "key", "unknown")["rendered"], 1);
    let by_creative = report(&app, &key, &campaign, "to=2026-11-26&by=creative").await;
    assert_eq!(row(&by_creative, "key", &creative)["rendered"], 3);

    // No report names a user.
    for body in [
        &by_day,
        &by_hour,
        &by_country,
        &by_os,
        &by_age,
        &by_creative,
    ] {
        assert!(!body.to_string().contains("user-"), "{body}");
    }
    // The record keeps a keyed hash per user: two distinct, neither the user id.
    let stored = ledger_records(&app.database_url).await;
    let mut users: Vec<&str> = stored
        .iter()
        .filter(|r| r.kind == "render")
        .map(|r| r.user_key.as_str())
        .collect();
    users.sort();
    users.dedup();
    assert_eq!(users.len(), 2);
    assert!(users.iter().all(|u| u.len() == 32 && !u.contains("user")));

    let bad = app
        .get(&format!("/v1/reports/campaigns/{campaign}?by=week"), &key)
        .await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let long = app
        .get(
            &format!("/v1/reports/campaigns/{campaign}?from=2026-10-01&to=2026-11-26&by=hour"),
            &key,
        )
        .await;
    assert_eq!(long.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = long.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_date");
}

async fn an_invoice_equals_its_records_and_their_digest(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, key) = app.advertiser("Verifiable").await;
    let campaign = app
        .live_campaign(
            &key,
            json!({"priority": "sponsorship", "bid_cpm_micros": 2_500_000, "frequency_caps": []}),
        )
        .await;
    for user in 0..5 {
        let (token, _) = serve(&app, &format!("payer-{user}"), json!({"country": "IT"})).await;
        assert_eq!(app.render(&token).await, "accepted");
        // A view is a record but bills nothing: not on the invoice.
        assert_eq!(app.events(&[(&token, "view")]).await, ["accepted"]);
    }
    let res = app.get("/v1/invoices/2026-11", &key).await;
    assert_eq!(res.status(), StatusCode::OK);
    let invoice: Value = res.json().await.unwrap();
    assert_eq!(invoice["total_micros"], 5 * 2500);
    assert_eq!(invoice["lines"][0]["campaign_id"], campaign.as_str());
    assert!(invoice["as_of"].is_string());

    let res = app.get("/v1/invoices/2026-11/records", &key).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().contains_key("x-as-of"));
    let csv = res.bytes().await.unwrap();
    assert_eq!(
        invoice["digest"],
        format!("sha256:{}", hex::encode(Sha256::digest(&csv)))
    );
    let text = std::str::from_utf8(&csv).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("id,kind,campaign_id,creative_id,category,country,at,amount_micros")
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 5);
    let ids: Vec<&str> = rows.iter().map(|r| r[0]).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "rows sorted by id");
    let sum: i64 = rows.iter().map(|r| r[7].parse::<i64>().unwrap()).sum();
    assert_eq!(sum, invoice["total_micros"].as_i64().unwrap());
    assert!(rows
        .iter()
        .all(|r| r[1] == "impressions" && r[2] == campaign && r[5] == "IT"));
    assert!(!text.contains("payer-"), "no user id: {text}");
    assert!(!text.contains('\r'));

    let res = app
        .http
        .get(app.url("/v1/invoices/2026-11/records"))
        .bearer_auth(&key)
        .header("accept", "application/x-ndjson")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let ndjson = res.text().await.unwrap();
    let objects: Vec<Value> = ndjson
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(objects.len(), 5);
    assert_eq!(objects[0]["id"], ids[0]);
    assert_eq!(objects[0]["category"], Value::Null);

    // Another month bills nothing; a bad month is refused.
    let october: Value = app
        .get("/v1/invoices/2026-10", &key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(october["total_micros"], 0);
    assert_eq!(
        october["digest"],
        format!(
            "sha256:{}",
            hex::encode(Sha256::digest(
                b"id,kind,campaign_id,creative_id,category,country,at,amount_micros\n"
            ))
        )
    );
    let bad = app.get("/v1/invoices/2026-13/records", &key).await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

/// The outbox is drained as it fills: after a burst of events and a quiet second, every shard's
/// stream is empty, and Redis keeps per event only its dedupe window (and the user's caps).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exported_records_leave_redis() {
    let app = spawn_app(Backend::Redis).await;
    let (_, key) = app.advertiser("Burst").await;
    let campaign = app
        .live_campaign(
            &key,
            json!({"priority": "sponsorship", "bid_cpm_micros": 2_000_000, "frequency_caps": []}),
        )
        .await;
    let mut conn = app.redis.as_ref().unwrap().connection();
    let used = |conn: &mut redis::Connection| -> i64 {
        let info: String = redis::cmd("INFO").arg("memory").query(conn).unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let before = used(&mut conn);
    let (users, per_user) = (400, 4);
    let mut events = 0;
    for user in 0..users {
        let (token, _) = serve(&app, &format!("burst-{user}"), json!({})).await;
        let batch: Vec<(&str, &str)> = ["render", "view", "click", "hide"]
            .iter()
            .take(per_user)
            .map(|kind| (token.as_str(), *kind))
            .collect();
        assert!(app.events(&batch).await.iter().all(|s| s == "accepted"));
        events += per_user;
    }
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    for shard in 0..16 {
        let waiting: u64 = redis::cmd("XLEN")
            .arg(format!("ledger:{{s{shard}}}"))
            .query(&mut conn)
            .unwrap();
        assert_eq!(waiting, 0, "shard {shard}'s outbox is drained");
    }
    let per_event = (used(&mut conn) - before) / events as i64;
    println!("Redis bytes per exported event (its user's caps and hide included): {per_event}");
    // The stream alone cost 605 bytes per record before export trimmed it.
    assert!(per_event < 605, "{per_event} bytes per event");
    assert_eq!(
        ledger_records(&app.database_url).await.len(),
        events,
        "every event is in the record"
    );
    assert_eq!(app.report_totals(&key, &campaign).await["clicks"], users);
}
