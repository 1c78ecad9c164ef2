//! Three `trailwatch serve` processes on one PostgreSQL database (a throwaway cluster of this
//! test binary's own), as an operator runs them: concurrent ingest to all three, a live
//! client on node 1 that sees every node's events in seq order, node 1 killed with SIGKILL
//! mid-stream and the client resuming on node 2 with no gap and no duplicate, every
//! acknowledged event stored once, the chain verifying, and sessions and revocations holding
//! across nodes.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.
#![cfg(all(feature = "ssr", unix))]

mod common;

use common::postgres::cluster;
use common::TOKEN;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

const BIN: &str = env!("CARGO_BIN_EXE_trailwatch");

/// Starts node `name` of the cluster at `url`; returns the process and its base URL.
fn start(url: &str, name: &str, data: &Path, key: &Path) -> (Child, String) {
    let mut command = Command::new(BIN);
    command
        .args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .args(["--database", url, "--node-name", name, "--cluster-key"])
        .arg(key)
        .env("TRAILWATCH_ADMIN_TOKEN", TOKEN);
    common::spawn_listening(command)
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A live client subscribed to `base` from `since`.
async fn subscribe(base: &str, since: u64) -> Ws {
    let url = format!(
        "{}/ws/audit?token={TOKEN}",
        base.replace("http://", "ws://")
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let msg = json!({"type": "subscribe", "sinceSeq": since});
    ws.send(Message::Text(msg.to_string().into()))
        .await
        .unwrap();
    ws
}

/// Reads events from `ws` into `got` (seq and tag) until it has `until` of them, or the
/// socket ends (`false`).
async fn read_events(ws: &mut Ws, got: &mut Vec<(u64, String)>, until: usize) -> bool {
    while got.len() < until {
        let next = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("the stream stalled");
        let text = match next {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return false,
            Some(Ok(_)) => continue,
        };
        let m: Value = serde_json::from_str(&text).unwrap();
        if m["type"] == "event" {
            let tag = m["event"]["description"].as_str().unwrap_or("").to_string();
            got.push((m["event"]["seq"].as_u64().unwrap(), tag));
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_behave_as_one_and_a_client_resumes_on_another_after_kill_9() {
    let url = cluster().database("three_nodes").await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("cluster.key");
    std::fs::write(&key, hex::encode([42u8; 32])).unwrap();
    let mut nodes: Vec<(Child, String)> = ["n1", "n2", "n3"]
        .iter()
        .map(|n| start(&url, n, &dir.path().join(n), &key))
        .collect();
    let bases: Vec<String> = nodes.iter().map(|(_, b)| b.clone()).collect();
    let http = reqwest::Client::new();

    let mut client = subscribe(&bases[0], 0).await;

    // One writer per node, five events a request, until told to stop or its node dies.
    let acked: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for (w, base) in bases.iter().enumerate() {
        let (http, base, acked, stop) = (http.clone(), base.clone(), acked.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let tags: Vec<String> = (0..5).map(|i| format!("n{}-{n}-{i}", w + 1)).collect();
                n += 1;
                let body: Vec<Value> = tags
                    .iter()
                    .map(|t| json!({"action": "cluster.test", "user": "u", "description": t}))
                    .collect();
                let Ok(r) = http
                    .post(format!("{base}/api/v1/events"))
                    .bearer_auth(TOKEN)
                    .json(&body)
                    .send()
                    .await
                else {
                    return;
                };
                if r.status() != 201 {
                    return;
                }
                let receipt: Value = r.json().await.unwrap();
                let first = receipt["firstSeq"].as_u64().unwrap();
                let mut acked = acked.lock().unwrap();
                for (i, t) in tags.into_iter().enumerate() {
                    acked.insert(t, first + i as u64);
                }
            }
        }));
    }

    // The client on node 1 sees every node's events, in seq order.
    let mut got: Vec<(u64, String)> = Vec::new();
    assert!(read_events(&mut client, &mut got, 600).await);
    let from: BTreeSet<&str> = got.iter().filter_map(|(_, t)| t.get(..2)).collect();
    assert!(
        ["n1", "n2", "n3"].iter().all(|n| from.contains(n)),
        "{from:?}"
    );

    // Node 1 dies mid-stream; the client resumes on node 2 from the last seq it saw.
    let (mut n1, _) = nodes.remove(0);
    n1.kill().unwrap(); // SIGKILL
    n1.wait().unwrap();
    read_events(&mut client, &mut got, usize::MAX).await;
    let last = got.last().unwrap().0;
    let mut client = subscribe(&bases[1], last).await;
    let more = got.len() + 300;
    assert!(read_events(&mut client, &mut got, more).await);
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let head = {
        let page: Value = http
            .get(format!("{}/api/v1/events?limit=1", bases[2]))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        page["headSeq"].as_u64().unwrap()
    };
    read_events(&mut client, &mut got, head as usize).await;

    // No gap, no duplicate, across the switch.
    let seqs: Vec<u64> = got.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, (1..=head).collect::<Vec<_>>());
    // Every acknowledged event is there once, at the seq its receipt gave.
    let streamed: BTreeMap<&str, u64> = got.iter().map(|(s, t)| (t.as_str(), *s)).collect();
    for (tag, seq) in acked.lock().unwrap().iter() {
        assert_eq!(streamed.get(tag.as_str()), Some(seq), "{tag}");
    }

    // The chain verifies, with the cluster's checkpoints.
    let public = dir.path().join("cluster.pub");
    let signing = ed25519_dalek::SigningKey::from_bytes(&[42u8; 32]);
    std::fs::write(&public, hex::encode(signing.verifying_key().to_bytes())).unwrap();
    let out = Command::new(BIN)
        .args(["verify", "--database", &url, "--public-key"])
        .arg(&public)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(&format!("chain OK: {head} events")), "{text}");

    // A session made on node 2 is valid on node 3; a token revoked on node 2 is refused by 3.
    let login = http
        .post(format!("{}/api/fn/login", bases[1]))
        .form(&[("token", TOKEN)])
        .send()
        .await
        .unwrap();
    let cookie = login.headers()["set-cookie"].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_string();
    let on_3 = http
        .get(format!("{}/api/v1/events?limit=1", bases[2]))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(on_3.status(), 200);
    let made: Value = http
        .post(format!("{}/api/v1/tokens", bases[2]))
        .bearer_auth(TOKEN)
        .json(&json!({"name": "shipper", "scope": "ingest"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = made["token"].as_str().unwrap().to_string();
    let revoked = http
        .delete(format!("{}/api/v1/tokens/shipper", bases[1]))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert!(revoked.status().is_success());
    let refused = http
        .post(format!("{}/api/v1/events", bases[2]))
        .bearer_auth(&secret)
        .json(&json!({"action": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);

    for (mut child, _) in nodes {
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
