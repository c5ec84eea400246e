//! Admission, the first phase of every request: source address → trunk (ACL), then for a new
//! call the trunk's CPS and concurrent-call limits. Sources outside every trunk get no answer at
//! all; every refusal is counted by reason.
//!
//! A [`Guard`] is immutable: a policy change builds the next one with [`Guard::rebuild`], which
//! keeps each trunk's calls in progress and counters by the trunk's name (its identity), and the
//! per-DID counts. An admitted call holds a [`CallHold`]: it gives the trunk's (and DID's) slot
//! back when dropped, whichever guard is current by then — even one without its trunk.

mod acl;
mod did_calls;
mod limits;
mod prefilter;

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use control::config::{Config, Trunk};

pub use acl::{OverlapError, SourceAcl, TrunkIdx};
pub use did_calls::DidCalls;
pub use limits::{LimitRefusal, RETRY_AFTER_MIN_SECS, TrunkLimits};
pub use prefilter::Prefilter;

/// Why admission refused a request, and what the caller gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The source is in no trunk: drop silently (no reply, no fingerprint).
    UnknownSource,
    /// Over the trunk's CPS: 503 with Retry-After.
    Cps {
        /// Seconds for the Retry-After header.
        retry_after_secs: u32,
    },
    /// Over the trunk's concurrent-call limit: the trunk's configured code (503 or 486).
    Concurrency {
        /// SIP status code to answer with.
        code: u16,
    },
}

/// One trunk as admission sees it.
#[derive(Debug)]
pub struct TrunkState {
    /// The trunk's name (its identity across policy changes; the metrics label).
    pub name: String,
    /// CPS and concurrency.
    pub limits: TrunkLimits,
    /// Code for concurrency refusals.
    pub concurrency_code: u16,
    /// Counters (kept across policy changes).
    pub counters: Arc<TrunkCounters>,
}

/// Per-trunk call counters (monotonic).
#[derive(Debug, Default)]
pub struct TrunkCounters {
    /// New calls offered by the trunk.
    pub offered: AtomicU64,
    /// New calls admitted.
    pub admitted: AtomicU64,
    /// Refused: over CPS.
    pub refused_cps: AtomicU64,
    /// Refused: over concurrent calls.
    pub refused_concurrency: AtomicU64,
    /// Refused: over the called DID's concurrent calls.
    pub refused_did_concurrency: AtomicU64,
    /// Refused: the number is not routed (404).
    pub refused_unknown_did: AtomicU64,
    /// Refused: no target could take the call (every target down, or none answered in time).
    pub refused_no_target: AtomicU64,
}

/// The admission policy built from one configuration; shared by all workers.
#[derive(Debug)]
pub struct Guard {
    acl: SourceAcl,
    trunks: Vec<Arc<TrunkState>>,
    unknown_source: Arc<AtomicU64>,
    did_calls: Arc<DidCalls>,
}

/// An admitted call's slot on its trunk and, once counted, on its DID; both are given back
/// when the hold is dropped (call failed, ended, expired, or never tracked).
#[derive(Debug)]
pub struct CallHold {
    trunk: Arc<TrunkState>,
    did: Option<(Arc<DidCalls>, u64)>,
}

impl CallHold {
    /// Counts this call, on the trunk it was admitted by, as refused because no target could
    /// take it.
    pub fn refused_no_target(&self) {
        self.trunk.counters.refused_no_target.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for CallHold {
    fn drop(&mut self) {
        self.trunk.limits.release();
        if let Some((calls, did)) = &self.did {
            calls.release(*did);
        }
    }
}

fn cps_of(t: &Trunk) -> NonZeroU32 {
    NonZeroU32::new(t.cps).unwrap_or(NonZeroU32::MIN)
}

impl Guard {
    /// Builds admission from a validated configuration.
    pub fn from_config(config: &Config) -> Result<Arc<Self>, OverlapError> {
        Self::build(config, &HashMap::new(), Arc::default(), Arc::default())
    }

    /// The next guard for a changed configuration: trunks that keep their name keep their calls
    /// in progress and counters (new limits apply to the next call); per-DID counts carry over.
    pub fn rebuild(&self, config: &Config) -> Result<Arc<Self>, OverlapError> {
        let previous = self.trunks.iter().map(|t| (t.name.as_str(), &**t)).collect();
        Self::build(config, &previous, Arc::clone(&self.unknown_source), Arc::clone(&self.did_calls))
    }

    fn build(
        config: &Config,
        previous: &HashMap<&str, &TrunkState>,
        unknown_source: Arc<AtomicU64>,
        did_calls: Arc<DidCalls>,
    ) -> Result<Arc<Self>, OverlapError> {
        let acl = SourceAcl::build(
            config
                .trunks
                .iter()
                .enumerate()
                .map(|(i, t)| (TrunkIdx::try_from(i).unwrap_or(TrunkIdx::MAX), t.sources.as_slice())),
        )?;
        let trunks = config
            .trunks
            .iter()
            .map(|t| {
                let (limits, counters) = match previous.get(t.name.as_str()) {
                    Some(old) => (old.limits.reconfigured(cps_of(t), t.max_calls), Arc::clone(&old.counters)),
                    None => (TrunkLimits::new(cps_of(t), t.max_calls), Arc::default()),
                };
                Arc::new(TrunkState {
                    name: t.name.clone(),
                    limits,
                    concurrency_code: t.over_capacity_code,
                    counters,
                })
            })
            .collect();
        Ok(Arc::new(Self { acl, trunks, unknown_source, did_calls }))
    }

    /// The trunk a datagram's source belongs to, or [`Refusal::UnknownSource`] (counted).
    pub fn source(&self, addr: IpAddr) -> Result<TrunkIdx, Refusal> {
        self.acl.lookup(addr).ok_or_else(|| {
            self.unknown_source.fetch_add(1, Ordering::Relaxed);
            Refusal::UnknownSource
        })
    }

    /// Admits a new call (initial INVITE) on a trunk. On success the call holds a concurrency
    /// slot until the returned hold is dropped.
    pub fn admit_call(&self, trunk: TrunkIdx) -> Result<CallHold, Refusal> {
        let Some(t) = self.trunk(trunk) else {
            return Err(Refusal::UnknownSource);
        };
        t.counters.offered.fetch_add(1, Ordering::Relaxed);
        match t.limits.try_admit() {
            Ok(()) => {
                t.counters.admitted.fetch_add(1, Ordering::Relaxed);
                Ok(CallHold { trunk: Arc::clone(t), did: None })
            }
            Err(LimitRefusal::Cps { retry_after_secs }) => {
                t.counters.refused_cps.fetch_add(1, Ordering::Relaxed);
                Err(Refusal::Cps { retry_after_secs })
            }
            Err(LimitRefusal::Concurrency) => {
                t.counters.refused_concurrency.fetch_add(1, Ordering::Relaxed);
                Err(Refusal::Concurrency { code: t.concurrency_code })
            }
        }
    }

    /// Counts an admitted call on the DID it calls, allowed `max` concurrent calls; on refusal
    /// the hold is dropped (its trunk slot goes back) and the trunk's refusal code applies.
    pub fn admit_did_call(&self, mut hold: CallHold, did: u64, max: u32) -> Result<CallHold, Refusal> {
        if self.did_calls.try_admit(did, max) {
            hold.did = Some((Arc::clone(&self.did_calls), did));
            return Ok(hold);
        }
        hold.trunk.counters.refused_did_concurrency.fetch_add(1, Ordering::Relaxed);
        Err(Refusal::Concurrency { code: hold.trunk.concurrency_code })
    }

    /// Calls active on a DID.
    pub fn did_active(&self, did: u64) -> u32 {
        self.did_calls.active(did)
    }

    /// Counts a new call refused because its number is not routed.
    pub fn refused_unknown_did(&self, trunk: TrunkIdx) {
        if let Some(t) = self.trunk(trunk) {
            t.counters.refused_unknown_did.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn trunk(&self, trunk: TrunkIdx) -> Option<&Arc<TrunkState>> {
        self.trunks.get(usize::try_from(trunk).ok()?)
    }

    /// Every trunk, indexed by [`TrunkIdx`].
    pub fn trunks(&self) -> &[Arc<TrunkState>] {
        &self.trunks
    }

    /// Datagrams dropped because their source is in no trunk (under any guard so far).
    pub fn unknown_source_drops(&self) -> u64 {
        self.unknown_source.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
[[trunk]]
name = "carrier-a"
sources = ["203.0.113.0/24"]
cps = 1
max_calls = 5
[[trunk]]
name = "carrier-b"
sources = ["2001:db8::/32"]
cps = 100
max_calls = 1
over_capacity_code = 486
"#;

    #[test]
    fn unknown_sources_are_refused_silently_and_counted() {
        let g = Guard::from_config(&Config::from_toml(CONFIG).unwrap()).unwrap();
        assert_eq!(g.source("203.0.113.9".parse().unwrap()), Ok(0));
        assert_eq!(g.source("2001:db8::9".parse().unwrap()), Ok(1));
        assert_eq!(g.source("192.0.2.1".parse().unwrap()), Err(Refusal::UnknownSource));
        assert_eq!(g.unknown_source_drops(), 1);
    }

    #[test]
    fn refusals_carry_their_answer_and_are_counted_by_reason() {
        let g = Guard::from_config(&Config::from_toml(CONFIG).unwrap()).unwrap();
        let _a = g.admit_call(0).unwrap();
        assert!(matches!(g.admit_call(0), Err(Refusal::Cps { retry_after_secs }) if retry_after_secs >= 1));
        let b = g.admit_call(1).unwrap();
        assert_eq!(g.admit_call(1).unwrap_err(), Refusal::Concurrency { code: 486 });
        drop(b);
        let _b = g.admit_call(1).unwrap();
        let a = &g.trunks()[0].counters;
        assert_eq!(a.offered.load(Ordering::Relaxed), 2);
        assert_eq!(a.refused_cps.load(Ordering::Relaxed), 1);
        let b = &g.trunks()[1].counters;
        assert_eq!(b.refused_concurrency.load(Ordering::Relaxed), 1);
        assert_eq!(b.admitted.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_rebuild_keeps_trunks_by_name_and_holds_release_into_any_guard() {
        let g = Guard::from_config(&Config::from_toml(CONFIG).unwrap()).unwrap();
        let on_b = g.admit_call(1).unwrap();
        let on_a = g.admit_call(0).unwrap();
        let on_a = g.admit_did_call(on_a, 15551230000, 1).unwrap();
        // carrier-a goes; carrier-b gets a new source, max_calls 2 and moves to index 0.
        let changed = r#"
[[trunk]]
name = "carrier-b"
sources = ["2001:db8::/32", "192.0.2.0/24"]
max_calls = 2
"#;
        let g2 = g.rebuild(&Config::from_toml(changed).unwrap()).unwrap();
        assert_eq!(g2.source("192.0.2.1".parse().unwrap()), Ok(0), "the new source is admitted");
        assert_eq!(g2.source("203.0.113.9".parse().unwrap()), Err(Refusal::UnknownSource));
        assert_eq!(g2.unknown_source_drops(), 1, "the drop counter carries over");
        let b = &g2.trunks()[0];
        assert_eq!((b.name.as_str(), b.limits.active()), ("carrier-b", 1), "the call in progress counts");
        assert_eq!(b.counters.admitted.load(Ordering::Relaxed), 1, "counters carry over");
        let second = g2.admit_call(0).unwrap();
        assert_eq!(g2.admit_call(0).unwrap_err(), Refusal::Concurrency { code: 503 }, "new max_calls: 2");
        assert_eq!(g2.did_active(15551230000), 1, "DID counts carry over");
        // The removed trunk's call ends: its slots go back, nothing underflows.
        drop(on_a);
        assert_eq!(g2.did_active(15551230000), 0);
        drop((on_b, second));
        assert_eq!((g2.trunks()[0].limits.active(), g2.trunks()[0].limits.release_underflows()), (0, 0));
    }
}
