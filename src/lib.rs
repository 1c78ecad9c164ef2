//! Trailwatch: a self-hosted, real-time audit-trail analytics server and its dashboard.
//! This file lists the modules and holds the browser's `hydrate` entry point.

// Leptos views are nested types; the dashboard's outgrows rustc's default query depth in
// release builds of the WASM client.
#![recursion_limit = "256"]

pub mod analytics;
pub mod model;
pub mod search;

pub mod api;
pub mod app;
pub mod error;
#[cfg(feature = "ssr")]
pub mod ingest;
#[cfg(feature = "ssr")]
pub mod store;

#[cfg(feature = "ssr")]
pub mod alerts;
#[cfg(feature = "ssr")]
pub mod auth;
#[cfg(feature = "ssr")]
pub mod config;
#[cfg(feature = "ssr")]
pub mod emit;
#[cfg(feature = "ssr")]
pub mod export;
#[cfg(feature = "ssr")]
pub mod import;
#[cfg(feature = "ssr")]
pub mod insights;
#[cfg(feature = "ssr")]
pub mod integrity;
#[cfg(feature = "ssr")]
pub mod live;
#[cfg(feature = "ssr")]
pub mod mirror;
#[cfg(feature = "ssr")]
pub mod selfaudit;
#[cfg(feature = "ssr")]
pub mod server;
#[cfg(feature = "ssr")]
pub mod tail;
#[cfg(feature = "ssr")]
pub mod views;

/// The browser entry point: hydrates the server-rendered dashboard.
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(app::App);
}
