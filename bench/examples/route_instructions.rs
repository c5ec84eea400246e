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

use control::config::Config;
use edge::route::{DidMeta, DidTableBuilder, E164, RouteReader, Router, TrunkId};

/// Exact DIDs in the table.
const DIDS: u64 = 100_000;
/// Routed calls per kind.
const CALLS: usize = 100_000;
/// First exact DID; DIDs are spaced by `SPACING`, misses sit in between.
const DID_BASE: u64 = 12_120_000_000;
const SPACING: u64 = 7;
/// Prefix blocks: `+1300` and 1000 seven-digit prefixes `+1300NNN`.
const PREFIXES: u64 = 1_000;
/// Range blocks: 1000 ranges of 10,000 numbers from +1 400 000 0000.
const RANGES: u64 = 1_000;
const RANGE_BASE: u64 = 14_000_000_000;

fn config() -> Config {
    let mut text = String::from("[[trunk]]\nname = \"us\"\nsources = [\"192.0.2.0/24\"]\n");
    text += "[[target]]\nname = \"pbx\"\nuris = [\"sip:10.0.0.1:5060\"]\n";
    text += "[[did_range]]\nprefix = \"+1300\"\ntarget = \"pbx\"\n";
    for p in 0..PREFIXES {
        text += &format!("[[did_range]]\nprefix = \"+1300{p:03}\"\ntarget = \"pbx\"\n");
    }
    for r in 0..RANGES {
        let first = RANGE_BASE + r * 10_000;
        text += &format!(
            "[[did_range]]\nfirst = \"+{first}\"\nlast = \"+{}\"\ntarget = \"pbx\"\n",
            first + 9_999
        );
    }
    Config::from_toml(&text).expect("configuration")
}

/// A national NANP user part.
type Query = [u8; 11];

fn queries(seed: &mut u64, f: impl Fn(u64) -> u64) -> Vec<Query> {
    (0..CALLS)
        .map(|_| {
            // xorshift64*
            *seed ^= *seed >> 12;
            *seed ^= *seed << 25;
            *seed ^= *seed >> 27;
            let mut q = [0u8; 11];
            q.copy_from_slice(f(seed.wrapping_mul(0x2545_F491_4F6C_DD1D)).to_string().as_bytes());
            q
        })
        .collect()
}

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
    let set = router.targets().id("pbx").expect("target");
    let mut table = DidTableBuilder::with_capacity(DIDS as usize);
    for i in 0..DIDS {
        let number = E164::from_key(DID_BASE + i * SPACING).expect("E.164 number");
        table.insert_new(number, set, None, &DidMeta::default()).expect("insert");
    }
    router.replace_table(Arc::new(table.build()));
    let mut seed = 0x9E37_79B9_7F4A_7C15;
    let hits = queries(&mut seed, |r| DID_BASE + (r % DIDS) * SPACING);
    let misses = queries(&mut seed, |r| DID_BASE + (r % DIDS) * SPACING + 3);
    let range_hits = queries(&mut seed, |r| RANGE_BASE + r % (RANGES * 10_000));
    let prefix_hits = queries(&mut seed, |r| 13_000_000_000 + r % (PREFIXES * 10_000));
    let mut reader = router.reader();
    kind_hit(&mut reader, trunk, &hits);
    kind_miss(&mut reader, trunk, &misses);
    kind_range_hit(&mut reader, trunk, &range_hits);
    kind_prefix_hit(&mut reader, trunk, &prefix_hits);
    println!("{CALLS} routed calls per kind_* function: divide its inclusive count by {CALLS}");
}
