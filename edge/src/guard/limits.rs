//! Per-trunk admission limits: new calls per second (GCRA via `governor`, lock-free) and
//! concurrent calls (an atomic counter that never goes below zero).
//!
//! The limits are configuration and change with the policy; the count of calls in progress is
//! the trunk's and outlives a change: [`TrunkLimits::reconfigured`] makes limits with new values
//! over the same count (and the same CPS bucket while the rate is unchanged).

use std::num::NonZeroU32;
use std::sync::Arc;
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
    cps: Arc<Limiter<C>>,
    cps_per_sec: NonZeroU32,
    clock: C,
    max_calls: u32,
    calls: Arc<CallCount>,
}

/// A trunk's calls in progress: kept across policy changes, released by calls admitted under
/// any of them.
#[derive(Debug, Default)]
struct CallCount {
    active: AtomicU32,
    /// Releases that found the count already at zero: a bookkeeping bug, counted not hidden.
    release_underflows: AtomicU64,
}

impl CallCount {
    /// Takes a slot unless `max` calls are active.
    fn try_take(&self, max: u32) -> bool {
        self.active.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1)).is_ok()
    }

    /// Gives a slot back.
    fn release(&self) {
        if self.active.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)).is_err() {
            self.release_underflows.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Calls active now.
    fn active(&self) -> u32 {
        self.active.load(Ordering::Acquire)
    }

    /// Releases that found no active call (should stay 0).
    fn release_underflows(&self) -> u64 {
        self.release_underflows.load(Ordering::Relaxed)
    }
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
            cps: Arc::new(RateLimiter::direct_with_clock(Quota::per_second(cps), clock.clone())),
            cps_per_sec: cps,
            clock,
            max_calls,
            calls: Arc::new(CallCount::default()),
        }
    }

    /// Limits with new values over the same calls in progress: a lower `max_calls` refuses new
    /// calls until enough of them end, a higher one admits more at once. The CPS bucket carries
    /// over while the rate is unchanged (a change of rate starts a full bucket).
    pub fn reconfigured(&self, cps: NonZeroU32, max_calls: u32) -> Self {
        let bucket = if cps == self.cps_per_sec {
            Arc::clone(&self.cps)
        } else {
            Arc::new(RateLimiter::direct_with_clock(Quota::per_second(cps), self.clock.clone()))
        };
        Self {
            cps: bucket,
            cps_per_sec: cps,
            clock: self.clock.clone(),
            max_calls,
            calls: Arc::clone(&self.calls),
        }
    }

    /// Admits a new call: checks concurrency first (a refused call must not spend a CPS token),
    /// then CPS. On success the call counts as active until [`Self::release`].
    pub fn try_admit(&self) -> Result<(), LimitRefusal> {
        if !self.calls.try_take(self.max_calls) {
            return Err(LimitRefusal::Concurrency);
        }
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
        self.calls.release();
    }

    /// Calls active now.
    pub fn active(&self) -> u32 {
        self.calls.active()
    }

    /// Releases that found no active call (should stay 0).
    pub fn release_underflows(&self) -> u64 {
        self.calls.release_underflows()
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
    fn reconfigured_limits_count_the_same_calls() {
        let clock = FakeRelativeClock::default();
        let old = TrunkLimits::with_clock(nz(1), 3, clock.clone());
        old.try_admit().unwrap();
        old.try_admit().unwrap_err();
        // Lower max_calls: the call in progress counts against it.
        let lower = old.reconfigured(nz(1), 1);
        assert_eq!(lower.active(), 1);
        assert_eq!(lower.try_admit(), Err(LimitRefusal::Concurrency));
        // Same rate: same bucket, still empty this second. A new rate: a fresh bucket.
        let same_rate = old.reconfigured(nz(1), 5);
        assert!(matches!(same_rate.try_admit(), Err(LimitRefusal::Cps { .. })));
        let faster = old.reconfigured(nz(10), 5);
        assert_eq!(faster.try_admit(), Ok(()));
        assert_eq!(old.active(), 2);
        // A release through any of them frees the one count.
        old.release();
        faster.release();
        assert_eq!((lower.active(), lower.release_underflows()), (0, 0));
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
