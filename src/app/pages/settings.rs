//! `/settings`: what an admin may change while the server runs: retention, the ingest limit
//! and session lifetimes. Saving applies at once, overrides the settings file from then on,
//! and is recorded in the chain with each field's before and after.

use crate::api::{load_settings, save_settings};
use crate::app::components::TopBar;
use crate::model::RuntimeSettings;
use leptos::prelude::*;

/// `/settings`.
#[component]
pub fn SettingsPage() -> impl IntoView {
    let version = RwSignal::new(0u32);
    let loaded = Resource::new(move || version.get(), |_| load_settings());
    let save = Action::new(move |s: &RuntimeSettings| {
        let s = s.clone();
        async move {
            let saved = save_settings(s).await;
            version.update(|v| *v = v.wrapping_add(1));
            saved
        }
    });
    view! {
        <TopBar current="settings" />
        <main class="page">
            <div class="range-bar">
                <h1 class="page-title">"Settings"</h1>
            </div>
            <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match loaded.await {
                        Err(e) => view! { <p role="alert">{e.to_string()}</p> }.into_any(),
                        Ok(page) => view! {
                            <SettingsForm current=page.current save=save />
                            <p class="muted small">
                                {match (page.saved_at, page.saved_by) {
                                    (Some(at), Some(by)) => format!(
                                        "Last saved here by {by} at {}; these override the settings file.",
                                        super::tokens::short_time(&at)
                                    ),
                                    _ => "From the settings file and flags; saving here overrides them.".to_string(),
                                }}
                            </p>
                        }.into_any(),
                    }
                })}
            </Transition>
        </main>
    }
}

/// The form over `current`; `save` sends it.
#[component]
fn SettingsForm(
    current: RuntimeSettings,
    save: Action<RuntimeSettings, Result<crate::model::SettingsPage, crate::error::AppError>>,
) -> impl IntoView {
    let draft = RwSignal::new(current);
    let number = move |ev: &leptos::ev::Event| event_target_value(ev).trim().parse::<f64>().ok();
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        save.dispatch(draft.get_untracked());
    };
    view! {
        <form class="panel settings-form" on:submit=submit>
            <fieldset>
                <legend>"Retention"</legend>
                <label class="check">
                    <input type="checkbox" name="retention_enabled"
                        prop:checked=move || draft.with(|d| d.retention_enabled)
                        on:change=move |ev| draft.update(|d| d.retention_enabled = event_target_checked(&ev)) />
                    "Delete expired events every day"
                </label>
                <label class="field">
                    "Keep events for (days)"
                    <input type="number" name="retention_days" min="1" required
                        prop:value=move || draft.with(|d| d.retention_days.to_string())
                        on:input=move |ev| if let Some(v) = number(&ev) { draft.update(|d| d.retention_days = v as u32) } />
                    <span class="muted small">"Critical and security events keep their own, longer periods from the settings file."</span>
                </label>
            </fieldset>
            <fieldset>
                <legend>"Ingest limit per credential"</legend>
                <label class="field">
                    "Requests per second (0 for no limit)"
                    <input type="number" name="ingest_per_second" min="0" step="any" required
                        prop:value=move || draft.with(|d| d.ingest_per_second.to_string())
                        on:input=move |ev| if let Some(v) = number(&ev) { draft.update(|d| d.ingest_per_second = v) } />
                </label>
                <label class="field">
                    "Burst"
                    <input type="number" name="ingest_burst" min="1" required
                        prop:value=move || draft.with(|d| d.ingest_burst.to_string())
                        on:input=move |ev| if let Some(v) = number(&ev) { draft.update(|d| d.ingest_burst = v as u32) } />
                </label>
            </fieldset>
            <fieldset>
                <legend>"Dashboard sessions"</legend>
                <label class="field">
                    "End after idle (minutes)"
                    <input type="number" name="session_idle_minutes" min="1" required
                        prop:value=move || draft.with(|d| d.session_idle_minutes.to_string())
                        on:input=move |ev| if let Some(v) = number(&ev) { draft.update(|d| d.session_idle_minutes = v as u64) } />
                </label>
                <label class="field">
                    "End after sign-in, at the latest (hours)"
                    <input type="number" name="session_max_hours" min="1" required
                        prop:value=move || draft.with(|d| d.session_max_hours.to_string())
                        on:input=move |ev| if let Some(v) = number(&ev) { draft.update(|d| d.session_max_hours = v as u64) } />
                </label>
            </fieldset>
            <div class="settings-actions">
                <button type="submit" class="button primary" disabled=move || save.pending().get()>
                    "Save settings"
                </button>
                {move || save.value().get().map(|r| match r {
                    Ok(_) => view! { <span class="form-ok" role="status">"Saved and in effect."</span> }.into_any(),
                    Err(e) => view! { <span class="form-error" role="alert">{e.to_string()}</span> }.into_any(),
                })}
            </div>
        </form>
    }
}
