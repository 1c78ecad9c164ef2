//! The full-text search index: derived data in its own file (`search.db`) beside the events,
//! kept up to date by its own thread so that tokenising and merging never slow the writer.
//!
//! The writer commits events and hands them to the indexer (see [`Handoff`]); the indexer
//! indexes what was committed after the seq it has indexed through, in one transaction with
//! that position (and the hash of the event at it). What it was not handed (it fell too far
//! behind, or it started after the commit) it reads back from the events. Nothing here is the record: if the file is lost, damaged or
//! belongs to other events, it is rebuilt from the events, which stay the source of truth.
//! Readers attach the file as `search`; a query that needs it first waits until it covers the
//! head it saw (see [`crate::store::Store::query`]), so an acknowledged event is searchable by
//! the next query that asks.

use super::{query, schema};
use crate::model::{Seq, StoredEvent};
use crate::store::StoreError;
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The index file's name inside the data directory.
pub const SEARCH_FILE: &str = "search.db";

/// The most events indexed in one transaction: big enough that FTS5 writes few segments,
/// small enough that a query waiting on the index sees progress often.
const CHUNK: usize = 20_000;

/// While no search waits on the index, the indexer gathers commits for up to this long
/// before indexing them. FTS5 flushes its terms to a new segment at every commit and merges
/// those segments again later, and each merge that renumbers pages makes SQLite's page cache
/// walk every page it holds at the end of the transaction; with one index transaction per
/// small commit (single-event POSTs), that walk alone was a quarter of the indexer's time.
const GATHER: Duration = Duration::from_millis(25);

/// Gathering stops early at this many events: enough for one cheap transaction.
const GATHER_EVENTS: usize = 2_000;

/// How often a gathering indexer looks for a search waiting on it, which ends the gathering:
/// the most a search can wait for it.
const GATHER_STEP: Duration = Duration::from_millis(2);

/// The most committed events handed to the indexer and not yet taken: past it the writer
/// only rings, and the indexer reads those events back from the database instead. Reading
/// back cost the indexer about a third of its time, on the core the writer shares with it.
const HANDOFF_EVENTS: usize = 100_000;

/// The writer's side of the way to the indexer: each commit's events (already shared with
/// the live subscribers, so handing them costs no copy), or only a ring when too many wait.
pub struct Handoff {
    tx: SyncSender<Vec<Arc<StoredEvent>>>,
    waiting: Arc<AtomicUsize>,
}

/// The indexer's side of [`Handoff`].
pub struct Handed {
    rx: Receiver<Vec<Arc<StoredEvent>>>,
    waiting: Arc<AtomicUsize>,
}

/// A way from the writer to the indexer.
pub fn handoff() -> (Handoff, Handed) {
    // Rings (empty hand-offs) are rarely more than one per commit in flight; when the
    // channel is full the indexer has that many wake-ups waiting and misses nothing.
    let (tx, rx) = std::sync::mpsc::sync_channel(1024);
    let waiting = Arc::new(AtomicUsize::new(0));
    (
        Handoff {
            tx,
            waiting: waiting.clone(),
        },
        Handed { rx, waiting },
    )
}

impl Handoff {
    /// Tells the indexer of a commit; never blocks the writer.
    pub fn committed(&self, events: &[Arc<StoredEvent>]) {
        let waiting = self.waiting.load(Ordering::Acquire);
        let batch = if waiting + events.len() <= HANDOFF_EVENTS {
            self.waiting.fetch_add(events.len(), Ordering::AcqRel);
            events.to_vec()
        } else {
            Vec::new()
        };
        let n = batch.len();
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.tx.try_send(batch)
        {
            self.waiting.fetch_sub(n, Ordering::AcqRel);
        }
    }
}

impl Handed {
    /// Moves what was handed into `queue`; waits for the next commit first when `block`.
    /// Returns false once the writer has hung up and nothing more will come.
    fn take(&self, queue: &mut VecDeque<Arc<StoredEvent>>, block: bool) -> bool {
        let mut add = |batch| self.add(queue, batch);
        if block {
            match self.rx.recv() {
                Ok(batch) => add(batch),
                Err(_) => return false,
            }
        }
        loop {
            match self.rx.try_recv() {
                Ok(batch) => add(batch),
                Err(std::sync::mpsc::TryRecvError::Empty) => return true,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => return false,
            }
        }
    }

    /// Moves one handed batch into `queue`, no longer counted as waiting.
    fn add(&self, queue: &mut VecDeque<Arc<StoredEvent>>, batch: Vec<Arc<StoredEvent>>) {
        self.waiting.fetch_sub(batch.len(), Ordering::AcqRel);
        queue.extend(batch);
    }

    /// Moves what is handed into `queue` until `until`, until it holds [`GATHER_EVENTS`], or
    /// until `hurry` says someone waits, whichever comes first. Returns false once the writer
    /// has hung up.
    fn gather(
        &self,
        queue: &mut VecDeque<Arc<StoredEvent>>,
        until: Instant,
        hurry: impl Fn() -> bool,
    ) -> bool {
        use std::sync::mpsc::RecvTimeoutError;
        while queue.len() < GATHER_EVENTS && !hurry() {
            let Some(left) = until.checked_duration_since(Instant::now()) else {
                break;
            };
            match self.rx.recv_timeout(left.min(GATHER_STEP)) {
                Ok(batch) => self.add(queue, batch),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return false,
            }
        }
        true
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID;

-- Full text of each event (rowid = seq). The columns hold `search::text_columns`, so the
-- browser's matcher and this index agree. Contentless: the text lives in the events only;
-- rows are deletable for erasure.
CREATE VIRTUAL TABLE IF NOT EXISTS events_fts USING fts5(
    t_description, t_action, t_user, t_entity, t_metadata,
    content = '', contentless_delete = 1,
    tokenize = 'unicode61 remove_diacritics 0'
);
";

/// The niceness of the indexer and of the background chain check: they give way to the
/// writer, the sealer and the request handlers when those want the CPU, and have it all when
/// they do not.
pub(super) const NICENESS: i32 = 10;

/// Lowers the calling thread's priority to [`NICENESS`]. The index is derived and may trail
/// (a search waits for it), while every acknowledgement waits on the writer: on two cores the
/// indexer at the same priority took the CPU the writer's pipeline needed, and in a burst of
/// appends the index trails further and then catches up in larger, cheaper chunks
/// (BENCHMARKS.md, "Sealing beside the inserts").
pub(super) fn yield_to_ingest() {
    #[cfg(target_os = "linux")]
    {
        // On Linux a thread id names that one thread here, not its process.
        let thread = rustix::thread::gettid();
        if let Err(e) = rustix::process::setpriority_process(Some(thread), NICENESS) {
            tracing::debug!(error = %e, "could not lower a background thread's priority");
        }
    }
}

/// The calling thread's niceness, as the kernel reports it (field 19 of its stat line): the
/// tests' check of [`yield_to_ingest`].
#[cfg(all(test, target_os = "linux"))]
pub(super) fn thread_niceness() -> i32 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("/proc/thread-self/stat");
    // The command name may hold spaces and parentheses; the fields after it do not.
    let after_name = &stat[stat.rfind(')').map_or(0, |i| i + 1)..];
    after_name
        .split_whitespace()
        .nth(16)
        .and_then(|n| n.parse().ok())
        .expect("a niceness in /proc/thread-self/stat")
}

/// Adds an event's text to the full-text index.
const INSERT_FTS: &str = "INSERT INTO events_fts
    (rowid, t_description, t_action, t_user, t_entity, t_metadata)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

/// Adds one event's text to the index through a prepared [`INSERT_FTS`].
fn insert_text(
    insert: &mut rusqlite::CachedStatement<'_>,
    stored: &StoredEvent,
) -> rusqlite::Result<()> {
    let [description, action, user, entity, metadata] = crate::search::text_columns(&stored.event);
    insert.execute(params![
        stored.seq.0,
        description,
        action,
        user,
        entity,
        metadata
    ])?;
    Ok(())
}

/// Opens (creating if needed) the index file for writing. It is derived data, so commits are
/// not fsynced (`synchronous=NORMAL` in WAL mode still never corrupts it); a crash may lose
/// the last chunks, which are indexed again from the events.
fn open_writer(search: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(search)?;
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "cache_size", -65_536)?;
    conn.execute_batch(SCHEMA)?;
    // FTS5 flushes its in-memory terms to a new segment whenever they pass this size; the
    // default (1 MiB) made several segments per chunk, each merged again later.
    conn.execute(
        "INSERT INTO events_fts (events_fts, rank) VALUES ('hashsize', ?1)",
        [16_i64 << 20],
    )?;
    Ok(conn)
}

/// Where the index stands: the seq it covers through and that event's hash.
fn position(conn: &Connection) -> Result<(u64, Vec<u8>), StoreError> {
    let get = |key: &str| -> Result<Option<rusqlite::types::Value>, StoreError> {
        Ok(conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    };
    let seq = match get("indexed_through")? {
        Some(rusqlite::types::Value::Integer(n)) => n.max(0) as u64,
        _ => 0,
    };
    let hash = match get("indexed_hash")? {
        Some(rusqlite::types::Value::Blob(b)) => b,
        _ => Vec::new(),
    };
    Ok((seq, hash))
}

/// The seq the index covers through, read by a connection that attached it as `search`.
pub fn indexed_through(conn: &Connection) -> Result<u64, StoreError> {
    let seq: Option<i64> = conn
        .query_row(
            "SELECT value FROM search.meta WHERE key = 'indexed_through'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    Ok(seq.unwrap_or(0).max(0) as u64)
}

/// Empties the index when it does not describe these events: it covers past their head, or
/// the event it stopped at has another hash (a restored or replaced database). Returns the
/// position to resume from.
fn reconcile(conn: &Connection, events: &Connection) -> Result<u64, StoreError> {
    let (seq, hash) = position(conn)?;
    if seq == 0 {
        return Ok(0);
    }
    let stored: Option<Vec<u8>> = events
        .query_row("SELECT hash FROM events WHERE seq = ?1", [seq], |r| {
            r.get(0)
        })
        .optional()?;
    if stored.as_deref() == Some(hash.as_slice()) {
        return Ok(seq);
    }
    tracing::warn!(
        indexed_through = seq,
        "the search index does not match the stored events; rebuilding it"
    );
    let tx = conn.unchecked_transaction()?;
    tx.execute(
        "INSERT INTO events_fts (events_fts) VALUES ('delete-all')",
        [],
    )?;
    tx.execute("DELETE FROM meta", [])?;
    tx.commit()?;
    Ok(0)
}

/// Indexes up to [`CHUNK`] events after the stored position, in one transaction that also
/// moves the position. Returns the new position, or `None` when there was nothing to index.
/// The events come from `handed` when it holds the next ones, else from the database (up to
/// the first handed one). The position is read inside the write transaction, so two indexers
/// on one file (a store reopened while its old thread drains) never index an event twice.
fn index_chunk(
    conn: &Connection,
    events: &Connection,
    handed: &mut VecDeque<Arc<StoredEvent>>,
) -> Result<Option<u64>, StoreError> {
    let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
    let (from, _) = position(&tx)?;
    while handed.front().is_some_and(|e| e.seq.0 <= from) {
        handed.pop_front();
    }
    let chunk: Vec<Arc<StoredEvent>> = match handed.front() {
        Some(next) if next.seq.0 == from + 1 => {
            let n = handed.len().min(CHUNK);
            handed.drain(..n).collect()
        }
        // A gap before the handed events (or none handed): read it back.
        next => {
            let limit = next.map_or(CHUNK, |e| ((e.seq.0 - from - 1) as usize).min(CHUNK));
            // Unbounded above: an index past the head after a power loss is found and rebuilt
            // by `reconcile`.
            query::read_from(events, Seq(from), Seq(i64::MAX as u64), limit)?
                .into_iter()
                .map(Arc::new)
                .collect()
        }
    };
    let Some(last) = chunk.last() else {
        return Ok(None);
    };
    let (last_seq, last_hash) = (last.seq.0, hex::decode(&last.hash).unwrap_or_default());
    {
        let mut insert = tx.prepare_cached(INSERT_FTS)?;
        for stored in &chunk {
            insert_text(&mut insert, stored)?;
        }
        let mut set = tx.prepare_cached(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )?;
        set.execute(params!["indexed_through", last_seq as i64])?;
        set.execute(params!["indexed_hash", last_hash])?;
    }
    tx.commit()?;
    Ok(Some(last_seq))
}

/// The indexer's handles: the index (written), the events (read), what the writer hands over
/// after each commit, and where to publish progress.
pub struct Indexer {
    conn: Connection,
    events: Connection,
    handed: Handed,
    progress: watch::Sender<u64>,
}

impl Indexer {
    /// Opens (creating or repairing) the index beside `events` and returns the indexer, not
    /// yet running, with the position it resumes from already published.
    pub fn open(
        data_dir: &Path,
        events: &Path,
        handed: Handed,
        progress: watch::Sender<u64>,
    ) -> Result<Indexer, StoreError> {
        let conn = open_writer(&search_path(data_dir))?;
        let events = schema::open_reader(events, None)?;
        let from = reconcile(&conn, &events)?;
        progress.send_replace(from);
        Ok(Indexer {
            conn,
            events,
            handed,
            progress,
        })
    }

    /// Runs the indexer on its own thread until the writer hangs up, then indexes what is
    /// left and stops.
    pub fn spawn(self) -> Result<std::thread::JoinHandle<()>, StoreError> {
        Ok(std::thread::Builder::new()
            .name("trailwatch-index".into())
            .spawn(move || {
                yield_to_ingest();
                self.run()
            })?)
    }

    fn run(self) {
        let mut open = true;
        let mut queue = VecDeque::new();
        loop {
            if open {
                open = self.handed.take(&mut queue, false);
            }
            match index_chunk(&self.conn, &self.events, &mut queue) {
                Ok(Some(seq)) => {
                    self.progress.send_replace(seq);
                    continue;
                }
                Ok(None) => {}
                Err(e) => {
                    // The events are safe; searches wait on the index and report how far it
                    // got. Try again on the next commit rather than spin on the error (the
                    // events it held are read back then).
                    queue.clear();
                    tracing::error!(error = %e, "indexing failed; will retry on the next commit");
                }
            }
            if !open {
                break;
            }
            // Caught up: sleep until the writer commits again (or hangs up, after which one
            // more pass indexes whatever its last commit left), then gather what follows
            // unless a search is waiting (a waiting search holds a receiver of the progress).
            open = self.handed.take(&mut queue, true)
                && self.handed.gather(&mut queue, Instant::now() + GATHER, || {
                    self.progress.receiver_count() > 1
                });
        }
        tracing::info!("indexer stopped");
    }
}

/// Takes events out of the index, and puts back the ones given (erased events keep their
/// non-personal text searchable). FTS5's `secure-delete` removes their terms from the
/// index pages at once rather than leaving them until a merge, and SQLite's `secure_delete`
/// zeroes what is freed; the emptied WAL then holds no copy either. The indexer may be
/// writing at the same time: this waits for the file's write lock.
///
/// # Errors
/// Database errors.
pub fn rewrite(search: &Path, remove: &[u64], put_back: &[StoredEvent]) -> Result<(), StoreError> {
    let conn = open_writer(search)?;
    conn.pragma_update(None, "secure_delete", "ON")?;
    conn.execute(
        "INSERT INTO events_fts (events_fts, rank) VALUES ('secure-delete', 1)",
        [],
    )?;
    for chunk in remove.chunks(CHUNK) {
        let tx =
            rusqlite::Transaction::new_unchecked(&conn, rusqlite::TransactionBehavior::Immediate)?;
        {
            let mut delete = tx.prepare_cached("DELETE FROM events_fts WHERE rowid = ?1")?;
            for &seq in chunk {
                delete.execute([seq as i64])?;
            }
        }
        tx.commit()?;
    }
    for chunk in put_back.chunks(CHUNK) {
        let tx =
            rusqlite::Transaction::new_unchecked(&conn, rusqlite::TransactionBehavior::Immediate)?;
        {
            let mut insert = tx.prepare_cached(INSERT_FTS)?;
            for stored in chunk {
                insert_text(&mut insert, stored)?;
            }
        }
        tx.commit()?;
    }
    super::truncate_wal(&conn)?;
    Ok(())
}

/// The index file for the data directory.
pub fn search_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SEARCH_FILE)
}

/// Attaches the index to a reader connection as `search`.
pub fn attach(conn: &Connection, search: &Path) -> Result<(), StoreError> {
    conn.execute(
        "ATTACH DATABASE ?1 AS search",
        [search.to_string_lossy().as_ref()],
    )?;
    Ok(())
}

/// Drops the index that schema 2 kept inside the events database: the upgrade to schema 3,
/// whose index lives in its own file and is built by the indexer.
pub fn drop_legacy(conn: &Connection) -> Result<(), StoreError> {
    if schema::table_exists(conn, "events_fts")? {
        conn.execute_batch("DROP TABLE events_fts")?;
        tracing::info!("moved the full-text index out of the events database");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AuditEvent;
    use crate::store::{Store, StoreOptions, DB_FILE};

    fn fts_rows(conn: &Connection) -> Vec<i64> {
        let mut stmt = conn
            .prepare("SELECT rowid FROM events_fts ORDER BY rowid")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    #[tokio::test]
    async fn handed_events_are_used_and_gaps_before_them_are_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let events: Vec<AuditEvent> = (0..30)
            .map(|i| {
                let value = serde_json::json!({ "action": format!("act.{i}") });
                crate::ingest::normalize(&value, &crate::model::Source::http(), chrono::Utc::now())
                    .unwrap()
            })
            .collect();
        store.append(events).await.unwrap();
        let all: Vec<Arc<StoredEvent>> = store
            .read_from(Seq(0), 100)
            .await
            .unwrap()
            .into_iter()
            .map(Arc::new)
            .collect();

        // A second index file, as if this indexer had been handed only seqs 21..=30, with a
        // stale event (seq 3) left in front.
        let conn = open_writer(&dir.path().join("other-search.db")).unwrap();
        let events = schema::open_reader(&dir.path().join(DB_FILE), None).unwrap();
        let mut handed: VecDeque<Arc<StoredEvent>> = VecDeque::new();
        handed.extend(all[20..].iter().cloned());
        assert_eq!(index_chunk(&conn, &events, &mut handed).unwrap(), Some(20));
        assert_eq!(handed.len(), 10, "the gap 1..=20 came from the database");
        handed.push_front(all[2].clone());
        assert_eq!(index_chunk(&conn, &events, &mut handed).unwrap(), Some(30));
        assert!(handed.is_empty());
        assert_eq!(index_chunk(&conn, &events, &mut handed).unwrap(), None);
        assert_eq!(fts_rows(&conn), (1..=30).collect::<Vec<i64>>());
        let (seq, hash) = position(&conn).unwrap();
        assert_eq!((seq, hex::encode(hash)), (30, all[29].hash.clone()));
        // The handed event's text is what was indexed.
        let hit: i64 = conn
            .query_row(
                "SELECT rowid FROM events_fts WHERE events_fts MATCH 't_action : \"act.25\"'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(hit, 26);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_indexer_gives_way_to_ingest_and_only_its_own_thread_does() {
        let process = super::thread_niceness();
        let (before, after) = std::thread::spawn(|| {
            let before = super::thread_niceness();
            super::yield_to_ingest();
            (before, super::thread_niceness())
        })
        .join()
        .unwrap();
        assert_eq!(before, process);
        if process < super::NICENESS {
            assert_eq!(after, super::NICENESS);
        } else {
            // Already as nice or nicer (a run under `nice`): never raised back.
            assert!(after >= super::NICENESS, "{after}");
        }
        assert_eq!(
            super::thread_niceness(),
            process,
            "the other threads keep their priority"
        );
    }

    #[tokio::test]
    async fn gathering_ends_for_a_waiting_search_for_enough_events_and_when_the_writer_hangs_up() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let value = serde_json::json!({ "action": "gathered" });
        let event =
            crate::ingest::normalize(&value, &crate::model::Source::http(), chrono::Utc::now())
                .unwrap();
        store.append(vec![event]).await.unwrap();
        let event = Arc::new(store.read_from(Seq(0), 1).await.unwrap().remove(0));

        let (handoff, handed) = handoff();
        let mut queue = VecDeque::new();
        let far = Instant::now() + Duration::from_secs(60);
        // A search waits: nothing is gathered, though a commit is there to take.
        handoff.committed(std::slice::from_ref(&event));
        assert!(handed.gather(&mut queue, far, || true));
        assert!(queue.is_empty());

        // Enough events end the gathering long before its deadline.
        handoff.committed(&vec![event.clone(); GATHER_EVENTS]);
        let started = Instant::now();
        assert!(handed.gather(&mut queue, far, || false));
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "waited for the deadline"
        );
        assert_eq!(queue.len(), GATHER_EVENTS + 1);
        assert_eq!(
            handed.waiting.load(Ordering::Acquire),
            0,
            "every event taken is counted"
        );

        // A small commit alone is held until the deadline.
        queue.clear();
        handoff.committed(std::slice::from_ref(&event));
        let soon = Instant::now() + Duration::from_millis(30);
        assert!(handed.gather(&mut queue, soon, || false));
        assert!(Instant::now() >= soon);
        assert_eq!(queue.len(), 1);

        // The writer hangs up: gathering says so, after taking what was left.
        handoff.committed(std::slice::from_ref(&event));
        drop(handoff);
        queue.clear();
        assert!(!handed.gather(&mut queue, far, || false));
        assert_eq!(queue.len(), 1);
    }
}
