//! Rollups: counts per minute, per hour by dimension and per hour by user, keyed by the time
//! each event happened. The writer updates them in the same transaction as the events they
//! count, so they never disagree with the events, crash or not; analytics read them instead of
//! re-reading history. Here: the increments a batch adds and the [`Reader`] over either
//! backend; each backend writes them its own way (`sqlite::rollup`, `postgres::log`).

use super::row::{BadColumn, Columns};
use super::sql::{Param, Session};
use super::StoreError;
use crate::analytics::{Tally, UserCount};
use crate::model::{AuditEvent, Outcome, Seq, StoredEvent, ValueCount};
// Seeded per process, so keys chosen by senders cannot be made to collide.
use foldhash::HashMap;

/// Milliseconds in a rollup minute and hour.
pub const MINUTE_MS: i64 = 60_000;
pub const HOUR_MS: i64 = 3_600_000;

/// The per-hour counts `rollup_hour` keeps, as rebuilt from the events: each kind with the
/// column it counts by and the condition an event must also meet.
pub const HOUR_KINDS: [(&str, &str, &str); 6] = [
    ("level", "level", ""),
    ("source", "source", ""),
    ("category", "category", ""),
    ("outcome", "outcome", ""),
    ("action", "action", ""),
    ("denied", "action", "AND outcome = 'denied'"),
];

/// The dimensions `rollup_hour` counts by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dimension {
    Level,
    Category,
    Outcome,
    Action,
    /// Actions that were denied.
    DeniedAction,
    /// The channel that brought the event (`http`, `otlp`, `syslog:…`, `tail:…`).
    Source,
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
            Dimension::Source => "source",
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
            Some((Dimension::Source, e.source.0.as_str())),
            denied,
        ];
        for (dim, value) in dims.into_iter().flatten() {
            *self.hours.entry((dim, value, hour)).or_default() += 1;
        }
    }

    /// The per-minute increments: `(epoch minute, tally)`.
    pub fn minutes(&self) -> impl Iterator<Item = (i64, &Tally)> {
        self.minutes.iter().map(|(m, t)| (*m, t))
    }

    /// The per-hour totals: `(epoch hour, tally)`.
    pub fn hour_totals(&self) -> impl Iterator<Item = (i64, &Tally)> {
        self.hour_totals.iter().map(|(h, t)| (*h, t))
    }

    /// The per-hour counts by dimension: `(kind, value, epoch hour, n)`.
    pub fn hours(&self) -> impl Iterator<Item = (&'static str, &str, i64, u64)> {
        self.hours
            .iter()
            .map(|((dim, value, h), n)| (dim.as_str(), *value, *h, *n))
    }

    /// The per-hour counts by user: `(epoch hour, user, tally)`.
    pub fn users(&self) -> impl Iterator<Item = (i64, &str, &Tally)> {
        self.users.iter().map(|((h, u), t)| (*h, *u, t))
    }
}

fn count(v: i64) -> u64 {
    v.max(0) as u64
}

/// The summed totals of `table` over `[?1, ?2)` of `key`. Sums are cast to BIGINT, which
/// both backends read back as a 64-bit integer (PostgreSQL sums bigints into numeric).
fn sums(table: &str, key: &str) -> String {
    let sum = |c: &str| format!("CAST(COALESCE(SUM({c}), 0) AS BIGINT)");
    format!(
        "SELECT {}, {}, {}, {}, {} FROM {table} WHERE {key} >= ?1 AND {key} < ?2",
        sum("n"),
        sum("denied"),
        sum("failed"),
        sum("errors"),
        sum("critical")
    )
}

/// Reads rollups (and the few events analytics show) from one snapshot of either backend:
/// see `Store::with_rollups`. The statements are the same on both (see `store::sql`).
pub struct Reader<'s, 'c> {
    session: &'s Session<'c>,
    /// SQLite is told which index finds rare critical events; PostgreSQL's planner picks its
    /// own partial index.
    sqlite: bool,
}

impl<'s, 'c> Reader<'s, 'c> {
    /// A reader over a session of a snapshot.
    pub(super) fn new(session: &'s Session<'c>, sqlite: bool) -> Reader<'s, 'c> {
        Reader { session, sqlite }
    }

    /// The rows of `sql`, each read by `read`.
    fn rows<T>(
        &self,
        sql: &str,
        params: &[&dyn Param],
        read: impl Fn(&dyn Columns) -> Result<T, BadColumn>,
    ) -> Result<Vec<T>, StoreError> {
        let bad = |e: BadColumn| StoreError::Corrupt {
            seq: 0,
            detail: format!("{sql}: column {}: {}", e.idx, e.detail),
        };
        self.session
            .query(sql, params)
            .map_err(StoreError::from)?
            .iter()
            .map(|r| read(r).map_err(bad))
            .collect()
    }

    fn tally_of(r: &dyn Columns, at: usize) -> Result<Tally, BadColumn> {
        let n = |i: usize| -> Result<u64, BadColumn> { Ok(count(r.int(at + i)?.unwrap_or(0))) };
        Ok(Tally {
            n: n(0)?,
            denied: n(1)?,
            failed: n(2)?,
            errors: n(3)?,
            critical: n(4)?,
        })
    }

    /// The non-empty minutes in `[from, to)` (epoch minutes), oldest first.
    pub fn minutes(&self, from: i64, to: i64) -> Result<Vec<(i64, Tally)>, StoreError> {
        self.rows(
            "SELECT minute, n, denied, failed, errors, critical FROM rollup_minute
             WHERE minute >= ?1 AND minute < ?2 ORDER BY minute",
            &[&from, &to],
            |r| Ok((r.int(0)?.unwrap_or(0), Self::tally_of(r, 1)?)),
        )
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
        t.add(&self.sum(&sums("rollup_hour_total", "hour"), first_hour, last_hour)?);
        t.add(&self.minute_tally(last_hour * 60, to)?);
        Ok(t)
    }

    fn minute_tally(&self, from: i64, to: i64) -> Result<Tally, StoreError> {
        if to <= from {
            return Ok(Tally::default());
        }
        self.sum(&sums("rollup_minute", "minute"), from, to)
    }

    fn sum(&self, sql: &str, from: i64, to: i64) -> Result<Tally, StoreError> {
        let rows = self.rows(sql, &[&from, &to], |r| Self::tally_of(r, 0))?;
        Ok(rows.into_iter().next().unwrap_or_default())
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
        let sql = "SELECT value, CAST(SUM(n) AS BIGINT) AS total FROM rollup_hour
             WHERE kind = ?1 AND hour >= ?2 AND hour < ?3
             GROUP BY value ORDER BY total DESC, value LIMIT ?4";
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.rows(sql, &[&dim.as_str(), &from, &to, &limit], |r| {
            Ok(ValueCount {
                value: r.text(0)?.unwrap_or_default(),
                count: count(r.int(1)?.unwrap_or(0)),
            })
        })
    }

    /// Per hour in `[from, to)`, each value of `dim` with its count: `(hour, value, n)`, by hour.
    pub fn series(
        &self,
        dim: Dimension,
        from: i64,
        to: i64,
    ) -> Result<Vec<(i64, String, u64)>, StoreError> {
        self.rows(
            "SELECT hour, value, n FROM rollup_hour
             WHERE kind = ?1 AND hour >= ?2 AND hour < ?3 ORDER BY hour, value",
            &[&dim.as_str(), &from, &to],
            |r| {
                Ok((
                    r.int(0)?.unwrap_or(0),
                    r.text(1)?.unwrap_or_default(),
                    count(r.int(2)?.unwrap_or(0)),
                ))
            },
        )
    }

    /// How many users acted in the hours `[from, to)`, and the `limit` most active of them.
    pub fn users(
        &self,
        from: i64,
        to: i64,
        limit: usize,
    ) -> Result<(u64, Vec<UserCount>), StoreError> {
        let sql = "SELECT user_id, CAST(SUM(n) AS BIGINT) AS total, CAST(SUM(denied) AS BIGINT),
                    CAST(SUM(failed) AS BIGINT)
             FROM rollup_user_hour
             WHERE hour >= ?1 AND hour < ?2 GROUP BY user_id ORDER BY total DESC, user_id";
        let all = self.rows(sql, &[&from, &to], |r| {
            Ok(UserCount {
                user: r.text(0)?.unwrap_or_default(),
                count: count(r.int(1)?.unwrap_or(0)),
                denied: count(r.int(2)?.unwrap_or(0)),
                failed: count(r.int(3)?.unwrap_or(0)),
            })
        })?;
        let active = all.len() as u64;
        Ok((active, all.into_iter().take(limit).collect()))
    }

    /// Every hour-by-user row in the hours `[from, to)`: `(hour, user, n)`.
    pub fn user_hours(&self, from: i64, to: i64) -> Result<Vec<(i64, String, u64)>, StoreError> {
        self.rows(
            "SELECT hour, user_id, n FROM rollup_user_hour WHERE hour >= ?1 AND hour < ?2",
            &[&from, &to],
            |r| {
                Ok((
                    r.int(0)?.unwrap_or(0),
                    r.text(1)?.unwrap_or_default(),
                    count(r.int(2)?.unwrap_or(0)),
                ))
            },
        )
    }

    /// Failed or denied authentication events that happened after `from` (epoch ms):
    /// `(ms, user, address)`, in seq order. Reads events, through the time index: callers
    /// keep `from` within minutes of now.
    pub fn auth_failures(
        &self,
        from: i64,
    ) -> Result<Vec<(i64, String, Option<String>)>, StoreError> {
        self.rows(
            "SELECT ts, user_id, req_ip FROM events
             WHERE ts > ?1 AND category = 'authentication' AND outcome != 'success'
             ORDER BY seq",
            &[&from],
            |r| {
                Ok((
                    r.int(0)?.unwrap_or(0),
                    r.text(1)?.unwrap_or_default(),
                    r.text(2)?,
                ))
            },
        )
    }

    /// The newest committed seq: the figures read include everything up to it.
    pub fn head(&self) -> Result<Seq, StoreError> {
        let sql = match self.sqlite {
            true => "SELECT MAX(seq) FROM events",
            false => "SELECT seq FROM chain_head WHERE id = 1",
        };
        let seq = self.rows(sql, &[], |r| Ok(r.int(0)?.unwrap_or(0)))?;
        Ok(Seq(seq.first().copied().unwrap_or(0).max(0) as u64))
    }

    /// The newest `limit` critical events that happened in `[from, to)` (epoch ms).
    pub fn recent_critical(
        &self,
        from: i64,
        to: i64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let hint = match self.sqlite {
            true => "INDEXED BY events_critical",
            false => "",
        };
        let sql = format!(
            "SELECT {} FROM events {hint}
             WHERE level = 'critical' AND ts >= ?1 AND ts < ?2 ORDER BY seq DESC LIMIT ?3",
            super::row::EVENT_COLUMNS
        );
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.rows(&sql, &[&from, &to, &limit], |r| {
            super::row::event_from_row(r)
        })
    }
}
