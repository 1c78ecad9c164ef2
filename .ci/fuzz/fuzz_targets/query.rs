//! Any explorer query and live filter: parsed, compiled and highlighted, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trailwatch::model::EventFilter;
use trailwatch::search::{Column, Query};

fuzz_target!(|input: &str| {
    if let Ok(query) = Query::parse(input) {
        for column in [Column::Description, Column::Action, Column::User, Column::Entity] {
            let _ = query.highlight(column, input);
        }
    }
    if let Ok(filter) = EventFilter::from_json(&serde_json::json!({ "q": input })) {
        let _ = filter.compile();
    }
    // The same text as a whole filter object, as a socket's subscribe message carries it.
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(input) {
        if let Ok(filter) = EventFilter::from_json(&value) {
            let _ = filter.compile();
        }
    }
});
