//! The hot-path metrics: what counting one request and one response, and recording one
//! forwarding latency, costs a worker; and what a stripe per worker (single writer: load and
//! store) saves when two workers count at once, against the baseline of one shared array of
//! atomics that both add to (`fetch_add`, as the engine's older `ProxyCounters` do).
//! Run: `cargo bench -p bench --bench metrics_counters`.

use std::hint::black_box;
use std::sync::Barrier;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use control::metrics::LatencyBuckets;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use edge::proxy::stats::SipStats;
use edge::sip::Method;

/// Workers counting at once in the contention group.
const WORKERS: usize = 2;

/// One message's counting: its request and the response that answers it.
fn count_one(stats: &SipStats, worker: usize) {
    stats.request(worker, black_box(&Method::Invite));
    stats.response(worker, Some(black_box(&Method::Invite)), black_box(200));
}

/// The baseline's counting: the same two counters, shared by every worker.
fn count_one_shared(shared: &[AtomicU64; 2], _worker: usize) {
    shared[0].fetch_add(1, Relaxed);
    shared[1].fetch_add(black_box(1), Relaxed);
}

/// `iters` messages counted by `count` on each of [`WORKERS`] threads; the wall time of the
/// slowest.
fn contended(iters: u64, count: &(dyn Fn(usize) + Sync)) -> Duration {
    let barrier = Barrier::new(WORKERS);
    let times: Vec<Duration> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..WORKERS)
            .map(|w| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    for _ in 0..iters {
                        count(w);
                    }
                    start.elapsed()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("bench thread")).collect()
    });
    times.into_iter().max().unwrap_or_default()
}

fn bench(c: &mut Criterion) {
    let stats = SipStats::default();
    let mut g = c.benchmark_group("metrics_one_worker");
    g.throughput(Throughput::Elements(1));
    g.bench_function("request+response counted", |b| b.iter(|| count_one(&stats, 0)));
    let latency = LatencyBuckets::new();
    let mut ns = 0u64;
    g.bench_function("forward latency recorded", |b| {
        b.iter(|| {
            ns = (ns + 7_919) % 1_000_000;
            latency.record_ns(black_box(ns));
        })
    });
    g.finish();

    let mut g = c.benchmark_group("metrics_two_workers");
    g.throughput(Throughput::Elements(WORKERS as u64));
    let shared = [AtomicU64::new(0), AtomicU64::new(0)];
    g.bench_function("one shared array, fetch_add (baseline)", |b| {
        b.iter_custom(|iters| contended(iters, &|w| count_one_shared(&shared, w)))
    });
    g.bench_function("a stripe per worker", |b| {
        b.iter_custom(|iters| contended(iters, &|w| count_one(&stats, w)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
