//! Alerts: rules matched against every committed event (denial → warning, failure → critical,
//! and configured rules on level, category, outcome, action and rate), anomalies as they are
//! raised, grouping so a burst raises one alert and not thousands, the alert log in
//! `data/alerts.db` with acknowledgement, and webhook delivery with retries and a delivery
//! log. Server build only.

use crate::analytics::coverage::{Catalogue, CoverageStatus};
use crate::analytics::Severity;
use crate::insights::Analytics;
use crate::live::Hub;
use crate::model::{Alert, Category, Level, Outcome, StoredEvent};
use crate::store::sql::{Db, Row, SqlError};
use crate::store::Store;
use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The alert log's file inside the data directory.
pub const ALERTS_FILE: &str = "alerts.db";

/// `[alerts]` in `trailwatch.toml`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertConfig {
    /// The predecessor's rules: a denial is a warning, a failure is critical.
    pub builtin: bool,
    /// Events matching one rule within this many seconds of its alert join that alert.
    pub group_seconds: u64,
    /// How often raised anomalies are checked, in seconds.
    pub anomaly_seconds: u64,
    pub rules: Vec<AlertRule>,
    pub webhooks: Vec<Webhook>,
}

impl Default for AlertConfig {
    fn default() -> Self {
        AlertConfig {
            builtin: true,
            group_seconds: 60,
            anomaly_seconds: 10,
            rules: Vec::new(),
            webhooks: Vec::new(),
        }
    }
}

/// One configured rule; every condition given must hold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRule {
    pub name: String,
    pub severity: Severity,
    /// The event's level is at least this.
    #[serde(default)]
    pub min_level: Option<Level>,
    #[serde(default)]
    pub category: Option<Category>,
    #[serde(default)]
    pub outcome: Option<Outcome>,
    /// The action, exactly, or a prefix ending in `*` (`auth.*`).
    #[serde(default)]
    pub action: Option<String>,
    /// Fires only when this many matching events happen within `per_seconds`.
    #[serde(default)]
    pub rate: Option<Rate>,
}

/// A rate threshold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    pub count: u32,
    pub per_seconds: u64,
}

/// Where alerts are POSTed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    pub url: String,
    /// `json` (the alert as the socket sends it) or `slack` (`{"text": ...}`).
    #[serde(default)]
    pub format: WebhookFormat,
    /// Alerts below this severity are not sent.
    #[serde(default = "lowest")]
    pub min_severity: Severity,
}

fn lowest() -> Severity {
    Severity::Info
}

/// A webhook's payload shape.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    #[default]
    Json,
    Slack,
}

impl AlertRule {
    /// Whether `event` meets every condition (the rate aside).
    pub fn matches(&self, event: &StoredEvent) -> bool {
        let e = &event.event;
        self.min_level.is_none_or(|l| e.level >= l)
            && self.category.is_none_or(|c| e.category == c)
            && self.outcome.is_none_or(|o| e.outcome == o)
            && self
                .action
                .as_deref()
                .is_none_or(|a| match a.strip_suffix('*') {
                    Some(prefix) => e.action.starts_with(prefix),
                    None => e.action == a,
                })
    }
}

/// The rules in force: the built-in ones first.
pub fn rules(config: &AlertConfig) -> Vec<AlertRule> {
    let mut out = Vec::new();
    if config.builtin {
        for (name, outcome, severity) in [
            ("denied", Outcome::Denied, Severity::Warning),
            ("failure", Outcome::Failure, Severity::Critical),
        ] {
            out.push(AlertRule {
                name: name.into(),
                severity,
                min_level: None,
                category: None,
                outcome: Some(outcome),
                action: None,
                rate: None,
            });
        }
    }
    out.extend(config.rules.iter().cloned());
    out
}

/// The alert's sentence for an event.
fn message(rule: &AlertRule, event: &StoredEvent) -> String {
    let e = &event.event;
    let who = e.user.display_name();
    match (rule.name.as_str(), rule.rate) {
        ("denied", None) => format!("{} denied for {who}", e.action),
        ("failure", None) => format!("{} failed for {who}", e.action),
        (name, Some(rate)) => format!(
            "{name}: {} matching events within {} s (latest: {} by {who})",
            rate.count, rate.per_seconds, e.action
        ),
        (name, None) => format!("{name}: {} {} by {who}", e.action, e.outcome.as_str()),
    }
}

/// What the engine decided for one event under one rule.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Raise a new alert.
    Raise,
    /// Count it into the rule's open alert.
    Join,
    /// Nothing: the rule's rate is not reached.
    Quiet,
}

/// Grouping and rate state of one rule, kept apart from I/O so it can be tested on its own.
#[derive(Debug, Default)]
pub struct RuleState {
    /// Event times within the rate window.
    recent: VecDeque<i64>,
    /// The open alert: (id, its window's end in epoch ms, events joined after it).
    pub open: Option<(u64, i64, u64)>,
}

impl RuleState {
    /// Decides what an event matching `rule` at `ms` (arriving at `now_ms`) does.
    pub fn decide(&mut self, rule: &AlertRule, ms: i64, now_ms: i64) -> Decision {
        if let Some(rate) = rule.rate {
            let window = i64::try_from(rate.per_seconds.saturating_mul(1000)).unwrap_or(i64::MAX);
            self.recent.push_back(ms);
            while self.recent.front().is_some_and(|t| *t <= ms - window) {
                self.recent.pop_front();
            }
            if self.recent.len() < rate.count as usize {
                return Decision::Quiet;
            }
        }
        match &mut self.open {
            Some((_, until, joined)) if now_ms < *until => {
                *joined += 1;
                Decision::Join
            }
            _ => Decision::Raise,
        }
    }
}

/// The alert log and the engine's handle: cheap to clone.
#[derive(Clone)]
pub struct Alerts {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    config: AlertConfig,
    rules: Vec<AlertRule>,
    hub: Hub,
    http: reqwest::Client,
}

/// Failures of the alert log.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error("alert log: {0}")]
    Sql(#[from] SqlError),
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS alerts (
    id              INTEGER PRIMARY KEY,
    rule            TEXT    NOT NULL,
    severity        TEXT    NOT NULL,
    message         TEXT    NOT NULL,
    event           TEXT,
    count           INTEGER NOT NULL,
    first_at        INTEGER NOT NULL,
    last_at         INTEGER NOT NULL,
    acknowledged_at INTEGER
);
CREATE TABLE IF NOT EXISTS deliveries (
    id       INTEGER PRIMARY KEY,
    alert_id INTEGER NOT NULL,
    url      TEXT    NOT NULL,
    attempt  INTEGER NOT NULL,
    status   INTEGER,
    error    TEXT,
    at       INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_alert ON deliveries (alert_id);
";

/// One webhook delivery attempt, for the delivery log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    pub url: String,
    pub attempt: u32,
    /// The HTTP status, when there was an answer.
    pub status: Option<u16>,
    pub error: Option<String>,
    pub at: i64,
}

fn severity_name(s: Severity) -> &'static str {
    match s {
        Severity::Info => "info",
        Severity::Warning => "warning",
        Severity::Critical => "critical",
    }
}

fn severity_of(s: &str) -> Severity {
    match s {
        "critical" => Severity::Critical,
        "warning" => Severity::Warning,
        _ => Severity::Info,
    }
}

fn alert_from_row(r: &Row) -> Result<Alert, SqlError> {
    let event = r.opt_text(4)?;
    Ok(Alert {
        id: r.int(0)?.max(0) as u64,
        rule: r.text(1)?,
        severity: severity_of(&r.text(2)?),
        message: r.text(3)?,
        event: event.and_then(|e| serde_json::from_str(&e).ok()),
        count: r.int(5)?.max(0) as u64,
        first_at: r.int(6)?,
        last_at: r.int(7)?,
        acknowledged_at: r.opt_int(8)?,
    })
}

const ALERT_COLUMNS: &str =
    "id, rule, severity, message, event, count, first_at, last_at, acknowledged_at";

/// The body a webhook of `format` receives for `alert`.
pub fn payload(format: WebhookFormat, alert: &Alert) -> serde_json::Value {
    match format {
        WebhookFormat::Json => {
            serde_json::to_value(crate::model::ServerMessage::Alert(Box::new(alert.clone())))
                .unwrap_or_default()
        }
        WebhookFormat::Slack => serde_json::json!({
            "text": format!(
                "*{}* {}{}",
                severity_name(alert.severity).to_uppercase(),
                alert.message,
                if alert.count > 1 {
                    format!(" ({} events)", alert.count)
                } else {
                    String::new()
                }
            )
        }),
    }
}

/// How many times a webhook is tried, and the first wait between tries (doubling).
pub const WEBHOOK_ATTEMPTS: u32 = 5;
pub const WEBHOOK_FIRST_BACKOFF: Duration = Duration::from_secs(1);

impl Alerts {
    /// Opens (creating) the alert log in `data_dir`.
    ///
    /// # Errors
    /// The file cannot be opened or created.
    pub fn open(data_dir: &Path, config: AlertConfig, hub: Hub) -> Result<Alerts, AlertError> {
        let open = || -> Result<Connection, rusqlite::Error> {
            let conn = Connection::open(data_dir.join(ALERTS_FILE))?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            // Erasure rewrites alerts about a subject; the old text must not linger.
            conn.pragma_update(None, "secure_delete", "ON")?;
            conn.execute_batch(SCHEMA)?;
            Ok(conn)
        };
        let conn = open().map_err(SqlError::from)?;
        Ok(Alerts::on(
            Db::Sqlite(Arc::new(Mutex::new(conn))),
            config,
            hub,
        ))
    }

    /// The alert log of a cluster, in its PostgreSQL database (whose migrations made it).
    pub fn on(db: Db, config: AlertConfig, hub: Hub) -> Alerts {
        Alerts {
            inner: Arc::new(Inner {
                db,
                rules: rules(&config),
                config,
                hub,
                http: reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .unwrap_or_default(),
            }),
        }
    }

    /// Runs `f` in one transaction of the log, on the blocking pool.
    async fn with_db<T, F>(&self, f: F) -> Result<T, AlertError>
    where
        T: Send + 'static,
        F: FnOnce(&crate::store::sql::Session<'_>) -> Result<T, AlertError> + Send + 'static,
    {
        self.inner.db.transaction(f).await
    }

    /// Removes an erased data subject from the alert log: alerts raised by its events keep
    /// their rule and counts, but their event loses its personal fields (see
    /// [`crate::store::blank_personal`]) and their message
    /// names nobody (`names` are the subject's id and the usernames it went by). The WAL is
    /// emptied after, so no old copy stays in it. Returns how many alerts were rewritten.
    ///
    /// # Errors
    /// Database errors.
    pub async fn erase_subject(
        &self,
        subject: &str,
        names: Vec<String>,
        personal_metadata: Vec<String>,
    ) -> Result<u64, AlertError> {
        let subject = subject.to_string();
        let changed = self
            .with_db(move |conn| {
                let mut names: Vec<String> = names.into_iter().filter(|n| !n.is_empty()).collect();
                // Longest first, so a name containing another is replaced whole.
                names.sort_by_key(|n| std::cmp::Reverse(n.len()));
                let rows = conn.query("SELECT id, message, event FROM alerts", &[])?;
                let mut changed = 0;
                for row in rows {
                    let (id, message, event) = (row.int(0)?, row.text(1)?, row.opt_text(2)?);
                    let mut stored: Option<StoredEvent> =
                        event.as_deref().and_then(|e| serde_json::from_str(e).ok());
                    let about = stored.as_ref().is_some_and(|e| e.event.user.id == subject);
                    let named = names.iter().any(|n| message.contains(n.as_str()));
                    if !about && !named {
                        continue;
                    }
                    let mut text = message;
                    for n in &names {
                        text = text.replace(n.as_str(), crate::store::ERASED_SUBJECT);
                    }
                    if let Some(e) = stored.as_mut().filter(|_| about) {
                        crate::store::blank_personal(&mut e.event, &personal_metadata);
                    }
                    let event = stored
                        .map(|e| serde_json::to_string(&e))
                        .transpose()
                        .ok()
                        .flatten();
                    conn.execute(
                        "UPDATE alerts SET message = ?1, event = ?2 WHERE id = ?3",
                        &[&text, &event, &id],
                    )?;
                    changed += 1;
                }
                Ok(changed)
            })
            .await?;
        // The WAL still holds the old text: emptied once the rewrite has committed.
        self.inner.db.truncate_sqlite_wal().await?;
        Ok(changed)
    }

    /// The newest alerts first, at most `limit`; only unacknowledged ones when asked.
    ///
    /// # Errors
    /// The log cannot be read.
    pub async fn list(&self, limit: u32, unacknowledged: bool) -> Result<Vec<Alert>, AlertError> {
        self.with_db(move |c| {
            let sql = format!(
                "SELECT {ALERT_COLUMNS} FROM alerts {} ORDER BY id DESC LIMIT ?1",
                if unacknowledged {
                    "WHERE acknowledged_at IS NULL"
                } else {
                    ""
                }
            );
            let rows = c.query(&sql, &[&i64::from(limit)])?;
            Ok(rows.iter().map(alert_from_row).collect::<Result<_, _>>()?)
        })
        .await
    }

    /// Marks an alert acknowledged (once; a second call keeps the first time); `None` when
    /// there is no such alert.
    ///
    /// # Errors
    /// The log cannot be written.
    pub async fn acknowledge(&self, id: u64, now_ms: i64) -> Result<Option<Alert>, AlertError> {
        self.with_db(move |c| {
            c.execute(
                "UPDATE alerts SET acknowledged_at = ?2 WHERE id = ?1 AND acknowledged_at IS NULL",
                &[&(id as i64), &now_ms],
            )?;
            let sql = format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = ?1");
            Ok(c.query_opt(&sql, &[&(id as i64)])?
                .map(|r| alert_from_row(&r))
                .transpose()?)
        })
        .await
    }

    /// Every delivery attempt of one alert, oldest first.
    ///
    /// # Errors
    /// The log cannot be read.
    pub async fn deliveries(&self, id: u64) -> Result<Vec<Delivery>, AlertError> {
        self.with_db(move |c| {
            let rows = c.query(
                "SELECT url, attempt, status, error, at FROM deliveries
                 WHERE alert_id = ?1 ORDER BY id",
                &[&(id as i64)],
            )?;
            let delivery = |r: &Row| -> Result<Delivery, SqlError> {
                Ok(Delivery {
                    url: r.text(0)?,
                    attempt: u32::try_from(r.int(1)?).unwrap_or(u32::MAX),
                    status: r.opt_int(2)?.and_then(|s| u16::try_from(s).ok()),
                    error: r.opt_text(3)?,
                    at: r.int(4)?,
                })
            };
            Ok(rows.iter().map(delivery).collect::<Result<_, _>>()?)
        })
        .await
    }

    /// Stores a new alert and announces it (socket and webhooks); returns it with its id.
    async fn raise(&self, mut alert: Alert) -> Result<Alert, AlertError> {
        crate::metrics::get()
            .alerts
            .get_or_create(&crate::metrics::RuleLabels {
                rule: alert.rule.to_string(),
            })
            .inc();
        let row = alert.clone();
        alert.id = self
            .with_db(move |c| {
                let event = row
                    .event
                    .as_ref()
                    .and_then(|e| serde_json::to_string(e).ok());
                let id = c
                    .query_one(
                        "INSERT INTO alerts (rule, severity, message, event, count, first_at, last_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING id",
                        &[
                            &row.rule,
                            &severity_name(row.severity),
                            &row.message,
                            &event,
                            &(row.count as i64),
                            &row.first_at,
                            &row.last_at,
                        ],
                    )?
                    .int(0)?;
                Ok(id.max(0) as u64)
            })
            .await?;
        self.announce(&alert);
        Ok(alert)
    }

    /// Adds `joined` events to a grouped alert when its window closes, and announces the
    /// new count.
    async fn close_group(&self, id: u64, joined: u64, last_at: i64) -> Result<(), AlertError> {
        let updated = self
            .with_db(move |c| {
                c.execute(
                    "UPDATE alerts SET count = count + ?2,
                         last_at = CASE WHEN last_at > ?3 THEN last_at ELSE ?3 END
                     WHERE id = ?1",
                    &[&(id as i64), &(joined as i64), &last_at],
                )?;
                let sql = format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = ?1");
                Ok(c.query_opt(&sql, &[&(id as i64)])?
                    .map(|r| alert_from_row(&r))
                    .transpose()?)
            })
            .await?;
        if let Some(mut alert) = updated {
            alert.message = format!("{} (and {} more like it)", alert.message, joined);
            self.announce(&alert);
        }
        Ok(())
    }

    /// Sends an alert to every socket and to the webhooks that take its severity.
    fn announce(&self, alert: &Alert) {
        self.inner.hub.publish_alert(alert);
        for hook in &self.inner.config.webhooks {
            if alert.severity >= hook.min_severity {
                let (me, hook, alert) = (self.clone(), hook.clone(), alert.clone());
                tokio::spawn(async move { me.deliver(&hook, &alert).await });
            }
        }
    }

    /// POSTs `alert` to `hook`, retrying with doubling waits, logging every attempt.
    async fn deliver(&self, hook: &Webhook, alert: &Alert) {
        let body = payload(hook.format, alert);
        let mut wait = WEBHOOK_FIRST_BACKOFF;
        for attempt in 1..=WEBHOOK_ATTEMPTS {
            let sent = self.inner.http.post(&hook.url).json(&body).send().await;
            let (status, error) = match &sent {
                Ok(r) if r.status().is_success() => (Some(r.status().as_u16()), None),
                Ok(r) => (
                    Some(r.status().as_u16()),
                    Some(format!("HTTP {}", r.status())),
                ),
                Err(e) => (None, Some(e.to_string())),
            };
            let ok = error.is_none();
            let (url, id) = (hook.url.clone(), alert.id);
            let now = chrono::Utc::now().timestamp_millis();
            let logged = self
                .with_db(move |c| {
                    c.execute(
                        "INSERT INTO deliveries (alert_id, url, attempt, status, error, at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        &[
                            &(id as i64),
                            &url,
                            &attempt,
                            &status.map(i64::from),
                            &error,
                            &now,
                        ],
                    )?;
                    Ok(())
                })
                .await;
            if let Err(e) = logged {
                tracing::error!(error = %e, "webhook delivery log failed");
            }
            if ok {
                return;
            }
            crate::metrics::get().webhook_failures.inc();
            if attempt < WEBHOOK_ATTEMPTS {
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
        }
        tracing::warn!(url = %hook.url, alert = alert.id, "webhook gave up after every attempt");
    }

    /// Follows the store's commits and the anomaly rules in a task, raising alerts.
    /// Every event is seen, in seq order: a burst beyond the live queue is read back from the
    /// store, so grouped counts are exact.
    ///
    /// On the anomaly check's cadence, it also works out the audit coverage of `catalogue`:
    /// an expected or learned action that goes silent raises a `coverage:<action>` alert,
    /// once, and may raise again only after its events came back.
    pub fn watch(&self, store: &Store, analytics: Analytics, catalogue: Catalogue) {
        let me = self.clone();
        let store = store.clone();
        tokio::spawn(async move {
            let mut commits = match store.follow().await {
                Ok(f) => f,
                Err(e) => {
                    tracing::error!(error = %e, "alerts cannot follow the store");
                    return;
                }
            };
            let mut states: HashMap<usize, RuleState> = HashMap::new();
            let mut raised: BTreeSet<(String, String)> = BTreeSet::new();
            let mut silent: BTreeSet<String> = BTreeSet::new();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let mut last_anomaly_check = 0i64;
            loop {
                tokio::select! {
                    commit = commits.next() => match commit {
                        Ok(Some(event)) => me.on_event(&mut states, &event).await,
                        Ok(None) => break,
                        Err(e) => {
                            tracing::error!(error = %e, "alerts lost the store");
                            break;
                        }
                    },
                    _ = tick.tick() => {
                        let now = chrono::Utc::now().timestamp_millis();
                        // A window closes only once every event that arrived in it is counted.
                        if commits.last_seq() >= store.committed_head() {
                            me.close_expired(&mut states, now).await;
                        }
                        let every = i64::try_from(me.inner.config.anomaly_seconds.max(1) * 1000).unwrap_or(i64::MAX);
                        if now - last_anomaly_check >= every {
                            last_anomaly_check = now;
                            me.check_anomalies(&analytics, &mut raised, now).await;
                            me.check_coverage(&analytics, &catalogue, &mut silent, now).await;
                        }
                    }
                }
            }
        });
    }

    async fn on_event(&self, states: &mut HashMap<usize, RuleState>, event: &StoredEvent) {
        // Windows run on arrival time, not on when this task gets to the event: a burst
        // committed at once is one group however long it takes to go through.
        let now = event.received_at.timestamp_millis();
        let ms = event.event.timestamp.timestamp_millis();
        let group =
            i64::try_from(self.inner.config.group_seconds.saturating_mul(1000)).unwrap_or(i64::MAX);
        for (i, rule) in self.inner.rules.iter().enumerate() {
            if !rule.matches(event) {
                continue;
            }
            let state = states.entry(i).or_default();
            if state.decide(rule, ms, now) != Decision::Raise {
                continue;
            }
            let alert = Alert {
                id: 0,
                severity: rule.severity,
                message: message(rule, event),
                rule: rule.name.clone(),
                event: Some(Box::new(event.clone())),
                count: 1,
                first_at: ms,
                last_at: ms,
                acknowledged_at: None,
            };
            match self.raise(alert).await {
                Ok(a) => state.open = Some((a.id, now + group, 0)),
                Err(e) => tracing::error!(error = %e, "could not record an alert"),
            }
        }
    }

    async fn close_expired(&self, states: &mut HashMap<usize, RuleState>, now: i64) {
        for state in states.values_mut() {
            if let Some((id, until, joined)) = state.open {
                if now >= until {
                    state.open = None;
                    if joined > 0 {
                        if let Err(e) = self.close_group(id, joined, now).await {
                            tracing::error!(error = %e, "could not update a grouped alert");
                        }
                    }
                }
            }
        }
    }

    /// Raises an alert for each action newly silent; `silent` holds those alerted for, and
    /// lets go of an action once it is no longer silent.
    async fn check_coverage(
        &self,
        analytics: &Analytics,
        catalogue: &Catalogue,
        silent: &mut BTreeSet<String>,
        now: i64,
    ) {
        let coverage = match analytics.coverage(&catalogue.expected, now).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "coverage check failed");
                return;
            }
        };
        let mut current = BTreeSet::new();
        for e in coverage.entries {
            if e.status != CoverageStatus::Silent {
                continue;
            }
            if !silent.contains(&e.action) {
                let days = |ms: i64| format!("{:.1}", ms as f64 / 86_400_000.0);
                let since = match e.last_seen_hour {
                    Some(h) => format!("not audited for {} days", days(now - h)),
                    None => "not audited in the last 30 days".into(),
                };
                let alert = Alert {
                    id: 0,
                    severity: Severity::Warning,
                    message: format!(
                        "{} ({}) is {since}; it is expected at least every {} days",
                        e.action,
                        e.origin,
                        days(e.window_ms)
                    ),
                    rule: format!("coverage:{}", e.action),
                    event: None,
                    count: 1,
                    first_at: e.last_seen_hour.unwrap_or(now),
                    last_at: now,
                    acknowledged_at: None,
                };
                if let Err(err) = self.raise(alert).await {
                    tracing::error!(error = %err, "could not record a coverage alert");
                }
            }
            current.insert(e.action);
        }
        *silent = current;
    }

    async fn check_anomalies(
        &self,
        analytics: &Analytics,
        raised: &mut BTreeSet<(String, String)>,
        now: i64,
    ) {
        let found = match analytics.anomalies(now).await {
            Ok(found) => found,
            Err(e) => {
                tracing::error!(error = %e, "anomaly check failed");
                return;
            }
        };
        let mut current = BTreeSet::new();
        for a in found {
            let kind = serde_json::to_value(a.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            let key = (kind.clone(), a.subject.clone().unwrap_or_default());
            if !raised.contains(&key) {
                let alert = Alert {
                    id: 0,
                    severity: a.severity,
                    message: a.description.clone(),
                    rule: format!("anomaly:{kind}"),
                    event: None,
                    count: 1,
                    first_at: a.started_at,
                    last_at: now,
                    acknowledged_at: None,
                };
                if let Err(e) = self.raise(alert).await {
                    tracing::error!(error = %e, "could not record an anomaly alert");
                }
            }
            current.insert(key);
        }
        *raised = current;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(action: &str, outcome: &str, level: &str) -> StoredEvent {
        serde_json::from_value(serde_json::json!({
            "seq": 1, "eventId": "e1", "receivedAt": "2026-01-01T00:00:00Z", "hash": "00",
            "timestamp": "2026-01-01T00:00:00Z", "level": level, "category": "authentication",
            "action": action, "outcome": outcome, "user": {"id": "eve"}, "source": "http"
        }))
        .unwrap()
    }

    fn rule(toml_text: &str) -> AlertRule {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn builtin_rules_match_denials_and_failures() {
        let r = rules(&AlertConfig::default());
        let names = |e: &StoredEvent| {
            r.iter()
                .filter(|x| x.matches(e))
                .map(|x| (x.name.clone(), x.severity))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(&event("file.read", "denied", "info")),
            [("denied".to_string(), Severity::Warning)]
        );
        assert_eq!(
            names(&event("file.read", "failure", "info")),
            [("failure".to_string(), Severity::Critical)]
        );
        assert!(names(&event("file.read", "success", "critical")).is_empty());
    }

    #[test]
    fn configured_rules_need_every_condition() {
        let r = rule(
            "name = \"auth errors\"\nseverity = \"critical\"\nmin_level = \"error\"\n\
             category = \"authentication\"\naction = \"auth.*\"",
        );
        assert!(r.matches(&event("auth.login", "success", "error")));
        assert!(r.matches(&event("auth.mfa", "success", "critical")));
        assert!(!r.matches(&event("auth.login", "success", "warning")));
        assert!(!r.matches(&event("file.read", "success", "error")));
        assert!(toml::from_str::<AlertRule>("name = \"x\"\nseverity = \"loud\"").is_err());
    }

    #[test]
    fn a_burst_raises_one_alert_and_joins_the_rest_until_the_window_ends() {
        let r = rules(&AlertConfig::default()).remove(0);
        let mut s = RuleState::default();
        assert_eq!(s.decide(&r, 0, 0), Decision::Raise);
        s.open = Some((1, 60_000, 0));
        for i in 1..10_000 {
            assert_eq!(s.decide(&r, i, i), Decision::Join);
        }
        assert_eq!(s.open, Some((1, 60_000, 9_999)));
        assert_eq!(s.decide(&r, 60_000, 60_000), Decision::Raise);
    }

    #[test]
    fn slack_webhooks_get_one_line_of_text_and_json_ones_the_socket_message() {
        let alert = Alert {
            id: 7,
            severity: Severity::Critical,
            message: "backup.run failed for svc".into(),
            rule: "failure".into(),
            event: None,
            count: 12,
            first_at: 1,
            last_at: 2,
            acknowledged_at: None,
        };
        assert_eq!(
            payload(WebhookFormat::Slack, &alert),
            serde_json::json!({"text": "*CRITICAL* backup.run failed for svc (12 events)"})
        );
        let json = payload(WebhookFormat::Json, &alert);
        assert_eq!(json["type"], "alert");
        assert_eq!(json["id"], 7);
        assert_eq!(json["count"], 12);
        assert_eq!(json["severity"], "critical");
    }

    #[test]
    fn rate_rules_fire_at_their_count_within_the_window() {
        let r = rule(
            "name = \"login storm\"\nseverity = \"warning\"\naction = \"auth.login\"\n\
             rate = { count = 3, per_seconds = 10 }",
        );
        let mut s = RuleState::default();
        assert_eq!(s.decide(&r, 0, 0), Decision::Quiet);
        assert_eq!(s.decide(&r, 5_000, 5_000), Decision::Quiet);
        // The first leaves the window at 10 s: still two.
        assert_eq!(s.decide(&r, 10_000, 10_000), Decision::Quiet);
        assert_eq!(s.decide(&r, 11_000, 11_000), Decision::Raise);
    }
}
