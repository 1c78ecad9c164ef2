//! `trailwatch token` and `trailwatch user`: the CLI's commands over the auth database of a
//! data directory, or over a cluster's PostgreSQL database (`--database`), whether or not a
//! server runs on it (a server records what they change in the chain within seconds; on a
//! cluster, one node does). Server build only.

use super::config::{TokenCommand, UserCommand};
use crate::auth::tokens::{create, list, revoke, Scope, TokenError};
use crate::auth::users::{self, NewUser, UserError};
use crate::auth::{self, random_token, AuthError};
use crate::model::Role;
use crate::store::sql::Session;

/// Where the users and tokens live.
pub enum Accounts {
    /// The auth database of a data directory (made if missing).
    Dir(std::path::PathBuf),
    /// A cluster's PostgreSQL database (its schema made or migrated if need be).
    Database(String),
}

/// Runs `f` in one transaction of `accounts`, committed when it returns `Ok`.
async fn in_transaction<T, E>(
    accounts: &Accounts,
    f: impl FnOnce(&Session<'_>) -> Result<T, E> + Send + 'static,
) -> Result<T, E>
where
    T: Send + 'static,
    E: From<AuthError> + From<crate::store::sql::SqlError> + Send + 'static,
{
    match accounts {
        Accounts::Dir(dir) => {
            std::fs::create_dir_all(dir).map_err(|source| AuthError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
            let raw = auth::open_db(dir)?;
            let tx = raw.unchecked_transaction().map_err(AuthError::from)?;
            let out = f(&Session::sqlite(&tx))?;
            tx.commit().map_err(AuthError::from)?;
            Ok(out)
        }
        Accounts::Database(url) => {
            let db = crate::store::postgres::small_tables(url)
                .await
                .map_err(|e| AuthError::from(crate::store::sql::SqlError::Store(e)))?;
            db.transaction(f).await
        }
    }
}

/// Runs `trailwatch token ...` on `accounts` and returns what it prints on
/// stdout: the bare token for `create` (so `$(trailwatch token create ...)` captures it), a
/// table for `list`. The server records these changes in the chain within seconds.
///
/// # Errors
/// A bad name or scope, an unknown token, or the database failed.
pub async fn token(accounts: &Accounts, command: &TokenCommand) -> Result<String, TokenError> {
    let command = command.clone();
    in_transaction(accounts, move |conn| match &command {
        TokenCommand::Create { name, scope } => {
            let scope = Scope::parse(scope).ok_or_else(|| TokenError::Scope(scope.clone()))?;
            let (_, secret) = create(conn, name, scope, false)?;
            Ok(format!("{secret}\n"))
        }
        TokenCommand::List => {
            let mut out = format!(
                "{:<24} {:<7} {:<21} {:<21} {}\n",
                "NAME", "SCOPE", "CREATED", "LAST USED", "REVOKED"
            );
            for t in list(conn)? {
                out.push_str(&format!(
                    "{:<24} {:<7} {:<21} {:<21} {}\n",
                    t.name,
                    t.scope.as_str(),
                    t.created_at,
                    t.last_used_at.as_deref().unwrap_or("never"),
                    t.revoked_at.as_deref().unwrap_or("-"),
                ));
            }
            Ok(out)
        }
        TokenCommand::Revoke { name } => Ok(match revoke(conn, name, false)? {
            true => format!("revoked {name}\n"),
            false => format!("{name} was revoked already\n"),
        }),
    })
    .await
}

/// Runs `trailwatch user ...` on `accounts`, reading a password from `stdin`
/// when asked to, and returns what it prints.
///
/// # Errors
/// A bad name, role or password, an unknown user, or the database failed.
pub async fn user(
    accounts: &Accounts,
    command: &UserCommand,
    stdin: &mut dyn std::io::BufRead,
) -> Result<String, UserError> {
    let read_password = |stdin: &mut dyn std::io::BufRead| -> Result<String, UserError> {
        let mut line = String::new();
        stdin
            .read_line(&mut line)
            .map_err(|e| UserError::Password(format!("cannot read standard input: {e}")))?;
        Ok(line.trim_end_matches(['\r', '\n']).to_string())
    };
    match command {
        UserCommand::Add {
            name,
            role,
            subject,
            password_stdin,
        } => {
            let role = Role::parse(role).ok_or_else(|| UserError::Role(role.clone()))?;
            let (password, shown) = match password_stdin {
                true => (read_password(stdin)?, None),
                false => {
                    // No terminal prompt: a generated password is printed once instead.
                    let p = random_token("")?.chars().take(24).collect::<String>();
                    (p.clone(), Some(p))
                }
            };
            let user = NewUser {
                name: name.clone(),
                role,
                subject: subject.clone(),
                password,
            };
            let info = in_transaction(accounts, move |s| users::create(s, &user, false)).await?;
            Ok(match shown {
                Some(p) => format!(
                    "added {} ({}, actor {:?}); password: {p}\n",
                    info.name,
                    info.role.as_str(),
                    info.subject
                ),
                None => format!(
                    "added {} ({}, actor {:?})\n",
                    info.name,
                    info.role.as_str(),
                    info.subject
                ),
            })
        }
        UserCommand::List => {
            let mut out = format!(
                "{:<24} {:<8} {:<24} {:<21} {:<21} {}\n",
                "NAME", "ROLE", "ACTOR", "CREATED", "LAST SIGN-IN", "DISABLED"
            );
            for u in in_transaction(accounts, users::list).await? {
                out.push_str(&format!(
                    "{:<24} {:<8} {:<24} {:<21} {:<21} {}\n",
                    u.name,
                    u.role.as_str(),
                    u.subject,
                    u.created_at,
                    u.last_login_at.as_deref().unwrap_or("never"),
                    u.disabled_at.as_deref().unwrap_or("-"),
                ));
            }
            Ok(out)
        }
        UserCommand::Disable { name } => Ok(
            match in_transaction(accounts, {
                let name = name.clone();
                move |s| users::disable(s, &name, false)
            })
            .await?
            {
                Some(_) => format!("disabled {name}; their sessions have ended\n"),
                None => format!("{name} was disabled already\n"),
            },
        ),
        UserCommand::Passwd { name } => {
            let password = read_password(stdin)?;
            in_transaction(accounts, {
                let name = name.clone();
                move |s| users::set_password(s, &name, &password)
            })
            .await?;
            Ok(format!(
                "new password set for {name}; their sessions have ended\n"
            ))
        }
    }
}
