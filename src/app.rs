//! The dashboard: the HTML shell, the router and its pages. Rendered on the server, then
//! hydrated in the browser, where `live` keeps it current over `/ws/audit`.

mod browser;
mod components;
pub mod live;
mod pages;

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};
use leptos_router::components::{ParentRoute, Route, Router, Routes};
use leptos_router::{path, SsrMode};

/// The document around the app: head, hydration scripts, body.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                <meta name="color-scheme" content="dark light" />
                <link rel="icon" type="image/svg+xml" href="/favicon.svg" />
                <AutoReload options=options.clone() />
                <HydrationScripts options />
                <MetaTags />
            </head>
            <body>
                <App />
            </body>
        </html>
    }
}

/// The application: routes to the dashboard and the login page.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    view! {
        <Stylesheet id="leptos" href="/pkg/trailwatch.css" />
        <Title text="Trailwatch" />
        <Router>
            <Routes fallback=|| view! { <pages::NotFound /> }>
                <Route path=path!("/") view=pages::DashboardPage ssr=SsrMode::Async />
                <Route path=path!("/login") view=pages::LoginPage />
                <Route path=path!("/replay") view=pages::ReplayPage />
                <Route path=path!("/alerts") view=pages::AlertsPage />
                <Route path=path!("/tokens") view=pages::TokensPage />
                <Route path=path!("/users") view=pages::UsersPage />
                <Route path=path!("/setup") view=pages::SetupPage />
                <ParentRoute path=path!("/events") view=pages::ExplorerPage ssr=SsrMode::Async>
                    <Route path=path!("") view=|| () />
                    <Route path=path!(":id") view=components::EventDialog />
                </ParentRoute>
            </Routes>
        </Router>
    }
}
