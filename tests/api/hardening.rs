//! Hostile clients: the role matrix over every documented endpoint, rate limits with
//! Retry-After, and a panicking handler that answers 500 while the service keeps serving.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use statusads::http::openapi::{Role, ROUTES};

use crate::support::app::{spawn_app_full, ADMIN, CLIENT};
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
    for route in ROUTES {
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
        let method = Method::from_bytes(route.method_name().as_bytes()).unwrap();
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
            let allowed = matches!(
                (route.role, caller),
                (Role::Public, _)
                    | (Role::Operator, Caller::Operator)
                    | (Role::Client, Caller::Client)
                    | (
                        Role::Advertiser,
                        Caller::OwnerAdvertiser | Caller::OtherAdvertiser
                    )
                    | (
                        Role::OperatorOrAdvertiser,
                        Caller::Operator | Caller::OwnerAdvertiser | Caller::OtherAdvertiser
                    )
            );
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
                    status,
                    expected,
                    "{} {} as {caller:?}",
                    route.method_name(),
                    route.path
                ),
                None => assert!(
                    status != StatusCode::UNAUTHORIZED
                        && status != StatusCode::FORBIDDEN
                        && !status.is_server_error(),
                    "{} {} as {caller:?}: {status}",
                    route.method_name(),
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
