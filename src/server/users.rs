//! `/api/v1/users`: list, add and disable dashboard users (admin only), each change recorded
//! in the chain; and the watch that records the users the CLI adds or disables while the
//! server runs (see [`crate::auth::users`]).

use super::{ApiError, AppState};
use crate::auth::users::{self, NewUser, Role, Unaudited, UserError, UserInfo};
use crate::auth::Credential;
use crate::model::{Category, Level, Outcome};
use crate::selfaudit::{Acting, ActingFrom};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

impl From<UserError> for ApiError {
    fn from(e: UserError) -> Self {
        let param = |field: &str, message: String| ApiError::Param {
            field: field.into(),
            message,
        };
        match e {
            UserError::Name(m) => param("name", m),
            UserError::Exists(name) => {
                param("name", format!("a user named {name:?} exists already"))
            }
            UserError::Role(got) => param(
                "role",
                format!("{got:?} is not one of admin, auditor, viewer, self"),
            ),
            UserError::Subject(m) => param("subject", m),
            UserError::Password(m) => param("password", m),
            UserError::Setup(m) => param("code", m),
            UserError::Unknown(name) => ApiError::NotFound(format!("no user is named {name:?}")),
            UserError::Auth(e) => {
                tracing::error!(error = %e, "user database failed");
                ApiError::Internal
            }
        }
    }
}

/// `GET /api/v1/users`: `{"users": [...]}`, oldest first, without password hashes.
pub(super) async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let users: Vec<UserInfo> = state.auth.with_users(users::list).await?;
    Ok(Json(json!({ "users": users })))
}

/// `POST /api/v1/users` with `{"name", "role", "subject"?, "password"}`: `201` with the user.
pub(super) async fn create(
    State(state): State<AppState>,
    ActingFrom(acting): ActingFrom,
    body: Bytes,
) -> Result<(StatusCode, Json<UserInfo>), ApiError> {
    let value: Value = serde_json::from_slice(&body).map_err(|e| ApiError::Param {
        field: "body".into(),
        message: format!("expected {{\"name\", \"role\", \"subject\"?, \"password\"}}: {e}"),
    })?;
    let text = |field: &str, required: bool| -> Result<Option<String>, ApiError> {
        match value.get(field) {
            Some(Value::String(s)) => Ok(Some(s.clone())),
            None | Some(Value::Null) if !required => Ok(None),
            _ => Err(ApiError::Param {
                field: field.into(),
                message: "must be a string".into(),
            }),
        }
    };
    let role = text("role", true)?.unwrap_or_default();
    let user = NewUser {
        name: text("name", true)?.unwrap_or_default(),
        role: Role::parse(&role).ok_or(UserError::Role(role))?,
        subject: text("subject", false)?,
        password: text("password", true)?.unwrap_or_default(),
    };
    let info = create_recorded(&state, &acting, user).await?;
    Ok((StatusCode::CREATED, Json(info)))
}

/// `DELETE /api/v1/users/{name}`: disables the user and closes their sessions and sockets.
pub(super) async fn disable(
    State(state): State<AppState>,
    ActingFrom(acting): ActingFrom,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let disabled = disable_recorded(&state, &acting, name.clone()).await?;
    Ok(Json(json!({"name": name, "disabled": disabled})))
}

/// Adds a user (hashing off the runtime) and records it as done by `acting` (REST route and
/// dashboard).
pub(crate) async fn create_recorded(
    state: &AppState,
    acting: &Acting,
    user: NewUser,
) -> Result<UserInfo, UserError> {
    let info = state
        .auth
        .with_users(move |c| users::create(c, &user, true))
        .await?;
    let change = Unaudited::Created {
        name: info.name.clone(),
        role: info.role,
    };
    record(state, acting, &change).await;
    Ok(info)
}

/// Disables a user, recording it and closing their sockets unless they were disabled
/// already (REST route and dashboard).
pub(crate) async fn disable_recorded(
    state: &AppState,
    acting: &Acting,
    name: String,
) -> Result<bool, UserError> {
    let lookup = name.clone();
    let done = state
        .auth
        .with_users(move |c| users::disable(c, &lookup, true))
        .await?;
    match done {
        Some((role, _)) => {
            record(state, acting, &Unaudited::Disabled { name, role }).await;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Records one user change in the chain (REST, dashboard, setup and the CLI's watch alike);
/// disabling also closes the sockets the user's sessions opened.
pub(crate) async fn record(state: &AppState, acting: &Acting, change: &Unaudited) {
    if let Unaudited::Disabled { name, .. } | Unaudited::PasswordSet { name, .. } = change {
        state.auth.announce_revoked(Credential::User(name.clone()));
    }
    let (action, verb, name, role) = match change {
        Unaudited::Created { name, role } => ("user.create", "added", name, role),
        Unaudited::Disabled { name, role } => ("user.disable", "disabled", name, role),
        Unaudited::PasswordSet { name, role } => {
            ("user.password", "set a new password for", name, role)
        }
    };
    let mut metadata = serde_json::Map::new();
    metadata.insert("account".into(), json!(name));
    metadata.insert("role".into(), json!(role));
    crate::selfaudit::record(
        &state.store,
        acting,
        crate::selfaudit::Record {
            action,
            category: Category::Security,
            outcome: Outcome::Success,
            level: Level::Warning,
            description: format!("{verb} the {} user {name:?}", role.as_str()),
            metadata,
        },
    )
    .await;
}

/// Records the user changes the CLI made since the last look (see
/// [`super::tokens::watch_cli_changes`]).
pub(super) async fn record_cli_changes(state: &AppState, cli: &Acting) {
    match state.auth.with_users(|c| Ok(users::unaudited(c)?)).await {
        Ok(changes) => {
            for change in changes {
                record(state, cli, &change).await;
                let marked = state
                    .auth
                    .with_users(move |c| Ok(users::mark_audited(c, &change)?))
                    .await;
                if let Err(e) = marked {
                    tracing::warn!(error = %e, "could not mark a user change recorded");
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not read user changes"),
    }
}
