//! The process's Prometheus metrics: what each part of the server counts and times, and their
//! exposition in the OpenMetrics text format for `GET /metrics` (on `--metrics-addr`). A leaf
//! that every layer may record into; server build only.
//!
//! The metrics are process-wide, as Prometheus client libraries keep them: one process serves
//! one store. Values that are cheaper to read than to keep (the chain's state, the database's
//! size, the search index's lag) are gauges set by whoever scrapes, just before encoding.

use prometheus_client::encoding::{text::encode, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;
use std::sync::LazyLock;
use std::time::Duration;

/// Events stored or refused, by the channel that brought them.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    pub source: String,
    /// `stored`, or `refused` (invalid, outside the time window, or the store failed).
    pub result: String,
}

/// HTTP answers, by route template and status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub route: String,
    pub status: String,
}

/// Why live sockets ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

/// Alerts raised, by rule.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabels {
    pub rule: String,
}

/// Every metric of the process.
pub struct Metrics {
    registry: Registry,
    pub events: Family<SourceLabels, Counter>,
    pub requests: Family<RequestLabels, Counter>,
    pub commit_events: Histogram,
    pub commit_seconds: Histogram,
    pub fsync_seconds: Histogram,
    pub writer_queue: Gauge,
    pub index_lag: Gauge,
    pub sockets_open: Gauge,
    pub sockets_lagged: Counter,
    pub sockets_closed: Family<ReasonLabels, Counter>,
    pub search_seconds: Histogram,
    pub summary_seconds: Histogram,
    pub chain_ok: Gauge,
    pub chain_head: Gauge,
    pub database_bytes: Gauge<u64, AtomicU64>,
    pub alerts: Family<RuleLabels, Counter>,
    pub webhook_failures: Counter,
}

/// Seconds from 0.5 ms to about 16 s, doubling.
fn seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl Metrics {
    fn new() -> Metrics {
        let mut m = Metrics {
            registry: Registry::with_prefix("trailwatch"),
            events: Family::default(),
            requests: Family::default(),
            commit_events: Histogram::new(exponential_buckets(1.0, 4.0, 9)),
            commit_seconds: seconds(),
            fsync_seconds: seconds(),
            writer_queue: Gauge::default(),
            index_lag: Gauge::default(),
            sockets_open: Gauge::default(),
            sockets_lagged: Counter::default(),
            sockets_closed: Family::default(),
            search_seconds: seconds(),
            summary_seconds: seconds(),
            chain_ok: Gauge::default(),
            chain_head: Gauge::default(),
            database_bytes: Gauge::default(),
            alerts: Family::default(),
            webhook_failures: Counter::default(),
        };
        let r = &mut m.registry;
        r.register(
            "ingest_events",
            "Events that reached the store, by source, stored or refused",
            m.events.clone(),
        );
        r.register(
            "http_requests",
            "HTTP answers by method, route and status",
            m.requests.clone(),
        );
        r.register(
            "commit_batch_events",
            "Events per group commit",
            m.commit_events.clone(),
        );
        r.register_with_unit(
            "commit",
            "Time to seal and commit one group of appends",
            Unit::Seconds,
            m.commit_seconds.clone(),
        );
        r.register_with_unit(
            "fsync",
            "Time to make committed groups durable (SQLite's write-ahead log sync)",
            Unit::Seconds,
            m.fsync_seconds.clone(),
        );
        r.register(
            "writer_queue_depth",
            "Append requests waiting for the writer",
            m.writer_queue.clone(),
        );
        r.register(
            "search_index_lag_events",
            "Committed events the full-text index has not reached yet",
            m.index_lag.clone(),
        );
        r.register(
            "live_sockets_open",
            "Open live WebSockets",
            m.sockets_open.clone(),
        );
        r.register(
            "live_sockets_lagged",
            "Times a live socket fell behind the queue and was resumed from the store",
            m.sockets_lagged.clone(),
        );
        r.register(
            "live_sockets_closed",
            "Live sockets ended, by reason",
            m.sockets_closed.clone(),
        );
        r.register_with_unit(
            "search",
            "Time to answer an explorer or REST list query",
            Unit::Seconds,
            m.search_seconds.clone(),
        );
        r.register_with_unit(
            "overview",
            "Time to compute the dashboard's totals and rates (its summary)",
            Unit::Seconds,
            m.summary_seconds.clone(),
        );
        r.register(
            "chain_verified",
            "The background chain check: 1 verified, 0 not checked yet, -1 broken",
            m.chain_ok.clone(),
        );
        r.register(
            "chain_head_seq",
            "The newest committed seq",
            m.chain_head.clone(),
        );
        r.register_with_unit(
            "database",
            "Size of the database on disk",
            Unit::Bytes,
            m.database_bytes.clone(),
        );
        r.register("alerts_fired", "Alerts raised, by rule", m.alerts.clone());
        r.register(
            "webhook_failures",
            "Alert webhook deliveries that failed, counting each attempt",
            m.webhook_failures.clone(),
        );
        m
    }

    /// The exposition, in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }

    /// The exposition in Prometheus's classic text format (0.0.4), for scrapers that do not
    /// ask for OpenMetrics: a counter's HELP and TYPE name its `_total` samples, and the
    /// `# UNIT` and `# EOF` lines, which only OpenMetrics has, are left out.
    pub fn encode_classic(&self) -> String {
        let open = self.encode();
        let counters: std::collections::HashSet<&str> = open
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.strip_suffix(" counter"))
            .collect();
        let mut out = String::with_capacity(open.len());
        for line in open.lines() {
            if line.starts_with("# UNIT ") || line == "# EOF" {
                continue;
            }
            let meta = ["# HELP ", "# TYPE "]
                .into_iter()
                .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
            match meta.and_then(|(p, rest)| rest.split_once(' ').map(|(n, t)| (p, n, t))) {
                Some((prefix, name, text)) if counters.contains(name) => {
                    out.push_str(&format!("{prefix}{name}_total {text}\n"));
                }
                _ => {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        out
    }

    /// Counts `n` events of `source`.
    pub fn count_events(&self, source: &str, stored: bool, n: u64) {
        self.events
            .get_or_create(&SourceLabels {
                source: source.to_string(),
                result: if stored { "stored" } else { "refused" }.to_string(),
            })
            .inc_by(n);
    }
}

/// The process's metrics.
pub fn get() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

/// Records how long `since` was ago into `histogram`.
pub fn observe(histogram: &Histogram, took: Duration) {
    histogram.observe(took.as_secs_f64());
}
