//! The REST routes that read events: the filtered list with keyset pages, one event, the
//! streamed export, and the distinct levels, categories and actions. Their query parameters
//! are parsed strictly: an unknown parameter or a bad value is a `400` naming it.

use super::{percent_decode, ApiError, AppState, Owner};
use crate::export::{ExportFormat, ExportWriter};
use crate::model::{
    Category, EventFilter, EventId, EventOrder, EventPage, Level, Outcome, StoredEvent, ValueCount,
};
use crate::search::Query;
use crate::store::{Cursor, DistinctField, PageRequest};
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, NaiveDate, Utc};
use std::collections::BTreeMap;

/// The filter parameters, by their REST names; also the keys of a live `filter` object.
const FILTER_PARAMS: [&str; 16] = [
    "level",
    "category",
    "outcome",
    "action",
    "user_id",
    "entity",
    "source",
    "submitted_by",
    "min_risk",
    "max_risk",
    "correlation_id",
    "session_id",
    "start_date",
    "end_date",
    "q",
    "search_query",
];

/// The filter parameters, as the OpenAPI document describes them (the parser is [`Params`];
/// a test compares the two through a real server).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(super) struct FilterParams {
    /// Levels to include: repeat the parameter or separate with commas.
    #[param(inline, explode = true)]
    level: Option<Vec<Level>>,
    /// Categories to include: repeat the parameter or separate with commas.
    #[param(inline, explode = true)]
    category: Option<Vec<Category>>,
    /// Outcomes to include: repeat the parameter or separate with commas.
    #[param(inline, explode = true)]
    outcome: Option<Vec<Outcome>>,
    /// The action, exactly; a trailing `*` makes a prefix (`user.*`).
    action: Option<String>,
    /// The actor's id; a trailing `*` makes a prefix.
    user_id: Option<String>,
    /// The entity acted on: its id or its name; a trailing `*` makes a prefix.
    entity: Option<String>,
    /// The channel that brought the event: `http`, `cli`, `otlp`, `kubernetes`, `syslog:…`,
    /// `tail:…`, `import:…`; a trailing `*` makes a prefix.
    source: Option<String>,
    /// The credential that submitted it: `token:<name>`, `user:<name>`, `admin`, `server`;
    /// a trailing `*` makes a prefix.
    submitted_by: Option<String>,
    /// The lowest risk score, 0 to 100.
    #[param(minimum = 0, maximum = 100)]
    min_risk: Option<u8>,
    /// The highest risk score, 0 to 100.
    #[param(minimum = 0, maximum = 100)]
    max_risk: Option<u8>,
    /// Exact; a trailing `*` makes a prefix.
    correlation_id: Option<String>,
    /// Exact; a trailing `*` makes a prefix.
    session_id: Option<String>,
    /// From this time: RFC 3339, a `YYYY-MM-DD` date (its start, UTC) or epoch milliseconds.
    start_date: Option<String>,
    /// Up to this time: RFC 3339, a `YYYY-MM-DD` date (its end, UTC) or epoch milliseconds.
    end_date: Option<String>,
    /// The search language: words (any field), `"phrases"`, `field:value`, `-negation`,
    /// `OR`, and comparisons such as `risk>=70`.
    q: Option<String>,
    /// The predecessor's search: a substring of the description, entity name, username or
    /// action.
    search_query: Option<String>,
}

/// Query parameters by name; multi-valued ones (`level`, `category`, `outcome`) may repeat or
/// hold commas, the others may appear once.
pub(super) struct Params(BTreeMap<String, Vec<String>>);

impl Params {
    /// Splits a raw query string, refusing names not in `FILTER_PARAMS` or `extra`.
    pub(super) fn parse(raw: Option<&str>, extra: &[&'static str]) -> Result<Params, ApiError> {
        let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = percent_decode(name);
            let value = percent_decode(value);
            let known = FILTER_PARAMS.contains(&name.as_str()) || extra.contains(&name.as_str());
            if !known {
                let mut allowed: Vec<&str> = FILTER_PARAMS.to_vec();
                allowed.extend_from_slice(extra);
                return Err(ApiError::Param {
                    field: name.clone(),
                    message: format!("unknown parameter; known: {}", allowed.join(", ")),
                });
            }
            map.entry(name).or_default().push(value);
        }
        for (name, values) in &map {
            let multi = matches!(name.as_str(), "level" | "category" | "outcome");
            if values.len() > 1 && !multi {
                return Err(ApiError::Param {
                    field: name.clone(),
                    message: "is given more than once".into(),
                });
            }
        }
        Ok(Params(map))
    }

    /// The single value of `name`, trimmed, if given and not empty.
    pub(super) fn one(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .and_then(|v| v.first())
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
    }

    fn list<T>(
        &self,
        name: &str,
        parse: fn(&str) -> Option<T>,
        names: &[&str],
    ) -> Result<Vec<T>, ApiError> {
        self.0
            .get(name)
            .into_iter()
            .flatten()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                parse(s).ok_or_else(|| ApiError::Param {
                    field: name.to_string(),
                    message: format!("{s:?} is not one of: {}", names.join(", ")),
                })
            })
            .collect()
    }

    fn risk(&self, name: &str) -> Result<Option<u8>, ApiError> {
        self.one(name)
            .map(|raw| {
                raw.parse::<u8>()
                    .ok()
                    .filter(|v| *v <= 100)
                    .ok_or_else(|| ApiError::Param {
                        field: name.to_string(),
                        message: format!("{raw:?} is not a whole number from 0 to 100"),
                    })
            })
            .transpose()
    }

    /// The filter these parameters describe, checked.
    pub(super) fn filter(&self) -> Result<(EventFilter, Query), ApiError> {
        let text = |name: &str| self.one(name).map(str::to_string);
        let filter = EventFilter {
            level: self.list("level", Level::parse, &Level::ALL.map(Level::as_str))?,
            category: self.list(
                "category",
                Category::parse,
                &Category::ALL.map(Category::as_str),
            )?,
            outcome: self.list(
                "outcome",
                Outcome::parse,
                &Outcome::ALL.map(Outcome::as_str),
            )?,
            action: text("action"),
            user_id: text("user_id"),
            entity: text("entity"),
            source: text("source"),
            min_risk: self.risk("min_risk")?,
            max_risk: self.risk("max_risk")?,
            correlation_id: text("correlation_id"),
            session_id: text("session_id"),
            start_date: date("start_date", self.one("start_date"), false)?,
            end_date: date("end_date", self.one("end_date"), true)?,
            // The query syntax keeps its spaces; an all-blank query is no query.
            q: self
                .0
                .get("q")
                .and_then(|v| v.first())
                .filter(|q| !q.trim().is_empty())
                .cloned(),
            search_query: text("search_query"),
            submitted_by: text("submitted_by"),
        };
        let query = filter.compile().map_err(|e| ApiError::Param {
            field: e.field.clone(),
            message: e.to_string(),
        })?;
        Ok((filter, query))
    }
}

/// A whole number in `1..=max`, or `default` when absent.
pub(super) fn number(
    field: &str,
    raw: Option<&str>,
    default: u32,
    max: u32,
) -> Result<u32, ApiError> {
    let Some(raw) = raw else {
        return Ok(default);
    };
    match raw.parse::<u32>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(ApiError::Param {
            field: field.to_string(),
            message: format!("{raw:?} is not a whole number from 1 to {max}"),
        }),
    }
}

/// RFC 3339, a plain date (start or end of that UTC day), or epoch milliseconds.
pub(super) fn date(
    field: &str,
    raw: Option<&str>,
    end_of_day: bool,
) -> Result<Option<DateTime<Utc>>, ApiError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Ok(Some(t.with_timezone(&Utc)));
    }
    if let Ok(d) = NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        let t = if end_of_day {
            d.and_hms_milli_opt(23, 59, 59, 999)
        } else {
            d.and_hms_opt(0, 0, 0)
        };
        return Ok(t.map(|t| t.and_utc()));
    }
    if let Some(t) = raw
        .parse::<i64>()
        .ok()
        .and_then(DateTime::from_timestamp_millis)
    {
        return Ok(Some(t));
    }
    Err(ApiError::Param {
        field: field.to_string(),
        message: format!(
            "{raw:?} is not an RFC 3339 time, a YYYY-MM-DD date or epoch milliseconds"
        ),
    })
}

/// A keyset cursor made for `order`.
fn cursor(raw: Option<&str>, order: EventOrder) -> Result<Option<Cursor>, ApiError> {
    raw.map(|raw| {
        Cursor::parse(raw, order).map_err(|message| ApiError::Param {
            field: "cursor".into(),
            message,
        })
    })
    .transpose()
}

/// The `sort` parameter: event time, newest first, when absent.
pub(super) fn sort(raw: Option<&str>) -> Result<EventOrder, ApiError> {
    raw.map_or(Ok(EventOrder::default()), |raw| {
        EventOrder::parse(raw).map_err(|message| ApiError::Param {
            field: "sort".into(),
            message,
        })
    })
}

/// Lists events, filtered and paged
///
/// In `sort` order (event time, newest first, by default). Page with `cursor` (from the
/// previous page's `nextCursor`: stable while events arrive) or with `page`. `total` counts
/// every match, or is a lower bound when `totalIsLowerBound`. `headSeq` is where a live
/// subscription should start to miss nothing. The `self` role sees only its own events.
#[utoipa::path(get, path = "/api/v1/events", tag = "events",
    params(FilterParams,
        ("page" = Option<u32>, Query, minimum = 1, description = "The page, from 1 (default 1)."),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "Events per page (default 50)."),
        ("cursor" = Option<String>, Query, description = "The previous page's `nextCursor`; not with `page`."),
        ("sort" = Option<String>, Query, description = "`field` or `field:asc|desc`; fields: timestamp, receivedAt, seq, level, risk, action, user (without a direction, names sort A to Z and the rest newest, most severe or riskiest first). Default `timestamp:desc`."),
    ),
    responses(
        (status = 200, body = EventPage, example = super::openapi::event_page_example),
        (status = 400, description = "An unknown parameter or a bad value, named in `field`.", body = super::openapi::ErrorBody),
        (status = 503, description = "The search index is catching up (`indexing`); retry shortly.", body = super::openapi::ErrorBody),
    ))]
pub(super) async fn list_events(
    State(state): State<AppState>,
    Owner(owner): Owner,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let params = Params::parse(raw.as_deref(), &["page", "limit", "cursor", "sort"])?;
    let (_, query) = params.filter()?;
    let query = query.owned_by(owner.as_deref());
    let order = sort(params.one("sort"))?;
    let req = PageRequest {
        order,
        cursor: cursor(params.one("cursor"), order)?,
        page: number("page", params.one("page"), 1, u32::MAX)?,
        limit: number("limit", params.one("limit"), 50, 500)?,
        count_limit: None,
    };
    if req.cursor.is_some() && params.one("page").is_some() {
        return Err(ApiError::Param {
            field: "cursor".into(),
            message: "give either cursor or page, not both".into(),
        });
    }
    Ok(Json(state.store.query(query, req).await?).into_response())
}

/// Reads one event
///
/// With its seq, arrival time and chain hash. For the `self` role, another actor's event
/// does not exist.
#[utoipa::path(get, path = "/api/v1/events/{event_id}", tag = "events",
    params(("event_id" = String, Path, description = "The event's id (`eventId`).")),
    responses(
        (status = 200, body = StoredEvent, example = super::openapi::stored_event_example),
        (status = 404, description = "No such event.", body = super::openapi::ErrorBody),
    ))]
pub(super) async fn get_event(
    State(state): State<AppState>,
    Owner(owner): Owner,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    match state.store.get(EventId(id.clone())).await? {
        // Another actor's event does not exist for the `self` role.
        Some(event) if owner.as_ref().is_none_or(|o| *o == event.event.user.id) => {
            Ok(Json(event).into_response())
        }
        _ => Err(ApiError::NotFound(format!("no event with id {id}"))),
    }
}

/// Counts events by level
///
/// Every level with events, with its count (for the `self` role, over its own events).
#[utoipa::path(get, path = "/api/v1/events/levels", tag = "events", operation_id = "count_by_level",
    responses((status = 200, body = Vec<ValueCount>,
        example = json!([{"value": "info", "count": 3120}, {"value": "error", "count": 41}]))))]
pub(super) async fn levels(
    State(state): State<AppState>,
    Owner(owner): Owner,
) -> Result<Response, ApiError> {
    distinct(&state, DistinctField::Level, owner).await
}

/// Counts events by category
///
/// Every category with events, with its count (for the `self` role, over its own events).
#[utoipa::path(get, path = "/api/v1/events/categories", tag = "events", operation_id = "count_by_category",
    responses((status = 200, body = Vec<ValueCount>,
        example = json!([{"value": "authentication", "count": 1800}, {"value": "data", "count": 950}]))))]
pub(super) async fn categories(
    State(state): State<AppState>,
    Owner(owner): Owner,
) -> Result<Response, ApiError> {
    distinct(&state, DistinctField::Category, owner).await
}

/// The values of `field` with their counts: over every event from the running totals, or,
/// for the `self` role, over its own events alone.
async fn distinct(
    state: &AppState,
    field: DistinctField,
    owner: Option<String>,
) -> Result<Response, ApiError> {
    let counts = match owner {
        Some(owner) => state.store.distinct_owned(field, &owner).await?,
        None => state.store.distinct(field).await?,
    };
    Ok(Json(counts).into_response())
}

/// Counts events by action
///
/// Every action with events, with its count.
#[utoipa::path(get, path = "/api/v1/events/actions", tag = "events", operation_id = "count_by_action",
    responses((status = 200, body = Vec<ValueCount>,
        example = json!([{"value": "user.login", "count": 1200}]))))]
pub(super) async fn actions(State(state): State<AppState>) -> Result<Response, ApiError> {
    Ok(Json(state.store.distinct(DistinctField::Action).await?).into_response())
}

/// How many bytes the exporter gathers before handing a chunk to the socket; with the
/// channel's bound this caps what an export holds in memory.
const EXPORT_CHUNK: usize = 64 * 1024;
const EXPORT_CHUNKS_IN_FLIGHT: usize = 4;

/// Exports every matching event
///
/// With the list's filters and `sort`: every match in the list's order, streamed from one
/// snapshot with flat memory, as a download. `ocsf` and `ocsf-ndjson` map events onto OCSF
/// 1.2 classes (Authentication 3002, Account Change 3001, API Activity 6003, Base Event 0).
/// The export itself is recorded in the chain.
#[utoipa::path(get, path = "/api/v1/events/export", tag = "events",
    params(FilterParams,
        ("format" = Option<String>, Query, description = "`json` (default), `csv`, `ndjson` (or `jsonl`), `ocsf` or `ocsf-ndjson`."),
        ("sort" = Option<String>, Query, description = "As for the list; default `timestamp:desc`."),
    ),
    responses(
        (status = 200, description = "The events, as a file to download.", content(
            (Vec<StoredEvent> = "application/json"),
            (String = "text/csv", example = json!("seq,eventId,timestamp,receivedAt,level,category,action,outcome,userId,…\n")),
            (String = "application/x-ndjson"),
        )),
        (status = 400, description = "An unknown parameter or a bad value, named in `field`.", body = super::openapi::ErrorBody),
    ))]
pub(super) async fn export_events(
    State(state): State<AppState>,
    crate::selfaudit::ActingFrom(acting): crate::selfaudit::ActingFrom,
    Owner(owner): Owner,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let params = Params::parse(raw.as_deref(), &["format", "sort"])?;
    let order = sort(params.one("sort"))?;
    let format = match params.one("format").unwrap_or("json") {
        "csv" => ExportFormat::Csv,
        "json" => ExportFormat::Json,
        "ndjson" | "jsonl" => ExportFormat::Ndjson,
        "ocsf" => ExportFormat::OcsfJson,
        "ocsf-ndjson" => ExportFormat::OcsfNdjson,
        other => {
            return Err(ApiError::Param {
                field: "format".into(),
                message: format!("{other:?} is not one of: csv, json, ndjson, ocsf, ocsf-ndjson"),
            })
        }
    };
    let (_, query) = params.filter()?;
    let query = query.owned_by(owner.as_deref());
    let (tx, rx) =
        tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(EXPORT_CHUNKS_IN_FLIGHT);
    let store = state.store.clone();
    let filter = raw.clone();
    tokio::spawn(async move {
        let writer = ExportWriter::new(format, EXPORT_CHUNK);
        let sink = tx.clone();
        let scanned = store
            .for_each_matching(query, order, writer, move |writer, event| {
                match writer.push(event) {
                    // A closed channel means the client went away: stop scanning.
                    Some(chunk) => sink.blocking_send(Ok(Bytes::from(chunk))).is_ok(),
                    None => true,
                }
            })
            .await;
        // Recorded once the scan is done, so an export never contains its own record.
        let described = format!(
            "exported events as {} (filter: {})",
            format.extension(),
            filter.as_deref().unwrap_or("none")
        );
        let outcome = match &scanned {
            Ok(_) => crate::model::Outcome::Success,
            Err(_) => crate::model::Outcome::Failure,
        };
        crate::selfaudit::note(
            &store,
            &acting,
            "events.export",
            crate::model::Category::DataManagement,
            outcome,
            crate::model::Level::Info,
            described,
        )
        .await;
        let last = match scanned {
            Ok(writer) => Ok(Bytes::from(writer.finish())),
            Err(e) => {
                tracing::error!(error = %e, "export failed part way");
                // An error mid-body aborts the response, so the client sees a truncated
                // download fail instead of a short file that looks complete.
                Err(std::io::Error::other("export failed; see the server log"))
            }
        };
        let _ = tx.send(last).await;
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    let name = format!(
        "trailwatch-events-{}.{}",
        Utc::now().format("%Y%m%dT%H%M%SZ"),
        format.extension()
    );
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_accept_three_forms() {
        let d = date("start_date", Some("2026-01-02"), false)
            .unwrap()
            .unwrap();
        assert_eq!(d.to_rfc3339(), "2026-01-02T00:00:00+00:00");
        let e = date("end_date", Some("2026-01-02"), true).unwrap().unwrap();
        assert_eq!(e.timestamp_millis() - d.timestamp_millis(), 86_399_999);
        assert!(date("start_date", Some("1770254502321"), false)
            .unwrap()
            .is_some());
        assert!(matches!(
            date("start_date", Some("soon"), false),
            Err(ApiError::Param { field, .. }) if field == "start_date"
        ));
    }

    #[test]
    fn params_refuse_unknown_and_repeated_names() {
        let err = |raw: &str| match Params::parse(Some(raw), &["page"]) {
            Err(ApiError::Param { field, message }) => (field, message),
            Err(other) => panic!("{other:?}"),
            Ok(_) => panic!("{raw} was accepted"),
        };
        assert_eq!(err("levle=error").0, "levle");
        assert!(err("levle=error").1.contains("known: level"));
        assert_eq!(err("user_id=a&user_id=b").0, "user_id");
        let ok = Params::parse(
            Some("level=error&level=critical,info&q=a%20b&page=2"),
            &["page"],
        )
        .unwrap();
        let (filter, _) = ok.filter().unwrap();
        assert_eq!(
            filter.level,
            vec![Level::Error, Level::Critical, Level::Info]
        );
        assert_eq!(filter.q.as_deref(), Some("a b"));
        assert_eq!(ok.one("page"), Some("2"));
    }

    #[test]
    fn filter_values_are_checked_by_name() {
        let field = |raw: &str| match Params::parse(Some(raw), &[]).and_then(|p| p.filter()) {
            Err(ApiError::Param { field, .. }) => field,
            other => panic!("{raw}: {:?}", other.map(|_| ())),
        };
        assert_eq!(field("level=loud"), "level");
        assert_eq!(field("outcome=maybe"), "outcome");
        assert_eq!(field("min_risk=101"), "min_risk");
        assert_eq!(field("max_risk=x"), "max_risk");
        assert_eq!(field("min_risk=90&max_risk=10"), "min_risk");
        assert_eq!(field("q=%22open"), "q");
        assert_eq!(
            field("start_date=2026-02-01&end_date=2026-01-01"),
            "start_date"
        );
        assert_eq!(field("end_date=tomorrow"), "end_date");
    }
}
