//! `sipedge ctl`: the control API from the command line.
//!
//! Address and token come from flags, then the environment (`SIPEDGE_API`, `SIPEDGE_TOKEN`), then
//! the configuration (`--config`, or the embedded default): its `[control] api` and the admin
//! token file beside its `[control] db`. Output is a table for people, or the API's JSON with
//! `--json`. A refused request prints each field the API named and exits with status 1.

use std::fmt::Write as _;
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use control::config::Config;
use serde_json::{Value, json};

/// How long to wait for the API to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a whole request may take (bulk imports stream far longer: they have no limit).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Page size used when walking a whole list (`--all`).
const PAGE_ALL: usize = 1_000;
/// Width of the import progress bar, in characters.
const PROGRESS_WIDTH: usize = 30;

/// `sipedge ctl` options and command.
#[derive(Debug, Args)]
pub(crate) struct Ctl {
    /// API address (`http://HOST:PORT` or `HOST:PORT`). Default: $SIPEDGE_API, else the
    /// configuration's `[control] api`.
    #[arg(long, global = true)]
    api: Option<String>,
    /// Bearer token. Default: $SIPEDGE_TOKEN, else the token file.
    #[arg(long, global = true)]
    token: Option<String>,
    /// Token file. Default: `<[control] db>.token`.
    #[arg(long, global = true)]
    token_file: Option<PathBuf>,
    /// Configuration file to take the API address and database path from.
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    /// Print the API's JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: CtlCommand,
}

#[derive(Debug, Subcommand)]
enum CtlCommand {
    /// DIDs: add, remove, show, list, search, bulk import.
    #[command(subcommand)]
    Did(DidCmd),
    /// Trunks.
    #[command(subcommand)]
    Trunk(TrunkCmd),
    /// Targets.
    #[command(subcommand)]
    Target(TargetCmd),
    /// The allow-list: source networks of trunks.
    #[command(subcommand)]
    Acl(AclCmd),
    /// The blocklist: `block add ADDR --ttl SECS --reason WHY`.
    #[command(subcommand)]
    Block(BlockCmd),
    /// Number blocks (prefixes and ranges).
    #[command(subcommand)]
    Range(RangeCmd),
    /// Trunk limits (CPS, concurrent calls).
    #[command(subcommand)]
    Limits(LimitsCmd),
    /// API tokens: `token add NAME` prints a new token once; `token list` shows names.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Policy version and object counts.
    Stats,
    /// The audit log.
    Audit {
        /// Only this object kind (`did`, `trunk`, …).
        #[arg(long)]
        object: Option<String>,
        /// Only this key.
        #[arg(long)]
        key: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Write the whole state as TOML (to stdout or a file).
    Export {
        /// Output file.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Replace the state with a TOML file in one transaction; `--dry-run` only prints the diff.
    Import {
        /// TOML file (the configuration format, as `export` writes it).
        file: PathBuf,
        /// Print the diff, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Args)]
struct PageArgs {
    /// Items per page.
    #[arg(long)]
    limit: Option<usize>,
    /// Start after this key (the previous page's `next`).
    #[arg(long)]
    after: Option<String>,
    /// Walk every page.
    #[arg(long, conflicts_with_all = ["limit", "after"])]
    all: bool,
}

#[derive(Debug, Args)]
struct DidFields {
    /// Customer.
    #[arg(long)]
    customer: Option<String>,
    /// Group.
    #[arg(long)]
    group: Option<String>,
    /// Tag.
    #[arg(long)]
    tag: Option<String>,
    /// `in-use` (default) or `free`.
    #[arg(long)]
    status: Option<String>,
    /// Description.
    #[arg(long)]
    description: Option<String>,
}

#[derive(Debug, Subcommand)]
enum DidCmd {
    /// Add or replace a DID.
    Add {
        /// E.164 number (`+15551230000`).
        number: String,
        /// Target name.
        #[arg(long)]
        target: String,
        #[command(flatten)]
        fields: DidFields,
    },
    /// Remove a DID.
    Rm {
        /// E.164 number.
        number: String,
    },
    /// Show one DID.
    Show {
        /// E.164 number.
        number: String,
    },
    /// List DIDs.
    List {
        #[command(flatten)]
        page: PageArgs,
    },
    /// Search DIDs (all given filters must match).
    Search {
        /// E.164 prefix.
        #[arg(long)]
        prefix: Option<String>,
        /// Customer.
        #[arg(long)]
        customer: Option<String>,
        /// Group.
        #[arg(long)]
        group: Option<String>,
        /// `in-use` or `free`.
        #[arg(long)]
        status: Option<String>,
        /// Target.
        #[arg(long)]
        target: Option<String>,
        /// Vanity pattern: letters map to keypad digits, `%` is a wildcard (`1800%FLOWERS`).
        #[arg(long)]
        vanity: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Bulk import from CSV (`number,target[,customer,group,tag]` with a header), one transaction.
    Import {
        /// CSV file.
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum TrunkCmd {
    /// List trunks.
    List {
        #[command(flatten)]
        page: PageArgs,
    },
    /// Show one trunk.
    Show {
        /// Name.
        name: String,
    },
    /// Add or replace a trunk.
    Add {
        /// Name.
        name: String,
        /// Source CIDR (repeat for several).
        #[arg(long = "source", required = true)]
        sources: Vec<String>,
        /// New calls per second.
        #[arg(long)]
        cps: Option<u32>,
        /// Concurrent calls.
        #[arg(long)]
        max_calls: Option<u32>,
        /// Country calling code.
        #[arg(long)]
        country_code: Option<String>,
        /// National prefix.
        #[arg(long)]
        national_prefix: Option<String>,
        /// International prefix.
        #[arg(long)]
        international_prefix: Option<String>,
        /// Target for emergency numbers.
        #[arg(long)]
        emergency_target: Option<String>,
    },
    /// Remove a trunk.
    Rm {
        /// Name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum TargetCmd {
    /// List targets.
    List {
        #[command(flatten)]
        page: PageArgs,
    },
    /// Show one target.
    Show {
        /// Name.
        name: String,
    },
    /// Add or replace a target.
    Add {
        /// Name.
        name: String,
        /// `sip:` URI (repeat; tried in order).
        #[arg(long = "uri", required = true)]
        uris: Vec<String>,
    },
    /// Remove a target.
    Rm {
        /// Name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum AclCmd {
    /// List the allow-list.
    List {
        #[command(flatten)]
        page: PageArgs,
    },
    /// Allow a source network for a trunk.
    Add {
        /// CIDR.
        cidr: String,
        /// Trunk.
        #[arg(long)]
        trunk: String,
        /// Description.
        #[arg(long)]
        description: Option<String>,
    },
    /// Remove a source network.
    Rm {
        /// CIDR.
        cidr: String,
    },
}

#[derive(Debug, Subcommand)]
enum BlockCmd {
    /// List blocked sources.
    List {
        #[command(flatten)]
        page: PageArgs,
    },
    /// Block an address or network.
    Add {
        /// Address or CIDR (an address alone is /32 or /128).
        addr: String,
        /// Seconds until the block ends (absent: for good).
        #[arg(long)]
        ttl: Option<u64>,
        /// Why (required).
        #[arg(long)]
        reason: String,
    },
    /// Lift a block.
    Rm {
        /// Address or CIDR.
        addr: String,
    },
}

#[derive(Debug, Subcommand)]
enum RangeCmd {
    /// List number blocks.
    List {
        #[command(flatten)]
        page: PageArgs,
    },
    /// Add a prefix (`--prefix`) or an inclusive range (`--first --last`).
    Add {
        /// E.164 prefix.
        #[arg(long, conflicts_with_all = ["first", "last"])]
        prefix: Option<String>,
        /// First number.
        #[arg(long, requires = "last")]
        first: Option<String>,
        /// Last number.
        #[arg(long, requires = "first")]
        last: Option<String>,
        /// Target.
        #[arg(long)]
        target: String,
    },
    /// Remove a number block by id.
    Rm {
        /// Block id.
        id: i64,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCmd {
    /// List token names.
    List,
    /// Create a token (printed once: store it now).
    Add {
        /// Name, recorded as the actor of every change made with the token.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum LimitsCmd {
    /// List every trunk's limits.
    List {
        #[command(flatten)]
        page: PageArgs,
    },
    /// Set a trunk's limits.
    Set {
        /// Trunk.
        trunk: String,
        /// New calls per second.
        #[arg(long)]
        cps: u32,
        /// Concurrent calls.
        #[arg(long)]
        max_calls: u32,
        /// Answer over max_calls: 503 or 486.
        #[arg(long)]
        over_capacity_code: Option<u16>,
    },
}

/// Columns of a table: header and JSON field.
type Columns = &'static [(&'static str, &'static str)];

const DID_COLUMNS: Columns = &[
    ("NUMBER", "number"),
    ("TARGET", "target"),
    ("STATUS", "status"),
    ("CUSTOMER", "customer"),
    ("GROUP", "group"),
    ("TAG", "tag"),
    ("FREE SINCE", "free_since"),
];
const TRUNK_COLUMNS: Columns = &[
    ("NAME", "name"),
    ("SOURCES", "sources"),
    ("CPS", "cps"),
    ("MAX CALLS", "max_calls"),
    ("CC", "country_code"),
];
const TARGET_COLUMNS: Columns = &[("NAME", "name"), ("URIS", "uris")];
const ACL_COLUMNS: Columns = &[("CIDR", "cidr"), ("TRUNK", "trunk"), ("DESCRIPTION", "description")];
const BLOCKED_COLUMNS: Columns =
    &[("CIDR", "cidr"), ("REASON", "reason"), ("CREATED", "created"), ("EXPIRES", "expires")];
const RANGE_COLUMNS: Columns =
    &[("ID", "id"), ("PREFIX", "prefix"), ("FIRST", "first"), ("LAST", "last"), ("TARGET", "target")];
const LIMITS_COLUMNS: Columns = &[
    ("TRUNK", "trunk"),
    ("CPS", "cps"),
    ("MAX CALLS", "max_calls"),
    ("OVER CAPACITY", "over_capacity_code"),
];
const TOKEN_COLUMNS: Columns = &[("NAME", "name"), ("CREATED", "created")];
const AUDIT_COLUMNS: Columns = &[
    ("ID", "id"),
    ("AT", "at"),
    ("ACTOR", "actor"),
    ("ACTION", "action"),
    ("OBJECT", "object"),
    ("KEY", "key"),
];

/// Runs `sipedge ctl`.
pub(crate) fn run(ctl: Ctl) -> anyhow::Result<ExitCode> {
    let client = Client::new(&ctl)?;
    match client.dispatch(ctl.command) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => match e.downcast::<Refused>() {
            Ok(refused) => {
                eprintln!("{refused}");
                Ok(ExitCode::FAILURE)
            }
            Err(e) => Err(e),
        },
    }
}

/// The API refused the request: its status and message (with every field it named).
#[derive(Debug)]
struct Refused {
    status: u16,
    body: Value,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(errors) = self.body["errors"].as_array() {
            writeln!(f, "refused ({}): invalid input", self.status)?;
            for e in errors {
                let field = e["field"].as_str().unwrap_or("?");
                writeln!(f, "  {field}: {}", e["reason"].as_str().unwrap_or("?"))?;
            }
            Ok(())
        } else {
            let msg = self.body["error"].as_str().map_or_else(|| self.body.to_string(), str::to_owned);
            write!(f, "refused ({}): {msg}", self.status)
        }
    }
}

impl std::error::Error for Refused {}

/// A request body: text sent whole, or a reader streamed chunk by chunk.
enum Payload<'a> {
    Text(&'a str),
    Stream(&'a mut dyn Read),
}

struct Client {
    base: String,
    token: String,
    json: bool,
    agent: ureq::Agent,
    bulk: ureq::Agent,
}

/// Percent-encodes one path segment (`+` and `/` included).
fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A query string from the given pairs (absent values skipped).
fn query(pairs: &[(&str, Option<String>)]) -> String {
    let parts: Vec<String> =
        pairs.iter().filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", segment(v)))).collect();
    if parts.is_empty() { String::new() } else { format!("?{}", parts.join("&")) }
}

impl Client {
    fn new(ctl: &Ctl) -> anyhow::Result<Self> {
        let config = match &ctl.config {
            Some(p) => Config::load(p).with_context(|| format!("configuration {}", p.display()))?,
            None => Config::embedded_default(),
        };
        let api = ctl
            .api
            .clone()
            .or_else(|| std::env::var("SIPEDGE_API").ok())
            .unwrap_or_else(|| config.control.api.to_string());
        let base = if api.starts_with("http://") || api.starts_with("https://") {
            api
        } else {
            format!("http://{api}")
        };
        let token = match ctl.token.clone().or_else(|| std::env::var("SIPEDGE_TOKEN").ok()) {
            Some(t) => t,
            None => {
                let file = ctl
                    .token_file
                    .clone()
                    .unwrap_or_else(|| control::store::token_file_for(&config.control.db));
                std::fs::read_to_string(&file)
                    .with_context(|| {
                        format!(
                            "no token: give --token, set SIPEDGE_TOKEN, or make {} readable",
                            file.display()
                        )
                    })?
                    .trim()
                    .to_owned()
            }
        };
        let agent = |timeout: Option<Duration>| -> ureq::Agent {
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_connect(Some(CONNECT_TIMEOUT))
                .timeout_global(timeout)
                .build()
                .into()
        };
        Ok(Self { base, token, json: ctl.json, agent: agent(Some(REQUEST_TIMEOUT)), bulk: agent(None) })
    }

    /// Sends a request; returns the parsed JSON body (or the text as a JSON string).
    fn request(&self, method: &str, path: &str, body: Option<(&str, Payload<'_>)>) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let auth = format!("Bearer {}", self.token);
        let agent = if matches!(body, Some((_, Payload::Stream(_)))) { &self.bulk } else { &self.agent };
        let result = match (method, body) {
            ("GET", None) => agent.get(&url).header("authorization", &auth).call(),
            ("DELETE", None) => agent.delete(&url).header("authorization", &auth).call(),
            (m @ ("POST" | "PUT"), Some((ctype, payload))) => {
                let req = if m == "POST" { agent.post(&url) } else { agent.put(&url) };
                let req = req.header("authorization", &auth).content_type(ctype);
                match payload {
                    Payload::Text(text) => req.send(text),
                    Payload::Stream(reader) => req.send(ureq::SendBody::from_reader(reader)),
                }
            }
            (m, _) => bail!("unsupported request {m} {path}"),
        };
        let mut resp = result.with_context(|| format!("{method} {url}"))?;
        let status = resp.status().as_u16();
        let text =
            resp.body_mut().with_config().limit(u64::MAX).read_to_string().context("reading the response")?;
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if status >= 400 {
            return Err(Refused { status, body: value }.into());
        }
        Ok(value)
    }

    fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.request("GET", path, None)
    }

    fn send_json(&self, method: &str, path: &str, body: &Value) -> anyhow::Result<Value> {
        let text = body.to_string();
        self.request(method, path, Some(("application/json", Payload::Text(&text))))
    }

    fn delete(&self, path: &str, what: &str) -> anyhow::Result<()> {
        self.request("DELETE", path, None)?;
        if !self.json {
            println!("removed {what}");
        }
        Ok(())
    }

    /// Prints one object: JSON, or `key: value` lines.
    fn show(&self, value: &Value) {
        if self.json {
            println!("{value:#}");
            return;
        }
        if let Some(obj) = value.as_object() {
            let width = obj.keys().map(String::len).max().unwrap_or(0);
            for (k, v) in obj {
                println!("{k:width$}  {}", cell(v));
            }
        } else {
            println!("{}", cell(value));
        }
    }

    /// Prints a list (one page, or every page with `--all`).
    fn list(
        &self,
        path: &str,
        filters: Vec<(&str, Option<String>)>,
        page: PageArgs,
        columns: Columns,
    ) -> anyhow::Result<()> {
        let mut items = Vec::new();
        let mut after = page.after;
        let limit = if page.all { Some(PAGE_ALL) } else { page.limit };
        let next = loop {
            let mut pairs = filters.clone();
            pairs.push(("limit", limit.map(|l| l.to_string())));
            pairs.push(("after", after.clone()));
            let mut listing = self.get(&format!("{path}{}", query(&pairs)))?;
            if let Some(page_items) = listing["items"].as_array_mut() {
                items.append(page_items);
            }
            let next = listing["next"].as_str().map(str::to_owned);
            match next {
                Some(n) if page.all => after = Some(n),
                other => break other,
            }
        };
        if self.json {
            println!("{:#}", json!({ "items": items, "next": next }));
            return Ok(());
        }
        print_table(columns, &items);
        if let Some(n) = next {
            eprintln!("(more: --after {n}, or --all)");
        }
        Ok(())
    }

    fn dispatch(&self, command: CtlCommand) -> anyhow::Result<()> {
        match command {
            CtlCommand::Did(cmd) => self.did(cmd),
            CtlCommand::Trunk(cmd) => self.trunk(cmd),
            CtlCommand::Target(cmd) => self.target(cmd),
            CtlCommand::Acl(cmd) => self.acl(cmd),
            CtlCommand::Block(cmd) => self.block(cmd),
            CtlCommand::Range(cmd) => self.range(cmd),
            CtlCommand::Limits(cmd) => self.limits(cmd),
            CtlCommand::Token(TokenCmd::List) => self.list(
                "/v1/tokens",
                Vec::new(),
                PageArgs { limit: None, after: None, all: false },
                TOKEN_COLUMNS,
            ),
            CtlCommand::Token(TokenCmd::Add { name }) => {
                let created = self.send_json("POST", "/v1/tokens", &json!({ "name": name }))?;
                if self.json {
                    println!("{created:#}");
                } else {
                    println!("{}", cell(&created["token"]));
                }
                Ok(())
            }
            CtlCommand::Stats => {
                let stats = self.get("/v1/stats")?;
                if self.json {
                    println!("{stats:#}");
                } else {
                    println!("policy version  {}", cell(&stats["policy_version"]));
                    println!("uptime          {}s", cell(&stats["uptime_secs"]));
                    if let Some(counts) = stats["counts"].as_object() {
                        for (k, v) in counts {
                            println!("{k:15} {}", cell(v));
                        }
                    }
                }
                Ok(())
            }
            CtlCommand::Audit { object, key, page } => {
                self.list("/v1/audit", vec![("object", object), ("key", key)], page, AUDIT_COLUMNS)
            }
            CtlCommand::Export { output } => {
                let text = self.get("/v1/export")?;
                let text = text.as_str().unwrap_or_default();
                match output {
                    Some(path) => {
                        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?
                    }
                    None => print!("{text}"),
                }
                Ok(())
            }
            CtlCommand::Import { file, dry_run } => {
                let text =
                    std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
                let path = if dry_run { "/v1/import?dry_run=true" } else { "/v1/import" };
                let result = self.request("POST", path, Some(("application/toml", Payload::Text(&text))))?;
                if self.json {
                    println!("{result:#}");
                    return Ok(());
                }
                print_diff(&result["diff"]);
                if result["applied"].as_bool() == Some(true) {
                    println!("applied: policy version {}", cell(&result["version"]));
                } else {
                    println!("dry run: nothing changed");
                }
                Ok(())
            }
        }
    }

    fn did(&self, cmd: DidCmd) -> anyhow::Result<()> {
        match cmd {
            DidCmd::Add { number, target, fields } => {
                let mut body = json!({ "number": number, "target": target });
                for (k, v) in [
                    ("customer", fields.customer),
                    ("group", fields.group),
                    ("tag", fields.tag),
                    ("status", fields.status),
                    ("description", fields.description),
                ] {
                    if let Some(v) = v {
                        body[k] = Value::String(v);
                    }
                }
                let stored = self.send_json("PUT", &format!("/v1/dids/{}", segment(&number)), &body)?;
                self.show(&stored);
                Ok(())
            }
            DidCmd::Rm { number } => self.delete(&format!("/v1/dids/{}", segment(&number)), &number),
            DidCmd::Show { number } => {
                let did = self.get(&format!("/v1/dids/{}", segment(&number)))?;
                self.show(&did);
                Ok(())
            }
            DidCmd::List { page } => self.list("/v1/dids", Vec::new(), page, DID_COLUMNS),
            DidCmd::Search { prefix, customer, group, status, target, vanity, page } => {
                let filters = vec![
                    ("prefix", prefix),
                    ("customer", customer),
                    ("group", group),
                    ("status", status),
                    ("target", target),
                    ("vanity", vanity),
                ];
                self.list("/v1/dids", filters, page, DID_COLUMNS)
            }
            DidCmd::Import { file } => self.import_csv(&file),
        }
    }

    /// Streams a CSV file to the API with a progress bar on a terminal.
    fn import_csv(&self, file: &std::path::Path) -> anyhow::Result<()> {
        let f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
        let total = f.metadata().map(|m| m.len()).unwrap_or(0);
        let show = std::io::stderr().is_terminal() && !self.json;
        let mut reader = Progress { inner: f, sent: 0, total, shown: None, show };
        let result =
            self.request("POST", "/v1/dids/import", Some(("text/csv", Payload::Stream(&mut reader))));
        if show {
            eprintln!();
        }
        let result = result?;
        if self.json {
            println!("{result:#}");
        } else {
            println!(
                "imported {} rows ({} new, {} updated): policy version {}",
                cell(&result["rows"]),
                cell(&result["created"]),
                cell(&result["updated"]),
                cell(&result["version"])
            );
        }
        Ok(())
    }

    fn trunk(&self, cmd: TrunkCmd) -> anyhow::Result<()> {
        match cmd {
            TrunkCmd::List { page } => self.list("/v1/trunks", Vec::new(), page, TRUNK_COLUMNS),
            TrunkCmd::Show { name } => {
                let t = self.get(&format!("/v1/trunks/{}", segment(&name)))?;
                self.show(&t);
                Ok(())
            }
            TrunkCmd::Add {
                name,
                sources,
                cps,
                max_calls,
                country_code,
                national_prefix,
                international_prefix,
                emergency_target,
            } => {
                let mut body = json!({ "name": name, "sources": sources });
                let numbers = [("cps", cps), ("max_calls", max_calls)];
                for (k, v) in numbers {
                    if let Some(v) = v {
                        body[k] = json!(v);
                    }
                }
                let texts = [
                    ("country_code", country_code),
                    ("national_prefix", national_prefix),
                    ("international_prefix", international_prefix),
                    ("emergency_target", emergency_target),
                ];
                for (k, v) in texts {
                    if let Some(v) = v {
                        body[k] = Value::String(v);
                    }
                }
                let stored = self.send_json("PUT", &format!("/v1/trunks/{}", segment(&name)), &body)?;
                self.show(&stored);
                Ok(())
            }
            TrunkCmd::Rm { name } => self.delete(&format!("/v1/trunks/{}", segment(&name)), &name),
        }
    }

    fn target(&self, cmd: TargetCmd) -> anyhow::Result<()> {
        match cmd {
            TargetCmd::List { page } => self.list("/v1/targets", Vec::new(), page, TARGET_COLUMNS),
            TargetCmd::Show { name } => {
                let t = self.get(&format!("/v1/targets/{}", segment(&name)))?;
                self.show(&t);
                Ok(())
            }
            TargetCmd::Add { name, uris } => {
                let body = json!({ "name": name, "uris": uris });
                let stored = self.send_json("PUT", &format!("/v1/targets/{}", segment(&name)), &body)?;
                self.show(&stored);
                Ok(())
            }
            TargetCmd::Rm { name } => self.delete(&format!("/v1/targets/{}", segment(&name)), &name),
        }
    }

    fn acl(&self, cmd: AclCmd) -> anyhow::Result<()> {
        match cmd {
            AclCmd::List { page } => self.list("/v1/acl", Vec::new(), page, ACL_COLUMNS),
            AclCmd::Add { cidr, trunk, description } => {
                let body = json!({ "cidr": cidr, "trunk": trunk, "description": description });
                let stored = self.send_json("POST", "/v1/acl", &body)?;
                self.show(&stored);
                Ok(())
            }
            AclCmd::Rm { cidr } => self.delete(&format!("/v1/acl/{}", segment(&cidr)), &cidr),
        }
    }

    fn block(&self, cmd: BlockCmd) -> anyhow::Result<()> {
        match cmd {
            BlockCmd::List { page } => self.list("/v1/blocklist", Vec::new(), page, BLOCKED_COLUMNS),
            BlockCmd::Add { addr, ttl, reason } => {
                let body = json!({ "cidr": as_cidr(&addr), "ttl": ttl, "reason": reason });
                let stored = self.send_json("POST", "/v1/blocklist", &body)?;
                self.show(&stored);
                Ok(())
            }
            BlockCmd::Rm { addr } => {
                let cidr = as_cidr(&addr);
                self.delete(&format!("/v1/blocklist/{}", segment(&cidr)), &cidr)
            }
        }
    }

    fn range(&self, cmd: RangeCmd) -> anyhow::Result<()> {
        match cmd {
            RangeCmd::List { page } => self.list("/v1/blocks", Vec::new(), page, RANGE_COLUMNS),
            RangeCmd::Add { prefix, first, last, target } => {
                let body = json!({ "prefix": prefix, "first": first, "last": last, "target": target });
                let stored = self.send_json("POST", "/v1/blocks", &body)?;
                self.show(&stored);
                Ok(())
            }
            RangeCmd::Rm { id } => self.delete(&format!("/v1/blocks/{id}"), &format!("number block {id}")),
        }
    }

    fn limits(&self, cmd: LimitsCmd) -> anyhow::Result<()> {
        match cmd {
            LimitsCmd::List { page } => self.list("/v1/limits", Vec::new(), page, LIMITS_COLUMNS),
            LimitsCmd::Set { trunk, cps, max_calls, over_capacity_code } => {
                let mut body = json!({ "cps": cps, "max_calls": max_calls });
                if let Some(code) = over_capacity_code {
                    body["over_capacity_code"] = json!(code);
                }
                let stored = self.send_json("PUT", &format!("/v1/limits/{}", segment(&trunk)), &body)?;
                self.show(&stored);
                Ok(())
            }
        }
    }
}

/// An address alone becomes a host network (`/32` or `/128`).
fn as_cidr(addr: &str) -> String {
    match addr.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(a)) => format!("{a}/32"),
        Ok(std::net::IpAddr::V6(a)) => format!("{a}/128"),
        Err(_) => addr.to_owned(),
    }
}

/// One table cell: strings bare, arrays comma-joined, absent as `-`.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

fn print_table(columns: Columns, items: &[Value]) {
    let rows: Vec<Vec<String>> =
        items.iter().map(|item| columns.iter().map(|(_, field)| cell(&item[*field])).collect()).collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, (h, _))| rows.iter().map(|r| r[i].chars().count()).chain([h.len()]).max().unwrap_or(0))
        .collect();
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (c, w) in cells.iter().zip(&widths) {
            let _ = write!(out, "{c:w$}  ");
        }
        println!("{}", out.trim_end());
    };
    line(columns.iter().map(|(h, _)| *h).collect());
    for r in &rows {
        line(r.iter().map(String::as_str).collect());
    }
}

fn print_diff(diff: &Value) {
    let empty = Vec::new();
    for e in diff["entries"].as_array().unwrap_or(&empty) {
        let sign = match e["op"].as_str() {
            Some("add") => '+',
            Some("remove") => '-',
            _ => '~',
        };
        let detail = match sign {
            '+' => e["after"].to_string(),
            '-' => e["before"].to_string(),
            _ => changed_fields(&e["before"], &e["after"]),
        };
        println!("{sign} {} {} {detail}", cell(&e["kind"]), cell(&e["key"]));
    }
    if diff["truncated"].as_bool() == Some(true) {
        println!("… (first {} entries shown)", diff["entries"].as_array().map_or(0, Vec::len));
    }
    println!(
        "{} to add, {} to change, {} to remove",
        cell(&diff["added"]),
        cell(&diff["changed"]),
        cell(&diff["removed"])
    );
}

/// `field: before -> after` for each field that differs between two objects.
fn changed_fields(before: &Value, after: &Value) -> String {
    match (before.as_object(), after.as_object()) {
        (Some(b), Some(a)) => {
            let mut keys: Vec<&String> = b.keys().chain(a.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter()
                .filter(|k| b.get(*k) != a.get(*k))
                .map(|k| {
                    let show = |v: Option<&Value>| v.map_or_else(|| "-".to_owned(), cell);
                    format!("{k}: {} -> {}", show(b.get(k)), show(a.get(k)))
                })
                .collect::<Vec<_>>()
                .join(", ")
        }
        _ => format!("{before} -> {after}"),
    }
}

/// A reader that draws a progress bar on stderr as the upload advances.
struct Progress<R> {
    inner: R,
    sent: u64,
    total: u64,
    /// Last percentage drawn.
    shown: Option<u64>,
    show: bool,
}

impl<R: Read> Read for Progress<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sent += n as u64;
        if self.show && self.total > 0 {
            let pct = (self.sent * 100 / self.total).min(100);
            if self.shown != Some(pct) {
                self.shown = Some(pct);
                let filled = usize::try_from(pct).unwrap_or(100) * PROGRESS_WIDTH / 100;
                let mut err = std::io::stderr().lock();
                let _ = write!(
                    err,
                    "\r[{}{}] {pct:3}% {:.1}/{:.1} MB",
                    "#".repeat(filled),
                    " ".repeat(PROGRESS_WIDTH - filled),
                    self.sent as f64 / 1e6,
                    self.total as f64 / 1e6
                );
                let _ = err.flush();
            }
        }
        Ok(n)
    }
}
