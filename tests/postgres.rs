//! The PostgreSQL backend against a real, throwaway cluster (one per test binary, see
//! `common::postgres`): migrations that several nodes run at once, leases that pass a
//! cluster-wide job from a node that stopped renewing to another, and the notices that carry
//! committed seq ranges to every node.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.
#![cfg(feature = "ssr")]

mod common;

use common::postgres::{cluster, connect};
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
