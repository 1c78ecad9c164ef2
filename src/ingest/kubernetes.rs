//! Kubernetes audit events (`audit.k8s.io/v1`), as the API server's webhook backend posts them
//! (`--audit-webhook-config-file`): an `EventList` per batch. The mapping onto our event is
//! written out in the README ("From Kubernetes").
//!
//! Each item is validated as an HTTP event is, through [`super::normalize`]. An item that
//! cannot be mapped is not dropped and does not refuse its batch (the API server gives up on a
//! batch after a few tries, losing the good items with the bad): it is stored as a
//! `log.unparsed` event that keeps the item and the reason, as a tailed line that cannot be
//! read is.

use super::{clip, normalize, parse_json, Clock, MAX_SHORT_LEN};
use crate::model::{AuditEvent, Source};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// The source every Kubernetes event carries.
pub const SOURCE: &str = "kubernetes";

/// The most bytes of an unmappable item kept in its `log.unparsed` event.
const RAW_KEPT: usize = 64 * 1024;

/// A batch as the webhook posts it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventList {
    kind: String,
    api_version: String,
    #[serde(default)]
    items: Vec<Value>,
}

/// The fields of an `audit.k8s.io/v1` `Event` that the mapping reads; the rest of the item is
/// kept in metadata as sent.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Item {
    #[serde(rename = "auditID")]
    audit_id: String,
    stage: String,
    level: Option<String>,
    verb: String,
    #[serde(rename = "requestURI")]
    request_uri: Option<String>,
    user: UserInfo,
    impersonated_user: Option<UserInfo>,
    #[serde(default, rename = "sourceIPs")]
    source_ips: Vec<String>,
    user_agent: Option<String>,
    object_ref: Option<ObjectRef>,
    response_status: Option<Status>,
    request_received_timestamp: Option<String>,
    stage_timestamp: Option<String>,
    #[serde(default)]
    annotations: Map<String, Value>,
}

#[derive(Debug, Deserialize)]
struct UserInfo {
    username: Option<String>,
    uid: Option<String>,
    #[serde(default)]
    groups: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ObjectRef {
    resource: Option<String>,
    namespace: Option<String>,
    name: Option<String>,
    api_group: Option<String>,
    api_version: Option<String>,
    subresource: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Status {
    code: Option<u16>,
    status: Option<String>,
    reason: Option<String>,
    message: Option<String>,
}

/// The events of one webhook batch, one per item, in order.
///
/// # Errors
/// A body that is not JSON (I-JSON: no repeated names) or not an `audit.k8s.io/v1`
/// `EventList`, or one that holds no item.
pub fn parse_batch(body: &[u8], clock: impl Into<Clock>) -> Result<Vec<AuditEvent>, String> {
    let clock = clock.into();
    let value = parse_json(body).map_err(|e| format!("body is not valid JSON: {e}"))?;
    let list: EventList = serde_json::from_value(value)
        .map_err(|e| format!("body is not an audit.k8s.io EventList: {e}"))?;
    if list.kind != "EventList" || !list.api_version.starts_with("audit.k8s.io/") {
        return Err(format!(
            "body is a {} of {}, not an EventList of audit.k8s.io/v1",
            list.kind, list.api_version
        ));
    }
    if list.items.is_empty() {
        return Err("the EventList holds no items".into());
    }
    let source = Source(SOURCE.to_string());
    Ok(list
        .items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            map_item(item)
                .and_then(|shape| {
                    normalize(&shape, &source, clock).map_err(|errors| {
                        errors
                            .iter()
                            .map(|e| format!("{}: {}", e.field, e.message))
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                })
                .unwrap_or_else(|reason| unparsed(i, item, &reason, &source, clock.now))
        })
        .collect())
}

/// The item in our event shape.
fn map_item(raw: &Value) -> Result<Value, String> {
    let item: Item = serde_path_to_error::deserialize(raw.clone())
        .map_err(|e| format!("{}: {}", e.path(), e.inner()))?;
    let object = item.object_ref.as_ref();
    let resource = object.and_then(|o| o.resource.as_deref()).unwrap_or("");
    let subresource = object.and_then(|o| o.subresource.as_deref()).unwrap_or("");
    let group = object.and_then(|o| o.api_group.as_deref()).unwrap_or("");
    let namespace = object.and_then(|o| o.namespace.as_deref()).unwrap_or("");
    let name = object.and_then(|o| o.name.as_deref()).unwrap_or("");

    // `k8s.<resource>[.<subresource>].<verb>`; a non-resource URL (`/healthz`) has no object.
    let action = match (resource, subresource) {
        ("", _) => format!("k8s.{}", item.verb),
        (r, "") => format!("k8s.{r}.{}", item.verb),
        (r, s) => format!("k8s.{r}.{s}.{}", item.verb),
    };
    let code = item.response_status.as_ref().and_then(|s| s.code);
    let outcome = match code {
        Some(401 | 403) => "denied",
        Some(c) if c >= 400 => "failure",
        _ => "success",
    };
    let username = item.user.username.as_deref().unwrap_or("system:anonymous");

    let mut event = Map::new();
    let time = item
        .request_received_timestamp
        .as_deref()
        .or(item.stage_timestamp.as_deref());
    if let Some(time) = time {
        event.insert("timestamp".into(), json!(time));
    }
    event.insert("action".into(), json!(action));
    event.insert("outcome".into(), json!(outcome));
    event.insert(
        "category".into(),
        json!(category(resource, subresource, &item.verb)),
    );
    event.insert("user".into(), json!({"id": username, "username": username}));
    if !resource.is_empty() {
        let kind = match group {
            "" => resource.to_string(),
            g => format!("{resource}.{g}"),
        };
        let id = match (namespace, name) {
            ("", "") => String::new(),
            ("", n) => n.to_string(),
            (ns, "") => ns.to_string(),
            (ns, n) => format!("{ns}/{n}"),
        };
        let mut entity = Map::new();
        entity.insert("type".into(), json!(kind));
        if !id.is_empty() {
            entity.insert("id".into(), json!(id));
        }
        if !name.is_empty() {
            entity.insert("name".into(), json!(name));
        }
        event.insert("entity".into(), Value::Object(entity));
    }

    let mut request = Map::new();
    request.insert("method".into(), json!(http_method(&item.verb)));
    if let Some(uri) = item.request_uri.as_deref() {
        request.insert("path".into(), json!(clip(uri, MAX_SHORT_LEN)));
    }
    if let Some(ip) = item.source_ips.first() {
        request.insert("ip".into(), json!(ip));
    }
    if let Some(agent) = item.user_agent.as_deref() {
        request.insert("userAgent".into(), json!(clip(agent, MAX_SHORT_LEN)));
    }
    if let Some(code) = code.filter(|c| (100..=599).contains(c)) {
        request.insert("statusCode".into(), json!(code));
    }
    event.insert("request".into(), Value::Object(request));

    let target = match (resource, namespace, name) {
        ("", _, _) => item.request_uri.clone().unwrap_or_default(),
        (r, "", "") => r.to_string(),
        (r, "", n) => format!("{r}/{n}"),
        (r, ns, "") => format!("{r} in {ns}"),
        (r, ns, n) => format!("{r}/{n} in {ns}"),
    };
    let mut description = format!("{username} {} {target}", item.verb);
    if let Some(status) = &item.response_status {
        let said = [status.reason.as_deref(), status.message.as_deref()]
            .into_iter()
            .flatten()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(": ");
        match (code, said.is_empty()) {
            (Some(c), true) => description.push_str(&format!(" → {c}")),
            (Some(c), false) => description.push_str(&format!(" → {c} {said}")),
            (None, false) => description.push_str(&format!(" → {said}")),
            (None, true) => {}
        }
    }
    event.insert("description".into(), json!(description));
    event.insert("correlationId".into(), json!(item.audit_id));

    let mut metadata = Map::new();
    metadata.insert("k8s.auditID".into(), json!(item.audit_id));
    metadata.insert("k8s.stage".into(), json!(item.stage));
    if let Some(level) = &item.level {
        metadata.insert("k8s.level".into(), json!(level));
    }
    if let Some(uid) = &item.user.uid {
        metadata.insert("k8s.user.uid".into(), json!(uid));
    }
    if !item.user.groups.is_empty() {
        metadata.insert("k8s.user.groups".into(), json!(item.user.groups));
    }
    if let Some(imp) = &item.impersonated_user {
        metadata.insert(
            "k8s.impersonatedUser".into(),
            json!({"username": imp.username, "groups": imp.groups}),
        );
    }
    if item.source_ips.len() > 1 {
        metadata.insert("k8s.sourceIPs".into(), json!(item.source_ips));
    }
    if let Some(version) = object.and_then(|o| o.api_version.as_deref()) {
        metadata.insert("k8s.apiVersion".into(), json!(version));
    }
    if let Some(status) = item
        .response_status
        .as_ref()
        .and_then(|s| s.status.as_deref())
    {
        metadata.insert("k8s.responseStatus".into(), json!(status));
    }
    if !item.annotations.is_empty() {
        metadata.insert(
            "k8s.annotations".into(),
            Value::Object(item.annotations.clone()),
        );
    }
    // At levels Request and RequestResponse the API server sends the bodies: what was
    // changed is the heart of an audit record.
    for key in ["requestObject", "responseObject"] {
        if let Some(body) = raw.get(key).filter(|v| !v.is_null()) {
            metadata.insert(format!("k8s.{key}"), body.clone());
        }
    }
    event.insert("metadata".into(), Value::Object(metadata));
    Ok(Value::Object(event))
}

/// The category of a request: access control, credentials, secrets and shells apart from the
/// rest; reads are API traffic and writes change the system.
fn category(resource: &str, subresource: &str, verb: &str) -> &'static str {
    match (resource, subresource) {
        (
            "roles"
            | "rolebindings"
            | "clusterroles"
            | "clusterrolebindings"
            | "subjectaccessreviews"
            | "selfsubjectaccessreviews"
            | "localsubjectaccessreviews"
            | "selfsubjectrulesreviews",
            _,
        ) => "authorization",
        ("tokenreviews" | "certificatesigningrequests" | "selfsubjectreviews", _)
        | ("serviceaccounts", "token") => "authentication",
        ("secrets", _) | ("pods", "exec" | "attach" | "portforward") => "security",
        ("configmaps", _) => "configuration",
        _ if matches!(verb, "get" | "list" | "watch") => "api",
        _ => "system_management",
    }
}

/// The HTTP method behind a Kubernetes verb.
fn http_method(verb: &str) -> &'static str {
    match verb {
        "create" => "POST",
        "update" => "PUT",
        "patch" => "PATCH",
        "delete" | "deletecollection" => "DELETE",
        _ => "GET",
    }
}

/// An item that could not be mapped, kept: its text (up to [`RAW_KEPT`] bytes) and why.
fn unparsed(
    index: usize,
    item: &Value,
    reason: &str,
    source: &Source,
    now: DateTime<Utc>,
) -> AuditEvent {
    let raw = item.to_string();
    let mut metadata = Map::new();
    metadata.insert("raw".into(), json!(clip(&raw, RAW_KEPT)));
    metadata.insert("rawBytes".into(), json!(raw.len()));
    metadata.insert("error".into(), json!(reason));
    metadata.insert("item".into(), json!(index));
    let correlation = item
        .get("auditID")
        .and_then(Value::as_str)
        .map(|id| clip(id, MAX_SHORT_LEN).to_string());
    super::unparsed_event(
        source,
        now,
        format!(
            "a Kubernetes audit event that could not be read: {}",
            clip(reason, 512)
        ),
        metadata,
        correlation,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Category, Outcome};

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-06-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn item(verb: &str, object: Value, code: u16) -> Value {
        json!({
            "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
            "auditID": "1d2c3b4a-0000-4000-8000-000000000001", "stage": "ResponseComplete",
            "requestURI": "/api/v1/namespaces/prod/secrets/db", "verb": verb,
            "user": {"username": "alice@example.com", "uid": "u1", "groups": ["dev", "system:authenticated"]},
            "sourceIPs": ["10.0.0.7", "192.168.1.1"], "userAgent": "kubectl/v1.31.0",
            "objectRef": object,
            "responseStatus": {"metadata": {}, "code": code},
            "requestReceivedTimestamp": "2026-06-01T11:59:58.123456Z",
            "stageTimestamp": "2026-06-01T11:59:58.130000Z",
            "annotations": {"authorization.k8s.io/decision": "allow"}
        })
    }

    fn batch(items: Vec<Value>) -> Vec<u8> {
        json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": items})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn an_item_maps_its_user_verb_object_and_status() {
        let secret =
            json!({"resource": "secrets", "namespace": "prod", "name": "db", "apiVersion": "v1"});
        let events = parse_batch(&batch(vec![item("get", secret, 403)]), now()).unwrap();
        let e = &events[0];
        assert_eq!(e.action, "k8s.secrets.get");
        assert_eq!(e.outcome, Outcome::Denied);
        assert_eq!(e.category, Category::Security);
        assert_eq!(e.user.id, "alice@example.com");
        let entity = e.entity.as_ref().unwrap();
        assert_eq!(
            (entity.kind.as_deref(), entity.id.as_deref()),
            (Some("secrets"), Some("prod/db"))
        );
        let r = e.request.as_ref().unwrap();
        assert_eq!(r.ip.as_deref(), Some("10.0.0.7"));
        assert_eq!(r.status_code, Some(403));
        assert_eq!(r.method.as_deref(), Some("GET"));
        assert_eq!(e.timestamp.to_rfc3339(), "2026-06-01T11:59:58.123+00:00");
        let m = e.metadata.as_ref().unwrap();
        assert_eq!(m["k8s.stage"], "ResponseComplete");
        assert_eq!(m["k8s.auditID"], "1d2c3b4a-0000-4000-8000-000000000001");
        assert_eq!(e.source.0, SOURCE);
    }

    #[test]
    fn an_unreadable_item_is_kept_and_the_batch_still_lands() {
        let deploy = json!({"resource": "deployments", "apiGroup": "apps", "namespace": "prod", "name": "web"});
        let bad = json!({"kind": "Event", "verb": 7});
        let events = parse_batch(&batch(vec![bad, item("patch", deploy, 200)]), now()).unwrap();
        assert_eq!(events[0].action, "log.unparsed");
        let m = events[0].metadata.as_ref().unwrap();
        assert!(m["raw"].as_str().unwrap().contains("\"verb\":7"));
        assert_eq!(events[1].action, "k8s.deployments.patch");
        assert_eq!(events[1].category, Category::SystemManagement);
        assert_eq!(
            events[1].entity.as_ref().unwrap().kind.as_deref(),
            Some("deployments.apps")
        );
    }

    #[test]
    fn a_body_that_is_no_event_list_is_refused() {
        assert!(parse_batch(b"{}", now()).is_err());
        let pods = json!({"kind": "PodList", "apiVersion": "v1", "items": [{}]});
        assert!(parse_batch(pods.to_string().as_bytes(), now())
            .unwrap_err()
            .contains("not an EventList"));
        assert!(parse_batch(&batch(vec![]), now()).is_err());
    }
}
