//! Number blocks: prefixes (`+1555124` covers every number under it; the longest prefix wins)
//! and explicit inclusive ranges (`+15551240000`–`+15551249999`).
//!
//! Layout, chosen for a small, rarely changed set consulted only when the exact table misses:
//! - prefixes: one hash map per prefix length present, keyed by the prefix's value, tried from
//!   the longest length down (at most 15 probes, usually a handful);
//! - ranges: a sorted vector of non-overlapping intervals, binary-searched. A range holds
//!   numbers of one length (first and last have the same digit count), so the sort key is the
//!   digit count above the value: `+1555…` of 11 digits never falls in a range of 12-digit
//!   numbers.
//!
//! A block carries a route like an exact DID's (target set, optional concurrent-call limit,
//! metadata record) and the metadata records live in the blocks' own interned store. Each block
//! has a [`BlockId`] (its position in the list given), and [`BlockId::limit_key`] names the
//! counter its calls are held to: one per block, not one per number.
//!
//! A `Blocks` is immutable; the router swaps a whole new one in (`arc-swap`).

use std::collections::HashMap;

use ahash::RandomState;

use super::e164::E164;
use super::meta::{DidMeta, MetaId, MetaStore};
use super::table::DidRoute;

/// Most number blocks (prefixes and ranges together) one configuration may hold.
pub const MAX_BLOCKS: usize = 1_000_000;
/// Bits of the sort key that hold the value (10^15 < 2^50).
const VALUE_BITS: u32 = 50;
/// Marks a block's call counter key: E.164 keys are below 2^50, so no number has this bit.
const BLOCK_LIMIT_KEY: u64 = 1 << 63;

/// A block: its position in the list of prefixes then ranges given to [`Blocks::new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockId(pub u32);

impl BlockId {
    /// The key the block's calls are counted under (beside the exact DIDs' E.164 keys, which
    /// it never equals).
    pub fn limit_key(self) -> u64 {
        BLOCK_LIMIT_KEY | u64::from(self.0)
    }
}

/// Why a block was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BlockError {
    /// The same prefix twice.
    #[error("prefix {0} is listed twice")]
    DuplicatePrefix(E164),
    /// First and last differ in length, or last is below first.
    #[error("range {0}–{1}: first and last must have the same length, first ≤ last")]
    BadRange(E164, E164),
    /// Two ranges share numbers.
    #[error("range {0}–{1} overlaps another range")]
    Overlap(E164, E164),
    /// More than [`MAX_BLOCKS`].
    #[error("more than {MAX_BLOCKS} number blocks")]
    TooMany,
}

#[derive(Debug, Clone, Copy)]
struct Range {
    first: u64,
    last: u64,
    route: DidRoute,
    id: BlockId,
}

/// What matched in the blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockMatch {
    /// An explicit range.
    Range(DidRoute),
    /// The longest matching prefix, with its digit count.
    Prefix(DidRoute, u8),
}

/// The prefixes of one length: prefix value → route and block.
type PrefixMap = HashMap<u64, (DidRoute, BlockId), RandomState>;

/// A block a number fell in: which block, what kind, and its route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockHit {
    /// The block.
    pub id: BlockId,
    /// Its route (target set, call limit, metadata record in [`Blocks::with_meta`]).
    pub route: DidRoute,
    /// The prefix's digit count; `None` for a range.
    pub prefix_len: Option<u8>,
}

/// Prefixes and ranges.
#[derive(Debug, Default)]
pub struct Blocks {
    /// (prefix length, prefix value → route and block), longest length first.
    prefixes: Vec<(u8, PrefixMap)>,
    /// Sorted by `first`, non-overlapping.
    ranges: Vec<Range>,
    /// The metadata records the routes name.
    meta: MetaStore,
}

/// Powers of ten as `f64`, up to 10^15 (each exact).
const POW10_F64: [f64; 16] = {
    let mut p = [1.0f64; 16];
    let mut i = 1;
    while i < p.len() {
        p[i] = p[i - 1] * 10.0;
        i += 1;
    }
    p
};

/// `key / 10^drop` (the prefix of a number), by one floating-point division instead of an
/// integer division (tens of micro-operations, which keep the next call's memory access from
/// starting). Exact: key and 10^drop are below 2^53, and the quotient's rounding error (below
/// 10^15 · 2^-53 · 10^-drop) is smaller than its distance to the next integer (at least
/// 10^-drop), so truncation gives the integer quotient.
#[inline]
fn drop_digits(key: u64, drop: u8) -> u64 {
    match POW10_F64.get(usize::from(drop)) {
        Some(&p) if key < (1 << 53) => (key as f64 / p) as u64,
        _ => key / 10u64.pow(u32::from(drop)),
    }
}

fn sort_key(n: E164) -> u64 {
    u64::from(n.digits()) << VALUE_BITS | n.key()
}

impl Blocks {
    /// Builds from prefixes and ranges, refusing duplicates and overlaps; their routes name
    /// no metadata but the empty record.
    pub fn new(
        prefixes: impl IntoIterator<Item = (E164, DidRoute)>,
        ranges: impl IntoIterator<Item = (E164, E164, DidRoute)>,
    ) -> Result<Self, BlockError> {
        Self::new_with_meta(prefixes, ranges, MetaStore::default())
    }

    /// As [`Blocks::new`], the routes naming records of `meta`.
    pub fn new_with_meta(
        prefixes: impl IntoIterator<Item = (E164, DidRoute)>,
        ranges: impl IntoIterator<Item = (E164, E164, DidRoute)>,
        meta: MetaStore,
    ) -> Result<Self, BlockError> {
        let mut by_len: HashMap<u8, PrefixMap> = HashMap::new();
        let mut count = 0usize;
        for (p, route) in prefixes {
            count += 1;
            if count > MAX_BLOCKS {
                return Err(BlockError::TooMany);
            }
            let id = BlockId(count as u32 - 1);
            if by_len.entry(p.digits()).or_default().insert(p.key(), (route, id)).is_some() {
                return Err(BlockError::DuplicatePrefix(p));
            }
        }
        let mut list = Vec::new();
        for (first, last, route) in ranges {
            count += 1;
            if count > MAX_BLOCKS {
                return Err(BlockError::TooMany);
            }
            if first.digits() != last.digits() || first > last {
                return Err(BlockError::BadRange(first, last));
            }
            let id = BlockId(count as u32 - 1);
            list.push((first, last, Range { first: sort_key(first), last: sort_key(last), route, id }));
        }
        list.sort_by_key(|(_, _, r)| r.first);
        for pair in list.windows(2) {
            if let [(_, _, prev), (first, last, next)] = pair
                && next.first <= prev.last
            {
                return Err(BlockError::Overlap(*first, *last));
            }
        }
        let mut prefixes: Vec<_> = by_len.into_iter().collect();
        prefixes.sort_by_key(|(len, _)| std::cmp::Reverse(*len));
        Ok(Self { prefixes, ranges: list.into_iter().map(|(_, _, r)| r).collect(), meta })
    }

    /// The block a number falls in: a range before a prefix, the longest prefix first.
    #[inline]
    pub fn lookup(&self, n: E164) -> Option<BlockMatch> {
        self.find(n).map(|hit| match hit.prefix_len {
            None => BlockMatch::Range(hit.route),
            Some(len) => BlockMatch::Prefix(hit.route, len),
        })
    }

    /// As [`Blocks::lookup`], naming the block (whose id keys its call counter).
    #[inline]
    pub fn find(&self, n: E164) -> Option<BlockHit> {
        if let Some(r) = self.range(n) {
            return Some(BlockHit { id: r.id, route: r.route, prefix_len: None });
        }
        self.prefix(n).map(|(route, id, len)| BlockHit { id, route, prefix_len: Some(len) })
    }

    fn range(&self, n: E164) -> Option<&Range> {
        let key = sort_key(n);
        let i = self.ranges.partition_point(|r| r.first <= key);
        let r = self.ranges.get(i.checked_sub(1)?)?;
        (key <= r.last).then_some(r)
    }

    fn prefix(&self, n: E164) -> Option<(DidRoute, BlockId, u8)> {
        for (len, map) in &self.prefixes {
            let Some(drop) = n.digits().checked_sub(*len) else { continue };
            if let Some(&(route, id)) = map.get(&drop_digits(n.key(), drop)) {
                return Some((route, id, *len));
            }
        }
        None
    }

    /// Calls `f` with the metadata record a block's route names.
    pub fn with_meta<R>(&self, id: MetaId, f: impl FnOnce(DidMeta<'_>) -> R) -> R {
        f(self.meta.get(id))
    }

    /// Prefixes and ranges held.
    pub fn len(&self) -> usize {
        self.ranges.len() + self.prefixes.iter().map(|(_, m)| m.len()).sum::<usize>()
    }

    /// True when there are no blocks.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::meta::MetaId;
    use crate::route::targets::SetId;

    fn n(s: &str) -> E164 {
        E164::parse_plus(s).unwrap()
    }
    fn r(set: u32) -> DidRoute {
        DidRoute::new(SetId(set), None, MetaId::default()).unwrap()
    }

    #[test]
    fn longest_prefix_wins_and_ranges_beat_prefixes() {
        let blocks = Blocks::new(
            [(n("+1"), r(1)), (n("+1555"), r(2)), (n("+1555124"), r(3))],
            [(n("+15551240000"), n("+15551240099"), r(4)), (n("+442079460000"), n("+442079469999"), r(5))],
        )
        .unwrap();
        let cases = [
            ("+15551240050", Some(BlockMatch::Range(r(4)))),
            ("+15551240100", Some(BlockMatch::Prefix(r(3), 7))),
            ("+15551239999", Some(BlockMatch::Prefix(r(2), 4))),
            ("+12125550000", Some(BlockMatch::Prefix(r(1), 1))),
            ("+442079465555", Some(BlockMatch::Range(r(5)))),
            ("+442079470000", None),
            // Same value range, other length: a 13-digit number is not in a 12-digit range.
            ("+4420794600001", None),
            ("+15551240000", Some(BlockMatch::Range(r(4)))),
            ("+15551240099", Some(BlockMatch::Range(r(4)))),
        ];
        for (number, want) in cases {
            assert_eq!(blocks.lookup(n(number)), want, "{number}");
        }
        assert_eq!(blocks.len(), 5);
        // Ids follow the order given: prefixes, then ranges; each keys its own counter.
        let ids: Vec<_> = ["+12125550000", "+15551239999", "+15551240100", "+15551240050", "+442079465555"]
            .iter()
            .map(|s| blocks.find(n(s)).unwrap().id)
            .collect();
        assert_eq!(ids, [BlockId(0), BlockId(1), BlockId(2), BlockId(3), BlockId(4)]);
        assert_eq!(blocks.find(n("+15551240100")).unwrap().prefix_len, Some(7));
        assert!(ids.iter().all(|id| id.limit_key() >= 1 << 50), "beyond every E.164 key");
    }

    #[test]
    fn dropping_digits_by_float_division_is_exact() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut values: Vec<u64> =
            (1..=15u32).flat_map(|d| [10u64.pow(d) - 1, 10u64.pow(d), 10u64.pow(d) + 1]).collect();
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            values.push(x % 1_000_000_000_000_000);
        }
        for v in values.into_iter().filter(|v| *v < 1_000_000_000_000_000) {
            for drop in 0..=15u8 {
                assert_eq!(drop_digits(v, drop), v / 10u64.pow(u32::from(drop)), "{v} / 10^{drop}");
            }
        }
    }

    #[test]
    fn block_routes_name_the_blocks_metadata_and_limits() {
        let mut meta = MetaStore::default();
        let acme = meta.intern(&DidMeta { customer: Some("acme"), ..DidMeta::default() }).unwrap();
        let route = DidRoute::new(SetId(1), Some(7), acme).unwrap();
        let blocks = Blocks::new_with_meta(
            [(n("+1555"), route)],
            [(n("+15551230000"), n("+15551230009"), r(2))],
            meta,
        )
        .unwrap();
        let hit = blocks.find(n("+15559990000")).unwrap();
        assert_eq!((hit.route.max_calls(), hit.prefix_len), (Some(7), Some(4)));
        blocks.with_meta(hit.route.meta(), |m| assert_eq!(m.customer, Some("acme")));
        let range = blocks.find(n("+15551230005")).unwrap();
        assert_eq!((range.route.max_calls(), range.prefix_len, range.id), (None, None, BlockId(1)));
        blocks.with_meta(range.route.meta(), |m| assert_eq!(m, DidMeta::default()));
    }

    #[test]
    fn duplicates_overlaps_and_bad_ranges_are_refused() {
        assert_eq!(
            Blocks::new([(n("+1555"), r(1)), (n("+1555"), r(2))], []).unwrap_err(),
            BlockError::DuplicatePrefix(n("+1555"))
        );
        let overlap =
            [(n("+15550000000"), n("+15550000100"), r(1)), (n("+15550000100"), n("+15550000200"), r(2))];
        assert!(matches!(Blocks::new([], overlap), Err(BlockError::Overlap(..))));
        assert!(matches!(
            Blocks::new([], [(n("+15550000100"), n("+15550000000"), r(1))]),
            Err(BlockError::BadRange(..))
        ));
        assert!(matches!(
            Blocks::new([], [(n("+1555000000"), n("+15550000000"), r(1))]),
            Err(BlockError::BadRange(..))
        ));
        // Adjacent ranges do not overlap.
        let adjacent =
            [(n("+15550000101"), n("+15550000200"), r(2)), (n("+15550000000"), n("+15550000100"), r(1))];
        let blocks = Blocks::new([], adjacent).unwrap();
        assert_eq!(blocks.lookup(n("+15550000100")), Some(BlockMatch::Range(r(1))));
        assert_eq!(blocks.lookup(n("+15550000101")), Some(BlockMatch::Range(r(2))));
        assert!(Blocks::default().is_empty());
    }
}
