//! Walking the chain stored in PostgreSQL with the walk SQLite's verification uses
//! (`store::verify::Walk`): every row's seal and link in seq order, gaps only where a signed
//! retention range covers them, every signed checkpoint met; and the head row against the last
//! event, so rows cut from the chain's end are caught even past the newest checkpoint.

use crate::model::{EventSeal, Seq};
use crate::store::chain::{Break, Fault, Verifier, GENESIS};
use crate::store::checkpoint::Checkpoint;
use crate::store::retention::{Ledger, LedgerRange, PruneRecord, PrunedRange, RangeRow};
use crate::store::row::{sealed_columns, SealedRow};
use crate::store::verify::Walk;
use crate::store::{StoreError, VerifyReport};
use ed25519_dalek::VerifyingKey;
use foldhash::HashMap;
use std::collections::BTreeMap;
use tokio_postgres::{Client, GenericClient};

/// Rows read at a time.
const CHUNK: i64 = 10_000;

fn corrupt(seq: i64, detail: String) -> StoreError {
    StoreError::Corrupt {
        seq: seq.max(0) as u64,
        detail,
    }
}

fn hash32(bytes: Vec<u8>, seq: i64, what: &str) -> Result<[u8; 32], StoreError> {
    bytes
        .try_into()
        .map_err(|_| corrupt(seq, format!("{what} is not 32 bytes")))
}

/// The signed checkpoints stored in the database, oldest first. Their signatures are the
/// caller's to check, against a public key kept outside the database.
///
/// # Errors
/// Database errors.
pub async fn stored_checkpoints(
    client: &impl GenericClient,
) -> Result<Vec<Checkpoint>, StoreError> {
    Ok(client
        .query(
            "SELECT seq, hash, signed_at, signature FROM checkpoints ORDER BY seq",
            &[],
        )
        .await?
        .iter()
        .map(|r| Checkpoint {
            seq: r.get::<_, i64>(0).max(0) as u64,
            hash: r.get(1),
            signed_at: r.get(2),
            signature: r.get(3),
        })
        .collect())
}

/// The retention records, checked by `key`, and every range they removed by first seq.
async fn signed_ranges(
    client: &impl GenericClient,
    key: Option<&VerifyingKey>,
) -> Result<(Ledger, BTreeMap<u64, LedgerRange>), StoreError> {
    let mut by_record: HashMap<i64, Vec<RangeRow>> = HashMap::default();
    let mut ranges = BTreeMap::new();
    for r in client
        .query(
            "SELECT first_seq, last_seq, prev_hash, last_hash, prune_id FROM pruned_ranges
             ORDER BY first_seq",
            &[],
        )
        .await?
    {
        let (first, last): (i64, i64) = (r.get(0), r.get(1));
        let (prev, hash): (Vec<u8>, Vec<u8>) = (r.get(2), r.get(3));
        let prune_id: i64 = r.get(4);
        ranges.insert(
            first.max(0) as u64,
            LedgerRange {
                range: PrunedRange {
                    first_seq: first.max(0) as u64,
                    last_seq: last.max(0) as u64,
                    prev_hash: hash32(prev.clone(), first, "a range's previous hash")?,
                    last_hash: hash32(hash.clone(), last, "a range's last hash")?,
                },
                prune_id,
            },
        );
        by_record
            .entry(prune_id)
            .or_default()
            .push((first, last, prev, hash));
    }
    let mut ledger = Ledger::default();
    for r in client
        .query(
            "SELECT id, signed_at, ranges, events, digest, signature FROM prunes ORDER BY id",
            &[],
        )
        .await?
    {
        let record = PruneRecord {
            id: r.get(0),
            signed_at: r.get(1),
            ranges: r.get(2),
            events: r.get(3),
            digest: r.get(4),
            signature: r.get(5),
        };
        let of_record = by_record.remove(&record.id).unwrap_or_default();
        ledger.check(key, &record, &of_record);
    }
    Ok((ledger, ranges))
}

/// Verifies every row against `checkpoints` (already checked for their signatures), with
/// retention records checked by `key`; calls `progress` with the count so far after every
/// chunk of rows. One snapshot throughout: appends carry on and are not part of it.
///
/// # Errors
/// Database errors, or a row that cannot be read back at all.
pub async fn verify(
    client: &mut Client,
    checkpoints: &[Checkpoint],
    key: Option<&VerifyingKey>,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<VerifyReport, StoreError> {
    verify_from(client, Seq(0), GENESIS, checkpoints, key, progress).await
}

/// [`verify`] of the rows after `after`, the seq of a row already verified whose hash is
/// `prev`: how the background check keeps up without walking the whole chain again.
///
/// # Errors
/// As [`verify`].
pub async fn verify_from(
    client: &mut Client,
    after: Seq,
    prev: [u8; 32],
    checkpoints: &[Checkpoint],
    key: Option<&VerifyingKey>,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<VerifyReport, StoreError> {
    let tx = super::query::snapshot_of(client).await?;
    let head = tx
        .query_one("SELECT seq, hash FROM chain_head WHERE id = 1", &[])
        .await?;
    let head_seq: i64 = head.get(0);
    let head_hash: Vec<u8> = head.get(1);
    let (ledger, ranges) = signed_ranges(&tx, key).await?;
    let mut walk = match Walk::start(after, prev, checkpoints) {
        Ok(walk) => walk,
        Err(report) => return Ok(*report),
    };
    let sql = format!(
        "SELECT {} FROM events WHERE seq > $1 ORDER BY seq LIMIT $2",
        sealed_columns()
    );
    let stmt = tx.prepare(&sql).await?;
    let salt_stmt = tx
        .prepare("SELECT subject, salt FROM subjects WHERE subject = ANY($1)")
        .await?;
    let mut range_at = |seq: u64| Ok(ranges.get(&seq).cloned());
    let mut after: i64 = after.0 as i64;
    'walk: loop {
        let rows = tx.query(&stmt, &[&after, &CHUNK]).await?;
        let Some(last) = rows.last() else {
            break;
        };
        after = last.get(0);
        let sealed = rows
            .iter()
            .map(SealedRow::read)
            .collect::<Result<Vec<_>, _>>()?;
        let mut subjects: Vec<&str> = sealed
            .iter()
            .filter(|s| !s.erased)
            .map(|s| s.stored.event.user.id.as_str())
            .collect();
        subjects.sort_unstable();
        subjects.dedup();
        let salts: HashMap<String, Vec<u8>> = tx
            .query(&salt_stmt, &[&subjects])
            .await?
            .into_iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        for s in &sealed {
            let salt = salts.get(&s.stored.event.user.id).map(Vec::as_slice);
            if !walk.step(&s.chain_row(salt), &ledger, &mut range_at)? {
                break 'walk;
            }
        }
        progress(walk.checked());
    }
    // The head row moves with every commit: a chain that ends before it lost its newest rows
    // (a head inside a retention range is where everything after it was removed).
    let last = walk.last_seq().0 as i64;
    let covered = ranges
        .values()
        .any(|r| r.range.last_seq as i64 == head_seq && last < head_seq);
    if last != head_seq && !covered {
        walk.broken(Break {
            seq: Seq(last.max(0) as u64 + 1),
            fault: Fault::Truncated,
            detail: format!(
                "the chain ends at seq {last}, but its head is seq {head_seq}: {} events were \
                 removed from its end",
                head_seq - last
            ),
        });
    }
    let report = walk.finish();
    if report.ok && last == head_seq && hex::encode(&head_hash) != report.head_hash {
        return Ok(VerifyReport {
            ok: false,
            first_break: Some(Break {
                seq: Seq(head_seq.max(0) as u64),
                fault: Fault::Edited,
                detail: "the chain's head row does not hold the last event's hash".into(),
            }),
            ..report
        });
    }
    tx.commit().await?;
    Ok(report)
}

/// Checks one event's seal in place: its content against its hash, its personal fields
/// against their digest, and its link to the row before it (or to the signed retention range
/// that removed that row). `None` when no event has this seq.
///
/// # Errors
/// Database errors.
pub async fn verify_one(
    client: &impl GenericClient,
    seq: Seq,
) -> Result<Option<EventSeal>, StoreError> {
    let sql = format!("SELECT {} FROM events WHERE seq = $1", sealed_columns());
    let Some(row) = client.query_opt(&sql, &[&(seq.0 as i64)]).await? else {
        return Ok(None);
    };
    let sealed = SealedRow::read(&row)?;
    let before = seq.0 as i64 - 1;
    let prev = if seq.0 <= 1 {
        Some(GENESIS)
    } else {
        let row = client
            .query_opt(
                "SELECT hash FROM events WHERE seq = $1
                 UNION ALL SELECT last_hash FROM pruned_ranges WHERE last_seq = $1
                 LIMIT 1",
                &[&before],
            )
            .await?;
        row.map(|r| hash32(r.get(0), before, "hash")).transpose()?
    };
    let seal = |verified: bool, problem: Option<String>| EventSeal {
        seq,
        hash: hex::encode(sealed.hash),
        prev_hash: hex::encode(sealed.prev),
        verified,
        problem,
    };
    let Some(prev) = prev else {
        return Ok(Some(seal(
            false,
            Some(format!("seq {before} before it is missing")),
        )));
    };
    let salt: Option<Vec<u8>> = client
        .query_opt(
            "SELECT salt FROM subjects WHERE subject = $1",
            &[&sealed.stored.event.user.id],
        )
        .await?
        .map(|r| r.get(0));
    let result = Verifier::resume(seq, prev).check(&sealed.chain_row(salt.as_deref()));
    Ok(Some(seal(result.is_ok(), result.err().map(|b| b.detail))))
}
