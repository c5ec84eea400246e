//! `edge::io` on loopback, every scenario through both backends. The io_uring variants first
//! check that io_uring works here; where it does not, they skip loudly (and fail under CI=true).
#![allow(clippy::unwrap_used, reason = "test helpers and handlers: a panic is a failed test")]

use std::collections::BTreeSet;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use edge::io::{
    ActiveBackend, Datagram, DatagramHandler, IoBackend, IoConfig, IoError, MIN_DATAGRAM_BYTES, Outbox,
    PortableReason, ProbeError, SHUTDOWN_TIMEOUT, SendError, Workers, probe_uring, spawn,
};

/// Bound on every wait for a reply or a counter.
const WAIT: Duration = Duration::from_secs(5);

/// Answers every datagram with its payload, from the socket it came in on.
struct Echo;

impl DatagramHandler for Echo {
    fn on_datagram(&mut self, d: Datagram<'_>, out: &mut Outbox<'_>) {
        out.send(d.source, d.listen, d.payload).unwrap();
    }
}

fn config(backend: IoBackend, workers: usize, listen: &[&str]) -> IoConfig {
    IoConfig { workers, backend, ..IoConfig::new(listen.iter().map(|a| a.parse().unwrap()).collect()) }
}

/// Starts workers, or skips the test when its backend is io_uring and io_uring is unavailable.
fn start<H: DatagramHandler>(test: &str, cfg: &IoConfig, make: impl Fn(usize) -> H) -> Option<Workers> {
    if cfg.backend == IoBackend::Uring
        && let Err(why) = probe_uring()
        && tests::skip(test, &format!("io_uring unavailable: {why}"))
    {
        return None;
    }
    let workers = spawn(cfg, make).unwrap();
    let want = match cfg.backend {
        IoBackend::Uring => ActiveBackend::Uring,
        IoBackend::Portable => ActiveBackend::Portable { reason: PortableReason::Configured },
    };
    assert_eq!(workers.backend(), &want);
    Some(workers)
}

fn client(family_of: SocketAddr) -> UdpSocket {
    let any: SocketAddr = if family_of.is_ipv4() { "127.0.0.1:0" } else { "[::1]:0" }.parse().unwrap();
    let s = UdpSocket::bind(any).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s
}

/// The next datagram and its source; `Err` when none came within the socket's timeout.
fn try_recv_from(s: &UdpSocket) -> std::io::Result<(Vec<u8>, SocketAddr)> {
    let mut buf = [0; 2048];
    loop {
        match s.recv_from(&mut buf) {
            Ok((n, from)) => return Ok((buf[..n].to_vec(), from)),
            // A socket with a timeout is not restarted after a signal: try again.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

fn recv(s: &UdpSocket) -> Vec<u8> {
    try_recv_from(s).unwrap_or_else(|e| panic!("no reply within {WAIT:?}: {e}")).0
}

/// Waits (bounded) until the summed counters satisfy `cond`.
fn eventually(w: &Workers, what: &str, cond: impl Fn(&edge::io::IoCounters) -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond(&w.counters()) {
        assert!(Instant::now() < deadline, "{what}: counters {:?}", w.counters());
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn ipv6_loopback(test: &str) -> bool {
    UdpSocket::bind("[::1]:0").is_ok() || !tests::skip(test, "no IPv6 loopback")
}

/// Several clients, many datagrams each: every one answered, counters agree.
fn echo_many_clients(backend: IoBackend, test: &str) {
    const CLIENTS: usize = 8;
    const PER_CLIENT: usize = 50;
    let Some(w) = start(test, &config(backend, 2, &["127.0.0.1:0"]), |_| Echo) else { return };
    let server = w.local_addrs()[0];
    let clients: Vec<UdpSocket> = (0..CLIENTS).map(|_| client(server)).collect();
    for (c, s) in clients.iter().enumerate() {
        for i in 0..PER_CLIENT {
            s.send_to(format!("c{c} m{i}").as_bytes(), server).unwrap();
        }
    }
    for (c, s) in clients.iter().enumerate() {
        let got: BTreeSet<Vec<u8>> = (0..PER_CLIENT).map(|_| recv(s)).collect();
        let want: BTreeSet<Vec<u8>> = (0..PER_CLIENT).map(|i| format!("c{c} m{i}").into_bytes()).collect();
        assert_eq!(got, want, "client {c}");
    }
    let total = (CLIENTS * PER_CLIENT) as u64;
    eventually(&w, "all sent", |c| c.tx_datagrams == total);
    let c = w.counters();
    assert_eq!((c.rx_datagrams, c.rx_oversized, c.tx_errors, c.tx_pool_full), (total, 0, 0, 0));
    assert_eq!(c.rx_bytes, c.tx_bytes);
    w.shutdown().unwrap();
}

/// IPv4 and IPv6 listen addresses side by side; each answers from its own address.
fn ipv4_and_ipv6(backend: IoBackend, test: &str) {
    if !ipv6_loopback(test) {
        return;
    }
    /// Answers with the local address the datagram came in on.
    struct WhoAmI;
    impl DatagramHandler for WhoAmI {
        fn on_datagram(&mut self, d: Datagram<'_>, out: &mut Outbox<'_>) {
            assert_eq!(out.local_addr(d.listen), Some(d.local));
            out.send(d.source, d.listen, d.local.to_string().as_bytes()).unwrap();
        }
    }
    let Some(w) = start(test, &config(backend, 1, &["127.0.0.1:0", "[::1]:0"]), |_| WhoAmI) else { return };
    for &server in w.local_addrs() {
        let c = client(server);
        c.send_to(b"who", server).unwrap();
        let (payload, from) = try_recv_from(&c).unwrap();
        assert_eq!(from, server);
        assert_eq!(payload, server.to_string().as_bytes());
    }
    assert_eq!(w.local_addrs()[1].ip(), "::1".parse::<std::net::IpAddr>().unwrap());
    w.shutdown().unwrap();
}

/// `SO_REUSEPORT` spreads flows over the workers: with 64 client flows and 2 workers, each
/// worker receives some (all on one worker: probability 2^-63).
fn workers_share_the_port(backend: IoBackend, test: &str) {
    const FLOWS: usize = 64;
    let Some(w) = start(test, &config(backend, 2, &["127.0.0.1:0"]), |_| Echo) else { return };
    let server = w.local_addrs()[0];
    let clients: Vec<UdpSocket> = (0..FLOWS).map(|_| client(server)).collect();
    for s in &clients {
        s.send_to(b"hi", server).unwrap();
    }
    for s in &clients {
        assert_eq!(recv(s), b"hi");
    }
    let per_worker = w.worker_counters();
    assert_eq!(per_worker.len(), 2);
    assert!(per_worker.iter().all(|c| c.rx_datagrams > 0), "{per_worker:?}");
    assert_eq!(per_worker.iter().map(|c| c.rx_datagrams).sum::<u64>(), FLOWS as u64);
    w.shutdown().unwrap();
}

/// A datagram one byte over the limit is counted and dropped; the next one is served, and one
/// exactly at the limit is accepted.
fn oversized_dropped(backend: IoBackend, test: &str) {
    let cfg = IoConfig { max_datagram_bytes: MIN_DATAGRAM_BYTES, ..config(backend, 1, &["127.0.0.1:0"]) };
    let Some(w) = start(test, &cfg, |_| Echo) else { return };
    let server = w.local_addrs()[0];
    let c = client(server);
    c.send_to(&vec![b'x'; MIN_DATAGRAM_BYTES + 1], server).unwrap();
    c.send_to(b"small", server).unwrap();
    assert_eq!(recv(&c), b"small", "the oversized datagram got no answer");
    c.send_to(&vec![b'y'; MIN_DATAGRAM_BYTES], server).unwrap();
    assert_eq!(recv(&c).len(), MIN_DATAGRAM_BYTES);
    let counters = w.counters();
    assert_eq!((counters.rx_oversized, counters.rx_datagrams), (1, 2));
    w.shutdown().unwrap();
}

/// Arms a timer on the first datagram; sends "tick" to its source when the timer fires.
struct Timer {
    deadline: Option<Instant>,
    reply_to: Option<(SocketAddr, usize)>,
}

impl DatagramHandler for Timer {
    fn on_datagram(&mut self, d: Datagram<'_>, _out: &mut Outbox<'_>) {
        self.deadline = Some(d.now + Duration::from_millis(20));
        self.reply_to = Some((d.source, d.listen));
    }

    fn on_tick(&mut self, now: Instant, out: &mut Outbox<'_>) {
        assert!(self.deadline.is_some_and(|d| d <= now), "ticked before the deadline");
        self.deadline = None;
        if let Some((to, via)) = self.reply_to.take() {
            out.send(to, via, b"tick").unwrap();
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.deadline
    }
}

/// Timers fire through `on_tick`, with no datagram to wake the worker.
fn timer_fires(backend: IoBackend, test: &str) {
    let Some(w) =
        start(test, &config(backend, 1, &["127.0.0.1:0"]), |_| Timer { deadline: None, reply_to: None })
    else {
        return;
    };
    let server = w.local_addrs()[0];
    let c = client(server);
    c.send_to(b"arm", server).unwrap();
    assert_eq!(recv(&c), b"tick");
    assert_eq!(w.counters().ticks, 1);
    w.shutdown().unwrap();
}

/// Answers each datagram with ten copies; the pool has four buffers.
struct Flood {
    refused: u64,
}

impl DatagramHandler for Flood {
    fn on_datagram(&mut self, d: Datagram<'_>, out: &mut Outbox<'_>) {
        for _ in 0..10 {
            match out.send(d.source, d.listen, d.payload) {
                Ok(()) => {}
                Err(SendError::PoolFull) => self.refused += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(self.refused, 6);
    }
}

/// More sends than send buffers: the surplus is refused and counted, the rest sent.
fn pool_refusal_counted(backend: IoBackend, test: &str) {
    let cfg = IoConfig { send_pool_slots: 4, ..config(backend, 1, &["127.0.0.1:0"]) };
    let Some(w) = start(test, &cfg, |_| Flood { refused: 0 }) else { return };
    let server = w.local_addrs()[0];
    let c = client(server);
    c.send_to(b"flood", server).unwrap();
    for _ in 0..4 {
        assert_eq!(recv(&c), b"flood");
    }
    eventually(&w, "four sent", |c| c.tx_datagrams == 4);
    assert_eq!(w.counters().tx_pool_full, 6);
    c.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let fifth = try_recv_from(&c).map(|(p, _)| p).map_err(|e| e.kind());
    assert_eq!(fifth, Err(std::io::ErrorKind::WouldBlock), "a fifth copy was sent");
    w.shutdown().unwrap();
}

/// Shutdown stops and joins every thread (bounded by `SHUTDOWN_TIMEOUT`, an error past it)
/// and releases the port.
fn shutdown_joins(backend: IoBackend, test: &str) {
    let Some(w) = start(test, &config(backend, 3, &["127.0.0.1:0"]), |_| Echo) else { return };
    let server = w.local_addrs()[0];
    w.shutdown().unwrap();
    UdpSocket::bind(server).expect("every worker socket is closed after shutdown");
}

/// Sends a copy to port 0 (the kernel refuses it), then the answer.
struct BadThenGood;

impl DatagramHandler for BadThenGood {
    fn on_datagram(&mut self, d: Datagram<'_>, out: &mut Outbox<'_>) {
        let nowhere = SocketAddr::new(d.source.ip(), 0);
        out.send(nowhere, d.listen, d.payload).unwrap();
        out.send(d.source, d.listen, d.payload).unwrap();
    }
}

/// A send the kernel refuses is counted and costs only itself: the next one in the batch goes.
fn send_error_counted(backend: IoBackend, test: &str) {
    let Some(w) = start(test, &config(backend, 1, &["127.0.0.1:0"]), |_| BadThenGood) else { return };
    let server = w.local_addrs()[0];
    let c = client(server);
    c.send_to(b"answer me", server).unwrap();
    assert_eq!(recv(&c), b"answer me");
    eventually(&w, "one sent, one failed", |c| c.tx_datagrams == 1 && c.tx_errors == 1);
    w.shutdown().unwrap();
}

/// Answers from its worker's private port with its worker index.
struct Private {
    worker: usize,
    shared: usize,
}

impl DatagramHandler for Private {
    fn on_datagram(&mut self, d: Datagram<'_>, out: &mut Outbox<'_>) {
        let via = if d.listen < self.shared { d.listen + self.shared } else { d.listen };
        out.send(d.source, via, self.worker.to_string().as_bytes()).unwrap();
    }
}

/// With private ports, a worker answers from a port only it reads, and every datagram sent
/// to that port, from any client, comes back to that worker.
fn private_ports_bring_replies_home(backend: IoBackend, test: &str) {
    const CLIENTS: usize = 16;
    let cfg = IoConfig { private_ports: true, ..config(backend, 2, &["127.0.0.1:0"]) };
    let Some(w) = start(test, &cfg, |worker| Private { worker, shared: 1 }) else { return };
    let server = w.local_addrs()[0];
    let (payload, private) = try_recv_from(&{
        let c = client(server);
        c.send_to(b"hello", server).unwrap();
        c
    })
    .unwrap();
    let worker: usize = String::from_utf8(payload.clone()).unwrap().parse().unwrap();
    assert_eq!(w.worker_addrs(worker).unwrap(), [server, private]);
    for _ in 0..CLIENTS {
        let c = client(server);
        c.send_to(b"again", private).unwrap();
        assert_eq!(try_recv_from(&c).unwrap(), (payload.clone(), private));
    }
    let per_worker = w.worker_counters();
    assert_eq!(per_worker[worker].rx_datagrams, CLIENTS as u64 + 1);
    assert_eq!(per_worker[1 - worker].rx_datagrams, 0);
    w.shutdown().unwrap();
}

macro_rules! both_backends {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            use super::*;
            #[test]
            fn uring() {
                super::$scenario(IoBackend::Uring, concat!(stringify!($scenario), "::uring"));
            }
            #[test]
            fn portable() {
                super::$scenario(IoBackend::Portable, concat!(stringify!($scenario), "::portable"));
            }
        }
    )*};
}

both_backends!(
    echo_many_clients,
    ipv4_and_ipv6,
    workers_share_the_port,
    oversized_dropped,
    timer_fires,
    pool_refusal_counted,
    send_error_counted,
    private_ports_bring_replies_home,
    shutdown_joins,
);

/// Holds the worker inside the handler on the first datagram until the test says go (or
/// drops its sender).
struct Hold {
    first: bool,
    held: std::sync::mpsc::Sender<()>,
    go: std::sync::mpsc::Receiver<()>,
}

impl DatagramHandler for Hold {
    fn on_datagram(&mut self, d: Datagram<'_>, out: &mut Outbox<'_>) {
        if std::mem::take(&mut self.first) {
            self.held.send(()).unwrap();
            // Returns on "go" or when the test drops its sender (it failed or finished).
            let _ = self.go.recv();
        }
        out.send(d.source, d.listen, d.payload).unwrap();
    }
}

/// io_uring with a one-buffer ring: while the handler holds that buffer, ten more datagrams
/// wait in the socket; receiving them runs the ring dry, the multishot receive ends with
/// ENOBUFS, is re-armed and counted, and every datagram is still answered.
#[test]
fn uring_buffer_ring_dry_rearms() {
    const BURST: usize = 10;
    let cfg = IoConfig { buf_ring_entries: 1, ..config(IoBackend::Uring, 1, &["127.0.0.1:0"]) };
    let (held_tx, held) = std::sync::mpsc::channel();
    let (go, go_rx) = std::sync::mpsc::channel();
    let handler = std::sync::Mutex::new(Some(Hold { first: true, held: held_tx, go: go_rx }));
    let Some(w) = start("uring_buffer_ring_dry_rearms", &cfg, |_| handler.lock().unwrap().take().unwrap())
    else {
        return;
    };
    let server = w.local_addrs()[0];
    let c = client(server);
    c.send_to(b"first", server).unwrap();
    held.recv_timeout(WAIT).unwrap();
    for i in 0..BURST {
        c.send_to(format!("burst {i}").as_bytes(), server).unwrap();
    }
    go.send(()).unwrap();
    let got: BTreeSet<Vec<u8>> = (0..=BURST).map(|_| recv(&c)).collect();
    assert_eq!(got.len(), BURST + 1);
    let counters = w.counters();
    assert!(counters.rx_buf_ring_empty >= 1, "{counters:?}");
    assert!(counters.rx_rearms >= counters.rx_buf_ring_empty, "{counters:?}");
    assert_eq!(counters.rx_datagrams, (BURST + 1) as u64);
    w.shutdown().unwrap();
}

/// Forbids `io_uring_setup` (EPERM) to the calling thread and the threads it starts, as the
/// default seccomp profiles of Docker and containerd do.
fn forbid_io_uring_on_this_thread() {
    let stmt = |code: u32, k: u32, jt: u8, jf: u8| libc::sock_filter { code: code as u16, jt, jf, k };
    let filter = [
        // Load seccomp_data.nr (offset 0).
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0, 0, 0),
        stmt(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, libc::SYS_io_uring_setup as u32, 0, 1),
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32, 0, 0),
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW, 0, 0),
    ];
    let prog = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_ptr().cast_mut() };
    // SAFETY: PR_SET_NO_NEW_PRIVS and PR_SET_SECCOMP change only this thread (and its future
    // children); `prog` points at a live filter for the duration of the call (the kernel copies it).
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        assert_eq!(libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &raw const prog), 0);
    }
}

/// Where seccomp forbids io_uring, asking for it gives the portable backend, with the reason,
/// and the workers serve.
#[test]
fn seccomp_forbidden_uring_falls_back_to_portable() {
    std::thread::spawn(|| {
        forbid_io_uring_on_this_thread();
        let w = spawn(&config(IoBackend::Uring, 2, &["127.0.0.1:0"]), |_| Echo).unwrap();
        match w.backend() {
            ActiveBackend::Portable { reason: PortableReason::UringUnavailable(ProbeError::Setup(why)) } => {
                assert!(why.contains("not permitted"), "{why}");
            }
            other => panic!("expected the portable fallback, got {other}"),
        }
        assert!(w.backend().to_string().starts_with("portable (io_uring unavailable"));
        let server = w.local_addrs()[0];
        let c = client(server);
        c.send_to(b"still served", server).unwrap();
        assert_eq!(recv(&c), b"still served");
        w.shutdown().unwrap();
    })
    .join()
    .unwrap();
}

/// A worker stuck in its handler past `SHUTDOWN_TIMEOUT` makes shutdown return an error on
/// time instead of hanging; released, the worker then ends on its own.
#[test]
fn shutdown_is_bounded_by_a_stuck_handler() {
    let (held_tx, held) = std::sync::mpsc::channel();
    let (go, go_rx) = std::sync::mpsc::channel::<()>();
    let handler = std::sync::Mutex::new(Some(Hold { first: true, held: held_tx, go: go_rx }));
    let cfg = config(IoBackend::Portable, 1, &["127.0.0.1:0"]);
    let w = spawn(&cfg, |_| handler.lock().unwrap().take().unwrap()).unwrap();
    let server = w.local_addrs()[0];
    client(server).send_to(b"hold", server).unwrap();
    held.recv_timeout(WAIT).unwrap();
    let started = Instant::now();
    assert!(matches!(w.shutdown(), Err(IoError::ShutdownTimeout { stuck: 1 })));
    assert!(started.elapsed() < SHUTDOWN_TIMEOUT + WAIT, "shutdown overran its bound");
    go.send(()).unwrap();
}

#[test]
fn uring_probe_passes_here_or_skips() {
    if let Err(why) = probe_uring() {
        let _ = tests::skip("uring_probe_passes_here_or_skips", &why.to_string());
    }
}

#[test]
fn invalid_config_is_refused_before_binding() {
    let cfg = IoConfig { workers: 0, ..config(IoBackend::Portable, 1, &["127.0.0.1:0"]) };
    assert!(matches!(spawn(&cfg, |_| Echo), Err(IoError::InvalidConfig { field: "workers", .. })));
}
