//! The words of an event as PostgreSQL full text holds them, and the phrases a query looks for.
//! PostgreSQL's own parser splits text differently from the tokenizer the SQLite index and the
//! browser agree on (`search::tokenize`), so the words are split here and handed over as a
//! `tsvector` literal with positions; the query is a `tsquery` literal of the same tokens. Both
//! backends then answer a query alike.
//!
//! Each indexed column (`search::text_columns`) starts a gap of positions after the previous
//! one, so a phrase never runs from one column into the next, as in FTS5.

use crate::model::AuditEvent;
use crate::search::{text_columns, tokenize};
use std::collections::BTreeMap;
use std::fmt::Write;

/// Positions between two columns: more than a phrase step (`<->` is exactly one).
const COLUMN_GAP: u32 = 2;
/// PostgreSQL's highest position; later words keep it (and lose phrase precision only).
const MAX_POSITION: u32 = 16_383;
/// PostgreSQL's longest lexeme, in bytes; a longer token cannot be stored.
const MAX_LEXEME: usize = 2_046;

/// A lexeme quoted for a `tsvector` or `tsquery` literal. Tokens are letters and digits only,
/// but quoting is exact for any text.
fn quoted(token: &str, out: &mut String) {
    out.push('\'');
    for ch in token.chars() {
        match ch {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('\'');
}

/// The `tsvector` literal of `event`'s words; empty when it has none.
pub fn tsvector(event: &AuditEvent) -> String {
    let mut positions: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    let mut at = 1u32;
    for column in text_columns(event) {
        for token in tokenize(&column) {
            if token.len() <= MAX_LEXEME {
                positions
                    .entry(token)
                    .or_default()
                    .push(at.min(MAX_POSITION));
            }
            at += 1;
        }
        at += COLUMN_GAP;
    }
    let mut out = String::new();
    for (token, at) in positions {
        if !out.is_empty() {
            out.push(' ');
        }
        quoted(&token, &mut out);
        out.push(':');
        let mut at = at;
        at.dedup();
        for (i, p) in at.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{p}");
        }
    }
    out
}

/// The `tsquery` literal of a phrase: `tokens` in a row, the last a prefix when `prefix`;
/// `None` without tokens.
pub fn phrase(tokens: &[String], prefix: bool) -> Option<String> {
    let mut out = String::new();
    for (i, token) in tokens.iter().enumerate() {
        if i > 0 {
            out.push_str(" <-> ");
        }
        quoted(token, &mut out);
        if prefix && i + 1 == tokens.len() {
            out.push_str(":*");
        }
    }
    (!tokens.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::{phrase, tsvector};
    use crate::model::AuditEvent;

    #[test]
    fn columns_are_apart_and_words_keep_their_places() {
        let event: AuditEvent = serde_json::from_value(serde_json::json!({
            "timestamp": "2026-12-06T10:00:00Z",
            "level": "info",
            "category": "file_management",
            "outcome": "success",
            "source": "http",
            "action": "file.read",
            "user": {"id": "alice"},
            "description": "Read it, read O'Brien's file"
        }))
        .unwrap();
        // description: read(1) it(2) read(3) o(4) brien(5) s(6) file(7); gap; action: file(10)
        // read(11); gap; user: alice(14).
        assert_eq!(
            tsvector(&event),
            "'alice':14 'brien':5 'file':7,10 'it':2 'o':4 'read':1,3,11 's':6"
        );
        let tokens = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        assert_eq!(phrase(&tokens("read o"), true).unwrap(), "'read' <-> 'o':*");
        assert_eq!(phrase(&tokens("it's"), false).unwrap(), "'it''s'");
        assert_eq!(phrase(&[], true), None);
    }
}
