//! Sealing, the same for every backend: an event gets its risk score, its seq and id, the
//! digest of its personal fields and its link in the hash chain, in seq order, from state
//! read before the batch began (the salts, the risk profiles), so it reads no database and
//! may run on a thread of its own beside the inserts.

use super::chain::{self, Hash32};
use super::risk::Scorer;
use super::StoreError;
use crate::model::{AuditEvent, EventId, Seq, StoredEvent};
use chrono::{DateTime, Utc};
// Seeded per process, so keys chosen by senders cannot be made to collide.
use foldhash::HashMap;
use std::sync::Arc;

/// An event with the JSON columns that do not depend on the writer already serialised, by
/// the caller's thread: a seventh of the writer's time went to serialising them.
pub struct Prepared {
    pub event: AuditEvent,
    pub json: chain::JsonFields,
}

impl Prepared {
    /// `personal` names the metadata fields declared personal: they are stored apart and
    /// sealed through the PII digest, so erasing the subject removes them.
    pub fn new(mut event: AuditEvent, personal: &[String]) -> Prepared {
        // Every event stored from now on names its submitter; one no credential submitted
        // was written by Trailwatch itself.
        event
            .submitted_by
            .get_or_insert_with(|| crate::model::SERVER_SUBMITTER.to_string());
        // Risk reasons are the writer's to assign; senders cannot send them.
        let json = chain::JsonFields::split(&event, personal);
        Prepared { event, json }
    }
}

/// Commits of at least this many events are sealed on a second thread while the writer
/// inserts the rows already sealed: sealing (risk scoring, the digests, the canonical
/// encoding) was a third of the writer's time. Smaller commits are not worth a thread.
pub const PIPELINE_EVENTS: usize = 512;

/// Sealed events handed from the sealing thread to the writer at a time: enough that the
/// two threads rarely wait on each other, few enough that the writer starts early.
const SEAL_CHUNK: usize = 128;

/// An event sealed into the chain, ready for its row.
pub struct Sealed {
    pub stored: Arc<StoredEvent>,
    pub json: chain::JsonFields,
    pub pii: Hash32,
    pub prev: Hash32,
    pub hash: Hash32,
}

/// What a batch adds to the running counters.
#[derive(Default)]
pub struct Tally {
    /// Keyed by static names so the hot loop allocates nothing; formatted once per batch.
    pub counts: HashMap<(&'static str, &'static str), i64>,
    pub actions: HashMap<String, i64>,
}

/// The chain's state through one batch. Every salt and risk profile the batch needs is in
/// memory before it starts, so sealing reads no database and may run on another thread.
pub struct Sealer<'a> {
    pub risk: &'a mut Scorer,
    pub salts: &'a HashMap<String, [u8; 32]>,
    pub new_salts: &'a HashMap<String, [u8; 32]>,
    pub id_salt: &'a mut u64,
    pub received_at: DateTime<Utc>,
    pub received_ms: i64,
    /// The last seq and hash sealed.
    pub seq: u64,
    pub prev: Hash32,
    pub tally: Tally,
}

impl Sealer<'_> {
    /// Scores the next event, gives it its seq and id, and links it to the chain.
    pub fn seal(&mut self, prepared: Prepared) -> Result<Sealed, StoreError> {
        let Prepared {
            mut event,
            mut json,
        } = prepared;
        self.risk
            .observe_loaded(&mut event, self.received_ms)
            .map_err(|e| StoreError::Io(std::io::Error::other(e)))?;
        let user = &event.user.id;
        let salt = self
            .salts
            .get(user)
            .or_else(|| self.new_salts.get(user))
            .ok_or_else(|| {
                StoreError::Io(std::io::Error::other(format!(
                    "the salt of {user:?} was not read before sealing"
                )))
            })?;
        self.seq += 1;
        let pii = chain::pii_digest(salt, &event, json.personal.as_deref());
        let event_id = event_id(self.received_ms, self.seq, self.id_salt);
        json.risk_reasons = chain::reasons_json(&event);
        let canon = chain::canonical_with(&event, &json, &event_id, self.received_ms, &pii);
        let hash = chain::chain_hash(&self.prev, &canon);
        let counts = &mut self.tally.counts;
        for key in [
            ("total", ""),
            ("outcome:", event.outcome.as_str()),
            ("level:", event.level.as_str()),
            ("category:", event.category.as_str()),
        ] {
            *counts.entry(key).or_default() += 1;
        }
        match self.tally.actions.get_mut(&event.action) {
            Some(n) => *n += 1,
            None => {
                self.tally.actions.insert(event.action.clone(), 1);
            }
        }
        let prev = std::mem::replace(&mut self.prev, hash);
        Ok(Sealed {
            stored: Arc::new(StoredEvent {
                seq: Seq(self.seq),
                event_id: EventId(event_id),
                received_at: self.received_at,
                hash: hex::encode(hash),
                event,
            }),
            json,
            pii,
            prev,
            hash,
        })
    }
}

/// Seals `events` in order on a second thread while `store` takes each sealed one, in the
/// same order, on this one (which holds the transaction). The first error from either side
/// stops both.
pub fn seal_alongside(
    sealer: &mut Sealer<'_>,
    events: impl Iterator<Item = Prepared> + Send,
    store: &mut impl FnMut(Sealed) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    std::thread::scope(|scope| {
        let (chunks, sealed) = std::sync::mpsc::sync_channel(8);
        let sealing = std::thread::Builder::new()
            .name("trailwatch-sealer".into())
            .spawn_scoped(scope, move || {
                let mut chunk = Vec::with_capacity(SEAL_CHUNK);
                for prepared in events {
                    match sealer.seal(prepared) {
                        Ok(row) => chunk.push(row),
                        Err(e) => {
                            let _ = chunks.send(Err(e));
                            return;
                        }
                    }
                    if chunk.len() == SEAL_CHUNK {
                        let full = std::mem::replace(&mut chunk, Vec::with_capacity(SEAL_CHUNK));
                        if chunks.send(Ok(full)).is_err() {
                            // The writer stopped on an error of its own.
                            return;
                        }
                    }
                }
                if !chunk.is_empty() {
                    let _ = chunks.send(Ok(chunk));
                }
            })?;
        let stored = sealed
            .iter()
            .try_for_each(|chunk| chunk?.into_iter().try_for_each(&mut *store));
        // Hung up first, so a sealer blocked on a full channel returns.
        drop(sealed);
        let joined = sealing.join();
        stored?;
        joined.map_err(|_| StoreError::Io(std::io::Error::other("the sealing thread panicked")))
    })
}

/// A UUIDv7 for the event: its time is `ms`, then 6 bytes of `seq`, which make ids unique and
/// increasing within a store, then 4 pseudo-random bytes. A system call for randomness per
/// event (`Uuid::now_v7`) cost the writer 3% of its time.
pub fn event_id(ms: i64, seq: u64, state: &mut u64) -> String {
    // xorshift64: unpredictability is not what an event id needs; uniqueness comes from seq.
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    let mut tail = [0u8; 10];
    tail[..6].copy_from_slice(&seq.to_be_bytes()[2..]);
    tail[6..].copy_from_slice(&state.to_le_bytes()[..4]);
    uuid::Builder::from_unix_timestamp_millis(ms.max(0) as u64, &tail)
        .into_uuid()
        .to_string()
}

/// The seqs an id made by [`event_id`] may belong to, most likely first. The id keeps 42 of
/// the seq's low 48 bits: the UUID's version and variant overwrite bits 44 to 47 and 30 to 31.
/// So there are four candidates, one per value of bits 30 and 31, for a store of fewer than
/// 2^44 events. Returns none for an id that is not a UUIDv7.
pub fn seq_candidates(id: &str) -> Vec<u64> {
    let Ok(uuid) = uuid::Uuid::try_parse(id) else {
        return Vec::new();
    };
    if uuid.get_version_num() != 7 {
        return Vec::new();
    }
    let b = uuid.as_bytes();
    let low = u64::from(b[6] & 0x0F) << 40
        | u64::from(b[7]) << 32
        | u64::from(b[8] & 0x3F) << 24
        | u64::from(b[9]) << 16
        | u64::from(b[10]) << 8
        | u64::from(b[11]);
    (0..4u64).map(|high| low | high << 30).collect()
}

/// The millisecond-precision current time (the chain seals milliseconds).
pub fn now_millis() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::{event_id, seq_candidates};

    #[test]
    fn an_event_id_leads_back_to_its_seq() {
        let mut state = 0x1234_5678_9abc_def1;
        for seq in [
            1,
            255,
            (1 << 30) - 1,
            1 << 30,
            (3 << 30) + 7,
            (1 << 40) + 12_345,
            (1 << 44) - 1,
        ] {
            let id = event_id(1_770_000_000_000, seq, &mut state);
            let candidates = seq_candidates(&id);
            assert_eq!(candidates.len(), 4, "{id}");
            assert!(
                candidates.contains(&seq),
                "seq {seq} from {id}: {candidates:?}"
            );
        }
        // Below 2^30, where stores live for years, the first candidate is the seq.
        let id = event_id(1_770_000_000_000, 987_654_321, &mut state);
        assert_eq!(seq_candidates(&id)[0], 987_654_321);
        assert!(seq_candidates("not an id").is_empty());
        // A version 4 id carries no seq.
        assert!(seq_candidates("6f1b0a52-3c1e-4c59-9a38-2f1d7f3c9e10").is_empty());
    }

    #[test]
    fn event_ids_are_v7_unique_and_increasing_within_a_millisecond() {
        let mut state = 0x1234_5678_9abc_def1;
        let ids: Vec<String> = (1..=1000)
            .map(|seq| event_id(1_770_000_000_000, seq, &mut state))
            .collect();
        for pair in ids.windows(2) {
            assert!(pair[0] < pair[1], "{} then {}", pair[0], pair[1]);
        }
        let parsed = uuid::Uuid::parse_str(&ids[0]).unwrap();
        assert_eq!(parsed.get_version_num(), 7);
        let (secs, _) = parsed.get_timestamp().unwrap().to_unix();
        assert_eq!(secs, 1_770_000_000);
    }
}
