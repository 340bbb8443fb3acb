//! The console in a real headless Chromium: an advertiser signs in, creates a campaign, uploads
//! an image and sees the 9:16 preview; the operator approves it; the ad is then served. And the
//! browser a test starts ends with it, also when the test fails.

use serde_json::json;
use time::macros::datetime;

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
/// → conversations → messages → cost per conversation; beside it, why the campaign served
/// (every decision sampled here) as a chart and a sentence. The campaign form estimates a
/// campaign before it is created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_shows_the_click_to_chat_funnel_in_chromium() {
    let app =
        crate::support::spawn_app_with(Backend::Embedded, |s| s.insight.sample_rate = 1.0).await;
    let (adv, key) = app.advertiser("Funnel Bistro").await;
    let campaign = app
        .live_campaign(
            &key,
            json!({"objective": "chat", "chat": {"prefilled_text": "Hi"}}),
        )
        .await;
    let click = app.click_chat_ad("u1").await;
    // The clock's own day: the app's manual clock starts at 2026-11-26T10:00:00Z.
    let now = "2026-11-26T10:00:00Z";
    for kind in ["conversation_started", "message"] {
        assert_eq!(app.convert(&adv, &click, kind, now).await, "accepted");
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
    let won = browser
        .wait_for(
            "the delivery chart",
            "const won = document.querySelector(\"#delivery-chart [data-outcome='won']\");
             return !!won && won.dataset.value",
        )
        .await;
    assert_eq!(won, json!("1"));
    let summary = browser
        .eval("return document.querySelector('#delivery-summary').textContent")
        .await;
    assert!(
        summary
            .as_str()
            .unwrap()
            .starts_with("Sampled at 1: won all 1 of its eligible sampled requests"),
        "{summary}"
    );

    // Estimate from the campaign form: the one sampled request, won at a high bid.
    browser.click("button[data-panel='panel-campaigns']").await;
    browser.type_into("#campaign-name", "Proposal").await;
    browser.type_into("#campaign-bid", "9").await;
    browser.type_into("#campaign-budget-total", "100").await;
    browser.click("#campaign-estimate").await;
    let estimate = browser
        .wait_for(
            "the estimate",
            "const text = document.querySelector('#campaign-estimate-result').textContent;
             return text.includes('impressions') && text",
        )
        .await;
    assert!(
        estimate
            .as_str()
            .unwrap()
            .contains("the 1 sampled requests")
            && estimate.as_str().unwrap().contains("about 1 impressions"),
        "{estimate}"
    );
}

/// A campaign's history on its row in the campaigns panel: opened with the keyboard, newest
/// change first, each field as "label: old → new" with money in units, the creation as one
/// summary of its initial values, and an advertiser's `<b>` shown as text, never as markup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_history_lists_every_change_newest_first_in_chromium() {
    const ENTER: &str = "\u{E007}";
    let app = spawn_app(Backend::Embedded).await;
    let (_, key) = app.advertiser("History Bistro").await;
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

    // Created at 10:00 (the app's clock), through the console's form.
    browser.type_into("#campaign-name", "Lunch").await;
    browser.type_into("#campaign-bid", "2.5").await;
    browser.type_into("#campaign-budget-total", "100").await;
    browser.click("#campaign-submit").await;
    let campaign = browser
        .wait_for("the new campaign row", "const row = document.querySelector('#campaign-list [data-campaign-id]'); return row && row.dataset.campaignId")
        .await;
    let campaign = campaign.as_str().unwrap().to_owned();
    let row = format!("#campaign-list tr[data-campaign-id='{campaign}']");

    // 11:00: the bid goes from 2.50 to 3.75 through the edit form.
    app.clock.set(datetime!(2026-11-26 11:00:00 UTC));
    browser.click(&format!("{row} button.edit")).await;
    browser.type_into("#campaign-bid", "3.75").await;
    browser.click("#campaign-submit").await;
    browser
        .wait_for(
            "the new bid in the row",
            &format!("return document.querySelector(\"{row}\").textContent.includes('3.75')"),
        )
        .await;

    // The History button works from the keyboard and moves focus to the history's heading.
    browser.press(&format!("{row} button.history"), ENTER).await;
    let label = browser
        .eval(&format!(
            "return document.querySelector(\"{row} button.history\").getAttribute('aria-label')"
        ))
        .await;
    assert_eq!(label, json!("History Lunch"));
    browser
        .wait_for(
            "two history entries",
            "return document.querySelectorAll('#history-list > li').length === 2",
        )
        .await;
    let focused = browser.eval("return document.activeElement.id").await;
    assert_eq!(focused, json!("history-title"));

    // 12:00: renamed while the history is open; the history follows.
    app.clock.set(datetime!(2026-11-26 12:00:00 UTC));
    browser.click(&format!("{row} button.edit")).await;
    browser.type_into("#campaign-name", "Pasta <b>x</b>").await;
    browser.click("#campaign-submit").await;
    browser
        .wait_for(
            "three history entries",
            "return document.querySelectorAll('#history-list > li').length === 3",
        )
        .await;

    let entries = browser
        .eval(
            "return [...document.querySelectorAll('#history-list > li')].map((li) => ({
               at: li.dataset.at, actor: li.dataset.actor, kind: li.dataset.kind,
               time: li.querySelector('time').getAttribute('datetime'),
               head: li.querySelector('.history-head').textContent,
               fields: [...li.querySelectorAll('[data-field]')].map((f) => [f.dataset.field, f.textContent]),
             }))",
        )
        .await;
    let entries = entries.as_array().unwrap();
    assert_eq!(entries.len(), 3, "{entries:?}");
    let ats: Vec<_> = entries.iter().map(|e| e["at"].as_str().unwrap()).collect();
    assert_eq!(
        ats,
        [
            "2026-11-26T12:00:00Z",
            "2026-11-26T11:00:00Z",
            "2026-11-26T10:00:00Z"
        ],
        "newest first"
    );
    for entry in entries {
        assert_eq!(entry["actor"], "advertiser");
        assert_eq!(entry["time"], entry["at"]);
        assert!(entry["head"].as_str().unwrap().contains("advertiser"));
    }

    assert_eq!(entries[0]["kind"], "changed");
    assert!(entries[0]["head"]
        .as_str()
        .unwrap()
        .contains("changed 1 field"));
    assert_eq!(
        entries[0]["fields"],
        json!([["name", "Name: Lunch → Pasta <b>x</b>"]])
    );
    assert_eq!(entries[1]["kind"], "changed");
    assert_eq!(
        entries[1]["fields"],
        json!([["bid_cpm_micros", "Bid CPM: 2.50 → 3.75"]])
    );

    // The creation: "created" and a summary of the initial values, not a line per null.
    assert_eq!(entries[2]["kind"], "created");
    assert!(entries[2]["head"].as_str().unwrap().ends_with("created"));
    let created: std::collections::BTreeMap<String, String> = entries[2]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f[0].as_str().unwrap().into(), f[1].as_str().unwrap().into()))
        .collect();
    assert_eq!(created["name"], "Name: Lunch");
    assert_eq!(created["status"], "Status: active");
    assert_eq!(created["bid_cpm_micros"], "Bid CPM: 2.50");
    assert_eq!(created["budget"], "Budget: {total: 100.00}");
    assert!(
        !created.contains_key("end_at") && !created.contains_key("chat"),
        "empty initial values are left out: {created:?}"
    );
    let summary = browser
        .eval("return document.querySelector('#history-list > li[data-kind=created] .history-summary').textContent")
        .await;
    assert!(
        !summary.as_str().unwrap().contains("none") && !summary.as_str().unwrap().contains("→"),
        "{summary}"
    );

    // Advertiser text is text: no element made from the name, in the history or its title.
    let markup = browser
        .eval(
            "return document.querySelectorAll('#history-box b, #campaign-list b').length === 0
               && document.querySelector('#history-title').textContent",
        )
        .await;
    assert_eq!(markup, json!("History of “Pasta <b>x</b>”"));

    browser
        .eval("document.querySelector('#history-box').scrollIntoView(); return true;")
        .await;
    let shot = browser.screenshot().await;
    let artefact = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-history.png");
    std::fs::write(&artefact, &shot).unwrap();
    println!("screenshot: {}", artefact.display());

    // Closing from the keyboard hides it and gives focus back to the row's History button.
    browser.press("#history-close", ENTER).await;
    browser
        .wait_for(
            "the history to close",
            "return document.querySelector('#history-box').hidden",
        )
        .await;
    let focused = browser
        .eval("return document.activeElement.getAttribute('aria-label')")
        .await;
    assert_eq!(focused, json!("History Pasta <b>x</b>"));
}
