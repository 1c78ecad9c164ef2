//! Settings: command-line flags, then `TRAILWATCH_*` environment variables (both through clap),
//! then an optional `trailwatch.toml`, then built-in defaults. Server build only.

use crate::alerts::AlertConfig;
use crate::analytics::AnomalyConfig;
use crate::site::ServeConfig;
use crate::store::{RetentionPolicy, RiskConfig};
use clap::{Args, Parser, Subcommand};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The default listening address.
pub const DEFAULT_ADDR: &str = "127.0.0.1:3000";
/// The default data directory.
pub const DEFAULT_DATA_DIR: &str = "./data";

/// trailwatch: self-hosted, real-time audit-trail analytics.
#[derive(Debug, Parser)]
#[command(name = "trailwatch", version, about, propagate_version = true)]
pub struct Cli {
    /// A TOML settings file (default: ./trailwatch.toml if it exists).
    #[arg(long, global = true, env = "TRAILWATCH_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: ingest API, live WebSocket and dashboard.
    Serve(ServeArgs),
    /// Send one event to a running server.
    Emit(EmitArgs),
    /// Check the whole hash chain of a data directory (or of a PostgreSQL database with
    /// --database); exits 1 if it is broken.
    Verify(VerifyArgs),
    /// Load JSONL or text log files into a running server, with a progress bar.
    Import(ImportArgs),
    /// Create, list or revoke scoped API tokens; works while the server runs.
    Token(TokenArgs),
    /// Add, list or disable dashboard users, or set a password; works while the server runs.
    User(UserArgs),
    /// Copy a data directory consistently while the server runs (every database and file).
    Backup(BackupArgs),
    /// Copy an SQLite data directory into an empty PostgreSQL database, keeping seqs, hashes
    /// and checkpoints, then verify the copy.
    Migrate(MigrateArgs),
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The PostgreSQL database to copy into (empty), as postgres://user@host:port/name.
    #[arg(long, value_name = "URL")]
    pub to: String,
    /// Data directory to copy from [default: ./data].
    #[arg(long, env = "TRAILWATCH_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// A new (or empty) directory to copy into.
    pub dest: PathBuf,
    /// Data directory to copy [default: ./data].
    #[arg(long, env = "TRAILWATCH_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct UserArgs {
    /// Data directory whose users to manage [default: ./data].
    #[arg(long, env = "TRAILWATCH_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// Manage the users of a cluster's PostgreSQL database instead (as `serve --database`):
    /// postgres://user@host:port/database.
    #[arg(long, env = "TRAILWATCH_DATABASE_URL", global = true)]
    pub database: Option<String>,
    #[command(subcommand)]
    pub command: UserCommand,
}

#[derive(Clone, Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user. Without --password-stdin a password is generated and printed once.
    Add {
        /// The sign-in name: letters, digits, '.', '_' and '-'.
        name: String,
        /// admin (everything), auditor (read, export, verify), viewer (read) or self (only
        /// the events where they are the actor).
        #[arg(long)]
        role: String,
        /// The user's actor id in events, which the self role is limited to [default: NAME].
        #[arg(long)]
        subject: Option<String>,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List the users: name, role, actor id, created, last sign-in, disabled.
    List,
    /// Disable a user and end their sessions; the name stays taken.
    Disable {
        /// The user's name.
        name: String,
    },
    /// Set a user's password from the first line of standard input; ends their sessions.
    Passwd {
        /// The user's name.
        name: String,
    },
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Data directory whose tokens to manage [default: ./data].
    #[arg(long, env = "TRAILWATCH_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// Manage the tokens of a cluster's PostgreSQL database instead (as `serve --database`):
    /// postgres://user@host:port/database.
    #[arg(long, env = "TRAILWATCH_DATABASE_URL", global = true)]
    pub database: Option<String>,
    #[command(subcommand)]
    pub command: TokenCommand,
}

#[derive(Clone, Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a token and print it (only it, on stdout); it is not shown again.
    Create {
        /// A name to know it by: letters, digits, '.', '_' and '-'.
        #[arg(long)]
        name: String,
        /// ingest (send events), read (read and export) or admin (everything).
        #[arg(long)]
        scope: String,
    },
    /// List the tokens: name, scope, created, last used, revoked.
    List,
    /// Revoke a token: its next request is refused.
    Revoke {
        /// The token's name.
        name: String,
    },
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The files, loaded in the order given.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// jsonl or text [default: jsonl for .jsonl/.ndjson/.json files, text otherwise].
    #[arg(long)]
    pub format: Option<String>,
    /// Events per request [default: 5000].
    #[arg(long, default_value_t = 5000)]
    pub batch: usize,
    /// Server URL [default: http://127.0.0.1:3000].
    #[arg(long, env = "TRAILWATCH_URL")]
    pub url: Option<String>,
    /// API token [default: the admin token in the data directory].
    #[arg(long, env = "TRAILWATCH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Data directory to read the admin token from when no token is given.
    #[arg(long, env = "TRAILWATCH_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:3000].
    #[arg(long, env = "TRAILWATCH_ADDR")]
    pub addr: Option<SocketAddr>,
    /// Directory for the database and the admin token [default: ./data].
    #[arg(long, env = "TRAILWATCH_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Directory of the built dashboard (pkg/, assets) [default: target/site].
    #[arg(long, env = "TRAILWATCH_SITE_ROOT")]
    pub site_root: Option<PathBuf>,
    /// Largest accepted ingest body, in bytes [default: 10485760].
    #[arg(long, env = "TRAILWATCH_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Committed events kept for slow live clients before they are resumed from disk
    /// [default: 4096].
    #[arg(long, env = "TRAILWATCH_LIVE_QUEUE")]
    pub live_queue: Option<usize>,
    /// A cap on the database file, in MiB: past it ingest answers 507, as on a full disk,
    /// until retention or erasure frees space [default: none, the disk is the limit].
    #[arg(long, env = "TRAILWATCH_MAX_DB_MB")]
    pub max_db_mb: Option<u64>,
    /// The IANA time zone whose night (22:00 to 06:00) the time anomaly watches
    /// [default: UTC].
    #[arg(long, env = "TRAILWATCH_TIME_ZONE")]
    pub time_zone: Option<String>,
    /// Follow a log file: PATH, PATH:jsonl or PATH:text (without a suffix, .jsonl/.ndjson/
    /// .json files are JSONL and others text). Repeatable; replaces the file's `tail` list.
    #[arg(long = "tail", value_name = "PATH[:jsonl|text]")]
    pub tail: Vec<String>,
    /// Listen for syslog messages (RFC 5424 and RFC 3164): tcp://ADDR:PORT (octet counting or
    /// newline framing), udp://ADDR:PORT, or tls://ADDR:PORT with the server's certificate.
    /// Repeatable; replaces the file's `syslog` list.
    #[arg(long = "syslog", value_name = "tcp|udp|tls://ADDR:PORT")]
    pub syslog: Vec<String>,
    /// Also write every stored event to a JSONL file per day in this directory.
    #[arg(long, env = "TRAILWATCH_MIRROR_DIR", value_name = "DIR")]
    pub mirror_dir: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics, without credentials: keep the address
    /// private (for example 127.0.0.1:9464) [default: off].
    #[arg(long, env = "TRAILWATCH_METRICS_ADDR", value_name = "ADDR:PORT")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Top-level metadata fields that are personal data (comma-separated or repeated): kept
    /// apart and removed when their actor is erased. Replaces the file's
    /// `[privacy] personal_metadata`.
    #[arg(
        long,
        env = "TRAILWATCH_PERSONAL_METADATA",
        value_name = "FIELD",
        value_delimiter = ','
    )]
    pub personal_metadata: Vec<String>,
    /// Serve HTTPS and WSS with this PEM certificate chain (needs --tls-key); turns on HSTS
    /// and Secure cookies.
    #[arg(
        long,
        env = "TRAILWATCH_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(
        long,
        env = "TRAILWATCH_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
    /// Keep everything in this PostgreSQL database, shared with the other nodes of a cluster,
    /// instead of the embedded SQLite store: postgres://user@host:port/database.
    #[arg(long, env = "TRAILWATCH_DATABASE_URL", value_name = "URL")]
    pub database: Option<String>,
    /// This node's name in the cluster, stable across its restarts [default: host:port].
    #[arg(long, env = "TRAILWATCH_NODE")]
    pub node_name: Option<String>,
    /// The cluster's checkpoint signing key file, the same on every node [default:
    /// checkpoint.key in the data directory].
    #[arg(long, env = "TRAILWATCH_CLUSTER_KEY", value_name = "FILE")]
    pub cluster_key: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct EmitArgs {
    #[command(subcommand)]
    pub kind: Option<EmitKind>,
    /// Server URL [default: http://127.0.0.1:3000].
    #[arg(long, env = "TRAILWATCH_URL", global = true)]
    pub url: Option<String>,
    /// API token [default: the admin token in the data directory].
    #[arg(long, env = "TRAILWATCH_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// Data directory to read the admin token from when no token is given.
    #[arg(long, env = "TRAILWATCH_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// What was done, for example file.read.
    #[arg(long)]
    pub action: Option<String>,
    /// Who did it (the user id) [default: system].
    #[arg(long)]
    pub user: Option<String>,
    /// success, failure or denied [default: success].
    #[arg(long)]
    pub outcome: Option<String>,
    /// debug, info, warning, error or critical [default: from the outcome].
    #[arg(long)]
    pub level: Option<String>,
    /// One of the ten categories [default: from the action].
    #[arg(long)]
    pub category: Option<String>,
    /// Free text.
    #[arg(long)]
    pub description: Option<String>,
    /// Risk score, 0 to 100.
    #[arg(long)]
    pub risk: Option<u8>,
}

#[derive(Debug, Subcommand)]
pub enum EmitKind {
    /// Send a test entry with this message (like the old `audit_logger.py test`).
    Test {
        /// The message.
        message: String,
    },
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Data directory to check [default: ./data].
    #[arg(long, env = "TRAILWATCH_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The checkpoint log to check the chain against, for example a copy shipped off the
    /// machine [default: checkpoints.log in the data directory, if present].
    #[arg(long, value_name = "FILE")]
    pub checkpoints: Option<PathBuf>,
    /// The public key the checkpoints are signed with (64 hex digits in a file)
    /// [default: checkpoint.pub in the data directory].
    #[arg(long, value_name = "FILE")]
    pub public_key: Option<PathBuf>,
    /// Check the chain in this PostgreSQL database instead of a data directory's, against
    /// the checkpoints stored there.
    #[arg(long, value_name = "URL", env = "TRAILWATCH_DATABASE_URL")]
    pub database: Option<String>,
}

/// The optional settings file; every key may be left out.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct FileConfig {
    pub addr: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub site_root: Option<PathBuf>,
    pub max_body_bytes: Option<usize>,
    pub live_queue: Option<usize>,
    pub max_db_mb: Option<u64>,
    /// The server `trailwatch emit` talks to.
    pub url: Option<String>,
    pub time_zone: Option<String>,
    /// Anomaly thresholds (`[anomalies]`); every key may be left out.
    pub anomalies: Option<AnomalyConfig>,
    /// Alert rules and webhooks (`[alerts]`, `[[alerts.rules]]`, `[[alerts.webhooks]]`).
    pub alerts: Option<AlertConfig>,
    /// Risk scoring rules (`[risk]`, `[risk.level]`, `[risk.repeated]`, ...).
    pub risk: Option<RiskConfig>,
    /// How long events are kept (`[retention]`, `[retention.levels]`,
    /// `[retention.categories]`).
    pub retention: Option<RetentionPolicy>,
    /// Log files to follow, as `--tail` takes them.
    pub tail: Option<Vec<String>>,
    /// Syslog listeners, as `--syslog` takes them.
    pub syslog: Option<Vec<String>>,
    /// The JSONL mirror's directory.
    pub mirror_dir: Option<PathBuf>,
    /// Where `/metrics` is served.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// What counts as personal data beyond the fixed fields (`[privacy]`).
    pub privacy: Option<PrivacyConfig>,
    /// Rate limits (`[limits]`).
    pub limits: Option<crate::server::limits::LimitsConfig>,
    /// The times an ingested event may carry (`[ingest]`).
    pub ingest: Option<crate::ingest::TimeWindow>,
    /// The actions that must keep being audited (`[coverage]`).
    pub coverage: Option<crate::analytics::coverage::Catalogue>,
    /// Dashboard session lifetimes (`[sessions]`).
    pub sessions: Option<crate::auth::SessionPolicy>,
    /// PEM certificate chain and key for HTTPS.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Origins allowed to frame the dashboard (CSP `frame-ancestors`); none by default.
    pub frame_ancestors: Option<Vec<String>>,
    /// `[database]`: several nodes on one PostgreSQL database.
    pub database: Option<crate::site::ClusterConfig>,
}

/// The `[privacy]` section.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct PrivacyConfig {
    /// Top-level metadata fields that are personal data, such as `email` or `phone`.
    #[serde(default)]
    pub personal_metadata: Vec<String>,
}

/// Why settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
}

impl FileConfig {
    /// Loads `explicit` (which must exist) or `./trailwatch.toml` (if it exists).
    ///
    /// # Errors
    /// The file cannot be read or holds unknown keys or bad values.
    pub fn load(explicit: Option<&Path>) -> Result<FileConfig, ConfigError> {
        let path = match explicit {
            Some(p) => p.to_path_buf(),
            None => {
                let p = PathBuf::from("trailwatch.toml");
                if !p.exists() {
                    return Ok(FileConfig::default());
                }
                p
            }
        };
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path,
            message: e.to_string(),
        })
    }
}

/// The data directory a command works on: its flag (or `TRAILWATCH_DATA_DIR`), else the
/// file's `data_dir`, else [`DEFAULT_DATA_DIR`].
pub fn data_dir(flag: Option<PathBuf>, file: &FileConfig) -> PathBuf {
    flag.or_else(|| file.data_dir.clone())
        .unwrap_or_else(|| DEFAULT_DATA_DIR.into())
}

/// The cluster's database: the flag (or environment), else the file's `[database] url`.
pub fn database_url(flag: Option<String>, file: &FileConfig) -> Option<String> {
    flag.or_else(|| file.database.as_ref().map(|d| d.url.clone()))
}

/// Merges flags and environment (already in `args`) over the file over the defaults into
/// the server's settings.
pub fn serve_config(args: ServeArgs, file: FileConfig) -> ServeConfig {
    let d = ServeConfig::defaults(DEFAULT_DATA_DIR.into());
    ServeConfig {
        addr: args.addr.or(file.addr).unwrap_or(d.addr),
        data_dir: args.data_dir.or(file.data_dir).unwrap_or(d.data_dir),
        site_root: args.site_root.or(file.site_root).unwrap_or(d.site_root),
        max_body_bytes: args
            .max_body_bytes
            .or(file.max_body_bytes)
            .unwrap_or(d.max_body_bytes),
        live_queue: args.live_queue.or(file.live_queue).unwrap_or(d.live_queue),
        max_db_mb: args.max_db_mb.or(file.max_db_mb),
        admin_token: std::env::var("TRAILWATCH_ADMIN_TOKEN")
            .ok()
            .filter(|t| !t.is_empty()),
        time_zone: args.time_zone.or(file.time_zone).unwrap_or(d.time_zone),
        anomalies: file.anomalies.unwrap_or_default(),
        alerts: file.alerts.unwrap_or_default(),
        risk: file.risk.unwrap_or_default(),
        retention: file.retention.unwrap_or_default(),
        retention_schedule: d.retention_schedule,
        tails: if args.tail.is_empty() {
            file.tail.unwrap_or_default()
        } else {
            args.tail
        },
        window: file.ingest.unwrap_or_default(),
        coverage: file.coverage.unwrap_or_default(),
        syslog: if args.syslog.is_empty() {
            file.syslog.unwrap_or_default()
        } else {
            args.syslog
        },
        mirror_dir: args.mirror_dir.or(file.mirror_dir),
        metrics_addr: args.metrics_addr.or(file.metrics_addr),
        limits: file.limits.unwrap_or_default(),
        sessions: file.sessions.unwrap_or_default(),
        tls_cert: args.tls_cert.or(file.tls_cert),
        tls_key: args.tls_key.or(file.tls_key),
        frame_ancestors: file.frame_ancestors.unwrap_or_default(),
        cluster: match (args.database, file.database) {
            (Some(url), file) => Some(crate::site::ClusterConfig {
                url,
                ..file.unwrap_or_default()
            }),
            (None, file) => file,
        }
        .map(|mut c| {
            c.node = args.node_name.clone().or(c.node);
            c.key_file = args.cluster_key.clone().or(c.key_file);
            c
        }),
        personal_metadata: {
            let declared = if args.personal_metadata.is_empty() {
                file.privacy.unwrap_or_default().personal_metadata
            } else {
                args.personal_metadata
            };
            let mut fields: Vec<String> = Vec::new();
            for f in declared.iter().map(|f| f.trim()).filter(|f| !f.is_empty()) {
                if !fields.iter().any(|have| have == f) {
                    fields.push(f.to_string());
                }
            }
            fields
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::site::DEFAULT_MAX_BODY_BYTES;

    #[test]
    fn flags_beat_the_file_which_beats_defaults() {
        let cli = Cli::parse_from(["trailwatch", "serve", "--addr", "127.0.0.1:9999"]);
        let Command::Serve(args) = cli.command else {
            panic!("expected serve")
        };
        let file: FileConfig =
            toml::from_str("addr = \"127.0.0.1:1\"\ndata_dir = \"/var/tw\"").unwrap();
        let c = serve_config(args, file);
        assert_eq!(c.addr.port(), 9999);
        assert_eq!(c.data_dir, PathBuf::from("/var/tw"));
        assert_eq!(c.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
    }

    #[test]
    fn personal_metadata_comes_from_the_flag_over_the_file() {
        let file = || -> FileConfig {
            toml::from_str("[privacy]\npersonal_metadata = [\"email\", \" phone \", \"email\"]")
                .unwrap()
        };
        let serve = |argv: &[&str]| {
            let Command::Serve(args) = Cli::parse_from(argv).command else {
                panic!("expected serve")
            };
            args
        };
        let c = serve_config(serve(&["trailwatch", "serve"]), file());
        assert_eq!(c.personal_metadata, ["email", "phone"]);
        let c = serve_config(
            serve(&["trailwatch", "serve", "--personal-metadata", "ssn,dob"]),
            file(),
        );
        assert_eq!(c.personal_metadata, ["ssn", "dob"]);
        assert!(toml::from_str::<FileConfig>("[privacy]\npersonal = []").is_err());
    }

    #[test]
    fn retention_periods_come_from_the_file_over_the_defaults() {
        let file: FileConfig =
            toml::from_str("[retention]\ndays = 90\n[retention.categories]\nauthentication = 400")
                .unwrap();
        let r = file.retention.unwrap();
        assert_eq!(r.days, 90);
        assert_eq!(r.days_for("info", "authentication"), 400);
        assert_eq!(r.days_for("info", "api"), 90);
        assert!(r.enabled);
        // Tables given replace the defaults': security is no longer special.
        assert_eq!(r.days_for("info", "security"), 90);
        assert!(toml::from_str::<FileConfig>("[retention]\nday = 3").is_err());
    }

    #[test]
    fn tails_come_from_flags_over_the_file() {
        let file = || -> FileConfig {
            toml::from_str("tail = [\"/var/log/a.log\", \"/var/log/b:jsonl\"]\nmirror_dir = \"/m\"")
                .unwrap()
        };
        let cli = Cli::parse_from(["trailwatch", "serve"]);
        let Command::Serve(args) = cli.command else {
            panic!("expected serve")
        };
        let c = serve_config(args, file());
        assert_eq!(c.tails, ["/var/log/a.log", "/var/log/b:jsonl"]);
        assert_eq!(c.mirror_dir, Some(PathBuf::from("/m")));
        let cli = Cli::parse_from([
            "trailwatch",
            "serve",
            "--tail",
            "x.jsonl",
            "--tail",
            "y:text",
        ]);
        let Command::Serve(args) = cli.command else {
            panic!("expected serve")
        };
        assert_eq!(serve_config(args, file()).tails, ["x.jsonl", "y:text"]);
    }

    #[test]
    fn the_coverage_catalogue_comes_from_the_file_and_is_checked() {
        let f: FileConfig = toml::from_str(
            "[coverage]\nexpected = [{ action = \"agent.delete\", silent = \"7d\" }]",
        )
        .unwrap();
        assert_eq!(f.coverage.unwrap().expected[0].action, "agent.delete");
        let err = toml::from_str::<FileConfig>(
            "[coverage]\nexpected = [{ action = \"agent.delete\", silent = \"soon\" }]",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("agent.delete"), "{err}");
    }

    #[test]
    fn the_ingest_window_comes_from_the_file_and_is_checked() {
        let f: FileConfig =
            toml::from_str("[ingest]\nnot_before = \"2015-01-01T00:00:00Z\"\nmax_ahead_hours = 2")
                .unwrap();
        let w = f.ingest.unwrap();
        assert_eq!(w.not_before.to_rfc3339(), "2015-01-01T00:00:00+00:00");
        assert_eq!(w.max_ahead, chrono::Duration::hours(2));
        for (bad, says) in [
            (
                "[ingest]\nnot_before = \"1969-12-31T00:00:00Z\"",
                "before 1970",
            ),
            (
                "[ingest]\nnot_before = \"2999-01-01T00:00:00Z\"",
                "in the future",
            ),
            ("[ingest]\nmax_ahead_hours = 100000", "a year"),
            ("[ingest]\nmax_ahead = 3", "unknown field"),
        ] {
            let err = toml::from_str::<FileConfig>(bad).unwrap_err().to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn syslog_listeners_come_from_flags_over_the_file() {
        let file = || -> FileConfig {
            toml::from_str("syslog = [\"tcp://0.0.0.0:6514\", \"udp://0.0.0.0:514\"]").unwrap()
        };
        let serve = |argv: &[&str]| {
            let Command::Serve(args) = Cli::parse_from(argv).command else {
                panic!("expected serve")
            };
            serve_config(args, file())
        };
        assert_eq!(
            serve(&["trailwatch", "serve"]).syslog,
            ["tcp://0.0.0.0:6514", "udp://0.0.0.0:514"]
        );
        assert_eq!(
            serve(&["trailwatch", "serve", "--syslog", "tls://127.0.0.1:6515"]).syslog,
            ["tls://127.0.0.1:6515"]
        );
    }

    #[test]
    fn unknown_file_keys_are_errors() {
        assert!(toml::from_str::<FileConfig>("adr = \"x\"").is_err());
        assert!(toml::from_str::<FileConfig>("[anomalies]\nspike = 2.0").is_err());
    }

    #[test]
    fn anomaly_thresholds_come_from_the_file() {
        let file: FileConfig = toml::from_str(
            "time_zone = \"Europe/Berlin\"\n[anomalies]\nspike_ratio = 5.0\nnight_start = 1380",
        )
        .unwrap();
        let cli = Cli::parse_from(["trailwatch", "serve"]);
        let Command::Serve(args) = cli.command else {
            panic!("expected serve")
        };
        let c = serve_config(args, file);
        assert_eq!(c.time_zone, "Europe/Berlin");
        assert_eq!(c.anomalies.spike_ratio, 5.0);
        assert_eq!(c.anomalies.night_start, 23 * 60);
        assert_eq!(c.anomalies.dip_ratio, AnomalyConfig::default().dip_ratio);
        assert!(c.alerts.builtin);
        assert!(c.risk.enabled, "scoring is on by default");
    }

    #[test]
    fn risk_rules_come_from_the_file() {
        let file: FileConfig = toml::from_str(
            "[risk]
enabled = true
[risk.outcome]
denied = 45
[risk.repeated]
after = 4",
        )
        .unwrap();
        let cli = Cli::parse_from(["trailwatch", "serve"]);
        let Command::Serve(args) = cli.command else {
            panic!("expected serve")
        };
        let c = serve_config(args, file);
        assert_eq!(c.risk.outcome.denied, 45);
        assert_eq!(c.risk.outcome.failure, 20);
        assert_eq!(c.risk.repeated.after, 4);
        assert!(toml::from_str::<FileConfig>(
            "[risk]
levels = {}"
        )
        .is_err());
    }

    #[test]
    fn alert_rules_and_webhooks_come_from_the_file() {
        let file: FileConfig = toml::from_str(
            "[alerts]\ngroup_seconds = 30\n\
             [[alerts.rules]]\nname = \"auth storm\"\nseverity = \"critical\"\n\
             action = \"auth.*\"\nrate = { count = 20, per_seconds = 60 }\n\
             [[alerts.webhooks]]\nurl = \"https://hooks.example/x\"\nformat = \"slack\"",
        )
        .unwrap();
        let alerts = file.alerts.unwrap();
        assert_eq!(alerts.group_seconds, 30);
        assert_eq!(alerts.rules[0].rate.map(|r| r.count), Some(20));
        assert_eq!(
            alerts.webhooks[0].format,
            crate::alerts::WebhookFormat::Slack
        );
    }

    #[test]
    fn emit_test_takes_a_message() {
        let cli = Cli::parse_from(["trailwatch", "emit", "test", "Live streaming test"]);
        let Command::Emit(args) = cli.command else {
            panic!("expected emit")
        };
        assert!(
            matches!(args.kind, Some(EmitKind::Test { message }) if message == "Live streaming test")
        );
    }
}
