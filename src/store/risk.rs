//! Risk scoring at ingest: a score from 0 to 100, and the reasons for it, for every event whose
//! sender gave no `riskScore`. It runs on the writer's thread, in seq order, so each event is
//! judged against exactly the events stored before it, and the score and its reasons are
//! sealed in the chain with the event.
//!
//! The rules' points add up, capped at 100; each is configured in `[risk]`:
//! - the event's level, outcome and category: fixed points per value;
//! - repeated failures or denials by the same user, and from the same IP address, within a
//!   window of event time;
//! - an unusual hour for this user: the user has enough history and few of their events fall
//!   within an hour (UTC hour of day) of this one;
//! - a new country for this user, once the user has enough located history.
//!
//! The per-user profiles (events per UTC hour of day and per country) live in `risk_profile`,
//! updated in the same transaction as the events, so a crash never leaves them out of step.
//! The recent failures are held in memory and rebuilt from the events when the writer starts or
//! a commit fails. Reasons never name the user, the address or the country: they are sealed in
//! the chain, and erasing a data subject must leave the chain intact.

use crate::model::{AuditEvent, Category, Level, Outcome, RiskReason, SYSTEM_ACTOR};
use chrono::Timelike;
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
// Seeded per process, so keys chosen by senders cannot be made to collide.
use foldhash::{HashMap as FastMap, HashSet as FastSet};

/// The profile table; its rows are derived from the events and never hashed.
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS risk_profile (
    user_id   TEXT PRIMARY KEY,
    -- 24 little-endian u32: events per UTC hour of day.
    hours     BLOB NOT NULL,
    -- JSON object: events per country; NULL when none had one.
    countries TEXT
) WITHOUT ROWID;
";

/// Profiles kept in memory; beyond this many users the cache is flushed and starts again
/// from the table.
const PROFILE_CACHE: usize = 100_000;
/// Profiles changed in memory are written back after this many events or this long, not at
/// every commit: with a thousand users in each commit, rewriting their rows every time cost
/// the writer a twelfth of its time. The table records the seq it is written through, and
/// the events after it are counted again on start (see [`Scorer::begin`]).
const FLUSH_EVENTS: u64 = 50_000;
const FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);
/// The `meta` key holding the seq the profile table is written through.
pub const THROUGH_KEY: &str = "risk_profiles_through";
/// Recent failure times kept per user or address; more than the rules can ever count.
const RECENT_CAP: usize = 1024;
/// Events between sweeps of keys whose failures have all left the window.
const SWEEP_EVERY: u32 = 4096;

/// `[risk]`: whether scores are assigned, and every rule's points and thresholds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RiskConfig {
    /// Off: events keep the sender's score, or none.
    pub enabled: bool,
    pub level: LevelPoints,
    pub outcome: OutcomePoints,
    pub category: CategoryPoints,
    pub repeated: RepeatedRule,
    pub unusual_hour: UnusualHourRule,
    pub new_country: NewCountryRule,
}

impl Default for RiskConfig {
    fn default() -> Self {
        RiskConfig {
            enabled: true,
            level: LevelPoints::default(),
            outcome: OutcomePoints::default(),
            category: CategoryPoints::default(),
            repeated: RepeatedRule::default(),
            unusual_hour: UnusualHourRule::default(),
            new_country: NewCountryRule::default(),
        }
    }
}

/// `[risk.level]`: points per level.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LevelPoints {
    pub debug: u8,
    pub info: u8,
    pub warning: u8,
    pub error: u8,
    pub critical: u8,
}

impl Default for LevelPoints {
    fn default() -> Self {
        LevelPoints {
            debug: 0,
            info: 0,
            warning: 15,
            error: 30,
            critical: 50,
        }
    }
}

impl LevelPoints {
    fn of(&self, level: Level) -> u8 {
        match level {
            Level::Debug => self.debug,
            Level::Info => self.info,
            Level::Warning => self.warning,
            Level::Error => self.error,
            Level::Critical => self.critical,
        }
    }
}

/// `[risk.outcome]`: points per outcome.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutcomePoints {
    pub success: u8,
    pub failure: u8,
    pub denied: u8,
}

impl Default for OutcomePoints {
    fn default() -> Self {
        OutcomePoints {
            success: 0,
            failure: 20,
            denied: 30,
        }
    }
}

impl OutcomePoints {
    fn of(&self, outcome: Outcome) -> u8 {
        match outcome {
            Outcome::Success => self.success,
            Outcome::Failure => self.failure,
            Outcome::Denied => self.denied,
        }
    }
}

/// `[risk.category]`: points per category.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CategoryPoints {
    pub authentication: u8,
    pub authorization: u8,
    pub user_management: u8,
    pub data_management: u8,
    pub system_management: u8,
    pub security: u8,
    pub workflow: u8,
    pub api: u8,
    pub file_management: u8,
    pub configuration: u8,
}

impl Default for CategoryPoints {
    fn default() -> Self {
        CategoryPoints {
            authentication: 10,
            authorization: 10,
            user_management: 10,
            data_management: 0,
            system_management: 0,
            security: 20,
            workflow: 0,
            api: 0,
            file_management: 0,
            configuration: 10,
        }
    }
}

impl CategoryPoints {
    fn of(&self, category: Category) -> u8 {
        match category {
            Category::Authentication => self.authentication,
            Category::Authorization => self.authorization,
            Category::UserManagement => self.user_management,
            Category::DataManagement => self.data_management,
            Category::SystemManagement => self.system_management,
            Category::Security => self.security,
            Category::Workflow => self.workflow,
            Category::Api => self.api,
            Category::FileManagement => self.file_management,
            Category::Configuration => self.configuration,
        }
    }
}

/// `[risk.repeated]`: failures and denials by one user, or from one IP address, within
/// `window_seconds` of event time. From the `after`-th one on, each adds `points_each`, up to
/// `max_points` (for the user and for the address separately).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RepeatedRule {
    pub window_seconds: u64,
    pub after: u32,
    pub points_each: u8,
    pub max_points: u8,
}

impl Default for RepeatedRule {
    fn default() -> Self {
        RepeatedRule {
            window_seconds: 600,
            after: 3,
            points_each: 10,
            max_points: 30,
        }
    }
}

impl RepeatedRule {
    /// The points for the `count`-th failure within the window (this one included).
    pub fn points(&self, count: u32) -> u8 {
        if self.after == 0 || count < self.after {
            return 0;
        }
        let steps = count - self.after + 1;
        u32::from(self.points_each)
            .saturating_mul(steps)
            .min(u32::from(self.max_points)) as u8
    }

    /// The count from which the points stop growing: counting further changes nothing.
    fn saturation(&self) -> u32 {
        if self.points_each == 0 {
            return self.after.max(1);
        }
        let steps = u32::from(self.max_points).div_ceil(u32::from(self.points_each));
        self.after.max(1) + steps.saturating_sub(1)
    }

    fn window_ms(&self) -> i64 {
        i64::try_from(self.window_seconds.saturating_mul(1000)).unwrap_or(i64::MAX)
    }
}

/// `[risk.unusual_hour]`: once a user has `min_history` earlier events, an event at an hour
/// of day (UTC) that, with its two neighbours, holds less than `max_share` of them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UnusualHourRule {
    pub points: u8,
    pub min_history: u32,
    pub max_share: f64,
}

impl Default for UnusualHourRule {
    fn default() -> Self {
        UnusualHourRule {
            points: 20,
            min_history: 50,
            max_share: 0.02,
        }
    }
}

/// `[risk.new_country]`: once a user has `min_history` earlier events with a country, an
/// event from a country none of them came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NewCountryRule {
    pub points: u8,
    pub min_history: u32,
}

impl Default for NewCountryRule {
    fn default() -> Self {
        NewCountryRule {
            points: 15,
            min_history: 20,
        }
    }
}

/// One user's history: events per UTC hour of day and per country.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Profile {
    pub hours: [u32; 24],
    pub countries: HashMap<String, u32>,
}

impl Profile {
    fn total(&self) -> u32 {
        self.hours.iter().sum()
    }

    fn located(&self) -> u32 {
        self.countries.values().sum()
    }

    /// The events within an hour of `hour` (it and its two neighbours, wrapping at midnight),
    /// so that a user active until 22:59 is not unusual at 23:05, nor across a DST change.
    fn near(&self, hour: usize) -> u32 {
        self.hours[(hour + 23) % 24] + self.hours[hour] + self.hours[(hour + 1) % 24]
    }

    /// The `hours` column: 24 little-endian u32.
    pub fn hours_column(&self) -> Vec<u8> {
        self.hours.iter().flat_map(|n| n.to_le_bytes()).collect()
    }

    /// The `countries` column: a JSON object in key order, or `None` with no country.
    pub fn countries_column(&self) -> Option<String> {
        (!self.countries.is_empty()).then(|| {
            let sorted: std::collections::BTreeMap<&String, &u32> = self.countries.iter().collect();
            serde_json::to_string(&sorted).unwrap_or_default()
        })
    }

    /// A profile from its stored columns. A `countries` value this build did not write
    /// reads as no country history rather than failing every append of this user.
    pub fn from_columns(hours: &[u8], countries: Option<&str>) -> Profile {
        let mut profile = Profile::default();
        for (slot, bytes) in profile.hours.iter_mut().zip(hours.chunks_exact(4)) {
            *slot = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        }
        if let Some(text) = countries {
            profile.countries = serde_json::from_str(text).unwrap_or_default();
        }
        profile
    }
}

/// What the behaviour rules know about an event's past, gathered by the [`Scorer`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Behaviour<'a> {
    /// Failures and denials by this user within the window, this event included.
    pub user_repeats: u32,
    /// The same from this event's IP address.
    pub ip_repeats: u32,
    /// The user's earlier events; `None` for the `system` actor.
    pub profile: Option<&'a Profile>,
}

fn window_text(seconds: u64) -> String {
    match seconds {
        s if s % 3600 == 0 => format!("{} h", s / 3600),
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// The reasons an event scores what it does; the score is their sum, capped at 100. Rules
/// worth nothing are left out, so an event nothing flags has no reasons and scores 0.
pub fn reasons(config: &RiskConfig, event: &AuditEvent, past: Behaviour<'_>) -> Vec<RiskReason> {
    let mut out = Vec::new();
    push(&mut out, "level", config.level.of(event.level), || {
        format!("level {}", event.level.as_str())
    });
    push(
        &mut out,
        "outcome",
        config.outcome.of(event.outcome),
        || format!("outcome {}", event.outcome.as_str()),
    );
    push(
        &mut out,
        "category",
        config.category.of(event.category),
        || format!("category {}", event.category.as_str()),
    );
    let repeated = &config.repeated;
    push(
        &mut out,
        "repeated_user",
        repeated.points(past.user_repeats),
        || {
            format!(
                "{} failures or denials by this user within {}",
                past.user_repeats,
                window_text(repeated.window_seconds)
            )
        },
    );
    push(
        &mut out,
        "repeated_ip",
        repeated.points(past.ip_repeats),
        || {
            format!(
                "{} failures or denials from this IP address within {}",
                past.ip_repeats,
                window_text(repeated.window_seconds)
            )
        },
    );
    let Some(profile) = past.profile else {
        return out;
    };
    let rule = &config.unusual_hour;
    let total = profile.total();
    let hour = event.timestamp.hour() as usize;
    if total > 0 && total >= rule.min_history {
        let share = f64::from(profile.near(hour)) / f64::from(total);
        if share < rule.max_share {
            push(&mut out, "unusual_hour", rule.points, || {
                format!(
                    "unusual hour for this user: {:.1}% of their {total} earlier events \
                     were within an hour of {hour:02}:00 UTC",
                    share * 100.0
                )
            });
        }
    }
    let rule = &config.new_country;
    if let Some(country) = country_of(event) {
        let located = profile.located();
        if located > 0 && located >= rule.min_history && !profile.countries.contains_key(country) {
            let others = profile.countries.len();
            push(&mut out, "new_country", rule.points, || {
                format!(
                    "first event of this user from this country, after {located} from \
                     {others} other countr{}",
                    if others == 1 { "y" } else { "ies" }
                )
            });
        }
    }
    out
}

/// Adds a reason worth `points`, if any; its text is only written then (scoring is on the
/// writer's hot path, and most rules give most events nothing).
fn push(out: &mut Vec<RiskReason>, rule: &str, points: u8, detail: impl FnOnce() -> String) {
    if points > 0 {
        out.push(RiskReason {
            rule: rule.to_string(),
            points,
            detail: detail(),
        });
    }
}

/// The sum of the reasons' points, capped at 100.
pub fn score(reasons: &[RiskReason]) -> u8 {
    reasons
        .iter()
        .map(|r| u32::from(r.points))
        .sum::<u32>()
        .min(100) as u8
}

fn country_of(event: &AuditEvent) -> Option<&str> {
    let country = event.location.as_ref()?.country.as_deref()?.trim();
    (!country.is_empty()).then_some(country)
}

fn ip_of(event: &AuditEvent) -> Option<&str> {
    let ip = event.request.as_ref()?.ip.as_deref()?.trim();
    (!ip.is_empty()).then_some(ip)
}

fn is_bad(event: &AuditEvent) -> bool {
    event.outcome != Outcome::Success
}

/// A user's profile was not in memory when an event of theirs was scored without the
/// database (see [`Scorer::observe_loaded`]).
#[derive(Debug)]
pub struct NotLoaded(pub String);

impl std::fmt::Display for NotLoaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the risk profile of {:?} was not loaded before scoring",
            self.0
        )
    }
}

impl std::error::Error for NotLoaded {}

/// Failure times of one user or one address, in arrival order.
type Recent = FastMap<String, VecDeque<i64>>;

/// The writer's scorer: the behaviour state the rules read, kept in step with the commits.
pub struct Scorer {
    config: RiskConfig,
    users: Recent,
    ips: Recent,
    /// The newest event time seen (never ahead of arrival): the windows' reference for sweeps.
    newest_ms: i64,
    profiles: FastMap<String, Profile>,
    /// Users whose profile changed since the last flush.
    dirty: FastSet<String>,
    /// Events counted into the profiles since the last flush, and when it was.
    unflushed: u64,
    flushed_at: std::time::Instant,
    since_sweep: u32,
    warm: bool,
}

impl Scorer {
    pub fn new(config: RiskConfig) -> Scorer {
        Scorer {
            config,
            users: FastMap::default(),
            ips: FastMap::default(),
            newest_ms: i64::MIN,
            profiles: FastMap::default(),
            dirty: FastSet::default(),
            unflushed: 0,
            flushed_at: std::time::Instant::now(),
            since_sweep: 0,
            warm: false,
        }
    }

    /// Readies the state for a batch, inside its transaction; `head` is the last seq stored
    /// before it. After a start or a failed commit the state is rebuilt from what is stored:
    /// the recent failures from the events, and the profiles from the table plus the events
    /// after the seq it was written through. The profile cache is flushed and emptied when
    /// it has grown past its bound.
    pub fn begin(&mut self, conn: &Connection, head: u64) -> rusqlite::Result<()> {
        if self.profiles.len() > PROFILE_CACHE {
            self.flush(conn, head)?;
            self.profiles.clear();
        }
        if self.warm {
            return Ok(());
        }
        self.start_warming();
        let newest: Option<i64> = conn
            .query_row("SELECT MAX(ts) FROM events", [], |r| r.get(0))
            .optional()?
            .flatten();
        if let Some(newest) = newest {
            self.recall_newest(newest);
            let mut stmt = conn.prepare(
                "SELECT ts, user_id, req_ip FROM events
                 WHERE ts > ?1 AND outcome != 'success' ORDER BY seq",
            )?;
            let from = newest.saturating_sub(self.config.repeated.window_ms());
            let mut rows = stmt.query([from])?;
            while let Some(row) = rows.next()? {
                let ts: i64 = row.get(0)?;
                let user: String = row.get(1)?;
                let ip: Option<String> = row.get(2)?;
                self.recall_failure(ts, &user, ip.as_deref());
            }
        }
        if self.config.enabled {
            self.replay(conn, head)?;
        }
        self.warm = true;
        Ok(())
    }

    /// Counts into the profiles the events stored after the seq the table is written
    /// through (recorded since schema 7; with none, every event is counted).
    fn replay(&mut self, conn: &Connection, head: u64) -> rusqlite::Result<()> {
        let through: u64 = conn
            .query_row(
                "SELECT value FROM meta WHERE key = ?1",
                [THROUGH_KEY],
                |r| r.get::<_, String>(0),
            )
            .optional()?
            .map_or(Ok(0), |v| v.parse())
            .map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(
                    0,
                    rusqlite::types::Type::Text,
                    Box::new(e),
                )
            })?;
        let mut stmt = conn.prepare(
            "SELECT ts, user_id, country FROM events
             WHERE seq > ?1 AND user_id != ?2 AND user_id != ?3 ORDER BY seq",
        )?;
        let mut rows = stmt.query(params![
            through as i64,
            SYSTEM_ACTOR,
            crate::store::ERASED_SUBJECT
        ])?;
        while let Some(row) = rows.next()? {
            let ts: i64 = row.get(0)?;
            let user: String = row.get(1)?;
            let country: Option<String> = row.get(2)?;
            self.load(conn, &user)?;
            self.recount(&user, ts, country.as_deref());
        }
        if through < head {
            tracing::info!(
                from = through + 1,
                to = head,
                "risk profiles: counted the events after the last flush"
            );
        }
        Ok(())
    }

    /// [`Scorer::preload`], then [`Scorer::observe_loaded`]: one event at a time, for tests.
    #[cfg(test)]
    pub fn observe(
        &mut self,
        conn: &Connection,
        event: &mut AuditEvent,
        now_ms: i64,
    ) -> rusqlite::Result<()> {
        self.preload(conn, &event.user.id)?;
        self.observe_loaded(event, now_ms)
            .expect("the profile was just loaded");
        Ok(())
    }

    /// Brings `user`'s profile into memory, so that [`Scorer::observe_loaded`] can score
    /// their events without the database (on another thread than the one that holds it).
    pub fn preload(&mut self, conn: &Connection, user: &str) -> rusqlite::Result<()> {
        if self.config.enabled && user != SYSTEM_ACTOR {
            self.load(conn, user)?;
        }
        Ok(())
    }

    /// Scores `event` if its sender gave no score, then counts it in the behaviour state,
    /// whoever scored it. `now_ms` is its arrival time. With scoring off, does nothing: the
    /// profiles then miss the events of that time. The user must have been
    /// [`Scorer::preload`]ed: counting into a profile that was not loaded would overwrite the
    /// stored one at the next flush, so a missing profile is an error, not a fresh start.
    pub fn observe_loaded(&mut self, event: &mut AuditEvent, now_ms: i64) -> Result<(), NotLoaded> {
        if !self.config.enabled {
            return Ok(());
        }
        let ts = event.timestamp.timestamp_millis();
        let user = event.user.id.as_str();
        let person = user != SYSTEM_ACTOR;
        if person && !self.profiles.contains_key(user) {
            return Err(NotLoaded(user.to_string()));
        }
        let bad = is_bad(event);
        if bad {
            if person {
                remember(&mut self.users, user, ts);
            }
            if let Some(ip) = ip_of(event) {
                remember(&mut self.ips, ip, ts);
            }
        }
        if event.risk_score.is_none() {
            let rule = &self.config.repeated;
            let (window, cap) = (rule.window_ms(), rule.saturation());
            let count = |recent: &Recent, key: Option<&str>| {
                key.and_then(|k| recent.get(k))
                    .map_or(0, |times| count_within(times, ts, window, cap))
            };
            let past = Behaviour {
                user_repeats: if bad && person {
                    count(&self.users, Some(user))
                } else {
                    0
                },
                ip_repeats: if bad {
                    count(&self.ips, ip_of(event))
                } else {
                    0
                },
                profile: self.profiles.get(user).filter(|_| person),
            };
            let reasons = reasons(&self.config, event, past);
            event.risk_score = Some(score(&reasons));
            event.risk_reasons = Some(reasons);
        }
        if person {
            let user = event.user.id.as_str();
            self.count(user, event.timestamp.hour(), country_of(event));
        }
        self.newest_ms = self.newest_ms.max(ts.min(now_ms));
        self.since_sweep += 1;
        if self.since_sweep >= SWEEP_EVERY {
            self.sweep();
        }
        Ok(())
    }

    /// Makes sure `user`'s profile is in memory.
    fn load(&mut self, conn: &Connection, user: &str) -> rusqlite::Result<()> {
        if !self.profiles.contains_key(user) {
            let profile = load_profile(conn, user)?;
            self.profiles.insert(user.to_string(), profile);
        }
        Ok(())
    }

    /// Counts an event of `user` at `hour` (UTC) from `country` into the user's loaded
    /// profile, and marks it for writing.
    fn count(&mut self, user: &str, hour: u32, country: Option<&str>) {
        if let Some(profile) = self.profiles.get_mut(user) {
            profile.hours[hour as usize % 24] += 1;
            if let Some(c) = country {
                match profile.countries.get_mut(c) {
                    Some(n) => *n += 1,
                    None => {
                        profile.countries.insert(c.to_string(), 1);
                    }
                }
            }
        }
        if !self.dirty.contains(user) {
            self.dirty.insert(user.to_string());
        }
        self.unflushed += 1;
    }

    /// Whether events were counted into the profiles since the last flush.
    pub fn pending(&self) -> bool {
        self.unflushed > 0
    }

    /// Writes the changed profiles back when enough events or time have passed since the
    /// last flush; `head` is the last seq of the open batch. Call inside its transaction.
    pub fn write(&mut self, conn: &Connection, head: u64) -> rusqlite::Result<()> {
        if self.unflushed >= FLUSH_EVENTS || self.flushed_at.elapsed() >= FLUSH_INTERVAL {
            self.flush(conn, head)?;
        }
        Ok(())
    }

    /// Rewrites the profile of every user changed since the last flush, whole, from memory,
    /// and records that the table is written through `head`. Call inside the transaction
    /// that stores the events up to `head`.
    pub fn flush(&mut self, conn: &Connection, head: u64) -> rusqlite::Result<()> {
        let mut put = conn.prepare_cached(
            "INSERT OR REPLACE INTO risk_profile (user_id, hours, countries) VALUES (?1, ?2, ?3)",
        )?;
        for (user, profile) in self.drain_changed() {
            put.execute(params![
                user,
                profile.hours_column(),
                profile.countries_column()
            ])?;
        }
        conn.prepare_cached(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )?
        .execute(params![THROUGH_KEY, head.to_string()])?;
        Ok(())
    }

    /// Whether enough events or time have passed since the last flush to write the changed
    /// profiles back (see [`Scorer::write`]).
    pub fn flush_due(&self) -> bool {
        self.unflushed >= FLUSH_EVENTS || self.flushed_at.elapsed() >= FLUSH_INTERVAL
    }

    /// The profiles changed since the last flush, for the caller to write back (with the
    /// seq they are counted through) in the transaction that stores the events; counts
    /// the flush as done.
    pub fn drain_changed(&mut self) -> Vec<(String, Profile)> {
        self.flushed_at = std::time::Instant::now();
        self.unflushed = 0;
        let dirty: Vec<String> = self.dirty.drain().collect();
        dirty
            .into_iter()
            .filter_map(|user| self.profiles.get(&user).map(|p| (user, p.clone())))
            .collect()
    }

    // What a backend that reads its database apart from the scorer (PostgreSQL, whose client
    // is asynchronous) uses to bring the state up to date: the same steps as `begin`,
    // `preload` and `replay`, with the rows handed in.

    /// Whether the state follows the stored events (false after a start or an abort).
    pub fn is_warm(&self) -> bool {
        self.warm
    }

    /// Starts rebuilding the state from nothing; [`Scorer::mark_warm`] ends it.
    pub fn start_warming(&mut self) {
        self.users.clear();
        self.ips.clear();
        self.dirty.clear();
        self.profiles.clear();
        self.unflushed = 0;
        self.newest_ms = i64::MIN;
    }

    /// The rebuilt state follows the stored events.
    pub fn mark_warm(&mut self) {
        self.warm = true;
    }

    /// How far back [`Scorer::recall_failure`] needs failures, from the newest event time.
    pub fn window_ms(&self) -> i64 {
        self.config.repeated.window_ms()
    }

    /// Whether scoring is on: with it off, no profile is needed or counted.
    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    /// Sets the newest event time stored, the windows' reference.
    pub fn recall_newest(&mut self, ms: i64) {
        self.newest_ms = self.newest_ms.max(ms);
    }

    /// A stored failure or denial at `ts` by `user` from `ip`, counted into the windows.
    pub fn recall_failure(&mut self, ts: i64, user: &str, ip: Option<&str>) {
        if user != SYSTEM_ACTOR && user != crate::store::ERASED_SUBJECT {
            remember(&mut self.users, user, ts);
        }
        if let Some(ip) = ip.map(str::trim).filter(|ip| !ip.is_empty()) {
            remember(&mut self.ips, ip, ts);
        }
    }

    /// Whether `user`'s profile must be loaded before their events are scored or counted.
    pub fn needs_profile(&self, user: &str) -> bool {
        self.config.enabled && user != SYSTEM_ACTOR && !self.profiles.contains_key(user)
    }

    /// Puts a profile read from the database into memory (see [`Scorer::needs_profile`]).
    pub fn insert_profile(&mut self, user: String, profile: Profile) {
        self.profiles.entry(user).or_insert(profile);
    }

    /// Counts a stored event of a loaded profile's user at `ts` from `country`: the replay of
    /// the events after the seq the profiles were written through.
    pub fn recount(&mut self, user: &str, ts: i64, country: Option<&str>) {
        let hour = chrono::DateTime::from_timestamp_millis(ts).map_or(0, |t| t.hour());
        let country = country.map(str::trim).filter(|c| !c.is_empty());
        self.count(user, hour, country);
    }

    /// Whether the profile cache has outgrown its bound: flush, then [`Scorer::forget_profiles`].
    pub fn oversized(&self) -> bool {
        self.profiles.len() > PROFILE_CACHE
    }

    /// Empties the profile cache (after a flush): they are read again from the table.
    pub fn forget_profiles(&mut self) {
        self.profiles.clear();
    }

    /// Forgets an erased subject: its profile and its recent failures, and those of the
    /// addresses it used.
    pub fn forget(&mut self, user: &str, ips: &std::collections::BTreeSet<String>) {
        self.profiles.remove(user);
        self.dirty.remove(user);
        self.users.remove(user);
        for ip in ips {
            self.ips.remove(ip);
        }
    }

    /// Forgets everything after a failed commit: the next batch rebuilds from what is stored.
    pub fn abort(&mut self) {
        self.warm = false;
        self.dirty.clear();
        self.profiles.clear();
    }

    /// Drops failure times that have left the window, and the keys left with none.
    fn sweep(&mut self) {
        self.since_sweep = 0;
        let oldest = self
            .newest_ms
            .saturating_sub(self.config.repeated.window_ms());
        for recent in [&mut self.users, &mut self.ips] {
            recent.retain(|_, times| {
                times.retain(|&t| t > oldest);
                !times.is_empty()
            });
        }
    }

    /// How many users and addresses have failures in memory (for tests and metrics).
    pub fn tracked(&self) -> (usize, usize) {
        (self.users.len(), self.ips.len())
    }
}

fn remember(recent: &mut Recent, key: &str, ts: i64) {
    let times = match recent.get_mut(key) {
        Some(t) => t,
        None => recent.entry(key.to_string()).or_default(),
    };
    if times.len() >= RECENT_CAP {
        times.pop_front();
    }
    times.push_back(ts);
}

/// Failure times in `(ts − window, ts]`, counted up to `cap` (more would add no points).
fn count_within(times: &VecDeque<i64>, ts: i64, window: i64, cap: u32) -> u32 {
    let from = ts.saturating_sub(window);
    let mut n = 0;
    // Newest first: in live traffic the matches are at the back.
    for &t in times.iter().rev() {
        if t > from && t <= ts {
            n += 1;
            if n >= cap {
                break;
            }
        }
    }
    n
}

fn load_profile(conn: &Connection, user: &str) -> rusqlite::Result<Profile> {
    let row: Option<(Vec<u8>, Option<String>)> = conn
        .prepare_cached("SELECT hours, countries FROM risk_profile WHERE user_id = ?1")?
        .query_row([user], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Ok(row.map_or_else(Profile::default, |(hours, countries)| {
        Profile::from_columns(&hours, countries.as_deref())
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Actor, Location, RequestInfo, Source};
    use chrono::{DateTime, TimeZone, Utc};

    fn event(level: Level, outcome: Outcome, category: Category) -> AuditEvent {
        AuditEvent {
            ..AuditEvent::new(
                Utc.with_ymd_and_hms(2026, 11, 23, 14, 30, 0).unwrap(),
                level,
                category,
                "x.y",
                outcome,
                Actor {
                    id: "alice".into(),
                    username: None,
                },
                Source::http(),
            )
        }
    }

    fn past(p: &Profile) -> Behaviour<'_> {
        Behaviour {
            profile: Some(p),
            ..Behaviour::default()
        }
    }

    fn rules(r: &[RiskReason]) -> Vec<(&str, u8)> {
        r.iter().map(|r| (r.rule.as_str(), r.points)).collect()
    }

    #[test]
    fn level_outcome_and_category_add_up() {
        let c = RiskConfig::default();
        let e = event(Level::Critical, Outcome::Denied, Category::Security);
        let r = reasons(&c, &e, Behaviour::default());
        assert_eq!(
            rules(&r),
            [("level", 50), ("outcome", 30), ("category", 20)]
        );
        assert_eq!(score(&r), 100);
        let e = event(Level::Info, Outcome::Success, Category::DataManagement);
        let r = reasons(&c, &e, Behaviour::default());
        assert!(r.is_empty(), "nothing flags a routine event: {r:?}");
        assert_eq!(score(&r), 0);
        let e = event(Level::Warning, Outcome::Failure, Category::Authentication);
        assert_eq!(score(&reasons(&c, &e, Behaviour::default())), 15 + 20 + 10);
    }

    #[test]
    fn the_sum_is_capped_at_100() {
        let c = RiskConfig::default();
        let e = event(Level::Critical, Outcome::Denied, Category::Security);
        let past = Behaviour {
            user_repeats: 9,
            ip_repeats: 9,
            profile: None,
        };
        let r = reasons(&c, &e, past);
        assert_eq!(r.iter().map(|r| u32::from(r.points)).sum::<u32>(), 160);
        assert_eq!(score(&r), 100);
    }

    #[test]
    fn repeated_points_start_at_after_and_saturate() {
        let rule = RepeatedRule::default();
        let points: Vec<u8> = (0..=6).map(|n| rule.points(n)).collect();
        assert_eq!(points, [0, 0, 0, 10, 20, 30, 30]);
        assert_eq!(rule.saturation(), 5);
        let uneven = RepeatedRule {
            points_each: 7,
            max_points: 20,
            ..RepeatedRule::default()
        };
        assert_eq!(uneven.points(5), 20);
        assert_eq!(uneven.saturation(), 5, "3rd=7, 4th=14, 5th=20");
    }

    #[test]
    fn unusual_hour_needs_history_and_a_small_share_near_the_hour() {
        let c = RiskConfig::default();
        let e = event(Level::Info, Outcome::Success, Category::DataManagement); // 14:30 UTC
        let mut p = Profile::default();
        p.hours[9] = 49;
        assert!(
            reasons(&c, &e, past(&p)).is_empty(),
            "49 events is too little history"
        );
        p.hours[9] = 50;
        assert_eq!(rules(&reasons(&c, &e, past(&p))), [("unusual_hour", 20)]);
        // One event at 13:xx out of 51 is 1.96%: still unusual; two (3.8%) is not.
        p.hours[13] = 1;
        assert_eq!(rules(&reasons(&c, &e, past(&p))), [("unusual_hour", 20)]);
        p.hours[13] = 2;
        assert!(reasons(&c, &e, past(&p)).is_empty());
        // Midnight wraps: 23:xx is next to 00:xx.
        let mut late = e.clone();
        late.timestamp = Utc.with_ymd_and_hms(2026, 11, 23, 0, 10, 0).unwrap();
        let mut p = Profile::default();
        p.hours[9] = 60;
        p.hours[23] = 5;
        assert!(reasons(&c, &late, past(&p)).is_empty());
    }

    #[test]
    fn new_country_needs_located_history() {
        let c = RiskConfig::default();
        let mut e = event(Level::Info, Outcome::Success, Category::DataManagement);
        e.timestamp = Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap();
        e.location = Some(Location {
            country: Some("FR".into()),
            city: None,
        });
        let mut p = Profile::default();
        p.hours[9] = 100;
        p.countries.insert("DE".into(), 19);
        assert!(reasons(&c, &e, past(&p)).is_empty());
        p.countries.insert("DE".into(), 20);
        let r = reasons(&c, &e, past(&p));
        assert_eq!(rules(&r), [("new_country", 15)]);
        assert!(!r[0].detail.contains("FR") && !r[0].detail.contains("DE"));
        p.countries.insert("FR".into(), 1);
        assert!(reasons(&c, &e, past(&p)).is_empty());
    }

    fn memory() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        conn.execute_batch(
            "CREATE TABLE events (seq INTEGER PRIMARY KEY, ts INTEGER, user_id TEXT,
                                  req_ip TEXT, outcome TEXT, country TEXT);
             CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
        )
        .unwrap();
        conn
    }

    fn at(e: &mut AuditEvent, ms: i64) {
        e.timestamp = DateTime::from_timestamp_millis(ms).unwrap();
    }

    #[test]
    fn the_scorer_counts_failures_per_user_and_per_address_within_the_window() {
        let conn = memory();
        let mut s = Scorer::new(RiskConfig::default());
        s.begin(&conn, 0).unwrap();
        let t0 = 1_795_000_000_000;
        let mut scores = Vec::new();
        for (i, (user, ip)) in [
            ("alice", "10.0.0.1"),
            ("alice", "10.0.0.1"),
            ("bob", "10.0.0.1"),
            ("alice", "10.0.0.2"),
        ]
        .into_iter()
        .enumerate()
        {
            let mut e = event(Level::Info, Outcome::Failure, Category::DataManagement);
            e.user.id = user.into();
            e.request = Some(RequestInfo {
                ip: Some(ip.into()),
                ..RequestInfo::default()
            });
            at(&mut e, t0 + i as i64 * 1000);
            s.observe(&conn, &mut e, t0 + 10_000).unwrap();
            scores.push((
                e.risk_score.unwrap(),
                rules(e.risk_reasons.as_ref().unwrap())
                    .into_iter()
                    .map(|(r, p)| (r.to_string(), p))
                    .collect::<Vec<_>>(),
            ));
        }
        let outcome = ("outcome".to_string(), 20);
        assert_eq!(scores[0], (20, vec![outcome.clone()]));
        assert_eq!(scores[1], (20, vec![outcome.clone()]));
        // bob's first, but the address's third failure.
        assert_eq!(
            scores[2],
            (30, vec![outcome.clone(), ("repeated_ip".into(), 10)])
        );
        // alice's third, the new address's first.
        assert_eq!(scores[3], (30, vec![outcome, ("repeated_user".into(), 10)]));
        // Eleven minutes later the window has passed.
        let mut e = event(Level::Info, Outcome::Failure, Category::DataManagement);
        at(&mut e, t0 + 11 * 60_000);
        s.observe(&conn, &mut e, t0 + 11 * 60_000).unwrap();
        assert_eq!(e.risk_score, Some(20));
    }

    #[test]
    fn a_senders_score_is_kept_but_the_event_still_counts() {
        let conn = memory();
        let mut s = Scorer::new(RiskConfig::default());
        s.begin(&conn, 0).unwrap();
        for i in 0..3 {
            let mut e = event(Level::Info, Outcome::Denied, Category::DataManagement);
            at(&mut e, 1_795_000_000_000 + i);
            if i < 2 {
                e.risk_score = Some(1);
            }
            s.observe(&conn, &mut e, 1_795_000_000_000 + 10).unwrap();
            if i < 2 {
                assert_eq!((e.risk_score, e.risk_reasons.is_none()), (Some(1), true));
            } else {
                assert_eq!(e.risk_score, Some(30 + 10), "third denial by alice");
            }
        }
    }

    #[test]
    fn profiles_persist_and_the_warm_start_rebuilds_recent_failures() {
        let conn = memory();
        let mut s = Scorer::new(RiskConfig::default());
        s.begin(&conn, 0).unwrap();
        let t0 = Utc
            .with_ymd_and_hms(2026, 11, 23, 9, 0, 0)
            .unwrap()
            .timestamp_millis();
        for i in 0..60 {
            let mut e = event(Level::Info, Outcome::Success, Category::DataManagement);
            at(&mut e, t0 + i * 1000);
            s.observe(&conn, &mut e, t0 + 60_000).unwrap();
        }
        s.flush(&conn, 2).unwrap();
        assert_eq!(load_profile(&conn, "alice").unwrap().hours[9], 60);
        // Two stored denials by alice, then a restart.
        conn.execute_batch(&format!(
            "INSERT INTO events VALUES (1, {t0}, 'alice', NULL, 'denied', NULL),
                                       (2, {}, 'alice', NULL, 'denied', NULL)",
            t0 + 1
        ))
        .unwrap();
        let mut s = Scorer::new(RiskConfig::default());
        s.begin(&conn, 2).unwrap();
        assert_eq!(s.tracked(), (1, 0));
        // The third denial, at alice's usual hour.
        let mut e = event(Level::Info, Outcome::Denied, Category::DataManagement);
        at(&mut e, t0 + 2);
        s.observe(&conn, &mut e, t0 + 10).unwrap();
        assert_eq!(
            rules(e.risk_reasons.as_ref().unwrap()),
            [("outcome", 30), ("repeated_user", 10)]
        );
        // 03:00 UTC, judged from the profile loaded from the table.
        let mut e = event(Level::Info, Outcome::Success, Category::DataManagement);
        at(&mut e, t0 - 6 * 3_600_000);
        s.observe(&conn, &mut e, t0 + 10).unwrap();
        assert_eq!(
            rules(e.risk_reasons.as_ref().unwrap()),
            [("unusual_hour", 20)]
        );
    }

    #[test]
    fn events_stored_after_the_last_flush_are_counted_again_on_start() {
        let conn = memory();
        let t0 = Utc
            .with_ymd_and_hms(2026, 11, 23, 9, 0, 0)
            .unwrap()
            .timestamp_millis();
        let store = |seq: i64, ts: i64, user: &str, country: &str| {
            conn.execute(
                "INSERT INTO events VALUES (?1, ?2, ?3, NULL, 'success', ?4)",
                params![seq, ts, user, country],
            )
            .unwrap();
        };
        // Three events by alice, counted and flushed through seq 3.
        let mut s = Scorer::new(RiskConfig::default());
        s.begin(&conn, 0).unwrap();
        for seq in 1..=3 {
            store(seq, t0, "alice", "DE");
            let mut e = event(Level::Info, Outcome::Success, Category::DataManagement);
            at(&mut e, t0);
            e.location = Some(Location {
                country: Some("DE".into()),
                city: None,
            });
            s.observe(&conn, &mut e, t0).unwrap();
        }
        s.flush(&conn, 3).unwrap();
        // Two more are stored (their transaction wrote no profiles), one by the system, then
        // the process dies.
        store(4, t0 + 3_600_000, "alice", "FR");
        store(5, t0, SYSTEM_ACTOR, "FR");
        drop(s);

        let mut s = Scorer::new(RiskConfig::default());
        s.begin(&conn, 5).unwrap();
        assert!(s.pending());
        s.flush(&conn, 5).unwrap();
        let alice = load_profile(&conn, "alice").unwrap();
        assert_eq!((alice.hours[9], alice.hours[10]), (3, 1));
        assert_eq!(
            alice.countries,
            HashMap::from([("DE".into(), 3), ("FR".into(), 1)])
        );
        assert!(load_profile(&conn, SYSTEM_ACTOR)
            .unwrap()
            .countries
            .is_empty());
        // Flushed through the head, a further start counts nothing twice.
        let mut s = Scorer::new(RiskConfig::default());
        s.begin(&conn, 5).unwrap();
        assert!(!s.pending());
    }

    #[test]
    fn the_system_actor_has_no_profile_and_no_user_repeats() {
        let conn = memory();
        let mut s = Scorer::new(RiskConfig::default());
        s.begin(&conn, 0).unwrap();
        for i in 0..5 {
            let mut e = event(Level::Info, Outcome::Failure, Category::DataManagement);
            e.user.id = SYSTEM_ACTOR.into();
            at(&mut e, 1_795_000_000_000 + i);
            s.observe(&conn, &mut e, 1_795_000_000_100).unwrap();
            assert_eq!(e.risk_score, Some(20));
        }
        s.flush(&conn, 5).unwrap();
        let rows: i64 = conn
            .query_row("SELECT COUNT(*) FROM risk_profile", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 0);
    }

    #[test]
    fn scoring_can_be_switched_off() {
        let conn = memory();
        let mut s = Scorer::new(RiskConfig {
            enabled: false,
            ..RiskConfig::default()
        });
        s.begin(&conn, 0).unwrap();
        let mut e = event(Level::Critical, Outcome::Denied, Category::Security);
        s.observe(&conn, &mut e, 0).unwrap();
        assert_eq!((e.risk_score, e.risk_reasons), (None, None));
    }

    #[test]
    fn config_keys_are_partial_and_checked() {
        let c: RiskConfig =
            toml::from_str("[level]\ncritical = 70\n[repeated]\nafter = 5").unwrap();
        assert_eq!(c.level.critical, 70);
        assert_eq!(c.level.error, LevelPoints::default().error);
        assert_eq!(c.repeated.after, 5);
        assert_eq!(c.repeated.window_seconds, 600);
        assert!(toml::from_str::<RiskConfig>("[level]\nfatal = 1").is_err());
        assert!(toml::from_str::<RiskConfig>("[outcome]\ndenied = 300").is_err());
    }
}
