//! The dashboard home: live counters and the live activity feed, rendered on the server from a
//! snapshot and then kept current by the live socket.

use crate::api::load_dashboard;
use crate::app::components::{ConnectionBadge, LiveFeed, TopBar, Totals};
use crate::app::live::{provide_live, LiveState};
use crate::model::DashboardSnapshot;
use leptos::prelude::*;

/// `/`.
#[component]
pub fn DashboardPage() -> impl IntoView {
    let snapshot = Resource::new_blocking(|| (), |_| load_dashboard());
    view! {
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match snapshot.await {
                    Ok(s) => view! { <LiveDashboard snapshot=s /> }.into_any(),
                    Err(e) => view! {
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
fn LiveDashboard(snapshot: DashboardSnapshot) -> impl IntoView {
    let live = LiveState::new(&snapshot);
    provide_live(live);
    live.start();
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
        <main class="page">
            <Totals counters=live.counters />
            <LiveFeed />
        </main>
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
