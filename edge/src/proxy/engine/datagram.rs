//! One datagram: admission, parse, classify; local names; stateless replies.

use super::*;

impl Engine {
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
        if let Some(filter) = &self.prefilter
            && !filter.admit(now, src.ip(), payload)
        {
            return; // dropped by the packet filter's policy: no reply (counted there)
        }
        self.refresh_local(w, listen, sink);
        let plan = self.plan.load();
        let trunk = plan.guard.source(src.ip()).ok();
        let from_target = plan.target_ips.contains(&src.ip());
        let WorkerState { idx, index_in, index_stored, index_other, locals, tags, routes, .. } = w;
        let msg = match sip::parse(payload, &mut index_in[..]) {
            Ok(m) => m,
            Err(e) => {
                inc(&self.counters.malformed);
                self.counters.sip.malformed(*idx);
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
            plan: &plan,
            worker: *idx,
            src,
            listen,
            local,
            sink,
            stored: &mut index_stored[..],
            other: &mut index_other[..],
            tags,
            routes,
        };
        if msg.is_response() {
            inc(&self.counters.responses);
            self.counters.sip.passed(ctx.worker);
            let cseq_method = msg.cseq().ok().map(|c| c.method);
            self.counters.sip.response(ctx.worker, cseq_method.as_ref(), msg.status().unwrap_or(0));
            self.on_response(&msg, &mut ctx);
            return;
        }
        inc(&self.counters.requests);
        if let Some(method) = msg.method() {
            self.counters.sip.request(ctx.worker, &method);
        }
        if trunk.is_none() && !from_target && !self.party_to_a_call(&msg, src) {
            // Not allow-listed: no answer at all (the guard counted it).
            self.counters.sip.unknown_source(ctx.worker);
            return;
        }
        if let Err(reason) = check_transaction_headers(&msg) {
            inc(&self.counters.malformed);
            self.counters.sip.malformed(ctx.worker);
            self.reply(&msg, 400, reason, &[], &mut ctx);
            return;
        }
        self.counters.sip.passed(ctx.worker);
        self.on_request(&msg, trunk, &mut ctx);
    }

    /// A source outside the current trunks and targets is still heard for a call it takes part
    /// in (admitted before a policy change removed its trunk or target): a CANCEL or ACK of a
    /// transaction it opened, or a request within a dialog it is a side of (ACK of a 2xx, BYE,
    /// re-INVITE, their retransmissions). Requests that start something new — what a flood
    /// sends — are dropped before any lookup.
    fn party_to_a_call(&self, msg: &SipMessage<'_>, src: SocketAddr) -> bool {
        let Some(method) = msg.method() else { return false };
        let (Ok(call_id), Ok(from), Ok(to)) = (msg.call_id(), msg.from(), msg.to()) else { return false };
        let to_tag = to.tag();
        if to_tag.is_none() && !matches!(method, Method::Cancel | Method::Ack) {
            return false;
        }
        if let (Some(tag_a), Some(tag_b)) = (from.tag(), to_tag)
            && self
                .dialogs
                .parties(&DialogId { call_id, tag_a, tag_b })
                .is_some_and(|p| p.caller.ip() == src.ip() || p.callee.ip() == src.ip())
        {
            return true;
        }
        let Ok(via) = msg.top_via() else { return false };
        let Some(branch) = via.branch() else { return false };
        let via_host = via.raw.get(..via.raw.len().min(128)).unwrap_or_default();
        let kind = match method {
            Method::Invite | Method::Ack | Method::Cancel => KEY_INVITE,
            _ => KEY_OTHER,
        };
        let (shard, key) = self.server_key(branch, via_host, via.port.unwrap_or(5060), kind);
        let mut s = lock(&self.shards[shard]);
        s.table.find(&key).and_then(|h| s.table.get_mut(h)).is_some_and(|tx| tx.upstream.ip() == src.ip())
    }

    pub(super) fn refresh_local(&self, w: &mut WorkerState, listen: usize, sink: &mut dyn Sink) {
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
    pub(super) fn reply_malformed(
        &self,
        payload: &[u8],
        src: SocketAddr,
        listen: usize,
        reason: &str,
        sink: &mut dyn Sink,
    ) {
        let mut out = [0u8; 4096];
        let Some(len) = crate::proxy::malformed::bad_request(payload, reason, &mut out) else { return };
        inc(&self.counters.replies_4xx);
        if !send_bytes(sink, src, listen, &out[..len]) {
            inc(&self.counters.send_refused);
        }
    }

    pub(super) fn is_us(&self, addr: SocketAddr, local: &Local) -> bool {
        addr.port() == local.addr.port() && (addr.ip() == local.addr.ip() || local.addr.ip().is_unspecified())
    }

    /// A Via of ours already in the request: it came back to us.
    pub(super) fn is_loop(&self, msg: &SipMessage<'_>, local: &Local) -> bool {
        msg.vias().flatten().any(|v| {
            v.branch().is_some_and(|b| {
                b.starts_with(OUR_BRANCH_PREFIX)
                    || b.starts_with(stateless::STATELESS_BRANCH_PREFIX)
                    || b.starts_with(expiry::BYE_BRANCH_PREFIX)
            }) && match v.host {
                Host::Ipv4(a) => self.is_us(SocketAddr::new(IpAddr::V4(a), v.port.unwrap_or(5060)), local),
                Host::Ipv6(a) => self.is_us(SocketAddr::new(IpAddr::V6(a), v.port.unwrap_or(5060)), local),
                Host::Name(_) => false,
            }
        })
    }

    /// A stateless reply to `msg` (with a To tag of ours on finals).
    pub(super) fn reply(
        &self,
        msg: &SipMessage<'_>,
        code: u16,
        reason: &str,
        extra: &[&str],
        ctx: &mut Ctx<'_, '_>,
    ) {
        let mut tag_buf = [0u8; 32];
        let tag = if code > 100 { Some(next_tag(&mut tag_buf, self.salt, ctx.tags)) } else { None };
        match code {
            400..=499 => inc(&self.counters.replies_4xx),
            500..=599 => inc(&self.counters.replies_5xx),
            _ => {}
        }
        self.counters.sip.response(ctx.worker, msg.method().as_ref(), code);
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
