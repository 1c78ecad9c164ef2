//! What a read asks for and the pieces of an answer both backends build alike: a page
//! request and its count budget, the running totals' names, the distinct-value fields, LIKE
//! patterns and the query for an event's relatives. The SQL that answers is each backend's.

use crate::model::{Counters, Seq, ValueCount};
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
        cursor: None,
        page: 1,
        limit: related + 1,
        count_limit: Some(0),
    };
    (query, req)
}

/// How long a capped count may take before it settles for a lower bound.
pub const COUNT_BUDGET: std::time::Duration = std::time::Duration::from_millis(25);

/// How a page is asked for: by keyset `cursor` (the seq to go below), or by `page` number as
/// the predecessor did; `count_limit` caps the count for speed, and makes it stop at
/// [`COUNT_BUDGET`] with a lower bound.
#[derive(Clone, Copy, Debug)]
pub struct PageRequest {
    pub cursor: Option<Seq>,
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
