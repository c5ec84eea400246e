//! The XDP filter on a real veth in network namespaces this test creates, attached in native
//! mode by the `sipedge xdp` CLI:
//! - SIPp calls from an allow-listed address cross the filter and complete while a UDP flood
//!   from non-allow-listed addresses runs; the counters show the flood dropped in XDP;
//! - a blocklisted address is dropped until its TTL passes, then gets through;
//! - re-attaching (a restart) keeps the filter's state; under `rate-limit`, an unknown source
//!   is cut at its bucket.
//!
//! Topology: namespace A (10.77.0.2 trunk, 10.77.0.3 trunk then blocked, 10.77.0.50 unknown,
//! flood from 10.77.1.0/24 as raw frames) ── veth ── namespace B (10.77.0.1 SIPp UAS,
//! 10.77.0.4 a test UDP receiver), the filter on B's end.

use std::io::Write as _;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ebpf::{Reason, Stats};
use tests::netns::{self, Topology, in_netns, run};

const UAS: &str = "10.77.0.1";
const UAC: &str = "10.77.0.2";
const BLOCKED: &str = "10.77.0.3";
const RECEIVER: &str = "10.77.0.4";
const UNKNOWN: &str = "10.77.0.50";
const FLOOD_NET: &str = "10.77.1.0/24";
const SIP_PORT: u16 = 5060;
/// SIPp calls, their rate (calls/s) and the bound on the whole SIPp run (s).
const CALLS: u32 = 200;
const CALL_RATE: u32 = 50;
const SIPP_TIMEOUT_S: u32 = 60;
/// Flood duration, seconds (the SIPp run fits inside it).
const FLOOD_SECONDS: u32 = 6;
/// Blocklist TTL under test, seconds.
const BLOCK_TTL_S: u64 = 2;
/// Datagrams sent per probe burst.
const PROBES: usize = 5;
/// Burst sent to the rate-limited source, and the default bucket depth (policy default).
const RATE_BURST_SENT: usize = 100;
const DEFAULT_SOURCE_BURST: usize = 20;
const DEFAULT_SOURCE_RATE_PPS: f64 = 10.0;
/// How long a receiver waits for a straggler, ms.
const RECV_IDLE_MS: u64 = 300;

/// A child process killed (by its PID) on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `sipedge xdp ARGS` inside namespace `ns` (network namespace only: bpffs stays the host's).
fn sipedge_xdp(ns: &str, args: &[&str]) -> String {
    let out = run(Command::new("nsenter")
        .arg(format!("--net=/var/run/netns/{ns}"))
        .arg(tests::sipedge_bin())
        .arg("xdp")
        .args(args));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn flood_bin() -> PathBuf {
    tests::sipedge_bin().with_file_name("flood")
}

fn udp_in(ns: &str, addr: &str, port: u16) -> UdpSocket {
    let sa: SocketAddr = format!("{addr}:{port}").parse().expect("address");
    in_netns(ns, || UdpSocket::bind(sa).expect("bind"))
}

/// Sends `n` SIP-looking datagrams from `from` to the receiver.
fn send_probes(from: &UdpSocket, n: usize) {
    let msg = ebpf::craft::sip_options("sipedge-netns-test", 300);
    for _ in 0..n {
        from.send_to(&msg, (RECEIVER, SIP_PORT)).expect("send");
    }
}

/// Datagrams received until none arrives for RECV_IDLE_MS.
fn drain(rx: &UdpSocket) -> usize {
    rx.set_read_timeout(Some(Duration::from_millis(RECV_IDLE_MS))).expect("timeout");
    let mut buf = [0u8; 2048];
    let mut n = 0;
    while rx.recv(&mut buf).is_ok() {
        n += 1;
    }
    n
}

fn stats(ifname: &str) -> Stats {
    ebpf::open_attached(ifname).expect("pinned maps").stats().expect("stats")
}

fn delta(after: &Stats, before: &Stats, r: Reason) -> u64 {
    after.get(r).packets - before.get(r).packets
}

fn write_config(dir: &Path, ifname: &str, unknown: &str) -> PathBuf {
    let path = dir.join(format!("xdp-{unknown}.toml"));
    let mut f = std::fs::File::create(&path).expect("config");
    write!(
        f,
        "[xdp]\ninterface = \"{ifname}\"\nmode = \"native\"\nunknown_sources = \"{unknown}\"\n\n\
         [[trunk]]\nname = \"carrier\"\nsources = [\"{UAC}/32\", \"{BLOCKED}/32\"]\n"
    )
    .expect("write config");
    path
}

fn missing_prerequisite() -> Option<String> {
    netns::missing_prerequisite(&["sipp", "ip", "nsenter"]).or_else(|| {
        (!flood_bin().is_file())
            .then(|| format!("{} not built (cargo build --workspace --bins)", flood_bin().display()))
    })
}

#[test]
fn xdp_filter_in_network_namespaces() {
    const TEST: &str = "xdp_filter_in_network_namespaces";
    if let Some(why) = missing_prerequisite() {
        let _ = tests::skip(TEST, &why);
        return;
    }
    let topo = Topology::create("x", &[UAC, BLOCKED, UNKNOWN], &[UAS, RECEIVER]);
    let dir = std::env::temp_dir().join(format!("sipedge-xdp-netns-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");

    // Attach natively (veth supports native XDP) with unknown sources dropped.
    let out = sipedge_xdp(
        &topo.b,
        &["attach", "-i", &topo.if_b, "--config", path_str(&write_config(&dir, &topo.if_b, "drop"))],
    );
    assert!(out.contains("native mode"), "attach output: {out}");

    // SIPp UAS behind the filter; UAC from the trunk address; flood from unknown addresses.
    let uas = Killed(
        Command::new("ip")
            .args(["netns", "exec", &topo.b, "sipp", "-sn", "uas", "-i", UAS, "-p", "5060", "-nostdin"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sipp uas"),
    );
    let before = stats(&topo.if_b);
    let flood = Command::new("ip")
        .args(["netns", "exec", &topo.a])
        .arg(flood_bin())
        .args(["--interface", &topo.if_a, "--dst-mac", &topo.mac_b(), "--src-net", FLOOD_NET])
        .args(["--dst", UAS, "--dport", "5060", "--seconds", &FLOOD_SECONDS.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("flood");
    let mut flood = Killed(flood);
    let uac = Command::new("ip")
        .args(["netns", "exec", &topo.a, "sipp", "-sn", "uac", &format!("{UAS}:5060")])
        .args(["-i", UAC, "-p", "5070", "-m", &CALLS.to_string(), "-r", &CALL_RATE.to_string()])
        .args(["-d", "100", "-timeout", &format!("{SIPP_TIMEOUT_S}s"), "-timeout_error", "-nostdin"])
        .output()
        .expect("sipp uac");
    let flood_out = wait_stdout(&mut flood.0);
    drop(uas);
    assert!(
        uac.status.success(),
        "SIPp UAC: {CALLS} calls through the filter under flood must all complete: {}",
        String::from_utf8_lossy(&uac.stderr)
    );
    let sent: u64 = json_field(&flood_out, "sent");
    assert!(sent > 10_000, "the flood sent only {sent} frames: {flood_out}");
    let after = stats(&topo.if_b);
    assert_eq!(delta(&after, &before, Reason::DropUnknown), sent, "every flood frame dropped in XDP");
    let allowed = delta(&after, &before, Reason::PassAllow);
    assert!(allowed >= u64::from(CALLS) * 3, "INVITE, ACK and BYE of every call passed: {allowed}");
    eprintln!("flood: {flood_out}; XDP passed {allowed} SIP packets from the trunk");

    // Blocklist with a TTL: dropped in XDP until it expires, then the trunk member gets through.
    let rx = udp_in(&topo.b, RECEIVER, SIP_PORT);
    let tx = udp_in(&topo.a, BLOCKED, 0);
    send_probes(&tx, 1); // ARP resolved, path open
    assert_eq!(drain(&rx), 1, "the trunk member reaches the receiver before the block");
    sipedge_xdp(
        &topo.b,
        &["block", &format!("{BLOCKED}/32"), "--ttl", &BLOCK_TTL_S.to_string(), "-i", &topo.if_b],
    );
    let blocked_at = Instant::now();
    let before = stats(&topo.if_b);
    send_probes(&tx, PROBES);
    assert_eq!(drain(&rx), 0, "blocked while the TTL runs");
    assert_eq!(delta(&stats(&topo.if_b), &before, Reason::DropBlock), PROBES as u64);
    let ttl = Duration::from_secs(BLOCK_TTL_S) + Duration::from_millis(200);
    std::thread::sleep(ttl.saturating_sub(blocked_at.elapsed()));
    send_probes(&tx, PROBES);
    assert_eq!(drain(&rx), PROBES, "through again once the TTL passed");
    let out = sipedge_xdp(&topo.b, &["stats", "-i", &topo.if_b]);
    assert!(out.contains("blocklist: 0 entries"), "expired entry swept: {out}");

    // Restart with `rate-limit`: the pinned state (here a permanent block) survives the
    // re-attach, and an unknown source gets its bucket's burst, no more.
    sipedge_xdp(&topo.b, &["block", &format!("{BLOCKED}/32"), "--ttl", "0", "-i", &topo.if_b]);
    let out = sipedge_xdp(
        &topo.b,
        &["attach", "-i", &topo.if_b, "--config", path_str(&write_config(&dir, &topo.if_b, "rate-limit"))],
    );
    assert!(out.contains("rate-limit"), "re-attach output: {out}");
    let kept = ebpf::open_attached(&topo.if_b).expect("maps").blocked().expect("blocklist");
    assert_eq!(kept.len(), 1, "blocklist kept across the re-attach: {kept:?}");
    let unknown = udp_in(&topo.a, UNKNOWN, 0);
    let before = stats(&topo.if_b);
    let start = Instant::now();
    send_probes(&unknown, RATE_BURST_SENT);
    let elapsed = start.elapsed().as_secs_f64();
    let got = drain(&rx);
    let after = stats(&topo.if_b);
    let ceiling = DEFAULT_SOURCE_BURST + (DEFAULT_SOURCE_RATE_PPS * elapsed).ceil() as usize;
    assert!((DEFAULT_SOURCE_BURST..=ceiling).contains(&got), "bucket admits burst + refill: got {got}");
    assert_eq!(delta(&after, &before, Reason::PassRate), got as u64);
    assert_eq!(delta(&after, &before, Reason::DropRateSource), (RATE_BURST_SENT - got) as u64);

    let out = sipedge_xdp(&topo.b, &["detach", "-i", &topo.if_b]);
    assert!(out.contains("detached"), "{out}");
    assert!(!Path::new(ebpf::BPFFS_ROOT).join(&topo.if_b).exists(), "pins removed");
    let _ = std::fs::remove_dir_all(&dir);
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

/// Reads `"name":N` from the flood's JSON line.
fn json_field(line: &str, name: &str) -> u64 {
    let key = format!("\"{name}\":");
    let rest = line.split(&key).nth(1).unwrap_or_else(|| panic!("{name} in {line:?}"));
    rest.chars().take_while(char::is_ascii_digit).collect::<String>().parse().expect("number")
}

/// Waits for the child and returns its stdout.
fn wait_stdout(child: &mut Child) -> String {
    let mut out = String::new();
    if let Some(mut s) = child.stdout.take() {
        let _ = std::io::Read::read_to_string(&mut s, &mut out);
    }
    let _ = child.wait();
    out
}
