//! The store against real SQLite files: group commit under concurrent writers, reopening after
//! a simulated power cut, tamper detection, crypto-shredding erasure, queries.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.
#![cfg(feature = "ssr")]

use chrono::{DateTime, Utc};
use rusqlite::Connection;
use std::collections::BTreeSet;
use std::path::Path;
use trailwatch::model::{
    Actor, AuditEvent, Category, EventFilter, EventId, Level, Outcome, RequestInfo, Seq, Source,
    StoredEvent,
};
use trailwatch::store::chain::Fault;
use trailwatch::store::{verify_path, PageRequest, Store, StoreOptions, DB_FILE, SEARCH_FILE};

fn event(n: usize, user: &str) -> AuditEvent {
    AuditEvent {
        timestamp: DateTime::from_timestamp_millis(1_770_000_000_000 + n as i64 * 1000).unwrap(),
        level: if n % 5 == 0 {
            Level::Error
        } else {
            Level::Info
        },
        category: Category::DataManagement,
        action: format!("record.update.{}", n % 3),
        outcome: if n % 4 == 0 {
            Outcome::Denied
        } else {
            Outcome::Success
        },
        user: Actor {
            id: user.to_string(),
            username: Some(format!("{user} name")),
        },
        entity: None,
        request: Some(RequestInfo {
            ip: Some("10.1.2.3".into()),
            ..Default::default()
        }),
        location: None,
        description: Some(format!("event number {n}")),
        metadata: serde_json::json!({"n": n}).as_object().cloned(),
        changes: None,
        risk_score: Some((n % 101) as u8),
        risk_reasons: None,
        correlation_id: None,
        session_id: None,
        system: None,
        source: Source::http(),
        submitted_by: Some("token:store-test".into()),
    }
}

fn q(filter: EventFilter) -> trailwatch::search::Query {
    filter.compile().unwrap()
}

fn req(page: u32, limit: u32) -> PageRequest {
    PageRequest {
        order: trailwatch::model::EventOrder::ARRIVAL,
        cursor: None,
        page,
        limit,
        count_limit: None,
    }
}

fn open(dir: &Path) -> Store {
    Store::open(dir, StoreOptions::default()).unwrap()
}

fn verify(dir: &Path) -> trailwatch::store::VerifyReport {
    verify_path(&dir.join(DB_FILE), &[], None, &mut |_| {}).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_share_commits_and_get_gap_free_seqs() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut tasks = Vec::new();
    for t in 0..400 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let events = (0..3)
                .map(|i| event(t * 3 + i, &format!("u{}", t % 7)))
                .collect();
            store.append(events).await.unwrap()
        }));
    }
    let mut seqs = BTreeSet::new();
    for task in tasks {
        let receipt = task.await.unwrap();
        assert_eq!(receipt.accepted, 3);
        assert_eq!(
            receipt.last_seq.0 - receipt.first_seq.0,
            2,
            "a request's events are contiguous"
        );
        for s in receipt.first_seq.0..=receipt.last_seq.0 {
            assert!(seqs.insert(s), "seq {s} handed out twice");
        }
    }
    assert_eq!(seqs, (1..=1200).collect::<BTreeSet<u64>>());
    let stats = store.stats();
    assert_eq!((stats.appends, stats.events), (400, 1200));
    assert!(
        stats.commits < stats.appends,
        "group commit shared fsyncs: {stats:?}"
    );

    let all = store.read_from(Seq(0), 2000).await.unwrap();
    assert_eq!(
        all.iter().map(|e| e.seq.0).collect::<Vec<_>>(),
        (1..=1200).collect::<Vec<_>>()
    );
    let report = store.verify().await.unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.checked, 1200);
}

/// Copies the database files as they are on disk while the server runs: what a power cut
/// right after the acknowledgements would leave.
fn copy_as_after_power_cut(from: &Path, to: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let src = from.join(format!("{DB_FILE}{suffix}"));
        if src.exists() {
            std::fs::copy(&src, to.join(format!("{DB_FILE}{suffix}"))).unwrap();
        }
    }
}

#[tokio::test]
async fn acknowledged_events_survive_a_power_cut_and_seq_continues() {
    let dir = tempfile::tempdir().unwrap();
    let crashed = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut last = Seq(0);
    for i in 0..20 {
        last = store
            .append(vec![event(i, "alice"), event(i + 100, "bob")])
            .await
            .unwrap()
            .last_seq;
    }
    assert_eq!(last, Seq(40));
    copy_as_after_power_cut(dir.path(), crashed.path());

    let reopened = open(crashed.path());
    assert_eq!(reopened.head().await.unwrap(), Seq(40));
    let receipt = reopened.append(vec![event(999, "carol")]).await.unwrap();
    assert_eq!(receipt.first_seq, Seq(41), "seq continues without a gap");
    let report = reopened.verify().await.unwrap();
    assert!(report.ok && report.checked == 41, "{report:?}");
    let counters = reopened.counters().await.unwrap();
    assert_eq!(counters.total, 41);
}

async fn filled(n: usize) -> (tempfile::TempDir, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store
        .append((0..n).map(|i| event(i, ["alice", "bob"][i % 2])).collect())
        .await
        .unwrap();
    let hashes = store
        .read_from(Seq(0), n)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.hash)
        .collect();
    (dir, hashes)
}

fn raw(dir: &Path) -> Connection {
    Connection::open(dir.join(DB_FILE)).unwrap()
}

#[tokio::test]
async fn verify_finds_an_edited_row() {
    let (dir, _) = filled(10).await;
    raw(dir.path())
        .execute(
            "UPDATE events SET description = 'nothing happened' WHERE seq = 6",
            [],
        )
        .unwrap();
    let b = verify(dir.path()).first_break.unwrap();
    assert_eq!((b.seq, b.fault), (Seq(6), Fault::Edited));
}

#[tokio::test]
async fn verify_finds_an_edited_personal_field() {
    let (dir, _) = filled(10).await;
    raw(dir.path())
        .execute("UPDATE events SET req_ip = '6.6.6.6' WHERE seq = 3", [])
        .unwrap();
    let b = verify(dir.path()).first_break.unwrap();
    assert_eq!((b.seq, b.fault), (Seq(3), Fault::Edited));
}

#[tokio::test]
async fn declared_personal_metadata_is_kept_apart_sealed_and_read_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        personal_metadata: vec!["email".into()],
        ..StoreOptions::default()
    };
    let store = Store::open(dir.path(), options).unwrap();
    let events = (0..4)
        .map(|i| {
            let mut e = event(i, "alice");
            e.metadata = serde_json::json!({"email": format!("a{i}@x.test"), "plan": "pro"})
                .as_object()
                .cloned();
            e
        })
        .collect();
    store.append(events).await.unwrap();
    let page = store
        .query(q(EventFilter::default()), req(1, 10))
        .await
        .unwrap();
    assert_eq!(
        page.items[0].event.metadata,
        serde_json::json!({"email": "a3@x.test", "plan": "pro"})
            .as_object()
            .cloned()
    );
    drop(store);
    let conn = raw(dir.path());
    let (metadata, personal): (String, String) = conn
        .query_row(
            "SELECT metadata, personal FROM events WHERE seq = 2",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        (metadata.as_str(), personal.as_str()),
        (r#"{"plan":"pro"}"#, r#"{"email":"a1@x.test"}"#)
    );
    assert!(verify(dir.path()).ok);

    // The personal part is sealed too: edited, or dropped, it no longer verifies.
    for forge in [
        r#"UPDATE events SET personal = '{"email":"b@x.test"}' WHERE seq = 2"#,
        "UPDATE events SET personal = NULL WHERE seq = 2",
    ] {
        conn.execute(forge, []).unwrap();
        let b = verify(dir.path()).first_break.unwrap();
        assert_eq!((b.seq, b.fault), (Seq(2), Fault::Edited), "{forge}");
    }
}

#[tokio::test]
async fn verify_finds_a_deleted_row() {
    let (dir, _) = filled(10).await;
    raw(dir.path())
        .execute("DELETE FROM events WHERE seq = 4", [])
        .unwrap();
    let report = verify(dir.path());
    let b = report.first_break.unwrap();
    assert_eq!((b.seq, b.fault), (Seq(4), Fault::Deleted));
    assert_eq!(report.checked, 3);
}

#[tokio::test]
async fn verify_finds_reordered_rows() {
    let (dir, _) = filled(10).await;
    let conn = raw(dir.path());
    // Swap the whole content of rows 5 and 6, keeping their seqs.
    conn.execute_batch(
        "UPDATE events SET seq = -5 WHERE seq = 5;
         UPDATE events SET seq = 5 WHERE seq = 6;
         UPDATE events SET seq = 6 WHERE seq = -5;",
    )
    .unwrap();
    let b = verify(dir.path()).first_break.unwrap();
    assert_eq!((b.seq, b.fault), (Seq(5), Fault::Reordered));
}

#[tokio::test]
async fn crypto_shredding_a_subject_keeps_the_chain_verifiable() {
    let (dir, hashes) = filled(10).await;
    let conn = raw(dir.path());
    // What GDPR erasure does: blank alice's personal fields, forget her salt.
    conn.execute_batch(
        "UPDATE events SET user_id = 'erased:1', username = NULL, req_ip = NULL,
                req_user_agent = NULL, country = NULL, city = NULL, erased = 1
         WHERE user_id = 'alice';
         DELETE FROM subjects WHERE subject = 'alice';",
    )
    .unwrap();
    let report = verify(dir.path());
    assert!(report.ok, "{report:?}");
    assert_eq!(report.head_hash, hashes[9], "no hash changed");
    drop(conn);
    let store = open(dir.path());
    let events = store.read_from(Seq(0), 10).await.unwrap();
    assert!(events.iter().all(|e| e.event.user.id != "alice"));
    assert!(
        events.iter().any(|e| e.event.user.id == "bob"),
        "other subjects are untouched"
    );
}

#[tokio::test]
async fn queries_filter_page_and_count() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store
        .append(
            (0..30)
                .map(|i| event(i, ["alice", "bob", "carol"][i % 3]))
                .collect(),
        )
        .await
        .unwrap();

    let page = store
        .query(q(EventFilter::default()), req(1, 10))
        .await
        .unwrap();
    assert_eq!(page.total, 30);
    assert_eq!(
        page.items.first().map(|e| e.seq),
        Some(Seq(30)),
        "newest first"
    );
    let page3 = store
        .query(q(EventFilter::default()), req(3, 10))
        .await
        .unwrap();
    assert_eq!(page3.items.last().map(|e| e.seq), Some(Seq(1)));

    let alice = EventFilter {
        user_id: Some("alice".into()),
        ..Default::default()
    };
    let page = store.query(q(alice), req(1, 50)).await.unwrap();
    assert_eq!(page.total, 10);
    assert!(page.items.iter().all(|e| e.event.user.id == "alice"));

    let errors = EventFilter {
        level: vec![Level::Error],
        outcome: vec![Outcome::Denied],
        ..Default::default()
    };
    let page = store.query(q(errors), req(1, 50)).await.unwrap();
    // Error every 5th, denied every 4th: multiples of 20 below 30 are 0 and 20.
    assert_eq!(page.total, 2);

    let search = EventFilter {
        search_query: Some("NUMBER 2".into()),
        ..Default::default()
    };
    let page = store.query(q(search), req(1, 50)).await.unwrap();
    // "event number 2", "event number 20".."29".
    assert_eq!(page.total, 11);

    let since = EventFilter {
        start_date: Some(DateTime::from_timestamp_millis(1_770_000_000_000 + 25_000).unwrap()),
        end_date: Some(Utc::now()),
        ..Default::default()
    };
    assert_eq!(store.query(q(since), req(1, 50)).await.unwrap().total, 5);

    let one = store.read_from(Seq(0), 1).await.unwrap().remove(0);
    let found = store.get(one.event_id.clone()).await.unwrap().unwrap();
    assert_eq!(found, one, "an event reads back exactly as it was sealed");
}

#[tokio::test]
async fn a_full_database_refuses_the_whole_request_and_keeps_the_chain_intact() {
    // Small requests are sealed inline; one of 600 events is sealed on a second thread
    // beside its inserts, which must stop both when the disk fills.
    for (pages, size) in [(64, 50), (1_024, 600)] {
        fills_up(pages, size).await;
    }
}

async fn fills_up(pages: u64, size: usize) {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        max_pages: Some(pages),
        ..StoreOptions::default()
    };
    let store = Store::open(dir.path(), options).unwrap();
    let mut acknowledged = 0u64;
    let full = loop {
        let batch = (0..size).map(|i| event(i, &format!("user{i}"))).collect();
        match store.append(batch).await {
            Ok(receipt) => acknowledged = receipt.last_seq.0,
            Err(e) => break e,
        }
        assert!(acknowledged < 1_000_000, "{pages} pages never filled up");
    };
    assert!(
        matches!(full, trailwatch::store::StoreError::Full),
        "{full:?}"
    );
    assert!(acknowledged > 0);
    // Nothing of the refused request was stored, and the writer still works for what fits.
    assert_eq!(store.head().await.unwrap(), Seq(acknowledged));
    let report = store.verify().await.unwrap();
    assert!(report.ok && report.checked == acknowledged, "{report:?}");
    assert!(
        store.is_writable(),
        "a full database does not stop the writer"
    );
}

#[tokio::test]
async fn an_empty_append_stores_nothing_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.append(vec![event(0, "alice")]).await.unwrap();
    let receipt = store.append(Vec::new()).await.unwrap();
    assert_eq!(
        (receipt.accepted, receipt.first_seq, receipt.last_seq),
        (0, Seq(2), Seq(1))
    );
    let next = store.append(vec![event(1, "bob")]).await.unwrap();
    assert_eq!(next.first_seq, Seq(2));
}

#[tokio::test]
async fn subscribers_see_commits_in_seq_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut rx = store.subscribe();
    store
        .append((0..5).map(|i| event(i, "alice")).collect())
        .await
        .unwrap();
    store.append(vec![event(5, "bob")]).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..6 {
        got.push(rx.recv().await.unwrap().seq.0);
    }
    assert_eq!(got, vec![1, 2, 3, 4, 5, 6]);
}

fn text(q: &str) -> trailwatch::search::Query {
    self::q(EventFilter {
        q: Some(q.into()),
        ..Default::default()
    })
}

async fn text_total(store: &Store, query: &str) -> u64 {
    store.query(text(query), req(1, 50)).await.unwrap().total
}

/// Deletes the search index file and its WAL, as an operator might.
fn remove_search_index(dir: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.join(format!("{SEARCH_FILE}{suffix}")));
    }
}

/// How many events an export of `query` would write.
async fn exported(store: &Store, query: &str) -> Result<u64, trailwatch::store::StoreError> {
    store
        .for_each_matching(
            text(query),
            trailwatch::model::EventOrder::ARRIVAL,
            0_u64,
            |n, _| {
                *n += 1;
                true
            },
        )
        .await
}

fn schema_version(dir: &Path) -> String {
    Connection::open(dir.join(DB_FILE))
        .unwrap()
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .unwrap()
}

#[tokio::test]
async fn a_schema_2_database_moves_its_full_text_index_to_its_own_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store
        .append((0..25).map(|i| event(i, "alice")).collect())
        .await
        .unwrap();
    drop(store);
    // Schema 2 kept the index inside the events database, had b-trees on users and actions,
    // no action counts, and no index file.
    let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
    conn.execute_batch(
        "CREATE VIRTUAL TABLE events_fts USING fts5(t_description, content = '');
         CREATE INDEX events_user ON events (user_id, seq);
         CREATE INDEX events_action ON events (action, seq);
         DELETE FROM counters WHERE name LIKE 'action:%';
         UPDATE meta SET value = '2' WHERE key = 'schema_version';",
    )
    .unwrap();
    drop(conn);
    remove_search_index(dir.path());

    let store = open(dir.path());
    assert_eq!(text_total(&store, "\"number 2\"").await, 1);
    assert_eq!(text_total(&store, "numb").await, 25);
    let legacy: i64 = Connection::open(dir.path().join(DB_FILE))
        .unwrap()
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master
             WHERE name IN ('events_fts', 'events_user', 'events_action')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(legacy, 0, "the old index and b-trees are dropped");
    let actions = store
        .distinct(trailwatch::store::DistinctField::Action)
        .await
        .unwrap();
    let counted: Vec<(String, u64)> = actions.into_iter().map(|v| (v.value, v.count)).collect();
    assert_eq!(
        counted,
        vec![
            ("record.update.0".to_string(), 9),
            ("record.update.1".to_string(), 8),
            ("record.update.2".to_string(), 8)
        ]
    );
    assert_eq!(
        schema_version(dir.path()),
        trailwatch::store::SCHEMA_VERSION.to_string(),
        "upgraded through every version"
    );
    assert!(verify(dir.path()).ok, "the upgrade leaves the chain intact");
}

#[tokio::test]
async fn a_lost_or_foreign_search_index_is_rebuilt_from_the_events() {
    let dir = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store
        .append((0..30).map(|i| event(i, "alice")).collect())
        .await
        .unwrap();
    assert_eq!(text_total(&store, "number").await, 30);
    drop(store);
    // Another store's index, further along and over other events, put in its place.
    let foreign = open(other.path());
    let mut others: Vec<AuditEvent> = (0..40).map(|i| event(i, "bob")).collect();
    for e in &mut others {
        e.description = Some("unrelated words".into());
    }
    foreign.append(others).await.unwrap();
    assert_eq!(text_total(&foreign, "unrelated").await, 40);
    drop(foreign);
    let copy = |from: &Path, to: &Path| {
        let conn = Connection::open(from.join(SEARCH_FILE)).unwrap();
        let _ = std::fs::remove_file(to.join(format!("{SEARCH_FILE}-wal")));
        let _ = std::fs::remove_file(to.join(format!("{SEARCH_FILE}-shm")));
        let target = to.join(SEARCH_FILE);
        let _ = std::fs::remove_file(&target);
        conn.execute("VACUUM INTO ?1", [target.to_str().unwrap()])
            .unwrap();
    };
    copy(other.path(), dir.path());
    let store = open(dir.path());
    assert_eq!(
        text_total(&store, "unrelated").await,
        0,
        "nothing foreign is found"
    );
    assert_eq!(text_total(&store, "number").await, 30);
    drop(store);

    // Lost altogether.
    remove_search_index(dir.path());
    let store = open(dir.path());
    assert_eq!(text_total(&store, "\"number 7\"").await, 1);
    assert_eq!(text_total(&store, "number").await, 30);
}

#[tokio::test]
async fn a_search_behind_the_index_says_how_far_it_covers_and_never_guesses() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        index_wait: std::time::Duration::from_millis(200),
        ..StoreOptions::default()
    };
    let store = Store::open(dir.path(), options).unwrap();
    store
        .append((0..10).map(|i| event(i, "alice")).collect())
        .await
        .unwrap();
    let page = store.query(text("number"), req(1, 50)).await.unwrap();
    assert_eq!((page.total, page.search_indexed_through), (10, None));

    // Hold the index's write lock, as a long merge would: the indexer cannot move.
    let blocker = Connection::open(dir.path().join(SEARCH_FILE)).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    store
        .append((10..15).map(|i| event(i, "alice")).collect())
        .await
        .unwrap();

    let page = store.query(text("number"), req(1, 50)).await.unwrap();
    assert_eq!(page.search_indexed_through, Some(Seq(10)));
    // Where the answer is complete, so a live subscription from it misses nothing.
    assert_eq!(page.head_seq, Seq(10));
    assert_eq!(page.total, 10, "only indexed events are counted");
    // A negation must not let unindexed events through as "not containing" the word.
    let page = store.query(text("-number"), req(1, 50)).await.unwrap();
    assert_eq!(
        (page.total, page.search_indexed_through),
        (0, Some(Seq(10)))
    );
    // Live catch-up must not skip what the index has not reached.
    let (items, reached) = store
        .matching_from(std::sync::Arc::new(text("number")), Seq(8), 100)
        .await
        .unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(reached, Seq(10));
    // Filters that need no index are complete.
    let all = store
        .query(q(EventFilter::default()), req(1, 50))
        .await
        .unwrap();
    assert_eq!((all.total, all.search_indexed_through), (15, None));
    // An export is all or nothing.
    assert!(matches!(
        exported(&store, "number").await,
        Err(trailwatch::store::StoreError::Indexing {
            indexed: 10,
            head: 15
        })
    ));

    blocker.execute_batch("ROLLBACK").unwrap();
    let page = store.query(text("number"), req(1, 50)).await.unwrap();
    assert_eq!((page.total, page.search_indexed_through), (15, None));
    assert_eq!(exported(&store, "number").await.unwrap(), 15);
}

#[tokio::test]
async fn the_detail_verifies_one_event_in_place_and_finds_its_relatives() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut events: Vec<AuditEvent> = (0..6).map(|i| event(i, "alice")).collect();
    for (i, e) in events.iter_mut().enumerate() {
        e.correlation_id = Some(format!("req-{}", i % 2));
        e.session_id = (i < 3).then(|| "s1".to_string());
    }
    store.append(events).await.unwrap();
    let all = store.read_from(Seq(0), 10).await.unwrap();

    let d = store
        .detail(all[2].event_id.clone(), 10)
        .await
        .unwrap()
        .unwrap();
    assert!(d.seal.verified, "{:?}", d.seal.problem);
    assert_eq!(d.seal.hash, all[2].hash);
    assert_eq!(d.seal.prev_hash, all[1].hash);
    let seqs = |v: &[trailwatch::model::StoredEvent]| v.iter().map(|e| e.seq.0).collect::<Vec<_>>();
    assert_eq!(
        seqs(&d.same_correlation),
        vec![5, 1],
        "same correlation, itself excluded"
    );
    assert_eq!(seqs(&d.same_session), vec![2, 1]);
    assert!(store
        .detail(trailwatch::model::EventId("nope".into()), 10)
        .await
        .unwrap()
        .is_none());

    // Someone edits the stored row: its own dialog says so, its neighbours still verify.
    drop(store);
    let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
    conn.execute(
        "UPDATE events SET description = 'nothing happened' WHERE seq = 3",
        [],
    )
    .unwrap();
    drop(conn);
    let store = open(dir.path());
    let d = store
        .detail(all[2].event_id.clone(), 10)
        .await
        .unwrap()
        .unwrap();
    assert!(!d.seal.verified);
    assert!(d.seal.problem.unwrap().contains("does not match its hash"));
    let next = store
        .detail(all[3].event_id.clone(), 10)
        .await
        .unwrap()
        .unwrap();
    assert!(
        next.seal.verified,
        "the next row still links to the stored hash"
    );
}

/// A store holding `n` events whose checkpoints through `through` are signed, closed.
async fn checkpointed(n: usize, through: u64) -> (tempfile::TempDir, Vec<StoredEvent>) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for chunk in (0..n).collect::<Vec<_>>().chunks(700) {
        store
            .append(
                chunk
                    .iter()
                    .map(|&i| event(i, ["alice", "bob"][i % 2]))
                    .collect(),
            )
            .await
            .unwrap();
    }
    let mut signed = store.checkpointed();
    signed.wait_for(|&s| s >= through).await.unwrap();
    let events = store.read_from(Seq(0), n).await.unwrap();
    (dir, events)
}

fn trusted(dir: &Path) -> Vec<trailwatch::store::checkpoint::Checkpoint> {
    use trailwatch::store::checkpoint::{trusted, LOG_FILE, PUBLIC_KEY_FILE};
    trusted(&dir.join(LOG_FILE), &dir.join(PUBLIC_KEY_FILE), true).unwrap()
}

#[tokio::test]
async fn removing_the_newest_rows_is_caught_by_the_signed_checkpoints() {
    let (dir, _) = checkpointed(2_500, 2_000).await;
    let checkpoints = trusted(dir.path());
    let seqs: Vec<u64> = checkpoints.iter().map(|c| c.seq).collect();
    assert!(seqs.starts_with(&[1_000, 2_000]), "{seqs:?}");

    raw(dir.path())
        .execute("DELETE FROM events WHERE seq > 1500", [])
        .unwrap();
    // What is left is a perfectly good chain: only the checkpoints know it was longer.
    assert!(verify(dir.path()).ok);
    let report = verify_path(&dir.path().join(DB_FILE), &checkpoints, None, &mut |_| {}).unwrap();
    let b = report.first_break.clone().unwrap();
    assert_eq!(
        (b.seq, b.fault),
        (Seq(1_501), Fault::Truncated),
        "{report:?}"
    );
    assert_eq!(report.checkpoints, 1, "seq 1000 still matches");
    // The running server's verify reads the data directory's log and key.
    let store = open(dir.path());
    let live = store.verify().await.unwrap();
    assert_eq!(live.first_break.map(|b| b.fault), Some(Fault::Truncated));
}

#[tokio::test]
async fn deleting_a_row_and_resealing_the_rest_is_caught_by_the_signed_checkpoints() {
    use trailwatch::store::chain::{canonical, chain_hash};
    let (dir, events) = checkpointed(2_500, 2_000).await;
    let conn = raw(dir.path());
    // The forger deletes seq 1500, moves every later row down one and recomputes its link
    // and hash, so the chain is consistent again.
    conn.execute("DELETE FROM events WHERE seq = 1500", [])
        .unwrap();
    let mut prev: [u8; 32] = hex::decode(&events[1_498].hash)
        .unwrap()
        .try_into()
        .unwrap();
    for e in &events[1_500..] {
        let pii: Vec<u8> = conn
            .query_row(
                "SELECT pii_digest FROM events WHERE seq = ?1",
                [e.seq.0],
                |r| r.get(0),
            )
            .unwrap();
        let pii: [u8; 32] = pii.try_into().unwrap();
        let canon = canonical(
            &e.event,
            &e.event_id.0,
            e.received_at.timestamp_millis(),
            &pii,
        );
        let hash = chain_hash(&prev, &canon);
        conn.execute(
            "UPDATE events SET seq = ?1, prev_hash = ?2, hash = ?3 WHERE seq = ?4",
            rusqlite::params![e.seq.0 - 1, prev.as_slice(), hash.as_slice(), e.seq.0],
        )
        .unwrap();
        prev = hash;
    }
    assert!(
        verify(dir.path()).ok,
        "without checkpoints the forgery passes"
    );
    let report = verify_path(
        &dir.path().join(DB_FILE),
        &trusted(dir.path()),
        None,
        &mut |_| {},
    )
    .unwrap();
    let b = report.first_break.unwrap();
    assert_eq!(
        (b.seq, b.fault),
        (Seq(2_000), Fault::Edited),
        "{}",
        b.detail
    );
    assert!(b.detail.contains("checkpoint"), "{}", b.detail);
}

#[tokio::test]
async fn a_checkpoint_log_signed_by_another_key_is_not_trusted() {
    use trailwatch::store::checkpoint::{trusted, LOG_FILE, PUBLIC_KEY_FILE};
    let (dir, _) = checkpointed(1_000, 1_000).await;
    let (other, _) = checkpointed(1_000, 1_000).await;
    let err = trusted(
        &dir.path().join(LOG_FILE),
        &other.path().join(PUBLIC_KEY_FILE),
        true,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("not signed by this public key"),
        "{err}"
    );
    // A log that was edited after signing fails the same way.
    let log = dir.path().join(LOG_FILE);
    let text = std::fs::read_to_string(&log).unwrap();
    std::fs::write(&log, text.replacen("\"seq\":1000", "\"seq\":999", 1)).unwrap();
    let store = open(dir.path());
    let report = store.verify().await.unwrap();
    assert!(!report.ok);
    assert!(
        report.checkpoint_error.unwrap().contains("seq 999"),
        "the bad entry is named"
    );
}

#[tokio::test]
async fn the_head_can_be_signed_at_once_so_a_clean_stop_leaves_nothing_unsigned() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store
        .append((0..7).map(|i| event(i, "alice")).collect())
        .await
        .unwrap();
    // Seven events: no boundary, and the minute has not passed.
    assert_eq!(
        store
            .checkpoint_head(std::time::Duration::from_secs(10))
            .await
            .unwrap(),
        7
    );
    let seqs: Vec<u64> = trusted(dir.path()).iter().map(|c| c.seq).collect();
    assert_eq!(seqs, [7]);
    raw(dir.path())
        .execute("DELETE FROM events WHERE seq = 7", [])
        .unwrap();
    let b = store.verify().await.unwrap().first_break.unwrap();
    assert_eq!((b.seq, b.fault), (Seq(7), Fault::Truncated));
}

#[tokio::test]
async fn a_pass_from_the_head_finds_nothing_wrong_with_the_checkpoints_behind_it() {
    // The background check walks on from where its last pass ended. A pass that starts at
    // the head has no row to walk: the checkpoints behind it were matched by earlier passes,
    // and must not read as a chain cut short.
    let (dir, events) = checkpointed(2_500, 2_000).await;
    let store = open(dir.path());
    let hash = |seq: usize| -> [u8; 32] {
        hex::decode(&events[seq - 1].hash)
            .unwrap()
            .try_into()
            .unwrap()
    };
    for after in [2_000, 2_500] {
        let report = store
            .verify_from(Seq(after as u64), hash(after))
            .await
            .unwrap();
        assert!(report.ok, "from {after}: {report:?}");
        assert_eq!(
            (report.checked, report.head_seq),
            (2_500 - after as u64, Seq(2_500))
        );
    }
    // A checkpoint exactly where the pass starts still pins that row's hash.
    let report = store.verify_from(Seq(2_000), hash(1_999)).await.unwrap();
    let b = report.first_break.unwrap();
    assert_eq!((b.seq, b.fault), (Seq(2_000), Fault::Edited));
}

#[tokio::test]
async fn an_event_is_found_by_its_id_through_its_seq_and_old_id_indexes_still_serve() {
    let (dir, _) = filled(30).await;
    // Ids are not indexed at ingest (schema 10): each leads to its event through its seq.
    let on_ids = || -> Vec<String> {
        raw(dir.path())
            .prepare(
                "SELECT i.name FROM pragma_index_list('events') AS i
                 JOIN pragma_index_info(i.name) AS c WHERE c.name = 'event_id'",
            )
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert!(on_ids().is_empty(), "{:?}", on_ids());
    let store = open(dir.path());
    let all = store.read_from(Seq(0), 30).await.unwrap();
    for e in &all {
        let found = store.get(e.event_id.clone()).await.unwrap().unwrap();
        assert_eq!((found.seq, &found.hash), (e.seq, &e.hash));
    }
    // A well-formed id of no event, and one that names a stored seq but not its event.
    let mut forged = all[4].event_id.0.clone();
    forged.replace_range(35.., if forged.ends_with('0') { "1" } else { "0" });
    for missing in [
        "0194f1c2-0000-7000-8000-000000000000",
        "not-an-id",
        forged.as_str(),
    ] {
        let got = store.get(EventId(missing.into())).await.unwrap();
        assert!(got.is_none(), "{missing} found {got:?}");
    }
    drop(store);

    // A database from before schema 10 keeps its UNIQUE index on ids, and through it still
    // finds an event whose id carries no seq (ids before schema 3 were random).
    let legacy = "6f1b0a52-3c1e-4c59-9a38-2f1d7f3c9e10";
    let conn = raw(dir.path());
    conn.execute("UPDATE events SET event_id = ?1 WHERE seq = 7", [legacy])
        .unwrap();
    drop(conn);
    let store = open(dir.path());
    assert!(store.get(EventId(legacy.into())).await.unwrap().is_none());
    drop(store);
    raw(dir.path())
        .execute_batch("CREATE UNIQUE INDEX legacy_ids ON events (event_id)")
        .unwrap();
    let store = open(dir.path());
    let found = store.get(EventId(legacy.into())).await.unwrap().unwrap();
    assert_eq!(found.seq, Seq(7));
    assert_eq!(
        store
            .get(all[9].event_id.clone())
            .await
            .unwrap()
            .unwrap()
            .seq,
        Seq(10)
    );
}
