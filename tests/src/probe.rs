//! INVITE probes: what sipedge answers for a number, and how long a change takes to show in
//! those answers.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// How long a probe waits for each answer (on loopback they take well under a millisecond).
const PROBE_WAIT: Duration = Duration::from_millis(300);
/// Pause between probes while waiting for a change: every INVITE counts against the trunk's
/// calls per second, so waiting must not become a flood.
const PROBE_INTERVAL: Duration = Duration::from_millis(20);

/// The statuses of the first `max` answers (100 Trying, then the next) to an INVITE for `number`
/// sent to `edge` from `ip`; `n` makes the branch and Call-ID unique. Empty: no answer.
pub fn answers(ip: &str, edge: SocketAddr, number: &str, n: u32, max: usize) -> Vec<u16> {
    let Ok(s) = UdpSocket::bind((ip, 0)) else { return Vec::new() };
    let Ok(me) = s.local_addr() else { return Vec::new() };
    if s.set_read_timeout(Some(PROBE_WAIT)).is_err() {
        return Vec::new();
    }
    let msg = format!(
        "INVITE sip:{number}@{edge} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKprobe{n}x{port}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:probe@{me}>;tag=p{n}\r\nTo: <sip:{number}@{edge}>\r\n\
         Call-ID: probe-{n}-{port}\r\nCSeq: 1 INVITE\r\nContact: <sip:probe@{me}>\r\nContent-Length: 0\r\n\r\n",
        port = me.port()
    );
    if s.send_to(msg.as_bytes(), edge).is_err() {
        return Vec::new();
    }
    let mut buf = [0u8; 4096];
    let mut statuses = Vec::new();
    while statuses.len() < max {
        let Ok((len, _)) = s.recv_from(&mut buf) else { break };
        let status: Option<u16> =
            std::str::from_utf8(&buf[..len]).ok().and_then(|m| m.get(8..11)?.parse().ok());
        statuses.extend(status);
    }
    statuses
}

/// The status of the first answer to an INVITE for `number` sent from loopback.
pub fn probe(edge: SocketAddr, number: &str, n: u32) -> Option<u16> {
    answers("127.0.0.1", edge, number, n, 1).first().copied()
}

/// Probes (paced) until `done(answers)`; returns the time it took, or panics after `deadline`
/// naming `what`.
pub fn until_answers(
    what: &str,
    deadline: Duration,
    mut probe: impl FnMut(u32) -> Vec<u16>,
    done: impl Fn(&[u16]) -> bool,
) -> Duration {
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < deadline {
        n += 1;
        if done(&probe(n)) {
            return start.elapsed();
        }
        std::thread::sleep(PROBE_INTERVAL);
    }
    panic!("{what}: not visible within {deadline:?}");
}

/// Probes from loopback until the first answer for `number` is `want`; returns the time it took.
pub fn until_status(edge: SocketAddr, number: &str, want: u16, deadline: Duration) -> Duration {
    until_answers(
        &format!("{number} answering {want}"),
        deadline,
        |n| answers("127.0.0.1", edge, number, n, 1),
        |a| a.first() == Some(&want),
    )
}
