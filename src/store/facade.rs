//! The store the rest of the server knows: one interface over the two backends, the embedded
//! SQLite store of one data directory ([`SqliteStore`]) and one node of a cluster sharing a
//! PostgreSQL database ([`postgres::EventLog`]). Each method means the same on both; what only
//! one backend has to do (SQLite's search index catching up, PostgreSQL's cluster key signing
//! retention records) stays behind it.

use super::{
    chain, checkpoint, postgres, reads, retention, rollup, CommitStats, Concerning, DistinctField,
    Following, PageRequest, SqliteStore, StoreError, StoreOptions, VerifyReport,
};
use crate::model::{
    AuditEvent, Counters, DashboardSnapshot, EventDetail, EventId, EventOrder, EventPage,
    IngestReceipt, Seq, StoredEvent, ValueCount,
};
use crate::search::Query;
use ed25519_dalek::SigningKey;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, watch};

/// The `meta` key the chain check's shared result is kept under, on a cluster.
const CHAIN_STATUS_KEY: &str = "chain_status";

/// A handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Sqlite(SqliteStore),
    Postgres(Arc<Node>),
}

/// One node of a cluster: its share of the database, the cluster's signing key (checkpoints
/// and retention records), its name and its own data directory (keys, the admin token).
struct Node {
    log: postgres::EventLog,
    key: SigningKey,
    name: String,
    data_dir: PathBuf,
}

impl Store {
    /// Opens (creating if needed) the SQLite store in `data_dir`.
    ///
    /// # Errors
    /// The database cannot be opened, created or recovered.
    pub fn open(data_dir: &Path, options: StoreOptions) -> Result<Store, StoreError> {
        Ok(Store {
            backend: Backend::Sqlite(SqliteStore::open(data_dir, options)?),
        })
    }

    /// Joins the cluster whose database is at `url` as the node `node`, signing with the
    /// cluster's `key`; `data_dir` is this node's own directory.
    ///
    /// # Errors
    /// The database cannot be reached or migrated.
    pub async fn open_postgres(
        url: &str,
        node: &str,
        key: SigningKey,
        data_dir: &Path,
        options: StoreOptions,
    ) -> Result<Store, StoreError> {
        let log = postgres::EventLog::open(url, node, options).await?;
        Ok(Store {
            backend: Backend::Postgres(Arc::new(Node {
                log,
                key,
                name: node.to_string(),
                data_dir: data_dir.to_path_buf(),
            })),
        })
    }

    /// The node's PostgreSQL event log, on a cluster.
    pub fn postgres(&self) -> Option<&postgres::EventLog> {
        match &self.backend {
            Backend::Sqlite(_) => None,
            Backend::Postgres(n) => Some(&n.log),
        }
    }

    /// The database for the small tables (views, users, tokens, settings, alerts) when they
    /// live with the events: on a cluster. SQLite keeps them in files of their own.
    pub fn shared_db(&self) -> Option<super::sql::Db> {
        self.postgres().map(postgres::EventLog::db)
    }

    /// Whether this server should run a job that one node of a cluster runs at a time (the
    /// daily retention run): always on SQLite; on a cluster, whether this node took (or
    /// renewed) the lease `name` for `ttl`. A database that cannot be reached says no.
    pub async fn take_lease(&self, name: &str, ttl: Duration) -> bool {
        let Backend::Postgres(n) = &self.backend else {
            return true;
        };
        match n.log.client().await {
            Ok(client) => postgres::try_acquire(&client, name, &n.name, ttl)
                .await
                .unwrap_or(false),
            Err(_) => false,
        }
    }

    /// On a cluster, the background chain check's last result, as the node that ran it
    /// shared it (see [`Store::share_chain_status`]); `None` on SQLite or before any.
    pub async fn shared_chain_status(&self) -> Option<crate::model::ChainStatus> {
        let Backend::Postgres(n) = &self.backend else {
            return None;
        };
        let client = n.log.client().await.ok()?;
        let row = client
            .query_opt(
                "SELECT value FROM meta WHERE key = $1",
                &[&CHAIN_STATUS_KEY],
            )
            .await
            .ok()??;
        serde_json::from_str(&row.get::<_, String>(0)).ok()
    }

    /// On a cluster, shares the chain check's result with the nodes that do not run it;
    /// nothing on SQLite.
    ///
    /// # Errors
    /// Database errors.
    pub async fn share_chain_status(
        &self,
        status: &crate::model::ChainStatus,
    ) -> Result<(), StoreError> {
        let Backend::Postgres(n) = &self.backend else {
            return Ok(());
        };
        let value =
            serde_json::to_string(status).map_err(|e| StoreError::Io(std::io::Error::other(e)))?;
        n.log
            .client()
            .await?
            .execute(
                "INSERT INTO meta (key, value) VALUES ($1, $2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[&CHAIN_STATUS_KEY, &value],
            )
            .await?;
        Ok(())
    }

    /// Whether this is one node of a cluster.
    pub fn is_clustered(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// Appends `events` as one unit; returns once they are durable.
    ///
    /// # Errors
    /// Nothing was stored: the database is full or unreachable, or failed.
    pub async fn append(&self, events: Vec<AuditEvent>) -> Result<IngestReceipt, StoreError> {
        let sources = source_counts(&events);
        let result = match &self.backend {
            Backend::Sqlite(s) => s.append(events).await,
            Backend::Postgres(n) => n.log.append(events).await,
        };
        count_sources(&sources, result.is_ok());
        result
    }

    /// [`Store::append`] of lines read from a tailed file, with where it was read up to.
    ///
    /// # Errors
    /// As [`Store::append`].
    pub async fn append_tailed(
        &self,
        events: Vec<AuditEvent>,
        cursor: super::cursor::TailCursor,
    ) -> Result<IngestReceipt, StoreError> {
        let sources = source_counts(&events);
        let result = match &self.backend {
            Backend::Sqlite(s) => s.append_tailed(events, cursor).await,
            Backend::Postgres(n) => n.log.append_tailed(events, cursor).await,
        };
        count_sources(&sources, result.is_ok());
        result
    }

    /// The stored cursor of the tail named `source` (this node's, on a cluster).
    ///
    /// # Errors
    /// Database errors.
    pub async fn tail_cursor(
        &self,
        source: &str,
    ) -> Result<Option<super::cursor::TailCursor>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.tail_cursor(source).await,
            Backend::Postgres(n) => n.log.tail_cursor(source).await,
        }
    }

    /// The metadata fields declared personal.
    pub fn personal_metadata(&self) -> &[String] {
        match &self.backend {
            Backend::Sqlite(s) => s.personal_metadata(),
            Backend::Postgres(n) => n.log.personal_metadata(),
        }
    }

    /// Removes what retention says has expired at `now`, under signed records.
    ///
    /// # Errors
    /// Database errors.
    pub async fn prune(
        &self,
        policy: retention::RetentionPolicy,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<retention::Pruned, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.prune(policy, now).await,
            Backend::Postgres(n) => n.log.prune(&n.key, &policy, now).await,
        }
    }

    /// Crypto-shreds one data subject; returns how many events it was the actor of.
    ///
    /// # Errors
    /// Database errors.
    pub async fn erase(&self, subject: &str) -> Result<u64, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.erase(subject).await,
            Backend::Postgres(n) => n.log.erase(subject).await,
        }
    }

    /// Every event of one data subject, oldest first.
    ///
    /// # Errors
    /// Database errors.
    pub async fn subject_events(
        &self,
        subject: &str,
        concerning: Concerning,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.subject_events(subject, concerning).await,
            Backend::Postgres(n) => n.log.subject_events(subject, concerning).await,
        }
    }

    /// Committed events as they are published, in seq order; a receiver that lags catches
    /// up with [`Store::read_from`].
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<StoredEvent>> {
        match &self.backend {
            Backend::Sqlite(s) => s.subscribe(),
            Backend::Postgres(n) => n.log.subscribe(),
        }
    }

    /// Every event committed after the current head, in seq order with no gap.
    ///
    /// # Errors
    /// Database errors reading the head.
    pub async fn follow(&self) -> Result<Following, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.follow().await,
            Backend::Postgres(n) => {
                // Subscribed before the head is read: nothing committed between is missed.
                let mut following = n.log.follow_from(Seq(0));
                following.last = n.log.head().await?;
                Ok(following)
            }
        }
    }

    /// Every event committed after `after`, in seq order with no gap.
    pub fn follow_from(&self, after: Seq) -> Following {
        match &self.backend {
            Backend::Sqlite(s) => s.follow_from(after),
            Backend::Postgres(n) => n.log.follow_from(after),
        }
    }

    /// Up to `limit` events after `after`, in seq order.
    ///
    /// # Errors
    /// Database errors.
    pub async fn read_from(
        &self,
        after: Seq,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.read_from(after, limit).await,
            Backend::Postgres(n) => n.log.read_from(after, limit).await,
        }
    }

    /// The newest committed seq (0 when empty).
    ///
    /// # Errors
    /// Database errors.
    pub async fn head(&self) -> Result<Seq, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.head().await,
            Backend::Postgres(n) => n.log.head().await,
        }
    }

    /// One page of events matching `query`, newest first, with the count of matches.
    ///
    /// # Errors
    /// Database errors.
    pub async fn query(&self, query: Query, req: PageRequest) -> Result<EventPage, StoreError> {
        let started = std::time::Instant::now();
        let page = match &self.backend {
            Backend::Sqlite(s) => s.query(query, req).await,
            Backend::Postgres(n) => n.log.query(&query, req).await,
        };
        crate::metrics::observe(&crate::metrics::get().search_seconds, started.elapsed());
        page
    }

    /// Up to `limit` events after `after` that match `query`, oldest first, and the seq the
    /// scan reached.
    ///
    /// # Errors
    /// Database errors.
    pub async fn matching_from(
        &self,
        query: Arc<Query>,
        after: Seq,
        limit: usize,
    ) -> Result<(Vec<StoredEvent>, Seq), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.matching_from(query, after, limit).await,
            Backend::Postgres(n) => n.log.matching_from(&query, after, limit).await,
        }
    }

    /// Calls `each` with `state` and every event matching `query`, newest first, from one
    /// snapshot, until it returns `false`; gives `state` back. Memory stays flat.
    ///
    /// # Errors
    /// Database errors; on SQLite, [`StoreError::Indexing`] while the index catches up.
    pub async fn for_each_matching<S, F>(
        &self,
        query: Query,
        order: EventOrder,
        state: S,
        each: F,
    ) -> Result<S, StoreError>
    where
        S: Send + 'static,
        F: FnMut(&mut S, &StoredEvent) -> bool + Send + 'static,
    {
        match &self.backend {
            Backend::Sqlite(s) => s.for_each_matching(query, order, state, each).await,
            Backend::Postgres(n) => n.log.for_each_matching(&query, order, state, each).await,
        }
    }

    /// Each level, category or action that occurs, with its count, most frequent first.
    ///
    /// # Errors
    /// Database errors.
    pub async fn distinct(&self, field: DistinctField) -> Result<Vec<ValueCount>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.distinct(field).await,
            Backend::Postgres(n) => n.log.distinct(field).await,
        }
    }

    /// [`Store::distinct`] over the events where `owner` is the actor alone (the `self`
    /// role's view): counted from those events, since the running totals count everyone's.
    ///
    /// # Errors
    /// As [`Store::for_each_matching`].
    pub async fn distinct_owned(
        &self,
        field: DistinctField,
        owner: &str,
    ) -> Result<Vec<ValueCount>, StoreError> {
        let query = Query::default().owned_by(Some(owner));
        let counts = self
            .for_each_matching(
                query,
                EventOrder::ARRIVAL,
                BTreeMap::<String, u64>::new(),
                move |counts, e| {
                    let value = match field {
                        DistinctField::Level => e.event.level.as_str(),
                        DistinctField::Category => e.event.category.as_str(),
                        DistinctField::Action => e.event.action.as_str(),
                    };
                    *counts.entry(value.to_string()).or_default() += 1;
                    true
                },
            )
            .await?;
        Ok(reads::by_count(counts.into_iter()))
    }

    /// The event with this id, if stored.
    ///
    /// # Errors
    /// Database errors.
    pub async fn get(&self, id: EventId) -> Result<Option<StoredEvent>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.get(id).await,
            Backend::Postgres(n) => n.log.get(&id).await,
        }
    }

    /// The event with this id, its seal checked in place, and up to `related` events sharing
    /// its correlation id and its session id.
    ///
    /// # Errors
    /// Database errors.
    pub async fn detail(
        &self,
        id: EventId,
        related: u32,
    ) -> Result<Option<EventDetail>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.detail(id, related).await,
            Backend::Postgres(n) => n.log.detail(&id, related).await,
        }
    }

    /// The newest `limit` events and the running totals, consistent with each other.
    ///
    /// # Errors
    /// Database errors.
    pub async fn snapshot(&self, limit: usize) -> Result<DashboardSnapshot, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.snapshot(limit).await,
            Backend::Postgres(n) => n.log.snapshot(limit).await,
        }
    }

    /// Runs `f` over the rollups from one consistent snapshot, on a blocking thread.
    ///
    /// # Errors
    /// Database errors, and whatever `f` returns.
    pub async fn with_rollups<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&rollup::Reader<'_, '_>) -> Result<T, StoreError> + Send + 'static,
    {
        match &self.backend {
            Backend::Sqlite(s) => s.with_rollups(f).await,
            Backend::Postgres(n) => n.log.with_rollups(f).await,
        }
    }

    /// The database's size on disk (SQLite's files, or the shared PostgreSQL database).
    ///
    /// # Errors
    /// Database errors.
    pub async fn database_bytes(&self) -> Result<u64, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => Ok(s.database_bytes()),
            Backend::Postgres(n) => n.log.database_bytes().await,
        }
    }

    /// Running totals over every stored event.
    ///
    /// # Errors
    /// Database errors.
    pub async fn counters(&self) -> Result<Counters, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.counters().await,
            Backend::Postgres(n) => n.log.counters().await,
        }
    }

    /// Walks the whole chain, against the signed checkpoints.
    ///
    /// # Errors
    /// Database errors; a broken chain is a report, not an error.
    pub async fn verify(&self) -> Result<VerifyReport, StoreError> {
        self.verify_from(Seq(0), chain::GENESIS).await
    }

    /// [`Store::verify`] of the rows after `after`, whose hash is `prev`.
    ///
    /// # Errors
    /// As [`Store::verify`].
    pub async fn verify_from(
        &self,
        after: Seq,
        prev: chain::Hash32,
    ) -> Result<VerifyReport, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.verify_from(after, prev).await,
            Backend::Postgres(n) => n.verify_from(after, prev).await,
        }
    }

    /// [`Store::verify_from`] for the background check of the chain, out of ingest's way.
    ///
    /// # Errors
    /// As [`Store::verify_from`].
    pub async fn verify_from_in_background(
        &self,
        after: Seq,
        prev: chain::Hash32,
    ) -> Result<VerifyReport, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.verify_from_in_background(after, prev).await,
            // PostgreSQL does the reading on its own machine; this node only hashes.
            Backend::Postgres(n) => n.verify_from(after, prev).await,
        }
    }

    /// The newest committed seq this node has published, followed as it moves.
    pub fn head_watch(&self) -> watch::Receiver<u64> {
        match &self.backend {
            Backend::Sqlite(s) => s.head_watch(),
            Backend::Postgres(n) => n.log.published_watch(),
        }
    }

    /// Signs the current head now and waits up to `wait` until it is; returns the newest seq
    /// signed. A clean stop calls it.
    ///
    /// # Errors
    /// Database errors reading the head.
    pub async fn checkpoint_head(&self, wait: Duration) -> Result<u64, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.checkpoint_head(wait).await,
            Backend::Postgres(n) => {
                let client = n.log.client().await?;
                if let Some(signed) = postgres::checkpoints::sign_head(&**client, &n.key).await? {
                    n.log.note_checkpointed(signed.seq);
                }
                Ok(*n.log.checkpointed().borrow())
            }
        }
    }

    /// The newest seq signed into a checkpoint, followed as it moves.
    pub fn checkpointed(&self) -> watch::Receiver<u64> {
        match &self.backend {
            Backend::Sqlite(s) => s.checkpointed(),
            Backend::Postgres(n) => n.log.checkpointed(),
        }
    }

    /// The data directory: the store's (SQLite), or the node's own (keys, admin token).
    pub fn data_dir(&self) -> &Path {
        match &self.backend {
            Backend::Sqlite(s) => s.data_dir(),
            Backend::Postgres(n) => &n.data_dir,
        }
    }

    /// Commit statistics since open (this node's, on a cluster).
    pub fn stats(&self) -> CommitStats {
        match &self.backend {
            Backend::Sqlite(s) => s.stats(),
            Backend::Postgres(n) => n.log.stats(),
        }
    }

    /// Whether appends can be taken now: the writer runs (SQLite), the database answers
    /// (PostgreSQL).
    pub fn is_writable(&self) -> bool {
        match &self.backend {
            Backend::Sqlite(s) => s.is_writable(),
            Backend::Postgres(n) => n.log.is_reachable(),
        }
    }

    /// The newest committed seq as last published (no database read).
    pub fn committed_head(&self) -> Seq {
        match &self.backend {
            Backend::Sqlite(s) => s.committed_head(),
            Backend::Postgres(n) => n.log.published(),
        }
    }

    /// The seq search covers through: SQLite's index trails the head; PostgreSQL writes the
    /// words with the events.
    pub fn indexed_through(&self) -> Seq {
        match &self.backend {
            Backend::Sqlite(s) => s.indexed_through(),
            Backend::Postgres(n) => n.log.published(),
        }
    }
}

impl Node {
    /// The chain after `after`, against the checkpoints in the database, whose signatures
    /// are checked with the cluster's public key first.
    async fn verify_from(
        &self,
        after: Seq,
        prev: chain::Hash32,
    ) -> Result<VerifyReport, StoreError> {
        let client = self.log.client().await?;
        let checkpoints = postgres::stored_checkpoints(&**client).await?;
        drop(client);
        let public = self.key.verifying_key();
        if let Err(detail) = checkpoint::all_signed_by(&checkpoints, &public) {
            return Ok(VerifyReport::untrusted_checkpoints(detail));
        }
        self.log
            .verify_from(after, prev, &checkpoints, Some(&public))
            .await
    }
}

/// How many of `events` each source brought, counted before they go to the writer.
fn source_counts(events: &[AuditEvent]) -> Vec<(String, u64)> {
    let mut counts: Vec<(String, u64)> = Vec::new();
    for e in events {
        match counts.iter_mut().find(|(s, _)| *s == e.source.0) {
            Some((_, n)) => *n += 1,
            None => counts.push((e.source.0.clone(), 1)),
        }
    }
    counts
}

fn count_sources(counts: &[(String, u64)], stored: bool) {
    for (source, n) in counts {
        crate::metrics::get().count_events(source, stored, *n);
    }
}
