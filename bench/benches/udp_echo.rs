//! Datagrams per second through `edge::io` on loopback: one echo worker, one client thread
//! keeping [`WINDOW`] carrier INVITEs in flight. The client batches (one `sendmmsg` per window,
//! `recvmmsg` for the replies) so that the server, not the client's syscalls, sets the pace.
//! Baseline in the same group: a plain blocking `std::net::UdpSocket` echo thread (one
//! `recv_from` and one `send_to` per datagram). Each server is measured twice: `wall` (wall
//! time) and `server_cpu` (the server thread's own CPU time, from its schedstat).
#![allow(clippy::unwrap_used, reason = "benchmark set-up: a panic aborts the run")]

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use edge::io::{ActiveBackend, Datagram, DatagramHandler, IoBackend, IoConfig, Outbox, Workers, spawn};

/// Datagrams in flight per iteration.
const WINDOW: usize = 64;
/// How long the client waits for one reply before the run is declared broken.
const REPLY_TIMEOUT: Duration = Duration::from_secs(2);
/// Client receive buffer per reply, in bytes (the INVITE is 1469).
const REPLY_BYTES: usize = 2048;

struct Echo;

impl DatagramHandler for Echo {
    fn on_datagram(&mut self, d: Datagram<'_>, out: &mut Outbox<'_>) {
        // A refused send shows up as a missing reply, which stops the benchmark.
        let _ = out.send(d.source, d.listen, d.payload);
    }
}

fn start(backend: IoBackend) -> Workers {
    let cfg = IoConfig { workers: 1, backend, ..IoConfig::new(vec!["127.0.0.1:0".parse().unwrap()]) };
    spawn(&cfg, |_| Echo).unwrap()
}

/// A connected client socket with its batch arrays.
struct Client {
    socket: UdpSocket,
    send_iovs: Vec<libc::iovec>,
    send_hdrs: Vec<libc::mmsghdr>,
    recv_bufs: Vec<u8>,
    recv_iovs: Vec<libc::iovec>,
    recv_hdrs: Vec<libc::mmsghdr>,
}

impl Client {
    fn new(server: SocketAddr, msg: &[u8]) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.connect(server).unwrap();
        socket.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
        let mut c = Self {
            socket,
            send_iovs: vec![
                libc::iovec { iov_base: msg.as_ptr().cast_mut().cast(), iov_len: msg.len() };
                WINDOW
            ],
            send_hdrs: Vec::with_capacity(WINDOW),
            recv_bufs: vec![0; WINDOW * REPLY_BYTES],
            recv_iovs: Vec::with_capacity(WINDOW),
            recv_hdrs: Vec::with_capacity(WINDOW),
        };
        let bufs = c.recv_bufs.as_mut_ptr();
        for i in 0..WINDOW {
            c.recv_iovs.push(libc::iovec {
                iov_base: bufs.wrapping_add(i * REPLY_BYTES).cast(),
                iov_len: REPLY_BYTES,
            });
        }
        for i in 0..WINDOW {
            // SAFETY: mmsghdr is a plain C struct; all-zero is valid (null pointers, zero lengths).
            let mut send: libc::mmsghdr = unsafe { std::mem::zeroed() };
            send.msg_hdr.msg_iov = &raw mut c.send_iovs[i];
            send.msg_hdr.msg_iovlen = 1;
            c.send_hdrs.push(send);
            // SAFETY: as above.
            let mut recv: libc::mmsghdr = unsafe { std::mem::zeroed() };
            recv.msg_hdr.msg_iov = &raw mut c.recv_iovs[i];
            recv.msg_hdr.msg_iovlen = 1;
            c.recv_hdrs.push(recv);
        }
        c
    }

    /// Sends a window and waits for all of it to come back.
    fn round_trip_window(&mut self) {
        let fd = self.socket.as_raw_fd();
        let mut sent = 0;
        while sent < WINDOW {
            let rest = &mut self.send_hdrs[sent..];
            // SAFETY: the headers point at `send_iovs` and the message, alive for the call.
            let n = unsafe { libc::sendmmsg(fd, rest.as_mut_ptr(), rest.len() as u32, 0) };
            assert!(n > 0, "sendmmsg: {}", std::io::Error::last_os_error());
            sent += n as usize;
        }
        let mut got = 0;
        while got < WINDOW {
            let rest = &mut self.recv_hdrs[got..];
            // SAFETY: the headers point at `recv_iovs` over `recv_bufs`, alive for the call.
            let n = unsafe {
                libc::recvmmsg(
                    fd,
                    rest.as_mut_ptr(),
                    rest.len() as u32,
                    libc::MSG_WAITFORONE,
                    std::ptr::null_mut(),
                )
            };
            assert!(n > 0, "a reply per datagram: {}", std::io::Error::last_os_error());
            got += n as usize;
        }
    }
}

/// The kernel's id of this process's thread named `name` (its `comm`).
fn find_thread(name: &str) -> u32 {
    let tasks = std::fs::read_dir("/proc/self/task").unwrap();
    let mut found = tasks.filter_map(|t| {
        let t = t.ok()?;
        let comm = std::fs::read_to_string(t.path().join("comm")).ok()?;
        (comm.trim_end() == name).then(|| t.file_name().to_str()?.parse().ok())?
    });
    let tid = found.next().unwrap_or_else(|| panic!("no thread named {name}"));
    assert!(found.next().is_none(), "two threads named {name}");
    tid
}

/// Time thread `tid` has spent on a CPU (`/proc/self/task/TID/schedstat`, nanoseconds).
fn thread_cpu(tid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).unwrap();
    Duration::from_nanos(stat.split_whitespace().next().unwrap().parse().unwrap())
}

/// Two measurements of one server: `NAME/wall` (wall time per window: datagrams per second)
/// and `NAME/server_cpu` (the server thread's CPU time per window: datagrams per CPU-second of
/// the server, less sensitive to a loaded machine).
fn measure(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    server: SocketAddr,
    thread: &str,
    msg: &[u8],
) {
    let mut client = Client::new(server, msg);
    group.bench_function(format!("{name}/wall"), |b| b.iter(|| client.round_trip_window()));
    let tid = find_thread(thread);
    group.bench_function(format!("{name}/server_cpu"), |b| {
        b.iter_custom(|iters| {
            let before = thread_cpu(tid);
            for _ in 0..iters {
                client.round_trip_window();
            }
            thread_cpu(tid).saturating_sub(before)
        })
    });
}

fn bench_echo(c: &mut Criterion) {
    let msg = std::fs::read(bench::corpus_dir().join("invite-carrier.sip")).unwrap();
    let mut group = c.benchmark_group("udp_echo");
    group.throughput(Throughput::Elements(WINDOW as u64));
    group.measurement_time(Duration::from_secs(5));

    // Baseline: std sockets, one syscall per datagram each way.
    let baseline = UdpSocket::bind("127.0.0.1:0").unwrap();
    let baseline_addr = baseline.local_addr().unwrap();
    baseline.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let echo_thread = {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::Builder::new()
            .name("std-echo".into())
            .spawn(move || {
                let mut buf = vec![0; 65_536];
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Ok((n, from)) = baseline.recv_from(&mut buf) {
                        let _ = baseline.send_to(&buf[..n], from);
                    }
                }
            })
            .unwrap()
    };
    measure(&mut group, "std_blocking_baseline", baseline_addr, "std-echo", &msg);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    echo_thread.join().unwrap();

    let portable = start(IoBackend::Portable);
    measure(&mut group, "edge_io_portable", portable.local_addrs()[0], "sipedge-io-0", &msg);
    portable.shutdown().unwrap();

    let uring = start(IoBackend::Uring);
    if uring.backend() == &ActiveBackend::Uring {
        measure(&mut group, "edge_io_uring", uring.local_addrs()[0], "sipedge-io-0", &msg);
    } else {
        eprintln!("SKIPPED edge_io_uring: {}", uring.backend());
    }
    uring.shutdown().unwrap();
    group.finish();
}

criterion_group!(benches, bench_echo);
criterion_main!(benches);
