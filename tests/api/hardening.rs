//! Hostile clients: the role matrix over every documented endpoint, rate limits with
//! Retry-After, a panicking handler that answers 500 while the service keeps serving, bodies
//! that never finish (408), uploads held open to exhaust memory (a cap per advertiser), a full
//! disk under an upload (503), and control or bidi characters smuggled into text fields.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::support::app::{padded_png, portrait_png, spawn_app_full, ADMIN, CLIENT};
use crate::support::operations;
use crate::support::slow_client::{multipart_head, multipart_type, Framing, StalledRequest};
use crate::support::{spawn_app, spawn_app_with, Backend};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    Nobody,
    Client,
    OwnerAdvertiser,
    OtherAdvertiser,
    Operator,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_answers_every_role_as_the_contract_says() {
    let app = spawn_app(Backend::Embedded).await;
    let (_, owner) = app.advertiser("Owner").await;
    let (_, other) = app.advertiser("Other").await;
    let campaign = app.live_campaign(&owner, json!({})).await;
    let creatives: Value = app
        .get(&format!("/v1/campaigns/{campaign}/creatives"), &owner)
        .await
        .json()
        .await
        .unwrap();
    let creative = creatives["creatives"][0]["id"].as_str().unwrap().to_owned();
    let sha = creatives["creatives"][0]["asset"]["sha256"]
        .as_str()
        .unwrap()
        .to_owned();
    let advertisers: Value = app
        .get("/v1/advertisers", ADMIN)
        .await
        .json()
        .await
        .unwrap();
    let owner_id = advertisers["advertisers"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let mut checked = 0;
    let documented = operations::documented();
    assert!(documented.len() > 25, "{} operations", documented.len());
    for route in &documented {
        let path = route
            .path
            .replace(
                "/v1/advertisers/{id}",
                &format!("/v1/advertisers/{owner_id}"),
            )
            .replace("/v1/campaigns/{id}", &format!("/v1/campaigns/{campaign}"))
            .replace(
                "/v1/reports/campaigns/{id}",
                &format!("/v1/reports/campaigns/{campaign}"),
            )
            .replace("/v1/creatives/{id}", &format!("/v1/creatives/{creative}"))
            .replace("{month}", "2026-11")
            .replace("{sha256}", &sha);
        let method = route.method.clone();
        for caller in [
            Caller::Nobody,
            Caller::Client,
            Caller::OwnerAdvertiser,
            Caller::OtherAdvertiser,
            Caller::Operator,
        ] {
            // The destructive calls (archive, key rotation) would change what the other rows
            // rely on; their authorised form is tested elsewhere.
            let destructive = (method == Method::DELETE && caller == Caller::OwnerAdvertiser)
                || (route.path.ends_with("/keys") && caller == Caller::Operator);
            if destructive {
                continue;
            }
            let token = match caller {
                Caller::Nobody => None,
                Caller::Client => Some(CLIENT),
                Caller::OwnerAdvertiser => Some(owner.as_str()),
                Caller::OtherAdvertiser => Some(other.as_str()),
                Caller::Operator => Some(ADMIN),
            };
            let body = matches!(method, Method::POST | Method::PATCH).then(|| json!({}));
            let status = app.send(method.clone(), &path, token, body).await.status();
            let role = match caller {
                Caller::Nobody => None,
                Caller::Client => Some("client"),
                Caller::OwnerAdvertiser | Caller::OtherAdvertiser => Some("advertiser"),
                Caller::Operator => Some("operator"),
            };
            let allowed =
                route.roles.is_empty() || role.is_some_and(|r| route.roles.iter().any(|x| x == r));
            let expected = match (allowed, caller) {
                (false, Caller::Nobody) => Some(StatusCode::UNAUTHORIZED),
                (false, _) => Some(StatusCode::FORBIDDEN),
                // Another advertiser's campaign, creative or report does not exist for them.
                (true, Caller::OtherAdvertiser) if route.path.contains("{id}") => {
                    Some(StatusCode::NOT_FOUND)
                }
                (true, _) => None,
            };
            match expected {
                Some(expected) => assert_eq!(
                    status, expected,
                    "{} {} as {caller:?}",
                    route.method, route.path
                ),
                None => assert!(
                    status != StatusCode::UNAUTHORIZED
                        && status != StatusCode::FORBIDDEN
                        && !status.is_server_error(),
                    "{} {} as {caller:?}: {status}",
                    route.method,
                    route.path
                ),
            }
            checked += 1;
        }
    }
    assert!(checked > 100, "{checked} combinations");
    // Nothing of the owner's changed through all that.
    let shown: Value = app
        .get(&format!("/v1/campaigns/{campaign}"), &owner)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (shown["name"].as_str(), shown["status"].as_str()),
        (Some("Campaign"), Some("active"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_answer_429_with_retry_after() {
    let app = spawn_app_with(Backend::Embedded, |s| {
        s.rate_limits.user_per_minute = 60.0;
        s.rate_limits.user_burst = 2.0;
        s.rate_limits.advertiser_per_second = 1.0;
        s.rate_limits.advertiser_burst = 3.0;
    })
    .await;
    let (_, key) = app.advertiser("Busy").await;
    let slots = |user: &'static str| {
        let app = &app;
        async move {
            app.post("/v1/slots", CLIENT, json!({"user": user, "statuses": 3}))
                .await
        }
    };
    assert_eq!(slots("u1").await.status(), StatusCode::OK);
    assert_eq!(slots("u1").await.status(), StatusCode::OK);
    let limited = slots("u1").await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.headers()["retry-after"], "1");
    assert_eq!(
        limited.json::<Value>().await.unwrap()["error"]["code"],
        "rate_limited"
    );
    assert_eq!(slots("u2").await.status(), StatusCode::OK, "per user");
    app.clock.advance_secs(1);
    assert_eq!(
        slots("u1").await.status(),
        StatusCode::OK,
        "refilled after Retry-After"
    );

    for _ in 0..3 {
        assert_eq!(
            app.get("/v1/campaigns", &key).await.status(),
            StatusCode::OK
        );
    }
    assert_eq!(
        app.get("/v1/campaigns", &key).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("statusads_rate_limited_total{scope=\"user\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("statusads_rate_limited_total{scope=\"advertiser\"} 1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_answers_500_and_the_service_lives_on() {
    let app = spawn_app_full(
        None,
        |_| {},
        |cfg| {
            cfg.route(
                "/test/panic",
                actix_web::web::get().to(|| async { panic!("secret internals") as &'static str }),
            );
        },
    )
    .await;
    for _ in 0..6 {
        let res = app.http.get(app.url("/test/panic")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = res.text().await.unwrap();
        assert!(
            body.contains("\"internal\"") && !body.contains("secret"),
            "{body}"
        );
        assert_eq!(
            app.http
                .get(app.url("/healthz"))
                .send()
                .await
                .unwrap()
                .status(),
            StatusCode::OK
        );
    }
    let metrics = app.metrics().await;
    assert!(metrics.contains("statusads_panics_total 6"), "{metrics}");
}

/// Generous for a loaded 2-core machine; the deadlines under test are far shorter.
const ANSWER_BOUND: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_never_ends_is_answered_408_and_its_connection_closed() {
    let app = spawn_app_with(Backend::Embedded, |s| s.http.body_timeout_ms = 300).await;
    let (_, key) = app.advertiser("Slow").await;
    let campaign = app.campaign(&key, json!({})).await;
    let upload = format!("/v1/campaigns/{campaign}/creatives");
    let file = padded_png(2 * 1024 * 1024);
    let cases = [
        (
            "JSON body, Content-Length",
            "/v1/campaigns",
            "application/json".to_owned(),
            Framing::Length(4000),
            br#"{"name": "never fini"#.to_vec(),
        ),
        (
            "JSON body, chunked",
            "/v1/campaigns",
            "application/json".to_owned(),
            Framing::Chunked,
            br#"{"name": "never fini"#.to_vec(),
        ),
        (
            "multipart upload, Content-Length",
            upload.as_str(),
            multipart_type(),
            Framing::Length(file.len() + 1000),
            multipart_head(&file[..file.len() / 2]),
        ),
        (
            "multipart upload, chunked",
            upload.as_str(),
            multipart_type(),
            Framing::Chunked,
            multipart_head(&file[..file.len() / 2]),
        ),
    ];
    for (what, path, content_type, framing, sent) in cases {
        let started = Instant::now();
        let stalled = StalledRequest::open(
            &app.address,
            "POST",
            path,
            &key,
            &content_type,
            framing,
            &sent,
        )
        .await;
        let answer = stalled
            .answer_within(ANSWER_BOUND)
            .await
            .unwrap_or_else(|| panic!("{what}: no answer within {ANSWER_BOUND:?}"));
        eprintln!(
            "{what}: {} after {:?}, closed after {:?}",
            answer.status,
            answer.at - started,
            started.elapsed()
        );
        assert_eq!(
            answer.status, 408,
            "{what}: {}\n{}",
            answer.head, answer.body
        );
        let body: Value = serde_json::from_str(&answer.body).unwrap();
        assert_eq!(body["error"]["code"], "request_timeout", "{what}: {body}");
        assert!(
            answer.closed,
            "{what}: the connection stays open after the 408"
        );
    }
    assert_eq!(
        app.stored_assets().await,
        0,
        "a stalled upload stores nothing"
    );
    let campaigns: Value = app.get("/v1/campaigns", &key).await.json().await.unwrap();
    assert_eq!(campaigns["campaigns"].as_array().unwrap().len(), 1);
    // Whole bodies still arrive well inside the deadline.
    let res = app
        .upload(
            &key,
            &campaign,
            file,
            "ad.png",
            json!({"headline": "On time"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_uploads_per_advertiser_are_capped_until_they_end() {
    const CAP: usize = 3;
    let app = spawn_app_with(Backend::Embedded, |s| {
        // Long enough to hold the stalled uploads while the test looks, short enough to wait.
        s.http.body_timeout_ms = 4000;
        s.http.max_concurrent_uploads_per_advertiser = CAP as u32;
    })
    .await;
    let (busy_id, busy) = app.advertiser("Busy").await;
    let (_, calm) = app.advertiser("Calm").await;
    let busy_campaign = app.campaign(&busy, json!({})).await;
    let calm_campaign = app.campaign(&calm, json!({})).await;
    let path = format!("/v1/campaigns/{busy_campaign}/creatives");
    let prefix = multipart_head(&portrait_png()[..100]);
    let mut stalled = Vec::new();
    for _ in 0..CAP {
        stalled.push(
            StalledRequest::open(
                &app.address,
                "POST",
                &path,
                &busy,
                &multipart_type(),
                Framing::Length(prefix.len() + 100_000),
                &prefix,
            )
            .await,
        );
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.state.uploads.in_flight(&busy_id) < CAP {
        assert!(
            Instant::now() < deadline,
            "the stalled uploads never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let meta = json!({"headline": "One more"});
    let refused = app
        .upload(
            &busy,
            &busy_campaign,
            portrait_png(),
            "ad.png",
            meta.clone(),
        )
        .await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers().contains_key("retry-after"));
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    assert_eq!(
        app.upload(
            &calm,
            &calm_campaign,
            portrait_png(),
            "ad.png",
            meta.clone()
        )
        .await
        .status(),
        StatusCode::CREATED,
        "the cap is per advertiser"
    );

    for request in stalled {
        let answer = request
            .answer_within(Duration::from_secs(15))
            .await
            .expect("the stalled upload times out");
        assert_eq!(answer.status, 408);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.state.uploads.in_flight(&busy_id) > 0 {
        assert!(
            Instant::now() < deadline,
            "upload slots were never released"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let res = app
        .upload(&busy, &busy_campaign, portrait_png(), "ad.png", meta)
        .await;
    assert_eq!(res.status(), StatusCode::CREATED, "slots free again");
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("statusads_rate_limited_total{scope=\"uploads\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_onto_a_full_disk_answers_503_and_stores_nothing() {
    // The data dir (the SQLite record that keeps asset bytes, and the local asset cache) on a
    // small disk: room for one plain portrait PNG (~260 KB), not for a padded 2 MiB one.
    let disk = crate::support::small_disk::SmallDisk::mount(2 << 20);
    let data_dir = disk.path().join("data");
    let app =
        crate::support::spawn_app_with(Backend::Embedded, |s| s.store.data_dir = data_dir.clone())
            .await;
    let (_, key) = app.advertiser("Roomless").await;
    let campaign = app.campaign(&key, json!({})).await;
    let res = app
        .upload(
            &key,
            &campaign,
            padded_png(2 * 1024 * 1024),
            "big.png",
            json!({"headline": "No room"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(res.headers().contains_key("retry-after"));
    let body = res.text().await.unwrap();
    let parsed: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(parsed["error"]["code"], "unavailable", "{body}");
    assert!(
        !body.contains("space") && !body.contains("os error") && !body.contains("assets"),
        "no internals: {body}"
    );
    assert_eq!(app.stored_assets().await, 0, "no partial file left behind");
    let listed: Value = app
        .get(&format!("/v1/campaigns/{campaign}/creatives"), &key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["creatives"], json!([]));
    // What fits still fits.
    let res = app
        .upload(
            &key,
            &campaign,
            portrait_png(),
            "ad.png",
            json!({"headline": "Small"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_and_bidi_characters_are_refused_in_every_text_field() {
    let app = spawn_app(Backend::Embedded).await;
    let (_, key) = app.advertiser("Clean").await;
    let campaign = app
        .campaign(
            &key,
            json!({"objective": "chat", "chat": {"prefilled_text": "Hi"}}),
        )
        .await;
    let res = app
        .upload(
            &key,
            &campaign,
            portrait_png(),
            "ad.png",
            json!({"headline": "Fine"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let creative: Value = res.json().await.unwrap();
    let creative_id = creative["id"].as_str().unwrap().to_owned();
    let campaign_before: Value = app
        .get(&format!("/v1/campaigns/{campaign}"), &key)
        .await
        .json()
        .await
        .unwrap();
    let advertisers_before: Value = app
        .get("/v1/advertisers", ADMIN)
        .await
        .json()
        .await
        .unwrap();

    let patch = format!("/v1/campaigns/{campaign}");
    for (label, bad) in [
        ("NUL", "Pizza\u{0}Roma"),
        ("ESC", "Pizza\u{1b}[31mRoma"),
        ("RLO", "Pizza\u{202e}amoR"),
    ] {
        // (what, field named in the message, code, response)
        let mut answers = vec![
            (
                "advertiser name",
                "name",
                "invalid_name",
                app.post(
                    "/v1/advertisers",
                    ADMIN,
                    json!({"name": bad, "chat_number": "+390612345678", "currency": "EUR"}),
                )
                .await,
            ),
            (
                "new campaign name",
                "name",
                "invalid_name",
                app.post(
                    "/v1/campaigns",
                    &key,
                    json!({"name": bad, "bid_cpm_micros": 2_000_000,
                           "budget": {"total_micros": 100_000_000}}),
                )
                .await,
            ),
            (
                "campaign name",
                "name",
                "invalid_name",
                app.send(
                    Method::PATCH,
                    &patch,
                    Some(&key),
                    Some(json!({"name": bad})),
                )
                .await,
            ),
            (
                "chat text",
                "prefilled_text",
                "invalid_chat",
                app.send(
                    Method::PATCH,
                    &patch,
                    Some(&key),
                    Some(json!({"chat": {"prefilled_text": bad}})),
                )
                .await,
            ),
            (
                "targeted city",
                "targeting.cities",
                "invalid_targeting",
                app.send(
                    Method::PATCH,
                    &patch,
                    Some(&key),
                    Some(json!({"targeting": {"cities": ["Milano", bad]}})),
                )
                .await,
            ),
            (
                "reject reason",
                "reason",
                "invalid_reason",
                app.post(
                    &format!("/v1/creatives/{creative_id}/reject"),
                    ADMIN,
                    json!({ "reason": bad }),
                )
                .await,
            ),
            (
                "slot context city",
                "city",
                "invalid_context",
                app.post(
                    "/v1/slots",
                    CLIENT,
                    json!({"user": "u1", "statuses": 5, "context": {"city": bad}}),
                )
                .await,
            ),
        ];
        for (field, meta) in [
            ("headline", json!({ "headline": bad })),
            ("body", json!({"headline": "ok", "body": bad})),
            ("cta_label", json!({"headline": "ok", "cta_label": bad})),
        ] {
            answers.push((
                field,
                field,
                "invalid_text",
                app.upload(&key, &campaign, portrait_png(), "ad.png", meta)
                    .await,
            ));
        }
        for (what, field, code, res) in answers {
            let status = res.status();
            let body: Value = res.json().await.unwrap();
            assert_eq!(
                (status, body["error"]["code"].as_str()),
                (StatusCode::UNPROCESSABLE_ENTITY, Some(code)),
                "{what} with {label}: {body}"
            );
            let message = body["error"]["message"].as_str().unwrap();
            assert!(
                message.contains(field),
                "{what} with {label}: the message names the field: {message}"
            );
        }
    }

    // Nothing changed.
    let advertisers_after: Value = app
        .get("/v1/advertisers", ADMIN)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(advertisers_after, advertisers_before);
    let campaign_after: Value = app.get(&patch, &key).await.json().await.unwrap();
    assert_eq!(campaign_after, campaign_before);
    let campaigns: Value = app.get("/v1/campaigns", &key).await.json().await.unwrap();
    assert_eq!(campaigns["campaigns"].as_array().unwrap().len(), 1);
    let creatives: Value = app
        .get(&format!("/v1/campaigns/{campaign}/creatives"), &key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(creatives["creatives"].as_array().unwrap().len(), 1);
    assert_eq!(creatives["creatives"][0]["status"], "pending");
    assert_eq!(creatives["creatives"][0]["reject_reason"], Value::Null);
    assert_eq!(app.stored_assets().await, 1);
}
