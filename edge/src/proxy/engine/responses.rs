//! Responses: matched by our branch, forwarded upstream; answers, BYEs, serial failover.

use super::*;

impl Engine {
    pub(super) fn on_response(&self, msg: &SipMessage<'_>, ctx: &mut Ctx<'_, '_>) {
        let Some(code) = msg.status() else { return };
        if matches!(msg.cseq().map(|c| c.method), Ok(Method::Cancel)) {
            // The answer to our CANCEL is hop by hop: the caller had ours already.
            return;
        }
        let top_branch = msg.top_via().ok().and_then(|v| v.branch());
        if top_branch.is_some_and(|b| {
            self.on_probe_response(b, msg, ctx.now)
                || self.on_bye_response(b, msg, ctx.now)
                || self.on_stateless_response(b, msg, ctx)
        }) {
            return;
        }
        let Some(branch) = top_branch.and_then(Branch::parse) else {
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
                    if (200..300).contains(&code)
                        && matches!(msg.cseq().map(|c| c.method), Ok(Method::Update))
                    {
                        // An UPDATE is a target and session refresh too (RFC 3311 §5.2,
                        // RFC 4028 §9).
                        self.on_refresh_answered(&tx.original, msg, ctx);
                    }
                    self.on_non_invite_final(msg, code);
                }
                self.release_branch_buffers(&mut s, h);
            }
            ClientAction::PassUpAndAck => {
                send_ack(tx, msg, ctx.sink, &mut ctx.stored[..]);
                // The target that said 503, in the generation that routed the call.
                let busy = (code == 503)
                    .then(|| {
                        Some((Arc::clone(&tx.route.as_ref()?.plan), tx.tried.iter().rev().find_map(|t| *t)?))
                    })
                    .flatten();
                self.on_branch_end(&mut s, h, BranchEnd::Final(code), Some(msg), ctx);
                if let Some((plan, uri)) = busy {
                    self.on_target_503(&plan, uri, msg, ctx.now);
                }
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

    /// The callee answered: the call becomes a dialog holding its trunk slot; or a re-INVITE
    /// was answered: the dialog's targets are refreshed.
    pub(super) fn on_answered(&self, tx: &mut Tx, msg: &SipMessage<'_>, ctx: &mut Ctx<'_, '_>) {
        if tx.answered {
            return;
        }
        tx.answered = true;
        if tx.route.is_none() {
            // A re-INVITE within a dialog (only new calls are routed).
            return self.on_refresh_answered(&tx.original, msg, ctx);
        }
        let (Ok(call_id), Ok(from), Ok(to)) = (msg.call_id(), msg.from(), msg.to()) else { return };
        let (Some(tag_a), Some(tag_b)) = (from.tag(), to.tag()) else { return };
        let Some(hold) = tx.hold.take() else { return };
        let dialog = Dialog {
            hold,
            did: tx.route.as_ref().map_or(0, |r| r.did),
            started: ctx.now,
            caller: tx.upstream,
            callee: tx.downstream,
            listen: tx.listen,
            session: session_interval(msg),
            bye: self.bye_recipe(&tx.original, msg, ctx),
        };
        // Unless new, the dialog was dropped, and its hold with it.
        match self.dialogs.confirm(ctx.now, &DialogId { call_id, tag_a, tag_b }, dialog) {
            Confirm::New => inc(&self.counters.calls_answered),
            Confirm::Known => {}
            Confirm::Full => tracing::warn!("dialog table full: the call is not tracked"),
        }
    }

    /// A final response to a non-INVITE went through: a BYE's ends its dialog.
    pub(super) fn on_non_invite_final(&self, msg: &SipMessage<'_>, code: u16) {
        if code < 200 || !matches!(msg.cseq().map(|c| c.method), Ok(Method::Bye)) {
            return;
        }
        let (Ok(call_id), Ok(from), Ok(to)) = (msg.call_id(), msg.from(), msg.to()) else { return };
        let (Some(tag_a), Some(tag_b)) = (from.tag(), to.tag()) else { return };
        // The ended dialog is dropped here: its slots go back.
        if self.dialogs.end(&DialogId { call_id, tag_a, tag_b }).is_some() {
            inc(&self.counters.calls_ended);
        }
    }

    pub(super) fn forward_response_up(&self, tx: &mut Tx, msg: &SipMessage<'_>, ctx: &mut Ctx<'_, '_>) {
        let code = msg.status().unwrap_or(0);
        let mut out = std::mem::take(&mut tx.last_response);
        out.resize(msg.as_bytes().len(), 0);
        match sip::strip_top_via(msg, &mut out) {
            Ok(n) => {
                out.truncate(n);
                if send_bytes(ctx.sink, tx.upstream, tx.listen, &out) {
                    ctx.sink.forwarded();
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
    pub(super) fn on_branch_end(
        &self,
        s: &mut Shard,
        h: Handle,
        end: BranchEnd,
        response: Option<&SipMessage<'_>>,
        ctx: &mut Ctx<'_, '_>,
    ) {
        let Some(tx) = s.table.get_mut(h) else { return };
        // Failover stays within the generation that admitted the call.
        let next = match (&tx.route, tx.cancelled) {
            (Some(route), false) if tx.tried.iter().any(Option::is_none) => route
                .plan
                .router
                .candidates(route.set, route.seed)
                .filter(|u| !tx.tried.contains(&Some(*u)))
                .find_map(|u| route.plan.target_addr(u).map(|a| (u, a))),
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
                if let Some(free) = tx.tried.iter_mut().find(|t| t.is_none()) {
                    *free = Some(uri);
                }
                let original = std::mem::take(&mut tx.original);
                let plan = tx.route.as_ref().map(|r| Arc::clone(&r.plan));
                let target_uri = plan.as_ref().and_then(|p| p.router.targets().uri(uri)).unwrap_or_default();
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
                if let (false, Some(hold)) = (tx.cancelled, &tx.hold) {
                    hold.refused_no_target();
                }
                let code = if tx.cancelled { 487 } else { 408 };
                self.final_from_original(s, h, code, ctx);
            }
        }
    }

    /// A new call that will not be answered: its slots go back (the hold is dropped).
    pub(super) fn call_failed(&self, tx: &mut Tx) {
        tx.hold = None;
    }

    /// Answers the server transaction with our own final response built from the request.
    pub(super) fn final_from_original(&self, s: &mut Shard, h: Handle, code: u16, ctx: &mut Ctx<'_, '_>) {
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
            let tag = next_tag(&mut tag, self.salt, ctx.tags);
            let mut out = std::mem::take(&mut tx.last_response);
            out.resize(original.len() + 64, 0);
            if let Ok(n) = sip::response_from_request(&orig, code, reason, Some(tag), &[], &mut out) {
                out.truncate(n);
                send_bytes(ctx.sink, tx.upstream, tx.listen, &out);
                self.counters.sip.response(ctx.worker, orig.method().as_ref(), code);
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

    pub(super) fn release_branch_buffers(&self, s: &mut Shard, h: Handle) {
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

    pub(super) fn remove(&self, s: &mut Shard, h: Handle) {
        // Dropping the transaction drops its hold, if the call never became a dialog.
        if let Some((_, tx)) = s.table.remove(h) {
            for b in [tx.original, tx.forwarded, tx.best, tx.last_response] {
                s.recycle(b);
            }
        }
    }
}
