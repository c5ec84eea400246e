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
