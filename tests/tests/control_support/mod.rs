//! Running `sipedge run` with a control plane on loopback, for the control-plane tests.
#![allow(dead_code, reason = "shared by several test binaries, each using a subset")]
#![allow(clippy::unwrap_used, reason = "test support: a failure here is a failed test")]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Longest wait for the API to come up.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A temporary directory, removed on drop.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> Self {
        let n = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let dir = std::env::temp_dir().join(format!("sipedge-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A loopback port that was free a moment ago.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Writes a configuration with one trunk, targets `pbx1`/`pbx2` and one DID; returns its path.
pub(crate) fn write_config(dir: &Path, api: SocketAddr) -> PathBuf {
    let path = dir.join("sipedge.toml");
    let text = format!(
        r#"
[control]
api = "{api}"
db = "{}"

[[trunk]]
name = "carrier-a"
sources = ["203.0.113.0/24"]

[[target]]
name = "pbx1"
uris = ["sip:127.0.0.1:5080"]

[[target]]
name = "pbx2"
uris = ["sip:127.0.0.1:5081"]

[[did]]
number = "+15551230000"
target = "pbx1"
"#,
        dir.join("store.db").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// A running `sipedge run`, killed (SIGKILL) and reaped on drop. Its stdout goes to a file.
pub(crate) struct Sipedge {
    pub(crate) child: Child,
    pub(crate) api: SocketAddr,
    stdout: PathBuf,
}

impl Sipedge {
    /// Starts `sipedge run --config CONFIG` (stdout to `stdout`) and waits until its API accepts
    /// connections.
    pub(crate) fn start(config: &Path, api: SocketAddr, stdout: &Path) -> Self {
        let mut child = Command::new(tests::sipedge_bin())
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::from(std::fs::File::create(stdout).unwrap()))
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + START_TIMEOUT;
        while TcpStream::connect(api).is_err() {
            assert!(Instant::now() < deadline, "the API at {api} did not come up");
            if let Some(status) = child.try_wait().unwrap() {
                panic!("sipedge exited early: {status}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, api, stdout: stdout.to_path_buf() }
    }

    /// What the process printed on stdout so far (complete once it is killed).
    pub(crate) fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// Kills with SIGKILL (no clean-up of any kind) and reaps.
    pub(crate) fn kill9(&mut self) {
        // SAFETY: kill(2) on our own child's PID, which is not reaped yet (we reap below).
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGKILL) };
        assert_eq!(rc, 0, "kill -9 {}", self.child.id());
        let _ = self.child.wait();
    }
}

impl Drop for Sipedge {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.kill9();
        }
    }
}

/// A blocking HTTP client that returns every status as a value.
pub(crate) fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).max_idle_connections(0).build().into()
}

/// GET with the bearer token: (status, body).
pub(crate) fn get(api: SocketAddr, token: &str, path: &str) -> (u16, String) {
    let mut resp = agent()
        .get(&format!("http://{api}{path}"))
        .header("authorization", &format!("Bearer {token}"))
        .call()
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_to_string().unwrap())
}
