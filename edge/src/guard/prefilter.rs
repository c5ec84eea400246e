//! The packet filter in user space: when XDP is not in the kernel, every datagram a worker
//! receives is judged by the same policy before the engine parses it — blocklist → drop;
//! allow-list → pass; otherwise the unknown-source policy (drop, or per-source buckets under a
//! global budget, with scanner signatures dropped). A drop gets no reply and is counted by
//! reason. When XDP runs, the kernel has judged already and there is no prefilter.
//!
//! The filter ([`UserspaceFilter`]) is synchronised inside: lists read wait-free, buckets in
//! mutex-guarded shards held for one map update, never across I/O. Its memory is bounded by the
//! model's bounds (`MAX_RATE_SOURCES` buckets, `MAX_SRC_ENTRIES` prefixes per family).

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use ebpf::shared::REASON_COUNT;
use ebpf::userspace::{Transport, UserspaceFilter};
use ebpf::{Reason, Stats};

/// The user-space filter with its verdict counters and its clock mapping.
#[derive(Debug)]
pub struct Prefilter {
    filter: Arc<UserspaceFilter>,
    /// `CLOCK_MONOTONIC` (the clock of blocklist deadlines) at `epoch`, so that a datagram's
    /// `Instant` converts without reading a clock per packet.
    epoch: Instant,
    epoch_ns: u64,
    packets: [AtomicU64; REASON_COUNT],
    bytes: [AtomicU64; REASON_COUNT],
}

impl Prefilter {
    /// A prefilter over `filter` (shared with whoever keeps its lists in sync).
    pub fn new(filter: Arc<UserspaceFilter>) -> Self {
        Self {
            filter,
            epoch: Instant::now(),
            epoch_ns: ebpf::monotonic_ns(),
            packets: std::array::from_fn(|_| AtomicU64::new(0)),
            bytes: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// The filter it runs.
    pub fn filter(&self) -> &Arc<UserspaceFilter> {
        &self.filter
    }

    /// `now` on `CLOCK_MONOTONIC`, in ns.
    pub fn monotonic_ns(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.epoch);
        self.epoch_ns.saturating_add(u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
    }

    /// Judges one UDP datagram received on a SIP listen socket at `now`, counts the verdict,
    /// and returns it.
    pub fn judge(&self, now: Instant, src: IpAddr, payload: &[u8]) -> Reason {
        let reason = self.filter.judge_sip(src, Transport::Udp, payload, self.monotonic_ns(now));
        let i = reason as usize;
        if let (Some(p), Some(b)) = (self.packets.get(i), self.bytes.get(i)) {
            p.fetch_add(1, Ordering::Relaxed);
            b.fetch_add(u64::try_from(payload.len()).unwrap_or(u64::MAX), Ordering::Relaxed);
        }
        reason
    }

    /// True when the datagram may go on to the engine (see [`Prefilter::judge`]).
    pub fn admit(&self, now: Instant, src: IpAddr, payload: &[u8]) -> bool {
        !self.judge(now, src, payload).is_drop()
    }

    /// The verdict counters, in the shape of the kernel's.
    pub fn stats(&self) -> Stats {
        let mut s = Stats::default();
        for ((c, p), b) in s.counters.iter_mut().zip(&self.packets).zip(&self.bytes) {
            c.packets = p.load(Ordering::Relaxed);
            c.bytes = b.load(Ordering::Relaxed);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ebpf::Policy;
    use ebpf::policy::{Bucket, Unknown};
    use std::time::Duration;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn verdicts_are_counted_by_reason_and_deadlines_follow_the_datagram_clock() {
        let policy = Policy {
            unknown: Unknown::RateLimit,
            per_source: Bucket { rate_pps: 1, burst: 2 },
            ..Policy::default()
        };
        let filter = Arc::new(UserspaceFilter::new(policy).unwrap());
        filter.set_allow_list(&[("192.0.2.0/24".parse().unwrap(), 0)]).unwrap();
        let pf = Prefilter::new(Arc::clone(&filter));
        let now = Instant::now() + Duration::from_secs(10);
        let blocked_until = pf.monotonic_ns(now) + 1_000_000_000;
        filter.block("192.0.2.66/32".parse().unwrap(), blocked_until).unwrap();
        let msg = b"OPTIONS sip:1@x SIP/2.0\r\nUser-Agent: carrier\r\n\r\n";
        assert!(pf.admit(now, ip("192.0.2.1"), msg));
        assert!(!pf.admit(now, ip("192.0.2.66"), msg), "blocked");
        assert!(pf.admit(now + Duration::from_millis(1001), ip("192.0.2.66"), msg), "block expired");
        for _ in 0..3 {
            pf.judge(now, ip("198.51.100.1"), msg);
        }
        let s = pf.stats();
        let packets = |r| s.get(r).packets;
        assert_eq!(packets(Reason::PassAllow), 2);
        assert_eq!(packets(Reason::DropBlock), 1);
        assert_eq!((packets(Reason::PassRate), packets(Reason::DropRateSource)), (2, 1), "burst 2");
        assert_eq!(s.get(Reason::DropBlock).bytes, msg.len() as u64);
    }

    #[test]
    fn workers_share_one_filter_and_every_verdict_is_counted_once() {
        const THREADS: usize = 4;
        const PER_THREAD: usize = 20_000;
        let policy = Policy { unknown: Unknown::RateLimit, ..Policy::default() };
        let filter = Arc::new(UserspaceFilter::new(policy).unwrap());
        filter.set_allow_list(&[("10.0.0.0/8".parse().unwrap(), 0)]).unwrap();
        let pf = Prefilter::new(filter);
        let now = Instant::now();
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let pf = &pf;
                s.spawn(move || {
                    for i in 0..PER_THREAD {
                        // Every thread: its own trunk host, and strangers from a /16 it shares.
                        let n = u32::try_from(i).unwrap();
                        let src = if i % 2 == 0 {
                            IpAddr::from([10, 0, 0, u8::try_from(t).unwrap()])
                        } else {
                            IpAddr::from((0xC633_0000u32 | (n & 0xffff)).to_be_bytes())
                        };
                        pf.judge(now, src, b"OPTIONS sip:x SIP/2.0\r\n\r\n");
                    }
                });
            }
        });
        let s = pf.stats();
        let total: u64 = s.counters.iter().map(|c| c.packets).sum();
        assert_eq!(total, (THREADS * PER_THREAD) as u64);
        assert_eq!(s.get(Reason::PassAllow).packets, (THREADS * PER_THREAD / 2) as u64);
        assert!(pf.filter().tracked_sources() <= ebpf::userspace::MAX_RATE_SOURCES);
    }
}
