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
//! A `Blocks` is immutable; the router swaps a whole new one in (`arc-swap`).

use std::collections::HashMap;

use ahash::RandomState;

use super::e164::E164;
use super::table::DidRoute;

/// Most number blocks (prefixes and ranges together) one configuration may hold.
pub const MAX_BLOCKS: usize = 1_000_000;
/// Bits of the sort key that hold the value (10^15 < 2^50).
const VALUE_BITS: u32 = 50;

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
}

/// What matched in the blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockMatch {
    /// An explicit range.
    Range(DidRoute),
    /// The longest matching prefix, with its digit count.
    Prefix(DidRoute, u8),
}

/// Prefixes and ranges.
#[derive(Debug, Default)]
pub struct Blocks {
    /// (prefix length, prefix value → route), longest length first.
    prefixes: Vec<(u8, HashMap<u64, DidRoute, RandomState>)>,
    /// Sorted by `first`, non-overlapping.
    ranges: Vec<Range>,
}

fn sort_key(n: E164) -> u64 {
    u64::from(n.digits()) << VALUE_BITS | n.key()
}

impl Blocks {
    /// Builds from prefixes and ranges, refusing duplicates and overlaps.
    pub fn new(
        prefixes: impl IntoIterator<Item = (E164, DidRoute)>,
        ranges: impl IntoIterator<Item = (E164, E164, DidRoute)>,
    ) -> Result<Self, BlockError> {
        let mut by_len: HashMap<u8, HashMap<u64, DidRoute, RandomState>> = HashMap::new();
        let mut count = 0usize;
        for (p, route) in prefixes {
            count += 1;
            if count > MAX_BLOCKS {
                return Err(BlockError::TooMany);
            }
            if by_len.entry(p.digits()).or_default().insert(p.key(), route).is_some() {
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
            list.push((first, last, Range { first: sort_key(first), last: sort_key(last), route }));
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
        Ok(Self { prefixes, ranges: list.into_iter().map(|(_, _, r)| r).collect() })
    }

    /// The block a number falls in: a range before a prefix, the longest prefix first.
    #[inline]
    pub fn lookup(&self, n: E164) -> Option<BlockMatch> {
        if let Some(route) = self.range(n) {
            return Some(BlockMatch::Range(route));
        }
        self.prefix(n).map(|(route, len)| BlockMatch::Prefix(route, len))
    }

    fn range(&self, n: E164) -> Option<DidRoute> {
        let key = sort_key(n);
        let i = self.ranges.partition_point(|r| r.first <= key);
        let r = self.ranges.get(i.checked_sub(1)?)?;
        (key <= r.last).then_some(r.route)
    }

    fn prefix(&self, n: E164) -> Option<(DidRoute, u8)> {
        for (len, map) in &self.prefixes {
            let Some(drop) = n.digits().checked_sub(*len) else { continue };
            if let Some(&route) = map.get(&(n.key() / 10u64.pow(u32::from(drop)))) {
                return Some((route, *len));
            }
        }
        None
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
