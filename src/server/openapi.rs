//! The OpenAPI 3.1 document of the REST API, served at `GET /api/openapi.json` and digested
//! for the dashboard's `/api-docs` page.
//!
//! It is made from the route definitions themselves: every REST handler carries its
//! `#[utoipa::path]` (parameters, bodies, answers, examples) and is mounted with
//! `utoipa_axum::routes!`, which registers the handler and its description together, so a
//! route cannot be served without being described. What every route shares is added here from
//! the code that enforces it: the permission each operation needs and who holds it (from
//! [`super::needed_permission`] and [`Grant::allows`]), the credentials it takes, and the
//! refusals the middleware may give before any handler runs.

use super::{classify, needed_permission, Access};
use crate::model::{
    ApiAnswer, ApiBody, ApiGroup, ApiOperation, ApiParam, ApiReference, Grant, Permission, Role,
    TokenScope,
};
use axum::http::{header, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{json, Value};
use std::sync::LazyLock;
use utoipa::{OpenApi, ToSchema};

/// The document's frame: what the API is, its groups, and the shared schemas; the operations
/// join it from the router (see [`super::documented_routes`]).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Trailwatch",
        description = "The REST API of Trailwatch, a self-hosted audit-trail server: send audit \
            events, search and export them, read the analytics and alerts, check the hash \
            chain, and manage users and tokens. Every route but the health check and this \
            document needs a credential: an API token or the admin token as \
            `Authorization: Bearer <token>`, or a dashboard session cookie. Each operation \
            names the permission it needs (`x-permission`) and which roles and token scopes \
            hold it. Errors are JSON with a stable `error` code and a `message` that says what \
            to fix; a bad parameter is named in `field`.",
        license(name = "MIT OR Apache-2.0"),
    ),
    tags(
        (name = "ingest", description = "Sending events: our JSON, OpenTelemetry logs and Kubernetes audit. An event is acknowledged only once it is on disk, sealed in the hash chain."),
        (name = "events", description = "Reading events: the filtered, paged list, one event, the distinct values and the streamed export."),
        (name = "analytics", description = "The health score, statistics, trends and anomalies over a time range."),
        (name = "alerts", description = "Alerts raised by the rules, their acknowledgement and their webhook deliveries."),
        (name = "integrity", description = "The SHA-256 hash chain and its signed checkpoints."),
        (name = "lifecycle", description = "Retention, and a data subject's export and erasure (GDPR)."),
        (name = "live", description = "The live feed over a WebSocket, with resume from a seq."),
        (name = "access", description = "API tokens and dashboard users."),
        (name = "meta", description = "The server's health and this document."),
    ),
    components(schemas(ErrorBody, ErrorCode, EventInput))
)]
pub(super) struct ApiDoc;

/// An event as senders write it: only `action` is required; the server fills the rest in
/// (`timestamp` now, level `info`, outcome `success`, the system actor), and the
/// predecessors' names are taken too. Unknown fields are refused, naming them.
// Read by `ingest::normalize`, which checks each field and names the one at fault; this type
// only describes it, and a test holds its fields to `ingest::KNOWN_FIELDS`.
#[derive(serde::Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
pub struct EventInput {
    /// When it happened: RFC 3339 or epoch milliseconds; default now. Not before 1970 or more
    /// than 24 hours ahead of the server's clock (configurable).
    timestamp: Option<String>,
    level: Option<crate::model::Level>,
    /// `level`, as the predecessor named it.
    severity: Option<crate::model::Level>,
    category: Option<crate::model::Category>,
    /// What was done, as `noun.verb`: `user.login`, `invoice.update`.
    action: String,
    outcome: Option<crate::model::Outcome>,
    /// The predecessor's outcome: `false` is `denied`.
    allowed: Option<bool>,
    user: Option<crate::model::Actor>,
    /// `user.id`, as the predecessor named it.
    user_id: Option<String>,
    /// `user.username`, as the predecessor named it.
    username: Option<String>,
    entity: Option<crate::model::Entity>,
    /// `entity.type`, as the predecessor named it.
    entity_type: Option<String>,
    /// `entity.id`, as the predecessor named it.
    entity_id: Option<String>,
    /// `entity.name`, as the predecessor named it.
    resource_name: Option<String>,
    request: Option<crate::model::RequestInfo>,
    location: Option<crate::model::Location>,
    description: Option<String>,
    /// Anything else worth keeping, as a JSON object.
    #[schema(value_type = Option<Object>)]
    metadata: Option<serde_json::Value>,
    /// `metadata`, as the predecessor named it.
    #[schema(value_type = Option<Object>)]
    details: Option<serde_json::Value>,
    /// Fields that changed, each with `before` and `after`.
    changes: Option<std::collections::BTreeMap<String, crate::model::Change>>,
    /// 0 to 100; without one, the server scores the event and says why.
    #[schema(minimum = 0, maximum = 100)]
    risk_score: Option<u8>,
    correlation_id: Option<String>,
    session_id: Option<String>,
    system: Option<crate::model::SystemInfo>,
}

/// What `POST /api/v1/events` takes as JSON: one event or an array of them.
#[derive(serde::Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum EventsInput {
    One(Box<EventInput>),
    Many(Vec<EventInput>),
}

/// Every error answer's body (the ingest route's field errors have their own,
/// `IngestErrors`).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"error": "invalid_parameter", "field": "level",
    "message": "\"fatal\" is not one of: debug, info, warning, error, critical"}))]
pub struct ErrorBody {
    pub error: ErrorCode,
    /// What went wrong and what to do about it, for people.
    pub message: String,
    /// The parameter or part of the request at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// With `forbidden`: the permission the request needs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub needed: Option<Permission>,
    /// With `forbidden`: the caller's role or scope, as `role viewer` or `scope read`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub have: Option<String>,
    /// With `rate_limited`: when to try again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// With `indexing`: the newest seq the search index covers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub indexed_through: Option<u64>,
    /// With `indexing`: the newest seq stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head_seq: Option<u64>,
}

/// The stable error codes.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidParameter,
    Unauthorized,
    Forbidden,
    CrossOrigin,
    NotFound,
    TooLarge,
    PayloadTooLarge,
    UnsupportedMediaType,
    RateLimited,
    TooManyConnections,
    BodyTimeout,
    StorageFull,
    Unavailable,
    Indexing,
    Internal,
}

/// An event as the API answers it, for the examples of the routes that return events.
pub(super) fn stored_event_example() -> Value {
    json!({
        "seq": 4182,
        "eventId": "019bc1d2-7e40-7a3c-9f1e-5b2a8c0d4e61",
        "receivedAt": "2026-01-15T09:30:00.012Z",
        "hash": "3b6f0c9a51d2e8f47a1c0b9d6e3f2a8c5d7e1b4f9a0c3d6e8b2f5a1c7d9e0b3a",
        "timestamp": "2026-01-15T09:30:00.000Z",
        "level": "warning",
        "category": "authentication",
        "action": "user.login",
        "outcome": "failure",
        "user": {"id": "u-1042", "username": "alice"},
        "request": {"ip": "203.0.113.7", "method": "POST", "path": "/login", "statusCode": 401},
        "description": "wrong password",
        "riskScore": 45,
        "riskReasons": [
            {"rule": "outcome", "points": 25, "detail": "failure"},
            {"rule": "category", "points": 20, "detail": "authentication"}
        ],
        "source": "http",
        "submittedBy": "token:billing-app"
    })
}

/// A page of events, for the list's example.
pub(super) fn event_page_example() -> Value {
    json!({
        "items": [stored_event_example()],
        "total": 1,
        "totalIsLowerBound": false,
        "page": 1,
        "limit": 50,
        "nextCursor": null,
        "headSeq": 4183
    })
}

/// The finished document, made once.
static DOCUMENT: LazyLock<Value> = LazyLock::new(|| {
    let (_, api) = super::documented_routes().split_for_parts();
    // The derive writes a document the way serde does; it cannot fail to become JSON.
    let value = serde_json::to_value(api).unwrap_or_else(|_| json!({}));
    finish(value)
});

/// The OpenAPI document, as served.
pub fn document() -> &'static Value {
    &DOCUMENT
}

/// The document as served, pretty-printed: read by people as often as by generators.
static BODY: LazyLock<String> =
    LazyLock::new(|| serde_json::to_string_pretty(document()).unwrap_or_default());

/// Serves the OpenAPI document of this API
///
/// The OpenAPI 3.1 document of every REST route, made from the route definitions: feed it to
/// a client generator, or read it on the dashboard's API page. Needs no credential.
#[utoipa::path(get, path = "/api/openapi.json", tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 document.",
        content_type = "application/json", body = Object)))]
pub(super) async fn openapi_json() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        BODY.as_str(),
    )
        .into_response()
}

/// The roles and token scopes that hold `needed`, as refusals name them.
fn holders(needed: Permission) -> Vec<String> {
    let roles = Role::ALL.map(Grant::Role);
    let scopes = TokenScope::ALL.map(Grant::Token);
    roles
        .into_iter()
        .chain(scopes)
        .filter(|g| g.allows(needed))
        .map(Grant::describe)
        .collect()
}

/// The refusals the middleware gives before a protected route's handler runs, by status.
const GUARDS: [(&str, &str); 2] = [
    ("401", "No credential, or one that is unknown, expired or revoked (`unauthorized`)."),
    ("403", "The credential's role or scope lacks the permission (`forbidden`, naming `needed` and `have`), or a cookie-borne change came from another origin (`cross_origin`)."),
];

/// Adds what every operation shares, from the code that enforces it: credentials, the
/// permission and its holders, and the middleware's refusals.
fn finish(mut doc: Value) -> Value {
    doc["components"]["securitySchemes"] = json!({
        "bearer": {
            "type": "http", "scheme": "bearer",
            "description": "An API token (`trailwatch token create`, or the Tokens page) or the admin token."
        },
        "session": {
            "type": "apiKey", "in": "cookie", "name": crate::auth::SESSION_COOKIE,
            "description": "A dashboard session, from signing in; changes must come from the server's own origin."
        }
    });
    let error = json!({"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}});
    let Some(paths) = doc["paths"].as_object_mut() else {
        return doc;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, op) in item.iter_mut() {
            let Ok(m) = method.to_uppercase().parse::<Method>() else {
                continue;
            };
            let Some(op) = op.as_object_mut() else {
                continue;
            };
            // OpenAPI requires a description on every answer; where a handler gives none,
            // the status's own name serves.
            let answers = op.get_mut("responses").and_then(Value::as_object_mut);
            for (status, answer) in answers.into_iter().flatten() {
                let missing = answer["description"].as_str().is_none_or(str::is_empty);
                if missing {
                    let reason = status
                        .parse::<axum::http::StatusCode>()
                        .ok()
                        .and_then(|s| s.canonical_reason())
                        .unwrap_or("Answer");
                    answer["description"] = json!(reason);
                }
            }
            // Client generators name their methods after these: `listEvents`, not `list_events`.
            if let Some(id) = op.get("operationId").and_then(Value::as_str) {
                let camel = camel_case(id);
                op.insert("operationId".into(), json!(camel));
            }
            if classify(&m, path) == Access::Public {
                op.insert("security".into(), json!([]));
                continue;
            }
            let needed = needed_permission(&m, path);
            op.insert("security".into(), json!([{"bearer": []}, {"session": []}]));
            op.insert("x-permission".into(), json!(needed));
            let who = holders(needed).join(", ");
            let note = format!("**Needs:** the `{}` permission ({who}).", needed.as_str());
            let description = match op.get("description").and_then(Value::as_str) {
                Some(d) if !d.is_empty() => format!("{d}\n\n{note}"),
                _ => note,
            };
            op.insert("description".into(), json!(description));
            let responses = op
                .entry("responses")
                .or_insert_with(|| json!({}))
                .as_object_mut();
            if let Some(responses) = responses {
                for (status, text) in GUARDS {
                    responses
                        .entry(status)
                        .or_insert_with(|| json!({"description": text, "content": error}));
                }
            }
        }
    }
    doc
}

/// `list_events` as `listEvents`.
fn camel_case(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for c in snake.chars() {
        match (c, upper) {
            ('_', _) => upper = true,
            (c, true) => {
                out.extend(c.to_uppercase());
                upper = false;
            }
            (c, false) => out.push(c),
        }
    }
    out
}

/// The document, digested for the `/api-docs` page (made once, like the document).
pub fn reference() -> ApiReference {
    static REFERENCE: LazyLock<ApiReference> = LazyLock::new(digest);
    REFERENCE.clone()
}

fn digest() -> ApiReference {
    let doc = document();
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let mut groups: Vec<ApiGroup> = doc["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| ApiGroup {
            name: text(&t["name"]),
            description: text(&t["description"]),
            operations: Vec::new(),
        })
        .collect();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for (method, op) in item.as_object().into_iter().flatten() {
            let tag = op["tags"][0].as_str().unwrap_or("meta");
            let operation = operation(doc, path, method, op);
            match groups.iter_mut().find(|g| g.name == tag) {
                Some(g) => g.operations.push(operation),
                None => groups.push(ApiGroup {
                    name: tag.to_string(),
                    description: String::new(),
                    operations: vec![operation],
                }),
            }
        }
    }
    groups.retain(|g| !g.operations.is_empty());
    ApiReference {
        version: text(&doc["info"]["version"]),
        groups,
    }
}

fn operation(doc: &Value, path: &str, method: &str, op: &Value) -> ApiOperation {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let permission = serde_json::from_value::<Permission>(op["x-permission"].clone()).ok();
    let params = op["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| ApiParam {
            name: text(&p["name"]),
            location: text(&p["in"]),
            required: p["required"].as_bool().unwrap_or(false),
            kind: kind(doc, &p["schema"]),
            description: text(&p["description"]),
        })
        .collect();
    let request = bodies(&op["requestBody"]["content"]);
    let responses = op["responses"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(status, r)| ApiAnswer {
            status: status.clone(),
            description: text(&r["description"]),
            bodies: bodies(&r["content"]),
        })
        .collect();
    ApiOperation {
        method: method.to_uppercase(),
        path: path.to_string(),
        summary: text(&op["summary"]),
        description: text(&op["description"]),
        granted_to: permission.map(holders).unwrap_or_default(),
        permission,
        params,
        request,
        responses,
    }
}

/// Each content type of a body, with its schema's name and its example.
fn bodies(content: &Value) -> Vec<ApiBody> {
    content
        .as_object()
        .into_iter()
        .flatten()
        .map(|(content_type, media)| {
            let example = media.get("example").or_else(|| {
                media["examples"]
                    .as_object()
                    .and_then(|e| e.values().next())
                    .map(|e| &e["value"])
            });
            let example = example.map(|e| match e {
                Value::String(s) => s.clone(),
                other => serde_json::to_string_pretty(other).unwrap_or_default(),
            });
            let schema = media["schema"]["$ref"]
                .as_str()
                .or_else(|| media["schema"]["items"]["$ref"].as_str())
                .and_then(|r| r.rsplit('/').next())
                .map(str::to_string);
            ApiBody {
                content_type: content_type.clone(),
                schema,
                example,
            }
        })
        .collect()
}

/// A parameter's type in a few words.
fn kind(doc: &Value, schema: &Value) -> String {
    let schema = match schema["$ref"].as_str() {
        Some(r) => r
            .strip_prefix("#/components/schemas/")
            .map_or(&Value::Null, |name| &doc["components"]["schemas"][name]),
        None => schema,
    };
    if let Some(values) = schema["enum"].as_array() {
        let names: Vec<&str> = values.iter().filter_map(Value::as_str).collect();
        return format!("one of: {}", names.join(", "));
    }
    if let Some(items) = schema.get("items") {
        return format!("list of {}", kind(doc, items));
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let mut kind = types
        .into_iter()
        .filter(|t| *t != "null")
        .collect::<Vec<_>>()
        .join(" or ");
    if kind.is_empty() {
        kind = "value".into();
    }
    if let Some(format) = schema["format"].as_str() {
        kind = format!("{kind} ({format})");
    }
    kind
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_ids_are_camel_case() {
        assert_eq!(camel_case("list_events"), "listEvents");
        assert_eq!(camel_case("health"), "health");
    }

    /// The documented input fields are the ones ingest takes.
    #[test]
    fn event_input_lists_what_ingest_accepts() {
        let schema = serde_json::to_value(<EventInput as utoipa::PartialSchema>::schema()).unwrap();
        let mut documented: Vec<&str> = schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut known = crate::ingest::KNOWN_FIELDS.to_vec();
        documented.sort_unstable();
        known.sort_unstable();
        assert_eq!(documented, known);
        assert_eq!(schema["additionalProperties"], false);
        assert_eq!(schema["required"], serde_json::json!(["action"]));
    }

    #[test]
    fn holders_follow_the_grants() {
        assert_eq!(
            holders(Permission::Ingest),
            ["role admin", "scope ingest", "scope admin"]
        );
        assert!(holders(Permission::Export).contains(&"role self".to_string()));
        assert!(!holders(Permission::Admin).contains(&"scope read".to_string()));
    }
}
