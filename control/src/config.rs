//! The configuration file (TOML) and its validation.
//!
//! The keys are the contract of `DESIGN.md` ("Configuration contract"): users, scripts and tests
//! rely on them. Flow: text → [`Config::from_toml`] (syntax, unknown keys) → [`Config::validate`]
//! (ranges, references, uniqueness). Every error names the offending field.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The configuration used when `sipedge run` gets no `--config`: a demo on loopback.
pub const EMBEDDED_DEFAULT: &str = include_str!("default.toml");

/// Most trunks one configuration may declare.
pub const MAX_TRUNKS: usize = 10_000;
/// Most source CIDRs one trunk may declare.
pub const MAX_SOURCES_PER_TRUNK: usize = 1_024;
/// Highest accepted per-trunk CPS (new calls per second).
pub const MAX_CPS: u32 = 1_000_000;
/// Highest accepted per-trunk concurrent-call limit.
pub const MAX_CALLS: u32 = 10_000_000;
/// Most worker threads.
pub const MAX_WORKERS: usize = 256;
/// Most URIs in one target.
pub const MAX_URIS_PER_TARGET: usize = 64;
/// Longest E.164 number, in digits (ITU-T E.164 §6).
pub const E164_MAX_DIGITS: usize = 15;
/// Most emergency numbers one trunk may declare.
pub const MAX_EMERGENCY_NUMBERS: usize = 16;
/// Longest emergency number, in digits.
pub const MAX_EMERGENCY_DIGITS: usize = 8;
/// Highest accepted per-DID concurrent-call limit (the DID table packs it into 20 bits).
pub const MAX_DID_CALLS: u32 = (1 << 20) - 1;
/// Highest weight of one target URI.
pub const MAX_TARGET_WEIGHT: u32 = 1_000_000;
/// Longest DID metadata string (customer, group, tag, description), in bytes.
pub const MAX_DID_META_BYTES: usize = 256;
/// Shortest and longest health-probe interval, in seconds.
pub const HEALTH_INTERVAL_SECS: std::ops::RangeInclusive<u32> = 1..=3_600;
/// Most consecutive results `down_after` / `up_after` may ask for.
pub const MAX_HEALTH_COUNT: u32 = 100;
/// Longest name (trunk, target), in bytes.
pub const MAX_NAME_BYTES: usize = 64;
/// Longest free-text field (DID customer, group, tag, description; block reason), in bytes.
pub const MAX_TEXT_BYTES: usize = 256;

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Data-plane settings.
    #[serde(default)]
    pub edge: EdgeConfig,
    /// Control-plane settings.
    #[serde(default)]
    pub control: ControlConfig,
    /// The XDP filter; absent: XDP off, user-space filter only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub xdp: Option<XdpConfig>,
    /// Carrier or customer interconnects.
    #[serde(default, rename = "trunk")]
    pub trunks: Vec<Trunk>,
    /// Where calls for DIDs go.
    #[serde(default, rename = "target")]
    pub targets: Vec<Target>,
    /// Exact DIDs.
    #[serde(default, rename = "did")]
    pub dids: Vec<Did>,
    /// Number blocks: prefixes or explicit inclusive ranges.
    #[serde(default, rename = "did_range")]
    pub did_ranges: Vec<DidRange>,
    /// OPTIONS health probes to target URIs.
    #[serde(default)]
    pub health: HealthConfig,
    /// Blocked sources (dropped by the XDP filter and in user space).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocklist: Vec<BlockEntry>,
}

/// `[health]`: OPTIONS probes to every target URI. A URI is down after `down_after` consecutive
/// failures and up again after `up_after` consecutive successes, so detection takes
/// `down_after × interval_secs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// Probe targets at all. Default: true. (Off only for peers that cannot answer OPTIONS,
    /// such as SIPp's built-in `uas` scenario in load tests.)
    #[serde(default = "default_health_enabled")]
    pub enabled: bool,
    /// Seconds between probes of one URI. Default: 30 (what carriers run).
    #[serde(default = "default_health_interval")]
    pub interval_secs: u32,
    /// Milliseconds a probe may wait for a final response before it counts as a failure.
    /// Default: 5000; must be below `interval_secs`.
    #[serde(default = "default_health_timeout")]
    pub timeout_ms: u32,
    /// Consecutive failures that take a URI down. Default: 3.
    #[serde(default = "default_down_after")]
    pub down_after: u32,
    /// Consecutive successes that bring a URI back up. Default: 2.
    #[serde(default = "default_up_after")]
    pub up_after: u32,
    /// What a `503` answer carrying `Retry-After` means. Default: `failure`.
    #[serde(default)]
    pub retry_after_503: RetryAfter503,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            enabled: default_health_enabled(),
            interval_secs: default_health_interval(),
            timeout_ms: default_health_timeout(),
            down_after: default_down_after(),
            up_after: default_up_after(),
            retry_after_503: RetryAfter503::default(),
        }
    }
}

fn default_health_enabled() -> bool {
    true
}
fn default_health_interval() -> u32 {
    30
}
fn default_health_timeout() -> u32 {
    5_000
}
fn default_down_after() -> u32 {
    3
}
fn default_up_after() -> u32 {
    2
}

/// How a health probe answered `503` with `Retry-After` counts. A `503` without it, and every
/// other 5xx, is always a failure.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RetryAfter503 {
    /// A failure like any other 5xx.
    #[default]
    Failure,
    /// The URI is alive (it answered): a success.
    Success,
    /// The URI goes down at once and is not probed until `Retry-After` has passed.
    Pause,
}

/// `[edge]`: listen addresses, workers, I/O backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeConfig {
    /// Listen addresses, `udp:`, `tcp:` or `tls:` then a socket address. Default: `udp:127.0.0.1:5060`.
    #[serde(default = "default_listen")]
    pub listen: Vec<ListenAddr>,
    /// Worker threads; default: the number of cores.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workers: Option<usize>,
    /// I/O backend. Default: `uring` (falls back to `portable` where io_uring is unavailable).
    #[serde(default)]
    pub io: IoBackend,
    /// RFC 3261 T1 (round-trip estimate), in milliseconds: retransmissions start here and
    /// timers B/F (failover on silence) fire at 64·T1. Default: 500.
    #[serde(default = "default_t1_ms")]
    pub t1_ms: u32,
    /// Proxy Timer C (no final answer to an INVITE), in seconds; more than 180. Default: 181.
    #[serde(default = "default_timer_c_secs")]
    pub timer_c_secs: u32,
    /// Longest call, in seconds, after which the edge sends each side a BYE (as if from the
    /// other) and frees the call's slots. Default: 14400 (4 hours).
    #[serde(default = "default_max_call_secs")]
    pub max_call_secs: u32,
    /// Live transactions at most; beyond, new requests get 503. Each call holds about two for
    /// 32 s after it ends (RFC 3261 timers), so the default carries about 16,000 calls/s.
    /// Memory follows use, not the bound. Default: 1048576.
    #[serde(default = "default_max_transactions")]
    pub max_transactions: u32,
}

/// Bounds of `[edge]` timer and table keys.
pub const T1_MS_RANGE: std::ops::RangeInclusive<u32> = 10..=10_000;
/// Timer C bounds, in seconds (RFC 3261 §16.6: more than 3 minutes).
pub const TIMER_C_SECS_RANGE: std::ops::RangeInclusive<u32> = 181..=3_600;
/// Longest call bounds, in seconds.
pub const MAX_CALL_SECS_RANGE: std::ops::RangeInclusive<u32> = 60..=7 * 24 * 3_600;
/// Transaction table bounds.
pub const MAX_TRANSACTIONS_RANGE: std::ops::RangeInclusive<u32> = 64..=16_777_216;

fn default_t1_ms() -> u32 {
    500
}
fn default_timer_c_secs() -> u32 {
    181
}
fn default_max_call_secs() -> u32 {
    4 * 3_600
}
fn default_max_transactions() -> u32 {
    1_048_576
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            workers: None,
            io: IoBackend::default(),
            t1_ms: default_t1_ms(),
            timer_c_secs: default_timer_c_secs(),
            max_call_secs: default_max_call_secs(),
            max_transactions: default_max_transactions(),
        }
    }
}

fn default_listen() -> Vec<ListenAddr> {
    vec![ListenAddr { transport: Transport::Udp, addr: SocketAddr::from(([127, 0, 0, 1], 5060)) }]
}

/// `[control]`: REST API address and database path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    /// REST API and `/metrics`. Default: `127.0.0.1:8080` (loopback only).
    #[serde(default = "default_api")]
    pub api: SocketAddr,
    /// SQLite database (WAL). Default: `sipedge.db`.
    #[serde(default = "default_db")]
    pub db: PathBuf,
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self { api: default_api(), db: default_db() }
    }
}

fn default_api() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

fn default_db() -> PathBuf {
    PathBuf::from("sipedge.db")
}

/// `[xdp]`: the packet filter — in the kernel (XDP) on `interface`, else the same policy in user
/// space on every datagram sipedge receives. The policy keys apply to both; without an
/// `interface` only the user-space filter runs. Defaults are those of `ebpf::Policy::default()`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XdpConfig {
    /// Interface to attach to. Absent: XDP off, the policy runs in user space.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// Attach mode. Default: `native` (falls back to `skb`).
    #[serde(default)]
    pub mode: XdpMode,
    /// What happens to SIP traffic from sources outside every trunk. Default: `drop`.
    #[serde(default)]
    pub unknown_sources: UnknownSources,
    /// Refill rate of one unknown source's bucket (IPv6: one /64), packets/s, under
    /// `rate-limit`. Default: 10.
    #[serde(default = "default_per_source_pps")]
    pub per_source_pps: u64,
    /// Depth of one unknown source's bucket, packets. Default: 20.
    #[serde(default = "default_per_source_burst")]
    pub per_source_burst: u64,
    /// Refill rate of the budget all unknown sources share, packets/s. Default: 2000.
    #[serde(default = "default_global_pps")]
    pub global_pps: u64,
    /// Depth of the shared budget, packets. Default: 4000.
    #[serde(default = "default_global_burst")]
    pub global_burst: u64,
    /// UDP ports whose traffic is SIP (XDP judges only these; every other packet passes).
    /// Must include sipedge's UDP listen ports when `interface` is set. Default: [5060].
    #[serde(default = "default_udp_ports")]
    pub udp_ports: Vec<u16>,
    /// TCP ports whose traffic is SIP. Default: [5060, 5061].
    #[serde(default = "default_tcp_ports")]
    pub tcp_ports: Vec<u16>,
    /// Non-first IP fragments of a SIP datagram. Default: `follow` (the first's verdict).
    #[serde(default)]
    pub fragments: FragmentPolicy,
    /// User-Agent / From prefixes of SIP scanners, dropped from unknown sources whatever the
    /// rate (case-insensitive; ASCII). Default: [`DEFAULT_SCANNER_SIGNATURES`].
    #[serde(default = "default_scanner_signatures")]
    pub scanner_signatures: Vec<String>,
    /// XDP reports one drop event per this many drops per CPU; 0: none. Default: 64.
    #[serde(default = "default_sample_every")]
    pub sample_every: u32,
}

impl Default for XdpConfig {
    fn default() -> Self {
        Self {
            interface: None,
            mode: XdpMode::default(),
            unknown_sources: UnknownSources::default(),
            per_source_pps: default_per_source_pps(),
            per_source_burst: default_per_source_burst(),
            global_pps: default_global_pps(),
            global_burst: default_global_burst(),
            udp_ports: default_udp_ports(),
            tcp_ports: default_tcp_ports(),
            fragments: FragmentPolicy::default(),
            scanner_signatures: default_scanner_signatures(),
            sample_every: default_sample_every(),
        }
    }
}

/// Bucket refill rates the filter accepts, packets/s (the program's `MAX_RATE_PPS`).
pub const XDP_RATE_PPS: std::ops::RangeInclusive<u64> = 1..=100_000_000;
/// Bucket depths the filter accepts, packets (the program's `MAX_BURST`).
pub const XDP_BURST: std::ops::RangeInclusive<u64> = 1..=10_000_000;
/// Most SIP ports per transport (the program's `MAX_SIP_PORTS`).
pub const XDP_MAX_SIP_PORTS: usize = 64;
/// Most scanner signatures (the program's `MAX_SCANNER_SIGS`).
pub const XDP_MAX_SCANNER_SIGS: usize = 16;
/// Longest scanner signature, bytes (the program's `MAX_SIG_LEN`).
pub const XDP_MAX_SIG_LEN: usize = 32;
/// Default scanner signatures.
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

fn default_per_source_pps() -> u64 {
    10
}
fn default_per_source_burst() -> u64 {
    20
}
fn default_global_pps() -> u64 {
    2_000
}
fn default_global_burst() -> u64 {
    4_000
}
fn default_udp_ports() -> Vec<u16> {
    vec![5060]
}
fn default_tcp_ports() -> Vec<u16> {
    vec![5060, 5061]
}
fn default_scanner_signatures() -> Vec<String> {
    DEFAULT_SCANNER_SIGNATURES.iter().map(|s| (*s).to_owned()).collect()
}
fn default_sample_every() -> u32 {
    64
}

impl XdpConfig {
    /// Checks this section against `listen` (sipedge's sockets); field names are relative.
    pub fn check(&self, listen: &[ListenAddr]) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if let Some(i) = &self.interface
            && i.trim().is_empty()
        {
            errors.push(FieldError::new("interface", "must name an interface (or be left out: XDP off)"));
        }
        for (field, value, range) in [
            ("per_source_pps", self.per_source_pps, &XDP_RATE_PPS),
            ("per_source_burst", self.per_source_burst, &XDP_BURST),
            ("global_pps", self.global_pps, &XDP_RATE_PPS),
            ("global_burst", self.global_burst, &XDP_BURST),
        ] {
            if !range.contains(&value) {
                errors.push(FieldError::new(
                    field,
                    format!("{value} is outside {}..={}", range.start(), range.end()),
                ));
            }
        }
        for (field, ports) in [("udp_ports", &self.udp_ports), ("tcp_ports", &self.tcp_ports)] {
            if ports.len() > XDP_MAX_SIP_PORTS {
                errors.push(FieldError::new(field, format!("at most {XDP_MAX_SIP_PORTS} ports")));
            }
            if ports.contains(&0) {
                errors.push(FieldError::new(field, "port 0 is not a port"));
            }
            let distinct: HashSet<&u16> = ports.iter().collect();
            if distinct.len() != ports.len() {
                errors.push(FieldError::new(field, "lists a port twice"));
            }
        }
        if self.udp_ports.is_empty() && self.tcp_ports.is_empty() {
            errors.push(FieldError::new("udp_ports", "udp_ports and tcp_ports cannot both be empty"));
        }
        if self.interface.is_some() {
            for (i, l) in listen.iter().enumerate() {
                let (field, ports) = match l.transport {
                    Transport::Udp => ("udp_ports", &self.udp_ports),
                    Transport::Tcp | Transport::Tls => ("tcp_ports", &self.tcp_ports),
                };
                let port = l.addr.port();
                if port != 0 && !ports.contains(&port) {
                    errors.push(FieldError::new(
                        field,
                        format!("misses port {port} of edge.listen[{i}]: XDP would not judge sipedge's own traffic"),
                    ));
                }
            }
        }
        if self.scanner_signatures.len() > XDP_MAX_SCANNER_SIGS {
            errors.push(FieldError::new("scanner_signatures", format!("at most {XDP_MAX_SCANNER_SIGS}")));
        }
        for (i, sig) in self.scanner_signatures.iter().enumerate() {
            if sig.is_empty()
                || sig.len() > XDP_MAX_SIG_LEN
                || !sig.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
            {
                errors.push(FieldError::new(
                    format!("scanner_signatures[{i}]"),
                    format!("needs 1..={XDP_MAX_SIG_LEN} printable ASCII bytes"),
                ));
            }
        }
        errors
    }
}

/// Non-first fragments of a SIP datagram.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FragmentPolicy {
    /// The first fragment's verdict.
    #[default]
    Follow,
    /// Dropped (SIP then works unfragmented or over TCP only).
    Drop,
}

/// XDP attach mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum XdpMode {
    /// In the driver (falls back to `skb` where the driver cannot).
    #[default]
    Native,
    /// Generic XDP on the skb.
    Skb,
}

/// Policy for SIP traffic from sources outside every trunk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnknownSources {
    /// Dropped without a reply.
    #[default]
    Drop,
    /// A token bucket per source under a global budget.
    RateLimit,
}

/// I/O backend of the UDP workers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IoBackend {
    /// io_uring (multishot receive, buffer ring, batched send).
    #[default]
    Uring,
    /// `recvmmsg`/`sendmmsg`.
    Portable,
}

/// Transport of a listen address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
    /// TLS over TCP.
    Tls,
}

/// A listen address: `udp:127.0.0.1:5060`, `tcp:[::1]:5060`, `tls:0.0.0.0:5061`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenAddr {
    /// Transport.
    pub transport: Transport,
    /// Socket address.
    pub addr: SocketAddr,
}

impl FromStr for ListenAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (scheme, addr) = s
            .split_once(':')
            .ok_or_else(|| format!("{s:?}: expected udp:ADDR:PORT, tcp:ADDR:PORT or tls:ADDR:PORT"))?;
        let transport = match scheme {
            "udp" => Transport::Udp,
            "tcp" => Transport::Tcp,
            "tls" => Transport::Tls,
            other => return Err(format!("{s:?}: unknown transport {other:?} (udp, tcp or tls)")),
        };
        let addr = addr
            .parse()
            .map_err(|_| format!("{s:?}: {addr:?} is not a socket address (IPv6 needs [brackets])"))?;
        Ok(Self { transport, addr })
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = match self.transport {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        };
        write!(f, "{t}:{}", self.addr)
    }
}

impl Serialize for ListenAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ListenAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// `[[trunk]]`: a carrier or customer interconnect, identified by its source addresses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trunk {
    /// Unique name.
    pub name: String,
    /// Allow-list CIDRs; also identify the trunk.
    pub sources: Vec<IpNet>,
    /// New calls per second. Default: 100.
    #[serde(default = "default_cps")]
    pub cps: u32,
    /// Concurrent dialogs. Default: 1000.
    #[serde(default = "default_max_calls")]
    pub max_calls: u32,
    /// Country calling code for national numbers, e.g. `1`, `44`. Default: `1`.
    #[serde(default = "default_country_code")]
    pub country_code: String,
    /// National (trunk) prefix, e.g. `1` in NANP, `0` in the UK. Default: `1`.
    #[serde(default = "default_national_prefix")]
    pub national_prefix: String,
    /// International prefix, e.g. `011` in NANP, `00` in the UK/EU. Default: `011`.
    #[serde(default = "default_international_prefix")]
    pub international_prefix: String,
    /// Target for emergency numbers; without it emergency numbers get 503.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emergency_target: Option<String>,
    /// Answer to a new call over `max_calls`: 503 (default) or 486 Busy Here.
    #[serde(default = "default_over_capacity_code")]
    pub over_capacity_code: u16,
    /// Emergency numbers as dialled (never looked up as DIDs). Default: by `country_code`
    /// (`1`: 911; `44`: 999, 112; `49`: 110, 112; `91`: 112, 100, 101, 102, 108;
    /// `61`: 000, 112; elsewhere 112).
    pub emergency_numbers: Option<Vec<String>>,
    /// Fewest digits of a national significant number (after the national prefix, or dialled
    /// without one); shorter numbers are short codes or incomplete and get 484. Default: 7.
    #[serde(default = "default_min_national_digits")]
    pub min_national_digits: u8,
}

fn default_cps() -> u32 {
    100
}
fn default_max_calls() -> u32 {
    1_000
}
fn default_over_capacity_code() -> u16 {
    503
}
fn default_country_code() -> String {
    "1".into()
}
fn default_national_prefix() -> String {
    "1".into()
}
fn default_international_prefix() -> String {
    "011".into()
}
fn default_min_national_digits() -> u8 {
    7
}

/// `[[target]]`: where calls for DIDs go; URIs are tried in order, or shared by weight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// Unique name.
    pub name: String,
    /// `sip:` URIs, tried in order (serial failover) unless `weights` is given.
    pub uris: Vec<String>,
    /// One weight per URI (1..=1000000): calls are shared in proportion (load sharing), the
    /// others remaining in order for failover. Absent: serial failover.
    pub weights: Option<Vec<u32>>,
    /// Target that takes the calls when every URI of this one is down (itself without an
    /// overflow). Absent: such calls get 503.
    pub overflow: Option<String>,
}

/// `[[did]]`: one exact DID and its inventory fields.
///
/// Build one with [`Did::new`] and set the inventory fields you need; `number`, `target` and
/// `max_calls` decide routing, the other fields are carried beside the route, and only DIDs with
/// status `in-use` are routed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Did {
    /// E.164 number with `+`.
    pub number: String,
    /// Target name.
    pub target: String,
    /// Concurrent calls to this DID (1..=1048575). Absent: no per-DID limit.
    pub max_calls: Option<u32>,
    /// Customer the number is assigned to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
    /// Group (e.g. a department or a queue) within the customer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Free-form tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// `in-use` (routed) or `free` (held in inventory, not routed: calls get 404). Default: `in-use`.
    #[serde(default)]
    pub status: DidStatus,
    /// Date (`YYYY-MM-DD`, UTC) the number became free; set by the store when status turns `free`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub free_since: Option<String>,
    /// Operator's note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl Did {
    /// An in-use DID routed to `target`, with no inventory fields.
    pub fn new(number: impl Into<String>, target: impl Into<String>) -> Self {
        Self { number: number.into(), target: target.into(), ..Self::default() }
    }

    /// Checks this DID alone (not its target reference); field names are relative (`number`).
    pub fn check(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if let Err(why) = check_e164(&self.number) {
            errors.push(FieldError::new("number", why));
        }
        if self.target.is_empty() {
            errors.push(FieldError::new("target", "is required"));
        }
        for (field, value) in [
            ("customer", &self.customer),
            ("group", &self.group),
            ("tag", &self.tag),
            ("description", &self.description),
        ] {
            if let Some(v) = value
                && let Err(why) = check_text(v)
            {
                errors.push(FieldError::new(field, why));
            }
        }
        if let Some(d) = &self.free_since
            && let Err(why) = check_date(d)
        {
            errors.push(FieldError::new("free_since", why));
        }
        errors
    }
}

/// Inventory status of a DID.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DidStatus {
    /// Assigned and routed.
    #[default]
    InUse,
    /// In the inventory but not routed.
    Free,
}

impl DidStatus {
    /// The contract spelling: `in-use` or `free`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InUse => "in-use",
            Self::Free => "free",
        }
    }
}

impl FromStr for DidStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "in-use" => Ok(Self::InUse),
            "free" => Ok(Self::Free),
            other => Err(format!("{other:?} is not a status (in-use or free)")),
        }
    }
}

/// `[[blocklist]]`: a blocked source CIDR, dropped before any SIP processing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockEntry {
    /// Blocked source network.
    pub cidr: IpNet,
    /// Why it is blocked (shown in the audit log and the API).
    pub reason: String,
    /// When the block ends, RFC 3339 UTC (`2026-11-22T00:00:00Z`); absent: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
}

impl BlockEntry {
    /// Checks this entry alone; field names are relative (`cidr`).
    pub fn check(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if self.cidr.trunc() != self.cidr {
            errors.push(FieldError::new(
                "cidr",
                format!("{} has host bits set (did you mean {}?)", self.cidr, self.cidr.trunc()),
            ));
        }
        if self.reason.trim().is_empty() {
            errors.push(FieldError::new("reason", "is required"));
        } else if let Err(why) = check_text(&self.reason) {
            errors.push(FieldError::new("reason", why));
        }
        if let Some(e) = &self.expires
            && let Err(why) = check_timestamp(e)
        {
            errors.push(FieldError::new("expires", why));
        }
        errors
    }
}

/// `[[did_range]]`: a prefix block (`prefix`) or an explicit inclusive range (`first`, `last`),
/// with the same metadata and optional call limit as a `[[did]]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DidRange {
    /// E.164 prefix with `+`: every number under it.
    pub prefix: Option<String>,
    /// First number of an inclusive range.
    pub first: Option<String>,
    /// Last number of an inclusive range.
    pub last: Option<String>,
    /// Target name.
    pub target: String,
    /// Concurrent calls to the whole block (1..=1048575), counted per block, not per number.
    /// Absent: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_calls: Option<u32>,
    /// Customer the block is assigned to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
    /// Group within the customer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Free-form tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Operator's note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// One reason a configuration is refused, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// Path of the field, e.g. `trunk[0].sources[1]`.
    pub field: String,
    /// Why it is refused.
    pub reason: String,
}

impl FieldError {
    /// A field error.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { field: field.into(), reason: reason.into() }
    }

    /// The same error with its field under `prefix` (`cps` under `trunk[0]` → `trunk[0].cps`).
    pub fn under(self, prefix: &str) -> Self {
        let field =
            if self.field.is_empty() { prefix.to_owned() } else { format!("{prefix}.{}", self.field) };
        Self { field, reason: self.reason }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// TOML syntax, unknown key or wrong type.
    #[error("{0}")]
    Syntax(String),
    /// Values out of range, dangling references, duplicates.
    #[error("invalid configuration:\n{}", .0.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<FieldError>),
}

impl Config {
    /// Parses and validates TOML text.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Syntax(e.to_string()))?;
        config.validate().map_err(ConfigError::Invalid)?;
        Ok(config)
    }

    /// Reads, parses and validates a file.
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        Self::from_toml(&text).map_err(|e| match e {
            ConfigError::Syntax(msg) => ConfigError::Syntax(format!("{}: {msg}", path.display())),
            other => other,
        })
    }

    /// The embedded demo default.
    pub fn embedded_default() -> Self {
        Self::from_toml(EMBEDDED_DEFAULT).expect("the embedded default configuration is valid")
    }

    /// Checks ranges, references and uniqueness; returns every problem found.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut err = |field: String, reason: String| errors.push(FieldError { field, reason });

        if self.edge.listen.is_empty() {
            err("edge.listen".into(), "at least one listen address is required".into());
        }
        if let Some(w) = self.edge.workers
            && !(1..=MAX_WORKERS).contains(&w)
        {
            err("edge.workers".into(), format!("{w} is outside 1..={MAX_WORKERS}"));
        }
        for (field, value, range) in [
            ("edge.t1_ms", self.edge.t1_ms, T1_MS_RANGE),
            ("edge.timer_c_secs", self.edge.timer_c_secs, TIMER_C_SECS_RANGE),
            ("edge.max_call_secs", self.edge.max_call_secs, MAX_CALL_SECS_RANGE),
            ("edge.max_transactions", self.edge.max_transactions, MAX_TRANSACTIONS_RANGE),
        ] {
            if !range.contains(&value) {
                err(field.into(), format!("{value} is outside {}..={}", range.start(), range.end()));
            }
        }
        if let Some(xdp) = &self.xdp {
            for e in xdp.check(&self.edge.listen) {
                let e = e.under("xdp");
                err(e.field, e.reason);
            }
        }

        let targets: HashSet<&str> = self.targets.iter().map(|t| t.name.as_str()).collect();
        let mut seen = HashSet::new();
        for (i, t) in self.targets.iter().enumerate() {
            let f = format!("target[{i}]");
            for e in t.check() {
                let e = e.under(&f);
                err(e.field, e.reason);
            }
            if !seen.insert(t.name.as_str()) {
                err(format!("{f}.name"), format!("{:?} is used twice", t.name));
            }
            if let Some(w) = &t.weights {
                if w.len() != t.uris.len() {
                    err(format!("{f}.weights"), format!("needs one weight per URI ({})", t.uris.len()));
                }
                if w.iter().any(|w| !(1..=MAX_TARGET_WEIGHT).contains(w)) {
                    err(format!("{f}.weights"), format!("each weight must be 1..={MAX_TARGET_WEIGHT}"));
                }
            }
            if let Some(o) = &t.overflow {
                match self.targets.iter().find(|x| &x.name == o) {
                    None => err(format!("{f}.overflow"), format!("no target named {o:?}")),
                    Some(x) if x.name == t.name => err(format!("{f}.overflow"), "cannot be itself".into()),
                    Some(x) if x.overflow.is_some() => {
                        err(format!("{f}.overflow"), format!("{o:?} has an overflow itself (one level only)"))
                    }
                    Some(_) => {}
                }
            }
        }
        let h = &self.health;
        if !HEALTH_INTERVAL_SECS.contains(&h.interval_secs) {
            err(
                "health.interval_secs".into(),
                format!("{} is outside {HEALTH_INTERVAL_SECS:?}", h.interval_secs),
            );
        }
        if h.timeout_ms == 0 || u64::from(h.timeout_ms) >= u64::from(h.interval_secs) * 1_000 {
            err("health.timeout_ms".into(), "must be above 0 and below interval_secs".into());
        }
        if !(1..=MAX_HEALTH_COUNT).contains(&h.down_after) {
            err("health.down_after".into(), format!("{} is outside 1..={MAX_HEALTH_COUNT}", h.down_after));
        }
        if !(1..=MAX_HEALTH_COUNT).contains(&h.up_after) {
            err("health.up_after".into(), format!("{} is outside 1..={MAX_HEALTH_COUNT}", h.up_after));
        }

        if self.trunks.len() > MAX_TRUNKS {
            err("trunk".into(), format!("at most {MAX_TRUNKS} trunks"));
        }
        let mut seen = HashSet::new();
        let mut claimed: std::collections::HashMap<IpNet, &str> = std::collections::HashMap::new();
        for (i, t) in self.trunks.iter().enumerate() {
            let f = format!("trunk[{i}]");
            for e in t.check() {
                let e = e.under(&f);
                err(e.field, e.reason);
            }
            if !seen.insert(t.name.as_str()) {
                err(format!("{f}.name"), format!("{:?} is used twice", t.name));
            }
            for (j, net) in t.sources.iter().enumerate() {
                if let Some(other) = claimed.insert(*net, &t.name) {
                    err(format!("{f}.sources[{j}]"), format!("{net} is already a source of trunk {other:?}"));
                }
            }
            if let Some(e) = &t.emergency_target
                && !targets.contains(e.as_str())
            {
                err(format!("{f}.emergency_target"), format!("no target named {e:?}"));
            }
            if let Some(list) = &t.emergency_numbers {
                if list.len() > MAX_EMERGENCY_NUMBERS {
                    err(format!("{f}.emergency_numbers"), format!("at most {MAX_EMERGENCY_NUMBERS}"));
                }
                for (j, n) in list.iter().enumerate() {
                    if n.is_empty() || n.len() > MAX_EMERGENCY_DIGITS || !all_digits(n) {
                        err(
                            format!("{f}.emergency_numbers[{j}]"),
                            format!("{n:?} must be 1 to {MAX_EMERGENCY_DIGITS} digits"),
                        );
                    }
                }
            }
            if !(1..=E164_MAX_DIGITS as u8 - 1).contains(&t.min_national_digits) {
                err(
                    format!("{f}.min_national_digits"),
                    format!("{} is outside 1..={}", t.min_national_digits, E164_MAX_DIGITS - 1),
                );
            }
        }

        let mut numbers = HashSet::new();
        for (i, d) in self.dids.iter().enumerate() {
            let f = format!("did[{i}]");
            let problems = d.check();
            let number_ok = !problems.iter().any(|e| e.field == "number");
            for e in problems {
                let e = e.under(&f);
                err(e.field, e.reason);
            }
            if number_ok && !numbers.insert(d.number.as_str()) {
                err(format!("{f}.number"), format!("{} is listed twice", d.number));
            }
            if !targets.contains(d.target.as_str()) {
                err(format!("{f}.target"), format!("no target named {:?}", d.target));
            }
            if let Some(m) = d.max_calls
                && !(1..=MAX_DID_CALLS).contains(&m)
            {
                err(format!("{f}.max_calls"), format!("{m} is outside 1..={MAX_DID_CALLS}"));
            }
            for (key, v) in [
                ("customer", &d.customer),
                ("group", &d.group),
                ("tag", &d.tag),
                ("description", &d.description),
            ] {
                if v.as_ref().is_some_and(|v| v.len() > MAX_DID_META_BYTES) {
                    err(format!("{f}.{key}"), format!("longer than {MAX_DID_META_BYTES} bytes"));
                }
            }
        }
        for (i, r) in self.did_ranges.iter().enumerate() {
            let f = format!("did_range[{i}]");
            for e in r.check() {
                let e = e.under(&f);
                err(e.field, e.reason);
            }
            if !targets.contains(r.target.as_str()) {
                err(format!("{f}.target"), format!("no target named {:?}", r.target));
            }
        }
        let mut blocked = HashSet::new();
        for (i, b) in self.blocklist.iter().enumerate() {
            let f = format!("blocklist[{i}]");
            for e in b.check() {
                let e = e.under(&f);
                err(e.field, e.reason);
            }
            if !blocked.insert(b.cidr) {
                err(format!("{f}.cidr"), format!("{} is listed twice", b.cidr));
            }
        }

        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }
}

impl Target {
    /// Checks this target alone; field names are relative (`uris[0]`).
    pub fn check(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if let Err(why) = check_name(&self.name) {
            errors.push(FieldError::new("name", why));
        }
        if self.uris.is_empty() || self.uris.len() > MAX_URIS_PER_TARGET {
            errors.push(FieldError::new("uris", format!("needs 1..={MAX_URIS_PER_TARGET} URIs")));
        }
        for (j, uri) in self.uris.iter().enumerate() {
            if let Err(why) = check_target_uri(uri) {
                errors.push(FieldError::new(format!("uris[{j}]"), why));
            }
        }
        errors
    }
}

impl Trunk {
    /// Checks this trunk alone (not its emergency target reference, nor sources claimed by
    /// other trunks); field names are relative (`cps`, `sources[1]`).
    pub fn check(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let mut err = |field: String, reason: String| errors.push(FieldError { field, reason });
        if let Err(why) = check_name(&self.name) {
            err("name".into(), why);
        }
        if self.sources.is_empty() || self.sources.len() > MAX_SOURCES_PER_TRUNK {
            err("sources".into(), format!("needs 1..={MAX_SOURCES_PER_TRUNK} CIDRs"));
        }
        let mut seen = HashSet::new();
        for (j, net) in self.sources.iter().enumerate() {
            if net.trunc() != *net {
                err(
                    format!("sources[{j}]"),
                    format!("{net} has host bits set (did you mean {}?)", net.trunc()),
                );
            } else if !seen.insert(*net) {
                err(format!("sources[{j}]"), format!("{net} is listed twice"));
            }
        }
        if !(1..=MAX_CPS).contains(&self.cps) {
            err("cps".into(), format!("{} is outside 1..={MAX_CPS}", self.cps));
        }
        if !(1..=MAX_CALLS).contains(&self.max_calls) {
            err("max_calls".into(), format!("{} is outside 1..={MAX_CALLS}", self.max_calls));
        }
        if self.country_code.is_empty()
            || self.country_code.len() > 3
            || !all_digits(&self.country_code)
            || self.country_code.starts_with('0')
        {
            err("country_code".into(), "must be 1 to 3 digits, not starting with 0".into());
        }
        if self.national_prefix.len() > 4 || !all_digits(&self.national_prefix) {
            err("national_prefix".into(), "must be 0 to 4 digits".into());
        }
        if self.international_prefix.is_empty()
            || self.international_prefix.len() > 4
            || !all_digits(&self.international_prefix)
        {
            err("international_prefix".into(), "must be 1 to 4 digits".into());
        }
        if !matches!(self.over_capacity_code, 486 | 503) {
            err("over_capacity_code".into(), format!("{} must be 503 or 486", self.over_capacity_code));
        }
        errors
    }
}

impl DidRange {
    /// Checks this block alone (not its target reference); field names are relative (`last`).
    pub fn check(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let mut err = |field: &str, reason: String| errors.push(FieldError::new(field, reason));
        match (&self.prefix, &self.first, &self.last) {
            (Some(p), None, None) => {
                if let Err(why) = check_e164(p) {
                    err("prefix", why);
                }
            }
            (None, Some(first), Some(last)) => {
                let a = check_e164(first).map_err(|why| err("first", why));
                let b = check_e164(last).map_err(|why| err("last", why));
                if a.is_ok() && b.is_ok() {
                    if first.len() != last.len() {
                        err("last", "first and last must have the same number of digits".into());
                    } else if first > last {
                        err("last", format!("{last} is below first {first}"));
                    }
                }
            }
            _ => err("", "give either prefix, or first and last".into()),
        }
        if self.target.is_empty() {
            err("target", "is required".into());
        }
        if let Some(m) = self.max_calls
            && !(1..=MAX_DID_CALLS).contains(&m)
        {
            err("max_calls", format!("{m} is outside 1..={MAX_DID_CALLS}"));
        }
        for (key, v) in [
            ("customer", &self.customer),
            ("group", &self.group),
            ("tag", &self.tag),
            ("description", &self.description),
        ] {
            if v.as_ref().is_some_and(|v| v.len() > MAX_DID_META_BYTES) {
                err(key, format!("longer than {MAX_DID_META_BYTES} bytes"));
            }
        }
        errors
    }
}

fn all_digits(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_digit())
}

/// A trunk or target name: 1 to [`MAX_NAME_BYTES`] of `[A-Za-z0-9._-]`.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok { Ok(()) } else { Err(format!("{name:?} must be 1 to {MAX_NAME_BYTES} of [A-Za-z0-9._-]")) }
}

/// Free text: at most [`MAX_TEXT_BYTES`] bytes, no control characters.
pub fn check_text(text: &str) -> Result<(), String> {
    if text.len() > MAX_TEXT_BYTES {
        return Err(format!("longer than {MAX_TEXT_BYTES} bytes"));
    }
    if text.chars().any(char::is_control) {
        return Err("contains control characters".into());
    }
    Ok(())
}

/// A calendar date `YYYY-MM-DD`.
pub fn check_date(date: &str) -> Result<(), String> {
    let b = date.as_bytes();
    let shape = b.len() == 10
        && b.iter().enumerate().all(|(i, c)| if i == 4 || i == 7 { *c == b'-' } else { c.is_ascii_digit() });
    let month = date.get(5..7).and_then(|m| m.parse::<u8>().ok()).unwrap_or(0);
    let day = date.get(8..10).and_then(|d| d.parse::<u8>().ok()).unwrap_or(0);
    if shape && (1..=12).contains(&month) && (1..=31).contains(&day) {
        Ok(())
    } else {
        Err(format!("{date:?} is not a date YYYY-MM-DD"))
    }
}

/// A UTC timestamp `YYYY-MM-DDTHH:MM:SSZ` (RFC 3339, the form the store writes).
pub fn check_timestamp(ts: &str) -> Result<(), String> {
    let bad = || format!("{ts:?} is not a UTC time YYYY-MM-DDTHH:MM:SSZ");
    let (date, time) = ts.split_once('T').ok_or_else(bad)?;
    check_date(date).map_err(|_| bad())?;
    let time = time.strip_suffix('Z').ok_or_else(bad)?;
    let parts: Vec<&str> = time.split(':').collect();
    let limits = [23, 59, 60];
    let ok = parts.len() == 3
        && parts.iter().zip(limits).all(|(p, max)| {
            p.len() == 2 && p.bytes().all(|c| c.is_ascii_digit()) && p.parse::<u8>().is_ok_and(|v| v <= max)
        });
    if ok { Ok(()) } else { Err(bad()) }
}

/// An E.164 number as the contract writes it: `+`, then 1 to 15 digits, the first not 0.
pub fn check_e164(number: &str) -> Result<(), String> {
    let digits = number.strip_prefix('+').ok_or_else(|| format!("{number:?} must start with + (E.164)"))?;
    if digits.is_empty() || digits.len() > E164_MAX_DIGITS || !all_digits(digits) {
        return Err(format!("{number:?} must be + then 1 to {E164_MAX_DIGITS} digits"));
    }
    if digits.starts_with('0') {
        return Err(format!("{number:?}: no E.164 number starts with 0"));
    }
    Ok(())
}

/// A target URI: `sip:HOST[:PORT][;params]` with HOST an IP address or hostname.
pub fn check_target_uri(uri: &str) -> Result<(), String> {
    let rest = uri.strip_prefix("sip:").ok_or_else(|| format!("{uri:?} must be a sip: URI"))?;
    let hostport = rest.split(';').next().unwrap_or_default();
    let hostport = hostport.rsplit_once('@').map_or(hostport, |(_, h)| h);
    if hostport.is_empty() {
        return Err(format!("{uri:?} has no host"));
    }
    let ok = if let Some(v6) = hostport.strip_prefix('[') {
        match v6.split_once(']') {
            Some((ip, port)) => {
                ip.parse::<std::net::Ipv6Addr>().is_ok()
                    && (port.is_empty()
                        || port.strip_prefix(':').is_some_and(|p| p.parse::<u16>().is_ok_and(|p| p > 0)))
            }
            None => false,
        }
    } else {
        let (host, port) = hostport.rsplit_once(':').map_or((hostport, None), |(h, p)| (h, Some(p)));
        !host.is_empty()
            && host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b))
            && port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0))
    };
    if ok { Ok(()) } else { Err(format!("{uri:?} is not sip:HOST[:PORT]")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_valid() {
        let c = Config::embedded_default();
        assert!(!c.trunks.is_empty());
        assert_eq!(c.control.api, default_api());
    }

    #[test]
    fn design_example_parses() {
        let text = r#"
[edge]
listen  = ["udp:127.0.0.1:5060", "udp:[::1]:5060", "tcp:127.0.0.1:5060"]
workers = 2
io      = "uring"
[control]
api     = "127.0.0.1:8080"
db      = "sipedge.db"
[xdp]
interface = "eth0"
mode      = "native"
unknown_sources = "drop"
[[trunk]]
name     = "carrier-a"
sources  = ["203.0.113.0/24"]
cps      = 200
max_calls = 5000
country_code = "1"
national_prefix = "1"
international_prefix = "011"
emergency_target = "psap"
[[target]]
name = "pbx1"
uris = ["sip:10.0.0.10:5060", "sip:10.0.0.11:5060"]
[[target]]
name = "psap"
uris = ["sip:[2001:db8::1]:5060"]
[[did]]
number = "+15551230000"
target = "pbx1"
[[did_range]]
prefix = "+1555124"
target = "pbx1"
[[did_range]]
first = "+15551250000"
last  = "+15551259999"
target = "pbx1"
"#;
        let c = Config::from_toml(text).unwrap();
        assert_eq!(c.edge.listen.len(), 3);
        assert_eq!(c.edge.listen[1].to_string(), "udp:[::1]:5060");
        assert_eq!(c.xdp.unwrap().unknown_sources, UnknownSources::Drop);
        assert_eq!(c.did_ranges.len(), 2);
    }

    #[test]
    fn errors_name_each_field() {
        let text = r#"
[edge]
workers = 0
[[trunk]]
name = "a"
sources = ["10.0.0.1/8"]
cps = 0
emergency_target = "nowhere"
[[target]]
name = "t"
uris = ["http://x"]
[[did]]
number = "5551234"
target = "missing"
[[did_range]]
first = "+15551259999"
last  = "+15551250000"
target = "t"
"#;
        let Err(ConfigError::Invalid(errors)) = Config::from_toml(text) else {
            panic!("expected validation errors");
        };
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        for want in [
            "edge.workers",
            "trunk[0].sources[0]",
            "trunk[0].cps",
            "trunk[0].emergency_target",
            "target[0].uris[0]",
            "did[0].number",
            "did[0].target",
            "did_range[0].last",
        ] {
            assert!(fields.contains(&want), "{want} missing from {fields:?}");
        }
    }

    #[test]
    fn unknown_keys_and_bad_listen_are_syntax_errors() {
        assert!(
            matches!(Config::from_toml("[edge]\nlisten = [\"sctp:1.2.3.4:5\"]"), Err(ConfigError::Syntax(m)) if m.contains("unknown transport"))
        );
        assert!(
            matches!(Config::from_toml("[edge]\nlisen = []"), Err(ConfigError::Syntax(m)) if m.contains("lisen"))
        );
    }

    #[test]
    fn routing_keys_have_defaults_and_are_validated() {
        let base = "[[trunk]]\nname = \"a\"\nsources = [\"192.0.2.0/24\"]\n[[target]]\nname = \"t\"\nuris = [\"sip:10.0.0.1\"]\n";
        let c = Config::from_toml(base).unwrap();
        assert_eq!(c.health, HealthConfig::default());
        assert_eq!((c.health.interval_secs, c.health.down_after, c.health.up_after), (30, 3, 2));
        assert_eq!((c.trunks[0].emergency_numbers.as_ref(), c.trunks[0].min_national_digits), (None, 7));
        let good = format!(
            "{base}[[target]]\nname = \"w\"\nuris = [\"sip:10.0.0.2\", \"sip:10.0.0.3\"]\nweights = [1, 3]\noverflow = \"t\"\n\
             [[did]]\nnumber = \"+15551230000\"\ntarget = \"w\"\nmax_calls = 10\ncustomer = \"acme\"\ntag = \"crm-1\"\n\
             [[did_range]]\nprefix = \"+1555124\"\ntarget = \"w\"\nmax_calls = 5\ncustomer = \"acme\"\ngroup = \"sales\"\n\
             [health]\ninterval_secs = 10\ntimeout_ms = 2000\nretry_after_503 = \"pause\"\n"
        );
        let c = Config::from_toml(&good).unwrap();
        assert_eq!(c.health.retry_after_503, RetryAfter503::Pause);
        assert_eq!(c.dids[0].max_calls, Some(10));
        assert_eq!((c.did_ranges[0].max_calls, c.did_ranges[0].group.as_deref()), (Some(5), Some("sales")));
        let bad = "[[trunk]]\nname = \"a\"\nsources = [\"192.0.2.0/24\"]\nemergency_numbers = [\"9x9\"]\nmin_national_digits = 0\n\
             [[target]]\nname = \"t\"\nuris = [\"sip:10.0.0.1\"]\nweights = [1, 2]\noverflow = \"t\"\n\
             [[target]]\nname = \"u\"\nuris = [\"sip:10.0.0.1\"]\nweights = [0]\noverflow = \"v\"\n\
             [[target]]\nname = \"v\"\nuris = [\"sip:10.0.0.1\"]\noverflow = \"t\"\n\
             [[did]]\nnumber = \"+15551230000\"\ntarget = \"t\"\nmax_calls = 2000000\n\
             [[did_range]]\nprefix = \"+1555\"\ntarget = \"t\"\nmax_calls = 0\n\
             [health]\ninterval_secs = 5\ntimeout_ms = 5000\ndown_after = 0\nup_after = 101\n";
        let Err(ConfigError::Invalid(errors)) = Config::from_toml(bad) else { panic!("expected errors") };
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        for want in [
            "trunk[0].emergency_numbers[0]",
            "trunk[0].min_national_digits",
            "target[0].weights",
            "target[0].overflow",
            "target[1].weights",
            "target[1].overflow",
            "did[0].max_calls",
            "did_range[0].max_calls",
            "health.timeout_ms",
            "health.down_after",
            "health.up_after",
        ] {
            assert!(fields.contains(&want), "{want} missing from {fields:?}");
        }
    }

    #[test]
    fn e164_rules() {
        assert!(check_e164("+442079460000").is_ok());
        assert!(check_e164("+0123").is_err());
        assert!(check_e164("+1234567890123456").is_err());
        assert!(check_e164("15551230000").is_err());
        assert!(check_e164("+").is_err());
    }

    #[test]
    fn xdp_policy_keys_default_validate_and_need_no_interface() {
        let c = Config::from_toml("[xdp]\nunknown_sources = \"rate-limit\"\n").unwrap();
        let x = c.xdp.unwrap();
        assert_eq!(x.interface, None, "without an interface: user-space filter only");
        assert_eq!(XdpConfig { unknown_sources: UnknownSources::RateLimit, ..XdpConfig::default() }, x);
        let text = r#"
[edge]
listen = ["udp:127.0.0.1:5070"]
[xdp]
interface = "eth0"
per_source_pps = 0
global_burst = 10000001
udp_ports = [5060, 5060]
tcp_ports = [0]
fragments = "drop"
scanner_signatures = ["", "ok", "caf\u00e9"]
sample_every = 0
"#;
        let Err(ConfigError::Invalid(errors)) = Config::from_toml(text) else { panic!("accepted") };
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "xdp.per_source_pps",
                "xdp.global_burst",
                "xdp.udp_ports",
                "xdp.tcp_ports",
                "xdp.udp_ports",
                "xdp.scanner_signatures[0]",
                "xdp.scanner_signatures[2]",
            ],
            "{errors:?}"
        );
        assert!(errors[4].reason.contains("5070"), "names the listen port: {}", errors[4]);
        let ok = "[xdp]\nfragments = \"drop\"\nudp_ports = [5060, 5080]\ntcp_ports = []\nsample_every = 0\n";
        let x = Config::from_toml(ok).unwrap().xdp.unwrap();
        assert_eq!((x.fragments, x.udp_ports.len(), x.sample_every), (FragmentPolicy::Drop, 2, 0));
        let both_empty = "[xdp]\nudp_ports = []\ntcp_ports = []\n";
        assert!(Config::from_toml(both_empty).is_err());
    }
}
