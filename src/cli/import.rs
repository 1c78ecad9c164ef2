//! `trailwatch import FILE...`: bulk-loads JSONL or text log files into a running server.
//!
//! Lines become events exactly as a tailed file's do (see [`crate::tail::parse`]): an
//! unreadable line is kept as a `warning` event with the raw line, never dropped, so one bad
//! line cannot fail a batch. Events go to the ingest API as NDJSON, thousands per request,
//! with the next batch parsed while the previous one is committed; the server's single
//! writer stays the only one to touch the chain. Server build only (part of the one binary).

use super::config::{FileConfig, ImportArgs};
use super::emit::{self, EmitError};
use crate::model::{AuditEvent, Source};
use crate::tail::parse::{event_for_line, LineFormat, Origin, UNPARSED_ACTION};
use crate::tail::MAX_LINE;
use chrono::Utc;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// Why an import stopped.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--format: {0:?} is not one of: jsonl, text")]
    Format(String),
    /// Events sent before the failure are stored; the report says how many.
    #[error("{source} ({imported} events were stored before this)")]
    Send { source: EmitError, imported: u64 },
}

/// What an import stored.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportReport {
    pub files: usize,
    pub events: u64,
    /// Lines kept as `warning` events because they could not be read.
    pub unreadable: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
}

/// Loads every file in `args`, in order, reporting progress as (bytes read, bytes in all).
///
/// # Errors
/// A file cannot be read, or the server cannot be reached or refuses a batch.
pub async fn import(
    args: ImportArgs,
    file: FileConfig,
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<ImportReport, ImportError> {
    let format = match args.format.as_deref() {
        None => None,
        Some("jsonl") => Some(LineFormat::Jsonl),
        Some("text") => Some(LineFormat::Text),
        Some(other) => return Err(ImportError::Format(other.to_string())),
    };
    let (url, token) =
        emit::target(args.url, args.token, args.data_dir, file).map_err(|source| {
            ImportError::Send {
                source,
                imported: 0,
            }
        })?;
    let total: u64 = args
        .files
        .iter()
        .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum();
    let client = reqwest::Client::new();
    let mut report = ImportReport::default();
    let mut read_before = 0;
    let batch = args.batch.clamp(1, 50_000);
    for path in &args.files {
        let format = format.unwrap_or_else(|| LineFormat::guess(path));
        let source = source_for(path);
        let mut lines = Lines::open(path, format, &source)?;
        let mut in_flight: Option<tokio::task::JoinHandle<_>> = None;
        loop {
            let (body, events, unreadable) = lines.next_batch(batch)?;
            if let Some(sending) = in_flight.take() {
                finish(sending, &mut report).await?;
            }
            progress(read_before + lines.read, total);
            if events == 0 {
                break;
            }
            report.unreadable += unreadable;
            let (client, url, token, source) =
                (client.clone(), url.clone(), token.clone(), source.0.clone());
            in_flight = Some(tokio::spawn(async move {
                let receipt =
                    emit::send(&client, &url, &token, &source, "application/x-ndjson", body).await;
                (receipt, events)
            }));
        }
        read_before += lines.read;
        report.files += 1;
    }
    Ok(report)
}

type Sending = tokio::task::JoinHandle<(Result<crate::model::IngestReceipt, EmitError>, u64)>;

/// Waits for a batch's receipt and counts it in.
async fn finish(sending: Sending, report: &mut ImportReport) -> Result<(), ImportError> {
    let (receipt, events) = sending.await.map_err(|e| ImportError::Send {
        source: EmitError::Refused {
            status: 0,
            body: e.to_string(),
        },
        imported: report.events,
    })?;
    let receipt = receipt.map_err(|source| ImportError::Send {
        source,
        imported: report.events,
    })?;
    report.events += events;
    report.first_seq.get_or_insert(receipt.first_seq.0);
    report.last_seq = Some(receipt.last_seq.0);
    Ok(())
}

/// The source of a file's events: `import:<path>`, in characters a header can carry.
fn source_for(path: &Path) -> Source {
    let name: String = path
        .to_string_lossy()
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(1_000)
        .collect();
    Source(format!("import:{name}"))
}

/// A progress line for `done` of `total` bytes.
pub fn progress_line(done: u64, total: u64) -> String {
    let share = match total {
        0 => 1.0,
        t => (done.min(t) as f64 / t as f64).clamp(0.0, 1.0),
    };
    let cells = (share * 30.0).round() as usize;
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    format!(
        "[{}{}] {:>3.0}%  {:.1}/{:.1} MiB",
        "#".repeat(cells),
        ".".repeat(30 - cells),
        share * 100.0,
        mib(done),
        mib(total)
    )
}

/// A file read a batch of lines at a time.
struct Lines<'a> {
    reader: BufReader<std::fs::File>,
    path: &'a Path,
    name: String,
    format: LineFormat,
    source: &'a Source,
    line: u64,
    /// Bytes read so far.
    read: u64,
}

impl<'a> Lines<'a> {
    fn open(
        path: &'a Path,
        format: LineFormat,
        source: &'a Source,
    ) -> Result<Lines<'a>, ImportError> {
        let file = std::fs::File::open(path).map_err(|source| ImportError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Lines {
            reader: BufReader::with_capacity(1 << 20, file),
            path,
            name: path.to_string_lossy().into_owned(),
            format,
            source,
            line: 0,
            read: 0,
        })
    }

    /// Up to `max` events as an NDJSON body, how many, and how many were unreadable lines.
    fn next_batch(&mut self, max: usize) -> Result<(Vec<u8>, u64, u64), ImportError> {
        let mut body = Vec::new();
        let (mut events, mut unreadable) = (0u64, 0u64);
        let mut buf = Vec::new();
        let now = Utc::now();
        while events < max as u64 {
            buf.clear();
            let n = Read::by_ref(&mut self.reader)
                .take(MAX_LINE as u64)
                .read_until(b'\n', &mut buf)
                .map_err(|source| ImportError::Read {
                    path: self.path.to_path_buf(),
                    source,
                })?;
            if n == 0 {
                break;
            }
            self.read += n as u64;
            self.line += 1;
            let cut = n == MAX_LINE && buf.last() != Some(&b'\n');
            let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
            let origin = Origin {
                source: self.source,
                file: &self.name,
                line: self.line,
            };
            let Some(event) = event_for_line(line, self.format, &origin, cut, now) else {
                continue;
            };
            if event.action == UNPARSED_ACTION {
                unreadable += 1;
            }
            // Serialising a value we built cannot fail; skip nothing silently if it did.
            serde_json::to_writer(&mut body, &ingest_record(&event)).map_err(|e| {
                ImportError::Read {
                    path: self.path.to_path_buf(),
                    source: std::io::Error::other(e),
                }
            })?;
            body.push(b'\n');
            events += 1;
        }
        Ok((body, events, unreadable))
    }
}

/// `event` as the ingest API takes it: without the fields the server assigns.
pub fn ingest_record(event: &AuditEvent) -> Value {
    let mut value = serde_json::to_value(event).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut value {
        map.remove("source");
        map.remove("riskReasons");
        // Whoever runs the import submits the events now; the file's record of who first
        // did is not a credential this server checked.
        map.remove("submittedBy");
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::normalize;

    #[test]
    fn an_event_read_from_a_line_is_ingested_unchanged() {
        let source = Source("import:a.jsonl".into());
        let origin = Origin {
            source: &source,
            file: "a.jsonl",
            line: 1,
        };
        let line = br#"{"timestamp":"2026-01-02T03:04:05.678Z","level":"warning","category":"security","action":"auth.login","outcome":"failure","user":{"id":"u1","username":"Ann"},"entity":{"type":"doc","id":"d1","name":"Plan"},"request":{"method":"POST","path":"/login","ip":"10.0.0.1","userAgent":"curl","statusCode":401,"responseTime":12},"location":{"country":"DE","city":"Berlin"},"description":"bad password","metadata":{"k":[1,2]},"changes":{"role":{"before":"a","after":"b"}},"riskScore":70,"correlationId":"c","sessionId":"s"}"#;
        let now = chrono::DateTime::from_timestamp_millis(1_770_000_000_123).unwrap();
        let event = event_for_line(line, LineFormat::Jsonl, &origin, false, now).unwrap();
        assert_ne!(event.action, UNPARSED_ACTION, "{event:?}");
        let again = normalize(&ingest_record(&event), &source, now).unwrap();
        assert_eq!(again, event);
        for text in [&b"[2026-01-02T03:04:05Z] ERROR boom"[..], b"garbage"] {
            let e = event_for_line(text, LineFormat::Text, &origin, false, now).unwrap();
            assert_eq!(normalize(&ingest_record(&e), &source, now).unwrap(), e);
        }
    }

    #[test]
    fn sources_are_header_safe() {
        assert_eq!(
            source_for(Path::new("/var/log/äudit log.jsonl")).0,
            "import:/var/log/?udit log.jsonl"
        );
    }
}
