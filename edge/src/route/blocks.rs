//! Number blocks: prefixes (`+1555124` covers every number under it; the longest prefix wins)
//! and explicit inclusive ranges (`+15551240000`–`+15551249999`).
//!
//! Layout, chosen for a set consulted on every call the exact table misses, so that a miss costs
//! two binary searches over plain sorted words (a few instructions a step, no hashing, no branch
//! the processor must guess):
//! - prefixes: every number is padded with zeros to 15 digits and keyed by that value, then its
//!   digit count ([`padded_key`]). A prefix then covers one interval of keys, and two prefixes'
//!   intervals are either nested (one extends the other) or disjoint, so together they cut the
//!   key space into segments, each covered by its longest prefix or by none. A lookup finds the
//!   segment a number falls in.
//! - ranges: a sorted vector of non-overlapping intervals. A range holds numbers of one length
//!   (first and last have the same digit count), so the sort key is the digit count above the
//!   value: `+1555…` of 11 digits never falls in a range of 12-digit numbers.
//! - before either search, two bits per leading-digit cell (the first [`CELL_DIGITS`] digits
//!   of the padded number, 2 × 12.5 KiB) say whether any range, any prefix, may hold numbers
//!   there. A number no block is near (most misses) costs a bit test instead of two searches,
//!   and a prefix hit skips the range search where no range shares its cell.
//!
//! A block carries a route like an exact DID's (target set, optional concurrent-call limit,
//! metadata record) and the metadata records live in the blocks' own interned store. Each block
//! has a [`BlockId`] (its position in the list given), and [`BlockId::limit_key`] names the
//! counter its calls are held to: one per block, not one per number.
//!
//! A `Blocks` is immutable; the router swaps a whole new one in (`arc-swap`).

use control::config::E164_MAX_DIGITS;

use super::e164::E164;
use super::meta::{DidMeta, MetaId, MetaStore};
use super::table::DidRoute;

/// Most number blocks (prefixes and ranges together) one configuration may hold.
pub const MAX_BLOCKS: usize = 1_000_000;
/// Bits of the sort key that hold the value (10^15 < 2^50).
const VALUE_BITS: u32 = 50;
/// Bits of a padded key that hold the digit count (at most 15).
const PADDED_COUNT_BITS: u32 = 4;
/// Marks a block's call counter key: E.164 keys are below 2^50, so no number has this bit.
const BLOCK_LIMIT_KEY: u64 = 1 << 63;
/// A prefix segment that no prefix covers.
const NO_PREFIX: u32 = u32::MAX;
/// Leading digits of the padded number that name its cell.
const CELL_DIGITS: u32 = 5;
/// Cells: every value of the leading digits.
const CELLS: usize = 10usize.pow(CELL_DIGITS);
/// A padded number's cell is its value divided by this.
const CELL_DIVISOR: u64 = 10u64.pow(E164_MAX_DIGITS as u32 - CELL_DIGITS);

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

/// A range block; its first number's sort key is in [`Blocks::range_firsts`].
#[derive(Debug, Clone, Copy)]
struct Range {
    last: u64,
    route: DidRoute,
    id: BlockId,
}

/// A prefix block.
#[derive(Debug, Clone, Copy)]
struct Prefix {
    route: DidRoute,
    id: BlockId,
    digits: u8,
}

/// What matched in the blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockMatch {
    /// An explicit range.
    Range(DidRoute),
    /// The longest matching prefix, with its digit count.
    Prefix(DidRoute, u8),
}

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
    /// The prefix blocks, in the order given.
    prefixes: Vec<Prefix>,
    /// Where each prefix segment starts ([`padded_key`]s, sorted; the first is 0 when there
    /// are prefixes): a segment runs to the next one's start.
    segment_starts: SortedKeys,
    /// The prefix covering each segment (an index into `prefixes`), or [`NO_PREFIX`].
    segment_prefixes: Vec<u32>,
    /// The ranges' first numbers' [`sort_key`]s, sorted; the ranges do not overlap.
    range_firsts: SortedKeys,
    /// The ranges, in the order of `range_firsts`.
    ranges: Vec<Range>,
    /// The cells some range may hold numbers in.
    range_cells: Cells,
    /// The cells some prefix may hold numbers in.
    prefix_cells: Cells,
    /// The metadata records the routes name.
    meta: MetaStore,
}

/// Powers of ten, up to 10^15.
const POW10: [u64; 16] = {
    let mut p = [1u64; 16];
    let mut i = 1;
    while i < p.len() {
        p[i] = p[i - 1] * 10;
        i += 1;
    }
    p
};

/// 10^(15 − digits): what pads a number of `digits` digits to 15.
#[inline(always)]
fn padding(digits: u8) -> u64 {
    // `digits` is 1 to 15, so the index is 0 to 14; the mask only lets the compiler see that
    // it is in bounds.
    POW10[usize::from((E164_MAX_DIGITS as u8).wrapping_sub(digits)) & (POW10.len() - 1)]
}

/// A number's value padded with zeros to 15 digits.
#[inline(always)]
fn padded(n: E164) -> u64 {
    n.key() * padding(n.digits())
}

/// A number's key among the prefix segments: its [`padded`] value, then its digit count. A
/// number sorts right after the shorter numbers it extends with zeros.
#[inline(always)]
fn padded_key(n: E164) -> u64 {
    padded(n) << PADDED_COUNT_BITS | u64::from(n.digits())
}

/// One bit per leading-digit cell: set where some block may hold numbers.
#[derive(Debug, Default)]
struct Cells(Box<[u64]>);

impl Cells {
    /// The cells of padded values `first..=last` for each pair; empty when there are none.
    fn covering(spans: impl Iterator<Item = (u64, u64)>) -> Self {
        let mut cells: Vec<(usize, usize)> = spans
            .map(|(first, last)| ((first / CELL_DIVISOR) as usize, (last / CELL_DIVISOR) as usize))
            .collect();
        if cells.is_empty() {
            return Self::default();
        }
        // Merged first, so that many blocks over wide spans set each bit once.
        cells.sort_unstable();
        let mut bits = vec![0u64; CELLS.div_ceil(64)];
        let mut next = 0usize;
        for (first, last) in cells {
            for cell in first.max(next)..=last {
                if let Some(word) = bits.get_mut(cell / 64) {
                    *word |= 1 << (cell % 64);
                }
            }
            next = next.max(last + 1);
        }
        Self(bits.into_boxed_slice())
    }

    /// Whether some block may hold numbers in `cell`.
    #[inline(always)]
    fn may_hold(&self, cell: usize) -> bool {
        self.0.get(cell / 64).is_some_and(|w| w >> (cell % 64) & 1 != 0)
    }
}

/// The keys a prefix covers, both ends included: every number of at least its length that
/// begins with its digits. A shorter number that pads to the same value sorts before the
/// first (its digit count is lower), and every other number pads to a value outside.
fn prefix_keys(p: E164) -> (u64, u64) {
    let first = padded_key(p);
    let last = (p.key() * padding(p.digits()) + padding(p.digits()) - 1) << PADDED_COUNT_BITS
        | E164_MAX_DIGITS as u64;
    (first, last)
}

fn sort_key(n: E164) -> u64 {
    u64::from(n.digits()) << VALUE_BITS | n.key()
}

/// Sorted keys, padded with `u64::MAX` (above every key) to a power of two so that a binary
/// search halves an exact power of two: each step is a load, a compare and a conditional move.
#[derive(Debug, Default)]
struct SortedKeys(Box<[u64]>);

impl SortedKeys {
    /// `keys` must be sorted.
    fn new(mut keys: Vec<u64>) -> Self {
        if !keys.is_empty() {
            keys.resize(keys.len().next_power_of_two(), u64::MAX);
        }
        Self(keys.into_boxed_slice())
    }

    /// The position of the last key at most `key` (keys are below `u64::MAX`): a binary
    /// search whose steps choose by a conditional move, not a branch (which way a random
    /// number goes cannot be predicted, and a mispredicted branch costs more than the step).
    #[inline(always)]
    fn last_at_or_below(&self, key: u64) -> Option<usize> {
        let keys = &*self.0;
        let first = *keys.first()?;
        let mut base = 0usize;
        let mut half = keys.len() / 2;
        while half > 0 {
            // SAFETY: the length is a power of two, and `base + 2 * half <= keys.len()` holds
            // before every step (at the start, base is 0 and 2 * half the length; a step adds
            // at most `half` to `base` and halves `half`), so `base + half` is in bounds.
            let k = unsafe { *keys.get_unchecked(base + half) };
            base = std::hint::select_unpredictable(k <= key, base + half, base);
            half /= 2;
        }
        // `base` stays 0 only if every key but perhaps the first is above `key`; the padding
        // is above every key, so `base` is never a padded position.
        (base > 0 || first <= key).then_some(base)
    }
}

/// The prefix segments being cut: where each starts, and the prefix covering it.
struct Segments {
    starts: Vec<u64>,
    covers: Vec<u32>,
    /// The intervals open around the current key (last key, prefix), innermost last: each
    /// lies inside the one before it.
    open: Vec<(u64, u32)>,
}

impl Segments {
    /// Cuts the key space by the prefixes' nested or disjoint intervals, each segment naming
    /// its longest covering prefix (an index into `prefixes`); refuses a prefix given twice.
    fn cut(prefixes: &[(E164, Prefix)]) -> Result<(Vec<u64>, Vec<u32>), BlockError> {
        let mut intervals: Vec<(u64, u64, u32)> = (0u32..)
            .zip(prefixes)
            .map(|(i, (p, _))| {
                let (first, last) = prefix_keys(*p);
                (first, last, i)
            })
            .collect();
        intervals.sort_unstable_by_key(|&(first, ..)| first);
        for pair in intervals.windows(2) {
            // Equal first keys: the same value and digit count.
            if let [(a, ..), (b, _, i)] = pair
                && a == b
                && let Some((p, _)) = prefixes.get(*i as usize)
            {
                return Err(BlockError::DuplicatePrefix(*p));
            }
        }
        let mut cuts = Self { starts: vec![0], covers: vec![NO_PREFIX], open: Vec::new() };
        for (first, last, i) in intervals {
            cuts.close_before(first);
            cuts.start(first, i);
            cuts.open.push((last, i));
        }
        cuts.close_before(u64::MAX);
        Ok((cuts.starts, cuts.covers))
    }

    /// Closes the open intervals that end before `at`; the key after each belongs to the one
    /// around it.
    fn close_before(&mut self, at: u64) {
        while let Some(&(last, _)) = self.open.last()
            && last < at
        {
            self.open.pop();
            let around = self.open.last().map_or(NO_PREFIX, |&(_, cover)| cover);
            self.start(last + 1, around);
        }
    }

    /// Starts a segment at `at`, covered by `cover`. Intervals that end together start the
    /// same key several times: the last call (the outermost still open) names it.
    fn start(&mut self, at: u64, cover: u32) {
        if self.starts.last() == Some(&at) {
            if let Some(last) = self.covers.last_mut() {
                *last = cover;
            }
        } else {
            self.starts.push(at);
            self.covers.push(cover);
        }
    }
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
        let mut given = Vec::new();
        for (p, route) in prefixes {
            if given.len() == MAX_BLOCKS {
                return Err(BlockError::TooMany);
            }
            let id = BlockId(given.len() as u32);
            given.push((p, Prefix { route, id, digits: p.digits() }));
        }
        let (segment_starts, segment_prefixes) = Segments::cut(&given)?;
        let mut list = Vec::new();
        for (count, (first, last, route)) in (given.len()..).zip(ranges) {
            if count == MAX_BLOCKS {
                return Err(BlockError::TooMany);
            }
            if first.digits() != last.digits() || first > last {
                return Err(BlockError::BadRange(first, last));
            }
            let id = BlockId(count as u32);
            list.push((first, last, sort_key(first), Range { last: sort_key(last), route, id }));
        }
        list.sort_by_key(|&(_, _, first, _)| first);
        for pair in list.windows(2) {
            if let [(_, _, _, prev), (first, last, next_first, _)] = pair
                && *next_first <= prev.last
            {
                return Err(BlockError::Overlap(*first, *last));
            }
        }
        let prefix_cells = Cells::covering(given.iter().map(|(p, _)| {
            let first = padded(*p);
            (first, first + padding(p.digits()) - 1)
        }));
        let range_cells =
            Cells::covering(list.iter().map(|(first, last, ..)| (padded(*first), padded(*last))));
        Ok(Self {
            prefixes: given.into_iter().map(|(_, p)| p).collect(),
            segment_starts: SortedKeys::new(segment_starts),
            segment_prefixes,
            range_firsts: SortedKeys::new(list.iter().map(|&(_, _, first, _)| first).collect()),
            ranges: list.into_iter().map(|(.., r)| r).collect(),
            range_cells,
            prefix_cells,
            meta,
        })
    }

    /// The block a number falls in: a range before a prefix, the longest prefix first.
    #[inline]
    pub fn lookup(&self, n: E164) -> Option<BlockMatch> {
        self.find(n).map(|hit| match hit.prefix_len {
            None => BlockMatch::Range(hit.route),
            Some(len) => BlockMatch::Prefix(hit.route, len),
        })
    }

    /// As [`Blocks::lookup`], naming the block (whose id keys its call counter). Inlined into
    /// the router's lookup: a call would return the hit through memory.
    #[inline(always)]
    pub fn find(&self, n: E164) -> Option<BlockHit> {
        // Below CELLS: a padded value is below 10^15.
        let cell = (padded(n) / CELL_DIVISOR) as usize;
        if self.range_cells.may_hold(cell)
            && let Some(r) = self.range(n)
        {
            return Some(BlockHit { id: r.id, route: r.route, prefix_len: None });
        }
        if !self.prefix_cells.may_hold(cell) {
            return None;
        }
        self.prefix(n).map(|p| BlockHit { id: p.id, route: p.route, prefix_len: Some(p.digits) })
    }

    #[inline(always)]
    fn range(&self, n: E164) -> Option<&Range> {
        let key = sort_key(n);
        let r = self.ranges.get(self.range_firsts.last_at_or_below(key)?)?;
        (key <= r.last).then_some(r)
    }

    #[inline(always)]
    fn prefix(&self, n: E164) -> Option<&Prefix> {
        let segment = self.segment_starts.last_at_or_below(padded_key(n))?;
        // NO_PREFIX is beyond every index.
        self.prefixes.get(*self.segment_prefixes.get(segment)? as usize)
    }

    /// Calls `f` with the metadata record a block's route names.
    pub fn with_meta<R>(&self, id: MetaId, f: impl FnOnce(DidMeta<'_>) -> R) -> R {
        f(self.meta.get(id))
    }

    /// Prefixes and ranges held.
    pub fn len(&self) -> usize {
        self.ranges.len() + self.prefixes.len()
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

    /// Random blocks and numbers over a few digits (so that prefixes nest, ranges sit inside
    /// prefixes and numbers end in zeros), against the definition: a range of the number's
    /// length holding it, else the longest prefix of its digits.
    #[test]
    fn lookups_agree_with_the_definition() {
        struct Draw(u64);
        impl Draw {
            fn below(&mut self, n: u64) -> u64 {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                self.0 % n
            }
            /// `+1` then `len - 1` digits out of four.
            fn number(&mut self, len: u64) -> String {
                let mut digits = String::from("+1");
                for _ in 1..len {
                    digits.push(['0', '1', '5', '9'][self.below(4) as usize]);
                }
                digits
            }
        }
        let mut d = Draw(0x9E37_79B9_7F4A_7C15);
        for round in 0..200 {
            let mut prefixes: Vec<String> = (0..d.below(40))
                .map(|_| {
                    let len = 1 + d.below(9);
                    d.number(len)
                })
                .collect();
            prefixes.sort();
            prefixes.dedup();
            let mut ranges = Vec::new();
            for _ in 0..d.below(10) {
                let len = 4 + d.below(12);
                let (a, b) = (d.number(len), d.number(len));
                let (first, last) = if a <= b { (a, b) } else { (b, a) };
                let overlaps = ranges
                    .iter()
                    .any(|(f, l): &(String, String)| f.len() == first.len() && first <= *l && *f <= last);
                if !overlaps {
                    ranges.push((first, last));
                }
            }
            let blocks = Blocks::new(
                prefixes.iter().enumerate().map(|(i, p)| (n(p), r(i as u32))),
                ranges.iter().enumerate().map(|(i, (f, l))| (n(f), n(l), r(1000 + i as u32))),
            )
            .unwrap();
            for _ in 0..500 {
                let len = 1 + d.below(15);
                let q = d.number(len);
                let range = ranges.iter().position(|(f, l)| f.len() == q.len() && *f <= q && q <= *l);
                let prefix = (0..prefixes.len())
                    .filter(|&i| q.starts_with(&prefixes[i]))
                    .max_by_key(|&i| prefixes[i].len());
                let want = match (range, prefix) {
                    (Some(i), _) => Some(BlockMatch::Range(r(1000 + i as u32))),
                    (None, Some(i)) => Some(BlockMatch::Prefix(r(i as u32), prefixes[i].len() as u8 - 1)),
                    (None, None) => None,
                };
                assert_eq!(blocks.lookup(n(&q)), want, "round {round}: {q} in {prefixes:?} {ranges:?}");
            }
        }
    }

    #[test]
    fn a_prefix_covers_longer_numbers_only() {
        let blocks =
            Blocks::new([(n("+15550"), r(1)), (n("+1555"), r(2)), (n("+155500"), r(3))], []).unwrap();
        let cases = [
            ("+155", None),
            ("+1555", Some(BlockMatch::Prefix(r(2), 4))),
            ("+15550", Some(BlockMatch::Prefix(r(1), 5))),
            ("+155500", Some(BlockMatch::Prefix(r(3), 6))),
            ("+155500000000000", Some(BlockMatch::Prefix(r(3), 6))),
            ("+155501", Some(BlockMatch::Prefix(r(1), 5))),
            ("+155599999999999", Some(BlockMatch::Prefix(r(2), 4))),
            ("+155600000000000", None),
            ("+155499999999999", None),
        ];
        for (number, want) in cases {
            assert_eq!(blocks.lookup(n(number)), want, "{number}");
        }
        // Three prefixes nest: at most one segment starts per interval end, plus the first.
        assert!(blocks.segment_prefixes.len() <= 2 * 3 + 1);
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
