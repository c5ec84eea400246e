//! Policy snapshots: what the data plane routes and admits by, published after every commit.
//!
//! The store is the source of truth. After each committed change the control plane builds a new
//! immutable [`Policy`] (trunks, targets, number blocks, blocklist: small) and swaps it in with
//! [`arc_swap::ArcSwap`], then sends a [`PolicyEvent`] saying what changed:
//!
//! - [`PolicyChange::Did`]: one DID was added, changed, freed or deleted — apply it in place;
//! - [`PolicyChange::Dids`]: many DIDs changed (bulk import, config import) — load the whole set
//!   with [`Publisher::each_routed_did`], build the table aside, swap it;
//! - [`PolicyChange::Admission`]: trunks, ACLs, limits, targets, blocks or the blocklist changed —
//!   build the next admission and routing state aside from [`Publisher::current`] and swap it in
//!   whole;
//! - [`PolicyChange::Rebuild`]: both of the above (a configuration import).
//!
//! Every kind is live: the data plane's follower (`edge::route::live`) applies each event as it
//! arrives, typically within a millisecond of the commit. Snapshots are published before their
//! event is sent, so [`Publisher::current`] is never older than the last event received.
//!
//! Exact DIDs (up to millions) are not in the snapshot: copying them on every change would cost
//! more than the change. A consumer subscribes first, then loads the full set (which carries its
//! version), then applies the events whose version is newer. A receiver that lags behind the
//! event buffer ([`EVENT_BUFFER`]) gets `RecvError::Lagged` and must reload the full set.
//! Versions are shared by every kind of change, so a full DID set may be newer than the snapshot
//! a consumer last built from: it may name a target that the consumer learns of from
//! [`Publisher::current`] a moment later.
//!
//! In-flight dialogs are not affected by any of this: they keep the route they were given and
//! the trunk slot they hold, whatever the next snapshot says.

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use ipnet::IpNet;
use tokio::sync::broadcast;

use crate::config::{Config, Did};
use crate::store::{Store, StoreError};

/// Policy events buffered per subscriber before it lags and must reload.
pub const EVENT_BUFFER: usize = 65_536;

/// One immutable snapshot of the routing and admission state.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Monotonic version; every commit increments it (it survives restarts: it is in the store).
    pub version: u64,
    /// Trunks (with their sources: the allow-list and their limits), targets and number blocks,
    /// plus the file-only sections (`edge`, `control`, `xdp`) of the running configuration.
    /// `config.dids` is always empty: exact DIDs come from [`Publisher::each_routed_did`] and events.
    pub config: Config,
    /// Blocked sources in force, with their expiry as Unix seconds (`None`: never).
    pub blocklist: Vec<Blocked>,
}

/// A blocked source network as the filters need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocked {
    /// The network.
    pub cidr: IpNet,
    /// Unix time (seconds) when the block ends; `None`: never.
    pub expires_unix: Option<u64>,
}

/// What one commit changed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyChange {
    /// One DID: `routed` is the stored DID now routed (target, call limit, metadata), `None`
    /// when it was deleted or freed.
    Did {
        /// The E.164 number.
        number: String,
        /// The DID as stored (status in-use), or `None`: no longer routed (404).
        routed: Option<Box<Did>>,
    },
    /// Many DIDs: reload the whole set ([`Publisher::each_routed_did`]).
    Dids,
    /// Trunks, ACLs, limits, targets, number blocks or the blocklist: rebuild from the snapshot.
    Admission,
    /// Everything may have changed (configuration import): rebuild admission and reload DIDs.
    Rebuild,
    /// Nothing the data plane uses (tokens); the version still moves.
    None,
}

/// A change and the policy version it produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyEvent {
    /// Version after the change.
    pub version: u64,
    /// What changed.
    pub change: PolicyChange,
}

/// One routed (in-use) DID as the data plane loads it, borrowed from the store's row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoutedDid<'a> {
    /// E.164 number with `+`.
    pub number: &'a str,
    /// Target name.
    pub target: &'a str,
    /// Concurrent calls allowed; `None`: no per-DID limit.
    pub max_calls: Option<u32>,
    /// Customer.
    pub customer: Option<&'a str>,
    /// Group.
    pub group: Option<&'a str>,
    /// Tag.
    pub tag: Option<&'a str>,
    /// Description.
    pub description: Option<&'a str>,
}

impl<'a> RoutedDid<'a> {
    /// The routed view of a stored DID.
    pub fn of(did: &'a Did) -> Self {
        Self {
            number: &did.number,
            target: &did.target,
            max_calls: did.max_calls,
            customer: did.customer.as_deref(),
            group: did.group.as_deref(),
            tag: did.tag.as_deref(),
            description: did.description.as_deref(),
        }
    }
}

/// Publishes snapshots and change events. Shared by the control plane (writer) and the data
/// plane (readers).
#[derive(Debug)]
pub struct Publisher {
    current: ArcSwap<Policy>,
    events: broadcast::Sender<PolicyEvent>,
    db: PathBuf,
}

impl Publisher {
    /// A publisher starting at `initial`, reading full DID sets from the store at `db`.
    pub fn new(initial: Policy, db: PathBuf) -> Self {
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        Self { current: ArcSwap::from_pointee(initial), events, db }
    }

    /// The current snapshot (wait-free).
    pub fn current(&self) -> Arc<Policy> {
        self.current.load_full()
    }

    /// A stream of changes from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<PolicyEvent> {
        self.events.subscribe()
    }

    /// Streams the whole routed DID set to `f`, read from the store in one read transaction on
    /// a connection of its own (blocking: call it off any async or packet thread); returns the
    /// version the set belongs to. Nothing is collected: memory stays flat at any table size.
    pub fn each_routed_did<E: From<StoreError>>(
        &self,
        f: impl FnMut(RoutedDid<'_>) -> Result<(), E>,
    ) -> Result<u64, E> {
        Store::open(&self.db)?.each_routed_did(f)
    }

    /// Swaps in `policy` and announces `change` (the writer calls this after each commit, under
    /// its write lock, so versions are published in order).
    pub(crate) fn publish(&self, policy: Policy, change: PolicyChange) {
        let version = policy.version;
        self.current.store(Arc::new(policy));
        // No subscriber is not an error: the data plane may not be running.
        let _ = self.events.send(PolicyEvent { version, change });
    }
}

#[cfg(test)]
impl PolicyChange {
    /// For a DID event: its number and the target it now routes to (`None`: not routed).
    pub(crate) fn did_target(&self) -> Option<(&str, Option<&str>)> {
        match self {
            PolicyChange::Did { number, routed } => {
                Some((number, routed.as_ref().map(|d| d.target.as_str())))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
impl Publisher {
    /// The routed set as `(number, target)` pairs, and its version.
    pub(crate) fn routed_pairs(&self) -> (u64, Vec<(String, String)>) {
        Store::open(&self.db).expect("store").routed_pairs()
    }
}
