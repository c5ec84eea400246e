//! `sipedge run` with its XDP filter attached (native mode, on a veth in network namespaces
//! this test creates) follows the store live: a blocklist entry added through the REST API is
//! in the kernel's map and drops the source's packets in XDP within a second, and they pass
//! again after its removal or its TTL; a trunk added through the API makes its source
//! allow-listed in XDP. The time from the API's answer to the map showing the change is printed.
//!
//! Topology: namespace A (10.88.0.2 carrier, 10.88.0.50 a source that becomes a trunk) ── veth ──
//! namespace B (sipedge on 10.88.0.1:5060, the filter on B's end, its API on B's loopback).

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use ebpf::{Reason, Stats};
use ipnet::IpNet;
use tests::netns::{self, Topology, in_netns};
use tests::sipp::{CONTROL_WITHOUT_PROBES, Edge};

const EDGE: &str = "10.88.0.1";
const CARRIER: &str = "10.88.0.2";
const LATECOMER: &str = "10.88.0.50";
const SIP_PORT: u16 = 5060;
/// Datagrams per probe burst.
const PROBES: u64 = 5;
/// The contract: a change is live within one second.
const VISIBLE_WITHIN: Duration = Duration::from_secs(1);
/// How often the test polls the maps while it waits for a change.
const POLL: Duration = Duration::from_millis(1);
/// Blocklist TTL under test, seconds.
const TTL_S: u64 = 2;

fn config(ifname: &str) -> String {
    format!(
        r#"
[edge]
listen = ["udp:{EDGE}:{SIP_PORT}"]
workers = 1
{CONTROL_WITHOUT_PROBES}[xdp]
interface = "{ifname}"
mode = "native"
unknown_sources = "drop"
[[trunk]]
name = "carrier"
sources = ["{CARRIER}/32"]
"#
    )
}

fn stats(ifname: &str) -> Stats {
    ebpf::open_attached(ifname).expect("pinned maps").stats().expect("stats")
}

fn blocked(ifname: &str) -> Vec<IpNet> {
    ebpf::open_attached(ifname)
        .expect("pinned maps")
        .blocked()
        .expect("blocklist")
        .iter()
        .map(|e| e.net)
        .collect()
}

/// Sends PROBES SIP datagrams to the edge; returns how the XDP counters moved.
fn probe(ifname: &str, from: &UdpSocket) -> Stats {
    let before = stats(ifname);
    let msg = ebpf::craft::sip_options("sipedge-live-sync-test", 300);
    for _ in 0..PROBES {
        from.send_to(&msg, (EDGE, SIP_PORT)).expect("send");
    }
    // XDP counts on receive, before any socket: wait only for the veth to deliver.
    std::thread::sleep(Duration::from_millis(50));
    let after = stats(ifname);
    let mut d = Stats::default();
    for ((out, a), b) in d.counters.iter_mut().zip(&after.counters).zip(&before.counters) {
        out.packets = a.packets - b.packets;
    }
    d
}

/// Polls until `done`; the time it took, or panics past `limit`.
fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(POLL);
    }
    start.elapsed()
}

#[test]
fn api_changes_reach_the_xdp_maps_within_a_second() {
    const TEST: &str = "api_changes_reach_the_xdp_maps_within_a_second";
    if let Some(why) = netns::missing_prerequisite(&["ip", "nsenter"]) {
        let _ = tests::skip(TEST, &why);
        return;
    }
    let topo = Topology::create("l", &[CARRIER, LATECOMER], &[EDGE]);
    let netns = format!("--net=/var/run/netns/{}", topo.b);
    let edge = Edge::start_with(&config(&topo.if_b), &["nsenter", &netns]);
    let api =
        |method: &str, path: &str, body: Option<&str>| in_netns(&topo.b, || edge.api(method, path, body));
    assert_eq!(
        ebpf::open_attached(&topo.if_b).expect("maps").config().expect("config").attach_mode,
        ebpf::shared::ATTACH_NATIVE
    );

    let carrier = in_netns(&topo.a, || UdpSocket::bind((CARRIER, 0)).expect("bind"));
    let latecomer = in_netns(&topo.a, || UdpSocket::bind((LATECOMER, 0)).expect("bind"));
    probe(&topo.if_b, &carrier); // ARP resolved, path open
    assert_eq!(probe(&topo.if_b, &carrier).get(Reason::PassAllow).packets, PROBES, "the trunk passes");
    assert_eq!(probe(&topo.if_b, &latecomer).get(Reason::DropUnknown).packets, PROBES, "unknown: dropped");

    // A block through the API: in the map, then the carrier's packets dropped in XDP.
    let net: IpNet = format!("{CARRIER}/32").parse().expect("cidr");
    let body = format!(r#"{{"cidr": "{net}", "reason": "test", "ttl": {TTL_S}}}"#);
    let (status, resp) = api("POST", "/v1/blocklist", Some(&body));
    assert_eq!(status, 201, "{resp}");
    let blocked_at = Instant::now();
    let took = wait_for("block in the XDP map", VISIBLE_WITHIN, || blocked(&topo.if_b).contains(&net));
    eprintln!("XDP: blocklist add visible in the map {took:?} after the API answered");
    assert_eq!(probe(&topo.if_b, &carrier).get(Reason::DropBlock).packets, PROBES, "blocked in XDP");
    // The kernel's counters reach the Prometheus metrics (sampled once a second).
    let metric = r#"sipedge_packets_total{layer="xdp",verdict="blocklist"}"#;
    wait_for("XDP drops in /metrics", VISIBLE_WITHIN * 3, || {
        let (_, text) = api("GET", "/metrics", None);
        text.lines().any(|l| {
            l.strip_prefix(metric).is_some_and(|v| v.trim().parse::<f64>().is_ok_and(|v| v >= PROBES as f64))
        })
    });
    // Its TTL ends it: the program lets the carrier through, the sweep empties the map.
    let ttl = Duration::from_secs(TTL_S);
    std::thread::sleep(ttl.saturating_sub(blocked_at.elapsed()));
    let took = wait_for("block past its TTL", VISIBLE_WITHIN, || {
        probe(&topo.if_b, &carrier).get(Reason::PassAllow).packets == PROBES
    });
    eprintln!("XDP: {TTL_S} s block over after {:?} ({took:?} past the TTL)", blocked_at.elapsed());
    let took = wait_for("expired entry swept", VISIBLE_WITHIN * 2, || blocked(&topo.if_b).is_empty());
    eprintln!("XDP: expired entry swept from the map {took:?} later");

    // A block without TTL, then its removal through the API.
    let body = format!(r#"{{"cidr": "{net}", "reason": "test"}}"#);
    assert_eq!(api("POST", "/v1/blocklist", Some(&body)).0, 201);
    wait_for("block in the XDP map", VISIBLE_WITHIN, || blocked(&topo.if_b).contains(&net));
    assert_eq!(probe(&topo.if_b, &carrier).get(Reason::DropBlock).packets, PROBES);
    let (status, resp) = api("DELETE", &format!("/v1/blocklist/{CARRIER}%2F32"), None);
    assert_eq!(status, 204, "{resp}");
    let took = wait_for("unblock in the XDP map", VISIBLE_WITHIN, || blocked(&topo.if_b).is_empty());
    eprintln!("XDP: blocklist removal visible in the map {took:?} after the API answered");
    assert_eq!(probe(&topo.if_b, &carrier).get(Reason::PassAllow).packets, PROBES, "passes again");

    // A trunk added through the API: its source becomes allow-listed in XDP.
    let body = format!(r#"{{"name": "late", "sources": ["{LATECOMER}/32"]}}"#);
    let (status, resp) = api("POST", "/v1/trunks", Some(&body));
    assert_eq!(status, 201, "{resp}");
    let took = wait_for("trunk source allow-listed", VISIBLE_WITHIN, || {
        probe(&topo.if_b, &latecomer).get(Reason::PassAllow).packets == PROBES
    });
    eprintln!(
        "XDP: trunk source {LATECOMER} allow-listed within {took:?} (probe-granular) after the API answered"
    );
}
