//! The seam between the I/O workers and the engine: one [`EdgeWorker`] per worker thread.
//! It also measures the forwarding latency: from the receive batch's clock reading to the
//! moment a forward is queued for sending, read here because the engine reads no clock.
//! Forwards a timer causes (a failover after a timeout) have no receive time: not measured.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use control::metrics::LatencyBuckets;

use super::engine::{Engine, Sink, WorkerState};
use crate::io::{Datagram, DatagramHandler, Outbox};

impl Sink for Outbox<'_> {
    fn local(&self, listen: usize) -> Option<SocketAddr> {
        self.local_addr(listen)
    }

    fn send_with(
        &mut self,
        dest: SocketAddr,
        listen: usize,
        write: &mut dyn FnMut(&mut [u8]) -> Option<usize>,
    ) -> bool {
        Outbox::send_with(self, dest, listen, write).is_ok()
    }
}

/// The outbox while one received datagram is handled: a forward records its latency since
/// `received`.
struct Timed<'o, 'w> {
    out: &'o mut Outbox<'w>,
    received: Instant,
    latency: &'o LatencyBuckets,
}

impl Sink for Timed<'_, '_> {
    fn local(&self, listen: usize) -> Option<SocketAddr> {
        Sink::local(&*self.out, listen)
    }

    fn send_with(
        &mut self,
        dest: SocketAddr,
        listen: usize,
        write: &mut dyn FnMut(&mut [u8]) -> Option<usize>,
    ) -> bool {
        Sink::send_with(&mut *self.out, dest, listen, write)
    }

    fn forwarded(&mut self) {
        let ns = u64::try_from(self.received.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.latency.record_ns(ns);
    }
}

/// A worker thread's proxy: the shared engine and this worker's scratch.
#[derive(Debug)]
pub struct EdgeWorker {
    engine: Arc<Engine>,
    idx: usize,
    state: WorkerState,
}

impl EdgeWorker {
    /// The handler for worker `idx`, ticking from `start` on.
    pub fn new(engine: Arc<Engine>, idx: usize, start: Instant) -> Self {
        Self { engine, idx, state: WorkerState::new(idx, start) }
    }
}

impl DatagramHandler for EdgeWorker {
    fn on_datagram(&mut self, dgram: Datagram<'_>, out: &mut Outbox<'_>) {
        let latency = self.engine.counters().sip.forward_latency(self.idx);
        let mut sink = Timed { out, received: dgram.now, latency };
        self.engine.on_datagram(
            &mut self.state,
            dgram.now,
            dgram.source,
            dgram.listen,
            dgram.payload,
            &mut sink,
        );
    }

    fn on_tick(&mut self, now: Instant, out: &mut Outbox<'_>) {
        self.engine.on_tick(&mut self.state, now, out);
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.state.next_deadline()
    }
}
