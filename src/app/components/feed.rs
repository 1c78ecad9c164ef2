//! The live activity feed: the newest arrivals first, each sliding in as it arrives, coloured
//! by outcome and level, with a relative time that ticks. A feed lists what arrived in the
//! order it arrived, whatever time an event says it happened (the explorer sorts by that).

use crate::app::live::use_live;
use crate::model::{relative_time, Outcome, StoredEvent};
use leptos::prelude::*;

/// The list of the newest events, under `title` (also the list's accessible name).
#[component]
pub fn LiveFeed(#[prop(default = "Live activity")] title: &'static str) -> impl IntoView {
    let live = use_live();
    let empty = move || live.feed.with(Vec::is_empty);
    view! {
        <section class="panel feed-panel">
            <div class="panel-head">
                <h2 id="feed-title">{title}</h2>
                <span class="muted small" title="A late or backfilled event shows here when it arrives; the Explorer lists events by when they happened">
                    {move || format!("in order of arrival · newest {} of {}", live.feed.with(Vec::len), crate::app::components::counter::group_thousands(live.counters.get().total))}
                </span>
            </div>
            <Show when=empty>
                <div class="empty">
                    <p>"No events yet."</p>
                    <p class="muted small">
                        "Send one with " <code>"trailwatch emit test \"hello\""</code>
                        " or POST to " <code>"/api/v1/events"</code> "."
                    </p>
                </div>
            </Show>
            <ol class="feed" aria-labelledby="feed-title">
                <For each=move || live.feed.get() key=|e| e.seq children=move |e| view! { <FeedItem event=e /> } />
            </ol>
        </section>
    }
    .into_any()
}

#[component]
fn FeedItem(event: StoredEvent) -> impl IntoView {
    let live = use_live();
    let e = &event.event;
    let outcome = e.outcome.as_str();
    let level = e.level.as_str();
    let icon = match e.outcome {
        Outcome::Success => "✓",
        Outcome::Failure => "!",
        Outcome::Denied => "⨯",
    };
    let ts = e.timestamp.timestamp_millis();
    let when_utc = e.timestamp.format("%Y-%m-%d %H:%M:%S%.3f UTC").to_string();
    let who = e.user.display_name().to_string();
    let target = e
        .entity
        .as_ref()
        .and_then(|x| x.name.clone().or_else(|| x.id.clone()));
    let description = e.description.clone();
    let source = e.source.0.clone();
    let label = format!("{} {} by {}", e.action, outcome, who);
    view! {
        <li class=format!("feed-item outcome-{outcome} level-{level}") aria-label=label data-seq=event.seq.0>
            <span class="feed-icon" aria-hidden="true">{icon}</span>
            <div class="feed-body">
                <div class="feed-line">
                    <span class="feed-action">{e.action.clone()}</span>
                    <span class=format!("chip chip-{outcome}")>{outcome}</span>
                    <span class=format!("chip level level-chip-{level}")>{level}</span>
                    <span class="chip chip-category">{e.category.as_str().replace('_', " ")}</span>
                </div>
                <div class="feed-meta">
                    <span class="feed-user">{who}</span>
                    {target.map(|t| view! { <span class="feed-sep">"→"</span><span class="feed-target">{t}</span> })}
                    {description.map(|d| view! { <span class="feed-desc">{d}</span> })}
                </div>
            </div>
            <div class="feed-side">
                <time class="feed-time" datetime=e.timestamp.to_rfc3339() title=when_utc>
                    {move || relative_time(ts, live.now_ms.get())}
                </time>
                <span class="feed-source">{source}</span>
            </div>
        </li>
    }
    .into_any()
}
