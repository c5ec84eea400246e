//! The listen sockets (one per worker and listen address, grouped by `SO_REUSEPORT`) and the
//! byte-level `sockaddr` encoding both backends hand to the kernel.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};

use socket2::{Domain, Protocol, Socket, Type};

use super::IoError;
use super::config::IoConfig;

/// Bytes of the largest socket address we exchange with the kernel (`sockaddr_in6`).
pub(super) const SOCKADDR_BYTES: usize = std::mem::size_of::<libc::sockaddr_in6>();

/// A `sockaddr_in` or `sockaddr_in6` as raw bytes, aligned like the C structs.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(4))]
pub(super) struct SockAddrBuf(pub(super) [u8; SOCKADDR_BYTES]);

impl SockAddrBuf {
    pub(super) const ZERO: Self = Self([0; SOCKADDR_BYTES]);
}

/// Writes `addr` as the C struct of its family; returns its length.
pub(super) fn encode_sockaddr(addr: &SocketAddr, out: &mut SockAddrBuf) -> libc::socklen_t {
    let b = &mut out.0;
    *b = [0; SOCKADDR_BYTES];
    b[2..4].copy_from_slice(&addr.port().to_be_bytes());
    match addr {
        SocketAddr::V4(a) => {
            b[0..2].copy_from_slice(&(libc::AF_INET as libc::sa_family_t).to_ne_bytes());
            b[4..8].copy_from_slice(&a.ip().octets());
            socklen_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            b[0..2].copy_from_slice(&(libc::AF_INET6 as libc::sa_family_t).to_ne_bytes());
            b[4..8].copy_from_slice(&a.flowinfo().to_be_bytes());
            b[8..24].copy_from_slice(&a.ip().octets());
            b[24..28].copy_from_slice(&a.scope_id().to_ne_bytes());
            socklen_of::<libc::sockaddr_in6>()
        }
    }
}

/// Reads a `sockaddr_in` or `sockaddr_in6` the kernel wrote; `None` for another family or a
/// short buffer.
pub(super) fn decode_sockaddr(b: &[u8]) -> Option<SocketAddr> {
    let family = libc::sa_family_t::from_ne_bytes(b.get(0..2)?.try_into().ok()?);
    let port = u16::from_be_bytes(b.get(2..4)?.try_into().ok()?);
    match i32::from(family) {
        libc::AF_INET => {
            let ip: [u8; 4] = b.get(4..8)?.try_into().ok()?;
            Some(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port)))
        }
        libc::AF_INET6 => {
            let flowinfo = u32::from_be_bytes(b.get(4..8)?.try_into().ok()?);
            let ip: [u8; 16] = b.get(8..24)?.try_into().ok()?;
            let scope = u32::from_ne_bytes(b.get(24..28)?.try_into().ok()?);
            Some(SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(ip), port, flowinfo, scope)))
        }
        _ => None,
    }
}

fn socklen_of<T>() -> libc::socklen_t {
    // Both structs are under 32 bytes: the conversion cannot truncate.
    std::mem::size_of::<T>() as libc::socklen_t
}

/// Every worker's sockets, `[worker][listen index]`, their addresses, and the address each
/// shared listen entry got.
#[derive(Debug)]
pub(super) struct BoundSockets {
    pub(super) per_worker: Vec<Vec<UdpSocket>>,
    /// `[worker][listen index]`: the shared listen addresses, then the worker's private ones.
    pub(super) worker_addrs: Vec<Vec<SocketAddr>>,
    pub(super) local_addrs: Vec<SocketAddr>,
}

/// Binds one socket per worker and listen address, all of one address in one `SO_REUSEPORT`
/// group, so the kernel spreads datagrams over the workers by flow hash.
///
/// Port 0: the first socket binds without `SO_REUSEPORT`, so the kernel picks a port nobody
/// holds (with it set, an ephemeral bind may join another process's group on the same port);
/// the option is set right after, and the other workers bind to the port it got.
pub(super) fn bind_all(cfg: &IoConfig) -> Result<BoundSockets, IoError> {
    let mut per_worker: Vec<Vec<UdpSocket>> = (0..cfg.workers).map(|_| Vec::new()).collect();
    let mut local_addrs = Vec::with_capacity(cfg.listen.len());
    for &want in &cfg.listen {
        let mut bound = want;
        for (w, sockets) in per_worker.iter_mut().enumerate() {
            let first = w == 0;
            let socket = new_socket(&bound, cfg.socket_buffer_bytes)?;
            let reuse_before_bind = !(first && want.port() == 0);
            if reuse_before_bind {
                socket.set_reuse_port(true).map_err(|e| sock_err("SO_REUSEPORT", bound, e))?;
            }
            socket.bind(&bound.into()).map_err(|source| IoError::Bind { addr: bound, source })?;
            if !reuse_before_bind {
                socket.set_reuse_port(true).map_err(|e| sock_err("SO_REUSEPORT", bound, e))?;
            }
            if first {
                bound = socket
                    .local_addr()
                    .map_err(|e| sock_err("getsockname", want, e))?
                    .as_socket()
                    .ok_or_else(|| sock_err("getsockname", want, std::io::ErrorKind::InvalidData.into()))?;
            }
            sockets.push(socket.into());
        }
        local_addrs.push(bound);
    }
    let mut worker_addrs = vec![local_addrs.clone(); cfg.workers];
    if cfg.private_ports {
        for (sockets, addrs) in per_worker.iter_mut().zip(worker_addrs.iter_mut()) {
            for shared in &local_addrs {
                let want = SocketAddr::new(shared.ip(), 0);
                let socket = new_socket(&want, cfg.socket_buffer_bytes)?;
                socket.bind(&want.into()).map_err(|source| IoError::Bind { addr: want, source })?;
                let got = socket
                    .local_addr()
                    .map_err(|e| sock_err("getsockname", want, e))?
                    .as_socket()
                    .ok_or_else(|| sock_err("getsockname", want, std::io::ErrorKind::InvalidData.into()))?;
                sockets.push(socket.into());
                addrs.push(got);
            }
        }
    }
    Ok(BoundSockets { per_worker, worker_addrs, local_addrs })
}

fn new_socket(addr: &SocketAddr, buffer_bytes: usize) -> Result<Socket, IoError> {
    let socket =
        Socket::new(Domain::for_address(*addr), Type::DGRAM.nonblocking().cloexec(), Some(Protocol::UDP))
            .map_err(|e| sock_err("socket", *addr, e))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true).map_err(|e| sock_err("IPV6_V6ONLY", *addr, e))?;
    }
    socket.set_recv_buffer_size(buffer_bytes).map_err(|e| sock_err("SO_RCVBUF", *addr, e))?;
    socket.set_send_buffer_size(buffer_bytes).map_err(|e| sock_err("SO_SNDBUF", *addr, e))?;
    Ok(socket)
}

fn sock_err(op: &'static str, addr: SocketAddr, source: std::io::Error) -> IoError {
    IoError::Socket { op, addr, source }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn private_ports_are_per_worker_and_follow_the_shared_ones() {
        let cfg = IoConfig {
            workers: 2,
            private_ports: true,
            ..IoConfig::new(vec!["127.0.0.1:0".parse().unwrap(), "127.0.0.1:0".parse().unwrap()])
        };
        let bound = bind_all(&cfg).unwrap();
        let mut ports = BTreeSet::new();
        for (sockets, addrs) in bound.per_worker.iter().zip(&bound.worker_addrs) {
            assert_eq!(sockets.len(), 4);
            assert_eq!(addrs[..2], bound.local_addrs[..]);
            for (socket, addr) in sockets.iter().zip(addrs) {
                assert_eq!(socket.local_addr().unwrap(), *addr);
            }
            ports.extend(addrs[2..].iter().map(SocketAddr::port));
        }
        assert_eq!(ports.len(), 4, "every private port is distinct");
        assert!(bound.local_addrs.iter().all(|a| !ports.contains(&a.port())));
    }

    #[test]
    fn sockaddr_round_trips_both_families() {
        for s in ["192.0.2.7:5060", "[2001:db8::1]:5061", "[fe80::1%3]:1"] {
            let addr: SocketAddr = s.parse().unwrap();
            let mut buf = SockAddrBuf::ZERO;
            let len = encode_sockaddr(&addr, &mut buf) as usize;
            assert_eq!(decode_sockaddr(&buf.0[..len]), Some(addr), "{s}");
        }
    }

    #[test]
    fn sockaddr_decode_rejects_short_and_foreign() {
        let mut buf = SockAddrBuf::ZERO;
        let len = encode_sockaddr(&"[::1]:5".parse().unwrap(), &mut buf) as usize;
        assert_eq!(decode_sockaddr(&buf.0[..len - 1]), None);
        assert_eq!(decode_sockaddr(&[]), None);
        buf.0[0..2].copy_from_slice(&(libc::AF_UNIX as libc::sa_family_t).to_ne_bytes());
        assert_eq!(decode_sockaddr(&buf.0), None);
    }

    #[test]
    fn port_zero_shares_one_port_across_workers() {
        let cfg = IoConfig { workers: 3, ..IoConfig::new(vec!["127.0.0.1:0".parse().unwrap()]) };
        let bound = bind_all(&cfg).unwrap();
        let port = bound.local_addrs[0].port();
        assert_ne!(port, 0);
        for sockets in &bound.per_worker {
            assert_eq!(sockets.len(), 1);
            assert_eq!(sockets[0].local_addr().unwrap().port(), port);
        }
        assert!(bound.worker_addrs.iter().all(|a| a == &bound.local_addrs));
    }
}
