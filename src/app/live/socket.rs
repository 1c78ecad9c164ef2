//! The browser's `/ws/audit` client: connects, subscribes (with a filter, for the explorer)
//! after the last seq it has, applies events, and on any loss reconnects with backoff (0.5 s
//! doubling to 5 s), resuming exactly where it stopped. Hydrate build only.

use super::Follower;
use crate::model::{ClientMessage, ConnectionState, ServerMessage};
use futures::{SinkExt, StreamExt};
use gloo_net::websocket::{futures::WebSocket, Message};
use gloo_timers::future::TimeoutFuture;
use leptos::prelude::*;
use leptos::task::spawn_local;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const FIRST_DELAY_MS: u32 = 500;
const MAX_DELAY_MS: u32 = 5_000;
/// Failed attempts after which the badge says offline rather than reconnecting.
const OFFLINE_AFTER: u32 = 4;

/// Connects and keeps connecting until the owner is cleaned up; then the socket is dropped
/// at once, closing it.
pub fn follow<F: Follower>(live: F) {
    let running = Arc::new(AtomicBool::new(true));
    let stop = running.clone();
    let (task, abort) = futures::future::abortable(run(live, running));
    on_cleanup(move || {
        stop.store(false, Ordering::Relaxed);
        abort.abort();
    });
    spawn_local(async move {
        let _ = task.await;
    });
}

/// Ticks `now_ms` every second until the owner is cleaned up.
pub fn tick(now_ms: RwSignal<i64>) {
    if let Ok(handle) = set_interval_with_handle(
        move || now_ms.set(js_sys::Date::now() as i64),
        std::time::Duration::from_secs(1),
    ) {
        on_cleanup(move || handle.clear());
    }
}

async fn run<F: Follower>(live: F, running: Arc<AtomicBool>) {
    {
        let mut delay = FIRST_DELAY_MS;
        let mut failures = 0u32;
        while running.load(Ordering::Relaxed) {
            if session(live, &running).await {
                delay = FIRST_DELAY_MS;
                failures = 0;
            }
            if !running.load(Ordering::Relaxed) {
                break;
            }
            failures += 1;
            let offline = failures >= OFFLINE_AFTER || !browser_online();
            live.set_connection(if offline {
                ConnectionState::Offline
            } else {
                ConnectionState::Reconnecting
            });
            TimeoutFuture::new(delay).await;
            delay = (delay * 2).min(MAX_DELAY_MS);
        }
    }
}

fn browser_online() -> bool {
    web_sys::window()
        .map(|w| w.navigator().on_line())
        .unwrap_or(true)
}

fn socket_url() -> Option<String> {
    let location = web_sys::window()?.location();
    let scheme = if location.protocol().ok()? == "https:" {
        "wss"
    } else {
        "ws"
    };
    Some(format!("{scheme}://{}/ws/audit", location.host().ok()?))
}

/// One connection, from open to loss. Returns whether it got as far as the live phase.
async fn session<F: Follower>(live: F, running: &AtomicBool) -> bool {
    let Some(url) = socket_url() else {
        return false;
    };
    let Ok(socket) = WebSocket::open(&url) else {
        return false;
    };
    let (mut tx, mut rx) = socket.split();
    let subscribe = ClientMessage::Subscribe {
        since_seq: Some(live.last_seq()),
        filter: live.filter(),
        alerts_only: live.alerts_only(),
    };
    let Ok(text) = serde_json::to_string(&subscribe) else {
        return false;
    };
    if tx.send(Message::Text(text)).await.is_err() {
        return false;
    }
    let mut reached_live = false;
    while let Some(Ok(message)) = rx.next().await {
        if !running.load(Ordering::Relaxed) {
            break;
        }
        let Message::Text(text) = message else {
            continue;
        };
        match serde_json::from_str::<ServerMessage>(&text) {
            Ok(ServerMessage::Event { event }) => {
                live.apply(*event);
            }
            Ok(ServerMessage::Ready { head_seq }) => {
                if head_seq < live.last_seq() {
                    // The server's history is not the one this page was built from.
                    if let Some(w) = web_sys::window() {
                        let _ = w.location().reload();
                    }
                    return false;
                }
                live.caught_up(head_seq);
                reached_live = true;
                live.set_connection(ConnectionState::Live);
            }
            // The server resumes a lagged socket from its store by itself, and this client
            // subscribes once per connection, so nothing precedes the acknowledgement.
            Ok(ServerMessage::Alert(alert)) => live.alert(*alert),
            Ok(ServerMessage::Lagged { .. } | ServerMessage::Subscribed { .. }) => {}
            Ok(ServerMessage::Error { message }) => {
                leptos::logging::warn!("live stream: {message}")
            }
            Err(e) => leptos::logging::warn!("live stream: unreadable message: {e}"),
        }
    }
    reached_live
}
