//! Typed handles on the filter's maps, whether taken from a freshly loaded object or opened from
//! their pins under `/sys/fs/bpf/sipedge/<ifname>/` by another sipedge process.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Array, Map, MapData, PerCpuArray};
use ipnet::IpNet;

use crate::error::Error;
use crate::policy::Policy;
use crate::shared::{
    AllowValue, BlockValue, Counter, FilterConfig, MAX_SCANNER_SIGS, PORT_TCP, PORT_UDP, REASON_COUNT,
    Reason, ScannerSig, V4Addr, V6Addr,
};

/// Names of every map the loader pins (the ring buffer and the state maps included).
pub const MAP_NAMES: [&str; 13] = [
    "config",
    "ports",
    "allow_v4",
    "allow_v6",
    "block_v4",
    "block_v6",
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
    allow_v4: LpmTrie<MapData, V4Addr, AllowValue>,
    allow_v6: LpmTrie<MapData, V6Addr, AllowValue>,
    block_v4: LpmTrie<MapData, V4Addr, BlockValue>,
    block_v6: LpmTrie<MapData, V6Addr, BlockValue>,
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
            allow_v4: convert("allow_v4", get("allow_v4")?)?,
            allow_v6: convert("allow_v6", get("allow_v6")?)?,
            block_v4: convert("block_v4", get("block_v4")?)?,
            block_v6: convert("block_v6", get("block_v6")?)?,
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
        let mut want4: HashMap<(u32, V4Addr), u32> = HashMap::new();
        let mut want6: HashMap<(u32, V6Addr), u32> = HashMap::new();
        for (net, trunk) in sources {
            match net.trunc() {
                IpNet::V4(n) => want4.insert((n.prefix_len().into(), n.addr().octets()), *trunk),
                IpNet::V6(n) => want6.insert((n.prefix_len().into(), n.addr().octets()), *trunk),
            };
        }
        let (a4, r4) = sync_trie(&mut self.allow_v4, "allow_v4", want4)?;
        let (a6, r6) = sync_trie(&mut self.allow_v6, "allow_v6", want6)?;
        Ok((a4 + a6, r4 + r6))
    }

    /// Blocks `net` until `expires_ns` (`CLOCK_MONOTONIC`; 0: never).
    pub fn block(&mut self, net: IpNet, expires_ns: u64) -> Result<(), Error> {
        let v = BlockValue { expires_ns };
        match net.trunc() {
            IpNet::V4(n) => self
                .block_v4
                .insert(&Key::new(n.prefix_len().into(), n.addr().octets()), v, 0)
                .map_err(Error::map("block_v4")),
            IpNet::V6(n) => self
                .block_v6
                .insert(&Key::new(n.prefix_len().into(), n.addr().octets()), v, 0)
                .map_err(Error::map("block_v6")),
        }
    }

    /// Unblocks `net`; false if it was not blocked.
    pub fn unblock(&mut self, net: IpNet) -> Result<bool, Error> {
        let r = match net.trunc() {
            IpNet::V4(n) => self.block_v4.remove(&Key::new(n.prefix_len().into(), n.addr().octets())),
            IpNet::V6(n) => self.block_v6.remove(&Key::new(n.prefix_len().into(), n.addr().octets())),
        };
        match r {
            Ok(()) => Ok(true),
            Err(aya::maps::MapError::KeyNotFound) => Ok(false),
            Err(aya::maps::MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => {
                Ok(false)
            }
            Err(e) => Err(Error::map("block")(e)),
        }
    }

    /// Every blocklist entry.
    pub fn blocked(&self) -> Result<Vec<BlockEntry>, Error> {
        let mut out = Vec::new();
        for item in self.block_v4.iter() {
            let (k, v) = item.map_err(Error::map("block_v4"))?;
            let addr = IpAddr::from(k.data());
            if let Ok(net) = IpNet::new(addr, u8::try_from(k.prefix_len()).unwrap_or(32)) {
                out.push(BlockEntry { net, expires_ns: v.expires_ns });
            }
        }
        for item in self.block_v6.iter() {
            let (k, v) = item.map_err(Error::map("block_v6"))?;
            let addr = IpAddr::from(k.data());
            if let Ok(net) = IpNet::new(addr, u8::try_from(k.prefix_len()).unwrap_or(128)) {
                out.push(BlockEntry { net, expires_ns: v.expires_ns });
            }
        }
        Ok(out)
    }

    /// Removes blocklist entries whose deadline is at or before `now_ns`; returns how many.
    pub fn sweep_expired(&mut self, now_ns: u64) -> Result<usize, Error> {
        let expired: Vec<IpNet> = self
            .blocked()?
            .into_iter()
            .filter(|e| e.expires_ns != 0 && e.expires_ns <= now_ns)
            .map(|e| e.net)
            .collect();
        for net in &expired {
            self.unblock(*net)?;
        }
        Ok(expired.len())
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

fn sync_trie<A: aya::Pod + Eq + std::hash::Hash>(
    trie: &mut LpmTrie<MapData, A, AllowValue>,
    name: &'static str,
    mut want: HashMap<(u32, A), u32>,
) -> Result<(usize, usize), Error> {
    let mut stale = Vec::new();
    for item in trie.iter() {
        let (k, v) = item.map_err(Error::map(name))?;
        let key = (k.prefix_len(), k.data());
        if want.get(&key) == Some(&v.trunk) {
            want.remove(&key);
        } else if !want.contains_key(&key) {
            stale.push(key);
        }
    }
    for (len, data) in &stale {
        trie.remove(&Key::new(*len, *data)).map_err(Error::map(name))?;
    }
    let added = want.len();
    for ((len, data), trunk) in want {
        trie.insert(&Key::new(len, data), AllowValue { trunk }, 0).map_err(Error::map(name))?;
    }
    Ok((added, stale.len()))
}
