//! Admission and routing changes applied while calls are in progress, on virtual time: the
//! next call follows the change; a call in progress keeps the generation that admitted it.

use super::*;

/// `CONFIG` with its trunk's `max_calls` and the target's URIs replaced, and a second trunk.
fn changed(max_calls: u32, carrier_sources: &str, uris: &str) -> String {
    format!(
        r#"
[[trunk]]
name = "carrier"
sources = [{carrier_sources}]
cps = 1000
max_calls = {max_calls}
[[trunk]]
name = "other"
sources = ["198.18.5.0/24"]
[[target]]
name = "pbx"
uris = [{uris}]
"#
    )
}

const SAME_URIS: &str = r#""sip:198.51.100.10:5060", "sip:198.51.100.11:5060""#;
const CARRIER_SOURCES: &str = r#""192.0.2.0/24""#;
const NEW_PBX: &str = "198.51.100.20:5060";

impl Harness {
    /// Applies a changed configuration as the live-change thread does: the next generation is
    /// built aside from the current one and swapped in.
    fn change(&mut self, config: &str) {
        let config = Config::from_toml(config).unwrap();
        crate::route::live::rebuild(&self.engine, &config, self.now).unwrap();
    }

    /// An INVITE from the carrier answered 200 by PBX1: returns the 200 as forwarded upstream.
    fn answered_call(&mut self, branch: &str, call_id: &str) -> String {
        let out = self.recv(CARRIER, &invite(branch, call_id, "+15551230000", 70));
        assert_eq!(out[1].0, addr(PBX1));
        let up = self.recv(PBX1, &response_to(&out[1].1, 200, "OK", Some("callee")));
        assert_eq!(status(&up[0].1), 200);
        up[0].1.clone()
    }
}

impl Harness {
    /// A call from the trunk "other" (198.18.5.7), answered by PBX1: Call-ID `call-ot`.
    fn answered_call_from_other_trunk(&mut self) {
        let inv = invite("z9hG4bKot", "call-ot", "+15551230000", 70)
            .replace("192.0.2.7", "198.18.5.7")
            .replace("tag=caller1", "tag=ot");
        let out = self.recv("198.18.5.7:5060", &inv);
        assert_eq!(out[1].0, addr(PBX1), "{out:#?}");
        let up = self.recv(PBX1, &response_to(&out[1].1, 200, "OK", Some("callee")));
        assert_eq!(status(&up[0].1), 200);
    }
}

fn bye_from_caller(call_id: &str, branch: &str) -> String {
    format!(
        "BYE sip:+15551230000@203.0.113.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7:5060;branch={branch}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:+442079460000@192.0.2.7>;tag=caller1\r\n\
         To: <sip:+15551230000@203.0.113.1>;tag=callee\r\nCall-ID: {call_id}\r\nCSeq: 2 BYE\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

fn statuses(out: &[(SocketAddr, String)]) -> Vec<u16> {
    out.iter().map(|(_, m)| status(m)).collect()
}

#[test]
fn max_calls_lowered_and_raised_live_counts_the_calls_in_progress() {
    let mut h = Harness::new();
    h.answered_call("z9hG4bKmc1", "call-mc1");
    h.answered_call("z9hG4bKmc2", "call-mc2");
    h.change(&changed(2, CARRIER_SOURCES, SAME_URIS));
    assert_eq!(h.engine.guard().trunks()[0].limits.active(), 2, "the calls in progress count");
    let out = h.recv(CARRIER, &invite("z9hG4bKmc3", "call-mc3", "+15551230000", 70));
    assert_eq!(statuses(&out), [503], "lowered to 2: the third call is refused");
    h.change(&changed(3, CARRIER_SOURCES, SAME_URIS));
    let out = h.recv(CARRIER, &invite("z9hG4bKmc4", "call-mc4", "+15551230000", 70));
    assert_eq!(out[1].0, addr(PBX1), "raised to 3: the next call goes through");
    let guard = h.engine.guard();
    let counters = &guard.trunks()[0].counters;
    assert_eq!(counters.admitted.load(Ordering::Relaxed), 3, "counters continue across changes");
    assert_eq!(counters.refused_concurrency.load(Ordering::Relaxed), 1);
    // Calls admitted before the changes give their slots back to the same count.
    let out = h.recv(CARRIER, &bye_from_caller("call-mc1", "z9hG4bKmcb1"));
    h.recv(PBX1, &response_to(&out[0].1, 200, "OK", None));
    assert_eq!(h.engine.guard().trunks()[0].limits.active(), 2);
    assert_eq!(h.engine.guard().trunks()[0].limits.release_underflows(), 0);
}

#[test]
fn a_source_added_live_is_admitted_by_the_next_datagram() {
    let mut h = Harness::new();
    let stranger = "198.18.0.1:5060";
    let inv =
        |b: &str| invite(b, &format!("call-{b}"), "+15551230000", 70).replace("192.0.2.7", "198.18.0.1");
    assert!(h.recv(stranger, &inv("z9hG4bKsa1")).is_empty(), "unknown: no answer");
    h.change(&changed(10, r#""192.0.2.0/24", "198.18.0.0/24""#, SAME_URIS));
    let out = h.recv(stranger, &inv("z9hG4bKsa2"));
    assert_eq!((status(&out[0].1), out[1].0), (100, addr(PBX1)), "{out:#?}");
    // And removed again: no answer.
    h.change(&changed(10, CARRIER_SOURCES, SAME_URIS));
    assert!(h.recv(stranger, &inv("z9hG4bKsa3")).is_empty());
}

#[test]
fn a_trunk_removed_during_a_call_lets_the_call_finish_and_frees_its_slot() {
    let mut h = Harness::new();
    h.answered_call("z9hG4bKrt1", "call-rt1");
    let ringing = invite("z9hG4bKrtr", "call-rtr", "+15551230000", 70);
    let fwd = h.recv(CARRIER, &ringing)[1].1.clone();
    h.recv(PBX1, &response_to(&fwd, 180, "Ringing", Some("r")));
    let old_guard = h.engine.guard();
    // The carrier's trunk goes; another trunk stays.
    h.change(
        r#"
[[trunk]]
name = "other"
sources = ["198.18.5.0/24"]
[[target]]
name = "pbx"
uris = ["sip:198.51.100.10:5060", "sip:198.51.100.11:5060"]
"#,
    );
    assert!(h.engine.guard().source(addr(CARRIER).ip()).is_err());
    // The ACK of the 2xx and the BYE of the call in progress still pass, both ways.
    let ack =
        bye_from_caller("call-rt1", "z9hG4bKrta").replace("BYE", "ACK").replace("CSeq: 2 ACK", "CSeq: 1 ACK");
    let out = h.recv(CARRIER, &ack);
    assert_eq!(out.iter().map(|(a, m)| (*a, method(m))).collect::<Vec<_>>(), [(addr(PBX1), "ACK")]);
    let out = h.recv(CARRIER, &bye_from_caller("call-rt1", "z9hG4bKrtb"));
    assert_eq!(out.iter().map(|(a, m)| (*a, method(m))).collect::<Vec<_>>(), [(addr(PBX1), "BYE")]);
    let out = h.recv(PBX1, &response_to(&out[0].1, 200, "OK", None));
    assert_eq!(out.iter().map(|(a, m)| (*a, status(m))).collect::<Vec<_>>(), [(addr(CARRIER), 200)]);
    assert_eq!(h.engine.active_calls(), 0);
    // The ringing call's CANCEL passes too, and its 487 comes back.
    let cancel = ringing.replace("INVITE sip:", "CANCEL sip:").replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    let out = h.recv(CARRIER, &cancel);
    assert_eq!(
        out.iter().map(|(a, m)| (*a, status(m))).collect::<Vec<_>>(),
        [(addr(CARRIER), 200), (addr(PBX1), 0)]
    );
    let out = h.recv(PBX1, &response_to(&fwd, 487, "Request Terminated", Some("r")));
    assert_eq!(out.last().map(|(a, m)| (*a, status(m))), Some((addr(CARRIER), 487)));
    assert_eq!(old_guard.trunks()[0].limits.active(), 0, "the removed trunk's slots went back");
    assert_eq!(old_guard.trunks()[0].limits.release_underflows(), 0);
    // The next INVITE from the removed trunk gets no answer at all.
    assert!(h.recv(CARRIER, &invite("z9hG4bKrt2", "call-rt2", "+15551230000", 70)).is_empty());
    assert!(h.recv(CARRIER, &bye_from_caller("call-rt1", "z9hG4bKrtc")).is_empty(), "the call is over");
    // A stranger gets nothing for a call it is not a side of.
    h.answered_call_from_other_trunk();
    let foreign = bye_from_caller("call-ot", "z9hG4bKrtd").replace("tag=caller1", "tag=ot");
    assert!(h.recv(CARRIER, &foreign).is_empty(), "not a side of that dialog");
}

#[test]
fn a_target_changed_while_calls_ring_keeps_their_route_and_moves_the_next_call() {
    let mut h = Harness::new();
    // Call A rings at PBX1; call B gets no answer yet; call C is answered by PBX1.
    let inv_a = invite("z9hG4bKtA", "call-tA", "+15551230000", 70);
    let fwd_a = h.recv(CARRIER, &inv_a)[1].1.clone();
    h.recv(PBX1, &response_to(&fwd_a, 180, "Ringing", Some("ringA")));
    let out = h.recv(CARRIER, &invite("z9hG4bKtB", "call-tB", "+15551230000", 70));
    assert_eq!(out[1].0, addr(PBX1));
    let ok_c = h.answered_call("z9hG4bKtC", "call-tC");
    let callee_c = ok_c.lines().find(|l| l.starts_with("To:")).unwrap().to_owned();
    assert!(callee_c.contains("tag=callee"));

    // The target's URIs change: PBX1 and PBX2 are no longer targets.
    h.change(&changed(10, CARRIER_SOURCES, &format!(r#""sip:{NEW_PBX}""#)));

    // The next call goes to the new URI.
    let out = h.recv(CARRIER, &invite("z9hG4bKtD", "call-tD", "+15551230000", 70));
    assert_eq!(out[1].0, addr(NEW_PBX));
    assert!(out[1].1.starts_with("INVITE sip:+15551230000@198.51.100.20:5060 "));
    // Call A's CANCEL goes where A rings; its 487 comes back.
    let cancel = inv_a.replace("INVITE sip:", "CANCEL sip:").replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    let out = h.recv(CARRIER, &cancel);
    assert_eq!(
        out.iter().map(|(a, m)| (*a, status(m))).collect::<Vec<_>>(),
        [(addr(CARRIER), 200), (addr(PBX1), 0)]
    );
    let out = h.recv(PBX1, &response_to(&fwd_a, 487, "Request Terminated", Some("ringA")));
    assert_eq!(out.last().map(|(a, m)| (*a, status(m))), Some((addr(CARRIER), 487)));
    // Call C's callee (no longer a target) hangs up: its BYE reaches the caller.
    let bye = "BYE sip:caller@192.0.2.7:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.10:5060;branch=z9hG4bKtCbye\r\n\
         Route: <sip:203.0.113.1:5060;lr>\r\nMax-Forwards: 70\r\n\
         From: <sip:+15551230000@203.0.113.1>;tag=callee\r\nTo: <sip:+442079460000@192.0.2.7>;tag=caller1\r\n\
         Call-ID: call-tC\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n";
    let out = h.recv(PBX1, bye);
    assert_eq!(out.iter().map(|(a, m)| (*a, method(m))).collect::<Vec<_>>(), [(addr(CARRIER), "BYE")]);
    // Call B times out at PBX1 and fails over within its own generation: to PBX2, not the new URI.
    let out = h.advance_to(Duration::from_millis(32_100));
    let b_to: Vec<SocketAddr> = out
        .iter()
        .filter(|(_, m)| method(m) == "INVITE" && m.contains("Call-ID: call-tB\r\n"))
        .map(|(a, _)| *a)
        .collect();
    assert_eq!(b_to.last(), Some(&addr(PBX2)), "{b_to:?}");
    assert!(!b_to.contains(&addr(NEW_PBX)), "{b_to:?}");
}

#[test]
fn target_health_carries_over_by_uri() {
    let config = Config::from_toml(CONFIG).unwrap();
    let health = crate::route::HealthSettings {
        interval: Duration::from_secs(1),
        timeout: Duration::from_millis(500),
        down_after: 2,
        up_after: 1,
        retry_after_503: control::config::RetryAfter503::default(),
    };
    let mut h = Harness::new();
    h.engine = Engine::new(
        Guard::from_config(&config).unwrap(),
        Arc::new(Router::from_config(&config).unwrap()),
        EngineConfig { health: Some(health), ..EngineConfig::default() },
    );
    // Only PBX2 answers probes: PBX1 goes down. (INVITE retransmissions are left unanswered.)
    let run = |h: &mut Harness, until: Duration, answer_pbx1: bool| {
        let mut probed = Vec::new();
        while h.now < h.t0 + until {
            h.now += TICK;
            h.engine.on_tick(&mut h.worker, h.now, &mut h.sink);
            for (to, probe) in h.take().into_iter().filter(|(_, m)| method(m) == "OPTIONS") {
                probed.push(to);
                if to != addr(PBX1) || answer_pbx1 {
                    h.recv(&to.to_string(), &response_to(&probe, 200, "OK", Some("hp")));
                }
            }
        }
        probed
    };
    run(&mut h, Duration::from_secs(3), false);
    assert_eq!(h.recv(CARRIER, &invite("z9hG4bKhc1", "call-hc1", "+15551230000", 70))[1].0, addr(PBX2));
    // A new URI goes first in the list; PBX1 and PBX2 stay, PBX1 still down.
    h.change(&changed(10, CARRIER_SOURCES, &format!(r#""sip:{NEW_PBX}", "sip:{PBX1}", "sip:{PBX2}""#)));
    let out = h.recv(CARRIER, &invite("z9hG4bKhc2", "call-hc2", "+15551230000", 70));
    assert_eq!(out[1].0, addr(NEW_PBX), "the new URI starts up");
    h.change(&changed(10, CARRIER_SOURCES, &format!(r#""sip:{PBX1}", "sip:{PBX2}""#)));
    let out = h.recv(CARRIER, &invite("z9hG4bKhc3", "call-hc3", "+15551230000", 70));
    assert_eq!(out[1].0, addr(PBX2), "PBX1 is still down after two changes");
    // Probing goes on in the new generation: PBX1 answers and is up again.
    let probed = run(&mut h, Duration::from_secs(6), true);
    assert!(probed.contains(&addr(PBX1)) && !probed.contains(&addr(NEW_PBX)), "{probed:?}");
    let out = h.recv(CARRIER, &invite("z9hG4bKhc4", "call-hc4", "+15551230000", 70));
    assert_eq!(out[1].0, addr(PBX1));
}

#[test]
fn an_idle_worker_lets_go_of_a_swapped_out_did_table_at_its_next_tick() {
    let mut h = Harness::new();
    // A routed call: the worker's own route reader now holds the table.
    h.answered_call("z9hG4bKidle", "call-idle");
    let router = h.engine.router();
    let current = router.table();
    let old = Arc::downgrade(&*current);
    let rebuilt = Arc::new(current.compact());
    drop(current);
    drop(router.replace_table(rebuilt));
    assert!(old.upgrade().is_some(), "kept by the worker's reader until it looks again");
    h.advance_to(TICK);
    assert!(old.upgrade().is_none(), "a tick lets it go");
    // The next call is routed by the new table, through the same reader.
    let out = h.recv(CARRIER, &invite("z9hG4bKidle2", "call-idle2", "+15551230000", 70));
    assert_eq!(out[1].0, addr(PBX1));
}
