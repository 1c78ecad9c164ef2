//! Streaming verification of the whole chain in seq order, in constant memory: the walk
//! every backend feeds its rows to ([`Walk`]), its report, and the progress bar the CLI draws.
//! The SQLite store's reads for it are `sqlite::verify`'s; PostgreSQL's are `postgres::verify`'s.

use super::chain::{Break, ChainRow, Fault, Verifier};
use super::checkpoint::Checkpoint;
use super::retention::{Ledger, LedgerRange};
use super::StoreError;
use crate::model::Seq;
use serde::Serialize;

/// The result of walking the chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
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
