//! Per-trunk admission limits: new calls per second (GCRA via `governor`, lock-free) and
//! concurrent calls (an atomic counter that never goes below zero).

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

/// Shortest Retry-After we advertise, in seconds (RFC 3261 §20.33 counts whole seconds).
pub const RETRY_AFTER_MIN_SECS: u32 = 1;

type Limiter<C> = RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// One trunk's limits and live counts. Shared by every worker (`Sync`).
#[derive(Debug)]
pub struct TrunkLimits<C: Clock + Clone = DefaultClock> {
    cps: Limiter<C>,
    clock: C,
    max_calls: u32,
    active: AtomicU32,
    /// Releases that found the count already at zero: a bookkeeping bug, counted not hidden.
    release_underflows: AtomicU64,
}

/// Why the limits refused a new call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitRefusal {
    /// Over the CPS limit; retry after this many seconds.
    Cps {
        /// Seconds until a call would be admitted.
        retry_after_secs: u32,
    },
    /// The trunk already carries `max_calls` calls.
    Concurrency,
}

impl TrunkLimits<DefaultClock> {
    /// Limits on the real clock.
    pub fn new(cps: NonZeroU32, max_calls: u32) -> Self {
        Self::with_clock(cps, max_calls, DefaultClock::default())
    }
}

impl<C: Clock + Clone> TrunkLimits<C> {
    /// Limits on a given clock (tests use `governor::clock::FakeRelativeClock`).
    pub fn with_clock(cps: NonZeroU32, max_calls: u32, clock: C) -> Self {
        Self {
            cps: RateLimiter::direct_with_clock(Quota::per_second(cps), clock.clone()),
            clock,
            max_calls,
            active: AtomicU32::new(0),
            release_underflows: AtomicU64::new(0),
        }
    }

    /// Admits a new call: checks concurrency first (a refused call must not spend a CPS token),
    /// then CPS. On success the call counts as active until [`Self::release`].
    pub fn try_admit(&self) -> Result<(), LimitRefusal> {
        let max = self.max_calls;
        self.active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1))
            .map_err(|_| LimitRefusal::Concurrency)?;
        if let Err(not_until) = self.cps.check() {
            self.release();
            let wait: Duration = not_until.wait_time_from(self.clock.now());
            let secs = u32::try_from(wait.as_secs()).unwrap_or(u32::MAX);
            let secs = if wait.subsec_nanos() > 0 { secs.saturating_add(1) } else { secs };
            return Err(LimitRefusal::Cps { retry_after_secs: secs.max(RETRY_AFTER_MIN_SECS) });
        }
        Ok(())
    }

    /// A call admitted by [`Self::try_admit`] ended (or was never established).
    pub fn release(&self) {
        if self.active.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)).is_err() {
            self.release_underflows.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Calls active now.
    pub fn active(&self) -> u32 {
        self.active.load(Ordering::Acquire)
    }

    /// Releases that found no active call (should stay 0).
    pub fn release_underflows(&self) -> u64 {
        self.release_underflows.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    fn nz(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap()
    }

    #[test]
    fn cps_refuses_over_the_rate_with_retry_after_and_recovers() {
        let clock = FakeRelativeClock::default();
        let l = TrunkLimits::with_clock(nz(2), 100, clock.clone());
        assert_eq!(l.try_admit(), Ok(()));
        assert_eq!(l.try_admit(), Ok(()));
        assert_eq!(l.try_admit(), Err(LimitRefusal::Cps { retry_after_secs: 1 }));
        assert_eq!(l.active(), 2, "a refused call is not counted as active");
        clock.advance(Duration::from_millis(500));
        assert_eq!(l.try_admit(), Ok(()));
    }

    #[test]
    fn concurrency_limit_and_release_never_negative() {
        let l = TrunkLimits::with_clock(nz(1000), 2, FakeRelativeClock::default());
        l.try_admit().unwrap();
        l.try_admit().unwrap();
        assert_eq!(l.try_admit(), Err(LimitRefusal::Concurrency));
        l.release();
        assert_eq!(l.try_admit(), Ok(()));
        l.release();
        l.release();
        l.release();
        assert_eq!(l.active(), 0);
        assert_eq!(l.release_underflows(), 1);
    }

    #[test]
    fn concurrency_refusal_spends_no_cps_token() {
        let clock = FakeRelativeClock::default();
        let l = TrunkLimits::with_clock(nz(1), 1, clock);
        l.try_admit().unwrap();
        assert_eq!(l.try_admit(), Err(LimitRefusal::Concurrency));
        l.release();
        // The one token of this second went to the first call, none to the refused one.
        assert!(matches!(l.try_admit(), Err(LimitRefusal::Cps { .. })));
    }
}
