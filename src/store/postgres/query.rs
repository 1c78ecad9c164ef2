//! The query language on PostgreSQL: a compiled [`Query`] as one `WHERE` clause with numbered
//! parameters, and the reads built on it (a page newest first with its count, the matches
//! after a seq for live catch-up, every match for exports, the running totals). Every clause
//! means what it means on SQLite (`store::sqlite::query`) and in the browser (`search`): full text by
//! the same tokens and phrases (`postgres::words`), prefixes case-sensitive, substrings
//! ignoring ASCII case only, a negated condition true where its column is empty. Words are
//! written in the appending transaction, so an answer is never behind the head.

use super::words;
use crate::model::{
    Counters, DashboardSnapshot, EventDetail, EventId, EventOrder, EventPage, Seq, SortField,
    SortKey, StoredEvent, ValueCount,
};
use crate::search::{Pattern, Query, Term};
use crate::store::reads::{
    after_cursor, by_count, counters_of, like_escaped, like_pattern, next_cursor, order_by,
    Dialect, DistinctField, PageRequest, COUNTER_NAMES,
};
use crate::store::row::{self, EVENT_COLUMNS};
use crate::store::{Concerning, StoreError};
use futures::{pin_mut, TryStreamExt};
use std::sync::LazyLock;
use tokio_postgres::types::ToSql;
use tokio_postgres::{GenericClient, IsolationLevel};

type Param = Box<dyn ToSql + Sync + Send>;

/// [`EVENT_COLUMNS`] with the `e.` alias the plans use.
static COLUMNS: LazyLock<String> = LazyLock::new(|| {
    EVENT_COLUMNS
        .split(',')
        .map(|c| format!("e.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
});

/// A compiled query's conditions and their parameters (`$1`, `$2`, … in order).
#[derive(Default)]
struct Plan {
    conditions: Vec<String>,
    params: Vec<Param>,
}

impl Plan {
    fn new(query: &Query) -> Plan {
        let mut plan = Plan::default();
        for clause in &query.clauses {
            let condition = plan.condition(&clause.term);
            plan.conditions.push(if clause.negated {
                // A NULL column makes the condition NULL; negated, it must count as a match,
                // as `Query::matches` has it.
                format!("NOT COALESCE(({condition}), false)")
            } else {
                format!("({condition})")
            });
        }
        plan
    }

    /// Adds a parameter; its placeholder.
    fn param(&mut self, value: impl ToSql + Sync + Send + 'static) -> String {
        self.params.push(Box::new(value));
        format!("${}", self.params.len())
    }

    fn pattern(&mut self, column: &str, pattern: &Pattern) -> String {
        match pattern {
            Pattern::Exact(v) => {
                let p = self.param(v.clone());
                format!("{column} = {p}")
            }
            // Case-sensitive, as SQLite's GLOB; a b-tree with text_pattern_ops serves it.
            Pattern::Prefix(prefix) => {
                let p = self.param(format!("{}%", like_escaped(prefix)));
                format!("{column} LIKE {p}")
            }
        }
    }

    fn any_of(&mut self, column: &str, values: Vec<String>) -> String {
        let p = self.param(values);
        format!("{column} = ANY({p})")
    }

    fn condition(&mut self, term: &Term) -> String {
        match term {
            Term::Text { tokens, prefix } => match words::phrase(tokens, *prefix) {
                Some(phrase) => {
                    let p = self.param(phrase);
                    // Sent as text: a string parameter cannot be typed tsquery itself.
                    format!("e.words @@ {p}::text::tsquery")
                }
                None => "true".into(),
            },
            Term::Level(v) => self.any_of(
                "e.level",
                v.iter().map(|l| l.as_str().to_string()).collect(),
            ),
            Term::Category(v) => self.any_of(
                "e.category",
                v.iter().map(|c| c.as_str().to_string()).collect(),
            ),
            Term::Outcome(v) => self.any_of(
                "e.outcome",
                v.iter().map(|o| o.as_str().to_string()).collect(),
            ),
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
                let (min, max) = (self.param(i64::from(*min)), self.param(i64::from(*max)));
                format!("e.risk BETWEEN {min} AND {max}")
            }
            Term::Time { start, end } => {
                let mut parts = Vec::new();
                if let Some(s) = start {
                    let p = self.param(s.timestamp_millis());
                    parts.push(format!("e.ts >= {p}"));
                }
                if let Some(t) = end {
                    let p = self.param(t.timestamp_millis());
                    parts.push(format!("e.ts <= {p}"));
                }
                if parts.is_empty() {
                    "true".into()
                } else {
                    parts.join(" AND ")
                }
            }
            // ASCII case only, as SQLite's LIKE: lower() under the C collation folds nothing
            // else.
            Term::Substring(s) => {
                let p = self.param(like_pattern(s).to_ascii_lowercase());
                ["e.description", "e.entity_name", "e.username", "e.action"]
                    .iter()
                    .map(|c| format!("lower({c} COLLATE \"C\") LIKE {p}"))
                    .collect::<Vec<_>>()
                    .join(" OR ")
            }
        }
    }

    /// `WHERE …` with `extra` conditions (already numbered after the plan's parameters).
    fn where_clause(&self, extra: &[String]) -> String {
        let all: Vec<&str> = self
            .conditions
            .iter()
            .chain(extra)
            .map(String::as_str)
            .collect();
        if all.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", all.join(" AND "))
        }
    }

    /// The plan's parameters, then `extra`, as a statement takes them.
    fn params<'a>(&'a self, extra: &[&'a (dyn ToSql + Sync)]) -> Vec<&'a (dyn ToSql + Sync)> {
        self.params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .chain(extra.iter().copied())
            .collect()
    }

    /// The placeholder of the `n`th parameter after the plan's own (from 1).
    fn next(&self, n: usize) -> String {
        format!("${}", self.params.len() + n)
    }
}

/// A read-only transaction on one snapshot, so the statements of one answer agree.
pub(super) async fn snapshot_of(
    client: &mut tokio_postgres::Client,
) -> Result<tokio_postgres::Transaction<'_>, StoreError> {
    Ok(client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?)
}

fn events_of(rows: &[tokio_postgres::Row]) -> Result<Vec<StoredEvent>, StoreError> {
    rows.iter()
        .map(|r| {
            row::event_from_row(r).map_err(|e| StoreError::Corrupt {
                seq: r.try_get::<_, i64>(0).unwrap_or(0).max(0) as u64,
                detail: format!("column {}: {}", e.idx, e.detail),
            })
        })
        .collect()
}

async fn head(client: &impl GenericClient) -> Result<Seq, StoreError> {
    let seq: i64 = client
        .query_one("SELECT seq FROM chain_head WHERE id = 1", &[])
        .await?
        .get(0);
    Ok(Seq(seq.max(0) as u64))
}

/// Running totals, as of the head.
///
/// # Errors
/// Database errors.
pub async fn counters(client: &impl GenericClient) -> Result<Counters, StoreError> {
    let names: Vec<&str> = COUNTER_NAMES.to_vec();
    let rows = client
        .query(
            "SELECT name, value FROM counters WHERE name = ANY($1)",
            &[&names],
        )
        .await?;
    let named = rows
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1)));
    Ok(counters_of(head(client).await?, named.collect::<Vec<_>>()))
}

/// The events matching `query`, newest first, one page of them, and how many match; from one
/// snapshot, so the count, the page and the head agree.
///
/// # Errors
/// Database errors.
pub async fn page(
    client: &mut tokio_postgres::Client,
    query: &Query,
    req: PageRequest,
) -> Result<EventPage, StoreError> {
    let started = std::time::Instant::now();
    let page = req.page.max(1);
    let limit = req.limit.clamp(1, 1000);
    let tx = snapshot_of(client).await?;
    let head_seq = head(&tx).await?;
    let plan = Plan::new(query);
    let (total, total_is_lower_bound) = if query.clauses.is_empty() {
        (counters(&tx).await?.total, false)
    } else {
        let filter = plan.where_clause(&[]);
        match req.count_limit {
            None => {
                let sql = format!("SELECT count(*) FROM events e {filter}");
                let n: i64 = tx.query_one(&sql, &plan.params(&[])).await?.get(0);
                (n.max(0) as u64, false)
            }
            Some(cap) => {
                // Counted a few hundred rows at a time against a deadline, as on SQLite: the
                // portal's query runs only as far as the rows fetched, so a filter no index
                // serves does not scan every event just to say how many match.
                const FETCH: i32 = 512;
                let cap_param = i64::try_from(cap).unwrap_or(i64::MAX);
                let sql = format!("SELECT 1 FROM events e {filter} LIMIT {}", plan.next(1));
                let stmt = tx.prepare(&sql).await?;
                let portal = tx.bind(&stmt, &plan.params(&[&cap_param])).await?;
                let deadline = crate::store::reads::count_deadline(started);
                let mut n = 0_u64;
                let mut cut_short = false;
                loop {
                    let rows = tx.query_portal(&portal, FETCH).await?;
                    n += rows.len() as u64;
                    if rows.len() < FETCH as usize {
                        break;
                    }
                    if std::time::Instant::now() >= deadline {
                        cut_short = true;
                        break;
                    }
                }
                (n, cut_short || n >= cap)
            }
        }
    };
    let order = req.order;
    let limit_param = i64::from(limit);
    let offset = match req.cursor {
        Some(_) => 0,
        None => i64::from(page - 1) * i64::from(limit),
    };
    // An exact count already says how many match; only a capped one leaves it to be found.
    let known = (!total_is_lower_bound).then_some(total);
    let sort =
        if order == EventOrder::ARRIVAL && few_in_a_past_window(&tx, query, &plan, known).await? {
            // Read through the filter's own index and sorted: the `+ 0` keeps the planner from
            // walking the whole chain newest first to reach a window far from the head.
            "e.seq + 0 DESC".to_string()
        } else {
            order_by(order, "e.seq", Dialect::Postgres)
        };
    let rows = match &req.cursor {
        Some(c) => {
            let seq = c.seq.0 as i64;
            // An order by seq compares the seq alone; others the key, then the seq. Each
            // placeholder is typed by the column it is compared with.
            let key: Option<&(dyn ToSql + Sync)> = match (&c.key, order.field) {
                (_, SortField::Seq) => None,
                (SortKey::Int(k), _) => Some(k),
                (SortKey::Text(k), _) => Some(k),
            };
            let mut extra: Vec<&(dyn ToSql + Sync)> = key.into_iter().collect();
            extra.push(&seq);
            let (k, at) = match key {
                Some(_) => (plan.next(1), plan.next(2)),
                None => (plan.next(1), plan.next(1)),
            };
            let after = after_cursor(order, "e.seq", Dialect::Postgres, &k, &at);
            let filter = plan.where_clause(&[after]);
            let sql = format!(
                "SELECT {} FROM events e {filter} ORDER BY {sort} LIMIT {} OFFSET {}",
                *COLUMNS,
                plan.next(extra.len() + 1),
                plan.next(extra.len() + 2)
            );
            extra.push(&limit_param);
            extra.push(&offset);
            tx.query(&sql, &plan.params(&extra)).await?
        }
        None => {
            let filter = plan.where_clause(&[]);
            let sql = format!(
                "SELECT {} FROM events e {filter} ORDER BY {sort} LIMIT {} OFFSET {}",
                *COLUMNS,
                plan.next(1),
                plan.next(2)
            );
            tx.query(&sql, &plan.params(&[&limit_param, &offset]))
                .await?
        }
    };
    let items = events_of(&rows)?;
    tx.commit().await?;
    let next_cursor = next_cursor(order, &items, limit);
    Ok(EventPage {
        search_indexed_through: None,
        items,
        total,
        total_is_lower_bound,
        page,
        limit,
        next_cursor,
        head_seq,
    })
}

/// At most this many matches are sorted rather than found by walking the chain newest first.
const SORTED_AT_MOST: i64 = 50_000;

/// Whether `query` asks for a time window that ends (an investigation of a past day, say) and
/// few enough events match to sort them. The planner takes time and seq to be independent, so
/// for such a window it would walk the chain from the newest event, through everything since,
/// to find a first page that the time index reaches at once (200 ms against 9 ms on SQLite at
/// a million events, BENCHMARKS.md). `matching` is the number of matches when the page's count
/// is exact; otherwise they are counted up to the bound, which costs at most that many index
/// entries.
async fn few_in_a_past_window(
    tx: &impl GenericClient,
    query: &Query,
    plan: &Plan,
    matching: Option<u64>,
) -> Result<bool, StoreError> {
    let ends = query
        .clauses
        .iter()
        .any(|c| !c.negated && matches!(c.term, Term::Time { end: Some(_), .. }));
    if !ends {
        return Ok(false);
    }
    if let Some(n) = matching {
        return Ok(n <= SORTED_AT_MOST as u64);
    }
    let sql = format!(
        "SELECT count(*) FROM (SELECT 1 FROM events e {} LIMIT {}) AS m",
        plan.where_clause(&[]),
        plan.next(1)
    );
    let bound = SORTED_AT_MOST + 1;
    let n: i64 = tx.query_one(&sql, &plan.params(&[&bound])).await?.get(0);
    Ok(n <= SORTED_AT_MOST)
}

/// Events after `after` that match `query`, oldest first, up to `limit` of them; and the seq
/// the scan reached, so a caller resumes after it even when nothing in between matched.
///
/// # Errors
/// Database errors.
pub async fn matching_from(
    client: &mut tokio_postgres::Client,
    query: &Query,
    after: Seq,
    limit: usize,
) -> Result<(Vec<StoredEvent>, Seq), StoreError> {
    let tx = snapshot_of(client).await?;
    let head_seq = head(&tx).await?;
    let plan = Plan::new(query);
    let after_param = after.0 as i64;
    let limit_param = i64::try_from(limit).unwrap_or(i64::MAX);
    let filter = plan.where_clause(&[format!("e.seq > {}", plan.next(1))]);
    let sql = format!(
        "SELECT {} FROM events e {filter} ORDER BY e.seq ASC LIMIT {}",
        *COLUMNS,
        plan.next(2)
    );
    let rows = tx
        .query(&sql, &plan.params(&[&after_param, &limit_param]))
        .await?;
    let items = events_of(&rows)?;
    tx.commit().await?;
    let reached = match items.last() {
        Some(last) if items.len() == limit => last.seq,
        _ => head_seq.max(after),
    };
    Ok((items, reached))
}

/// Sends every event matching `query` to `to`, in `order`, from one snapshot, until `to`
/// closes; rows stream, so memory stays flat. Returns how many were sent.
///
/// # Errors
/// Database errors.
pub async fn send_each(
    client: &mut tokio_postgres::Client,
    query: &Query,
    order: EventOrder,
    to: tokio::sync::mpsc::Sender<StoredEvent>,
) -> Result<u64, StoreError> {
    let tx = snapshot_of(client).await?;
    let plan = Plan::new(query);
    let sql = format!(
        "SELECT {} FROM events e {} ORDER BY {}",
        *COLUMNS,
        plan.where_clause(&[]),
        order_by(order, "e.seq", Dialect::Postgres)
    );
    // In a block of its own, so the stream is gone before the commit (an early stop leaves
    // rows unread, and they are discarded with it).
    let n = {
        let stream = tx.query_raw(&sql, plan.params(&[])).await?;
        pin_mut!(stream);
        let mut n = 0;
        while let Some(row) = stream.try_next().await? {
            let Some(event) = events_of(std::slice::from_ref(&row))?.pop() else {
                continue;
            };
            n += 1;
            if to.send(event).await.is_err() {
                // The consumer has stopped.
                break;
            }
        }
        n
    };
    tx.commit().await?;
    Ok(n)
}

/// Each level, category or action that occurs, with its count, most frequent first.
///
/// # Errors
/// Database errors.
pub async fn distinct(
    client: &impl GenericClient,
    field: DistinctField,
) -> Result<Vec<ValueCount>, StoreError> {
    let prefix = match field {
        DistinctField::Level => "level:",
        DistinctField::Category => "category:",
        DistinctField::Action => "action:",
    };
    let rows = client
        .query(
            "SELECT substr(name, length($1) + 1), value FROM counters
             WHERE starts_with(name, $1) AND value > 0",
            &[&prefix],
        )
        .await?;
    Ok(by_count(rows.iter().map(|r| {
        (r.get::<_, String>(0), r.get::<_, i64>(1).max(0) as u64)
    })))
}

/// The meta key set when a copied store holds event ids that do not carry their seq (made
/// before SQLite schema 3); `events_event_id` then finds them by value.
pub const LEGACY_IDS_KEY: &str = "legacy_event_ids";

/// The event with this id. Ids carry their seq (see `store::seal::seq_candidates`), so the
/// event is found by its seq; a copied store with older ids is searched by value.
///
/// # Errors
/// Database errors.
pub async fn by_id(
    client: &impl GenericClient,
    id: &EventId,
) -> Result<Option<StoredEvent>, StoreError> {
    let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE seq = $1 AND event_id = $2");
    let at_seq = client.prepare(&sql).await?;
    for seq in crate::store::seal::seq_candidates(&id.0) {
        let Ok(seq) = i64::try_from(seq) else {
            continue;
        };
        if let Some(row) = client.query_opt(&at_seq, &[&seq, &id.0]).await? {
            return Ok(events_of(std::slice::from_ref(&row))?.pop());
        }
    }
    let legacy = client
        .query_opt("SELECT 1 FROM meta WHERE key = $1", &[&LEGACY_IDS_KEY])
        .await?
        .is_some();
    if !legacy {
        return Ok(None);
    }
    let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE event_id = $1");
    let rows = client.query(&sql, &[&id.0]).await?;
    Ok(events_of(&rows)?.pop())
}

/// The event with this id, its seal checked in place, and up to `related` events sharing its
/// correlation id and its session id (newest first, the event itself excluded).
///
/// # Errors
/// Database errors.
pub async fn detail(
    client: &mut tokio_postgres::Client,
    id: &EventId,
    related: u32,
) -> Result<Option<EventDetail>, StoreError> {
    let Some(event) = by_id(&*client, id).await? else {
        return Ok(None);
    };
    let Some(seal) = super::verify::verify_one(&*client, event.seq).await? else {
        return Ok(None);
    };
    let exact = |v: &Option<String>| v.clone().map(Pattern::Exact);
    let correlation = exact(&event.event.correlation_id).map(Term::Correlation);
    let same_correlation = related_by(client, correlation, event.seq, related).await?;
    let session = exact(&event.event.session_id).map(Term::Session);
    let same_session = related_by(client, session, event.seq, related).await?;
    Ok(Some(EventDetail {
        event,
        seal,
        same_correlation,
        same_session,
    }))
}

/// Up to `related` events matching `term`, newest first, without the one at `seq`.
async fn related_by(
    client: &mut tokio_postgres::Client,
    term: Option<Term>,
    seq: Seq,
    related: u32,
) -> Result<Vec<StoredEvent>, StoreError> {
    let Some(term) = term else {
        return Ok(Vec::new());
    };
    let (query, req) = crate::store::reads::related(term, related);
    let mut items = page(client, &query, req).await?.items;
    items.retain(|e| e.seq != seq);
    items.truncate(related as usize);
    Ok(items)
}

/// The newest `limit` events (newest first) and the running totals, from one snapshot.
///
/// # Errors
/// Database errors.
pub async fn snapshot(
    client: &mut tokio_postgres::Client,
    limit: usize,
) -> Result<DashboardSnapshot, StoreError> {
    let tx = snapshot_of(client).await?;
    let counters = counters(&tx).await?;
    let sql = format!("SELECT {EVENT_COLUMNS} FROM events ORDER BY seq DESC LIMIT $1");
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let events = events_of(&tx.query(&sql, &[&limit]).await?)?;
    tx.commit().await?;
    Ok(DashboardSnapshot {
        events,
        counters,
        server_time: chrono::Utc::now(),
    })
}

/// Every event of one data subject, oldest first: where it is the actor, or also where it
/// is the entity acted on.
///
/// # Errors
/// Database errors.
pub async fn subject_events(
    client: &impl GenericClient,
    subject: &str,
    concerning: Concerning,
) -> Result<Vec<StoredEvent>, StoreError> {
    let condition = match concerning {
        Concerning::Actor => "user_id = $1",
        Concerning::ActorOrEntity => "user_id = $1 OR entity_id = $1",
    };
    let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE {condition} ORDER BY seq");
    events_of(&client.query(&sql, &[&subject]).await?)
}
