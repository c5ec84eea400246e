//! Calls past their maximum duration, on virtual time: a BYE to each side as if from the other,
//! their answers absorbed, retransmissions on Timer E until Timer F, slots released once.

use super::*;

const MAX_CALL: Duration = Duration::from_secs(60);
const CALLER_CONTACT: &str = "sip:caller@192.0.2.7:5060";
const CALLEE_CONTACT: &str = "sip:pbx@198.51.100.10:5060";

fn harness() -> Harness {
    harness_with(MAX_CALL)
}

fn harness_with(max_call_duration: Duration) -> Harness {
    let config = Config::from_toml(CONFIG).unwrap();
    let guard = Guard::from_config(&config).unwrap();
    let router = Arc::new(Router::from_config(&config).unwrap());
    let mut h = Harness::new();
    h.engine = Engine::new(guard, router, EngineConfig { max_call_duration, ..EngineConfig::default() });
    h
}

fn counter(h: &Harness, c: fn(&crate::proxy::ProxyCounters) -> &std::sync::atomic::AtomicU64) -> u64 {
    c(h.engine.counters()).load(Ordering::Relaxed)
}

/// An in-dialog request from `from` (CARRIER or PBX1) along our Record-Route.
fn in_dialog(method: &str, branch: &str, cseq: u32, from_caller: bool) -> String {
    let (ruri, via, from, to) = if from_caller {
        (
            CALLEE_CONTACT,
            "192.0.2.7:5060",
            "<sip:+442079460000@192.0.2.7>;tag=caller1",
            "<sip:+15551230000@203.0.113.1>;tag=answer",
        )
    } else {
        (
            CALLER_CONTACT,
            "198.51.100.10:5060",
            "<sip:+15551230000@203.0.113.1>;tag=answer",
            "<sip:+442079460000@192.0.2.7>;tag=caller1",
        )
    };
    format!(
        "{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {via};branch={branch}\r\n\
         Route: <sip:203.0.113.1:5060;lr>\r\nMax-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\n\
         Call-ID: call-exp\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
    )
}

/// A call answered by PBX1 (Record-Route and Contact in its 200), ACKed, then an INFO from each
/// side that passes through (CSeq 4 from the caller, 7 from the callee).
fn answered_call(h: &mut Harness) {
    let out = h.recv(CARRIER, &invite("z9hG4bKx1", "call-exp", "+15551230000", 70));
    assert_eq!(out[1].0, addr(PBX1));
    let ok = response_to(&out[1].1, 200, "OK", Some("answer")).replace(
        "Content-Length: 0",
        &format!(
            "Record-Route: <sip:203.0.113.1:5060;lr>\r\nContact: <{CALLEE_CONTACT}>\r\nContent-Length: 0"
        ),
    );
    let up = h.recv(PBX1, &ok);
    assert_eq!((up[0].0, status(&up[0].1)), (addr(CARRIER), 200));
    let ack = in_dialog("ACK", "z9hG4bKx1ack", 1, true);
    assert_eq!(h.recv(CARRIER, &ack).iter().map(|(a, _)| *a).collect::<Vec<_>>(), [addr(PBX1)]);
    for (from, info) in [
        (CARRIER, in_dialog("INFO", "z9hG4bKx1i1", 4, true)),
        (PBX1, in_dialog("INFO", "z9hG4bKx1i2", 7, false)),
    ] {
        let fwd = h.recv(from, &info);
        let (dest, fwd) = fwd.last().unwrap();
        assert_eq!(method(fwd), "INFO");
        h.recv(&dest.to_string(), &response_to(fwd, 200, "OK", None));
    }
    assert_eq!(h.engine.active_calls(), 1);
    assert_eq!(h.engine.guard().trunks()[0].limits.active(), 1);
}

/// The BYEs sent up to `at`, by destination: (to PBX1, to CARRIER).
fn byes_until(h: &mut Harness, at: Duration) -> (Vec<String>, Vec<String>) {
    let sent = h.advance_to(at);
    assert!(sent.iter().all(|(_, m)| method(m) == "BYE"), "{sent:#?}");
    let to = |who: &str| sent.iter().filter(|(a, _)| *a == addr(who)).map(|(_, m)| m.clone()).collect();
    (to(PBX1), to(CARRIER))
}

fn header<'m>(msg: &'m str, name: &str) -> Option<&'m str> {
    msg.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
}

#[test]
fn a_call_past_its_maximum_duration_gets_a_bye_on_each_side_and_their_answers_stop_here() {
    let mut h = harness();
    answered_call(&mut h);
    let (to_callee, to_caller) = byes_until(&mut h, MAX_CALL - Duration::from_millis(20));
    assert!(to_callee.is_empty() && to_caller.is_empty(), "nothing before the maximum duration");
    let (to_callee, to_caller) = byes_until(&mut h, MAX_CALL + Duration::from_millis(20));
    let ([callee_bye], [caller_bye]) = (&to_callee[..], &to_caller[..]) else {
        panic!("one BYE to each side: {to_callee:#?} {to_caller:#?}")
    };
    assert!(callee_bye.starts_with(&format!("BYE {CALLEE_CONTACT} SIP/2.0\r\n")), "{callee_bye}");
    assert_eq!(header(callee_bye, "From"), Some("<sip:+442079460000@192.0.2.7>;tag=caller1"));
    assert_eq!(header(callee_bye, "To"), Some("<sip:+15551230000@203.0.113.1>;tag=answer"));
    assert_eq!(header(callee_bye, "CSeq"), Some("5 BYE"), "the caller's highest (INFO 4) + 1");
    assert!(caller_bye.starts_with(&format!("BYE {CALLER_CONTACT} SIP/2.0\r\n")), "{caller_bye}");
    assert_eq!(header(caller_bye, "From"), Some("<sip:+15551230000@203.0.113.1>;tag=answer"));
    assert_eq!(header(caller_bye, "To"), Some("<sip:+442079460000@192.0.2.7>;tag=caller1"));
    assert_eq!(header(caller_bye, "CSeq"), Some("8 BYE"), "the callee's highest (INFO 7) + 1");
    for bye in [callee_bye, caller_bye] {
        assert_eq!(header(bye, "Call-ID"), Some("call-exp"));
        assert_eq!(header(bye, "Route"), None, "the only Record-Route entry is ours");
        assert!(
            header(bye, "Via")
                .is_some_and(|v| v.starts_with("SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bK-by-"))
        );
        assert_eq!(header(bye, "Max-Forwards"), Some("70"));
    }
    // The call is over: its slots went back, once.
    assert_eq!(h.engine.active_calls(), 0);
    assert_eq!(h.engine.guard().trunks()[0].limits.active(), 0);
    assert_eq!((counter(&h, |c| &c.calls_ended), counter(&h, |c| &c.byes_sent)), (1, 2));
    assert_eq!(h.engine.pending_byes(), 2);
    // The callee says 200, the caller 481: both answers stop here.
    let forwarded = counter(&h, |c| &c.responses_forwarded);
    assert!(h.recv(PBX1, &response_to(callee_bye, 200, "OK", None)).is_empty());
    assert!(
        h.recv(CARRIER, &response_to(caller_bye, 481, "Call/Transaction Does Not Exist", None)).is_empty()
    );
    assert_eq!(counter(&h, |c| &c.responses_forwarded), forwarded);
    assert_eq!((counter(&h, |c| &c.byes_answered_2xx), counter(&h, |c| &c.byes_answered_481)), (1, 1));
    assert_eq!(h.engine.pending_byes(), 0);
    // A retransmitted answer and a forged branch are absorbed too.
    assert!(h.recv(PBX1, &response_to(callee_bye, 200, "OK", None)).is_empty());
    let forged = callee_bye.replace("branch=z9hG4bK-by-", "branch=z9hG4bK-by-1-");
    assert!(h.recv(PBX1, &response_to(&forged, 200, "OK", None)).is_empty());
    assert_eq!(counter(&h, |c| &c.byes_answered_2xx), 1);
    // Nothing is retransmitted once answered.
    assert!(h.advance_to(MAX_CALL + Duration::from_secs(40)).is_empty());
    // A late BYE from the caller for the ended call does not end it twice.
    h.recv(CARRIER, &in_dialog("BYE", "z9hG4bKx1b", 5, true));
    assert_eq!(counter(&h, |c| &c.calls_ended), 1);
    assert_eq!(h.engine.guard().trunks()[0].limits.active(), 0);
}

#[test]
fn an_unanswered_bye_is_retransmitted_on_timer_e_until_timer_f() {
    let mut h = harness();
    answered_call(&mut h);
    let (callee, caller) = byes_until(&mut h, MAX_CALL + Duration::from_millis(20));
    assert_eq!((callee.len(), caller.len()), (1, 1));
    // T1 = 500 ms doubling to T2 = 4 s: resent at 0.5, 1.5, 3.5, 7.5, then every 4 s to 31.5.
    let (callee_again, caller_again) = byes_until(&mut h, MAX_CALL + Duration::from_secs(33));
    assert_eq!((callee_again.len(), caller_again.len()), (10, 10));
    assert!(callee_again.iter().all(|b| *b == callee[0]) && caller_again.iter().all(|b| *b == caller[0]));
    assert_eq!(counter(&h, |c| &c.byes_timed_out), 2, "Timer F");
    assert_eq!(counter(&h, |c| &c.byes_retransmitted), 20);
    assert_eq!(h.engine.pending_byes(), 0);
    assert!(h.advance_to(MAX_CALL + Duration::from_secs(60)).is_empty());
}

#[test]
fn a_call_whose_headers_allow_no_bye_still_ends_and_is_counted() {
    let mut h = harness();
    // The callee's 200 has no Contact: there is no remote target to send a BYE to.
    let out = h.recv(CARRIER, &invite("z9hG4bKy1", "call-noc", "+15551230000", 70));
    h.recv(PBX1, &response_to(&out[1].1, 200, "OK", Some("answer")));
    assert_eq!(h.engine.active_calls(), 1);
    assert!(byes_until(&mut h, MAX_CALL + Duration::from_millis(20)) == (vec![], vec![]));
    assert_eq!(h.engine.active_calls(), 0);
    assert_eq!(h.engine.guard().trunks()[0].limits.active(), 0);
    assert_eq!((counter(&h, |c| &c.calls_ended), counter(&h, |c| &c.calls_expired_without_bye)), (1, 1));
    assert_eq!(counter(&h, |c| &c.byes_sent), 0);
}

#[test]
fn a_re_invite_answered_2xx_refreshes_where_the_byes_go() {
    let mut h = harness();
    answered_call(&mut h);
    // The callee re-INVITEs (CSeq 8) from a new Contact; the caller answers from a new one too.
    let reinvite = in_dialog("INVITE", "z9hG4bKx1r", 8, false)
        .replace("Content-Length: 0", "Contact: <sip:pbx@198.51.100.10:5090>\r\nContent-Length: 0");
    let fwd = h.recv(PBX1, &reinvite);
    let (dest, fwd) = fwd.last().unwrap();
    assert_eq!((*dest, method(fwd)), (addr(CARRIER), "INVITE"));
    let ok = response_to(fwd, 200, "OK", None)
        .replace("Content-Length: 0", "Contact: <sip:caller@192.0.2.7:5099>\r\nContent-Length: 0");
    h.recv(CARRIER, &ok);
    let (to_callee, to_caller) = byes_until(&mut h, MAX_CALL + Duration::from_millis(20));
    assert!(to_callee[0].starts_with("BYE sip:pbx@198.51.100.10:5090 SIP/2.0\r\n"), "{to_callee:?}");
    assert!(to_caller[0].starts_with("BYE sip:caller@192.0.2.7:5099 SIP/2.0\r\n"), "{to_caller:?}");
    assert_eq!(header(&to_caller[0], "CSeq"), Some("9 BYE"), "after the re-INVITE's 8");
    assert_eq!(header(&to_callee[0], "CSeq"), Some("5 BYE"));
}

#[test]
fn an_update_answered_2xx_refreshes_where_the_byes_go() {
    let mut h = harness();
    answered_call(&mut h);
    // The caller UPDATEs (CSeq 6) from a new Contact; the callee answers from a new one too.
    let update = in_dialog("UPDATE", "z9hG4bKx1u", 6, true)
        .replace("Content-Length: 0", "Contact: <sip:caller@192.0.2.7:5099>\r\nContent-Length: 0");
    let fwd = h.recv(CARRIER, &update);
    let (dest, fwd) = fwd.last().unwrap();
    assert_eq!((*dest, method(fwd)), (addr(PBX1), "UPDATE"));
    let ok = response_to(fwd, 200, "OK", None)
        .replace("Content-Length: 0", "Contact: <sip:pbx@198.51.100.10:5090>\r\nContent-Length: 0");
    h.recv(PBX1, &ok);
    let (to_callee, to_caller) = byes_until(&mut h, MAX_CALL + Duration::from_millis(20));
    assert!(to_callee[0].starts_with("BYE sip:pbx@198.51.100.10:5090 SIP/2.0\r\n"), "{to_callee:?}");
    assert!(to_caller[0].starts_with("BYE sip:caller@192.0.2.7:5099 SIP/2.0\r\n"), "{to_caller:?}");
    assert_eq!(header(&to_callee[0], "CSeq"), Some("7 BYE"), "after the UPDATE's 6");
}

#[test]
fn requests_of_the_early_dialog_raise_the_cseq_of_the_byes() {
    let mut h = harness();
    let out = h.recv(CARRIER, &invite("z9hG4bKx1", "call-exp", "+15551230000", 70));
    let invite_fwd = out[1].1.clone();
    let dialog_headers = format!(
        "Record-Route: <sip:203.0.113.1:5060;lr>\r\nContact: <{CALLEE_CONTACT}>\r\nContent-Length: 0"
    );
    // A reliable 183 creates the early dialog (RFC 3262).
    let progress = response_to(&invite_fwd, 183, "Session Progress", Some("answer"))
        .replace("Content-Length: 0", &format!("Require: 100rel\r\nRSeq: 1\r\n{dialog_headers}"));
    let up = h.recv(PBX1, &progress);
    assert_eq!((up[0].0, status(&up[0].1)), (addr(CARRIER), 183));
    // Within it: the caller's PRACK and UPDATE, the callee's UPDATE, each forwarded and answered.
    for (from, request) in [
        (CARRIER, in_dialog("PRACK", "z9hG4bKx1p", 2, true)),
        (CARRIER, in_dialog("UPDATE", "z9hG4bKx1u", 3, true)),
        (PBX1, in_dialog("UPDATE", "z9hG4bKx1v", 9, false)),
    ] {
        let fwd = h.recv(from, &request);
        let (dest, fwd) = fwd.last().unwrap();
        assert_eq!(method(fwd), method(&request));
        h.recv(&dest.to_string(), &response_to(fwd, 200, "OK", None));
    }
    let ok =
        response_to(&invite_fwd, 200, "OK", Some("answer")).replace("Content-Length: 0", &dialog_headers);
    assert_eq!(status(&h.recv(PBX1, &ok)[0].1), 200);
    h.recv(CARRIER, &in_dialog("ACK", "z9hG4bKx1ack", 1, true));
    assert_eq!(h.engine.active_calls(), 1);
    let (to_callee, to_caller) = byes_until(&mut h, MAX_CALL + Duration::from_millis(20));
    let ([callee_bye], [caller_bye]) = (&to_callee[..], &to_caller[..]) else {
        panic!("one BYE to each side: {to_callee:#?} {to_caller:#?}")
    };
    assert_eq!(header(callee_bye, "CSeq"), Some("4 BYE"), "above the caller's early UPDATE (3)");
    assert_eq!(header(caller_bye, "CSeq"), Some("10 BYE"), "above the callee's early UPDATE (9)");
}

/// The maximum duration of the session-timer tests: longer than their session intervals.
const SESSION_MAX_CALL: Duration = Duration::from_secs(600);

/// A call answered by PBX1 with `session` among the 200's headers, then ACKed.
fn answered_with_session(h: &mut Harness, session: &str) {
    let out = h.recv(CARRIER, &invite("z9hG4bKx1", "call-exp", "+15551230000", 70));
    let ok = response_to(&out[1].1, 200, "OK", Some("answer")).replace(
        "Content-Length: 0",
        &format!(
            "Record-Route: <sip:203.0.113.1:5060;lr>\r\nContact: <{CALLEE_CONTACT}>\r\n{session}Content-Length: 0"
        ),
    );
    assert_eq!(status(&h.recv(PBX1, &ok)[0].1), 200);
    h.recv(CARRIER, &in_dialog("ACK", "z9hG4bKx1ack", 1, true));
    assert_eq!(h.engine.active_calls(), 1);
}

/// A session refresh from the caller (`method`: INVITE or UPDATE), answered 200 by the callee
/// with `session` among its headers.
fn refreshed(h: &mut Harness, method: &str, cseq: u32, session: &str) {
    let out = h.recv(CARRIER, &in_dialog(method, &format!("z9hG4bKx1s{cseq}"), cseq, true));
    let (dest, fwd) = out.last().unwrap();
    assert_eq!((*dest, super::method(fwd)), (addr(PBX1), method));
    let ok = response_to(fwd, 200, "OK", None)
        .replace("Content-Length: 0", &format!("{session}Content-Length: 0"));
    let up = h.recv(PBX1, &ok);
    assert_eq!((up[0].0, status(&up[0].1)), (addr(CARRIER), 200));
}

#[test]
fn a_call_whose_session_interval_passes_without_a_refresh_ends_then_not_at_its_maximum() {
    let mut h = harness_with(SESSION_MAX_CALL);
    answered_with_session(&mut h, "Session-Expires: 120;refresher=uac\r\n");
    let (to_callee, to_caller) = byes_until(&mut h, Duration::from_secs(119));
    assert!(to_callee.is_empty() && to_caller.is_empty(), "nothing before the session interval");
    let (to_callee, to_caller) = byes_until(&mut h, Duration::from_millis(120_020));
    assert_eq!((to_callee.len(), to_caller.len()), (1, 1), "{to_callee:?} {to_caller:?}");
    assert_eq!(h.engine.active_calls(), 0);
    assert_eq!(h.engine.guard().trunks()[0].limits.active(), 0, "the trunk's slot is back");
    assert_eq!(counter(&h, |c| &c.calls_session_expired), 1);
}

#[test]
fn a_session_interval_under_the_minimum_counts_as_the_minimum() {
    let mut h = harness_with(SESSION_MAX_CALL);
    answered_with_session(&mut h, "Session-Expires: 30\r\n");
    let (to_callee, _) = byes_until(&mut h, Duration::from_secs(89));
    assert!(to_callee.is_empty());
    let (to_callee, _) = byes_until(&mut h, Duration::from_millis(90_020));
    assert_eq!(to_callee.len(), 1);
}

#[test]
fn a_refresh_moves_the_session_deadline_and_one_without_session_expires_turns_the_timer_off() {
    let mut h = harness_with(SESSION_MAX_CALL);
    answered_with_session(&mut h, "Session-Expires: 120;refresher=uac\r\n");
    let (to_callee, _) = byes_until(&mut h, Duration::from_secs(100));
    assert!(to_callee.is_empty());
    // A re-INVITE at 100 s: the session now ends at 220 s.
    refreshed(&mut h, "INVITE", 2, "Session-Expires: 120;refresher=uac\r\n");
    let (to_callee, _) = byes_until(&mut h, Duration::from_secs(200));
    assert!(to_callee.is_empty(), "refreshed: not at 120 s");
    // An UPDATE at 200 s answered without Session-Expires: no session timer any more.
    refreshed(&mut h, "UPDATE", 3, "");
    let (to_callee, _) = byes_until(&mut h, SESSION_MAX_CALL - Duration::from_secs(1));
    assert!(to_callee.is_empty(), "no session timer: only the maximum duration ends the call");
    let (to_callee, to_caller) = byes_until(&mut h, SESSION_MAX_CALL + Duration::from_millis(20));
    assert_eq!((to_callee.len(), to_caller.len()), (1, 1));
    assert_eq!(header(&to_callee[0], "CSeq"), Some("4 BYE"), "after the UPDATE's 3");
    assert_eq!(counter(&h, |c| &c.calls_session_expired), 0);
}
