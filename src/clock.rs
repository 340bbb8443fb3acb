//! Time as the service sees it. Every decision, cap and bill reads `now` from a [`Clock`] so that
//! tests can move time (rolling windows of hours, UTC midnight) without sleeping, and so that Redis
//! scripts receive `now` as an argument instead of reading the server's clock.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use time::OffsetDateTime;

/// Milliseconds since the Unix epoch, UTC.
pub type Millis = i64;

pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> Millis;

    fn now(&self) -> OffsetDateTime {
        datetime_from_ms(self.now_ms())
    }
}

pub type SharedClock = Arc<dyn Clock>;

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> Millis {
        (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as Millis
    }
}

/// A clock that only moves when told to; for tests and simulations.
#[derive(Debug)]
pub struct ManualClock {
    now_ms: AtomicI64,
}

impl ManualClock {
    pub fn new(start: OffsetDateTime) -> Arc<Self> {
        Arc::new(Self {
            now_ms: AtomicI64::new((start.unix_timestamp_nanos() / 1_000_000) as Millis),
        })
    }

    pub fn advance_secs(&self, secs: i64) {
        self.now_ms.fetch_add(secs * 1000, Ordering::SeqCst);
    }

    pub fn set(&self, at: OffsetDateTime) {
        self.now_ms.store(
            (at.unix_timestamp_nanos() / 1_000_000) as Millis,
            Ordering::SeqCst,
        );
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> Millis {
        self.now_ms.load(Ordering::SeqCst)
    }
}

pub fn datetime_from_ms(ms: Millis) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

pub fn ms_from_datetime(at: OffsetDateTime) -> Millis {
    (at.unix_timestamp_nanos() / 1_000_000) as Millis
}

/// The UTC day of an instant as `YYYYMMDD`, the granularity of reports and daily budgets.
pub fn utc_day(ms: Millis) -> u32 {
    day_key(datetime_from_ms(ms).date())
}

/// A date as the `YYYYMMDD` key of stored counters (its month is `key / 100`, `YYYYMM`).
pub fn day_key(date: time::Date) -> u32 {
    date.year() as u32 * 10_000 + u8::from(date.month()) as u32 * 100 + date.day() as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn utc_day_splits_at_midnight() {
        let before = ms_from_datetime(datetime!(2026-11-26 23:59:59.999 UTC));
        assert_eq!(utc_day(before), 20261126);
        assert_eq!(utc_day(before + 1), 20261127);
    }
}
