//! The one error type server functions return, shared by the server and the browser: it says
//! what went wrong in terms the user can act on; internal details stay in the server's log.
//! On the wire it has the REST API's error body (`{"error": code, "message": …}`), and the
//! server answers it with the status [`AppError::status`] gives.

use leptos::server_fn::codec::JsonEncoding;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use serde::{Deserialize, Serialize};

/// Why a server function failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(into = "ErrorBody", from = "ErrorBody")]
pub enum AppError {
    /// No valid session or token came with the request.
    #[error("you are not signed in")]
    Unauthorized,
    /// The credentials given at login were wrong.
    #[error("those credentials are not valid")]
    BadCredentials,
    /// Signed in, but the role or scope does not allow this; the message says what it needs.
    #[error("{0}")]
    Forbidden(String),
    /// Too many refused sign-ins from this address; it may try again after this many seconds.
    #[error("too many refused sign-ins from this address; try again in {0} s")]
    LockedOut(u64),
    /// The input was unusable; the message names the field (`field: what is wrong`).
    #[error("{0}")]
    BadRequest(String),
    /// What the input names does not exist; the message says what.
    #[error("{0}")]
    NotFound(String),
    /// Something failed on the server; the log has the details.
    #[error("the server could not complete the request; see its log")]
    Internal,
    /// The call itself failed (network, encoding).
    #[error("request failed: {0}")]
    Transport(String),
}

impl AppError {
    /// The HTTP status a server function answers this error with: a client's mistake is a
    /// 4xx, only the server's own failure a 5xx.
    pub fn status(&self) -> u16 {
        match self {
            AppError::Unauthorized | AppError::BadCredentials => 401,
            AppError::Forbidden(_) => 403,
            AppError::LockedOut(_) => 429,
            AppError::BadRequest(_) => 400,
            AppError::NotFound(_) => 404,
            AppError::Internal | AppError::Transport(_) => 500,
        }
    }

    /// The machine-readable code of the error body, as the REST API names it.
    fn code(&self) -> &'static str {
        match self {
            AppError::Unauthorized => "unauthorized",
            AppError::BadCredentials => "bad_credentials",
            AppError::Forbidden(_) => "forbidden",
            AppError::LockedOut(_) => "locked_out",
            AppError::BadRequest(_) => "invalid_parameter",
            AppError::NotFound(_) => "not_found",
            AppError::Internal => "internal",
            AppError::Transport(_) => "transport",
        }
    }
}

impl FromServerFnError for AppError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        match value {
            // Arguments that do not decode are the caller's mistake, not the server's.
            ServerFnErrorErr::Args(m)
            | ServerFnErrorErr::MissingArg(m)
            | ServerFnErrorErr::Deserialization(m) => {
                AppError::BadRequest(format!("arguments: {m}"))
            }
            other => AppError::Transport(other.to_string()),
        }
    }
}

/// The REST API's error body: `error` is the code, `message` says what to fix, `field` names
/// the input at fault when the message starts with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    pub error: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Seconds until a locked-out sign-in may try again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

impl From<AppError> for ErrorBody {
    fn from(e: AppError) -> ErrorBody {
        let error = e.code().to_string();
        let retry_after = match e {
            AppError::LockedOut(secs) => Some(secs),
            _ => None,
        };
        let message = match e {
            AppError::Forbidden(m)
            | AppError::BadRequest(m)
            | AppError::NotFound(m)
            | AppError::Transport(m) => m,
            other => other.to_string(),
        };
        let field = (error == "invalid_parameter")
            .then(|| leading_field(&message))
            .flatten();
        ErrorBody {
            error,
            message,
            field,
            retry_after,
        }
    }
}

impl From<ErrorBody> for AppError {
    fn from(b: ErrorBody) -> AppError {
        match b.error.as_str() {
            "unauthorized" => AppError::Unauthorized,
            "bad_credentials" => AppError::BadCredentials,
            "forbidden" => AppError::Forbidden(b.message),
            "locked_out" => AppError::LockedOut(b.retry_after.unwrap_or(60)),
            "invalid_parameter" => AppError::BadRequest(b.message),
            "not_found" => AppError::NotFound(b.message),
            "internal" => AppError::Internal,
            _ => AppError::Transport(b.message),
        }
    }
}

/// The field a message of the form `field: what is wrong` names (`a.b`, or a list such as
/// `start_date, end_date`).
fn leading_field(message: &str) -> Option<String> {
    let (head, _) = message.split_once(": ")?;
    let ok = !head.is_empty()
        && head
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ',' | ' ' | '-'));
    ok.then(|| head.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_travel_as_the_rest_body_and_come_back_whole() {
        let all = [
            AppError::Unauthorized,
            AppError::BadCredentials,
            AppError::Forbidden("needs admin".into()),
            AppError::LockedOut(120),
            AppError::BadRequest("q: unknown field nope".into()),
            AppError::NotFound("no token is named \"x\"".into()),
            AppError::Internal,
            AppError::Transport("offline".into()),
        ];
        for e in all {
            let json = serde_json::to_value(&e).unwrap();
            assert!(
                json["error"].is_string() && json["message"].is_string(),
                "{json}"
            );
            assert_eq!(serde_json::from_value::<AppError>(json).unwrap(), e);
        }
        let body = serde_json::to_value(AppError::BadRequest("q: bad".into())).unwrap();
        assert_eq!(body["error"], "invalid_parameter");
        assert_eq!(body["field"], "q");
        let locked = serde_json::to_value(AppError::LockedOut(60)).unwrap();
        assert_eq!(
            (&locked["error"], &locked["retryAfter"]),
            (&"locked_out".into(), &60.into())
        );
    }

    #[test]
    fn client_mistakes_are_4xx() {
        assert_eq!(AppError::BadRequest(String::new()).status(), 400);
        assert_eq!(AppError::NotFound(String::new()).status(), 404);
        assert_eq!(AppError::Internal.status(), 500);
        assert_eq!(
            AppError::from_server_fn_error(ServerFnErrorErr::Args("x".into())).status(),
            400
        );
    }

    #[test]
    fn only_a_leading_name_is_a_field() {
        assert_eq!(leading_field("cursor: not a cursor"), Some("cursor".into()));
        assert_eq!(
            leading_field("start_date, end_date: both"),
            Some("start_date, end_date".into())
        );
        assert_eq!(leading_field("the name \"x\": taken"), None);
        assert_eq!(leading_field("no colon here"), None);
    }
}
