//! The analytics routes in the predecessors' shapes — `GET /api/dashboard/summary`,
//! `GET /api/dashboard/insights`, `GET /api/v1/events/statistics` — and the alert log's:
//! list, acknowledge, delivery log. Parameters are strict: an unknown one or a bad value is a
//! `400` naming it.

use super::events::date;
use super::{percent_decode, ApiError, AppState};
use crate::analytics::coverage::Coverage;
use crate::analytics::TimeRange;
use crate::insights::{last_hours, parse_zone, range_hours, RANGES};
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use chrono_tz::Tz;
use std::collections::BTreeMap;

/// Splits a query string into single values, refusing names not in `allowed`.
fn params(raw: Option<&str>, allowed: &[&str]) -> Result<BTreeMap<String, String>, ApiError> {
    let mut map = BTreeMap::new();
    for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = percent_decode(name);
        if !allowed.contains(&name.as_str()) {
            return Err(ApiError::Param {
                field: name,
                message: format!("unknown parameter; known: {}", allowed.join(", ")),
            });
        }
        let value = percent_decode(value).trim().to_string();
        if map.insert(name.clone(), value).is_some() {
            return Err(ApiError::Param {
                field: name,
                message: "is given more than once".into(),
            });
        }
    }
    Ok(map)
}

/// The range from `range` (a preset, default `24h`) or `from`/`to` (`start_date`/`end_date`
/// as the predecessor named them): RFC 3339, a date, or epoch ms; `to` defaults to now.
fn time_range(p: &BTreeMap<String, String>, now_ms: i64) -> Result<TimeRange, ApiError> {
    let get = |a: &'static str, b: &'static str| -> Option<(&'static str, &str)> {
        let name = if p.contains_key(a) { a } else { b };
        p.get(name)
            .map(|v| (name, v.as_str()))
            .filter(|(_, v)| !v.is_empty())
    };
    let from = get("from", "start_date");
    let to = get("to", "end_date");
    if from.is_none() && to.is_none() {
        let name = p.get("range").map_or("24h", String::as_str);
        let hours = range_hours(name).ok_or_else(|| ApiError::Param {
            field: "range".into(),
            message: format!(
                "{name:?} is not a range; use one of {}",
                RANGES
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })?;
        return Ok(last_hours(hours, now_ms));
    }
    if p.contains_key("range") {
        return Err(ApiError::Param {
            field: "range".into(),
            message: "give either range or from/to, not both".into(),
        });
    }
    let Some((from_name, from_raw)) = from else {
        return Err(ApiError::Param {
            field: "from".into(),
            message: "is required with to".into(),
        });
    };
    let from = date(from_name, Some(from_raw), false)?.map_or(0, |t| t.timestamp_millis());
    let to = match to {
        Some((name, raw)) => {
            date(name, Some(raw), true)?.map_or(now_ms, |t| t.timestamp_millis() + 1)
        }
        None => now_ms,
    };
    if to <= from {
        return Err(ApiError::Param {
            field: to_name(p).into(),
            message: "must be after from".into(),
        });
    }
    Ok(TimeRange { from, to })
}

fn to_name(p: &BTreeMap<String, String>) -> &'static str {
    if p.contains_key("end_date") {
        "end_date"
    } else {
        "to"
    }
}

/// The `tz` parameter: an IANA zone, default the server's configured one.
fn zone(p: &BTreeMap<String, String>, default: Tz) -> Result<Tz, ApiError> {
    match p.get("tz").filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(name) => parse_zone(name).map_err(|message| ApiError::Param {
            field: "tz".into(),
            message,
        }),
    }
}

const RANGE_PARAMS: [&str; 5] = ["range", "from", "to", "start_date", "end_date"];

/// [`RANGE_PARAMS`], as the OpenAPI document describes them.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct RangeParams {
    /// A preset ending with the current hour: `1h`, `24h` (the default), `7d` or `30d`; not
    /// with `from`/`to`.
    range: Option<String>,
    /// The start: RFC 3339, a `YYYY-MM-DD` date or epoch milliseconds.
    from: Option<String>,
    /// The end (default now): RFC 3339, a `YYYY-MM-DD` date (its end) or epoch milliseconds.
    to: Option<String>,
    /// `from`, as the predecessor named it.
    start_date: Option<String>,
    /// `to`, as the predecessor named it.
    end_date: Option<String>,
}

/// Tells which actions are still audited
///
/// Every action of the `[coverage]` catalogue (an action, or a prefix such as `auth.*`, each
/// with how long it may stay silent), and every action seen on at least 7 of the last 30
/// days (learned: its window is three of its usual gaps, at least a day), with the last hour
/// it was seen, its 7-day, 30-day and all-time counts, its usual rate and a `status`:
/// `never` (no event of it stored), `silent` (none within its window) or `ok`. Silent and
/// never first. Counted from the hourly rollups, by event time. An action that goes silent
/// raises a `coverage:<action>` alert, once, until it is back.
#[utoipa::path(get, path = "/api/v1/coverage", tag = "analytics",
    responses((status = 200, body = Coverage, example = json!({"at": 1768469400000_i64, "entries": [
        {"action": "agent.delete", "origin": "expected", "status": "silent",
         "windowMs": 604800000_i64, "lastSeenHour": 1767650400000_i64, "count7d": 0,
         "count30d": 1, "total": 14, "perDay": 0.03333333333333333_f64},
        {"action": "auth.*", "origin": "expected", "status": "ok", "windowMs": 86400000_i64,
         "lastSeenHour": 1768467600000_i64, "count7d": 212, "count30d": 934, "total": 20418,
         "perDay": 31.133333333333333_f64}
    ]}))))]
pub(super) async fn coverage(State(state): State<AppState>) -> Result<Response, ApiError> {
    let now = Utc::now().timestamp_millis();
    let answer: Coverage = state
        .analytics
        .coverage(&state.coverage.expected, now)
        .await?;
    Ok(Json(answer).into_response())
}

/// `GET /api/v1/alerts`'s answer.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct AlertList {
    /// Newest first.
    items: Vec<crate::model::Alert>,
}

/// Gives the health score and its rates
///
/// The health score (0 to 100) over the range, from the success, denial and error rates, its
/// trend against the span before, the critical issues and whether the spike rule is raised.
#[utoipa::path(get, path = "/api/dashboard/summary", tag = "analytics", operation_id = "health_summary",
    params(RangeParams),
    responses(
        (status = 200, body = crate::analytics::Summary),
        (status = 400, description = "An unknown parameter or a bad range, named in `field`.", body = super::openapi::ErrorBody),
    ))]
pub(super) async fn summary(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let now = Utc::now().timestamp_millis();
    let p = params(raw.as_deref(), &RANGE_PARAMS)?;
    let range = time_range(&p, now)?;
    Ok(Json(state.analytics.summary(range, now).await?).into_response())
}

/// Gives trends, anomalies and the weekly heatmap
///
/// Today against yesterday and last week by category and action, the anomalies detected now,
/// and events by weekday and hour in `tz`.
#[utoipa::path(get, path = "/api/dashboard/insights", tag = "analytics",
    params(("tz" = Option<String>, Query, description = "An IANA time zone for the heatmap and day boundaries (default: the server's `[analytics] timezone`).")),
    responses(
        (status = 200, body = crate::analytics::Insights),
        (status = 400, description = "An unknown parameter or zone, named in `field`.", body = super::openapi::ErrorBody),
    ))]
pub(super) async fn insights(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let now = Utc::now().timestamp_millis();
    let p = params(raw.as_deref(), &["tz"])?;
    let tz = zone(&p, state.analytics.zone())?;
    Ok(Json(state.analytics.insights(tz, now).await?).into_response())
}

/// Gives totals and distributions over a time range
///
/// Totals, rates, counts by level, category, outcome and source, the top users and actions,
/// and the recent critical events.
#[utoipa::path(get, path = "/api/v1/events/statistics", tag = "analytics",
    params(RangeParams),
    responses(
        (status = 200, body = crate::analytics::Statistics),
        (status = 400, description = "An unknown parameter or a bad range, named in `field`.", body = super::openapi::ErrorBody),
    ))]
pub(super) async fn statistics(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let now = Utc::now().timestamp_millis();
    let p = params(raw.as_deref(), &RANGE_PARAMS)?;
    let range = time_range(&p, now)?;
    Ok(Json(state.analytics.statistics(range).await?).into_response())
}

impl From<crate::alerts::AlertError> for ApiError {
    fn from(e: crate::alerts::AlertError) -> Self {
        tracing::error!(error = %e, "alert log failure");
        ApiError::Internal
    }
}

/// Lists alerts
///
/// The alerts the rules raised, newest first.
#[utoipa::path(get, path = "/api/v1/alerts", tag = "alerts",
    params(
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "At most this many (default 100)."),
        ("unacknowledged" = Option<bool>, Query, description = "`true`: only those not yet acknowledged."),
    ),
    responses(
        (status = 200, body = AlertList),
        (status = 400, description = "An unknown parameter or a bad value, named in `field`.", body = super::openapi::ErrorBody),
    ))]
pub(super) async fn list_alerts(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let p = params(raw.as_deref(), &["limit", "unacknowledged"])?;
    let limit = match p.get("limit") {
        None => 100,
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| ApiError::Param {
                field: "limit".into(),
                message: format!("{v:?} is not a number from 1 to 1000"),
            })?,
    };
    let unacknowledged = match p.get("unacknowledged").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(v) => {
            return Err(ApiError::Param {
                field: "unacknowledged".into(),
                message: format!("{v:?} is not true or false"),
            })
        }
    };
    let items = state.alerts.list(limit, unacknowledged).await?;
    Ok(Json(AlertList { items }).into_response())
}

fn alert_id(raw: &str) -> Result<u64, ApiError> {
    raw.parse().map_err(|_| ApiError::Param {
        field: "id".into(),
        message: format!("{raw:?} is not an alert id"),
    })
}

/// Acknowledges an alert
///
/// Answers with the alert, acknowledged; the acknowledgement is recorded in the chain.
#[utoipa::path(post, path = "/api/v1/alerts/{id}/acknowledge", tag = "alerts",
    params(("id" = u64, Path, description = "The alert's id.")),
    responses(
        (status = 200, body = crate::model::Alert),
        (status = 400, description = "Not an alert id.", body = super::openapi::ErrorBody),
        (status = 404, description = "No such alert.", body = super::openapi::ErrorBody),
    ))]
pub(super) async fn acknowledge_alert(
    State(state): State<AppState>,
    crate::selfaudit::ActingFrom(acting): crate::selfaudit::ActingFrom,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Response, ApiError> {
    let id = alert_id(&id)?;
    match state
        .alerts
        .acknowledge(id, Utc::now().timestamp_millis())
        .await?
    {
        Some(alert) => {
            crate::selfaudit::acknowledged(&state.store, &acting, id).await;
            Ok(Json(alert).into_response())
        }
        None => Err(ApiError::NotFound(format!("no alert {id}"))),
    }
}

/// Lists an alert's webhook deliveries
///
/// Every attempt to deliver the alert to a webhook, oldest first, with the answer's status or
/// the error.
#[utoipa::path(get, path = "/api/v1/alerts/{id}/deliveries", tag = "alerts",
    params(("id" = u64, Path, description = "The alert's id.")),
    responses(
        (status = 200, body = Vec<crate::alerts::Delivery>),
        (status = 400, description = "Not an alert id.", body = super::openapi::ErrorBody),
    ))]
pub(super) async fn alert_deliveries(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Response, ApiError> {
    let id = alert_id(&id)?;
    Ok(Json(state.alerts.deliveries(id).await?).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(q: &str) -> Result<TimeRange, String> {
        let p = params(Some(q), &RANGE_PARAMS).map_err(|e| format!("{e:?}"))?;
        time_range(&p, 10 * 3_600_000 + 5).map_err(|e| format!("{e:?}"))
    }

    #[test]
    fn presets_cover_whole_hours_up_to_the_current_one() {
        assert_eq!(
            range("range=1h"),
            Ok(TimeRange {
                from: 10 * 3_600_000,
                to: 11 * 3_600_000
            })
        );
        assert_eq!(range("").map(|r| r.to - r.from), Ok(24 * 3_600_000));
    }

    #[test]
    fn bad_ranges_name_their_parameter() {
        for (q, field) in [
            ("range=2w", "range"),
            ("from=yesterday", "from"),
            ("to=2026-01-01", "from"),
            ("from=2026-02-01&to=2026-01-01", "to"),
            ("start_date=2026-02-01&end_date=2026-01-01", "end_date"),
            ("range=1h&from=2026-01-01", "range"),
            ("range=1h&range=24h", "range"),
            ("days=7", "days"),
        ] {
            let err = range(q).unwrap_err();
            assert!(err.contains(&format!("field: \"{field}\"")), "{q}: {err}");
        }
    }

    #[test]
    fn dates_take_whole_days() {
        let r = range("start_date=2026-01-01&end_date=2026-01-01").unwrap();
        assert_eq!(r.to - r.from, 24 * 3_600_000);
    }
}
