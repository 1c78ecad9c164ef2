//! The explorer's back end through real components: every filter and combination against a
//! brute-force reference (through the store and through the REST API), keyset paging, strict
//! parameters, the filtered live subscription, the streamed export and the distinct values.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.
#![cfg(feature = "ssr")]

mod common;

use common::random::{self, Rng};
use common::{TestServer, TOKEN};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use trailwatch::model::{AuditEvent, EventFilter, EventOrder, Seq, StoredEvent};
use trailwatch::store::{Cursor, PageRequest, Store, StoreOptions};

const EVENTS: usize = 700;

fn options() -> StoreOptions {
    StoreOptions {
        durable: false,
        ..StoreOptions::default()
    }
}

/// A store in `dir` holding `n` random events; returns it with every event as stored.
async fn random_store(dir: &std::path::Path, seed: u64, n: usize) -> (Store, Vec<StoredEvent>) {
    let store = Store::open(dir, options()).unwrap();
    let mut rng = Rng::new(seed);
    let events: Vec<AuditEvent> = (0..n).map(|i| random::event(&mut rng, i)).collect();
    for chunk in events.chunks(100) {
        store.append(chunk.to_vec()).await.unwrap();
    }
    let stored = store.read_from(Seq(0), n + 1).await.unwrap();
    assert_eq!(stored.len(), n);
    (store, stored)
}

/// The seqs `filter` should select, newest first, by the shared matcher.
fn reference(filter: &EventFilter, events: &[StoredEvent]) -> Vec<u64> {
    let query = filter.compile().unwrap();
    events
        .iter()
        .rev()
        .filter(|e| query.matches(e))
        .map(|e| e.seq.0)
        .collect()
}

fn all(limit: u32) -> PageRequest {
    PageRequest {
        order: trailwatch::model::EventOrder::ARRIVAL,
        cursor: None,
        page: 1,
        limit,
        count_limit: None,
    }
}

#[tokio::test]
async fn every_filter_combination_agrees_with_brute_force_through_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let (store, events) = random_store(dir.path(), 7, EVENTS).await;
    let mut rng = Rng::new(99);
    let mut nonempty = 0;
    for round in 0..400 {
        let filter = random::filter(&mut rng, EVENTS);
        let want = reference(&filter, &events);
        let query = filter.compile().unwrap();
        let page = store.query(query.clone(), all(1000)).await.unwrap();
        let got: Vec<u64> = page.items.iter().map(|e| e.seq.0).collect();
        assert_eq!(got, want, "round {round}: {filter:?}");
        assert_eq!(page.total, want.len() as u64, "round {round}: {filter:?}");
        nonempty += usize::from(!want.is_empty() && want.len() < EVENTS);

        // Each order, both ways, by the shared comparator.
        let order = random::order(round);
        let want = random::sorted(&events, &query, order);
        // Counted exactly and capped (as the explorer's is), in turn: the page is the same.
        let count_limit = (round % 2 == 1).then_some(3);
        let page = store
            .query(
                query.clone(),
                PageRequest {
                    order,
                    count_limit,
                    ..all(1000)
                },
            )
            .await
            .unwrap();
        let got: Vec<u64> = page.items.iter().map(|e| e.seq.0).collect();
        assert_eq!(got, want, "round {round} {order:?}: {filter:?}");

        if round % 4 == 0 {
            // Keyset pages of 13 walk the same list with no gap and no repeat.
            let mut walked = Vec::new();
            let mut cursor = None;
            loop {
                let req = PageRequest {
                    order,
                    cursor,
                    count_limit: Some(3),
                    ..all(13)
                };
                let page = store.query(query.clone(), req).await.unwrap();
                walked.extend(page.items.iter().map(|e| e.seq.0));
                match page.next_cursor {
                    Some(c) => cursor = Some(Cursor::parse(&c, order).unwrap()),
                    None => break,
                }
            }
            assert_eq!(
                walked, want,
                "round {round} {order:?} by cursor: {filter:?}"
            );
            // The second page by number holds the same rows as the walk's second page.
            let req = PageRequest {
                order,
                page: 2,
                count_limit: Some(3),
                ..all(13)
            };
            let second = store.query(query.clone(), req).await.unwrap();
            let got: Vec<u64> = second.items.iter().map(|e| e.seq.0).collect();
            let want_second: Vec<u64> = want.iter().copied().skip(13).take(13).collect();
            assert_eq!(
                got, want_second,
                "round {round} {order:?} page 2: {filter:?}"
            );
            // An export lists the same events in the same order.
            let exported = store
                .for_each_matching(query.clone(), order, Vec::new(), |all, e| {
                    all.push(e.seq.0);
                    true
                })
                .await
                .unwrap();
            assert_eq!(exported, want, "round {round} {order:?} export: {filter:?}");
        }
    }
    assert!(
        nonempty > 150,
        "only {nonempty} filters selected a proper subset"
    );
}

#[tokio::test]
async fn counting_stops_at_the_cap_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (store, events) = random_store(dir.path(), 3, 300).await;
    let filter = EventFilter {
        q: Some("-user:nobody".into()),
        ..Default::default()
    };
    let req = PageRequest {
        count_limit: Some(100),
        ..all(10)
    };
    let page = store.query(filter.compile().unwrap(), req).await.unwrap();
    assert_eq!((page.total, page.total_is_lower_bound), (100, true));
    assert_eq!(page.head_seq, events.last().unwrap().seq);
    let exact = store
        .query(filter.compile().unwrap(), all(10))
        .await
        .unwrap();
    assert_eq!((exact.total, exact.total_is_lower_bound), (300, false));
}

/// Full-text matches past the store's sorting threshold (5,000) are found in event time by
/// walking the time index, and in arrival order from the matches' set: pages, cursors, page
/// numbers and counts agree with the shared matcher either way, with fields and negations.
#[tokio::test]
async fn many_full_text_matches_page_and_count_exactly_in_every_order() {
    let dir = tempfile::tempdir().unwrap();
    let (store, events) = random_store(dir.path(), 21, 8_500).await;
    let mut walked_sets = 0;
    for (q, orders) in [
        ("a", [EventOrder::default(), EventOrder::ARRIVAL]),
        (
            "a level:error,warning",
            [
                EventOrder::default().reversed(),
                EventOrder::ARRIVAL.reversed(),
            ],
        ),
        ("a -user:bob", [EventOrder::default(), EventOrder::ARRIVAL]),
    ] {
        let query = EventFilter {
            q: Some(q.into()),
            ..Default::default()
        }
        .compile()
        .unwrap();
        // The words alone decide the path: more than the threshold, whatever else is asked.
        let words = EventFilter {
            q: Some("a".into()),
            ..Default::default()
        }
        .compile()
        .unwrap();
        walked_sets += usize::from(events.iter().filter(|e| words.matches(e)).count() > 5_000);
        for order in orders {
            let want = random::sorted(&events, &query, order);
            let mut walked = Vec::new();
            let mut cursor = None;
            loop {
                let req = PageRequest {
                    order,
                    cursor,
                    count_limit: Some(10_000),
                    ..all(97)
                };
                let page = store.query(query.clone(), req).await.unwrap();
                // A capped count never claims more than match, and says when it stopped.
                assert!(page.total <= want.len() as u64, "{q} {order:?}");
                assert_eq!(
                    page.total_is_lower_bound,
                    page.total < want.len() as u64,
                    "{q} {order:?}: {} of {}",
                    page.total,
                    want.len()
                );
                walked.extend(page.items.iter().map(|e| e.seq.0));
                match page.next_cursor {
                    Some(c) => cursor = Some(Cursor::parse(&c, order).unwrap()),
                    None => break,
                }
            }
            assert_eq!(walked, want, "{q} {order:?} by cursor");
            let third = store
                .query(
                    query.clone(),
                    PageRequest {
                        order,
                        page: 3,
                        ..all(97)
                    },
                )
                .await
                .unwrap();
            let got: Vec<u64> = third.items.iter().map(|e| e.seq.0).collect();
            let want_third: Vec<u64> = want.iter().copied().skip(194).take(97).collect();
            assert_eq!(got, want_third, "{q} {order:?} page 3");
            assert_eq!(
                (third.total, third.total_is_lower_bound),
                (want.len() as u64, false),
                "{q} {order:?} exact count"
            );
        }
    }
    assert_eq!(walked_sets, 3, "the word must match more than 5,000 events");
}

/// A first page shorter than its limit is its own exact count, however small the cap.
#[tokio::test]
async fn a_short_first_page_is_counted_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (store, events) = random_store(dir.path(), 5, 300).await;
    for q in ["user:alice level:error", "door user:bob"] {
        let query = EventFilter {
            q: Some(q.into()),
            ..Default::default()
        }
        .compile()
        .unwrap();
        let want = random::sorted(&events, &query, EventOrder::default());
        assert!(!want.is_empty() && want.len() < 100, "{q}: {}", want.len());
        let req = PageRequest {
            order: EventOrder::default(),
            count_limit: Some(1),
            ..all(100)
        };
        let page = store.query(query, req).await.unwrap();
        assert_eq!(
            (page.total, page.total_is_lower_bound),
            (want.len() as u64, false),
            "{q}"
        );
    }
}

/// A server over a data directory filled with random events.
async fn random_server(seed: u64, n: usize) -> (TestServer, Vec<StoredEvent>) {
    let data = tempfile::tempdir().unwrap();
    let (store, events) = random_store(data.path(), seed, n).await;
    drop(store);
    let path = data.path().to_path_buf();
    let s = if common::on_postgres() {
        // The same events, copied into the node's database as `trailwatch migrate` does.
        let url = common::postgres::cluster()
            .database(&format!("search_{seed}"))
            .await;
        trailwatch::store::postgres::copy_sqlite(&path, &url, &mut |_| {})
            .await
            .unwrap();
        let key = path.join(trailwatch::store::checkpoint::KEY_FILE);
        TestServer::start_with(move |c| {
            c.cluster = Some(trailwatch::site::ClusterConfig {
                url,
                node: Some("test-node".into()),
                key_file: Some(key),
            })
        })
        .await
    } else {
        TestServer::start_with(move |c| c.data_dir = path).await
    };
    // The server opened the directory; keep it alive as long as the server.
    std::mem::forget(data);
    (s, events)
}

async fn get(s: &TestServer, path: &str, query: &[(String, String)]) -> (u16, Value) {
    let r = s
        .http
        .get(s.url(path))
        .query(query)
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

fn seqs(page: &Value) -> Vec<u64> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn every_filter_combination_agrees_with_brute_force_through_rest() {
    let (s, events) = random_server(11, 400).await;
    let mut rng = Rng::new(5);
    for round in 0..120 {
        let filter = random::filter(&mut rng, events.len());
        let mut query = filter.rest_params();
        query.push(("limit".into(), "500".into()));
        // Event time, newest first, unless `sort` says otherwise.
        let order = if round % 2 == 0 {
            EventOrder::default()
        } else {
            let order = random::order(round / 2);
            query.push(("sort".into(), order.as_param()));
            order
        };
        let want = random::sorted(&events, &filter.compile().unwrap(), order);
        let (status, page) = get(&s, "/api/v1/events", &query).await;
        assert_eq!(status, 200, "round {round}: {filter:?}: {page}");
        assert_eq!(seqs(&page), want, "round {round}: {filter:?}");
        assert_eq!(page["total"], want.len(), "round {round}");
    }
}

#[tokio::test]
async fn rest_pages_by_cursor_and_by_page_number() {
    let (s, events) = random_server(12, 120).await;
    let query = trailwatch::search::Query::default();
    let newest = random::sorted(&events, &query, EventOrder::default());
    let limit = ("limit".to_string(), "50".to_string());
    let (_, first) = get(&s, "/api/v1/events", std::slice::from_ref(&limit)).await;
    assert_eq!(seqs(&first), newest[..50], "event time, newest first");
    assert_eq!(first["headSeq"], 120);
    let cursor = first["nextCursor"].as_str().unwrap().to_string();
    let (_, second) = get(
        &s,
        "/api/v1/events",
        &[limit.clone(), ("cursor".into(), cursor)],
    )
    .await;
    assert_eq!(seqs(&second), newest[50..100]);
    let (_, third) = get(
        &s,
        "/api/v1/events",
        &[limit.clone(), ("page".into(), "3".into())],
    )
    .await;
    assert_eq!(seqs(&third), newest[100..]);
    assert_eq!(
        third["nextCursor"],
        Value::Null,
        "the last page has no cursor"
    );
    // Arrival order keeps the bare-seq cursors clients already hold.
    let arrival: Vec<u64> = events.iter().rev().map(|e| e.seq.0).collect();
    let by_seq = ("sort".to_string(), "seq".to_string());
    let (_, first) = get(&s, "/api/v1/events", &[limit.clone(), by_seq.clone()]).await;
    assert_eq!(seqs(&first), arrival[..50]);
    assert_eq!(first["nextCursor"], "71");
    let (_, second) = get(
        &s,
        "/api/v1/events",
        &[limit.clone(), by_seq, ("cursor".into(), "71".into())],
    )
    .await;
    assert_eq!(seqs(&second), arrival[50..100]);
}

/// Walks every page of `sort` with pages of 10 while new events, with event times all over
/// the stored ones, arrive between pages: no stored event is skipped or repeated, and a new
/// event shows exactly when it sorts after the page the cursor left.
#[tokio::test]
async fn cursor_pages_stay_exact_while_events_arrive() {
    let (s, events) = random_server(14, 150).await;
    let mut rng = Rng::new(77);
    let mut all: Vec<StoredEvent> = events;
    for order in [
        "timestamp:desc",
        "timestamp:asc",
        "risk:desc",
        "user:asc",
        "level:desc",
    ] {
        let order = EventOrder::parse(order).unwrap();
        let stored = all.clone();
        let mut seen: Vec<u64> = Vec::new();
        let mut cursor: Option<String> = None;
        let mut arrived = Vec::new();
        loop {
            let mut query = vec![
                ("limit".to_string(), "10".to_string()),
                ("sort".to_string(), order.as_param()),
            ];
            query.extend(cursor.clone().map(|c| ("cursor".to_string(), c)));
            let (status, page) = get(&s, "/api/v1/events", &query).await;
            assert_eq!(status, 200, "{page}");
            let items: Vec<StoredEvent> = serde_json::from_value(page["items"].clone()).unwrap();
            // Each page continues exactly where the last one stopped, in order.
            if let (Some(last), Some(next)) = (
                all.iter().find(|e| Some(&e.seq.0) == seen.last()),
                items.first(),
            ) {
                assert!(
                    order.compare(last, next).is_lt(),
                    "{order:?}: page out of order"
                );
            }
            seen.extend(items.iter().map(|e| e.seq.0));
            let Some(next) = page["nextCursor"].as_str() else {
                break;
            };
            cursor = Some(next.to_string());
            // Two new events land somewhere in the order before the next page is read.
            let mut batch = Vec::new();
            for i in 0..2 {
                let at = rng.below(150) + i;
                let mut e = random::event(&mut rng, at);
                e.action = format!("late.{}", arrived.len());
                let mut e = serde_json::to_value(&e).unwrap();
                // The server assigns these.
                e.as_object_mut().unwrap().remove("source");
                e.as_object_mut().unwrap().remove("submittedBy");
                batch.push(e);
            }
            let (status, receipt) = s.post(&Value::Array(batch)).await;
            assert_eq!(status, 201, "{receipt}");
            // Everything stored since (the server may record events of its own too).
            let (_, newest) = get(
                &s,
                "/api/v1/events",
                &[("limit".into(), "50".into()), ("sort".into(), "seq".into())],
            )
            .await;
            let known = all.iter().map(|e| e.seq).max().unwrap_or(Seq(0));
            let fresh: Vec<StoredEvent> = serde_json::from_value(newest["items"].clone()).unwrap();
            let fresh: Vec<StoredEvent> = fresh.into_iter().filter(|e| e.seq > known).collect();
            let boundary = all
                .iter()
                .find(|e| Some(&e.seq.0) == seen.last())
                .cloned()
                .unwrap_or_else(|| panic!("{order:?}: #{:?} {page}", seen.last()));
            for e in fresh {
                // Only ours: the server's own records are written when it gets to them, so
                // a page may have been read after they were stored.
                if e.event.action.starts_with("late.") {
                    arrived.push((e.seq.0, order.compare(&e, &boundary).is_gt()));
                }
                all.push(e);
            }
        }
        let mut unique = seen.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), seen.len(), "{order:?}: an event was repeated");
        for e in &stored {
            assert!(
                seen.contains(&e.seq.0),
                "{order:?}: #{} was skipped",
                e.seq.0
            );
        }
        for (seq, below_cursor) in arrived {
            assert_eq!(seen.contains(&seq), below_cursor, "{order:?}: new #{seq}");
        }
    }
}

#[tokio::test]
async fn bad_parameters_are_refused_with_their_names() {
    let s = TestServer::start().await;
    let cases: &[(&str, &str, &str)] = &[
        ("levle=error", "levle", "unknown parameter"),
        ("level=loud", "level", "not one of"),
        ("q=%22open", "q", "never closed"),
        ("q=colour:red", "q", "unknown field"),
        ("min_risk=101", "min_risk", "0 to 100"),
        ("min_risk=80&max_risk=20", "min_risk", "above max_risk"),
        ("cursor=abc", "cursor", "nextCursor"),
        ("sort=seq&cursor=5&page=2", "cursor", "not both"),
        (
            "sort=risk&cursor=5",
            "cursor",
            "nextCursor returned for sort=risk:desc",
        ),
        ("sort=loudness", "sort", "not one of"),
        ("sort=risk:up", "sort", "asc or desc"),
        ("limit=0", "limit", "1 to 500"),
        ("user_id=a&user_id=b", "user_id", "more than once"),
        ("start_date=yesterday", "start_date", "RFC 3339"),
    ];
    for (query, field, message) in cases {
        let (status, body) = s.get(&format!("/api/v1/events?{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["field"], *field, "{query}: {body}");
        assert!(
            body["message"].as_str().unwrap().contains(message),
            "{query}: {body}"
        );
    }
    let (status, body) = s.get("/api/v1/events/export?format=xlsx").await;
    assert_eq!((status, body["field"].as_str()), (400, Some("format")));
}

#[tokio::test]
async fn distinct_levels_categories_and_actions_come_with_counts() {
    let (s, events) = random_server(13, 200).await;
    for (path, key) in [
        ("levels", "level"),
        ("categories", "category"),
        ("actions", "action"),
    ] {
        let mut want: BTreeMap<String, u64> = BTreeMap::new();
        for e in &events {
            let v = serde_json::to_value(&e.event).unwrap();
            *want
                .entry(v[key].as_str().unwrap().to_string())
                .or_default() += 1;
        }
        let (status, body) = s.get(&format!("/api/v1/events/{path}")).await;
        assert_eq!(status, 200);
        let items = body.as_array().unwrap();
        let got: BTreeMap<String, u64> = items
            .iter()
            .map(|i| {
                (
                    i["value"].as_str().unwrap().to_string(),
                    i["count"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(got, want, "{path}");
        let counts: Vec<u64> = items.iter().map(|i| i["count"].as_u64().unwrap()).collect();
        assert!(
            counts.windows(2).all(|w| w[0] >= w[1]),
            "{path} most frequent first"
        );
    }
}

/// Splits CSV text into rows of cells (RFC 4180: quoted cells, doubled quotes, CRLF rows).
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut cell = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                cell.push('"');
            }
            ('"', true) => quoted = false,
            ('"', false) if cell.is_empty() => quoted = true,
            (',', false) => row.push(std::mem::take(&mut cell)),
            ('\r', false) if chars.peek() == Some(&'\n') => {}
            ('\n', false) => {
                row.push(std::mem::take(&mut cell));
                rows.push(std::mem::take(&mut row));
            }
            (c, _) => cell.push(c),
        }
    }
    rows
}

#[tokio::test]
async fn exports_stream_every_match_in_three_formats() {
    let s = TestServer::start().await;
    let n = 2_500;
    let body: Vec<Value> = (0..n)
        .map(|i| {
            json!({"action": if i % 5 == 0 { "file.delete" } else { "file.read" },
                   "user": format!("u{}", i % 7),
                   "description": if i == 42 { "=HYPERLINK(\"http://evil\",\"x\")".to_string() }
                                  else { format!("row, \"{i}\"\nsecond line") }})
        })
        .collect();
    for chunk in body.chunks(500) {
        assert_eq!(s.post(&Value::Array(chunk.to_vec())).await.0, 201);
    }
    let export = |query: &'static str| {
        let r = s
            .http
            .get(s.url(&format!("/api/v1/events/export?{query}")))
            .bearer_auth(TOKEN)
            .send();
        async move {
            let r = r.await.unwrap();
            assert_eq!(r.status(), 200);
            let disposition = r.headers()["content-disposition"]
                .to_str()
                .unwrap()
                .to_string();
            assert!(r.content_length().is_none(), "streamed, not buffered");
            (disposition, r.text().await.unwrap())
        }
    };

    let (disposition, csv) = export("format=csv").await;
    assert!(disposition.starts_with("attachment; filename=\"trailwatch-events-"));
    assert!(disposition.ends_with(".csv\""));
    let rows = parse_csv(&csv);
    assert_eq!(rows.len(), n + 1, "a header and every event");
    assert!(rows.iter().all(|r| r.len() == rows[0].len()));
    let description = rows[0].iter().position(|h| h == "description").unwrap();
    let seq = rows[0].iter().position(|h| h == "seq").unwrap();
    let evil = rows.iter().find(|r| r[seq] == "43").unwrap();
    assert_eq!(evil[description], "'=HYPERLINK(\"http://evil\",\"x\")");
    let plain = rows.iter().find(|r| r[seq] == "2").unwrap();
    assert_eq!(plain[description], "row, \"1\"\nsecond line");

    let (disposition, json) = export("format=json").await;
    assert!(disposition.ends_with(".json\""));
    let items: Vec<Value> = serde_json::from_str(&json).unwrap();
    // The CSV export before it is in the chain now, as a self-audit record.
    assert_eq!(items.len(), n + 1);
    assert_eq!(items[0]["action"], "events.export");
    assert_eq!(items[1]["seq"], n, "newest first");

    let (_, ndjson) = export("format=ndjson&action=file.delete").await;
    let lines: Vec<Value> = ndjson
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), n / 5);
    assert!(lines.iter().all(|l| l["action"] == "file.delete"));
}

#[tokio::test]
async fn a_filtered_subscription_sends_only_matches_in_catch_up_and_live() {
    let s = TestServer::start().await;
    let ev = |user: &str, level: &str, d: &str| json!({"action": "file.read", "user": user, "level": level, "description": d});
    s.post(&json!([
        ev("alice", "error", "old match"),
        ev("bob", "error", "old other"),
        ev("alice", "info", "old info")
    ]))
    .await;
    let mut ws = s.socket("").await;
    ws.subscribe(json!({"type": "subscribe", "sinceSeq": 0,
                        "filter": {"level": ["error", "critical"], "q": "user:alice -vpn"}}))
        .await;
    assert_eq!(
        ws.events_until_ready().await,
        vec![1],
        "catch-up is filtered too"
    );

    s.post(&ev("bob", "error", "live other")).await; // 4
    s.post(&ev("alice", "error", "over vpn")).await; // 5
    s.post(&ev("alice", "critical", "live match")).await; // 6
    assert_eq!(
        ws.events(1).await,
        vec![6],
        "non-matching events were not sent"
    );
}

#[tokio::test]
async fn changing_the_filter_loses_nothing_while_events_keep_arriving() {
    let s = TestServer::start().await;
    let mut ws = s.socket("").await;
    ws.subscribe(json!({"type": "subscribe", "sinceSeq": 0, "filter": {"user_id": "alice"}}))
        .await;
    ws.events_until_ready().await;

    // A writer keeps posting while the client switches from alice to bob, the way the explorer
    // does: read the first page (and its head), then subscribe from that head.
    let url = s.url("/api/v1/events");
    let http = s.http.clone();
    let writer = tokio::spawn(async move {
        for i in 0..60 {
            let user = ["alice", "bob", "carol"][i % 3];
            http.post(&url)
                .bearer_auth(TOKEN)
                .json(&json!({"action": "x", "user": user, "description": format!("n{i}")}))
                .send()
                .await
                .unwrap();
        }
    });
    let (_, page) = s.get("/api/v1/events?user_id=bob&limit=500").await;
    let head = page["headSeq"].as_u64().unwrap();
    ws.subscribe(json!({"type": "subscribe", "sinceSeq": head, "filter": {"user_id": "bob"}}))
        .await;
    writer.await.unwrap();
    s.post(&json!({"action": "x", "user": "bob", "description": "sentinel"}))
        .await;

    let mut got: Vec<u64> = seqs(&page);
    got.reverse();
    loop {
        let m = ws.next_json().await;
        match m["type"].as_str() {
            Some("ready") => continue,
            Some("event") => {
                assert_eq!(m["event"]["user"]["id"], "bob", "{m}");
                got.push(m["event"]["seq"].as_u64().unwrap());
                if m["event"]["description"] == "sentinel" {
                    break;
                }
            }
            other => panic!("unexpected {other:?}: {m}"),
        }
    }
    let (_, all) = s.get("/api/v1/events?user_id=bob&limit=500").await;
    let mut want = seqs(&all);
    want.reverse();
    assert_eq!(
        got, want,
        "every bob event once, in order, none lost in the switch"
    );
}

#[tokio::test]
async fn an_invalid_filter_is_refused_naming_the_field_and_the_socket_closed() {
    let s = TestServer::start().await;
    for (filter, field) in [
        (json!({"level": ["loud"]}), "filter.level"),
        (json!({"q": "\"open"}), "filter.q"),
        (json!({"min_risk": 200}), "filter.min_risk"),
        (json!({"colour": "red"}), "filter.colour"),
    ] {
        let mut ws = s.socket("").await;
        ws.send_json(json!({"type": "subscribe", "sinceSeq": 0, "filter": filter}))
            .await;
        let m = ws.next_json().await;
        assert_eq!(m["type"], "error", "{m}");
        let message = m["message"].as_str().unwrap();
        assert!(message.starts_with(field), "{field}: {message}");
        assert!(ws.closed_by_server().await, "{field}");
    }
}
