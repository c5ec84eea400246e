//! The seam between the I/O workers and the engine: one [`EdgeWorker`] per worker thread.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

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

/// A worker thread's proxy: the shared engine and this worker's scratch.
#[derive(Debug)]
pub struct EdgeWorker {
    engine: Arc<Engine>,
    state: WorkerState,
}

impl EdgeWorker {
    /// The handler for worker `idx`, ticking from `start` on.
    pub fn new(engine: Arc<Engine>, idx: usize, start: Instant) -> Self {
        Self { engine, state: WorkerState::new(idx, start) }
    }
}

impl DatagramHandler for EdgeWorker {
    fn on_datagram(&mut self, dgram: Datagram<'_>, out: &mut Outbox<'_>) {
        self.engine.on_datagram(&mut self.state, dgram.now, dgram.source, dgram.listen, dgram.payload, out);
    }

    fn on_tick(&mut self, now: Instant, out: &mut Outbox<'_>) {
        self.engine.on_tick(&mut self.state, now, out);
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.state.next_deadline()
    }
}
