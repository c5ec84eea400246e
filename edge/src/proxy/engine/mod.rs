//! The proxy engine: what happens to one datagram, in the phases of the design — admission
//! (source → trunk), parse, classify, limits, route, forward — and what happens when a timer
//! fires. It does no I/O and reads no clock: `now` comes in, sends go out through a [`Sink`].
//!
//! Transactions live in a table shared by all workers (a response may arrive on another
//! worker than its request), cut into shards each behind a mutex held only while one message
//! updates one transaction. Our Via branch names the shard, slot and generation of the entry,
//! so a response finds its transaction without a second index. Each worker runs the timers of
//! the shards it owns (`shard % workers == worker`).
//!
//! Admission and routing state is one immutable generation (a `Plan`, see `plan.rs`), swapped
//! whole by a policy change ([`Engine::install`]).

mod datagram;
mod expiry;
mod health;
mod plan;
mod requests;
mod responses;
mod stateless;
mod text;
mod timers;
mod tx;

use expiry::ByeClients;
pub use expiry::MAX_PENDING_BYES;
use plan::Plan;
use text::*;
use tx::*;

use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use super::branch::{Branch, OUR_BRANCH_PREFIX};
use super::client_tx::{
    ClientAction, InviteClient, InviteClientState, NonInviteClient, NonInviteClientState,
};
use super::dialog::{Confirm, Dialog, DialogId, Dialogs};
use super::failover::{BranchEnd, Decision, ResponseContext};
use super::server_tx::{
    InviteServer, InviteServerState, NonInviteServer, NonInviteServerState, ServerAction,
};
use super::table::{Handle, Key, Table};
use super::timers::TimerConfig;
use crate::guard::{CallHold, Guard, Refusal, TrunkIdx};
use crate::route::{RouteDecision, RouteReader, Router, SetId, TrunkId};
use crate::sip::{
    self, ForwardOptions, HeaderIndexEntry, Host, MAX_HEADERS, Method, RecordRouteSpec, SipMessage, Uri,
    ViaSpec,
};

/// Shards of the transaction table (a power of two, at least the number of workers).
pub const TX_SHARDS: usize = 64;
/// Default bound on live transactions, all shards together.
pub const DEFAULT_MAX_TRANSACTIONS: u32 = 1_048_576;
/// Percentage of each transaction shard kept for requests within calls (BYE, re-INVITE,
/// UPDATE...): under overload a new call is refused with 503 before the table is full, so
/// the calls in progress can still end.
pub const IN_CALL_RESERVE_PERCENT: u32 = 10;
/// Default bound on active dialogs.
pub const DEFAULT_MAX_DIALOGS: u32 = 262_144;
/// Default longest call, after which the edge ends it with a BYE to each side and frees its slots.
pub const DEFAULT_MAX_CALL_DURATION: Duration = Duration::from_secs(4 * 3600);
/// Room a forwarded request may need beyond the received one, in bytes (Via, Record-Route,
/// a rewritten Request-URI).
pub const FORWARD_GROWTH_BYTES: usize = 1024;
/// Message buffers kept for reuse per shard.
const POOLED_BUFFERS_PER_SHARD: usize = 256;
/// Most target URIs one call tries (serial failover is bounded).
pub const MAX_ATTEMPTS: usize = 8;
/// Longest pause a target's 503 Retry-After can ask for.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3_600);
/// Dialogs expired per tick at most (bounds one tick's work).
const DIALOG_EXPIRY_PER_TICK: usize = 1024;
/// Most listen sockets a worker looks up on a tick.
const MAX_LISTEN_SOCKETS: usize = crate::io::MAX_LISTEN;
/// Granularity of the workers' timer ticks.
pub const TICK: Duration = Duration::from_millis(10);
/// Longest Request-URI we write, in bytes.
const MAX_REQUEST_URI_BYTES: usize = 512;
/// Seconds advertised in Retry-After when every target of a set is down.
const ALL_DOWN_RETRY_AFTER_SECS: u32 = 30;

/// Bounds and timers of the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineConfig {
    /// RFC 3261 timers.
    pub timers: TimerConfig,
    /// Live transactions at most; beyond, new requests get 503.
    pub max_transactions: u32,
    /// Active dialogs tracked at most.
    pub max_dialogs: u32,
    /// Longest call.
    pub max_call_duration: Duration,
    /// Worker threads (for the timer ownership of shards).
    pub workers: usize,
    /// OPTIONS probes of the targets; `None`: off.
    pub health: Option<crate::route::HealthSettings>,
}

impl EngineConfig {
    /// The engine's part of a configuration (`[edge]`, `[health]`), for `workers` I/O workers.
    pub fn from_config(config: &control::config::Config, workers: usize) -> Self {
        let edge = &config.edge;
        let t1 = Duration::from_millis(edge.t1_ms.into());
        Self {
            timers: TimerConfig {
                t1,
                t2: TimerConfig::default().t2.max(t1),
                t4: TimerConfig::default().t4,
                timer_c: Duration::from_secs(edge.timer_c_secs.into()),
            },
            max_transactions: edge.max_transactions,
            max_dialogs: DEFAULT_MAX_DIALOGS,
            max_call_duration: Duration::from_secs(edge.max_call_secs.into()),
            workers,
            health: config.health.enabled.then(|| crate::route::HealthSettings::from(&config.health)),
        }
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            timers: TimerConfig::default(),
            max_transactions: DEFAULT_MAX_TRANSACTIONS,
            max_dialogs: DEFAULT_MAX_DIALOGS,
            max_call_duration: DEFAULT_MAX_CALL_DURATION,
            workers: 1,
            health: None,
        }
    }
}

/// Where the engine's datagrams go (the I/O layer's outbox, or a test's list).
pub trait Sink {
    /// The bound address of a listen socket.
    fn local(&self, listen: usize) -> Option<SocketAddr>;
    /// Queues a datagram written by `write` (which returns its length, or `None` to give up).
    /// False when it could not be queued.
    fn send_with(
        &mut self,
        dest: SocketAddr,
        listen: usize,
        write: &mut dyn FnMut(&mut [u8]) -> Option<usize>,
    ) -> bool;

    /// The datagram just queued forwards the message being handled: the I/O side may measure
    /// receive → forward here (the engine reads no clock). By default nothing.
    fn forwarded(&mut self) {}
}

fn send_bytes(sink: &mut dyn Sink, dest: SocketAddr, listen: usize, bytes: &[u8]) -> bool {
    sink.send_with(dest, listen, &mut |buf| {
        buf.get_mut(..bytes.len())?.copy_from_slice(bytes);
        Some(bytes.len())
    })
}

/// Engine counters (monotonic), read by the metrics and the tests.
#[derive(Debug, Default)]
pub struct ProxyCounters {
    /// Requests parsed.
    pub requests: AtomicU64,
    /// Responses parsed.
    pub responses: AtomicU64,
    /// Datagrams that did not parse.
    pub malformed: AtomicU64,
    /// Requests forwarded downstream (first tries, failovers, in-dialog, ACKs).
    pub forwarded: AtomicU64,
    /// Responses forwarded upstream.
    pub responses_forwarded: AtomicU64,
    /// Replies the edge generated, by class.
    pub replies_4xx: AtomicU64,
    /// Replies the edge generated: 5xx.
    pub replies_5xx: AtomicU64,
    /// Retransmitted requests absorbed (answered from the transaction).
    pub retransmissions_absorbed: AtomicU64,
    /// Serial failovers to the next target.
    pub failovers: AtomicU64,
    /// Responses matching no transaction.
    pub stray_responses: AtomicU64,
    /// New calls refused because the transaction table was full (only the reserve for
    /// requests within calls was left, [`IN_CALL_RESERVE_PERCENT`]).
    pub tx_table_full: AtomicU64,
    /// Requests within calls forwarded statelessly because the transaction table was full
    /// even for them.
    pub forwarded_stateless_table_full: AtomicU64,
    /// Sends the I/O layer refused.
    pub send_refused: AtomicU64,
    /// Calls answered (dialogs confirmed).
    pub calls_answered: AtomicU64,
    /// Calls ended (BYE, maximum duration or session timer).
    pub calls_ended: AtomicU64,
    /// Calls ended because their session interval (RFC 4028) passed without a refresh (also
    /// in `calls_ended`; the others that expire reached their maximum duration).
    pub calls_session_expired: AtomicU64,
    /// Calls ended by the maximum duration or the session timer whose headers allowed no BYE
    /// (over the caps of `dialog_bye`, or without Contact): neither side was told.
    pub calls_expired_without_bye: AtomicU64,
    /// BYEs the edge sent to end calls past their maximum duration or session interval (first
    /// transmissions).
    pub byes_sent: AtomicU64,
    /// BYEs of ours that could not be built or sent (the side was not told).
    pub byes_not_sent: AtomicU64,
    /// Retransmissions of our BYEs (Timer E).
    pub byes_retransmitted: AtomicU64,
    /// Our BYEs answered 2xx.
    pub byes_answered_2xx: AtomicU64,
    /// Our BYEs answered 481 (that side had already hung up).
    pub byes_answered_481: AtomicU64,
    /// Our BYEs answered with another final response.
    pub byes_answered_other: AtomicU64,
    /// Our BYEs with no final response by Timer F.
    pub byes_timed_out: AtomicU64,
    /// By label, striped per worker: requests by method, responses by method and class,
    /// user-space verdicts, forward latency.
    pub sip: super::stats::SipStats,
}

/// The session interval a 2xx carries (RFC 4028 Session-Expires), if any.
fn session_interval(ok: &SipMessage<'_>) -> Option<Duration> {
    ok.session_expires().ok().flatten().map(|se| Duration::from_secs(se.seconds.into()))
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Per-worker scratch: header indexes and the local names, reused for every datagram.
#[derive(Debug)]
pub struct WorkerState {
    idx: usize,
    index_in: Box<[HeaderIndexEntry; MAX_HEADERS]>,
    index_stored: Box<[HeaderIndexEntry; MAX_HEADERS]>,
    index_other: Box<[HeaderIndexEntry; MAX_HEADERS]>,
    locals: Vec<Option<Local>>,
    tags: u64,
    next_tick: Option<Instant>,
    /// Health scratch, reused every tick.
    probe_due: Vec<crate::route::UriId>,
    transitions: Vec<crate::route::health::Transition>,
    /// This worker's reader of the current generation's routes.
    routes: Option<WorkerRoutes>,
}

/// A worker's own [`RouteReader`] of one generation's [`Router`]: a routed call writes no
/// shared counter and takes no reference count. Made again when a new generation is
/// installed; refreshed on every tick, so that an idle worker does not keep a table or number
/// blocks that were swapped out.
#[derive(Debug)]
struct WorkerRoutes {
    router: Arc<Router>,
    reader: RouteReader,
}

impl WorkerRoutes {
    /// The reader of `router`, made when the worker has none of that generation.
    fn reader<'r>(routes: &'r mut Option<Self>, router: &Arc<Router>) -> &'r mut RouteReader {
        if routes.as_ref().is_some_and(|r| !Arc::ptr_eq(&r.router, router)) {
            *routes = None;
        }
        &mut routes.get_or_insert_with(|| Self { router: Arc::clone(router), reader: router.reader() }).reader
    }

    /// Drops the reader of a generation that is no longer current, and lets the current one
    /// let go of what was swapped out since its last use.
    fn refresh(routes: &mut Option<Self>, router: &Arc<Router>) {
        match routes {
            Some(r) if Arc::ptr_eq(&r.router, router) => r.reader.refresh(),
            _ => *routes = None,
        }
    }
}

#[derive(Debug, Clone)]
struct Local {
    addr: SocketAddr,
    host: String,
}

impl WorkerState {
    /// Scratch for worker `idx`, whose first tick is due one [`TICK`] after `start`.
    pub fn new(idx: usize, start: Instant) -> Self {
        Self {
            idx,
            index_in: Box::new([HeaderIndexEntry::EMPTY; MAX_HEADERS]),
            index_stored: Box::new([HeaderIndexEntry::EMPTY; MAX_HEADERS]),
            index_other: Box::new([HeaderIndexEntry::EMPTY; MAX_HEADERS]),
            locals: Vec::new(),
            tags: 0,
            next_tick: Some(start + TICK),
            probe_due: Vec::new(),
            transitions: Vec::new(),
            routes: None,
        }
    }

    /// When the worker should next call [`Engine::on_tick`].
    pub fn next_deadline(&self) -> Option<Instant> {
        self.next_tick
    }
}

/// Key kinds of the server transaction table.
const KEY_INVITE: u8 = 1;
const KEY_OTHER: u8 = 2;

/// The shared engine.
#[derive(Debug)]
pub struct Engine {
    /// The current generation of admission and routing state.
    plan: ArcSwap<Plan>,
    dialogs: Dialogs,
    /// The BYEs the edge sent to end calls past their maximum duration, until answered.
    byes: Mutex<ByeClients>,
    shards: Box<[Mutex<Shard>]>,
    config: EngineConfig,
    hasher: [std::hash::RandomState; 2],
    salt: u64,
    counters: ProxyCounters,
    /// Target health, created on worker 0's first tick.
    health: Mutex<Option<crate::route::HealthTracker>>,
    /// Targets paused by a 503 with Retry-After while probing is off: `(uri, until)`.
    paused: Mutex<Vec<(crate::route::UriId, Instant)>>,
    /// The packet filter in user space, when XDP is not in the kernel.
    prefilter: Option<Arc<crate::guard::Prefilter>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned shard only means a worker panicked mid-update of plain data; carry on.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The socket address a SIP URI names, when its host is an IP literal (default port 5060).
fn uri_socket_addr(uri: &Uri<'_>) -> Option<SocketAddr> {
    let Uri::Sip(u) = uri else { return None };
    let port = u.port.unwrap_or(5060);
    match u.host {
        Host::Ipv4(a) => Some(SocketAddr::new(IpAddr::V4(a), port)),
        Host::Ipv6(a) => Some(SocketAddr::new(IpAddr::V6(a), port)),
        Host::Name(_) => None,
    }
}

impl Engine {
    /// An engine over admission and routing state.
    pub fn new(guard: Arc<Guard>, router: Arc<Router>, config: EngineConfig) -> Self {
        let per_shard = config.max_transactions.div_ceil(TX_SHARDS as u32).max(1);
        let hasher = [std::hash::RandomState::new(), std::hash::RandomState::new()];
        let salt = hasher[0].hash_one(0xA5u8) & 0xffff_ffff;
        Self {
            plan: ArcSwap::from_pointee(Plan::new(guard, router)),
            dialogs: Dialogs::new(config.max_dialogs, config.max_call_duration),
            byes: Mutex::new(ByeClients::new()),
            shards: (0..TX_SHARDS)
                .map(|idx| {
                    Mutex::new(Shard {
                        idx,
                        table: Table::with_capacity(per_shard),
                        calls_below: (per_shard - per_shard * IN_CALL_RESERVE_PERCENT / 100) as usize,
                        pool: Vec::new(),
                    })
                })
                .collect(),
            config,
            hasher,
            salt,
            counters: ProxyCounters::default(),
            health: Mutex::new(None),
            paused: Mutex::new(Vec::new()),
            prefilter: None,
        }
    }

    /// Judges every received datagram by `prefilter` before parsing it (the packet filter's
    /// policy in user space, for when XDP is not in the kernel).
    pub fn with_prefilter(mut self, prefilter: Arc<crate::guard::Prefilter>) -> Self {
        self.prefilter = Some(prefilter);
        self
    }

    /// The counters.
    pub fn counters(&self) -> &ProxyCounters {
        &self.counters
    }

    /// Admission state of the current generation.
    pub fn guard(&self) -> Arc<Guard> {
        Arc::clone(&self.plan.load().guard)
    }

    /// Routing state of the current generation.
    pub fn router(&self) -> Arc<Router> {
        Arc::clone(&self.plan.load().router)
    }

    /// Active dialogs.
    pub fn active_calls(&self) -> usize {
        self.dialogs.len()
    }

    /// Live transactions.
    pub fn transactions(&self) -> usize {
        self.shards.iter().map(|s| lock(s).table.len()).sum()
    }

    fn server_key(&self, branch: &[u8], via_host: &[u8], via_port: u16, kind: u8) -> (usize, Key) {
        let mut digest = [0u8; 16];
        for (i, state) in self.hasher.iter().enumerate() {
            let mut h = state.build_hasher();
            h.write(branch);
            h.write_u8(0xff);
            h.write(via_host);
            h.write_u16(via_port);
            digest[i * 8..i * 8 + 8].copy_from_slice(&h.finish().to_le_bytes());
        }
        let shard = usize::from(digest[1]) % TX_SHARDS;
        (shard, Key::new(kind, &digest).unwrap_or_else(|| unreachable!("16 bytes fit a key")))
    }
}

/// The transaction table has no room for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TableFull;

/// Where an in-dialog request goes.
struct Hop {
    dest: SocketAddr,
    request_uri: Option<([u8; MAX_REQUEST_URI_BYTES], usize)>,
    pop_route: bool,
}

/// What one event's handling needs besides the engine.
struct Ctx<'a, 's> {
    now: Instant,
    /// The current generation: new calls are admitted and routed by it.
    plan: &'a Arc<Plan>,
    /// The worker's index (its counter stripe).
    worker: usize,
    src: SocketAddr,
    listen: usize,
    local: &'a Local,
    sink: &'a mut (dyn Sink + 's),
    stored: &'a mut [HeaderIndexEntry],
    /// A second scratch index, for a stored message parsed while `stored` is in use.
    other: &'a mut [HeaderIndexEntry],
    tags: &'a mut u64,
    /// The worker's route reader (see [`WorkerRoutes`]).
    routes: &'a mut Option<WorkerRoutes>,
}
