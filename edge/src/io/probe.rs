//! Is io_uring usable here? Set-up (seccomp profiles and `kernel.io_uring_disabled` refuse it),
//! the features and opcodes the backend uses, then a real multishot receive on loopback.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use io_uring::{Probe, opcode};

use super::config::MIN_DATAGRAM_BYTES;
use super::uring::{UringWorker, build_ring};
use super::worker::Sizes;

/// Submission-queue entries of the probe's ring.
const PROBE_RING_ENTRIES: u32 = 8;
/// Provided buffers of the probe's buffer ring.
const PROBE_BUF_RING_ENTRIES: u16 = 2;
/// How long the probe waits for its loopback datagram.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Why io_uring cannot run the workers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// The kernel refused to set up a ring (seccomp, `kernel.io_uring_disabled`, an old kernel
    /// without `SINGLE_ISSUER`/`DEFER_TASKRUN`).
    #[error("ring set-up refused: {0}")]
    Setup(String),
    /// A feature or opcode the backend needs is missing.
    #[error("kernel lacks {0}")]
    Missing(&'static str),
    /// The functional check (a multishot receive into a buffer ring on loopback) failed.
    #[error("multishot receive self-test failed: {0}")]
    SelfTest(String),
}

/// Checks that io_uring can run the workers: ring set-up with the flags they use, timed waits,
/// the opcodes, and one datagram through a multishot `RecvMsg` with a registered buffer ring.
///
/// Runs on a short-lived thread of its own: tearing a ring down can queue kernel task work on
/// the thread that used it, which interrupts that thread's next blocking socket call with a
/// timeout (`EINTR`); the caller's thread is kept out of that.
pub fn probe_uring() -> Result<(), ProbeError> {
    std::thread::scope(|s| {
        s.spawn(probe_on_this_thread)
            .join()
            .unwrap_or_else(|_| Err(ProbeError::SelfTest("the probe thread panicked".into())))
    })
}

fn probe_on_this_thread() -> Result<(), ProbeError> {
    let ring = build_ring(PROBE_RING_ENTRIES).map_err(|e| ProbeError::Setup(e.to_string()))?;
    if !ring.params().is_feature_ext_arg() {
        return Err(ProbeError::Missing("IORING_FEAT_EXT_ARG (timed waits)"));
    }
    if !ring.params().is_feature_nodrop() {
        return Err(ProbeError::Missing("IORING_FEAT_NODROP"));
    }
    let mut probe = Probe::new();
    ring.submitter().register_probe(&mut probe).map_err(|e| ProbeError::Setup(e.to_string()))?;
    for (code, name) in [
        (opcode::RecvMsg::CODE, "IORING_OP_RECVMSG"),
        (opcode::SendMsg::CODE, "IORING_OP_SENDMSG"),
        (opcode::Read::CODE, "IORING_OP_READ"),
        (opcode::AsyncCancel::CODE, "IORING_OP_ASYNC_CANCEL"),
    ] {
        if !probe.is_supported(code) {
            return Err(ProbeError::Missing(name));
        }
    }
    drop(ring);
    self_test().map_err(|e| ProbeError::SelfTest(e.to_string()))
}

fn self_test() -> std::io::Result<()> {
    let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let socket = UdpSocket::bind(loopback)?;
    let peer = UdpSocket::bind(loopback)?;
    let (_waker, wake) = UnixDatagram::pair()?;
    let sizes = Sizes {
        max_datagram_bytes: MIN_DATAGRAM_BYTES,
        ring_entries: PROBE_RING_ENTRIES,
        buf_ring_entries: PROBE_BUF_RING_ENTRIES,
        send_pool_slots: 1,
    };
    let mut worker = UringWorker::new(0, vec![socket], wake, &sizes).map_err(std::io::Error::other)?;
    worker.self_test(&peer, PROBE_TIMEOUT)
}
