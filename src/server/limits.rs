//! The ingest rate limit: a token bucket per credential holder (each API token, and the admin
//! credential), refilled continuously. A refused request gets `429` with `Retry-After`, and the
//! first refusal of a holder in each minute is recorded in the chain as `ingest.rate_limited`.

use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The `[limits]` section.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Ingest requests per second each holder may make on average; `0` turns the limit off.
    pub ingest_per_second: f64,
    /// How many requests a holder may make at once after a quiet spell.
    pub ingest_burst: u32,
    /// Seconds a client has to send a request's head, from its first byte (or from
    /// connecting, for the first request); nginx's `client_header_timeout`.
    pub header_timeout_secs: u64,
    /// Seconds an idle keep-alive connection stays open; nginx's `keepalive_timeout`.
    pub keepalive_timeout_secs: u64,
    /// Seconds a request's body has to arrive whole before it is answered `408`.
    pub body_timeout_secs: u64,
    /// Open connections (WebSockets included) the server holds at once; beyond it a new
    /// connection is answered `503` and closed.
    pub max_connections: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        // Far above what one well-behaved sender needs (a batch of thousands of events is one
        // request; many instances of an application may share a token and send one event a
        // request), low enough that one runaway loop cannot take the writer from the rest.
        LimitsConfig {
            ingest_per_second: 1000.0,
            ingest_burst: 2000,
            // What nginx's users know: 60 s for a head or a body, 75 s of idle keep-alive.
            header_timeout_secs: 60,
            keepalive_timeout_secs: 75,
            body_timeout_secs: 60,
            // Well under the 20,000 files the process may open, leaving room for the
            // databases, tailed files and webhooks.
            max_connections: 10_000,
        }
    }
}

impl LimitsConfig {
    /// Refuses values that make no limit at all by accident.
    ///
    /// # Errors
    /// A negative or non-finite rate, or a burst of zero with the limit on.
    pub fn validate(&self) -> Result<(), String> {
        if !self.ingest_per_second.is_finite() || self.ingest_per_second < 0.0 {
            return Err("limits.ingest_per_second must be 0 (off) or a positive number".into());
        }
        if self.ingest_per_second > 0.0 && self.ingest_burst == 0 {
            return Err("limits.ingest_burst must be at least 1".into());
        }
        for (name, secs) in [
            ("header_timeout_secs", self.header_timeout_secs),
            ("keepalive_timeout_secs", self.keepalive_timeout_secs),
            ("body_timeout_secs", self.body_timeout_secs),
        ] {
            if !(1..=86_400).contains(&secs) {
                return Err(format!("limits.{name} must be from 1 to 86400 seconds"));
            }
        }
        if self.max_connections == 0 {
            return Err("limits.max_connections must be at least 1".into());
        }
        Ok(())
    }
}

/// How often one holder's refusals are recorded in the chain.
const RECORD_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
    /// When a refusal was last recorded in the chain.
    recorded: Option<Instant>,
}

/// A refusal: when to retry, and whether this one should be recorded.
#[derive(Debug, PartialEq)]
pub struct Refused {
    pub retry_after: Duration,
    pub record: bool,
}

/// Token buckets by holder.
#[derive(Debug)]
pub struct RateLimiter {
    /// Replaced whole by the Settings page; read once per request.
    config: std::sync::RwLock<LimitsConfig>,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    pub fn new(config: LimitsConfig) -> RateLimiter {
        RateLimiter {
            config: std::sync::RwLock::new(config),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The limit in effect.
    pub fn config(&self) -> LimitsConfig {
        self.config
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Puts a new limit into effect (checked by the caller); buckets refill at the new rate
    /// and cap at the new burst from the next request on.
    pub fn reconfigure(&self, config: LimitsConfig) {
        *self
            .config
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = config;
    }

    /// Takes one request of `holder` at `now`.
    ///
    /// # Errors
    /// [`Refused`] when the holder's bucket is empty.
    pub fn take(&self, holder: &str, now: Instant) -> Result<(), Refused> {
        let (rate, burst) = {
            let config = self
                .config
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            (config.ingest_per_second, config.ingest_burst)
        };
        if rate <= 0.0 {
            return Ok(());
        }
        let burst = f64::from(burst.max(1));
        // A poisoned lock only means another request panicked mid-update; the buckets are
        // still numbers, so carry on with them.
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Looked up before inserting: the holder's name is copied only on its first request.
        if !buckets.contains_key(holder) {
            buckets.insert(
                holder.to_string(),
                Bucket {
                    tokens: burst,
                    at: now,
                    recorded: None,
                },
            );
        }
        let Some(bucket) = buckets.get_mut(holder) else {
            return Ok(());
        };
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let retry_after = Duration::from_secs_f64((1.0 - bucket.tokens) / rate);
        let record = bucket
            .recorded
            .is_none_or(|t| now.saturating_duration_since(t) >= RECORD_EVERY);
        if record {
            bucket.recorded = Some(now);
        }
        Err(Refused {
            retry_after,
            record,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate_and_records_once_a_minute() {
        let limiter = RateLimiter::new(LimitsConfig {
            ingest_per_second: 2.0,
            ingest_burst: 3,
            ..LimitsConfig::default()
        });
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.take("app", t0), Ok(()));
        }
        let refused = limiter.take("app", t0).unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_millis(500));
        assert!(refused.record, "the first refusal is recorded");
        assert!(
            !limiter.take("app", t0).unwrap_err().record,
            "not every one"
        );
        // Another holder has its own bucket.
        assert_eq!(limiter.take("other", t0), Ok(()));
        // Half a second refills one request.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(limiter.take("app", t1), Ok(()));
        assert!(limiter.take("app", t1).is_err());
        // A minute later a refusal is recorded again; the bucket is full again too.
        let t2 = t0 + Duration::from_secs(61);
        for _ in 0..3 {
            assert_eq!(limiter.take("app", t2), Ok(()));
        }
        assert!(limiter.take("app", t2).unwrap_err().record);
    }

    #[test]
    fn zero_turns_the_limit_off_and_bad_settings_are_refused() {
        let off = RateLimiter::new(LimitsConfig {
            ingest_per_second: 0.0,
            ingest_burst: 0,
            ..LimitsConfig::default()
        });
        let now = Instant::now();
        assert!((0..10_000).all(|_| off.take("app", now).is_ok()));
        assert!(LimitsConfig {
            ingest_per_second: -1.0,
            ingest_burst: 5,
            ..LimitsConfig::default()
        }
        .validate()
        .is_err());
        assert!(LimitsConfig {
            ingest_per_second: 5.0,
            ingest_burst: 0,
            ..LimitsConfig::default()
        }
        .validate()
        .is_err());
        assert!(LimitsConfig::default().validate().is_ok());
        for bad in [
            LimitsConfig {
                header_timeout_secs: 0,
                ..LimitsConfig::default()
            },
            LimitsConfig {
                max_connections: 0,
                ..LimitsConfig::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
