//! The background check of the hash chain: verifies the events committed since its last pass
//! (against the signed checkpoints too), walks the whole chain again every
//! [`FULL_EVERY`] (an edit of an old row is found by then), and publishes where the chain
//! stands, for the dashboard header and `GET /api/v1/chain`. Once the chain is found broken
//! every pass walks it whole, so a restored database shows as whole again. On a cluster one
//! node at a time runs it, under a lease, and shares its result for the others to show.
//! Server only.

use crate::model::{ChainStatus, Seq};
use crate::store::{chain::GENESIS, Store, VerifyReport};
use std::time::Duration;
use tokio::sync::watch;

/// How often the check runs when events keep arriving.
pub const INTERVAL: Duration = Duration::from_secs(5);
/// How often the whole chain is walked again.
pub const FULL_EVERY: Duration = Duration::from_secs(3600);

/// How long the chain check's lease lasts unrenewed: past a pass or two, so a long whole walk
/// rarely outlives it.
fn lease_for(interval: Duration) -> Duration {
    (interval * 6).max(Duration::from_secs(60))
}

/// Starts the check; the receiver follows its results.
pub fn spawn(
    store: Store,
    interval: Duration,
    full_every: Duration,
) -> watch::Receiver<ChainStatus> {
    let (tx, rx) = watch::channel(ChainStatus::default());
    tokio::spawn(run(store, interval, full_every, tx));
    rx
}

async fn run(
    store: Store,
    interval: Duration,
    full_every: Duration,
    status: watch::Sender<ChainStatus>,
) {
    let mut head = store.head_watch();
    // Where the last clean pass ended: the seq and its hash.
    let mut through = (Seq(0), GENESIS);
    let mut checked_head = None;
    let mut last_full: Option<tokio::time::Instant> = None;
    loop {
        let now_head = *head.borrow_and_update();
        // On a cluster one node at a time runs the check (the lease's holder); the others
        // show what it shared, and start from a whole walk if the duty comes to them.
        if store.is_clustered() && !store.take_lease("chain-check", lease_for(interval)).await {
            if let Some(shared) = store.shared_chain_status().await {
                status.send_if_modified(|s| {
                    let changed = *s != shared;
                    *s = shared;
                    changed
                });
            }
            (through, checked_head, last_full) = ((Seq(0), GENESIS), None, None);
            if status.is_closed() {
                return;
            }
            tokio::time::sleep(interval).await;
            continue;
        }
        let full =
            status.borrow().is_broken() || last_full.is_none_or(|t| t.elapsed() >= full_every);
        if full || checked_head != Some(now_head) {
            let from = if full { (Seq(0), GENESIS) } else { through };
            match store.verify_from_in_background(from.0, from.1).await {
                Ok(report) => {
                    let was_broken = status.borrow().is_broken();
                    through = publish(&status, &report, full).unwrap_or((Seq(0), GENESIS));
                    if !was_broken && status.borrow().is_broken() {
                        // Recorded once per break, in the chain itself: the events after
                        // it still verify from the break on, and the record says when.
                        crate::selfaudit::note(
                            &store,
                            &crate::selfaudit::Acting::system(),
                            "chain.verify",
                            crate::model::Category::Security,
                            crate::model::Outcome::Failure,
                            crate::model::Level::Critical,
                            failure_text(&report),
                        )
                        .await;
                    }
                    checked_head = Some(now_head);
                    if full {
                        last_full = Some(tokio::time::Instant::now());
                    }
                    let shared = status.borrow().clone();
                    if let Err(e) = store.share_chain_status(&shared).await {
                        tracing::warn!(error = %e, "could not share the chain check's result");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "background chain check failed; retrying"),
            }
        }
        // The next pass comes after the next commit, at most once per interval, or after
        // the interval when nothing is committed (a full walk may be due).
        tokio::select! {
            changed = head.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            () = tokio::time::sleep(interval) => {}
        }
        if status.is_closed() {
            return;
        }
        tokio::time::sleep(interval).await;
    }
}

/// What a failed verification found, in one line.
pub fn failure_text(report: &VerifyReport) -> String {
    match (&report.first_break, &report.checkpoint_error) {
        (Some(b), _) => format!(
            "chain verification failed at seq {}: {}: {}",
            b.seq,
            fault_name(b),
            b.detail
        ),
        (None, Some(e)) => format!("chain verification failed: checkpoints: {e}"),
        (None, None) => "chain verification failed".into(),
    }
}

/// Publishes a pass's result; returns where a clean pass ended.
fn publish(
    status: &watch::Sender<ChainStatus>,
    report: &VerifyReport,
    full: bool,
) -> Option<(Seq, [u8; 32])> {
    let problem = match (&report.first_break, &report.checkpoint_error) {
        (Some(b), _) => Some(format!("{}: {}", fault_name(b), b.detail)),
        (None, Some(e)) => Some(format!("checkpoints: {e}")),
        (None, None) => None,
    };
    if let Some(problem) = &problem {
        if !status.borrow().is_broken() {
            tracing::error!(%problem, "the hash chain is broken");
        }
    }
    let clean = problem.is_none();
    let head = hex::decode(&report.head_hash)
        .ok()
        .and_then(|h| <[u8; 32]>::try_from(h).ok());
    status.send_modify(|s| {
        s.checked_at = Some(chrono::Utc::now());
        s.broken_at = report.first_break.as_ref().map(|b| b.seq.0);
        s.problem = problem;
        // A clean pass moves the mark to its end; a broken one to the last good row before
        // the break (an incremental pass starts after rows already verified).
        if clean || full || report.head_seq.0 < s.verified_through {
            s.verified_through = report.head_seq.0;
        }
    });
    match (clean, head) {
        (true, Some(hash)) => Some((report.head_seq, hash)),
        _ => None,
    }
}

fn fault_name(b: &crate::store::chain::Break) -> String {
    serde_json::to_value(b.fault)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AuditEvent, Source};
    use crate::store::{StoreOptions, DB_FILE};

    fn events(n: usize) -> Vec<AuditEvent> {
        (0..n)
            .map(|i| {
                let v = serde_json::json!({"action": "x", "description": format!("d{i}")});
                crate::ingest::normalize(&v, &Source::cli(), chrono::Utc::now()).unwrap()
            })
            .collect()
    }

    #[tokio::test]
    async fn the_check_follows_the_head_and_reports_a_break() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let mut status = spawn(
            store.clone(),
            Duration::from_millis(20),
            Duration::from_millis(100),
        );
        store.append(events(5)).await.unwrap();
        status
            .wait_for(|s| s.verified_through == 5 && !s.is_broken())
            .await
            .unwrap();
        store.append(events(3)).await.unwrap();
        let s = status.wait_for(|s| s.verified_through == 8).await.unwrap();
        assert!(s.checked_at.is_some());
        drop(s);

        rusqlite::Connection::open(dir.path().join(DB_FILE))
            .unwrap()
            .execute("UPDATE events SET description = 'x' WHERE seq = 2", [])
            .unwrap();
        // Incremental passes start after seq 8; the next full walk finds the edit.
        let s = status
            .wait_for(ChainStatus::is_broken)
            .await
            .unwrap()
            .clone();
        assert_eq!(s.broken_at, Some(2), "{s:?}");
        assert!(s.problem.as_deref().unwrap().starts_with("edited"), "{s:?}");
        assert_eq!(s.verified_through, 1, "only what precedes the break counts");

        // The break is recorded once, as a critical self-audit event.
        let mut head = store.head_watch();
        head.wait_for(|&h| h >= 9).await.unwrap();
        let last = store.read_from(Seq(8), 10).await.unwrap();
        assert_eq!(last.len(), 1, "one record per break: {last:?}");
        assert_eq!(last[0].event.action, "chain.verify");
        assert_eq!(last[0].event.outcome, crate::model::Outcome::Failure);
        assert!(last[0]
            .event
            .description
            .as_deref()
            .unwrap()
            .contains("seq 2"));
    }
}
