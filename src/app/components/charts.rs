//! Our own SVG charts: the health gauge, events over time, the activity heatmap and bar lists.
//! Each is accessible (`role="img"` with a label, `<title>` tooltips), scales with its box
//! through `viewBox`, and takes its colours from CSS so both themes apply.

use crate::analytics::{HealthTrend, Heatmap, Intensity, Timeline, UserCount};
use crate::app::components::counter::group_thousands;
use crate::model::ValueCount;
use chrono::{DateTime, Utc};
use leptos::prelude::*;

/// Up to about five round tick values from 0 to at least `max`: steps of 1, 2 or 5 × 10ⁿ.
pub fn nice_ticks(max: u64) -> Vec<u64> {
    if max == 0 {
        return vec![0, 1];
    }
    let raw = (max as f64 / 4.0).max(1.0);
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude) as u64;
    let step = step.max(1);
    let top = max.div_ceil(step) * step;
    (0..=top / step).map(|i| i * step).collect()
}

/// The health score as a ring gauge, with its trend against the previous period.
#[component]
pub fn HealthGauge(
    #[prop(into)] score: Signal<u8>,
    #[prop(into)] previous: Signal<u8>,
    #[prop(into)] trend: Signal<HealthTrend>,
) -> impl IntoView {
    const R: f64 = 52.0;
    let circumference = 2.0 * std::f64::consts::PI * R;
    let dash = move || {
        let filled = circumference * f64::from(score.get()) / 100.0;
        format!("{filled:.1} {circumference:.1}")
    };
    let band = move || match score.get() {
        80.. => "good",
        50..=79 => "fair",
        _ => "poor",
    };
    let trend_text = move || match trend.get() {
        HealthTrend::Improving => "▲ improving",
        HealthTrend::Stable => "▶ stable",
        HealthTrend::Declining => "▼ declining",
    };
    let trend_class = move || match trend.get() {
        HealthTrend::Improving => "trend trend-good",
        HealthTrend::Stable => "trend",
        HealthTrend::Declining => "trend trend-bad",
    };
    let label = move || {
        format!(
            "Health score {} of 100, {} (previous period {})",
            score.get(),
            trend_text().trim_start_matches(['▲', '▶', '▼', ' ']),
            previous.get()
        )
    };
    view! {
        <figure class="gauge">
            <svg viewBox="0 0 120 120" role="img" aria-label=label>
                <title>{label}</title>
                <circle class="gauge-track" cx="60" cy="60" r=R />
                <circle
                    class=move || format!("gauge-fill gauge-{}", band())
                    cx="60" cy="60" r=R
                    stroke-dasharray=dash
                    transform="rotate(-90 60 60)"
                />
                <text class="gauge-value" x="60" y="64" text-anchor="middle">{move || score.get()}</text>
                <text class="gauge-unit" x="60" y="82" text-anchor="middle">"/ 100"</text>
            </svg>
            <figcaption>
                <span class="gauge-title">"Health"</span>
                <span class=trend_class>{trend_text}</span>
            </figcaption>
        </figure>
    }
}

/// A chart's y axis: at each tick (its height in the plot and its label) a grid line from
/// `left` to `right` and the label to the left of it.
fn y_grid(ticks: Vec<(f64, String)>, left: f64, right: f64) -> impl IntoView {
    ticks
        .into_iter()
        .map(|(y, label)| {
            view! {
                <g class="tick">
                    <line class="grid" x1=left x2=right y1=y y2=y />
                    <text class="axis" x=left - 6.0 y=y + 4.0 text-anchor="end">{label}</text>
                </g>
            }
        })
        .collect_view()
}

/// Formats a bucket start for an axis label in the viewer's offset.
fn axis_label(start: i64, bucket_ms: i64, offset_min: i32) -> String {
    let local = DateTime::<Utc>::from_timestamp_millis(start + i64::from(offset_min) * 60_000)
        .unwrap_or_default();
    if bucket_ms < 6 * 3_600_000 {
        local.format("%H:%M").to_string()
    } else if bucket_ms < 24 * 3_600_000 {
        local.format("%a %H:%M").to_string()
    } else {
        local.format("%b %-d").to_string()
    }
}

/// A bucket's start for a tooltip: weekday, date and time in the viewer's offset.
fn tip_label(start: i64, offset_min: i32) -> String {
    DateTime::<Utc>::from_timestamp_millis(start + i64::from(offset_min) * 60_000)
        .unwrap_or_default()
        .format("%a %b %-d, %H:%M")
        .to_string()
}

/// Events over time as stacked bars by outcome, with a y axis, time labels, a legend and a
/// tooltip per bar. `offset` is the viewer's UTC offset in minutes.
#[component]
pub fn TimelineChart(
    #[prop(into)] timeline: Signal<Timeline>,
    #[prop(into)] offset: Signal<i32>,
) -> impl IntoView {
    const W: f64 = 640.0;
    const H: f64 = 220.0;
    const LEFT: f64 = 44.0;
    const RIGHT: f64 = 8.0;
    const TOP: f64 = 10.0;
    const BOTTOM: f64 = 26.0;
    let plot_h = H - TOP - BOTTOM;
    let geometry = move || {
        let t = timeline.get();
        let max = t
            .points
            .iter()
            .map(|p| p.success + p.failure + p.denied)
            .max()
            .unwrap_or(0);
        let ticks = nice_ticks(max);
        let top = ticks.last().copied().unwrap_or(1).max(1) as f64;
        (t, ticks, top)
    };
    let label = move || {
        let t = timeline.get();
        let total: u64 = t
            .points
            .iter()
            .map(|p| p.success + p.failure + p.denied)
            .sum();
        format!(
            "Events over time: {} events in {} buckets",
            group_thousands(total),
            t.points.len()
        )
    };
    view! {
        <figure class="chart timeline-chart">
            <svg viewBox=format!("0 0 {W} {H}") role="img" aria-label=label preserveAspectRatio="none">
                {move || {
                    let (t, ticks, top) = geometry();
                    let n = t.points.len().max(1) as f64;
                    let slot = (W - LEFT - RIGHT) / n;
                    let bar = (slot * 0.78).max(1.0);
                    let y = move |v: f64| TOP + plot_h - v / top * plot_h;
                    let grid = y_grid(
                        ticks.iter().map(|v| (y(*v as f64), group_thousands(*v))).collect(),
                        LEFT,
                        W - RIGHT,
                    );
                    let every = (t.points.len() / 6).max(1);
                    let bucket = t.bucket_ms;
                    let bars = t
                        .points
                        .iter()
                        .enumerate()
                        .map(|(i, p)| {
                            let p = *p;
                            let x = LEFT + i as f64 * slot + (slot - bar) / 2.0;
                            let total = p.success + p.failure + p.denied;
                            let mut base = 0.0;
                            let mut segment = |count: u64, class: &'static str| {
                                let h = count as f64 / top * plot_h;
                                let top_y = y(base + count as f64);
                                base += count as f64;
                                (count > 0).then(|| view! { <rect class=class x=x y=top_y width=bar height=h /> })
                            };
                            let s = segment(p.success, "bar-success");
                            let f = segment(p.failure, "bar-failure");
                            let d = segment(p.denied, "bar-denied");
                            let start = p.start;
                            let tip = move || {
                                format!(
                                    "{}: {} events ({} success, {} failure, {} denied)",
                                    tip_label(start, offset.get()),
                                    total, p.success, p.failure, p.denied
                                )
                            };
                            let tick = (i % every == 0).then(|| {
                                view! {
                                    <text class="axis" x=x + bar / 2.0 y=H - 8.0 text-anchor="middle">
                                        {move || axis_label(start, bucket, offset.get())}
                                    </text>
                                }
                            });
                            view! {
                                <g class="bar">
                                    <title>{tip}</title>
                                    <rect class="bar-hit" x=LEFT + i as f64 * slot y=TOP width=slot height=plot_h />
                                    {s}{f}{d}
                                    {tick}
                                </g>
                            }
                        })
                        .collect_view();
                    view! { {grid} {bars} }
                }}
            </svg>
            <figcaption class="legend">
                <span class="key key-success">"success"</span>
                <span class="key key-failure">"failure"</span>
                <span class="key key-denied">"denied"</span>
            </figcaption>
        </figure>
    }
}

/// Activity by hour of day over the last seven days, one cell per hour, with intensity
/// levels, a legend and a tooltip per cell.
#[component]
pub fn HeatmapChart(#[prop(into)] heatmap: Signal<Heatmap>) -> impl IntoView {
    const CELL: f64 = 22.0;
    const GAP: f64 = 3.0;
    const LEFT: f64 = 74.0;
    const TOP: f64 = 18.0;
    let width = LEFT + 24.0 * (CELL + GAP);
    let height = TOP + 7.0 * (CELL + GAP);
    let label = move || {
        let h = heatmap.get();
        let total: u64 = h.days.iter().flat_map(|d| d.hours.iter()).sum();
        format!(
            "Activity by hour over the last 7 days ({}): {} events, busiest hour {}",
            h.time_zone,
            group_thousands(total),
            group_thousands(h.max)
        )
    };
    let legend =
        move || {
            let h = heatmap.get();
            let range = |from: u64, to: u64| {
                if from >= to {
                    group_thousands(to)
                } else {
                    format!("{}–{}", group_thousands(from), group_thousands(to))
                }
            };
            [
            (Intensity::None, "no events".to_string()),
            (Intensity::Low, format!("low ({})", range(1, h.low.max(1)))),
            (Intensity::Medium, format!("medium ({})", range(h.low + 1, h.medium.max(h.low + 1)))),
            (Intensity::High, format!("high ({})", range(h.medium + 1, h.max.max(h.medium + 1)))),
        ]
        .into_iter()
        .map(|(i, text)| view! { <span class=format!("key heat-key-{}", i.as_str())>{text}</span> })
        .collect_view()
        };
    view! {
        <figure class="chart heatmap">
            <svg viewBox=format!("0 0 {width} {height}") role="group" aria-label=label>
                {(0..24)
                    .step_by(3)
                    .map(|h| {
                        let x = LEFT + h as f64 * (CELL + GAP) + CELL / 2.0;
                        view! { <text class="axis" x=x y=TOP - 6.0 text-anchor="middle">{format!("{h:02}")}</text> }
                    })
                    .collect_view()}
                {move || {
                    let h = heatmap.get();
                    let levels = h.clone();
                    h.days
                        .into_iter()
                        .enumerate()
                        .map(|(row, day)| {
                            let y = TOP + row as f64 * (CELL + GAP);
                            let cells = day
                                .hours
                                .iter()
                                .enumerate()
                                .map(|(hour, n)| {
                                    let intensity = levels.intensity(*n).as_str();
                                    let text = format!(
                                        "{} {} {hour:02}:00: {} event{}",
                                        day.weekday,
                                        day.date,
                                        group_thousands(*n),
                                        if *n == 1 { "" } else { "s" }
                                    );
                                    let aria = text.clone();
                                    view! {
                                        <rect
                                            class=format!("heat heat-{intensity}")
                                            x=LEFT + hour as f64 * (CELL + GAP) y=y
                                            width=CELL height=CELL rx="4"
                                            role="img" aria-label=aria
                                        >
                                            <title>{text}</title>
                                        </rect>
                                    }
                                })
                                .collect_view();
                            view! {
                                <g class="heat-row">
                                    <text class="axis" x="0" y=y + CELL * 0.7>{format!("{} {}", day.weekday, &day.date[5..])}</text>
                                    {cells}
                                </g>
                            }
                        })
                        .collect_view()
                }}
            </svg>
            <figcaption class="legend">{legend}</figcaption>
        </figure>
    }
}

/// A titled list of values with proportional bars: distributions and top lists.
#[component]
pub fn BarList(
    title: &'static str,
    #[prop(into)] items: Signal<Vec<ValueCount>>,
    /// The bars' colour class; one ending in `-` is a prefix for each value (`level-` gives
    /// `level-error`), so levels get their own colours. Empty for the accent colour.
    #[prop(default = "")]
    tone: &'static str,
    #[prop(default = "Nothing in this range.")] empty: &'static str,
    /// The explorer filter each name links to (`source` links `/events?source=otlp`).
    #[prop(optional)]
    filter: Option<&'static str>,
) -> impl IntoView {
    let id = format!("bars-{}", title.to_ascii_lowercase().replace(' ', "-"));
    let labelled = id.clone();
    view! {
        <section class="panel bars">
            <h3 id=id>{title}</h3>
            {move || {
                let list = items.get();
                if list.is_empty() {
                    return view! { <p class="muted small">{empty}</p> }.into_any();
                }
                let max = list.iter().map(|v| v.count).max().unwrap_or(1).max(1);
                let total: u64 = list.iter().map(|v| v.count).sum();
                view! {
                    <ul class="bar-list" aria-labelledby=labelled.clone()>
                        {list
                            .into_iter()
                            .map(|v| {
                                let width = v.count as f64 * 100.0 / max as f64;
                                let share = v.count as f64 * 100.0 / total.max(1) as f64;
                                let class = if tone.ends_with('-') {
                                    format!("bar-fill {tone}{}", v.value)
                                } else {
                                    format!("bar-fill {tone}")
                                };
                                let name = v.value.replace('_', " ");
                                let aria = format!("{}: {}", name, v.count);
                                let label = match filter {
                                    Some(param) => {
                                        let href = format!("/events?{param}={}", crate::app::pages::encode(&v.value));
                                        view! { <a class="bar-name" href=href title=format!("Show these events: {}", v.value)>{name}</a> }.into_any()
                                    }
                                    None => view! { <span class="bar-name" title=v.value.clone()>{name}</span> }.into_any(),
                                };
                                view! {
                                    <li aria-label=aria>
                                        {label}
                                        <span class="bar-track"><span class=class style=format!("width:{width:.1}%")></span></span>
                                        <span class="bar-count" title=format!("{share:.1}%")>{group_thousands(v.count)}</span>
                                    </li>
                                }
                            })
                            .collect_view()}
                    </ul>
                }
                .into_any()
            }}
        </section>
    }
}

/// The most active users with their denials and failures.
#[component]
pub fn TopUsers(#[prop(into)] users: Signal<Vec<UserCount>>) -> impl IntoView {
    view! {
        <section class="panel bars">
            <h3 id="bars-top-users">"Top users"</h3>
            {move || {
                let list = users.get();
                if list.is_empty() {
                    return view! { <p class="muted small">"Nobody acted in this range."</p> }.into_any();
                }
                let max = list.iter().map(|u| u.count).max().unwrap_or(1).max(1);
                view! {
                    <ul class="bar-list" aria-labelledby="bars-top-users">
                        {list
                            .into_iter()
                            .map(|u| {
                                let width = u.count as f64 * 100.0 / max as f64;
                                let bad = (u.denied + u.failed) as f64 * 100.0 / max as f64;
                                let detail = format!("{} denied, {} failed", u.denied, u.failed);
                                let aria = format!("{}: {} ({detail})", u.user, u.count);
                                let tip = detail.clone();
                                // Encoded: an actor id may hold `&`, `#` or anything else a query would misread.
                                let href = format!("/events?user_id={}", crate::app::pages::encode(&u.user));
                                view! {
                                    <li aria-label=aria>
                                        <a class="bar-name" href=href title=tip>{u.user}</a>
                                        <span class="bar-track">
                                            <span class="bar-fill" style=format!("width:{width:.1}%")></span>
                                            <span class="bar-fill bar-bad" style=format!("width:{bad:.1}%")></span>
                                        </span>
                                        <span class="bar-count" title=detail>{group_thousands(u.count)}</span>
                                    </li>
                                }
                            })
                            .collect_view()}
                    </ul>
                }
                .into_any()
            }}
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::{format_measure, nice_ticks, nice_ticks_f64};

    #[test]
    fn ticks_are_round_and_cover_the_maximum() {
        assert_eq!(nice_ticks(0), [0, 1]);
        assert_eq!(nice_ticks(3), [0, 1, 2, 3]);
        assert_eq!(nice_ticks(10), [0, 5, 10]);
        assert_eq!(nice_ticks(37), [0, 10, 20, 30, 40]);
        assert_eq!(nice_ticks(1234), [0, 500, 1000, 1500]);
    }

    #[test]
    fn measured_ticks_and_numbers_read_well() {
        assert_eq!(nice_ticks_f64(0.0), [0.0, 1.0]);
        let small = nice_ticks_f64(0.37);
        assert_eq!(small.len(), 5);
        assert!((small[4] - 0.4).abs() < 1e-12);
        assert_eq!(format_measure(small[3]), "0.3");
        assert_eq!(nice_ticks_f64(37.0), [0.0, 10.0, 20.0, 30.0, 40.0]);
        assert_eq!(format_measure(5857.9), "5,858");
        assert_eq!(format_measure(12.44), "12.4");
        assert_eq!(format_measure(0.1534), "0.153");
        assert_eq!(format_measure(-1500.0), "-1,500");
    }
}

/// Up to about five round tick values from 0 to at least `max`, for measured numbers that
/// may be fractions: steps of 1, 2 or 5 × 10ⁿ.
pub fn nice_ticks_f64(max: f64) -> Vec<f64> {
    if !(max.is_finite() && max > 0.0) {
        return vec![0.0, 1.0];
    }
    let raw = max / 4.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude);
    let n = (max / step).ceil() as usize;
    (0..=n).map(|i| i as f64 * step).collect()
}

/// A measured number for an axis, a table or a tooltip: from 100 up, whole and grouped
/// (`5,858`); below, fractions to three significant places (`12.4`, `0.153`).
pub fn format_measure(v: f64) -> String {
    // From 100 up a fraction adds nothing a reader compares by: whole and grouped.
    if (v.fract() == 0.0 || v.abs() >= 100.0) && v.abs() < 1e15 {
        let whole = group_thousands(v.abs().round() as u64);
        return if v < 0.0 { format!("-{whole}") } else { whole };
    }
    let digits = (2 - v.abs().log10().floor() as i32).clamp(0, 6) as usize;
    let text = format!("{v:.digits$}");
    match text.contains('.') {
        true => text.trim_end_matches('0').trim_end_matches('.').to_string(),
        false => text,
    }
}

/// A named line: its points as (bucket start, epoch ms; value).
pub type Series = (String, Vec<(i64, f64)>);

/// One line per series over time buckets (a group's statistic), with a y axis from zero,
/// time labels, a legend and a tooltip per point. Colours come from CSS (`series-0` …
/// `series-5`); `offset` is the viewer's UTC offset in minutes.
#[component]
pub fn SeriesChart(
    #[prop(into)] lines: Signal<Vec<Series>>,
    #[prop(into)] bucket_ms: Signal<i64>,
    #[prop(into)] offset: Signal<i32>,
    #[prop(into)] label: Signal<String>,
) -> impl IntoView {
    const W: f64 = 640.0;
    const H: f64 = 220.0;
    const LEFT: f64 = 52.0;
    // Room for the last time label, centred on the last point.
    const RIGHT: f64 = 22.0;
    const TOP: f64 = 10.0;
    const BOTTOM: f64 = 26.0;
    let plot_h = H - TOP - BOTTOM;
    let plot = move || {
        let lines = lines.get();
        let bucket = bucket_ms.get().max(1);
        let starts: Vec<i64> = lines
            .iter()
            .flat_map(|(_, p)| p.iter().map(|(s, _)| *s))
            .collect();
        let (first, last) = (
            starts.iter().min().copied().unwrap_or(0),
            starts.iter().max().copied().unwrap_or(0),
        );
        let max = lines
            .iter()
            .flat_map(|(_, p)| p.iter().map(|(_, v)| *v))
            .fold(0.0, f64::max);
        let ticks = nice_ticks_f64(max);
        let top = ticks.last().copied().unwrap_or(1.0).max(f64::MIN_POSITIVE);
        let span = ((last - first) / bucket).max(1) as f64;
        let x = move |s: i64| LEFT + ((s - first) / bucket) as f64 / span * (W - LEFT - RIGHT);
        let y = move |v: f64| TOP + plot_h - v / top * plot_h;
        let grid = y_grid(
            ticks.iter().map(|v| (y(*v), format_measure(*v))).collect(),
            LEFT,
            W - RIGHT,
        );
        let steps = ((last - first) / bucket + 1).max(1);
        let every = (steps / 6).max(1);
        let labels = (0..steps)
            .step_by(every as usize)
            .map(|i| {
                let s = first + i * bucket;
                view! {
                    <text class="axis" x=x(s) y=H - 8.0 text-anchor="middle">
                        {move || axis_label(s, bucket, offset.get())}
                    </text>
                }
            })
            .collect_view();
        let drawn = lines
            .into_iter()
            .enumerate()
            .map(|(i, (name, points))| {
                let class = format!("series series-{}", i % 6);
                let path = points
                    .iter()
                    .map(|(s, v)| format!("{:.1},{:.1}", x(*s), y(*v)))
                    .collect::<Vec<_>>()
                    .join(" ");
                let dots = points
                    .into_iter()
                    .map(|(s, v)| {
                        let name = name.clone();
                        let tip = move || {
                            format!(
                                "{name}, {}: {}",
                                tip_label(s, offset.get()),
                                format_measure(v)
                            )
                        };
                        view! { <circle cx=x(s) cy=y(v) r="3"><title>{tip}</title></circle> }
                    })
                    .collect_view();
                view! { <g class=class><polyline points=path />{dots}</g> }
            })
            .collect_view();
        view! { {grid} {labels} {drawn} }
    };
    let legend = move || {
        lines
            .get()
            .into_iter()
            .enumerate()
            .map(|(i, (name, _))| {
                view! { <span class=format!("key series-key series-{}", i % 6)>{name}</span> }
            })
            .collect_view()
    };
    view! {
        <figure class="chart series-chart">
            <svg viewBox=format!("0 0 {W} {H}") role="img" aria-label=move || label.get() preserveAspectRatio="none">
                {plot}
            </svg>
            <figcaption class="legend">{legend}</figcaption>
        </figure>
    }
}
