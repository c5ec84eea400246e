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

/// Least time between two log lines about failed receives or sends of one worker; the
/// counters count every failure.
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);

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
        idx,
        rx_error_log: RateLimit::default(),
        tx_error_log: RateLimit::default(),
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

/// Lets one event through per [`ERROR_LOG_INTERVAL`] and counts the others.
#[derive(Debug, Default)]
struct RateLimit {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimit {
    /// `Some(events suppressed since the last one let through)`, or `None` to stay quiet.
    fn check(&mut self, now: Instant) -> Option<u64> {
        if self.last.is_some_and(|last| now.saturating_duration_since(last) < ERROR_LOG_INTERVAL) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// A worker's handler with its send pool and counters.
#[derive(Debug)]
pub(super) struct Core<H> {
    idx: usize,
    rx_error_log: RateLimit,
    tx_error_log: RateLimit,
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

    /// A receive failed (not for want of data): counted, logged at most once per
    /// [`ERROR_LOG_INTERVAL`].
    pub(super) fn recv_failed(&mut self, err: std::io::Error) {
        self.counters.rx_errors.inc();
        if let Some(suppressed) = self.rx_error_log.check(Instant::now()) {
            tracing::warn!(worker = self.idx, suppressed, "udp receive failed: {err}");
        }
    }

    /// A send failed (the datagram is lost): counted, logged at most once per
    /// [`ERROR_LOG_INTERVAL`].
    pub(super) fn send_failed(&mut self, err: std::io::Error) {
        self.counters.tx_errors.inc();
        if let Some(suppressed) = self.tx_error_log.check(Instant::now()) {
            tracing::warn!(worker = self.idx, suppressed, "udp send failed: {err}");
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_lets_one_through_per_interval_and_counts_the_rest() {
        let mut limit = RateLimit::default();
        let t0 = Instant::now();
        assert_eq!(limit.check(t0), Some(0));
        assert_eq!(limit.check(t0 + Duration::from_secs(1)), None);
        assert_eq!(limit.check(t0 + Duration::from_secs(2)), None);
        assert_eq!(limit.check(t0 + ERROR_LOG_INTERVAL), Some(2));
    }
}
