//! The frame parser of the user-space model: the same steps and limits as `xdp/parsing.h`,
//! over a byte slice. No panics on any input: every read is checked.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::shared::{MAX_IPV6_EXT_HDRS, MAX_VLAN_DEPTH};

const ETH_HLEN: usize = 14;
const VLAN_HLEN: usize = 4;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88A8;
const IPV4_MIN_HLEN: usize = 20;
const IPV4_MF: u16 = 0x2000;
const IPV4_OFFSET_MASK: u16 = 0x1fff;
const IPV6_HLEN: usize = 40;
const NH_HOPOPTS: u8 = 0;
const NH_ROUTING: u8 = 43;
const NH_FRAGMENT: u8 = 44;
const NH_AH: u8 = 51;
const NH_DSTOPTS: u8 = 60;
const IPV6_FRAG_HLEN: usize = 8;
const UDP_HLEN: usize = 8;
const TCP_HLEN: usize = 20;
/// IP protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;
/// IP protocol number of TCP.
pub const IPPROTO_TCP: u8 = 6;

/// Where a datagram sits in its fragment series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frag {
    /// Not fragmented.
    None,
    /// First fragment (carries the transport header).
    First,
    /// A later fragment (no transport header).
    Later,
}

/// What the filter needs from one frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed<'a> {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IP protocol of the transport header (or of the fragment's payload).
    pub proto: u8,
    /// Fragment position.
    pub frag: Frag,
    /// IPv4 identification or IPv6 fragment identification.
    pub frag_id: u32,
    /// Destination port (0 for later fragments and non-UDP/TCP protocols).
    pub dport: u16,
    /// Offset of the transport payload from the start of the frame.
    pub payload_off: usize,
    /// The transport payload (UDP data; for TCP, what follows the fixed header).
    pub payload: &'a [u8],
}

/// Why a frame was not parsed to its transport header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unparsed {
    /// Truncated or impossible headers, or deeper stacking than the limits.
    Malformed,
    /// Not IP.
    NotIp,
    /// IP, but neither UDP nor TCP (and not a later fragment).
    OtherProtocol,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn array<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
    b.get(at..at + N)?.try_into().ok()
}

/// Parses Ethernet, up to [`MAX_VLAN_DEPTH`] VLAN tags, IPv4 or IPv6 (up to
/// [`MAX_IPV6_EXT_HDRS`] extension headers), and the UDP or TCP header.
pub fn parse(frame: &[u8]) -> Result<Parsed<'_>, Unparsed> {
    use Unparsed::Malformed;
    let mut pos = ETH_HLEN;
    let mut ethertype = be16(frame, 12).ok_or(Malformed)?;
    for _ in 0..MAX_VLAN_DEPTH {
        if ethertype != ETH_P_8021Q && ethertype != ETH_P_8021AD {
            break;
        }
        ethertype = be16(frame, pos + 2).ok_or(Malformed)?;
        pos += VLAN_HLEN;
    }
    if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        return Err(Malformed);
    }
    let (mut p, l4) = match ethertype {
        ETH_P_IP => parse_ipv4(frame, pos)?,
        ETH_P_IPV6 => parse_ipv6(frame, pos)?,
        _ => return Err(Unparsed::NotIp),
    };
    if p.frag == Frag::Later {
        return Ok(p);
    }
    let hlen = match p.proto {
        IPPROTO_UDP => UDP_HLEN,
        IPPROTO_TCP => TCP_HLEN,
        _ => return Err(Unparsed::OtherProtocol),
    };
    if frame.len() < l4 + hlen {
        return Err(Malformed);
    }
    p.dport = be16(frame, l4 + 2).ok_or(Malformed)?;
    p.payload_off = l4 + hlen;
    p.payload = frame.get(l4 + hlen..).ok_or(Malformed)?;
    Ok(p)
}

/// Returns the parsed IP part and the offset of the transport header.
fn parse_ipv4(frame: &[u8], at: usize) -> Result<(Parsed<'_>, usize), Unparsed> {
    use Unparsed::Malformed;
    let first = *frame.get(at).ok_or(Malformed)?;
    if frame.len() < at + IPV4_MIN_HLEN {
        return Err(Malformed);
    }
    let hlen = usize::from(first & 0x0f) * 4;
    if first >> 4 != 4 || hlen < IPV4_MIN_HLEN || frame.len() < at + hlen {
        return Err(Malformed);
    }
    let flags = be16(frame, at + 6).ok_or(Malformed)?;
    let frag = if flags & IPV4_OFFSET_MASK != 0 {
        Frag::Later
    } else if flags & IPV4_MF != 0 {
        Frag::First
    } else {
        Frag::None
    };
    let parsed = Parsed {
        src: IpAddr::V4(Ipv4Addr::from(array::<4>(frame, at + 12).ok_or(Malformed)?)),
        dst: IpAddr::V4(Ipv4Addr::from(array::<4>(frame, at + 16).ok_or(Malformed)?)),
        proto: *frame.get(at + 9).ok_or(Malformed)?,
        frag,
        frag_id: u32::from(be16(frame, at + 4).ok_or(Malformed)?),
        dport: 0,
        payload_off: 0,
        payload: &[],
    };
    Ok((parsed, at + hlen))
}

fn parse_ipv6(frame: &[u8], at: usize) -> Result<(Parsed<'_>, usize), Unparsed> {
    use Unparsed::Malformed;
    if frame.len() < at + IPV6_HLEN {
        return Err(Malformed);
    }
    if frame.get(at).ok_or(Malformed)? >> 4 != 6 {
        return Err(Malformed);
    }
    let mut p = Parsed {
        src: IpAddr::V6(Ipv6Addr::from(array::<16>(frame, at + 8).ok_or(Malformed)?)),
        dst: IpAddr::V6(Ipv6Addr::from(array::<16>(frame, at + 24).ok_or(Malformed)?)),
        proto: 0,
        frag: Frag::None,
        frag_id: 0,
        dport: 0,
        payload_off: 0,
        payload: &[],
    };
    let mut nh = *frame.get(at + 6).ok_or(Malformed)?;
    let mut pos = at + IPV6_HLEN;
    for _ in 0..MAX_IPV6_EXT_HDRS {
        match nh {
            NH_FRAGMENT => {
                if frame.len() < pos + IPV6_FRAG_HLEN {
                    return Err(Malformed);
                }
                let off = be16(frame, pos + 2).ok_or(Malformed)?;
                p.frag_id = be32(frame, pos + 4).ok_or(Malformed)?;
                let next = *frame.get(pos).ok_or(Malformed)?;
                pos += IPV6_FRAG_HLEN;
                if off & 0xfff8 != 0 {
                    p.frag = Frag::Later;
                    p.proto = next;
                    return Ok((p, pos));
                }
                if off & 1 != 0 {
                    p.frag = Frag::First;
                }
                nh = next;
            }
            NH_HOPOPTS | NH_ROUTING | NH_DSTOPTS | NH_AH => {
                let hdrlen = usize::from(*frame.get(pos + 1).ok_or(Malformed)?);
                let len = if nh == NH_AH { (hdrlen + 2) * 4 } else { (hdrlen + 1) * 8 };
                if frame.len() < pos + len {
                    return Err(Malformed);
                }
                nh = *frame.get(pos).ok_or(Malformed)?;
                pos += len;
            }
            _ => break,
        }
    }
    if matches!(nh, NH_HOPOPTS | NH_ROUTING | NH_DSTOPTS | NH_AH | NH_FRAGMENT) {
        return Err(Malformed);
    }
    p.proto = nh;
    Ok((p, pos))
}
