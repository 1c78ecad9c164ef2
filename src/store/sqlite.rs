//! The embedded SQLite store of one data directory: a database in WAL mode with one writer
//! thread (group commit, hash chain; `append`), a flusher that syncs each commit before anyone
//! hears of it (`flush`), a pool of readers (`query`), the full-text index in its own file
//! kept by its own thread (`index`), and the schema (`schema`). Server build only.

mod append;
pub mod cursor;
mod flush;
mod index;
pub(crate) mod query;
pub(crate) mod retention;
pub(crate) mod rollup;
pub(crate) mod schema;
pub mod verify;

use super::{
    chain, checkpoint, seal, sql, CommitStats, Concerning, Feed, Following, RetentionPolicy,
    StoreError, StoreOptions, VerifyReport, DB_FILE,
};
use crate::model::{
    AuditEvent, Counters, DashboardSnapshot, EventDetail, EventId, EventPage, IngestReceipt, Seq,
    StoredEvent, ValueCount,
};
use crate::search::{Pattern, Query, Term};
use crate::store::reads::{DistinctField, PageRequest};
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

pub use append::ERASED_SUBJECT;
pub use index::SEARCH_FILE;
pub use schema::SCHEMA_VERSION;

/// Reads running at once; more wait their turn. Long ones (an export, a full verify) hold a
/// slot throughout, so there are more slots than pooled connections.
const MAX_READERS: usize = 16;
/// Read connections kept open between reads, each with its page cache.
const POOLED_READERS: usize = 8;

struct Shared {
    path: PathBuf,
    search_path: PathBuf,
    /// The newest durable seq, as the flusher publishes it once the commit is synced.
    head: watch::Receiver<u64>,
    /// The seq the search index covers through, as the indexer publishes it.
    indexed: watch::Receiver<u64>,
    /// The newest seq signed into the checkpoint log.
    checkpointed: watch::Receiver<u64>,
    /// The checkpoint signer, for signing the head on request.
    signer: std::sync::mpsc::SyncSender<checkpoint::Position>,
    index_wait: Duration,
    /// The metadata fields declared personal, split off on the caller's thread.
    personal: Arc<[String]>,
    writer: mpsc::Sender<append::Work>,
    readers: Mutex<Vec<Connection>>,
    /// At most [`MAX_READERS`] reads at once. Without it a burst (a thousand dashboards
    /// subscribing at once, each reading its backlog) opened a connection and a blocking
    /// thread per read: the server held 1.35 GiB for a thousand idle sockets, 258 MiB with
    /// the bound (BENCHMARKS.md, "Memory per idle client").
    read_slots: tokio::sync::Semaphore,
    commits: broadcast::Sender<Arc<StoredEvent>>,
    stats: Arc<Mutex<CommitStats>>,
    /// Declared last, so it is dropped after `writer` and `signer`: by then the threads have
    /// been told to finish.
    #[expect(dead_code, reason = "held only to be joined when dropped")]
    threads: Threads,
}

/// The store's own threads, joined when the last handle goes: a dropped store has written,
/// indexed and signed everything it acknowledged and closed its files, so the next open (or
/// an operator moving the files) never races a thread still winding down.
struct Threads(Vec<std::thread::JoinHandle<()>>);

impl Drop for Threads {
    fn drop(&mut self) {
        for thread in self.0.drain(..) {
            let name = thread.thread().name().unwrap_or("store").to_string();
            if thread.join().is_err() {
                tracing::error!(thread = %name, "a store thread panicked");
            }
        }
    }
}

/// A handle to the store; cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    shared: Arc<Shared>,
}

impl SqliteStore {
    /// The database's files on disk: the events, their write-ahead log and the search index.
    pub fn database_bytes(&self) -> u64 {
        let (events, search) = (&self.shared.path, &self.shared.search_path);
        let wal = schema::wal_path;
        [events.clone(), wal(events), search.clone(), wal(search)]
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }

    /// The newest seq the live queue has been given (once durable).
    pub(crate) fn published(&self) -> u64 {
        *self.shared.head.borrow()
    }

    /// Opens (creating if needed) the database in `data_dir`, recovers the chain head and starts
    /// the writer thread.
    ///
    /// # Errors
    /// Fails if the directory or database cannot be created or opened, or the schema is newer
    /// than this build understands.
    pub fn open(data_dir: &Path, options: StoreOptions) -> Result<SqliteStore, StoreError> {
        std::fs::create_dir_all(data_dir)?;
        let path = data_dir.join(DB_FILE);
        let (conn, sync) = schema::open_writer(&path, options.durable)?;
        if let Some(pages) = options.max_pages {
            conn.pragma_update(None, "max_page_count", pages)?;
        }
        let (commits, _) = broadcast::channel(options.live_capacity.max(16));
        let (writer, jobs) = mpsc::channel(1024);
        let stats = Arc::new(Mutex::new(CommitStats::default()));
        let (handoff, handed) = index::handoff();
        let (head_tx, head) = watch::channel(0);
        let (indexed_tx, indexed) = watch::channel(0);
        let indexer = index::Indexer::open(data_dir, &path, handed, indexed_tx)?;
        let index_wait = options.index_wait;
        let personal: Arc<[String]> = options.personal_metadata.clone().into();
        let (checkpoints, checkpointed, signing) = checkpoint::spawn(data_dir)
            .map_err(|e| StoreError::Io(std::io::Error::other(e.to_string())))?;
        let signer = checkpoints.clone();
        let key = checkpoint::signing_key(data_dir)
            .map_err(|e| StoreError::Io(std::io::Error::other(e.to_string())))?;
        let hooks = flush::Hooks {
            indexer: handoff,
            checkpoints,
            head: head_tx,
            commits: commits.clone(),
        };
        let [writing, flushing] =
            append::spawn_writer(conn, jobs, stats.clone(), sync, hooks, key, options)?;
        let indexing = indexer.spawn()?;
        Ok(SqliteStore {
            shared: Arc::new(Shared {
                path,
                search_path: index::search_path(data_dir),
                head,
                indexed,
                checkpointed,
                signer,
                index_wait,
                personal,
                writer,
                readers: Mutex::new(Vec::new()),
                read_slots: tokio::sync::Semaphore::new(MAX_READERS),
                commits,
                stats,
                threads: Threads(vec![writing, flushing, indexing, signing]),
            }),
        })
    }

    /// Seals and commits `events` as one all-or-nothing unit, sharing the fsync with whatever
    /// other appends are waiting. Returns only once the events are on disk; they are then
    /// published to subscribers in seq order.
    ///
    /// # Errors
    /// [`StoreError::Full`] when the disk or database is full, [`StoreError::Closed`] when the
    /// writer has stopped; nothing of the request is stored in either case.
    pub async fn append(&self, events: Vec<AuditEvent>) -> Result<IngestReceipt, StoreError> {
        self.append_with(events, None).await
    }

    /// Like [`Store::append`], and stores where a tailed file was read up to in the same
    /// transaction: the cursor is on disk exactly when the events read before it are.
    ///
    /// # Errors
    /// As [`Store::append`]; the cursor is not stored either.
    pub async fn append_tailed(
        &self,
        events: Vec<AuditEvent>,
        cursor: crate::store::cursor::TailCursor,
    ) -> Result<IngestReceipt, StoreError> {
        self.append_with(events, Some(cursor)).await
    }

    /// The stored cursor of the tail named `source`.
    ///
    /// # Errors
    /// Database errors.
    pub async fn tail_cursor(
        &self,
        source: &str,
    ) -> Result<Option<crate::store::cursor::TailCursor>, StoreError> {
        let source = source.to_string();
        self.read(move |c| cursor::load(c, &source).map_err(StoreError::from))
            .await
    }

    async fn append_with(
        &self,
        events: Vec<AuditEvent>,
        cursor: Option<crate::store::cursor::TailCursor>,
    ) -> Result<IngestReceipt, StoreError> {
        if events.is_empty() && cursor.is_none() {
            // Nothing to seal; the writer's receipts assume every job has an event.
            let head = self.head().await?;
            return Ok(IngestReceipt {
                accepted: 0,
                first_seq: head.next(),
                last_seq: head,
            });
        }
        // Serialised here, on the caller's thread, so the one writer thread does not.
        let personal = &self.shared.personal;
        let events = events
            .into_iter()
            .map(|e| seal::Prepared::new(e, personal))
            .collect();
        let (reply, answer) = oneshot::channel();
        self.shared
            .writer
            .send(append::Work::Append(append::Job {
                events,
                cursor,
                reply,
            }))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// The metadata fields declared personal.
    pub fn personal_metadata(&self) -> &[String] {
        &self.shared.personal
    }

    /// Removes every event `policy` says has expired by `now`, keeping the chain verifiable
    /// (see [`retention`]), then takes them out of the search index.
    ///
    /// # Errors
    /// Database errors; a run that fails part way keeps what its finished transactions
    /// removed, each signed.
    pub async fn prune(
        &self,
        policy: RetentionPolicy,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<crate::store::retention::Pruned, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.shared
            .writer
            .send(append::Work::Prune {
                policy,
                now_ms: now.timestamp_millis(),
                reply,
            })
            .await
            .map_err(|_| StoreError::Closed)?;
        let pruned = answer.await.map_err(|_| StoreError::Closed)??;
        if !pruned.seqs.is_empty() {
            let search = self.shared.search_path.clone();
            let seqs = pruned.seqs.clone();
            tokio::task::spawn_blocking(move || index::rewrite(&search, &seqs, &[]))
                .await
                .map_err(|e| StoreError::Io(std::io::Error::other(e)))??;
        }
        Ok(pruned)
    }

    /// Erases the data subject `subject` (a user id) by crypto-shredding: see
    /// `append::Writer::erase`. Waits until the search index has taken every event stored
    /// so far, then rewrites the subject's events there without their personal text.
    /// Returns how many events were erased.
    ///
    /// # Errors
    /// Database errors, or the index not catching up within five minutes (the events are
    /// erased then; erasing again finishes the index).
    pub async fn erase(&self, subject: &str) -> Result<u64, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.shared
            .writer
            .send(append::Work::Erase {
                subject: subject.to_string(),
                reply,
            })
            .await
            .map_err(|_| StoreError::Closed)?;
        let erased = answer.await.map_err(|_| StoreError::Closed)??;
        // Events the indexer holds in memory still carry the personal text: it must have
        // written them before they are rewritten.
        let mut indexed = self.shared.indexed.clone();
        let head = erased.head;
        tokio::time::timeout(Duration::from_secs(300), indexed.wait_for(|&s| s >= head))
            .await
            .map_err(|_| StoreError::Indexing {
                indexed: *self.shared.indexed.borrow(),
                head,
            })?
            .map_err(|_| StoreError::Closed)?;
        let seqs = erased.seqs;
        let count = seqs.len() as u64;
        let ids = seqs.clone();
        let events = self
            .read(move |c| {
                let sql = format!("SELECT {} FROM events WHERE seq = ?1", query::EVENT_COLUMNS);
                let mut stmt = c.prepare(&sql)?;
                let mut out = Vec::with_capacity(ids.len());
                for seq in ids {
                    out.push(stmt.query_row([seq], query::event_from_row)?);
                }
                Ok(out)
            })
            .await?;
        let search = self.shared.search_path.clone();
        tokio::task::spawn_blocking(move || index::rewrite(&search, &seqs, &events))
            .await
            .map_err(|e| StoreError::Io(std::io::Error::other(e)))??;
        Ok(count)
    }

    /// Every event that concerns `subject`, in seq order: as the actor, and, with
    /// [`Concerning::ActorOrEntity`], as the entity acted on too (those events carry whoever
    /// acted on the subject, so only roles that may see everyone's events get them). A full
    /// scan: subjects are looked up rarely and users have no b-tree.
    ///
    /// # Errors
    /// Database errors.
    pub async fn subject_events(
        &self,
        subject: &str,
        concerning: Concerning,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let subject = subject.to_string();
        self.read(move |c| {
            let condition = match concerning {
                Concerning::Actor => "user_id = ?1",
                Concerning::ActorOrEntity => "user_id = ?1 OR entity_id = ?1",
            };
            let sql = format!(
                "SELECT {} FROM events WHERE {condition} ORDER BY seq",
                query::EVENT_COLUMNS
            );
            let mut stmt = c.prepare(&sql)?;
            let rows = stmt.query_map([subject], query::event_from_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// Committed events as they are published, in seq order. A receiver that falls more than
    /// the live capacity behind gets `RecvError::Lagged` and must catch up with
    /// [`Store::read_from`].
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<StoredEvent>> {
        self.shared.commits.subscribe()
    }

    /// Every event committed after the current head, in seq order with no gap: what the live
    /// queue dropped for a slow follower is read back from the database.
    ///
    /// # Errors
    /// Database errors reading the head.
    pub async fn follow(&self) -> Result<Following, StoreError> {
        let live = self.subscribe();
        let last = self.head().await?;
        Ok(self.following(live, last))
    }

    /// Every event committed after `after`, in seq order with no gap (see [`Store::follow`]).
    pub fn follow_from(&self, after: Seq) -> Following {
        self.following(self.subscribe(), after)
    }

    fn following(&self, live: broadcast::Receiver<Arc<StoredEvent>>, last: Seq) -> Following {
        Following::new(Feed::Sqlite(self.clone()), live, last)
    }

    /// Up to `limit` events with seq greater than `after`, in seq order, through the durable
    /// head: a commit still waiting for its sync is not read back, so nothing that a power loss
    /// could still take away reaches a live follower (which would then skip the seq reused).
    ///
    /// # Errors
    /// Database errors.
    pub async fn read_from(
        &self,
        after: Seq,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let through = self.committed_head();
        self.read(move |c| query::read_from(c, after, through, limit))
            .await
    }

    /// The seq of the newest durable event (0 when empty).
    ///
    /// # Errors
    /// Database errors.
    pub async fn head(&self) -> Result<Seq, StoreError> {
        let durable = self.committed_head();
        Ok(self.read(query::head).await?.min(durable))
    }

    /// One page of events matching `query`, newest first, with the count of matches.
    ///
    /// # Errors
    /// Database errors.
    pub async fn query(&self, query: Query, req: PageRequest) -> Result<EventPage, StoreError> {
        self.index_barrier(&query).await;
        self.read(move |c| query::page(c, &query, req)).await
    }

    /// Up to `limit` events after `after` that match `query`, oldest first, and the seq the
    /// scan reached (resume after it).
    ///
    /// # Errors
    /// Database errors.
    pub async fn matching_from(
        &self,
        query: Arc<Query>,
        after: Seq,
        limit: usize,
    ) -> Result<(Vec<StoredEvent>, Seq), StoreError> {
        self.index_barrier(&query).await;
        self.read(move |c| query::matching_from(c, &query, after, limit))
            .await
    }

    /// Calls `each` with `state` and every event matching `query`, in `order`, from one
    /// consistent snapshot, on a blocking thread, until it returns `false`; gives `state`
    /// back. Memory stays flat however many events match.
    ///
    /// # Errors
    /// Database errors.
    pub async fn for_each_matching<S, F>(
        &self,
        query: Query,
        order: crate::model::EventOrder,
        mut state: S,
        mut each: F,
    ) -> Result<S, StoreError>
    where
        S: Send + 'static,
        F: FnMut(&mut S, &StoredEvent) -> bool + Send + 'static,
    {
        // An export is all or nothing: it never leaves out events the index has not reached.
        if let Some((indexed, head)) = self.index_barrier(&query).await {
            return Err(StoreError::Indexing { indexed, head });
        }
        self.read(move |c| {
            query::for_each(c, &query, order, |e| each(&mut state, e))?;
            Ok(state)
        })
        .await
    }

    /// Each level, category or action that occurs, with its count, most frequent first.
    ///
    /// # Errors
    /// Database errors.
    pub async fn distinct(&self, field: DistinctField) -> Result<Vec<ValueCount>, StoreError> {
        self.read(move |c| query::distinct(c, field)).await
    }

    /// The event with this id, if stored.
    ///
    /// # Errors
    /// Database errors.
    pub async fn get(&self, id: EventId) -> Result<Option<StoredEvent>, StoreError> {
        self.read(move |c| query::by_id(c, &id)).await
    }

    /// The event with this id, its seal checked in place, and up to `related` events sharing
    /// its correlation id and its session id (newest first, the event itself excluded).
    ///
    /// # Errors
    /// Database errors.
    pub async fn detail(
        &self,
        id: EventId,
        related: u32,
    ) -> Result<Option<EventDetail>, StoreError> {
        // Not one transaction: each part reads committed rows that never change, and the
        // related lists may as well include what arrived in between.
        self.read(move |c| {
            let Some(event) = query::by_id(c, &id)? else {
                return Ok(None);
            };
            let Some(seal) = verify::verify_one(c, event.seq)? else {
                return Ok(None);
            };
            let same = |term: Option<Term>| -> Result<Vec<StoredEvent>, StoreError> {
                let Some(term) = term else {
                    return Ok(Vec::new());
                };
                let (query, req) = crate::store::reads::related(term, related);
                let mut items = query::page(c, &query, req)?.items;
                items.retain(|e| e.seq != event.seq);
                items.truncate(related as usize);
                Ok(items)
            };
            let exact = |v: &Option<String>| v.clone().map(Pattern::Exact);
            let same_correlation = same(exact(&event.event.correlation_id).map(Term::Correlation))?;
            let same_session = same(exact(&event.event.session_id).map(Term::Session))?;
            Ok(Some(EventDetail {
                event,
                seal,
                same_correlation,
                same_session,
            }))
        })
        .await
    }

    /// The newest `limit` events (newest first) and the running totals, read in one
    /// transaction so they agree with each other.
    ///
    /// # Errors
    /// Database errors.
    pub async fn snapshot(&self, limit: usize) -> Result<DashboardSnapshot, StoreError> {
        self.read(move |c| query::snapshot(c, limit)).await
    }

    /// Runs `f` over the rollups from one consistent snapshot, on a blocking thread.
    ///
    /// # Errors
    /// Database errors, and whatever `f` returns.
    pub async fn with_rollups<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&crate::store::rollup::Reader<'_, '_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.read(move |c| {
            let tx = c.unchecked_transaction()?;
            let session = sql::Session::sqlite(&tx);
            let out = f(&crate::store::rollup::Reader::new(&session, true))?;
            tx.finish()?;
            Ok(out)
        })
        .await
    }

    /// Running totals over every stored event.
    ///
    /// # Errors
    /// Database errors.
    pub async fn counters(&self) -> Result<Counters, StoreError> {
        self.read(query::counters).await
    }

    /// [`Store::verify`] of the rows after `after`, whose hash is `prev`: see
    /// [`verify::verify_from`]. Checked against the data directory's checkpoint log, whose
    /// problems make the report not ok.
    ///
    /// # Errors
    /// Database errors; a broken chain is a report, not an error.
    pub async fn verify_from(
        &self,
        after: Seq,
        prev: chain::Hash32,
    ) -> Result<VerifyReport, StoreError> {
        self.read(self.verify_walk(after, prev)).await
    }

    /// [`Store::verify_from`] for the background check of the chain (`crate::integrity`): the
    /// same walk, on a thread of its own at the search indexer's lower priority. It re-reads
    /// and re-hashes every new event, as much work as sealing them was, and during a burst of
    /// ingest it had a tenth of the CPU at the writer's priority (BENCHMARKS.md). Under load
    /// it now finishes later instead. Its hourly walk of the whole chain no longer holds one
    /// of the readers' slots and pooled connections that searches and exports wait for.
    ///
    /// # Errors
    /// As [`Store::verify_from`].
    pub async fn verify_from_in_background(
        &self,
        after: Seq,
        prev: chain::Hash32,
    ) -> Result<VerifyReport, StoreError> {
        self.read_in_background(self.verify_walk(after, prev)).await
    }

    /// The walk of [`Store::verify_from`], to run on a reader connection.
    fn verify_walk(
        &self,
        after: Seq,
        prev: chain::Hash32,
    ) -> impl FnOnce(&Connection) -> Result<VerifyReport, StoreError> + Send + 'static {
        let dir = self.data_dir().to_path_buf();
        move |c| {
            let checkpoints = match checkpoint::trusted(
                &dir.join(checkpoint::LOG_FILE),
                &dir.join(checkpoint::PUBLIC_KEY_FILE),
                false,
            ) {
                Ok(c) => c,
                Err(e) => return Ok(VerifyReport::untrusted_checkpoints(e.to_string())),
            };
            let key = checkpoint::read_public_key(&dir.join(checkpoint::PUBLIC_KEY_FILE)).ok();
            verify::verify_from(c, after, prev, &checkpoints, key.as_ref(), &mut |_| {})
        }
    }

    /// The newest committed seq, followed as it moves.
    pub fn head_watch(&self) -> watch::Receiver<u64> {
        self.shared.head.clone()
    }

    /// Signs the current head into the checkpoint log now, rather than within the minute, and
    /// waits up to `wait` until it is written; returns the newest seq signed. A clean stop
    /// calls it, so no committed event is left outside a checkpoint.
    ///
    /// # Errors
    /// Database errors reading the head.
    pub async fn checkpoint_head(&self, wait: Duration) -> Result<u64, StoreError> {
        let head = self.head().await?;
        if head.0 > 0 {
            let hash: Vec<u8> = self
                .read(move |c| {
                    Ok(
                        c.query_row("SELECT hash FROM events WHERE seq = ?1", [head.0], |r| {
                            r.get(0)
                        })?,
                    )
                })
                .await?;
            let hash = <[u8; 32]>::try_from(hash).map_err(|_| StoreError::Corrupt {
                seq: head.0,
                detail: "stored hash is not 32 bytes".into(),
            })?;
            let _ = self.shared.signer.try_send(checkpoint::Position {
                seq: head.0,
                hash,
                urgent: true,
            });
            let mut signed = self.checkpointed();
            let _ = tokio::time::timeout(wait, signed.wait_for(|&s| s >= head.0)).await;
        }
        let signed = *self.shared.checkpointed.borrow();
        Ok(signed)
    }

    /// The newest seq signed into the checkpoint log, followed as it moves.
    pub fn checkpointed(&self) -> watch::Receiver<u64> {
        self.shared.checkpointed.clone()
    }

    /// The data directory the store lives in.
    pub fn data_dir(&self) -> &Path {
        self.shared.path.parent().unwrap_or(Path::new("."))
    }

    /// Commit statistics since open.
    pub fn stats(&self) -> CommitStats {
        self.shared.stats.lock().map(|s| *s).unwrap_or_default()
    }

    /// Whether the writer thread is still accepting work.
    pub fn is_writable(&self) -> bool {
        !self.shared.writer.is_closed()
    }

    /// The newest committed seq, as the writer last published it (no database read).
    pub fn committed_head(&self) -> Seq {
        Seq(*self.shared.head.borrow())
    }

    /// The seq the search index covers through (it trails the head by a commit or two, or by
    /// more while a burst is being indexed).
    pub fn indexed_through(&self) -> Seq {
        Seq(*self.shared.indexed.borrow())
    }

    /// Waits, up to [`StoreOptions::index_wait`], until the search index covers every event committed
    /// before the call, when `query` needs the index: so an acknowledged event is found by
    /// the next search. Returns `(indexed, head)` if the wait ran out; the query then covers
    /// what is indexed and says so.
    async fn index_barrier(&self, query: &Query) -> Option<(u64, u64)> {
        if !query::needs_index(query) {
            return None;
        }
        let head = *self.shared.head.borrow();
        let mut indexed = self.shared.indexed.clone();
        let caught_up = matches!(
            tokio::time::timeout(self.shared.index_wait, indexed.wait_for(|i| *i >= head)).await,
            Ok(Ok(_))
        );
        // Otherwise it timed out, or the indexer has stopped: say how far it got.
        let now = *self.shared.indexed.borrow();
        (!caught_up).then_some((now, head))
    }

    /// Runs `f` on a reader connection of its own, on a new thread that gives way to ingest
    /// (see [`index::yield_to_ingest`]): for background work over the events that may trail.
    /// A thread per call, because a thread's priority cannot be raised again once lowered, so
    /// the pooled threads of [`Store::read`] must not be lowered. The search index is not
    /// attached: the chain check, its one caller, reads only the events.
    async fn read_in_background<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let path = self.shared.path.clone();
        let (reply, answer) = oneshot::channel();
        std::thread::Builder::new()
            .name("trailwatch-verify".into())
            .spawn(move || {
                index::yield_to_ingest();
                let result = schema::open_reader(&path, None).and_then(|c| f(&c));
                let _ = reply.send(result);
            })?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs `f` on a pooled read connection on the blocking pool.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let shared = self.shared.clone();
        let slot = self
            .shared
            .read_slots
            .acquire()
            .await
            .map_err(|_| StoreError::Closed)?;
        let read = tokio::task::spawn_blocking(move || {
            let pooled = shared.readers.lock().ok().and_then(|mut p| p.pop());
            let conn = match pooled {
                Some(c) => c,
                None => schema::open_reader(&shared.path, Some(&shared.search_path))?,
            };
            let result = f(&conn);
            if let Ok(mut pool) = shared.readers.lock() {
                if pool.len() < POOLED_READERS {
                    pool.push(conn);
                }
            }
            result
        })
        .await;
        drop(slot);
        read.map_err(|e| StoreError::Io(std::io::Error::other(e)))?
    }
}

/// Checkpoints the WAL into the database and truncates it to nothing, so that old page
/// images (an erased subject's values among them) leave the WAL file. Readers in the middle
/// of a snapshot hold the WAL; it retries for up to a minute while they finish.
///
/// # Errors
/// Database errors, or readers that did not let go within the minute.
pub(crate) fn truncate_wal(conn: &Connection) -> Result<(), StoreError> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
        if busy == 0 {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(StoreError::Io(std::io::Error::other(
                "readers kept the write-ahead log busy for a minute; it was not emptied",
            )));
        }
        // Back-off between attempts while a long read (a full chain check) finishes.
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::{parse_body, BodyFormat};
    use crate::model::Source;

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn the_background_chain_check_gives_way_to_ingest_and_finds_what_verify_finds() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path(), StoreOptions::default()).unwrap();
        let body = b"{\"action\":\"a\"}\n{\"action\":\"b\",\"userId\":\"u1\"}\n";
        let events = parse_body(
            body,
            BodyFormat::Ndjson,
            &Source::http(),
            chrono::Utc::now(),
        );
        store.append(events.unwrap()).await.unwrap();

        let caller = index::thread_niceness();
        let (name, niceness) = store
            .read_in_background(|_| {
                let name = std::fs::read_to_string("/proc/thread-self/comm").unwrap();
                Ok((name.trim().to_string(), index::thread_niceness()))
            })
            .await
            .unwrap();
        assert_eq!(
            name, "trailwatch-veri",
            "a thread of its own, named in `top`"
        );
        assert!(niceness >= index::NICENESS, "{niceness}");
        assert_eq!(
            index::thread_niceness(),
            caller,
            "the caller keeps its priority"
        );

        let background = store
            .verify_from_in_background(Seq(0), chain::GENESIS)
            .await
            .unwrap();
        let asked = store.verify_from(Seq(0), chain::GENESIS).await.unwrap();
        assert!(background.ok, "{background:?}");
        assert_eq!(background, asked);
        assert_eq!((background.checked, background.head_seq), (2, Seq(2)));
    }
}
