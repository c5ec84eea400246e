//! `sipedge did check`: builds the routing state from a configuration (and a bulk CSV), then
//! prints the route decision for each number given, the way the proxy would take it.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Subcommand};
use control::config::Config;
use edge::route::csv_import::{self, ImportOptions};
use edge::route::{DidTableBuilder, MatchKind, RouteDecision, Router, SetId, insert_config_dids};

/// `sipedge did …`
#[derive(Debug, Subcommand)]
pub(crate) enum DidCommand {
    /// Print the route decision for each NUMBER (a Request-URI user part, or `tel:N;phone-context=C`).
    Check(CheckArgs),
}

/// Arguments of `sipedge did check`.
#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// TOML configuration file (trunks, targets, DIDs, blocks).
    #[arg(long, short)]
    config: PathBuf,
    /// Trunk whose numbering plan applies. Default: the first trunk.
    #[arg(long)]
    trunk: Option<String>,
    /// Bulk DID file: CSV `number,target[,customer,group,tag]` with a header row.
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Load the good rows of --csv and report the bad ones instead of failing.
    #[arg(long, requires = "csv")]
    skip_bad_rows: bool,
    /// Numbers to route.
    #[arg(required = true)]
    numbers: Vec<String>,
}

/// Runs a `did` subcommand.
pub(crate) fn run(command: DidCommand) -> anyhow::Result<()> {
    match command {
        DidCommand::Check(args) => check(args),
    }
}

fn check(args: CheckArgs) -> anyhow::Result<()> {
    let config =
        Config::load(&args.config).with_context(|| format!("configuration {}", args.config.display()))?;
    let router = Router::from_config(&config).context("building the routing state")?;
    let trunk = match &args.trunk {
        Some(name) => router.trunk(name).with_context(|| format!("no trunk named {name:?}"))?,
        None => router
            .trunk(config.trunks.first().map_or("", |t| &t.name))
            .context("the configuration has no trunk")?,
    };
    if let Some(csv) = &args.csv {
        let started = Instant::now();
        let rows = csv_import::count_lines(csv)?;
        let mut table = DidTableBuilder::with_capacity(rows + config.dids.len());
        insert_config_dids(&config, router.targets(), &mut table)?;
        let options = ImportOptions { skip_bad_rows: args.skip_bad_rows };
        let report = csv_import::import_file(csv, router.targets(), &mut table, options)
            .with_context(|| format!("importing {}", csv.display()))?;
        for bad in &report.bad {
            eprintln!("skipped {bad}");
        }
        let table = table.build();
        let memory = table.memory();
        eprintln!(
            "loaded {} rows ({} skipped) in {:.2} s; {} exact DIDs, {:.1} bytes/DID",
            report.loaded,
            report.skipped,
            started.elapsed().as_secs_f64(),
            memory.dids,
            memory.bytes_per_did()
        );
        router.replace_table(Arc::new(table));
    }
    let mut out = String::new();
    for number in &args.numbers {
        let (user, context) = split_tel(number);
        let decision = router.route(trunk, user.as_bytes(), context.map(str::as_bytes));
        describe(&router, number, decision, &mut out);
        out.push('\n');
    }
    print!("{out}");
    Ok(())
}

/// `tel:N;phone-context=C;…` → (`N`, `Some(C)`); anything else is a user part as is.
fn split_tel(arg: &str) -> (&str, Option<&str>) {
    let Some(rest) = arg.strip_prefix("tel:") else { return (arg, None) };
    let mut parts = rest.split(';');
    let number = parts.next().unwrap_or_default();
    let context = parts.find_map(|p| p.strip_prefix("phone-context="));
    (number, context)
}

fn describe(router: &Router, input: &str, decision: RouteDecision, out: &mut String) {
    let _ = write!(out, "{input}: ");
    match decision {
        RouteDecision::Did { number, route, matched, .. } => {
            let how = match matched {
                MatchKind::Exact => "exact".to_owned(),
                MatchKind::Range => "range".to_owned(),
                MatchKind::Prefix(len) => format!("prefix of {len} digits"),
            };
            let _ = write!(out, "{number} {how} -> ");
            target(router, route.set(), out);
            if let Some(m) = route.max_calls() {
                let _ = write!(out, " max_calls={m}");
            }
            router.with_meta(matched, route.meta(), |meta| {
                for (key, value) in [
                    ("customer", meta.customer),
                    ("group", meta.group),
                    ("tag", meta.tag),
                    ("description", meta.description),
                ] {
                    if let Some(v) = value {
                        let _ = write!(out, " {key}={v:?}");
                    }
                }
            });
        }
        RouteDecision::Emergency { target: set } => {
            out.push_str("emergency -> ");
            target(router, set, out);
        }
        RouteDecision::Refuse(reason) => {
            let _ = write!(out, "{} {reason}", reason.status());
        }
    }
}

fn target(router: &Router, set: SetId, out: &mut String) {
    let targets = router.targets();
    let _ = write!(out, "{}", targets.name(set).unwrap_or("?"));
    let uris: Vec<&str> = router.candidates(set, 0).filter_map(|u| targets.uri(u)).collect();
    if uris.is_empty() {
        out.push_str(" (every URI down: 503)");
    } else {
        let _ = write!(out, " [{}]", uris.join(", "));
    }
}
