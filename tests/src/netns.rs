//! Network namespaces for the XDP tests: two namespaces joined by a veth pair, commands run
//! checked, and threads that enter a namespace.

use std::os::fd::AsRawFd;
use std::process::{Command, Output, Stdio};

/// Two namespaces (`a`, `b`) and a veth pair (`if_a` in `a`, `if_b` in `b`); deleted, with the
/// XDP filter's pins on `if_b`, on drop.
#[derive(Debug)]
pub struct Topology {
    /// Namespace of the sending side.
    pub a: String,
    /// Namespace of the receiving side (where the filter is attached).
    pub b: String,
    /// The veth end in `a`.
    pub if_a: String,
    /// The veth end in `b`.
    pub if_b: String,
}

impl Topology {
    /// Creates namespaces `s{tag}a<pid>`/`s{tag}b<pid>` joined by veth `{tag}a<pid>`/`{tag}b<pid>`,
    /// with `a_addrs` (as /24) on the `a` side and `b_addrs` on the `b` side, every link and
    /// both loopbacks up. `tag` keeps the names of tests running at once apart.
    pub fn create(tag: &str, a_addrs: &[&str], b_addrs: &[&str]) -> Topology {
        let id = std::process::id() % 100_000;
        let t = Topology {
            a: format!("s{tag}a{id}"),
            b: format!("s{tag}b{id}"),
            if_a: format!("{tag}a{id}"),
            if_b: format!("{tag}b{id}"),
        };
        let (a, b, ia, ib) = (t.a.as_str(), t.b.as_str(), t.if_a.as_str(), t.if_b.as_str());
        ip(&["netns", "add", a]);
        ip(&["netns", "add", b]);
        ip(&["link", "add", ia, "netns", a, "type", "veth", "peer", "name", ib, "netns", b]);
        for (ns, dev, addrs) in [(a, ia, a_addrs), (b, ib, b_addrs)] {
            for addr in addrs {
                ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev]);
            }
        }
        for (ns, dev) in [(a, ia), (b, ib), (a, "lo"), (b, "lo")] {
            ip(&["-n", ns, "link", "set", dev, "up"]);
        }
        t
    }

    /// The MAC address of `if_b`.
    pub fn mac_b(&self) -> String {
        let out = run(Command::new("ip").args(["-n", &self.b, "-br", "link", "show", &self.if_b]));
        String::from_utf8_lossy(&out.stdout).split_whitespace().nth(2).expect("MAC of B").to_owned()
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        let _ = ebpf::detach(&self.if_b);
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// `ip ARGS`, which must succeed.
pub fn ip(args: &[&str]) {
    let _ = run(Command::new("ip").args(args));
}

/// Runs `cmd`, panicking with its stderr unless it succeeds.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// Runs `f` on a thread that entered namespace `ns` (sockets made there stay there; processes
/// spawned there start in it).
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    let path = format!("/var/run/netns/{ns}");
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = std::fs::File::open(&path).expect("netns file");
            // SAFETY: setns on a valid namespace fd; it changes only this (scoped) thread.
            let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns {path}: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("netns thread")
    })
}

/// Why a namespace test cannot run here (not root, or one of `tools` missing), if it can't.
pub fn missing_prerequisite(tools: &[&str]) -> Option<String> {
    if !crate::is_root() {
        return Some("needs root for network namespaces and XDP".into());
    }
    for tool in tools {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Some(format!("{tool} is not installed (scripts/setup.sh)"));
        }
    }
    None
}
