//! The packet filter's verdict counters in the Prometheus registry:
//! `sipedge_packets_total{layer="xdp"|"user", verdict}`. The filter sync thread samples them
//! once per second (XDP: the per-CPU counter map; user space: the prefilter's atomics) and adds
//! what moved. Traffic the filter does not judge (not to a SIP port, unparsable frames) is not
//! exported. In user space only the drops are: what the prefilter passes goes on to the engine,
//! which counts it (`pass`, `unknown-source`, `malformed`), so no datagram is counted twice.

use std::sync::Arc;

use control::metrics::{Layer, Metrics, Verdict};
use ebpf::{Reason, Stats};

/// The label a verdict is exported under, if any.
pub fn verdict_of(reason: Reason) -> Option<Verdict> {
    match reason {
        Reason::PassAllow | Reason::PassRate | Reason::PassFrag => Some(Verdict::Pass),
        Reason::DropBlock => Some(Verdict::Blocklist),
        Reason::DropUnknown => Some(Verdict::UnknownSource),
        Reason::DropRateSource | Reason::DropRateGlobal => Some(Verdict::RateLimit),
        Reason::DropScanner => Some(Verdict::Scanner),
        Reason::DropFrag => Some(Verdict::Fragment),
        Reason::PassNonSip | Reason::PassMalformed => None,
    }
}

/// Turns monotonic filter counters into counter increments.
#[derive(Debug)]
pub struct FilterMetrics {
    metrics: Arc<Metrics>,
    layer: Layer,
    last: Option<Stats>,
}

impl FilterMetrics {
    /// Exports under `layer` what moves after `baseline` (`None`: the first sample is the
    /// baseline).
    pub fn new(metrics: Arc<Metrics>, layer: Layer, baseline: Option<Stats>) -> Self {
        Self { metrics, layer, last: baseline }
    }

    /// Adds what moved since the last sample.
    pub fn sample(&mut self, now: Stats) {
        if let Some(last) = &self.last {
            for (reason, moved) in Reason::ALL.into_iter().zip(now.packets_since(last)) {
                if let Some(verdict) = verdict_of(reason)
                    && moved > 0
                    && !(self.layer == Layer::User && verdict == Verdict::Pass)
                {
                    self.metrics.packet(self.layer, verdict).inc_by(moved);
                }
            }
        }
        self.last = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn increments_are_exported_by_verdict_after_the_baseline() {
        let metrics = Arc::new(Metrics::new());
        let mut m = FilterMetrics::new(Arc::clone(&metrics), Layer::Xdp, None);
        let mut s = Stats::default();
        s.counters[Reason::DropUnknown as usize].packets = 1_000;
        m.sample(s);
        s.counters[Reason::DropUnknown as usize].packets = 1_007;
        s.counters[Reason::DropRateSource as usize].packets = 2;
        s.counters[Reason::DropRateGlobal as usize].packets = 3;
        s.counters[Reason::PassNonSip as usize].packets = 50;
        m.sample(s);
        assert_eq!(metrics.packet(Layer::Xdp, Verdict::UnknownSource).get(), 7, "baseline not exported");
        assert_eq!(metrics.packet(Layer::Xdp, Verdict::RateLimit).get(), 5);
        assert_eq!(metrics.packet(Layer::Xdp, Verdict::Pass).get(), 0, "non-SIP traffic is not judged");
        assert_eq!(metrics.packet(Layer::User, Verdict::UnknownSource).get(), 0);
    }

    #[test]
    fn user_space_passes_are_left_to_the_engine_and_fragments_have_their_label() {
        let metrics = Arc::new(Metrics::new());
        let mut m = FilterMetrics::new(Arc::clone(&metrics), Layer::User, Some(Stats::default()));
        let mut s = Stats::default();
        s.counters[Reason::PassAllow as usize].packets = 9;
        s.counters[Reason::DropBlock as usize].packets = 4;
        s.counters[Reason::DropFrag as usize].packets = 2;
        m.sample(s);
        assert_eq!(metrics.packet(Layer::User, Verdict::Pass).get(), 0, "the engine counts what passes");
        assert_eq!(metrics.packet(Layer::User, Verdict::Blocklist).get(), 4);
        assert_eq!(metrics.packet(Layer::User, Verdict::Fragment).get(), 2);
    }
}
