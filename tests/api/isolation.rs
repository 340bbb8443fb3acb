//! Roles and ownership: 401 without a valid token, 403 for the wrong role, 404 for another
//! advertiser's things (indistinguishable from missing).

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::contract;
use crate::support::app::{portrait_png, ADMIN, CLIENT};
use crate::support::{spawn_app, Backend};

async fn advertisers_cannot_see_or_change_each_other(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, key_a) = app.advertiser("A").await;
    let (_, key_b) = app.advertiser("B").await;
    let campaign = app.live_campaign(&key_a, json!({})).await;
    let creatives: Value = app
        .get(&format!("/v1/campaigns/{campaign}/creatives"), &key_a)
        .await
        .json()
        .await
        .unwrap();
    let creative = creatives["creatives"][0]["id"].as_str().unwrap().to_owned();

    let attempts = [
        (Method::GET, format!("/v1/campaigns/{campaign}"), None),
        (
            Method::PATCH,
            format!("/v1/campaigns/{campaign}"),
            Some(json!({"name": "mine now"})),
        ),
        (Method::DELETE, format!("/v1/campaigns/{campaign}"), None),
        (
            Method::GET,
            format!("/v1/campaigns/{campaign}/creatives"),
            None,
        ),
        (Method::GET, format!("/v1/creatives/{creative}"), None),
        (
            Method::GET,
            format!("/v1/reports/campaigns/{campaign}"),
            None,
        ),
    ];
    for (method, path, body) in attempts {
        let res = app.send(method.clone(), &path, Some(&key_b), body).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{method} {path}");
        let err: Value = res.json().await.unwrap();
        assert_eq!(err["error"]["code"], "not_found");
    }
    let res = app
        .upload(
            &key_b,
            &campaign,
            portrait_png(),
            "x.png",
            json!({"headline": "hi"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert!(app
        .get("/v1/campaigns", &key_b)
        .await
        .json::<Value>()
        .await
        .unwrap()["campaigns"]
        .as_array()
        .unwrap()
        .is_empty());
    // A's things are untouched.
    let shown: Value = app
        .get(&format!("/v1/campaigns/{campaign}"), &key_a)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (shown["name"].as_str(), shown["status"].as_str()),
        (Some("Campaign"), Some("active"))
    );
}

async fn roles_get_401_or_403(backend: Backend) {
    let app = spawn_app(backend).await;
    let (adv, key) = app.advertiser("A").await;
    let cases: [(Method, String, Option<&str>, StatusCode); 12] = [
        (
            Method::GET,
            "/v1/campaigns".into(),
            None,
            StatusCode::UNAUTHORIZED,
        ),
        (
            Method::GET,
            "/v1/campaigns".into(),
            Some("wrong"),
            StatusCode::UNAUTHORIZED,
        ),
        (
            Method::GET,
            "/v1/campaigns".into(),
            Some(CLIENT),
            StatusCode::FORBIDDEN,
        ),
        (
            Method::GET,
            "/v1/campaigns".into(),
            Some(ADMIN),
            StatusCode::FORBIDDEN,
        ),
        (
            Method::POST,
            "/v1/advertisers".into(),
            Some(&key),
            StatusCode::FORBIDDEN,
        ),
        (
            Method::POST,
            "/v1/advertisers".into(),
            Some(CLIENT),
            StatusCode::FORBIDDEN,
        ),
        (
            Method::GET,
            "/v1/advertisers".into(),
            None,
            StatusCode::UNAUTHORIZED,
        ),
        (
            Method::POST,
            format!("/v1/advertisers/{adv}/keys"),
            Some(&key),
            StatusCode::FORBIDDEN,
        ),
        (
            Method::POST,
            "/v1/slots".into(),
            Some(&key),
            StatusCode::FORBIDDEN,
        ),
        (
            Method::POST,
            "/v1/slots".into(),
            Some(ADMIN),
            StatusCode::FORBIDDEN,
        ),
        (
            Method::POST,
            "/v1/events".into(),
            None,
            StatusCode::UNAUTHORIZED,
        ),
        (
            Method::GET,
            "/v1/moderation/creatives".into(),
            Some(&key),
            StatusCode::FORBIDDEN,
        ),
    ];
    for (method, path, token, status) in cases {
        let res = app
            .send(method.clone(), &path, token, Some(json!({})))
            .await;
        assert_eq!(res.status(), status, "{method} {path} as {token:?}");
    }
}

async fn rotated_keys_stop_working(backend: Backend) {
    let app = spawn_app(backend).await;
    let (adv, old) = app.advertiser("A").await;
    let res = app
        .post(&format!("/v1/advertisers/{adv}/keys"), ADMIN, json!({}))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let new = res.json::<Value>().await.unwrap()["api_key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        app.get("/v1/campaigns", &old).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.get("/v1/campaigns", &new).await.status(),
        StatusCode::OK
    );
    let listed: Value = app
        .get("/v1/advertisers", ADMIN)
        .await
        .json()
        .await
        .unwrap();
    let text = listed.to_string();
    assert!(
        !text.contains(&new) && !text.contains("api_key"),
        "keys are never listed"
    );
    assert_eq!(
        app.post(
            "/v1/advertisers/adv_0000000000000000/keys",
            ADMIN,
            json!({})
        )
        .await
        .status(),
        StatusCode::NOT_FOUND
    );
}

contract!(
    advertisers_cannot_see_or_change_each_other,
    roles_get_401_or_403,
    rotated_keys_stop_working
);
