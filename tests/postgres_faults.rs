//! PostgreSQL going away under ingest, against a throwaway cluster of this test binary's own
//! (stopping it would disturb the other PostgreSQL tests): appends are refused while it is
//! down, nothing acknowledged is lost, and two nodes recover by themselves when it returns.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.
#![cfg(feature = "ssr")]

mod common;

use common::postgres::cluster;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use trailwatch::model::Seq;
use trailwatch::store::StoreError;

/// Held by each test for its whole run: they stop and start the one cluster this binary has.
static OUTAGE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What the writers have seen so far.
#[derive(Clone, Debug, Default)]
struct Tally {
    acknowledged: BTreeSet<String>,
    refused: u64,
    /// Events of refused appends: a commit whose answer was lost with the session may have
    /// landed, as with any database client; they may be stored, once at most.
    in_doubt: BTreeSet<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_postgresql_is_down_appends_are_refused_and_nothing_acknowledged_is_lost() {
    let _turn = OUTAGE.lock().await;
    let cluster = cluster();
    let (_, a, b) = common::postgres::two_nodes("faults").await;
    let mut follow = b.follow_from(Seq(0));

    // Two writers, one per node, appending three events at a time until told to stop.
    let (tally_tx, mut tally) = watch::channel(Tally::default());
    let tally_tx = Arc::new(tally_tx);
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for (name, node) in [("a", a.clone()), ("b", b.clone())] {
        let (tally_tx, stop) = (tally_tx.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let tags: Vec<String> = (0..3).map(|i| format!("{name}-{n}-{i}")).collect();
                n += 1;
                let events = tags.iter().map(|t| common::tagged(t, n)).collect();
                match node.append(events).await {
                    Ok(_) => tally_tx.send_modify(|t| t.acknowledged.extend(tags)),
                    Err(StoreError::Unreachable(_)) => {
                        tally_tx.send_modify(|t| {
                            t.refused += 1;
                            t.in_doubt.extend(tags);
                        });
                        // Not a busy loop against a refused port while the database is away.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Err(other) => panic!("{name}: expected success or unreachable, got {other}"),
                }
            }
        }));
    }

    let wait = Duration::from_secs(60);
    let before = tokio::time::timeout(wait, tally.wait_for(|t| t.acknowledged.len() >= 60))
        .await
        .unwrap()
        .unwrap()
        .acknowledged
        .len();
    cluster.stop_server();
    tokio::time::timeout(wait, tally.wait_for(|t| t.refused >= 10))
        .await
        .expect("appends are refused while the database is down")
        .unwrap();
    let during = tally.borrow().acknowledged.len();
    cluster.start_server();
    tokio::time::timeout(
        wait,
        tally.wait_for(|t| t.acknowledged.len() >= during + 60),
    )
    .await
    .expect("both nodes append again once the database is back, with no restart")
    .unwrap();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let Tally {
        acknowledged,
        in_doubt,
        ..
    } = tally.borrow().clone();
    assert!(acknowledged.len() >= before + 60);

    // Every acknowledged event is stored exactly once, in a gap-free chain that verifies.
    let head = a.head().await.unwrap();
    let stored = a.read_from(Seq(0), head.0 as usize + 10).await.unwrap();
    let seqs: Vec<u64> = stored.iter().map(|e| e.seq.0).collect();
    assert_eq!(seqs, (1..=head.0).collect::<Vec<_>>());
    let tags: Vec<String> = stored
        .iter()
        .map(|e| {
            e.event.metadata.as_ref().unwrap()["tag"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let unique: BTreeSet<String> = tags.iter().cloned().collect();
    assert_eq!(unique.len(), tags.len(), "no event is stored twice");
    assert!(
        unique.is_superset(&acknowledged),
        "every acknowledged event is stored"
    );
    assert!(
        unique
            .difference(&acknowledged)
            .all(|t| in_doubt.contains(t)),
        "nothing is stored that no one tried to append"
    );
    assert!(a.verify(&[], None, &mut |_| {}).await.unwrap().ok);

    // The other node's stream went on across the outage, with no gap and no repeat.
    let mut streamed = Vec::new();
    while streamed.len() < head.0 as usize {
        let e = tokio::time::timeout(wait, follow.next())
            .await
            .expect("the stream resumed after the outage")
            .unwrap()
            .unwrap();
        streamed.push(e.seq.0);
    }
    assert_eq!(streamed, seqs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_answers_503_and_says_the_database_is_down_then_recovers_by_itself() {
    let _turn = OUTAGE.lock().await;
    let cluster = cluster();
    let url = cluster.database("serve_faults").await;
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("cluster.key");
    std::fs::write(&key_file, hex::encode([8u8; 32])).unwrap();
    let node = common::TestServer::start_with(move |c| {
        c.cluster = Some(trailwatch::site::ClusterConfig {
            url,
            node: Some("solo".into()),
            key_file: Some(key_file),
        })
    })
    .await;
    let (status, _) = node.post(&common::batch("before", 2)).await;
    assert_eq!(status, 201);
    let (_, health) = node.get("/api/health").await;
    assert_eq!(health["components"]["database"], "reachable", "{health}");

    cluster.stop_server();
    let (status, body) = node.post(&common::batch("during", 2)).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "unavailable", "{body}");
    let (status, health) = node.get("/api/health").await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["components"]["database"], "unreachable", "{health}");

    cluster.start_server();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, _) = node.post(&common::batch("after", 2)).await;
        if status == 201 {
            break;
        }
        assert_eq!(status, 503);
        assert!(
            tokio::time::Instant::now() < deadline,
            "the node did not recover"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, health) = node.get("/api/health").await;
    assert_eq!(health["components"]["database"], "reachable", "{health}");
    let (_, page) = node.get("/api/v1/events?limit=10").await;
    assert_eq!(page["total"], 4, "nothing refused was stored: {page}");
}
