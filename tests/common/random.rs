//! Seeded random events and filters for the property tests: every filter and combination is
//! checked against a brute-force reference over events drawn from a small vocabulary, so that
//! filters actually hit.

use chrono::{DateTime, Utc};
use trailwatch::model::{Actor, AuditEvent, Category, Entity, EventFilter, Level, Outcome, Source};

/// A small, seeded xorshift generator: reproducible failures without a dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn subset<T: Copy>(&mut self, items: &[T]) -> Vec<T> {
        let mut out: Vec<T> = items.iter().copied().filter(|_| self.chance(35)).collect();
        if out.is_empty() {
            out.push(*self.pick(items));
        }
        out
    }
}

pub const WORDS: [&str; 16] = [
    "login",
    "failed",
    "access",
    "denied",
    "report",
    "export",
    "vpn",
    "admin",
    "café",
    "Über",
    "quarterly",
    "budget",
    "door",
    "42",
    "2fa",
    "login-retry",
];
pub const ACTIONS: [&str; 6] = [
    "auth.login",
    "auth.logout",
    "file.read",
    "file.delete",
    "user.create",
    "config.update",
];
pub const USERS: [&str; 4] = ["alice", "bob", "carol", "dave"];
pub const SOURCES: [&str; 3] = ["http", "cli", "file:/var/log/app.log"];
pub const SUBMITTERS: [&str; 4] = ["token:ci", "user:dana", "admin", "server"];
pub const ENTITY_IDS: [&str; 3] = ["doc-1", "doc-2", "Q3"];
pub const ENTITY_NAMES: [&str; 3] = ["Q3 report", "Budget plan", "doc-1"];
pub const T0: i64 = 1_770_000_000_000;

fn sentence(rng: &mut Rng) -> String {
    let n = 1 + rng.below(5);
    (0..n)
        .map(|_| *rng.pick(&WORDS))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Event `i` of a random set.
pub fn event(rng: &mut Rng, i: usize) -> AuditEvent {
    let user = *rng.pick(&USERS);
    AuditEvent {
        // Event time out of arrival order, as a backfill or a late shipper sends it, with
        // ties (seq breaks them); drawn from `i` alone, so the other fields stay as drawn.
        timestamp: DateTime::from_timestamp_millis(T0 + (i as i64 * 389 % 500) * 1000).unwrap(),
        level: *rng.pick(&Level::ALL),
        category: *rng.pick(&Category::ALL),
        action: rng.pick(&ACTIONS).to_string(),
        outcome: *rng.pick(&Outcome::ALL),
        source: Source(rng.pick(&SOURCES).to_string()),
        user: Actor {
            id: user.to_string(),
            username: rng.chance(60).then(|| format!("{user} Smith")),
        },
        description: rng.chance(90).then(|| sentence(rng)),
        entity: rng.chance(60).then(|| Entity {
            kind: Some("document".into()),
            id: rng.chance(80).then(|| rng.pick(&ENTITY_IDS).to_string()),
            name: rng.chance(70).then(|| rng.pick(&ENTITY_NAMES).to_string()),
        }),
        request: None,
        location: None,
        metadata: rng.chance(50).then(|| {
            serde_json::json!({"ip": format!("10.0.0.{}", rng.below(4)), "note": sentence(rng)})
                .as_object()
                .cloned()
                .unwrap()
        }),
        changes: None,
        system: None,
        risk_score: rng.chance(80).then(|| rng.below(101) as u8),
        risk_reasons: None,
        submitted_by: Some(rng.pick(&SUBMITTERS).to_string()),
        correlation_id: rng.chance(50).then(|| format!("c{}", rng.below(3))),
        session_id: rng.chance(50).then(|| format!("s{}", rng.below(3))),
    }
}

/// A term of the query syntax.
fn term(rng: &mut Rng) -> String {
    let neg = if rng.chance(20) { "-" } else { "" };
    let t = match rng.below(13) {
        0 | 1 => {
            let w = rng.pick(&WORDS).to_lowercase();
            let n = 1 + rng.below(w.chars().count());
            w.chars().take(n).collect()
        }
        2 => format!("\"{} {}\"", rng.pick(&WORDS), rng.pick(&WORDS)),
        3 => format!("user:{}", rng.pick(&USERS)),
        4 => format!(
            "action:{}",
            rng.pick(&["auth.*", "file.read", "user.create"])
        ),
        5 => format!("level:{}", rng.pick(&["error", "info,warning", "critical"])),
        6 => format!("outcome:{}", rng.pick(&["denied", "success,failure"])),
        7 => format!(
            "risk{}{}",
            rng.pick(&[">", ">=", "<", "<=", ":"]),
            1 + rng.below(99)
        ),
        8 => format!("risk:{}", rng.pick(&["low", "medium", "high"])),
        9 => format!("entity:{}", rng.pick(&["doc-1", "\"Q3 report\"", "Q*"])),
        10 => format!(
            "{}:{}",
            rng.pick(&["session", "correlation"]),
            rng.pick(&["s1", "c1", "c*"])
        ),
        11 => format!("source:{}", rng.pick(&["http", "file:*"])),
        _ => format!(
            "submitted_by:{}",
            rng.pick(&["token:*", "admin", "user:dana"])
        ),
    };
    format!("{neg}{t}")
}

/// A random filter using every REST parameter now and then.
pub fn filter(rng: &mut Rng, events: usize) -> EventFilter {
    let mut f = EventFilter::default();
    if rng.chance(20) {
        f.level = rng.subset(&Level::ALL);
    }
    if rng.chance(20) {
        f.category = rng.subset(&Category::ALL);
    }
    if rng.chance(20) {
        f.outcome = rng.subset(&Outcome::ALL);
    }
    if rng.chance(15) {
        f.action = Some(
            rng.pick(&["auth.*", "file.delete", "config.update"])
                .to_string(),
        );
    }
    if rng.chance(15) {
        f.user_id = Some(rng.pick(&USERS).to_string());
    }
    if rng.chance(10) {
        f.entity = Some(rng.pick(&["doc-2", "Budget plan", "doc*"]).to_string());
    }
    if rng.chance(10) {
        f.source = Some(rng.pick(&SOURCES).to_string());
    }
    if rng.chance(10) {
        f.submitted_by = Some(rng.pick(&["token:*", "admin", "server"]).to_string());
    }
    if rng.chance(15) {
        f.min_risk = Some(rng.below(60) as u8);
    }
    if rng.chance(15) {
        f.max_risk = Some(60 + rng.below(41) as u8);
    }
    if rng.chance(10) {
        f.correlation_id = Some(format!("c{}", rng.below(3)));
    }
    if rng.chance(10) {
        f.session_id = Some(format!("s{}", rng.below(3)));
    }
    let at = |i: usize| -> DateTime<Utc> {
        DateTime::from_timestamp_millis(T0 + i as i64 * 1000).unwrap()
    };
    if rng.chance(15) {
        f.start_date = Some(at(rng.below(events / 2)));
    }
    if rng.chance(15) {
        f.end_date = Some(at(events / 2 + rng.below(events / 2)));
    }
    if rng.chance(15) {
        let w = rng.pick(&WORDS);
        f.search_query = Some(w.chars().skip(1).take(3).collect::<String>().to_uppercase());
    }
    if rng.chance(70) {
        let n = 1 + rng.below(3);
        f.q = Some((0..n).map(|_| term(rng)).collect::<Vec<_>>().join(" "));
    }
    f
}

/// The `round`th of every order a list can be asked for, each field both ways.
pub fn order(round: usize) -> trailwatch::model::EventOrder {
    use trailwatch::model::{EventOrder, SortField};
    let field = SortField::ALL[round % SortField::ALL.len()];
    let by = EventOrder::by(field);
    if (round / SortField::ALL.len()) % 2 == 0 {
        by
    } else {
        by.reversed()
    }
}

/// The seqs of the events `query` matches, in `order`, by the shared matcher and comparator.
pub fn sorted(
    events: &[trailwatch::model::StoredEvent],
    query: &trailwatch::search::Query,
    order: trailwatch::model::EventOrder,
) -> Vec<u64> {
    let mut matching: Vec<&trailwatch::model::StoredEvent> =
        events.iter().filter(|e| query.matches(e)).collect();
    matching.sort_by(|a, b| order.compare(a, b));
    matching.iter().map(|e| e.seq.0).collect()
}
