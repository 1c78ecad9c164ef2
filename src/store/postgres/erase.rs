//! Crypto-shredding one data subject on PostgreSQL, as on SQLite: its salt is deleted, the
//! personal fields of its events blanked (each keeps its digest, so the chain still verifies),
//! its words indexed again from what is left, its risk profile dropped and its per-user
//! rollups merged into the erased subject's. The chain's lock
//! is held throughout, so no node seals the subject's next event with the salt being deleted,
//! and the head row counts the erasure, so every node rebuilds its risk state from the rows
//! before its next batch (no node keeps the subject's history in memory).

use crate::model::SYSTEM_ACTOR;
use crate::store::row::EVENT_COLUMNS;
use crate::store::{StoreError, ERASED_SUBJECT};
use tokio_postgres::Client;

/// Erases `subject`; returns how many events it was the actor of.
///
/// # Errors
/// Database errors (nothing is then changed).
pub async fn erase(client: &mut Client, subject: &str) -> Result<u64, StoreError> {
    if subject == ERASED_SUBJECT || subject == SYSTEM_ACTOR {
        return Ok(0);
    }
    let tx = client.transaction().await?;
    tx.execute(
        "UPDATE chain_head SET erasures = erasures + 1 WHERE id = 1",
        &[],
    )
    .await?;
    let sql = format!(
        "UPDATE events SET user_id = $2, username = NULL, req_ip = NULL,
             req_user_agent = NULL, country = NULL, city = NULL, personal = NULL, erased = true
         WHERE user_id = $1 AND NOT erased
         RETURNING {EVENT_COLUMNS}"
    );
    let rows = tx.query(&sql, &[&subject, &ERASED_SUBJECT]).await?;
    let mut seqs = Vec::with_capacity(rows.len());
    let mut words = Vec::with_capacity(rows.len());
    for row in &rows {
        let event = crate::store::row::event_from_row(row).map_err(|e| StoreError::Corrupt {
            seq: row.try_get::<_, i64>(0).unwrap_or(0).max(0) as u64,
            detail: format!("column {}: {}", e.idx, e.detail),
        })?;
        seqs.push(event.seq.0 as i64);
        words.push(super::words::tsvector(&event.event));
    }
    if !seqs.is_empty() {
        tx.execute(
            "UPDATE events AS e SET words = w.words::tsvector
             FROM unnest($1::int8[], $2::text[]) AS w (seq, words)
             WHERE e.seq = w.seq",
            &[&seqs, &words],
        )
        .await?;
    }
    tx.execute("DELETE FROM subjects WHERE subject = $1", &[&subject])
        .await?;
    tx.execute("DELETE FROM risk_profile WHERE user_id = $1", &[&subject])
        .await?;
    // Its per-user rollups are merged into the erased subject's: the counts stay, the name goes.
    tx.execute(
        "INSERT INTO rollup_user_hour AS r (hour, user_id, n, denied, failed)
             SELECT hour, $2, n, denied, failed FROM rollup_user_hour WHERE user_id = $1
         ON CONFLICT (hour, user_id) DO UPDATE SET n = r.n + excluded.n,
             denied = r.denied + excluded.denied, failed = r.failed + excluded.failed",
        &[&subject, &ERASED_SUBJECT],
    )
    .await?;
    tx.execute(
        "DELETE FROM rollup_user_hour WHERE user_id = $1",
        &[&subject],
    )
    .await?;
    tx.commit().await?;
    tracing::info!(events = seqs.len(), "erased a data subject");
    Ok(seqs.len() as u64)
}
