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
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "leases",
        // Expiry is the database's clock, the one clock every node shares.
        sql: "CREATE TABLE leases (
                  name        text        PRIMARY KEY,
                  holder      text        NOT NULL,
                  acquired_at timestamptz NOT NULL,
                  expires_at  timestamptz NOT NULL
              )",
    },
    Migration {
        version: 2,
        name: "events and their chain",
        sql: EVENTS,
    },
    Migration {
        version: 3,
        name: "checkpoints and retention records",
        sql: SIGNED,
    },
    Migration {
        version: 4,
        name: "search",
        sql: SEARCH,
    },
    Migration {
        version: 5,
        name: "erasures on the chain's head",
        // Counted where every appending node looks first: a node that sees it move forgets
        // its risk state and rebuilds it from the rows, erased subjects left out.
        sql: "ALTER TABLE chain_head ADD COLUMN erasures bigint NOT NULL DEFAULT 0",
    },
    Migration {
        version: 6,
        name: "tail cursors",
        // Each node tails files of its own machine: its cursors are its own, by node name,
        // committed with the events read before them (`store::cursor`).
        sql: "CREATE TABLE tail_cursors (
                  node        text   NOT NULL,
                  source      text   NOT NULL,
                  dev         bigint NOT NULL,
                  ino         bigint NOT NULL,
                  \"offset\"    bigint NOT NULL,
                  fingerprint bytea  NOT NULL,
                  fp_len      bigint NOT NULL,
                  lines       bigint NOT NULL,
                  updated_at  bigint NOT NULL,
                  PRIMARY KEY (node, source)
              )",
    },
    Migration {
        version: 7,
        name: "rollups",
        sql: ROLLUPS,
    },
    Migration {
        version: 8,
        name: "saved views",
        sql: "CREATE TABLE views (
                  id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                  name       text   NOT NULL UNIQUE,
                  query      text   NOT NULL,
                  created_at bigint NOT NULL
              )",
    },
    Migration {
        version: 9,
        name: "users, tokens, sessions and settings",
        sql: AUTH,
    },
    Migration {
        version: 10,
        name: "alerts and their deliveries",
        sql: "CREATE TABLE alerts (
                  id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                  rule            text   NOT NULL,
                  severity        text   NOT NULL,
                  message         text   NOT NULL,
                  event           text,
                  count           bigint NOT NULL,
                  first_at        bigint NOT NULL,
                  last_at         bigint NOT NULL,
                  acknowledged_at bigint
              );
              CREATE TABLE deliveries (
                  id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                  alert_id bigint NOT NULL,
                  url      text   NOT NULL,
                  attempt  bigint NOT NULL,
                  status   bigint,
                  error    text,
                  at       bigint NOT NULL
              );
              CREATE INDEX deliveries_alert ON deliveries (alert_id);",
    },
    Migration {
        version: 11,
        name: "finer statistics of the search words",
        // With the default target the planner knows only the thousand commonest words and
        // guesses any other matches thousands of events; for a rare word it then walks every
        // event newest first instead of asking the words index. `partition` sets the same on
        // each new month.
        sql: "ALTER TABLE events ALTER COLUMN words SET STATISTICS 400;",
    },
    Migration {
        version: 12,
        name: "hourly counts by source",
        // The hours already stored, counted as the writer counts new events from now on.
        sql: "DELETE FROM rollup_hour WHERE kind = 'source';
              INSERT INTO rollup_hour (kind, value, hour, n)
              SELECT 'source', source, (ts - ((ts % 3600000) + 3600000) % 3600000) / 3600000,
                     count(*)
              FROM events GROUP BY 2, 3;",
    },
];

/// What `auth.db` holds on SQLite (`auth`, `auth::users`, `auth::tokens`, the settings
/// module), for every node: a session made on one is valid on all, a token revoked or a user
/// disabled on one is refused by all at the next request. Flags are integers 0 or 1, as the
/// shared statements (`store::sql`) compare them.
const AUTH: &str = "
CREATE TABLE sessions (
    token_hash   bytea  PRIMARY KEY,
    created_at   bigint NOT NULL,
    expires_at   bigint NOT NULL,
    user_name    text,
    last_seen_at bigint
);
CREATE TABLE tokens (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name           text   NOT NULL UNIQUE,
    scope          text   NOT NULL,
    token_hash     bytea  NOT NULL UNIQUE,
    created_at     bigint NOT NULL,
    last_used_at   bigint,
    revoked_at     bigint,
    audited        bigint NOT NULL DEFAULT 0,
    audited_revoke bigint NOT NULL DEFAULT 0
);
CREATE TABLE users (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name             text   NOT NULL UNIQUE,
    role             text   NOT NULL,
    subject          text   NOT NULL,
    password_hash    text   NOT NULL,
    created_at       bigint NOT NULL,
    last_login_at    bigint,
    disabled_at      bigint,
    audited          bigint NOT NULL DEFAULT 0,
    audited_disable  bigint NOT NULL DEFAULT 0,
    audited_password bigint NOT NULL DEFAULT 1
);
CREATE TABLE setup_codes (
    code_hash  bytea  PRIMARY KEY,
    created_at bigint NOT NULL,
    expires_at bigint NOT NULL,
    used_at    bigint
);
CREATE TABLE settings (
    key        text   PRIMARY KEY,
    value      text   NOT NULL,
    updated_at bigint NOT NULL,
    updated_by text   NOT NULL
);
";

/// Counts by event time that analytics read instead of history (`store::rollup`), in the
/// appending transaction with the events they count, as on SQLite.
const ROLLUPS: &str = "
CREATE TABLE rollup_minute (
    minute   bigint PRIMARY KEY,
    n        bigint NOT NULL,
    denied   bigint NOT NULL,
    failed   bigint NOT NULL,
    errors   bigint NOT NULL,
    critical bigint NOT NULL
);
CREATE TABLE rollup_hour_total (
    hour     bigint PRIMARY KEY,
    n        bigint NOT NULL,
    denied   bigint NOT NULL,
    failed   bigint NOT NULL,
    errors   bigint NOT NULL,
    critical bigint NOT NULL
);
CREATE TABLE rollup_hour (
    kind  text   NOT NULL,
    value text   NOT NULL,
    hour  bigint NOT NULL,
    n     bigint NOT NULL,
    PRIMARY KEY (kind, value, hour)
);
CREATE TABLE rollup_user_hour (
    hour    bigint NOT NULL,
    user_id text   NOT NULL,
    n       bigint NOT NULL,
    denied  bigint NOT NULL,
    failed  bigint NOT NULL,
    PRIMARY KEY (hour, user_id)
);
CREATE INDEX events_critical ON events (seq) WHERE level = 'critical';
";

/// What the query language searches by (`postgres::query`): the words of each event as our
/// tokenizer splits them (`postgres::words`), with positions, so phrases and prefixes match
/// exactly as SQLite's FTS5 index does; and b-trees on the user and the action, exact or by
/// prefix (`text_pattern_ops`).
const SEARCH: &str = "
ALTER TABLE events ADD COLUMN words tsvector;
CREATE INDEX events_words ON events USING gin (words);
CREATE INDEX events_user ON events (user_id text_pattern_ops);
CREATE INDEX events_action ON events (action text_pattern_ops);
";

/// What is signed about the chain: checkpoints of its head, and the records of retention runs
/// with the ranges they removed (`store::retention`), in SQLite's columns.
const SIGNED: &str = "
CREATE TABLE checkpoints (
    seq       bigint PRIMARY KEY,
    hash      text   NOT NULL,
    signed_at text   NOT NULL,
    signature text   NOT NULL
);
CREATE TABLE prunes (
    id        bigint PRIMARY KEY,
    signed_at text   NOT NULL,
    ranges    bigint NOT NULL,
    events    bigint NOT NULL,
    digest    bytea  NOT NULL,
    signature bytea  NOT NULL
);
CREATE TABLE pruned_ranges (
    first_seq bigint PRIMARY KEY,
    last_seq  bigint NOT NULL,
    prev_hash bytea  NOT NULL,
    last_hash bytea  NOT NULL,
    prune_id  bigint NOT NULL
);
CREATE INDEX pruned_ranges_prune ON pruned_ranges (prune_id, first_seq);
";

/// The events, sealed in one chain whichever node appends them. Columns and their encodings
/// are SQLite's (`store::sqlite::schema`), so rows read back through one decoder (`store::row`) and
/// copy across unchanged; every integer is a bigint for the same reason.
const EVENTS: &str = r"
-- The chain's head: the one row every appending transaction locks first, so seqs are
-- given out, and events sealed, in one order across every node. received_at never goes
-- back, whatever the nodes' clocks say, so the time partitions follow seq.
CREATE TABLE chain_head (
    id          smallint PRIMARY KEY CHECK (id = 1),
    seq         bigint   NOT NULL,
    hash        bytea    NOT NULL,
    received_at bigint   NOT NULL
);
INSERT INTO chain_head VALUES (1, 0, decode(repeat('00', 32), 'hex'), 0);

-- Partitioned by arrival month (see `postgres::partition`): retention drops whole months.
CREATE TABLE events (
    seq               bigint  NOT NULL,
    event_id          text    NOT NULL,
    ts                bigint  NOT NULL,
    received_at       bigint  NOT NULL,
    level             text    NOT NULL,
    category          text    NOT NULL,
    action            text    NOT NULL,
    outcome           text    NOT NULL,
    source            text    NOT NULL,
    user_id           text    NOT NULL,
    username          text,
    description       text,
    entity_type       text,
    entity_id         text,
    entity_name       text,
    req_method        text,
    req_path          text,
    req_ip            text,
    req_user_agent    text,
    req_status        bigint,
    req_response_time bigint,
    country           text,
    city              text,
    metadata          text,
    changes           text,
    system            text,
    risk              bigint,
    correlation_id    text,
    session_id        text,
    pii_digest        bytea   NOT NULL,
    prev_hash         bytea   NOT NULL,
    hash              bytea   NOT NULL,
    erased            boolean NOT NULL DEFAULT false,
    risk_reasons      text,
    personal          text,
    submitted_by      text,
    PRIMARY KEY (seq, received_at)
) PARTITION BY RANGE (received_at);
CREATE INDEX events_ts ON events (ts);

-- One salt per data subject: deleting it crypto-shreds the subject.
CREATE TABLE subjects (
    subject text  PRIMARY KEY,
    salt    bytea NOT NULL
);

-- Running totals, kept in the transaction of the events they count.
CREATE TABLE counters (
    name  text   PRIMARY KEY,
    value bigint NOT NULL
);

-- Risk profiles (`store::risk`), written through the seq kept in meta.
CREATE TABLE risk_profile (
    user_id   text  PRIMARY KEY,
    hours     bytea NOT NULL,
    countries text
);

CREATE TABLE meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);
";

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
