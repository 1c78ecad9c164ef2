//! Alert toasts: each alert that arrives over the live socket shows for a few seconds in a
//! corner, with its severity, its count when grouped, and a way to the alert log.

use crate::analytics::Severity;
use crate::app::live::use_live;
use leptos::prelude::*;

/// The toast stack of the live state above.
#[component]
pub fn Toasts() -> impl IntoView {
    let live = use_live();
    view! {
        <div class="toasts" role="region" aria-label="New alerts" aria-live="assertive">
            <For
                each=move || live.toasts.get()
                key=|a| (a.id, a.count)
                children=move |a| {
                    let id = a.id;
                    let severity = match a.severity {
                        Severity::Critical => "critical",
                        Severity::Warning => "warning",
                        Severity::Info => "info",
                    };
                    let count = (a.count > 1).then(|| format!("{} events", a.count));
                    view! {
                        <div class=format!("toast toast-{severity}") role="alert">
                            <span class="toast-severity">{severity}</span>
                            <p class="toast-message">{a.message}</p>
                            {count.map(|c| view! { <span class="muted small">{c}</span> })}
                            <div class="toast-actions">
                                <a href="/alerts">"All alerts"</a>
                                <button
                                    type="button"
                                    class="button ghost small"
                                    aria-label="Dismiss"
                                    on:click=move |_| live.toasts.update(|t| t.retain(|x| x.id != id))
                                >"×"</button>
                            </div>
                        </div>
                    }
                }
            />
        </div>
    }
}
