//! Datagrams per second through `edge::io` on loopback: one echo worker, one client thread
//! keeping [`WINDOW`] carrier INVITEs in flight. Baseline in the same group: a plain blocking
//! `std::net::UdpSocket` echo thread (one `recv_from` and one `send_to` per datagram).
#![allow(clippy::unwrap_used, reason = "benchmark set-up: a panic aborts the run")]

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use edge::io::{ActiveBackend, Datagram, DatagramHandler, IoBackend, IoConfig, Outbox, Workers, spawn};

/// Datagrams in flight per iteration.
const WINDOW: usize = 64;
/// How long the client waits for one reply before the run is declared broken.
const REPLY_TIMEOUT: Duration = Duration::from_secs(2);

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

/// Sends a window and waits for all of it to come back.
fn round_trip_window(client: &UdpSocket, server: SocketAddr, msg: &[u8], buf: &mut [u8]) {
    for _ in 0..WINDOW {
        client.send_to(msg, server).unwrap();
    }
    for _ in 0..WINDOW {
        let n = client.recv(buf).expect("a reply per datagram");
        assert_eq!(n, msg.len());
    }
}

fn bench_echo(c: &mut Criterion) {
    let msg = std::fs::read(bench::corpus_dir().join("invite-carrier.sip")).unwrap();
    let mut group = c.benchmark_group("udp_echo");
    group.throughput(Throughput::Elements(WINDOW as u64));
    group.measurement_time(Duration::from_secs(5));

    let run = |group: &mut criterion::BenchmarkGroup<'_, _>, name: &str, server: SocketAddr| {
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
        let mut buf = vec![0; 65_536];
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    round_trip_window(&client, server, &msg, &mut buf);
                }
                start.elapsed()
            })
        });
    };

    // Baseline: std sockets, one syscall per datagram each way.
    let baseline = UdpSocket::bind("127.0.0.1:0").unwrap();
    let baseline_addr = baseline.local_addr().unwrap();
    baseline.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let echo_thread = {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut buf = vec![0; 65_536];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok((n, from)) = baseline.recv_from(&mut buf) {
                    let _ = baseline.send_to(&buf[..n], from);
                }
            }
        })
    };
    run(&mut group, "std_blocking_baseline", baseline_addr);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    echo_thread.join().unwrap();

    let portable = start(IoBackend::Portable);
    run(&mut group, "edge_io_portable", portable.local_addrs()[0]);
    portable.shutdown().unwrap();

    let uring = start(IoBackend::Uring);
    if uring.backend() == &ActiveBackend::Uring {
        run(&mut group, "edge_io_uring", uring.local_addrs()[0]);
    } else {
        eprintln!("SKIPPED edge_io_uring: {}", uring.backend());
    }
    uring.shutdown().unwrap();
    group.finish();
}

criterion_group!(benches, bench_echo);
criterion_main!(benches);
