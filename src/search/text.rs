//! The words of an event: the text the full-text index holds for each column, the tokenizer
//! it agrees with (SQLite's `unicode61`: runs of letters and digits, lower-cased), and phrase
//! matching over tokens. Shared by both builds, so the browser matches as the index does.

use crate::model::AuditEvent;

/// The text the full-text index holds for an event, one string per indexed column:
/// description, action, user (id and name), entity (type, id, name), metadata (keys and
/// values). The store indexes exactly these strings, so matching here agrees with it.
pub fn text_columns(e: &AuditEvent) -> [String; 5] {
    let join = |parts: &[Option<&str>]| {
        parts
            .iter()
            .flatten()
            .copied()
            .collect::<Vec<_>>()
            .join(" ")
    };
    let entity = e.entity.as_ref();
    [
        e.description.clone().unwrap_or_default(),
        e.action.clone(),
        join(&[Some(e.user.id.as_str()), e.user.username.as_deref()]),
        join(&[
            entity.and_then(|x| x.kind.as_deref()),
            entity.and_then(|x| x.id.as_deref()),
            entity.and_then(|x| x.name.as_deref()),
        ]),
        e.metadata.as_ref().map(metadata_text).unwrap_or_default(),
    ]
}

/// Keys and scalar values of metadata, depth first, object keys sorted, space separated.
pub fn metadata_text(metadata: &serde_json::Map<String, serde_json::Value>) -> String {
    fn push(out: &mut String, s: &str) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(s);
    }
    fn walk(v: &serde_json::Value, out: &mut String) {
        match v {
            serde_json::Value::Null => {}
            serde_json::Value::Bool(b) => push(out, if *b { "true" } else { "false" }),
            serde_json::Value::Number(n) => push(out, &n.to_string()),
            serde_json::Value::String(s) => push(out, s),
            serde_json::Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            serde_json::Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                for k in keys {
                    push(out, k);
                    if let Some(v) = map.get(k) {
                        walk(v, out);
                    }
                }
            }
        }
    }
    let mut out = String::new();
    let mut keys: Vec<&String> = metadata.keys().collect();
    keys.sort();
    for k in keys {
        push(&mut out, k);
        if let Some(v) = metadata.get(k) {
            walk(v, &mut out);
        }
    }
    out
}

/// Byte ranges of the tokens of `text`: runs of letters and digits, as SQLite's `unicode61`
/// tokenizer splits them.
pub(super) fn token_spans(text: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut start = None;
    for (i, ch) in text.char_indices() {
        match (ch.is_alphanumeric(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                spans.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        spans.push((s, text.len()));
    }
    spans
}

/// The lower-cased tokens of `text`.
pub fn tokenize(text: &str) -> Vec<String> {
    token_spans(text)
        .into_iter()
        .map(|(s, e)| text[s..e].to_lowercase())
        .collect()
}

pub(super) fn phrase_at(window: &[String], tokens: &[String], prefix: bool) -> bool {
    let n = tokens.len();
    window
        .iter()
        .zip(tokens)
        .enumerate()
        .all(|(k, (have, want))| {
            if prefix && k == n - 1 {
                have.starts_with(want.as_str())
            } else {
                have == want
            }
        })
}

pub(super) fn contains_phrase(doc: &[String], tokens: &[String], prefix: bool) -> bool {
    let n = tokens.len();
    n > 0 && doc.len() >= n && doc.windows(n).any(|w| phrase_at(w, tokens, prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_text_sorts_keys_and_walks_nesting() {
        let v = serde_json::json!({"b": [1, true, null], "a": {"z": "x y"}});
        let serde_json::Value::Object(map) = v else {
            unreachable!()
        };
        assert_eq!(metadata_text(&map), "a z x y b 1 true");
    }
}
