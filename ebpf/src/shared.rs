//! Rust mirrors of `xdp/shared.h` and the constants of `xdp/consts.h` that user space needs.
//! Every struct is `#[repr(C)]` with explicit padding and a compile-time size assertion.

/// Bytes of one scanner signature (`MAX_SIG_LEN`).
pub const MAX_SIG_LEN: usize = 32;
/// Scanner signatures the program holds (`MAX_SCANNER_SIGS`).
pub const MAX_SCANNER_SIGS: usize = 16;
/// Allow-listed plus blocked prefixes per family (`MAX_SRC_ENTRIES`).
pub const MAX_SRC_ENTRIES: usize = 81_920;
/// `src_value.flags`: an allow-listed prefix covers the entry (`SRC_ALLOWED`).
pub const SRC_ALLOWED: u32 = 1;
/// `src_value.flags`: a blocked prefix covers the entry (`SRC_BLOCKED`).
pub const SRC_BLOCKED: u32 = 2;
/// `src_value.flags`: the prefix itself is allow-listed (`OWN_ALLOW`).
pub const OWN_ALLOW: u32 = 4;
/// `src_value.flags`: the prefix itself is blocked (`OWN_BLOCK`).
pub const OWN_BLOCK: u32 = 8;
/// Words of the `src_v4_hint` map: one bit per IPv4 /16 (`V4_HINT_WORDS`).
pub const V4_HINT_WORDS: usize = 1024;
/// Bytes of the UDP payload scanned for signatures (`SCAN_MAX_BYTES`).
pub const SCAN_MAX_BYTES: usize = 1024;
/// Offset of the UDP payload in the frame past which it is not scanned (`MAX_PAYLOAD_OFF`).
pub const MAX_PAYLOAD_OFF: usize = 512;
/// Blanks and quotes skipped before a header value (`MAX_VALUE_SKIP`).
pub const MAX_VALUE_SKIP: usize = 4;
/// VLAN tags parsed (`MAX_VLAN_DEPTH`).
pub const MAX_VLAN_DEPTH: usize = 2;
/// IPv6 extension headers walked (`MAX_IPV6_EXT_HDRS`).
pub const MAX_IPV6_EXT_HDRS: usize = 6;
/// Token arithmetic unit: nano-packets per packet (`NANO_PER_PACKET`).
pub const NANO_PER_PACKET: u64 = 1_000_000_000;
/// Ports map bit: judged over UDP (`PORT_UDP`).
pub const PORT_UDP: u8 = 1;
/// Ports map bit: judged over TCP (`PORT_TCP`).
pub const PORT_TCP: u8 = 2;
/// `filter_config.unknown_policy`: drop (`UNKNOWN_DROP`).
pub const UNKNOWN_DROP: u32 = 0;
/// `filter_config.unknown_policy`: token buckets (`UNKNOWN_RATE_LIMIT`).
pub const UNKNOWN_RATE_LIMIT: u32 = 1;
/// `filter_config.attach_mode`: native (driver) XDP (`ATTACH_NATIVE`).
pub const ATTACH_NATIVE: u32 = 1;
/// `filter_config.attach_mode`: generic (skb) XDP (`ATTACH_SKB`).
pub const ATTACH_SKB: u32 = 2;
/// `filter_config.frag_policy`: follow the first fragment (`FRAG_FOLLOW`).
pub const FRAG_FOLLOW: u32 = 0;
/// `filter_config.frag_policy`: drop later fragments of SIP datagrams (`FRAG_DROP`).
pub const FRAG_DROP: u32 = 1;

/// `struct filter_config`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FilterConfig {
    /// [`UNKNOWN_DROP`] or [`UNKNOWN_RATE_LIMIT`].
    pub unknown_policy: u32,
    /// [`FRAG_FOLLOW`] or [`FRAG_DROP`].
    pub frag_policy: u32,
    /// One drop event per this many drops per CPU; 0: none.
    pub sample_every: u32,
    /// Valid entries at the start of the `scanner_sigs` map.
    pub scanner_count: u32,
    /// Per-source refill, packets/s.
    pub src_rate_pps: u64,
    /// Per-source depth, packets.
    pub src_burst: u64,
    /// ns to refill an empty source bucket.
    pub src_full_ns: u64,
    /// Global refill, packets/s.
    pub global_rate_pps: u64,
    /// Global depth, packets.
    pub global_burst: u64,
    /// ns to refill the empty global bucket.
    pub global_full_ns: u64,
    /// How the loader attached the program: [`ATTACH_NATIVE`], [`ATTACH_SKB`], or 0.
    pub attach_mode: u32,
    /// Explicit padding.
    pub reserved: u32,
}

/// `struct lpm_v4_key` / `lpm_v6_key` data part (aya's `lpm_trie::Key` adds the prefix length).
pub type V4Addr = [u8; 4];
/// IPv6 address bytes of an LPM key.
pub type V6Addr = [u8; 16];

/// `struct src_value`: one entry of the source tries (allow-list and blocklist together).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SrcValue {
    /// Effective deadline of the covering blocks (`CLOCK_MONOTONIC` ns; 0: one never expires).
    pub block_expires_ns: u64,
    /// This prefix's own block deadline (with [`OWN_BLOCK`]); 0: never.
    pub own_block_expires_ns: u64,
    /// [`SRC_ALLOWED`] | [`SRC_BLOCKED`] | [`OWN_ALLOW`] | [`OWN_BLOCK`].
    pub flags: u32,
    /// Trunk index of this prefix's own allow entry.
    pub trunk: u32,
}

/// `struct counter`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counter {
    /// Packets.
    pub packets: u64,
    /// Bytes (whole frames).
    pub bytes: u64,
}

/// `struct scanner_sig`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScannerSig {
    /// Valid bytes.
    pub len: u32,
    /// The signature, ASCII lower case.
    pub bytes: [u8; MAX_SIG_LEN],
}

/// `struct drop_event`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DropEvent {
    /// `bpf_ktime_get_ns` at the drop.
    pub ts_ns: u64,
    /// Source address (IPv4 in the first 4 bytes).
    pub addr: [u8; 16],
    /// 4 or 6.
    pub family: u32,
    /// A drop [`crate::Reason`] as its index.
    pub reason: u32,
    /// Source port (0 for non-first fragments).
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// IP protocol.
    pub proto: u8,
    /// Explicit padding.
    pub pad: [u8; 3],
}

const _: () = assert!(size_of::<FilterConfig>() == 72);
const _: () = assert!(size_of::<SrcValue>() == 24);
const _: () = assert!(size_of::<Counter>() == 16);
const _: () = assert!(size_of::<ScannerSig>() == 36);
const _: () = assert!(size_of::<DropEvent>() == 40);

// SAFETY: each type is #[repr(C)], Copy, made only of integers and integer arrays, with no
// implicit padding (the size assertions above pin the layouts to the C side).
unsafe impl aya::Pod for FilterConfig {}
// SAFETY: as above.
unsafe impl aya::Pod for SrcValue {}
// SAFETY: as above.
unsafe impl aya::Pod for Counter {}
// SAFETY: as above.
unsafe impl aya::Pod for ScannerSig {}
// SAFETY: as above.
unsafe impl aya::Pod for DropEvent {}

/// Why the program (or the user-space model) decided what it did: the index of the per-CPU
/// counters (`R_*` in `consts.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u32)]
pub enum Reason {
    /// Not to a SIP port: untouched.
    PassNonSip = 0,
    /// Truncated or unparsable headers: left to the kernel stack.
    PassMalformed = 1,
    /// Source on a trunk's allow-list.
    PassAllow = 2,
    /// Unknown source admitted by its bucket and the global budget.
    PassRate = 3,
    /// Non-first fragment of a passed datagram.
    PassFrag = 4,
    /// Source on the blocklist.
    DropBlock = 5,
    /// Unknown source under the `drop` policy.
    DropUnknown = 6,
    /// Unknown source over its own bucket.
    DropRateSource = 7,
    /// Unknown sources together over the global budget.
    DropRateGlobal = 8,
    /// Scanner signature in the payload.
    DropScanner = 9,
    /// Non-first fragment of a dropped datagram, or fragment policy `drop`.
    DropFrag = 10,
}

impl Reason {
    /// Every reason, in counter order.
    pub const ALL: [Reason; 11] = [
        Reason::PassNonSip,
        Reason::PassMalformed,
        Reason::PassAllow,
        Reason::PassRate,
        Reason::PassFrag,
        Reason::DropBlock,
        Reason::DropUnknown,
        Reason::DropRateSource,
        Reason::DropRateGlobal,
        Reason::DropScanner,
        Reason::DropFrag,
    ];

    /// The reason with counter index `i`.
    pub fn from_index(i: u32) -> Option<Reason> {
        Self::ALL.get(usize::try_from(i).ok()?).copied()
    }

    /// Counter index.
    pub fn index(self) -> u32 {
        self as u32
    }

    /// True for the reasons that drop the packet.
    pub fn is_drop(self) -> bool {
        self >= Reason::DropBlock
    }

    /// The XDP action the program returns (`XDP_DROP` = 1, `XDP_PASS` = 2).
    pub fn xdp_action(self) -> u32 {
        if self.is_drop() { XDP_DROP } else { XDP_PASS }
    }

    /// Short name used by `sipedge xdp stats` and in logs.
    pub fn name(self) -> &'static str {
        match self {
            Reason::PassNonSip => "pass_non_sip",
            Reason::PassMalformed => "pass_malformed",
            Reason::PassAllow => "pass_allow",
            Reason::PassRate => "pass_rate",
            Reason::PassFrag => "pass_frag",
            Reason::DropBlock => "drop_block",
            Reason::DropUnknown => "drop_unknown",
            Reason::DropRateSource => "drop_rate_source",
            Reason::DropRateGlobal => "drop_rate_global",
            Reason::DropScanner => "drop_scanner",
            Reason::DropFrag => "drop_frag",
        }
    }
}

/// Number of counters (`R_COUNT`).
pub const REASON_COUNT: usize = Reason::ALL.len();
/// `XDP_DROP`.
pub const XDP_DROP: u32 = 1;
/// `XDP_PASS`.
pub const XDP_PASS: u32 = 2;
