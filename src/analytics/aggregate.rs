//! Metrics from the numbers inside events: count, sum, average, minimum, maximum and
//! percentiles of one numeric field (`metadata.<path>`, `request.responseTime`,
//! `request.statusCode`, `riskScore`), grouped by one field and, optionally, over time buckets.
//! [`Aggregator`] is fed the matching events one at a time and gives the answer of
//! `GET /api/v1/aggregate`. Pure, so the server's scan and a test's brute force use the same
//! definitions (written down on each item).

use crate::model::StoredEvent;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// A statistic of a group's numeric values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stat {
    /// How many events had a number in the field.
    Count,
    Sum,
    /// The sum over the count.
    Avg,
    Min,
    Max,
    /// Nearest rank: the smallest value with at least half of the values at or below it.
    P50,
    /// Nearest rank at 95 %.
    P95,
    /// Nearest rank at 99 %.
    P99,
}

impl Stat {
    /// Every statistic, in the order the API lists them.
    pub const ALL: [Stat; 8] = [
        Stat::Count,
        Stat::Sum,
        Stat::Avg,
        Stat::Min,
        Stat::Max,
        Stat::P50,
        Stat::P95,
        Stat::P99,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stat::Count => "count",
            Stat::Sum => "sum",
            Stat::Avg => "avg",
            Stat::Min => "min",
            Stat::Max => "max",
            Stat::P50 => "p50",
            Stat::P95 => "p95",
            Stat::P99 => "p99",
        }
    }

    pub fn parse(s: &str) -> Option<Stat> {
        Stat::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// This statistic of `values`, sorted ascending; `None` for all but count and sum when
    /// there are none.
    pub fn of(self, sorted: &[f64]) -> Option<f64> {
        let rank = |p: f64| {
            // Nearest rank: ceil(p * n), counted from 1.
            let n = sorted.len() as f64;
            let r = (p * n).ceil().max(1.0) as usize;
            sorted.get(r - 1).copied()
        };
        match self {
            Stat::Count => Some(sorted.len() as f64),
            Stat::Sum => Some(sorted.iter().sum()),
            Stat::Avg => {
                (!sorted.is_empty()).then(|| sorted.iter().sum::<f64>() / sorted.len() as f64)
            }
            Stat::Min => sorted.first().copied(),
            Stat::Max => sorted.last().copied(),
            Stat::P50 => rank(0.50),
            Stat::P95 => rank(0.95),
            Stat::P99 => rank(0.99),
        }
    }
}

/// The numeric field measured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NumericField {
    /// A path into `metadata`, by its keys: `metadata.tokens.input` is `["tokens", "input"]`.
    Metadata(Vec<String>),
    ResponseTime,
    StatusCode,
    RiskScore,
}

/// What a field of an event holds, for [`NumericField::read`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Reading {
    Absent,
    /// Present, but not a number (text that does not read as one, a list, an object).
    NotNumeric,
    Number(f64),
}

impl NumericField {
    /// `metadata.<path>`, `request.responseTime`, `request.statusCode` or `riskScore`.
    ///
    /// # Errors
    /// A message naming what is accepted.
    pub fn parse(s: &str) -> Result<NumericField, String> {
        match s {
            "request.responseTime" => Ok(NumericField::ResponseTime),
            "request.statusCode" => Ok(NumericField::StatusCode),
            "riskScore" => Ok(NumericField::RiskScore),
            _ => match metadata_path(s) {
                Some(path) => Ok(NumericField::Metadata(path)),
                None => Err(format!(
                    "{s:?} is not a numeric field: use metadata.<key>[.<key>…], request.responseTime, request.statusCode or riskScore"
                )),
            },
        }
    }

    /// The field of `e`. Text that reads wholly as a finite number counts as that number,
    /// since shippers often quote numbers; `true` and `false` count as 1 and 0, so the
    /// average of a flag such as `metadata.success` is its rate.
    pub fn read(&self, e: &StoredEvent) -> Reading {
        let number = |n: Option<f64>| n.map_or(Reading::Absent, Reading::Number);
        match self {
            NumericField::ResponseTime => number(
                e.event
                    .request
                    .as_ref()
                    .and_then(|r| r.response_time)
                    .map(|v| v as f64),
            ),
            NumericField::StatusCode => number(
                e.event
                    .request
                    .as_ref()
                    .and_then(|r| r.status_code)
                    .map(f64::from),
            ),
            NumericField::RiskScore => number(e.event.risk_score.map(f64::from)),
            NumericField::Metadata(path) => match metadata_at(e, path) {
                None | Some(Value::Null) => Reading::Absent,
                Some(Value::Number(n)) => n.as_f64().map_or(Reading::NotNumeric, Reading::Number),
                Some(Value::Bool(b)) => Reading::Number(f64::from(u8::from(*b))),
                Some(Value::String(s)) => match s.trim().parse::<f64>() {
                    Ok(v) if v.is_finite() => Reading::Number(v),
                    _ => Reading::NotNumeric,
                },
                Some(_) => Reading::NotNumeric,
            },
        }
    }
}

/// `metadata.a.b` as `["a", "b"]`; `None` for anything else or an empty key.
fn metadata_path(s: &str) -> Option<Vec<String>> {
    let path: Vec<String> = s
        .strip_prefix("metadata.")?
        .split('.')
        .map(str::to_string)
        .collect();
    path.iter().all(|k| !k.is_empty()).then_some(path)
}

/// The value at `path` in `e`'s metadata.
fn metadata_at<'a>(e: &'a StoredEvent, path: &[String]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let mut value = e.event.metadata.as_ref()?.get(first)?;
    for key in rest {
        value = value.as_object()?.get(key)?;
    }
    Some(value)
}

/// The field events are grouped by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupBy {
    UserId,
    Username,
    Action,
    Level,
    Category,
    Outcome,
    Source,
    SubmittedBy,
    SessionId,
    CorrelationId,
    /// The entity's id, or its name when it has no id.
    Entity,
    EntityType,
    RequestMethod,
    RequestPath,
    StatusCode,
    Country,
    Service,
    Server,
    Environment,
    Version,
    Metadata(Vec<String>),
}

/// The fixed grouping names, as `by` takes them (`metadata.<path>` besides).
const GROUP_NAMES: [(&str, GroupBy); 20] = [
    ("user_id", GroupBy::UserId),
    ("username", GroupBy::Username),
    ("action", GroupBy::Action),
    ("level", GroupBy::Level),
    ("category", GroupBy::Category),
    ("outcome", GroupBy::Outcome),
    ("source", GroupBy::Source),
    ("submitted_by", GroupBy::SubmittedBy),
    ("session_id", GroupBy::SessionId),
    ("correlation_id", GroupBy::CorrelationId),
    ("entity", GroupBy::Entity),
    ("entity.type", GroupBy::EntityType),
    ("request.method", GroupBy::RequestMethod),
    ("request.path", GroupBy::RequestPath),
    ("request.statusCode", GroupBy::StatusCode),
    ("location.country", GroupBy::Country),
    ("system.service", GroupBy::Service),
    ("system.server", GroupBy::Server),
    ("system.environment", GroupBy::Environment),
    ("system.version", GroupBy::Version),
];

impl GroupBy {
    /// A name of [`GROUP_NAMES`] or `metadata.<path>`.
    ///
    /// # Errors
    /// A message naming what is accepted.
    pub fn parse(s: &str) -> Result<GroupBy, String> {
        if let Some((_, g)) = GROUP_NAMES.iter().find(|(n, _)| *n == s) {
            return Ok(g.clone());
        }
        match metadata_path(s) {
            Some(path) => Ok(GroupBy::Metadata(path)),
            None => {
                let names: Vec<&str> = GROUP_NAMES.iter().map(|(n, _)| *n).collect();
                Err(format!(
                    "{s:?} is not a field to group by: use {} or metadata.<key>",
                    names.join(", ")
                ))
            }
        }
    }

    /// `e`'s group: the field as text, `None` when the event has none.
    pub fn key(&self, e: &StoredEvent) -> Option<String> {
        let ev = &e.event;
        let text = |s: &Option<String>| s.clone();
        match self {
            GroupBy::UserId => Some(ev.user.id.clone()),
            GroupBy::Username => text(&ev.user.username),
            GroupBy::Action => Some(ev.action.clone()),
            GroupBy::Level => Some(ev.level.as_str().to_string()),
            GroupBy::Category => Some(ev.category.as_str().to_string()),
            GroupBy::Outcome => Some(ev.outcome.as_str().to_string()),
            GroupBy::Source => Some(ev.source.0.clone()),
            GroupBy::SubmittedBy => text(&ev.submitted_by),
            GroupBy::SessionId => text(&ev.session_id),
            GroupBy::CorrelationId => text(&ev.correlation_id),
            GroupBy::Entity => ev
                .entity
                .as_ref()
                .and_then(|x| x.id.clone().or(x.name.clone())),
            GroupBy::EntityType => ev.entity.as_ref().and_then(|x| x.kind.clone()),
            GroupBy::RequestMethod => ev.request.as_ref().and_then(|r| r.method.clone()),
            GroupBy::RequestPath => ev.request.as_ref().and_then(|r| r.path.clone()),
            GroupBy::StatusCode => ev
                .request
                .as_ref()
                .and_then(|r| r.status_code)
                .map(|c| c.to_string()),
            GroupBy::Country => ev.location.as_ref().and_then(|l| l.country.clone()),
            GroupBy::Service => ev.system.as_ref().and_then(|s| s.service.clone()),
            GroupBy::Server => ev.system.as_ref().and_then(|s| s.server.clone()),
            GroupBy::Environment => ev.system.as_ref().and_then(|s| s.environment.clone()),
            GroupBy::Version => ev.system.as_ref().and_then(|s| s.version.clone()),
            GroupBy::Metadata(path) => match metadata_at(e, path) {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(other) => Some(other.to_string()),
            },
        }
    }
}

/// A bucket width: `<n>m`, `<n>h` or `<n>d`, from one minute to 366 days.
///
/// # Errors
/// A message saying what is accepted.
pub fn parse_interval(s: &str) -> Result<i64, String> {
    let bad = || format!("{s:?} is not an interval like 5m, 1h or 1d (one minute to 366 days)");
    let (n, unit) = s.split_at(s.len().saturating_sub(1));
    let n: i64 = n.parse().map_err(|_| bad())?;
    let unit_ms = match unit {
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad()),
    };
    let ms = n.checked_mul(unit_ms).ok_or_else(bad)?;
    if !(60_000..=366 * 86_400_000).contains(&ms) {
        return Err(bad());
    }
    Ok(ms)
}

/// The most time buckets an answer holds across its groups.
pub const MAX_BUCKETS: usize = 10_000;

/// What to compute.
#[derive(Clone, Debug, PartialEq)]
pub struct AggregateSpec {
    /// As asked (`metadata.tokens_used`), and read.
    pub field_name: String,
    pub field: NumericField,
    /// The statistics, in the order asked; the first ranks the groups.
    pub stats: Vec<Stat>,
    pub by_name: Option<String>,
    pub by: Option<GroupBy>,
    pub interval_name: Option<String>,
    /// The bucket width in milliseconds, buckets aligned to the Unix epoch (UTC).
    pub interval_ms: Option<i64>,
    /// How many groups to answer with.
    pub top: usize,
}

/// `GET /api/v1/aggregate`'s answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Aggregate {
    /// The numeric field, as asked.
    pub field: String,
    /// The grouping field, as asked; absent for one group of every match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// The statistics, as asked: each group (and each point of its series) has one member
    /// named after each.
    pub stats: Vec<String>,
    /// Events matching the query.
    pub matched: u64,
    /// Of those, the ones with a number in the field.
    pub with_field: u64,
    /// The ones without the field.
    pub without_field: u64,
    /// The ones with the field holding something other than a number (skipped).
    pub not_numeric: u64,
    /// The top groups, by the first statistic, highest first (ties by key).
    pub groups: Vec<AggregateGroup>,
    /// Groups left out by `top`.
    pub other_groups: u64,
}

/// One group of an [`Aggregate`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct AggregateGroup {
    /// The grouping field's value; `null` for events without it (and for the one group when
    /// nothing is grouped).
    pub key: Option<String>,
    pub with_field: u64,
    pub without_field: u64,
    pub not_numeric: u64,
    /// One member per statistic asked, by its name: a number, or `null` (avg, min, max and
    /// percentiles of no values).
    #[serde(flatten)]
    #[cfg_attr(feature = "ssr", schema(value_type = Object))]
    pub values: BTreeMap<String, Value>,
    /// With `interval`: the buckets holding a matching event, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub series: Vec<AggregatePoint>,
}

/// One time bucket of a group.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct AggregatePoint {
    /// The bucket's start, epoch milliseconds.
    pub start: i64,
    /// One member per statistic asked, as in the group.
    #[serde(flatten)]
    #[cfg_attr(feature = "ssr", schema(value_type = Object))]
    pub values: BTreeMap<String, Value>,
}

/// One group's running tallies.
#[derive(Default)]
struct Tallies {
    values: Vec<f64>,
    without_field: u64,
    not_numeric: u64,
    buckets: BTreeMap<i64, Vec<f64>>,
}

/// Takes the matching events one at a time; [`Aggregator::finish`] gives the answer.
pub struct Aggregator {
    spec: AggregateSpec,
    groups: HashMap<Option<String>, Tallies>,
    matched: u64,
}

impl Aggregator {
    pub fn new(spec: AggregateSpec) -> Aggregator {
        Aggregator {
            spec,
            groups: HashMap::new(),
            matched: 0,
        }
    }

    /// Counts `e` in its group.
    pub fn add(&mut self, e: &StoredEvent) {
        self.matched += 1;
        let key = self.spec.by.as_ref().and_then(|by| by.key(e));
        let tallies = self.groups.entry(key).or_default();
        match self.spec.field.read(e) {
            Reading::Absent => tallies.without_field += 1,
            Reading::NotNumeric => tallies.not_numeric += 1,
            Reading::Number(v) => {
                tallies.values.push(v);
                if let Some(width) = self.spec.interval_ms {
                    let ms = e.event.timestamp.timestamp_millis();
                    let start = ms.div_euclid(width) * width;
                    tallies.buckets.entry(start).or_default().push(v);
                }
            }
        }
    }

    /// How many time buckets the answer would hold so far, across its groups.
    pub fn buckets(&self) -> usize {
        self.groups.values().map(|t| t.buckets.len()).sum()
    }

    /// The answer: every group's statistics, the top ones kept.
    pub fn finish(self) -> Aggregate {
        let stats = self.spec.stats.clone();
        let values_of = |values: &mut Vec<f64>| -> BTreeMap<String, Value> {
            values.sort_by(f64::total_cmp);
            stats
                .iter()
                .map(|s| (s.as_str().to_string(), number(s.of(values))))
                .collect()
        };
        let (mut with_field, mut without_field, mut not_numeric) = (0, 0, 0);
        let mut groups: Vec<AggregateGroup> = self
            .groups
            .into_iter()
            .map(|(key, mut t)| {
                with_field += t.values.len() as u64;
                without_field += t.without_field;
                not_numeric += t.not_numeric;
                let series = t
                    .buckets
                    .iter_mut()
                    .map(|(start, values)| AggregatePoint {
                        start: *start,
                        values: values_of(values),
                    })
                    .collect();
                AggregateGroup {
                    key,
                    with_field: t.values.len() as u64,
                    without_field: t.without_field,
                    not_numeric: t.not_numeric,
                    values: values_of(&mut t.values),
                    series,
                }
            })
            .collect();
        let first = stats.first().map_or("count", |s| s.as_str());
        let rank = |g: &AggregateGroup| g.values.get(first).and_then(Value::as_f64);
        // Highest first; groups without a value last; then by key, so the order is total.
        groups.sort_by(|a, b| match (rank(a), rank(b)) {
            (Some(x), Some(y)) => y.total_cmp(&x).then_with(|| a.key.cmp(&b.key)),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => a.key.cmp(&b.key),
        });
        let other_groups = groups.len().saturating_sub(self.spec.top) as u64;
        groups.truncate(self.spec.top);
        Aggregate {
            field: self.spec.field_name,
            by: self.spec.by_name,
            interval: self.spec.interval_name,
            stats: stats.iter().map(|s| s.as_str().to_string()).collect(),
            matched: self.matched,
            with_field,
            without_field,
            not_numeric,
            groups,
            other_groups,
        }
    }
}

/// A statistic as JSON: whole numbers as integers, `null` for none.
fn number(v: Option<f64>) -> Value {
    match v {
        None => Value::Null,
        Some(v) if v.fract() == 0.0 && v.abs() < 9_007_199_254_740_992.0 => Value::from(v as i64),
        Some(v) => serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(Stat::P50.of(&v), Some(10.0));
        assert_eq!(Stat::P95.of(&v), Some(19.0));
        assert_eq!(Stat::P99.of(&v), Some(20.0));
        assert_eq!(Stat::P50.of(&[7.0]), Some(7.0));
        assert_eq!(Stat::Avg.of(&[]), None);
        assert_eq!(Stat::Sum.of(&[]), Some(0.0));
    }

    #[test]
    fn names_parse_or_say_what_is_accepted() {
        assert_eq!(
            NumericField::parse("metadata.tokens.input"),
            Ok(NumericField::Metadata(vec![
                "tokens".into(),
                "input".into()
            ]))
        );
        assert!(NumericField::parse("metadata.").is_err());
        assert!(NumericField::parse("user_id")
            .unwrap_err()
            .contains("riskScore"));
        assert_eq!(GroupBy::parse("system.service"), Ok(GroupBy::Service));
        assert!(GroupBy::parse("nope")
            .unwrap_err()
            .contains("metadata.<key>"));
        assert_eq!(parse_interval("15m"), Ok(900_000));
        assert_eq!(parse_interval("1d"), Ok(86_400_000));
        assert!(parse_interval("30s").is_err());
        assert!(parse_interval("0h").is_err());
        assert!(parse_interval("m").is_err());
    }

    #[test]
    fn flags_count_as_one_and_zero_and_text_that_reads_as_a_number_counts() {
        let event = |metadata: serde_json::Value| -> StoredEvent {
            serde_json::from_value(serde_json::json!({
                "seq": 1, "eventId": "e1", "receivedAt": "2026-01-01T00:00:00Z", "hash": "00",
                "timestamp": "2026-01-01T00:00:00Z", "level": "info", "category": "workflow",
                "action": "AGENT_EXECUTED", "outcome": "success", "user": {"id": "u"},
                "source": "http", "metadata": metadata
            }))
            .unwrap()
        };
        let success = NumericField::parse("metadata.success").unwrap();
        assert_eq!(
            success.read(&event(serde_json::json!({"success": true}))),
            Reading::Number(1.0)
        );
        assert_eq!(
            success.read(&event(serde_json::json!({"success": false}))),
            Reading::Number(0.0)
        );
        assert_eq!(
            success.read(&event(serde_json::json!({"success": " 12.5 "}))),
            Reading::Number(12.5)
        );
        assert_eq!(
            success.read(&event(serde_json::json!({"success": "yes"}))),
            Reading::NotNumeric
        );
        assert_eq!(
            success.read(&event(serde_json::json!({"success": [1]}))),
            Reading::NotNumeric
        );
        assert_eq!(
            success.read(&event(serde_json::json!({"other": 1}))),
            Reading::Absent
        );
    }
}
