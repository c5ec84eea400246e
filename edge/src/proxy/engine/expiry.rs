//! Calls past their maximum duration: the dialog ends (its slots go back) and each side gets a
//! BYE from the edge, as if from the other side (Kamailio's "bye on timeout"). Each BYE is a
//! small client transaction of its own: retransmitted over UDP on Timer E until a final response
//! or Timer F, its responses matched by our branch and absorbed, never forwarded.

use super::*;
use crate::proxy::dialog_bye::{ByeRecipe, MAX_BYE_BYTES, Side, first_contact_uri};

/// Prefix of the branch of the BYEs the edge originates:
/// `z9hG4bK-by-{slot}-{generation}-{salt}` (hex fields).
pub(super) const BYE_BRANCH_PREFIX: &[u8] = b"z9hG4bK-by-";
/// BYEs awaiting their final response at most (two per expired call, each for up to 64·T1).
/// Calls past their maximum duration wait for room before they are ended.
pub const MAX_PENDING_BYES: u32 = 16_384;
/// Longest branch of ours on a BYE, in bytes.
const BYE_BRANCH_MAX_BYTES: usize = 64;

/// One BYE the edge sent, until its final response or Timer F.
#[derive(Debug)]
pub(super) struct PendingBye {
    client: NonInviteClient,
    dest: SocketAddr,
    listen: usize,
    /// The BYE as sent (retransmitted as is).
    bytes: Vec<u8>,
}

/// The BYEs in flight, shared by the workers (a response may arrive on any of them).
#[derive(Debug)]
pub(super) struct ByeClients {
    table: Table<PendingBye>,
    /// Source of unique table keys (the branch names the entry by its handle).
    next_key: u64,
}

impl ByeClients {
    pub(super) fn new() -> Self {
        Self { table: Table::with_capacity(MAX_PENDING_BYES), next_key: 0 }
    }
}

/// Our branch for the BYE in table entry `h`.
fn bye_branch(buf: &mut [u8; BYE_BRANCH_MAX_BYTES], h: Handle, salt: u64) -> &str {
    let (slot, generation) = h.parts();
    fixed_fmt(buf, format_args!("z9hG4bK-by-{slot:x}-{generation:x}-{salt:x}"))
}

/// The entry and salt a branch of [`bye_branch`] names (after its prefix).
fn parse_bye_branch(rest: &[u8]) -> Option<(Handle, u64)> {
    let mut fields = rest.split(|&b| b == b'-');
    let mut hex = || {
        let f = fields.next().filter(|f| !f.is_empty() && f.len() <= 16)?;
        u64::from_str_radix(std::str::from_utf8(f).ok()?, 16).ok()
    };
    let slot = u32::try_from(hex()?).ok()?;
    let generation = u32::try_from(hex()?).ok()?;
    let salt = hex()?;
    fields.next().is_none().then_some((Handle::from_parts(slot, generation), salt))
}

impl Engine {
    /// What the edge keeps to end the dialog that `ok` (a 2xx) confirms for `invite` (the
    /// request as the caller sent it); `None` when the headers do not allow it (logged; the
    /// call is counted when it expires).
    pub(super) fn bye_recipe(
        &self,
        invite: &[u8],
        ok: &SipMessage<'_>,
        ctx: &mut Ctx<'_, '_>,
    ) -> Option<ByeRecipe> {
        let invite = sip::parse(invite, &mut ctx.stored[..]).ok()?;
        let local = ctx.local;
        let is_us = |uri: &Uri<'_>| uri_socket_addr(uri).is_some_and(|a| self.is_us(a, local));
        ByeRecipe::new(&invite, ok, is_us)
            .inspect_err(
                |e| tracing::debug!(error = %e, "this call will end without BYE at its maximum duration"),
            )
            .ok()
    }

    /// A request within a dialog (or an early dialog) is forwarded: its CSeq is the sender's
    /// highest so far.
    pub(super) fn note_in_dialog_cseq(&self, msg: &SipMessage<'_>, now: Instant) {
        let (Ok(call_id), Ok(from), Ok(to), Ok(cseq)) = (msg.call_id(), msg.from(), msg.to(), msg.cseq())
        else {
            return;
        };
        let (Some(tag_a), Some(tag_b)) = (from.tag(), to.tag()) else { return };
        self.dialogs.note_cseq(now, &DialogId { call_id, tag_a, tag_b }, cseq.number);
    }

    /// A re-INVITE or an UPDATE within a dialog (`request`, as received) was answered 2xx
    /// (`ok`): it refreshes the dialog's targets and its session timer.
    pub(super) fn on_refresh_answered(&self, request: &[u8], ok: &SipMessage<'_>, ctx: &mut Ctx<'_, '_>) {
        if let (Ok(call_id), Ok(from), Ok(to)) = (ok.call_id(), ok.from(), ok.to())
            && let (Some(tag_a), Some(tag_b)) = (from.tag(), to.tag())
        {
            self.dialogs.refresh_session(ctx.now, &DialogId { call_id, tag_a, tag_b }, session_interval(ok));
        }
        self.refresh_targets(request, ok, ctx);
    }

    /// A re-INVITE or an UPDATE within a dialog was answered 2xx: both sides' Contacts may have
    /// changed.
    fn refresh_targets(&self, reinvite: &[u8], ok: &SipMessage<'_>, ctx: &mut Ctx<'_, '_>) {
        let Ok(req) = sip::parse(reinvite, &mut ctx.stored[..]) else { return };
        let (Ok(call_id), Ok(from), Ok(to)) = (req.call_id(), req.from(), req.to()) else { return };
        let (Some(tag_a), Some(tag_b)) = (from.tag(), to.tag()) else { return };
        let (request_contact, response_contact) = (first_contact_uri(&req), first_contact_uri(ok));
        let refreshed = self.dialogs.update_recipe(&DialogId { call_id, tag_a, tag_b }, |r| {
            r.refresh_targets(tag_a, request_contact, response_contact)
        });
        if let Some(Err(e)) = refreshed {
            tracing::debug!(error = %e, "target refresh not kept: the BYE at maximum duration uses the old one");
        }
    }

    /// Ends the calls past their maximum duration (worker 0's tick): their slots go back and
    /// both sides get a BYE. At most [`DIALOG_EXPIRY_PER_TICK`] per tick, and no more than the
    /// BYE table has room for (the others wait for a later tick).
    pub(super) fn expire_calls(&self, now: Instant, locals: &[Option<Local>], sink: &mut dyn Sink) {
        let mut byes = lock(&self.byes);
        let room = (MAX_PENDING_BYES as usize).saturating_sub(byes.table.len()) / 2;
        self.dialogs.expire(now, DIALOG_EXPIRY_PER_TICK.min(room), |dialog| {
            inc(&self.counters.calls_ended);
            if !self.dialogs.past_maximum(now, &dialog) {
                inc(&self.counters.calls_session_expired);
            }
            let Some(recipe) = &dialog.bye else {
                inc(&self.counters.calls_expired_without_bye);
                return;
            };
            let local = locals.get(dialog.listen).and_then(Option::as_ref);
            for (side, dest) in [(Side::Callee, dialog.callee), (Side::Caller, dialog.caller)] {
                let sent = local.is_some_and(|local| {
                    self.send_bye(&mut byes, recipe, side, dest, dialog.listen, local, now, sink)
                });
                if !sent {
                    inc(&self.counters.byes_not_sent);
                }
            }
            // `dialog` is dropped here: the call's slots go back.
        });
    }

    /// Sends one BYE and opens its client transaction; false when it could not be built.
    #[allow(clippy::too_many_arguments, reason = "the parts of one BYE")]
    fn send_bye(
        &self,
        byes: &mut ByeClients,
        recipe: &ByeRecipe,
        side: Side,
        dest: SocketAddr,
        listen: usize,
        local: &Local,
        now: Instant,
        sink: &mut dyn Sink,
    ) -> bool {
        byes.next_key = byes.next_key.wrapping_add(1);
        let Some(key) = Key::new(0, &byes.next_key.to_le_bytes()) else { return false };
        let pending = PendingBye {
            client: NonInviteClient::start(now, self.config.timers),
            dest,
            listen,
            bytes: Vec::new(),
        };
        let Ok(h) = byes.table.insert(key, pending) else { return false };
        let mut branch = [0u8; BYE_BRANCH_MAX_BYTES];
        let via = ViaSpec {
            transport: "UDP",
            host: &local.host,
            port: local.addr.port(),
            branch: bye_branch(&mut branch, h, self.salt),
            rport: true,
        };
        let mut out = [0u8; MAX_BYE_BYTES];
        let n = match recipe.write(side, via, &mut out) {
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(error = %e, ?side, "cannot write the BYE of an expired call");
                byes.table.remove(h);
                return false;
            }
        };
        let Some(pending) = byes.table.get_mut(h) else { return false };
        pending.bytes.extend_from_slice(out.get(..n).unwrap_or_default());
        if !send_bytes(sink, dest, listen, &pending.bytes) {
            inc(&self.counters.send_refused);
        }
        inc(&self.counters.byes_sent);
        let deadline = pending.client.next_deadline();
        byes.table.set_deadline(h, deadline);
        true
    }

    /// Retransmits the BYEs due (Timer E) and gives up on those unanswered (Timer F).
    pub(super) fn run_bye_timers(&self, now: Instant, sink: &mut dyn Sink) {
        let mut byes = lock(&self.byes);
        while let Some(h) = byes.table.pop_due(now) {
            let Some(pending) = byes.table.get_mut(h) else { continue };
            match pending.client.on_timer(now) {
                ClientAction::Retransmit => {
                    if send_bytes(sink, pending.dest, pending.listen, &pending.bytes) {
                        inc(&self.counters.byes_retransmitted);
                    } else {
                        inc(&self.counters.send_refused);
                    }
                }
                ClientAction::Timeout => inc(&self.counters.byes_timed_out),
                _ => {}
            }
            let deadline = pending.client.next_deadline();
            if pending.client.state() == NonInviteClientState::Terminated {
                byes.table.remove(h);
            } else {
                byes.table.set_deadline(h, deadline);
            }
        }
    }

    /// A response to one of our BYEs (`true`: absorbed here), or not one of ours (`false`).
    pub(super) fn on_bye_response(&self, branch: &[u8], msg: &SipMessage<'_>, now: Instant) -> bool {
        let Some(rest) = branch.strip_prefix(BYE_BRANCH_PREFIX) else { return false };
        let matched = parse_bye_branch(rest).filter(|&(_, salt)| salt == self.salt);
        let (Some((h, _)), Some(code), Ok(Method::Bye)) =
            (matched, msg.status(), msg.cseq().map(|c| c.method))
        else {
            inc(&self.counters.stray_responses);
            return true;
        };
        let mut byes = lock(&self.byes);
        let Some(pending) = byes.table.get_mut(h) else {
            // A retransmitted final after the transaction ended, or a stale branch.
            inc(&self.counters.stray_responses);
            return true;
        };
        if pending.client.on_response(now, code) == ClientAction::PassUp && code >= 200 {
            byes.table.remove(h);
            inc(match code {
                200..=299 => &self.counters.byes_answered_2xx,
                481 => &self.counters.byes_answered_481,
                _ => &self.counters.byes_answered_other,
            });
        } else {
            let deadline = pending.client.next_deadline();
            byes.table.set_deadline(h, deadline);
        }
        true
    }

    /// BYEs awaiting their final response.
    pub fn pending_byes(&self) -> usize {
        lock(&self.byes).table.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branches_round_trip_and_reject_others() {
        let h = Handle::from_parts(0x1234, 7);
        let mut buf = [0u8; BYE_BRANCH_MAX_BYTES];
        let b = bye_branch(&mut buf, h, u64::MAX).to_owned();
        assert!(b.starts_with("z9hG4bK-by-1234-7-"), "{b}");
        let rest = b.as_bytes().strip_prefix(BYE_BRANCH_PREFIX).unwrap();
        assert_eq!(parse_bye_branch(rest), Some((h, u64::MAX)));
        for bad in [&b""[..], b"1-2", b"1-2-3-4", b"1-2-zz", b"1--3", b"100000000-2-3"] {
            assert_eq!(parse_bye_branch(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }
}
