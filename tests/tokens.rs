//! Scoped API tokens through a real server: the token lifecycle with its self-audit, tokens
//! made by the CLI while the server runs, revocation closing sockets, and the ingest limit.
//! (Every route against every scope is in `users.rs`, with the roles.)
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.
#![cfg(feature = "ssr")]

mod common;

use common::{TestServer, TOKEN};
use serde_json::{json, Value};
use trailwatch::cli::config::TokenCommand;

/// Sends `method path` with `token`; returns the status and JSON body (null if none).
async fn call(
    s: &TestServer,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = s
        .http
        .request(method.parse().unwrap(), s.url(path))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Creates a token through the API with the admin token; returns its secret.
async fn make(s: &TestServer, name: &str, scope: &str) -> String {
    let (status, body) = call(
        s,
        "POST",
        "/api/v1/tokens",
        TOKEN,
        Some(json!({"name": name, "scope": scope})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_token_works_within_its_scope_until_revoked_and_every_change_is_audited() {
    let s = TestServer::start().await;
    let reader = make(&s, "dash-reader", "read").await;
    let sender = make(&s, "app-sender", "ingest").await;

    let (status, body) = call(
        &s,
        "POST",
        "/api/v1/events",
        &sender,
        Some(json!({"action": "a.b"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        call(&s, "GET", "/api/v1/events", &sender, None).await.0,
        403
    );
    let (status, page) = call(&s, "GET", "/api/v1/events?action=a.b", &reader, None).await;
    assert_eq!((status, page["total"].as_u64()), (200, Some(1)), "{page}");
    let (status, _) = call(
        &s,
        "POST",
        "/api/v1/events",
        &reader,
        Some(json!({"action": "x"})),
    )
    .await;
    assert_eq!(status, 403);

    // Listed without secrets, with when each was last used.
    let (_, list) = call(&s, "GET", "/api/v1/tokens", TOKEN, None).await;
    let listed = list["tokens"].as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert!(!list.to_string().contains(&reader), "no secret is listed");
    assert_eq!(listed[0]["name"], "dash-reader");
    assert!(listed[0]["lastUsedAt"].is_string(), "{list}");

    // Bad requests name the field.
    for (body, field) in [
        (json!({"name": "dash-reader", "scope": "read"}), "name"),
        (json!({"name": "x y", "scope": "read"}), "name"),
        (json!({"name": "ok", "scope": "root"}), "scope"),
        (json!({"scope": "read"}), "name"),
    ] {
        let (status, err) = call(&s, "POST", "/api/v1/tokens", TOKEN, Some(body.clone())).await;
        assert_eq!(
            (status, err["field"].as_str()),
            (400, Some(field)),
            "{body}: {err}"
        );
    }

    let (status, body) = call(&s, "DELETE", "/api/v1/tokens/dash-reader", TOKEN, None).await;
    assert_eq!(
        (status, body["revoked"].as_bool()),
        (200, Some(true)),
        "{body}"
    );
    assert_eq!(
        call(&s, "GET", "/api/v1/events", &reader, None).await.0,
        401
    );
    let (status, _) = call(&s, "DELETE", "/api/v1/tokens/nobody", TOKEN, None).await;
    assert_eq!(status, 404);

    // The chain holds each change, by whoever made it, from where.
    let (_, audit) = s.get("/api/v1/events?source=trailwatch").await;
    let seen: Vec<(String, String, String)> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["request"]["ip"], "127.0.0.1", "{e}");
            (
                e["action"].as_str().unwrap().into(),
                e["user"]["id"].as_str().unwrap().into(),
                e["metadata"]["token"].as_str().unwrap().into(),
            )
        })
        .collect();
    let t = |a: &str, token: &str| (a.to_string(), "admin".to_string(), token.to_string());
    assert_eq!(
        seen,
        [
            t("token.revoke", "dash-reader"),
            t("token.create", "app-sender"),
            t("token.create", "dash-reader"),
        ],
        "{audit}"
    );

    // An admin-scoped token acts under its own name in what it audits.
    let ops = make(&s, "ops", "admin").await;
    let (status, _) = call(&s, "GET", "/api/v1/subjects/alice/export", &ops, None).await;
    assert_eq!(status, 200);
    let (_, audit) = s.get("/api/v1/events?action=subject.export").await;
    assert_eq!(audit["items"][0]["user"]["id"], "ops", "{audit}");
}

#[tokio::test]
async fn a_token_made_by_the_cli_while_the_server_runs_works_at_once_and_is_audited() {
    let s = TestServer::start().await;
    let mut socket = s.socket("").await;
    socket
        .subscribe(json!({"type": "subscribe", "sinceSeq": 0}))
        .await;
    let out = trailwatch::cli::accounts::token(
        &s.accounts(),
        &TokenCommand::Create {
            name: "from-cli".into(),
            scope: "ingest".into(),
        },
    )
    .await
    .unwrap();
    let token = out.trim();
    assert!(
        token.starts_with("twt_") && !token.contains(' '),
        "only the token: {out:?}"
    );
    let (status, body) = call(
        &s,
        "POST",
        "/api/v1/events",
        token,
        Some(json!({"action": "cli.sent"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");

    // The server records the CLI's change in the chain on its own.
    let audited = loop {
        let m = socket.next_json().await;
        if m["type"] == "event" && m["event"]["action"] == "token.create" {
            break m["event"].clone();
        }
    };
    assert_eq!(audited["user"]["id"], "cli");
    assert_eq!(
        audited["metadata"],
        json!({"token": "from-cli", "scope": "ingest"})
    );

    let list = trailwatch::cli::accounts::token(&s.accounts(), &TokenCommand::List)
        .await
        .unwrap();
    let row = list.lines().find(|l| l.starts_with("from-cli")).unwrap();
    assert!(
        row.contains("ingest") && !row.contains("never"),
        "used: {list}"
    );
    let out = trailwatch::cli::accounts::token(
        &s.accounts(),
        &TokenCommand::Revoke {
            name: "from-cli".into(),
        },
    )
    .await
    .unwrap();
    assert_eq!(out, "revoked from-cli\n");
    assert_eq!(
        call(
            &s,
            "POST",
            "/api/v1/events",
            token,
            Some(json!({"action": "x"}))
        )
        .await
        .0,
        401
    );
    let err = trailwatch::cli::accounts::token(
        &s.accounts(),
        &TokenCommand::Create {
            name: "x".into(),
            scope: "root".into(),
        },
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("scope"), "{err}");
}

/// A socket opened with `token`, subscribed from the start.
async fn socket_with(s: &TestServer, token: &str) -> common::Socket {
    let url = format!("ws://{}/ws/audit?token={token}", s.addr);
    let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let mut socket = common::Socket { ws };
    socket
        .subscribe(json!({"type": "subscribe", "sinceSeq": 0}))
        .await;
    socket
}

#[tokio::test]
async fn revoking_a_token_closes_the_sockets_it_opened_and_no_other() {
    let s = TestServer::start().await;
    let api = make(&s, "revoked-by-api", "read").await;
    let cli = make(&s, "revoked-by-cli", "read").await;
    let kept = make(&s, "kept", "read").await;
    let mut by_api = socket_with(&s, &api).await;
    let mut by_cli = socket_with(&s, &cli).await;
    let mut other = socket_with(&s, &kept).await;

    let (status, _) = call(&s, "DELETE", "/api/v1/tokens/revoked-by-api", TOKEN, None).await;
    assert_eq!(status, 200);
    assert!(by_api.closed_by_server().await, "closed on revocation");

    // From the CLI, the server learns of it on its next look (every 2 s).
    trailwatch::cli::accounts::token(
        &s.accounts(),
        &TokenCommand::Revoke {
            name: "revoked-by-cli".into(),
        },
    )
    .await
    .unwrap();
    assert!(by_cli.closed_by_server().await, "closed within seconds");

    // The other token's socket still streams.
    s.post(&json!({"action": "still.here"})).await;
    loop {
        let m = other.next_json().await;
        if m["type"] == "event" && m["event"]["action"] == "still.here" {
            break;
        }
    }
}

#[tokio::test]
async fn a_token_over_the_ingest_limit_gets_429_with_retry_after_and_it_is_recorded() {
    let s = TestServer::start_with(|c| {
        c.limits = trailwatch::server::limits::LimitsConfig {
            ingest_per_second: 0.5,
            ingest_burst: 2,
            ..Default::default()
        };
    })
    .await;
    let sender = make(&s, "chatty", "ingest").await;
    let send = || async {
        s.http
            .post(s.url("/api/v1/events"))
            .bearer_auth(&sender)
            .json(&json!({"action": "tick"}))
            .send()
            .await
            .unwrap()
    };
    assert_eq!(send().await.status(), 201);
    assert_eq!(send().await.status(), 201);
    let refused = send().await;
    assert_eq!(refused.status(), 429);
    let retry: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "rate_limited");
    assert_eq!(send().await.status(), 429);
    // Another holder has its own allowance.
    assert_eq!(s.post(&json!({"action": "admin.tick"})).await.0, 201);

    // Nothing refused was stored; the first refusal (only) is in the chain.
    let (_, ticks) = s.get("/api/v1/events?action=tick").await;
    assert_eq!(ticks["total"], 2);
    let (_, limited) = s.get("/api/v1/events?action=ingest.rate_limited").await;
    assert_eq!(limited["total"], 1, "{limited}");
    let e = &limited["items"][0];
    assert_eq!(
        (e["user"]["id"].as_str(), e["outcome"].as_str()),
        (Some("chatty"), Some("denied"))
    );
    assert_eq!(e["category"], "security");
}
