//! Prometheus: `GET /metrics` on its own listen address (`--metrics-addr`), so scrapers need
//! no token and the address can stay on a private network; and the middleware that counts
//! every answer by route and status. The metrics themselves are [`crate::metrics`].

use super::AppState;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::net::SocketAddr;
use std::sync::LazyLock;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The OpenMetrics text format's content type.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Prometheus's classic text format's.
const CLASSIC: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Counts each answer under its route's template, so ids and names do not make a label value
/// each.
pub(super) async fn count_requests(req: Request, next: Next) -> Response {
    let method = req.method().as_str().to_string();
    let route = route_label(req.uri().path());
    let response = next.run(req).await;
    let status = response.status();
    // Paths no route has (probes, typos) share one label rather than making one each.
    let route = match status == axum::http::StatusCode::NOT_FOUND && route.starts_with('/') {
        true => "unmatched".to_string(),
        false => route,
    };
    crate::metrics::get()
        .requests
        .get_or_create(&crate::metrics::RequestLabels {
            method,
            route,
            status: status.as_u16().to_string(),
        })
        .inc();
    response
}

/// The REST routes' templates, from the OpenAPI document the router is built from, split into
/// segments; literal ones first, so `/api/v1/events/export` is not taken for an event's id.
static TEMPLATES: LazyLock<Vec<(String, Vec<String>)>> = LazyLock::new(|| {
    let mut templates: Vec<(String, Vec<String>)> = super::openapi::document()["paths"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(t, _)| (t.clone(), t.split('/').map(str::to_string).collect()))
        .collect();
    templates.sort_by_key(|(t, _)| t.matches('{').count());
    templates
});

/// The route template of `path`: the API's paths with their parameters named, the dashboard's
/// pages as `page`, and its files as `static`.
fn route_label(path: &str) -> String {
    let segments: Vec<&str> = path.split('/').collect();
    let fits = |template: &[String]| {
        template.len() == segments.len()
            && template
                .iter()
                .zip(&segments)
                .all(|(t, s)| t == s || (t.starts_with('{') && !s.is_empty()))
    };
    if let Some((template, _)) = TEMPLATES.iter().find(|(_, t)| fits(t)) {
        return template.clone();
    }
    match segments.get(1..).unwrap_or_default() {
        // Server functions, and API paths no route has (`count_requests` labels their 404s).
        ["api", ..] | ["ws", ..] => path.to_string(),
        ["pkg", ..] => "static".into(),
        [.., last] if last.contains('.') => "static".into(),
        _ => "page".into(),
    }
}

/// `GET /metrics`: sets the gauges that are read rather than kept, then encodes everything,
/// in OpenMetrics when the scraper asks for it (Prometheus does) and in the classic text
/// format otherwise (`curl`, `promtool`).
async fn scrape(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let m = crate::metrics::get();
    let chain = state.chain.borrow().clone();
    m.chain_ok.set(match (chain.is_broken(), chain.checked_at) {
        (true, _) => -1,
        (false, Some(_)) => 1,
        (false, None) => 0,
    });
    let head = state.store.committed_head().0;
    m.chain_head.set(i64::try_from(head).unwrap_or(i64::MAX));
    let indexed = state.store.indexed_through().0;
    m.index_lag
        .set(i64::try_from(head.saturating_sub(indexed)).unwrap_or(i64::MAX));
    match state.store.database_bytes().await {
        Ok(bytes) => {
            m.database_bytes.set(bytes);
        }
        Err(e) => tracing::warn!(error = %e, "database size unknown for /metrics"),
    }
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    match openmetrics {
        true => ([(header::CONTENT_TYPE, OPENMETRICS)], m.encode()).into_response(),
        false => ([(header::CONTENT_TYPE, CLASSIC)], m.encode_classic()).into_response(),
    }
}

/// The metrics listener; dropping it stops it.
pub struct MetricsListener {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for MetricsListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds `addr` and serves `GET /metrics` there.
///
/// # Errors
/// The address cannot be bound.
pub async fn start(state: AppState, addr: SocketAddr) -> Result<MetricsListener, String> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("metrics address {addr}: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("metrics address {addr}: {e}"))?;
    let app = Router::new()
        .route("/metrics", get(scrape))
        .with_state(state);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the metrics listener stopped");
        }
    });
    tracing::info!(%addr, "metrics at /metrics");
    Ok(MetricsListener { addr, task })
}

#[cfg(test)]
mod tests {
    use super::route_label;

    #[test]
    fn routes_are_labelled_by_template() {
        for (path, label) in [
            ("/api/v1/events", "/api/v1/events"),
            ("/api/v1/events/export", "/api/v1/events/export"),
            ("/api/v1/events/0190-abc", "/api/v1/events/{event_id}"),
            (
                "/api/v1/subjects/alice/erase",
                "/api/v1/subjects/{user_id}/erase",
            ),
            ("/api/v1/tokens/ci", "/api/v1/tokens/{name}"),
            ("/v1/logs", "/v1/logs"),
            ("/api/openapi.json", "/api/openapi.json"),
            (
                "/api/v1/alerts/7/deliveries",
                "/api/v1/alerts/{id}/deliveries",
            ),
            ("/api/fn/events", "/api/fn/events"),
            ("/events", "page"),
            ("/events/0190-abc", "page"),
            ("/pkg/trailwatch.wasm", "static"),
            ("/favicon.ico", "static"),
        ] {
            assert_eq!(route_label(path), label, "{path}");
        }
    }
}
