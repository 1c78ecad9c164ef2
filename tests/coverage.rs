//! `GET /api/v1/coverage` through a real server: a catalogue of expected actions (an action
//! and a prefix) reads `ok`, `silent` or `never` from the events stored, with their counts; an
//! action that came daily and stopped is learned and flagged; an action gone silent raises one
//! alert; the catalogue is checked as the config file is read.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.
#![cfg(feature = "ssr")]

mod common;

use common::TestServer;
use serde_json::{json, Value};
use trailwatch::analytics::coverage::{Catalogue, Expected};

const DAY_MS: i64 = 86_400_000;

fn entry<'a>(coverage: &'a Value, action: &str) -> &'a Value {
    coverage["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == action)
        .unwrap_or_else(|| panic!("{action} is not listed: {coverage}"))
}

#[tokio::test]
async fn expected_and_learned_actions_read_ok_silent_or_never_from_the_events() {
    let s = TestServer::start_with(|c| {
        c.coverage = Catalogue {
            expected: vec![
                Expected {
                    action: "auth.*".into(),
                    silent: "1d".into(),
                },
                Expected {
                    action: "agent.delete".into(),
                    silent: "7d".into(),
                },
                Expected {
                    action: "agent.create".into(),
                    silent: "7d".into(),
                },
            ],
        };
    })
    .await;
    let now = chrono::Utc::now().timestamp_millis();
    let mut events = vec![
        json!({"action": "auth.login", "user": {"id": "dana"}}),
        json!({"action": "auth.logout", "user": {"id": "dana"}, "timestamp": now - 2 * DAY_MS}),
        json!({"action": "agent.delete", "user": {"id": "ops"}, "timestamp": now - 9 * DAY_MS}),
    ];
    // Daily for twenty days, until five days ago.
    events.extend((5..25).map(|d| {
        json!({"action": "report.export", "user": {"id": "eli"}, "timestamp": now - d * DAY_MS})
    }));
    // On three days only: too few to learn.
    events.extend((0..3).map(
        |d| json!({"action": "rare.thing", "user": {"id": "eli"}, "timestamp": now - d * DAY_MS}),
    ));
    let (status, body) = s.post(&json!(events)).await;
    assert_eq!(status, 201, "{body}");

    let (status, coverage) = s.get("/api/v1/coverage").await;
    assert_eq!(status, 200, "{coverage}");
    let auth = entry(&coverage, "auth.*");
    assert_eq!(auth["status"], "ok", "{coverage}");
    assert_eq!(auth["origin"], "expected");
    assert_eq!(auth["count7d"], 2);
    assert_eq!(auth["count30d"], 2);
    let deleted = entry(&coverage, "agent.delete");
    assert_eq!(deleted["status"], "silent", "{coverage}");
    assert_eq!(deleted["count7d"], 0);
    assert_eq!(deleted["count30d"], 1);
    assert!(deleted["lastSeenHour"].as_i64().unwrap() <= now - 9 * DAY_MS);
    assert_eq!(entry(&coverage, "agent.create")["status"], "never");
    let learned = entry(&coverage, "report.export");
    assert_eq!(learned["origin"], "learned");
    assert_eq!(learned["status"], "silent", "{coverage}");
    assert_eq!(learned["count30d"], 20);
    assert!(coverage["entries"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["action"] != "rare.thing"));
    // Silent and never first.
    assert_ne!(coverage["entries"][0]["status"], "ok");

    // Back: ok again.
    let (status, _) = s
        .post(&json!({"action": "report.export", "user": {"id": "eli"}}))
        .await;
    assert_eq!(status, 201);
    let (_, coverage) = s.get("/api/v1/coverage").await;
    assert_eq!(entry(&coverage, "report.export")["status"], "ok");
}

#[test]
fn the_catalogue_is_checked_as_the_config_file_is_read() {
    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct File {
        coverage: Catalogue,
    }
    let ok: File = toml::from_str(
        "[coverage]\nexpected = [{ action = \"agent.delete\", silent = \"7d\" }, { action = \"auth.*\", silent = \"12h\" }]",
    )
    .unwrap();
    assert_eq!(ok.coverage.expected.len(), 2);
    for (text, says) in [
        (
            "[coverage]\nexpected = [{ action = \"x\", silent = \"7w\" }]",
            "\"x\"",
        ),
        ("[coverage]\nexpected = [{ action = \"x\" }]", "silent"),
        (
            "[coverage]\nexpected = [{ action = \"x\", silent = \"1d\", when = 1 }]",
            "unknown field",
        ),
        ("[coverage]\nexpect = []", "unknown field"),
    ] {
        let err = toml::from_str::<File>(text).err().unwrap().to_string();
        assert!(err.contains(says), "{text}: {err}");
    }
}

/// The next alert of the coverage rules on `socket`.
async fn next_coverage_alert(socket: &mut common::Socket) -> Value {
    loop {
        let alert = socket.next_alert().await;
        if alert["rule"].as_str().unwrap().starts_with("coverage:") {
            return alert;
        }
    }
}

#[tokio::test]
async fn an_action_gone_silent_raises_one_alert() {
    let s = TestServer::start_with(|c| {
        c.alerts = trailwatch::alerts::AlertConfig {
            anomaly_seconds: 1,
            ..Default::default()
        };
        c.coverage = Catalogue {
            expected: ["agent.delete", "agent.create"]
                .map(|action| Expected {
                    action: action.into(),
                    silent: "7d".into(),
                })
                .to_vec(),
        };
    })
    .await;
    let mut socket = s.socket("&sinceSeq=0").await;
    let now = chrono::Utc::now().timestamp_millis();
    let old = |action: &str| json!({"action": action, "user": {"id": "ops"}, "timestamp": now - 9 * DAY_MS});
    let (status, _) = s.post(&old("agent.delete")).await;
    assert_eq!(status, 201);
    let first = next_coverage_alert(&mut socket).await;
    assert_eq!(first["rule"], "coverage:agent.delete");
    assert_eq!(first["severity"], "warning");
    let message = first["message"].as_str().unwrap();
    assert!(
        message.starts_with("agent.delete (expected) is not audited for 9."),
        "{message}"
    );
    assert!(
        message.ends_with("expected at least every 7.0 days"),
        "{message}"
    );

    // A later check raises the next silent action, and not the first one again.
    let (status, _) = s.post(&old("agent.create")).await;
    assert_eq!(status, 201);
    let second = next_coverage_alert(&mut socket).await;
    assert_eq!(second["rule"], "coverage:agent.create");
    let (_, log) = s.get("/api/v1/alerts").await;
    let deleted = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["rule"] == "coverage:agent.delete")
        .count();
    assert_eq!(deleted, 1, "{log}");
}
