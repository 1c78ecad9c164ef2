//! Signed checkpoints of the shared chain: one node at a time signs the head into the
//! `checkpoints` table, the node holding the [`LEASE`]; when it dies, its lease runs out and
//! another node takes the duty. The key is one per cluster, given to every node (a file or an
//! environment variable), and its public half is what `trailwatch verify --database` checks
//! the checkpoints with; it never enters the database.
//!
//! As on SQLite, the head is signed once [`checkpoint::EVERY_EVENTS`] events have been
//! committed since the last checkpoint, or [`checkpoint::EVERY`] after a change, whichever
//! comes first.

use super::{lease, EventLog};
use crate::store::checkpoint::{self, Checkpoint};
use crate::store::StoreError;
use ed25519_dalek::SigningKey;
use std::time::Duration;
use tokio_postgres::GenericClient;

/// The lease the signing node holds.
pub const LEASE: &str = "checkpoints";

/// Signs the chain's head, unless a checkpoint already covers it. Returns what it signed.
///
/// # Errors
/// Database errors.
pub async fn sign_head(
    client: &impl GenericClient,
    key: &SigningKey,
) -> Result<Option<Checkpoint>, StoreError> {
    let row = client
        .query_one(
            "SELECT h.seq, h.hash, (SELECT max(seq) FROM checkpoints)
             FROM chain_head h WHERE h.id = 1",
            &[],
        )
        .await?;
    let (seq, hash, signed): (i64, Vec<u8>, Option<i64>) = (row.get(0), row.get(1), row.get(2));
    if seq <= 0 || signed.is_some_and(|s| s >= seq) {
        return Ok(None);
    }
    let hash: [u8; 32] = hash.try_into().map_err(|_| StoreError::Corrupt {
        seq: seq as u64,
        detail: "the head's hash is not 32 bytes".into(),
    })?;
    let checkpoint = Checkpoint::sign(key, seq as u64, &hash);
    client
        .execute(
            "INSERT INTO checkpoints (seq, hash, signed_at, signature) VALUES ($1, $2, $3, $4)
             ON CONFLICT (seq) DO NOTHING",
            &[
                &seq,
                &checkpoint.hash,
                &checkpoint.signed_at,
                &checkpoint.signature,
            ],
        )
        .await?;
    Ok(Some(checkpoint))
}

/// How often a node asks for the lease, and signs when it holds it and the head is due.
#[derive(Clone, Copy, Debug)]
pub struct Duty {
    pub every: Duration,
    /// How long a lease lasts unrenewed: how long the cluster goes unsigned after the
    /// signing node dies.
    pub lease: Duration,
    /// Sign after this many events, without waiting for `max_age`.
    pub events: u64,
    /// Sign a head this old even if fewer events came.
    pub max_age: Duration,
}

impl Default for Duty {
    fn default() -> Self {
        Duty {
            every: Duration::from_secs(5),
            lease: Duration::from_secs(30),
            events: checkpoint::EVERY_EVENTS,
            max_age: checkpoint::EVERY,
        }
    }
}

/// Runs the checkpoint duty for the node `holder` of `log` until the task is aborted (a node
/// that stops releases the lease first with [`lease::release`], so another takes it at once).
pub async fn run(log: EventLog, holder: String, key: SigningKey, duty: Duty) {
    let mut tick = tokio::time::interval(duty.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut published = log.published_watch();
    let mut since = tokio::time::Instant::now();
    let mut signed_through = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            changed = published.changed() => {
                if changed.is_err() {
                    return;
                }
                let head = *published.borrow_and_update();
                if head < signed_through + duty.events {
                    continue;
                }
            }
        }
        let head = log.published().0;
        let due = head >= signed_through + duty.events
            || (head > signed_through && since.elapsed() >= duty.max_age);
        match duty_step(&log, &holder, &key, duty, due).await {
            Ok(Some(seq)) => {
                signed_through = seq;
                since = tokio::time::Instant::now();
                log.note_checkpointed(seq);
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "checkpoint duty"),
        }
    }
}

/// Takes or renews the lease and, holding it, signs the head when `due`. Returns the seq the
/// checkpoints now cover when it signed or found them current.
async fn duty_step(
    log: &EventLog,
    holder: &str,
    key: &SigningKey,
    duty: Duty,
    due: bool,
) -> Result<Option<u64>, StoreError> {
    let client = log.client().await?;
    if !lease::try_acquire(&client, LEASE, holder, duty.lease).await? {
        return Ok(None);
    }
    if !due {
        return Ok(None);
    }
    if let Some(signed) = sign_head(&**client, key).await? {
        return Ok(Some(signed.seq));
    }
    // Already covered (by this node's predecessor in the duty, say): carry on from there.
    let covered: Option<i64> = client
        .query_one("SELECT max(seq) FROM checkpoints", &[])
        .await?
        .get(0);
    Ok(covered.map(|s| s.max(0) as u64))
}
