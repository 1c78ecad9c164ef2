//! Analytics over counts: the health score, trends, heatmap intensities and the anomaly rules
//! with their thresholds and hysteresis, plus the JSON shapes the dashboard and the REST API
//! share, and metrics from the numbers inside events (`aggregate`). Pure and shared by both
//! builds; the server feeds it rollups and scans, the browser live events.

pub mod aggregate;
mod anomaly;
pub mod coverage;

/// Anomalies are graded on the model's scale, which alerts share.
pub use crate::model::Severity;
use crate::model::{StoredEvent, ValueCount};
pub use anomaly::{
    detect, Above, Anomaly, AnomalyConfig, AnomalyInputs, AnomalyKind, AnomalyState, BurstTracker,
    Latch, UserWindow,
};
use serde::{Deserialize, Serialize};

/// Event counts over some span: all, denied, failed, errors (failures plus events at level
/// error or critical) and critical (level critical).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Tally {
    pub n: u64,
    pub denied: u64,
    pub failed: u64,
    pub errors: u64,
    pub critical: u64,
}

impl Tally {
    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &Tally) {
        self.n += other.n;
        self.denied += other.denied;
        self.failed += other.failed;
        self.errors += other.errors;
        self.critical += other.critical;
    }

    /// The tally of one event.
    pub fn of(event: &crate::model::AuditEvent) -> Tally {
        use crate::model::{Level, Outcome};
        Tally {
            n: 1,
            denied: u64::from(event.outcome == Outcome::Denied),
            failed: u64::from(event.outcome == Outcome::Failure),
            errors: u64::from(
                event.outcome == Outcome::Failure
                    || matches!(event.level, Level::Error | Level::Critical),
            ),
            critical: u64::from(event.level == Level::Critical),
        }
    }

    /// Denied events as a percentage of all (0 when there are none).
    pub fn denial_rate(&self) -> f64 {
        percent(self.denied, self.n)
    }

    /// Errors as a percentage of all (0 when there are none).
    pub fn error_rate(&self) -> f64 {
        percent(self.errors, self.n)
    }

    /// Events neither denied nor failed, as a percentage of all (100 when there are none).
    pub fn success_rate(&self) -> f64 {
        if self.n == 0 {
            return 100.0;
        }
        percent(self.n.saturating_sub(self.denied + self.failed), self.n)
    }
}

/// `part / whole` in percent; 0 for an empty whole.
pub fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// Rounds to one decimal, as the JSON shows rates.
pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// The health score, 0–100: `100 − (0.7 × denial rate + 0.3 × error rate)`, rates in percent,
/// rounded to the nearest integer and clamped. An empty span scores 100.
pub fn health_score(t: &Tally) -> u8 {
    let bad = 0.7 * t.denial_rate() + 0.3 * t.error_rate();
    (100.0 - bad).round().clamp(0.0, 100.0) as u8
}

/// Which way the health score moved against the previous span of the same length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum HealthTrend {
    Improving,
    Stable,
    Declining,
}

/// Points the score must move by to count as improving or declining.
pub const HEALTH_TREND_POINTS: i32 = 3;

/// `improving` when the score rose by at least [`HEALTH_TREND_POINTS`], `declining` when it
/// fell by as much, else `stable`.
pub fn health_trend(current: u8, previous: u8) -> HealthTrend {
    let delta = i32::from(current) - i32::from(previous);
    if delta >= HEALTH_TREND_POINTS {
        HealthTrend::Improving
    } else if delta <= -HEALTH_TREND_POINTS {
        HealthTrend::Declining
    } else {
        HealthTrend::Stable
    }
}

/// Which way activity moved against the previous span of the same length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Trend {
    Up,
    Down,
    Stable,
}

/// The relative change in volume that counts as up or down.
pub const TREND_CHANGE: f64 = 0.10;

/// `up` when `current` is at least 10% above `previous`, `down` when at least 10% below,
/// else `stable`. Any activity after none is `up`.
pub fn volume_trend(current: u64, previous: u64) -> Trend {
    if previous == 0 {
        return if current > 0 {
            Trend::Up
        } else {
            Trend::Stable
        };
    }
    let change = (current as f64 - previous as f64) / previous as f64;
    if change >= TREND_CHANGE {
        Trend::Up
    } else if change <= -TREND_CHANGE {
        Trend::Down
    } else {
        Trend::Stable
    }
}

/// One row of the 7-day vs 30-day comparison, in the predecessor's shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct TrendComparison {
    /// `"7d"` or `"30d"`.
    pub period: String,
    pub total_actions: u64,
    pub success_rate: f64,
    pub denial_rate: f64,
    pub avg_actions_per_day: f64,
    /// Against the period of the same length before it.
    pub trend: Trend,
}

impl TrendComparison {
    /// The row for `days` days whose counts are `current`, after a period counting `previous`.
    pub fn new(days: u32, current: &Tally, previous: &Tally) -> TrendComparison {
        TrendComparison {
            period: format!("{days}d"),
            total_actions: current.n,
            success_rate: round1(current.success_rate()),
            denial_rate: round1(current.denial_rate()),
            avg_actions_per_day: round1(current.n as f64 / f64::from(days.max(1))),
            trend: volume_trend(current.n, previous.n),
        }
    }
}

/// A user and how many events they caused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct UserCount {
    pub user: String,
    pub count: u64,
    pub denied: u64,
    pub failed: u64,
}

/// A heatmap cell's intensity against the busiest cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Intensity {
    None,
    Low,
    Medium,
    High,
}

impl Intensity {
    /// The wire name, also the CSS class suffix.
    pub fn as_str(self) -> &'static str {
        match self {
            Intensity::None => "none",
            Intensity::Low => "low",
            Intensity::Medium => "medium",
            Intensity::High => "high",
        }
    }
}

/// One day of the heatmap: its local date, weekday and 24 hourly counts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct HeatDay {
    /// `YYYY-MM-DD`, in the heatmap's time zone.
    pub date: String,
    /// `Mon` … `Sun`.
    pub weekday: String,
    pub hours: Vec<u64>,
}

/// Activity by hour of day over the last seven local days, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Heatmap {
    /// The IANA zone the days and hours are in.
    pub time_zone: String,
    pub days: Vec<HeatDay>,
    /// The busiest cell's count.
    pub max: u64,
    /// Cells with up to `low` events are low, up to `medium` medium, above that high: the
    /// thirds of the non-empty cells by count, so one burst does not wash out the week.
    pub low: u64,
    pub medium: u64,
}

impl Heatmap {
    /// Sets `max`, `low` and `medium` from the cells.
    pub fn set_levels(&mut self) {
        let mut counts: Vec<u64> = self
            .days
            .iter()
            .flat_map(|d| d.hours.iter().copied())
            .filter(|n| *n > 0)
            .collect();
        counts.sort_unstable();
        let at = |i: usize| counts.get(i).copied().unwrap_or(0);
        let last = counts.len().saturating_sub(1);
        self.max = at(last);
        self.low = at(last / 3);
        self.medium = at(last * 2 / 3);
    }

    /// The intensity of a cell holding `count` events.
    pub fn intensity(&self, count: u64) -> Intensity {
        if count == 0 {
            Intensity::None
        } else if count <= self.low {
            Intensity::Low
        } else if count <= self.medium {
            Intensity::Medium
        } else {
            Intensity::High
        }
    }

    /// Adds one event at local `date` and `hour`, if that day is shown; returns whether it was.
    pub fn count(&mut self, date: &str, hour: usize) -> bool {
        let Some(day) = self.days.iter_mut().find(|d| d.date == date) else {
            return false;
        };
        let Some(cell) = day.hours.get_mut(hour) else {
            return false;
        };
        *cell += 1;
        self.max = self.max.max(*cell);
        true
    }
}

/// `GET /api/dashboard/summary`, in the predecessor's shape plus the rates behind the score.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub health_score: u8,
    pub total_actions: u64,
    pub success_rate: f64,
    pub denial_rate: f64,
    pub error_rate: f64,
    /// The health score's direction against the previous span of the same length.
    pub trend: HealthTrend,
    pub previous_health_score: u8,
    pub critical_issues: u64,
    pub spike_detection: SpikeDetection,
    pub range: TimeRange,
}

/// Whether the spike rule is raised now, and the rates it compared.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SpikeDetection {
    pub has_spike: bool,
    pub last_hour: u64,
    pub baseline_per_hour: f64,
}

/// A span of time, epoch milliseconds, `from` inclusive and `to` exclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct TimeRange {
    pub from: i64,
    pub to: i64,
}

impl TimeRange {
    /// The span of the same length just before this one.
    pub fn previous(self) -> TimeRange {
        TimeRange {
            from: self.from - (self.to - self.from),
            to: self.from,
        }
    }
}

/// `GET /api/dashboard/insights`, in the predecessor's shape plus the heatmap.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Insights {
    pub trend_comparison: Vec<TrendComparison>,
    pub anomaly_detection: Vec<Anomaly>,
    pub heatmap: Heatmap,
}

/// `GET /api/v1/events/statistics`: totals and distributions over a time range.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Statistics {
    pub range: TimeRange,
    pub total_events: u64,
    pub active_users: u64,
    pub critical_events: u64,
    pub denied_events: u64,
    pub failed_events: u64,
    /// Failures and events at level error or critical.
    pub error_events: u64,
    pub error_rate: f64,
    pub denial_rate: f64,
    pub by_level: Vec<ValueCount>,
    pub by_category: Vec<ValueCount>,
    pub by_outcome: Vec<ValueCount>,
    /// Events by the channel that brought them (`http`, `otlp`, `syslog:…`, `tail:…`).
    #[serde(default)]
    pub by_source: Vec<ValueCount>,
    pub top_users: Vec<UserCount>,
    pub top_actions: Vec<ValueCount>,
    pub top_denied_actions: Vec<ValueCount>,
    pub recent_critical: Vec<StoredEvent>,
}

/// Events over time, stacked by outcome: one point per bucket, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Timeline {
    /// The bucket width in milliseconds.
    pub bucket_ms: i64,
    pub points: Vec<TimelinePoint>,
}

/// One bucket of the timeline.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct TimelinePoint {
    /// The bucket's start, epoch ms.
    pub start: i64,
    pub success: u64,
    pub failure: u64,
    pub denied: u64,
}

impl Timeline {
    /// Counts one event at `ms` into its bucket, if the timeline covers it.
    pub fn count(&mut self, ms: i64, tally: &Tally) -> bool {
        if self.bucket_ms <= 0 {
            return false;
        }
        let Some(p) = self
            .points
            .iter_mut()
            .find(|p| p.start <= ms && ms < p.start + self.bucket_ms)
        else {
            return false;
        };
        p.denied += tally.denied;
        p.failure += tally.failed;
        p.success += tally.n - tally.denied - tally.failed;
        true
    }
}

/// Everything the dashboard home shows besides the feed, from one server round trip.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Overview {
    pub summary: Summary,
    pub insights: Insights,
    pub statistics: Statistics,
    pub timeline: Timeline,
    /// The newest seq these figures include; live events after it are added by the browser.
    pub as_of: crate::model::Seq,
}

impl Statistics {
    /// The range's counts as a tally.
    pub fn tally(&self) -> Tally {
        Tally {
            n: self.total_events,
            denied: self.denied_events,
            failed: self.failed_events,
            errors: self.error_events,
            critical: self.critical_events,
        }
    }
}

/// Adds one to `value`'s count in a most-frequent-first list, keeping the order. A value not
/// listed joins only if the list is shorter than `cap` (a full top list cannot know whether
/// it now belongs; the next refresh does).
fn bump(list: &mut Vec<ValueCount>, value: &str, cap: usize) {
    match list.iter().position(|v| v.value == value) {
        Some(i) => list[i].count += 1,
        None if list.len() < cap => list.push(ValueCount {
            value: value.to_string(),
            count: 1,
        }),
        None => return,
    }
    list.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
}

/// How many entries the dashboard's top lists and recent critical events hold.
pub const TOP: usize = 10;

impl Overview {
    /// Adds one live event to every figure it belongs in, so the dashboard stays current
    /// without asking the server again. `local` is the event's date (`YYYY-MM-DD`) and hour in
    /// the heatmap's zone. Events at or below `as_of` are already counted and are ignored;
    /// returns whether this one was new.
    ///
    /// What cannot be known locally waits for the next refresh: whether a user is newly
    /// active, a newcomer to a full top list, and the 7-day and 30-day rows.
    pub fn absorb(&mut self, event: &StoredEvent, local: Option<(&str, usize)>) -> bool {
        if event.seq <= self.as_of {
            return false;
        }
        self.as_of = event.seq;
        let e = &event.event;
        let ms = e.timestamp.timestamp_millis();
        let t = Tally::of(e);
        let st = &mut self.statistics;
        if st.range.from <= ms && ms < st.range.to {
            st.total_events += t.n;
            st.denied_events += t.denied;
            st.failed_events += t.failed;
            st.error_events += t.errors;
            st.critical_events += t.critical;
            let all = st.tally();
            st.error_rate = round1(all.error_rate());
            st.denial_rate = round1(all.denial_rate());
            bump(&mut st.by_level, e.level.as_str(), usize::MAX);
            bump(&mut st.by_category, e.category.as_str(), usize::MAX);
            bump(&mut st.by_outcome, e.outcome.as_str(), usize::MAX);
            bump(&mut st.by_source, &e.source.0, usize::MAX);
            bump(&mut st.top_actions, &e.action, TOP);
            if t.denied > 0 {
                bump(&mut st.top_denied_actions, &e.action, TOP);
            }
            if let Some(u) = st.top_users.iter_mut().find(|u| u.user == e.user.id) {
                u.count += 1;
                u.denied += t.denied;
                u.failed += t.failed;
                st.top_users
                    .sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.user.cmp(&b.user)));
            }
            if t.critical > 0 {
                st.recent_critical.insert(0, event.clone());
                st.recent_critical.truncate(TOP);
            }
            let s = &mut self.summary;
            s.total_actions = all.n;
            s.success_rate = round1(all.success_rate());
            s.denial_rate = round1(all.denial_rate());
            s.error_rate = round1(all.error_rate());
            s.health_score = health_score(&all);
            s.trend = health_trend(s.health_score, s.previous_health_score);
            s.critical_issues = all.critical;
            self.timeline.count(ms, &t);
        }
        if let Some((date, hour)) = local {
            self.insights.heatmap.count(date, hour);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(n: u64, denied: u64, errors: u64) -> Tally {
        Tally {
            n,
            denied,
            failed: 0,
            errors,
            critical: 0,
        }
    }

    #[test]
    fn the_health_score_weighs_denials_70_and_errors_30() {
        assert_eq!(health_score(&Tally::default()), 100);
        // 10% denied, 20% errors: 100 - (7 + 6) = 87.
        assert_eq!(health_score(&tally(100, 10, 20)), 87);
        // The seed's example: 83% denied, no errors: 100 - 58.1 = 41.9 -> 42.
        assert_eq!(health_score(&tally(35, 29, 0)), 42);
        assert_eq!(health_score(&tally(10, 10, 10)), 0);
        // 1 of 3 denied: 100 - 23.33 = 76.67 -> 77.
        assert_eq!(health_score(&tally(3, 1, 0)), 77);
    }

    #[test]
    fn health_trends_need_three_points() {
        assert_eq!(health_trend(80, 77), HealthTrend::Improving);
        assert_eq!(health_trend(80, 78), HealthTrend::Stable);
        assert_eq!(health_trend(78, 80), HealthTrend::Stable);
        assert_eq!(health_trend(77, 80), HealthTrend::Declining);
    }

    #[test]
    fn volume_trends_need_ten_percent() {
        assert_eq!(volume_trend(110, 100), Trend::Up);
        assert_eq!(volume_trend(109, 100), Trend::Stable);
        assert_eq!(volume_trend(91, 100), Trend::Stable);
        assert_eq!(volume_trend(90, 100), Trend::Down);
        assert_eq!(volume_trend(1, 0), Trend::Up);
        assert_eq!(volume_trend(0, 0), Trend::Stable);
    }

    #[test]
    fn trend_rows_have_the_seed_shape() {
        let row = TrendComparison::new(7, &tally(35, 29, 0), &tally(0, 0, 0));
        let json = serde_json::to_value(&row).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "period": "7d", "totalActions": 35, "successRate": 17.1,
                "denialRate": 82.9, "avgActionsPerDay": 5.0, "trend": "up"
            })
        );
    }

    fn stored(
        seq: u64,
        ms: i64,
        user: &str,
        action: &str,
        outcome: &str,
        level: &str,
    ) -> StoredEvent {
        serde_json::from_value(serde_json::json!({
            "seq": seq, "eventId": format!("e{seq}"), "receivedAt": "2026-01-01T00:00:00Z",
            "hash": "00", "timestamp": chrono::DateTime::from_timestamp_millis(ms).unwrap(),
            "level": level, "category": "file_management", "action": action,
            "outcome": outcome, "user": {"id": user}, "source": "http"
        }))
        .unwrap()
    }

    fn overview() -> Overview {
        let range = TimeRange { from: 0, to: 100 };
        let statistics = Statistics {
            range,
            total_events: 0,
            active_users: 0,
            critical_events: 0,
            denied_events: 0,
            failed_events: 0,
            error_events: 0,
            error_rate: 0.0,
            denial_rate: 0.0,
            by_level: Vec::new(),
            by_category: Vec::new(),
            by_outcome: Vec::new(),
            by_source: Vec::new(),
            top_users: vec![UserCount {
                user: "alice".into(),
                count: 1,
                denied: 0,
                failed: 0,
            }],
            top_actions: Vec::new(),
            top_denied_actions: Vec::new(),
            recent_critical: Vec::new(),
        };
        Overview {
            summary: Summary {
                health_score: 100,
                total_actions: 0,
                success_rate: 100.0,
                denial_rate: 0.0,
                error_rate: 0.0,
                trend: HealthTrend::Stable,
                previous_health_score: 100,
                critical_issues: 0,
                spike_detection: SpikeDetection {
                    has_spike: false,
                    last_hour: 0,
                    baseline_per_hour: 0.0,
                },
                range,
            },
            insights: Insights {
                trend_comparison: Vec::new(),
                anomaly_detection: Vec::new(),
                heatmap: Heatmap {
                    time_zone: "UTC".into(),
                    days: vec![HeatDay {
                        date: "1970-01-01".into(),
                        weekday: "Thu".into(),
                        hours: vec![0; 24],
                    }],
                    ..Heatmap::default()
                },
            },
            statistics,
            timeline: Timeline {
                bucket_ms: 50,
                points: vec![
                    TimelinePoint::default(),
                    TimelinePoint {
                        start: 50,
                        ..TimelinePoint::default()
                    },
                ],
            },
            as_of: crate::model::Seq(10),
        }
    }

    #[test]
    fn live_events_update_every_figure_they_belong_to_once() {
        let mut o = overview();
        assert!(!o.absorb(&stored(10, 5, "bob", "x", "denied", "info"), None));
        assert!(o.absorb(
            &stored(11, 60, "alice", "file.read", "denied", "critical"),
            Some(("1970-01-01", 0))
        ));
        assert!(o.absorb(&stored(12, 61, "bob", "file.read", "success", "info"), None));
        // Outside the range: only the heatmap counts it.
        assert!(o.absorb(
            &stored(13, 500, "bob", "file.read", "success", "info"),
            Some(("1970-01-01", 3))
        ));
        assert!(!o.absorb(&stored(12, 61, "bob", "file.read", "success", "info"), None));
        let st = &o.statistics;
        assert_eq!(
            (
                st.total_events,
                st.denied_events,
                st.critical_events,
                st.error_events
            ),
            (2, 1, 1, 1)
        );
        assert_eq!(st.denial_rate, 50.0);
        assert_eq!(st.top_users[0].count, 2);
        assert_eq!(st.top_users[0].denied, 1);
        assert_eq!(
            st.top_actions,
            [ValueCount {
                value: "file.read".into(),
                count: 2
            }]
        );
        assert_eq!(st.recent_critical.len(), 1);
        // 100 - (0.7 * 50 + 0.3 * 50) = 50.
        assert_eq!(o.summary.health_score, 50);
        assert_eq!(o.summary.trend, HealthTrend::Declining);
        assert_eq!(o.timeline.points[1].denied, 1);
        assert_eq!(o.timeline.points[1].success, 1);
        assert_eq!(o.insights.heatmap.days[0].hours[0], 1);
        assert_eq!(o.insights.heatmap.days[0].hours[3], 1);
        assert_eq!(o.insights.heatmap.max, 1);
        assert_eq!(o.as_of, crate::model::Seq(13));
    }

    #[test]
    fn intensities_split_the_busy_cells_in_thirds() {
        let mut hours = vec![0; 24];
        for (h, n) in (1..=9).enumerate() {
            hours[h] = n;
        }
        let mut map = Heatmap {
            days: vec![HeatDay {
                date: "2026-01-01".into(),
                weekday: "Thu".into(),
                hours,
            }],
            ..Heatmap::default()
        };
        map.set_levels();
        assert_eq!((map.max, map.low, map.medium), (9, 3, 6));
        assert_eq!(map.intensity(0), Intensity::None);
        assert_eq!(map.intensity(3), Intensity::Low);
        assert_eq!(map.intensity(4), Intensity::Medium);
        assert_eq!(map.intensity(6), Intensity::Medium);
        assert_eq!(map.intensity(7), Intensity::High);
        // One burst of 300 leaves the rest of the week readable.
        map.days[0].hours[23] = 300;
        map.set_levels();
        assert_eq!(map.intensity(9), Intensity::High);
        assert_eq!(map.intensity(300), Intensity::High);
        assert_eq!(map.intensity(1), Intensity::Low);
    }

    #[test]
    fn timelines_count_events_into_their_bucket() {
        let mut t = Timeline {
            bucket_ms: 10,
            points: vec![
                TimelinePoint {
                    start: 0,
                    ..TimelinePoint::default()
                },
                TimelinePoint {
                    start: 10,
                    ..TimelinePoint::default()
                },
            ],
        };
        let denied = Tally {
            n: 1,
            denied: 1,
            ..Tally::default()
        };
        assert!(t.count(10, &denied));
        assert!(!t.count(20, &denied));
        assert_eq!(t.points[1].denied, 1);
        assert_eq!(t.points[0].denied, 0);
    }
}
