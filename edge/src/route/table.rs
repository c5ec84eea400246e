//! The exact-DID table: an open-addressing hash table of 64-byte buckets (one cache line, four
//! 16-byte slots: the E.164 key and the packed 8-byte route), beside the interned metadata.
//!
//! Lookup cost is what this layout is for. At ten million DIDs the table does not fit in any
//! cache, so a lookup costs its dependent memory accesses: here one, the bucket. Its position is
//! computed from the key (a multiply-shift hash, then a multiply-high onto the bucket count; no
//! SipHash, no control bytes read first), and the four slots are compared without branches. A
//! bucket that overflowed into the next one says so (a flag bit in its first key), so a miss
//! stops at its home bucket unless that bucket overflowed. The buckets are sized for a load of
//! [`TARGET_LOAD_PERCENT`] and advised to transparent huge pages (`MADV_HUGEPAGE`) before they
//! are touched, so a lookup rarely walks the page tables either.
//!
//! Two layers, so that lookups take no lock in the common case:
//! - the base, filled by a [`DidTableBuilder`] (configuration, bulk import) and then frozen:
//!   lookups read it without any lock or atomic operation;
//! - the overlay, a `dashmap` holding the single upserts and deletes made while calls flow (a
//!   delete of a base number is a tombstone), announced by a bit in a small filter
//!   ([`OVERLAY_FILTER_BITS`] bits, 8 KiB: it stays in the L1 cache). A lookup reads the key's
//!   filter bit and probes the overlay (read-locking one of its [`DID_SHARDS`] shards) only when
//!   the bit is set, so a few live changes cost the other numbers nothing.
//!
//! [`DidTable::compact`] folds the overlay into a new base, built aside; the router swaps the
//! result in atomically, as it does a bulk import.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock};

use ahash::RandomState;
use dashmap::DashMap;

use super::e164::E164;
use super::meta::{DidMeta, MetaFull, MetaId, MetaStore};
use super::targets::SetId;
use control::config::MAX_DID_CALLS;

/// Shards of the overlay (live upserts and deletes): a power of two; more shards mean less
/// contention between writers and readers, and a smaller rehash pause (each holds 1/64).
pub const DID_SHARDS: usize = 64;
/// Slots per bucket: four 16-byte slots fill one 64-byte cache line.
pub const BUCKET_SLOTS: usize = 4;
/// Load the base is sized for, in percent of its slots. At 50 % about one bucket in six
/// overflows (a miss there reads a second, adjacent cache line); the table costs 32 bytes per
/// DID.
pub const TARGET_LOAD_PERCENT: usize = 50;
/// Load at which a builder that was given too small a capacity doubles its buckets, in percent.
const MAX_LOAD_PERCENT: usize = 85;
/// Bits of the overlay filter (a power of two): 65,536 bits, 8 KiB.
pub const OVERLAY_FILTER_BITS: usize = 1 << 16;
/// Size of a transparent huge page, in bytes.
const HUGE_PAGE_BYTES: usize = 2 << 20;
/// Size of a base page, in bytes.
const PAGE_BYTES: usize = 4096;

/// Bits of a slot's key word that hold the E.164 key (10^15 < 2^50).
const KEY_BITS: u32 = 50;
const KEY_MASK: u64 = (1 << KEY_BITS) - 1;
/// Flag in the first key word of a bucket: a key whose home is this bucket, or an earlier one,
/// is stored further on (the probe must go on to the next bucket).
const OVERFLOWED: u64 = 1 << 63;
/// Multiplier of the key hash (2^64 / golden ratio, odd): its high bits mix every key bit.
const HASH_MULTIPLIER: u64 = 0x9E37_79B9_7F4A_7C15;

const SET_BITS: u32 = 20;
const CALLS_BITS: u32 = 20;
const META_BITS: u32 = 24;
/// Most target sets a route can name (the route packs the set id into 20 bits).
pub const MAX_TARGET_SETS: usize = 1 << SET_BITS;

/// Where a DID goes, packed into 8 bytes: target set (20 bits), concurrent-call limit (20 bits,
/// 0 = none), metadata record (24 bits).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct DidRoute(u64);

impl DidRoute {
    /// Packs a route; `None` when an id or the limit exceeds its field.
    pub fn new(set: SetId, max_calls: Option<u32>, meta: MetaId) -> Option<Self> {
        let calls = max_calls.unwrap_or(0);
        if set.0 as usize >= MAX_TARGET_SETS || calls > MAX_DID_CALLS || meta.0 >= (1 << META_BITS) {
            return None;
        }
        Some(Self(
            u64::from(set.0) | u64::from(calls) << SET_BITS | u64::from(meta.0) << (SET_BITS + CALLS_BITS),
        ))
    }

    /// The target set.
    pub fn set(self) -> SetId {
        SetId((self.0 & ((1 << SET_BITS) - 1)) as u32)
    }

    /// The per-DID concurrent-call limit, if any.
    pub fn max_calls(self) -> Option<u32> {
        let calls = ((self.0 >> SET_BITS) & ((1 << CALLS_BITS) - 1)) as u32;
        (calls != 0).then_some(calls)
    }

    /// The metadata record.
    pub fn meta(self) -> MetaId {
        MetaId((self.0 >> (SET_BITS + CALLS_BITS)) as u32)
    }
}

impl std::fmt::Debug for DidRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DidRoute")
            .field("set", &self.set().0)
            .field("max_calls", &self.max_calls())
            .field("meta", &self.meta().0)
            .finish()
    }
}

/// Why a DID could not be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TableError {
    /// The metadata store is full.
    #[error(transparent)]
    MetaFull(#[from] MetaFull),
    /// A limit or id does not fit the packed route.
    #[error("max_calls must be 1..={MAX_DID_CALLS}")]
    OutOfRange,
    /// The number is already in the table (bulk import refuses duplicates).
    #[error("{0} is listed twice")]
    Duplicate(E164),
}

/// Memory held by a table, measured from its allocations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryReport {
    /// Exact DIDs stored.
    pub dids: usize,
    /// Bytes of the exact maps (bucket arrays, control bytes, shard headers), base and overlay.
    pub exact_bytes: usize,
    /// Bytes of the interned metadata.
    pub meta_bytes: usize,
    /// Distinct metadata records.
    pub meta_records: usize,
}

impl MemoryReport {
    /// Bytes per exact DID, metadata included (0 for an empty table).
    pub fn bytes_per_did(&self) -> f64 {
        if self.dids == 0 { 0.0 } else { (self.exact_bytes + self.meta_bytes) as f64 / self.dids as f64 }
    }
}

type Map<V> = DashMap<u64, V, RandomState>;

/// One cache line: four keys (with the bucket's overflow flag in the first), then their routes.
/// An empty slot has key 0, which no E.164 number has.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(64))]
struct Bucket {
    keys: [u64; BUCKET_SLOTS],
    routes: [u64; BUCKET_SLOTS],
}

impl Bucket {
    /// The route stored under `key` (non-zero, at most [`KEY_BITS`] bits), compared without a
    /// branch per slot: which slot holds a key is random, and a mispredicted branch would stop
    /// the processor from starting the next lookup's memory access meanwhile.
    #[inline(always)]
    fn find(&self, key: u64) -> Option<DidRoute> {
        self.slot_of(key).and_then(|slot| self.routes.get(slot)).map(|&r| DidRoute(r))
    }

    /// The slot holding `key`: the four keys compared two at a time in SSE2 registers (part of
    /// every x86-64 processor), about half the instructions of four scalar compares. Only the
    /// first key word carries a flag.
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    #[inline(always)]
    fn slot_of(&self, key: u64) -> Option<usize> {
        use std::arch::x86_64::{
            __m128i, _mm_and_si128, _mm_castsi128_pd, _mm_cmpeq_epi32, _mm_movemask_pd, _mm_set_epi64x,
            _mm_set1_epi64x, _mm_shuffle_epi32,
        };
        let [k0, k1, k2, k3] = self.keys.map(|k| k as i64);
        // SAFETY: these intrinsics only need SSE2, which this code is compiled for (the cfg
        // above); they read no memory.
        let mask = unsafe {
            let want = _mm_set1_epi64x(key as i64);
            // Equal 64-bit lanes: both 32-bit halves equal (each and'ed with its neighbour).
            let equal = |keys: __m128i| {
                let halves = _mm_cmpeq_epi32(keys, want);
                _mm_castsi128_pd(_mm_and_si128(halves, _mm_shuffle_epi32::<0b1011_0001>(halves)))
            };
            let low = _mm_movemask_pd(equal(_mm_set_epi64x(k1, k0 & KEY_MASK as i64)));
            let high = _mm_movemask_pd(equal(_mm_set_epi64x(k3, k2)));
            low | high << 2
        };
        (mask != 0).then_some(mask.trailing_zeros() as usize)
    }

    /// The slot holding `key`, four scalar compares (a count, not `||`: the compiler turns an
    /// or of comparisons back into branches). Only the first key word carries a flag.
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    #[inline(always)]
    fn slot_of(&self, key: u64) -> Option<usize> {
        let mut hits = 0u64;
        let mut slot = 0usize;
        for (i, k) in self.keys.iter().enumerate() {
            let eq = if i == 0 { k & KEY_MASK == key } else { *k == key };
            hits += u64::from(eq);
            slot = std::hint::select_unpredictable(eq, i, slot);
        }
        (hits != 0).then_some(slot)
    }

    fn overflowed(&self) -> bool {
        self.keys[0] & OVERFLOWED != 0
    }
}

/// The frozen base: buckets, open addressing with linear probing over buckets.
#[derive(Debug)]
struct Slots {
    buckets: Vec<Bucket>,
    len: usize,
    /// Longest probe any stored key needs, in buckets after its home (bounds every lookup).
    max_probe: usize,
}

impl Slots {
    /// Buckets for `capacity` keys at [`TARGET_LOAD_PERCENT`], zeroed after the huge-page advice.
    fn with_capacity(capacity: usize) -> Self {
        let slots = (capacity * 100).div_ceil(TARGET_LOAD_PERCENT);
        let count = slots.div_ceil(BUCKET_SLOTS).max(1);
        let mut buckets: Vec<Bucket> = Vec::with_capacity(count);
        advise_huge_pages(buckets.as_mut_ptr().cast(), count * size_of::<Bucket>());
        buckets.resize(count, Bucket::default());
        Self { buckets, len: 0, max_probe: 0 }
    }

    /// The home bucket of a key: multiply-shift hash, then multiply-high onto the bucket count.
    #[inline(always)]
    fn home(&self, key: u64) -> usize {
        let hash = key.wrapping_mul(HASH_MULTIPLIER);
        ((u128::from(hash) * self.buckets.len() as u128) >> 64) as usize
    }

    /// Starts reading the home bucket of `key` into the cache (a hint: nothing waits for it).
    #[inline(always)]
    fn prefetch(&self, key: u64) {
        if let Some(bucket) = self.buckets.get(self.home(key)) {
            prefetch_read(bucket);
        }
    }

    #[inline(always)]
    fn next(&self, b: usize) -> usize {
        if b + 1 == self.buckets.len() { 0 } else { b + 1 }
    }

    /// The route of `key`: its home bucket inline, the buckets it overflowed into out of line
    /// (few keys live there, and a short inline path lets the next lookup start sooner).
    #[inline(always)]
    fn get(&self, key: u64) -> Option<DidRoute> {
        // 0 is the empty slot's key; a key above `KEY_MASK` matches no slot.
        if key == 0 {
            return None;
        }
        self.get_nonzero(key)
    }

    /// [`Slots::get`] of a key known not to be 0 (an E.164 number's).
    #[inline(always)]
    fn get_nonzero(&self, key: u64) -> Option<DidRoute> {
        let home = self.home(key);
        let bucket = self.buckets.get(home)?;
        if let Some(route) = bucket.find(key) {
            return Some(route);
        }
        if !bucket.overflowed() {
            return None;
        }
        self.get_overflowed(key, home)
    }

    /// The rest of a probe whose home bucket overflowed: the next buckets, up to `max_probe`.
    #[inline(never)]
    fn get_overflowed(&self, key: u64, home: usize) -> Option<DidRoute> {
        let mut b = home;
        for _ in 0..self.max_probe {
            b = self.next(b);
            let bucket = self.buckets.get(b)?;
            if let Some(route) = bucket.find(key) {
                return Some(route);
            }
            if !bucket.overflowed() {
                return None;
            }
        }
        None
    }

    /// Stores a key that is not there yet (`Err` with its route when it is). The caller keeps
    /// the load under 100 %.
    fn insert(&mut self, key: u64, route: DidRoute) -> Result<(), DidRoute> {
        debug_assert!(key != 0 && key <= KEY_MASK && self.len < self.buckets.len() * BUCKET_SLOTS);
        let mut b = self.home(key);
        for probe in 0..self.buckets.len() {
            if let Some(old) = self.buckets[b].find(key) {
                return Err(old);
            }
            let bucket = &mut self.buckets[b];
            if let Some(slot) = bucket.keys.iter().position(|k| k & KEY_MASK == 0) {
                bucket.keys[slot] |= key;
                bucket.routes[slot] = route.0;
                self.len += 1;
                self.max_probe = self.max_probe.max(probe);
                return Ok(());
            }
            bucket.keys[0] |= OVERFLOWED;
            b = self.next(b);
        }
        Err(route)
    }

    fn iter(&self) -> impl Iterator<Item = (u64, DidRoute)> + '_ {
        self.buckets.iter().flat_map(|b| {
            b.keys
                .iter()
                .zip(&b.routes)
                .filter(|(k, _)| *k & KEY_MASK != 0)
                .map(|(k, r)| (k & KEY_MASK, DidRoute(*r)))
        })
    }

    fn bytes(&self) -> usize {
        self.buckets.capacity() * size_of::<Bucket>()
    }
}

/// Fills the base of a new table (configuration, bulk import), aside from the live one.
#[derive(Debug)]
pub struct DidTableBuilder {
    exact: Slots,
    meta: MetaStore,
}

impl DidTableBuilder {
    /// An empty builder sized for `capacity` DIDs (it grows, by rehashing, if given more).
    pub fn with_capacity(capacity: usize) -> Self {
        Self { exact: Slots::with_capacity(capacity), meta: MetaStore::default() }
    }

    /// Adds a DID that must not be there yet.
    pub fn insert_new(
        &mut self,
        number: E164,
        set: SetId,
        max_calls: Option<u32>,
        meta: &DidMeta<'_>,
    ) -> Result<(), TableError> {
        let id = self.meta.intern(meta)?;
        let route = DidRoute::new(set, max_calls, id).ok_or(TableError::OutOfRange)?;
        self.insert(number.key(), route).map_err(|_| TableError::Duplicate(number))
    }

    fn insert(&mut self, key: u64, route: DidRoute) -> Result<(), DidRoute> {
        if (self.exact.len + 1) * 100 > self.exact.buckets.len() * BUCKET_SLOTS * MAX_LOAD_PERCENT {
            self.grow();
        }
        self.exact.insert(key, route)
    }

    /// Doubles the buckets and moves every key over (only when the capacity was too small).
    fn grow(&mut self) {
        let mut bigger =
            Slots::with_capacity(2 * self.exact.buckets.len() * BUCKET_SLOTS * TARGET_LOAD_PERCENT / 100);
        for (key, route) in self.exact.iter() {
            // Keys come from a table that held each once: no duplicate.
            let _ = bigger.insert(key, route);
        }
        self.exact = bigger;
    }

    /// DIDs added so far.
    pub fn len(&self) -> usize {
        self.exact.len
    }

    /// True when no DID was added.
    pub fn is_empty(&self) -> bool {
        self.exact.len == 0
    }

    /// Freezes the base; the table takes upserts and deletes in its overlay from now on.
    pub fn build(self) -> DidTable {
        DidTable {
            base: self.exact,
            filter: Box::new([const { AtomicU64::new(0) }; OVERLAY_FILTER_BITS / 64]),
            overlay: DashMap::with_hasher_and_shard_amount(RandomState::new(), DID_SHARDS),
            meta: RwLock::new(self.meta),
        }
    }
}

/// The exact DIDs and their metadata: a frozen base and a live overlay.
#[derive(Debug)]
pub struct DidTable {
    base: Slots,
    /// One bit per hash of the keys in the overlay: set before a lookup may need the overlay,
    /// never cleared (a compaction starts a new table with a clear filter).
    filter: Box<[AtomicU64; OVERLAY_FILTER_BITS / 64]>,
    /// Upserts (`Some`) and deletes (`None`) since the base was built.
    overlay: Map<Option<DidRoute>>,
    meta: RwLock<MetaStore>,
}

impl Default for DidTable {
    fn default() -> Self {
        DidTableBuilder::with_capacity(0).build()
    }
}

/// The filter word and bit of a key (the top bits of a multiply-shift hash).
#[inline(always)]
fn filter_bit(key: u64) -> (usize, u64) {
    let bit = (key.wrapping_mul(HASH_MULTIPLIER) >> (64 - OVERLAY_FILTER_BITS.trailing_zeros())) as usize;
    (bit / 64, 1 << (bit % 64))
}

impl DidTable {
    /// The route of an exact DID: one bucket read (rarely two), lock-free. A key with a live
    /// change (or sharing its filter bit with one) also probes the overlay, read-locking one
    /// shard for one probe.
    #[inline(always)]
    pub fn get(&self, key: u64) -> Option<DidRoute> {
        if let Some(change) = self.change_of(key) {
            return change;
        }
        self.base.get(key)
    }

    /// [`DidTable::get`] of a number: its key is never 0, which saves the check on a routed
    /// call's path.
    #[inline(always)]
    pub fn get_number(&self, number: E164) -> Option<DidRoute> {
        let key = number.key();
        if let Some(change) = self.change_of(key) {
            return change;
        }
        self.base.get_nonzero(key)
    }

    /// The overlay's change of `key`, read only when the key's filter bit is set.
    #[inline(always)]
    fn change_of(&self, key: u64) -> Option<Option<DidRoute>> {
        let (word, bit) = filter_bit(key);
        // `word` is below OVERLAY_FILTER_BITS / 64 (the top 16 bits of a hash, divided by 64):
        // `get` compiles to no check.
        if self.filter.get(word).is_some_and(|w| w.load(Ordering::Acquire) & bit != 0) {
            return self.overlay_get(key);
        }
        None
    }

    /// Starts reading the bucket [`DidTable::get`] will read for `key` into the cache, and
    /// returns at once: a caller with other work to do (or other lookups to start) overlaps
    /// the memory access with it. A hint; it changes no result.
    #[inline(always)]
    pub fn prefetch(&self, key: u64) {
        self.base.prefetch(key);
    }

    /// The live change of a key, if any (out of line: most lookups never get here).
    #[cold]
    #[inline(never)]
    fn overlay_get(&self, key: u64) -> Option<Option<DidRoute>> {
        self.overlay.get(&key).map(|change| *change)
    }

    /// Adds or replaces a DID while lookups run; returns the route it replaced.
    pub fn upsert(
        &self,
        number: E164,
        set: SetId,
        max_calls: Option<u32>,
        meta: &DidMeta<'_>,
    ) -> Result<Option<DidRoute>, TableError> {
        let id = self.meta.write().unwrap_or_else(PoisonError::into_inner).intern(meta)?;
        let route = DidRoute::new(set, max_calls, id).ok_or(TableError::OutOfRange)?;
        Ok(self.change(number.key(), Some(route)))
    }

    /// Removes a DID while lookups run; returns its route.
    pub fn remove(&self, number: E164) -> Option<DidRoute> {
        self.change(number.key(), None)
    }

    fn change(&self, key: u64, to: Option<DidRoute>) -> Option<DidRoute> {
        let previous = self.overlay.insert(key, to);
        // After the insertion: a lookup that sees the bit (Acquire) finds the change.
        let (word, bit) = filter_bit(key);
        if let Some(w) = self.filter.get(word) {
            w.fetch_or(bit, Ordering::Release);
        }
        match previous {
            Some(change) => change,
            None => self.base.get(key),
        }
    }

    /// Upserts and deletes held in the overlay (what [`DidTable::compact`] would fold in).
    pub fn overlay_len(&self) -> usize {
        self.overlay.len()
    }

    /// A new table with the overlay folded into its base, built aside (the caller swaps it in).
    /// Changes made to this table after the call are not in the result: the control plane
    /// serialises compaction with its own writes.
    pub fn compact(&self) -> DidTable {
        let mut builder = DidTableBuilder::with_capacity(self.len());
        for (key, route) in self.base.iter() {
            if !self.overlay.contains_key(&key) {
                // The base holds each key once.
                let _ = builder.insert(key, route);
            }
        }
        for change in self.overlay.iter() {
            if let Some(route) = *change.value() {
                // Overlay keys are unique, and not copied from the base above.
                let _ = builder.insert(*change.key(), route);
            }
        }
        builder.meta = self.meta.read().unwrap_or_else(PoisonError::into_inner).clone();
        builder.build()
    }

    /// Exact DIDs stored.
    pub fn len(&self) -> usize {
        let mut len = self.base.len;
        for change in self.overlay.iter() {
            match (self.base.get(*change.key()).is_some(), change.value().is_some()) {
                (false, true) => len += 1,
                (true, false) => len -= 1,
                _ => {}
            }
        }
        len
    }

    /// True when no exact DID is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `f` with the metadata of a route (off the hot path: read-locks the store).
    pub fn with_meta<R>(&self, id: MetaId, f: impl FnOnce(DidMeta<'_>) -> R) -> R {
        f(self.meta.read().unwrap_or_else(PoisonError::into_inner).get(id))
    }

    /// Measures the memory held.
    pub fn memory(&self) -> MemoryReport {
        let overlay: usize =
            self.overlay.shards().iter().map(|s| s.read().allocation_info().1.size() + size_of_val(s)).sum();
        let filter = self.filter.len() * size_of::<AtomicU64>();
        let meta = self.meta.read().unwrap_or_else(PoisonError::into_inner);
        MemoryReport {
            dids: self.len(),
            exact_bytes: self.base.bytes() + filter + overlay,
            meta_bytes: meta.bytes(),
            meta_records: meta.records(),
        }
    }
}

/// Asks the processor to start loading the cache line of `value` into every cache level, and
/// returns without waiting. Does nothing on processors we have no prefetch instruction for.
#[inline(always)]
fn prefetch_read<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint: it reads nothing architecturally and never faults, and the
    // pointer comes from a live reference anyway. SSE (which has the instruction) is part of
    // the x86_64 baseline.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(value).cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

/// Advises the whole 4 KiB pages of an allocation to transparent huge pages (THP runs in
/// `madvise` mode on our machines), before they are first touched. Advice only: failure changes
/// nothing but speed.
fn advise_huge_pages(ptr: *mut u8, len: usize) {
    if len < HUGE_PAGE_BYTES {
        return;
    }
    let start = (ptr as usize).next_multiple_of(PAGE_BYTES);
    let end = (ptr as usize + len) & !(PAGE_BYTES - 1);
    if end <= start {
        return;
    }
    // SAFETY: [start, end) lies inside one live allocation owned by the table (rounded inward to
    // whole pages); MADV_HUGEPAGE changes how those pages are backed, never their contents.
    let rc = unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
    if rc != 0 {
        tracing::debug!(len, error = %std::io::Error::last_os_error(), "MADV_HUGEPAGE refused");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(value: u64) -> E164 {
        E164::from_key(value).unwrap()
    }

    #[test]
    fn route_packing_round_trips_at_the_limits() {
        for (set, calls, meta) in
            [(0, None, 0), (1, Some(1), 1), (MAX_TARGET_SETS as u32 - 1, Some(MAX_DID_CALLS), (1 << 24) - 1)]
        {
            let r = DidRoute::new(SetId(set), calls, MetaId(meta)).unwrap();
            assert_eq!((r.set(), r.max_calls(), r.meta()), (SetId(set), calls, MetaId(meta)));
        }
        assert_eq!(DidRoute::new(SetId(MAX_TARGET_SETS as u32), None, MetaId(0)), None);
        assert_eq!(DidRoute::new(SetId(0), Some(MAX_DID_CALLS + 1), MetaId(0)), None);
        assert_eq!(DidRoute::new(SetId(0), None, MetaId(1 << 24)), None);
    }

    #[test]
    fn overflowing_buckets_and_growth_keep_every_key() {
        // Capacity 1 forces several doublings; scattered keys fill some buckets past four.
        let mut builder = DidTableBuilder::with_capacity(1);
        let mut keys: Vec<u64> =
            (1..=5_000u64).map(|i| 15_551_230_000 + (i * i * 7_919 + i * 104_729) % 1_000_000_000).collect();
        keys.sort_unstable();
        keys.dedup();
        keys.retain(|k| k % 2 == 0);
        for &k in &keys {
            builder.insert_new(n(k), SetId((k % 7) as u32), None, &DidMeta::default()).unwrap();
        }
        assert_eq!(
            builder.insert_new(n(keys[4_321]), SetId(0), None, &DidMeta::default()),
            Err(TableError::Duplicate(n(keys[4_321])))
        );
        let table = builder.build();
        assert!(table.base.max_probe > 0, "some bucket overflowed");
        for &k in &keys {
            assert_eq!(table.get(k).map(|r| r.set()), Some(SetId((k % 7) as u32)), "{k}");
            assert_eq!(table.get(k + 1), None, "{}", k + 1);
        }
        assert_eq!((table.get(0), table.get(u64::MAX), table.get(keys[0] | OVERFLOWED)), (None, None, None));
        assert_eq!(table.len(), keys.len());
    }

    #[test]
    fn upsert_remove_and_metadata() {
        let table = DidTable::default();
        let meta = DidMeta { customer: Some("acme"), tag: Some("crm-7"), ..DidMeta::default() };
        assert_eq!(table.upsert(n(15551230000), SetId(1), Some(5), &meta).unwrap(), None);
        let old = table.upsert(n(15551230000), SetId(2), None, &meta).unwrap().unwrap();
        assert_eq!((old.set(), old.max_calls()), (SetId(1), Some(5)));
        let now = table.get(15551230000).unwrap();
        assert_eq!(now.set(), SetId(2));
        table.with_meta(now.meta(), |m| assert_eq!(m, meta));
        assert_eq!(
            table.upsert(n(15551230001), SetId(0), Some(MAX_DID_CALLS + 1), &meta),
            Err(TableError::OutOfRange)
        );
        assert_eq!(table.remove(n(15551230000)), Some(now));
        assert_eq!(table.get(15551230000), None);
        assert!(table.is_empty());
        let mut builder = DidTableBuilder::with_capacity(1);
        builder.insert_new(n(15551230000), SetId(0), None, &meta).unwrap();
        assert_eq!(
            builder.insert_new(n(15551230000), SetId(0), None, &meta),
            Err(TableError::Duplicate(n(15551230000)))
        );
    }

    #[test]
    fn metadata_is_interned() {
        let mut table = DidTableBuilder::with_capacity(100_000);
        for i in 0..100_000u64 {
            let customer = format!("customer-{}", i % 100);
            let meta = DidMeta { customer: Some(&customer), group: Some("g"), ..DidMeta::default() };
            table.insert_new(n(4420_0000_0000 + i), SetId(0), None, &meta).unwrap();
        }
        assert_eq!(
            table.insert_new(n(4420_0000_0000), SetId(0), None, &DidMeta::default()),
            Err(TableError::Duplicate(n(4420_0000_0000)))
        );
        let m = table.build().memory();
        assert_eq!(m.dids, 100_000);
        assert_eq!(m.meta_records, 101, "100 customers and the empty record");
        assert!(m.bytes_per_did() < 64.0, "{m:?}");
    }

    #[test]
    fn upserts_and_deletes_apply_while_lookups_run() {
        let mut builder = DidTableBuilder::with_capacity(10_000);
        for i in 0..10_000u64 {
            builder.insert_new(n(3300_0000_0000 + i), SetId(0), None, &DidMeta::default()).unwrap();
        }
        let table = std::sync::Arc::new(builder.build());
        let reader = {
            let table = table.clone();
            std::thread::spawn(move || {
                for round in 0..200u64 {
                    for i in 0..10_000u64 {
                        // Stable numbers are always found, whatever the writer does.
                        assert!(table.get(3300_0000_0000 + i).is_some(), "round {round}");
                    }
                    // The churned number is either absent or routed to set 1, never torn.
                    if let Some(r) = table.get(3399_0000_0000) {
                        assert_eq!(r.set(), SetId(1));
                    }
                }
            })
        };
        for _ in 0..200 {
            table.upsert(n(3399_0000_0000), SetId(1), None, &DidMeta::default()).unwrap();
            table.remove(n(3399_0000_0000));
        }
        reader.join().unwrap();
    }

    #[test]
    fn overlay_changes_base_numbers_and_compacts() {
        let mut builder = DidTableBuilder::with_capacity(3);
        let meta = DidMeta { tag: Some("t"), ..DidMeta::default() };
        for i in 0..3 {
            builder.insert_new(n(15551230000 + i), SetId(0), None, &meta).unwrap();
        }
        let table = builder.build();
        assert_eq!(table.overlay_len(), 0);
        // Replace a base number, delete one, add one.
        let old = table.upsert(n(15551230000), SetId(1), Some(2), &meta).unwrap().unwrap();
        assert_eq!(old.set(), SetId(0));
        assert_eq!(table.remove(n(15551230001)).map(|r| r.set()), Some(SetId(0)));
        assert_eq!(table.remove(n(15551230001)), None);
        assert_eq!(table.upsert(n(15551239999), SetId(2), None, &meta).unwrap(), None);
        let check = |t: &DidTable| {
            assert_eq!(t.get(15551230000).map(|r| (r.set(), r.max_calls())), Some((SetId(1), Some(2))));
            assert_eq!(t.get(15551230001), None);
            assert_eq!(t.get(15551230002).map(|r| r.set()), Some(SetId(0)));
            assert_eq!(t.get(15551239999).map(|r| r.set()), Some(SetId(2)));
            assert_eq!(t.len(), 3);
            t.with_meta(t.get(15551239999).unwrap().meta(), |m| assert_eq!(m, meta));
        };
        check(&table);
        assert_eq!(table.overlay_len(), 3);
        let compacted = table.compact();
        assert_eq!(compacted.overlay_len(), 0);
        check(&compacted);
    }
}
