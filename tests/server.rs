//! The server end to end over loopback: ingest and its errors, queries, authentication, login
//! sessions, and the `/ws/audit` protocol (live delivery, resume, default backlog, lag).
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.
#![cfg(feature = "ssr")]

mod common;

use common::{batch, TestServer, TOKEN};
use futures::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use trailwatch::api::LOGIN_ACTION;
use trailwatch::server::PROTECTED_ROUTES;

#[tokio::test]
async fn health_is_public_and_in_the_predecessor_shape() {
    let s = TestServer::start().await;
    let r = s.http.get(s.url("/api/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "healthy");
    assert!(body["timestamp"].as_i64().unwrap() > 1_700_000_000_000);
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(body["components"]["store"], "ready");
}

#[tokio::test]
async fn every_answer_carries_the_browser_hardening_headers() {
    let s = TestServer::start().await;
    for path in [
        "/api/health",
        "/login",
        "/",
        "/api/v1/events",
        "/no/such/page",
    ] {
        let r = s.http.get(s.url(path)).send().await.unwrap();
        let h = r.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(h["referrer-policy"], "same-origin", "{path}");
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
    }
}

#[tokio::test]
async fn the_dashboards_code_goes_out_precompressed_to_browsers_that_accept_it() {
    // `cargo leptos build --release --precompress` writes a `.br` and a `.gz` beside each
    // file of the site; the browser must get those, not the 2 MB module.
    let s = TestServer::start().await;
    let pkg = s.dir.path().join("site/pkg");
    std::fs::create_dir_all(&pkg).unwrap();
    let module = [b"\0asm\x01\0\0\0".as_slice(), &[7u8; 4096]].concat();
    std::fs::write(pkg.join("trailwatch.wasm"), &module).unwrap();
    std::fs::write(pkg.join("trailwatch.wasm.br"), b"brotli bytes").unwrap();
    std::fs::write(pkg.join("trailwatch.wasm.gz"), b"gzip bytes").unwrap();

    for (accepts, encoding, body) in [
        (
            Some("gzip, deflate, br, zstd"),
            Some("br"),
            b"brotli bytes".to_vec(),
        ),
        (Some("gzip"), Some("gzip"), b"gzip bytes".to_vec()),
        (None, None, module.clone()),
    ] {
        let mut request = s.http.get(s.url("/pkg/trailwatch.wasm"));
        if let Some(accepts) = accepts {
            request = request.header("Accept-Encoding", accepts);
        }
        let r = request.send().await.unwrap();
        assert_eq!(r.status(), 200, "{accepts:?}");
        let h = r.headers().clone();
        assert_eq!(h["content-type"], "application/wasm", "{accepts:?}");
        assert_eq!(
            h.get("content-encoding").map(|v| v.to_str().unwrap()),
            encoding,
            "{accepts:?}"
        );
        assert_eq!(r.bytes().await.unwrap().to_vec(), body, "{accepts:?}");
    }
}

#[tokio::test]
async fn every_protected_route_refuses_missing_or_wrong_credentials() {
    let s = TestServer::start().await;
    for (method, path) in PROTECTED_ROUTES {
        for auth in [None, Some("Bearer wrong-token"), Some("Basic dGVzdA==")] {
            let mut req = s.http.request(method.parse().unwrap(), s.url(path));
            if let Some(a) = auth {
                req = req.header("Authorization", a);
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 401, "{method} {path} with {auth:?}");
            assert_eq!(r.headers()["www-authenticate"], "Bearer");
        }
    }
    // The socket refuses a wrong query token too.
    let url = format!("ws://{}/ws/audit?token=nope", s.addr);
    assert!(tokio_tungstenite::connect_async(url).await.is_err());
    // Pages send the browser to the login page instead.
    let r = s.http.get(s.url("/")).send().await.unwrap();
    assert_eq!(
        (
            r.status().as_u16(),
            r.headers()["location"].to_str().unwrap()
        ),
        (303, "/login")
    );
}

#[tokio::test]
async fn ingest_accepts_object_array_and_ndjson_and_answers_after_commit() {
    let s = TestServer::start().await;
    let (status, body) = s
        .post(&json!({"action": "login", "user": {"id": 1, "username": "john.doe"}}))
        .await;
    assert_eq!(
        (status, body.clone()),
        (201, json!({"accepted": 1, "firstSeq": 1, "lastSeq": 1}))
    );

    let (status, body) = s.post(&batch("arr", 3)).await;
    assert_eq!(
        (status, body),
        (201, json!({"accepted": 3, "firstSeq": 2, "lastSeq": 4}))
    );

    let ndjson = "{\"timestamp\":1770254502321,\"userId\":\"test-user-1\",\"action\":\"file.read\",\"allowed\":false}\n\
                  {\"timestamp\":1770254503383,\"userId\":\"test-user-2\",\"action\":\"file.delete\",\"allowed\":false}\n";
    let r = s
        .http
        .post(s.url("/api/v1/events"))
        .bearer_auth(TOKEN)
        .header("Content-Type", "application/x-ndjson")
        .body(ndjson)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"accepted": 2, "firstSeq": 5, "lastSeq": 6})
    );

    // In arrival order: these two say they happened in February, before the others.
    let (_, page) = s.get("/api/v1/events?limit=2&sort=seq").await;
    assert_eq!(page["total"], 6);
    assert_eq!(
        (page["page"].as_u64(), page["limit"].as_u64()),
        (Some(1), Some(2))
    );
    let newest = &page["items"][0];
    assert_eq!(newest["seq"], 6);
    assert_eq!(newest["outcome"], "denied");
    assert_eq!(newest["user"]["id"], "test-user-2");
    assert_eq!(newest["timestamp"], "2026-02-05T01:21:43.383Z");
    assert_eq!(newest["source"], "http");
    assert_eq!(newest["hash"].as_str().unwrap().len(), 64);
    assert!(newest["receivedAt"].is_string() && newest["eventId"].is_string());

    let id = newest["eventId"].as_str().unwrap();
    let (status, one) = s.get(&format!("/api/v1/events/{id}")).await;
    assert_eq!((status, &one), (200, newest));
    let (status, _) = s.get("/api/v1/events/no-such-id").await;
    assert_eq!(status, 404);

    let (_, denied) = s
        .get("/api/v1/events?user_id=test-user-1&level=warning")
        .await;
    assert_eq!(denied["total"], 1);
    let (_, found) = s.get("/api/v1/events?search_query=john").await;
    assert_eq!(found["items"][0]["user"]["username"], "john.doe");

    let (status, report) = s.get("/api/v1/verify").await;
    assert_eq!(
        (status, report["ok"].as_bool(), report["checked"].as_u64()),
        (200, Some(true), Some(6))
    );
}

#[tokio::test]
async fn bad_input_is_refused_with_named_fields_and_nothing_is_stored() {
    let s = TestServer::start_with(|c| c.max_body_bytes = 4096).await;
    s.post(&json!({"action": "seed"})).await;

    let (status, body) = s
        .post(&json!([{"action": "ok"}, {"action": "x", "level": "loud", "riskScore": 300}]))
        .await;
    assert_eq!(status, 400);
    let errors = body["errors"].as_array().unwrap();
    let named: Vec<(u64, &str)> = errors
        .iter()
        .map(|e| (e["index"].as_u64().unwrap(), e["field"].as_str().unwrap()))
        .collect();
    assert_eq!(named, vec![(1, "level"), (1, "riskScore")]);
    assert!(errors[0]["message"].as_str().unwrap().contains("loud"));

    let big = json!({"action": "big", "description": "x".repeat(5000)});
    let (status, body) = s.post(&big).await;
    assert_eq!(status, 413);
    assert!(body["message"].as_str().unwrap().contains("4096"));

    let r = s
        .http
        .post(s.url("/api/v1/events"))
        .bearer_auth(TOKEN)
        .header("Content-Type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);

    let (status, _) = s.get("/api/v1/events?limit=501").await;
    assert_eq!(status, 400);
    let (status, body) = s.get("/api/v1/events?level=loud").await;
    assert_eq!((status, body["field"].as_str()), (400, Some("level")));

    let (_, page) = s.get("/api/v1/events").await;
    assert_eq!(page["total"], 1, "no rejected request stored anything");
}

/// Calls the server function at `path` without arguments, as the browser does, with `cookie`.
async fn call_with_cookie(s: &TestServer, path: &str, cookie: &str) -> reqwest::Response {
    s.http
        .post(s.url(path))
        .header("Cookie", cookie)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("")
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn login_sets_a_strict_http_only_cookie_that_opens_pages_and_server_functions() {
    let s = TestServer::start().await;
    let wrong = s
        .http
        .post(s.url("/api/fn/login"))
        .form(&[("token", "nope")])
        .send()
        .await
        .unwrap();
    assert!(wrong.headers().get("set-cookie").is_none());

    let r = s
        .http
        .post(s.url("/api/fn/login"))
        .header("Accept", "application/json")
        .form(&[("token", TOKEN)])
        .send()
        .await
        .unwrap();
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_string();

    let snapshot = call_with_cookie(&s, "/api/fn/snapshot", &pair).await;
    assert_eq!(snapshot.status(), 200);
    let snap: Value = snapshot.json().await.unwrap();
    assert_eq!(
        snap["counters"]["total"], 2,
        "both sign-ins are in the chain"
    );
    // Both attempts are recorded, with where they came from: the refused one as a failed
    // authentication, which the failed-login detector counts.
    let (_, page) = s
        .get(&format!("/api/v1/events?action={LOGIN_ACTION}"))
        .await;
    let logins = page["items"].as_array().unwrap();
    let outcomes: Vec<&str> = logins
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["success", "failure"], "newest first");
    for e in logins {
        assert_eq!(e["category"], "authentication");
        assert_eq!(e["source"], "trailwatch");
        assert_eq!(e["request"]["ip"], "127.0.0.1", "{e}");
    }

    let page = s
        .http
        .get(s.url("/"))
        .header("Cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Live activity"));

    // The socket takes the cookie as well.
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        format!("ws://{}/ws/audit?sinceSeq=0", s.addr),
    )
    .unwrap();
    req.headers_mut().insert("Cookie", pair.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    // The replay from seq 0 holds the two sign-ins, then the socket is live.
    let mut replayed = Vec::new();
    loop {
        let m = ws.next().await.unwrap().unwrap();
        let m: Value = serde_json::from_str(m.to_text().unwrap()).unwrap();
        if m["type"] == "ready" {
            break;
        }
        assert_eq!(m["type"], "event", "{m}");
        replayed.push(m["event"]["action"].as_str().unwrap().to_string());
    }
    assert_eq!(replayed, [LOGIN_ACTION, LOGIN_ACTION]);

    // Signing out ends the session and closes the socket it opened.
    let out = call_with_cookie(&s, "/api/fn/logout", &pair).await;
    assert!(
        out.status().is_success() || out.status().is_redirection(),
        "{}",
        out.status()
    );
    assert!(common::Socket { ws }.closed_by_server().await);
}

#[tokio::test]
async fn ingested_events_reach_a_subscribed_socket_in_order() {
    let s = TestServer::start().await;
    let mut ws = s.socket("").await;
    ws.send_json(json!({"type": "subscribe", "sinceSeq": 0}))
        .await;
    assert_eq!(ws.events_until_ready().await, Vec::<u64>::new());

    s.post(&batch("live", 3)).await;
    s.post(&json!({"action": "file.delete", "outcome": "denied", "user": "mallory"}))
        .await;
    let mut got = Vec::new();
    for _ in 0..4 {
        let m = ws.next_json().await;
        assert_eq!(m["type"], "event");
        got.push((
            m["event"]["seq"].as_u64().unwrap(),
            m["event"]["action"].as_str().unwrap().to_string(),
        ));
    }
    assert_eq!(
        got,
        vec![
            (1, "file.read".into()),
            (2, "file.read".into()),
            (3, "file.read".into()),
            (4, "file.delete".into())
        ]
    );
}

#[tokio::test]
async fn a_reconnecting_client_resumes_without_gap_or_duplicate() {
    let s = TestServer::start().await;
    s.post(&batch("before", 5)).await;
    let mut first = s.socket("").await;
    first
        .send_json(json!({"type": "subscribe", "sinceSeq": 0}))
        .await;
    assert_eq!(first.events_until_ready().await, vec![1, 2, 3, 4, 5]);
    first.ws.close(None).await.unwrap();
    drop(first);

    s.post(&batch("while-away", 5)).await;
    let mut second = s.socket("").await;
    second
        .send_json(json!({"type": "subscribe", "sinceSeq": 5}))
        .await;
    assert_eq!(second.events_until_ready().await, vec![6, 7, 8, 9, 10]);
    s.post(&batch("after", 2)).await;
    assert_eq!(second.events(2).await, vec![11, 12]);

    // The query parameter form starts at once, without waiting for a message.
    let mut third = s.socket("&sinceSeq=10").await;
    assert_eq!(third.events_until_ready().await, vec![11, 12]);
}

#[tokio::test]
async fn events_stored_while_no_socket_was_open_reach_the_first_one_without_a_gap() {
    // With no socket open the hub builds no frames; the first socket reads those events from
    // the store and then follows live, each once.
    let s = TestServer::start().await;
    s.post(&batch("unwatched", 6)).await;
    let mut ws = s.socket("&sinceSeq=2").await;
    assert_eq!(ws.events_until_ready().await, vec![3, 4, 5, 6]);
    s.post(&batch("watched", 3)).await;
    assert_eq!(ws.events(3).await, vec![7, 8, 9]);
}

#[tokio::test]
async fn a_client_ahead_of_the_head_is_told_the_real_head_and_still_gets_new_events() {
    // The data directory was wiped while a browser still remembered seq 50.
    let s = TestServer::start().await;
    s.post(&batch("fresh", 3)).await;
    let mut ws = s.socket("").await;
    ws.subscribe(json!({"type": "subscribe", "sinceSeq": 50}))
        .await;
    let ready = ws.next_json().await;
    assert_eq!(
        (ready["type"].as_str(), ready["headSeq"].as_u64()),
        (Some("ready"), Some(3))
    );
    s.post(&batch("next", 1)).await;
    assert_eq!(ws.events(1).await, vec![4]);
}

#[tokio::test]
async fn a_socket_that_does_not_subscribe_gets_the_last_100_then_live() {
    let s = TestServer::start().await;
    s.post(&batch("old", 120)).await;
    let mut ws = s.socket("").await;
    assert_eq!(
        ws.events_until_ready().await,
        (21..=120).collect::<Vec<_>>()
    );
    s.post(&batch("new", 1)).await;
    assert_eq!(ws.events(1).await, vec![121]);
}

/// Reads everything until `want` events have arrived; returns the seqs and whether `lagged`
/// was among the messages.
async fn drain(ws: &mut common::Socket, want: usize) -> (Vec<u64>, bool) {
    let mut seqs = Vec::with_capacity(want);
    let mut lagged = false;
    while seqs.len() < want {
        let m = ws.next_json().await;
        match m["type"].as_str() {
            Some("event") => seqs.push(m["event"]["seq"].as_u64().unwrap()),
            Some("lagged") => {
                assert_eq!(
                    m["lastSeq"].as_u64(),
                    seqs.last().copied().or(Some(0)),
                    "lagged names the last seq sent"
                );
                lagged = true;
            }
            // Fifteen thousand events in seconds is a spike: the anomaly rules may raise an
            // alert while the batches arrive, and alerts interleave with events.
            Some("ready" | "alert") => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    (seqs, lagged)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_client_is_told_it_lagged_while_others_keep_receiving() {
    const BATCHES: usize = 30;
    const PER_BATCH: usize = 500;
    const TOTAL: usize = BATCHES * PER_BATCH;
    let s = TestServer::start_with(|c| c.live_queue = 1024).await;

    // The stalled client: a tiny receive buffer, and it stops reading after `ready`.
    let mut stalled = common::stalled_socket(s.addr, "&sinceSeq=0").await;
    assert!(stalled.events_until_ready().await.is_empty());

    let mut healthy = s.socket("&sinceSeq=0").await;
    assert!(healthy.events_until_ready().await.is_empty());
    let reader = tokio::spawn(async move { drain(&mut healthy, TOTAL).await });

    let padding = "p".repeat(1000);
    for b in 0..BATCHES {
        let events: Vec<Value> = (0..PER_BATCH)
            .map(|i| json!({"action": "bulk.load", "description": format!("{b}-{i}-{padding}")}))
            .collect();
        let (status, _) = s.post(&Value::Array(events)).await;
        assert_eq!(status, 201);
    }

    let (seqs, _) = reader.await.unwrap();
    assert_eq!(
        seqs,
        (1..=TOTAL as u64).collect::<Vec<_>>(),
        "the healthy client got every event once, in order"
    );

    // Now the stalled client reads: it was told it lagged, and the server resumed it from the
    // store with nothing lost and nothing repeated.
    let (seqs, lagged) = drain(&mut stalled, TOTAL).await;
    assert!(lagged, "the stalled client was told it lagged");
    assert_eq!(seqs, (1..=TOTAL as u64).collect::<Vec<_>>());
}

#[tokio::test]
async fn the_socket_answers_pings_and_survives_binary_noise() {
    let s = TestServer::start().await;
    let mut ws = s.socket("&sinceSeq=0").await;
    assert!(ws.events_until_ready().await.is_empty());
    use futures::SinkExt;
    ws.ws
        .send(Message::Ping(vec![1, 2, 3].into()))
        .await
        .unwrap();
    ws.send_json(json!({"type": "nonsense"})).await;
    let m = ws.next_json().await;
    assert_eq!(m["type"], "error");
    s.post(&batch("after-noise", 1)).await;
    assert_eq!(ws.events(1).await, vec![1]);
}

#[tokio::test]
async fn oversized_queries_headers_and_ndjson_lines_get_errors_naming_the_limit() {
    let s = TestServer::start().await;
    let long = "x".repeat(trailwatch::server::MAX_QUERY_BYTES + 1);
    let (status, body) = s.get(&format!("/api/v1/events?search_query={long}")).await;
    assert_eq!(
        (status, body["field"].as_str()),
        (414, Some("query")),
        "{body}"
    );

    let r = s
        .http
        .get(s.url("/api/v1/events"))
        .bearer_auth(TOKEN)
        .header(
            "X-Padding",
            "p".repeat(trailwatch::server::MAX_HEADER_BYTES),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 431);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["field"], "headers", "{body}");

    // One runaway NDJSON line is refused by index; the request stores nothing.
    let huge = format!(
        "{{\"action\":\"ok\"}}\n{{\"action\":\"big\",\"metadata\":{{\"blob\":\"{}\"}}}}\n",
        "b".repeat(trailwatch::ingest::MAX_LINE_BYTES)
    );
    let r = s
        .http
        .post(s.url("/api/v1/events"))
        .bearer_auth(TOKEN)
        .header("Content-Type", "application/x-ndjson")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["index"], 1, "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("at most"),
        "{body}"
    );
    let (_, page) = s.get("/api/v1/events?action=ok").await;
    assert_eq!(page["total"], 0, "all or nothing");
}

#[tokio::test]
async fn a_page_lets_only_its_own_nonce_run_inline_scripts_and_other_answers_load_nothing() {
    let s = TestServer::start().await;
    let page = |path: &'static str| s.http.get(s.url(path)).send();
    s.post(&json!({"action": "seen.in.the.feed"})).await;
    let login = s
        .http
        .post(s.url("/api/fn/login"))
        .header("Accept", "application/json")
        .form(&[("token", TOKEN)])
        .send()
        .await
        .unwrap();
    let cookie = login.headers()["set-cookie"].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_string();
    let mut nonces = Vec::new();
    // The login page, and the dashboard with its resources serialised into the page.
    for r in [
        page("/login").await.unwrap(),
        s.http
            .get(s.url("/"))
            .header("Cookie", &cookie)
            .send()
            .await
            .unwrap(),
    ] {
        let csp = r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        let html = r.text().await.unwrap();
        let nonce = csp
            .split("'nonce-")
            .nth(1)
            .and_then(|rest| rest.split('\'').next())
            .unwrap_or_else(|| panic!("no nonce in {csp}"))
            .to_string();
        assert!(nonce.len() >= 16, "{nonce}");
        assert!(csp.contains("script-src 'self' 'nonce-"), "{csp}");
        assert!(!csp.contains("'unsafe-inline' 'self'") && !csp.contains("'unsafe-eval'"));
        // Every inline script the page carries is one the policy names.
        let scripts: Vec<&str> = html.split("<script").skip(1).collect();
        assert!(!scripts.is_empty());
        for tag in scripts {
            let open = tag.split('>').next().unwrap();
            assert!(
                open.contains(&format!("nonce=\"{nonce}\"")),
                "a script without the nonce: <script{open}>"
            );
        }
        nonces.push(nonce);
    }
    assert_ne!(nonces[0], nonces[1], "a new page, a new nonce");

    let api = page("/api/health").await.unwrap();
    let csp = api.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.starts_with("default-src 'none';"), "{csp}");
}
