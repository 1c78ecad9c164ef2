//! The audit event and everything the browser and the server exchange about it: stored events,
//! ingest receipts and errors, query pages, the `/ws/audit` protocol and dashboard snapshots.
//! Shared by the ssr and hydrate builds; pure data, no I/O.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The position of an event in the hash chain, starting at 1. Seqs are never reused; the
/// only gaps are runs removed by signed retention (see `store::retention`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(transparent)]
pub struct Seq(pub u64);

impl Seq {
    /// The seq that follows this one.
    pub fn next(self) -> Seq {
        Seq(self.0 + 1)
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The server-assigned UUID of an event, as text.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(transparent)]
pub struct EventId(pub String);

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How severe an event is, lowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Debug,
    Info,
    Warning,
    Error,
    Critical,
}

impl Level {
    /// Every level, lowest first.
    pub const ALL: [Level; 5] = [
        Level::Debug,
        Level::Info,
        Level::Warning,
        Level::Error,
        Level::Critical,
    ];

    /// The wire name (`"warning"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warning => "warning",
            Level::Error => "error",
            Level::Critical => "critical",
        }
    }

    /// Its place from the lowest (0, debug) to the highest: what sorting by level compares.
    pub fn rank(self) -> i64 {
        Level::ALL.iter().position(|l| *l == self).unwrap_or(0) as i64
    }

    /// Parses a wire name, case-insensitively; `warn` is accepted for `warning`.
    pub fn parse(s: &str) -> Option<Level> {
        let lower = s.trim().to_ascii_lowercase();
        match lower.as_str() {
            "warn" => Some(Level::Warning),
            other => Level::ALL.into_iter().find(|l| l.as_str() == other),
        }
    }
}

/// The ten event categories of the predecessor event-logging system.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Authentication,
    Authorization,
    UserManagement,
    DataManagement,
    SystemManagement,
    Security,
    Workflow,
    Api,
    FileManagement,
    Configuration,
}

impl Category {
    /// Every category.
    pub const ALL: [Category; 10] = [
        Category::Authentication,
        Category::Authorization,
        Category::UserManagement,
        Category::DataManagement,
        Category::SystemManagement,
        Category::Security,
        Category::Workflow,
        Category::Api,
        Category::FileManagement,
        Category::Configuration,
    ];

    /// The wire name (`"file_management"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Authentication => "authentication",
            Category::Authorization => "authorization",
            Category::UserManagement => "user_management",
            Category::DataManagement => "data_management",
            Category::SystemManagement => "system_management",
            Category::Security => "security",
            Category::Workflow => "workflow",
            Category::Api => "api",
            Category::FileManagement => "file_management",
            Category::Configuration => "configuration",
        }
    }

    /// Parses a wire name, case-insensitively.
    pub fn parse(s: &str) -> Option<Category> {
        let lower = s.trim().to_ascii_lowercase();
        Category::ALL.into_iter().find(|c| c.as_str() == lower)
    }

    /// The category an action most likely belongs to, used when a sender gives none: the
    /// action's first word (`file.read` → `file`) decides.
    pub fn infer_from_action(action: &str) -> Category {
        let head = action
            .split(['.', ':', '_', '-', '/', ' '])
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        match head.as_str() {
            "auth" | "login" | "logout" | "signin" | "signout" | "password" | "mfa" | "session" => {
                Category::Authentication
            }
            "permission" | "role" | "access" | "authz" | "grant" | "revoke" | "policy" => {
                Category::Authorization
            }
            "user" | "account" | "member" | "profile" => Category::UserManagement,
            "file" | "upload" | "download" | "share" => Category::FileManagement,
            "config" | "configuration" | "setting" | "settings" => Category::Configuration,
            "api" | "http" | "request" => Category::Api,
            "workflow" | "agent" | "job" | "pipeline" | "approval" => Category::Workflow,
            "security" | "threat" | "alert" | "shell" => Category::Security,
            "data" | "record" | "export" | "import" | "create" | "read" | "update" | "delete" => {
                Category::DataManagement
            }
            _ => Category::SystemManagement,
        }
    }
}

/// Whether the action happened: done, attempted and failed, or refused by policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Failure,
    Denied,
}

impl Outcome {
    /// Every outcome.
    pub const ALL: [Outcome; 3] = [Outcome::Success, Outcome::Failure, Outcome::Denied];

    /// The wire name (`"denied"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Denied => "denied",
        }
    }

    /// Parses a wire name, case-insensitively.
    pub fn parse(s: &str) -> Option<Outcome> {
        let lower = s.trim().to_ascii_lowercase();
        Outcome::ALL.into_iter().find(|o| o.as_str() == lower)
    }
}

/// The actor id given to events that name no user.
pub const SYSTEM_ACTOR: &str = "system";

/// Who did it. `id` is the data subject for GDPR purposes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Actor {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
}

impl Actor {
    /// The actor of events that name no user.
    pub fn system() -> Actor {
        Actor {
            id: SYSTEM_ACTOR.to_string(),
            username: None,
        }
    }

    /// The name to show a person: the username if known, else the id.
    pub fn display_name(&self) -> &str {
        self.username.as_deref().unwrap_or(&self.id)
    }
}

/// What the action was done to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Entity {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// The HTTP request that caused the event, if any. `ip` and `user_agent` are personal data.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RequestInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    /// Milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_time: Option<u64>,
}

/// Where the actor was. Personal data.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Location {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
}

/// The system that emitted the event.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct SystemInfo {
    /// The service that emitted it (OpenTelemetry's `service.name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The host it ran on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// One field's value before and after an update.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Change {
    pub before: serde_json::Value,
    pub after: serde_json::Value,
}

/// Which channel brought an event in: `http`, `cli`, or `tail:<path>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(transparent)]
pub struct Source(pub String);

impl Source {
    /// Events posted to the HTTP API.
    pub fn http() -> Source {
        Source("http".to_string())
    }

    /// Events sent by `trailwatch emit`.
    pub fn cli() -> Source {
        Source("cli".to_string())
    }
}

/// A validated audit event, as the sender described it, before the store seals it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    /// When it happened, millisecond precision.
    pub timestamp: DateTime<Utc>,
    pub level: Level,
    pub category: Category,
    pub action: String,
    pub outcome: Outcome,
    pub user: Actor,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity: Option<Entity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<RequestInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<BTreeMap<String, Change>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk_score: Option<u8>,
    /// Why Trailwatch gave the score, when it assigned one at ingest (the sender gave none).
    /// Sealed in the chain with the score; senders cannot set it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk_reasons: Option<Vec<RiskReason>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<SystemInfo>,
    pub source: Source,
    /// Which credential submitted it: `token:<name>` (an API token), `user:<name>` (a
    /// dashboard user's session), `admin` (the admin token), or `server` (events Trailwatch
    /// writes itself: its own audit trail, tailed files). Set by the server, never by the
    /// sender, and sealed in the chain; `source` says only the channel, which a sender
    /// names itself. Events stored before provenance was recorded have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitted_by: Option<String>,
}

/// The provenance of events Trailwatch writes itself (see [`AuditEvent::submitted_by`]).
pub const SERVER_SUBMITTER: &str = "server";

impl AuditEvent {
    /// An event with its required fields and every optional one empty; callers fill in what
    /// they know with struct update syntax.
    pub fn new(
        timestamp: DateTime<Utc>,
        level: Level,
        category: Category,
        action: impl Into<String>,
        outcome: Outcome,
        user: Actor,
        source: Source,
    ) -> AuditEvent {
        AuditEvent {
            timestamp,
            level,
            category,
            action: action.into(),
            outcome,
            user,
            entity: None,
            request: None,
            location: None,
            description: None,
            metadata: None,
            changes: None,
            risk_score: None,
            risk_reasons: None,
            correlation_id: None,
            session_id: None,
            system: None,
            source,
            submitted_by: None,
        }
    }
}

/// One rule's share of a risk score assigned at ingest. `detail` names no person, address or
/// place: it is sealed in the chain, which erasure of a data subject must leave intact.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct RiskReason {
    /// The rule: `level`, `outcome`, `category`, `repeated_user`, `repeated_ip`,
    /// `unusual_hour` or `new_country`.
    pub rule: String,
    pub points: u8,
    pub detail: String,
}

impl RiskReason {
    /// The rule's name for people.
    pub fn label(&self) -> &str {
        match self.rule.as_str() {
            "level" => "Level",
            "outcome" => "Outcome",
            "category" => "Category",
            "repeated_user" => "Repeated failures by the user",
            "repeated_ip" => "Repeated failures from the address",
            "unusual_hour" => "Unusual hour",
            "new_country" => "New country",
            other => other,
        }
    }
}

/// An event as stored: sealed in the chain with its seq, id, arrival time and hash.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct StoredEvent {
    pub seq: Seq,
    pub event_id: EventId,
    pub received_at: DateTime<Utc>,
    /// Lower-case hex SHA-256 of the previous hash and this event's canonical encoding.
    pub hash: String,
    #[serde(flatten)]
    pub event: AuditEvent,
}

/// The answer to a successful ingest: how many events were committed and their seq range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct IngestReceipt {
    pub accepted: usize,
    pub first_seq: Seq,
    pub last_seq: Seq,
}

/// One problem with one record of an ingest request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct FieldError {
    /// The record's position in the request (0 for a single object, the line for NDJSON).
    pub index: usize,
    /// The field at fault, dotted for nested fields (`request.statusCode`); empty for the record.
    pub field: String,
    pub message: String,
}

/// The body of a `400` from ingest: every problem found, not only the first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct IngestErrors {
    pub errors: Vec<FieldError>,
}

/// One page of `GET /api/v1/events`, newest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct EventPage {
    pub items: Vec<StoredEvent>,
    /// How many events match; a lower bound when `total_is_lower_bound` (counting stops at a
    /// cap so a broad query over millions of events stays fast).
    pub total: u64,
    #[serde(default)]
    pub total_is_lower_bound: bool,
    pub page: u32,
    pub limit: u32,
    /// Pass as `cursor` for the next (older) page; `None` on the last page.
    #[serde(default)]
    pub next_cursor: Option<String>,
    /// The newest seq when the page was read: subscribe live from here to miss nothing.
    #[serde(default)]
    pub head_seq: Seq,
    /// Present when the search index had not reached the newest event (a burst being
    /// indexed): the answer covers events through this seq only, and `head_seq` is this seq,
    /// so a live subscription from it adds the rest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_indexed_through: Option<Seq>,
}

/// Which events a query wants, named as the REST parameters of `GET /api/v1/events` (and the
/// `filter` of a live subscription); empty lists and `None` mean "any". Shared so the browser
/// and the server agree on what a filter means: see [`crate::search`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EventFilter {
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub level: Vec<Level>,
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub category: Vec<Category>,
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub outcome: Vec<Outcome>,
    /// An action, or a prefix ending in `*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// An entity id or name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity: Option<String>,
    /// `http`, `cli`, or a tailed file's source name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_risk: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_risk: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Inclusive lower bound on `timestamp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_date: Option<DateTime<Utc>>,
    /// Inclusive upper bound on `timestamp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_date: Option<DateTime<Utc>>,
    /// The query syntax of [`crate::search::Query::parse`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
    /// The predecessor's substring search over description, entity name, username, action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_query: Option<String>,
    /// The credential that submitted the events (`token:ci`, `user:dana`, `admin`,
    /// `server`), or a prefix ending in `*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitted_by: Option<String>,
}

impl EventFilter {
    /// Whether this filter lets every event through.
    pub fn is_empty(&self) -> bool {
        *self == EventFilter::default()
    }

    /// The filter as the parameters of `GET /api/v1/events`, which its fields are named
    /// after: lists joined by commas, times in RFC 3339, unset fields left out. Not encoded.
    pub fn rest_params(&self) -> Vec<(String, String)> {
        let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(self) else {
            return Vec::new();
        };
        fields
            .into_iter()
            .map(|(name, value)| {
                let value = match value {
                    serde_json::Value::Array(items) => items
                        .iter()
                        .filter_map(|i| i.as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                (name, value)
            })
            .collect()
    }
}

/// Accepts `"error"` as well as `["error", "critical"]`.
fn one_or_many<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany<T> {
        One(T),
        Many(Vec<T>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(v) => vec![v],
        OneOrMany::Many(v) => v,
    })
}

/// An event's place in the hash chain, checked by the server when asked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct EventSeal {
    pub seq: Seq,
    pub hash: String,
    pub prev_hash: String,
    /// Its content matches its hash and it follows the row before it.
    pub verified: bool,
    /// What is wrong, when not verified.
    pub problem: Option<String>,
}

/// Everything the event detail dialog shows: the event, its verified seal, and the events
/// related to it by correlation id and by session id (newest first, a few of each).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct EventDetail {
    pub event: StoredEvent,
    pub seal: EventSeal,
    pub same_correlation: Vec<StoredEvent>,
    pub same_session: Vec<StoredEvent>,
}

impl EventDetail {
    /// This detail as `owner` may see it: `None` when the event is not theirs, and only
    /// their own among the related events. Without an owner, all of it.
    pub fn owned_by(mut self, owner: Option<&str>) -> Option<EventDetail> {
        let Some(owner) = owner else {
            return Some(self);
        };
        if self.event.event.user.id != owner {
            return None;
        }
        self.same_correlation.retain(|e| e.event.user.id == owner);
        self.same_session.retain(|e| e.event.user.id == owner);
        Some(self)
    }
}

/// The events of a past range for replay, in seq order; `truncated` when the range holds
/// more than were sent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ReplayBatch {
    pub events: Vec<StoredEvent>,
    pub truncated: bool,
}

/// A named explorer view: the URL query (`?q=...&level=error`) that reopens it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SavedView {
    pub id: i64,
    pub name: String,
    pub query: String,
    /// Epoch milliseconds.
    pub created_at: i64,
}

/// A distinct value of a field and how many events have it
/// (`GET /api/v1/events/levels`, `/categories`, `/actions`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ValueCount {
    pub value: String,
    pub count: u64,
}

/// Running totals over every stored event, as of `as_of`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Counters {
    pub total: u64,
    pub denied: u64,
    pub failures: u64,
    pub critical: u64,
    pub as_of: Seq,
}

impl Counters {
    /// Counts one more event, if it is newer than what these totals already include.
    /// Returns whether it was counted.
    pub fn absorb(&mut self, event: &StoredEvent) -> bool {
        if event.seq <= self.as_of {
            return false;
        }
        self.count(event);
        true
    }

    /// Counts `event` whatever its seq (replay plays events in time order, not seq order);
    /// `as_of` becomes the highest seq counted.
    pub fn count(&mut self, event: &StoredEvent) {
        self.total += 1;
        match event.event.outcome {
            Outcome::Denied => self.denied += 1,
            Outcome::Failure => self.failures += 1,
            Outcome::Success => {}
        }
        if event.event.level == Level::Critical {
            self.critical += 1;
        }
        self.as_of = self.as_of.max(event.seq);
    }
}

/// What the dashboard needs to render before any live event: the newest events (newest
/// first), the totals that include them, and the server's clock.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct DashboardSnapshot {
    pub events: Vec<StoredEvent>,
    pub counters: Counters,
    pub server_time: DateTime<Utc>,
}

/// A message from a client on `/ws/audit`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum ClientMessage {
    /// Start (or restart) the stream after `since_seq`; `None` means "the last 100, then live".
    /// With a `filter`, only matching events are sent (catch-up included); a new `subscribe`
    /// replaces the filter and resumes from its own `sinceSeq`. With `alertsOnly`, no events
    /// are sent at all, only alerts (the alert log's page).
    #[serde(rename_all = "camelCase")]
    Subscribe {
        #[serde(default)]
        since_seq: Option<Seq>,
        #[serde(default)]
        filter: Option<EventFilter>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        alerts_only: bool,
    },
}

/// A message from the server on `/ws/audit`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum ServerMessage {
    /// The answer to a `subscribe`: everything after this belongs to that subscription.
    #[serde(rename_all = "camelCase")]
    Subscribed { since_seq: Option<Seq> },
    /// The next event, strictly in seq order.
    Event { event: Box<StoredEvent> },
    /// Everything up to `head_seq` has been sent; what follows is live. A `head_seq` below
    /// the client's `sinceSeq` means the server's history was reset.
    #[serde(rename_all = "camelCase")]
    Ready { head_seq: Seq },
    /// This client fell behind the live queue after `last_seq`; the server resumes it from the
    /// store, and a client may also resubscribe from `last_seq`.
    #[serde(rename_all = "camelCase")]
    Lagged { last_seq: Seq },
    /// The client's last message could not be honoured.
    Error { message: String },
    /// An alert was raised, or a grouped alert closed with more events (same `id`, larger
    /// `count`). `event` is the event that raised it, absent for anomaly alerts.
    Alert(Box<Alert>),
}

/// How serious an anomaly or alert is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

/// An alert: a rule matched an event (or an anomaly was raised). Events matching the same rule
/// within the grouping window join one alert instead of raising more.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub id: u64,
    pub severity: Severity,
    pub message: String,
    /// The rule's name: `denied`, `failure`, a configured rule, or `anomaly:<type>`.
    pub rule: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<Box<StoredEvent>>,
    /// How many events this alert stands for.
    pub count: u64,
    /// Epoch ms of the first and the latest event it stands for.
    pub first_at: i64,
    pub last_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_at: Option<i64>,
}

/// `GET /api/health`, in the predecessor's shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Health {
    pub status: String,
    /// Epoch milliseconds.
    pub timestamp: i64,
    pub version: String,
    pub components: BTreeMap<String, String>,
}

/// The live connection's state, as the dashboard badge shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub enum ConnectionState {
    Connecting,
    Live,
    Reconnecting,
    Offline,
}

impl ConnectionState {
    /// The badge text.
    pub fn label(self) -> &'static str {
        match self {
            ConnectionState::Connecting => "connecting",
            ConnectionState::Live => "live",
            ConnectionState::Reconnecting => "reconnecting",
            ConnectionState::Offline => "offline",
        }
    }
}

/// "5 s ago", "3 min ago", "2 h ago", "4 d ago": a short relative time for feeds.
pub fn relative_time(then_ms: i64, now_ms: i64) -> String {
    let secs = ((now_ms - then_ms) / 1000).max(0);
    match secs {
        0..=4 => "just now".to_string(),
        5..=59 => format!("{secs} s ago"),
        60..=3599 => format!("{} min ago", secs / 60),
        3600..=86_399 => format!("{} h ago", secs / 3600),
        _ => format!("{} d ago", secs / 86_400),
    }
}

/// A column a list of events can be ordered by: `sort=` in the REST API, the explorer's URL
/// and its headers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub enum SortField {
    /// When the event happened, as its sender says.
    #[default]
    Timestamp,
    /// When this server received it.
    ReceivedAt,
    /// Arrival order in the chain.
    Seq,
    /// By severity (debug lowest).
    Level,
    Risk,
    Action,
    /// The actor's id.
    User,
}

impl SortField {
    pub const ALL: [SortField; 7] = [
        SortField::Timestamp,
        SortField::ReceivedAt,
        SortField::Seq,
        SortField::Level,
        SortField::Risk,
        SortField::Action,
        SortField::User,
    ];

    /// The name `sort=` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            SortField::Timestamp => "timestamp",
            SortField::ReceivedAt => "receivedAt",
            SortField::Seq => "seq",
            SortField::Level => "level",
            SortField::Risk => "risk",
            SortField::Action => "action",
            SortField::User => "user",
        }
    }

    pub fn parse(s: &str) -> Option<SortField> {
        SortField::ALL.into_iter().find(|f| f.as_str() == s)
    }

    /// The direction a first click sorts in: newest, most severe and riskiest first; names
    /// from A.
    pub fn first_descending(self) -> bool {
        !matches!(self, SortField::Action | SortField::User)
    }
}

/// The order of a list of events: a field and a direction, ties broken by seq in the same
/// direction, so the order is total and a keyset cursor is exact.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct EventOrder {
    pub field: SortField,
    pub descending: bool,
}

impl Default for EventOrder {
    /// Event time, newest first: what an investigator reads.
    fn default() -> Self {
        EventOrder::by(SortField::Timestamp)
    }
}

/// An event's place in an [`EventOrder`], before the seq that breaks ties.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SortKey {
    Int(i64),
    /// Compared byte by byte, as both databases compare it.
    Text(String),
}

impl EventOrder {
    /// Arrival order, newest first: the live feed's.
    pub const ARRIVAL: EventOrder = EventOrder {
        field: SortField::Seq,
        descending: true,
    };

    /// `field` in the direction a first click sorts it.
    pub fn by(field: SortField) -> EventOrder {
        EventOrder {
            field,
            descending: field.first_descending(),
        }
    }

    /// Reads `field`, `field:asc` or `field:desc`.
    ///
    /// # Errors
    /// A message naming what was not understood.
    pub fn parse(raw: &str) -> Result<EventOrder, String> {
        let (name, dir) = match raw.split_once(':') {
            Some((name, dir)) => (name, Some(dir)),
            None => (raw, None),
        };
        let field = SortField::parse(name).ok_or_else(|| {
            let known: Vec<&str> = SortField::ALL.iter().map(|f| f.as_str()).collect();
            format!("{name:?} is not one of: {}", known.join(", "))
        })?;
        let descending = match dir {
            None => field.first_descending(),
            Some("desc") => true,
            Some("asc") => false,
            Some(other) => return Err(format!("{other:?} is not asc or desc")),
        };
        Ok(EventOrder { field, descending })
    }

    /// As [`EventOrder::parse`] reads it: `timestamp:desc`.
    pub fn as_param(self) -> String {
        let dir = if self.descending { "desc" } else { "asc" };
        format!("{}:{dir}", self.field.as_str())
    }

    /// The same field the other way.
    pub fn reversed(self) -> EventOrder {
        EventOrder {
            descending: !self.descending,
            ..self
        }
    }

    /// Where `e` sorts on this order's field.
    pub fn key(self, e: &StoredEvent) -> SortKey {
        match self.field {
            SortField::Timestamp => SortKey::Int(e.event.timestamp.timestamp_millis()),
            SortField::ReceivedAt => SortKey::Int(e.received_at.timestamp_millis()),
            SortField::Seq => SortKey::Int(e.seq.0 as i64),
            SortField::Level => SortKey::Int(e.event.level.rank()),
            // No score sorts below every score, as the databases' `COALESCE(risk, -1)` has it.
            SortField::Risk => SortKey::Int(e.event.risk_score.map_or(-1, i64::from)),
            SortField::Action => SortKey::Text(e.event.action.clone()),
            SortField::User => SortKey::Text(e.event.user.id.clone()),
        }
    }

    /// Whether `a` comes before (`Less`) or after `b` in a list in this order.
    pub fn compare(self, a: &StoredEvent, b: &StoredEvent) -> std::cmp::Ordering {
        let ascending = self.key(a).cmp(&self.key(b)).then(a.seq.cmp(&b.seq));
        if self.descending {
            ascending.reverse()
        } else {
            ascending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_parse_and_compare_with_seq_breaking_ties() {
        assert_eq!(EventOrder::parse("timestamp"), Ok(EventOrder::default()));
        assert_eq!(
            EventOrder::parse("user"),
            Ok(EventOrder {
                field: SortField::User,
                descending: false
            })
        );
        assert_eq!(
            EventOrder::parse("risk:asc").map(EventOrder::as_param),
            Ok("risk:asc".into())
        );
        assert!(EventOrder::parse("loudness")
            .unwrap_err()
            .contains("receivedAt"));
        assert!(EventOrder::parse("risk:up")
            .unwrap_err()
            .contains("asc or desc"));

        let (a, b) = (
            stored(1, Outcome::Success, Level::Error),
            stored(2, Outcome::Success, Level::Info),
        );
        let by_level = EventOrder::by(SortField::Level);
        assert!(
            by_level.compare(&a, &b).is_lt(),
            "error before info, descending"
        );
        assert!(by_level.reversed().compare(&a, &b).is_gt());
        // Equal times: the newer seq first when descending.
        assert!(EventOrder::default().compare(&b, &a).is_lt());
        // No risk score sorts below a score of 0.
        let mut scored = a.clone();
        scored.event.risk_score = Some(0);
        assert!(EventOrder::by(SortField::Risk).compare(&scored, &b).is_lt());
    }

    fn stored(seq: u64, outcome: Outcome, level: Level) -> StoredEvent {
        StoredEvent {
            seq: Seq(seq),
            event_id: EventId(format!("id-{seq}")),
            received_at: DateTime::from_timestamp_millis(1_000).unwrap(),
            hash: "00".repeat(32),
            event: AuditEvent::new(
                DateTime::from_timestamp_millis(1_000).unwrap(),
                level,
                Category::Security,
                "file.read",
                outcome,
                Actor::system(),
                Source::http(),
            ),
        }
    }

    #[test]
    fn level_parse_accepts_aliases_and_case() {
        assert_eq!(Level::parse("WARN"), Some(Level::Warning));
        assert_eq!(Level::parse("Critical"), Some(Level::Critical));
        assert_eq!(Level::parse("fatal"), None);
    }

    #[test]
    fn category_round_trips_through_wire_names() {
        for c in Category::ALL {
            assert_eq!(Category::parse(c.as_str()), Some(c));
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(json, format!("\"{}\"", c.as_str()));
        }
    }

    #[test]
    fn category_inference_uses_the_first_word_of_the_action() {
        assert_eq!(
            Category::infer_from_action("file.read"),
            Category::FileManagement
        );
        assert_eq!(
            Category::infer_from_action("login"),
            Category::Authentication
        );
        assert_eq!(
            Category::infer_from_action("shell.exec"),
            Category::Security
        );
        assert_eq!(
            Category::infer_from_action("reboot"),
            Category::SystemManagement
        );
    }

    #[test]
    fn stored_event_serialises_flat_in_camel_case() {
        let v = serde_json::to_value(stored(7, Outcome::Denied, Level::Warning)).unwrap();
        assert_eq!(v["seq"], 7);
        assert_eq!(v["eventId"], "id-7");
        assert_eq!(v["outcome"], "denied");
        assert_eq!(v["user"]["id"], "system");
        assert!(v.get("receivedAt").is_some());
        assert!(v.get("entity").is_none(), "absent optionals are omitted");
        let back: StoredEvent = serde_json::from_value(v).unwrap();
        assert_eq!(back, stored(7, Outcome::Denied, Level::Warning));
    }

    #[test]
    fn counters_absorb_each_seq_once() {
        let mut c = Counters::default();
        assert!(c.absorb(&stored(1, Outcome::Denied, Level::Warning)));
        assert!(c.absorb(&stored(2, Outcome::Failure, Level::Critical)));
        assert!(
            !c.absorb(&stored(2, Outcome::Failure, Level::Critical)),
            "duplicate"
        );
        assert!(
            !c.absorb(&stored(1, Outcome::Success, Level::Info)),
            "older"
        );
        assert_eq!((c.total, c.denied, c.failures, c.critical), (2, 1, 1, 1));
        assert_eq!(c.as_of, Seq(2));
    }

    #[test]
    fn live_messages_use_the_documented_json() {
        let m: ClientMessage =
            serde_json::from_str(r#"{"type":"subscribe","sinceSeq":42}"#).unwrap();
        assert_eq!(
            m,
            ClientMessage::Subscribe {
                since_seq: Some(Seq(42)),
                filter: None,
                alerts_only: false,
            }
        );
        let m: ClientMessage =
            serde_json::from_str(r#"{"type":"subscribe","alertsOnly":true}"#).unwrap();
        assert!(matches!(
            m,
            ClientMessage::Subscribe {
                alerts_only: true,
                ..
            }
        ));
        // Omitted when false, so older servers read what this client sends.
        let plain = ClientMessage::Subscribe {
            since_seq: None,
            filter: None,
            alerts_only: false,
        };
        assert!(!serde_json::to_string(&plain).unwrap().contains("alerts"));
        let lagged = serde_json::to_string(&ServerMessage::Lagged { last_seq: Seq(9) }).unwrap();
        assert_eq!(lagged, r#"{"type":"lagged","lastSeq":9}"#);
        let ready = serde_json::to_string(&ServerMessage::Ready { head_seq: Seq(3) }).unwrap();
        assert_eq!(ready, r#"{"type":"ready","headSeq":3}"#);
    }

    #[test]
    fn relative_time_buckets() {
        assert_eq!(relative_time(0, 1_000), "just now");
        assert_eq!(relative_time(0, 42_000), "42 s ago");
        assert_eq!(relative_time(0, 180_000), "3 min ago");
        assert_eq!(relative_time(0, 7_200_000), "2 h ago");
        assert_eq!(
            relative_time(10_000, 0),
            "just now",
            "clock skew is not negative"
        );
    }
}

/// What an API token may do. An `admin` token may do everything; `read` and `ingest` only
/// what they name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum TokenScope {
    /// Send events, nothing else.
    Ingest,
    /// Read events, analytics and exports; change nothing.
    Read,
    /// Everything, tokens and erasure included.
    Admin,
}

impl TokenScope {
    /// Every scope, in the order forms and help texts list them.
    pub const ALL: [TokenScope; 3] = [TokenScope::Ingest, TokenScope::Read, TokenScope::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            TokenScope::Ingest => "ingest",
            TokenScope::Read => "read",
            TokenScope::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<TokenScope> {
        TokenScope::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Whether a holder of this scope may do what needs `needed`.
    pub fn allows(self, needed: TokenScope) -> bool {
        self == TokenScope::Admin || self == needed
    }

    /// What the scope allows, in a few words.
    pub fn describe(self) -> &'static str {
        match self {
            TokenScope::Ingest => "send events only",
            TokenScope::Read => "read and export, change nothing",
            TokenScope::Admin => "everything, tokens and erasure included",
        }
    }
}

/// A dashboard user's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything: users, tokens, settings, erasure.
    Admin,
    /// Reads everything, exports and verifies; changes nothing.
    Auditor,
    /// Reads everything; no exports.
    Viewer,
    /// Sees only the events where they are the actor ("my activity").
    #[serde(rename = "self")]
    Own,
}

impl Role {
    /// Every role, in the order forms and help texts list them.
    pub const ALL: [Role; 4] = [Role::Admin, Role::Auditor, Role::Viewer, Role::Own];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Auditor => "auditor",
            Role::Viewer => "viewer",
            Role::Own => "self",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// What the role allows, in a few words.
    pub fn describe(self) -> &'static str {
        match self {
            Role::Admin => "everything: users, tokens, settings, erasure",
            Role::Auditor => "read everything, export, verify",
            Role::Viewer => "read everything, no exports",
            Role::Own => "only the events where they are the actor",
        }
    }
}

/// What a request needs, as the router and the server functions check it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Anything a signed-in holder does to their own session (sign out, who am I).
    Session,
    /// Send events.
    Ingest,
    /// Read events, limited to the holder's own for the `self` role.
    ReadOwn,
    /// Read everything: analytics, alerts, the chain, the mirror.
    ReadAll,
    /// Export events (the `self` role exports only its own).
    Export,
    /// Walk the whole chain.
    Verify,
    /// Change what is stored or who may call.
    Admin,
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Session => "session",
            Permission::Ingest => "ingest",
            Permission::ReadOwn => "read_own",
            Permission::ReadAll => "read_all",
            Permission::Export => "export",
            Permission::Verify => "verify",
            Permission::Admin => "admin",
        }
    }
}

/// Where a principal's rights come from: an API token's scope or a user's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase", tag = "kind", content = "value")]
pub enum Grant {
    Token(TokenScope),
    Role(Role),
}

impl Grant {
    /// Whether this grant covers `needed`.
    pub fn allows(self, needed: Permission) -> bool {
        use Permission as P;
        match self {
            Grant::Token(TokenScope::Admin) | Grant::Role(Role::Admin) => true,
            Grant::Token(TokenScope::Ingest) => matches!(needed, P::Session | P::Ingest),
            Grant::Token(TokenScope::Read) | Grant::Role(Role::Auditor) => matches!(
                needed,
                P::Session | P::ReadOwn | P::ReadAll | P::Export | P::Verify
            ),
            Grant::Role(Role::Viewer) => matches!(needed, P::Session | P::ReadOwn | P::ReadAll),
            Grant::Role(Role::Own) => matches!(needed, P::Session | P::ReadOwn | P::Export),
        }
    }

    /// `role viewer`, `scope read`: how refusals name what the caller has.
    pub fn describe(self) -> String {
        match self {
            Grant::Token(s) => format!("scope {}", s.as_str()),
            Grant::Role(r) => format!("role {}", r.as_str()),
        }
    }
}

/// Who is signed in, for the dashboard to show and to hide what they may not use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Whoami {
    pub name: String,
    pub grant: Grant,
    /// The actor id whose events alone they see (the `self` role).
    pub owner: Option<String>,
}

/// The settings an admin may change while the server runs (the Settings page); the rest
/// come from the settings file and flags.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RuntimeSettings {
    /// Whether the daily retention run deletes expired events.
    pub retention_enabled: bool,
    /// Days an event is kept when no level or category rule applies.
    pub retention_days: u32,
    /// Ingest requests per second per credential; 0 turns the limit off.
    pub ingest_per_second: f64,
    pub ingest_burst: u32,
    pub session_idle_minutes: u64,
    pub session_max_hours: u64,
}

/// The Settings page: what runs now, and who last saved it from the dashboard, when.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SettingsPage {
    pub current: RuntimeSettings,
    pub saved_at: Option<String>,
    pub saved_by: Option<String>,
}

/// A dashboard user as listed: never the password hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct UserInfo {
    pub name: String,
    pub role: Role,
    /// The actor id in events that is this user (what the `self` role is limited to).
    pub subject: String,
    /// RFC 3339.
    pub created_at: String,
    pub last_login_at: Option<String>,
    pub disabled_at: Option<String>,
}

/// An API token as listed: never its secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct TokenInfo {
    pub name: String,
    pub scope: TokenScope,
    /// RFC 3339.
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
}

/// A token just made: its secret is shown this once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct CreatedToken {
    pub info: TokenInfo,
    pub token: String,
}

/// Where the background check of the hash chain stands, for the dashboard header and
/// `GET /api/v1/chain`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ChainStatus {
    /// Every event up to this seq verified (and matched the signed checkpoints).
    pub verified_through: u64,
    /// When the last check finished; `None` before the first.
    pub checked_at: Option<DateTime<Utc>>,
    /// The first bad seq, when the chain is broken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broken_at: Option<u64>,
    /// What is wrong there (`edited`, `deleted`, `reordered`, `truncated`), or why the
    /// checkpoints could not be trusted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

impl ChainStatus {
    /// Whether a break or an untrusted checkpoint log was found.
    pub fn is_broken(&self) -> bool {
        self.problem.is_some()
    }
}

/// The REST API's reference for the `/api-docs` page: its OpenAPI document, digested into
/// what a reader scans (see `server::openapi`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiReference {
    /// The server's version, which the document describes.
    pub version: String,
    /// Operations by tag, in the document's tag order.
    pub groups: Vec<ApiGroup>,
}

/// One tag's operations.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiGroup {
    pub name: String,
    pub description: String,
    pub operations: Vec<ApiOperation>,
}

/// One method on one path.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiOperation {
    pub method: String,
    pub path: String,
    pub summary: String,
    pub description: String,
    /// The permission it needs; `None` for the public routes.
    pub permission: Option<Permission>,
    /// The roles and token scopes that hold that permission, as `role admin`, `scope read`.
    pub granted_to: Vec<String>,
    pub params: Vec<ApiParam>,
    /// The request bodies it takes, one per content type.
    pub request: Vec<ApiBody>,
    pub responses: Vec<ApiAnswer>,
}

/// A path, query or header parameter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiParam {
    pub name: String,
    /// `path`, `query` or `header`.
    pub location: String,
    pub required: bool,
    /// Its type in a few words: `integer`, `string`, `one of: info, warning`.
    pub kind: String,
    pub description: String,
}

/// A body in one content type, with its example when the document gives one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiBody {
    pub content_type: String,
    /// The schema's name, when the body is one of the document's named schemas.
    pub schema: Option<String>,
    /// The example, pretty-printed JSON or the text as sent.
    pub example: Option<String>,
}

/// One answer an operation may give.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiAnswer {
    pub status: String,
    pub description: String,
    pub bodies: Vec<ApiBody>,
}
