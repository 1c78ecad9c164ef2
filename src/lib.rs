//! Trailwatch: a self-hosted, real-time audit-trail analytics server and its dashboard.
//! This file lists the modules and holds the browser's `hydrate` entry point.
//!
//! The modules form layers, and each imports only from layers below it (`.ci/layers` checks
//! this on every `make test`; modules of one layer may use each other without a cycle).
//! Bottom first:
//!
//! 1. Shared and pure, compiled for the browser too: `model` (the audit event and everything
//!    the browser and server exchange), `search` (the query language), `analytics` (health,
//!    trends, anomalies), `error` (what server functions return); and `files` and `metrics`
//!    (the process's Prometheus metrics), leaf helpers of the server build.
//! 2. `store`: the embedded database, its chain, index, rollups and retention.
//! 3. The engines over the store: `ingest`, `selfaudit`, `live`, `insights`, `alerts`,
//!    `auth`, `tail`, `mirror`, `views`, `export`, `integrity`.
//! 4. The server and the dashboard, in this order: `server` (its state, the REST API, the
//!    socket, middleware and connection limits), `api` (the server functions, over the
//!    server's state), `app` (the browser's pages over `api`, `model`, `search` and
//!    `analytics`), and `site` (the router that mounts `app` beside the REST API, and the
//!    bound server).
//! 5. `cli`: clap's types, the config file, and the `serve`, `emit`, `import`, `verify`,
//!    `token` and `user` commands; the only code that knows clap.

// Leptos views are nested types; the dashboard's outgrows rustc's default query depth in
// release builds of the WASM client.
#![recursion_limit = "256"]

pub mod analytics;
pub mod error;
#[cfg(feature = "ssr")]
pub mod files;
#[cfg(feature = "ssr")]
pub mod metrics;
pub mod model;
pub mod search;

#[cfg(feature = "ssr")]
pub mod store;

#[cfg(feature = "ssr")]
pub mod alerts;
#[cfg(feature = "ssr")]
pub mod auth;
#[cfg(feature = "ssr")]
pub mod export;
#[cfg(feature = "ssr")]
pub mod ingest;
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
pub mod tail;
#[cfg(feature = "ssr")]
pub mod views;

#[cfg(feature = "ssr")]
pub mod server;

pub mod api;
pub mod app;

#[cfg(feature = "ssr")]
pub mod site;

#[cfg(feature = "ssr")]
pub mod cli;

/// The browser entry point: hydrates the server-rendered dashboard.
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(app::App);
}
