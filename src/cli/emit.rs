//! `trailwatch emit`: sends one event to a running server over the HTTP API, as a sender
//! would, and prints the receipt. Server build only (it is part of the one binary).

use super::config::{EmitArgs, EmitKind, FileConfig, DEFAULT_DATA_DIR};
use crate::auth::ADMIN_TOKEN_FILE;
use crate::model::IngestReceipt;
use serde_json::{json, Map, Value};
use std::path::PathBuf;

/// Why an event could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum EmitError {
    #[error("give --action, or use `trailwatch emit test \"message\"`")]
    NoAction,
    #[error("no token: pass --token, set TRAILWATCH_TOKEN, or run where {0} exists")]
    NoToken(PathBuf),
    #[error("cannot reach {url}: {source}")]
    Connect { url: String, source: reqwest::Error },
    #[error("the server refused the event ({status}): {body}")]
    Refused { status: u16, body: String },
}

/// The server URL and token a client command uses: the flags (or their environment
/// variables), then the settings file, then the local server and the admin token in the data
/// directory.
///
/// # Errors
/// No token was given and the data directory holds none.
pub fn target(
    url: Option<String>,
    token: Option<String>,
    data_dir: Option<PathBuf>,
    file: FileConfig,
) -> Result<(String, String), EmitError> {
    let url = url
        .or(file.url)
        .unwrap_or_else(|| "http://127.0.0.1:3000".to_string());
    let token = match token {
        Some(t) => t,
        None => {
            let dir = data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| DEFAULT_DATA_DIR.into());
            let path = dir.join(ADMIN_TOKEN_FILE);
            std::fs::read_to_string(&path)
                .map(|t| t.trim().to_string())
                .map_err(|_| EmitError::NoToken(path))?
        }
    };
    Ok((url, token))
}

/// The JSON body `emit` sends for these arguments.
pub fn event_body(args: &EmitArgs) -> Result<Value, EmitError> {
    let mut event = Map::new();
    match &args.kind {
        Some(EmitKind::Test { message }) => {
            event.insert("action".into(), json!("audit.test"));
            event.insert("category".into(), json!("system_management"));
            event.insert("description".into(), json!(message));
        }
        None => {
            let action = args.action.as_deref().ok_or(EmitError::NoAction)?;
            event.insert("action".into(), json!(action));
        }
    }
    let mut put = |key: &str, value: &Option<String>| {
        if let Some(v) = value {
            event.insert(key.to_string(), json!(v));
        }
    };
    put("outcome", &args.outcome);
    put("level", &args.level);
    put("category", &args.category);
    put("description", &args.description);
    if let Some(user) = &args.user {
        event.insert("user".into(), json!({ "id": user }));
    }
    if let Some(risk) = args.risk {
        event.insert("riskScore".into(), json!(risk));
    }
    Ok(Value::Object(event))
}

/// Sends the event and returns the server's receipt.
///
/// # Errors
/// No action or token, the server cannot be reached, or it refused the event (the message
/// includes the server's explanation).
pub async fn emit(args: EmitArgs, file: FileConfig) -> Result<IngestReceipt, EmitError> {
    let body = event_body(&args)?;
    let (url, token) = target(
        args.url.clone(),
        args.token.clone(),
        args.data_dir.clone(),
        file,
    )?;
    let body = serde_json::to_vec(&body).map_err(|e| EmitError::Refused {
        status: 0,
        body: e.to_string(),
    })?;
    let client = reqwest::Client::new();
    send(&client, &url, &token, "cli", "application/json", body).await
}

/// POSTs `body` (of `content_type`) to the server's ingest endpoint as `source` and returns
/// its receipt.
///
/// # Errors
/// The server cannot be reached or refused the events (with its explanation).
pub async fn send(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    source: &str,
    content_type: &str,
    body: Vec<u8>,
) -> Result<IngestReceipt, EmitError> {
    let endpoint = format!("{}/api/v1/events", url.trim_end_matches('/'));
    let response = client
        .post(&endpoint)
        .bearer_auth(token)
        .header("X-Trailwatch-Source", source)
        .header(reqwest::header::CONTENT_TYPE, content_type)
        .body(body)
        .send()
        .await
        .map_err(|source| EmitError::Connect {
            url: endpoint.clone(),
            source,
        })?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(EmitError::Refused {
            status: status.as_u16(),
            body: text,
        });
    }
    serde_json::from_str(&text).map_err(|_| EmitError::Refused {
        status: status.as_u16(),
        body: text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::config::{Cli, Command};
    use clap::Parser;

    fn args(argv: &[&str]) -> EmitArgs {
        match Cli::parse_from(argv).command {
            Command::Emit(a) => a,
            other => panic!("expected emit, got {other:?}"),
        }
    }

    #[test]
    fn flags_become_event_fields() {
        let body = event_body(&args(&[
            "trailwatch",
            "emit",
            "--action",
            "file.read",
            "--user",
            "alice",
            "--outcome",
            "denied",
            "--description",
            "tried /etc/shadow",
            "--risk",
            "90",
        ]))
        .unwrap();
        assert_eq!(
            body,
            json!({"action": "file.read", "user": {"id": "alice"}, "outcome": "denied",
                   "description": "tried /etc/shadow", "riskScore": 90})
        );
    }

    #[test]
    fn test_subcommand_sends_a_test_entry() {
        let body = event_body(&args(&[
            "trailwatch",
            "emit",
            "test",
            "Live streaming test",
        ]))
        .unwrap();
        assert_eq!(body["action"], "audit.test");
        assert_eq!(body["description"], "Live streaming test");
    }

    #[test]
    fn an_action_is_required() {
        assert!(matches!(
            event_body(&args(&["trailwatch", "emit"])),
            Err(EmitError::NoAction)
        ));
    }
}
