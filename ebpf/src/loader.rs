//! Loading the embedded object, attaching it (native, falling back to generic/skb), pinning its
//! maps and link under `/sys/fs/bpf/sipedge/<ifname>/` so that it outlives the process, and the
//! explicit detach.

use std::path::{Path, PathBuf};
use std::time::Duration;

use aya::maps::{MapData, RingBuf};
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::xdp::XdpLink;
use aya::programs::{TestRun, TestRunOptions, Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader};

use crate::error::Error;
use crate::events::DropEvents;
use crate::maps::{FilterMaps, MAP_NAMES};
use crate::shared::{ATTACH_NATIVE, ATTACH_SKB};

/// The compiled filter, committed beside its source (`xdp/sipedge_xdp.o`).
pub static SIPEDGE_XDP_OBJECT: &[u8] = aya::include_bytes_aligned!("../xdp/sipedge_xdp.o");
/// The benchmark baseline (`xdp/minimal_drop.o`): Ethernet/IPv4/UDP, drops port 5060.
pub static MINIMAL_DROP_OBJECT: &[u8] = aya::include_bytes_aligned!("../xdp/minimal_drop.o");
/// Program name of the filter in its object.
pub const PROGRAM: &str = "sipedge_xdp";
/// Program name of the baseline in its object.
pub const MINIMAL_PROGRAM: &str = "minimal_drop";
/// The bpffs folder under which each interface gets its pins.
pub const BPFFS_ROOT: &str = "/sys/fs/bpf/sipedge";
/// File name of the pinned link in an interface's folder.
const LINK_PIN: &str = "link";
/// Longest interface name (`IFNAMSIZ` - 1).
const MAX_IFNAME_LEN: usize = 15;

/// How to attach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AttachMode {
    /// In the driver; falls back to generic (skb) XDP where the driver cannot.
    #[default]
    Native,
    /// Generic XDP, after the skb is built.
    Skb,
}

/// The mode the program ended up running in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attached {
    /// Native (driver) XDP.
    Native,
    /// Generic (skb) XDP; `fallback` when native was asked for and refused.
    Skb {
        /// True when native mode failed first.
        fallback: bool,
    },
}

impl std::fmt::Display for Attached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Attached::Native => f.write_str("native"),
            Attached::Skb { fallback: false } => f.write_str("skb (generic)"),
            Attached::Skb { fallback: true } => f.write_str("skb (generic; the driver refused native mode)"),
        }
    }
}

/// Result of one `BPF_PROG_TEST_RUN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestRunOutcome {
    /// The XDP action (`XDP_DROP` = 1, `XDP_PASS` = 2).
    pub action: u32,
    /// Mean time per run as the kernel measured it.
    pub per_run: Duration,
}

/// `statfs` magic of bpffs.
const BPF_FS_MAGIC: libc::c_long = 0xcafe_4a11;

/// Mounts bpffs on `/sys/fs/bpf` unless it is mounted already (a fresh machine has none).
pub fn ensure_bpffs() -> Result<(), Error> {
    const MOUNT_POINT: &std::ffi::CStr = c"/sys/fs/bpf";
    // SAFETY: an all-zero statfs is a valid value of this plain C struct.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: MOUNT_POINT is NUL-terminated and `st` is a valid, writable statfs.
    let r = unsafe { libc::statfs(MOUNT_POINT.as_ptr(), &mut st) };
    if r == 0 && st.f_type == BPF_FS_MAGIC {
        return Ok(());
    }
    // SAFETY: every pointer is a NUL-terminated static string; data may be null.
    let r =
        unsafe { libc::mount(c"bpf".as_ptr(), MOUNT_POINT.as_ptr(), c"bpf".as_ptr(), 0, std::ptr::null()) };
    if r != 0 {
        return Err(Error::pin("/sys/fs/bpf")(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// The bpffs folder of `interface`'s pins.
pub fn pin_dir(interface: &str) -> Result<PathBuf, Error> {
    let ok = !interface.is_empty()
        && interface.len() <= MAX_IFNAME_LEN
        && interface != "."
        && interface != ".."
        && interface.bytes().all(|b| b.is_ascii_graphic() && b != b'/');
    if !ok {
        return Err(Error::InterfaceName(interface.to_owned()));
    }
    Ok(Path::new(BPFFS_ROOT).join(interface))
}

/// A loaded (and verified) XDP program with its maps.
#[derive(Debug)]
pub struct XdpFilter {
    ebpf: Ebpf,
    program: &'static str,
    maps: Option<FilterMaps>,
    events: Option<DropEvents>,
    pins: Option<PathBuf>,
}

impl XdpFilter {
    /// Loads the sipedge filter from `object` (normally [`SIPEDGE_XDP_OBJECT`]). With `pins`,
    /// its maps are pinned in that folder, or reused from there if a previous run pinned them.
    pub fn load(object: &[u8], pins: Option<&Path>) -> Result<Self, Error> {
        let mut loader = EbpfLoader::new();
        if let Some(dir) = pins {
            std::fs::create_dir_all(dir).map_err(Error::pin(dir))?;
            for name in MAP_NAMES {
                loader.map_pin_path(name, dir.join(name));
            }
        }
        let mut ebpf = loader.load(object)?;
        let mut maps =
            FilterMaps::from_source(|name| ebpf.take_map(name).ok_or(Error::Missing { kind: "map", name }))?;
        maps.sync_hint()?;
        let events = ebpf
            .take_map("drop_events")
            .ok_or(Error::Missing { kind: "map", name: "drop_events" })
            .and_then(|m| RingBuf::<MapData>::try_from(m).map_err(Error::map("drop_events")))?;
        let mut filter = XdpFilter {
            ebpf,
            program: PROGRAM,
            maps: Some(maps),
            events: Some(DropEvents::new(events)),
            pins: pins.map(Path::to_path_buf),
        };
        filter.xdp()?.load()?;
        Ok(filter)
    }

    /// Loads the benchmark baseline [`MINIMAL_DROP_OBJECT`] (no maps).
    pub fn load_minimal() -> Result<Self, Error> {
        let ebpf = Ebpf::load(MINIMAL_DROP_OBJECT)?;
        let mut filter = XdpFilter { ebpf, program: MINIMAL_PROGRAM, maps: None, events: None, pins: None };
        filter.xdp()?.load()?;
        Ok(filter)
    }

    fn xdp(&mut self) -> Result<&mut Xdp, Error> {
        let name = self.program;
        let prog = self.ebpf.program_mut(name).ok_or(Error::Missing { kind: "program", name })?;
        Ok(prog.try_into()?)
    }

    /// The maps (absent on the baseline program).
    pub fn maps(&mut self) -> Result<&mut FilterMaps, Error> {
        self.maps.as_mut().ok_or(Error::Missing { kind: "map", name: "config" })
    }

    /// The sampled drop events (taken once; `None` afterwards and on the baseline).
    pub fn take_drop_events(&mut self) -> Option<DropEvents> {
        self.events.take()
    }

    /// Runs the program on `frame` `repeat` times through `BPF_PROG_TEST_RUN`. The maps change
    /// as they would for real traffic.
    pub fn test_run(&mut self, frame: &[u8], repeat: u32) -> Result<TestRunOutcome, Error> {
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(frame);
        opts.repeat = repeat.max(1);
        let r = self.xdp()?.test_run(opts)?;
        Ok(TestRunOutcome { action: r.return_value, per_run: r.duration })
    }

    /// Attaches to `interface` and pins the link (the filter stays after this process exits).
    /// If a previous run left a pinned link there, the program in it is replaced atomically and
    /// the attachment (and its mode) kept. Needs [`XdpFilter::load`] with `pins`.
    pub fn attach(&mut self, interface: &str, mode: AttachMode) -> Result<Attached, Error> {
        let dir = self.pins.clone().ok_or(Error::Missing { kind: "map", name: "pins" })?;
        let link_path = dir.join(LINK_PIN);
        let attached = if link_path.exists() {
            let old = PinnedLink::from_pin(&link_path)
                .map_err(|e| Error::pin(&link_path)(std::io::Error::other(e)))?
                .unpin()
                .map_err(Error::pin(&link_path))?;
            let old = XdpLink::try_from(old).map_err(|e| Error::pin(&link_path)(std::io::Error::other(e)))?;
            let id = self.xdp()?.attach_to_link(old)?;
            self.pin_link(id, &link_path)?;
            match self.maps()?.config()?.attach_mode {
                ATTACH_SKB => Attached::Skb { fallback: false },
                _ => Attached::Native,
            }
        } else {
            let (id, attached) = match mode {
                AttachMode::Skb => {
                    (self.xdp()?.attach(interface, XdpMode::Skb)?, Attached::Skb { fallback: false })
                }
                AttachMode::Native => match self.xdp()?.attach(interface, XdpMode::Driver) {
                    Ok(id) => (id, Attached::Native),
                    Err(native) => match self.xdp()?.attach(interface, XdpMode::Skb) {
                        Ok(id) => (id, Attached::Skb { fallback: true }),
                        Err(skb) => {
                            return Err(Error::Attach {
                                interface: interface.to_owned(),
                                native: native.to_string(),
                                source: Box::new(skb),
                            });
                        }
                    },
                },
            };
            self.pin_link(id, &link_path)?;
            attached
        };
        let code = match attached {
            Attached::Native => ATTACH_NATIVE,
            Attached::Skb { .. } => ATTACH_SKB,
        };
        self.maps()?.set_attach_mode(code)?;
        Ok(attached)
    }

    fn pin_link(&mut self, id: aya::programs::xdp::XdpLinkId, path: &Path) -> Result<(), Error> {
        let link = self.xdp()?.take_link(id)?;
        let fd: FdLink = link
            .try_into()
            .map_err(|e: aya::programs::links::LinkError| Error::pin(path)(std::io::Error::other(e)))?;
        fd.pin(path).map_err(|e| Error::pin(path)(std::io::Error::other(e)))?;
        Ok(())
    }
}

/// True when a sipedge filter is pinned for `interface`.
pub fn is_attached(interface: &str) -> Result<bool, Error> {
    Ok(pin_dir(interface)?.join(LINK_PIN).exists())
}

/// Opens the maps of the filter attached to `interface` (by this or another process).
pub fn open_attached(interface: &str) -> Result<FilterMaps, Error> {
    let dir = pin_dir(interface)?;
    if !dir.join("config").exists() {
        return Err(Error::NotAttached { interface: interface.to_owned(), path: dir });
    }
    FilterMaps::open_pinned(&dir)
}

/// Detaches the filter from `interface` and removes its pins (and with them its state: the
/// blocklist, the buckets, the counters).
pub fn detach(interface: &str) -> Result<(), Error> {
    let dir = pin_dir(interface)?;
    let link_path = dir.join(LINK_PIN);
    if !dir.exists() {
        return Err(Error::NotAttached { interface: interface.to_owned(), path: dir });
    }
    if link_path.exists() {
        let link =
            PinnedLink::from_pin(&link_path).map_err(|e| Error::pin(&link_path)(std::io::Error::other(e)))?;
        // Dropping the last reference to the link detaches the program.
        drop(link.unpin().map_err(Error::pin(&link_path))?);
    }
    for name in MAP_NAMES {
        let p = dir.join(name);
        if p.exists() {
            std::fs::remove_file(&p).map_err(Error::pin(&p))?;
        }
    }
    std::fs::remove_dir(&dir).map_err(Error::pin(&dir))
}
