//! The HTTP server: shared state, the axum router (REST API, `/ws/audit`, server functions,
//! dashboard pages, static files), the authentication middleware and the serve loop.
//! Server build only.

pub(crate) mod aggregate;
pub mod conn;
mod dashboard;
mod events;
pub mod lifecycle;
pub mod limits;
mod logs;
pub mod metrics;
pub mod openapi;
mod otlp;
pub(crate) mod settings;
pub mod syslog;
pub mod tls;
pub(crate) mod tokens;
pub(crate) mod users;

use crate::alerts::Alerts;
use crate::auth::{self, Auth, Presented};
use crate::ingest::{self, BodyFormat, IngestError};
use crate::insights::Analytics;
use crate::live::Hub;
use crate::model::{FieldError, Health, IngestErrors, IngestReceipt, Permission, Seq, Source};
use crate::selfaudit::ActingFrom;
use crate::store::{Store, StoreError};
use crate::views::SavedViews;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{DefaultBodyLimit, FromRef, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Json, Router};
use chrono::Utc;
use leptos::config::LeptosOptions;
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Everything a request handler or server function may need. Cheap to clone: one shared
/// reference, because each request's middleware and extractors clone it several times (as a
/// struct of handles, the server spent about 4% more CPU per single-event POST; BENCHMARKS.md).
#[derive(Clone)]
pub struct AppState(pub(crate) Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] shares.
pub struct Shared {
    pub store: Store,
    pub hub: Hub,
    pub auth: Auth,
    pub views: SavedViews,
    pub analytics: Analytics,
    pub alerts: Alerts,
    /// Where the background check of the chain stands.
    pub chain: tokio::sync::watch::Receiver<crate::model::ChainStatus>,
    pub leptos_options: LeptosOptions,
    pub max_body_bytes: usize,
    /// The times an ingested event may carry, whatever its source.
    pub window: crate::ingest::TimeWindow,
    /// The catalogue of actions that must keep being audited.
    pub coverage: crate::analytics::coverage::Catalogue,
    /// What retention keeps, for the daily run and the cleanup endpoint; the Settings page
    /// changes it while the server runs.
    pub(crate) retention: Arc<std::sync::RwLock<crate::store::RetentionPolicy>>,
    /// Where the JSONL mirror writes, if it is on.
    pub mirror_dir: Option<PathBuf>,
    /// The ingest rate limit's buckets.
    pub limiter: Arc<limits::RateLimiter>,
    /// Whether session cookies carry `Secure` (the server speaks TLS).
    pub secure_cookies: bool,
    /// The browser hardening headers every answer carries.
    pub headers: Arc<SecurityHeaders>,
}

impl AppState {
    /// The retention policy in effect.
    pub fn retention(&self) -> crate::store::RetentionPolicy {
        // A poisoned lock still holds a whole policy: it is replaced, never edited in place.
        self.retention
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Puts `policy` into effect (checked by the caller).
    pub fn set_retention(&self, policy: crate::store::RetentionPolicy) {
        *self
            .retention
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = policy;
    }
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}

/// What anyone may call, by design: the health check, the API's description, signing in and
/// the first-admin setup.
pub const PUBLIC_ROUTES: &[(&str, &str)] = &[
    ("GET", "/api/health"),
    ("GET", "/api/openapi.json"),
    ("POST", "/api/fn/login"),
    ("POST", "/api/fn/setup"),
    ("POST", "/api/fn/setup_status"),
];

/// The REST and WebSocket routes that require credentials, for tests and documentation.
/// Server functions (`/api/fn/*` except login) and dashboard pages are protected too.
pub const PROTECTED_ROUTES: &[(&str, &str)] = &[
    ("POST", "/api/v1/events"),
    ("POST", "/v1/logs"),
    ("POST", "/otlp/v1/logs"),
    ("POST", "/api/v1/kubernetes/audit"),
    ("GET", "/api/v1/events"),
    ("GET", "/api/v1/events/00000000-0000-0000-0000-000000000000"),
    ("GET", "/api/v1/events/export"),
    ("GET", "/api/v1/events/levels"),
    ("GET", "/api/v1/events/categories"),
    ("GET", "/api/v1/events/actions"),
    ("GET", "/api/v1/verify"),
    ("GET", "/api/v1/logs"),
    ("DELETE", "/api/v1/events/cleanup"),
    ("GET", "/api/v1/subjects/alice/export"),
    ("POST", "/api/v1/subjects/alice/erase"),
    ("GET", "/api/v1/chain"),
    ("POST", "/api/fn/chain"),
    ("GET", "/api/v1/events/statistics"),
    ("GET", "/api/v1/aggregate"),
    ("GET", "/api/v1/coverage"),
    ("GET", "/api/dashboard/summary"),
    ("GET", "/api/dashboard/insights"),
    ("POST", "/api/fn/overview"),
    ("GET", "/api/v1/alerts"),
    ("POST", "/api/v1/alerts/1/acknowledge"),
    ("GET", "/api/v1/alerts/1/deliveries"),
    ("POST", "/api/fn/alerts"),
    ("POST", "/api/fn/acknowledge"),
    ("GET", "/ws/audit"),
    ("POST", "/api/fn/snapshot"),
    ("POST", "/api/fn/logout"),
    ("POST", "/api/fn/events"),
    ("POST", "/api/fn/event"),
    ("POST", "/api/fn/views"),
    ("POST", "/api/fn/replay"),
    ("POST", "/api/fn/save_view"),
    ("POST", "/api/fn/delete_view"),
    ("GET", "/api/v1/tokens"),
    ("POST", "/api/v1/tokens"),
    ("DELETE", "/api/v1/tokens/ci"),
    ("POST", "/api/fn/tokens"),
    ("POST", "/api/fn/create_token"),
    ("POST", "/api/fn/revoke_token"),
    ("GET", "/api/v1/users"),
    ("POST", "/api/v1/users"),
    ("DELETE", "/api/v1/users/alice"),
    ("POST", "/api/fn/users"),
    ("POST", "/api/fn/create_user"),
    ("POST", "/api/fn/disable_user"),
    ("POST", "/api/fn/whoami"),
    ("POST", "/api/fn/api_reference"),
    ("POST", "/api/fn/aggregate"),
    ("POST", "/api/fn/settings"),
    ("POST", "/api/fn/save_settings"),
];

/// The REST API and the live socket, before the dashboard's pages and server functions join
/// them (see `crate::site`); [`protect`] puts the middleware around the whole.
pub fn api_routes() -> Router<AppState> {
    documented_routes().split_for_parts().0
}

/// Every REST route with its OpenAPI description: `routes!` mounts a handler and its
/// `#[utoipa::path]` together, so the router and [`openapi::document`] cannot disagree. Add
/// routes here only this way.
fn documented_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(health))
        .routes(routes!(openapi::openapi_json))
        .routes(routes!(events::list_events, ingest_events))
        .routes(routes!(events::get_event))
        .routes(routes!(events::export_events))
        .routes(routes!(events::levels))
        .routes(routes!(events::categories))
        .routes(routes!(events::actions))
        .routes(routes!(ingest_kubernetes_audit))
        .routes(routes!(otlp::export_logs))
        .routes(routes!(otlp::export_logs_otlp_prefix))
        .routes(routes!(dashboard::statistics))
        .routes(routes!(aggregate::aggregate))
        .routes(routes!(dashboard::coverage))
        .routes(routes!(dashboard::summary))
        .routes(routes!(dashboard::insights))
        .routes(routes!(dashboard::list_alerts))
        .routes(routes!(dashboard::acknowledge_alert))
        .routes(routes!(dashboard::alert_deliveries))
        .routes(routes!(verify_chain))
        .routes(routes!(chain_status))
        .routes(routes!(lifecycle::cleanup))
        .routes(routes!(lifecycle::export_subject))
        .routes(routes!(lifecycle::erase_subject))
        .routes(routes!(logs::mirrored_logs))
        .routes(routes!(tokens::list, tokens::create))
        .routes(routes!(tokens::revoke))
        .routes(routes!(users::list, users::create))
        .routes(routes!(users::disable))
        .routes(routes!(ws_audit))
}

/// `routes` behind the middleware every answer passes: body and connection limits,
/// authentication and permissions, server functions' statuses, size limits and the browser
/// hardening headers.
pub fn protect(routes: Router<AppState>, state: AppState) -> Router {
    routes
        .layer(middleware::from_fn_with_state(
            state.clone(),
            conn::read_body,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), require_auth))
        .layer(middleware::from_fn(server_fn_status))
        .layer(middleware::from_fn_with_state(
            state.max_body_bytes,
            conn::declared_size,
        ))
        .layer(middleware::from_fn(request_limits))
        .layer(middleware::from_fn(metrics::count_requests))
        .layer(middleware::from_fn_with_state(
            state.headers.clone(),
            security_headers,
        ))
        .layer(DefaultBodyLimit::max(state.max_body_bytes))
        .with_state(state)
}

/// The hardening headers sent with every answer: a policy that keeps the dashboard out of
/// other sites' frames (unless origins are allowed to embed it) and forms, plugins off and
/// `<base>` fixed. A page adds which scripts and styles may run, around its own nonce (see
/// `app::shell`); any other answer may load nothing at all. HSTS when the server speaks TLS.
pub struct SecurityHeaders {
    /// The framing, `<base>`, form and plugin rules every answer carries.
    csp: HeaderValue,
    /// The whole policy of an answer that is not a page: it may load nothing. Made once,
    /// since most answers (ingest, the API) are of this kind.
    closed: HeaderValue,
    hsts: bool,
    /// `X-Frame-Options: DENY`, for browsers without `frame-ancestors`; only when no origin
    /// may embed the dashboard.
    deny_frames: bool,
}

impl SecurityHeaders {
    /// The headers for a server with or without TLS, which `frame_ancestors` may embed.
    ///
    /// # Errors
    /// An origin that is not `https://host[:port]` or `http://host[:port]`.
    pub fn new(tls: bool, frame_ancestors: &[String]) -> Result<SecurityHeaders, String> {
        for origin in frame_ancestors {
            let ok = origin
                .strip_prefix("https://")
                .or_else(|| origin.strip_prefix("http://"))
                .is_some_and(|host| {
                    !host.is_empty()
                        && host.chars().all(|c| {
                            c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '*')
                        })
                });
            if !ok {
                return Err(format!(
                    "frame_ancestors: {origin:?} is not an origin like https://intranet.example.com"
                ));
            }
        }
        let ancestors = match frame_ancestors.is_empty() {
            true => "'none'".to_string(),
            false => frame_ancestors.join(" "),
        };
        let csp = format!(
            "frame-ancestors {ancestors}; base-uri 'self'; form-action 'self'; object-src 'none'"
        );
        let header = |v: &str| HeaderValue::from_str(v).map_err(|e| e.to_string());
        Ok(SecurityHeaders {
            closed: header(&format!("default-src 'none'; {csp}"))?,
            csp: header(&csp)?,
            hsts: tls,
            deny_frames: frame_ancestors.is_empty(),
        })
    }
}

/// Adds the browser hardening headers to every answer, refusals and static files included.
async fn security_headers(
    State(policy): State<Arc<SecurityHeaders>>,
    req: Request,
    next: Next,
) -> Response {
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    // A page set its script and style rules around its nonce; the framing rules join them.
    let csp = match headers
        .get(header::CONTENT_SECURITY_POLICY)
        .and_then(|v| v.to_str().ok())
    {
        Some(page) => HeaderValue::from_str(&format!(
            "{page}; {}",
            policy.csp.to_str().unwrap_or_default()
        ))
        .unwrap_or_else(|_| policy.closed.clone()),
        None => policy.closed.clone(),
    };
    headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if policy.deny_frames {
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    if policy.hsts {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
    response
}

/// The longest query string accepted: explorer filters are a few hundred bytes.
pub const MAX_QUERY_BYTES: usize = 8 * 1024;
/// The most header bytes (names and values) one request may carry.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Refuses requests whose query or headers are over the limits, before anything reads
/// them (credentials included), with an answer that says which limit.
async fn request_limits(req: Request, next: Next) -> Response {
    let query = req.uri().query().map_or(0, str::len);
    if query > MAX_QUERY_BYTES {
        return ApiError::Oversized {
            status: StatusCode::URI_TOO_LONG,
            field: "query",
            size: query,
            limit: MAX_QUERY_BYTES,
        }
        .into_response();
    }
    let headers: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if headers > MAX_HEADER_BYTES {
        return ApiError::Oversized {
            status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            field: "headers",
            size: headers,
            limit: MAX_HEADER_BYTES,
        }
        .into_response();
    }
    next.run(req).await
}

/// Who may reach a path without credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    Public,
    /// API and socket: 401 without credentials.
    Api,
    /// Dashboard pages: redirect to the login page without credentials.
    Page,
}

fn classify(method: &Method, path: &str) -> Access {
    if path == "/api/health"
        || path == "/api/openapi.json"
        || path == "/login"
        || path == "/setup"
        || (method == Method::POST
            && matches!(
                path,
                "/api/fn/login" | "/api/fn/setup" | "/api/fn/setup_status"
            ))
    {
        return Access::Public;
    }
    if path.starts_with("/api/")
        || path == "/api"
        || path.starts_with("/ws/")
        || otlp::PATHS.contains(&path)
    {
        return Access::Api;
    }
    let last = path.rsplit('/').next().unwrap_or_default();
    if path.starts_with("/pkg/") || last.contains('.') {
        // Static assets: the built WASM, CSS, icons.
        return Access::Public;
    }
    Access::Page
}

/// Server functions that change what is stored or who may call.
const ADMIN_FNS: [&str; 11] = [
    "/api/fn/settings",
    "/api/fn/save_settings",
    "/api/fn/acknowledge",
    "/api/fn/save_view",
    "/api/fn/delete_view",
    "/api/fn/tokens",
    "/api/fn/create_token",
    "/api/fn/revoke_token",
    "/api/fn/users",
    "/api/fn/create_user",
    "/api/fn/disable_user",
];

/// Server functions that read events, row by row: the `self` role may call them and sees
/// its own events only.
const READ_OWN_FNS: [&str; 5] = [
    "/api/fn/aggregate",
    "/api/fn/events",
    "/api/fn/event",
    "/api/fn/replay",
    "/api/fn/views",
];

/// What a request needs. Sending events needs `ingest`; changing what is stored or who may
/// call needs `admin`; exports and the full chain walk have their own permissions; reading
/// single events (which the `self` role may, scoped to its own) is apart from reading
/// everything else (analytics, alerts, the chain's state, the mirror). Public so that the
/// scope tests walk every route a role may call from this very table.
pub fn needed_permission(method: &Method, path: &str) -> Permission {
    if method == Method::POST
        && (path == "/api/v1/events" || path == KUBERNETES_AUDIT || otlp::PATHS.contains(&path))
    {
        return Permission::Ingest;
    }
    let admin = path == "/api/v1/tokens"
        || path.starts_with("/api/v1/tokens/")
        || path == "/api/v1/users"
        || path.starts_with("/api/v1/users/")
        || method == Method::DELETE
        || (method == Method::POST
            && path.starts_with("/api/v1/")
            && (path.ends_with("/erase") || path.ends_with("/acknowledge")))
        || ADMIN_FNS.contains(&path);
    if admin {
        return Permission::Admin;
    }
    if matches!(
        path,
        "/api/fn/logout" | "/api/fn/whoami" | "/api/fn/api_reference"
    ) {
        return Permission::Session;
    }
    if path == "/api/v1/events/export"
        || (path.starts_with("/api/v1/subjects/") && path.ends_with("/export"))
    {
        return Permission::Export;
    }
    if path == "/api/v1/verify" {
        return Permission::Verify;
    }
    let read_own = match path.strip_prefix("/api/v1/events") {
        Some("") | Some("/levels") | Some("/categories") => true,
        // One event by id; the other names under /events are lists over every event.
        Some(rest) => {
            rest.starts_with('/') && rest.len() > 1 && !rest[1..].contains('/') && {
                !matches!(&rest[1..], "statistics" | "actions" | "export" | "cleanup")
            }
        }
        None => {
            // Metrics are scoped to the `self` role's own events, like the list.
            matches!(path, "/ws/audit" | "/api/v1/aggregate")
                || READ_OWN_FNS.contains(&path)
                || !path.starts_with("/api/")
        }
    };
    match read_own {
        true => Permission::ReadOwn,
        false => Permission::ReadAll,
    }
}

/// What a dashboard page needs: the overview and the alerts show everyone's activity, the
/// token and user pages manage access; the explorer and replay show events row by row.
pub fn page_permission(path: &str) -> Permission {
    match path.trim_end_matches('/') {
        "" | "/alerts" => Permission::ReadAll,
        "/tokens" | "/users" | "/settings" => Permission::Admin,
        _ => Permission::ReadOwn,
    }
}

/// Whether a state-changing request that rides on the session cookie comes from our own
/// pages. Browsers send `Origin` with every cross-origin request and every POST; `SameSite`
/// alone does not stop another port or a sibling subdomain, which count as the same site.
/// Requests without a cookie (API tokens) need no check: a browser cannot attach a bearer
/// token for another site.
fn same_origin(headers: &HeaderMap) -> bool {
    // The browser's own statement, when it makes one, is the most reliable (`Origin` may be
    // `null` on a form post, depending on the referrer policy); `none` is the user typing
    // the address or using a bookmark.
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return site == "same-origin" || site == "none";
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        // Old browsers omit both headers on same-origin form posts; a cross-site one from
        // any browser this dashboard runs in would carry them.
        return true;
    };
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    origin
        .split_once("://")
        .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host))
}

/// Gives a server function's error answer the status its [`AppError`] calls for. Leptos
/// answers every error with 500; mapped here, in one place, every server function (and each
/// one added later) answers a client's mistake with a 4xx, whatever its body returned.
async fn server_fn_status(req: Request, next: Next) -> Response {
    let called = req.uri().path().starts_with("/api/fn/");
    let response = next.run(req).await;
    let is_fn_error = response
        .headers()
        .contains_key(leptos::server_fn::error::SERVER_FN_ERROR_HEADER);
    if !called || !is_fn_error || response.status() != StatusCode::INTERNAL_SERVER_ERROR {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // An error body is a short JSON object; one over 64 KiB (or unreadable) is no error of
    // ours, and is answered as the server's failure it already claims to be.
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
        return ApiError::Internal.into_response();
    };
    if let Ok(e) = serde_json::from_slice::<crate::error::AppError>(&bytes) {
        parts.status =
            StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    }
    Response::from_parts(parts, axum::body::Body::from(bytes))
}

/// Whether a request asks to switch protocols (a WebSocket handshake).
fn is_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

async fn require_auth(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let access = classify(req.method(), req.uri().path());
    let unsafe_method = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if access == Access::Public {
        // Signing in or setting up from another site's form would sign the victim in as
        // the attacker: the public forms want our own origin too.
        if unsafe_method && !same_origin(req.headers()) {
            return ApiError::CrossOrigin("a state-changing request").into_response();
        }
        return next.run(req).await;
    }
    let headers = req.headers();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::to_string);
    let session = auth::session_from(headers).map(str::to_string);
    let query_token = (req.uri().path() == "/ws/audit")
        .then(|| req.uri().query())
        .flatten()
        .and_then(|q| {
            q.split('&')
                .find_map(|kv| kv.strip_prefix("token="))
                .map(percent_decode)
        });
    let presented = Presented {
        bearer: bearer.as_deref(),
        session: session.as_deref(),
        query_token: query_token.as_deref(),
    };
    let checked = state.auth.check(presented).await;
    // Only the cookie rides along uninvited; a bearer header or a `?token=` was put there by
    // whoever holds the secret. Decided by the credential that was accepted, not by what
    // was presented: a wrong `?token=` beside the cookie falls back to the cookie.
    if let Ok(Some(principal)) = &checked {
        if matches!(principal.credential, auth::Credential::Session(_))
            && !same_origin(req.headers())
        {
            if unsafe_method {
                return ApiError::CrossOrigin("a state-changing request").into_response();
            }
            // A page on another port or a sibling subdomain (the same site, so SameSite lets
            // the cookie through) would otherwise read the whole trail with a signed-in
            // user's cookie over the socket: browsers never open one without `Origin`.
            if is_upgrade(req.headers()) {
                return ApiError::CrossOrigin("a WebSocket upgrade").into_response();
            }
        }
    }
    match checked {
        Ok(Some(principal)) if access == Access::Page => {
            let needed = page_permission(req.uri().path());
            if !principal.allows(needed) {
                // Pages a role may not use lead to what it may: the `self` role lands on its
                // own activity in the explorer.
                return match principal.allows(Permission::ReadOwn) {
                    true => Redirect::to("/events").into_response(),
                    false => ApiError::Forbidden {
                        needed,
                        have: principal.grant,
                    }
                    .into_response(),
                };
            }
            req.extensions_mut().insert(principal);
            next.run(req).await
        }
        Ok(Some(principal)) => {
            let needed = needed_permission(req.method(), req.uri().path());
            if !principal.allows(needed) {
                return ApiError::Forbidden {
                    needed,
                    have: principal.grant,
                }
                .into_response();
            }
            // Handlers that audit what they do name who did it.
            req.extensions_mut().insert(principal);
            next.run(req).await
        }
        Ok(None) if access == Access::Page => Redirect::to("/login").into_response(),
        Ok(None) => ApiError::Unauthorized.into_response(),
        Err(e) => {
            tracing::error!(error = %e, "credential check failed");
            ApiError::Internal.into_response()
        }
    }
}

/// The actor id a request's rows are limited to (the `self` role's), from the principal
/// the auth middleware found.
pub(crate) struct Owner(pub Option<String>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Owner {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Owner(
            parts
                .extensions
                .get::<auth::Principal>()
                .and_then(|p| p.owner.clone()),
        ))
    }
}

/// Decodes `%XX` escapes (tokens are hex, but a client may escape anything).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Errors of the REST API, each with a status and a JSON body that says what to fix.
#[derive(Debug)]
pub enum ApiError {
    Unauthorized,
    /// Valid credentials whose role or scope does not cover the request.
    Forbidden {
        needed: Permission,
        have: crate::model::Grant,
    },
    /// A state-changing request or a WebSocket upgrade (which it names) with the session
    /// cookie, sent from another origin.
    CrossOrigin(&'static str),
    /// The `self` role asked for someone else's events.
    OwnOnly,
    /// A part of the request (query, headers) over its limit.
    Oversized {
        status: StatusCode,
        field: &'static str,
        size: usize,
        limit: usize,
    },
    Invalid(Vec<FieldError>),
    Param {
        field: String,
        message: String,
    },
    TooLarge(usize),
    /// Over the ingest rate limit; retry after this long.
    RateLimited(std::time::Duration),
    /// A body in a content type the route does not take: what came, and what it takes.
    UnsupportedType {
        got: String,
        accepted: &'static str,
    },
    NotFound(String),
    Full,
    Unavailable,
    /// The search index has not reached the newest events yet; retry shortly.
    Indexing {
        indexed: u64,
        head: u64,
    },
    Internal,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            ApiError::Unauthorized => {
                let body = json!({"error": "unauthorized",
                    "message": "missing or invalid credentials: send Authorization: Bearer <token>"});
                let mut r = (StatusCode::UNAUTHORIZED, Json(body)).into_response();
                r.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                return r;
            }
            ApiError::Forbidden { needed, have } => (
                StatusCode::FORBIDDEN,
                json!({"error": "forbidden", "needed": needed, "have": have.describe(),
                       "message": format!("this needs the {} permission, which {} does not grant",
                           needed.as_str(), have.describe())}),
            ),
            ApiError::Oversized {
                status,
                field,
                size,
                limit,
            } => (
                status,
                json!({"error": "too_large", "field": field,
                       "message": format!("the {field} take {size} bytes; at most {limit} are accepted")}),
            ),
            ApiError::OwnOnly => (
                StatusCode::FORBIDDEN,
                json!({"error": "forbidden", "needed": Permission::ReadAll,
                       "message": "the self role may see and export only the events where it is the actor"}),
            ),
            ApiError::CrossOrigin(what) => (
                StatusCode::FORBIDDEN,
                json!({"error": "cross_origin",
                       "message": format!("{what} with the session cookie must come from this server's own pages (Origin does not match Host)")}),
            ),
            ApiError::Invalid(errors) => {
                return (StatusCode::BAD_REQUEST, Json(IngestErrors { errors })).into_response();
            }
            ApiError::Param { field, message } => (
                StatusCode::BAD_REQUEST,
                json!({"error": "invalid_parameter", "field": field, "message": message}),
            ),
            ApiError::TooLarge(limit) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({"error": "payload_too_large",
                       "message": format!("the body is larger than the limit of {limit} bytes; split it into smaller requests")}),
            ),
            ApiError::RateLimited(after) => {
                // Whole seconds, rounded up, as the header requires.
                let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
                let body = json!({"error": "rate_limited",
                    "message": format!("too many ingest requests from this credential; retry in {secs} s (batch events into fewer requests)"),
                    "retryAfterMs": after.as_millis() as u64});
                let mut r = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
                if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
                    r.headers_mut().insert(header::RETRY_AFTER, v);
                }
                return r;
            }
            ApiError::UnsupportedType { got, accepted } => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                json!({"error": "unsupported_media_type",
                       "message": format!("Content-Type {got:?} is not accepted: use {accepted}")}),
            ),
            ApiError::NotFound(what) => (
                StatusCode::NOT_FOUND,
                json!({"error": "not_found", "message": what}),
            ),
            ApiError::Full => (
                StatusCode::INSUFFICIENT_STORAGE,
                json!({"error": "storage_full",
                       "message": "the disk or database is full; nothing from this request was stored"}),
            ),
            ApiError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": "unavailable", "message": "the store is not accepting writes; nothing from this request was stored"}),
            ),
            ApiError::Indexing { indexed, head } => {
                let body = json!({"error": "indexing",
                    "message": format!("the search index covers events through seq {indexed} of {head}; retry shortly"),
                    "indexedThrough": indexed, "headSeq": head});
                let mut r = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                return r;
            }
            ApiError::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"error": "internal", "message": "the server failed; see its log"}),
            ),
        };
        (status, Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Full => ApiError::Full,
            StoreError::Closed => ApiError::Unavailable,
            StoreError::Unreachable(detail) => {
                tracing::warn!(%detail, "the database cannot be reached");
                ApiError::Unavailable
            }
            StoreError::Indexing { indexed, head } => ApiError::Indexing { indexed, head },
            other => {
                tracing::error!(error = %other, "store failure");
                ApiError::Internal
            }
        }
    }
}

/// Tells whether the server and its store are up
///
/// `status` is `healthy` when the store accepts writes, `degraded` when it is full (ingest
/// waits and retries) or unavailable; `components` says which part. Needs no credential, for
/// load balancers and probes.
#[utoipa::path(get, path = "/api/health", tag = "meta",
    responses((status = 200, body = Health, example = json!({"status": "healthy",
        "timestamp": 1767225600000_i64, "version": "0.1.0",
        "components": {"store": "ready", "ingest": "ready", "live": "active"}}))))]
async fn health(State(state): State<AppState>) -> Json<Health> {
    let writable = state.store.is_writable();
    // A full disk is reported until a commit fits again; ingest retries by itself.
    let full = state.store.stats().full;
    let store = match (writable, full) {
        (false, _) => "unavailable",
        (true, true) => "full",
        (true, false) => "ready",
    };
    let mut components = BTreeMap::new();
    components.insert("store".to_string(), store.to_string());
    // Ingest is exactly as able as the store it writes to.
    components.insert("ingest".to_string(), store.to_string());
    components.insert("live".to_string(), "active".to_string());
    // On a cluster the store is the shared database: say so when it is what is down.
    if state.store.postgres().is_some() {
        let database = if writable { "reachable" } else { "unreachable" };
        components.insert("database".to_string(), database.to_string());
    }
    Json(Health {
        status: if store == "ready" {
            "healthy"
        } else {
            "degraded"
        }
        .to_string(),
        timestamp: Utc::now().timestamp_millis(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        components,
    })
}

fn body_format(headers: &HeaderMap) -> Result<BodyFormat, ApiError> {
    let raw = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = raw
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/json" => Ok(BodyFormat::Json),
        "application/x-ndjson"
        | "application/ndjson"
        | "application/jsonl"
        | "application/x-jsonlines" => Ok(BodyFormat::Ndjson),
        _ => Err(ApiError::UnsupportedType {
            got: raw.to_string(),
            accepted: "application/json (an object or an array) or application/x-ndjson",
        }),
    }
}

fn source_of(headers: &HeaderMap) -> Result<Source, ApiError> {
    match headers
        .get("x-trailwatch-source")
        .map(|v| v.to_str().unwrap_or(""))
    {
        None | Some("http") => Ok(Source::http()),
        Some("cli") => Ok(Source::cli()),
        // `trailwatch import` names the file its events came from.
        Some(other)
            if other.len() > "import:".len()
                && other.len() <= crate::ingest::MAX_SHORT_LEN
                && other.starts_with("import:") =>
        {
            Ok(Source(other.to_string()))
        }
        Some(other) => Err(ApiError::Param {
            field: "X-Trailwatch-Source".into(),
            message: format!("{other:?} is not one of: http, cli, import:<file>"),
        }),
    }
}

/// Takes one request from the sender's ingest budget, or refuses it (and records the refusal
/// once per burst, so a flood leaves one trace, not thousands).
async fn take_ingest_budget(
    state: &AppState,
    acting: &crate::selfaudit::Acting,
) -> Result<(), ApiError> {
    let Err(refused) = state.limiter.take(&acting.user, std::time::Instant::now()) else {
        return Ok(());
    };
    if refused.record {
        let mut metadata = serde_json::Map::new();
        metadata.insert("holder".into(), json!(acting.user));
        metadata.insert(
            "retryAfterMs".into(),
            json!(refused.retry_after.as_millis() as u64),
        );
        crate::selfaudit::record(
            &state.store,
            acting,
            crate::selfaudit::Record {
                action: "ingest.rate_limited",
                category: crate::model::Category::Security,
                outcome: crate::model::Outcome::Denied,
                level: crate::model::Level::Warning,
                description: format!(
                    "{} sent faster than the ingest limit; refused for now",
                    acting.user
                ),
                metadata,
            },
        )
        .await;
    }
    Err(ApiError::RateLimited(refused.retry_after))
}

/// Seals `events` with the credential the middleware accepted: `source` is what a sender
/// says, the submitter is what the server knows.
fn submitted_by(
    principal: Option<axum::Extension<auth::Principal>>,
    events: &mut [crate::model::AuditEvent],
) -> Result<(), ApiError> {
    let axum::Extension(principal) = principal.ok_or(ApiError::Unauthorized)?;
    for event in events {
        event.submitted_by = Some(principal.submitter.clone());
    }
    Ok(())
}

/// The request's body, or why it could not be read (over the limit: `413`).
fn body_bytes(state: &AppState, body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(state.max_body_bytes)
        } else {
            ApiError::Param {
                field: "body".into(),
                message: rejection.body_text(),
            }
        }
    })
}

/// Sends audit events
///
/// One event object, an array of them, or NDJSON (one per line). All or nothing: any invalid
/// record refuses the whole request with every field error, by record index. `201` comes only
/// once the events are on disk and sealed in the hash chain. The predecessors' field names
/// are accepted too (`userId`, `username`, `severity`, `allowed`, `entityType`, `entityId`,
/// `resourceName`, `details`). An unknown field is refused, naming it. A timestamp outside the server's
/// window (by default not before 1970, not more than 24 hours ahead) is refused naming the
/// field; a JSON object with a duplicate key is refused.
#[utoipa::path(post, path = "/api/v1/events", tag = "ingest",
    params(("X-Trailwatch-Source" = Option<String>, Header,
        description = "The channel: `http` (the default), `cli`, or `import:<file>`.")),
    request_body(description = "One event, an array of events, or NDJSON.", content(
        (openapi::EventsInput = "application/json", example = json!({
            "timestamp": "2026-01-15T09:30:00.000Z", "level": "warning",
            "category": "authentication", "action": "user.login", "outcome": "failure",
            "user": {"id": "u-1042", "username": "alice"},
            "request": {"ip": "203.0.113.7", "userAgent": "Mozilla/5.0",
                "method": "POST", "path": "/login", "statusCode": 401},
            "description": "wrong password", "metadata": {"attempt": 3}})),
        (String = "application/x-ndjson", example = json!("{\"level\":\"info\",\"category\":\"data\",\"action\":\"report.view\",\"outcome\":\"success\",\"user\":{\"id\":\"u-1\"}}\n"))
    )),
    responses(
        (status = 201, description = "Stored and sealed.", body = IngestReceipt,
            example = json!({"accepted": 1, "firstSeq": 4182, "lastSeq": 4182})),
        (status = 400, description = "Invalid records, each error naming the record and field (`IngestErrors`), or a bad header (`ErrorBody`).",
            body = IngestErrors, example = json!({"errors": [{"index": 0, "field": "level",
                "message": "\"fatal\" is not one of: debug, info, warning, error, critical"}]})),
        (status = 413, description = "The body is over the size limit.", body = openapi::ErrorBody),
        (status = 415, description = "Not JSON or NDJSON.", body = openapi::ErrorBody),
        (status = 429, description = "Over the credential's ingest rate; see `Retry-After`.", body = openapi::ErrorBody),
        (status = 503, description = "The store is unavailable; nothing was stored.", body = openapi::ErrorBody),
        (status = 507, description = "The disk or database is full; nothing was stored.", body = openapi::ErrorBody),
    ))]
async fn ingest_events(
    State(state): State<AppState>,
    ActingFrom(acting): ActingFrom,
    principal: Option<axum::Extension<auth::Principal>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    take_ingest_budget(&state, &acting).await?;
    let format = body_format(&headers)?;
    let source = source_of(&headers)?;
    let body = body_bytes(&state, body)?;
    let mut events = ingest::parse_body(&body, format, &source, state.window.at(Utc::now()))
        .map_err(|e| match e {
            IngestError::Invalid(errors) => {
                let mut records: Vec<usize> = errors.iter().map(|e| e.index).collect();
                records.dedup();
                crate::metrics::get().count_events(&source.0, false, records.len() as u64);
                ApiError::Invalid(errors)
            }
            IngestError::Empty => ApiError::Invalid(vec![FieldError {
                index: 0,
                field: String::new(),
                message: "the request holds no events".into(),
            }]),
        })?;
    submitted_by(principal, &mut events)?;
    let receipt = state.store.append(events).await?;
    Ok((StatusCode::CREATED, Json(receipt)).into_response())
}

/// Where the Kubernetes API server's audit webhook posts.
pub const KUBERNETES_AUDIT: &str = "/api/v1/kubernetes/audit";

/// Takes the Kubernetes API server's audit webhook
///
/// The `audit.k8s.io/v1` `EventList` the API server's webhook backend posts
/// (`--audit-webhook-config-file`), one event per item:
/// `user.username` becomes the actor, verb and `objectRef` the action and entity,
/// `responseStatus.code` the outcome; `auditID`, `stage` and `sourceIPs` are kept. An item
/// that cannot be read is stored as a `log.unparsed` event. `201` once on disk.
#[utoipa::path(post, path = KUBERNETES_AUDIT, tag = "ingest",
    request_body(description = "An `audit.k8s.io/v1` `EventList`.", content(
        (Object = "application/json", example = json!({"kind": "EventList",
            "apiVersion": "audit.k8s.io/v1", "items": [{"level": "Metadata",
            "auditID": "5c8c6ad1-8bd5-4c2f-9a36-0e1c1d1b2a11", "stage": "ResponseComplete",
            "requestURI": "/api/v1/namespaces/prod/secrets/db", "verb": "get",
            "user": {"username": "alice@example.com", "groups": ["system:authenticated"]},
            "sourceIPs": ["10.0.3.7"], "userAgent": "kubectl/v1.30.0",
            "objectRef": {"resource": "secrets", "namespace": "prod", "name": "db", "apiVersion": "v1"},
            "responseStatus": {"code": 200},
            "requestReceivedTimestamp": "2026-01-15T09:30:00.000000Z",
            "stageTimestamp": "2026-01-15T09:30:00.004000Z"}]}))
    )),
    responses(
        (status = 201, description = "Stored and sealed.", body = IngestReceipt,
            example = json!({"accepted": 1, "firstSeq": 4183, "lastSeq": 4183})),
        (status = 400, description = "Not an `EventList`.", body = openapi::ErrorBody),
        (status = 413, description = "The body is over the size limit.", body = openapi::ErrorBody),
        (status = 415, description = "Not `application/json`.", body = openapi::ErrorBody),
        (status = 429, description = "Over the credential's ingest rate; see `Retry-After`.", body = openapi::ErrorBody),
        (status = 503, description = "The store is unavailable; nothing was stored.", body = openapi::ErrorBody),
        (status = 507, description = "The disk or database is full; nothing was stored.", body = openapi::ErrorBody),
    ))]
async fn ingest_kubernetes_audit(
    State(state): State<AppState>,
    ActingFrom(acting): ActingFrom,
    principal: Option<axum::Extension<auth::Principal>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    take_ingest_budget(&state, &acting).await?;
    let not_json = |got: &str| ApiError::UnsupportedType {
        got: got.to_string(),
        accepted: "application/json (the API server's webhook posts it)",
    };
    let got = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !matches!(body_format(&headers), Ok(BodyFormat::Json)) {
        return Err(not_json(got));
    }
    let body = body_bytes(&state, body)?;
    let mut events =
        ingest::kubernetes::parse_batch(&body, state.window.at(Utc::now())).map_err(|message| {
            ApiError::Param {
                field: "body".into(),
                message,
            }
        })?;
    submitted_by(principal, &mut events)?;
    let receipt = state.store.append(events).await?;
    Ok((StatusCode::CREATED, Json(receipt)).into_response())
}

/// Verifies the whole hash chain now
///
/// Walks every stored event, recomputing each hash from its predecessor's, and checks the
/// signed checkpoints (which catch a truncated tail). `ok` is false with `firstBreak` naming
/// the first bad seq and what is wrong there; a failure is also recorded as a critical
/// `chain.verify` event. Takes time on a large store: `GET /api/v1/chain` gives the
/// background check's result at once.
#[utoipa::path(get, path = "/api/v1/verify", tag = "integrity",
    responses((status = 200, body = crate::store::VerifyReport, example = json!({"ok": true,
        "checked": 4183, "headSeq": 4183, "headHash": "9f2c…", "checkpoints": 41, "pruned": 0}))))]
async fn verify_chain(
    State(state): State<AppState>,
    crate::selfaudit::ActingFrom(acting): crate::selfaudit::ActingFrom,
) -> Result<Response, ApiError> {
    let report = state.store.verify().await?;
    if !report.ok {
        crate::selfaudit::note(
            &state.store,
            &acting,
            "chain.verify",
            crate::model::Category::Security,
            crate::model::Outcome::Failure,
            crate::model::Level::Critical,
            crate::integrity::failure_text(&report),
        )
        .await;
    }
    Ok(Json(report).into_response())
}

/// Tells where the background check of the chain stands
///
/// Cheap: no walk of the chain. The server re-verifies new events continuously.
#[utoipa::path(get, path = "/api/v1/chain", tag = "integrity",
    responses((status = 200, body = crate::model::ChainStatus, example = json!({
        "verifiedThrough": 4183, "checkedAt": "2026-01-15T09:30:05Z"}))))]
async fn chain_status(State(state): State<AppState>) -> Json<crate::model::ChainStatus> {
    Json(state.chain.borrow().clone())
}

#[derive(Debug, Deserialize)]
struct WsParams {
    #[serde(rename = "sinceSeq")]
    since_seq: Option<u64>,
}

/// Opens the live feed (WebSocket)
///
/// Upgrade to a WebSocket; then send `{"type": "subscribe", "sinceSeq": N, "filter": {...}}`
/// (`ClientMessage`) and receive every stored event after seq `N` that matches, then each new
/// one within milliseconds of its commit (`ServerMessage`). After a reconnect, resume from
/// the last seq seen: no gap and no duplicate. Browsers must connect from the server's own
/// origin. The `self` role receives only its own events.
#[utoipa::path(get, path = "/ws/audit", tag = "live", operation_id = "live_feed",
    params(
        ("sinceSeq" = Option<u64>, Query,
            description = "Resume after this seq (also accepted in the subscribe message)."),
        ("token" = Option<String>, Query,
            description = "An API token, for clients that cannot set `Authorization` on a WebSocket (browsers); honoured on this route only."),
    ),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol; messages are `ServerMessage` JSON."),
        (status = 400, description = "Not a WebSocket upgrade, or a bad `sinceSeq`.", body = openapi::ErrorBody),
    ))]
async fn ws_audit(
    State(state): State<AppState>,
    ActingFrom(acting): ActingFrom,
    principal: Option<axum::Extension<auth::Principal>>,
    params: Result<Query<WsParams>, axum::extract::rejection::QueryRejection>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::Param {
        field: "sinceSeq".into(),
        message: e.body_text(),
    })?;
    // The middleware put it there; without it the socket would outlive nothing.
    let axum::Extension(principal) = principal.ok_or(ApiError::Unauthorized)?;
    let hub = state.hub.clone();
    // Listening for a revocation starts now, before the client can see the socket open.
    let revocation = state.auth.revoked(&principal);
    let store = state.store.clone();
    let owner = principal.owner.clone();
    let expires_at = principal.expires_at;
    // Revoked, or past the session's absolute limit: either way the socket ends.
    let revoked = async move {
        let expiry = async {
            match expires_at {
                Some(at) => {
                    let left = at.saturating_sub(Utc::now().timestamp()).max(0);
                    tokio::time::sleep(Duration::from_secs(left.unsigned_abs())).await
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = revocation => {}
            () = expiry => {}
        }
    };
    Ok(ws
        .read_buffer_size(8 * 1024)
        .write_buffer_size(8 * 1024)
        // A subscription is a few hundred bytes; nothing a client sends needs more.
        .max_message_size(MAX_WS_MESSAGE_BYTES)
        .max_frame_size(MAX_WS_MESSAGE_BYTES)
        .on_upgrade(move |socket| async move {
            let ended = hub
                .serve(socket, params.since_seq.map(Seq), owner, revoked)
                .await;
            if ended == crate::live::Ended::Flooded {
                crate::selfaudit::note(
                    &store,
                    &acting,
                    "socket.rate_limited",
                    crate::model::Category::Security,
                    crate::model::Outcome::Denied,
                    crate::model::Level::Warning,
                    format!(
                        "{} sent WebSocket messages faster than allowed; the socket was closed",
                        principal.name
                    ),
                )
                .await;
            }
        })
        .into_response())
}

/// The largest WebSocket message or frame a client may send.
pub const MAX_WS_MESSAGE_BYTES: usize = 64 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_paths() {
        assert_eq!(classify(&Method::GET, "/api/health"), Access::Public);
        assert_eq!(classify(&Method::POST, "/api/fn/login"), Access::Public);
        assert_eq!(classify(&Method::GET, "/login"), Access::Public);
        assert_eq!(
            classify(&Method::GET, "/pkg/trailwatch.wasm"),
            Access::Public
        );
        assert_eq!(classify(&Method::GET, "/favicon.svg"), Access::Public);
        assert_eq!(classify(&Method::GET, "/"), Access::Page);
        assert_eq!(classify(&Method::POST, "/api/fn/snapshot"), Access::Api);
        assert_eq!(classify(&Method::GET, "/api/v1/events"), Access::Api);
        assert_eq!(classify(&Method::GET, "/ws/audit"), Access::Api);
    }

    #[test]
    fn embedding_origins_are_checked_and_replace_the_frame_ban() {
        let none = SecurityHeaders::new(false, &[]).unwrap();
        assert!(none
            .csp
            .to_str()
            .unwrap()
            .starts_with("frame-ancestors 'none';"));
        assert!(none.deny_frames && !none.hsts);
        let some =
            SecurityHeaders::new(true, &["https://intranet.example.com:8443".into()]).unwrap();
        assert!(some
            .csp
            .to_str()
            .unwrap()
            .starts_with("frame-ancestors https://intranet.example.com:8443;"));
        assert!(!some.deny_frames && some.hsts);
        for bad in [
            "intranet.example.com",
            "https://",
            "https://a; script-src *",
        ] {
            let err = SecurityHeaders::new(false, &[bad.to_string()])
                .err()
                .unwrap();
            assert!(err.to_string().contains("frame_ancestors"), "{bad}: {err}");
        }
    }

    #[test]
    fn permissions_of_routes_and_pages() {
        let m = |method: Method, path| needed_permission(&method, path);
        assert_eq!(m(Method::POST, "/api/v1/events"), Permission::Ingest);
        assert_eq!(m(Method::GET, "/api/v1/events"), Permission::ReadOwn);
        assert_eq!(m(Method::GET, "/api/v1/events/abc"), Permission::ReadOwn);
        assert_eq!(
            m(Method::GET, "/api/v1/events/statistics"),
            Permission::ReadAll
        );
        assert_eq!(m(Method::GET, "/api/v1/eventsabc"), Permission::ReadAll);
        assert_eq!(m(Method::GET, "/api/v1/events/export"), Permission::Export);
        assert_eq!(m(Method::DELETE, "/api/v1/users/x"), Permission::Admin);
        assert_eq!(m(Method::POST, "/api/fn/whoami"), Permission::Session);
        assert_eq!(page_permission("/"), Permission::ReadAll);
        assert_eq!(page_permission("/users/"), Permission::Admin);
        assert_eq!(page_permission("/events/abc"), Permission::ReadOwn);
    }

    #[test]
    fn the_origin_check_accepts_only_this_host() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, HeaderValue::from_static(v));
            }
            h
        };
        let host = ("host", "127.0.0.1:3000");
        assert!(same_origin(&headers(&[
            host,
            ("origin", "http://127.0.0.1:3000")
        ])));
        assert!(same_origin(&headers(&[host])), "old browsers send neither");
        assert!(!same_origin(&headers(&[
            host,
            ("origin", "http://127.0.0.1:3001")
        ])));
        assert!(!same_origin(&headers(&[host, ("origin", "null")])));
        assert!(!same_origin(&headers(&[
            host,
            ("sec-fetch-site", "same-site")
        ])));
        assert!(same_origin(&headers(&[
            host,
            ("sec-fetch-site", "same-origin"),
            ("origin", "null")
        ])));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("tw_ab%2Bc"), "tw_ab+c");
        assert_eq!(percent_decode("plain"), "plain");
        assert_eq!(percent_decode("bad%zz"), "bad%zz");
        assert_eq!(
            percent_decode("é%é"),
            "é%é",
            "multi-byte text next to % does not panic"
        );
    }
}
