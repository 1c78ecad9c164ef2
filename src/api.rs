//! Server functions the dashboard calls: thin wrappers that take the state from context and
//! call the store or the auth layer. Compiled into both builds; bodies run on the server.

use crate::error::AppError;
use crate::model::{
    DashboardSnapshot, EventDetail, EventFilter, EventOrder, EventPage, ReplayBatch, SavedView,
};
use leptos::prelude::*;
use leptos::server_fn::codec::Json;

/// How many events the dashboard's feed shows.
pub const FEED_SIZE: usize = 50;

/// Who is calling, if they may do what needs `needed`. The router checks routes already;
/// this check is for server functions that run inside a page's server-side render, where no
/// route of their own was matched, and it hands over the principal for row scoping.
///
/// # Errors
/// [`AppError::Unauthorized`] without credentials, [`AppError::Forbidden`] when the role or
/// scope does not cover `needed`.
#[cfg(feature = "ssr")]
pub(crate) fn authorize(
    needed: crate::model::Permission,
) -> Result<crate::auth::Principal, AppError> {
    let parts = use_context::<axum::http::request::Parts>().ok_or(AppError::Internal)?;
    let principal = parts
        .extensions
        .get::<crate::auth::Principal>()
        .cloned()
        .ok_or(AppError::Unauthorized)?;
    match principal.allows(needed) {
        true => Ok(principal),
        false => Err(AppError::Forbidden(format!(
            "this needs the {} permission, which {} does not grant",
            needed.as_str(),
            principal.grant.describe()
        ))),
    }
}

/// Who is signed in, for the navigation to offer only what they may use.
///
/// # Errors
/// [`AppError::Unauthorized`] without credentials.
#[server(prefix = "/api/fn", endpoint = "whoami")]
pub async fn whoami() -> Result<crate::model::Whoami, AppError> {
    authorize(crate::model::Permission::Session).map(|p| p.whoami())
}

/// Metrics from a numeric field of the matching events, for the `/usage` page: `query` is
/// `GET /api/v1/aggregate`'s query string, and the answer the same; the `self` role's cover
/// its own events.
///
/// # Errors
/// [`AppError::BadRequest`] naming a bad parameter; [`AppError::Internal`] when the store
/// fails.
#[server(prefix = "/api/fn", endpoint = "aggregate")]
pub async fn aggregate_metrics(
    query: String,
) -> Result<crate::analytics::aggregate::Aggregate, AppError> {
    let principal = authorize(crate::model::Permission::ReadOwn)?;
    use crate::server::{ApiError, AppState};
    let state = use_context::<AppState>().ok_or(AppError::Internal)?;
    crate::server::aggregate::compute(&state, principal.owner.as_deref(), Some(&query))
        .await
        .map_err(|e| match e {
            ApiError::Param { field, message } => {
                AppError::BadRequest(format!("{field}: {message}"))
            }
            ApiError::Indexing { .. } => {
                AppError::BadRequest("the search index is catching up; try again shortly".into())
            }
            _ => AppError::Internal,
        })
}

/// The REST API's reference, from its OpenAPI document, for the `/api-docs` page.
///
/// # Errors
/// [`AppError::Unauthorized`] without credentials.
#[server(prefix = "/api/fn", endpoint = "api_reference")]
pub async fn api_reference() -> Result<crate::model::ApiReference, AppError> {
    let _ = authorize(crate::model::Permission::Session)?;
    Ok(crate::server::openapi::reference())
}

/// The newest events and the running totals, for the dashboard's first render.
///
/// # Errors
/// [`AppError::Internal`] when the store fails.
#[server(prefix = "/api/fn", endpoint = "snapshot")]
pub async fn load_dashboard() -> Result<DashboardSnapshot, AppError> {
    let _ = authorize(crate::model::Permission::ReadAll)?;
    use crate::server::AppState;
    let state = use_context::<AppState>().ok_or(AppError::Internal)?;
    state.store.snapshot(FEED_SIZE).await.map_err(|e| {
        tracing::error!(error = %e, "snapshot failed");
        AppError::Internal
    })
}

/// Summary, insights, statistics and timeline for the dashboard home: `range` is a preset
/// (`1h`, `24h`, `7d`, `30d`), `tz` the browser's IANA zone for the heatmap (the server's zone
/// when absent or unknown here; the answer names the zone it used).
///
/// # Errors
/// [`AppError::BadRequest`] for an unknown range; [`AppError::Internal`] when the store fails.
#[server(prefix = "/api/fn", endpoint = "overview", input = Json)]
pub async fn load_overview(
    range: String,
    tz: Option<String>,
) -> Result<crate::analytics::Overview, AppError> {
    let _ = authorize(crate::model::Permission::ReadAll)?;
    use crate::insights::{last_hours, parse_zone, range_hours};
    use crate::server::AppState;
    let state = use_context::<AppState>().ok_or(AppError::Internal)?;
    let hours = range_hours(&range).ok_or_else(|| {
        AppError::BadRequest(format!("range: {range:?} is not 1h, 24h, 7d or 30d"))
    })?;
    let zone = tz
        .and_then(|name| parse_zone(&name).ok())
        .unwrap_or_else(|| state.analytics.zone());
    let now = chrono::Utc::now().timestamp_millis();
    state
        .analytics
        .overview(last_hours(hours, now), zone, now)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "overview failed");
            AppError::Internal
        })
}

/// The newest alerts (up to 200), only the unacknowledged ones when asked.
///
/// # Errors
/// [`AppError::Internal`] when the alert log fails.
/// Where the background check of the hash chain stands, for the header's badge.
///
/// # Errors
/// Only when the server state is missing.
#[server(prefix = "/api/fn", endpoint = "chain")]
pub async fn chain_status() -> Result<crate::model::ChainStatus, AppError> {
    let _ = authorize(crate::model::Permission::ReadAll)?;
    use crate::server::AppState;
    let state = use_context::<AppState>().ok_or(AppError::Internal)?;
    let status = state.chain.borrow().clone();
    Ok(status)
}

#[server(prefix = "/api/fn", endpoint = "alerts", input = Json)]
pub async fn list_alerts(unacknowledged: bool) -> Result<Vec<crate::model::Alert>, AppError> {
    let _ = authorize(crate::model::Permission::ReadAll)?;
    use crate::server::AppState;
    let state = use_context::<AppState>().ok_or(AppError::Internal)?;
    state.alerts.list(200, unacknowledged).await.map_err(|e| {
        tracing::error!(error = %e, "alert list failed");
        AppError::Internal
    })
}

/// Acknowledges an alert; `None` when there is no such alert.
///
/// # Errors
/// [`AppError::Internal`] when the alert log fails.
#[server(prefix = "/api/fn", endpoint = "acknowledge", input = Json)]
pub async fn acknowledge_alert(id: u64) -> Result<Option<crate::model::Alert>, AppError> {
    let _ = authorize(crate::model::Permission::Admin)?;
    use crate::server::AppState;
    let state = use_context::<AppState>().ok_or(AppError::Internal)?;
    let alert = state
        .alerts
        .acknowledge(id, chrono::Utc::now().timestamp_millis())
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "acknowledge failed");
            AppError::Internal
        })?;
    if alert.is_some() {
        let acting = crate::selfaudit::acting_in_server_fn().await;
        crate::selfaudit::acknowledged(&state.store, &acting, id).await;
    }
    Ok(alert)
}

/// The API tokens, oldest first, without secrets (admin page).
///
/// # Errors
/// [`AppError::Internal`] when the token database fails.
#[server(prefix = "/api/fn", endpoint = "tokens")]
pub async fn list_tokens() -> Result<Vec<crate::model::TokenInfo>, AppError> {
    let _ = authorize(crate::model::Permission::Admin)?;
    use crate::server::AppState;
    let state = use_context::<AppState>().ok_or(AppError::Internal)?;
    state
        .auth
        .with_tokens(crate::auth::tokens::list)
        .await
        .map_err(token_error)
}

/// Makes an API token; its secret is in the answer and nowhere else.
///
/// # Errors
/// [`AppError::BadRequest`] naming the field for a bad or taken name or an unknown scope.
#[server(prefix = "/api/fn", endpoint = "create_token", input = Json)]
pub async fn create_token(
    name: String,
    scope: String,
) -> Result<crate::model::CreatedToken, AppError> {
    let _ = authorize(crate::model::Permission::Admin)?;
    use crate::auth::tokens::{Scope, TokenError};
    use crate::server::AppState;
    let state = use_context::<AppState>().ok_or(AppError::Internal)?;
    let scope = Scope::parse(&scope).ok_or_else(|| token_error(TokenError::Scope(scope)))?;
    let acting = crate::selfaudit::acting_in_server_fn().await;
    let name = name.trim().to_string();
    let (info, token) = crate::server::tokens::create_recorded(&state, &acting, name, scope)
        .await
        .map_err(token_error)?;
    Ok(crate::model::CreatedToken { info, token })
}

/// Revokes the API token named `name`; `false` when it was revoked already.
///
/// # Errors
/// [`AppError::NotFound`] when no token has that name.
#[server(prefix = "/api/fn", endpoint = "revoke_token", input = Json)]
pub async fn revoke_token(name: String) -> Result<bool, AppError> {
    let _ = authorize(crate::model::Permission::Admin)?;
    use crate::server::AppState;
    let state = use_context::<AppState>().ok_or(AppError::Internal)?;
    let acting = crate::selfaudit::acting_in_server_fn().await;
    crate::server::tokens::revoke_recorded(&state, &acting, name)
        .await
        .map_err(token_error)
}

/// A token change's failure in the dashboard's terms.
#[cfg(feature = "ssr")]
fn token_error(e: crate::auth::tokens::TokenError) -> AppError {
    use crate::auth::tokens::TokenError;
    match e {
        TokenError::Auth(e) => {
            tracing::error!(error = %e, "token database failed");
            AppError::Internal
        }
        TokenError::Unknown(name) => AppError::NotFound(format!("no token is named {name:?}")),
        other => AppError::BadRequest(other.to_string()),
    }
}

/// How many rows one explorer page holds.
pub const EXPLORER_PAGE: u32 = 100;
/// The explorer counts matches up to this many, so a broad query stays fast.
pub const EXPLORER_COUNT_CAP: u64 = 10_000;

/// One page of the explorer: the events matching `filter`, in `order` (event time, newest
/// first, when `None`), after `cursor`.
///
/// # Errors
/// [`AppError::BadRequest`] naming the field of a filter that does not compile (a bad `q`)
/// or a cursor made for another order; [`AppError::Internal`] when the store fails.
#[server(prefix = "/api/fn", endpoint = "events", input = Json)]
pub async fn list_events(
    filter: EventFilter,
    order: Option<EventOrder>,
    cursor: Option<String>,
) -> Result<EventPage, AppError> {
    let principal = authorize(crate::model::Permission::ReadOwn)?;
    let order = order.unwrap_or_default();
    use crate::server::AppState;
    use crate::store::{Cursor, PageRequest};
    let state = use_context::<AppState>().ok_or(AppError::Internal)?;
    let query = filter
        .compile()
        .map_err(|e| AppError::BadRequest(e.to_string()))?
        .owned_by(principal.owner.as_deref());
    let cursor = cursor
        .map(|c| Cursor::parse(&c, order))
        .transpose()
        .map_err(|e| AppError::BadRequest(format!("cursor: {e}")))?;
    let req = PageRequest {
        order,
        cursor,
        page: 1,
        limit: EXPLORER_PAGE,
        count_limit: Some(EXPLORER_COUNT_CAP),
    };
    state.store.query(query, req).await.map_err(|e| {
        tracing::error!(error = %e, "explorer query failed");
        AppError::Internal
    })
}

/// The event with this id for the detail dialog, with its seal verified on the server and
/// its related events; `None` when there is no such event.
///
/// # Errors
/// [`AppError::Internal`] when the store fails.
#[server(prefix = "/api/fn", endpoint = "event", input = Json)]
pub async fn load_event(event_id: String) -> Result<Option<EventDetail>, AppError> {
    let principal = authorize(crate::model::Permission::ReadOwn)?;
    use crate::model::EventId;
    use crate::server::AppState;
    let state = use_context::<AppState>().ok_or(AppError::Internal)?;
    state
        .store
        .detail(EventId(event_id), 10)
        .await
        .map(|d| d.and_then(|d| d.owned_by(principal.owner.as_deref())))
        .map_err(|e| {
            tracing::error!(error = %e, "event detail failed");
            AppError::Internal
        })
}

/// The most events one replay loads; a range holding more says so and plays these.
pub const REPLAY_CAP: usize = 10_000;

/// The events of a past range (the filter's `start_date`..`end_date`, required) in seq order,
/// for replay: up to [`REPLAY_CAP`], and whether the range holds more.
///
/// # Errors
/// [`AppError::BadRequest`] for a filter without both bounds or one that does not compile.
#[server(prefix = "/api/fn", endpoint = "replay", input = Json)]
pub async fn replay_events(filter: EventFilter) -> Result<ReplayBatch, AppError> {
    let principal = authorize(crate::model::Permission::ReadOwn)?;
    use crate::model::Seq;
    use crate::server::AppState;
    use std::sync::Arc;
    let state = use_context::<AppState>().ok_or(AppError::Internal)?;
    if filter.start_date.is_none() || filter.end_date.is_none() {
        return Err(AppError::BadRequest(
            "start_date, end_date: a replay needs both ends of its range".into(),
        ));
    }
    let query = filter
        .compile()
        .map_err(|e| AppError::BadRequest(e.to_string()))?
        .owned_by(principal.owner.as_deref());
    let (mut events, _) = state
        .store
        .matching_from(Arc::new(query), Seq(0), REPLAY_CAP + 1)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "replay query failed");
            AppError::Internal
        })?;
    let truncated = events.len() > REPLAY_CAP;
    events.truncate(REPLAY_CAP);
    Ok(ReplayBatch { events, truncated })
}

/// The saved explorer views, by name.
///
/// # Errors
/// [`AppError::Internal`] when the view store fails.
#[server(prefix = "/api/fn", endpoint = "views", input = Json)]
pub async fn list_views() -> Result<Vec<SavedView>, AppError> {
    let _ = authorize(crate::model::Permission::ReadOwn)?;
    use crate::server::AppState;
    let state = use_context::<AppState>().ok_or(AppError::Internal)?;
    state.views.list().await.map_err(view_error)
}

/// Saves the explorer view `query` (its URL query) as `name`, replacing a view of that name.
///
/// # Errors
/// [`AppError::BadRequest`] naming the field for an empty name or a malformed query.
#[server(prefix = "/api/fn", endpoint = "save_view", input = Json)]
pub async fn save_view(name: String, query: String) -> Result<SavedView, AppError> {
    let _ = authorize(crate::model::Permission::Admin)?;
    use crate::server::AppState;
    let state = use_context::<AppState>().ok_or(AppError::Internal)?;
    state.views.save(name, query).await.map_err(view_error)
}

/// Deletes a saved view.
///
/// # Errors
/// [`AppError::Internal`] when the view store fails.
#[server(prefix = "/api/fn", endpoint = "delete_view", input = Json)]
pub async fn delete_view(id: i64) -> Result<(), AppError> {
    let _ = authorize(crate::model::Permission::Admin)?;
    use crate::server::AppState;
    let state = use_context::<AppState>().ok_or(AppError::Internal)?;
    state.views.delete(id).await.map(|_| ()).map_err(view_error)
}

#[cfg(feature = "ssr")]
fn view_error(e: crate::views::ViewError) -> AppError {
    match e {
        crate::views::ViewError::Invalid(message) => AppError::BadRequest(message),
        other => {
            tracing::error!(error = %other, "saved views failed");
            AppError::Internal
        }
    }
}

/// The self-audit action of a dashboard sign-in, kept apart from the `auth.login` events
/// that the audited applications send.
pub const LOGIN_ACTION: &str = "dashboard.login";

/// Signs in with a user's name and password, or with the admin token (the break-glass way
/// in, and the only one before the first user exists), sets an HttpOnly, SameSite=Strict
/// session cookie, then redirects to the dashboard. Refusals are throttled per address and
/// per name, and recorded.
///
/// # Errors
/// [`AppError::BadCredentials`] for a wrong name, password or token;
/// [`AppError::LockedOut`] after repeated refusals.
#[server(prefix = "/api/fn", endpoint = "login")]
pub async fn login(
    #[server(default)] name: String,
    #[server(default)] password: String,
    #[server(default)] token: String,
) -> Result<(), AppError> {
    use crate::model::{Category, Level, Outcome};
    use crate::server::AppState;
    let state = use_context::<AppState>().ok_or(AppError::Internal)?;
    let mut acting = crate::selfaudit::acting_in_server_fn().await;
    let name = name.trim().to_string();
    let by_token = !token.trim().is_empty();
    acting.user = match by_token {
        true => "admin".into(),
        false => name.clone(),
    };
    // Token sign-ins are throttled apart from password accounts: five wrong passwords for a
    // user named `admin` must not lock the break-glass token out, nor token guesses a
    // user's password sign-in. A token is keyed by its digest, so a caller retrying one
    // wrong token is slowed wherever it comes from, while the right token is never locked
    // by someone else's guesses.
    let ip = acting.ip.clone().unwrap_or_default();
    let (address, account) = match by_token {
        true => (
            format!("token-ip:{ip}"),
            format!("token:{}", crate::auth::token_digest_hex(token.trim())),
        ),
        false => (format!("ip:{ip}"), format!("user:{}", acting.user)),
    };
    let guard = &state.auth.guard;
    let now = std::time::Instant::now();
    if let Some(left) = guard.locked(&address, now).or(guard.locked(&account, now)) {
        // Refused without looking at the secret: a locked-out guesser learns nothing.
        return Err(AppError::LockedOut(left.as_secs().max(1)));
    }
    let member = match by_token {
        true => state.auth.is_admin_token(&token).then_some(None),
        false if name.is_empty() || password.is_empty() => {
            return Err(AppError::BadRequest(
                "name, password: both are needed (or an admin token)".into(),
            ))
        }
        false => state
            .auth
            .authenticate(&name, password)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "cannot check credentials");
                AppError::Internal
            })?
            .map(Some),
    };
    let Some(member) = member else {
        let now = std::time::Instant::now();
        let by_address = guard.failed(&address, now);
        let by_account = guard.failed(&account, now);
        // Recorded before the pause, so a burst of guesses shows at once in the feed (and in
        // the failed-login detector, which counts these like any application's).
        crate::selfaudit::note(
            &state.store,
            &acting,
            LOGIN_ACTION,
            Category::Authentication,
            Outcome::Failure,
            Level::Warning,
            match by_token {
                true => "dashboard sign-in refused: wrong token".into(),
                false => "dashboard sign-in refused: wrong name or password".into(),
            },
        )
        .await;
        let account_kind = match by_token {
            true => "this token",
            false => "this account",
        };
        for (locked, whom) in [
            (by_address.locked_for, "this address"),
            (by_account.locked_for, account_kind),
        ] {
            if let Some(locked) = locked {
                crate::selfaudit::note(
                    &state.store,
                    &acting,
                    "dashboard.lockout",
                    Category::Security,
                    Outcome::Denied,
                    Level::Critical,
                    format!(
                        "sign-in locked for {} s after repeated refusals for {whom}",
                        locked.as_secs()
                    ),
                )
                .await;
            }
        }
        // Each refusal answers more slowly than the last.
        tokio::time::sleep(by_address.delay.max(by_account.delay)).await;
        return Err(AppError::BadCredentials);
    };
    guard.succeeded(&address);
    guard.succeeded(&account);
    start_session(&state, member.as_ref()).await?;
    crate::selfaudit::note(
        &state.store,
        &acting,
        LOGIN_ACTION,
        Category::Authentication,
        Outcome::Success,
        Level::Info,
        match &member {
            Some(m) => format!(
                "signed in to the dashboard as {} ({})",
                m.name,
                m.role.as_str()
            ),
            None => "signed in to the dashboard with the admin token".into(),
        },
    )
    .await;
    // Roles that may not see everyone's activity start on their own.
    let home = match member.as_ref().map(|m| crate::model::Grant::Role(m.role)) {
        Some(grant) if !grant.allows(crate::model::Permission::ReadAll) => "/events",
        _ => "/",
    };
    leptos_axum::redirect(home);
    Ok(())
}

/// Starts a session for `member` (the admin token's when `None`) and sets its cookie on the
/// answer.
#[cfg(feature = "ssr")]
async fn start_session(
    state: &crate::server::AppState,
    member: Option<&crate::auth::users::Member>,
) -> Result<(), AppError> {
    use axum::http::{header::SET_COOKIE, HeaderValue};
    let session = state.auth.create_session(member).await.map_err(|e| {
        tracing::error!(error = %e, "cannot create session");
        AppError::Internal
    })?;
    let cookie = crate::auth::session_cookie(
        &session,
        state.auth.policy().max_secs(),
        state.secure_cookies,
    );
    let cookie = HeaderValue::from_str(&cookie).map_err(|_| AppError::Internal)?;
    let response = use_context::<leptos_axum::ResponseOptions>().ok_or(AppError::Internal)?;
    response.append_header(SET_COOKIE, cookie);
    Ok(())
}

/// Whether `code` is a live one-time setup code (the setup page asks before showing its
/// form).
///
/// # Errors
/// [`AppError::Internal`] when the user database fails.
#[server(prefix = "/api/fn", endpoint = "setup_status", input = Json)]
pub async fn setup_status(code: String) -> Result<bool, AppError> {
    use crate::server::AppState;
    let state = use_context::<AppState>().ok_or(AppError::Internal)?;
    state
        .auth
        .with_users(move |c| Ok(crate::auth::users::setup_code_valid(c, &code)?))
        .await
        .map_err(user_error)
}

/// Spends the one-time setup code on the first admin, signs them in and opens the
/// dashboard.
///
/// # Errors
/// [`AppError::BadRequest`] naming the field for a bad name or password, a mismatch, or a
/// used or expired code.
#[server(prefix = "/api/fn", endpoint = "setup")]
pub async fn complete_setup(
    code: String,
    name: String,
    password: String,
    confirm: String,
) -> Result<(), AppError> {
    use crate::auth::users::{self, NewUser, Role};
    use crate::server::AppState;
    let state = use_context::<AppState>().ok_or(AppError::Internal)?;
    if password != confirm {
        return Err(AppError::BadRequest(
            "confirm: the two passwords differ".into(),
        ));
    }
    users::check_password(&password).map_err(user_error)?;
    let user = NewUser {
        name: name.trim().to_string(),
        role: Role::Admin,
        subject: None,
        password,
    };
    let secret = user.password.clone();
    let hash = tokio::task::spawn_blocking(move || users::hash_password(&secret))
        .await
        .map_err(|_| AppError::Internal)?
        .map_err(|e| {
            tracing::error!(error = %e, "cannot hash a password");
            AppError::Internal
        })?;
    let made = user.clone();
    let info = state
        .auth
        .with_users(move |c| users::complete_setup(c, &code, &made, &hash))
        .await
        .map_err(user_error)?;
    let mut acting = crate::selfaudit::acting_in_server_fn().await;
    acting.user.clone_from(&info.name);
    crate::server::users::record(
        &state,
        &acting,
        &users::Unaudited::Created {
            name: info.name.clone(),
            role: info.role,
        },
    )
    .await;
    let member = users::Member {
        name: info.name,
        role: info.role,
        subject: info.subject,
    };
    start_session(&state, Some(&member)).await?;
    leptos_axum::redirect("/");
    Ok(())
}

/// The dashboard users, oldest first, without password hashes (admin page).
///
/// # Errors
/// [`AppError::Internal`] when the user database fails.
#[server(prefix = "/api/fn", endpoint = "users")]
pub async fn list_users() -> Result<Vec<crate::model::UserInfo>, AppError> {
    use crate::server::AppState;
    authorize(crate::model::Permission::Admin)?;
    let state = use_context::<AppState>().ok_or(AppError::Internal)?;
    state
        .auth
        .with_users(crate::auth::users::list)
        .await
        .map_err(user_error)
}

/// Adds a dashboard user.
///
/// # Errors
/// [`AppError::BadRequest`] naming the field for a bad or taken name, an unknown role or a
/// short password.
#[server(prefix = "/api/fn", endpoint = "create_user", input = Json)]
pub async fn create_user(
    name: String,
    role: String,
    subject: Option<String>,
    password: String,
) -> Result<crate::model::UserInfo, AppError> {
    use crate::auth::users::{NewUser, Role, UserError};
    use crate::server::AppState;
    authorize(crate::model::Permission::Admin)?;
    let state = use_context::<AppState>().ok_or(AppError::Internal)?;
    let role = Role::parse(&role).ok_or_else(|| user_error(UserError::Role(role)))?;
    let acting = crate::selfaudit::acting_in_server_fn().await;
    let user = NewUser {
        name: name.trim().to_string(),
        role,
        subject: subject
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty()),
        password,
    };
    crate::server::users::create_recorded(&state, &acting, user)
        .await
        .map_err(user_error)
}

/// Disables the user `name` and closes their sessions; `false` when they were disabled
/// already.
///
/// # Errors
/// [`AppError::NotFound`] when no user has that name.
#[server(prefix = "/api/fn", endpoint = "disable_user", input = Json)]
pub async fn disable_user(name: String) -> Result<bool, AppError> {
    use crate::server::AppState;
    authorize(crate::model::Permission::Admin)?;
    let state = use_context::<AppState>().ok_or(AppError::Internal)?;
    let acting = crate::selfaudit::acting_in_server_fn().await;
    crate::server::users::disable_recorded(&state, &acting, name)
        .await
        .map_err(user_error)
}

/// The settings an admin may change while the server runs, and who saved them last.
///
/// # Errors
/// [`AppError::Internal`] when the settings cannot be read.
#[server(prefix = "/api/fn", endpoint = "settings")]
pub async fn load_settings() -> Result<crate::model::SettingsPage, AppError> {
    use crate::server::AppState;
    authorize(crate::model::Permission::Admin)?;
    let state = use_context::<AppState>().ok_or(AppError::Internal)?;
    crate::server::settings::page(&state)
        .await
        .map_err(settings_error)
}

/// Puts `settings` into effect, saves them over the file's and records the change.
///
/// # Errors
/// [`AppError::BadRequest`] naming the setting out of range; nothing changes then.
#[server(prefix = "/api/fn", endpoint = "save_settings", input = Json)]
pub async fn save_settings(
    settings: crate::model::RuntimeSettings,
) -> Result<crate::model::SettingsPage, AppError> {
    use crate::server::AppState;
    authorize(crate::model::Permission::Admin)?;
    let state = use_context::<AppState>().ok_or(AppError::Internal)?;
    let acting = crate::selfaudit::acting_in_server_fn().await;
    crate::server::settings::change(&state, &acting, settings)
        .await
        .map_err(settings_error)
}

#[cfg(feature = "ssr")]
fn settings_error(e: crate::server::settings::SettingsError) -> AppError {
    use crate::server::settings::SettingsError;
    match e {
        SettingsError::Invalid(message) => AppError::BadRequest(message),
        SettingsError::Auth(e) => {
            tracing::error!(error = %e, "settings failed");
            AppError::Internal
        }
    }
}

/// A user change's failure in the dashboard's terms.
#[cfg(feature = "ssr")]
fn user_error(e: crate::auth::users::UserError) -> AppError {
    use crate::auth::users::UserError;
    match e {
        UserError::Auth(e) => {
            tracing::error!(error = %e, "user database failed");
            AppError::Internal
        }
        UserError::Unknown(name) => AppError::NotFound(format!("no user is named {name:?}")),
        other => AppError::BadRequest(other.to_string()),
    }
}

/// Ends the session and clears its cookie, then redirects to the login page.
///
/// # Errors
/// [`AppError::Internal`] when the session store fails.
#[server(prefix = "/api/fn", endpoint = "logout")]
pub async fn logout() -> Result<(), AppError> {
    let _ = authorize(crate::model::Permission::Session)?;
    use crate::auth::{clear_session_cookie, session_from};
    use crate::server::AppState;
    use axum::http::{header::SET_COOKIE, HeaderMap, HeaderValue};
    let state = use_context::<AppState>().ok_or(AppError::Internal)?;
    let headers: HeaderMap = leptos_axum::extract()
        .await
        .map_err(|_| AppError::Internal)?;
    if let Some(session) = session_from(&headers) {
        state.auth.end_session(session).await.map_err(|e| {
            tracing::error!(error = %e, "cannot end session");
            AppError::Internal
        })?;
        let acting = crate::selfaudit::acting_in_server_fn().await;
        crate::selfaudit::note(
            &state.store,
            &acting,
            "dashboard.logout",
            crate::model::Category::Authentication,
            crate::model::Outcome::Success,
            crate::model::Level::Info,
            "signed out of the dashboard".into(),
        )
        .await;
    }
    let response = use_context::<leptos_axum::ResponseOptions>().ok_or(AppError::Internal)?;
    let cookie = HeaderValue::from_str(&clear_session_cookie()).map_err(|_| AppError::Internal)?;
    response.append_header(SET_COOKIE, cookie);
    leptos_axum::redirect("/login");
    Ok(())
}
