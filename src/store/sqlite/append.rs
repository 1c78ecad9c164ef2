//! The single writer: a thread that drains every waiting append into one transaction (group
//! commit), seals each event into the chain and commits, then hands the commit to the
//! flusher (see `flush`), which syncs it, publishes it and acknowledges it. A large commit is
//! sealed on a second thread while the writer inserts the rows already sealed (see
//! [`seal_alongside`]).
//! Rollups are updated in the same transaction; indexing for search happens after, on the
//! indexer's thread (see `index`).

use super::flush::{self, Committed};
use crate::model::{IngestReceipt, Seq, StoredEvent};
use crate::store::chain::{Hash32, GENESIS};
use crate::store::retention::Pruned;
use crate::store::risk::Scorer;
use crate::store::rollup;
use crate::store::seal::{
    now_millis, seal_alongside, Prepared, Sealed, Sealer, Tally, PIPELINE_EVENTS,
};
use crate::store::{CommitStats, StoreError, StoreOptions};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
// Seeded per process, so keys chosen by senders cannot be made to collide.
use foldhash::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

/// What the writer thread is asked to do, in arrival order.
pub enum Work {
    Append(Job),
    /// Remove what retention says has expired.
    Prune {
        policy: crate::store::retention::RetentionPolicy,
        now_ms: i64,
        reply: oneshot::Sender<Result<Pruned, StoreError>>,
    },
    /// Crypto-shred one data subject.
    Erase {
        subject: String,
        reply: oneshot::Sender<Result<Erased, StoreError>>,
    },
}

/// What erasing a subject changed.
#[derive(Debug, Default)]
pub struct Erased {
    /// The events whose personal fields were blanked.
    pub seqs: Vec<u64>,
    /// The head when it was done: the search index must reach it before it is cleaned.
    pub head: u64,
}

/// The user id erased events keep: the subject is gone, the event is not.
pub const ERASED_SUBJECT: &str = "[erased]";

/// One append request: its events are committed together or not at all.
pub struct Job {
    pub events: Vec<Prepared>,
    /// For lines read from a tailed file: where the file was read up to, committed with them.
    pub cursor: Option<crate::store::cursor::TailCursor>,
    pub reply: oneshot::Sender<Result<IngestReceipt, StoreError>>,
}

const INSERT: &str = "INSERT INTO events (
    seq, event_id, ts, received_at, level, category, action, outcome, source, user_id, username,
    description, entity_type, entity_id, entity_name, req_method, req_path, req_ip,
    req_user_agent, req_status, req_response_time, country, city, metadata, changes, system,
    risk, correlation_id, session_id, pii_digest, prev_hash, hash, risk_reasons, personal,
    submitted_by
) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19,
          ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31, ?32, ?33, ?34, ?35)";

struct Writer {
    conn: Connection,
    jobs: mpsc::Receiver<Work>,
    /// Work taken while gathering a batch that must wait for the batch's commit.
    deferred: std::collections::VecDeque<Work>,
    stats: Arc<Mutex<CommitStats>>,
    /// Makes each commit durable, then publishes and acknowledges it.
    flush: flush::Handle,
    /// How a maintenance run makes its own commits durable before it answers.
    sync: flush::Sync,
    /// Signs retention records.
    key: ed25519_dalek::SigningKey,
    max_batch_events: usize,
    head_seq: u64,
    head_hash: Hash32,
    salts: HashMap<String, [u8; 32]>,
    /// Assigns risk scores; its state follows the commits.
    risk: Scorer,
    /// The random part of event ids: seeded once, stepped per event.
    id_salt: u64,
}

/// Recovers the chain head from `conn` and starts the writer thread and, behind it, the
/// flusher (see `flush`), which makes commits durable as `sync` says and tells `hooks` of them.
/// Returns both threads, the writer first.
pub fn spawn_writer(
    conn: Connection,
    jobs: mpsc::Receiver<Work>,
    stats: Arc<Mutex<CommitStats>>,
    sync: flush::Sync,
    hooks: flush::Hooks,
    key: ed25519_dalek::SigningKey,
    options: StoreOptions,
) -> Result<[std::thread::JoinHandle<()>; 2], StoreError> {
    let head: Option<(u64, Vec<u8>)> = conn
        .query_row(
            "SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let (head_seq, head_hash) = match head {
        None => (0, GENESIS),
        Some((seq, hash)) => {
            let hash = hash.try_into().map_err(|_| StoreError::Corrupt {
                seq,
                detail: "stored hash is not 32 bytes".into(),
            })?;
            (seq, hash)
        }
    };
    tracing::info!(head_seq, "store opened");
    hooks.head.send_replace(head_seq);
    if head_seq > 0 {
        // A head left unsigned by a stop is signed within a minute of the start.
        let _ = hooks
            .checkpoints
            .try_send(crate::store::checkpoint::Position {
                seq: head_seq,
                hash: head_hash,
                urgent: false,
            });
    }
    let (flush, flushing) = flush::spawn(sync.clone(), hooks)?;
    let mut writer = Writer {
        conn,
        jobs,
        deferred: std::collections::VecDeque::new(),
        stats,
        flush,
        sync,
        key,
        max_batch_events: options.max_batch_events.max(1),
        head_seq,
        head_hash,
        salts: HashMap::default(),
        risk: Scorer::new(options.risk.clone()),
        id_salt: {
            let mut seed = [0u8; 8];
            getrandom::fill(&mut seed)
                .map_err(|e| StoreError::Io(std::io::Error::other(e.to_string())))?;
            u64::from_le_bytes(seed) | 1
        },
    };
    // The risk profiles are brought up to the head before the first append, so the table
    // agrees with the events whenever the store is open.
    if let Err(e) = writer.settle() {
        // A full disk must not keep the store from opening: the first append retries.
        tracing::warn!(error = %e, "could not bring the risk profiles up to date");
    }
    let writing = std::thread::Builder::new()
        .name("trailwatch-writer".into())
        .spawn(move || writer.run())?;
    Ok([writing, flushing])
}

impl Writer {
    fn run(mut self) {
        loop {
            let work = match self.deferred.pop_front() {
                Some(w) => w,
                None => match self.jobs.blocking_recv() {
                    Some(w) => w,
                    None => break,
                },
            };
            crate::metrics::get()
                .writer_queue
                .set((self.jobs.len() + self.deferred.len()) as i64);
            match work {
                Work::Append(first) => self.gather_and_commit(first),
                Work::Prune {
                    policy,
                    now_ms,
                    reply,
                } => {
                    // Answered once durable, as appends are: its records are signed.
                    let pruned = self
                        .prune(&policy, now_ms)
                        .and_then(|p| self.sync.sync().map(|()| p).map_err(StoreError::Io));
                    let _ = reply.send(pruned);
                }
                Work::Erase { subject, reply } => {
                    let _ = reply.send(self.erase(&subject));
                }
            }
        }
        if let Err(e) = self.settle() {
            // Nothing is lost: the next start counts the unflushed events again.
            tracing::warn!(error = %e, "could not flush the risk profiles on stopping");
        }
        tracing::info!("writer stopped");
    }

    /// Commits `first` with every append already waiting behind it (group commit); other
    /// work found waiting is kept for after.
    fn gather_and_commit(&mut self, first: Job) {
        let mut events = first.events.len();
        let mut batch = vec![first];
        while events < self.max_batch_events && self.deferred.is_empty() {
            match self.jobs.try_recv() {
                Ok(Work::Append(job)) => {
                    events += job.events.len();
                    batch.push(job);
                }
                Ok(other) => self.deferred.push_back(other),
                Err(_) => break,
            }
        }
        self.commit_batch(batch);
    }

    /// Commits the appends waiting now: between the transactions of a long maintenance run,
    /// so ingest waits for one of them, not for the run.
    fn serve_waiting_appends(&mut self) {
        while let Ok(work) = self.jobs.try_recv() {
            match work {
                Work::Append(job) => self.gather_and_commit(job),
                other => self.deferred.push_back(other),
            }
        }
    }

    /// Removes every expired event, a transaction of at most [`crate::store::retention::CHUNK`] at
    /// a time, each signed; then gives freed pages back.
    fn prune(
        &mut self,
        policy: &crate::store::retention::RetentionPolicy,
        now_ms: i64,
    ) -> Result<Pruned, StoreError> {
        let mut out = Pruned::default();
        loop {
            let tx = self.conn.transaction().map_err(StoreError::from_sqlite)?;
            let chunk =
                super::retention::prune_chunk(&tx, &self.key, policy, now_ms, self.head_seq)?;
            tx.commit().map_err(StoreError::from_sqlite)?;
            if chunk.events == 0 {
                break;
            }
            out.events += chunk.events;
            out.ranges += chunk.ranges;
            out.records += 1;
            out.seqs.extend(chunk.seqs);
            if !chunk.more {
                break;
            }
            self.serve_waiting_appends();
        }
        // Even a run that removed nothing may have freed a page (its bookkeeping moves
        // rows between pages); a free list left for later would never be given back.
        out.freed_bytes = super::retention::release_free_pages(&self.conn)?;
        if out.events > 0 {
            tracing::info!(
                events = out.events,
                ranges = out.ranges,
                freed_bytes = out.freed_bytes,
                "retention removed expired events"
            );
        }
        Ok(out)
    }

    /// Crypto-shreds `subject`: deletes its salt, blanks its personal fields (declared
    /// personal metadata among them) in every event
    /// (which keep their digest, so the chain still verifies), and drops what was derived
    /// from them: its risk profile, its recent failures, its per-user rollups (merged into
    /// the erased user's). Then the WAL, which still holds the old pages, is emptied.
    fn erase(&mut self, subject: &str) -> Result<Erased, StoreError> {
        let tx = self.conn.transaction().map_err(StoreError::from_sqlite)?;
        let (seqs, ips) = {
            let mut stmt = tx.prepare(
                "SELECT seq, req_ip FROM events WHERE user_id = ?1 AND erased = 0 ORDER BY seq",
            )?;
            let rows = stmt.query_map([subject], |r| {
                Ok((r.get::<_, u64>(0)?, r.get::<_, Option<String>>(1)?))
            })?;
            let mut seqs = Vec::new();
            let mut ips = std::collections::BTreeSet::new();
            for row in rows {
                let (seq, ip) = row?;
                seqs.push(seq);
                ips.extend(ip.map(|ip| ip.trim().to_string()));
            }
            (seqs, ips)
        };
        tx.execute(
            "UPDATE events SET user_id = ?2, username = NULL, req_ip = NULL,
                 req_user_agent = NULL, country = NULL, city = NULL, personal = NULL, erased = 1
             WHERE user_id = ?1 AND erased = 0",
            params![subject, ERASED_SUBJECT],
        )?;
        tx.execute("DELETE FROM subjects WHERE subject = ?1", [subject])?;
        tx.execute("DELETE FROM risk_profile WHERE user_id = ?1", [subject])?;
        tx.execute(
            "INSERT INTO rollup_user_hour (hour, user_id, n, denied, failed)
                 SELECT hour, ?2, n, denied, failed FROM rollup_user_hour WHERE user_id = ?1
             ON CONFLICT (hour, user_id) DO UPDATE SET n = n + excluded.n,
                 denied = denied + excluded.denied, failed = failed + excluded.failed",
            params![subject, ERASED_SUBJECT],
        )?;
        tx.execute("DELETE FROM rollup_user_hour WHERE user_id = ?1", [subject])?;
        tx.commit().map_err(StoreError::from_sqlite)?;
        self.salts.remove(subject);
        self.risk.forget(subject, &ips);
        super::truncate_wal(&self.conn)?;
        tracing::info!(events = seqs.len(), "erased a data subject");
        Ok(Erased {
            seqs,
            head: self.head_seq,
        })
    }

    /// Warms the risk scorer from what is stored and writes every profile it holds changed,
    /// in a transaction of its own.
    fn settle(&mut self) -> Result<(), StoreError> {
        let tx = self.conn.transaction().map_err(StoreError::from_sqlite)?;
        let done = self
            .risk
            .begin(&tx, self.head_seq)
            .and_then(|()| match self.risk.pending() {
                true => self.risk.flush(&tx, self.head_seq),
                false => Ok(()),
            });
        match done {
            Ok(()) => tx.commit().map_err(StoreError::from_sqlite),
            Err(e) => {
                self.risk.abort();
                Err(StoreError::from_sqlite(e))
            }
        }
    }

    fn commit_batch(&mut self, batch: Vec<Job>) {
        let sizes: Vec<usize> = batch.iter().map(|j| j.events.len()).collect();
        let mut cursors = Vec::new();
        let (events, replies): (Vec<Vec<Prepared>>, Vec<_>) = batch
            .into_iter()
            .map(|j| {
                cursors.extend(j.cursor);
                (j.events, j.reply)
            })
            .unzip();
        if self.flush.failed() {
            for reply in replies {
                let _ = reply.send(Err(flush::refused()));
            }
            return;
        }
        let started = std::time::Instant::now();
        let committed = self.commit(events, &cursors);
        let m = crate::metrics::get();
        crate::metrics::observe(&m.commit_seconds, started.elapsed());
        m.commit_events.observe(sizes.iter().sum::<usize>() as f64);
        match committed {
            Ok(sealed) => {
                let mut receipts = Vec::with_capacity(sizes.len());
                let mut at = 0;
                for &n in &sizes {
                    let first = Seq(sealed.get(at).map_or(0, |e| e.seq.0));
                    at += n;
                    receipts.push(IngestReceipt {
                        accepted: n,
                        first_seq: first,
                        last_seq: Seq(first.0 + (n as u64).saturating_sub(1)),
                    });
                }
                if let Ok(mut stats) = self.stats.lock() {
                    stats.commits += 1;
                    stats.appends += sizes.len() as u64;
                    stats.events += sizes.iter().sum::<usize>() as u64;
                    stats.full = false;
                }
                let committed = Committed {
                    sealed,
                    head: (self.head_seq, self.head_hash),
                    replies: replies.into_iter().zip(receipts).collect(),
                };
                if let Err(lost) = self.flush.send(committed) {
                    // Only when the store is being torn down mid-commit.
                    tracing::error!("the flusher has stopped; a commit is unacknowledged");
                    for (reply, _) in lost.replies {
                        let _ = reply.send(Err(StoreError::Closed));
                    }
                }
            }
            Err(e) => {
                self.risk.abort();
                tracing::error!(error = %e, jobs = sizes.len(), "group commit failed; nothing stored");
                if let Ok(mut stats) = self.stats.lock() {
                    stats.full = matches!(e, StoreError::Full);
                }
                for reply in replies {
                    let err = match &e {
                        StoreError::Full => StoreError::Full,
                        other => StoreError::Io(std::io::Error::other(other.to_string())),
                    };
                    let _ = reply.send(Err(err));
                }
            }
        }
    }

    /// Seals and inserts every event of every job, in order, in one transaction. On error
    /// nothing is committed and the in-memory head and salt cache are left as they were.
    fn commit(
        &mut self,
        jobs: Vec<Vec<Prepared>>,
        cursors: &[crate::store::cursor::TailCursor],
    ) -> Result<Vec<Arc<StoredEvent>>, StoreError> {
        let received_at = now_millis();
        let received_ms = received_at.timestamp_millis();
        let mut new_salts: HashMap<String, [u8; 32]> = HashMap::default();
        let total: usize = jobs.iter().map(Vec::len).sum();
        let mut sealed = Vec::with_capacity(total);

        let tx = self.conn.transaction().map_err(StoreError::from_sqlite)?;
        let (seq, prev) = {
            self.risk
                .begin(&tx, self.head_seq)
                .map_err(StoreError::from_sqlite)?;
            // Everything sealing reads from the database is read first, so that sealing
            // needs none and can run beside the inserts.
            for prepared in jobs.iter().flatten() {
                let user = &prepared.event.user.id;
                self.risk
                    .preload(&tx, user)
                    .map_err(StoreError::from_sqlite)?;
                salt_for(&tx, &self.salts, &mut new_salts, user)?;
            }
            let mut sealer = Sealer {
                risk: &mut self.risk,
                salts: &self.salts,
                new_salts: &new_salts,
                id_salt: &mut self.id_salt,
                received_at,
                received_ms,
                seq: self.head_seq,
                prev: self.head_hash,
                tally: Tally::default(),
            };
            let mut insert = tx.prepare_cached(INSERT).map_err(StoreError::from_sqlite)?;
            let mut store = |row: Sealed| -> Result<(), StoreError> {
                insert_row(&mut insert, &row, received_ms).map_err(StoreError::from_sqlite)?;
                sealed.push(row.stored);
                Ok(())
            };
            let events = jobs.into_iter().flatten();
            if total >= PIPELINE_EVENTS {
                seal_alongside(&mut sealer, events, &mut store)?;
            } else {
                for prepared in events {
                    store(sealer.seal(prepared)?)?;
                }
            }
            let Sealer {
                seq, prev, tally, ..
            } = sealer;
            // Every event given is stored, or the commit fails: receipts count on it.
            if sealed.len() != total {
                return Err(StoreError::Io(std::io::Error::other(format!(
                    "sealed {} of {total} events",
                    sealed.len()
                ))));
            }
            let mut upsert = tx
                .prepare_cached(
                    "INSERT INTO counters (name, value) VALUES (?1, ?2)
                     ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
                )
                .map_err(StoreError::from_sqlite)?;
            let keys = tally
                .counts
                .iter()
                .map(|((kind, name), n)| (format!("{kind}{name}"), n))
                .chain(
                    tally
                        .actions
                        .iter()
                        .map(|(a, n)| (format!("action:{a}"), n)),
                );
            for (key, n) in keys {
                upsert
                    .execute(params![key, n])
                    .map_err(StoreError::from_sqlite)?;
            }
            self.risk.write(&tx, seq).map_err(StoreError::from_sqlite)?;
            let mut rollups = rollup::Increments::default();
            for stored in &sealed {
                rollups.add(&stored.event);
            }
            super::rollup::write(&rollups, &tx).map_err(|e| match e {
                StoreError::Sqlite(e) => StoreError::from_sqlite(e),
                other => other,
            })?;
            // In seq order, so of two cursors of one file the later one wins.
            for cursor in cursors {
                super::cursor::save(&tx, cursor, received_ms).map_err(StoreError::from_sqlite)?;
            }
            (seq, prev)
        };
        tx.commit().map_err(StoreError::from_sqlite)?;
        self.head_seq = seq;
        self.head_hash = prev;
        self.salts.extend(new_salts);
        Ok(sealed)
    }
}

/// The subject's salt: cached, stored, or newly made (and stored in this transaction).
fn salt_for(
    tx: &Transaction<'_>,
    cache: &HashMap<String, [u8; 32]>,
    new_salts: &mut HashMap<String, [u8; 32]>,
    subject: &str,
) -> Result<[u8; 32], StoreError> {
    if let Some(salt) = cache.get(subject).or_else(|| new_salts.get(subject)) {
        return Ok(*salt);
    }
    let stored: Option<Vec<u8>> = tx
        .prepare_cached("SELECT salt FROM subjects WHERE subject = ?1")?
        .query_row([subject], |r| r.get(0))
        .optional()?;
    let salt = match stored.and_then(|s| <[u8; 32]>::try_from(s).ok()) {
        Some(salt) => salt,
        None => {
            let mut salt = [0u8; 32];
            getrandom::fill(&mut salt)
                .map_err(|e| StoreError::Io(std::io::Error::other(e.to_string())))?;
            tx.prepare_cached("INSERT OR REPLACE INTO subjects (subject, salt) VALUES (?1, ?2)")?
                .execute(params![subject, salt.as_slice()])
                .map_err(StoreError::from_sqlite)?;
            salt
        }
    };
    new_salts.insert(subject.to_string(), salt);
    Ok(salt)
}

/// Inserts a sealed event's row through a prepared [`INSERT`].
fn insert_row(
    insert: &mut rusqlite::CachedStatement<'_>,
    row: &Sealed,
    received_ms: i64,
) -> rusqlite::Result<usize> {
    let Sealed {
        stored,
        json,
        pii,
        prev,
        hash,
    } = row;
    let e = &stored.event;
    let entity = e.entity.as_ref();
    let req = e.request.as_ref();
    let loc = e.location.as_ref();
    insert.execute(params![
        stored.seq.0,
        stored.event_id.0,
        e.timestamp.timestamp_millis(),
        received_ms,
        e.level.as_str(),
        e.category.as_str(),
        e.action,
        e.outcome.as_str(),
        e.source.0,
        e.user.id,
        e.user.username,
        e.description,
        entity.and_then(|x| x.kind.as_deref()),
        entity.and_then(|x| x.id.as_deref()),
        entity.and_then(|x| x.name.as_deref()),
        req.and_then(|r| r.method.as_deref()),
        req.and_then(|r| r.path.as_deref()),
        req.and_then(|r| r.ip.as_deref()),
        req.and_then(|r| r.user_agent.as_deref()),
        req.and_then(|r| r.status_code),
        req.and_then(|r| r.response_time).map(|v| v as i64),
        loc.and_then(|l| l.country.as_deref()),
        loc.and_then(|l| l.city.as_deref()),
        json.metadata,
        json.changes,
        json.system,
        e.risk_score,
        e.correlation_id,
        e.session_id,
        pii.as_slice(),
        prev.as_slice(),
        hash.as_slice(),
        json.risk_reasons,
        json.personal,
        e.submitted_by,
    ])
}
