//! `/tokens`: the API tokens. Make one (its secret is shown once, with a copy button), see
//! each one's scope and when it was last used, and revoke it. Every change is recorded in the
//! chain by the server functions.

use crate::api::{create_token, list_tokens, revoke_token};
use crate::app::browser;
use crate::app::components::TopBar;
use crate::error::AppError;
use crate::model::{CreatedToken, TokenInfo, TokenScope};
use leptos::prelude::*;

/// `/tokens`.
#[component]
pub fn TokensPage() -> impl IntoView {
    let version = RwSignal::new(0u32);
    let tokens = Resource::new(move || version.get(), |_| list_tokens());
    let name = RwSignal::new(String::new());
    let scope = RwSignal::new(TokenScope::Ingest);
    let create = Action::new(move |(name, scope): &(String, TokenScope)| {
        let (name, scope) = (name.clone(), scope.as_str().to_string());
        async move {
            let made = create_token(name, scope).await;
            version.update(|v| *v = v.wrapping_add(1));
            made
        }
    });
    let revoke = Action::new(move |name: &String| {
        let name = name.clone();
        async move {
            let done = revoke_token(name).await;
            version.update(|v| *v = v.wrapping_add(1));
            done
        }
    });
    // A new token's secret is shown until the next one is made; the form empties on success.
    Effect::new(move |_| {
        if let Some(Ok(_)) = create.value().get() {
            name.set(String::new());
        }
    });
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        create.dispatch((name.get_untracked(), scope.get_untracked()));
    };
    view! {
        <TopBar current="tokens" />
        <main class="page">
            <div class="range-bar">
                <h1 class="page-title">"API tokens"</h1>
            </div>
            <section class="panel token-form-panel">
                <div class="panel-head">
                    <h2>"New token"</h2>
                    <span class="muted small">"Shown once, stored only as a hash"</span>
                </div>
                <form class="token-form" on:submit=submit>
                    <label class="field grow">
                        "Name"
                        <input type="text" name="name" required maxlength="64"
                            placeholder="billing-app" autocomplete="off"
                            prop:value=move || name.get()
                            on:input=move |ev| name.set(event_target_value(&ev)) />
                    </label>
                    <label class="field">
                        "Scope"
                        <select name="scope"
                            on:change=move |ev| {
                                if let Some(s) = TokenScope::parse(&event_target_value(&ev)) {
                                    scope.set(s);
                                }
                            }>
                            {TokenScope::ALL
                                .into_iter()
                                .map(|s| view! {
                                    <option value=s.as_str() selected=move || scope.get() == s>
                                        {format!("{}: {}", s.as_str(), s.describe())}
                                    </option>
                                })
                                .collect_view()}
                        </select>
                    </label>
                    <button type="submit" class="button primary"
                        disabled=move || create.pending().get()>"Create token"</button>
                </form>
                {move || create.value().get().map(|made| match made {
                    Ok(made) => view! { <NewToken made=made /> }.into_any(),
                    Err(e) => view! { <p class="form-error" role="alert">{e.to_string()}</p> }.into_any(),
                })}
            </section>
            {move || revoke.value().get().and_then(Result::err).map(|e| view! {
                <p class="form-error" role="alert">{e.to_string()}</p>
            })}
            <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match tokens.await {
                        Err(e) => view! { <p role="alert">{e.to_string()}</p> }.into_any(),
                        Ok(list) if list.is_empty() => view! {
                            <section class="panel empty">
                                <p>"No API tokens yet."</p>
                                <p class="muted small">"Applications can send with the admin token, but a token per application can be revoked on its own."</p>
                            </section>
                        }.into_any(),
                        Ok(list) => view! { <TokenTable list=list revoke=revoke /> }.into_any(),
                    }
                })}
            </Transition>
        </main>
    }
}

/// The secret of the token just made, with a copy button.
#[component]
fn NewToken(made: CreatedToken) -> impl IntoView {
    let copied = RwSignal::new(None::<bool>);
    let secret = made.token.clone();
    let copy = move |_| {
        let text = secret.clone();
        leptos::task::spawn_local(async move {
            copied.set(Some(browser::copy_text(text).await));
        });
    };
    view! {
        <div class="new-token" role="status" aria-label="New token">
            <p>
                <strong>{format!("Token {} ({})", made.info.name, made.info.scope.as_str())}</strong>
                " — copy it now; it will not be shown again."
            </p>
            <div class="new-token-row">
                <input type="text" readonly aria-label="Token value" value=made.token.clone() />
                <button type="button" class="button small" on:click=copy>
                    {move || match copied.get() {
                        Some(true) => "Copied",
                        Some(false) => "Copy failed: select the text",
                        None => "Copy",
                    }}
                </button>
            </div>
        </div>
    }
}

/// Every token: scope, when made and last used, and whether it still works.
#[component]
fn TokenTable(
    list: Vec<TokenInfo>,
    revoke: Action<String, Result<bool, AppError>>,
) -> impl IntoView {
    view! {
        <div class="table-wrap panel">
            <table class="tokens-table" aria-label="API tokens">
                <thead>
                    <tr>
                        <th scope="col">"Name"</th>
                        <th scope="col">"Scope"</th>
                        <th scope="col" class="col-created">"Created"</th>
                        <th scope="col">"Last used"</th>
                        <th scope="col">"Status"</th>
                    </tr>
                </thead>
                <tbody>
                    {list.into_iter().map(|t| {
                        let name = t.name.clone();
                        let status = match &t.revoked_at {
                            Some(at) => view! {
                                <span class="muted">{format!("revoked {}", short_time(at))}</span>
                            }.into_any(),
                            None => view! {
                                <button type="button" class="button small ghost danger"
                                    aria-label=format!("Revoke {}", t.name)
                                    on:click=move |_| { revoke.dispatch(name.clone()); }>
                                    "Revoke"
                                </button>
                            }.into_any(),
                        };
                        view! {
                            <tr class:revoked=t.revoked_at.is_some()>
                                <td class="mono">{t.name.clone()}</td>
                                <td><span class=format!("scope-chip scope-{}", t.scope.as_str())>{t.scope.as_str()}</span></td>
                                <td class="col-created">{short_time(&t.created_at)}</td>
                                <td>{t.last_used_at.as_deref().map_or_else(|| "never".to_string(), short_time)}</td>
                                <td>{status}</td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
        </div>
    }
}

/// `2026-11-23T21:14:26Z` as `2026-11-23 21:14 UTC`.
pub(super) fn short_time(rfc3339: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|_| rfc3339.to_string())
}
