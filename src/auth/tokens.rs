//! Scoped API tokens, kept in `auth.db` beside the sessions: each is shown once when it is
//! made and stored only as its SHA-256, with a name, a scope, when it was last used and when
//! it was revoked. The functions take a connection, so the CLI uses them on the data
//! directory while the server runs (SQLite's WAL lets both in), and every request looks its
//! token up afresh: a revocation holds from the next request on.

use super::{random_token, rfc3339, sha256, AuthError};
use rusqlite::{params, Connection, OptionalExtension};

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

impl From<rusqlite::Error> for TokenError {
    fn from(e: rusqlite::Error) -> Self {
        TokenError::Auth(AuthError::Sqlite(e))
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
    conn: &Connection,
    name: &str,
    scope: Scope,
    audited: bool,
) -> Result<(TokenInfo, String), TokenError> {
    check_name(name)?;
    let secret = random_token("twt_")?;
    let now = chrono::Utc::now().timestamp();
    let inserted = conn.execute(
        "INSERT INTO tokens (name, scope, token_hash, created_at, audited)
         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (name) DO NOTHING",
        params![
            name,
            scope.as_str(),
            sha256(&secret).as_slice(),
            now,
            audited
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
pub fn list(conn: &Connection) -> Result<Vec<TokenInfo>, TokenError> {
    let mut stmt = conn.prepare(
        "SELECT name, scope, created_at, last_used_at, revoked_at FROM tokens ORDER BY id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, Option<i64>>(3)?,
            r.get::<_, Option<i64>>(4)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (name, scope, created, used, revoked) = row?;
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
pub fn revoke(conn: &Connection, name: &str, audited: bool) -> Result<bool, TokenError> {
    let now = chrono::Utc::now().timestamp();
    let changed = conn.execute(
        "UPDATE tokens SET revoked_at = ?2, audited_revoke = ?3
         WHERE name = ?1 AND revoked_at IS NULL",
        params![name, now, audited],
    )?;
    if changed == 1 {
        return Ok(true);
    }
    let exists: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM tokens WHERE name = ?1)",
        [name],
        |r| r.get(0),
    )?;
    match exists {
        true => Ok(false),
        false => Err(TokenError::Unknown(name.into())),
    }
}

/// [`revoke`], with the token's scope, for recording the change.
pub fn revoke_returning_scope(
    conn: &Connection,
    name: &str,
    audited: bool,
) -> Result<(bool, Scope), TokenError> {
    let revoked = revoke(conn, name, audited)?;
    let scope: String =
        conn.query_row("SELECT scope FROM tokens WHERE name = ?1", [name], |r| {
            r.get(0)
        })?;
    let scope = Scope::parse(&scope).ok_or(TokenError::Scope(scope))?;
    Ok((revoked, scope))
}

/// The holder of `secret` if it is a live token, noting the use.
pub fn holder(conn: &Connection, secret: &str) -> Result<Option<TokenHolder>, AuthError> {
    let row: Option<(i64, String, String, Option<i64>)> = conn
        .prepare_cached(
            "SELECT id, name, scope, last_used_at FROM tokens
             WHERE token_hash = ?1 AND revoked_at IS NULL",
        )?
        .query_row([sha256(secret.trim()).as_slice()], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    let Some((id, name, scope, used)) = row else {
        return Ok(None);
    };
    let Some(scope) = Scope::parse(&scope) else {
        return Ok(None);
    };
    let now = chrono::Utc::now().timestamp();
    if used.is_none_or(|u| now - u >= LAST_USED_GRANULARITY_SECS) {
        conn.prepare_cached("UPDATE tokens SET last_used_at = ?2 WHERE id = ?1")?
            .execute(params![id, now])?;
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
pub fn unaudited(conn: &Connection) -> Result<Vec<Unaudited>, AuthError> {
    let mut stmt = conn.prepare_cached(
        "SELECT name, scope, audited, revoked_at IS NOT NULL AND audited_revoke = 0
         FROM tokens WHERE audited = 0 OR (revoked_at IS NOT NULL AND audited_revoke = 0)
         ORDER BY id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, bool>(2)?,
            r.get::<_, bool>(3)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (name, scope, created_audited, revoke_pending) = row?;
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
pub fn mark_audited(conn: &Connection, change: &Unaudited) -> Result<(), AuthError> {
    match change {
        Unaudited::Created { name, .. } => {
            conn.execute("UPDATE tokens SET audited = 1 WHERE name = ?1", [name])?
        }
        Unaudited::Revoked { name, .. } => conn.execute(
            "UPDATE tokens SET audited_revoke = 1 WHERE name = ?1",
            [name],
        )?,
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        conn
    }

    #[test]
    fn a_token_is_stored_hashed_checks_out_until_revoked_and_keeps_its_name() {
        let conn = db();
        let (info, secret) = create(&conn, "ci-ingest", Scope::Ingest, false).unwrap();
        assert_eq!(info.scope, Scope::Ingest);
        assert!(secret.starts_with("twt_"));
        let stored: Vec<u8> = conn
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
        let conn = db();
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
