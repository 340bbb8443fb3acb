//! Rate limits per principal, answered 429 with `Retry-After`: per client token (slots and
//! events), per user (slots), per advertiser (management calls). Token buckets in this node's
//! memory: limits hold per node (with N nodes behind a balancer a principal gets up to N times
//! the rate), which bounds abuse without a store round trip on the hot path.
//!
//! Uploads are also limited by how many one advertiser has in flight ([`Concurrency`]): a rate
//! bounds how often uploads start, not how many multi-MiB bodies are being buffered at once.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use parking_lot::Mutex;

use crate::clock::Millis;
use crate::config::RateLimitSettings;
use crate::metrics::{Metrics, RateLimitScope};

const SHARDS: usize = 16;
/// Above this many tracked principals in a shard, idle (full) buckets are forgotten.
const PRUNE_ABOVE: usize = 50_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at_ms: Millis,
}

/// A rate (tokens per second) and a burst (bucket size). A zero rate means unlimited.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: f64,
}

/// Token buckets for one scope.
pub struct Limiter {
    rate: Rate,
    shards: Vec<Mutex<HashMap<String, Bucket>>>,
}

impl Limiter {
    pub fn new(rate: Rate) -> Self {
        Self {
            rate,
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    /// Takes one token for `key`; `Err(seconds)` until the next token when there is none.
    pub fn check(&self, key: &str, now_ms: Millis) -> Result<(), u64> {
        if self.rate.per_second <= 0.0 {
            return Ok(());
        }
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        let mut shard = self.shards[hasher.finish() as usize % SHARDS].lock();
        if shard.len() > PRUNE_ABOVE {
            let rate = self.rate;
            shard.retain(|_, b| refill(rate, *b, now_ms).tokens < rate.burst);
        }
        let bucket = shard.entry(key.to_owned()).or_insert(Bucket {
            tokens: self.rate.burst,
            at_ms: now_ms,
        });
        *bucket = refill(self.rate, *bucket, now_ms);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - bucket.tokens) / self.rate.per_second)
                .ceil()
                .max(1.0) as u64)
        }
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

fn refill(rate: Rate, bucket: Bucket, now_ms: Millis) -> Bucket {
    let elapsed = (now_ms - bucket.at_ms).max(0) as f64 / 1000.0;
    Bucket {
        tokens: (bucket.tokens + elapsed * rate.per_second).min(rate.burst),
        at_ms: now_ms.max(bucket.at_ms),
    }
}

/// The limiters of every scope.
pub struct RateLimits {
    pub client: Limiter,
    pub user: Limiter,
    pub advertiser: Limiter,
}

impl RateLimits {
    pub fn new(settings: &RateLimitSettings) -> Self {
        let rate = |per_second: f64, burst: f64| Rate {
            per_second,
            burst: burst.max(1.0),
        };
        Self {
            client: Limiter::new(rate(settings.client_per_second, settings.client_burst)),
            user: Limiter::new(rate(settings.user_per_minute / 60.0, settings.user_burst)),
            advertiser: Limiter::new(rate(
                settings.advertiser_per_second,
                settings.advertiser_burst,
            )),
        }
    }

    pub fn check(
        &self,
        scope: RateLimitScope,
        key: &str,
        now_ms: Millis,
        metrics: &Metrics,
    ) -> Result<(), u64> {
        let limiter = match scope {
            RateLimitScope::Client => &self.client,
            RateLimitScope::User => &self.user,
            RateLimitScope::Advertiser => &self.advertiser,
            // Not a rate: uploads in flight are counted by `Concurrency`.
            RateLimitScope::Uploads => return Ok(()),
        };
        limiter
            .check(key, now_ms)
            .inspect_err(|_| metrics.rate_limited(scope))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_refills_at_the_rate() {
        let limiter = Limiter::new(Rate {
            per_second: 2.0,
            burst: 3.0,
        });
        for _ in 0..3 {
            assert_eq!(limiter.check("a", 0), Ok(()));
        }
        assert_eq!(limiter.check("a", 0), Err(1));
        assert_eq!(limiter.check("b", 0), Ok(()), "keys are independent");
        assert_eq!(limiter.check("a", 499), Err(1));
        assert_eq!(
            limiter.check("a", 500),
            Ok(()),
            "one token after half a second at 2/s"
        );
        assert_eq!(limiter.check("a", 500), Err(1));
        assert_eq!(
            Limiter::new(Rate {
                per_second: 0.0,
                burst: 1.0
            })
            .check("x", 0),
            Ok(()),
            "zero rate: unlimited"
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
