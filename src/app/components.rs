//! Reusable pieces of the dashboard.

mod badge;
pub mod charts;
pub mod counter;
pub mod event_dialog;
mod feed;
mod toasts;
mod topbar;

pub use badge::ConnectionBadge;
pub use counter::Totals;
pub use event_dialog::EventDialog;
pub use feed::LiveFeed;
pub use toasts::Toasts;
pub use topbar::TopBar;

use leptos::prelude::*;

/// The Trailwatch mark: a trail of footsteps through a watchful eye, as inline SVG.
#[component]
pub fn Logo() -> impl IntoView {
    view! {
        <svg class="logo" viewBox="0 0 32 32" width="28" height="28" aria-hidden="true">
            <rect x="1" y="1" width="30" height="30" rx="8" class="logo-bg" />
            <path d="M6 22 C 11 12, 21 12, 26 22" class="logo-arc" />
            <circle cx="16" cy="19" r="3.2" class="logo-dot" />
            <circle cx="8" cy="10" r="1.6" class="logo-step" />
            <circle cx="13" cy="7.5" r="1.6" class="logo-step" />
            <circle cx="19" cy="7.5" r="1.6" class="logo-step" />
            <circle cx="24" cy="10" r="1.6" class="logo-step" />
        </svg>
    }
}

/// The centred card the pages before sign-in share: the mark, the name and a heading over
/// the page's form.
#[component]
pub fn AuthCard(title: &'static str, children: Children) -> impl IntoView {
    view! {
        <main class="centered login">
            <div class="card narrow">
                <div class="login-brand">
                    <Logo />
                    <span class="brand-name">"Trailwatch"</span>
                </div>
                <h1>{title}</h1>
                {children()}
            </div>
        </main>
    }
}
