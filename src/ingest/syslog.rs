//! Syslog messages onto audit events: RFC 6587's framings of a byte stream (octet counting
//! and newline-terminated), and one message, RFC 5424 or RFC 3164 (`syslog_loose` parses
//! both), onto our event. The listeners that feed this are `crate::server::syslog`; the
//! mapping is written out in the README ("From syslog").
//!
//! Nothing is dropped: a message that cannot be parsed, or breaks a rule of our events, or is
//! longer than [`MAX_MESSAGE`], becomes a `log.unparsed` event that keeps its bytes and the
//! reason, as a tailed line that cannot be read does.

use super::{normalize, Clock};
use crate::model::{AuditEvent, Category, Level, Source};
use chrono::{DateTime, Datelike, Local, TimeZone, Utc};
use serde_json::{json, Map, Value};
use syslog_loose::{Message, Protocol, SyslogFacility, SyslogSeverity, Variant};

/// The longest message read whole, in bytes (rsyslog's default is 8 KiB). A longer one is
/// kept, cut here, as `log.unparsed`.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// The action of a message that cannot be read.
pub use super::UNPARSED_ACTION;

/// One frame taken from a stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A whole message.
    Message(Vec<u8>),
    /// A message over [`MAX_MESSAGE`]: its first bytes and its length (when the frame said).
    TooLong { head: Vec<u8>, len: Option<usize> },
}

/// Splits a syslog byte stream into messages (RFC 6587): a frame that starts with a digit is
/// octet-counted (`LEN SP MSG`), any other ends at a newline. Senders may mix them.
#[derive(Debug, Default)]
pub struct Deframer {
    buf: Vec<u8>,
    /// Bytes still to discard of an octet-counted frame that was too long.
    skip: usize,
    /// Discarding up to the next newline, after a too-long newline-framed message.
    skip_line: bool,
}

impl Deframer {
    /// Adds bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame in what was pushed, if there is one yet.
    pub fn next_frame(&mut self) -> Option<Frame> {
        if self.skip > 0 {
            let n = self.skip.min(self.buf.len());
            self.buf.drain(..n);
            self.skip -= n;
            if self.skip > 0 {
                return None;
            }
        }
        if self.skip_line {
            let end = self.buf.iter().position(|b| *b == b'\n');
            match end {
                Some(end) => {
                    self.buf.drain(..=end);
                    self.skip_line = false;
                }
                None => {
                    self.buf.clear();
                    return None;
                }
            }
        }
        // Separators some senders put between frames.
        let Some(start) = self
            .buf
            .iter()
            .position(|b| !matches!(b, b'\n' | b'\r' | b'\0'))
        else {
            self.buf.clear();
            return None;
        };
        self.buf.drain(..start);
        if self.buf[0].is_ascii_digit() {
            match self.octet_counted() {
                Counted::Frame(frame) => return Some(frame),
                Counted::NeedMore => return None,
                Counted::Newline => {}
            }
        }
        match self.buf.iter().position(|b| *b == b'\n') {
            Some(end) => {
                let mut line: Vec<u8> = self.buf.drain(..=end).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                Some(too_long_or_whole(line))
            }
            None if self.buf.len() > MAX_MESSAGE => {
                let head = self.buf[..MAX_MESSAGE].to_vec();
                self.buf.clear();
                self.skip_line = true;
                Some(Frame::TooLong { head, len: None })
            }
            None => None,
        }
    }

    fn octet_counted(&mut self) -> Counted {
        let digits = self.buf.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == self.buf.len() {
            // The length may go on in the next read; ten digits would be gigabytes.
            return match digits < 10 {
                true => Counted::NeedMore,
                false => Counted::Newline,
            };
        }
        if self.buf[digits] != b' ' || digits > 9 {
            return Counted::Newline;
        }
        let Some(len) = std::str::from_utf8(&self.buf[..digits])
            .ok()
            .and_then(|d| d.parse::<usize>().ok())
        else {
            return Counted::Newline;
        };
        let body = digits + 1;
        if len > MAX_MESSAGE {
            let have = (self.buf.len() - body).min(MAX_MESSAGE);
            if have < MAX_MESSAGE && self.buf.len() - body < len {
                return Counted::NeedMore;
            }
            let head = self.buf[body..body + have].to_vec();
            let taken = (self.buf.len() - body).min(len);
            self.buf.drain(..body + taken);
            self.skip = len - taken;
            return Counted::Frame(Frame::TooLong {
                head,
                len: Some(len),
            });
        }
        if self.buf.len() - body < len {
            return Counted::NeedMore;
        }
        let frame: Vec<u8> = self.buf.drain(..body + len).skip(body).collect();
        Counted::Frame(Frame::Message(frame))
    }

    /// What is left when the stream ends: a last message without its newline.
    pub fn finish(&mut self) -> Option<Frame> {
        if self.skip > 0 || self.skip_line {
            return None;
        }
        let rest = std::mem::take(&mut self.buf);
        let start = rest
            .iter()
            .position(|b| !matches!(b, b'\n' | b'\r' | b'\0'))?;
        Some(too_long_or_whole(rest[start..].to_vec()))
    }
}

enum Counted {
    Frame(Frame),
    NeedMore,
    /// Not octet-counted after all: the frame ends at a newline.
    Newline,
}

fn too_long_or_whole(message: Vec<u8>) -> Frame {
    match message.len() > MAX_MESSAGE {
        true => Frame::TooLong {
            len: Some(message.len()),
            head: message[..MAX_MESSAGE].to_vec(),
        },
        false => Frame::Message(message),
    }
}

/// Where a message came from: the listener (`syslog:tcp://127.0.0.1:6514`) and the peer.
#[derive(Clone, Debug)]
pub struct Origin {
    pub source: Source,
    pub peer: String,
}

/// One frame as an event; never fails (see the module's docs).
pub fn event(frame: Frame, origin: &Origin, clock: impl Into<Clock>) -> AuditEvent {
    let clock = clock.into();
    let now = clock.now;
    match frame {
        Frame::Message(bytes) => match map_message(&bytes, origin, clock) {
            Ok(event) => event,
            Err(reason) => unparsed(&bytes, None, &reason, origin, now),
        },
        Frame::TooLong { head, len } => {
            let reason = match len {
                Some(len) => format!("the message is {len} bytes; at most {MAX_MESSAGE} are read"),
                None => format!("the message is longer than {MAX_MESSAGE} bytes"),
            };
            unparsed(&head, len, &reason, origin, now)
        }
    }
}

fn map_message(bytes: &[u8], origin: &Origin, clock: Clock) -> Result<AuditEvent, String> {
    let now = clock.now;
    let text = String::from_utf8_lossy(bytes);
    if !text.trim_start().starts_with('<') {
        return Err("a syslog message starts with its priority, <0> to <191>".into());
    }
    let message = syslog_loose::parse_message_with_year_exact_tz(
        &text,
        |date| year_of(date, now),
        Some(Local),
        Variant::Either,
    )?;
    let shape = shape(&message, origin);
    let mut event = normalize(&shape, &origin.source, clock).map_err(|errors| {
        errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join(", ")
    })?;
    if std::str::from_utf8(bytes).is_err() {
        // The text stored was repaired; the bytes as sent stay with it.
        event
            .metadata
            .get_or_insert_with(Map::new)
            .insert("rawHex".into(), json!(hex::encode(bytes)));
    }
    Ok(event)
}

/// The year of an RFC 3164 time (which has none): this year, unless that is more than a day
/// ahead of now, when the message was sent last year (on New Year's Eve, say).
fn year_of(date: syslog_loose::IncompleteDate, now: DateTime<Utc>) -> i32 {
    let (month, day, hour, minute, second) = date;
    let year = now.year();
    let this_year = Local
        .with_ymd_and_hms(year, month, day, hour, minute, second)
        .earliest();
    match this_year {
        Some(t) if t.with_timezone(&Utc) > now + chrono::Duration::days(1) => year - 1,
        _ => year,
    }
}

/// A header field that says something: not absent, blank or RFC 5424's `-`.
fn nonempty(field: Option<&str>) -> Option<&str> {
    field.map(str::trim).filter(|s| !s.is_empty() && *s != "-")
}

/// The message in our event shape.
fn shape(message: &Message<&str>, origin: &Origin) -> Value {
    let mut event = Map::new();
    if let Some(time) = message.timestamp {
        event.insert("timestamp".into(), json!(time.to_rfc3339()));
    }
    let appname = nonempty(message.appname);
    let hostname = nonempty(message.hostname);
    let msgid = nonempty(message.msgid);
    let facility = message.facility.map(SyslogFacility::as_str);
    let action = match (msgid, appname, facility) {
        (Some(id), _, _) => id.to_string(),
        (None, Some(app), _) => format!("syslog.{app}"),
        (None, None, Some(f)) => format!("syslog.{f}"),
        (None, None, None) => "syslog.message".into(),
    };
    event.insert("action".into(), json!(action));
    if let Some(severity) = message.severity {
        event.insert("level".into(), json!(level(severity).as_str()));
    }
    if matches!(
        message.facility,
        Some(SyslogFacility::LOG_AUTH | SyslogFacility::LOG_AUTHPRIV)
    ) {
        event.insert("category".into(), json!(Category::Authentication.as_str()));
    }
    let text = message.msg.trim_start_matches('\u{feff}').trim();
    if !text.is_empty() {
        event.insert("description".into(), json!(text));
    }
    let mut system = Map::new();
    if let Some(app) = appname {
        system.insert("service".into(), json!(app));
    }
    if let Some(host) = hostname {
        system.insert("server".into(), json!(host));
    }
    if !system.is_empty() {
        event.insert("system".into(), Value::Object(system));
    }

    let mut metadata = Map::new();
    let mut user = None;
    for element in &message.structured_data {
        let mut params = Map::new();
        for (name, value) in element.params() {
            let name: &str = name;
            if name == "user" && user.is_none() {
                user = Some(value.clone());
            }
            // RFC 5424 lets a name repeat within an element: keep every value, in order.
            match params.get_mut(name) {
                None => {
                    params.insert(name.to_string(), json!(value));
                }
                Some(Value::Array(values)) => values.push(json!(value)),
                Some(first) => *first = json!([first.take(), value]),
            }
        }
        metadata.insert(element.id.to_string(), Value::Object(params));
    }
    if let Some(user) = user {
        event.insert("user".into(), json!({"id": user}));
    }
    if let Some(f) = facility {
        metadata.insert("syslog.facility".into(), json!(f));
    }
    if let Some(s) = message.severity {
        metadata.insert("syslog.severity".into(), json!(s.as_str()));
    }
    if let Some(procid) = &message.procid {
        metadata.insert("syslog.procid".into(), json!(procid.to_string()));
    }
    if let Some(id) = msgid {
        metadata.insert("syslog.msgid".into(), json!(id));
    }
    let protocol = match message.protocol {
        Protocol::RFC3164 => "rfc3164",
        Protocol::RFC5424(_) => "rfc5424",
    };
    metadata.insert("syslog.protocol".into(), json!(protocol));
    metadata.insert("syslog.peer".into(), json!(origin.peer));
    event.insert("metadata".into(), Value::Object(metadata));
    Value::Object(event)
}

fn level(severity: SyslogSeverity) -> Level {
    match severity {
        SyslogSeverity::SEV_EMERG | SyslogSeverity::SEV_ALERT | SyslogSeverity::SEV_CRIT => {
            Level::Critical
        }
        SyslogSeverity::SEV_ERR => Level::Error,
        SyslogSeverity::SEV_WARNING => Level::Warning,
        SyslogSeverity::SEV_NOTICE | SyslogSeverity::SEV_INFO => Level::Info,
        SyslogSeverity::SEV_DEBUG => Level::Debug,
    }
}

/// A message that could not be read, kept: its text, its bytes when they are not UTF-8, and
/// why.
fn unparsed(
    bytes: &[u8],
    len: Option<usize>,
    reason: &str,
    origin: &Origin,
    now: DateTime<Utc>,
) -> AuditEvent {
    let mut metadata = Map::new();
    metadata.insert("raw".into(), json!(String::from_utf8_lossy(bytes)));
    if std::str::from_utf8(bytes).is_err() {
        metadata.insert("rawHex".into(), json!(hex::encode(bytes)));
    }
    metadata.insert("rawBytes".into(), json!(len.unwrap_or(bytes.len())));
    metadata.insert("error".into(), json!(reason));
    metadata.insert("syslog.peer".into(), json!(origin.peer));
    super::unparsed_event(
        &origin.source,
        now,
        format!("a syslog message that could not be read: {reason}"),
        metadata,
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Origin {
        Origin {
            source: Source("syslog:tcp://127.0.0.1:6514".into()),
            peer: "127.0.0.1:40000".into(),
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-07T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn frames(d: &mut Deframer) -> Vec<Frame> {
        std::iter::from_fn(|| d.next_frame()).collect()
    }

    #[test]
    fn both_framings_split_a_stream_wherever_reads_end() {
        let stream = b"13 <13>1 - - - x\n<14>hello world\n5 <13>a17 <34>1 - - - - - y";
        // Every split point: frames may arrive in any number of reads.
        for cut in 0..stream.len() {
            let mut d = Deframer::default();
            d.push(&stream[..cut]);
            let mut got = frames(&mut d);
            d.push(&stream[cut..]);
            got.extend(frames(&mut d));
            got.extend(d.finish());
            assert_eq!(
                got,
                [
                    Frame::Message(b"<13>1 - - - x".to_vec()),
                    Frame::Message(b"<14>hello world".to_vec()),
                    Frame::Message(b"<13>a".to_vec()),
                    Frame::Message(b"<34>1 - - - - - y".to_vec()),
                ],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn a_message_over_the_limit_is_cut_and_the_stream_goes_on() {
        let mut d = Deframer::default();
        let big = MAX_MESSAGE + 10;
        d.push(format!("{big} ").as_bytes());
        d.push(&vec![b'a'; big]);
        d.push(b"3 <1>");
        let got = frames(&mut d);
        assert!(
            matches!(&got[0], Frame::TooLong { head, len: Some(n) } if head.len() == MAX_MESSAGE && *n == big)
        );
        assert_eq!(got[1], Frame::Message(b"<1>".to_vec()));
        let mut d = Deframer::default();
        d.push(&vec![b'<'; MAX_MESSAGE + 1]);
        let got = frames(&mut d);
        assert!(matches!(&got[..], [Frame::TooLong { len: None, .. }]));
        d.push(b"rest of it\n<2>next\n");
        assert_eq!(frames(&mut d), [Frame::Message(b"<2>next".to_vec())]);
    }

    #[test]
    fn an_rfc5424_message_maps_its_fields() {
        let msg = "<86>1 2026-12-07T11:58:01.250Z web-3 sshd 4123 user.login \
                   [auth@32473 user=\"alice\" method=\"publickey\" method=\"password\"] \
                   \u{feff}Accepted publickey for alice";
        let e = event(Frame::Message(msg.as_bytes().to_vec()), &origin(), now());
        assert_eq!(e.action, "user.login");
        assert_eq!(e.level, Level::Info);
        assert_eq!(e.category, Category::Authentication, "authpriv");
        assert_eq!(e.user.id, "alice");
        assert_eq!(e.timestamp.to_rfc3339(), "2026-12-07T11:58:01.250+00:00");
        assert_eq!(
            e.description.as_deref(),
            Some("Accepted publickey for alice")
        );
        let system = e.system.unwrap();
        assert_eq!(system.server.as_deref(), Some("web-3"));
        assert_eq!(system.service.as_deref(), Some("sshd"));
        let m = e.metadata.unwrap();
        assert_eq!(m["auth@32473"]["method"], json!(["publickey", "password"]));
        assert_eq!(m["syslog.facility"], "authpriv");
        assert_eq!(m["syslog.procid"], "4123");
        assert_eq!(m["syslog.protocol"], "rfc5424");
    }

    #[test]
    fn an_rfc3164_message_maps_and_a_bad_one_is_kept() {
        let e = event(
            Frame::Message(b"<11>Dec  7 11:58:01 db-1 backup[77]: disk almost full".to_vec()),
            &origin(),
            now(),
        );
        assert_eq!(e.action, "syslog.backup");
        assert_eq!(e.level, Level::Error);
        assert_eq!(e.system.unwrap().server.as_deref(), Some("db-1"));
        assert_eq!(e.description.as_deref(), Some("disk almost full"));
        let bad = event(
            Frame::Message(b"no priority \xff".to_vec()),
            &origin(),
            now(),
        );
        assert_eq!(bad.action, UNPARSED_ACTION);
        let m = bad.metadata.unwrap();
        assert_eq!(m["rawHex"], hex::encode(b"no priority \xff"));
        assert!(m["error"].as_str().unwrap().contains("priority"));
        let future = event(
            Frame::Message(b"<13>1 2999-01-01T00:00:00Z h a - - - x".to_vec()),
            &origin(),
            now(),
        );
        assert_eq!(future.action, UNPARSED_ACTION);
        assert!(future.metadata.unwrap()["error"]
            .as_str()
            .unwrap()
            .starts_with("timestamp:"));
    }
}
