//! Streaming verification of the whole chain in seq order, in constant memory, on a live
//! database or offline.

use super::chain::{Break, ChainRow, Fault, Verifier, GENESIS};
use super::checkpoint::Checkpoint;
use super::retention::{Ledger, LedgerRange, Ranges};
use super::row::{sealed_columns, SealedRow};
use super::StoreError;
use crate::model::{EventSeal, Seq};
use ed25519_dalek::VerifyingKey;
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
    /// Signed checkpoints the chain was checked against.
    pub checkpoints: u64,
    /// Events removed by signed retention runs that the walk stepped over.
    pub pruned: u64,
    /// Why the checkpoint log could not be used (the report is then not ok).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_error: Option<String>,
}

impl VerifyReport {
    /// The report for a chain that could not be checked against its checkpoints.
    pub fn untrusted_checkpoints(error: String) -> VerifyReport {
        VerifyReport {
            ok: false,
            checked: 0,
            head_seq: Seq(0),
            head_hash: String::new(),
            first_break: None,
            checkpoints: 0,
            pruned: 0,
            checkpoint_error: Some(error),
        }
    }
}

fn hash32(v: Vec<u8>, seq: u64, what: &str) -> Result<[u8; 32], StoreError> {
    v.try_into().map_err(|_| StoreError::Corrupt {
        seq,
        detail: format!("{what} is not 32 bytes"),
    })
}

/// Verifies every row of the database at `conn`, and that the chain passes through every
/// checkpoint in `checkpoints` (already checked for their signatures) and does not end before
/// the newest. Gaps left by retention are stepped over only where a range signed by `key`
/// covers them (see [`super::retention`]). Calls `progress` with the count so far every
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
    let ledger = Ledger::load(&tx, key)?;
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

/// The walk along the chain that every backend's verification shares: rows in seq order go
/// in, one at a time; gaps are stepped over only where a signed retention range covers them
/// exactly; each signed checkpoint must be met with its hash; the report comes out.
pub(crate) struct Walk<'c> {
    verifier: Verifier,
    /// Checkpoints not yet met, newest first, so the next one due is popped from the end.
    pending: Vec<&'c Checkpoint>,
    matched: u64,
    pruned: u64,
    first_break: Option<Break>,
    last_seq: Seq,
}

impl<'c> Walk<'c> {
    /// A walk of the rows after `after`, the seq of a row already verified whose hash is
    /// `prev` ([`GENESIS`] for 0). `Err` holds the report when a checkpoint at `after`
    /// already contradicts `prev`.
    pub(crate) fn start(
        after: Seq,
        prev: [u8; 32],
        checkpoints: &'c [Checkpoint],
    ) -> Result<Walk<'c>, Box<VerifyReport>> {
        // Checkpoints at or before `after` were matched by the walk that verified through it;
        // left pending, they would read as a chain cut short whenever no row followed `after`
        // (a pass started just after the previous one reached the head). One exactly at
        // `after` still pins `prev`.
        if let Some(c) = checkpoints
            .iter()
            .find(|c| after.0 > 0 && c.seq == after.0 && c.hash != hex::encode(prev))
        {
            return Err(Box::new(VerifyReport {
                ok: false,
                checked: 0,
                head_seq: after,
                head_hash: hex::encode(prev),
                first_break: Some(Break {
                    seq: after,
                    fault: Fault::Edited,
                    detail: format!(
                        "its hash differs from the checkpoint signed at {}: the chain was \
                         rewritten from here or before",
                        c.signed_at
                    ),
                }),
                checkpoints: 0,
                pruned: 0,
                checkpoint_error: None,
            }));
        }
        let mut pending: Vec<&Checkpoint> =
            checkpoints.iter().filter(|c| c.seq > after.0).collect();
        pending.sort_by_key(|c| std::cmp::Reverse(c.seq));
        Ok(Walk {
            verifier: Verifier::resume(Seq(after.0 + 1), prev),
            pending,
            matched: 0,
            pruned: 0,
            first_break: None,
            last_seq: after,
        })
    }

    /// Rows verified so far.
    pub(crate) fn checked(&self) -> u64 {
        self.verifier.checked()
    }

    /// Checks the next row, first stepping over the retention ranges before it (`range_at`
    /// gives the range starting at a seq). `false` once the chain is broken: feed no more.
    ///
    /// # Errors
    /// What `range_at` fails with.
    pub(crate) fn step(
        &mut self,
        row: &ChainRow<'_>,
        ledger: &Ledger,
        range_at: &mut dyn FnMut(u64) -> Result<Option<LedgerRange>, StoreError>,
    ) -> Result<bool, StoreError> {
        // A gap: stepped over range by range while signed ranges cover it exactly.
        while row.seq > self.verifier.expected() {
            let at = self.verifier.expected();
            let Some(lr) = range_at(at.0)? else {
                break;
            };
            let r = &lr.range;
            let fault = if !ledger.sanctions(lr.prune_id) {
                Some(format!(
                    "seqs {}..={} were removed, and their retention record does not verify{}",
                    r.first_seq,
                    r.last_seq,
                    ledger
                        .problem
                        .as_deref()
                        .map(|p| format!(": {p}"))
                        .unwrap_or_default()
                ))
            } else if r.prev_hash != self.verifier.head_hash() || r.last_seq >= row.seq.0 {
                Some(format!(
                    "the retention range {}..={} does not fit the chain around it",
                    r.first_seq, r.last_seq
                ))
            } else {
                None
            };
            if let Some(detail) = fault {
                self.first_break = Some(Break {
                    seq: at,
                    fault: Fault::Deleted,
                    detail,
                });
                return Ok(false);
            }
            // A checkpoint at the range's last seq still pins its hash; others inside it
            // are covered by the signed record.
            while let Some(c) = self.pending.last().filter(|c| c.seq <= r.last_seq) {
                if c.seq == r.last_seq && c.hash != hex::encode(r.last_hash) {
                    self.first_break = Some(Break {
                        seq: Seq(c.seq),
                        fault: Fault::Edited,
                        detail: format!(
                            "the retention range ending here differs from the checkpoint \
                             signed at {}",
                            c.signed_at
                        ),
                    });
                    return Ok(false);
                }
                if c.seq >= r.first_seq {
                    self.matched += 1;
                }
                self.pending.pop();
            }
            self.pruned += r.last_seq - r.first_seq + 1;
            self.verifier =
                Verifier::resume_counted(Seq(r.last_seq + 1), r.last_hash, self.verifier.checked());
        }
        if let Err(b) = self.verifier.check(row) {
            self.first_break = Some(b);
            return Ok(false);
        }
        self.last_seq = row.seq;
        // Checkpoints at seqs the chain skipped were caught above as a deletion.
        while self.pending.last().is_some_and(|c| c.seq < row.seq.0) {
            self.pending.pop();
        }
        while let Some(c) = self.pending.last().filter(|c| c.seq == row.seq.0) {
            if c.hash != hex::encode(row.hash) {
                self.first_break = Some(Break {
                    seq: row.seq,
                    fault: Fault::Edited,
                    detail: format!(
                        "its hash differs from the checkpoint signed at {}: the chain was \
                         rewritten from here or before",
                        c.signed_at
                    ),
                });
                return Ok(false);
            }
            self.matched += 1;
            self.pending.pop();
        }
        Ok(true)
    }

    /// Records a break found outside the rows (the backend's own head, say), unless one was
    /// found already.
    pub(crate) fn broken(&mut self, b: Break) {
        self.first_break.get_or_insert(b);
    }

    /// The last seq verified.
    pub(crate) fn last_seq(&self) -> Seq {
        self.last_seq
    }

    /// The report: a checkpoint newer than the last row means rows were cut from the end.
    pub(crate) fn finish(mut self) -> VerifyReport {
        if self.first_break.is_none() {
            if let Some(newest) = self.pending.first() {
                let last = self.last_seq.0;
                self.first_break = Some(Break {
                    seq: Seq(last + 1),
                    fault: Fault::Truncated,
                    detail: format!(
                        "the chain ends at seq {last}, but a checkpoint signed at {} covers seq \
                         {}: {} events were removed from its end",
                        newest.signed_at,
                        newest.seq,
                        newest.seq - last
                    ),
                });
            }
        }
        VerifyReport {
            ok: self.first_break.is_none(),
            checked: self.verifier.checked(),
            head_seq: self.last_seq,
            head_hash: hex::encode(self.verifier.head_hash()),
            first_break: self.first_break,
            checkpoints: self.matched,
            pruned: self.pruned,
            checkpoint_error: None,
        }
    }
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
            .map(|d| d.join(super::checkpoint::PUBLIC_KEY_FILE))
            .filter(|p| p.exists())
            .and_then(|p| super::checkpoint::read_public_key(&p).ok()),
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

/// One line of progress: a 30-cell bar, the percentage and the counts (just the count when
/// the total is unknown).
pub fn progress_bar(done: u64, total: u64) -> String {
    if total == 0 {
        return format!("verified {done} events");
    }
    let share = (done.min(total) as f64 / total as f64).clamp(0.0, 1.0);
    let cells = (share * 30.0).round() as usize;
    format!(
        "[{}{}] {:>3.0}%  {done}/{total} events",
        "#".repeat(cells),
        ".".repeat(30 - cells),
        share * 100.0
    )
}

#[cfg(test)]
mod tests {
    use super::progress_bar;

    #[test]
    fn the_progress_bar_fills_with_the_share_done() {
        assert_eq!(
            progress_bar(0, 200),
            format!("[{}]   0%  0/200 events", ".".repeat(30))
        );
        assert_eq!(
            progress_bar(100, 200),
            format!(
                "[{}{}]  50%  100/200 events",
                "#".repeat(15),
                ".".repeat(15)
            )
        );
        assert_eq!(
            progress_bar(250, 200),
            format!("[{}] 100%  250/200 events", "#".repeat(30))
        );
        assert_eq!(progress_bar(7, 0), "verified 7 events");
    }
}
