//! UDP I/O of the data plane: one worker thread per core, each with its own `SO_REUSEPORT`
//! socket per listen address, its own receive buffers and its own send pool.
//!
//! The life of a datagram: the kernel picks a worker's socket by flow hash → the backend
//! receives it into a buffer it owns (io_uring: a provided-buffer ring filled by a multishot
//! receive; portable: one `recvmmsg` batch) → [`DatagramHandler::on_datagram`] reads it in
//! place ([`Datagram`] borrows the buffer) and queues answers into the [`Outbox`], whose
//! writers fill pre-allocated send buffers → after the receive batch the backend sends every
//! queued datagram in one batch (io_uring `SendMsg` entries, or `sendmmsg`) → the buffers go
//! back to their ring or pool. Timers: the worker calls [`DatagramHandler::on_tick`] once the
//! handler's [`DatagramHandler::next_deadline`] has passed, passing the worker's clock: the
//! handler needs none of its own.
//!
//! Workers share nothing on the hot path: each owns its sockets, buffers, pool and handler;
//! its counters are written by it alone and summed when read ([`Workers::counters`]).
//!
//! The backend is chosen at [`spawn`]: io_uring when configured and the kernel's io_uring
//! passes a functional probe ([`probe_uring`]), else the portable `recvmmsg`/`sendmmsg` loop
//! (containers with a default seccomp profile forbid io_uring). [`Workers::backend`] says which
//! runs and why.

mod config;
mod counters;
mod outbox;
mod portable;
mod probe;
mod socket;
mod uring;
mod worker;

use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use config::{
    CQ_PER_SQ_ENTRIES, DEFAULT_BUF_RING_ENTRIES, DEFAULT_MAX_DATAGRAM_BYTES, DEFAULT_RING_ENTRIES,
    DEFAULT_SEND_POOL_SLOTS, DEFAULT_SOCKET_BUFFER_BYTES, IoConfig, MAX_BUF_RING_ENTRIES, MAX_DATAGRAM_BYTES,
    MAX_LISTEN, MAX_RING_ENTRIES, MAX_SEND_POOL_SLOTS, MIN_DATAGRAM_BYTES,
};
pub use control::config::IoBackend;
pub use counters::IoCounters;
pub use outbox::{Outbox, SendError};
pub use probe::{ProbeError, probe_uring};

use counters::WorkerCounters;

/// How long [`spawn`] waits for every worker to set up its backend.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long [`Workers::shutdown`] waits for every worker to stop.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// One received datagram, borrowed from the worker's receive buffer for the duration of the
/// handler call (zero copy).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Datagram<'buf> {
    /// The payload.
    pub payload: &'buf [u8],
    /// Who sent it.
    pub source: SocketAddr,
    /// Index of the socket it came in on: below `IoConfig::listen.len()` a shared listen
    /// address (same index), from there the worker's private ports
    /// ([`IoConfig::private_ports`]). Send answers `via` the same index.
    pub listen: usize,
    /// The bound address of that socket.
    pub local: SocketAddr,
    /// When the worker's receive batch completed: the handler's notion of now.
    pub now: Instant,
}

/// The per-worker datagram state (the proxy): one instance per worker thread, moved into it.
pub trait DatagramHandler: Send + 'static {
    /// One datagram arrived; queue any answers into `out`.
    fn on_datagram(&mut self, dgram: Datagram<'_>, out: &mut Outbox<'_>);

    /// [`next_deadline`](Self::next_deadline) has passed; `now` is the worker's clock.
    fn on_tick(&mut self, now: Instant, out: &mut Outbox<'_>) {
        let _ = (now, out);
    }

    /// When [`on_tick`](Self::on_tick) should next run; `None`: no timer armed.
    fn next_deadline(&self) -> Option<Instant> {
        None
    }
}

/// The backend the workers run.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ActiveBackend {
    /// io_uring: multishot receive into a provided-buffer ring, batched `SendMsg`.
    Uring,
    /// `recvmmsg`/`sendmmsg` around `poll`.
    Portable {
        /// Why not io_uring.
        reason: PortableReason,
    },
}

/// Why the portable backend runs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PortableReason {
    /// The configuration asked for it.
    Configured,
    /// io_uring was asked for but failed its probe.
    UringUnavailable(ProbeError),
}

impl std::fmt::Display for ActiveBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Uring => f.write_str("io_uring"),
            Self::Portable { reason: PortableReason::Configured } => f.write_str("portable (configured)"),
            Self::Portable { reason: PortableReason::UringUnavailable(why) } => {
                write!(f, "portable (io_uring unavailable: {why})")
            }
        }
    }
}

/// Errors of the I/O layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IoError {
    /// A configuration value is out of range.
    #[error("io configuration: {field}: {reason}")]
    InvalidConfig {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A listen address could not be bound (in use, not local, no permission).
    #[error("cannot bind udp:{addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// Creating or configuring a socket failed.
    #[error("{op} for udp:{addr}: {source}")]
    Socket {
        /// The call or option.
        op: &'static str,
        /// The listen address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// A worker's backend failed to set up or to run.
    #[error("io worker {worker}: {op}: {source}")]
    Worker {
        /// Worker index.
        worker: usize,
        /// The call that failed.
        op: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// Some workers did not report their setup within [`SETUP_TIMEOUT`].
    #[error("{pending} io worker(s) did not finish setting up within {SETUP_TIMEOUT:?}")]
    SetupTimeout {
        /// How many.
        pending: usize,
    },
    /// A worker thread panicked (in the handler or the backend).
    #[error("io worker {worker} panicked")]
    WorkerPanicked {
        /// Worker index.
        worker: usize,
    },
    /// Some workers did not stop within [`SHUTDOWN_TIMEOUT`]; their threads are left detached.
    #[error("{stuck} io worker(s) did not stop within {SHUTDOWN_TIMEOUT:?}")]
    ShutdownTimeout {
        /// How many.
        stuck: usize,
    },
}

/// Running workers. Dropping them stops them too (see [`Workers::shutdown`]).
#[derive(Debug)]
pub struct Workers {
    backend: ActiveBackend,
    local_addrs: Vec<SocketAddr>,
    worker_addrs: Vec<Arc<[SocketAddr]>>,
    counters: Vec<Arc<WorkerCounters>>,
    wakers: Vec<UnixDatagram>,
    threads: Vec<Option<JoinHandle<Result<(), IoError>>>>,
    exited: mpsc::Receiver<usize>,
}

impl Workers {
    /// The backend that runs.
    pub fn backend(&self) -> &ActiveBackend {
        &self.backend
    }

    /// The bound address of each listen entry, in [`IoConfig::listen`] order (port 0 resolved).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// The addresses of worker `worker`'s sockets by listen index: the shared listen addresses,
    /// then (with [`IoConfig::private_ports`]) the worker's own.
    pub fn worker_addrs(&self, worker: usize) -> Option<&[SocketAddr]> {
        self.worker_addrs.get(worker).map(|a| &a[..])
    }

    /// Counters summed over all workers.
    pub fn counters(&self) -> IoCounters {
        let mut sum = IoCounters::default();
        for c in &self.counters {
            sum += c.snapshot();
        }
        sum
    }

    /// Counters of each worker, by worker index.
    pub fn worker_counters(&self) -> Vec<IoCounters> {
        self.counters.iter().map(|c| c.snapshot()).collect()
    }

    /// Stops every worker and joins its thread, waiting at most [`SHUTDOWN_TIMEOUT`]. Returns
    /// the first error a worker ended with.
    pub fn shutdown(mut self) -> Result<(), IoError> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> Result<(), IoError> {
        for w in &self.wakers {
            // A full or closed wake socket means the worker is already waking or gone.
            let _ = w.send(&[1]);
        }
        let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
        let mut running = self.threads.iter().filter(|t| t.is_some()).count();
        let mut first_err = None;
        while running > 0 {
            let Ok(idx) = self.exited.recv_timeout(deadline.saturating_duration_since(Instant::now())) else {
                break;
            };
            let Some(thread) = self.threads.get_mut(idx).and_then(Option::take) else { continue };
            running -= 1;
            let result = thread.join().unwrap_or(Err(IoError::WorkerPanicked { worker: idx }));
            if let Err(e) = result {
                first_err.get_or_insert(e);
            }
        }
        if running > 0 {
            self.threads.clear();
            return Err(IoError::ShutdownTimeout { stuck: running });
        }
        first_err.map_or(Ok(()), Err)
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        if self.threads.iter().any(Option::is_some)
            && let Err(e) = self.stop_and_join()
        {
            tracing::error!("io workers: {e}");
        }
    }
}

/// Binds every listen address once per worker and starts the workers, each with the handler
/// `make_handler(worker_index)`. Returns once every worker has set up its backend.
pub fn spawn<H: DatagramHandler>(
    config: &IoConfig,
    make_handler: impl Fn(usize) -> H,
) -> Result<Workers, IoError> {
    config.validate()?;
    let backend = match config.backend {
        IoBackend::Portable => ActiveBackend::Portable { reason: PortableReason::Configured },
        IoBackend::Uring => match probe_uring() {
            Ok(()) => ActiveBackend::Uring,
            Err(why) => ActiveBackend::Portable { reason: PortableReason::UringUnavailable(why) },
        },
    };
    match &backend {
        ActiveBackend::Portable { reason: PortableReason::UringUnavailable(_) } => {
            tracing::warn!(workers = config.workers, "io backend: {backend}");
        }
        _ => tracing::info!(workers = config.workers, "io backend: {backend}"),
    }
    let bound = socket::bind_all(config)?;
    let worker_addrs: Vec<Arc<[SocketAddr]>> = bound.worker_addrs.into_iter().map(Arc::from).collect();
    let (exit_tx, exited) = mpsc::channel();
    let (ready_tx, ready_rx) = mpsc::channel();
    let mut workers = Workers {
        backend: backend.clone(),
        local_addrs: bound.local_addrs,
        worker_addrs: worker_addrs.clone(),
        counters: Vec::with_capacity(config.workers),
        wakers: Vec::with_capacity(config.workers),
        threads: Vec::with_capacity(config.workers),
        exited,
    };
    for (idx, (sockets, locals)) in bound.per_worker.into_iter().zip(worker_addrs).enumerate() {
        let spawn_err = |op, source| IoError::Worker { worker: idx, op, source };
        let (waker, wake) = UnixDatagram::pair().map_err(|e| spawn_err("socketpair", e))?;
        wake.set_nonblocking(true).map_err(|e| spawn_err("socketpair", e))?;
        let counters = Arc::new(WorkerCounters::default());
        let ctx = worker::WorkerCtx {
            idx,
            uring: backend == ActiveBackend::Uring,
            sockets,
            wake,
            locals,
            counters: Arc::clone(&counters),
            sizes: worker::Sizes::from(config),
            ready: ready_tx.clone(),
            exit: exit_tx.clone(),
        };
        let handler = make_handler(idx);
        let thread = std::thread::Builder::new()
            .name(format!("sipedge-io-{idx}"))
            .spawn(move || worker::run(ctx, handler))
            .map_err(|e| spawn_err("spawn thread", e))?;
        workers.counters.push(counters);
        workers.wakers.push(waker);
        workers.threads.push(Some(thread));
    }
    let deadline = Instant::now() + SETUP_TIMEOUT;
    for ready in 0..config.workers {
        match ready_rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(IoError::SetupTimeout { pending: config.workers - ready }),
        }
    }
    Ok(workers)
}
