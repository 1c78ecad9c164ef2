//! The anomaly rules: spikes, dips, night activity, one user's outsized share and bursts of
//! failed logins, each with its threshold and the hysteresis that keeps a raised anomaly from
//! flapping. Pure and shared by both builds.

use super::{round1, Severity};
use serde::{Deserialize, Serialize};

/// The kinds of anomaly, with their wire names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
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

/// One detected anomaly, in the predecessor's shape plus when it started (epoch ms).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
