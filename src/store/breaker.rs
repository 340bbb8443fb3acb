//! The circuit breaker in front of Redis: a Status feed must never wait for ads, so once Redis
//! has failed (or missed its deadline) a few times in a row, calls on the request path stop
//! going to it and fail at once with [`StoreError::Unavailable`](super::StoreError) (decisions
//! answer no slots, events go to the outage spool). One background probe per interval (a PING
//! with the deadline) tests Redis and closes the breaker when it answers.
//!
//! # Layout
//!
//! - [`BreakerState`]: the pure state machine. Every input carries `now`; no I/O, no locks, no
//!   clock of its own, so a test drives it through any sequence of failures and probes.
//! - [`Breaker`]: the shared, thread-safe form the Redis store consults on every call: the
//!   state behind a mutex, a [`Clock`](crate::clock::Clock) for `now`, the metrics it reports
//!   and the wake-up of the probe loop (`store::redis::RedisStore::probe_while_open`).
//!
//! Only the probe closes the breaker: a call admitted before it opened that happens to succeed
//! late says little about Redis now, and a single rule is easier to reason about.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::clock::{Millis, SharedClock};
use crate::metrics::Metrics;

/// When the breaker opens and how often it probes (`store.breaker_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Consecutive failures or deadline misses that open the breaker.
    pub failures_to_open: u32,
    /// Time between two probes while open.
    pub probe_every_ms: Millis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go to Redis; `failures` in a row so far.
    Closed { failures: u32 },
    /// Calls fail at once; the next probe is due at `probe_at_ms`.
    Open { probe_at_ms: Millis },
}

/// A change of state, reported once (metrics, log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Opened,
    Closed,
}

impl BreakerState {
    /// A breaker that starts open (Redis unreachable at start): the first probe is due now.
    pub fn open_now(now_ms: Millis) -> Self {
        Self::Open {
            probe_at_ms: now_ms,
        }
    }

    pub fn admits(&self) -> bool {
        matches!(self, Self::Closed { .. })
    }

    /// Redis answered a call (an error reply counts: Redis is there).
    pub fn succeeded(&mut self) {
        if let Self::Closed { failures } = self {
            *failures = 0;
        }
    }

    /// A call failed to reach Redis or missed its deadline.
    pub fn failed(&mut self, policy: &BreakerPolicy, now_ms: Millis) -> Option<Transition> {
        match self {
            Self::Closed { failures } => {
                *failures += 1;
                (*failures >= policy.failures_to_open).then(|| {
                    *self = Self::Open {
                        probe_at_ms: now_ms + policy.probe_every_ms,
                    };
                    Transition::Opened
                })
            }
            // Calls admitted before it opened, finishing late: the probe decides.
            Self::Open { .. } => None,
        }
    }

    /// How long until the next probe is due (zero: now); `None` while closed. Never more than
    /// one interval: the clock may step back (NTP) while the breaker is open.
    pub fn probe_in(&self, policy: &BreakerPolicy, now_ms: Millis) -> Option<Millis> {
        match self {
            Self::Closed { .. } => None,
            Self::Open { probe_at_ms } => {
                Some((probe_at_ms - now_ms).clamp(0, policy.probe_every_ms))
            }
        }
    }

    /// The outcome of a probe: an answer closes, anything else waits for the next interval.
    pub fn probed(
        &mut self,
        policy: &BreakerPolicy,
        answered: bool,
        now_ms: Millis,
    ) -> Option<Transition> {
        match (*self, answered) {
            (Self::Open { .. }, true) => {
                *self = Self::Closed { failures: 0 };
                Some(Transition::Closed)
            }
            (Self::Open { .. }, false) => {
                *self = Self::Open {
                    probe_at_ms: now_ms + policy.probe_every_ms,
                };
                None
            }
            (Self::Closed { .. }, _) => None,
        }
    }
}

/// The breaker as the Redis store shares it between request handlers and the probe loop.
pub struct Breaker {
    policy: BreakerPolicy,
    state: Mutex<BreakerState>,
    clock: SharedClock,
    metrics: Arc<Metrics>,
    /// Wakes the probe loop when the breaker opens.
    opened: tokio::sync::Notify,
}

impl Breaker {
    /// `clock` should be the wall clock even where business time is simulated: the breaker
    /// measures Redis, not campaigns.
    pub fn new(
        policy: BreakerPolicy,
        clock: SharedClock,
        metrics: Arc<Metrics>,
        start_open: bool,
    ) -> Self {
        let state = if start_open {
            BreakerState::open_now(clock.now_ms())
        } else {
            BreakerState::Closed { failures: 0 }
        };
        metrics.breaker_state(!state.admits(), None);
        Self {
            policy,
            state: Mutex::new(state),
            clock,
            metrics,
            opened: tokio::sync::Notify::new(),
        }
    }

    pub fn admits(&self) -> bool {
        self.state.lock().admits()
    }

    pub fn succeeded(&self) {
        self.state.lock().succeeded();
    }

    pub fn failed(&self, reason: &dyn std::fmt::Display) {
        let transition = self.state.lock().failed(&self.policy, self.clock.now_ms());
        if transition.is_some() {
            tracing::warn!(
                %reason,
                failures = self.policy.failures_to_open,
                "Redis failing: store breaker open, calls fail fast until a probe answers"
            );
            self.report(transition);
            self.opened.notify_one();
        }
    }

    /// Until the next probe is due; `None` while closed.
    pub fn probe_in(&self) -> Option<Duration> {
        self.state
            .lock()
            .probe_in(&self.policy, self.clock.now_ms())
            .map(|ms| Duration::from_millis(ms as u64))
    }

    pub fn probed(&self, answered: bool) {
        let transition = self
            .state
            .lock()
            .probed(&self.policy, answered, self.clock.now_ms());
        if transition.is_some() {
            tracing::info!("Redis answers again: store breaker closed");
            self.report(transition);
        }
    }

    /// Resolves when the breaker opens (at once if it is already open).
    pub async fn wait_open(&self) {
        loop {
            let opened = self.opened.notified();
            if !self.admits() {
                return;
            }
            opened.await;
        }
    }

    fn report(&self, transition: Option<Transition>) {
        self.metrics
            .breaker_state(transition == Some(Transition::Opened), transition);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use time::macros::datetime;

    const POLICY: BreakerPolicy = BreakerPolicy {
        failures_to_open: 3,
        probe_every_ms: 500,
    };

    #[test]
    fn opens_after_consecutive_failures_only() {
        let mut state = BreakerState::Closed { failures: 0 };
        assert_eq!(state.failed(&POLICY, 0), None);
        assert_eq!(state.failed(&POLICY, 0), None);
        state.succeeded();
        assert_eq!(state.failed(&POLICY, 0), None);
        assert_eq!(state.failed(&POLICY, 0), None);
        assert!(state.admits(), "a success in between resets the count");
        assert_eq!(state.failed(&POLICY, 1_000), Some(Transition::Opened));
        assert!(!state.admits());
        assert_eq!(state.probe_in(&POLICY, 1_000), Some(500));
        assert_eq!(
            state.failed(&POLICY, 1_100),
            None,
            "late failures change nothing"
        );
        assert_eq!(state.probe_in(&POLICY, 1_100), Some(400));
    }

    #[test]
    fn a_probe_closes_on_an_answer_and_reschedules_otherwise() {
        let mut state = BreakerState::open_now(10_000);
        assert_eq!(
            state.probe_in(&POLICY, 10_000),
            Some(0),
            "started open: probe at once"
        );
        assert_eq!(state.probed(&POLICY, false, 10_250), None);
        assert_eq!(state.probe_in(&POLICY, 10_250), Some(500));
        assert_eq!(state.probe_in(&POLICY, 11_000), Some(0), "overdue is due");
        assert_eq!(
            state.probed(&POLICY, true, 11_000),
            Some(Transition::Closed)
        );
        assert!(state.admits());
        assert_eq!(state.probe_in(&POLICY, 11_000), None);
        // Closed again from scratch: it takes the full count to reopen.
        assert_eq!(state.failed(&POLICY, 11_100), None);
        assert_eq!(state.failed(&POLICY, 11_100), None);
        assert_eq!(state.failed(&POLICY, 11_100), Some(Transition::Opened));
    }

    #[test]
    fn the_shared_breaker_reads_its_clock_and_reports_its_state() {
        let clock = ManualClock::new(datetime!(2026-11-26 10:00:00 UTC));
        let metrics = Arc::new(Metrics::default());
        let breaker = Breaker::new(POLICY, clock.clone(), metrics.clone(), false);
        for _ in 0..3 {
            breaker.failed(&"timed out");
        }
        assert!(!breaker.admits());
        assert_eq!(breaker.probe_in(), Some(Duration::from_millis(500)));
        clock.advance_secs(1);
        assert_eq!(breaker.probe_in(), Some(Duration::ZERO));
        breaker.probed(true);
        assert!(breaker.admits());
        let text = metrics.render();
        assert!(text.contains("statusads_store_breaker_open 0"), "{text}");
        assert!(text.contains("statusads_store_breaker_transitions_total{to=\"open\"} 1"));
        assert!(text.contains("statusads_store_breaker_transitions_total{to=\"closed\"} 1"));
    }

    #[test]
    fn a_clock_stepped_back_never_delays_the_probe_past_one_interval() {
        // The breaker runs on the wall clock (`SystemClock`). An NTP step backwards while it
        // is open must not postpone the probe by the step: one hour back would mean an hour
        // of empty slots and spooled events with Redis healthy again.
        let clock = ManualClock::new(datetime!(2026-11-26 10:00:00 UTC));
        let breaker = Breaker::new(POLICY, clock.clone(), Arc::new(Metrics::default()), false);
        for _ in 0..3 {
            breaker.failed(&"timed out");
        }
        clock.set(datetime!(2026-11-26 09:00:00 UTC));
        let due = breaker.probe_in().unwrap();
        assert!(
            due <= Duration::from_millis(POLICY.probe_every_ms as u64),
            "next probe in {due:?}"
        );
    }
}
