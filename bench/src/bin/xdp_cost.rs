//! `xdp-cost`: ns per packet of each verdict path of sipedge's XDP program against a minimal
//! program (Ethernet/IPv4/UDP, drop the SIP port), through `BPF_PROG_TEST_RUN`. Needs root.
//!
//! Each path runs `--repeat` times per round (the kernel reports the mean per run), rounds
//! interleave the programs, and the table shows the median and the minimum over `--rounds`.
//! After each run the counters must show that the path taken is the one named.

use anyhow::{Context, ensure};
use clap::Parser;
use ebpf::craft::{FrameSpec, sip_options};
use ebpf::policy::{Bucket, MAX_BURST, MAX_RATE_PPS, Unknown};
use ebpf::{Policy, Reason, XdpFilter};

/// SIP payload size of every test frame, bytes (a typical OPTIONS/INVITE without body).
const PAYLOAD_BYTES: usize = 400;

#[derive(Debug, Parser)]
#[command(about = "XDP program cost per verdict path (BPF_PROG_TEST_RUN)")]
struct Args {
    /// Runs per measurement.
    #[arg(long, default_value_t = 1_000_000)]
    repeat: u32,
    /// Measurements per path.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// sipedge's program from this object file instead of the one built in (to compare a
    /// rebuilt `sipedge_xdp.o` with the committed one in the same time window).
    #[arg(long)]
    object: Option<std::path::PathBuf>,
    /// Only the paths whose name contains this text (the minimal program always runs: it is
    /// the baseline), e.g. to profile one path with `perf record`.
    #[arg(long)]
    only: Option<String>,
}

/// One verdict path: its frame, the policy that leads there, the reason it must end in.
struct Path {
    name: &'static str,
    frame: Vec<u8>,
    policy: Policy,
    expect: Option<Reason>,
}

fn frame(src: &str, dport: u16, user_agent: &str) -> Vec<u8> {
    let payload = sip_options(user_agent, PAYLOAD_BYTES);
    let src = src.parse().expect("address");
    FrameSpec::udp(src, "192.0.2.1".parse().expect("address"), 40_000, dport, &payload).build()
}

fn paths() -> Vec<Path> {
    let drop = Policy::default();
    let unlimited = Policy {
        unknown: Unknown::RateLimit,
        per_source: Bucket { rate_pps: MAX_RATE_PPS, burst: MAX_BURST },
        global: Bucket { rate_pps: MAX_RATE_PPS, burst: MAX_BURST },
        ..Policy::default()
    };
    let tight = Policy {
        unknown: Unknown::RateLimit,
        per_source: Bucket { rate_pps: 1, burst: 1 },
        ..Policy::default()
    };
    vec![
        Path {
            name: "minimal program: drop UDP 5060",
            frame: frame("192.0.2.9", 5060, "ua"),
            policy: drop.clone(),
            expect: None,
        },
        Path {
            name: "allow-listed pass",
            frame: frame("203.0.113.10", 5060, "carrier/1.0"),
            policy: drop.clone(),
            expect: Some(Reason::PassAllow),
        },
        Path {
            name: "unknown drop",
            frame: frame("192.0.2.9", 5060, "ua"),
            policy: drop.clone(),
            expect: Some(Reason::DropUnknown),
        },
        Path {
            name: "unknown drop, listed /16 (trie walk)",
            frame: frame("203.0.112.9", 5060, "ua"),
            policy: drop.clone(),
            expect: Some(Reason::DropUnknown),
        },
        Path {
            name: "blocklisted drop",
            frame: frame("198.51.100.7", 5060, "ua"),
            policy: drop.clone(),
            expect: Some(Reason::DropBlock),
        },
        Path {
            name: "rate-limited drop (over bucket)",
            frame: frame("192.0.2.9", 5060, "ua"),
            policy: tight,
            expect: Some(Reason::DropRateSource),
        },
        Path {
            name: "rate-limit admitted (full scan)",
            frame: frame("192.0.2.9", 5060, "ua"),
            policy: unlimited.clone(),
            expect: Some(Reason::PassRate),
        },
        Path {
            name: "scanner drop",
            frame: frame("192.0.2.9", 5060, "friendly-scanner"),
            policy: unlimited,
            expect: Some(Reason::DropScanner),
        },
        Path {
            name: "non-SIP pass (UDP 53)",
            frame: frame("192.0.2.9", 53, "ua"),
            policy: drop.clone(),
            expect: Some(Reason::PassNonSip),
        },
        Path {
            name: "non-SIP pass (IPv6 UDP 53: general parser)",
            frame: {
                let payload = sip_options("ua", PAYLOAD_BYTES);
                let (src, dst) =
                    ("2001:db8::9".parse().expect("address"), "2001:db8::1".parse().expect("address"));
                FrameSpec::udp(src, dst, 40_000, 53, &payload).build()
            },
            policy: drop,
            expect: Some(Reason::PassNonSip),
        },
    ]
}

fn load(path: &Path, object: &[u8]) -> anyhow::Result<XdpFilter> {
    if path.expect.is_none() {
        return Ok(XdpFilter::load_minimal()?);
    }
    let mut f = XdpFilter::load(object, None)?;
    let maps = f.maps()?;
    maps.apply_policy(&path.policy)?;
    maps.sync_allow_list(&[("203.0.113.0/24".parse()?, 0)])?;
    maps.block("198.51.100.7/32".parse()?, 0)?;
    Ok(f)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(args.rounds > 0 && args.repeat > 0, "--rounds and --repeat must be positive");
    let object = match &args.object {
        Some(file) => std::fs::read(file).with_context(|| format!("reading {}", file.display()))?,
        None => ebpf::SIPEDGE_XDP_OBJECT.to_vec(),
    };
    let mut paths = paths();
    if let Some(only) = &args.only {
        paths.retain(|p| p.expect.is_none() || p.name.contains(only.as_str()));
    }
    let mut filters: Vec<XdpFilter> =
        paths.iter().map(|p| load(p, &object)).collect::<anyhow::Result<_>>().context("loading")?;
    let mut ns: Vec<Vec<f64>> = vec![Vec::new(); paths.len()];
    for _ in 0..args.rounds {
        for ((p, f), out) in paths.iter().zip(filters.iter_mut()).zip(ns.iter_mut()) {
            let before = if p.expect.is_some() { Some(f.maps()?.stats()?) } else { None };
            let r = f.test_run(&p.frame, args.repeat)?;
            out.push(r.per_run.as_nanos() as f64);
            if let (Some(want), Some(before)) = (p.expect, before) {
                let after = f.maps()?.stats()?;
                let taken = after.get(want).packets - before.get(want).packets;
                // The tight bucket admits its first packet once; everything else takes the path.
                ensure!(
                    taken + 1 >= u64::from(args.repeat),
                    "{}: only {taken} runs ended in {}",
                    p.name,
                    want.name()
                );
            }
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    let base = median(&mut ns[0].clone());
    println!("| path | ns/packet (median of {}) | min | × minimal |", args.rounds);
    println!("|---|---:|---:|---:|");
    for (p, v) in paths.iter().zip(ns.iter_mut()) {
        let min = v.iter().copied().fold(f64::INFINITY, f64::min);
        let med = median(v);
        println!("| {} | {med:.0} | {min:.0} | {:.2} |", p.name, med / base);
    }
    Ok(())
}
