//! The portable backend: `poll` over the worker's sockets and its wake socket, `recvmmsg`
//! batches into buffers owned by the worker, one `sendmmsg` per socket per flush.
//!
//! The `mmsghdr` arrays hold raw pointers into boxed buffers of the same worker; boxes never
//! move their contents and live as long as the arrays, so the pointers stay valid.

use std::net::UdpSocket;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::time::Instant;

use super::socket::{SOCKADDR_BYTES, SockAddrBuf, encode_sockaddr};
use super::worker::{Core, Sizes};
use super::{DatagramHandler, IoError};

/// Datagrams per `recvmmsg` call.
const RECV_BATCH: usize = 32;
/// `recvmmsg` calls on one socket per wake-up before the others get their turn.
const MAX_RECV_ROUNDS: usize = 8;
/// Datagrams per `sendmmsg` call.
const SEND_BATCH: usize = 64;

/// A portable worker's sockets and batch arrays.
#[derive(Debug)]
pub(super) struct PortableWorker {
    idx: usize,
    sockets: Vec<UdpSocket>,
    wake: UnixDatagram,
    slot_bytes: usize,
    recv_bufs: Box<[u8]>,
    recv_names: Box<[SockAddrBuf]>,
    recv_iovs: Box<[libc::iovec]>,
    recv_hdrs: Box<[libc::mmsghdr]>,
    send_names: Box<[SockAddrBuf]>,
    send_iovs: Box<[libc::iovec]>,
    send_hdrs: Box<[libc::mmsghdr]>,
}

impl PortableWorker {
    pub(super) fn new(idx: usize, sockets: Vec<UdpSocket>, wake: UnixDatagram, sizes: &Sizes) -> Self {
        let slot_bytes = sizes.max_datagram_bytes;
        let mut w = Self {
            idx,
            sockets,
            wake,
            slot_bytes,
            recv_bufs: vec![0; RECV_BATCH * slot_bytes].into_boxed_slice(),
            recv_names: vec![SockAddrBuf::ZERO; RECV_BATCH].into_boxed_slice(),
            recv_iovs: vec![empty_iovec(); RECV_BATCH].into_boxed_slice(),
            recv_hdrs: vec![empty_mmsghdr(); RECV_BATCH].into_boxed_slice(),
            send_names: vec![SockAddrBuf::ZERO; SEND_BATCH].into_boxed_slice(),
            send_iovs: vec![empty_iovec(); SEND_BATCH].into_boxed_slice(),
            send_hdrs: vec![empty_mmsghdr(); SEND_BATCH].into_boxed_slice(),
        };
        let bufs = w.recv_bufs.as_mut_ptr();
        for (i, ((iov, name), hdr)) in
            w.recv_iovs.iter_mut().zip(w.recv_names.iter_mut()).zip(w.recv_hdrs.iter_mut()).enumerate()
        {
            // wrapping_add: plain address arithmetic; i * slot_bytes stays inside recv_bufs.
            *iov = libc::iovec { iov_base: bufs.wrapping_add(i * slot_bytes).cast(), iov_len: slot_bytes };
            hdr.msg_hdr.msg_name = name.0.as_mut_ptr().cast();
            hdr.msg_hdr.msg_iov = iov;
            hdr.msg_hdr.msg_iovlen = 1;
        }
        for ((iov, name), hdr) in
            w.send_iovs.iter_mut().zip(w.send_names.iter_mut()).zip(w.send_hdrs.iter_mut())
        {
            hdr.msg_hdr.msg_name = name.0.as_mut_ptr().cast();
            hdr.msg_hdr.msg_iov = iov;
            hdr.msg_hdr.msg_iovlen = 1;
        }
        w
    }

    /// Runs until the wake socket turns readable.
    pub(super) fn run<H: DatagramHandler>(&mut self, core: &mut Core<H>) -> Result<(), IoError> {
        let wake_fd = self.wake.as_raw_fd();
        let mut fds: Vec<libc::pollfd> = self
            .sockets
            .iter()
            .map(|s| s.as_raw_fd())
            .chain([wake_fd])
            .map(|fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 })
            .collect();
        loop {
            let timeout_ms = core.wait_for(Instant::now()).map_or(-1, |d| {
                // Round up: waking before the deadline would spin until it passes.
                i32::try_from(d.as_nanos().div_ceil(1_000_000)).unwrap_or(i32::MAX)
            });
            // SAFETY: `fds` is a live, initialised array of `fds.len()` pollfd structs.
            let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
            if ready < 0 {
                let err = std::io::Error::last_os_error();
                if err.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(IoError::Worker { worker: self.idx, op: "poll", source: err });
            }
            if fds.last().is_some_and(|p| p.revents != 0) {
                return Ok(());
            }
            let now = Instant::now();
            for (listen, pfd) in fds.iter().enumerate().take(self.sockets.len()) {
                if pfd.revents == 0 {
                    continue;
                }
                for _ in 0..MAX_RECV_ROUNDS {
                    let got = self.recv_batch(listen, pfd.fd, now, core);
                    self.flush(core);
                    if got < RECV_BATCH {
                        break;
                    }
                }
            }
            core.tick_if_due(Instant::now());
            self.flush(core);
        }
    }

    /// One `recvmmsg` on socket `listen`; hands each datagram to the core. Returns how many
    /// datagrams the call returned.
    fn recv_batch<H: DatagramHandler>(
        &mut self,
        listen: usize,
        fd: RawFd,
        now: Instant,
        core: &mut Core<H>,
    ) -> usize {
        for hdr in self.recv_hdrs.iter_mut() {
            hdr.msg_hdr.msg_namelen = SOCKADDR_BYTES as libc::socklen_t;
            hdr.msg_hdr.msg_flags = 0;
            hdr.msg_len = 0;
        }
        // SAFETY: `recv_hdrs` holds RECV_BATCH headers whose name and iovec pointers refer to
        // `recv_names`, `recv_iovs` and `recv_bufs`, owned by `self`, alive and not otherwise
        // borrowed during the call; each iovec spans one `slot_bytes` slot of `recv_bufs`.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.recv_hdrs.as_mut_ptr(),
                RECV_BATCH as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::WouldBlock && err.kind() != std::io::ErrorKind::Interrupted {
                core.recv_failed(err);
            }
            return 0;
        }
        let n = n as usize;
        for ((hdr, name), slot) in self
            .recv_hdrs
            .iter()
            .zip(self.recv_names.iter())
            .zip(self.recv_bufs.chunks(self.slot_bytes))
            .take(n)
        {
            let truncated = hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            let name = name.0.get(..hdr.msg_hdr.msg_namelen as usize).unwrap_or_default();
            let payload = slot.get(..hdr.msg_len as usize).unwrap_or_default();
            core.deliver(listen, name, payload, truncated, now);
        }
        n
    }

    /// Sends every queued datagram, one `sendmmsg` per socket and [`SEND_BATCH`], then returns
    /// the slots to the pool.
    fn flush<H: DatagramHandler>(&mut self, core: &mut Core<H>) {
        if core.pool.queued().is_empty() {
            return;
        }
        for (listen, socket) in self.sockets.iter().enumerate() {
            let mut n = 0;
            for i in 0..core.pool.queued().len() {
                let Some(&q) = core.pool.queued().get(i).filter(|q| q.via == listen) else { continue };
                let payload = core.pool.payload(&q);
                let (Some(hdr), Some(iov), Some(name)) =
                    (self.send_hdrs.get_mut(n), self.send_iovs.get_mut(n), self.send_names.get_mut(n))
                else {
                    break;
                };
                hdr.msg_hdr.msg_namelen = encode_sockaddr(&q.dest, name);
                // The kernel only reads through iov_base for a send.
                *iov = libc::iovec { iov_base: payload.as_ptr().cast_mut().cast(), iov_len: payload.len() };
                n += 1;
                if n == SEND_BATCH {
                    send_batch(socket.as_raw_fd(), &mut self.send_hdrs[..n], core);
                    n = 0;
                }
            }
            if n > 0 {
                send_batch(socket.as_raw_fd(), &mut self.send_hdrs[..n], core);
            }
        }
        // sendmmsg has copied every datagram into the kernel: the slots are free again.
        core.pool.release_queued();
    }
}

/// `sendmmsg` until every header went out or failed; a failure costs the one datagram.
fn send_batch<H: DatagramHandler>(fd: RawFd, hdrs: &mut [libc::mmsghdr], core: &mut Core<H>) {
    let mut off = 0;
    while let Some(rest) = hdrs.get_mut(off..).filter(|r| !r.is_empty()) {
        // SAFETY: `rest` is a live slice of initialised headers; their name and iovec pointers
        // refer to `send_names`/`send_iovs` and to queued slots of the send pool, none of which
        // is mutated or freed before this call returns.
        let sent = unsafe { libc::sendmmsg(fd, rest.as_mut_ptr(), rest.len() as u32, libc::MSG_DONTWAIT) };
        if sent < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            core.send_failed(err);
            off += 1;
            continue;
        }
        let sent = sent as usize;
        for hdr in rest.iter().take(sent) {
            core.counters.tx_datagrams.inc();
            core.counters.tx_bytes.add(u64::from(hdr.msg_len));
        }
        off += sent;
    }
}

fn empty_iovec() -> libc::iovec {
    libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }
}

fn empty_mmsghdr() -> libc::mmsghdr {
    // SAFETY: mmsghdr is a plain C struct of integers and raw pointers; all-zero is valid
    // (null pointers, zero lengths).
    unsafe { std::mem::zeroed() }
}
