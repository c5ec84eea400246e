//! DID routing: the Request-URI user → E.164 → `u64` key → DID table (exact, then range, then
//! longest prefix) → target set → a healthy target URI.
//!
//! [`Router`] holds the trunks' numbering plans, the target sets and their up/down flags, the
//! exact-DID table and the number blocks. The table and the blocks sit behind `arc-swap`:
//! lookups never wait for a bulk import, which builds a whole new table aside and swaps it in
//! ([`Router::replace_table`]); single upserts and deletes go to the live table
//! ([`Router::table`]) while lookups run.
//!
//! Use from the proxy: build once with [`Router::from_config`] (and a bulk CSV through
//! [`csv_import`] into a [`DidTableBuilder`], then [`Router::replace_table`]); each worker takes
//! a [`Router::reader`] and calls [`RouteReader::route`] with the trunk, the Request-URI user
//! part and a `tel:` URI's `phone-context` (or, to overlap the table's memory access with other
//! work, [`RouteReader::prefetch`] as soon as the user part is known and
//! [`RouteReader::route_prefetched`] when the decision is needed); for a DID or emergency decision,
//! [`Router::candidates`] gives the URIs to try in order (empty: answer 503). A
//! [`health::HealthTracker`] over [`Router::up_flags`] drives the OPTIONS probes.
//!
//! A change of trunks, targets or number blocks builds the next router aside with
//! [`Router::rebuild`]; it shares the exact-DID table with the one it was built from (see
//! [`live`]).

pub mod blocks;
pub mod csv_import;
pub mod e164;
pub mod health;
pub mod live;
pub mod lookups;
pub mod meta;
pub mod swapped;
pub mod table;
pub mod targets;

use std::sync::Arc;

use control::config::Config;

pub use blocks::{BlockError, BlockHit, BlockId, BlockMatch, Blocks};
pub use e164::{E164, Normalised, NumberingPlan, Refusal};
pub use health::{HealthSettings, HealthTracker, ProbeOutcome};
pub use lookups::{LookupCounters, ReaderLookups};
pub use meta::{DidMeta, MetaId, MetaStore};
pub use swapped::{Cached, Swapped};
pub use table::{DidRoute, DidTable, DidTableBuilder, MemoryReport, TableError};
pub use targets::{Candidates, SetId, TargetError, TargetSets, UpFlags, UriId};

/// The id of a trunk (its index in the configuration's `[[trunk]]` list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TrunkId(pub u32);

/// Which entry a DID matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchKind {
    /// An exact DID.
    Exact,
    /// An explicit range.
    Range,
    /// The longest matching prefix, with its digit count.
    Prefix(u8),
}

/// Why a call is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefuseReason {
    /// The dialled string is not an E.164 number (404 or 484).
    Number(Refusal),
    /// No DID, range or prefix covers the number (404).
    UnknownDid,
    /// An emergency number on a trunk without an emergency target (503).
    NoEmergencyTarget,
    /// The trunk id is not one of this router's (403).
    UnknownTrunk,
}

impl RefuseReason {
    /// The SIP status code.
    pub fn status(self) -> u16 {
        match self {
            RefuseReason::Number(r) => r.status(),
            RefuseReason::UnknownDid => 404,
            RefuseReason::NoEmergencyTarget => 503,
            RefuseReason::UnknownTrunk => 403,
        }
    }
}

impl std::fmt::Display for RefuseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RefuseReason::Number(r) => r.reason(),
            RefuseReason::UnknownDid => "unknown DID",
            RefuseReason::NoEmergencyTarget => "emergency number and no emergency target",
            RefuseReason::UnknownTrunk => "unknown trunk",
        })
    }
}

/// The routing decision for one call. `Copy`, no allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteDecision {
    /// A DID: its number, route and what matched.
    Did {
        /// The normalised number.
        number: E164,
        /// Target set, call limit, metadata.
        route: DidRoute,
        /// Exact, range or prefix.
        matched: MatchKind,
        /// The key the call is counted under and held to `route.max_calls()` by: the number's
        /// E.164 key for an exact DID, [`BlockId::limit_key`] of the block for a range or a
        /// prefix (one counter per block, whatever number in it is called).
        limit_key: u64,
    },
    /// An emergency number, to the trunk's emergency target.
    Emergency {
        /// The emergency target set.
        target: SetId,
    },
    /// Refused.
    Refuse(RefuseReason),
}

/// Why a router could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A trunk's numbering plan is unusable (the configuration was not validated).
    #[error("trunk {0:?}: country code, prefixes or emergency numbers are invalid")]
    Plan(String),
    /// Target sets.
    #[error(transparent)]
    Targets(#[from] TargetError),
    /// A name refers to no target.
    #[error("{0}: no target named {1:?}")]
    UnknownTarget(String, String),
    /// A number is not `+` and 1 to 15 digits.
    #[error("{0}: {1:?} is not an E.164 number")]
    Number(String, String),
    /// An exact DID could not be stored.
    #[error("{0}: {1}")]
    Table(String, TableError),
    /// Prefixes or ranges.
    #[error(transparent)]
    Blocks(#[from] BlockError),
}

#[derive(Debug)]
struct TrunkPlan {
    name: Box<str>,
    plan: NumberingPlan,
    emergency: Option<SetId>,
}

/// The routing state.
#[derive(Debug)]
pub struct Router {
    trunks: Arc<[TrunkPlan]>,
    targets: Arc<TargetSets>,
    up: Arc<UpFlags>,
    table: Arc<Swapped<DidTable>>,
    blocks: Arc<Swapped<Blocks>>,
    lookups: Arc<LookupCounters>,
}

impl Router {
    /// Builds from a validated configuration: plans, targets, `[[did]]` and `[[did_range]]`.
    pub fn from_config(config: &Config) -> Result<Self, BuildError> {
        let targets = Arc::new(TargetSets::from_config(&config.targets)?);
        let mut table = DidTableBuilder::with_capacity(config.dids.len());
        insert_config_dids(config, &targets, &mut table)?;
        let up = Arc::new(UpFlags::all_up(targets.uris().len()));
        Self::assemble(config, targets, up, Arc::new(Swapped::new(table.build())), Arc::default())
    }

    /// The router of a changed configuration (trunks, targets, number blocks), built aside.
    /// Target sets keep their ids by name ([`TargetSets::rebuilt`]), so the exact-DID table is
    /// not rebuilt but shared: DID changes applied through either router reach both, and
    /// `config.dids` is not read. URIs that stay keep their up/down state.
    pub fn rebuild(&self, config: &Config) -> Result<Self, BuildError> {
        let targets = Arc::new(self.targets.rebuilt(&config.targets)?);
        let up = UpFlags::all_up(targets.uris().len());
        for (i, uri) in targets.uris().iter().enumerate() {
            if let (Some(old), Ok(i)) = (self.targets.uri_id(uri), u32::try_from(i)) {
                up.set(UriId(i), self.up.is_up(old));
            }
        }
        // The lookup counters go on counting across generations (the metrics are monotonic).
        Self::assemble(config, targets, Arc::new(up), Arc::clone(&self.table), Arc::clone(&self.lookups))
    }

    fn assemble(
        config: &Config,
        targets: Arc<TargetSets>,
        up: Arc<UpFlags>,
        table: Arc<Swapped<DidTable>>,
        lookups: Arc<LookupCounters>,
    ) -> Result<Self, BuildError> {
        let set = |field: String, name: &str| {
            targets.id(name).ok_or_else(|| BuildError::UnknownTarget(field, name.to_owned()))
        };
        let mut trunks = Vec::with_capacity(config.trunks.len());
        for (i, t) in config.trunks.iter().enumerate() {
            let plan = NumberingPlan::from_trunk(t).ok_or_else(|| BuildError::Plan(t.name.clone()))?;
            let emergency = match &t.emergency_target {
                Some(e) => Some(set(format!("trunk[{i}].emergency_target"), e)?),
                None => None,
            };
            trunks.push(TrunkPlan { name: t.name.as_str().into(), plan, emergency });
        }
        let blocks = build_blocks(config, &targets)?;
        Ok(Self {
            trunks: trunks.into(),
            targets,
            up,
            table,
            blocks: Arc::new(Swapped::new(blocks)),
            lookups,
        })
    }

    /// The id of the trunk named `name`.
    pub fn trunk(&self, name: &str) -> Option<TrunkId> {
        self.trunks.iter().position(|t| &*t.name == name).map(|i| TrunkId(i as u32))
    }

    /// Routes a call: normalises `user` (and a `tel:` URI's `phone-context`) by the trunk's
    /// plan, then looks the number up. Allocation-free. Workers on the hot path use a
    /// [`RouteReader`] instead, which skips the `arc-swap` load.
    pub fn route(&self, trunk: TrunkId, user: &[u8], phone_context: Option<&[u8]>) -> RouteDecision {
        self.route_prefetched(Prefetched(dial(&self.trunks, trunk, user, phone_context)))
    }

    /// The first half of [`Router::route`]: normalises `user` by the trunk's plan and starts
    /// reading the number's table bucket into the cache, without waiting for it. Call it as
    /// soon as the Request-URI is parsed, do other work, then [`Router::route_prefetched`]: the
    /// decision is [`Router::route`]'s, the number normalised by the plan of this call's time
    /// and looked up in the table and blocks current at the second.
    #[inline]
    pub fn prefetch(&self, trunk: TrunkId, user: &[u8], phone_context: Option<&[u8]>) -> Prefetched {
        let dialled = dial(&self.trunks, trunk, user, phone_context);
        if let Dialled::Lookup(n) = dialled {
            self.table.load().prefetch(n.key());
        }
        Prefetched(dialled)
    }

    /// The second half of [`Router::route`]: looks up what [`Router::prefetch`] normalised.
    #[inline]
    pub fn route_prefetched(&self, prefetched: Prefetched) -> RouteDecision {
        let decision = match prefetched.0 {
            Dialled::Lookup(n) => lookup(&self.table.load(), || self.blocks.load_full(), n),
            Dialled::Decided(d) => d,
        };
        self.lookups.record(&decision);
        decision
    }

    /// Looks an E.164 number up: exact DID, then range, then longest prefix.
    pub fn lookup(&self, number: E164) -> RouteDecision {
        let decision = lookup(&self.table.load(), || self.blocks.load_full(), number);
        self.lookups.record(&decision);
        decision
    }

    /// How the lookups of this router and its readers ended (for the metrics).
    pub fn lookups(&self) -> &Arc<LookupCounters> {
        &self.lookups
    }

    /// Calls `f` with the metadata of a routed call: `matched` and `meta` from its
    /// [`RouteDecision::Did`] (a block's record lives in the blocks, an exact DID's in the
    /// table). Off the hot path: it may read-lock the table's metadata.
    pub fn with_meta<R>(&self, matched: MatchKind, meta: MetaId, f: impl FnOnce(DidMeta<'_>) -> R) -> R {
        match matched {
            MatchKind::Exact => self.table.load().with_meta(meta, f),
            MatchKind::Range | MatchKind::Prefix(_) => self.blocks.load().with_meta(meta, f),
        }
    }

    /// A reader for one worker thread: it keeps the current table and blocks and re-checks
    /// them with one plain load per call, and counts its lookups in counters of its own
    /// ([`LookupCounters::reader`]), so its lookups write no shared cache line and execute no
    /// locked instruction.
    pub fn reader(&self) -> RouteReader {
        RouteReader {
            trunks: self.trunks.clone(),
            table: Cached::new(self.table.clone()),
            blocks: Cached::new(self.blocks.clone()),
            lookups: self.lookups.reader(),
        }
    }

    /// The URIs to try for a call to `set`, best first, skipping down URIs, falling over to the
    /// set's overflow; empty when the call must get 503. See [`TargetSets::candidates`].
    pub fn candidates(&self, set: SetId, seed: u64) -> Candidates<'_> {
        self.targets.candidates(set, seed, &self.up)
    }

    /// The target sets.
    pub fn targets(&self) -> &Arc<TargetSets> {
        &self.targets
    }

    /// The up/down flags the health tracker writes (one per distinct URI).
    pub fn up_flags(&self) -> &Arc<UpFlags> {
        &self.up
    }

    /// The live exact-DID table, for single upserts and deletes while lookups run.
    pub fn table(&self) -> arc_swap::Guard<Arc<DidTable>> {
        self.table.load()
    }

    /// Swaps in a whole new table (built aside, e.g. by a bulk import); returns the old one.
    pub fn replace_table(&self, table: Arc<DidTable>) -> Arc<DidTable> {
        self.table.swap(table)
    }

    /// Swaps in new number blocks; returns the old ones.
    pub fn replace_blocks(&self, blocks: Arc<Blocks>) -> Arc<Blocks> {
        self.blocks.swap(blocks)
    }
}

/// One worker's handle on the routing state (see [`Router::reader`]); sees every swap.
#[derive(Debug)]
pub struct RouteReader {
    trunks: Arc<[TrunkPlan]>,
    table: Cached<DidTable>,
    blocks: Cached<Blocks>,
    lookups: ReaderLookups,
}

impl RouteReader {
    /// As [`Router::route`].
    #[inline(always)]
    pub fn route(&mut self, trunk: TrunkId, user: &[u8], phone_context: Option<&[u8]>) -> RouteDecision {
        let dialled = dial(&self.trunks, trunk, user, phone_context);
        self.route_prefetched(Prefetched(dialled))
    }

    /// As [`Router::prefetch`]: normalises and starts reading the number's table bucket. A
    /// worker with a batch of requests prefetches the next ones before it routes this one.
    #[inline(always)]
    pub fn prefetch(&mut self, trunk: TrunkId, user: &[u8], phone_context: Option<&[u8]>) -> Prefetched {
        let dialled = dial(&self.trunks, trunk, user, phone_context);
        if let Dialled::Lookup(n) = dialled {
            self.table.get().prefetch(n.key());
        }
        Prefetched(dialled)
    }

    /// As [`Router::route_prefetched`].
    #[inline(always)]
    pub fn route_prefetched(&mut self, prefetched: Prefetched) -> RouteDecision {
        let decision = match prefetched.0 {
            Dialled::Lookup(n) => {
                let blocks = &mut self.blocks;
                lookup(self.table.get(), || blocks.get(), n)
            }
            Dialled::Decided(d) => d,
        };
        self.lookups.record(&decision);
        decision
    }

    /// Takes the current table and blocks if a swap replaced them since the last call, letting
    /// go of the old ones (a worker calls it when idle, so that it does not keep them alive).
    pub fn refresh(&mut self) {
        self.table.get();
        self.blocks.get();
    }

    /// As [`Router::lookup`].
    #[inline]
    pub fn lookup(&mut self, number: E164) -> RouteDecision {
        let blocks = &mut self.blocks;
        let decision = lookup(self.table.get(), || blocks.get(), number);
        self.lookups.record(&decision);
        decision
    }
}

/// A call normalised by its trunk's plan, its table bucket on its way into the cache
/// ([`RouteReader::prefetch`], [`Router::prefetch`]); route it with `route_prefetched`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "the call is routed by route_prefetched"]
pub struct Prefetched(Dialled);

/// What the trunk's plan made of a dialled string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialled {
    /// A number to look up.
    Lookup(E164),
    /// Decided without a lookup: emergency, or refused.
    Decided(RouteDecision),
}

#[inline(always)]
fn dial(trunks: &[TrunkPlan], trunk: TrunkId, user: &[u8], phone_context: Option<&[u8]>) -> Dialled {
    let Some(t) = trunks.get(trunk.0 as usize) else {
        return Dialled::Decided(RouteDecision::Refuse(RefuseReason::UnknownTrunk));
    };
    match t.plan.normalise(user, phone_context) {
        Normalised::Number(n) => Dialled::Lookup(n),
        Normalised::Emergency => Dialled::Decided(match t.emergency {
            Some(target) => RouteDecision::Emergency { target },
            None => RouteDecision::Refuse(RefuseReason::NoEmergencyTarget),
        }),
        Normalised::Refused(r) => Dialled::Decided(RouteDecision::Refuse(RefuseReason::Number(r))),
    }
}

/// Exact table first; the blocks are fetched only when it misses.
#[inline(always)]
fn lookup<B: std::ops::Deref<Target = Blocks>>(
    table: &DidTable,
    blocks: impl FnOnce() -> B,
    number: E164,
) -> RouteDecision {
    if let Some(route) = table.get_number(number) {
        return RouteDecision::Did { number, route, matched: MatchKind::Exact, limit_key: number.key() };
    }
    match blocks().find(number) {
        Some(BlockHit { id, route, prefix_len }) => RouteDecision::Did {
            number,
            route,
            matched: prefix_len.map_or(MatchKind::Range, MatchKind::Prefix),
            limit_key: id.limit_key(),
        },
        None => RouteDecision::Refuse(RefuseReason::UnknownDid),
    }
}

/// Inserts the configuration's `[[did]]` entries into `table`.
pub fn insert_config_dids(
    config: &Config,
    targets: &TargetSets,
    table: &mut DidTableBuilder,
) -> Result<(), BuildError> {
    for (i, d) in config.dids.iter().enumerate() {
        let field = format!("did[{i}]");
        let number =
            E164::parse_plus(&d.number).ok_or_else(|| BuildError::Number(field.clone(), d.number.clone()))?;
        let set = targets
            .id(&d.target)
            .ok_or_else(|| BuildError::UnknownTarget(field.clone(), d.target.clone()))?;
        let meta = DidMeta {
            customer: d.customer.as_deref(),
            group: d.group.as_deref(),
            tag: d.tag.as_deref(),
            description: d.description.as_deref(),
        };
        table.insert_new(number, set, d.max_calls, &meta).map_err(|e| BuildError::Table(field, e))?;
    }
    Ok(())
}

/// The configuration's `[[did_range]]` blocks, with their metadata and call limits.
fn build_blocks(config: &Config, targets: &TargetSets) -> Result<Blocks, BuildError> {
    let mut prefixes = Vec::new();
    let mut ranges = Vec::new();
    let mut store = MetaStore::default();
    for (i, r) in config.did_ranges.iter().enumerate() {
        let field = format!("did_range[{i}]");
        let set = targets
            .id(&r.target)
            .ok_or_else(|| BuildError::UnknownTarget(field.clone(), r.target.clone()))?;
        let meta = DidMeta {
            customer: r.customer.as_deref(),
            group: r.group.as_deref(),
            tag: r.tag.as_deref(),
            description: r.description.as_deref(),
        };
        let meta = store.intern(&meta).map_err(|e| BuildError::Table(field.clone(), e.into()))?;
        let route = DidRoute::new(set, r.max_calls, meta)
            .ok_or_else(|| BuildError::Table(field.clone(), TableError::OutOfRange))?;
        let parse =
            |s: &String| E164::parse_plus(s).ok_or_else(|| BuildError::Number(field.clone(), s.clone()));
        match (&r.prefix, &r.first, &r.last) {
            (Some(p), _, _) => prefixes.push((parse(p)?, route)),
            (None, Some(first), Some(last)) => ranges.push((parse(first)?, parse(last)?, route)),
            _ => return Err(BuildError::Number(field, String::new())),
        }
    }
    Ok(Blocks::new_with_meta(prefixes, ranges, store)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
[[trunk]]
name = "us"
sources = ["192.0.2.0/24"]
emergency_target = "psap"
[[trunk]]
name = "uk"
sources = ["198.51.100.0/24"]
country_code = "44"
national_prefix = "0"
international_prefix = "00"
[[trunk]]
name = "de"
sources = ["203.0.113.0/24"]
country_code = "49"
national_prefix = "0"
international_prefix = "00"
emergency_target = "psap"
[[target]]
name = "pbx1"
uris = ["sip:10.0.0.10:5060", "sip:10.0.0.11:5060"]
overflow = "voicemail"
[[target]]
name = "queue"
uris = ["sip:10.0.1.10"]
[[target]]
name = "voicemail"
uris = ["sip:10.0.2.10"]
[[target]]
name = "psap"
uris = ["sip:10.0.9.11"]
[[did]]
number = "+15551240005"
target = "queue"
max_calls = 4
customer = "acme"
tag = "crm-42"
[[did]]
number = "+4930123456"
target = "queue"
[[did_range]]
prefix = "+1555124"
target = "pbx1"
max_calls = 10
customer = "acme"
group = "sales"
[[did_range]]
prefix = "+15551"
target = "voicemail"
[[did_range]]
first = "+15551240000"
last  = "+15551240099"
target = "psap"
max_calls = 2
tag = "trial"
description = "hundred numbers on trial"
"#;

    fn router() -> Router {
        Router::from_config(&Config::from_toml(CONFIG).unwrap()).unwrap()
    }

    fn target_of(r: &Router, d: RouteDecision) -> Option<&str> {
        match d {
            RouteDecision::Did { route, .. } => r.targets().name(route.set()),
            RouteDecision::Emergency { target } => r.targets().name(target),
            RouteDecision::Refuse(_) => None,
        }
    }

    #[test]
    fn exact_beats_range_beats_prefix() {
        let r = router();
        let us = r.trunk("us").unwrap();
        type Want = Result<(&'static str, MatchKind), u16>;
        let cases: [(&str, Want); 8] = [
            ("1-555-124-0005", Ok(("queue", MatchKind::Exact))),
            ("5551240006", Ok(("psap", MatchKind::Range))),
            ("5551240100", Ok(("pbx1", MatchKind::Prefix(7)))),
            ("5551990000", Ok(("voicemail", MatchKind::Prefix(5)))),
            ("5552000000", Err(404)),
            ("911", Ok(("psap", MatchKind::Exact))),
            ("hello", Err(404)),
            ("555124", Err(484)),
        ];
        for (input, want) in cases {
            let d = r.route(us, input.as_bytes(), None);
            match (want, d) {
                (Ok((target, kind)), RouteDecision::Did { matched, .. }) => {
                    assert_eq!((target_of(&r, d), matched), (Some(target), kind), "{input}")
                }
                (Ok((target, _)), RouteDecision::Emergency { .. }) => {
                    assert_eq!(target_of(&r, d), Some(target), "{input}")
                }
                (Err(code), RouteDecision::Refuse(reason)) => assert_eq!(reason.status(), code, "{input}"),
                (want, got) => panic!("{input}: want {want:?}, got {got:?}"),
            }
        }
        let RouteDecision::Did { route, number, .. } = r.route(us, b"+15551240005", None) else { panic!() };
        assert_eq!((number.to_string(), route.max_calls()), ("+15551240005".to_owned(), Some(4)));
        r.table()
            .with_meta(route.meta(), |m| assert_eq!((m.customer, m.tag), (Some("acme"), Some("crm-42"))));
    }

    #[test]
    fn a_prefetched_call_routes_as_a_direct_one() {
        let r = router();
        let mut reader = r.reader();
        let (us, uk) = (r.trunk("us").unwrap(), r.trunk("uk").unwrap());
        type Call = (TrunkId, &'static [u8], Option<&'static [u8]>);
        let calls: [Call; 9] = [
            (us, b"15551240005", None),
            (us, b"5551240006", None),
            (us, b"5551990000", None),
            (us, b"5552000000", None),
            (us, b"911", None),
            (us, b"1-800-FLOWERS", None),
            (uk, b"7946 0000", Some(b"+44-20")),
            (uk, b"999", None),
            (TrunkId(99), b"15551240005", None),
        ];
        // Several prefetched at once, routed later in order, as a worker with a batch would.
        let ahead: Vec<_> = calls.iter().map(|&(t, u, c)| reader.prefetch(t, u, c)).collect();
        for (&(t, u, c), p) in calls.iter().zip(ahead) {
            let direct = r.route(t, u, c);
            assert_eq!(reader.route_prefetched(p), direct, "{:?}", String::from_utf8_lossy(u));
            assert_eq!(r.route_prefetched(r.prefetch(t, u, c)), direct);
        }
        // A table swapped in between the prefetch and the lookup is the one that answers.
        let p = reader.prefetch(us, b"15551240005", None);
        r.replace_table(Arc::new(DidTable::default()));
        let RouteDecision::Did { matched, .. } = reader.route_prefetched(p) else { panic!() };
        assert_eq!(matched, MatchKind::Range, "the range under it answers");
    }

    #[test]
    fn trunks_apply_their_own_plans() {
        let r = router();
        let (uk, de) = (r.trunk("uk").unwrap(), r.trunk("de").unwrap());
        assert_eq!(target_of(&r, r.route(de, b"030 123456", None)), Some("queue"));
        assert_eq!(target_of(&r, r.route(uk, b"0049 30 123456", None)), Some("queue"));
        assert_eq!(target_of(&r, r.route(uk, b"001 555 124 0005", None)), Some("queue"));
        assert_eq!(target_of(&r, r.route(de, b"110", None)), Some("psap"));
        // The UK trunk has no emergency target: 503, and 999 is never looked up as a DID.
        assert_eq!(r.route(uk, b"999", None), RouteDecision::Refuse(RefuseReason::NoEmergencyTarget));
        assert_eq!(RefuseReason::NoEmergencyTarget.status(), 503);
        assert_eq!(r.route(TrunkId(99), b"999", None), RouteDecision::Refuse(RefuseReason::UnknownTrunk));
        assert_eq!(r.trunk("fr"), None);
    }

    #[test]
    fn single_upserts_and_whole_table_swaps_apply_while_routing() {
        let r = Arc::new(router());
        let us = r.trunk("us").unwrap();
        let queue = r.targets().id("queue").unwrap();
        let reader = {
            let r = r.clone();
            std::thread::spawn(move || {
                for _ in 0..20_000 {
                    // Always a decision from one table or the other, never a torn one.
                    let t = target_of(&r, r.route(us, b"5551240100", None));
                    assert!(t == Some("pbx1") || t == Some("queue"), "{t:?}");
                }
            })
        };
        let n = E164::parse_plus("+15551240100").unwrap();
        for _ in 0..500 {
            r.table().upsert(n, queue, None, &DidMeta::default()).unwrap();
            r.table().remove(n);
            let mut fresh = DidTableBuilder::with_capacity(1);
            fresh.insert_new(n, queue, None, &DidMeta::default()).unwrap();
            r.replace_table(Arc::new(fresh.build()));
        }
        reader.join().unwrap();
        assert_eq!(target_of(&r, r.route(us, b"5551240100", None)), Some("queue"));
        let mut worker = r.reader();
        assert_eq!(target_of(&r, worker.route(us, b"5551240100", None)), Some("queue"));
        r.replace_table(Arc::new(DidTable::default()));
        assert_eq!(
            target_of(&r, worker.route(us, b"5551240100", None)),
            Some("pbx1"),
            "the reader sees the swap"
        );
        r.replace_blocks(Arc::new(Blocks::default()));
        assert_eq!(r.route(us, b"5551990000", None), RouteDecision::Refuse(RefuseReason::UnknownDid));
    }

    #[test]
    fn blocks_carry_metadata_and_one_call_limit_per_block() {
        let r = router();
        let us = r.trunk("us").unwrap();
        let did = |user: &[u8]| match r.route(us, user, None) {
            RouteDecision::Did { number, route, matched, limit_key } => (number, route, matched, limit_key),
            other => panic!("{other:?}"),
        };
        let meta = |matched, route: DidRoute| r.with_meta(matched, route.meta(), |m| format!("{m:?}"));
        // Two numbers under the +1555124 prefix share its limit and its metadata.
        let (n1, p1, k1, key1) = did(b"5551240100");
        let (n2, p2, _, key2) = did(b"5551249999");
        assert_eq!((k1, p1.max_calls(), p2.max_calls()), (MatchKind::Prefix(7), Some(10), Some(10)));
        assert_eq!(key1, key2, "one counter per block");
        assert!(key1 != n1.key() && key1 != n2.key(), "not a number's counter");
        let want = DidMeta { customer: Some("acme"), group: Some("sales"), ..DidMeta::default() };
        assert_eq!(meta(k1, p1), format!("{want:?}"));
        // A range hit: its own limit, metadata and counter.
        let (_, range, kind, range_key) = did(b"5551240006");
        assert_eq!((kind, range.max_calls()), (MatchKind::Range, Some(2)));
        assert!(range_key != key1);
        let want = DidMeta {
            tag: Some("trial"),
            description: Some("hundred numbers on trial"),
            ..DidMeta::default()
        };
        assert_eq!(meta(kind, range), format!("{want:?}"));
        // No metadata, no limit: the +15551 prefix.
        let (_, plain, kind, _) = did(b"5551990000");
        assert_eq!((plain.max_calls(), meta(kind, plain)), (None, format!("{:?}", DidMeta::default())));
        // An exact DID is counted on its own number, its metadata from the table.
        let (number, exact, kind, key) = did(b"15551240005");
        assert_eq!((kind, key, exact.max_calls()), (MatchKind::Exact, number.key(), Some(4)));
        assert_eq!(
            meta(kind, exact),
            format!("{:?}", DidMeta { customer: Some("acme"), tag: Some("crm-42"), ..DidMeta::default() })
        );
    }

    #[test]
    fn routing_skips_down_targets_and_overflows() {
        let r = router();
        let us = r.trunk("us").unwrap();
        let RouteDecision::Did { route, .. } = r.route(us, b"5551240100", None) else { panic!() };
        let uris = |r: &Router| -> Vec<String> {
            r.candidates(route.set(), 0).map(|u| r.targets().uri(u).unwrap().to_owned()).collect()
        };
        assert_eq!(uris(&r), ["sip:10.0.0.10:5060", "sip:10.0.0.11:5060"]);
        let pbx1 = r.targets().set_uris(route.set()).to_vec();
        let flags = r.up_flags().clone();
        let t0 = std::time::Instant::now();
        let mut health = health::HealthTracker::new(
            health::HealthSettings::from(&control::config::HealthConfig::default()),
            flags,
            t0,
        );
        for uri in &pbx1 {
            for _ in 0..3 {
                health.on_result(*uri, t0, health::ProbeOutcome::TransportError);
            }
        }
        // No probe was in flight, so those results were ignored.
        assert_eq!(uris(&r).len(), 2);
        let mut probes = Vec::new();
        for round in 0..3u64 {
            let now = t0 + std::time::Duration::from_secs(30 * round + 29);
            probes.clear();
            health.due(now, &mut probes, &mut Vec::new());
            for &uri in &probes {
                let outcome = if pbx1.contains(&uri) {
                    health::ProbeOutcome::TransportError
                } else {
                    health::ProbeOutcome::Response { status: 200, retry_after: None }
                };
                health.on_result(uri, now, outcome);
            }
        }
        assert_eq!(health.stats().went_down, 2);
        assert_eq!(uris(&r), ["sip:10.0.2.10"], "every pbx1 URI down: the overflow target");
    }

    #[test]
    fn a_rebuilt_router_shares_the_did_table_and_keeps_set_ids_and_health() {
        let r = router();
        let pbx1_uri = r.targets().uri_id("sip:10.0.0.10:5060").unwrap();
        r.up_flags().set(pbx1_uri, false);
        // A target that sorts first is added, "queue" goes, pbx1 loses a URI.
        let text = CONFIG
            .replace(
                "name = \"queue\"\nuris = [\"sip:10.0.1.10\"]",
                "name = \"aaa\"\nuris = [\"sip:10.0.3.3\"]",
            )
            .replace("target = \"queue\"", "target = \"aaa\"")
            .replace("\"sip:10.0.0.10:5060\", \"sip:10.0.0.11:5060\"", "\"sip:10.0.0.10:5060\"");
        let next = r.rebuild(&Config::from_toml(&text).unwrap()).unwrap();
        assert_eq!(next.targets().id("pbx1"), r.targets().id("pbx1"), "ids kept by name");
        assert_eq!(next.targets().id("aaa"), r.targets().id("queue"), "the hole is reused");
        let next_pbx1 = next.targets().uri_id("sip:10.0.0.10:5060").unwrap();
        assert!(!next.up_flags().is_up(next_pbx1), "health carried over by URI");
        // One table for both: a DID written through the new router routes through the old.
        let n = E164::parse_plus("+15557770000").unwrap();
        let pbx1 = next.targets().id("pbx1").unwrap();
        next.table().upsert(n, pbx1, None, &DidMeta::default()).unwrap();
        assert_eq!(target_of(&r, r.lookup(n)), Some("pbx1"));
        assert_eq!(target_of(&next, next.lookup(n)), Some("pbx1"));
        let us = next.trunk("us").unwrap();
        assert_eq!(target_of(&next, next.route(us, b"5551240100", None)), Some("pbx1"), "blocks rebuilt");
    }

    #[test]
    fn bad_blocks_are_refused() {
        let text = CONFIG.replace("first = \"+15551240000\"", "first = \"+15551239999\"")
            + "[[did_range]]\nfirst = \"+15551240050\"\nlast = \"+15551240060\"\ntarget = \"pbx1\"\n";
        let err = Router::from_config(&Config::from_toml(&text).unwrap()).unwrap_err();
        assert!(matches!(err, BuildError::Blocks(BlockError::Overlap(..))), "{err}");
    }
}
