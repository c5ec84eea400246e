//! Longest-prefix match for the user-space model: one hash map per prefix length present,
//! looked up from the longest length down (at most 33 or 129 probes, usually a handful).

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use ipnet::IpNet;

/// A set of IPv4 and IPv6 prefixes with a value each.
#[derive(Debug, Clone)]
pub struct PrefixMap<V> {
    by_len: HashMap<(bool, u8, u128), V>,
    lens_v4: BTreeSet<u8>,
    lens_v6: BTreeSet<u8>,
}

impl<V> Default for PrefixMap<V> {
    fn default() -> Self {
        PrefixMap { by_len: HashMap::new(), lens_v4: BTreeSet::new(), lens_v6: BTreeSet::new() }
    }
}

/// The address as a left-aligned `u128` (IPv4 in the top 32 bits) and whether it is IPv6.
fn bits(addr: IpAddr) -> (bool, u128) {
    match addr {
        IpAddr::V4(a) => (false, u128::from(u32::from(a)) << 96),
        IpAddr::V6(a) => (true, u128::from(a)),
    }
}

fn mask(v: u128, len: u8) -> u128 {
    if len == 0 { 0 } else { v & (u128::MAX << (128 - u32::from(len))) }
}

impl<V> PrefixMap<V> {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts (or replaces) a prefix.
    pub fn insert(&mut self, net: IpNet, value: V) {
        let (v6, b) = bits(net.network());
        let len = net.prefix_len();
        if v6 { &mut self.lens_v6 } else { &mut self.lens_v4 }.insert(len);
        self.by_len.insert((v6, len, mask(b, len)), value);
    }

    /// Removes a prefix; true if it was there.
    pub fn remove(&mut self, net: IpNet) -> bool {
        let (v6, b) = bits(net.network());
        let len = net.prefix_len();
        let removed = self.by_len.remove(&(v6, len, mask(b, len))).is_some();
        if removed && !self.by_len.keys().any(|&(f, l, _)| f == v6 && l == len) {
            if v6 { &mut self.lens_v6 } else { &mut self.lens_v4 }.remove(&len);
        }
        removed
    }

    /// The value of the longest prefix containing `addr`.
    pub fn lookup(&self, addr: IpAddr) -> Option<&V> {
        let (v6, b) = bits(addr);
        let lens = if v6 { &self.lens_v6 } else { &self.lens_v4 };
        lens.iter().rev().find_map(|&len| self.by_len.get(&(v6, len, mask(b, len))))
    }

    /// The values of every prefix containing `addr`, longest first.
    pub fn covering(&self, addr: IpAddr) -> impl Iterator<Item = &V> {
        let (v6, b) = bits(addr);
        let lens = if v6 { &self.lens_v6 } else { &self.lens_v4 };
        lens.iter().rev().filter_map(move |&len| self.by_len.get(&(v6, len, mask(b, len))))
    }

    /// Every prefix with its value, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (IpNet, &V)> {
        self.by_len.iter().filter_map(|(&(v6, len, b), v)| {
            let addr =
                if v6 { IpAddr::V6(b.into()) } else { IpAddr::V4(u32::try_from(b >> 96).ok()?.into()) };
            Some((IpNet::new(addr, len).ok()?, v))
        })
    }

    /// Number of prefixes of one family.
    pub fn len_family(&self, v6: bool) -> usize {
        self.by_len.keys().filter(|k| k.0 == v6).count()
    }

    /// Number of prefixes.
    pub fn len(&self) -> usize {
        self.by_len.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.by_len.is_empty()
    }

    /// Removes every entry for which `keep` is false.
    pub fn retain(&mut self, mut keep: impl FnMut(&V) -> bool) {
        self.by_len.retain(|_, v| keep(v));
        let (v4, v6): (BTreeSet<_>, BTreeSet<_>) = (
            self.by_len.keys().filter(|k| !k.0).map(|k| k.1).collect(),
            self.by_len.keys().filter(|k| k.0).map(|k| k.1).collect(),
        );
        self.lens_v4 = v4;
        self.lens_v6 = v6;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins_and_families_stay_apart() {
        let mut m = PrefixMap::new();
        m.insert("10.0.0.0/8".parse().unwrap(), 1);
        m.insert("10.1.0.0/16".parse().unwrap(), 2);
        m.insert("::/0".parse().unwrap(), 6);
        assert_eq!(m.lookup("10.1.2.3".parse().unwrap()), Some(&2));
        assert_eq!(m.lookup("10.2.0.1".parse().unwrap()), Some(&1));
        assert_eq!(m.lookup("11.0.0.1".parse().unwrap()), None);
        assert_eq!(m.lookup("2001:db8::1".parse().unwrap()), Some(&6));
        assert!(m.remove("10.1.0.0/16".parse().unwrap()));
        assert_eq!(m.lookup("10.1.2.3".parse().unwrap()), Some(&1));
        assert_eq!(m.covering("10.1.2.3".parse().unwrap()).count(), 1);
        m.insert("10.1.2.0/24".parse().unwrap(), 3);
        assert_eq!(m.covering("10.1.2.3".parse().unwrap()).copied().collect::<Vec<_>>(), [3, 1]);
        let mut all: Vec<String> = m.iter().map(|(n, v)| format!("{n}={v}")).collect();
        all.sort();
        assert_eq!(all, ["10.0.0.0/8=1", "10.1.2.0/24=3", "::/0=6"]);
        assert_eq!((m.len_family(false), m.len_family(true)), (2, 1));
        assert!(m.remove("10.1.2.0/24".parse().unwrap()));
        m.retain(|v| *v != 1);
        assert_eq!(m.lookup("10.1.2.3".parse().unwrap()), None);
        assert_eq!(m.len(), 1);
    }
}
