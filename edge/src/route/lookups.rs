//! How DID lookups ended: exact hit, range, prefix or miss.
//!
//! A worker's [`RouteReader`](super::RouteReader) counts into counters of its own
//! ([`ReaderLookups`]): only it writes them, with a plain load and store. A locked
//! read-modify-write per lookup (an atomic `fetch_add` on a shared line) costs more than its
//! own cycles: on x86 it is a full barrier, so the next lookup's memory access cannot start
//! before it completes, and at ten million DIDs that access is a DRAM miss. Calls through the
//! shared [`Router`](super::Router) (any thread) add to shared counters atomically. The metrics
//! sampler reads the sum ([`LookupCounters::get`]); a reader that is dropped folds its counts
//! into the shared ones, under the lock the sampler takes, so totals never go back.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};

use control::metrics::Lookup;

use super::{MatchKind, RefuseReason, RouteDecision};

/// One set of lookup outcomes, on cache lines of its own (every writer writes its own).
#[derive(Debug)]
#[repr(align(128))]
struct Counts([AtomicU64; Lookup::COUNT]);

impl Default for Counts {
    fn default() -> Self {
        Self([const { AtomicU64::new(0) }; Lookup::COUNT])
    }
}

impl Counts {
    fn get(&self, result: Lookup) -> u64 {
        self.0.get(result.index()).map_or(0, |c| c.load(Relaxed))
    }
}

/// What a decision counts as; `None` when it looked no number up (an emergency number, a
/// number the plan refused, an unknown trunk).
#[inline(always)]
fn result_of(decision: &RouteDecision) -> Option<Lookup> {
    Some(match decision {
        RouteDecision::Did { matched: MatchKind::Exact, .. } => Lookup::Hit,
        RouteDecision::Did { matched: MatchKind::Range, .. } => Lookup::Range,
        RouteDecision::Did { matched: MatchKind::Prefix(_), .. } => Lookup::Prefix,
        RouteDecision::Refuse(RefuseReason::UnknownDid) => Lookup::Miss,
        RouteDecision::Emergency { .. } | RouteDecision::Refuse(_) => return None,
    })
}

/// Lookup outcomes of a router, its rebuilt successors and all their readers, monotonic.
#[derive(Debug, Default)]
pub struct LookupCounters {
    /// Calls through the shared router, and the counts of readers since dropped.
    shared: Counts,
    /// The live readers' counts.
    readers: Mutex<Vec<Arc<Counts>>>,
}

impl LookupCounters {
    /// Counts the outcome of a routing decision made through the shared router (one relaxed
    /// atomic add; decisions that looked no number up count nothing).
    #[inline]
    pub fn record(&self, decision: &RouteDecision) {
        if let Some(c) = result_of(decision).and_then(|r| self.shared.0.get(r.index())) {
            c.fetch_add(1, Relaxed);
        }
    }

    /// Lookups that ended with `result` so far, through the router and every reader.
    pub fn get(&self, result: Lookup) -> u64 {
        let readers = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
        readers.iter().fold(self.shared.get(result), |sum, r| sum.wrapping_add(r.get(result)))
    }

    /// Counters for one reader, summed into [`LookupCounters::get`] while it lives and folded
    /// into the shared ones when it is dropped.
    pub fn reader(self: &Arc<Self>) -> ReaderLookups {
        let counts = Arc::new(Counts::default());
        self.readers.lock().unwrap_or_else(PoisonError::into_inner).push(Arc::clone(&counts));
        ReaderLookups { counts, all: Arc::clone(self) }
    }
}

/// One reader's lookup counters (see [`LookupCounters::reader`]): written by that reader only.
#[derive(Debug)]
pub struct ReaderLookups {
    counts: Arc<Counts>,
    all: Arc<LookupCounters>,
}

impl ReaderLookups {
    /// Counts the outcome of a decision: a plain load and store, no locked instruction (this
    /// reader is the counter's only writer, `&mut self` says so).
    #[inline(always)]
    pub fn record(&mut self, decision: &RouteDecision) {
        if let Some(c) = result_of(decision).and_then(|r| self.counts.0.get(r.index())) {
            c.store(c.load(Relaxed).wrapping_add(1), Relaxed);
        }
    }
}

impl Drop for ReaderLookups {
    fn drop(&mut self) {
        // Under the lock `get` takes: a sampler sees these counts either here or in `shared`.
        let mut readers = self.all.readers.lock().unwrap_or_else(PoisonError::into_inner);
        for &result in Lookup::ALL {
            if let Some(c) = self.all.shared.0.get(result.index()) {
                c.fetch_add(self.counts.get(result), Relaxed);
            }
        }
        readers.retain(|r| !Arc::ptr_eq(r, &self.counts));
    }
}

#[cfg(test)]
mod tests {
    use control::config::Config;
    use control::metrics::Lookup;

    use crate::route::{E164, Router};

    const CONFIG: &str = r#"
[[trunk]]
name = "us"
sources = ["192.0.2.0/24"]
country_code = "1"
national_prefix = "1"
international_prefix = "011"
emergency_target = "pbx"
[[target]]
name = "pbx"
uris = ["sip:10.0.0.10:5060"]
[[did]]
number = "+15551230000"
target = "pbx"
[[did_range]]
prefix = "+1555124"
target = "pbx"
[[did_range]]
first = "+15551250000"
last  = "+15551259999"
target = "pbx"
"#;

    fn counts(r: &Router) -> [u64; Lookup::COUNT] {
        std::array::from_fn(|i| r.lookups().get(Lookup::ALL[i]))
    }

    #[test]
    fn every_result_moves_its_own_counter() {
        let r = Router::from_config(&Config::from_toml(CONFIG).unwrap()).unwrap();
        let us = r.trunk("us").unwrap();
        let mut reader = r.reader();
        // Hit, Range, Prefix, Miss (the order of Lookup::ALL).
        let steps: [(&str, [u64; Lookup::COUNT]); 4] = [
            ("+15551230000", [1, 0, 0, 0]),
            ("5551250042", [1, 1, 0, 0]),
            ("5551240042", [1, 1, 1, 0]),
            ("5559999999", [1, 1, 1, 1]),
        ];
        assert_eq!(Lookup::ALL, [Lookup::Hit, Lookup::Range, Lookup::Prefix, Lookup::Miss]);
        for (number, want) in steps {
            r.route(us, number.as_bytes(), None);
            assert_eq!(counts(&r), want, "after {number}");
        }
        // Readers and direct lookups count into the same counters.
        reader.route(us, b"+15551230000", None);
        r.lookup(E164::parse_plus("+15551230000").unwrap());
        reader.lookup(E164::parse_plus("+15550000000").unwrap());
        assert_eq!(counts(&r), [3, 1, 1, 2]);
        // No number looked up: emergency, a number the plan refuses.
        r.route(us, b"911", None);
        reader.route(us, b"555124", None);
        assert_eq!(counts(&r), [3, 1, 1, 2]);
        // A dropped reader's counts stay; a rebuilt router's readers count into the same totals.
        drop(reader);
        assert_eq!(counts(&r), [3, 1, 1, 2]);
        let next = r.rebuild(&Config::from_toml(CONFIG).unwrap()).unwrap();
        let mut next_reader = next.reader();
        next_reader.route(us, b"5551240042", None);
        assert_eq!((counts(&r), counts(&next)), ([3, 1, 2, 2], [3, 1, 2, 2]));
        drop(next_reader);
        assert_eq!(counts(&next), [3, 1, 2, 2]);
    }
}
