//! Source address → trunk: longest-prefix match over the trunks' `sources` CIDRs.
//!
//! Trunk lists are small (thousands of CIDRs at most) and change only on reload, so the table is
//! one hash map per prefix length present, probed from the longest length down: a lookup costs at
//! most one hash probe per distinct length in use (typically 2–4), with no allocation.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

/// Index of a trunk in the policy's trunk list.
pub type TrunkIdx = u32;

/// An immutable longest-prefix-match table from source address to trunk.
#[derive(Debug, Default, Clone)]
pub struct SourceAcl {
    v4: LengthTables<u32>,
    v6: LengthTables<u128>,
}

/// Per-length exact maps, longest length first.
#[derive(Debug, Clone)]
struct LengthTables<K> {
    /// `(prefix length, masked network → trunk)`, sorted by length, longest first.
    by_len: Vec<(u8, HashMap<K, TrunkIdx>)>,
}

impl<K> Default for LengthTables<K> {
    fn default() -> Self {
        Self { by_len: Vec::new() }
    }
}

/// Two trunks claim the same CIDR: the source could not identify a single trunk.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{net} is claimed by trunks {first} and {second}")]
pub struct OverlapError {
    /// The CIDR claimed twice.
    pub net: IpNet,
    /// The trunk that claimed it first.
    pub first: TrunkIdx,
    /// The trunk that claimed it again.
    pub second: TrunkIdx,
}

impl<K: std::hash::Hash + Eq + Copy> LengthTables<K> {
    fn insert(&mut self, len: u8, key: K, trunk: TrunkIdx) -> Result<(), TrunkIdx> {
        let pos = match self.by_len.binary_search_by(|(l, _)| len.cmp(l)) {
            Ok(pos) => pos,
            Err(pos) => {
                self.by_len.insert(pos, (len, HashMap::new()));
                pos
            }
        };
        let map = &mut self.by_len[pos].1;
        match map.get(&key) {
            Some(&other) if other != trunk => Err(other),
            _ => {
                map.insert(key, trunk);
                Ok(())
            }
        }
    }
}

fn mask_v4(addr: u32, len: u8) -> u32 {
    if len == 0 { 0 } else { addr & (u32::MAX << (32 - u32::from(len))) }
}

fn mask_v6(addr: u128, len: u8) -> u128 {
    if len == 0 { 0 } else { addr & (u128::MAX << (128 - u32::from(len))) }
}

impl SourceAcl {
    /// Builds the table from `(trunk, its sources)`. The same CIDR in two trunks is an error;
    /// nested CIDRs are fine (the longest prefix wins).
    pub fn build<'a>(
        trunks: impl IntoIterator<Item = (TrunkIdx, &'a [IpNet])>,
    ) -> Result<Self, OverlapError> {
        let mut acl = Self::default();
        for (trunk, nets) in trunks {
            for net in nets {
                let net = net.trunc();
                let res = match net {
                    IpNet::V4(n) => acl.v4.insert(n.prefix_len(), u32::from(n.network()), trunk),
                    IpNet::V6(n) => acl.v6.insert(n.prefix_len(), u128::from(n.network()), trunk),
                };
                res.map_err(|first| OverlapError { net, first, second: trunk })?;
            }
        }
        Ok(acl)
    }

    /// The trunk whose most specific CIDR contains `addr`. IPv4-mapped IPv6 sources
    /// (`::ffff:a.b.c.d`, from dual-stack sockets) match the IPv4 entries.
    pub fn lookup(&self, addr: IpAddr) -> Option<TrunkIdx> {
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
            v4 => v4,
        };
        match addr {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                self.v4.by_len.iter().find_map(|(len, map)| map.get(&mask_v4(a, *len)).copied())
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                self.v6.by_len.iter().find_map(|(len, map)| map.get(&mask_v6(a, *len)).copied())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn longest_prefix_wins_and_unknown_is_none() {
        let a = nets(&["203.0.113.0/24", "2001:db8::/32"]);
        let b = nets(&["203.0.113.128/25", "2001:db8:1::/48"]);
        let c = nets(&["198.51.100.7/32"]);
        let acl = SourceAcl::build([(0, &a[..]), (1, &b[..]), (2, &c[..])]).unwrap();
        let cases = [
            ("203.0.113.1", Some(0)),
            ("203.0.113.200", Some(1)),
            ("198.51.100.7", Some(2)),
            ("198.51.100.8", None),
            ("2001:db8::5", Some(0)),
            ("2001:db8:1::5", Some(1)),
            ("2001:db9::1", None),
            ("::ffff:203.0.113.129", Some(1)),
            ("10.0.0.1", None),
        ];
        for (addr, want) in cases {
            assert_eq!(acl.lookup(addr.parse().unwrap()), want, "{addr}");
        }
    }

    #[test]
    fn same_cidr_in_two_trunks_is_refused() {
        let a = nets(&["10.0.0.0/8"]);
        let b = nets(&["10.0.0.0/8"]);
        let err = SourceAcl::build([(0, &a[..]), (1, &b[..])]).unwrap_err();
        assert_eq!((err.first, err.second), (0, 1));
    }

    #[test]
    fn default_route_cidrs_match_everything() {
        let all = nets(&["0.0.0.0/0", "::/0"]);
        let acl = SourceAcl::build([(3, &all[..])]).unwrap();
        assert_eq!(acl.lookup("8.8.8.8".parse().unwrap()), Some(3));
        assert_eq!(acl.lookup("2001::1".parse().unwrap()), Some(3));
    }
}
