//! The filter's policy in user space: what the admission guard runs when XDP is unavailable
//! (no CAP_BPF/CAP_NET_ADMIN, no interface). It mirrors `xdp/sipedge_xdp.c` step for step, and
//! the packet table in `tests/test_run.rs` checks that both give the same verdict.
//!
//! Time is an argument (`now_ns`, `CLOCK_MONOTONIC` like `bpf_ktime_get_ns`): the model reads no
//! clock.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::frame::{self, Frag, IPPROTO_TCP, IPPROTO_UDP, Unparsed};
use crate::policy::{Bucket, Fragments, Policy, PolicyError, Unknown};
use crate::prefix::PrefixMap;
use crate::shared::{MAX_PAYLOAD_OFF, MAX_SIG_LEN, MAX_VALUE_SKIP, NANO_PER_PACKET, Reason, SCAN_MAX_BYTES};

/// Unknown sources with a bucket (`MAX_RATE_SOURCES`).
pub const MAX_RATE_SOURCES: usize = 65_536;
/// Fragmented SIP datagrams remembered (`MAX_FRAG_TRACKED`).
pub const MAX_FRAG_TRACKED: usize = 8_192;

const HDR_UA: &[u8] = b"user-agent:";
const HDR_FROM: &[u8] = b"from:";

/// Transport of a datagram handed to [`UserspaceFilter::judge_datagram`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
}

#[derive(Debug, Clone, Copy, Default)]
struct TokenBucket {
    tokens_nano: u64,
    last_ns: u64,
}

impl TokenBucket {
    /// `bucket_take` of the C program.
    fn take(&mut self, b: &Bucket, full_ns: u64, now: u64) -> bool {
        let cap = b.burst * NANO_PER_PACKET;
        let elapsed = now.saturating_sub(self.last_ns);
        let mut tokens = if elapsed >= full_ns { cap } else { self.tokens_nano + elapsed * b.rate_pps };
        tokens = tokens.min(cap);
        self.last_ns = now;
        if tokens < NANO_PER_PACKET {
            self.tokens_nano = tokens;
            return false;
        }
        self.tokens_nano = tokens - NANO_PER_PACKET;
        true
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FragKey {
    src: IpAddr,
    dst: IpAddr,
    id: u32,
}

/// The user-space filter: policy, allow-list, blocklist, buckets.
#[derive(Debug)]
pub struct UserspaceFilter {
    policy: Policy,
    src_full_ns: u64,
    global_full_ns: u64,
    signatures: Vec<Vec<u8>>,
    allow: PrefixMap<u32>,
    /// Blocked prefixes and their `CLOCK_MONOTONIC` deadline (0: never).
    block: PrefixMap<u64>,
    buckets: HashMap<IpAddr, TokenBucket>,
    global: TokenBucket,
    frags: HashMap<FragKey, Reason>,
}

impl UserspaceFilter {
    /// A filter with `policy`, an empty allow-list and an empty blocklist.
    pub fn new(policy: Policy) -> Result<Self, PolicyError> {
        policy.validate()?;
        let signatures = policy.folded_signatures().collect();
        Ok(UserspaceFilter {
            src_full_ns: policy.per_source.full_ns(),
            global_full_ns: policy.global.full_ns(),
            policy,
            signatures,
            allow: PrefixMap::new(),
            block: PrefixMap::new(),
            buckets: HashMap::new(),
            global: TokenBucket::default(),
            frags: HashMap::new(),
        })
    }

    /// Replaces the allow-list: each prefix with the index of its trunk.
    pub fn set_allow_list(&mut self, sources: &[(IpNet, u32)]) {
        self.allow = PrefixMap::new();
        for (net, trunk) in sources {
            self.allow.insert(net.trunc(), *trunk);
        }
    }

    /// Blocks a prefix until `expires_ns` (`CLOCK_MONOTONIC`; 0: never).
    pub fn block(&mut self, net: IpNet, expires_ns: u64) {
        self.block.insert(net.trunc(), expires_ns);
    }

    /// Unblocks a prefix; true if it was blocked.
    pub fn unblock(&mut self, net: IpNet) -> bool {
        self.block.remove(net.trunc())
    }

    /// Removes blocklist entries expired at `now_ns`; returns how many remain.
    pub fn sweep(&mut self, now_ns: u64) -> usize {
        self.block.retain(|&exp| exp == 0 || exp > now_ns);
        self.block.len()
    }

    /// Judges one Ethernet frame, as the XDP program would.
    pub fn judge_frame(&mut self, frame: &[u8], now_ns: u64) -> Reason {
        let p = match frame::parse(frame) {
            Ok(p) => p,
            Err(Unparsed::Malformed) => return Reason::PassMalformed,
            Err(Unparsed::NotIp | Unparsed::OtherProtocol) => return Reason::PassNonSip,
        };
        let key = FragKey { src: p.src, dst: p.dst, id: p.frag_id };
        if p.frag == Frag::Later {
            return match self.frags.get(&key) {
                None => Reason::PassNonSip,
                Some(_) if self.policy.fragments == Fragments::Drop => Reason::DropFrag,
                Some(r) if r.is_drop() => Reason::DropFrag,
                Some(_) => Reason::PassFrag,
            };
        }
        let transport = if p.proto == IPPROTO_UDP { Transport::Udp } else { Transport::Tcp };
        debug_assert!(p.proto == IPPROTO_UDP || p.proto == IPPROTO_TCP);
        if !self.is_sip_port(transport, p.dport) {
            return Reason::PassNonSip;
        }
        let scan = p.payload_off <= MAX_PAYLOAD_OFF;
        let reason = self.judge_source(p.src, transport, p.payload, scan, now_ns);
        if p.frag == Frag::First {
            if self.frags.len() >= MAX_FRAG_TRACKED && !self.frags.contains_key(&key) {
                self.evict_one_frag();
            }
            self.frags.insert(key, reason);
        }
        reason
    }

    /// Judges a datagram received on a socket (no frame, not fragmented): what the admission
    /// guard calls per packet when XDP is off.
    pub fn judge_datagram(
        &mut self,
        src: IpAddr,
        transport: Transport,
        dport: u16,
        payload: &[u8],
        now_ns: u64,
    ) -> Reason {
        if !self.is_sip_port(transport, dport) {
            return Reason::PassNonSip;
        }
        self.judge_source(src, transport, payload, true, now_ns)
    }

    fn is_sip_port(&self, transport: Transport, port: u16) -> bool {
        match transport {
            Transport::Udp => self.policy.udp_ports.contains(&port),
            Transport::Tcp => self.policy.tcp_ports.contains(&port),
        }
    }

    fn judge_source(
        &mut self,
        src: IpAddr,
        transport: Transport,
        payload: &[u8],
        scan: bool,
        now: u64,
    ) -> Reason {
        if let Some(&exp) = self.block.lookup(src)
            && (exp == 0 || exp > now)
        {
            return Reason::DropBlock;
        }
        if self.allow.lookup(src).is_some() {
            return Reason::PassAllow;
        }
        if self.policy.unknown == Unknown::Drop {
            return Reason::DropUnknown;
        }
        let key = rate_key(src);
        if self.buckets.len() >= MAX_RATE_SOURCES && !self.buckets.contains_key(&key) {
            self.evict_one_bucket();
        }
        let bucket = self.buckets.entry(key).or_default();
        if !bucket.take(&self.policy.per_source, self.src_full_ns, now) {
            return Reason::DropRateSource;
        }
        if !self.global.take(&self.policy.global, self.global_full_ns, now) {
            return Reason::DropRateGlobal;
        }
        if transport == Transport::Udp && scan && scan_payload(payload, &self.signatures) {
            return Reason::DropScanner;
        }
        Reason::PassRate
    }

    /// The kernel's LRU evicts the least recently used; here, the bucket refilled longest ago.
    fn evict_one_bucket(&mut self) {
        if let Some(k) = self.buckets.iter().min_by_key(|(_, b)| b.last_ns).map(|(k, _)| *k) {
            self.buckets.remove(&k);
        }
    }

    fn evict_one_frag(&mut self) {
        if let Some(k) = self.frags.keys().next().copied() {
            self.frags.remove(&k);
        }
    }
}

/// IPv4: the address; IPv6: its /64.
fn rate_key(src: IpAddr) -> IpAddr {
    match src {
        IpAddr::V4(_) => src,
        IpAddr::V6(a) => IpAddr::V6((u128::from(a) & (u128::MAX << 64)).into()),
    }
}

/// `scan_payload` of the C program: header lines in the first [`SCAN_MAX_BYTES`] bytes, up to
/// the blank line.
fn scan_payload(payload: &[u8], sigs: &[Vec<u8>]) -> bool {
    if sigs.is_empty() {
        return false;
    }
    for i in 0..SCAN_MAX_BYTES - 1 {
        let (Some(&b), Some(&next)) = (payload.get(i), payload.get(i + 1)) else {
            return false;
        };
        if b != b'\n' {
            continue;
        }
        if next == b'\r' || next == b'\n' {
            return false;
        }
        if payload.get(i + 1..).is_some_and(|line| match_line(line, sigs)) {
            return true;
        }
    }
    false
}

/// `match_line`: a User-Agent or From header whose value starts with a signature.
fn match_line(line: &[u8], sigs: &[Vec<u8>]) -> bool {
    if line.len() < HDR_UA.len() + MAX_VALUE_SKIP {
        return false;
    }
    let folded_eq = |name: &[u8]| line.iter().zip(name).all(|(b, n)| b.to_ascii_lowercase() == *n);
    let mut v = if folded_eq(HDR_UA) {
        HDR_UA.len()
    } else if folded_eq(HDR_FROM) {
        HDR_FROM.len()
    } else {
        return false;
    };
    let name_len = v;
    for k in 0..MAX_VALUE_SKIP {
        match line.get(name_len + k) {
            Some(b' ' | b'\t' | b'"') => v += 1,
            _ => break,
        }
    }
    let value = line.get(v..).unwrap_or_default();
    sigs.iter().any(|s| {
        s.len() <= MAX_SIG_LEN
            && value.len() >= s.len()
            && value.iter().zip(s).all(|(b, c)| b.to_ascii_lowercase() == *c)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sigs() -> Vec<Vec<u8>> {
        Policy::default().folded_signatures().collect()
    }

    #[test]
    fn scanner_found_in_user_agent_and_from_only() {
        let ua = b"OPTIONS sip:100@x SIP/2.0\r\nUser-Agent: friendly-scanner\r\n\r\n";
        assert!(scan_payload(ua, &sigs()));
        let from = b"OPTIONS sip:1@x SIP/2.0\r\nfrom: \"SIPVicious\"<sip:1@x>\r\n\r\n";
        assert!(scan_payload(from, &sigs()));
        let body = b"OPTIONS sip:1@x SIP/2.0\r\nSubject: friendly-scanner\r\n\r\n";
        assert!(!scan_payload(body, &sigs()));
        let after_headers = b"INVITE sip:1@x SIP/2.0\r\nVia: x\r\n\r\nUser-Agent: sipcli\r\n";
        assert!(!scan_payload(after_headers, &sigs()));
    }

    #[test]
    fn short_lines_and_truncation_do_not_match_or_panic() {
        let msg = b"OPTIONS sip:1@x SIP/2.0\r\nUser-Agent: pplsip\r\n\r\n";
        let first_match = (0..=msg.len()).find(|&cut| scan_payload(&msg[..cut], &sigs()));
        // The line must hold the header name and MAX_VALUE_SKIP bytes, and the signature.
        assert_eq!(first_match, Some(msg.len() - 4));
        assert!(!scan_payload(b"X\nUser-Agent: pp", &sigs()));
    }

    #[test]
    fn token_bucket_refills_at_its_rate() {
        let b = Bucket { rate_pps: 10, burst: 2 };
        let full = b.full_ns();
        let mut t = TokenBucket::default();
        let boot = 100 * NANO_PER_PACKET; // a zeroed bucket is full once uptime exceeds full_ns
        assert!(t.take(&b, full, boot));
        assert!(t.take(&b, full, boot));
        assert!(!t.take(&b, full, boot));
        assert!(t.take(&b, full, boot + 100_000_000)); // one packet per 100 ms
        assert!(!t.take(&b, full, boot + 100_000_001));
    }

    #[test]
    fn datagram_entry_point_runs_the_same_policy() {
        let policy = Policy {
            unknown: Unknown::RateLimit,
            per_source: Bucket { rate_pps: 1, burst: 1 },
            ..Policy::default()
        };
        let mut f = UserspaceFilter::new(policy).unwrap();
        f.set_allow_list(&[("203.0.113.0/24".parse().unwrap(), 0)]);
        f.block("203.0.113.9/32".parse().unwrap(), 0);
        let now = 100 * NANO_PER_PACKET;
        let ok = b"OPTIONS sip:1@x SIP/2.0\r\nUser-Agent: carrier\r\n\r\n";
        let scan = b"OPTIONS sip:1@x SIP/2.0\r\nUser-Agent: friendly-scanner\r\n\r\n";
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        assert_eq!(f.judge_datagram(ip("203.0.113.1"), Transport::Udp, 5060, ok, now), Reason::PassAllow);
        assert_eq!(f.judge_datagram(ip("203.0.113.9"), Transport::Udp, 5060, ok, now), Reason::DropBlock);
        assert_eq!(f.judge_datagram(ip("192.0.2.1"), Transport::Udp, 53, ok, now), Reason::PassNonSip);
        assert_eq!(f.judge_datagram(ip("192.0.2.1"), Transport::Tcp, 5061, ok, now), Reason::PassRate);
        assert_eq!(f.judge_datagram(ip("192.0.2.1"), Transport::Tcp, 5061, ok, now), Reason::DropRateSource);
        assert_eq!(f.judge_datagram(ip("192.0.2.2"), Transport::Udp, 5060, scan, now), Reason::DropScanner);
        assert_eq!(f.sweep(now), 1, "a permanent block stays");
        assert!(f.unblock("203.0.113.9/32".parse().unwrap()));
        assert_eq!(f.judge_datagram(ip("203.0.113.9"), Transport::Udp, 5060, ok, now), Reason::PassAllow);
    }

    #[test]
    fn ipv6_sources_share_a_bucket_per_64() {
        assert_eq!(
            rate_key("2001:db8:1:2:aaaa::1".parse().unwrap()),
            rate_key("2001:db8:1:2:bbbb::9".parse().unwrap())
        );
        assert_ne!(
            rate_key("2001:db8:1:2::1".parse().unwrap()),
            rate_key("2001:db8:1:3::1".parse().unwrap())
        );
    }
}
