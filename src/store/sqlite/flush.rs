//! The flusher: the thread that makes group commits durable and only then lets anyone know of
//! them. The writer commits a transaction (its frames reach the write-ahead log through the
//! page cache) and hands the result here; this thread syncs the log once for every commit
//! waiting, then, commit by commit in seq order, moves the published head, hands the events
//! to the indexer and the checkpoint signer, sends them to subscribers and acknowledges the
//! appends. Meanwhile the writer is already sealing the next batch: with SQLite syncing the
//! log inside each commit (`synchronous=FULL`), a quarter of the writer's time went to
//! waiting for the disk.
//!
//! Why this is as safe as `synchronous=FULL`: in WAL mode, `synchronous=NORMAL` keeps the
//! database consistent through a power loss (a commit whose frames did not reach the disk is
//! rolled back whole), and syncing the log file after a commit makes that commit's frames,
//! and every earlier one's, durable. A checkpoint syncs the log before copying it and the
//! database after, and the log restarts from its beginning only after a complete checkpoint,
//! so frames not yet synced here are never overwritten. A killed process loses nothing the
//! kernel was given; only an acknowledgement needs the sync, and none is sent before it.

use crate::model::{IngestReceipt, StoredEvent};
use crate::store::chain::Hash32;
use crate::store::checkpoint::{Position, EVERY_EVENTS};
use crate::store::StoreError;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::{broadcast, oneshot};

/// Group commits the writer may run ahead of the disk: it then waits, so a slow disk holds
/// back ingest instead of growing memory.
const AHEAD: usize = 4;

/// What the flusher does to make a commit durable.
#[derive(Clone, Debug)]
pub enum Sync {
    /// Sync the write-ahead log at this path (the connection commits with
    /// `synchronous=NORMAL`).
    Wal(PathBuf),
    /// Nothing: SQLite synced inside the commit (not in WAL mode), or durability is off.
    Done,
}

impl Sync {
    /// Makes every commit made so far durable.
    pub fn sync(&self) -> std::io::Result<()> {
        match self {
            // Opened each time: a checkpoint may truncate the log, and a new file would not be
            // the one an old descriptor names. Opening costs microseconds; the sync, a disk
            // round trip.
            Sync::Wal(path) => match std::fs::File::open(path) {
                Ok(file) => file.sync_data(),
                // No log: everything is in the database file, synced by the checkpoint that
                // removed it.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e),
            },
            Sync::Done => Ok(()),
        }
    }
}

/// One committed group, waiting for the disk.
pub struct Committed {
    /// Its events, in seq order.
    pub sealed: Vec<Arc<StoredEvent>>,
    /// The chain head after it.
    pub head: (u64, Hash32),
    /// One receipt per append, with the channel it is owed on.
    pub replies: Vec<(
        oneshot::Sender<Result<IngestReceipt, StoreError>>,
        IngestReceipt,
    )>,
}

/// Who hears of each durable commit besides the appenders.
pub struct Hooks {
    /// The indexer, handed the events (never waited on).
    pub indexer: super::index::Handoff,
    /// The checkpoint signer, told of each commit's head and of every seq on a boundary.
    pub checkpoints: std::sync::mpsc::SyncSender<Position>,
    /// The published (durable) head seq.
    pub head: tokio::sync::watch::Sender<u64>,
    /// The live fan-out.
    pub commits: broadcast::Sender<Arc<StoredEvent>>,
}

/// The writer's end: hands over commits, and learns when the disk has failed.
pub struct Handle {
    tx: std::sync::mpsc::SyncSender<Committed>,
    failed: Arc<AtomicBool>,
}

impl Handle {
    /// Queues `committed` for syncing and publishing; blocks while [`AHEAD`] commits wait.
    /// Returns it if the flusher has stopped.
    pub fn send(&self, committed: Committed) -> Result<(), Committed> {
        self.tx.send(committed).map_err(|e| e.0)
    }

    /// Whether a sync has failed. The kernel may then have dropped the pages it could not
    /// write and will report the next sync clean (so retrying proves nothing): nothing more
    /// is acknowledged until a restart recovers the database from what is really on disk.
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }
}

/// Starts the flusher thread.
pub fn spawn(
    sync: Sync,
    hooks: Hooks,
) -> Result<(Handle, std::thread::JoinHandle<()>), StoreError> {
    let (tx, rx) = std::sync::mpsc::sync_channel(AHEAD);
    let failed = Arc::new(AtomicBool::new(false));
    let flusher = Flusher {
        rx,
        sync,
        hooks,
        failed: failed.clone(),
    };
    let thread = std::thread::Builder::new()
        .name("trailwatch-flush".into())
        .spawn(move || flusher.run())?;
    Ok((Handle { tx, failed }, thread))
}

struct Flusher {
    rx: std::sync::mpsc::Receiver<Committed>,
    sync: Sync,
    hooks: Hooks,
    failed: Arc<AtomicBool>,
}

impl Flusher {
    /// Until the writer hangs up: take every commit waiting, sync once, publish them in order.
    fn run(self) {
        while let Ok(first) = self.rx.recv() {
            let mut group = vec![first];
            group.extend(self.rx.try_iter());
            let started = std::time::Instant::now();
            let synced = match self.failed.load(Ordering::Acquire) {
                true => Err(std::io::Error::other("an earlier sync failed")),
                false => self.sync.sync(),
            };
            crate::metrics::observe(&crate::metrics::get().fsync_seconds, started.elapsed());
            match synced {
                Ok(()) => group.into_iter().for_each(|c| self.publish(c)),
                Err(e) => {
                    self.failed.store(true, Ordering::Release);
                    tracing::error!(
                        error = %e,
                        "syncing the write-ahead log failed; refusing appends until restarted"
                    );
                    for (reply, _) in group.into_iter().flat_map(|c| c.replies) {
                        let _ = reply.send(Err(not_durable(&e)));
                    }
                }
            }
        }
    }

    fn publish(&self, committed: Committed) {
        let Committed {
            sealed,
            head: (seq, hash),
            replies,
        } = committed;
        self.hooks.head.send_replace(seq);
        self.hooks.indexer.committed(&sealed);
        self.report_checkpoints(&sealed, seq, hash);
        for event in sealed {
            // No subscriber is not an error: the events are stored.
            let _ = self.hooks.commits.send(event);
        }
        for (reply, receipt) in replies {
            let _ = reply.send(Ok(receipt));
        }
    }

    /// Tells the checkpoint signer of the seqs on a boundary in `sealed` and of the new head.
    /// A full queue drops a position: the signer is stuck, and the next one supersedes it.
    fn report_checkpoints(&self, sealed: &[Arc<StoredEvent>], head: u64, head_hash: Hash32) {
        for e in sealed.iter().filter(|e| e.seq.0 % EVERY_EVENTS == 0) {
            if let Ok(Ok(hash)) = hex::decode(&e.hash).map(<[u8; 32]>::try_from) {
                let _ = self.hooks.checkpoints.try_send(Position {
                    seq: e.seq.0,
                    hash,
                    urgent: false,
                });
            }
        }
        if head % EVERY_EVENTS != 0 {
            let _ = self.hooks.checkpoints.try_send(Position {
                seq: head,
                hash: head_hash,
                urgent: false,
            });
        }
    }
}

/// The error every append gets after a failed sync, before anything of it is stored.
pub fn refused() -> StoreError {
    StoreError::Io(std::io::Error::other(
        "an earlier sync to disk failed; nothing is accepted until the server restarts, and \
         nothing of this request was stored",
    ))
}

/// The error an append gets when its commit may not be on disk.
pub fn not_durable(e: &std::io::Error) -> StoreError {
    StoreError::Io(std::io::Error::other(format!(
        "the disk failed to sync the write-ahead log ({e}); these events may not be stored, \
         and nothing more is accepted until the server restarts"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Actor, AuditEvent, Category, EventId, Level, Outcome, Seq, Source};

    struct Ends {
        handle: Handle,
        thread: std::thread::JoinHandle<()>,
        head: tokio::sync::watch::Receiver<u64>,
        live: broadcast::Receiver<Arc<StoredEvent>>,
        checkpoints: std::sync::mpsc::Receiver<Position>,
        _handed: super::super::index::Handed,
    }

    fn start(sync: Sync) -> Ends {
        let (indexer, handed) = super::super::index::handoff();
        let (checkpoints, signer) = std::sync::mpsc::sync_channel(64);
        let (head_tx, head) = tokio::sync::watch::channel(0);
        let (commits, live) = broadcast::channel(64);
        let hooks = Hooks {
            indexer,
            checkpoints,
            head: head_tx,
            commits,
        };
        let (handle, thread) = spawn(sync, hooks).expect("flusher starts");
        Ends {
            handle,
            thread,
            head,
            live,
            checkpoints: signer,
            _handed: handed,
        }
    }

    /// A commit of the events `first..=last`, with one append owed a receipt.
    fn committed(
        first: u64,
        last: u64,
    ) -> (
        Committed,
        oneshot::Receiver<Result<IngestReceipt, StoreError>>,
    ) {
        let sealed = (first..=last)
            .map(|seq| {
                Arc::new(StoredEvent {
                    seq: Seq(seq),
                    event_id: EventId(format!("id-{seq}")),
                    received_at: chrono::Utc::now(),
                    hash: hex::encode([seq as u8; 32]),
                    event: AuditEvent::new(
                        chrono::Utc::now(),
                        Level::Info,
                        Category::SystemManagement,
                        "test.flush",
                        Outcome::Success,
                        Actor::system(),
                        Source::http(),
                    ),
                })
            })
            .collect();
        let (tx, rx) = oneshot::channel();
        let receipt = IngestReceipt {
            accepted: (last - first + 1) as usize,
            first_seq: Seq(first),
            last_seq: Seq(last),
        };
        let head = (last, [last as u8; 32]);
        (
            Committed {
                sealed,
                head,
                replies: vec![(tx, receipt)],
            },
            rx,
        )
    }

    #[test]
    fn a_synced_commit_is_published_in_order_then_acknowledged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wal = dir.path().join("events.db-wal");
        std::fs::write(&wal, b"frames").expect("a log to sync");
        let mut ends = start(Sync::Wal(wal));
        let (first, first_ack) = committed(1, 3);
        let (second, second_ack) = committed(4, 4);
        assert!(ends.handle.send(first).is_ok());
        assert!(ends.handle.send(second).is_ok());
        let receipt = first_ack
            .blocking_recv()
            .expect("answered")
            .expect("acknowledged");
        assert_eq!((receipt.first_seq, receipt.last_seq), (Seq(1), Seq(3)));
        let receipt = second_ack
            .blocking_recv()
            .expect("answered")
            .expect("acknowledged");
        assert_eq!(receipt.last_seq, Seq(4));
        // Published before acknowledged: subscribers and the head already have every event.
        assert_eq!(*ends.head.borrow(), 4);
        let seqs: Vec<u64> = (0..4)
            .map(|_| ends.live.try_recv().expect("published").seq.0)
            .collect();
        assert_eq!(seqs, [1, 2, 3, 4]);
        let signed: Vec<u64> = ends.checkpoints.try_iter().map(|p| p.seq).collect();
        assert_eq!(signed.last(), Some(&4), "the head is offered for signing");
        assert!(!ends.handle.failed());
        drop(ends.handle);
        ends.thread
            .join()
            .expect("the flusher stops when the writer hangs up");
    }

    #[test]
    fn a_failed_sync_acknowledges_and_publishes_nothing_from_then_on() {
        // Opening a log under a regular file fails (not a directory): the disk said no.
        let dir = tempfile::tempdir().expect("tempdir");
        let parent = dir.path().join("db");
        std::fs::write(&parent, b"").expect("a file where the directory should be");
        let mut ends = start(Sync::Wal(parent.join("events.db-wal")));
        let (first, first_ack) = committed(1, 2);
        assert!(ends.handle.send(first).is_ok());
        let err = first_ack
            .blocking_recv()
            .expect("answered")
            .expect_err("not acknowledged");
        assert!(err.to_string().contains("may not be stored"), "{err}");
        assert!(ends.handle.failed(), "the writer learns of it");
        // Nothing after a failed sync is trusted, even once a sync would succeed again.
        std::fs::remove_file(&parent).expect("remove");
        std::fs::create_dir(&parent).expect("the directory");
        std::fs::write(parent.join("events.db-wal"), b"frames").expect("a log to sync");
        let (second, second_ack) = committed(3, 3);
        assert!(ends.handle.send(second).is_ok());
        assert!(second_ack.blocking_recv().expect("answered").is_err());
        assert_eq!(*ends.head.borrow(), 0, "the head never moved");
        assert!(ends.live.try_recv().is_err(), "nothing was published");
        drop(ends.handle);
        ends.thread.join().expect("stops");
    }
}
