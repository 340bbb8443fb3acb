//! Consent, the carried state of users without personalisation, access and erasure.

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::contract;
use crate::support::app::spawn_app_on;
use crate::support::app::{campaigns_of, token_of, ADMIN, CLIENT};
use crate::support::redis_server::RedisServer;
use crate::support::{spawn_app, Backend, TestApp};

const FOOTBALL: &str = "channel:football";

/// A slot request of a user who did not consent to personalised ads; its answer's slots and
/// state.
async fn contextual_slots(app: &TestApp, user: &str, state: Option<&str>) -> (Vec<Value>, String) {
    let mut body = json!({
        "user": user, "statuses": 12, "consent": {"personalized": false},
        "context": {"country": "IT", "os": "android", "age": 30, "interests": [FOOTBALL]},
    });
    if let Some(state) = state {
        body["state"] = json!(state);
    }
    let res = app.post("/v1/slots", CLIENT, body).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    let state = body["state"].as_str().expect("a state answered").to_owned();
    (body["slots"].as_array().unwrap().clone(), state)
}

/// Every Redis key, with each string, hash and zset member as text: what a scan of the
/// keyspace would find about a user.
fn redis_keyspace(app: &TestApp) -> Vec<(String, String)> {
    let Some(redis) = &app.redis else {
        return Vec::new();
    };
    let mut conn = redis.connection();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut conn).unwrap();
    keys.into_iter()
        .map(|key| {
            let kind: String = redis::cmd("TYPE").arg(&key).query(&mut conn).unwrap();
            let content = match kind.as_str() {
                "string" => redis::cmd("GET").arg(&key).query(&mut conn).unwrap(),
                "hash" => {
                    let all: Vec<String> =
                        redis::cmd("HGETALL").arg(&key).query(&mut conn).unwrap();
                    all.join(" ")
                }
                "zset" => {
                    let all: Vec<String> = redis::cmd("ZRANGE")
                        .arg(&key)
                        .arg(0)
                        .arg(-1)
                        .query(&mut conn)
                        .unwrap();
                    all.join(" ")
                }
                other => other.to_owned(),
            };
            (key, content)
        })
        .collect()
}

async fn without_consent_caps_hold_through_the_state_and_nothing_is_kept(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, interests_key) = app.advertiser("Interests").await;
    let interest_campaign = app
        .live_campaign(
            &interests_key,
            json!({"bid_cpm_micros": 9_000_000, "targeting": {"interests": [FOOTBALL]}}),
        )
        .await;
    let (_, aged_key) = app.advertiser("Aged").await;
    app.live_campaign(
        &aged_key,
        json!({"bid_cpm_micros": 8_000_000, "targeting": {"age": {"min": 18, "max": 40}}}),
    )
    .await;
    let (_, key) = app.advertiser("Contextual").await;
    let capped = app
        .live_campaign(
            &key,
            json!({"targeting": {"countries": ["IT"]},
                   "frequency_caps": [{"max": 2, "per_seconds": 86400}]}),
        )
        .await;

    // With consent the same context gets the interest campaign: the request does match it.
    let res = app
        .post(
            "/v1/slots",
            CLIENT,
            json!({"user": "consenting", "statuses": 12,
                   "context": {"country": "IT", "age": 30, "interests": [FOOTBALL]}}),
        )
        .await;
    let body: Value = res.json().await.unwrap();
    assert!(body.get("state").is_none(), "no state with consent");
    assert!(campaigns_of(body["slots"].as_array().unwrap()).contains(&interest_campaign));

    // Five requests carrying the state: contextual campaigns only, the cap of 2 holds.
    let mut state: Option<String> = None;
    let mut served = 0;
    let mut tokens = Vec::new();
    for _ in 0..5 {
        let (slots, next) = contextual_slots(&app, "private", state.as_deref()).await;
        assert_eq!(
            campaigns_of(&slots)
                .iter()
                .filter(|c| **c != capped)
                .count(),
            0,
            "only the contextual campaign: {slots:?}"
        );
        for slot in &slots {
            let token = token_of(slot);
            assert_eq!(app.render(&token).await, "accepted");
            assert_eq!(
                app.render(&token).await,
                "duplicate",
                "renders dedupe per token"
            );
            tokens.push(token);
        }
        served += slots.len();
        state = Some(next);
        app.clock.advance_secs(60);
    }
    let state = state.unwrap();
    assert_eq!(served, 2, "a cap of 2 across five requests with the state");
    assert!(state.len() < 400, "state of {} bytes", state.len());

    // Tampering with one byte, another user's state or none at all: a user never seen.
    let mut tampered = state.clone().into_bytes();
    tampered[state.len() / 2] = if tampered[state.len() / 2] == b'A' {
        b'B'
    } else {
        b'A'
    };
    let tampered = String::from_utf8(tampered).unwrap();
    let (slots, _) = contextual_slots(&app, "private", Some(&tampered)).await;
    assert_eq!(
        campaigns_of(&slots),
        vec![capped.clone()],
        "altered: absent"
    );
    let (slots, _) = contextual_slots(&app, "someone-else", Some(&state)).await;
    assert_eq!(
        campaigns_of(&slots),
        vec![capped.clone()],
        "another's: absent"
    );
    let (slots, _) = contextual_slots(&app, "private", None).await;
    assert_eq!(
        campaigns_of(&slots),
        vec![capped.clone()],
        "dropping the state is the one way past the cap (documented)"
    );
    // The state still holds it.
    let (slots, state) = contextual_slots(&app, "private", Some(&state)).await;
    assert!(slots.is_empty());

    // A hide sent with the state comes back in it: the advertiser stays hidden.
    app.clock.advance_secs(2 * 86_400);
    let (slots, state) = contextual_slots(&app, "private", Some(&state)).await;
    assert_eq!(campaigns_of(&slots), vec![capped.clone()], "the cap rolled");
    let res = app
        .post(
            "/v1/events",
            CLIENT,
            json!({"events": [{"token": token_of(&slots[0]), "type": "hide"}], "state": state}),
        )
        .await;
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["results"][0]["status"], "accepted");
    let hidden = body["state"].as_str().unwrap().to_owned();
    app.clock.advance_secs(2 * 86_400);
    assert!(contextual_slots(&app, "private", Some(&hidden))
        .await
        .0
        .is_empty());
    let (slots, _) = contextual_slots(&app, "private", Some(&state)).await;
    assert_eq!(
        campaigns_of(&slots),
        vec![capped.clone()],
        "the state before the hide"
    );

    // Renders billed; nothing in the hot store names the user; the record has no reach key.
    let totals = app.report_totals(&key, &capped).await;
    assert_eq!(totals["rendered"], 2);
    for (name, content) in redis_keyspace(&app) {
        assert!(
            !name.contains("private") && !content.contains("private"),
            "{name} names the user: {content}"
        );
        if name.starts_with("u:") {
            assert!(
                name.ends_with(":consenting"),
                "only the consenting user's hash"
            );
        }
    }
    // The embedded backend's journal and snapshot never name the user either.
    for file in ["journal.log", "snapshot.json"] {
        if let Ok(text) = std::fs::read_to_string(app._data_dir.path().join(file)) {
            assert!(!text.contains("private"), "{file} names the user");
        }
    }
    let access: Value = app
        .get("/v1/users/private", ADMIN)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(access["records"], 0, "nothing stored: {access}");
}

/// `privacy.default_personalized = false` applies to requests without a consent.
async fn the_configured_default_applies_without_a_consent(backend: Backend) {
    let app =
        crate::support::spawn_app_with(backend, |s| s.privacy.default_personalized = false).await;
    let (_, key) = app.advertiser("Interests").await;
    app.live_campaign(&key, json!({"targeting": {"interests": [FOOTBALL]}}))
        .await;
    let body = json!({"user": "u", "statuses": 12, "context": {"interests": [FOOTBALL]}});
    let answer: Value = app
        .post("/v1/slots", CLIENT, body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answer["slots"], json!([]));
    assert!(answer["state"].is_string());
    let body = json!({"user": "u", "statuses": 12, "consent": {"personalized": true},
                      "context": {"interests": [FOOTBALL]}});
    let answer: Value = app
        .post("/v1/slots", CLIENT, body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answer["slots"].as_array().unwrap().len(), 1);
}

mod default {
    use super::*;
    contract!(the_configured_default_applies_without_a_consent);
}

async fn message(app: &TestApp, body: Value) -> (StatusCode, Value) {
    let res = app.post("/v1/messages", ADMIN, body).await;
    (res.status(), res.json().await.unwrap())
}

fn chat_message(
    id: &str,
    advertiser: &str,
    direction: &str,
    kind: &str,
    category: Option<&str>,
) -> Value {
    json!({"id": id, "advertiser_id": advertiser, "user": "wa-user-1", "direction": direction,
           "kind": kind, "category": category, "country": "IT", "at": "2026-11-26T10:05:00Z"})
}

pub(crate) async fn access(app: &TestApp, user: &str) -> Value {
    let res = app.get(&format!("/v1/users/{user}"), ADMIN).await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

/// The November invoice of each advertiser key (the app's manual clock is in November).
async fn invoices(app: &TestApp, keys: &[String]) -> Vec<Value> {
    let mut all = Vec::new();
    for key in keys {
        let res = app.get("/v1/invoices/2026-11", key).await;
        assert_eq!(res.status(), StatusCode::OK);
        all.push(res.json().await.unwrap());
    }
    all
}

/// `DELETE /v1/users/{user}` as the operator; its answer (200 asserted).
pub(crate) async fn erase(app: &crate::support::app::Api, user: &str) -> Value {
    let res = app
        .send(
            reqwest::Method::DELETE,
            &format!("/v1/users/{user}"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

/// What [`a_user_who_did_everything`] set up.
pub(crate) struct Activity {
    pub chat: String,
    pub capped: String,
    pub hidden: String,
    pub chat_adv: String,
    pub hidden_adv: String,
    pub keys: Vec<String>,
}

/// `wa-user-1` is served three campaigns in one session, renders them, hides one advertiser,
/// clicks the chat ad and starts a conversation (which suppresses it), messages the
/// advertiser and gets a business-initiated template from another.
pub(crate) async fn a_user_who_did_everything(app: &TestApp) -> Activity {
    let user = "wa-user-1";
    let (chat_adv, chat_key) = app.advertiser("Pizzeria Roma").await;
    let chat = app
        .live_campaign(
            &chat_key,
            json!({"objective": "chat", "bid_cpm_micros": 3_000_000, "suppress_after": "conversation",
                   "chat": {"prefilled_text": "Hi"}}),
        )
        .await;
    let (_, capped_key) = app.advertiser("Capped").await;
    let capped = app
        .live_campaign(
            &capped_key,
            json!({"bid_cpm_micros": 2_000_000, "frequency_caps": [{"max": 1, "per_seconds": 86400}]}),
        )
        .await;
    let (hidden_adv, hidden_key) = app.advertiser("Hidden").await;
    let hidden = app.live_campaign(&hidden_key, json!({})).await;
    // Its business-initiated templates count towards a limit (so the users are kept).
    let res = app
        .send(
            reqwest::Method::PATCH,
            &format!("/v1/advertisers/{hidden_adv}"),
            Some(ADMIN),
            Some(json!({"messaging_limit": 1000})),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let everything = sorted(vec![chat.clone(), capped.clone(), hidden.clone()]);

    // The user sees all three in one session, renders them, hides one, clicks the chat ad,
    // starts a conversation and gets a business-initiated template.
    let slots = app.slots(user, Some("session-1"), 12).await;
    assert_eq!(sorted(campaigns_of(&slots)), everything);
    let token = |campaign: &str| {
        token_of(
            slots
                .iter()
                .find(|s| s["ad"]["campaign_id"] == campaign)
                .unwrap(),
        )
    };
    let click_id = slots
        .iter()
        .find(|s| s["ad"]["campaign_id"] == chat)
        .unwrap()["ad"]["cta"]["click_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let renders: Vec<(String, &str)> = [&chat, &capped, &hidden]
        .iter()
        .map(|c| (token(c), "render"))
        .collect();
    let renders: Vec<(&str, &str)> = renders.iter().map(|(t, k)| (t.as_str(), *k)).collect();
    assert!(app.events(&renders).await.iter().all(|s| s == "accepted"));
    let (chat_token, hidden_token) = (token(&chat), token(&hidden));
    assert_eq!(
        app.events(&[(&chat_token, "click"), (&hidden_token, "hide")])
            .await,
        vec!["accepted", "accepted"]
    );
    let res = app
        .post("/v1/conversions", ADMIN, json!({"advertiser_id": chat_adv, "click_id": click_id,
                                                "type": "conversation_started", "at": "2026-11-26T10:01:00Z"}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let (status, _) = message(
        app,
        chat_message("in-1", &chat_adv, "inbound", "free_form", None),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = message(
        app,
        chat_message(
            "tpl-1",
            &hidden_adv,
            "outbound",
            "template",
            Some("marketing"),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    Activity {
        chat,
        capped,
        hidden,
        chat_adv,
        hidden_adv,
        keys: vec![chat_key, capped_key, hidden_key],
    }
}

fn sorted(mut list: Vec<String>) -> Vec<String> {
    list.sort();
    list
}

async fn access_lists_what_the_user_did_and_erasure_makes_them_new(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = "wa-user-1";
    let Activity {
        chat,
        capped,
        hidden,
        chat_adv,
        hidden_adv,
        keys,
    } = a_user_who_did_everything(&app).await;
    let everything = sorted(vec![chat.clone(), capped.clone(), hidden.clone()]);
    let served = |slots: &[Value]| sorted(campaigns_of(slots));
    let before = access(&app, user).await;
    let ids = |list: &Value, field: &str| -> Vec<String> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|entry| entry[field].as_str().unwrap().to_owned())
            .collect()
    };
    let mut capped_ids = ids(&before["caps"]["campaigns"], "id");
    capped_ids.sort();
    assert_eq!(
        capped_ids,
        vec![capped.clone()],
        "render times kept for capped campaigns: {before}"
    );
    assert_eq!(
        ids(&before["hides"], "advertiser_id"),
        vec![hidden_adv.clone()]
    );
    assert_eq!(
        ids(&before["suppressions"], "campaign_id"),
        vec![chat.clone()]
    );
    assert_eq!(before["sessions"].as_array().unwrap().len(), 1);
    assert_eq!(before["sessions"][0]["ads_served"], 3);
    assert!(!before["sessions"][0]["session_hash"]
        .as_str()
        .unwrap()
        .contains("session-1"));
    assert_eq!(ids(&before["clicks"], "campaign_id"), vec![chat.clone()]);
    assert_eq!(before["clicks"][0]["conversation_started"], true);
    assert_eq!(
        ids(&before["conversation_windows"], "advertiser_id"),
        vec![chat_adv.clone()]
    );
    assert_eq!(
        ids(&before["business_initiated"], "advertiser_id"),
        vec![hidden_adv.clone()]
    );
    assert_eq!(
        before["billing_records"], 5,
        "three renders, a click and a hide: {before}"
    );
    assert!(before["records"].as_u64().unwrap() > 10);
    assert!(!before.to_string().contains("session-1"));

    // Erasure: every record goes, billing stays to the micro.
    let invoices_before = invoices(&app, &keys).await;
    let erased = erase(&app, user).await;
    assert_eq!(erased["erased"], true);
    assert_eq!(erased["billing_records_unlinked"], 5);
    let after = access(&app, user).await;
    assert_eq!(after["records"], 0, "nothing left: {after}");
    for (name, content) in redis_keyspace(&app) {
        assert!(
            !name.contains(user) && !content.contains(user),
            "{name} still names the user: {content}"
        );
    }
    let invoices_after = invoices(&app, &keys).await;
    for (before, after) in invoices_before.iter().zip(&invoices_after) {
        assert_eq!(before["total_micros"], after["total_micros"]);
        assert_eq!(before["digest"], after["digest"]);
        assert_eq!(before["lines"], after["lines"]);
    }
    // Idempotent; an unknown user is erased too.
    for who in [user, "never-seen"] {
        erase(&app, who).await;
    }

    // The user is new: the cap, the hide and the suppression are gone, and an outbound
    // free-form message is outside any window.
    let (status, body) = message(
        &app,
        chat_message("out-1", &chat_adv, "outbound", "free_form", None),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "outside_service_window");
    assert_eq!(
        served(&app.slots(user, Some("session-1"), 12).await),
        everything
    );

    // Only the operator may ask; a path that is no user id is refused.
    let res = app.get(&format!("/v1/users/{user}"), CLIENT).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = app
        .get(&format!("/v1/users/{}", "x".repeat(200)), ADMIN)
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

/// A slot served and never rendered (a prefetch) keeps the user's state only as its rules say:
/// the reservation until its token lapses, the session 6 hours. The campaign's year-long cap
/// window is kept only once something rendered.
async fn a_slot_never_rendered_keeps_the_user_for_the_session_only(backend: Backend) {
    const HOUR: i64 = 3_600_000;
    let app = spawn_app(backend).await;
    let (_, key) = app.advertiser("Yearly").await;
    app.live_campaign(
        &key,
        json!({"frequency_caps": [{"max": 1, "per_seconds": 31_536_000}]}),
    )
    .await;
    let user = "prefetcher";
    assert_eq!(app.slots(user, Some("s1"), 12).await.len(), 1);
    assert!(access(&app, user).await["records"].as_u64().unwrap() > 0);
    if backend == Backend::Redis {
        let named = keys_naming(&app, user);
        assert!(!named.is_empty());
        for (name, ttl) in named {
            assert!(ttl > 0 && ttl <= 6 * HOUR, "{name} lives {ttl} ms");
        }
    }
    // Redis expires the key on its own clock (checked above); the embedded store and the
    // in-process Redis on the app's.
    app.clock.advance_secs(6 * 3600 + 60);
    if backend != Backend::Redis {
        // The node's own view of the user goes within a second (it is used for 30 s).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let left = access(&app, user).await;
            if left["records"] == 0 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{left}");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

/// What no rule reads any more leaves a user's hash at their next decision, though the user
/// stays active and the hash lives on: a hide past its 90 days, and render times older than
/// any cap window.
async fn a_hide_past_its_rule_leaves_the_users_state(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, key) = app.advertiser("Hidden once").await;
    app.live_campaign(
        &key,
        json!({"frequency_caps": [{"max": 5, "per_seconds": 86_400}]}),
    )
    .await;
    let user = "wa-user-hid";
    let token = token_of(&app.slots(user, Some("s1"), 12).await[0]);
    assert_eq!(app.render(&token).await, "accepted");
    assert_eq!(app.events(&[(&token, "hide")]).await, ["accepted"]);
    let before = access(&app, user).await;
    assert_eq!(before["hides"].as_array().unwrap().len(), 1, "{before}");
    assert_eq!(
        before["caps"]["campaigns"].as_array().unwrap().len(),
        1,
        "{before}"
    );

    // 91 days on the service's clock: the hide is over.
    app.clock.advance_secs(91 * 86_400);
    assert_eq!(
        app.slots(user, Some("s2"), 12).await.len(),
        1,
        "served again"
    );
    let after = access(&app, user).await;
    assert_eq!(after["hides"], json!([]), "{after}");
    // A year on: no cap reads that render.
    app.clock.advance_secs(275 * 86_400);
    assert_eq!(app.slots(user, Some("s3"), 12).await.len(), 1);
    let after = access(&app, user).await;
    assert_eq!(after["caps"]["campaigns"], json!([]), "{after}");
}

/// An erased user's insight samples go with the erasure (the right of access counts them), and
/// only theirs; the deletion of several users' samples at once (another node reading erasures)
/// takes each of them and leaves every other user's, and those without a key.
async fn an_erasure_takes_the_users_insight_samples_and_only_theirs(backend: Backend) {
    let app = crate::support::spawn_app_with(backend, |s| s.insight.sample_rate = 1.0).await;
    let (_, key) = app.advertiser("Sampled").await;
    app.live_campaign(&key, json!({})).await;
    for user in ["wa-sampled-1", "wa-sampled-2"] {
        assert_eq!(app.slots(user, None, 12).await.len(), 1);
    }
    let samples = |body: &Value| body["insight_samples"].as_u64().unwrap();
    assert_eq!(samples(&access(&app, "wa-sampled-1").await), 1);
    erase(&app.api, "wa-sampled-1").await;
    assert_eq!(samples(&access(&app, "wa-sampled-1").await), 0);
    assert_eq!(samples(&access(&app, "wa-sampled-2").await), 1);

    let record = &app.state.record;
    let batch = statusads::record::insight::InsightBatch {
        requests: ["k-a", "k-b", "k-c", ""]
            .iter()
            .enumerate()
            .map(|(i, key)| {
                (
                    format!("sample-{i}"),
                    1_000,
                    key.to_string(),
                    "{}".to_owned(),
                )
            })
            .collect(),
        ..Default::default()
    };
    record.write_insight(&batch).await.unwrap();
    assert_eq!(
        record
            .delete_samples_of(&["k-a", "k-c", "k-x", ""])
            .await
            .unwrap(),
        2
    );
    for (key, left) in [("k-a", 0), ("k-b", 1), ("k-c", 0)] {
        assert_eq!(
            record.sampled_requests_of(key).await.unwrap(),
            left,
            "{key}"
        );
    }
}

contract!(
    an_erasure_takes_the_users_insight_samples_and_only_theirs,
    without_consent_caps_hold_through_the_state_and_nothing_is_kept,
    a_hide_past_its_rule_leaves_the_users_state,
    access_lists_what_the_user_did_and_erasure_makes_them_new,
    a_slot_never_rendered_keeps_the_user_for_the_session_only,
);

/// Every Redis key that names `user`, with its remaining TTL (ms; -1 = none).
fn keys_naming(app: &TestApp, user: &str) -> Vec<(String, i64)> {
    let Some(redis) = &app.redis else {
        return Vec::new();
    };
    let mut conn = redis.connection();
    redis_keyspace(app)
        .into_iter()
        .filter(|(name, content)| name.contains(user) || content.contains(user))
        .map(|(name, _)| {
            let ttl: i64 = redis::cmd("PTTL").arg(&name).query(&mut conn).unwrap();
            (name, ttl)
        })
        .collect()
}

/// Export rounds that began after this call have ended (each round also clears what has
/// passed its retention).
async fn rounds_done(app: &TestApp) {
    for _ in 0..3 {
        app.state.exporter.caught_up().await;
    }
}

async fn nothing_per_user_outlives_its_rule(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = "wa-user-1";
    a_user_who_did_everything(&app).await;
    rounds_done(&app).await;

    // Redis expires every key that names the user, none later than its rule; the longest is
    // the user's hash after a conversation suppressed a campaign (365 days).
    const DAY: i64 = 86_400_000;
    let named = keys_naming(&app, user);
    if backend == Backend::Redis {
        let rule = |name: &str| match name.split(':').next().unwrap() {
            "u" => 366 * DAY,
            "click" => 30 * DAY,
            // Until the window closes and a day: the messages are dated 10:05, five minutes
            // after the service's clock.
            "conv" => 2 * DAY + 5 * 60_000,
            "initiated" => 2 * DAY,
            other => panic!("a key of kind {other} names the user: {name}"),
        };
        let kinds: std::collections::BTreeSet<&str> = named
            .iter()
            .map(|(n, _)| n.split(':').next().unwrap())
            .collect();
        assert_eq!(
            kinds.into_iter().collect::<Vec<_>>(),
            vec!["click", "conv", "initiated", "u"],
            "{named:?}"
        );
        for (name, ttl) in &named {
            assert!(*ttl > 0 && *ttl <= rule(name), "{name} lives {ttl} ms");
        }
        let longest = named.iter().map(|(_, ttl)| *ttl).max().unwrap();
        assert!(
            longest > 364 * DAY,
            "the suppression is the longest rule: {longest}"
        );
    }
    assert!(access(&app, user).await["records"].as_u64().unwrap() > 10);

    // Past every rule on the service's clock: nothing left about the user (the embedded
    // backend and the in-process Redis expire on that clock; the record's keyed hashes expire
    // after 400 days on all). Real Redis TTLs do not follow the test's clock: checked above
    // instead.
    app.clock.advance_secs(400 * 86_400 + 60);
    rounds_done(&app).await;
    let left = access(&app, user).await;
    assert_eq!(left["billing_records"], 0, "{left}");
    if backend != Backend::Redis {
        assert_eq!(left["records"], 0, "{left}");
    }
    // A shorter span keeps what is still within its rule: a hide lasts 90 days.
    let app = spawn_app(backend).await;
    let Activity { hidden_adv, .. } = a_user_who_did_everything(&app).await;
    app.clock.advance_secs(89 * 86_400);
    rounds_done(&app).await;
    let kept = access(&app, user).await;
    assert_eq!(kept["hides"][0]["advertiser_id"], hidden_adv.as_str());
    assert_eq!(
        kept["billing_records"], 5,
        "the record keeps reach for 400 days"
    );
}

mod retention {
    use super::*;
    contract!(nothing_per_user_outlives_its_rule);
}

/// Two nodes on a real 3-master Redis Cluster: the state carries caps from one node to the
/// other; access and erasure reach the user's shard and every advertiser's; the other node
/// drops its recent view of the erased user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_redis_cluster_state_access_and_erasure_span_nodes() {
    let cluster = crate::support::redis_cluster::RedisCluster::start();
    let seeds = cluster.seeds();
    let first =
        crate::support::app::spawn_app_on(None, |s| s.store.cluster_nodes = seeds.clone()).await;
    let second =
        crate::support::app::spawn_app_on(None, |s| s.store.cluster_nodes = seeds.clone()).await;
    let user = "wa-user-1";
    let Activity { chat, .. } = a_user_who_did_everything(&first).await;
    let (_, key) = first.advertiser("Contextual").await;
    let capped = first
        .live_campaign(
            &key,
            json!({"bid_cpm_micros": 9_000_000,
                   "frequency_caps": [{"max": 1, "per_seconds": 86400}]}),
        )
        .await;
    second.state.catalog.refresh().await.unwrap();

    // Without consent: served on one node, the state holds the cap on the other.
    let (slots, state) = contextual_slots(&first, "private", None).await;
    assert!(campaigns_of(&slots).contains(&capped));
    // A chat ad clicked without consent converts (its click names no user to suppress for).
    let chat_slot = slots
        .iter()
        .find(|s| s["ad"]["campaign_id"] == chat.as_str())
        .expect("the chat campaign is contextual too");
    let chat_token = token_of(chat_slot);
    assert_eq!(
        first
            .events(&[(&chat_token, "render"), (&chat_token, "click")])
            .await,
        vec!["accepted", "accepted"]
    );
    let click_id = chat_slot["ad"]["cta"]["click_id"].as_str().unwrap();
    let chat_adv = chat_slot["ad"]["advertiser"]["id"].as_str().unwrap();
    let res = second
        .post(
            "/v1/conversions",
            ADMIN,
            json!({"advertiser_id": chat_adv, "click_id": click_id,
                   "type": "conversation_started", "at": "2026-11-26T10:02:00Z"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "accepted");
    let (slots, _) = contextual_slots(&second, "private", Some(&state)).await;
    assert!(!campaigns_of(&slots).contains(&capped), "{slots:?}");

    // The second node holds a view of the user (a decision it committed).
    let slots = second.slots(user, None, 12).await;
    assert_eq!(campaigns_of(&slots), vec![capped.clone()]);
    assert!(second.state.server.recent.holds(user));

    let before = access(&second, user).await;
    assert_eq!(
        before["clicks"][0]["campaign_id"],
        chat.as_str(),
        "{before}"
    );
    assert_eq!(before["conversation_windows"].as_array().unwrap().len(), 1);
    assert_eq!(before["business_initiated"].as_array().unwrap().len(), 1);
    // The erasure answers once the other node has acted on it.
    assert_eq!(erase(&first, user).await["nodes_pending"], 0);
    assert!(
        !second.state.server.recent.holds(user),
        "the other node dropped its view of the erased user before the answer"
    );
    assert_eq!(access(&second, user).await["records"], 0);

    // A day on, every node has rewritten its append-only file: none names the user.
    let named_on_disk = || {
        walkdir(cluster.dir())
            .iter()
            .any(|f| String::from_utf8_lossy(&std::fs::read(f).unwrap_or_default()).contains(user))
    };
    assert!(
        named_on_disk(),
        "the erased user's commands are in the files"
    );
    first_rewrites_ended(&cluster.seeds()).await;
    first.clock.advance_secs(86_400 + 600);
    rounds_done(&first).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while named_on_disk() {
        assert!(
            std::time::Instant::now() < deadline,
            "a day after the erasure a node's append-only file still names the user"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// An erasure answers once every other live node has acted on it. A node that beats but does
/// not confirm (its watch stuck, or an earlier build that counts no rounds) is waited for up to
/// five seconds and then named in `nodes_pending`; one that stopped beating is not waited for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erasure_waits_for_every_live_node_and_says_which_did_not_act() {
    use redis::AsyncCommands;
    let first = spawn_app(Backend::Redis).await;
    let redis_url = first.redis.as_ref().unwrap().url();
    let second = {
        let (redis_url, database_url) = (redis_url.clone(), first.database_url.clone());
        crate::support::app::spawn_app_on(None, move |s| {
            s.store.redis_url = redis_url.into();
            s.store.database_url = database_url.into();
        })
        .await
    };
    let (_, key) = first.advertiser("Shop").await;
    first.live_campaign(&key, json!({})).await;
    second.state.catalog.refresh().await.unwrap();
    let user = "wa-user-1";
    assert!(!second.slots(user, None, 12).await.is_empty());
    assert!(second.state.server.recent.holds(user));
    assert_eq!(erase(&first, user).await["nodes_pending"], 0);
    assert!(!second.state.server.recent.holds(user));

    // Two nodes that beat as the first does: one whose rounds never move, one that counts none.
    let mut redis = first.redis.as_ref().unwrap().async_connection().await;
    let beats: std::collections::HashMap<String, i64> =
        redis.hgetall("nodes:{catalog}").await.unwrap();
    let beat = *beats.values().max().unwrap();
    for ghost in ["stuck", "earlier-build"] {
        let () = redis.hset("nodes:{catalog}", ghost, beat).await.unwrap();
    }
    let () = redis
        .hset("erasures:{catalog}:watched", "stuck", 7)
        .await
        .unwrap();
    let asked = std::time::Instant::now();
    assert_eq!(erase(&first, "wa-user-2").await["nodes_pending"], 2);
    let waited = asked.elapsed();
    assert!(
        waited >= statusads::privacy::subject::CONFIRM_WITHIN,
        "{waited:?}"
    );
    // Nodes that stopped beating are not waited for, and their counts go.
    first.clock.advance_secs(6);
    second.clock.advance_secs(6);
    second.refresh_spend().await;
    first.refresh_spend().await;
    let asked = std::time::Instant::now();
    assert_eq!(erase(&first, "wa-user-3").await["nodes_pending"], 0);
    assert!(asked.elapsed() < statusads::privacy::subject::CONFIRM_WITHIN);
    let watched: std::collections::HashMap<String, u64> =
        redis.hgetall("erasures:{catalog}:watched").await.unwrap();
    assert!(!watched.contains_key("stuck"), "{watched:?}");
}

/// The wait is for two rounds counted after the announcement (the first may have read just
/// before it): a node counting one more round is still waited for, one counting two is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erasure_waits_for_two_rounds_of_each_node() {
    use redis::AsyncCommands;
    let app = Arc::new(spawn_app(Backend::Redis).await);
    let mut redis = app.redis.as_ref().unwrap().async_connection().await;
    app.refresh_spend().await;
    let beats: std::collections::HashMap<String, i64> =
        redis.hgetall("nodes:{catalog}").await.unwrap();
    let () = redis
        .hset("nodes:{catalog}", "ghost", *beats.values().max().unwrap())
        .await
        .unwrap();
    let () = redis
        .hset("erasures:{catalog}:watched", "ghost", 5)
        .await
        .unwrap();
    let asked = std::time::Instant::now();
    let erasing = tokio::spawn({
        let app = app.clone();
        async move { erase(&app, "wa-user-1").await }
    });
    while redis.zcard::<_, u64>("erasures:{catalog}").await.unwrap() == 0 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // After the erasure's first read of the counts, which follows its announcement at once.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let () = redis
        .hincr("erasures:{catalog}:watched", "ghost", 1)
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(!erasing.is_finished(), "answered after one round");
    let () = redis
        .hincr("erasures:{catalog}:watched", "ghost", 1)
        .await
        .unwrap();
    let answer = erasing.await.unwrap();
    assert_eq!(answer["nodes_pending"], 0, "{answer}");
    assert!(asked.elapsed() < statusads::privacy::subject::CONFIRM_WITHIN);
}

/// Logs outlive erasures, so no log line names a user: a request's span names its route, not
/// its path (`/v1/users/{user}`), and the erasure's own line carries the keyed hash only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_log_line_names_the_user_an_erasure_was_for() {
    use crate::support::service::{ServiceProcess, Until};
    let service =
        ServiceProcess::start_configured("", Until::Ready, &[("STATUSADS_LOG", "info")]).await;
    let user = "wa-user-in-no-log";
    assert_eq!(service.api.slots(user, Some("s1"), 12).await.len(), 0);
    erase(&service.api, user).await;
    let log = service.log();
    assert!(log.contains("erased a user's records"), "{log}");
    assert!(log.contains("/v1/users/{user}"), "the route: {log}");
    assert!(!log.contains(user), "{log}");
}

/// Redis keeps every write in its append-only file until the file is rewritten, the DEL of an
/// erasure too: the service asks every Redis node for a rewrite once a day, so an erased user's
/// commands leave Redis's disk within a day of the erasure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erased_user_leaves_redis_append_only_file_within_a_day() {
    let app = spawn_app_on(Some(RedisServer::start_durable()), |_| {}).await;
    let (_, key) = app.advertiser("Disk").await;
    app.live_campaign(
        &key,
        json!({"frequency_caps": [{"max": 1, "per_seconds": 86400}]}),
    )
    .await;
    let user = "wa-user-in-the-aof";
    let slots = app.slots(user, None, 12).await;
    assert_eq!(app.render(&token_of(&slots[0])).await, "accepted");
    rounds_done(&app).await;
    let dir = app.redis.as_ref().unwrap().dir().to_path_buf();
    let on_disk = || {
        let mut text = String::new();
        for entry in walkdir(&dir) {
            text.push_str(&String::from_utf8_lossy(
                &std::fs::read(entry).unwrap_or_default(),
            ));
        }
        text
    };
    assert!(
        on_disk().contains(user),
        "the render is in the append-only file"
    );
    erase(&app.api, user).await;
    rounds_done(&app).await;
    assert!(
        on_disk().contains(user),
        "an erasure alone leaves the commands before it"
    );

    // The rewrite asked at the first check has ended (a day is far longer than a rewrite):
    // otherwise the node is busy at the next check and waits for the one after.
    first_rewrites_ended(&[app.redis.as_ref().unwrap().url()]).await;
    app.clock.advance_secs(86_400 + 600);
    rounds_done(&app).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while on_disk().contains(user) {
        assert!(
            std::time::Instant::now() < deadline,
            "a day after the erasure the append-only file still names the user: {:?}",
            walkdir(&dir)
                .into_iter()
                .map(|f| (
                    f.clone(),
                    std::fs::read(&f)
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                        .unwrap_or_default()
                ))
                .filter(|(_, text)| text.contains(user))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Waits until each Redis at `urls` has run the rewrite asked at the first check and runs none
/// (a day is far longer than a rewrite; a node still busy at the next check waits for the one
/// after, which these tests do not advance to).
async fn first_rewrites_ended(urls: &[String]) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    for url in urls {
        let mut redis = redis::Client::open(url.as_str())
            .unwrap()
            .get_connection()
            .unwrap();
        loop {
            let info: String = redis::cmd("INFO")
                .arg("persistence")
                .query(&mut redis)
                .unwrap();
            let busy = ["aof_rewrite_in_progress:1", "aof_rewrite_scheduled:1"]
                .iter()
                .any(|line| info.contains(line));
            if !info.contains("aof_rewrites:0") && !busy {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the first rewrite of {url} never ended: {info}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

/// Every file under `dir`, recursively (Redis 7 keeps its AOF parts in `appendonlydir`).
fn walkdir(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walkdir(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// The embedded backend's files hold no session id (a hash of it, as its memory does), and
/// what expired leaves them within a day: the journal is compacted at least daily, whatever
/// its length.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_files_keep_no_session_id_and_nothing_past_a_day_after_its_rule() {
    let app = spawn_app(Backend::Embedded).await;
    let (_, key) = app.advertiser("Files").await;
    app.live_campaign(&key, json!({})).await;
    let (user, session) = ("wa-user-on-disk", "session-id-on-disk");
    assert_eq!(app.slots(user, Some(session), 12).await.len(), 1);
    rounds_done(&app).await;
    let files = || {
        ["journal.log", "snapshot.json"]
            .iter()
            .map(|name| {
                std::fs::read_to_string(app._data_dir.path().join(name)).unwrap_or_default()
            })
            .collect::<String>()
    };
    let written = files();
    assert!(written.contains(user), "the decision is journaled");
    assert!(!written.contains(session), "{written}");

    // A day on: the session and the reservation expired hours ago; compaction drops them.
    app.clock.advance_secs(86_400 + 60);
    rounds_done(&app).await;
    let left = files();
    assert!(!left.contains(user), "{left}");
}

/// A user's hash found without an expiry (a script that failed before setting it) is given the
/// longest rule by the next decision, never cut to the decision's own 6 hours: the render times
/// it may hold keep their caps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_hash_found_without_an_expiry_gets_the_longest_rule() {
    const DAY: i64 = 86_400_000;
    let app = spawn_app(Backend::Redis).await;
    let (_, key) = app.advertiser("Persisted").await;
    app.live_campaign(&key, json!({})).await;
    let hash_ttl = |user: &str| {
        keys_naming(&app, user)
            .into_iter()
            .find(|(name, _)| name.starts_with("u:"))
            .expect("the user's hash")
    };
    let user = "wa-user-persisted";
    assert_eq!(app.slots(user, Some("s1"), 12).await.len(), 1);
    let (name, _) = hash_ttl(user);
    let mut conn = app.redis.as_ref().unwrap().connection();
    let persist = |conn: &mut redis::Connection| {
        let _: i64 = redis::cmd("PERSIST").arg(&name).query(conn).unwrap();
    };
    let ttl = |conn: &mut redis::Connection| -> i64 {
        redis::cmd("PTTL").arg(&name).query(conn).unwrap()
    };
    persist(&mut conn);
    let slots = app.slots(user, Some("s2"), 12).await;
    assert_eq!(slots.len(), 1);
    assert!(ttl(&mut conn) > 365 * DAY, "after a decision");
    // And a render (whose own rule here is two days) gives the same.
    persist(&mut conn);
    assert_eq!(app.render(&token_of(&slots[0])).await, "accepted");
    assert!(ttl(&mut conn) > 365 * DAY, "after a render");

    // A hash the render empties on the way (a first decision with no session: its reservation
    // is its only field) keeps the render's own rule, not the longest.
    let newcomer = "wa-user-no-session";
    let slots = app.slots(newcomer, None, 12).await;
    let later = token_of(&app.slots(newcomer, None, 12).await[0]);
    assert_eq!(app.render(&token_of(&slots[0])).await, "accepted");
    let (name, ttl) = hash_ttl(newcomer);
    assert!(ttl > 0 && ttl <= 2 * DAY, "{name} lives {ttl} ms");
    // Erased, then a slot served before renders: the hash the render creates keeps the
    // render's own rule too.
    erase(&app, newcomer).await;
    assert_eq!(app.render(&later).await, "accepted");
    let (name, ttl) = hash_ttl(newcomer);
    assert!(
        ttl > 0 && ttl <= 2 * DAY,
        "recreated: {name} lives {ttl} ms"
    );
}
