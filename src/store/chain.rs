//! The hash chain: the canonical, versioned encoding of an event, the salted digest of its
//! personal fields, and the checks that find an edited, deleted or reordered row.
//! Pure functions; the store feeds them rows.
//!
//! Encoding v1 is the byte `1` followed by length-prefixed fields in a fixed order (a `u32`
//! big-endian length, or `0xFFFFFFFF` for an absent value). Encoding v2 is the same fields after
//! the byte `2`, then the canonical JSON of the risk reasons: it seals the events whose risk
//! score Trailwatch assigned. Each row's version follows from its content (reasons or none), and
//! the version byte is hashed, so removing or adding reasons breaks the hash. Personal data (user id and name, IP,
//! user agent, location) never enters the encoding directly: it enters as
//! `SHA-256("trailwatch-pii-v1" ‖ salt ‖ fields)` with a salt kept per data subject outside the
//! events. Metadata fields the operator declares personal are taken out of `metadata` at
//! ingest and join them: `SHA-256("trailwatch-pii-v2" ‖ salt ‖ fields ‖ personal metadata)`,
//! v2 exactly when an event has such fields. Erasing a subject deletes the salt and blanks the
//! fields; the stored digest keeps every hash valid, and without the salt nobody can test a
//! guess against it.

use crate::model::{AuditEvent, Seq};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The hash before the first event.
pub const GENESIS: [u8; 32] = [0; 32];

/// The version byte of events without risk reasons.
pub const CANONICAL_VERSION: u8 = 1;

/// The version byte of events with risk reasons.
pub const CANONICAL_VERSION_REASONS: u8 = 2;

/// The version byte of events that name their submitter (every event stored since schema
/// 11): after the PII digest come the risk reasons, present or absent, then the submitter.
pub const CANONICAL_VERSION_SUBMITTER: u8 = 3;

/// A 32-byte SHA-256 value.
pub type Hash32 = [u8; 32];

const ABSENT: u32 = u32::MAX;

/// Appends canonical bytes; every field is length-prefixed so no two events share an encoding.
struct Encoder(Vec<u8>);

impl Encoder {
    fn bytes(&mut self, b: &[u8]) {
        // Fields are bounded far below 4 GiB by ingest limits and the body limit.
        let len = u32::try_from(b.len()).unwrap_or(ABSENT - 1);
        self.0.extend_from_slice(&len.to_be_bytes());
        self.0.extend_from_slice(b);
    }

    fn opt(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.bytes(s.as_bytes()),
            None => self.0.extend_from_slice(&ABSENT.to_be_bytes()),
        }
    }

    fn int(&mut self, v: Option<i64>) {
        match v {
            Some(v) => self.bytes(&v.to_be_bytes()),
            None => self.opt(None),
        }
    }
}

/// The digest that stands for an event's personal fields in the chain: its actor, address,
/// agent and location, and `personal`, the canonical JSON of its metadata fields declared
/// personal ([`JsonFields::split`]).
pub fn pii_digest(salt: &[u8], event: &AuditEvent, personal: Option<&str>) -> Hash32 {
    let mut enc = Encoder(Vec::with_capacity(128));
    enc.bytes(match personal {
        Some(_) => b"trailwatch-pii-v2",
        None => b"trailwatch-pii-v1",
    });
    enc.bytes(salt);
    enc.opt(Some(&event.user.id));
    enc.opt(event.user.username.as_deref());
    let req = event.request.as_ref();
    enc.opt(req.and_then(|r| r.ip.as_deref()));
    enc.opt(req.and_then(|r| r.user_agent.as_deref()));
    let loc = event.location.as_ref();
    enc.opt(loc.and_then(|l| l.country.as_deref()));
    enc.opt(loc.and_then(|l| l.city.as_deref()));
    if let Some(personal) = personal {
        enc.bytes(personal.as_bytes());
    }
    Sha256::digest(&enc.0).into()
}

/// The JSON-valued fields of an event in canonical form: what the chain hashes and, byte for
/// byte, what the store keeps, so each is serialised once per event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JsonFields {
    pub metadata: Option<String>,
    pub changes: Option<String>,
    pub system: Option<String>,
    pub risk_reasons: Option<String>,
    /// The metadata fields declared personal, kept apart from `metadata` and hashed through
    /// the PII digest; `None` when the event has none.
    pub personal: Option<String>,
}

impl JsonFields {
    /// Serialises the event's `metadata`, `changes` and `system` canonically.
    pub fn of(event: &AuditEvent) -> JsonFields {
        JsonFields::split(event, &[])
    }

    /// [`JsonFields::of`], with the top-level metadata fields named in `personal` moved out of
    /// `metadata` into `personal`. A metadata object left empty is stored as none.
    pub fn split(event: &AuditEvent, personal: &[String]) -> JsonFields {
        let value = |v: Option<Result<Value, serde_json::Error>>| {
            v.and_then(Result::ok).map(|v| canonical_json(&v))
        };
        let object = |m: &serde_json::Map<String, Value>| {
            let mut out = String::new();
            write_object(m, &mut out);
            out
        };
        let (metadata, personal) = match &event.metadata {
            Some(m) if personal.iter().any(|k| m.contains_key(k)) => {
                let (private, public): (serde_json::Map<_, _>, serde_json::Map<_, _>) = m
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .partition(|(k, _)| personal.contains(k));
                (
                    (!public.is_empty()).then(|| object(&public)),
                    Some(object(&private)),
                )
            }
            Some(m) => (Some(object(m)), None),
            None => (None, None),
        };
        JsonFields {
            metadata,
            changes: value(event.changes.as_ref().map(serde_json::to_value)),
            system: value(event.system.as_ref().map(serde_json::to_value)),
            risk_reasons: reasons_json(event),
            personal,
        }
    }
}

/// The `risk_reasons` column of [`JsonFields`], for the writer, which assigns the reasons after
/// the rest was serialised. Written directly, in [`canonical_json`]'s form (keys sorted):
/// through `serde_json::Value` it cost the writer a tenth of its time.
pub fn reasons_json(event: &AuditEvent) -> Option<String> {
    let reasons = event.risk_reasons.as_ref()?;
    let mut out = String::with_capacity(2 + reasons.len() * 64);
    out.push('[');
    for (i, r) in reasons.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"detail\":");
        write_string(&r.detail, &mut out);
        out.push_str(",\"points\":");
        out.push_str(&r.points.to_string());
        out.push_str(",\"rule\":");
        write_string(&r.rule, &mut out);
        out.push('}');
    }
    out.push(']');
    Some(out)
}

/// The canonical encoding of a sealed event, without its seq: order is committed to by the
/// previous hash, so a row moved elsewhere is told apart from a row edited in place.
pub fn canonical(event: &AuditEvent, event_id: &str, received_at_ms: i64, pii: &Hash32) -> Vec<u8> {
    canonical_with(event, &JsonFields::of(event), event_id, received_at_ms, pii)
}

/// [`canonical`] with the JSON fields already serialised by [`JsonFields::of`].
pub fn canonical_with(
    event: &AuditEvent,
    json: &JsonFields,
    event_id: &str,
    received_at_ms: i64,
    pii: &Hash32,
) -> Vec<u8> {
    // Sized for the whole encoding up front: growing it from a guess reallocated several
    // times per event with large metadata (a tenth of the sealer's time).
    let len = |s: Option<&str>| s.map_or(0, str::len);
    let capacity = 512
        + len(event.description.as_deref())
        + len(json.metadata.as_deref())
        + len(json.changes.as_deref())
        + len(json.system.as_deref())
        + len(json.risk_reasons.as_deref())
        + len(event.submitted_by.as_deref());
    let mut enc = Encoder(Vec::with_capacity(capacity));
    enc.0.push(match (&event.submitted_by, &json.risk_reasons) {
        (Some(_), _) => CANONICAL_VERSION_SUBMITTER,
        (None, Some(_)) => CANONICAL_VERSION_REASONS,
        (None, None) => CANONICAL_VERSION,
    });
    enc.opt(Some(event_id));
    enc.int(Some(event.timestamp.timestamp_millis()));
    enc.int(Some(received_at_ms));
    enc.opt(Some(event.level.as_str()));
    enc.opt(Some(event.category.as_str()));
    enc.opt(Some(&event.action));
    enc.opt(Some(event.outcome.as_str()));
    enc.opt(Some(&event.source.0));
    enc.opt(event.description.as_deref());
    let entity = event.entity.as_ref();
    enc.opt(entity.and_then(|e| e.kind.as_deref()));
    enc.opt(entity.and_then(|e| e.id.as_deref()));
    enc.opt(entity.and_then(|e| e.name.as_deref()));
    let req = event.request.as_ref();
    enc.opt(req.and_then(|r| r.method.as_deref()));
    enc.opt(req.and_then(|r| r.path.as_deref()));
    enc.int(req.and_then(|r| r.status_code).map(i64::from));
    enc.int(req.and_then(|r| r.response_time).map(|v| v as i64));
    enc.int(event.risk_score.map(i64::from));
    enc.opt(event.correlation_id.as_deref());
    enc.opt(event.session_id.as_deref());
    enc.opt(json.metadata.as_deref());
    enc.opt(json.changes.as_deref());
    enc.opt(json.system.as_deref());
    enc.bytes(pii);
    match &event.submitted_by {
        Some(submitter) => {
            enc.opt(json.risk_reasons.as_deref());
            enc.opt(Some(submitter));
        }
        None => {
            if let Some(reasons) = &json.risk_reasons {
                enc.bytes(reasons.as_bytes());
            }
        }
    }
    enc.0
}

/// `SHA-256(prev ‖ canonical)`.
pub fn chain_hash(prev: &Hash32, canonical: &[u8]) -> Hash32 {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(canonical);
    h.finalize().into()
}

/// JSON with object keys sorted and no insignificant white space, so that equal values always
/// encode to equal bytes whatever order a sender used.
pub fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => write_object(map, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::String(s) => write_string(s, out),
        scalar => out.push_str(&scalar.to_string()),
    }
}

fn write_object(map: &serde_json::Map<String, Value>, out: &mut String) {
    // Sorted here, whatever order the map keeps (serde_json's preserve_order feature could be
    // switched on by any dependency and must not change a hash).
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort_unstable();
    out.push('{');
    for (i, k) in keys.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(k, out);
        out.push(':');
        write_canonical(&map[k], out);
    }
    out.push('}');
}

fn write_string(s: &str, out: &mut String) {
    // serde_json's escaping: the same bytes it would produce for this string. It escapes
    // only quotes, backslashes and control characters, so most strings are copied as they are.
    if !s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        out.push('"');
        out.push_str(s);
        out.push('"');
        return;
    }
    match serde_json::to_string(s) {
        Ok(escaped) => out.push_str(&escaped),
        Err(_) => out.push_str("null"),
    }
}

/// What is wrong at the first bad row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// The row's content no longer matches its hash, or its personal fields their digest.
    Edited,
    /// A seq is missing.
    Deleted,
    /// The row is intact but does not follow its predecessor: rows were moved or renumbered.
    Reordered,
    /// The chain ends before a signed checkpoint: its newest rows were removed.
    Truncated,
}

/// The first place where the chain breaks.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Break {
    pub seq: Seq,
    pub fault: Fault,
    pub detail: String,
}

/// One stored row, as verification needs it.
pub struct ChainRow<'a> {
    pub seq: Seq,
    pub event: &'a AuditEvent,
    pub event_id: &'a str,
    pub received_at_ms: i64,
    pub pii_digest: Hash32,
    pub prev_hash: Hash32,
    pub hash: Hash32,
    /// The subject's salt, or `None` once the subject has been erased.
    pub salt: Option<&'a [u8]>,
    pub erased: bool,
    /// The metadata fields declared personal, as stored; `event.metadata` holds the rest.
    pub personal: Option<&'a str>,
}

/// Walks rows in seq order, constant memory, and remembers the first break.
#[derive(Debug)]
pub struct Verifier {
    expected_seq: Seq,
    prev: Hash32,
    checked: u64,
}

impl Default for Verifier {
    fn default() -> Self {
        Verifier {
            expected_seq: Seq(1),
            prev: GENESIS,
            checked: 0,
        }
    }
}

impl Verifier {
    /// A verifier that expects `seq` next, following a row whose hash is `prev` (the chain's
    /// genesis value for seq 1): checks one row in place.
    pub fn resume(seq: Seq, prev: Hash32) -> Verifier {
        Verifier {
            expected_seq: seq,
            prev,
            checked: 0,
        }
    }

    /// [`Verifier::resume`] that keeps counting from `checked`: after stepping over rows
    /// removed by retention.
    pub fn resume_counted(seq: Seq, prev: Hash32, checked: u64) -> Verifier {
        Verifier {
            expected_seq: seq,
            prev,
            checked,
        }
    }

    /// The seq the next row must have.
    pub fn expected(&self) -> Seq {
        self.expected_seq
    }

    /// Checks the next row; `Err` names the first problem. After an error the verifier should
    /// not be fed further rows.
    pub fn check(&mut self, row: &ChainRow<'_>) -> Result<(), Break> {
        let fail = |seq: Seq, fault: Fault, detail: String| Err(Break { seq, fault, detail });
        if row.seq != self.expected_seq {
            return fail(
                self.expected_seq,
                Fault::Deleted,
                format!(
                    "seq {} is missing (next row is seq {})",
                    self.expected_seq, row.seq
                ),
            );
        }
        if !row.erased {
            match row.salt {
                Some(salt) if pii_digest(salt, row.event, row.personal) == row.pii_digest => {}
                Some(_) => {
                    return fail(
                        row.seq,
                        Fault::Edited,
                        "personal fields were altered".into(),
                    );
                }
                None => {
                    return fail(
                        row.seq,
                        Fault::Edited,
                        format!("the salt of subject {:?} is missing", row.event.user.id),
                    );
                }
            }
        }
        let canon = canonical(row.event, row.event_id, row.received_at_ms, &row.pii_digest);
        if chain_hash(&row.prev_hash, &canon) != row.hash {
            return fail(
                row.seq,
                Fault::Edited,
                "content does not match its hash".into(),
            );
        }
        if row.prev_hash != self.prev {
            return fail(
                row.seq,
                Fault::Reordered,
                "row is intact but does not follow its predecessor (moved or renumbered)".into(),
            );
        }
        self.prev = row.hash;
        self.expected_seq = row.seq.next();
        self.checked += 1;
        Ok(())
    }

    /// How many rows verified.
    pub fn checked(&self) -> u64 {
        self.checked
    }

    /// The hash of the last verified row.
    pub fn head_hash(&self) -> Hash32 {
        self.prev
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Actor, Category, Level, Location, Outcome, RequestInfo, Source};
    use chrono::DateTime;
    use serde_json::json;

    fn event() -> AuditEvent {
        AuditEvent {
            timestamp: DateTime::from_timestamp_millis(1_770_254_502_321).unwrap(),
            level: Level::Warning,
            category: Category::FileManagement,
            action: "file.read".into(),
            outcome: Outcome::Denied,
            user: Actor {
                id: "alice".into(),
                username: Some("Alice".into()),
            },
            entity: None,
            request: Some(RequestInfo {
                ip: Some("10.0.0.1".into()),
                user_agent: Some("curl".into()),
                path: Some("/x".into()),
                ..Default::default()
            }),
            location: Some(Location {
                country: Some("NL".into()),
                city: None,
            }),
            description: Some("read /etc/shadow".into()),
            metadata: json!({"b": 1, "a": [true, null]}).as_object().cloned(),
            changes: None,
            risk_score: Some(80),
            risk_reasons: None,
            correlation_id: None,
            session_id: None,
            system: None,
            source: Source::http(),
            submitted_by: None,
        }
    }

    fn hash_of(e: &AuditEvent, salt: &[u8]) -> Hash32 {
        let pii = pii_digest(salt, e, None);
        chain_hash(&GENESIS, &canonical(e, "id-1", 5, &pii))
    }

    #[test]
    fn reasons_are_written_as_canonical_json_would_write_them() {
        let mut e = event();
        e.risk_reasons = Some(vec![
            crate::model::RiskReason {
                rule: "level".into(),
                points: 50,
                detail: "critical".into(),
            },
            crate::model::RiskReason {
                rule: "odd".into(),
                points: 0,
                detail: "quote \" slash \\ tab \t bell \u{7} é \u{7f}".into(),
            },
        ]);
        let via_value = canonical_json(&serde_json::to_value(&e.risk_reasons).unwrap());
        assert_eq!(reasons_json(&e), Some(via_value));
        e.risk_reasons = Some(Vec::new());
        assert_eq!(reasons_json(&e).as_deref(), Some("[]"));
        e.risk_reasons = None;
        assert_eq!(reasons_json(&e), None);
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_depth() {
        let a = json!({"b": {"y": 1, "x": [2, {"q": 1, "p": 0}]}, "a": "s"});
        assert_eq!(
            canonical_json(&a),
            r#"{"a":"s","b":{"x":[2,{"p":0,"q":1}],"y":1}}"#
        );
    }

    #[test]
    fn any_changed_field_changes_the_hash() {
        let salt = [7u8; 32];
        let base = hash_of(&event(), &salt);
        let mut variants = Vec::new();
        let mut e = event();
        e.description = Some("read /etc/shadoW".into());
        variants.push(e);
        let mut e = event();
        e.outcome = Outcome::Success;
        variants.push(e);
        let mut e = event();
        e.timestamp = DateTime::from_timestamp_millis(1_770_254_502_322).unwrap();
        variants.push(e);
        let mut e = event();
        e.metadata = json!({"b": 2, "a": [true, null]}).as_object().cloned();
        variants.push(e);
        let mut e = event();
        e.user.id = "mallory".into();
        variants.push(e);
        let mut e = event();
        e.request.as_mut().unwrap().ip = Some("10.0.0.2".into());
        variants.push(e);
        for v in variants {
            assert_ne!(hash_of(&v, &salt), base, "{v:?}");
        }
        assert_ne!(
            hash_of(&event(), &[8u8; 32]),
            base,
            "the salt is committed to"
        );
    }

    #[test]
    fn the_submitter_is_sealed_in_a_v3_encoding() {
        let salt = [7u8; 32];
        let plain = event();
        let pii = pii_digest(&salt, &plain, None);
        let mut submitted = event();
        submitted.submitted_by = Some("token:ci".into());
        let canon = canonical(&submitted, "id-1", 5, &pii);
        assert_eq!(canon[0], CANONICAL_VERSION_SUBMITTER);
        let v1 = canonical(&plain, "id-1", 5, &pii);
        assert_eq!(&canon[1..v1.len()], &v1[1..], "v3 extends v1's fields");
        let base = hash_of(&submitted, &salt);
        assert_ne!(
            base,
            hash_of(&plain, &salt),
            "dropping the submitter is seen"
        );
        let mut other = submitted.clone();
        other.submitted_by = Some("token:cj".into());
        assert_ne!(
            base,
            hash_of(&other, &salt),
            "changing the submitter is seen"
        );
        let mut scored = submitted.clone();
        scored.risk_reasons = Some(Vec::new());
        assert_ne!(
            base,
            hash_of(&scored, &salt),
            "reasons and the submitter are told apart"
        );
    }

    #[test]
    fn assigned_risk_reasons_are_sealed_in_a_v2_encoding() {
        let salt = [7u8; 32];
        let plain = event();
        let pii = pii_digest(&salt, &plain, None);
        assert_eq!(canonical(&plain, "id-1", 5, &pii)[0], CANONICAL_VERSION);
        let mut scored = event();
        scored.risk_reasons = Some(vec![crate::model::RiskReason {
            rule: "outcome".into(),
            points: 30,
            detail: "denied".into(),
        }]);
        let canon = canonical(&scored, "id-1", 5, &pii);
        assert_eq!(canon[0], CANONICAL_VERSION_REASONS);
        let v1 = canonical(&plain, "id-1", 5, &pii);
        assert_eq!(&canon[1..v1.len()], &v1[1..], "v2 extends v1's fields");
        let base = hash_of(&scored, &salt);
        assert_ne!(base, hash_of(&plain, &salt), "dropping the reasons is seen");
        let mut edited = scored.clone();
        edited.risk_reasons.as_mut().unwrap()[0].points = 0;
        assert_ne!(base, hash_of(&edited, &salt), "editing a reason is seen");
        let mut empty = scored;
        empty.risk_reasons = Some(Vec::new());
        assert_ne!(base, hash_of(&empty, &salt));
        assert_ne!(
            hash_of(&empty, &salt),
            hash_of(&plain, &salt),
            "no reasons ≠ none given"
        );
    }

    #[test]
    fn a_description_moved_into_the_path_field_hashes_differently() {
        // Length prefixes keep adjacent fields from running into each other.
        let mut a = event();
        a.description = Some("ab".into());
        a.request.as_mut().unwrap().path = Some("c".into());
        let mut b = a.clone();
        b.description = Some("a".into());
        b.request.as_mut().unwrap().path = Some("bc".into());
        assert_ne!(hash_of(&a, &[0; 32]), hash_of(&b, &[0; 32]));
    }

    #[test]
    fn erasing_personal_fields_keeps_the_hash_when_the_digest_is_kept() {
        let salt = [3u8; 32];
        let original = event();
        let pii = pii_digest(&salt, &original, None);
        let hash = chain_hash(&GENESIS, &canonical(&original, "id-1", 5, &pii));

        let mut erased = original.clone();
        erased.user = Actor {
            id: "erased:1f2e".into(),
            username: None,
        };
        erased.request.as_mut().unwrap().ip = None;
        erased.request.as_mut().unwrap().user_agent = None;
        erased.location = None;
        assert_eq!(
            chain_hash(&GENESIS, &canonical(&erased, "id-1", 5, &pii)),
            hash
        );

        let mut v = Verifier::default();
        let row = ChainRow {
            seq: Seq(1),
            event: &erased,
            event_id: "id-1",
            received_at_ms: 5,
            pii_digest: pii,
            prev_hash: GENESIS,
            hash,
            salt: None,
            erased: true,
            personal: None,
        };
        assert_eq!(v.check(&row), Ok(()));
        assert_eq!(v.checked(), 1);
    }

    #[test]
    fn a_personal_field_edit_is_caught_through_the_salt() {
        let salt = [3u8; 32];
        let original = event();
        let pii = pii_digest(&salt, &original, None);
        let hash = chain_hash(&GENESIS, &canonical(&original, "id-1", 5, &pii));
        let mut edited = original.clone();
        edited.user.id = "bob".into();
        let row = ChainRow {
            seq: Seq(1),
            event: &edited,
            event_id: "id-1",
            received_at_ms: 5,
            pii_digest: pii,
            prev_hash: GENESIS,
            hash,
            salt: Some(&salt),
            erased: false,
            personal: None,
        };
        let err = Verifier::default().check(&row).unwrap_err();
        assert_eq!((err.seq, err.fault), (Seq(1), Fault::Edited));
    }

    #[test]
    fn declared_personal_metadata_is_sealed_through_the_digest_not_the_content() {
        let salt = [3u8; 32];
        let mut original = event();
        original.metadata = json!({"email": "a@x.test", "plan": "pro"})
            .as_object()
            .cloned();
        let declared = ["email".to_string(), "phone".to_string()];
        let json = JsonFields::split(&original, &declared);
        assert_eq!(json.metadata.as_deref(), Some(r#"{"plan":"pro"}"#));
        assert_eq!(json.personal.as_deref(), Some(r#"{"email":"a@x.test"}"#));
        assert_eq!(JsonFields::split(&event(), &declared).personal, None);

        let pii = pii_digest(&salt, &original, json.personal.as_deref());
        assert_ne!(pii, pii_digest(&salt, &original, None), "v2 is told apart");
        let hash = chain_hash(&GENESIS, &canonical_with(&original, &json, "id-1", 5, &pii));
        // What verification reads back: the event with only the public metadata.
        let mut public = original.clone();
        public.metadata = json!({"plan": "pro"}).as_object().cloned();
        let row = |personal| ChainRow {
            seq: Seq(1),
            event: &public,
            event_id: "id-1",
            received_at_ms: 5,
            pii_digest: pii,
            prev_hash: GENESIS,
            hash,
            salt: Some(&salt),
            erased: false,
            personal,
        };
        assert_eq!(
            Verifier::default().check(&row(json.personal.as_deref())),
            Ok(())
        );
        for forged in [Some(r#"{"email":"b@x.test"}"#), None] {
            let err = Verifier::default().check(&row(forged)).unwrap_err();
            assert_eq!(err.fault, Fault::Edited, "{forged:?}");
        }
    }
}
