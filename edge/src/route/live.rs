//! Live changes from the control plane, applied to the running data plane as they are
//! published (the end-to-end test `tests/tests/live_changes.rs` measures the delay):
//!
//! - one DID ([`PolicyChange::Did`]): upserted or removed in the running table while lookups
//!   go on;
//! - many DIDs ([`PolicyChange::Dids`]): every routed DID loaded into a table built aside, then
//!   swapped in;
//! - trunks, sources, limits, targets, number blocks ([`PolicyChange::Admission`]): the next
//!   generation of admission and routing is built aside from the published snapshot and swapped
//!   in whole ([`Generations::install`]). [`Guard::rebuild`] keeps each trunk's calls in
//!   progress and counters by the trunk's name (new limits apply to the next call);
//!   [`Router::rebuild`] keeps each target's set id by name, so the exact-DID table stays valid
//!   and is shared rather than reloaded, and carries target health over by URI;
//! - a configuration import ([`PolicyChange::Rebuild`]): both.
//!
//! A snapshot whose trunks, targets and blocks equal the current generation's (a blocklist
//! change: the packet filter's business) builds nothing.
//!
//! Calls in progress keep the generation that admitted them: their failover, CANCEL and ACK go
//! where it said, and their trunk slot goes back to the trunk's count even when the trunk is
//! gone; a source no longer in any trunk (or target) is still heard for the CANCEL, ACK and
//! in-dialog requests of its calls in progress, and for nothing else. The next datagram is
//! admitted and routed by the new generation.
//!
//! One thread applies the events in version order. DID events write the table every generation
//! shares, so none falls between building a generation and swapping it in. Two versions say what
//! is applied: the admission state's (the snapshot it was built from) and the DID table's (the
//! store version of its last full load, then of each event); an event not newer is skipped.
//! A full DID load may read DIDs that name a target newer than the snapshot it was checked
//! against (the commit is published a moment after it is readable): it catches admission up
//! and tries again, a bounded number of times.

use std::sync::Arc;
use std::time::{Duration, Instant};

use control::config::Config;
use control::policy::{Policy, PolicyChange, PolicyEvent, Publisher, RoutedDid};
use control::store::StoreError;
use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::RecvError;

use super::{BuildError, DidMeta, DidTableBuilder, E164, Router};
use crate::guard::{Guard, OverlapError};

/// Full DID loads tried before giving up on a set that names an unknown target.
pub const RELOAD_ATTEMPTS: u32 = 5;
/// Pause between those tries (the control plane publishes within microseconds of a commit).
pub const RELOAD_RETRY_PAUSE: Duration = Duration::from_millis(20);

/// Why a live change could not be applied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LiveError {
    /// The store could not be read.
    #[error("reading the routed DIDs: {0}")]
    Store(#[from] StoreError),
    /// The routing state could not be built (e.g. a DID naming a target it does not know).
    #[error(transparent)]
    Build(#[from] BuildError),
    /// Two trunks claim one source network.
    #[error("trunk sources: {0}")]
    Sources(#[from] OverlapError),
}

/// The running data plane as the follower sees it: one generation of admission and routing
/// state at a time.
pub trait Generations {
    /// The current generation's admission state.
    fn guard(&self) -> Arc<Guard>;
    /// The current generation's routing state (its DID table is the one all generations share).
    fn router(&self) -> Arc<Router>;
    /// Swaps in the next generation; `now` is when (for the health probes it carries over).
    fn install(&self, guard: Arc<Guard>, router: Arc<Router>, now: Instant);
}

/// Builds the generation for `config` aside, from the current one (state carried over), and
/// swaps it in.
pub fn rebuild(live: &impl Generations, config: &Config, now: Instant) -> Result<(), LiveError> {
    let guard = live.guard().rebuild(config)?;
    let router = Arc::new(live.router().rebuild(config)?);
    live.install(guard, router, now);
    Ok(())
}

/// Loads every routed DID of the store (target, call limit, metadata) into a new table, built
/// aside, and swaps it in. Returns the store version it reflects.
pub fn reload_dids(router: &Router, publisher: &Publisher) -> Result<u64, LiveError> {
    // The running table's size is the best guess of the next one's.
    let mut builder = DidTableBuilder::with_capacity(router.table().len());
    let version = publisher.each_routed_did(|did| -> Result<(), LiveError> {
        let n = E164::parse_plus(did.number)
            .ok_or_else(|| BuildError::Number("did".into(), did.number.to_owned()))?;
        let set = router
            .targets()
            .id(did.target)
            .ok_or_else(|| BuildError::UnknownTarget(format!("did {}", did.number), did.target.to_owned()))?;
        builder
            .insert_new(n, set, did.max_calls, &meta_of(&did))
            .map_err(|e| BuildError::Table(did.number.to_owned(), e))?;
        Ok(())
    })?;
    router.replace_table(Arc::new(builder.build()));
    Ok(version)
}

/// The metadata a routed DID carries beside its route.
fn meta_of<'a>(did: &RoutedDid<'a>) -> DidMeta<'a> {
    DidMeta { customer: did.customer, group: did.group, tag: did.tag, description: did.description }
}

/// Applies the control plane's events to a running data plane, in order.
#[derive(Debug)]
pub struct Follower<'a, G> {
    live: &'a G,
    publisher: &'a Publisher,
    /// The configuration the current generation was built from.
    config: Config,
    /// Policy version the admission state reflects.
    admission_at: u64,
    /// Policy version the DID table reflects.
    dids_at: u64,
}

impl<'a, G: Generations> Follower<'a, G> {
    /// A follower of `live`, whose generation was built from `built_from` and whose DID table
    /// was loaded at version `dids_at`. Subscribe to the events before either was read.
    pub fn new(live: &'a G, publisher: &'a Publisher, built_from: &Policy, dids_at: u64) -> Self {
        Self { live, publisher, config: built_from.config.clone(), admission_at: built_from.version, dids_at }
    }

    /// A follower of `live` (built from `built_from`) that has loaded every routed DID into it,
    /// catching admission up first when the store already names a newer target. Subscribe to
    /// the events before calling this.
    pub fn start(live: &'a G, publisher: &'a Publisher, built_from: &Policy) -> Result<Self, LiveError> {
        let mut follower = Self::new(live, publisher, built_from, 0);
        follower.reload()?;
        Ok(follower)
    }

    /// Follows `events` until the control plane closes them.
    pub fn run(mut self, mut events: Receiver<PolicyEvent>) {
        loop {
            match events.blocking_recv() {
                Ok(event) => self.apply(&event),
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "live changes lagged: reloading admission and every DID");
                    if let Err(e) = self.reload() {
                        tracing::error!(error = %e, "live change: not reloaded");
                    }
                }
                Err(RecvError::Closed) => return,
            }
        }
    }

    /// Applies one event.
    pub fn apply(&mut self, event: &PolicyEvent) {
        let (newer_dids, newer_admission) = (event.version > self.dids_at, event.version > self.admission_at);
        let result = match &event.change {
            PolicyChange::Did { number, routed } => {
                if newer_dids {
                    self.apply_did(number, routed.as_deref().map(RoutedDid::of));
                    self.dids_at = event.version;
                }
                Ok(())
            }
            PolicyChange::Dids if newer_dids => self.reload(),
            PolicyChange::Admission if newer_admission => self.catch_up(),
            PolicyChange::Rebuild if newer_dids || newer_admission => self.reload(),
            PolicyChange::Dids | PolicyChange::Admission | PolicyChange::Rebuild | PolicyChange::None => {
                Ok(())
            }
            other => {
                tracing::warn!(
                    ?other,
                    "live change of a kind this build does not know: reloading everything"
                );
                self.reload()
            }
        };
        if let Err(e) = result {
            tracing::error!(version = event.version, error = %e, "live change not applied");
        }
    }

    /// Brings admission and routing to the published snapshot, if it changed them.
    fn catch_up(&mut self) -> Result<(), LiveError> {
        let policy = self.publisher.current();
        if policy.version <= self.admission_at {
            return Ok(());
        }
        if policy.config != self.config {
            let started = Instant::now();
            rebuild(self.live, &policy.config, started)?;
            self.config = policy.config.clone();
            tracing::info!(
                version = policy.version,
                micros = started.elapsed().as_micros() as u64,
                "live change: trunks, targets and limits swapped in"
            );
        }
        self.admission_at = policy.version;
        Ok(())
    }

    /// Admission first, then every routed DID into a new table.
    fn reload(&mut self) -> Result<(), LiveError> {
        let mut attempt = 1;
        loop {
            self.catch_up()?;
            match reload_dids(&self.live.router(), self.publisher) {
                Ok(version) => {
                    self.dids_at = version;
                    return Ok(());
                }
                Err(LiveError::Build(BuildError::UnknownTarget(..))) if attempt < RELOAD_ATTEMPTS => {
                    attempt += 1;
                    std::thread::sleep(RELOAD_RETRY_PAUSE);
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn apply_did(&mut self, number: &str, routed: Option<RoutedDid<'_>>) {
        let Some(n) = E164::parse_plus(number) else {
            tracing::warn!(%number, "live change: not an E.164 number");
            return;
        };
        let Some(did) = routed else {
            self.live.router().table().remove(n);
            return;
        };
        let target = did.target;
        let mut router = self.live.router();
        if router.targets().id(target).is_none() {
            // A target newer than the generation: an earlier rebuild failed; try again.
            if let Err(e) = self.catch_up() {
                tracing::warn!(error = %e, "live change: admission not caught up");
            }
            router = self.live.router();
        }
        match router.targets().id(target) {
            Some(set) => {
                if let Err(e) = router.table().upsert(n, set, did.max_calls, &meta_of(&did)) {
                    tracing::warn!(%number, error = %e, "live change: DID not applied");
                }
            }
            None => tracing::warn!(%number, target, "live change: DID names an unknown target"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use control::config::Did;
    use control::metrics::Metrics;
    use control::plane::ControlPlane;
    use control::store::WriteMode;

    use super::*;
    use crate::proxy::{Engine, EngineConfig};
    use crate::route::RouteDecision;

    /// A database in a fresh directory, removed on drop.
    struct TempDb(PathBuf);

    impl TempDb {
        fn new() -> Self {
            let n = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
            let dir = std::env::temp_dir().join(format!("sipedge-live-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }
    }

    impl Drop for TempDb {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const CONFIG: &str = r#"
[[trunk]]
name = "carrier"
sources = ["192.0.2.0/24"]
[[target]]
name = "pbx"
uris = ["sip:198.51.100.10:5060"]
[[did]]
number = "+15551230000"
target = "pbx"
"#;

    fn target_of(engine: &Engine, number: &str) -> Option<String> {
        let router = engine.router();
        match router.lookup(E164::parse_plus(number).unwrap()) {
            RouteDecision::Did { route, .. } => router.targets().name(route.set()).map(str::to_owned),
            _ => None,
        }
    }

    fn parsed(text: &str) -> Config {
        Config::from_toml(text).unwrap()
    }

    #[test]
    fn events_apply_in_order_and_a_full_reload_catches_admission_up_first() {
        let dir = TempDb::new();
        let mut config = parsed(CONFIG);
        config.control.db = dir.0.join("store.db");
        let (plane, _) = ControlPlane::open(&config, Arc::new(Metrics::new())).unwrap();
        let publisher = plane.publisher();
        let mut events = publisher.subscribe();
        let snapshot = publisher.current();
        let router = Arc::new(Router::from_config(&snapshot.config).unwrap());
        let dids_at = reload_dids(&router, publisher).unwrap();
        let guard = Guard::from_config(&snapshot.config).unwrap();
        let engine = Engine::new(guard, router, EngineConfig::default());
        let mut follower = Follower::new(&engine, publisher, &snapshot, dids_at);
        assert_eq!(target_of(&engine, "+15551230000").as_deref(), Some("pbx"));

        // A target named to sort first, a DID to it, a new trunk source.
        let aaa = parsed("[[target]]\nname = \"aaa\"\nuris = [\"sip:198.51.100.20\"]\n").targets.remove(0);
        plane.write_only(|s| s.put_target("test", &aaa, WriteMode::Upsert)).unwrap();
        plane.write(|s| s.put_did("test", &Did::new("+15551230001", "aaa"), WriteMode::Upsert)).unwrap();
        let trunk =
            parsed("[[trunk]]\nname = \"carrier\"\nsources = [\"192.0.2.0/24\", \"198.18.0.0/24\"]\n");
        plane.write_only(|s| s.put_trunk("test", &trunk.trunks[0], WriteMode::Upsert)).unwrap();
        while let Ok(event) = events.try_recv() {
            follower.apply(&event);
        }
        assert_eq!(target_of(&engine, "+15551230001").as_deref(), Some("aaa"));
        assert_eq!(target_of(&engine, "+15551230000").as_deref(), Some("pbx"), "set ids kept by name");
        assert_eq!(engine.guard().source("198.18.0.9".parse().unwrap()), Ok(0));

        // A full reload that sees a DID naming a target whose Admission event is still queued.
        let bbb = parsed("[[target]]\nname = \"bbb\"\nuris = [\"sip:198.51.100.30\"]\n").targets.remove(0);
        plane.write_only(|s| s.put_target("test", &bbb, WriteMode::Upsert)).unwrap();
        let (_, version) = plane
            .write(|s| {
                s.put_did("test", &Did::new("+15551230002", "bbb"), WriteMode::Upsert)
                    .map(|(d, c)| ((d, c.version), c))
            })
            .unwrap();
        follower.apply(&PolicyEvent { version, change: PolicyChange::Dids });
        assert_eq!(target_of(&engine, "+15551230002").as_deref(), Some("bbb"));
        // The queued events are older than what is applied: skipped, nothing changes.
        while let Ok(event) = events.try_recv() {
            follower.apply(&event);
        }
        assert_eq!(target_of(&engine, "+15551230002").as_deref(), Some("bbb"));
        assert_eq!(target_of(&engine, "+15551230001").as_deref(), Some("aaa"));
    }

    /// The call limit and customer the running table holds for `number`.
    fn limit_and_customer(engine: &Engine, number: &str) -> (Option<u32>, Option<String>) {
        let router = engine.router();
        let table = router.table();
        let route = table.get(E164::parse_plus(number).unwrap().key()).expect("routed");
        (route.max_calls(), table.with_meta(route.meta(), |m| m.customer.map(str::to_owned)))
    }

    #[test]
    fn call_limits_and_metadata_survive_full_loads_and_single_changes() {
        let dir = TempDb::new();
        let mut config = parsed(CONFIG);
        config.control.db = dir.0.join("store.db");
        let (plane, _) = ControlPlane::open(&config, Arc::new(Metrics::new())).unwrap();
        let limited =
            Did { max_calls: Some(2), customer: Some("acme".into()), ..Did::new("+15551230007", "pbx") };
        plane.write(|s| s.put_did("test", &limited, WriteMode::Upsert)).unwrap();
        let publisher = plane.publisher();
        let mut events = publisher.subscribe();
        let snapshot = publisher.current();
        let router = Arc::new(Router::from_config(&snapshot.config).unwrap());
        let dids_at = reload_dids(&router, publisher).unwrap();
        let engine =
            Engine::new(Guard::from_config(&snapshot.config).unwrap(), router, EngineConfig::default());
        let mut follower = Follower::new(&engine, publisher, &snapshot, dids_at);
        assert_eq!(limit_and_customer(&engine, "+15551230007"), (Some(2), Some("acme".into())), "full load");

        let changed = Did { max_calls: Some(5), customer: Some("globex".into()), ..limited };
        plane.write(|s| s.put_did("test", &changed, WriteMode::Upsert)).unwrap();
        while let Ok(event) = events.try_recv() {
            follower.apply(&event);
        }
        assert_eq!(
            limit_and_customer(&engine, "+15551230007"),
            (Some(5), Some("globex".into())),
            "live change"
        );
    }
}
