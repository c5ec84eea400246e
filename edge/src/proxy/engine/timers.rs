//! Timers: each worker runs the due transactions of the shards it owns.

use super::*;

impl Engine {
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
        let plan = self.plan.load_full();
        let WorkerState { idx, index_stored, index_other, locals, tags, routes, .. } = w;
        WorkerRoutes::refresh(routes, &plan.router);
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
                    plan: &plan,
                    worker: *idx,
                    src: tx.upstream,
                    listen,
                    local,
                    sink,
                    stored: &mut index_stored[..],
                    other: &mut index_other[..],
                    tags,
                    routes,
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
        if w.idx == 0 {
            self.run_health(now, w, sink);
            self.resume_paused(now);
            self.run_bye_timers(now, sink);
            self.expire_calls(now, &w.locals, sink);
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
}
