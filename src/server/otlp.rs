//! `POST /v1/logs` (also under `/otlp/v1/logs`, where collectors put an `otlphttp` base path):
//! OpenTelemetry log exports over HTTP, in protobuf or JSON, gzip or not. The same credential,
//! permission (`ingest`), rate limit and body limit as `POST /api/v1/events`; answers as the
//! OTLP/HTTP specification says, so exporters retry what may be retried and drop nothing else
//! silently. The mapping itself is [`crate::ingest::otlp`].

use super::{ApiError, AppState};
use crate::auth;
use crate::ingest::otlp::{self, Encoding};
use crate::selfaudit::ActingFrom;
use crate::store::StoreError;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use std::io::Read;

/// The paths an exporter may post logs to.
pub const PATHS: [&str; 2] = ["/v1/logs", "/otlp/v1/logs"];

/// How long a refused export is told to wait before it tries again (the store is down or full).
const RETRY_AFTER_SECS: &str = "5";

/// The two OTLP routes, one handler each so each has its own OpenAPI operation.
macro_rules! otlp_route {
    ($name:ident, $path:expr) => {
        /// Sends OpenTelemetry logs (OTLP/HTTP)
        ///
        /// What an OpenTelemetry SDK's or Collector's OTLP/HTTP log exporter posts, in
        /// protobuf (`application/x-protobuf`) or JSON, optionally gzip-compressed. Each log
        /// record becomes one event (the mapping is in the README): `event.name` or
        /// `event.action` → action, severity → level, body → description, `user.id` →
        /// actor, `client.address`, `user_agent.original`, `http.*` and `url.path` →
        /// request, trace id → correlation id, resource attributes → system, the rest →
        /// metadata. Records that cannot be stored are counted in `partialSuccess` with the
        /// reason; the others are on disk when `200` comes. Refusals are `google.rpc.Status`
        /// in the request's encoding, and `429`/`503` carry `Retry-After`, as the OTLP
        /// specification says.
        #[utoipa::path(post, path = $path, tag = "ingest",
            request_body(description = "An `ExportLogsServiceRequest`.", content(
                ("application/x-protobuf"),
                (Object = "application/json", example = json!({"resourceLogs": [{
                    "resource": {"attributes": [{"key": "service.name",
                        "value": {"stringValue": "billing"}}]},
                    "scopeLogs": [{"logRecords": [{"timeUnixNano": "1768469400000000000",
                        "severityNumber": 13, "severityText": "WARN",
                        "body": {"stringValue": "refund above the limit"},
                        "attributes": [
                            {"key": "event.name", "value": {"stringValue": "refund.create"}},
                            {"key": "user.id", "value": {"stringValue": "u-1042"}}]}]}]}]})),
            )),
            params(("Content-Encoding" = Option<String>, Header,
                description = "`gzip` for a compressed body.")),
            responses(
                (status = 200, description = "Stored; `partialSuccess` counts and explains the records refused.", content(
                    ("application/x-protobuf"),
                    (Object = "application/json", example = json!({"partialSuccess": {}})),
                )),
                (status = 400, description = "Not an `ExportLogsServiceRequest` (`google.rpc.Status`)."),
                (status = 413, description = "The body, inflated, is over the size limit."),
                (status = 415, description = "Neither protobuf nor JSON."),
                (status = 429, description = "Over the credential's ingest rate; see `Retry-After`."),
                (status = 503, description = "The store is unavailable or full; nothing was stored; see `Retry-After`."),
            ))]
        pub(super) async fn $name(
            state: State<AppState>,
            acting: ActingFrom,
            principal: Option<axum::Extension<auth::Principal>>,
            headers: HeaderMap,
            body: Result<Bytes, BytesRejection>,
        ) -> Result<Response, ApiError> {
            export(state, acting, principal, headers, body).await
        }
    };
}

otlp_route!(export_logs, PATHS[0]);
otlp_route!(export_logs_otlp_prefix, PATHS[1]);

/// Both routes' work.
async fn export(
    State(state): State<AppState>,
    ActingFrom(acting): ActingFrom,
    principal: Option<axum::Extension<auth::Principal>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    super::take_ingest_budget(&state, &acting).await?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(encoding) = Encoding::from_content_type(content_type) else {
        return Ok(refuse(
            Encoding::Json,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &format!(
                "Content-Type {content_type:?} is not an OTLP encoding: \
                 use application/x-protobuf or application/json"
            ),
        ));
    };
    let body = super::body_bytes(&state, body)?;
    let body = match headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("" | "identity") => body,
        Some("gzip") => match gunzip(&body, state.max_body_bytes) {
            Ok(inflated) => Bytes::from(inflated),
            Err(Inflate::TooLarge) => return Err(ApiError::TooLarge(state.max_body_bytes)),
            Err(Inflate::Corrupt(e)) => {
                return Ok(refuse(
                    encoding,
                    StatusCode::BAD_REQUEST,
                    &format!("the gzip body cannot be read: {e}"),
                ))
            }
        },
        Some(other) => {
            return Ok(refuse(
                encoding,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                &format!("Content-Encoding {other:?} is not accepted: send gzip or no encoding"),
            ))
        }
    };
    let request = match otlp::decode(&body, encoding) {
        Ok(request) => request,
        Err(message) => return Ok(refuse(encoding, StatusCode::BAD_REQUEST, &message)),
    };
    let mut mapped = otlp::map_request(&request, state.window.at(Utc::now()));
    super::submitted_by(principal, &mut mapped.events)?;
    if mapped.rejected > 0 {
        crate::metrics::get().count_events(otlp::SOURCE, false, mapped.rejected as u64);
    }
    if !mapped.events.is_empty() {
        let events = std::mem::take(&mut mapped.events);
        if let Err(e) = state.store.append(events).await {
            return Ok(match e {
                // OTLP exporters retry 503 (with its Retry-After) and drop a 507: a full disk
                // or an unreachable database passes, and the records must not be lost.
                StoreError::Full | StoreError::Closed | StoreError::Unreachable(_) => {
                    let mut r = refuse(
                        encoding,
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the store is not accepting writes; nothing from this request was stored",
                    );
                    r.headers_mut().insert(
                        header::RETRY_AFTER,
                        HeaderValue::from_static(RETRY_AFTER_SECS),
                    );
                    r
                }
                other => ApiError::from(other).into_response(),
            });
        }
    }
    let body = otlp::response(encoding, mapped.partial_success());
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, encoding.content_type())],
        body,
    )
        .into_response())
}

/// A refused export: its status and a `google.rpc.Status` saying why.
fn refuse(encoding: Encoding, status: StatusCode, message: &str) -> Response {
    let body = otlp::status(encoding, otlp::INVALID_ARGUMENT, message);
    (
        status,
        [(header::CONTENT_TYPE, encoding.content_type())],
        body,
    )
        .into_response()
}

enum Inflate {
    TooLarge,
    Corrupt(std::io::Error),
}

/// The inflated body, refused past `limit` bytes: a small gzip body may inflate to gigabytes,
/// and the limit on what is sent must hold for what is read.
fn gunzip(body: &[u8], limit: usize) -> Result<Vec<u8>, Inflate> {
    let mut out = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    flate2::read::GzDecoder::new(body)
        .take(cap)
        .read_to_end(&mut out)
        .map_err(Inflate::Corrupt)?;
    if out.len() > limit {
        return Err(Inflate::TooLarge);
    }
    Ok(out)
}
