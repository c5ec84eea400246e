//! Target sets: ordered URIs (serial failover) or weighted URIs (load sharing), an optional
//! overflow set, and selection that skips URIs the health checks hold down.
//!
//! URIs are deduplicated across sets: a URI named by two targets is one [`UriId`], probed once
//! and up or down for both.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use ahash::RandomState;
use control::config::Target;

use super::table::MAX_TARGET_SETS;

/// The id of a target set (its index in the configuration's `[[target]]` list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SetId(pub(crate) u32);

/// The id of a distinct target URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UriId(pub(crate) u32);

impl UriId {
    /// The index of the URI in [`TargetSets::uris`].
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Why target sets could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TargetError {
    /// More sets than a route can name.
    #[error("more than {MAX_TARGET_SETS} targets")]
    TooMany,
    /// A target names an overflow that does not exist, or chains overflows.
    #[error("target {0:?}: overflow must name a target without an overflow of its own")]
    BadOverflow(String),
    /// Weights do not match the URIs.
    #[error("target {0:?}: needs one non-zero weight per URI")]
    BadWeights(String),
}

#[derive(Debug)]
struct Set {
    name: Box<str>,
    uris: Box<[UriId]>,
    /// Cumulative weights, one per URI; empty for serial failover.
    cumulative: Box<[u64]>,
    overflow: Option<SetId>,
}

/// Up/down flags of every URI, shared by routing (readers) and the health tracker (writer).
#[derive(Debug)]
pub struct UpFlags(Box<[AtomicBool]>);

impl UpFlags {
    /// `n` URIs, all up until a health check says otherwise.
    pub fn all_up(n: usize) -> Self {
        Self((0..n).map(|_| AtomicBool::new(true)).collect())
    }

    /// Whether a URI is up (an unknown id is down).
    #[inline]
    pub fn is_up(&self, uri: UriId) -> bool {
        self.0.get(uri.index()).is_some_and(|f| f.load(Ordering::Relaxed))
    }

    /// Marks a URI up or down.
    pub fn set(&self, uri: UriId, up: bool) {
        if let Some(f) = self.0.get(uri.index()) {
            f.store(up, Ordering::Relaxed);
        }
    }

    /// Number of URIs.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no URIs.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Every target set and the distinct URIs they name.
#[derive(Debug)]
pub struct TargetSets {
    sets: Vec<Set>,
    by_name: HashMap<Box<str>, SetId, RandomState>,
    uris: Vec<Box<str>>,
}

impl TargetSets {
    /// Builds the sets of a validated configuration.
    pub fn from_config(targets: &[Target]) -> Result<Self, TargetError> {
        if targets.len() > MAX_TARGET_SETS {
            return Err(TargetError::TooMany);
        }
        let by_name: HashMap<Box<str>, SetId, RandomState> =
            targets.iter().enumerate().map(|(i, t)| (t.name.as_str().into(), SetId(i as u32))).collect();
        let mut uris: Vec<Box<str>> = Vec::new();
        let mut uri_ids: HashMap<String, UriId> = HashMap::new();
        let mut sets = Vec::with_capacity(targets.len());
        for t in targets {
            let ids: Box<[UriId]> = t
                .uris
                .iter()
                .map(|u| {
                    *uri_ids.entry(u.clone()).or_insert_with(|| {
                        uris.push(u.as_str().into());
                        UriId(uris.len() as u32 - 1)
                    })
                })
                .collect();
            let cumulative: Box<[u64]> = match &t.weights {
                None => Box::new([]),
                Some(w) if w.len() == ids.len() && w.iter().all(|&w| w > 0) => w
                    .iter()
                    .scan(0u64, |sum, &w| {
                        *sum += u64::from(w);
                        Some(*sum)
                    })
                    .collect(),
                Some(_) => return Err(TargetError::BadWeights(t.name.clone())),
            };
            let overflow = match &t.overflow {
                None => None,
                Some(o) => {
                    let ok = targets.iter().any(|x| &x.name == o && x.overflow.is_none() && x.name != t.name);
                    if !ok {
                        return Err(TargetError::BadOverflow(t.name.clone()));
                    }
                    by_name.get(o.as_str()).copied()
                }
            };
            sets.push(Set { name: t.name.as_str().into(), uris: ids, cumulative, overflow });
        }
        Ok(Self { sets, by_name, uris })
    }

    /// The set named `name`.
    pub fn id(&self, name: &str) -> Option<SetId> {
        self.by_name.get(name).copied()
    }

    /// The name of a set.
    pub fn name(&self, set: SetId) -> Option<&str> {
        self.sets.get(set.0 as usize).map(|s| &*s.name)
    }

    /// The URIs of a set, in configured order.
    pub fn set_uris(&self, set: SetId) -> &[UriId] {
        self.sets.get(set.0 as usize).map_or(&[], |s| &s.uris)
    }

    /// The overflow set of a set.
    pub fn overflow(&self, set: SetId) -> Option<SetId> {
        self.sets.get(set.0 as usize).and_then(|s| s.overflow)
    }

    /// Every distinct URI, indexed by [`UriId::index`].
    pub fn uris(&self) -> &[Box<str>] {
        &self.uris
    }

    /// The text of a URI.
    pub fn uri(&self, id: UriId) -> Option<&str> {
        self.uris.get(id.index()).map(|u| &**u)
    }

    /// Number of sets.
    pub fn len(&self) -> usize {
        self.sets.len()
    }

    /// True when there are no sets.
    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }

    /// The URIs to try for a call to `set`, best first, skipping down URIs: for a weighted set
    /// the one `seed` picks by weight among the up URIs, then the other up URIs in order; for a
    /// serial set the up URIs in order. When none is up, the overflow set's URIs. Empty: 503.
    /// `seed` should be a hash of something per call (the Call-ID) so retransmissions agree.
    pub fn candidates<'a>(&'a self, set: SetId, seed: u64, up: &'a UpFlags) -> Candidates<'a> {
        let chosen = match self.sets.get(set.0 as usize) {
            Some(s) if s.uris.iter().any(|&u| up.is_up(u)) => Some(s),
            Some(s) => s.overflow.and_then(|o| self.sets.get(o.0 as usize)),
            None => None,
        };
        let (uris, first) = match chosen {
            Some(s) => (&s.uris[..], weighted_pick(s, seed, up)),
            None => (&[][..], None),
        };
        Candidates { uris, up, first, next: 0, first_done: false }
    }
}

/// The index of the up URI `seed` picks in proportion to the weights (weights of down URIs are
/// left out), or `None` for a serial set.
fn weighted_pick(s: &Set, seed: u64, up: &UpFlags) -> Option<usize> {
    if s.cumulative.is_empty() {
        return None;
    }
    let weight = |i: usize| {
        let prev = if i == 0 { 0 } else { s.cumulative[i - 1] };
        s.cumulative[i] - prev
    };
    let total: u64 = (0..s.uris.len()).filter(|&i| up.is_up(s.uris[i])).map(weight).sum();
    if total == 0 {
        return None;
    }
    let mut point = seed % total;
    for i in (0..s.uris.len()).filter(|&i| up.is_up(s.uris[i])) {
        let w = weight(i);
        if point < w {
            return Some(i);
        }
        point -= w;
    }
    None
}

/// The URIs to try for one call, best first (see [`TargetSets::candidates`]). Allocation-free.
#[derive(Debug)]
pub struct Candidates<'a> {
    uris: &'a [UriId],
    up: &'a UpFlags,
    first: Option<usize>,
    next: usize,
    first_done: bool,
}

impl Iterator for Candidates<'_> {
    type Item = UriId;

    fn next(&mut self) -> Option<UriId> {
        if !self.first_done {
            self.first_done = true;
            if let Some(i) = self.first {
                return self.uris.get(i).copied();
            }
        }
        while let Some(&u) = self.uris.get(self.next) {
            let i = self.next;
            self.next += 1;
            if Some(i) != self.first && self.up.is_up(u) {
                return Some(u);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use control::config::Config;

    fn sets() -> TargetSets {
        let text = r#"
[[target]]
name = "serial"
uris = ["sip:10.0.0.1", "sip:10.0.0.2", "sip:10.0.0.3"]
overflow = "spill"
[[target]]
name = "shared"
uris = ["sip:10.0.0.1", "sip:10.0.1.1", "sip:10.0.1.2"]
weights = [1, 3, 6]
[[target]]
name = "spill"
uris = ["sip:10.0.9.9"]
"#;
        TargetSets::from_config(&Config::from_toml(text).unwrap().targets).unwrap()
    }

    fn names(t: &TargetSets, c: Candidates<'_>) -> Vec<String> {
        c.map(|u| t.uri(u).unwrap().trim_start_matches("sip:").to_owned()).collect()
    }

    #[test]
    fn uris_are_shared_between_sets() {
        let t = sets();
        assert_eq!(t.uris().len(), 6, "sip:10.0.0.1 is in two sets and counted once");
        assert_eq!(t.set_uris(t.id("serial").unwrap())[0], t.set_uris(t.id("shared").unwrap())[0]);
        assert_eq!(t.overflow(t.id("serial").unwrap()), t.id("spill"));
    }

    #[test]
    fn serial_failover_skips_down_uris_then_overflows() {
        let t = sets();
        let up = UpFlags::all_up(t.uris().len());
        let serial = t.id("serial").unwrap();
        assert_eq!(names(&t, t.candidates(serial, 7, &up)), ["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
        up.set(t.set_uris(serial)[0], false);
        assert_eq!(names(&t, t.candidates(serial, 7, &up)), ["10.0.0.2", "10.0.0.3"]);
        up.set(t.set_uris(serial)[1], false);
        up.set(t.set_uris(serial)[2], false);
        assert_eq!(names(&t, t.candidates(serial, 7, &up)), ["10.0.9.9"]);
        up.set(t.set_uris(t.id("spill").unwrap())[0], false);
        assert!(t.candidates(serial, 7, &up).next().is_none(), "all down, overflow down: 503");
    }

    #[test]
    fn weighted_sharing_follows_the_weights_of_up_uris() {
        let t = sets();
        let up = UpFlags::all_up(t.uris().len());
        let shared = t.id("shared").unwrap();
        let count = |up: &UpFlags| {
            let mut hits = [0u32; 3];
            // Seeds 0..1000 cover every residue modulo the total weight equally often.
            for seed in 0..1000 {
                let first = t.candidates(shared, seed, up).next().unwrap();
                let i = t.set_uris(shared).iter().position(|&u| u == first).unwrap();
                hits[i] += 1;
            }
            hits
        };
        assert_eq!(count(&up), [100, 300, 600]);
        up.set(t.set_uris(shared)[2], false);
        assert_eq!(count(&up), [250, 750, 0]);
        // The rest follow in configured order for failover, each once.
        up.set(t.set_uris(shared)[2], true);
        assert_eq!(names(&t, t.candidates(shared, 5, &up)), ["10.0.1.2", "10.0.0.1", "10.0.1.1"]);
        assert_eq!(names(&t, t.candidates(shared, 0, &up)), ["10.0.0.1", "10.0.1.1", "10.0.1.2"]);
    }
}
