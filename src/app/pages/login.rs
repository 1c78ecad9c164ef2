//! The login page: a user's name and password, or the admin token (the way in before the
//! first user exists, and when every admin is locked out). Both work before the WASM has
//! loaded, as plain form posts.

use crate::api::Login;
use crate::app::components::AuthCard;
use leptos::form::ActionForm;
use leptos::prelude::*;

/// `/login`.
#[component]
pub fn LoginPage() -> impl IntoView {
    let by_password = ServerAction::<Login>::new();
    let by_token = ServerAction::<Login>::new();
    let error = move |action: ServerAction<Login>| {
        move || {
            action.value().get().and_then(|r| r.err()).map(|e| {
                view! { <p class="form-error" role="alert">{e.to_string()}</p> }
            })
        }
    };
    view! {
        <AuthCard title="Sign in">
            <ActionForm action=by_password attr:class="stack">
                <label for="name">"Name"</label>
                <input id="name" name="name" type="text" autocomplete="username"
                    spellcheck="false" required autofocus />
                <label for="password">"Password"</label>
                <input id="password" name="password" type="password"
                    autocomplete="current-password" required />
                {error(by_password)}
                <button type="submit" class="button primary"
                    disabled=move || by_password.pending().get()>
                    {move || if by_password.pending().get() { "Signing in…" } else { "Sign in" }}
                </button>
            </ActionForm>
            <div class="login-divider" role="separator"><span>"or"</span></div>
            <ActionForm action=by_token attr:class="stack">
                <label for="token">"Admin token"</label>
                <p class="muted small">
                    "The server prints it on first start and keeps it in "
                    <code>"data/admin.token"</code> "."
                </p>
                <input id="token" name="token" type="password" autocomplete="off"
                    spellcheck="false" required />
                {error(by_token)}
                <button type="submit" class="button ghost"
                    disabled=move || by_token.pending().get()>"Use the admin token"</button>
            </ActionForm>
        </AuthCard>
    }
}
