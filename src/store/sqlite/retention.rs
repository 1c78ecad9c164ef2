//! Retention in an SQLite store: the tables of removed ranges and their signed records, the
//! writer's pruning transaction (the rules and records are `store::retention`'s, shared with
//! PostgreSQL), giving freed pages back, and the reads verification makes of the ledger.

use crate::store::chain::Hash32;
use crate::store::retention::{
    digest, doomed_runs, now_text, signed_record, Doomed, Ledger, LedgerRange, PruneRecord,
    PrunedRange, RetentionPolicy, CHUNK,
};
use crate::store::StoreError;
use ed25519_dalek::{SigningKey, VerifyingKey};
use rusqlite::{params, Connection, OptionalExtension, Transaction};

/// The ranges and their signed records; part of the schema (8).
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS prunes (
    id        INTEGER PRIMARY KEY,
    signed_at TEXT    NOT NULL,
    ranges    INTEGER NOT NULL,
    events    INTEGER NOT NULL,
    digest    BLOB    NOT NULL,
    signature BLOB    NOT NULL
);
CREATE TABLE IF NOT EXISTS pruned_ranges (
    first_seq INTEGER PRIMARY KEY,
    last_seq  INTEGER NOT NULL,
    prev_hash BLOB    NOT NULL,
    last_hash BLOB    NOT NULL,
    prune_id  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS pruned_ranges_prune ON pruned_ranges (prune_id, first_seq);
";

/// What one pruning transaction removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Chunk {
    /// Events removed.
    pub events: u64,
    /// Ranges recorded.
    pub ranges: u64,
    /// Event time of the oldest and newest removed event, ms.
    pub span: Option<(i64, i64)>,
    /// The seqs removed, for the search index.
    pub seqs: Vec<u64>,
    /// Whether more expired events wait for another transaction.
    pub more: bool,
}

/// Removes up to [`CHUNK`] expired events inside `tx`: records their ranges under a new
/// signed record, takes them out of the counters, recomputes the rollups of the hours they
/// were in, and deletes them. `head` is never removed.
///
/// # Errors
/// Database errors; nothing is removed then.
pub fn prune_chunk(
    tx: &Transaction<'_>,
    key: &SigningKey,
    policy: &RetentionPolicy,
    now_ms: i64,
    head: u64,
) -> Result<Chunk, StoreError> {
    let horizon = policy.horizon(now_ms);
    let mut doomed: Vec<(u64, i64)> = Vec::new();
    let mut more = false;
    {
        // Candidates come off the time index: nothing newer than the shortest period
        // qualifies.
        let mut stmt = tx.prepare(
            "SELECT seq, ts, level, category FROM events WHERE ts < ?1 AND seq < ?2
             ORDER BY ts",
        )?;
        let mut rows = stmt.query(params![horizon, head as i64])?;
        while let Some(row) = rows.next()? {
            let ts: i64 = row.get(1)?;
            let (level, category): (String, String) = (row.get(2)?, row.get(3)?);
            if policy.expired(ts, &level, &category, now_ms) {
                if doomed.len() == CHUNK {
                    more = true;
                    break;
                }
                doomed.push((row.get(0)?, ts));
            }
        }
    }
    if doomed.is_empty() {
        return Ok(Chunk::default());
    }
    let Doomed { seqs, span, runs } = doomed_runs(doomed);
    let mut ranges = Vec::with_capacity(runs.len());
    {
        let mut prev = tx.prepare_cached("SELECT prev_hash FROM events WHERE seq = ?1")?;
        let mut hash = tx.prepare_cached("SELECT hash FROM events WHERE seq = ?1")?;
        for &(first, last) in &runs {
            let p: Vec<u8> = prev.query_row([first as i64], |r| r.get(0))?;
            let h: Vec<u8> = hash.query_row([last as i64], |r| r.get(0))?;
            ranges.push(PrunedRange {
                first_seq: first,
                last_seq: last,
                prev_hash: to32(p, first)?,
                last_hash: to32(h, last)?,
            });
        }
    }

    // The record first, so its id is known; its signature covers the ranges' digest.
    let (signed_at, d) = (now_text(), digest(&ranges));
    tx.execute(
        "INSERT INTO prunes (signed_at, ranges, events, digest, signature)
         VALUES (?1, ?2, ?3, ?4, x'')",
        params![
            signed_at,
            ranges.len() as i64,
            seqs.len() as i64,
            d.to_vec()
        ],
    )?;
    let id = tx.last_insert_rowid();
    let record = signed_record(key, id, &ranges, seqs.len() as u64, signed_at);
    tx.execute(
        "UPDATE prunes SET signature = ?1 WHERE id = ?2",
        params![record.signature, id],
    )?;
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO pruned_ranges (first_seq, last_seq, prev_hash, last_hash, prune_id)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for r in &ranges {
            insert.execute(params![
                r.first_seq as i64,
                r.last_seq as i64,
                r.prev_hash.to_vec(),
                r.last_hash.to_vec(),
                id
            ])?;
        }
    }

    // The doomed seqs go into a temporary table, so counters and deletes are set operations.
    tx.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS doomed (seq INTEGER PRIMARY KEY);
         DELETE FROM temp.doomed;",
    )?;
    {
        let mut insert = tx.prepare_cached("INSERT INTO temp.doomed (seq) VALUES (?1)")?;
        for &s in &seqs {
            insert.execute([s as i64])?;
        }
    }
    tx.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS doomed_counts (name TEXT PRIMARY KEY, n INTEGER);
         DELETE FROM temp.doomed_counts;
         INSERT INTO temp.doomed_counts (name, n)
             SELECT 'total', COUNT(*) FROM events WHERE seq IN (SELECT seq FROM temp.doomed);
         INSERT INTO temp.doomed_counts (name, n)
             SELECT 'outcome:' || outcome, COUNT(*) FROM events
             WHERE seq IN (SELECT seq FROM temp.doomed) GROUP BY outcome;
         INSERT INTO temp.doomed_counts (name, n)
             SELECT 'level:' || level, COUNT(*) FROM events
             WHERE seq IN (SELECT seq FROM temp.doomed) GROUP BY level;
         INSERT INTO temp.doomed_counts (name, n)
             SELECT 'category:' || category, COUNT(*) FROM events
             WHERE seq IN (SELECT seq FROM temp.doomed) GROUP BY category;
         INSERT INTO temp.doomed_counts (name, n)
             SELECT 'action:' || action, COUNT(*) FROM events
             WHERE seq IN (SELECT seq FROM temp.doomed) GROUP BY action;
         UPDATE counters SET value = value - d.n FROM temp.doomed_counts AS d
             WHERE counters.name = d.name;
         DELETE FROM counters WHERE value <= 0 AND name != 'total';
         DELETE FROM events WHERE seq IN (SELECT seq FROM temp.doomed);
         DELETE FROM temp.doomed;
         DELETE FROM temp.doomed_counts;",
    )?;
    super::rollup::rebuild_span(tx, span.0, span.1)?;
    Ok(Chunk {
        events: seqs.len() as u64,
        ranges: ranges.len() as u64,
        span: Some(span),
        seqs,
        more,
    })
}

fn to32(v: Vec<u8>, seq: u64) -> Result<Hash32, StoreError> {
    v.try_into().map_err(|_| StoreError::Corrupt {
        seq,
        detail: "stored hash is not 32 bytes".into(),
    })
}

/// Gives the pages freed by removals back to the file system. A database created before
/// schema 8 has no free-page map: it is rebuilt once (`VACUUM`) and is incremental after.
///
/// # Errors
/// Database errors.
pub fn release_free_pages(conn: &Connection) -> Result<u64, StoreError> {
    let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    if free == 0 {
        return Ok(0);
    }
    let mode: i64 = conn.query_row("PRAGMA auto_vacuum", [], |r| r.get(0))?;
    if mode == 2 {
        conn.execute_batch("PRAGMA incremental_vacuum")?;
    } else {
        conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL; VACUUM;")?;
    }
    Ok((free * page_size) as u64)
}

/// Checks every prune record of the database: its signature under `key` and the digest
/// of its ranges. Streams the ranges in one pass.
///
/// # Errors
/// Database errors.
pub fn ledger(conn: &Connection, key: Option<&VerifyingKey>) -> Result<Ledger, StoreError> {
    let mut ledger = Ledger::default();
    if !super::schema::table_exists(conn, "prunes")? {
        return Ok(ledger);
    }
    let mut records = conn.prepare(
        "SELECT id, signed_at, ranges, events, digest, signature FROM prunes ORDER BY id",
    )?;
    let mut ranges = conn.prepare(
        "SELECT first_seq, last_seq, prev_hash, last_hash FROM pruned_ranges
         WHERE prune_id = ?1 ORDER BY first_seq",
    )?;
    let mut rows = records.query([])?;
    while let Some(row) = rows.next()? {
        let record = PruneRecord {
            id: row.get(0)?,
            signed_at: row.get(1)?,
            ranges: row.get(2)?,
            events: row.get(3)?,
            digest: row.get(4)?,
            signature: row.get(5)?,
        };
        let mut rs = ranges.query([record.id])?;
        let mut of_record = Vec::new();
        while let Some(r) = rs.next()? {
            of_record.push((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?));
        }
        ledger.check(key, &record, &of_record);
    }
    Ok(ledger)
}

/// The pruned ranges after a seq, in seq order, read as verification walks the events.
pub struct Ranges<'c> {
    stmt: rusqlite::Statement<'c>,
}

impl<'c> Ranges<'c> {
    /// Prepares the reader; `None` on a database without the table.
    ///
    /// # Errors
    /// Database errors.
    pub fn new(conn: &'c Connection) -> Result<Option<Ranges<'c>>, StoreError> {
        if !super::schema::table_exists(conn, "pruned_ranges")? {
            return Ok(None);
        }
        Ok(Some(Ranges {
            stmt: conn.prepare(
                "SELECT first_seq, last_seq, prev_hash, last_hash, prune_id FROM pruned_ranges
                 WHERE first_seq = ?1",
            )?,
        }))
    }

    /// The range that starts exactly at `seq`, if any.
    ///
    /// # Errors
    /// Database errors, or a stored hash of the wrong size.
    pub fn starting_at(&mut self, seq: u64) -> Result<Option<LedgerRange>, StoreError> {
        let row: Option<(i64, Vec<u8>, Vec<u8>, i64)> = self
            .stmt
            .query_row([seq as i64], |r| {
                Ok((r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .optional()?;
        let Some((last, prev, hash, prune_id)) = row else {
            return Ok(None);
        };
        Ok(Some(LedgerRange {
            range: PrunedRange {
                first_seq: seq,
                last_seq: last.max(0) as u64,
                prev_hash: to32(prev, seq)?,
                last_hash: to32(hash, seq)?,
            },
            prune_id,
        }))
    }
}

/// The range that ends exactly at `seq`, for checking one row's link on its own.
///
/// # Errors
/// Database errors.
pub fn range_ending_at(conn: &Connection, seq: u64) -> Result<Option<Hash32>, StoreError> {
    if !super::schema::table_exists(conn, "pruned_ranges")? {
        return Ok(None);
    }
    let hash: Option<Vec<u8>> = conn
        .prepare_cached("SELECT last_hash FROM pruned_ranges WHERE last_seq = ?1")?
        .query_row([seq as i64], |r| r.get(0))
        .optional()?;
    hash.map(|h| to32(h, seq)).transpose()
}
