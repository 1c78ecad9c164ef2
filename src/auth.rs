//! Who may call: the admin token (from `TRAILWATCH_ADMIN_TOKEN` or generated once into
//! `<data-dir>/admin.token`), dashboard login sessions and scoped API tokens kept in
//! `<data-dir>/auth.db`, and the request check the router's middleware applies. Users and
//! roles extend this seam later. Server build only.

pub mod guard;
pub mod tokens;

pub use tokens::Scope;

use rusqlite::{params, Connection, OptionalExtension};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "tw_session";
/// How long a dashboard session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// The admin token file inside the data directory.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// Failures of the auth layer.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("session database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("no secure random source: {0}")]
    Random(String),
    #[error("the auth task failed")]
    Join,
}

/// Where the admin token came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenOrigin {
    Environment,
    File,
    /// Made just now; the caller prints it once.
    Generated,
}

fn sha256(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// Compares two digests without an early exit, so timing tells nothing about a guess.
fn same_digest(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// 32 random bytes as hex, with a prefix that makes a leaked token easy to recognise.
pub fn random_token(prefix: &str) -> Result<String, AuthError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| AuthError::Random(e.to_string()))?;
    Ok(format!("{prefix}{}", hex::encode(bytes)))
}

/// Reads, or on first start generates, the admin token. An environment token wins and is never
/// written to disk.
///
/// # Errors
/// The token file cannot be read or written.
pub fn load_admin_token(
    data_dir: &Path,
    from_env: Option<String>,
) -> Result<(String, TokenOrigin), AuthError> {
    if let Some(token) = from_env {
        return Ok((token, TokenOrigin::Environment));
    }
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    let io = |source| AuthError::Io {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => {
            return Ok((text.trim().to_string(), TokenOrigin::File))
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    std::fs::create_dir_all(data_dir).map_err(io)?;
    let token = random_token("tw_")?;
    write_private(&path, &token).map_err(io)?;
    Ok((token, TokenOrigin::Generated))
}

/// Writes a file readable by its owner only.
pub(crate) fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    f.write_all(contents.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()
}

/// The credentials a request presented.
#[derive(Debug, Default)]
pub struct Presented<'a> {
    pub bearer: Option<&'a str>,
    pub session: Option<&'a str>,
    /// `?token=`, honoured only on the WebSocket, where browsers cannot set headers.
    pub query_token: Option<&'a str>,
}

/// Who a request's credentials belong to, and what they may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// `admin` for the admin token and dashboard sessions, else the token's name.
    pub name: String,
    pub scope: Scope,
    /// The credential itself, so what it opened (a socket) can end when it is revoked.
    pub credential: Credential,
}

/// One credential, as revocations name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    /// The admin token: it changes only with a restart.
    AdminToken,
    /// A dashboard session, by the SHA-256 of its cookie value.
    Session([u8; 32]),
    /// An API token, by name.
    Token(String),
}

impl Principal {
    fn admin(credential: Credential) -> Principal {
        Principal {
            name: "admin".into(),
            scope: Scope::Admin,
            credential,
        }
    }
}

/// Opens `<data_dir>/auth.db` with its tables, for the server or the CLI.
///
/// # Errors
/// The database cannot be opened or created.
pub fn open_db(data_dir: &Path) -> Result<Connection, AuthError> {
    let conn = Connection::open(data_dir.join("auth.db"))?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.execute_batch(
        "PRAGMA journal_mode=WAL;
         CREATE TABLE IF NOT EXISTS sessions (
             token_hash BLOB PRIMARY KEY,
             created_at INTEGER NOT NULL,
             expires_at INTEGER NOT NULL
         ) WITHOUT ROWID;",
    )?;
    conn.execute_batch(tokens::SCHEMA)?;
    Ok(conn)
}

/// The admin token, the session table and the API tokens. Cheap to clone.
#[derive(Clone)]
pub struct Auth {
    admin_digest: [u8; 32],
    sessions: Arc<Mutex<Connection>>,
    /// Credentials revoked while the server runs, for the sockets they opened.
    revocations: tokio::sync::broadcast::Sender<Credential>,
    /// Refused sign-ins by address.
    pub guard: Arc<guard::LoginGuard>,
}

impl Auth {
    /// Opens (creating) `<data_dir>/auth.db`.
    ///
    /// # Errors
    /// The session database cannot be opened.
    pub fn open(data_dir: &Path, admin_token: &str) -> Result<Auth, AuthError> {
        let conn = open_db(data_dir)?;
        Ok(Auth {
            admin_digest: sha256(admin_token),
            sessions: Arc::new(Mutex::new(conn)),
            revocations: tokio::sync::broadcast::channel(64).0,
            guard: Arc::default(),
        })
    }

    /// Whether `token` is the admin token.
    pub fn is_admin_token(&self, token: &str) -> bool {
        same_digest(&sha256(token.trim()), &self.admin_digest)
    }

    /// Whose valid credentials the request carries, if any.
    ///
    /// # Errors
    /// The auth database failed.
    pub async fn check(&self, presented: Presented<'_>) -> Result<Option<Principal>, AuthError> {
        if let Some(token) = presented.bearer.or(presented.query_token) {
            if self.is_admin_token(token) {
                return Ok(Some(Principal::admin(Credential::AdminToken)));
            }
            let token = token.to_string();
            let holder = self.with_db(move |c| tokens::holder(c, &token)).await?;
            if let Some(h) = holder {
                return Ok(Some(Principal {
                    credential: Credential::Token(h.name.clone()),
                    name: h.name,
                    scope: h.scope,
                }));
            }
        }
        match presented.session {
            Some(session) if self.session_valid(session).await? => {
                Ok(Some(Principal::admin(Credential::Session(sha256(session)))))
            }
            _ => Ok(None),
        }
    }

    /// Runs `f` on the auth database (token management from the API).
    ///
    /// # Errors
    /// As `f`, or the database lock was poisoned.
    pub async fn with_tokens<T, F>(&self, f: F) -> Result<T, tokens::TokenError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, tokens::TokenError> + Send + 'static,
    {
        self.with_db(move |c| Ok(f(c))).await?
    }

    /// Starts a session and returns the cookie value.
    ///
    /// # Errors
    /// No randomness, or the session database failed.
    pub async fn create_session(&self) -> Result<String, AuthError> {
        let value = random_token("")?;
        let digest = sha256(&value);
        let now = chrono::Utc::now().timestamp();
        let expires = now + SESSION_TTL.as_secs() as i64;
        self.with_db(move |c| {
            c.execute("DELETE FROM sessions WHERE expires_at < ?1", [now])?;
            c.execute(
                "INSERT INTO sessions (token_hash, created_at, expires_at) VALUES (?1, ?2, ?3)",
                params![digest.as_slice(), now, expires],
            )?;
            Ok(())
        })
        .await?;
        Ok(value)
    }

    /// Ends a session.
    ///
    /// # Errors
    /// The session database failed.
    pub async fn end_session(&self, value: &str) -> Result<(), AuthError> {
        let digest = sha256(value);
        self.with_db(move |c| {
            c.execute(
                "DELETE FROM sessions WHERE token_hash = ?1",
                [digest.as_slice()],
            )?;
            Ok(())
        })
        .await?;
        self.announce_revoked(Credential::Session(digest));
        Ok(())
    }

    /// Tells whatever `credential` opened that it no longer holds.
    pub fn announce_revoked(&self, credential: Credential) {
        // No receiver means no socket is open: nothing to close.
        let _ = self.revocations.send(credential);
    }

    /// Completes when `credential` is revoked while the server runs (never for the admin
    /// token). After missing announcements (a burst of revocations) it asks the database.
    pub async fn revoked(&self, credential: Credential) {
        use tokio::sync::broadcast::error::RecvError;
        if credential == Credential::AdminToken {
            return std::future::pending().await;
        }
        let mut rx = self.revocations.subscribe();
        loop {
            match rx.recv().await {
                Ok(c) if c == credential => return,
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => {
                    if !self.still_valid(&credential).await {
                        return;
                    }
                }
                Err(RecvError::Closed) => return std::future::pending().await,
            }
        }
    }

    /// Whether `credential` would still be accepted; a failing database counts as yes, so
    /// an outage does not close every socket.
    async fn still_valid(&self, credential: &Credential) -> bool {
        let credential = credential.clone();
        let now = chrono::Utc::now().timestamp();
        self.with_db(move |c| {
            Ok(match credential {
                Credential::AdminToken => true,
                Credential::Session(digest) => c
                    .query_row(
                        "SELECT expires_at > ?2 FROM sessions WHERE token_hash = ?1",
                        params![digest.as_slice(), now],
                        |r| r.get::<_, bool>(0),
                    )
                    .optional()?
                    .unwrap_or(false),
                Credential::Token(name) => c
                    .query_row(
                        "SELECT revoked_at IS NULL FROM tokens WHERE name = ?1",
                        [name],
                        |r| r.get::<_, bool>(0),
                    )
                    .optional()?
                    .unwrap_or(false),
            })
        })
        .await
        .unwrap_or(true)
    }

    async fn session_valid(&self, value: &str) -> Result<bool, AuthError> {
        let digest = sha256(value);
        let now = chrono::Utc::now().timestamp();
        self.with_db(move |c| {
            let expires: Option<i64> = c
                .query_row(
                    "SELECT expires_at FROM sessions WHERE token_hash = ?1",
                    [digest.as_slice()],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(expires.is_some_and(|e| e > now))
        })
        .await
    }

    /// Runs `f` on the auth database on the blocking pool.
    async fn with_db<T, F>(&self, f: F) -> Result<T, AuthError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, AuthError> + Send + 'static,
    {
        let sessions = self.sessions.clone();
        tokio::task::spawn_blocking(move || {
            let conn = sessions.lock().map_err(|_| AuthError::Join)?;
            f(&conn)
        })
        .await
        .map_err(|_| AuthError::Join)?
    }
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

/// The session cookie's value among a request's `Cookie` headers.
pub fn session_from(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| cookie_value(c, SESSION_COOKIE))
}

/// The `Set-Cookie` value that starts a session.
pub fn session_cookie(value: &str, secure: bool) -> String {
    format!(
        "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        SESSION_TTL.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that ends a session.
pub fn clear_session_cookie() -> String {
    format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_token_is_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let (t1, o1) = load_admin_token(dir.path(), None).unwrap();
        assert_eq!(o1, TokenOrigin::Generated);
        assert!(t1.starts_with("tw_") && t1.len() == 67);
        let (t2, o2) = load_admin_token(dir.path(), None).unwrap();
        assert_eq!((t2.as_str(), o2), (t1.as_str(), TokenOrigin::File));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(ADMIN_TOKEN_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn environment_token_wins_and_is_not_written() {
        let dir = tempfile::tempdir().unwrap();
        let (t, o) = load_admin_token(dir.path(), Some("from-env".into())).unwrap();
        assert_eq!((t.as_str(), o), ("from-env", TokenOrigin::Environment));
        assert!(!dir.path().join(ADMIN_TOKEN_FILE).exists());
    }

    #[test]
    fn cookie_parsing_finds_the_named_cookie() {
        assert_eq!(
            cookie_value("a=1; tw_session=abc; b=2", SESSION_COOKIE),
            Some("abc")
        );
        assert_eq!(cookie_value("tw_sessionx=1", SESSION_COOKIE), None);
    }

    #[tokio::test]
    async fn sessions_survive_reopen_and_end_on_logout() {
        let dir = tempfile::tempdir().unwrap();
        let auth = Auth::open(dir.path(), "secret").unwrap();
        let s = auth.create_session().await.unwrap();
        let reopened = Auth::open(dir.path(), "secret").unwrap();
        let with = |v| Presented {
            session: Some(v),
            ..Default::default()
        };
        assert!(reopened.check(with(&s)).await.unwrap().is_some());
        assert_eq!(reopened.check(with("forged")).await.unwrap(), None);
        reopened.end_session(&s).await.unwrap();
        assert_eq!(auth.check(with(&s)).await.unwrap(), None);
        let bearer = |t| Presented {
            bearer: Some(t),
            ..Default::default()
        };
        assert_eq!(
            auth.check(bearer("secret")).await.unwrap(),
            Some(Principal::admin(Credential::AdminToken))
        );
        assert_eq!(auth.check(bearer("secreT")).await.unwrap(), None);
        // A token made by another connection (the CLI) holds from the next request on.
        let (_, token) =
            tokens::create(&open_db(dir.path()).unwrap(), "reader", Scope::Read, false).unwrap();
        assert_eq!(
            auth.check(bearer(&token)).await.unwrap(),
            Some(Principal {
                name: "reader".into(),
                scope: Scope::Read,
                credential: Credential::Token("reader".into()),
            })
        );
        tokens::revoke(&open_db(dir.path()).unwrap(), "reader", false).unwrap();
        assert_eq!(auth.check(bearer(&token)).await.unwrap(), None);
    }
}
