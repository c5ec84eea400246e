//! Live changes: a DID added through the API routes calls without a restart, and once
//! deleted gets 404; a source added to a trunk is admitted and a target moved to another URI
//! takes the next call, while sipedge runs. The time from the API's answer to the first datagram
//! handled the new way is measured and printed (asserted only against a generous bound: timing
//! belongs in benchmarks).

use std::time::{Duration, Instant};

use tests::probe::{answers, probe, until_answers, until_status};
use tests::sipp::{
    CONTROL_WITHOUT_PROBES, Edge, LOOPBACK_EDGE, Scenario, free_udp_port, have_sipp, uac, uas,
};

/// Longest wait for a change to show, before the test fails.
const CHANGE_DEADLINE: Duration = Duration::from_secs(10);
/// A generous bound on the measured delay of a trunk or target change (the goal is one second).
const CHANGE_LATENCY_BOUND: Duration = Duration::from_secs(5);

fn config(pbx: u16) -> String {
    format!(
        r#"
{LOOPBACK_EDGE}{CONTROL_WITHOUT_PROBES}[[trunk]]
name = "carrier"
sources = ["127.0.0.1/32"]
[[target]]
name = "pbx"
uris = ["sip:127.0.0.1:{pbx}"]
[[did]]
number = "+15551230000"
target = "pbx"
"#
    )
}

#[test]
fn a_did_added_through_the_api_routes_at_once_and_a_deleted_one_gets_404() {
    if !have_sipp("a_did_added_through_the_api_routes_at_once_and_a_deleted_one_gets_404") {
        return;
    }
    let pbx = free_udp_port();
    let edge = Edge::start(&config(pbx));
    let _uas = uas(Scenario::Builtin("uas"), "127.0.0.1", pbx);
    let number = "+15551230077";
    assert_eq!(probe(edge.addr, number, 0), Some(404), "not routed before the change");

    assert!(matches!(edge.api("PUT", "/v1/dids/%2B15551230077", Some(r#"{"target": "pbx"}"#)).0, 200 | 201));
    let visible = until_status(edge.addr, number, 100, CHANGE_DEADLINE);
    println!("live change: a new DID routed {visible:?} after the API answered");
    let r = uac(Scenario::Builtin("uac"), edge.addr, "127.0.0.1", free_udp_port(), number, 2, 10, &[]);
    assert_eq!((r.exit, r.successful, r.failed), (0, 2, 0), "{r:?}");

    assert!(matches!(edge.api("DELETE", "/v1/dids/%2B15551230077", None).0, 200 | 204));
    let gone = until_status(edge.addr, number, 404, CHANGE_DEADLINE);
    println!("live change: a deleted DID answered 404 {gone:?} after the API answered");
    let r = uac(
        Scenario::File("uac-expect-404.xml"),
        edge.addr,
        "127.0.0.1",
        free_udp_port(),
        number,
        2,
        10,
        &[],
    );
    assert_eq!((r.exit, r.successful, r.failed), (0, 2, 0), "{r:?}");
    // The DID from the file still routes.
    assert_eq!(probe(edge.addr, "+15551230000", 99), Some(100));

    // The calls are in /metrics once the sampler has run (about a second).
    let start = Instant::now();
    let admitted = loop {
        let (_, text) = edge.api("GET", "/metrics", None);
        let value = text
            .lines()
            .find(|l| l.starts_with("sipedge_calls_admitted_total{trunk=\"carrier\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        if value >= 2.0 || start.elapsed() > CHANGE_DEADLINE {
            break value;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(admitted >= 2.0, "admitted calls in /metrics: {admitted}");
}

#[test]
fn a_trunk_source_and_a_target_uri_changed_through_the_api_take_the_next_call() {
    if !have_sipp("a_trunk_source_and_a_target_uri_changed_through_the_api_take_the_next_call") {
        return;
    }
    let (pbx_a, pbx_b) = (free_udp_port(), free_udp_port());
    let edge = Edge::start(&config(pbx_a));
    let uas_a = uas(Scenario::Builtin("uas"), "127.0.0.1", pbx_a);
    let number = "+15551230000";
    let r = uac(Scenario::Builtin("uac"), edge.addr, "127.0.0.1", free_udp_port(), number, 2, 10, &[]);
    assert_eq!((r.exit, r.successful, r.failed), (0, 2, 0), "before the changes: {r:?}");
    assert!(answers("127.0.0.2", edge.addr, number, 0, 2).is_empty(), "127.0.0.2 is in no trunk yet");

    // A second source for the trunk: the next call from it is admitted.
    let trunk = r#"{"sources": ["127.0.0.1/32", "127.0.0.2/32"], "cps": 100, "max_calls": 100}"#;
    assert_eq!(edge.api("PUT", "/v1/trunks/carrier", Some(trunk)).0, 200);
    let admitted = until_answers(
        "a new trunk source",
        CHANGE_DEADLINE,
        |n| answers("127.0.0.2", edge.addr, number, n, 2),
        |a| a.first() == Some(&100),
    );
    println!(
        "live change: a trunk source added through the API was admitted {admitted:?} after the API answered"
    );
    assert!(admitted < CHANGE_LATENCY_BOUND, "{admitted:?}");
    let r = uac(Scenario::Builtin("uac"), edge.addr, "127.0.0.2", free_udp_port(), number, 2, 10, &[]);
    assert_eq!((r.exit, r.successful, r.failed), (0, 2, 0), "calls from the new source: {r:?}");

    // The target moves to another PBX; the old one is gone: the next call must reach the new one.
    let _uas_b = uas(Scenario::Builtin("uas"), "127.0.0.1", pbx_b);
    drop(uas_a);
    let target = format!(r#"{{"uris": ["sip:127.0.0.1:{pbx_b}"]}}"#);
    assert_eq!(edge.api("PUT", "/v1/targets/pbx", Some(&target)).0, 200);
    let moved = until_answers(
        "a new target URI",
        CHANGE_DEADLINE,
        |n| answers("127.0.0.1", edge.addr, number, 1000 + n, 2),
        // The new PBX rings (180); the old one, stopped, says nothing after our 100.
        |a| a.contains(&180),
    );
    println!(
        "live change: a target URI changed through the API took a call {moved:?} after the API answered"
    );
    assert!(moved < CHANGE_LATENCY_BOUND, "{moved:?}");
    let r = uac(Scenario::Builtin("uac"), edge.addr, "127.0.0.1", free_udp_port(), number, 3, 10, &[]);
    assert_eq!((r.exit, r.successful, r.failed), (0, 3, 0), "calls to the moved target: {r:?}");
}

/// API changes applied while calls run: each call in progress keeps its route, none fails.
const CHANGES_UNDER_LOAD: u32 = 120;
/// Calls SIPp places meanwhile, at [`LOAD_RATE`] per second, each held [`CALL_HOLD_MS`].
const CALLS_UNDER_LOAD: u32 = 200;
/// Calls per second.
const LOAD_RATE: u32 = 50;
/// How long each call stays up, in milliseconds (so that changes land mid-call).
const CALL_HOLD_MS: &str = "400";
/// Pause between two changes.
const CHANGE_GAP: Duration = Duration::from_millis(25);
/// The carrier's concurrent-call limit during the run: twice the expected concurrency.
const MAX_CALLS_UNDER_LOAD: u32 = 40;

#[test]
fn calls_in_progress_survive_a_stream_of_trunk_limit_and_target_changes() {
    if !have_sipp("calls_in_progress_survive_a_stream_of_trunk_limit_and_target_changes") {
        return;
    }
    let (pbx_a, pbx_b) = (free_udp_port(), free_udp_port());
    let edge = Edge::start(&config(pbx_a));
    let _uas_a = uas(Scenario::Builtin("uas"), "127.0.0.1", pbx_a);
    let _uas_b = uas(Scenario::Builtin("uas"), "127.0.0.1", pbx_b);
    let target = edge.addr;
    let load = std::thread::spawn(move || {
        uac(
            Scenario::Builtin("uac"),
            target,
            "127.0.0.1",
            free_udp_port(),
            "+15551230000",
            CALLS_UNDER_LOAD,
            LOAD_RATE,
            &["-d", CALL_HOLD_MS],
        )
    });
    let mut applied = 0;
    for i in 0..CHANGES_UNDER_LOAD {
        let (method, path, body) = match i % 4 {
            // The target moves between the two PBXs: calls in progress stay where they are.
            0 => (
                "PUT",
                "/v1/targets/pbx".to_owned(),
                Some(format!(r#"{{"uris": ["sip:127.0.0.1:{pbx_b}"]}}"#)),
            ),
            1 => (
                "PUT",
                "/v1/targets/pbx".to_owned(),
                Some(format!(r#"{{"uris": ["sip:127.0.0.1:{pbx_a}"]}}"#)),
            ),
            // Limits change, always above the load (about 20 calls at once) but not by much:
            // a slot that a call admitted under an earlier generation failed to give back
            // would soon refuse calls.
            2 => (
                "PUT",
                "/v1/limits/carrier".to_owned(),
                Some(format!(r#"{{"cps": {}, "max_calls": {}}}"#, 200 + i, MAX_CALLS_UNDER_LOAD + i % 3)),
            ),
            // Another trunk comes and goes (the carrier's trunk index moves).
            _ if i % 8 == 3 => (
                "PUT",
                "/v1/trunks/a-first".to_owned(),
                Some(r#"{"sources": ["198.18.99.0/24"]}"#.to_owned()),
            ),
            _ => ("DELETE", "/v1/trunks/a-first".to_owned(), None),
        };
        let (status, text) = edge.api(method, &path, body.as_deref());
        assert!(matches!(status, 200 | 201 | 204), "{method} {path}: {status} {text}");
        applied += 1;
        std::thread::sleep(CHANGE_GAP);
    }
    let r = load.join().expect("the SIPp run");
    println!("{applied} API changes while {CALLS_UNDER_LOAD} calls ran: {r:?}");
    assert_eq!((r.exit, r.successful, r.failed), (0, u64::from(CALLS_UNDER_LOAD), 0), "{r:?}");
    // Every call gave its slot back to the carrier's count (the sampler runs once a second).
    let start = Instant::now();
    let active = loop {
        let (_, text) = edge.api("GET", "/metrics", None);
        let active = text
            .lines()
            .find(|l| l.starts_with("sipedge_calls_active{trunk=\"carrier\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok());
        if active == Some(0.0) || start.elapsed() > CHANGE_DEADLINE {
            break active;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(active, Some(0.0), "calls still counted on the carrier");
}
