//! Target sets: ordered URIs (serial failover) or weighted URIs (load sharing), an optional
//! overflow set, and selection that skips URIs the health checks hold down.
//!
//! URIs are deduplicated across sets: a URI named by two targets is one [`UriId`], probed once
//! and up or down for both.
//!
//! A set's id is stable across policy changes ([`TargetSets::rebuilt`]): a target keeps its id
//! for as long as its name exists, so the DID table, which stores set ids, stays valid through a
//! change of targets and is shared by every generation. A removed target leaves a hole that the
//! next new target fills (the store refuses to delete a target any DID or block still names).

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
    /// Indexed by [`SetId`]; `None`: the hole a removed target left.
    sets: Vec<Option<Set>>,
    by_name: HashMap<Box<str>, SetId, RandomState>,
    uris: Vec<Box<str>>,
    uri_ids: HashMap<Box<str>, UriId, RandomState>,
}

/// Set ids for `targets`: a name `previous` knows keeps its id; a new name takes the lowest free
/// one (a hole, or the next after the end).
fn assign_ids(previous: Option<&TargetSets>, targets: &[Target]) -> Result<Vec<SetId>, TargetError> {
    let kept: Vec<Option<SetId>> = targets.iter().map(|t| previous.and_then(|p| p.id(&t.name))).collect();
    let mut taken = vec![false; previous.map_or(0, |p| p.sets.len()) + targets.len()];
    for id in kept.iter().flatten() {
        taken[id.0 as usize] = true;
    }
    let mut free = (0..taken.len()).filter(|&i| !taken[i]);
    let ids: Vec<SetId> = kept
        .into_iter()
        .map(|id| id.or_else(|| free.next().map(|i| SetId(i as u32))))
        .collect::<Option<_>>()
        .ok_or(TargetError::TooMany)?;
    if ids.iter().any(|id| id.0 as usize >= MAX_TARGET_SETS) {
        return Err(TargetError::TooMany);
    }
    Ok(ids)
}

impl TargetSets {
    /// Builds the sets of a validated configuration.
    pub fn from_config(targets: &[Target]) -> Result<Self, TargetError> {
        Self::build(None, targets)
    }

    /// The sets of a changed configuration, each target keeping its id by name (see the module
    /// documentation).
    pub fn rebuilt(&self, targets: &[Target]) -> Result<Self, TargetError> {
        Self::build(Some(self), targets)
    }

    fn build(previous: Option<&TargetSets>, targets: &[Target]) -> Result<Self, TargetError> {
        if targets.len() > MAX_TARGET_SETS {
            return Err(TargetError::TooMany);
        }
        let set_ids = assign_ids(previous, targets)?;
        let by_name: HashMap<Box<str>, SetId, RandomState> =
            targets.iter().zip(&set_ids).map(|(t, id)| (t.name.as_str().into(), *id)).collect();
        let mut uris: Vec<Box<str>> = Vec::new();
        let mut uri_ids: HashMap<Box<str>, UriId, RandomState> = HashMap::default();
        let len = set_ids.iter().map(|id| id.0 as usize + 1).max().unwrap_or(0);
        let mut sets: Vec<Option<Set>> = (0..len).map(|_| None).collect();
        for (t, set_id) in targets.iter().zip(&set_ids) {
            let ids: Box<[UriId]> = t
                .uris
                .iter()
                .map(|u| {
                    *uri_ids.entry(u.as_str().into()).or_insert_with(|| {
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
            if let Some(slot) = sets.get_mut(set_id.0 as usize) {
                *slot = Some(Set { name: t.name.as_str().into(), uris: ids, cumulative, overflow });
            }
        }
        Ok(Self { sets, by_name, uris, uri_ids })
    }

    fn set(&self, set: SetId) -> Option<&Set> {
        self.sets.get(set.0 as usize).and_then(Option::as_ref)
    }

    /// The set named `name`.
    pub fn id(&self, name: &str) -> Option<SetId> {
        self.by_name.get(name).copied()
    }

    /// The name of a set (`None`: no such set, or the hole of a removed one).
    pub fn name(&self, set: SetId) -> Option<&str> {
        self.set(set).map(|s| &*s.name)
    }

    /// The URIs of a set, in configured order.
    pub fn set_uris(&self, set: SetId) -> &[UriId] {
        self.set(set).map_or(&[], |s| &s.uris)
    }

    /// The overflow set of a set.
    pub fn overflow(&self, set: SetId) -> Option<SetId> {
        self.set(set).and_then(|s| s.overflow)
    }

    /// The id of a URI by its text.
    pub fn uri_id(&self, uri: &str) -> Option<UriId> {
        self.uri_ids.get(uri).copied()
    }

    /// Every distinct URI, indexed by [`UriId::index`].
    pub fn uris(&self) -> &[Box<str>] {
        &self.uris
    }

    /// The text of a URI.
    pub fn uri(&self, id: UriId) -> Option<&str> {
        self.uris.get(id.index()).map(|u| &**u)
    }

    /// Number of set ids (holes included): every [`SetId`] is below it.
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
        let chosen = match self.set(set) {
            Some(s) if s.uris.iter().any(|&u| up.is_up(u)) => Some(s),
            Some(s) => s.overflow.and_then(|o| self.set(o)),
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
    fn ids_stay_with_their_names_across_rebuilds_and_holes_are_reused() {
        let t = sets();
        let (serial, shared, spill) =
            (t.id("serial").unwrap(), t.id("shared").unwrap(), t.id("spill").unwrap());
        // "shared" goes, "aaa" (first by name) comes, "serial" changes its URIs.
        let text = r#"
[[target]]
name = "aaa"
uris = ["sip:10.0.5.5"]
[[target]]
name = "serial"
uris = ["sip:10.0.0.9"]
overflow = "spill"
[[target]]
name = "spill"
uris = ["sip:10.0.9.9"]
"#;
        let t2 = t.rebuilt(&Config::from_toml(text).unwrap().targets).unwrap();
        assert_eq!((t2.id("serial"), t2.id("spill")), (Some(serial), Some(spill)));
        assert_eq!(t2.id("aaa"), Some(shared), "the new target fills the hole");
        assert_eq!(t2.id("shared"), None);
        assert_eq!(names(&t2, t2.candidates(serial, 0, &UpFlags::all_up(t2.uris().len()))), ["10.0.0.9"]);
        assert_eq!(t2.overflow(serial), Some(spill));
        assert_eq!(t2.uri_id("sip:10.0.9.9").map(|u| t2.uri(u)), Some(Some("sip:10.0.9.9")));
        // Removing a middle target leaves a hole: no name, no URIs, no candidates.
        let t3 = t2.rebuilt(
            &Config::from_toml(&text.replace("name = \"aaa\"", "name = \"serial2\"")).unwrap().targets,
        );
        let t3 = t3.unwrap();
        let t4 = t3.rebuilt(&Config::from_toml(text).unwrap().targets[1..]).unwrap();
        let hole = t3.id("serial2").unwrap();
        assert_eq!((t4.name(hole), t4.set_uris(hole).len(), t4.len()), (None, 0, 3));
        assert!(t4.candidates(hole, 0, &UpFlags::all_up(t4.uris().len())).next().is_none());
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
