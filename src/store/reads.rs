//! What a read asks for and the pieces of an answer both backends build alike: a page
//! request and its count budget, the running totals' names, the distinct-value fields, LIKE
//! patterns and the query for an event's relatives. The SQL that answers is each backend's.

use crate::model::{Counters, EventOrder, Level, Seq, SortField, SortKey, StoredEvent, ValueCount};
use crate::search::{Query, Term};

/// The running totals' names, as both backends' `counters` tables hold them.
pub const COUNTER_NAMES: [&str; 4] = [
    "total",
    "outcome:denied",
    "outcome:failure",
    "level:critical",
];

/// Running totals from their named rows (see [`COUNTER_NAMES`]), as of `as_of`.
pub fn counters_of(as_of: Seq, named: impl IntoIterator<Item = (String, i64)>) -> Counters {
    let mut c = Counters {
        as_of,
        ..Counters::default()
    };
    for (name, value) in named {
        let value = value.max(0) as u64;
        match name.as_str() {
            "total" => c.total = value,
            "outcome:denied" => c.denied = value,
            "outcome:failure" => c.failures = value,
            "level:critical" => c.critical = value,
            _ => {}
        }
    }
    c
}

/// A `LIKE ... ESCAPE '\'` pattern for strings containing `s`.
pub fn like_pattern(s: &str) -> String {
    format!("%{}%", like_escaped(s))
}

/// `s` with `%`, `_` and `\` escaped for a `LIKE ... ESCAPE '\'` pattern.
pub fn like_escaped(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for ch in s.chars() {
        if matches!(ch, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

/// The query and page of an event's relatives by `term` (its correlation or session id):
/// one more than `related`, since the event itself matches; counting nothing.
pub fn related(term: Term, related: u32) -> (Query, PageRequest) {
    let query = Query {
        clauses: vec![crate::search::Clause {
            term,
            negated: false,
        }],
    };
    let req = PageRequest {
        order: EventOrder::ARRIVAL,
        cursor: None,
        page: 1,
        limit: related + 1,
        count_limit: Some(0),
    };
    (query, req)
}

/// How long an answer with a capped count may take: its count settles for a lower bound once
/// the answer has taken this long since its read began ([`count_deadline`]).
pub const COUNT_BUDGET: std::time::Duration = std::time::Duration::from_millis(25);

/// The least time a capped count gets of its own, however long the page took to read.
pub const COUNT_AT_LEAST: std::time::Duration = std::time::Duration::from_millis(5);

/// When the capped count of an answer whose read began at `started` stops: at
/// [`COUNT_BUDGET`] after the start, or [`COUNT_AT_LEAST`] from now if that is later. The
/// budget is the answer's, not the count's: a page in event time that walked the time index
/// for 20 ms leaves the count what is left, so the answer stays near the budget whatever its
/// shape, and its count says "N or more".
pub fn count_deadline(started: std::time::Instant) -> std::time::Instant {
    (started + COUNT_BUDGET).max(std::time::Instant::now() + COUNT_AT_LEAST)
}

/// How a page is asked for: in `order`, by keyset `cursor` (the event to continue after), or
/// by `page` number as the predecessor did; `count_limit` caps the count for speed, and makes
/// it stop at [`count_deadline`] with a lower bound.
#[derive(Clone, Debug)]
pub struct PageRequest {
    pub order: EventOrder,
    pub cursor: Option<Cursor>,
    pub page: u32,
    pub limit: u32,
    pub count_limit: Option<u64>,
}

/// Values with their counts, most frequent first (ties by value): a distinct-values list.
pub fn by_count(counts: impl Iterator<Item = (String, u64)>) -> Vec<ValueCount> {
    let mut out: Vec<ValueCount> = counts
        .map(|(value, count)| ValueCount { value, count })
        .filter(|v| v.count > 0)
        .collect();
    out.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
    out
}

/// The fields whose distinct values are listed with their counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DistinctField {
    Level,
    Category,
    Action,
}

/// Where a keyset page continues: after the event at `seq`, whose place in the page's order is
/// `key`. Exact under any order because seq breaks ties: an event stored while a reader pages
/// lands above or below the cursor, never on it, so no event is skipped or shown twice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub seq: Seq,
    pub key: SortKey,
}

impl Cursor {
    /// The cursor after `e` in `order`.
    pub fn after(order: EventOrder, e: &StoredEvent) -> Cursor {
        Cursor {
            seq: e.seq,
            key: order.key(e),
        }
    }

    /// The `nextCursor` text: a bare seq in arrival order, newest first (what cursors were
    /// before there were orders); otherwise `field.dir:seq:key`, so a cursor given with another
    /// order is refused rather than misread.
    pub fn encode(&self, order: EventOrder) -> String {
        if order == EventOrder::ARRIVAL {
            return self.seq.0.to_string();
        }
        let dir = if order.descending { "desc" } else { "asc" };
        let key = match &self.key {
            SortKey::Int(i) => i.to_string(),
            SortKey::Text(t) => t.clone(),
        };
        format!("{}.{dir}:{}:{key}", order.field.as_str(), self.seq.0)
    }

    /// Reads a cursor [`Cursor::encode`] made for `order`.
    ///
    /// # Errors
    /// A message for the `cursor` parameter: not a cursor, or one made for another order.
    pub fn parse(raw: &str, order: EventOrder) -> Result<Cursor, String> {
        let wrong = || {
            format!(
                "{raw:?} is not a nextCursor returned for sort={}",
                order.as_param()
            )
        };
        if order == EventOrder::ARRIVAL {
            let seq = raw.parse::<u64>().map_err(|_| wrong())?;
            return Ok(Cursor {
                seq: Seq(seq),
                key: SortKey::Int(seq as i64),
            });
        }
        let mut parts = raw.splitn(3, ':');
        let (Some(tag), Some(seq), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(wrong());
        };
        let dir = if order.descending { "desc" } else { "asc" };
        if tag != format!("{}.{dir}", order.field.as_str()) {
            return Err(wrong());
        }
        let seq = Seq(seq.parse::<u64>().map_err(|_| wrong())?);
        let key = match order.field {
            SortField::Action | SortField::User => SortKey::Text(key.to_string()),
            _ => SortKey::Int(key.parse::<i64>().map_err(|_| wrong())?),
        };
        Ok(Cursor { seq, key })
    }
}

/// The `nextCursor` of a full page in `order` whose last row is `last`.
pub fn next_cursor(order: EventOrder, items: &[StoredEvent], limit: u32) -> Option<String> {
    (items.len() == limit as usize)
        .then(|| items.last().map(|e| Cursor::after(order, e).encode(order)))
        .flatten()
}

/// Which backend an order's SQL is for: they differ in how text compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// The SQL expression of `field` over the `e` alias: the value [`EventOrder::key`] gives,
/// compared the same way (text byte by byte, a missing risk below every score).
pub fn key_sql(field: SortField, dialect: Dialect) -> String {
    let text = |column: &str| match dialect {
        Dialect::Sqlite => column.to_string(),
        // The database's collation may follow a language; the browser compares bytes.
        Dialect::Postgres => format!("{column} COLLATE \"C\""),
    };
    match field {
        SortField::Timestamp => "e.ts".into(),
        SortField::ReceivedAt => "e.received_at".into(),
        SortField::Seq => "e.seq".into(),
        SortField::Level => {
            let arms: String = Level::ALL
                .iter()
                .map(|l| format!(" WHEN '{}' THEN {}", l.as_str(), l.rank()))
                .collect();
            let cast = if dialect == Dialect::Postgres {
                "::bigint"
            } else {
                ""
            };
            format!("(CASE e.level{arms} ELSE 0 END){cast}")
        }
        SortField::Risk => "COALESCE(e.risk, -1)".into(),
        SortField::Action => text("e.action"),
        SortField::User => text("e.user_id"),
    }
}

/// `ORDER BY` terms for `order`, with `seq` the expression of the event's seq.
pub fn order_by(order: EventOrder, seq: &str, dialect: Dialect) -> String {
    let dir = if order.descending { "DESC" } else { "ASC" };
    match order.field {
        SortField::Seq => format!("{seq} {dir}"),
        field => format!("{} {dir}, {seq} {dir}", key_sql(field, dialect)),
    }
}

/// The condition that an event comes after the cursor in `order`, with `key` and `seq` the
/// placeholders of the cursor's key and seq. The key's appears twice, before the seq's: bare
/// `?` placeholders take the key, the key again and the seq, in that order (the seq alone
/// when the order is by seq).
pub fn after_cursor(order: EventOrder, seq: &str, dialect: Dialect, key: &str, at: &str) -> String {
    let (before, or_equal) = if order.descending {
        ("<", "<=")
    } else {
        (">", ">=")
    };
    match order.field {
        SortField::Seq => format!("{seq} {before} {at}"),
        field => {
            let k = key_sql(field, dialect);
            // The first bound alone is what an index on the key can range over.
            format!("{k} {or_equal} {key} AND ({k} {before} {key} OR {seq} {before} {at})")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{after_cursor, order_by, Cursor, Dialect};
    use crate::model::{EventOrder, Seq, SortField, SortKey};

    #[test]
    fn cursors_round_trip_for_their_own_order_only() {
        let cases = [
            (EventOrder::default(), SortKey::Int(1_770_000_000_000)),
            (EventOrder::by(SortField::Risk).reversed(), SortKey::Int(-1)),
            (
                EventOrder::by(SortField::User),
                SortKey::Text("a:b c".into()),
            ),
            (
                EventOrder::by(SortField::Action),
                SortKey::Text(String::new()),
            ),
        ];
        for (order, key) in cases {
            let cursor = Cursor { seq: Seq(42), key };
            let text = cursor.encode(order);
            assert_eq!(Cursor::parse(&text, order), Ok(cursor), "{text}");
            assert!(Cursor::parse(&text, order.reversed()).is_err(), "{text}");
            assert!(Cursor::parse(&text, EventOrder::ARRIVAL).is_err(), "{text}");
        }
        // Arrival order keeps the bare seq cursors always had.
        let arrival = Cursor::parse("17", EventOrder::ARRIVAL).unwrap();
        assert_eq!(arrival.encode(EventOrder::ARRIVAL), "17");
        assert!(Cursor::parse("17", EventOrder::default()).is_err());
        assert!(Cursor::parse("timestamp.desc:x:1", EventOrder::default()).is_err());
    }

    #[test]
    fn orders_become_index_friendly_sql() {
        let time = EventOrder::default();
        assert_eq!(
            order_by(time, "e.seq", Dialect::Sqlite),
            "e.ts DESC, e.seq DESC"
        );
        assert_eq!(
            after_cursor(time, "e.seq", Dialect::Sqlite, "?", "?"),
            "e.ts <= ? AND (e.ts < ? OR e.seq < ?)"
        );
        let arrival = EventOrder::ARRIVAL.reversed();
        assert_eq!(order_by(arrival, "f.rowid", Dialect::Sqlite), "f.rowid ASC");
        assert_eq!(
            after_cursor(arrival, "f.rowid", Dialect::Sqlite, "?", "?"),
            "f.rowid > ?"
        );
        let user = EventOrder::by(SortField::User);
        assert_eq!(
            order_by(user, "e.seq", Dialect::Postgres),
            "e.user_id COLLATE \"C\" ASC, e.seq ASC"
        );
    }
}
