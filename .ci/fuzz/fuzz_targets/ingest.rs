//! Any request body, read as JSON and as NDJSON: events or errors naming the record, never a
//! panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trailwatch::ingest::{parse_body, BodyFormat, IngestError};
use trailwatch::model::Source;

fuzz_target!(|body: &[u8]| {
    let now = chrono::DateTime::from_timestamp_millis(1_770_000_000_000).unwrap_or_default();
    for format in [BodyFormat::Json, BodyFormat::Ndjson] {
        match parse_body(body, format, &Source::http(), now) {
            Ok(events) => assert!(!events.is_empty()),
            Err(IngestError::Invalid(errors)) => assert!(!errors.is_empty()),
            Err(IngestError::Empty) => {}
        }
    }
});
