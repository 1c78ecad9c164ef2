//! The events table's row, read back into an event the same way by every backend: the
//! column order ([`EVENT_COLUMNS`]) and the decoding of each column. A backend only says how
//! to take a text, an integer or a byte string out of its own row type (see [`Columns`]).

use super::chain::ChainRow;
use super::StoreError;
use crate::model::{
    Actor, AuditEvent, Category, Entity, EventId, Level, Location, Outcome, RequestInfo, Seq,
    Source, StoredEvent,
};
use chrono::{DateTime, Utc};

/// The columns [`sealed_from_row`] reads, in its order.
pub const EVENT_COLUMNS: &str = "seq, event_id, ts, received_at, level, category, action, \
    outcome, source, user_id, username, description, entity_type, entity_id, entity_name, \
    req_method, req_path, req_ip, req_user_agent, req_status, req_response_time, country, city, \
    metadata, changes, system, risk, correlation_id, session_id, hash, risk_reasons, personal, \
    submitted_by";

/// How many columns [`EVENT_COLUMNS`] names.
pub const EVENT_COLUMN_COUNT: usize = 33;

/// The index of the `personal` column in [`EVENT_COLUMNS`].
pub const PERSONAL: usize = 31;
/// The index of the `submitted_by` column in [`EVENT_COLUMNS`].
const SUBMITTED_BY: usize = 32;

/// A column that could not be read: its index and why.
#[derive(Debug)]
pub struct BadColumn {
    pub idx: usize,
    pub detail: String,
}

/// One row, as a backend hands it over: nullable columns by index.
pub trait Columns {
    fn text(&self, idx: usize) -> Result<Option<String>, BadColumn>;
    fn int(&self, idx: usize) -> Result<Option<i64>, BadColumn>;
    fn bytes(&self, idx: usize) -> Result<Option<Vec<u8>>, BadColumn>;
    /// A true-or-false column (an integer on SQLite, a boolean on PostgreSQL).
    fn flag(&self, idx: usize) -> Result<bool, BadColumn>;
}

fn bad(idx: usize, detail: impl Into<String>) -> BadColumn {
    BadColumn {
        idx,
        detail: detail.into(),
    }
}

fn required<T>(value: Option<T>, idx: usize) -> Result<T, BadColumn> {
    value.ok_or_else(|| bad(idx, "is null"))
}

fn text(row: &(impl Columns + ?Sized), idx: usize) -> Result<String, BadColumn> {
    required(row.text(idx)?, idx)
}

fn time(row: &(impl Columns + ?Sized), idx: usize) -> Result<DateTime<Utc>, BadColumn> {
    let ms = required(row.int(idx)?, idx)?;
    DateTime::from_timestamp_millis(ms).ok_or_else(|| bad(idx, format!("bad time {ms}")))
}

fn parsed<T>(
    row: &(impl Columns + ?Sized),
    idx: usize,
    parse: fn(&str) -> Option<T>,
) -> Result<T, BadColumn> {
    let s = text(row, idx)?;
    parse(&s).ok_or_else(|| bad(idx, format!("unknown value {s:?}")))
}

fn json<T: serde::de::DeserializeOwned>(
    row: &(impl Columns + ?Sized),
    idx: usize,
) -> Result<Option<T>, BadColumn> {
    row.text(idx)?
        .map(|s| serde_json::from_str(&s).map_err(|e| bad(idx, e.to_string())))
        .transpose()
}

fn narrow<T: TryFrom<i64>>(
    row: &(impl Columns + ?Sized),
    idx: usize,
) -> Result<Option<T>, BadColumn> {
    row.int(idx)?
        .map(|v| T::try_from(v).map_err(|_| bad(idx, format!("{v} is out of range"))))
        .transpose()
}

/// The row as it is sealed: the event with only its public metadata, and the canonical JSON
/// of its personal metadata apart (see `chain::JsonFields::split`).
///
/// # Errors
/// The first column that is missing or unreadable.
pub fn sealed_from_row(
    row: &(impl Columns + ?Sized),
) -> Result<(StoredEvent, Option<String>), BadColumn> {
    let entity = Entity {
        kind: row.text(12)?,
        id: row.text(13)?,
        name: row.text(14)?,
    };
    let request = RequestInfo {
        method: row.text(15)?,
        path: row.text(16)?,
        ip: row.text(17)?,
        user_agent: row.text(18)?,
        status_code: narrow(row, 19)?,
        response_time: row.int(20)?.map(|v| v.max(0) as u64),
    };
    let location = Location {
        country: row.text(21)?,
        city: row.text(22)?,
    };
    let hash = required(row.bytes(29)?, 29)?;
    let seq = required(row.int(0)?, 0)?;
    let stored = StoredEvent {
        seq: Seq(u64::try_from(seq).map_err(|_| bad(0, format!("seq {seq}")))?),
        event_id: EventId(text(row, 1)?),
        received_at: time(row, 3)?,
        hash: hex::encode(hash),
        event: AuditEvent {
            timestamp: time(row, 2)?,
            level: parsed(row, 4, Level::parse)?,
            category: parsed(row, 5, Category::parse)?,
            action: text(row, 6)?,
            outcome: parsed(row, 7, Outcome::parse)?,
            source: Source(text(row, 8)?),
            user: Actor {
                id: text(row, 9)?,
                username: row.text(10)?,
            },
            description: row.text(11)?,
            entity: (entity != Entity::default()).then_some(entity),
            request: (request != RequestInfo::default()).then_some(request),
            location: (location != Location::default()).then_some(location),
            metadata: json(row, 23)?,
            changes: json(row, 24)?,
            system: json(row, 25)?,
            risk_score: narrow(row, 26)?,
            risk_reasons: json(row, 30)?,
            correlation_id: row.text(27)?,
            session_id: row.text(28)?,
            submitted_by: row.text(SUBMITTED_BY)?,
        },
    };
    Ok((stored, row.text(PERSONAL)?))
}

/// Rebuilds the audit event and its seal from a row selected with [`EVENT_COLUMNS`], with its
/// personal metadata back among its metadata, as it was sent. Sub-objects whose fields are all
/// empty come back as `None`, as ingest stores them.
///
/// # Errors
/// The first column that is missing or unreadable.
pub fn event_from_row(row: &(impl Columns + ?Sized)) -> Result<StoredEvent, BadColumn> {
    let (mut stored, personal) = sealed_from_row(row)?;
    if let Some(personal) = personal {
        let personal: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&personal).map_err(|e| bad(PERSONAL, e.to_string()))?;
        stored
            .event
            .metadata
            .get_or_insert_with(Default::default)
            .extend(personal);
    }
    Ok(stored)
}

impl Columns for rusqlite::Row<'_> {
    fn text(&self, idx: usize) -> Result<Option<String>, BadColumn> {
        self.get(idx).map_err(|e| bad(idx, e.to_string()))
    }
    fn int(&self, idx: usize) -> Result<Option<i64>, BadColumn> {
        self.get(idx).map_err(|e| bad(idx, e.to_string()))
    }
    fn bytes(&self, idx: usize) -> Result<Option<Vec<u8>>, BadColumn> {
        self.get(idx).map_err(|e| bad(idx, e.to_string()))
    }
    fn flag(&self, idx: usize) -> Result<bool, BadColumn> {
        Ok(self
            .get::<_, i64>(idx)
            .map_err(|e| bad(idx, e.to_string()))?
            != 0)
    }
}

impl From<BadColumn> for rusqlite::Error {
    fn from(e: BadColumn) -> Self {
        rusqlite::Error::FromSqlConversionFailure(
            e.idx,
            rusqlite::types::Type::Text,
            e.detail.into(),
        )
    }
}

/// The columns [`SealedRow::read`] reads: [`EVENT_COLUMNS`] and the seal's own.
pub fn sealed_columns() -> String {
    format!("{EVENT_COLUMNS}, pii_digest, prev_hash, erased")
}

/// One row as stored, with the seal fields the event itself does not carry: what verifying
/// it needs, on either backend.
pub struct SealedRow {
    pub stored: StoredEvent,
    pub pii: [u8; 32],
    pub prev: [u8; 32],
    pub hash: [u8; 32],
    pub erased: bool,
    /// The metadata fields declared personal; `stored` holds the rest.
    pub personal: Option<String>,
}

impl SealedRow {
    /// Reads a row selected with [`sealed_columns`].
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] naming the seq, for a column missing or unreadable.
    pub fn read(row: &(impl Columns + ?Sized)) -> Result<SealedRow, StoreError> {
        let seq = row.int(0).ok().flatten().unwrap_or(0).max(0) as u64;
        let corrupt = |detail: String| StoreError::Corrupt { seq, detail };
        let column = |e: BadColumn| corrupt(format!("column {}: {}", e.idx, e.detail));
        let (stored, personal) = sealed_from_row(row).map_err(column)?;
        let n = EVENT_COLUMN_COUNT;
        let hash32 = |bytes: Option<Vec<u8>>, what: &str| -> Result<[u8; 32], StoreError> {
            bytes
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| corrupt(format!("{what} is not 32 bytes")))
        };
        Ok(SealedRow {
            pii: hash32(row.bytes(n).map_err(column)?, "pii digest")?,
            prev: hash32(row.bytes(n + 1).map_err(column)?, "previous hash")?,
            erased: row.flag(n + 2).map_err(column)?,
            hash: hash32(hex::decode(&stored.hash).ok(), "hash")?,
            stored,
            personal,
        })
    }

    /// The row as the chain's verifier takes it, with the subject's salt (`None` once erased).
    pub fn chain_row<'a>(&'a self, salt: Option<&'a [u8]>) -> ChainRow<'a> {
        ChainRow {
            seq: self.stored.seq,
            event: &self.stored.event,
            event_id: &self.stored.event_id.0,
            received_at_ms: self.stored.received_at.timestamp_millis(),
            pii_digest: self.pii,
            prev_hash: self.prev,
            hash: self.hash,
            salt,
            erased: self.erased,
            personal: self.personal.as_deref(),
        }
    }
}
