//! The routing state and the queries of the DID benchmarks (`benches/did_lookup.rs` and
//! `examples/route_instructions.rs`): one trunk, [`TARGETS`] targets, the number blocks, exact
//! DIDs from [`DID_BASE`] spaced by [`SPACING`], and national NANP user parts drawn at random.

use control::config::Config;

/// Target sets DIDs are spread over (`pbx0`, `pbx1`, ...).
pub const TARGETS: u64 = 4;
/// First exact DID (+1 212 000 0000); DIDs are spaced by `SPACING`, misses sit in between.
pub const DID_BASE: u64 = 12_120_000_000;
/// Distance between two exact DIDs.
pub const SPACING: u64 = 7;
/// Prefix blocks: `+1300` and 1000 seven-digit prefixes `+1300NNN`.
pub const PREFIXES: u64 = 1_000;
/// First number under the prefix blocks (+1 300 000 0000).
pub const PREFIX_BASE: u64 = 13_000_000_000;
/// Numbers under one seven-digit prefix (11-digit numbers).
pub const PREFIX_SIZE: u64 = 10_000;
/// Range blocks: 1000 ranges of [`RANGE_SIZE`] numbers from +1 400 000 0000.
pub const RANGES: u64 = 1_000;
/// Numbers per range block.
pub const RANGE_SIZE: u64 = 10_000;
/// First number of the first range block.
pub const RANGE_BASE: u64 = 14_000_000_000;

/// The configuration: trunk `us` (country code 1 by default), the targets and the blocks; the
/// exact DIDs are loaded by each benchmark.
pub fn config() -> Config {
    let mut text = String::from("[[trunk]]\nname = \"us\"\nsources = [\"192.0.2.0/24\"]\n");
    for t in 0..TARGETS {
        text += &format!("[[target]]\nname = \"pbx{t}\"\nuris = [\"sip:10.0.0.{t}:5060\"]\n");
    }
    text += "[[did_range]]\nprefix = \"+1300\"\ntarget = \"pbx0\"\n";
    for p in 0..PREFIXES {
        text += &format!("[[did_range]]\nprefix = \"+1300{p:03}\"\ntarget = \"pbx1\"\n");
    }
    for r in 0..RANGES {
        let first = RANGE_BASE + r * RANGE_SIZE;
        text += &format!(
            "[[did_range]]\nfirst = \"+{first}\"\nlast = \"+{}\"\ntarget = \"pbx2\"\n",
            first + RANGE_SIZE - 1
        );
    }
    Config::from_toml(&text).expect("benchmark configuration")
}

/// xorshift64*: a reproducible stream of random numbers.
#[derive(Debug)]
pub struct Rng(pub u64);

impl Rng {
    /// The next number of the stream.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// A query: a national NANP number as the Request-URI user part.
pub type Query = [u8; 11];

/// The user part of an 11-digit number.
pub fn query(e164: u64) -> Query {
    let mut q = [0u8; 11];
    q.copy_from_slice(e164.to_string().as_bytes());
    q
}

/// The four kinds of queries over `dids` exact DIDs, `count` of each.
#[derive(Debug)]
pub struct Queries {
    /// Exact DIDs.
    pub hits: Vec<Query>,
    /// Numbers between two exact DIDs, under no block.
    pub misses: Vec<Query>,
    /// Numbers in the range blocks.
    pub range_hits: Vec<Query>,
    /// Numbers under the prefix blocks.
    pub prefix_hits: Vec<Query>,
}

impl Queries {
    /// `count` queries of each kind, drawn from `rng`.
    pub fn draw(rng: &mut Rng, dids: u64, count: usize) -> Self {
        let mut draw = |f: &dyn Fn(u64) -> u64| (0..count).map(|_| query(f(rng.next_u64()))).collect();
        Self {
            hits: draw(&|r| DID_BASE + (r % dids) * SPACING),
            misses: draw(&|r| DID_BASE + (r % dids) * SPACING + 3),
            range_hits: draw(&|r| RANGE_BASE + r % (RANGES * RANGE_SIZE)),
            prefix_hits: draw(&|r| PREFIX_BASE + r % (PREFIXES * PREFIX_SIZE)),
        }
    }
}
