//! `trailbench`: measures what the issues promise about speed and memory, on this machine.
//! Against a real server in its own process ([`server`]): durable ingest over HTTP, ingest to
//! WebSocket latency with 1 to 1,000 clients (and with stalled ones), memory per idle client,
//! the database's bytes per event and the bundle's size. Against a real store in this process:
//! the explorer's first page of filtered full-text queries, a streamed export, how the indexes
//! grow, append throughput, analytics over rollups, and file tailing. Results go to
//! BENCHMARKS.md by hand.
//!
//! `cargo run --release --features ssr --bin trailbench -- http --events 200000`

mod cluster;
mod server;

/// See Cargo.toml: events are allocated by request handlers and freed by the writer and
/// indexer threads, a pattern glibc's allocator handles slowly.
#[cfg(feature = "ssr")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use chrono::DateTime;
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use trailwatch::export::{ExportFormat, ExportWriter};
use trailwatch::model::{
    Actor, AuditEvent, Category, Entity, EventFilter, Level, Location, Outcome, RequestInfo, Source,
};
use trailwatch::store::{PageRequest, Store, StoreOptions, DB_FILE};

#[derive(Parser)]
#[command(about = "Trailwatch benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Explorer queries, export and index size over a store of synthetic events.
    Explorer {
        /// How many events the store holds.
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// Where the database lives; reused when it already holds enough events.
        #[arg(long, default_value = "/tmp/trailbench")]
        dir: PathBuf,
        /// Runs of each query.
        #[arg(long, default_value_t = 40)]
        runs: usize,
    },
    /// Append throughput into a fresh store: pre-generated batches from concurrent producers.
    Ingest {
        /// How many events to append.
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// Events per append call (one HTTP request's worth).
        #[arg(long, default_value_t = 1_000)]
        batch: usize,
        /// Concurrent producers, as concurrent HTTP requests would be.
        #[arg(long, default_value_t = 4)]
        producers: usize,
        /// Fsync every commit, as the server does by default.
        #[arg(long)]
        durable: bool,
        /// Distinct users the events are spread over (rollups and risk profiles grow with
        /// them).
        #[arg(long, default_value_t = 5_000)]
        users: u64,
        /// Give every event a sender's risk score, so none is scored at ingest.
        #[arg(long)]
        sender_scores: bool,
        /// Where the database lives; emptied first.
        #[arg(long, default_value = "/tmp/trailbench-ingest")]
        dir: PathBuf,
    },
    /// Summary and insights (trends, anomalies, heatmap) over a store of events spread over
    /// the last `days` days, read from the rollups.
    Analytics {
        /// How many events the store holds.
        #[arg(long, default_value_t = 10_000_000)]
        events: u64,
        /// Distinct users the events are spread over.
        #[arg(long, default_value_t = 5_000)]
        users: u64,
        /// The days the events are spread over, up to now.
        #[arg(long, default_value_t = 30)]
        days: u64,
        /// Where the database lives; reused when it already holds enough events.
        #[arg(long, default_value = "/tmp/trailbench-analytics")]
        dir: PathBuf,
        /// Runs of each measurement.
        #[arg(long, default_value_t = 50)]
        runs: usize,
    },
    /// Durable ingest over HTTP into a real server: NDJSON batches over a few connections,
    /// then single-event POSTs over many; and the database's size per event.
    Http {
        /// Events sent as NDJSON batches.
        #[arg(long, default_value_t = 200_000)]
        events: u64,
        /// Events per NDJSON request.
        #[arg(long, default_value_t = 1_000)]
        batch: usize,
        /// Concurrent connections sending batches.
        #[arg(long, default_value_t = 4)]
        batch_connections: usize,
        /// Events sent one per POST.
        #[arg(long, default_value_t = 50_000)]
        singles: u64,
        /// Concurrent connections sending single events.
        #[arg(long, default_value_t = 64)]
        single_connections: usize,
        /// How the events are dated: `spread` over 30 days (a backfill) or `live` (now).
        #[arg(long, value_enum, default_value = "spread")]
        dated: server::Dated,
        /// The server's data directory; emptied first.
        #[arg(long, default_value = "/tmp/trailbench-http")]
        dir: PathBuf,
    },
    /// Latency from just before a POST to the event's arrival on each subscribed WebSocket
    /// client, at a steady rate of single-event POSTs.
    Live {
        /// Client counts to measure, each against a fresh server.
        #[arg(long, value_delimiter = ',', default_value = "1,100,1000")]
        clients: Vec<usize>,
        /// Single-event POSTs a second.
        #[arg(long, default_value_t = 1_000)]
        rate: u64,
        /// How long each count is measured.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Clients that subscribe and then never read (with a 4 KiB receive buffer).
        #[arg(long, default_value_t = 0)]
        stalled: usize,
        /// The server's data directory; emptied first.
        #[arg(long, default_value = "/tmp/trailbench-live")]
        dir: PathBuf,
    },
    /// The server's resident memory with idle subscribed clients (raise `ulimit -n` for
    /// 10,000: each client is a descriptor in both processes).
    Memory {
        /// Client counts, cumulative.
        #[arg(long, value_delimiter = ',', default_value = "0,1000,10000")]
        clients: Vec<usize>,
        /// The server's data directory; emptied first.
        #[arg(long, default_value = "/tmp/trailbench-memory")]
        dir: PathBuf,
    },
    /// Search (five query shapes) and the dashboard's summary and insights through the
    /// server's HTTP API, over a store of `events` spread over the last 30 days.
    Queries {
        /// How many events the store holds.
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// Runs of each request.
        #[arg(long, default_value_t = 40)]
        runs: usize,
        /// Where the stores live (one per size, reused when it holds enough events).
        #[arg(long, default_value = "/tmp/trailbench-queries")]
        dir: PathBuf,
        /// Event times drawn at random over the 30 days, so arrival order is shuffled against
        /// event time (a backfill, late shippers); the explorer is then timed in both orders.
        #[arg(long)]
        shuffled: bool,
        /// Runs of each REST request, whose exact totals take seconds at 10M events.
        #[arg(long)]
        rest_runs: Option<usize>,
    },
    /// What a request worker spends per event: parsing the realistic NDJSON bodies of `http`
    /// into validated events, on one thread, with no server.
    Parse {
        /// Events parsed, in bodies of `batch`.
        #[arg(long, default_value_t = 200_000)]
        events: u64,
        /// Events per NDJSON body.
        #[arg(long, default_value_t = 1_000)]
        batch: usize,
        /// Passes over all the bodies; the best is reported.
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// The built dashboard's WASM, JS and CSS, raw and gzipped.
    Size {
        /// The built site (after `cargo leptos build --release --precompress`).
        #[arg(long, default_value = "target/site")]
        site_root: PathBuf,
    },
    /// A line appended to a file the server tails, to its arrival on a WebSocket client.
    TailLive {
        /// Lines written, one at a time.
        #[arg(long, default_value_t = 500)]
        lines: usize,
        /// The server's data directory (emptied first); the file is beside it.
        #[arg(long, default_value = "/tmp/trailbench-tail-live")]
        dir: PathBuf,
    },
    /// One SQLite node, then 1, 2 and 3 PostgreSQL nodes against a throwaway PostgreSQL
    /// server: durable ingest, POST-to-socket latency and search, with the CPU per event and
    /// the chain lock's hold time.
    Cluster {
        /// PostgreSQL node counts after the SQLite node.
        #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
        nodes: Vec<usize>,
        /// Events sent as NDJSON batches of 1,000, per configuration.
        #[arg(long, default_value_t = 100_000)]
        events: u64,
        /// Events sent one per POST, per configuration.
        #[arg(long, default_value_t = 20_000)]
        singles: u64,
        /// WebSocket clients for the latency measurement.
        #[arg(long, default_value_t = 100)]
        clients: usize,
        /// Single-event POSTs a second for the latency measurement.
        #[arg(long, default_value_t = 1_000)]
        rate: u64,
        /// How long latency is measured.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Events in the store searched (0: no search).
        #[arg(long, default_value_t = 1_000_000)]
        search_events: u64,
        /// Runs of each search.
        #[arg(long, default_value_t = 20)]
        runs: usize,
        /// Where the servers' data, the PostgreSQL server and the searched store live.
        #[arg(long, default_value = "/tmp/trailbench-cluster")]
        dir: PathBuf,
    },
    /// The server the scenarios above start (this binary in a child process).
    #[command(hide = true)]
    ServeChild {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long, default_value_t = 4096)]
        live_queue: usize,
        /// Files to follow, as `trailwatch serve --tail`.
        #[arg(long = "tail")]
        tails: Vec<String>,
        /// A cluster node: the database, as `trailwatch serve --database`.
        #[arg(long)]
        database: Option<String>,
        #[arg(long)]
        node_name: Option<String>,
        #[arg(long)]
        cluster_key: Option<PathBuf>,
    },
    /// File tailing: how long a line written to a tailed file takes to be committed and
    /// published (with inotify, and by polling alone), and how fast a backlog is read.
    Tail {
        /// Single lines written, one at a time, per mode.
        #[arg(long, default_value_t = 200)]
        lines: usize,
        /// Lines of the backlog read at start.
        #[arg(long, default_value_t = 1_000_000)]
        backlog: usize,
        /// Where the databases and files live; emptied first.
        #[arg(long, default_value = "/tmp/trailbench-tail")]
        dir: PathBuf,
    },
}

/// A seeded xorshift generator, so every run builds the same data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Skewed towards small values, as word frequencies are: the minimum of two draws.
    fn skewed(&mut self, n: u64) -> u64 {
        self.below(n).min(self.below(n)).min(self.below(n))
    }
}

/// Pronounceable pseudo-words: a vocabulary of `n` distinct words.
fn vocabulary(n: usize) -> Vec<String> {
    const SYL: [&str; 24] = [
        "ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "pa", "qui", "bra", "den", "fil",
        "gor", "hul", "jen", "mar", "nox", "pel", "rin", "sor", "tam", "vex",
    ];
    let mut words = Vec::with_capacity(n);
    let mut i = 0usize;
    while words.len() < n {
        let (a, b, c) = (i % 24, (i / 24) % 24, (i / 576) % 24);
        words.push(format!(
            "{}{}{}",
            SYL[a],
            SYL[b],
            if i >= 576 { SYL[c] } else { "" }
        ));
        i += 1;
    }
    words
}

fn event(rng: &mut Rng, words: &[String], i: u64) -> AuditEvent {
    let actions = [
        "auth.login",
        "auth.logout",
        "file.read",
        "file.delete",
        "user.update",
        "config.update",
        "api.call",
        "payroll.export",
    ];
    let n = 6 + rng.below(8) as usize;
    let description = (0..n)
        .map(|_| words[rng.skewed(words.len() as u64) as usize].as_str())
        .collect::<Vec<_>>()
        .join(" ");
    let outcome = match rng.below(20) {
        0 => Outcome::Denied,
        1 | 2 => Outcome::Failure,
        _ => Outcome::Success,
    };
    AuditEvent {
        timestamp: DateTime::from_timestamp_millis(1_760_000_000_000 + i as i64 * 100).unwrap_or_default(),
        level: Level::ALL[rng.below(5) as usize],
        category: Category::ALL[rng.below(10) as usize],
        action: actions[rng.below(actions.len() as u64) as usize].to_string(),
        outcome,
        source: Source::http(),
        user: Actor {
            id: format!("u{}", rng.skewed(5_000)),
            username: None,
        },
        description: Some(description),
        entity: Some(Entity {
            kind: Some("document".into()),
            id: Some(format!("doc-{}", rng.below(100_000))),
            name: None,
        }),
        request: Some(RequestInfo {
            ip: Some(format!("10.0.{}.{}", rng.below(4), rng.below(64))),
            ..RequestInfo::default()
        }),
        location: Some(Location {
            country: Some(["DE", "FR", "US", "NL", "BR"][rng.skewed(5) as usize].to_string()),
            city: None,
        }),
        metadata: serde_json::json!({"ip": format!("10.{}.{}.{}", rng.below(4), rng.below(256), rng.below(256))})
            .as_object()
            .cloned(),
        changes: None,
        system: None,
        risk_score: Some(rng.below(101) as u8),
        risk_reasons: None,
        correlation_id: Some(format!("req-{}", i / 3)),
        session_id: None,
        submitted_by: None,
    }
}

/// Anonymous resident memory (heap and stacks), in KiB: what an export would grow if it
/// buffered. File-backed pages of the memory-mapped database are left out: they are cache
/// the kernel reclaims, and they grow with any read.
fn rss_kib() -> u64 {
    status_kib("self", "RssAnon:")
}

/// A `/proc/<pid>/status` field in KiB (`VmRSS:`, `RssAnon:`), 0 when unreadable.
fn status_kib(pid: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

async fn explorer(
    events: u64,
    dir: PathBuf,
    runs: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(&dir)?;
    let options = StoreOptions {
        durable: false,
        ..StoreOptions::default()
    };
    let store = Store::open(&dir, options)?;
    let words = vocabulary(3_000);
    fill_to(
        &store,
        events,
        0x5EED,
        "store only, full-text index included, fsync off",
        event,
    )
    .await?;
    println!("store holds {} events", store.head().await?.0);

    // The first word is common, the second mid-frequency, the third rare.
    let (common, mid, rare) = (&words[0], &words[300], &words[2_900]);
    let cases: Vec<(&str, EventFilter)> = vec![
        ("common word", q(common)),
        ("mid-frequency word", q(mid)),
        ("rare word", q(rare)),
        ("word prefix", q(&common[..3])),
        (
            "two-word phrase",
            q(&format!("\"{} {}\"", words[0], words[1])),
        ),
        ("word + level:error", q(&format!("{mid} level:error"))),
        (
            "word + outcome:denied + risk>70",
            q(&format!("{common} outcome:denied risk>70")),
        ),
        ("word and negated word", q(&format!("{mid} -{common}"))),
        ("user:u42 (field only)", q("user:u42")),
        (
            "outcome:denied risk>90 (no text)",
            q("outcome:denied risk>90"),
        ),
        (
            "rare word, last 10% of time",
            EventFilter {
                start_date: DateTime::from_timestamp_millis(
                    1_760_000_000_000 + (events as i64 * 90),
                ),
                ..q(rare)
            },
        ),
    ];
    println!("\nfirst page (100 rows, count capped at 10,000), {runs} runs each:");
    println!("| query | matches | p50 ms | p95 ms | max ms |");
    println!("|---|---:|---:|---:|---:|");
    for (name, filter) in cases {
        let query = filter.compile()?;
        let mut times = Vec::with_capacity(runs);
        let mut total = 0;
        let mut capped = false;
        for _ in 0..runs {
            let req = PageRequest {
                order: trailwatch::model::EventOrder::ARRIVAL,
                cursor: None,
                page: 1,
                limit: 100,
                count_limit: Some(10_000),
            };
            let t = Instant::now();
            let page = store.query(query.clone(), req).await?;
            times.push(t.elapsed());
            total = page.total;
            capped = page.total_is_lower_bound;
        }
        let plus = if capped { "+" } else { "" };
        search_row(name, &format!("{total}{plus}"), &mut times);
    }

    println!("\nexport of every event as CSV (discarded as it streams):");
    let before = rss_kib();
    let t = Instant::now();
    let samples: Vec<u64> = Vec::new();
    let (writer, samples, bytes) = store
        .for_each_matching(
            EventFilter::default().compile()?,
            trailwatch::model::EventOrder::ARRIVAL,
            (
                ExportWriter::new(ExportFormat::Csv, 64 * 1024),
                samples,
                0_u64,
            ),
            |(writer, samples, bytes), event| {
                if let Some(chunk) = writer.push(event) {
                    *bytes += chunk.len() as u64;
                }
                if writer.rows() % 100_000 == 0 {
                    samples.push(rss_kib());
                }
                true
            },
        )
        .await?;
    let rows = writer.rows();
    let bytes = bytes + writer.finish().len() as u64;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{rows} rows, {:.0} MiB in {secs:.2} s ({:.0} rows/s); anonymous RSS before {} MiB, every 100k rows: {:?} MiB",
        bytes as f64 / 1048576.0,
        rows as f64 / secs,
        before / 1024,
        samples.iter().map(|k| k / 1024).collect::<Vec<_>>()
    );

    let conn = rusqlite::Connection::open(dir.join(DB_FILE))?;
    let mut stmt = conn.prepare("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name")?;
    let sizes: Vec<(String, i64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let sum = |keep: &dyn Fn(&str) -> bool| -> u64 {
        sizes
            .iter()
            .filter(|(n, _)| keep(n))
            .map(|(_, s)| (*s).max(0) as u64)
            .sum()
    };
    let total = sum(&|_| true);
    let table = sum(&|n| n == "events");
    let fts = sum(&|n| n.starts_with("events_fts"));
    let indexes = sum(&|n| {
        (n.starts_with("events_") && !n.starts_with("events_fts"))
            || n.starts_with("sqlite_autoindex_events")
    });
    let mib = |b: u64| {
        format!(
            "{:.0} MiB ({:.0} B/event)",
            b as f64 / 1048576.0,
            b as f64 / events as f64
        )
    };
    println!(
        "\nsizes: database {}; events table {}; b-tree indexes {}; full-text index {}",
        mib(total),
        mib(table),
        mib(indexes),
        mib(fts)
    );
    Ok(())
}

/// What the ingest bench sends.
struct Load {
    events: u64,
    batch: usize,
    producers: usize,
    users: u64,
    sender_scores: bool,
}

async fn ingest(load: Load, durable: bool, dir: PathBuf) -> Result<(), Box<dyn std::error::Error>> {
    let Load {
        events,
        batch,
        producers,
        users,
        sender_scores,
    } = load;
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    let store = Store::open(
        &dir,
        StoreOptions {
            durable,
            index_wait: Duration::from_secs(3600),
            ..StoreOptions::default()
        },
    )?;
    // Generated before the clock starts: the bench measures the store, not the generator.
    let words = vocabulary(3_000);
    let mut rng = Rng(0x5EED);
    let mut batches: std::collections::VecDeque<Vec<AuditEvent>> = Default::default();
    let mut i = 0;
    while i < events {
        let n = (events - i).min(batch as u64);
        batches.push_back(
            (i..i + n)
                .map(|k| {
                    let mut e = event(&mut rng, &words, k);
                    e.user.id = format!("u{}", rng.skewed(users.max(1)));
                    if !sender_scores {
                        e.risk_score = None;
                    }
                    e
                })
                .collect(),
        );
        i += n;
    }
    let queue = std::sync::Arc::new(std::sync::Mutex::new(batches));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..producers.max(1) {
        let (store, queue) = (store.clone(), queue.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let next = queue.lock().ok().and_then(|mut q| q.pop_front());
                let Some(batch) = next else { break };
                store.append(batch).await?;
            }
            Ok::<_, trailwatch::store::StoreError>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    let stats = store.stats();
    println!(
        "ingest: {events} events in {secs:.2} s = {:.0} events/s ({} commits, batch {batch}, \
         {producers} producers, {users} users, fsync {}, scored {})",
        events as f64 / secs,
        stats.commits,
        if durable { "on" } else { "off" },
        if sender_scores {
            "by the sender"
        } else {
            "at ingest"
        }
    );
    // The search index trails the appends; a text query waits for it. Measured by asking
    // one, which returns once the index covers the head.
    let probe = EventFilter {
        q: Some(words[0].clone()),
        ..EventFilter::default()
    }
    .compile()?;
    let page = store
        .query(
            probe,
            PageRequest {
                order: trailwatch::model::EventOrder::ARRIVAL,
                cursor: None,
                page: 1,
                limit: 1,
                count_limit: Some(1),
            },
        )
        .await?;
    let indexed = started.elapsed().as_secs_f64();
    println!(
        "search index caught up {:.2} s after the last append ({:.0} events/s end to end){}",
        indexed - secs,
        events as f64 / indexed,
        if page.search_indexed_through.is_some() {
            " — NOT caught up within the wait"
        } else {
            ""
        }
    );
    // Wall-clock rates move with this machine's disk and neighbours; the CPU each thread
    // spent per event does not, so changes are compared by it.
    for (thread, cpu) in thread_cpu() {
        println!(
            "  {thread}: {:.1} µs of CPU per event",
            cpu.as_secs_f64() * 1e6 / events as f64
        );
    }
    Ok(())
}

/// CPU time (user + system) of this process's named threads, from `/proc` (Linux only;
/// empty elsewhere).
fn thread_cpu() -> Vec<(String, Duration)> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        // "tid (name) state ..." — the name may hold spaces, so split at its last ')'.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = &stat[open + 1..close];
        if !name.starts_with("trailwatch-") || name.starts_with("trailwatch-benc") {
            continue;
        }
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the whole line, in clock ticks (100 Hz).
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let cpu = Duration::from_millis((ticks(11) + ticks(12)) * 10);
        out.push((name.to_string(), cpu));
    }
    out.sort();
    out
}

async fn analytics(
    events: u64,
    users: u64,
    days: u64,
    dir: PathBuf,
    runs: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    use trailwatch::analytics::AnomalyConfig;
    use trailwatch::insights::{last_hours, Analytics};
    let store = fill_spread(&dir, events, users, days, false).await?;
    let rows = |table: &str| -> Result<i64, rusqlite::Error> {
        rusqlite::Connection::open(dir.join(DB_FILE))?.query_row(
            &format!("SELECT COUNT(*) FROM {table}"),
            [],
            |r| r.get(0),
        )
    };
    println!(
        "store holds {} events; rollup rows: {} minute, {} hour-by-dimension, {} hour-by-user",
        store.head().await?.0,
        rows("rollup_minute")?,
        rows("rollup_hour")?,
        rows("rollup_user_hour")?
    );
    let service = Analytics::new(store.clone(), AnomalyConfig::default(), chrono_tz::Tz::UTC);
    // As the server does: the burst tracker follows the commits, and answers wait for it.
    service.watch();
    tokio::task::yield_now().await;
    let viewer: chrono_tz::Tz = "Europe/Berlin".parse().map_err(|_| "zone")?;
    let mut both = Vec::with_capacity(runs);
    let mut summaries = Vec::with_capacity(runs);
    let mut overview = Vec::with_capacity(runs);
    for _ in 0..runs {
        let now = chrono::Utc::now().timestamp_millis();
        let t = Instant::now();
        let summary = service.summary(last_hours(24, now), now).await?;
        summaries.push(t.elapsed());
        let insights = service.insights(viewer, now).await?;
        both.push(t.elapsed());
        assert!(summary.total_actions > 0 && !insights.heatmap.days.is_empty());
        let t = Instant::now();
        service
            .overview(last_hours(24 * 30, now), viewer, now)
            .await?;
        overview.push(t.elapsed());
    }
    both.sort();
    summaries.sort();
    overview.sort();
    println!(
        "summary alone: p50 {} ms, p95 {} ms",
        ms(percentile(&summaries, 0.5)),
        ms(percentile(&summaries, 0.95))
    );
    println!(
        "summary + insights: p50 {} ms, p95 {} ms, max {} ms ({runs} runs)",
        ms(percentile(&both, 0.5)),
        ms(percentile(&both, 0.95)),
        ms(percentile(&both, 1.0))
    );
    println!(
        "dashboard overview, 30-day range (adds statistics and the timeline): p50 {} ms, p95 {} ms",
        ms(percentile(&overview, 0.5)),
        ms(percentile(&overview, 0.95))
    );
    Ok(())
}

/// Opens the store in `dir` and, unless it already holds `events`, appends the rest: the
/// synthetic events, their times spread evenly over the `days` days before now, their actors
/// over `users` skewed ones.
async fn fill_spread(
    dir: &Path,
    events: u64,
    users: u64,
    days: u64,
    shuffled: bool,
) -> Result<Store, Box<dyn std::error::Error>> {
    std::fs::create_dir_all(dir)?;
    let store = Store::open(
        dir,
        StoreOptions {
            durable: false,
            index_wait: Duration::from_secs(3600),
            ..StoreOptions::default()
        },
    )?;
    let now = chrono::Utc::now().timestamp_millis();
    let span = (days.max(1) * 24 * 3_600_000) as i64;
    let start = now - span;
    let label = format!("with rollups, {users} users, fsync off");
    fill_to(&store, events, 0xA11A, &label, |rng, words, k| {
        let mut e = event(rng, words, k);
        let at = match shuffled {
            true => start + rng.below(span as u64) as i64,
            false => start + (k as i128 * span as i128 / events as i128) as i64,
        };
        e.timestamp = DateTime::from_timestamp_millis(at).unwrap_or_default();
        e.user.id = format!("u{}", rng.skewed(users.max(1)));
        e
    })
    .await?;
    Ok(store)
}

/// Appends what `store` lacks of `events`, the `k`th made by `make` (with a generator seeded
/// from `seed` and where the store stood), in batches of 5,000; prints the rate.
async fn fill_to(
    store: &Store,
    events: u64,
    seed: u64,
    label: &str,
    mut make: impl FnMut(&mut Rng, &[String], u64) -> AuditEvent,
) -> Result<(), Box<dyn std::error::Error>> {
    let have = store.head().await?.0;
    if have >= events {
        return Ok(());
    }
    let words = vocabulary(3_000);
    let mut rng = Rng(seed ^ have.max(1));
    let started = Instant::now();
    let mut i = have;
    while i < events {
        let n = (events - i).min(5_000);
        let batch: Vec<AuditEvent> = (i..i + n).map(|k| make(&mut rng, &words, k)).collect();
        store.append(batch).await?;
        i += n;
        if i % 1_000_000 == 0 {
            eprintln!("  {i} events stored");
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "ingest ({label}): {:.0} events/s",
        (events - have) as f64 / secs
    );
    Ok(())
}

/// One row of a search table: the query, its total, and the p50, p95 and max of `times`.
fn search_row(name: &str, total: &str, times: &mut [Duration]) {
    times.sort();
    println!(
        "| {name} | {total} | {} | {} | {} |",
        ms(percentile(times, 0.5)),
        ms(percentile(times, 0.95)),
        ms(percentile(times, 1.0))
    );
}

fn q(text: &str) -> EventFilter {
    EventFilter {
        q: Some(text.to_string()),
        ..EventFilter::default()
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    match Cli::parse().command {
        Command::Explorer { events, dir, runs } => explorer(events, dir, runs).await,
        Command::Ingest {
            events,
            batch,
            producers,
            durable,
            users,
            sender_scores,
            dir,
        } => {
            let load = Load {
                events,
                batch,
                producers,
                users,
                sender_scores,
            };
            ingest(load, durable, dir).await
        }
        Command::Analytics {
            events,
            users,
            days,
            dir,
            runs,
        } => analytics(events, users, days, dir, runs).await,
        Command::Tail {
            lines,
            backlog,
            dir,
        } => tail(lines, backlog, dir).await,
        Command::Http {
            events,
            batch,
            batch_connections,
            singles,
            single_connections,
            dated,
            dir,
        } => server::http_ingest(
            dir,
            events,
            batch,
            batch_connections,
            singles,
            single_connections,
            dated,
        )
        .await
        .map_err(unsend),
        Command::Live {
            clients,
            rate,
            seconds,
            stalled,
            dir,
        } => server::live(dir, clients, rate, seconds, stalled)
            .await
            .map_err(unsend),
        Command::Memory { clients, dir } => server::memory(dir, clients).await.map_err(unsend),
        Command::Queries {
            events,
            runs,
            dir,
            shuffled,
            rest_runs,
        } => server::queries(dir, events, runs, rest_runs.unwrap_or(runs), shuffled)
            .await
            .map_err(unsend),
        Command::Parse {
            events,
            batch,
            runs,
        } => server::parse(events, batch, runs).map_err(unsend),
        Command::Size { site_root } => server::size(site_root).map_err(unsend),
        Command::TailLive { lines, dir } => server::tail_live(dir, lines).await.map_err(unsend),
        Command::Cluster {
            nodes,
            events,
            singles,
            clients,
            rate,
            seconds,
            search_events,
            runs,
            dir,
        } => cluster::cluster(cluster::Plan {
            dir,
            nodes,
            events,
            singles,
            clients,
            rate,
            seconds,
            search_events,
            runs,
        })
        .await
        .map_err(unsend),
        Command::ServeChild {
            data_dir,
            live_queue,
            tails,
            database,
            node_name,
            cluster_key,
        } => {
            let cluster = database.map(|url| trailwatch::site::ClusterConfig {
                url,
                node: node_name,
                key_file: cluster_key,
            });
            server::serve_child(data_dir, live_queue, tails, cluster)
                .await
                .map_err(unsend)
        }
    }
}

/// The server scenarios' errors cross tasks, so they are `Send + Sync`; `main` takes any.
fn unsend(e: Box<dyn std::error::Error + Send + Sync>) -> Box<dyn std::error::Error> {
    e
}

/// See [`Command::Tail`].
async fn tail(
    lines: usize,
    backlog: usize,
    dir: PathBuf,
) -> Result<(), Box<dyn std::error::Error>> {
    use std::io::Write as _;
    use trailwatch::tail::{TailOptions, TailSpec, Tailers};
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let line = |i: usize| {
        format!("{{\"userId\":\"u{}\",\"action\":\"file.read\",\"allowed\":true,\"description\":\"line {i}\"}}\n", i % 500)
    };
    let modes = [
        ("inotify", TailOptions::default()),
        (
            "polling only (1 s)",
            TailOptions {
                notify: false,
                ..TailOptions::default()
            },
        ),
    ];
    for (name, options) in modes {
        let here = dir.join(name.split_whitespace().next().unwrap_or("mode"));
        std::fs::create_dir_all(&here)?;
        let store = Store::open(&here.join("data"), StoreOptions::default())?;
        let path = here.join("audit.jsonl");
        let mut file = std::fs::File::create(&path)?;
        let spec: TailSpec = path.to_string_lossy().parse()?;
        let tailers = Tailers::start(&store, &[spec], &options, tokio::runtime::Handle::current())?;
        let mut commits = store.subscribe();
        // Polling alone takes up to a second a line; fewer lines say as much.
        let n = if options.notify { lines } else { lines.min(20) };
        let mut waits = Vec::with_capacity(n);
        for i in 0..n {
            if !options.notify {
                // Written at spread points of the poll's cycle: right after a commit the
                // tailer is still awake and would catch every line at once.
                let phase = options.poll.mul_f64(((i * 7) % n) as f64 / n as f64);
                tokio::time::sleep(phase).await;
            }
            let start = Instant::now();
            file.write_all(line(i).as_bytes())?;
            commits.recv().await?;
            waits.push(start.elapsed());
        }
        waits.sort();
        println!(
            "{name}: write to committed and published, {n} lines one at a time (fsync included): \
             p50 {} ms, p99 {} ms, max {} ms",
            ms(percentile(&waits, 0.50)),
            ms(percentile(&waits, 0.99)),
            ms(waits[waits.len() - 1])
        );
        tokio::task::spawn_blocking(move || tailers.stop()).await?;
    }

    let here = dir.join("backlog");
    std::fs::create_dir_all(&here)?;
    let path = here.join("audit.jsonl");
    {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
        for i in 0..backlog {
            out.write_all(line(i).as_bytes())?;
        }
        out.flush()?;
    }
    let bytes = std::fs::metadata(&path)?.len();
    let store = Store::open(&here.join("data"), StoreOptions::default())?;
    let mut head = store.head_watch();
    let spec: TailSpec = path.to_string_lossy().parse()?;
    let start = Instant::now();
    let tailers = Tailers::start(
        &store,
        &[spec],
        &TailOptions::default(),
        tokio::runtime::Handle::current(),
    )?;
    head.wait_for(|h| *h >= backlog as u64).await?;
    let took = start.elapsed();
    println!(
        "backlog: {backlog} lines ({:.1} MiB) read, parsed and committed in {:.2} s: {:.0} lines/s",
        bytes as f64 / 1048576.0,
        took.as_secs_f64(),
        backlog as f64 / took.as_secs_f64()
    );
    tokio::task::spawn_blocking(move || tailers.stop()).await?;
    Ok(())
}
