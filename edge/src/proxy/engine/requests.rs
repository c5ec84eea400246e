//! Requests: retransmissions, ACK and CANCEL, limits and DID routing, forwarding on a new
//! branch, and in-dialog routing.

use super::*;

impl Engine {
    pub(super) fn on_request(&self, msg: &SipMessage<'_>, trunk: Option<TrunkIdx>, ctx: &mut Ctx<'_, '_>) {
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
                // The ACK to a final response the edge generated statelessly (404, 503, ...)
                // ends here: its To tag is ours.
                let mut prefix = [0u8; 32];
                let ours = our_tag_prefix(&mut prefix, self.salt);
                if msg.to().ok().and_then(|t| t.tag()).is_some_and(|t| t.starts_with(ours.as_bytes())) {
                    return;
                }
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
    pub(super) fn on_new_request(
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
            return self.forward_in_dialog(msg, trunk, shard, key, ctx);
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
    pub(super) fn route_initial(
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
        let plan: &Arc<Plan> = ctx.plan;
        // Normalise now and start reading the DID's table bucket: it arrives from memory while
        // the guard admits the call.
        let prefetched =
            WorkerRoutes::reader(ctx.routes, &plan.router).prefetch(TrunkId(trunk), user, phone_context);
        let hold = if is_invite {
            match plan.guard.admit_call(trunk) {
                Ok(hold) => Some(hold),
                Err(refusal) => return self.refuse(msg, refusal, ctx),
            }
        } else {
            None
        };
        // From here on, every early return drops `hold`: the call's slots go back.
        let decision = WorkerRoutes::reader(ctx.routes, &plan.router).route_prefetched(prefetched);
        let (set, did, limit_key, did_limit) = match decision {
            RouteDecision::Did { number, route, limit_key, .. } => {
                (route.set(), number.key(), limit_key, route.max_calls())
            }
            RouteDecision::Emergency { target } => (target, 0, 0, None),
            RouteDecision::Refuse(r) => {
                if is_invite && r.status() == 404 {
                    plan.guard.refused_unknown_did(trunk);
                }
                return self.reply(msg, r.status(), reason_phrase(r.status()), &[], ctx);
            }
        };
        // Every call to a DID is counted on it, or on its number block (an emergency call has
        // no DID: key 0).
        let hold = match hold {
            Some(hold) if limit_key != 0 => {
                match plan.guard.admit_did_call(hold, limit_key, did_limit.unwrap_or(u32::MAX)) {
                    Ok(hold) => Some(hold),
                    Err(refusal) => return self.refuse(msg, refusal, ctx),
                }
            }
            other => other,
        };
        let seed = self.hasher[1].hash_one(msg.call_id().unwrap_or_default());
        let Some(first) = plan.router.candidates(set, seed).find_map(|u| plan.target_addr(u).map(|a| (u, a)))
        else {
            if let Some(hold) = &hold {
                hold.refused_no_target();
            }
            let mut ra = [0u8; 32];
            let header = retry_after(&mut ra, ALL_DOWN_RETRY_AFTER_SECS);
            return self.reply(msg, 503, "Service Unavailable", &[header], ctx);
        };
        let route = CallRoute { plan: Arc::clone(plan), set, seed, did };
        let Ok((mut s, h)) = self.open_tx(shard, key, msg, first.1, Some(route), hold, ctx) else {
            return self.refuse_table_full(msg, ctx);
        };
        if let Some(tx) = s.table.get_mut(h) {
            tx.tried[0] = Some(first.0);
        }
        let target_uri = plan.router.targets().uri(first.0).unwrap_or_default();
        let mut ruri = [0u8; MAX_REQUEST_URI_BYTES];
        let new_ruri = rewrite_request_uri(&mut ruri, user, target_uri);
        self.start_branch(&mut s, shard, h, msg, new_ruri, first.1, false, ctx);
    }

    /// Answers an admission refusal (an unknown source gets nothing).
    fn refuse(&self, msg: &SipMessage<'_>, refusal: Refusal, ctx: &mut Ctx<'_, '_>) {
        match refusal {
            Refusal::Cps { retry_after_secs } => {
                let mut ra = [0u8; 32];
                let header = retry_after(&mut ra, retry_after_secs);
                self.reply(msg, 503, "Service Unavailable", &[header], ctx);
            }
            Refusal::Concurrency { code } => {
                let reason = if code == 486 { "Busy Here" } else { "Service Unavailable" };
                self.reply(msg, code, reason, &[], ctx);
            }
            Refusal::UnknownSource => {}
        }
    }

    /// Opens the server transaction for a request about to be forwarded to `downstream`, and
    /// answers 100 Trying to an INVITE. [`TableFull`] when the table has no room for it (for a
    /// new call: when only the reserve for requests within calls is left); nothing was sent.
    #[allow(clippy::too_many_arguments, reason = "the parts of one new transaction")]
    pub(super) fn open_tx(
        &self,
        shard: usize,
        key: Key,
        msg: &SipMessage<'_>,
        downstream: SocketAddr,
        route: Option<CallRoute>,
        hold: Option<CallHold>,
        ctx: &mut Ctx<'_, '_>,
    ) -> Result<(MutexGuard<'_, Shard>, Handle), TableFull> {
        let invite = msg.method() == Some(Method::Invite);
        let server = if invite {
            Server::Invite(InviteServer::start(self.config.timers))
        } else {
            Server::NonInvite(NonInviteServer::start(self.config.timers))
        };
        let mut s = lock(&self.shards[shard]);
        // A new call (routed by DID) may not take the last slots: requests within calls
        // still get through when new calls fill the table.
        if route.is_some() && s.table.len() >= s.calls_below {
            return Err(TableFull);
        }
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
            downstream,
            forwarded: s.buffer(),
            ctx: ResponseContext::default(),
            best: if route.is_some() { s.buffer() } else { Vec::new() },
            route,
            hold,
            cancelled: false,
            cancel_pending: false,
            answered: false,
            tried: [None; MAX_ATTEMPTS],
        };
        let Ok(h) = s.table.insert(key, tx) else { return Err(TableFull) };
        if invite {
            self.send_provisional_100(&mut s, h, msg, ctx);
        }
        Ok((s, h))
    }

    /// Answers a new call the transaction table has no room for: 503 with Retry-After.
    fn refuse_table_full(&self, msg: &SipMessage<'_>, ctx: &mut Ctx<'_, '_>) {
        inc(&self.counters.tx_table_full);
        self.reply(msg, 503, "Service Unavailable", &["Retry-After: 5"], ctx);
    }

    pub(super) fn send_provisional_100(
        &self,
        s: &mut Shard,
        h: Handle,
        msg: &SipMessage<'_>,
        ctx: &mut Ctx<'_, '_>,
    ) {
        let Some(tx) = s.table.get_mut(h) else { return };
        let mut out = std::mem::take(&mut tx.last_response);
        out.resize(msg.as_bytes().len() + 64, 0);
        match sip::response_from_request(msg, 100, "Trying", None, &[], &mut out) {
            Ok(n) => {
                out.truncate(n);
                send_bytes(ctx.sink, tx.upstream, tx.listen, &out);
                self.counters.sip.response(ctx.worker, Some(&Method::Invite), 100);
                tx.server.on_send_response(ctx.now, 100);
            }
            Err(_) => out.clear(),
        }
        tx.last_response = out;
    }

    /// Forwards `msg` (the original request) on a new branch to `dest`.
    #[allow(clippy::too_many_arguments, reason = "the parts of one forwarding decision")]
    pub(super) fn start_branch(
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
        if send_bytes(ctx.sink, dest, tx.listen, &out) {
            ctx.sink.forwarded();
        } else {
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
    pub(super) fn forward_in_dialog(
        &self,
        msg: &SipMessage<'_>,
        trunk: Option<TrunkIdx>,
        shard: usize,
        key: Key,
        ctx: &mut Ctx<'_, '_>,
    ) {
        let Some(hop) = self.in_dialog_next_hop(msg, trunk, ctx) else {
            return self.reply(msg, 481, "Call/Transaction Does Not Exist", &[], ctx);
        };
        self.note_in_dialog_cseq(msg, ctx.now);
        let Ok((mut s, h)) = self.open_tx(shard, key, msg, hop.dest, None, None, ctx) else {
            return self.forward_table_full(msg, &hop, ctx);
        };
        let ruri = hop.request_uri.as_ref().map(|(buf, len)| &buf[..*len]);
        self.start_branch(&mut s, shard, h, msg, ruri, hop.dest, hop.pop_route, ctx);
    }

    /// Where an in-dialog request goes: the next Route after ours; else the other side of the
    /// dialog; else the Request-URI's host; else (the Request-URI is us, from peers that ignore
    /// Record-Route) its user as a DID on the sender's trunk.
    pub(super) fn in_dialog_next_hop(
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
        if let Some(d) = self.dialogs.parties(&DialogId { call_id, tag_a: from_tag, tag_b: to_tag }) {
            let dest = if ctx.src == d.callee { d.caller } else { d.callee };
            let mut buf = [0u8; MAX_REQUEST_URI_BYTES];
            let len = write_sip_uri(&mut buf, user, dest)?;
            return Some(Hop { dest, request_uri: Some((buf, len)), pop_route });
        }
        let trunk = trunk?;
        let plan = ctx.plan;
        let RouteDecision::Did { route, .. } = plan.router.route(TrunkId(trunk), user, None) else {
            return None;
        };
        let uri = plan.router.candidates(route.set(), 0).next()?;
        let dest = plan.target_addr(uri)?;
        let mut buf = [0u8; MAX_REQUEST_URI_BYTES];
        let len = write_sip_uri(&mut buf, user, dest)?;
        Some(Hop { dest, request_uri: Some((buf, len)), pop_route })
    }

    pub(super) fn on_cancel(
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
}
