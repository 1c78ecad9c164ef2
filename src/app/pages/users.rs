//! `/users`: the dashboard users. Add one with a role (and, for the `self` role, the actor id
//! they are in events), see when each last signed in, and disable one, which ends their
//! sessions and closes their sockets. Every change is recorded in the chain by the server
//! functions.

use super::tokens::short_time;
use crate::api::{create_user, disable_user, list_users};
use crate::app::components::TopBar;
use crate::error::AppError;
use crate::model::{Role, UserInfo};
use leptos::prelude::*;

/// What the form sends.
#[derive(Clone, Debug)]
struct Draft {
    name: String,
    role: Role,
    subject: String,
    password: String,
}

/// `/users`.
#[component]
pub fn UsersPage() -> impl IntoView {
    let version = RwSignal::new(0u32);
    let users = Resource::new(move || version.get(), |_| list_users());
    let name = RwSignal::new(String::new());
    let role = RwSignal::new(Role::Viewer);
    let subject = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let create = Action::new(move |d: &Draft| {
        let d = d.clone();
        async move {
            let subject = Some(d.subject).filter(|s| !s.trim().is_empty());
            let made = create_user(d.name, d.role.as_str().to_string(), subject, d.password).await;
            version.update(|v| *v = v.wrapping_add(1));
            made
        }
    });
    let disable = Action::new(move |name: &String| {
        let name = name.clone();
        async move {
            let done = disable_user(name).await;
            version.update(|v| *v = v.wrapping_add(1));
            done
        }
    });
    Effect::new(move |_| {
        if let Some(Ok(_)) = create.value().get() {
            name.set(String::new());
            subject.set(String::new());
            password.set(String::new());
        }
    });
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        create.dispatch(Draft {
            name: name.get_untracked(),
            role: role.get_untracked(),
            subject: subject.get_untracked(),
            password: password.get_untracked(),
        });
    };
    view! {
        <TopBar current="users" />
        <main class="page">
            <div class="range-bar">
                <h1 class="page-title">"Users"</h1>
            </div>
            <section class="panel token-form-panel">
                <div class="panel-head">
                    <h2>"New user"</h2>
                    <span class="muted small">"Passwords are stored as argon2id hashes"</span>
                </div>
                <form class="token-form user-form" on:submit=submit>
                    <label class="field grow">
                        "Name"
                        <input type="text" name="name" required maxlength="64"
                            placeholder="dana" autocomplete="off"
                            prop:value=move || name.get()
                            on:input=move |ev| name.set(event_target_value(&ev)) />
                    </label>
                    <label class="field">
                        "Role"
                        <select name="role"
                            on:change=move |ev| {
                                if let Some(r) = Role::parse(&event_target_value(&ev)) {
                                    role.set(r);
                                }
                            }>
                            {Role::ALL
                                .into_iter()
                                .map(|r| view! {
                                    <option value=r.as_str() selected=move || role.get() == r>
                                        {format!("{}: {}", r.as_str(), r.describe())}
                                    </option>
                                })
                                .collect_view()}
                        </select>
                    </label>
                    <label class="field">
                        "Actor id in events"
                        <input type="text" name="subject" maxlength="256"
                            placeholder="same as the name" autocomplete="off"
                            prop:value=move || subject.get()
                            on:input=move |ev| subject.set(event_target_value(&ev)) />
                    </label>
                    <label class="field">
                        "Password"
                        <input type="password" name="password" required minlength="10"
                            autocomplete="new-password"
                            prop:value=move || password.get()
                            on:input=move |ev| password.set(event_target_value(&ev)) />
                    </label>
                    <button type="submit" class="button primary"
                        disabled=move || create.pending().get()>"Add user"</button>
                </form>
                {move || create.value().get().map(|made| match made {
                    Ok(u) => view! {
                        <p class="form-ok panel-note" role="status">
                            {format!("Added {} ({}).", u.name, u.role.as_str())}
                        </p>
                    }.into_any(),
                    Err(e) => view! { <p class="form-error panel-note" role="alert">{e.to_string()}</p> }.into_any(),
                })}
            </section>
            {move || disable.value().get().and_then(Result::err).map(|e| view! {
                <p class="form-error" role="alert">{e.to_string()}</p>
            })}
            <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match users.await {
                        Err(e) => view! { <p role="alert">{e.to_string()}</p> }.into_any(),
                        Ok(list) if list.is_empty() => view! {
                            <section class="panel empty">
                                <p>"No users yet."</p>
                                <p class="muted small">"Add one here, or with "<code>"trailwatch user add NAME --role ROLE"</code>"."</p>
                            </section>
                        }.into_any(),
                        Ok(list) => view! { <UserTable list=list disable=disable /> }.into_any(),
                    }
                })}
            </Transition>
        </main>
    }
}

/// Every user: role, actor id, when made and last signed in, and whether they may.
#[component]
fn UserTable(
    list: Vec<UserInfo>,
    disable: Action<String, Result<bool, AppError>>,
) -> impl IntoView {
    view! {
        <div class="table-wrap panel">
            <table class="tokens-table" aria-label="Users">
                <thead>
                    <tr>
                        <th scope="col">"Name"</th>
                        <th scope="col">"Role"</th>
                        <th scope="col" class="col-created">"Actor id"</th>
                        <th scope="col">"Last sign-in"</th>
                        <th scope="col">"Status"</th>
                    </tr>
                </thead>
                <tbody>
                    {list.into_iter().map(|u| {
                        let name = u.name.clone();
                        let status = match &u.disabled_at {
                            Some(at) => view! {
                                <span class="muted">{format!("disabled {}", short_time(at))}</span>
                            }.into_any(),
                            None => view! {
                                <button type="button" class="button small ghost danger"
                                    aria-label=format!("Disable {}", u.name)
                                    on:click=move |_| { disable.dispatch(name.clone()); }>
                                    "Disable"
                                </button>
                            }.into_any(),
                        };
                        view! {
                            <tr class:revoked=u.disabled_at.is_some()>
                                <td class="mono">{u.name.clone()}</td>
                                <td><span class=format!("scope-chip role-{}", u.role.as_str())>{u.role.as_str()}</span></td>
                                <td class="col-created mono">{u.subject.clone()}</td>
                                <td>{u.last_login_at.as_deref().map_or_else(|| "never".to_string(), short_time)}</td>
                                <td>{status}</td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
        </div>
    }
}
