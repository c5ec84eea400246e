//! Instructions per routed call, counted by callgrind (this machine has no hardware counters,
//! and wall time on a shared machine is too noisy to compare small changes):
//!
//! ```sh
//! cargo build --release -p bench --example route_instructions
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect='route_instructions::kind_*' \
//!     --callgrind-out-file=/tmp/route.cg target/release/examples/route_instructions
//! callgrind_annotate --inclusive=yes /tmp/route.cg | grep kind_
//! ```
//!
//! Each `kind_*` function makes [`CALLS`] routed calls through a `RouteReader` (national NANP
//! user parts, as `benches/did_lookup.rs`): its inclusive count divided by [`CALLS`] is the
//! instructions of one call. The table is small (instruction counts do not depend on its size,
//! but for the rare overflowed bucket); the blocks are the benchmark's.

use std::hint::black_box;
use std::sync::Arc;

use bench::did_routing::{DID_BASE, Queries, Query, Rng, SPACING, config};
use edge::route::{DidMeta, DidTableBuilder, E164, RouteReader, Router, TrunkId};

/// Exact DIDs in the table.
const DIDS: u64 = 100_000;
/// Routed calls per kind.
const CALLS: usize = 100_000;

/// Routes every query. `kind` differs per caller, so the linker cannot fold the `kind_*`
/// functions into one.
#[inline(always)]
fn route_all(kind: &str, reader: &mut RouteReader, trunk: TrunkId, queries: &[Query]) {
    black_box(kind);
    for q in queries {
        black_box(reader.route(trunk, black_box(q), None));
    }
}

#[inline(never)]
fn kind_hit(reader: &mut RouteReader, trunk: TrunkId, queries: &[Query]) {
    route_all("hit", reader, trunk, queries)
}

#[inline(never)]
fn kind_miss(reader: &mut RouteReader, trunk: TrunkId, queries: &[Query]) {
    route_all("miss", reader, trunk, queries)
}

#[inline(never)]
fn kind_range_hit(reader: &mut RouteReader, trunk: TrunkId, queries: &[Query]) {
    route_all("range_hit", reader, trunk, queries)
}

#[inline(never)]
fn kind_prefix_hit(reader: &mut RouteReader, trunk: TrunkId, queries: &[Query]) {
    route_all("prefix_hit", reader, trunk, queries)
}

fn main() {
    let router = Router::from_config(&config()).expect("router");
    let trunk = router.trunk("us").expect("trunk");
    let set = router.targets().id("pbx0").expect("target");
    let mut table = DidTableBuilder::with_capacity(DIDS as usize);
    for i in 0..DIDS {
        let number = E164::from_key(DID_BASE + i * SPACING).expect("E.164 number");
        table.insert_new(number, set, None, &DidMeta::default()).expect("insert");
    }
    router.replace_table(Arc::new(table.build()));
    let Queries { hits, misses, range_hits, prefix_hits } =
        Queries::draw(&mut Rng(0x9E37_79B9_7F4A_7C15), DIDS, CALLS);
    let mut reader = router.reader();
    kind_hit(&mut reader, trunk, &hits);
    kind_miss(&mut reader, trunk, &misses);
    kind_range_hit(&mut reader, trunk, &range_hits);
    kind_prefix_hit(&mut reader, trunk, &prefix_hits);
    println!("{CALLS} routed calls per kind_* function: divide its inclusive count by {CALLS}");
}
