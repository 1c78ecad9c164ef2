//! Retention: which events have outlived their policy, how the writer removes them without
//! breaking the chain, and how verification tells a sanctioned removal from a deletion.
//!
//! Expired events are rarely a prefix of the chain (critical and security events are kept far
//! longer than the rest), so removing them leaves runs of missing seqs anywhere. For each run
//! the writer keeps a *pruned range*: its first and last seq, the hash before it (the
//! `prev_hash` of its first row) and the hash of its last row. Each pruning transaction signs
//! its ranges (SHA-256 over them, Ed25519 with the checkpoint key) into a *prune record*.
//! Verification steps over a gap only when a range covers it exactly, links to the rows on
//! both sides, and belongs to a record whose signature and digest hold; anything else is a
//! deletion. A range that starts at seq 1 is the signed anchor the chain then starts from.
//! The newest event is never removed, so the head, and with it the next seq, survive.
//!
//! Here: the policy, the ranges and their signed records, and the ledger's checks, which both
//! backends share; each prunes in its own transaction (`sqlite::retention`,
//! `postgres::retention`).

use super::chain::Hash32;
use crate::model::{Category, Level};
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};

/// Seven years, in days: how long seed 002 kept critical events.
const SEVEN_YEARS: u32 = 7 * 365 + 2;

/// The most events removed in one transaction: appends wait between transactions, not
/// behind the whole run.
pub const CHUNK: usize = 20_000;

/// `[retention]`: how long events are kept, by level and category. An event is kept for the
/// longest period that applies to it: its level's, its category's, or the default.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionPolicy {
    /// Whether the daily job runs (`DELETE /api/v1/events/cleanup` works either way).
    pub enabled: bool,
    /// Days an event is kept when no level or category rule applies.
    pub days: u32,
    /// Days by level name, for example `critical = 2557`.
    pub levels: BTreeMap<String, u32>,
    /// Days by category name, for example `security = 2557`.
    pub categories: BTreeMap<String, u32>,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        RetentionPolicy {
            enabled: true,
            days: 365,
            levels: BTreeMap::from([("critical".to_string(), SEVEN_YEARS)]),
            categories: BTreeMap::from([("security".to_string(), SEVEN_YEARS)]),
        }
    }
}

impl RetentionPolicy {
    /// Checks names and periods; the message names the offending key.
    ///
    /// # Errors
    /// An unknown level or category, or a period of 0 days.
    pub fn validate(&self) -> Result<(), String> {
        if self.days == 0 {
            return Err("retention.days must be at least 1".into());
        }
        for (name, days) in &self.levels {
            if Level::parse(name).is_none() {
                return Err(format!("retention.levels.{name}: unknown level"));
            }
            if *days == 0 {
                return Err(format!("retention.levels.{name} must be at least 1 day"));
            }
        }
        for (name, days) in &self.categories {
            if Category::parse(name).is_none() {
                return Err(format!("retention.categories.{name}: unknown category"));
            }
            if *days == 0 {
                return Err(format!(
                    "retention.categories.{name} must be at least 1 day"
                ));
            }
        }
        Ok(())
    }

    /// Days an event of this level and category is kept.
    pub fn days_for(&self, level: &str, category: &str) -> u32 {
        let level = self.levels.get(level).copied().unwrap_or(0);
        let category = self.categories.get(category).copied().unwrap_or(0);
        level.max(category).max(self.days)
    }

    /// The shortest period of any event: nothing newer than this can have expired.
    fn shortest_days(&self) -> u32 {
        self.days
    }

    /// Event times from this one on have not expired at `now_ms`, whatever their level.
    pub fn horizon(&self, now_ms: i64) -> i64 {
        now_ms.saturating_sub(i64::from(self.shortest_days()) * DAY_MS)
    }

    /// Whether an event at `ts` (ms) of this level and category has expired at `now_ms`.
    pub fn expired(&self, ts: i64, level: &str, category: &str, now_ms: i64) -> bool {
        let days = self.days_for(level, category);
        ts < now_ms.saturating_sub(i64::from(days) * DAY_MS)
    }
}

const DAY_MS: i64 = 86_400_000;

/// One run of consecutive removed seqs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrunedRange {
    pub first_seq: u64,
    pub last_seq: u64,
    /// The hash of the row before `first_seq` ([`super::chain::GENESIS`] when it is 1).
    pub prev_hash: Hash32,
    /// The hash of the row at `last_seq`: the next row's `prev_hash`.
    pub last_hash: Hash32,
}

/// SHA-256 over a record's ranges, in seq order.
pub(crate) fn digest(ranges: &[PrunedRange]) -> Hash32 {
    let mut h = Sha256::new();
    h.update(b"trailwatch-pruned-ranges-v1");
    for r in ranges {
        h.update(r.first_seq.to_be_bytes());
        h.update(r.last_seq.to_be_bytes());
        h.update(r.prev_hash);
        h.update(r.last_hash);
    }
    h.finalize().into()
}

/// The bytes a prune record's signature covers: versioned, like checkpoints.
fn message(id: i64, ranges: u64, events: u64, digest: &Hash32, signed_at: &str) -> Vec<u8> {
    format!(
        "trailwatch prune v1\nid {id}\nranges {ranges}\nevents {events}\ndigest {}\nsigned_at {signed_at}\n",
        hex::encode(digest)
    )
    .into_bytes()
}

/// The time a record is signed at, as it is signed (RFC 3339, milliseconds, UTC).
pub fn now_text() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The record `id` of a retention run that removed `events` events in `ranges`, signed at
/// `signed_at` with `key`: what either backend stores in `prunes`.
pub fn signed_record(
    key: &SigningKey,
    id: i64,
    ranges: &[PrunedRange],
    events: u64,
    signed_at: String,
) -> PruneRecord {
    let d = digest(ranges);
    let signature = key.sign(&message(id, ranges.len() as u64, events, &d, &signed_at));
    PruneRecord {
        id,
        signed_at,
        ranges: ranges.len() as i64,
        events: events as i64,
        digest: d.to_vec(),
        signature: signature.to_bytes().to_vec(),
    }
}

/// Expired events in seq order, as [`doomed_runs`] sorts them.
pub struct Doomed {
    pub seqs: Vec<u64>,
    /// The event-time span they cover (ms, both ends).
    pub span: (i64, i64),
    /// Their runs of consecutive seqs, first and last: a run may continue a range an earlier
    /// record covers, which stays as it was signed.
    pub runs: Vec<(u64, u64)>,
}

/// Sorts expired `(seq, ts)` pairs into [`Doomed`] runs.
pub fn doomed_runs(mut doomed: Vec<(u64, i64)>) -> Doomed {
    doomed.sort_unstable_by_key(|&(seq, _)| seq);
    let span = doomed
        .iter()
        .fold((i64::MAX, i64::MIN), |(lo, hi), &(_, ts)| {
            (lo.min(ts), hi.max(ts))
        });
    let seqs: Vec<u64> = doomed.iter().map(|&(s, _)| s).collect();
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for &s in &seqs {
        match runs.last_mut() {
            Some((_, last)) if *last + 1 == s => *last = s,
            _ => runs.push((s, s)),
        }
    }
    Doomed { seqs, span, runs }
}

/// What a retention run removed.
#[derive(Debug, Default)]
pub struct Pruned {
    pub events: u64,
    pub ranges: u64,
    /// Signed records written (one per transaction).
    pub records: u64,
    /// The removed seqs, for the search index.
    pub seqs: Vec<u64>,
    /// Bytes given back to the file system (SQLite), or whole partitions dropped
    /// (PostgreSQL: their size).
    pub freed_bytes: u64,
}

/// One removed range as stored: `first_seq`, `last_seq`, `prev_hash`, `last_hash`.
pub type RangeRow = (i64, i64, Vec<u8>, Vec<u8>);

/// One signed retention record, as stored.
#[derive(Clone, Debug)]
pub struct PruneRecord {
    pub id: i64,
    pub signed_at: String,
    /// How many ranges it signs, and how many events they cover.
    pub ranges: i64,
    pub events: i64,
    pub digest: Vec<u8>,
    pub signature: Vec<u8>,
}

/// A signed record as verification sees it: whether its signature and digest held.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Record ids whose signature and digest verified.
    valid: HashMap<i64, bool>,
    /// Why the first record failed, if one did.
    pub problem: Option<String>,
}

impl Ledger {
    /// Checks one signed record against its ranges (`first_seq`, `last_seq`, `prev_hash`,
    /// `last_hash`, in seq order), as stored by any backend, and remembers the verdict.
    pub fn check(&mut self, key: Option<&VerifyingKey>, record: &PruneRecord, ranges: &[RangeRow]) {
        let PruneRecord {
            id,
            ref signed_at,
            ranges: count,
            events,
            digest: ref stored_digest,
            ref signature,
        } = *record;
        let mut h = Sha256::new();
        h.update(b"trailwatch-pruned-ranges-v1");
        let (mut n, mut covered) = (0i64, 0i64);
        for (first, last, prev, hash) in ranges {
            h.update((*first as u64).to_be_bytes());
            h.update((*last as u64).to_be_bytes());
            h.update(prev);
            h.update(hash);
            n += 1;
            covered += last - first + 1;
        }
        let computed: Hash32 = h.finalize().into();
        let signed = match (key, <[u8; 32]>::try_from(stored_digest.as_slice())) {
            (Some(key), Ok(d)) => Signature::from_slice(signature).is_ok_and(|s| {
                key.verify(&message(id, count as u64, events as u64, &d, signed_at), &s)
                    .is_ok()
            }),
            _ => false,
        };
        let ok = signed
            && computed.as_slice() == stored_digest.as_slice()
            && n == count
            && covered == events;
        if !ok && self.problem.is_none() {
            self.problem = Some(match (key, signed) {
                (None, _) => format!(
                    "retention run {id} ({signed_at}) cannot be checked without the public key"
                ),
                (Some(_), false) => {
                    format!("retention run {id} ({signed_at}) is not signed by this public key")
                }
                (Some(_), true) => format!(
                    "the ranges of retention run {id} ({signed_at}) differ from what was signed"
                ),
            });
        }
        self.valid.insert(id, ok);
    }

    /// Whether the record `id` exists and verified.
    pub fn sanctions(&self, id: i64) -> bool {
        self.valid.get(&id).copied().unwrap_or(false)
    }
}

/// A range with the record it belongs to.
#[derive(Clone, Debug)]
pub struct LedgerRange {
    pub range: PrunedRange,
    pub prune_id: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_applicable_period_wins() {
        let p = RetentionPolicy::default();
        assert_eq!(p.days_for("info", "api"), 365);
        assert_eq!(p.days_for("critical", "api"), SEVEN_YEARS);
        assert_eq!(p.days_for("info", "security"), SEVEN_YEARS);
        let short = RetentionPolicy {
            days: 30,
            levels: BTreeMap::from([("debug".into(), 7)]),
            ..RetentionPolicy::default()
        };
        // A level rule shorter than the default does not shorten it.
        assert_eq!(short.days_for("debug", "api"), 30);
    }

    #[test]
    fn unknown_names_and_zero_periods_are_named() {
        let mut p = RetentionPolicy::default();
        p.levels.insert("loud".into(), 3);
        assert_eq!(
            p.validate().unwrap_err(),
            "retention.levels.loud: unknown level"
        );
        let mut p = RetentionPolicy::default();
        p.categories.insert("security".into(), 0);
        assert!(p.validate().unwrap_err().contains("categories.security"));
        let p = RetentionPolicy {
            days: 0,
            ..RetentionPolicy::default()
        };
        assert!(p.validate().unwrap_err().contains("retention.days"));
    }

    #[test]
    fn the_digest_covers_every_field_of_every_range() {
        let r = PrunedRange {
            first_seq: 1,
            last_seq: 5,
            prev_hash: [0; 32],
            last_hash: [9; 32],
        };
        let base = digest(std::slice::from_ref(&r));
        for changed in [
            PrunedRange {
                first_seq: 2,
                ..r.clone()
            },
            PrunedRange {
                last_seq: 6,
                ..r.clone()
            },
            PrunedRange {
                prev_hash: [1; 32],
                ..r.clone()
            },
            PrunedRange {
                last_hash: [8; 32],
                ..r.clone()
            },
        ] {
            assert_ne!(digest(&[changed]), base);
        }
        assert_ne!(digest(&[r.clone(), r]), base, "a repeated range is seen");
    }
}
