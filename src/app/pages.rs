//! One module per page.

mod alerts;
mod api_docs;
mod dashboard;
mod explorer;
mod login;
mod replay;
mod settings;
mod setup;
mod tokens;
mod usage;
mod users;

pub use alerts::AlertsPage;
pub use api_docs::ApiDocsPage;
pub use dashboard::DashboardPage;
pub use explorer::{encode, ExplorerPage};
pub use login::LoginPage;
pub use replay::ReplayPage;
pub use settings::SettingsPage;
pub use setup::SetupPage;
pub use tokens::TokensPage;
pub use usage::UsagePage;
pub use users::UsersPage;

use leptos::prelude::*;

/// Shown for unknown paths.
#[component]
pub fn NotFound() -> impl IntoView {
    view! {
        <main class="centered">
            <div class="card narrow">
                <h1>"Page not found"</h1>
                <p class="muted">"There is nothing at this address."</p>
                <a class="button" href="/">"Back to the dashboard"</a>
            </div>
        </main>
    }
}
