//! Rate limits per principal, answered 429 with `Retry-After`: per client token (slots and
//! events), per user (slots), per advertiser (management calls). The limiters are `governor`'s
//! keyed GCRA limiters (a `DashMap` per scope) over [`GovernorClock`], an adapter that reads the
//! app's injected [`SharedClock`], so tests that move a `ManualClock` move the limits too. They
//! live in this node's memory: limits hold per node (with N nodes behind a balancer a principal
//! gets up to N times the rate), which bounds abuse without a store round trip on the hot path.
//!
//! Keyed state stays bounded: every [`PRUNE_EVERY`] checks a limiter holding more than
//! [`PRUNE_ABOVE`] keys calls `retain_recent`, which forgets every key whose state is
//! indistinguishable from a fresh one (a full bucket). What stays is the keys that were limited
//! within one refill of the burst.
//!
//! Uploads are also limited by how many one advertiser has in flight ([`Concurrency`]): a rate
//! bounds how often uploads start, not how many multi-MiB bodies are being buffered at once.
//! `Concurrency` stays hand-written: `governor` limits rates only (cells per time), and a count
//! in flight that is given back when a [`Permit`] drops is a semaphore per key, which neither
//! `governor` nor `tokio::sync::Semaphore` (not keyed, and its permits wait where this refuses)
//! provides in a few lines.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::Clock as _;
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};
use parking_lot::Mutex;

use crate::clock::{Millis, SharedClock};
use crate::config::RateLimitSettings;
use crate::metrics::{Metrics, RateLimitScope};

/// How many checks pass between two looks at a limiter's size.
pub const PRUNE_EVERY: u64 = 1024;
/// Above this many tracked principals in a limiter, idle (full) buckets are forgotten.
pub const PRUNE_ABOVE: usize = 100_000;

/// `governor`'s view of the app clock: instants are the time the injected [`SharedClock`] has
/// moved forward since this adapter was made. A step back of the app clock (an NTP correction,
/// a test setting an earlier time) counts as a pause, never as time to be repaid: the limits go
/// on refilling from there as the clock moves forward again, instead of refusing everyone until
/// the clock is back where it was.
pub struct GovernorClock {
    clock: SharedClock,
    /// (the app clock's last reading, the instant it was read as), in milliseconds.
    last: Mutex<(Millis, u64)>,
}

impl GovernorClock {
    pub fn new(clock: SharedClock) -> Self {
        let now = clock.now_ms();
        Self {
            clock,
            last: Mutex::new((now, 0)),
        }
    }
}

impl governor::clock::Clock for GovernorClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        let now = self.clock.now_ms();
        let mut last = self.last.lock();
        let (seen, instant) = *last;
        *last = (now, instant + now.saturating_sub(seen).max(0) as u64);
        Duration::from_millis(last.1)
    }
}

/// A rate (tokens per second) and a burst (bucket size). A zero rate means unlimited.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: f64,
}

impl Rate {
    /// The `governor` quota of this rate, `None` when unlimited. A fractional burst is rounded
    /// down (a request takes a whole token), and is at least one.
    fn quota(self) -> Option<Quota> {
        if self.per_second.is_nan() || self.per_second <= 0.0 {
            return None;
        }
        let period = Duration::try_from_secs_f64(1.0 / self.per_second)
            .ok()
            .filter(|p| !p.is_zero())
            .unwrap_or(Duration::from_nanos(1));
        let burst = NonZeroU32::new(self.burst.clamp(1.0, u32::MAX as f64) as u32)
            .unwrap_or(NonZeroU32::MIN);
        Quota::with_period(period).map(|q| q.allow_burst(burst))
    }
}

type Keyed =
    RateLimiter<String, DashMapStateStore<String>, GovernorClock, NoOpMiddleware<Duration>>;

/// The keyed limiter of one scope.
pub struct Limiter {
    /// `None`: unlimited.
    keyed: Option<Keyed>,
    checks: AtomicU64,
    prune_above: usize,
}

impl Limiter {
    pub fn new(rate: Rate, clock: SharedClock) -> Self {
        Self::with_prune_above(rate, clock, PRUNE_ABOVE)
    }

    fn with_prune_above(rate: Rate, clock: SharedClock, prune_above: usize) -> Self {
        Self {
            keyed: rate
                .quota()
                .map(|quota| RateLimiter::dashmap_with_clock(quota, GovernorClock::new(clock))),
            checks: AtomicU64::new(0),
            prune_above,
        }
    }

    /// Takes one token for `key` at the clock's now; `Err(seconds)` until the next token when
    /// there is none (at least one: `Retry-After` counts whole seconds).
    pub fn check(&self, key: &str) -> Result<(), u64> {
        let Some(keyed) = &self.keyed else {
            return Ok(());
        };
        if self.checks.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            self.prune();
        }
        keyed.check_key(&key.to_owned()).map_err(|not_until| {
            let wait = not_until.wait_time_from(keyed.clock().now());
            wait.as_secs_f64().ceil().max(1.0) as u64
        })
    }

    /// Forgets idle keys when more than the bound are tracked.
    fn prune(&self) {
        if let Some(keyed) = &self.keyed {
            if keyed.len() > self.prune_above {
                keyed.retain_recent();
                keyed.shrink_to_fit();
            }
        }
    }

    /// Principals tracked now.
    pub fn tracked(&self) -> usize {
        self.keyed.as_ref().map_or(0, |k| k.len())
    }
}

/// At most `limit` operations of one key in flight on this node. A slot is taken when an
/// operation starts and given back when its [`Permit`] drops, however the operation ends
/// (finished, refused, timed out, or its client gone).
pub struct Concurrency {
    limit: usize,
    scope: RateLimitScope,
    in_flight: Mutex<HashMap<String, usize>>,
}

/// One slot of a [`Concurrency`] limit, held for as long as the operation runs.
#[must_use = "the slot is given back when the permit drops"]
pub struct Permit<'a> {
    owner: &'a Concurrency,
    key: String,
}

impl Concurrency {
    /// When a slot frees is unknown here (an upload ends when its body does); a client retrying
    /// after this long costs one refused head.
    pub const RETRY_AFTER_SECONDS: u64 = 1;

    pub fn new(limit: u32, scope: RateLimitScope) -> Self {
        Self {
            limit: limit.max(1) as usize,
            scope,
            in_flight: Mutex::default(),
        }
    }

    /// Takes a slot for `key`, or `Err(seconds)` to retry after when all are taken.
    pub fn enter(&self, key: &str, metrics: &Metrics) -> Result<Permit<'_>, u64> {
        let mut in_flight = self.in_flight.lock();
        let count = in_flight.entry(key.to_owned()).or_insert(0);
        if *count >= self.limit {
            metrics.rate_limited(self.scope);
            return Err(Self::RETRY_AFTER_SECONDS);
        }
        *count += 1;
        Ok(Permit {
            owner: self,
            key: key.to_owned(),
        })
    }

    /// Operations of `key` in flight now.
    pub fn in_flight(&self, key: &str) -> usize {
        self.in_flight.lock().get(key).copied().unwrap_or(0)
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut in_flight = self.owner.in_flight.lock();
        if let Some(count) = in_flight.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                in_flight.remove(&self.key);
            }
        }
    }
}

/// The limiters of every scope.
pub struct RateLimits {
    pub client: Limiter,
    pub user: Limiter,
    pub advertiser: Limiter,
}

impl RateLimits {
    pub fn new(settings: &RateLimitSettings, clock: SharedClock) -> Self {
        let limiter =
            |per_second: f64, burst: f64| Limiter::new(Rate { per_second, burst }, clock.clone());
        Self {
            client: limiter(settings.client_per_second, settings.client_burst),
            user: limiter(settings.user_per_minute / 60.0, settings.user_burst),
            advertiser: limiter(settings.advertiser_per_second, settings.advertiser_burst),
        }
    }

    pub fn check(&self, scope: RateLimitScope, key: &str, metrics: &Metrics) -> Result<(), u64> {
        let limiter = match scope {
            RateLimitScope::Client => &self.client,
            RateLimitScope::User => &self.user,
            RateLimitScope::Advertiser => &self.advertiser,
            // Not a rate: uploads in flight are counted by `Concurrency`.
            RateLimitScope::Uploads => return Ok(()),
        };
        limiter
            .check(key)
            .inspect_err(|_| metrics.rate_limited(scope))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use time::macros::datetime;

    use super::*;
    use crate::clock::ManualClock;

    fn clock() -> Arc<ManualClock> {
        ManualClock::new(datetime!(2026-11-26 12:00 UTC))
    }

    #[test]
    fn bursts_then_refills_at_the_rate_of_the_injected_clock() {
        let clock = clock();
        let limiter = Limiter::new(
            Rate {
                per_second: 2.0,
                burst: 3.0,
            },
            clock.clone(),
        );
        for _ in 0..3 {
            assert_eq!(limiter.check("a"), Ok(()));
        }
        assert_eq!(limiter.check("a"), Err(1));
        assert_eq!(limiter.check("b"), Ok(()), "keys are independent");
        clock.set(datetime!(2026-11-26 12:00:00.499 UTC));
        assert_eq!(limiter.check("a"), Err(1));
        clock.set(datetime!(2026-11-26 12:00:00.500 UTC));
        assert_eq!(
            limiter.check("a"),
            Ok(()),
            "one token after half a second at 2/s"
        );
        assert_eq!(limiter.check("a"), Err(1));
        clock.set(datetime!(2026-11-26 11:00 UTC));
        assert_eq!(
            limiter.check("a"),
            Err(1),
            "a clock stepping back refills nothing and owes nothing"
        );
        clock.set(datetime!(2026-11-26 11:00:00.500 UTC));
        assert_eq!(
            limiter.check("a"),
            Ok(()),
            "refilling from where it stepped to"
        );
        assert_eq!(
            Limiter::new(
                Rate {
                    per_second: 0.0,
                    burst: 1.0
                },
                clock.clone()
            )
            .check("x"),
            Ok(()),
            "zero rate: unlimited"
        );
    }

    #[test]
    fn retry_after_counts_whole_seconds_until_the_next_token() {
        let clock = clock();
        let slow = Limiter::new(
            Rate {
                per_second: 1.0 / 60.0,
                burst: 1.5,
            },
            clock.clone(),
        );
        assert_eq!(slow.check("u"), Ok(()), "a fractional burst rounds down");
        assert_eq!(slow.check("u"), Err(60));
        clock.advance_secs(59);
        assert_eq!(slow.check("u"), Err(1));
        clock.advance_secs(1);
        assert_eq!(slow.check("u"), Ok(()));
    }

    #[test]
    fn idle_keys_are_forgotten_above_the_bound() {
        let clock = clock();
        let limiter = Limiter::with_prune_above(
            Rate {
                per_second: 1.0,
                burst: 2.0,
            },
            clock.clone(),
            10,
        );
        assert_eq!(limiter.check("hot"), Ok(()));
        assert_eq!(limiter.check("hot"), Ok(()));
        assert_eq!(limiter.check("hot"), Err(1));
        for key in 3..PRUNE_EVERY - 1 {
            assert_eq!(limiter.check(&key.to_string()), Ok(()));
        }
        assert_eq!(limiter.tracked(), (PRUNE_EVERY - 3) as usize);
        clock.advance_secs(2);
        assert_eq!(limiter.check("fresh"), Ok(()), "this check prunes first");
        assert_eq!(
            limiter.tracked(),
            2,
            "kept: the key checked since, and the one limited until less than a period ago"
        );
    }

    #[test]
    fn concurrency_slots_come_back_when_permits_drop() {
        let metrics = Metrics::default();
        let uploads = Concurrency::new(2, RateLimitScope::Uploads);
        let first = uploads.enter("a", &metrics).unwrap();
        let second = uploads.enter("a", &metrics).unwrap();
        assert_eq!(
            uploads.enter("a", &metrics).err(),
            Some(Concurrency::RETRY_AFTER_SECONDS)
        );
        assert!(uploads.enter("b", &metrics).is_ok(), "keys are independent");
        assert_eq!(uploads.in_flight("a"), 2);
        drop(first);
        let third = uploads.enter("a", &metrics).unwrap();
        drop((second, third));
        assert_eq!(uploads.in_flight("a"), 0);
        assert!(
            uploads.in_flight.lock().is_empty(),
            "idle keys are forgotten"
        );
    }
}
