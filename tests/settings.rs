//! The settings an admin changes while the server runs, through a real server: in effect at
//! once, recorded with each field's before and after, kept over the file after a restart,
//! and refused whole when a value is out of range.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.
#![cfg(feature = "ssr")]

mod common;

use common::TestServer;
use serde_json::{json, Value};
use trailwatch::site::Server;

async fn call(s: &TestServer, cookie: &str, path: &str, args: Value) -> (u16, Value) {
    s.call_fn(path, cookie, &args).await
}

#[tokio::test]
async fn a_change_takes_effect_at_once_is_recorded_and_outlives_a_restart() {
    let s = TestServer::start().await;
    let cookie = s.admin_session().await;
    let (status, page) = call(&s, &cookie, "/api/fn/settings", json!({})).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        page["current"]["ingestPerSecond"], 1000.0,
        "the default: {page}"
    );
    assert_eq!(page["savedBy"], Value::Null);

    let mut next = page["current"].clone();
    next["ingestPerSecond"] = json!(0.001);
    next["ingestBurst"] = json!(1);
    next["retentionDays"] = json!(90);
    let (status, saved) = call(
        &s,
        &cookie,
        "/api/fn/save_settings",
        json!({"settings": next}),
    )
    .await;
    assert_eq!(status, 200, "{saved}");
    assert_eq!(saved["current"]["retentionDays"], 90);
    assert_eq!(saved["savedBy"], "admin");

    // In effect: one request fits the new burst, the next is over the limit.
    assert_eq!(s.post(&json!({"action": "first"})).await.0, 201);
    assert_eq!(s.post(&json!({"action": "second"})).await.0, 429);

    // Recorded with what changed, and nothing else.
    let (_, events) = s.get("/api/v1/events?action=settings.change").await;
    assert_eq!(events["total"], 1, "{events}");
    let changes = &events["items"][0]["changes"];
    assert_eq!(
        changes["retentionDays"],
        json!({"before": 365, "after": 90})
    );
    assert_eq!(changes["ingestBurst"], json!({"before": 2000, "after": 1}));
    assert_eq!(changes.as_object().unwrap().len(), 3, "{changes}");

    // Saving the same again records nothing.
    let (status, _) = call(
        &s,
        &cookie,
        "/api/fn/save_settings",
        json!({"settings": next}),
    )
    .await;
    assert_eq!(status, 200);
    let (_, events) = s.get("/api/v1/events?action=settings.change").await;
    assert_eq!(events["total"], 1);

    // A restart on the same data directory keeps them over the file's defaults.
    let mut s = s;
    s.stop().await;
    let server = Server::bind(&common::serve_config(s.dir.path()))
        .await
        .unwrap();
    assert_eq!(server.state.limiter.config().ingest_burst, 1);
    assert_eq!(server.state.retention().days, 90);
}

#[tokio::test]
async fn an_out_of_range_value_is_refused_by_name_and_nothing_changes() {
    let s = TestServer::start().await;
    let cookie = s.admin_session().await;
    let (_, page) = call(&s, &cookie, "/api/fn/settings", json!({})).await;
    for (field, value, named) in [
        ("retentionDays", json!(0), "retention.days"),
        ("sessionIdleMinutes", json!(0), "idle_minutes"),
        ("sessionIdleMinutes", json!(100_000), "idle_minutes"),
        ("ingestPerSecond", json!(-1.0), "ingest_per_second"),
    ] {
        let mut next = page["current"].clone();
        next[field] = value;
        let (status, body) = call(
            &s,
            &cookie,
            "/api/fn/save_settings",
            json!({"settings": next}),
        )
        .await;
        assert_eq!(status, 400, "{field}: {body}");
        assert!(body.to_string().contains(named), "{field}: {body}");
    }
    let (_, after) = call(&s, &cookie, "/api/fn/settings", json!({})).await;
    assert_eq!(after["current"], page["current"]);
    let (_, events) = s.get("/api/v1/events?action=settings.change").await;
    assert_eq!(events["total"], 0);
}
