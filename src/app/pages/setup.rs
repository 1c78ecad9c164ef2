//! `/setup?code=...`: the one-time link the server prints on a first start without users.
//! It makes the first admin, signs them in and opens the dashboard. Works before the WASM
//! has loaded, as a plain form post.

use crate::api::{setup_status, CompleteSetup};
use crate::app::components::AuthCard;
use leptos::form::ActionForm;
use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

/// `/setup`.
#[component]
pub fn SetupPage() -> impl IntoView {
    let setup = ServerAction::<CompleteSetup>::new();
    let query = use_query_map();
    let code = move || query.with(|q| q.get("code").unwrap_or_default());
    let valid = Resource::new(code, |code| async move {
        match code.is_empty() {
            true => Ok(false),
            false => setup_status(code).await,
        }
    });
    let error = move || {
        setup.value().get().and_then(|r| r.err()).map(|e| {
            view! { <p class="form-error" role="alert">{e.to_string()}</p> }
        })
    };
    view! {
        <AuthCard title="Create the first admin">
            <Suspense fallback=|| view! { <p class="loading">"Checking the link…"</p> }>
                {move || Suspend::new(async move {
                    match valid.await {
                        Ok(true) => view! {
                            <p class="muted">"This link works once. The admin you create here manages every other user."</p>
                            <ActionForm action=setup attr:class="stack">
                                <input type="hidden" name="code" value=code() />
                                <label for="setup-name">"Name"</label>
                                <input id="setup-name" name="name" type="text" required
                                    maxlength="64" autocomplete="username" autofocus />
                                <label for="setup-password">"Password"</label>
                                <input id="setup-password" name="password" type="password"
                                    required minlength="10" autocomplete="new-password" />
                                <label for="setup-confirm">"Repeat the password"</label>
                                <input id="setup-confirm" name="confirm" type="password"
                                    required minlength="10" autocomplete="new-password" />
                                {error}
                                <button type="submit" class="button primary"
                                    disabled=move || setup.pending().get()>"Create admin"</button>
                            </ActionForm>
                        }.into_any(),
                        Ok(false) => view! {
                            <p role="alert" class="form-error">
                                "This setup link was used, has expired, or users exist already."
                            </p>
                            <a class="button" href="/login">"Go to sign-in"</a>
                        }.into_any(),
                        Err(e) => view! { <p role="alert">{e.to_string()}</p> }.into_any(),
                    }
                })}
            </Suspense>
        </AuthCard>
    }
}
