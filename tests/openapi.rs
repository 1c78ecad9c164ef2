//! The OpenAPI document against a real server: it is served to anyone, lists every REST route
//! the route tables hold, documents exactly the query parameters each route accepts, and
//! every answer the server gives (successes and refusals, from requests built from the
//! document's own examples) matches the schema it documents; `openapi-spec-validator` (PyPI)
//! accepts it.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.
#![cfg(feature = "ssr")]

mod common;

use common::{fits, fixture_script, python, run_with_input, TestServer, TOKEN};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use trailwatch::server::{PROTECTED_ROUTES, PUBLIC_ROUTES};

/// The document as the server serves it, fetched without a credential.
async fn served(s: &TestServer) -> Value {
    let r = s.http.get(s.url("/api/openapi.json")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    r.json().await.unwrap()
}

/// Every operation of the document, as (method, path template).
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(|m| (m.to_uppercase(), path.clone()))
        })
        .collect()
}

#[tokio::test]
async fn the_document_is_public_and_describes_every_rest_route_with_its_permission() {
    let s = TestServer::start().await;
    let doc = served(&s).await;
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(&doc, trailwatch::server::openapi::document());
    let ops = operations(&doc);
    // Every REST and socket route of the tables (server functions and pages are not REST).
    for (method, path) in PROTECTED_ROUTES.iter().chain(PUBLIC_ROUTES) {
        if path.starts_with("/api/fn/") {
            continue;
        }
        assert!(
            ops.iter().any(|(m, p)| m == method && fits(p, path)),
            "{method} {path} is served but missing from the OpenAPI document"
        );
    }
    for (method, path) in &ops {
        let op = &doc["paths"][path][method.to_lowercase()];
        let summary = op["summary"].as_str().unwrap_or_default();
        assert!(!summary.is_empty(), "{method} {path} has no summary");
        assert!(op["tags"][0].is_string(), "{method} {path} has no tag");
        let public = PUBLIC_ROUTES.contains(&(method.as_str(), path.as_str()));
        if public {
            assert_eq!(op["security"], json!([]), "{method} {path}");
            continue;
        }
        let needed = trailwatch::server::needed_permission(&method.parse().unwrap(), path.as_str());
        assert_eq!(op["x-permission"], json!(needed), "{method} {path}");
        assert_eq!(
            op["security"],
            json!([{"bearer": []}, {"session": []}]),
            "{method} {path}"
        );
        for status in ["401", "403"] {
            assert!(
                op["responses"][status].is_object(),
                "{method} {path} does not document {status}"
            );
        }
    }
    // The page's digest holds every operation once.
    let reference = trailwatch::server::openapi::reference();
    let digested: usize = reference.groups.iter().map(|g| g.operations.len()).sum();
    assert_eq!(digested, ops.len());
}

/// One answer the server gave, for the checker.
struct Samples {
    items: Vec<Value>,
}

impl Samples {
    /// Sends `method path` (matching the document's `template`) and keeps the answer.
    async fn call(
        &mut self,
        s: &TestServer,
        template: &str,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Option<(&str, String)>,
    ) -> (u16, Value) {
        let mut req = s.http.request(method.parse().unwrap(), s.url(path));
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
        }
        if let Some((content_type, body)) = body {
            req = req.header("content-type", content_type).body(body);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let content_type = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let text = r.text().await.unwrap();
        let body: Option<Value> = serde_json::from_str(&text).ok();
        self.items.push(json!({
            "method": method, "path": template, "status": status,
            "contentType": content_type, "body": body,
        }));
        (status, body.unwrap_or(Value::Null))
    }
}

/// The JSON example the document gives for `method path`'s request body.
fn request_example(doc: &Value, method: &str, path: &str) -> String {
    let example =
        &doc["paths"][path][method]["requestBody"]["content"]["application/json"]["example"];
    assert!(example.is_object(), "{method} {path} has no JSON example");
    example.to_string()
}

/// Runs `tests/fixtures/openapi_check.py` on the document and the samples.
async fn check(doc: &Value, samples: &[Value]) -> (bool, String) {
    let input = json!({"document": doc, "samples": samples}).to_string();
    run_with_input(python(), fixture_script("openapi_check.py"), input).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_matches_the_document_and_openapi_spec_validator_accepts_it() {
    let s = TestServer::start().await;
    let doc = served(&s).await;
    let mut samples = Samples { items: Vec::new() };
    let admin = Some(TOKEN);
    let json_body = |text: String| Some(("application/json", text));

    // Sending: each ingest route with the document's own example.
    for (path, ok) in [
        ("/api/v1/events", 201),
        ("/api/v1/kubernetes/audit", 201),
        ("/v1/logs", 200),
        ("/otlp/v1/logs", 200),
    ] {
        let example = request_example(&doc, "post", path);
        let (status, body) = samples
            .call(&s, path, "POST", path, admin, json_body(example))
            .await;
        assert_eq!(status, ok, "{path}: {body}");
    }
    let (status, _) = samples
        .call(
            &s,
            "/api/v1/events",
            "POST",
            "/api/v1/events",
            admin,
            json_body(r#"{"level": "fatal", "action": "x", "user": {"id": "u"}}"#.into()),
        )
        .await;
    assert_eq!(status, 400);
    // A body in a type the route does not take is named, with what it takes.
    let (status, refused) = samples
        .call(
            &s,
            "/api/v1/kubernetes/audit",
            "POST",
            "/api/v1/kubernetes/audit",
            admin,
            Some(("application/x-ndjson", "{}\n".into())),
        )
        .await;
    assert_eq!(status, 415);
    assert_eq!(
        refused["message"],
        "Content-Type \"application/x-ndjson\" is not accepted: use application/json (the API server's webhook posts it)"
    );

    // Tokens and users, made from the examples, listed and taken away.
    let (status, made) = samples
        .call(
            &s,
            "/api/v1/tokens",
            "POST",
            "/api/v1/tokens",
            admin,
            json_body(request_example(&doc, "post", "/api/v1/tokens")),
        )
        .await;
    assert_eq!(status, 201, "{made}");
    let ingest_only = made["token"].as_str().unwrap().to_string();
    let (status, made) = samples
        .call(
            &s,
            "/api/v1/users",
            "POST",
            "/api/v1/users",
            admin,
            json_body(request_example(&doc, "post", "/api/v1/users")),
        )
        .await;
    assert_eq!(status, 201, "{made}");

    // Reading.
    let (_, page) = samples
        .call(
            &s,
            "/api/v1/events",
            "GET",
            "/api/v1/events?limit=5",
            admin,
            None,
        )
        .await;
    let id = page["items"][0]["eventId"].as_str().unwrap().to_string();
    let reads: Vec<(&str, String)> =
        vec![
        ("/api/health", "/api/health".into()),
        ("/api/openapi.json", "/api/openapi.json".into()),
        ("/api/v1/events", "/api/v1/events?level=fatal".into()),
        ("/api/v1/events/{event_id}", format!("/api/v1/events/{id}")),
        (
            "/api/v1/events/{event_id}",
            "/api/v1/events/no-such-event".into(),
        ),
        ("/api/v1/events/levels", "/api/v1/events/levels".into()),
        (
            "/api/v1/events/categories",
            "/api/v1/events/categories".into(),
        ),
        ("/api/v1/events/actions", "/api/v1/events/actions".into()),
        ("/api/v1/events/export", "/api/v1/events/export".into()),
        (
            "/api/v1/events/statistics",
            "/api/v1/events/statistics?range=7d".into(),
        ),
        (
            "/api/v1/aggregate",
            "/api/v1/aggregate?field=metadata.attempt&by=user_id&stats=count,avg,p95&interval=1d"
                .into(),
        ),
        ("/api/v1/aggregate", "/api/v1/aggregate?field=nothing".into()),
        ("/api/v1/coverage", "/api/v1/coverage".into()),
        ("/api/dashboard/summary", "/api/dashboard/summary".into()),
        (
            "/api/dashboard/insights",
            "/api/dashboard/insights?tz=Europe/Paris".into(),
        ),
        (
            "/api/v1/alerts",
            "/api/v1/alerts?unacknowledged=true".into(),
        ),
        (
            "/api/v1/alerts/{id}/deliveries",
            "/api/v1/alerts/1/deliveries".into(),
        ),
        ("/api/v1/verify", "/api/v1/verify".into()),
        ("/api/v1/chain", "/api/v1/chain".into()),
        (
            "/api/v1/subjects/{user_id}/export",
            "/api/v1/subjects/u-1042/export".into(),
        ),
        ("/api/v1/logs", "/api/v1/logs".into()),
        ("/api/v1/tokens", "/api/v1/tokens".into()),
        ("/api/v1/users", "/api/v1/users".into()),
    ];
    for (template, path) in &reads {
        let (status, body) = samples.call(&s, template, "GET", path, admin, None).await;
        assert!(status < 500, "GET {path}: {status} {body}");
    }
    // Refusals: no credential, and a scope that does not reach.
    samples
        .call(&s, "/api/v1/events", "GET", "/api/v1/events", None, None)
        .await;
    let (status, _) = samples
        .call(
            &s,
            "/api/v1/events",
            "GET",
            "/api/v1/events",
            Some(&ingest_only),
            None,
        )
        .await;
    assert_eq!(status, 403);

    // Changing.
    let changes = [
        (
            "POST",
            "/api/v1/alerts/{id}/acknowledge",
            "/api/v1/alerts/999999/acknowledge",
        ),
        (
            "DELETE",
            "/api/v1/events/cleanup",
            "/api/v1/events/cleanup?days=36500",
        ),
        (
            "POST",
            "/api/v1/subjects/{user_id}/erase",
            "/api/v1/subjects/u-1042/erase",
        ),
        (
            "DELETE",
            "/api/v1/tokens/{name}",
            "/api/v1/tokens/billing-app",
        ),
        ("DELETE", "/api/v1/users/{name}", "/api/v1/users/dana"),
    ];
    for (method, template, path) in changes {
        let (status, body) = samples.call(&s, template, method, path, admin, None).await;
        assert!(status < 500, "{method} {path}: {status} {body}");
    }

    // The socket: a real upgrade.
    let _socket = s.socket("").await;
    samples
        .items
        .push(json!({"method": "GET", "path": "/ws/audit", "status": 101,
        "contentType": "", "body": null}));

    // Every operation was tried at least once.
    let tried: BTreeSet<(String, String)> = samples
        .items
        .iter()
        .map(|i| {
            (
                i["method"].as_str().unwrap().to_string(),
                i["path"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let untried: Vec<_> = operations(&doc).difference(&tried).cloned().collect();
    assert!(untried.is_empty(), "not exercised: {untried:?}");

    let (ok, report) = check(&doc, &samples.items).await;
    assert!(ok, "{report}");
    assert!(report.contains("bodies checked"), "{report}");
}

#[tokio::test]
async fn each_route_documents_exactly_the_query_parameters_it_accepts() {
    let s = TestServer::start().await;
    let doc = served(&s).await;
    for (method, path) in operations(&doc) {
        // Query strings are read on reads and deletions; the socket needs an upgrade.
        if method == "POST" || path == "/ws/audit" {
            continue;
        }
        let op = &doc["paths"][&path][method.to_lowercase()];
        let documented: BTreeSet<String> = op["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == "query")
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect();
        let concrete = path
            .replace("{event_id}", "no-such-event")
            .replace("{id}", "1")
            .replace("{user_id}", "u-1")
            .replace("{name}", "nobody");
        let r = s
            .http
            .request(
                method.parse().unwrap(),
                s.url(&format!("{concrete}?zz_probe=1")),
            )
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        if status == 400 && body["field"] == "zz_probe" {
            let message = body["message"].as_str().unwrap();
            let known: BTreeSet<String> = message
                .split_once("known: ")
                .unwrap_or_else(|| panic!("{method} {path}: {message}"))
                .1
                .split(", ")
                .map(str::to_string)
                .collect();
            assert_eq!(documented, known, "{method} {path}: documented vs accepted");
        } else {
            assert!(
                documented.is_empty(),
                "{method} {path} ignores unknown parameters ({status}) but documents {documented:?}"
            );
        }
    }
}
