//! `GET /api/v1/logs`: the JSONL mirror's files (see [`crate::mirror`]). Without `date`, the
//! days there are; with `?date=YYYY-MM-DD`, that day's file, streamed.

use super::{percent_decode, ApiError, AppState};
use crate::model::{Category, Level, Outcome};
use crate::selfaudit::ActingFrom;
use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::NaiveDate;
use serde::Serialize;
use std::io::Read;

/// How much of the file is read per chunk sent.
const CHUNK: usize = 64 * 1024;

/// One day of the mirror, as the listing gives it.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct MirrorDay {
    /// `YYYY-MM-DD`, UTC.
    date: String,
    bytes: u64,
    /// Where to download it.
    url: String,
}

/// The mirror's days, as `GET /api/v1/logs` without `date` answers.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct MirrorDays {
    /// Oldest first.
    days: Vec<MirrorDay>,
}

/// Lists or downloads the JSONL mirror's days
///
/// With the server's `--mirror-dir`, every stored event is also written to one JSON Lines
/// file per UTC day. Without `date`, the days there are; with it, that day's file, streamed
/// (the download is recorded in the chain).
#[utoipa::path(get, path = "/api/v1/logs", tag = "lifecycle",
    params(("date" = Option<String>, Query, description = "A day, `YYYY-MM-DD` (UTC), to download.")),
    responses(
        (status = 200, description = "The days (no `date`), or that day's events as JSON Lines.", content(
            (MirrorDays = "application/json", example = json!({"days": [{"date": "2026-01-15",
                "bytes": 48213, "url": "/api/v1/logs?date=2026-01-15"}]})),
            (String = "application/x-ndjson"),
        )),
        (status = 400, description = "An unknown parameter or a bad date.", body = super::openapi::ErrorBody),
        (status = 404, description = "The mirror is off, or nothing was mirrored that day.", body = super::openapi::ErrorBody),
    ))]
pub(super) async fn mirrored_logs(
    State(state): State<AppState>,
    ActingFrom(acting): ActingFrom,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let mut date = None;
    for pair in raw
        .as_deref()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match percent_decode(name).as_str() {
            "date" if date.is_none() => date = Some(percent_decode(value)),
            "date" => {
                return Err(ApiError::Param {
                    field: "date".into(),
                    message: "is given more than once".into(),
                })
            }
            other => {
                return Err(ApiError::Param {
                    field: other.to_string(),
                    message: "unknown parameter; known: date".into(),
                })
            }
        }
    }
    let Some(dir) = state.mirror_dir.clone() else {
        return Err(ApiError::NotFound(
            "the JSONL mirror is off: start the server with --mirror-dir DIR".into(),
        ));
    };
    let Some(date) = date else {
        let days = tokio::task::spawn_blocking({
            let dir = dir.clone();
            move || crate::mirror::days(&dir)
        })
        .await
        .map_err(|_| ApiError::Internal)?
        .map_err(|e| {
            tracing::error!(error = %e, "cannot list the mirror directory");
            ApiError::Internal
        })?;
        let days = days
            .into_iter()
            .map(|(day, bytes)| MirrorDay {
                date: day.to_string(),
                bytes,
                url: format!("/api/v1/logs?date={day}"),
            })
            .collect();
        return Ok(Json(MirrorDays { days }).into_response());
    };
    let day = NaiveDate::parse_from_str(date.trim(), "%Y-%m-%d").map_err(|_| ApiError::Param {
        field: "date".into(),
        message: format!("{date:?} is not a date like 2026-11-23"),
    })?;
    let path = crate::mirror::day_file(&dir, day);
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ApiError::NotFound(format!(
                "no events were mirrored on {day}"
            )))
        }
        Err(e) => {
            tracing::error!(error = %e, path = %path.display(), "cannot open a mirror file");
            return Err(ApiError::Internal);
        }
    };
    crate::selfaudit::note(
        &state.store,
        &acting,
        "logs.download",
        Category::DataManagement,
        Outcome::Success,
        Level::Info,
        format!("downloaded the mirrored events of {day}"),
    )
    .await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::task::spawn_blocking(move || {
        let mut file = file;
        loop {
            let mut buf = vec![0; CHUNK];
            match file.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    buf.truncate(n);
                    if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("inline; filename=\"trailwatch-{day}.jsonl\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}
