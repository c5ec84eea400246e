//! `sipedge`: the SIP edge binary. Starts the planes (`run`) and carries the operator commands.

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::sync::Arc;
use std::time::Instant;

use control::config::Config;
use edge::guard::Guard;
use edge::io::{self, IoConfig};
use edge::proxy::{EdgeWorker, Engine, EngineConfig};
use edge::route::{self, Router};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// sipedge: a SIP edge / session border controller for carrier trunks.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the edge. Without --config, runs the embedded demo default on loopback.
    Run {
        /// TOML configuration file.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Validate the configuration, print a summary and exit.
        #[arg(long)]
        check: bool,
    },
    /// DID routing: check the route decision for numbers.
    #[command(subcommand)]
    Did(cli::did::DidCommand),
    /// The XDP filter in the kernel: attach, detach, block, unblock, stats.
    Xdp {
        #[command(subcommand)]
        command: cli::xdp::XdpCommand,
    },
    /// Operate a running sipedge through its control API.
    Ctl(Box<cli::ctl::Ctl>),
    /// SIP message tools.
    Sip {
        #[command(subcommand)]
        command: SipCommand,
    },
}

#[derive(Debug, Subcommand)]
enum SipCommand {
    /// Parse each file as one SIP message: `FILE: valid` or `FILE: invalid: REASON`; exits 1 if
    /// any is invalid, 2 on an I/O error.
    Lint {
        /// Files holding one SIP message each (a capture's payload, byte-exact).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Print the parsed start line and headers as JSON, one object per file.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config, check } => run(config, check),
        Command::Sip { command: SipCommand::Lint { files, json } } => {
            return cli::sip_lint::run(&files, json);
        }
        Command::Did(command) => cli::did::run(command).map(|()| ExitCode::SUCCESS),
        Command::Xdp { command } => cli::xdp::run(command).map(|()| ExitCode::SUCCESS),
        Command::Ctl(ctl) => cli::ctl::run(*ctl),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sipedge: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(path: Option<PathBuf>, check: bool) -> anyhow::Result<ExitCode> {
    let config = match &path {
        Some(p) => Config::load(p).with_context(|| format!("configuration {}", p.display()))?,
        None => {
            tracing::info!("no --config: running the embedded demo default on loopback");
            Config::embedded_default()
        }
    };
    let io_config = IoConfig::from_edge(&config.edge)?;
    tracing::info!(
        listen = ?config.edge.listen.iter().map(ToString::to_string).collect::<Vec<_>>(),
        trunks = config.trunks.len(),
        targets = config.targets.len(),
        dids = config.dids.len(),
        did_ranges = config.did_ranges.len(),
        "configuration valid"
    );
    if check {
        return Ok(ExitCode::SUCCESS);
    }
    // The control plane first: it seeds an empty store from the file; from then on the store's
    // committed state is what the data plane serves.
    let control = control::serve(&config).context("control plane")?;
    let publisher = control.publisher();
    // Subscribe before loading, so that no change falls between the load and the follower.
    let events = publisher.subscribe();
    let snapshot = publisher.current();
    let live = snapshot.config.clone();
    let guard = Guard::from_config(&live).context("trunk sources")?;
    let router = Arc::new(Router::from_config(&live).context("routing")?);
    let (policy, allow) = cli::xdp::policy_of(&live);
    let mode = match config.xdp.as_ref().map(|x| x.mode) {
        Some(control::config::XdpMode::Skb) => ebpf::AttachMode::Skb,
        _ => ebpf::AttachMode::Native,
    };
    let placement =
        ebpf::place(config.xdp.as_ref().and_then(|x| x.interface.as_deref()), mode, &policy, &allow)
            .context("the packet filter policy")?;
    let filter = match &placement {
        ebpf::Placement::Kernel { interface, attached, .. } => format!("XDP {attached} on {interface}"),
        ebpf::Placement::Userspace { why, .. } => format!("user space ({why})"),
    };
    let engine = Engine::new(guard, router, EngineConfig::from_config(&config, io_config.workers));
    let (engine, active) = match placement {
        ebpf::Placement::Kernel { filter, .. } => (engine, edge::filter::sync::ActiveFilter::Kernel(filter)),
        ebpf::Placement::Userspace { filter, .. } => {
            let prefilter = Arc::new(edge::guard::Prefilter::new(filter));
            (
                engine.with_prefilter(Arc::clone(&prefilter)),
                edge::filter::sync::ActiveFilter::Userspace(prefilter),
            )
        }
    };
    let engine = Arc::new(engine);
    // The live-change thread loads the routed DIDs first (retrying while a target it names is
    // newer than the snapshot); the edge listens only once they are in.
    let (loaded_tx, loaded) = std::sync::mpsc::sync_channel(1);
    {
        let (engine, publisher) = (Arc::clone(&engine), Arc::clone(&publisher));
        std::thread::Builder::new()
            .name("live-changes".into())
            .spawn(move || match route::live::Follower::start(&*engine, &publisher, &snapshot) {
                Ok(follower) => {
                    let _ = loaded_tx.send(Ok(()));
                    follower.run(events);
                }
                Err(e) => {
                    let _ = loaded_tx.send(Err(e));
                }
            })
            .context("starting the live-change thread")?;
    }
    loaded.recv().context("the live-change thread stopped")?.context("loading the routed DIDs")?;
    let sync = edge::filter::sync::FilterSync::new(active).with_metrics(control.metrics());
    let filter_sync = edge::filter::sync::spawn(sync, Arc::clone(&publisher))
        .context("starting the packet filter sync thread")?;
    edge::telemetry::spawn(Arc::clone(&engine), control.metrics()).context("starting the metrics sampler")?;
    control.set_live_calls(Arc::new(edge::telemetry::EngineLiveCalls(Arc::clone(&engine))));
    let mut signals = Signals::new([SIGINT, SIGTERM]).context("installing signal handlers")?;
    let start = Instant::now();
    let workers = io::spawn(&io_config, |idx| EdgeWorker::new(Arc::clone(&engine), idx, start))
        .context("starting the UDP workers")?;
    let addrs: Vec<String> = workers.local_addrs().iter().map(|a| format!("udp:{a}")).collect();
    // One line on stdout says the edge is up and where (tests and scripts read it).
    println!(
        "sipedge: listening {} ({} workers, {}; filter: {filter}; api: http://{})",
        addrs.join(" "),
        io_config.workers,
        workers.backend(),
        control.addr
    );
    if let Some(token) = &control.admin_token {
        println!("admin API token (shown once; also in {}): {token}", control.token_file.display());
    }
    let signal = signals.forever().next();
    tracing::info!(?signal, "stopping");
    let counters = workers.counters();
    workers.shutdown().context("stopping the UDP workers")?;
    filter_sync.stop();
    control.shutdown().context("stopping the control plane")?;
    tracing::info!(?counters, active_calls = engine.active_calls(), "stopped");
    Ok(ExitCode::SUCCESS)
}
