//! `trailwatch migrate --to`: copies an SQLite data directory into an empty PostgreSQL
//! database as it is (every event with its seq and hashes, the salts, counters and risk
//! profiles, the signed checkpoints and retention records), so the chain verifies on the copy
//! and the next event appended there continues it. One read snapshot of SQLite (a running
//! server may keep appending; what it appends after is not copied) and one PostgreSQL
//! transaction: a failed copy leaves the database as empty as it was.

use super::partition;
use crate::store::checkpoint::{self, Checkpoint};
use crate::store::row::EVENT_COLUMNS;
use crate::store::sqlite::schema;
use crate::store::{StoreError, DB_FILE};
use futures::pin_mut;
use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{NoTls, Transaction};

/// Events read from SQLite and written to PostgreSQL at a time.
const CHUNK: i64 = 5_000;

/// What a copy carried over.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CopyReport {
    pub events: u64,
    pub subjects: u64,
    pub checkpoints: u64,
    pub retention_runs: u64,
    /// The chain's head on the copy.
    pub head_seq: u64,
}

/// The events columns as PostgreSQL types them, in the order of [`EVENT_COLUMNS`] followed
/// by `pii_digest, prev_hash, erased`.
const EVENT_TYPES: [Type; 36] = [
    Type::INT8,  // seq
    Type::TEXT,  // event_id
    Type::INT8,  // ts
    Type::INT8,  // received_at
    Type::TEXT,  // level
    Type::TEXT,  // category
    Type::TEXT,  // action
    Type::TEXT,  // outcome
    Type::TEXT,  // source
    Type::TEXT,  // user_id
    Type::TEXT,  // username
    Type::TEXT,  // description
    Type::TEXT,  // entity_type
    Type::TEXT,  // entity_id
    Type::TEXT,  // entity_name
    Type::TEXT,  // req_method
    Type::TEXT,  // req_path
    Type::TEXT,  // req_ip
    Type::TEXT,  // req_user_agent
    Type::INT8,  // req_status
    Type::INT8,  // req_response_time
    Type::TEXT,  // country
    Type::TEXT,  // city
    Type::TEXT,  // metadata
    Type::TEXT,  // changes
    Type::TEXT,  // system
    Type::INT8,  // risk
    Type::TEXT,  // correlation_id
    Type::TEXT,  // session_id
    Type::BYTEA, // hash
    Type::TEXT,  // risk_reasons
    Type::TEXT,  // personal
    Type::TEXT,  // submitted_by
    Type::BYTEA, // pii_digest
    Type::BYTEA, // prev_hash
    Type::BOOL,  // erased
];

type Cell = Box<dyn ToSql + Sync + Send>;

/// An SQLite value as the PostgreSQL type of its column; `None` for a value that type cannot
/// hold (which fails the copy rather than bending the data).
fn cell(value: Value, ty: &Type) -> Option<Cell> {
    Some(match (value, ty) {
        (Value::Null, t) if *t == Type::INT8 => Box::new(None::<i64>),
        (Value::Null, t) if *t == Type::TEXT => Box::new(None::<String>),
        (Value::Null, t) if *t == Type::BYTEA => Box::new(None::<Vec<u8>>),
        (Value::Integer(i), t) if *t == Type::INT8 => Box::new(i),
        (Value::Integer(i), t) if *t == Type::BOOL => Box::new(i != 0),
        (Value::Text(s), t) if *t == Type::TEXT => Box::new(s),
        (Value::Blob(b), t) if *t == Type::BYTEA => Box::new(b),
        _ => return None,
    })
}

/// A value derived from a whole row, added after its columns.
type Derived<'a> = &'a dyn Fn(&rusqlite::Row<'_>) -> Result<Cell, StoreError>;

/// Rows of `sql` (with `params`) from SQLite, each value typed as `types` says, and `derived`
/// after them when given.
fn read_rows(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    types: &[Type],
    derived: Option<Derived<'_>>,
) -> Result<Vec<Vec<Cell>>, StoreError> {
    let mut stmt = conn.prepare(sql)?;
    let mut rows = stmt.query(params)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let mut cells = Vec::with_capacity(types.len());
        for (i, ty) in types.iter().enumerate() {
            let value: Value = row.get(i)?;
            let kind = value.data_type();
            cells.push(cell(value, ty).ok_or_else(|| StoreError::Corrupt {
                seq: 0,
                detail: format!("{sql}: column {i} holds {kind}, not {ty}"),
            })?);
        }
        if let Some(derive) = derived {
            cells.push(derive(row)?);
        }
        out.push(cells);
    }
    Ok(out)
}

/// Writes `rows` into `table` (`columns`) with one binary COPY.
async fn copy_rows(
    tx: &Transaction<'_>,
    table: &str,
    columns: &str,
    types: &[Type],
    rows: &[Vec<Cell>],
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let sink = tx
        .copy_in(&format!("COPY {table} ({columns}) FROM STDIN BINARY"))
        .await?;
    let writer = BinaryCopyInWriter::new(sink, types);
    pin_mut!(writer);
    for row in rows {
        let values: Vec<&(dyn ToSql + Sync)> = row
            .iter()
            .map(|c| c.as_ref() as &(dyn ToSql + Sync))
            .collect();
        writer.as_mut().write(&values).await?;
    }
    writer.finish().await?;
    Ok(())
}

/// A small table copied whole, when the SQLite database has it.
async fn copy_table(
    conn: &Connection,
    tx: &Transaction<'_>,
    table: &str,
    columns: &str,
    types: &[Type],
) -> Result<u64, StoreError> {
    if !schema::table_exists(conn, table)? {
        return Ok(0);
    }
    let rows = read_rows(
        conn,
        &format!("SELECT {columns} FROM {table}"),
        [],
        types,
        None,
    )?;
    copy_rows(tx, table, columns, types, &rows).await?;
    Ok(rows.len() as u64)
}

/// Copies the SQLite data directory `data_dir` into the empty database at `url` (migrated
/// first), calling `progress` with the events copied so far.
///
/// # Errors
/// The directory holds no database, the PostgreSQL database already holds events, a value
/// does not fit its column, or a database error (nothing is then copied).
pub async fn copy_sqlite(
    data_dir: &Path,
    url: &str,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<CopyReport, StoreError> {
    let path = data_dir.join(DB_FILE);
    if !path.exists() {
        return Err(StoreError::Io(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("no database at {}", path.display()),
        )));
    }
    let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    // One snapshot for every read below (WAL keeps it while a server appends).
    conn.execute_batch("BEGIN")?;
    conn.query_row("SELECT COUNT(*) FROM meta", [], |_| Ok(()))?;

    let (mut client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "copy session ended");
        }
    });
    super::migrate(&mut client).await?;
    let (head, any): (i64, bool) = {
        let r = client
            .query_one(
                "SELECT (SELECT seq FROM chain_head WHERE id = 1),
                        EXISTS (SELECT 1 FROM events)",
                &[],
            )
            .await?;
        (r.get(0), r.get(1))
    };
    if head != 0 || any {
        return Err(StoreError::Postgres(format!(
            "the database already holds events (head seq {head}); migrate copies into an \
             empty database only"
        )));
    }
    let (first_at, last_at): (Option<i64>, Option<i64>) = conn.query_row(
        "SELECT MIN(received_at), MAX(received_at) FROM events",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let now = chrono::Utc::now().timestamp_millis();
    partition::ensure_range(
        &mut client,
        first_at.unwrap_or(now),
        last_at.unwrap_or(now).max(now),
    )
    .await?;

    let mut report = CopyReport::default();
    let tx = client.transaction().await?;
    // Events go through a staging table that holds their words as text: PostgreSQL's own
    // parser would split them differently (see `postgres::words`), and COPY has no cast.
    let columns = format!("{EVENT_COLUMNS}, pii_digest, prev_hash, erased");
    tx.batch_execute(
        "CREATE TEMP TABLE copied_events (LIKE events) ON COMMIT DROP;
         ALTER TABLE copied_events ALTER COLUMN words TYPE text",
    )
    .await?;
    let select = format!("SELECT {columns} FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2");
    let mut types = EVENT_TYPES.to_vec();
    types.push(Type::TEXT);
    // Ids made before SQLite schema 3 do not carry their seq: found by value on the copy.
    let legacy_ids = std::cell::Cell::new(false);
    let words = |row: &rusqlite::Row<'_>| -> Result<Cell, StoreError> {
        let event = crate::store::row::event_from_row(row).map_err(|e| StoreError::Corrupt {
            seq: row.get::<_, i64>(0).unwrap_or(0).max(0) as u64,
            detail: format!("column {}: {}", e.idx, e.detail),
        })?;
        if !crate::store::seal::seq_candidates(&event.event_id.0).contains(&event.seq.0) {
            legacy_ids.set(true);
        }
        Ok(Box::new(super::words::tsvector(&event.event)))
    };
    let staged = format!("{columns}, words");
    let move_staged = format!(
        "INSERT INTO events ({staged}) SELECT {columns}, words::tsvector FROM copied_events;
         TRUNCATE copied_events"
    );
    let mut after = 0i64;
    loop {
        let rows = read_rows(
            &conn,
            &select,
            rusqlite::params![after, CHUNK],
            &EVENT_TYPES,
            Some(&words),
        )?;
        if rows.is_empty() {
            break;
        }
        copy_rows(&tx, "copied_events", &staged, &types, &rows).await?;
        tx.batch_execute(&move_staged).await?;
        report.events += rows.len() as u64;
        after = conn.query_row(
            "SELECT MAX(seq) FROM (SELECT seq FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2)",
            rusqlite::params![after, CHUNK],
            |r| r.get(0),
        )?;
        progress(report.events);
    }
    if legacy_ids.get() {
        tx.batch_execute("CREATE INDEX events_event_id ON events (event_id)")
            .await?;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ($1, 'true')",
            &[&super::query::LEGACY_IDS_KEY],
        )
        .await?;
    }
    report.subjects = copy_table(
        &conn,
        &tx,
        "subjects",
        "subject, salt",
        &[Type::TEXT, Type::BYTEA],
    )
    .await?;
    copy_table(
        &conn,
        &tx,
        "counters",
        "name, value",
        &[Type::TEXT, Type::INT8],
    )
    .await?;
    copy_table(
        &conn,
        &tx,
        "risk_profile",
        "user_id, hours, countries",
        &[Type::TEXT, Type::BYTEA, Type::TEXT],
    )
    .await?;
    let totals = [Type::INT8; 6];
    for (table, columns) in [
        (
            "rollup_minute",
            "minute, n, denied, failed, errors, critical",
        ),
        (
            "rollup_hour_total",
            "hour, n, denied, failed, errors, critical",
        ),
    ] {
        copy_table(&conn, &tx, table, columns, &totals).await?;
    }
    copy_table(
        &conn,
        &tx,
        "rollup_hour",
        "kind, value, hour, n",
        &[Type::TEXT, Type::TEXT, Type::INT8, Type::INT8],
    )
    .await?;
    copy_table(
        &conn,
        &tx,
        "rollup_user_hour",
        "hour, user_id, n, denied, failed",
        &[Type::INT8, Type::TEXT, Type::INT8, Type::INT8, Type::INT8],
    )
    .await?;
    report.retention_runs = copy_table(
        &conn,
        &tx,
        "prunes",
        "id, signed_at, ranges, events, digest, signature",
        &[
            Type::INT8,
            Type::TEXT,
            Type::INT8,
            Type::INT8,
            Type::BYTEA,
            Type::BYTEA,
        ],
    )
    .await?;
    copy_table(
        &conn,
        &tx,
        "pruned_ranges",
        "first_seq, last_seq, prev_hash, last_hash, prune_id",
        &[Type::INT8, Type::INT8, Type::BYTEA, Type::BYTEA, Type::INT8],
    )
    .await?;
    // The seq the risk profiles are counted through travels with them.
    let through: Option<String> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = ?1",
            [crate::store::risk::THROUGH_KEY],
            |r| r.get(0),
        )
        .ok();
    if let Some(through) = through {
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ($1, $2)",
            &[&crate::store::risk::THROUGH_KEY, &through],
        )
        .await?;
    }

    // The head: the newest event, or the end of a retention range past it.
    let newest: Option<(i64, Vec<u8>, i64)> = conn
        .query_row(
            "SELECT seq, hash, received_at FROM events ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .ok();
    let ranged: Option<(i64, Vec<u8>)> = if schema::table_exists(&conn, "pruned_ranges")? {
        conn.query_row(
            "SELECT last_seq, last_hash FROM pruned_ranges ORDER BY last_seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .ok()
    } else {
        None
    };
    let (seq, hash, received_at) = match (newest, ranged) {
        (Some(n), Some(r)) if r.0 > n.0 => (r.0, r.1, n.2),
        (Some(n), _) => n,
        (None, Some(r)) => (r.0, r.1, 0),
        (None, None) => (0, crate::store::chain::GENESIS.to_vec(), 0),
    };
    tx.execute(
        "UPDATE chain_head SET seq = $1, hash = $2, received_at = $3 WHERE id = 1",
        &[&seq, &hash, &received_at],
    )
    .await?;
    report.head_seq = seq.max(0) as u64;

    // The signed checkpoints, as the log holds them; `verify` checks their signatures.
    let log = data_dir.join(checkpoint::LOG_FILE);
    let checkpoints: Vec<Checkpoint> = if log.exists() {
        checkpoint::read_log(&log)
            .map_err(|e| StoreError::Io(std::io::Error::other(e.to_string())))?
    } else {
        Vec::new()
    };
    for c in &checkpoints {
        tx.execute(
            "INSERT INTO checkpoints (seq, hash, signed_at, signature) VALUES ($1, $2, $3, $4)
             ON CONFLICT (seq) DO NOTHING",
            &[&(c.seq as i64), &c.hash, &c.signed_at, &c.signature],
        )
        .await?;
    }
    report.checkpoints = checkpoints.len() as u64;
    tx.commit().await?;
    conn.execute_batch("COMMIT")?;
    // Statistics now rather than when autovacuum comes by: without them the first searches
    // are planned blind.
    client.batch_execute("ANALYZE").await?;
    Ok(report)
}
