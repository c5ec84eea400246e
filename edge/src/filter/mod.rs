//! The packet filter's policy as sipedge derives it from its configuration and store: the
//! allow-list (trunk sources and target addresses), the blocklist, and the policy knobs; and
//! the thread that keeps whichever filter runs (XDP maps or the user-space filter) in sync.

pub mod metrics;
pub mod sync;

use std::net::IpAddr;

use control::config::{Config, FragmentPolicy, UnknownSources};
use ebpf::Policy;
use ebpf::policy::{Bucket, Fragments, Unknown};
use ipnet::IpNet;

use crate::sip::{Host, Uri};

/// The allow-list's "trunk index" of a target address (targets answer and send in-dialog
/// requests; the filter must let them through like a trunk).
pub const TARGET_TRUNK: u32 = u32::MAX;

/// The filter policy a configuration asks for (`[xdp]`; `ebpf::Policy::default()` without it).
/// Validated configurations give valid policies (the bounds are the same; a test checks it).
pub fn policy_of(config: &Config) -> Policy {
    let Some(x) = &config.xdp else { return Policy::default() };
    Policy {
        unknown: match x.unknown_sources {
            UnknownSources::Drop => Unknown::Drop,
            UnknownSources::RateLimit => Unknown::RateLimit,
        },
        per_source: Bucket { rate_pps: x.per_source_pps, burst: x.per_source_burst },
        global: Bucket { rate_pps: x.global_pps, burst: x.global_burst },
        fragments: match x.fragments {
            FragmentPolicy::Follow => Fragments::Follow,
            FragmentPolicy::Drop => Fragments::Drop,
        },
        udp_ports: x.udp_ports.clone(),
        tcp_ports: x.tcp_ports.clone(),
        scanner_signatures: x.scanner_signatures.clone(),
        sample_every: x.sample_every,
    }
}

/// The allow-list of a configuration: every trunk's sources (with the trunk's index) and the
/// address of every target URI that is an IP literal (with [`TARGET_TRUNK`]). A prefix listed
/// by a trunk keeps the trunk's index.
pub fn allow_list(config: &Config) -> Vec<(IpNet, u32)> {
    let trunks =
        (0u32..).zip(&config.trunks).flat_map(|(i, t)| t.sources.iter().map(move |n| (n.trunc(), i)));
    let mut allow: Vec<(IpNet, u32)> = trunks.collect();
    let targets = config.targets.iter().flat_map(|t| &t.uris).filter_map(|u| uri_ip(u)).map(IpNet::from);
    for net in targets {
        if !allow.iter().any(|(n, _)| *n == net) {
            allow.push((net, TARGET_TRUNK));
        }
    }
    allow
}

/// The host of a SIP URI when it is an IP literal.
fn uri_ip(uri: &str) -> Option<IpAddr> {
    let Ok(Uri::Sip(u)) = Uri::parse(uri.as_bytes()) else { return None };
    match u.host {
        Host::Ipv4(a) => Some(IpAddr::V4(a)),
        Host::Ipv6(a) => Some(IpAddr::V6(a)),
        Host::Name(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trunk_sources_and_target_addresses_are_allow_listed() {
        let config = Config::from_toml(
            r#"
[[trunk]]
name = "a"
sources = ["203.0.113.0/24", "198.51.100.7/32"]
[[trunk]]
name = "b"
sources = ["2001:db8::/32"]
[[target]]
name = "pbx"
uris = ["sip:10.0.0.10:5060", "sip:[2001:db8::5]", "sip:pbx.example.net", "sip:198.51.100.7"]
"#,
        )
        .unwrap();
        let allow = allow_list(&config);
        let net = |s: &str| -> IpNet { s.parse().unwrap() };
        assert_eq!(
            allow,
            [
                (net("203.0.113.0/24"), 0),
                (net("198.51.100.7/32"), 0),
                (net("2001:db8::/32"), 1),
                (net("10.0.0.10/32"), TARGET_TRUNK),
                (net("2001:db8::5/128"), TARGET_TRUNK),
            ]
        );
        assert_eq!(policy_of(&config), Policy::default());
    }

    #[test]
    fn the_xdp_section_maps_to_the_policy_with_the_same_defaults_and_bounds() {
        use control::config as c;
        let defaults = Config::from_toml("[xdp]\n").unwrap();
        assert_eq!(policy_of(&defaults), Policy::default());
        assert_eq!(c::DEFAULT_SCANNER_SIGNATURES, ebpf::policy::DEFAULT_SCANNER_SIGNATURES);
        assert_eq!(*c::XDP_RATE_PPS.end(), ebpf::policy::MAX_RATE_PPS);
        assert_eq!(*c::XDP_BURST.end(), ebpf::policy::MAX_BURST);
        assert_eq!(c::XDP_MAX_SIP_PORTS, ebpf::policy::MAX_SIP_PORTS);
        assert_eq!(c::XDP_MAX_SCANNER_SIGS, ebpf::shared::MAX_SCANNER_SIGS);
        assert_eq!(c::XDP_MAX_SIG_LEN, ebpf::shared::MAX_SIG_LEN);
        let text = r#"
[xdp]
unknown_sources = "rate-limit"
per_source_pps = 5
per_source_burst = 7
global_pps = 100000000
global_burst = 10000000
udp_ports = [5060, 5080]
tcp_ports = []
fragments = "drop"
scanner_signatures = ["sipsak"]
sample_every = 0
"#;
        let p = policy_of(&Config::from_toml(text).unwrap());
        let want = Policy {
            unknown: Unknown::RateLimit,
            per_source: Bucket { rate_pps: 5, burst: 7 },
            global: Bucket { rate_pps: ebpf::policy::MAX_RATE_PPS, burst: ebpf::policy::MAX_BURST },
            fragments: Fragments::Drop,
            udp_ports: vec![5060, 5080],
            tcp_ports: vec![],
            scanner_signatures: vec!["sipsak".into()],
            sample_every: 0,
        };
        assert_eq!(p, want);
        assert_eq!(p.validate(), Ok(()), "the largest values the config accepts are valid");
    }
}
