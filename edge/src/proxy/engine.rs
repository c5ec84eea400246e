//! The proxy engine: what happens to one datagram, in the phases of the design — admission
//! (source → trunk), parse, classify, limits, route, forward — and what happens when a timer
//! fires. It does no I/O and reads no clock: `now` comes in, sends go out through a [`Sink`].
//!
//! Transactions live in a table shared by all workers (a response may arrive on another
//! worker than its request), cut into shards each behind a mutex held only while one message
//! updates one transaction. Our Via branch names the shard, slot and generation of the entry,
//! so a response finds its transaction without a second index. Each worker runs the timers of
//! the shards it owns (`shard % workers == worker`).

use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

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
use crate::guard::{Guard, Refusal, TrunkIdx};
use crate::route::{RouteDecision, Router, SetId, TrunkId};
use crate::sip::{
    self, ForwardOptions, HeaderIndexEntry, Host, MAX_HEADERS, Method, RecordRouteSpec, SipMessage, Uri,
    ViaSpec,
};

/// Shards of the transaction table (a power of two, at least the number of workers).
pub const TX_SHARDS: usize = 64;
/// Default bound on live transactions, all shards together.
pub const DEFAULT_MAX_TRANSACTIONS: u32 = 131_072;
/// Default bound on active dialogs.
pub const DEFAULT_MAX_DIALOGS: u32 = 262_144;
/// Default longest call, after which the edge forgets the dialog and frees its slot.
pub const DEFAULT_MAX_CALL_DURATION: Duration = Duration::from_secs(4 * 3600);
/// Room a forwarded request may need beyond the received one, in bytes (Via, Record-Route,
/// a rewritten Request-URI).
pub const FORWARD_GROWTH_BYTES: usize = 1024;
/// Message buffers kept for reuse per shard.
const POOLED_BUFFERS_PER_SHARD: usize = 256;
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
}

impl EngineConfig {
    /// The engine's part of `[edge]`, for `workers` I/O workers.
    pub fn from_edge(edge: &control::config::EdgeConfig, workers: usize) -> Self {
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
    /// New transactions refused because the table was full.
    pub tx_table_full: AtomicU64,
    /// Sends the I/O layer refused.
    pub send_refused: AtomicU64,
    /// Calls answered (dialogs confirmed).
    pub calls_answered: AtomicU64,
    /// Calls ended (BYE or maximum duration).
    pub calls_ended: AtomicU64,
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
        }
    }

    /// When the worker should next call [`Engine::on_tick`].
    pub fn next_deadline(&self) -> Option<Instant> {
        self.next_tick
    }
}

/// One server transaction (upstream) with its current client branch (downstream).
#[derive(Debug)]
struct Tx {
    server: Server,
    /// Where the request came from, and on which socket.
    upstream: SocketAddr,
    listen: usize,
    /// The request as received (re-forwarded on failover).
    original: Vec<u8>,
    /// The last response sent upstream (retransmitted).
    last_response: Vec<u8>,
    /// The current branch, its client transaction and where it went.
    client: Option<Client>,
    attempt: u32,
    downstream: SocketAddr,
    /// The request as forwarded on the current branch.
    forwarded: Vec<u8>,
    /// Serial failover state.
    ctx: ResponseContext,
    best: Vec<u8>,
    route: Option<CallRoute>,
    /// A new call holding a concurrency slot on a trunk until answered or failed.
    hold: Option<Hold>,
    cancelled: bool,
    cancel_pending: bool,
    answered: bool,
}

#[derive(Debug, Clone, Copy)]
struct CallRoute {
    set: SetId,
    seed: u64,
}

#[derive(Debug, Clone, Copy)]
struct Hold {
    trunk: TrunkIdx,
    did: u64,
}

#[derive(Debug)]
enum Server {
    Invite(InviteServer),
    NonInvite(NonInviteServer),
}

#[derive(Debug)]
enum Client {
    Invite(InviteClient),
    NonInvite(NonInviteClient),
}

impl Server {
    fn next_deadline(&self) -> Option<Instant> {
        match self {
            Server::Invite(s) => s.next_deadline(),
            Server::NonInvite(s) => s.next_deadline(),
        }
    }
    fn terminated(&self) -> bool {
        match self {
            Server::Invite(s) => s.state() == InviteServerState::Terminated,
            Server::NonInvite(s) => s.state() == NonInviteServerState::Terminated,
        }
    }
    fn can_send_final(&self) -> bool {
        match self {
            Server::Invite(s) => s.can_send_final(),
            Server::NonInvite(s) => s.can_send_final(),
        }
    }
    fn on_send_response(&mut self, now: Instant, code: u16) {
        match self {
            Server::Invite(s) => s.on_send_response(now, code),
            Server::NonInvite(s) => s.on_send_response(now, code),
        }
    }
}

impl Client {
    fn next_deadline(&self) -> Option<Instant> {
        match self {
            Client::Invite(c) => c.next_deadline(),
            Client::NonInvite(c) => c.next_deadline(),
        }
    }
    fn terminated(&self) -> bool {
        match self {
            Client::Invite(c) => c.state() == InviteClientState::Terminated,
            Client::NonInvite(c) => c.state() == NonInviteClientState::Terminated,
        }
    }
    fn on_response(&mut self, now: Instant, code: u16) -> ClientAction {
        match self {
            Client::Invite(c) => c.on_response(now, code),
            Client::NonInvite(c) => c.on_response(now, code),
        }
    }
    fn on_timer(&mut self, now: Instant) -> ClientAction {
        match self {
            Client::Invite(c) => c.on_timer(now),
            Client::NonInvite(c) => c.on_timer(now),
        }
    }
}

impl Tx {
    fn next_deadline(&self) -> Option<Instant> {
        [self.server.next_deadline(), self.client.as_ref().and_then(Client::next_deadline)]
            .into_iter()
            .flatten()
            .min()
    }

    fn done(&self) -> bool {
        self.server.terminated() && self.client.as_ref().is_none_or(Client::terminated)
    }

    fn is_invite(&self) -> bool {
        matches!(self.server, Server::Invite(_))
    }
}

#[derive(Debug)]
struct Shard {
    idx: usize,
    table: Table<Tx>,
    pool: Vec<Vec<u8>>,
}

impl Shard {
    fn buffer(&mut self) -> Vec<u8> {
        self.pool.pop().unwrap_or_default()
    }

    fn recycle(&mut self, mut buf: Vec<u8>) {
        if buf.capacity() > 0 && self.pool.len() < POOLED_BUFFERS_PER_SHARD {
            buf.clear();
            self.pool.push(buf);
        }
    }
}

/// Key kinds of the server transaction table.
const KEY_INVITE: u8 = 1;
const KEY_OTHER: u8 = 2;

/// The shared engine.
#[derive(Debug)]
pub struct Engine {
    guard: Arc<Guard>,
    router: Arc<Router>,
    dialogs: Dialogs,
    shards: Box<[Mutex<Shard>]>,
    /// Socket address of each target URI (by `UriId` index); `None` when not an IP literal.
    uri_addrs: Box<[Option<SocketAddr>]>,
    /// Addresses of every target: in-dialog requests from them are accepted.
    target_ips: HashSet<IpAddr>,
    config: EngineConfig,
    hasher: [std::hash::RandomState; 2],
    salt: u64,
    counters: ProxyCounters,
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
        let uri_addrs: Box<[Option<SocketAddr>]> = router
            .targets()
            .uris()
            .iter()
            .map(|u| Uri::parse(u.as_bytes()).ok().as_ref().and_then(uri_socket_addr))
            .collect();
        let target_ips = uri_addrs.iter().flatten().map(SocketAddr::ip).collect();
        let per_shard = config.max_transactions.div_ceil(TX_SHARDS as u32).max(1);
        let hasher = [std::hash::RandomState::new(), std::hash::RandomState::new()];
        let salt = hasher[0].hash_one(0xA5u8) & 0xffff_ffff;
        Self {
            guard,
            router,
            dialogs: Dialogs::new(config.max_dialogs, config.max_call_duration),
            shards: (0..TX_SHARDS)
                .map(|idx| {
                    Mutex::new(Shard { idx, table: Table::with_capacity(per_shard), pool: Vec::new() })
                })
                .collect(),
            uri_addrs,
            target_ips,
            config,
            hasher,
            salt,
            counters: ProxyCounters::default(),
        }
    }

    /// The counters.
    pub fn counters(&self) -> &ProxyCounters {
        &self.counters
    }

    /// Admission state.
    pub fn guard(&self) -> &Arc<Guard> {
        &self.guard
    }

    /// Routing state.
    pub fn router(&self) -> &Arc<Router> {
        &self.router
    }

    /// Active dialogs.
    pub fn active_calls(&self) -> usize {
        self.dialogs.len()
    }

    /// Live transactions.
    pub fn transactions(&self) -> usize {
        self.shards.iter().map(|s| lock(s).table.len()).sum()
    }

    /// Socket address of a target URI.
    fn target_addr(&self, uri: crate::route::UriId) -> Option<SocketAddr> {
        self.uri_addrs.get(uri.index()).copied().flatten()
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

    // ----------------------------------------------------------------------------------------
    // Datagrams
    // ----------------------------------------------------------------------------------------

    /// One datagram arrived from `src` on listen socket `listen`.
    pub fn on_datagram(
        &self,
        w: &mut WorkerState,
        now: Instant,
        src: SocketAddr,
        listen: usize,
        payload: &[u8],
        sink: &mut dyn Sink,
    ) {
        self.refresh_local(w, listen, sink);
        let trunk = self.guard.source(src.ip()).ok();
        let from_target = self.target_ips.contains(&src.ip());
        let WorkerState { index_in, index_stored, index_other, locals, tags, .. } = w;
        let msg = match sip::parse(payload, &mut index_in[..]) {
            Ok(m) => m,
            Err(e) => {
                inc(&self.counters.malformed);
                if trunk.is_some() || from_target {
                    tracing::debug!(%src, error = %e, "malformed datagram");
                    self.reply_malformed(payload, src, listen, e.reason(), sink);
                }
                return;
            }
        };
        let Some(Some(local)) = locals.get(listen) else { return };
        let mut ctx = Ctx {
            now,
            src,
            listen,
            local,
            sink,
            stored: &mut index_stored[..],
            other: &mut index_other[..],
            tags,
        };
        if msg.is_response() {
            inc(&self.counters.responses);
            self.on_response(&msg, &mut ctx);
            return;
        }
        inc(&self.counters.requests);
        if trunk.is_none() && !from_target {
            // Not allow-listed: no answer at all (the guard counted it).
            return;
        }
        if let Err(reason) = check_transaction_headers(&msg) {
            inc(&self.counters.malformed);
            self.reply(&msg, 400, reason, &[], &mut ctx);
            return;
        }
        self.on_request(&msg, trunk, &mut ctx);
    }

    fn refresh_local(&self, w: &mut WorkerState, listen: usize, sink: &mut dyn Sink) {
        if w.locals.get(listen).is_some_and(Option::is_some) {
            return;
        }
        let Some(addr) = sink.local(listen) else { return };
        if w.locals.len() <= listen {
            w.locals.resize(listen + 1, None);
        }
        let host = match addr.ip() {
            IpAddr::V4(a) => a.to_string(),
            IpAddr::V6(a) => format!("[{a}]"),
        };
        w.locals[listen] = Some(Local { addr, host });
    }

    /// A datagram that does not parse: a request from an allowed peer gets 400 when the lines
    /// a response needs can be found; anything else is dropped (counted).
    fn reply_malformed(
        &self,
        payload: &[u8],
        src: SocketAddr,
        listen: usize,
        reason: &str,
        sink: &mut dyn Sink,
    ) {
        let mut out = [0u8; 4096];
        let Some(len) = super::malformed::bad_request(payload, reason, &mut out) else { return };
        inc(&self.counters.replies_4xx);
        if !send_bytes(sink, src, listen, &out[..len]) {
            inc(&self.counters.send_refused);
        }
    }

    // ----------------------------------------------------------------------------------------
    // Requests
    // ----------------------------------------------------------------------------------------

    fn on_request(&self, msg: &SipMessage<'_>, trunk: Option<TrunkIdx>, ctx: &mut Ctx<'_, '_>) {
        let Some(method) = msg.method() else { return };
        let Ok(via) = msg.top_via() else { return self.reply(msg, 400, "bad Via", &[], ctx) };
        let Some(branch) = via.branch() else {
            return self.reply(msg, 400, "Via without branch", &[], ctx);
        };
        let via_host = via.raw.get(..via.raw.len().min(128)).unwrap_or_default();
        let via_port = via.port.unwrap_or(5060);
        let in_dialog = msg.to().ok().and_then(|t| t.tag()).is_some();
        match method {
            Method::Ack => {
                let (shard, key) = self.server_key(branch, via_host, via_port, KEY_INVITE);
                let mut s = lock(&self.shards[shard]);
                if let Some(h) = s.table.find(&key)
                    && let Some(tx) = s.table.get_mut(h)
                    && let Server::Invite(server) = &mut tx.server
                    && matches!(server.state(), InviteServerState::Completed | InviteServerState::Confirmed)
                {
                    // The ACK for our non-2xx: hop by hop, absorbed here.
                    server.on_ack(ctx.now);
                    let deadline = tx.next_deadline();
                    s.table.set_deadline(h, deadline);
                    return;
                }
                drop(s);
                // An ACK for a 2xx: end to end, forwarded statelessly along the dialog.
                self.forward_in_dialog_stateless(msg, trunk, ctx);
            }
            Method::Cancel => self.on_cancel(msg, branch, via_host, via_port, ctx),
            _ => {
                let kind = if method == Method::Invite { KEY_INVITE } else { KEY_OTHER };
                let (shard, key) = self.server_key(branch, via_host, via_port, kind);
                {
                    let mut s = lock(&self.shards[shard]);
                    if let Some(h) = s.table.find(&key) {
                        inc(&self.counters.retransmissions_absorbed);
                        let Some(tx) = s.table.get_mut(h) else { return };
                        let action = match &mut tx.server {
                            Server::Invite(sv) => sv.on_retransmission(),
                            Server::NonInvite(sv) => sv.on_retransmission(),
                        };
                        if action == ServerAction::ResendResponse && !tx.last_response.is_empty() {
                            send_bytes(ctx.sink, tx.upstream, tx.listen, &tx.last_response);
                        }
                        return;
                    }
                }
                self.on_new_request(msg, method, trunk, in_dialog, shard, key, ctx);
            }
        }
    }

    #[allow(clippy::too_many_arguments, reason = "one call site; the parts are what a request is")]
    fn on_new_request(
        &self,
        msg: &SipMessage<'_>,
        method: Method<'_>,
        trunk: Option<TrunkIdx>,
        in_dialog: bool,
        shard: usize,
        key: Key,
        ctx: &mut Ctx<'_, '_>,
    ) {
        let ruri = msg.request_uri();
        let to_us = ruri.and_then(uri_socket_addr).is_some_and(|a| self.is_us(a, ctx.local));
        if method == Method::Options && to_us && !in_dialog {
            return self.reply(msg, 200, "OK", &["Allow: INVITE, ACK, BYE, CANCEL, OPTIONS, MESSAGE"], ctx);
        }
        match msg.max_forwards() {
            Ok(Some(0)) => return self.reply(msg, 483, "Too Many Hops", &[], ctx),
            Ok(_) => {}
            Err(_) => return self.reply(msg, 400, "bad Max-Forwards", &[], ctx),
        }
        if self.is_loop(msg, ctx.local) {
            return self.reply(msg, 482, "Loop Detected", &[], ctx);
        }
        if in_dialog {
            return self.forward_in_dialog(msg, method, trunk, shard, key, ctx);
        }
        let Some(trunk) = trunk else {
            // A target may send in-dialog requests, not start calls.
            return self.reply(msg, 403, "Forbidden", &[], ctx);
        };
        if !matches!(method, Method::Invite | Method::Message) {
            return self.reply(
                msg,
                405,
                "Method Not Allowed",
                &["Allow: INVITE, ACK, BYE, CANCEL, OPTIONS, MESSAGE"],
                ctx,
            );
        }
        self.route_initial(msg, method, trunk, shard, key, ctx);
    }

    /// An initial INVITE or MESSAGE from a trunk: limits, DID routing, then forward.
    fn route_initial(
        &self,
        msg: &SipMessage<'_>,
        method: Method<'_>,
        trunk: TrunkIdx,
        shard: usize,
        key: Key,
        ctx: &mut Ctx<'_, '_>,
    ) {
        let is_invite = method == Method::Invite;
        let (user, phone_context) = match msg.request_uri() {
            Some(Uri::Sip(u)) => (u.user.unwrap_or_default(), u.params.get("phone-context").flatten()),
            Some(Uri::Tel(t)) => (t.number, t.params.get("phone-context").flatten()),
            _ => return self.reply(msg, 416, "Unsupported URI Scheme", &[], ctx),
        };
        if is_invite {
            match self.guard.admit_call(trunk) {
                Ok(()) => {}
                Err(Refusal::Cps { retry_after_secs }) => {
                    let mut ra = [0u8; 32];
                    let header = retry_after(&mut ra, retry_after_secs);
                    return self.reply(msg, 503, "Service Unavailable", &[header], ctx);
                }
                Err(Refusal::Concurrency { code }) => {
                    let reason = if code == 486 { "Busy Here" } else { "Service Unavailable" };
                    return self.reply(msg, code, reason, &[], ctx);
                }
                Err(Refusal::UnknownSource) => return,
            }
        }
        let release = |engine: &Self| {
            if is_invite {
                engine.guard.call_ended(trunk);
            }
        };
        let (set, did) = match self.router.route(TrunkId(trunk), user, phone_context) {
            RouteDecision::Did { number, route, .. } => (route.set(), number.key()),
            RouteDecision::Emergency { target } => (target, 0),
            RouteDecision::Refuse(r) => {
                release(self);
                return self.reply(msg, r.status(), reason_phrase(r.status()), &[], ctx);
            }
        };
        let seed = self.hasher[1].hash_one(msg.call_id().unwrap_or_default());
        let route = CallRoute { set, seed };
        let Some(first) = self.router.candidates(set, seed).find_map(|u| self.target_addr(u).map(|a| (u, a)))
        else {
            release(self);
            let mut ra = [0u8; 32];
            let header = retry_after(&mut ra, ALL_DOWN_RETRY_AFTER_SECS);
            return self.reply(msg, 503, "Service Unavailable", &[header], ctx);
        };
        let hold = is_invite.then_some(Hold { trunk, did });
        let server = if is_invite {
            Server::Invite(InviteServer::start(self.config.timers))
        } else {
            Server::NonInvite(NonInviteServer::start(self.config.timers))
        };
        let mut s = lock(&self.shards[shard]);
        let mut original = s.buffer();
        original.extend_from_slice(msg.as_bytes());
        let tx = Tx {
            server,
            upstream: ctx.src,
            listen: ctx.listen,
            original,
            last_response: s.buffer(),
            client: None,
            attempt: 0,
            downstream: first.1,
            forwarded: s.buffer(),
            ctx: ResponseContext::default(),
            best: s.buffer(),
            route: Some(route),
            hold,
            cancelled: false,
            cancel_pending: false,
            answered: false,
        };
        let h = match s.table.insert(key, tx) {
            Ok(h) => h,
            Err(_) => {
                drop(s);
                inc(&self.counters.tx_table_full);
                release(self);
                return self.reply(msg, 503, "Service Unavailable", &["Retry-After: 5"], ctx);
            }
        };
        if is_invite {
            self.send_provisional_100(&mut s, h, msg, ctx);
        }
        let target_uri = self.router.targets().uri(first.0).unwrap_or_default();
        let mut ruri = [0u8; MAX_REQUEST_URI_BYTES];
        let new_ruri = rewrite_request_uri(&mut ruri, user, target_uri);
        self.start_branch(&mut s, shard, h, msg, new_ruri, first.1, false, ctx);
    }

    fn send_provisional_100(&self, s: &mut Shard, h: Handle, msg: &SipMessage<'_>, ctx: &mut Ctx<'_, '_>) {
        let Some(tx) = s.table.get_mut(h) else { return };
        let mut out = std::mem::take(&mut tx.last_response);
        out.resize(msg.as_bytes().len() + 64, 0);
        match sip::response_from_request(msg, 100, "Trying", None, &[], &mut out) {
            Ok(n) => {
                out.truncate(n);
                send_bytes(ctx.sink, tx.upstream, tx.listen, &out);
                tx.server.on_send_response(ctx.now, 100);
            }
            Err(_) => out.clear(),
        }
        tx.last_response = out;
    }

    /// Forwards `msg` (the original request) on a new branch to `dest`.
    #[allow(clippy::too_many_arguments, reason = "the parts of one forwarding decision")]
    fn start_branch(
        &self,
        s: &mut Shard,
        shard: usize,
        h: Handle,
        msg: &SipMessage<'_>,
        request_uri: Option<&[u8]>,
        dest: SocketAddr,
        pop_route: bool,
        ctx: &mut Ctx<'_, '_>,
    ) {
        let Some(tx) = s.table.get_mut(h) else { return };
        let branch = Branch { shard: shard as u32, handle: h, attempt: tx.attempt, salt: self.salt }.text();
        let record_route = (tx.is_invite() && tx.route.is_some())
            .then_some(RecordRouteSpec { host: &ctx.local.host, port: ctx.local.addr.port() });
        let opts = ForwardOptions {
            via: ViaSpec {
                transport: "UDP",
                host: &ctx.local.host,
                port: ctx.local.addr.port(),
                branch: branch.as_str(),
                rport: true,
            },
            request_uri,
            pop_route,
            record_route,
        };
        let mut out = std::mem::take(&mut tx.forwarded);
        out.resize(msg.as_bytes().len() + FORWARD_GROWTH_BYTES, 0);
        let written = sip::forward_request(msg, &opts, &mut out);
        let n = match written {
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(error = %e, "cannot forward");
                out.clear();
                tx.forwarded = out;
                let code = if matches!(e, sip::WriteError::MaxForwardsExhausted) { 483 } else { 500 };
                self.final_from_original(s, h, code, ctx);
                return;
            }
        };
        out.truncate(n);
        tx.downstream = dest;
        if !send_bytes(ctx.sink, dest, tx.listen, &out) {
            inc(&self.counters.send_refused);
        }
        inc(&self.counters.forwarded);
        tx.forwarded = out;
        tx.client = Some(if tx.is_invite() {
            Client::Invite(InviteClient::start(ctx.now, self.config.timers))
        } else {
            Client::NonInvite(NonInviteClient::start(ctx.now, self.config.timers))
        });
        let deadline = tx.next_deadline();
        s.table.set_deadline(h, deadline);
    }

    /// An in-dialog request other than ACK: statefully, along the Route set, or the dialog, or
    /// the Request-URI.
    fn forward_in_dialog(
        &self,
        msg: &SipMessage<'_>,
        method: Method<'_>,
        trunk: Option<TrunkIdx>,
        shard: usize,
        key: Key,
        ctx: &mut Ctx<'_, '_>,
    ) {
        let Some(hop) = self.in_dialog_next_hop(msg, trunk, ctx) else {
            return self.reply(msg, 481, "Call/Transaction Does Not Exist", &[], ctx);
        };
        let server = if method == Method::Invite {
            Server::Invite(InviteServer::start(self.config.timers))
        } else {
            Server::NonInvite(NonInviteServer::start(self.config.timers))
        };
        let mut s = lock(&self.shards[shard]);
        let mut original = s.buffer();
        original.extend_from_slice(msg.as_bytes());
        let tx = Tx {
            server,
            upstream: ctx.src,
            listen: ctx.listen,
            original,
            last_response: s.buffer(),
            client: None,
            attempt: 0,
            downstream: hop.dest,
            forwarded: s.buffer(),
            ctx: ResponseContext::default(),
            best: Vec::new(),
            route: None,
            hold: None,
            cancelled: false,
            cancel_pending: false,
            answered: false,
        };
        let h = match s.table.insert(key, tx) {
            Ok(h) => h,
            Err(_) => {
                drop(s);
                inc(&self.counters.tx_table_full);
                return self.reply(msg, 503, "Service Unavailable", &["Retry-After: 5"], ctx);
            }
        };
        if method == Method::Invite {
            self.send_provisional_100(&mut s, h, msg, ctx);
        }
        let ruri = hop.request_uri.as_ref().map(|(buf, len)| &buf[..*len]);
        self.start_branch(&mut s, shard, h, msg, ruri, hop.dest, hop.pop_route, ctx);
    }

    /// An ACK for a 2xx: forwarded without a transaction.
    fn forward_in_dialog_stateless(
        &self,
        msg: &SipMessage<'_>,
        trunk: Option<TrunkIdx>,
        ctx: &mut Ctx<'_, '_>,
    ) {
        if matches!(msg.max_forwards(), Ok(Some(0)) | Err(_)) || self.is_loop(msg, ctx.local) {
            return;
        }
        let Some(hop) = self.in_dialog_next_hop(msg, trunk, ctx) else { return };
        let Ok(via) = msg.top_via() else { return };
        // A stateless branch: derived from the received one so that retransmissions match.
        let mut bbuf = [0u8; 96];
        let received = via.branch().unwrap_or_default();
        let digest = self.hasher[0].hash_one(received);
        let branch = fixed_fmt(&mut bbuf, format_args!("z9hG4bK-sl-{digest:x}"));
        let opts = ForwardOptions {
            via: ViaSpec {
                transport: "UDP",
                host: &ctx.local.host,
                port: ctx.local.addr.port(),
                branch,
                rport: true,
            },
            request_uri: hop.request_uri.as_ref().map(|(buf, len)| &buf[..*len]),
            pop_route: hop.pop_route,
            record_route: None,
        };
        let ok =
            ctx.sink.send_with(hop.dest, ctx.listen, &mut |buf| sip::forward_request(msg, &opts, buf).ok());
        if ok {
            inc(&self.counters.forwarded);
        } else {
            inc(&self.counters.send_refused);
        }
    }

    /// Where an in-dialog request goes: the next Route after ours; else the other side of the
    /// dialog; else the Request-URI's host; else (the Request-URI is us, from peers that ignore
    /// Record-Route) its user as a DID on the sender's trunk.
    fn in_dialog_next_hop(
        &self,
        msg: &SipMessage<'_>,
        trunk: Option<TrunkIdx>,
        ctx: &Ctx<'_, '_>,
    ) -> Option<Hop> {
        let mut routes = msg.routes();
        let mut pop_route = false;
        if let Some(Ok(top)) = routes.next() {
            let top_is_us = uri_socket_addr(&top.uri).is_some_and(|a| self.is_us(a, ctx.local));
            if !top_is_us {
                return uri_socket_addr(&top.uri).map(|dest| Hop {
                    dest,
                    request_uri: None,
                    pop_route: false,
                });
            }
            pop_route = true;
            if let Some(Ok(next)) = routes.next() {
                return uri_socket_addr(&next.uri).map(|dest| Hop { dest, request_uri: None, pop_route });
            }
        }
        let ruri = msg.request_uri()?;
        let ruri_addr = uri_socket_addr(ruri);
        if let Some(addr) = ruri_addr
            && !self.is_us(addr, ctx.local)
        {
            return Some(Hop { dest: addr, request_uri: None, pop_route });
        }
        // The Request-URI is us: the dialog says where the other side is.
        let call_id = msg.call_id().ok()?;
        let from_tag = msg.from().ok()?.tag()?;
        let to_tag = msg.to().ok()?.tag()?;
        let user = match ruri {
            Uri::Sip(u) => u.user.unwrap_or_default(),
            _ => &[],
        };
        if let Some(d) = self.dialogs.get(&DialogId { call_id, tag_a: from_tag, tag_b: to_tag }) {
            let dest = if ctx.src == d.callee { d.caller } else { d.callee };
            let mut buf = [0u8; MAX_REQUEST_URI_BYTES];
            let len = write_sip_uri(&mut buf, user, dest)?;
            return Some(Hop { dest, request_uri: Some((buf, len)), pop_route });
        }
        let trunk = trunk?;
        let RouteDecision::Did { route, .. } = self.router.route(TrunkId(trunk), user, None) else {
            return None;
        };
        let uri = self.router.candidates(route.set(), 0).next()?;
        let dest = self.target_addr(uri)?;
        let mut buf = [0u8; MAX_REQUEST_URI_BYTES];
        let len = write_sip_uri(&mut buf, user, dest)?;
        Some(Hop { dest, request_uri: Some((buf, len)), pop_route })
    }

    fn on_cancel(
        &self,
        msg: &SipMessage<'_>,
        branch: &[u8],
        via_host: &[u8],
        via_port: u16,
        ctx: &mut Ctx<'_, '_>,
    ) {
        let (shard, key) = self.server_key(branch, via_host, via_port, KEY_INVITE);
        let mut s = lock(&self.shards[shard]);
        let Some(h) = s.table.find(&key) else {
            drop(s);
            return self.reply(msg, 481, "Call/Transaction Does Not Exist", &[], ctx);
        };
        // CANCEL is hop by hop: answered here, then propagated (RFC 3261 §16.10).
        self.reply(msg, 200, "OK", &[], ctx);
        let Some(tx) = s.table.get_mut(h) else { return };
        if !tx.server.can_send_final() || tx.cancelled {
            return;
        }
        tx.cancelled = true;
        let Some(Client::Invite(client)) = &mut tx.client else { return };
        match client.state() {
            InviteClientState::Proceeding => {
                client.cancelled(ctx.now);
                send_cancel(tx, ctx.sink, &mut ctx.stored[..]);
            }
            InviteClientState::Calling => {
                // RFC 3261 §9.1: no CANCEL before a provisional; it goes when one arrives.
                client.cancelled(ctx.now);
                tx.cancel_pending = true;
            }
            _ => {}
        }
        let deadline = tx.next_deadline();
        s.table.set_deadline(h, deadline);
    }

    // ----------------------------------------------------------------------------------------
    // Responses
    // ----------------------------------------------------------------------------------------

    fn on_response(&self, msg: &SipMessage<'_>, ctx: &mut Ctx<'_, '_>) {
        let Some(code) = msg.status() else { return };
        if matches!(msg.cseq().map(|c| c.method), Ok(Method::Cancel)) {
            // The answer to our CANCEL is hop by hop: the caller had ours already.
            return;
        }
        let Some(branch) = msg.top_via().ok().and_then(|v| v.branch()).and_then(Branch::parse) else {
            inc(&self.counters.stray_responses);
            return;
        };
        if branch.salt != self.salt {
            inc(&self.counters.stray_responses);
            return;
        }
        let Some(shard) = self.shards.get(branch.shard as usize) else { return };
        let mut s = lock(shard);
        let h = branch.handle;
        let Some(tx) = s.table.get_mut(h) else {
            inc(&self.counters.stray_responses);
            return;
        };
        if branch.attempt != tx.attempt {
            // A late answer from a branch we gave up on: only a 2xx still matters (the callee
            // answered); pass it on so the caller can ACK and BYE it.
            if (200..300).contains(&code) {
                self.forward_response_up(tx, msg, ctx);
            }
            return;
        }
        let Some(client) = tx.client.as_mut() else { return };
        let action = client.on_response(ctx.now, code);
        match action {
            ClientAction::PassUp if code == 100 => {}
            ClientAction::PassUp if code < 200 => {
                if tx.cancel_pending {
                    tx.cancel_pending = false;
                    send_cancel(tx, ctx.sink, &mut ctx.stored[..]);
                }
                self.forward_response_up(tx, msg, ctx);
            }
            ClientAction::PassUp => {
                let is_invite = tx.is_invite();
                self.forward_response_up(tx, msg, ctx);
                if is_invite && (200..300).contains(&code) {
                    self.on_answered(tx, msg, ctx);
                } else if !is_invite {
                    self.on_non_invite_final(msg, code);
                }
                self.release_branch_buffers(&mut s, h);
            }
            ClientAction::PassUpAndAck => {
                send_ack(tx, msg, ctx.sink, &mut ctx.stored[..]);
                self.on_branch_end(&mut s, h, BranchEnd::Final(code), Some(msg), ctx);
            }
            ClientAction::ResendAck => send_ack(tx, msg, ctx.sink, &mut ctx.stored[..]),
            _ => {}
        }
        if let Some(tx) = s.table.get_mut(h) {
            let deadline = tx.next_deadline();
            let done = tx.done();
            s.table.set_deadline(h, deadline);
            if done {
                self.remove(&mut s, h);
            }
        }
    }

    /// The callee answered: the call becomes a dialog holding its trunk slot.
    fn on_answered(&self, tx: &mut Tx, msg: &SipMessage<'_>, ctx: &Ctx<'_, '_>) {
        if tx.answered {
            return;
        }
        tx.answered = true;
        let (Ok(call_id), Ok(from), Ok(to)) = (msg.call_id(), msg.from(), msg.to()) else { return };
        let (Some(tag_a), Some(tag_b)) = (from.tag(), to.tag()) else { return };
        let Some(hold) = tx.hold.take() else { return };
        let dialog = Dialog {
            trunk: hold.trunk,
            did: hold.did,
            started: ctx.now,
            caller: tx.upstream,
            callee: tx.downstream,
            listen: tx.listen,
        };
        match self.dialogs.confirm(ctx.now, &DialogId { call_id, tag_a, tag_b }, dialog) {
            Confirm::New => inc(&self.counters.calls_answered),
            Confirm::Known => self.guard.call_ended(hold.trunk),
            Confirm::Full => {
                tracing::warn!("dialog table full: the call is not tracked");
                self.guard.call_ended(hold.trunk);
            }
        }
    }

    /// A final response to a non-INVITE went through: a BYE's ends its dialog.
    fn on_non_invite_final(&self, msg: &SipMessage<'_>, code: u16) {
        if code < 200 || !matches!(msg.cseq().map(|c| c.method), Ok(Method::Bye)) {
            return;
        }
        let (Ok(call_id), Ok(from), Ok(to)) = (msg.call_id(), msg.from(), msg.to()) else { return };
        let (Some(tag_a), Some(tag_b)) = (from.tag(), to.tag()) else { return };
        if let Some(d) = self.dialogs.end(&DialogId { call_id, tag_a, tag_b }) {
            self.guard.call_ended(d.trunk);
            inc(&self.counters.calls_ended);
        }
    }

    fn forward_response_up(&self, tx: &mut Tx, msg: &SipMessage<'_>, ctx: &mut Ctx<'_, '_>) {
        let code = msg.status().unwrap_or(0);
        let mut out = std::mem::take(&mut tx.last_response);
        out.resize(msg.as_bytes().len(), 0);
        match sip::strip_top_via(msg, &mut out) {
            Ok(n) => {
                out.truncate(n);
                if send_bytes(ctx.sink, tx.upstream, tx.listen, &out) {
                    inc(&self.counters.responses_forwarded);
                } else {
                    inc(&self.counters.send_refused);
                }
                tx.server.on_send_response(ctx.now, code);
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot forward response");
                out.clear();
            }
        }
        tx.last_response = out;
    }

    /// A branch ended without a usable answer or with a final: fail over or answer upstream.
    fn on_branch_end(
        &self,
        s: &mut Shard,
        h: Handle,
        end: BranchEnd,
        response: Option<&SipMessage<'_>>,
        ctx: &mut Ctx<'_, '_>,
    ) {
        let Some(tx) = s.table.get_mut(h) else { return };
        let next = match (tx.route, tx.cancelled) {
            (Some(route), false) => {
                let tried = tx.ctx.branches_ended() + 1;
                self.router
                    .candidates(route.set, route.seed)
                    .filter_map(|u| self.target_addr(u).map(|a| (u, a)))
                    .nth(tried)
            }
            _ => None,
        };
        let decision = if tx.cancelled || tx.route.is_none() {
            // Cancelled calls and in-dialog requests do not fail over.
            match (end, response) {
                (BranchEnd::Final(_), Some(_)) => Decision::ForwardThis,
                _ => Decision::Generate408,
            }
        } else {
            tx.ctx.on_branch_end(end, next.is_some())
        };
        if let (Some(msg), Some(best)) = (response, tx.ctx.best_index())
            && best + 1 == tx.ctx.branches_ended()
        {
            tx.best.clear();
            tx.best.extend_from_slice(msg.as_bytes());
        }
        match decision {
            Decision::ForwardThis => {
                if let Some(msg) = response {
                    self.forward_response_up(tx, msg, ctx);
                }
                self.call_failed(tx);
            }
            Decision::TryNext => {
                let Some((uri, dest)) = next else { return };
                inc(&self.counters.failovers);
                tx.attempt += 1;
                let original = std::mem::take(&mut tx.original);
                let target_uri = self.router.targets().uri(uri).unwrap_or_default();
                let scratch = std::mem::take(&mut ctx.other);
                if let Ok(orig) = sip::parse(&original, &mut *scratch) {
                    let user = match orig.request_uri() {
                        Some(Uri::Sip(u)) => u.user.unwrap_or_default(),
                        Some(Uri::Tel(t)) => t.number,
                        _ => &[],
                    };
                    let mut ruri = [0u8; MAX_REQUEST_URI_BYTES];
                    let new_ruri = rewrite_request_uri(&mut ruri, user, target_uri);
                    let shard = s.idx;
                    self.start_branch(s, shard, h, &orig, new_ruri, dest, false, ctx);
                }
                ctx.other = scratch;
                if let Some(tx) = s.table.get_mut(h) {
                    tx.original = original;
                }
            }
            Decision::ForwardStored { .. } => {
                let best = std::mem::take(&mut tx.best);
                let scratch = std::mem::take(&mut ctx.other);
                if let Ok(m) = sip::parse(&best, &mut *scratch) {
                    self.forward_response_up(tx, &m, ctx);
                }
                ctx.other = scratch;
                tx.best = best;
                self.call_failed(tx);
            }
            Decision::Generate408 => {
                let code = if tx.cancelled { 487 } else { 408 };
                self.final_from_original(s, h, code, ctx);
            }
        }
    }

    /// A new call that will not be answered: give its trunk slot back.
    fn call_failed(&self, tx: &mut Tx) {
        if let Some(hold) = tx.hold.take() {
            self.guard.call_ended(hold.trunk);
        }
    }

    /// Answers the server transaction with our own final response built from the request.
    fn final_from_original(&self, s: &mut Shard, h: Handle, code: u16, ctx: &mut Ctx<'_, '_>) {
        let Some(tx) = s.table.get_mut(h) else { return };
        self.call_failed(tx);
        if !tx.server.can_send_final() {
            return;
        }
        let reason = match code {
            408 => "Request Timeout",
            483 => "Too Many Hops",
            487 => "Request Terminated",
            _ => "Server Internal Error",
        };
        let original = std::mem::take(&mut tx.original);
        if let Ok(orig) = sip::parse(&original, &mut ctx.stored[..]) {
            let mut tag = [0u8; 32];
            let tag = next_tag(&mut tag, ctx.tags);
            let mut out = std::mem::take(&mut tx.last_response);
            out.resize(original.len() + 64, 0);
            if let Ok(n) = sip::response_from_request(&orig, code, reason, Some(tag), &[], &mut out) {
                out.truncate(n);
                send_bytes(ctx.sink, tx.upstream, tx.listen, &out);
                tx.server.on_send_response(ctx.now, code);
                if code >= 500 {
                    inc(&self.counters.replies_5xx);
                } else {
                    inc(&self.counters.replies_4xx);
                }
            } else {
                out.clear();
            }
            tx.last_response = out;
        }
        tx.original = original;
        let deadline = tx.next_deadline();
        s.table.set_deadline(h, deadline);
    }

    fn release_branch_buffers(&self, s: &mut Shard, h: Handle) {
        let Some(tx) = s.table.get_mut(h) else { return };
        let bufs = [
            std::mem::take(&mut tx.original),
            std::mem::take(&mut tx.forwarded),
            std::mem::take(&mut tx.best),
        ];
        for b in bufs {
            s.recycle(b);
        }
    }

    fn remove(&self, s: &mut Shard, h: Handle) {
        if let Some((_, mut tx)) = s.table.remove(h) {
            self.call_failed(&mut tx);
            for b in [tx.original, tx.forwarded, tx.best, tx.last_response] {
                s.recycle(b);
            }
        }
    }

    // ----------------------------------------------------------------------------------------
    // Timers
    // ----------------------------------------------------------------------------------------

    /// Runs the timers that are due in the shards this worker owns, and expires calls past
    /// their maximum duration (worker 0).
    pub fn on_tick(&self, w: &mut WorkerState, now: Instant, sink: &mut dyn Sink) {
        w.next_tick = Some(now + TICK);
        // A worker may own shards before it has received anything: learn the locals here too.
        for listen in 0..MAX_LISTEN_SOCKETS {
            if sink.local(listen).is_none() {
                break;
            }
            self.refresh_local(w, listen, sink);
        }
        let workers = self.config.workers.max(1);
        let WorkerState { idx, index_stored, index_other, locals, tags, .. } = w;
        for shard in (*idx..TX_SHARDS).step_by(workers) {
            let mut s = lock(&self.shards[shard]);
            while let Some(h) = s.table.pop_due(now) {
                let Some(tx) = s.table.get_mut(h) else { continue };
                let listen = tx.listen;
                let Some(Some(local)) = locals.get(listen) else {
                    self.remove(&mut s, h);
                    continue;
                };
                let mut ctx = Ctx {
                    now,
                    src: tx.upstream,
                    listen,
                    local,
                    sink,
                    stored: &mut index_stored[..],
                    other: &mut index_other[..],
                    tags,
                };
                self.run_timers(&mut s, h, &mut ctx);
                if let Some(tx) = s.table.get_mut(h) {
                    if tx.done() {
                        self.remove(&mut s, h);
                    } else {
                        let deadline = tx.next_deadline();
                        s.table.set_deadline(h, deadline);
                    }
                }
            }
        }
        if *idx == 0 {
            self.dialogs.expire(now, DIALOG_EXPIRY_PER_TICK, |d| {
                self.guard.call_ended(d.trunk);
                inc(&self.counters.calls_ended);
            });
        }
    }

    fn run_timers(&self, s: &mut Shard, h: Handle, ctx: &mut Ctx<'_, '_>) {
        let Some(tx) = s.table.get_mut(h) else { return };
        if tx.server.next_deadline().is_some_and(|t| t <= ctx.now) {
            let action = match &mut tx.server {
                Server::Invite(sv) => sv.on_timer(ctx.now),
                Server::NonInvite(sv) => sv.on_timer(ctx.now),
            };
            if action == ServerAction::ResendResponse && !tx.last_response.is_empty() {
                send_bytes(ctx.sink, tx.upstream, tx.listen, &tx.last_response);
            }
        }
        let Some(client) = tx.client.as_mut() else { return };
        if client.next_deadline().is_none_or(|t| t > ctx.now) {
            return;
        }
        match client.on_timer(ctx.now) {
            ClientAction::Retransmit if !tx.forwarded.is_empty() => {
                send_bytes(ctx.sink, tx.downstream, tx.listen, &tx.forwarded);
            }
            ClientAction::SendCancel => send_cancel(tx, ctx.sink, &mut ctx.stored[..]),
            ClientAction::Timeout => self.on_branch_end(s, h, BranchEnd::Timeout, None, ctx),
            _ => {}
        }
    }

    // ----------------------------------------------------------------------------------------
    // Helpers
    // ----------------------------------------------------------------------------------------

    fn is_us(&self, addr: SocketAddr, local: &Local) -> bool {
        addr.port() == local.addr.port() && (addr.ip() == local.addr.ip() || local.addr.ip().is_unspecified())
    }

    /// A Via of ours already in the request: it came back to us.
    fn is_loop(&self, msg: &SipMessage<'_>, local: &Local) -> bool {
        msg.vias().flatten().any(|v| {
            v.branch().is_some_and(|b| b.starts_with(OUR_BRANCH_PREFIX) || b.starts_with(b"z9hG4bK-sl-"))
                && match v.host {
                    Host::Ipv4(a) => {
                        self.is_us(SocketAddr::new(IpAddr::V4(a), v.port.unwrap_or(5060)), local)
                    }
                    Host::Ipv6(a) => {
                        self.is_us(SocketAddr::new(IpAddr::V6(a), v.port.unwrap_or(5060)), local)
                    }
                    Host::Name(_) => false,
                }
        })
    }

    /// A stateless reply to `msg` (with a To tag of ours on finals).
    fn reply(&self, msg: &SipMessage<'_>, code: u16, reason: &str, extra: &[&str], ctx: &mut Ctx<'_, '_>) {
        let mut tag_buf = [0u8; 32];
        let tag = if code > 100 { Some(next_tag(&mut tag_buf, ctx.tags)) } else { None };
        match code {
            400..=499 => inc(&self.counters.replies_4xx),
            500..=599 => inc(&self.counters.replies_5xx),
            _ => {}
        }
        let ok = ctx.sink.send_with(ctx.src, ctx.listen, &mut |buf| {
            sip::response_from_request(msg, code, reason, tag, extra, buf).ok()
        });
        if !ok {
            inc(&self.counters.send_refused);
        }
    }
}

/// The headers every transaction needs must parse, and CSeq's method must be the request's.
fn check_transaction_headers(msg: &SipMessage<'_>) -> Result<(), &'static str> {
    msg.top_via().map_err(|e| e.reason())?;
    msg.from().map_err(|e| e.reason())?;
    msg.to().map_err(|e| e.reason())?;
    msg.call_id().map_err(|e| e.reason())?;
    let cseq = msg.cseq().map_err(|e| e.reason())?;
    if Some(cseq.method) != msg.method() {
        return Err("CSeq method does not match the request method");
    }
    Ok(())
}

/// Where an in-dialog request goes.
struct Hop {
    dest: SocketAddr,
    request_uri: Option<([u8; MAX_REQUEST_URI_BYTES], usize)>,
    pop_route: bool,
}

/// What one event's handling needs besides the engine.
struct Ctx<'a, 's> {
    now: Instant,
    src: SocketAddr,
    listen: usize,
    local: &'a Local,
    sink: &'a mut (dyn Sink + 's),
    stored: &'a mut [HeaderIndexEntry],
    /// A second scratch index, for a stored message parsed while `stored` is in use.
    other: &'a mut [HeaderIndexEntry],
    tags: &'a mut u64,
}

fn send_cancel(tx: &Tx, sink: &mut dyn Sink, index: &mut [HeaderIndexEntry]) {
    let Ok(invite) = sip::parse(&tx.forwarded, index) else { return };
    sink.send_with(tx.downstream, tx.listen, &mut |buf| sip::build_cancel(&invite, buf).ok());
}

fn send_ack(tx: &Tx, response: &SipMessage<'_>, sink: &mut dyn Sink, index: &mut [HeaderIndexEntry]) {
    let Ok(invite) = sip::parse(&tx.forwarded, index) else { return };
    sink.send_with(tx.downstream, tx.listen, &mut |buf| sip::build_ack(&invite, response, buf).ok());
}

/// The standard reason phrase of the codes the edge generates.
fn reason_phrase(code: u16) -> &'static str {
    match code {
        403 => "Forbidden",
        404 => "Not Found",
        484 => "Address Incomplete",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// Formats into a fixed buffer; empty on overflow.
fn fixed_fmt<'b>(buf: &'b mut [u8], args: std::fmt::Arguments<'_>) -> &'b str {
    let mut cursor = std::io::Cursor::new(&mut *buf);
    let n = match std::io::Write::write_fmt(&mut cursor, args) {
        Ok(()) => usize::try_from(cursor.position()).unwrap_or(0),
        Err(_) => 0,
    };
    std::str::from_utf8(&buf[..n]).unwrap_or_default()
}

fn retry_after(buf: &mut [u8], secs: u32) -> &str {
    fixed_fmt(buf, format_args!("Retry-After: {secs}"))
}

fn next_tag<'b>(buf: &'b mut [u8], counter: &mut u64) -> &'b str {
    *counter += 1;
    fixed_fmt(buf, format_args!("se{:x}", *counter))
}

/// `sip:{user}@{host:port of target_uri}` (the target URI without its scheme), or `None` to
/// keep the received Request-URI when the user part is empty.
fn rewrite_request_uri<'b>(buf: &'b mut [u8], user: &[u8], target_uri: &str) -> Option<&'b [u8]> {
    let rest = target_uri.strip_prefix("sip:")?;
    let rest = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let mut n = 0;
    for part in [b"sip:".as_slice(), user, if user.is_empty() { b"" } else { b"@" }, rest.as_bytes()] {
        buf.get_mut(n..n + part.len())?.copy_from_slice(part);
        n += part.len();
    }
    Some(&buf[..n])
}

/// `sip:{user}@{addr}` into `buf`, returning its length.
fn write_sip_uri(buf: &mut [u8], user: &[u8], addr: SocketAddr) -> Option<usize> {
    let mut host = [0u8; 64];
    let host = fixed_fmt(&mut host, format_args!("{addr}"));
    let mut n = 0;
    for part in [b"sip:".as_slice(), user, if user.is_empty() { b"" } else { b"@" }, host.as_bytes()] {
        buf.get_mut(n..n + part.len())?.copy_from_slice(part);
        n += part.len();
    }
    Some(n)
}
