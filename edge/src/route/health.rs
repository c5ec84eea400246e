//! Target health: OPTIONS probes on a fixed interval, a URI down after `down_after`
//! consecutive failures and up again after `up_after` consecutive successes.
//!
//! The tracker does no I/O and reads no clock: the owner calls [`HealthTracker::due`] with
//! `now` to learn which URIs to probe (it also turns overdue probes into timeouts), and
//! [`HealthTracker::on_result`] with each answer. It is therefore tested on virtual time, and
//! detection is deterministic: a URI that stops answering is down `down_after` probes later,
//! i.e. within `down_after × interval` (+ the probe timeout). Transitions are logged and counted,
//! and published to the [`UpFlags`] that routing reads.
//!
//! When the targets change, [`HealthTracker::carried_over`] moves every URI's state (up or down,
//! counts, the probe in flight) to the new URI ids by the URI's text. Each probe has an id
//! ([`HealthTracker::probe_id`]) that survives this, so an answer that was on its way during a
//! change still counts for its URI.

use std::sync::Arc;
use std::time::{Duration, Instant};

use control::config::{HealthConfig, RetryAfter503};

use super::targets::{TargetSets, UpFlags, UriId};

/// Longest `Retry-After` honoured in `pause` mode, in seconds.
pub const MAX_RETRY_AFTER_SECS: u64 = 3_600;

/// Probe settings (from `[health]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthSettings {
    /// Time between probes of one URI.
    pub interval: Duration,
    /// Time a probe may wait for a final answer.
    pub timeout: Duration,
    /// Consecutive failures that take a URI down.
    pub down_after: u32,
    /// Consecutive successes that bring it back.
    pub up_after: u32,
    /// How a 503 with Retry-After counts.
    pub retry_after_503: RetryAfter503,
}

impl From<&HealthConfig> for HealthSettings {
    fn from(c: &HealthConfig) -> Self {
        Self {
            interval: Duration::from_secs(u64::from(c.interval_secs)),
            timeout: Duration::from_millis(u64::from(c.timeout_ms)),
            down_after: c.down_after.max(1),
            up_after: c.up_after.max(1),
            retry_after_503: c.retry_after_503,
        }
    }
}

/// What became of one probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// A SIP response arrived (1xx are provisional and change nothing).
    Response {
        /// Status code.
        status: u16,
        /// The `Retry-After` value, if present.
        retry_after: Option<Duration>,
    },
    /// No final response within the timeout (the tracker also decides this itself in `due`).
    Timeout,
    /// The probe could not be sent or the transport reported an error (ICMP unreachable, reset).
    TransportError,
}

/// A URI changed state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// The URI.
    pub uri: UriId,
    /// Its new state.
    pub up: bool,
}

/// Counters of the tracker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HealthStats {
    /// Probes handed out to send.
    pub probes: u64,
    /// Probes that got no final answer in time.
    pub timeouts: u64,
    /// Up → down transitions.
    pub went_down: u64,
    /// Down → up transitions.
    pub went_up: u64,
}

#[derive(Debug, Clone, Copy)]
struct UriState {
    up: bool,
    failures: u32,
    successes: u32,
    next_probe: Instant,
    in_flight: Option<Instant>,
    /// Id of the last probe handed out for this URI.
    probe: u64,
}

/// The health state machine of every target URI.
#[derive(Debug)]
pub struct HealthTracker {
    settings: HealthSettings,
    uris: Vec<UriState>,
    flags: Arc<UpFlags>,
    stats: HealthStats,
}

enum Verdict {
    Success,
    Failure,
    Pause(Duration),
}

impl HealthTracker {
    /// Tracks every URI of `flags` (all up at first). First probes are spread evenly over one
    /// interval from `now`, so a thousand targets do not get probed in the same millisecond.
    pub fn new(settings: HealthSettings, flags: Arc<UpFlags>, now: Instant) -> Self {
        let n = flags.len().max(1) as u32;
        let uris = (0..flags.len())
            .map(|i| UriState {
                up: true,
                failures: 0,
                successes: 0,
                next_probe: now + settings.interval / n * i as u32,
                in_flight: None,
                probe: 0,
            })
            .collect();
        Self { settings, uris, flags, stats: HealthStats::default() }
    }

    /// The tracker for changed targets: `new` with its `flags`, from this tracker over `old`.
    /// A URI both know keeps its state (published to `flags`); a new URI starts up, probed at
    /// `now`.
    pub fn carried_over(self, old: &TargetSets, new: &TargetSets, flags: Arc<UpFlags>, now: Instant) -> Self {
        let uris = new
            .uris()
            .iter()
            .enumerate()
            .map(|(i, text)| {
                let kept = old.uri_id(text).and_then(|u| self.uris.get(u.index())).copied();
                let state = kept.unwrap_or(UriState {
                    up: true,
                    failures: 0,
                    successes: 0,
                    next_probe: now,
                    in_flight: None,
                    probe: 0,
                });
                if let Ok(i) = u32::try_from(i) {
                    flags.set(UriId(i), state.up);
                }
                state
            })
            .collect();
        Self { settings: self.settings, uris, flags, stats: self.stats }
    }

    /// The id of the probe in flight for `uri` (to carry in the probe's branch).
    pub fn probe_id(&self, uri: UriId) -> Option<u64> {
        let s = self.uris.get(uri.index())?;
        s.in_flight.map(|_| s.probe)
    }

    /// The URI whose probe in flight has id `probe`: `hint` (the id the probe was sent with)
    /// when it still is that one, else found among all (the targets changed meanwhile).
    pub fn probe_uri(&self, probe: u64, hint: UriId) -> Option<UriId> {
        let is = |s: &UriState| s.in_flight.is_some() && s.probe == probe;
        if self.uris.get(hint.index()).is_some_and(is) {
            return Some(hint);
        }
        self.uris.iter().position(is).and_then(|i| u32::try_from(i).ok()).map(UriId)
    }

    /// Turns overdue probes into timeouts, then appends to `out` the URIs to probe now.
    /// Returns the transitions the timeouts caused in `transitions`.
    pub fn due(&mut self, now: Instant, out: &mut Vec<UriId>, transitions: &mut Vec<Transition>) {
        for i in 0..self.uris.len() {
            let uri = UriId(i as u32);
            let timed_out = self.uris[i].in_flight.is_some_and(|sent| now >= sent + self.settings.timeout);
            if timed_out {
                self.stats.timeouts += 1;
                self.uris[i].in_flight = None;
                transitions.extend(self.record(uri, Verdict::Failure, now));
            }
            let s = &mut self.uris[i];
            if s.in_flight.is_none() && now >= s.next_probe {
                s.in_flight = Some(now);
                s.next_probe = now + self.settings.interval;
                self.stats.probes += 1;
                s.probe = self.stats.probes;
                out.push(uri);
            }
        }
    }

    /// Records the answer to the probe in flight for `uri`; answers with no probe in flight
    /// (late, after their timeout) and provisional responses are ignored.
    pub fn on_result(&mut self, uri: UriId, now: Instant, outcome: ProbeOutcome) -> Option<Transition> {
        let state = self.uris.get_mut(uri.index())?;
        state.in_flight?;
        let verdict = match outcome {
            ProbeOutcome::Response { status: 100..=199, .. } => return None,
            ProbeOutcome::Response { status: 503, retry_after: Some(after) } => {
                match self.settings.retry_after_503 {
                    RetryAfter503::Failure => Verdict::Failure,
                    RetryAfter503::Success => Verdict::Success,
                    RetryAfter503::Pause => {
                        Verdict::Pause(after.min(Duration::from_secs(MAX_RETRY_AFTER_SECS)))
                    }
                }
            }
            ProbeOutcome::Response { status: 500..=599, .. } => Verdict::Failure,
            ProbeOutcome::Response { .. } => Verdict::Success,
            ProbeOutcome::Timeout => {
                self.stats.timeouts += 1;
                Verdict::Failure
            }
            ProbeOutcome::TransportError => Verdict::Failure,
        };
        state.in_flight = None;
        self.record(uri, verdict, now)
    }

    fn record(&mut self, uri: UriId, verdict: Verdict, now: Instant) -> Option<Transition> {
        let s = self.uris.get_mut(uri.index())?;
        let went = match verdict {
            Verdict::Success => {
                s.failures = 0;
                s.successes = s.successes.saturating_add(1);
                (!s.up && s.successes >= self.settings.up_after).then_some(true)
            }
            Verdict::Failure => {
                s.successes = 0;
                s.failures = s.failures.saturating_add(1);
                (s.up && s.failures >= self.settings.down_after).then_some(false)
            }
            Verdict::Pause(after) => {
                s.successes = 0;
                s.failures = s.failures.saturating_add(1);
                s.next_probe = s.next_probe.max(now + after);
                s.up.then_some(false)
            }
        }?;
        s.up = went;
        self.flags.set(uri, went);
        if went {
            self.stats.went_up += 1;
            tracing::info!(uri = uri.index(), "target URI up");
        } else {
            self.stats.went_down += 1;
            tracing::warn!(uri = uri.index(), failures = s.failures, "target URI down");
        }
        Some(Transition { uri, up: went })
    }

    /// The earliest time something is due (a probe or a timeout): when to call `due` next.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.uris
            .iter()
            .map(|s| match s.in_flight {
                Some(sent) => sent + self.settings.timeout,
                None => s.next_probe,
            })
            .min()
    }

    /// Whether a URI is up.
    pub fn is_up(&self, uri: UriId) -> bool {
        self.uris.get(uri.index()).is_some_and(|s| s.up)
    }

    /// Counters.
    pub fn stats(&self) -> HealthStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn settings(mode: RetryAfter503) -> HealthSettings {
        HealthSettings {
            interval: 30 * SECOND,
            timeout: 5 * SECOND,
            down_after: 3,
            up_after: 2,
            retry_after_503: mode,
        }
    }

    /// A tracker of one URI and a clock starting at `t0`.
    fn one(mode: RetryAfter503) -> (HealthTracker, Arc<UpFlags>, Instant) {
        let flags = Arc::new(UpFlags::all_up(1));
        let t0 = Instant::now();
        (HealthTracker::new(settings(mode), flags.clone(), t0), flags, t0)
    }

    const URI: UriId = UriId(0);
    const OK: ProbeOutcome = ProbeOutcome::Response { status: 200, retry_after: None };

    /// Runs the tracker second by second until `end`, answering each probe with `answer(now)`
    /// (`None`: no answer). Returns the times of transitions.
    fn run(
        tracker: &mut HealthTracker,
        t0: Instant,
        end_secs: u64,
        answer: impl Fn(u64) -> Option<ProbeOutcome>,
    ) -> Vec<(u64, bool)> {
        let mut seen = Vec::new();
        let (mut probes, mut transitions) = (Vec::new(), Vec::new());
        for s in 0..=end_secs {
            let now = t0 + Duration::from_secs(s);
            probes.clear();
            transitions.clear();
            tracker.due(now, &mut probes, &mut transitions);
            seen.extend(transitions.iter().map(|t| (s, t.up)));
            for &uri in &probes {
                if let Some(outcome) = answer(s) {
                    seen.extend(tracker.on_result(uri, now, outcome).map(|t| (s, t.up)));
                }
            }
        }
        seen
    }

    #[test]
    fn down_after_n_timeouts_up_after_m_successes() {
        let (mut tracker, flags, t0) = one(RetryAfter503::Failure);
        // Probes at 0, 30, 60, …; the target dies at 45 s and returns at 200 s.
        let seen = run(&mut tracker, t0, 300, |s| (!(45..200).contains(&s)).then_some(OK));
        // Unanswered probes at 60, 90, 120 time out 5 s later: down at 125 s = 3 × 30 s after
        // the first lost probe, + the timeout. Successes at 210 and 240: up at 240 s.
        assert_eq!(seen, [(125, false), (240, true)]);
        assert!(flags.is_up(URI));
        let stats = tracker.stats();
        assert_eq!((stats.went_down, stats.went_up, stats.timeouts, stats.probes), (1, 1, 5, 11));
    }

    #[test]
    fn failures_of_every_kind_count_and_a_success_resets_them() {
        let (mut tracker, flags, t0) = one(RetryAfter503::Failure);
        let t = |s: u64| t0 + Duration::from_secs(s);
        let mut probes = Vec::new();
        let mut tr = Vec::new();
        let mut probe = |tracker: &mut HealthTracker, s: u64, outcome: ProbeOutcome| {
            probes.clear();
            tracker.due(t(s), &mut probes, &mut tr);
            assert_eq!(probes, [URI], "a probe is due at {s}");
            tracker.on_result(URI, t(s), outcome)
        };
        let e500 = ProbeOutcome::Response { status: 500, retry_after: None };
        let e503 = ProbeOutcome::Response { status: 503, retry_after: None };
        assert_eq!(probe(&mut tracker, 0, e500), None);
        assert_eq!(probe(&mut tracker, 30, ProbeOutcome::TransportError), None);
        // 404 and 405 mean the UA is alive: a success, which resets the failures.
        assert_eq!(probe(&mut tracker, 60, ProbeOutcome::Response { status: 405, retry_after: None }), None);
        assert_eq!(probe(&mut tracker, 90, e503), None);
        assert_eq!(probe(&mut tracker, 120, ProbeOutcome::Timeout), None);
        assert_eq!(probe(&mut tracker, 150, e500), Some(Transition { uri: URI, up: false }));
        assert!(!flags.is_up(URI));
        // Provisional answers and answers to no probe change nothing.
        assert_eq!(tracker.on_result(URI, t(151), OK), None);
        assert_eq!(probe(&mut tracker, 180, ProbeOutcome::Response { status: 100, retry_after: None }), None);
        assert_eq!(tracker.on_result(URI, t(181), OK), None);
        assert_eq!(tracker.on_result(UriId(9), t(181), OK), None);
        assert!(!tracker.is_up(URI));
    }

    #[test]
    fn retry_after_503_modes() {
        let busy = ProbeOutcome::Response { status: 503, retry_after: Some(120 * SECOND) };
        let (mut tracker, _, t0) = one(RetryAfter503::Success);
        assert_eq!(run(&mut tracker, t0, 200, |_| Some(busy)), []);
        let (mut tracker, _, t0) = one(RetryAfter503::Failure);
        assert_eq!(run(&mut tracker, t0, 200, |_| Some(busy)), [(60, false)]);
        // Pause: down at once, not probed for 120 s, then two successes bring it back.
        let (mut tracker, _, t0) = one(RetryAfter503::Pause);
        let seen = run(&mut tracker, t0, 400, |s| Some(if s == 0 { busy } else { OK }));
        assert_eq!(seen, [(0, false), (150, true)]);
        // Probes at 0, then 120, 150, …, 390.
        assert_eq!(tracker.stats().probes, 11);
    }

    #[test]
    fn first_probes_are_spread_over_one_interval() {
        let flags = Arc::new(UpFlags::all_up(3));
        let t0 = Instant::now();
        let mut tracker = HealthTracker::new(settings(RetryAfter503::Failure), flags, t0);
        let mut due_at = Vec::new();
        for s in 0..30 {
            let mut probes = Vec::new();
            tracker.due(t0 + Duration::from_secs(s), &mut probes, &mut Vec::new());
            due_at.extend(probes.iter().map(|u| (s, u.index())));
        }
        assert_eq!(due_at, [(0, 0), (10, 1), (20, 2)]);
        // Nobody answered: each probe timed out 5 s after it left; URI 0 is next, at 30 s.
        assert_eq!(tracker.stats().timeouts, 3);
        assert_eq!(tracker.next_deadline(), Some(t0 + 30 * SECOND));
    }

    #[test]
    fn state_and_probes_in_flight_carry_over_by_uri_text() {
        use control::config::Config;
        let sets = |text: &str| TargetSets::from_config(&Config::from_toml(text).unwrap().targets).unwrap();
        let old = sets("[[target]]\nname = \"a\"\nuris = [\"sip:10.0.0.1\", \"sip:10.0.0.2\"]\n");
        let flags = Arc::new(UpFlags::all_up(2));
        let t0 = Instant::now();
        let mut s = settings(RetryAfter503::Failure);
        s.down_after = 1;
        let mut tracker = HealthTracker::new(s, flags, t0);
        let (mut probes, mut tr) = (Vec::new(), Vec::new());
        tracker.due(t0, &mut probes, &mut tr);
        assert_eq!(probes, [UriId(0)]);
        tracker.on_result(UriId(0), t0, ProbeOutcome::Timeout);
        tracker.due(t0 + 15 * SECOND, &mut probes, &mut tr);
        let in_flight = tracker.probe_id(UriId(1)).unwrap();
        // 10.0.0.1 (down) and 10.0.0.2 (probe in flight) move; 10.0.0.3 is new.
        let new =
            sets("[[target]]\nname = \"a\"\nuris = [\"sip:10.0.0.2\", \"sip:10.0.0.3\", \"sip:10.0.0.1\"]\n");
        let new_flags = Arc::new(UpFlags::all_up(3));
        let now = t0 + 16 * SECOND;
        let mut tracker = tracker.carried_over(&old, &new, new_flags.clone(), now);
        assert_eq!((new_flags.is_up(UriId(0)), new_flags.is_up(UriId(2))), (true, false));
        // The answer to the probe sent before the change (with the old id 1 in its branch)
        // finds its URI under its new id.
        assert_eq!(tracker.probe_uri(in_flight, UriId(1)), Some(UriId(0)));
        assert_eq!(tracker.probe_uri(in_flight + 1, UriId(1)), None);
        assert_eq!(tracker.on_result(UriId(0), now, OK), None);
        assert_eq!(tracker.probe_id(UriId(0)), None, "answered");
        probes.clear();
        tracker.due(now, &mut probes, &mut tr);
        assert_eq!(probes, [UriId(1)], "the new URI is probed at once");
        assert!(!tracker.is_up(UriId(2)), "still down");
    }
}
