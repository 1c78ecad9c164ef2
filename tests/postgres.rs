//! The PostgreSQL backend against a real, throwaway cluster (one per test binary, see
//! `common::postgres`): migrations that several nodes run at once, leases that pass a
//! cluster-wide job from a node that stopped renewing to another, and the notices that carry
//! committed seq ranges to every node.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.
#![cfg(feature = "ssr")]

mod common;

use common::postgres::{cluster, connect, two_nodes};
use std::time::Duration;
use trailwatch::store::postgres::{self, Committed, PgError, MIGRATIONS};

#[tokio::test]
async fn migrations_apply_once_when_several_nodes_start_at_once() {
    let url = cluster().database("migrate_together").await;
    // Three nodes, each with its own session, all migrating at the same moment.
    let nodes: Vec<_> = (0..3)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let mut client = connect(&url).await;
                postgres::migrate(&mut client).await.unwrap()
            })
        })
        .collect();
    let mut applied = Vec::new();
    for node in nodes {
        applied.extend(node.await.unwrap());
    }
    applied.sort_unstable();
    let all: Vec<i32> = MIGRATIONS.iter().map(|m| m.version).collect();
    assert_eq!(applied, all, "each migration applied by exactly one node");

    let mut client = connect(&url).await;
    let recorded: Vec<i32> = client
        .query(
            "SELECT version FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(recorded, all);
    assert!(postgres::migrate(&mut client).await.unwrap().is_empty());

    // A database a newer build migrated is refused, not misread.
    client
        .execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, 'from the future')",
            &[&(all.len() as i32 + 1)],
        )
        .await
        .unwrap();
    match postgres::migrate(&mut client).await {
        Err(PgError::NewerSchema { found, known }) => {
            assert_eq!((found, known), (all.len() as i32 + 1, all.len() as i32));
        }
        other => panic!("expected NewerSchema, got {other:?}"),
    }
}

#[tokio::test]
async fn a_lease_has_one_holder_until_it_is_released_or_expires() {
    let url = cluster().database("leases").await;
    let mut client = connect(&url).await;
    postgres::migrate(&mut client).await.unwrap();
    let ttl = Duration::from_secs(30);

    // Of nodes asking at once, exactly one wins.
    let asks: Vec<_> = ["node-1", "node-2", "node-3"]
        .into_iter()
        .map(|node| {
            let url = url.clone();
            tokio::spawn(async move {
                let c = connect(&url).await;
                (
                    node,
                    postgres::try_acquire(&c, "retention", node, ttl)
                        .await
                        .unwrap(),
                )
            })
        })
        .collect();
    let mut winners = Vec::new();
    for ask in asks {
        let (node, won) = ask.await.unwrap();
        if won {
            winners.push(node);
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    let first = winners[0];
    let other = if first == "node-1" {
        "node-2"
    } else {
        "node-1"
    };
    let held = postgres::holder(&client, "retention")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(held.holder, first);

    // The holder renews; the others keep being refused; leases are by name.
    assert!(postgres::try_acquire(&client, "retention", first, ttl)
        .await
        .unwrap());
    assert!(!postgres::try_acquire(&client, "retention", other, ttl)
        .await
        .unwrap());
    assert!(postgres::try_acquire(&client, "checkpoints", other, ttl)
        .await
        .unwrap());
    let renewed = postgres::holder(&client, "retention")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        renewed.acquired_at, held.acquired_at,
        "a renewal keeps when it began"
    );
    assert!(renewed.expires_at >= held.expires_at);

    // A released lease is free at once.
    assert!(!postgres::release(&client, "retention", other)
        .await
        .unwrap());
    assert!(postgres::release(&client, "retention", first)
        .await
        .unwrap());
    assert_eq!(postgres::holder(&client, "retention").await.unwrap(), None);
    assert!(postgres::try_acquire(&client, "retention", other, ttl)
        .await
        .unwrap());

    // The holder dies: it stops renewing, and once the lease's time is up (made so here, in
    // the database's clock, rather than waited for) another node takes it over.
    client
        .execute(
            "UPDATE leases SET expires_at = now() - interval '1 second' WHERE name = 'retention'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(postgres::holder(&client, "retention").await.unwrap(), None);
    assert!(postgres::try_acquire(&client, "retention", first, ttl)
        .await
        .unwrap());
    let taken = postgres::holder(&client, "retention")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(taken.holder, first);
    assert!(
        taken.acquired_at > renewed.acquired_at,
        "a new holder's lease begins anew"
    );
}

#[tokio::test]
async fn committed_ranges_reach_every_listening_node_in_commit_order_and_only_once_committed() {
    let url = cluster().database("notices").await;
    let mut first = postgres::Listener::open(&url).await.unwrap();
    let mut second = postgres::Listener::open(&url).await.unwrap();
    let mut a = connect(&url).await;
    let b = connect(&url).await;

    // A transaction that rolls back announces nothing.
    let tx = a.transaction().await.unwrap();
    postgres::announce(&tx, Committed { first: 1, last: 5 })
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    // Committed ones arrive, from whichever node, in the order they committed.
    let tx = a.transaction().await.unwrap();
    postgres::announce(&tx, Committed { first: 1, last: 3 })
        .await
        .unwrap();
    tx.commit().await.unwrap();
    postgres::announce(&b, Committed { first: 4, last: 4 })
        .await
        .unwrap();
    postgres::announce(&a, Committed { first: 5, last: 9 })
        .await
        .unwrap();
    let want = [(1, 3), (4, 4), (5, 9)].map(|(first, last)| Committed { first, last });
    for listener in [&mut first, &mut second] {
        let mut got = Vec::new();
        for _ in 0..want.len() {
            let next = tokio::time::timeout(Duration::from_secs(10), listener.next())
                .await
                .expect("a notice within 10 s")
                .expect("the session lasts");
            got.push(next);
        }
        assert_eq!(got, want);
    }
}

// The event log: one chain that several nodes append to, every node's live stream.

use chrono::DateTime;
use std::collections::{BTreeMap, BTreeSet};
use trailwatch::model::{AuditEvent, EventOrder, Seq, StoredEvent};
use trailwatch::store::postgres::EventLog;
use trailwatch::store::risk::{RiskConfig, Scorer};
use trailwatch::store::StoreOptions;

use common::tagged;

fn tag_of(e: &StoredEvent) -> String {
    e.event.metadata.as_ref().unwrap()["tag"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The next `n` events a follower hands out, failing after a generous wait.
async fn take(f: &mut trailwatch::store::Following, n: usize) -> Vec<StoredEvent> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let e = tokio::time::timeout(Duration::from_secs(20), f.next())
            .await
            .expect("the follower stalled")
            .unwrap()
            .expect("the log stopped");
        out.push((*e).clone());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_appending_at_once_share_one_gap_free_chain_and_each_streams_all_of_it() {
    let (url, a, b) = two_nodes("chain_nodes").await;
    let mut follow_a = a.follow_from(Seq(0));
    let mut follow_b = b.follow_from(Seq(0));

    // Four writers per node, each appending batches of one to five events.
    let mut writers = Vec::new();
    for (name, node) in [("a", &a), ("b", &b)] {
        for w in 0..4 {
            let node = node.clone();
            writers.push(tokio::spawn(async move {
                let mut sent = Vec::new();
                for batch in 0..15 {
                    let size = 1 + (w + batch) % 5;
                    let events: Vec<AuditEvent> = (0..size)
                        .map(|i| tagged(&format!("{name}{w}-{batch}-{i}"), w * 100 + batch + i))
                        .collect();
                    let receipt = node.append(events.clone()).await.unwrap();
                    assert_eq!(receipt.accepted, size);
                    assert_eq!(receipt.last_seq.0 - receipt.first_seq.0 + 1, size as u64);
                    sent.push((receipt.first_seq.0, events));
                }
                sent
            }));
        }
    }
    let mut by_seq: BTreeMap<u64, String> = BTreeMap::new();
    for w in writers {
        for (first, events) in w.await.unwrap() {
            for (i, e) in events.iter().enumerate() {
                let tag = e.metadata.as_ref().unwrap()["tag"].as_str().unwrap();
                assert!(by_seq.insert(first + i as u64, tag.to_string()).is_none());
            }
        }
    }
    let total = by_seq.len();
    // Seqs are 1..=N with no gap and no seq given twice, whichever node took the event.
    assert_eq!(
        by_seq.keys().copied().collect::<Vec<_>>(),
        (1..=total as u64).collect::<Vec<_>>()
    );
    assert_eq!(a.head().await.unwrap(), Seq(total as u64));
    assert_eq!(b.head().await.unwrap(), Seq(total as u64));

    // Each node's stream carries every node's events, in seq order, exactly as received.
    for follow in [&mut follow_a, &mut follow_b] {
        let got = take(follow, total).await;
        let seqs: Vec<u64> = got.iter().map(|e| e.seq.0).collect();
        assert_eq!(seqs, (1..=total as u64).collect::<Vec<_>>());
        for e in &got {
            assert_eq!(tag_of(e), by_seq[&e.seq.0], "seq {}", e.seq);
        }
    }
    let stored = a.read_from(Seq(0), total + 10).await.unwrap();
    assert_eq!(stored.len(), total);
    let nodes: BTreeSet<char> = stored
        .iter()
        .map(|e| tag_of(e).chars().next().unwrap())
        .collect();
    assert_eq!(nodes, BTreeSet::from(['a', 'b']));

    // Risk is scored as one node scoring every event in seq order would: each node counted
    // the other's events before sealing its own.
    let mut one = Scorer::new(RiskConfig::default());
    for e in &stored {
        let mut fresh = e.event.clone();
        fresh.risk_score = None;
        fresh.risk_reasons = None;
        if one.needs_profile(&fresh.user.id) {
            one.insert_profile(fresh.user.id.clone(), Default::default());
        }
        one.observe_loaded(&mut fresh, e.received_at.timestamp_millis())
            .unwrap();
        assert_eq!(fresh.risk_score, e.event.risk_score, "seq {}", e.seq);
        assert_eq!(fresh.risk_reasons, e.event.risk_reasons, "seq {}", e.seq);
    }
    assert!(
        stored.iter().any(|e| e
            .event
            .risk_reasons
            .iter()
            .flatten()
            .any(|r| r.rule.contains("repeated"))),
        "some scores count failures from both nodes"
    );

    let report = a.verify(&[], None, &mut |_| {}).await.unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.checked, total as u64);
    assert_eq!(report.head_seq, Seq(total as u64));

    // A node that joins later resumes from any seq: what it missed, then what follows,
    // with no gap and no duplicate.
    let c = EventLog::open(&url, "node-3", StoreOptions::default())
        .await
        .unwrap();
    let from = total as u64 / 2;
    let mut follow_c = c.follow_from(Seq(from));
    let more: Vec<AuditEvent> = (0..7).map(|i| tagged(&format!("late-{i}"), i)).collect();
    let receipt = a.append(more).await.unwrap();
    assert_eq!(receipt.first_seq, Seq(total as u64 + 1));
    let got = take(&mut follow_c, total - from as usize + 7).await;
    let seqs: Vec<u64> = got.iter().map(|e| e.seq.0).collect();
    assert_eq!(seqs, (from + 1..=total as u64 + 7).collect::<Vec<_>>());
    assert_eq!(tag_of(got.last().unwrap()), "late-6");
}

#[tokio::test]
async fn verification_catches_an_edited_row_and_a_chain_cut_short() {
    let url = cluster().database("chain_tamper").await;
    let log = EventLog::open(&url, "node-4", StoreOptions::default())
        .await
        .unwrap();
    let events: Vec<AuditEvent> = (0..20).map(|i| tagged(&format!("t{i}"), i)).collect();
    log.append(events).await.unwrap();
    assert!(log.verify(&[], None, &mut |_| {}).await.unwrap().ok);

    let db = connect(&url).await;
    db.execute("UPDATE events SET action = 'tampered' WHERE seq = 7", &[])
        .await
        .unwrap();
    let report = log.verify(&[], None, &mut |_| {}).await.unwrap();
    let b = report.first_break.expect("an edited row breaks the chain");
    assert_eq!(
        (b.seq, b.fault),
        (Seq(7), trailwatch::store::chain::Fault::Edited)
    );
    assert_eq!(report.checked, 6);

    // Put back exactly, then cut the newest rows.
    let original = tagged("t6", 6).action;
    db.execute("UPDATE events SET action = $1 WHERE seq = 7", &[&original])
        .await
        .unwrap();
    assert!(log.verify(&[], None, &mut |_| {}).await.unwrap().ok);
    db.execute("DELETE FROM events WHERE seq > 17", &[])
        .await
        .unwrap();
    let report = log.verify(&[], None, &mut |_| {}).await.unwrap();
    let b = report.first_break.expect("a chain cut short is caught");
    assert_eq!(
        (b.seq, b.fault),
        (Seq(18), trailwatch::store::chain::Fault::Truncated)
    );
}

/// Runs the `trailwatch` binary; its exit code, stdout and stderr.
fn trailwatch(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_trailwatch"))
        .args(args)
        .env_remove("TRAILWATCH_DATABASE_URL")
        .env_remove("TRAILWATCH_DATA_DIR")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migrated_sqlite_directory_verifies_on_postgresql_and_its_chain_continues_there() {
    use trailwatch::store::{RetentionPolicy, Store};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    // Forty events old enough for retention to remove, then two hundred that stay.
    let old: Vec<AuditEvent> = (0..40)
        .map(|i| {
            let mut e = tagged(&format!("old-{i}"), i);
            e.timestamp = DateTime::from_timestamp_millis(1_704_067_200_000 + i as i64).unwrap();
            e
        })
        .collect();
    store.append(old).await.unwrap();
    let new: Vec<AuditEvent> = (0..200).map(|i| tagged(&format!("new-{i}"), i)).collect();
    store.append(new).await.unwrap();
    assert!(store.erase("user-2").await.unwrap() > 0);
    let pruned = store
        .prune(RetentionPolicy::default(), chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(pruned.events, 40);
    assert_eq!(
        store
            .checkpoint_head(Duration::from_secs(20))
            .await
            .unwrap(),
        240
    );
    let on_sqlite = store.read_from(Seq(0), 1_000).await.unwrap();
    assert_eq!(on_sqlite.len(), 200);
    let rollups = store.with_rollups(rollup_picture).await.unwrap();
    drop(store);

    let url = cluster().database("migrated").await;
    let data_dir = dir.path().to_str().unwrap();
    let (code, out, err) = trailwatch(&["migrate", "--to", &url, "--data-dir", data_dir]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("copied 200 events (head seq 240)"), "{out}");
    assert!(
        out.contains("chain OK: 200 events, head seq 240")
            && out.contains("1 signed checkpoints match")
            && out.contains("40 events removed by signed retention"),
        "{out}"
    );

    // Every event reads back exactly as SQLite held it, erased fields included, and the
    // next event continues the chain.
    let log = EventLog::open(&url, "node-5", StoreOptions::default())
        .await
        .unwrap();
    assert_eq!(log.read_from(Seq(0), 1_000).await.unwrap(), on_sqlite);
    assert_eq!(log.with_rollups(rollup_picture).await.unwrap(), rollups);
    let receipt = log.append(vec![tagged("after", 1)]).await.unwrap();
    assert_eq!(receipt.first_seq, Seq(241));
    let public_key = dir.path().join("checkpoint.pub");
    let public_key = public_key.to_str().unwrap();
    let (code, out, err) = trailwatch(&["verify", "--database", &url, "--public-key", public_key]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("chain OK: 201 events, head seq 241"), "{out}");

    // A second copy into a database that holds events is refused.
    let (code, _, err) = trailwatch(&["migrate", "--to", &url, "--data-dir", data_dir]);
    assert_eq!(code, 1);
    assert!(err.contains("already holds events"), "{err}");

    // An edit on the copy is caught, and a checkpoint not signed by the key is not trusted.
    let db = connect(&url).await;
    db.execute(
        "UPDATE events SET description = 'rewritten' WHERE seq = 100",
        &[],
    )
    .await
    .unwrap();
    let (code, out, _) = trailwatch(&["verify", "--database", &url, "--public-key", public_key]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("chain BROKEN at seq 100: Edited"), "{out}");
    db.execute("UPDATE checkpoints SET seq = 239", &[])
        .await
        .unwrap();
    let (code, out, _) = trailwatch(&["verify", "--database", &url, "--public-key", public_key]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("checkpoints UNTRUSTED"), "{out}");
}

/// The same random events appended to an SQLite store and to a PostgreSQL log, and each
/// store's copy of them, in seq order.
async fn both_backends(
    name: &str,
    n: usize,
) -> (
    tempfile::TempDir,
    trailwatch::store::Store,
    EventLog,
    Vec<StoredEvent>,
) {
    use common::random::{self, Rng};
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        durable: false,
        ..StoreOptions::default()
    };
    let sqlite = trailwatch::store::Store::open(dir.path(), options.clone()).unwrap();
    let url = cluster().database(name).await;
    let pg = EventLog::open(&url, "node-6", options).await.unwrap();
    let mut rng = Rng::new(7);
    let events: Vec<AuditEvent> = (0..n).map(|i| random::event(&mut rng, i)).collect();
    for chunk in events.chunks(100) {
        sqlite.append(chunk.to_vec()).await.unwrap();
        pg.append(chunk.to_vec()).await.unwrap();
    }
    let on_sqlite = sqlite.read_from(Seq(0), n + 1).await.unwrap();
    let on_pg = pg.read_from(Seq(0), n + 1).await.unwrap();
    assert_eq!(on_pg.len(), n);
    // Sealed alike: the same seqs, and the same events, risk scores and reasons included
    // (ids, arrival times and so hashes are each store's own).
    for (a, b) in on_sqlite.iter().zip(&on_pg) {
        assert_eq!((a.seq, &a.event), (b.seq, &b.event));
    }
    (dir, sqlite, pg, on_pg)
}

fn every(limit: u32) -> trailwatch::store::PageRequest {
    trailwatch::store::PageRequest {
        order: trailwatch::model::EventOrder::ARRIVAL,
        cursor: None,
        page: 1,
        limit,
        count_limit: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_filter_answers_on_postgresql_as_on_sqlite_and_as_the_reference_matcher() {
    use common::random::{self, Rng};
    use trailwatch::store::DistinctField;
    const N: usize = 700;
    let (_dir, sqlite, pg, events) = both_backends("conformance", N).await;
    let mut rng = Rng::new(99);
    let mut proper = 0;
    for round in 0..400 {
        let filter = random::filter(&mut rng, N);
        let query = filter.compile().unwrap();
        let want: Vec<u64> = events
            .iter()
            .rev()
            .filter(|e| query.matches(e))
            .map(|e| e.seq.0)
            .collect();
        let page = pg.query(&query, every(1000)).await.unwrap();
        let got: Vec<u64> = page.items.iter().map(|e| e.seq.0).collect();
        assert_eq!(got, want, "round {round}: {filter:?}");
        assert_eq!(page.total, want.len() as u64, "round {round}: {filter:?}");
        let on_sqlite = sqlite.query(query.clone(), every(1000)).await.unwrap();
        assert_eq!(
            on_sqlite.items.iter().map(|e| e.seq.0).collect::<Vec<_>>(),
            got,
            "round {round}: {filter:?}"
        );
        proper += usize::from(!want.is_empty() && want.len() < N);

        // Each order, both ways, by the shared comparator, as on SQLite.
        let order = random::order(round);
        let sorted = random::sorted(&events, &query, order);
        let ordered =
            |req: trailwatch::store::PageRequest| trailwatch::store::PageRequest { order, ..req };
        let page = pg.query(&query, ordered(every(1000))).await.unwrap();
        let got: Vec<u64> = page.items.iter().map(|e| e.seq.0).collect();
        assert_eq!(got, sorted, "round {round} {order:?}: {filter:?}");
        let on_sqlite = sqlite
            .query(query.clone(), ordered(every(1000)))
            .await
            .unwrap();
        assert_eq!(
            on_sqlite.items.iter().map(|e| e.seq.0).collect::<Vec<_>>(),
            sorted,
            "round {round} {order:?} on SQLite: {filter:?}"
        );

        if round % 4 == 0 {
            // Keyset pages of 13 walk the same list with no gap and no repeat.
            let mut walked = Vec::new();
            let mut cursor = None;
            loop {
                let req = trailwatch::store::PageRequest {
                    cursor,
                    ..ordered(every(13))
                };
                let page = pg.query(&query, req).await.unwrap();
                walked.extend(page.items.iter().map(|e| e.seq.0));
                match page.next_cursor {
                    Some(c) => cursor = Some(trailwatch::store::Cursor::parse(&c, order).unwrap()),
                    None => break,
                }
            }
            assert_eq!(
                walked, sorted,
                "round {round} {order:?} by cursor: {filter:?}"
            );
            let exported = pg
                .for_each_matching(&query, order, Vec::new(), |all, e| {
                    all.push(e.seq.0);
                    true
                })
                .await
                .unwrap();
            assert_eq!(
                exported, sorted,
                "round {round} {order:?} export: {filter:?}"
            );
            // Live catch-up from the middle, oldest first, and every match for an export.
            let after = Seq(N as u64 / 2);
            let (items, reached) = pg.matching_from(&query, after, 1000).await.unwrap();
            let mut tail: Vec<u64> = want.iter().copied().filter(|s| *s > after.0).collect();
            tail.reverse();
            assert_eq!(items.iter().map(|e| e.seq.0).collect::<Vec<_>>(), tail);
            assert_eq!(reached, Seq(N as u64));
            let exported = pg
                .for_each_matching(&query, EventOrder::ARRIVAL, Vec::new(), |all, e| {
                    all.push(e.seq.0);
                    true
                })
                .await
                .unwrap();
            assert_eq!(exported, want, "round {round} export: {filter:?}");
        }
    }
    assert!(
        proper > 150,
        "only {proper} filters selected a proper subset"
    );

    // A capped count stops at the cap and says so.
    let everything = trailwatch::search::Query::parse("-user:nobody").unwrap();
    let capped = pg
        .query(
            &everything,
            trailwatch::store::PageRequest {
                count_limit: Some(100),
                ..every(10)
            },
        )
        .await
        .unwrap();
    assert_eq!((capped.total, capped.total_is_lower_bound), (100, true));
    // Under the cap, counted over several fetches, the count is exact.
    let under = pg
        .query(
            &everything,
            trailwatch::store::PageRequest {
                count_limit: Some(10_000),
                ..every(10)
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (under.total, under.total_is_lower_bound),
        (events.len() as u64, false)
    );

    // The running totals and the distinct values agree.
    assert_eq!(
        pg.counters().await.unwrap(),
        sqlite.counters().await.unwrap()
    );
    for field in [
        DistinctField::Level,
        DistinctField::Category,
        DistinctField::Action,
    ] {
        assert_eq!(
            pg.distinct(field).await.unwrap(),
            sqlite.distinct(field).await.unwrap(),
            "{field:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_erasure_answer_on_postgresql_as_on_sqlite() {
    use common::random::{self, Rng};
    use trailwatch::store::Concerning;
    const N: usize = 300;
    let (_dir, sqlite, pg, events) = both_backends("reads", N).await;
    let seqs = |v: &[StoredEvent]| v.iter().map(|e| e.seq.0).collect::<Vec<_>>();

    // The dashboard's snapshot: the newest events and the totals, alike.
    let (a, b) = (
        sqlite.snapshot(20).await.unwrap(),
        pg.snapshot(20).await.unwrap(),
    );
    assert_eq!(seqs(&a.events), seqs(&b.events));
    assert_eq!(a.counters, b.counters);

    // An event by its id, its seal checked in place, and its relatives.
    for e in events.iter().step_by(37) {
        let found = pg.get(&e.event_id).await.unwrap().unwrap();
        assert_eq!(&found, e);
        let on_pg = pg.detail(&e.event_id, 5).await.unwrap().unwrap();
        assert!(on_pg.seal.verified, "{:?}", on_pg.seal);
        assert_eq!(on_pg.seal.hash, e.hash);
        let sqlite_id = sqlite.read_from(Seq(e.seq.0 - 1), 1).await.unwrap()[0]
            .event_id
            .clone();
        let on_sqlite = sqlite.detail(sqlite_id, 5).await.unwrap().unwrap();
        assert_eq!(
            seqs(&on_pg.same_correlation),
            seqs(&on_sqlite.same_correlation)
        );
        assert_eq!(seqs(&on_pg.same_session), seqs(&on_sqlite.same_session));
    }
    let unknown = trailwatch::model::EventId("0190f0c8-0000-7000-8000-000000000000".into());
    assert_eq!(pg.get(&unknown).await.unwrap(), None);

    // A data subject's events, then its erasure.
    let subject = events[0].event.user.id.clone();
    for concerning in [Concerning::Actor, Concerning::ActorOrEntity] {
        assert_eq!(
            seqs(&pg.subject_events(&subject, concerning).await.unwrap()),
            seqs(&sqlite.subject_events(&subject, concerning).await.unwrap()),
        );
    }
    let erased = pg.erase(&subject).await.unwrap();
    assert!(erased > 0);
    assert_eq!(sqlite.erase(&subject).await.unwrap(), erased);
    assert!(pg
        .subject_events(&subject, Concerning::Actor)
        .await
        .unwrap()
        .is_empty());
    let (a, b) = (
        sqlite.read_from(Seq(0), N + 1).await.unwrap(),
        pg.read_from(Seq(0), N + 1).await.unwrap(),
    );
    for (a, b) in a.iter().zip(&b) {
        assert_eq!((a.seq, &a.event), (b.seq, &b.event), "blanked alike");
    }
    // Nothing of the subject is found by its name any more, and other queries agree.
    let by_name = trailwatch::search::Query::parse(&format!("\"{subject} smith\"")).unwrap();
    assert_eq!(pg.query(&by_name, every(10)).await.unwrap().total, 0);
    let mut rng = Rng::new(5);
    for round in 0..60 {
        let query = random::filter(&mut rng, N).compile().unwrap();
        let (a, b) = (
            sqlite.query(query.clone(), every(1000)).await.unwrap(),
            pg.query(&query, every(1000)).await.unwrap(),
        );
        assert_eq!(seqs(&a.items), seqs(&b.items), "round {round}");
    }
    assert!(pg.verify(&[], None, &mut |_| {}).await.unwrap().ok);

    // The subject's next event is sealed with a new salt, and scored as SQLite scores it:
    // both forgot its history.
    let next: Vec<AuditEvent> = (0..3).map(|i| random::event(&mut rng, N + i)).collect();
    let mut next = next;
    for e in &mut next {
        e.user.id = subject.clone();
        e.risk_score = None;
    }
    sqlite.append(next.clone()).await.unwrap();
    pg.append(next).await.unwrap();
    let (a, b) = (
        sqlite.read_from(Seq(N as u64), 10).await.unwrap(),
        pg.read_from(Seq(N as u64), 10).await.unwrap(),
    );
    assert_eq!(b.len(), 3);
    for (a, b) in a.iter().zip(&b) {
        assert_eq!(a.event, b.event);
    }
    assert!(pg.verify(&[], None, &mut |_| {}).await.unwrap().ok);
}

/// Waits (polling the database, at most 20 s) until `check` holds.
async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_at_a_time_signs_checkpoints_and_another_takes_over_when_it_dies() {
    use trailwatch::store::postgres::checkpoints::{self, Duty, LEASE};
    let url = cluster().database("checkpoint_duty").await;
    let a = EventLog::open(&url, "node-7", StoreOptions::default())
        .await
        .unwrap();
    let b = EventLog::open(&url, "node-8", StoreOptions::default())
        .await
        .unwrap();
    let db = connect(&url).await;
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let duty = Duty {
        every: Duration::from_millis(100),
        lease: Duration::from_secs(1),
        events: 50,
        max_age: Duration::from_millis(300),
    };
    let holder = || async {
        postgres::holder(&connect(&url).await, LEASE)
            .await
            .unwrap()
            .map(|h| h.holder)
    };
    let covered = || async {
        let seq: Option<i64> = connect(&url)
            .await
            .query_one("SELECT max(seq) FROM checkpoints", &[])
            .await
            .unwrap()
            .get(0);
        seq.unwrap_or(0)
    };
    let duty_a = tokio::spawn(checkpoints::run(
        a.clone(),
        "node-a".into(),
        key.clone(),
        duty,
    ));
    until("node-a takes the duty", || async {
        holder().await.as_deref() == Some("node-a")
    })
    .await;
    let duty_b = tokio::spawn(checkpoints::run(
        b.clone(),
        "node-b".into(),
        key.clone(),
        duty,
    ));

    for i in 0..6 {
        let node = if i % 2 == 0 { &a } else { &b };
        let events = (0..20).map(|j| tagged(&format!("c{i}-{j}"), j)).collect();
        node.append(events).await.unwrap();
    }
    until("the head is signed", || async { covered().await == 120 }).await;
    assert_eq!(
        holder().await.as_deref(),
        Some("node-a"),
        "one signer at a time"
    );

    // The checkpoints verify under the public key, and the chain meets them.
    let stored = postgres::stored_checkpoints(&db).await.unwrap();
    assert!(!stored.is_empty());
    trailwatch::store::checkpoint::all_signed_by(&stored, &key.verifying_key()).unwrap();
    let report = a
        .verify(&stored, Some(&key.verifying_key()), &mut |_| {})
        .await
        .unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.checkpoints, stored.len() as u64);

    // The signing node dies without giving the lease up: once it runs out, the other node
    // takes the duty and signs the heads that follow.
    duty_a.abort();
    let events = (0..30).map(|j| tagged(&format!("after-{j}"), j)).collect();
    b.append(events).await.unwrap();
    until("node-b takes the duty", || async {
        holder().await.as_deref() == Some("node-b")
    })
    .await;
    until("node-b signs the new head", || async {
        covered().await == 150
    })
    .await;
    duty_b.abort();
}

#[tokio::test]
async fn each_node_keeps_its_own_tail_cursors_with_the_lines_they_stored() {
    use trailwatch::store::cursor::TailCursor;
    let url = cluster().database("tail_cursors").await;
    let a = EventLog::open(&url, "web-1", StoreOptions::default())
        .await
        .unwrap();
    let b = EventLog::open(&url, "web-2", StoreOptions::default())
        .await
        .unwrap();
    let cursor = |offset: u64, lines: u64| TailCursor {
        source: "/var/log/app/audit.log".into(),
        dev: 2049,
        ino: 1_234_567,
        offset,
        fingerprint: [9; 32],
        fp_len: 41,
        lines,
    };
    assert_eq!(a.tail_cursor("/var/log/app/audit.log").await.unwrap(), None);
    let lines: Vec<AuditEvent> = (0..3).map(|i| tagged(&format!("line-{i}"), i)).collect();
    let receipt = a.append_tailed(lines, cursor(123, 3)).await.unwrap();
    assert_eq!(receipt.accepted, 3);
    assert_eq!(
        a.tail_cursor("/var/log/app/audit.log").await.unwrap(),
        Some(cursor(123, 3))
    );
    // Another node's files are its own, even at the same path.
    assert_eq!(b.tail_cursor("/var/log/app/audit.log").await.unwrap(), None);
    // Lines that stored nothing (blank ones) still move the cursor; a node restarted under
    // its name finds it.
    a.append_tailed(Vec::new(), cursor(130, 3)).await.unwrap();
    drop(a);
    let again = EventLog::open(&url, "web-1", StoreOptions::default())
        .await
        .unwrap();
    assert_eq!(
        again.tail_cursor("/var/log/app/audit.log").await.unwrap(),
        Some(cursor(130, 3))
    );
    assert_eq!(again.head().await.unwrap(), Seq(3));
}

/// Everything analytics read from the rollups, over every hour of the random events.
fn rollup_picture(
    r: &trailwatch::store::rollup::Reader<'_, '_>,
) -> Result<String, trailwatch::store::StoreError> {
    use trailwatch::store::rollup::Dimension;
    let (from_min, to_min) = (29_000_000, 30_000_000);
    let (from_hour, to_hour) = (from_min / 60, to_min / 60);
    let mut out = format!(
        "{:?}\n{:?}\n{:?}\n",
        r.minutes(from_min, to_min)?,
        r.tally(from_min + 7, to_min - 3)?,
        r.users(from_hour, to_hour, 3)?,
    );
    let mut user_hours = r.user_hours(from_hour, to_hour)?;
    user_hours.sort();
    out += &format!("{user_hours:?}\n");
    for dim in [
        Dimension::Level,
        Dimension::Category,
        Dimension::Outcome,
        Dimension::Action,
        Dimension::DeniedAction,
        Dimension::Source,
    ] {
        out += &format!(
            "{:?}\n{:?}\n",
            r.values(dim, from_hour, to_hour, 5)?,
            r.series(dim, from_hour, to_hour)?
        );
    }
    let critical: Vec<u64> = r
        .recent_critical(0, i64::MAX, 10)?
        .iter()
        .map(|e| e.seq.0)
        .collect();
    let failures: Vec<(i64, String)> = r
        .auth_failures(0)?
        .into_iter()
        .map(|(ms, user, _)| (ms, user))
        .collect();
    out += &format!("{critical:?}\n{failures:?}\n{:?}", r.head()?);
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_read_the_same_rollups_from_postgresql_as_from_sqlite() {
    let (_dir, sqlite, pg, events) = both_backends("rollups", 700).await;
    let on_sqlite = sqlite.with_rollups(rollup_picture).await.unwrap();
    let on_pg = pg.with_rollups(rollup_picture).await.unwrap();
    assert_eq!(on_pg, on_sqlite);
    assert!(on_pg.contains(&format!("Seq({})", events.len())), "{on_pg}");

    // After an erasure the erased subject's counts are merged, alike.
    let subject = events[3].event.user.id.clone();
    sqlite.erase(&subject).await.unwrap();
    pg.erase(&subject).await.unwrap();
    let on_sqlite = sqlite.with_rollups(rollup_picture).await.unwrap();
    let on_pg = pg.with_rollups(rollup_picture).await.unwrap();
    assert_eq!(on_pg, on_sqlite);
    assert!(!on_pg.contains(&format!("\"{subject}\"")), "{on_pg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_removes_on_postgresql_what_it_removes_on_sqlite_and_the_chain_still_verifies() {
    use trailwatch::store::RetentionPolicy;
    let (_dir, sqlite, pg, events) = both_backends("retention", 700).await;
    let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
    // The random events are months old: kept only when critical or about security.
    let policy = RetentionPolicy {
        days: 30,
        ..RetentionPolicy::default()
    };
    let now = chrono::Utc::now();
    let on_sqlite = sqlite.prune(policy.clone(), now).await.unwrap();
    let on_pg = pg.prune(&key, &policy, now).await.unwrap();
    assert!(on_pg.events > 100 && on_pg.events < 700, "{on_pg:?}");
    assert_eq!(
        (on_pg.events, on_pg.seqs.clone()),
        (on_sqlite.events, on_sqlite.seqs.clone())
    );

    let seqs = |v: Vec<StoredEvent>| v.iter().map(|e| e.seq.0).collect::<Vec<_>>();
    let left = seqs(pg.read_from(Seq(0), 1_000).await.unwrap());
    assert_eq!(left, seqs(sqlite.read_from(Seq(0), 1_000).await.unwrap()));
    assert_eq!(left.len() as u64, events.len() as u64 - on_pg.events);
    assert_eq!(
        pg.counters().await.unwrap(),
        sqlite.counters().await.unwrap()
    );
    assert_eq!(
        pg.with_rollups(rollup_picture).await.unwrap(),
        sqlite.with_rollups(rollup_picture).await.unwrap()
    );
    let report = pg
        .verify(&[], Some(&key.verifying_key()), &mut |_| {})
        .await
        .unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.pruned, on_pg.events);
    // Without the key that signed the records, the gaps are not accepted.
    let other = ed25519_dalek::SigningKey::from_bytes(&[4; 32]).verifying_key();
    let report = pg.verify(&[], Some(&other), &mut |_| {}).await.unwrap();
    assert_eq!(
        report.first_break.map(|b| b.fault),
        Some(trailwatch::store::chain::Fault::Deleted)
    );
    // A second run finds nothing more.
    assert_eq!(pg.prune(&key, &policy, now).await.unwrap().events, 0);
}

/// The partitions `events` has now.
async fn partitions_of_events(db: &tokio_postgres::Client) -> Vec<String> {
    db.query(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'events'",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get::<_, String>(0))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_drops_a_whole_expired_month_partition_under_one_signed_record() {
    use trailwatch::store::postgres::partition;
    use trailwatch::store::RetentionPolicy;
    let url = cluster().database("retention_partition").await;
    let log = EventLog::open(&url, "node-1", StoreOptions::default())
        .await
        .unwrap();
    let key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
    // 2024-01-10: long expired.
    let old_ms = 1_704_844_800_000;
    let old: Vec<AuditEvent> = (0..30)
        .map(|i| {
            let mut e = tagged(&format!("old-{i}"), i);
            e.timestamp = DateTime::from_timestamp_millis(old_ms + i as i64).unwrap();
            e
        })
        .collect();
    log.append(old).await.unwrap();
    log.append((0..10).map(|i| tagged(&format!("new-{i}"), i)).collect())
        .await
        .unwrap();
    // As if they had arrived in January 2024: they move to that month's partition (their
    // hashes no longer match, but they are about to go, and the record keeps the links).
    let mut db = connect(&url).await;
    partition::ensure(&mut db, old_ms).await.unwrap();
    db.execute(
        "UPDATE events SET received_at = $1 WHERE seq <= 30",
        &[&old_ms],
    )
    .await
    .unwrap();
    assert!(partitions_of_events(&db)
        .await
        .contains(&"events_2024_01".to_string()));

    let pruned = log
        .prune(&key, &RetentionPolicy::default(), chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!((pruned.events, pruned.records, pruned.ranges), (30, 1, 1));
    assert!(pruned.freed_bytes > 0, "{pruned:?}");
    assert!(!partitions_of_events(&db)
        .await
        .contains(&"events_2024_01".to_string()));
    let left = log.read_from(Seq(0), 100).await.unwrap();
    assert_eq!(left.first().map(|e| e.seq), Some(Seq(31)));
    assert_eq!(log.counters().await.unwrap().total, 10);
    let report = log
        .verify(&[], Some(&key.verifying_key()), &mut |_| {})
        .await
        .unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!((report.pruned, report.checked), (30, 10));
}

/// Saved views through two handles (two nodes, or one SQLite file twice): what one saves,
/// replaces or deletes, the other sees.
async fn views_behave(a: trailwatch::views::SavedViews, b: trailwatch::views::SavedViews) {
    let saved = a
        .save("Denied today".into(), "?outcome=denied".into())
        .await
        .unwrap();
    b.save("Alice".into(), "?user_id=alice".into())
        .await
        .unwrap();
    let names: Vec<String> = b
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.name)
        .collect();
    assert_eq!(names, ["Alice", "Denied today"]);
    let replaced = b
        .save("Denied today".into(), "?outcome=denied&level=error".into())
        .await
        .unwrap();
    assert_eq!(replaced.id, saved.id, "same name, same view");
    let listed = a.list().await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[1].query, "?outcome=denied&level=error");
    assert!(matches!(
        a.save(" ".into(), "?q=x".into()).await,
        Err(trailwatch::views::ViewError::Invalid(m)) if m.starts_with("name:")
    ));
    assert!(matches!(
        a.save("x".into(), "not a query".into()).await,
        Err(trailwatch::views::ViewError::Invalid(m)) if m.starts_with("query:")
    ));
    assert!(b.delete(saved.id).await.unwrap());
    assert!(!a.delete(saved.id).await.unwrap());
    assert_eq!(a.list().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saved_views_behave_alike_on_both_backends_and_are_shared_by_every_node() {
    let dir = tempfile::tempdir().unwrap();
    let on_sqlite = trailwatch::views::SavedViews::open(dir.path()).unwrap();
    views_behave(on_sqlite.clone(), on_sqlite).await;

    let (_, a, b) = two_nodes("views").await;
    views_behave(
        trailwatch::views::SavedViews::on(a.db()),
        trailwatch::views::SavedViews::on(b.db()),
    )
    .await;
}

fn by_session(value: &str) -> trailwatch::auth::Presented<'_> {
    trailwatch::auth::Presented {
        bearer: None,
        session: Some(value),
        query_token: None,
    }
}

fn by_bearer(token: &str) -> trailwatch::auth::Presented<'_> {
    trailwatch::auth::Presented {
        bearer: Some(token),
        session: None,
        query_token: None,
    }
}

/// Sign-in, sessions and tokens through two handles (two nodes, or one SQLite file): a
/// session made on one is valid on the other, a token revoked or a user disabled on one is
/// refused by the other at its next request.
async fn auth_behaves(a: trailwatch::auth::Auth, b: trailwatch::auth::Auth) {
    use trailwatch::auth::users::{self, NewUser};
    use trailwatch::auth::{tokens, Role};
    let alice = NewUser {
        name: "alice".into(),
        role: Role::Auditor,
        subject: Some("u-alice".into()),
        password: "a long enough password".into(),
    };
    a.with_users(move |s| users::create(s, &alice, true))
        .await
        .unwrap();
    assert!(b
        .authenticate("alice", "not her password".into())
        .await
        .unwrap()
        .is_none());
    let member = b
        .authenticate("alice", "a long enough password".into())
        .await
        .unwrap()
        .expect("her password on the other handle");
    assert_eq!(
        (member.role, member.subject.as_str()),
        (Role::Auditor, "u-alice")
    );
    let cookie = b.create_session(Some(&member)).await.unwrap();
    let who = a
        .check(by_session(&cookie))
        .await
        .unwrap()
        .expect("valid everywhere");
    assert_eq!(who.name, "alice");

    let (_, secret) = b
        .with_tokens(|s| tokens::create(s, "shipper", tokens::Scope::Ingest, true))
        .await
        .unwrap();
    assert_eq!(
        a.check(by_bearer(&secret)).await.unwrap().map(|p| p.name),
        Some("shipper".to_string())
    );
    assert!(b
        .with_tokens(|s| tokens::revoke(s, "shipper", true))
        .await
        .unwrap());
    assert_eq!(
        a.check(by_bearer(&secret)).await.unwrap(),
        None,
        "revoked everywhere"
    );
    let listed = a.with_tokens(tokens::list).await.unwrap();
    assert!(listed[0].revoked_at.is_some());

    let (_, ended) = a
        .with_users(|s| users::disable(s, "alice", true))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ended.len(), 1, "her session ended with her");
    assert_eq!(b.check(by_session(&cookie)).await.unwrap(), None);
    assert!(b
        .authenticate("alice", "a long enough password".into())
        .await
        .unwrap()
        .is_none());
    a.end_session("no such session").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_sessions_and_tokens_behave_alike_on_both_backends_and_hold_on_every_node() {
    let dir = tempfile::tempdir().unwrap();
    let on_sqlite = trailwatch::auth::Auth::open(dir.path(), "admin-secret").unwrap();
    auth_behaves(on_sqlite.clone(), on_sqlite).await;

    let (_, a, b) = two_nodes("auth").await;
    auth_behaves(
        trailwatch::auth::Auth::on(a.db(), "admin-secret"),
        trailwatch::auth::Auth::on(b.db(), "admin-secret"),
    )
    .await;
}

/// The alert log through `alerts` over `db` (the same database): an alert as a node raising
/// it stores it, listed, acknowledged once, and its subject erased from it.
async fn alert_log_behaves(alerts: trailwatch::alerts::Alerts, db: trailwatch::store::sql::Db) {
    let event = serde_json::to_string(&StoredEvent {
        seq: Seq(1),
        event_id: trailwatch::model::EventId("e1".into()),
        received_at: DateTime::from_timestamp_millis(1_770_000_000_000).unwrap(),
        hash: "00".into(),
        event: tagged("alert", 3),
    })
    .unwrap();
    let subject = tagged("alert", 3).user.id;
    let message = format!("5 denials by {subject} within a minute");
    let id = db
        .transaction(move |s| {
            s.query_one(
                "INSERT INTO alerts (rule, severity, message, event, count, first_at, last_at)
                 VALUES ('burst', 'critical', ?1, ?2, 5, 1, 2) RETURNING id",
                &[&message, &event],
            )?
            .int(0)
        })
        .await
        .map_err(|e: trailwatch::store::sql::SqlError| e.to_string())
        .unwrap() as u64;
    let listed = alerts.list(10, true).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].id, listed[0].count), (id, 5));
    let acked = alerts.acknowledge(id, 1_000).await.unwrap().unwrap();
    assert_eq!(acked.acknowledged_at, Some(1_000));
    let again = alerts.acknowledge(id, 2_000).await.unwrap().unwrap();
    assert_eq!(
        again.acknowledged_at,
        Some(1_000),
        "the first acknowledgement stands"
    );
    assert!(alerts.list(10, true).await.unwrap().is_empty());
    assert_eq!(alerts.acknowledge(id + 99, 1).await.unwrap(), None);
    assert!(alerts.deliveries(id).await.unwrap().is_empty());
    let rewritten = alerts
        .erase_subject(&subject, vec![subject.clone()], Vec::new())
        .await
        .unwrap();
    assert_eq!(rewritten, 1);
    let erased = &alerts.list(10, false).await.unwrap()[0];
    assert_eq!(erased.message, "5 denials by [erased] within a minute");
    assert_eq!(erased.event.as_ref().unwrap().event.user.id, "[erased]");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alert_log_behaves_alike_on_both_backends() {
    use std::sync::{Arc, Mutex};
    use trailwatch::alerts::{AlertConfig, Alerts, ALERTS_FILE};
    use trailwatch::live::{Hub, LiveConfig};
    use trailwatch::store::sql::Db;
    let dir = tempfile::tempdir().unwrap();
    // Alerts announce on a hub; it needs a store, whichever backend keeps the alerts.
    let store = trailwatch::store::Store::open(dir.path(), StoreOptions::default()).unwrap();
    let hub = Hub::start(store, LiveConfig::default());

    let on_sqlite = Alerts::open(dir.path(), AlertConfig::default(), hub.clone()).unwrap();
    let file = rusqlite::Connection::open(dir.path().join(ALERTS_FILE)).unwrap();
    alert_log_behaves(on_sqlite, Db::Sqlite(Arc::new(Mutex::new(file)))).await;

    let url = cluster().database("alerts").await;
    let log = EventLog::open(&url, "node-1", StoreOptions::default())
        .await
        .unwrap();
    alert_log_behaves(Alerts::on(log.db(), AlertConfig::default(), hub), log.db()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_revoked_on_one_node_ends_what_it_opened_on_another() {
    use trailwatch::auth::{tokens, Auth, Credential, REVOCATIONS};
    use trailwatch::store::postgres::Notice;
    let (_, a, b) = two_nodes("revocations").await;
    let (on_a, on_b) = (Auth::on(a.db(), "admin"), Auth::on(b.db(), "admin"));
    for (auth, node) in [(&on_a, &a), (&on_b, &b)] {
        let mut notices = node.notices(REVOCATIONS);
        assert_eq!(notices.recv().await, Some(Notice::Resumed), "listening");
        auth.follow_revocations(notices);
    }
    let (_, secret) = on_b
        .with_tokens(|s| tokens::create(s, "dashboard-feed", tokens::Scope::Read, true))
        .await
        .unwrap();
    // A socket on node 1 opened with the token waits for its revocation.
    let principal = on_a.check(by_bearer(&secret)).await.unwrap().unwrap();
    let revoked = tokio::spawn(on_a.revoked(&principal));
    // Revoked on node 2: the socket on node 1 ends, well within a second of it.
    assert!(on_b
        .with_tokens(|s| tokens::revoke(s, "dashboard-feed", true))
        .await
        .unwrap());
    let at = std::time::Instant::now();
    on_b.announce_revoked(Credential::Token("dashboard-feed".into()));
    tokio::time::timeout(Duration::from_secs(5), revoked)
        .await
        .expect("the revocation reached node 1")
        .unwrap();
    assert!(at.elapsed() < Duration::from_secs(1), "{:?}", at.elapsed());
    assert_eq!(on_a.check(by_bearer(&secret)).await.unwrap(), None);
}

/// What the server asks of its store, through the one interface it knows.
async fn store_behaves(store: trailwatch::store::Store) {
    use common::random::{self, Rng};
    use trailwatch::store::DistinctField;
    let mut rng = Rng::new(11);
    let events: Vec<AuditEvent> = (0..200).map(|i| random::event(&mut rng, i)).collect();
    let mut follow = store.follow().await.unwrap();
    for chunk in events.chunks(50) {
        store.append(chunk.to_vec()).await.unwrap();
    }
    let got = take(&mut follow, 200).await;
    assert_eq!(
        got.iter().map(|e| e.seq.0).collect::<Vec<_>>(),
        (1..=200).collect::<Vec<_>>()
    );
    assert_eq!(store.head().await.unwrap(), Seq(200));
    let mut head = store.head_watch();
    head.wait_for(|h| *h >= 200).await.unwrap();
    assert_eq!(store.committed_head(), Seq(200));
    assert!(store.is_writable());
    assert!(store.stats().events >= 200);

    let owner = got[0].event.user.id.clone();
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    for e in got.iter().filter(|e| e.event.user.id == owner) {
        *want.entry(e.event.level.as_str().to_string()).or_default() += 1;
    }
    let owned = store
        .distinct_owned(DistinctField::Level, &owner)
        .await
        .unwrap();
    let owned: BTreeMap<String, u64> = owned.into_iter().map(|v| (v.value, v.count)).collect();
    assert_eq!(owned, want);
    let page = store
        .query(
            trailwatch::search::Query::parse(&format!("user:{owner}")).unwrap(),
            every(500),
        )
        .await
        .unwrap();
    assert_eq!(page.total, want.values().sum::<u64>());
    let detail = store
        .detail(got[10].event_id.clone(), 3)
        .await
        .unwrap()
        .unwrap();
    assert!(detail.seal.verified);

    assert!(
        store
            .checkpoint_head(Duration::from_secs(20))
            .await
            .unwrap()
            >= 200
    );
    let report = store.verify().await.unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!((report.checked, report.checkpoints > 0), (200, true));
    let more = store
        .verify_from(report.head_seq, {
            let mut h = [0u8; 32];
            hex::decode_to_slice(&report.head_hash, &mut h).unwrap();
            h
        })
        .await
        .unwrap();
    assert!(more.ok && more.checked == 0, "{more:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_interface_serves_a_cluster_node_as_it_serves_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions::default();
    store_behaves(trailwatch::store::Store::open(dir.path(), options.clone()).unwrap()).await;

    let url = cluster().database("facade").await;
    let node_dir = tempfile::tempdir().unwrap();
    let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let store =
        trailwatch::store::Store::open_postgres(&url, "node-1", key, node_dir.path(), options)
            .await
            .unwrap();
    assert!(store.postgres().is_some() && store.shared_db().is_some());
    store_behaves(store).await;
}

/// A node of a cluster on `url`, with the cluster key in `key_file`.
async fn serve_node(url: &str, name: &str, key_file: &std::path::Path) -> common::TestServer {
    let (url, name, key_file) = (url.to_string(), name.to_string(), key_file.to_path_buf());
    common::TestServer::start_with(move |c| {
        c.cluster = Some(trailwatch::site::ClusterConfig {
            url,
            node: Some(name),
            key_file: Some(key_file),
        })
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_database_behave_as_one() {
    let url = cluster().database("serve_two").await;
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("cluster.key");
    std::fs::write(&key_file, hex::encode([21u8; 32])).unwrap();
    let a = serve_node(&url, "a", &key_file).await;
    let b = serve_node(&url, "b", &key_file).await;

    // A socket on node b streams what node a takes in.
    let mut ws = b.socket("").await;
    ws.subscribe(serde_json::json!({"type": "subscribe", "sinceSeq": 0}))
        .await;
    ws.events_until_ready().await;
    let (status, receipt) = a.post(&common::batch("from-a", 3)).await;
    assert_eq!(status, 201, "{receipt}");
    assert_eq!(ws.events(3).await, [1, 2, 3]);
    let (status, page) = b.get("/api/v1/events?q=from").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["total"], 3, "{page}");

    // A session made on node a is valid on node b.
    let cookie = a.admin_session().await;
    let r = b
        .http
        .get(b.url("/api/v1/events"))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // A token made on node a works on node b until node b revokes it; then node a refuses it.
    let (status, made) = a
        .http
        .post(a.url("/api/v1/tokens"))
        .bearer_auth(common::TOKEN)
        .json(&serde_json::json!({"name": "shipper", "scope": "ingest"}))
        .send()
        .await
        .map(|r| (r.status().as_u16(), r))
        .unwrap();
    assert_eq!(status, 201);
    let made: serde_json::Value = made.json().await.unwrap();
    let secret = made["token"].as_str().expect("the new token").to_string();
    let post_with = |s: &common::TestServer, token: &str| {
        s.http
            .post(s.url("/api/v1/events"))
            .bearer_auth(token)
            .json(&serde_json::json!({"action": "x", "user": "u"}))
            .send()
    };
    assert_eq!(post_with(&b, &secret).await.unwrap().status(), 201);
    let r = b
        .http
        .delete(b.url("/api/v1/tokens/shipper"))
        .bearer_auth(common::TOKEN)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(post_with(&a, &secret).await.unwrap().status(), 401);
    assert_eq!(
        ws.events(1).await,
        [4],
        "later events, from either node, reach node b in order"
    );

    // Settings saved on node a apply on node b within a second or two.
    let (status, page) = a
        .call_fn("/api/fn/settings", &cookie, &serde_json::json!({}))
        .await;
    assert_eq!(status, 200, "{page}");
    let mut next = page["current"].clone();
    let days = next["retentionDays"].as_u64().unwrap() + 17;
    next["retentionDays"] = days.into();
    let cookie_b = b.admin_session().await;
    let (status, saved) = a
        .call_fn(
            "/api/fn/save_settings",
            &cookie,
            &serde_json::json!({ "settings": next }),
        )
        .await;
    assert_eq!(status, 200, "{saved}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, on_b) = b
            .call_fn("/api/fn/settings", &cookie_b, &serde_json::json!({}))
            .await;
        if on_b["current"]["retentionDays"] == days {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "node b still runs {on_b}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // One node runs the background chain check; both show its result.
    let (_, head) = b.get("/api/v1/events?limit=1").await;
    let head = head["headSeq"].as_u64().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    for node in [&a, &b] {
        loop {
            let (status, chain) = node.get("/api/v1/chain").await;
            assert_eq!(status, 200, "{chain}");
            assert!(chain["brokenAt"].is_null(), "{chain}");
            if chain["verifiedThrough"].as_u64().unwrap_or(0) >= head {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "not checked: {chain}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let checkers = connect(&url)
        .await
        .query("SELECT holder FROM leases WHERE name = 'chain-check'", &[])
        .await
        .unwrap();
    assert_eq!(checkers.len(), 1, "one node checks the chain");
}
