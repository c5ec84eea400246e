//! The exact-DID table: a sharded hash map (`dashmap` with `ahash`) from the E.164 key to a
//! packed 8-byte route, beside the interned metadata.
//!
//! One entry is 16 bytes (key `u64`, route `u64`) plus one control byte; at ten million DIDs
//! the buckets, rounded up to powers of two per shard, cost about 28 bytes per DID
//! ([`DidTable::memory`] measures it). Big shard allocations are advised to transparent huge
//! pages (`MADV_HUGEPAGE`) before they are filled: a random lookup then misses the TLB far
//! less often.
//!
//! Two layers, so that lookups take no lock in the common case:
//! - the base, filled by a [`DidTableBuilder`] (configuration, bulk import) and then frozen into
//!   a `dashmap` read-only view: lookups read it without any lock or atomic operation;
//! - the overlay, a `dashmap` holding the single upserts and deletes made while calls flow (a
//!   delete of a base number is a tombstone). Lookups consult it only once it has been written
//!   to, read-locking one of its [`DID_SHARDS`] shards for one probe; a writer holds that lock
//!   for one insertion.
//!
//! [`DidTable::compact`] folds the overlay into a new base, built aside; the router swaps the
//! result in atomically, as it does a bulk import.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{PoisonError, RwLock};

use ahash::RandomState;
use dashmap::mapref::entry::Entry;
use dashmap::{DashMap, ReadOnlyView};

use super::e164::E164;
use super::meta::{DidMeta, MetaFull, MetaId, MetaStore};
use super::targets::SetId;
use control::config::MAX_DID_CALLS;

/// Shards of the overlay (live upserts and deletes): a power of two; more shards mean less
/// contention between writers and readers, and a smaller rehash pause (each holds 1/64).
pub const DID_SHARDS: usize = 64;
/// Shards of the frozen base: it is never written after it is built, so shards buy it nothing
/// but smaller allocations; four keep each allocation big enough (9 MB at one million DIDs,
/// 71 MB at ten million) to be backed mostly by whole 2 MiB huge pages.
pub const BASE_SHARDS: usize = 4;
/// Size of a transparent huge page, in bytes.
const HUGE_PAGE_BYTES: usize = 2 << 20;
/// Size of a base page, in bytes.
const PAGE_BYTES: usize = 4096;

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

/// Fills the base of a new table (configuration, bulk import), aside from the live one.
#[derive(Debug)]
pub struct DidTableBuilder {
    exact: Map<DidRoute>,
    meta: MetaStore,
}

impl DidTableBuilder {
    /// An empty builder with room for `capacity` DIDs before any shard rehashes.
    pub fn with_capacity(capacity: usize) -> Self {
        Self { exact: sized_map(capacity), meta: MetaStore::default() }
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
        match self.exact.entry(number.key()) {
            Entry::Occupied(_) => Err(TableError::Duplicate(number)),
            Entry::Vacant(v) => {
                v.insert(route);
                Ok(())
            }
        }
    }

    /// DIDs added so far.
    pub fn len(&self) -> usize {
        self.exact.len()
    }

    /// True when no DID was added.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty()
    }

    /// Freezes the base; the table takes upserts and deletes in its overlay from now on.
    pub fn build(self) -> DidTable {
        DidTable {
            base: self.exact.into_read_only(),
            overlay: DashMap::with_hasher_and_shard_amount(RandomState::new(), DID_SHARDS),
            overlay_used: AtomicBool::new(false),
            meta: RwLock::new(self.meta),
        }
    }
}

/// The exact DIDs and their metadata: a frozen base and a live overlay.
#[derive(Debug)]
pub struct DidTable {
    base: ReadOnlyView<u64, DidRoute, RandomState>,
    /// Upserts (`Some`) and deletes (`None`) since the base was built.
    overlay: Map<Option<DidRoute>>,
    /// Set once the overlay has been written to; until then lookups skip it.
    overlay_used: AtomicBool,
    meta: RwLock<MetaStore>,
}

impl Default for DidTable {
    fn default() -> Self {
        DidTableBuilder::with_capacity(0).build()
    }
}

impl DidTable {
    /// The route of an exact DID. Lock-free unless single upserts or deletes have been made
    /// since the base was built; then one overlay shard is read-locked for one probe.
    #[inline]
    pub fn get(&self, key: u64) -> Option<DidRoute> {
        if self.overlay_used.load(Ordering::Relaxed)
            && let Some(change) = self.overlay.get(&key)
        {
            return *change;
        }
        self.base.get(&key).copied()
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
        self.overlay_used.store(true, Ordering::Release);
        match previous {
            Some(change) => change,
            None => self.base.get(&key).copied(),
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
            if !self.overlay.contains_key(key) {
                builder.exact.insert(*key, *route);
            }
        }
        for change in self.overlay.iter() {
            if let Some(route) = *change.value() {
                builder.exact.insert(*change.key(), route);
            }
        }
        builder.meta = self.meta.read().unwrap_or_else(PoisonError::into_inner).clone();
        builder.build()
    }

    /// Exact DIDs stored.
    pub fn len(&self) -> usize {
        let mut len = self.base.len();
        for change in self.overlay.iter() {
            match (self.base.contains_key(change.key()), change.value().is_some()) {
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
        let base: usize =
            self.base.shards().iter().map(|s| s.read().allocation_info().1.size() + size_of_val(s)).sum();
        let overlay: usize =
            self.overlay.shards().iter().map(|s| s.read().allocation_info().1.size() + size_of_val(s)).sum();
        let meta = self.meta.read().unwrap_or_else(PoisonError::into_inner);
        MemoryReport {
            dids: self.len(),
            exact_bytes: base + overlay,
            meta_bytes: meta.bytes(),
            meta_records: meta.records(),
        }
    }
}

/// A map with room for `capacity` entries, its big shard allocations advised to huge pages.
fn sized_map<V>(capacity: usize) -> Map<V> {
    // Shards fill unevenly by a few per mille; the margin avoids a rehash of the last ones.
    let capacity = capacity + capacity / 64;
    let map = DashMap::with_capacity_and_hasher_and_shard_amount(capacity, RandomState::new(), BASE_SHARDS);
    for shard in map.shards() {
        let (ptr, layout) = shard.read().allocation_info();
        advise_huge_pages(ptr.as_ptr(), layout.size());
    }
    map
}

/// Advises the whole 4 KiB pages of an allocation to transparent huge pages (THP runs in
/// `madvise` mode on our machines). Advice only: failure changes nothing but speed.
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
