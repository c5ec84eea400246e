//! Typed handles on the filter's maps, whether taken from a freshly loaded object or opened from
//! their pins under `/sys/fs/bpf/sipedge/<ifname>/` by another sipedge process.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Array, Map, MapData, PerCpuArray};
use ipnet::IpNet;

use crate::error::Error;
use crate::hint::{Hint, hint_of, union};
use crate::policy::Policy;
use crate::shared::{
    Counter, FilterConfig, MAX_SCANNER_SIGS, MAX_SRC_ENTRIES, PORT_TCP, PORT_UDP, REASON_COUNT, Reason,
    ScannerSig, SrcValue, V4_HINT_WORDS, V4Addr, V6Addr,
};
use crate::srctrie::{Own, Prefix, derive, mask};

/// Names of every map the loader pins (the ring buffer and the state maps included).
pub const MAP_NAMES: [&str; 12] = [
    "config",
    "ports",
    "src_v4",
    "src_v6",
    "src_v4_hint",
    "rate_src",
    "rate_global",
    "frags",
    "scanner_sigs",
    "counters",
    "sample_ctr",
    "drop_events",
];

/// A blocklist entry as read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockEntry {
    /// The blocked prefix.
    pub net: IpNet,
    /// `CLOCK_MONOTONIC` deadline in ns; 0: never.
    pub expires_ns: u64,
}

/// The verdict counters, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// One counter per [`Reason`], by index.
    pub counters: [Counter; REASON_COUNT],
}

impl Stats {
    /// The counter of `reason`.
    pub fn get(&self, reason: Reason) -> Counter {
        self.counters.get(reason as usize).copied().unwrap_or_default()
    }

    /// Packets per reason since `earlier`.
    pub fn packets_since(&self, earlier: &Stats) -> [u64; REASON_COUNT] {
        let mut d = [0; REASON_COUNT];
        for ((out, now), then) in d.iter_mut().zip(&self.counters).zip(&earlier.counters) {
            *out = now.packets.saturating_sub(then.packets);
        }
        d
    }
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{:<18} {:>14} {:>16}", "reason", "packets", "bytes")?;
        for r in Reason::ALL {
            let c = self.get(r);
            writeln!(f, "{:<18} {:>14} {:>16}", r.name(), c.packets, c.bytes)?;
        }
        Ok(())
    }
}

/// The maps user space writes and reads.
pub struct FilterMaps {
    config: Array<MapData, FilterConfig>,
    ports: Array<MapData, u8>,
    src_v4: LpmTrie<MapData, V4Addr, SrcValue>,
    src_v6: LpmTrie<MapData, V6Addr, SrcValue>,
    src_v4_hint: Array<MapData, u64>,
    scanner_sigs: Array<MapData, ScannerSig>,
    counters: PerCpuArray<MapData, Counter>,
}

impl std::fmt::Debug for FilterMaps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FilterMaps").finish_non_exhaustive()
    }
}

fn convert<T: TryFrom<Map, Error = aya::maps::MapError>>(name: &'static str, map: Map) -> Result<T, Error> {
    T::try_from(map).map_err(Error::map(name))
}

impl FilterMaps {
    /// Builds the handles from a source of maps by name (a loaded object, or pins).
    pub(crate) fn from_source(
        mut get: impl FnMut(&'static str) -> Result<Map, Error>,
    ) -> Result<Self, Error> {
        Ok(FilterMaps {
            config: convert("config", get("config")?)?,
            ports: convert("ports", get("ports")?)?,
            src_v4: convert("src_v4", get("src_v4")?)?,
            src_v6: convert("src_v6", get("src_v6")?)?,
            src_v4_hint: convert("src_v4_hint", get("src_v4_hint")?)?,
            scanner_sigs: convert("scanner_sigs", get("scanner_sigs")?)?,
            counters: convert("counters", get("counters")?)?,
        })
    }

    /// Opens the maps pinned in `dir` (a filter another process attached).
    pub fn open_pinned(dir: &Path) -> Result<Self, Error> {
        Self::from_source(|name| open_pin(dir, name))
    }

    /// Writes the policy: config, SIP ports and scanner signatures. Keeps `attach_mode`.
    pub fn apply_policy(&mut self, policy: &Policy) -> Result<(), Error> {
        policy.validate()?;
        for (i, sig) in policy.folded_signatures().enumerate() {
            let mut s = ScannerSig { len: u32::try_from(sig.len()).unwrap_or(0), ..Default::default() };
            for (dst, src) in s.bytes.iter_mut().zip(&sig) {
                *dst = *src;
            }
            let index = u32::try_from(i).unwrap_or(u32::MAX);
            self.scanner_sigs.set(index, s, 0).map_err(Error::map("scanner_sigs"))?;
        }
        for i in policy.scanner_signatures.len()..MAX_SCANNER_SIGS {
            let index = u32::try_from(i).unwrap_or(u32::MAX);
            self.scanner_sigs.set(index, ScannerSig::default(), 0).map_err(Error::map("scanner_sigs"))?;
        }
        let mut wanted: HashMap<u16, u8> = HashMap::new();
        for p in &policy.udp_ports {
            *wanted.entry(*p).or_default() |= PORT_UDP;
        }
        for p in &policy.tcp_ports {
            *wanted.entry(*p).or_default() |= PORT_TCP;
        }
        // Clear ports no longer wanted (the map is indexed by port: read back what is set).
        let current: Vec<u32> = (0..=u16::MAX)
            .filter(|p| self.ports.get(&u32::from(*p), 0).is_ok_and(|b| b != 0))
            .map(u32::from)
            .collect();
        for port in current {
            if !u16::try_from(port).is_ok_and(|p| wanted.contains_key(&p)) {
                self.ports.set(port, 0, 0).map_err(Error::map("ports"))?;
            }
        }
        for (port, bits) in wanted {
            self.ports.set(u32::from(port), bits, 0).map_err(Error::map("ports"))?;
        }
        let mut cfg = policy.filter_config();
        cfg.attach_mode = self.config()?.attach_mode;
        self.config.set(0, cfg, 0).map_err(Error::map("config"))
    }

    /// The current `struct filter_config`.
    pub fn config(&self) -> Result<FilterConfig, Error> {
        self.config.get(&0, 0).map_err(Error::map("config"))
    }

    pub(crate) fn set_attach_mode(&mut self, mode: u32) -> Result<(), Error> {
        let mut cfg = self.config()?;
        cfg.attach_mode = mode;
        self.config.set(0, cfg, 0).map_err(Error::map("config"))
    }

    /// Makes the allow-list exactly `sources` (each prefix with its trunk index): adds what is
    /// missing, removes what is no longer listed. Returns (added, removed).
    pub fn sync_allow_list(&mut self, sources: &[(IpNet, u32)]) -> Result<(usize, usize), Error> {
        let (mut want4, mut want6) = (HashMap::new(), HashMap::new());
        for (net, trunk) in sources {
            match net.trunc() {
                IpNet::V4(n) => want4.insert((n.prefix_len().into(), n.addr().octets()), *trunk),
                IpNet::V6(n) => want6.insert((n.prefix_len().into(), n.addr().octets()), *trunk),
            };
        }
        let mut counts = (0, 0);
        self.edit(|own4, own6| {
            let (a4, r4) = set_allows(own4, &want4);
            let (a6, r6) = set_allows(own6, &want6);
            counts = (a4 + a6, r4 + r6);
        })?;
        Ok(counts)
    }

    /// Makes the blocklist exactly `entries` (each prefix with its `CLOCK_MONOTONIC` deadline;
    /// 0: never). Only trie entries whose value changes are written. Returns (added or changed,
    /// removed).
    pub fn sync_blocklist(&mut self, entries: &[(IpNet, u64)]) -> Result<(usize, usize), Error> {
        let (mut want4, mut want6) = (HashMap::new(), HashMap::new());
        for (net, exp) in entries {
            match net.trunc() {
                IpNet::V4(n) => want4.insert((n.prefix_len().into(), n.addr().octets()), *exp),
                IpNet::V6(n) => want6.insert((n.prefix_len().into(), n.addr().octets()), *exp),
            };
        }
        let mut counts = (0, 0);
        self.edit(|own4, own6| {
            let (a4, r4) = set_blocks(own4, &want4);
            let (a6, r6) = set_blocks(own6, &want6);
            counts = (a4 + a6, r4 + r6);
        })?;
        Ok(counts)
    }

    /// Blocks each of `block` (prefix, deadline) and unblocks each of `unblock`, in one pass over
    /// the tries (only entries whose value changes are written). Other entries stay.
    pub fn update_blocklist(&mut self, block: &[(IpNet, u64)], unblock: &[IpNet]) -> Result<(), Error> {
        self.edit(|own4, own6| {
            for net in unblock {
                match net.trunc() {
                    IpNet::V4(n) => {
                        if let Some(o) = own4.get_mut(&(n.prefix_len().into(), n.addr().octets())) {
                            o.block = None;
                        }
                    }
                    IpNet::V6(n) => {
                        if let Some(o) = own6.get_mut(&(n.prefix_len().into(), n.addr().octets())) {
                            o.block = None;
                        }
                    }
                }
            }
            for (net, exp) in block {
                match net.trunc() {
                    IpNet::V4(n) => {
                        own4.entry((n.prefix_len().into(), n.addr().octets())).or_default().block = Some(*exp)
                    }
                    IpNet::V6(n) => {
                        own6.entry((n.prefix_len().into(), n.addr().octets())).or_default().block = Some(*exp)
                    }
                }
            }
        })
    }

    /// Blocks `net` until `expires_ns` (`CLOCK_MONOTONIC`; 0: never).
    pub fn block(&mut self, net: IpNet, expires_ns: u64) -> Result<(), Error> {
        self.edit(|own4, own6| match net.trunc() {
            IpNet::V4(n) => {
                own4.entry((n.prefix_len().into(), n.addr().octets())).or_default().block = Some(expires_ns)
            }
            IpNet::V6(n) => {
                own6.entry((n.prefix_len().into(), n.addr().octets())).or_default().block = Some(expires_ns)
            }
        })
    }

    /// Unblocks `net`; false if it was not blocked.
    pub fn unblock(&mut self, net: IpNet) -> Result<bool, Error> {
        let mut found = false;
        self.edit(|own4, own6| {
            let slot = match net.trunc() {
                IpNet::V4(n) => {
                    own4.get_mut(&(n.prefix_len().into(), n.addr().octets())).map(|o| &mut o.block)
                }
                IpNet::V6(n) => {
                    own6.get_mut(&(n.prefix_len().into(), n.addr().octets())).map(|o| &mut o.block)
                }
            };
            found = slot.and_then(Option::take).is_some();
        })?;
        Ok(found)
    }

    /// Every blocklist entry.
    pub fn blocked(&self) -> Result<Vec<BlockEntry>, Error> {
        let (own4, own6) = (read_own(&self.src_v4, "src_v4")?, read_own(&self.src_v6, "src_v6")?);
        let v4 = own4.into_iter().filter_map(|((len, a), o)| Some((IpAddr::from(a), len, o.block?)));
        let v6 = own6.into_iter().filter_map(|((len, a), o)| Some((IpAddr::from(a), len, o.block?)));
        Ok(v4
            .chain(v6)
            .filter_map(|(addr, len, expires_ns)| {
                Some(BlockEntry { net: IpNet::new(addr, u8::try_from(len).ok()?).ok()?, expires_ns })
            })
            .collect())
    }

    /// Removes blocklist entries whose deadline is at or before `now_ns`; returns how many.
    pub fn sweep_expired(&mut self, now_ns: u64) -> Result<usize, Error> {
        let mut swept = 0;
        self.edit(|own4, own6| {
            let expired = |o: &mut Own| {
                if o.block.is_some_and(|e| e != 0 && e <= now_ns) {
                    o.block = None;
                    true
                } else {
                    false
                }
            };
            swept = own4.values_mut().map(expired).filter(|e| *e).count()
                + own6.values_mut().map(expired).filter(|e| *e).count();
        })?;
        Ok(swept)
    }

    /// Reads both source tries, lets `f` change the own listings, and writes back what changed
    /// (new and updated entries first, removals last). O(entries) map operations.
    fn edit(
        &mut self,
        f: impl FnOnce(&mut HashMap<Prefix<4>, Own>, &mut HashMap<Prefix<16>, Own>),
    ) -> Result<(), Error> {
        let (old4, old6) = (read_trie(&self.src_v4, "src_v4")?, read_trie(&self.src_v6, "src_v6")?);
        let mut own4: HashMap<_, _> = old4.iter().map(|(k, v)| (*k, Own::of(v))).collect();
        let mut own6: HashMap<_, _> = old6.iter().map(|(k, v)| (*k, Own::of(v))).collect();
        f(&mut own4, &mut own6);
        own4.retain(|_, o| o.is_listed());
        own6.retain(|_, o| o.is_listed());
        for (family, len) in [("IPv4", own4.len()), ("IPv6", own6.len())] {
            if len > MAX_SRC_ENTRIES {
                return Err(Error::TooManyPrefixes { family, max: MAX_SRC_ENTRIES });
            }
        }
        let new4 = derive(&own4);
        // The hint covers the old and the new entries while the trie changes, then the new only.
        // The map holds the hint of the trie as read (every writer keeps it so, and a load
        // rebuilds it), so it is derived here instead of read back word by word.
        let (hint, wanted) = (hint_of(old4.keys()), hint_of(new4.keys()));
        let both = union(&hint, &wanted);
        self.write_hint(&hint, &both)?;
        write_trie(&mut self.src_v4, "src_v4", &old4, &new4)?;
        write_trie(&mut self.src_v6, "src_v6", &old6, &derive(&own6))?;
        self.write_hint(&both, &wanted)
    }

    /// Rewrites `src_v4_hint` from the `src_v4` trie (after a load: pins from a version without
    /// the hint leave it empty while the trie has entries).
    pub(crate) fn sync_hint(&mut self) -> Result<(), Error> {
        let wanted = hint_of(read_trie(&self.src_v4, "src_v4")?.keys());
        let hint = self.read_hint()?;
        // Missing bits first, surplus ones after: a running program never misses an entry.
        let both = union(&hint, &wanted);
        self.write_hint(&hint, &both)?;
        self.write_hint(&both, &wanted)
    }

    fn read_hint(&self) -> Result<Hint, Error> {
        (0..V4_HINT_WORDS)
            .map(|i| {
                let i = u32::try_from(i).unwrap_or(u32::MAX);
                self.src_v4_hint.get(&i, 0).map_err(Error::map("src_v4_hint"))
            })
            .collect()
    }

    /// Writes the words of `new` that differ from `old` (the map's current contents).
    fn write_hint(&mut self, old: &Hint, new: &Hint) -> Result<(), Error> {
        for (i, (o, n)) in (0u32..).zip(old.iter().zip(new)) {
            if o != n {
                self.src_v4_hint.set(i, *n, 0).map_err(Error::map("src_v4_hint"))?;
            }
        }
        Ok(())
    }

    /// The verdict counters summed over CPUs.
    pub fn stats(&self) -> Result<Stats, Error> {
        let mut s = Stats::default();
        for (i, out) in (0u32..).zip(s.counters.iter_mut()) {
            let per_cpu = self.counters.get(&i, 0).map_err(Error::map("counters"))?;
            for c in per_cpu.iter() {
                out.packets += c.packets;
                out.bytes += c.bytes;
            }
        }
        Ok(s)
    }
}

/// Opens one pinned map.
pub(crate) fn open_pin(dir: &Path, name: &'static str) -> Result<Map, Error> {
    let data = MapData::from_pin(dir.join(name)).map_err(Error::map(name))?;
    Map::from_map_data(data).map_err(Error::map(name))
}

/// Makes the own allow entries of one family exactly `want`; returns (added, removed).
fn set_allows<const N: usize>(
    own: &mut HashMap<Prefix<N>, Own>,
    want: &HashMap<Prefix<N>, u32>,
) -> (usize, usize) {
    let mut removed = 0;
    for (k, o) in own.iter_mut() {
        if o.allow.is_some() && !want.contains_key(k) {
            o.allow = None;
            removed += 1;
        }
    }
    let mut added = 0;
    for (k, trunk) in want {
        let o = own.entry(*k).or_default();
        if o.allow.is_none() {
            added += 1;
        }
        o.allow = Some(*trunk);
    }
    (added, removed)
}

/// Makes the own block entries of one family exactly `want`; returns (added or changed, removed).
fn set_blocks<const N: usize>(
    own: &mut HashMap<Prefix<N>, Own>,
    want: &HashMap<Prefix<N>, u64>,
) -> (usize, usize) {
    let mut removed = 0;
    for (k, o) in own.iter_mut() {
        if o.block.is_some() && !want.contains_key(k) {
            o.block = None;
            removed += 1;
        }
    }
    let mut changed = 0;
    for (k, exp) in want {
        let o = own.entry(*k).or_default();
        if o.block != Some(*exp) {
            changed += 1;
        }
        o.block = Some(*exp);
    }
    (changed, removed)
}

fn read_trie<const N: usize>(
    trie: &LpmTrie<MapData, [u8; N], SrcValue>,
    name: &'static str,
) -> Result<HashMap<Prefix<N>, SrcValue>, Error>
where
    [u8; N]: aya::Pod,
{
    trie.iter()
        .map(|item| {
            let (k, v) = item.map_err(Error::map(name))?;
            Ok(((k.prefix_len(), mask(k.data(), k.prefix_len())), v))
        })
        .collect()
}

fn read_own<const N: usize>(
    trie: &LpmTrie<MapData, [u8; N], SrcValue>,
    name: &'static str,
) -> Result<HashMap<Prefix<N>, Own>, Error>
where
    [u8; N]: aya::Pod,
{
    Ok(read_trie(trie, name)?.into_iter().map(|(k, v)| (k, Own::of(&v))).collect())
}

fn write_trie<const N: usize>(
    trie: &mut LpmTrie<MapData, [u8; N], SrcValue>,
    name: &'static str,
    old: &HashMap<Prefix<N>, SrcValue>,
    new: &HashMap<Prefix<N>, SrcValue>,
) -> Result<(), Error>
where
    [u8; N]: aya::Pod,
{
    for (&(len, addr), v) in new {
        if old.get(&(len, addr)) != Some(v) {
            trie.insert(&Key::new(len, addr), *v, 0).map_err(Error::map(name))?;
        }
    }
    for &(len, addr) in old.keys() {
        if !new.contains_key(&(len, addr)) {
            trie.remove(&Key::new(len, addr)).map_err(Error::map(name))?;
        }
    }
    Ok(())
}
