//! The hot-path metrics: what counting one request and one response, and recording one
//! forwarding latency, costs a worker; and what striping the counters per worker saves when two
//! workers count at once, against the baseline of both writing one shared stripe.
//! Run: `cargo bench -p bench --bench metrics_counters`.

use std::hint::black_box;
use std::sync::Barrier;
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

/// `iters` messages on each of [`WORKERS`] threads, each counting on stripe `stripe_of(worker)`;
/// the wall time of the slowest.
fn contended(stats: &SipStats, iters: u64, stripe_of: fn(usize) -> usize) -> Duration {
    let barrier = Barrier::new(WORKERS);
    let times: Vec<Duration> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..WORKERS)
            .map(|w| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    for _ in 0..iters {
                        count_one(stats, stripe_of(w));
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
    g.bench_function("one shared stripe (baseline)", |b| b.iter_custom(|iters| contended(&stats, iters, |_| 0)));
    g.bench_function("a stripe per worker", |b| b.iter_custom(|iters| contended(&stats, iters, |w| w)));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
