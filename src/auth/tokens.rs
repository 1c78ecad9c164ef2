//! Scoped API tokens, kept in `auth.db` beside the sessions: each is shown once when it is
//! made and stored only as its SHA-256, with a name, a scope, when it was last used and when
//! it was revoked. The functions take a connection, so the CLI uses them on the data
//! directory while the server runs (SQLite's WAL lets both in), and every request looks its
//! token up afresh: a revocation holds from the next request on.

use super::{random_token, rfc3339, sha256, AuthError};
use crate::store::sql::{Session, SqlError};

pub use crate::model::{TokenInfo, TokenScope as Scope};

/// The holder of a token that checked out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenHolder {
    pub name: String,
    pub scope: Scope,
}

/// Why a token could not be made or revoked, in words for the caller.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("name: {0}")]
    Name(String),
    #[error("scope: {0:?} is not one of ingest, read, admin")]
    Scope(String),
    #[error("a token named {0:?} exists already (revoked tokens keep their name)")]
    Exists(String),
    #[error("no token is named {0:?}")]
    Unknown(String),
    #[error(transparent)]
    Auth(#[from] AuthError),
}

impl From<SqlError> for TokenError {
    fn from(e: SqlError) -> Self {
        TokenError::Auth(AuthError::Sql(e))
    }
}

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tokens (
    id           INTEGER PRIMARY KEY,
    name         TEXT    NOT NULL UNIQUE,
    scope        TEXT    NOT NULL,
    token_hash   BLOB    NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at   INTEGER,
    -- Whether the server has recorded the creation / the revocation in the chain: tokens
    -- made by the CLI are recorded by the server once it sees them.
    audited      INTEGER NOT NULL DEFAULT 0,
    audited_revoke INTEGER NOT NULL DEFAULT 0
);
";

/// How stale `last_used_at` may get before a use writes it again: a busy ingest token would
/// otherwise write to `auth.db` on every request.
const LAST_USED_GRANULARITY_SECS: i64 = 60;

/// Checks a token name: 1 to 64 letters, digits, `.`, `_` or `-`.
pub fn check_name(name: &str) -> Result<(), TokenError> {
    super::check_name(name).map_err(TokenError::Name)
}

/// Makes a token and returns it with its secret, which is not stored and cannot be shown
/// again. `audited` says whether the caller records the creation itself.
pub fn create(
    s: &Session<'_>,
    name: &str,
    scope: Scope,
    audited: bool,
) -> Result<(TokenInfo, String), TokenError> {
    check_name(name)?;
    let secret = random_token("twt_")?;
    let now = chrono::Utc::now().timestamp();
    let inserted = s.execute(
        "INSERT INTO tokens (name, scope, token_hash, created_at, audited)
         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (name) DO NOTHING",
        &[
            &name,
            &scope.as_str(),
            &sha256(&secret).as_slice(),
            &now,
            &audited,
        ],
    )?;
    if inserted == 0 {
        return Err(TokenError::Exists(name.into()));
    }
    let info = TokenInfo {
        name: name.into(),
        scope,
        created_at: rfc3339(now),
        last_used_at: None,
        revoked_at: None,
    };
    Ok((info, secret))
}

/// Every token, oldest first.
pub fn list(s: &Session<'_>) -> Result<Vec<TokenInfo>, TokenError> {
    let rows = s.query(
        "SELECT name, scope, created_at, last_used_at, revoked_at FROM tokens ORDER BY id",
        &[],
    )?;
    let mut out = Vec::new();
    for r in rows {
        let (name, scope, created, used, revoked) = (
            r.text(0)?,
            r.text(1)?,
            r.int(2)?,
            r.opt_int(3)?,
            r.opt_int(4)?,
        );
        // A scope this build does not know (a newer build wrote it) grants nothing here.
        let Some(scope) = Scope::parse(&scope) else {
            continue;
        };
        out.push(TokenInfo {
            name,
            scope,
            created_at: rfc3339(created),
            last_used_at: used.map(rfc3339),
            revoked_at: revoked.map(rfc3339),
        });
    }
    Ok(out)
}

/// Revokes the token named `name`; `Ok(false)` when it was revoked already. `audited` as in
/// [`create`].
pub fn revoke(s: &Session<'_>, name: &str, audited: bool) -> Result<bool, TokenError> {
    let now = chrono::Utc::now().timestamp();
    let changed = s.execute(
        "UPDATE tokens SET revoked_at = ?2, audited_revoke = ?3
         WHERE name = ?1 AND revoked_at IS NULL",
        &[&name, &now, &audited],
    )?;
    if changed == 1 {
        return Ok(true);
    }
    let exists = s
        .query_opt("SELECT 1 FROM tokens WHERE name = ?1", &[&name])?
        .is_some();
    match exists {
        true => Ok(false),
        false => Err(TokenError::Unknown(name.into())),
    }
}

/// [`revoke`], with the token's scope, for recording the change.
pub fn revoke_returning_scope(
    s: &Session<'_>,
    name: &str,
    audited: bool,
) -> Result<(bool, Scope), TokenError> {
    let revoked = revoke(s, name, audited)?;
    let scope = s
        .query_one("SELECT scope FROM tokens WHERE name = ?1", &[&name])?
        .text(0)?;
    let scope = Scope::parse(&scope).ok_or(TokenError::Scope(scope))?;
    Ok((revoked, scope))
}

/// The holder of `secret` if it is a live token, noting the use.
pub fn holder(s: &Session<'_>, secret: &str) -> Result<Option<TokenHolder>, AuthError> {
    let Some(r) = s.query_opt(
        "SELECT id, name, scope, last_used_at FROM tokens
         WHERE token_hash = ?1 AND revoked_at IS NULL",
        &[&sha256(secret.trim()).as_slice()],
    )?
    else {
        return Ok(None);
    };
    let (id, name, scope, used) = (r.int(0)?, r.text(1)?, r.text(2)?, r.opt_int(3)?);
    let Some(scope) = Scope::parse(&scope) else {
        return Ok(None);
    };
    let now = chrono::Utc::now().timestamp();
    if used.is_none_or(|u| now - u >= LAST_USED_GRANULARITY_SECS) {
        s.execute(
            "UPDATE tokens SET last_used_at = ?2 WHERE id = ?1",
            &[&id, &now],
        )?;
    }
    Ok(Some(TokenHolder { name, scope }))
}

/// A token change the chain has not recorded yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unaudited {
    Created { name: String, scope: Scope },
    Revoked { name: String, scope: Scope },
}

/// The changes made outside the server (by the CLI) that are not in the chain yet.
pub fn unaudited(s: &Session<'_>) -> Result<Vec<Unaudited>, AuthError> {
    let rows = s.query(
        "SELECT name, scope, audited, revoked_at IS NOT NULL AND audited_revoke = 0
         FROM tokens WHERE audited = 0 OR (revoked_at IS NOT NULL AND audited_revoke = 0)
         ORDER BY id",
        &[],
    )?;
    let mut out = Vec::new();
    for r in rows {
        let (name, scope, created_audited, revoke_pending) =
            (r.text(0)?, r.text(1)?, r.flag(2)?, r.flag(3)?);
        let Some(scope) = Scope::parse(&scope) else {
            continue;
        };
        if !created_audited {
            out.push(Unaudited::Created {
                name: name.clone(),
                scope,
            });
        }
        if revoke_pending {
            out.push(Unaudited::Revoked { name, scope });
        }
    }
    Ok(out)
}

/// Marks a change as recorded in the chain.
pub fn mark_audited(s: &Session<'_>, change: &Unaudited) -> Result<(), AuthError> {
    match change {
        Unaudited::Created { name, .. } => {
            s.execute("UPDATE tokens SET audited = 1 WHERE name = ?1", &[name])?
        }
        Unaudited::Revoked { name, .. } => s.execute(
            "UPDATE tokens SET audited_revoke = 1 WHERE name = ?1",
            &[name],
        )?,
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> rusqlite::Connection {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        conn
    }

    #[test]
    fn a_token_is_stored_hashed_checks_out_until_revoked_and_keeps_its_name() {
        let raw = db();
        let conn = Session::sqlite(&raw);
        let (info, secret) = create(&conn, "ci-ingest", Scope::Ingest, false).unwrap();
        assert_eq!(info.scope, Scope::Ingest);
        assert!(secret.starts_with("twt_"));
        let stored: Vec<u8> = raw
            .query_row("SELECT token_hash FROM tokens", [], |r| r.get(0))
            .unwrap();
        assert_eq!(stored, sha256(&secret).to_vec(), "only the digest is kept");

        let h = holder(&conn, &secret).unwrap().unwrap();
        assert_eq!((h.name.as_str(), h.scope), ("ci-ingest", Scope::Ingest));
        assert!(list(&conn).unwrap()[0].last_used_at.is_some());
        assert_eq!(holder(&conn, "twt_nope").unwrap(), None);

        assert!(matches!(
            create(&conn, "ci-ingest", Scope::Read, false),
            Err(TokenError::Exists(_))
        ));
        assert!(revoke(&conn, "ci-ingest", false).unwrap());
        assert!(!revoke(&conn, "ci-ingest", false).unwrap(), "once");
        assert!(matches!(
            revoke(&conn, "other", false),
            Err(TokenError::Unknown(_))
        ));
        assert_eq!(holder(&conn, &secret).unwrap(), None);
        assert!(list(&conn).unwrap()[0].revoked_at.is_some());
    }

    #[test]
    fn changes_made_without_the_server_wait_to_be_recorded() {
        let raw = db();
        let conn = Session::sqlite(&raw);
        create(&conn, "by-cli", Scope::Read, false).unwrap();
        create(&conn, "by-api", Scope::Admin, true).unwrap();
        revoke(&conn, "by-api", false).unwrap();
        let pending = unaudited(&conn).unwrap();
        assert_eq!(
            pending,
            [
                Unaudited::Created {
                    name: "by-cli".into(),
                    scope: Scope::Read
                },
                Unaudited::Revoked {
                    name: "by-api".into(),
                    scope: Scope::Admin
                },
            ]
        );
        for p in &pending {
            mark_audited(&conn, p).unwrap();
        }
        assert_eq!(unaudited(&conn).unwrap(), []);
    }

    #[test]
    fn names_and_scopes_are_checked() {
        assert!(check_name("deploy-bot.v2_x").is_ok());
        for bad in ["", "has space", "ü", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Scope::parse("read"), Some(Scope::Read));
        assert_eq!(Scope::parse("root"), None);
        assert!(Scope::Admin.allows(Scope::Ingest));
        assert!(!Scope::Read.allows(Scope::Ingest));
        assert!(!Scope::Ingest.allows(Scope::Read));
    }
}
