//! Live changes: a DID added through the API routes calls without a restart, and once
//! deleted gets 404. The time from the API's answer to the first routed INVITE is measured and
//! printed (not asserted: timing belongs in benchmarks).

use std::time::{Duration, Instant};

use tests::probe::{probe, until_status};
use tests::sipp::{Edge, Scenario, free_udp_port, have_sipp, uac, uas};

/// Longest wait for a change to show, before the test fails.
const CHANGE_DEADLINE: Duration = Duration::from_secs(10);

fn config(pbx: u16) -> String {
    format!(
        r#"
[edge]
listen = ["udp:127.0.0.1:0"]
workers = 2
[control]
db = "sipedge.db"
api = "127.0.0.1:0"
[health]
enabled = false
[[trunk]]
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
