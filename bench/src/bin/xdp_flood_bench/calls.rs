//! SIPp calls through `sipedge run` from the allow-listed address of namespace A: with its XDP
//! filter attached to the receiving veth (native mode), alone and while the flood from unknown
//! addresses runs; then with XDP off (`[xdp]` without an interface: the same policy in user
//! space) under the same flood. Per phase: calls offered and failed, and sipedge's user-space
//! CPU (utime + stime of its process, from `/proc/PID/stat`).
//!
//! sipedge and the SIPp UAS run in namespace B (the UAS on B's address, port [`UAS_PORT`], so
//! sipedge's forwards to it stay on B's loopback); the UAC runs in namespace A.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use ebpf::Reason;

use super::{ADDR_A, ADDR_B, Args, IF_B, NS_A, NS_B, SIP_PORT, TICKS_PER_S, flood};

/// Port of the SIPp UAS (the PBX) in namespace B.
const UAS_PORT: u16 = 5070;
/// Port of the SIPp UAC (the carrier) in namespace A.
const UAC_PORT: u16 = 5080;
/// The DID the calls dial.
const DID: &str = "+15551230000";
/// How long sipedge may take to say it listens.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound on one SIPp UAC run beyond its planned length, seconds.
const UAC_SLACK_S: f64 = 30.0;
/// Delay for SIPp's UAS to bind before calls start.
const UAS_SETTLE: Duration = Duration::from_millis(500);

/// A child killed by its PID on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One phase's figures.
pub(crate) struct CallsRow {
    /// What ran.
    pub(crate) label: &'static str,
    pub(crate) offered: u64,
    pub(crate) successful: u64,
    pub(crate) failed: u64,
    /// Seconds the UAC ran.
    pub(crate) seconds: f64,
    /// sipedge's utime + stime over the phase, seconds.
    pub(crate) cpu_s: f64,
    /// Flood frames sent during the phase, and dropped in XDP as unknown (0 with XDP off).
    pub(crate) flood_sent: u64,
    pub(crate) flood_dropped: u64,
}

fn config(dir: &Path, xdp: bool) -> anyhow::Result<PathBuf> {
    let interface = if xdp { format!("interface = \"{IF_B}\"") } else { String::new() };
    let text = format!(
        r#"
[edge]
listen = ["udp:{ADDR_B}:{SIP_PORT}"]
workers = 1
[control]
db = "sipedge.db"
api = "127.0.0.1:0"
[health]
enabled = false
[xdp]
{interface}
mode = "native"
unknown_sources = "drop"
[[trunk]]
name = "carrier"
sources = ["{ADDR_A}/32"]
cps = 100000
max_calls = 100000
[[target]]
name = "pbx"
uris = ["sip:{ADDR_B}:{UAS_PORT}"]
[[did]]
number = "{DID}"
target = "pbx"
"#
    );
    let path = dir.join("sipedge.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Starts sipedge in namespace B (with XDP or without) and waits for its `listening` line
/// (which names the filter).
fn start_sipedge(dir: &Path, xdp: bool) -> anyhow::Result<(Killed, String)> {
    let dir = dir.join(if xdp { "xdp" } else { "user" });
    std::fs::create_dir_all(&dir)?;
    let bin = std::env::current_exe()?.with_file_name("sipedge");
    ensure!(bin.is_file(), "{} not built (cargo build --release -p edge)", bin.display());
    let mut child = Command::new("nsenter")
        .arg(format!("--net=/var/run/netns/{NS_B}"))
        .arg(&bin)
        .args(["run", "--config"])
        .arg(config(&dir, xdp)?)
        .current_dir(&dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("spawn sipedge")?;
    let stdout = child.stdout.take().context("sipedge stdout")?;
    let child = Killed(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let line = rx.recv_timeout(START_TIMEOUT).context("sipedge did not say it listens")?;
    ensure!(line.contains("listening"), "unexpected first line from sipedge: {line}");
    Ok((child, line))
}

/// utime + stime of a process, seconds.
fn process_cpu_s(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name in parentheses: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').context("/proc/PID/stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> anyhow::Result<u64> { Ok(fields.get(n - 3).context("stat field")?.parse()?) };
    Ok((field(14)? + field(15)?) as f64 / TICKS_PER_S)
}

/// Runs the SIPp UAC in namespace A: `calls` calls at `rate`/s. Returns (successful, failed).
fn uac(dir: &Path, calls: u64, rate: u32) -> anyhow::Result<(u64, u64)> {
    let stats = dir.join(format!("uac-{}.csv", Instant::now().elapsed().as_nanos()));
    let limit = calls as f64 / f64::from(rate.max(1)) + UAC_SLACK_S;
    let status = Command::new("ip")
        .args(["netns", "exec", NS_A, "sipp", "-sn", "uac", &format!("{ADDR_B}:{SIP_PORT}")])
        .args(["-i", ADDR_A, "-p", &UAC_PORT.to_string(), "-s", DID])
        .args(["-m", &calls.to_string(), "-r", &rate.to_string()])
        .args(["-timeout", &format!("{limit:.0}s"), "-nostdin", "-trace_stat", "-stf"])
        .arg(&stats)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("sipp uac")?;
    let text = std::fs::read_to_string(&stats).with_context(|| format!("SIPp stats ({status})"))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(';').collect();
    let last: Vec<&str> = lines.last().unwrap_or_default().split(';').collect();
    let column = |name: &str| -> u64 {
        header
            .iter()
            .position(|h| *h == name)
            .and_then(|i| last.get(i))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok((column("SuccessfulCall(C)"), column("FailedCall(C)")))
}

fn xdp_stats() -> anyhow::Result<ebpf::Stats> {
    Ok(ebpf::open_attached(IF_B)?.stats()?)
}

/// Every phase; `mac` is the receiving veth's (for the flood frames). Returns sipedge's
/// start-up lines and the rows.
pub(crate) fn run(args: &Args, mac: &str) -> anyhow::Result<(Vec<String>, Vec<CallsRow>)> {
    let dir = std::env::temp_dir().join(format!("sxbench-calls-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = all_phases(args, mac, &dir);
    let _ = ebpf::detach(IF_B);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn all_phases(args: &Args, mac: &str, dir: &Path) -> anyhow::Result<(Vec<String>, Vec<CallsRow>)> {
    let _uas = Killed(
        Command::new("ip")
            .args(["netns", "exec", NS_B, "sipp", "-sn", "uas", "-i", ADDR_B, "-p", &UAS_PORT.to_string()])
            .arg("-nostdin")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("sipp uas")?,
    );
    std::thread::sleep(UAS_SETTLE);
    let (mut lines, mut rows) = (Vec::new(), Vec::new());
    {
        let (edge, line) = start_sipedge(dir, true)?;
        lines.push(line);
        rows.push(phase(args, mac, dir, edge.0.id(), "calls alone, XDP", false)?);
        rows.push(phase(args, mac, dir, edge.0.id(), "calls + flood, XDP", true)?);
    }
    // The filter stays attached after sipedge exits (pinned): take it off for the next run.
    ebpf::detach(IF_B)?;
    let (edge, line) = start_sipedge(dir, false)?;
    lines.push(line);
    rows.push(phase(args, mac, dir, edge.0.id(), "calls + flood, XDP off (user-space filter)", true)?);
    Ok((lines, rows))
}

fn phase(
    args: &Args,
    mac: &str,
    dir: &Path,
    pid: u32,
    label: &'static str,
    with_flood: bool,
) -> anyhow::Result<CallsRow> {
    let calls = (f64::from(args.call_rate) * args.seconds).round() as u64;
    eprintln!("sipedge: {label}: {calls} calls at {}/s", args.call_rate);
    let xdp = ebpf::is_attached(IF_B)?;
    let counters =
        || -> anyhow::Result<Option<ebpf::Stats>> { if xdp { Ok(Some(xdp_stats()?)) } else { Ok(None) } };
    let (x0, cpu0, t0) = (counters()?, process_cpu_s(pid)?, Instant::now());
    let (successful, failed, flood_sent) = if with_flood {
        std::thread::scope(|s| -> anyhow::Result<(u64, u64, u64)> {
            let flood = s.spawn(|| flood(args, mac));
            let (ok, failed) = uac(dir, calls, args.call_rate)?;
            let (sent, _secs) = flood.join().map_err(|_| anyhow::anyhow!("flood thread panicked"))??;
            Ok((ok, failed, sent))
        })?
    } else {
        let (ok, failed) = uac(dir, calls, args.call_rate)?;
        (ok, failed, 0)
    };
    let (x1, cpu1, secs) = (counters()?, process_cpu_s(pid)?, t0.elapsed().as_secs_f64());
    let flood_dropped = match (x0, x1) {
        (Some(a), Some(b)) => b.packets_since(&a).get(Reason::DropUnknown as usize).copied().unwrap_or(0),
        _ => 0,
    };
    Ok(CallsRow {
        label,
        offered: calls,
        successful,
        failed,
        seconds: secs,
        cpu_s: cpu1 - cpu0,
        flood_sent,
        flood_dropped,
    })
}
