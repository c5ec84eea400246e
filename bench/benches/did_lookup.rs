//! DID routing: normalise + look up at 1 and 10 million DIDs (hits, misses, range hits, prefix
//! hits), against a `std::collections::HashMap<String, _>` baseline in the same group; the time
//! to bulk-load 10 million rows from CSV; bytes per DID; allocations per routed call.
//!
//! Queries are national NANP numbers (`1NPANXXXXXX`) drawn at random over the whole table, so
//! the figures measure memory, not the cache. `sipedge` routes one call at a time (the headline
//! figure); `sipedge_pipelined` is what a worker with a batch of requests can do: it prefetches
//! the call [`PIPELINE_DEPTH`] ahead (`RouteReader::prefetch`) before it routes this one. The CSV files are generated in a temporary
//! directory and removed at the end. Run: `cargo bench -p bench --bench did_lookup`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::hint::black_box;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bench::did_routing::{DID_BASE, Queries, Query, Rng, SPACING, TARGETS, config};
use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use edge::route::csv_import::{self, ImportOptions};
use edge::route::{
    DidRoute, DidTable, DidTableBuilder, Prefetched, RouteDecision, RouteReader, Router, TrunkId,
};

/// Counts allocations while `COUNTING` is set (to show that routing allocates nothing).
struct CountingAlloc;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: defers every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Queries per kind, drawn at random (a power of two).
const QUERIES: usize = 1 << 20;
/// Rows of the criterion load benchmark (`did_load`); bigger loads are timed by hand.
const LOAD_BENCH_ROWS: u64 = 1_000_000;
fn write_csv(path: &Path, n: u64) {
    let file = std::fs::File::create(path).expect("create CSV");
    let mut w = BufWriter::with_capacity(1 << 20, file);
    writeln!(w, "number,target,customer,group,tag").expect("write CSV");
    for i in 0..n {
        let number = DID_BASE + i * SPACING;
        writeln!(w, "+{number},pbx{},cust-{},grp-{},tag-{}", i % TARGETS, i % 1000, i % 50, i % 5000)
            .expect("write CSV");
    }
    w.flush().expect("write CSV");
}

/// Loads a CSV file into a new table, as `sipedge did check --csv` does.
fn load(router: &Router, path: &Path) -> DidTable {
    let rows = csv_import::count_lines(path).expect("count rows");
    let mut table = DidTableBuilder::with_capacity(rows);
    let report = csv_import::import_file(path, router.targets(), &mut table, ImportOptions::default())
        .expect("import CSV");
    assert_eq!(report.loaded as usize + 1, rows);
    table.build()
}

/// Resident memory of this process, in bytes.
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()).unwrap_or(0) * 4096
}

/// Anonymous memory backed by transparent huge pages in this process, in bytes.
fn huge_page_bytes() -> u64 {
    let rollup = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap_or_default();
    rollup
        .lines()
        .find_map(|l| l.strip_prefix("AnonHugePages:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

/// The naive baseline: normalise into a `String`, look up in a `HashMap<String, _>`.
fn naive_route(map: &HashMap<String, DidRoute>, user: &[u8]) -> Option<DidRoute> {
    let digits: String = user.iter().filter(|b| b.is_ascii_digit()).map(|&b| char::from(b)).collect();
    let e164 = match digits.strip_prefix('1') {
        Some(nsn) => format!("+1{nsn}"),
        None => format!("+1{digits}"),
    };
    map.get(&e164).copied()
}

/// Calls a pipelined worker has started ahead of the one it routes (a power of two).
const PIPELINE_DEPTH: usize = 8;

/// Routes queries in order, each prefetched [`PIPELINE_DEPTH`] calls before it is routed.
struct Pipeline<'q> {
    queries: &'q [Query],
    trunk: TrunkId,
    ahead: [Prefetched; PIPELINE_DEPTH],
    next: usize,
}

impl<'q> Pipeline<'q> {
    fn new(reader: &mut RouteReader, trunk: TrunkId, queries: &'q [Query]) -> Self {
        let ahead = std::array::from_fn(|i| reader.prefetch(trunk, &queries[i], None));
        Self { queries, trunk, ahead, next: 0 }
    }

    /// Prefetches query `next + PIPELINE_DEPTH`, then routes query `next`.
    #[inline(always)]
    fn step(&mut self, reader: &mut RouteReader) -> RouteDecision {
        let slot = self.next & (PIPELINE_DEPTH - 1);
        let q = &self.queries[(self.next + PIPELINE_DEPTH) & (self.queries.len() - 1)];
        self.next = self.next.wrapping_add(1);
        let due = std::mem::replace(&mut self.ahead[slot], reader.prefetch(self.trunk, black_box(q), None));
        reader.route_prefetched(due)
    }
}

/// Rounds of the CPU-time measurement; each makes every query of a kind once.
const CPU_ROUNDS: usize = 9;

/// Median over [`CPU_ROUNDS`] rounds of `call(0..QUERIES)`, in ns of this thread's CPU time
/// per call.
fn cpu_ns_per_call(mut call: impl FnMut(usize)) -> f64 {
    let mut rounds: Vec<f64> = (0..CPU_ROUNDS)
        .map(|_| {
            let start = thread_cpu_ns();
            for i in 0..QUERIES {
                call(i);
            }
            thread_cpu_ns().saturating_sub(start) as f64 / QUERIES as f64
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    rounds[CPU_ROUNDS / 2]
}

/// This thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), in ns.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn bench_size(c: &mut Criterion, dir: &Path, n: u64) {
    let label = format!("{}M", n / 1_000_000);
    let csv = dir.join(format!("dids-{label}.csv"));
    let started = Instant::now();
    write_csv(&csv, n);
    eprintln!("[{label}] CSV written in {:.1} s", started.elapsed().as_secs_f64());

    let router = Router::from_config(&config()).expect("router");
    let trunk: TrunkId = router.trunk("us").expect("trunk");
    let rss_before = rss_bytes();
    let started = Instant::now();
    let table = load(&router, &csv);
    let load_secs = started.elapsed().as_secs_f64();
    if n > LOAD_BENCH_ROWS {
        // Too slow for criterion's ten samples within the time budget: timed twice more here.
        for run in 2..=3 {
            let started = Instant::now();
            drop(black_box(load(&router, &csv)));
            eprintln!("[{label}] load run {run}: {:.2} s", started.elapsed().as_secs_f64());
        }
    }
    let memory = table.memory();
    let rss_table = rss_bytes().saturating_sub(rss_before);
    router.replace_table(Arc::new(table));
    eprintln!("[{label}] huge pages in use: {} MiB", huge_page_bytes() >> 20);
    eprintln!(
        "[{label}] loaded {} rows in {load_secs:.2} s; exact map {} B + metadata {} B ({} records) \
         = {:.1} bytes/DID; RSS grew {:.1} bytes/DID",
        memory.dids,
        memory.exact_bytes,
        memory.meta_bytes,
        memory.meta_records,
        memory.bytes_per_did(),
        rss_table as f64 / n as f64
    );

    let rss_before = rss_bytes();
    let mut baseline: HashMap<String, DidRoute> = HashMap::new();
    let sample = router.table().get(DID_BASE).expect("first DID");
    for i in 0..n {
        baseline.insert(format!("+{}", DID_BASE + i * SPACING), sample);
    }
    eprintln!(
        "[{label}] baseline HashMap<String, _>: RSS grew {:.1} bytes/DID",
        rss_bytes().saturating_sub(rss_before) as f64 / n as f64
    );

    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ n);
    let Queries { hits, misses, range_hits, prefix_hits } = Queries::draw(&mut rng, n, QUERIES);

    let mut reader = router.reader();
    ALLOCATIONS.store(0, Ordering::Relaxed);
    COUNTING.store(true, Ordering::Relaxed);
    for q in hits.iter().chain(&misses).chain(&range_hits).chain(&prefix_hits) {
        black_box(reader.route(trunk, q, None));
    }
    for qs in [&hits, &misses, &range_hits, &prefix_hits] {
        let mut pipeline = Pipeline::new(&mut reader, trunk, qs);
        for _ in 0..QUERIES {
            black_box(pipeline.step(&mut reader));
        }
    }
    COUNTING.store(false, Ordering::Relaxed);
    eprintln!(
        "[{label}] allocations in {} routed calls (single and pipelined): {}",
        8 * QUERIES,
        ALLOCATIONS.load(Ordering::Relaxed)
    );

    let mut g = c.benchmark_group(format!("did_lookup/{label}"));
    g.throughput(Throughput::Elements(1));
    g.sample_size(30);
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(3));
    for (name, qs) in
        [("hit", &hits), ("miss", &misses), ("range_hit", &range_hits), ("prefix_hit", &prefix_hits)]
    {
        g.bench_function(format!("sipedge/{name}"), |b| {
            let mut i = 0usize;
            b.iter(|| {
                let q = &qs[i & (QUERIES - 1)];
                i = i.wrapping_add(1);
                black_box(reader.route(trunk, black_box(q), None))
            })
        });
    }
    for (name, qs) in
        [("hit", &hits), ("miss", &misses), ("range_hit", &range_hits), ("prefix_hit", &prefix_hits)]
    {
        g.bench_function(format!("sipedge_pipelined/{name}"), |b| {
            let mut pipeline = Pipeline::new(&mut reader, trunk, qs);
            b.iter(|| black_box(pipeline.step(&mut reader)))
        });
    }
    for (name, qs) in [("hit", &hits), ("miss", &misses)] {
        g.bench_function(format!("std_hashmap_string/{name}"), |b| {
            let mut i = 0usize;
            b.iter(|| {
                let q = &qs[i & (QUERIES - 1)];
                i = i.wrapping_add(1);
                black_box(naive_route(&baseline, black_box(q)))
            })
        });
    }
    let keys: Vec<u64> = (0..QUERIES).map(|_| DID_BASE + (rng.next_u64() % n) * SPACING).collect();
    g.bench_function("sipedge_table_only/hit", |b| {
        let table = router.table();
        let mut i = 0usize;
        b.iter(|| {
            let k = keys[i & (QUERIES - 1)];
            i = i.wrapping_add(1);
            black_box(table.get(black_box(k)))
        })
    });
    g.finish();

    // The same loops timed on this thread's CPU clock: on a shared machine criterion's wall
    // time also counts the time other processes held the core.
    let table = router.table();
    let mut cpu = Vec::new();
    for (name, qs) in
        [("hit", &hits), ("miss", &misses), ("range_hit", &range_hits), ("prefix_hit", &prefix_hits)]
    {
        cpu.push((
            format!("sipedge/{name}"),
            cpu_ns_per_call(|i| {
                black_box(reader.route(trunk, black_box(&qs[i]), None));
            }),
        ));
    }
    for (name, qs) in
        [("hit", &hits), ("miss", &misses), ("range_hit", &range_hits), ("prefix_hit", &prefix_hits)]
    {
        let mut pipeline = Pipeline::new(&mut reader, trunk, qs);
        cpu.push((
            format!("sipedge_pipelined/{name}"),
            cpu_ns_per_call(|_| {
                black_box(pipeline.step(&mut reader));
            }),
        ));
    }
    for (name, qs) in [("hit", &hits), ("miss", &misses)] {
        cpu.push((
            format!("std_hashmap_string/{name}"),
            cpu_ns_per_call(|i| {
                black_box(naive_route(&baseline, black_box(&qs[i])));
            }),
        ));
    }
    cpu.push((
        "sipedge_table_only/hit".to_owned(),
        cpu_ns_per_call(|i| {
            black_box(table.get(black_box(keys[i])));
        }),
    ));
    for (name, ns) in cpu {
        eprintln!("[{label}] thread CPU time, median of {CPU_ROUNDS} rounds: {name} {ns:.1} ns");
    }
    drop(baseline);

    if n == LOAD_BENCH_ROWS {
        let mut g = c.benchmark_group("did_load");
        g.sampling_mode(SamplingMode::Flat);
        g.sample_size(10);
        g.warm_up_time(Duration::from_millis(1));
        g.measurement_time(Duration::from_secs(1));
        g.throughput(Throughput::Elements(n));
        g.bench_function(format!("csv_{label}"), |b| b.iter(|| black_box(load(&router, &csv))));
        g.finish();
    }
    let _ = std::fs::remove_file(&csv);
}

fn did_lookup(c: &mut Criterion) {
    let dir = TempDir(std::env::temp_dir().join(format!("sipedge-bench-did-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).expect("create the temporary directory");
    for n in [1_000_000, 10_000_000] {
        bench_size(c, &dir.0, n);
    }
}

criterion_group!(benches, did_lookup);
criterion_main!(benches);
