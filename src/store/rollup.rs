//! Rollups: counts per minute, per hour by dimension and per hour by user, keyed by the time
//! each event happened. The writer updates them in the same transaction as the events they
//! count, so they never disagree with the events, crash or not; analytics read them instead of
//! re-reading history.

use super::StoreError;
use crate::analytics::{Tally, UserCount};
use crate::model::{AuditEvent, Outcome, Seq, StoredEvent, ValueCount};
use rusqlite::{params, Connection, Transaction};
// Seeded per process, so keys chosen by senders cannot be made to collide.
use foldhash::HashMap;

/// Milliseconds in a rollup minute and hour.
pub const MINUTE_MS: i64 = 60_000;
pub const HOUR_MS: i64 = 3_600_000;

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

/// The dimensions `rollup_hour` counts by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dimension {
    Level,
    Category,
    Outcome,
    Action,
    /// Actions that were denied.
    DeniedAction,
}

impl Dimension {
    /// The `kind` column's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::Level => "level",
            Dimension::Category => "category",
            Dimension::Outcome => "outcome",
            Dimension::Action => "action",
            Dimension::DeniedAction => "denied",
        }
    }
}

/// One commit's rollup increments, borrowed from its events, written with one upsert per key.
#[derive(Default)]
pub struct Increments<'a> {
    minutes: HashMap<i64, Tally>,
    hour_totals: HashMap<i64, Tally>,
    hours: HashMap<(Dimension, &'a str, i64), u64>,
    users: HashMap<(i64, &'a str), Tally>,
}

impl<'a> Increments<'a> {
    /// Counts one event.
    pub fn add(&mut self, e: &'a AuditEvent) {
        let ms = e.timestamp.timestamp_millis();
        let minute = ms.div_euclid(MINUTE_MS);
        let hour = ms.div_euclid(HOUR_MS);
        let t = Tally::of(e);
        self.minutes.entry(minute).or_default().add(&t);
        self.hour_totals.entry(hour).or_default().add(&t);
        self.users
            .entry((hour, e.user.id.as_str()))
            .or_default()
            .add(&t);
        let denied =
            (e.outcome == Outcome::Denied).then_some((Dimension::DeniedAction, e.action.as_str()));
        let dims = [
            Some((Dimension::Level, e.level.as_str())),
            Some((Dimension::Category, e.category.as_str())),
            Some((Dimension::Outcome, e.outcome.as_str())),
            Some((Dimension::Action, e.action.as_str())),
            denied,
        ];
        for (dim, value) in dims.into_iter().flatten() {
            *self.hours.entry((dim, value, hour)).or_default() += 1;
        }
    }

    /// Adds the increments to the tables, inside the caller's transaction.
    pub fn write(&self, tx: &Transaction<'_>) -> Result<(), StoreError> {
        let mut minute = tx.prepare_cached(
            "INSERT INTO rollup_minute (minute, n, denied, failed, errors, critical)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (minute) DO UPDATE SET n = n + excluded.n,
                 denied = denied + excluded.denied, failed = failed + excluded.failed,
                 errors = errors + excluded.errors, critical = critical + excluded.critical",
        )?;
        for (m, t) in &self.minutes {
            minute.execute(params![m, t.n, t.denied, t.failed, t.errors, t.critical])?;
        }
        let mut totals = tx.prepare_cached(
            "INSERT INTO rollup_hour_total (hour, n, denied, failed, errors, critical)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (hour) DO UPDATE SET n = n + excluded.n,
                 denied = denied + excluded.denied, failed = failed + excluded.failed,
                 errors = errors + excluded.errors, critical = critical + excluded.critical",
        )?;
        for (h, t) in &self.hour_totals {
            totals.execute(params![h, t.n, t.denied, t.failed, t.errors, t.critical])?;
        }
        let mut hour = tx.prepare_cached(
            "INSERT INTO rollup_hour (kind, value, hour, n) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (kind, value, hour) DO UPDATE SET n = n + excluded.n",
        )?;
        for ((dim, value, h), n) in &self.hours {
            hour.execute(params![dim.as_str(), value, h, n])?;
        }
        let mut user = tx.prepare_cached(
            "INSERT INTO rollup_user_hour (hour, user_id, n, denied, failed)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (hour, user_id) DO UPDATE SET n = n + excluded.n,
                 denied = denied + excluded.denied, failed = failed + excluded.failed",
        )?;
        for ((h, id), t) in &self.users {
            user.execute(params![h, id, t.n, t.denied, t.failed])?;
        }
        Ok(())
    }
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
         INSERT INTO rollup_hour (kind, value, hour, n)
             SELECT 'level', level, ts / 3600000 - (ts % 3600000 < 0), COUNT(*)
             FROM events GROUP BY 2, 3;
         INSERT INTO rollup_hour (kind, value, hour, n)
             SELECT 'category', category, ts / 3600000 - (ts % 3600000 < 0), COUNT(*)
             FROM events GROUP BY 2, 3;
         INSERT INTO rollup_hour (kind, value, hour, n)
             SELECT 'outcome', outcome, ts / 3600000 - (ts % 3600000 < 0), COUNT(*)
             FROM events GROUP BY 2, 3;
         INSERT INTO rollup_hour (kind, value, hour, n)
             SELECT 'action', action, ts / 3600000 - (ts % 3600000 < 0), COUNT(*)
             FROM events GROUP BY 2, 3;
         INSERT INTO rollup_hour (kind, value, hour, n)
             SELECT 'denied', action, ts / 3600000 - (ts % 3600000 < 0), COUNT(*)
             FROM events WHERE outcome = 'denied' GROUP BY 2, 3;
         INSERT INTO rollup_user_hour (hour, user_id, n, denied, failed)
             SELECT ts / 3600000 - (ts % 3600000 < 0), user_id, COUNT(*),
                    SUM(outcome = 'denied'), SUM(outcome = 'failure')
             FROM events GROUP BY 1, 2;",
    )?;
    rebuild_hour_totals(tx)
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
    for (kind, column, filter) in [
        ("level", "level", ""),
        ("category", "category", ""),
        ("outcome", "outcome", ""),
        ("action", "action", ""),
        ("denied", "action", "AND outcome = 'denied'"),
    ] {
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

fn count(v: i64) -> u64 {
    v.max(0) as u64
}

/// Reads rollups (and the few events analytics show) from one snapshot: see
/// `Store::with_rollups`.
pub struct Reader<'c> {
    pub(super) conn: &'c Connection,
}

impl Reader<'_> {
    /// The non-empty minutes in `[from, to)` (epoch minutes), oldest first.
    pub fn minutes(&self, from: i64, to: i64) -> Result<Vec<(i64, Tally)>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT minute, n, denied, failed, errors, critical FROM rollup_minute
             WHERE minute >= ?1 AND minute < ?2 ORDER BY minute",
        )?;
        let rows = stmt.query_map(params![from, to], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                Tally {
                    n: count(r.get(1)?),
                    denied: count(r.get(2)?),
                    failed: count(r.get(3)?),
                    errors: count(r.get(4)?),
                    critical: count(r.get(5)?),
                },
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The totals over the minutes in `[from, to)`: whole hours from the hour totals, the
    /// minutes at either edge from the minute rows.
    pub fn tally(&self, from: i64, to: i64) -> Result<Tally, StoreError> {
        if to <= from {
            return Ok(Tally::default());
        }
        let first_hour = from.div_euclid(60) + i64::from(from.rem_euclid(60) != 0);
        let last_hour = to.div_euclid(60);
        if first_hour >= last_hour {
            return self.minute_tally(from, to);
        }
        let mut t = self.minute_tally(from, first_hour * 60)?;
        t.add(&self.sum(
            "SELECT COALESCE(SUM(n), 0), COALESCE(SUM(denied), 0), COALESCE(SUM(failed), 0),
                    COALESCE(SUM(errors), 0), COALESCE(SUM(critical), 0)
             FROM rollup_hour_total WHERE hour >= ?1 AND hour < ?2",
            first_hour,
            last_hour,
        )?);
        t.add(&self.minute_tally(last_hour * 60, to)?);
        Ok(t)
    }

    fn minute_tally(&self, from: i64, to: i64) -> Result<Tally, StoreError> {
        if to <= from {
            return Ok(Tally::default());
        }
        self.sum(
            "SELECT COALESCE(SUM(n), 0), COALESCE(SUM(denied), 0), COALESCE(SUM(failed), 0),
                    COALESCE(SUM(errors), 0), COALESCE(SUM(critical), 0)
             FROM rollup_minute WHERE minute >= ?1 AND minute < ?2",
            from,
            to,
        )
    }

    fn sum(&self, sql: &str, from: i64, to: i64) -> Result<Tally, StoreError> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        Ok(stmt.query_row(params![from, to], |r| {
            Ok(Tally {
                n: count(r.get(0)?),
                denied: count(r.get(1)?),
                failed: count(r.get(2)?),
                errors: count(r.get(3)?),
                critical: count(r.get(4)?),
            })
        })?)
    }

    /// Each value of `dim` in the hours `[from, to)` with its count, most frequent first, at most
    /// `limit`.
    pub fn values(
        &self,
        dim: Dimension,
        from: i64,
        to: i64,
        limit: usize,
    ) -> Result<Vec<ValueCount>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT value, SUM(n) AS total FROM rollup_hour
             WHERE kind = ?1 AND hour >= ?2 AND hour < ?3
             GROUP BY value ORDER BY total DESC, value LIMIT ?4",
        )?;
        let rows = stmt.query_map(params![dim.as_str(), from, to, limit as i64], |r| {
            Ok(ValueCount {
                value: r.get(0)?,
                count: count(r.get(1)?),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Per hour in `[from, to)`, each value of `dim` with its count: `(hour, value, n)`, by hour.
    pub fn series(
        &self,
        dim: Dimension,
        from: i64,
        to: i64,
    ) -> Result<Vec<(i64, String, u64)>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT hour, value, n FROM rollup_hour
             WHERE kind = ?1 AND hour >= ?2 AND hour < ?3 ORDER BY hour, value",
        )?;
        let rows = stmt.query_map(params![dim.as_str(), from, to], |r| {
            Ok((r.get(0)?, r.get(1)?, count(r.get(2)?)))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// How many users acted in the hours `[from, to)`, and the `limit` most active of them.
    pub fn users(
        &self,
        from: i64,
        to: i64,
        limit: usize,
    ) -> Result<(u64, Vec<UserCount>), StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT user_id, SUM(n) AS total, SUM(denied), SUM(failed) FROM rollup_user_hour
             WHERE hour >= ?1 AND hour < ?2 GROUP BY user_id ORDER BY total DESC, user_id",
        )?;
        let mut rows = stmt.query(params![from, to])?;
        let mut active = 0;
        let mut top = Vec::new();
        while let Some(r) = rows.next()? {
            active += 1;
            if top.len() < limit {
                top.push(UserCount {
                    user: r.get(0)?,
                    count: count(r.get(1)?),
                    denied: count(r.get(2)?),
                    failed: count(r.get(3)?),
                });
            }
        }
        Ok((active, top))
    }

    /// Every hour-by-user row in the hours `[from, to)`: `(hour, user, n)`.
    pub fn user_hours(&self, from: i64, to: i64) -> Result<Vec<(i64, String, u64)>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT hour, user_id, n FROM rollup_user_hour WHERE hour >= ?1 AND hour < ?2",
        )?;
        let rows = stmt.query_map(params![from, to], |r| {
            Ok((r.get(0)?, r.get(1)?, count(r.get(2)?)))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Failed or denied authentication events that happened after `from` (epoch ms):
    /// `(ms, user, address)`, in seq order. Reads events, through the time index: callers
    /// keep `from` within minutes of now.
    pub fn auth_failures(
        &self,
        from: i64,
    ) -> Result<Vec<(i64, String, Option<String>)>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT ts, user_id, req_ip FROM events
             WHERE ts > ?1 AND category = 'authentication' AND outcome != 'success'
             ORDER BY seq",
        )?;
        let rows = stmt.query_map([from], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The newest committed seq: the figures read include everything up to it.
    pub fn head(&self) -> Result<Seq, StoreError> {
        super::query::head(self.conn)
    }

    /// The newest `limit` critical events that happened in `[from, to)` (epoch ms).
    pub fn recent_critical(
        &self,
        from: i64,
        to: i64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let sql = format!(
            "SELECT {} FROM events INDEXED BY events_critical
             WHERE level = 'critical' AND ts >= ?1 AND ts < ?2 ORDER BY seq DESC LIMIT ?3",
            super::query::EVENT_COLUMNS
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(
            params![from, to, limit as i64],
            super::query::event_from_row,
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
