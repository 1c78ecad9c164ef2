//! A brute-force recount of the rollup tables, to compare with what the writer maintained.

use rusqlite::Connection;
use std::collections::BTreeMap;
use std::path::Path;

/// Every rollup row, keyed as its table keys it: `minute:<m>` → [n, denied, failed, errors,
/// critical], `total:<h>` → the same per hour, `hour:<kind>:<value>:<h>` → [n],
/// `user:<h>:<id>` → [n, denied, failed].
pub type Rollups = BTreeMap<String, Vec<i64>>;

/// One event's fields that rollups count.
pub struct Fields<'a> {
    pub ts: i64,
    pub level: &'a str,
    pub category: &'a str,
    pub action: &'a str,
    pub outcome: &'a str,
    pub user: &'a str,
    pub source: &'a str,
}

/// The rollups `events` should produce, counted in Rust, independently of the writer's SQL.
pub fn recount<'a>(events: impl IntoIterator<Item = Fields<'a>>) -> Rollups {
    let mut out = Rollups::new();
    let mut bump = |key: String, values: &[i64]| {
        let row = out.entry(key).or_insert_with(|| vec![0; values.len()]);
        for (r, v) in row.iter_mut().zip(values) {
            *r += v;
        }
    };
    for e in events {
        let minute = e.ts.div_euclid(60_000);
        let hour = e.ts.div_euclid(3_600_000);
        let denied = i64::from(e.outcome == "denied");
        let failed = i64::from(e.outcome == "failure");
        let errors = i64::from(failed == 1 || e.level == "error" || e.level == "critical");
        let critical = i64::from(e.level == "critical");
        bump(
            format!("minute:{minute}"),
            &[1, denied, failed, errors, critical],
        );
        for (kind, value) in [
            ("level", e.level),
            ("category", e.category),
            ("outcome", e.outcome),
            ("action", e.action),
            ("source", e.source),
        ] {
            bump(format!("hour:{kind}:{value}:{hour}"), &[1]);
        }
        if denied == 1 {
            bump(format!("hour:denied:{}:{hour}", e.action), &[1]);
        }
        bump(format!("user:{hour}:{}", e.user), &[1, denied, failed]);
        bump(
            format!("total:{hour}"),
            &[1, denied, failed, errors, critical],
        );
    }
    out
}

/// The rollup tables as stored in the database at `path`.
pub fn stored(path: &Path) -> Rollups {
    let conn = Connection::open(path).unwrap();
    let mut out = Rollups::new();
    let mut stmt = conn
        .prepare("SELECT minute, n, denied, failed, errors, critical FROM rollup_minute")
        .unwrap();
    let rows = stmt
        .query_map([], |r| {
            Ok((
                format!("minute:{}", r.get::<_, i64>(0)?),
                (1..6).map(|i| r.get(i)).collect::<Result<Vec<i64>, _>>()?,
            ))
        })
        .unwrap();
    out.extend(rows.map(Result::unwrap));
    let mut stmt = conn
        .prepare("SELECT hour, n, denied, failed, errors, critical FROM rollup_hour_total")
        .unwrap();
    let rows = stmt
        .query_map([], |r| {
            Ok((
                format!("total:{}", r.get::<_, i64>(0)?),
                (1..6).map(|i| r.get(i)).collect::<Result<Vec<i64>, _>>()?,
            ))
        })
        .unwrap();
    out.extend(rows.map(Result::unwrap));
    let mut stmt = conn
        .prepare("SELECT kind, value, hour, n FROM rollup_hour")
        .unwrap();
    let rows = stmt
        .query_map([], |r| {
            Ok((
                format!(
                    "hour:{}:{}:{}",
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?
                ),
                vec![r.get(3)?],
            ))
        })
        .unwrap();
    out.extend(rows.map(Result::unwrap));
    let mut stmt = conn
        .prepare("SELECT hour, user_id, n, denied, failed FROM rollup_user_hour")
        .unwrap();
    let rows = stmt
        .query_map([], |r| {
            Ok((
                format!("user:{}:{}", r.get::<_, i64>(0)?, r.get::<_, String>(1)?),
                vec![r.get(2)?, r.get(3)?, r.get(4)?],
            ))
        })
        .unwrap();
    out.extend(rows.map(Result::unwrap));
    out
}

/// The rollups recounted from the `events` table at `path`.
pub fn recount_stored(path: &Path) -> Rollups {
    let conn = Connection::open(path).unwrap();
    let mut stmt = conn
        .prepare("SELECT ts, level, category, action, outcome, user_id, source FROM events")
        .unwrap();
    let rows: Vec<(i64, String, String, String, String, String, String)> = stmt
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    recount(rows.iter().map(|(ts, l, c, a, o, u, s)| Fields {
        ts: *ts,
        level: l,
        category: c,
        action: a,
        outcome: o,
        user: u,
        source: s,
    }))
}

/// Asserts two rollup sets are equal, naming the first rows that differ.
pub fn assert_same(what: &str, got: &Rollups, want: &Rollups) {
    let diff: Vec<String> = got
        .keys()
        .chain(want.keys())
        .filter(|k| got.get(*k) != want.get(*k))
        .take(5)
        .map(|k| format!("{k}: stored {:?}, recounted {:?}", got.get(k), want.get(k)))
        .collect();
    assert!(
        diff.is_empty(),
        "{what}: rollups differ:\n{}",
        diff.join("\n")
    );
    assert!(!want.is_empty(), "{what}: nothing was counted");
}

/// Risk profile rows, `<user> <key>` → n.
pub type Profiles = BTreeMap<String, i64>;

/// The `risk_profile` table at `path`, one entry per hour or country with events.
pub fn profiles_stored(path: &Path) -> Profiles {
    let conn = Connection::open(path).unwrap();
    let mut stmt = conn
        .prepare("SELECT user_id, hours, countries FROM risk_profile")
        .unwrap();
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, Option<String>>(2)?,
            ))
        })
        .unwrap();
    let mut out = Profiles::new();
    for row in rows {
        let (user, hours, countries) = row.unwrap();
        assert_eq!(hours.len(), 96, "24 counts of 4 bytes");
        for (h, b) in hours.chunks_exact(4).enumerate() {
            let n = i64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
            if n > 0 {
                out.insert(format!("{user} h:{h:02}"), n);
            }
        }
        let countries: BTreeMap<String, i64> = countries
            .map(|c| serde_json::from_str(&c).unwrap())
            .unwrap_or_default();
        for (c, n) in countries {
            out.insert(format!("{user} c:{c}"), n);
        }
    }
    out
}

/// The risk profiles recounted in Rust from the events at `path`: per user (not `system`),
/// events per UTC hour of day and per country.
pub fn profiles_recount(path: &Path) -> Profiles {
    let conn = Connection::open(path).unwrap();
    let mut stmt = conn
        .prepare("SELECT ts, user_id, country FROM events")
        .unwrap();
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
            ))
        })
        .unwrap();
    let mut out = Profiles::new();
    for row in rows {
        let (ts, user, country) = row.unwrap();
        if user == "system" {
            continue;
        }
        let hour = ts.div_euclid(3_600_000).rem_euclid(24);
        *out.entry(format!("{user} h:{hour:02}")).or_default() += 1;
        if let Some(c) = country.as_deref().map(str::trim).filter(|c| !c.is_empty()) {
            *out.entry(format!("{user} c:{c}")).or_default() += 1;
        }
    }
    out
}
