//! The settings an admin may change while the server runs, from the dashboard's Settings
//! page: retention, the ingest limit and session lifetimes. Saved in `auth.db`, they
//! override the file and flags from then on (also after a restart); every change is
//! recorded in the chain as `settings.change`, with each field's before and after.

use super::AppState;
use crate::model::{Category, Change, Level, Outcome, RuntimeSettings, SettingsPage};
use crate::selfaudit::Acting;
use crate::store::sql::{Session, SqlError};
use std::collections::BTreeMap;

/// The settings table, in `auth.db` beside the users and tokens, created by this module,
/// which alone reads and writes it.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS settings (
    key        TEXT    PRIMARY KEY,
    value      TEXT    NOT NULL,
    updated_at INTEGER NOT NULL,
    updated_by TEXT    NOT NULL
) WITHOUT ROWID;
";

/// The one row the dashboard's settings live in.
const KEY: &str = "runtime";

/// Why settings could not be read, checked or saved.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A value out of range; the message names the field.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthError),
}

impl From<SqlError> for SettingsError {
    fn from(e: SqlError) -> Self {
        SettingsError::Auth(crate::auth::AuthError::Sql(e))
    }
}

/// What the server runs with now.
pub(crate) fn current(state: &AppState) -> RuntimeSettings {
    let retention = state.retention();
    let limits = state.limiter.config();
    let sessions = state.auth.policy();
    RuntimeSettings {
        retention_enabled: retention.enabled,
        retention_days: retention.days,
        ingest_per_second: limits.ingest_per_second,
        ingest_burst: limits.ingest_burst,
        session_idle_minutes: sessions.idle_minutes,
        session_max_hours: sessions.max_hours,
    }
}

/// Checks `s` and puts it into effect at once: the next request, sign-in and retention run
/// use it.
///
/// # Errors
/// [`SettingsError::Invalid`] naming the field; nothing changes then.
pub(crate) fn apply(state: &AppState, s: &RuntimeSettings) -> Result<(), SettingsError> {
    let mut retention = state.retention();
    retention.enabled = s.retention_enabled;
    retention.days = s.retention_days;
    // The page sets the ingest limit; the connection limits stay as the file set them.
    let limits = super::limits::LimitsConfig {
        ingest_per_second: s.ingest_per_second,
        ingest_burst: s.ingest_burst,
        ..state.limiter.config()
    };
    let sessions = crate::auth::SessionPolicy {
        idle_minutes: s.session_idle_minutes,
        max_hours: s.session_max_hours,
    };
    retention.validate().map_err(SettingsError::Invalid)?;
    limits.validate().map_err(SettingsError::Invalid)?;
    sessions.validate().map_err(SettingsError::Invalid)?;
    if sessions.idle_minutes > sessions.max_hours.saturating_mul(60) {
        return Err(SettingsError::Invalid(
            "sessions.idle_minutes must not be longer than sessions.max_hours".into(),
        ));
    }
    state.set_retention(retention);
    state.limiter.reconfigure(limits);
    state.auth.set_policy(sessions);
    Ok(())
}

/// The saved settings, with who saved them and when (RFC 3339).
pub(crate) fn saved(
    s: &Session<'_>,
) -> Result<Option<(RuntimeSettings, String, String)>, SettingsError> {
    s.sqlite_schema(SCHEMA)?;
    let Some(row) = s.query_opt(
        "SELECT value, updated_at, updated_by FROM settings WHERE key = ?1",
        &[&KEY],
    )?
    else {
        return Ok(None);
    };
    let (value, at, by) = (row.text(0)?, row.int(1)?, row.text(2)?);
    let settings = serde_json::from_str(&value)
        .map_err(|e| SettingsError::Invalid(format!("the saved settings do not read back: {e}")))?;
    Ok(Some((settings, crate::auth::rfc3339(at), by)))
}

fn save(session: &Session<'_>, s: &RuntimeSettings, by: &str) -> Result<(), SettingsError> {
    let value =
        serde_json::to_string(s).map_err(|e| SettingsError::Invalid(format!("settings: {e}")))?;
    session.sqlite_schema(SCHEMA)?;
    session.execute(
        "INSERT INTO settings (key, value, updated_at, updated_by) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (key) DO UPDATE SET value = ?2, updated_at = ?3, updated_by = ?4",
        &[&KEY, &value, &chrono::Utc::now().timestamp(), &by],
    )?;
    Ok(())
}

async fn read_saved(
    state: &AppState,
) -> Result<Option<(RuntimeSettings, String, String)>, SettingsError> {
    state.auth.with_db(|c| Ok(saved(c))).await?
}

/// Puts the saved settings, if any, over the file's when the server starts.
///
/// # Errors
/// The saved settings cannot be read or are out of range (a newer build wrote them).
pub(crate) async fn restore(state: &AppState) -> Result<(), SettingsError> {
    if let Some((settings, at, by)) = read_saved(state).await? {
        apply(state, &settings)?;
        tracing::info!(%at, %by, "settings saved from the dashboard override the file's");
    }
    Ok(())
}

/// How soon a node of a cluster puts into effect settings another node saved.
pub const FOLLOW_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// On a cluster: puts into effect, within [`FOLLOW_EVERY`], the settings any node saves, so a
/// change made on one node applies everywhere. (The node that saved them applied them already;
/// applying them again changes nothing.)
pub(crate) fn follow(state: AppState) {
    tokio::spawn(async move {
        let mut seen: Option<RuntimeSettings> = None;
        let mut tick = tokio::time::interval(FOLLOW_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let saved = match read_saved(&state).await {
                Ok(Some((settings, _, _))) => settings,
                Ok(None) => continue,
                Err(e) => {
                    tracing::debug!(error = %e, "cannot read the saved settings");
                    continue;
                }
            };
            if seen.as_ref() == Some(&saved) {
                continue;
            }
            if saved != current(&state) {
                match apply(&state, &saved) {
                    Ok(()) => tracing::info!("settings saved on another node are in effect"),
                    Err(e) => {
                        tracing::warn!(error = %e, "settings saved on another node do not apply")
                    }
                }
            }
            seen = Some(saved);
        }
    });
}

/// What the Settings page shows.
pub(crate) async fn page(state: &AppState) -> Result<SettingsPage, SettingsError> {
    let saved = read_saved(state).await?;
    Ok(SettingsPage {
        current: current(state),
        saved_at: saved.as_ref().map(|(_, at, _)| at.clone()),
        saved_by: saved.map(|(_, _, by)| by),
    })
}

/// Applies, saves and records `next` as changed by `acting`; returns the page as it is now.
/// Saving nothing new records nothing.
///
/// # Errors
/// [`SettingsError::Invalid`] naming the field; nothing changes then.
pub(crate) async fn change(
    state: &AppState,
    acting: &Acting,
    next: RuntimeSettings,
) -> Result<SettingsPage, SettingsError> {
    let before = current(state);
    let changes = diff(&before, &next);
    if changes.is_empty() {
        return page(state).await;
    }
    apply(state, &next)?;
    let by = acting.user.clone();
    let saving = next.clone();
    let stored = match state.auth.with_db(move |c| Ok(save(c, &saving, &by))).await {
        Ok(result) => result,
        Err(e) => Err(e.into()),
    };
    if let Err(e) = stored {
        // In effect but not saved: put the old ones back, so what runs is what a restart keeps.
        let _ = apply(state, &before);
        return Err(e);
    }
    let fields: Vec<&str> = changes.keys().map(String::as_str).collect();
    let mut event = crate::selfaudit::event(
        acting,
        crate::selfaudit::Record {
            action: "settings.change",
            category: Category::Configuration,
            outcome: Outcome::Success,
            level: Level::Warning,
            description: format!("changed settings: {}", fields.join(", ")),
            metadata: serde_json::Map::new(),
        },
    );
    event.changes = Some(changes);
    if let Err(e) = state.store.append(vec![event]).await {
        tracing::error!(error = %e, "could not record a settings change");
    }
    page(state).await
}

/// Each field that differs, with its value before and after.
fn diff(before: &RuntimeSettings, after: &RuntimeSettings) -> BTreeMap<String, Change> {
    let (Ok(serde_json::Value::Object(b)), Ok(serde_json::Value::Object(a))) =
        (serde_json::to_value(before), serde_json::to_value(after))
    else {
        return BTreeMap::new();
    };
    b.into_iter()
        .filter_map(|(key, old)| {
            let new = a.get(&key)?.clone();
            (old != new).then_some((
                key,
                Change {
                    before: old,
                    after: new,
                },
            ))
        })
        .collect()
}
