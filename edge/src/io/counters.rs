//! Per-worker counters: written by their worker only, summed when read.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// One counter with a single writer (its worker) and any number of readers.
#[derive(Debug, Default)]
pub(super) struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only the owning worker writes, so a load and a store suffice: no locked
    /// read-modify-write on the hot path.
    pub(super) fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    /// Adds one.
    pub(super) fn inc(&self) {
        self.add(1);
    }

    fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

macro_rules! io_counters {
    ($( $(#[$doc:meta])* $name:ident, )*) => {
        /// A snapshot of I/O counters: of one worker, or summed over all.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        #[non_exhaustive]
        pub struct IoCounters {
            $( $(#[$doc])* pub $name: u64, )*
        }

        /// The live counters of one worker, padded to their own cache lines so that workers
        /// never share one.
        #[derive(Debug, Default)]
        #[repr(align(128))]
        pub(super) struct WorkerCounters {
            $( $(#[$doc])* pub(super) $name: Counter, )*
        }

        impl WorkerCounters {
            /// The current values.
            pub(super) fn snapshot(&self) -> IoCounters {
                IoCounters { $( $name: self.$name.get(), )* }
            }
        }

        impl std::ops::AddAssign for IoCounters {
            fn add_assign(&mut self, other: Self) {
                $( self.$name = self.$name.wrapping_add(other.$name); )*
            }
        }
    };
}

io_counters! {
    /// Datagrams handed to the handler.
    rx_datagrams,
    /// Payload bytes of those datagrams.
    rx_bytes,
    /// Datagrams larger than `max_datagram_bytes` (truncated by the kernel): dropped.
    rx_oversized,
    /// Datagrams whose source address could not be decoded: dropped.
    rx_bad_source,
    /// Receive errors other than an empty buffer ring.
    rx_errors,
    /// io_uring: multishot receives re-armed after they ended.
    rx_rearms,
    /// io_uring: multishot receives ended because the buffer ring ran dry (`ENOBUFS`).
    rx_buf_ring_empty,
    /// Datagrams the kernel accepted for sending.
    tx_datagrams,
    /// Payload bytes of those datagrams.
    tx_bytes,
    /// Sends the kernel failed (the datagram is lost, as UDP allows).
    tx_errors,
    /// Sends refused because every send buffer of the worker was in use.
    tx_pool_full,
    /// Sends refused for an unknown listen index or a destination of the other address family.
    tx_rejected,
    /// Calls of the handler's `on_tick`.
    ticks,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_sum() {
        let a = WorkerCounters::default();
        let b = WorkerCounters::default();
        a.rx_datagrams.add(3);
        b.rx_datagrams.inc();
        b.tx_pool_full.inc();
        let mut sum = a.snapshot();
        sum += b.snapshot();
        assert_eq!((sum.rx_datagrams, sum.tx_pool_full, sum.tx_datagrams), (4, 1, 0));
    }
}
