//! Analytics through real components: rollups in a real SQLite file against a brute-force
//! recount, and the summary, insights and statistics routes of a real server on 127.0.0.1:0
//! against crafted events with known answers.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.
#![cfg(feature = "ssr")]

mod common;

use std::collections::BTreeMap;

use chrono::{TimeZone, Timelike, Utc};
use common::random::{self, Rng};
use common::rollups::{self, Fields};
use common::TestServer;
use rusqlite::Connection;
use serde_json::{json, Value};
use trailwatch::model::AuditEvent;
use trailwatch::store::{Store, StoreOptions, DB_FILE};

fn options() -> StoreOptions {
    StoreOptions {
        durable: false,
        ..StoreOptions::default()
    }
}

/// Random events spread over 40 days, out of order, a few before 1970 (negative times must
/// fall in the right minute and hour too).
fn spread(rng: &mut Rng, n: usize) -> Vec<AuditEvent> {
    (0..n)
        .map(|i| {
            let mut e = random::event(rng, i);
            let ms = if rng.chance(2) {
                -(rng.below(10_000_000) as i64)
            } else {
                random::T0 + rng.below(40 * 24 * 3_600_000) as i64
            };
            e.timestamp = Utc.timestamp_millis_opt(ms).unwrap();
            e
        })
        .collect()
}

fn fields(e: &AuditEvent) -> Fields<'_> {
    Fields {
        ts: e.timestamp.timestamp_millis(),
        level: e.level.as_str(),
        category: e.category.as_str(),
        action: &e.action,
        outcome: e.outcome.as_str(),
        user: &e.user.id,
        source: &e.source.0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rollups_equal_a_brute_force_recount_of_random_events() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    let mut rng = Rng::new(4);
    let events = spread(&mut rng, 4000);
    // Four producers with batches of random sizes: group commits mix their events.
    let mut chunks = Vec::new();
    let mut rest = events.as_slice();
    while !rest.is_empty() {
        let n = (1 + rng.below(300)).min(rest.len());
        chunks.push(rest[..n].to_vec());
        rest = &rest[n..];
    }
    let mut producers = Vec::new();
    for p in 0..4 {
        let store = store.clone();
        let mine: Vec<Vec<AuditEvent>> = chunks.iter().skip(p).step_by(4).cloned().collect();
        producers.push(tokio::spawn(async move {
            for chunk in mine {
                store.append(chunk).await.unwrap();
            }
        }));
    }
    for p in producers {
        p.await.unwrap();
    }
    let path = dir.path().join(DB_FILE);
    let want = rollups::recount(events.iter().map(fields));
    rollups::assert_same("random events", &rollups::stored(&path), &want);
    rollups::assert_same("the events table", &rollups::recount_stored(&path), &want);
}

#[tokio::test]
async fn a_database_from_before_rollups_gets_them_computed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    let mut rng = Rng::new(9);
    store.append(spread(&mut rng, 500)).await.unwrap();
    drop(store);
    // Schema 3 had no rollup tables and no partial index for critical events.
    let path = dir.path().join(DB_FILE);
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(
        "DROP TABLE rollup_minute; DROP TABLE rollup_hour; DROP TABLE rollup_user_hour;
         DROP TABLE rollup_hour_total; DROP INDEX events_critical;
         UPDATE meta SET value = '3' WHERE key = 'schema_version';",
    )
    .unwrap();
    drop(conn);
    let store = Store::open(dir.path(), options()).unwrap();
    rollups::assert_same(
        "after the upgrade",
        &rollups::stored(&path),
        &rollups::recount_stored(&path),
    );
    // And the writer keeps them in step from there.
    store.append(spread(&mut rng, 200)).await.unwrap();
    rollups::assert_same(
        "after more appends",
        &rollups::stored(&path),
        &rollups::recount_stored(&path),
    );
}

const HOUR: i64 = 3_600_000;

/// An event for the REST API at `ms`.
fn at(ms: i64, user: &str, action: &str, outcome: &str, level: &str) -> Value {
    json!({"timestamp": ms, "userId": user, "action": action, "outcome": outcome, "level": level})
}

async fn get_ok(server: &TestServer, path: &str) -> Value {
    let (status, body) = server.get(path).await;
    assert_eq!(status, 200, "{path}: {body}");
    body
}

#[tokio::test]
async fn summary_and_statistics_count_exactly_what_was_sent() {
    let server = TestServer::start().await;
    let now = Utc::now().timestamp_millis();
    // Ten events in the last hour: 3 denied, 2 failed (one at level error), 1 critical.
    let mut batch = Vec::new();
    for i in 0..4 {
        batch.push(at(now - i * 1000, "alice", "file.read", "success", "info"));
    }
    for i in 0..3 {
        batch.push(at(
            now - i * 1000,
            "bob",
            "file.delete",
            "denied",
            "warning",
        ));
    }
    batch.push(at(now, "carol", "config.update", "failure", "error"));
    batch.push(at(now, "carol", "config.update", "failure", "warning"));
    batch.push(at(now, "alice", "user.create", "success", "critical"));
    // One event 3 days ago: outside 24h, inside 7d.
    batch.push(at(now - 72 * HOUR, "dave", "file.read", "success", "info"));
    let (status, body) = server.post(&json!(batch)).await;
    assert_eq!(status, 201, "{body}");

    let s = get_ok(&server, "/api/dashboard/summary?range=24h").await;
    assert_eq!(s["totalActions"], 10);
    assert_eq!(s["denialRate"], 30.0);
    // Errors: two failures and the critical event.
    assert_eq!(s["errorRate"], 30.0);
    assert_eq!(s["successRate"], 50.0);
    // 100 - (0.7 * 30 + 0.3 * 30) = 70.
    assert_eq!(s["healthScore"], 70);
    // The day before had no events and scores 100: the health declined.
    assert_eq!(s["trend"], "declining");
    assert_eq!(s["criticalIssues"], 1);
    assert_eq!(s["spikeDetection"]["hasSpike"], false);

    let week = get_ok(&server, "/api/dashboard/summary?range=7d").await;
    assert_eq!(week["totalActions"], 11);

    let st = get_ok(&server, "/api/v1/events/statistics?range=24h").await;
    assert_eq!(st["totalEvents"], 10);
    assert_eq!(st["activeUsers"], 3);
    assert_eq!(st["criticalEvents"], 1);
    assert_eq!(st["deniedEvents"], 3);
    assert_eq!(st["failedEvents"], 2);
    assert_eq!(st["topUsers"][0]["user"], "alice");
    assert_eq!(st["topUsers"][0]["count"], 5);
    assert_eq!(st["topUsers"][1]["user"], "bob");
    assert_eq!(st["topUsers"][1]["denied"], 3);
    assert_eq!(
        st["topDeniedActions"],
        json!([{"value": "file.delete", "count": 3}])
    );
    assert_eq!(
        st["byOutcome"],
        json!([{"value": "success", "count": 5}, {"value": "denied", "count": 3},
               {"value": "failure", "count": 2}])
    );
    let critical = st["recentCritical"].as_array().unwrap();
    assert_eq!(critical.len(), 1);
    assert_eq!(critical[0]["action"], "user.create");
    let levels: i64 = st["byLevel"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["count"].as_i64().unwrap())
        .sum();
    assert_eq!(levels, 10);

    // The seed's parameter names work too, and a date range covers whole days.
    let today = Utc::now().format("%Y-%m-%d").to_string();
    let st = get_ok(
        &server,
        &format!("/api/v1/events/statistics?start_date={today}&end_date={today}"),
    )
    .await;
    assert!(st["totalEvents"].as_u64().unwrap() >= 1);
}

#[tokio::test]
async fn insights_have_the_seed_shape_and_a_heatmap_in_the_viewers_zone() {
    let server = TestServer::start().await;
    let now = Utc::now().timestamp_millis();
    // India is UTC+05:30: its hours split UTC hours in half, which whole-hour rollups could
    // not place.
    let zone: chrono_tz::Tz = "Asia/Kolkata".parse().unwrap();
    let times = [now - 2 * HOUR, now - 2 * HOUR + 60_000, now - 30 * HOUR];
    let batch: Vec<Value> = times
        .iter()
        .map(|t| at(*t, "alice", "file.read", "success", "info"))
        .collect();
    server.post(&json!(batch)).await;

    let i = get_ok(&server, "/api/dashboard/insights?tz=Asia/Kolkata").await;
    let rows = i["trendComparison"].as_array().unwrap();
    assert_eq!(rows[0]["period"], "7d");
    assert_eq!(rows[0]["totalActions"], 3);
    assert_eq!(rows[0]["successRate"], 100.0);
    assert_eq!(rows[0]["denialRate"], 0.0);
    assert_eq!(rows[0]["avgActionsPerDay"], 0.4);
    assert_eq!(rows[0]["trend"], "up");
    assert_eq!(rows[1]["period"], "30d");
    assert_eq!(rows[1]["avgActionsPerDay"], 0.1);
    assert_eq!(i["anomalyDetection"], json!([]));

    let heat = &i["heatmap"];
    assert_eq!(heat["timeZone"], "Asia/Kolkata");
    let days = heat["days"].as_array().unwrap();
    assert_eq!(days.len(), 7);
    // Every event is in the cell of its local date and hour.
    let mut want = std::collections::BTreeMap::<(String, u32), u64>::new();
    for t in times {
        let local = Utc.timestamp_millis_opt(t).unwrap().with_timezone(&zone);
        *want
            .entry((local.format("%Y-%m-%d").to_string(), local.hour()))
            .or_default() += 1;
    }
    let mut got = std::collections::BTreeMap::new();
    for d in days {
        assert_eq!(d["hours"].as_array().unwrap().len(), 24);
        for (h, n) in d["hours"].as_array().unwrap().iter().enumerate() {
            if n.as_u64().unwrap() > 0 {
                got.insert(
                    (d["date"].as_str().unwrap().to_string(), h as u32),
                    n.as_u64().unwrap(),
                );
            }
        }
    }
    assert_eq!(got, want);
    let today = Utc::now()
        .with_timezone(&zone)
        .format("%Y-%m-%d")
        .to_string();
    assert_eq!(days[6]["date"], today);
}

/// A fixed-offset zone in which the current UTC hour is 12:00 to 12:59 local time.
fn midday_zone() -> String {
    let offset = 12 - Utc::now().hour() as i32;
    // `Etc/GMT-3` is three hours ahead of UTC: the sign is the reverse of the offset's.
    match offset {
        0 => "UTC".into(),
        o if o > 0 => format!("Etc/GMT-{o}"),
        o => format!("Etc/GMT+{}", -o),
    }
}

#[tokio::test]
async fn a_burst_after_a_quiet_day_is_a_spike_and_failed_logins_are_a_burst() {
    // Watched from a zone where it is midday now, so the burst is not also night activity
    // (the time anomaly), whenever the test runs.
    let server = TestServer::start_with(|c| c.time_zone = midday_zone()).await;
    let now = Utc::now().timestamp_millis();
    // 24 events spread over the baseline day, one an hour: a rate of 1/hour.
    let quiet: Vec<Value> = (2..26)
        .map(|h| at(now - h * HOUR, "alice", "file.read", "success", "info"))
        .collect();
    server.post(&json!(quiet)).await;
    let s = get_ok(&server, "/api/dashboard/summary").await;
    assert_eq!(s["spikeDetection"]["hasSpike"], false);
    // 40 events now from several users, 6 of them failed logins by eve from one address.
    let mut burst: Vec<Value> = (0..34)
        .map(|i| {
            at(
                now,
                ["alice", "bob", "carol"][i % 3],
                "file.read",
                "success",
                "info",
            )
        })
        .collect();
    for _ in 0..6 {
        burst.push(
            json!({"timestamp": now, "userId": "eve", "action": "auth.login",
            "outcome": "failure", "category": "authentication",
            "request": {"ip": "203.0.113.9"}}),
        );
    }
    server.post(&json!(burst)).await;

    let s = get_ok(&server, "/api/dashboard/summary").await;
    assert_eq!(s["spikeDetection"]["hasSpike"], true);
    assert_eq!(s["spikeDetection"]["lastHour"], 40);
    assert_eq!(s["spikeDetection"]["baselinePerHour"], 1.0);
    // Bursts are seen through the live stream; the answer waits for it to catch up.
    let insights = get_ok(&server, "/api/dashboard/insights").await;
    let found: Vec<(String, Option<String>)> = insights["anomalyDetection"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            assert_eq!(a["detected"], true);
            (
                a["type"].as_str().unwrap().to_string(),
                a["subject"].as_str().map(str::to_string),
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            ("unusual_spike".to_string(), None),
            (
                "failed_login_burst".to_string(),
                Some("address 203.0.113.9".into())
            ),
            ("failed_login_burst".to_string(), Some("user eve".into())),
        ]
    );
    let spike = &insights["anomalyDetection"][0];
    assert_eq!(spike["affectedMetric"], "activity_rate");
    assert_eq!(spike["severity"], "warning");
    assert_eq!(
        spike["description"],
        "Activity spiked to 40 actions/hour (was 1)"
    );
}

#[tokio::test]
async fn bad_parameters_are_400s_naming_the_field() {
    let server = TestServer::start().await;
    for (path, field) in [
        ("/api/dashboard/summary?range=1y", "range"),
        ("/api/dashboard/insights?tz=Mars/Olympus", "tz"),
        ("/api/dashboard/insights?range=24h", "range"),
        ("/api/v1/events/statistics?from=never", "from"),
    ] {
        let (status, body) = server.get(path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["field"], field, "{path}: {body}");
    }
}

/// `n` events by `user` at `ms` for the store directly.
fn by(user: &str, n: usize, ms: i64) -> Vec<AuditEvent> {
    let mut rng = Rng::new(n as u64);
    (0..n)
        .map(|i| {
            let mut e = random::event(&mut rng, i);
            e.user.id = user.to_string();
            e.timestamp = Utc.timestamp_millis_opt(ms).unwrap();
            e
        })
        .collect()
}

#[tokio::test]
async fn the_user_anomaly_starts_from_the_rollups_and_follows_live_events() {
    use trailwatch::analytics::{AnomalyConfig, AnomalyKind};
    use trailwatch::insights::Analytics;
    let dir = tempfile::tempdir().unwrap();
    let now = Utc::now().timestamp_millis();
    let store = Store::open(dir.path(), options()).unwrap();
    // Stored before the analytics start: they must be read from the rollups.
    store
        .append(by("mallory", 60, now - 5 * HOUR))
        .await
        .unwrap();
    store.append(by("alice", 20, now - 3 * HOUR)).await.unwrap();
    // Outside the 24-hour window: must not count.
    store
        .append(by("alice", 500, now - 30 * HOUR))
        .await
        .unwrap();
    let analytics = Analytics::new(store.clone(), AnomalyConfig::default(), chrono_tz::Tz::UTC);
    analytics.watch();
    let kinds = |found: &[trailwatch::analytics::Anomaly]| {
        found
            .iter()
            .filter(|a| a.kind == AnomalyKind::UserAnomaly)
            .map(|a| (a.subject.clone().unwrap(), a.value))
            .collect::<Vec<_>>()
    };
    // 60 of 80 is 75%.
    let found = analytics.anomalies(now).await.unwrap();
    assert_eq!(kinds(&found), [("mallory".to_string(), 75.0)]);
    // Followed live from there: 40 more by bob make mallory 50%, below the 56% that clears it.
    store.append(by("bob", 40, now - HOUR)).await.unwrap();
    let found = analytics.anomalies(now).await.unwrap();
    assert!(kinds(&found).is_empty(), "{found:?}");
}

#[tokio::test]
async fn failed_login_bursts_survive_a_restart() {
    use trailwatch::analytics::{AnomalyConfig, AnomalyKind};
    use trailwatch::insights::Analytics;
    let dir = tempfile::tempdir().unwrap();
    let now = Utc::now().timestamp_millis();
    let store = Store::open(dir.path(), options()).unwrap();
    let failed_logins = |user: &str, n: usize, ms: i64| {
        let mut events = by(user, n, ms);
        for e in &mut events {
            e.category = trailwatch::model::Category::Authentication;
            e.outcome = trailwatch::model::Outcome::Failure;
            e.request = Some(trailwatch::model::RequestInfo {
                ip: Some("192.0.2.7".into()),
                ..Default::default()
            });
        }
        events
    };
    // Stored before the analytics start: five failures by eve two minutes ago are a burst;
    // five by frank ten minutes ago are outside the five-minute window.
    store
        .append(failed_logins("eve", 5, now - 2 * 60_000))
        .await
        .unwrap();
    store
        .append(failed_logins("frank", 5, now - 10 * 60_000))
        .await
        .unwrap();
    let analytics = Analytics::new(store.clone(), AnomalyConfig::default(), chrono_tz::Tz::UTC);
    analytics.watch();
    let bursts = |found: &[trailwatch::analytics::Anomaly]| {
        found
            .iter()
            .filter(|a| a.kind == AnomalyKind::FailedLoginBurst)
            .map(|a| (a.subject.clone().unwrap(), a.value))
            .collect::<BTreeMap<_, _>>()
    };
    let found = analytics.anomalies(now).await.unwrap();
    let want = |n: f64| {
        BTreeMap::from([
            ("address 192.0.2.7".to_string(), n),
            ("user eve".to_string(), n),
        ])
    };
    assert_eq!(bursts(&found), want(5.0), "{found:?}");
    // Followed live from there: one more failure by eve joins the same burst.
    store
        .append(failed_logins("eve", 1, now - 60_000))
        .await
        .unwrap();
    let found = analytics.anomalies(now).await.unwrap();
    assert_eq!(bursts(&found), want(6.0));
}

#[tokio::test]
async fn guessing_the_dashboard_token_raises_a_failed_login_burst_and_locks_the_address_out() {
    let server = TestServer::start().await;
    for _ in 0..5 {
        let r = server
            .http
            .post(server.url("/api/fn/login"))
            .form(&[("token", "guess")])
            .send()
            .await
            .unwrap();
        assert!(r.headers().get("set-cookie").is_none());
    }
    let insights = get_ok(&server, "/api/dashboard/insights").await;
    let bursts: Vec<(&str, f64)> = insights["anomalyDetection"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["type"] == "failed_login_burst")
        .map(|a| (a["subject"].as_str().unwrap(), a["value"].as_f64().unwrap()))
        .collect();
    // The refused sign-ins are Trailwatch's own events, counted like any application's.
    assert_eq!(
        bursts,
        [("address 127.0.0.1", 5.0), ("user admin", 5.0)],
        "{insights}"
    );

    // The fifth refusal locked the address out: even the right token is refused now,
    // without being looked at, and the lockout is in the chain once.
    let r = server
        .http
        .post(server.url("/api/fn/login"))
        .form(&[("token", common::TOKEN)])
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("set-cookie").is_none());
    let body = r.text().await.unwrap();
    assert!(body.contains("\"locked_out\""), "{body}");
    let (_, locks) = server.get("/api/v1/events?action=dashboard.lockout").await;
    // The address (for token sign-ins) and the guessed token are both locked.
    assert_eq!(locks["total"], 2, "{locks}");
    assert_eq!(locks["items"][0]["level"], "critical");
    let text = locks.to_string();
    assert!(
        text.contains("for this address") && text.contains("for this token"),
        "{locks}"
    );
}
