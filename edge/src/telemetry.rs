//! The data plane's counters in the control plane's Prometheus registry. The hot path only
//! bumps plain atomics; once per [`SAMPLE_INTERVAL`] a sampler copies what moved into the
//! registry (counters by their increase, gauges by value). Labels are trunks and targets only.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use control::metrics::{Layer, Metrics, RefuseReason, TargetLabels, Verdict};

use crate::proxy::Engine;
use crate::route::SetId;

/// How often the registry is brought up to date.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// Last values seen, to turn monotonic atomics into counter increments.
#[derive(Debug, Default)]
pub struct Sampler {
    /// By trunk name: a trunk's counters follow its name across policy changes.
    trunks: HashMap<String, [u64; 5]>,
    unknown_source: u64,
    malformed: u64,
}

fn advance(last: &mut u64, now: u64) -> u64 {
    let delta = now.saturating_sub(*last);
    *last = now;
    delta
}

impl Sampler {
    /// Copies the engine's counters into `metrics`.
    pub fn sample(&mut self, engine: &Engine, metrics: &Metrics) {
        let guard = engine.guard();
        self.trunks.retain(|name, _| guard.trunks().iter().any(|t| t.name == *name));
        for t in guard.trunks() {
            let last = self.trunks.entry(t.name.clone()).or_default();
            let c = &t.counters;
            let m = metrics.trunk(&t.name);
            m.offered.inc_by(advance(&mut last[0], c.offered.load(Ordering::Relaxed)));
            m.admitted.inc_by(advance(&mut last[1], c.admitted.load(Ordering::Relaxed)));
            m.active.set(i64::from(t.limits.active()));
            let cps = advance(&mut last[2], c.refused_cps.load(Ordering::Relaxed));
            metrics.refused(&t.name, RefuseReason::Cps).inc_by(cps);
            let conc = advance(&mut last[3], c.refused_concurrency.load(Ordering::Relaxed))
                + advance(&mut last[4], c.refused_did_concurrency.load(Ordering::Relaxed));
            metrics.refused(&t.name, RefuseReason::Concurrency).inc_by(conc);
        }
        let unknown = advance(&mut self.unknown_source, guard.unknown_source_drops());
        metrics.packet(Layer::User, Verdict::UnknownSource).inc_by(unknown);
        let malformed = advance(&mut self.malformed, engine.counters().malformed.load(Ordering::Relaxed));
        metrics.packet(Layer::User, Verdict::Malformed).inc_by(malformed);
        metrics.transactions.set(i64::try_from(engine.transactions()).unwrap_or(i64::MAX));
        metrics.dialogs.set(i64::try_from(engine.active_calls()).unwrap_or(i64::MAX));
        let router = engine.router();
        let (targets, up) = (router.targets(), router.up_flags());
        for set in (0..targets.len()).filter_map(|i| u32::try_from(i).ok()).map(SetId) {
            let Some(name) = targets.name(set) else { continue };
            let healthy = targets.set_uris(set).iter().any(|&u| up.is_up(u));
            metrics
                .target_up
                .get_or_create(&TargetLabels { target: name.to_owned() })
                .set(i64::from(healthy));
        }
    }
}

/// The engine's live counts, for the control plane's API.
#[derive(Debug)]
pub struct EngineLiveCalls(pub Arc<Engine>);

impl control::live::LiveCalls for EngineLiveCalls {
    fn did_active_calls(&self, number: &str) -> Option<u32> {
        let n = crate::route::E164::parse_plus(number)?;
        Some(self.0.guard().did_active(n.key()))
    }

    fn active_calls(&self) -> u64 {
        u64::try_from(self.0.active_calls()).unwrap_or(u64::MAX)
    }
}

/// Samples every [`SAMPLE_INTERVAL`] on a thread of its own until the process ends.
pub fn spawn(engine: Arc<Engine>, metrics: Arc<Metrics>) -> std::io::Result<()> {
    std::thread::Builder::new().name("telemetry".into()).spawn(move || {
        let mut sampler = Sampler::default();
        loop {
            sampler.sample(&engine, &metrics);
            std::thread::sleep(SAMPLE_INTERVAL);
        }
    })?;
    Ok(())
}
