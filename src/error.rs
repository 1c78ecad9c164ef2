//! The one error type server functions return, shared by the server and the browser: it says
//! what went wrong in terms the user can act on; internal details stay in the server's log.

use leptos::server_fn::codec::JsonEncoding;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use serde::{Deserialize, Serialize};

/// Why a server function failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
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
    /// The input was unusable; the message names the field.
    #[error("{0}")]
    BadRequest(String),
    /// Something failed on the server; the log has the details.
    #[error("the server could not complete the request; see its log")]
    Internal,
    /// The call itself failed (network, encoding).
    #[error("request failed: {0}")]
    Transport(String),
}

impl FromServerFnError for AppError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        AppError::Transport(value.to_string())
    }
}
