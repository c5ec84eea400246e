//! Target health probes on the data plane's sockets: worker 0 sends an OPTIONS to each URI the
//! tracker says is due; answers carry our probe branch and go back to the tracker, which
//! publishes up/down to the flags routing reads.

use super::*;
use crate::route::{HealthTracker, ProbeOutcome, UriId};
use crate::sip::HeaderKind;

/// Prefix of the branch of our OPTIONS probes.
pub(super) const PROBE_BRANCH_PREFIX: &[u8] = b"z9hG4bK-hp-";

impl Engine {
    /// Sends the probes that are due (worker 0's tick).
    pub(super) fn run_health(&self, now: Instant, w: &mut WorkerState, sink: &mut dyn Sink) {
        let Some(settings) = self.config.health else { return };
        let mut health = lock(&self.health);
        // Loaded under the lock: the tracker's URI ids are this generation's.
        let plan = self.plan.load();
        let tracker = health
            .get_or_insert_with(|| HealthTracker::new(settings, Arc::clone(plan.router.up_flags()), now));
        w.probe_due.clear();
        w.transitions.clear();
        tracker.due(now, &mut w.probe_due, &mut w.transitions);
        for &uri in &w.probe_due {
            w.tags += 1;
            let probe = tracker.probe_id(uri).unwrap_or_default();
            let sent = plan.target_addr(uri).is_some_and(|dest| {
                let listen = w.locals.iter().position(|l| l.as_ref().is_some_and(|l| l.addr.is_ipv4() == dest.is_ipv4()));
                let Some(local) = listen.and_then(|i| w.locals[i].as_ref()) else { return false };
                let seq = w.tags;
                sink.send_with(dest, listen.unwrap_or_default(), &mut |buf| {
                    let n = fixed_fmt(
                        buf,
                        format_args!(
                            "OPTIONS sip:{dest} SIP/2.0\r\n\
                             Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK-hp-{uri:x}-{probe:x}-{salt:x};rport\r\n\
                             Max-Forwards: 70\r\n\
                             From: <sip:sipedge@{host}:{port}>;tag=hp{seq:x}\r\n\
                             To: <sip:{dest}>\r\n\
                             Call-ID: hp-{uri:x}-{seq:x}-{salt:x}\r\n\
                             CSeq: {seq} OPTIONS\r\n\
                             Content-Length: 0\r\n\r\n",
                            host = local.host,
                            port = local.addr.port(),
                            uri = uri.index(),
                            salt = self.salt,
                        ),
                    )
                    .len();
                    (n > 0).then_some(n)
                })
            });
            if !sent {
                tracker.on_result(uri, now, ProbeOutcome::TransportError);
            }
        }
    }

    /// An answer to one of our probes (`true`), or not a probe's (`false`).
    pub(super) fn on_probe_response(&self, branch: &[u8], msg: &SipMessage<'_>, now: Instant) -> bool {
        let Some(rest) = branch.strip_prefix(PROBE_BRANCH_PREFIX) else { return false };
        let mut fields = rest.split(|&b| b == b'-');
        let hex = |f: Option<&[u8]>| {
            f.and_then(|f| std::str::from_utf8(f).ok()).and_then(|f| u64::from_str_radix(f, 16).ok())
        };
        let (uri, probe, salt) = (hex(fields.next()), hex(fields.next()), hex(fields.next()));
        let (Some(uri), Some(probe), Some(salt), Some(status)) = (uri, probe, salt, msg.status()) else {
            return true;
        };
        let Ok(uri) = u32::try_from(uri) else { return true };
        if salt != self.salt || status < 200 {
            return true;
        }
        let retry_after = retry_after(msg);
        if let Some(tracker) = lock(&self.health).as_mut()
            // The probe may have left under an earlier generation: its id finds the URI.
            && let Some(uri) = tracker.probe_uri(probe, UriId(uri))
        {
            tracker.on_result(uri, now, ProbeOutcome::Response { status, retry_after });
        }
        true
    }
}

impl Engine {
    /// A target answered a call 503: with Retry-After it is not offered calls for that long —
    /// through the health tracker (as `[health] retry_after_503` says) when probing is on,
    /// else through the pause list that worker 0's tick clears. `uri` is an id of `routed_by`,
    /// the generation that routed the call; the pause applies to the same URI in the current one.
    pub(super) fn on_target_503(&self, routed_by: &Plan, uri: UriId, msg: &SipMessage<'_>, now: Instant) {
        let Some(retry_after) = retry_after(msg) else { return };
        let Some(text) = routed_by.router.targets().uri(uri) else { return };
        // Both locks are taken before the current generation is loaded, as `install` does.
        let mut health = lock(&self.health);
        let current = self.plan.load();
        let Some(uri) = current.router.targets().uri_id(text) else { return };
        if let Some(tracker) = health.as_mut() {
            tracker.on_result(
                uri,
                now,
                ProbeOutcome::Response { status: 503, retry_after: Some(retry_after) },
            );
            return;
        }
        let until = now + retry_after.min(MAX_RETRY_AFTER);
        let mut paused = lock(&self.paused);
        match paused.iter_mut().find(|(u, _)| *u == uri) {
            Some(entry) => entry.1 = entry.1.max(until),
            None => paused.push((uri, until)),
        }
        current.router.up_flags().set(uri, false);
        tracing::info!(uri = text, ?retry_after, "target paused by 503");
    }

    /// Gives paused targets back to routing once their Retry-After has passed (worker 0).
    pub(super) fn resume_paused(&self, now: Instant) {
        let mut paused = lock(&self.paused);
        let current = self.plan.load();
        paused.retain(|&(uri, until)| {
            let keep = until > now;
            if !keep {
                current.router.up_flags().set(uri, true);
            }
            keep
        });
    }
}

/// A Retry-After header's seconds (comments and parameters ignored).
fn retry_after(msg: &SipMessage<'_>) -> Option<Duration> {
    let v = msg.header_value(HeaderKind::RetryAfter)?;
    let digits = v.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(v.get(..digits)?).ok()?.parse::<u64>().ok().map(Duration::from_secs)
}
