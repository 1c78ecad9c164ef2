//! Regression tests for what an attacker's probe found, each through a real server on
//! loopback: the `self` role's scope on every route it may call, the socket's origin rule,
//! server functions' client errors, slow and idle connections, provenance that a client
//! cannot forge, and the admin token's sign-in apart from password lock-outs.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.
#![cfg(feature = "ssr")]

mod common;

use common::{add_user, call, login, Cred, TestServer, PASSWORD, TOKEN};
use futures::StreamExt;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use trailwatch::model::{Grant, Role};
use trailwatch::server::{needed_permission, page_permission, PROTECTED_ROUTES};

/// Marks every value of the other actors' events; none may reach the `self` user.
const MARK: &str = "zzmark";
const OTHER_IP: &str = "203.0.113.77";
/// The other actors' events: more than any count of Alice's own could reach.
const OTHERS: usize = 120;

/// Alice's own events, then others' (some acting on her as their entity), posted with the
/// admin token. Returns the id of one of Alice's events and one of someone else's.
async fn alice_and_others(s: &TestServer) -> (String, String) {
    let own: Vec<Value> = (0..3)
        .map(|i| {
            json!({"action": "file.read", "level": "info", "category": "data_management",
                   "user": {"id": "alice", "username": "Alice"},
                   "request": {"ip": "10.0.0.5", "userAgent": "AliceBrowser/1"},
                   "description": format!("alice reads file {i}")})
        })
        .collect();
    let (status, body) = s.post(&Value::Array(own)).await;
    assert_eq!(status, 201, "{body}");
    let others: Vec<Value> = (0..OTHERS)
        .map(|i| {
            json!({"action": format!("{MARK}.act"), "level": "critical", "category": "security",
                   "outcome": "denied",
                   "user": {"id": format!("{MARK}-user-{}", i % 3), "username": format!("{MARK} Person")},
                   "entity": {"type": "user", "id": if i % 2 == 0 { "alice" } else { "doc-9" },
                              "name": format!("{MARK} entity")},
                   "request": {"ip": OTHER_IP, "userAgent": format!("{MARK}Agent/9"),
                               "method": "POST", "path": format!("/{MARK}/path")},
                   "metadata": {"secret": MARK}, "correlationId": format!("{MARK}-corr"),
                   "sessionId": format!("{MARK}-session"),
                   "description": format!("{MARK} acted on alice {i}")})
        })
        .collect();
    let (status, body) = s.post(&Value::Array(others)).await;
    assert_eq!(status, 201, "{body}");
    let (_, page) = s.get("/api/v1/events?limit=500").await;
    let id_of = |pred: &dyn Fn(&Value) -> bool| {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| pred(e))
            .map(|e| e["eventId"].as_str().unwrap().to_string())
            .unwrap()
    };
    (
        id_of(&|e| e["user"]["id"] == "alice"),
        id_of(&|e| e["user"]["id"] != "alice"),
    )
}

/// A server holding Alice's and the others' events, and a session of Alice's as a `self` user
/// whose actor id is `alice`: the cookie pair, her event's id and another actor's.
async fn alice_signed_in() -> (TestServer, String, String, String) {
    let s = TestServer::start().await;
    let (own_id, other_id) = alice_and_others(&s).await;
    add_user(&s, "alice-self", "self", Some("alice")).await;
    let cookie = login(&s, "alice-self", PASSWORD).await.unwrap();
    (s, cookie, own_id, other_id)
}

/// Whether `text` holds anything of the other actors' events.
fn leaks(text: &str) -> Option<&'static str> {
    [MARK, OTHER_IP].into_iter().find(|m| text.contains(m))
}

/// Every count or total in a JSON answer, with where it stands.
fn counts(v: &Value, at: &str, out: &mut Vec<(String, u64)>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                let path = format!("{at}.{k}");
                let lower = k.to_ascii_lowercase();
                if let Some(n) = v.as_u64() {
                    if lower.contains("count") || lower.contains("total") {
                        out.push((path.clone(), n));
                    }
                }
                counts(v, &path, out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                counts(v, &format!("{at}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Checks one answer to the `self` user: nothing of another actor, no count that includes
/// their events.
fn assert_scoped(route: &str, status: u16, text: &str) {
    assert!(status < 500, "{route}: {status} {text}");
    if let Some(mark) = leaks(text) {
        panic!("{route} leaked {mark:?} to the self role: {text}");
    }
    if let Ok(v) = serde_json::from_str::<Value>(text) {
        let mut found = Vec::new();
        counts(&v, "", &mut found);
        for (path, n) in found {
            // Alice has 3 events of her own plus her sign-ins and exports; every count that
            // takes in the others' 120 is far above that.
            assert!(
                n < 60,
                "{route}: {path} = {n} counts other actors' events: {text}"
            );
        }
    }
}

async fn text_of(r: reqwest::Response) -> (u16, String) {
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

/// The arguments a server function that the `self` role may call is walked with; `{}` for
/// one the walk has no arguments for (a new function is still called and checked).
fn fn_args(path: &str, own_id: &str, other_id: &str) -> Vec<Value> {
    let range = json!({"start_date": "2000-01-01T00:00:00Z", "end_date": "2100-01-01T00:00:00Z"});
    match path {
        "/api/fn/events" => vec![
            json!({"filter": {}, "cursor": null}),
            json!({"filter": {"q": MARK}, "cursor": null}),
            json!({"filter": {"user_id": format!("{MARK}-user-0")}, "cursor": null}),
        ],
        "/api/fn/event" => vec![json!({"event_id": own_id}), json!({"event_id": other_id})],
        "/api/fn/replay" => vec![json!({ "filter": range })],
        _ => vec![json!({})],
    }
}

#[tokio::test]
async fn the_self_role_sees_no_other_actors_event_value_or_count_on_any_route_it_may_call() {
    let (s, cookie, own_id, other_id) = alice_signed_in().await;
    let me = Cred::Cookie(cookie.clone());
    let grant = Grant::Role(Role::Own);
    let origin = s.url("");
    // Every route of the permission table, and every server function registered, so one
    // added later is walked without anyone listing it here.
    let mut routes: Vec<(&str, &str)> = PROTECTED_ROUTES.to_vec();
    for (path, _) in leptos::server_fn::axum::server_fn_paths() {
        if !routes.contains(&("POST", path)) {
            routes.push(("POST", path));
        }
    }
    let mut walked = 0;
    for (method, path) in routes {
        let method_obj: axum::http::Method = method.parse().unwrap();
        if !grant.allows(needed_permission(&method_obj, path)) {
            continue;
        }
        walked += 1;
        match (method, path) {
            // Signing out would end the session the walk uses; it returns nothing anyway.
            (_, "/api/fn/logout") => continue,
            ("GET", "/ws/audit") => {
                let mut req = format!("ws://{}/ws/audit?sinceSeq=0", s.addr)
                    .into_client_request()
                    .unwrap();
                req.headers_mut().insert("Cookie", cookie.parse().unwrap());
                req.headers_mut().insert("Origin", origin.parse().unwrap());
                let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
                let mut frames = String::new();
                loop {
                    let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
                        .await
                        .expect("the socket answers")
                        .unwrap()
                        .unwrap();
                    if let Message::Text(t) = msg {
                        frames.push_str(&t);
                        if t.contains("\"ready\"") {
                            break;
                        }
                    }
                }
                assert!(frames.contains("alice reads file"), "{frames}");
                assert_scoped("/ws/audit", 101, &frames);
            }
            ("POST", fn_path) => {
                for args in fn_args(fn_path, &own_id, &other_id) {
                    let r = s
                        .http
                        .post(s.url(fn_path))
                        .header("Cookie", &cookie)
                        .header("Origin", &origin)
                        .header("Accept", "application/json")
                        .json(&args)
                        .send()
                        .await
                        .unwrap();
                    let (status, text) = text_of(r).await;
                    assert_scoped(&format!("{fn_path} {args}"), status, &text);
                }
            }
            ("GET", path) => {
                // The table's placeholder id stands for "some event": try hers and another's.
                let paths: Vec<String> = match path.strip_prefix("/api/v1/events/0000") {
                    Some(_) => vec![
                        format!("/api/v1/events/{own_id}"),
                        format!("/api/v1/events/{other_id}"),
                    ],
                    None if path == "/api/v1/events/export" => ["json", "csv", "ndjson"]
                        .iter()
                        .map(|f| format!("{path}?format={f}"))
                        .collect(),
                    None if path == "/api/v1/events" => vec![
                        path.to_string(),
                        format!("{path}?q={MARK}"),
                        format!("{path}?user_id={MARK}-user-1"),
                        format!("{path}?entity=alice"),
                    ],
                    None => vec![path.to_string()],
                };
                for p in paths {
                    let (status, text) = call_text(&s, "GET", &p, &me).await;
                    assert_scoped(&p, status, &text);
                }
            }
            (m, p) => panic!("the walk has no way to call {m} {p}"),
        }
    }
    assert!(
        walked >= 10,
        "the permission table lets self call {walked} routes"
    );
    // Her own subject export holds only her events: the entity events carry their actors.
    let (status, text) = call_text(&s, "GET", "/api/v1/subjects/alice/export", &me).await;
    assert_eq!(status, 200, "{text}");
    let export: Value = serde_json::from_str(&text).unwrap();
    assert!(export["count"].as_u64().unwrap() >= 3, "{text}");
    // The pages she may open, rendered on the server.
    for page in ["/events", "/replay", &format!("/events/{own_id}")] {
        assert_eq!(
            page_permission(page),
            trailwatch::model::Permission::ReadOwn
        );
        let (status, text) = call_text(&s, "GET", page, &me).await;
        assert_eq!(status, 200, "{page}");
        assert!(leaks(&text).is_none(), "{page} leaked: {text}");
    }
}

async fn call_text(s: &TestServer, method: &str, path: &str, cred: &Cred) -> (u16, String) {
    let mut req = s.http.request(method.parse().unwrap(), s.url(path));
    req = match cred {
        Cred::None => req,
        Cred::Bearer(t) => req.bearer_auth(t),
        Cred::Cookie(c) => req.header("Cookie", c),
    };
    text_of(req.send().await.unwrap()).await
}

#[tokio::test]
async fn a_self_users_subject_export_holds_only_events_where_they_are_the_actor() {
    let (s, cookie, ..) = alice_signed_in().await;
    let cookie = Cred::Cookie(cookie);
    let (status, body) = call(&s, "GET", "/api/v1/subjects/alice/export", &cookie, None).await;
    assert_eq!(status, 200, "{body}");
    let events = body["events"].as_array().unwrap();
    assert!(events.len() >= 3, "{body}");
    assert!(events.iter().all(|e| e["user"]["id"] == "alice"), "{body}");
    assert!(leaks(&body.to_string()).is_none(), "{body}");
    // An admin's export of the same subject keeps the events where she was acted on.
    let (status, body) = s.get("/api/v1/subjects/alice/export").await;
    assert_eq!(status, 200);
    let acted_on = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["entity"]["id"] == "alice" && e["user"]["id"] != "alice")
        .count();
    assert_eq!(acted_on, OTHERS / 2, "{body}");
}

#[tokio::test]
async fn levels_and_categories_count_only_a_self_users_own_events() {
    let (s, cookie, ..) = alice_signed_in().await;
    let me = Cred::Cookie(cookie);
    let (_, levels) = call(&s, "GET", "/api/v1/events/levels", &me, None).await;
    let (_, categories) = call(&s, "GET", "/api/v1/events/categories", &me, None).await;
    // Her three reads, and the sign-in she just made (recorded with her as the actor).
    let total = |v: &Value| {
        v.as_array()
            .unwrap()
            .iter()
            .map(|c| c["count"].as_u64().unwrap())
            .sum::<u64>()
    };
    let (_, own) = call(&s, "GET", "/api/v1/events?limit=500", &me, None).await;
    let own_total = own["total"].as_u64().unwrap();
    assert_eq!(total(&levels), own_total, "{levels}");
    assert_eq!(total(&categories), own_total, "{categories}");
    assert!(!levels.to_string().contains("critical"), "{levels}");
    assert!(!categories.to_string().contains("security"), "{categories}");
    // Roles that read everything still get everyone's counts.
    let (_, all) = s.get("/api/v1/events/levels").await;
    let critical = all
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["value"] == "critical")
        .unwrap();
    assert_eq!(critical["count"], OTHERS as u64, "{all}");
}

/// Opens `/ws/audit` with `cookie` and `origin`; the handshake's HTTP status on refusal.
async fn cookie_socket_from(
    s: &TestServer,
    query: &str,
    cookie: &str,
    origin: Option<&str>,
) -> Result<common::Socket, u16> {
    let mut req = format!("ws://{}/ws/audit{query}", s.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut().insert("Cookie", cookie.parse().unwrap());
    if let Some(origin) = origin {
        req.headers_mut().insert("Origin", origin.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(common::Socket { ws }),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
        Err(e) => panic!("handshake failed otherwise: {e}"),
    }
}

#[tokio::test]
async fn a_websocket_upgrade_riding_on_the_cookie_from_another_origin_is_refused() {
    let s = TestServer::start().await;
    add_user(&s, "vic", "viewer", None).await;
    let cookie = login(&s, "vic", PASSWORD).await.unwrap();
    let other_port = format!("http://127.0.0.1:{}", s.addr.port() + 1);
    for origin in ["http://evil.example", other_port.as_str(), "null"] {
        let refused = cookie_socket_from(&s, "?sinceSeq=0", &cookie, Some(origin)).await;
        assert_eq!(refused.err(), Some(403), "Origin {origin}");
        // A wrong `?token=` beside the cookie falls back to the cookie: still refused.
        let refused =
            cookie_socket_from(&s, "?sinceSeq=0&token=wrong", &cookie, Some(origin)).await;
        assert_eq!(
            refused.err(),
            Some(403),
            "Origin {origin} with a wrong token"
        );
    }
    // The dashboard's own origin, as a browser sends it.
    let mut own = cookie_socket_from(&s, "?sinceSeq=0", &cookie, Some(&s.url("")))
        .await
        .unwrap();
    own.events_until_ready().await;
    // A token the caller holds needs no origin check: a page cannot attach it uninvited.
    let url = format!("ws://{}/ws/audit?token={TOKEN}", s.addr);
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("Origin", "http://evil.example".parse().unwrap());
    assert!(tokio_tungstenite::connect_async(req).await.is_ok());
}

/// Calls server function `path` with a raw JSON body as the signed-in admin.
async fn fn_call(s: &TestServer, cookie: &str, path: &str, body: &str) -> (u16, Value) {
    let r = s
        .http
        .post(s.url(path))
        .header("Cookie", cookie)
        .header("Accept", "application/json")
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn server_functions_answer_client_mistakes_with_4xx_and_the_rest_error_body() {
    let s = TestServer::start().await;
    let cookie = s.admin_session().await;
    // What the probe found, and a mistake for each function that takes arguments.
    let cases: &[(&str, &str, u16)] = &[
        (
            "/api/fn/save_view",
            r#"{"name":"v","query":"not a query"}"#,
            400,
        ),
        ("/api/fn/revoke_token", r#"{"name":"nobody"}"#, 404),
        (
            "/api/fn/events",
            r#"{"filter":{"q":"nofield:x"},"cursor":null}"#,
            400,
        ),
        (
            "/api/fn/events",
            r#"{"filter":{"q":"\"unclosed"},"cursor":null}"#,
            400,
        ),
        ("/api/fn/events", r#"{"filter":{},"cursor":"abc"}"#, 400),
        ("/api/fn/disable_user", r#"{"name":"ghost"}"#, 404),
        (
            "/api/fn/create_user",
            r#"{"name":"x","role":"king","subject":null,"password":"a long enough password"}"#,
            400,
        ),
        (
            "/api/fn/create_token",
            r#"{"name":"ok","scope":"everything"}"#,
            400,
        ),
        ("/api/fn/replay", r#"{"filter":{}}"#, 400),
        ("/api/fn/overview", r#"{"range":"9y"}"#, 400),
        ("/api/fn/acknowledge", r#"{"id":"one"}"#, 400),
        ("/api/fn/alerts", r#"{"unacknowledged":"maybe"}"#, 400),
        ("/api/fn/delete_view", r#"{"id":"x"}"#, 400),
        ("/api/fn/event", r#"{"wrong":1}"#, 400),
        ("/api/fn/save_settings", r#"{"settings":{}}"#, 400),
        ("/api/fn/setup_status", r#"{}"#, 400),
    ];
    for (path, body, want) in cases {
        let (status, answer) = fn_call(&s, &cookie, path, body).await;
        assert_eq!(status, *want, "{path} {body}: {answer}");
        assert!(
            answer["error"].is_string() && answer["message"].is_string(),
            "{path}: the REST error body, got {answer}"
        );
    }
    let (_, answer) = fn_call(&s, &cookie, "/api/fn/events", cases[2].1).await;
    assert_eq!(answer["error"], "invalid_parameter", "{answer}");
    // Every registered server function: an undecodable body is the caller's mistake, never
    // a server failure, so a function added later is held to it too.
    let mut paths: Vec<&str> = leptos::server_fn::axum::server_fn_paths()
        .map(|(p, _)| p)
        .collect();
    paths.sort_unstable();
    assert!(paths.len() >= 20, "{paths:?}");
    for path in paths.iter().filter(|p| **p != "/api/fn/logout") {
        let (status, answer) = fn_call(&s, &cookie, path, "{not json").await;
        assert!(
            (400..500).contains(&status) || status < 300,
            "{path}: {status} {answer}"
        );
        assert!(status != 500, "{path}");
        if status >= 400 {
            assert!(answer["error"].is_string(), "{path}: {answer}");
        }
    }
}

#[tokio::test]
async fn five_wrong_passwords_for_admin_do_not_lock_out_the_admin_token() {
    let s = TestServer::start().await;
    for _ in 0..5 {
        let (status, _) = login(&s, "admin", "not the password").await.unwrap_err();
        assert_eq!(status, 401);
    }
    let (status, text) = login(&s, "admin", "not the password").await.unwrap_err();
    assert_eq!(status, 429, "the password account is locked: {text}");
    // The break-glass token signs in from the very same address.
    let r = s.token_login(TOKEN).await;
    assert!(r.headers().get("set-cookie").is_some(), "{}", r.status());
}

#[tokio::test]
async fn wrong_tokens_lock_token_sign_ins_but_not_password_accounts() {
    let s = TestServer::start().await;
    add_user(&s, "pat", "viewer", None).await;
    for _ in 0..5 {
        let r = s.token_login("a guess").await;
        assert_eq!(r.status().as_u16(), 401);
    }
    let r = s.token_login(TOKEN).await;
    assert_eq!(
        r.status().as_u16(),
        429,
        "token sign-ins from here are locked"
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "locked_out", "{body}");
    assert!(body["retryAfter"].as_u64().unwrap() > 0, "{body}");
    // A user's password sign-in from the same address is not.
    assert!(login(&s, "pat", PASSWORD).await.is_ok());
}

#[tokio::test]
async fn each_event_records_the_credential_that_submitted_it_and_a_client_cannot_forge_it() {
    let s = TestServer::start().await;
    let (status, created) = call(
        &s,
        "POST",
        "/api/v1/tokens",
        &Cred::Bearer(TOKEN.into()),
        Some(json!({"name": "shipper", "scope": "ingest"})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let ingest = Cred::Bearer(created["token"].as_str().unwrap().into());
    // The channel is the sender's to name; the credential is not.
    let r = s
        .http
        .post(s.url("/api/v1/events"))
        .bearer_auth(created["token"].as_str().unwrap())
        .header("X-Trailwatch-Source", "cli")
        .json(&json!({"action": "deploy.start", "user": {"id": "ci-bot"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let (status, refused) = call(
        &s,
        "POST",
        "/api/v1/events",
        &ingest,
        Some(json!({"action": "x", "user": {"id": "u"}, "submittedBy": "admin"})),
    )
    .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["errors"][0]["field"], "submittedBy", "{refused}");
    let (status, _) = s
        .post(&json!({"action": "deploy.approve", "user": {"id": "ops"}}))
        .await;
    assert_eq!(status, 201);
    add_user(&s, "dana", "admin", None).await;
    let dana = Cred::Cookie(login(&s, "dana", PASSWORD).await.unwrap());
    let r = s
        .http
        .post(s.url("/api/v1/events"))
        .header(
            "Cookie",
            match &dana {
                Cred::Cookie(c) => c.as_str(),
                _ => unreachable!(),
            },
        )
        .header("Origin", s.url(""))
        .json(&json!({"action": "deploy.note", "user": {"id": "dana"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);

    let submitter = |page: &Value, action: &str| {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["action"] == action)
            .map(|e| (e["source"].clone(), e["submittedBy"].clone()))
            .unwrap()
    };
    let (_, page) = s.get("/api/v1/events?action=deploy.*").await;
    assert_eq!(
        submitter(&page, "deploy.start"),
        (json!("cli"), json!("token:shipper"))
    );
    assert_eq!(
        submitter(&page, "deploy.approve"),
        (json!("http"), json!("admin"))
    );
    assert_eq!(
        submitter(&page, "deploy.note"),
        (json!("http"), json!("user:dana"))
    );
    // Trailwatch's own events name it.
    let (_, own) = s.get("/api/v1/events?action=token.create").await;
    assert_eq!(own["items"][0]["submittedBy"], "server", "{own}");
    // Filterable by parameter and in the query language, and exported.
    let (_, by_token) = s.get("/api/v1/events?submitted_by=token:*").await;
    assert_eq!(by_token["total"], 1, "{by_token}");
    let (_, by_query) = s.get("/api/v1/events?q=submitted_by:user:dana").await;
    assert_eq!(by_query["total"], 1, "{by_query}");
    let csv = s
        .http
        .get(s.url("/api/v1/events/export?format=csv&action=deploy.start"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let row: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = header.iter().position(|h| *h == "submittedBy").unwrap();
    assert_eq!(row[col], "token:shipper", "{csv}");
    // Sealed: the chain verifies with it, and a submitter edited on disk breaks it there.
    let (_, report) = s.get("/api/v1/verify").await;
    assert_eq!(report["ok"], true, "{report}");
    if let Some(url) = &s.database {
        // On a cluster the row is edited in PostgreSQL, under the running node.
        let db = common::postgres::connect(url).await;
        let seq: i64 = db
            .query_one(
                "SELECT seq FROM events WHERE submitted_by = 'token:shipper'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        db.execute(
            "UPDATE events SET submitted_by = 'admin' WHERE seq = $1",
            &[&seq],
        )
        .await
        .unwrap();
        let (_, report) = s.get("/api/v1/verify").await;
        assert_eq!(report["ok"], false, "{report}");
        assert_eq!(report["firstBreak"]["seq"], seq, "{report}");
        return;
    }
    let mut s = s;
    s.stop().await;
    let db = s.dir.path().join("data").join(trailwatch::store::DB_FILE);
    let conn = rusqlite::Connection::open(&db).unwrap();
    let seq: i64 = conn
        .query_row(
            "SELECT seq FROM events WHERE submitted_by = 'token:shipper'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    conn.execute(
        "UPDATE events SET submitted_by = 'admin' WHERE seq = ?1",
        [seq],
    )
    .unwrap();
    drop(conn);
    let report = trailwatch::store::verify_path(&db, &[], None, &mut |_| {}).unwrap();
    assert!(!report.ok, "{report:?}");
    assert_eq!(
        report.first_break.as_ref().map(|b| b.seq.0),
        Some(seq as u64),
        "{report:?}"
    );
}

/// A raw connection to the server with `bytes` already sent.
async fn raw(s: &TestServer, bytes: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(s.addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    stream
}

/// Reads from `stream` until the server closes it; the bytes read. Fails after `limit`.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(limit, stream.read(&mut buf)).await {
            Err(_) => panic!("the server kept the connection open past {limit:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return out,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

fn short_limits(c: &mut trailwatch::site::ServeConfig) {
    c.limits.header_timeout_secs = 1;
    c.limits.keepalive_timeout_secs = 2;
    c.limits.body_timeout_secs = 1;
}

#[tokio::test]
async fn a_client_sending_its_head_slowly_is_cut_off_at_the_header_timeout() {
    let s = TestServer::start_with(short_limits).await;
    let mut stream = raw(&s, b"GET /api/health HTTP/1.1\r\n").await;
    let started = std::time::Instant::now();
    // A header line every 200 ms keeps the connection busy, never complete.
    let trickle = async {
        for i in 0..100 {
            if stream
                .write_all(format!("x-slow-{i}: 1\r\n").as_bytes())
                .await
                .is_err()
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            if started.elapsed() > Duration::from_secs(15) {
                return false;
            }
        }
        false
    };
    assert!(trickle.await, "the server still read headers after 15 s");
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let s = TestServer::start_with(short_limits).await;
    let mut stream = raw(&s, b"GET /api/health HTTP/1.1\r\nhost: x\r\n\r\n").await;
    let started = std::time::Instant::now();
    let answer = read_until_closed(&mut stream, Duration::from_secs(15)).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    // Kept alive after the answer, for the idle timeout, not closed at once.
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_body_that_never_completes_is_answered_408() {
    let s = TestServer::start_with(short_limits).await;
    let head = format!(
        "POST /api/v1/events HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"action\":"
    );
    let mut stream = raw(&s, head.as_bytes()).await;
    let answer = read_until_closed(&mut stream, Duration::from_secs(15)).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("body_timeout"), "{text}");
    let (_, events) = s.get("/api/v1/events").await;
    assert_eq!(events["total"], 0, "nothing stored: {events}");
}

#[tokio::test]
async fn a_declared_body_over_the_limit_is_refused_413_before_it_is_sent() {
    let s = TestServer::start_with(|c| c.max_body_bytes = 1000).await;
    let head = format!(
        "POST /api/v1/events HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\ncontent-type: application/json\r\ncontent-length: 1001\r\nexpect: 100-continue\r\n\r\n"
    );
    let mut stream = raw(&s, head.as_bytes()).await;
    let answer = read_until_closed(&mut stream, Duration::from_secs(15)).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(
        !text.contains("100 Continue"),
        "the body was never asked for: {text}"
    );
}

#[tokio::test]
async fn connections_beyond_the_cap_are_refused_with_503() {
    let s = TestServer::start_with(|c| c.limits.max_connections = 3).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        // A whole exchange proves the server took this connection in.
        let mut stream = raw(&s, b"GET /api/health HTTP/1.1\r\nhost: x\r\n\r\n").await;
        let mut buf = [0u8; 1024];
        let n = stream.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        held.push(stream);
    }
    let mut fourth = TcpStream::connect(s.addr).await.unwrap();
    let answer = read_until_closed(&mut fourth, Duration::from_secs(10)).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains("too_many_connections"), "{text}");
    // Closing one makes room again.
    drop(held.pop());
    let ok = async {
        loop {
            if let Ok(r) = s.http.get(s.url("/api/health")).send().await {
                if r.status().as_u16() == 200 {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), ok)
        .await
        .expect("a freed slot takes a new connection");
}

#[tokio::test]
async fn an_open_websocket_holds_its_place_under_the_connection_cap() {
    let s = TestServer::start_with(|c| c.limits.max_connections = 2).await;
    // Its HTTP exchange is over once upgraded; the socket itself still counts.
    let mut socket = s.socket("&sinceSeq=0").await;
    socket.events_until_ready().await;
    let mut held = raw(&s, b"GET /api/health HTTP/1.1\r\nhost: x\r\n\r\n").await;
    let mut buf = [0u8; 1024];
    let n = held.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let mut third = TcpStream::connect(s.addr).await.unwrap();
    let answer = read_until_closed(&mut third, Duration::from_secs(10)).await;
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 503"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}

/// One ingest contract for every body: a name repeated in one object (which serde_json would
/// read as its last value while another reader may take the first) and a timestamp far in the
/// future (which would head every time-sorted view and never expire) are refused with a 400
/// naming the record and field, and nothing of the request is stored.
#[tokio::test]
async fn ingest_refuses_repeated_names_and_far_future_times() {
    let s = TestServer::start().await;
    let post = |body: &'static str, kind: &'static str| {
        s.http
            .post(s.url("/api/v1/events"))
            .bearer_auth(TOKEN)
            .header("Content-Type", kind)
            .body(body)
            .send()
    };
    let (_, before) = s.get("/api/v1/events?limit=1&sort=seq").await;
    let cases: [(&str, &str, &str); 4] = [
        (
            r#"{"action": "file.read", "action": "file.delete"}"#,
            "application/json",
            "appears twice",
        ),
        (
            r#"{"action": "a", "metadata": {"owner": "x", "owner": "y"}}"#,
            "application/json",
            "appears twice",
        ),
        (
            "{\"action\": \"a\"}\n{\"action\": \"b\", \"allowed\": true, \"allowed\": false}\n",
            "application/x-ndjson",
            "appears twice",
        ),
        (
            r#"{"action": "a", "timestamp": "9999-12-31T23:59:59Z"}"#,
            "application/json",
            "ahead of the server's clock",
        ),
    ];
    for (body, kind, message) in cases {
        let r = post(body, kind).await.unwrap();
        let status = r.status().as_u16();
        let answer: Value = r.json().await.unwrap();
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(answer.to_string().contains(message), "{body}: {answer}");
    }
    let timestamp_error = &post(
        r#"{"action": "a", "timestamp": "9999-12-31T23:59:59Z"}"#,
        "application/json",
    )
    .await
    .unwrap()
    .json::<Value>()
    .await
    .unwrap()["errors"][0];
    assert_eq!(timestamp_error["field"], "timestamp");
    let (_, after) = s.get("/api/v1/events?limit=1&sort=seq").await;
    assert_eq!(after["headSeq"], before["headSeq"], "nothing was stored");
    // A backfill of old events is still welcome.
    let r = post(
        r#"{"action": "a", "timestamp": "2001-09-09T01:46:40Z"}"#,
        "application/json",
    )
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 201);
}
