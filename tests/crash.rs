//! The real `trailwatch` binary killed with SIGKILL during concurrent ingest: after a restart
//! every acknowledged event is present exactly once, the chain verifies (offline, with
//! `trailwatch verify`), seq continues, and the rollups match a recount of the events. The
//! same binary's `emit` sends to a running server, and every command answers `--help`.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.
#![cfg(all(feature = "ssr", unix))]

mod common;

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TOKEN: &str = "crash-test-token";
const BIN: &str = env!("CARGO_BIN_EXE_trailwatch");

/// Starts `trailwatch serve` on a free port and waits for its "listening" log line.
fn start(data: &Path) -> (Child, String) {
    let mut command = Command::new(BIN);
    command
        .args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env("TRAILWATCH_ADMIN_TOKEN", TOKEN);
    common::spawn_listening(command)
}

async fn json_of(request: reqwest::RequestBuilder) -> Value {
    request
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_loses_no_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut child, url) = start(&data);
    let http = reqwest::Client::new();

    // Acknowledged receipts: description tag → seq.
    let acked: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let mut writers = Vec::new();
    for w in 0..4 {
        let (http, url, acked) = (http.clone(), url.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            for n in 0.. {
                let tags: Vec<String> = (0..10).map(|i| format!("w{w}-r{n}-e{i}")).collect();
                let body: Vec<Value> = tags
                    .iter()
                    .map(|t| json!({"action": "crash.test", "description": t}))
                    .collect();
                let sent = http
                    .post(format!("{url}/api/v1/events"))
                    .bearer_auth(TOKEN)
                    .json(&body)
                    .send()
                    .await;
                let Ok(r) = sent else { return };
                if r.status() != 201 {
                    return;
                }
                let Ok(receipt) = r.json::<Value>().await else {
                    return;
                };
                let first = receipt["firstSeq"].as_u64().unwrap();
                let mut acked = acked.lock().unwrap();
                for (i, t) in tags.into_iter().enumerate() {
                    acked.insert(t, first + i as u64);
                }
            }
        }));
    }
    // Kill once a good number of requests have been acknowledged, while writers are mid-flight.
    while acked.lock().unwrap().len() < 2_000 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();

    let verify = Command::new(BIN)
        .args(["verify", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success(), "verify failed: {out}");
    assert!(out.starts_with("chain OK"), "{out}");

    let (mut child, url) = start(&data);
    let mut stored: BTreeMap<String, u64> = BTreeMap::new();
    for page in 1.. {
        let r = json_of(http.get(format!("{url}/api/v1/events?limit=500&page={page}"))).await;
        let items = r["items"].as_array().unwrap();
        if items.is_empty() {
            break;
        }
        for e in items {
            let tag = e["description"].as_str().unwrap().to_string();
            let seq = e["seq"].as_u64().unwrap();
            assert!(
                stored.insert(tag, seq).is_none(),
                "an event is stored twice"
            );
        }
    }
    for (tag, seq) in &acked {
        assert_eq!(
            stored.get(tag),
            Some(seq),
            "acknowledged event {tag} (seq {seq}) is missing"
        );
    }
    let head = stored.values().max().copied().unwrap();
    assert_eq!(stored.len() as u64, head, "seqs are gap-free");
    // The rollups were written in the events' transactions: they match a recount exactly.
    let db = data.join(trailwatch::store::DB_FILE);
    common::rollups::assert_same(
        "after kill -9",
        &common::rollups::stored(&db),
        &common::rollups::recount_stored(&db),
    );
    assert_eq!(
        common::rollups::profiles_stored(&db),
        common::rollups::profiles_recount(&db),
        "the risk profiles match a recount after kill -9"
    );

    let r = json_of(
        http.post(format!("{url}/api/v1/events"))
            .json(&json!({"action": "after.restart"})),
    )
    .await;
    assert_eq!(
        r["firstSeq"].as_u64(),
        Some(head + 1),
        "seq continues after the restart"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn verify_names_the_first_bad_seq_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = trailwatch::store::Store::open(&data, Default::default()).unwrap();
        let events = (0..5)
            .map(|i| {
                let v = json!({"action": "x", "description": format!("d{i}")});
                trailwatch::ingest::normalize(
                    &v,
                    &trailwatch::model::Source::cli(),
                    chrono::Utc::now(),
                )
                .unwrap()
            })
            .collect();
        store.append(events).await.unwrap();
    });
    let conn = rusqlite::Connection::open(data.join(trailwatch::store::DB_FILE)).unwrap();
    conn.execute("UPDATE events SET action = 'y' WHERE seq = 3", [])
        .unwrap();
    drop(conn);
    let out = Command::new(BIN)
        .args(["verify", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("BROKEN at seq 3"), "{text}");
}

#[test]
fn verify_against_a_shipped_checkpoint_log_catches_a_truncation_the_local_files_hide() {
    use trailwatch::store::checkpoint::{LOG_FILE, PUBLIC_KEY_FILE};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let shipped = dir.path().join("shipped");
    std::fs::create_dir_all(&shipped).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = trailwatch::store::Store::open(&data, Default::default()).unwrap();
        let events = (0..1_200)
            .map(|i| {
                let v = json!({"action": "x", "description": format!("d{i}")});
                trailwatch::ingest::normalize(
                    &v,
                    &trailwatch::model::Source::cli(),
                    chrono::Utc::now(),
                )
                .unwrap()
            })
            .collect();
        store.append(events).await.unwrap();
        store
            .checkpointed()
            .wait_for(|&s| s >= 1_000)
            .await
            .unwrap();
    });
    drop(runtime);
    // The operator ships the log and the public key off the machine...
    for file in [LOG_FILE, PUBLIC_KEY_FILE] {
        std::fs::copy(data.join(file), shipped.join(file)).unwrap();
    }
    // ...and an intruder removes the newest events and the local log.
    let conn = rusqlite::Connection::open(data.join(trailwatch::store::DB_FILE)).unwrap();
    conn.execute("DELETE FROM events WHERE seq > 900", [])
        .unwrap();
    drop(conn);
    std::fs::remove_file(data.join(LOG_FILE)).unwrap();

    let local = Command::new(BIN)
        .args(["verify", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(local.status.success(), "the local files alone cannot tell");
    let out = Command::new(BIN)
        .args(["verify", "--data-dir"])
        .arg(&data)
        .arg("--checkpoints")
        .arg(shipped.join(LOG_FILE))
        .arg("--public-key")
        .arg(shipped.join(PUBLIC_KEY_FILE))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("BROKEN at seq 901: Truncated"), "{text}");
}

/// Runs the real binary with `args` and returns its standard output; it must succeed.
fn run_ok(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "trailwatch {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn emit_sends_one_event_to_a_running_server_and_every_command_has_help() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, url) = start(&dir.path().join("data"));
    let target = ["--url", url.as_str(), "--token", TOKEN];
    let mut args = vec!["emit", "--action", "file.read", "--user", "alice"];
    args.extend(["--outcome", "denied", "--description", "tried /etc/shadow"]);
    args.extend(target);
    assert_eq!(run_ok(&args).trim(), "stored as seq 1");
    let mut args = vec!["emit", "test", "Live streaming test"];
    args.extend(target);
    assert_eq!(run_ok(&args).trim(), "stored as seq 2");

    let http = reqwest::Client::new();
    let page = json_of(http.get(format!("{url}/api/v1/events"))).await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(page["total"], 2, "{page}");
    // Newest first.
    assert_eq!(items[0]["action"], "audit.test");
    assert_eq!(items[0]["description"], "Live streaming test");
    let read = &items[1];
    assert_eq!(
        (
            &read["action"],
            &read["user"]["id"],
            &read["outcome"],
            &read["description"],
            &read["source"]
        ),
        (
            &json!("file.read"),
            &json!("alice"),
            &json!("denied"),
            &json!("tried /etc/shadow"),
            &json!("cli")
        )
    );
    child.kill().unwrap();
    child.wait().unwrap();

    // Every command the top-level help lists answers --help with its own usage.
    let top = run_ok(&["--help"]);
    let commands: Vec<&str> = top
        .split("Commands:")
        .nth(1)
        .unwrap()
        .lines()
        .skip(1) // the rest of the heading's line
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    for expected in ["serve", "emit", "verify", "import", "token", "user"] {
        assert!(
            commands.contains(&expected),
            "{expected} not in {commands:?}"
        );
    }
    for command in commands {
        let help = run_ok(&[command, "--help"]);
        assert!(
            help.contains(&format!("Usage: trailwatch {command}")),
            "{command}: {help}"
        );
    }
}
