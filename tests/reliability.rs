//! Faults and abuse through a real server: a database that cannot grow, a thousand sockets
//! opened and dropped, a client that stops reading while fifty others receive, and generated
//! input for every parser. (Kill -9 during ingest is in `crash.rs`.)
//!
//! The tests that measure the process (tasks, descriptors, heap, latency) take `SERIAL`, so
//! no other test of this binary runs beside them and skews what they count.
#![allow(clippy::unwrap_used)]
// Only for the counting allocator below, which adds to a counter and calls `System`.
#![allow(unsafe_code)]

mod common;

use common::{TestServer, TOKEN};
use futures::StreamExt;
use serde_json::{json, Value};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// Counts the bytes the Rust side holds on the heap (events, queues, encoded messages), which
/// is what buffering for a slow client would grow; SQLite's page cache is its own.
struct Counting;

static HEAP: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        HEAP.fetch_add(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HEAP.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            HEAP.fetch_add(new_size, Ordering::Relaxed);
            HEAP.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Waits (polling, up to 20 s) until `done` holds; the process offers no event to await for
/// "the server has let go of a socket". Returns whether it held.
async fn eventually(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    done()
}

/// Open descriptors other than database files under `data`: the store keeps up to eight
/// pooled readers (each with its files open) after a burst of concurrent reads, which is a
/// bounded cache rather than a leak; sockets, pipes and everything else count.
fn open_descriptors(data: &std::path::Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(Result::ok)
        .filter(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| !target.starts_with(data)))
        .count()
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// `n` events of about `size` bytes, dated `days_ago` days back.
fn events(tag: &str, n: usize, size: usize, days_ago: i64) -> Value {
    let at = chrono::Utc::now().timestamp_millis() - days_ago * 86_400_000;
    let padding = "x".repeat(size);
    Value::Array(
        (0..n)
            .map(|i| {
                json!({"timestamp": at + i as i64, "action": "file.read",
                       "user": {"id": format!("user{}", i % 7)},
                       "description": format!("{tag}-{i} {padding}")})
            })
            .collect(),
    )
}

#[tokio::test]
async fn a_full_database_answers_507_stores_nothing_of_the_request_and_recovers_when_space_returns()
{
    let _serial = SERIAL.lock().await;
    let s = TestServer::start_with(|c| c.max_db_mb = Some(1)).await;

    // Old events fill the one MiB; each request that fits is acknowledged.
    let mut acknowledged = 0u64;
    let mut refused = None;
    for round in 0..500 {
        let (status, body) = s.post(&events(&format!("old{round}"), 40, 300, 400)).await;
        match status {
            201 => acknowledged = body["lastSeq"].as_u64().unwrap(),
            _ => {
                refused = Some((status, body));
                break;
            }
        }
    }
    let (status, body) = refused.expect("one MiB never filled up");
    assert_eq!(status, 507, "{body}");
    assert_eq!(body["error"], "storage_full", "{body}");
    assert!(acknowledged > 0);

    let (_, health) = s.get("/api/health").await;
    assert_eq!(
        (
            health["status"].as_str(),
            health["components"]["store"].as_str()
        ),
        (Some("degraded"), Some("full")),
        "{health}"
    );
    // Still full: refused again, and the writer is still there to refuse it.
    let (status, _) = s.post(&events("still-full", 40, 300, 400)).await;
    assert_eq!(status, 507);

    // Every acknowledged event is stored, nothing of the refused requests, and the chain holds.
    let (_, report) = s.get("/api/v1/verify").await;
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["headSeq"].as_u64(), Some(acknowledged), "{report}");
    let (_, page) = s.get("/api/v1/events?limit=1").await;
    assert_eq!(page["total"].as_u64(), Some(acknowledged), "{page}");

    // Space returns (retention removes the old events); ingest works again without a restart.
    let (status, cleaned) = s
        .http
        .delete(s.url("/api/v1/events/cleanup?days=30"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map(|st| (st, ()))
        .unwrap();
    assert_eq!(status, 200, "{cleaned:?}");
    let (_, chain) = s.get("/api/v1/verify").await;
    let head = chain["headSeq"].as_u64().unwrap();
    let (status, receipt) = s.post(&events("after", 40, 300, 0)).await;
    assert_eq!(status, 201, "{receipt}");
    assert_eq!(
        receipt["firstSeq"].as_u64(),
        Some(head + 1),
        "seq continues"
    );
    let (_, health) = s.get("/api/health").await;
    assert_eq!(health["components"]["store"], "ready", "{health}");
    let (_, report) = s.get("/api/v1/verify").await;
    assert_eq!(report["ok"], true, "{report}");
}

/// Opens the socket, reads its backlog through `ready`, then either says goodbye or drops the
/// connection without a word, as a closed laptop would.
async fn connect_and_leave(addr: std::net::SocketAddr, politely: bool) {
    let url = format!("ws://{addr}/ws/audit?token={TOKEN}&sinceSeq=0");
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("no ready within 10 s")
            .unwrap()
            .unwrap();
        if let Message::Text(t) = msg {
            if serde_json::from_str::<Value>(&t).unwrap()["type"] == "ready" {
                break;
            }
        }
    }
    if politely {
        ws.close(None).await.unwrap();
        // Wait for the server's close frame, then the end of the stream.
        while let Some(Ok(_)) = ws.next().await {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_connects_and_disconnects_leak_no_tasks_or_descriptors() {
    let _serial = SERIAL.lock().await;
    let s = TestServer::start().await;
    s.post(&common::batch("backlog", 20)).await;
    // Warm up whatever starts lazily (pools, the hub's first subscriber).
    for i in 0..20 {
        connect_and_leave(s.addr, i % 2 == 0).await;
    }
    let data = s.dir.path().to_path_buf();
    let open_descriptors = || open_descriptors(&data);
    let (tasks, fds) = (alive_tasks(), open_descriptors());
    assert!(
        eventually(|| alive_tasks() <= tasks && open_descriptors() <= fds).await,
        "the warm-up did not settle"
    );
    let (tasks, fds) = (alive_tasks(), open_descriptors());

    // Ten at a time, half closing politely and half vanishing.
    for round in 0..100 {
        let clients: Vec<_> = (0..10)
            .map(|i| tokio::spawn(connect_and_leave(s.addr, (round + i) % 2 == 0)))
            .collect();
        for c in clients {
            c.await.unwrap();
        }
    }
    // Events still reach a new client: the hub is intact.
    let mut ws = s.socket("&sinceSeq=20").await;
    assert!(ws.events_until_ready().await.is_empty());
    s.post(&common::batch("after", 1)).await;
    assert_eq!(ws.events(1).await, vec![21]);
    drop(ws);

    assert!(
        eventually(|| alive_tasks() <= tasks && open_descriptors() <= fds).await,
        "after 1,000 sockets: {} tasks (was {tasks}), {} descriptors (was {fds})",
        alive_tasks(),
        open_descriptors()
    );
}

/// The Rust heap once it has stopped moving (five samples 100 ms apart within 64 KiB), after
/// background work such as indexing has let go of what it held; at most 20 s.
async fn settled() -> usize {
    let mut samples = vec![HEAP.load(Ordering::Relaxed)];
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        samples.push(HEAP.load(Ordering::Relaxed));
        let last = &samples[samples.len().saturating_sub(5)..];
        let (lo, hi) = (last.iter().min().unwrap(), last.iter().max().unwrap());
        if last.len() == 5 && hi - lo < 64 * 1024 {
            break;
        }
    }
    *samples.last().unwrap()
}

/// Per client, the time from just before each POST to that event's arrival.
struct Receivers {
    handles: Vec<tokio::task::JoinHandle<Vec<(u64, Instant)>>>,
}

impl Receivers {
    async fn start(s: &TestServer, clients: usize, since: u64, until: u64) -> Receivers {
        let mut handles = Vec::new();
        for _ in 0..clients {
            let mut ws = s.socket(&format!("&sinceSeq={since}")).await;
            ws.events_until_ready().await;
            handles.push(tokio::spawn(async move {
                let mut got = Vec::new();
                loop {
                    let m = ws.next_json().await;
                    if m["type"] == "event" {
                        let seq = m["event"]["seq"].as_u64().unwrap();
                        got.push((seq, Instant::now()));
                        if seq >= until {
                            return got;
                        }
                    }
                }
            }));
        }
        Receivers { handles }
    }

    /// Every client's arrivals, after checking each got every seq of `range` once, in order.
    async fn arrivals(self, range: std::ops::RangeInclusive<u64>) -> Vec<(u64, Instant)> {
        let mut all = Vec::new();
        for h in self.handles {
            let got = h.await.unwrap();
            let seqs: Vec<u64> = got.iter().map(|(s, _)| *s).collect();
            assert_eq!(
                seqs,
                range.clone().collect::<Vec<_>>(),
                "no gap, no duplicate"
            );
            all.extend(got);
        }
        all
    }

    /// Every client's latencies, sorted, from when each seq was `sent`.
    async fn latencies(
        self,
        range: std::ops::RangeInclusive<u64>,
        sent: &std::collections::HashMap<u64, Instant>,
    ) -> Vec<Duration> {
        let mut all: Vec<Duration> = self
            .arrivals(range)
            .await
            .iter()
            .map(|(seq, at)| at.duration_since(sent[seq]))
            .collect();
        all.sort();
        all
    }
}

/// Posts `n` single events at about 200 a second; returns when each was sent, by seq.
async fn paced(s: &TestServer, tag: &str, n: usize) -> std::collections::HashMap<u64, Instant> {
    let mut sent = std::collections::HashMap::new();
    for i in 0..n {
        let at = Instant::now();
        let (status, r) = s
            .post(&json!({"action": "paced", "description": format!("{tag}-{i}")}))
            .await;
        assert_eq!(status, 201);
        sent.insert(r["firstSeq"].as_u64().unwrap(), at);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    sent
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_client_does_not_slow_fifty_others_or_grow_the_servers_memory() {
    let _serial = SERIAL.lock().await;
    const PACED: usize = 100;
    let s = TestServer::start_with(|c| c.live_queue = 1024).await;

    // Baseline: fifty clients, nobody stalled.
    let receivers = Receivers::start(&s, 50, 0, PACED as u64).await;
    let sent = paced(&s, "baseline", PACED).await;
    let baseline = receivers.latencies(1..=PACED as u64, &sent).await;

    // Fill the live queues with events of the bulk's size first: a queue's slots are bounded
    // by count, so the heap they hold grows once from small events to large ones.
    for round in 0..3 {
        let (status, _) = s.post(&events(&format!("warm{round}"), 500, 2000, 0)).await;
        assert_eq!(status, 201);
    }
    let mut head = PACED as u64 + 1500;

    // A client that stops reading after `ready`, with a tiny receive buffer.
    let mut stalled = common::stalled_socket(s.addr, "").await;
    assert_eq!(stalled.events_until_ready().await.len(), 100);

    // Bulk traffic the stalled client cannot take, twice 5 MB, while five others read it all
    // (fifty would make this half a gigabyte of socket traffic for a debug build to parse).
    // What the server keeps for the stalled client is bounded by the live queue's slots and
    // one page read from the store, so the second 5 MB must not raise the heap further.
    const HALF: u64 = 5 * 500;
    let mut settled_heap = Vec::new();
    for half in 0..2 {
        let receivers = Receivers::start(&s, 5, head, head + HALF).await;
        for round in 0..5 {
            let (status, _) = s
                .post(&events(&format!("bulk{half}{round}"), 500, 2000, 0))
                .await;
            assert_eq!(status, 201);
        }
        receivers.arrivals(head + 1..=head + HALF).await;
        head += HALF;
        // A search waits until the index covers the head; then what the indexer was handed
        // is let go of, which is transient.
        let (status, _) = s.get("/api/v1/events?search_query=bulk&limit=1").await;
        assert_eq!(status, 200);
        settled_heap.push(settled().await);
    }
    let grown = settled_heap[1] as i64 - settled_heap[0] as i64;
    assert!(
        grown < 1024 * 1024,
        "the heap grew by {grown} bytes over the second 5 MB the stalled client never read \
         ({settled_heap:?})"
    );

    // With the stalled client still connected, the fifty are as quick as before. Up to three
    // rounds: a pause of the whole server (a WAL checkpoint, the debug build's allocator)
    // lands in one round of a hundred events and can push its p99 past 2x whether or not a
    // client is stalled (the same test failed so without it, 1 run in 6), while a stalled
    // client that slowed the others would slow every round.
    let margin = Duration::from_millis(1);
    let within = |(before, now): &(Duration, Duration)| *now <= *before * 2 + margin;
    let mut rounds: Vec<[(Duration, Duration); 2]> = Vec::new();
    let mut quick = false;
    while !quick && rounds.len() < 3 {
        let receivers = Receivers::start(&s, 50, head, head + PACED as u64).await;
        let sent = paced(&s, &format!("stalled{}", rounds.len()), PACED).await;
        let during = receivers
            .latencies(head + 1..=head + PACED as u64, &sent)
            .await;
        head += PACED as u64;
        let round = [0.5, 0.99].map(|p| (percentile(&baseline, p), percentile(&during, p)));
        quick = round.iter().all(within);
        rounds.push(round);
    }
    assert!(
        quick,
        "with a stalled client, (baseline, now) at p50 and p99 in each round: {rounds:?}"
    );

    // The stalled client was kept, not dropped: reading now, it is told it lagged and then
    // gets everything, in order, from the store.
    let mut seqs = Vec::new();
    let mut lagged = false;
    while seqs.last() != Some(&head) {
        let m = stalled.next_json().await;
        match m["type"].as_str() {
            Some("event") => seqs.push(m["event"]["seq"].as_u64().unwrap()),
            Some("lagged") => lagged = true,
            _ => {}
        }
    }
    assert!(lagged);
    // It had the warm-up's last 100 events before `ready`; everything after, once each.
    let expected: Vec<u64> = (PACED as u64 + 1501..=head).collect();
    assert!(
        seqs == expected,
        "the stalled client got {} events from {:?} to {:?}, not {} from {} on",
        seqs.len(),
        seqs.first(),
        seqs.last(),
        expected.len(),
        expected[0]
    );
}

mod parsers {
    use chrono::{DateTime, Utc};
    use proptest::prelude::*;
    use trailwatch::ingest::{parse_body, BodyFormat};
    use trailwatch::model::EventFilter;
    use trailwatch::model::Source;
    use trailwatch::search::Query;
    use trailwatch::tail::parse::{event_for_line, LineFormat, Origin};

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_770_000_000_000).unwrap()
    }

    /// JSON-ish text: the parsers' own vocabulary mixed with noise, so generated input gets
    /// past the first brace often enough to reach the field checks.
    fn jsonish() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("{".to_string()),
            Just("}".to_string()),
            Just("[".to_string()),
            Just("]".to_string()),
            Just(",".to_string()),
            Just(":".to_string()),
            Just("\n".to_string()),
            Just("\"timestamp\":".to_string()),
            Just("\"level\":".to_string()),
            Just("\"action\":".to_string()),
            Just("\"user\":".to_string()),
            Just("\"userId\":".to_string()),
            Just("\"allowed\":".to_string()),
            Just("\"changes\":".to_string()),
            Just("\"metadata\":".to_string()),
            Just("\"riskScore\":".to_string()),
            Just("\"request\":".to_string()),
            Just("\"outcome\":".to_string()),
            Just("\"error\"".to_string()),
            Just("\"denied\"".to_string()),
            Just("1770254502321".to_string()),
            Just("-1e309".to_string()),
            Just("18446744073709551616".to_string()),
            Just("\"2026-13-45T99:99:99Z\"".to_string()),
            Just("null".to_string()),
            Just("true".to_string()),
            any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap()),
            any::<i64>().prop_map(|n| n.to_string()),
            "[ -~]{0,8}",
        ];
        prop::collection::vec(piece, 0..40).prop_map(|v| v.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn ingest_never_panics_and_refuses_with_named_fields(body in jsonish()) {
            for format in [BodyFormat::Json, BodyFormat::Ndjson] {
                match parse_body(body.as_bytes(), format, &Source::http(), now()) {
                    Ok(events) => prop_assert!(!events.is_empty()),
                    Err(trailwatch::ingest::IngestError::Invalid(errors)) => {
                        prop_assert!(!errors.is_empty());
                        // The field is empty only when the record as a whole is at fault.
                        prop_assert!(errors.iter().all(|e| !e.message.is_empty()));
                    }
                    Err(trailwatch::ingest::IngestError::Empty) => {}
                }
            }
        }

        #[test]
        fn ingest_takes_raw_bytes_without_panicking(body in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_body(&body, BodyFormat::Ndjson, &Source::http(), now());
            let _ = parse_body(&body, BodyFormat::Json, &Source::http(), now());
        }

        #[test]
        fn the_query_syntax_never_panics(input in "[ -~]{0,60}|(level:|user:|risk>|risk<|outcome:|-|\"|\\*|OR |\\(|\\)|[a-z]{1,6}| ){0,12}") {
            if let Ok(query) = Query::parse(&input) {
                let _ = query.highlight(trailwatch::search::Column::Description, &input);
            }
            if let Ok(filter) = EventFilter::from_json(&serde_json::json!({"q": input})) {
                let _ = filter.compile();
            }
        }

        #[test]
        fn a_tailed_line_always_becomes_an_event_or_is_blank(line in prop_oneof![jsonish(), "\\[[ -~]{0,30}\\][ -~]{0,40}", any::<String>()]) {
            let source = Source("tail:/var/log/app.log".into());
            let origin = Origin { source: &source, file: "/var/log/app.log", line: 7 };
            for format in [LineFormat::Jsonl, LineFormat::Text] {
                let blank = line.bytes().all(|b| b.is_ascii_whitespace());
                let event = event_for_line(line.as_bytes(), format, &origin, false, now());
                prop_assert_eq!(event.is_none(), blank, "nothing dropped but blank lines");
            }
        }

        #[test]
        fn a_syslog_stream_becomes_events_however_it_is_cut(
            stream in prop_oneof![
                prop::collection::vec(any::<u8>(), 0..600),
                "((<[0-9]{1,3}>1? ?[ -~]{0,40}\n)|([0-9]{1,3} <[0-9]{1,3}>[ -~]{0,20})|\n){0,8}".prop_map(String::into_bytes),
            ],
            cut in 0usize..600,
        ) {
            use trailwatch::ingest::syslog::{event, Deframer, Frame, Origin as Peer};
            let peer = Peer { source: Source("syslog:tcp://127.0.0.1:6514".into()), peer: "127.0.0.1:1".into() };
            let mut d = Deframer::default();
            let cut = cut.min(stream.len());
            let mut frames: Vec<Frame> = Vec::new();
            d.push(&stream[..cut]);
            frames.extend(std::iter::from_fn(|| d.next_frame()));
            d.push(&stream[cut..]);
            frames.extend(std::iter::from_fn(|| d.next_frame()));
            frames.extend(d.finish());
            // Frames hold bytes of the stream only, and each becomes an event (none is dropped).
            let framed: usize = frames.iter().map(|f| match f {
                Frame::Message(m) => m.len(),
                Frame::TooLong { head, .. } => head.len(),
            }).sum();
            prop_assert!(framed <= stream.len());
            for frame in frames {
                let e = event(frame, &peer, now());
                prop_assert!(!e.action.is_empty());
            }
        }

        #[test]
        fn otlp_and_kubernetes_bodies_never_panic(body in prop::collection::vec(any::<u8>(), 0..512), json in jsonish()) {
            use trailwatch::ingest::otlp::{decode, map_request, Encoding};
            for bytes in [&body[..], json.as_bytes()] {
                for encoding in [Encoding::Protobuf, Encoding::Json] {
                    if let Ok(request) = decode(bytes, encoding) {
                        let _ = map_request(&request, now());
                    }
                }
                let _ = trailwatch::ingest::kubernetes::parse_batch(bytes, now());
            }
        }
    }
}
