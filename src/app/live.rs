//! The dashboard's live state: the feed, the totals, the connection and the clock, as signals
//! shared through context. In the browser, `socket` feeds it from `/ws/audit`.

#[cfg(feature = "hydrate")]
mod socket;

use crate::analytics::Overview;
use crate::api::FEED_SIZE;
use crate::model::{
    Alert, ConnectionState, Counters, DashboardSnapshot, EventFilter, Outcome, Seq, StoredEvent,
};
use leptos::prelude::*;

/// What a live socket feeds: the dashboard's state, or the explorer's filtered rows.
pub trait Follower: Copy + 'static {
    /// The seq to resume after.
    fn last_seq(&self) -> Seq;
    /// The subscription's filter; `None` for every event.
    fn filter(&self) -> Option<EventFilter> {
        None
    }
    /// One event, in seq order; one already applied must be ignored.
    fn apply(&self, event: StoredEvent);
    /// The server has sent everything up to `head`.
    fn caught_up(&self, _head: Seq) {}
    fn set_connection(&self, state: ConnectionState);
    /// An alert was raised or a grouped one grew.
    fn alert(&self, _alert: Alert) {}
    /// Whether only alerts are wanted, no events.
    fn alerts_only(&self) -> bool {
        false
    }
}

/// Follows `/ws/audit` for `follower` until the calling owner is cleaned up (browser only;
/// nothing happens during server rendering).
pub fn follow<F: Follower>(follower: F) {
    #[cfg(feature = "hydrate")]
    socket::follow(follower);
    #[cfg(not(feature = "hydrate"))]
    let _ = follower;
}

/// Ticks `now_ms` every second in the browser, for relative times.
pub fn tick(now_ms: RwSignal<i64>) {
    #[cfg(feature = "hydrate")]
    socket::tick(now_ms);
    #[cfg(not(feature = "hydrate"))]
    let _ = now_ms;
}

/// Signals the live parts of the dashboard read. `Copy`, like the signals it holds.
#[derive(Clone, Copy)]
pub struct LiveState {
    /// The newest events, newest first, at most [`FEED_SIZE`].
    pub feed: RwSignal<Vec<StoredEvent>>,
    /// Running totals; `as_of` is the last seq applied, so resuming starts after it.
    pub counters: RwSignal<Counters>,
    pub connection: RwSignal<ConnectionState>,
    /// When the newest event arrived at the server, epoch milliseconds.
    pub last_event_ms: RwSignal<Option<i64>>,
    /// The clock relative times are measured against; ticks every second in the browser.
    pub now_ms: RwSignal<i64>,
    /// Counts denials and alerts seen live; the header flashes when it changes.
    pub flash: RwSignal<u32>,
    /// Alerts shown as toasts, newest first, until dismissed or timed out.
    pub toasts: RwSignal<Vec<Alert>>,
    /// The home page's figures for `range`, kept current by live events and refreshes.
    pub overview: RwSignal<Option<Overview>>,
    /// The home page's range preset.
    pub range: RwSignal<&'static str>,
    /// The browser's UTC offset in minutes (0 while rendering on the server).
    pub offset: RwSignal<i32>,
    /// The browser's IANA zone, once known.
    pub zone: RwSignal<Option<String>>,
    /// Whether a refresh of the overview is already scheduled (browser only, as refreshes are).
    #[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
    refresh_pending: StoredValue<bool>,
    /// Bumped per refresh request, so an older answer never replaces a newer one.
    #[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
    refresh_generation: StoredValue<u32>,
}

/// The range the home page opens with.
pub const DEFAULT_RANGE: &str = "24h";

/// How long after a live event the overview is asked for again (rates, anomalies and
/// newcomers to top lists are only known to the server), and how often at most.
pub const REFRESH_AFTER_EVENT_MS: u64 = 3_000;
/// How often the overview is refreshed without events (ranges slide, anomalies clear).
pub const REFRESH_EVERY_MS: u64 = 60_000;

impl LiveState {
    /// State as of the server's snapshot.
    pub fn new(snapshot: &DashboardSnapshot) -> LiveState {
        LiveState {
            feed: RwSignal::new(snapshot.events.clone()),
            counters: RwSignal::new(snapshot.counters),
            connection: RwSignal::new(ConnectionState::Connecting),
            last_event_ms: RwSignal::new(
                snapshot
                    .events
                    .first()
                    .map(|e| e.received_at.timestamp_millis()),
            ),
            now_ms: RwSignal::new(snapshot.server_time.timestamp_millis()),
            flash: RwSignal::new(0),
            toasts: RwSignal::new(Vec::new()),
            overview: RwSignal::new(None),
            range: RwSignal::new(DEFAULT_RANGE),
            offset: RwSignal::new(0),
            zone: RwSignal::new(None),
            refresh_pending: StoredValue::new(false),
            refresh_generation: StoredValue::new(0),
        }
    }

    /// `event`'s local date and hour for the heatmap, when the heatmap is in the browser's
    /// zone (otherwise the next refresh places it).
    fn local_cell(&self, event: &StoredEvent) -> Option<(String, usize)> {
        let zone = self.zone.get_untracked()?;
        let same = self.overview.with_untracked(|o| {
            o.as_ref()
                .is_some_and(|o| o.insights.heatmap.time_zone == zone)
        });
        if !same {
            return None;
        }
        let ms = event.event.timestamp.timestamp_millis();
        let offset = crate::app::browser::local_offset_minutes(ms);
        let local = chrono::DateTime::from_timestamp_millis(ms + i64::from(offset) * 60_000)?;
        use chrono::Timelike;
        Some((local.format("%Y-%m-%d").to_string(), local.hour() as usize))
    }

    /// Refreshes the overview now and then: after live events, when the range changes, every
    /// minute, and once on load to place the heatmap in the browser's zone (browser only).
    pub fn keep_overview_fresh(self) {
        #[cfg(feature = "hydrate")]
        {
            // After hydration: the server rendered in UTC, and text must match it until then.
            Effect::new(move |_| {
                self.offset.set(crate::app::browser::local_offset_minutes(
                    js_sys::Date::now() as i64,
                ));
                let zone = crate::app::browser::time_zone();
                let differs = self
                    .overview
                    .with_untracked(|o| o.as_ref().map(|o| o.insights.heatmap.time_zone.clone()))
                    != zone;
                self.zone.set(zone);
                if differs {
                    self.refresh_overview();
                }
            });
            Effect::new(move |first: Option<()>| {
                self.range.track();
                if first.is_some() {
                    self.refresh_overview();
                }
            });
            if let Ok(handle) = set_interval_with_handle(
                move || self.refresh_overview(),
                std::time::Duration::from_millis(REFRESH_EVERY_MS),
            ) {
                on_cleanup(move || handle.clear());
            }
        }
    }

    /// Asks the server for the overview of the current range; events that arrived after its
    /// snapshot are applied on top.
    pub fn refresh_overview(self) {
        #[cfg(feature = "hydrate")]
        {
            self.refresh_generation
                .update_value(|g| *g = g.wrapping_add(1));
            let mine = self.refresh_generation.get_value();
            let range = self.range.get_untracked().to_string();
            let zone = self.zone.get_untracked();
            leptos::task::spawn_local(async move {
                let answer = crate::api::load_overview(range, zone).await;
                if self.refresh_generation.try_get_value() != Some(mine) {
                    return;
                }
                match answer {
                    Ok(mut fresh) => {
                        let mut newer: Vec<StoredEvent> = self.feed.with_untracked(|f| {
                            f.iter().filter(|e| e.seq > fresh.as_of).cloned().collect()
                        });
                        newer.sort_by_key(|e| e.seq);
                        for e in &newer {
                            let cell = self.local_cell(e);
                            fresh.absorb(e, cell.as_ref().map(|(d, h)| (d.as_str(), *h)));
                        }
                        self.overview.set(Some(fresh));
                    }
                    Err(e) => leptos::logging::warn!("overview refresh failed: {e}"),
                }
            });
        }
    }

    /// Schedules one refresh a little after a live event, unless one is already scheduled.
    fn refresh_soon(self) {
        #[cfg(feature = "hydrate")]
        {
            if self.refresh_pending.get_value() {
                return;
            }
            self.refresh_pending.set_value(true);
            set_timeout(
                move || {
                    self.refresh_pending.set_value(false);
                    self.refresh_overview();
                },
                std::time::Duration::from_millis(REFRESH_AFTER_EVENT_MS),
            );
        }
    }

    /// Applies one live event; an event already applied (by seq) is ignored, so a replay after
    /// reconnecting can never show an event twice. Returns whether it was new.
    pub fn absorb(&self, event: StoredEvent) -> bool {
        let mut fresh = false;
        self.counters.update(|c| fresh = c.absorb(&event));
        if !fresh {
            return false;
        }
        if event.event.outcome == Outcome::Denied {
            self.flash.update(|n| *n = n.wrapping_add(1).max(1));
        }
        self.last_event_ms
            .set(Some(event.received_at.timestamp_millis()));
        if self.overview.with_untracked(Option::is_some) {
            let cell = self.local_cell(&event);
            self.overview.update(|o| {
                if let Some(o) = o {
                    o.absorb(&event, cell.as_ref().map(|(d, h)| (d.as_str(), *h)));
                }
            });
            self.refresh_soon();
        }
        self.feed.update(|feed| {
            feed.insert(0, event);
            feed.truncate(FEED_SIZE);
        });
        true
    }

    /// Starts the socket and the clock (browser only; nothing happens during server rendering).
    pub fn start(self) {
        tick(self.now_ms);
        follow(self);
    }
}

impl Follower for LiveState {
    /// The seq after which the stream should resume.
    fn last_seq(&self) -> Seq {
        self.counters.get_untracked().as_of
    }

    fn apply(&self, event: StoredEvent) {
        self.absorb(event);
    }

    fn set_connection(&self, state: ConnectionState) {
        self.connection.set(state);
    }

    fn alert(&self, alert: Alert) {
        let id = alert.id;
        self.flash.update(|n| *n = n.wrapping_add(1).max(1));
        self.toasts.update(|t| {
            // A grouped alert's update replaces its first toast.
            t.retain(|a| a.id != id);
            t.insert(0, alert);
            t.truncate(TOASTS);
        });
        #[cfg(feature = "hydrate")]
        {
            let toasts = self.toasts;
            set_timeout(
                move || toasts.update(|t| t.retain(|a| a.id != id)),
                std::time::Duration::from_millis(TOAST_MS),
            );
        }
        // Anomalies and the figures behind them are the server's: ask again soon.
        if self.overview.with_untracked(Option::is_some) {
            self.refresh_soon();
        }
    }
}

/// How many toasts show at once, and for how long each.
pub const TOASTS: usize = 4;
pub const TOAST_MS: u64 = 8_000;

/// Makes the live state available to the components below.
pub fn provide_live(state: LiveState) {
    provide_context(state);
}

/// The live state provided above.
///
/// # Panics
/// When no [`provide_live`] is above the caller: a programming error.
pub fn use_live() -> LiveState {
    expect_context::<LiveState>()
}
