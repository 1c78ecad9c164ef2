//! File sources through the whole server: `--tail` feeding the live socket, and the JSONL
//! mirror (`--mirror-dir`) with `GET /api/v1/logs`, across a restart.
#![allow(clippy::unwrap_used)]

mod common;

use common::{TestServer, TOKEN};
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use trailwatch::site::ServeConfig;
use trailwatch::site::Server;

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// The seqs in every mirror file, in file order, read until `until` says enough (the mirror
/// follows the store on its own thread; there is no event to wait on from outside).
async fn mirrored(dir: &Path, until: impl Fn(&[u64]) -> bool) -> Vec<u64> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut seqs = Vec::new();
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for line in text.lines() {
                let v: Value = serde_json::from_str(line).unwrap();
                seqs.push(v["seq"].as_u64().unwrap());
            }
        }
        if until(&seqs) {
            return seqs;
        }
        assert!(Instant::now() < deadline, "the mirror holds only {seqs:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tailed_line_reaches_open_sockets_and_the_mirror() {
    let outside = tempfile::tempdir().unwrap();
    let log = outside.path().join("app.log");
    let mirror = outside.path().join("mirror");
    let server = TestServer::start_with(|c| {
        c.tails = vec![format!("{}:jsonl", log.display())];
        c.mirror_dir = Some(mirror.clone());
    })
    .await;
    let mut socket = server.socket("").await;
    assert!(socket.events_until_ready().await.is_empty());

    append(
        &log,
        "{\"userId\":\"alice\",\"action\":\"file.read\",\"allowed\":false}\n",
    );
    let m = socket.next_json().await;
    assert_eq!(m["type"], "event");
    assert_eq!(m["event"]["action"], "file.read");
    assert_eq!(m["event"]["outcome"], "denied");
    assert_eq!(m["event"]["source"], format!("tail:{}", log.display()));
    let seq = m["event"]["seq"].as_u64().unwrap();

    // The mirror has it, and the API serves the day's file.
    let seqs = mirrored(&mirror, |s| s.contains(&seq)).await;
    assert_eq!(seqs, [seq]);
    let (status, listing) = server.get("/api/v1/logs").await;
    assert_eq!(status, 200);
    let day = listing["days"][0]["date"].as_str().unwrap().to_string();
    assert_eq!(day, chrono::Utc::now().date_naive().to_string());
    let r = server
        .http
        .get(server.url(&format!("/api/v1/logs?date={day}")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/x-ndjson");
    let body = r.text().await.unwrap();
    let first: Value = serde_json::from_str(body.lines().next().unwrap()).unwrap();
    assert_eq!(first["seq"], seq);
    assert_eq!(first["user"]["id"], "alice");

    // Bad requests name the parameter.
    let (status, err) = server.get("/api/v1/logs?date=23.11.2026").await;
    assert_eq!(
        (status, err["field"].as_str()),
        (400, Some("date")),
        "{err}"
    );
    let (status, err) = server.get("/api/v1/logs?day=2026-11-23").await;
    assert_eq!((status, err["field"].as_str()), (400, Some("day")), "{err}");
    let (status, _) = server.get("/api/v1/logs?date=1999-01-01").await;
    assert_eq!(status, 404);
    // The download is audited (and mirrored in turn).
    let (_, page) = server.get("/api/v1/events?action=logs.download").await;
    assert_eq!(page["total"], 1, "{page}");
}

#[tokio::test]
async fn without_a_mirror_the_logs_endpoint_says_how_to_turn_it_on() {
    let server = TestServer::start().await;
    let (status, err) = server.get("/api/v1/logs").await;
    assert_eq!(status, 404);
    assert!(
        err["message"].as_str().unwrap().contains("--mirror-dir"),
        "{err}"
    );
}

#[tokio::test]
async fn a_bad_tail_is_refused_at_start_with_its_value() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.tails = vec![":jsonl".into()];
    let err = Server::bind(&config).await.err().unwrap().to_string();
    assert!(err.contains(":jsonl"), "{err}");
}

fn config(dir: &Path) -> ServeConfig {
    ServeConfig {
        max_body_bytes: 1 << 20,
        mirror_dir: Some(dir.join("mirror")),
        ..common::serve_config(dir)
    }
}

/// Runs a server on `dir` until the returned sender fires; the handle ends when it stopped.
async fn run(
    dir: &Path,
) -> (
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let server = Server::bind(&config(dir)).await.unwrap();
    let url = format!("http://{}", server.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        server
            .serve(async move {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    (url, stop, handle)
}

async fn post(url: &str, body: Value) -> u64 {
    let r: Value = reqwest::Client::new()
        .post(format!("{url}/api/v1/events"))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["lastSeq"].as_u64().unwrap_or_else(|| panic!("{r}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mirror_holds_every_event_exactly_once_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mirror = dir.path().join("mirror");
    let (url, stop, handle) = run(dir.path()).await;
    let last = post(&url, common::batch("before", 30)).await;
    assert_eq!(
        mirrored(&mirror, |s| s.len() as u64 >= last).await.len() as u64,
        last
    );
    stop.send(()).unwrap();
    handle.await.unwrap();

    // Stored while the mirror was not running: a store opened by another start of the
    // server, without the mirror, stands in for an outage of the mirror alone.
    let mut without = config(dir.path());
    without.mirror_dir = None;
    let server = Server::bind(&without).await.unwrap();
    let receipt = server
        .state
        .store
        .append(vec![trailwatch::ingest::normalize(
            &json!({"action": "file.write"}),
            &trailwatch::model::Source::http(),
            chrono::Utc::now(),
        )
        .unwrap()])
        .await
        .unwrap();
    drop(server);

    let (url, stop, handle) = run(dir.path()).await;
    let last = post(&url, common::batch("after", 20)).await;
    assert!(last > receipt.last_seq.0);
    let seqs = mirrored(&mirror, |s| s.last() == Some(&last)).await;
    assert_eq!(seqs, (1..=last).collect::<Vec<_>>());
    stop.send(()).unwrap();
    handle.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_loads_files_in_order_in_batches_keeping_unreadable_lines() {
    let server = TestServer::start().await;
    let outside = tempfile::tempdir().unwrap();
    let jsonl = outside.path().join("old.jsonl");
    let mut text = String::new();
    for i in 0..7 {
        text.push_str(&format!(
            "{{\"userId\":\"u{i}\",\"action\":\"file.read\",\"allowed\":true,\"timestamp\":\"2026-01-01T00:00:0{i}Z\"}}\n"
        ));
    }
    text.push_str("{\"userId\": oops}\n\n");
    append(&jsonl, &text);
    let log = outside.path().join("audit.log");
    append(
        &log,
        "[2025-12-17T17:39:46Z] Test audit entry - system check\n[2025-12-17T17:40:37Z] ERROR Auto-repair failed",
    );
    let args = trailwatch::cli::config::ImportArgs {
        files: vec![jsonl.clone(), log.clone()],
        format: None,
        batch: 3,
        url: Some(server.url("")),
        token: Some(TOKEN.into()),
        data_dir: None,
    };
    let mut seen = Vec::new();
    let report = trailwatch::cli::import::import(args, Default::default(), &mut |done, total| {
        seen.push((done, total))
    })
    .await
    .unwrap();
    assert_eq!(report.files, 2);
    assert_eq!(report.events, 10);
    assert_eq!(report.unreadable, 1);
    assert_eq!((report.first_seq, report.last_seq), (Some(1), Some(10)));
    let total = std::fs::metadata(&jsonl).unwrap().len() + std::fs::metadata(&log).unwrap().len();
    assert_eq!(seen.last(), Some(&(total, total)));
    assert!(seen.windows(2).all(|w| w[0].0 <= w[1].0), "{seen:?}");

    let (_, page) = server.get("/api/v1/events?limit=20").await;
    let mut items = page["items"].as_array().unwrap().clone();
    items.sort_by_key(|e| e["seq"].as_u64());
    let summary: Vec<(String, String, String)> = items
        .iter()
        .map(|e| {
            (
                e["source"].as_str().unwrap().to_string(),
                e["action"].as_str().unwrap().to_string(),
                e["level"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let jsonl_source = format!("import:{}", jsonl.display());
    let log_source = format!("import:{}", log.display());
    let mut want: Vec<(String, String, String)> = (0..7)
        .map(|_| (jsonl_source.clone(), "file.read".into(), "info".into()))
        .collect();
    want.push((
        jsonl_source.clone(),
        "log.unparsed".into(),
        "warning".into(),
    ));
    want.push((log_source.clone(), "log.entry".into(), "info".into()));
    want.push((log_source.clone(), "log.entry".into(), "error".into()));
    assert_eq!(summary, want);
    assert_eq!(items[7]["metadata"]["raw"], "{\"userId\": oops}");
    assert_eq!(items[0]["timestamp"], "2026-01-01T00:00:00Z");

    // A refused batch stops the import and says how much was stored before it.
    let args = trailwatch::cli::config::ImportArgs {
        files: vec![jsonl],
        format: None,
        batch: 3,
        url: Some(server.url("")),
        token: Some("wrong".into()),
        data_dir: None,
    };
    let err = trailwatch::cli::import::import(args, Default::default(), &mut |_, _| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("401") && err.contains("0 events were stored"),
        "{err}"
    );
}
