//! The verdict table: crafted frames through the kernel's `BPF_PROG_TEST_RUN` and through the
//! user-space model, which must agree with each other and with the expected reason, packet for
//! packet; each kernel run must move exactly one counter (the expected one) by one, and every
//! drop must come out of the ring buffer as an event (sampling 1 in 1 here).
//!
//! `SIPEDGE_XDP_OBJECT=path` runs the table against a freshly compiled object instead of the
//! embedded one (`scripts/build-xdp.sh --check`).

use std::net::IpAddr;

use ebpf::craft::{ETH_P_8021AD, ETH_P_8021Q, Fragment, FrameSpec, NH_DSTOPTS, NH_HOPOPTS, sip_options};
use ebpf::policy::{Bucket, Fragments, Unknown};
use ebpf::shared::{REASON_COUNT, XDP_DROP, XDP_PASS};
use ebpf::userspace::UserspaceFilter;
use ebpf::{Policy, Reason, XdpFilter, monotonic_ns};

const SIP: u16 = 5060;
const SIP_TLS: u16 = 5061;
const SPORT: u16 = 40_000;
/// Shortest data `BPF_PROG_TEST_RUN` accepts for XDP: an Ethernet header (bytes).
const MIN_TEST_RUN_FRAME: usize = 14;
/// Our own address (destination of every crafted frame).
const ME4: &str = "192.0.2.1";
const ME6: &str = "2001:db8::1";

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn udp(src: &str, dport: u16, payload: &[u8]) -> FrameSpec {
    let dst = if src.contains(':') { ME6 } else { ME4 };
    FrameSpec::udp(ip(src), ip(dst), SPORT, dport, payload)
}

fn tcp(src: &str, dport: u16) -> FrameSpec {
    let dst = if src.contains(':') { ME6 } else { ME4 };
    FrameSpec::tcp(ip(src), ip(dst), SPORT, dport, b"OPTIONS sip:x SIP/2.0\r\n")
}

fn sip_payload() -> Vec<u8> {
    sip_options("carrier-sbc/1.0", 300)
}

/// Trunk sources, blocklist, and the unknown-source policy of one table.
fn trunks() -> Vec<(ipnet::IpNet, u32)> {
    vec![
        ("203.0.113.0/24".parse().expect("cidr"), 0),
        ("2001:db8:a::/48".parse().expect("cidr"), 1),
        ("192.0.2.200/32".parse().expect("cidr"), 2),
        ("10.20.0.0/16".parse().expect("cidr"), 3),
        // Shorter than /16: marks 16 /16s in src_v4_hint.
        ("172.16.0.0/12".parse().expect("cidr"), 4),
    ]
}

/// (prefix, expires_ns): 0 never; 1 long past.
fn blocklist() -> Vec<(ipnet::IpNet, u64)> {
    vec![
        ("198.51.100.7/32".parse().expect("cidr"), 0),
        ("198.51.100.0/24".parse().expect("cidr"), 1),
        ("203.0.113.66/32".parse().expect("cidr"), 0),
        ("2001:db8:bad::/48".parse().expect("cidr"), 0),
        // A block around a trunk host, and an expired block around a live one.
        ("192.0.2.192/26".parse().expect("cidr"), 0),
        ("10.20.0.0/24".parse().expect("cidr"), 1),
        ("10.20.0.9/32".parse().expect("cidr"), 0),
    ]
}

struct Case {
    name: &'static str,
    frame: Vec<u8>,
    expect: Reason,
}

fn case(name: &'static str, frame: Vec<u8>, expect: Reason) -> Case {
    Case { name, frame, expect }
}

fn object() -> Vec<u8> {
    match std::env::var_os("SIPEDGE_XDP_OBJECT") {
        Some(path) => std::fs::read(&path)
            .unwrap_or_else(|e| panic!("SIPEDGE_XDP_OBJECT={}: {e}", path.to_string_lossy())),
        None => ebpf::SIPEDGE_XDP_OBJECT.to_vec(),
    }
}

/// Loads a fresh program with `policy`, or None after a loud skip when BPF is unavailable.
fn kernel(test: &str, policy: &Policy) -> Option<XdpFilter> {
    if !tests::is_root() {
        let _ = tests::skip(test, "BPF_PROG_TEST_RUN needs root (CAP_BPF + CAP_NET_ADMIN)");
        return None;
    }
    let mut f = XdpFilter::load(&object(), None).expect("load and verify the XDP object");
    let maps = f.maps().expect("maps");
    maps.apply_policy(policy).expect("policy");
    maps.sync_allow_list(&trunks()).expect("allow-list");
    for (net, exp) in blocklist() {
        maps.block(net, exp).expect("block");
    }
    Some(f)
}

fn model(policy: &Policy) -> UserspaceFilter {
    let m = UserspaceFilter::new(policy.clone()).expect("policy");
    m.set_allow_list(&trunks()).expect("allow-list");
    for (net, exp) in blocklist() {
        m.block(net, exp).expect("block");
    }
    m
}

/// Runs the table through both and checks verdicts, counters and drop events.
fn run_table(test: &str, policy: &Policy, cases: &[Case]) {
    let model = model(policy);
    let Some(mut k) = kernel(test, policy) else {
        // Without BPF, still hold the model to the table.
        for c in cases {
            assert_eq!(model.judge_frame(&c.frame, monotonic_ns()), c.expect, "model: {}", c.name);
        }
        return;
    };
    let mut events = k.take_drop_events().expect("ring buffer");
    let mut drops = Vec::new();
    for c in cases {
        if c.frame.len() < MIN_TEST_RUN_FRAME {
            // BPF_PROG_TEST_RUN refuses shorter data (EINVAL), and no NIC delivers it.
            assert_eq!(model.judge_frame(&c.frame, monotonic_ns()), c.expect, "model: {}", c.name);
            continue;
        }
        let before = k.maps().expect("maps").stats().expect("stats");
        let out = k.test_run(&c.frame, 1).unwrap_or_else(|e| panic!("test_run {}: {e:?}", c.name));
        let after = k.maps().expect("maps").stats().expect("stats");
        let want_action = if c.expect.is_drop() { XDP_DROP } else { XDP_PASS };
        let moved = k.maps().expect("maps").stats().expect("stats").packets_since(&before);
        assert_eq!(out.action, want_action, "kernel action: {} (counters moved: {moved:?})", c.name);
        let mut want = [0u64; REASON_COUNT];
        want[c.expect as usize] = 1;
        assert_eq!(after.packets_since(&before), want, "kernel counters: {}", c.name);
        let byte_delta = after.get(c.expect).bytes - before.get(c.expect).bytes;
        assert_eq!(byte_delta, c.frame.len() as u64, "kernel byte counter: {}", c.name);
        assert_eq!(model.judge_frame(&c.frame, monotonic_ns()), c.expect, "model: {}", c.name);
        if c.expect.is_drop() {
            drops.push(c.expect as u32);
        }
    }
    let mut seen = Vec::new();
    while let Some(e) = events.next_event() {
        seen.push(e.reason);
    }
    assert_eq!(seen, drops, "one drop event per drop, in order (sample_every = 1)");
}

fn table_policy() -> Policy {
    Policy { sample_every: 1, ..Policy::default() }
}

#[test]
fn drop_policy_table() {
    let sip = sip_payload();
    let full = udp("192.0.2.50", SIP, &sip).build();
    let mut cases = vec![
        case("allow-listed v4 UDP", udp("203.0.113.10", SIP, &sip).build(), Reason::PassAllow),
        case("allow-listed v4 TCP 5061", tcp("203.0.113.10", SIP_TLS).build(), Reason::PassAllow),
        case("allow-listed v6 UDP", udp("2001:db8:a::5", SIP, &sip).build(), Reason::PassAllow),
        case("allow-listed v6 TCP", tcp("2001:db8:a:1::5", SIP).build(), Reason::PassAllow),
        case("unknown v4 UDP", full.clone(), Reason::DropUnknown),
        case("unknown v4 TCP", tcp("192.0.2.50", SIP).build(), Reason::DropUnknown),
        case("unknown v6 UDP", udp("2001:db8:ffff::1", SIP, &sip).build(), Reason::DropUnknown),
        case("UDP to TCP-only 5061", udp("192.0.2.50", SIP_TLS, &sip).build(), Reason::PassNonSip),
        case("UDP to DNS", udp("192.0.2.50", 53, b"dns").build(), Reason::PassNonSip),
        case("TCP to HTTPS", tcp("192.0.2.50", 443).build(), Reason::PassNonSip),
        case("ARP", arp(), Reason::PassNonSip),
        case(
            "ICMP",
            {
                let mut s = udp("192.0.2.50", 0, b"ping");
                s.proto = 1;
                s.build()
            },
            Reason::PassNonSip,
        ),
        case("blocked v4", udp("198.51.100.7", SIP, &sip).build(), Reason::DropBlock),
        case("blocked inside a trunk", udp("203.0.113.66", SIP, &sip).build(), Reason::DropBlock),
        case("expired block", udp("198.51.100.9", SIP, &sip).build(), Reason::DropUnknown),
        case("blocked v6", udp("2001:db8:bad::9", SIP, &sip).build(), Reason::DropBlock),
        case("trunk host inside a blocked /26", udp("192.0.2.200", SIP, &sip).build(), Reason::DropBlock),
        case("unknown inside a blocked /26", udp("192.0.2.250", SIP, &sip).build(), Reason::DropBlock),
        case("trunk /16, expired /24 block", udp("10.20.0.8", SIP, &sip).build(), Reason::PassAllow),
        case("live /32 inside an expired /24", udp("10.20.0.9", SIP, &sip).build(), Reason::DropBlock),
        case("trunk /16 outside the blocks", udp("10.20.5.1", SIP, &sip).build(), Reason::PassAllow),
        case("trunk /12, its last /16", udp("172.31.255.1", SIP, &sip).build(), Reason::PassAllow),
        case("just past the trunk /12", udp("172.32.0.1", SIP, &sip).build(), Reason::DropUnknown),
        case("unknown, no listed /16", udp("100.64.0.1", SIP, &sip).build(), Reason::DropUnknown),
        case("unknown in a listed /16", udp("203.0.112.5", SIP, &sip).build(), Reason::DropUnknown),
        case("blocked v4 TCP", tcp("198.51.100.7", SIP).build(), Reason::DropBlock),
        case("802.1Q allow-listed", vlan(udp("203.0.113.10", SIP, &sip), &[ETH_P_8021Q]), Reason::PassAllow),
        case(
            "QinQ unknown",
            vlan(udp("192.0.2.50", SIP, &sip), &[ETH_P_8021AD, ETH_P_8021Q]),
            Reason::DropUnknown,
        ),
        case(
            "three tags",
            vlan(udp("192.0.2.50", SIP, &sip), &[ETH_P_8021AD, ETH_P_8021Q, ETH_P_8021Q]),
            Reason::PassMalformed,
        ),
        case(
            "IPv4 options unknown",
            {
                let mut s = udp("192.0.2.50", SIP, &sip);
                s.ipv4_option_words = 10;
                s.build()
            },
            Reason::DropUnknown,
        ),
        case(
            "IPv4 options allow-listed",
            {
                let mut s = udp("203.0.113.10", SIP, &sip);
                s.ipv4_option_words = 3;
                s.build()
            },
            Reason::PassAllow,
        ),
        case(
            "IPv6 ext headers unknown",
            ext(udp("2001:db8:ffff::1", SIP, &sip), &[NH_HOPOPTS, NH_DSTOPTS]),
            Reason::DropUnknown,
        ),
        case(
            "IPv6 ext headers allow-listed",
            ext(udp("2001:db8:a::5", SIP, &sip), &[NH_HOPOPTS]),
            Reason::PassAllow,
        ),
        case(
            "IPv6 too many ext headers",
            ext(udp("2001:db8:a::5", SIP, &sip), &[NH_DSTOPTS; 7]),
            Reason::PassMalformed,
        ),
        case(
            "IPv6 6 ext headers",
            ext(udp("2001:db8:ffff::1", SIP, &sip), &[NH_DSTOPTS; 6]),
            Reason::DropUnknown,
        ),
        case(
            "scanner unknown (policy drop)",
            udp("192.0.2.51", SIP, &sip_options("friendly-scanner", 300)).build(),
            Reason::DropUnknown,
        ),
        case(
            "scanner allow-listed",
            udp("203.0.113.10", SIP, &sip_options("friendly-scanner", 300)).build(),
            Reason::PassAllow,
        ),
        // Fragments: the later ones follow the first (policy follow).
        case(
            "v4 first fragment unknown",
            frag(udp("192.0.2.60", SIP, &sip), Fragment::First(7)),
            Reason::DropUnknown,
        ),
        case(
            "v4 later fragment of dropped",
            frag(udp("192.0.2.60", SIP, &sip), Fragment::Later(7, 100)),
            Reason::DropFrag,
        ),
        case(
            "v4 first fragment allowed",
            frag(udp("203.0.113.10", SIP, &sip), Fragment::First(8)),
            Reason::PassAllow,
        ),
        case(
            "v4 later fragment of passed",
            frag(udp("203.0.113.10", SIP, &sip), Fragment::Later(8, 100)),
            Reason::PassFrag,
        ),
        case(
            "v4 later fragment, first unseen",
            frag(udp("192.0.2.60", SIP, &sip), Fragment::Later(999, 100)),
            Reason::PassNonSip,
        ),
        case(
            "v4 first fragment non-SIP",
            frag(udp("192.0.2.60", 53, &sip), Fragment::First(9)),
            Reason::PassNonSip,
        ),
        case(
            "v4 later fragment non-SIP",
            frag(udp("192.0.2.60", 53, &sip), Fragment::Later(9, 100)),
            Reason::PassNonSip,
        ),
        case(
            "v6 first fragment allowed",
            frag(udp("2001:db8:a::5", SIP, &sip), Fragment::First(70_000)),
            Reason::PassAllow,
        ),
        case(
            "v6 later fragment of passed",
            frag(udp("2001:db8:a::5", SIP, &sip), Fragment::Later(70_000, 50)),
            Reason::PassFrag,
        ),
        case(
            "v6 first fragment unknown",
            frag(udp("2001:db8:ffff::1", SIP, &sip), Fragment::First(70_001)),
            Reason::DropUnknown,
        ),
        case(
            "v6 later fragment of dropped",
            frag(udp("2001:db8:ffff::1", SIP, &sip), Fragment::Later(70_001, 50)),
            Reason::DropFrag,
        ),
    ];
    // Truncation at every layer: every prefix of a full SIP frame, with and without VLAN and
    // for IPv6 with extension headers. Cut before the end of the UDP header: malformed; after:
    // a full verdict.
    let v6 = ext(udp("2001:db8:ffff::1", SIP, &sip), &[NH_HOPOPTS]);
    let tagged = vlan(udp("192.0.2.50", SIP, &sip), &[ETH_P_8021Q]);
    let tcp4 = tcp("192.0.2.50", SIP).build();
    for (frame, hdr_end) in [(&full, 42), (&v6, 14 + 40 + 8 + 8), (&tagged, 46), (&tcp4, 54)] {
        for cut in 0..=hdr_end + 1 {
            let expect = if cut < hdr_end { Reason::PassMalformed } else { Reason::DropUnknown };
            cases.push(case("truncated", frame[..cut].to_vec(), expect));
        }
    }
    // IHL below 5, and IHL beyond the frame.
    let mut bad_ihl = full.clone();
    bad_ihl[14] = 0x44;
    cases.push(case("IPv4 IHL 4", bad_ihl, Reason::PassMalformed));
    let mut long_ihl = full[..14 + 24].to_vec();
    long_ihl[14] = 0x4f;
    cases.push(case("IPv4 IHL past the end", long_ihl, Reason::PassMalformed));
    // Don't-fragment set: still the common frame (parse_fast), not a fragment.
    let mut df_allowed = udp("203.0.113.10", SIP, &sip).build();
    df_allowed[20] = 0x40;
    cases.push(case("IPv4 DF allow-listed", df_allowed, Reason::PassAllow));
    let mut df_dns = udp("192.0.2.50", 53, b"dns").build();
    df_dns[20] = 0x40;
    cases.push(case("IPv4 DF to DNS", df_dns, Reason::PassNonSip));
    let mut bad_version = full.clone();
    bad_version[14] = 0x65;
    cases.push(case("IPv4 ethertype, version 6", bad_version, Reason::PassMalformed));
    run_table("drop_policy_table", &table_policy(), &cases);
}

#[test]
fn rate_limit_policy_table() {
    let policy = Policy {
        unknown: Unknown::RateLimit,
        per_source: Bucket { rate_pps: 1, burst: 2 },
        global: Bucket { rate_pps: 1, burst: 6 },
        fragments: Fragments::Drop,
        ..table_policy()
    };
    let sip = sip_payload();
    let cases = vec![
        // Scanners are dropped whatever their bucket says (each still spends a global token).
        case(
            "friendly-scanner UA",
            udp("192.0.2.70", SIP, &sip_options("friendly-scanner", 300)).build(),
            Reason::DropScanner,
        ),
        case(
            "SIPVicious From",
            udp("192.0.2.71", SIP, b"OPTIONS sip:1@x SIP/2.0\r\nFrom: \"sipvicious\"<sip:1@x>;tag=1\r\n\r\n")
                .build(),
            Reason::DropScanner,
        ),
        case(
            "VaxSIPUserAgent v6",
            udp("2001:db8:ffff:9::1", SIP, &sip_options("VaxSIPUserAgent/3.1", 300)).build(),
            Reason::DropScanner,
        ),
        case(
            "scanner over TCP is not scanned",
            {
                let mut s = tcp("192.0.2.72", SIP);
                s.payload = sip_options("sipcli/v1.8", 300);
                s.build()
            },
            Reason::PassRate,
        ),
        // Source A: burst 2, then cut by its own bucket.
        case("A 1", udp("192.0.2.80", SIP, &sip).build(), Reason::PassRate),
        case("A 2", udp("192.0.2.80", SIP, &sip).build(), Reason::PassRate),
        case("A 3 over its bucket", udp("192.0.2.80", SIP, &sip).build(), Reason::DropRateSource),
        // The global budget (6) is now spent.
        case("B 1 over the global budget", udp("192.0.2.81", SIP, &sip).build(), Reason::DropRateGlobal),
        // IPv6 sources share a bucket per /64: the third from the same /64 hits the source cap.
        case("v6 /64 #1", udp("2001:db8:ffff:1::1", SIP, &sip).build(), Reason::DropRateGlobal),
        case("v6 /64 #2", udp("2001:db8:ffff:1::2", SIP, &sip).build(), Reason::DropRateGlobal),
        case("v6 /64 #3", udp("2001:db8:ffff:1::3", SIP, &sip).build(), Reason::DropRateSource),
        case("v6 other /64", udp("2001:db8:ffff:2::1", SIP, &sip).build(), Reason::DropRateGlobal),
        // Trunks and the blocklist are untouched by the buckets.
        case("allow-listed", udp("203.0.113.10", SIP, &sip).build(), Reason::PassAllow),
        case("blocked", udp("198.51.100.7", SIP, &sip).build(), Reason::DropBlock),
        // Fragment policy drop: later fragments of SIP datagrams go even from trunks.
        case(
            "first fragment allowed",
            frag(udp("203.0.113.10", SIP, &sip), Fragment::First(5)),
            Reason::PassAllow,
        ),
        case(
            "later fragment, policy drop",
            frag(udp("203.0.113.10", SIP, &sip), Fragment::Later(5, 64)),
            Reason::DropFrag,
        ),
    ];
    run_table("rate_limit_policy_table", &policy, &cases);
}

fn arp() -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x06]);
    f.extend_from_slice(&[0u8; 28]);
    f
}

fn vlan(mut s: FrameSpec, tpids: &[u16]) -> Vec<u8> {
    s.vlans = tpids.iter().map(|t| (*t, 42)).collect();
    s.build()
}

fn ext(mut s: FrameSpec, headers: &[u8]) -> Vec<u8> {
    s.ipv6_ext = headers.to_vec();
    s.build()
}

fn frag(mut s: FrameSpec, f: Fragment) -> Vec<u8> {
    s.fragment = f;
    s.build()
}

/// Generated payloads (line lengths, CR/LF/blank lines, case, signatures at every place, cut
/// short) through the kernel's payload scan and the model's: the verdicts must agree one by one.
#[test]
fn scanner_scan_agrees_on_generated_payloads() {
    const TEST: &str = "scanner_scan_agrees_on_generated_payloads";
    /// Generated payloads; enough to put signatures at every word alignment and in the tail.
    const PAYLOADS: usize = 1_500;
    let policy = Policy {
        unknown: Unknown::RateLimit,
        per_source: Bucket { rate_pps: ebpf::policy::MAX_RATE_PPS, burst: ebpf::policy::MAX_BURST },
        global: Bucket { rate_pps: ebpf::policy::MAX_RATE_PPS, burst: ebpf::policy::MAX_BURST },
        sample_every: 0,
        ..Policy::default()
    };
    let model = model(&policy);
    let Some(mut k) = kernel(TEST, &policy) else { return };
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng >> 17;
        rng % n
    };
    let names = [
        "User-Agent:",
        "user-agent:",
        "USER-AGENT:",
        "From:",
        "from:",
        "Via:",
        "Subject:",
        "f:",
        "User-Agen:",
    ];
    let values = [
        "friendly-scanner",
        "\"sipvicious\" <sip:1@x>",
        "  sipcli/1.8",
        "\tPPLSIP",
        "sipvicious",
        "carrier/2.0",
        "friendly",
        "VaxSIPUserAgen",
        "Friendly-Scanner/1.0",
        "\"SIPVicious\"",
    ];
    let (mut scanners, mut clean) = (0, 0);
    for n in 0..PAYLOADS {
        let mut payload = b"OPTIONS sip:100@192.0.2.1 SIP/2.0".to_vec();
        for _ in 0..next(30) {
            payload.extend_from_slice(if next(4) == 0 { b"\n" } else { b"\r\n" });
            match next(5) {
                0 => {
                    payload.extend_from_slice(names[next(names.len() as u64) as usize].as_bytes());
                    payload.extend_from_slice(values[next(values.len() as u64) as usize].as_bytes());
                }
                1 if next(8) == 0 => payload.extend_from_slice(b"\r\n"), // a blank line ends the headers
                _ => payload.extend(std::iter::repeat_n(b'a' + (n % 26) as u8, next(90) as usize)),
            }
        }
        payload.truncate(payload.len() - next(4).min(payload.len() as u64) as usize);
        let frame = udp("192.0.2.99", SIP, &payload).build();
        let want = model.judge_frame(&frame, monotonic_ns());
        let before = k.maps().expect("maps").stats().expect("stats");
        let out = k.test_run(&frame, 1).expect("test_run");
        let after = k.maps().expect("maps").stats().expect("stats");
        let mut expect = [0u64; REASON_COUNT];
        expect[want as usize] = 1;
        assert_eq!(
            after.packets_since(&before),
            expect,
            "payload {n}: {:?}",
            String::from_utf8_lossy(&payload)
        );
        assert_eq!(out.action, want.xdp_action());
        if want == Reason::DropScanner { scanners += 1 } else { clean += 1 }
    }
    assert!(scanners > 100 && clean > 100, "both outcomes exercised: {scanners} scanners, {clean} clean");
}

/// Removes a pin folder (its files, then itself) when dropped, whatever the test did.
struct PinDir(std::path::PathBuf);

impl Drop for PinDir {
    fn drop(&mut self) {
        if let Ok(entries) = std::fs::read_dir(&self.0) {
            for e in entries.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Pins left by a version without `src_v4_hint` (trie full, hint absent): the load rebuilds
/// the hint from the trie, or allow-listed sources would be judged unknown.
#[test]
fn load_rebuilds_the_v4_hint_from_pinned_entries() {
    const TEST: &str = "load_rebuilds_the_v4_hint_from_pinned_entries";
    if !tests::is_root() {
        let _ = tests::skip(TEST, "pinning and BPF_PROG_TEST_RUN need root");
        return;
    }
    ebpf::ensure_bpffs().expect("bpffs");
    let dir =
        PinDir(std::path::PathBuf::from(format!("/sys/fs/bpf/sipedge-test-hint-{}", std::process::id())));
    let frame = udp("203.0.113.10", SIP, &sip_payload()).build();
    let policy = table_policy();
    {
        let mut first = XdpFilter::load(&object(), Some(&dir.0)).expect("first load");
        let maps = first.maps().expect("maps");
        maps.apply_policy(&policy).expect("policy");
        maps.sync_allow_list(&trunks()).expect("allow-list");
        assert_eq!(first.test_run(&frame, 1).expect("test_run").action, XDP_PASS);
    }
    std::fs::remove_file(dir.0.join("src_v4_hint")).expect("remove the hint's pin");
    let mut second = XdpFilter::load(&object(), Some(&dir.0)).expect("second load, from the pins");
    let before = second.maps().expect("maps").stats().expect("stats");
    assert_eq!(second.test_run(&frame, 1).expect("test_run").action, XDP_PASS);
    let after = second.maps().expect("maps").stats().expect("stats");
    assert_eq!(after.packets_since(&before)[Reason::PassAllow as usize], 1, "judged by the pinned trie");
}
