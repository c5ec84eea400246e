//! Fuzzes the proxy engine as a worker runs it without XDP: any sequence of datagrams from the
//! carrier, the PBX's two addresses or a stranger, with virtual time passing between them, must
//! be handled without a panic, and the engine's bounds must hold after every step. Every
//! datagram first meets the user-space packet filter (unknown sources rate-limited, then
//! scanned for scanner signatures), as when XDP is not attached.
//!
//! Input: datagrams separated by NUL bytes. A datagram's first byte is its control byte: the
//! low three bits say who sends it, the high five how many 100 ms pass before it arrives (the
//! engine's timers run meanwhile, one tick per 100 ms: a busy worker's ticks come late too).
//! Senders 5 and 6 are the harness itself: the PBX (5) or the carrier (6) answers the last
//! request the engine sent it (the carrier gets one only as the edge's own BYE at a call's
//! maximum duration), with the status code the next byte picks, so that responses carry the
//! engine's own branches, which no fuzzer could guess.
#![no_main]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use control::config::Config;
use ebpf::policy::Unknown;
use ebpf::Policy;
use ebpf::userspace::UserspaceFilter;
use edge::guard::{Guard, Prefilter};
use edge::proxy::{Engine, EngineConfig, Sink, WorkerState};
use edge::route::Router;
use edge::sip::{self, HeaderIndexEntry, HeaderKind, MAX_HEADERS};
use libfuzzer_sys::fuzz_target;

/// Two targets, a DID, a number block with a call limit; CPS high enough not to hide paths.
const CONFIG: &str = r#"
[[trunk]]
name = "carrier"
sources = ["192.0.2.0/24"]
cps = 100000
max_calls = 4
[[target]]
name = "pbx"
uris = ["sip:198.51.100.10:5060", "sip:198.51.100.11:5060"]
[[did]]
number = "+15551230000"
target = "pbx"
[[did_range]]
prefix = "+1555124"
target = "pbx"
max_calls = 1
"#;

/// Small bounds, so that inputs reach them.
const MAX_TRANSACTIONS: u32 = 64;
const MAX_DIALOGS: u32 = 8;
/// A maximum call duration that calls reach within an input (they end with the edge's own
/// BYEs, answered by sender 5 like any request to a PBX), longer than the shortest session
/// interval (90 s), so that a call with a session timer may end by either.
const MAX_CALL_DURATION: Duration = Duration::from_secs(120);
/// Datagrams per input at most (each may advance time by up to 3.1 s).
const MAX_DATAGRAMS: usize = 64;
/// Virtual time between two ticks.
const TICK_EVERY: Duration = Duration::from_millis(100);
/// Status codes the harness answers with.
const CODES: [u16; 8] = [100, 180, 200, 486, 503, 408, 487, 302];

const LOCAL: &str = "203.0.113.1:5060";
const SENDERS: [&str; 5] =
    ["192.0.2.7:5060", "192.0.2.8:5099", "198.51.100.10:5060", "198.51.100.11:5060", "198.18.0.1:5060"];

/// Keeps the last request the engine sent to each side: `[PBX, carrier]`.
#[derive(Default)]
struct Recorder {
    last_request: [Option<(SocketAddr, Vec<u8>)>; 2],
}

impl Sink for Recorder {
    fn local(&self, _listen: usize) -> Option<SocketAddr> {
        LOCAL.parse().ok()
    }

    fn send_with(
        &mut self,
        dest: SocketAddr,
        _listen: usize,
        write: &mut dyn FnMut(&mut [u8]) -> Option<usize>,
    ) -> bool {
        let mut buf = vec![0u8; 65_535];
        let Some(n) = write(&mut buf) else { return false };
        assert!(n <= buf.len(), "the writer reported more bytes than the buffer holds");
        buf.truncate(n);
        if !buf.starts_with(b"SIP/2.0") {
            let side = usize::from(!dest.ip().to_string().starts_with("198.51.100."));
            self.last_request[side] = Some((dest, buf));
        }
        true
    }
}

fuzz_target!(|data: &[u8]| {
    let config = Config::from_toml(CONFIG).expect("the fuzz configuration is valid");
    let guard = Guard::from_config(&config).expect("trunks");
    let router = Arc::new(Router::from_config(&config).expect("routing"));
    let filter = UserspaceFilter::new(Policy { unknown: Unknown::RateLimit, ..Policy::default() })
        .expect("the fuzz filter policy is valid");
    let allow: Vec<(ipnet::IpNet, u32)> =
        ["192.0.2.0/24", "198.51.100.0/24"].iter().map(|n| (n.parse().expect("CIDR"), 0)).collect();
    filter.set_allow_list(&allow).expect("allow-list");
    let engine = Engine::new(
        guard,
        router,
        EngineConfig {
            max_transactions: MAX_TRANSACTIONS,
            max_dialogs: MAX_DIALOGS,
            max_call_duration: MAX_CALL_DURATION,
            ..EngineConfig::default()
        },
    )
    .with_prefilter(Arc::new(Prefilter::new(Arc::new(filter))));
    let t0 = Instant::now();
    let mut now = t0;
    let mut worker = WorkerState::new(0, t0);
    let mut sink = Recorder::default();
    for datagram in data.split(|&b| b == 0).take(MAX_DATAGRAMS) {
        let Some((&control, payload)) = datagram.split_first() else { continue };
        for _ in 0..control >> 3 {
            now += TICK_EVERY;
            engine.on_tick(&mut worker, now, &mut sink);
        }
        let sender = usize::from(control & 7);
        if let 5 | 6 = sender {
            let pick = payload.first().copied().unwrap_or(0);
            answer(&engine, &mut worker, now, &mut sink, sender - 5, pick);
        } else if let Some(from) = SENDERS.get(sender % SENDERS.len()) {
            let from: SocketAddr = from.parse().expect("sender address");
            engine.on_datagram(&mut worker, now, from, 0, payload, &mut sink);
        }
        assert!(engine.transactions() <= MAX_TRANSACTIONS as usize, "transactions beyond the bound");
        assert!(engine.active_calls() <= MAX_DIALOGS as usize, "dialogs beyond the bound");
        for trunk in engine.guard().trunks() {
            assert!(trunk.limits.active() <= 4, "calls beyond the trunk's max_calls");
        }
    }
});

/// The PBX (`side` 0) or the carrier (1) answers the last request the engine sent it, with
/// `CODES[pick % 8]`, as a UA does: a To tag on every answer but a 100, the request's
/// Record-Route copied, and on a 2xx a Contact (so that a call can later end with the edge's
/// own BYEs) and the request's Session-Expires, if any (a UA agreeing to the session timer).
fn answer(engine: &Engine, worker: &mut WorkerState, now: Instant, sink: &mut Recorder, side: usize, pick: u8) {
    let Some(Some((from, request))) = sink.last_request.get(side).cloned() else { return };
    let mut index = [HeaderIndexEntry::EMPTY; MAX_HEADERS];
    let Ok(msg) = sip::parse(&request, &mut index) else { return };
    let code = CODES[usize::from(pick) % CODES.len()];
    let mut extra: Vec<String> = msg
        .headers()
        .filter(|h| h.kind == HeaderKind::RecordRoute)
        .map(|h| format!("Record-Route: {}", String::from_utf8_lossy(h.value)))
        .collect();
    if (200..300).contains(&code) {
        extra.push(format!("Contact: <sip:ua@{from}>"));
        if let Some(se) = msg.header_value(HeaderKind::SessionExpires) {
            extra.push(format!("Session-Expires: {}", String::from_utf8_lossy(se)));
        }
    }
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let mut out = vec![0u8; request.len() + 1024];
    let tag = (code > 100).then_some("ua1");
    let Ok(n) = sip::response_from_request(&msg, code, "Fuzz", tag, &extra, &mut out) else { return };
    engine.on_datagram(worker, now, from, 0, &out[..n], sink);
}
