//! What both backends share: a worker's start-up hand-shake and its [`Core`] (handler, send
//! pool, counters), which turns received bytes into handler calls and runs the timer.

use std::net::{SocketAddr, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use super::config::IoConfig;
use super::counters::WorkerCounters;
use super::outbox::{Outbox, SendPool};
use super::socket::decode_sockaddr;
use super::{Datagram, DatagramHandler, IoError, portable, uring};

/// The sizes a worker allocates at start.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sizes {
    pub(super) max_datagram_bytes: usize,
    pub(super) ring_entries: u32,
    pub(super) buf_ring_entries: u16,
    pub(super) send_pool_slots: usize,
}

impl From<&IoConfig> for Sizes {
    fn from(c: &IoConfig) -> Self {
        Self {
            max_datagram_bytes: c.max_datagram_bytes,
            ring_entries: c.ring_entries,
            buf_ring_entries: c.buf_ring_entries,
            send_pool_slots: c.send_pool_slots,
        }
    }
}

/// Everything a worker thread starts with.
#[derive(Debug)]
pub(super) struct WorkerCtx {
    pub(super) idx: usize,
    /// io_uring (true) or portable.
    pub(super) uring: bool,
    /// One socket per listen address, in config order.
    pub(super) sockets: Vec<UdpSocket>,
    /// Readable when the worker must stop.
    pub(super) wake: UnixDatagram,
    pub(super) locals: Arc<[SocketAddr]>,
    pub(super) counters: Arc<WorkerCounters>,
    pub(super) sizes: Sizes,
    /// Gets the setup result, once.
    pub(super) ready: Sender<Result<(), IoError>>,
    /// Gets the worker index when the thread ends, even by panic.
    pub(super) exit: Sender<usize>,
}

/// Reports the thread's end when dropped, so shutdown can wait with a bound.
struct ExitGuard {
    idx: usize,
    exit: Sender<usize>,
}

impl Drop for ExitGuard {
    fn drop(&mut self) {
        // Nobody listening means the owner is gone: nothing to report to.
        let _ = self.exit.send(self.idx);
    }
}

/// The worker thread: set up the backend, report, run until woken.
pub(super) fn run<H: DatagramHandler>(ctx: WorkerCtx, handler: H) -> Result<(), IoError> {
    let WorkerCtx { idx, uring, sockets, wake, locals, counters, sizes, ready, exit } = ctx;
    let _exit = ExitGuard { idx, exit };
    let mut core = Core {
        handler,
        pool: SendPool::new(sizes.send_pool_slots, sizes.max_datagram_bytes),
        locals,
        counters,
    };
    let result = if uring {
        match uring::UringWorker::new(idx, sockets, wake, &sizes) {
            Ok(mut w) => {
                let _ = ready.send(Ok(()));
                w.run(&mut core)
            }
            Err(e) => {
                let _ = ready.send(Err(e));
                return Ok(());
            }
        }
    } else {
        let mut w = portable::PortableWorker::new(idx, sockets, wake, &sizes);
        let _ = ready.send(Ok(()));
        w.run(&mut core)
    };
    if let Err(e) = &result {
        tracing::error!("{e}");
    }
    result
}

/// A worker's handler with its send pool and counters.
#[derive(Debug)]
pub(super) struct Core<H> {
    pub(super) handler: H,
    pub(super) pool: SendPool,
    pub(super) locals: Arc<[SocketAddr]>,
    pub(super) counters: Arc<WorkerCounters>,
}

impl<H: DatagramHandler> Core<H> {
    /// One received datagram: `name` is the source `sockaddr` as the kernel wrote it;
    /// `truncated` when it did not fit its buffer (then it is counted and dropped).
    pub(super) fn deliver(
        &mut self,
        listen: usize,
        name: &[u8],
        payload: &[u8],
        truncated: bool,
        now: Instant,
    ) {
        if truncated {
            self.counters.rx_oversized.inc();
            return;
        }
        let (Some(source), Some(&local)) = (decode_sockaddr(name), self.locals.get(listen)) else {
            self.counters.rx_bad_source.inc();
            return;
        };
        self.counters.rx_datagrams.inc();
        self.counters.rx_bytes.add(payload.len() as u64);
        let mut out = Outbox::new(&mut self.pool, &self.locals, &self.counters);
        self.handler.on_datagram(Datagram { payload, source, listen, local, now }, &mut out);
    }

    /// Calls `on_tick` when the handler's deadline has passed.
    pub(super) fn tick_if_due(&mut self, now: Instant) {
        if self.handler.next_deadline().is_some_and(|d| d <= now) {
            self.counters.ticks.inc();
            let mut out = Outbox::new(&mut self.pool, &self.locals, &self.counters);
            self.handler.on_tick(now, &mut out);
        }
    }

    /// How long to wait for input: until the handler's deadline, or without bound.
    pub(super) fn wait_for(&self, now: Instant) -> Option<Duration> {
        self.handler.next_deadline().map(|d| d.saturating_duration_since(now))
    }
}
