//! `xdp-flood-bench`: a SIP-sized UDP flood into a veth pair between two network namespaces it
//! creates, against each kernel drop path in turn: sipedge's XDP program (native and skb mode),
//! the minimal XDP program, an nftables drop rule (netdev ingress) on the same port, and a
//! user-space socket that receives and discards. For each: packets/s offered and dropped, and
//! CPU time per million dropped packets on each core (from `/proc/stat`, so it includes the flood
//! generator itself and anything else running on the machine). Needs root, `nft`, `ethtool`.
//! Prints a markdown table. Cleans up its namespaces on exit.
//!
//! Then (unless `--no-calls`) SIPp calls from the allow-listed address through `sipedge run`
//! with its XDP filter, alone and under the same flood ([`calls`]): failed calls and sipedge's
//! user-space CPU. Needs `sipp` and the `sipedge` binary beside this one.

#[path = "xdp_flood_bench/calls.rs"]
mod calls;

use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::Parser;
use ebpf::{AttachMode, Policy, Reason};

const NS_A: &str = "sxbench-a";
const NS_B: &str = "sxbench-b";
const IF_A: &str = "sxba0";
const IF_B: &str = "sxbb0";
const ADDR_A: &str = "10.88.0.2";
const ADDR_B: &str = "10.88.0.1";
const FLOOD_NET: &str = "10.88.1.0/24";
const SIP_PORT: u16 = 5060;
/// `USER_HZ`: the unit of `/proc/stat`.
const TICKS_PER_S: f64 = 100.0;
/// Highest `--call-rate`, calls/s (one SIPp UAC saturates around here).
const MAX_CALL_RATE: u32 = 5_000;
/// Receive batch of the user-space sink, datagrams.
const SINK_BATCH: usize = 64;
/// Longest block of the sink's receive call.
const SINK_POLL: Duration = Duration::from_millis(100);
/// Receive buffer asked for by the sink, bytes (capped by net.core.rmem_max).
const SINK_RCVBUF: libc::c_int = 4 << 20;

#[derive(Debug, Parser)]
#[command(about = "Flood a veth pair and compare kernel drop paths (root)")]
struct Args {
    /// Seconds of flood per setup.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Flood payload size, bytes.
    #[arg(long, default_value_t = 400)]
    size: usize,
    /// New calls per second through sipedge in the calls phases (each lasts `--seconds`).
    #[arg(long, default_value_t = 200)]
    call_rate: u32,
    /// Skip the calls through sipedge.
    #[arg(long)]
    no_calls: bool,
    /// Only the calls through sipedge (skip the five drop-path setups).
    #[arg(long)]
    calls_only: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setup {
    SipedgeNative,
    SipedgeSkb,
    Minimal,
    Nftables,
    Userspace,
}

impl Setup {
    const ALL: [Setup; 5] =
        [Setup::SipedgeNative, Setup::SipedgeSkb, Setup::Minimal, Setup::Nftables, Setup::Userspace];

    fn name(self) -> &'static str {
        match self {
            Setup::SipedgeNative => "sipedge XDP, native (veth)",
            Setup::SipedgeSkb => "sipedge XDP, skb (generic)",
            Setup::Minimal => "minimal XDP, native (veth)",
            Setup::Nftables => "nftables drop, netdev ingress",
            Setup::Userspace => "user space recv-and-drop",
        }
    }
}

/// Deletes the namespaces (and the pins of the sipedge filter) on drop.
struct Topology;

impl Topology {
    fn create() -> anyhow::Result<Topology> {
        let _ = ebpf::detach(IF_B);
        for ns in [NS_A, NS_B] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let t = Topology;
        sh("ip", &["netns", "add", NS_A])?;
        sh("ip", &["netns", "add", NS_B])?;
        sh("ip", &["link", "add", IF_A, "netns", NS_A, "type", "veth", "peer", "name", IF_B, "netns", NS_B])?;
        sh("ip", &["-n", NS_A, "addr", "add", &format!("{ADDR_A}/16"), "dev", IF_A])?;
        sh("ip", &["-n", NS_B, "addr", "add", &format!("{ADDR_B}/16"), "dev", IF_B])?;
        sh("ip", &["-n", NS_A, "link", "set", IF_A, "up"])?;
        sh("ip", &["-n", NS_B, "link", "set", IF_B, "up"])?;
        // sipedge's control API listens on B's loopback.
        sh("ip", &["-n", NS_B, "link", "set", "lo", "up"])?;
        // Replies (ICMP unreachable) to passed flood packets would go to unresolvable
        // addresses; keep the receiving side quiet.
        sh("ip", &["netns", "exec", NS_B, "sysctl", "-qw", "net.ipv4.icmp_ratelimit=1000000"])?;
        Ok(t)
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        let _ = ebpf::detach(IF_B);
        for ns in [NS_A, NS_B] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn sh(cmd: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(cmd).args(args).output().with_context(|| format!("{cmd} {args:?}"))?;
    ensure!(out.status.success(), "{cmd} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `f` on a thread inside namespace `ns`.
fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> anyhow::Result<T> {
    let path = format!("/var/run/netns/{ns}");
    let file = std::fs::File::open(&path).with_context(|| path.clone())?;
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns on a valid namespace fd; it changes only this (scoped) thread.
            let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            ensure!(r == 0, "setns {path}: {}", std::io::Error::last_os_error());
            Ok(f())
        })
        .join()
        .map_err(|_| anyhow::anyhow!("netns thread panicked"))?
    })
}

/// Busy ticks per CPU (everything but idle and iowait).
fn cpu_busy() -> anyhow::Result<Vec<u64>> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    Ok(stat
        .lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .map(|l| {
            let v: Vec<u64> = l.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
            let total: u64 = v.iter().sum();
            total - v.get(3).copied().unwrap_or(0) - v.get(4).copied().unwrap_or(0)
        })
        .collect())
}

/// Sum of the veth's per-queue XDP drop counters.
fn veth_xdp_drops() -> anyhow::Result<u64> {
    let out = sh("ip", &["netns", "exec", NS_B, "ethtool", "-S", IF_B])?;
    Ok(out
        .lines()
        .filter(|l| l.contains("_xdp_drops:"))
        .filter_map(|l| l.rsplit(':').next()?.trim().parse::<u64>().ok())
        .sum())
}

fn nft_packets() -> anyhow::Result<u64> {
    let out = sh("ip", &["netns", "exec", NS_B, "nft", "list", "table", "netdev", "sxbench"])?;
    let n = out.split("counter packets ").nth(1).context("nft counter")?;
    Ok(n.split_whitespace().next().context("nft counter")?.parse()?)
}

fn sipedge_drops() -> anyhow::Result<u64> {
    Ok(ebpf::open_attached(IF_B)?.stats()?.get(Reason::DropUnknown).packets)
}

/// The user-space sink: receives with recvmmsg until `deadline`, discards, counts.
fn sink(sock: &UdpSocket, deadline: Instant) -> u64 {
    let mut bufs = vec![[0u8; 2048]; SINK_BATCH];
    let mut iovs: Vec<libc::iovec> =
        bufs.iter_mut().map(|b| libc::iovec { iov_base: b.as_mut_ptr().cast(), iov_len: b.len() }).collect();
    let mut msgs: Vec<libc::mmsghdr> = iovs
        .iter_mut()
        .map(|iov| {
            // SAFETY: mmsghdr is a plain C struct: all-zero is valid.
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_iov = iov;
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect();
    let mut got = 0u64;
    // recvmmsg's own timeout is only checked after a datagram arrives: wait in poll, bounded,
    // and receive without blocking, so that the loop sees its deadline even when nothing comes.
    let poll_ms = libc::c_int::try_from(SINK_POLL.as_millis()).unwrap_or(libc::c_int::MAX);
    while Instant::now() < deadline {
        let mut pfd = libc::pollfd { fd: sock.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd that outlives the call.
        if unsafe { libc::poll(&mut pfd, 1, poll_ms) } <= 0 {
            continue;
        }
        // SAFETY: msgs point at iovecs over `bufs`, all alive for the call; vlen matches.
        let n = unsafe {
            libc::recvmmsg(
                sock.as_raw_fd(),
                msgs.as_mut_ptr(),
                SINK_BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n > 0 {
            got += n as u64;
        }
    }
    got
}

struct Row {
    setup: Setup,
    offered_pps: f64,
    dropped_pps: f64,
    dropped: u64,
    sent: u64,
    cpu_s: Vec<f64>,
}

fn flood(args: &Args, mac: &str) -> anyhow::Result<(u64, f64)> {
    let flood = std::env::current_exe()?.with_file_name("flood");
    let out = Command::new("ip")
        .args(["netns", "exec", NS_A])
        .arg(&flood)
        .args(["--interface", IF_A, "--dst-mac", mac, "--src-net", FLOOD_NET, "--dst", ADDR_B])
        .args(["--dport", &SIP_PORT.to_string(), "--size", &args.size.to_string()])
        .args(["--seconds", &args.seconds.to_string()])
        .output()
        .with_context(|| flood.display().to_string())?;
    ensure!(out.status.success(), "flood: {}", String::from_utf8_lossy(&out.stderr));
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |name: &str| -> anyhow::Result<f64> {
        let rest = line.split(&format!("\"{name}\":")).nth(1).context("flood output")?;
        Ok(rest.split([',', '}']).next().context("flood output")?.parse()?)
    };
    Ok((field("sent")? as u64, field("seconds")?))
}

fn run_setup(args: &Args, setup: Setup, mac: &str) -> anyhow::Result<Row> {
    let policy = Policy::default();
    let allow = [(format!("{ADDR_A}/32").parse()?, 0u32)];
    match setup {
        Setup::SipedgeNative | Setup::SipedgeSkb => {
            let mode = if setup == Setup::SipedgeNative { AttachMode::Native } else { AttachMode::Skb };
            let attached =
                in_netns(NS_B, || ebpf::attach_interface(IF_B, mode, &policy, &allow).map(|(_, a)| a))??;
            eprintln!("{}: attached in {attached} mode", setup.name());
        }
        Setup::Minimal => {
            let obj = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../ebpf/xdp/minimal_drop.o");
            sh(
                "ip",
                &[
                    "-n",
                    NS_B,
                    "link",
                    "set",
                    "dev",
                    IF_B,
                    "xdpdrv",
                    "obj",
                    obj.to_str().context("path")?,
                    "sec",
                    "xdp",
                ],
            )?;
        }
        Setup::Nftables => {
            let rules = format!(
                "add table netdev sxbench; \
                 add chain netdev sxbench ingress {{ type filter hook ingress device {IF_B} priority 0; }}; \
                 add rule netdev sxbench ingress udp dport {SIP_PORT} counter drop"
            );
            sh("ip", &["netns", "exec", NS_B, "nft", &rules])?;
        }
        Setup::Userspace => {}
    }
    let before = match setup {
        Setup::SipedgeNative | Setup::SipedgeSkb => sipedge_drops()?,
        Setup::Minimal => veth_xdp_drops()?,
        Setup::Nftables => nft_packets()?,
        Setup::Userspace => 0,
    };
    eprintln!("{}: flooding", setup.name());
    let cpu0 = cpu_busy()?;
    let (sent, secs, sunk) = if setup == Setup::Userspace {
        let sock = in_netns(NS_B, || UdpSocket::bind((ADDR_B, SIP_PORT)))??;
        let size = SINK_RCVBUF;
        // SAFETY: setsockopt with a valid int option value of the stated size.
        unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&raw const size).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        let deadline = Instant::now() + Duration::from_secs_f64(args.seconds) + Duration::from_millis(500);
        std::thread::scope(|s| -> anyhow::Result<(u64, f64, u64)> {
            let h = s.spawn(|| sink(&sock, deadline));
            let (sent, secs) = flood(args, mac)?;
            let got = h.join().map_err(|_| anyhow::anyhow!("sink panicked"))?;
            Ok((sent, secs, got))
        })?
    } else {
        let (sent, secs) = flood(args, mac)?;
        (sent, secs, 0)
    };
    let cpu1 = cpu_busy()?;
    let dropped = match setup {
        Setup::SipedgeNative | Setup::SipedgeSkb => sipedge_drops()? - before,
        Setup::Minimal => veth_xdp_drops()? - before,
        Setup::Nftables => nft_packets()? - before,
        Setup::Userspace => sunk,
    };
    match setup {
        Setup::SipedgeNative | Setup::SipedgeSkb => ebpf::detach(IF_B)?,
        Setup::Minimal => {
            sh("ip", &["-n", NS_B, "link", "set", "dev", IF_B, "xdpdrv", "off"])?;
        }
        Setup::Nftables => {
            sh("ip", &["netns", "exec", NS_B, "nft", "delete", "table", "netdev", "sxbench"])?;
        }
        Setup::Userspace => {}
    }
    let cpu_s = cpu0.iter().zip(&cpu1).map(|(a, b)| (b - a) as f64 / TICKS_PER_S).collect();
    Ok(Row {
        setup,
        offered_pps: sent as f64 / secs,
        dropped_pps: dropped as f64 / secs,
        dropped,
        sent,
        cpu_s,
    })
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(args.seconds > 0.0 && args.seconds <= 60.0, "--seconds must be in (0, 60]");
    ensure!((1..=MAX_CALL_RATE).contains(&args.call_rate), "--call-rate must be in 1..={MAX_CALL_RATE}");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("needs root (network namespaces, XDP, nftables)");
    }
    let _topo = Topology::create()?;
    let mac = sh("ip", &["-n", NS_B, "-br", "link", "show", IF_B])?
        .split_whitespace()
        .nth(2)
        .context("MAC of the receiving veth")?
        .to_owned();
    let mut rows = Vec::new();
    for setup in Setup::ALL.into_iter().filter(|_| !args.calls_only) {
        rows.push(run_setup(&args, setup, &mac).with_context(|| setup.name())?);
    }
    if !rows.is_empty() {
        print_drop_table(&rows);
    }
    if !args.no_calls {
        let (lines, calls) = calls::run(&args, &mac).context("calls through sipedge")?;
        println!();
        for line in lines {
            println!("{line}");
        }
        println!();
        println!(
            "| phase | calls | failed | failed % | flood sent | flood dropped in XDP | sipedge CPU s | CPU ms / call |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|");
        for r in &calls {
            let failed = r.offered.saturating_sub(r.successful);
            println!(
                "| {} ({:.1} s) | {} | {} | {:.2} | {} | {} | {:.2} | {:.3} |",
                r.label,
                r.seconds,
                r.offered,
                failed.max(r.failed),
                100.0 * failed.max(r.failed) as f64 / r.offered.max(1) as f64,
                r.flood_sent,
                r.flood_dropped,
                r.cpu_s,
                1000.0 * r.cpu_s / r.successful.max(1) as f64,
            );
        }
    }
    Ok(())
}

fn print_drop_table(rows: &[Row]) {
    let cores = rows.first().map_or(0, |r| r.cpu_s.len());
    print!("| setup | offered pps | dropped pps | dropped % |");
    for c in 0..cores {
        print!(" cpu{c} ms / M dropped |");
    }
    println!();
    print!("|---|---:|---:|---:|");
    for _ in 0..cores {
        print!("---:|");
    }
    println!();
    for r in rows {
        let pct = 100.0 * r.dropped as f64 / r.sent.max(1) as f64;
        print!("| {} | {:.0} | {:.0} | {pct:.1} |", r.setup.name(), r.offered_pps, r.dropped_pps);
        for s in &r.cpu_s {
            print!(" {:.0} |", 1000.0 * s / (r.dropped.max(1) as f64 / 1e6));
        }
        println!();
    }
}
