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

/// The document around the app: head, hydration scripts, body. On the server it also sets
/// the page's script and style policy around the nonce Leptos made for this response.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    #[cfg(feature = "ssr")]
    page_policy(&options);
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

/// Names this page's nonce as the only way for an inline script or `<style>` to run, and
/// `'self'` for the module and stylesheet under `/pkg`. `'wasm-unsafe-eval'` lets the page
/// compile its WebAssembly (it allows nothing else); inline `style` attributes, which cannot
/// run code, draw the charts' bars. The router's middleware adds the framing rules.
#[cfg(feature = "ssr")]
fn page_policy(options: &LeptosOptions) {
    use axum::http::{header, HeaderValue};
    let (Some(nonce), Some(response)) = (
        leptos::nonce::use_nonce(),
        use_context::<leptos_axum::ResponseOptions>(),
    ) else {
        return;
    };
    // `cargo leptos watch` reloads the page over a socket of its own.
    let reload = match std::env::var_os("LEPTOS_WATCH") {
        Some(_) => format!(" ws://{}:{}", options.site_addr.ip(), options.reload_port),
        None => String::new(),
    };
    let policy = format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; \
         style-src 'self' 'nonce-{nonce}'; style-src-attr 'unsafe-inline'; \
         img-src 'self' data:; connect-src 'self'{reload}"
    );
    if let Ok(value) = HeaderValue::from_str(&policy) {
        response.insert_header(header::CONTENT_SECURITY_POLICY, value);
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
                <Route path=path!("/settings") view=pages::SettingsPage />
                <Route path=path!("/api-docs") view=pages::ApiDocsPage />
                <Route path=path!("/usage") view=pages::UsagePage ssr=SsrMode::Async />
                <Route path=path!("/setup") view=pages::SetupPage />
                <ParentRoute path=path!("/events") view=pages::ExplorerPage ssr=SsrMode::Async>
                    <Route path=path!("") view=|| () />
                    <Route path=path!(":id") view=components::EventDialog />
                </ParentRoute>
            </Routes>
        </Router>
    }
}
