//! Real processes for end-to-end tests: the `sipedge` binary on a configuration, and SIPp
//! user agents. Every process is killed by PID when its handle drops; every run is bounded by
//! a timeout.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::{sipedge_bin, skip, workspace_root};

/// How long `sipedge run` may take to say it listens.
const EDGE_START_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest a SIPp UAC run may take, in seconds (also its own `-timeout`).
const UAC_TIMEOUT_SECS: u64 = 60;

/// The `[edge]` section of a test edge on loopback: one UDP listener on a port the kernel picks
/// (`Edge::start` reads it from the log) and two workers. More `[edge]` keys may follow it.
pub const LOOPBACK_EDGE: &str = "[edge]\nlisten = [\"udp:127.0.0.1:0\"]\nworkers = 2\n";

/// The `[control]` and `[health]` sections of a test edge: the store in the edge's working
/// directory, the API on a loopback port the kernel picks, and no OPTIONS probes (SIPp's
/// built-in `uas` cannot answer them).
pub const CONTROL_WITHOUT_PROBES: &str =
    "[control]\ndb = \"sipedge.db\"\napi = \"127.0.0.1:0\"\n[health]\nenabled = false\n";

/// A free UDP port on 127.0.0.1 (bound then released: good enough for tests).
pub fn free_udp_port() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind an ephemeral port");
    s.local_addr().expect("local address").port()
}

/// True when `sipp` is installed; otherwise skips loudly (and fails under CI=true).
pub fn have_sipp(test: &str) -> bool {
    let ok = Command::new("sipp").arg("-v").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
    ok || !skip(test, "sipp is not installed (scripts/setup.sh installs it)")
}

/// A SIPp scenario file of the repository (`scripts/sipp/NAME`).
pub fn scenario(name: &str) -> PathBuf {
    workspace_root().join("scripts/sipp").join(name)
}

/// A running `sipedge run --config`.
#[derive(Debug)]
pub struct Edge {
    child: Child,
    /// The UDP address it listens on.
    pub addr: SocketAddr,
    /// The folder holding its configuration.
    pub dir: tempfile::TempDir,
    /// The control API's address.
    pub api: Option<SocketAddr>,
    /// The admin token printed at the first start of a new store.
    pub token: Option<String>,
}

impl Edge {
    /// Starts sipedge on `config` (TOML) and waits for its `listening` line.
    pub fn start(config: &str) -> Edge {
        Self::start_with(config, &[])
    }

    /// Like [`Edge::start`], with sipedge run through `launcher` (e.g. `nsenter --net=PATH`).
    pub fn start_with(config: &str, launcher: &[&str]) -> Edge {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sipedge.toml");
        std::fs::write(&path, config).expect("write config");
        let mut cmd = match launcher.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(sipedge_bin());
                c
            }
            None => Command::new(sipedge_bin()),
        };
        let mut child = cmd
            .args(["run", "--config"])
            .arg(&path)
            .current_dir(dir.path())
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn sipedge");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let line = match rx.recv_timeout(EDGE_START_TIMEOUT) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("sipedge did not say it listens within {EDGE_START_TIMEOUT:?}");
            }
        };
        let addr = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("udp:"))
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line from sipedge: {line}"));
        let api = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("http://"))
            .and_then(|a| a.trim_end_matches(')').parse().ok());
        let token = rx
            .recv_timeout(Duration::from_secs(1))
            .ok()
            .filter(|l| l.starts_with("admin API token"))
            .and_then(|l| l.rsplit(' ').next().map(str::to_owned));
        Edge { child, addr, dir, api, token }
    }

    /// Calls the control API with the admin token: `(status, body)`. `body` is sent as JSON.
    pub fn api(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        let agent: ureq::Agent =
            ureq::Agent::config_builder().http_status_as_error(false).max_idle_connections(0).build().into();
        let url = format!("http://{}{path}", self.api.expect("sipedge printed its API address"));
        let auth = format!("Bearer {}", self.token.as_deref().expect("a new store printed its admin token"));
        let resp = match (method, body) {
            ("GET", _) => agent.get(&url).header("authorization", &auth).call(),
            ("DELETE", _) => agent.delete(&url).header("authorization", &auth).call(),
            ("PUT", Some(b)) => agent
                .put(&url)
                .header("authorization", &auth)
                .header("content-type", "application/json")
                .send(b),
            ("POST", Some(b)) => agent
                .post(&url)
                .header("authorization", &auth)
                .header("content-type", "application/json")
                .send(b),
            other => panic!("unsupported API call {other:?}"),
        };
        let mut resp = resp.expect("API reachable");
        let status = resp.status().as_u16();
        (status, resp.body_mut().read_to_string().unwrap_or_default())
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A SIPp process in the background (a UAS), killed on drop.
#[derive(Debug)]
pub struct Sipp {
    child: Child,
}

impl Drop for Sipp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Which scenario SIPp runs.
#[derive(Debug, Clone, Copy)]
pub enum Scenario<'a> {
    /// A built-in one (`uac`, `uas`).
    Builtin(&'a str),
    /// A file of `scripts/sipp/`.
    File(&'a str),
}

impl Scenario<'_> {
    fn args(&self, cmd: &mut Command) {
        match self {
            Scenario::Builtin(name) => cmd.args(["-sn", name]),
            Scenario::File(name) => cmd.arg("-sf").arg(scenario(name)),
        };
    }
}

/// Starts a SIPp UAS on `ip:port`.
pub fn uas(scenario: Scenario<'_>, ip: &str, port: u16) -> Sipp {
    let mut cmd = Command::new("sipp");
    scenario.args(&mut cmd);
    cmd.args(["-i", ip, "-p", &port.to_string(), "-nostdin"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = cmd.spawn().expect("spawn sipp uas");
    // SIPp binds within milliseconds; an INVITE that still beats it is retransmitted.
    std::thread::sleep(Duration::from_millis(300));
    Sipp { child }
}

/// The outcome of a SIPp run (a UAC's, or a counted UAS's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UacResult {
    /// SIPp's exit status (0: every call succeeded).
    pub exit: i32,
    /// Calls that followed the scenario to its end.
    pub successful: u64,
    /// Calls that did not.
    pub failed: u64,
}

/// Runs a SIPp UAC against `target` from `ip:port`: `calls` calls at `rate` per second, dialling
/// `service`; `extra` arguments are passed on. Bounded by [`UAC_TIMEOUT_SECS`].
#[allow(clippy::too_many_arguments, reason = "one argument per SIPp command-line option")]
pub fn uac(
    scenario: Scenario<'_>,
    target: SocketAddr,
    ip: &str,
    port: u16,
    service: &str,
    calls: u32,
    rate: u32,
    extra: &[&str],
) -> UacResult {
    let dir = tempfile::tempdir().expect("temp dir");
    let stats = dir.path().join("stats.csv");
    let mut cmd = Command::new("sipp");
    scenario.args(&mut cmd);
    cmd.arg(target.to_string())
        .args(["-i", ip, "-p", &port.to_string(), "-s", service])
        .args(["-m", &calls.to_string(), "-r", &rate.to_string()])
        .args(["-timeout", &format!("{UAC_TIMEOUT_SECS}s"), "-timeout_error", "-nostdin"])
        .arg("-trace_stat")
        .arg("-stf")
        .arg(&stats)
        .args(extra)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let status = cmd.status().expect("run sipp uac");
    let (successful, failed) = read_stats(&stats);
    UacResult { exit: status.code().unwrap_or(-1), successful, failed }
}

/// A SIPp process in the background that exits by itself after `-m` calls, with its statistics;
/// see [`SippRun::finish`]. Killed on drop.
#[derive(Debug)]
pub struct SippRun {
    child: Child,
    dir: tempfile::TempDir,
}

/// How often [`SippRun::finish`] looks whether SIPp has exited.
const EXIT_POLL: Duration = Duration::from_millis(50);

/// Starts SIPp on `scenario` from `ip:port` for `calls` calls, with `args` (for a UAC: the
/// target, `-s`, ...), bounded by `timeout` (its own `-timeout`, a failure).
pub fn spawn_counted(
    scenario: Scenario<'_>,
    ip: &str,
    port: u16,
    calls: u32,
    timeout: Duration,
    args: &[&str],
) -> SippRun {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cmd = Command::new("sipp");
    scenario.args(&mut cmd);
    cmd.args(args)
        .args(["-i", ip, "-p", &port.to_string(), "-m", &calls.to_string()])
        .args(["-timeout", &format!("{}s", timeout.as_secs().max(1)), "-timeout_error", "-nostdin"])
        .arg("-trace_stat")
        .arg("-stf")
        .arg(dir.path().join("stats.csv"))
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = cmd.spawn().expect("spawn sipp");
    SippRun { child, dir }
}

impl SippRun {
    /// Waits for SIPp to exit, at most `within` (then kills it: exit -1), and reads its counts.
    pub fn finish(mut self, within: Duration) -> UacResult {
        let deadline = std::time::Instant::now() + within;
        let exit = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status.code().unwrap_or(-1),
                Ok(None) if std::time::Instant::now() < deadline => std::thread::sleep(EXIT_POLL),
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break -1;
                }
            }
        };
        let (successful, failed) = read_stats(&self.dir.path().join("stats.csv"));
        UacResult { exit, successful, failed }
    }
}

impl Drop for SippRun {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Cumulative successful and failed calls from SIPp's `-trace_stat` CSV.
fn read_stats(path: &Path) -> (u64, u64) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(';').collect();
    let last: Vec<&str> = lines.last().unwrap_or_default().split(';').collect();
    let column = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .and_then(|i| last.get(i))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (column("SuccessfulCall(C)"), column("FailedCall(C)"))
}
