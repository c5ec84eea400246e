//! DID routing: the Request-URI user → E.164 → `u64` key → DID table (exact, then range, then
//! longest prefix) → target set → a healthy target URI.
//!
//! [`Router`] holds the trunks' numbering plans, the target sets and their up/down flags, the
//! exact-DID table and the number blocks. The table and the blocks sit behind `arc-swap`:
//! lookups never wait for a bulk import, which builds a whole new table aside and swaps it in
//! ([`Router::replace_table`]); single upserts and deletes go to the live table
//! ([`Router::table`]) while lookups run.

pub mod blocks;
pub mod csv_import;
pub mod e164;
pub mod health;
pub mod meta;
pub mod table;
pub mod targets;

use std::sync::Arc;

use arc_swap::ArcSwap;
use control::config::Config;

pub use blocks::{BlockError, BlockMatch, Blocks};
pub use e164::{E164, Normalised, NumberingPlan, Refusal};
pub use meta::{DidMeta, MetaId};
pub use table::{DidRoute, DidTable, MemoryReport, TableError};
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
    trunks: Box<[TrunkPlan]>,
    targets: Arc<TargetSets>,
    up: Arc<UpFlags>,
    table: ArcSwap<DidTable>,
    blocks: ArcSwap<Blocks>,
}

impl Router {
    /// Builds from a validated configuration: plans, targets, `[[did]]` and `[[did_range]]`.
    pub fn from_config(config: &Config) -> Result<Self, BuildError> {
        let targets = Arc::new(TargetSets::from_config(&config.targets)?);
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
        let mut table = DidTable::with_capacity(config.dids.len());
        insert_config_dids(config, &targets, &mut table)?;
        let blocks = build_blocks(config, &targets)?;
        let up = Arc::new(UpFlags::all_up(targets.uris().len()));
        Ok(Self {
            trunks: trunks.into(),
            targets,
            up,
            table: ArcSwap::from_pointee(table),
            blocks: ArcSwap::from_pointee(blocks),
        })
    }

    /// The id of the trunk named `name`.
    pub fn trunk(&self, name: &str) -> Option<TrunkId> {
        self.trunks.iter().position(|t| &*t.name == name).map(|i| TrunkId(i as u32))
    }

    /// Routes a call: normalises `user` (and a `tel:` URI's `phone-context`) by the trunk's
    /// plan, then looks the number up. Allocation-free.
    #[inline]
    pub fn route(&self, trunk: TrunkId, user: &[u8], phone_context: Option<&[u8]>) -> RouteDecision {
        let Some(t) = self.trunks.get(trunk.0 as usize) else {
            return RouteDecision::Refuse(RefuseReason::UnknownTrunk);
        };
        match t.plan.normalise(user, phone_context) {
            Normalised::Number(n) => self.lookup(n),
            Normalised::Emergency => match t.emergency {
                Some(target) => RouteDecision::Emergency { target },
                None => RouteDecision::Refuse(RefuseReason::NoEmergencyTarget),
            },
            Normalised::Refused(r) => RouteDecision::Refuse(RefuseReason::Number(r)),
        }
    }

    /// Looks an E.164 number up: exact DID, then range, then longest prefix.
    #[inline]
    pub fn lookup(&self, number: E164) -> RouteDecision {
        if let Some(route) = self.table.load().get(number.key()) {
            return RouteDecision::Did { number, route, matched: MatchKind::Exact };
        }
        match self.blocks.load().lookup(number) {
            Some(BlockMatch::Range(route)) => RouteDecision::Did { number, route, matched: MatchKind::Range },
            Some(BlockMatch::Prefix(route, len)) => {
                RouteDecision::Did { number, route, matched: MatchKind::Prefix(len) }
            }
            None => RouteDecision::Refuse(RefuseReason::UnknownDid),
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

/// Inserts the configuration's `[[did]]` entries into `table`.
pub fn insert_config_dids(
    config: &Config,
    targets: &TargetSets,
    table: &mut DidTable,
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

fn build_blocks(config: &Config, targets: &TargetSets) -> Result<Blocks, BuildError> {
    let mut prefixes = Vec::new();
    let mut ranges = Vec::new();
    for (i, r) in config.did_ranges.iter().enumerate() {
        let field = format!("did_range[{i}]");
        let set = targets
            .id(&r.target)
            .ok_or_else(|| BuildError::UnknownTarget(field.clone(), r.target.clone()))?;
        let route = DidRoute::new(set, None, MetaId::default())
            .ok_or_else(|| BuildError::Table(field.clone(), TableError::OutOfRange))?;
        let parse =
            |s: &String| E164::parse_plus(s).ok_or_else(|| BuildError::Number(field.clone(), s.clone()));
        match (&r.prefix, &r.first, &r.last) {
            (Some(p), _, _) => prefixes.push((parse(p)?, route)),
            (None, Some(first), Some(last)) => ranges.push((parse(first)?, parse(last)?, route)),
            _ => return Err(BuildError::Number(field, String::new())),
        }
    }
    Ok(Blocks::new(prefixes, ranges)?)
}
