//! The io_uring backend: one ring per worker (`SINGLE_ISSUER`, `DEFER_TASKRUN`), one multishot
//! `RecvMsg` per socket drawing from a registered provided-buffer ring, batched `SendMsg`
//! entries for the send pool, and a `Read` on the wake socket for shutdown. Waiting for input and
//! for the handler's deadline is one `io_uring_enter` with a timeout.
//!
//! Memory handed to the kernel, and why it stays valid:
//! - the buffer ring and its buffers are `mmap`ed by [`BufRing`], registered with the ring,
//!   and unmapped only after the ring is closed and every receive has ended (see
//!   [`UringWorker::drain`]); a buffer the kernel filled is ours until we push it back;
//! - each socket's `msghdr` template, the wake buffer and each send slot's `msghdr`, `iovec`
//!   and address live in boxes owned by the worker, never moved, for the ring's lifetime;
//! - the bytes of a send are a pool slot, held out of the free list until its completion.

use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use io_uring::{IoUring, cqueue, opcode, squeue, types};

use super::config::CQ_PER_SQ_ENTRIES;
use super::socket::{SOCKADDR_BYTES, SockAddrBuf, encode_sockaddr};
use super::worker::{Core, Sizes};
use super::{DatagramHandler, IoError};

/// Buffer group id of the worker's one buffer ring.
const BUF_GROUP: u16 = 0;
/// Bytes of `struct io_uring_recvmsg_out` (four `__u32`) that a multishot `RecvMsg` writes at
/// the start of each buffer, before the source address and the payload.
const RECVMSG_OUT_BYTES: usize = 16;
/// Completions handled before the buffer ring is refilled and the queued sends are submitted.
const CQE_BATCH: usize = 64;
/// How long a stopping worker waits for its cancelled receives and in-flight sends.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// `user_data` tags: the kind in the high 32 bits, an index (listen socket or send slot) below.
const KIND_RECV: u64 = 1 << 32;
const KIND_SEND: u64 = 2 << 32;
const KIND_WAKE: u64 = 3 << 32;
const KIND_CANCEL: u64 = 4 << 32;
const KIND_MASK: u64 = !0 << 32;

/// The ring of every worker and of the probe.
pub(super) fn build_ring(sq_entries: u32) -> std::io::Result<IoUring> {
    IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_cqsize(sq_entries * CQ_PER_SQ_ENTRIES)
        .setup_clamp()
        .build(sq_entries)
}

/// An anonymous private mapping, unmapped on drop.
#[derive(Debug)]
struct Mmap {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mmap {
    fn new(len: usize) -> std::io::Result<Self> {
        // SAFETY: an anonymous private mapping at an address the kernel chooses touches no
        // existing memory; the result is checked before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        NonNull::new(ptr.cast())
            .map(|ptr| Self { ptr, len })
            .ok_or_else(|| std::io::ErrorKind::OutOfMemory.into())
    }
}

impl Mmap {
    /// Never unmaps: for memory the kernel may still use.
    fn leak(&mut self) {
        self.len = 0;
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        if self.len == 0 {
            return;
        }
        // SAFETY: `ptr`/`len` are exactly what mmap returned, unmapped once. Owners drop a
        // mapping only once the kernel no longer uses it (see the module notes).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// One entry of a provided-buffer ring: `struct io_uring_buf`. In entry 0, `resv` is the
/// ring's tail, written by us and read by the kernel.
#[repr(C)]
struct RingEntry {
    addr: u64,
    len: u32,
    bid: u16,
    resv: u16,
}

const _: () = assert!(std::mem::size_of::<RingEntry>() == 16);

/// A registered provided-buffer ring and its buffers.
#[derive(Debug)]
struct BufRing {
    ring: Mmap,
    bufs: Mmap,
    entries: u16,
    buf_bytes: usize,
    /// Our tail: buffers pushed so far (wrapping); published by [`BufRing::publish`].
    tail: u16,
}

impl BufRing {
    /// Maps `entries` (a power of two) buffers of `buf_bytes` each and fills the ring.
    fn new(entries: u16, buf_bytes: usize) -> std::io::Result<Self> {
        let ring = Mmap::new(usize::from(entries) * std::mem::size_of::<RingEntry>())?;
        let bufs = Mmap::new(usize::from(entries) * buf_bytes)?;
        let mut r = Self { ring, bufs, entries, buf_bytes, tail: 0 };
        for bid in 0..entries {
            r.push(bid);
        }
        r.publish();
        Ok(r)
    }

    /// Registers the ring as buffer group [`BUF_GROUP`].
    fn register(&self, ring: &IoUring) -> std::io::Result<()> {
        // SAFETY: the ring memory is a page-aligned mapping of `entries` entries owned by this
        // BufRing, which the worker drops only after the io_uring itself (field order) and after
        // every receive ended: it stays valid while registered.
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                self.ring.ptr.as_ptr() as u64,
                self.entries,
                BUF_GROUP,
                0,
            )
        }
    }

    /// Writes buffer `bid` into the next ring slot (visible to the kernel at [`publish`]).
    ///
    /// [`publish`]: Self::publish
    fn push(&mut self, bid: u16) {
        let Some(bid) = Some(bid).filter(|b| *b < self.entries) else { return };
        let slot = usize::from(self.tail & (self.entries - 1));
        let entry = self.ring.ptr.as_ptr().cast::<RingEntry>().wrapping_add(slot);
        let addr = self.bufs.ptr.as_ptr().wrapping_add(usize::from(bid) * self.buf_bytes) as u64;
        // SAFETY: `slot < entries`, so `entry` is inside the ring mapping; the kernel reads this
        // slot only after the tail moves past it. The field writes leave `resv` (the tail in
        // entry 0) alone and create no reference.
        unsafe {
            std::ptr::addr_of_mut!((*entry).addr).write(addr);
            std::ptr::addr_of_mut!((*entry).len).write(self.buf_bytes as u32);
            std::ptr::addr_of_mut!((*entry).bid).write(bid);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes every pushed buffer available to the kernel.
    fn publish(&self) {
        let tail = self.ring.ptr.as_ptr().cast::<RingEntry>();
        // SAFETY: `resv` of entry 0 is the ring tail, a naturally aligned u16 inside the ring
        // mapping that the kernel reads atomically; the release store orders the entry writes
        // before it.
        let tail = unsafe { AtomicU16::from_ptr(std::ptr::addr_of_mut!((*tail).resv)) };
        tail.store(self.tail, Ordering::Release);
    }

    /// The first `len` bytes of buffer `bid`, which a completion just handed to us.
    fn buf(&self, bid: u16, len: usize) -> &[u8] {
        if bid >= self.entries {
            return &[];
        }
        let start = self.bufs.ptr.as_ptr().wrapping_add(usize::from(bid) * self.buf_bytes);
        // SAFETY: `bid < entries` keeps the range inside the buffer mapping; the kernel wrote
        // `len` bytes and will not touch this buffer until we push it back, which needs
        // `&mut self` and so ends this borrow first.
        unsafe { std::slice::from_raw_parts(start, len.min(self.buf_bytes)) }
    }
}

/// The kernel-facing part of one send: stays put while the send is in flight.
#[derive(Debug)]
struct SendMeta {
    hdr: libc::msghdr,
    iov: libc::iovec,
    name: SockAddrBuf,
}

/// One io_uring worker.
pub(super) struct UringWorker {
    /// Declared first: dropped (closed) before the memory it points at.
    ring: IoUring,
    idx: usize,
    sockets: Vec<UdpSocket>,
    wake: UnixDatagram,
    bufs: BufRing,
    /// Per socket: the `msghdr` of its multishot receive (only the lengths matter).
    recv_hdrs: Box<[libc::msghdr]>,
    recv_armed: Vec<bool>,
    wake_buf: Box<[u8; 8]>,
    /// Per send-pool slot.
    sends: Box<[SendMeta]>,
    sends_in_flight: usize,
    stopping: bool,
}

impl std::fmt::Debug for UringWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringWorker")
            .field("idx", &self.idx)
            .field("sockets", &self.sockets)
            .field("sends_in_flight", &self.sends_in_flight)
            .field("stopping", &self.stopping)
            .finish_non_exhaustive()
    }
}

impl UringWorker {
    /// Builds the ring and registers the buffer ring, on the worker's own thread
    /// (`SINGLE_ISSUER`).
    pub(super) fn new(
        idx: usize,
        sockets: Vec<UdpSocket>,
        wake: UnixDatagram,
        sizes: &Sizes,
    ) -> Result<Self, IoError> {
        let err = |op: &'static str| move |source| IoError::Worker { worker: idx, op, source };
        let ring = build_ring(sizes.ring_entries).map_err(err("io_uring_setup"))?;
        let buf_bytes = RECVMSG_OUT_BYTES + SOCKADDR_BYTES + sizes.max_datagram_bytes;
        let bufs = BufRing::new(sizes.buf_ring_entries, buf_bytes).map_err(err("mmap buffer ring"))?;
        bufs.register(&ring).map_err(err("register buffer ring"))?;
        // SAFETY: msghdr is a plain C struct; all-zero is valid (null pointers, zero lengths).
        let mut template: libc::msghdr = unsafe { std::mem::zeroed() };
        template.msg_namelen = SOCKADDR_BYTES as libc::socklen_t;
        let recv_hdrs = vec![template; sockets.len()].into_boxed_slice();
        let mut sends: Box<[SendMeta]> = (0..sizes.send_pool_slots)
            .map(|_| SendMeta {
                // SAFETY: as above.
                hdr: unsafe { std::mem::zeroed() },
                iov: libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 },
                name: SockAddrBuf::ZERO,
            })
            .collect();
        for m in sends.iter_mut() {
            m.hdr.msg_name = m.name.0.as_mut_ptr().cast();
            m.hdr.msg_iov = &mut m.iov;
            m.hdr.msg_iovlen = 1;
        }
        Ok(Self {
            ring,
            idx,
            recv_armed: vec![false; sockets.len()],
            sockets,
            wake,
            bufs,
            recv_hdrs,
            wake_buf: Box::new([0; 8]),
            sends,
            sends_in_flight: 0,
            stopping: false,
        })
    }

    fn err(&self, op: &'static str) -> impl FnOnce(std::io::Error) -> IoError {
        let worker = self.idx;
        move |source| IoError::Worker { worker, op, source }
    }

    /// Runs until the wake socket is readable, then drains.
    pub(super) fn run<H: DatagramHandler>(&mut self, core: &mut Core<H>) -> Result<(), IoError> {
        for listen in 0..self.sockets.len() {
            self.arm_recv(listen)?;
        }
        self.arm_wake()?;
        let mut cqes: Vec<cqueue::Entry> = Vec::with_capacity(CQE_BATCH);
        while !self.stopping {
            self.enter(core.wait_for(Instant::now()))?;
            let now = Instant::now();
            self.complete_all(&mut cqes, now, core)?;
            core.tick_if_due(Instant::now());
            self.flush_sends(core)?;
        }
        self.drain(&mut cqes, core)
    }

    /// Submits what is queued and waits for one completion or `wait` (None: no bound).
    fn enter(&mut self, wait: Option<Duration>) -> Result<(), IoError> {
        let submitter = self.ring.submitter();
        let result = match wait {
            None => submitter.submit_and_wait(1),
            Some(d) => {
                let ts = types::Timespec::new().sec(d.as_secs()).nsec(d.subsec_nanos());
                submitter.submit_with_args(1, &types::SubmitArgs::new().timespec(&ts))
            }
        };
        match result {
            Ok(_) => Ok(()),
            // Timed out, interrupted, or completions to reap first: all mean "look at the CQ".
            Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR | libc::EBUSY)) => Ok(()),
            Err(e) => Err(self.err("io_uring_enter")(e)),
        }
    }

    /// Handles every completion available, in batches of [`CQE_BATCH`]; after each batch the
    /// buffer ring is refilled and the queued sends are turned into submissions.
    fn complete_all<H: DatagramHandler>(
        &mut self,
        cqes: &mut Vec<cqueue::Entry>,
        now: Instant,
        core: &mut Core<H>,
    ) -> Result<(), IoError> {
        loop {
            cqes.clear();
            cqes.extend(self.ring.completion().take(CQE_BATCH));
            if cqes.is_empty() {
                return Ok(());
            }
            for cqe in cqes.iter() {
                self.complete(cqe, now, core)?;
            }
            self.bufs.publish();
            self.flush_sends(core)?;
        }
    }

    fn complete<H: DatagramHandler>(
        &mut self,
        cqe: &cqueue::Entry,
        now: Instant,
        core: &mut Core<H>,
    ) -> Result<(), IoError> {
        let (kind, index) = (cqe.user_data() & KIND_MASK, (cqe.user_data() & !KIND_MASK) as usize);
        let res = cqe.result();
        match kind {
            KIND_RECV => {
                if res < 0 {
                    match -res {
                        libc::ENOBUFS => core.counters.rx_buf_ring_empty.inc(),
                        libc::ECANCELED => {}
                        errno => core.recv_failed(std::io::Error::from_raw_os_error(errno)),
                    }
                } else if let Some(bid) = cqueue::buffer_select(cqe.flags()) {
                    let buf = self.bufs.buf(bid, res as usize);
                    match self.recv_hdrs.get(index).map(|h| types::RecvMsgOut::parse(buf, h)) {
                        Some(Ok(msg)) => core.deliver(
                            index,
                            msg.name_data(),
                            msg.payload_data(),
                            msg.is_payload_truncated(),
                            now,
                        ),
                        _ => core.recv_failed(std::io::ErrorKind::InvalidData.into()),
                    }
                    self.bufs.push(bid);
                } else {
                    // A successful receive always names its buffer; without one there is nothing to read.
                    core.recv_failed(std::io::ErrorKind::InvalidData.into());
                }
                if !cqueue::more(cqe.flags())
                    && let Some(armed) = self.recv_armed.get_mut(index)
                {
                    *armed = false;
                    if !self.stopping {
                        core.counters.rx_rearms.inc();
                        self.arm_recv(index)?;
                    }
                }
            }
            KIND_SEND => {
                self.sends_in_flight = self.sends_in_flight.saturating_sub(1);
                if res < 0 {
                    core.send_failed(std::io::Error::from_raw_os_error(-res));
                } else {
                    core.counters.tx_datagrams.inc();
                    core.counters.tx_bytes.add(res as u64);
                }
                core.pool.release(index as u32);
            }
            KIND_WAKE => {
                if res > 0 {
                    self.stopping = true;
                } else if !self.stopping {
                    self.arm_wake()?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Turns every queued send into a `SendMsg` submission (sent at the next enter).
    fn flush_sends<H: DatagramHandler>(&mut self, core: &mut Core<H>) -> Result<(), IoError> {
        for i in 0..core.pool.queued().len() {
            let Some(&q) = core.pool.queued().get(i) else { break };
            let (Some(meta), Some(socket)) = (self.sends.get_mut(q.slot as usize), self.sockets.get(q.via))
            else {
                core.send_failed(std::io::ErrorKind::InvalidInput.into());
                core.pool.release(q.slot);
                continue;
            };
            let payload = core.pool.payload(&q);
            meta.hdr.msg_namelen = encode_sockaddr(&q.dest, &mut meta.name);
            // The kernel only reads through iov_base for a send.
            meta.iov = libc::iovec { iov_base: payload.as_ptr().cast_mut().cast(), iov_len: payload.len() };
            let sqe = opcode::SendMsg::new(types::Fd(socket.as_raw_fd()), &meta.hdr)
                .build()
                .user_data(KIND_SEND | u64::from(q.slot));
            self.push(&sqe)?;
            self.sends_in_flight += 1;
        }
        core.pool.clear_queued();
        Ok(())
    }

    fn arm_recv(&mut self, listen: usize) -> Result<(), IoError> {
        let (Some(socket), Some(hdr)) = (self.sockets.get(listen), self.recv_hdrs.get(listen)) else {
            return Ok(());
        };
        let sqe = opcode::RecvMsgMulti::new(types::Fd(socket.as_raw_fd()), hdr, BUF_GROUP)
            .build()
            .user_data(KIND_RECV | listen as u64);
        self.push(&sqe)?;
        if let Some(armed) = self.recv_armed.get_mut(listen) {
            *armed = true;
        }
        Ok(())
    }

    fn arm_wake(&mut self) -> Result<(), IoError> {
        let sqe = opcode::Read::new(types::Fd(self.wake.as_raw_fd()), self.wake_buf.as_mut_ptr(), 8)
            .build()
            .user_data(KIND_WAKE);
        self.push(&sqe)
    }

    /// Queues one submission, submitting first when the queue is full.
    fn push(&mut self, sqe: &squeue::Entry) -> Result<(), IoError> {
        for _ in 0..2 {
            // SAFETY: every entry this module builds points only at memory the worker owns and
            // keeps in place until the operation's completion: the `recv_hdrs` and `sends`
            // boxes, `wake_buf`, and pool slots held out of the free list (module notes).
            if unsafe { self.ring.submission().push(sqe) }.is_ok() {
                return Ok(());
            }
            self.ring.submit().map_err(self.err("io_uring_enter"))?;
        }
        Err(self.err("submission queue")(std::io::ErrorKind::WouldBlock.into()))
    }

    /// Cancels the receives and waits (bounded) for them and the in-flight sends to end, so
    /// that no buffer is unmapped while the kernel may still write to or read from it.
    /// Datagrams completing meanwhile are still handled and answered. Past the bound, the
    /// memory is leaked rather than freed.
    fn drain<H: DatagramHandler>(
        &mut self,
        cqes: &mut Vec<cqueue::Entry>,
        core: &mut Core<H>,
    ) -> Result<(), IoError> {
        for listen in 0..self.sockets.len() {
            if self.recv_armed.get(listen) == Some(&true) {
                let cancel =
                    opcode::AsyncCancel::new(KIND_RECV | listen as u64).build().user_data(KIND_CANCEL);
                self.push(&cancel)?;
            }
        }
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while self.recv_armed.contains(&true) || self.sends_in_flight > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                tracing::warn!(
                    worker = self.idx,
                    "io_uring requests still in flight at exit: leaking their buffers"
                );
                std::mem::forget(std::mem::take(&mut self.sends));
                self.bufs.bufs.leak();
                self.bufs.ring.leak();
                core.pool.leak();
                return Ok(());
            }
            self.enter(Some(left))?;
            self.complete_all(cqes, Instant::now(), core)?;
        }
        Ok(())
    }

    /// The probe's functional check: one datagram from `peer` to this worker's only socket
    /// must come back through the multishot receive with the buffer-ring flag and "more".
    pub(super) fn self_test(&mut self, peer: &UdpSocket, timeout: Duration) -> std::io::Result<()> {
        let target = self.sockets.first().ok_or(std::io::ErrorKind::InvalidInput)?.local_addr()?;
        let hdr = self.recv_hdrs.first().ok_or(std::io::ErrorKind::InvalidInput)?;
        let fd = types::Fd(self.sockets.first().ok_or(std::io::ErrorKind::InvalidInput)?.as_raw_fd());
        let sqe = opcode::RecvMsgMulti::new(fd, hdr, BUF_GROUP).build().user_data(KIND_RECV);
        // SAFETY: as in `push`: the msghdr and the buffer ring are owned by `self`, which
        // outlives the ring's requests (the ring is dropped first).
        unsafe { self.ring.submission().push(&sqe) }.map_err(|_| std::io::ErrorKind::WouldBlock)?;
        self.ring.submit()?;
        peer.send_to(b"probe", target)?;
        let ts = types::Timespec::new().sec(timeout.as_secs()).nsec(timeout.subsec_nanos());
        match self.ring.submitter().submit_with_args(1, &types::SubmitArgs::new().timespec(&ts)) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ETIME) => {
                return Err(std::io::ErrorKind::TimedOut.into());
            }
            Err(e) => return Err(e),
        }
        let cqe = self.ring.completion().next().ok_or(std::io::ErrorKind::TimedOut)?;
        if cqe.result() < 0 {
            return Err(std::io::Error::from_raw_os_error(-cqe.result()));
        }
        let bid = cqueue::buffer_select(cqe.flags()).ok_or(std::io::ErrorKind::Unsupported)?;
        let ok = types::RecvMsgOut::parse(self.bufs.buf(bid, cqe.result() as usize), hdr)
            .is_ok_and(|m| m.payload_data() == b"probe");
        if !ok || !cqueue::more(cqe.flags()) {
            return Err(std::io::ErrorKind::Unsupported.into());
        }
        // End the receive before the buffers go: cancel it and wait for its last completion.
        let cancel = opcode::AsyncCancel::new(KIND_RECV).build().user_data(KIND_CANCEL);
        // SAFETY: a cancel entry carries no pointer.
        unsafe { self.ring.submission().push(&cancel) }.map_err(|_| std::io::ErrorKind::WouldBlock)?;
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                self.bufs.bufs.leak();
                self.bufs.ring.leak();
                return Err(std::io::ErrorKind::TimedOut.into());
            }
            let ts = types::Timespec::new().sec(left.as_secs()).nsec(left.subsec_nanos());
            match self.ring.submitter().submit_with_args(1, &types::SubmitArgs::new().timespec(&ts)) {
                Ok(_) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR)) => {}
                Err(e) => return Err(e),
            }
            let ended =
                self.ring.completion().any(|c| c.user_data() == KIND_RECV && !cqueue::more(c.flags()));
            if ended {
                return Ok(());
            }
        }
    }
}
