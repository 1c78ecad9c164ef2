//! The login page: exchanges the admin token for a session cookie. Works before the WASM has
//! loaded, as a plain form post.

use crate::api::Login;
use crate::app::components::Logo;
use leptos::form::ActionForm;
use leptos::prelude::*;

/// `/login`.
#[component]
pub fn LoginPage() -> impl IntoView {
    let login = ServerAction::<Login>::new();
    let error = move || {
        login.value().get().and_then(|r| r.err()).map(|e| {
            view! { <p class="form-error" role="alert">{e.to_string()}</p> }
        })
    };
    view! {
        <main class="centered login">
            <div class="card narrow">
                <div class="login-brand">
                    <Logo />
                    <span class="brand-name">"Trailwatch"</span>
                </div>
                <h1>"Sign in"</h1>
                <p class="muted">
                    "Paste the admin token. The server prints it on first start and keeps it in "
                    <code>"data/admin.token"</code> "."
                </p>
                <ActionForm action=login attr:class="stack">
                    <label for="token">"Admin token"</label>
                    <input
                        id="token"
                        name="token"
                        type="password"
                        autocomplete="current-password"
                        spellcheck="false"
                        required
                        autofocus
                    />
                    {error}
                    <button type="submit" class="button primary" disabled=move || login.pending().get()>
                        {move || if login.pending().get() { "Signing in…" } else { "Sign in" }}
                    </button>
                </ActionForm>
            </div>
        </main>
    }
}
