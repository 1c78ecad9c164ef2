//! Versioned migrations: each applied once, in order, in a transaction of its own, recorded in
//! `schema_migrations`. A session-level advisory lock makes nodes that start together take
//! turns: the first applies what is missing, the others then find nothing to do.

use super::PgError;
use tokio_postgres::Client;

/// One step of the schema.
#[derive(Clone, Copy, Debug)]
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration this build knows, oldest first; a version once released never changes.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "leases",
    // Expiry is the database's clock, the one clock every node shares.
    sql: "CREATE TABLE leases (
              name        text        PRIMARY KEY,
              holder      text        NOT NULL,
              acquired_at timestamptz NOT NULL,
              expires_at  timestamptz NOT NULL
          )",
}];

/// The advisory lock migrations hold (`trailwtc` in ASCII).
const LOCK: i64 = 0x7472_6169_6c77_7463;

/// Applies every migration the database lacks; returns the versions applied now (none when
/// it was up to date or another node got there first).
///
/// # Errors
/// [`PgError::NewerSchema`] when a newer build migrated the database; database errors (a
/// migration that fails leaves the versions before it applied and nothing of itself).
pub async fn migrate(client: &mut Client) -> Result<Vec<i32>, PgError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK])
        .await?;
    let applied = apply(client).await;
    // Released whatever happened; the session ending would release it too.
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK])
        .await;
    let applied = applied?;
    unlocked?;
    Ok(applied)
}

async fn apply(client: &mut Client) -> Result<Vec<i32>, PgError> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version    integer     PRIMARY KEY,
                 name       text        NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )",
        )
        .await?;
    let done: Vec<i32> = client
        .query("SELECT version FROM schema_migrations", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let known = MIGRATIONS.last().map_or(0, |m| m.version);
    if let Some(&found) = done.iter().max().filter(|v| **v > known) {
        return Err(PgError::NewerSchema { found, known });
    }
    let mut applied = Vec::new();
    for m in MIGRATIONS.iter().filter(|m| !done.contains(&m.version)) {
        let tx = client.transaction().await?;
        tx.batch_execute(m.sql).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[&m.version, &m.name],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(version = m.version, name = m.name, "database migrated");
        applied.push(m.version);
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::MIGRATIONS;

    #[test]
    fn versions_rise_by_one_from_one() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i32 + 1, "{}", m.name);
        }
    }
}
