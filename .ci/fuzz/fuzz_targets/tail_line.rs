//! Any line of a tailed file, as JSONL and as text: an event (perhaps `log.unparsed`) unless
//! the line is blank, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trailwatch::model::Source;
use trailwatch::tail::parse::{event_for_line, LineFormat, Origin};

fuzz_target!(|line: &[u8]| {
    let now = chrono::DateTime::from_timestamp_millis(1_770_000_000_000).unwrap_or_default();
    let source = Source("tail:/var/log/app.log".into());
    let origin = Origin {
        source: &source,
        file: "/var/log/app.log",
        line: 1,
    };
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let blank = line.iter().all(u8::is_ascii_whitespace)
        || line.strip_suffix(b"\r").is_some_and(|l| l.iter().all(u8::is_ascii_whitespace));
    for format in [LineFormat::Jsonl, LineFormat::Text] {
        for cut in [false, true] {
            let event = event_for_line(line, format, &origin, cut, now);
            assert_eq!(event.is_none(), blank);
        }
    }
});
