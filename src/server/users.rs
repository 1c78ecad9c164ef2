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
use serde::Serialize;
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

/// `GET /api/v1/users`'s answer.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct UserList {
    /// Oldest first, disabled ones included.
    users: Vec<UserInfo>,
}

/// A user to add.
// Read by `create`, which names the field at fault; this type only describes it.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct UserRequest {
    /// Letters, digits, `-`, `_`, `.` and `@`; unique.
    name: String,
    role: Role,
    /// The actor id in events that is this user (default: the name); the `self` role sees
    /// only these events.
    subject: Option<String>,
    /// At least 12 characters.
    password: String,
}

/// What `DELETE /api/v1/users/{name}` did.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Disabled {
    name: String,
    /// `false` when the user was disabled already.
    disabled: bool,
}

/// Lists the dashboard users
///
/// Oldest first, without password hashes.
#[utoipa::path(get, path = "/api/v1/users", tag = "access", operation_id = "list_users",
    responses((status = 200, body = UserList)))]
pub(super) async fn list(State(state): State<AppState>) -> Result<Json<UserList>, ApiError> {
    let users: Vec<UserInfo> = state.auth.with_users(users::list).await?;
    Ok(Json(UserList { users }))
}

/// Adds a dashboard user
///
/// `201` with the user; recorded in the chain. Roles: `admin` (everything), `auditor` (read
/// everything, export, verify), `viewer` (read everything, no exports), `self` (only the
/// events where they are the actor).
#[utoipa::path(post, path = "/api/v1/users", tag = "access", operation_id = "create_user",
    request_body(content = UserRequest, example = json!({"name": "dana", "role": "auditor",
        "password": "correct horse battery staple"})),
    responses(
        (status = 201, body = UserInfo, example = json!({"name": "dana", "role": "auditor",
            "subject": "dana", "createdAt": "2026-01-15T09:30:00Z", "lastLoginAt": null,
            "disabledAt": null})),
        (status = 400, description = "A bad or taken `name`, a bad `role`, `subject` or `password`.", body = super::openapi::ErrorBody),
    ))]
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

/// Disables a dashboard user
///
/// Ends their sessions and closes their sockets; recorded in the chain. Their events stay.
#[utoipa::path(delete, path = "/api/v1/users/{name}", tag = "access", operation_id = "disable_user",
    params(("name" = String, Path, description = "The user's name.")),
    responses(
        (status = 200, body = Disabled, example = json!({"name": "dana", "disabled": true})),
        (status = 404, description = "No user has that name.", body = super::openapi::ErrorBody),
    ))]
pub(super) async fn disable(
    State(state): State<AppState>,
    ActingFrom(acting): ActingFrom,
    Path(name): Path<String>,
) -> Result<Json<Disabled>, ApiError> {
    let disabled = disable_recorded(&state, &acting, name.clone()).await?;
    Ok(Json(Disabled { name, disabled }))
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
