//! The engine with the packet filter's policy in user space (XDP off): blocklisted and unknown
//! sources are dropped before parsing, with no reply; allow-listed trunk members and targets
//! make their calls; the filter's lists follow the store's snapshots through `FilterSync`.
#![allow(clippy::unwrap_used, reason = "test harness helpers: a panic is a failed test")]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use control::config::Config;
use control::policy::{Blocked, Policy as Snapshot};
use ebpf::Reason;
use ebpf::policy::Unknown;
use ebpf::userspace::UserspaceFilter;
use edge::filter::sync::{ActiveFilter, FilterSync};
use edge::guard::{Guard, Prefilter};
use edge::proxy::{Engine, EngineConfig, Sink, WorkerState};
use edge::route::Router;

const CONFIG: &str = r#"
[[trunk]]
name = "carrier"
sources = ["192.0.2.0/24"]
[[target]]
name = "pbx"
uris = ["sip:198.51.100.10:5060"]
[[did]]
number = "+15551230000"
target = "pbx"
"#;

const CARRIER: &str = "192.0.2.7:5060";
const BLOCKED: &str = "192.0.2.66:5060";
const STRANGER: &str = "203.0.113.9:5060";
const PBX: &str = "198.51.100.10:5060";

#[derive(Default)]
struct Recorder {
    sent: Vec<(SocketAddr, String)>,
}

impl Sink for Recorder {
    fn local(&self, _listen: usize) -> Option<SocketAddr> {
        "203.0.113.1:5060".parse().ok()
    }

    fn send_with(
        &mut self,
        dest: SocketAddr,
        _listen: usize,
        write: &mut dyn FnMut(&mut [u8]) -> Option<usize>,
    ) -> bool {
        let mut buf = vec![0u8; 65_535];
        let Some(n) = write(&mut buf) else { return false };
        self.sent.push((dest, String::from_utf8_lossy(&buf[..n]).into_owned()));
        true
    }
}

struct Harness {
    engine: Engine,
    prefilter: Arc<Prefilter>,
    sync: FilterSync,
    config: Config,
    worker: WorkerState,
    sink: Recorder,
    now: Instant,
}

impl Harness {
    fn new(unknown: Unknown) -> Self {
        let config = Config::from_toml(CONFIG).unwrap();
        let guard = Guard::from_config(&config).unwrap();
        let router = Arc::new(Router::from_config(&config).unwrap());
        let policy = ebpf::Policy { unknown, ..edge::filter::policy_of(&config) };
        let filter = Arc::new(UserspaceFilter::new(policy).unwrap());
        let prefilter = Arc::new(Prefilter::new(Arc::clone(&filter)));
        let engine =
            Engine::new(guard, router, EngineConfig::default()).with_prefilter(Arc::clone(&prefilter));
        let sync = FilterSync::new(ActiveFilter::Userspace(Arc::clone(&prefilter)));
        let now = Instant::now();
        Self {
            engine,
            prefilter,
            sync,
            config,
            worker: WorkerState::new(0, now),
            sink: Recorder::default(),
            now,
        }
    }

    fn publish(&mut self, blocklist: Vec<Blocked>) {
        let snapshot = Snapshot { version: 1, config: self.config.clone(), blocklist };
        self.sync.apply(&snapshot).unwrap();
    }

    fn recv(&mut self, from: &str, msg: &str) -> Vec<(SocketAddr, String)> {
        let src = from.parse().unwrap();
        self.engine.on_datagram(&mut self.worker, self.now, src, 0, msg.as_bytes(), &mut self.sink);
        std::mem::take(&mut self.sink.sent)
    }

    fn count(&self, r: Reason) -> u64 {
        self.prefilter.stats().get(r).packets
    }
}

fn invite(from: &str, branch: &str, user_agent: &str) -> String {
    let host = from.split(':').next().unwrap();
    format!(
        "INVITE sip:+15551230000@203.0.113.1:5060;user=phone SIP/2.0\r\n\
         Via: SIP/2.0/UDP {from};branch={branch}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:+442079460000@{host}>;tag=caller1\r\n\
         To: <sip:+15551230000@203.0.113.1>\r\n\
         Call-ID: {branch}@{host}\r\n\
         CSeq: 1 INVITE\r\n\
         User-Agent: {user_agent}\r\n\
         Contact: <sip:caller@{from}>\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// A response from the PBX to the request the edge forwarded.
fn answer(forwarded: &str, code: u16) -> String {
    let mut out = format!("SIP/2.0 {code} OK\r\n");
    for line in forwarded.lines() {
        let l = line.to_ascii_lowercase();
        if ["via:", "from:", "call-id:", "cseq:", "record-route:"].iter().any(|h| l.starts_with(h)) {
            out.push_str(line);
            out.push_str("\r\n");
        } else if l.starts_with("to:") {
            out.push_str(&format!("{line};tag=pbx1\r\n"));
        }
    }
    out.push_str("Contact: <sip:pbx@198.51.100.10:5060>\r\nContent-Length: 0\r\n\r\n");
    out
}

#[test]
fn blocklisted_and_unknown_sources_get_nothing_and_the_trunk_gets_its_call() {
    let mut h = Harness::new(Unknown::Drop);
    h.publish(vec![Blocked { cidr: "192.0.2.66/32".parse().unwrap(), expires_unix: None }]);

    let out = h.recv(CARRIER, &invite(CARRIER, "z9hG4bK-a1", "carrier-sbc"));
    let forwarded = out.iter().find(|(to, _)| *to == PBX.parse().unwrap()).expect("INVITE forwarded");
    assert!(out.iter().any(|(to, m)| *to == CARRIER.parse().unwrap() && m.starts_with("SIP/2.0 100")));
    // The target (not in any trunk) answers: allow-listed as a target, its 200 goes upstream.
    let out = h.recv(PBX, &answer(&forwarded.1, 200));
    assert!(
        out.iter().any(|(to, m)| *to == CARRIER.parse().unwrap() && m.starts_with("SIP/2.0 200")),
        "{out:?}"
    );

    let parsed_before = h.engine.counters().requests.load(Ordering::Relaxed);
    assert!(h.recv(BLOCKED, &invite(BLOCKED, "z9hG4bK-b1", "carrier-sbc")).is_empty(), "blocked: no reply");
    assert!(h.recv(BLOCKED, "garbage\r\n\r\n").is_empty(), "blocked: not even a 400");
    assert!(h.recv(STRANGER, &invite(STRANGER, "z9hG4bK-s1", "carrier-sbc")).is_empty(), "unknown: no reply");
    assert_eq!(h.engine.counters().requests.load(Ordering::Relaxed), parsed_before, "dropped before parsing");
    assert_eq!(h.engine.counters().malformed.load(Ordering::Relaxed), 0);
    assert_eq!((h.count(Reason::DropBlock), h.count(Reason::DropUnknown)), (2, 1));
    assert_eq!(h.count(Reason::PassAllow), 2, "the carrier's INVITE and the PBX's 200");

    // The store unblocks it: the next snapshot applies, the trunk member calls again.
    h.publish(Vec::new());
    let out = h.recv(BLOCKED, &invite(BLOCKED, "z9hG4bK-b2", "carrier-sbc"));
    assert!(out.iter().any(|(to, _)| *to == PBX.parse().unwrap()), "unblocked: forwarded");

    // A trunk added in the store: its source passes the filter from the next snapshot on.
    let allowed = h.count(Reason::PassAllow);
    h.config.trunks.push(control::config::Trunk {
        name: "late".into(),
        sources: vec!["203.0.113.0/24".parse().unwrap()],
        ..h.config.trunks[0].clone()
    });
    h.publish(Vec::new());
    h.recv(STRANGER, &invite(STRANGER, "z9hG4bK-s2", "carrier-sbc"));
    assert_eq!(h.count(Reason::PassAllow), allowed + 1, "the new trunk's source is allow-listed");
    assert_eq!(h.count(Reason::DropUnknown), 1, "no longer dropped as unknown");
}

#[test]
fn a_block_with_a_deadline_ends_and_the_sweep_removes_it() {
    let mut h = Harness::new(Unknown::Drop);
    let unix_now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    h.publish(vec![
        Blocked { cidr: "192.0.2.66/32".parse().unwrap(), expires_unix: Some(unix_now + 2) },
        Blocked { cidr: "192.0.2.67/32".parse().unwrap(), expires_unix: Some(unix_now - 1) },
    ]);
    assert_eq!(h.prefilter.filter().blocked().len(), 1, "an entry already over is not applied");
    assert!(h.recv(BLOCKED, &invite(BLOCKED, "z9hG4bK-t1", "x")).is_empty());
    h.now += Duration::from_secs(3);
    assert!(!h.recv(BLOCKED, &invite(BLOCKED, "z9hG4bK-t2", "x")).is_empty(), "past its deadline");
    // The sweep runs on the real clock: the deadline is at most 2 s away.
    std::thread::sleep(Duration::from_millis(2_100));
    h.sync.sweep().unwrap();
    assert!(h.prefilter.filter().blocked().is_empty(), "swept");
}

#[test]
fn unknown_sources_under_rate_limit_get_their_bucket_and_scanners_are_dropped() {
    let mut h = Harness::new(Unknown::RateLimit);
    h.publish(Vec::new());
    // Default bucket: burst 20. Strangers pass the filter, then the engine ignores them (not in
    // a trunk): still no reply.
    for i in 0..25 {
        assert!(h.recv(STRANGER, &invite(STRANGER, &format!("z9hG4bK-r{i}"), "x")).is_empty());
    }
    assert_eq!((h.count(Reason::PassRate), h.count(Reason::DropRateSource)), (20, 5));
    let scanner = "203.0.113.10:5060";
    assert!(h.recv(scanner, &invite(scanner, "z9hG4bK-f1", "friendly-scanner")).is_empty());
    assert_eq!(h.count(Reason::DropScanner), 1);
}
