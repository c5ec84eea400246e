//! The XDP filter: the C program under `xdp/`, its committed object, and the aya loader.
//!
//! - [`XdpFilter`] loads the embedded object (no clang needed to build), attaches it in native
//!   mode with a fallback to generic (skb) mode, and pins maps and link under
//!   `/sys/fs/bpf/sipedge/<ifname>/` so that the filter and its state outlive the process;
//!   [`detach`] removes it.
//! - [`FilterMaps`] writes the policy, syncs the allow-list, manages the blocklist (TTLs and
//!   sweeping) and reads the counters, whether from a fresh load or from the pins.
//! - [`userspace::UserspaceFilter`] is the same policy in Rust, for when XDP is unavailable.
//! - [`shared`] mirrors `xdp/shared.h`.

mod clock;
pub mod craft;
mod error;
mod events;
pub mod frame;
mod hint;
mod loader;
mod maps;
mod placement;
pub mod policy;
mod prefix;
pub mod shared;
mod srctrie;
pub mod userspace;

pub use clock::{deadline_ns, monotonic_ns};
pub use error::Error;
pub use events::DropEvents;
pub use loader::{
    AttachMode, Attached, BPFFS_ROOT, MINIMAL_DROP_OBJECT, MINIMAL_PROGRAM, PROGRAM, SIPEDGE_XDP_OBJECT,
    TestRunOutcome, XdpFilter, detach, ensure_bpffs, is_attached, open_attached, pin_dir,
};
pub use maps::{BlockEntry, FilterMaps, MAP_NAMES, Stats};
pub use placement::{Placement, attach_interface, error_chain, place};
pub use policy::Policy;
pub use prefix::PrefixMap;
pub use shared::Reason;
