//! Retention, GDPR export and erasure, and self-audit, through a real store on a real SQLite
//! file and a real server on 127.0.0.1:0.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.
#![cfg(feature = "ssr")]

mod common;

use chrono::{DateTime, Duration, Utc};
use common::rollups::{recount_stored, stored};
use common::{TestServer, TOKEN};
use rusqlite::Connection;
use serde_json::{json, Value};
use std::path::Path;
use trailwatch::model::{Actor, AuditEvent, Category, Level, Outcome, Seq, Source};
use trailwatch::store::chain::Fault;
use trailwatch::store::{
    checkpoint, verify_path, RetentionPolicy, Store, StoreOptions, VerifyReport, DB_FILE,
};

fn event(at: DateTime<Utc>, level: Level, category: Category, user: &str) -> AuditEvent {
    AuditEvent {
        timestamp: at,
        level,
        category,
        action: format!("{}.act", category.as_str()),
        outcome: Outcome::Success,
        user: Actor {
            id: user.into(),
            username: None,
        },
        entity: None,
        request: None,
        location: None,
        description: Some("d".into()),
        metadata: None,
        changes: None,
        risk_score: Some(1),
        risk_reasons: None,
        correlation_id: None,
        session_id: None,
        system: None,
        source: Source::http(),
        submitted_by: None,
    }
}

fn verify(dir: &Path) -> VerifyReport {
    let key = checkpoint::read_public_key(&dir.join(checkpoint::PUBLIC_KEY_FILE)).unwrap();
    verify_path(&dir.join(DB_FILE), &[], Some(&key), &mut |_| {}).unwrap()
}

/// Seqs still stored.
fn seqs(dir: &Path) -> Vec<u64> {
    let conn = Connection::open(dir.join(DB_FILE)).unwrap();
    let mut stmt = conn.prepare("SELECT seq FROM events ORDER BY seq").unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// 40 events, interleaved: old routine ones (expired), old critical and old security ones
/// (kept seven years), and recent ones. Returns the seqs retention must remove.
async fn mixed_history(store: &Store) -> Vec<u64> {
    let now = Utc::now();
    let old = now - Duration::days(400);
    let mut events = Vec::new();
    let mut expired = Vec::new();
    for i in 0..40u64 {
        let at = old + Duration::minutes(i as i64 * 7);
        let e = match i % 8 {
            3 => event(at, Level::Critical, Category::Api, "alice"),
            6 => event(at, Level::Info, Category::Security, "bob"),
            7 => event(now - Duration::days(2), Level::Info, Category::Api, "carol"),
            _ => {
                expired.push(i + 1);
                event(at, Level::Info, Category::Api, "alice")
            }
        };
        events.push(e);
    }
    // The newest event is expired too: the head is kept whatever its age.
    events.push(event(old, Level::Info, Category::Api, "dave"));
    store.append(events).await.unwrap();
    expired
}

#[tokio::test]
async fn retention_removes_what_expired_and_the_chain_still_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let expired = mixed_history(&store).await;
    store
        .checkpoint_head(std::time::Duration::from_secs(5))
        .await
        .unwrap();
    let before = store.counters().await.unwrap().total;

    let pruned = store
        .prune(RetentionPolicy::default(), Utc::now())
        .await
        .unwrap();
    assert_eq!(pruned.events, expired.len() as u64);
    assert_eq!(pruned.seqs, expired);
    // Runs: 1-3, 5-6, 9-11, 13-14, ... (critical at 4, 12, ...; security at 7, 15, ...;
    // recent at 8, 16, ...).
    assert_eq!(pruned.ranges, 10);
    let kept: Vec<u64> = (1..=41).filter(|s| !expired.contains(s)).collect();
    assert_eq!(
        seqs(dir.path()),
        kept,
        "the head (41) is kept though expired"
    );
    assert_eq!(
        store.counters().await.unwrap().total,
        before - expired.len() as u64
    );
    assert_eq!(
        stored(&dir.path().join(DB_FILE)),
        recount_stored(&dir.path().join(DB_FILE))
    );

    let report = verify(dir.path());
    assert!(report.ok, "{report:?}");
    assert_eq!(report.pruned, expired.len() as u64);
    assert_eq!(report.checked, kept.len() as u64);
    // The checkpoint at the head still matches; the chain goes on from there.
    store
        .append(vec![event(Utc::now(), Level::Info, Category::Api, "erin")])
        .await
        .unwrap();
    let live = store.verify().await.unwrap();
    assert!(live.ok, "{live:?}");
    assert_eq!(live.head_seq, Seq(42));
    // The old head is no longer the head: the next run removes it, and then nothing.
    let again = store
        .prune(RetentionPolicy::default(), Utc::now())
        .await
        .unwrap();
    assert_eq!(again.seqs, [41]);
    let none = store
        .prune(RetentionPolicy::default(), Utc::now())
        .await
        .unwrap();
    assert_eq!(none.events, 0);
    let live = store.verify().await.unwrap();
    assert!(live.ok, "{live:?}");
    assert_eq!(live.pruned, expired.len() as u64 + 1);
    // Freed pages went back: nothing is left on the free list.
    let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
    let free: i64 = conn
        .query_row("PRAGMA freelist_count", [], |r| r.get(0))
        .unwrap();
    assert_eq!(free, 0);
}

#[tokio::test]
async fn gaps_not_covered_by_a_signed_run_are_deletions() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    mixed_history(&store).await;
    store
        .prune(RetentionPolicy::default(), Utc::now())
        .await
        .unwrap();
    drop(store);
    let db = dir.path().join(DB_FILE);
    let tampered = |sql: &str| {
        let copy = tempfile::tempdir().unwrap();
        for f in [DB_FILE, checkpoint::PUBLIC_KEY_FILE] {
            std::fs::copy(dir.path().join(f), copy.path().join(f)).unwrap();
        }
        // Committed pages may still be in the WAL.
        let wal = format!("{DB_FILE}-wal");
        if dir.path().join(&wal).exists() {
            std::fs::copy(dir.path().join(&wal), copy.path().join(&wal)).unwrap();
        }
        Connection::open(copy.path().join(DB_FILE))
            .unwrap()
            .execute_batch(sql)
            .unwrap();
        verify(copy.path())
    };
    assert!(verify(dir.path()).ok);

    // An intruder deletes a kept event and claims it as pruned by widening a range.
    let r = tampered(
        "UPDATE pruned_ranges SET last_seq = 4,
             last_hash = (SELECT hash FROM events WHERE seq = 4) WHERE first_seq = 1;
         DELETE FROM events WHERE seq = 4;",
    );
    let b = r.first_break.unwrap();
    assert_eq!((b.seq, b.fault), (Seq(1), Fault::Deleted), "{}", b.detail);
    assert!(b.detail.contains("does not verify"), "{}", b.detail);

    // Deletes the range that covers a gap: its record no longer matches what was signed,
    // so none of the record's gaps are vouched for, from the first on.
    let r = tampered("DELETE FROM pruned_ranges WHERE first_seq = 5;");
    let b = r.first_break.unwrap();
    assert_eq!((b.seq, b.fault), (Seq(1), Fault::Deleted));
    assert!(
        b.detail.contains("differ from what was signed"),
        "{}",
        b.detail
    );

    // Forges a record: the signature does not hold.
    let r = tampered("UPDATE prunes SET signed_at = '2020-01-01T00:00:00.000Z';");
    assert_eq!(r.first_break.unwrap().fault, Fault::Deleted);

    // Deletes a kept event next to a gap: the range no longer fits.
    let r = tampered("DELETE FROM events WHERE seq = 7;");
    let b = r.first_break.unwrap();
    assert_eq!(b.fault, Fault::Deleted, "{}", b.detail);
    assert_eq!(b.seq, Seq(7));

    // Without the public key nothing removed can be vouched for.
    let r = verify_path(&db, &[], None, &mut |_| {}).unwrap();
    assert!(r.ok, "the key beside the database is used");
}

/// Values no byte of the data directory may hold after erasure: the fixed personal fields,
/// then two metadata fields the server is told are personal.
const SECRETS: [&str; 8] = [
    "subject-7f3a9c",
    "Alice Quartermaine",
    "203.0.113.77",
    "AliceBrowser/9.9",
    "Zembla",
    "Quxville",
    "alice.q@zembla.test",
    "+31-6-5550-1234",
];

fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    let mut hits = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                hits.push(path.file_name().unwrap().to_string_lossy().into_owned());
            }
        }
    }
    hits
}

fn alice(i: usize, outcome: &str) -> Value {
    json!({
        "action": format!("document.open.{i}"),
        "outcome": outcome,
        "user": {"id": SECRETS[0], "username": SECRETS[1]},
        "request": {"ip": SECRETS[2], "userAgent": SECRETS[3], "method": "GET", "path": "/docs"},
        "location": {"country": SECRETS[4], "city": SECRETS[5]},
        "description": format!("opened document {i}"),
        "metadata": {"email": SECRETS[6], "contact": {"phone": SECRETS[7]}, "plan": "gold"},
    })
}

/// A socket that receives alerts only.
async fn alerts_socket(server: &TestServer) -> common::Socket {
    let mut socket = server.socket("").await;
    socket
        .subscribe(json!({"type": "subscribe", "sinceSeq": 0, "alertsOnly": true}))
        .await;
    socket
}

#[tokio::test]
async fn erasure_keeps_the_chain_and_leaves_no_byte_of_the_subject_on_disk() {
    let server = TestServer::start_with(|c| {
        c.personal_metadata = vec!["email".into(), "contact".into()];
    })
    .await;
    let mut batch: Vec<Value> = (0..30).map(|i| alice(i, "success")).collect();
    // A denial raises an alert whose message names the user.
    batch.push(alice(99, "denied"));
    batch.extend((0..10).map(|i| {
        json!({"action": "report.view", "user": {"id": "bob", "username": "Bob"},
               "request": {"ip": "198.51.100.1"}, "description": format!("bob {i}")})
    }));
    let mut socket = alerts_socket(&server).await;
    let (status, body) = server.post(&Value::Array(batch)).await;
    assert_eq!(status, 201, "{body}");
    let data = server.dir.path().join("data");
    let alert = socket.next_alert().await;
    assert!(alert.to_string().contains(SECRETS[1]), "{alert}");

    let (status, export) = server
        .get(&format!("/api/v1/subjects/{}/export", SECRETS[0]))
        .await;
    assert_eq!(status, 200);
    assert_eq!(export["count"], 31);
    assert_eq!(export["events"][0]["user"]["username"], SECRETS[1]);
    // Declared personal metadata reads back as it was sent, beside the rest.
    assert_eq!(
        export["events"][0]["metadata"],
        json!({"email": SECRETS[6], "contact": {"phone": SECRETS[7]}, "plan": "gold"})
    );

    // Before: the values are on disk, so the search below can find them.
    for secret in SECRETS {
        assert!(!files_containing(&data, secret).is_empty(), "{secret:?}");
    }

    let response = server
        .http
        .post(server.url(&format!("/api/v1/subjects/{}/erase", SECRETS[0])))
        .bearer_auth(TOKEN)
        .header("user-agent", "erase-test/1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["erased"], 31, "{body}");
    assert_eq!(body["alerts"], 1, "{body}");

    // The chain verifies; the events keep their non-personal content.
    let (_, report) = server.get("/api/v1/verify").await;
    assert_eq!(report["ok"], true, "{report}");
    let (_, export) = server
        .get(&format!("/api/v1/subjects/{}/export", SECRETS[0]))
        .await;
    assert_eq!(export["count"], 0);
    let (_, page) = server
        .get("/api/v1/events?action=document.open.7&limit=5")
        .await;
    let e = &page["items"][0];
    assert_eq!(e["user"]["id"], "[erased]", "{page}");
    assert_eq!(e["description"], "opened document 7");
    assert_eq!(e["request"]["path"], "/docs");
    assert!(e["request"].get("ip").is_none(), "{e}");
    assert_eq!(
        e["metadata"],
        json!({"plan": "gold"}),
        "only the personal fields go"
    );
    // Full-text search no longer finds the subject.
    let (_, found) = server.get("/api/v1/events?q=Quartermaine").await;
    assert_eq!(found["total"], 0, "{found}");
    let (_, bob) = server.get("/api/v1/subjects/bob/export").await;
    assert_eq!(bob["count"], 10, "other subjects keep everything");

    // The erasure is in the chain, by the admin, from the caller's address and agent, and
    // without the subject's id.
    let (_, audit) = server.get("/api/v1/events?action=subject.erase").await;
    let rec = &audit["items"][0];
    assert_eq!(rec["user"]["id"], "admin", "{audit}");
    assert_eq!(rec["request"]["ip"], "127.0.0.1");
    assert_eq!(rec["request"]["userAgent"], "erase-test/1");
    assert_eq!(rec["outcome"], "success");
    let (_, audit) = server.get("/api/v1/events?action=subject.export").await;
    assert_eq!(audit["total"], 3, "{audit}");

    // No byte of it anywhere in the data directory: databases, WALs, free pages, logs.
    for secret in SECRETS {
        assert_eq!(
            files_containing(&data, secret),
            Vec::<String>::new(),
            "{secret:?} is still on disk"
        );
    }
}

/// Posts five `old.thing` events 100 days old and one recent `new.thing`.
async fn post_five_expired_and_one_recent(server: &TestServer) {
    let old = (Utc::now() - Duration::days(100)).to_rfc3339();
    let batch: Vec<Value> = (0..5)
        .map(|i| json!({"action": "old.thing", "timestamp": old, "description": format!("{i}")}))
        .chain([json!({"action": "new.thing"})])
        .collect();
    assert_eq!(server.post(&Value::Array(batch)).await.0, 201);
}

#[tokio::test]
async fn cleanup_runs_the_policy_on_demand_and_is_audited() {
    let server = TestServer::start().await;
    post_five_expired_and_one_recent(&server).await;

    let bad = server
        .http
        .delete(server.url("/api/v1/events/cleanup?days=0"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let body: Value = bad.json().await.unwrap();
    assert_eq!(body["field"], "days");

    // The default keeps a year: nothing goes.
    let none: Value = server
        .http
        .delete(server.url("/api/v1/events/cleanup"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(none["deleted"], 0, "{none}");

    let done: Value = server
        .http
        .delete(server.url("/api/v1/events/cleanup?days=90"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(done["deleted"], 5, "{done}");
    assert_eq!(done["policy"]["days"], 90);
    let (_, page) = server.get("/api/v1/events?action=old.thing").await;
    assert_eq!(page["total"], 0, "{page}");
    let (_, report) = server.get("/api/v1/verify").await;
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["pruned"], 5);

    let (_, audit) = server.get("/api/v1/events?action=events.cleanup").await;
    assert_eq!(audit["total"], 2, "{audit}");
    let newest = &audit["items"][0];
    assert_eq!(newest["metadata"]["deleted"], 5);
    assert_eq!(newest["user"]["id"], "admin");
    assert_eq!(newest["source"], "trailwatch");

    // Exports are audited too.
    let csv = server
        .http
        .get(server.url("/api/v1/events/export?format=csv"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(csv.status(), 200);
    // The record is committed before the body's last chunk is sent.
    let text = csv.text().await.unwrap();
    assert!(
        !text.contains("events.export"),
        "the export holds no record of itself"
    );
    let (_, audit) = server.get("/api/v1/events?action=events.export").await;
    assert_eq!(audit["total"], 1, "{audit}");
}

/// The scheduled run (daily in production, every 100 ms here) applies the policy by itself,
/// as the system, and is audited like a run on demand.
#[tokio::test]
async fn the_scheduled_run_prunes_by_itself_and_is_audited_as_the_system() {
    let server = TestServer::start_with(|c| {
        c.retention.days = 90;
        c.retention_schedule = trailwatch::server::lifecycle::RetentionSchedule {
            first: std::time::Duration::ZERO,
            every: std::time::Duration::from_millis(100),
        };
    })
    .await;
    let mut socket = server.socket("").await;
    post_five_expired_and_one_recent(&server).await;

    // No request asks for it: the run that removes the five is found by its record.
    let record = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        loop {
            let m = socket.next_json().await;
            let e = &m["event"];
            if e["action"] == "events.cleanup" && e["metadata"]["deleted"] == 5 {
                return e.clone();
            }
        }
    })
    .await
    .expect("no scheduled run removed the expired events within 20 s");
    assert_eq!(record["user"]["id"], "system", "{record}");
    assert_eq!(record["outcome"], "success");
    assert_eq!(record["metadata"]["defaultDays"], 90);

    let (_, page) = server.get("/api/v1/events?action=old.thing").await;
    assert_eq!(page["total"], 0, "{page}");
    let (_, page) = server.get("/api/v1/events?action=new.thing").await;
    assert_eq!(page["total"], 1, "the recent event stays: {page}");
    let (_, report) = server.get("/api/v1/verify").await;
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["pruned"], 5);
}

#[tokio::test]
async fn acknowledgements_are_audited() {
    let server = TestServer::start().await;
    // A denial raises an alert; acknowledging it is recorded.
    let mut socket = alerts_socket(&server).await;
    server
        .post(&json!({"action": "vault.open", "outcome": "denied", "user": {"id": "eve"}}))
        .await;
    let id = socket.next_alert().await["id"]
        .as_u64()
        .expect("an alert id");
    let ack = server
        .http
        .post(server.url(&format!("/api/v1/alerts/{id}/acknowledge")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(ack.status(), 200);
    let (_, page) = server.get("/api/v1/events?action=alert.acknowledge").await;
    assert_eq!(page["total"], 1, "{page}");
}
