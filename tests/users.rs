//! Users and roles through a real server: every protected route against every role and
//! scope (401, 403 or allowed), the `self` role's row scoping through REST, server functions,
//! the socket and exports, the setup link, disabling, per-account lockout, the cross-origin
//! check on cookie requests, and the socket message rate.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.
#![cfg(feature = "ssr")]

mod common;

use common::{add_user, call, fits, login, Cred, TestServer, PASSWORD, TOKEN};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use trailwatch::server::{PROTECTED_ROUTES, PUBLIC_ROUTES};

/// What each protected route needs, spelled out here rather than taken from the server, so
/// a route whose protection changes fails this test.
fn needs(method: &str, path: &str) -> &'static str {
    match (method, path) {
        ("POST", "/api/v1/events" | "/v1/logs" | "/otlp/v1/logs" | "/api/v1/kubernetes/audit") => {
            "ingest"
        }
        ("DELETE", _) => "admin",
        ("POST", "/api/v1/subjects/alice/erase" | "/api/v1/alerts/1/acknowledge") => "admin",
        (_, "/api/v1/tokens" | "/api/v1/users") => "admin",
        (
            "POST",
            "/api/fn/acknowledge"
            | "/api/fn/save_view"
            | "/api/fn/delete_view"
            | "/api/fn/tokens"
            | "/api/fn/create_token"
            | "/api/fn/revoke_token"
            | "/api/fn/users"
            | "/api/fn/create_user"
            | "/api/fn/disable_user"
            | "/api/fn/settings"
            | "/api/fn/save_settings",
        ) => "admin",
        ("POST", "/api/fn/logout" | "/api/fn/whoami" | "/api/fn/api_reference") => "session",
        ("GET", "/api/v1/events/export" | "/api/v1/subjects/alice/export") => "export",
        ("GET", "/api/v1/verify") => "verify",
        ("GET", "/api/v1/events" | "/api/v1/events/levels" | "/api/v1/events/categories")
        | ("GET", "/api/v1/aggregate")
        | ("GET", "/ws/audit")
        | ("GET", "/api/v1/events/00000000-0000-0000-0000-000000000000")
        | (
            "POST",
            "/api/fn/events" | "/api/fn/event" | "/api/fn/replay" | "/api/fn/views"
            | "/api/fn/aggregate",
        ) => "read_own",
        _ => "read_all",
    }
}

/// What each role and scope is granted, spelled out from the definitions.
fn grants(who: &str) -> &'static [&'static str] {
    match who {
        "admin" => &[
            "session", "ingest", "read_own", "read_all", "export", "verify", "admin",
        ],
        "auditor" | "scope:read" => &["session", "read_own", "read_all", "export", "verify"],
        "viewer" => &["session", "read_own", "read_all"],
        "self" => &["session", "read_own", "export"],
        "scope:ingest" => &["session", "ingest"],
        other => panic!("unknown principal {other}"),
    }
}

#[tokio::test]
async fn every_protected_route_answers_401_403_or_allowed_per_role_and_scope() {
    let s = TestServer::start().await;
    let mut principals = Vec::new();
    for role in ["admin", "auditor", "viewer", "self"] {
        let name = format!("u-{role}");
        add_user(&s, &name, role, None).await;
        principals.push((
            role,
            Cred::Cookie(login(&s, &name, PASSWORD).await.unwrap()),
        ));
    }
    for scope in ["ingest", "read"] {
        let (status, body) = call(
            &s,
            "POST",
            "/api/v1/tokens",
            &Cred::Bearer(TOKEN.into()),
            Some(json!({"name": format!("t-{scope}"), "scope": scope})),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        let who = if scope == "ingest" {
            "scope:ingest"
        } else {
            "scope:read"
        };
        principals.push((who, Cred::Bearer(body["token"].as_str().unwrap().into())));
    }
    for (method, path) in PROTECTED_ROUTES {
        let (status, body) = call(&s, method, path, &Cred::None, None).await;
        assert_eq!(status, 401, "{method} {path} without credentials: {body}");
        let need = needs(method, path);
        for (who, cred) in &principals {
            // Signing out would end the session the next routes use.
            if *path == "/api/fn/logout" && matches!(cred, Cred::Cookie(_)) {
                continue;
            }
            let (status, body) = call(&s, method, path, cred, None).await;
            if *who == "self" && path.starts_with("/api/v1/subjects/alice/") {
                // Past the router, the handler keeps the self role to its own subject.
                assert_eq!(status, 403, "{method} {path} with {who}: {body}");
                continue;
            }
            if grants(who).contains(&need) {
                assert!(
                    status != 401 && status != 403,
                    "{method} {path} refused {who}: {status} {body}"
                );
            } else {
                assert_eq!(status, 403, "{method} {path} with {who}: {body}");
                // Server functions answer in their own error shape; the REST routes name
                // the permission.
                if !path.starts_with("/api/fn/") || body.get("needed").is_some() {
                    assert_eq!(body["needed"], need, "{method} {path} with {who}");
                }
            }
        }
    }
    // Pages: a role sent away from what it may not see lands on its own activity.
    let (_, selfish) = &principals[3];
    let Cred::Cookie(cookie) = selfish else {
        unreachable!()
    };
    for page in ["/", "/alerts", "/tokens", "/users"] {
        let r = s
            .http
            .get(s.url(page))
            .header("Cookie", cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 303, "{page}");
        assert_eq!(r.headers()["location"], "/events", "{page}");
    }
    let r = s
        .http
        .get(s.url("/events"))
        .header("Cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

/// A live socket opened with the session cookie, as the dashboard opens it.
async fn cookie_socket(s: &TestServer, cookie: &str) -> common::Socket {
    let mut req = format!("ws://{}/ws/audit", s.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut().insert("Cookie", cookie.parse().unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    common::Socket { ws }
}

async fn server_fn(s: &TestServer, path: &str, cookie: &str, args: Value) -> (u16, Value) {
    s.call_fn(path, cookie, &args).await
}

fn users_of(events: &Value) -> Vec<String> {
    events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["user"]["id"].as_str().unwrap_or("").to_string())
        .collect()
}

#[tokio::test]
async fn a_self_user_sees_only_their_own_events_through_every_door() {
    let s = TestServer::start().await;
    add_user(&s, "alice", "self", Some("u-17")).await;
    let (status, stored) = s
        .post(&json!([
            {"action": "file.read", "user": {"id": "u-17"}, "description": "mine one", "sessionId": "S"},
            {"action": "file.read", "user": {"id": "bob"}, "description": "not mine", "sessionId": "S"},
            {"action": "file.write", "user": {"id": "u-17"}, "description": "mine two", "sessionId": "S"},
        ]))
        .await;
    assert_eq!(status, 201, "{stored}");
    let cookie = login(&s, "alice", PASSWORD).await.unwrap();
    let me = Cred::Cookie(cookie.clone());

    // REST: the list, one event, the export, a subject export.
    let (status, page) = call(&s, "GET", "/api/v1/events", &me, None).await;
    assert_eq!(status, 200);
    assert_eq!(page["total"], 2, "{page}");
    assert_eq!(users_of(&page["items"]), ["u-17", "u-17"]);
    let (_, all) = s.get("/api/v1/events?user_id=bob").await;
    let bobs = all["items"][0]["eventId"].as_str().unwrap().to_string();
    let (status, _) = call(&s, "GET", &format!("/api/v1/events/{bobs}"), &me, None).await;
    assert_eq!(status, 404, "another actor's event does not exist for self");
    let (status, page) = call(&s, "GET", "/api/v1/events?user_id=bob", &me, None).await;
    assert_eq!(
        (status, page["total"].as_u64()),
        (200, Some(0)),
        "asking for bob finds nothing"
    );
    let r = s
        .http
        .get(s.url("/api/v1/events/export?format=ndjson"))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    let text = r.text().await.unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(!text.contains("not mine"));
    let (status, body) = call(&s, "GET", "/api/v1/subjects/bob/export", &me, None).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = call(&s, "GET", "/api/v1/subjects/u-17/export", &me, None).await;
    assert_eq!((status, body["count"].as_u64()), (200, Some(2)), "{body}");
    let (status, _) = call(&s, "GET", "/api/dashboard/summary", &me, None).await;
    assert_eq!(status, 403, "analytics count everyone's events");

    // Server functions: the explorer's page, one event's detail, a replay.
    let (status, page) = server_fn(&s, "/api/fn/events", &cookie, json!({"filter": {}})).await;
    assert_eq!(status, 200, "{page}");
    let items: Vec<String> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["user"]["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(items, ["u-17", "u-17"]);
    let (status, detail) = server_fn(&s, "/api/fn/event", &cookie, json!({"event_id": bobs})).await;
    assert_eq!((status, detail), (200, Value::Null));
    let mine = page["items"][0]["eventId"].as_str().unwrap();
    let (_, detail) = server_fn(&s, "/api/fn/event", &cookie, json!({"event_id": mine})).await;
    assert_eq!(
        users_of(&detail["sameSession"]),
        ["u-17"],
        "related events are scoped too: {detail}"
    );
    let (_, replay) = server_fn(
        &s,
        "/api/fn/replay",
        &cookie,
        json!({"filter": {"start_date": "2000-01-01T00:00:00Z", "end_date": "2100-01-01T00:00:00Z"}}),
    )
    .await;
    assert_eq!(users_of(&replay["events"]), ["u-17", "u-17"], "{replay}");

    // The socket: the backlog and live events are alice's only, whatever the filter asks.
    let mut socket = cookie_socket(&s, &cookie).await;
    socket
        .subscribe(json!({"type": "subscribe", "sinceSeq": 0, "filter": {"user_id": "bob"}}))
        .await;
    assert_eq!(
        socket.events_until_ready().await,
        Vec::<u64>::new(),
        "no bob"
    );
    socket
        .subscribe(json!({"type": "subscribe", "sinceSeq": 0}))
        .await;
    assert_eq!(socket.events_until_ready().await.len(), 2);
    s.post(
        &json!([{"action": "x", "user": {"id": "bob"}}, {"action": "y", "user": {"id": "u-17"}}]),
    )
    .await;
    let next = socket.next_json().await;
    assert_eq!(
        (next["type"].as_str(), next["event"]["user"]["id"].as_str()),
        (Some("event"), Some("u-17")),
        "bob's live event was not sent: {next}"
    );
}

#[tokio::test]
async fn the_setup_link_makes_the_first_admin_once() {
    let s = TestServer::start().await;
    let code = s
        .auth_db()
        .await
        .transaction(trailwatch::auth::users::new_setup_code)
        .await
        .unwrap()
        .expect("no users yet");
    let page = s
        .http
        .get(s.url(&format!("/setup?code={code}")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        page.status().as_u16(),
        200,
        "the setup page needs no sign-in"
    );
    let setup = |confirm: &'static str| {
        s.http
            .post(s.url("/api/fn/setup"))
            .header("Accept", "application/json")
            .form(&[
                ("code", code.as_str()),
                ("name", "root"),
                ("password", PASSWORD),
                ("confirm", confirm),
            ])
            .send()
    };
    let mismatch = setup("something else entirely").await.unwrap();
    assert!(mismatch.headers().get("set-cookie").is_none());
    assert!(mismatch.text().await.unwrap().contains("confirm"));
    let r = setup(PASSWORD).await.unwrap();
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let (status, me) = server_fn(&s, "/api/fn/whoami", &cookie, json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(
        (me["name"].as_str(), &me["grant"]),
        (Some("root"), &json!({"kind": "role", "value": "admin"}))
    );
    let again = setup(PASSWORD).await.unwrap();
    assert!(again.headers().get("set-cookie").is_none());
    assert!(
        again.text().await.unwrap().contains("setup"),
        "a used link is refused"
    );
    assert!(
        login(&s, "root", PASSWORD).await.is_ok(),
        "the admin signs in with the password"
    );
    let (_, events) = s.get("/api/v1/events?action=user.create").await;
    assert_eq!(events["items"][0]["user"]["id"], "root", "{events}");
}

#[tokio::test]
async fn disabling_a_user_ends_their_session_and_closes_their_socket() {
    let s = TestServer::start().await;
    add_user(&s, "dana", "viewer", None).await;
    let cookie = login(&s, "dana", PASSWORD).await.unwrap();
    let mut socket = cookie_socket(&s, &cookie).await;
    socket
        .subscribe(json!({"type": "subscribe", "sinceSeq": 0}))
        .await;

    let (status, body) = call(
        &s,
        "DELETE",
        "/api/v1/users/dana",
        &Cred::Bearer(TOKEN.into()),
        None,
    )
    .await;
    assert_eq!((status, &body["disabled"]), (200, &json!(true)), "{body}");
    assert!(socket.closed_by_server().await);
    let (status, _) = call(&s, "GET", "/api/v1/events", &Cred::Cookie(cookie), None).await;
    assert_eq!(status, 401);
    assert_eq!(login(&s, "dana", PASSWORD).await.unwrap_err().0, 401);
    let (_, events) = s.get("/api/v1/events?action=user.disable").await;
    assert_eq!(events["total"], 1, "{events}");
}

#[tokio::test]
async fn repeated_wrong_passwords_lock_the_account_and_are_recorded() {
    let s = TestServer::start().await;
    add_user(&s, "erin", "auditor", None).await;
    for _ in 0..5 {
        let (status, text) = login(&s, "erin", "not the password").await.unwrap_err();
        assert_eq!(status, 401, "{text}");
    }
    // Locked: even the right password is refused without being checked.
    let (status, text) = login(&s, "erin", PASSWORD).await.unwrap_err();
    assert_eq!(status, 429, "{text}");
    let (_, events) = s.get("/api/v1/events?action=dashboard.lockout").await;
    let descriptions: Vec<&str> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["description"].as_str().unwrap())
        .collect();
    assert!(
        descriptions.iter().any(|d| d.contains("this account")),
        "{descriptions:?}"
    );
    let (_, refused) = s
        .get("/api/v1/events?action=dashboard.login&user_id=erin")
        .await;
    assert_eq!(
        refused["total"], 5,
        "each refusal is recorded under the name tried"
    );
}

#[tokio::test]
async fn a_cookie_request_from_another_origin_is_refused() {
    let s = TestServer::start().await;
    add_user(&s, "fay", "admin", None).await;
    let cookie = login(&s, "fay", PASSWORD).await.unwrap();
    let save = |origin: String| {
        s.http
            .post(s.url("/api/fn/save_view"))
            .header("Cookie", &cookie)
            .header("Origin", origin)
            .json(&json!({"name": "mine", "query": "?q=x"}))
            .send()
    };
    // Another port on the same host is the same site, so SameSite alone lets this through.
    let evil = save(format!("http://127.0.0.1:{}", s.addr.port() + 1))
        .await
        .unwrap();
    assert_eq!(evil.status().as_u16(), 403);
    assert_eq!(evil.json::<Value>().await.unwrap()["error"], "cross_origin");
    let own = save(format!("http://{}", s.addr)).await.unwrap();
    assert_eq!(own.status().as_u16(), 200, "{}", own.text().await.unwrap());
    let (_, views) = server_fn(&s, "/api/fn/views", &cookie, json!({})).await;
    assert_eq!(
        views.as_array().unwrap().len(),
        1,
        "only our own request saved: {views}"
    );
}

#[tokio::test]
async fn a_socket_flooding_messages_is_closed_and_recorded() {
    let s = TestServer::start().await;
    let mut watcher = s.socket("").await;
    watcher
        .subscribe(json!({"type": "subscribe", "sinceSeq": 0, "filter": {"action": "socket.rate_limited"}}))
        .await;
    let mut flooder = s.socket("").await;
    for _ in 0..100 {
        flooder
            .send_json(json!({"type": "subscribe", "sinceSeq": 0}))
            .await;
    }
    assert!(flooder.closed_by_server().await);
    loop {
        let m = watcher.next_json().await;
        if m["type"] == "event" {
            assert_eq!(m["event"]["action"], "socket.rate_limited");
            assert_eq!(m["event"]["category"], "security");
            break;
        }
    }
}

/// The table the tests above walk must hold every route the router has, so a route added
/// without a line there (and so without a decision about who may call it) fails here. The
/// REST routes are the OpenAPI document's operations: the router mounts each handler with its
/// description (`server::documented_routes`), and nothing else.
#[test]
fn the_route_tables_cover_every_route_and_server_function_the_router_has() {
    let listed = |method: &str, pattern: &str| {
        PROTECTED_ROUTES
            .iter()
            .chain(PUBLIC_ROUTES)
            .any(|(m, p)| *m == method && fits(pattern, p))
    };
    let functions: Vec<_> = leptos::server_fn::axum::server_fn_paths().collect();
    assert!(
        functions.len() > 20,
        "server functions are registered: {functions:?}"
    );
    for (path, method) in functions {
        assert!(
            listed(method.as_str(), path),
            "server function {method} {path} is in neither PROTECTED_ROUTES nor PUBLIC_ROUTES"
        );
    }
    let doc = trailwatch::server::openapi::document();
    let mut seen = 0;
    for (pattern, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            seen += 1;
            let method = method.to_uppercase();
            assert!(
                listed(&method, pattern),
                "route {method} {pattern} is in neither PROTECTED_ROUTES nor PUBLIC_ROUTES"
            );
        }
    }
    assert!(seen > 20, "the router's routes were found: {seen}");
    // A route mounted with plain `.route(...)` would be served but described nowhere.
    let source = include_str!("../src/server.rs");
    assert!(
        !source.contains(".route("),
        "src/server.rs mounts a route outside `routes!`, so without its OpenAPI description"
    );
}

#[tokio::test]
async fn a_password_set_by_the_cli_ends_sessions_closes_sockets_and_is_recorded() {
    let s = TestServer::start().await;
    add_user(&s, "gus", "viewer", None).await;
    let cookie = login(&s, "gus", PASSWORD).await.unwrap();
    let mut socket = cookie_socket(&s, &cookie).await;
    socket
        .subscribe(json!({"type": "subscribe", "sinceSeq": 0}))
        .await;

    let out = trailwatch::cli::accounts::user(
        &s.accounts(),
        &trailwatch::cli::config::UserCommand::Passwd { name: "gus".into() },
        &mut std::io::Cursor::new("another long password\n"),
    )
    .await
    .unwrap();
    assert!(out.contains("sessions have ended"), "{out}");
    // The server sees it on its next look (every 2 s), records it and closes the socket.
    assert!(socket.closed_by_server().await);
    let (status, _) = call(&s, "GET", "/api/v1/events", &Cred::Cookie(cookie), None).await;
    assert_eq!(status, 401, "the old session ended");
    assert!(login(&s, "gus", PASSWORD).await.is_err());
    assert!(login(&s, "gus", "another long password").await.is_ok());
    let (_, events) = s.get("/api/v1/events?action=user.password").await;
    assert_eq!(events["items"][0]["user"]["id"], "cli", "{events}");
}
