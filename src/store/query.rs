//! Reads: rows back into events, newest-first pages with filters, read-from-seq for live
//! catch-up, and the dashboard snapshot.

use super::StoreError;
use crate::model::{
    Actor, AuditEvent, Category, Counters, DashboardSnapshot, Entity, EventFilter, EventId,
    EventPage, Level, Location, Outcome, RequestInfo, Seq, Source, StoredEvent,
};
use chrono::{DateTime, Utc};
use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension, Row, ToSql};

/// The columns [`event_from_row`] reads, in its order.
pub const EVENT_COLUMNS: &str = "seq, event_id, ts, received_at, level, category, action, \
    outcome, source, user_id, username, description, entity_type, entity_id, entity_name, \
    req_method, req_path, req_ip, req_user_agent, req_status, req_response_time, country, city, \
    metadata, changes, system, risk, correlation_id, session_id, hash";

/// How many columns [`EVENT_COLUMNS`] names.
pub const EVENT_COLUMN_COUNT: usize = 30;

fn conversion(idx: usize, msg: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, msg.into())
}

fn time(idx: usize, ms: i64) -> rusqlite::Result<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| conversion(idx, format!("bad time {ms}")))
}

fn parsed<T>(row: &Row<'_>, idx: usize, parse: fn(&str) -> Option<T>) -> rusqlite::Result<T> {
    let s: String = row.get(idx)?;
    parse(&s).ok_or_else(|| conversion(idx, format!("unknown value {s:?}")))
}

fn json<T: serde::de::DeserializeOwned>(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<T>> {
    let s: Option<String> = row.get(idx)?;
    s.map(|s| serde_json::from_str(&s).map_err(|e| conversion(idx, e.to_string())))
        .transpose()
}

/// Rebuilds the audit event and its seal from a row selected with [`EVENT_COLUMNS`].
/// Sub-objects whose fields are all empty come back as `None`, as ingest stores them.
pub fn event_from_row(row: &Row<'_>) -> rusqlite::Result<StoredEvent> {
    let entity = Entity {
        kind: row.get(12)?,
        id: row.get(13)?,
        name: row.get(14)?,
    };
    let request = RequestInfo {
        method: row.get(15)?,
        path: row.get(16)?,
        ip: row.get(17)?,
        user_agent: row.get(18)?,
        status_code: row.get(19)?,
        response_time: row.get::<_, Option<i64>>(20)?.map(|v| v.max(0) as u64),
    };
    let location = Location {
        country: row.get(21)?,
        city: row.get(22)?,
    };
    let hash: Vec<u8> = row.get(29)?;
    Ok(StoredEvent {
        seq: Seq(row.get(0)?),
        event_id: EventId(row.get(1)?),
        received_at: time(3, row.get(3)?)?,
        hash: hex::encode(hash),
        event: AuditEvent {
            timestamp: time(2, row.get(2)?)?,
            level: parsed(row, 4, Level::parse)?,
            category: parsed(row, 5, Category::parse)?,
            action: row.get(6)?,
            outcome: parsed(row, 7, Outcome::parse)?,
            source: Source(row.get(8)?),
            user: Actor {
                id: row.get(9)?,
                username: row.get(10)?,
            },
            description: row.get(11)?,
            entity: (entity != Entity::default()).then_some(entity),
            request: (request != RequestInfo::default()).then_some(request),
            location: (location != Location::default()).then_some(location),
            metadata: json(row, 23)?,
            changes: json(row, 24)?,
            system: json(row, 25)?,
            risk_score: row.get(26)?,
            correlation_id: row.get(27)?,
            session_id: row.get(28)?,
        },
    })
}

/// The newest seq (0 when empty).
pub fn head(conn: &Connection) -> Result<Seq, StoreError> {
    let seq: Option<u64> = conn.query_row("SELECT MAX(seq) FROM events", [], |r| r.get(0))?;
    Ok(Seq(seq.unwrap_or(0)))
}

/// Up to `limit` events after `after`, oldest first.
pub fn read_from(
    conn: &Connection,
    after: Seq,
    limit: usize,
) -> Result<Vec<StoredEvent>, StoreError> {
    let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2");
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(rusqlite::params![after.0, limit as i64], event_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The event with this id.
pub fn by_id(conn: &Connection, id: &EventId) -> Result<Option<StoredEvent>, StoreError> {
    let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE event_id = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([&id.0], event_from_row)
        .optional()?)
}

/// Running totals.
pub fn counters(conn: &Connection) -> Result<Counters, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT name, value FROM counters
         WHERE name IN ('total', 'outcome:denied', 'outcome:failure', 'level:critical')",
    )?;
    let mut c = Counters {
        as_of: head(conn)?,
        ..Counters::default()
    };
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    for row in rows {
        let (name, value) = row?;
        let value = value.max(0) as u64;
        match name.as_str() {
            "total" => c.total = value,
            "outcome:denied" => c.denied = value,
            "outcome:failure" => c.failures = value,
            "level:critical" => c.critical = value,
            _ => {}
        }
    }
    Ok(c)
}

/// The newest `limit` events and the totals, consistent with each other.
pub fn snapshot(conn: &Connection, limit: usize) -> Result<DashboardSnapshot, StoreError> {
    let tx = conn.unchecked_transaction()?;
    let counters = counters(&tx)?;
    let sql = format!("SELECT {EVENT_COLUMNS} FROM events ORDER BY seq DESC LIMIT ?1");
    let events = tx
        .prepare_cached(&sql)?
        .query_map([limit as i64], event_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    tx.finish()?;
    Ok(DashboardSnapshot {
        events,
        counters,
        server_time: Utc::now(),
    })
}

/// Escapes `%`, `_` and `\` for a `LIKE ... ESCAPE '\'` pattern.
fn like_pattern(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('%');
    for ch in s.chars() {
        if matches!(ch, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out.push('%');
    out
}

/// The WHERE clause and its parameters for a filter.
fn where_clause(filter: &EventFilter) -> (String, Vec<Box<dyn ToSql>>) {
    let mut clauses: Vec<String> = Vec::new();
    let mut params: Vec<Box<dyn ToSql>> = Vec::new();
    let mut any_of = |column: &str, values: Vec<&'static str>, clauses: &mut Vec<String>| {
        if !values.is_empty() {
            let marks = vec!["?"; values.len()].join(", ");
            clauses.push(format!("{column} IN ({marks})"));
            params.extend(values.into_iter().map(|v| Box::new(v) as Box<dyn ToSql>));
        }
    };
    any_of(
        "level",
        filter.levels.iter().map(|l| l.as_str()).collect(),
        &mut clauses,
    );
    any_of(
        "category",
        filter.categories.iter().map(|c| c.as_str()).collect(),
        &mut clauses,
    );
    any_of(
        "outcome",
        filter.outcomes.iter().map(|o| o.as_str()).collect(),
        &mut clauses,
    );
    if let Some(action) = &filter.action {
        clauses.push("action = ?".into());
        params.push(Box::new(action.clone()));
    }
    if let Some(user) = &filter.user_id {
        clauses.push("user_id = ?".into());
        params.push(Box::new(user.clone()));
    }
    if let Some(start) = filter.start {
        clauses.push("ts >= ?".into());
        params.push(Box::new(start.timestamp_millis()));
    }
    if let Some(end) = filter.end {
        clauses.push("ts <= ?".into());
        params.push(Box::new(end.timestamp_millis()));
    }
    if let Some(q) = filter
        .search
        .as_deref()
        .map(str::trim)
        .filter(|q| !q.is_empty())
    {
        clauses.push(
            "(description LIKE ? ESCAPE '\\' OR entity_name LIKE ? ESCAPE '\\' \
             OR username LIKE ? ESCAPE '\\' OR action LIKE ? ESCAPE '\\')"
                .into(),
        );
        let pattern = like_pattern(q);
        for _ in 0..4 {
            params.push(Box::new(pattern.clone()));
        }
    }
    let sql = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    (sql, params)
}

/// Page `page` (from 1) of `limit` events matching `filter`, newest first.
pub fn page(
    conn: &Connection,
    filter: &EventFilter,
    page: u32,
    limit: u32,
) -> Result<EventPage, StoreError> {
    let page = page.max(1);
    let limit = limit.clamp(1, 500);
    let tx = conn.unchecked_transaction()?;
    let (where_sql, mut params) = where_clause(filter);
    let total: u64 = if filter.is_empty() {
        counters(&tx)?.total
    } else {
        let sql = format!("SELECT COUNT(*) FROM events {where_sql}");
        let refs: Vec<&dyn ToSql> = params.iter().map(|p| p.as_ref()).collect();
        tx.prepare(&sql)?.query_row(refs.as_slice(), |r| r.get(0))?
    };
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events {where_sql} ORDER BY seq DESC LIMIT ? OFFSET ?"
    );
    params.push(Box::new(i64::from(limit)));
    params.push(Box::new(i64::from(page - 1) * i64::from(limit)));
    let refs: Vec<&dyn ToSql> = params.iter().map(|p| p.as_ref()).collect();
    let items = tx
        .prepare(&sql)?
        .query_map(refs.as_slice(), event_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    tx.finish()?;
    Ok(EventPage {
        items,
        total,
        page,
        limit,
    })
}

#[cfg(test)]
mod tests {
    use super::like_pattern;

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_pattern("50%_off\\"), "%50\\%\\_off\\\\%");
    }
}
