//! `flood`: a SIP-sized UDP flood from many source addresses, sent as raw frames with
//! `sendmmsg` on an AF_PACKET socket, as fast as one core can, for a bounded time.
//!
//! Safety rails: it only sends on a veth interface, and only from inside a named network
//! namespace (`ip netns add`; the benchmark script and the tests create both).
//!
//! ```text
//! flood --interface a0 --dst-mac 02:..:02 --src-net 10.99.1.0/24 --dst 10.99.0.1 \
//!       --dport 5060 --size 400 --seconds 3
//! ```
//! Prints one JSON line: `{"sent":N,"seconds":S,"pps":P,"sources":K,"frame_bytes":B}`.

use std::ffi::CString;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::Parser;
use ebpf::craft::{FrameSpec, sip_options};
use ipnet::IpNet;

/// Frames per `sendmmsg` call.
const BATCH: usize = 64;
/// Longest run accepted, seconds (the flood is always bounded).
const MAX_SECONDS: f64 = 60.0;
/// Most distinct source addresses.
const MAX_SOURCES: usize = 65_536;
/// Largest SIP payload, bytes (one Ethernet MTU).
const MAX_PAYLOAD: usize = 1_400;

#[derive(Debug, Parser)]
#[command(about = "SIP-sized UDP flood over AF_PACKET on a veth inside a test namespace")]
struct Args {
    /// veth interface to send on (in the current network namespace).
    #[arg(long)]
    interface: String,
    /// Destination MAC (the peer veth's), e.g. 02:00:00:00:00:02.
    #[arg(long)]
    dst_mac: String,
    /// Source addresses are taken from this prefix, cycling.
    #[arg(long)]
    src_net: IpNet,
    /// How many source addresses to cycle through.
    #[arg(long, default_value_t = 256)]
    sources: usize,
    /// Destination address.
    #[arg(long)]
    dst: IpAddr,
    /// Destination port.
    #[arg(long, default_value_t = 5060)]
    dport: u16,
    /// SIP payload size, bytes.
    #[arg(long, default_value_t = 400)]
    size: usize,
    /// User-Agent of the flood's OPTIONS requests.
    #[arg(long, default_value = "flood/1.0")]
    user_agent: String,
    /// Duration, seconds.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Stop after this many frames (0: only the duration bounds the run).
    #[arg(long, default_value_t = 0)]
    count: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(args.seconds > 0.0 && args.seconds <= MAX_SECONDS, "--seconds must be in (0, {MAX_SECONDS}]");
    ensure!((1..=MAX_SOURCES).contains(&args.sources), "--sources must be 1..={MAX_SOURCES}");
    ensure!(args.size <= MAX_PAYLOAD, "--size must be at most {MAX_PAYLOAD}");
    ensure!(args.src_net.addr().is_ipv4() == args.dst.is_ipv4(), "--src-net and --dst: same family");
    guard_namespace_and_veth(&args.interface)?;
    let dst_mac = parse_mac(&args.dst_mac)?;
    let src_mac = interface_mac(&args.interface)?;
    let payload = sip_options(&args.user_agent, args.size);
    let frames: Vec<Vec<u8>> = args
        .src_net
        .hosts()
        .take(args.sources)
        .map(|src| {
            let mut spec = FrameSpec::udp(src, args.dst, 40_000, args.dport, &payload);
            spec.src_mac = src_mac;
            spec.dst_mac = dst_mac;
            spec.build()
        })
        .collect();
    ensure!(!frames.is_empty(), "--src-net has no host addresses");
    // Repeat the frames to a whole number of batches, and build every message header once:
    // the send loop then allocates nothing.
    let per_cycle = frames.len().div_ceil(BATCH) * BATCH;
    let cycle: Vec<&[u8]> =
        (0..per_cycle).filter_map(|i| frames.get(i % frames.len())).map(Vec::as_slice).collect();
    let sock = PacketSocket::open(&args.interface)?;
    let mut iovs: Vec<libc::iovec> = cycle
        .iter()
        .map(|f| libc::iovec { iov_base: f.as_ptr() as *mut libc::c_void, iov_len: f.len() })
        .collect();
    let mut msgs: Vec<libc::mmsghdr> = iovs.iter_mut().map(|iov| sock.header(iov)).collect();
    let deadline = Duration::from_secs_f64(args.seconds);
    let start = Instant::now();
    let mut sent: u64 = 0;
    let mut batch = 0usize;
    while start.elapsed() < deadline && (args.count == 0 || sent < args.count) {
        let left = if args.count == 0 { BATCH as u64 } else { args.count - sent };
        let want = BATCH.min(usize::try_from(left).unwrap_or(BATCH));
        let first = batch * BATCH;
        let Some(slice) = msgs.get_mut(first..first + want) else { break };
        sent += sock.send(slice)? as u64;
        batch = (batch + 1) % (per_cycle / BATCH);
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{{\"sent\":{sent},\"seconds\":{secs:.3},\"pps\":{:.0},\"sources\":{},\"frame_bytes\":{}}}",
        sent as f64 / secs,
        frames.len(),
        frames.first().map_or(0, Vec::len)
    );
    Ok(())
}

/// Where `ip netns add` keeps named network namespaces.
const NAMED_NETNS_DIR: &str = "/var/run/netns";

/// Refuses to run outside a named network namespace (one `ip netns add` made, as the script and
/// the tests do) and on anything but a veth.
fn guard_namespace_and_veth(ifname: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let own = std::fs::metadata("/proc/self/ns/net").context("/proc/self/ns/net")?;
    let named = std::fs::read_dir(NAMED_NETNS_DIR)
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter_map(|e| std::fs::metadata(e.path()).ok())
                .any(|m| m.ino() == own.ino() && m.dev() == own.dev())
        })
        .unwrap_or(false);
    ensure!(named, "refusing to flood outside a named test namespace (see {NAMED_NETNS_DIR})");
    let driver = driver_name(ifname)?;
    ensure!(driver == "veth", "refusing to flood {ifname}: driver {driver:?}, not veth");
    Ok(())
}

fn parse_mac(s: &str) -> anyhow::Result<[u8; 6]> {
    let mut mac = [0u8; 6];
    let parts: Vec<&str> = s.split(':').collect();
    ensure!(parts.len() == 6, "MAC {s:?}: six hex bytes separated by ':'");
    for (m, p) in mac.iter_mut().zip(parts) {
        *m = u8::from_str_radix(p, 16).with_context(|| format!("MAC {s:?}"))?;
    }
    Ok(mac)
}

/// An `ifreq` for `ifname` (checked to fit `IFNAMSIZ`).
fn ifreq(ifname: &str) -> anyhow::Result<libc::ifreq> {
    let name = CString::new(ifname).context("interface name")?;
    let bytes = name.as_bytes_with_nul();
    ensure!(bytes.len() <= libc::IFNAMSIZ, "interface name too long");
    // SAFETY: ifreq is a plain C struct (integers, arrays, a union of such): all-zero is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    Ok(req)
}

/// A datagram socket for interface ioctls, closed on drop.
struct IoctlSocket(libc::c_int);

impl IoctlSocket {
    fn open() -> anyhow::Result<Self> {
        // SAFETY: plain socket(2) call; the fd is owned by the returned value.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) };
        ensure!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        Ok(IoctlSocket(fd))
    }
}

impl Drop for IoctlSocket {
    fn drop(&mut self) {
        // SAFETY: we own the fd and close it once.
        unsafe { libc::close(self.0) };
    }
}

const ETHTOOL_GDRVINFO: u32 = 0x0000_0003;

/// `struct ethtool_drvinfo` (linux/ethtool.h).
#[repr(C)]
struct EthtoolDrvinfo {
    cmd: u32,
    driver: [u8; 32],
    version: [u8; 32],
    fw_version: [u8; 32],
    bus_info: [u8; 32],
    erom_version: [u8; 32],
    reserved2: [u8; 12],
    n_priv_flags: u32,
    n_stats: u32,
    testinfo_len: u32,
    eedump_len: u32,
    regdump_len: u32,
}

fn driver_name(ifname: &str) -> anyhow::Result<String> {
    let sock = IoctlSocket::open()?;
    let mut info = EthtoolDrvinfo {
        cmd: ETHTOOL_GDRVINFO,
        driver: [0; 32],
        version: [0; 32],
        fw_version: [0; 32],
        bus_info: [0; 32],
        erom_version: [0; 32],
        reserved2: [0; 12],
        n_priv_flags: 0,
        n_stats: 0,
        testinfo_len: 0,
        eedump_len: 0,
        regdump_len: 0,
    };
    let mut req = ifreq(ifname)?;
    req.ifr_ifru.ifru_data = (&raw mut info).cast();
    // SAFETY: SIOCETHTOOL with ETHTOOL_GDRVINFO writes one ethtool_drvinfo into `info`, which
    // lives until after the call; `req` names the interface.
    let r = unsafe { libc::ioctl(sock.0, libc::SIOCETHTOOL, &mut req) };
    ensure!(r == 0, "{ifname}: ethtool driver info: {}", std::io::Error::last_os_error());
    let end = info.driver.iter().position(|b| *b == 0).unwrap_or(info.driver.len());
    Ok(String::from_utf8_lossy(info.driver.get(..end).unwrap_or_default()).into_owned())
}

fn interface_mac(ifname: &str) -> anyhow::Result<[u8; 6]> {
    let sock = IoctlSocket::open()?;
    let mut req = ifreq(ifname)?;
    // SAFETY: SIOCGIFHWADDR fills ifr_hwaddr of `req`, a valid ifreq naming the interface.
    let r = unsafe { libc::ioctl(sock.0, libc::SIOCGIFHWADDR, &mut req) };
    ensure!(r == 0, "{ifname}: hardware address: {}", std::io::Error::last_os_error());
    // SAFETY: after SIOCGIFHWADDR succeeded, the union holds ifru_hwaddr.
    let sa = unsafe { req.ifr_ifru.ifru_hwaddr };
    let mut mac = [0u8; 6];
    for (m, b) in mac.iter_mut().zip(sa.sa_data) {
        *m = b as u8;
    }
    Ok(mac)
}

/// An AF_PACKET raw socket bound to one interface.
struct PacketSocket {
    fd: libc::c_int,
    addr: libc::sockaddr_ll,
}

impl PacketSocket {
    fn open(ifname: &str) -> anyhow::Result<Self> {
        let name = CString::new(ifname).context("interface name")?;
        // SAFETY: `name` is NUL-terminated.
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        ensure!(index != 0, "{ifname}: no such interface");
        // SAFETY: plain socket(2) call; the fd is owned by the returned value.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
        ensure!(fd >= 0, "AF_PACKET socket: {}", std::io::Error::last_os_error());
        // SAFETY: sockaddr_ll is a plain C struct: all-zero is valid.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = i32::try_from(index).context("ifindex")?;
        addr.sll_halen = 6;
        let sock = PacketSocket { fd, addr };
        // SAFETY: `addr` is a valid sockaddr_ll of the given length.
        let r = unsafe {
            libc::bind(fd, (&raw const sock.addr).cast(), size_of::<libc::sockaddr_ll>() as libc::socklen_t)
        };
        ensure!(r == 0, "bind {ifname}: {}", std::io::Error::last_os_error());
        Ok(sock)
    }

    /// A message header sending `iov` to this socket's interface.
    fn header(&self, iov: &mut libc::iovec) -> libc::mmsghdr {
        // SAFETY: mmsghdr is a plain C struct: all-zero is valid.
        let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
        m.msg_hdr.msg_name = (&raw const self.addr).cast_mut().cast();
        m.msg_hdr.msg_namelen = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        m.msg_hdr.msg_iov = iov;
        m.msg_hdr.msg_iovlen = 1;
        m
    }

    /// Sends the messages with one `sendmmsg`; returns how many the kernel took.
    fn send(&self, msgs: &mut [libc::mmsghdr]) -> anyhow::Result<usize> {
        let len = libc::c_uint::try_from(msgs.len()).context("batch")?;
        // SAFETY: every header was built by `header` over an iovec of a frame and over
        // self.addr; the frames, iovecs and self outlive the call.
        let n = unsafe { libc::sendmmsg(self.fd, msgs.as_mut_ptr(), len, 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENOBUFS) || e.kind() == std::io::ErrorKind::WouldBlock {
                return Ok(0);
            }
            bail!("sendmmsg: {e}");
        }
        Ok(usize::try_from(n).unwrap_or(0))
    }
}

impl Drop for PacketSocket {
    fn drop(&mut self) {
        // SAFETY: we own the fd and close it once.
        unsafe { libc::close(self.fd) };
    }
}
