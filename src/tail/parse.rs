//! One line of a log file to one event. Never fails: a line that cannot be read as its format
//! says becomes a `warning` event that keeps the raw line in its metadata, so nothing written
//! to a tailed or imported file is ever silently lost.

use crate::ingest;
use crate::model::{AuditEvent, Source};
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

/// How the lines of a file are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineFormat {
    /// One JSON event per line, in any shape the HTTP API takes.
    Jsonl,
    /// `[2025-12-17T17:39:46Z] Auto-repair: Restarted Grafana container`: the time in brackets,
    /// the rest the description; a leading `ERROR`, `WARN`... sets the level.
    Text,
}

impl LineFormat {
    /// The format a file's name suggests: `.jsonl`, `.ndjson` and `.json` are JSONL.
    pub fn guess(path: &std::path::Path) -> LineFormat {
        match path.extension().and_then(|e| e.to_str()) {
            Some("jsonl" | "ndjson" | "json") => LineFormat::Jsonl,
            _ => LineFormat::Text,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LineFormat::Jsonl => "jsonl",
            LineFormat::Text => "text",
        }
    }
}

/// The action of events made from text lines.
pub const TEXT_ACTION: &str = "log.entry";
/// The action of events made from lines that could not be read.
pub use crate::ingest::UNPARSED_ACTION;
/// How much of an unreadable line its event's description quotes.
const QUOTE_CHARS: usize = 200;

/// Where a line came from, for the events made of it.
pub struct Origin<'a> {
    pub source: &'a Source,
    /// The file, as named to Trailwatch.
    pub file: &'a str,
    /// 1-based line number within the file (as far as Trailwatch has read it).
    pub line: u64,
}

/// The event for `line` (without its line ending); `None` for a blank line. `cut` says the
/// line was longer than the longest line read whole, and was cut.
pub fn event_for_line(
    line: &[u8],
    format: LineFormat,
    origin: &Origin<'_>,
    cut: bool,
    clock: impl Into<ingest::Clock>,
) -> Option<AuditEvent> {
    let mut clock = clock.into();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    // Events carry milliseconds (the chain seals them), whichever way they arrive.
    let now = DateTime::from_timestamp_millis(clock.now.timestamp_millis()).unwrap_or(clock.now);
    clock.now = now;
    let text = String::from_utf8_lossy(line);
    let parsed = if cut {
        Err("the line is longer than the longest line read whole, and was cut".to_string())
    } else {
        match format {
            LineFormat::Jsonl => jsonl_event(&text, origin.source, clock),
            LineFormat::Text => text_event(&text, origin.source, clock),
        }
    };
    Some(parsed.unwrap_or_else(|error| unparsed_event(&text, &error, origin, now)))
}

fn jsonl_event(text: &str, source: &Source, clock: ingest::Clock) -> Result<AuditEvent, String> {
    let value: Value = ingest::parse_json(text.as_bytes())
        .map_err(|e| format!("the line is not valid JSON: {e}"))?;
    ingest::normalize(&value, source, clock).map_err(|errors| {
        errors
            .iter()
            .map(|e| match e.field.as_str() {
                "" => e.message.clone(),
                field => format!("{field}: {}", e.message),
            })
            .collect::<Vec<_>>()
            .join("; ")
    })
}

fn text_event(text: &str, source: &Source, clock: ingest::Clock) -> Result<AuditEvent, String> {
    let rest = text
        .trim_start()
        .strip_prefix('[')
        .ok_or("the line does not start with a [timestamp]")?;
    let (stamp, rest) = rest
        .split_once(']')
        .ok_or("the line's [timestamp] is not closed")?;
    let timestamp = DateTime::parse_from_rfc3339(stamp.trim())
        .map_err(|e| format!("the timestamp {stamp:?} is not RFC 3339: {e}"))?
        .with_timezone(&Utc);
    let rest = rest.trim();
    let (level, outcome) = match leading_level(rest) {
        Some((level, _)) if level == "error" || level == "critical" => (level, "failure"),
        Some((level, _)) => (level, "success"),
        None => ("info", "success"),
    };
    if rest.is_empty() {
        return Err("the line has a timestamp and nothing else".into());
    }
    let description = ingest::clip(rest, ingest::MAX_DESCRIPTION_LEN);
    let record = json!({
        "timestamp": timestamp.to_rfc3339(),
        "action": TEXT_ACTION,
        "category": "system_management",
        "level": level,
        "outcome": outcome,
        "description": description,
    });
    // The line's own time is checked against the server's clock, as any event's is.
    ingest::normalize(&record, source, clock).map_err(|errors| {
        errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join("; ")
    })
}

/// The level a leading word such as `ERROR`, `WARN:` or `[warning]` names, and the word.
fn leading_level(rest: &str) -> Option<(&'static str, &str)> {
    let word = rest.split_whitespace().next()?;
    let bare = word.trim_matches(|c: char| !c.is_ascii_alphabetic());
    let level = match bare.to_ascii_uppercase().as_str() {
        "ERROR" | "ERR" => "error",
        "WARN" | "WARNING" => "warning",
        "CRITICAL" | "CRIT" | "FATAL" => "critical",
        "DEBUG" => "debug",
        "INFO" => "info",
        _ => return None,
    };
    // Only a word that is all level ("Errors in batch" is a description, not a level).
    (bare.len() + 2 >= word.len()).then_some((level, word))
}

fn unparsed_event(text: &str, error: &str, origin: &Origin<'_>, now: DateTime<Utc>) -> AuditEvent {
    let quote: String = text.chars().take(QUOTE_CHARS).collect();
    let ellipsis = if quote.len() < text.len() { "…" } else { "" };
    let mut metadata = Map::new();
    metadata.insert("raw".into(), json!(text));
    metadata.insert("file".into(), json!(origin.file));
    metadata.insert("line".into(), json!(origin.line));
    metadata.insert("error".into(), json!(error));
    ingest::unparsed_event(
        origin.source,
        now,
        format!(
            "Unreadable line {} of {}: {quote}{ellipsis}",
            origin.line, origin.file
        ),
        metadata,
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Level, Outcome};

    fn origin(source: &Source) -> Origin<'_> {
        Origin {
            source,
            file: "/var/log/audit.log",
            line: 7,
        }
    }

    #[test]
    fn text_lines_take_time_level_and_description() {
        let source = Source("tail:/var/log/audit.log".into());
        let now = Utc::now();
        let e = event_for_line(
            b"[2025-12-17T17:40:37Z] Auto-repair: Restarted Grafana container",
            LineFormat::Text,
            &origin(&source),
            false,
            now,
        )
        .unwrap();
        assert_eq!(e.timestamp.to_rfc3339(), "2025-12-17T17:40:37+00:00");
        assert_eq!(
            e.description.as_deref(),
            Some("Auto-repair: Restarted Grafana container")
        );
        assert_eq!(e.level, Level::Info);
        assert_eq!(e.action, TEXT_ACTION);
        assert_eq!(e.source, source);

        let e = event_for_line(
            b"[2025-12-17T18:00:00+01:00] ERROR: backup failed\r",
            LineFormat::Text,
            &origin(&source),
            false,
            now,
        )
        .unwrap();
        assert_eq!(e.level, Level::Error);
        assert_eq!(e.outcome, Outcome::Failure);
        assert_eq!(e.timestamp.to_rfc3339(), "2025-12-17T17:00:00+00:00");
        let e = event_for_line(
            b"[2025-12-17T18:00:00Z] WARN disk at 91%",
            LineFormat::Text,
            &origin(&source),
            false,
            now,
        )
        .unwrap();
        assert_eq!(e.level, Level::Warning);
        // A word that merely starts like a level is description.
        let e = event_for_line(
            b"[2025-12-17T18:00:00Z] Errors were fixed",
            LineFormat::Text,
            &origin(&source),
            false,
            now,
        )
        .unwrap();
        assert_eq!(e.level, Level::Info);
    }

    #[test]
    fn unreadable_lines_become_warnings_that_keep_the_raw_line() {
        let source = Source("tail:x".into());
        let now = Utc::now();
        for (line, format, error) in [
            (&b"no timestamp here"[..], LineFormat::Text, "[timestamp]"),
            (b"[yesterday] something", LineFormat::Text, "RFC 3339"),
            (b"{\"action\": ", LineFormat::Jsonl, "not valid JSON"),
            (b"{\"actoin\": \"x\"}", LineFormat::Jsonl, "actoin"),
        ] {
            let e = event_for_line(line, format, &origin(&source), false, now).unwrap();
            assert_eq!(e.level, Level::Warning, "{line:?}");
            assert_eq!(e.action, UNPARSED_ACTION);
            let m = e.metadata.unwrap();
            assert_eq!(m["raw"], json!(String::from_utf8_lossy(line)));
            assert_eq!(m["line"], json!(7));
            assert!(m["error"].as_str().unwrap().contains(error), "{m:?}");
        }
        assert!(event_for_line(b"  \r", LineFormat::Text, &origin(&source), false, now).is_none());
        let e = event_for_line(b"{}", LineFormat::Jsonl, &origin(&source), true, now).unwrap();
        assert!(e.metadata.unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("cut"));
    }

    #[test]
    fn jsonl_lines_take_every_ingest_shape() {
        let source = Source("tail:x".into());
        let now = DateTime::from_timestamp_millis(1_770_000_000_123).unwrap();
        let e = event_for_line(
            br#"{"userId":"alice","action":"file.read","allowed":false}"#,
            LineFormat::Jsonl,
            &origin(&source),
            false,
            now,
        )
        .unwrap();
        assert_eq!(e.user.id, "alice");
        assert_eq!(e.outcome, Outcome::Denied);
        assert_eq!(e.timestamp, now);
    }
}
