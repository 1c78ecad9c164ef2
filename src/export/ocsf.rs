//! Events as OCSF 1.2 records (`GET /api/v1/events/export?format=ocsf` and `ocsf-ndjson`),
//! for SIEMs and data lakes that speak the Open Cybersecurity Schema Framework. The mapping is
//! written out in the README ("OCSF").
//!
//! Authentication events are Authentication (3002), user management is Account Change (3001),
//! anything with an HTTP request or in the `api` category is API Activity (6003), and the rest
//! is the Base Event (0). Each record keeps our event id as `metadata.uid`, our seq as
//! `metadata.sequence` and the chain hash in `metadata.labels`, so a record can be traced back
//! to the sealed event; what OCSF has no attribute for is under `unmapped`.

use crate::model::{Category, Level, Outcome, StoredEvent};
use serde_json::{json, Map, Value};

/// The OCSF version the records follow.
pub const VERSION: &str = "1.2.0";

/// The values OCSF 1.2's `http_request.http_method` allows.
const HTTP_METHODS: [&str; 8] = [
    "CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT", "TRACE",
];

/// An OCSF class this mapping uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Authentication,
    AccountChange,
    ApiActivity,
    Base,
}

impl Class {
    /// `class_uid`.
    pub fn uid(self) -> u32 {
        match self {
            Class::Authentication => 3002,
            Class::AccountChange => 3001,
            Class::ApiActivity => 6003,
            Class::Base => 0,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Class::Authentication => "Authentication",
            Class::AccountChange => "Account Change",
            Class::ApiActivity => "API Activity",
            Class::Base => "Base Event",
        }
    }

    /// `category_uid` and its name.
    fn category(self) -> (u32, &'static str) {
        match self {
            Class::Authentication | Class::AccountChange => (3, "Identity & Access Management"),
            Class::ApiActivity => (6, "Application Activity"),
            Class::Base => (0, "Uncategorized"),
        }
    }

    /// The activity an action names, with its caption; `99` (Other) when none fits.
    fn activity(self, action: &str, method: Option<&str>) -> (u32, &'static str) {
        let words: Vec<String> = action
            .split(['.', '_', '-', ':', '/', ' '])
            .map(str::to_ascii_lowercase)
            .collect();
        let has = |w: &[&str]| words.iter().any(|x| w.contains(&x.as_str()));
        match self {
            Class::Authentication if has(&["logout", "logoff", "signout"]) => (2, "Logoff"),
            Class::Authentication if has(&["login", "logon", "signin"]) => (1, "Logon"),
            Class::AccountChange if has(&["reset"]) => (4, "Password Reset"),
            Class::AccountChange if has(&["password"]) => (3, "Password Change"),
            Class::AccountChange if has(&["create", "add", "invite", "register"]) => (1, "Create"),
            Class::AccountChange if has(&["enable", "activate", "unlock"]) => (2, "Enable"),
            Class::AccountChange if has(&["disable", "deactivate", "suspend"]) => (5, "Disable"),
            Class::AccountChange if has(&["delete", "remove"]) => (6, "Delete"),
            Class::AccountChange if has(&["lock"]) => (9, "Lock"),
            Class::ApiActivity => match method.map(str::to_ascii_uppercase).as_deref() {
                Some("POST") => (1, "Create"),
                Some("GET" | "HEAD") => (2, "Read"),
                Some("PUT" | "PATCH") => (3, "Update"),
                Some("DELETE") => (4, "Delete"),
                _ if has(&["create", "add"]) => (1, "Create"),
                _ if has(&["read", "get", "list", "view", "download"]) => (2, "Read"),
                _ if has(&["update", "edit", "change", "modify"]) => (3, "Update"),
                _ if has(&["delete", "remove"]) => (4, "Delete"),
                _ => (99, "Other"),
            },
            _ => (99, "Other"),
        }
    }
}

/// The class `e` maps to.
pub fn class_of(e: &StoredEvent) -> Class {
    let a = &e.event;
    let has_request = a
        .request
        .as_ref()
        .is_some_and(|r| r.method.is_some() || r.path.is_some());
    match a.category {
        Category::Authentication => Class::Authentication,
        Category::UserManagement => Class::AccountChange,
        Category::Api => Class::ApiActivity,
        _ if has_request => Class::ApiActivity,
        _ => Class::Base,
    }
}

/// `e` as an OCSF record.
pub fn record(e: &StoredEvent) -> Value {
    let a = &e.event;
    let class = class_of(e);
    let request = a.request.as_ref();
    let method = request.and_then(|r| r.method.as_deref());
    let (activity_id, activity_name) = class.activity(&a.action, method);
    let (category_uid, category_name) = class.category();
    let (severity_id, severity) = match a.level {
        Level::Debug | Level::Info => (1, "Informational"),
        Level::Warning => (3, "Medium"),
        Level::Error => (4, "High"),
        Level::Critical => (5, "Critical"),
    };
    let (status_id, status) = match a.outcome {
        Outcome::Success => (1, "Success"),
        Outcome::Failure | Outcome::Denied => (2, "Failure"),
    };
    let user = {
        let mut u = Map::new();
        u.insert("uid".into(), json!(a.user.id));
        u.insert(
            "name".into(),
            json!(a.user.username.as_deref().unwrap_or(&a.user.id)),
        );
        Value::Object(u)
    };
    let mut actor = Map::new();
    actor.insert("user".into(), user.clone());
    if let Some(session) = &a.session_id {
        actor.insert("session".into(), json!({ "uid": session }));
    }

    let mut labels = vec![format!("trailwatch.hash:{}", e.hash)];
    labels.push(format!("trailwatch.source:{}", a.source.0));
    let mut metadata = Map::new();
    metadata.insert("version".into(), json!(VERSION));
    metadata.insert(
        "product".into(),
        json!({"name": "Trailwatch", "vendor_name": "Trailwatch",
               "version": env!("CARGO_PKG_VERSION")}),
    );
    metadata.insert("uid".into(), json!(e.event_id.0));
    metadata.insert("sequence".into(), json!(e.seq.0));
    metadata.insert(
        "logged_time".into(),
        json!(e.received_at.timestamp_millis()),
    );
    metadata.insert("log_name".into(), json!(a.source.0));
    metadata.insert("labels".into(), json!(labels));
    if let Some(c) = &a.correlation_id {
        metadata.insert("correlation_uid".into(), json!(c));
    }

    let mut unmapped = Map::new();
    let mut r = Map::new();
    r.insert("class_uid".into(), json!(class.uid()));
    r.insert("class_name".into(), json!(class.name()));
    r.insert("category_uid".into(), json!(category_uid));
    r.insert("category_name".into(), json!(category_name));
    r.insert("activity_id".into(), json!(activity_id));
    r.insert("activity_name".into(), json!(activity_name));
    r.insert("type_uid".into(), json!(class.uid() * 100 + activity_id));
    r.insert(
        "type_name".into(),
        json!(format!("{}: {activity_name}", class.name())),
    );
    r.insert("severity_id".into(), json!(severity_id));
    r.insert("severity".into(), json!(severity));
    r.insert("status_id".into(), json!(status_id));
    r.insert("status".into(), json!(status));
    if a.outcome == Outcome::Denied {
        r.insert("status_detail".into(), json!("denied"));
    }
    if let Some(code) = request.and_then(|q| q.status_code) {
        r.insert("status_code".into(), json!(code.to_string()));
    }
    r.insert("time".into(), json!(a.timestamp.timestamp_millis()));
    r.insert(
        "message".into(),
        json!(a.description.as_deref().unwrap_or(&a.action)),
    );
    r.insert("metadata".into(), Value::Object(metadata));
    // The base event has no actor; there the user goes under `unmapped`.
    match class {
        Class::Base => {
            unmapped.insert("user".into(), json!(a.user));
        }
        _ => {
            r.insert("actor".into(), Value::Object(actor));
        }
    }
    match (class, request.and_then(|q| q.ip.as_deref())) {
        // The base event has no endpoints; the request stays whole under `unmapped`.
        (Class::Base, _) => {
            if let Some(q) = request {
                unmapped.insert("request".into(), json!(q));
            }
        }
        // OCSF asks an endpoint for a name or uid besides its address; the address is all we
        // know it by.
        (_, Some(ip)) => {
            r.insert("src_endpoint".into(), json!({ "ip": ip, "name": ip }));
        }
        (_, None) => {}
    }
    match class {
        Class::Authentication => {
            r.insert("user".into(), user);
        }
        Class::AccountChange => {
            // The account changed is the entity when it is one; else the actor's own.
            let target = a.entity.as_ref().filter(|x| {
                x.kind
                    .as_deref()
                    .is_some_and(|k| matches!(k, "user" | "account" | "member"))
            });
            let account = match target {
                Some(x) => json!({
                    "uid": x.id.as_deref().unwrap_or_default(),
                    "name": x.name.as_deref().or(x.id.as_deref()).unwrap_or_default(),
                }),
                None => user,
            };
            r.insert("user".into(), account);
        }
        Class::ApiActivity => {
            r.insert(
                "api".into(),
                json!({"operation": a.action, "request": {"uid": e.event_id.0}}),
            );
            r.entry("src_endpoint")
                .or_insert_with(|| json!({ "name": a.system.as_ref().and_then(|s| s.server.clone()).unwrap_or_else(|| a.source.0.clone()) }));
            let mut http = Map::new();
            // OCSF 1.2 lists the methods it knows; another (PATCH) stays under `unmapped`.
            match method.map(str::to_ascii_uppercase) {
                Some(m) if HTTP_METHODS.contains(&m.as_str()) => {
                    http.insert("http_method".into(), json!(m));
                }
                Some(m) => {
                    unmapped.insert("httpMethod".into(), json!(m));
                }
                None => {}
            }
            if let Some(p) = request.and_then(|q| q.path.as_deref()) {
                http.insert("url".into(), json!({ "path": p }));
            }
            if let Some(ua) = request.and_then(|q| q.user_agent.as_deref()) {
                http.insert("user_agent".into(), json!(ua));
            }
            if !http.is_empty() {
                r.insert("http_request".into(), Value::Object(http));
            }
        }
        Class::Base => {}
    }

    unmapped.insert("action".into(), json!(a.action));
    unmapped.insert("category".into(), json!(a.category.as_str()));
    unmapped.insert("outcome".into(), json!(a.outcome.as_str()));
    for (key, value) in [
        ("entity", a.entity.as_ref().map(|v| json!(v))),
        ("metadata", a.metadata.as_ref().map(|v| json!(v))),
        ("changes", a.changes.as_ref().map(|v| json!(v))),
        ("riskScore", a.risk_score.map(|v| json!(v))),
        ("system", a.system.as_ref().map(|v| json!(v))),
        ("location", a.location.as_ref().map(|v| json!(v))),
        ("submittedBy", a.submitted_by.as_ref().map(|v| json!(v))),
    ] {
        if let Some(value) = value {
            unmapped.insert(key.into(), value);
        }
    }
    r.insert("unmapped".into(), Value::Object(unmapped));
    Value::Object(r)
}
