//! Sign-in throttling by address: each refused sign-in makes the next answer slower, and a
//! run of them locks the address out for a while, longer each time. Kept in memory: a
//! restart forgets it, which costs a guesser a restart of the server they cannot cause.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Refused sign-ins from one address before it is locked out.
pub const LOCK_AFTER: u32 = 5;
/// The first lockout; each further refusal doubles it, up to [`MAX_LOCK`].
pub const FIRST_LOCK: Duration = Duration::from_secs(60);
/// The longest lockout.
pub const MAX_LOCK: Duration = Duration::from_secs(3600);
/// The pause after the first refusal; it doubles with each one, up to [`MAX_DELAY`].
const FIRST_DELAY: Duration = Duration::from_millis(300);
const MAX_DELAY: Duration = Duration::from_secs(5);
/// An address quiet for this long starts afresh.
const FORGET_AFTER: Duration = Duration::from_secs(3600);

#[derive(Debug)]
struct Attempts {
    failures: u32,
    last: Instant,
    locked_until: Option<Instant>,
}

/// What a refused sign-in leads to.
#[derive(Debug, PartialEq, Eq)]
pub struct Failure {
    /// How long to wait before answering.
    pub delay: Duration,
    /// Set when this refusal locked the address out, for how long.
    pub locked_for: Option<Duration>,
}

/// The sign-in attempts of each address.
#[derive(Debug, Default)]
pub struct LoginGuard {
    by_address: Mutex<HashMap<String, Attempts>>,
}

impl LoginGuard {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, Attempts>) -> T) -> T {
        // The map holds only counters; one left half-updated by a panic is still usable.
        let mut map = self
            .by_address
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut map)
    }

    /// How long `address` is still locked out at `now`, if it is.
    pub fn locked(&self, address: &str, now: Instant) -> Option<Duration> {
        self.with(|map| {
            let until = map.get(address)?.locked_until?;
            (until > now).then(|| until - now)
        })
    }

    /// Counts a refused sign-in from `address`.
    pub fn failed(&self, address: &str, now: Instant) -> Failure {
        self.with(|map| {
            map.retain(|_, a| now.saturating_duration_since(a.last) < FORGET_AFTER);
            let a = map.entry(address.to_string()).or_insert(Attempts {
                failures: 0,
                last: now,
                locked_until: None,
            });
            a.failures += 1;
            a.last = now;
            let doublings = |n: u32| 2u32.saturating_pow(n.min(16));
            let delay = FIRST_DELAY
                .saturating_mul(doublings(a.failures - 1))
                .min(MAX_DELAY);
            let locked_for = (a.failures >= LOCK_AFTER).then(|| {
                FIRST_LOCK
                    .saturating_mul(doublings(a.failures - LOCK_AFTER))
                    .min(MAX_LOCK)
            });
            if let Some(d) = locked_for {
                a.locked_until = Some(now + d);
            }
            Failure { delay, locked_for }
        })
    }

    /// A successful sign-in from `address` clears its record.
    pub fn succeeded(&self, address: &str) {
        self.with(|map| map.remove(address));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_slow_down_then_lock_out_for_longer_each_time() {
        let guard = LoginGuard::default();
        let t0 = Instant::now();
        let delays: Vec<Duration> = (0..4).map(|_| guard.failed("10.0.0.9", t0).delay).collect();
        assert_eq!(
            delays,
            [300, 600, 1200, 2400].map(Duration::from_millis).to_vec()
        );
        assert_eq!(guard.locked("10.0.0.9", t0), None);
        let fifth = guard.failed("10.0.0.9", t0);
        assert_eq!(
            (fifth.delay, fifth.locked_for),
            (Duration::from_millis(4800), Some(FIRST_LOCK))
        );
        assert_eq!(guard.locked("10.0.0.9", t0), Some(FIRST_LOCK));
        assert_eq!(guard.locked("10.0.0.10", t0), None, "per address");
        let later = t0 + FIRST_LOCK;
        assert_eq!(guard.locked("10.0.0.9", later), None, "the lock ends");
        let sixth = guard.failed("10.0.0.9", later);
        assert_eq!(
            (sixth.delay, sixth.locked_for),
            (MAX_DELAY, Some(FIRST_LOCK * 2)),
            "and the next refusal locks for twice as long"
        );
        guard.succeeded("10.0.0.9");
        assert_eq!(guard.failed("10.0.0.9", later).locked_for, None);
    }
}
