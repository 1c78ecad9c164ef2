//! Alerts through a real server: rules raise them over a real WebSocket, a burst is grouped
//! into one alert, the log acknowledges, and a real webhook receiver on 127.0.0.1:0 gets them
//! with retries recorded in the delivery log.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.
#![cfg(feature = "ssr")]

mod common;

use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use common::TestServer;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;
use trailwatch::alerts::{AlertConfig, Webhook, WebhookFormat};

fn denials(n: usize) -> Value {
    let events: Vec<Value> = (0..n)
        .map(|i| {
            json!({"action": "file.read", "outcome": "denied", "userId": "mallory",
                        "description": format!("denial {i}")})
        })
        .collect();
    json!(events)
}

#[tokio::test]
async fn ten_thousand_denials_raise_one_alert_then_one_update_with_the_count() {
    let server = TestServer::start_with(|c| {
        c.alerts = AlertConfig {
            group_seconds: 1,
            ..AlertConfig::default()
        }
    })
    .await;
    let mut socket = server.socket("&sinceSeq=0").await;
    let (status, body) = server.post(&denials(10_000)).await;
    assert_eq!(status, 201, "{body}");

    let first = socket.next_alert().await;
    assert_eq!(first["severity"], "warning");
    assert_eq!(first["rule"], "denied");
    assert_eq!(first["message"], "file.read denied for mallory");
    assert_eq!(first["count"], 1);
    assert_eq!(first["event"]["description"], "denial 0");
    // When the grouping window closes, the same alert comes back with every event counted.
    let update = socket.next_alert().await;
    assert_eq!(update["id"], first["id"]);
    assert_eq!(update["count"], 10_000);

    let (status, log) = server.get("/api/v1/alerts").await;
    assert_eq!(status, 200);
    let items = log["items"].as_array().unwrap();
    let denied: Vec<&Value> = items.iter().filter(|a| a["rule"] == "denied").collect();
    assert_eq!(denied.len(), 1, "{log}");
    assert_eq!(denied[0]["count"], 10_000);

    let id = first["id"].as_u64().unwrap();
    let r = server
        .http
        .post(server.url(&format!("/api/v1/alerts/{id}/acknowledge")))
        .bearer_auth(common::TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let acked: Value = r.json().await.unwrap();
    assert!(acked["acknowledgedAt"].as_i64().is_some());
    let (_, open) = server.get("/api/v1/alerts?unacknowledged=true").await;
    assert!(open["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["id"] != id));

    let r = server
        .http
        .post(server.url("/api/v1/alerts/999999/acknowledge"))
        .bearer_auth(common::TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let (status, body) = server.get("/api/v1/alerts?limit=0").await;
    assert_eq!(status, 400);
    assert_eq!(body["field"], "limit");
}

#[tokio::test]
async fn a_failure_is_critical_and_a_webhook_is_retried_until_it_answers() {
    // A receiver that fails its first request and then accepts, reporting every body.
    let (seen_tx, mut seen) = mpsc::unbounded_channel::<Value>();
    let calls = Arc::new(AtomicU32::new(0));
    let app = Router::new().route(
        "/hook",
        post({
            let calls = calls.clone();
            move |Json(body): Json<Value>| {
                let calls = calls.clone();
                let seen_tx = seen_tx.clone();
                async move {
                    let _ = seen_tx.send(body);
                    if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                        StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        StatusCode::NO_CONTENT
                    }
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let url = hook_url.clone();
    let server = TestServer::start_with(move |c| {
        c.alerts = AlertConfig {
            webhooks: vec![Webhook {
                url: url.clone(),
                format: WebhookFormat::Json,
                min_severity: trailwatch::analytics::Severity::Critical,
            }],
            ..AlertConfig::default()
        }
    })
    .await;
    let mut socket = server.socket("&sinceSeq=0").await;
    // A denial is only a warning: below the webhook's minimum.
    server
        .post(&json!([{"action": "file.read", "outcome": "denied"},
                       {"action": "backup.run", "outcome": "failure", "userId": "svc"}]))
        .await;
    let warning = socket.next_alert().await;
    assert_eq!(warning["severity"], "warning");
    let critical = socket.next_alert().await;
    assert_eq!(critical["severity"], "critical");
    assert_eq!(critical["message"], "backup.run failed for svc");

    let first = seen.recv().await.unwrap();
    let second = seen.recv().await.unwrap();
    assert_eq!(first, second, "the retry sends the same alert");
    assert_eq!(first["type"], "alert");
    assert_eq!(first["rule"], "failure");
    assert_eq!(first["event"]["action"], "backup.run");

    // The delivery log records both attempts; the second is written after the receiver
    // answered, so wait for it through the log itself.
    let id = critical["id"].as_u64().unwrap();
    let mut log = Value::Null;
    for _ in 0..100 {
        log = server
            .get(&format!("/api/v1/alerts/{id}/deliveries"))
            .await
            .1;
        if log.as_array().is_some_and(|l| l.len() == 2) {
            break;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let log = log.as_array().unwrap();
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!(log[0]["attempt"], 1);
    assert_eq!(log[0]["status"], 500);
    assert_eq!(log[1]["attempt"], 2);
    assert_eq!(log[1]["status"], 204);
    assert!(log[1]["error"].is_null());
    assert!(seen.try_recv().is_err(), "no webhook for the warning");
}

#[tokio::test]
async fn an_alerts_only_socket_gets_alerts_and_no_events() {
    let server = TestServer::start().await;
    server.post(&json!({"action": "before"})).await;
    let mut socket = server.socket("").await;
    socket
        .send_json(json!({"type": "subscribe", "sinceSeq": 0, "alertsOnly": true}))
        .await;
    assert_eq!(socket.next_json().await["type"], "subscribed");
    // No catch-up: the stored event is not replayed.
    let ready = socket.next_json().await;
    assert_eq!(
        (ready["type"].as_str(), ready["headSeq"].as_u64()),
        (Some("ready"), Some(1))
    );

    server
        .post(&json!([{"action": "quiet"}, {"action": "vault.open", "outcome": "denied"}]))
        .await;
    let m = socket.next_json().await;
    assert_eq!(
        (m["type"].as_str(), m["rule"].as_str()),
        (Some("alert"), Some("denied")),
        "{m}"
    );
    server
        .post(&json!([{"action": "quiet"}, {"action": "job.run", "outcome": "failure"}]))
        .await;
    let m = socket.next_json().await;
    assert_eq!(
        (m["type"].as_str(), m["rule"].as_str()),
        (Some("alert"), Some("failure")),
        "{m}"
    );
}
