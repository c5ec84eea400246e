//! A lock-free latency histogram: fixed buckets of relaxed atomics, recorded in nanoseconds.
//!
//! The data plane keeps one [`LatencyBuckets`] per worker stripe and records into it without a
//! lock or an allocation; once a second its sampler adds what moved into the registered
//! [`LatencyHistogram`] ([`LatencyHistogram::add`]), which encodes as an OpenMetrics histogram
//! in seconds. Both use the same bounds, [`FORWARD_LATENCY_BOUNDS_NS`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Smallest forwarding-latency bucket bound, in nanoseconds (10 µs).
const FIRST_BOUND_NS: u64 = 10_000;
/// Finite forwarding-latency buckets (doubling: 10 µs … 328 ms); one more counts the rest.
pub const FORWARD_LATENCY_BUCKETS: usize = 16;
/// Slots of a [`LatencyBuckets`]: the finite buckets and `+Inf`.
const SLOTS: usize = FORWARD_LATENCY_BUCKETS + 1;
/// Nanoseconds per second, for the exposition in seconds.
const NS_PER_SEC: f64 = 1e9;

/// Upper bounds (inclusive) of the finite buckets, in nanoseconds.
pub const FORWARD_LATENCY_BOUNDS_NS: [u64; FORWARD_LATENCY_BUCKETS] = {
    let mut bounds = [0; FORWARD_LATENCY_BUCKETS];
    let mut i = 0;
    while i < FORWARD_LATENCY_BUCKETS {
        bounds[i] = FIRST_BOUND_NS << i;
        i += 1;
    }
    bounds
};

/// The slot a latency falls in: the first bucket whose bound is at least `ns`, else `+Inf`.
/// Bounds double, so this is a logarithm of `ns` in units of the first bound (no search).
fn bucket_of(ns: u64) -> usize {
    let units = ns.div_ceil(FIRST_BOUND_NS);
    let slot = if units <= 1 { 0 } else { (u64::BITS - (units - 1).leading_zeros()) as usize };
    slot.min(FORWARD_LATENCY_BUCKETS)
}

/// Counts per bucket and the sum of what was recorded. Writers and readers never block.
#[derive(Debug)]
pub struct LatencyBuckets {
    counts: [AtomicU64; SLOTS],
    sum_ns: AtomicU64,
}

impl Default for LatencyBuckets {
    fn default() -> Self {
        Self::new()
    }
}

/// A copy of [`LatencyBuckets`] at one moment (counts per bucket, not cumulative).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LatencySnapshot {
    /// Count per slot: the finite buckets in bound order, then `+Inf`.
    pub counts: [u64; SLOTS],
    /// Sum of the recorded latencies, in nanoseconds (wrapping).
    pub sum_ns: u64,
}

impl LatencySnapshot {
    /// Observations in all buckets.
    pub fn count(&self) -> u64 {
        self.counts.iter().fold(0u64, |a, &c| a.wrapping_add(c))
    }

    /// Adds another snapshot (summing stripes).
    pub fn merge(&mut self, other: &Self) {
        for (a, b) in self.counts.iter_mut().zip(other.counts) {
            *a = a.wrapping_add(b);
        }
        self.sum_ns = self.sum_ns.wrapping_add(other.sum_ns);
    }

    /// What moved since `earlier` (both monotonic; a counter that went back counts from zero).
    pub fn since(&self, earlier: &Self) -> Self {
        let moved = |now: u64, then: u64| if now >= then { now - then } else { now };
        let mut out = Self { sum_ns: moved(self.sum_ns, earlier.sum_ns), ..Self::default() };
        for ((o, &now), &then) in out.counts.iter_mut().zip(&self.counts).zip(&earlier.counts) {
            *o = moved(now, then);
        }
        out
    }
}

impl LatencyBuckets {
    /// Empty buckets.
    pub const fn new() -> Self {
        Self { counts: [const { AtomicU64::new(0) }; SLOTS], sum_ns: AtomicU64::new(0) }
    }

    /// Records one latency, in nanoseconds.
    pub fn record_ns(&self, ns: u64) {
        // bucket_of returns at most FORWARD_LATENCY_BUCKETS, the last slot.
        if let Some(slot) = self.counts.get(bucket_of(ns)) {
            slot.fetch_add(1, Relaxed);
        }
        self.sum_ns.fetch_add(ns, Relaxed);
    }

    /// Adds a batch of observations (a sampler's delta).
    pub fn add(&self, delta: &LatencySnapshot) {
        for (slot, &n) in self.counts.iter().zip(&delta.counts) {
            if n > 0 {
                slot.fetch_add(n, Relaxed);
            }
        }
        self.sum_ns.fetch_add(delta.sum_ns, Relaxed);
    }

    /// The current counts.
    pub fn snapshot(&self) -> LatencySnapshot {
        LatencySnapshot {
            counts: std::array::from_fn(|i| self.counts.get(i).map_or(0, |c| c.load(Relaxed))),
            sum_ns: self.sum_ns.load(Relaxed),
        }
    }
}

/// The registered form: shared [`LatencyBuckets`] that encode as a histogram in seconds.
#[derive(Debug, Clone, Default)]
pub struct LatencyHistogram(Arc<LatencyBuckets>);

impl std::ops::Deref for LatencyHistogram {
    type Target = LatencyBuckets;

    fn deref(&self) -> &LatencyBuckets {
        &self.0
    }
}

impl TypedMetric for LatencyHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for LatencyHistogram {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        let snap = self.0.snapshot();
        let mut buckets = [(f64::INFINITY, 0u64); SLOTS];
        for (i, (bucket, &count)) in buckets.iter_mut().zip(&snap.counts).enumerate() {
            let bound = FORWARD_LATENCY_BOUNDS_NS.get(i).map_or(f64::INFINITY, |&ns| ns as f64 / NS_PER_SEC);
            *bucket = (bound, count);
        }
        encoder.encode_histogram::<NoLabelSet>(snap.sum_ns as f64 / NS_PER_SEC, snap.count(), &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_follow_the_inclusive_bounds() {
        assert_eq!(FORWARD_LATENCY_BOUNDS_NS[0], 10_000);
        assert_eq!(FORWARD_LATENCY_BOUNDS_NS[15], 327_680_000);
        for (ns, slot) in [
            (0, 0),
            (10_000, 0),
            (10_001, 1),
            (20_000, 1),
            (20_001, 2),
            (40_000, 2),
            (327_680_000, 15),
            (327_680_001, 16),
            (u64::MAX, 16),
        ] {
            assert_eq!(bucket_of(ns), slot, "{ns} ns");
        }
        // Every bound is the last value of its own bucket.
        for (i, &b) in FORWARD_LATENCY_BOUNDS_NS.iter().enumerate() {
            assert_eq!((bucket_of(b), bucket_of(b + 1)), (i, i + 1));
        }
    }

    #[test]
    fn records_adds_and_encodes_cumulative_seconds() {
        let stripe = LatencyBuckets::new();
        stripe.record_ns(5_000);
        stripe.record_ns(15_000);
        stripe.record_ns(1_000_000_000);
        let first = stripe.snapshot();
        assert_eq!((first.count(), first.sum_ns), (3, 1_000_020_000));
        stripe.record_ns(15_000);
        let delta = stripe.snapshot().since(&first);
        assert_eq!((delta.count(), delta.counts[1], delta.sum_ns), (1, 1, 15_000));

        let registered = LatencyHistogram::default();
        registered.add(&first);
        registered.add(&delta);
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register("lat_seconds", "test", registered.clone());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for want in [
            "# TYPE lat_seconds histogram",
            "lat_seconds_count 4",
            "lat_seconds_sum 1.000035",
            "lat_seconds_bucket{le=\"0.00001\"} 1",
            "lat_seconds_bucket{le=\"0.00002\"} 3",
            "lat_seconds_bucket{le=\"0.32768\"} 3",
            "lat_seconds_bucket{le=\"+Inf\"} 4",
        ] {
            assert!(text.contains(want), "{want:?} missing from\n{text}");
        }
    }
}
