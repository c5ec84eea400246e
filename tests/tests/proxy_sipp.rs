//! The proxy end to end: the `sipedge` binary between real SIPp user agents on loopback.
//! The carrier (UAC) is 127.0.0.1, the only allow-listed source; PBXs (UAS) listen on other
//! loopback ports; 127.0.0.3 plays a stranger.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use tests::sipp::{
    CONTROL_WITHOUT_PROBES, Edge, LOOPBACK_EDGE, Scenario, UacResult, free_udp_port, have_sipp,
    spawn_counted, uac, uas,
};

const DID: &str = "+15551230000";

/// A configuration with one trunk (127.0.0.1/32) and one target with `uris`.
fn config(io: &str, uris: &[String], extra_trunk: &str, extra_edge: &str) -> String {
    let uris: Vec<String> = uris.iter().map(|u| format!("\"{u}\"")).collect();
    format!(
        r#"
{LOOPBACK_EDGE}io = "{io}"
{extra_edge}
{CONTROL_WITHOUT_PROBES}[[trunk]]
name = "carrier"
sources = ["127.0.0.1/32"]
{extra_trunk}
[[target]]
name = "pbx"
uris = [{uris}]
[[did]]
number = "{DID}"
target = "pbx"
"#,
        uris = uris.join(", ")
    )
}

fn pbx_uri(port: u16) -> String {
    format!("sip:127.0.0.1:{port}")
}

fn all_ok(r: UacResult, calls: u64) {
    assert_eq!((r.exit, r.successful, r.failed), (0, calls, 0), "{r:?}");
}

fn calls_complete(io: &str) {
    let pbx = free_udp_port();
    let edge = Edge::start(&config(io, &[pbx_uri(pbx)], "cps = 500\nmax_calls = 100", ""));
    let _uas = uas(Scenario::Builtin("uas"), "127.0.0.1", pbx);
    let r = uac(Scenario::Builtin("uac"), edge.addr, "127.0.0.1", free_udp_port(), DID, 50, 50, &[]);
    all_ok(r, 50);
}

#[test]
fn calls_complete_end_to_end_with_io_uring() {
    if !have_sipp("calls_complete_end_to_end_with_io_uring") {
        return;
    }
    calls_complete("uring");
}

#[test]
fn calls_complete_end_to_end_with_the_portable_backend() {
    if !have_sipp("calls_complete_end_to_end_with_the_portable_backend") {
        return;
    }
    calls_complete("portable");
}

#[test]
fn the_callee_hangs_up_through_the_edge() {
    if !have_sipp("the_callee_hangs_up_through_the_edge") {
        return;
    }
    let pbx = free_udp_port();
    let edge = Edge::start(&config("uring", &[pbx_uri(pbx)], "", ""));
    let _uas = uas(Scenario::File("uas-hangup.xml"), "127.0.0.1", pbx);
    let r =
        uac(Scenario::File("uac-callee-bye.xml"), edge.addr, "127.0.0.1", free_udp_port(), DID, 5, 10, &[]);
    all_ok(r, 5);
}

#[test]
fn an_unknown_did_gets_404_and_max_forwards_0_gets_483() {
    if !have_sipp("an_unknown_did_gets_404_and_max_forwards_0_gets_483") {
        return;
    }
    let pbx = free_udp_port();
    let edge = Edge::start(&config("uring", &[pbx_uri(pbx)], "", ""));
    let port = free_udp_port();
    let r =
        uac(Scenario::File("uac-expect-404.xml"), edge.addr, "127.0.0.1", port, "+15559999999", 3, 10, &[]);
    all_ok(r, 3);
    let r = uac(Scenario::File("uac-expect-483.xml"), edge.addr, "127.0.0.1", port, DID, 3, 10, &[]);
    all_ok(r, 3);
}

#[test]
fn over_the_trunk_cps_gets_503() {
    if !have_sipp("over_the_trunk_cps_gets_503") {
        return;
    }
    let pbx = free_udp_port();
    let edge = Edge::start(&config("uring", &[pbx_uri(pbx)], "cps = 1", ""));
    let _uas = uas(Scenario::Builtin("uas"), "127.0.0.1", pbx);
    let port = free_udp_port();
    // The one call of this second takes the trunk's only token...
    all_ok(uac(Scenario::Builtin("uac"), edge.addr, "127.0.0.1", port, DID, 1, 1, &[]), 1);
    // ...so the next ones, straight after, are refused with 503 and Retry-After.
    let r = uac(Scenario::File("uac-expect-503.xml"), edge.addr, "127.0.0.1", port, DID, 3, 100, &[]);
    all_ok(r, 3);
}

#[test]
fn over_the_trunk_concurrent_calls_gets_503() {
    if !have_sipp("over_the_trunk_concurrent_calls_gets_503") {
        return;
    }
    let pbx = free_udp_port();
    let edge = Edge::start(&config("uring", &[pbx_uri(pbx)], "max_calls = 1", ""));
    let _uas = uas(Scenario::Builtin("uas"), "127.0.0.1", pbx);
    let addr = edge.addr;
    // One call held for 3 s...
    let long = std::thread::spawn(move || {
        uac(Scenario::Builtin("uac"), addr, "127.0.0.1", free_udp_port(), DID, 1, 1, &["-d", "3000"])
    });
    std::thread::sleep(Duration::from_millis(1000));
    // ...so a second call meanwhile is refused.
    let r =
        uac(Scenario::File("uac-expect-503.xml"), edge.addr, "127.0.0.1", free_udp_port(), DID, 1, 1, &[]);
    all_ok(r, 1);
    // The held call is visible per DID and in all through the API.
    let (status, body) = edge.api("GET", "/v1/dids/%2B15551230000", None);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""active_calls":1"#), "{body}");
    assert!(edge.api("GET", "/v1/stats", None).1.contains(r#""active_calls":1"#));
    all_ok(long.join().expect("first call"), 1);
    // After the BYE the slot is free again.
    all_ok(uac(Scenario::Builtin("uac"), edge.addr, "127.0.0.1", free_udp_port(), DID, 1, 1, &[]), 1);
}

#[test]
fn a_silent_first_target_fails_over_to_the_second() {
    if !have_sipp("a_silent_first_target_fails_over_to_the_second") {
        return;
    }
    let dead = free_udp_port();
    let pbx = free_udp_port();
    // T1 = 20 ms: Timer B (64·T1) gives up on the silent target after 1.28 s.
    let edge = Edge::start(&config("uring", &[pbx_uri(dead), pbx_uri(pbx)], "", "t1_ms = 20"));
    let _uas = uas(Scenario::Builtin("uas"), "127.0.0.1", pbx);
    let r = uac(Scenario::Builtin("uac"), edge.addr, "127.0.0.1", free_udp_port(), DID, 3, 10, &[]);
    all_ok(r, 3);
}

#[test]
fn a_503_from_the_first_target_fails_over_to_the_second() {
    if !have_sipp("a_503_from_the_first_target_fails_over_to_the_second") {
        return;
    }
    let busy = free_udp_port();
    let pbx = free_udp_port();
    let edge = Edge::start(&config("uring", &[pbx_uri(busy), pbx_uri(pbx)], "", ""));
    let _unavailable = uas(Scenario::File("uas-503.xml"), "127.0.0.1", busy);
    let _uas = uas(Scenario::Builtin("uas"), "127.0.0.1", pbx);
    let r = uac(Scenario::Builtin("uac"), edge.addr, "127.0.0.1", free_udp_port(), DID, 5, 10, &[]);
    all_ok(r, 5);
}

#[test]
fn cancel_before_answer_reaches_the_callee_and_the_caller_gets_487() {
    if !have_sipp("cancel_before_answer_reaches_the_callee_and_the_caller_gets_487") {
        return;
    }
    let pbx = free_udp_port();
    let edge = Edge::start(&config("uring", &[pbx_uri(pbx)], "", ""));
    let _uas = uas(Scenario::File("uas-ring-cancel.xml"), "127.0.0.1", pbx);
    let r = uac(Scenario::File("uac-cancel.xml"), edge.addr, "127.0.0.1", free_udp_port(), DID, 3, 10, &[]);
    all_ok(r, 3);
}

#[test]
fn a_lost_200_retransmitted_by_the_callee_still_completes_the_call() {
    if !have_sipp("a_lost_200_retransmitted_by_the_callee_still_completes_the_call") {
        return;
    }
    let pbx = free_udp_port();
    let edge = Edge::start(&config("uring", &[pbx_uri(pbx)], "", ""));
    let _uas = uas(Scenario::File("uas-lost-200.xml"), "127.0.0.1", pbx);
    let r = uac(Scenario::Builtin("uac"), edge.addr, "127.0.0.1", free_udp_port(), DID, 10, 10, &[]);
    all_ok(r, 10);
}

/// The shortest maximum call duration the configuration accepts
/// (`control::config::MAX_CALL_SECS_RANGE`).
const MAX_CALL_SECS: u64 = 60;
/// How long past the maximum duration both SIPp runs may take to get their BYE and exit.
const BYE_GRACE: Duration = Duration::from_secs(20);

#[test]
fn a_call_at_its_maximum_duration_gets_a_bye_on_each_side_and_its_slot_back() {
    if !have_sipp("a_call_at_its_maximum_duration_gets_a_bye_on_each_side_and_its_slot_back") {
        return;
    }
    assert_eq!(*control::config::MAX_CALL_SECS_RANGE.start(), MAX_CALL_SECS as u32);
    let pbx = free_udp_port();
    let edge = Edge::start(&config(
        "uring",
        &[pbx_uri(pbx)],
        "max_calls = 1",
        &format!("max_call_secs = {MAX_CALL_SECS}"),
    ));
    let bound = Duration::from_secs(MAX_CALL_SECS) + BYE_GRACE;
    let pbx_run = spawn_counted(Scenario::File("uas-wait-bye.xml"), "127.0.0.1", pbx, 1, bound, &[]);
    // SIPp binds within milliseconds; an INVITE that still beats it is retransmitted.
    std::thread::sleep(Duration::from_millis(300));
    let target = edge.addr.to_string();
    let carrier = spawn_counted(
        Scenario::File("uac-wait-bye.xml"),
        "127.0.0.1",
        free_udp_port(),
        1,
        bound,
        &[&target, "-s", DID],
    );
    // Both sides hold the call until the edge's BYE ends it: neither hangs up by itself.
    all_ok(carrier.finish(bound), 1);
    all_ok(pbx_run.finish(BYE_GRACE), 1);
    assert!(edge.api("GET", "/v1/stats", None).1.contains(r#""active_calls":0"#));
    // The trunk's only slot is free again: the next call is admitted.
    let _uas = uas(Scenario::Builtin("uas"), "127.0.0.1", pbx);
    all_ok(uac(Scenario::Builtin("uac"), edge.addr, "127.0.0.1", free_udp_port(), DID, 1, 1, &[]), 1);
}

/// Sends `msg` from `from` to `to`; the reply, if any comes within `wait`.
fn exchange(from: &str, to: SocketAddr, msg: &[u8], wait: Duration) -> Option<String> {
    let s = UdpSocket::bind(from).expect("bind client");
    s.set_read_timeout(Some(wait)).expect("timeout");
    s.send_to(msg, to).expect("send");
    let mut buf = [0u8; 65535];
    s.recv_from(&mut buf).ok().map(|(n, _)| String::from_utf8_lossy(&buf[..n]).into_owned())
}

fn options(port_hint: &str) -> String {
    format!(
        "OPTIONS sip:{port_hint} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKopt{}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:ping@127.0.0.1>;tag=p\r\nTo: <sip:{port_hint}>\r\n\
         Call-ID: opt-{}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        free_udp_port(),
        free_udp_port()
    )
}

#[test]
fn strangers_get_no_answer_while_the_trunk_gets_options_200() {
    let pbx = free_udp_port();
    let edge = Edge::start(&config("uring", &[pbx_uri(pbx)], "", ""));
    let msg = options(&edge.addr.to_string());
    let reply = exchange("127.0.0.1:0", edge.addr, msg.as_bytes(), Duration::from_secs(5));
    assert!(reply.as_deref().is_some_and(|r| r.starts_with("SIP/2.0 200 ")), "{reply:?}");
    // 127.0.0.3 is in no trunk: silence, not even an error (no fingerprint).
    let reply = exchange("127.0.0.3:0", edge.addr, msg.as_bytes(), Duration::from_millis(1500));
    assert_eq!(reply, None);
}

#[test]
fn malformed_requests_get_400_and_the_workers_keep_serving() {
    let pbx = free_udp_port();
    let mut edge = Edge::start(&config("uring", &[pbx_uri(pbx)], "", ""));
    let addr = edge.addr;
    let wait = Duration::from_secs(5);
    let broken = options(&addr.to_string()).replace("Content-Length: 0", "Content-Length: 400");
    let reply = exchange("127.0.0.1:0", addr, broken.as_bytes(), wait);
    assert!(reply.as_deref().is_some_and(|r| r.starts_with("SIP/2.0 400 ")), "{reply:?}");
    let bad_cseq = options(&addr.to_string()).replace("CSeq: 1 OPTIONS", "CSeq: one OPTIONS");
    let reply = exchange("127.0.0.1:0", addr, bad_cseq.as_bytes(), wait);
    assert!(reply.as_deref().is_some_and(|r| r.starts_with("SIP/2.0 400 ")), "{reply:?}");
    // Garbage, empty and oversized datagrams: dropped, nothing crashes.
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    for junk in [&b"\x00\xff garbage"[..], b"", b"INVITE", &vec![b'A'; 60_000][..]] {
        s.send_to(junk, addr).expect("send junk");
    }
    let reply = exchange("127.0.0.1:0", addr, options(&addr.to_string()).as_bytes(), wait);
    assert!(reply.as_deref().is_some_and(|r| r.starts_with("SIP/2.0 200 ")), "{reply:?}");
    assert!(edge.is_running());
}
