//! `sipedge xdp …`: attach, detach, block, unblock, stats of the kernel filter.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Subcommand, ValueEnum};
use control::config::{Config, XdpMode};
use ebpf::policy::Unknown;
use ebpf::{AttachMode, BPFFS_ROOT, Policy};
use ipnet::IpNet;

/// Attach mode on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum ModeArg {
    /// In the driver, falling back to skb where the driver cannot.
    Native,
    /// Generic XDP.
    Skb,
}

/// The `xdp` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum XdpCommand {
    /// Attach the filter (it stays attached after this command exits; state is kept across
    /// re-attaches until `detach`). Pins live under /sys/fs/bpf/sipedge/<interface>/ of the
    /// current mount namespace: to attach inside a network namespace use
    /// `nsenter --net=/var/run/netns/NAME`, not `ip netns exec` (which remounts /sys).
    Attach {
        /// Interface to filter.
        #[arg(long, short)]
        interface: String,
        /// Configuration (trunk sources become the allow-list; `[xdp]` sets the policy). Without
        /// it, the embedded demo default.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Attach mode; default: the configuration's, else native.
        #[arg(long)]
        mode: Option<ModeArg>,
    },
    /// Detach the filter and remove its pinned state.
    Detach {
        /// Interface.
        #[arg(long, short)]
        interface: String,
    },
    /// Block a prefix (ADDR or ADDR/LEN) in the kernel.
    Block {
        /// The prefix.
        prefix: String,
        /// Seconds until the entry expires; 0: never.
        #[arg(long)]
        ttl: u64,
        /// Interface; default: the only one with a sipedge filter.
        #[arg(long, short)]
        interface: Option<String>,
    },
    /// Remove a blocked prefix.
    Unblock {
        /// The prefix.
        prefix: String,
        /// Interface; default: the only one with a sipedge filter.
        #[arg(long, short)]
        interface: Option<String>,
    },
    /// Print the verdict counters and the blocklist.
    Stats {
        /// Interface; default: the only one with a sipedge filter.
        #[arg(long, short)]
        interface: Option<String>,
    },
}

/// Runs one `xdp` subcommand.
pub(crate) fn run(cmd: XdpCommand) -> anyhow::Result<()> {
    match cmd {
        XdpCommand::Attach { interface, config, mode } => attach(&interface, config.as_deref(), mode),
        XdpCommand::Detach { interface } => {
            ebpf::detach(&interface)?;
            println!("XDP filter detached from {interface}; its pinned state is removed");
            Ok(())
        }
        XdpCommand::Block { prefix, ttl, interface } => {
            let net = parse_prefix(&prefix)?;
            let ifname = resolve_interface(interface)?;
            let mut maps = ebpf::open_attached(&ifname)?;
            let swept = maps.sweep_expired(ebpf::monotonic_ns())?;
            let ttl = (ttl > 0).then(|| Duration::from_secs(ttl));
            maps.block(net, ebpf::deadline_ns(ttl))?;
            match ttl {
                Some(t) => println!("blocked {net} on {ifname} for {}s", t.as_secs()),
                None => println!("blocked {net} on {ifname} until unblocked"),
            }
            if swept > 0 {
                println!("swept {swept} expired entries");
            }
            Ok(())
        }
        XdpCommand::Unblock { prefix, interface } => {
            let net = parse_prefix(&prefix)?;
            let ifname = resolve_interface(interface)?;
            if ebpf::open_attached(&ifname)?.unblock(net)? {
                println!("unblocked {net} on {ifname}");
                Ok(())
            } else {
                bail!("{net} is not blocked on {ifname}")
            }
        }
        XdpCommand::Stats { interface } => {
            let ifname = resolve_interface(interface)?;
            let mut maps = ebpf::open_attached(&ifname)?;
            let now = ebpf::monotonic_ns();
            maps.sweep_expired(now)?;
            let mode = match maps.config()?.attach_mode {
                ebpf::shared::ATTACH_NATIVE => "native",
                ebpf::shared::ATTACH_SKB => "skb (generic)",
                _ => "not attached",
            };
            println!("interface {ifname}, mode {mode}");
            print!("{}", maps.stats()?);
            let blocked = maps.blocked()?;
            println!("blocklist: {} entries", blocked.len());
            for e in blocked {
                match e.expires_ns {
                    0 => println!("  {} (no expiry)", e.net),
                    t => println!("  {} expires in {}s", e.net, t.saturating_sub(now) / 1_000_000_000),
                }
            }
            Ok(())
        }
    }
}

fn attach(interface: &str, config: Option<&Path>, mode: Option<ModeArg>) -> anyhow::Result<()> {
    let config = match config {
        Some(p) => Config::load(p).with_context(|| format!("configuration {}", p.display()))?,
        None => Config::embedded_default(),
    };
    let (policy, allow) = policy_of(&config);
    let mode = match (mode, config.xdp.as_ref().map(|x| x.mode)) {
        (Some(ModeArg::Skb), _) | (None, Some(XdpMode::Skb)) => AttachMode::Skb,
        _ => AttachMode::Native,
    };
    let (_filter, attached) = ebpf::attach_interface(interface, mode, &policy, &allow)
        .with_context(|| format!("attaching the XDP filter to {interface}"))?;
    println!(
        "XDP filter attached to {interface} in {attached} mode: {} allow-listed prefixes, unknown sources: {}",
        allow.len(),
        match policy.unknown {
            Unknown::Drop => "drop",
            Unknown::RateLimit => "rate-limit",
        }
    );
    Ok(())
}

/// The filter policy and allow-list a configuration asks for.
pub(crate) fn policy_of(config: &Config) -> (Policy, Vec<(IpNet, u32)>) {
    (edge::filter::policy_of(config), edge::filter::allow_list(config))
}

fn parse_prefix(s: &str) -> anyhow::Result<IpNet> {
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(net);
    }
    let addr: IpAddr = s.parse().with_context(|| format!("{s:?} is neither ADDR nor ADDR/LEN"))?;
    Ok(IpNet::from(addr))
}

/// The given interface, or the only one with pins under [`BPFFS_ROOT`].
fn resolve_interface(given: Option<String>) -> anyhow::Result<String> {
    if let Some(i) = given {
        return Ok(i);
    }
    let names: Vec<String> = std::fs::read_dir(BPFFS_ROOT)
        .map(|d| d.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect())
        .unwrap_or_default();
    match names.as_slice() {
        [one] => Ok(one.clone()),
        [] => {
            bail!("no sipedge XDP filter is attached (nothing under {BPFFS_ROOT}); run `sipedge xdp attach`")
        }
        many => bail!("filters are attached to {}: pass --interface", many.join(", ")),
    }
}
