//! Server functions the dashboard calls: thin wrappers that take the state from context and
//! call the store or the auth layer. Compiled into both builds; bodies run on the server.

use crate::error::AppError;
use crate::model::DashboardSnapshot;
use leptos::prelude::*;

/// How many events the dashboard's feed shows.
pub const FEED_SIZE: usize = 50;

/// The newest events and the running totals, for the dashboard's first render.
///
/// # Errors
/// [`AppError::Internal`] when the store fails.
#[server(prefix = "/api/fn", endpoint = "snapshot")]
pub async fn load_dashboard() -> Result<DashboardSnapshot, AppError> {
    use crate::server::AppState;
    let state = use_context::<AppState>().ok_or(AppError::Internal)?;
    state.store.snapshot(FEED_SIZE).await.map_err(|e| {
        tracing::error!(error = %e, "snapshot failed");
        AppError::Internal
    })
}

/// Exchanges the admin token for an HttpOnly, SameSite=Strict session cookie, then redirects
/// to the dashboard.
///
/// # Errors
/// [`AppError::BadCredentials`] for a wrong token.
#[server(prefix = "/api/fn", endpoint = "login")]
pub async fn login(token: String) -> Result<(), AppError> {
    use crate::auth::session_cookie;
    use crate::server::AppState;
    use axum::http::{header::SET_COOKIE, HeaderValue};
    let state = use_context::<AppState>().ok_or(AppError::Internal)?;
    if !state.auth.is_admin_token(&token) {
        // A pause makes guessing slow; per-IP lockout comes with access control.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        return Err(AppError::BadCredentials);
    }
    let session = state.auth.create_session().await.map_err(|e| {
        tracing::error!(error = %e, "cannot create session");
        AppError::Internal
    })?;
    let cookie =
        HeaderValue::from_str(&session_cookie(&session, false)).map_err(|_| AppError::Internal)?;
    let response = use_context::<leptos_axum::ResponseOptions>().ok_or(AppError::Internal)?;
    response.append_header(SET_COOKIE, cookie);
    leptos_axum::redirect("/");
    Ok(())
}

/// Ends the session and clears its cookie, then redirects to the login page.
///
/// # Errors
/// [`AppError::Internal`] when the session store fails.
#[server(prefix = "/api/fn", endpoint = "logout")]
pub async fn logout() -> Result<(), AppError> {
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
    }
    let response = use_context::<leptos_axum::ResponseOptions>().ok_or(AppError::Internal)?;
    let cookie = HeaderValue::from_str(&clear_session_cookie()).map_err(|_| AppError::Internal)?;
    response.append_header(SET_COOKIE, cookie);
    leptos_axum::redirect("/login");
    Ok(())
}
