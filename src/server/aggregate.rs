//! `GET /api/v1/aggregate`: metrics from a numeric field of the events matching the list's
//! filters, grouped and over time buckets (see [`crate::analytics::aggregate`]). The matches
//! are scanned from one snapshot; the `self` role's are its own events alone.

use super::events::{number, FilterParams, Params};
use super::{ApiError, AppState, Owner};
use crate::analytics::aggregate::{
    parse_interval, Aggregate, AggregateSpec, Aggregator, GroupBy, NumericField, Stat, MAX_BUCKETS,
};
use crate::model::EventOrder;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::Json;

/// The statistics answered when `stats` is not given.
const DEFAULT_STATS: [Stat; 5] = [Stat::Count, Stat::Sum, Stat::Avg, Stat::Min, Stat::Max];

/// Computes metrics from a numeric field
///
/// For the events matching the filters (the list's parameters): `stats` of the numeric
/// `field`, one group per value of `by`, and with `interval` a series of time buckets per
/// group. An event whose field holds something other than a number (text that does not read
/// as one) is skipped and counted in `notNumeric`; one without it in `withoutField`. Groups
/// are ranked by the first statistic, highest first, and the `top` are answered. The `self`
/// role's metrics cover its own events.
#[utoipa::path(get, path = "/api/v1/aggregate", tag = "analytics",
    params(FilterParams,
        ("field" = String, Query, description = "The number: `metadata.<key>[.<key>…]`, `request.responseTime`, `request.statusCode` or `riskScore`."),
        ("stats" = Option<String>, Query, description = "A comma list of `count`, `sum`, `avg`, `min`, `max`, `p50`, `p95`, `p99` (nearest rank); default `count,sum,avg,min,max`. The first ranks the groups."),
        ("by" = Option<String>, Query, description = "Group by `user_id`, `username`, `action`, `level`, `category`, `outcome`, `source`, `submitted_by`, `session_id`, `correlation_id`, `entity`, `entity.type`, `request.method`, `request.path`, `request.statusCode`, `location.country`, `system.service`, `system.server`, `system.environment`, `system.version` or `metadata.<key>`; without it, one group of every match."),
        ("interval" = Option<String>, Query, description = "Time buckets of this width per group (`5m`, `1h`, `1d`; one minute to 366 days), aligned to the Unix epoch, by event time; at most 10,000 buckets in all."),
        ("top" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "How many groups to answer with (default 10)."),
    ),
    responses(
        (status = 200, body = Aggregate, example = json!({
            "field": "metadata.tokens_used", "by": "user_id", "interval": "1d",
            "stats": ["count", "sum", "p95"], "matched": 4, "withField": 3,
            "withoutField": 1, "notNumeric": 0, "otherGroups": 0,
            "groups": [
                {"key": "agent-7", "withField": 2, "withoutField": 0, "notNumeric": 0,
                 "count": 2, "sum": 5400, "p95": 3900,
                 "series": [{"start": 1768435200000_i64, "count": 2, "sum": 5400, "p95": 3900}]},
                {"key": "agent-3", "withField": 1, "withoutField": 1, "notNumeric": 0,
                 "count": 1, "sum": 800, "p95": 800,
                 "series": [{"start": 1768435200000_i64, "count": 1, "sum": 800, "p95": 800}]}
            ]})),
        (status = 400, description = "A missing or unknown field, statistic, grouping or interval, or a bad filter, named in `field`.", body = super::openapi::ErrorBody),
        (status = 503, description = "The search index is catching up (`indexing`); retry shortly.", body = super::openapi::ErrorBody),
    ))]
pub(super) async fn aggregate(
    State(state): State<AppState>,
    Owner(owner): Owner,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    Ok(Json(compute(&state, owner.as_deref(), raw.as_deref()).await?).into_response())
}

/// The metrics a query string asks for (the route's parameters), over `owner`'s events alone
/// when given: the REST route's work, and the Usage page's.
///
/// # Errors
/// A bad parameter (named), or the store's failure.
pub(crate) async fn compute(
    state: &AppState,
    owner: Option<&str>,
    raw: Option<&str>,
) -> Result<Aggregate, ApiError> {
    let params = Params::parse(raw, &["field", "stats", "by", "interval", "top"])?;
    let spec = spec(&params)?;
    let (_, query) = params.filter()?;
    let query = query.owned_by(owner);
    let interval = spec.interval_name.clone();
    let aggregator = state
        .store
        .for_each_matching(
            query,
            EventOrder::default(),
            Aggregator::new(spec),
            |a, e| {
                a.add(e);
                // A bucket too narrow for the range is refused below; no need to read on.
                a.buckets() <= MAX_BUCKETS
            },
        )
        .await?;
    if aggregator.buckets() > MAX_BUCKETS {
        return Err(ApiError::Param {
            field: "interval".into(),
            message: format!(
                "{:?} makes more than {MAX_BUCKETS} time buckets for these events: use a wider interval or a shorter range",
                interval.unwrap_or_default()
            ),
        });
    }
    Ok(aggregator.finish())
}

/// What the parameters ask for, checked.
fn spec(params: &Params) -> Result<AggregateSpec, ApiError> {
    let bad = |field: &str, message: String| ApiError::Param {
        field: field.into(),
        message,
    };
    let field_name = params
        .one("field")
        .ok_or_else(|| bad("field", "is required: the numeric field to measure".into()))?
        .to_string();
    let field = NumericField::parse(&field_name).map_err(|m| bad("field", m))?;
    let stats = match params.one("stats") {
        None => DEFAULT_STATS.to_vec(),
        Some(list) => {
            let mut stats = Vec::new();
            for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let stat = Stat::parse(name).ok_or_else(|| {
                    let known: Vec<&str> = Stat::ALL.iter().map(|s| s.as_str()).collect();
                    bad(
                        "stats",
                        format!("{name:?} is not one of: {}", known.join(", ")),
                    )
                })?;
                if !stats.contains(&stat) {
                    stats.push(stat);
                }
            }
            if stats.is_empty() {
                return Err(bad("stats", "names no statistic".into()));
            }
            stats
        }
    };
    let by_name = params.one("by").map(str::to_string);
    let by = by_name
        .as_deref()
        .map(GroupBy::parse)
        .transpose()
        .map_err(|m| bad("by", m))?;
    let interval_name = params.one("interval").map(str::to_string);
    let interval_ms = interval_name
        .as_deref()
        .map(parse_interval)
        .transpose()
        .map_err(|m| bad("interval", m))?;
    let top = number("top", params.one("top"), 10, 1000)? as usize;
    Ok(AggregateSpec {
        field_name,
        field,
        stats,
        by_name,
        by,
        interval_name,
        interval_ms,
        top,
    })
}
