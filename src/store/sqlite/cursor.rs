//! Where each tailed file was read up to, in an SQLite store: the table, and a cursor saved
//! in the transaction of the events read before it or loaded at start.

use crate::store::cursor::TailCursor;
use rusqlite::{params, Connection, OptionalExtension, Transaction};

/// The cursors' table; created by every open (additive, so no schema version of its own).
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tail_cursors (
    source      TEXT PRIMARY KEY,
    dev         INTEGER NOT NULL,
    ino         INTEGER NOT NULL,
    offset      INTEGER NOT NULL,
    fingerprint BLOB    NOT NULL,
    fp_len      INTEGER NOT NULL,
    lines       INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) WITHOUT ROWID;
";

/// Stores `cursor` in `tx`, replacing the tail's previous one.
pub fn save(tx: &Transaction<'_>, cursor: &TailCursor, now_ms: i64) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT OR REPLACE INTO tail_cursors
             (source, dev, ino, offset, fingerprint, fp_len, lines, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        cursor.source,
        cursor.dev as i64,
        cursor.ino as i64,
        cursor.offset as i64,
        cursor.fingerprint.as_slice(),
        cursor.fp_len as i64,
        cursor.lines as i64,
        now_ms,
    ])?;
    Ok(())
}

/// The stored cursor of the tail named `source`, if it has stored anything.
pub fn load(conn: &Connection, source: &str) -> rusqlite::Result<Option<TailCursor>> {
    conn.query_row(
        "SELECT dev, ino, offset, fingerprint, fp_len, lines FROM tail_cursors WHERE source = ?1",
        [source],
        |r| {
            let fingerprint: Vec<u8> = r.get(3)?;
            Ok(TailCursor {
                source: source.to_string(),
                dev: r.get::<_, i64>(0)? as u64,
                ino: r.get::<_, i64>(1)? as u64,
                offset: r.get::<_, i64>(2)? as u64,
                fingerprint: fingerprint.try_into().unwrap_or([0; 32]),
                fp_len: r.get::<_, i64>(4)? as u64,
                lines: r.get::<_, i64>(5)? as u64,
            })
        },
    )
    .optional()
}
