//! The connection badge: live, reconnecting, offline.

use crate::model::ConnectionState;
use leptos::prelude::*;

/// Shows the state of a live socket.
#[component]
pub fn ConnectionBadge(#[prop(into)] state: Signal<ConnectionState>) -> impl IntoView {
    let state = move || state.get();
    let title = move || match state() {
        ConnectionState::Connecting => "Connecting to the live stream",
        ConnectionState::Live => "Receiving events as they are stored",
        ConnectionState::Reconnecting => "Connection lost; retrying and resuming where it stopped",
        ConnectionState::Offline => "The server cannot be reached; still retrying",
    };
    view! {
        <span
            class=move || format!("badge badge-{}", state().label())
            role="status"
            aria-label=move || format!("Connection: {}", state().label())
            title=title
        >
            <span class="badge-dot" aria-hidden="true"></span>
            {move || state().label()}
        </span>
    }
}
