//! Audit coverage: whether each kind of action that should be audited still is. Actions come
//! from a catalogue of expected ones (`[coverage] expected`, an action or a prefix such as
//! `auth.*`, each with how long it may stay silent) and from what was learned: an action seen
//! on at least [`LEARNED_MIN_DAYS`] of the last 30 days is expected to keep coming at its
//! usual rate. Each gets a status: `never` (no event of it at all), `silent` (none within its
//! window) or `ok`. Pure: the server feeds it the hourly counts by action.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// The span looked at: the last 30 days.
pub const WINDOW_DAYS: i64 = 30;

/// An action seen on at least this many distinct days of the last 30 is learned.
pub const LEARNED_MIN_DAYS: usize = 7;

/// A learned action may stay silent this many of its usual gaps between events, and at least
/// a day.
pub const LEARNED_GAPS: i64 = 3;

/// `[coverage]` in the config file: the catalogue of expected actions, checked as it is read
/// (`expected = [{ action = "agent.delete", silent = "7d" }]`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "CatalogueFile")]
pub struct Catalogue {
    pub expected: Vec<Expected>,
}

/// [`Catalogue`] as written, before it is checked.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogueFile {
    #[serde(default)]
    expected: Vec<Expected>,
}

impl TryFrom<CatalogueFile> for Catalogue {
    type Error = String;

    fn try_from(file: CatalogueFile) -> Result<Catalogue, String> {
        check(&file.expected)?;
        Ok(Catalogue {
            expected: file.expected,
        })
    }
}

/// One entry of the catalogue: an action, or a prefix ending in `*`, and how long it may go
/// without an event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expected {
    pub action: String,
    /// `<n>h` or `<n>d`, as written in the catalogue.
    pub silent: String,
}

impl Expected {
    /// The silence window in milliseconds.
    ///
    /// # Errors
    /// A message naming the entry and what is accepted.
    pub fn window_ms(&self) -> Result<i64, String> {
        let bad = || {
            format!(
                "coverage: {:?} has silent = {:?}; use hours or days such as \"12h\" or \"7d\"",
                self.action, self.silent
            )
        };
        let s = self.silent.trim();
        let (n, unit) = s.split_at(s.len().saturating_sub(1));
        let n: i64 = n.parse().map_err(|_| bad())?;
        let unit = match unit {
            "h" => HOUR_MS,
            "d" => DAY_MS,
            _ => return Err(bad()),
        };
        match n {
            1..=3660 => Ok(n * unit),
            _ => Err(bad()),
        }
    }

    /// Whether `action` is this entry's (the same, or under its prefix).
    pub fn covers(&self, action: &str) -> bool {
        match self.action.strip_suffix('*') {
            Some(prefix) => action.starts_with(prefix),
            None => action == self.action,
        }
    }
}

/// Checks a catalogue as the configuration gives it.
///
/// # Errors
/// The first bad entry, named.
pub fn check(expected: &[Expected]) -> Result<(), String> {
    for e in expected {
        if e.action.trim().is_empty() || e.action.trim_end_matches('*').is_empty() {
            return Err(format!(
                "coverage: an expected action is empty ({:?})",
                e.action
            ));
        }
        e.window_ms()?;
    }
    Ok(())
}

/// The state of one expected or learned action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum CoverageStatus {
    /// Never audited: no event of it is stored.
    Never,
    /// Silent past its window.
    Silent,
    Ok,
}

/// One row of `GET /api/v1/coverage`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct CoverageEntry {
    /// The action, or the catalogue's prefix (`auth.*`).
    pub action: String,
    /// `expected` (from the catalogue) or `learned`.
    pub origin: String,
    pub status: CoverageStatus,
    /// How long it may go without an event, in milliseconds.
    pub window_ms: i64,
    /// The start of the last hour (epoch ms, by event time) with an event of it in the last
    /// 30 days; `null` when there was none.
    pub last_seen_hour: Option<i64>,
    pub count_7d: u64,
    pub count_30d: u64,
    /// Events of it stored at all, over every day.
    pub total: u64,
    /// Its usual rate over the last 30 days, events per day.
    pub per_day: f64,
}

/// `GET /api/v1/coverage`'s answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Coverage {
    /// When it was worked out, epoch ms.
    pub at: i64,
    /// Silent and never-seen first, then by action.
    pub entries: Vec<CoverageEntry>,
}

/// Works out the coverage at `now` (epoch ms) from the hourly counts by action of the last
/// 30 days (`(hour, action, n)`, hours as epoch hours) and each action's count over all time.
pub fn coverage(
    expected: &[Expected],
    hours: &[(i64, String, u64)],
    totals: &BTreeMap<String, u64>,
    now: i64,
) -> Coverage {
    let since_7d = now - 7 * DAY_MS;
    // Per action: last hour seen, 7-day and 30-day counts, and the days it was seen on.
    #[derive(Default)]
    struct Seen {
        last: Option<i64>,
        c7: u64,
        c30: u64,
        days: BTreeSet<i64>,
    }
    let mut seen: BTreeMap<&str, Seen> = BTreeMap::new();
    for (hour, action, n) in hours {
        let start = hour * HOUR_MS;
        let s = seen.entry(action.as_str()).or_default();
        s.last = s.last.max(Some(start));
        s.c30 += n;
        if start + HOUR_MS > since_7d {
            s.c7 += n;
        }
        s.days.insert(start.div_euclid(DAY_MS));
    }
    let status = |last: Option<i64>, total: u64, window: i64| match (last, total) {
        (_, 0) => CoverageStatus::Never,
        // The hour's end is the latest the event can have been.
        (Some(last), _) if now - (last + HOUR_MS) <= window => CoverageStatus::Ok,
        _ => CoverageStatus::Silent,
    };
    let mut entries = Vec::new();
    for e in expected {
        let Ok(window) = e.window_ms() else { continue };
        let mine: Vec<&Seen> = seen
            .iter()
            .filter(|(a, _)| e.covers(a))
            .map(|(_, s)| s)
            .collect();
        let last = mine.iter().filter_map(|s| s.last).max();
        let c7 = mine.iter().map(|s| s.c7).sum();
        let c30: u64 = mine.iter().map(|s| s.c30).sum();
        let total = totals
            .iter()
            .filter(|(a, _)| e.covers(a))
            .map(|(_, n)| *n)
            .sum::<u64>()
            .max(c30);
        entries.push(CoverageEntry {
            action: e.action.clone(),
            origin: "expected".into(),
            status: status(last, total, window),
            window_ms: window,
            last_seen_hour: last,
            count_7d: c7,
            count_30d: c30,
            total,
            per_day: c30 as f64 / WINDOW_DAYS as f64,
        });
    }
    for (action, s) in &seen {
        if expected.iter().any(|e| e.covers(action)) || s.days.len() < LEARNED_MIN_DAYS {
            continue;
        }
        // The usual gap between its events over the 30 days, and the window it allows.
        let gap = WINDOW_DAYS * DAY_MS / i64::try_from(s.c30.max(1)).unwrap_or(i64::MAX);
        let window = (LEARNED_GAPS * gap).max(DAY_MS);
        let total = totals.get(*action).copied().unwrap_or(0).max(s.c30);
        entries.push(CoverageEntry {
            action: action.to_string(),
            origin: "learned".into(),
            status: status(s.last, total, window),
            window_ms: window,
            last_seen_hour: s.last,
            count_7d: s.c7,
            count_30d: s.c30,
            total,
            per_day: s.c30 as f64 / WINDOW_DAYS as f64,
        });
    }
    let rank = |s: CoverageStatus| match s {
        CoverageStatus::Silent => 0,
        CoverageStatus::Never => 1,
        CoverageStatus::Ok => 2,
    };
    entries.sort_by(|a, b| {
        rank(a.status)
            .cmp(&rank(b.status))
            .then_with(|| a.action.cmp(&b.action))
    });
    Coverage { at: now, entries }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_000 * DAY_MS;

    fn hour(days_ago: i64, hours_ago: i64) -> i64 {
        (NOW - days_ago * DAY_MS - hours_ago * HOUR_MS).div_euclid(HOUR_MS)
    }

    fn expected(action: &str, silent: &str) -> Expected {
        Expected {
            action: action.into(),
            silent: silent.into(),
        }
    }

    #[test]
    fn expected_actions_are_ok_silent_or_never() {
        let hours = vec![
            (hour(0, 2), "auth.login".to_string(), 5),
            (hour(3, 0), "auth.logout".to_string(), 1),
            (hour(9, 0), "agent.delete".to_string(), 2),
        ];
        let totals = BTreeMap::from([
            ("auth.login".to_string(), 500),
            ("auth.logout".to_string(), 40),
            ("agent.delete".to_string(), 2),
            ("settings.change".to_string(), 3),
        ]);
        let c = coverage(
            &[
                expected("auth.*", "1d"),
                expected("agent.delete", "7d"),
                expected("agent.create", "7d"),
                expected("settings.change", "7d"),
            ],
            &hours,
            &totals,
            NOW,
        );
        let by: BTreeMap<&str, &CoverageEntry> =
            c.entries.iter().map(|e| (e.action.as_str(), e)).collect();
        assert_eq!(by["auth.*"].status, CoverageStatus::Ok);
        assert_eq!(by["auth.*"].count_30d, 6);
        assert_eq!(by["auth.*"].count_7d, 6);
        assert_eq!(by["auth.*"].total, 540);
        assert_eq!(by["agent.delete"].status, CoverageStatus::Silent);
        assert_eq!(by["agent.delete"].count_7d, 0);
        assert_eq!(by["agent.create"].status, CoverageStatus::Never);
        // Stored long ago, nothing in 30 days: silent, not never.
        assert_eq!(by["settings.change"].status, CoverageStatus::Silent);
        assert_eq!(by["settings.change"].last_seen_hour, None);
        // Silent and never first.
        assert_eq!(c.entries[0].status, CoverageStatus::Silent);
        assert_eq!(c.entries.last().map(|e| e.status), Some(CoverageStatus::Ok));
    }

    #[test]
    fn a_regular_action_is_learned_and_flagged_when_it_stops() {
        // Daily for 20 days, then nothing for the last 5.
        let mut hours: Vec<(i64, String, u64)> = (5..25)
            .map(|d| (hour(d, 0), "report.export".to_string(), 1))
            .collect();
        // Seen on 3 days only: not learned.
        hours.extend((0..3).map(|d| (hour(d, 0), "rare.thing".to_string(), 1)));
        let c = coverage(&[], &hours, &BTreeMap::new(), NOW);
        assert_eq!(c.entries.len(), 1, "{c:?}");
        let e = &c.entries[0];
        assert_eq!(
            (e.action.as_str(), e.origin.as_str()),
            ("report.export", "learned")
        );
        // 20 events in 30 days: a gap of 1.5 days, three of them 4.5 days.
        assert_eq!(e.window_ms, 3 * (30 * DAY_MS / 20));
        assert_eq!(e.status, CoverageStatus::Silent);
        // Back today: ok again.
        hours.push((hour(0, 1), "report.export".to_string(), 1));
        let c = coverage(&[], &hours, &BTreeMap::new(), NOW);
        assert_eq!(c.entries[0].status, CoverageStatus::Ok);
    }

    #[test]
    fn bad_catalogue_entries_are_named() {
        assert!(check(&[expected("auth.*", "12h")]).is_ok());
        assert!(check(&[expected("x", "7w")]).unwrap_err().contains("\"x\""));
        assert!(check(&[expected("*", "1d")]).is_err());
        assert!(check(&[expected("x", "0d")]).is_err());
    }
}
