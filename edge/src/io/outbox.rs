//! The per-worker send-buffer pool and [`Outbox`], the handler's way to queue sends.
//!
//! Memory is sized once at start: `slots` buffers of `max_datagram_bytes` each, a free list and
//! a queue that can hold every slot. Queuing a send takes a free slot, lets the handler's writer
//! fill it in place and queues it; the backend flushes the queue in one batch after each
//! receive batch and returns the slot to the free list when the kernel is done with it. Nothing
//! here allocates after start, and a full pool refuses rather than waits.

use std::net::SocketAddr;

use super::counters::WorkerCounters;

/// Why a send was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// Every send buffer of this worker is queued or in flight; counted in `tx_pool_full`.
    #[error("send pool full")]
    PoolFull,
    /// No listen address has this index; counted in `tx_rejected`.
    #[error("no listen address with index {via}")]
    NoSuchListen {
        /// The index asked for.
        via: usize,
    },
    /// The destination's address family differs from the listen socket's (IPv6 sockets are
    /// IPv6-only); counted in `tx_rejected`.
    #[error("{dest} cannot be reached from listen address {via} of the other family")]
    FamilyMismatch {
        /// The destination asked for.
        dest: SocketAddr,
        /// The listen index asked for.
        via: usize,
    },
    /// The writer returned `None`, 0 or a length beyond the buffer: nothing was queued.
    #[error("the writer produced no datagram")]
    Declined,
}

/// A send waiting for the next flush.
#[derive(Debug, Clone, Copy)]
pub(super) struct Queued {
    /// Pool slot holding the bytes.
    pub(super) slot: u32,
    /// Bytes used in the slot.
    pub(super) len: u32,
    /// Destination.
    pub(super) dest: SocketAddr,
    /// Index of the listen socket to send from.
    pub(super) via: usize,
}

/// Fixed send buffers of one worker.
#[derive(Debug)]
pub(super) struct SendPool {
    data: Box<[u8]>,
    slot_bytes: usize,
    free: Vec<u32>,
    queued: Vec<Queued>,
}

impl SendPool {
    /// `slots` buffers of `slot_bytes` each (`slots` at most `u32::MAX`, checked by the config).
    pub(super) fn new(slots: usize, slot_bytes: usize) -> Self {
        let free = (0..slots).rev().map(|s| u32::try_from(s).unwrap_or(u32::MAX)).collect();
        Self {
            data: vec![0; slots * slot_bytes].into_boxed_slice(),
            slot_bytes,
            free,
            queued: Vec::with_capacity(slots),
        }
    }

    /// Sends waiting for the flush, in the order they were queued.
    pub(super) fn queued(&self) -> &[Queued] {
        &self.queued
    }

    /// Forgets the queue after a flush; the slots now belong to the backend until [`release`].
    ///
    /// [`release`]: Self::release
    pub(super) fn clear_queued(&mut self) {
        self.queued.clear();
    }

    /// Drops every queued send, returning its slot (sends done synchronously, or abandoned).
    pub(super) fn release_queued(&mut self) {
        self.free.extend(self.queued.drain(..).map(|q| q.slot));
    }

    /// Returns a slot to the free list (its send completed or failed).
    pub(super) fn release(&mut self, slot: u32) {
        debug_assert!(!self.free.contains(&slot), "slot {slot} released twice");
        self.free.push(slot);
    }

    /// The bytes of a queued send. Slots are handed out by this pool, so the range exists.
    pub(super) fn payload(&self, q: &Queued) -> &[u8] {
        let start = q.slot as usize * self.slot_bytes;
        self.data.get(start..start + q.len as usize).unwrap_or_default()
    }

    /// Gives up the buffers without freeing them: for a backend whose kernel requests may
    /// still read them at exit.
    pub(super) fn leak(&mut self) {
        std::mem::forget(std::mem::take(&mut self.data));
        self.free.clear();
        self.queued.clear();
    }

    /// Free slots.
    pub(super) fn available(&self) -> usize {
        self.free.len()
    }

    fn slot_mut(&mut self, slot: u32) -> &mut [u8] {
        let start = slot as usize * self.slot_bytes;
        self.data.get_mut(start..start + self.slot_bytes).unwrap_or_default()
    }
}

/// Where a handler queues datagrams to send. Sends leave in one batch after the handler
/// returns (after each receive batch and each tick).
#[derive(Debug)]
pub struct Outbox<'w> {
    pool: &'w mut SendPool,
    locals: &'w [SocketAddr],
    counters: &'w WorkerCounters,
}

impl<'w> Outbox<'w> {
    pub(super) fn new(
        pool: &'w mut SendPool,
        locals: &'w [SocketAddr],
        counters: &'w WorkerCounters,
    ) -> Self {
        Self { pool, locals, counters }
    }

    /// Queues one datagram to `dest` from listen socket `via`: `write` fills the buffer in
    /// place (as long as `max_datagram_bytes`) and returns the length used, or `None` to give up.
    pub fn send_with(
        &mut self,
        dest: SocketAddr,
        via: usize,
        write: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> Result<(), SendError> {
        let Some(local) = self.locals.get(via) else {
            self.counters.tx_rejected.inc();
            return Err(SendError::NoSuchListen { via });
        };
        if local.is_ipv4() != dest.is_ipv4() {
            self.counters.tx_rejected.inc();
            return Err(SendError::FamilyMismatch { dest, via });
        }
        let Some(slot) = self.pool.free.pop() else {
            self.counters.tx_pool_full.inc();
            return Err(SendError::PoolFull);
        };
        let buf = self.pool.slot_mut(slot);
        let room = buf.len();
        match write(buf) {
            Some(len) if len > 0 && len <= room => {
                // len <= slot bytes <= MAX_DATAGRAM_BYTES: fits in u32.
                let len = u32::try_from(len).unwrap_or(u32::MAX);
                self.pool.queued.push(Queued { slot, len, dest, via });
                Ok(())
            }
            _ => {
                self.pool.free.push(slot);
                Err(SendError::Declined)
            }
        }
    }

    /// Queues a copy of `bytes`; [`SendError::Declined`] when it is empty or longer than a
    /// send buffer.
    pub fn send(&mut self, dest: SocketAddr, via: usize, bytes: &[u8]) -> Result<(), SendError> {
        self.send_with(dest, via, |buf| {
            let dst = buf.get_mut(..bytes.len())?;
            dst.copy_from_slice(bytes);
            Some(bytes.len())
        })
    }

    /// Send buffers still free.
    pub fn available(&self) -> usize {
        self.pool.available()
    }

    /// The bound address of listen socket `via` (e.g. for Via and Record-Route headers).
    pub fn local_addr(&self, via: usize) -> Option<SocketAddr> {
        self.locals.get(via).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn locals() -> Vec<SocketAddr> {
        vec!["127.0.0.1:5060".parse().unwrap(), "[::1]:5060".parse().unwrap()]
    }

    #[test]
    fn queues_in_place_and_refuses_when_full() {
        let counters = WorkerCounters::default();
        let locals = locals();
        let mut pool = SendPool::new(2, 16);
        let dest: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let mut out = Outbox::new(&mut pool, &locals, &counters);
        assert_eq!(out.send(dest, 0, b"one"), Ok(()));
        assert_eq!(
            out.send_with(dest, 0, |b| {
                b[..3].copy_from_slice(b"two");
                Some(3)
            }),
            Ok(())
        );
        assert_eq!(out.send(dest, 0, b"three"), Err(SendError::PoolFull));
        assert_eq!(out.available(), 0);
        let sent: Vec<&[u8]> = pool.queued().iter().map(|q| pool.payload(q)).collect();
        assert_eq!(sent, [b"one".as_slice(), b"two"]);
        assert_eq!(counters.snapshot().tx_pool_full, 1);
        let slots: Vec<u32> = pool.queued().iter().map(|q| q.slot).collect();
        pool.clear_queued();
        slots.into_iter().for_each(|s| pool.release(s));
        assert_eq!(pool.available(), 2);
    }

    #[test]
    fn rejects_bad_listen_family_and_declines() {
        let counters = WorkerCounters::default();
        let locals = locals();
        let mut pool = SendPool::new(1, 16);
        let mut out = Outbox::new(&mut pool, &locals, &counters);
        let v4: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert_eq!(out.send(v4, 2, b"x"), Err(SendError::NoSuchListen { via: 2 }));
        assert_eq!(out.send(v4, 1, b"x"), Err(SendError::FamilyMismatch { dest: v4, via: 1 }));
        assert_eq!(out.send(v4, 0, &[0; 17]), Err(SendError::Declined));
        assert_eq!(out.send(v4, 0, b""), Err(SendError::Declined));
        assert_eq!(out.send_with(v4, 0, |_| Some(99)), Err(SendError::Declined));
        assert_eq!(out.available(), 1, "declined sends return their slot");
        assert_eq!(out.local_addr(1), Some(locals[1]));
        assert_eq!(counters.snapshot().tx_rejected, 2);
    }
}
