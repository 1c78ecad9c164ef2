//! Streaming verification of the whole chain in seq order, in constant memory, on a live
//! database or offline.

use super::chain::{Break, ChainRow, Verifier};
use super::query::{event_from_row, EVENT_COLUMNS, EVENT_COLUMN_COUNT};
use super::StoreError;
use crate::model::Seq;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;

/// The result of walking the chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    /// True when every row verified.
    pub ok: bool,
    /// Rows that verified before the first break (all rows when `ok`).
    pub checked: u64,
    /// The last verified seq.
    pub head_seq: Seq,
    /// The hash of the last verified row, hex.
    pub head_hash: String,
    /// The first problem, if any.
    pub first_break: Option<Break>,
}

fn hash32(v: Vec<u8>, seq: u64, what: &str) -> Result<[u8; 32], StoreError> {
    v.try_into().map_err(|_| StoreError::Corrupt {
        seq,
        detail: format!("{what} is not 32 bytes"),
    })
}

/// Verifies every row of the database at `conn`, calling `progress` with the count so far
/// every 10,000 rows.
///
/// # Errors
/// Database errors, or a row that cannot be read back at all.
pub fn verify(
    conn: &Connection,
    progress: &mut dyn FnMut(u64),
) -> Result<VerifyReport, StoreError> {
    let tx = conn.unchecked_transaction()?;
    let sql =
        format!("SELECT {EVENT_COLUMNS}, pii_digest, prev_hash, erased FROM events ORDER BY seq");
    let mut stmt = tx.prepare(&sql)?;
    let mut salt_stmt = tx.prepare("SELECT salt FROM subjects WHERE subject = ?1")?;
    let mut salts: HashMap<String, Option<Vec<u8>>> = HashMap::new();
    let mut rows = stmt.query([])?;
    let mut verifier = Verifier::default();
    let mut first_break = None;
    let mut last_seq = Seq(0);
    while let Some(row) = rows.next()? {
        let seq: u64 = row.get(0)?;
        let stored = event_from_row(row).map_err(|e| StoreError::Corrupt {
            seq,
            detail: e.to_string(),
        })?;
        let n = EVENT_COLUMN_COUNT;
        let pii = hash32(row.get(n)?, seq, "pii digest")?;
        let prev = hash32(row.get(n + 1)?, seq, "previous hash")?;
        let erased: bool = row.get(n + 2)?;
        let hash = hex::decode(&stored.hash).map_err(|e| StoreError::Corrupt {
            seq,
            detail: e.to_string(),
        })?;
        let hash = hash32(hash, seq, "hash")?;
        let subject = &stored.event.user.id;
        if !erased && !salts.contains_key(subject) {
            let salt: Option<Vec<u8>> = salt_stmt.query_row([subject], |r| r.get(0)).optional()?;
            salts.insert(subject.clone(), salt);
        }
        let row = ChainRow {
            seq: stored.seq,
            event: &stored.event,
            event_id: &stored.event_id.0,
            received_at_ms: stored.received_at.timestamp_millis(),
            pii_digest: pii,
            prev_hash: prev,
            hash,
            salt: salts.get(subject).and_then(|s| s.as_deref()),
            erased,
        };
        if let Err(b) = verifier.check(&row) {
            first_break = Some(b);
            break;
        }
        last_seq = stored.seq;
        if verifier.checked() % 10_000 == 0 {
            progress(verifier.checked());
        }
    }
    Ok(VerifyReport {
        ok: first_break.is_none(),
        checked: verifier.checked(),
        head_seq: last_seq,
        head_hash: hex::encode(verifier.head_hash()),
        first_break,
    })
}

/// Verifies the database file at `path` without a running server, opening it read-only.
///
/// # Errors
/// The file cannot be opened, or a database error.
pub fn verify_path(path: &Path, progress: &mut dyn FnMut(u64)) -> Result<VerifyReport, StoreError> {
    if !path.exists() {
        return Err(StoreError::Io(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("no database at {}", path.display()),
        )));
    }
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    verify(&conn, progress)
}
