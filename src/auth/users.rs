//! Dashboard users, kept in `auth.db` beside the tokens and sessions: a name, a role, the
//! actor id they are in events (their `subject`, what the `self` role is limited to), an
//! argon2id password hash, and one-time setup codes for the first admin. Like the tokens,
//! the functions take a session (`store::sql`) so `trailwatch user ...` works while the
//! server runs;
//! changes made that way are recorded by the server once it sees them.

use super::{random_token, sha256, AuthError};
use crate::store::sql::{Session, SqlError};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

pub use crate::model::{Role, UserInfo};

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    id            INTEGER PRIMARY KEY,
    name          TEXT    NOT NULL UNIQUE,
    role          TEXT    NOT NULL,
    subject       TEXT    NOT NULL,
    password_hash TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    last_login_at INTEGER,
    disabled_at   INTEGER,
    -- Whether the chain records the creation / the disabling / the last new password
    -- (see tokens).
    audited          INTEGER NOT NULL DEFAULT 0,
    audited_disable  INTEGER NOT NULL DEFAULT 0,
    audited_password INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS setup_codes (
    code_hash  BLOB    PRIMARY KEY,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER
) WITHOUT ROWID;
";

/// The shortest password accepted. Length beats composition rules (NIST SP 800-63B).
pub const MIN_PASSWORD_CHARS: usize = 10;
/// The longest: argon2 would take any length, a request body should not.
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// How long a setup link stays usable.
pub const SETUP_TTL_SECS: i64 = 24 * 3600;

/// Why a user could not be made or changed, in words for the caller.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("name: {0}")]
    Name(String),
    #[error("role: {0:?} is not one of admin, auditor, viewer, self")]
    Role(String),
    #[error("subject: {0}")]
    Subject(String),
    #[error("password: {0}")]
    Password(String),
    #[error("a user named {0:?} exists already")]
    Exists(String),
    #[error("no user is named {0:?}")]
    Unknown(String),
    #[error("setup: {0}")]
    Setup(String),
    #[error(transparent)]
    Auth(#[from] AuthError),
}

impl From<SqlError> for UserError {
    fn from(e: SqlError) -> Self {
        UserError::Auth(AuthError::Sql(e))
    }
}

/// A user who signed in (or whose session was looked up).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub role: Role,
    pub subject: String,
}

/// What a new user is made of.
#[derive(Clone, Debug)]
pub struct NewUser {
    pub name: String,
    pub role: Role,
    /// The actor id in events; the name when `None`.
    pub subject: Option<String>,
    pub password: String,
}

/// Checks a password against the length rules.
pub fn check_password(password: &str) -> Result<(), UserError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(UserError::Password(format!(
            "must be at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(UserError::Password(format!(
            "must be at most {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    Ok(())
}

/// The argon2id hash of `password` (PHC string, with its own random salt and parameters).
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| AuthError::Random(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| AuthError::Random(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Random(e.to_string()))
}

/// Whether `password` matches the PHC string `hash`; a malformed hash matches nothing.
pub fn password_matches(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// A hash to check unknown names against, so an answer's timing does not tell whether a
/// name exists.
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password("trailwatch decoy password").unwrap_or_default())
}

fn check_new(user: &NewUser) -> Result<String, UserError> {
    super::check_name(&user.name).map_err(UserError::Name)?;
    check_password(&user.password)?;
    let subject = user.subject.clone().unwrap_or_else(|| user.name.clone());
    let subject = subject.trim().to_string();
    if subject.is_empty() || subject.len() > crate::ingest::MAX_SHORT_LEN {
        return Err(UserError::Subject(format!(
            "must be 1 to {} bytes",
            crate::ingest::MAX_SHORT_LEN
        )));
    }
    Ok(subject)
}

/// Makes a user. Hashing takes a noticeable moment by design: call off the async runtime.
/// `audited` says whether the caller records the creation itself.
pub fn create(s: &Session<'_>, user: &NewUser, audited: bool) -> Result<UserInfo, UserError> {
    let subject = check_new(user)?;
    let hash = hash_password(&user.password)?;
    insert(s, user, &subject, &hash, audited)
}

fn insert(
    s: &Session<'_>,
    user: &NewUser,
    subject: &str,
    hash: &str,
    audited: bool,
) -> Result<UserInfo, UserError> {
    let now = chrono::Utc::now().timestamp();
    let inserted = s.execute(
        "INSERT INTO users (name, role, subject, password_hash, created_at, audited)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (name) DO NOTHING",
        &[
            &user.name,
            &user.role.as_str(),
            &subject,
            &hash,
            &now,
            &audited,
        ],
    )?;
    if inserted == 0 {
        return Err(UserError::Exists(user.name.clone()));
    }
    Ok(UserInfo {
        name: user.name.clone(),
        role: user.role,
        subject: subject.to_string(),
        created_at: super::rfc3339(now),
        last_login_at: None,
        disabled_at: None,
    })
}

/// Every user, oldest first.
pub fn list(s: &Session<'_>) -> Result<Vec<UserInfo>, UserError> {
    let rows = s.query(
        "SELECT name, role, subject, created_at, last_login_at, disabled_at
         FROM users ORDER BY id",
        &[],
    )?;
    let mut out = Vec::new();
    for r in rows {
        let (name, role, subject, created, login, disabled) = (
            r.text(0)?,
            r.text(1)?,
            r.text(2)?,
            r.int(3)?,
            r.opt_int(4)?,
            r.opt_int(5)?,
        );
        // A role this build does not know grants nothing here.
        let Some(role) = Role::parse(&role) else {
            continue;
        };
        out.push(UserInfo {
            name,
            role,
            subject,
            created_at: super::rfc3339(created),
            last_login_at: login.map(super::rfc3339),
            disabled_at: disabled.map(super::rfc3339),
        });
    }
    Ok(out)
}

/// How many users may sign in.
pub fn active_count(s: &Session<'_>) -> Result<u64, AuthError> {
    let n = s
        .query_one("SELECT COUNT(*) FROM users WHERE disabled_at IS NULL", &[])?
        .int(0)?;
    Ok(n.max(0) as u64)
}

/// The digests of the sessions a change ended, for closing the sockets they opened.
pub type EndedSessions = Vec<[u8; 32]>;

/// Disables the user named `name` and ends their sessions; returns the role they had and
/// the sessions ended. `Ok(None)` when the user was disabled already. Call in a transaction.
pub fn disable(
    s: &Session<'_>,
    name: &str,
    audited: bool,
) -> Result<Option<(Role, EndedSessions)>, UserError> {
    let now = chrono::Utc::now().timestamp();
    let Some(row) = s.query_opt(
        "SELECT role, disabled_at FROM users WHERE name = ?1",
        &[&name],
    )?
    else {
        return Err(UserError::Unknown(name.into()));
    };
    let (role, disabled) = (row.text(0)?, row.opt_int(1)?);
    if disabled.is_some() {
        return Ok(None);
    }
    let role = Role::parse(&role).ok_or(UserError::Role(role))?;
    s.execute(
        "UPDATE users SET disabled_at = ?2, audited_disable = ?3 WHERE name = ?1",
        &[&name, &now, &audited],
    )?;
    let sessions = end_sessions_of(s, name)?;
    Ok(Some((role, sessions)))
}

/// Sets a new password and ends the user's sessions (a reset after a leak must lock out
/// whoever holds one); returns their digests like [`disable`]. Call in a transaction.
pub fn set_password(
    s: &Session<'_>,
    name: &str,
    password: &str,
) -> Result<EndedSessions, UserError> {
    check_password(password)?;
    let hash = hash_password(password)?;
    // Recorded (and the user's sockets closed) by the server once it sees the change.
    if s.execute(
        "UPDATE users SET password_hash = ?2, audited_password = 0 WHERE name = ?1",
        &[&name, &hash],
    )? == 0
    {
        return Err(UserError::Unknown(name.into()));
    }
    Ok(end_sessions_of(s, name)?)
}

fn end_sessions_of(s: &Session<'_>, name: &str) -> Result<Vec<[u8; 32]>, SqlError> {
    let rows = s.query(
        "DELETE FROM sessions WHERE user_name = ?1 RETURNING token_hash",
        &[&name],
    )?;
    let mut out = Vec::new();
    for row in rows {
        if let Ok(digest) = <[u8; 32]>::try_from(row.blob(0)?.as_slice()) {
            out.push(digest);
        }
    }
    Ok(out)
}

/// The stored hash and who it belongs to, for a sign-in to check outside the database lock.
pub fn credentials(s: &Session<'_>, name: &str) -> Result<Option<(Member, String)>, AuthError> {
    let row = s
        .query_opt(
            "SELECT role, subject, password_hash FROM users
             WHERE name = ?1 AND disabled_at IS NULL",
            &[&name],
        )?
        .map(|r| Ok::<_, SqlError>((r.text(0)?, r.text(1)?, r.text(2)?)))
        .transpose()?;
    Ok(row.and_then(|(role, subject, hash)| {
        let role = Role::parse(&role)?;
        Some((
            Member {
                name: name.to_string(),
                role,
                subject,
            },
            hash,
        ))
    }))
}

/// Notes a successful sign-in.
pub fn note_login(s: &Session<'_>, name: &str) -> Result<(), AuthError> {
    s.execute(
        "UPDATE users SET last_login_at = ?2 WHERE name = ?1",
        &[&name, &chrono::Utc::now().timestamp()],
    )?;
    Ok(())
}

/// Makes a one-time setup code for the first admin, replacing any unused one; `None` when
/// a user can sign in already (setup is over).
pub fn new_setup_code(s: &Session<'_>) -> Result<Option<String>, AuthError> {
    if active_count(s)? > 0 {
        return Ok(None);
    }
    let code = random_token("")?;
    let now = chrono::Utc::now().timestamp();
    s.execute("DELETE FROM setup_codes WHERE used_at IS NULL", &[])?;
    s.execute(
        "INSERT INTO setup_codes (code_hash, created_at, expires_at) VALUES (?1, ?2, ?3)",
        &[
            &sha256(&code).as_slice(),
            &now,
            &now.saturating_add(SETUP_TTL_SECS),
        ],
    )?;
    Ok(Some(code))
}

/// Whether `code` is a live setup code while no user exists.
pub fn setup_code_valid(s: &Session<'_>, code: &str) -> Result<bool, AuthError> {
    let now = chrono::Utc::now().timestamp();
    let live = s
        .query_opt(
            "SELECT 1 FROM setup_codes
             WHERE code_hash = ?1 AND used_at IS NULL AND expires_at > ?2",
            &[&sha256(code).as_slice(), &now],
        )?
        .is_some();
    Ok(live && active_count(s)? == 0)
}

/// Spends `code` on the first admin, all or nothing (call in a transaction). `hash` is the
/// password's, made by the caller off the lock.
pub fn complete_setup(
    s: &Session<'_>,
    code: &str,
    user: &NewUser,
    hash: &str,
) -> Result<UserInfo, UserError> {
    let subject = check_new(user)?;
    if !setup_code_valid(s, code)? {
        return Err(UserError::Setup(
            "this setup link was used, has expired, or a user exists already; \
             ask an admin, or run `trailwatch user add`"
                .into(),
        ));
    }
    s.execute(
        "UPDATE setup_codes SET used_at = ?2 WHERE code_hash = ?1",
        &[&sha256(code).as_slice(), &chrono::Utc::now().timestamp()],
    )?;
    let admin = NewUser {
        role: Role::Admin,
        ..user.clone()
    };
    insert(s, &admin, &subject, hash, true)
}

/// A user change the chain has not recorded yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unaudited {
    Created {
        name: String,
        role: Role,
    },
    Disabled {
        name: String,
        role: Role,
    },
    /// A new password was set, which ended the user's sessions.
    PasswordSet {
        name: String,
        role: Role,
    },
}

/// The changes made outside the server (by the CLI) that are not in the chain yet.
pub fn unaudited(s: &Session<'_>) -> Result<Vec<Unaudited>, AuthError> {
    let rows = s.query(
        "SELECT name, role, audited, disabled_at IS NOT NULL AND audited_disable = 0,
                audited_password = 0
         FROM users
         WHERE audited = 0 OR (disabled_at IS NOT NULL AND audited_disable = 0)
            OR audited_password = 0
         ORDER BY id",
        &[],
    )?;
    let mut out = Vec::new();
    for r in rows {
        let (name, role, created_audited, disable_pending, password_pending) =
            (r.text(0)?, r.text(1)?, r.flag(2)?, r.flag(3)?, r.flag(4)?);
        let Some(role) = Role::parse(&role) else {
            continue;
        };
        if !created_audited {
            out.push(Unaudited::Created {
                name: name.clone(),
                role,
            });
        }
        if password_pending {
            out.push(Unaudited::PasswordSet {
                name: name.clone(),
                role,
            });
        }
        if disable_pending {
            out.push(Unaudited::Disabled { name, role });
        }
    }
    Ok(out)
}

/// Marks a change as recorded in the chain.
pub fn mark_audited(s: &Session<'_>, change: &Unaudited) -> Result<(), AuthError> {
    match change {
        Unaudited::Created { name, .. } => {
            s.execute("UPDATE users SET audited = 1 WHERE name = ?1", &[name])?
        }
        Unaudited::Disabled { name, .. } => s.execute(
            "UPDATE users SET audited_disable = 1 WHERE name = ?1",
            &[name],
        )?,
        Unaudited::PasswordSet { name, .. } => s.execute(
            "UPDATE users SET audited_password = 1 WHERE name = ?1",
            &[name],
        )?,
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> rusqlite::Connection {
        let dir = tempfile::tempdir().unwrap();
        let conn = super::super::open_db(dir.path()).unwrap();
        std::mem::forget(dir);
        conn
    }

    fn new(name: &str, role: Role, password: &str) -> NewUser {
        NewUser {
            name: name.into(),
            role,
            subject: None,
            password: password.into(),
        }
    }

    #[test]
    fn passwords_are_stored_as_argon2id_and_checked() {
        let raw = db();
        let conn = Session::sqlite(&raw);
        let info = create(
            &conn,
            &new("alice", Role::Own, "correct horse battery"),
            false,
        )
        .unwrap();
        assert_eq!((info.subject.as_str(), info.role), ("alice", Role::Own));
        let stored: String = raw
            .query_row("SELECT password_hash FROM users", [], |r| r.get(0))
            .unwrap();
        assert!(stored.starts_with("$argon2id$"), "{stored}");
        assert!(!stored.contains("correct horse"));
        let (member, hash) = credentials(&conn, "alice").unwrap().unwrap();
        assert_eq!(member.role, Role::Own);
        assert!(password_matches(&hash, "correct horse battery"));
        assert!(!password_matches(&hash, "correct horse batterY"));
        assert!(!password_matches("not a hash", "x"));
        assert!(!password_matches(decoy_hash(), "correct horse battery"));
        assert!(matches!(
            create(&conn, &new("alice", Role::Admin, "another long one"), false),
            Err(UserError::Exists(_))
        ));
        assert!(matches!(
            create(&conn, &new("bob", Role::Admin, "short"), false),
            Err(UserError::Password(_))
        ));
    }

    #[test]
    fn disabling_ends_sessions_and_refuses_credentials() {
        let raw = db();
        let conn = Session::sqlite(&raw);
        create(&conn, &new("bob", Role::Viewer, "a long password"), false).unwrap();
        raw.execute(
            "INSERT INTO sessions (token_hash, created_at, expires_at, user_name, last_seen_at)
             VALUES (?1, 0, 99999999999, 'bob', 0)",
            [[7u8; 32].as_slice()],
        )
        .unwrap();
        let (role, ended) = disable(&conn, "bob", false).unwrap().unwrap();
        assert_eq!((role, ended), (Role::Viewer, vec![[7u8; 32]]));
        assert_eq!(credentials(&conn, "bob").unwrap(), None);
        assert_eq!(disable(&conn, "bob", false).unwrap(), None, "once");
        assert!(matches!(
            disable(&conn, "carol", false),
            Err(UserError::Unknown(_))
        ));
        assert_eq!(
            unaudited(&conn).unwrap(),
            [
                Unaudited::Created {
                    name: "bob".into(),
                    role: Role::Viewer
                },
                Unaudited::Disabled {
                    name: "bob".into(),
                    role: Role::Viewer
                }
            ]
        );
    }

    #[test]
    fn a_setup_code_makes_one_admin_once() {
        let raw = db();
        let conn = Session::sqlite(&raw);
        let code = new_setup_code(&conn).unwrap().unwrap();
        assert!(setup_code_valid(&conn, &code).unwrap());
        assert!(!setup_code_valid(&conn, "forged").unwrap());
        let user = new("root", Role::Viewer, "a long password");
        let hash = hash_password(&user.password).unwrap();
        let info = complete_setup(&conn, &code, &user, &hash).unwrap();
        assert_eq!(info.role, Role::Admin, "setup always makes an admin");
        assert!(matches!(
            complete_setup(
                &conn,
                &code,
                &new("eve", Role::Admin, "a long password"),
                &hash
            ),
            Err(UserError::Setup(_))
        ));
        assert_eq!(new_setup_code(&conn).unwrap(), None, "setup is over");
    }
}
