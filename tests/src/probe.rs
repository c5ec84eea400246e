//! Single INVITE probes: what sipedge answers first for a number, and how long a change takes
//! to show in those answers.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// How long one probe waits for an answer.
const PROBE_WAIT: Duration = Duration::from_millis(300);
/// Pause between probes while waiting for a change: every INVITE counts against the trunk's
/// calls per second, so waiting must not become a flood.
const PROBE_INTERVAL: Duration = Duration::from_millis(20);

/// The status of the first answer (100 Trying or a final response) to an INVITE for `number`
/// sent to `edge` from loopback; `n` makes the branch and Call-ID unique. `None`: no answer.
pub fn probe(edge: SocketAddr, number: &str, n: u32) -> Option<u16> {
    let s = UdpSocket::bind("127.0.0.1:0").ok()?;
    s.set_read_timeout(Some(PROBE_WAIT)).ok()?;
    let me = s.local_addr().ok()?;
    let msg = format!(
        "INVITE sip:{number}@{edge} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKlive{n}x{}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:probe@{me}>;tag=p{n}\r\nTo: <sip:{number}@{edge}>\r\n\
         Call-ID: live-{n}-{}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
        me.port(),
        me.port()
    );
    s.send_to(msg.as_bytes(), edge).ok()?;
    let mut buf = [0u8; 4096];
    let (len, _) = s.recv_from(&mut buf).ok()?;
    std::str::from_utf8(&buf[..len]).ok()?.get(8..11)?.parse().ok()
}

/// Probes until the answer for `number` is `want`; returns the time it took, or panics after
/// `deadline`.
pub fn until_status(edge: SocketAddr, number: &str, want: u16, deadline: Duration) -> Duration {
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < deadline {
        n += 1;
        if probe(edge, number, n) == Some(want) {
            return start.elapsed();
        }
        std::thread::sleep(PROBE_INTERVAL);
    }
    panic!("{number} did not answer {want} within {deadline:?}");
}
