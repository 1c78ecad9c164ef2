//! `trailwatch token` and `trailwatch user`: the CLI's commands over the auth database of a
//! data directory, whether or not a server runs on it (the server records what they change
//! in the chain within seconds). Server build only.

use super::config::{TokenCommand, UserCommand};
use crate::auth::tokens::{create, list, revoke, Scope, TokenError};
use crate::auth::users::{self, NewUser, UserError};
use crate::auth::{self, random_token, AuthError};
use crate::model::Role;
use crate::store::sql::Session;

/// Runs `f` in one transaction of the auth database of the data directory `dir` (made if
/// missing), committed when it returns `Ok`.
fn in_transaction<T, E: From<AuthError>>(
    dir: &std::path::Path,
    f: impl FnOnce(&Session<'_>) -> Result<T, E>,
) -> Result<T, E> {
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

/// Runs `trailwatch token ...` on the data directory `dir` and returns what it prints on
/// stdout: the bare token for `create` (so `$(trailwatch token create ...)` captures it), a
/// table for `list`. The server records these changes in the chain within seconds.
///
/// # Errors
/// A bad name or scope, an unknown token, or the database failed.
pub fn token(dir: &std::path::Path, command: &TokenCommand) -> Result<String, TokenError> {
    in_transaction(dir, |conn| match command {
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
}

/// Runs `trailwatch user ...` on the data directory `dir`, reading a password from `stdin`
/// when asked to, and returns what it prints.
///
/// # Errors
/// A bad name, role or password, an unknown user, or the database failed.
pub fn user(
    dir: &std::path::Path,
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
            let info = in_transaction(dir, |s| users::create(s, &user, false))?;
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
            for u in in_transaction(dir, users::list)? {
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
            match in_transaction(dir, |s| users::disable(s, name, false))? {
                Some(_) => format!("disabled {name}; their sessions have ended\n"),
                None => format!("{name} was disabled already\n"),
            },
        ),
        UserCommand::Passwd { name } => {
            let password = read_password(stdin)?;
            in_transaction(dir, |s| users::set_password(s, name, &password))?;
            Ok(format!(
                "new password set for {name}; their sessions have ended\n"
            ))
        }
    }
}
