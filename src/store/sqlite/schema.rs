//! The database layout and connection set-up: WAL, fsync on commit, and the tables for events,
//! per-subject salts, running counters and login sessions.

use crate::store::StoreError;
use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::time::Duration;

/// The schema version this build writes; a newer database is refused rather than misread.
pub const SCHEMA_VERSION: i64 = 12;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS events (
    seq               INTEGER PRIMARY KEY,
    -- Unique by construction and found through the seq it carries (schema 10); databases
    -- created before keep the UNIQUE index they were made with (see `query::by_id`).
    event_id          TEXT    NOT NULL,
    ts                INTEGER NOT NULL,
    received_at       INTEGER NOT NULL,
    level             TEXT    NOT NULL,
    category          TEXT    NOT NULL,
    action            TEXT    NOT NULL,
    outcome           TEXT    NOT NULL,
    source            TEXT    NOT NULL,
    user_id           TEXT    NOT NULL,
    username          TEXT,
    description       TEXT,
    entity_type       TEXT,
    entity_id         TEXT,
    entity_name       TEXT,
    req_method        TEXT,
    req_path          TEXT,
    req_ip            TEXT,
    req_user_agent    TEXT,
    req_status        INTEGER,
    req_response_time INTEGER,
    country           TEXT,
    city              TEXT,
    metadata          TEXT,
    changes           TEXT,
    system            TEXT,
    risk              INTEGER,
    correlation_id    TEXT,
    session_id        TEXT,
    pii_digest        BLOB    NOT NULL,
    prev_hash         BLOB    NOT NULL,
    hash              BLOB    NOT NULL,
    erased            INTEGER NOT NULL DEFAULT 0,
    -- Canonical JSON of the reasons for a risk score assigned at ingest (schema 6).
    risk_reasons      TEXT,
    -- Canonical JSON of the metadata fields declared personal (schema 9): sealed through
    -- pii_digest rather than the content hash, and blanked when the subject is erased.
    personal          TEXT,
    -- The credential that submitted the event (schema 11), sealed in its hash.
    submitted_by      TEXT
);
-- Time is the one secondary b-tree: users and actions are found through the search index,
-- whose upkeep is off the writer's path (a b-tree on users halved ingest speed).
CREATE INDEX IF NOT EXISTS events_ts     ON events (ts);

-- The full-text index lives in its own file: see `store::sqlite::index`.

-- One salt per data subject, apart from the events: deleting it crypto-shreds the subject.
CREATE TABLE IF NOT EXISTS subjects (
    subject TEXT PRIMARY KEY,
    salt    BLOB NOT NULL
) WITHOUT ROWID;

-- Running totals kept in the same transaction as the events they count.
CREATE TABLE IF NOT EXISTS counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;

-- Dashboard login sessions, by SHA-256 of the cookie value.
CREATE TABLE IF NOT EXISTS sessions (
    token_hash BLOB PRIMARY KEY,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
";

fn configure(conn: &Connection) -> Result<(), StoreError> {
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Memory-mapped reads spare a pread syscall per page (up to 1 GiB of the file).
    conn.pragma_update(None, "mmap_size", 1_i64 << 30)?;
    Ok(())
}

/// Opens the connection that writes: creates the schema, sets WAL and the fsync policy.
/// Returns it with what makes its commits durable.
pub fn open_writer(
    path: &Path,
    durable: bool,
) -> Result<(Connection, super::flush::Sync), StoreError> {
    let conn = Connection::open(path)?;
    configure(&conn)?;
    // Takes effect only on a new file (before its first table): retention can then give
    // freed pages back a few at a time. Older files are converted by their first pruning.
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
    // Deleted and moved content is overwritten with zeros, so an erased subject's values
    // do not linger in free space within pages or on the free list.
    conn.pragma_update(None, "secure_delete", "ON")?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    let wal = mode.eq_ignore_ascii_case("wal");
    if !wal {
        tracing::warn!(%mode, "SQLite refused WAL mode; commits will be slower");
    }
    // An acknowledged event must survive power loss. In WAL mode the flusher syncs the log
    // after each commit, off the writer's thread (NORMAL keeps the file consistent until then;
    // see `flush`); otherwise SQLite syncs inside the commit (FULL).
    let (level, sync) = match (durable, wal) {
        (false, _) => ("OFF", super::flush::Sync::Done),
        (true, true) => ("NORMAL", super::flush::Sync::Wal(wal_path(path))),
        (true, false) => ("FULL", super::flush::Sync::Done),
    };
    conn.pragma_update(None, "synchronous", level)?;
    // The writer walks every index on every insert; SQLite's default 2 MiB cache evicted index
    // pages between batches (measured: 42k → 54k events/s at 300k events with 64 MiB).
    conn.pragma_update(None, "cache_size", -65_536)?;
    // Checkpoints copy each changed page from the WAL to the database once per checkpoint;
    // the rollups and the b-trees' right edges change in every commit, so checkpointing
    // every 64 MiB rather than SQLite's 4 MiB copies each far fewer times.
    conn.pragma_update(None, "wal_autocheckpoint", 16_384)?;
    conn.execute_batch(SCHEMA)?;
    conn.execute_batch(super::rollup::SCHEMA)?;
    conn.execute_batch(crate::store::risk::SCHEMA)?;
    conn.execute_batch(super::retention::SCHEMA)?;
    conn.execute_batch(super::cursor::SCHEMA)?;
    let version: Option<String> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .ok();
    match version.and_then(|v| v.parse::<i64>().ok()) {
        None => {
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?1)",
                [SCHEMA_VERSION.to_string()],
            )?;
            conn.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES (?1, '0')",
                [crate::store::risk::THROUGH_KEY],
            )?;
        }
        Some(v) if v > SCHEMA_VERSION => {
            return Err(StoreError::Corrupt {
                seq: 0,
                detail: format!("schema version {v} is newer than this build ({SCHEMA_VERSION})"),
            });
        }
        Some(v) if v < SCHEMA_VERSION => {
            if v < 3 {
                upgrade_to_3(&conn)?;
            }
            if v < 4 {
                upgrade_to_4(&conn)?;
            }
            if v < 5 {
                upgrade_to_5(&conn)?;
            }
            if v < 6 {
                upgrade_to_6(&conn)?;
            }
            if v < 7 {
                upgrade_to_7(&conn)?;
            }
            if v < 9 {
                add_column(&conn, "personal")?;
            }
            if v < 11 {
                add_column(&conn, "submitted_by")?;
            }
            if v < 12 {
                count_sources(&conn)?;
            }
            set_version(&conn)?;
            tracing::info!(from = v, to = SCHEMA_VERSION, "database schema upgraded");
        }
        Some(_) => {}
    }
    // What opening created or upgraded is on disk before the first append builds on it.
    sync.sync()?;
    Ok((conn, sync))
}

/// The write-ahead log of the database at `path`.
pub(crate) fn wal_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-wal");
    std::path::PathBuf::from(name)
}

/// Schema 3 moved the full-text index to its own file, dropped the user and action b-trees
/// and counts actions in `counters`. One transaction: an interrupted upgrade is redone.
fn upgrade_to_3(conn: &Connection) -> Result<(), StoreError> {
    let tx = conn.unchecked_transaction()?;
    tx.execute_batch(
        "DELETE FROM counters WHERE name >= 'action:' AND name < 'action;';
         INSERT INTO counters (name, value)
             SELECT 'action:' || action, COUNT(*) FROM events GROUP BY action;
         DROP INDEX IF EXISTS events_user;
         DROP INDEX IF EXISTS events_action;",
    )?;
    super::index::drop_legacy(&tx)?;
    tx.execute(
        "UPDATE meta SET value = '3' WHERE key = 'schema_version'",
        [],
    )?;
    tx.commit()?;
    Ok(())
}

/// Schema 4 added the rollups, computed here from the events already stored.
fn upgrade_to_4(conn: &Connection) -> Result<(), StoreError> {
    let tx = conn.unchecked_transaction()?;
    super::rollup::rebuild(&tx)?;
    tx.execute(
        "UPDATE meta SET value = '4' WHERE key = 'schema_version'",
        [],
    )?;
    tx.commit()?;
    Ok(())
}

/// Schema 5 added the hour totals, computed here from the minute rollups.
fn upgrade_to_5(conn: &Connection) -> Result<(), StoreError> {
    let tx = conn.unchecked_transaction()?;
    super::rollup::rebuild_hour_totals(&tx)?;
    tx.execute(
        "UPDATE meta SET value = '5' WHERE key = 'schema_version'",
        [],
    )?;
    tx.commit()?;
    Ok(())
}

/// Schema 6 added the reasons of assigned risk scores. Events stored before it keep no
/// reasons (their scores were the senders'); the behaviour profiles start empty and fill as
/// events arrive.
fn upgrade_to_6(conn: &Connection) -> Result<(), StoreError> {
    let tx = conn.unchecked_transaction()?;
    let has_column: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM pragma_table_info('events') WHERE name = 'risk_reasons')",
        [],
        |r| r.get(0),
    )?;
    if !has_column {
        tx.execute_batch("ALTER TABLE events ADD COLUMN risk_reasons TEXT")?;
    }
    tx.execute(
        "UPDATE meta SET value = '6' WHERE key = 'schema_version'",
        [],
    )?;
    tx.commit()?;
    Ok(())
}

/// Schema 7 writes the risk profiles back every few seconds rather than at every commit,
/// and records the seq the table is written through. Schema 6 wrote them at every commit, so
/// its table is complete up to the head.
fn upgrade_to_7(conn: &Connection) -> Result<(), StoreError> {
    let tx = conn.unchecked_transaction()?;
    tx.execute(
        "INSERT OR REPLACE INTO meta (key, value)
         SELECT ?1, CAST(COALESCE(MAX(seq), 0) AS TEXT) FROM events",
        [crate::store::risk::THROUGH_KEY],
    )?;
    tx.execute(
        "UPDATE meta SET value = '7' WHERE key = 'schema_version'",
        [],
    )?;
    tx.commit()?;
    Ok(())
}

/// Schema 12 counts events per hour by source as well; the hours already stored are counted
/// here. One transaction: an interrupted upgrade counts them again from the start.
fn count_sources(conn: &Connection) -> Result<(), StoreError> {
    let tx = conn.unchecked_transaction()?;
    super::rollup::count_hours_of(&tx, "source")?;
    tx.commit()?;
    Ok(())
}

/// Adds a text column to `events` unless an interrupted upgrade added it already. Schema 9
/// keeps declared personal metadata in `personal`; schema 11 records which credential
/// submitted each event in `submitted_by`. Events stored before either have none, and stay
/// sealed as they were.
fn add_column(conn: &Connection, column: &str) -> Result<(), StoreError> {
    let has_column: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM pragma_table_info('events') WHERE name = ?1)",
        [column],
        |r| r.get(0),
    )?;
    if !has_column {
        conn.execute_batch(&format!("ALTER TABLE events ADD COLUMN {column} TEXT"))?;
    }
    Ok(())
}

/// Schema 8 added the pruned ranges and their signed records (created above, empty), and
/// overwrites deleted content; nothing to convert. Schema 10 creates new event tables without
/// a UNIQUE index on `event_id`; older tables keep theirs (SQLite cannot drop it in place)
/// and lookups use it for ids that do not carry their seq.
fn set_version(conn: &Connection) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE meta SET value = ?1 WHERE key = 'schema_version'",
        [SCHEMA_VERSION.to_string()],
    )?;
    Ok(())
}

pub fn table_exists(conn: &Connection, name: &str) -> Result<bool, StoreError> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = ?1)",
        [name],
        |r| r.get(0),
    )?)
}

/// Opens a connection that only reads, with the search index attached as `search` when given.
pub fn open_reader(path: &Path, search: Option<&Path>) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    configure(&conn)?;
    if let Some(search) = search {
        super::index::attach(&conn, search)?;
    }
    conn.pragma_update(None, "query_only", "ON")?;
    Ok(conn)
}
