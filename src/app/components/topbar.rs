//! The sticky header every signed-in page shares: brand, navigation, a status area the page
//! fills, and sign-out.

use crate::api::{chain_status, whoami, Logout};
use crate::app::components::Logo;
use crate::model::{ChainStatus, Permission, Whoami};
use leptos::form::ActionForm;
use leptos::prelude::*;

/// The pages in the navigation: path, label, the key pages pass as `current`, and what the
/// page needs (the server redirects from a page a role may not use; the link is not shown).
const NAV: [(&str, &str, &str, Permission); 9] = [
    ("/", "Live", "live", Permission::ReadAll),
    ("/events", "Explorer", "events", Permission::ReadOwn),
    ("/usage", "Usage", "usage", Permission::ReadOwn),
    ("/replay", "Replay", "replay", Permission::ReadOwn),
    ("/alerts", "Alerts", "alerts", Permission::ReadAll),
    ("/tokens", "Tokens", "tokens", Permission::Admin),
    ("/users", "Users", "users", Permission::Admin),
    ("/settings", "Settings", "settings", Permission::Admin),
    ("/api-docs", "API", "api", Permission::ReadOwn),
];

/// The header. `current` marks the page in the navigation; `class` lets a page flash it;
/// `children` fill the status area.
#[component]
pub fn TopBar(
    current: &'static str,
    #[prop(into, optional)] class: Option<Signal<&'static str>>,
    #[prop(optional)] children: Option<Children>,
) -> impl IntoView {
    let logout = ServerAction::<Logout>::new();
    let me = Resource::new(|| (), |_| whoami());
    // On a phone the navigation is a menu the button opens; wide screens show it inline.
    let open = RwSignal::new(false);
    let here = NAV
        .iter()
        .find(|(.., key, _)| *key == current)
        .map_or("Menu", |(_, label, ..)| *label);
    let class = move || class.map_or("topbar", |c| c.get());
    let nav = move |me: Option<Whoami>| {
        let links = NAV
            .iter()
            .filter(|(.., needed)| me.as_ref().is_some_and(|m| m.grant.allows(*needed)))
            .map(|(href, label, key, _)| {
                let here = *key == current;
                view! { <a href=*href aria-current=here.then_some("page")>{*label}</a> }
            })
            .collect_view();
        // A phone's bar has no room for the name: the open menu says who is signed in.
        let signed_in = me.map(|m| {
            view! {
                <p class="nav-who">"Signed in as " <strong>{m.name}</strong></p>
            }
        });
        (links, signed_in)
    };
    let who = move |me: Option<Whoami>| {
        me.map(|m| {
            let role = match m.grant {
                crate::model::Grant::Role(r) => r.as_str(),
                crate::model::Grant::Token(s) => s.as_str(),
            };
            view! {
                <span class="whoami" title=format!("Signed in as {} ({role})", m.name)>
                    <span class="whoami-name">{m.name.clone()}</span>
                    <span class="whoami-role">{role}</span>
                </span>
            }
        })
    };
    view! {
        <header class=class>
            <div class="topbar-inner">
                // A full load, not a client-side route: the server sends a role that may not
                // see the overview to its own activity instead.
                <a class="brand" href="/" rel="external">
                    <Logo />
                    <span class="brand-name">"Trailwatch"</span>
                </a>
                <button
                    type="button"
                    class="menu-button"
                    aria-controls="main-nav"
                    aria-expanded=move || open.get().to_string()
                    aria-label=format!("Menu: {here}")
                    on:click=move |_| open.update(|o| *o = !*o)
                >
                    <span class="menu-icon" aria-hidden="true">"☰"</span>
                    <span class="menu-current">{here}</span>
                </button>
                <nav
                    id="main-nav"
                    class=move || if open.get() { "nav open" } else { "nav" }
                    aria-label="Main"
                    // A choice closes the menu, the current page's link included.
                    on:click=move |_| open.set(false)
                >
                    <Transition fallback=|| ()>
                        {move || me.get().map(|r| nav(r.ok()))}
                    </Transition>
                </nav>
                <div class="topbar-status">
                    <ChainBadge />
                    {children.map(|c| c())}
                    <Transition fallback=|| ()>
                        {move || me.get().map(|r| who(r.ok()))}
                    </Transition>
                    <ActionForm action=logout attr:class="inline">
                        <button type="submit" class="button ghost small">"Sign out"</button>
                    </ActionForm>
                </div>
            </div>
        </header>
    }
    .into_any()
}

/// How often the header asks where the chain check stands.
const CHAIN_REFRESH_MS: u64 = 30_000;

/// The chain's state: verified up to a seq (and when), broken at a seq, or not yet checked.
#[component]
fn ChainBadge() -> impl IntoView {
    let version = RwSignal::new(0u32);
    let status = Resource::new(move || version.get(), |_| chain_status());
    #[cfg(feature = "hydrate")]
    if let Ok(handle) = set_interval_with_handle(
        move || version.update(|v| *v = v.wrapping_add(1)),
        std::time::Duration::from_millis(CHAIN_REFRESH_MS),
    ) {
        on_cleanup(move || handle.clear());
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = CHAIN_REFRESH_MS;
    let view_of = |s: ChainStatus| {
        let (class, label, title) = match (&s.problem, s.checked_at) {
            (Some(problem), _) => (
                "chain-badge chain-broken",
                format!(
                    "Chain broken at #{}",
                    s.broken_at.unwrap_or(s.verified_through + 1)
                ),
                problem.clone(),
            ),
            (None, Some(at)) => (
                "chain-badge chain-ok",
                format!("Verified #{}", s.verified_through),
                format!(
                    "Hash chain and signed checkpoints verified up to seq {} at {}",
                    s.verified_through,
                    at.format("%Y-%m-%d %H:%M:%S UTC")
                ),
            ),
            (None, None) => (
                "chain-badge",
                "Checking chain".to_string(),
                "The first check of the hash chain is running".to_string(),
            ),
        };
        view! {
            <span class=class title=title data-testid="chain-badge" role="status">
                <span class="chain-icon" aria-hidden="true">
                    {if s.is_broken() { "!" } else { "✓" }}
                </span>
                <span class="chain-label">{label}</span>
            </span>
        }
    };
    view! {
        <Transition fallback=|| ()>
            {move || status.get().and_then(Result::ok).map(view_of)}
        </Transition>
    }
}
