//! The engine on virtual time: scripted SIP exchanges through a recording sink.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use control::config::Config;

use super::engine::{Engine, EngineConfig, Sink, TICK, TX_SHARDS, WorkerState};
use crate::guard::Guard;
use crate::route::Router;
use crate::sip::{self, HeaderIndexEntry, MAX_HEADERS};

const CONFIG: &str = r#"
[[trunk]]
name = "carrier"
sources = ["192.0.2.0/24"]
cps = 1000
max_calls = 10
[[target]]
name = "pbx"
uris = ["sip:198.51.100.10:5060", "sip:198.51.100.11:5060"]
[[did]]
number = "+15551230000"
target = "pbx"
[[did]]
number = "+15551230001"
target = "pbx"
max_calls = 1
[[did_range]]
prefix = "+1555124"
target = "pbx"
max_calls = 1
"#;

const LOCAL: &str = "203.0.113.1:5060";
const CARRIER: &str = "192.0.2.7:5060";
const PBX1: &str = "198.51.100.10:5060";
const PBX2: &str = "198.51.100.11:5060";

#[derive(Default)]
struct Recorder {
    sent: Vec<(SocketAddr, Vec<u8>)>,
}

impl Sink for Recorder {
    fn local(&self, _listen: usize) -> Option<SocketAddr> {
        LOCAL.parse().ok()
    }

    fn send_with(
        &mut self,
        dest: SocketAddr,
        _listen: usize,
        write: &mut dyn FnMut(&mut [u8]) -> Option<usize>,
    ) -> bool {
        let mut buf = vec![0u8; 65535];
        match write(&mut buf) {
            Some(n) => {
                buf.truncate(n);
                self.sent.push((dest, buf));
                true
            }
            None => false,
        }
    }
}

struct Harness {
    engine: Engine,
    worker: WorkerState,
    sink: Recorder,
    t0: Instant,
    now: Instant,
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

impl Harness {
    fn new() -> Self {
        Self::with_workers(1)
    }

    fn with_workers(workers: usize) -> Self {
        Self::with(CONFIG, EngineConfig { workers, ..EngineConfig::default() })
    }

    fn with(config: &str, engine: EngineConfig) -> Self {
        let config = Config::from_toml(config).unwrap();
        let guard = Guard::from_config(&config).unwrap();
        let router = Arc::new(Router::from_config(&config).unwrap());
        let engine = Engine::new(guard, router, engine);
        let t0 = Instant::now();
        Self { engine, worker: WorkerState::new(0, t0), sink: Recorder::default(), t0, now: t0 }
    }

    fn recv(&mut self, from: &str, msg: &str) -> Vec<(SocketAddr, String)> {
        self.engine.on_datagram(&mut self.worker, self.now, addr(from), 0, msg.as_bytes(), &mut self.sink);
        self.take()
    }

    fn take(&mut self) -> Vec<(SocketAddr, String)> {
        self.sink.sent.drain(..).map(|(a, b)| (a, String::from_utf8_lossy(&b).into_owned())).collect()
    }

    /// Advances virtual time to `t0 + at`, ticking every TICK.
    fn advance_to(&mut self, at: Duration) -> Vec<(SocketAddr, String)> {
        while self.now < self.t0 + at {
            self.now += TICK;
            self.engine.on_tick(&mut self.worker, self.now, &mut self.sink);
        }
        self.take()
    }
}

fn invite(branch: &str, call_id: &str, user: &str, max_forwards: u8) -> String {
    format!(
        "INVITE sip:{user}@203.0.113.1:5060;user=phone SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.7:5060;branch={branch}\r\n\
         Max-Forwards: {max_forwards}\r\n\
         From: <sip:+442079460000@192.0.2.7>;tag=caller1\r\n\
         To: <sip:{user}@203.0.113.1>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:caller@192.0.2.7:5060>\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// A response from downstream to the request `req` (as forwarded, our Via on top).
fn response_to(req: &str, code: u16, reason: &str, to_tag: Option<&str>) -> String {
    let mut index = [HeaderIndexEntry::EMPTY; MAX_HEADERS];
    let msg = sip::parse(req.as_bytes(), &mut index).unwrap();
    let mut out = vec![0u8; 4096];
    let n = sip::response_from_request(&msg, code, reason, to_tag, &[], &mut out).unwrap();
    out.truncate(n);
    String::from_utf8(out).unwrap()
}

fn status(msg: &str) -> u16 {
    msg.strip_prefix("SIP/2.0 ").and_then(|r| r.get(..3)).and_then(|c| c.parse().ok()).unwrap_or(0)
}

fn method(msg: &str) -> &str {
    msg.split(' ').next().unwrap()
}

#[test]
fn invite_is_answered_100_and_forwarded_with_our_via_record_route_and_new_request_uri() {
    let mut h = Harness::new();
    let out = h.recv(CARRIER, &invite("z9hG4bKa1", "call-1", "+15551230000", 70));
    assert_eq!(out.len(), 2, "{out:#?}");
    assert_eq!(out[0].0, addr(CARRIER));
    assert_eq!(status(&out[0].1), 100);
    let (dest, fwd) = &out[1];
    assert_eq!(*dest, addr(PBX1));
    assert!(fwd.starts_with("INVITE sip:+15551230000@198.51.100.10:5060 SIP/2.0\r\n"), "{fwd}");
    assert!(fwd.contains("Via: SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bK-se-"), "{fwd}");
    assert!(fwd.contains("Record-Route: <sip:203.0.113.1:5060;lr>"), "{fwd}");
    assert!(fwd.contains("Max-Forwards: 69\r\n"), "{fwd}");
    assert!(fwd.contains("Via: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bKa1"));
}

#[test]
fn retransmitted_invite_gets_the_last_provisional_not_a_second_forward() {
    let mut h = Harness::new();
    let inv = invite("z9hG4bKr1", "call-r", "+15551230000", 70);
    let first = h.recv(CARRIER, &inv);
    let fwd = first[1].1.clone();
    let again = h.recv(CARRIER, &inv);
    assert_eq!(again.len(), 1);
    assert_eq!(status(&again[0].1), 100);
    h.recv(PBX1, &response_to(&fwd, 180, "Ringing", Some("callee")));
    let again = h.recv(CARRIER, &inv);
    assert_eq!(again.len(), 1);
    assert_eq!(status(&again[0].1), 180);
    assert_eq!(h.engine.counters().forwarded.load(Ordering::Relaxed), 1);
}

#[test]
fn refusals_unknown_did_max_forwards_unknown_source_and_malformed() {
    let mut h = Harness::new();
    let out = h.recv(CARRIER, &invite("z9hG4bKb1", "call-2", "+15559999999", 70));
    assert_eq!(out.iter().map(|(_, m)| status(m)).collect::<Vec<_>>(), [404]);
    let out = h.recv(CARRIER, &invite("z9hG4bKb2", "call-3", "+15551230000", 0));
    assert_eq!(out.iter().map(|(_, m)| status(m)).collect::<Vec<_>>(), [483]);
    assert!(h.recv("198.18.0.1:5060", &invite("z9hG4bKb3", "call-4", "+15551230000", 70)).is_empty());
    let broken =
        invite("z9hG4bKb4", "call-5", "+15551230000", 70).replace("Content-Length: 0", "Content-Length: 50");
    let out = h.recv(CARRIER, &broken);
    assert_eq!(out.iter().map(|(_, m)| status(m)).collect::<Vec<_>>(), [400]);
    assert!(h.recv("198.18.0.1:5060", &broken).is_empty(), "no answer to unknown sources, malformed or not");
    let bad_cseq = invite("z9hG4bKb5", "call-6", "+15551230000", 70).replace("CSeq: 1 INVITE", "CSeq: 1 BYE");
    assert_eq!(h.recv(CARRIER, &bad_cseq).iter().map(|(_, m)| status(m)).collect::<Vec<_>>(), [400]);
}

#[test]
fn options_to_the_edge_is_answered_200() {
    let mut h = Harness::new();
    let opts = "OPTIONS sip:203.0.113.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bKo1\r\n\
                Max-Forwards: 70\r\nFrom: <sip:ping@192.0.2.7>;tag=p\r\nTo: <sip:203.0.113.1>\r\n\
                Call-ID: opt-1\r\nCSeq: 7 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    let out = h.recv(CARRIER, opts);
    assert_eq!(out.len(), 1);
    assert_eq!(status(&out[0].1), 200);
}

#[test]
fn timeout_fails_over_to_the_next_target_then_the_call_completes_and_ends() {
    let mut h = Harness::new();
    let out = h.recv(CARRIER, &invite("z9hG4bKf1", "call-f", "+15551230000", 70));
    assert_eq!(out[1].0, addr(PBX1));
    // Timer A retransmits to PBX1, Timer B (32 s) moves the call to PBX2.
    let out = h.advance_to(Duration::from_millis(32_100));
    let to_pbx1 = out.iter().filter(|(a, _)| *a == addr(PBX1)).count();
    assert_eq!(to_pbx1, 6, "retransmissions at 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s");
    let second: Vec<_> = out.iter().filter(|(a, _)| *a == addr(PBX2)).collect();
    assert_eq!(second.len(), 1);
    let fwd2 = second[0].1.clone();
    assert!(fwd2.starts_with("INVITE sip:+15551230000@198.51.100.11:5060 "));
    assert_eq!(h.engine.counters().failovers.load(Ordering::Relaxed), 1);

    let ok = response_to(&fwd2, 200, "OK", Some("callee2"));
    let out = h.recv(PBX2, &ok);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, addr(CARRIER));
    assert_eq!(status(&out[0].1), 200);
    assert!(!out[0].1.contains("z9hG4bK-se-"), "our Via is stripped going upstream");
    assert_eq!(h.engine.active_calls(), 1);
    assert_eq!(h.engine.guard().trunks()[0].limits.active(), 1);

    // BYE from the caller, without a Route set (like SIPp's built-in uac): the dialog knows
    // where the callee is.
    let bye = "BYE sip:+15551230000@203.0.113.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bKbye1\r\n\
               Max-Forwards: 70\r\nFrom: <sip:+442079460000@192.0.2.7>;tag=caller1\r\n\
               To: <sip:+15551230000@203.0.113.1>;tag=callee2\r\nCall-ID: call-f\r\nCSeq: 2 BYE\r\n\
               Content-Length: 0\r\n\r\n";
    let out = h.recv(CARRIER, bye);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, addr(PBX2));
    assert_eq!(method(&out[0].1), "BYE");
    let out = h.recv(PBX2, &response_to(&out[0].1, 200, "OK", None));
    assert_eq!(status(&out[0].1), 200);
    assert_eq!(out[0].0, addr(CARRIER));
    assert_eq!(h.engine.active_calls(), 0);
    assert_eq!(h.engine.guard().trunks()[0].limits.active(), 0);
}

#[test]
fn a_503_is_acked_and_fails_over_and_the_best_failure_goes_up_when_all_fail() {
    let mut h = Harness::new();
    let out = h.recv(CARRIER, &invite("z9hG4bKs1", "call-s", "+15551230000", 70));
    let fwd1 = out[1].1.clone();
    let out = h.recv(PBX1, &response_to(&fwd1, 503, "Service Unavailable", Some("x1")));
    let kinds: Vec<(SocketAddr, &str)> = out.iter().map(|(a, m)| (*a, method(m))).collect();
    assert_eq!(kinds, [(addr(PBX1), "ACK"), (addr(PBX2), "INVITE")]);
    let fwd2 = out[1].1.clone();
    let out = h.recv(PBX2, &response_to(&fwd2, 500, "Server Internal Error", Some("x2")));
    let kinds: Vec<(SocketAddr, u16)> = out.iter().map(|(a, m)| (*a, status(m))).collect();
    // ACK to PBX2 (status 0: a request), then the best response: 5xx class, the first seen.
    assert_eq!(kinds, [(addr(PBX2), 0), (addr(CARRIER), 503)]);
    assert_eq!(h.engine.guard().trunks()[0].limits.active(), 0, "a failed call frees its slot");
}

#[test]
fn a_busy_callee_is_final_and_the_ack_from_upstream_is_absorbed() {
    let mut h = Harness::new();
    let inv = invite("z9hG4bKh1", "call-h", "+15551230000", 70);
    let out = h.recv(CARRIER, &inv);
    let out = h.recv(PBX1, &response_to(&out[1].1, 486, "Busy Here", Some("busy")));
    let kinds: Vec<(SocketAddr, u16)> = out.iter().map(|(a, m)| (*a, status(m))).collect();
    assert_eq!(kinds, [(addr(PBX1), 0), (addr(CARRIER), 486)], "no failover on 486");
    // Until the caller ACKs, Timer G retransmits the 486.
    let out = h.advance_to(Duration::from_millis(600));
    assert_eq!(out.iter().map(|(_, m)| status(m)).collect::<Vec<_>>(), [486]);
    let ack = inv
        .replace("INVITE sip:", "ACK sip:")
        .replace("CSeq: 1 INVITE", "CSeq: 1 ACK")
        .replace("To: <sip:+15551230000@203.0.113.1>", "To: <sip:+15551230000@203.0.113.1>;tag=busy");
    assert!(h.recv(CARRIER, &ack).is_empty(), "hop-by-hop ACK absorbed");
    assert!(h.advance_to(Duration::from_secs(10)).is_empty(), "no more retransmissions");
}

#[test]
fn cancel_before_answer_propagates_and_the_487_goes_up() {
    let mut h = Harness::new();
    let inv = invite("z9hG4bKc1", "call-c", "+15551230000", 70);
    let out = h.recv(CARRIER, &inv);
    let fwd = out[1].1.clone();
    h.recv(PBX1, &response_to(&fwd, 180, "Ringing", Some("ring")));
    let cancel = inv.replace("INVITE sip:", "CANCEL sip:").replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    let out = h.recv(CARRIER, &cancel);
    let kinds: Vec<(SocketAddr, String)> = out
        .iter()
        .map(|(a, m)| (*a, if status(m) > 0 { status(m).to_string() } else { method(m).into() }))
        .collect();
    assert_eq!(kinds, [(addr(CARRIER), "200".into()), (addr(PBX1), "CANCEL".into())]);
    assert!(out[1].1.contains("branch=z9hG4bK-se-"), "the CANCEL carries the INVITE's branch");
    let out = h.recv(PBX1, &response_to(&fwd, 487, "Request Terminated", Some("ring")));
    let kinds: Vec<(SocketAddr, u16)> = out.iter().map(|(a, m)| (*a, status(m))).collect();
    assert_eq!(kinds, [(addr(PBX1), 0), (addr(CARRIER), 487)]);
    assert_eq!(
        h.engine.counters().failovers.load(Ordering::Relaxed),
        0,
        "a cancelled call does not fail over"
    );
    assert_eq!(h.engine.guard().trunks()[0].limits.active(), 0);
}

#[test]
fn a_lost_200_retransmitted_by_the_callee_still_reaches_the_caller() {
    let mut h = Harness::new();
    let out = h.recv(CARRIER, &invite("z9hG4bKl1", "call-l", "+15551230000", 70));
    let ok = response_to(&out[1].1, 200, "OK", Some("answer"));
    assert_eq!(h.recv(PBX1, &ok).len(), 1);
    let again = h.recv(PBX1, &ok);
    assert_eq!(again.len(), 1, "2xx retransmissions pass through");
    assert_eq!(status(&again[0].1), 200);
    assert_eq!(h.engine.active_calls(), 1, "counted once");
}

#[test]
fn transactions_are_removed_when_done_and_memory_stays_bounded() {
    let mut h = Harness::new();
    for i in 0..50 {
        let out =
            h.recv(CARRIER, &invite(&format!("z9hG4bKm{i}"), &format!("call-m{i}"), "+15551230000", 70));
        h.recv(PBX1, &response_to(&out[1].1, 404, "Not Found", Some("nf")));
    }
    assert_eq!(h.engine.transactions(), 50);
    h.advance_to(Duration::from_secs(40));
    assert_eq!(h.engine.transactions(), 0, "Timer H/D ended every transaction");
}

#[test]
fn a_worker_that_received_nothing_still_runs_the_timers_of_its_shards() {
    // SO_REUSEPORT sends one peer's datagrams to one worker; the transactions land in every
    // worker's shards all the same, and each worker must run its own shards' timers.
    let mut h = Harness::with_workers(2);
    let mut idle = WorkerState::new(1, h.t0);
    for i in 0..8 {
        h.recv(CARRIER, &invite(&format!("z9hG4bKw{i}"), &format!("call-w{i}"), "+15551230000", 70));
    }
    let mut to_second_target = 0;
    while h.now < h.t0 + Duration::from_millis(32_100) {
        h.now += TICK;
        h.engine.on_tick(&mut h.worker, h.now, &mut h.sink);
        h.engine.on_tick(&mut idle, h.now, &mut h.sink);
        to_second_target +=
            h.take().iter().filter(|(a, m)| *a == addr(PBX2) && method(m) == "INVITE").count();
    }
    assert_eq!(to_second_target, 8, "every call failed over, whichever worker owns its shard");
}

#[test]
fn probes_take_a_silent_target_down_and_an_answer_brings_it_back() {
    let config = Config::from_toml(CONFIG).unwrap();
    let guard = Guard::from_config(&config).unwrap();
    let router = Arc::new(Router::from_config(&config).unwrap());
    let health = crate::route::HealthSettings {
        interval: Duration::from_secs(1),
        timeout: Duration::from_millis(500),
        down_after: 2,
        up_after: 1,
        retry_after_503: control::config::RetryAfter503::default(),
    };
    let engine = Engine::new(guard, router, EngineConfig { health: Some(health), ..EngineConfig::default() });
    let mut h = Harness::new();
    h.engine = engine;
    // Probes go to both targets; only PBX2 answers.
    let mut probed_pbx1 = 0;
    while h.now < h.t0 + Duration::from_millis(3_000) {
        h.now += TICK;
        h.engine.on_tick(&mut h.worker, h.now, &mut h.sink);
        for (to, probe) in h.take() {
            assert_eq!(method(&probe), "OPTIONS");
            assert!(probe.contains("branch=z9hG4bK-hp-"));
            if to == addr(PBX2) {
                h.recv(PBX2, &response_to(&probe, 200, "OK", Some("hp")));
            } else {
                probed_pbx1 += 1;
            }
        }
    }
    assert!(probed_pbx1 >= 2, "{probed_pbx1}");
    // PBX1 is down: a new call goes straight to PBX2.
    let out = h.recv(CARRIER, &invite("z9hG4bKhp1", "call-hp", "+15551230000", 70));
    assert_eq!(out[1].0, addr(PBX2));
    // PBX1 answers its next probe and is up again (up_after = 1).
    let mut back = false;
    while !back && h.now < h.t0 + Duration::from_secs(6) {
        h.now += TICK;
        h.engine.on_tick(&mut h.worker, h.now, &mut h.sink);
        for (to, probe) in h.take() {
            if to == addr(PBX1) && method(&probe) == "OPTIONS" {
                h.recv(PBX1, &response_to(&probe, 200, "OK", Some("hp")));
                back = true;
            }
        }
    }
    assert!(back);
    let out = h.recv(CARRIER, &invite("z9hG4bKhp2", "call-hp2", "+15551230000", 70));
    assert_eq!(out[1].0, addr(PBX1));
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    fn mutated(base: String, at: usize, byte: u8, cut: usize) -> Vec<u8> {
        let mut b = base.into_bytes();
        let at = at % b.len();
        b[at] = byte;
        b.truncate(b.len() - cut % b.len());
        b
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Arbitrary and mutated datagrams from a trunk, a target and a stranger, with ticks in
        /// between: the engine answers or drops, never panics, and its tables stay bounded.
        #[test]
        fn any_datagram_is_handled_without_panic(
            raw in proptest::collection::vec(any::<u8>(), 0..1500),
            at in any::<usize>(), byte in any::<u8>(), cut in any::<usize>(),
            from in 0usize..3,
        ) {
            let mut h = Harness::new();
            let src = [CARRIER, PBX1, "198.18.0.1:5060"][from];
            h.recv(src, std::str::from_utf8(&raw).unwrap_or(""));
            h.engine.on_datagram(&mut h.worker, h.now, addr(src), 0, &raw, &mut h.sink);
            let inv = invite("z9hG4bKp1", "call-p", "+15551230000", 70);
            let out = h.recv(CARRIER, &inv);
            let m = mutated(inv.clone(), at, byte, cut);
            h.engine.on_datagram(&mut h.worker, h.now, addr(CARRIER), 0, &m, &mut h.sink);
            if let Some((_, fwd)) = out.get(1) {
                let resp = mutated(response_to(fwd, 180, "Ringing", Some("t")), at, byte, cut);
                h.engine.on_datagram(&mut h.worker, h.now, addr(PBX1), 0, &resp, &mut h.sink);
            }
            // Retransmission and failover timers run too.
            h.advance_to(Duration::from_secs(2));
            prop_assert!(h.engine.transactions() <= 3);
        }
    }
}

#[test]
fn a_did_over_its_concurrent_call_limit_gets_503_until_a_call_ends() {
    let mut h = Harness::new();
    let out = h.recv(CARRIER, &invite("z9hG4bKd1", "call-d1", "+15551230001", 70));
    assert_eq!(out[1].0, addr(PBX1), "the first call goes through");
    let fwd = out[1].1.clone();
    let out = h.recv(CARRIER, &invite("z9hG4bKd2", "call-d2", "+15551230001", 70));
    assert_eq!(out.iter().map(|(_, m)| status(m)).collect::<Vec<_>>(), [503], "the DID is busy");
    assert_eq!(h.engine.guard().trunks()[0].limits.active(), 1, "the refused call gave its trunk slot back");
    let other = h.recv(CARRIER, &invite("z9hG4bKd3", "call-d3", "+15551230000", 70));
    assert_eq!(other[1].0, addr(PBX1), "other DIDs are not limited");
    h.recv(PBX1, &response_to(&fwd, 486, "Busy Here", Some("b")));
    assert_eq!(h.engine.guard().did_active(15551230001), 0);
    let out = h.recv(CARRIER, &invite("z9hG4bKd4", "call-d4", "+15551230001", 70));
    assert_eq!(out[1].0, addr(PBX1), "the slot is free again");
}

#[test]
fn the_ack_to_a_refusal_of_ours_goes_nowhere() {
    let mut h = Harness::new();
    // A known DID refused (Max-Forwards 0): without its To tag being ours, the ACK would be
    // routed to the PBX like an in-dialog request from a peer that ignores Record-Route.
    let inv = invite("z9hG4bKn1", "call-n", "+15551230000", 0);
    let out = h.recv(CARRIER, &inv);
    assert_eq!(status(&out[0].1), 483);
    let to = out[0].1.lines().find(|l| l.starts_with("To:")).unwrap().to_owned();
    let ack = inv
        .replace("INVITE sip:", "ACK sip:")
        .replace("CSeq: 1 INVITE", "CSeq: 1 ACK")
        .replace("Max-Forwards: 0", "Max-Forwards: 70")
        .replace("To: <sip:+15551230000@203.0.113.1>", &to);
    assert!(h.recv(CARRIER, &ack).is_empty(), "absorbed, not routed to a PBX");
}

#[test]
fn a_503_with_retry_after_pauses_the_target_for_that_long() {
    let mut h = Harness::new();
    let out = h.recv(CARRIER, &invite("z9hG4bKra1", "call-ra1", "+15551230000", 70));
    let fwd = out[1].1.clone();
    let mut index = [HeaderIndexEntry::EMPTY; MAX_HEADERS];
    let req = sip::parse(fwd.as_bytes(), &mut index).unwrap();
    let mut buf = vec![0u8; 4096];
    let n = sip::response_from_request(
        &req,
        503,
        "Service Unavailable",
        Some("ra"),
        &["Retry-After: 60"],
        &mut buf,
    )
    .unwrap();
    let out = h.recv(PBX1, std::str::from_utf8(&buf[..n]).unwrap());
    assert_eq!(out.last().map(|(a, m)| (*a, method(m))), Some((addr(PBX2), "INVITE")), "failed over");
    // While paused, new calls skip PBX1.
    let out = h.recv(CARRIER, &invite("z9hG4bKra2", "call-ra2", "+15551230000", 70));
    assert_eq!(out[1].0, addr(PBX2));
    // After Retry-After, PBX1 is first again.
    h.advance_to(Duration::from_secs(61));
    let out = h.recv(CARRIER, &invite("z9hG4bKra3", "call-ra3", "+15551230000", 70));
    assert_eq!(out[1].0, addr(PBX1));
}

#[test]
fn message_is_routed_by_did_and_its_answer_comes_back() {
    let mut h = Harness::new();
    let message = invite("z9hG4bKsms1", "sms-1", "+15551230000", 70)
        .replace("INVITE sip:", "MESSAGE sip:")
        .replace("CSeq: 1 INVITE", "CSeq: 1 MESSAGE");
    let out = h.recv(CARRIER, &message);
    assert_eq!(out.len(), 1, "no 100 Trying for a non-INVITE: {out:#?}");
    assert_eq!(out[0].0, addr(PBX1));
    assert!(out[0].1.starts_with("MESSAGE sip:+15551230000@198.51.100.10:5060 "), "{}", out[0].1);
    let back = h.recv(PBX1, &response_to(&out[0].1, 202, "Accepted", Some("m")));
    assert_eq!(back.iter().map(|(a, m)| (*a, status(m))).collect::<Vec<_>>(), [(addr(CARRIER), 202)]);
    let unknown = message.replace("+15551230000", "+15559999999").replace("z9hG4bKsms1", "z9hG4bKsms2");
    assert_eq!(h.recv(CARRIER, &unknown).iter().map(|(_, m)| status(m)).collect::<Vec<_>>(), [404]);
}

#[test]
fn a_number_block_over_its_call_limit_gets_503_whatever_number_in_it_is_called() {
    let block = crate::route::BlockId(0).limit_key();
    let mut h = Harness::new();
    let out = h.recv(CARRIER, &invite("z9hG4bKb1", "call-b1", "+15551240001", 70));
    assert_eq!(out[1].0, addr(PBX1), "the first call into the block goes through");
    let fwd = out[1].1.clone();
    assert_eq!((h.engine.guard().did_active(block), h.engine.guard().did_active(15551240001)), (1, 0));
    let out = h.recv(CARRIER, &invite("z9hG4bKb2", "call-b2", "+15551249999", 70));
    assert_eq!(out.iter().map(|(_, m)| status(m)).collect::<Vec<_>>(), [503], "another number, same block");
    let other = h.recv(CARRIER, &invite("z9hG4bKb3", "call-b3", "+15551230000", 70));
    assert_eq!(other[1].0, addr(PBX1), "numbers outside the block are not limited by it");
    h.recv(PBX1, &response_to(&fwd, 486, "Busy Here", Some("b")));
    assert_eq!(h.engine.guard().did_active(block), 0);
    let out = h.recv(CARRIER, &invite("z9hG4bKb4", "call-b4", "+15551249999", 70));
    assert_eq!(out[1].0, addr(PBX1), "the block's slot is free again");
}

/// Calls past their maximum duration.
mod expiry;
/// Policy changes while calls run.
mod live;

#[test]
fn new_calls_cannot_take_the_slots_kept_for_requests_within_calls() {
    // 20 transactions per shard, 2 of them kept for requests within calls; limits that
    // admit every call, so that only the table refuses.
    let config = CONFIG.replace("cps = 1000\nmax_calls = 10", "cps = 100000\nmax_calls = 100000");
    let per_shard = 20;
    let max_transactions = TX_SHARDS as u32 * per_shard;
    let mut h = Harness::with(&config, EngineConfig { max_transactions, ..EngineConfig::default() });
    let out = h.recv(CARRIER, &invite("z9hG4bKkeep", "call-keep", "+15551230000", 70));
    let out = h.recv(PBX1, &response_to(&out[1].1, 200, "OK", Some("callee1")));
    assert_eq!((out[0].0, status(&out[0].1)), (addr(CARRIER), 200));

    // New calls the callee never answers: about 62 a shard, more than any shard holds.
    let flood = 4000;
    let mut refused = 0;
    for i in 0..flood {
        let out =
            h.recv(CARRIER, &invite(&format!("z9hG4bKflood{i}"), &format!("flood-{i}"), "+15551230000", 70));
        refused += out.iter().filter(|(a, m)| *a == addr(CARRIER) && status(m) == 503).count();
    }
    // Every shard filled up to its reserve and not beyond (the first call's INVITE
    // transaction, kept after its 2xx, is one of them).
    let kept = TX_SHARDS * (per_shard as usize - per_shard as usize * 10 / 100);
    assert_eq!(h.engine.transactions(), kept);
    assert_eq!(flood - refused, kept - 1);
    assert_eq!(h.engine.counters().tx_table_full.load(Ordering::Relaxed), refused as u64);

    // The first call still ends: its BYE takes a reserved slot.
    let bye = "BYE sip:+15551230000@203.0.113.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bKbyek\r\n\
               Max-Forwards: 70\r\nFrom: <sip:+442079460000@192.0.2.7>;tag=caller1\r\n\
               To: <sip:+15551230000@203.0.113.1>;tag=callee1\r\nCall-ID: call-keep\r\nCSeq: 2 BYE\r\n\
               Content-Length: 0\r\n\r\n";
    let out = h.recv(CARRIER, bye);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!((out[0].0, method(&out[0].1)), (addr(PBX1), "BYE"));
    let out = h.recv(PBX1, &response_to(&out[0].1, 200, "OK", None));
    assert_eq!((out[0].0, status(&out[0].1)), (addr(CARRIER), 200));
}

/// The top Via's value of a message.
fn top_via(msg: &str) -> &str {
    msg.lines().find_map(|l| l.strip_prefix("Via: ")).unwrap_or_default()
}

#[test]
fn requests_within_calls_go_statelessly_when_even_their_reserve_is_full_and_a_bye_still_ends_its_call() {
    let config = CONFIG.replace("cps = 1000\nmax_calls = 10", "cps = 100000\nmax_calls = 100000");
    let per_shard = 20;
    let max_transactions = TX_SHARDS as u32 * per_shard;
    let mut h = Harness::with(&config, EngineConfig { max_transactions, ..EngineConfig::default() });
    let out = h.recv(CARRIER, &invite("z9hG4bKkeep", "call-keep", "+15551230000", 70));
    let out = h.recv(PBX1, &response_to(&out[1].1, 200, "OK", Some("callee1")));
    assert_eq!((out[0].0, status(&out[0].1)), (addr(CARRIER), 200));
    assert_eq!(h.engine.active_calls(), 1);
    let within = |method: &str, branch: &str, cseq: u32| {
        format!(
            "{method} sip:+15551230000@203.0.113.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7:5060;branch={branch}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:+442079460000@192.0.2.7>;tag=caller1\r\n\
             To: <sip:+15551230000@203.0.113.1>;tag=callee1\r\nCall-ID: call-keep\r\nCSeq: {cseq} {method}\r\n\
             Content-Length: 0\r\n\r\n"
        )
    };

    // INFOs within the call that the callee never answers: about 62 a shard, more than any
    // shard holds. Every one is forwarded; once its shard is full, without a transaction.
    let mut stateless = 0;
    for i in 0..4000 {
        let out = h.recv(CARRIER, &within("INFO", &format!("z9hG4bKinfo{i}"), i + 2));
        assert_eq!(out.len(), 1, "forwarded, never refused: {out:?}");
        assert_eq!((out[0].0, method(&out[0].1)), (addr(PBX1), "INFO"));
        stateless += u64::from(top_via(&out[0].1).contains(";branch=z9hG4bK-sl-"));
    }
    assert_eq!(h.engine.transactions(), max_transactions as usize, "every slot taken, none beyond");
    let counters = h.engine.counters();
    assert!(stateless > 0);
    assert_eq!(counters.forwarded_stateless_table_full.load(Ordering::Relaxed), stateless);
    assert_eq!(counters.tx_table_full.load(Ordering::Relaxed), 0, "nothing within a call is refused");

    // The BYE goes the same way, and the callee's 200 comes back through the edge to the
    // caller (our Via taken off), which ends the call and gives its slots back.
    let out = h.recv(CARRIER, &within("BYE", "z9hG4bKbyek", 9000));
    let [(to, bye)] = &out[..] else { panic!("{out:?}") };
    assert_eq!((*to, method(bye)), (addr(PBX1), "BYE"));
    assert!(top_via(bye).contains(";branch=z9hG4bK-sl-"), "{bye}");
    let ok = response_to(bye, 200, "OK", None);
    // A response whose second Via is not the one we forwarded under is not relayed.
    let forged = ok.replace("branch=z9hG4bKbyek", "branch=z9hG4bKforged");
    assert!(h.recv(PBX1, &forged).is_empty());
    assert_eq!(h.engine.active_calls(), 1);
    let out = h.recv(PBX1, &ok);
    let [(to, up)] = &out[..] else { panic!("{out:?}") };
    assert_eq!((*to, status(up)), (addr(CARRIER), 200));
    assert_eq!(top_via(up), "SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bKbyek");
    assert_eq!(h.engine.active_calls(), 0);
    assert_eq!(h.engine.guard().trunks()[0].limits.active(), 0);
}
