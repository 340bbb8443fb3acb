//! Creative upload: recognised by content, limits enforced, a rejected upload stores nothing;
//! moderation; assets served immutable and never sniffed.

use reqwest::StatusCode;
use serde_json::{json, Value};
use statusads::media;

use crate::contract;
use crate::support::app::{portrait_png, ADMIN};
use crate::support::{spawn_app, Backend};

async fn bad_uploads_get_their_error_and_store_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, key) = app.advertiser("Uploader").await;
    let campaign = app.campaign(&key, json!({})).await;
    let meta = json!({"headline": "Hello"});

    let mut six_mib = media::png::solid_png(1080, 1920, [1, 2, 3]);
    // Grow a real PNG past 5 MiB with an ancillary chunk before IEND.
    let iend = six_mib.len() - 12;
    let filler = vec![0u8; 6 * 1024 * 1024];
    let mut chunk = (filler.len() as u32).to_be_bytes().to_vec();
    chunk.extend_from_slice(b"tEXt");
    chunk.extend_from_slice(&filler);
    chunk.extend_from_slice(&[0, 0, 0, 0]);
    six_mib.splice(iend..iend, chunk);
    let mut truncated = portrait_png();
    truncated.truncate(truncated.len() / 2);

    let cases: Vec<(Vec<u8>, &str, Value, StatusCode, &str)> = vec![
        (
            b"just some text\n".to_vec(),
            "ad.png",
            meta.clone(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            media::png::solid_png(1920, 1080, [0, 0, 0]),
            "wide.png",
            meta.clone(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_aspect_ratio",
        ),
        (
            media::png::solid_png(270, 480, [0, 0, 0]),
            "small.png",
            meta.clone(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_dimensions",
        ),
        (
            six_mib,
            "big.png",
            meta.clone(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            truncated,
            "cut.png",
            meta.clone(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            media::samples::sample_mp4(1080, 1920, 31_000),
            "long.mp4",
            meta.clone(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_duration",
        ),
        (
            portrait_png(),
            "ok.png",
            json!({"headline": "x".repeat(41)}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_text",
        ),
        (
            portrait_png(),
            "ok.png",
            json!({"headline": "ok", "body": "y".repeat(126)}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_text",
        ),
        (
            portrait_png(),
            "ok.png",
            json!({"headline": "ok", "targeting_contacts": true}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
    ];
    for (file, name, meta, status, code) in cases {
        let res = app.upload(&key, &campaign, file, name, meta).await;
        assert_eq!(res.status(), status, "{name}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{name}: {body}");
    }
    assert_eq!(
        app.stored_assets().await,
        0,
        "rejected uploads store nothing"
    );
    let res = app
        .get(&format!("/v1/campaigns/{campaign}/creatives"), &key)
        .await;
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["creatives"], json!([]));

    // Not multipart at all.
    let res = app
        .post(
            &format!("/v1/campaigns/{campaign}/creatives"),
            &key,
            json!({}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

async fn good_uploads_are_moderated_and_served_immutable(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, key) = app.advertiser("Uploader").await;
    let campaign = app.campaign(&key, json!({})).await;
    let video = media::samples::sample_mp4(1080, 1920, 10_000);
    let res = app
        .upload(
            &key,
            &campaign,
            video.clone(),
            "clip.bin",
            json!({"headline": "Watch", "cta_label": "Chat now"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let creative: Value = res.json().await.unwrap();
    assert_eq!(creative["status"], "pending");
    assert_eq!(creative["format"], "video");
    assert_eq!(creative["asset"]["mime"], "video/mp4");
    assert_eq!(creative["asset"]["duration_ms"], 10_000);
    assert_eq!(creative["asset"]["width"], 1080);
    let id = creative["id"].as_str().unwrap();

    // Pending creatives are not served.
    assert!(app.slots("u1", None, 12).await.is_empty());
    let queue: Value = app
        .get("/v1/moderation/creatives?status=pending", ADMIN)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(queue["creatives"][0]["id"], id);

    let res = app
        .post(
            &format!("/v1/creatives/{id}/reject"),
            ADMIN,
            json!({"reason": ""}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let rejected: Value = app
        .post(
            &format!("/v1/creatives/{id}/reject"),
            ADMIN,
            json!({"reason": "blurry"}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            rejected["status"].as_str(),
            rejected["reject_reason"].as_str()
        ),
        (Some("rejected"), Some("blurry"))
    );
    assert!(app.slots("u1", None, 12).await.is_empty());
    let approved: Value = app
        .post(&format!("/v1/creatives/{id}/approve"), ADMIN, json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(approved["status"], "approved");
    let slots = app.slots("u1", None, 12).await;
    assert_eq!(slots[0]["ad"]["creative_id"], id);
    assert_eq!(slots[0]["ad"]["label"], "Sponsored");

    let url = slots[0]["ad"]["asset_url"].as_str().unwrap().to_owned();
    let res = app.http.get(app.url(&url)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(res.headers()["content-type"], "video/mp4");
    assert_eq!(
        res.headers()
            .get("x-content-type-options")
            .map(|v| v.as_bytes()),
        Some(&b"nosniff"[..]),
        "browsers must not sniff an uploaded file into something else"
    );
    let etag = res.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(res.bytes().await.unwrap().to_vec(), video);
    let res = app
        .http
        .get(app.url(&url))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(
        res.headers()
            .get("x-content-type-options")
            .map(|v| v.as_bytes()),
        Some(&b"nosniff"[..])
    );
    for missing in [
        "/assets/0000000000000000000000000000000000000000000000000000000000000000",
        "/assets/..%2Fsigning_key",
    ] {
        assert_eq!(
            app.http
                .get(app.url(missing))
                .send()
                .await
                .unwrap()
                .status(),
            StatusCode::NOT_FOUND
        );
    }
}

contract!(
    bad_uploads_get_their_error_and_store_nothing,
    good_uploads_are_moderated_and_served_immutable
);
