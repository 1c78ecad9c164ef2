//! `/alerts`: the alert log, newest first, with acknowledgement and a filter for the ones
//! still open. Grouped alerts show how many events they stand for. The list is read again
//! whenever the live socket (subscribed to alerts only) reports one, and after a reconnect.

use crate::analytics::Severity;
use crate::api::{acknowledge_alert, list_alerts};
use crate::app::components::{ConnectionBadge, TopBar};
use crate::app::live::{follow, Follower};
use crate::model::{Alert, ConnectionState, Seq, StoredEvent};
use leptos::prelude::*;

/// How often the list is read again without alerts: acknowledgements made elsewhere are not
/// pushed.
const REFRESH_MS: u64 = 60_000;

/// The alert log's socket: no events, and each alert (or reconnect) rereads the list.
#[derive(Clone, Copy)]
struct AlertLog {
    version: RwSignal<u32>,
    connection: RwSignal<ConnectionState>,
}

impl AlertLog {
    fn reread(&self) {
        self.version.update(|v| *v = v.wrapping_add(1));
    }
}

impl Follower for AlertLog {
    fn last_seq(&self) -> Seq {
        Seq(0)
    }
    fn apply(&self, _event: StoredEvent) {}
    fn caught_up(&self, _head: Seq) {
        // Alerts raised before this socket subscribed (after the list was first read, or
        // while the socket was down) are in the log, not on the socket: read it again.
        self.reread();
    }
    fn set_connection(&self, state: ConnectionState) {
        self.connection.set(state);
    }
    fn alert(&self, _alert: Alert) {
        self.reread();
    }
    fn alerts_only(&self) -> bool {
        true
    }
}

/// `/alerts`.
#[component]
pub fn AlertsPage() -> impl IntoView {
    let open_only = RwSignal::new(false);
    let version = RwSignal::new(0u32);
    let alerts = Resource::new(
        move || (open_only.get(), version.get()),
        |(open, _)| list_alerts(open),
    );
    let connection = RwSignal::new(ConnectionState::Connecting);
    follow(AlertLog {
        version,
        connection,
    });
    #[cfg(feature = "hydrate")]
    if let Ok(handle) = set_interval_with_handle(
        move || version.update(|v| *v = v.wrapping_add(1)),
        std::time::Duration::from_millis(REFRESH_MS),
    ) {
        on_cleanup(move || handle.clear());
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = REFRESH_MS;
    let acknowledge = Action::new(move |id: &u64| {
        let id = *id;
        async move {
            let done = acknowledge_alert(id).await;
            version.update(|v| *v = v.wrapping_add(1));
            done
        }
    });
    view! {
        <TopBar current="alerts">
            <ConnectionBadge state=connection />
        </TopBar>
        <main class="page">
            <div class="range-bar">
                <h1 class="page-title">"Alerts"</h1>
                <label class="check">
                    <input type="checkbox" prop:checked=move || open_only.get()
                        on:change=move |ev| open_only.set(event_target_checked(&ev)) />
                    " Unacknowledged only"
                </label>
            </div>
            <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match alerts.await {
                        Err(e) => view! { <p role="alert">{e.to_string()}</p> }.into_any(),
                        Ok(list) if list.is_empty() => view! {
                            <section class="panel empty">
                                <p>"No alerts."</p>
                                <p class="muted small">"Denials raise warnings, failures critical alerts; configure more under [alerts] in trailwatch.toml."</p>
                            </section>
                        }.into_any(),
                        Ok(list) => view! {
                            <ul class="alert-list" aria-label="Alert log">
                                {list.into_iter().map(|a| view! { <AlertRow alert=a acknowledge=acknowledge /> }).collect_view()}
                            </ul>
                        }.into_any(),
                    }
                })}
            </Transition>
        </main>
    }
}

#[component]
fn AlertRow(
    alert: Alert,
    acknowledge: Action<u64, Result<Option<Alert>, crate::error::AppError>>,
) -> impl IntoView {
    let severity = match alert.severity {
        Severity::Critical => "critical",
        Severity::Warning => "warning",
        Severity::Info => "info",
    };
    let id = alert.id;
    let when = chrono::DateTime::from_timestamp_millis(alert.first_at)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default();
    let event_link = alert
        .event
        .as_ref()
        .map(|e| format!("/events/{}", e.event_id));
    let acked = alert.acknowledged_at.is_some();
    let label = format!("{severity}: {}", alert.message);
    view! {
        <li class=format!("alert-row alert-{severity}") class:acked=acked aria-label=label>
            <span class="toast-severity">{severity}</span>
            <div class="alert-body">
                <p class="alert-message">{alert.message.clone()}</p>
                <p class="muted small">
                    {format!("{} · rule {}", when, alert.rule)}
                    {(alert.count > 1).then(|| format!(" · {} events", alert.count))}
                    {event_link.map(|href| view! { " · " <a href=href>"event"</a> })}
                </p>
            </div>
            {if acked {
                view! { <span class="muted small">"acknowledged"</span> }.into_any()
            } else {
                view! {
                    <button type="button" class="button small" on:click=move |_| { acknowledge.dispatch(id); }>
                        "Acknowledge"
                    </button>
                }
                .into_any()
            }}
        </li>
    }
}
