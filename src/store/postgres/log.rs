//! The event log on PostgreSQL: one hash chain that any number of nodes append to, and each
//! node's live stream of every event committed by any of them, in seq order, with no gap.
//!
//! Appending: each node has one appender task that drains the appends waiting for it into one
//! transaction (group commit, as on SQLite). The transaction first locks the `chain_head` row:
//! that lock is the one thing that serialises the cluster, so seqs are gap-free, increasing
//! and sealed in one order whichever node received the event. Holding it, the node brings its
//! risk state up to date with the events other nodes committed since its last batch (so every
//! node scores as one would), reads the salts and profiles the batch needs, seals, inserts,
//! moves the head, announces the committed range (delivered by PostgreSQL only when, and if,
//! the transaction commits) and commits. An append is acknowledged only after that commit.
//!
//! Streaming: each node has one sequencer task that publishes to the node's subscribers in seq
//! order. The node's own commits come to it in memory; other nodes' are announced and read
//! back from the rows. A poll of the head every second covers a notice lost while the
//! listening session was down.

use super::notify::{Committed, Listener};
use super::{partition, PgError};
use crate::model::{AuditEvent, IngestReceipt, Seq, StoredEvent};
use crate::store::chain::Hash32;
use crate::store::cursor::TailCursor;
use crate::store::risk::{Profile, Scorer};
use crate::store::row::{self, BadColumn, Columns, EVENT_COLUMNS};
use crate::store::seal::{now_millis, Prepared, Sealed, Sealer, Tally};
use crate::store::{CommitStats, StoreError, StoreOptions, ERASED_SUBJECT};
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod};
use foldhash::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_postgres::NoTls;

/// Sessions one node keeps open to the database: the appender's, the sequencer's reads and the
/// requests'.
const POOL_SIZE: usize = 16;
/// How long connecting may take before the database counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Rows one INSERT carries.
const INSERT_CHUNK: usize = 2_000;
/// Rows one catch-up read takes.
const READ_CHUNK: i64 = 1_000;
/// How often the sequencer looks at the head itself, in case a notice was lost.
const POLL: Duration = Duration::from_secs(1);

/// One node's handle on the shared event log. Cloning is cheap; the node's tasks stop when
/// the last handle goes.
#[derive(Clone)]
pub struct EventLog {
    shared: Arc<Shared>,
}

struct Shared {
    pool: Pool,
    jobs: mpsc::Sender<Job>,
    live: broadcast::Sender<Arc<StoredEvent>>,
    /// The newest seq published to this node's subscribers.
    published: watch::Receiver<u64>,
    personal: Arc<[String]>,
    /// This node's name.
    node: String,
    /// How this node connects, for sessions of their own (listening).
    config: tokio_postgres::Config,
    /// The newest seq a signed checkpoint covers, as this node last saw it.
    checkpointed: watch::Sender<u64>,
    /// Whether the database answered this node's last statement.
    reachable: Arc<std::sync::atomic::AtomicBool>,
    stats: Arc<Mutex<CommitStats>>,
    /// How long the last batches held the chain's lock, for the benchmark.
    held: Arc<Mutex<LockHeld>>,
    sequencer: tokio::task::AbortHandle,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.sequencer.abort();
    }
}

/// How long appending transactions held the chain's lock.
#[derive(Clone, Copy, Debug, Default)]
pub struct LockHeld {
    pub batches: u64,
    pub events: u64,
    pub total: Duration,
    pub longest: Duration,
}

struct Job {
    events: Vec<Prepared>,
    /// For lines read from a tailed file: where the file was read up to, committed with them.
    cursor: Option<TailCursor>,
    reply: oneshot::Sender<Result<IngestReceipt, StoreError>>,
}

impl From<PgError> for StoreError {
    fn from(e: PgError) -> Self {
        match e {
            PgError::Db(e) => StoreError::from_postgres(&e),
            other => StoreError::Postgres(other.to_string()),
        }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => StoreError::from_postgres(&e),
            other => StoreError::Unreachable(other.to_string()),
        }
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        StoreError::from_postgres(&e)
    }
}

impl StoreError {
    /// A lost or refused session is the database being unreachable (answered 503, retried);
    /// anything the server said is an error of the statement.
    fn from_postgres(e: &tokio_postgres::Error) -> StoreError {
        use std::error::Error as _;
        // Connecting failed (refused, timed out) or the session broke: I/O underneath, or
        // the server shutting down (class 57P: operator intervention).
        let io = e
            .source()
            .is_some_and(|s| s.downcast_ref::<std::io::Error>().is_some());
        let shutdown = e
            .code()
            .is_some_and(|c| c.code().starts_with("57P") || c.code().starts_with("08"));
        if e.is_closed() || io || shutdown || e.to_string().starts_with("error connecting") {
            StoreError::Unreachable(e.to_string())
        } else {
            StoreError::Postgres(e.to_string())
        }
    }
}

fn bad_column(idx: usize, detail: &str) -> BadColumn {
    BadColumn {
        idx,
        detail: detail.to_string(),
    }
}

fn corrupt(seq: i64) -> impl Fn(BadColumn) -> StoreError {
    move |e| StoreError::Corrupt {
        seq: seq.max(0) as u64,
        detail: format!("column {}: {}", e.idx, e.detail),
    }
}

impl Columns for tokio_postgres::Row {
    fn text(&self, idx: usize) -> Result<Option<String>, BadColumn> {
        self.try_get(idx).map_err(|e| BadColumn {
            idx,
            detail: e.to_string(),
        })
    }
    fn int(&self, idx: usize) -> Result<Option<i64>, BadColumn> {
        self.try_get(idx).map_err(|e| BadColumn {
            idx,
            detail: e.to_string(),
        })
    }
    fn bytes(&self, idx: usize) -> Result<Option<Vec<u8>>, BadColumn> {
        self.try_get(idx).map_err(|e| BadColumn {
            idx,
            detail: e.to_string(),
        })
    }
    fn flag(&self, idx: usize) -> Result<bool, BadColumn> {
        self.try_get(idx).map_err(|e| BadColumn {
            idx,
            detail: e.to_string(),
        })
    }
}

fn event_of(row: &tokio_postgres::Row) -> Result<StoredEvent, StoreError> {
    let seq: i64 = row.try_get(0).unwrap_or(0);
    row::event_from_row(row).map_err(corrupt(seq))
}

fn hash32(bytes: Vec<u8>, seq: i64, what: &str) -> Result<Hash32, StoreError> {
    bytes.try_into().map_err(|_| StoreError::Corrupt {
        seq: seq.max(0) as u64,
        detail: format!("the stored {what} is not 32 bytes"),
    })
}

/// The connection settings of `url`, with our defaults where it sets none.
fn config_of(url: &str) -> Result<tokio_postgres::Config, StoreError> {
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|e: tokio_postgres::Error| StoreError::Postgres(e.to_string()))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("trailwatch");
    }
    Ok(config)
}

/// A session on `config`'s database whose schema it has brought up to this build's.
async fn migrated(config: &tokio_postgres::Config) -> Result<tokio_postgres::Client, StoreError> {
    let (mut client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "setup session ended");
        }
    });
    super::migrate(&mut client).await?;
    Ok(client)
}

/// A pool of up to `size` sessions on `config`'s database.
fn pool_of(config: &tokio_postgres::Config, size: usize) -> Result<Pool, StoreError> {
    let manager = Manager::from_config(
        config.clone(),
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .create_timeout(Some(CONNECT_TIMEOUT))
        .wait_timeout(Some(CONNECT_TIMEOUT * 2))
        .build()
        .map_err(|e| StoreError::Postgres(e.to_string()))
}

/// The small tables beside the events (users, tokens, settings) of the database at `url`, for
/// a command that runs no node (`trailwatch token --database`): the schema made or migrated
/// first, as a starting node would.
///
/// # Errors
/// The URL is invalid, the database cannot be reached, or its schema is newer than this
/// build's.
pub async fn small_tables(url: &str) -> Result<crate::store::sql::Db, StoreError> {
    let config = config_of(url)?;
    drop(migrated(&config).await?);
    Ok(crate::store::sql::Db::Postgres(pool_of(&config, 1)?))
}

impl EventLog {
    /// Connects to `url` as the node named `node` (stable across its restarts: its tail
    /// cursors are kept by that name), migrates the schema if it is behind, makes this month's
    /// partitions, and starts this node's appender and sequencer.
    ///
    /// # Errors
    /// The URL is invalid, the database cannot be reached, or its schema is newer than this
    /// build's.
    pub async fn open(
        url: &str,
        node: &str,
        options: StoreOptions,
    ) -> Result<EventLog, StoreError> {
        let config = config_of(url)?;
        let mut setup = migrated(&config).await?;
        let covered_until = partition::ensure(&mut setup, now_millis().timestamp_millis()).await?;
        let head: i64 = setup
            .query_one("SELECT seq FROM chain_head WHERE id = 1", &[])
            .await?
            .get(0);
        let checkpointed: Option<i64> = setup
            .query_one("SELECT max(seq) FROM checkpoints", &[])
            .await?
            .get(0);
        let checkpointed = checkpointed.unwrap_or(0).max(0) as u64;
        drop(setup);
        let reachable = Arc::new(std::sync::atomic::AtomicBool::new(true));

        let pool = pool_of(&config, POOL_SIZE)?;

        let head = head.max(0) as u64;
        let (live, _) = broadcast::channel(options.live_capacity.max(16));
        let (published_tx, published) = watch::channel(head);
        let (local_tx, local_rx) = mpsc::unbounded_channel();
        let listen_config = config.clone();
        let sequencer = Sequencer {
            pool: pool.clone(),
            config,
            last: head,
            live: live.clone(),
            published: published_tx,
            local: local_rx,
            reachable: reachable.clone(),
        };
        let sequencer = tokio::spawn(sequencer.run()).abort_handle();

        let stats = Arc::new(Mutex::new(CommitStats::default()));
        let held = Arc::new(Mutex::new(LockHeld::default()));
        let (jobs_tx, jobs) = mpsc::channel(1024);
        let appender = Appender {
            pool: pool.clone(),
            jobs,
            scorer: Scorer::new(options.risk.clone()),
            known: 0,
            erasures: 0,
            id_salt: {
                let mut seed = [0u8; 8];
                getrandom::fill(&mut seed)
                    .map_err(|e| StoreError::Io(std::io::Error::other(e.to_string())))?;
                u64::from_le_bytes(seed) | 1
            },
            covered_until,
            max_batch_events: options.max_batch_events.max(1),
            sequencer: local_tx,
            node: node.to_string(),
            stats: stats.clone(),
            held: held.clone(),
            reachable: reachable.clone(),
        };
        tokio::spawn(appender.run());
        tracing::info!(head, "PostgreSQL event log opened");
        Ok(EventLog {
            shared: Arc::new(Shared {
                pool,
                jobs: jobs_tx,
                live,
                published,
                personal: options.personal_metadata.into(),
                node: node.to_string(),
                config: listen_config,
                checkpointed: watch::channel(checkpointed).0,
                reachable,
                stats,
                held,
                sequencer,
            }),
        })
    }

    /// Appends `events` as one unit: all are committed, sealed in order with consecutive
    /// seqs, or none is. Returns once the commit is durable.
    ///
    /// # Errors
    /// [`StoreError::Unreachable`] while the database cannot be reached; other database
    /// errors. Nothing was stored in either case.
    pub async fn append(&self, events: Vec<AuditEvent>) -> Result<IngestReceipt, StoreError> {
        self.append_with(events, None).await
    }

    async fn append_with(
        &self,
        events: Vec<AuditEvent>,
        cursor: Option<TailCursor>,
    ) -> Result<IngestReceipt, StoreError> {
        if events.is_empty() && cursor.is_none() {
            let head = self.head().await?;
            return Ok(IngestReceipt {
                accepted: 0,
                first_seq: head.next(),
                last_seq: head,
            });
        }
        let personal = &self.shared.personal;
        let events = events
            .into_iter()
            .map(|e| Prepared::new(e, personal))
            .collect();
        let (reply, done) = oneshot::channel();
        self.shared
            .jobs
            .send(Job {
                events,
                cursor,
                reply,
            })
            .await
            .map_err(|_| StoreError::Closed)?;
        done.await.map_err(|_| StoreError::Closed)?
    }

    /// Appends lines read from a tailed file with `cursor`, where the file was read up to,
    /// in one transaction: after a crash the stored events and the cursor agree.
    ///
    /// # Errors
    /// As [`EventLog::append`].
    pub async fn append_tailed(
        &self,
        events: Vec<AuditEvent>,
        cursor: TailCursor,
    ) -> Result<IngestReceipt, StoreError> {
        self.append_with(events, Some(cursor)).await
    }

    /// This node's stored cursor of the tail named `source`.
    ///
    /// # Errors
    /// Database errors.
    pub async fn tail_cursor(&self, source: &str) -> Result<Option<TailCursor>, StoreError> {
        let client = self.shared.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT dev, ino, \"offset\", fingerprint, fp_len, lines FROM tail_cursors
                 WHERE node = $1 AND source = $2",
                &[&self.shared.node, &source],
            )
            .await?;
        Ok(row.map(|r| TailCursor {
            source: source.to_string(),
            dev: r.get::<_, i64>(0) as u64,
            ino: r.get::<_, i64>(1) as u64,
            offset: r.get::<_, i64>(2) as u64,
            fingerprint: r.get::<_, Vec<u8>>(3).try_into().unwrap_or([0; 32]),
            fp_len: r.get::<_, i64>(4) as u64,
            lines: r.get::<_, i64>(5) as u64,
        }))
    }

    /// Committed events as this node publishes them, in seq order with no gap between two
    /// that a receiver gets in a row; a receiver that lags gets `RecvError::Lagged` and reads
    /// the rest with [`EventLog::read_from`].
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<StoredEvent>> {
        self.shared.live.subscribe()
    }

    /// The newest seq published to this node's subscribers.
    pub fn published(&self) -> Seq {
        Seq(*self.shared.published.borrow())
    }

    /// A watch of [`EventLog::published`].
    pub fn published_watch(&self) -> watch::Receiver<u64> {
        self.shared.published.clone()
    }

    /// Every event committed after `after` by any node, in seq order with no gap (see
    /// [`crate::store::Following`]).
    pub fn follow_from(&self, after: Seq) -> crate::store::Following {
        crate::store::Following::new(
            crate::store::Feed::Postgres(self.clone()),
            self.subscribe(),
            after,
        )
    }

    /// Up to `limit` events with seq greater than `after`, in seq order.
    ///
    /// # Errors
    /// Database errors.
    pub async fn read_from(
        &self,
        after: Seq,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let client = self.shared.pool.get().await?;
        read_after(&client, after.0, None, limit).await
    }

    /// The seq of the newest committed event, by any node (0 when empty).
    ///
    /// # Errors
    /// Database errors.
    pub async fn head(&self) -> Result<Seq, StoreError> {
        let client = self.shared.pool.get().await?;
        let seq: i64 = client
            .query_one("SELECT seq FROM chain_head WHERE id = 1", &[])
            .await?
            .get(0);
        Ok(Seq(seq.max(0) as u64))
    }

    /// The shared database's size on disk.
    ///
    /// # Errors
    /// Database errors.
    pub async fn database_bytes(&self) -> Result<u64, StoreError> {
        let client = self.shared.pool.get().await?;
        let bytes: i64 = client
            .query_one("SELECT pg_database_size(current_database())", &[])
            .await?
            .get(0);
        Ok(bytes.max(0) as u64)
    }

    /// One page of events matching `query`, newest first, with the count of matches.
    ///
    /// # Errors
    /// Database errors.
    pub async fn query(
        &self,
        query: &crate::search::Query,
        req: crate::store::PageRequest,
    ) -> Result<crate::model::EventPage, StoreError> {
        let mut client = self.shared.pool.get().await?;
        super::query::page(&mut client, query, req).await
    }

    /// Up to `limit` events after `after` that match `query`, oldest first, and the seq the
    /// scan reached (resume after it).
    ///
    /// # Errors
    /// Database errors.
    pub async fn matching_from(
        &self,
        query: &crate::search::Query,
        after: Seq,
        limit: usize,
    ) -> Result<(Vec<StoredEvent>, Seq), StoreError> {
        let mut client = self.shared.pool.get().await?;
        super::query::matching_from(&mut client, query, after, limit).await
    }

    /// Calls `each` with `state` and every event matching `query`, in `order`, from one
    /// snapshot, until it returns `false`; gives `state` back. Memory stays flat.
    ///
    /// As on SQLite, `each` runs on a blocking thread, so it may block (an export's writer
    /// waits there for a slow client); the rows reach it through a short queue.
    ///
    /// # Errors
    /// Database errors.
    pub async fn for_each_matching<S, F>(
        &self,
        query: &crate::search::Query,
        order: crate::model::EventOrder,
        mut state: S,
        mut each: F,
    ) -> Result<S, StoreError>
    where
        S: Send + 'static,
        F: FnMut(&mut S, &StoredEvent) -> bool + Send + 'static,
    {
        /// Rows read ahead of the callback.
        const AHEAD: usize = 256;
        let (rows, mut queue) = mpsc::channel::<StoredEvent>(AHEAD);
        let consumer = tokio::task::spawn_blocking(move || {
            while let Some(event) = queue.blocking_recv() {
                if !each(&mut state, &event) {
                    // Dropping the queue tells the reader to stop.
                    break;
                }
            }
            state
        });
        let mut client = self.shared.pool.get().await?;
        let read = super::query::send_each(&mut client, query, order, rows).await;
        let state = consumer
            .await
            .map_err(|e| StoreError::Io(std::io::Error::other(e.to_string())))?;
        read.map(|_| state)
    }

    /// Each level, category or action that occurs, with its count, most frequent first.
    ///
    /// # Errors
    /// Database errors.
    pub async fn distinct(
        &self,
        field: crate::store::DistinctField,
    ) -> Result<Vec<crate::model::ValueCount>, StoreError> {
        let client = self.shared.pool.get().await?;
        super::query::distinct(&**client, field).await
    }

    /// The running totals, as of the head.
    ///
    /// # Errors
    /// Database errors.
    pub async fn counters(&self) -> Result<crate::model::Counters, StoreError> {
        let client = self.shared.pool.get().await?;
        super::query::counters(&**client).await
    }

    /// The event with this id, if stored.
    ///
    /// # Errors
    /// Database errors.
    pub async fn get(&self, id: &crate::model::EventId) -> Result<Option<StoredEvent>, StoreError> {
        let client = self.shared.pool.get().await?;
        super::query::by_id(&**client, id).await
    }

    /// The event with this id, its seal checked in place, and up to `related` events sharing
    /// its correlation id and its session id.
    ///
    /// # Errors
    /// Database errors.
    pub async fn detail(
        &self,
        id: &crate::model::EventId,
        related: u32,
    ) -> Result<Option<crate::model::EventDetail>, StoreError> {
        let mut client = self.shared.pool.get().await?;
        super::query::detail(&mut client, id, related).await
    }

    /// The newest `limit` events and the running totals, from one snapshot.
    ///
    /// # Errors
    /// Database errors.
    pub async fn snapshot(
        &self,
        limit: usize,
    ) -> Result<crate::model::DashboardSnapshot, StoreError> {
        let mut client = self.shared.pool.get().await?;
        super::query::snapshot(&mut client, limit).await
    }

    /// Every event of one data subject, oldest first (see [`crate::store::Concerning`]).
    ///
    /// # Errors
    /// Database errors.
    pub async fn subject_events(
        &self,
        subject: &str,
        concerning: crate::store::Concerning,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let client = self.shared.pool.get().await?;
        super::query::subject_events(&**client, subject, concerning).await
    }

    /// Crypto-shreds `subject` (see `postgres::erase`); returns how many events it was the
    /// actor of.
    ///
    /// # Errors
    /// Database errors (nothing is then changed).
    pub async fn erase(&self, subject: &str) -> Result<u64, StoreError> {
        let mut client = self.shared.pool.get().await?;
        super::erase::erase(&mut client, subject).await
    }

    /// A session from this node's pool, for the cluster-wide duties.
    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        Ok(self.shared.pool.get().await?)
    }

    /// Runs `f` over the rollups from one consistent snapshot, on a blocking thread (the
    /// reader drives its statements from there, so analytics read both backends alike: see
    /// `store::sql`).
    ///
    /// # Errors
    /// Database errors, and whatever `f` returns.
    pub async fn with_rollups<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&crate::store::rollup::Reader<'_, '_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.db()
            .snapshot(move |session| f(&crate::store::rollup::Reader::new(session, false)))
            .await
    }

    /// Removes what retention says has expired at `now`, each chunk under a record signed
    /// with the cluster's `key` (see `postgres::retention`).
    ///
    /// # Errors
    /// Database errors; chunks committed before stay removed.
    pub async fn prune(
        &self,
        key: &ed25519_dalek::SigningKey,
        policy: &crate::store::RetentionPolicy,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<crate::store::retention::Pruned, StoreError> {
        let mut client = self.shared.pool.get().await?;
        super::retention::prune(&mut client, key, policy, now.timestamp_millis()).await
    }

    /// Notices sent on `channel` by any node, from a session of this node's own that
    /// reconnects by itself (see [`super::notices`]).
    pub fn notices(&self, channel: &'static str) -> mpsc::UnboundedReceiver<super::Notice> {
        super::notices(self.shared.config.clone(), channel)
    }

    /// Whether the database answered this node's last append or read of the head.
    pub fn is_reachable(&self) -> bool {
        self.shared
            .reachable
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The metadata fields declared personal.
    pub fn personal_metadata(&self) -> &[String] {
        &self.shared.personal
    }

    /// The newest seq a signed checkpoint covers, as this node last saw it, followed.
    pub fn checkpointed(&self) -> watch::Receiver<u64> {
        self.shared.checkpointed.subscribe()
    }

    /// Notes that signed checkpoints now cover `seq`.
    pub(crate) fn note_checkpointed(&self, seq: u64) {
        self.shared.checkpointed.send_if_modified(|c| {
            let newer = seq > *c;
            if newer {
                *c = seq;
            }
            newer
        });
    }

    /// [`EventLog::verify`] of the rows after `after`, whose hash is `prev`.
    ///
    /// # Errors
    /// As [`EventLog::verify`].
    pub async fn verify_from(
        &self,
        after: Seq,
        prev: Hash32,
        checkpoints: &[crate::store::checkpoint::Checkpoint],
        key: Option<&ed25519_dalek::VerifyingKey>,
    ) -> Result<crate::store::VerifyReport, StoreError> {
        let mut client = self.shared.pool.get().await?;
        super::verify::verify_from(&mut client, after, prev, checkpoints, key, &mut |_| {}).await
    }

    /// The cluster's database for the small tables beside the events (views, settings,
    /// users, tokens, alerts), through this node's pool.
    pub fn db(&self) -> crate::store::sql::Db {
        crate::store::sql::Db::Postgres(self.shared.pool.clone())
    }

    /// Commit statistics of this node's appender.
    pub fn stats(&self) -> CommitStats {
        self.shared.stats.lock().map(|s| *s).unwrap_or_default()
    }

    /// How long this node's appending transactions held the chain's lock.
    pub fn lock_held(&self) -> LockHeld {
        self.shared.held.lock().map(|h| *h).unwrap_or_default()
    }

    /// Walks the whole chain in seq order, as `trailwatch verify` does on SQLite: every row's
    /// seal and link, gaps only where a retention record signed by `key` covers them, and
    /// every checkpoint in `checkpoints` (already checked for their signatures) met.
    ///
    /// # Errors
    /// Database errors, or a row that cannot be read back at all.
    pub async fn verify(
        &self,
        checkpoints: &[crate::store::checkpoint::Checkpoint],
        key: Option<&ed25519_dalek::VerifyingKey>,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<crate::store::VerifyReport, StoreError> {
        let mut client = self.shared.pool.get().await?;
        super::verify::verify(&mut client, checkpoints, key, progress).await
    }
}

/// Up to `limit` events after `after` (and through `through`, when given), oldest first.
pub(super) async fn read_after(
    client: &impl GenericClient,
    after: u64,
    through: Option<u64>,
    limit: usize,
) -> Result<Vec<StoredEvent>, StoreError> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3"
    );
    let stmt = client.prepare_cached(&sql).await?;
    let through = through.map_or(i64::MAX, |t| t as i64);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = client
        .query(&stmt, &[&(after as i64), &through, &limit])
        .await?;
    rows.iter().map(event_of).collect()
}

/// The node's appender: one transaction at a time, holding the chain's lock.
struct Appender {
    pool: Pool,
    jobs: mpsc::Receiver<Job>,
    scorer: Scorer,
    /// The seq the scorer has counted every event through.
    known: u64,
    /// Erasures counted on the head when the scorer last followed it.
    erasures: i64,
    /// The random part of event ids.
    id_salt: u64,
    /// The first arrival time the partitions do not cover.
    covered_until: i64,
    max_batch_events: usize,
    sequencer: mpsc::UnboundedSender<Vec<Arc<StoredEvent>>>,
    /// This node's name, which its tail cursors are kept by.
    node: String,
    stats: Arc<Mutex<CommitStats>>,
    held: Arc<Mutex<LockHeld>>,
    reachable: Arc<std::sync::atomic::AtomicBool>,
}

impl Appender {
    async fn run(mut self) {
        while let Some(first) = self.jobs.recv().await {
            crate::metrics::get()
                .writer_queue
                .set(self.jobs.len() as i64);
            let mut count = first.events.len();
            let mut batch = vec![first];
            while count < self.max_batch_events {
                match self.jobs.try_recv() {
                    Ok(job) => {
                        count += job.events.len();
                        batch.push(job);
                    }
                    Err(_) => break,
                }
            }
            self.commit_batch(batch).await;
        }
        tracing::info!("PostgreSQL appender stopped");
    }

    async fn commit_batch(&mut self, batch: Vec<Job>) {
        let sizes: Vec<usize> = batch.iter().map(|j| j.events.len()).collect();
        let mut cursors = Vec::new();
        let (events, replies): (Vec<Vec<Prepared>>, Vec<_>) = batch
            .into_iter()
            .map(|j| {
                cursors.extend(j.cursor);
                (j.events, j.reply)
            })
            .unzip();
        let committed = self.commit(events, &cursors).await;
        self.reachable.store(
            !matches!(committed, Err(StoreError::Unreachable(_))),
            std::sync::atomic::Ordering::Relaxed,
        );
        match committed {
            Ok(sealed) => {
                let mut at = 0;
                for (reply, &n) in replies.into_iter().zip(&sizes) {
                    let first = Seq(sealed.get(at).map_or(0, |e| e.seq.0));
                    at += n;
                    let _ = reply.send(Ok(IngestReceipt {
                        accepted: n,
                        first_seq: first,
                        last_seq: Seq(first.0 + (n as u64).saturating_sub(1)),
                    }));
                }
                if let Ok(mut stats) = self.stats.lock() {
                    stats.commits += 1;
                    stats.appends += sizes.len() as u64;
                    stats.events += sealed.len() as u64;
                }
                if !sealed.is_empty() {
                    // Only when the node is stopping; subscribers are gone with it.
                    let _ = self.sequencer.send(sealed);
                }
            }
            Err(e) => {
                // The risk state may hold this batch's events: rebuilt from the rows next time.
                self.scorer.abort();
                tracing::warn!(error = %e, jobs = sizes.len(), "append failed; nothing stored");
                for reply in replies {
                    let err = match &e {
                        StoreError::Unreachable(m) => StoreError::Unreachable(m.clone()),
                        other => StoreError::Postgres(other.to_string()),
                    };
                    let _ = reply.send(Err(err));
                }
            }
        }
    }

    /// Seals and inserts every event, in order, in one transaction holding the chain's lock.
    async fn commit(
        &mut self,
        jobs: Vec<Vec<Prepared>>,
        cursors: &[TailCursor],
    ) -> Result<Vec<Arc<StoredEvent>>, StoreError> {
        // What needs no seq is done before the chain's lock is taken: each event's words.
        let words: Vec<String> = jobs
            .iter()
            .flatten()
            .map(|p| super::words::tsvector(&p.event))
            .collect();
        let mut client = self.pool.get().await?;
        let now_ms = now_millis().timestamp_millis();
        if now_ms + partition::AHEAD_MS >= self.covered_until {
            self.covered_until = partition::ensure(&mut client, now_ms).await?;
        }
        self.follow_ahead(&mut client).await?;
        let tx = client.transaction().await?;
        let head = tx
            .query_one(
                "SELECT seq, hash, received_at, erasures FROM chain_head WHERE id = 1 FOR UPDATE",
                &[],
            )
            .await?;
        let locked = Instant::now();
        let head_seq: i64 = head.get(0);
        let head_hash = hash32(head.get(1), head_seq, "head hash")?;
        let head_received: i64 = head.get(2);
        let erasures: i64 = head.get(3);
        let head_seq = head_seq.max(0) as u64;
        if erasures != self.erasures {
            // A subject was erased (here or on another node): its history must leave memory.
            self.scorer.abort();
            self.erasures = erasures;
        }
        self.follow_chain(&tx, head_seq).await?;

        let users: Vec<String> = {
            let mut seen = HashSet::default();
            jobs.iter()
                .flatten()
                .filter(|p| seen.insert(p.event.user.id.as_str()))
                .map(|p| p.event.user.id.clone())
                .collect()
        };
        let needed: Vec<String> = users
            .iter()
            .filter(|u| self.scorer.needs_profile(u))
            .cloned()
            .collect();
        let ((salts, new_salts), ()) = futures::try_join!(
            salts_for(&tx, &users),
            load_profiles(&tx, &mut self.scorer, &needed)
        )?;

        // Arrival time never goes back along the chain, whatever this node's clock says.
        let received_ms = now_ms.max(head_received);
        let received_at = chrono::DateTime::from_timestamp_millis(received_ms)
            .ok_or_else(|| StoreError::Io(std::io::Error::other("arrival time out of range")))?;
        let total: usize = jobs.iter().map(Vec::len).sum();
        let mut sealer = Sealer {
            risk: &mut self.scorer,
            salts: &salts,
            new_salts: &new_salts,
            id_salt: &mut self.id_salt,
            received_at,
            received_ms,
            seq: head_seq,
            prev: head_hash,
            tally: Tally::default(),
        };
        let mut rows = Vec::with_capacity(total);
        for prepared in jobs.into_iter().flatten() {
            rows.push(sealer.seal(prepared)?);
        }
        let Sealer {
            seq, prev, tally, ..
        } = sealer;
        let mut rollups = crate::store::rollup::Increments::default();
        for row in &rows {
            rollups.add(&row.stored.event);
        }
        // Every write of the batch at once: the statements travel together on the session,
        // rather than one round trip after another while the lock is held.
        let inserts = futures::future::try_join_all(
            rows.chunks(INSERT_CHUNK)
                .zip(words.chunks(INSERT_CHUNK))
                .map(|(chunk, words)| insert(&tx, chunk, words, received_ms)),
        );
        // In seq order, so of two cursors of one file the later one wins.
        let node = self.node.as_str();
        let cursors = async {
            for cursor in cursors {
                save_cursor(&tx, node, cursor, received_ms).await?;
            }
            Ok::<_, StoreError>(())
        };
        let profiles = async {
            if self.scorer.flush_due() {
                write_profiles(&tx, &mut self.scorer, seq).await?;
            }
            Ok(())
        };
        let head = async {
            if seq > head_seq {
                exec(
                    &tx,
                    "UPDATE chain_head SET seq = $1, hash = $2, received_at = $3 WHERE id = 1",
                    &[&(seq as i64), &prev.as_slice(), &received_ms],
                )
                .await?;
                // As `notify::announce`, prepared once: it goes with every commit.
                let range = Committed {
                    first: head_seq + 1,
                    last: seq,
                };
                exec(
                    &tx,
                    "SELECT pg_notify($1, $2)",
                    &[&super::notify::CHANNEL, &range.payload()],
                )
                .await?;
            }
            Ok(())
        };
        futures::try_join!(
            inserts,
            write_counters(&tx, &tally),
            write_rollups(&tx, &rollups),
            cursors,
            profiles,
            head
        )?;
        tx.commit().await?;
        let held = locked.elapsed();
        let m = crate::metrics::get();
        crate::metrics::observe(&m.commit_seconds, held);
        m.commit_events.observe(total as f64);
        self.known = seq;
        if let Ok(mut h) = self.held.lock() {
            h.batches += 1;
            h.events += total as u64;
            h.total += held;
            h.longest = h.longest.max(held);
        }
        Ok(rows.into_iter().map(|r| r.stored).collect())
    }

    /// Brings the risk state up to the head (whose lock is held): rebuilt from the rows after
    /// a start or a failed batch, or else by counting what other nodes committed since this
    /// node's last batch, exactly as they were counted where they were sealed.
    async fn follow_chain(
        &mut self,
        tx: &deadpool_postgres::Transaction<'_>,
        head: u64,
    ) -> Result<(), StoreError> {
        if self.scorer.oversized() {
            write_profiles(tx, &mut self.scorer, self.known).await?;
            self.scorer.forget_profiles();
        }
        if !self.scorer.is_warm() {
            warm(tx, &mut self.scorer).await?;
        } else {
            self.count_others(tx, head).await?;
        }
        self.known = head;
        Ok(())
    }

    /// Counts, before the chain's lock is taken, what other nodes committed since this node's
    /// last batch, from one snapshot (as if the lock were held at that head): under the lock
    /// only what they commit meanwhile remains to be read. A cold or oversized risk state
    /// waits for the lock, where it is rebuilt or written.
    async fn follow_ahead(
        &mut self,
        client: &mut deadpool_postgres::Client,
    ) -> Result<(), StoreError> {
        if !self.scorer.is_warm() || self.scorer.oversized() {
            return Ok(());
        }
        // Not `query::snapshot_of`: the pool's transaction keeps its statement cache.
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let head: i64 = tx
            .query_one("SELECT seq FROM chain_head WHERE id = 1", &[])
            .await?
            .get(0);
        let head = head.max(0) as u64;
        self.count_others(&tx, head).await?;
        tx.commit().await?;
        self.known = self.known.max(head);
        Ok(())
    }

    /// Counts the events after `self.known` through `head` into the risk state, exactly as
    /// they were counted where they were sealed.
    async fn count_others(&mut self, tx: &impl GenericClient, head: u64) -> Result<(), StoreError> {
        if head > self.known {
            let mut after = self.known;
            while after < head {
                let events = read_for_risk(tx, after, head).await?;
                let Some((last, _, _)) = events.last() else {
                    break;
                };
                after = *last;
                let mut seen = HashSet::default();
                let needed: Vec<String> = events
                    .iter()
                    .map(|(_, _, e)| e.user.id.as_str())
                    .filter(|u| seen.insert(*u) && self.scorer.needs_profile(u))
                    .map(str::to_string)
                    .collect();
                load_profiles(tx, &mut self.scorer, &needed).await?;
                for (_, received_ms, mut event) in events {
                    self.scorer
                        .observe_loaded(&mut event, received_ms)
                        .map_err(|e| StoreError::Io(std::io::Error::other(e)))?;
                }
            }
            self.known = head;
        }
        Ok(())
    }
}

/// Up to [`READ_CHUNK`] events after `after` through `through`, oldest first, as the risk state
/// counts an event sealed elsewhere: its seq, arrival and what the rules look at (when, who,
/// how it ended, from which address and country). Its score is sealed already, so none is
/// computed again, and none of the rest is read: this runs while the chain's lock is held.
async fn read_for_risk(
    tx: &impl GenericClient,
    after: u64,
    through: u64,
) -> Result<Vec<(u64, i64, AuditEvent)>, StoreError> {
    let stmt = tx
        .prepare_cached(
            "SELECT seq, ts, received_at, user_id, outcome, req_ip, country FROM events
             WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3",
        )
        .await?;
    let rows = tx
        .query(&stmt, &[&(after as i64), &(through as i64), &READ_CHUNK])
        .await?;
    rows.iter()
        .map(|r| {
            let seq: i64 = r.get(0);
            let outcome: String = r.get(4);
            let timestamp = chrono::DateTime::from_timestamp_millis(r.get(1))
                .ok_or_else(|| corrupt(seq)(bad_column(1, "time out of range")))?;
            let outcome = crate::model::Outcome::parse(&outcome)
                .ok_or_else(|| corrupt(seq)(bad_column(4, "unknown outcome")))?;
            let ip: Option<String> = r.get(5);
            let country: Option<String> = r.get(6);
            let event = AuditEvent {
                request: ip.map(|ip| crate::model::RequestInfo {
                    ip: Some(ip),
                    ..Default::default()
                }),
                location: country.map(|country| crate::model::Location {
                    country: Some(country),
                    city: None,
                }),
                // Sealed where it was appended; counting it must not score it again, so its
                // level and category (which only scoring reads) are placeholders.
                risk_score: Some(0),
                ..AuditEvent::new(
                    timestamp,
                    crate::model::Level::Info,
                    crate::model::Category::Authentication,
                    "",
                    outcome,
                    crate::model::Actor {
                        id: r.get(3),
                        username: None,
                    },
                    crate::model::Source::http(),
                )
            };
            Ok((seq.max(0) as u64, r.get::<_, i64>(2), event))
        })
        .collect()
}

/// Rebuilds the risk state from the rows: the failures within the window of the newest event
/// time, and the profiles as written plus the events after the seq they were written through.
async fn warm(
    tx: &deadpool_postgres::Transaction<'_>,
    scorer: &mut Scorer,
) -> Result<(), StoreError> {
    scorer.start_warming();
    let newest: Option<i64> = tx
        .query_one("SELECT max(ts) FROM events", &[])
        .await?
        .get(0);
    if let Some(newest) = newest {
        scorer.recall_newest(newest);
        let from = newest.saturating_sub(scorer.window_ms());
        let rows = tx
            .query(
                "SELECT ts, user_id, req_ip FROM events
                 WHERE ts > $1 AND outcome <> 'success' ORDER BY seq",
                &[&from],
            )
            .await?;
        for r in rows {
            scorer.recall_failure(r.get(0), r.get(1), r.get(2));
        }
    }
    if scorer.enabled() {
        let through: i64 = tx
            .query_opt(
                "SELECT value FROM meta WHERE key = $1",
                &[&crate::store::risk::THROUGH_KEY],
            )
            .await?
            .and_then(|r| r.get::<_, String>(0).parse().ok())
            .unwrap_or(0);
        let rows = tx
            .query(
                "SELECT ts, user_id, country FROM events
                 WHERE seq > $1 AND user_id <> $2 AND user_id <> $3 ORDER BY seq",
                &[&through, &crate::model::SYSTEM_ACTOR, &ERASED_SUBJECT],
            )
            .await?;
        let mut seen = HashSet::default();
        let needed: Vec<String> = rows
            .iter()
            .map(|r| r.get::<_, String>(1))
            .filter(|u| seen.insert(u.clone()) && scorer.needs_profile(u))
            .collect();
        load_profiles(tx, scorer, &needed).await?;
        for r in &rows {
            let user: String = r.get(1);
            let country: Option<String> = r.get(2);
            scorer.recount(&user, r.get(0), country.as_deref());
        }
    }
    scorer.mark_warm();
    Ok(())
}

/// Reads the profiles of `users` into the scorer; a user with none starts empty.
async fn load_profiles(
    tx: &impl GenericClient,
    scorer: &mut Scorer,
    users: &[String],
) -> Result<(), StoreError> {
    if users.is_empty() {
        return Ok(());
    }
    let stmt = tx
        .prepare_cached(
            "SELECT user_id, hours, countries FROM risk_profile WHERE user_id = ANY($1)",
        )
        .await?;
    let mut found: HashMap<String, Profile> = HashMap::default();
    for r in tx.query(&stmt, &[&users]).await? {
        let hours: Vec<u8> = r.get(1);
        let countries: Option<String> = r.get(2);
        found.insert(
            r.get(0),
            Profile::from_columns(&hours, countries.as_deref()),
        );
    }
    for user in users {
        let profile = found.remove(user).unwrap_or_default();
        scorer.insert_profile(user.clone(), profile);
    }
    Ok(())
}

/// Writes the changed profiles, and the seq they are counted through.
async fn write_profiles(
    tx: &impl GenericClient,
    scorer: &mut Scorer,
    through: u64,
) -> Result<(), StoreError> {
    let changed = scorer.drain_changed();
    let (mut users, mut hours, mut countries) = (Vec::new(), Vec::new(), Vec::new());
    for (user, profile) in changed {
        hours.push(profile.hours_column());
        countries.push(profile.countries_column());
        users.push(user);
    }
    if !users.is_empty() {
        exec(
            tx,
            "INSERT INTO risk_profile (user_id, hours, countries)
                 SELECT * FROM unnest($1::text[], $2::bytea[], $3::text[])
             ON CONFLICT (user_id) DO UPDATE
                 SET hours = excluded.hours, countries = excluded.countries",
            &[&users, &hours, &countries],
        )
        .await?;
    }
    exec(
        tx,
        "INSERT INTO meta (key, value) VALUES ($1, $2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        &[&crate::store::risk::THROUGH_KEY, &through.to_string()],
    )
    .await?;
    Ok(())
}

/// Runs `sql` as a statement prepared once per session, so that it costs one round trip, and
/// the statements of a batch awaited together travel together.
async fn exec(
    tx: &impl GenericClient,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<u64, StoreError> {
    let stmt = tx.prepare_cached(sql).await?;
    Ok(tx.execute(&stmt, params).await?)
}

type Salts = HashMap<String, [u8; 32]>;

/// The salts of `users`: those stored, and new ones for the rest (stored in this
/// transaction). Read afresh for every batch: another node may have erased a subject since.
async fn salts_for(
    tx: &impl GenericClient,
    users: &[String],
) -> Result<(Salts, Salts), StoreError> {
    let stmt = tx
        .prepare_cached("SELECT subject, salt FROM subjects WHERE subject = ANY($1)")
        .await?;
    let mut stored = Salts::default();
    for r in tx.query(&stmt, &[&users]).await? {
        let subject: String = r.get(0);
        let salt: Vec<u8> = r.get(1);
        if let Ok(salt) = <[u8; 32]>::try_from(salt) {
            stored.insert(subject, salt);
        }
    }
    let mut fresh = Salts::default();
    for user in users.iter().filter(|u| !stored.contains_key(*u)) {
        let mut salt = [0u8; 32];
        getrandom::fill(&mut salt)
            .map_err(|e| StoreError::Io(std::io::Error::other(e.to_string())))?;
        fresh.insert(user.clone(), salt);
    }
    if !fresh.is_empty() {
        let (names, values): (Vec<&String>, Vec<&[u8]>) =
            fresh.iter().map(|(k, v)| (k, v.as_slice())).unzip();
        exec(
            tx,
            "INSERT INTO subjects (subject, salt) SELECT * FROM unnest($1::text[], $2::bytea[])
             ON CONFLICT (subject) DO UPDATE SET salt = excluded.salt",
            &[&names, &values],
        )
        .await?;
    }
    Ok((stored, fresh))
}

/// Stores this node's `cursor`, replacing the tail's previous one.
async fn save_cursor(
    tx: &impl GenericClient,
    node: &str,
    cursor: &TailCursor,
    now_ms: i64,
) -> Result<(), StoreError> {
    exec(
        tx,
        "INSERT INTO tail_cursors
             (node, source, dev, ino, \"offset\", fingerprint, fp_len, lines, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (node, source) DO UPDATE SET dev = excluded.dev, ino = excluded.ino,
             \"offset\" = excluded.\"offset\", fingerprint = excluded.fingerprint,
             fp_len = excluded.fp_len, lines = excluded.lines, updated_at = excluded.updated_at",
        &[
            &node,
            &cursor.source,
            &(cursor.dev as i64),
            &(cursor.ino as i64),
            &(cursor.offset as i64),
            &cursor.fingerprint.as_slice(),
            &(cursor.fp_len as i64),
            &(cursor.lines as i64),
            &now_ms,
        ],
    )
    .await?;
    Ok(())
}

/// Adds a batch's rollup increments, one upsert per table.
async fn write_rollups(
    tx: &impl GenericClient,
    inc: &crate::store::rollup::Increments<'_>,
) -> Result<(), StoreError> {
    type Totals = (Vec<i64>, [Vec<i64>; 5]);
    fn columns<'a>(rows: impl Iterator<Item = (i64, &'a crate::analytics::Tally)>) -> Totals {
        let mut out: Totals = Default::default();
        for (key, t) in rows {
            out.0.push(key);
            for (col, v) in out
                .1
                .iter_mut()
                .zip([t.n, t.denied, t.failed, t.errors, t.critical])
            {
                col.push(v as i64);
            }
        }
        out
    }
    for (table, key, (keys, [n, denied, failed, errors, critical])) in [
        ("rollup_minute", "minute", columns(inc.minutes())),
        ("rollup_hour_total", "hour", columns(inc.hour_totals())),
    ] {
        if keys.is_empty() {
            continue;
        }
        // Table and key names are ours.
        let sql = format!(
            "INSERT INTO {table} AS r ({key}, n, denied, failed, errors, critical)
                 SELECT * FROM unnest($1::int8[], $2::int8[], $3::int8[], $4::int8[],
                                      $5::int8[], $6::int8[])
             ON CONFLICT ({key}) DO UPDATE SET n = r.n + excluded.n,
                 denied = r.denied + excluded.denied, failed = r.failed + excluded.failed,
                 errors = r.errors + excluded.errors, critical = r.critical + excluded.critical"
        );
        exec(tx, &sql, &[&keys, &n, &denied, &failed, &errors, &critical]).await?;
    }
    let (mut kinds, mut values, mut hours, mut counts) = (vec![], vec![], vec![], vec![]);
    for (kind, value, hour, n) in inc.hours() {
        kinds.push(kind);
        values.push(value);
        hours.push(hour);
        counts.push(n as i64);
    }
    if !kinds.is_empty() {
        exec(
            tx,
            "INSERT INTO rollup_hour AS r (kind, value, hour, n)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[])
             ON CONFLICT (kind, value, hour) DO UPDATE SET n = r.n + excluded.n",
            &[&kinds, &values, &hours, &counts],
        )
        .await?;
    }
    let (mut hours, mut users, mut n, mut denied, mut failed) =
        (vec![], vec![], vec![], vec![], vec![]);
    for (hour, user, t) in inc.users() {
        hours.push(hour);
        users.push(user);
        n.push(t.n as i64);
        denied.push(t.denied as i64);
        failed.push(t.failed as i64);
    }
    if !hours.is_empty() {
        exec(
            tx,
            "INSERT INTO rollup_user_hour AS r (hour, user_id, n, denied, failed)
                 SELECT * FROM unnest($1::int8[], $2::text[], $3::int8[], $4::int8[], $5::int8[])
             ON CONFLICT (hour, user_id) DO UPDATE SET n = r.n + excluded.n,
                 denied = r.denied + excluded.denied, failed = r.failed + excluded.failed",
            &[&hours, &users, &n, &denied, &failed],
        )
        .await?;
    }
    Ok(())
}

/// Adds a batch's tally to the running counters.
async fn write_counters(tx: &impl GenericClient, tally: &Tally) -> Result<(), StoreError> {
    let (names, values): (Vec<String>, Vec<i64>) = tally
        .counts
        .iter()
        .map(|((kind, name), n)| (format!("{kind}{name}"), *n))
        .chain(
            tally
                .actions
                .iter()
                .map(|(a, n)| (format!("action:{a}"), *n)),
        )
        .unzip();
    if names.is_empty() {
        return Ok(());
    }
    exec(
        tx,
        "INSERT INTO counters (name, value) SELECT * FROM unnest($1::text[], $2::int8[])
         ON CONFLICT (name) DO UPDATE SET value = counters.value + excluded.value",
        &[&names, &values],
    )
    .await?;
    Ok(())
}

/// Inserts sealed rows with one statement: each column travels as an array.
async fn insert(
    tx: &impl GenericClient,
    rows: &[Sealed],
    words: &[String],
    received_ms: i64,
) -> Result<(), StoreError> {
    #[derive(Default)]
    struct Cols<'a> {
        seq: Vec<i64>,
        event_id: Vec<&'a str>,
        ts: Vec<i64>,
        received_at: Vec<i64>,
        level: Vec<&'a str>,
        category: Vec<&'a str>,
        action: Vec<&'a str>,
        outcome: Vec<&'a str>,
        source: Vec<&'a str>,
        user_id: Vec<&'a str>,
        username: Vec<Option<&'a str>>,
        description: Vec<Option<&'a str>>,
        entity_type: Vec<Option<&'a str>>,
        entity_id: Vec<Option<&'a str>>,
        entity_name: Vec<Option<&'a str>>,
        req_method: Vec<Option<&'a str>>,
        req_path: Vec<Option<&'a str>>,
        req_ip: Vec<Option<&'a str>>,
        req_user_agent: Vec<Option<&'a str>>,
        req_status: Vec<Option<i64>>,
        req_response_time: Vec<Option<i64>>,
        country: Vec<Option<&'a str>>,
        city: Vec<Option<&'a str>>,
        metadata: Vec<Option<&'a str>>,
        changes: Vec<Option<&'a str>>,
        system: Vec<Option<&'a str>>,
        risk: Vec<Option<i64>>,
        correlation_id: Vec<Option<&'a str>>,
        session_id: Vec<Option<&'a str>>,
        pii_digest: Vec<&'a [u8]>,
        prev_hash: Vec<&'a [u8]>,
        hash: Vec<&'a [u8]>,
        risk_reasons: Vec<Option<&'a str>>,
        personal: Vec<Option<&'a str>>,
        submitted_by: Vec<Option<&'a str>>,
        words: Vec<&'a str>,
    }
    let mut c = Cols::default();
    for (i, row) in rows.iter().enumerate() {
        let e = &row.stored.event;
        let entity = e.entity.as_ref();
        let req = e.request.as_ref();
        let loc = e.location.as_ref();
        c.seq.push(row.stored.seq.0 as i64);
        c.event_id.push(&row.stored.event_id.0);
        c.ts.push(e.timestamp.timestamp_millis());
        c.received_at.push(received_ms);
        c.level.push(e.level.as_str());
        c.category.push(e.category.as_str());
        c.action.push(&e.action);
        c.outcome.push(e.outcome.as_str());
        c.source.push(&e.source.0);
        c.user_id.push(&e.user.id);
        c.username.push(e.user.username.as_deref());
        c.description.push(e.description.as_deref());
        c.entity_type.push(entity.and_then(|x| x.kind.as_deref()));
        c.entity_id.push(entity.and_then(|x| x.id.as_deref()));
        c.entity_name.push(entity.and_then(|x| x.name.as_deref()));
        c.req_method.push(req.and_then(|r| r.method.as_deref()));
        c.req_path.push(req.and_then(|r| r.path.as_deref()));
        c.req_ip.push(req.and_then(|r| r.ip.as_deref()));
        c.req_user_agent
            .push(req.and_then(|r| r.user_agent.as_deref()));
        c.req_status
            .push(req.and_then(|r| r.status_code).map(i64::from));
        c.req_response_time.push(
            req.and_then(|r| r.response_time)
                .map(|v| i64::try_from(v).unwrap_or(i64::MAX)),
        );
        c.country.push(loc.and_then(|l| l.country.as_deref()));
        c.city.push(loc.and_then(|l| l.city.as_deref()));
        c.metadata.push(row.json.metadata.as_deref());
        c.changes.push(row.json.changes.as_deref());
        c.system.push(row.json.system.as_deref());
        c.risk.push(e.risk_score.map(i64::from));
        c.correlation_id.push(e.correlation_id.as_deref());
        c.session_id.push(e.session_id.as_deref());
        c.pii_digest.push(&row.pii);
        c.prev_hash.push(&row.prev);
        c.hash.push(&row.hash);
        c.risk_reasons.push(row.json.risk_reasons.as_deref());
        c.personal.push(row.json.personal.as_deref());
        c.submitted_by.push(e.submitted_by.as_deref());
        c.words.push(words.get(i).map_or("", String::as_str));
    }
    let stmt = tx
        .prepare_cached(
            "INSERT INTO events (
                seq, event_id, ts, received_at, level, category, action, outcome, source,
                user_id, username, description, entity_type, entity_id, entity_name,
                req_method, req_path, req_ip, req_user_agent, req_status, req_response_time,
                country, city, metadata, changes, system, risk, correlation_id, session_id,
                pii_digest, prev_hash, hash, risk_reasons, personal, submitted_by, words
            ) SELECT * FROM unnest(
                $1::int8[], $2::text[], $3::int8[], $4::int8[], $5::text[], $6::text[],
                $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[],
                $13::text[], $14::text[], $15::text[], $16::text[], $17::text[], $18::text[],
                $19::text[], $20::int8[], $21::int8[], $22::text[], $23::text[], $24::text[],
                $25::text[], $26::text[], $27::int8[], $28::text[], $29::text[], $30::bytea[],
                $31::bytea[], $32::bytea[], $33::text[], $34::text[], $35::text[],
                $36::text[]::tsvector[]
            )",
        )
        .await?;
    tx.execute(
        &stmt,
        &[
            &c.seq,
            &c.event_id,
            &c.ts,
            &c.received_at,
            &c.level,
            &c.category,
            &c.action,
            &c.outcome,
            &c.source,
            &c.user_id,
            &c.username,
            &c.description,
            &c.entity_type,
            &c.entity_id,
            &c.entity_name,
            &c.req_method,
            &c.req_path,
            &c.req_ip,
            &c.req_user_agent,
            &c.req_status,
            &c.req_response_time,
            &c.country,
            &c.city,
            &c.metadata,
            &c.changes,
            &c.system,
            &c.risk,
            &c.correlation_id,
            &c.session_id,
            &c.pii_digest,
            &c.prev_hash,
            &c.hash,
            &c.risk_reasons,
            &c.personal,
            &c.submitted_by,
            &c.words,
        ],
    )
    .await?;
    Ok(())
}

/// Publishes to the node's subscribers, in seq order with no gap, every event committed by
/// any node.
struct Sequencer {
    pool: Pool,
    config: tokio_postgres::Config,
    /// The newest seq published.
    last: u64,
    live: broadcast::Sender<Arc<StoredEvent>>,
    published: watch::Sender<u64>,
    /// This node's own commits, in commit order.
    local: mpsc::UnboundedReceiver<Vec<Arc<StoredEvent>>>,
    reachable: Arc<std::sync::atomic::AtomicBool>,
}

impl Sequencer {
    async fn run(mut self) {
        let mut listener: Option<Listener> = None;
        let mut poll = tokio::time::interval(POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if listener.is_none() {
                match Listener::open_with(&self.config).await {
                    Ok(l) => {
                        listener = Some(l);
                        // What was committed while no one listened.
                        self.catch_up(None).await;
                    }
                    Err(e) => tracing::debug!(error = %e, "cannot listen for commits yet"),
                }
            }
            tokio::select! {
                local = self.local.recv() => match local {
                    Some(events) => self.take_local(events).await,
                    None => return,
                },
                range = next_range(&mut listener) => match range {
                    Some(c) if c.last > self.last => self.catch_up(Some(c.last)).await,
                    Some(_) => {}
                    None => listener = None,
                },
                _ = poll.tick() => self.catch_up(None).await,
            }
        }
    }

    /// This node's commit: published as it is when it follows what was published; otherwise
    /// what came between (other nodes' commits not yet read) is read first.
    async fn take_local(&mut self, events: Vec<Arc<StoredEvent>>) {
        let Some(first) = events.first().map(|e| e.seq.0) else {
            return;
        };
        if first > self.last + 1 {
            self.catch_up(Some(first - 1)).await;
        }
        if first > self.last + 1 {
            // The rows between could not be read now: read everything from the rows later.
            return;
        }
        for e in events {
            if e.seq.0 == self.last + 1 {
                self.publish(e);
            }
        }
    }

    /// Reads and publishes the rows after the last published, through `through` (or the
    /// newest). A failure is logged and retried at the next notice or poll.
    async fn catch_up(&mut self, through: Option<u64>) {
        let read = self.read_and_publish(through).await;
        self.reachable.store(
            !matches!(read, Err(StoreError::Unreachable(_))),
            std::sync::atomic::Ordering::Relaxed,
        );
        if let Err(e) = read {
            tracing::warn!(error = %e, after = self.last, "could not read committed events");
        }
    }

    async fn read_and_publish(&mut self, through: Option<u64>) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        loop {
            if through.is_some_and(|t| self.last >= t) {
                return Ok(());
            }
            let events = read_after(&client, self.last, through, READ_CHUNK as usize).await?;
            if events.is_empty() {
                return Ok(());
            }
            for e in events {
                if e.seq.0 != self.last + 1 {
                    return Err(StoreError::Corrupt {
                        seq: self.last + 1,
                        detail: format!("read seq {} after {}", e.seq, self.last),
                    });
                }
                self.publish(Arc::new(e));
            }
        }
    }

    fn publish(&mut self, event: Arc<StoredEvent>) {
        self.last = event.seq.0;
        // No subscriber is not an error: the event is in the rows.
        let _ = self.live.send(event);
        self.published.send_replace(self.last);
    }
}

/// The listener's next range; never, without a listener; `None` once it has ended.
async fn next_range(listener: &mut Option<Listener>) -> Option<Committed> {
    match listener {
        Some(l) => l.next().await,
        None => std::future::pending().await,
    }
}
