//! [`IoConfig`]: what the UDP workers need, with every bound named and checked at start.

use std::net::SocketAddr;

use control::config::{EdgeConfig, IoBackend, MAX_WORKERS, Transport};

use super::IoError;

/// Largest datagram a worker can be configured to accept, in bytes (the UDP length field is
/// 16 bits).
pub const MAX_DATAGRAM_BYTES: usize = 65_535;
/// Smallest accepted `max_datagram_bytes`, in bytes: RFC 3261 §18.1.1 has every element handle
/// messages up to the 1300-byte MTU threshold.
pub const MIN_DATAGRAM_BYTES: usize = 1_300;
/// Default largest accepted datagram, in bytes. SIP over UDP stays near the path MTU (RFC 3261
/// §18.1.1); 8 KiB leaves room for large SDP bodies and Identity headers on fragmenting trunks.
pub const DEFAULT_MAX_DATAGRAM_BYTES: usize = 8_192;
/// Default provided receive buffers per worker (io_uring buffer ring entries; a power of two).
pub const DEFAULT_BUF_RING_ENTRIES: u16 = 1_024;
/// Most provided receive buffers per worker (the kernel's limit for a buffer ring).
pub const MAX_BUF_RING_ENTRIES: u16 = 32_768;
/// Default io_uring submission-queue entries per worker (a power of two); the completion
/// queue gets [`CQ_PER_SQ_ENTRIES`] times as many.
pub const DEFAULT_RING_ENTRIES: u32 = 1_024;
/// Most io_uring submission-queue entries per worker (the kernel's `IORING_MAX_ENTRIES`).
pub const MAX_RING_ENTRIES: u32 = 32_768;
/// Completion-queue entries per submission-queue entry: multishot receives post many
/// completions per submission.
pub const CQ_PER_SQ_ENTRIES: u32 = 4;
/// Default send buffers per worker, each `max_datagram_bytes` long.
pub const DEFAULT_SEND_POOL_SLOTS: usize = 512;
/// Most send buffers per worker.
pub const MAX_SEND_POOL_SLOTS: usize = 32_768;
/// Default `SO_RCVBUF` / `SO_SNDBUF` request, in bytes: the 4 MiB `net.core.rmem_max` /
/// `wmem_max` of our machines (the kernel clamps to the sysctl and doubles for bookkeeping).
pub const DEFAULT_SOCKET_BUFFER_BYTES: usize = 4 * 1024 * 1024;
/// Most listen addresses.
pub const MAX_LISTEN: usize = 64;

/// The configuration of the UDP workers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoConfig {
    /// UDP listen addresses; port 0 picks one free port shared by every worker.
    pub listen: Vec<SocketAddr>,
    /// Worker threads, 1..=[`MAX_WORKERS`]; each has its own socket per listen address.
    pub workers: usize,
    /// Requested backend; `Uring` falls back to `Portable` when the probe fails.
    pub backend: IoBackend,
    /// `SO_RCVBUF` and `SO_SNDBUF` request per socket, in bytes.
    pub socket_buffer_bytes: usize,
    /// io_uring submission-queue entries per worker, a power of two up to [`MAX_RING_ENTRIES`].
    pub ring_entries: u32,
    /// Provided receive buffers per worker, a power of two up to [`MAX_BUF_RING_ENTRIES`].
    pub buf_ring_entries: u16,
    /// Largest accepted datagram, in bytes, [`MIN_DATAGRAM_BYTES`]..=[`MAX_DATAGRAM_BYTES`];
    /// larger ones are counted and dropped. Also the size of each send buffer.
    pub max_datagram_bytes: usize,
    /// Send buffers per worker, 1..=[`MAX_SEND_POOL_SLOTS`]; a send with none free is refused.
    pub send_pool_slots: usize,
    /// Also give each worker, per listen address, a socket of its own on an ephemeral port of
    /// the same IP (listen indices `listen.len()..2 * listen.len()` of that worker). What a
    /// worker sends from it comes back to it: a stateful proxy that forwards from its private
    /// port (and names it in Via) gets the responses on the worker holding the transaction,
    /// where the shared port would spread them by flow hash. Default: off.
    pub private_ports: bool,
}

impl IoConfig {
    /// Defaults for everything but the listen addresses: one worker per core, io_uring.
    pub fn new(listen: Vec<SocketAddr>) -> Self {
        Self {
            listen,
            workers: default_workers(),
            backend: IoBackend::Uring,
            socket_buffer_bytes: DEFAULT_SOCKET_BUFFER_BYTES,
            ring_entries: DEFAULT_RING_ENTRIES,
            buf_ring_entries: DEFAULT_BUF_RING_ENTRIES,
            max_datagram_bytes: DEFAULT_MAX_DATAGRAM_BYTES,
            send_pool_slots: DEFAULT_SEND_POOL_SLOTS,
            private_ports: false,
        }
    }

    /// The I/O part of `[edge]`: its listen addresses, its worker count (default: one per
    /// core) and its backend. This build serves SIP over UDP only: a `tcp:` or `tls:` listener
    /// is refused here, by name, rather than left silently unbound.
    pub fn from_edge(edge: &EdgeConfig) -> Result<Self, IoError> {
        if let Some((i, l)) = edge.listen.iter().enumerate().find(|(_, l)| l.transport != Transport::Udp) {
            return Err(IoError::InvalidConfig {
                field: "listen",
                reason: format!(
                    "edge.listen[{i}] = {l}: TCP and TLS listeners are not served by this build; \
                     list udp: addresses only"
                ),
            });
        }
        let listen = edge.listen.iter().map(|l| l.addr).collect();
        Ok(Self {
            workers: edge.workers.unwrap_or_else(default_workers),
            backend: edge.io,
            ..Self::new(listen)
        })
    }

    /// Checks every bound; the error names the field.
    pub fn validate(&self) -> Result<(), IoError> {
        let bad = |field: &'static str, reason: String| Err(IoError::InvalidConfig { field, reason });
        if self.listen.is_empty() || self.listen.len() > MAX_LISTEN {
            return bad("listen", format!("needs 1..={MAX_LISTEN} UDP addresses, got {}", self.listen.len()));
        }
        if let Some(dup) =
            self.listen.iter().enumerate().find(|(i, a)| a.port() != 0 && self.listen[..*i].contains(a))
        {
            // SO_REUSEPORT would let the second socket join the first one's group silently.
            return bad("listen", format!("{} is listed twice", dup.1));
        }
        if !(1..=MAX_WORKERS).contains(&self.workers) {
            return bad("workers", format!("{} is outside 1..={MAX_WORKERS}", self.workers));
        }
        if !self.ring_entries.is_power_of_two() || self.ring_entries > MAX_RING_ENTRIES {
            return bad(
                "ring_entries",
                format!("{} is not a power of two up to {MAX_RING_ENTRIES}", self.ring_entries),
            );
        }
        if !self.buf_ring_entries.is_power_of_two() || self.buf_ring_entries > MAX_BUF_RING_ENTRIES {
            return bad(
                "buf_ring_entries",
                format!("{} is not a power of two up to {MAX_BUF_RING_ENTRIES}", self.buf_ring_entries),
            );
        }
        if !(MIN_DATAGRAM_BYTES..=MAX_DATAGRAM_BYTES).contains(&self.max_datagram_bytes) {
            return bad(
                "max_datagram_bytes",
                format!("{} is outside {MIN_DATAGRAM_BYTES}..={MAX_DATAGRAM_BYTES}", self.max_datagram_bytes),
            );
        }
        if !(1..=MAX_SEND_POOL_SLOTS).contains(&self.send_pool_slots) {
            return bad(
                "send_pool_slots",
                format!("{} is outside 1..={MAX_SEND_POOL_SLOTS}", self.send_pool_slots),
            );
        }
        Ok(())
    }
}

/// One worker per core the process may run on.
fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from).min(MAX_WORKERS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use control::config::Config;

    #[test]
    fn edge_config_maps_udp_and_refuses_what_is_not_served() {
        let c = Config::from_toml(
            "[edge]\nlisten = [\"udp:127.0.0.1:5060\", \"udp:[::1]:5062\"]\nworkers = 3\nio = \"portable\"\n",
        )
        .unwrap();
        let io = IoConfig::from_edge(&c.edge).unwrap();
        assert_eq!(io.listen, vec!["127.0.0.1:5060".parse().unwrap(), "[::1]:5062".parse().unwrap()]);
        assert_eq!(io.workers, 3);
        assert_eq!(io.backend, IoBackend::Portable);
        assert!(io.validate().is_ok());
        for listener in ["tcp:127.0.0.1:5060", "tls:[::1]:5061"] {
            let c =
                Config::from_toml(&format!("[edge]\nlisten = [\"udp:127.0.0.1:5060\", \"{listener}\"]\n"))
                    .unwrap();
            match IoConfig::from_edge(&c.edge) {
                Err(IoError::InvalidConfig { field: "listen", reason }) => {
                    assert!(reason.starts_with(&format!("edge.listen[1] = {listener}: ")), "{reason}")
                }
                other => panic!("{listener}: {other:?}"),
            }
        }
    }

    #[test]
    fn bounds_are_checked_by_field() {
        let ok = IoConfig::new(vec!["127.0.0.1:0".parse().unwrap(); 2]);
        assert!(ok.validate().is_ok(), "port 0 twice: two ports");
        let twice = vec!["127.0.0.1:5060".parse().unwrap(); 2];
        let cases: [(&str, IoConfig); 7] = [
            ("listen", IoConfig { listen: vec![], ..ok.clone() }),
            ("listen", IoConfig { listen: twice, ..ok.clone() }),
            ("workers", IoConfig { workers: 0, ..ok.clone() }),
            ("ring_entries", IoConfig { ring_entries: 1000, ..ok.clone() }),
            ("buf_ring_entries", IoConfig { buf_ring_entries: 0, ..ok.clone() }),
            ("max_datagram_bytes", IoConfig { max_datagram_bytes: MAX_DATAGRAM_BYTES + 1, ..ok.clone() }),
            ("send_pool_slots", IoConfig { send_pool_slots: 0, ..ok.clone() }),
        ];
        for (want, c) in cases {
            match c.validate() {
                Err(IoError::InvalidConfig { field, .. }) => assert_eq!(field, want),
                other => panic!("{want}: {other:?}"),
            }
        }
    }
}
