//! `/api/v1/tokens`: list, create and revoke scoped API tokens (admin scope), each recorded
//! in the chain; and the watch that records the tokens the CLI makes or revokes while the
//! server runs (see [`crate::auth::tokens`]).

use super::{ApiError, AppState};
use crate::auth::tokens::{self, Scope, TokenError, TokenInfo, Unaudited};
use crate::model::{Category, Level, Outcome};
use crate::selfaudit::{Acting, ActingFrom};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use serde_json::{json, Value};
use std::time::Duration;

/// How often the server looks for token changes made by the CLI.
const CLI_CHANGES_EVERY: Duration = Duration::from_secs(2);

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::Name(message) => ApiError::Param {
                field: "name".into(),
                message,
            },
            TokenError::Exists(name) => ApiError::Param {
                field: "name".into(),
                message: format!("a token named {name:?} exists already"),
            },
            TokenError::Scope(got) => ApiError::Param {
                field: "scope".into(),
                message: format!("{got:?} is not one of ingest, read, admin"),
            },
            TokenError::Unknown(name) => ApiError::NotFound(format!("no token is named {name:?}")),
            TokenError::Auth(e) => {
                tracing::error!(error = %e, "token database failed");
                ApiError::Internal
            }
        }
    }
}

/// `GET /api/v1/tokens`'s answer.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct TokenList {
    /// Oldest first, revoked ones included.
    tokens: Vec<TokenInfo>,
}

/// A token to make.
// Read by `parse_create`, which names the field at fault; this type only describes it.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct TokenRequest {
    /// Letters, digits, `-`, `_` and `.`; unique.
    name: String,
    scope: Scope,
}

/// A token just made, with its secret, which is shown this once.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct NewToken {
    #[serde(flatten)]
    info: TokenInfo,
    /// The secret: send it as `Authorization: Bearer <token>`. Only its hash is stored.
    token: String,
}

/// What `DELETE /api/v1/tokens/{name}` did.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Revoked {
    name: String,
    /// `false` when it was revoked already.
    revoked: bool,
}

/// Lists the API tokens
///
/// Oldest first, without their secrets, with when each was last used.
#[utoipa::path(get, path = "/api/v1/tokens", tag = "access", operation_id = "list_tokens",
    responses((status = 200, body = TokenList, example = json!({"tokens": [{"name": "billing-app",
        "scope": "ingest", "createdAt": "2026-01-15T09:30:00Z",
        "lastUsedAt": "2026-01-15T10:02:11Z", "revokedAt": null}]}))))]
pub(super) async fn list(State(state): State<AppState>) -> Result<Json<TokenList>, ApiError> {
    let tokens: Vec<TokenInfo> = state.auth.with_tokens(tokens::list).await?;
    Ok(Json(TokenList { tokens }))
}

/// Makes an API token
///
/// `201` with the token's secret, shown this once; recorded in the chain. Scopes: `ingest`
/// (send events only), `read` (read and export, change nothing), `admin` (everything).
#[utoipa::path(post, path = "/api/v1/tokens", tag = "access", operation_id = "create_token",
    request_body(content = TokenRequest, example = json!({"name": "billing-app", "scope": "ingest"})),
    responses(
        (status = 201, body = NewToken, example = json!({"name": "billing-app", "scope": "ingest",
            "createdAt": "2026-01-15T09:30:00Z", "lastUsedAt": null, "revokedAt": null,
            "token": "twt_9b1f…"})),
        (status = 400, description = "A bad or taken `name`, or a bad `scope`.", body = super::openapi::ErrorBody),
    ))]
pub(super) async fn create(
    State(state): State<AppState>,
    ActingFrom(acting): ActingFrom,
    body: Bytes,
) -> Result<(StatusCode, Json<NewToken>), ApiError> {
    let (name, scope) = parse_create(&body)?;
    let (info, token) = create_recorded(&state, &acting, name, scope).await?;
    Ok((StatusCode::CREATED, Json(NewToken { info, token })))
}

fn parse_create(body: &[u8]) -> Result<(String, Scope), ApiError> {
    let param = |field: &str, message: String| ApiError::Param {
        field: field.into(),
        message,
    };
    let value: Value =
        serde_json::from_slice(body).map_err(|e| param("body", format!("is not JSON: {e}")))?;
    let field = |name: &str| match value.get(name) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(param(name, "must be a string".into())),
        None => Err(param(name, "is required".into())),
    };
    let name = field("name")?;
    let scope = field("scope")?;
    let scope = Scope::parse(&scope).ok_or_else(|| {
        param(
            "scope",
            format!("{scope:?} is not one of ingest, read, admin"),
        )
    })?;
    Ok((name, scope))
}

/// Revokes an API token
///
/// Its next request is refused and the sockets it opened close; recorded in the chain.
#[utoipa::path(delete, path = "/api/v1/tokens/{name}", tag = "access", operation_id = "revoke_token",
    params(("name" = String, Path, description = "The token's name.")),
    responses(
        (status = 200, body = Revoked, example = json!({"name": "billing-app", "revoked": true})),
        (status = 404, description = "No token has that name.", body = super::openapi::ErrorBody),
    ))]
pub(super) async fn revoke(
    State(state): State<AppState>,
    ActingFrom(acting): ActingFrom,
    Path(name): Path<String>,
) -> Result<Json<Revoked>, ApiError> {
    let revoked = revoke_recorded(&state, &acting, name.clone()).await?;
    Ok(Json(Revoked { name, revoked }))
}

/// Makes a token and records it in the chain as done by `acting` (REST route and dashboard).
pub(crate) async fn create_recorded(
    state: &AppState,
    acting: &Acting,
    name: String,
    scope: Scope,
) -> Result<(TokenInfo, String), TokenError> {
    let (info, secret) = state
        .auth
        .with_tokens(move |c| tokens::create(c, &name, scope, true))
        .await?;
    let change = Unaudited::Created {
        name: info.name.clone(),
        scope,
    };
    record(state, acting, &change).await;
    Ok((info, secret))
}

/// Revokes a token, recording it and closing its sockets unless it was revoked already
/// (REST route and dashboard).
pub(crate) async fn revoke_recorded(
    state: &AppState,
    acting: &Acting,
    name: String,
) -> Result<bool, TokenError> {
    let lookup = name.clone();
    let (revoked, scope) = state
        .auth
        .with_tokens(move |c| tokens::revoke_returning_scope(c, &lookup, true))
        .await?;
    if revoked {
        record(state, acting, &Unaudited::Revoked { name, scope }).await;
    }
    Ok(revoked)
}

/// Records one token change in the chain (from the REST routes, the dashboard and the CLI's
/// watch alike); a revocation also closes the sockets the token opened.
async fn record(state: &AppState, acting: &Acting, change: &Unaudited) {
    if let Unaudited::Revoked { name, .. } = change {
        state
            .auth
            .announce_revoked(crate::auth::Credential::Token(name.clone()));
    }
    let (action, verb, name, scope) = match change {
        Unaudited::Created { name, scope } => ("token.create", "created", name, scope),
        Unaudited::Revoked { name, scope } => ("token.revoke", "revoked", name, scope),
    };
    let mut metadata = serde_json::Map::new();
    metadata.insert("token".into(), json!(name));
    metadata.insert("scope".into(), json!(scope));
    crate::selfaudit::record(
        &state.store,
        acting,
        crate::selfaudit::Record {
            action,
            category: Category::Security,
            outcome: Outcome::Success,
            level: Level::Warning,
            description: format!("{verb} the {} token {name:?}", scope.as_str()),
            metadata,
        },
    )
    .await;
}

/// Records, every few seconds, the token and user changes the CLI made: it cannot append to
/// the chain while the server holds it, so it leaves them marked for the server.
pub(crate) fn watch_cli_changes(state: AppState) {
    tokio::spawn(async move {
        let cli = Acting {
            user: "cli".into(),
            ..Acting::default()
        };
        loop {
            match state.auth.with_tokens(|c| Ok(tokens::unaudited(c)?)).await {
                Ok(changes) => {
                    for change in changes {
                        record(&state, &cli, &change).await;
                        let marked = state
                            .auth
                            .with_tokens(move |c| Ok(tokens::mark_audited(c, &change)?))
                            .await;
                        if let Err(e) = marked {
                            tracing::warn!(error = %e, "could not mark a token change recorded");
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not read token changes"),
            }
            super::users::record_cli_changes(&state, &cli).await;
            tokio::time::sleep(CLI_CHANGES_EVERY).await;
        }
    });
}
