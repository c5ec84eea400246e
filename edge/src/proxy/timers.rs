//! RFC 3261 transaction timer values (§17, Table 4) for unreliable transports (UDP).

use std::time::Duration;

/// Timer values. Defaults are the RFC's: T1 500 ms, T2 4 s, T4 5 s, Timer C 180 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate (T1); retransmissions start here.
    pub t1: Duration,
    /// Cap of the non-INVITE and response retransmission interval (T2).
    pub t2: Duration,
    /// Longest time a message stays in the network (T4).
    pub t4: Duration,
    /// Proxy INVITE timer C (§16.6 step 11): more than 3 minutes; reset by each provisional.
    pub timer_c: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        Self {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            timer_c: Duration::from_secs(180),
        }
    }
}

impl TimerConfig {
    /// 64·T1: timers B, F, H, J, L, M and the CANCEL wait.
    pub fn t1x64(&self) -> Duration {
        self.t1 * 64
    }

    /// Timer D: at least 32 s on unreliable transports.
    pub fn timer_d(&self) -> Duration {
        Duration::from_secs(32).max(self.t1x64() / 2)
    }
}

/// Earliest of several optional deadlines.
pub(crate) fn earliest<T: Ord + Copy>(deadlines: &[Option<T>]) -> Option<T> {
    deadlines.iter().flatten().min().copied()
}
