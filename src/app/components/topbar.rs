//! The sticky header every signed-in page shares: brand, navigation, a status area the page
//! fills, and sign-out.

use crate::api::Logout;
use crate::app::components::Logo;
use leptos::form::ActionForm;
use leptos::prelude::*;

/// The pages in the navigation: path, label, and the key pages pass as `current`.
const NAV: [(&str, &str, &str); 4] = [
    ("/", "Live", "live"),
    ("/events", "Explorer", "events"),
    ("/replay", "Replay", "replay"),
    ("/alerts", "Alerts", "alerts"),
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
    let class = move || class.map_or("topbar", |c| c.get());
    view! {
        <header class=class>
            <div class="topbar-inner">
                <a class="brand" href="/">
                    <Logo />
                    <span class="brand-name">"Trailwatch"</span>
                </a>
                <nav class="nav" aria-label="Main">
                    {NAV
                        .iter()
                        .map(|(href, label, key)| {
                            let here = *key == current;
                            view! {
                                <a href=*href aria-current=here.then_some("page")>{*label}</a>
                            }
                        })
                        .collect_view()}
                </nav>
                <div class="topbar-status">
                    {children.map(|c| c())}
                    <ActionForm action=logout attr:class="inline">
                        <button type="submit" class="button ghost small">"Sign out"</button>
                    </ActionForm>
                </div>
            </div>
        </header>
    }
    .into_any()
}
