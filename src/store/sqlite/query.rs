//! Reads: rows back into events, newest-first pages with filters, read-from-seq for live
//! catch-up, and the dashboard snapshot.

use crate::model::{Counters, DashboardSnapshot, EventId, EventPage, Seq, StoredEvent, ValueCount};
use crate::model::{EventOrder, SortField, SortKey};
use crate::search::{Pattern, Query, Term};
use crate::store::reads::{
    after_cursor, by_count, count_deadline, counters_of, like_pattern, next_cursor, order_by,
    Dialect, DistinctField, PageRequest, COUNTER_NAMES,
};
use crate::store::StoreError;
use chrono::Utc;
use rusqlite::{Connection, OptionalExtension, Row, ToSql};

pub use crate::store::row::EVENT_COLUMNS;

/// [`crate::store::row::event_from_row`] for SQLite's row callbacks.
pub fn event_from_row(row: &Row<'_>) -> rusqlite::Result<StoredEvent> {
    Ok(crate::store::row::event_from_row(row)?)
}

/// The newest seq (0 when empty).
pub fn head(conn: &Connection) -> Result<Seq, StoreError> {
    let seq: Option<u64> = conn.query_row("SELECT MAX(seq) FROM events", [], |r| r.get(0))?;
    Ok(Seq(seq.unwrap_or(0)))
}

/// Up to `limit` events after `after` and through `through`, oldest first.
pub fn read_from(
    conn: &Connection,
    after: Seq,
    through: Seq,
    limit: usize,
) -> Result<Vec<StoredEvent>, StoreError> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE seq > ?1 AND seq <= ?2 ORDER BY seq LIMIT ?3"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(
        rusqlite::params![after.0, through.0, limit as i64],
        event_from_row,
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The event with this id. Ids made since schema 3 carry their seq, so the event is found
/// by its primary key, and no index on ids is kept up at ingest (schema 10). An id that
/// leads to no event is looked up by value only where a UNIQUE index on ids makes that cheap:
/// in databases created before schema 10, whose first events may have ids without a seq.
pub fn by_id(conn: &Connection, id: &EventId) -> Result<Option<StoredEvent>, StoreError> {
    let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE seq = ?1 AND event_id = ?2");
    let mut at_seq = conn.prepare_cached(&sql)?;
    for seq in crate::store::seal::seq_candidates(&id.0) {
        let Ok(seq) = i64::try_from(seq) else {
            continue;
        };
        if let Some(found) = at_seq
            .query_row(rusqlite::params![seq, &id.0], event_from_row)
            .optional()?
        {
            return Ok(Some(found));
        }
    }
    let indexed: bool = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM pragma_index_list('events') AS i
                 JOIN pragma_index_info(i.name) AS c
                 WHERE i.\"unique\" = 1 AND c.name = 'event_id')",
        )?
        .query_row([], |r| r.get(0))?;
    if !indexed {
        // Without the index this would read every event to find nothing.
        return Ok(None);
    }
    let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE event_id = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([&id.0], event_from_row)
        .optional()?)
}

/// Running totals.
pub fn counters(conn: &Connection) -> Result<Counters, StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT name, value FROM counters WHERE name IN (?1, ?2, ?3, ?4)")?;
    let rows = stmt.query_map(COUNTER_NAMES, |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
    })?;
    let named = rows.collect::<Result<Vec<_>, _>>()?;
    Ok(counters_of(head(conn)?, named))
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

/// A `GLOB` pattern matching strings that start with `prefix`: `*`, `?` and `[` are escaped as
/// one-character classes. `GLOB` is case-sensitive and can use the column's index.
fn glob_prefix(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 1);
    for ch in prefix.chars() {
        match ch {
            '*' => out.push_str("[*]"),
            '?' => out.push_str("[?]"),
            '[' => out.push_str("[[]"),
            other => out.push(other),
        }
    }
    out.push('*');
    out
}

/// One FTS5 phrase: tokens are letters and digits only, so quoting cannot be escaped out of.
fn fts_phrase(tokens: &[String], prefix: bool) -> String {
    format!("\"{}\"{}", tokens.join(" "), if prefix { "*" } else { "" })
}

/// SQL for a compiled query: conditions on `events` plus, when the query has full-text terms
/// to include, an FTS5 `MATCH` expression to drive the scan.
#[derive(Default)]
struct Plan {
    conditions: Vec<String>,
    params: Vec<Box<dyn ToSql>>,
    /// Positive full-text phrases, joined with AND; negative ones are NOT-ed onto it.
    fts_match: Option<String>,
    /// Whether the plan reads the search index: it then covers only indexed events.
    uses_index: bool,
}

/// Whether `query` is answered with the search index: it has full-text terms, or a user or
/// action the index narrows down.
pub fn needs_index(query: &Query) -> bool {
    Plan::new(query).uses_index
}

/// An FTS5 phrase, limited to the index column holding the same text, that every event whose
/// user or action matches `term` also matches; `None` for other terms or text with no tokens.
fn column_phrase(term: &Term) -> Option<String> {
    let (column, pattern) = match term {
        Term::User(p) => ("t_user", p),
        Term::Action(p) => ("t_action", p),
        _ => return None,
    };
    let (text, prefix) = match pattern {
        Pattern::Exact(v) => (v, false),
        Pattern::Prefix(p) => (p, true),
    };
    // ASCII only: there the index's case folding and `search::tokenize` agree exactly, so the
    // phrase cannot miss; other text is left to the exact condition alone.
    if !text.is_ascii() {
        return None;
    }
    let tokens = crate::search::tokenize(text);
    // A prefix may end inside a token, so its last token is a prefix too.
    (!tokens.is_empty()).then(|| format!("{column} : {}", fts_phrase(&tokens, prefix)))
}

impl Plan {
    fn new(query: &Query) -> Plan {
        let mut plan = Plan::default();
        let (mut include, mut exclude) = (Vec::new(), Vec::new());
        for clause in &query.clauses {
            if let Term::Text { tokens, prefix } = &clause.term {
                let phrase = fts_phrase(tokens, *prefix);
                if clause.negated {
                    exclude.push(phrase);
                } else {
                    include.push(phrase);
                }
                continue;
            }
            if !clause.negated {
                // Users and actions have no b-tree index (it halved ingest speed): the
                // index's column of the same text narrows the scan to a superset, and the
                // exact condition below decides.
                if let Some(narrow) = column_phrase(&clause.term) {
                    include.push(narrow);
                }
            }
            let condition = plan.condition(&clause.term);
            plan.conditions.push(if clause.negated {
                // A NULL column makes the condition NULL; negated, it must count as a match,
                // as `Query::matches` has it.
                format!("NOT IFNULL(({condition}), 0)")
            } else {
                format!("({condition})")
            });
        }
        match (include.is_empty(), exclude.is_empty()) {
            (true, true) => {}
            (false, true) => plan.fts_match = Some(include.join(" AND ")),
            (false, false) => {
                plan.fts_match = Some(format!(
                    "({}) NOT ({})",
                    include.join(" AND "),
                    exclude.join(" OR ")
                ))
            }
            (true, false) => {
                plan.conditions.push(
                    "e.seq NOT IN (SELECT rowid FROM search.events_fts WHERE events_fts MATCH ?)"
                        .into(),
                );
                plan.params.push(Box::new(exclude.join(" OR ")));
            }
        }
        plan.uses_index = !(include.is_empty() && exclude.is_empty());
        if plan.uses_index {
            // Events the indexer has not reached would be missed by a MATCH and wrongly pass
            // a NOT MATCH: the answer covers the indexed events, and the caller says so.
            plan.conditions.push(
                "e.seq <= IFNULL((SELECT value FROM search.meta WHERE key = 'indexed_through'), 0)"
                    .into(),
            );
        }
        plan
    }

    fn param(&mut self, value: impl ToSql + 'static) {
        self.params.push(Box::new(value));
    }

    fn pattern(&mut self, column: &str, pattern: &Pattern) -> String {
        match pattern {
            Pattern::Exact(v) => {
                self.param(v.clone());
                format!("{column} = ?")
            }
            Pattern::Prefix(p) => {
                self.param(glob_prefix(p));
                format!("{column} GLOB ?")
            }
        }
    }

    fn any_of(&mut self, column: &str, values: Vec<&'static str>) -> String {
        let marks = vec!["?"; values.len()].join(", ");
        for v in values {
            self.param(v);
        }
        format!("{column} IN ({marks})")
    }

    fn condition(&mut self, term: &Term) -> String {
        match term {
            Term::Text { .. } => "1".into(),
            Term::Level(v) => self.any_of("e.level", v.iter().map(|l| l.as_str()).collect()),
            Term::Category(v) => self.any_of("e.category", v.iter().map(|c| c.as_str()).collect()),
            Term::Outcome(v) => self.any_of("e.outcome", v.iter().map(|o| o.as_str()).collect()),
            Term::User(p) => self.pattern("e.user_id", p),
            Term::Action(p) => self.pattern("e.action", p),
            Term::Source(p) => self.pattern("e.source", p),
            Term::SubmittedBy(p) => self.pattern("e.submitted_by", p),
            Term::Session(p) => self.pattern("e.session_id", p),
            Term::Correlation(p) => self.pattern("e.correlation_id", p),
            Term::Entity(p) => {
                let id = self.pattern("e.entity_id", p);
                let name = self.pattern("e.entity_name", p);
                format!("{id} OR {name}")
            }
            Term::Risk { min, max } => {
                self.param(i64::from(*min));
                self.param(i64::from(*max));
                "e.risk BETWEEN ? AND ?".into()
            }
            Term::Time { start, end } => {
                let mut parts = Vec::new();
                if let Some(s) = start {
                    self.param(s.timestamp_millis());
                    parts.push("e.ts >= ?");
                }
                if let Some(t) = end {
                    self.param(t.timestamp_millis());
                    parts.push("e.ts <= ?");
                }
                if parts.is_empty() {
                    "1".into()
                } else {
                    parts.join(" AND ")
                }
            }
            Term::Substring(s) => {
                let pattern = like_pattern(s);
                for _ in 0..4 {
                    self.param(pattern.clone());
                }
                "e.description LIKE ? ESCAPE '\\' OR e.entity_name LIKE ? ESCAPE '\\' \
                 OR e.username LIKE ? ESCAPE '\\' OR e.action LIKE ? ESCAPE '\\'"
                    .into()
            }
        }
    }

    /// `FROM ... WHERE ...` for the plan, with `extra` conditions (keyset bounds) added; the
    /// parameters in order. The FTS table drives the scan when there is a MATCH, so rows come
    /// in seq order straight from the index with no sort.
    fn sql_from_where(&self, extra: &[&str]) -> (String, Vec<&dyn ToSql>, &'static str) {
        let mut conditions: Vec<&str> = Vec::new();
        let mut params: Vec<&dyn ToSql> = Vec::new();
        let (from, seq) = match &self.fts_match {
            Some(m) => {
                conditions.push("events_fts MATCH ?");
                params.push(m as &dyn ToSql);
                (
                    "search.events_fts f JOIN events e ON e.seq = f.rowid",
                    "f.rowid",
                )
            }
            None => ("events e", "e.seq"),
        };
        conditions.extend(self.conditions.iter().map(String::as_str));
        params.extend(self.params.iter().map(|p| p.as_ref()));
        conditions.extend(extra.iter().copied());
        let sql = if conditions.is_empty() {
            format!("FROM {from}")
        } else {
            format!("FROM {from} WHERE {}", conditions.join(" AND "))
        };
        (sql.replace("{seq}", seq), params, seq)
    }
}

/// A full-text set of at most this many matches is sorted by reading their rows; a larger one
/// is found by walking the time index ([`walk_in_time`]), which for this many reads about
/// `events / matches` index entries per row kept.
const SORTED_AT_MOST: u64 = 5_000;

/// The full-text matches of a query: their seqs, ascending (the order FTS5 gives rowids in).
///
/// A sorted vector, not a hash set: at 10M events a common word's 213k seqs went into a
/// `HashSet` in 7 ms, on top of the 22 ms of reading them; pushing them costs next to nothing,
/// and a walk asks for membership a few thousand times at most (a binary search each).
struct Matches(Vec<i64>);

impl Matches {
    fn contains(&self, seq: i64) -> bool {
        self.0.binary_search(&seq).is_ok()
    }

    fn len(&self) -> u64 {
        self.0.len() as u64
    }
}

/// A JSON array of seqs, which `json_each(?)` reads back as a table.
fn json_array(seqs: &[i64]) -> String {
    let items: Vec<String> = seqs.iter().map(i64::to_string).collect();
    format!("[{}]", items.join(","))
}

/// The parameters [`after_cursor`]'s condition takes for `cursor` in `order`, in order.
fn cursor_params(order: EventOrder, cursor: &crate::store::reads::Cursor) -> Vec<Box<dyn ToSql>> {
    let mut params: Vec<Box<dyn ToSql>> = Vec::new();
    if order.field != SortField::Seq {
        params.push(key_param(&cursor.key));
        params.push(key_param(&cursor.key));
    }
    params.push(Box::new(cursor.seq.0 as i64));
    params
}

/// The seqs of the full-text matches of `plan`, or `None` without full-text terms.
fn matches_set(tx: &Connection, plan: &Plan) -> Result<Option<Matches>, StoreError> {
    let Some(fts) = &plan.fts_match else {
        return Ok(None);
    };
    let mut seqs = Vec::new();
    let mut stmt =
        tx.prepare_cached("SELECT rowid FROM search.events_fts WHERE events_fts MATCH ?1")?;
    let mut rows = stmt.query([fts])?;
    while let Some(row) = rows.next()? {
        seqs.push(row.get::<_, i64>(0)?);
    }
    // Already ascending, as FTS5 returns rowids; sorting a sorted run is one linear pass, and
    // keeps `Matches::contains` right should that ever change.
    seqs.sort_unstable();
    seqs.dedup();
    Ok(Some(Matches(seqs)))
}

/// The statement checking candidates (a JSON array of seqs, its first parameter, then the
/// plan's) against the rest of `plan`: `SELECT {what} FROM events e WHERE ...`.
fn check_sql(plan: &Plan, what: &str) -> String {
    let mut conditions = vec!["e.seq IN (SELECT value FROM json_each(?))"];
    conditions.extend(plan.conditions.iter().map(String::as_str));
    format!(
        "SELECT {what} FROM events e WHERE {}",
        conditions.join(" AND ")
    )
}

/// The seqs of `batch` that pass `stmt`, a [`check_sql`] statement of `e.seq` for `plan`.
fn passing(
    stmt: &mut rusqlite::Statement<'_>,
    plan: &Plan,
    batch: &[i64],
) -> Result<std::collections::HashSet<i64>, StoreError> {
    let json = json_array(batch);
    let mut params: Vec<&dyn ToSql> = vec![&json];
    params.extend(plan.params.iter().map(|p| p.as_ref()));
    let passed = stmt
        .query_map(params.as_slice(), |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(passed)
}

/// The seqs of a page in seq order (arrival, either way) from the full-text matches `set`:
/// its members past the cursor, in the order's direction, checked against the rest of the
/// query in batches. Skips `skip` matches, then keeps up to `limit`.
///
/// The index's own matches, read through a join, came in seq order too, but a prefix's
/// doclists were merged again for them after the set had been built.
fn seq_page_from_set(
    tx: &Connection,
    plan: &Plan,
    set: &Matches,
    req: &PageRequest,
    skip: u64,
    limit: u32,
) -> Result<Vec<i64>, StoreError> {
    let descending = req.order.descending;
    let members: &[i64] = match &req.cursor {
        Some(c) => {
            let at = c.seq.0 as i64;
            match descending {
                true => &set.0[..set.0.partition_point(|&s| s < at)],
                false => &set.0[set.0.partition_point(|&s| s <= at)..],
            }
        }
        None => &set.0,
    };
    let wanted = usize::try_from(skip + u64::from(limit)).unwrap_or(usize::MAX);
    let mut stmt = tx.prepare(&check_sql(plan, "e.seq"))?;
    let mut kept: Vec<i64> = Vec::new();
    let mut batches: Box<dyn Iterator<Item = &[i64]>> = match descending {
        true => Box::new(members.rchunks(CHECK_BATCH)),
        false => Box::new(members.chunks(CHECK_BATCH)),
    };
    while kept.len() < wanted {
        let Some(batch) = batches.next() else { break };
        let passed = passing(&mut stmt, plan, batch)?;
        match descending {
            true => kept.extend(batch.iter().rev().filter(|s| passed.contains(s))),
            false => kept.extend(batch.iter().filter(|s| passed.contains(s))),
        }
    }
    Ok(kept
        .into_iter()
        .skip(usize::try_from(skip).unwrap_or(usize::MAX))
        .take(limit as usize)
        .collect())
}

/// The seqs of a page in `req`'s order from a small full-text `set` (at most
/// [`SORTED_AT_MOST`]): its members' rows are read, checked and sorted by SQLite.
fn sorted_from_set(
    tx: &Connection,
    plan: &Plan,
    set: &Matches,
    req: &PageRequest,
    offset: i64,
    limit: u32,
) -> Result<Vec<i64>, StoreError> {
    let order = req.order;
    let mut sql = check_sql(plan, "e.seq");
    let mut after: Vec<Box<dyn ToSql>> = Vec::new();
    if let Some(c) = &req.cursor {
        sql.push_str(" AND ");
        sql.push_str(&after_cursor(order, "e.seq", Dialect::Sqlite, "?", "?"));
        after = cursor_params(order, c);
    }
    sql.push_str(&format!(
        " ORDER BY {} LIMIT ? OFFSET ?",
        order_by(order, "e.seq", Dialect::Sqlite)
    ));
    let json = json_array(&set.0);
    let limit_param = i64::from(limit);
    let mut params: Vec<&dyn ToSql> = vec![&json];
    params.extend(plan.params.iter().map(|p| p.as_ref()));
    params.extend(after.iter().map(|p| p.as_ref()));
    params.push(&limit_param);
    params.push(&offset);
    let seqs = tx
        .prepare(&sql)?
        .query_map(params.as_slice(), |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(seqs)
}

/// A count of the query's matches among the full-text matches `set`: its members, newest
/// first, are checked against the rest of `plan` in batches, until `cap` of them pass or the
/// `deadline` (when there is one) passes; then it is a lower bound. Every member is checked,
/// so an event the index still lists after retention removed it is not counted.
///
/// Before, a query of words and fields counted by joining the index's matches to the events
/// in a second statement, which merged a prefix's doclists once more (17 ms for a common
/// word at 10M events) before its first row.
fn count_in_set(
    tx: &Connection,
    plan: &Plan,
    set: &Matches,
    cap: u64,
    deadline: Option<std::time::Instant>,
) -> Result<(u64, bool), StoreError> {
    let mut stmt = tx.prepare(&check_sql(plan, "COUNT(*)"))?;
    let mut n = 0_u64;
    let mut batches = set.0.rchunks(CHECK_BATCH).peekable();
    while let Some(batch) = batches.next() {
        let json = json_array(batch);
        let mut params: Vec<&dyn ToSql> = vec![&json];
        params.extend(plan.params.iter().map(|p| p.as_ref()));
        let passed: i64 = stmt.query_row(params.as_slice(), |r| r.get(0))?;
        n += passed.max(0) as u64;
        if n >= cap {
            return Ok((cap, true));
        }
        // Only a count that left members unchecked is a lower bound: one whose last batch
        // ended past the deadline is still exact.
        let late = deadline.is_some_and(|d| std::time::Instant::now() >= d);
        if late && batches.peek().is_some() {
            return Ok((n, true));
        }
    }
    Ok((n, false))
}

/// How many candidates (seqs in the matches' set) are checked against the rest of the query
/// at once.
const CHECK_BATCH: usize = 256;

/// The seqs of a page in event time (`req`'s order is by timestamp): the time index is walked
/// in order from the request's cursor, within the query's own time bounds, and each seq in
/// `set` (the full-text matches, see [`matches_set`]) is a candidate; candidates are checked
/// against the rest of the query in batches, reading only their rows. Skips `skip` matches,
/// then keeps up to `limit`.
///
/// Measured at 10M events with event times shuffled against arrival (BENCHMARKS.md): sorting
/// a common word's 213k matches by time took 440 ms through HTTP, since each match's row is
/// read to sort it; the index holds the seqs, so walking it reads a row only for a seq in the
/// set. SQLite can walk so itself (`seq IN (SELECT rowid ... MATCH ...)`), but builds the set
/// as a b-tree and reads each candidate's row to check the rest of the query as it walks; a
/// set of the seqs here and batched checks took the page from 78 to 66 ms (p50). Probing the index
/// for each row walked instead was tried and dropped: 44 µs a row for a word, and for a prefix
/// (every bare word is one) FTS5 merges the prefix's doclists again at every probe, which took
/// 58 s for one page.
fn walk_in_time(
    tx: &Connection,
    plan: &Plan,
    set: &Matches,
    query: &Query,
    req: &PageRequest,
    skip: u64,
    limit: u32,
) -> Result<Vec<i64>, StoreError> {
    let (order, cursor) = (req.order, req.cursor.as_ref());
    // The walk reads the index alone: the query's time bounds and the cursor are ranges of it.
    let mut bounds: Vec<String> = Vec::new();
    let mut params: Vec<Box<dyn ToSql>> = Vec::new();
    for clause in query.clauses.iter().filter(|c| !c.negated) {
        if let Term::Time { start, end } = &clause.term {
            if let Some(s) = start {
                bounds.push("e.ts >= ?".into());
                params.push(Box::new(s.timestamp_millis()));
            }
            if let Some(t) = end {
                bounds.push("e.ts <= ?".into());
                params.push(Box::new(t.timestamp_millis()));
            }
        }
    }
    if let Some(c) = cursor {
        bounds.push(after_cursor(order, "e.seq", Dialect::Sqlite, "?", "?"));
        params.extend(cursor_params(order, c));
    }
    let filter = if bounds.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", bounds.join(" AND "))
    };
    let walk = format!(
        "SELECT e.seq FROM events e INDEXED BY events_ts {filter} ORDER BY {}",
        order_by(order, "e.seq", Dialect::Sqlite)
    );
    // The rest of the query, on candidates given as a JSON array.
    let check = check_sql(plan, "e.seq");
    let wanted = skip + u64::from(limit);
    let mut kept: Vec<i64> = Vec::new();
    let mut batch: Vec<i64> = Vec::with_capacity(CHECK_BATCH);
    let mut stmt = tx.prepare(&walk)?;
    let mut check_stmt = tx.prepare(&check)?;
    let walk_params: Vec<&dyn ToSql> = params.iter().map(|p| p.as_ref()).collect();
    let mut rows = stmt.query(walk_params.as_slice())?;
    let mut done = false;
    while !done {
        let seq = match rows.next()? {
            Some(row) => Some(row.get::<_, i64>(0)?),
            None => None,
        };
        if let Some(seq) = seq {
            if set.contains(seq) {
                batch.push(seq);
            }
        }
        done = seq.is_none();
        if batch.len() >= CHECK_BATCH || (done && !batch.is_empty()) {
            let passed = passing(&mut check_stmt, plan, &batch)?;
            kept.extend(batch.drain(..).filter(|s| passed.contains(s)));
            if kept.len() as u64 >= wanted {
                done = true;
            }
        }
    }
    Ok(kept
        .into_iter()
        .skip(usize::try_from(skip).unwrap_or(usize::MAX))
        .take(limit as usize)
        .collect())
}

/// The events matching `query`, in the request's order, one page of them, and how many match.
///
/// The page is read first and counted after: a short first page is its own exact count, and
/// a capped count gets what is left of the answer's budget ([`count_deadline`]).
pub fn page(conn: &Connection, query: &Query, req: PageRequest) -> Result<EventPage, StoreError> {
    let started = std::time::Instant::now();
    let page = req.page.max(1);
    let limit = req.limit.clamp(1, 1000);
    let tx = conn.unchecked_transaction()?;
    let head_seq = head(&tx)?;
    let plan = Plan::new(query);

    // In event time and in arrival order, the full-text matches' set is read once and
    // answers the page and the capped count, so a prefix's doclists (every bare word is a
    // prefix) are merged once per answer, not once for each.
    let order = req.order;
    let set = match order.field {
        SortField::Timestamp | SortField::Seq => matches_set(&tx, &plan)?,
        _ => None,
    };
    let offset = if req.cursor.is_some() {
        0
    } else {
        i64::from(page - 1) * i64::from(limit)
    };
    let skip = offset.max(0) as u64;
    let seqs = match &set {
        Some(set) if order.field == SortField::Seq => {
            seq_page_from_set(&tx, &plan, set, &req, skip, limit)?
        }
        Some(set) if set.len() > SORTED_AT_MOST => {
            walk_in_time(&tx, &plan, set, query, &req, skip, limit)?
        }
        Some(set) => sorted_from_set(&tx, &plan, set, &req, offset, limit)?,
        None => {
            let mut extra: Vec<String> = Vec::new();
            let mut after: Vec<Box<dyn ToSql>> = Vec::new();
            if let Some(c) = &req.cursor {
                extra.push(after_cursor(order, "{seq}", Dialect::Sqlite, "?", "?"));
                after = cursor_params(order, c);
            }
            let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
            let (from_where, mut params, seq) = plan.sql_from_where(&extra);
            params.extend(after.iter().map(|p| p.as_ref()));
            let limit_param = i64::from(limit);
            params.push(&limit_param);
            params.push(&offset);
            let sort = order_by(order, seq, Dialect::Sqlite);
            let sql = format!("SELECT {seq} {from_where} ORDER BY {sort} LIMIT ? OFFSET ?");
            tx.prepare(&sql)?
                .query_map(params.as_slice(), |r| r.get(0))?
                .collect::<Result<Vec<i64>, _>>()?
        }
    };
    // The page's rows are read once its seqs are known (see `rows_of`).
    let sql = rows_of(
        "SELECT value FROM json_each(?)",
        &order_by(order, "e.seq", Dialect::Sqlite),
    );
    let items = tx
        .prepare(&sql)?
        .query_map([json_array(&seqs)], event_from_row)?
        .collect::<Result<Vec<_>, _>>()?;

    let text_only = query
        .clauses
        .iter()
        .all(|c| matches!(c.term, Term::Text { .. }));
    // A first page (by number) that came back short holds every match after those skipped.
    let short =
        req.cursor.is_none() && items.len() < limit as usize && (offset == 0 || !items.is_empty());
    let (total, total_is_lower_bound) = if query.clauses.is_empty() {
        (counters(&tx)?.total, false)
    } else if short {
        (offset.max(0) as u64 + items.len() as u64, false)
    } else if let Some(set) = &set {
        match req.count_limit {
            // Words alone: the set is the answer, so one at least as large as the cap says
            // "cap or more" without a row read.
            Some(cap) if text_only && set.len() >= cap => (cap, true),
            Some(cap) => count_in_set(&tx, &plan, set, cap, Some(count_deadline(started)))?,
            None => count_in_set(&tx, &plan, set, u64::MAX, None)?,
        }
    } else {
        let (from_where, mut params, _) = plan.sql_from_where(&[]);
        match req.count_limit {
            None => {
                let sql = format!("SELECT COUNT(*) {from_where}");
                let n: i64 = tx
                    .prepare(&sql)?
                    .query_row(params.as_slice(), |r| r.get(0))?;
                (n.max(0) as u64, false)
            }
            Some(cap) => {
                // Counted row by row against a deadline: a filter no index serves would
                // otherwise scan every event just to say how many match.
                let cap_param = cap as i64;
                params.push(&cap_param);
                let sql = format!("SELECT 1 {from_where} LIMIT ?");
                let mut stmt = tx.prepare(&sql)?;
                let mut rows = stmt.query(params.as_slice())?;
                let deadline = count_deadline(started);
                let mut n = 0_u64;
                let mut cut_short = false;
                while rows.next()?.is_some() {
                    n += 1;
                    if n % 256 == 0 && std::time::Instant::now() >= deadline {
                        // Cut short only if a row was left uncounted.
                        cut_short = rows.next()?.is_some();
                        n += u64::from(cut_short);
                        break;
                    }
                }
                (n, cut_short || n >= cap)
            }
        }
    };
    let next_cursor = next_cursor(order, &items, limit);
    let search_indexed_through = if plan.uses_index {
        let indexed = super::index::indexed_through(&tx)?;
        (indexed < head_seq.0).then_some(Seq(indexed))
    } else {
        None
    };
    tx.finish()?;
    // Live resumes from `head_seq`: it must be where the answer is complete, or the events
    // between the index and the head would be in neither the page nor the stream.
    let head_seq = search_indexed_through.unwrap_or(head_seq);
    Ok(EventPage {
        search_indexed_through,
        items,
        total,
        total_is_lower_bound,
        page,
        limit,
        next_cursor,
        head_seq,
    })
}

/// Events after `after` that match `query`, oldest first, up to `limit` of them; and the seq
/// the scan reached, so a caller resumes after it even when nothing in between matched.
pub fn matching_from(
    conn: &Connection,
    query: &Query,
    after: Seq,
    limit: usize,
) -> Result<(Vec<StoredEvent>, Seq), StoreError> {
    let tx = conn.unchecked_transaction()?;
    let head_seq = head(&tx)?;
    let plan = Plan::new(query);
    let (from_where, mut params, seq) = plan.sql_from_where(&["{seq} > ?"]);
    let after_param = after.0 as i64;
    let limit_param = limit as i64;
    params.push(&after_param);
    params.push(&limit_param);
    let sql = rows_of(
        &format!("SELECT {seq} {from_where} ORDER BY {seq} ASC LIMIT ?"),
        "e.seq ASC",
    );
    let items = tx
        .prepare(&sql)?
        .query_map(params.as_slice(), event_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    // A full page may stop short of the head; an unfull one saw everything up to it, or up
    // to where the search index reached when it was used.
    let seen = if plan.uses_index {
        Seq(super::index::indexed_through(&tx)?.min(head_seq.0))
    } else {
        head_seq
    };
    tx.finish()?;
    let reached = match items.last() {
        Some(last) if items.len() == limit => last.seq,
        _ => seen.max(after),
    };
    Ok((items, reached))
}

/// Calls `each` with every event matching `query`, in `order`, in one read transaction,
/// until it returns `false`; returns how many it was given.
pub fn for_each<F>(
    conn: &Connection,
    query: &Query,
    order: EventOrder,
    mut each: F,
) -> Result<u64, StoreError>
where
    F: FnMut(&StoredEvent) -> bool,
{
    let tx = conn.unchecked_transaction()?;
    let plan = Plan::new(query);
    let (from_where, params, seq) = plan.sql_from_where(&[]);
    let columns = EVENT_COLUMNS_QUALIFIED.as_str();
    let sort = order_by(order, seq, Dialect::Sqlite);
    let sql = format!("SELECT {columns} {from_where} ORDER BY {sort}");
    let mut n = 0;
    {
        let mut stmt = tx.prepare(&sql)?;
        let mut rows = stmt.query(params.as_slice())?;
        while let Some(row) = rows.next()? {
            let event = event_from_row(row)?;
            n += 1;
            if !each(&event) {
                break;
            }
        }
    }
    tx.finish()?;
    Ok(n)
}

/// The events whose seqs `seqs` (a query of one column) selects, sorted by `order_by`.
///
/// A page is chosen by seq alone first and its rows read after: when the sort is not the
/// scan's order (a time range is found through `events_ts`, in time order), SQLite sorted
/// every matching row whole to keep a hundred: a one-day range over 1M events took 71 ms
/// through HTTP, and 8 ms sorting only the seqs.
fn rows_of(seqs: &str, order_by: &str) -> String {
    let columns = EVENT_COLUMNS_QUALIFIED.as_str();
    format!("SELECT {columns} FROM events e WHERE e.seq IN ({seqs}) ORDER BY {order_by}")
}

/// A cursor's key as a statement parameter.
fn key_param(key: &SortKey) -> Box<dyn ToSql> {
    match key {
        SortKey::Int(i) => Box::new(*i),
        SortKey::Text(t) => Box::new(t.clone()),
    }
}

/// [`EVENT_COLUMNS`] prefixed with the `e.` alias the query plans use.
static EVENT_COLUMNS_QUALIFIED: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    EVENT_COLUMNS
        .split(',')
        .map(|c| format!("e.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
});

/// Each level, category or action that occurs, with its count, most frequent first.
pub fn distinct(conn: &Connection, field: DistinctField) -> Result<Vec<ValueCount>, StoreError> {
    let rows: Vec<(String, i64)> = match field {
        DistinctField::Level | DistinctField::Category | DistinctField::Action => {
            let prefix = match field {
                DistinctField::Level => "level:",
                DistinctField::Category => "category:",
                DistinctField::Action => "action:",
            };
            let mut stmt = conn.prepare_cached(
                "SELECT substr(name, length(?1) + 1), value FROM counters
                 WHERE name >= ?1 AND name < ?1 || char(1114111) AND value > 0",
            )?;
            let rows = stmt.query_map([prefix], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<Result<_, _>>()?
        }
    };
    Ok(by_count(
        rows.into_iter()
            .map(|(value, count)| (value, count.max(0) as u64)),
    ))
}

#[cfg(test)]
mod tests {
    use super::{fts_phrase, glob_prefix};
    use crate::store::reads::like_pattern;

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_pattern("50%_off\\"), "%50\\%\\_off\\\\%");
    }

    #[test]
    fn glob_prefixes_escape_wildcards() {
        assert_eq!(glob_prefix("a*b?[c"), "a[*]b[?][[]c*");
    }

    #[test]
    fn fts_phrases_quote_tokens() {
        assert_eq!(fts_phrase(&["a".into(), "b".into()], true), "\"a b\"*");
        assert_eq!(fts_phrase(&["x".into()], false), "\"x\"");
    }
}
