//! Who may call: the admin token (from `TRAILWATCH_ADMIN_TOKEN` or generated once into
//! `<data-dir>/admin.token`), users with roles, dashboard sessions and scoped API tokens
//! kept in `<data-dir>/auth.db`, and the request check the router's middleware applies.
//! Server build only.

pub mod guard;
pub mod tokens;
pub mod users;

pub use crate::model::{Grant, Permission, Role};
pub use tokens::Scope;

use crate::store::sql::{Db, Session, SqlError};
use rusqlite::Connection;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "tw_session";
/// How often a session's last use is written: often enough for the idle limit, rarely enough
/// that a busy dashboard does not write on every request.
const SEEN_GRANULARITY_SECS: i64 = 60;

/// How long dashboard sessions last: `[sessions]` in the settings file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionPolicy {
    /// A session unused for this long ends (an open dashboard keeps it alive).
    pub idle_minutes: u64,
    /// A session ends this long after sign-in, however busy.
    pub max_hours: u64,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        SessionPolicy {
            idle_minutes: 60,
            max_hours: 12,
        }
    }
}

impl SessionPolicy {
    /// Refuses limits of zero, which would end every session at once.
    ///
    /// # Errors
    /// Names the setting at fault.
    pub fn validate(&self) -> Result<(), String> {
        if self.idle_minutes == 0 {
            return Err("sessions.idle_minutes must be at least 1".into());
        }
        if self.max_hours == 0 {
            return Err("sessions.max_hours must be at least 1".into());
        }
        Ok(())
    }

    fn idle_secs(&self) -> i64 {
        i64::try_from(self.idle_minutes.saturating_mul(60)).unwrap_or(i64::MAX)
    }

    /// The absolute lifetime, also the cookie's `Max-Age`.
    pub fn max_secs(&self) -> i64 {
        i64::try_from(self.max_hours.saturating_mul(3600)).unwrap_or(i64::MAX)
    }
}
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
    Sql(#[from] SqlError),
    #[error("no secure random source: {0}")]
    Random(String),
    #[error("the auth task failed")]
    Join,
}

impl From<rusqlite::Error> for AuthError {
    fn from(e: rusqlite::Error) -> Self {
        AuthError::Sql(e.into())
    }
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

/// A presented secret's SHA-256 in hex, to key what is kept about it (sign-in throttling)
/// without keeping the secret.
pub fn token_digest_hex(token: &str) -> String {
    hex::encode(sha256(token))
}

/// Compares two digests without an early exit, so timing tells nothing about a guess.
fn same_digest(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks a user or token name: 1 to 64 letters, digits, `.`, `_` or `-`.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err("must be 1 to 64 characters".into());
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(format!(
            "{name:?} may hold only letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// Seconds since the epoch as RFC 3339, for listings.
pub(crate) fn rfc3339(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
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
    crate::files::write_private(&path, &token).map_err(io)?;
    Ok((token, TokenOrigin::Generated))
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
    /// `admin` for the admin token, the user's name, or the token's name.
    pub name: String,
    pub grant: Grant,
    /// The actor id whose events alone this principal sees (the `self` role).
    pub owner: Option<String>,
    /// The credential itself, so what it opened (a socket) can end when it is revoked.
    pub credential: Credential,
    /// When the credential ends by itself (a session's absolute limit), epoch seconds.
    pub expires_at: Option<i64>,
    /// What events it submits record as their provenance (`admin`, `user:<name>`,
    /// `token:<name>`; see [`crate::model::AuditEvent::submitted_by`]).
    pub submitter: String,
}

/// The PostgreSQL channel revocations travel on between the nodes of a cluster.
pub const REVOCATIONS: &str = "trailwatch_revocations";

/// What the revocation channel carries.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Revocation {
    Of(Credential),
    /// Some may have been missed (the node lost its listening session for a while): every
    /// open socket asks the database whether its credential still holds.
    Unknown,
}

impl Credential {
    /// How a revocation names this credential between nodes; the admin token is never
    /// revoked.
    fn notice(&self) -> Option<String> {
        match self {
            Credential::AdminToken => None,
            Credential::Session(digest) => Some(format!("session:{}", hex::encode(digest))),
            Credential::Token(name) => Some(format!("token:{name}")),
            Credential::User(name) => Some(format!("user:{name}")),
        }
    }

    fn from_notice(notice: &str) -> Option<Credential> {
        let (kind, rest) = notice.split_once(':')?;
        match kind {
            "session" => Some(Credential::Session(
                hex::decode(rest).ok()?.try_into().ok()?,
            )),
            "token" => Some(Credential::Token(rest.to_string())),
            "user" => Some(Credential::User(rest.to_string())),
            _ => None,
        }
    }
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
    /// Every session of a user, by name (disabled).
    User(String),
}

impl Principal {
    fn admin(credential: Credential, expires_at: Option<i64>) -> Principal {
        Principal {
            name: "admin".into(),
            grant: Grant::Role(Role::Admin),
            owner: None,
            credential,
            expires_at,
            submitter: "admin".into(),
        }
    }

    fn member(member: users::Member, credential: Credential, expires_at: i64) -> Principal {
        Principal {
            owner: (member.role == Role::Own).then_some(member.subject),
            submitter: format!("user:{}", member.name),
            name: member.name,
            grant: Grant::Role(member.role),
            credential,
            expires_at: Some(expires_at),
        }
    }

    /// Whether this principal may do what needs `needed`.
    pub fn allows(&self, needed: Permission) -> bool {
        self.grant.allows(needed)
    }

    /// What the dashboard is told about who is signed in.
    pub fn whoami(&self) -> crate::model::Whoami {
        crate::model::Whoami {
            name: self.name.clone(),
            grant: self.grant,
            owner: self.owner.clone(),
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
    conn.execute_batch(users::SCHEMA)?;
    // Sessions made before users existed belong to the admin token (`user_name` NULL).
    let has_user: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM pragma_table_info('sessions') WHERE name = 'user_name')",
        [],
        |r| r.get(0),
    )?;
    if !has_user {
        conn.execute_batch(
            "ALTER TABLE sessions ADD COLUMN user_name TEXT;
             ALTER TABLE sessions ADD COLUMN last_seen_at INTEGER;",
        )?;
    }
    Ok(conn)
}

/// The admin token, the session table, the users and the API tokens. Cheap to clone.
#[derive(Clone)]
pub struct Auth {
    admin_digest: [u8; 32],
    /// `auth.db`, or the cluster's PostgreSQL database: sessions, users, tokens, settings.
    db: Db,
    /// Replaced whole by the Settings page.
    policy: Arc<std::sync::RwLock<SessionPolicy>>,
    /// Credentials revoked while the server runs, for the sockets they opened.
    revocations: tokio::sync::broadcast::Sender<Revocation>,
    /// Refused sign-ins by address and by user name.
    pub guard: Arc<guard::LoginGuard>,
}

impl Auth {
    /// Opens (creating) `<data_dir>/auth.db`, with the default session limits.
    ///
    /// # Errors
    /// The session database cannot be opened.
    pub fn open(data_dir: &Path, admin_token: &str) -> Result<Auth, AuthError> {
        let conn = open_db(data_dir)?;
        Ok(Auth::on(
            Db::Sqlite(Arc::new(Mutex::new(conn))),
            admin_token,
        ))
    }

    /// The auth of a node of a cluster, in its PostgreSQL database (whose migrations made the
    /// tables), with the default session limits.
    pub fn on(db: Db, admin_token: &str) -> Auth {
        Auth {
            admin_digest: sha256(admin_token),
            db,
            policy: Arc::default(),
            revocations: tokio::sync::broadcast::channel(64).0,
            guard: Arc::default(),
        }
    }

    /// The same, with these session limits.
    pub fn with_policy(self, policy: SessionPolicy) -> Auth {
        self.set_policy(policy);
        self
    }

    /// The session limits in effect.
    pub fn policy(&self) -> SessionPolicy {
        self.policy
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Puts new session limits into effect (checked by the caller); they hold for every
    /// session from its next request on.
    pub fn set_policy(&self, policy: SessionPolicy) {
        *self
            .policy
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = policy;
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
                return Ok(Some(Principal::admin(Credential::AdminToken, None)));
            }
            let token = token.to_string();
            let holder = self.with_db(move |c| tokens::holder(c, &token)).await?;
            if let Some(h) = holder {
                return Ok(Some(Principal {
                    credential: Credential::Token(h.name.clone()),
                    submitter: format!("token:{}", h.name),
                    name: h.name,
                    grant: Grant::Token(h.scope),
                    owner: None,
                    expires_at: None,
                }));
            }
        }
        match presented.session {
            Some(session) => self.session_principal(session).await,
            None => Ok(None),
        }
    }

    /// Runs `f` on the auth database (token management from the API).
    ///
    /// # Errors
    /// As `f`, or the database lock was poisoned.
    pub async fn with_tokens<T, F>(&self, f: F) -> Result<T, tokens::TokenError>
    where
        T: Send + 'static,
        F: FnOnce(&Session<'_>) -> Result<T, tokens::TokenError> + Send + 'static,
    {
        self.db.transaction(f).await
    }

    /// Runs `f` on the auth database (user management from the API).
    ///
    /// # Errors
    /// As `f`, or the database lock was poisoned.
    pub async fn with_users<T, F>(&self, f: F) -> Result<T, users::UserError>
    where
        T: Send + 'static,
        F: FnOnce(&Session<'_>) -> Result<T, users::UserError> + Send + 'static,
    {
        self.db.transaction(f).await
    }

    /// The user `name` if `password` is theirs and they may sign in. The hash is checked off
    /// the database lock; an unknown name is checked against a decoy, so the answer takes
    /// as long either way.
    ///
    /// # Errors
    /// The auth database failed.
    pub async fn authenticate(
        &self,
        name: &str,
        password: String,
    ) -> Result<Option<users::Member>, AuthError> {
        let lookup = name.to_string();
        let found = self
            .with_db(move |c| users::credentials(c, &lookup))
            .await?;
        let (member, hash) = match found {
            Some((m, h)) => (Some(m), Some(h)),
            None => (None, None),
        };
        let matches = tokio::task::spawn_blocking(move || {
            let hash = hash.as_deref().unwrap_or_else(|| users::decoy_hash());
            users::password_matches(hash, &password)
        })
        .await
        .map_err(|_| AuthError::Join)?;
        match (matches, member) {
            (true, Some(member)) => {
                let who = member.name.clone();
                self.with_db(move |c| users::note_login(c, &who)).await?;
                Ok(Some(member))
            }
            _ => Ok(None),
        }
    }

    /// Starts a session for `member` (the admin token's when `None`) and returns the cookie
    /// value.
    ///
    /// # Errors
    /// No randomness, or the session database failed.
    pub async fn create_session(
        &self,
        member: Option<&users::Member>,
    ) -> Result<String, AuthError> {
        let value = random_token("")?;
        let digest = sha256(&value);
        let now = chrono::Utc::now().timestamp();
        let expires = now.saturating_add(self.policy().max_secs());
        let idle_since = now.saturating_sub(self.policy().idle_secs());
        let user = member.map(|m| m.name.clone());
        self.with_db(move |c| {
            c.execute(
                "DELETE FROM sessions
                 WHERE expires_at < ?1 OR COALESCE(last_seen_at, created_at) < ?2",
                &[&now, &idle_since],
            )?;
            c.execute(
                "INSERT INTO sessions (token_hash, created_at, expires_at, user_name, last_seen_at)
                 VALUES (?1, ?2, ?3, ?4, ?2)",
                &[&digest.as_slice(), &now, &expires, &user],
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
                &[&digest.as_slice()],
            )?;
            Ok(())
        })
        .await?;
        self.announce_revoked(Credential::Session(digest));
        Ok(())
    }

    /// Tells whatever `credential` opened that it no longer holds: on this node at once, and
    /// on a cluster's other nodes through PostgreSQL (see [`Auth::follow_revocations`]).
    pub fn announce_revoked(&self, credential: Credential) {
        if let (Db::Postgres(pool), Some(notice)) = (&self.db, credential.notice()) {
            let pool = pool.clone();
            tokio::spawn(async move {
                let sent = match pool.get().await {
                    Ok(client) => client
                        .execute("SELECT pg_notify($1, $2)", &[&REVOCATIONS, &notice])
                        .await
                        .map(drop)
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                if let Err(e) = sent {
                    // The other nodes' sockets still close at their next check of the
                    // credential, at the latest when they next lag or reconnect.
                    tracing::warn!(error = %e, "could not announce a revocation to the cluster");
                }
            });
        }
        // No receiver means no socket is open: nothing to close.
        let _ = self.revocations.send(Revocation::Of(credential));
    }

    /// Passes the revocations other nodes announce (`notices` of [`REVOCATIONS`]) to this
    /// node's sockets, for as long as the stream lasts.
    pub fn follow_revocations(
        &self,
        mut notices: tokio::sync::mpsc::UnboundedReceiver<crate::store::postgres::Notice>,
    ) {
        let revocations = self.revocations.clone();
        tokio::spawn(async move {
            use crate::store::postgres::Notice;
            while let Some(notice) = notices.recv().await {
                let revocation = match notice {
                    Notice::Payload(p) => match Credential::from_notice(&p) {
                        Some(c) => Revocation::Of(c),
                        None => {
                            tracing::warn!(notice = %p, "unreadable revocation notice");
                            continue;
                        }
                    },
                    Notice::Resumed => Revocation::Unknown,
                };
                let _ = revocations.send(revocation);
            }
        });
    }

    /// Completes when `principal`'s credential is revoked while the server runs (never for
    /// the admin token), or, for a user's session, when the user is disabled. It listens
    /// from the moment it is called, not from its first poll, so a revocation announced
    /// while the socket is still being set up is not missed. After missing announcements (a
    /// burst of revocations) it asks the database.
    pub fn revoked(&self, principal: &Principal) -> impl std::future::Future<Output = ()> + Send {
        use tokio::sync::broadcast::error::RecvError;
        let mut rx = self.revocations.subscribe();
        let auth = self.clone();
        let principal = principal.clone();
        async move {
            if principal.credential == Credential::AdminToken {
                return std::future::pending().await;
            }
            let mut watched = vec![principal.credential.clone()];
            if matches!(principal.grant, Grant::Role(_))
                && matches!(principal.credential, Credential::Session(_))
            {
                watched.push(Credential::User(principal.name.clone()));
            }
            loop {
                match rx.recv().await {
                    Ok(Revocation::Of(c)) if watched.contains(&c) => return,
                    Ok(Revocation::Of(_)) => {}
                    Ok(Revocation::Unknown) | Err(RecvError::Lagged(_)) => {
                        if !auth.still_valid(&principal.credential).await {
                            return;
                        }
                    }
                    Err(RecvError::Closed) => return std::future::pending().await,
                }
            }
        }
    }

    /// Whether `credential` would still be accepted; a failing database counts as yes, so
    /// an outage does not close every socket.
    async fn still_valid(&self, credential: &Credential) -> bool {
        let credential = credential.clone();
        let now = chrono::Utc::now().timestamp();
        let idle = self.policy().idle_secs();
        self.with_db(move |c| {
            Ok(match credential {
                Credential::AdminToken => true,
                Credential::User(name) => users::credentials(c, &name)?.is_some(),
                Credential::Session(digest) => c
                    .query_opt(
                        "SELECT expires_at > ?2 AND COALESCE(last_seen_at, created_at) >= ?3
                         FROM sessions WHERE token_hash = ?1",
                        &[&digest.as_slice(), &now, &now.saturating_sub(idle)],
                    )?
                    .map(|r| r.flag(0))
                    .transpose()?
                    .unwrap_or(false),
                Credential::Token(name) => c
                    .query_opt(
                        "SELECT revoked_at IS NULL FROM tokens WHERE name = ?1",
                        &[&name],
                    )?
                    .map(|r| r.flag(0))
                    .transpose()?
                    .unwrap_or(false),
            })
        })
        .await
        .unwrap_or(true)
    }

    /// Whose session `value` is, if it has neither ended, idled out nor outlived its
    /// absolute limit, and its user may still sign in. A dead session is removed.
    async fn session_principal(&self, value: &str) -> Result<Option<Principal>, AuthError> {
        let digest = sha256(value);
        let now = chrono::Utc::now().timestamp();
        let idle = self.policy().idle_secs();
        self.with_db(move |c| {
            let Some(r) = c.query_opt(
                "SELECT s.expires_at, s.created_at, s.last_seen_at, s.user_name,
                        u.role, u.subject, u.disabled_at
                 FROM sessions s LEFT JOIN users u ON u.name = s.user_name
                 WHERE s.token_hash = ?1",
                &[&digest.as_slice()],
            )?
            else {
                return Ok(None);
            };
            let (expires, created, seen, user) =
                (r.int(0)?, r.opt_int(1)?, r.opt_int(2)?, r.opt_text(3)?);
            let (role, subject, disabled) = (r.opt_text(4)?, r.opt_text(5)?, r.opt_int(6)?);
            let created = created.unwrap_or(expires);
            let seen = seen.unwrap_or(created);
            let principal = match user {
                _ if expires <= now || now - seen > idle => None,
                None => Some(Principal::admin(Credential::Session(digest), Some(expires))),
                Some(name) => match (role.as_deref().and_then(Role::parse), subject, disabled) {
                    (Some(role), Some(subject), None) => Some(Principal::member(
                        users::Member {
                            name,
                            role,
                            subject,
                        },
                        Credential::Session(digest),
                        expires,
                    )),
                    // Disabled, removed, or a role this build does not know.
                    _ => None,
                },
            };
            match &principal {
                None => {
                    c.execute(
                        "DELETE FROM sessions WHERE token_hash = ?1",
                        &[&digest.as_slice()],
                    )?;
                }
                Some(_) if now - seen >= SEEN_GRANULARITY_SECS => {
                    c.execute(
                        "UPDATE sessions SET last_seen_at = ?2 WHERE token_hash = ?1",
                        &[&digest.as_slice(), &now],
                    )?;
                }
                Some(_) => {}
            }
            Ok(principal)
        })
        .await
    }

    /// Runs `f` on the auth database, on the blocking pool, each statement committed on its
    /// own (see [`Db::statements`]): what every request's credential check does, so it takes
    /// no write lock. Changes that must be whole go through [`Auth::with_users`] and
    /// [`Auth::with_tokens`], which run in one transaction.
    pub(crate) async fn with_db<T, F>(&self, f: F) -> Result<T, AuthError>
    where
        T: Send + 'static,
        F: FnOnce(&Session<'_>) -> Result<T, AuthError> + Send + 'static,
    {
        self.db.statements(f).await
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

/// The `Set-Cookie` value that starts a session lasting at most `max_secs`; `Secure` when
/// the server speaks TLS.
pub fn session_cookie(value: &str, max_secs: i64, secure: bool) -> String {
    format!(
        "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_secs}{}",
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
        let s = auth.create_session(None).await.unwrap();
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
            Some(Principal::admin(Credential::AdminToken, None))
        );
        assert_eq!(auth.check(bearer("secreT")).await.unwrap(), None);
        // A token made by another connection (the CLI) holds from the next request on.
        let (_, token) = tokens::create(
            &Session::sqlite(&open_db(dir.path()).unwrap()),
            "reader",
            Scope::Read,
            false,
        )
        .unwrap();
        assert_eq!(
            auth.check(bearer(&token)).await.unwrap(),
            Some(Principal {
                name: "reader".into(),
                grant: Grant::Token(Scope::Read),
                owner: None,
                credential: Credential::Token("reader".into()),
                expires_at: None,
                submitter: "token:reader".into(),
            })
        );
        tokens::revoke(
            &Session::sqlite(&open_db(dir.path()).unwrap()),
            "reader",
            false,
        )
        .unwrap();
        assert_eq!(auth.check(bearer(&token)).await.unwrap(), None);
    }

    fn session(v: &str) -> Presented<'_> {
        Presented {
            session: Some(v),
            ..Default::default()
        }
    }

    /// Moves a session's clock back by `secs`, as if it were made and last used that long ago.
    fn age_session(dir: &Path, value: &str, secs: i64) {
        open_db(dir)
            .unwrap()
            .execute(
                "UPDATE sessions SET created_at = created_at - ?2,
                     last_seen_at = last_seen_at - ?2, expires_at = expires_at - ?2
                 WHERE token_hash = ?1",
                rusqlite::params![sha256(value).as_slice(), secs],
            )
            .unwrap();
    }

    #[tokio::test]
    async fn a_user_session_carries_the_role_and_ends_when_idle_or_too_old() {
        let dir = tempfile::tempdir().unwrap();
        let auth = Auth::open(dir.path(), "secret")
            .unwrap()
            .with_policy(SessionPolicy {
                idle_minutes: 30,
                max_hours: 2,
            });
        let new = users::NewUser {
            name: "alice".into(),
            role: Role::Own,
            subject: Some("u-17".into()),
            password: "correct horse battery".into(),
        };
        users::create(&Session::sqlite(&open_db(dir.path()).unwrap()), &new, true).unwrap();
        assert_eq!(
            auth.authenticate("alice", "wrong password!".into())
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            auth.authenticate("nobody", "correct horse battery".into())
                .await
                .unwrap(),
            None
        );
        let member = auth
            .authenticate("alice", "correct horse battery".into())
            .await
            .unwrap()
            .expect("right password");
        let s = auth.create_session(Some(&member)).await.unwrap();
        let p = auth.check(session(&s)).await.unwrap().unwrap();
        assert_eq!(p.grant, Grant::Role(Role::Own));
        assert_eq!(
            p.owner.as_deref(),
            Some("u-17"),
            "rows scoped to the actor id"
        );
        assert!(!p.allows(Permission::ReadAll) && p.allows(Permission::ReadOwn));

        // 29 minutes idle: still good, and the use moves the idle clock.
        age_session(dir.path(), &s, 29 * 60);
        assert!(auth.check(session(&s)).await.unwrap().is_some());
        age_session(dir.path(), &s, 29 * 60);
        assert!(
            auth.check(session(&s)).await.unwrap().is_some(),
            "used a moment ago, so not idle, though 58 minutes old"
        );
        // Idle past 30 minutes: refused, and gone for good.
        age_session(dir.path(), &s, 31 * 60);
        assert_eq!(auth.check(session(&s)).await.unwrap(), None);
        let left: i64 = open_db(dir.path())
            .unwrap()
            .query_row("SELECT COUNT(*) FROM sessions", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 0);

        // Busy but past the absolute limit: refused.
        let s = auth.create_session(Some(&member)).await.unwrap();
        for _ in 0..4 {
            age_session(dir.path(), &s, 25 * 60);
            assert!(auth.check(session(&s)).await.unwrap().is_some());
        }
        age_session(dir.path(), &s, 25 * 60);
        assert_eq!(
            auth.check(session(&s)).await.unwrap(),
            None,
            "125 minutes after sign-in, over the 2 h limit"
        );

        // Disabling the user ends a live session at once.
        let s = auth.create_session(Some(&member)).await.unwrap();
        users::disable(
            &Session::sqlite(&open_db(dir.path()).unwrap()),
            "alice",
            true,
        )
        .unwrap();
        assert_eq!(auth.check(session(&s)).await.unwrap(), None);
    }

    #[test]
    fn session_limits_of_zero_are_refused() {
        assert!(SessionPolicy::default().validate().is_ok());
        let e = SessionPolicy {
            idle_minutes: 0,
            max_hours: 1,
        }
        .validate()
        .unwrap_err();
        assert!(e.contains("idle_minutes"), "{e}");
    }
}
