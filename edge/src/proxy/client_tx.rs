//! Client transactions (RFC 3261 §17.1, with RFC 6026's Accepted state): the requests the
//! proxy forwards downstream. Pure state machines: they take `now` and an event and say what to
//! do; the caller owns the bytes, the sockets and the clock.

use std::time::{Duration, Instant};

use super::timers::{TimerConfig, earliest};

/// What the caller must do after a client-transaction event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAction {
    /// Nothing (an absorbed retransmission, a timer that only changed state).
    None,
    /// Send the request again (timers A/E).
    Retransmit,
    /// Hand the response to the proxy core (provisional or final).
    PassUp,
    /// Hand the non-2xx final response up and send an ACK for it (§17.1.1.3).
    PassUpAndAck,
    /// A retransmitted non-2xx final: send the ACK again, pass nothing up.
    ResendAck,
    /// Timer C fired after a provisional: send a CANCEL (§16.8).
    SendCancel,
    /// No final response in time (timers B/F, or Timer C without provisional, or the CANCEL
    /// wait): the proxy core treats it as a 408 from this branch.
    Timeout,
}

/// States of an INVITE client transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteClientState {
    /// Request sent, nothing heard.
    Calling,
    /// A provisional response arrived.
    Proceeding,
    /// A 2xx arrived: later 2xx retransmissions still pass up (RFC 6026 §7.2).
    Accepted,
    /// A non-2xx final arrived and was ACKed.
    Completed,
    /// Done; the caller removes the transaction.
    Terminated,
}

/// An INVITE client transaction on an unreliable transport, with the proxy's Timer C.
#[derive(Debug, Clone)]
pub struct InviteClient {
    state: InviteClientState,
    timers: TimerConfig,
    /// Timer A: next retransmission, and the interval that follows it.
    timer_a: Option<(Instant, Duration)>,
    /// Timer B (Calling), D (Completed) or M (Accepted): when the state ends.
    state_end: Option<Instant>,
    /// Timer C (proxy): no final response by then.
    timer_c: Option<Instant>,
    /// After a CANCEL, the wait for the final response (64·T1).
    cancel_wait: Option<Instant>,
}

impl InviteClient {
    /// Starts the transaction; the caller has just sent the request.
    pub fn start(now: Instant, timers: TimerConfig) -> Self {
        Self {
            state: InviteClientState::Calling,
            timers,
            timer_a: Some((now + timers.t1, timers.t1 * 2)),
            state_end: Some(now + timers.t1x64()),
            timer_c: Some(now + timers.timer_c),
            cancel_wait: None,
        }
    }

    /// Current state.
    pub fn state(&self) -> InviteClientState {
        self.state
    }

    /// When [`Self::on_timer`] must next be called.
    pub fn next_deadline(&self) -> Option<Instant> {
        earliest(&[self.timer_a.map(|(at, _)| at), self.state_end, self.timer_c, self.cancel_wait])
    }

    /// A response matched this transaction.
    pub fn on_response(&mut self, now: Instant, code: u16) -> ClientAction {
        use InviteClientState::*;
        match (self.state, code) {
            (Calling | Proceeding, 100..=199) => {
                self.state = Proceeding;
                self.timer_a = None;
                self.state_end = None;
                if self.cancel_wait.is_none() {
                    self.timer_c = Some(now + self.timers.timer_c);
                }
                ClientAction::PassUp
            }
            (Calling | Proceeding, 200..=299) => {
                self.enter(Accepted, Some(now + self.timers.t1x64()));
                ClientAction::PassUp
            }
            (Calling | Proceeding, 300..=699) => {
                self.enter(Completed, Some(now + self.timers.timer_d()));
                ClientAction::PassUpAndAck
            }
            (Accepted, 200..=299) => ClientAction::PassUp,
            (Completed, 300..=699) => ClientAction::ResendAck,
            _ => ClientAction::None,
        }
    }

    fn enter(&mut self, state: InviteClientState, end: Option<Instant>) {
        self.state = state;
        self.timer_a = None;
        self.timer_c = None;
        self.cancel_wait = None;
        self.state_end = end;
    }

    /// Called when `now` has reached [`Self::next_deadline`]; handles one due timer. Call again
    /// while the deadline is still due.
    pub fn on_timer(&mut self, now: Instant) -> ClientAction {
        use InviteClientState::*;
        if self.state_end.is_some_and(|t| t <= now) {
            return match self.state {
                Calling => {
                    self.enter(Terminated, None);
                    ClientAction::Timeout
                }
                _ => {
                    self.enter(Terminated, None);
                    ClientAction::None
                }
            };
        }
        if self.cancel_wait.is_some_and(|t| t <= now) {
            self.enter(Terminated, None);
            return ClientAction::Timeout;
        }
        if self.timer_c.is_some_and(|t| t <= now) {
            self.timer_c = None;
            return if self.state == Proceeding {
                self.cancel_wait = Some(now + self.timers.t1x64());
                ClientAction::SendCancel
            } else {
                self.enter(Terminated, None);
                ClientAction::Timeout
            };
        }
        if let Some((at, interval)) = self.timer_a
            && at <= now
        {
            self.timer_a = Some((now + interval, interval * 2));
            return ClientAction::Retransmit;
        }
        ClientAction::None
    }

    /// The proxy cancelled this branch (the caller sent CANCEL, or another branch answered):
    /// wait 64·T1 for the final response (RFC 3261 §9.1), then give up.
    pub fn cancelled(&mut self, now: Instant) {
        if matches!(self.state, InviteClientState::Calling | InviteClientState::Proceeding) {
            self.timer_c = None;
            self.cancel_wait = Some(now + self.timers.t1x64());
        }
    }
}

/// States of a non-INVITE client transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonInviteClientState {
    /// Request sent, nothing heard.
    Trying,
    /// A provisional arrived.
    Proceeding,
    /// A final arrived; retransmissions of it are absorbed (Timer K).
    Completed,
    /// Done.
    Terminated,
}

/// A non-INVITE client transaction on an unreliable transport.
#[derive(Debug, Clone)]
pub struct NonInviteClient {
    state: NonInviteClientState,
    timers: TimerConfig,
    /// Timer E: next retransmission and the current interval.
    timer_e: Option<(Instant, Duration)>,
    /// Timer F (Trying/Proceeding) or K (Completed).
    state_end: Option<Instant>,
}

impl NonInviteClient {
    /// Starts the transaction; the caller has just sent the request.
    pub fn start(now: Instant, timers: TimerConfig) -> Self {
        Self {
            state: NonInviteClientState::Trying,
            timers,
            timer_e: Some((now + timers.t1, timers.t1)),
            state_end: Some(now + timers.t1x64()),
        }
    }

    /// Current state.
    pub fn state(&self) -> NonInviteClientState {
        self.state
    }

    /// When [`Self::on_timer`] must next be called.
    pub fn next_deadline(&self) -> Option<Instant> {
        earliest(&[self.timer_e.map(|(at, _)| at), self.state_end])
    }

    /// A response matched this transaction.
    pub fn on_response(&mut self, now: Instant, code: u16) -> ClientAction {
        use NonInviteClientState::*;
        match (self.state, code) {
            (Trying | Proceeding, 100..=199) => {
                self.state = Proceeding;
                ClientAction::PassUp
            }
            (Trying | Proceeding, 200..=699) => {
                self.state = Completed;
                self.timer_e = None;
                self.state_end = Some(now + self.timers.t4);
                ClientAction::PassUp
            }
            _ => ClientAction::None,
        }
    }

    /// Handles one due timer.
    pub fn on_timer(&mut self, now: Instant) -> ClientAction {
        use NonInviteClientState::*;
        if self.state_end.is_some_and(|t| t <= now) {
            let timed_out = self.state != Completed;
            self.state = Terminated;
            self.timer_e = None;
            self.state_end = None;
            return if timed_out { ClientAction::Timeout } else { ClientAction::None };
        }
        if let Some((at, interval)) = self.timer_e
            && at <= now
        {
            // §17.1.2.2: doubling up to T2 in Trying; every T2 in Proceeding.
            let next =
                if self.state == Proceeding { self.timers.t2 } else { (interval * 2).min(self.timers.t2) };
            self.timer_e = Some((now + next, next));
            return ClientAction::Retransmit;
        }
        ClientAction::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Runs timers up to `until`, returning `(offset ms, action)` for each non-None action.
    fn run_until<F>(
        t0: Instant,
        until: Duration,
        mut next: impl FnMut() -> Option<Instant>,
        mut fire: F,
    ) -> Vec<(u128, ClientAction)>
    where
        F: FnMut(Instant) -> ClientAction,
    {
        let mut out = Vec::new();
        while let Some(at) = next() {
            if at > t0 + until {
                break;
            }
            let a = fire(at);
            if a != ClientAction::None {
                out.push(((at - t0).as_millis(), a));
            }
        }
        out
    }

    #[test]
    fn invite_timer_a_doubles_and_timer_b_times_out_at_64_t1() {
        let t0 = Instant::now();
        let mut tx = InviteClient::start(t0, TimerConfig::default());
        let fired = std::cell::RefCell::new(&mut tx);
        let log = run_until(
            t0,
            Duration::from_secs(40),
            || fired.borrow().next_deadline(),
            |at| fired.borrow_mut().on_timer(at),
        );
        let retransmits: Vec<u128> =
            log.iter().filter(|(_, a)| *a == ClientAction::Retransmit).map(|(t, _)| *t).collect();
        assert_eq!(retransmits, [500, 1500, 3500, 7500, 15500, 31500]);
        assert_eq!(log.last(), Some(&(32000, ClientAction::Timeout)));
        assert_eq!(tx.state(), InviteClientState::Terminated);
    }

    #[test]
    fn invite_provisional_stops_retransmissions_and_timer_c_cancels() {
        let t0 = Instant::now();
        let timers = TimerConfig::default();
        let mut tx = InviteClient::start(t0, timers);
        assert_eq!(tx.on_response(t0 + ms(100), 180), ClientAction::PassUp);
        assert_eq!(tx.state(), InviteClientState::Proceeding);
        // Only Timer C remains: 180 s after the provisional.
        assert_eq!(tx.next_deadline(), Some(t0 + ms(100) + timers.timer_c));
        let at = tx.next_deadline().unwrap();
        assert_eq!(tx.on_timer(at), ClientAction::SendCancel);
        // No final response within 64·T1 after the CANCEL: the branch times out.
        let wait = tx.next_deadline().unwrap();
        assert_eq!(wait - at, timers.t1x64());
        assert_eq!(tx.on_timer(wait), ClientAction::Timeout);
        assert_eq!(tx.state(), InviteClientState::Terminated);
    }

    #[test]
    fn invite_non_2xx_is_acked_and_retransmissions_absorbed_until_timer_d() {
        let t0 = Instant::now();
        let mut tx = InviteClient::start(t0, TimerConfig::default());
        assert_eq!(tx.on_response(t0 + ms(10), 486), ClientAction::PassUpAndAck);
        assert_eq!(tx.on_response(t0 + ms(20), 486), ClientAction::ResendAck);
        assert_eq!(tx.on_response(t0 + ms(30), 180), ClientAction::None);
        assert_eq!(tx.next_deadline(), Some(t0 + ms(10) + Duration::from_secs(32)));
        assert_eq!(tx.on_timer(t0 + Duration::from_secs(33)), ClientAction::None);
        assert_eq!(tx.state(), InviteClientState::Terminated);
    }

    #[test]
    fn invite_2xx_retransmissions_pass_up_while_accepted() {
        let t0 = Instant::now();
        let mut tx = InviteClient::start(t0, TimerConfig::default());
        assert_eq!(tx.on_response(t0, 200), ClientAction::PassUp);
        assert_eq!(tx.state(), InviteClientState::Accepted);
        assert_eq!(tx.on_response(t0 + ms(500), 200), ClientAction::PassUp);
        assert_eq!(tx.on_response(t0 + ms(600), 503), ClientAction::None);
        assert_eq!(tx.next_deadline(), Some(t0 + Duration::from_secs(32)));
    }

    #[test]
    fn non_invite_timer_e_caps_at_t2_and_timer_f_times_out() {
        let t0 = Instant::now();
        let mut tx = NonInviteClient::start(t0, TimerConfig::default());
        let cell = std::cell::RefCell::new(&mut tx);
        let log = run_until(
            t0,
            Duration::from_secs(40),
            || cell.borrow().next_deadline(),
            |at| cell.borrow_mut().on_timer(at),
        );
        let retransmits: Vec<u128> =
            log.iter().filter(|(_, a)| *a == ClientAction::Retransmit).map(|(t, _)| *t).collect();
        assert_eq!(&retransmits[..6], [500, 1500, 3500, 7500, 11500, 15500]);
        assert_eq!(log.last(), Some(&(32000, ClientAction::Timeout)));
    }

    #[test]
    fn non_invite_final_then_timer_k() {
        let t0 = Instant::now();
        let timers = TimerConfig::default();
        let mut tx = NonInviteClient::start(t0, timers);
        assert_eq!(tx.on_response(t0 + ms(5), 100), ClientAction::PassUp);
        assert_eq!(tx.on_response(t0 + ms(6), 200), ClientAction::PassUp);
        assert_eq!(tx.on_response(t0 + ms(7), 200), ClientAction::None);
        assert_eq!(tx.next_deadline(), Some(t0 + ms(6) + timers.t4));
        assert_eq!(tx.on_timer(t0 + ms(6) + timers.t4), ClientAction::None);
        assert_eq!(tx.state(), NonInviteClientState::Terminated);
    }
}
