//! `GET /api/v1/aggregate` through a real server: random metric requests over random events
//! compared with a brute-force computation over the stored events as the list returns them
//! (JSON paths, sorting and nearest-rank percentiles written here, apart from the server's),
//! values that are not numbers skipped and counted, the `self` role's scope, and refusals
//! that name the parameter.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.
#![cfg(feature = "ssr")]

mod common;

use common::random::Rng;
use common::{add_user, call, Cred, TestServer, PASSWORD};
use serde_json::{json, Value};
use std::collections::BTreeMap;

const USERS: [&str; 5] = ["agent-1", "agent-2", "agent-3", "dana", "eli"];
const ACTIONS: [&str; 4] = ["agent.run", "agent.create", "report.export", "user.login"];
const MODELS: [&str; 3] = ["small", "large", "vision"];

/// `n` random events with numbers (and not-numbers) in the places metrics read.
fn random_events(rng: &mut Rng, n: usize) -> Vec<Value> {
    let now = chrono::Utc::now().timestamp_millis();
    (0..n)
        .map(|_| {
            let mut metadata = serde_json::Map::new();
            match rng.below(5) {
                0 => {}
                1 => {
                    metadata.insert("tokens_used".into(), json!("n/a"));
                }
                2 => {
                    metadata.insert("tokens_used".into(), json!(format!("{}", rng.below(5000))));
                }
                _ => {
                    metadata.insert("tokens_used".into(), json!(rng.below(5000) as f64 / 4.0));
                }
            }
            if rng.chance(70) {
                metadata.insert("agent".into(), json!({"model": rng.pick(&MODELS)}));
            }
            match rng.below(4) {
                0 => {}
                1 => {
                    metadata.insert("success".into(), json!("maybe"));
                }
                _ => {
                    metadata.insert("success".into(), json!(rng.chance(70)));
                }
            }
            let mut e = json!({
                "timestamp": now - (rng.below(3 * 24 * 60) as i64) * 60_000,
                "action": rng.pick(&ACTIONS),
                "level": rng.pick(&["info", "warning", "error"]),
                "user": {"id": rng.pick(&USERS)},
                "metadata": metadata,
            });
            if rng.chance(60) {
                e["request"] = json!({"responseTime": rng.below(900), "statusCode": rng.pick(&[200, 404, 500])});
            }
            if rng.chance(50) {
                e["riskScore"] = json!(rng.below(101));
            }
            if rng.chance(40) {
                e["entity"] = json!({"type": "agent", "id": format!("ag-{}", rng.below(4))});
            }
            e
        })
        .collect()
}

/// The value at a dotted path of an event's JSON.
fn at<'a>(e: &'a Value, path: &str) -> Option<&'a Value> {
    let mut v = e;
    for key in path.split('.') {
        v = v.get(key)?;
    }
    (!v.is_null()).then_some(v)
}

/// The brute force's reading of a numeric field: absent, not a number, or the number.
fn reading(e: &Value, field: &str) -> Result<Option<f64>, ()> {
    match at(e, field) {
        None => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(Value::String(s)) => s.trim().parse::<f64>().map(Some).map_err(|_| ()),
        Some(Value::Bool(b)) => Ok(Some(if *b { 1.0 } else { 0.0 })),
        Some(_) => Err(()),
    }
}

/// The brute force's group of an event.
fn group_of(e: &Value, by: &str) -> Option<String> {
    let path = match by {
        "user_id" => "user.id",
        "entity" => "entity.id",
        other => other,
    };
    match at(e, path)? {
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn stat(name: &str, sorted: &[f64]) -> Option<f64> {
    let n = sorted.len();
    let rank = |p: f64| {
        let r = ((p * n as f64).ceil() as usize).max(1);
        sorted.get(r - 1).copied()
    };
    match name {
        "count" => Some(n as f64),
        "sum" => Some(sorted.iter().sum()),
        "avg" => (n > 0).then(|| sorted.iter().sum::<f64>() / n as f64),
        "min" => sorted.first().copied(),
        "max" => sorted.last().copied(),
        "p50" => rank(0.5),
        "p95" => rank(0.95),
        "p99" => rank(0.99),
        _ => unreachable!(),
    }
}

fn close(a: &Value, b: Option<f64>) -> bool {
    match (a.as_f64(), b) {
        (None, None) => a.is_null(),
        (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * y.abs().max(1.0),
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_metrics_agree_with_a_brute_force_over_the_stored_events() {
    let s = TestServer::start().await;
    let mut rng = Rng::new(0x5eed_a99e);
    let events = random_events(&mut rng, 400);
    for chunk in events.chunks(100) {
        let (status, body) = s.post(&json!(chunk)).await;
        assert_eq!(status, 201, "{body}");
    }
    let mut stored: Vec<Value> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/events?limit=500&cursor={c}"),
            None => "/api/v1/events?limit=500".into(),
        };
        let (_, page) = s.get(&path).await;
        stored.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(stored.len(), 400);

    let fields = [
        "metadata.tokens_used",
        "metadata.success",
        "request.responseTime",
        "request.statusCode",
        "riskScore",
    ];
    let bys = [
        None,
        Some("user_id"),
        Some("action"),
        Some("level"),
        Some("metadata.agent.model"),
        Some("request.statusCode"),
        Some("entity"),
    ];
    let all_stats = ["count", "sum", "avg", "min", "max", "p50", "p95", "p99"];
    for case in 0..40 {
        let field = *rng.pick(&fields);
        let by = *rng.pick(&bys);
        let mut stats: Vec<&str> = all_stats
            .iter()
            .copied()
            .filter(|_| rng.chance(30))
            .collect();
        if stats.is_empty() {
            stats.push(*rng.pick(&all_stats[..]));
        }
        let interval = *rng.pick(&[
            None,
            Some(("6h", 6 * 3_600_000_i64)),
            Some(("1d", 86_400_000)),
        ]);
        let top = rng.below(6) + 1;
        let level = *rng.pick(&[None, Some("error"), Some("info")]);

        let mut url = format!(
            "/api/v1/aggregate?field={field}&stats={}&top={top}",
            stats.join(",")
        );
        if let Some(by) = by {
            url += &format!("&by={by}");
        }
        if let Some((name, _)) = interval {
            url += &format!("&interval={name}");
        }
        if let Some(level) = level {
            url += &format!("&level={level}");
        }
        let (status, got) = s.get(&url).await;
        assert_eq!(status, 200, "{url}: {got}");

        // The brute force.
        let matching: Vec<&Value> = stored
            .iter()
            .filter(|e| level.is_none_or(|l| e["level"] == l))
            .collect();
        struct G {
            values: Vec<f64>,
            without: u64,
            not_numeric: u64,
            buckets: BTreeMap<i64, Vec<f64>>,
        }
        let mut groups: BTreeMap<Option<String>, G> = BTreeMap::new();
        for e in &matching {
            let key = by.and_then(|b| group_of(e, b));
            let g = groups.entry(key).or_insert_with(|| G {
                values: vec![],
                without: 0,
                not_numeric: 0,
                buckets: BTreeMap::new(),
            });
            match reading(e, field) {
                Ok(None) => g.without += 1,
                Err(()) => g.not_numeric += 1,
                Ok(Some(v)) => {
                    g.values.push(v);
                    if let Some((_, width)) = interval {
                        let ms =
                            chrono::DateTime::parse_from_rfc3339(e["timestamp"].as_str().unwrap())
                                .unwrap()
                                .timestamp_millis();
                        g.buckets
                            .entry(ms.div_euclid(width) * width)
                            .or_default()
                            .push(v);
                    }
                }
            }
        }
        let mut expected: Vec<(Option<String>, G)> = groups.into_iter().collect();
        for (_, g) in expected.iter_mut() {
            g.values.sort_by(f64::total_cmp);
            for b in g.buckets.values_mut() {
                b.sort_by(f64::total_cmp);
            }
        }
        let first = stats[0];
        expected.sort_by(|(ka, a), (kb, b)| {
            match (stat(first, &a.values), stat(first, &b.values)) {
                (Some(x), Some(y)) => y.total_cmp(&x).then_with(|| ka.cmp(kb)),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => ka.cmp(kb),
            }
        });

        let what = format!("case {case}: {url}");
        assert_eq!(got["matched"], matching.len(), "{what}");
        let total = |f: fn(&G) -> u64| expected.iter().map(|(_, g)| f(g)).sum::<u64>();
        assert_eq!(got["withField"], total(|g| g.values.len() as u64), "{what}");
        assert_eq!(got["withoutField"], total(|g| g.without), "{what}");
        assert_eq!(got["notNumeric"], total(|g| g.not_numeric), "{what}");
        assert_eq!(
            got["otherGroups"],
            expected.len().saturating_sub(top),
            "{what}"
        );
        let answered = got["groups"].as_array().unwrap();
        assert_eq!(answered.len(), expected.len().min(top), "{what}: {got}");
        for (g, (key, want)) in answered.iter().zip(&expected) {
            assert_eq!(g["key"], json!(key), "{what}: {got}");
            assert_eq!(g["withField"], want.values.len(), "{what}");
            assert_eq!(g["notNumeric"], want.not_numeric, "{what}");
            for name in &stats {
                assert!(
                    close(&g[name], stat(name, &want.values)),
                    "{what}: {name} of {key:?}: {} vs {:?}",
                    g[name],
                    stat(name, &want.values)
                );
            }
            let series = g["series"].as_array().cloned().unwrap_or_default();
            assert_eq!(series.len(), want.buckets.len(), "{what}");
            for (point, (start, values)) in series.iter().zip(&want.buckets) {
                assert_eq!(point["start"], *start, "{what}");
                for name in &stats {
                    assert!(
                        close(&point[name], stat(name, values)),
                        "{what}: {name} at {start}"
                    );
                }
            }
        }
    }
}

#[tokio::test]
async fn the_self_role_measures_only_its_own_events_and_refusals_name_the_parameter() {
    let s = TestServer::start().await;
    let (status, _) = s
        .post(&json!([
            {"action": "agent.run", "user": {"id": "dana"}, "metadata": {"tokens_used": 100}},
            {"action": "agent.run", "user": {"id": "dana"}, "metadata": {"tokens_used": "oops"}},
            {"action": "agent.run", "user": {"id": "eli"}, "metadata": {"tokens_used": 900}},
        ]))
        .await;
    assert_eq!(status, 201);
    let (_, all) = s
        .get("/api/v1/aggregate?field=metadata.tokens_used&by=user_id&stats=sum")
        .await;
    assert_eq!(all["matched"], 3);
    assert_eq!(all["notNumeric"], 1);
    assert_eq!(all["groups"][0]["key"], "eli", "{all}");

    add_user(&s, "dana", "self", Some("dana")).await;
    let cookie = common::login(&s, "dana", PASSWORD).await.unwrap();
    let (status, own) = call(
        &s,
        "GET",
        "/api/v1/aggregate?field=metadata.tokens_used&by=user_id&stats=sum,count&action=agent.run",
        &Cred::Cookie(cookie),
        None,
    )
    .await;
    assert_eq!(status, 200, "{own}");
    assert_eq!(own["matched"], 2, "{own}");
    assert_eq!(own["groups"].as_array().unwrap().len(), 1);
    assert_eq!(own["groups"][0]["key"], "dana");
    assert_eq!(own["groups"][0]["sum"], 100);
    assert_eq!(own["groups"][0]["notNumeric"], 1);

    for (query, field) in [
        ("", "field"),
        ("field=user_id", "field"),
        ("field=riskScore&stats=median", "stats"),
        ("field=riskScore&by=nothing", "by"),
        ("field=riskScore&interval=30s", "interval"),
        ("field=riskScore&top=0", "top"),
        ("field=riskScore&level=fatal", "level"),
    ] {
        let (status, body) = s.get(&format!("/api/v1/aggregate?{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["field"], field, "{query}: {body}");
    }
}
