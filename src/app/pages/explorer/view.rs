//! The explorer's view state and its place in the URL: query, filters, time range, order and
//! live/paused, so a copied URL opens the same live view and back/forward work. Pure; shared.

use crate::model::{Category, EventFilter, EventOrder, Level, Outcome};
use chrono::{DateTime, Duration, NaiveDateTime, Utc};

/// The time window of the explorer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TimeRange {
    #[default]
    All,
    Minutes15,
    Hour1,
    Hours24,
    Days7,
    Days30,
    /// Fixed bounds; a missing end means "until now".
    Custom {
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    },
}

impl TimeRange {
    /// The presets, in menu order, with their URL names and labels.
    pub const PRESETS: [(TimeRange, &'static str, &'static str); 6] = [
        (TimeRange::All, "all", "All time"),
        (TimeRange::Minutes15, "15m", "Last 15 minutes"),
        (TimeRange::Hour1, "1h", "Last hour"),
        (TimeRange::Hours24, "24h", "Last 24 hours"),
        (TimeRange::Days7, "7d", "Last 7 days"),
        (TimeRange::Days30, "30d", "Last 30 days"),
    ];

    /// The URL name (`1h`, `custom`).
    pub fn name(self) -> &'static str {
        Self::PRESETS
            .iter()
            .find(|(r, _, _)| *r == self)
            .map_or("custom", |(_, n, _)| n)
    }

    /// Whether the window reaches the present, so new events belong in it.
    pub fn ends_now(self) -> bool {
        !matches!(self, TimeRange::Custom { to: Some(_), .. })
    }

    /// The bounds at `now`.
    pub fn bounds(self, now: DateTime<Utc>) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
        let back = |d: Duration| (Some(now - d), None);
        match self {
            TimeRange::All => (None, None),
            TimeRange::Minutes15 => back(Duration::minutes(15)),
            TimeRange::Hour1 => back(Duration::hours(1)),
            TimeRange::Hours24 => back(Duration::hours(24)),
            TimeRange::Days7 => back(Duration::days(7)),
            TimeRange::Days30 => back(Duration::days(30)),
            TimeRange::Custom { from, to } => (from, to),
        }
    }
}

/// Everything the explorer shows, as the URL holds it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExplorerView {
    /// The filter, without its time bounds (those come from `range`).
    pub filter: EventFilter,
    pub range: TimeRange,
    /// The rows' order; event time, newest first, unless a header was clicked.
    pub order: EventOrder,
    /// Paused: new matches wait behind the "new events" pill.
    pub paused: bool,
}

fn time(raw: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(raw)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn list<T>(raw: &str, parse: fn(&str) -> Option<T>) -> Vec<T> {
    raw.split(',').filter_map(parse).collect()
}

impl ExplorerView {
    /// Reads the view from URL parameters; values it cannot read are left out rather than
    /// failing the page (the query's own errors are shown where it is typed).
    pub fn from_params<'a>(params: impl IntoIterator<Item = (&'a str, &'a str)>) -> ExplorerView {
        let mut v = ExplorerView::default();
        let (mut from, mut to) = (None, None);
        let mut range = "all";
        let text = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_string());
        for (key, value) in params {
            let f = &mut v.filter;
            match key {
                "q" => f.q = (!value.trim().is_empty()).then(|| value.to_string()),
                "level" => f.level = list(value, Level::parse),
                "category" => f.category = list(value, Category::parse),
                "outcome" => f.outcome = list(value, Outcome::parse),
                "action" => f.action = text(value),
                "user_id" => f.user_id = text(value),
                "entity" => f.entity = text(value),
                "source" => f.source = text(value),
                "submitted_by" => f.submitted_by = text(value),
                "session_id" => f.session_id = text(value),
                "correlation_id" => f.correlation_id = text(value),
                "min_risk" => f.min_risk = value.parse().ok().filter(|r| *r <= 100),
                "max_risk" => f.max_risk = value.parse().ok().filter(|r| *r <= 100),
                "range" => range = if value.is_empty() { "all" } else { value },
                "from" => from = time(value),
                "to" => to = time(value),
                "live" => v.paused = value == "0",
                "sort" => v.order = EventOrder::parse(value).unwrap_or_default(),
                _ => {}
            }
        }
        v.range = TimeRange::PRESETS
            .iter()
            .find(|(_, n, _)| *n == range)
            .map(|(r, _, _)| *r)
            .unwrap_or(TimeRange::Custom { from, to });
        if range == "custom" || from.is_some() || to.is_some() {
            v.range = TimeRange::Custom { from, to };
        }
        v
    }

    /// The URL query string (`?q=...&level=error`), empty for the default view. Stable order,
    /// so equal views give equal URLs.
    pub fn to_query(&self) -> String {
        let f = &self.filter;
        let mut pairs: Vec<(&str, String)> = Vec::new();
        let mut push = |k: &'static str, v: Option<String>| {
            if let Some(v) = v.filter(|v| !v.is_empty()) {
                pairs.push((k, v));
            }
        };
        let join = |items: Vec<&str>| Some(items.join(","));
        push("q", f.q.clone());
        push("level", join(f.level.iter().map(|l| l.as_str()).collect()));
        push(
            "category",
            join(f.category.iter().map(|c| c.as_str()).collect()),
        );
        push(
            "outcome",
            join(f.outcome.iter().map(|o| o.as_str()).collect()),
        );
        push("action", f.action.clone());
        push("user_id", f.user_id.clone());
        push("entity", f.entity.clone());
        push("source", f.source.clone());
        push("submitted_by", f.submitted_by.clone());
        push("session_id", f.session_id.clone());
        push("correlation_id", f.correlation_id.clone());
        push("min_risk", f.min_risk.map(|r| r.to_string()));
        push("max_risk", f.max_risk.map(|r| r.to_string()));
        match self.range {
            TimeRange::All => {}
            TimeRange::Custom { from, to } => {
                push("range", Some("custom".into()));
                push("from", from.map(|t| t.to_rfc3339()));
                push("to", to.map(|t| t.to_rfc3339()));
            }
            preset => push("range", Some(preset.name().into())),
        }
        if self.order != EventOrder::default() {
            push("sort", Some(self.order.as_param()));
        }
        if self.paused {
            push("live", Some("0".into()));
        }
        if pairs.is_empty() {
            return String::new();
        }
        let body: Vec<String> = pairs
            .iter()
            .map(|(k, v)| format!("{k}={}", encode(v)))
            .collect();
        format!("?{}", body.join("&"))
    }

    /// The filter to query with at `now`: the view's filter plus the range's bounds.
    pub fn effective_filter(&self, now: DateTime<Utc>) -> EventFilter {
        let (start, end) = self.range.bounds(now);
        EventFilter {
            start_date: start,
            end_date: end,
            ..self.filter.clone()
        }
    }

    /// Whether new matching events stream in: the window reaches now.
    pub fn follows_live(&self) -> bool {
        self.range.ends_now()
    }
}

/// Reads a `datetime-local` value as local time at `offset_minutes` east of UTC.
pub fn parse_local(value: &str, offset_minutes: i32) -> Option<DateTime<Utc>> {
    let naive = NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M")
        .or_else(|_| NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S"))
        .ok()?;
    Some(naive.and_utc() - Duration::minutes(i64::from(offset_minutes)))
}

/// Formats `t` for a `datetime-local` input at `offset_minutes`.
pub fn to_local_input(t: DateTime<Utc>, offset_minutes: i32) -> String {
    (t + Duration::minutes(i64::from(offset_minutes)))
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string()
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    }

    fn round_trip(v: &ExplorerView) -> ExplorerView {
        let q = v.to_query();
        let pairs: Vec<(String, String)> = q
            .trim_start_matches('?')
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap();
                (k.to_string(), decode(v))
            })
            .collect();
        ExplorerView::from_params(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    #[test]
    fn views_survive_the_url() {
        let t = DateTime::from_timestamp_millis(1_770_000_000_000).unwrap();
        let views = [
            ExplorerView::default(),
            ExplorerView {
                filter: EventFilter {
                    q: Some("user:alice \"access denied\" -vpn & = ?".into()),
                    level: vec![Level::Error, Level::Critical],
                    category: vec![Category::Security],
                    outcome: vec![Outcome::Denied],
                    action: Some("auth.*".into()),
                    user_id: Some("bob".into()),
                    entity: Some("Q3 report".into()),
                    source: Some("file:/var/log/a.log".into()),
                    submitted_by: Some("token:ci".into()),
                    session_id: Some("s1".into()),
                    correlation_id: Some("c1".into()),
                    min_risk: Some(71),
                    max_risk: Some(100),
                    ..EventFilter::default()
                },
                range: TimeRange::Hour1,
                order: EventOrder::parse("risk:asc").unwrap(),
                paused: true,
            },
            ExplorerView {
                order: EventOrder::by(crate::model::SortField::User),
                ..ExplorerView::default()
            },
            ExplorerView {
                range: TimeRange::Custom {
                    from: Some(t),
                    to: Some(t + Duration::hours(2)),
                },
                ..ExplorerView::default()
            },
            ExplorerView {
                range: TimeRange::Custom {
                    from: Some(t),
                    to: None,
                },
                ..ExplorerView::default()
            },
        ];
        for v in views {
            assert_eq!(round_trip(&v), v, "{}", v.to_query());
        }
        assert_eq!(ExplorerView::default().to_query(), "");
    }

    #[test]
    fn unreadable_values_are_left_out() {
        let v =
            ExplorerView::from_params([("level", "error,loud"), ("min_risk", "900"), ("zzz", "1")]);
        assert_eq!(v.filter.level, vec![Level::Error]);
        assert_eq!(v.filter.min_risk, None);
        let v = ExplorerView::from_params([("sort", "loudness:desc")]);
        assert_eq!(v.order, EventOrder::default());
    }

    #[test]
    fn ranges_end_now_unless_they_have_an_end() {
        let now = DateTime::from_timestamp_millis(1_770_000_000_000).unwrap();
        let hour = ExplorerView {
            range: TimeRange::Hour1,
            ..Default::default()
        };
        assert!(hour.follows_live());
        let f = hour.effective_filter(now);
        assert_eq!(f.start_date, Some(now - Duration::hours(1)));
        assert_eq!(f.end_date, None);
        let past = ExplorerView {
            range: TimeRange::Custom {
                from: None,
                to: Some(now),
            },
            ..Default::default()
        };
        assert!(!past.follows_live());
    }

    #[test]
    fn local_inputs_round_trip_through_the_offset() {
        let t = DateTime::from_timestamp_millis(1_770_000_000_000).unwrap();
        for off in [-300, 0, 60, 330] {
            let text = to_local_input(t, off);
            assert_eq!(parse_local(&text, off), Some(t), "{off}: {text}");
        }
        assert_eq!(parse_local("nonsense", 0), None);
    }
}
