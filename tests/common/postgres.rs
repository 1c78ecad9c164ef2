//! A throwaway PostgreSQL cluster for one test binary: `initdb` into a temporary directory (as
//! the unprivileged `postgres` user when the tests run as root, since initdb refuses root),
//! started on a free loopback port, and stopped and removed when the test process ends,
//! however it ends. Nothing assumes a running system service.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Mutex, OnceLock};

/// The running cluster.
pub struct Cluster {
    pub port: u16,
    keeper: Mutex<Keeper>,
}

/// The shell that started the cluster: it takes commands on its stdin, and when that closes
/// (the test process ends, however it ends) it stops the cluster and removes its directory.
struct Keeper {
    _child: Child,
    commands: ChildStdin,
    replies: BufReader<ChildStdout>,
}

/// The test binary's cluster, started on first use.
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(Cluster::start)
}

/// Where this machine's PostgreSQL programs are: the newest installed major version.
fn bindir() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (.ci/setup installs Debian's postgresql)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|b| b.join("initdb").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("an initdb under /usr/lib/postgresql/*/bin")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Cluster {
    fn start() -> Cluster {
        let bin = bindir();
        let port = free_port();
        let root = std::env::var("USER").as_deref() == Ok("root")
            || Command::new("id")
                .arg("-u")
                .output()
                .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
        // As root the cluster belongs to `postgres`; otherwise to whoever runs the tests.
        let as_user = if root { "runuser -u postgres --" } else { "" };
        let script = format!(
            r#"set -e
dir=$(mktemp -d /tmp/trailwatch-pg.XXXXXX)
{chown}
{as_user} {bin}/initdb -D "$dir/data" -U postgres --auth=trust -E UTF8 --no-sync >/dev/null
{as_user} {bin}/pg_ctl -D "$dir/data" -l "$dir/log" -w \
    -o "-p {port} -k $dir -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
echo ready
# Commands from the test process, one per line, until it ends and its end of this pipe closes.
while read -r command; do
  case "$command" in
    stop) {as_user} {bin}/pg_ctl -D "$dir/data" -m fast -w stop >/dev/null 2>&1; echo stopped ;;
    start) {as_user} {bin}/pg_ctl -D "$dir/data" -l "$dir/log" -w \
             -o "-p {port} -k $dir -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
           echo started ;;
  esac
done
{as_user} {bin}/pg_ctl -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
rm -rf "$dir"
"#,
            chown = if root { r#"chown postgres "$dir""# } else { "" },
            bin = bin.display(),
        );
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("sh runs");
        let stdin = child.stdin.take().unwrap();
        let mut line = String::new();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "the PostgreSQL cluster did not start");
        Cluster {
            port,
            keeper: Mutex::new(Keeper {
                _child: child,
                commands: stdin,
                replies: stdout,
            }),
        }
    }

    /// Runs a keeper command and waits for its reply.
    fn command(&self, command: &str, reply: &str) {
        use std::io::Write;
        let mut keeper = self.keeper.lock().unwrap();
        writeln!(keeper.commands, "{command}").unwrap();
        keeper.commands.flush().unwrap();
        let mut line = String::new();
        keeper.replies.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), reply, "the cluster's keeper did not {command}");
    }

    /// Stops the server (fast: sessions are ended), as an operator or a crash-restart would.
    pub fn stop_server(&self) {
        self.command("stop", "stopped");
    }

    /// Starts the stopped server again on the same port.
    pub fn start_server(&self) {
        self.command("start", "started");
    }

    /// The URL of database `db` on this cluster.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// A new, empty database for one test; its URL.
    pub async fn database(&self, name: &str) -> String {
        let admin = connect(&self.url("postgres")).await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        self.url(name)
    }
}

/// A client of `url`, its connection driven on the test's runtime.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// Two nodes (`node-1`, `node-2`) of a cluster on a new database `name`; its URL too.
pub async fn two_nodes(
    name: &str,
) -> (
    String,
    trailwatch::store::postgres::EventLog,
    trailwatch::store::postgres::EventLog,
) {
    use trailwatch::store::{postgres::EventLog, StoreOptions};
    let url = cluster().database(name).await;
    let a = EventLog::open(&url, "node-1", StoreOptions::default())
        .await
        .unwrap();
    let b = EventLog::open(&url, "node-2", StoreOptions::default())
        .await
        .unwrap();
    (url, a, b)
}
