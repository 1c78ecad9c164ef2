//! Analytics over counts: the health score, trends, heatmap intensities and the anomaly rules
//! with their thresholds and hysteresis, plus the JSON shapes the dashboard and the REST API
//! share. Pure and shared by both builds; the server feeds it rollups, the browser live events.

use crate::model::{StoredEvent, ValueCount};
use serde::{Deserialize, Serialize};

/// Event counts over some span: all, denied, failed, errors (failures plus events at level
/// error or critical) and critical (level critical).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
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
pub struct UserCount {
    pub user: String,
    pub count: u64,
    pub denied: u64,
    pub failed: u64,
}

/// The kinds of anomaly, with their wire names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyKind {
    UnusualSpike,
    UnusualDip,
    TimeAnomaly,
    UserAnomaly,
    FailedLoginBurst,
}

impl AnomalyKind {
    /// The metric each kind watches.
    pub fn metric(self) -> &'static str {
        match self {
            AnomalyKind::UnusualSpike | AnomalyKind::UnusualDip => "activity_rate",
            AnomalyKind::TimeAnomaly => "night_activity_share",
            AnomalyKind::UserAnomaly => "user_activity_share",
            AnomalyKind::FailedLoginBurst => "authentication_failures",
        }
    }
}

/// How serious an anomaly or alert is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

/// One detected anomaly, in the predecessor's shape plus when it started (epoch ms).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Anomaly {
    pub detected: bool,
    #[serde(rename = "type")]
    pub kind: AnomalyKind,
    pub description: String,
    pub severity: Severity,
    pub affected_metric: String,
    pub started_at: i64,
    /// The value that tripped it (a ratio or a share in percent, or a count for bursts).
    pub value: f64,
    /// Whom it concerns, for user anomalies and login bursts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

/// Thresholds of the anomaly rules; the defaults are the predecessor's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "snake_case", deny_unknown_fields)]
pub struct AnomalyConfig {
    /// A spike: the last hour at least this many times the baseline hourly rate.
    pub spike_ratio: f64,
    /// A dip: the last hour below this fraction of the baseline hourly rate.
    pub dip_ratio: f64,
    /// How many hours before the last one make the baseline.
    pub baseline_hours: u32,
    /// The baseline rate never counts as less than this many events per hour, so the first
    /// events after a quiet spell are compared against something.
    pub baseline_floor: f64,
    /// A spike needs at least this many events in the last hour.
    pub min_hour_events: u64,
    /// A dip needs a baseline of at least this many events per hour.
    pub min_baseline_events: f64,
    /// Night activity: at least this fraction of the window's events at night.
    pub night_share: f64,
    /// The night, in minutes after local midnight: from `night_start` to `night_end`.
    pub night_start: u32,
    pub night_end: u32,
    /// User anomaly: one user at least this fraction of the window's events.
    pub user_share: f64,
    /// Night and user anomalies look at this many hours up to now.
    pub window_hours: u32,
    /// Night and user anomalies need at least this many events in the window.
    pub min_window_events: u64,
    /// A user anomaly needs at least this many active users (one user alone is no anomaly).
    pub min_users: u64,
    /// A login burst: this many authentication failures for one user or address...
    pub burst_failures: u64,
    /// ...within this many minutes.
    pub burst_minutes: u32,
    /// An anomaly, once raised, clears only when its measure is this fraction past the
    /// threshold on the safe side (0.2: a spike raised at 3.0× clears below 2.4×).
    pub hysteresis: f64,
}

impl Default for AnomalyConfig {
    fn default() -> Self {
        AnomalyConfig {
            spike_ratio: 3.0,
            dip_ratio: 0.3,
            baseline_hours: 24,
            baseline_floor: 1.0,
            min_hour_events: 30,
            min_baseline_events: 30.0,
            night_share: 0.30,
            night_start: 22 * 60,
            night_end: 6 * 60,
            user_share: 0.70,
            window_hours: 24,
            min_window_events: 50,
            min_users: 2,
            burst_failures: 5,
            burst_minutes: 5,
            hysteresis: 0.2,
        }
    }
}

impl AnomalyConfig {
    /// Whether a local time, in minutes after midnight, falls in the night window
    /// (`[night_start, night_end)`, wrapping past midnight).
    pub fn is_night(&self, minute_of_day: u32) -> bool {
        let (start, end) = (self.night_start, self.night_end);
        if start <= end {
            (start..end).contains(&minute_of_day)
        } else {
            minute_of_day >= start || minute_of_day < end
        }
    }
}

/// A threshold with hysteresis: raised when the measure crosses `enter`, cleared only when it
/// falls back past `exit`, and never raised without enough volume.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Latch {
    /// When it was raised (epoch ms), while raised.
    pub since: Option<i64>,
}

/// Which side of the threshold is abnormal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Above {
    /// High values are abnormal (spikes, shares).
    High,
    /// Low values are abnormal (dips).
    Low,
}

impl Latch {
    /// Feeds the latest measure; returns whether the latch is raised after it. Without
    /// `enough_volume` a raised latch clears and a clear one stays clear.
    pub fn update(
        &mut self,
        value: f64,
        threshold: f64,
        side: Above,
        hysteresis: f64,
        enough_volume: bool,
        now_ms: i64,
    ) -> bool {
        // Thresholds such as 3.0 × 0.8 are not exact in binary; a measure equal to one on
        // paper must compare as equal.
        const EPS: f64 = 1e-9;
        let abnormal = match side {
            Above::High => value >= threshold - EPS,
            Above::Low => value < threshold - EPS,
        };
        let still = match side {
            Above::High => value >= threshold * (1.0 - hysteresis) - EPS,
            Above::Low => value < threshold * (1.0 + hysteresis) - EPS,
        };
        self.since = match (self.since, enough_volume) {
            (_, false) => None,
            (None, true) => abnormal.then_some(now_ms),
            (Some(since), true) => still.then_some(since),
        };
        self.since.is_some()
    }
}

/// The counts the anomaly rules look at, gathered by the server from the rollups.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AnomalyInputs {
    /// Events in the last hour.
    pub last_hour: u64,
    /// Events in the `baseline_hours` before it.
    pub baseline: u64,
    /// Events in the window, and how many of them at night.
    pub window: u64,
    pub window_night: u64,
    /// The window's most active user, their count, and how many users were active.
    pub top_user: Option<(String, u64)>,
    pub active_users: u64,
    /// Users or addresses with a burst of authentication failures: (subject, failures,
    /// when the burst began).
    pub bursts: Vec<(String, u64, i64)>,
}

/// The latches of the rate and share rules, kept between evaluations.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AnomalyState {
    pub spike: Latch,
    pub dip: Latch,
    pub night: Latch,
    pub user: Latch,
}

/// Evaluates every rule against `inputs`, updating the latches in `state`; returns the
/// anomalies that are raised, in kind order.
pub fn detect(
    cfg: &AnomalyConfig,
    state: &mut AnomalyState,
    inputs: &AnomalyInputs,
    now_ms: i64,
) -> Vec<Anomaly> {
    let mut out = Vec::new();
    let hours = f64::from(cfg.baseline_hours.max(1));
    let baseline_rate = inputs.baseline as f64 / hours;
    let compared = baseline_rate.max(cfg.baseline_floor).max(f64::MIN_POSITIVE);
    let ratio = inputs.last_hour as f64 / compared;
    let h = cfg.hysteresis;

    let spike_volume = inputs.last_hour >= cfg.min_hour_events;
    if state
        .spike
        .update(ratio, cfg.spike_ratio, Above::High, h, spike_volume, now_ms)
    {
        out.push(Anomaly {
            detected: true,
            kind: AnomalyKind::UnusualSpike,
            description: format!(
                "Activity spiked to {} actions/hour (was {})",
                inputs.last_hour,
                fmt_rate(baseline_rate)
            ),
            severity: Severity::Warning,
            affected_metric: AnomalyKind::UnusualSpike.metric().into(),
            started_at: state.spike.since.unwrap_or(now_ms),
            value: round1(ratio),
            subject: None,
        });
    }
    let dip_volume = baseline_rate >= cfg.min_baseline_events;
    if state
        .dip
        .update(ratio, cfg.dip_ratio, Above::Low, h, dip_volume, now_ms)
    {
        out.push(Anomaly {
            detected: true,
            kind: AnomalyKind::UnusualDip,
            description: format!(
                "Activity dropped to {} actions/hour (normally {})",
                inputs.last_hour,
                fmt_rate(baseline_rate)
            ),
            severity: Severity::Warning,
            affected_metric: AnomalyKind::UnusualDip.metric().into(),
            started_at: state.dip.since.unwrap_or(now_ms),
            value: round1(ratio),
            subject: None,
        });
    }
    let window_volume = inputs.window >= cfg.min_window_events;
    let night = if inputs.window == 0 {
        0.0
    } else {
        inputs.window_night as f64 / inputs.window as f64
    };
    if state.night.update(
        night,
        cfg.night_share,
        Above::High,
        h,
        window_volume,
        now_ms,
    ) {
        out.push(Anomaly {
            detected: true,
            kind: AnomalyKind::TimeAnomaly,
            description: format!(
                "{}% of the last {} hours' activity happened at night ({} of {})",
                round1(night * 100.0),
                cfg.window_hours,
                inputs.window_night,
                inputs.window
            ),
            severity: Severity::Warning,
            affected_metric: AnomalyKind::TimeAnomaly.metric().into(),
            started_at: state.night.since.unwrap_or(now_ms),
            value: round1(night * 100.0),
            subject: None,
        });
    }
    let (top, top_n) = inputs.top_user.clone().unwrap_or_default();
    let share = if inputs.window == 0 {
        0.0
    } else {
        top_n as f64 / inputs.window as f64
    };
    let user_volume = window_volume && inputs.active_users >= cfg.min_users;
    if state
        .user
        .update(share, cfg.user_share, Above::High, h, user_volume, now_ms)
    {
        out.push(Anomaly {
            detected: true,
            kind: AnomalyKind::UserAnomaly,
            description: format!(
                "{top} accounts for {}% of the last {} hours' activity ({top_n} of {})",
                round1(share * 100.0),
                cfg.window_hours,
                inputs.window
            ),
            severity: Severity::Warning,
            affected_metric: AnomalyKind::UserAnomaly.metric().into(),
            started_at: state.user.since.unwrap_or(now_ms),
            value: round1(share * 100.0),
            subject: Some(top),
        });
    }
    for (subject, failures, since) in &inputs.bursts {
        out.push(Anomaly {
            detected: true,
            kind: AnomalyKind::FailedLoginBurst,
            description: format!(
                "{failures} failed authentications for {subject} within {} minutes",
                cfg.burst_minutes
            ),
            severity: Severity::Critical,
            affected_metric: AnomalyKind::FailedLoginBurst.metric().into(),
            started_at: *since,
            value: *failures as f64,
            subject: Some(subject.clone()),
        });
    }
    out
}

/// Authentication failures per subject (a user or an address) over a sliding window, with the
/// bursts that are raised. A burst is raised at `burst_failures` within `burst_minutes` and
/// cleared once the window holds fewer than that less the hysteresis.
#[derive(Clone, Debug, Default)]
pub struct BurstTracker {
    seen: std::collections::HashMap<String, std::collections::VecDeque<i64>>,
    raised: std::collections::HashMap<String, i64>,
}

impl BurstTracker {
    /// Records one failure of `subject` at `ms`.
    pub fn record(&mut self, subject: &str, ms: i64, cfg: &AnomalyConfig) {
        let window = i64::from(cfg.burst_minutes.max(1)) * 60_000;
        let times = self.seen.entry(subject.to_string()).or_default();
        // Events arrive nearly in time order; an old one is placed where it belongs.
        let at = times.partition_point(|t| *t <= ms);
        times.insert(at, ms);
        let newest = times.back().copied().unwrap_or(ms);
        while times.front().is_some_and(|t| *t <= newest - window) {
            times.pop_front();
        }
        // A subject's failures are bounded by what can be raised: keep no more than needed.
        let keep = usize::try_from(cfg.burst_failures.max(1) * 4).unwrap_or(usize::MAX);
        while times.len() > keep {
            times.pop_front();
        }
    }

    /// The bursts raised as of `now_ms`: (subject, failures in the window, when it began),
    /// largest first. Forgets subjects with nothing left in the window.
    pub fn active(&mut self, now_ms: i64, cfg: &AnomalyConfig) -> Vec<(String, u64, i64)> {
        let window = i64::from(cfg.burst_minutes.max(1)) * 60_000;
        let enter = cfg.burst_failures.max(1) as f64;
        let exit = enter * (1.0 - cfg.hysteresis);
        let mut out = Vec::new();
        self.seen.retain(|subject, times| {
            let n = times.iter().filter(|t| **t > now_ms - window).count() as f64;
            let raised = match self.raised.get(subject) {
                Some(_) => n >= exit,
                None => n >= enter,
            };
            if raised {
                let since = *self
                    .raised
                    .entry(subject.clone())
                    .or_insert_with(|| times.front().copied().unwrap_or(now_ms));
                out.push((subject.clone(), n as u64, since));
            } else {
                self.raised.remove(subject);
            }
            n > 0.0
        });
        out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        out
    }
}

/// Events per user over the last `hours` hours of event time, kept up to date event by event
/// so the user anomaly never has to group a day of rollups: the most active user and the
/// number of active users cost one pass over the totals.
#[derive(Clone, Debug, Default)]
pub struct UserWindow {
    /// Per hour (epoch hours), per user.
    by_hour: std::collections::BTreeMap<i64, std::collections::HashMap<String, u64>>,
    totals: std::collections::HashMap<String, u64>,
    /// The newest hour the window has been moved to.
    newest: i64,
}

impl UserWindow {
    /// Counts `n` events of `user` in epoch hour `hour`, if the window still covers it.
    pub fn add(&mut self, user: &str, hour: i64, n: u64, hours: u32) {
        if hour <= self.newest - i64::from(hours.max(1)) {
            return;
        }
        *self
            .by_hour
            .entry(hour)
            .or_default()
            .entry(user.to_string())
            .or_default() += n;
        *self.totals.entry(user.to_string()).or_default() += n;
    }

    /// Moves the window to end at epoch hour `now_hour`, dropping the hours before it.
    pub fn advance(&mut self, now_hour: i64, hours: u32) {
        self.newest = self.newest.max(now_hour);
        let first = self.newest - i64::from(hours.max(1)) + 1;
        while let Some(entry) = self.by_hour.first_entry() {
            if *entry.key() >= first {
                break;
            }
            for (user, n) in entry.remove() {
                if let Some(t) = self.totals.get_mut(&user) {
                    *t = t.saturating_sub(n);
                    if *t == 0 {
                        self.totals.remove(&user);
                    }
                }
            }
        }
    }

    /// The most active user with their count (ties: the first name), and how many users
    /// acted, as of the last [`UserWindow::advance`].
    pub fn top(&self) -> (Option<(String, u64)>, u64) {
        let top = self
            .totals
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
            .map(|(u, n)| (u.clone(), *n));
        (top, self.totals.len() as u64)
    }
}

/// An hourly rate for a sentence: whole numbers when large, one decimal when small.
fn fmt_rate(rate: f64) -> String {
    if rate >= 10.0 {
        format!("{}", rate.round())
    } else {
        format!("{}", round1(rate))
    }
}

/// A heatmap cell's intensity against the busiest cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
#[serde(rename_all = "camelCase")]
pub struct SpikeDetection {
    pub has_spike: bool,
    pub last_hour: u64,
    pub baseline_per_hour: f64,
}

/// A span of time, epoch milliseconds, `from` inclusive and `to` exclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
#[serde(rename_all = "camelCase")]
pub struct Insights {
    pub trend_comparison: Vec<TrendComparison>,
    pub anomaly_detection: Vec<Anomaly>,
    pub heatmap: Heatmap,
}

/// `GET /api/v1/events/statistics`: totals and distributions over a time range.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
    pub top_users: Vec<UserCount>,
    pub top_actions: Vec<ValueCount>,
    pub top_denied_actions: Vec<ValueCount>,
    pub recent_critical: Vec<StoredEvent>,
}

/// Events over time, stacked by outcome: one point per bucket, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Timeline {
    /// The bucket width in milliseconds.
    pub bucket_ms: i64,
    pub points: Vec<TimelinePoint>,
}

/// One bucket of the timeline.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
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

    fn inputs(last_hour: u64, baseline: u64) -> AnomalyInputs {
        AnomalyInputs {
            last_hour,
            baseline,
            ..AnomalyInputs::default()
        }
    }

    fn kinds(found: &[Anomaly]) -> Vec<AnomalyKind> {
        found.iter().map(|a| a.kind).collect()
    }

    #[test]
    fn a_spike_fires_at_three_times_the_baseline_and_not_at_2_9() {
        let cfg = AnomalyConfig::default();
        // Baseline 24 hours at 100/h.
        let mut state = AnomalyState::default();
        assert!(detect(&cfg, &mut state, &inputs(290, 2400), 0).is_empty());
        let mut state = AnomalyState::default();
        let found = detect(&cfg, &mut state, &inputs(300, 2400), 7);
        assert_eq!(kinds(&found), [AnomalyKind::UnusualSpike]);
        assert_eq!(found[0].started_at, 7);
        assert_eq!(found[0].value, 3.0);
        assert_eq!(
            found[0].description,
            "Activity spiked to 300 actions/hour (was 100)"
        );
        assert_eq!(found[0].affected_metric, "activity_rate");
    }

    #[test]
    fn a_raised_spike_holds_until_it_falls_past_the_hysteresis() {
        let cfg = AnomalyConfig::default();
        let mut state = AnomalyState::default();
        assert_eq!(detect(&cfg, &mut state, &inputs(300, 2400), 1).len(), 1);
        // 2.9x and 2.4x stay raised, with the first start time; below 2.4x clears.
        for (n, raised) in [(290, true), (240, true), (239, false), (290, false)] {
            let found = detect(&cfg, &mut state, &inputs(n, 2400), 2);
            assert_eq!(!found.is_empty(), raised, "{n}/h");
            if raised {
                assert_eq!(found[0].started_at, 1);
            }
        }
    }

    #[test]
    fn spikes_need_a_minimum_volume() {
        let cfg = AnomalyConfig::default();
        let mut state = AnomalyState::default();
        // 29 events after a silent day is 29x the floor, but too few to matter.
        assert!(detect(&cfg, &mut state, &inputs(29, 0), 0).is_empty());
        assert_eq!(
            kinds(&detect(&cfg, &mut state, &inputs(30, 0), 0)),
            [AnomalyKind::UnusualSpike]
        );
    }

    #[test]
    fn a_dip_fires_below_30_percent_of_a_busy_baseline() {
        let cfg = AnomalyConfig::default();
        let mut state = AnomalyState::default();
        assert!(detect(&cfg, &mut state, &inputs(30, 2400), 0).is_empty());
        let found = detect(&cfg, &mut state, &inputs(29, 2400), 0);
        assert_eq!(kinds(&found), [AnomalyKind::UnusualDip]);
        // It holds until 36% (30% plus a fifth), then clears.
        assert_eq!(detect(&cfg, &mut state, &inputs(35, 2400), 0).len(), 1);
        assert!(detect(&cfg, &mut state, &inputs(36, 2400), 0).is_empty());
        // A quiet baseline (under 30/h) never dips.
        let mut state = AnomalyState::default();
        assert!(detect(&cfg, &mut state, &inputs(0, 24 * 29), 0).is_empty());
    }

    #[test]
    fn the_night_window_runs_from_22_00_to_05_59() {
        let cfg = AnomalyConfig::default();
        let at = |h: u32, m: u32| cfg.is_night(h * 60 + m);
        assert!(!at(21, 59));
        assert!(at(22, 0));
        assert!(at(0, 0));
        assert!(at(5, 59));
        assert!(!at(6, 0));
        let day = AnomalyConfig {
            night_start: 60,
            night_end: 120,
            ..cfg
        };
        assert!(day.is_night(60) && !day.is_night(120) && !day.is_night(0));
    }

    fn window(window: u64, night: u64, top: u64, users: u64) -> AnomalyInputs {
        AnomalyInputs {
            last_hour: 0,
            baseline: 0,
            window,
            window_night: night,
            top_user: Some(("mallory".into(), top)),
            active_users: users,
            bursts: Vec::new(),
        }
    }

    #[test]
    fn night_activity_needs_30_percent_and_a_minimum_volume() {
        let cfg = AnomalyConfig::default();
        let mut state = AnomalyState::default();
        assert!(detect(&cfg, &mut state, &window(100, 29, 10, 10), 0).is_empty());
        let found = detect(&cfg, &mut state, &window(100, 30, 10, 10), 0);
        assert_eq!(kinds(&found), [AnomalyKind::TimeAnomaly]);
        assert_eq!(found[0].value, 30.0);
        // Three events at night out of three is not an alarm.
        let mut state = AnomalyState::default();
        assert!(detect(&cfg, &mut state, &window(3, 3, 1, 3), 0).is_empty());
        assert!(detect(&cfg, &mut state, &window(49, 49, 1, 49), 0).is_empty());
    }

    #[test]
    fn one_user_at_70_percent_is_a_user_anomaly_unless_alone() {
        let cfg = AnomalyConfig::default();
        let mut state = AnomalyState::default();
        assert!(detect(&cfg, &mut state, &window(100, 0, 69, 5), 0).is_empty());
        let found = detect(&cfg, &mut state, &window(100, 0, 70, 5), 0);
        assert_eq!(kinds(&found), [AnomalyKind::UserAnomaly]);
        assert_eq!(found[0].subject.as_deref(), Some("mallory"));
        // Held at 56% (70% less a fifth), cleared at 55%.
        assert_eq!(detect(&cfg, &mut state, &window(100, 0, 56, 5), 0).len(), 1);
        assert!(detect(&cfg, &mut state, &window(100, 0, 55, 5), 0).is_empty());
        let mut state = AnomalyState::default();
        assert!(detect(&cfg, &mut state, &window(100, 0, 100, 1), 0).is_empty());
    }

    #[test]
    fn losing_volume_clears_a_raised_anomaly() {
        let cfg = AnomalyConfig::default();
        let mut state = AnomalyState::default();
        assert_eq!(detect(&cfg, &mut state, &inputs(300, 0), 0).len(), 1);
        assert!(detect(&cfg, &mut state, &inputs(29, 0), 0).is_empty());
        assert_eq!(state.spike.since, None);
    }

    #[test]
    fn five_failed_logins_within_five_minutes_are_a_burst() {
        let cfg = AnomalyConfig::default();
        let mut b = BurstTracker::default();
        let min = 60_000;
        for i in 0..4 {
            b.record("user eve", i * min, &cfg);
        }
        assert!(b.active(4 * min, &cfg).is_empty());
        b.record("user eve", 4 * min, &cfg);
        assert_eq!(b.active(4 * min, &cfg), [("user eve".to_string(), 5, 0)]);
        // The first failure leaves the window at 5 min: 4 left, held by the hysteresis.
        assert_eq!(b.active(5 * min, &cfg).len(), 1);
        // At 6 min only 3 are left: cleared, and it does not come back at 3.
        assert!(b.active(6 * min, &cfg).is_empty());
        // Failures spread over more than five minutes never raise one.
        let mut slow = BurstTracker::default();
        for i in 0..10 {
            slow.record("address 10.0.0.1", i * 2 * min, &cfg);
            assert!(slow.active(i * 2 * min, &cfg).is_empty(), "{i}");
        }
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
    fn the_user_window_keeps_the_last_hours_totals() {
        let mut w = UserWindow::default();
        w.advance(100, 24);
        w.add("alice", 100, 5, 24);
        w.add("bob", 90, 3, 24);
        w.add("bob", 77, 4, 24);
        // Hour 76 is 25 hours back: outside.
        w.add("carol", 76, 9, 24);
        assert_eq!(w.top(), (Some(("bob".to_string(), 7)), 2));
        w.advance(101, 24);
        assert_eq!(w.top(), (Some(("alice".to_string(), 5)), 2));
        w.advance(114, 24);
        assert_eq!(w.top(), (Some(("alice".to_string(), 5)), 1));
        w.advance(124, 24);
        assert_eq!(w.top(), (None, 0));
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
