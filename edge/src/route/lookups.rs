//! How DID lookups ended: exact hit, range, prefix or miss. One relaxed atomic add per lookup
//! (lookups happen once per initial request, not per datagram); the metrics sampler reads the
//! totals.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use control::metrics::Lookup;

use super::{MatchKind, RefuseReason, RouteDecision};

/// Lookup outcomes, monotonic. On their own cache line: every worker writes them.
#[derive(Debug)]
#[repr(align(128))]
pub struct LookupCounters {
    by_result: [AtomicU64; Lookup::COUNT],
}

impl Default for LookupCounters {
    fn default() -> Self {
        Self { by_result: [const { AtomicU64::new(0) }; Lookup::COUNT] }
    }
}

impl LookupCounters {
    /// Counts the outcome of a routing decision; decisions that looked no number up (an
    /// emergency number, a number the plan refused, an unknown trunk) count nothing.
    #[inline]
    pub fn record(&self, decision: &RouteDecision) {
        let result = match decision {
            RouteDecision::Did { matched: MatchKind::Exact, .. } => Lookup::Hit,
            RouteDecision::Did { matched: MatchKind::Range, .. } => Lookup::Range,
            RouteDecision::Did { matched: MatchKind::Prefix(_), .. } => Lookup::Prefix,
            RouteDecision::Refuse(RefuseReason::UnknownDid) => Lookup::Miss,
            RouteDecision::Emergency { .. } | RouteDecision::Refuse(_) => return,
        };
        if let Some(c) = self.by_result.get(result.index()) {
            c.fetch_add(1, Relaxed);
        }
    }

    /// Lookups that ended with `result` so far.
    pub fn get(&self, result: Lookup) -> u64 {
        self.by_result.get(result.index()).map_or(0, |c| c.load(Relaxed))
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
        r.route(us, b"555124", None);
        assert_eq!(counts(&r), [3, 1, 1, 2]);
    }
}
