//! The lifecycle endpoints: retention on demand (`DELETE /api/v1/events/cleanup`) and daily,
//! and the data subject's rights (`GET /api/v1/subjects/{id}/export`,
//! `POST /api/v1/subjects/{id}/erase`). Each records itself in the chain (see
//! [`crate::selfaudit`]); those records never name the subject, so they survive its erasure
//! without holding its data.

use super::{ApiError, AppState};
use crate::model::{Category, Level, Outcome, StoredEvent, SYSTEM_ACTOR};
use crate::selfaudit::{self, Acting, ActingFrom, Record};
use crate::store::{Concerning, RetentionPolicy, ERASED_SUBJECT};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde::Serialize;
use serde_json::{json, Map};

/// The longest period `?days=` accepts: a hundred years.
const MAX_DAYS: u32 = 36_500;

/// What a retention run did, as the cleanup endpoint answers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CleanupReport {
    pub success: bool,
    /// Events removed.
    pub deleted: u64,
    /// Runs of consecutive seqs they formed, each kept as a signed range.
    pub ranges: u64,
    /// Signed retention records written.
    pub records: u64,
    /// Bytes given back to the file system.
    pub freed_bytes: u64,
    /// The policy applied.
    pub policy: RetentionPolicy,
    pub message: String,
}

/// Runs `policy` now and records the run.
pub async fn run_retention(
    state: &AppState,
    policy: RetentionPolicy,
    acting: &Acting,
) -> Result<CleanupReport, ApiError> {
    let pruned = state.store.prune(policy.clone(), Utc::now()).await;
    let (outcome, level, description) = match &pruned {
        Ok(p) => (
            Outcome::Success,
            Level::Info,
            format!(
                "retention removed {} expired events ({} bytes freed)",
                p.events, p.freed_bytes
            ),
        ),
        Err(e) => (
            Outcome::Failure,
            Level::Error,
            format!("retention failed: {e}"),
        ),
    };
    let mut metadata = Map::new();
    metadata.insert("defaultDays".into(), json!(policy.days));
    if let Ok(p) = &pruned {
        metadata.insert("deleted".into(), json!(p.events));
    }
    selfaudit::record(
        &state.store,
        acting,
        Record {
            action: "events.cleanup",
            category: Category::DataManagement,
            outcome,
            level,
            description,
            metadata,
        },
    )
    .await;
    let p = pruned?;
    Ok(CleanupReport {
        success: true,
        deleted: p.events,
        ranges: p.ranges,
        records: p.records,
        freed_bytes: p.freed_bytes,
        message: format!(
            "Deleted {} events older than their retention period; the chain still verifies \
             through {} signed ranges",
            p.events, p.ranges
        ),
        policy,
    })
}

/// Applies the retention policy now
///
/// Removes expired events in chunks, keeping each run of removed seqs as a signed range so
/// the chain still verifies; the run is recorded in the chain. `days` replaces the policy's
/// default period for this run (level and category periods still apply).
#[utoipa::path(delete, path = "/api/v1/events/cleanup", tag = "lifecycle", operation_id = "apply_retention",
    params(("days" = Option<u32>, Query, minimum = 1, maximum = 36500,
        description = "Keep this many days instead of the policy's default, for this run.")),
    responses(
        (status = 200, body = CleanupReport),
        (status = 400, description = "An unknown parameter or a bad `days`.", body = super::openapi::ErrorBody),
    ))]
pub(super) async fn cleanup(
    State(state): State<AppState>,
    ActingFrom(acting): ActingFrom,
    RawQuery(raw): RawQuery,
) -> Result<Json<CleanupReport>, ApiError> {
    let mut policy = state.retention();
    for pair in raw
        .as_deref()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "days" => {
                policy.days = value
                    .parse::<u32>()
                    .ok()
                    .filter(|d| (1..=MAX_DAYS).contains(d))
                    .ok_or_else(|| ApiError::Param {
                        field: "days".into(),
                        message: format!("must be a whole number of days from 1 to {MAX_DAYS}"),
                    })?;
            }
            other => {
                return Err(ApiError::Param {
                    field: other.into(),
                    message: "unknown parameter; known: days".into(),
                })
            }
        }
    }
    Ok(Json(run_retention(&state, policy, &acting).await?))
}

/// The subject in a path, refused when it is not a data subject at all.
fn subject_of(id: &str) -> Result<&str, ApiError> {
    let id = id.trim();
    if id.is_empty() || id == SYSTEM_ACTOR || id == ERASED_SUBJECT {
        return Err(ApiError::Param {
            field: "userId".into(),
            message: format!("{id:?} is not a data subject"),
        });
    }
    Ok(id)
}

/// A data subject's export, as `GET /api/v1/subjects/{userId}/export` answers.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubjectExport {
    pub subject: String,
    pub exported_at: chrono::DateTime<Utc>,
    pub count: usize,
    pub events: Vec<StoredEvent>,
}

/// What an erasure did, as `POST /api/v1/subjects/{userId}/erase` answers.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErasureReport {
    pub success: bool,
    /// Events whose personal fields were removed.
    pub erased: u64,
    /// Alerts whose messages named the subject, rewritten.
    pub alerts: u64,
    pub message: String,
}

/// Exports a data subject's events (GDPR access)
///
/// Every event concerning the user, as the actor or as the entity acted on, as one JSON
/// document to download; recorded in the chain. The `self` role may export only its own
/// (and then only the events where it is the actor).
#[utoipa::path(get, path = "/api/v1/subjects/{user_id}/export", tag = "lifecycle",
    params(("user_id" = String, Path, description = "The subject's user id (`userId`).")),
    responses(
        (status = 200, description = "A download (`Content-Disposition: attachment`).", body = SubjectExport),
        (status = 400, description = "Not a data subject (the system actor, or an erased one).", body = super::openapi::ErrorBody),
    ))]
pub(super) async fn export_subject(
    State(state): State<AppState>,
    ActingFrom(acting): ActingFrom,
    super::Owner(owner): super::Owner,
    Path(user_id): Path<String>,
) -> Result<Response, ApiError> {
    let subject = subject_of(&user_id)?;
    if owner.as_ref().is_some_and(|o| o != subject) {
        // The `self` role may take out its own data, and no one else's.
        return Err(ApiError::OwnOnly);
    }
    // A `self` user's export keeps the promise of every other read path: only events where
    // they are the actor. Events where someone acted on them carry that someone's name,
    // address and agent; roles that may read everything get those too.
    let concerning = match owner {
        Some(_) => Concerning::Actor,
        None => Concerning::ActorOrEntity,
    };
    let events: Vec<StoredEvent> = state.store.subject_events(subject, concerning).await?;
    let exported_at = Utc::now();
    let mut metadata = Map::new();
    metadata.insert("events".into(), json!(events.len()));
    let body = SubjectExport {
        subject: subject.to_string(),
        exported_at,
        count: events.len(),
        events,
    };
    selfaudit::record(
        &state.store,
        &acting,
        Record {
            action: "subject.export",
            category: Category::DataManagement,
            outcome: Outcome::Success,
            level: Level::Info,
            description: format!("exported a data subject's {} events", body.count),
            metadata,
        },
    )
    .await;
    let mut response = Json(body).into_response();
    let name = format!(
        "attachment; filename=\"trailwatch-subject-{}.json\"",
        exported_at.format("%Y%m%dT%H%M%SZ")
    );
    if let Ok(v) = HeaderValue::from_str(&name) {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

/// Erases a data subject (GDPR erasure)
///
/// Crypto-shreds the user: their personal fields become
/// unreadable in every event and are removed from the alert log, while the chain still
/// verifies. Recorded in the chain. Running it again finishes an erasure that failed part way.
#[utoipa::path(post, path = "/api/v1/subjects/{user_id}/erase", tag = "lifecycle",
    params(("user_id" = String, Path, description = "The subject's user id (`userId`).")),
    responses(
        (status = 200, body = ErasureReport),
        (status = 400, description = "Not a data subject (the system actor, or an erased one).", body = super::openapi::ErrorBody),
    ))]
pub(super) async fn erase_subject(
    State(state): State<AppState>,
    ActingFrom(acting): ActingFrom,
    Path(user_id): Path<String>,
) -> Result<Json<ErasureReport>, ApiError> {
    let subject = subject_of(&user_id)?.to_string();
    // The names it went by, for the alert messages that quote them.
    let mut names: Vec<String> = state
        .store
        .subject_events(&subject, Concerning::ActorOrEntity)
        .await?
        .into_iter()
        .filter(|e| e.event.user.id == subject)
        .filter_map(|e| e.event.user.username)
        .collect();
    names.sort();
    names.dedup();
    names.push(subject.clone());
    let erased = state.store.erase(&subject).await;
    let alerts = match &erased {
        Ok(_) => state
            .alerts
            .erase_subject(&subject, names, state.store.personal_metadata().to_vec())
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "could not erase the subject from the alert log");
                ApiError::Internal
            }),
        Err(_) => Ok(0),
    };
    let (outcome, level, description) = match (&erased, &alerts) {
        (Ok(n), Ok(a)) => (
            Outcome::Success,
            Level::Warning,
            format!("erased a data subject's personal fields from {n} events and {a} alerts"),
        ),
        _ => (
            Outcome::Failure,
            Level::Error,
            "erasing a data subject failed part way; erasing again finishes it".into(),
        ),
    };
    let mut metadata = Map::new();
    if let Ok(n) = &erased {
        metadata.insert("events".into(), json!(n));
    }
    selfaudit::record(
        &state.store,
        &acting,
        Record {
            action: "subject.erase",
            category: Category::DataManagement,
            outcome,
            level,
            description,
            metadata,
        },
    )
    .await;
    let n = erased?;
    let a = alerts?;
    Ok(Json(ErasureReport {
        success: true,
        erased: n as u64,
        alerts: a as u64,
        message: format!(
            "The subject's personal fields were removed from {n} events and {a} alerts; \
             its salt is deleted, and the chain still verifies"
        ),
    }))
}

/// When the server applies the retention policy by itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetentionSchedule {
    /// From the start to the first run: long enough that a restart loop does not prune on
    /// every start, short enough that a server restarted daily still prunes.
    pub first: std::time::Duration,
    /// Between runs.
    pub every: std::time::Duration,
}

impl Default for RetentionSchedule {
    fn default() -> Self {
        RetentionSchedule {
            first: std::time::Duration::from_secs(600),
            every: std::time::Duration::from_secs(24 * 3600),
        }
    }
}

/// Runs the retention policy on `schedule` (once a day, first ten minutes after the start,
/// when the start is over), as the system.
pub fn spawn_daily(state: AppState, schedule: RetentionSchedule) {
    tokio::spawn(async move {
        let mut next = tokio::time::Instant::now() + schedule.first;
        loop {
            tokio::time::sleep_until(next).await;
            next += schedule.every;
            // Read each day: the Settings page may turn it on or off while the server runs.
            let policy = state.retention();
            if !policy.enabled {
                continue;
            }
            // On a cluster one node runs it: the one that takes the day's lease.
            if !state.store.take_lease("retention", schedule.every).await {
                continue;
            }
            if let Err(e) = run_retention(&state, policy, &Acting::system()).await {
                tracing::error!(error = ?e, "the daily retention run failed");
            }
        }
    });
}
