//! The analytics the dashboard and the REST API serve — summary, insights (trends, anomalies,
//! heatmap), statistics and the timeline — assembled from the store's rollups in one snapshot,
//! never by re-reading events. Also owns the anomaly latches and what the commit stream feeds:
//! the failed-login burst tracker and the user window. Server build only.

use crate::analytics::{
    detect, health_score, health_trend, round1, Anomaly, AnomalyConfig, AnomalyInputs, AnomalyKind,
    AnomalyState, BurstTracker, HeatDay, Heatmap, Insights, Overview, SpikeDetection, Statistics,
    Summary, Tally, TimeRange, Timeline, TimelinePoint, TrendComparison, UserWindow, TOP,
};
use crate::model::{Category, Outcome, StoredEvent};
use crate::store::rollup::{Dimension, Reader, HOUR_MS, MINUTE_MS};
use crate::store::{Store, StoreError};
use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// The preset ranges of the dashboard and the REST API.
pub const RANGES: &[(&str, i64)] = &[("1h", 1), ("24h", 24), ("7d", 168), ("30d", 720)];

/// Parses a preset (`24h`) into its length in hours.
pub fn range_hours(name: &str) -> Option<i64> {
    RANGES.iter().find(|(n, _)| *n == name).map(|(_, h)| *h)
}

/// The last `hours` whole hours up to and including the current one, in epoch ms.
pub fn last_hours(hours: i64, now_ms: i64) -> TimeRange {
    let to = (now_ms.div_euclid(HOUR_MS) + 1) * HOUR_MS;
    TimeRange {
        from: to - hours.max(1) * HOUR_MS,
        to,
    }
}

/// `range` widened to whole hours, the resolution of the distributions.
pub fn whole_hours(range: TimeRange) -> TimeRange {
    TimeRange {
        from: range.from.div_euclid(HOUR_MS) * HOUR_MS,
        to: (range.to + HOUR_MS - 1).div_euclid(HOUR_MS) * HOUR_MS,
    }
}

/// Parses an IANA time zone name, naming it in the error.
///
/// # Errors
/// The name is not a zone this build knows.
pub fn parse_zone(name: &str) -> Result<Tz, String> {
    name.parse::<Tz>()
        .map_err(|_| format!("unknown time zone {name:?}; use an IANA name such as Europe/Berlin"))
}

/// The analytics service: cheap to clone.
#[derive(Clone)]
pub struct Analytics {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    config: AnomalyConfig,
    /// The zone of the night window.
    zone: Tz,
    state: Mutex<AnomalyState>,
    bursts: Mutex<BurstTracker>,
    /// Per-user totals of the anomaly window, for the user anomaly.
    users: Mutex<UserWindow>,
    /// The newest seq [`Analytics::watch`] has fed to the burst tracker.
    observed_tx: watch::Sender<u64>,
    observed: watch::Receiver<u64>,
}

/// How long an evaluation waits for the burst tracker to see the events its snapshot holds.
const OBSERVE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

impl Analytics {
    /// Analytics over `store`, judging night hours in `zone`.
    pub fn new(store: Store, config: AnomalyConfig, zone: Tz) -> Analytics {
        let (observed_tx, observed) = watch::channel(0);
        Analytics {
            inner: Arc::new(Inner {
                store,
                config,
                zone,
                state: Mutex::new(AnomalyState::default()),
                bursts: Mutex::new(BurstTracker::default()),
                users: Mutex::new(UserWindow::default()),
                observed_tx,
                observed,
            }),
        }
    }

    /// The anomaly thresholds in force.
    pub fn config(&self) -> &AnomalyConfig {
        &self.inner.config
    }

    /// The configured zone of the night window.
    pub fn zone(&self) -> Tz {
        self.inner.zone
    }

    /// Follows the store's commits in a task, feeding each to [`Analytics::observe`], with
    /// none skipped (a burst of commits beyond the live queue is read back from the store).
    pub fn watch(&self) {
        let me = self.clone();
        tokio::spawn(async move {
            // The user window starts from the rollups, the failed-login bursts from the
            // authentication failures of the last minutes, both at one seq; then every commit
            // after that seq is followed: nothing counted twice, nothing missed.
            let hours = me.inner.config.window_hours;
            let now_ms = chrono::Utc::now().timestamp_millis();
            let now_hour = hour(now_ms);
            let burst_from = now_ms - i64::from(me.inner.config.burst_minutes.max(1)) * 60_000;
            let warm = me
                .inner
                .store
                .with_rollups(move |r| {
                    let first = now_hour - i64::from(hours.max(1)) + 1;
                    Ok((
                        r.head()?,
                        r.user_hours(first, now_hour + 1)?,
                        r.auth_failures(burst_from)?,
                    ))
                })
                .await;
            let (head, rows, failures) = match warm {
                Ok(w) => w,
                Err(e) => {
                    tracing::error!(error = %e, "analytics cannot read the user rollups");
                    return;
                }
            };
            if let Ok(mut users) = me.inner.users.lock() {
                users.advance(now_hour, hours);
                for (h, user, n) in rows {
                    users.add(&user, h, n, hours);
                }
            }
            for (ms, user, ip) in failures {
                me.record_failure(&user, ip.as_deref(), ms);
            }
            let mut commits = me.inner.store.follow_from(head);
            // Events committed before now are not bursts this tracker can see.
            me.inner
                .observed_tx
                .send_modify(|s| *s = (*s).max(commits.last_seq().0));
            loop {
                match commits.next().await {
                    Ok(Some(event)) => {
                        me.observe(&event);
                        me.inner
                            .observed_tx
                            .send_modify(|s| *s = (*s).max(event.seq.0));
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::error!(error = %e, "analytics lost the store");
                        break;
                    }
                }
            }
        });
    }

    /// Feeds one committed event to the user window, and to the failed-login burst tracker
    /// when it is an authentication event that failed or was denied (against its user and its
    /// address).
    pub fn observe(&self, event: &StoredEvent) {
        let e = &event.event;
        if let Ok(mut users) = self.inner.users.lock() {
            let at = hour(e.timestamp.timestamp_millis());
            users.add(&e.user.id, at, 1, self.inner.config.window_hours);
        }
        if e.category != Category::Authentication || e.outcome == Outcome::Success {
            return;
        }
        let ip = e.request.as_ref().and_then(|r| r.ip.as_deref());
        self.record_failure(&e.user.id, ip, e.timestamp.timestamp_millis());
    }

    /// Counts one failed login against its user and its address.
    fn record_failure(&self, user: &str, ip: Option<&str>, ms: i64) {
        if let Ok(mut bursts) = self.inner.bursts.lock() {
            bursts.record(&format!("user {user}"), ms, &self.inner.config);
            if let Some(ip) = ip {
                bursts.record(&format!("address {ip}"), ms, &self.inner.config);
            }
        }
    }

    /// The summary of `range` (widened to whole hours), with the anomaly rules evaluated at
    /// `now_ms`.
    ///
    /// # Errors
    /// Database errors.
    pub async fn summary(&self, range: TimeRange, now_ms: i64) -> Result<Summary, StoreError> {
        let want = Want {
            summary: true,
            ..Want::default()
        };
        let g = self.gather(range, Tz::UTC, now_ms, want).await?;
        g.summary.ok_or(StoreError::Closed)
    }

    /// Trends, anomalies and the heatmap in `viewer`'s zone, as of `now_ms`.
    ///
    /// # Errors
    /// Database errors.
    pub async fn insights(&self, viewer: Tz, now_ms: i64) -> Result<Insights, StoreError> {
        let want = Want {
            insights: true,
            ..Want::default()
        };
        let range = last_hours(24, now_ms);
        let g = self.gather(range, viewer, now_ms, want).await?;
        g.insights.ok_or(StoreError::Closed)
    }

    /// The anomalies raised as of `now_ms` (the rules run, and their latches move).
    ///
    /// # Errors
    /// Database errors.
    pub async fn anomalies(&self, now_ms: i64) -> Result<Vec<Anomaly>, StoreError> {
        let want = Want {
            insights: true,
            ..Want::default()
        };
        let g = self
            .gather(last_hours(1, now_ms), Tz::UTC, now_ms, want)
            .await?;
        Ok(g.insights.map(|i| i.anomaly_detection).unwrap_or_default())
    }

    /// Which of the `expected` actions, and of those learned from the last 30 days, are still
    /// audited at `now_ms` (see [`crate::analytics::coverage`]): from the hourly counts by
    /// action and the running totals, so it costs the same at any size.
    ///
    /// # Errors
    /// Database errors.
    pub async fn coverage(
        &self,
        expected: &[crate::analytics::coverage::Expected],
        now_ms: i64,
    ) -> Result<crate::analytics::coverage::Coverage, StoreError> {
        use crate::analytics::coverage::{coverage, WINDOW_DAYS};
        let from = (now_ms - WINDOW_DAYS * 24 * HOUR_MS).div_euclid(HOUR_MS);
        let to = now_ms.div_euclid(HOUR_MS) + 1;
        let store = &self.inner.store;
        let hours = store
            .with_rollups(move |r| r.series(Dimension::Action, from, to))
            .await?;
        let totals = store
            .distinct(crate::store::DistinctField::Action)
            .await?
            .into_iter()
            .map(|v| (v.value, v.count))
            .collect();
        Ok(coverage(expected, &hours, &totals, now_ms))
    }

    /// Totals, distributions and top lists over `range` (widened to whole hours).
    ///
    /// # Errors
    /// Database errors.
    pub async fn statistics(&self, range: TimeRange) -> Result<Statistics, StoreError> {
        let want = Want {
            statistics: true,
            ..Want::default()
        };
        let g = self.gather(range, Tz::UTC, 0, want).await?;
        g.statistics.ok_or(StoreError::Closed)
    }

    /// Everything the dashboard home shows for `range`, from one snapshot.
    ///
    /// # Errors
    /// Database errors.
    pub async fn overview(
        &self,
        range: TimeRange,
        viewer: Tz,
        now_ms: i64,
    ) -> Result<Overview, StoreError> {
        let want = Want {
            summary: true,
            insights: true,
            statistics: true,
        };
        let g = self.gather(range, viewer, now_ms, want).await?;
        match (g.summary, g.insights, g.statistics, g.timeline) {
            (Some(summary), Some(insights), Some(statistics), Some(timeline)) => Ok(Overview {
                summary,
                insights,
                statistics,
                timeline,
                as_of: g.as_of,
            }),
            _ => Err(StoreError::Closed),
        }
    }

    /// Reads what `want` asks for from one snapshot, then runs the anomaly rules if needed.
    async fn gather(
        &self,
        range: TimeRange,
        viewer: Tz,
        now_ms: i64,
        want: Want,
    ) -> Result<Gathered, StoreError> {
        let started = std::time::Instant::now();
        let gathered = self.gather_now(range, viewer, now_ms, want).await;
        if want.summary {
            crate::metrics::observe(&crate::metrics::get().summary_seconds, started.elapsed());
        }
        gathered
    }

    async fn gather_now(
        &self,
        range: TimeRange,
        viewer: Tz,
        now_ms: i64,
        want: Want,
    ) -> Result<Gathered, StoreError> {
        let range = whole_hours(range);
        let cfg = self.inner.config.clone();
        let zone = self.inner.zone;
        let (mut g, inputs) = self
            .inner
            .store
            .with_rollups(move |r| {
                let mut g = Gathered {
                    as_of: r.head()?,
                    ..Gathered::default()
                };
                let inputs = if want.summary || want.insights {
                    Some(anomaly_inputs(r, &cfg, zone, now_ms)?)
                } else {
                    None
                };
                if want.summary {
                    g.tallies = Some((
                        r.tally(minute(range.from), minute(range.to))?,
                        r.tally(minute(range.previous().from), minute(range.from))?,
                    ));
                }
                if want.insights {
                    g.trends = trend_rows(r, now_ms)?;
                    g.heatmap = heatmap(r, viewer, now_ms)?;
                }
                if want.statistics {
                    g.statistics = Some(statistics(r, range)?);
                    g.timeline = Some(timeline(r, range)?);
                }
                Ok((g, inputs))
            })
            .await?;
        if let Some(inputs) = inputs {
            // Bursts come from the live stream: let it catch up with the snapshot first, so an
            // acknowledged failure counts in the next answer.
            let mut observed = self.inner.observed.clone();
            let head = g.as_of.0;
            let _ = tokio::time::timeout(OBSERVE_WAIT, observed.wait_for(|s| *s >= head)).await;
            let spike = SpikeDetection {
                has_spike: false,
                last_hour: inputs.last_hour,
                baseline_per_hour: round1(
                    inputs.baseline as f64 / f64::from(self.inner.config.baseline_hours.max(1)),
                ),
            };
            let anomalies = self.evaluate(inputs, now_ms);
            let spike = SpikeDetection {
                has_spike: anomalies
                    .iter()
                    .any(|a| a.kind == AnomalyKind::UnusualSpike),
                ..spike
            };
            if let Some((current, previous)) = g.tallies.take() {
                g.summary = Some(summary(range, &current, &previous, spike));
            }
            if want.insights {
                g.insights = Some(Insights {
                    trend_comparison: std::mem::take(&mut g.trends),
                    anomaly_detection: anomalies,
                    heatmap: std::mem::take(&mut g.heatmap),
                });
            }
        }
        Ok(g)
    }

    /// Runs the rules on `inputs` (adding the login bursts), updating the latches.
    fn evaluate(&self, mut inputs: AnomalyInputs, now_ms: i64) -> Vec<Anomaly> {
        if let Ok(mut bursts) = self.inner.bursts.lock() {
            inputs.bursts = bursts.active(now_ms, &self.inner.config);
        }
        if let Ok(mut users) = self.inner.users.lock() {
            users.advance(hour(now_ms), self.inner.config.window_hours);
            let (top, active) = users.top();
            inputs.top_user = top;
            inputs.active_users = active;
        }
        match self.inner.state.lock() {
            Ok(mut state) => detect(&self.inner.config, &mut state, &inputs, now_ms),
            Err(_) => Vec::new(),
        }
    }
}

/// Which parts a request needs.
#[derive(Clone, Copy, Default)]
struct Want {
    summary: bool,
    insights: bool,
    statistics: bool,
}

/// What one snapshot read, then what was made of it.
#[derive(Default)]
struct Gathered {
    as_of: crate::model::Seq,
    tallies: Option<(Tally, Tally)>,
    trends: Vec<TrendComparison>,
    heatmap: Heatmap,
    statistics: Option<Statistics>,
    timeline: Option<Timeline>,
    summary: Option<Summary>,
    insights: Option<Insights>,
}

fn minute(ms: i64) -> i64 {
    ms.div_euclid(MINUTE_MS)
}

fn hour(ms: i64) -> i64 {
    ms.div_euclid(HOUR_MS)
}

/// The summary of `range`, with the health trend against the span before it.
pub fn summary(
    range: TimeRange,
    current: &Tally,
    previous: &Tally,
    spike_detection: SpikeDetection,
) -> Summary {
    let score = health_score(current);
    let before = health_score(previous);
    Summary {
        health_score: score,
        total_actions: current.n,
        success_rate: round1(current.success_rate()),
        denial_rate: round1(current.denial_rate()),
        error_rate: round1(current.error_rate()),
        trend: health_trend(score, before),
        previous_health_score: before,
        critical_issues: current.critical,
        spike_detection,
        range,
    }
}

/// The counts the anomaly rules need, as of `now_ms`: the last 60 minutes (this one
/// included), the baseline hours before them, and the window's night share and top user.
fn anomaly_inputs(
    r: &Reader<'_, '_>,
    cfg: &AnomalyConfig,
    zone: Tz,
    now_ms: i64,
) -> Result<AnomalyInputs, StoreError> {
    let end = minute(now_ms) + 1;
    let hour_start = end - 60;
    let last_hour = r.tally(hour_start, end)?.n;
    let baseline = r
        .tally(hour_start - i64::from(cfg.baseline_hours) * 60, hour_start)?
        .n;
    let window_start = end - i64::from(cfg.window_hours.max(1)) * 60;
    let mut window = 0;
    let mut window_night = 0;
    for (m, t) in r.minutes(window_start, end)? {
        window += t.n;
        if cfg.is_night(local_minute_of_day(zone, m)) {
            window_night += t.n;
        }
    }
    // The top user and the active users come from the in-memory user window, and the
    // bursts from the tracker: see `Analytics::evaluate`.
    Ok(AnomalyInputs {
        last_hour,
        baseline,
        window,
        window_night,
        top_user: None,
        active_users: 0,
        bursts: Vec::new(),
    })
}

/// The local time of day, in minutes after midnight, of epoch minute `m` in `zone`.
pub fn local_minute_of_day(zone: Tz, m: i64) -> u32 {
    match DateTime::<Utc>::from_timestamp(m * 60, 0) {
        Some(t) => {
            let local = t.with_timezone(&zone);
            local.hour() * 60 + local.minute()
        }
        None => 0,
    }
}

/// The 7-day and 30-day rows, each against the period before it.
fn trend_rows(r: &Reader<'_, '_>, now_ms: i64) -> Result<Vec<TrendComparison>, StoreError> {
    let end = minute(now_ms) + 1;
    [7u32, 30]
        .into_iter()
        .map(|days| {
            let span = i64::from(days) * 24 * 60;
            let current = r.tally(end - span, end)?;
            let previous = r.tally(end - 2 * span, end - span)?;
            Ok(TrendComparison::new(days, &current, &previous))
        })
        .collect()
}

/// The UTC instant local midnight of `date` falls on in `zone` (the first instant of the day
/// when midnight is skipped or repeated).
fn local_midnight(zone: Tz, date: NaiveDate) -> i64 {
    let naive = date.and_hms_opt(0, 0, 0).unwrap_or_default();
    match zone.from_local_datetime(&naive).earliest() {
        Some(t) => t.timestamp_millis(),
        // Midnight skipped by a DST change: the day starts an hour later.
        None => zone
            .from_local_datetime(&(naive + chrono::Duration::hours(1)))
            .earliest()
            .map_or(naive.and_utc().timestamp_millis(), |t| t.timestamp_millis()),
    }
}

/// Activity by local hour over the last seven local days (today included) in `zone`.
fn heatmap(r: &Reader<'_, '_>, zone: Tz, now_ms: i64) -> Result<Heatmap, StoreError> {
    let today = DateTime::<Utc>::from_timestamp_millis(now_ms)
        .unwrap_or_default()
        .with_timezone(&zone)
        .date_naive();
    let first = today - chrono::Duration::days(6);
    let mut map = Heatmap {
        time_zone: zone.name().to_string(),
        days: (0..7)
            .map(|i| {
                let date = first + chrono::Duration::days(i);
                HeatDay {
                    date: date.format("%Y-%m-%d").to_string(),
                    weekday: date.weekday().to_string(),
                    hours: vec![0; 24],
                }
            })
            .collect(),
        ..Heatmap::default()
    };
    let from = minute(local_midnight(zone, first));
    let to = minute(local_midnight(zone, today + chrono::Duration::days(1)));
    for (m, t) in r.minutes(from, to)? {
        let Some(at) = DateTime::<Utc>::from_timestamp(m * 60, 0) else {
            continue;
        };
        let local = at.with_timezone(&zone);
        let day = (local.date_naive() - first).num_days();
        if let Some(d) = usize::try_from(day).ok().and_then(|d| map.days.get_mut(d)) {
            if let Some(cell) = d.hours.get_mut(local.hour() as usize) {
                *cell += t.n;
            }
        }
    }
    map.set_levels();
    Ok(map)
}

/// Totals, distributions, top lists and recent critical events over `range` (whole hours).
fn statistics(r: &Reader<'_, '_>, range: TimeRange) -> Result<Statistics, StoreError> {
    let (from, to) = (hour(range.from), hour(range.to));
    let t = r.tally(minute(range.from), minute(range.to))?;
    let (active_users, top_users) = r.users(from, to, TOP)?;
    Ok(Statistics {
        range,
        total_events: t.n,
        active_users,
        critical_events: t.critical,
        denied_events: t.denied,
        failed_events: t.failed,
        error_events: t.errors,
        error_rate: round1(t.error_rate()),
        denial_rate: round1(t.denial_rate()),
        by_level: r.values(Dimension::Level, from, to, usize::MAX >> 1)?,
        by_category: r.values(Dimension::Category, from, to, usize::MAX >> 1)?,
        by_outcome: r.values(Dimension::Outcome, from, to, usize::MAX >> 1)?,
        by_source: r.values(Dimension::Source, from, to, usize::MAX >> 1)?,
        top_users,
        top_actions: r.values(Dimension::Action, from, to, TOP)?,
        top_denied_actions: r.values(Dimension::DeniedAction, from, to, TOP)?,
        recent_critical: r.recent_critical(range.from, range.to, TOP)?,
    })
}

/// The bucket width for a timeline of `range`: hours up to two days, six hours up to two
/// weeks, days beyond.
pub fn bucket_for(range: TimeRange) -> i64 {
    let span = range.to - range.from;
    if span <= 48 * HOUR_MS {
        HOUR_MS
    } else if span <= 14 * 24 * HOUR_MS {
        6 * HOUR_MS
    } else {
        24 * HOUR_MS
    }
}

/// Events over `range` by outcome, in buckets of [`bucket_for`].
fn timeline(r: &Reader<'_, '_>, range: TimeRange) -> Result<Timeline, StoreError> {
    let bucket = bucket_for(range);
    let first = range.from.div_euclid(bucket) * bucket;
    let mut t = Timeline {
        bucket_ms: bucket,
        points: (0..)
            .map(|i| first + i * bucket)
            .take_while(|s| *s < range.to)
            .map(|start| TimelinePoint {
                start,
                ..TimelinePoint::default()
            })
            .collect(),
    };
    for (h, outcome, n) in r.series(Dimension::Outcome, hour(range.from), hour(range.to))? {
        let at = h * HOUR_MS;
        let Some(p) = t.points.iter_mut().rev().find(|p| p.start <= at) else {
            continue;
        };
        match Outcome::parse(&outcome) {
            Some(Outcome::Success) => p.success += n,
            Some(Outcome::Failure) => p.failure += n,
            Some(Outcome::Denied) => p.denied += n,
            None => {}
        }
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analytics::AnomalyConfig;

    /// The epoch minute of a UTC wall-clock time.
    fn utc_minute(text: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp()
            / 60
    }

    #[test]
    fn the_night_window_is_judged_in_the_configured_zone() {
        let cfg = AnomalyConfig::default();
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        // November: Berlin is UTC+1, so 22:00 there is 21:00 UTC.
        for (utc, night) in [
            ("2026-11-23T20:59:00Z", false), // 21:59 in Berlin
            ("2026-11-23T21:00:00Z", true),  // 22:00
            ("2026-11-24T04:59:00Z", true),  // 05:59
            ("2026-11-24T05:00:00Z", false), // 06:00
        ] {
            let local = local_minute_of_day(berlin, utc_minute(utc));
            assert_eq!(cfg.is_night(local), night, "{utc} is {local} min in Berlin");
        }
        // July: UTC+2 under summer time, so the same UTC minute is an hour later there.
        let july = local_minute_of_day(berlin, utc_minute("2026-07-01T20:00:00Z"));
        assert_eq!(july, 22 * 60);
        assert!(cfg.is_night(july));
    }

    #[test]
    fn ranges_are_whole_hours() {
        let r = last_hours(24, 5 * HOUR_MS + 17);
        assert_eq!((r.from, r.to), (-18 * HOUR_MS, 6 * HOUR_MS));
        let w = whole_hours(TimeRange {
            from: HOUR_MS + 1,
            to: 2 * HOUR_MS + 1,
        });
        assert_eq!((w.from, w.to), (HOUR_MS, 3 * HOUR_MS));
        assert_eq!(bucket_for(last_hours(24, 0)), HOUR_MS);
        assert_eq!(bucket_for(last_hours(168, 0)), 6 * HOUR_MS);
        assert_eq!(bucket_for(last_hours(720, 0)), 24 * HOUR_MS);
    }
}
