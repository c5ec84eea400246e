//! Hot-path SIP counters: requests by method, responses by method and code class, user-space
//! datagram verdicts and the receive → forward latency histogram.
//!
//! Fixed arrays of relaxed atomics, one cache-line-aligned stripe per worker (as many as the
//! configuration allows workers): a worker writes only its own stripe, so no line bounces
//! between cores, and being the only writer it adds with a plain load and store (no locked
//! read-modify-write). No allocation after start, no lock. The metrics sampler sums the
//! stripes once a second ([`SipStats::snapshot`]).
//! Labels are bounded by construction: the known methods plus `other`, code classes 1xx–6xx.
//!
//! A response is counted once: when received (whether forwarded, absorbed or stray) or when
//! the edge generates it. The 400 answering a datagram that did not parse has no method to
//! count it by: it shows as a `malformed` verdict.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use control::config::MAX_WORKERS;
use control::metrics::{CodeClass, LatencyBuckets, LatencySnapshot, Method as MethodLabel, Verdict};

use crate::sip::Method;

/// Stripes of the counters: one per worker the configuration allows (about 1 KiB each).
pub const STATS_STRIPES: usize = MAX_WORKERS;

/// One worker's counters, on cache lines of their own.
#[derive(Debug)]
#[repr(align(128))]
struct Stripe {
    requests: [AtomicU64; MethodLabel::COUNT],
    responses: [[AtomicU64; CodeClass::COUNT]; MethodLabel::COUNT],
    verdicts: [AtomicU64; Verdict::COUNT],
    forward_latency: LatencyBuckets,
}

impl Default for Stripe {
    fn default() -> Self {
        Self {
            requests: [const { AtomicU64::new(0) }; MethodLabel::COUNT],
            responses: [const { [const { AtomicU64::new(0) }; CodeClass::COUNT] }; MethodLabel::COUNT],
            verdicts: [const { AtomicU64::new(0) }; Verdict::COUNT],
            forward_latency: LatencyBuckets::new(),
        }
    }
}

/// The counters of all workers.
#[derive(Debug)]
pub struct SipStats {
    /// [`STATS_STRIPES`] stripes, built on the heap (they are too big for a stack).
    stripes: Box<[Stripe]>,
}

impl Default for SipStats {
    fn default() -> Self {
        Self { stripes: (0..STATS_STRIPES).map(|_| Stripe::default()).collect() }
    }
}

/// The sums over all stripes at one moment (monotonic totals).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SipStatsSnapshot {
    /// Requests received, by [`MethodLabel::index`].
    pub requests: [u64; MethodLabel::COUNT],
    /// Responses received or generated, by method index then [`CodeClass::index`].
    pub responses: [[u64; CodeClass::COUNT]; MethodLabel::COUNT],
    /// User-space datagram verdicts, by [`Verdict::index`].
    pub verdicts: [u64; Verdict::COUNT],
    /// Receive → forward latencies.
    pub forward_latency: LatencySnapshot,
}

/// The label of a parsed method (extension methods are `other`).
pub fn method_label(method: &Method<'_>) -> MethodLabel {
    match method {
        Method::Invite => MethodLabel::Invite,
        Method::Ack => MethodLabel::Ack,
        Method::Bye => MethodLabel::Bye,
        Method::Cancel => MethodLabel::Cancel,
        Method::Options => MethodLabel::Options,
        Method::Register => MethodLabel::Register,
        Method::Message => MethodLabel::Message,
        Method::Prack => MethodLabel::Prack,
        Method::Update => MethodLabel::Update,
        Method::Info => MethodLabel::Info,
        Method::Refer => MethodLabel::Refer,
        Method::Notify => MethodLabel::Notify,
        Method::Subscribe => MethodLabel::Subscribe,
        Method::Publish => MethodLabel::Publish,
        Method::Other(_) => MethodLabel::Other,
    }
}

/// Adds one to a counter of the calling worker's own stripe. A worker is its stripe's only
/// writer (worker indexes are below [`MAX_WORKERS`]), so load and store cannot lose an add;
/// readers see every value whole.
fn inc(c: &AtomicU64) {
    c.store(c.load(Relaxed).wrapping_add(1), Relaxed);
}

impl SipStats {
    /// Worker `worker`'s stripe. The index is below `MAX_WORKERS` by configuration; the
    /// modulo keeps an out-of-range index in bounds (sharing a stripe, it could lose adds).
    fn stripe(&self, worker: usize) -> &Stripe {
        // The length is STATS_STRIPES, never zero: the index is in bounds.
        &self.stripes[worker % self.stripes.len()]
    }

    /// Worker `worker` parsed a request.
    #[inline]
    pub fn request(&self, worker: usize, method: &Method<'_>) {
        if let Some(c) = self.stripe(worker).requests.get(method_label(method).index()) {
            inc(c);
        }
    }

    /// Worker `worker` received or generated a response with status `code` in a transaction of
    /// `method` (its CSeq method; `None`: unknown, counted as `other`). Codes outside
    /// 100..=699 are not counted.
    #[inline]
    pub fn response(&self, worker: usize, method: Option<&Method<'_>>, code: u16) {
        let Some(class) = CodeClass::of(code) else { return };
        let label = method.map_or(MethodLabel::Other, method_label);
        if let Some(c) = self.stripe(worker).responses.get(label.index()).and_then(|r| r.get(class.index())) {
            inc(c);
        }
    }

    /// Worker `worker` took a user-space verdict on a datagram (exposed with `layer="user"`).
    #[inline]
    pub fn verdict(&self, worker: usize, verdict: Verdict) {
        if let Some(c) = self.stripe(worker).verdicts.get(verdict.index()) {
            inc(c);
        }
    }

    /// Worker `worker` let a datagram through: parsed, and a response or a request from a
    /// trunk or a target.
    #[inline]
    pub fn passed(&self, worker: usize) {
        self.verdict(worker, Verdict::Pass);
    }

    /// Worker `worker` dropped a request unanswered: its source is neither a trunk nor a target.
    #[inline]
    pub fn unknown_source(&self, worker: usize) {
        self.verdict(worker, Verdict::UnknownSource);
    }

    /// Worker `worker` dropped a datagram that is not SIP, or a request without the headers
    /// a transaction needs (answered 400 when the sender is known).
    #[inline]
    pub fn malformed(&self, worker: usize) {
        self.verdict(worker, Verdict::Malformed);
    }

    /// The latency histogram worker `worker` records its forwards into.
    pub fn forward_latency(&self, worker: usize) -> &LatencyBuckets {
        &self.stripe(worker).forward_latency
    }

    /// The totals over all stripes.
    pub fn snapshot(&self) -> SipStatsSnapshot {
        let mut s = SipStatsSnapshot::default();
        for stripe in self.stripes.iter() {
            for (sum, c) in s.requests.iter_mut().zip(&stripe.requests) {
                *sum = sum.wrapping_add(c.load(Relaxed));
            }
            for (sums, row) in s.responses.iter_mut().zip(&stripe.responses) {
                for (sum, c) in sums.iter_mut().zip(row) {
                    *sum = sum.wrapping_add(c.load(Relaxed));
                }
            }
            for (sum, c) in s.verdicts.iter_mut().zip(&stripe.verdicts) {
                *sum = sum.wrapping_add(c.load(Relaxed));
            }
            s.forward_latency.merge(&stripe.forward_latency.snapshot());
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const METHODS: [(Method<'static>, MethodLabel); 15] = [
        (Method::Invite, MethodLabel::Invite),
        (Method::Ack, MethodLabel::Ack),
        (Method::Bye, MethodLabel::Bye),
        (Method::Cancel, MethodLabel::Cancel),
        (Method::Options, MethodLabel::Options),
        (Method::Register, MethodLabel::Register),
        (Method::Message, MethodLabel::Message),
        (Method::Prack, MethodLabel::Prack),
        (Method::Update, MethodLabel::Update),
        (Method::Info, MethodLabel::Info),
        (Method::Refer, MethodLabel::Refer),
        (Method::Notify, MethodLabel::Notify),
        (Method::Subscribe, MethodLabel::Subscribe),
        (Method::Publish, MethodLabel::Publish),
        (Method::Other("FOO"), MethodLabel::Other),
    ];

    #[test]
    fn each_method_moves_only_its_request_counter() {
        assert_eq!(METHODS.len(), MethodLabel::COUNT, "every label has a method");
        let stats = SipStats::default();
        for (i, (method, label)) in METHODS.iter().enumerate() {
            assert_eq!(method_label(method), *label);
            let before = stats.snapshot().requests;
            // Workers on different stripes.
            stats.request(i * 17 % STATS_STRIPES, method);
            let after = stats.snapshot().requests;
            for (j, (b, a)) in before.iter().zip(after).enumerate() {
                assert_eq!(a - b, u64::from(j == label.index()), "{label:?}: counter {j}");
            }
        }
        assert_eq!(stats.snapshot().requests, [1; MethodLabel::COUNT]);
    }

    #[test]
    fn each_method_and_class_moves_only_its_response_counter() {
        let stats = SipStats::default();
        let codes = [100, 180, 200, 302, 404, 486, 503, 603];
        for (method, label) in &METHODS {
            for code in codes {
                let class = CodeClass::of(code).unwrap();
                let before = stats.snapshot().responses;
                stats.response(usize::from(code), Some(method), code);
                let after = stats.snapshot().responses;
                for (m, (rb, ra)) in before.iter().zip(after).enumerate() {
                    for (c, (b, a)) in rb.iter().zip(ra).enumerate() {
                        let moved = m == label.index() && c == class.index();
                        assert_eq!(a - b, u64::from(moved), "{label:?} {code}: [{m}][{c}]");
                    }
                }
            }
        }
        let total = |s: &SipStatsSnapshot| s.responses.iter().flatten().sum::<u64>();
        let counted = total(&stats.snapshot());
        assert_eq!(counted, (METHODS.len() * codes.len()) as u64);
        // No CSeq method: `other`; a status outside the classes: not counted.
        stats.response(0, None, 200);
        stats.response(0, Some(&Method::Invite), 99);
        stats.response(0, Some(&Method::Invite), 700);
        let s = stats.snapshot();
        assert_eq!(total(&s), counted + 1);
        assert_eq!(s.responses[MethodLabel::Other.index()][CodeClass::Success.index()], 2);
    }

    #[test]
    fn verdicts_and_latency_sum_over_stripes() {
        let stats = SipStats::default();
        stats.passed(0);
        stats.passed(1);
        stats.unknown_source(STATS_STRIPES - 1);
        stats.malformed(2);
        stats.verdict(3, Verdict::Scanner);
        stats.forward_latency(0).record_ns(50_000);
        stats.forward_latency(3).record_ns(70_000);
        let s = stats.snapshot();
        let verdict = |v: Verdict| s.verdicts[v.index()];
        assert_eq!(verdict(Verdict::Pass), 2);
        assert_eq!(verdict(Verdict::UnknownSource), 1);
        assert_eq!(verdict(Verdict::Malformed), 1);
        assert_eq!(verdict(Verdict::Scanner), 1);
        assert_eq!(s.verdicts.iter().sum::<u64>(), 5);
        assert_eq!((s.forward_latency.count(), s.forward_latency.sum_ns), (2, 120_000));
    }
}
