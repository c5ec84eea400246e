//! A transaction entry: the server side, its current client branch, their bytes.

use super::*;

/// One server transaction (upstream) with its current client branch (downstream).
#[derive(Debug)]
pub(super) struct Tx {
    pub(super) server: Server,
    /// Where the request came from, and on which socket.
    pub(super) upstream: SocketAddr,
    pub(super) listen: usize,
    /// The request as received (re-forwarded on failover).
    pub(super) original: Vec<u8>,
    /// The last response sent upstream (retransmitted).
    pub(super) last_response: Vec<u8>,
    /// The current branch, its client transaction and where it went.
    pub(super) client: Option<Client>,
    pub(super) attempt: u32,
    pub(super) downstream: SocketAddr,
    /// The request as forwarded on the current branch.
    pub(super) forwarded: Vec<u8>,
    /// Serial failover state.
    pub(super) ctx: ResponseContext,
    pub(super) best: Vec<u8>,
    pub(super) route: Option<CallRoute>,
    /// A new call's slots on its trunk and DID, held until answered (then the dialog holds
    /// them) or failed.
    pub(super) hold: Option<CallHold>,
    pub(super) cancelled: bool,
    pub(super) cancel_pending: bool,
    pub(super) answered: bool,
    /// Target URIs this call has tried, in order (failover never tries one twice).
    pub(super) tried: [Option<crate::route::UriId>; MAX_ATTEMPTS],
}

/// Where a new call goes: a target set of the generation that admitted it (failover stays in
/// that generation whatever changes meanwhile).
#[derive(Debug)]
pub(super) struct CallRoute {
    pub(super) plan: Arc<Plan>,
    pub(super) set: SetId,
    pub(super) seed: u64,
    /// The called DID's E.164 key (0: an emergency call).
    pub(super) did: u64,
}

#[derive(Debug)]
pub(super) enum Server {
    Invite(InviteServer),
    NonInvite(NonInviteServer),
}

#[derive(Debug)]
pub(super) enum Client {
    Invite(InviteClient),
    NonInvite(NonInviteClient),
}

impl Server {
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        match self {
            Server::Invite(s) => s.next_deadline(),
            Server::NonInvite(s) => s.next_deadline(),
        }
    }
    pub(super) fn terminated(&self) -> bool {
        match self {
            Server::Invite(s) => s.state() == InviteServerState::Terminated,
            Server::NonInvite(s) => s.state() == NonInviteServerState::Terminated,
        }
    }
    pub(super) fn can_send_final(&self) -> bool {
        match self {
            Server::Invite(s) => s.can_send_final(),
            Server::NonInvite(s) => s.can_send_final(),
        }
    }
    pub(super) fn on_send_response(&mut self, now: Instant, code: u16) {
        match self {
            Server::Invite(s) => s.on_send_response(now, code),
            Server::NonInvite(s) => s.on_send_response(now, code),
        }
    }
}

impl Client {
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        match self {
            Client::Invite(c) => c.next_deadline(),
            Client::NonInvite(c) => c.next_deadline(),
        }
    }
    pub(super) fn terminated(&self) -> bool {
        match self {
            Client::Invite(c) => c.state() == InviteClientState::Terminated,
            Client::NonInvite(c) => c.state() == NonInviteClientState::Terminated,
        }
    }
    pub(super) fn on_response(&mut self, now: Instant, code: u16) -> ClientAction {
        match self {
            Client::Invite(c) => c.on_response(now, code),
            Client::NonInvite(c) => c.on_response(now, code),
        }
    }
    pub(super) fn on_timer(&mut self, now: Instant) -> ClientAction {
        match self {
            Client::Invite(c) => c.on_timer(now),
            Client::NonInvite(c) => c.on_timer(now),
        }
    }
}

impl Tx {
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        [self.server.next_deadline(), self.client.as_ref().and_then(Client::next_deadline)]
            .into_iter()
            .flatten()
            .min()
    }

    pub(super) fn done(&self) -> bool {
        self.server.terminated() && self.client.as_ref().is_none_or(Client::terminated)
    }

    pub(super) fn is_invite(&self) -> bool {
        matches!(self.server, Server::Invite(_))
    }
}

#[derive(Debug)]
pub(super) struct Shard {
    pub(super) idx: usize,
    pub(super) table: Table<Tx>,
    /// Transactions from which on a new call is refused: the rest of the table is kept for
    /// requests within calls ([`IN_CALL_RESERVE_PERCENT`](super::IN_CALL_RESERVE_PERCENT)).
    pub(super) calls_below: usize,
    pub(super) pool: Vec<Vec<u8>>,
}

impl Shard {
    pub(super) fn buffer(&mut self) -> Vec<u8> {
        self.pool.pop().unwrap_or_default()
    }

    pub(super) fn recycle(&mut self, mut buf: Vec<u8>) {
        if buf.capacity() > 0 && self.pool.len() < POOLED_BUFFERS_PER_SHARD {
            buf.clear();
            self.pool.push(buf);
        }
    }
}

pub(super) fn send_cancel(tx: &Tx, sink: &mut dyn Sink, index: &mut [HeaderIndexEntry]) {
    let Ok(invite) = sip::parse(&tx.forwarded, index) else { return };
    sink.send_with(tx.downstream, tx.listen, &mut |buf| sip::build_cancel(&invite, buf).ok());
}

pub(super) fn send_ack(
    tx: &Tx,
    response: &SipMessage<'_>,
    sink: &mut dyn Sink,
    index: &mut [HeaderIndexEntry],
) {
    let Ok(invite) = sip::parse(&tx.forwarded, index) else { return };
    sink.send_with(tx.downstream, tx.listen, &mut |buf| sip::build_ack(&invite, response, buf).ok());
}
