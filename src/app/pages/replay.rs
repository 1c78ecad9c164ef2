//! `/replay`: plays a past range back into the feed and the counters at 1× to 100×, with
//! pause and a scrubber, to watch an incident unfold. The events come from the server once;
//! the playhead, counters and feed are computed here from them.

use super::explorer::view::{parse_local, to_local_input};
use crate::api::{replay_events, FEED_SIZE, REPLAY_CAP};
use crate::app::components::counter::group_thousands;
use crate::app::components::event_dialog::{format_time, use_local_offset};
use crate::app::components::{LiveFeed, TopBar, Totals};
use crate::app::live::{provide_live, LiveState};
use crate::model::{Counters, DashboardSnapshot, EventFilter, StoredEvent};
use crate::search::Query;
use chrono::Utc;
use leptos::prelude::*;

/// The speeds offered, as multiples of real time.
const SPEEDS: [u32; 7] = [1, 2, 5, 10, 25, 50, 100];
/// How often the playhead advances, in milliseconds of wall time.
const TICK_MS: u64 = 100;

/// Loaded events in the order they happened, and what the screen shows at any instant.
#[derive(Clone, Debug, PartialEq)]
pub struct Timeline {
    events: Vec<StoredEvent>,
    pub start_ms: i64,
    pub end_ms: i64,
}

impl Timeline {
    /// Orders `events` by time (then seq) over the range `start_ms..=end_ms`.
    pub fn new(mut events: Vec<StoredEvent>, start_ms: i64, end_ms: i64) -> Timeline {
        events.sort_by_key(|e| (e.event.timestamp, e.seq));
        Timeline {
            events,
            start_ms,
            end_ms,
        }
    }

    /// How many events the timeline holds.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// How many events happened at or before `t_ms`.
    pub fn played(&self, t_ms: i64) -> usize {
        self.events
            .partition_point(|e| e.event.timestamp.timestamp_millis() <= t_ms)
    }

    /// The totals and the feed (newest first, at most `feed`) as of `t_ms`.
    pub fn state_at(&self, t_ms: i64, feed: usize) -> (Counters, Vec<StoredEvent>) {
        let played = &self.events[..self.played(t_ms)];
        let mut c = Counters::default();
        played.iter().for_each(|e| c.count(e));
        let recent = played.iter().rev().take(feed).cloned().collect();
        (c, recent)
    }
}

/// `/replay`.
#[component]
pub fn ReplayPage() -> impl IntoView {
    let live = LiveState::new(&DashboardSnapshot {
        events: Vec::new(),
        counters: Counters::default(),
        server_time: Utc::now(),
    });
    provide_live(live);
    let offset = use_local_offset();
    let from = RwSignal::new(String::new());
    let to = RwSignal::new(String::new());
    let query = RwSignal::new(String::new());
    let speed = RwSignal::new(10_u32);
    let timeline = RwSignal::new(None::<Timeline>);
    let truncated = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    let loading = RwSignal::new(false);
    let playhead = RwSignal::new(0_i64);
    let playing = RwSignal::new(false);

    // The inputs start at the last hour, in the reader's time zone, once it is known.
    Effect::new(move |_| {
        if let Some(off) = offset.get() {
            if from.get_untracked().is_empty() {
                let now = Utc::now();
                from.set(to_local_input(now - chrono::Duration::hours(1), off));
                to.set(to_local_input(now, off));
            }
        }
    });

    let show = move |t: i64| {
        playhead.set(t);
        timeline.with_untracked(|tl| {
            if let Some(tl) = tl {
                let (counters, feed) = tl.state_at(t, FEED_SIZE);
                live.last_event_ms
                    .set(feed.first().map(|e| e.event.timestamp.timestamp_millis()));
                live.counters.set(counters);
                live.feed.set(feed);
                live.now_ms.set(t);
            }
        });
    };

    let load = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let off = offset.get_untracked().unwrap_or(0);
        let (Some(start), Some(end)) = (
            parse_local(&from.get_untracked(), off),
            parse_local(&to.get_untracked(), off),
        ) else {
            error.set(Some("Give both ends of the range.".into()));
            return;
        };
        if start >= end {
            error.set(Some("The range must end after it starts.".into()));
            return;
        }
        let q = query.get_untracked();
        if let Err(e) = Query::parse(&q) {
            error.set(Some(format!("Query: {e}")));
            return;
        }
        let filter = EventFilter {
            start_date: Some(start),
            end_date: Some(end),
            q: (!q.trim().is_empty()).then_some(q),
            ..EventFilter::default()
        };
        error.set(None);
        playing.set(false);
        loading.set(true);
        leptos::task::spawn_local(async move {
            match replay_events(filter).await {
                Ok(batch) => {
                    truncated.set(batch.truncated);
                    let tl = Timeline::new(
                        batch.events,
                        start.timestamp_millis(),
                        end.timestamp_millis(),
                    );
                    timeline.set(Some(tl));
                    show(start.timestamp_millis());
                }
                Err(e) => error.set(Some(e.to_string())),
            }
            loading.set(false);
        });
    };

    // The clock: advances the playhead while playing (browser only).
    Effect::new(move |_| {
        if let Ok(handle) = set_interval_with_handle(
            move || {
                if !playing.get_untracked() {
                    return;
                }
                let Some(end) = timeline.with_untracked(|t| t.as_ref().map(|t| t.end_ms)) else {
                    return;
                };
                let next =
                    playhead.get_untracked() + (TICK_MS * u64::from(speed.get_untracked())) as i64;
                if next >= end {
                    playing.set(false);
                }
                show(next.min(end));
            },
            std::time::Duration::from_millis(TICK_MS),
        ) {
            on_cleanup(move || handle.clear());
        }
    });

    let toggle = move |_| {
        let at_end = timeline.with_untracked(|t| {
            t.as_ref()
                .is_some_and(|t| playhead.get_untracked() >= t.end_ms)
        });
        if at_end {
            if let Some(start) = timeline.with_untracked(|t| t.as_ref().map(|t| t.start_ms)) {
                show(start);
            }
        }
        playing.update(|p| *p = !*p);
    };
    let seek = move |ev: leptos::ev::Event| {
        if let Ok(t) = event_target_value(&ev).parse::<i64>() {
            show(t);
        }
    };
    let status = move || {
        timeline.with(|tl| {
            tl.as_ref().map(|tl| {
                format!(
                    "{} · {} of {} events",
                    format_time(playhead.get(), offset.get(), true),
                    group_thousands(tl.played(playhead.get()) as u64),
                    group_thousands(tl.len() as u64)
                )
            })
        })
    };
    let bounds = move |f: fn(&Timeline) -> i64| timeline.with(|t| t.as_ref().map_or(0, f));

    view! {
        <TopBar current="replay" />
        <main class="page">
            <section class="panel replay" aria-label="Replay controls">
                <form class="replay-range" on:submit=load>
                    <label class="field">
                        <span>"From"</span>
                        <input type="datetime-local" step="1" name="from" required
                            prop:value=move || from.get() on:input=move |ev| from.set(event_target_value(&ev)) />
                    </label>
                    <label class="field">
                        <span>"To"</span>
                        <input type="datetime-local" step="1" name="to" required
                            prop:value=move || to.get() on:input=move |ev| to.set(event_target_value(&ev)) />
                    </label>
                    <label class="field grow">
                        <span>"Only events matching (optional)"</span>
                        <input type="text" name="q" placeholder="user:alice -action:auth.logout"
                            prop:value=move || query.get() on:input=move |ev| query.set(event_target_value(&ev)) />
                    </label>
                    <button type="submit" class="button primary" disabled=move || loading.get()>
                        {move || if loading.get() { "Loading…" } else { "Load range" }}
                    </button>
                </form>
                <p class="query-error" role="alert">{move || error.get()}</p>
                <Show when=move || timeline.with(Option::is_some)>
                    <div class="replay-controls">
                        <button type="button" class="button" on:click=toggle aria-pressed=move || playing.get().to_string()>
                            {move || if playing.get() { "Pause" } else { "Play" }}
                        </button>
                        <label class="field inline">
                            <span>"Speed"</span>
                            <select name="speed" on:change=move |ev| {
                                if let Ok(s) = event_target_value(&ev).parse() { speed.set(s) }
                            } prop:value=move || speed.get().to_string()>
                                {SPEEDS.iter().map(|s| view! { <option value=s.to_string()>{format!("{s}×")}</option> }).collect_view()}
                            </select>
                        </label>
                        <input
                            class="scrubber"
                            type="range"
                            aria-label="Replay position"
                            min=move || bounds(|t| t.start_ms)
                            max=move || bounds(|t| t.end_ms)
                            step="1000"
                            prop:value=move || playhead.get().to_string()
                            on:input=seek
                        />
                        <span class="replay-clock" role="status">{status}</span>
                    </div>
                    <Show when=move || timeline.with(|t| t.as_ref().is_some_and(Timeline::is_empty))>
                        <p class="muted small">"No events in this range: pick another one or loosen the query."</p>
                    </Show>
                    <Show when=move || truncated.get()>
                        <p class="muted small">
                            {format!("This range holds more than {} events; the first {} play. Narrow the range or add a query to see the rest.", group_thousands(REPLAY_CAP as u64), group_thousands(REPLAY_CAP as u64))}
                        </p>
                    </Show>
                </Show>
            </section>
            <Totals counters=live.counters />
            <LiveFeed title="Replayed activity" />
        </main>
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Actor, AuditEvent, Category, EventId, Level, Outcome, Seq, Source};
    use chrono::DateTime;

    fn event(seq: u64, ts: i64, outcome: Outcome) -> StoredEvent {
        StoredEvent {
            seq: Seq(seq),
            event_id: EventId(seq.to_string()),
            received_at: DateTime::UNIX_EPOCH,
            hash: String::new(),
            event: AuditEvent::new(
                DateTime::from_timestamp_millis(ts).unwrap(),
                if seq == 3 {
                    Level::Critical
                } else {
                    Level::Info
                },
                Category::Api,
                "x",
                outcome,
                Actor {
                    id: "u".into(),
                    username: None,
                },
                Source::http(),
            ),
        }
    }

    #[test]
    fn the_state_at_an_instant_counts_what_happened_by_then_in_time_order() {
        // Seq 2 happened before seq 1 (a late arrival): replay follows the clock.
        let tl = Timeline::new(
            vec![
                event(1, 3_000, Outcome::Denied),
                event(2, 1_000, Outcome::Success),
                event(3, 5_000, Outcome::Failure),
            ],
            0,
            10_000,
        );
        let (c, feed) = tl.state_at(999, 50);
        assert_eq!((c.total, feed.len()), (0, 0));
        let (c, feed) = tl.state_at(3_000, 50);
        assert_eq!((c.total, c.denied, c.failures), (2, 1, 0));
        assert_eq!(
            feed.iter().map(|e| e.seq.0).collect::<Vec<_>>(),
            vec![1, 2],
            "newest first"
        );
        let (c, feed) = tl.state_at(10_000, 2);
        assert_eq!((c.total, c.failures, c.critical, feed.len()), (3, 1, 1, 2));
        assert_eq!(tl.played(4_000), 2);
    }
}
