//! The explorer's query language and what a filter means, shared by the server and the browser
//! so both read a query the same way: parsing `q` (`free words`, `"quoted phrases"`,
//! `field:value`, `-negation`, `risk>70`), compiling an [`EventFilter`] into clauses, matching
//! an event against them (live filtering, and the reference the SQL is tested against), the
//! tokeniser the full-text index agrees with (`search::text`), and highlighting matched text.

mod text;

use crate::model::{AuditEvent, Category, EventFilter, Level, Outcome, StoredEvent};
use chrono::{DateTime, Utc};
use std::fmt;
use text::{contains_phrase, phrase_at, token_spans};
pub use text::{metadata_text, text_columns, tokenize};

/// The longest query accepted, in characters.
pub const MAX_QUERY_CHARS: usize = 1000;
/// The most terms one query may hold; each becomes work for the full-text index.
pub const MAX_TERMS: usize = 32;

/// Why a query or filter was refused: the REST parameter (or `q`) at fault, what is wrong,
/// and for `q` the character position of the problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryError {
    pub field: String,
    pub message: String,
    /// Character offset in `q` where the problem starts.
    pub position: Option<usize>,
}

impl QueryError {
    fn at(position: usize, message: impl Into<String>) -> QueryError {
        QueryError {
            field: "q".into(),
            message: message.into(),
            position: Some(position),
        }
    }

    fn field(field: &str, message: impl Into<String>) -> QueryError {
        QueryError {
            field: field.into(),
            message: message.into(),
            position: None,
        }
    }
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some(p) => write!(
                f,
                "{}: {} (at character {})",
                self.field,
                self.message,
                p + 1
            ),
            None => write!(f, "{}: {}", self.field, self.message),
        }
    }
}

impl std::error::Error for QueryError {}

/// An exact value, or a prefix written with a trailing `*` (`action:auth.*`). Case-sensitive:
/// audit identifiers are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pattern {
    Exact(String),
    Prefix(String),
}

impl Pattern {
    /// Reads `value` (`alice`, `auth.*`); `None` for an empty value or a bare `*`.
    pub fn parse(value: &str) -> Option<Pattern> {
        match value.strip_suffix('*') {
            Some("") => None,
            Some(prefix) => Some(Pattern::Prefix(prefix.to_string())),
            None if value.is_empty() => None,
            None => Some(Pattern::Exact(value.to_string())),
        }
    }

    /// Whether `s` is this value, or starts with this prefix.
    pub fn matches(&self, s: &str) -> bool {
        match self {
            Pattern::Exact(v) => s == v,
            Pattern::Prefix(p) => s.starts_with(p.as_str()),
        }
    }

    fn matches_opt(&self, s: Option<&str>) -> bool {
        s.is_some_and(|s| self.matches(s))
    }
}

/// One condition on an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Term {
    /// Full text over description, action, user, entity and metadata: `tokens` appear
    /// consecutively in one of them; the last is a prefix when `prefix` (bare words are,
    /// quoted phrases are not).
    Text {
        tokens: Vec<String>,
        prefix: bool,
    },
    Level(Vec<Level>),
    Category(Vec<Category>),
    Outcome(Vec<Outcome>),
    /// The user id.
    User(Pattern),
    Action(Pattern),
    /// The entity id or name.
    Entity(Pattern),
    Source(Pattern),
    /// The credential that submitted the event ([`crate::model::AuditEvent::submitted_by`]).
    SubmittedBy(Pattern),
    Session(Pattern),
    Correlation(Pattern),
    /// The risk score lies in `min..=max`; events without a score do not match.
    Risk {
        min: u8,
        max: u8,
    },
    /// The event's timestamp lies within the bounds (inclusive).
    Time {
        start: Option<DateTime<Utc>>,
        end: Option<DateTime<Utc>>,
    },
    /// The predecessor's `search_query`: a substring of the description, entity name, username
    /// or action, ignoring ASCII case.
    Substring(String),
}

/// A term, possibly negated (`-user:bob`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Clause {
    pub term: Term,
    pub negated: bool,
}

/// Every clause must hold. An empty query matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query {
    pub clauses: Vec<Clause>,
}

/// The fields `field:value` may name, with their aliases, for error messages.
pub const FIELDS: &str = "user, action, entity, level, category, outcome, source, submitted_by, \
     session, correlation, risk";

impl Query {
    /// Parses the query syntax.
    ///
    /// # Errors
    /// A [`QueryError`] naming the problem and where it is: an unclosed quote, an unknown
    /// field, a value that is not one of the allowed ones, a term without letters or digits,
    /// a query too long.
    pub fn parse(input: &str) -> Result<Query, QueryError> {
        let chars: Vec<char> = input.chars().collect();
        if chars.len() > MAX_QUERY_CHARS {
            return Err(QueryError::at(
                MAX_QUERY_CHARS,
                format!("the query is longer than {MAX_QUERY_CHARS} characters"),
            ));
        }
        let mut clauses = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            if chars[i].is_whitespace() {
                i += 1;
                continue;
            }
            let start = i;
            let negated = chars[i] == '-';
            if negated {
                i += 1;
                if i >= chars.len() || chars[i].is_whitespace() {
                    return Err(QueryError::at(start, "\"-\" must be followed by a term"));
                }
            }
            let term = if chars[i] == '"' {
                let (text, next) = quoted(&chars, i)?;
                i = next;
                text_term(&text, false, start)?
            } else {
                let word_start = i;
                let mut name_end = None;
                while i < chars.len() && !chars[i].is_whitespace() {
                    if name_end.is_none() && matches!(chars[i], ':' | '>' | '<' | '=') {
                        name_end = Some(i);
                        break;
                    }
                    if chars[i] == '"' {
                        return Err(QueryError::at(
                            i,
                            "a quote may only start a term or a value",
                        ));
                    }
                    i += 1;
                }
                let name: String = chars[word_start..name_end.unwrap_or(i)].iter().collect();
                let is_field = name_end.is_some()
                    && !name.is_empty()
                    && name.chars().all(|c| c.is_ascii_alphabetic() || c == '_');
                if is_field {
                    let op_start = name_end.unwrap_or(i);
                    let (op, value_start) = operator(&chars, op_start);
                    let (value, next) = if chars.get(value_start) == Some(&'"') {
                        quoted(&chars, value_start)?
                    } else {
                        let mut j = value_start;
                        while j < chars.len() && !chars[j].is_whitespace() {
                            if chars[j] == '"' {
                                return Err(QueryError::at(
                                    j,
                                    "a quote may only start a term or a value",
                                ));
                            }
                            j += 1;
                        }
                        (chars[value_start..j].iter().collect(), j)
                    };
                    i = next;
                    field_term(&name, op, &value, word_start)?
                } else {
                    while i < chars.len() && !chars[i].is_whitespace() {
                        if chars[i] == '"' {
                            return Err(QueryError::at(
                                i,
                                "a quote may only start a term or a value",
                            ));
                        }
                        i += 1;
                    }
                    let word: String = chars[word_start..i].iter().collect();
                    text_term(&word, true, start)?
                }
            };
            clauses.push(Clause { term, negated });
            if clauses.len() > MAX_TERMS {
                return Err(QueryError::at(
                    start,
                    format!("a query may hold at most {MAX_TERMS} terms"),
                ));
            }
        }
        Ok(Query { clauses })
    }

    /// This query limited to the events whose actor is `owner`, when there is one (the
    /// `self` role's row scoping).
    #[must_use]
    pub fn owned_by(mut self, owner: Option<&str>) -> Query {
        if let Some(owner) = owner {
            self.clauses.push(Clause {
                term: Term::User(Pattern::Exact(owner.to_string())),
                negated: false,
            });
        }
        self
    }

    /// Whether `event` satisfies every clause.
    pub fn matches(&self, event: &StoredEvent) -> bool {
        let e = &event.event;
        let mut columns: Option<[String; 5]> = None;
        self.clauses.iter().all(|clause| {
            let hit = match &clause.term {
                Term::Text { tokens, prefix } => {
                    let columns = columns.get_or_insert_with(|| text_columns(e));
                    columns
                        .iter()
                        .any(|text| contains_phrase(&tokenize(text), tokens, *prefix))
                }
                other => matches_term(other, e),
            };
            hit != clause.negated
        })
    }

    /// The clauses whose term is full text and not negated: what highlighting marks.
    fn positive_text(&self) -> impl Iterator<Item = (&[String], bool)> {
        self.clauses.iter().filter_map(|c| match &c.term {
            Term::Text { tokens, prefix } if !c.negated => Some((tokens.as_slice(), *prefix)),
            _ => None,
        })
    }

    /// Splits `text`, shown in `column`, into runs, marking what this query matched: full-text
    /// terms in every text column, `user:`/`action:`/`entity:` values in their own column.
    pub fn highlight(&self, column: Column, text: &str) -> Vec<Run> {
        let mut marked = vec![false; text.len()];
        let spans = token_spans(text);
        let lowered: Vec<String> = spans
            .iter()
            .map(|&(s, e)| text[s..e].to_lowercase())
            .collect();
        for (tokens, prefix) in self.positive_text() {
            let n = tokens.len();
            if n == 0 || lowered.len() < n {
                continue;
            }
            for at in 0..=lowered.len() - n {
                if phrase_at(&lowered[at..at + n], tokens, prefix) {
                    for k in 0..n {
                        let (s, e) = spans[at + k];
                        let e = if prefix && k == n - 1 {
                            prefix_end(&text[s..e], &tokens[k]).map_or(e, |len| s + len)
                        } else {
                            e
                        };
                        marked[s..e].iter_mut().for_each(|m| *m = true);
                    }
                }
            }
        }
        for clause in self.clauses.iter().filter(|c| !c.negated) {
            let pattern = match (&clause.term, column) {
                (Term::User(p), Column::User)
                | (Term::Action(p), Column::Action)
                | (Term::Entity(p), Column::Entity) => p,
                _ => continue,
            };
            let len = match pattern {
                Pattern::Exact(v) if text == v => text.len(),
                Pattern::Prefix(p) if text.starts_with(p.as_str()) => p.len(),
                _ => 0,
            };
            marked[..len].iter_mut().for_each(|m| *m = true);
        }
        runs(text, &marked)
    }
}

/// A table column, for [`Query::highlight`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Column {
    Description,
    Action,
    User,
    Entity,
}

/// A piece of highlighted text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run {
    pub text: String,
    pub marked: bool,
}

fn runs(text: &str, marked: &[bool]) -> Vec<Run> {
    let mut out: Vec<Run> = Vec::new();
    for (i, ch) in text.char_indices() {
        let m = marked[i];
        match out.last_mut() {
            Some(run) if run.marked == m => run.text.push(ch),
            _ => out.push(Run {
                text: ch.to_string(),
                marked: m,
            }),
        }
    }
    out
}

/// The byte length of the part of `token` (original case) that the lower-case `prefix`
/// covers, when lower-casing kept its characters one for one.
fn prefix_end(token: &str, prefix: &str) -> Option<usize> {
    let n = prefix.chars().count();
    let covered: String = token.chars().take(n).collect();
    (covered.to_lowercase() == prefix).then_some(covered.len())
}

fn quoted(chars: &[char], open: usize) -> Result<(String, usize), QueryError> {
    let mut j = open + 1;
    let mut text = String::new();
    while j < chars.len() {
        if chars[j] == '"' {
            return Ok((text, j + 1));
        }
        text.push(chars[j]);
        j += 1;
    }
    Err(QueryError::at(open, "this quote is never closed"))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Colon,
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
}

fn operator(chars: &[char], at: usize) -> (Op, usize) {
    let next = chars.get(at + 1) == Some(&'=');
    match chars[at] {
        '<' if next => (Op::Le, at + 2),
        '>' if next => (Op::Ge, at + 2),
        '<' => (Op::Lt, at + 1),
        '>' => (Op::Gt, at + 1),
        '=' => (Op::Eq, at + 1),
        _ => (Op::Colon, at + 1),
    }
}

fn text_term(text: &str, prefix: bool, position: usize) -> Result<Term, QueryError> {
    let tokens = tokenize(text);
    if tokens.is_empty() {
        return Err(QueryError::at(
            position,
            format!("{text:?} has no letters or digits to search for"),
        ));
    }
    Ok(Term::Text { tokens, prefix })
}

fn enum_list<T>(
    name: &str,
    value: &str,
    parse: fn(&str) -> Option<T>,
    names: &[&str],
    position: usize,
) -> Result<Vec<T>, QueryError> {
    value
        .split(',')
        .map(|v| {
            parse(v).ok_or_else(|| {
                QueryError::at(
                    position,
                    format!("{name}: {v:?} is not one of: {}", names.join(", ")),
                )
            })
        })
        .collect()
}

fn field_term(name: &str, op: Op, value: &str, position: usize) -> Result<Term, QueryError> {
    let lower = name.to_ascii_lowercase();
    if value.is_empty() {
        return Err(QueryError::at(position, format!("{name} needs a value")));
    }
    if lower == "risk" {
        return risk_term(op, value, position);
    }
    if op != Op::Colon {
        return Err(QueryError::at(
            position,
            format!("only risk can be compared; write {name}:value"),
        ));
    }
    let pattern = || {
        Pattern::parse(value)
            .ok_or_else(|| QueryError::at(position, format!("{name} needs a value")))
    };
    Ok(match lower.as_str() {
        "user" | "user_id" => Term::User(pattern()?),
        "action" => Term::Action(pattern()?),
        "entity" => Term::Entity(pattern()?),
        "source" => Term::Source(pattern()?),
        "submitted_by" | "submitter" => Term::SubmittedBy(pattern()?),
        "session" | "session_id" => Term::Session(pattern()?),
        "correlation" | "correlation_id" => Term::Correlation(pattern()?),
        "level" => Term::Level(enum_list(
            "level",
            value,
            Level::parse,
            &Level::ALL.map(Level::as_str),
            position,
        )?),
        "category" => Term::Category(enum_list(
            "category",
            value,
            Category::parse,
            &Category::ALL.map(Category::as_str),
            position,
        )?),
        "outcome" => Term::Outcome(enum_list(
            "outcome",
            value,
            Outcome::parse,
            &Outcome::ALL.map(Outcome::as_str),
            position,
        )?),
        _ => {
            return Err(QueryError::at(
                position,
                format!("unknown field {name:?}; use one of: {FIELDS}, or quote the text"),
            ))
        }
    })
}

fn risk_number(value: &str, position: usize) -> Result<u8, QueryError> {
    value
        .parse::<u8>()
        .ok()
        .filter(|v| *v <= 100)
        .ok_or_else(|| {
            QueryError::at(
                position,
                format!("risk: {value:?} is not a whole number from 0 to 100"),
            )
        })
}

fn risk_term(op: Op, value: &str, position: usize) -> Result<Term, QueryError> {
    let (min, max) = match op {
        Op::Colon => match value.to_ascii_lowercase().as_str() {
            "low" => RiskBand::Low.range(),
            "medium" => RiskBand::Medium.range(),
            "high" => RiskBand::High.range(),
            _ => match value.split_once('-') {
                Some((lo, hi)) => (risk_number(lo, position)?, risk_number(hi, position)?),
                None => {
                    let v = risk_number(value, position)?;
                    (v, v)
                }
            },
        },
        Op::Eq => {
            let v = risk_number(value, position)?;
            (v, v)
        }
        Op::Ge => (risk_number(value, position)?, 100),
        Op::Le => (0, risk_number(value, position)?),
        Op::Gt => match risk_number(value, position)? {
            100 => return Err(QueryError::at(position, "risk cannot exceed 100")),
            v => (v + 1, 100),
        },
        Op::Lt => match risk_number(value, position)? {
            0 => return Err(QueryError::at(position, "risk cannot be below 0")),
            v => (0, v - 1),
        },
    };
    if min > max {
        return Err(QueryError::at(
            position,
            format!("risk: the range {min}-{max} is empty"),
        ));
    }
    Ok(Term::Risk { min, max })
}

/// The risk bands of the explorer's filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RiskBand {
    Low,
    Medium,
    High,
}

impl RiskBand {
    /// Every band, lowest first.
    pub const ALL: [RiskBand; 3] = [RiskBand::Low, RiskBand::Medium, RiskBand::High];

    /// Low 0–30, medium 31–70, high 71–100.
    pub fn range(self) -> (u8, u8) {
        match self {
            RiskBand::Low => (0, 30),
            RiskBand::Medium => (31, 70),
            RiskBand::High => (71, 100),
        }
    }

    /// The band a score falls in.
    pub fn of(score: u8) -> RiskBand {
        match score {
            0..=30 => RiskBand::Low,
            31..=70 => RiskBand::Medium,
            _ => RiskBand::High,
        }
    }

    /// Its name (`"high"`).
    pub fn as_str(self) -> &'static str {
        match self {
            RiskBand::Low => "low",
            RiskBand::Medium => "medium",
            RiskBand::High => "high",
        }
    }
}

fn matches_term(term: &Term, e: &AuditEvent) -> bool {
    let entity = e.entity.as_ref();
    match term {
        Term::Text { .. } => false,
        Term::Level(v) => v.contains(&e.level),
        Term::Category(v) => v.contains(&e.category),
        Term::Outcome(v) => v.contains(&e.outcome),
        Term::User(p) => p.matches(&e.user.id),
        Term::Action(p) => p.matches(&e.action),
        Term::Entity(p) => {
            p.matches_opt(entity.and_then(|x| x.id.as_deref()))
                || p.matches_opt(entity.and_then(|x| x.name.as_deref()))
        }
        Term::Source(p) => p.matches(&e.source.0),
        Term::SubmittedBy(p) => p.matches_opt(e.submitted_by.as_deref()),
        Term::Session(p) => p.matches_opt(e.session_id.as_deref()),
        Term::Correlation(p) => p.matches_opt(e.correlation_id.as_deref()),
        Term::Risk { min, max } => e.risk_score.is_some_and(|r| (*min..=*max).contains(&r)),
        Term::Time { start, end } => {
            start.is_none_or(|s| e.timestamp >= s) && end.is_none_or(|t| e.timestamp <= t)
        }
        Term::Substring(s) => {
            let needle = s.to_ascii_lowercase();
            [
                e.description.as_deref(),
                entity.and_then(|x| x.name.as_deref()),
                e.user.username.as_deref(),
                Some(e.action.as_str()),
            ]
            .into_iter()
            .flatten()
            .any(|h| h.to_ascii_lowercase().contains(&needle))
        }
    }
}

impl EventFilter {
    /// Checks every field and turns the filter (its `q` included) into one query whose clauses
    /// must all hold.
    ///
    /// # Errors
    /// A [`QueryError`] naming the field: a bad `q`, an empty pattern, a risk bound above
    /// 100 or a minimum above the maximum, a start after the end.
    pub fn compile(&self) -> Result<Query, QueryError> {
        let mut clauses = Vec::new();
        let mut push = |term| {
            clauses.push(Clause {
                term,
                negated: false,
            })
        };
        if !self.level.is_empty() {
            push(Term::Level(self.level.clone()));
        }
        if !self.category.is_empty() {
            push(Term::Category(self.category.clone()));
        }
        if !self.outcome.is_empty() {
            push(Term::Outcome(self.outcome.clone()));
        }
        type MakeTerm = fn(Pattern) -> Term;
        let patterns: [(&str, &Option<String>, MakeTerm); 7] = [
            ("action", &self.action, Term::Action),
            ("user_id", &self.user_id, Term::User),
            ("entity", &self.entity, Term::Entity),
            ("source", &self.source, Term::Source),
            ("submitted_by", &self.submitted_by, Term::SubmittedBy),
            ("session_id", &self.session_id, Term::Session),
            ("correlation_id", &self.correlation_id, Term::Correlation),
        ];
        for (field, value, make) in patterns {
            if let Some(value) = value {
                let p = Pattern::parse(value.trim())
                    .ok_or_else(|| QueryError::field(field, "needs a value"))?;
                push(make(p));
            }
        }
        for (field, bound) in [("min_risk", self.min_risk), ("max_risk", self.max_risk)] {
            if bound.is_some_and(|b| b > 100) {
                return Err(QueryError::field(field, "must be from 0 to 100"));
            }
        }
        if self.min_risk.is_some() || self.max_risk.is_some() {
            let (min, max) = (self.min_risk.unwrap_or(0), self.max_risk.unwrap_or(100));
            if min > max {
                return Err(QueryError::field("min_risk", "is above max_risk"));
            }
            push(Term::Risk { min, max });
        }
        if let (Some(s), Some(e)) = (self.start_date, self.end_date) {
            if s > e {
                return Err(QueryError::field("start_date", "is after end_date"));
            }
        }
        if self.start_date.is_some() || self.end_date.is_some() {
            push(Term::Time {
                start: self.start_date,
                end: self.end_date,
            });
        }
        if let Some(s) = self
            .search_query
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            push(Term::Substring(s.to_string()));
        }
        if let Some(q) = &self.q {
            clauses.extend(Query::parse(q)?.clauses);
        }
        Ok(Query { clauses })
    }

    /// Reads a filter object (a live subscription's `filter`), naming the key at fault.
    ///
    /// # Errors
    /// A [`QueryError`] whose field is the first key that is unknown or holds a bad value.
    pub fn from_json(value: &serde_json::Value) -> Result<EventFilter, QueryError> {
        serde_json::from_value::<EventFilter>(value.clone()).map_err(|whole| {
            // serde names neither the key of a bad value nor always an unknown one; reading
            // each key alone finds it.
            value
                .as_object()
                .into_iter()
                .flatten()
                .find_map(|(key, v)| {
                    let mut one = serde_json::Map::new();
                    one.insert(key.clone(), v.clone());
                    serde_json::from_value::<EventFilter>(serde_json::Value::Object(one))
                        .err()
                        .map(|e| QueryError::field(key, e.to_string()))
                })
                .unwrap_or_else(|| QueryError::field("filter", whole.to_string()))
        })
    }

    /// Whether `event` passes this filter; a filter that does not compile passes nothing.
    pub fn matches(&self, event: &StoredEvent) -> bool {
        self.compile().is_ok_and(|q| q.matches(event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Actor, Entity, EventId, Seq, Source};

    fn event(description: &str) -> StoredEvent {
        StoredEvent {
            seq: Seq(1),
            event_id: EventId("e".into()),
            received_at: DateTime::UNIX_EPOCH,
            hash: String::new(),
            event: AuditEvent {
                timestamp: DateTime::UNIX_EPOCH,
                level: Level::Error,
                category: Category::Security,
                action: "auth.login".into(),
                outcome: Outcome::Denied,
                source: Source::http(),
                user: Actor {
                    id: "alice".into(),
                    username: Some("Alice Smith".into()),
                },
                description: Some(description.into()),
                entity: Some(Entity {
                    kind: Some("document".into()),
                    id: Some("doc-42".into()),
                    name: Some("Q3 report".into()),
                }),
                request: None,
                location: None,
                metadata: serde_json::json!({"ip": "10.0.0.7", "tags": ["vpn", "mfa"]})
                    .as_object()
                    .cloned(),
                changes: None,
                system: None,
                risk_score: Some(80),
                risk_reasons: None,
                correlation_id: Some("corr-1".into()),
                session_id: None,
                submitted_by: None,
            },
        }
    }

    fn q(s: &str) -> Query {
        Query::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    fn text(tokens: &[&str], prefix: bool) -> Term {
        Term::Text {
            tokens: tokens.iter().map(|t| t.to_string()).collect(),
            prefix,
        }
    }

    #[test]
    fn words_phrases_and_negation_parse() {
        let parsed = q(r#"Failed  "access denied" -vpn -"q3 report""#);
        assert_eq!(
            parsed.clauses,
            vec![
                Clause {
                    term: text(&["failed"], true),
                    negated: false
                },
                Clause {
                    term: text(&["access", "denied"], false),
                    negated: false
                },
                Clause {
                    term: text(&["vpn"], true),
                    negated: true
                },
                Clause {
                    term: text(&["q3", "report"], false),
                    negated: true
                },
            ]
        );
        assert_eq!(q("").clauses, vec![]);
        assert_eq!(q("   ").clauses, vec![]);
        // Punctuation splits a word into a phrase, as the index tokenises it.
        assert_eq!(
            q("file.read").clauses[0].term,
            text(&["file", "read"], true)
        );
        // A colon after something that is not a field name is text.
        assert_eq!(q("12:30").clauses[0].term, text(&["12", "30"], true));
    }

    #[test]
    fn fields_parse_with_aliases_lists_and_patterns() {
        let parsed = q(
            "user:alice level:error,critical category:security outcome:denied \
                        action:auth.* -entity:\"Q3 report\" source:cli session_id:s1 correlation:c",
        );
        let terms: Vec<(Term, bool)> = parsed
            .clauses
            .into_iter()
            .map(|c| (c.term, c.negated))
            .collect();
        assert_eq!(
            terms,
            vec![
                (Term::User(Pattern::Exact("alice".into())), false),
                (Term::Level(vec![Level::Error, Level::Critical]), false),
                (Term::Category(vec![Category::Security]), false),
                (Term::Outcome(vec![Outcome::Denied]), false),
                (Term::Action(Pattern::Prefix("auth.".into())), false),
                (Term::Entity(Pattern::Exact("Q3 report".into())), true),
                (Term::Source(Pattern::Exact("cli".into())), false),
                (Term::Session(Pattern::Exact("s1".into())), false),
                (Term::Correlation(Pattern::Exact("c".into())), false),
            ]
        );
        assert_eq!(
            q("LEVEL:Warn").clauses[0].term,
            Term::Level(vec![Level::Warning])
        );
    }

    #[test]
    fn risk_comparisons_and_bands_parse() {
        let risk = |s: &str| match q(s).clauses[0].term {
            Term::Risk { min, max } => (min, max),
            ref other => panic!("{other:?}"),
        };
        assert_eq!(risk("risk>70"), (71, 100));
        assert_eq!(risk("risk>=70"), (70, 100));
        assert_eq!(risk("risk<30"), (0, 29));
        assert_eq!(risk("risk<=30"), (0, 30));
        assert_eq!(risk("risk=5"), (5, 5));
        assert_eq!(risk("risk:5"), (5, 5));
        assert_eq!(risk("risk:40-60"), (40, 60));
        assert_eq!(risk("risk:high"), (71, 100));
        assert_eq!(risk("risk:Medium"), (31, 70));
        assert_eq!(risk("risk:low"), (0, 30));
    }

    #[test]
    fn malformed_queries_are_errors_with_positions_not_panics() {
        let cases: &[(&str, usize, &str)] = &[
            ("\"open", 0, "never closed"),
            ("a -", 2, "followed by a term"),
            ("- a", 0, "followed by a term"),
            ("colour:red", 0, "unknown field"),
            ("user:", 0, "needs a value"),
            ("user:*", 0, "needs a value"),
            ("level:loud", 0, "not one of"),
            ("x level:info,", 2, "not one of"),
            ("risk>100", 0, "cannot exceed"),
            ("risk<0", 0, "below 0"),
            ("risk:101", 0, "0 to 100"),
            ("risk>-5", 0, "0 to 100"),
            ("risk:60-40", 0, "empty"),
            ("risk:abc", 0, "0 to 100"),
            ("user>alice", 0, "only risk"),
            ("ab\"cd\"", 2, "quote"),
            ("user:a\"b\"", 6, "quote"),
            ("...", 0, "no letters or digits"),
            ("\"\"", 0, "no letters or digits"),
            ("-\"  \"", 0, "no letters or digits"),
        ];
        for (input, position, message) in cases {
            let err = Query::parse(input).expect_err(input);
            assert_eq!(err.position, Some(*position), "{input:?}: {err}");
            assert!(err.message.contains(message), "{input:?}: {err}");
            assert_eq!(err.field, "q");
        }
        let long = "a ".repeat(600);
        assert!(Query::parse(&long).is_err());
        let many = (0..40)
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        assert!(Query::parse(&many).unwrap_err().message.contains("at most"));
    }

    #[test]
    fn arbitrary_input_never_panics() {
        // A deterministic walk over awkward characters, including multi-byte ones.
        let alphabet = [
            'a', 'Z', '"', '-', ':', '>', '<', '=', ' ', '*', ',', 'é', '日', '\t', '9',
        ];
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..5_000 {
            let len = (state % 12) as usize;
            let mut s = String::new();
            for _ in 0..len {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                s.push(alphabet[(state % alphabet.len() as u64) as usize]);
            }
            if let Ok(query) = Query::parse(&s) {
                let _ = query.matches(&event("x"));
                let _ = query.highlight(Column::Description, &s);
            }
        }
    }

    #[test]
    fn text_matches_whole_tokens_and_word_prefixes_in_any_column() {
        let e = event("Login FAILED for alice from the VPN");
        assert!(q("fail").matches(&e));
        assert!(q("failed").matches(&e));
        assert!(!q("ailed").matches(&e), "prefixes only, not infixes");
        assert!(q("\"failed for\"").matches(&e));
        assert!(
            !q("\"failed alice\"").matches(&e),
            "a phrase is consecutive"
        );
        assert!(!q("\"fail\"").matches(&e), "a quoted phrase is exact");
        assert!(q("smith").matches(&e), "username");
        assert!(q("doc 42").matches(&e), "entity id tokens");
        assert!(q("10.0.0").matches(&e), "metadata values");
        assert!(q("tags mfa").matches(&e), "metadata keys");
        assert!(q("auth.login").matches(&e), "action");
        assert!(!q("-vpn").matches(&e));
        assert!(q("-modem").matches(&e));
        assert!(!q("failed missing").matches(&e), "every term must hold");
    }

    #[test]
    fn field_terms_match_their_fields() {
        let e = event("x");
        for yes in [
            "user:alice",
            "action:auth.login",
            "action:auth.*",
            "entity:doc-42",
            "entity:\"Q3 report\"",
            "level:error",
            "level:info,error",
            "category:security",
            "outcome:denied",
            "source:http",
            "correlation:corr-1",
            "risk>70",
            "risk:high",
            "-session:s1",
            "-user:bob",
            "-risk<50",
        ] {
            assert!(q(yes).matches(&e), "{yes}");
        }
        for no in [
            "user:Alice",
            "user:ali",
            "action:auth",
            "entity:document",
            "level:info",
            "outcome:success",
            "session:s1",
            "risk<=79",
            "-risk:high",
            "-user:alice",
        ] {
            assert!(!q(no).matches(&e), "{no}");
        }
        let mut unscored = event("x");
        unscored.event.risk_score = None;
        assert!(
            !q("risk<=100").matches(&unscored),
            "no score matches no range"
        );
        assert!(q("-risk>50").matches(&unscored));
    }

    #[test]
    fn filters_compile_with_their_field_names_in_errors() {
        let filter = EventFilter {
            level: vec![Level::Error],
            action: Some("auth.*".into()),
            min_risk: Some(50),
            q: Some("failed -lan".into()),
            ..EventFilter::default()
        };
        let compiled = filter.compile().unwrap();
        assert_eq!(compiled.clauses.len(), 5);
        assert!(!filter.matches(&event("failed over LAN")));
        assert!(filter.matches(&event("failed over modem")));

        let bad = |f: EventFilter| f.compile().unwrap_err().field;
        assert_eq!(
            bad(EventFilter {
                min_risk: Some(101),
                ..Default::default()
            }),
            "min_risk"
        );
        assert_eq!(
            bad(EventFilter {
                min_risk: Some(80),
                max_risk: Some(20),
                ..Default::default()
            }),
            "min_risk"
        );
        assert_eq!(
            bad(EventFilter {
                user_id: Some(" ".into()),
                ..Default::default()
            }),
            "user_id"
        );
        assert_eq!(
            bad(EventFilter {
                q: Some("nope:1".into()),
                ..Default::default()
            }),
            "q"
        );
        let later = DateTime::from_timestamp_millis(1_000).unwrap();
        assert_eq!(
            bad(EventFilter {
                start_date: Some(later),
                end_date: Some(DateTime::UNIX_EPOCH),
                ..Default::default()
            }),
            "start_date"
        );
    }

    #[test]
    fn the_seed_search_is_a_case_insensitive_substring() {
        let f = |s: &str| EventFilter {
            search_query: Some(s.into()),
            ..Default::default()
        };
        assert!(f("LOGIN fai").matches(&event("login failed")));
        assert!(f("q3 rep").matches(&event("x")), "entity name");
        assert!(f("th.lo").matches(&event("x")), "action");
        assert!(
            !f("doc-42").matches(&event("x")),
            "not the entity id, as the seed"
        );
    }

    #[test]
    fn highlighting_marks_matches_and_keeps_text_intact() {
        let query = q("fail \"for alice\" user:alice -vpn");
        let runs = query.highlight(Column::Description, "Login FAILED for Alice <b>");
        let text: String = runs.iter().map(|r| r.text.as_str()).collect();
        assert_eq!(text, "Login FAILED for Alice <b>");
        let marked: Vec<&str> = runs
            .iter()
            .filter(|r| r.marked)
            .map(|r| r.text.as_str())
            .collect();
        assert_eq!(marked, vec!["FAIL", "for", "Alice"]);
        let user = query.highlight(Column::User, "alice");
        assert_eq!(
            user,
            vec![Run {
                text: "alice".into(),
                marked: true
            }]
        );
        let none = query.highlight(Column::Description, "vpn only");
        assert!(none.iter().all(|r| !r.marked));
        let prefix = q("action:auth.*").highlight(Column::Action, "auth.login");
        assert_eq!(
            prefix[0],
            Run {
                text: "auth.".into(),
                marked: true
            }
        );
        // Multi-byte text is split on character boundaries.
        let accents = q("été").highlight(Column::Description, "un Été chaud");
        assert_eq!(
            accents[1],
            Run {
                text: "Été".into(),
                marked: true
            }
        );
    }
}
