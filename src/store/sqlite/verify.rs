//! Verification of an SQLite store: its rows, in seq order, through the shared [`Walk`], on
//! a live database or offline (`trailwatch verify`), and one row's seal on its own.

use super::retention::{ledger, Ranges};
use crate::model::{EventSeal, Seq};
use crate::store::chain::{Verifier, GENESIS};
use crate::store::checkpoint::Checkpoint;
use crate::store::row::{sealed_columns, SealedRow};
use crate::store::verify::{VerifyReport, Walk};
use crate::store::StoreError;
use ed25519_dalek::VerifyingKey;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use std::collections::HashMap;
use std::path::Path;

fn hash32(v: Vec<u8>, seq: u64, what: &str) -> Result<[u8; 32], StoreError> {
    v.try_into().map_err(|_| StoreError::Corrupt {
        seq,
        detail: format!("{what} is not 32 bytes"),
    })
}

/// Verifies every row of the database at `conn`, and that the chain passes through every
/// checkpoint in `checkpoints` (already checked for their signatures) and does not end before
/// the newest. Gaps left by retention are stepped over only where a range signed by `key`
/// covers them (see [`crate::store::retention`]). Calls `progress` with the count so far every
/// 10,000 rows.
///
/// # Errors
/// Database errors, or a row that cannot be read back at all.
pub fn verify(
    conn: &Connection,
    checkpoints: &[Checkpoint],
    key: Option<&VerifyingKey>,
    progress: &mut dyn FnMut(u64),
) -> Result<VerifyReport, StoreError> {
    verify_from(conn, Seq(0), GENESIS, checkpoints, key, progress)
}

/// [`verify`] of the rows after `after`, the seq of a row already verified whose hash is
/// `prev` ([`GENESIS`] for 0): how the background check keeps up without walking the whole
/// chain again. `checked` counts only the rows walked.
///
/// # Errors
/// Database errors, or a row that cannot be read back at all.
pub fn verify_from(
    conn: &Connection,
    after: Seq,
    prev: [u8; 32],
    checkpoints: &[Checkpoint],
    key: Option<&VerifyingKey>,
    progress: &mut dyn FnMut(u64),
) -> Result<VerifyReport, StoreError> {
    let mut walk = match Walk::start(after, prev, checkpoints) {
        Ok(walk) => walk,
        Err(report) => return Ok(*report),
    };
    let tx = conn.unchecked_transaction()?;
    let ledger = ledger(&tx, key)?;
    let mut ranges = Ranges::new(&tx)?;
    let sql = format!(
        "SELECT {} FROM events WHERE seq > ?1 ORDER BY seq",
        sealed_columns()
    );
    let mut stmt = tx.prepare(&sql)?;
    let mut salt_stmt = tx.prepare("SELECT salt FROM subjects WHERE subject = ?1")?;
    let mut salts: HashMap<String, Option<Vec<u8>>> = HashMap::new();
    let mut rows = stmt.query([after.0])?;
    while let Some(row) = rows.next()? {
        let sealed = SealedRow::read(row)?;
        let subject = &sealed.stored.event.user.id;
        if !sealed.erased && !salts.contains_key(subject) {
            let salt: Option<Vec<u8>> = salt_stmt.query_row([subject], |r| r.get(0)).optional()?;
            salts.insert(subject.clone(), salt);
        }
        let row = sealed.chain_row(salts.get(subject).and_then(|s| s.as_deref()));
        let mut range_at = |seq: u64| match ranges.as_mut() {
            Some(r) => r.starting_at(seq),
            None => Ok(None),
        };
        if !walk.step(&row, &ledger, &mut range_at)? {
            break;
        }
        if walk.checked() % 10_000 == 0 {
            progress(walk.checked());
        }
    }
    Ok(walk.finish())
}

/// Checks one event's seal in place: its content against its hash, its personal fields
/// against their digest, and its link to the row before it.
///
/// # Errors
/// Database errors; `None` when no event has this seq.
pub fn verify_one(conn: &Connection, seq: Seq) -> Result<Option<EventSeal>, StoreError> {
    let sql = format!("SELECT {} FROM events WHERE seq = ?1", sealed_columns());
    let Some(sealed) = conn
        .prepare_cached(&sql)?
        .query_row([seq.0], |row| Ok(SealedRow::read(row)))
        .optional()?
        .transpose()?
    else {
        return Ok(None);
    };
    let prev: [u8; 32] = if seq.0 <= 1 {
        GENESIS
    } else {
        let hash: Option<Vec<u8>> = conn
            .prepare_cached("SELECT hash FROM events WHERE seq = ?1")?
            .query_row([seq.0 - 1], |r| r.get(0))
            .optional()?;
        // Removed by retention: its signed range holds its hash.
        let pruned = match hash {
            Some(_) => None,
            None => super::retention::range_ending_at(conn, seq.0 - 1)?,
        };
        match (hash, pruned) {
            (Some(h), _) => hash32(h, seq.0 - 1, "hash")?,
            (None, Some(h)) => h,
            (None, None) => {
                return Ok(Some(EventSeal {
                    seq,
                    hash: hex::encode(sealed.hash),
                    prev_hash: hex::encode(sealed.prev),
                    verified: false,
                    problem: Some(format!("seq {} before it is missing", seq.0 - 1)),
                }))
            }
        }
    };
    let salt: Option<Vec<u8>> = conn
        .prepare_cached("SELECT salt FROM subjects WHERE subject = ?1")?
        .query_row([&sealed.stored.event.user.id], |r| r.get(0))
        .optional()?;
    let result = Verifier::resume(seq, prev).check(&sealed.chain_row(salt.as_deref()));
    Ok(Some(EventSeal {
        seq,
        hash: hex::encode(sealed.hash),
        prev_hash: hex::encode(sealed.prev),
        verified: result.is_ok(),
        problem: result.err().map(|b| b.detail),
    }))
}

/// Verifies the database file at `path` without a running server, opening it read-only,
/// against `checkpoints`, with retention records checked by `key` (default: the public key
/// in the database's directory).
///
/// # Errors
/// The file cannot be opened, or a database error.
pub fn verify_path(
    path: &Path,
    checkpoints: &[Checkpoint],
    key: Option<&VerifyingKey>,
    progress: &mut dyn FnMut(u64),
) -> Result<VerifyReport, StoreError> {
    if !path.exists() {
        return Err(StoreError::Io(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("no database at {}", path.display()),
        )));
    }
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    // Without a key given, the one beside the database checks the retention records.
    let local = match key {
        Some(_) => None,
        None => path
            .parent()
            .map(|d| d.join(crate::store::checkpoint::PUBLIC_KEY_FILE))
            .filter(|p| p.exists())
            .and_then(|p| crate::store::checkpoint::read_public_key(&p).ok()),
    };
    verify(&conn, checkpoints, key.or(local.as_ref()), progress)
}

/// How many events the database file at `path` holds (its head seq), for a progress bar.
///
/// # Errors
/// The file cannot be opened or read.
pub fn stored_count(path: &Path) -> Result<u64, StoreError> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let head: Option<i64> = conn.query_row("SELECT MAX(seq) FROM events", [], |r| r.get(0))?;
    Ok(head.unwrap_or(0).max(0) as u64)
}
