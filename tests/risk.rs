//! Risk scoring at ingest through real components: the writer over a real SQLite file, the
//! HTTP API and the live socket. Scores and reasons are sealed in the chain, survive a
//! restart, and the behaviour state picks up where it stopped.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.
#![cfg(feature = "ssr")]

mod common;

use chrono::{DateTime, TimeZone, Utc};
use common::TestServer;
use rusqlite::Connection;
use serde_json::{json, Value};
use std::path::Path;
use trailwatch::model::{
    Actor, AuditEvent, Category, Level, Location, Outcome, RequestInfo, Seq, Source, StoredEvent,
};
use trailwatch::store::chain::Fault;
use trailwatch::store::{verify_path, Store, StoreOptions, DB_FILE};

fn options() -> StoreOptions {
    StoreOptions {
        durable: false,
        ..StoreOptions::default()
    }
}

fn event(ms: i64, user: &str, ip: &str, outcome: Outcome) -> AuditEvent {
    AuditEvent {
        request: Some(RequestInfo {
            ip: Some(ip.into()),
            ..RequestInfo::default()
        }),
        ..AuditEvent::new(
            DateTime::from_timestamp_millis(ms).unwrap(),
            Level::Info,
            Category::Authentication,
            "login",
            outcome,
            Actor {
                id: user.into(),
                username: None,
            },
            Source::http(),
        )
    }
}

/// The rules that fired, with their points.
fn fired(e: &StoredEvent) -> Vec<(String, u8)> {
    e.event
        .risk_reasons
        .as_ref()
        .expect("an assigned score has reasons")
        .iter()
        .map(|r| (r.rule.clone(), r.points))
        .collect()
}

fn rule(name: &str, points: u8) -> (String, u8) {
    (name.to_string(), points)
}

async fn stored(store: &Store, seq: u64) -> StoredEvent {
    let mut found = store.read_from(Seq(seq - 1), 1).await.unwrap();
    assert_eq!(found.len(), 1, "seq {seq} not found");
    found.remove(0)
}

#[tokio::test]
async fn a_password_spray_climbs_across_a_restart_and_every_score_is_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = Utc
        .with_ymd_and_hms(2026, 11, 23, 10, 0, 0)
        .unwrap()
        .timestamp_millis();
    let store = Store::open(dir.path(), options()).unwrap();
    // Two failed logins from one address for two users, and a success.
    store
        .append(vec![
            event(t0, "alice", "203.0.113.9", Outcome::Failure),
            event(t0 + 1_000, "bob", "203.0.113.9", Outcome::Failure),
            event(t0 + 2_000, "carol", "198.51.100.1", Outcome::Success),
        ])
        .await
        .unwrap();
    assert_eq!(
        fired(&stored(&store, 1).await),
        [rule("outcome", 20), rule("category", 10)]
    );
    assert_eq!(stored(&store, 1).await.event.risk_score, Some(30));
    assert_eq!(fired(&stored(&store, 3).await), [rule("category", 10)]);
    drop(store);

    // After a restart the writer rebuilds the recent failures from the events: the third
    // failure from the address, and the fourth, score higher.
    let store = Store::open(dir.path(), options()).unwrap();
    store
        .append(vec![
            event(t0 + 3_000, "carol", "203.0.113.9", Outcome::Failure),
            event(t0 + 4_000, "dave", "203.0.113.9", Outcome::Denied),
        ])
        .await
        .unwrap();
    let third = stored(&store, 4).await;
    assert_eq!(
        fired(&third),
        [
            rule("outcome", 20),
            rule("category", 10),
            rule("repeated_ip", 10)
        ]
    );
    assert_eq!(third.event.risk_score, Some(40));
    let fourth = stored(&store, 5).await;
    assert_eq!(fourth.event.risk_score, Some(30 + 10 + 20));
    // The reasons name no person and no address: they stay in the chain after an erasure.
    let text = serde_json::to_string(&fourth.event.risk_reasons).unwrap();
    assert!(
        !text.contains("dave") && !text.contains("203.0.113"),
        "{text}"
    );

    // A sender's score is kept as sent, with no reasons.
    let mut given = event(t0 + 5_000, "erin", "203.0.113.9", Outcome::Failure);
    given.risk_score = Some(3);
    store.append(vec![given]).await.unwrap();
    let given = stored(&store, 6).await;
    assert_eq!(
        (given.event.risk_score, given.event.risk_reasons),
        (Some(3), None)
    );
    drop(store);

    // The profiles are written back every few seconds, not at every commit; whatever the
    // stopped writer flushed, opening the store brings the table up to the head.
    let store = Store::open(dir.path(), options()).unwrap();
    let db = dir.path().join(DB_FILE);
    assert!(verify_path(&db, &[], None, &mut |_| {}).unwrap().ok);
    assert_eq!(
        common::rollups::profiles_stored(&db),
        common::rollups::profiles_recount(&db)
    );
    drop(store);

    // Lowering a score, editing a reason or removing the reasons is each caught by verify.
    for (sql, what) in [
        ("UPDATE events SET risk = 0 WHERE seq = 5", "score"),
        (
            "UPDATE events SET risk_reasons = replace(risk_reasons, '20', '2') WHERE seq = 5",
            "reason",
        ),
        (
            "UPDATE events SET risk = NULL, risk_reasons = NULL WHERE seq = 5",
            "reasons removed",
        ),
    ] {
        let copy = tempfile::tempdir().unwrap();
        for suffix in ["", "-wal"] {
            let from = dir.path().join(format!("{DB_FILE}{suffix}"));
            if from.exists() {
                std::fs::copy(&from, copy.path().join(format!("{DB_FILE}{suffix}"))).unwrap();
            }
        }
        let conn = Connection::open(copy.path().join(DB_FILE)).unwrap();
        assert_eq!(conn.execute(sql, []).unwrap(), 1);
        drop(conn);
        let report = verify_path(&copy.path().join(DB_FILE), &[], None, &mut |_| {}).unwrap();
        let broken = report.first_break.expect(what);
        assert_eq!((broken.seq.0, broken.fault), (5, Fault::Edited), "{what}");
    }
}

#[tokio::test]
async fn unusual_hours_and_new_countries_are_judged_against_the_stored_profile() {
    let dir = tempfile::tempdir().unwrap();
    let day = |d: u32, h: u32| {
        Utc.with_ymd_and_hms(2026, 11, d, h, 15, 0)
            .unwrap()
            .timestamp_millis()
    };
    let located = |ms: i64, country: &str| {
        let mut e = event(ms, "alice", "10.0.0.1", Outcome::Success);
        e.category = Category::DataManagement;
        e.location = Some(Location {
            country: Some(country.into()),
            city: None,
        });
        e
    };
    let store = Store::open(dir.path(), options()).unwrap();
    // Fifty working days' worth of events between 09:00 and 17:00 UTC, all from Germany.
    let history: Vec<AuditEvent> = (0..50)
        .map(|i| located(day(1 + i % 20, 9 + i % 9), "DE"))
        .collect();
    store.append(history).await.unwrap();
    drop(store);

    let store = Store::open(dir.path(), options()).unwrap();
    store
        .append(vec![
            located(day(22, 12), "DE"),
            located(day(22, 3), "DE"),
            located(day(22, 13), "BR"),
        ])
        .await
        .unwrap();
    assert!(fired(&stored(&store, 51).await).is_empty());
    assert_eq!(stored(&store, 51).await.event.risk_score, Some(0));
    assert_eq!(fired(&stored(&store, 52).await), [rule("unusual_hour", 20)]);
    assert_eq!(fired(&stored(&store, 53).await), [rule("new_country", 15)]);
}

#[tokio::test]
async fn scores_reach_the_api_and_the_socket_and_senders_cannot_forge_reasons() {
    let s = TestServer::start().await;
    let mut socket = s.socket("").await;
    socket.subscribe(json!({"type": "subscribe"})).await;
    let (status, _) = s
        .post(
            &json!({"action": "secrets.read", "category": "security", "level": "critical",
                       "outcome": "denied", "user": {"id": "mallory"}}),
        )
        .await;
    assert_eq!(status, 201);
    let live = loop {
        let m = socket.next_json().await;
        if m["type"] == "event" {
            break m["event"].clone();
        }
    };
    assert_eq!(live["riskScore"], 100);
    let rules: Vec<&str> = live["riskReasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["rule"].as_str().unwrap())
        .collect();
    assert_eq!(rules, ["level", "outcome", "category"]);

    let (_, page) = s.get("/api/v1/events?limit=1").await;
    assert_eq!(page["items"][0]["riskReasons"], live["riskReasons"]);
    let (_, high) = s.get("/api/v1/events?min_risk=71").await;
    assert_eq!(high["total"], 1, "assigned scores are filterable: {high}");

    let (status, body) = s
        .post(
            &json!({"action": "x", "riskReasons": [{"rule": "level", "points": 0, "detail": ""}]}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let fields: Vec<&Value> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["field"])
        .collect();
    assert_eq!(fields, [&json!("riskReasons")]);
    let (_, report) = s.get("/api/v1/verify").await;
    assert_eq!(
        (report["ok"].as_bool(), report["checked"].as_u64()),
        (Some(true), Some(1))
    );
}

#[tokio::test]
async fn a_schema_5_database_upgrades_and_its_old_events_still_verify() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    let t0 = 1_795_000_000_000;
    let old: Vec<AuditEvent> = (0..10)
        .map(|i| {
            let mut e = event(t0 + i, "alice", "10.0.0.1", Outcome::Success);
            e.risk_score = Some(i as u8);
            e
        })
        .collect();
    store.append(old).await.unwrap();
    drop(store);
    let db = dir.path().join(DB_FILE);
    drop_risk_columns(&db);

    let store = Store::open(dir.path(), options()).unwrap();
    store
        .append(vec![event(t0 + 20, "alice", "10.0.0.1", Outcome::Denied)])
        .await
        .unwrap();
    assert_eq!(stored(&store, 11).await.event.risk_score, Some(30 + 10));
    assert_eq!(stored(&store, 3).await.event.risk_reasons, None);
    drop(store);
    let version: String = Connection::open(&db)
        .unwrap()
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(version, trailwatch::store::SCHEMA_VERSION.to_string());
    let report = verify_path(&db, &[], None, &mut |_| {}).unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.checked, 11);
}

/// Turns the database back into schema 5: no reasons column, no profiles.
fn drop_risk_columns(db: &Path) {
    let conn = Connection::open(db).unwrap();
    conn.execute_batch(
        "ALTER TABLE events DROP COLUMN risk_reasons;
         DROP TABLE risk_profile;
         UPDATE meta SET value = '5' WHERE key = 'schema_version';",
    )
    .unwrap();
}

/// The `counters` table, name by name.
fn counter_rows(db: &Path) -> Vec<(String, i64)> {
    let conn = Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare("SELECT name, value FROM counters ORDER BY name")
        .unwrap();
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<Vec<(String, i64)>, _>>()
        .unwrap();
    rows
}

#[tokio::test]
async fn a_large_commit_sealed_beside_its_inserts_scores_and_counts_as_small_ones_do() {
    // Failures in bursts from a few addresses, users across the clock and the map, and system
    // events: every rule has something to judge.
    let start = Utc
        .with_ymd_and_hms(2026, 11, 2, 0, 0, 0)
        .unwrap()
        .timestamp_millis();
    let events: Vec<AuditEvent> = (0..1_500_i64)
        .map(|i| {
            let outcome = match i % 9 {
                0 | 1 => Outcome::Failure,
                2 => Outcome::Denied,
                _ => Outcome::Success,
            };
            let user = if i % 50 == 0 {
                "system".to_string()
            } else {
                format!("u{}", i % 37)
            };
            let mut e = event(
                start + i * 97_000,
                &user,
                &format!("10.0.{}.{}", i % 3, i % 5),
                outcome,
            );
            e.location = Some(Location {
                country: Some(["DE", "FR", "BR", "JP"][(i % 13 % 4) as usize].into()),
                city: None,
            });
            e
        })
        .collect();
    let (one, many) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let whole = Store::open(one.path(), options()).unwrap();
    whole.append(events.clone()).await.unwrap();
    let pieces = Store::open(many.path(), options()).unwrap();
    for chunk in events.chunks(100) {
        pieces.append(chunk.to_vec()).await.unwrap();
    }
    // One commit large enough for the second thread, fifteen sealed inline.
    assert_eq!(whole.stats().commits, 1);
    assert_eq!(pieces.stats().commits, 15);

    let a = whole.read_from(Seq(0), 2_000).await.unwrap();
    let b = pieces.read_from(Seq(0), 2_000).await.unwrap();
    assert_eq!(a.len(), 1_500);
    assert_eq!(b.len(), 1_500);
    let mut scored = 0;
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.seq, y.seq);
        assert_eq!(x.event.user.id, y.event.user.id, "seq {}", x.seq.0);
        assert_eq!(x.event.risk_score, y.event.risk_score, "seq {}", x.seq.0);
        assert_eq!(
            x.event.risk_reasons, y.event.risk_reasons,
            "seq {}",
            x.seq.0
        );
        scored += usize::from(x.event.risk_score.unwrap_or(0) > 0);
    }
    assert!(scored > 100, "the rules fired on only {scored} events");
    let report = whole.verify().await.unwrap();
    assert!(report.ok && report.checked == 1_500, "{report:?}");
    assert_eq!(whole.counters().await.unwrap().total, 1_500);
    drop(whole);
    drop(pieces);
    // Profiles are written back on stopping; both stores learnt the same.
    let (db_one, db_many) = (one.path().join(DB_FILE), many.path().join(DB_FILE));
    assert_eq!(counter_rows(&db_one), counter_rows(&db_many));
    let profiles = common::rollups::profiles_stored(&db_one);
    assert_eq!(profiles, common::rollups::profiles_recount(&db_one));
    assert_eq!(profiles, common::rollups::profiles_stored(&db_many));
    let rollups = common::rollups::stored(&db_one);
    common::rollups::assert_same(
        "rollups",
        &rollups,
        &common::rollups::recount_stored(&db_one),
    );
    common::rollups::assert_same("rollups", &rollups, &common::rollups::stored(&db_many));
    assert!(verify_path(&db_one, &[], None, &mut |_| {}).unwrap().ok);
}
