//! `CLOCK_MONOTONIC`, the clock of `bpf_ktime_get_ns`, which blocklist deadlines use.

use std::time::Duration;

/// Now on `CLOCK_MONOTONIC`, in ns.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux, so
    // the call cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

/// The `CLOCK_MONOTONIC` deadline `ttl` from now; `None` (no TTL) is 0, "never expires".
pub fn deadline_ns(ttl: Option<Duration>) -> u64 {
    match ttl {
        None => 0,
        Some(t) => monotonic_ns().saturating_add(u64::try_from(t.as_nanos()).unwrap_or(u64::MAX)),
    }
}
