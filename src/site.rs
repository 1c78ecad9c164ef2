//! The served site: the settings of `trailwatch serve`, the router that mounts the dashboard's
//! pages and server functions beside the REST API and socket, and the bound server that runs
//! it all. The one place that joins the browser's `app` to the `server`, so neither imports
//! the other. Server build only.

use crate::alerts::{AlertConfig, Alerts};
use crate::analytics::AnomalyConfig;
use crate::app::{shell, App};
use crate::auth::{self, Auth, TokenOrigin};
use crate::insights::{parse_zone, Analytics};
use crate::live::{Hub, LiveConfig};
use crate::server::lifecycle::RetentionSchedule;
use crate::server::{
    conn, lifecycle, limits, settings, tls, tokens, AppState, SecurityHeaders, Shared,
};
use crate::store::{RetentionPolicy, RiskConfig, Store, StoreError, StoreOptions};
use crate::views::SavedViews;
use axum::Router;
use leptos::config::LeptosOptions;
use leptos_axum::{generate_route_list, LeptosRoutes};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// The default site directory (what `cargo leptos build` writes), relative to the working
/// directory.
pub const DEFAULT_SITE_ROOT: &str = "target/site";
/// The default ingest body limit.
pub const DEFAULT_MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

/// Settings of `trailwatch serve` after merging every source.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub site_root: PathBuf,
    pub max_body_bytes: usize,
    pub live_queue: usize,
    /// The database's size cap in MiB, if any.
    pub max_db_mb: Option<u64>,
    /// From `TRAILWATCH_ADMIN_TOKEN` only: flags would show it in `ps`.
    pub admin_token: Option<String>,
    /// An IANA zone name, checked when the server starts.
    pub time_zone: String,
    pub anomalies: AnomalyConfig,
    pub alerts: AlertConfig,
    pub risk: RiskConfig,
    pub retention: RetentionPolicy,
    /// When the retention job runs; fixed for users, shortened by tests.
    pub retention_schedule: RetentionSchedule,
    /// Log files to follow (`PATH[:jsonl|text]`), checked when the server starts.
    pub tails: Vec<String>,
    /// Syslog listeners (`tcp://ADDR:PORT`, `udp://…`, `tls://…`), checked when the server
    /// starts.
    pub syslog: Vec<String>,
    /// The times an ingested event may carry (`[ingest]`).
    pub window: crate::ingest::TimeWindow,
    /// The actions that must keep being audited (`[coverage]`).
    pub coverage: crate::analytics::coverage::Catalogue,
    pub mirror_dir: Option<PathBuf>,
    /// Where Prometheus metrics are served, if anywhere.
    pub metrics_addr: Option<SocketAddr>,
    /// Metadata fields declared personal: trimmed, without blanks or repeats.
    pub personal_metadata: Vec<String>,
    pub limits: crate::server::limits::LimitsConfig,
    pub sessions: crate::auth::SessionPolicy,
    /// Certificate chain and key files: both or neither, checked when the server starts.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Origins allowed to frame the dashboard; empty means none.
    pub frame_ancestors: Vec<String>,
    /// Several nodes: the PostgreSQL database they share (`None`: the embedded SQLite store).
    pub cluster: Option<ClusterConfig>,
}

/// `[database]`: what makes this server one node of several sharing a PostgreSQL database.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// `postgres://user@host:port/database`.
    pub url: String,
    /// This node's name, stable across its restarts (its tail cursors are kept by it)
    /// [default: the host name and the port].
    pub node: Option<String>,
    /// The cluster's checkpoint signing key (64 hex digits in a file), the same file on every
    /// node [default: checkpoint.key in the data directory, made if missing].
    pub key_file: Option<PathBuf>,
}

impl ServeConfig {
    /// Every default, with the data in `data_dir` and no admin token (the environment is not
    /// read): what the command line falls back to, and a base for embedding a server
    /// (tests, the benchmark).
    pub fn defaults(data_dir: PathBuf) -> ServeConfig {
        ServeConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 3000)),
            data_dir,
            site_root: DEFAULT_SITE_ROOT.into(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            live_queue: 4096,
            max_db_mb: None,
            admin_token: None,
            time_zone: "UTC".into(),
            anomalies: AnomalyConfig::default(),
            alerts: AlertConfig::default(),
            risk: RiskConfig::default(),
            retention: RetentionPolicy::default(),
            retention_schedule: RetentionSchedule::default(),
            tails: Vec::new(),
            syslog: Vec::new(),
            window: crate::ingest::TimeWindow::default(),
            coverage: Default::default(),
            mirror_dir: None,
            metrics_addr: None,
            personal_metadata: Vec::new(),
            limits: crate::server::limits::LimitsConfig::default(),
            sessions: crate::auth::SessionPolicy::default(),
            tls_cert: None,
            tls_key: None,
            frame_ancestors: Vec::new(),
            cluster: None,
        }
    }
}

/// This server as one node of a cluster.
struct ClusterNode {
    store: Store,
    name: String,
    key: ed25519_dalek::SigningKey,
}

/// Joins the cluster `cluster` describes: its signing key (the file given to every node, or
/// this data directory's, made if missing), this node's name, and its share of the database.
async fn join_cluster(
    cluster: &ClusterConfig,
    config: &ServeConfig,
    options: StoreOptions,
) -> Result<ClusterNode, ServeError> {
    use crate::store::checkpoint;
    // A node keeps little locally (its key when none is given, a mirror), but a first start
    // makes the directory as a single server's does.
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        ServeError::Config(format!("data directory {}: {e}", config.data_dir.display()))
    })?;
    let key = match &cluster.key_file {
        Some(path) => checkpoint::signing_key_at(path),
        None => checkpoint::Signer::open(&config.data_dir)
            .and_then(|_| checkpoint::signing_key(&config.data_dir)),
    }
    .map_err(|e| ServeError::Config(format!("the cluster's signing key: {e}")))?;
    let name = cluster.node.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "node".into());
        format!("{host}:{}", config.addr.port())
    });
    let store =
        Store::open_postgres(&cluster.url, &name, key.clone(), &config.data_dir, options).await?;
    tracing::info!(node = %name, "joined the cluster");
    Ok(ClusterNode { store, name, key })
}

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("auth: {0}")]
    Auth(#[from] auth::AuthError),
    #[error("saved views: {0}")]
    Views(#[from] crate::views::ViewError),
    #[error("settings: {0}")]
    Config(String),
    #[error("{0}")]
    Alerts(#[from] crate::alerts::AlertError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("server I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// The socket the server accepts on.
enum Bound {
    Plain(TcpListener),
    Tls(tls::TlsListener),
}

/// A bound, ready server: its address is known before it serves.
pub struct Server {
    listener: Bound,
    app: Router,
    /// The admin token, for tests and for printing on first start.
    pub admin_token: String,
    /// Whether the token was generated by this start.
    pub token_origin: TokenOrigin,
    /// A one-time code for `/setup?code=`, made when no user can sign in yet.
    pub setup_code: Option<String>,
    pub state: AppState,
    /// The followed log files, stopped when the server stops.
    tailers: Option<crate::tail::Tailers>,
    /// The syslog listeners, closed when the server stops.
    syslog: crate::server::syslog::SyslogListeners,
    /// The `/metrics` listener, if one was asked for.
    metrics: Option<crate::server::metrics::MetricsListener>,
}

impl Server {
    /// Opens the store and auth, builds the router and binds the listener.
    ///
    /// # Errors
    /// The data directory, database or address cannot be used.
    pub async fn bind(config: &ServeConfig) -> Result<Server, ServeError> {
        let zone = parse_zone(&config.time_zone).map_err(ServeError::Config)?;
        config.retention.validate().map_err(ServeError::Config)?;
        config.limits.validate().map_err(ServeError::Config)?;
        config.sessions.validate().map_err(ServeError::Config)?;
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(tls::load(cert, key).map_err(ServeError::Config)?),
            (None, None) => None,
            _ => {
                return Err(ServeError::Config(
                    "TLS needs both a certificate (--tls-cert) and a key (--tls-key)".into(),
                ))
            }
        };
        let tails = config
            .tails
            .iter()
            .map(|t| t.parse::<crate::tail::TailSpec>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(ServeError::Config)?;
        let syslog_specs = config
            .syslog
            .iter()
            .map(|s| s.parse::<crate::server::syslog::SyslogSpec>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(ServeError::Config)?;
        let (admin_token, token_origin) =
            auth::load_admin_token(&config.data_dir, config.admin_token.clone())?;
        let options = StoreOptions {
            live_capacity: config.live_queue,
            max_pages: config.max_db_mb.map(|mb| mb * (1024 * 1024 / 4096)),
            risk: config.risk.clone(),
            personal_metadata: config.personal_metadata.clone(),
            ..StoreOptions::default()
        };
        let node = match &config.cluster {
            None => None,
            Some(cluster) => Some(join_cluster(cluster, config, options.clone()).await?),
        };
        let store = match &node {
            None => Store::open(&config.data_dir, options)?,
            Some(n) => n.store.clone(),
        };
        let hub = Hub::start(
            store.clone(),
            LiveConfig {
                queue_capacity: config.live_queue,
                ..LiveConfig::default()
            },
        );
        let analytics = Analytics::new(store.clone(), config.anomalies.clone(), zone);
        analytics.watch();
        // On a cluster the small tables live in the shared database, with the events.
        let (alerts, auth, views) = match store.shared_db() {
            None => (
                Alerts::open(&config.data_dir, config.alerts.clone(), hub.clone())?,
                Auth::open(&config.data_dir, &admin_token)?,
                SavedViews::open(&config.data_dir)?,
            ),
            Some(db) => (
                Alerts::on(db.clone(), config.alerts.clone(), hub.clone()),
                Auth::on(db.clone(), &admin_token),
                SavedViews::on(db),
            ),
        };
        let auth = auth.with_policy(config.sessions.clone());
        match (&node, store.postgres()) {
            (Some(node), Some(log)) => {
                // One node at a time evaluates the alert rules, so an alert fires once for
                // the cluster; another takes over when that node dies.
                let (me, store, analytics) = (alerts.clone(), store.clone(), analytics.clone());
                let catalogue = config.coverage.clone();
                crate::store::postgres::run_when_held(
                    log.clone(),
                    "alerts",
                    node.name.clone(),
                    std::time::Duration::from_secs(20),
                    move || me.watch(&store, analytics, catalogue.clone()),
                );
                auth.follow_revocations(log.notices(auth::REVOCATIONS));
                tokio::spawn(crate::store::postgres::checkpoints::run(
                    log.clone(),
                    node.name.clone(),
                    node.key.clone(),
                    crate::store::postgres::checkpoints::Duty::default(),
                ));
            }
            _ => alerts.watch(&store, analytics.clone(), config.coverage.clone()),
        }
        let leptos_options = leptos_options(config);
        let pkg = PathBuf::from(&*leptos_options.site_root)
            .join(&*leptos_options.site_pkg_dir)
            .join(format!("{}.js", leptos_options.output_name));
        if !pkg.exists() {
            tracing::warn!(
                path = %pkg.display(),
                "dashboard assets not found: run `cargo leptos build` or pass --site-root"
            );
        }
        let chain = crate::integrity::spawn(
            store.clone(),
            crate::integrity::INTERVAL,
            crate::integrity::FULL_EVERY,
        );
        let state = AppState(Arc::new(Shared {
            store,
            hub,
            auth,
            views,
            analytics,
            alerts,
            chain,
            leptos_options,
            max_body_bytes: config.max_body_bytes,
            window: config.window,
            coverage: config.coverage.clone(),
            retention: Arc::new(std::sync::RwLock::new(config.retention.clone())),
            mirror_dir: config.mirror_dir.clone(),
            limiter: Arc::new(limits::RateLimiter::new(config.limits.clone())),
            secure_cookies: tls.is_some(),
            headers: Arc::new(
                SecurityHeaders::new(tls.is_some(), &config.frame_ancestors)
                    .map_err(ServeError::Config)?,
            ),
        }));
        let setup_code = state
            .auth
            .with_users(|c| Ok(auth::users::new_setup_code(c)?))
            .await
            .map_err(|e| ServeError::Config(format!("user database: {e}")))?;
        settings::restore(&state)
            .await
            .map_err(|e| ServeError::Config(format!("saved settings: {e}")))?;
        if node.is_some() {
            settings::follow(state.clone());
        }
        lifecycle::spawn_daily(state.clone(), config.retention_schedule);
        match (&node, state.store.postgres()) {
            // One node records what the CLI changed, so each change enters the chain once.
            (Some(node), Some(log)) => {
                let state = state.clone();
                crate::store::postgres::run_when_held(
                    log.clone(),
                    "cli-changes",
                    node.name.clone(),
                    std::time::Duration::from_secs(20),
                    move || tokens::watch_cli_changes(state),
                );
            }
            _ => tokens::watch_cli_changes(state.clone()),
        }
        let runtime = tokio::runtime::Handle::current();
        if let Some(dir) = &config.mirror_dir {
            crate::mirror::spawn(&state.store, dir, runtime.clone()).map_err(|e| {
                ServeError::Config(format!("mirror directory {}: {e}", dir.display()))
            })?;
        }
        let tailers = match tails.is_empty() {
            true => None,
            false => Some(crate::tail::Tailers::start(
                &state.store,
                &tails,
                &crate::tail::TailOptions {
                    window: config.window,
                    ..crate::tail::TailOptions::default()
                },
                runtime,
            )?),
        };
        let syslog = crate::server::syslog::start(&state, &syslog_specs, tls.clone())
            .await
            .map_err(ServeError::Config)?;
        let metrics = match config.metrics_addr {
            Some(addr) => Some(
                crate::server::metrics::start(state.clone(), addr)
                    .await
                    .map_err(ServeError::Config)?,
            ),
            None => None,
        };
        let tcp = TcpListener::bind(config.addr)
            .await
            .map_err(|source| ServeError::Bind {
                addr: config.addr,
                source,
            })?;
        let listener = match tls {
            Some(tls) => Bound::Tls(tls::TlsListener::new(tcp, tls)?),
            None => Bound::Plain(tcp),
        };
        Ok(Server {
            listener,
            app: router(state.clone()),
            admin_token,
            token_origin,
            setup_code,
            state,
            tailers,
            syslog,
            metrics,
        })
    }

    /// Where `/metrics` is served (useful with port 0).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|m| m.addr)
    }

    /// Each syslog listener's source name and bound address (useful with port 0).
    pub fn syslog_addrs(&self) -> &[(String, SocketAddr)] {
        &self.syslog.bound
    }

    /// The address actually bound (useful with port 0).
    ///
    /// # Errors
    /// The socket has no local address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match &self.listener {
            Bound::Plain(l) => l.local_addr(),
            Bound::Tls(l) => axum::serve::Listener::local_addr(l),
        }
    }

    /// Whether the server speaks TLS (`https://`, `wss://`).
    pub fn is_tls(&self) -> bool {
        matches!(self.listener, Bound::Tls(_))
    }

    /// Serves until `shutdown` completes, then gives open connections (sockets stay open
    /// forever) a short grace period.
    ///
    /// # Errors
    /// The accept loop failed.
    pub async fn serve(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let store = self.state.store.clone();
        let tailers = self.tailers;
        let syslog = self.syslog;
        let metrics = self.metrics;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let limits = conn::ConnLimits::of(&self.state.limiter.config());
        type Serving = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;
        let serve: Serving = match self.listener {
            Bound::Plain(l) => Box::pin(conn::serve(l, self.app, limits, stop_rx)),
            Bound::Tls(l) => Box::pin(conn::serve(l, self.app, limits, stop_rx)),
        };
        tokio::select! {
            () = serve => {},
            _ = async {
                shutdown.await;
                let _ = stop_tx.send(true);
                tokio::time::sleep(Duration::from_secs(2)).await;
            } => {}
        }
        // Syslog senders are cut off here; what they sent and was read is stored already.
        drop(syslog);
        drop(metrics);
        // Lines read are stored with their cursor; the rest is read again by the next start.
        if let Some(tailers) = tailers {
            let _ = tokio::task::spawn_blocking(move || tailers.stop()).await;
        }
        // Everything committed gets a checkpoint before the process exits.
        match store.checkpoint_head(Duration::from_secs(5)).await {
            Ok(seq) => tracing::info!(signed_through = seq, "checkpoint signed on stopping"),
            Err(e) => tracing::warn!(error = %e, "could not sign a checkpoint on stopping"),
        }
        Ok(())
    }
}

/// Leptos settings: cargo-leptos's `LEPTOS_*` variables when present, with our site root and
/// address on top.
fn leptos_options(config: &ServeConfig) -> LeptosOptions {
    let mut options = match leptos::config::get_configuration(None) {
        Ok(conf) => conf.leptos_options,
        Err(_) => LeptosOptions::builder().output_name("trailwatch").build(),
    };
    if options.output_name.is_empty() {
        options.output_name = "trailwatch".into();
    }
    options.site_root = config.site_root.to_string_lossy().as_ref().into();
    options.site_addr = config.addr;
    options
}

/// The whole application: the REST API and socket, the server functions, the dashboard's
/// pages and static files, behind the server's middleware.
pub fn router(state: AppState) -> Router {
    let pages = generate_route_list(App);
    let routes = crate::server::api_routes()
        .leptos_routes_with_context(&state, pages, || {}, {
            let options = state.leptos_options.clone();
            move || shell(options.clone())
        })
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(shell));
    crate::server::protect(routes, state)
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down");
}
