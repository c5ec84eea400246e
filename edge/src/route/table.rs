//! The exact-DID table: a sharded hash map (`dashmap` with `ahash`) from the E.164 key to a
//! packed 8-byte route, beside the interned metadata.
//!
//! One entry is 16 bytes (key `u64`, route `u64`) plus one control byte; at ten million DIDs
//! the buckets, rounded up to powers of two per shard, cost about 28 bytes per DID
//! ([`DidTable::memory`] measures it). Big shard allocations are advised to transparent huge
//! pages (`MADV_HUGEPAGE`) before they are filled: a random lookup then misses the TLB far
//! less often.
//!
//! Concurrency: a lookup read-locks one of [`DID_SHARDS`] shards for the duration of one probe;
//! a single upsert or delete write-locks one shard for one insertion. A shard that outgrows its
//! capacity rehashes under its write lock (1/64 of the table); tables built by
//! [`DidTable::with_capacity`] have room for the numbers they were sized for, and a whole new
//! table is built aside and swapped in by the router.

use std::sync::{PoisonError, RwLock};

use ahash::RandomState;
use dashmap::DashMap;

use super::e164::E164;
use super::meta::{DidMeta, MetaFull, MetaId, MetaStore};
use super::targets::SetId;
use control::config::MAX_DID_CALLS;

/// Shards of the exact map: a power of two; more shards mean less contention and a smaller
/// rehash pause (each shard holds 1/64 of the numbers).
pub const DID_SHARDS: usize = 64;
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
    /// Bytes of the exact map (bucket arrays, control bytes, shard headers).
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

/// The exact DIDs and their metadata.
#[derive(Debug)]
pub struct DidTable {
    exact: DashMap<u64, DidRoute, RandomState>,
    meta: RwLock<MetaStore>,
}

impl Default for DidTable {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl DidTable {
    /// An empty table with room for `capacity` DIDs before any shard rehashes.
    pub fn with_capacity(capacity: usize) -> Self {
        // Shards fill unevenly by a few per mille; the margin avoids a rehash of the last ones.
        let capacity = capacity + capacity / 64;
        let exact =
            DashMap::with_capacity_and_hasher_and_shard_amount(capacity, RandomState::new(), DID_SHARDS);
        for shard in exact.shards() {
            let (ptr, layout) = shard.read().allocation_info();
            advise_huge_pages(ptr.as_ptr(), layout.size());
        }
        Self { exact, meta: RwLock::new(MetaStore::default()) }
    }

    /// The route of an exact DID. Read-locks one shard for one probe.
    #[inline]
    pub fn get(&self, key: u64) -> Option<DidRoute> {
        self.exact.get(&key).map(|r| *r)
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
        Ok(self.exact.insert(number.key(), route))
    }

    /// Adds a DID that must not be there yet (bulk import, building aside).
    pub fn insert_new(
        &mut self,
        number: E164,
        set: SetId,
        max_calls: Option<u32>,
        meta: &DidMeta<'_>,
    ) -> Result<(), TableError> {
        if self.exact.contains_key(&number.key()) {
            return Err(TableError::Duplicate(number));
        }
        let id = self.meta.get_mut().unwrap_or_else(PoisonError::into_inner).intern(meta)?;
        let route = DidRoute::new(set, max_calls, id).ok_or(TableError::OutOfRange)?;
        self.exact.insert(number.key(), route);
        Ok(())
    }

    /// Removes a DID while lookups run; returns its route.
    pub fn remove(&self, number: E164) -> Option<DidRoute> {
        self.exact.remove(&number.key()).map(|(_, r)| r)
    }

    /// Exact DIDs stored.
    pub fn len(&self) -> usize {
        self.exact.len()
    }

    /// True when no exact DID is stored.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty()
    }

    /// Calls `f` with the metadata of a route (off the hot path: read-locks the store).
    pub fn with_meta<R>(&self, id: MetaId, f: impl FnOnce(DidMeta<'_>) -> R) -> R {
        f(self.meta.read().unwrap_or_else(PoisonError::into_inner).get(id))
    }

    /// Measures the memory held.
    pub fn memory(&self) -> MemoryReport {
        let exact_bytes: usize =
            self.exact.shards().iter().map(|s| s.read().allocation_info().1.size() + size_of_val(s)).sum();
        let meta = self.meta.read().unwrap_or_else(PoisonError::into_inner);
        MemoryReport {
            dids: self.exact.len(),
            exact_bytes,
            meta_bytes: meta.bytes(),
            meta_records: meta.records(),
        }
    }
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
        let table = DidTable::with_capacity(16);
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
    }

    #[test]
    fn metadata_is_interned() {
        let mut table = DidTable::with_capacity(100_000);
        for i in 0..100_000u64 {
            let customer = format!("customer-{}", i % 100);
            let meta = DidMeta { customer: Some(&customer), group: Some("g"), ..DidMeta::default() };
            table.insert_new(n(4420_0000_0000 + i), SetId(0), None, &meta).unwrap();
        }
        assert_eq!(
            table.insert_new(n(4420_0000_0000), SetId(0), None, &DidMeta::default()),
            Err(TableError::Duplicate(n(4420_0000_0000)))
        );
        let m = table.memory();
        assert_eq!(m.dids, 100_000);
        assert_eq!(m.meta_records, 101, "100 customers and the empty record");
        assert!(m.bytes_per_did() < 64.0, "{m:?}");
    }

    #[test]
    fn upserts_and_deletes_apply_while_lookups_run() {
        let table = std::sync::Arc::new(DidTable::with_capacity(10_000));
        for i in 0..10_000u64 {
            table.upsert(n(3300_0000_0000 + i), SetId(0), None, &DidMeta::default()).unwrap();
        }
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
}
