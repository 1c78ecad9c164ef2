//! Rollups in an SQLite store: their tables, the writer's increments (in the transaction of
//! the events they count), and the rebuilds for older databases and after retention.

use crate::store::rollup::{Increments, HOUR_MS};
use crate::store::StoreError;
use rusqlite::{params, Transaction};

/// The rollup tables; part of the schema.
pub const SCHEMA: &str = "
-- Per minute of event time: the totals that rates, spikes, the heatmap and the night window
-- need. `errors` counts failures and events at level error or critical.
CREATE TABLE IF NOT EXISTS rollup_minute (
    minute   INTEGER PRIMARY KEY,
    n        INTEGER NOT NULL,
    denied   INTEGER NOT NULL,
    failed   INTEGER NOT NULL,
    errors   INTEGER NOT NULL,
    critical INTEGER NOT NULL
);
-- The same totals per hour, so a 30-day tally reads 720 rows instead of 43,200.
CREATE TABLE IF NOT EXISTS rollup_hour_total (
    hour     INTEGER PRIMARY KEY,
    n        INTEGER NOT NULL,
    denied   INTEGER NOT NULL,
    failed   INTEGER NOT NULL,
    errors   INTEGER NOT NULL,
    critical INTEGER NOT NULL
);
-- Per hour, by dimension: kind is level, category, outcome, action or denied (an action
-- that was denied).
CREATE TABLE IF NOT EXISTS rollup_hour (
    kind  TEXT    NOT NULL,
    value TEXT    NOT NULL,
    hour  INTEGER NOT NULL,
    n     INTEGER NOT NULL,
    PRIMARY KEY (kind, value, hour)
) WITHOUT ROWID;
-- Per hour, by user: active users, top users, one user's share.
CREATE TABLE IF NOT EXISTS rollup_user_hour (
    hour    INTEGER NOT NULL,
    user_id TEXT    NOT NULL,
    n       INTEGER NOT NULL,
    denied  INTEGER NOT NULL,
    failed  INTEGER NOT NULL,
    PRIMARY KEY (hour, user_id)
) WITHOUT ROWID;
-- Critical events are rare: a partial index finds the newest without scanning the rest.
CREATE INDEX IF NOT EXISTS events_critical ON events (seq) WHERE level = 'critical';
";

/// Adds `inc` to the tables, inside the caller's transaction.
pub fn write(inc: &Increments<'_>, tx: &Transaction<'_>) -> Result<(), StoreError> {
    let mut minute = tx.prepare_cached(
        "INSERT INTO rollup_minute (minute, n, denied, failed, errors, critical)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (minute) DO UPDATE SET n = n + excluded.n,
             denied = denied + excluded.denied, failed = failed + excluded.failed,
             errors = errors + excluded.errors, critical = critical + excluded.critical",
    )?;
    for (m, t) in inc.minutes() {
        minute.execute(params![m, t.n, t.denied, t.failed, t.errors, t.critical])?;
    }
    let mut totals = tx.prepare_cached(
        "INSERT INTO rollup_hour_total (hour, n, denied, failed, errors, critical)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (hour) DO UPDATE SET n = n + excluded.n,
             denied = denied + excluded.denied, failed = failed + excluded.failed,
             errors = errors + excluded.errors, critical = critical + excluded.critical",
    )?;
    for (h, t) in inc.hour_totals() {
        totals.execute(params![h, t.n, t.denied, t.failed, t.errors, t.critical])?;
    }
    let mut hour = tx.prepare_cached(
        "INSERT INTO rollup_hour (kind, value, hour, n) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (kind, value, hour) DO UPDATE SET n = n + excluded.n",
    )?;
    for (kind, value, h, n) in inc.hours() {
        hour.execute(params![kind, value, h, n])?;
    }
    let mut user = tx.prepare_cached(
        "INSERT INTO rollup_user_hour (hour, user_id, n, denied, failed)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (hour, user_id) DO UPDATE SET n = n + excluded.n,
             denied = denied + excluded.denied, failed = failed + excluded.failed",
    )?;
    for (h, id, t) in inc.users() {
        user.execute(params![h, id, t.n, t.denied, t.failed])?;
    }
    Ok(())
}

/// Recomputes the hour totals from the minutes, inside the caller's transaction: for
/// databases written before they existed.
pub fn rebuild_hour_totals(tx: &Transaction<'_>) -> Result<(), StoreError> {
    tx.execute_batch(
        "DELETE FROM rollup_hour_total;
         INSERT INTO rollup_hour_total (hour, n, denied, failed, errors, critical)
             SELECT minute / 60 - (minute % 60 < 0), SUM(n), SUM(denied), SUM(failed),
                    SUM(errors), SUM(critical)
             FROM rollup_minute GROUP BY 1;",
    )?;
    Ok(())
}

/// Recomputes every rollup from the events, inside the caller's transaction: for databases
/// written before rollups existed.
pub fn rebuild(tx: &Transaction<'_>) -> Result<(), StoreError> {
    tx.execute_batch(
        "DELETE FROM rollup_minute;
         DELETE FROM rollup_hour;
         DELETE FROM rollup_user_hour;
         INSERT INTO rollup_minute (minute, n, denied, failed, errors, critical)
             SELECT ts / 60000 - (ts % 60000 < 0), COUNT(*),
                    SUM(outcome = 'denied'), SUM(outcome = 'failure'),
                    SUM(outcome = 'failure' OR level IN ('error', 'critical')),
                    SUM(level = 'critical')
             FROM events GROUP BY 1;
         INSERT INTO rollup_user_hour (hour, user_id, n, denied, failed)
             SELECT ts / 3600000 - (ts % 3600000 < 0), user_id, COUNT(*),
                    SUM(outcome = 'denied'), SUM(outcome = 'failure')
             FROM events GROUP BY 1, 2;",
    )?;
    for (kind, _, _) in crate::store::rollup::HOUR_KINDS {
        count_hours_of(tx, kind)?;
    }
    rebuild_hour_totals(tx)
}

/// Counts one kind of `rollup_hour` afresh from every stored event.
pub fn count_hours_of(tx: &Transaction<'_>, kind: &str) -> Result<(), StoreError> {
    let Some((kind, column, filter)) = crate::store::rollup::HOUR_KINDS
        .into_iter()
        .find(|(k, _, _)| *k == kind)
    else {
        return Ok(());
    };
    tx.execute("DELETE FROM rollup_hour WHERE kind = ?1", [kind])?;
    tx.execute(
        &format!(
            "INSERT INTO rollup_hour (kind, value, hour, n)
             SELECT '{kind}', {column}, ts / 3600000 - (ts % 3600000 < 0), COUNT(*)
             FROM events WHERE 1 {filter} GROUP BY 2, 3"
        ),
        [],
    )?;
    Ok(())
}

/// Recomputes every rollup of the hours from `from_ms` to `to_ms` (event time, both
/// inclusive) from the events still stored in them, inside the caller's transaction: after
/// retention removed events from those hours.
///
/// # Errors
/// Database errors.
pub fn rebuild_span(tx: &Transaction<'_>, from_ms: i64, to_ms: i64) -> Result<(), StoreError> {
    let first_hour = from_ms.div_euclid(HOUR_MS);
    let end_hour = to_ms.div_euclid(HOUR_MS) + 1;
    let (lo, hi) = (first_hour * HOUR_MS, end_hour * HOUR_MS);
    let (first_minute, end_minute) = (first_hour * 60, end_hour * 60);
    tx.execute(
        "DELETE FROM rollup_minute WHERE minute >= ?1 AND minute < ?2",
        params![first_minute, end_minute],
    )?;
    for table in ["rollup_hour_total", "rollup_hour", "rollup_user_hour"] {
        tx.execute(
            &format!("DELETE FROM {table} WHERE hour >= ?1 AND hour < ?2"),
            params![first_hour, end_hour],
        )?;
    }
    tx.execute(
        "INSERT INTO rollup_minute (minute, n, denied, failed, errors, critical)
             SELECT ts / 60000 - (ts % 60000 < 0), COUNT(*),
                    SUM(outcome = 'denied'), SUM(outcome = 'failure'),
                    SUM(outcome = 'failure' OR level IN ('error', 'critical')),
                    SUM(level = 'critical')
             FROM events WHERE ts >= ?1 AND ts < ?2 GROUP BY 1",
        params![lo, hi],
    )?;
    tx.execute(
        "INSERT INTO rollup_hour_total (hour, n, denied, failed, errors, critical)
             SELECT minute / 60 - (minute % 60 < 0), SUM(n), SUM(denied), SUM(failed),
                    SUM(errors), SUM(critical)
             FROM rollup_minute WHERE minute >= ?1 AND minute < ?2 GROUP BY 1",
        params![first_minute, end_minute],
    )?;
    for (kind, column, filter) in crate::store::rollup::HOUR_KINDS {
        tx.execute(
            &format!(
                "INSERT INTO rollup_hour (kind, value, hour, n)
                 SELECT '{kind}', {column}, ts / 3600000 - (ts % 3600000 < 0), COUNT(*)
                 FROM events WHERE ts >= ?1 AND ts < ?2 {filter} GROUP BY 2, 3"
            ),
            params![lo, hi],
        )?;
    }
    tx.execute(
        "INSERT INTO rollup_user_hour (hour, user_id, n, denied, failed)
             SELECT ts / 3600000 - (ts % 3600000 < 0), user_id, COUNT(*),
                    SUM(outcome = 'denied'), SUM(outcome = 'failure')
             FROM events WHERE ts >= ?1 AND ts < ?2 GROUP BY 1, 2",
        params![lo, hi],
    )?;
    Ok(())
}
