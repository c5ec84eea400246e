//! Crafting Ethernet frames: the packet table of the tests, the cost benchmark, and the flood
//! generator all build their frames here, so that they exercise the same bytes.

use std::net::IpAddr;

use crate::frame::{IPPROTO_TCP, IPPROTO_UDP};

/// EtherType of an 802.1Q tag.
pub const ETH_P_8021Q: u16 = 0x8100;
/// EtherType of an 802.1ad (outer, QinQ) tag.
pub const ETH_P_8021AD: u16 = 0x88A8;
/// IPv6 hop-by-hop options header.
pub const NH_HOPOPTS: u8 = 0;
/// IPv6 destination options header.
pub const NH_DSTOPTS: u8 = 60;
/// IPv6 routing header.
pub const NH_ROUTING: u8 = 43;
const NH_FRAGMENT: u8 = 44;
const IPV4_MF: u16 = 0x2000;
const DEFAULT_TTL: u8 = 64;

/// Fragment position of a crafted datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fragment {
    /// Not fragmented.
    None,
    /// First fragment (more fragments follow), with this identification.
    First(u32),
    /// A later fragment: identification and offset in 8-byte units (non-zero).
    Later(u32, u16),
}

/// A frame to craft. Build with [`FrameSpec::udp`] or [`FrameSpec::tcp`], adjust, [`build`].
///
/// [`build`]: FrameSpec::build
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameSpec {
    /// Source MAC.
    pub src_mac: [u8; 6],
    /// Destination MAC.
    pub dst_mac: [u8; 6],
    /// VLAN tags, outermost first: (TPID, VLAN id).
    pub vlans: Vec<(u16, u16)>,
    /// Source address.
    pub src: IpAddr,
    /// Destination address (same family as `src`).
    pub dst: IpAddr,
    /// IP protocol (UDP, TCP, or anything else for a bare payload).
    pub proto: u8,
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// Transport payload.
    pub payload: Vec<u8>,
    /// IPv4 options length in 32-bit words (0..=10), filled with NOP.
    pub ipv4_option_words: u8,
    /// IPv6 extension headers (8 bytes each) before the transport header.
    pub ipv6_ext: Vec<u8>,
    /// Fragmentation.
    pub fragment: Fragment,
}

impl FrameSpec {
    /// A UDP datagram.
    pub fn udp(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, payload: &[u8]) -> Self {
        FrameSpec {
            src_mac: [0x02, 0, 0, 0, 0, 1],
            dst_mac: [0x02, 0, 0, 0, 0, 2],
            vlans: Vec::new(),
            src,
            dst,
            proto: IPPROTO_UDP,
            sport,
            dport,
            payload: payload.to_vec(),
            ipv4_option_words: 0,
            ipv6_ext: Vec::new(),
            fragment: Fragment::None,
        }
    }

    /// A TCP segment (ACK|PSH) carrying `payload`.
    pub fn tcp(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, payload: &[u8]) -> Self {
        FrameSpec { proto: IPPROTO_TCP, ..Self::udp(src, dst, sport, dport, payload) }
    }

    /// The frame's bytes (IPv4 header checksum and lengths filled; UDP checksum 0).
    pub fn build(&self) -> Vec<u8> {
        let mut f = Vec::with_capacity(128 + self.payload.len());
        f.extend_from_slice(&self.dst_mac);
        f.extend_from_slice(&self.src_mac);
        for (tpid, id) in &self.vlans {
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&(id & 0x0fff).to_be_bytes());
        }
        let l4 = self.transport();
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                f.extend_from_slice(&0x0800u16.to_be_bytes());
                let opt_len = usize::from(self.ipv4_option_words.min(10)) * 4;
                let hlen = 20 + opt_len;
                let total = u16::try_from(hlen + l4.len()).unwrap_or(u16::MAX);
                let (id, frag) = match self.fragment {
                    Fragment::None => (0u16, 0u16),
                    Fragment::First(id) => (id as u16, IPV4_MF),
                    Fragment::Later(id, off) => (id as u16, off & 0x1fff),
                };
                let start = f.len();
                f.push(0x40 | u8::try_from(hlen / 4).unwrap_or(15));
                f.push(0);
                f.extend_from_slice(&total.to_be_bytes());
                f.extend_from_slice(&id.to_be_bytes());
                f.extend_from_slice(&frag.to_be_bytes());
                f.push(DEFAULT_TTL);
                f.push(self.proto);
                f.extend_from_slice(&[0, 0]);
                f.extend_from_slice(&s.octets());
                f.extend_from_slice(&d.octets());
                f.resize(f.len() + opt_len, 1); // NOP options
                let sum = checksum(&f[start..start + hlen]);
                f[start + 10..start + 12].copy_from_slice(&sum.to_be_bytes());
            }
            (s, d) => {
                let (s, d) = (v6_octets(s), v6_octets(d));
                f.extend_from_slice(&0x86DDu16.to_be_bytes());
                let mut chain: Vec<u8> = self.ipv6_ext.clone();
                if !matches!(self.fragment, Fragment::None) {
                    chain.push(NH_FRAGMENT);
                }
                let ext_len = chain.len() * 8;
                let plen = u16::try_from(ext_len + l4.len()).unwrap_or(u16::MAX);
                f.extend_from_slice(&[0x60, 0, 0, 0]);
                f.extend_from_slice(&plen.to_be_bytes());
                f.push(chain.first().copied().unwrap_or(self.proto));
                f.push(DEFAULT_TTL);
                f.extend_from_slice(&s);
                f.extend_from_slice(&d);
                for (i, h) in chain.iter().enumerate() {
                    let next = chain.get(i + 1).copied().unwrap_or(self.proto);
                    if *h == NH_FRAGMENT {
                        let (id, off) = match self.fragment {
                            Fragment::First(id) => (id, 1u16),
                            Fragment::Later(id, off) => (id, off << 3),
                            Fragment::None => (0, 0),
                        };
                        f.extend_from_slice(&[next, 0]);
                        f.extend_from_slice(&off.to_be_bytes());
                        f.extend_from_slice(&id.to_be_bytes());
                    } else {
                        // hdrlen 0: 8 bytes; PadN option filling the rest.
                        f.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]);
                    }
                }
            }
        }
        f.extend_from_slice(&l4);
        f
    }

    fn transport(&self) -> Vec<u8> {
        let mut t = Vec::with_capacity(20 + self.payload.len());
        if matches!(self.fragment, Fragment::Later(..)) {
            t.extend_from_slice(&self.payload);
            return t;
        }
        match self.proto {
            IPPROTO_UDP => {
                let len = u16::try_from(8 + self.payload.len()).unwrap_or(u16::MAX);
                t.extend_from_slice(&self.sport.to_be_bytes());
                t.extend_from_slice(&self.dport.to_be_bytes());
                t.extend_from_slice(&len.to_be_bytes());
                t.extend_from_slice(&[0, 0]);
            }
            IPPROTO_TCP => {
                t.extend_from_slice(&self.sport.to_be_bytes());
                t.extend_from_slice(&self.dport.to_be_bytes());
                t.extend_from_slice(&1u32.to_be_bytes()); // seq
                t.extend_from_slice(&1u32.to_be_bytes()); // ack
                t.extend_from_slice(&[0x50, 0x18]); // data offset 5, ACK|PSH
                t.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]); // window, checksum, urgent
            }
            _ => {}
        }
        t.extend_from_slice(&self.payload);
        t
    }
}

fn v6_octets(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V6(a) => a.octets(),
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
    }
}

/// The Internet checksum (RFC 1071) of `bytes`.
pub fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for pair in bytes.chunks(2) {
        let hi = u32::from(pair.first().copied().unwrap_or(0)) << 8;
        let lo = u32::from(pair.get(1).copied().unwrap_or(0));
        sum += hi | lo;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A SIP OPTIONS request of about `size` bytes (padded with a Subject header) with the given
/// User-Agent: what the flood and the tests send.
pub fn sip_options(user_agent: &str, size: usize) -> Vec<u8> {
    let mut m = format!(
        "OPTIONS sip:100@192.0.2.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bK-flood\r\n\
         From: <sip:probe@192.0.2.9>;tag=1\r\n\
         To: <sip:100@192.0.2.1>\r\n\
         Call-ID: flood@192.0.2.9\r\n\
         CSeq: 1 OPTIONS\r\n\
         User-Agent: {user_agent}\r\n\
         Max-Forwards: 70\r\n"
    )
    .into_bytes();
    let pad = size.saturating_sub(m.len() + 2 + "Subject: \r\n".len() + "Content-Length: 0\r\n".len());
    if pad > 0 {
        m.extend_from_slice(b"Subject: ");
        m.resize(m.len() + pad, b'x');
        m.extend_from_slice(b"\r\n");
    }
    m.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{Frag, parse};

    #[test]
    fn crafted_frames_parse_back() {
        let payload = sip_options("probe", 400);
        assert!((395..=405).contains(&payload.len()), "{}", payload.len());
        let mut spec =
            FrameSpec::udp("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap(), 4000, 5060, &payload);
        spec.vlans = vec![(ETH_P_8021AD, 10), (ETH_P_8021Q, 20)];
        spec.ipv4_option_words = 3;
        let frame = spec.build();
        let p = parse(&frame).unwrap();
        assert_eq!(p.dport, 5060);
        assert_eq!(p.payload, &payload[..]);
        let ip = &frame[22..22 + 32];
        assert_eq!(checksum(ip), 0, "header checksum verifies");

        let mut v6 =
            FrameSpec::tcp("2001:db8::1".parse().unwrap(), "2001:db8::2".parse().unwrap(), 4000, 5061, b"x");
        v6.ipv6_ext = vec![NH_HOPOPTS, NH_DSTOPTS];
        v6.fragment = Fragment::First(77);
        let frame = v6.build();
        let p = parse(&frame).unwrap();
        assert_eq!((p.dport, p.frag, p.frag_id), (5061, Frag::First, 77));
    }
}
