//! The filter's policy in user space: what sipedge runs on every received datagram when XDP is
//! unavailable (no CAP_BPF/CAP_NET_ADMIN, no interface). It mirrors `xdp/sipedge_xdp.c` step for
//! step, and the packet table in `tests/test_run.rs` checks that both give the same verdict.
//!
//! Time is an argument (`now_ns`, `CLOCK_MONOTONIC` like `bpf_ktime_get_ns`): the model reads no
//! clock.
//!
//! The filter is shared by every worker thread and synchronised inside, with no lock held
//! longer than one map operation and none across I/O:
//! - allow-list and blocklist are an immutable snapshot behind an [`ArcSwap`], read wait-free
//!   per datagram and replaced whole by the (rare) writers;
//! - the per-source token buckets are cut into [`BUCKET_SHARDS`] shards, each a bounded map
//!   behind its own mutex, picked by a keyed hash of the source (a flood cannot aim at one);
//! - the global budget is one token bucket behind a mutex taken only for unknown sources.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use arc_swap::ArcSwap;
use ipnet::IpNet;

use crate::error::Error;
use crate::frame::{self, Frag, IPPROTO_TCP, IPPROTO_UDP, Unparsed};
use crate::policy::{Bucket, Fragments, Policy, PolicyError, Unknown};
use crate::prefix::PrefixMap;
use crate::shared::{
    MAX_PAYLOAD_OFF, MAX_SIG_LEN, MAX_SRC_ENTRIES, MAX_VALUE_SKIP, NANO_PER_PACKET, Reason, SCAN_MAX_BYTES,
};

/// Unknown sources with a bucket, all shards together (`MAX_RATE_SOURCES`).
pub const MAX_RATE_SOURCES: usize = 65_536;
/// Shards of the bucket table (a power of two; more than the worker threads of any machine
/// this runs on, so that two workers rarely meet on one shard).
pub const BUCKET_SHARDS: usize = 64;
/// Buckets per shard: the shards share [`MAX_RATE_SOURCES`] evenly.
const BUCKETS_PER_SHARD: usize = MAX_RATE_SOURCES / BUCKET_SHARDS;
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

/// Allow-list and blocklist: one immutable snapshot, replaced whole on every change.
#[derive(Debug, Clone, Default)]
struct Lists {
    allow: PrefixMap<u32>,
    /// Blocked prefixes and their `CLOCK_MONOTONIC` deadline (0: never).
    block: PrefixMap<u64>,
}

impl Lists {
    /// Blocked at `now` when any blocked prefix containing `src` is still in force (the kernel
    /// gives each trie entry the latest deadline of the blocks covering it: the same answer).
    fn blocked(&self, src: IpAddr, now: u64) -> bool {
        self.block.covering(src).any(|&exp| exp == 0 || exp > now)
    }

    fn check_size(&self) -> Result<(), Error> {
        for (family, len) in [("IPv4", self.len_of(false)), ("IPv6", self.len_of(true))] {
            if len > MAX_SRC_ENTRIES {
                return Err(Error::TooManyPrefixes { family, max: MAX_SRC_ENTRIES });
            }
        }
        Ok(())
    }

    /// Distinct prefixes of one family over both lists (an upper bound of the kernel's entries).
    fn len_of(&self, v6: bool) -> usize {
        self.allow.len_family(v6) + self.block.len_family(v6)
    }
}

/// The user-space filter: policy, allow-list, blocklist, buckets. Shared by reference between
/// threads (`&self` everywhere).
#[derive(Debug)]
pub struct UserspaceFilter {
    policy: Policy,
    src_full_ns: u64,
    global_full_ns: u64,
    signatures: Vec<Vec<u8>>,
    lists: ArcSwap<Lists>,
    /// Serialises the writers of `lists` (readers never take it).
    writer: Mutex<()>,
    buckets: Box<[Mutex<HashMap<IpAddr, TokenBucket>>]>,
    shard_of: std::hash::RandomState,
    global: Mutex<TokenBucket>,
    frags: Mutex<HashMap<FragKey, Reason>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded maps hold plain data that every update leaves consistent; a panic elsewhere
    // while one was held does not make them wrong.
    m.lock().unwrap_or_else(PoisonError::into_inner)
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
            lists: ArcSwap::from_pointee(Lists::default()),
            writer: Mutex::new(()),
            buckets: (0..BUCKET_SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            shard_of: std::hash::RandomState::new(),
            global: Mutex::new(TokenBucket::default()),
            frags: Mutex::new(HashMap::new()),
        })
    }

    /// The policy it runs.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Changes the lists: `f` edits a copy, which replaces the snapshot if within bounds.
    fn edit_lists<T>(&self, f: impl FnOnce(&mut Lists) -> T) -> Result<T, Error> {
        let _writer = lock(&self.writer);
        let mut next = Lists::clone(&self.lists.load());
        let out = f(&mut next);
        next.check_size()?;
        self.lists.store(Arc::new(next));
        Ok(out)
    }

    /// Replaces the allow-list: each prefix with the index of its trunk.
    pub fn set_allow_list(&self, sources: &[(IpNet, u32)]) -> Result<(), Error> {
        self.edit_lists(|l| {
            l.allow = PrefixMap::new();
            for (net, trunk) in sources {
                l.allow.insert(net.trunc(), *trunk);
            }
        })
    }

    /// Replaces the blocklist: each prefix with its `CLOCK_MONOTONIC` deadline (0: never).
    pub fn set_blocklist(&self, entries: &[(IpNet, u64)]) -> Result<(), Error> {
        self.edit_lists(|l| {
            l.block = PrefixMap::new();
            for (net, exp) in entries {
                l.block.insert(net.trunc(), *exp);
            }
        })
    }

    /// Blocks a prefix until `expires_ns` (`CLOCK_MONOTONIC`; 0: never).
    pub fn block(&self, net: IpNet, expires_ns: u64) -> Result<(), Error> {
        self.edit_lists(|l| l.block.insert(net.trunc(), expires_ns))
    }

    /// Unblocks a prefix; true if it was blocked.
    pub fn unblock(&self, net: IpNet) -> bool {
        self.edit_lists(|l| l.block.remove(net.trunc())).unwrap_or(false)
    }

    /// The blocklist: prefixes and deadlines.
    pub fn blocked(&self) -> Vec<(IpNet, u64)> {
        self.lists.load().block.iter().map(|(net, exp)| (net, *exp)).collect()
    }

    /// Removes blocklist entries expired at `now_ns`; returns how many remain.
    pub fn sweep(&self, now_ns: u64) -> usize {
        let expired = |exp: u64| exp != 0 && exp <= now_ns;
        if !self.lists.load().block.iter().any(|(_, &exp)| expired(exp)) {
            return self.lists.load().block.len();
        }
        self.edit_lists(|l| {
            l.block.retain(|&exp| !expired(exp));
            l.block.len()
        })
        .unwrap_or_else(|_| self.lists.load().block.len())
    }

    /// Judges one Ethernet frame, as the XDP program would.
    pub fn judge_frame(&self, frame: &[u8], now_ns: u64) -> Reason {
        let p = match frame::parse(frame) {
            Ok(p) => p,
            Err(Unparsed::Malformed) => return Reason::PassMalformed,
            Err(Unparsed::NotIp | Unparsed::OtherProtocol) => return Reason::PassNonSip,
        };
        let key = FragKey { src: p.src, dst: p.dst, id: p.frag_id };
        if p.frag == Frag::Later {
            return match lock(&self.frags).get(&key) {
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
            let mut frags = lock(&self.frags);
            if frags.len() >= MAX_FRAG_TRACKED
                && !frags.contains_key(&key)
                && let Some(k) = frags.keys().next().copied()
            {
                frags.remove(&k);
            }
            frags.insert(key, reason);
        }
        reason
    }

    /// Judges a datagram that arrived on a socket, as the program would judge it on the wire
    /// (not fragmented: the kernel reassembled it). Traffic to ports outside the policy's SIP
    /// ports passes (`PassNonSip`), as in XDP.
    pub fn judge_datagram(
        &self,
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

    /// Judges a datagram known to be SIP whatever its port: one that arrived on a SIP listen
    /// socket of sipedge (the port list only tells XDP, which sees all of an interface's
    /// traffic, what SIP is).
    pub fn judge_sip(&self, src: IpAddr, transport: Transport, payload: &[u8], now_ns: u64) -> Reason {
        self.judge_source(src, transport, payload, true, now_ns)
    }

    fn is_sip_port(&self, transport: Transport, port: u16) -> bool {
        match transport {
            Transport::Udp => self.policy.udp_ports.contains(&port),
            Transport::Tcp => self.policy.tcp_ports.contains(&port),
        }
    }

    fn judge_source(
        &self,
        src: IpAddr,
        transport: Transport,
        payload: &[u8],
        scan: bool,
        now: u64,
    ) -> Reason {
        {
            let lists = self.lists.load();
            if lists.blocked(src, now) {
                return Reason::DropBlock;
            }
            if lists.allow.lookup(src).is_some() {
                return Reason::PassAllow;
            }
        }
        if self.policy.unknown == Unknown::Drop {
            return Reason::DropUnknown;
        }
        let key = rate_key(src);
        if !self.take_source(key, now) {
            return Reason::DropRateSource;
        }
        if !lock(&self.global).take(&self.policy.global, self.global_full_ns, now) {
            return Reason::DropRateGlobal;
        }
        if transport == Transport::Udp && scan && scan_payload(payload, &self.signatures) {
            return Reason::DropScanner;
        }
        Reason::PassRate
    }

    /// Takes a token from `key`'s bucket (created full when new).
    fn take_source(&self, key: IpAddr, now: u64) -> bool {
        let shard = usize::try_from(self.shard_of.hash_one(key)).unwrap_or(0) % BUCKET_SHARDS;
        let Some(shard) = self.buckets.get(shard) else { return false };
        let mut buckets = lock(shard);
        if buckets.len() >= BUCKETS_PER_SHARD && !buckets.contains_key(&key) {
            // The kernel's LRU evicts the least recently used; here, the bucket of the shard
            // touched longest ago (a scan of at most BUCKETS_PER_SHARD entries).
            if let Some(k) = buckets.iter().min_by_key(|(_, b)| b.last_ns).map(|(k, _)| *k) {
                buckets.remove(&k);
            }
        }
        buckets.entry(key).or_default().take(&self.policy.per_source, self.src_full_ns, now)
    }

    /// Sources with a bucket now (at most [`MAX_RATE_SOURCES`]).
    pub fn tracked_sources(&self) -> usize {
        self.buckets.iter().map(|s| lock(s).len()).sum()
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
        let f = UserspaceFilter::new(policy).unwrap();
        f.set_allow_list(&[("203.0.113.0/24".parse().unwrap(), 0)]).unwrap();
        f.block("203.0.113.9/32".parse().unwrap(), 0).unwrap();
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
