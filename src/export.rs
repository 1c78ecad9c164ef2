//! Export formats: CSV (with formula-injection neutralised), a JSON array, and NDJSON, each
//! of our events or of OCSF records ([`ocsf`]), written incrementally in bounded chunks so an export of millions of events never holds more
//! than one chunk. Server build only.

use crate::model::StoredEvent;
use chrono::{DateTime, SecondsFormat, Utc};

pub mod ocsf;

/// What `GET /api/v1/events/export` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    Csv,
    Json,
    Ndjson,
    /// OCSF records in a JSON array.
    OcsfJson,
    /// OCSF records, one per line.
    OcsfNdjson,
}

impl ExportFormat {
    /// The file extension for `Content-Disposition`.
    pub fn extension(self) -> &'static str {
        match self {
            ExportFormat::Csv => "csv",
            ExportFormat::Json => "json",
            ExportFormat::Ndjson => "ndjson",
            ExportFormat::OcsfJson => "ocsf.json",
            ExportFormat::OcsfNdjson => "ocsf.ndjson",
        }
    }

    /// The `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            ExportFormat::Csv => "text/csv; charset=utf-8",
            ExportFormat::Json | ExportFormat::OcsfJson => "application/json",
            ExportFormat::Ndjson | ExportFormat::OcsfNdjson => "application/x-ndjson",
        }
    }
}

/// The CSV columns, in order.
pub const CSV_HEADER: [&str; 30] = [
    "seq",
    "eventId",
    "timestamp",
    "receivedAt",
    "level",
    "category",
    "action",
    "outcome",
    "source",
    "submittedBy",
    "userId",
    "username",
    "description",
    "entityType",
    "entityId",
    "entityName",
    "method",
    "path",
    "ip",
    "userAgent",
    "statusCode",
    "responseTime",
    "country",
    "city",
    "riskScore",
    "correlationId",
    "sessionId",
    "metadata",
    "changes",
    "hash",
];

/// Writes events one by one into a buffer and hands it over whenever it reaches the chunk
/// size.
pub struct ExportWriter {
    format: ExportFormat,
    chunk: usize,
    buf: Vec<u8>,
    rows: u64,
}

impl ExportWriter {
    /// A writer that hands over chunks of about `chunk` bytes.
    pub fn new(format: ExportFormat, chunk: usize) -> ExportWriter {
        let mut buf = Vec::with_capacity(chunk + 4096);
        match format {
            ExportFormat::Csv => {
                write_csv_row(&mut buf, CSV_HEADER.iter().map(|h| Some((*h).to_string())))
            }
            ExportFormat::Json | ExportFormat::OcsfJson => buf.push(b'['),
            ExportFormat::Ndjson | ExportFormat::OcsfNdjson => {}
        }
        ExportWriter {
            format,
            chunk,
            buf,
            rows: 0,
        }
    }

    /// Adds one event; returns a full chunk when the buffer reached the chunk size.
    pub fn push(&mut self, event: &StoredEvent) -> Option<Vec<u8>> {
        match self.format {
            ExportFormat::Csv => write_csv_row(&mut self.buf, csv_cells(event)),
            ExportFormat::Json | ExportFormat::OcsfJson => {
                if self.rows > 0 {
                    self.buf.push(b',');
                }
                self.buf.push(b'\n');
                self.write_record(event);
            }
            ExportFormat::Ndjson | ExportFormat::OcsfNdjson => {
                self.write_record(event);
                self.buf.push(b'\n');
            }
        }
        self.rows += 1;
        (self.buf.len() >= self.chunk)
            .then(|| std::mem::replace(&mut self.buf, Vec::with_capacity(self.chunk + 4096)))
    }

    /// `event` as JSON, or as its OCSF record.
    fn write_record(&mut self, event: &StoredEvent) {
        let written = match self.format {
            ExportFormat::OcsfJson | ExportFormat::OcsfNdjson => {
                serde_json::to_writer(&mut self.buf, &ocsf::record(event))
            }
            _ => serde_json::to_writer(&mut self.buf, event),
        };
        // Serialising a value we built cannot fail; a failure would be a bug worth an empty
        // object rather than a torn file.
        if written.is_err() {
            self.buf.extend_from_slice(b"{}");
        }
    }

    /// How many events were written.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The rest of the output, closing the JSON array.
    pub fn finish(mut self) -> Vec<u8> {
        if matches!(self.format, ExportFormat::Json | ExportFormat::OcsfJson) {
            self.buf
                .extend_from_slice(if self.rows > 0 { b"\n]\n" } else { b"]\n" });
        }
        self.buf
    }
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn csv_cells(e: &StoredEvent) -> impl Iterator<Item = Option<String>> {
    let a = &e.event;
    let entity = a.entity.as_ref();
    let req = a.request.as_ref();
    let loc = a.location.as_ref();
    [
        Some(e.seq.0.to_string()),
        Some(e.event_id.0.clone()),
        Some(time(a.timestamp)),
        Some(time(e.received_at)),
        Some(a.level.as_str().to_string()),
        Some(a.category.as_str().to_string()),
        Some(a.action.clone()),
        Some(a.outcome.as_str().to_string()),
        Some(a.source.0.clone()),
        a.submitted_by.clone(),
        Some(a.user.id.clone()),
        a.user.username.clone(),
        a.description.clone(),
        entity.and_then(|x| x.kind.clone()),
        entity.and_then(|x| x.id.clone()),
        entity.and_then(|x| x.name.clone()),
        req.and_then(|r| r.method.clone()),
        req.and_then(|r| r.path.clone()),
        req.and_then(|r| r.ip.clone()),
        req.and_then(|r| r.user_agent.clone()),
        req.and_then(|r| r.status_code).map(|v| v.to_string()),
        req.and_then(|r| r.response_time).map(|v| v.to_string()),
        loc.and_then(|l| l.country.clone()),
        loc.and_then(|l| l.city.clone()),
        a.risk_score.map(|v| v.to_string()),
        a.correlation_id.clone(),
        a.session_id.clone(),
        a.metadata
            .as_ref()
            .and_then(|m| serde_json::to_string(m).ok()),
        a.changes
            .as_ref()
            .and_then(|c| serde_json::to_string(c).ok()),
        Some(e.hash.clone()),
    ]
    .into_iter()
}

/// One CSV cell: text a spreadsheet would run as a formula (starting with `=`, `+`, `-`, `@`,
/// tab or carriage return) gets a leading `'`; cells with separators, quotes or line breaks
/// are quoted with quotes doubled (RFC 4180).
pub fn csv_cell(value: &str) -> String {
    let risky = value
        .chars()
        .next()
        .is_some_and(|c| matches!(c, '=' | '+' | '-' | '@' | '\t' | '\r'));
    let value = if risky {
        format!("'{value}")
    } else {
        value.to_string()
    };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

fn write_csv_row(buf: &mut Vec<u8>, cells: impl Iterator<Item = Option<String>>) {
    for (i, cell) in cells.enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        if let Some(cell) = cell {
            buf.extend_from_slice(csv_cell(&cell).as_bytes());
        }
    }
    buf.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Actor, AuditEvent, Category, EventId, Level, Outcome, Seq, Source};

    fn event(seq: u64, description: &str) -> StoredEvent {
        StoredEvent {
            seq: Seq(seq),
            event_id: EventId(format!("id-{seq}")),
            received_at: DateTime::UNIX_EPOCH,
            hash: "ab".into(),
            event: AuditEvent {
                description: Some(description.into()),
                risk_score: Some(5),
                ..AuditEvent::new(
                    DateTime::UNIX_EPOCH,
                    Level::Info,
                    Category::Api,
                    "api.call",
                    Outcome::Success,
                    Actor {
                        id: "u".into(),
                        username: None,
                    },
                    Source::http(),
                )
            },
        }
    }

    #[test]
    fn csv_cells_neutralise_formulas_and_quote_separators() {
        assert_eq!(csv_cell("plain"), "plain");
        assert_eq!(csv_cell("=SUM(A1:A9)"), "'=SUM(A1:A9)");
        assert_eq!(csv_cell("+1"), "'+1");
        assert_eq!(csv_cell("-2+3"), "'-2+3");
        assert_eq!(csv_cell("@cmd"), "'@cmd");
        assert_eq!(csv_cell("\tx"), "'\tx");
        assert_eq!(csv_cell("\rx"), "\"'\rx\"");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("=1,\"2\""), "\"'=1,\"\"2\"\"\"");
        assert_eq!(csv_cell("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv_cell("a-b"), "a-b", "only a leading sign is risky");
    }

    #[test]
    fn csv_rows_have_every_column() {
        let mut w = ExportWriter::new(ExportFormat::Csv, 1 << 20);
        assert!(w.push(&event(1, "=HYPERLINK(\"x\")")).is_none());
        let out = String::from_utf8(w.finish()).unwrap();
        let lines: Vec<&str> = out.split("\r\n").filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].split(',').count(), CSV_HEADER.len());
        assert!(lines[1].starts_with("1,id-1,1970-01-01T00:00:00.000Z,"));
        assert!(lines[1].contains(",\"'=HYPERLINK(\"\"x\"\")\","));
    }

    #[test]
    fn json_and_ndjson_parse_back() {
        for format in [ExportFormat::Json, ExportFormat::Ndjson] {
            let mut w = ExportWriter::new(format, 1 << 20);
            let mut out = Vec::new();
            for seq in 1..=3 {
                out.extend(w.push(&event(seq, "x")).unwrap_or_default());
            }
            assert_eq!(w.rows(), 3);
            out.extend(w.finish());
            let text = String::from_utf8(out).unwrap();
            let seqs: Vec<u64> = match format {
                ExportFormat::Json => serde_json::from_str::<Vec<StoredEvent>>(&text)
                    .unwrap()
                    .iter()
                    .map(|e| e.seq.0)
                    .collect(),
                _ => text
                    .lines()
                    .map(|l| serde_json::from_str::<StoredEvent>(l).unwrap().seq.0)
                    .collect(),
            };
            assert_eq!(seqs, vec![1, 2, 3], "{format:?}");
        }
        let empty = ExportWriter::new(ExportFormat::Json, 16).finish();
        assert_eq!(
            serde_json::from_slice::<Vec<StoredEvent>>(&empty).unwrap(),
            vec![]
        );
    }

    #[test]
    fn chunks_stay_bounded_however_many_rows() {
        let chunk = 4096;
        let mut w = ExportWriter::new(ExportFormat::Ndjson, chunk);
        let one_row = serde_json::to_vec(&event(1, "x")).unwrap().len() + 1;
        let mut total = 0;
        for seq in 0..10_000 {
            if let Some(c) = w.push(&event(seq, "x")) {
                // Never more than one row beyond the chunk size is held.
                assert!(c.len() < chunk + one_row + 8, "chunk of {}", c.len());
                total += c.len();
            }
            assert!(w.buf.len() < chunk, "buffer holds {}", w.buf.len());
        }
        total += w.finish().len();
        assert!(total > 10_000 * (one_row - 8));
    }
}
