//! Admission, the first phase of every request: source address → trunk (ACL), then for a new
//! call the trunk's CPS and concurrent-call limits. Sources outside every trunk get no answer at
//! all; every refusal is counted by reason.

mod acl;
mod did_calls;
mod limits;
mod prefilter;

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use control::config::Config;

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
    /// The trunk's name (metrics label).
    pub name: String,
    /// CPS and concurrency.
    pub limits: TrunkLimits,
    /// Code for concurrency refusals.
    pub concurrency_code: u16,
    /// Counters.
    pub counters: TrunkCounters,
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
}

/// The admission policy built from one configuration; shared by all workers.
#[derive(Debug)]
pub struct Guard {
    acl: SourceAcl,
    trunks: Vec<TrunkState>,
    unknown_source: AtomicU64,
    did_calls: DidCalls,
}

impl Guard {
    /// Builds admission from a validated configuration.
    pub fn from_config(config: &Config) -> Result<Arc<Self>, OverlapError> {
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
            .map(|t| TrunkState {
                name: t.name.clone(),
                limits: TrunkLimits::new(NonZeroU32::new(t.cps).unwrap_or(NonZeroU32::MIN), t.max_calls),
                concurrency_code: t.over_capacity_code,
                counters: TrunkCounters::default(),
            })
            .collect();
        Ok(Arc::new(Self { acl, trunks, unknown_source: AtomicU64::new(0), did_calls: DidCalls::default() }))
    }

    /// The trunk a datagram's source belongs to, or [`Refusal::UnknownSource`] (counted).
    pub fn source(&self, addr: IpAddr) -> Result<TrunkIdx, Refusal> {
        self.acl.lookup(addr).ok_or_else(|| {
            self.unknown_source.fetch_add(1, Ordering::Relaxed);
            Refusal::UnknownSource
        })
    }

    /// Admits a new call (initial INVITE) on a trunk. On success the call holds a concurrency
    /// slot until [`Self::call_ended`].
    pub fn admit_call(&self, trunk: TrunkIdx) -> Result<(), Refusal> {
        let Some(t) = self.trunk(trunk) else {
            return Err(Refusal::UnknownSource);
        };
        t.counters.offered.fetch_add(1, Ordering::Relaxed);
        match t.limits.try_admit() {
            Ok(()) => {
                t.counters.admitted.fetch_add(1, Ordering::Relaxed);
                Ok(())
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

    /// Counts a new call on a DID allowed `max` concurrent calls; on refusal the trunk slot
    /// taken by [`Self::admit_call`] is given back and the trunk's refusal code applies.
    pub fn admit_did_call(&self, trunk: TrunkIdx, did: u64, max: u32) -> Result<(), Refusal> {
        if self.did_calls.try_admit(did, max) {
            return Ok(());
        }
        self.call_ended(trunk);
        let t = self.trunk(trunk);
        if let Some(t) = t {
            t.counters.refused_did_concurrency.fetch_add(1, Ordering::Relaxed);
        }
        Err(Refusal::Concurrency { code: t.map_or(503, |t| t.concurrency_code) })
    }

    /// A call counted on a DID ended or failed.
    pub fn did_call_ended(&self, did: u64) {
        self.did_calls.release(did);
    }

    /// Calls active on a DID.
    pub fn did_active(&self, did: u64) -> u32 {
        self.did_calls.active(did)
    }

    /// A call admitted by [`Self::admit_call`] ended or failed.
    pub fn call_ended(&self, trunk: TrunkIdx) {
        if let Some(t) = self.trunk(trunk) {
            t.limits.release();
        }
    }

    /// One trunk's state.
    pub fn trunk(&self, trunk: TrunkIdx) -> Option<&TrunkState> {
        self.trunks.get(usize::try_from(trunk).ok()?)
    }

    /// Every trunk, indexed by [`TrunkIdx`].
    pub fn trunks(&self) -> &[TrunkState] {
        &self.trunks
    }

    /// Datagrams dropped because their source is in no trunk.
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
        assert_eq!(g.admit_call(0), Ok(()));
        assert!(matches!(g.admit_call(0), Err(Refusal::Cps { retry_after_secs }) if retry_after_secs >= 1));
        assert_eq!(g.admit_call(1), Ok(()));
        assert_eq!(g.admit_call(1), Err(Refusal::Concurrency { code: 486 }));
        g.call_ended(1);
        assert_eq!(g.admit_call(1), Ok(()));
        let a = &g.trunks()[0].counters;
        assert_eq!(a.offered.load(Ordering::Relaxed), 2);
        assert_eq!(a.refused_cps.load(Ordering::Relaxed), 1);
        let b = &g.trunks()[1].counters;
        assert_eq!(b.refused_concurrency.load(Ordering::Relaxed), 1);
        assert_eq!(b.admitted.load(Ordering::Relaxed), 2);
    }
}
