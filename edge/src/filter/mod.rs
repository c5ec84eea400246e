//! The packet filter's policy as sipedge derives it from its configuration and store: the
//! allow-list (trunk sources and target addresses), the blocklist, and the policy knobs; and
//! the thread that keeps whichever filter runs (XDP maps or the user-space filter) in sync.

pub mod sync;

use std::net::IpAddr;

use control::config::{Config, UnknownSources};
use ebpf::Policy;
use ebpf::policy::Unknown;
use ipnet::IpNet;

use crate::sip::{Host, Uri};

/// The allow-list's "trunk index" of a target address (targets answer and send in-dialog
/// requests; the filter must let them through like a trunk).
pub const TARGET_TRUNK: u32 = u32::MAX;

/// The filter policy a configuration asks for (`[xdp]`; defaults without it).
pub fn policy_of(config: &Config) -> Policy {
    let unknown = match config.xdp.as_ref().map(|x| x.unknown_sources) {
        Some(UnknownSources::RateLimit) => Unknown::RateLimit,
        _ => Unknown::Drop,
    };
    Policy { unknown, ..Policy::default() }
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
}
