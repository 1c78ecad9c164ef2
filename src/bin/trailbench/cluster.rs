//! `trailbench cluster`: one SQLite node, then 1, 2 and 3 PostgreSQL nodes, in one run on
//! this machine, each driven the same way: durable NDJSON and single-event ingest spread over
//! the nodes, POST-to-socket latency with clients spread over them, and the search's first
//! page over a store of a million events copied into both backends. The nodes and PostgreSQL
//! share the machine's cores, so the run also reports the CPU each event costs the nodes and
//! PostgreSQL, and how long a batch holds the chain's lock (the one thing every node waits
//! for), from which the rate with more machines follows.
//!
//! PostgreSQL runs as shipped for durability: `fsync` and `synchronous_commit` on (the tests'
//! throwaway clusters turn fsync off; this one does not), with `shared_buffers` raised to
//! 1 GiB as an operator would.

use super::server::{
    first_pages, latency, ndjson_bodies, post_all, process_cpu, search_cases, Dated, Held, Served,
};
use super::{vocabulary, Rng};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What to measure; see `trailbench cluster --help`.
pub struct Plan {
    pub dir: PathBuf,
    pub nodes: Vec<usize>,
    pub events: u64,
    pub singles: u64,
    pub clients: usize,
    pub rate: u64,
    pub seconds: u64,
    pub search_events: u64,
    pub runs: usize,
}

/// A throwaway PostgreSQL server for the run, stopped and removed when dropped.
struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    /// Run its programs as the `postgres` user (initdb refuses root).
    as_postgres: bool,
}

impl Postgres {
    fn start(dir: &Path) -> Result<Postgres, BoxError> {
        let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .map_err(|e| format!("PostgreSQL is not installed (.ci/setup installs it): {e}"))?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|b| b.join("initdb").exists())
            .collect();
        versions.sort();
        let bin = versions
            .pop()
            .ok_or("no initdb under /usr/lib/postgresql")?;
        let as_postgres = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir)?;
        if as_postgres {
            run(Command::new("chown").arg("postgres").arg(dir))?;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let pg = Postgres {
            bin,
            data: dir.join("data"),
            port,
            as_postgres,
        };
        run(pg.program("initdb").arg("-D").arg(&pg.data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
        ]))?;
        run(pg
            .program("pg_ctl")
            .arg("-D")
            .arg(&pg.data)
            .arg("-l")
            .arg(dir.join("log"))
            .arg("-w")
            .arg("-o")
            .arg(format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c shared_buffers=1GB \
                 -c max_connections=200",
                dir.display()
            ))
            .arg("start"))?;
        Ok(pg)
    }

    fn program(&self, name: &str) -> Command {
        let path = self.bin.join(name);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// A new, empty database `name`; its URL.
    async fn database(&self, name: &str) -> Result<String, BoxError> {
        let (client, connection) =
            tokio_postgres::connect(&self.url("postgres"), tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        // One statement each: several in one string run as one transaction, which these refuse.
        client
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
            .await?;
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await?;
        Ok(self.url(name))
    }

    /// The CPU time PostgreSQL has used so far: every `postgres` process running, plus what
    /// the postmaster has reaped of backends that exited.
    fn cpu(&self) -> Duration {
        let postmaster: Option<u32> = std::fs::read_to_string(self.data.join("postmaster.pid"))
            .ok()
            .and_then(|s| s.lines().next().and_then(|l| l.trim().parse().ok()));
        let mut total = Duration::ZERO;
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            if comm.trim() == "postgres" {
                total += process_cpu(pid, Some(pid) == postmaster);
            }
        }
        total
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = run(self
            .program("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "fast", "-w", "stop"]));
        if let Some(dir) = self.data.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn run(command: &mut Command) -> Result<(), BoxError> {
    let out = command.output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into())
    }
}

/// The nodes of one configuration.
struct Nodes {
    label: String,
    served: Vec<Served>,
}

impl Nodes {
    /// One SQLite node in `dir` (emptied first).
    fn sqlite(dir: &Path) -> Result<Nodes, BoxError> {
        Ok(Nodes {
            label: "SQLite, 1 node".into(),
            served: vec![Served::start(dir, 4096)?],
        })
    }

    /// `n` nodes of the cluster at `url`, with data directories under `dir`, signing with
    /// `key`.
    fn postgres(dir: &Path, url: &str, n: usize, key: &Path) -> Result<Nodes, BoxError> {
        let served = (1..=n)
            .map(|i| {
                Served::node(
                    &dir.join(format!("node-{i}")),
                    url,
                    &format!("node-{i}"),
                    key,
                )
            })
            .collect::<Result<_, _>>()?;
        Ok(Nodes {
            label: format!("PostgreSQL, {n} node{}", if n == 1 { "" } else { "s" }),
            served,
        })
    }

    fn refs(&self) -> Vec<&Served> {
        self.served.iter().collect()
    }

    /// The nodes' CPU time so far, all together.
    fn cpu(&self) -> Duration {
        self.served.iter().map(Served::cpu).sum()
    }

    /// The chain lock's hold times of all nodes together (the longest is the longest of any).
    fn held(&mut self) -> Result<Held, BoxError> {
        let mut all = Held::default();
        for s in &mut self.served {
            let h = s.lock_held()?;
            all.batches += h.batches;
            all.events += h.events;
            all.total += h.total;
            all.longest = all.longest.max(h.longest);
        }
        Ok(all)
    }
}

/// One ingest phase's numbers.
struct Phase {
    events: u64,
    took: Duration,
    nodes_cpu: Duration,
    pg_cpu: Duration,
    held: Held,
}

impl Phase {
    fn rate(&self) -> f64 {
        self.events as f64 / self.took.as_secs_f64()
    }

    fn micros_per_event(&self, cpu: Duration) -> f64 {
        cpu.as_secs_f64() * 1e6 / self.events.max(1) as f64
    }

    /// `rate | nodes µs/event | PostgreSQL µs/event | lock per batch | lock per event | the
    /// rate the lock alone allows`, as table cells.
    fn cells(&self) -> String {
        let held = if self.held.batches == 0 {
            "– | – | –".to_string()
        } else {
            let per_batch = self.held.total / self.held.batches as u32;
            let per_event = self.held.total.as_secs_f64() / self.held.events.max(1) as f64;
            format!(
                "{:.2} ms (max {:.1}), {:.0} events | {:.1} µs | {:.0}",
                per_batch.as_secs_f64() * 1e3,
                self.held.longest.as_secs_f64() * 1e3,
                self.held.events as f64 / self.held.batches as f64,
                per_event * 1e6,
                1.0 / per_event
            )
        };
        format!(
            "{:.0} | {:.1} | {:.1} | {held}",
            self.rate(),
            self.micros_per_event(self.nodes_cpu),
            self.micros_per_event(self.pg_cpu)
        )
    }
}

/// Posts `bodies` over `connections` spread over the nodes, measuring CPU and lock holds.
async fn phase(
    nodes: &mut Nodes,
    pg: &Postgres,
    bodies: Vec<(Vec<u8>, usize)>,
    content_type: &'static str,
    connections: usize,
) -> Result<Phase, BoxError> {
    let (cpu0, pg0, held0) = (nodes.cpu(), pg.cpu(), nodes.held()?);
    let (events, took) = post_all(&nodes.refs(), bodies, content_type, connections).await?;
    let (cpu1, pg1, held1) = (nodes.cpu(), pg.cpu(), nodes.held()?);
    Ok(Phase {
        events,
        took,
        nodes_cpu: cpu1.saturating_sub(cpu0),
        pg_cpu: pg1.saturating_sub(pg0),
        held: Held {
            batches: held1.batches - held0.batches,
            events: held1.events - held0.events,
            total: held1.total.saturating_sub(held0.total),
            longest: held1.longest,
        },
    })
}

pub async fn cluster(plan: Plan) -> Result<(), BoxError> {
    let pg = Postgres::start(&plan.dir.join("postgres"))?;
    let words = vocabulary(3_000);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let now = chrono::Utc::now().timestamp_millis();
    let ndjson = ndjson_bodies(&mut rng, &words, now, plan.events, 1_000, Dated::Live)?;
    let singles = ndjson_bodies(&mut rng, &words, now, plan.singles, 1, Dated::Live)?;
    let key_dir = plan.dir.join("key");
    std::fs::create_dir_all(&key_dir)?;
    let key = key_dir.join("checkpoint.key");
    std::fs::write(&key, hex_key(&mut rng))?;

    println!(
        "\nIngest ({} NDJSON events in batches of 1,000 over 4 connections, then {} single-event \
         POSTs over 64; realistic events dated now), then {} clients at {} events/s for {} s. \
         Connections, sockets and POSTs are spread round-robin over the nodes.\n",
        plan.events, plan.singles, plan.clients, plan.rate, plan.seconds
    );
    println!(
        "| configuration | ingest | events/s | nodes' CPU µs/event | PostgreSQL CPU µs/event | \
         chain lock per batch | lock µs/event | events/s the lock allows |"
    );
    println!("|---|---|---:|---:|---:|---|---:|---:|");
    let mut latencies = Vec::new();
    let configs = std::iter::once(0).chain(plan.nodes.iter().copied());
    for n in configs {
        let mut nodes = if n == 0 {
            Nodes::sqlite(&plan.dir.join("sqlite"))?
        } else {
            let url = pg.database(&format!("ingest_{n}")).await?;
            Nodes::postgres(&plan.dir.join(format!("pg-{n}")), &url, n, &key)?
        };
        let batches = phase(&mut nodes, &pg, ndjson.clone(), "application/x-ndjson", 4).await?;
        println!("| {} | NDJSON | {} |", nodes.label, batches.cells());
        let one = phase(&mut nodes, &pg, singles.clone(), "application/json", 64).await?;
        println!("| {} | single POSTs | {} |", nodes.label, one.cells());
        let row = latency(&nodes.refs(), plan.clients, plan.rate, plan.seconds, 0).await?;
        latencies.push((nodes.label.clone(), row));
    }
    println!("\nPOST to socket, {} clients:\n", plan.clients);
    println!("| configuration | events | delivered | p50 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (label, row) in latencies {
        println!("| {label} | {row} |");
    }

    if plan.search_events == 0 {
        return Ok(());
    }
    search(&plan, &pg).await
}

/// The first page of each search shape over `plan.search_events` events: the same store on
/// SQLite and, copied with `trailwatch migrate`'s copy, on PostgreSQL behind 1 to 3 nodes.
async fn search(plan: &Plan, pg: &Postgres) -> Result<(), BoxError> {
    let dir = plan.dir.join(format!("search-{}", plan.search_events));
    drop(
        super::fill_spread(&dir, plan.search_events, 5_000, 30, false)
            .await
            .map_err(|e| e.to_string())?,
    );
    let url = pg.database("search").await?;
    let started = Instant::now();
    let copied = trailwatch::store::postgres::copy_sqlite(&dir, &url, &mut |_| {}).await?;
    println!(
        "\ncopied {} events into PostgreSQL in {:.1} s",
        copied.events,
        started.elapsed().as_secs_f64()
    );
    let cases = search_cases();
    let key = dir.join(trailwatch::store::checkpoint::KEY_FILE);
    let configs = std::iter::once(0).chain(plan.nodes.iter().copied());
    for n in configs {
        let nodes = if n == 0 {
            Nodes {
                label: "SQLite, 1 node".into(),
                served: vec![Served::open(&dir)?],
            }
        } else {
            Nodes::postgres(&plan.dir.join(format!("search-pg-{n}")), &url, n, &key)?
        };
        for rest in [false, true] {
            println!(
                "\n{}, {} events, {}, {} runs each (spread over the nodes):\n",
                nodes.label,
                plan.search_events,
                match rest {
                    false => "POST /api/fn/events (the explorer: 100 rows, count capped)",
                    true => "GET /api/v1/events?limit=100 (exact total)",
                },
                plan.runs
            );
            first_pages(
                &nodes.refs(),
                &cases,
                trailwatch::model::EventOrder::ARRIVAL,
                plan.runs,
                rest,
            )
            .await?;
        }
    }
    Ok(())
}

/// A signing key for the cluster: 64 hex digits, as `--cluster-key` reads.
fn hex_key(rng: &mut Rng) -> String {
    (0..4).map(|_| format!("{:016x}", rng.next())).collect()
}
