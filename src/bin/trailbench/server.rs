//! The scenarios that drive a real server: this binary started again as `trailbench
//! serve-child` (the same `Server` as `trailwatch serve`, with its allocator), in its own
//! process with a fresh data directory, so its memory is measured alone; the bench process
//! holds only the clients. Real HTTP (reqwest) and real WebSockets (tokio-tungstenite) over
//! 127.0.0.1.

use super::{event, ms, percentile, status_kib, vocabulary, Rng};
use futures::{SinkExt, StreamExt};
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use trailwatch::ingest;
use trailwatch::model::{AuditEvent, Category, EventFilter, EventOrder, Level};
use trailwatch::site::Server;
use trailwatch::site::{ClusterConfig, ServeConfig};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const TOKEN: &str = "trailbench-admin-token";

/// The child's side: serve until the parent closes our stdin (or dies), then stop cleanly.
/// A `stats` line on stdin is answered on stdout with how long this node's appends held the
/// chain's lock (a cluster node; zeros on SQLite, which has no such lock).
pub async fn serve_child(
    data_dir: PathBuf,
    live_queue: usize,
    tails: Vec<String>,
    cluster: Option<ClusterConfig>,
) -> Result<(), BoxError> {
    let config = ServeConfig {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        max_body_bytes: 64 * 1024 * 1024,
        live_queue,
        admin_token: Some(TOKEN.to_string()),
        tails,
        // One token sends everything here; the per-credential request limit (1,000/s by
        // default) would measure the limiter, not the server.
        limits: trailwatch::server::limits::LimitsConfig {
            ingest_per_second: 0.0,
            ingest_burst: 0,
            ..Default::default()
        },
        cluster,
        ..ServeConfig::defaults(data_dir)
    };
    let server = Server::bind(&config).await?;
    println!("listening {}", server.local_addr()?);
    let store = server.state.store.clone();
    let stdin_closed = async move {
        let _ = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            while std::io::stdin()
                .lock()
                .read_line(&mut line)
                .is_ok_and(|n| n > 0)
            {
                if line.trim() == "stats" {
                    let held = store
                        .postgres()
                        .map(|log| log.lock_held())
                        .unwrap_or_default();
                    println!(
                        "held {} {} {} {}",
                        held.batches,
                        held.events,
                        held.total.as_micros(),
                        held.longest.as_micros()
                    );
                }
                line.clear();
            }
        })
        .await;
    };
    server.serve(stdin_closed).await?;
    Ok(())
}

/// A server in a child process, stopped (cleanly) when dropped.
pub struct Served {
    child: Child,
    /// The child's stdout after its `listening` line: its answers to `stats`.
    replies: std::io::BufReader<std::process::ChildStdout>,
    pub addr: SocketAddr,
    pub dir: PathBuf,
}

/// How long a node's appending transactions held the chain's lock (see `serve_child`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Held {
    pub batches: u64,
    pub events: u64,
    pub total: Duration,
    pub longest: Duration,
}

impl Served {
    pub fn start(dir: &Path, live_queue: usize) -> Result<Served, BoxError> {
        Self::start_tailing(dir, live_queue, None)
    }

    /// [`Served::start`], following the JSONL file `tail` as `--tail` does.
    pub fn start_tailing(
        dir: &Path,
        live_queue: usize,
        tail: Option<&Path>,
    ) -> Result<Served, BoxError> {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir)?;
        let mut args = Vec::new();
        if let Some(tail) = tail {
            args.push("--tail".into());
            args.push(tail.as_os_str().to_owned());
        }
        Self::spawn(dir, live_queue, &args)
    }

    /// A server on the data `dir` already holds, kept as it is.
    pub fn open(dir: &Path) -> Result<Served, BoxError> {
        Self::spawn(dir, 4096, &[])
    }

    /// A node named `node` of the cluster whose database is `url`, signing with `key`; its
    /// own data directory `dir` is emptied first.
    pub fn node(dir: &Path, url: &str, node: &str, key: &Path) -> Result<Served, BoxError> {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir)?;
        let args = [
            "--database".into(),
            url.into(),
            "--node-name".into(),
            node.into(),
            "--cluster-key".into(),
            key.as_os_str().to_owned(),
        ];
        Self::spawn(dir, 4096, &args)
    }

    fn spawn(
        dir: &Path,
        live_queue: usize,
        args: &[std::ffi::OsString],
    ) -> Result<Served, BoxError> {
        let mut command = Command::new(std::env::current_exe()?);
        command
            .args(["serve-child", "--data-dir"])
            .arg(dir)
            .args(["--live-queue", &live_queue.to_string()])
            .args(args);
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .env("TRAILWATCH_LOG", "warn")
            .env("LEPTOS_OUTPUT_NAME", "trailwatch")
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut replies = std::io::BufReader::new(stdout);
        let mut line = String::new();
        replies.read_line(&mut line)?;
        let addr = line
            .trim()
            .strip_prefix("listening ")
            .ok_or_else(|| format!("the server said {line:?}"))?
            .parse()?;
        Ok(Served {
            child,
            replies,
            addr,
            dir: dir.to_path_buf(),
        })
    }

    /// Waits until the server's chain check has finished its first pass, as
    /// `GET /api/v1/chain` reports it.
    pub async fn chain_checked(&self, client: &reqwest::Client) -> Result<(), BoxError> {
        loop {
            let status: trailwatch::model::ChainStatus = client
                .get(self.url("/api/v1/chain"))
                .bearer_auth(TOKEN)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            if status.checked_at.is_some() {
                return Ok(());
            }
            // The check publishes no event a client can await; asking four times a second
            // is cheap next to a walk of seconds.
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The server process's CPU time so far, user and system.
    pub fn cpu(&self) -> Duration {
        process_cpu(self.child.id(), false)
    }

    /// How long this node's appends have held the chain's lock so far.
    pub fn lock_held(&mut self) -> Result<Held, BoxError> {
        use std::io::Write;
        let stdin = self.child.stdin.as_mut().ok_or("the server is stopping")?;
        writeln!(stdin, "stats")?;
        stdin.flush()?;
        let mut line = String::new();
        self.replies.read_line(&mut line)?;
        let numbers: Vec<u64> = line
            .trim()
            .strip_prefix("held ")
            .ok_or_else(|| format!("the server said {line:?}"))?
            .split(' ')
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        let [batches, events, total, longest] = numbers[..] else {
            return Err(format!("the server said {line:?}").into());
        };
        Ok(Held {
            batches,
            events,
            total: Duration::from_micros(total),
            longest: Duration::from_micros(longest),
        })
    }

    /// The server process's resident memory in KiB: all of it (`VmRSS`, what the machine
    /// must have) and the anonymous part (`RssAnon`: heap and stacks, without the pages of
    /// the memory-mapped database, which are cache the kernel may drop).
    pub fn rss_kib(&self) -> (u64, u64) {
        let pid = self.child.id().to_string();
        (status_kib(&pid, "VmRSS:"), status_kib(&pid, "RssAnon:"))
    }

    /// Bytes of the data directory's database files (events, search index, write-ahead logs).
    pub fn database_bytes(&self) -> u64 {
        std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains(".db"))
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A POST of `body` to ingest with the admin token.
    fn ingest(
        &self,
        client: &reqwest::Client,
        content_type: &'static str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::RequestBuilder {
        client
            .post(self.url("/api/v1/events"))
            .bearer_auth(TOKEN)
            .header("Content-Type", content_type)
            .body(body)
    }

    fn ws_url(&self) -> String {
        format!("ws://{}/ws/audit?token={TOKEN}", self.addr)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        // Closing stdin asks for a clean stop; the wait keeps the next run's port and files
        // from racing this one's.
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// How scenario 1's events are dated, which decides how many pages each commit dirties: the
/// rollups and the time index are ordered by time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Dated {
    /// Over the last 30 days, most in office hours on weekdays: a backfill or import, where
    /// each event of a commit lands on rollup and index pages of its own.
    Spread,
    /// Within the second before they were made, as events arrive from running applications.
    Live,
}

/// Realistic events: the synthetic ones of the store benches, with metadata of 0 to 12 keys,
/// dated as `dated` says.
fn realistic(rng: &mut Rng, words: &[String], i: u64, now_ms: i64, dated: Dated) -> AuditEvent {
    let mut e = event(rng, words, i);
    e.timestamp = chrono::DateTime::from_timestamp_millis(match dated {
        Dated::Spread => spread(rng, now_ms),
        Dated::Live => now_ms - rng.below(1_000) as i64,
    })
    .unwrap_or_default();
    let mut metadata = serde_json::Map::new();
    for k in 0..rng.below(13) {
        let len = 1 + rng.skewed(200) as usize;
        metadata.insert(format!("k{k}"), "v".repeat(len).into());
    }
    e.metadata = Some(metadata);
    e
}

/// A time in the last 30 days, 80% in office hours, weekends keeping a tenth of their events.
fn spread(rng: &mut Rng, now_ms: i64) -> i64 {
    let day = rng.below(30) as i64;
    let hour = if rng.below(10) < 8 {
        8 + rng.below(10) as i64
    } else {
        rng.below(24) as i64
    };
    let mut at = now_ms - (day + 1) * 86_400_000;
    at = at - at.rem_euclid(86_400_000) + hour * 3_600_000 + rng.below(3_600_000) as i64;
    // Weekends (1970-01-01 was a Thursday) keep a tenth of their events.
    let weekday = (at.div_euclid(86_400_000) + 4).rem_euclid(7);
    if (weekday == 0 || weekday == 6) && rng.below(10) != 0 {
        at -= 2 * 86_400_000;
    }
    at
}

/// What ingest takes: the event's JSON without the fields the server assigns.
fn ingest_json(e: &AuditEvent) -> Result<String, BoxError> {
    let mut v = serde_json::to_value(e)?;
    if let Some(o) = v.as_object_mut() {
        o.remove("source");
    }
    Ok(v.to_string())
}

fn http_client(connections: usize) -> Result<reqwest::Client, BoxError> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build()?)
}

/// Posts `bodies` over `connections` concurrent connections as fast as they are acknowledged;
/// returns the events acknowledged and the wall-clock time.
/// Connection `i` posts to `nodes[i % nodes.len()]`.
pub async fn post_all(
    nodes: &[&Served],
    bodies: Vec<(Vec<u8>, usize)>,
    content_type: &'static str,
    connections: usize,
) -> Result<(u64, Duration), BoxError> {
    let client = http_client(connections)?;
    let queue = Arc::new(std::sync::Mutex::new(bodies));
    let urls: Vec<String> = nodes.iter().map(|n| n.url("/api/v1/events")).collect();
    let started = Instant::now();
    let workers: Vec<_> = (0..connections)
        .map(|i| {
            let url = urls[i % urls.len()].clone();
            let (client, queue) = (client.clone(), queue.clone());
            tokio::spawn(async move {
                let mut acknowledged = 0u64;
                loop {
                    let next = queue.lock().ok().and_then(|mut q| q.pop());
                    let Some((body, n)) = next else {
                        return Ok::<u64, BoxError>(acknowledged);
                    };
                    let r = client
                        .post(&url)
                        .bearer_auth(TOKEN)
                        .header("Content-Type", content_type)
                        .body(body)
                        .send()
                        .await?;
                    if r.status() != reqwest::StatusCode::CREATED {
                        return Err(format!("{}: {}", r.status(), r.text().await?).into());
                    }
                    acknowledged += n as u64;
                }
            })
        })
        .collect();
    let mut total = 0;
    for w in workers {
        total += w.await??;
    }
    Ok((total, started.elapsed()))
}

/// The NDJSON bodies scenario 1 sends: `events` realistic events in bodies of `batch`.
pub fn ndjson_bodies(
    rng: &mut Rng,
    words: &[String],
    now: i64,
    events: u64,
    batch: usize,
    dated: Dated,
) -> Result<Vec<(Vec<u8>, usize)>, BoxError> {
    let lines: Vec<String> = (0..events)
        .map(|i| ingest_json(&realistic(rng, words, i, now, dated)))
        .collect::<Result<_, _>>()?;
    Ok(lines
        .chunks(batch)
        .map(|c| (c.join("\n").into_bytes(), c.len()))
        .collect())
}

/// The request worker's share of scenario 1: [`ingest::parse_body`] over its NDJSON bodies,
/// on this thread. The parsed events are dropped here too, as the writer would drop them.
pub fn parse(events: u64, batch: usize, runs: usize) -> Result<(), BoxError> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let now = chrono::Utc::now().timestamp_millis();
    let bodies = ndjson_bodies(
        &mut rng,
        &vocabulary(3_000),
        now,
        events,
        batch,
        Dated::Spread,
    )?;
    let bytes: usize = bodies.iter().map(|(b, _)| b.len()).sum();
    let source = trailwatch::model::Source::http();
    let mut best = Duration::MAX;
    for _ in 0..runs.max(1) {
        let started = Instant::now();
        let mut parsed = 0usize;
        for (body, _) in &bodies {
            let now = chrono::Utc::now();
            let events = ingest::parse_body(body, ingest::BodyFormat::Ndjson, &source, now)
                .map_err(|e| format!("{e:?}"))?;
            parsed += events.len();
        }
        let took = started.elapsed();
        if parsed as u64 != events {
            return Err(format!("parsed {parsed} of {events} events").into());
        }
        best = best.min(took);
    }
    println!(
        "parse {events} events ({:.0} MiB of NDJSON, {batch} per body), best of {runs}: \
         {:.2} µs/event, {:.0} events/s, {:.0} MiB/s on one thread",
        bytes as f64 / 1048576.0,
        best.as_secs_f64() * 1e6 / events as f64,
        events as f64 / best.as_secs_f64(),
        bytes as f64 / 1048576.0 / best.as_secs_f64()
    );
    Ok(())
}

/// Scenario 1 (and the database's bytes per event): NDJSON batches, then single-event POSTs.
pub async fn http_ingest(
    dir: PathBuf,
    events: u64,
    batch: usize,
    batch_connections: usize,
    singles: u64,
    single_connections: usize,
    dated: Dated,
) -> Result<(), BoxError> {
    let words = vocabulary(3_000);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let now = chrono::Utc::now().timestamp_millis();
    let bodies = ndjson_bodies(&mut rng, &words, now, events, batch, dated)?;
    let bytes: usize = bodies.iter().map(|(b, _)| b.len()).sum();

    let served = Served::start(&dir, 4096)?;
    let (acknowledged, took) = post_all(
        &[&served],
        bodies,
        "application/x-ndjson",
        batch_connections,
    )
    .await?;
    let rate = acknowledged as f64 / took.as_secs_f64();
    println!(
        "NDJSON, {batch}-event batches over {batch_connections} connections: {acknowledged} events \
         ({:.0} MiB) acknowledged in {:.2} s: {rate:.0} events/s",
        bytes as f64 / 1048576.0,
        took.as_secs_f64()
    );
    // Let the indexer finish before sizing the files.
    let client = http_client(1)?;
    let _ = client
        .get(served.url("/api/v1/events?search_query=zzzz&limit=1"))
        .bearer_auth(TOKEN)
        .send()
        .await?;
    let db = served.database_bytes();
    println!(
        "database files after {acknowledged} events: {:.1} MiB, {} bytes per event",
        db as f64 / 1048576.0,
        db / acknowledged.max(1)
    );
    drop(served);

    let singles_bodies: Vec<(Vec<u8>, usize)> = (0..singles)
        .map(|i| {
            Ok((
                ingest_json(&realistic(&mut rng, &words, i, now, dated))?.into_bytes(),
                1,
            ))
        })
        .collect::<Result<_, BoxError>>()?;
    let served = Served::start(&dir, 4096)?;
    let (acknowledged, took) = post_all(
        &[&served],
        singles_bodies,
        "application/json",
        single_connections,
    )
    .await?;
    println!(
        "single-event POSTs over {single_connections} connections: {acknowledged} acknowledged in \
         {:.2} s: {:.0} events/s",
        took.as_secs_f64(),
        acknowledged as f64 / took.as_secs_f64()
    );
    Ok(())
}

/// Opens a socket and reads through `ready`. A `stalled` one gets a 4 KiB receive buffer and
/// is never read again by its caller.
async fn subscribe(
    served: &Served,
    stalled: bool,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    BoxError,
> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    if stalled {
        socket.set_recv_buffer_size(4096)?;
    }
    let stream = socket.connect(served.addr).await?;
    let (mut ws, _) = tokio_tungstenite::client_async(
        served.ws_url(),
        tokio_tungstenite::MaybeTlsStream::Plain(stream),
    )
    .await?;
    // As the dashboard does; without it the server waits 300 ms for one before sending the
    // default backlog.
    ws.send(Message::Text(r#"{"type":"subscribe","sinceSeq":0}"#.into()))
        .await?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.contains("\"type\":\"ready\"") => return Ok(ws),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => return Err("closed before ready".into()),
        }
    }
}

/// The number after `"description":"lat-` in an event frame: which post it was.
fn marker(text: &str) -> Option<usize> {
    let at = text.find("\"description\":\"lat-")? + "\"description\":\"lat-".len();
    let digits = text[at..].bytes().take_while(u8::is_ascii_digit).count();
    text[at..at + digits].parse().ok()
}

/// Scenario 2: latency from just before each POST to its arrival on every client, at `rate`
/// single-event POSTs a second for `seconds`, with `stalled` clients that never read.
pub async fn live(
    dir: PathBuf,
    clients: Vec<usize>,
    rate: u64,
    seconds: u64,
    stalled: usize,
) -> Result<(), BoxError> {
    println!("| clients | stalled | events | delivered | p50 ms | p99 ms | max ms |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for &n in &clients {
        let served = Served::start(&dir, 4096)?;
        let row = latency(&[&served], n, rate, seconds, stalled).await?;
        println!("| {n} | {stalled} | {row} |");
    }
    Ok(())
}

/// What [`latency`] measured.
pub struct Latency {
    pub created: usize,
    /// Deliveries received over deliveries owed (every created event to every client).
    pub delivered: f64,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl std::fmt::Display for Latency {
    /// `events | delivered | p50 | p99 | max`, as a table's cells.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} | {:.1}% | {} | {} | {}",
            self.created,
            100.0 * self.delivered,
            ms(self.p50),
            ms(self.p99),
            ms(self.max)
        )
    }
}

/// `clients` sockets, the `j`th on `nodes[j % nodes.len()]`, plus `stalled` ones on the first
/// node; then `rate` single-event POSTs a second for `seconds`, the `i`th to
/// `nodes[i % nodes.len()]`, each timed from just before it is sent to its arrival on every
/// client.
pub async fn latency(
    nodes: &[&Served],
    clients: usize,
    rate: u64,
    seconds: u64,
    stalled: usize,
) -> Result<Latency, BoxError> {
    let total = (rate * seconds) as usize;
    let sent: Arc<Vec<AtomicU64>> = Arc::new((0..total).map(|_| AtomicU64::new(0)).collect());
    let mut stalled_sockets = Vec::new();
    for _ in 0..stalled {
        stalled_sockets.push(subscribe(nodes[0], true).await?);
    }
    let mut sockets = Vec::with_capacity(clients);
    while sockets.len() < clients {
        let want = (clients - sockets.len()).min(200);
        let at = sockets.len();
        let opened = (0..want).map(|j| subscribe(nodes[(at + j) % nodes.len()], false));
        for ws in futures::future::join_all(opened).await {
            sockets.push(ws?);
        }
    }
    // The clock starts once every client is subscribed.
    let t0 = Instant::now();
    let mut readers = Vec::new();
    for mut ws in sockets {
        let sent = sent.clone();
        readers.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(total);
            while latencies.len() < total {
                let next = tokio::time::timeout(Duration::from_secs(10), ws.next()).await;
                let Ok(Some(Ok(msg))) = next else { break };
                if let Message::Text(t) = msg {
                    if let Some(i) = marker(&t) {
                        let now = t0.elapsed().as_nanos() as u64;
                        let at = sent.get(i).map_or(0, |s| s.load(Ordering::Acquire));
                        latencies.push(Duration::from_nanos(now.saturating_sub(at)));
                    }
                }
            }
            let _ = ws.close(None).await;
            latencies
        }));
    }
    let client = http_client(64)?;
    let urls: Vec<String> = nodes.iter().map(|n| n.url("/api/v1/events")).collect();
    let mut posts = Vec::with_capacity(total);
    let interval = Duration::from_nanos(1_000_000_000 / rate.max(1));
    for i in 0..total {
        tokio::time::sleep_until((t0 + interval * (i as u32 + 1)).into()).await;
        let (client, url, sent) = (client.clone(), urls[i % urls.len()].clone(), sent.clone());
        posts.push(tokio::spawn(async move {
            let body = format!(r#"{{"action":"bench.latency","description":"lat-{i}"}}"#);
            sent[i].store(t0.elapsed().as_nanos() as u64, Ordering::Release);
            client
                .post(url)
                .bearer_auth(TOKEN)
                .header("Content-Type", "application/json")
                .body(body)
                .send()
                .await
                .map(|r| r.status() == reqwest::StatusCode::CREATED)
        }));
    }
    let mut created = 0;
    for p in posts {
        if matches!(p.await, Ok(Ok(true))) {
            created += 1;
        }
    }
    let mut all = Vec::new();
    for r in readers {
        all.extend(r.await?);
    }
    drop(stalled_sockets);
    all.sort();
    let at = |p: f64| {
        if all.is_empty() {
            Duration::ZERO
        } else {
            percentile(&all, p)
        }
    };
    Ok(Latency {
        created,
        delivered: all.len() as f64 / (created.max(1) * clients.max(1)) as f64,
        p50: at(0.5),
        p99: at(0.99),
        max: at(1.0),
    })
}

/// Scenario 3: a line appended to a tailed JSONL file, to its arrival on a subscribed socket.
/// Lines are written one at a time, each after the previous one arrived.
pub async fn tail_live(dir: PathBuf, lines: usize) -> Result<(), BoxError> {
    use std::io::Write;
    let file = dir.with_extension("jsonl");
    std::fs::write(&file, "")?;
    let served = Served::start_tailing(&dir, 4096, Some(&file))?;
    let mut ws = subscribe(&served, false).await?;
    let mut out = std::fs::OpenOptions::new().append(true).open(&file)?;
    let mut latencies = Vec::with_capacity(lines);
    for i in 0..lines {
        let line = format!("{{\"action\":\"bench.tail\",\"description\":\"lat-{i}\"}}\n");
        let started = Instant::now();
        out.write_all(line.as_bytes())?;
        loop {
            match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) if marker(&t) == Some(i) => break,
                Ok(Some(Ok(_))) => {}
                other => return Err(format!("line {i} never arrived: {other:?}").into()),
            }
        }
        latencies.push(started.elapsed());
    }
    latencies.sort();
    println!(
        "tailed file to socket, {lines} lines: p50 {} ms, p99 {} ms, max {} ms",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(latencies[latencies.len() - 1])
    );
    Ok(())
}

/// Scenario 6: the server's resident memory with `counts` idle subscribed clients.
pub async fn memory(dir: PathBuf, counts: Vec<usize>) -> Result<(), BoxError> {
    println!("| idle clients | server RSS MiB | anonymous MiB | per client KiB (RSS) | per client KiB (anonymous) |");
    println!("|---:|---:|---:|---:|---:|");
    let served = Served::start(&dir, 4096)?;
    // A backlog, so each socket's subscription reads and sends something, as a dashboard's does.
    let client = http_client(1)?;
    let batch: Vec<String> = (0..100)
        .map(|i| format!(r#"{{"action":"bench.memory","description":"backlog {i}"}}"#))
        .collect();
    served
        .ingest(&client, "application/x-ndjson", batch.join("\n"))
        .send()
        .await?
        .error_for_status()?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let base = served.rss_kib();
    let mut sockets = Vec::new();
    for &n in &counts {
        while sockets.len() < n {
            let want = (n - sockets.len()).min(200);
            let opened = futures::future::join_all((0..want).map(|_| subscribe(&served, false)));
            for ws in opened.await {
                sockets.push(ws?);
            }
        }
        // Let the server settle (tasks parked, buffers returned) before reading its memory.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (rss, anon) = served.rss_kib();
        let per = |now: u64, base: u64| {
            if n == 0 {
                String::new()
            } else {
                format!("{:.1}", now.saturating_sub(base) as f64 / n as f64)
            }
        };
        println!(
            "| {n} | {:.1} | {:.1} | {} | {} |",
            rss as f64 / 1024.0,
            anon as f64 / 1024.0,
            per(rss, base.0),
            per(anon, base.1)
        );
    }
    // Every socket is still served: one event reaches all of them.
    served
        .ingest(
            &client,
            "application/json",
            r#"{"action":"bench.memory","description":"lat-0"}"#,
        )
        .send()
        .await?
        .error_for_status()?;
    let mut reached = 0;
    for ws in &mut sockets {
        loop {
            match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) if marker(&t).is_some() => {
                    reached += 1;
                    break;
                }
                Ok(Some(Ok(_))) => {}
                _ => break,
            }
        }
    }
    println!(
        "the event posted last reached {reached} of {} sockets",
        sockets.len()
    );
    for ws in &mut sockets {
        let _ = ws.send(Message::Close(None)).await;
    }
    Ok(())
}

/// Scenario 7 (the bundle): each WASM file of the built site, raw and gzipped (`gzip -9`).
pub fn size(site_root: PathBuf) -> Result<(), BoxError> {
    let pkg = site_root.join("pkg");
    let mut found = false;
    let kib = |bytes: u64| format!("{:.1} KiB", bytes as f64 / 1024.0);
    for entry in std::fs::read_dir(&pkg)? {
        let path = entry?.path();
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if ext != "wasm" && ext != "js" && ext != "css" {
            continue;
        }
        found = true;
        let raw = std::fs::metadata(&path)?.len();
        let gz = Command::new("gzip")
            .args(["-9", "-c"])
            .arg(&path)
            .output()?;
        // What the server sends: the copies `--precompress` wrote, when it ran.
        let sent = |suffix: &str| {
            let mut copy = path.clone().into_os_string();
            copy.push(suffix);
            std::fs::metadata(copy).map_or("none".to_string(), |m| kib(m.len()))
        };
        println!(
            "{}: {}, gzip -9 {}; sent as brotli {}, as gzip {}",
            path.display(),
            kib(raw),
            kib(gz.stdout.len() as u64),
            sent(".br"),
            sent(".gz"),
        );
    }
    if !found {
        return Err(format!(
            "no built site in {}: run cargo leptos build --release --precompress",
            pkg.display()
        )
        .into());
    }
    Ok(())
}

/// Issue 7's five shapes of search, the words common (first), mid-frequency and rare (last)
/// in the stores `fill_spread` makes.
pub fn search_cases() -> Vec<(&'static str, EventFilter)> {
    let words = vocabulary(3_000);
    let now = chrono::Utc::now();
    let text = |q: &str| EventFilter {
        q: Some(q.to_string()),
        ..EventFilter::default()
    };
    vec![
        ("full text (common word)", text(&words[0])),
        (
            "field filter (level, category)",
            EventFilter {
                level: vec![Level::Error],
                category: vec![Category::Security],
                ..EventFilter::default()
            },
        ),
        (
            "full text + field filter",
            EventFilter {
                level: vec![Level::Error],
                ..text(&words[300])
            },
        ),
        (
            "time range (one day, mid-month)",
            EventFilter {
                start_date: Some(now - chrono::Duration::days(16)),
                end_date: Some(now - chrono::Duration::days(15)),
                ..EventFilter::default()
            },
        ),
        ("rare term", text(&words[2_900])),
        (
            "rare term, last 3 days",
            EventFilter {
                start_date: Some(now - chrono::Duration::days(3)),
                ..text(&words[2_900])
            },
        ),
    ]
}

/// A table of each case's first page over HTTP in `order`, `runs` times, the `k`th run
/// asking `nodes[k % nodes.len()]`: the explorer's server function, or with `rest` the REST
/// API.
pub async fn first_pages(
    nodes: &[&Served],
    cases: &[(&str, EventFilter)],
    order: EventOrder,
    runs: usize,
    rest: bool,
) -> Result<(), BoxError> {
    let client = reqwest::Client::new();
    println!("| query | total | p50 ms | p95 ms | max ms |");
    println!("|---|---:|---:|---:|---:|");
    for (name, filter) in cases {
        let mut times = Vec::with_capacity(runs);
        let mut total = String::new();
        for k in 0..runs {
            let served = nodes[k % nodes.len()];
            let request = match rest {
                false => client
                    .post(served.url("/api/fn/events"))
                    .json(&serde_json::json!({ "filter": filter, "order": order, "cursor": null })),
                true => client
                    .get(served.url("/api/v1/events"))
                    .query(&[("limit", "100".to_string()), ("sort", order.as_param())])
                    .query(&filter.rest_params()),
            };
            let t = Instant::now();
            let response = request.bearer_auth(TOKEN).send().await?;
            let status = response.status();
            let body: serde_json::Value = response.json().await?;
            times.push(t.elapsed());
            if !status.is_success() {
                return Err(format!("{name}: {status} {body}").into());
            }
            let plus = match body["totalIsLowerBound"].as_bool() {
                Some(true) => "+",
                _ => "",
            };
            total = format!("{}{plus}", body["total"]);
        }
        super::search_row(name, &total, &mut times);
    }
    Ok(())
}

/// Search and the dashboard's summary and insights through the server's HTTP API, over a
/// store of `events` (filled in-process first, then served by a child server): the time a
/// browser waits for each, with the JSON encoding and transfer included.
pub async fn queries(
    dir: PathBuf,
    events: u64,
    runs: usize,
    rest_runs: usize,
    shuffled: bool,
) -> Result<(), BoxError> {
    let dir = match shuffled {
        true => dir.join(format!("{events}-shuffled")),
        false => dir.join(events.to_string()),
    };
    // The filling store is dropped (its threads joined) before the server opens the files.
    drop(
        super::fill_spread(&dir, events, 5_000, 30, shuffled)
            .await
            .map_err(|e| e.to_string())?,
    );
    let served = Served::open(&dir)?;
    let client = reqwest::Client::new();
    // At start the server walks the whole chain once (40 s of a core at 10M events); timed
    // during that walk, the queries share both cores and the page cache with it. What is
    // measured here is the server at work, so the timing starts when the walk has finished.
    let started = Instant::now();
    served.chain_checked(&client).await?;
    println!(
        "the start-up chain check finished after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let cases = search_cases();
    // The dashboard's explorer (its server function: a count capped at 10,000 or 25 ms), then
    // the REST API, whose `total` is exact as the predecessor's was; by event time, newest
    // first (the default), and by arrival (as every list was before there were orders).
    for (order, rest) in [
        (EventOrder::default(), false),
        (EventOrder::ARRIVAL, false),
        (EventOrder::default(), true),
        (EventOrder::ARRIVAL, true),
    ] {
        let runs = if rest { rest_runs } else { runs };
        if runs == 0 {
            continue;
        }
        println!(
            "\n{events} events{}; first page over HTTP, sort={}, {}, {runs} runs each:",
            if shuffled {
                " (event times shuffled against arrival)"
            } else {
                ""
            },
            order.as_param(),
            match rest {
                false => "POST /api/fn/events (the explorer: 100 rows, count capped)",
                true => "GET /api/v1/events?limit=100 (exact total)",
            }
        );
        first_pages(&[&served], &cases, order, runs, rest).await?;
    }
    let mut summary = Vec::with_capacity(runs);
    let mut both = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        for path in ["/api/dashboard/summary", "/api/dashboard/insights"] {
            let response = client
                .get(served.url(path))
                .bearer_auth(TOKEN)
                .send()
                .await?;
            let status = response.status();
            // Read whole, as a browser would before using it.
            response.bytes().await?;
            if !status.is_success() {
                return Err(format!("{path}: {status}").into());
            }
            if path.ends_with("summary") {
                summary.push(t.elapsed());
            }
        }
        both.push(t.elapsed());
    }
    summary.sort();
    both.sort();
    println!(
        "summary: p50 {} ms, p95 {} ms; summary then insights: p50 {} ms, p95 {} ms, max {} ms",
        ms(percentile(&summary, 0.5)),
        ms(percentile(&summary, 0.95)),
        ms(percentile(&both, 0.5)),
        ms(percentile(&both, 0.95)),
        ms(percentile(&both, 1.0))
    );
    Ok(())
}

/// The CPU time of process `pid` from `/proc/PID/stat`, user and system; with `reaped`, also
/// that of its children that have exited and been waited for.
pub fn process_cpu(pid: u32, reaped: bool) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    // The fields after the command name, which is in parentheses and may hold spaces.
    let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
        return Duration::ZERO;
    };
    let fields: Vec<u64> = rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // utime, stime, cutime, cstime are fields 14 to 17 of the line; here 11 to 14 (0-based).
    let take = if reaped { 4 } else { 2 };
    let ticks: u64 = fields.iter().skip(11).take(take).sum();
    // The kernel's USER_HZ, 100 on Linux everywhere.
    Duration::from_millis(ticks * 10)
}
