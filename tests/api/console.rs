//! The console in a real headless Chromium: an advertiser signs in, creates a campaign, uploads
//! an image and sees the 9:16 preview; the operator approves it; the ad is then served. And the
//! browser a test starts ends with it, also when the test fails.

use serde_json::json;

use crate::support::app::{portrait_png, ADMIN};
use std::time::{Duration, Instant};

use crate::support::browser::{chromium_processes_of, Browser};
use crate::support::scratch::ScratchDir;
use crate::support::{spawn_app, Backend};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advertiser_and_operator_flows_in_chromium() {
    let app = spawn_app(Backend::Embedded).await;
    let (_, key) = app.advertiser("Browser Bistro").await;
    let browser = Browser::start(1280, 1000).await;
    browser.open(&app.url("/console")).await;

    browser.type_into("#token-input", &key).await;
    browser.click("#sign-in").await;
    browser
        .wait_for(
            "advertiser role",
            "return document.querySelector('#role').textContent === 'advertiser'",
        )
        .await;

    browser
        .type_into("#campaign-name", "Browser campaign")
        .await;
    browser.type_into("#campaign-bid", "2.5").await;
    browser.type_into("#campaign-budget-total", "100").await;
    browser.click("#campaign-submit").await;
    let campaign = browser
        .wait_for("the new campaign row", "const row = document.querySelector('#campaign-list [data-campaign-id]'); return row && row.dataset.campaignId")
        .await;
    let campaign = campaign.as_str().unwrap().to_owned();
    assert!(campaign.starts_with("cmp_"));

    // A validation error from the API is shown next to the form.
    browser.type_into("#campaign-name", "Too cheap").await;
    browser.type_into("#campaign-bid", "2.5").await;
    browser.type_into("#campaign-budget-total", "0.01").await;
    browser.click("#campaign-submit").await;
    let error = browser
        .wait_for(
            "the form error",
            "return document.querySelector('#form-error').textContent",
        )
        .await;
    assert!(
        error.as_str().unwrap().contains("budget_too_small"),
        "{error}"
    );

    browser.click("button[data-panel='panel-creatives']").await;
    let dir = ScratchDir::new("upload");
    let file = dir.path().join("ad.png");
    std::fs::write(&file, portrait_png()).unwrap();
    browser.eval(&format!("const s = document.querySelector('#creative-campaign'); s.value = '{campaign}'; s.dispatchEvent(new Event('change')); return true;")).await;
    browser.choose_file("#creative-file", &file).await;
    browser.type_into("#creative-headline", "Pasta night").await;
    browser
        .type_into("#creative-body", "Two for one, only this week")
        .await;
    let preview = browser
        .wait_for("the 9:16 preview", "const m = document.querySelector('#preview-media'); return m && m.src && m.src.startsWith('blob:') && !m.hidden && m.complete")
        .await;
    assert_eq!(preview, json!(true));
    let ratio = browser.eval("const r = document.querySelector('#preview').getBoundingClientRect(); return r.width / r.height;").await;
    assert!(
        (ratio.as_f64().unwrap() - 9.0 / 16.0).abs() < 0.02,
        "phone frame is 9:16: {ratio}"
    );
    let shot = browser.screenshot().await;
    assert_eq!(&shot[..8], b"\x89PNG\r\n\x1a\n");
    let artefacts = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-preview.png");
    std::fs::write(&artefacts, &shot).unwrap();
    println!("screenshot: {}", artefacts.display());

    browser.click("#creative-submit").await;
    browser
        .wait_for("the pending creative", "return document.querySelector('#creative-list').textContent.toLowerCase().includes('pending')")
        .await;
    assert!(
        app.slots("u1", None, 12).await.is_empty(),
        "pending creatives are not served"
    );

    // The operator approves it from the moderation queue.
    browser.click("#sign-out").await;
    browser.type_into("#token-input", ADMIN).await;
    browser.click("#sign-in").await;
    browser
        .wait_for(
            "operator role",
            "return document.querySelector('#role').textContent === 'operator'",
        )
        .await;
    let creative = browser
        .wait_for("the queued creative", "const i = document.querySelector('#moderation-list [data-creative-id]'); return i && i.dataset.creativeId")
        .await;
    browser
        .click(&format!(
            "#moderation-list [data-creative-id='{}'] .approve",
            creative.as_str().unwrap()
        ))
        .await;
    browser
        .wait_for(
            "the queue to empty",
            "return !document.querySelector('#moderation-list [data-creative-id]')",
        )
        .await;

    let slots = app.slots("u1", None, 12).await;
    assert_eq!(slots.len(), 1);
    assert_eq!(slots[0]["ad"]["campaign_id"], campaign.as_str());
    assert_eq!(slots[0]["ad"]["headline"], "Pasta night");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_ends_with_its_test_even_when_the_test_fails() {
    let browser = Browser::start(400, 300).await;
    browser.open("about:blank").await;
    let profile = browser.profile_dir().to_owned();
    assert!(
        !chromium_processes_of(&profile).is_empty(),
        "Chromium runs under profile {}",
        profile.display()
    );
    // A failing test drops its browser while it unwinds.
    let failed = std::thread::spawn(move || {
        let _browser = browser;
        panic!("this test fails on purpose, with its browser open");
    })
    .join();
    assert!(failed.is_err());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = chromium_processes_of(&profile);
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Chromium processes outlived their test: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The report panel draws the click-to-chat funnel from the report's totals: rendered → clicks
/// → conversations → messages → cost per conversation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_shows_the_click_to_chat_funnel_in_chromium() {
    let app = spawn_app(Backend::Embedded).await;
    let (adv, key) = app.advertiser("Funnel Bistro").await;
    let campaign = app
        .live_campaign(
            &key,
            json!({"objective": "chat", "chat": {"prefilled_text": "Hi"}}),
        )
        .await;
    let slots = app.slots("u1", None, 12).await;
    let click = slots[0]["ad"]["cta"]["click_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let token = slots[0]["token"].as_str().unwrap().to_owned();
    app.events(&[(&token, "render"), (&token, "click")]).await;
    // The clock's own day: the app's manual clock starts at 2026-11-26T10:00:00Z.
    let now = "2026-11-26T10:00:00Z";
    for kind in ["conversation_started", "message"] {
        let res = app
            .post(
                "/v1/conversions",
                ADMIN,
                json!({"advertiser_id": adv, "click_id": click, "type": kind, "at": now}),
            )
            .await;
        assert_eq!(res.status(), 200);
    }

    let browser = Browser::start(1280, 1000).await;
    browser.open(&app.url("/console")).await;
    browser.type_into("#token-input", &key).await;
    browser.click("#sign-in").await;
    browser
        .wait_for(
            "advertiser role",
            "return document.querySelector('#role').textContent === 'advertiser'",
        )
        .await;
    browser.click("button[data-panel='panel-reports']").await;
    browser
        .wait_for(
            "the campaign in the report select",
            &format!(
                "return !!document.querySelector(\"#report-campaign option[value='{campaign}']\")"
            ),
        )
        .await;
    browser
        .eval(&format!(
            "document.querySelector('#report-campaign').value = '{campaign}';
             document.querySelector('#report-from').value = '2026-11-01';
             document.querySelector('#report-to').value = '2026-11-30'; return true;"
        ))
        .await;
    browser.click("#report-load").await;
    let stages = browser
        .wait_for(
            "the funnel",
            "const g = [...document.querySelectorAll('#funnel-chart [data-stage]')];
             return g.length === 5 && g[2].dataset.value === '1' && g.map((s) => s.dataset.stage + '=' + s.dataset.value).join(' ')",
        )
        .await;
    assert_eq!(
        stages,
        json!("rendered=1 clicks=1 conversations=1 messages=1 cost_per_conversation=500")
    );
    let desc = browser
        .eval("return document.querySelector('#funnel-chart-desc').textContent")
        .await;
    assert!(
        desc.as_str()
            .unwrap()
            .contains("cost per conversation 0.0005"),
        "{desc}"
    );
}
