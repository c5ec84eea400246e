//! The filter's policy as user space states it, with defaults, validation, and the
//! `struct filter_config` it compiles to. Both the XDP program and [`crate::userspace`] run it.

use crate::shared::{
    FRAG_DROP, FRAG_FOLLOW, FilterConfig, MAX_SCANNER_SIGS, MAX_SIG_LEN, NANO_PER_PACKET, UNKNOWN_DROP,
    UNKNOWN_RATE_LIMIT,
};

/// Highest accepted refill rate, packets/s (keeps `elapsed * rate` far from `u64` overflow).
pub const MAX_RATE_PPS: u64 = 100_000_000;
/// Deepest accepted bucket, packets (`burst * NANO_PER_PACKET` must fit in `u64`).
pub const MAX_BURST: u64 = 10_000_000;
/// Most SIP ports per transport.
pub const MAX_SIP_PORTS: usize = 64;

/// Default SIP ports over UDP.
pub const DEFAULT_UDP_PORTS: [u16; 1] = [5060];
/// Default SIP ports over TCP (5061 is SIP over TLS).
pub const DEFAULT_TCP_PORTS: [u16; 2] = [5060, 5061];
/// Default scanner signatures (User-Agent or From display-name prefixes of known SIP scanners).
pub const DEFAULT_SCANNER_SIGNATURES: [&str; 8] = [
    "friendly-scanner",
    "sipvicious",
    "sipcli",
    "VaxSIPUserAgent",
    "pplsip",
    "sundayddr",
    "iWar",
    "sip-scan",
];

/// What happens to SIP traffic from sources outside every trunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Unknown {
    /// Dropped.
    #[default]
    Drop,
    /// Admitted by a per-source token bucket under a global budget.
    RateLimit,
}

/// What happens to non-first fragments of a datagram whose first fragment went to a SIP port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fragments {
    /// The first fragment's verdict.
    #[default]
    Follow,
    /// Dropped (SIP then only works unfragmented or over TCP).
    Drop,
}

/// A token bucket's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    /// Refill rate, packets/s.
    pub rate_pps: u64,
    /// Depth, packets.
    pub burst: u64,
}

impl Bucket {
    /// ns for an empty bucket to fill: `ceil(burst * 1e9 / rate)`.
    pub fn full_ns(&self) -> u64 {
        (self.burst * NANO_PER_PACKET).div_ceil(self.rate_pps.max(1))
    }
}

/// The filter policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Unknown-source policy. Default: drop.
    pub unknown: Unknown,
    /// Bucket of one unknown source (IPv6: one /64). Default: 10 packets/s, burst 20.
    pub per_source: Bucket,
    /// Bucket shared by all unknown sources. Default: 2,000 packets/s, burst 4,000.
    pub global: Bucket,
    /// Non-first fragments of SIP datagrams. Default: follow the first fragment.
    pub fragments: Fragments,
    /// SIP ports over UDP. Default: 5060.
    pub udp_ports: Vec<u16>,
    /// SIP ports over TCP. Default: 5060, 5061.
    pub tcp_ports: Vec<u16>,
    /// Scanner signatures, matched case-insensitively at the start of a User-Agent or From
    /// value. Default: [`DEFAULT_SCANNER_SIGNATURES`].
    pub scanner_signatures: Vec<String>,
    /// One drop event per this many drops per CPU; 0 disables events. Default: 64.
    pub sample_every: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            unknown: Unknown::Drop,
            per_source: Bucket { rate_pps: 10, burst: 20 },
            global: Bucket { rate_pps: 2_000, burst: 4_000 },
            fragments: Fragments::Follow,
            udp_ports: DEFAULT_UDP_PORTS.to_vec(),
            tcp_ports: DEFAULT_TCP_PORTS.to_vec(),
            scanner_signatures: DEFAULT_SCANNER_SIGNATURES.iter().map(|s| (*s).to_owned()).collect(),
            sample_every: 64,
        }
    }
}

/// A policy field out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A bucket's rate or burst is zero or too large.
    #[error("{field}: rate must be 1..={MAX_RATE_PPS} packets/s and burst 1..={MAX_BURST} packets")]
    Bucket {
        /// `per_source` or `global`.
        field: &'static str,
    },
    /// Port 0 or too many ports.
    #[error("{field}: needs 1..={MAX_SIP_PORTS} non-zero ports")]
    Ports {
        /// `udp_ports` or `tcp_ports`.
        field: &'static str,
    },
    /// Too many signatures.
    #[error("scanner_signatures: at most {MAX_SCANNER_SIGS}")]
    TooManySignatures,
    /// A signature is empty, too long, or not ASCII.
    #[error("scanner_signatures[{index}]: needs 1..={MAX_SIG_LEN} ASCII bytes")]
    Signature {
        /// Position in the list.
        index: usize,
    },
}

impl Policy {
    /// Checks every bound; the first violation is the error.
    pub fn validate(&self) -> Result<(), PolicyError> {
        for (field, b) in [("per_source", self.per_source), ("global", self.global)] {
            if !(1..=MAX_RATE_PPS).contains(&b.rate_pps) || !(1..=MAX_BURST).contains(&b.burst) {
                return Err(PolicyError::Bucket { field });
            }
        }
        for (field, ports) in [("udp_ports", &self.udp_ports), ("tcp_ports", &self.tcp_ports)] {
            if ports.len() > MAX_SIP_PORTS || ports.contains(&0) {
                return Err(PolicyError::Ports { field });
            }
        }
        if self.udp_ports.is_empty() && self.tcp_ports.is_empty() {
            return Err(PolicyError::Ports { field: "udp_ports" });
        }
        if self.scanner_signatures.len() > MAX_SCANNER_SIGS {
            return Err(PolicyError::TooManySignatures);
        }
        for (index, s) in self.scanner_signatures.iter().enumerate() {
            if s.is_empty() || s.len() > MAX_SIG_LEN || !s.is_ascii() {
                return Err(PolicyError::Signature { index });
            }
        }
        Ok(())
    }

    /// The `struct filter_config` this policy compiles to (`attach_mode` left 0).
    pub fn filter_config(&self) -> FilterConfig {
        FilterConfig {
            unknown_policy: match self.unknown {
                Unknown::Drop => UNKNOWN_DROP,
                Unknown::RateLimit => UNKNOWN_RATE_LIMIT,
            },
            frag_policy: match self.fragments {
                Fragments::Follow => FRAG_FOLLOW,
                Fragments::Drop => FRAG_DROP,
            },
            sample_every: self.sample_every,
            scanner_count: u32::try_from(self.scanner_signatures.len()).unwrap_or(u32::MAX),
            src_rate_pps: self.per_source.rate_pps,
            src_burst: self.per_source.burst,
            src_full_ns: self.per_source.full_ns(),
            global_rate_pps: self.global.rate_pps,
            global_burst: self.global.burst,
            global_full_ns: self.global.full_ns(),
            attach_mode: 0,
            reserved: 0,
        }
    }

    /// The signatures as the program stores them: ASCII lower case.
    pub fn folded_signatures(&self) -> impl Iterator<Item = Vec<u8>> + '_ {
        self.scanner_signatures.iter().map(|s| s.bytes().map(|b| b.to_ascii_lowercase()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_is_valid() {
        assert_eq!(Policy::default().validate(), Ok(()));
    }

    #[test]
    fn bounds_are_enforced() {
        let mut p = Policy::default();
        p.per_source.rate_pps = 0;
        assert_eq!(p.validate(), Err(PolicyError::Bucket { field: "per_source" }));
        let mut p = Policy::default();
        p.global.burst = MAX_BURST + 1;
        assert_eq!(p.validate(), Err(PolicyError::Bucket { field: "global" }));
        let mut p = Policy::default();
        p.tcp_ports.push(0);
        assert_eq!(p.validate(), Err(PolicyError::Ports { field: "tcp_ports" }));
        let mut p = Policy::default();
        p.scanner_signatures.push("x".repeat(MAX_SIG_LEN + 1));
        assert_eq!(p.validate(), Err(PolicyError::Signature { index: 8 }));
        let p = Policy { scanner_signatures: vec!["s".into(); MAX_SCANNER_SIGS + 1], ..Policy::default() };
        assert_eq!(p.validate(), Err(PolicyError::TooManySignatures));
    }

    #[test]
    fn full_ns_rounds_up() {
        assert_eq!(Bucket { rate_pps: 3, burst: 1 }.full_ns(), 333_333_334);
        assert_eq!(Bucket { rate_pps: 10, burst: 20 }.full_ns(), 2_000_000_000);
    }
}
