//! The PostgreSQL backend, for several nodes that share one database: its schema, created and
//! migrated by the server itself with versioned migrations that are safe when several nodes
//! start at once, and leases that let one node at a time run a cluster-wide job (retention,
//! the background chain check, checkpoint signing) and pass it on when that node dies, and
//! the notices that carry committed seq ranges from node to node.
//! The event log (`log`): one chain that every node appends to, and every node's live stream;
//! search (`query`, `words`), retention, erasure, verification and the copy from SQLite over
//! it. Server build only.

pub mod checkpoints;
mod copy;
mod erase;
mod lease;
mod log;
mod migrate;
mod notify;
pub mod partition;
mod query;
mod retention;
mod verify;
mod words;

pub use copy::{copy_sqlite, CopyReport};
pub use lease::{holder, release, run_when_held, try_acquire, LeaseHolder};
pub use log::{small_tables, EventLog, LockHeld};
pub use migrate::{migrate, Migration, MIGRATIONS};
pub use notify::{announce, notices, Committed, Listener, Notice, CHANNEL};
pub use verify::{stored_checkpoints, verify};

/// Why a PostgreSQL operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("PostgreSQL: {0}")]
    Db(#[from] tokio_postgres::Error),
    /// The database was migrated by a newer Trailwatch; this build would misread it.
    #[error("the database's schema is at version {found}, newer than this build's {known}")]
    NewerSchema { found: i32, known: i32 },
}
