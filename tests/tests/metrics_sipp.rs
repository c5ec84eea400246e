//! `GET /metrics` end to end: the `sipedge` binary between real SIPp user agents on loopback,
//! then the exposition scraped with the admin token. The hot-path counters (requests by
//! method, responses by code class, DID lookups, forwarding latency) must reflect the calls.

use std::time::{Duration, Instant};

use tests::sipp::{
    CONTROL_WITHOUT_PROBES, Edge, LOOPBACK_EDGE, Scenario, UacResult, free_udp_port, have_sipp, uac, uas,
};

const DID: &str = "+15551230000";
const UNKNOWN_DID: &str = "+15559999999";
/// Calls to the routed DID.
const CALLS: u64 = 5;
/// Calls to the unknown DID (each answered 404).
const MISSES: u64 = 3;
/// How long the test waits for the sampler (once a second) to publish what the calls did.
const SCRAPE_DEADLINE: Duration = Duration::from_secs(10);
/// Pause between two scrapes.
const SCRAPE_PAUSE: Duration = Duration::from_millis(200);

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
number = "{DID}"
target = "pbx"
"#
    )
}

/// The value of the sample `series` (name and labels exactly as exposed), if present.
fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.split(' ').next()?.parse().ok())
}

fn all_ok(r: UacResult, calls: u64) {
    assert_eq!((r.exit, r.successful, r.failed), (0, calls, 0), "{r:?}");
}

/// Every `(series, at least)` holds in one scrape, within [`SCRAPE_DEADLINE`]; returns it.
fn scrape_until(edge: &Edge, wants: &[(&str, f64)]) -> String {
    let deadline = Instant::now() + SCRAPE_DEADLINE;
    loop {
        let (status, text) = edge.api("GET", "/metrics", None);
        assert_eq!(status, 200, "{text}");
        let short: Vec<_> = wants
            .iter()
            .filter(|(series, min)| sample(&text, series).is_none_or(|v| v < *min))
            .map(|(series, min)| format!("{series} >= {min}: {:?}", sample(&text, series)))
            .collect();
        if short.is_empty() {
            return text;
        }
        assert!(Instant::now() < deadline, "after {SCRAPE_DEADLINE:?}, not met: {short:#?}\n{text}");
        std::thread::sleep(SCRAPE_PAUSE);
    }
}

#[test]
fn metrics_reflect_sipp_calls() {
    if !have_sipp("metrics_reflect_sipp_calls") {
        return;
    }
    let pbx = free_udp_port();
    let edge = Edge::start(&config(pbx));
    let _uas = uas(Scenario::Builtin("uas"), "127.0.0.1", pbx);
    let port = free_udp_port();
    all_ok(uac(Scenario::Builtin("uac"), edge.addr, "127.0.0.1", port, DID, CALLS as u32, 10, &[]), CALLS);
    let r = uac(Scenario::File("uac-expect-404.xml"), edge.addr, "127.0.0.1", port, UNKNOWN_DID, 3, 10, &[]);
    all_ok(r, MISSES);

    let (calls, misses) = (CALLS as f64, MISSES as f64);
    let text = scrape_until(
        &edge,
        &[
            ("sipedge_sip_requests_total{method=\"INVITE\"}", calls + misses),
            ("sipedge_sip_requests_total{method=\"ACK\"}", calls + misses),
            ("sipedge_sip_requests_total{method=\"BYE\"}", calls),
            // 100 Trying (ours) and 180 Ringing (the UAS's) for each routed call.
            ("sipedge_sip_responses_total{method=\"INVITE\",code=\"1xx\"}", 2.0 * calls),
            ("sipedge_sip_responses_total{method=\"INVITE\",code=\"2xx\"}", calls),
            ("sipedge_sip_responses_total{method=\"INVITE\",code=\"4xx\"}", misses),
            ("sipedge_sip_responses_total{method=\"BYE\",code=\"2xx\"}", calls),
            ("sipedge_did_lookups_total{result=\"hit\"}", calls),
            ("sipedge_did_lookups_total{result=\"miss\"}", misses),
            // Per call: INVITE, ACK and BYE forwarded; 180, 200 and the BYE's 200 forwarded back.
            ("sipedge_forward_latency_seconds_count", 6.0 * calls),
            ("sipedge_calls_offered_total{trunk=\"carrier\"}", calls + misses),
            ("sipedge_calls_refused_total{trunk=\"carrier\",reason=\"unknown-did\"}", misses),
            ("sipedge_packets_total{layer=\"user\",verdict=\"pass\"}", 1.0),
            ("sipedge_target_up{target=\"pbx\"}", 1.0),
        ],
    );
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.contains("_bucket")) {
        println!("{line}");
    }
    // The histogram is whole: every observation is in the +Inf bucket, the sum is positive.
    let count = sample(&text, "sipedge_forward_latency_seconds_count");
    assert_eq!(sample(&text, "sipedge_forward_latency_seconds_bucket{le=\"+Inf\"}"), count, "{text}");
    assert!(sample(&text, "sipedge_forward_latency_seconds_sum").is_some_and(|s| s > 0.0), "{text}");
    // No DID was matched by range or prefix: those series have not appeared.
    assert_eq!(sample(&text, "sipedge_did_lookups_total{result=\"prefix\"}"), None, "{text}");
    // Without the token the metrics are not served.
    let url = format!("http://{}/metrics", edge.api.expect("API address"));
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let status = agent.get(&url).call().expect("API reachable").status().as_u16();
    assert_eq!(status, 401);
}
