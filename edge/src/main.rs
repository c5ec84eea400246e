//! `sipedge`: the SIP edge binary. Starts the planes (`run`) and carries the operator commands.

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use control::config::Config;

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
    /// Operate a running sipedge through its control API.
    Ctl(Box<cli::ctl::Ctl>),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config, check } => run(config, check),
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
    let control = control::serve(&config).context("control plane")?;
    if let Some(token) = &control.admin_token {
        println!("admin API token (shown once; also in {}): {token}", control.token_file.display());
    }
    tracing::warn!(api = %control.addr, "the proxy is not built yet: serving the control plane only");
    control.wait().context("control plane")?;
    Ok(ExitCode::SUCCESS)
}
