//! The dashboard home: stat cards, the health gauge, anomalies, events over time and the live
//! feed, trends, the heatmap, distributions and top lists. Rendered on the server from a
//! snapshot and an overview, then kept current by the live socket: each event updates the
//! figures it belongs to, and the server's answer is asked for again only now and then.

use crate::analytics::{Anomaly, Overview, Trend, TrendComparison};
use crate::api::{load_dashboard, load_overview};
use crate::app::components::charts::{BarList, HealthGauge, HeatmapChart, TimelineChart, TopUsers};
use crate::app::components::counter::StatCard;
use crate::app::components::{ConnectionBadge, LiveFeed, Toasts, TopBar};
use crate::app::live::{provide_live, LiveState};
use crate::model::{relative_time, DashboardSnapshot, StoredEvent};
use leptos::prelude::*;

use crate::app::live::DEFAULT_RANGE;

/// The range presets the selector offers, with their button text.
const RANGES: [(&str, &str); 4] = [
    ("1h", "1 hour"),
    ("24h", "24 hours"),
    ("7d", "7 days"),
    ("30d", "30 days"),
];

/// `/`.
#[component]
pub fn DashboardPage() -> impl IntoView {
    let snapshot = Resource::new_blocking(|| (), |_| load_dashboard());
    let overview = Resource::new_blocking(|| (), |_| load_overview(DEFAULT_RANGE.into(), None));
    view! {
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match (snapshot.await, overview.await) {
                    (Ok(s), Ok(o)) => view! { <LiveDashboard snapshot=s overview=o /> }.into_any(),
                    (Err(e), _) | (_, Err(e)) => view! {
                        <main class="centered">
                            <div class="card narrow" role="alert">
                                <h1>"The dashboard could not load"</h1>
                                <p class="muted">{e.to_string()}</p>
                                <a class="button" href="/">"Try again"</a>
                            </div>
                        </main>
                    }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn LiveDashboard(snapshot: DashboardSnapshot, overview: Overview) -> impl IntoView {
    let live = LiveState::new(&snapshot);
    live.overview.set(Some(overview));
    provide_live(live);
    live.start();
    let range = live.range;
    live.keep_overview_fresh();
    let flash_class = move || {
        // Two alternating names restart the CSS animation on every new denial.
        match live.flash.get() {
            0 => "topbar",
            n if n % 2 == 1 => "topbar flash-a",
            _ => "topbar flash-b",
        }
    };
    view! {
        <TopBar current="live" class=Signal::derive(flash_class)>
            <ConnectionBadge state=live.connection />
            <LastEventAgo />
        </TopBar>
        <main class="page home">
            <RangePicker range=range />
            <Overview />
        </main>
        <Toasts />
    }
}

/// The range buttons.
#[component]
fn RangePicker(range: RwSignal<&'static str>) -> impl IntoView {
    view! {
        <div class="range-bar">
            <h1 class="page-title">"Overview"</h1>
            <div class="segmented" role="group" aria-label="Time range">
                {RANGES
                    .into_iter()
                    .map(|(key, text)| view! {
                        <button
                            type="button"
                            aria-pressed=move || (range.get() == key).to_string()
                            on:click=move |_| range.set(key)
                        >{text}</button>
                    })
                    .collect_view()}
            </div>
        </div>
    }
}

/// Everything below the range picker, read from the live overview.
#[component]
fn Overview() -> impl IntoView {
    let live = crate::app::live::use_live();
    let o = live.overview;
    let pick = move |f: fn(&Overview) -> f64| {
        Signal::derive(move || o.with(|o| o.as_ref().map_or(0.0, f)))
    };
    let summary = move || o.with(|o| o.as_ref().map(|o| o.summary.clone()));
    let stats = move || o.with(|o| o.as_ref().map(|o| o.statistics.clone()));
    let users_hint = Signal::derive(move || {
        stats().map_or(String::new(), |s| match s.top_users.first() {
            Some(u) => format!("most active: {}", u.user),
            None => "nobody yet".into(),
        })
    });
    let critical_hint = Signal::derive(move || {
        stats().map_or(String::new(), |s| {
            format!("{} failed, {} denied", s.failed_events, s.denied_events)
        })
    });
    view! {
        <section class="stats stats-5" aria-label="Range totals">
            <StatCard label="Events" value=pick(|o| o.statistics.total_events as f64) tone="neutral" />
            <StatCard label="Active users" value=pick(|o| o.statistics.active_users as f64) tone="users" hint=users_hint />
            <StatCard label="Critical" value=pick(|o| o.statistics.critical_events as f64) tone="critical" hint=critical_hint />
            <StatCard label="Error rate" value=pick(|o| o.statistics.error_rate) tone="failure" percent=true />
            <StatCard label="Denial rate" value=pick(|o| o.statistics.denial_rate) tone="denied" percent=true />
        </section>
        <div class="home-grid">
            <section class="panel health-panel" aria-label="Health">
                <HealthGauge
                    score=Signal::derive(move || summary().map_or(100, |s| s.health_score))
                    previous=Signal::derive(move || summary().map_or(100, |s| s.previous_health_score))
                    trend=Signal::derive(move || summary().map_or(crate::analytics::HealthTrend::Stable, |s| s.trend))
                />
                <p class="muted small formula">"100 − (70% × denial rate + 30% × error rate)"</p>
                <Anomalies anomalies=Signal::derive(move || o.with(|o| o.as_ref().map(|o| o.insights.anomaly_detection.clone()).unwrap_or_default())) />
            </section>
            <section class="panel timeline-panel">
                <div class="panel-head">
                    <h2>"Events over time"</h2>
                    <span class="muted small">{move || summary().map(|s| format!("{} in range · {:.1}% success", s.total_actions, s.success_rate))}</span>
                </div>
                <TimelineChart
                    timeline=Signal::derive(move || o.with(|o| o.as_ref().map(|o| o.timeline.clone()).unwrap_or_default()))
                    offset=live.offset
                />
            </section>
        </div>
        <div class="home-grid">
            <LiveFeed />
            <section class="panel">
                <div class="panel-head">
                    <h2>"7 days vs 30 days"</h2>
                </div>
                <Trends rows=Signal::derive(move || o.with(|o| o.as_ref().map(|o| o.insights.trend_comparison.clone()).unwrap_or_default())) />
                <div class="panel-head">
                    <h2>"Activity heatmap"</h2>
                </div>
                <HeatmapChart heatmap=Signal::derive(move || o.with(|o| o.as_ref().map(|o| o.insights.heatmap.clone()).unwrap_or_default())) />
            </section>
        </div>
        <div class="cards-grid">
            <BarList title="By level" tone="level-" items=Signal::derive(move || stats().map(|s| s.by_level).unwrap_or_default()) />
            <BarList title="By category" items=Signal::derive(move || stats().map(|s| s.by_category).unwrap_or_default()) />
            <BarList title="By source" filter="source" items=Signal::derive(move || stats().map(|s| s.by_source).unwrap_or_default()) />
            <TopUsers users=Signal::derive(move || stats().map(|s| s.top_users).unwrap_or_default()) />
            <BarList title="Top actions" items=Signal::derive(move || stats().map(|s| s.top_actions).unwrap_or_default()) />
            <BarList title="Top denied actions" tone="bar-denied" empty="Nothing was denied in this range."
                items=Signal::derive(move || stats().map(|s| s.top_denied_actions).unwrap_or_default()) />
            <RecentCritical events=Signal::derive(move || stats().map(|s| s.recent_critical).unwrap_or_default()) />
        </div>
    }
}

/// The anomalies raised now, or a calm line when there are none.
#[component]
fn Anomalies(#[prop(into)] anomalies: Signal<Vec<Anomaly>>) -> impl IntoView {
    let live = crate::app::live::use_live();
    view! {
        <div class="anomalies">
            <h2 id="anomalies-title">"Anomalies"</h2>
            {move || {
                let list = anomalies.get();
                if list.is_empty() {
                    return view! { <p class="calm">"✓ Nothing unusual right now"</p> }.into_any();
                }
                view! {
                    <ul class="anomaly-list" aria-labelledby="anomalies-title">
                        {list
                            .into_iter()
                            .map(|a| {
                                let since = a.started_at;
                                let kind = serde_json::to_value(a.kind)
                                    .ok()
                                    .and_then(|v| v.as_str().map(|s| s.replace('_', " ")))
                                    .unwrap_or_default();
                                let severity = format!("{:?}", a.severity).to_lowercase();
                                view! {
                                    <li class=format!("anomaly anomaly-{severity}")>
                                        <span class="anomaly-kind">{kind}</span>
                                        <span class="anomaly-text">{a.description}</span>
                                        <span class="muted small">{move || format!("since {}", relative_time(since, live.now_ms.get()))}</span>
                                    </li>
                                }
                            })
                            .collect_view()}
                    </ul>
                }
                .into_any()
            }}
        </div>
    }
}

/// The 7-day and 30-day rows side by side.
#[component]
fn Trends(#[prop(into)] rows: Signal<Vec<TrendComparison>>) -> impl IntoView {
    view! {
        <div class="trends">
            {move || rows.get().into_iter().map(|r| {
                let (arrow, class) = match r.trend {
                    Trend::Up => ("▲ up", "trend trend-up"),
                    Trend::Down => ("▼ down", "trend trend-down"),
                    Trend::Stable => ("▶ stable", "trend"),
                };
                let title = format!("Last {}", r.period.replace('d', " days"));
                let aria = title.clone();
                view! {
                    <article class="trend-card" aria-label=aria>
                        <h3>{title}</h3>
                        <p class="trend-total">{crate::app::components::counter::group_thousands(r.total_actions)}<span class="muted small">" events"</span></p>
                        <dl>
                            <dt>"per day"</dt><dd>{format!("{:.1}", r.avg_actions_per_day)}</dd>
                            <dt>"success"</dt><dd>{format!("{:.1}%", r.success_rate)}</dd>
                            <dt>"denied"</dt><dd>{format!("{:.1}%", r.denial_rate)}</dd>
                        </dl>
                        <span class=class title="against the period before">{arrow}</span>
                    </article>
                }
            }).collect_view()}
        </div>
    }
}

/// The newest critical events in range; each opens its detail dialog in the explorer.
#[component]
fn RecentCritical(#[prop(into)] events: Signal<Vec<StoredEvent>>) -> impl IntoView {
    let live = crate::app::live::use_live();
    view! {
        <section class="panel bars">
            <h3 id="recent-critical">"Recent critical events"</h3>
            {move || {
                let list = events.get();
                if list.is_empty() {
                    return view! { <p class="muted small">"No critical events in this range."</p> }.into_any();
                }
                view! {
                    <ul class="critical-list" aria-labelledby="recent-critical">
                        {list.into_iter().map(|e| {
                            let ts = e.event.timestamp.timestamp_millis();
                            view! {
                                <li>
                                    <a href=format!("/events/{}", e.event_id)>
                                        <span class="feed-action">{e.event.action.clone()}</span>
                                        <span class="muted small">{e.event.user.display_name().to_string()}</span>
                                        <time class="muted small">{move || relative_time(ts, live.now_ms.get())}</time>
                                    </a>
                                </li>
                            }
                        }).collect_view()}
                    </ul>
                }
                .into_any()
            }}
        </section>
    }
}

/// "last event 4 s ago", ticking.
#[component]
fn LastEventAgo() -> impl IntoView {
    let live = crate::app::live::use_live();
    let text = move || match live.last_event_ms.get() {
        Some(ms) => format!(
            "last event {}",
            crate::model::relative_time(ms, live.now_ms.get())
        ),
        None => "no events yet".to_string(),
    };
    view! { <span class="last-event" aria-live="off">{text}</span> }
}
