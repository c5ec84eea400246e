//! The data plane's counters in the control plane's Prometheus registry. The hot path only
//! bumps plain atomics; once per [`SAMPLE_INTERVAL`] a sampler copies what moved into the
//! registry (counters by their increase, gauges by value). Labels are trunks and targets and
//! bounded enums (method, code class, lookup result, verdict); a series appears once it moves.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use std::sync::atomic::AtomicU64;

use control::metrics::{
    CodeClass, Layer, Lookup, LookupLabels, Method, MethodLabels, Metrics, ProxyEvent, RefuseReason,
    ResponseLabels, TargetLabels, Verdict,
};

use crate::proxy::stats::SipStatsSnapshot;
use crate::proxy::{Engine, ProxyCounters};
use crate::route::SetId;

/// How often the registry is brought up to date.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// Last values seen, to turn monotonic atomics into counter increments.
#[derive(Debug, Default)]
pub struct Sampler {
    /// By trunk name: a trunk's counters follow its name across policy changes.
    trunks: HashMap<String, [u64; 7]>,
    sip: SipStatsSnapshot,
    lookups: [u64; Lookup::COUNT],
    events: [u64; ProxyEvent::COUNT],
}

/// The engine's counter of a proxy event.
fn event_counter(c: &ProxyCounters, event: ProxyEvent) -> &AtomicU64 {
    match event {
        ProxyEvent::ForwardedRequest => &c.forwarded,
        ProxyEvent::ForwardedResponse => &c.responses_forwarded,
        ProxyEvent::RetransmissionAbsorbed => &c.retransmissions_absorbed,
        ProxyEvent::Failover => &c.failovers,
        ProxyEvent::StrayResponse => &c.stray_responses,
        ProxyEvent::TransactionTableFull => &c.tx_table_full,
        ProxyEvent::ForwardedStatelessTableFull => &c.forwarded_stateless_table_full,
        ProxyEvent::SendRefused => &c.send_refused,
        ProxyEvent::CallAnswered => &c.calls_answered,
        ProxyEvent::CallEnded => &c.calls_ended,
        ProxyEvent::CallSessionExpired => &c.calls_session_expired,
        ProxyEvent::CallExpiredWithoutBye => &c.calls_expired_without_bye,
        ProxyEvent::ByeSent => &c.byes_sent,
        ProxyEvent::ByeNotSent => &c.byes_not_sent,
        ProxyEvent::ByeRetransmitted => &c.byes_retransmitted,
        ProxyEvent::ByeAnswered2xx => &c.byes_answered_2xx,
        ProxyEvent::ByeAnswered481 => &c.byes_answered_481,
        ProxyEvent::ByeAnsweredOther => &c.byes_answered_other,
        ProxyEvent::ByeTimedOut => &c.byes_timed_out,
    }
}

/// The increase of a monotonic counter since `last`; a counter that went back (its owner was
/// rebuilt) counts from zero.
fn advance(last: &mut u64, now: u64) -> u64 {
    let delta = if now >= *last { now - *last } else { now };
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
            let unknown_did = advance(&mut last[5], c.refused_unknown_did.load(Ordering::Relaxed));
            metrics.refused(&t.name, RefuseReason::UnknownDid).inc_by(unknown_did);
            let no_target = advance(&mut last[6], c.refused_no_target.load(Ordering::Relaxed));
            metrics.refused(&t.name, RefuseReason::NoTarget).inc_by(no_target);
        }
        self.sample_sip(engine, metrics);
        for (&event, last) in ProxyEvent::ALL.iter().zip(&mut self.events) {
            let delta = advance(last, event_counter(engine.counters(), event).load(Ordering::Relaxed));
            if delta > 0 {
                metrics.proxy_event(event).inc_by(delta);
            }
        }
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

    /// Requests, responses, user-space verdicts, forward latency and DID lookups.
    fn sample_sip(&mut self, engine: &Engine, metrics: &Metrics) {
        let now = engine.counters().sip.snapshot();
        let last = &mut self.sip;
        for ((&method, last), now) in Method::ALL.iter().zip(&mut last.requests).zip(now.requests) {
            let delta = advance(last, now);
            if delta > 0 {
                metrics.requests.get_or_create(&MethodLabels { method }).inc_by(delta);
            }
        }
        for ((&method, last), now) in Method::ALL.iter().zip(&mut last.responses).zip(now.responses) {
            for ((&code, last), now) in CodeClass::ALL.iter().zip(last).zip(now) {
                let delta = advance(last, now);
                if delta > 0 {
                    metrics.responses.get_or_create(&ResponseLabels { method, code }).inc_by(delta);
                }
            }
        }
        for ((&verdict, last), now) in Verdict::ALL.iter().zip(&mut last.verdicts).zip(now.verdicts) {
            let delta = advance(last, now);
            if delta > 0 {
                metrics.packet(Layer::User, verdict).inc_by(delta);
            }
        }
        metrics.forward_latency.add(&now.forward_latency.since(&last.forward_latency));
        last.forward_latency = now.forward_latency;
        let router = engine.router();
        let lookups = router.lookups();
        for (&result, last) in Lookup::ALL.iter().zip(&mut self.lookups) {
            let delta = advance(last, lookups.get(result));
            if delta > 0 {
                metrics.did_lookups.get_or_create(&LookupLabels { result }).inc_by(delta);
            }
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

/// Samples every [`SAMPLE_INTERVAL`] on a thread of its own until the process ends. (The packet
/// filter's verdicts are exported by the filter sync thread, which owns the filter.)
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

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Instant;

    use control::config::Config;

    use super::*;
    use crate::guard::Guard;
    use crate::proxy::{EngineConfig, Sink, WorkerState};
    use crate::route::Router;
    use crate::sip::{self, HeaderIndexEntry, MAX_HEADERS};

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
[[did_range]]
prefix = "+1555124"
target = "pbx"
"#;
    const CARRIER: &str = "192.0.2.7:5060";
    const PBX: &str = "198.51.100.10:5060";
    const STRANGER: &str = "198.18.0.1:5060";

    /// Keeps what the engine sends and counts the forwards it reports.
    #[derive(Default)]
    struct Recorder {
        sent: Vec<Vec<u8>>,
        forwards: usize,
    }

    impl Sink for Recorder {
        fn local(&self, _listen: usize) -> Option<SocketAddr> {
            "203.0.113.1:5060".parse().ok()
        }

        fn send_with(
            &mut self,
            _dest: SocketAddr,
            _listen: usize,
            write: &mut dyn FnMut(&mut [u8]) -> Option<usize>,
        ) -> bool {
            let mut buf = vec![0u8; 65535];
            let Some(n) = write(&mut buf) else { return false };
            buf.truncate(n);
            self.sent.push(buf);
            true
        }

        fn forwarded(&mut self) {
            self.forwards += 1;
        }
    }

    fn invite(call_id: &str, user: &str) -> String {
        format!(
            "INVITE sip:{user}@203.0.113.1:5060 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bK{call_id}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:+442079460000@192.0.2.7>;tag=a\r\n\
             To: <sip:{user}@203.0.113.1>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: 1 INVITE\r\n\
             Content-Length: 0\r\n\r\n"
        )
    }

    fn response_to(req: &[u8], code: u16) -> Vec<u8> {
        let mut index = [HeaderIndexEntry::EMPTY; MAX_HEADERS];
        let msg = sip::parse(req, &mut index).unwrap();
        let mut out = vec![0u8; 4096];
        let n = sip::response_from_request(&msg, code, "X", Some("b"), &[], &mut out).unwrap();
        out.truncate(n);
        out
    }

    #[test]
    fn engine_traffic_reaches_the_registry_with_bounded_labels() {
        let config = Config::from_toml(CONFIG).unwrap();
        let router = Arc::new(Router::from_config(&config).unwrap());
        let engine =
            Engine::new(Guard::from_config(&config).unwrap(), router.clone(), EngineConfig::default());
        let (metrics, mut sampler) = (Metrics::new(), Sampler::default());
        let now = Instant::now();
        let mut w = WorkerState::new(0, now);
        let mut sink = Recorder::default();
        let mut recv = |from: &str, bytes: &[u8], sink: &mut Recorder| {
            engine.on_datagram(&mut w, now, from.parse().unwrap(), 0, bytes, sink);
        };
        // An exact DID: 100 Trying back, the INVITE forwarded, then 180 and 200 forwarded up.
        recv(CARRIER, invite("c1", "+15551230000").as_bytes(), &mut sink);
        let forwarded = sink.sent.pop().unwrap();
        recv(PBX, &response_to(&forwarded, 180), &mut sink);
        recv(PBX, &response_to(&forwarded, 200), &mut sink);
        // A prefix, then an unknown DID (404), then a stranger (no answer).
        recv(CARRIER, invite("c2", "+15551240001").as_bytes(), &mut sink);
        recv(CARRIER, invite("c3", "+15559990000").as_bytes(), &mut sink);
        recv(STRANGER, invite("c4", "+15551230000").as_bytes(), &mut sink);
        recv(CARRIER, b"INVITE garbage", &mut sink);
        assert_eq!(sink.forwards, 4, "two INVITEs and two responses forwarded");
        // The only target down: 503, refused for want of a target.
        let pbx = router.targets().set_uris(SetId(0))[0];
        router.up_flags().set(pbx, false);
        recv(CARRIER, invite("c5", "+15551230000").as_bytes(), &mut sink);
        assert_eq!(sink.forwards, 4);

        sampler.sample(&engine, &metrics);
        // A second sample adds nothing: counters are copied by their increase.
        sampler.sample(&engine, &metrics);
        let text = metrics.encode();
        for want in [
            "sipedge_sip_requests_total{method=\"INVITE\"} 5",
            // 100 Trying twice (generated), 180 received.
            "sipedge_sip_responses_total{method=\"INVITE\",code=\"1xx\"} 3",
            "sipedge_sip_responses_total{method=\"INVITE\",code=\"2xx\"} 1",
            "sipedge_sip_responses_total{method=\"INVITE\",code=\"5xx\"} 1",
            "sipedge_sip_responses_total{method=\"INVITE\",code=\"4xx\"} 1",
            "sipedge_did_lookups_total{result=\"hit\"} 2",
            "sipedge_did_lookups_total{result=\"prefix\"} 1",
            "sipedge_did_lookups_total{result=\"miss\"} 1",
            "sipedge_packets_total{layer=\"user\",verdict=\"pass\"} 6",
            "sipedge_packets_total{layer=\"user\",verdict=\"unknown-source\"} 1",
            "sipedge_packets_total{layer=\"user\",verdict=\"malformed\"} 1",
            "sipedge_target_up{target=\"pbx\"} 0",
            "sipedge_calls_refused_total{trunk=\"carrier\",reason=\"unknown-did\"} 1",
            "sipedge_calls_refused_total{trunk=\"carrier\",reason=\"no-target\"} 1",
            "sipedge_proxy_events_total{event=\"forwarded-request\"} 2",
            "sipedge_proxy_events_total{event=\"forwarded-response\"} 2",
            "sipedge_proxy_events_total{event=\"call-answered\"} 1",
        ] {
            assert!(text.contains(want), "{want:?} missing from\n{text}");
        }
        assert!(!text.contains("result=\"range\""), "series appear once they move:\n{text}");
        assert!(!text.contains("event=\"bye-sent\""), "series appear once they move:\n{text}");
    }
}
