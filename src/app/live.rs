//! The dashboard's live state: the feed, the totals, the connection and the clock, as signals
//! shared through context. In the browser, `socket` feeds it from `/ws/audit`.

#[cfg(feature = "hydrate")]
mod socket;

use crate::api::FEED_SIZE;
use crate::model::{
    ConnectionState, Counters, DashboardSnapshot, EventFilter, Outcome, Seq, StoredEvent,
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
    /// Counts denials seen live; the header flashes when it changes.
    pub flash: RwSignal<u32>,
}

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
}

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
