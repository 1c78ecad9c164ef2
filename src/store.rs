//! The durable event store: one backend-neutral interface ([`Store`], in `facade`), the only
//! thing the rest of the server knows, over two implementations in folders of their own: the
//! embedded SQLite store of one data directory (`sqlite`) and a node of a cluster sharing a
//! PostgreSQL database (`postgres`). Beside them, what both share: the chain and its sealing
//! (`chain`, `seal`, `checkpoint`, `verify`'s walk), the rules of retention, risk scoring and
//! rollups, the events' row (`row`), what a read asks for (`reads`), the small tables' SQL
//! (`sql`), and here the errors, options and the gap-free live follower. Server build only.

pub mod chain;
pub mod checkpoint;
pub mod cursor;
mod facade;
pub mod postgres;
pub mod reads;
pub mod retention;
pub mod risk;
pub mod rollup;
mod row;
mod seal;
pub mod sql;
pub mod sqlite;
mod verify;

use crate::model::{AuditEvent, Seq, StoredEvent};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

pub use facade::Store;
pub use reads::{Cursor, DistinctField, PageRequest};
pub use sqlite::{SqliteStore, ERASED_SUBJECT, SCHEMA_VERSION, SEARCH_FILE};

/// Blanks the personal fields of a copy of an event kept outside the store (an alert's), as
/// erasure blanks them inside: the actor, its address, agent and location, and the metadata
/// fields declared personal.
pub fn blank_personal(event: &mut AuditEvent, personal_metadata: &[String]) {
    event.user.id = ERASED_SUBJECT.into();
    event.user.username = None;
    if let Some(r) = event.request.as_mut() {
        r.ip = None;
        r.user_agent = None;
    }
    event.location = None;
    if let Some(m) = event.metadata.as_mut() {
        m.retain(|k, _| !personal_metadata.contains(k));
        if m.is_empty() {
            event.metadata = None;
        }
    }
}
pub use retention::RetentionPolicy;
pub use risk::RiskConfig;
pub use sqlite::verify::{stored_count, verify_path};
pub use verify::{progress_bar, VerifyReport};

/// How long a search waits for the index to reach the head before it answers with what is
/// indexed (and says how far that is).
pub const INDEX_WAIT: Duration = Duration::from_secs(10);

/// The database file's name inside the data directory.
pub const DB_FILE: &str = "trailwatch.db";

/// Failures of the store. Callers map them to HTTP statuses; details are logged, not shown.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the database is full or the disk has no space left")]
    Full,
    #[error("the store is shutting down")]
    Closed,
    #[error("the search index is catching up: it covers seq {indexed} of {head}")]
    Indexing { indexed: u64, head: u64 },
    #[error("stored data is unreadable at seq {seq}: {detail}")]
    Corrupt { seq: u64, detail: String },
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The PostgreSQL server cannot be reached (down, restarting, or the network): nothing
    /// was done, and the same request may be retried.
    #[error("the database cannot be reached: {0}")]
    Unreachable(String),
    #[error("PostgreSQL: {0}")]
    Postgres(String),
}

impl StoreError {
    /// Classifies SQLite's "database or disk is full" apart from other failures, so ingest can
    /// answer 507 instead of 500.
    fn from_sqlite(e: rusqlite::Error) -> StoreError {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DiskFull) => StoreError::Full,
            _ => StoreError::Sqlite(e),
        }
    }
}

/// Tuning knobs of the store.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// How many committed events the live fan-out keeps for slow subscribers.
    pub live_capacity: usize,
    /// The most events one group commit takes.
    pub max_batch_events: usize,
    /// Whether each commit is fsynced before it is acknowledged. Only tests of other layers turn
    /// this off.
    pub durable: bool,
    /// A hard cap on the database size, in SQLite pages (4 KiB each); appends beyond it fail
    /// with [`StoreError::Full`] exactly as on a full disk.
    pub max_pages: Option<u64>,
    /// How long a search waits for the index to reach the head it saw.
    pub index_wait: Duration,
    /// How events without a sender's score are scored.
    pub risk: RiskConfig,
    /// Top-level metadata fields that are personal data: stored apart from the rest, sealed
    /// with the actor's salt, and removed when the actor is erased.
    pub personal_metadata: Vec<String>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            live_capacity: 4096,
            max_batch_events: 50_000,
            durable: true,
            max_pages: None,
            index_wait: INDEX_WAIT,
            risk: RiskConfig::default(),
            personal_metadata: Vec::new(),
        }
    }
}

/// Commit statistics, for tests and the health endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Transactions committed.
    pub commits: u64,
    /// Append requests acknowledged.
    pub appends: u64,
    /// Events committed.
    pub events: u64,
    /// Whether the last group commit failed for want of space (the disk, or the database's
    /// `max_pages` cap). The next commit that fits clears it: nothing needs restarting.
    pub full: bool,
}

/// A gap-free follower of the commits; see [`Store::follow`].
pub struct Following {
    feed: Feed,
    live: broadcast::Receiver<Arc<StoredEvent>>,
    /// The last seq handed out.
    last: Seq,
    /// Events read back from the database, not yet handed out.
    backlog: std::collections::VecDeque<StoredEvent>,
}

/// Where a follower reads what its live queue dropped: either backend's committed events.
#[derive(Clone)]
pub(crate) enum Feed {
    Sqlite(SqliteStore),
    Postgres(postgres::EventLog),
}

impl Feed {
    /// The newest seq the live queue has been given.
    fn published(&self) -> u64 {
        match self {
            Feed::Sqlite(store) => store.published(),
            Feed::Postgres(log) => log.published().0,
        }
    }

    async fn read_from(&self, after: Seq, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        match self {
            Feed::Sqlite(store) => store.read_from(after, limit).await,
            Feed::Postgres(log) => log.read_from(after, limit).await,
        }
    }
}

impl Following {
    /// How many events one catch-up read takes.
    const CATCH_UP: usize = 2_000;

    pub(crate) fn new(feed: Feed, live: broadcast::Receiver<Arc<StoredEvent>>, last: Seq) -> Self {
        Following {
            feed,
            live,
            last,
            backlog: std::collections::VecDeque::new(),
        }
    }

    /// The seq of the last event returned (the head when following began).
    pub fn last_seq(&self) -> Seq {
        self.last
    }

    /// The next event after the last one returned; `None` once the store has stopped.
    ///
    /// # Errors
    /// Database errors while catching up.
    pub async fn next(&mut self) -> Result<Option<Arc<StoredEvent>>, StoreError> {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            if let Some(e) = self.backlog.pop_front() {
                self.last = e.seq;
                return Ok(Some(Arc::new(e)));
            }
            // Behind what is committed with nothing live to read (following from an old
            // seq): catch up from the database now, not at the next commit, which may be
            // long in coming.
            if self.live.is_empty() && self.feed.published() > self.last.0 {
                let missed = self.feed.read_from(self.last, Self::CATCH_UP).await?;
                if !missed.is_empty() {
                    self.backlog.extend(missed);
                    continue;
                }
            }
            match self.live.recv().await {
                Ok(e) if e.seq <= self.last => continue,
                Ok(e) if e.seq == self.last.next() => {
                    self.last = e.seq;
                    return Ok(Some(e));
                }
                // A gap: what came between is in the database.
                Ok(_) | Err(RecvError::Lagged(_)) => {
                    let missed = self.feed.read_from(self.last, Self::CATCH_UP).await?;
                    self.backlog.extend(missed);
                }
                Err(RecvError::Closed) => return Ok(None),
            }
        }
    }
}

/// Which of a subject's events [`Store::subject_events`] gathers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Concerning {
    /// Those where the subject is the actor.
    Actor,
    /// Those where the subject is the actor or the entity acted on.
    ActorOrEntity,
}
