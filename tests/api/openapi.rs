//! `/openapi.json`: a valid OpenAPI 3 document covering every registered route, and real
//! responses that match it (checked by `openapi-spec-validator` and `jsonschema` from PyPI).

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{json, Value};
use statusads::http::error::ERROR_TABLE;

use crate::support::app::{token_of, ADMIN, CLIENT};
use crate::support::operations;
use crate::support::scratch::ScratchDir;
use crate::support::{spawn_app, Backend};

/// Every route `src/http` declares: by an actix route macro (`#[get("path")]`, which
/// `#[utoipa::path]` documents) or by a `.route("path", web::method())` call (which nothing
/// documents: only the console's own files may use it).
fn registered_routes() -> BTreeSet<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http");
    let mut found = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let compact: String = text.split_whitespace().collect::<Vec<_>>().join("");
        for method in ["get", "post", "put", "patch", "delete"] {
            for piece in compact.split(&format!("#[{method}(\"")).skip(1) {
                if let Some((path, _)) = piece.split_once('"') {
                    found.insert((method.to_uppercase(), path.to_owned()));
                }
            }
        }
        for piece in compact.split(".route(\"").skip(1) {
            let Some((path, rest)) = piece.split_once('"') else {
                continue;
            };
            let Some(method) = rest
                .strip_prefix(",web::")
                .and_then(|r| r.split_once("()"))
                .map(|(m, _)| m)
            else {
                continue;
            };
            found.insert((method.to_uppercase(), path.to_owned()));
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_is_documented_and_real_responses_match() {
    let documented: BTreeSet<(String, String)> = operations::documented()
        .into_iter()
        .map(|op| (op.method.to_string(), op.path))
        .collect();
    let registered = registered_routes();
    assert!(registered.len() > 20, "{registered:?}");
    for route in &registered {
        let static_file = route.1.starts_with("/console/");
        assert!(
            static_file || documented.contains(route),
            "{route:?} is registered but not in the OpenAPI document"
        );
    }
    // The reverse holds by construction: the document is collected from the registered
    // services.

    let app = spawn_app(Backend::Redis).await;
    let doc: Value = app
        .http
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    // Slow and greedy clients: every body has a deadline; uploads are also capped in flight.
    for (path, method, statuses) in [
        (
            "/v1/campaigns/{id}/creatives",
            "post",
            &["408", "429", "503"][..],
        ),
        ("/v1/events", "post", &["408", "429"][..]),
        ("/v1/campaigns", "post", &["408"][..]),
    ] {
        let responses = &doc["paths"][path][method]["responses"];
        for status in statuses {
            assert!(
                responses.get(*status).is_some(),
                "{method} {path} documents {status}: {responses}"
            );
        }
    }

    let mut samples = Vec::new();
    let mut record = |method: &str, path: &str, status: u16, body: Value| {
        samples.push(json!({"method": method, "path": path, "status": status, "body": body}));
    };
    let res = app
        .post(
            "/v1/advertisers",
            ADMIN,
            json!({"name": "Doc", "chat_number": "+390612345678", "currency": "EUR"}),
        )
        .await;
    let created: Value = res.json().await.unwrap();
    record("POST", "/v1/advertisers", 201, created.clone());
    let key = created["api_key"].as_str().unwrap().to_owned();
    record(
        "GET",
        "/v1/advertisers",
        200,
        app.get("/v1/advertisers", ADMIN)
            .await
            .json()
            .await
            .unwrap(),
    );
    let res = app
        .post(
            "/v1/campaigns",
            &key,
            json!({"name": "x", "bid_cpm_micros": 0, "budget": {"total_micros": 100_000_000}}),
        )
        .await;
    record("POST", "/v1/campaigns", 422, res.json().await.unwrap());
    let campaign = app
        .live_campaign(
            &key,
            json!({"objective": "chat", "chat": {"prefilled_text": "Hi"}}),
        )
        .await;
    record(
        "GET",
        "/v1/campaigns/{id}",
        200,
        app.get(&format!("/v1/campaigns/{campaign}"), &key)
            .await
            .json()
            .await
            .unwrap(),
    );
    record(
        "GET",
        "/v1/campaigns",
        200,
        app.get("/v1/campaigns", &key).await.json().await.unwrap(),
    );
    record(
        "GET",
        "/v1/campaigns/{id}/creatives",
        200,
        app.get(&format!("/v1/campaigns/{campaign}/creatives"), &key)
            .await
            .json()
            .await
            .unwrap(),
    );
    record(
        "GET",
        "/v1/moderation/creatives",
        200,
        app.get("/v1/moderation/creatives?status=approved", ADMIN)
            .await
            .json()
            .await
            .unwrap(),
    );
    let res = app
        .post(
            "/v1/slots",
            CLIENT,
            json!({"user": "u1", "statuses": 12, "context": {"country": "IT"}}),
        )
        .await;
    let slots: Value = res.json().await.unwrap();
    record("POST", "/v1/slots", 200, slots.clone());
    let token = token_of(&slots["slots"][0]);
    let res = app.post("/v1/events", CLIENT, json!({"events": [{"token": token, "type": "render"}, {"token": token, "type": "view"}, {"token": "bad", "type": "click"}]})).await;
    record("POST", "/v1/events", 200, res.json().await.unwrap());
    app.events(&[(&token, "click")]).await;
    let click = slots["slots"][0]["ad"]["cta"]["click_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let adv = created["id"].as_str().unwrap();
    let res = app.post("/v1/conversions", ADMIN, json!({"advertiser_id": adv, "click_id": click, "type": "conversation_started", "at": "2026-11-26T10:00:00Z"})).await;
    record("POST", "/v1/conversions", 200, res.json().await.unwrap());
    let res = app
        .post("/v1/messages", ADMIN, json!({"id": "m1", "advertiser_id": adv, "user": "w", "direction": "outbound", "kind": "template", "category": "marketing", "country": "IT", "at": "2026-11-26T10:00:00Z"}))
        .await;
    record("POST", "/v1/messages", 200, res.json().await.unwrap());
    let res = app.post("/v1/messages", ADMIN, json!({"id": "m2", "advertiser_id": adv, "user": "w2", "direction": "outbound", "kind": "free_form", "country": "IT", "at": "2026-11-26T10:00:00Z"})).await;
    record("POST", "/v1/messages", 422, res.json().await.unwrap());
    record(
        "GET",
        "/v1/reports/campaigns/{id}",
        200,
        app.get(
            &format!("/v1/reports/campaigns/{campaign}?from=2026-11-25&to=2026-11-26"),
            &key,
        )
        .await
        .json()
        .await
        .unwrap(),
    );
    record(
        "GET",
        "/v1/invoices/{month}",
        200,
        app.get("/v1/invoices/2026-11", &key)
            .await
            .json()
            .await
            .unwrap(),
    );
    let res = app.send(Method::GET, "/v1/campaigns", None, None).await;
    record("GET", "/v1/campaigns", 401, res.json().await.unwrap());

    let dir = ScratchDir::new("openapi");
    let (doc_path, samples_path) = (
        dir.path().join("openapi.json"),
        dir.path().join("samples.json"),
    );
    std::fs::write(&doc_path, doc.to_string()).unwrap();
    std::fs::write(&samples_path, Value::Array(samples).to_string()).unwrap();
    let output = std::process::Command::new("python3")
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openapi_check.py"))
        .arg(&doc_path)
        .arg(&samples_path)
        .output()
        .expect("python3");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{printed}");
    assert!(printed.contains("responses match"), "{printed}");
}

/// Schemathesis (PyPI) generates requests from the document, as each role: no 5xx, and every
/// response matches its documented schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_errors_or_schema_violations() {
    let app = spawn_app(Backend::Embedded).await;
    let (_, key) = app.advertiser("Fuzzed").await;
    app.live_campaign(&key, json!({})).await;
    // One run per role, side by side: each is mostly Python's own start and generation.
    let runs: Vec<_> = [ADMIN, key.as_str(), CLIENT]
        .into_iter()
        .map(|token| {
            std::process::Command::new("schemathesis")
                .arg("run")
                .arg(app.url("/openapi.json"))
                .arg("-H")
                .arg(format!("Authorization: Bearer {token}"))
                .args([
                    "--max-examples",
                    "10",
                    "--seed",
                    "1",
                    "-c",
                    "not_a_server_error,response_schema_conformance",
                ])
                .env("NO_COLOR", "1")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("schemathesis (pip install schemathesis)")
        })
        .collect();
    for run in runs {
        let output = run.wait_with_output().unwrap();
        let printed = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{printed}");
        assert!(printed.contains("passed"), "{printed}");
    }
}

/// `docs/API.md` is the guide a new user follows from a fresh clone; it must not fall behind
/// the code. Every operation of the OpenAPI document is named in it as `` `METHOD /path` ``,
/// and its error table lists exactly the codes of `ERROR_TABLE` (`src/codes.rs`), each with its
/// status, every one of which some code answers.
#[test]
fn the_guide_names_every_operation_and_every_error_code() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let guide = std::fs::read_to_string(root.join("docs/API.md")).expect("docs/API.md");

    let doc: Value =
        serde_json::from_str(&statusads::http::openapi::document().to_json().unwrap()).unwrap();
    let methods = ["get", "post", "put", "patch", "delete"];
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in methods.iter().filter(|m| item.get(**m).is_some()) {
            operations += 1;
            let named = format!("`{} {path}", method.to_uppercase());
            let found = guide.match_indices(&named).any(|(at, _)| {
                // Followed by the closing backtick or a query string.
                matches!(guide[at + named.len()..].chars().next(), Some('`' | '?'))
            });
            assert!(found, "docs/API.md never names {named}`");
        }
    }
    assert!(
        operations > 25,
        "only {operations} operations in the document"
    );

    let expected: BTreeSet<(String, u16)> = ERROR_TABLE
        .iter()
        .map(|(code, status)| (code.to_string(), *status))
        .collect();
    // A row nothing answers would be documented but never seen.
    let sources = source_text(&root.join("src"));
    for (code, _) in ERROR_TABLE {
        let constant = format!("codes::{}", code.as_str().to_ascii_uppercase());
        let used = sources.match_indices(&constant).any(|(at, _)| {
            // `codes::INVALID_CHAT` is not a use of `codes::INVALID_CHAT_NUMBER`.
            sources[at + constant.len()..]
                .chars()
                .next()
                .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'))
        });
        assert!(used, "nothing outside tests answers {code}");
    }

    let documented = error_table_of(&guide);
    let missing: Vec<_> = expected.difference(&documented).collect();
    let stale: Vec<_> = documented.difference(&expected).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "docs/API.md's error table is out of date.\n  missing (code, status): {missing:?}\n  \
         documented but never answered (or with another status): {stale:?}"
    );
}

/// The rows `` | `code` | status | … `` of the guide's `## Errors` section.
fn error_table_of(guide: &str) -> BTreeSet<(String, u16)> {
    let section = guide
        .split("\n## ")
        .find(|s| s.starts_with("Errors"))
        .expect("docs/API.md has an `## Errors` section");
    let rows: BTreeSet<(String, u16)> = section
        .lines()
        .filter_map(|line| {
            let mut cells = line.strip_prefix("| `")?.split('|');
            let code = cells.next()?.trim().strip_suffix('`')?.to_owned();
            let status = cells.next()?.trim().parse().ok()?;
            Some((code, status))
        })
        .collect();
    assert!(
        rows.len() > 30,
        "the error table has only {} rows",
        rows.len()
    );
    rows
}

/// The non-test Rust code under `src` but the code table itself, concatenated. A file's unit
/// tests sit at its end (`#[cfg(test)]` then `mod tests`), or in a `tests.rs` of their own.
fn source_text(src: &std::path::Path) -> String {
    let mut files = vec![src.to_path_buf()];
    let mut text = String::new();
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else if path.extension().is_some_and(|e| e == "rs")
            && !path.ends_with("codes.rs")
            && !path.ends_with("tests.rs")
        {
            let file = std::fs::read_to_string(&path).unwrap();
            text.push_str(file.split("#[cfg(test)]\nmod tests").next().unwrap_or(""));
        }
    }
    text
}
