//! The packet filter's policy in user space, end to end: `sipedge run` without XDP judges
//! every datagram before parsing. A blocklisted trunk member gets no answer at all while an
//! allow-listed one makes its calls; blocklist changes through the REST API reach the running
//! filter (the time from the API's answer to the first datagram judged by the new list is
//! printed), and a TTL ends a block.
//!
//! Loopback only: 127.0.0.1 the carrier (trunk), 127.0.0.2 a trunk member blocklisted in the
//! configuration, 127.0.0.1:PBX the SIPp UAS.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use tests::sipp::{
    CONTROL_WITHOUT_PROBES, Edge, LOOPBACK_EDGE, Scenario, free_udp_port, have_sipp, uac, uas,
};

const DID: &str = "+15551230000";
const CARRIER: &str = "127.0.0.1";
const MEMBER: &str = "127.0.0.2";
/// How long a probe waits for an answer, ms.
const PROBE_WAIT_MS: u64 = 200;
/// Longest a change may take to reach the filter (the contract: within one second).
const VISIBLE_WITHIN: Duration = Duration::from_secs(1);
/// Blocklist TTL under test, seconds.
const TTL_S: u64 = 2;
/// Calls the carrier makes, and their rate per second.
const CALLS: u32 = 20;

fn config(pbx: u16) -> String {
    format!(
        r#"
{LOOPBACK_EDGE}{CONTROL_WITHOUT_PROBES}[[trunk]]
name = "carrier"
sources = ["{CARRIER}/32", "{MEMBER}/32"]
[[target]]
name = "pbx"
uris = ["sip:127.0.0.1:{pbx}"]
[[did]]
number = "{DID}"
target = "pbx"
[[blocklist]]
cidr = "{MEMBER}/32"
reason = "test: blocked member of the trunk"
"#
    )
}

/// Sends an OPTIONS to the edge from `ip`; true when anything comes back.
fn answered(edge: SocketAddr, ip: &str) -> bool {
    let sock = UdpSocket::bind((ip, 0)).expect("bind probe socket");
    let me = sock.local_addr().expect("local");
    let msg = format!(
        "OPTIONS sip:{edge} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{n}\r\nMax-Forwards: 70\r\n\
         From: <sip:probe@{ip}>;tag=p{n}\r\nTo: <sip:{edge}>\r\nCall-ID: {n}@{ip}\r\nCSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n",
        n = me.port()
    );
    sock.send_to(msg.as_bytes(), edge).expect("send probe");
    sock.set_read_timeout(Some(Duration::from_millis(PROBE_WAIT_MS))).expect("timeout");
    let mut buf = [0u8; 4096];
    sock.recv(&mut buf).is_ok()
}

/// Probes until `ip` is answered (or not, per `want`): the time from the call to the send of
/// the first probe that saw the new state, or None past `limit`.
fn until(edge: SocketAddr, ip: &str, want: bool, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        let sent = start.elapsed();
        if answered(edge, ip) == want {
            return Some(sent);
        }
    }
    None
}

/// Polls `/metrics` until `name` has a value of at least 1; that value, or None past `limit`.
fn wait_metric(edge: &Edge, name: &str, limit: Duration) -> Option<u64> {
    let start = Instant::now();
    while start.elapsed() < limit {
        let (_, text) = edge.api("GET", "/metrics", None);
        let value = text
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|v| v as u64);
        if let Some(v) = value.filter(|v| *v >= 1) {
            return Some(v);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

#[test]
fn blocklisted_sources_get_nothing_and_changes_apply_live_without_xdp() {
    const TEST: &str = "blocklisted_sources_get_nothing_and_changes_apply_live_without_xdp";
    if !have_sipp(TEST) {
        return;
    }
    let pbx = free_udp_port();
    let edge = Edge::start(&config(pbx));
    let _uas = uas(Scenario::Builtin("uas"), "127.0.0.1", pbx);

    assert!(answered(edge.addr, CARRIER), "the carrier's OPTIONS is answered");
    assert!(!answered(edge.addr, MEMBER), "the blocklisted member gets no answer");
    let r = uac(Scenario::Builtin("uac"), edge.addr, CARRIER, free_udp_port(), DID, CALLS, CALLS, &[]);
    assert_eq!((r.exit, r.successful, r.failed), (0, u64::from(CALLS), 0), "{r:?}");

    // The drops are in the Prometheus metrics (sampled once a second).
    let metric = r#"sipedge_packets_total{layer="user",verdict="blocklist"}"#;
    let exported = wait_metric(&edge, metric, Duration::from_secs(3)).expect("user-space drops exported");
    assert!(exported >= 1, "{metric} {exported}");

    // Unblock through the API: the member is answered again.
    let start = Instant::now();
    let (status, body) = edge.api("DELETE", &format!("/v1/blocklist/{MEMBER}%2F32"), None);
    assert_eq!(status, 204, "{body}");
    let api_took = start.elapsed();
    let seen = until(edge.addr, MEMBER, true, VISIBLE_WITHIN * 3).expect("unblock applied");
    eprintln!("user-space filter: unblock visible {seen:?} after the API answered (API call {api_took:?})");
    assert!(seen <= VISIBLE_WITHIN, "unblock took {seen:?}");

    // Block the carrier with a TTL: silent at once, answered again once the TTL is over.
    let body = format!(r#"{{"cidr": "{CARRIER}/32", "reason": "test", "ttl": {TTL_S}}}"#);
    let (status, resp) = edge.api("POST", "/v1/blocklist", Some(&body));
    assert_eq!(status, 201, "{resp}");
    let blocked_at = Instant::now();
    let seen = until(edge.addr, CARRIER, false, VISIBLE_WITHIN * 3).expect("block applied");
    eprintln!("user-space filter: block visible {seen:?} after the API answered");
    assert!(seen <= VISIBLE_WITHIN, "block took {seen:?}");
    let back = until(edge.addr, CARRIER, true, Duration::from_secs(TTL_S + 3)).expect("TTL ends the block");
    let ended = blocked_at.elapsed();
    eprintln!("user-space filter: {TTL_S} s block ended after {ended:?} (last probe {back:?})");
    assert!(ended >= Duration::from_secs(TTL_S - 1), "not before its TTL: {ended:?}");
}
