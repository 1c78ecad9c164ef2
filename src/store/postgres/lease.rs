//! Leases on cluster-wide jobs: a named lease has one holder until it expires or is released.
//! The holder renews it well before it expires; a node that dies stops renewing, and once the
//! lease expires another node takes it. Expiry is the database's clock, so nodes whose clocks
//! disagree still agree on who holds it.

use super::PgError;
use chrono::{DateTime, Utc};
use std::time::Duration;
use tokio_postgres::Client;

/// Who holds a lease, since when and until when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseHolder {
    pub holder: String,
    pub acquired_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// Takes the lease `name` for `holder` for `ttl`, or renews it if `holder` has it already;
/// `false` while another holder's lease runs. Atomic: of nodes asking at once, one wins.
///
/// # Errors
/// Database errors.
pub async fn try_acquire(
    client: &Client,
    name: &str,
    holder: &str,
    ttl: Duration,
) -> Result<bool, PgError> {
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    let row = client
        .query_opt(
            "INSERT INTO leases AS l (name, holder, acquired_at, expires_at)
             VALUES ($1, $2, now(), now() + make_interval(secs => $3::bigint / 1000.0))
             ON CONFLICT (name) DO UPDATE
                 SET holder = excluded.holder,
                     acquired_at = CASE WHEN l.holder = excluded.holder
                                        THEN l.acquired_at ELSE now() END,
                     expires_at = excluded.expires_at
                 WHERE l.holder = excluded.holder OR l.expires_at <= now()
             RETURNING holder",
            &[&name, &holder, &ttl_ms],
        )
        .await?;
    Ok(row.is_some())
}

/// Gives the lease up at once, if `holder` has it; whether it did.
///
/// # Errors
/// Database errors.
pub async fn release(client: &Client, name: &str, holder: &str) -> Result<bool, PgError> {
    let n = client
        .execute(
            "DELETE FROM leases WHERE name = $1 AND holder = $2",
            &[&name, &holder],
        )
        .await?;
    Ok(n > 0)
}

/// Who holds the lease `name` now, if anyone (an expired lease is held by no one).
///
/// # Errors
/// Database errors.
pub async fn holder(client: &Client, name: &str) -> Result<Option<LeaseHolder>, PgError> {
    let row = client
        .query_opt(
            "SELECT holder, acquired_at, expires_at FROM leases
             WHERE name = $1 AND expires_at > now()",
            &[&name],
        )
        .await?;
    Ok(row.map(|r| LeaseHolder {
        holder: r.get(0),
        acquired_at: r.get(1),
        expires_at: r.get(2),
    }))
}

/// Runs `start` once this node (`holder`) takes the lease `name`, and keeps renewing it, for a
/// job one node of the cluster does at a time (evaluating alerts): if the holder dies, its
/// lease runs out after `ttl` and another node takes it and starts the job there.
pub fn run_when_held(
    log: super::EventLog,
    name: &'static str,
    holder: String,
    ttl: std::time::Duration,
    start: impl FnOnce() + Send + 'static,
) {
    tokio::spawn(async move {
        let mut start = Some(start);
        let mut tick = tokio::time::interval(ttl / 4);
        loop {
            tick.tick().await;
            let held = match log.client().await {
                Ok(client) => try_acquire(&client, name, &holder, ttl).await,
                Err(e) => {
                    tracing::debug!(error = %e, lease = name, "cannot ask for the lease");
                    continue;
                }
            };
            match held {
                Ok(true) => {
                    if let Some(start) = start.take() {
                        tracing::info!(lease = name, "this node now runs the job");
                        start();
                    }
                }
                Ok(false) => {}
                Err(e) => tracing::debug!(error = %e, lease = name, "cannot ask for the lease"),
            }
        }
    });
}
