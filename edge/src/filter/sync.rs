//! Keeps the running packet filter in step with the store. A thread of its own follows the
//! policy events; on a change of trunks, ACLs, targets or the blocklist (`Admission`,
//! `Rebuild`, or a lag that may have hidden one) it re-derives the allow-list and blocklist from
//! the current snapshot and applies what differs to the filter that runs: the XDP maps (only
//! changed trie entries are written) or the user-space filter (its lists swapped whole). Every
//! [`SWEEP_INTERVAL`] it sweeps expired blocklist entries (the program checks expiry itself;
//! the sweep frees their slots).
//!
//! The store is the blocklist's source of truth: at start the XDP blocklist is made exactly the
//! store's; afterwards entries the store adds or removes are added or removed, and entries put
//! in by `sipedge xdp block` stay until they expire or sipedge restarts.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use control::metrics::{Layer, Metrics};
use control::policy::{Blocked, Policy as Snapshot, PolicyChange, PolicyEvent, Publisher};
use ebpf::XdpFilter;

use super::metrics::FilterMetrics;
use crate::guard::Prefilter;
use ipnet::IpNet;
use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::RecvError;

use super::allow_list;

/// How often expired blocklist entries are swept (and how long a stop request may wait).
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// Nanoseconds per second.
const NANOS_PER_SEC: u128 = 1_000_000_000;

/// The filter that runs, as the sync thread writes it.
#[derive(Debug)]
pub enum ActiveFilter {
    /// XDP in the kernel: its maps.
    Kernel(Box<XdpFilter>),
    /// The user-space filter the workers call, through their prefilter.
    Userspace(Arc<Prefilter>),
}

/// What one [`FilterSync::apply`] changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    /// The allow-list differed from the last one applied.
    pub allow_changed: bool,
    /// Blocklist entries added (or given a new deadline).
    pub blocked: usize,
    /// Blocklist entries removed.
    pub unblocked: usize,
}

/// Applies snapshots to the active filter, remembering what it applied last.
#[derive(Debug)]
pub struct FilterSync {
    active: ActiveFilter,
    /// `CLOCK_MONOTONIC` deadline of each `(cidr, expires_unix)` seen, computed once so that
    /// a re-derived blocklist compares equal to the applied one.
    deadlines: HashMap<(IpNet, u64), u64>,
    allow: Option<HashSet<(IpNet, u32)>>,
    block: Option<HashMap<IpNet, u64>>,
    metrics: Option<FilterMetrics>,
}

impl FilterSync {
    /// Syncs `active`; nothing applied yet.
    pub fn new(active: ActiveFilter) -> Self {
        Self { active, deadlines: HashMap::new(), allow: None, block: None, metrics: None }
    }

    /// Also exports the filter's verdict counters to `metrics` (at every [`FilterSync::sweep`]).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        // Pinned XDP counters carry what earlier runs counted: export from here on. The
        // prefilter's start at zero with this process.
        let (layer, baseline) = match &mut self.active {
            ActiveFilter::Kernel(f) => (Layer::Xdp, f.maps().and_then(|m| m.stats()).ok()),
            ActiveFilter::Userspace(p) => (Layer::User, Some(p.stats())),
        };
        self.metrics = Some(FilterMetrics::new(metrics, layer, baseline));
        self
    }

    /// Makes the filter's allow-list and blocklist those of `snapshot`.
    pub fn apply(&mut self, snapshot: &Snapshot) -> Result<Applied, ebpf::Error> {
        let mut applied = Applied::default();
        let allow = allow_list(&snapshot.config);
        let allow_set: HashSet<(IpNet, u32)> = allow.iter().copied().collect();
        if self.allow.as_ref() != Some(&allow_set) {
            match &mut self.active {
                ActiveFilter::Kernel(f) => {
                    f.maps()?.sync_allow_list(&allow)?;
                }
                ActiveFilter::Userspace(f) => f.filter().set_allow_list(&allow)?,
            }
            self.allow = Some(allow_set);
            applied.allow_changed = true;
        }
        let block = self.block_deadlines(&snapshot.blocklist);
        let old = self.block.as_ref();
        let add: Vec<(IpNet, u64)> = block
            .iter()
            .filter(|(n, e)| old.and_then(|o| o.get(n)) != Some(e))
            .map(|(n, e)| (*n, *e))
            .collect();
        let remove: Vec<IpNet> =
            old.map(|o| o.keys().filter(|n| !block.contains_key(n)).copied().collect()).unwrap_or_default();
        let all = || -> Vec<(IpNet, u64)> { block.iter().map(|(n, e)| (*n, *e)).collect() };
        match &mut self.active {
            // The first time, the pinned maps may hold a previous run's entries: replace them.
            ActiveFilter::Kernel(f) if old.is_none() => {
                (applied.blocked, applied.unblocked) = f.maps()?.sync_blocklist(&all())?;
            }
            ActiveFilter::Kernel(f) => {
                if !add.is_empty() || !remove.is_empty() {
                    f.maps()?.update_blocklist(&add, &remove)?;
                }
                (applied.blocked, applied.unblocked) = (add.len(), remove.len());
            }
            ActiveFilter::Userspace(f) => {
                if old.is_none() || !add.is_empty() || !remove.is_empty() {
                    f.filter().set_blocklist(&all())?;
                }
                (applied.blocked, applied.unblocked) = (add.len(), remove.len());
            }
        }
        self.block = Some(block);
        Ok(applied)
    }

    /// Removes expired blocklist entries from the filter and samples its counters into the
    /// metrics; returns how many entries it removed.
    pub fn sweep(&mut self) -> Result<usize, ebpf::Error> {
        let now = ebpf::monotonic_ns();
        let (swept, stats) = match &mut self.active {
            ActiveFilter::Kernel(f) => {
                let maps = f.maps()?;
                (maps.sweep_expired(now)?, if self.metrics.is_some() { Some(maps.stats()?) } else { None })
            }
            ActiveFilter::Userspace(p) => {
                let before = p.filter().blocked().len();
                (before.saturating_sub(p.filter().sweep(now)), Some(p.stats()))
            }
        };
        if let (Some(m), Some(stats)) = (&mut self.metrics, stats) {
            m.sample(stats);
        }
        if let Some(block) = &mut self.block {
            block.retain(|_, &mut exp| exp == 0 || exp > now);
        }
        Ok(swept)
    }

    /// The in-force entries of a snapshot's blocklist with their `CLOCK_MONOTONIC` deadlines.
    fn block_deadlines(&mut self, blocked: &[Blocked]) -> HashMap<IpNet, u64> {
        let (mono_now, unix_now) = (ebpf::monotonic_ns(), unix_now_ns());
        let mut out = HashMap::new();
        let mut seen = HashSet::new();
        for b in blocked {
            let net = b.cidr.trunc();
            let exp = match b.expires_unix {
                None => 0,
                Some(unix) => {
                    seen.insert((net, unix));
                    let exp = match self.deadlines.get(&(net, unix)) {
                        Some(&e) => e,
                        None => {
                            let Some(left) = (u128::from(unix) * NANOS_PER_SEC).checked_sub(unix_now) else {
                                continue; // already over
                            };
                            let e = u64::try_from(u128::from(mono_now) + left).unwrap_or(u64::MAX).max(1);
                            self.deadlines.insert((net, unix), e);
                            e
                        }
                    };
                    if exp <= mono_now {
                        continue;
                    }
                    exp
                }
            };
            // Two entries for one network: the later deadline (0, never, outlasts all).
            let e = out.entry(net).or_insert(exp);
            if *e != 0 && (exp == 0 || exp > *e) {
                *e = exp;
            }
        }
        self.deadlines.retain(|k, _| seen.contains(k));
        out
    }
}

fn unix_now_ns() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

/// The running sync thread; [`SyncHandle::stop`] ends it.
#[derive(Debug)]
pub struct SyncHandle {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl SyncHandle {
    /// Asks the thread to stop and waits for it (at most about [`SWEEP_INTERVAL`]).
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

/// Subscribes to `publisher`, applies its current snapshot to `sync`'s filter (before
/// returning, so the filter is complete when traffic starts), and follows the changes on a
/// thread named `filter-sync`.
pub fn spawn(mut sync: FilterSync, publisher: Arc<Publisher>) -> std::io::Result<SyncHandle> {
    let events = publisher.subscribe();
    let start = Instant::now();
    match sync.apply(&publisher.current()) {
        Ok(a) => tracing::info!(?a, took_us = start.elapsed().as_micros(), "packet filter lists loaded"),
        Err(e) => tracing::error!(error = %ebpf::error_chain(&e), "packet filter lists not loaded"),
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build()?;
    let stop = Arc::new(AtomicBool::new(false));
    let stop_flag = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name("filter-sync".into())
        .spawn(move || runtime.block_on(follow(sync, &publisher, events, &stop_flag)))?;
    Ok(SyncHandle { stop, thread })
}

/// True for the changes that can move the allow-list or the blocklist.
fn concerns_filter(change: &PolicyChange) -> bool {
    !matches!(change, PolicyChange::Did { .. } | PolicyChange::Dids | PolicyChange::None)
}

async fn follow(
    mut sync: FilterSync,
    publisher: &Publisher,
    mut events: Receiver<PolicyEvent>,
    stop: &AtomicBool,
) {
    let mut last_sweep = Instant::now();
    // A failed apply is tried again at the next wake-up (an event, or the sweep interval).
    let mut retry = false;
    while !stop.load(Ordering::Relaxed) {
        let mut due = match tokio::time::timeout(SWEEP_INTERVAL, events.recv()).await {
            Ok(Ok(event)) => concerns_filter(&event.change),
            Ok(Err(RecvError::Lagged(missed))) => {
                tracing::warn!(missed, "packet filter sync lagged behind the policy events: full resync");
                true
            }
            Ok(Err(RecvError::Closed)) => return,
            Err(_idle) => false,
        };
        // Take every event already queued, so that a burst of changes costs one apply.
        loop {
            match events.try_recv() {
                Ok(event) => due |= concerns_filter(&event.change),
                Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => due = true,
                Err(_) => break,
            }
        }
        if due || retry {
            let start = Instant::now();
            let snapshot = publisher.current();
            let result = sync.apply(&snapshot);
            retry = result.is_err();
            match result {
                Ok(a) => tracing::debug!(
                    version = snapshot.version,
                    ?a,
                    took_us = start.elapsed().as_micros(),
                    "packet filter synced"
                ),
                Err(e) => tracing::error!(
                    version = snapshot.version,
                    error = %ebpf::error_chain(&e),
                    "packet filter not synced (retried every second)"
                ),
            }
        }
        if last_sweep.elapsed() >= SWEEP_INTERVAL {
            last_sweep = Instant::now();
            match sync.sweep() {
                Ok(0) => {}
                Ok(swept) => tracing::debug!(swept, "expired blocklist entries swept"),
                Err(e) => tracing::warn!(error = %ebpf::error_chain(&e), "blocklist sweep failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use control::config::Config;
    use ebpf::userspace::UserspaceFilter;

    fn unix_now_s() -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
    }

    #[test]
    fn an_unchanged_snapshot_writes_nothing_and_deadlines_convert_once() {
        let prefilter =
            Arc::new(Prefilter::new(Arc::new(UserspaceFilter::new(ebpf::Policy::default()).unwrap())));
        let mut sync = FilterSync::new(ActiveFilter::Userspace(Arc::clone(&prefilter)));
        let config = Config::from_toml("[[trunk]]\nname = \"a\"\nsources = [\"192.0.2.0/24\"]\n").unwrap();
        let net = |s: &str| -> IpNet { s.parse().unwrap() };
        let unix = unix_now_s();
        let snapshot = Snapshot {
            version: 1,
            config,
            blocklist: vec![
                Blocked { cidr: net("198.51.100.0/24"), expires_unix: Some(unix + 60) },
                Blocked { cidr: net("203.0.113.0/24"), expires_unix: Some(unix + 60) },
                Blocked { cidr: net("203.0.113.0/24"), expires_unix: None },
                Blocked { cidr: net("192.0.2.9/32"), expires_unix: Some(unix - 5) },
            ],
        };
        let mono = ebpf::monotonic_ns();
        let first = sync.apply(&snapshot).unwrap();
        assert_eq!(first, Applied { allow_changed: true, blocked: 2, unblocked: 0 });
        let mut blocked = prefilter.filter().blocked();
        blocked.sort();
        assert_eq!(blocked[1], (net("203.0.113.0/24"), 0), "never outlasts a deadline");
        let (n, exp) = blocked[0];
        assert_eq!(n, net("198.51.100.0/24"));
        assert!((mono + 58_000_000_000..mono + 61_000_000_000).contains(&exp), "about 60 s from now: {exp}");
        assert_eq!(sync.apply(&snapshot).unwrap(), Applied::default(), "same snapshot: nothing to write");
        let fewer = Snapshot { blocklist: snapshot.blocklist[..1].to_vec(), ..snapshot.clone() };
        assert_eq!(sync.apply(&fewer).unwrap(), Applied { allow_changed: false, blocked: 0, unblocked: 1 });
        assert_eq!(prefilter.filter().blocked(), [(n, exp)], "the kept entry keeps its deadline");
    }
}
