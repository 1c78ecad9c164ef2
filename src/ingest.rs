//! Turning bytes into validated events: HTTP bodies (one JSON object, an array, or NDJSON) in
//! the event-logging shape or the older `{userId, action, allowed}` JSONL shape. Every problem
//! is reported with the record's index and the field's name. Server build only. [`otlp`]
//! and [`kubernetes`] map OpenTelemetry log records and Kubernetes audit events onto the same
//! shape and rules.

use crate::model::{
    Actor, AuditEvent, Category, Change, Entity, FieldError, Level, Location, Outcome, RequestInfo,
    Source, SystemInfo,
};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

pub mod kubernetes;
pub mod otlp;
pub mod syslog;

/// Longest accepted `action`, in bytes.
pub const MAX_ACTION_LEN: usize = 256;
/// Longest accepted short text field (ids, names, paths), in bytes.
pub const MAX_SHORT_LEN: usize = 2_048;
/// Longest accepted `description`, in bytes.
pub const MAX_DESCRIPTION_LEN: usize = 65_536;
/// The longest NDJSON line (one event) read; a longer one is refused unparsed, so one
/// runaway line cannot make the parser build a huge value.
pub const MAX_LINE_BYTES: usize = 1024 * 1024;

/// How far ahead of the server's clock an event's `timestamp` may be by default. A date in the
/// far future would head every time-sorted view and outlive every retention period; a clock a
/// little ahead is common.
pub const MAX_AHEAD: chrono::Duration = chrono::Duration::hours(24);

/// The times an event may carry (`[ingest]` in the config file): from `not_before` to
/// `max_ahead` past the server's clock. Every source obeys the same window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "WindowConfig")]
pub struct TimeWindow {
    pub not_before: DateTime<Utc>,
    pub max_ahead: chrono::Duration,
}

impl Default for TimeWindow {
    /// Not before 1970 (no audited system recorded an earlier time), not more than
    /// [`MAX_AHEAD`] ahead; old events, such as a backfill, stay possible.
    fn default() -> Self {
        TimeWindow {
            not_before: DateTime::UNIX_EPOCH,
            max_ahead: MAX_AHEAD,
        }
    }
}

/// `[ingest]` as written: `not_before = "2015-01-01T00:00:00Z"`, `max_ahead_hours = 24`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct WindowConfig {
    not_before: Option<DateTime<Utc>>,
    max_ahead_hours: Option<u32>,
}

/// The most hours ahead a window may reach: a year. More would let a far-future date head
/// every time-sorted view again.
const MAX_AHEAD_HOURS: u32 = 24 * 366;

impl TryFrom<WindowConfig> for TimeWindow {
    type Error = String;

    fn try_from(c: WindowConfig) -> Result<Self, String> {
        let d = TimeWindow::default();
        let not_before = c.not_before.unwrap_or(d.not_before);
        if not_before < DateTime::UNIX_EPOCH {
            return Err(format!(
                "ingest.not_before: {} is before 1970",
                not_before.to_rfc3339()
            ));
        }
        if not_before > Utc::now() {
            return Err(format!(
                "ingest.not_before: {} is in the future; no event could be accepted",
                not_before.to_rfc3339()
            ));
        }
        let hours = c.max_ahead_hours.unwrap_or(MAX_AHEAD.num_hours() as u32);
        if hours > MAX_AHEAD_HOURS {
            return Err(format!(
                "ingest.max_ahead_hours: {hours} is more than {MAX_AHEAD_HOURS} (a year)"
            ));
        }
        Ok(TimeWindow {
            not_before,
            max_ahead: chrono::Duration::hours(i64::from(hours)),
        })
    }
}

impl TimeWindow {
    /// The window seen at `now`.
    pub fn at(self, now: DateTime<Utc>) -> Clock {
        Clock { now, window: self }
    }
}

/// The moment records are read at, which stands in for a missing time, and the window their
/// times must fall in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    pub now: DateTime<Utc>,
    pub window: TimeWindow,
}

impl From<DateTime<Utc>> for Clock {
    /// `now` with the default window.
    fn from(now: DateTime<Utc>) -> Clock {
        TimeWindow::default().at(now)
    }
}

/// Reads one JSON text as RFC 7493 (I-JSON) demands of member names: an object whose names
/// repeat is refused, at any depth. serde_json would keep the last value, while another
/// reader of the same sealed bytes (a verifier, an export, a predecessor) may keep the first:
/// two readers of the chain must never disagree on what was signed.
///
/// # Errors
/// Not JSON, or a name repeated in one object (with the line and column).
pub fn parse_json(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    use serde::Deserialize;
    Ok(Strict::deserialize(&mut serde_json::Deserializer::from_slice(bytes))?.0)
}

/// A JSON value whose objects' member names are unique (see [`parse_json`]).
struct Strict(Value);

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("a number JSON cannot hold"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        use serde::de::Error;
        let mut members = Map::new();
        while let Some(name) = map.next_key::<String>()? {
            if members.contains_key(&name) {
                return Err(A::Error::custom(format!(
                    "the name {name:?} appears twice in one object (RFC 7493: names are unique)"
                )));
            }
            let Strict(v) = map.next_value()?;
            members.insert(name, v);
        }
        Ok(Value::Object(members))
    }
}

/// How a request body is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFormat {
    /// One JSON object or a JSON array of objects.
    Json,
    /// One JSON object per line; blank lines are skipped.
    Ndjson,
}

/// Why a body could not be turned into events.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    /// One or more records are malformed; nothing of the request may be stored.
    #[error("{} invalid record field(s)", .0.len())]
    Invalid(Vec<FieldError>),
    /// The request holds no record at all.
    #[error("the request holds no events")]
    Empty,
}

/// Parses a whole request body into events, all or nothing: any bad record fails the request,
/// and every bad record and field is named. The clock's `now` stands in for missing
/// timestamps.
pub fn parse_body(
    body: &[u8],
    format: BodyFormat,
    source: &Source,
    clock: impl Into<Clock>,
) -> Result<Vec<AuditEvent>, IngestError> {
    let clock = clock.into();
    // Each record with its index, or why it could not even be read as JSON.
    let mut records: Vec<(usize, Result<Value, String>)> = Vec::new();
    match format {
        BodyFormat::Json => match parse_json(body) {
            Ok(Value::Array(items)) => records.extend(items.into_iter().map(Ok).enumerate()),
            Ok(value) => records.push((0, Ok(value))),
            Err(e) => records.push((0, Err(format!("body is not valid JSON: {e}")))),
        },
        BodyFormat::Ndjson => {
            for (i, line) in body.split(|b| *b == b'\n').enumerate() {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                if line.len() > MAX_LINE_BYTES {
                    let message = format!(
                        "line is {} bytes; one event may take at most {MAX_LINE_BYTES} bytes",
                        line.len()
                    );
                    records.push((i, Err(message)));
                    continue;
                }
                let parsed = parse_json(line).map_err(|e| format!("line is not valid JSON: {e}"));
                records.push((i, parsed));
            }
        }
    }
    let mut events = Vec::with_capacity(records.len());
    let mut errors = Vec::new();
    for (index, record) in records {
        match record
            .map_err(|m| vec![record_error(0, m)])
            .and_then(|v| normalize(&v, source, clock))
        {
            Ok(event) => events.push(event),
            Err(errs) => errors.extend(errs.into_iter().map(|e| FieldError { index, ..e })),
        }
    }
    if !errors.is_empty() {
        return Err(IngestError::Invalid(errors));
    }
    if events.is_empty() {
        return Err(IngestError::Empty);
    }
    Ok(events)
}

/// An event for input that could not be read, kept rather than dropped, as every source keeps
/// it: a warning with action `log.unparsed`, acted by `system`, its `metadata` holding the
/// input and the reason. Built directly rather than through [`normalize`]: the raw input may
/// exceed the limits a sender is held to, and it must be kept all the same.
pub fn unparsed_event(
    source: &Source,
    at: DateTime<Utc>,
    description: String,
    metadata: Map<String, Value>,
    correlation_id: Option<String>,
) -> AuditEvent {
    AuditEvent {
        description: Some(description),
        metadata: Some(metadata),
        correlation_id,
        ..AuditEvent::new(
            at,
            Level::Warning,
            Category::SystemManagement,
            UNPARSED_ACTION,
            Outcome::Success,
            Actor::system(),
            source.clone(),
        )
    }
}

/// `text` cut to at most `max` bytes, on a character boundary.
pub fn clip(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The action of an event made of input that could not be read.
pub const UNPARSED_ACTION: &str = "log.unparsed";

fn record_error(index: usize, message: String) -> FieldError {
    FieldError {
        index,
        field: String::new(),
        message,
    }
}

/// Validates one record and fills in defaults. The errors carry index 0; [`parse_body`] sets
/// the real index.
///
/// Accepted fields: the event-logging response format (`timestamp`, `level`, `category`,
/// `action`, `outcome`, `user{id,username}`, `entity{type,id,name}`,
/// `request{method,path,ip,userAgent,statusCode,responseTime}`, `location{country,city}`,
/// `description`, `metadata`, `changes`, `riskScore`, `correlationId`, `sessionId`, `system`),
/// the JSONL shape's `userId` and `allowed`, and the audit-trail service's `entityType`,
/// `entityId`, `resourceName`, `details` and `severity`. Unknown fields are errors, so a typo
/// never silently loses data.
pub fn normalize(
    value: &Value,
    source: &Source,
    clock: impl Into<Clock>,
) -> Result<AuditEvent, Vec<FieldError>> {
    let clock = clock.into();
    let now = clock.now;
    let Value::Object(obj) = value else {
        return Err(vec![record_error(
            0,
            "each event must be a JSON object".into(),
        )]);
    };
    let mut f = Fields {
        obj,
        errors: Vec::new(),
    };
    f.reject_unknown();

    let timestamp = f.timestamp("timestamp", clock).unwrap_or(now);
    let action = match f.string("action", MAX_ACTION_LEN) {
        Some(a) if !a.trim().is_empty() => Some(a.trim().to_string()),
        Some(_) => {
            f.error("action", "must not be empty");
            None
        }
        // Absent or null; a value of the wrong type has been named already.
        None => {
            if f.get("action").is_none() {
                f.error("action", "is required");
            }
            None
        }
    };
    let outcome = f.outcome();
    let level = match (
        f.enum_field("level", Level::parse),
        f.enum_field("severity", Level::parse),
    ) {
        (Some(l), _) | (None, Some(l)) => l,
        // Without a level, the outcome decides: a refusal is worth a look, a failure more so.
        (None, None) => match outcome {
            Outcome::Success => Level::Info,
            Outcome::Denied => Level::Warning,
            Outcome::Failure => Level::Error,
        },
    };
    let category = f.enum_field("category", Category::parse);
    let user = f.actor();
    let entity = f.entity();
    let request = f.request();
    let location = f.location();
    let description = f
        .string("description", MAX_DESCRIPTION_LEN)
        .map(str::to_string);
    let metadata = match (f.object("metadata"), f.object("details")) {
        (Some(m), None) | (None, Some(m)) => Some(m.clone()),
        (Some(_), Some(_)) => {
            f.error("details", "give metadata or details, not both");
            None
        }
        (None, None) => None,
    };
    let changes = f.changes();
    let risk_score = f.risk_score();
    let correlation_id = f.string("correlationId", MAX_SHORT_LEN).map(str::to_string);
    let session_id = f.string("sessionId", MAX_SHORT_LEN).map(str::to_string);
    let system = f.system();

    if !f.errors.is_empty() {
        return Err(f.errors);
    }
    let action = action.unwrap_or_default();
    let category = category.unwrap_or_else(|| Category::infer_from_action(&action));
    Ok(AuditEvent {
        timestamp,
        level,
        category,
        action,
        outcome,
        user,
        entity,
        request,
        location,
        description,
        metadata,
        changes,
        risk_score,
        risk_reasons: None,
        correlation_id,
        session_id,
        system,
        source: source.clone(),
        submitted_by: None,
    })
}

/// The fields an event may have on the way in (the OpenAPI document's `EventInput` lists
/// the same; a test holds them together).
pub const KNOWN_FIELDS: &[&str] = &[
    "timestamp",
    "level",
    "severity",
    "category",
    "action",
    "outcome",
    "allowed",
    "user",
    "userId",
    "username",
    "entity",
    "entityType",
    "entityId",
    "resourceName",
    "request",
    "location",
    "description",
    "metadata",
    "details",
    "changes",
    "riskScore",
    "correlationId",
    "sessionId",
    "system",
];

/// Fields the server assigns; a sender that sets them is told so instead of being ignored.
const SERVER_FIELDS: &[&str] = &[
    "seq",
    "eventId",
    "receivedAt",
    "hash",
    "source",
    "riskReasons",
    "submittedBy",
];

/// Reads typed fields out of one record, collecting every error instead of stopping at one.
struct Fields<'a> {
    obj: &'a Map<String, Value>,
    errors: Vec<FieldError>,
}

impl<'a> Fields<'a> {
    fn error(&mut self, field: &str, message: impl Into<String>) {
        self.errors.push(FieldError {
            index: 0,
            field: field.to_string(),
            message: message.into(),
        });
    }

    fn reject_unknown(&mut self) {
        let obj = self.obj;
        for key in obj.keys() {
            if SERVER_FIELDS.contains(&key.as_str()) {
                self.error(key, "is assigned by the server and must not be sent");
            } else if !KNOWN_FIELDS.contains(&key.as_str()) {
                self.error(key, "is not a known event field");
            }
        }
    }

    /// The value of `key`, treating JSON `null` as absent.
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.obj.get(key).filter(|v| !v.is_null())
    }

    fn string(&mut self, key: &str, max: usize) -> Option<&'a str> {
        string_in(self.obj, key, key, max, &mut self.errors)
    }

    fn object(&mut self, key: &str) -> Option<&'a Map<String, Value>> {
        match self.get(key)? {
            Value::Object(m) => Some(m),
            _ => {
                self.error(key, "must be an object");
                None
            }
        }
    }

    fn enum_field<T>(&mut self, key: &str, parse: fn(&str) -> Option<T>) -> Option<T> {
        let s = self.string(key, 64)?;
        let parsed = parse(s);
        if parsed.is_none() {
            let allowed = match key {
                "category" => Category::ALL.map(Category::as_str).join(", "),
                "outcome" => Outcome::ALL.map(Outcome::as_str).join(", "),
                _ => Level::ALL.map(Level::as_str).join(", "),
            };
            self.error(key, format!("\"{s}\" is not one of: {allowed}"));
        }
        parsed
    }

    /// `key` as a time in the clock's window (by default, from 1970 to [`MAX_AHEAD`] past now).
    fn timestamp(&mut self, key: &str, clock: Clock) -> Option<DateTime<Utc>> {
        let Clock { now, window } = clock;
        let parsed = match self.get(key)? {
            Value::String(s) => DateTime::parse_from_rfc3339(s.trim())
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| format!("\"{s}\" is not an RFC 3339 time: {e}")),
            Value::Number(n) => n
                .as_i64()
                .and_then(DateTime::from_timestamp_millis)
                .ok_or_else(|| format!("{n} is not a valid epoch-milliseconds time")),
            _ => Err("must be an RFC 3339 string or epoch milliseconds".to_string()),
        };
        let latest = now + window.max_ahead;
        let parsed = parsed.and_then(|t| {
            if t < window.not_before && window.not_before == DateTime::UNIX_EPOCH {
                Err(format!("{} is before 1970", t.to_rfc3339()))
            } else if t < window.not_before {
                Err(format!(
                    "{} is before {}, the earliest time this server accepts",
                    t.to_rfc3339(),
                    window.not_before.to_rfc3339()
                ))
            } else if t > latest {
                Err(format!(
                    "{} is more than {} hours ahead of the server's clock ({})",
                    t.to_rfc3339(),
                    window.max_ahead.num_hours(),
                    now.to_rfc3339()
                ))
            } else {
                Ok(t)
            }
        });
        match parsed {
            // The chain seals milliseconds; finer precision would not survive storage.
            Ok(t) => DateTime::from_timestamp_millis(t.timestamp_millis()),
            Err(message) => {
                self.error(key, message);
                None
            }
        }
    }

    fn outcome(&mut self) -> Outcome {
        let outcome = self.enum_field("outcome", Outcome::parse);
        let allowed = match self.get("allowed") {
            None => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => {
                self.error("allowed", "must be true or false");
                None
            }
        };
        match (outcome, allowed) {
            (Some(Outcome::Denied), Some(true)) | (Some(Outcome::Success), Some(false)) => {
                self.error("allowed", "contradicts outcome");
                Outcome::Success
            }
            (Some(o), _) => o,
            (None, Some(false)) => Outcome::Denied,
            (None, Some(true) | None) => Outcome::Success,
        }
    }

    fn actor(&mut self) -> Actor {
        let (mut id, mut username) = (None, None);
        match self.get("user") {
            None => {}
            Some(Value::String(_)) => {
                id = string_in(self.obj, "user", "user", MAX_SHORT_LEN, &mut self.errors)
                    .map(str::to_string);
            }
            Some(Value::Object(u)) => {
                id = id_in(u, "id", "user.id", &mut self.errors);
                username = string_in(
                    u,
                    "username",
                    "user.username",
                    MAX_SHORT_LEN,
                    &mut self.errors,
                )
                .map(str::to_string);
                for key in u
                    .keys()
                    .filter(|k| !matches!(k.as_str(), "id" | "username"))
                {
                    self.error(&format!("user.{key}"), "is not a known user field");
                }
            }
            Some(_) => self.error("user", "must be an object {id, username} or a string"),
        }
        if let Some(user_id) = id_in(self.obj, "userId", "userId", &mut self.errors) {
            if id.as_ref().is_some_and(|i| *i != user_id) {
                self.error("userId", "contradicts user.id");
            }
            id = Some(user_id);
        }
        if let Some(name) = self.string("username", MAX_SHORT_LEN) {
            username = Some(name.to_string());
        }
        match id.filter(|i| !i.trim().is_empty()) {
            Some(id) => Actor { id, username },
            // A username alone still identifies the actor.
            None => match username {
                Some(name) => Actor {
                    id: name.clone(),
                    username: Some(name),
                },
                None => Actor::system(),
            },
        }
    }

    fn entity(&mut self) -> Option<Entity> {
        let mut entity = Entity::default();
        if let Some(e) = self.object("entity") {
            entity.kind = string_in(e, "type", "entity.type", MAX_SHORT_LEN, &mut self.errors)
                .map(str::to_string);
            entity.id = id_in(e, "id", "entity.id", &mut self.errors);
            entity.name = string_in(e, "name", "entity.name", MAX_SHORT_LEN, &mut self.errors)
                .map(str::to_string);
            self.unknown_keys(e, "entity", &["type", "id", "name"]);
        }
        if let Some(t) = self.string("entityType", MAX_SHORT_LEN) {
            entity.kind = Some(t.to_string());
        }
        if let Some(i) = id_in(self.obj, "entityId", "entityId", &mut self.errors) {
            entity.id = Some(i);
        }
        if let Some(n) = self.string("resourceName", MAX_SHORT_LEN) {
            entity.name = Some(n.to_string());
        }
        (entity != Entity::default()).then_some(entity)
    }

    fn request(&mut self) -> Option<RequestInfo> {
        let r = self.object("request")?;
        let errors = &mut self.errors;
        let s = |key: &str, errors: &mut Vec<FieldError>| {
            string_in(r, key, &format!("request.{key}"), MAX_SHORT_LEN, errors).map(str::to_string)
        };
        let info = RequestInfo {
            method: s("method", errors).map(|m| m.to_ascii_uppercase()),
            path: s("path", errors),
            ip: s("ip", errors),
            user_agent: s("userAgent", errors),
            status_code: uint_in(r, "statusCode", "request.statusCode", 100, 599, errors)
                .map(|v| v as u16),
            response_time: uint_in(
                r,
                "responseTime",
                "request.responseTime",
                0,
                u64::MAX,
                errors,
            ),
        };
        self.unknown_keys(
            r,
            "request",
            &[
                "method",
                "path",
                "ip",
                "userAgent",
                "statusCode",
                "responseTime",
            ],
        );
        (info != RequestInfo::default()).then_some(info)
    }

    fn location(&mut self) -> Option<Location> {
        let l = self.object("location")?;
        let loc = Location {
            country: string_in(
                l,
                "country",
                "location.country",
                MAX_SHORT_LEN,
                &mut self.errors,
            )
            .map(str::to_string),
            city: string_in(l, "city", "location.city", MAX_SHORT_LEN, &mut self.errors)
                .map(str::to_string),
        };
        self.unknown_keys(l, "location", &["country", "city"]);
        (loc != Location::default()).then_some(loc)
    }

    fn system(&mut self) -> Option<SystemInfo> {
        let s = self.object("system")?;
        let e = &mut self.errors;
        let info = SystemInfo {
            service: string_in(s, "service", "system.service", MAX_SHORT_LEN, e)
                .map(str::to_string),
            server: string_in(s, "server", "system.server", MAX_SHORT_LEN, e).map(str::to_string),
            environment: string_in(s, "environment", "system.environment", MAX_SHORT_LEN, e)
                .map(str::to_string),
            version: string_in(s, "version", "system.version", MAX_SHORT_LEN, e)
                .map(str::to_string),
        };
        self.unknown_keys(
            s,
            "system",
            &["service", "server", "environment", "version"],
        );
        (info != SystemInfo::default()).then_some(info)
    }

    fn changes(&mut self) -> Option<BTreeMap<String, Change>> {
        let c = self.object("changes")?;
        let mut out = BTreeMap::new();
        for (field, diff) in c {
            let path = format!("changes.{field}");
            match diff {
                Value::Object(d)
                    if (d.contains_key("before") || d.contains_key("after"))
                        && d.keys().all(|k| k == "before" || k == "after") =>
                {
                    let before = d.get("before").cloned().unwrap_or(Value::Null);
                    let after = d.get("after").cloned().unwrap_or(Value::Null);
                    out.insert(field.clone(), Change { before, after });
                }
                _ => self.error(&path, "must be an object {\"before\": ..., \"after\": ...}"),
            }
        }
        (!out.is_empty()).then_some(out)
    }

    fn risk_score(&mut self) -> Option<u8> {
        uint_in(self.obj, "riskScore", "riskScore", 0, 100, &mut self.errors).map(|v| v as u8)
    }

    fn unknown_keys(&mut self, obj: &Map<String, Value>, prefix: &str, known: &[&str]) {
        for key in obj.keys().filter(|k| !known.contains(&k.as_str())) {
            self.error(
                &format!("{prefix}.{key}"),
                format!("is not a known {prefix} field"),
            );
        }
    }
}

fn string_in<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    path: &str,
    max: usize,
    errors: &mut Vec<FieldError>,
) -> Option<&'a str> {
    let push = |errors: &mut Vec<FieldError>, message: String| {
        errors.push(FieldError {
            index: 0,
            field: path.to_string(),
            message,
        });
    };
    match obj.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.len() > max => {
            push(errors, format!("is longer than {max} bytes"));
            None
        }
        Some(Value::String(s)) => Some(s),
        Some(_) => {
            push(errors, "must be a string".to_string());
            None
        }
    }
}

/// An identifier given as a string or an integer (`"id": 1` in the event-logging format).
fn id_in(
    obj: &Map<String, Value>,
    key: &str,
    path: &str,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    match obj.get(key) {
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        Some(Value::Number(_)) => {
            errors.push(FieldError {
                index: 0,
                field: path.to_string(),
                message: "must be a string or an integer".into(),
            });
            None
        }
        _ => string_in(obj, key, path, MAX_SHORT_LEN, errors).map(str::to_string),
    }
}

fn uint_in(
    obj: &Map<String, Value>,
    key: &str,
    path: &str,
    min: u64,
    max: u64,
    errors: &mut Vec<FieldError>,
) -> Option<u64> {
    let value = obj.get(key).filter(|v| !v.is_null())?;
    match value.as_u64() {
        Some(v) if (min..=max).contains(&v) => Some(v),
        _ => {
            let range = if max == u64::MAX {
                format!("a whole number of at least {min}")
            } else {
                format!("a whole number from {min} to {max}")
            };
            errors.push(FieldError {
                index: 0,
                field: path.to_string(),
                message: format!("must be {range}, got {value}"),
            });
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-02-04T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn one(v: Value) -> Result<AuditEvent, Vec<FieldError>> {
        normalize(&v, &Source::http(), now())
    }

    fn fields(errs: &[FieldError]) -> Vec<&str> {
        errs.iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn full_event_logging_shape_is_kept() {
        let e = one(json!({
            "timestamp": "2024-01-01T12:00:00Z", "level": "info", "category": "authentication",
            "action": "login", "user": {"id": 1, "username": "john.doe"},
            "entity": {"type": "auth", "id": "1", "name": "john.doe"},
            "request": {"method": "post", "path": "/api/v1/auth/login", "ip": "192.168.1.100",
                        "userAgent": "Mozilla/5.0", "statusCode": 200, "responseTime": 150},
            "location": {"country": "US", "city": "New York"},
            "description": "User john.doe login successful",
            "metadata": {"device_type": "desktop"}, "riskScore": 0,
            "correlationId": "c-1", "sessionId": "s-1",
            "system": {"server": "app-1", "environment": "production", "version": "1.0.0"},
            "changes": {"role": {"before": "viewer", "after": "admin"}},
            "outcome": "success"
        }))
        .unwrap();
        assert_eq!(
            e.user,
            Actor {
                id: "1".into(),
                username: Some("john.doe".into())
            }
        );
        assert_eq!(e.category, Category::Authentication);
        let req = e.request.unwrap();
        assert_eq!(req.method.as_deref(), Some("POST"));
        assert_eq!(req.status_code, Some(200));
        assert_eq!(e.location.unwrap().city.as_deref(), Some("New York"));
        assert_eq!(e.changes.unwrap()["role"].after, json!("admin"));
        assert_eq!(e.timestamp.to_rfc3339(), "2024-01-01T12:00:00+00:00");
        assert_eq!(e.risk_score, Some(0));
        assert_eq!(e.system.unwrap().server.as_deref(), Some("app-1"));
    }

    #[test]
    fn jsonl_shape_with_epoch_millis_and_allowed_false_is_a_denial() {
        let e = one(json!({"timestamp":1770254502321_i64,"userId":"u1","action":"file.read","allowed":false}))
            .unwrap();
        assert_eq!(e.outcome, Outcome::Denied);
        assert_eq!(
            e.level,
            Level::Warning,
            "a denial without a level is a warning"
        );
        assert_eq!(e.user.id, "u1");
        assert_eq!(e.category, Category::FileManagement);
        assert_eq!(e.timestamp.timestamp_millis(), 1_770_254_502_321);
    }

    #[test]
    fn missing_user_is_system_and_missing_time_is_now() {
        let e = one(json!({"action": "backup.run"})).unwrap();
        assert_eq!(e.user, Actor::system());
        assert_eq!(e.timestamp, now());
        assert_eq!(e.outcome, Outcome::Success);
        assert_eq!(e.level, Level::Info);
    }

    #[test]
    fn audit_service_aliases_are_accepted() {
        let e = one(
            json!({"action": "AGENT_UPDATED", "entityType": "agent", "entityId": 7,
                           "resourceName": "Bot", "userId": "u9", "severity": "warning",
                           "details": {"mode": "auto"}}),
        )
        .unwrap();
        let ent = e.entity.unwrap();
        assert_eq!(
            (ent.kind.as_deref(), ent.id.as_deref()),
            (Some("agent"), Some("7"))
        );
        assert_eq!(e.level, Level::Warning);
        assert_eq!(e.metadata.unwrap()["mode"], "auto");
    }

    #[test]
    fn sub_millisecond_precision_is_truncated() {
        let e = one(json!({"action": "a", "timestamp": "2026-01-01T00:00:00.123456789Z"})).unwrap();
        assert_eq!(e.timestamp.timestamp_subsec_nanos(), 123_000_000);
    }

    #[test]
    fn every_bad_field_is_named() {
        let errs = one(json!({
            "level": "loud", "category": "misc", "outcome": "maybe", "timestamp": "yesterday",
            "riskScore": 101, "request": {"statusCode": 42, "ip": 5}, "changes": {"x": 1},
            "user": {"id": 1.5, "email": "a@b"}, "levle": "info", "hash": "ab"
        }))
        .unwrap_err();
        let f = fields(&errs);
        for expected in [
            "action",
            "level",
            "category",
            "outcome",
            "timestamp",
            "riskScore",
            "request.statusCode",
            "request.ip",
            "changes.x",
            "user.id",
            "user.email",
            "levle",
            "hash",
        ] {
            assert!(f.contains(&expected), "{expected} missing from {f:?}");
        }
    }

    #[test]
    fn a_null_action_is_missing_and_a_user_string_has_a_limit() {
        // It once slipped through as an event with an empty action.
        let errs = one(json!({"action": null, "userId": "u1"})).unwrap_err();
        assert_eq!(fields(&errs), ["action"]);
        assert_eq!(errs[0].message, "is required");
        let long = "u".repeat(MAX_SHORT_LEN + 1);
        let errs = one(json!({"action": "a", "user": long})).unwrap_err();
        assert_eq!(
            fields(&errs),
            ["user"],
            "a user given as text is held to the id's limit"
        );
        let errs = one(json!({"action": 7})).unwrap_err();
        assert_eq!(fields(&errs), ["action"], "one error for the wrong type");
        assert_eq!(errs[0].message, "must be a string");
    }

    #[test]
    fn contradictions_are_errors() {
        let errs = one(json!({"action": "a", "outcome": "denied", "allowed": true})).unwrap_err();
        assert_eq!(fields(&errs), ["allowed"]);
        let errs = one(json!({"action": "a", "user": {"id": "x"}, "userId": "y"})).unwrap_err();
        assert_eq!(fields(&errs), ["userId"]);
        let errs = one(json!({"action": "a", "metadata": {}, "details": {}})).unwrap_err();
        assert_eq!(fields(&errs), ["details"]);
    }

    #[test]
    fn a_name_repeated_in_one_object_is_refused_at_any_depth() {
        for body in [
            r#"{"action": "file.read", "action": "file.delete"}"#,
            r#"{"action": "a", "metadata": {"k": 1, "nested": {"x": 1, "x": 2}}}"#,
            r#"[{"action": "a"}, {"action": "b", "user": {"id": "u", "id": "v"}}]"#,
        ] {
            let err = parse_body(body.as_bytes(), BodyFormat::Json, &Source::http(), now());
            let Err(IngestError::Invalid(errs)) = err else {
                panic!("{body} was accepted");
            };
            assert!(errs[0].message.contains("appears twice"), "{errs:?}");
        }
        let ndjson = b"{\"action\": \"a\"}\n{\"action\": \"b\", \"outcome\": \"denied\", \"outcome\": \"success\"}\n";
        let Err(IngestError::Invalid(errs)) =
            parse_body(ndjson, BodyFormat::Ndjson, &Source::http(), now())
        else {
            panic!("NDJSON with a repeated name was accepted");
        };
        assert_eq!((errs.len(), errs[0].index), (1, 1), "{errs:?}");
        // The same names in different objects are fine, and values keep their types.
        let v = parse_json(br#"{"a": {"id": 1.5}, "b": {"id": [true, null, "x", -3]}}"#).unwrap();
        assert_eq!(
            v,
            json!({"a": {"id": 1.5}, "b": {"id": [true, null, "x", -3]}})
        );
    }

    #[test]
    fn a_configured_window_moves_both_bounds() {
        let window = TimeWindow {
            not_before: DateTime::parse_from_rfc3339("2020-01-01T00:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
            max_ahead: chrono::Duration::hours(1),
        };
        let at = |t: &str| {
            normalize(
                &json!({"action": "a", "timestamp": t}),
                &Source::http(),
                window.at(now()),
            )
        };
        let early = at("2019-12-31T23:59:59Z").unwrap_err();
        assert_eq!(fields(&early), ["timestamp"]);
        assert!(early[0].message.contains("earliest time"), "{early:?}");
        let ahead = (now() + chrono::Duration::minutes(61)).to_rfc3339();
        assert!(at(&ahead).unwrap_err()[0].message.contains("1 hours ahead"));
        assert!(at("2020-01-01T00:00:00Z").is_ok());
        assert!(at(&(now() + chrono::Duration::minutes(59)).to_rfc3339()).is_ok());
    }

    #[test]
    fn timestamps_are_refused_outside_1970_to_a_day_ahead() {
        let at = |t: Value| one(json!({"action": "a", "timestamp": t}));
        let far = at(json!("9999-12-31T23:59:59Z")).unwrap_err();
        assert_eq!(fields(&far), ["timestamp"]);
        assert!(
            far[0].message.contains("ahead of the server's clock"),
            "{far:?}"
        );
        let early = at(json!(-1)).unwrap_err();
        assert!(early[0].message.contains("before 1970"), "{early:?}");
        // A clock a little ahead, and a backfill of old events, are accepted.
        let ahead = now() + MAX_AHEAD - chrono::Duration::minutes(1);
        assert_eq!(at(json!(ahead.to_rfc3339())).unwrap().timestamp, ahead);
        assert!(at(json!("1999-01-01T00:00:00Z")).is_ok());
        assert!(at(json!(
            (now() + MAX_AHEAD + chrono::Duration::seconds(1)).to_rfc3339()
        ))
        .is_err());
    }

    #[test]
    fn empty_and_oversized_values_are_rejected() {
        assert_eq!(
            fields(&one(json!({"action": "  "})).unwrap_err()),
            ["action"]
        );
        let long = "x".repeat(MAX_ACTION_LEN + 1);
        assert_eq!(
            fields(&one(json!({ "action": long })).unwrap_err()),
            ["action"]
        );
        assert_eq!(
            fields(&one(json!({"action": "a", "metadata": [1]})).unwrap_err()),
            ["metadata"]
        );
        assert_eq!(
            fields(&one(json!(["not", "an", "object"])).unwrap_err()),
            [""]
        );
    }

    #[test]
    fn body_array_is_all_or_nothing_with_indexes() {
        let body = br#"[{"action":"ok"},{"level":"x","action":"a"},{"action":"ok2"}]"#;
        let err = parse_body(body, BodyFormat::Json, &Source::http(), now()).unwrap_err();
        let IngestError::Invalid(errs) = err else {
            panic!("expected Invalid")
        };
        assert_eq!(errs.len(), 1);
        assert_eq!((errs[0].index, errs[0].field.as_str()), (1, "level"));
    }

    #[test]
    fn ndjson_skips_blank_lines_and_reports_line_numbers() {
        let body = b"{\"action\":\"a\"}\r\n\n{\"action\":\"b\"}\n";
        let events = parse_body(body, BodyFormat::Ndjson, &Source::cli(), now()).unwrap();
        assert_eq!(
            events.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(events[0].source, Source::cli());

        let body = b"{\"action\":\"a\"}\n{not json}\n";
        let IngestError::Invalid(errs) =
            parse_body(body, BodyFormat::Ndjson, &Source::http(), now()).unwrap_err()
        else {
            panic!("expected Invalid")
        };
        assert_eq!(errs[0].index, 1);
        assert!(errs[0].message.contains("not valid JSON"));
    }

    #[test]
    fn empty_bodies_are_rejected() {
        assert_eq!(
            parse_body(b"[]", BodyFormat::Json, &Source::http(), now()),
            Err(IngestError::Empty)
        );
        assert_eq!(
            parse_body(b"\n\n", BodyFormat::Ndjson, &Source::http(), now()),
            Err(IngestError::Empty)
        );
        assert!(matches!(
            parse_body(b"", BodyFormat::Json, &Source::http(), now()),
            Err(IngestError::Invalid(_))
        ));
    }
}
