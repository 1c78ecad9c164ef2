//! Helpers for tests that run a real server on 127.0.0.1:0 and talk to it over real HTTP and
//! WebSocket connections.
#![allow(dead_code, clippy::unwrap_used)]

pub mod postgres;
pub mod random;
pub mod rollups;

use futures::StreamExt;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use trailwatch::site::ServeConfig;
use trailwatch::site::Server;

pub const TOKEN: &str = "test-admin-token";

pub const PASSWORD: &str = "a long enough password";

/// A credential to call with: a bearer token, a session cookie, or none.
#[derive(Clone, Debug)]
pub enum Cred {
    None,
    Bearer(String),
    Cookie(String),
}

pub async fn call(
    s: &TestServer,
    method: &str,
    path: &str,
    cred: &Cred,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = s.http.request(method.parse().unwrap(), s.url(path));
    req = match cred {
        Cred::None => req,
        Cred::Bearer(t) => req.bearer_auth(t),
        Cred::Cookie(c) => req.header("Cookie", c),
    };
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Whether the concrete `path` fits the router's `pattern` (`{name}` takes one segment).
pub fn fits(pattern: &str, path: &str) -> bool {
    let (p, c): (Vec<&str>, Vec<&str>) = (pattern.split('/').collect(), path.split('/').collect());
    p.len() == c.len()
        && p.iter()
            .zip(&c)
            .all(|(p, c)| p == c || (p.starts_with('{') && p.ends_with('}')))
}

/// Adds a user through the API with the admin token.
pub async fn add_user(s: &TestServer, name: &str, role: &str, subject: Option<&str>) {
    let (status, body) = call(
        s,
        "POST",
        "/api/v1/users",
        &Cred::Bearer(TOKEN.into()),
        Some(json!({"name": name, "role": role, "subject": subject, "password": PASSWORD})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

/// Signs in through the login server function; returns the cookie pair, or the status.
pub async fn login(s: &TestServer, name: &str, password: &str) -> Result<String, (u16, String)> {
    let r = s
        .http
        .post(s.url("/api/fn/login"))
        .header("Accept", "application/json")
        .form(&[("name", name), ("password", password)])
        .send()
        .await
        .unwrap();
    match r.headers().get("set-cookie") {
        Some(c) => Ok(c.to_str().unwrap().split(';').next().unwrap().to_string()),
        None => Err((r.status().as_u16(), r.text().await.unwrap())),
    }
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    /// The cluster database it is a node of, when the suites run on PostgreSQL.
    pub database: Option<String>,
    pub http: reqwest::Client,
    /// Each syslog listener's source name and bound address.
    pub syslog: Vec<(String, SocketAddr)>,
    /// Where `/metrics` is served, when the test asked for it.
    pub metrics: Option<SocketAddr>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    serving: Option<tokio::task::JoinHandle<()>>,
}

/// The settings of a test server on a free loopback port, keeping its data under `dir`.
pub fn serve_config(dir: &std::path::Path) -> ServeConfig {
    ServeConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        site_root: dir.join("site"),
        admin_token: Some(TOKEN.to_string()),
        ..ServeConfig::defaults(dir.join("data"))
    }
}

/// Whether the REST suites run against a cluster node rather than the embedded SQLite store:
/// `make test` runs them a second time with `TRAILWATCH_TEST_BACKEND=postgres`, so the same
/// test functions hold both backends to the same answers.
pub fn on_postgres() -> bool {
    std::env::var("TRAILWATCH_TEST_BACKEND").as_deref() == Ok("postgres")
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// A server with `tweak`ed settings: on SQLite in a temporary data directory, or (see
    /// [`on_postgres`]) a node of its own fresh database on the test binary's PostgreSQL
    /// cluster, its data directory holding only what a node keeps locally.
    pub async fn start_with(tweak: impl FnOnce(&mut ServeConfig)) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let mut config = serve_config(dir.path());
        if on_postgres() {
            static DATABASES: std::sync::atomic::AtomicUsize =
                std::sync::atomic::AtomicUsize::new(0);
            let n = DATABASES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let url = postgres::cluster().database(&format!("rest_{n}")).await;
            config.cluster = Some(trailwatch::site::ClusterConfig {
                url,
                node: Some("test-node".into()),
                key_file: None,
            });
        }
        tweak(&mut config);
        let database = config.cluster.as_ref().map(|c| c.url.clone());
        let server = Server::bind(&config).await.unwrap();
        let addr = server.local_addr().unwrap();
        let syslog = server.syslog_addrs().to_vec();
        let metrics = server.metrics_addr();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(async move {
            let _ = server
                .serve(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        TestServer {
            addr,
            dir,
            database,
            http,
            syslog,
            metrics,
            stop: Some(stop),
            serving: Some(serving),
        }
    }

    /// Stops the server and waits until it has let go of its data directory, which stays.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(serving) = self.serving.take() {
            serving.await.unwrap();
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The database of this server's users and tokens, opened beside it as the CLI does.
    pub async fn auth_db(&self) -> trailwatch::store::sql::Db {
        match &self.database {
            Some(url) => trailwatch::store::postgres::small_tables(url)
                .await
                .unwrap(),
            None => trailwatch::store::sql::Db::Sqlite(std::sync::Arc::new(std::sync::Mutex::new(
                trailwatch::auth::open_db(&self.dir.path().join("data")).unwrap(),
            ))),
        }
    }

    /// Where `trailwatch token` and `trailwatch user` find this server's users and tokens.
    pub fn accounts(&self) -> trailwatch::cli::accounts::Accounts {
        match &self.database {
            Some(url) => trailwatch::cli::accounts::Accounts::Database(url.clone()),
            None => trailwatch::cli::accounts::Accounts::Dir(self.dir.path().join("data")),
        }
    }

    /// POSTs JSON events with the admin token; returns status and body.
    pub async fn post(&self, body: &Value) -> (u16, Value) {
        send(self.http.post(self.url("/api/v1/events")).json(body)).await
    }

    /// GETs `path` with the admin token; returns status and body.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        send(self.http.get(self.url(path))).await
    }

    /// Posts the login form with `token`, as the login page does; the raw answer.
    pub async fn token_login(&self, token: &str) -> reqwest::Response {
        self.http
            .post(self.url("/api/fn/login"))
            .form(&[("token", token)])
            .send()
            .await
            .unwrap()
    }

    /// Signs in with the admin token, as the login form does; returns the cookie pair.
    pub async fn admin_session(&self) -> String {
        let r = self.token_login(TOKEN).await;
        let cookie = r.headers()["set-cookie"].to_str().unwrap();
        cookie.split(';').next().unwrap().to_string()
    }

    /// Calls the server function at `path` with JSON `args` and the session `cookie`, as the
    /// dashboard does; returns the status and the JSON body (null if none).
    pub async fn call_fn(&self, path: &str, cookie: &str, args: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(path))
            .header("Cookie", cookie)
            .header("Accept", "application/json")
            .json(args)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Opens `/ws/audit` with the token in the query.
    pub async fn socket(&self, query: &str) -> Socket {
        let url = format!("ws://{}/ws/audit?token={TOKEN}{query}", self.addr);
        let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        Socket { ws }
    }
}

/// Sends `request` with the admin token; returns the status and the JSON body (null if none).
async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
    let r = request.bearer_auth(TOKEN).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// A socket to `addr` that subscribes with `query` and is then never read by the test: its
/// receive buffer is 4 KiB, so the server's writes to it soon block.
pub async fn stalled_socket(addr: SocketAddr, query: &str) -> Socket {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let url = format!("ws://{addr}/ws/audit?token={TOKEN}{query}");
    let stream = tokio_tungstenite::MaybeTlsStream::Plain(stream);
    let (ws, _) = tokio_tungstenite::client_async(url, stream).await.unwrap();
    Socket { ws }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub struct Socket {
    pub ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl Socket {
    /// The next JSON text message, skipping pings; panics after 10 s of silence.
    pub async fn next_json(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(10), self.ws.next())
                .await
                .expect("no message within 10 s")
                .expect("socket closed")
                .expect("socket error");
            match msg {
                Message::Text(t) => return serde_json::from_str(&t).unwrap(),
                Message::Close(frame) => panic!("socket closed by server: {frame:?}"),
                _ => continue,
            }
        }
    }

    pub async fn send_json(&mut self, v: Value) {
        use futures::SinkExt;
        self.ws
            .send(Message::Text(v.to_string().into()))
            .await
            .unwrap();
    }

    /// Sends a `subscribe` message and waits for its `subscribed` acknowledgement, skipping
    /// whatever the previous subscription still had in flight.
    pub async fn subscribe(&mut self, msg: Value) {
        self.send_json(msg).await;
        loop {
            let m = self.next_json().await;
            if m["type"] == "subscribed" {
                return;
            }
            assert_ne!(m["type"], "error", "subscription refused: {m}");
        }
    }

    /// Whether the server closes the socket (within 10 s), ignoring other messages.
    pub async fn closed_by_server(&mut self) -> bool {
        loop {
            match tokio::time::timeout(Duration::from_secs(10), self.ws.next()).await {
                Err(_) => return false,
                Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return true,
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    /// The next `alert` message, skipping events and the rest.
    pub async fn next_alert(&mut self) -> Value {
        loop {
            let m = self.next_json().await;
            if m["type"] == "alert" {
                return m;
            }
        }
    }

    /// Reads until a `ready`, returning the seqs of the events before it.
    pub async fn events_until_ready(&mut self) -> Vec<u64> {
        let mut seqs = Vec::new();
        loop {
            let m = self.next_json().await;
            match m["type"].as_str() {
                Some("event") => seqs.push(m["event"]["seq"].as_u64().unwrap()),
                Some("ready") => return seqs,
                // Alerts interleave with events; the alert tests read them.
                Some("subscribed" | "alert") => {}
                other => panic!("unexpected message {other:?}: {m}"),
            }
        }
    }

    /// Reads exactly `n` event messages, returning their seqs.
    pub async fn events(&mut self, n: usize) -> Vec<u64> {
        let mut seqs = Vec::new();
        while seqs.len() < n {
            let m = self.next_json().await;
            if m["type"] == "alert" {
                continue;
            }
            assert_eq!(m["type"], "event", "unexpected {m}");
            seqs.push(m["event"]["seq"].as_u64().unwrap());
        }
        seqs
    }
}

/// `n` small events whose descriptions carry `tag` and their index.
pub fn batch(tag: &str, n: usize) -> Value {
    Value::Array(
        (0..n)
            .map(|i| serde_json::json!({"action": "file.read", "user": {"id": format!("user{}", i % 5)}, "description": format!("{tag}-{i}")}))
            .collect(),
    )
}

/// An event tagged `tag` in its metadata; every third one a denial, from few users and
/// addresses, so that repeated-failure scores depend on what every node appended before.
pub fn tagged(tag: &str, n: usize) -> trailwatch::model::AuditEvent {
    use trailwatch::model::{Actor, AuditEvent, Category, Level, Outcome, RequestInfo, Source};
    let outcome = if n % 3 == 0 {
        Outcome::Denied
    } else {
        Outcome::Success
    };
    AuditEvent {
        request: Some(RequestInfo {
            ip: Some(format!("10.0.0.{}", n % 3)),
            ..Default::default()
        }),
        description: Some(format!("event {tag}")),
        metadata: serde_json::json!({"tag": tag}).as_object().cloned(),
        submitted_by: Some("token:pg-test".into()),
        ..AuditEvent::new(
            chrono::DateTime::from_timestamp_millis(1_770_000_000_000 + n as i64 * 700).unwrap(),
            Level::Info,
            Category::Authentication,
            format!("login.{}", n % 4),
            outcome,
            Actor {
                id: format!("user-{}", n % 5),
                username: None,
            },
            Source::http(),
        )
    }
}

/// Spawns `command` (`trailwatch serve` with its arguments and environment), waits until it
/// says where it listens, and returns it with its base URL; its later log lines are drained.
pub fn spawn_listening(mut command: std::process::Command) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = command
        .env("TRAILWATCH_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufReader::new(stderr).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("the server exited before listening")
            .unwrap();
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.trim().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, url)
}

/// The venv's Python (`.ci/tools/venv`), with the sender libraries and checkers the tests
/// drive.
pub fn python() -> std::path::PathBuf {
    let python =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".ci/tools/venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `.ci/setup test` to install the tests' Python packages",
        python.display()
    );
    python
}

/// Runs `program` with `args`, `input` on its standard input; returns whether it succeeded and
/// what it printed (both streams).
pub async fn run_with_input(
    program: std::path::PathBuf,
    args: Vec<String>,
    input: String,
) -> (bool, String) {
    use std::io::Write;
    tokio::task::spawn_blocking(move || {
        let mut child = std::process::Command::new(&program)
            .args(&args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{} runs: {e}", program.display()));
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    })
    .await
    .unwrap()
}

/// A script of `tests/fixtures`, as the venv's Python's argument.
pub fn fixture_script(name: &str) -> Vec<String> {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    vec![path.display().to_string()]
}
