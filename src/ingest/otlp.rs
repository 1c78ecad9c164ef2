//! OpenTelemetry logs (OTLP/HTTP, `POST /v1/logs`) onto audit events: decoding either of the
//! protocol's encodings, the mapping of one log record onto our event, and the answers the
//! protocol expects, partial success included. The wire types are `opentelemetry-proto`'s;
//! only the mapping is ours, and it is written out in the README ("OpenTelemetry logs").
//!
//! Each record is turned into an event of our JSON shape and validated by
//! [`super::normalize`], so a record obeys exactly the rules an HTTP event does. A record that
//! breaks them is refused on its own, with its reason, and the rest are stored: OTLP's partial
//! success, where our JSON API is all or nothing.

use super::{normalize, parse_json, Clock};
use crate::model::{AuditEvent, FieldError, Source};
use chrono::DateTime;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use prost::Message;
use serde_json::{json, Map, Value};

/// The source every OTLP event carries.
pub const SOURCE: &str = "otlp";

/// The action of a record that names no event (`eventName` and the `event.name` attribute are
/// both absent): a plain log line, kept as one.
pub const DEFAULT_ACTION: &str = "log.record";

/// At most this many refused records are described in a partial success's message; the count
/// covers them all.
const REASONS_SHOWN: usize = 20;

/// The two encodings OTLP/HTTP defines; an answer uses the request's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// `application/x-protobuf`.
    Protobuf,
    /// `application/json`, OTLP's JSON mapping (hex trace ids, lowerCamelCase names).
    Json,
}

impl Encoding {
    /// The encoding a `Content-Type` names, if OTLP defines it.
    pub fn from_content_type(content_type: &str) -> Option<Encoding> {
        let essence = content_type.split(';').next().unwrap_or("").trim();
        match essence.to_ascii_lowercase().as_str() {
            "application/x-protobuf" | "application/protobuf" => Some(Encoding::Protobuf),
            "application/json" => Some(Encoding::Json),
            _ => None,
        }
    }

    /// The `Content-Type` of an answer in this encoding.
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// Reads an export request. JSON is read as I-JSON first, as every ingest path does: a name
/// repeated within one object is refused rather than resolved one way or the other.
///
/// # Errors
/// A body that is not an `ExportLogsServiceRequest` in the encoding, with the decoder's words.
pub fn decode(body: &[u8], encoding: Encoding) -> Result<ExportLogsServiceRequest, String> {
    match encoding {
        Encoding::Protobuf => ExportLogsServiceRequest::decode(body)
            .map_err(|e| format!("body is not an OTLP ExportLogsServiceRequest: {e}")),
        Encoding::Json => {
            let value = parse_json(body).map_err(|e| format!("body is not valid JSON: {e}"))?;
            serde_path_to_error::deserialize(value).map_err(|e| {
                format!(
                    "body is not an OTLP ExportLogsServiceRequest: {}: {}",
                    e.path(),
                    e.inner()
                )
            })
        }
    }
}

/// The events of one export request, and the records refused.
#[derive(Debug, Default)]
pub struct Mapped {
    /// Valid records as events, in the request's order.
    pub events: Vec<AuditEvent>,
    /// How many records were refused.
    pub rejected: usize,
    /// Why, for the first [`REASONS_SHOWN`] refused records.
    pub reasons: Vec<String>,
}

impl Mapped {
    /// The partial success to answer with, when a record was refused.
    pub fn partial_success(&self) -> Option<ExportLogsPartialSuccess> {
        (self.rejected > 0).then(|| {
            let mut message = format!(
                "{} of the request's log records were refused: {}",
                self.rejected,
                self.reasons.join("; ")
            );
            if self.rejected > self.reasons.len() {
                message.push_str(&format!(
                    "; and {} more",
                    self.rejected - self.reasons.len()
                ));
            }
            ExportLogsPartialSuccess {
                rejected_log_records: i64::try_from(self.rejected).unwrap_or(i64::MAX),
                error_message: message,
            }
        })
    }
}

/// Maps every record of `request` onto an event; the clock's `now` stands in for a record
/// without a time.
pub fn map_request(request: &ExportLogsServiceRequest, clock: impl Into<Clock>) -> Mapped {
    let clock = clock.into();
    let source = Source(SOURCE.to_string());
    let mut mapped = Mapped::default();
    for (r, resource_logs) in request.resource_logs.iter().enumerate() {
        let resource = resource_logs
            .resource
            .as_ref()
            .map(|res| res.attributes.as_slice())
            .unwrap_or_default();
        for (s, scope_logs) in resource_logs.scope_logs.iter().enumerate() {
            let scope = scope_logs.scope.as_ref();
            let scope_name = scope.map(|sc| sc.name.as_str()).unwrap_or_default();
            let scope_version = scope.map(|sc| sc.version.as_str()).unwrap_or_default();
            for (l, record) in scope_logs.log_records.iter().enumerate() {
                let context = Context {
                    resource,
                    scope_name,
                    scope_version,
                };
                let result = map_record(record, &context).and_then(|(value, names)| {
                    normalize(&value, &source, clock).map_err(|errors| explain(&errors, &names))
                });
                match result {
                    Ok(event) => mapped.events.push(event),
                    Err(reason) => {
                        mapped.rejected += 1;
                        if mapped.reasons.len() < REASONS_SHOWN {
                            mapped.reasons.push(format!(
                                "resourceLogs[{r}].scopeLogs[{s}].logRecords[{l}]: {reason}"
                            ));
                        }
                    }
                }
            }
        }
    }
    mapped
}

/// What a record shares with the others of its resource and scope.
struct Context<'a> {
    resource: &'a [KeyValue],
    scope_name: &'a str,
    scope_version: &'a str,
}

/// Which OTLP name each of our fields came from, so a refusal names what the sender set.
type Names = Vec<(&'static str, String)>;

/// The record in our event shape, with the OTLP name behind each field.
fn map_record(record: &LogRecord, context: &Context<'_>) -> Result<(Value, Names), String> {
    let mut attributes = attribute_map(&record.attributes, "attributes")?;
    let resource = attribute_map(context.resource, "resource.attributes")?;
    let mut event = Map::new();
    let mut names: Names = Vec::new();
    let put = |event: &mut Map<String, Value>,
               names: &mut Names,
               ours: &'static str,
               theirs: &str,
               v: Value| {
        event.insert(ours.to_string(), v);
        names.push((ours, theirs.to_string()));
    };

    let nanos = match (record.time_unix_nano, record.observed_time_unix_nano) {
        (0, 0) => None,
        (0, observed) => Some((observed, "observedTimeUnixNano")),
        (time, _) => Some((time, "timeUnixNano")),
    };
    if let Some((nanos, name)) = nanos {
        let time = i64::try_from(nanos)
            .map(DateTime::from_timestamp_nanos)
            .map_err(|_| format!("{name}: {nanos} is after the year 2262"))?;
        put(
            &mut event,
            &mut names,
            "timestamp",
            name,
            json!(time.to_rfc3339()),
        );
    }

    let action = match (record.event_name.trim(), attributes.remove("event.name")) {
        ("", None) => Value::String(DEFAULT_ACTION.to_string()),
        ("", Some(name)) => name,
        (name, _) => Value::String(name.to_string()),
    };
    put(&mut event, &mut names, "action", "eventName", action);

    // Severity: the number's range decides; a record with none falls back on its text, and
    // without either, our own rule (by outcome) applies.
    let level = match record.severity_number {
        1..=8 => Some("debug"),
        9..=12 => Some("info"),
        13..=16 => Some("warning"),
        17..=20 => Some("error"),
        21..=24 => Some("critical"),
        _ => None,
    };
    match (level, record.severity_text.trim()) {
        (Some(level), _) => put(
            &mut event,
            &mut names,
            "level",
            "severityNumber",
            json!(level),
        ),
        (None, "") => {}
        (None, text) => put(
            &mut event,
            &mut names,
            "level",
            "severityText",
            json!(text.to_ascii_lowercase()),
        ),
    }

    match record.body.as_ref().and_then(|b| b.value.as_ref()) {
        None => {}
        Some(any_value::Value::StringValue(text)) => {
            put(&mut event, &mut names, "description", "body", json!(text));
        }
        // A structured body is data, not prose: it joins the metadata whole.
        Some(_) => {
            let body = any_value(record.body.as_ref(), "body")?;
            attributes.insert("body".to_string(), body);
        }
    }

    let mut take = |key: &str| attributes.remove(key).filter(|v| !v.is_null());
    let status = take("http.response.status_code");
    let outcome = take("audit.outcome").or_else(|| take("event.outcome"));
    match (outcome, status.as_ref().and_then(Value::as_u64)) {
        (Some(outcome), _) => put(&mut event, &mut names, "outcome", "audit.outcome", outcome),
        // Without a word on the outcome, an HTTP status says whether the call was allowed.
        (None, Some(401 | 403)) => put(
            &mut event,
            &mut names,
            "outcome",
            "http.response.status_code",
            json!("denied"),
        ),
        (None, Some(code)) if code >= 400 => put(
            &mut event,
            &mut names,
            "outcome",
            "http.response.status_code",
            json!("failure"),
        ),
        (None, _) => {}
    }
    if let Some(category) = take("audit.category") {
        put(
            &mut event,
            &mut names,
            "category",
            "audit.category",
            category,
        );
    }

    let mut user = Map::new();
    match (take("user.id"), take("enduser.id")) {
        (Some(id), _) => {
            user.insert("id".into(), id);
            names.push(("user.id", "user.id".into()));
        }
        (None, Some(id)) => {
            user.insert("id".into(), id);
            names.push(("user.id", "enduser.id".into()));
        }
        (None, None) => {}
    }
    if let Some(name) = take("user.name") {
        user.insert("username".into(), name);
        names.push(("user.username", "user.name".into()));
    }
    if !user.is_empty() {
        event.insert("user".into(), Value::Object(user));
    }

    let mut request = Map::new();
    for (theirs, ours, field) in [
        ("http.request.method", "method", "request.method"),
        ("url.path", "path", "request.path"),
        ("client.address", "ip", "request.ip"),
        ("user_agent.original", "userAgent", "request.userAgent"),
    ] {
        if let Some(v) = take(theirs) {
            request.insert(ours.into(), v);
            names.push((field, theirs.into()));
        }
    }
    if let Some(status) = status {
        request.insert("statusCode".into(), status);
        names.push(("request.statusCode", "http.response.status_code".into()));
    }
    if !request.is_empty() {
        event.insert("request".into(), Value::Object(request));
    }

    let mut entity = Map::new();
    for (theirs, ours, field) in [
        ("audit.entity.type", "type", "entity.type"),
        ("audit.entity.id", "id", "entity.id"),
        ("audit.entity.name", "name", "entity.name"),
    ] {
        if let Some(v) = take(theirs) {
            entity.insert(ours.into(), v);
            names.push((field, theirs.into()));
        }
    }
    if !entity.is_empty() {
        event.insert("entity".into(), Value::Object(entity));
    }
    if let Some(session) = take("session.id") {
        put(&mut event, &mut names, "sessionId", "session.id", session);
    }

    if !record.trace_id.is_empty() {
        put(
            &mut event,
            &mut names,
            "correlationId",
            "traceId",
            json!(hex::encode(&record.trace_id)),
        );
    }
    if !record.span_id.is_empty() {
        attributes.insert("otel.span_id".into(), json!(hex::encode(&record.span_id)));
    }

    let mut resource = resource;
    let mut system = Map::new();
    for (theirs, ours) in [
        ("service.name", "service"),
        ("host.name", "server"),
        ("service.version", "version"),
        // The current name, and the one older SDKs still send.
        ("deployment.environment.name", "environment"),
        ("deployment.environment", "environment"),
    ] {
        if let Some(v) = resource.remove(theirs).filter(|v| !v.is_null()) {
            system.entry(ours).or_insert(v);
        }
    }
    if !system.is_empty() {
        event.insert("system".into(), Value::Object(system));
    }

    if !context.scope_name.is_empty() {
        attributes.insert("otel.scope.name".into(), json!(context.scope_name));
    }
    if !context.scope_version.is_empty() {
        attributes.insert("otel.scope.version".into(), json!(context.scope_version));
    }
    if !resource.is_empty() {
        attributes.insert("otel.resource".into(), Value::Object(resource));
    }
    if record.dropped_attributes_count > 0 {
        attributes.insert(
            "otel.dropped_attributes_count".into(),
            json!(record.dropped_attributes_count),
        );
    }
    if !attributes.is_empty() {
        event.insert("metadata".into(), Value::Object(attributes));
    }
    Ok((Value::Object(event), names))
}

/// Attributes as a JSON object. OTLP requires unique keys; a repeated one is refused, as a
/// repeated JSON name is, because which of the two was meant cannot be known.
fn attribute_map(attributes: &[KeyValue], what: &str) -> Result<Map<String, Value>, String> {
    let mut map = Map::new();
    for kv in attributes {
        let value = any_value(kv.value.as_ref(), &format!("{what}[{:?}]", kv.key))?;
        if map.insert(kv.key.clone(), value).is_some() {
            return Err(format!("{what}: the key {:?} appears twice", kv.key));
        }
    }
    Ok(map)
}

/// An `AnyValue` as JSON: bytes as hex, a double that JSON cannot hold as its text.
fn any_value(value: Option<&AnyValue>, what: &str) -> Result<Value, String> {
    use any_value::Value as V;
    Ok(match value.and_then(|v| v.value.as_ref()) {
        None => Value::Null,
        Some(V::StringValue(s)) => json!(s),
        Some(V::BoolValue(b)) => json!(b),
        Some(V::IntValue(i)) => json!(i),
        Some(V::DoubleValue(d)) => {
            serde_json::Number::from_f64(*d).map_or_else(|| json!(d.to_string()), Value::Number)
        }
        Some(V::BytesValue(b)) => json!(hex::encode(b)),
        Some(V::ArrayValue(a)) => Value::Array(
            a.values
                .iter()
                .enumerate()
                .map(|(i, v)| any_value(Some(v), &format!("{what}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Some(V::KvlistValue(list)) => Value::Object(attribute_map(&list.values, what)?),
        // An index into a profile's string table: logs have no such table to look it up in.
        Some(V::StringValueStrindex(_)) => {
            return Err(format!(
                "{what}: a string-table index has no meaning in logs"
            ))
        }
    })
}

/// A refused record's errors in the sender's terms: each field under the OTLP name it came
/// from (`http.response.status_code`, not `request.statusCode`).
fn explain(errors: &[FieldError], names: &Names) -> String {
    errors
        .iter()
        .map(|e| {
            let field = names
                .iter()
                .find(|(ours, _)| *ours == e.field)
                .map_or(e.field.as_str(), |(_, theirs)| theirs.as_str());
            match field {
                "" => e.message.clone(),
                field => format!("{field}: {}", e.message),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The answer to an export: empty when every record was taken, else the partial success.
pub fn response(encoding: Encoding, partial_success: Option<ExportLogsPartialSuccess>) -> Vec<u8> {
    let response = ExportLogsServiceResponse { partial_success };
    match (encoding, &response.partial_success) {
        (Encoding::Protobuf, _) => response.encode_to_vec(),
        // Protobuf's JSON mapping leaves an unset message out rather than writing null.
        (Encoding::Json, None) => b"{}".to_vec(),
        (Encoding::Json, Some(_)) => {
            serde_json::to_vec(&response).unwrap_or_else(|_| b"{}".to_vec())
        }
    }
}

/// `google.rpc.Status`, the body OTLP/HTTP gives a refused request. Only its code and message:
/// `details` would need `Any`, and nothing of ours goes there.
#[derive(Clone, PartialEq, Message)]
struct Status {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// gRPC's `INVALID_ARGUMENT`, the code of a request that cannot be read.
pub const INVALID_ARGUMENT: i32 = 3;

/// The body of a refused request, in the request's encoding (JSON when it could not be told).
pub fn status(encoding: Encoding, code: i32, message: &str) -> Vec<u8> {
    match encoding {
        Encoding::Protobuf => Status {
            code,
            message: message.to_string(),
        }
        .encode_to_vec(),
        Encoding::Json => json!({"code": code, "message": message})
            .to_string()
            .into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Level, Outcome};
    use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
    use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;

    fn kv(key: &str, value: any_value::Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    fn s(v: &str) -> any_value::Value {
        any_value::Value::StringValue(v.into())
    }

    fn request(records: Vec<LogRecord>) -> ExportLogsServiceRequest {
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![
                        kv("service.name", s("billing")),
                        kv("host.name", s("app-1")),
                        kv("service.version", s("2.4.1")),
                        kv("deployment.environment.name", s("production")),
                        kv("telemetry.sdk.language", s("python")),
                    ],
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: "billing.audit".into(),
                        version: "1.0".into(),
                        ..Default::default()
                    }),
                    log_records: records,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    fn now() -> DateTime<chrono::Utc> {
        DateTime::from_timestamp_millis(1_780_000_000_000).unwrap()
    }

    fn login() -> LogRecord {
        LogRecord {
            time_unix_nano: 1_779_999_000_123_456_789,
            severity_number: 13,
            event_name: "auth.login".into(),
            body: Some(AnyValue {
                value: Some(s("password refused")),
            }),
            attributes: vec![
                kv("user.id", s("u-42")),
                kv("user.name", s("alice")),
                kv("client.address", s("10.1.2.3")),
                kv("user_agent.original", s("curl/8")),
                kv("http.request.method", s("post")),
                kv("url.path", s("/login")),
                kv("http.response.status_code", any_value::Value::IntValue(401)),
                kv("tenant", s("acme")),
            ],
            trace_id: vec![0xab; 16],
            span_id: vec![0xcd; 8],
            ..Default::default()
        }
    }

    #[test]
    fn a_record_maps_onto_every_documented_field() {
        let mapped = map_request(&request(vec![login()]), now());
        assert_eq!(mapped.rejected, 0, "{:?}", mapped.reasons);
        let e = &mapped.events[0];
        assert_eq!(e.action, "auth.login");
        assert_eq!(e.level, Level::Warning);
        assert_eq!(
            e.outcome,
            Outcome::Denied,
            "401 without an outcome is a refusal"
        );
        assert_eq!(e.timestamp.timestamp_millis(), 1_779_999_000_123);
        assert_eq!(e.description.as_deref(), Some("password refused"));
        assert_eq!(e.user.id, "u-42");
        assert_eq!(e.user.username.as_deref(), Some("alice"));
        let r = e.request.as_ref().unwrap();
        assert_eq!(r.method.as_deref(), Some("POST"));
        assert_eq!(r.path.as_deref(), Some("/login"));
        assert_eq!(r.ip.as_deref(), Some("10.1.2.3"));
        assert_eq!(r.user_agent.as_deref(), Some("curl/8"));
        assert_eq!(r.status_code, Some(401));
        assert_eq!(e.correlation_id.as_deref(), Some(&*"ab".repeat(16)));
        let system = e.system.as_ref().unwrap();
        assert_eq!(system.service.as_deref(), Some("billing"));
        assert_eq!(system.server.as_deref(), Some("app-1"));
        assert_eq!(system.version.as_deref(), Some("2.4.1"));
        assert_eq!(system.environment.as_deref(), Some("production"));
        let m = e.metadata.as_ref().unwrap();
        assert_eq!(m["tenant"], "acme");
        assert_eq!(m["otel.span_id"], "cd".repeat(8));
        assert_eq!(m["otel.scope.name"], "billing.audit");
        assert_eq!(m["otel.resource"]["telemetry.sdk.language"], "python");
        assert!(
            !m.contains_key("user.id"),
            "mapped attributes leave metadata"
        );
        assert_eq!(e.source.0, SOURCE);
    }

    #[test]
    fn bad_records_are_refused_alone_and_named_in_the_senders_terms() {
        let mut far = login();
        far.time_unix_nano = 4_102_444_800_000_000_000; // 2100-01-01
        let mut bad_status = login();
        bad_status
            .attributes
            .retain(|kv| kv.key != "http.response.status_code");
        bad_status.attributes.push(kv(
            "http.response.status_code",
            any_value::Value::IntValue(42),
        ));
        let mut twice = login();
        twice.attributes.push(kv("tenant", s("other")));
        let plain = LogRecord {
            body: Some(AnyValue {
                value: Some(s("cache warmed")),
            }),
            ..Default::default()
        };
        let mapped = map_request(
            &request(vec![far, login(), bad_status, twice, plain]),
            now(),
        );
        assert_eq!(mapped.events.len(), 2);
        assert_eq!(mapped.rejected, 3);
        let message = mapped.partial_success().unwrap().error_message;
        assert!(
            message.contains("logRecords[0]: timeUnixNano:"),
            "{message}"
        );
        assert!(
            message.contains("logRecords[2]: http.response.status_code:"),
            "{message}"
        );
        assert!(message.contains("\"tenant\" appears twice"), "{message}");
        let plain = &mapped.events[1];
        assert_eq!(plain.action, DEFAULT_ACTION);
        assert_eq!(plain.timestamp, now(), "no time at all: the server's");
        assert_eq!(plain.level, Level::Info);
    }

    #[test]
    fn json_and_protobuf_carry_the_same_request() {
        let req = request(vec![login()]);
        let proto = decode(&req.encode_to_vec(), Encoding::Protobuf).unwrap();
        let json = decode(&serde_json::to_vec(&req).unwrap(), Encoding::Json).unwrap();
        assert_eq!(proto, req);
        assert_eq!(json, req);
        let text = String::from_utf8(serde_json::to_vec(&req).unwrap()).unwrap();
        assert!(text.contains(&"ab".repeat(16)), "trace ids are hex in JSON");
        let dup = br#"{"resourceLogs": [], "resourceLogs": []}"#;
        let err = decode(dup, Encoding::Json).unwrap_err();
        assert!(err.contains("resourceLogs"), "{err}");
        assert!(decode(b"\xff\xff", Encoding::Protobuf).is_err());
        let typo =
            br#"{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"severityNumber": "loud"}]}]}]}"#;
        let err = decode(typo, Encoding::Json).unwrap_err();
        assert!(
            err.contains("resourceLogs[0].scopeLogs[0].logRecords[0].severityNumber"),
            "{err}"
        );
    }
}
