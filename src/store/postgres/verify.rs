//! Walking the chain stored in PostgreSQL: every row's seal and link, in seq order, with the
//! same checks as on SQLite (`store::chain::Verifier`), and the head row against the last
//! event, so rows cut from the chain's end are caught.

use crate::model::Seq;
use crate::store::chain::{ChainRow, Fault, Verifier};
use crate::store::row::{sealed_from_row, EVENT_COLUMNS, EVENT_COLUMN_COUNT};
use crate::store::{StoreError, VerifyReport};
use foldhash::HashMap;
use tokio_postgres::Client;

/// Rows read at a time.
const CHUNK: i64 = 10_000;

/// Verifies every row, calling `progress` with the count so far after every chunk.
///
/// # Errors
/// Database errors, or a row that cannot be read back at all.
pub async fn verify(
    client: &mut Client,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<VerifyReport, StoreError> {
    // One snapshot for the whole walk: appends carry on, and are not part of it.
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let head = tx
        .query_one("SELECT seq, hash FROM chain_head WHERE id = 1", &[])
        .await?;
    let head_seq: i64 = head.get(0);
    let head_hash: Vec<u8> = head.get(1);
    let n = EVENT_COLUMN_COUNT;
    let sql = format!(
        "SELECT {EVENT_COLUMNS}, pii_digest, prev_hash, erased FROM events
         WHERE seq > $1 ORDER BY seq LIMIT $2"
    );
    let stmt = tx.prepare(&sql).await?;
    let salt_stmt = tx
        .prepare("SELECT subject, salt FROM subjects WHERE subject = ANY($1)")
        .await?;
    let mut verifier = Verifier::default();
    let mut last: i64 = 0;
    let mut first_break = None;
    'walk: loop {
        let rows = tx.query(&stmt, &[&last, &CHUNK]).await?;
        if rows.is_empty() {
            break;
        }
        let mut sealed = Vec::with_capacity(rows.len());
        let mut subjects: Vec<String> = Vec::new();
        for row in &rows {
            let seq: i64 = row.get(0);
            let (stored, personal) = sealed_from_row(row).map_err(|e| StoreError::Corrupt {
                seq: seq.max(0) as u64,
                detail: format!("column {}: {}", e.idx, e.detail),
            })?;
            let bytes = |i: usize, what: &str| -> Result<[u8; 32], StoreError> {
                row.get::<_, Vec<u8>>(i)
                    .try_into()
                    .map_err(|_| StoreError::Corrupt {
                        seq: seq.max(0) as u64,
                        detail: format!("{what} is not 32 bytes"),
                    })
            };
            let hash: [u8; 32] = hex::decode(&stored.hash)
                .ok()
                .and_then(|h| h.try_into().ok())
                .ok_or_else(|| StoreError::Corrupt {
                    seq: seq.max(0) as u64,
                    detail: "hash is not 32 bytes".into(),
                })?;
            let erased: bool = row.get(n + 2);
            if !erased {
                subjects.push(stored.event.user.id.clone());
            }
            sealed.push((
                stored,
                personal,
                bytes(n, "pii digest")?,
                bytes(n + 1, "previous hash")?,
                hash,
                erased,
            ));
        }
        subjects.sort_unstable();
        subjects.dedup();
        let salts: HashMap<String, Vec<u8>> = tx
            .query(&salt_stmt, &[&subjects])
            .await?
            .into_iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        for (stored, personal, pii, prev, hash, erased) in &sealed {
            let row = ChainRow {
                seq: stored.seq,
                event: &stored.event,
                event_id: &stored.event_id.0,
                received_at_ms: stored.received_at.timestamp_millis(),
                pii_digest: *pii,
                prev_hash: *prev,
                hash: *hash,
                salt: salts.get(&stored.event.user.id).map(Vec::as_slice),
                erased: *erased,
                personal: personal.as_deref(),
            };
            if let Err(b) = verifier.check(&row) {
                first_break = Some(b);
                break 'walk;
            }
            last = stored.seq.0 as i64;
        }
        progress(verifier.checked());
    }
    // The head row moves with every commit: a chain that ends before it lost its newest rows.
    if first_break.is_none() && (last != head_seq || verifier.head_hash().as_slice() != head_hash) {
        first_break = Some(crate::store::chain::Break {
            seq: Seq(last.max(0) as u64 + 1),
            fault: Fault::Truncated,
            detail: format!(
                "the chain ends at seq {last}, but its head is seq {head_seq}: {} events were \
                 removed from its end",
                head_seq - last
            ),
        });
    }
    tx.commit().await?;
    Ok(VerifyReport {
        ok: first_break.is_none(),
        checked: verifier.checked(),
        head_seq: Seq(last.max(0) as u64),
        head_hash: hex::encode(verifier.head_hash()),
        first_break,
        checkpoints: 0,
        pruned: 0,
        checkpoint_error: None,
    })
}
