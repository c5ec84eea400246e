//! Server transactions (RFC 3261 §17.2, with RFC 6026's Accepted state): the requests the proxy
//! receives upstream. Pure state machines, like the client side: `now` and an event in, an
//! action out; the caller keeps the last response's bytes and sends them when told.

use std::time::{Duration, Instant};

use super::timers::{TimerConfig, earliest};

/// What the caller must do after a server-transaction event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerAction {
    /// Nothing: an absorbed retransmission or a state change only.
    None,
    /// Send the last response again (a retransmitted request, or timer G).
    ResendResponse,
    /// Hand the request to the proxy core (only ACKs for our non-2xx never do).
    PassUp,
    /// Timer H fired: the ACK for our non-2xx final never came.
    AckTimeout,
}

/// States of an INVITE server transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteServerState {
    /// Provisional responses only so far.
    Proceeding,
    /// A 2xx went upstream; retransmitted INVITEs are absorbed (Timer L).
    Accepted,
    /// A non-2xx final went upstream; retransmitted until ACK (timers G, H).
    Completed,
    /// The ACK arrived; absorbing stray ACKs (Timer I).
    Confirmed,
    /// Done.
    Terminated,
}

/// An INVITE server transaction on an unreliable transport.
#[derive(Debug, Clone)]
pub struct InviteServer {
    state: InviteServerState,
    timers: TimerConfig,
    /// Whether a response (provisional or final) was sent that a retransmission gets again.
    has_response: bool,
    /// Timer G: next response retransmission and the interval after it.
    timer_g: Option<(Instant, Duration)>,
    /// Timer H (Completed), I (Confirmed) or L (Accepted).
    state_end: Option<Instant>,
}

impl InviteServer {
    /// A new INVITE arrived; the caller passes it up and (as a proxy) answers 100 Trying at once.
    pub fn start(timers: TimerConfig) -> Self {
        Self {
            state: InviteServerState::Proceeding,
            timers,
            has_response: false,
            timer_g: None,
            state_end: None,
        }
    }

    /// Current state.
    pub fn state(&self) -> InviteServerState {
        self.state
    }

    /// When [`Self::on_timer`] must next be called.
    pub fn next_deadline(&self) -> Option<Instant> {
        earliest(&[self.timer_g.map(|(at, _)| at), self.state_end])
    }

    /// The INVITE came again: answer it with the last response, never forward it twice.
    pub fn on_retransmission(&mut self) -> ServerAction {
        match self.state {
            InviteServerState::Proceeding | InviteServerState::Completed if self.has_response => {
                ServerAction::ResendResponse
            }
            _ => ServerAction::None,
        }
    }

    /// An ACK matched this transaction (only a non-2xx's ACK does; a 2xx's ACK is its own
    /// transaction and goes end to end).
    pub fn on_ack(&mut self, now: Instant) -> ServerAction {
        if self.state == InviteServerState::Completed {
            self.state = InviteServerState::Confirmed;
            self.timer_g = None;
            self.state_end = Some(now + self.timers.t4);
        }
        ServerAction::None
    }

    /// The proxy core sends a response upstream through this transaction (the caller sends the
    /// bytes and keeps them for retransmission).
    pub fn on_send_response(&mut self, now: Instant, code: u16) {
        if !matches!(self.state, InviteServerState::Proceeding | InviteServerState::Accepted) {
            return;
        }
        self.has_response = true;
        match code {
            100..=199 => {}
            200..=299 if self.state == InviteServerState::Proceeding => {
                self.state = InviteServerState::Accepted;
                self.state_end = Some(now + self.timers.t1x64());
            }
            200..=299 => {}
            _ if self.state == InviteServerState::Proceeding => {
                self.state = InviteServerState::Completed;
                self.timer_g = Some((now + self.timers.t1, (self.timers.t1 * 2).min(self.timers.t2)));
                self.state_end = Some(now + self.timers.t1x64());
            }
            _ => {}
        }
    }

    /// Whether a final response may still be sent through this transaction.
    pub fn can_send_final(&self) -> bool {
        self.state == InviteServerState::Proceeding
    }

    /// Handles one due timer.
    pub fn on_timer(&mut self, now: Instant) -> ServerAction {
        if self.state_end.is_some_and(|t| t <= now) {
            let no_ack = self.state == InviteServerState::Completed;
            self.state = InviteServerState::Terminated;
            self.timer_g = None;
            self.state_end = None;
            return if no_ack { ServerAction::AckTimeout } else { ServerAction::None };
        }
        if let Some((at, interval)) = self.timer_g
            && at <= now
        {
            self.timer_g = Some((now + interval, (interval * 2).min(self.timers.t2)));
            return ServerAction::ResendResponse;
        }
        ServerAction::None
    }
}

/// States of a non-INVITE server transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonInviteServerState {
    /// The request arrived; nothing sent yet.
    Trying,
    /// A provisional was sent.
    Proceeding,
    /// A final was sent; retransmitted requests get it again (Timer J).
    Completed,
    /// Done.
    Terminated,
}

/// A non-INVITE server transaction on an unreliable transport.
#[derive(Debug, Clone)]
pub struct NonInviteServer {
    state: NonInviteServerState,
    timers: TimerConfig,
    /// Timer J.
    state_end: Option<Instant>,
}

impl NonInviteServer {
    /// A new request arrived; the caller passes it up.
    pub fn start(timers: TimerConfig) -> Self {
        Self { state: NonInviteServerState::Trying, timers, state_end: None }
    }

    /// Current state.
    pub fn state(&self) -> NonInviteServerState {
        self.state
    }

    /// When [`Self::on_timer`] must next be called.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.state_end
    }

    /// The request came again.
    pub fn on_retransmission(&mut self) -> ServerAction {
        match self.state {
            NonInviteServerState::Proceeding | NonInviteServerState::Completed => {
                ServerAction::ResendResponse
            }
            _ => ServerAction::None,
        }
    }

    /// The proxy core sends a response upstream through this transaction.
    pub fn on_send_response(&mut self, now: Instant, code: u16) {
        match (self.state, code) {
            (NonInviteServerState::Trying | NonInviteServerState::Proceeding, 100..=199) => {
                self.state = NonInviteServerState::Proceeding;
            }
            (NonInviteServerState::Trying | NonInviteServerState::Proceeding, _) => {
                self.state = NonInviteServerState::Completed;
                self.state_end = Some(now + self.timers.t1x64());
            }
            _ => {}
        }
    }

    /// Whether a final response may still be sent.
    pub fn can_send_final(&self) -> bool {
        matches!(self.state, NonInviteServerState::Trying | NonInviteServerState::Proceeding)
    }

    /// Handles one due timer.
    pub fn on_timer(&mut self, now: Instant) -> ServerAction {
        if self.state_end.is_some_and(|t| t <= now) {
            self.state = NonInviteServerState::Terminated;
            self.state_end = None;
        }
        ServerAction::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn retransmitted_invite_gets_the_last_provisional_not_a_second_forward() {
        let t0 = Instant::now();
        let mut tx = InviteServer::start(TimerConfig::default());
        // Before anything was sent (the proxy sends 100 at once, so this is a race only).
        assert_eq!(tx.on_retransmission(), ServerAction::None);
        tx.on_send_response(t0, 100);
        assert_eq!(tx.on_retransmission(), ServerAction::ResendResponse);
        tx.on_send_response(t0 + ms(50), 180);
        assert_eq!(tx.on_retransmission(), ServerAction::ResendResponse);
        assert_eq!(tx.state(), InviteServerState::Proceeding);
    }

    #[test]
    fn non_2xx_final_is_retransmitted_on_timer_g_until_ack() {
        let t0 = Instant::now();
        let timers = TimerConfig::default();
        let mut tx = InviteServer::start(timers);
        tx.on_send_response(t0, 404);
        assert!(!tx.can_send_final());
        let mut sends = Vec::new();
        while let Some(at) = tx.next_deadline() {
            if at > t0 + Duration::from_secs(10) {
                break;
            }
            if tx.on_timer(at) == ServerAction::ResendResponse {
                sends.push((at - t0).as_millis());
            }
        }
        // G: T1, then doubling, capped at T2.
        assert_eq!(sends, [500, 1500, 3500, 7500]);
        assert_eq!(tx.on_ack(t0 + Duration::from_secs(10)), ServerAction::None);
        assert_eq!(tx.state(), InviteServerState::Confirmed);
        assert_eq!(tx.next_deadline(), Some(t0 + Duration::from_secs(10) + timers.t4));
        assert_eq!(tx.on_timer(t0 + Duration::from_secs(15)), ServerAction::None);
        assert_eq!(tx.state(), InviteServerState::Terminated);
    }

    #[test]
    fn timer_h_reports_a_missing_ack() {
        let t0 = Instant::now();
        let timers = TimerConfig::default();
        let mut tx = InviteServer::start(timers);
        tx.on_send_response(t0, 503);
        let mut last = ServerAction::None;
        while let Some(at) = tx.next_deadline() {
            last = tx.on_timer(at);
        }
        assert_eq!(last, ServerAction::AckTimeout);
        assert_eq!(tx.state(), InviteServerState::Terminated);
    }

    #[test]
    fn accepted_absorbs_invite_retransmissions_until_timer_l() {
        let t0 = Instant::now();
        let mut tx = InviteServer::start(TimerConfig::default());
        tx.on_send_response(t0, 100);
        tx.on_send_response(t0 + ms(10), 200);
        assert_eq!(tx.state(), InviteServerState::Accepted);
        assert_eq!(tx.on_retransmission(), ServerAction::None);
        // A 2xx retransmission from downstream still goes through.
        tx.on_send_response(t0 + ms(500), 200);
        assert_eq!(tx.next_deadline(), Some(t0 + ms(10) + Duration::from_secs(32)));
        assert_eq!(tx.on_timer(t0 + Duration::from_secs(33)), ServerAction::None);
        assert_eq!(tx.state(), InviteServerState::Terminated);
    }

    #[test]
    fn non_invite_server_resends_final_until_timer_j() {
        let t0 = Instant::now();
        let mut tx = NonInviteServer::start(TimerConfig::default());
        assert_eq!(tx.on_retransmission(), ServerAction::None);
        tx.on_send_response(t0, 200);
        assert!(!tx.can_send_final());
        assert_eq!(tx.on_retransmission(), ServerAction::ResendResponse);
        assert_eq!(tx.next_deadline(), Some(t0 + Duration::from_secs(32)));
        tx.on_timer(t0 + Duration::from_secs(32));
        assert_eq!(tx.state(), NonInviteServerState::Terminated);
    }
}
