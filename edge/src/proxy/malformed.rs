//! A 400 for a request that does not parse (RFC 3261 §8.2.6): when the lines a response must
//! echo (Via, From, To, Call-ID, CSeq) can still be found, they are copied as they came under
//! `SIP/2.0 400 {reason}`. Responses, and requests too broken to answer, are only dropped.

/// Most header lines scanned.
const MAX_LINES: usize = 128;

/// Header names (long and compact) whose lines a response echoes.
fn echoed(name: &[u8]) -> Option<usize> {
    const NAMES: [(&[u8], &[u8]); 5] =
        [(b"via", b"v"), (b"from", b"f"), (b"to", b"t"), (b"call-id", b"i"), (b"cseq", b"cseq")];
    NAMES.iter().position(|(long, short)| name.eq_ignore_ascii_case(long) || name.eq_ignore_ascii_case(short))
}

/// Writes the 400 into `out`; `None` when `payload` is not a request or lacks a needed line.
pub(crate) fn bad_request(payload: &[u8], reason: &str, out: &mut [u8]) -> Option<usize> {
    let mut lines = payload.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let start = lines.next()?;
    if start.len() < 8 || start.get(..4)?.eq_ignore_ascii_case(b"SIP/") || !start.ends_with(b"SIP/2.0") {
        return None;
    }
    let mut w = Writer { out, len: 0 };
    w.put(b"SIP/2.0 400 ")?;
    w.put(sanitise(reason).as_bytes())?;
    w.put(b"\r\n")?;
    let mut seen = [false; 5];
    let mut copying = false;
    for line in lines.take(MAX_LINES) {
        if line.is_empty() {
            break;
        }
        if matches!(line.first(), Some(b' ' | b'\t')) {
            // A folded continuation belongs to the line before it.
            if copying {
                w.put(line)?;
                w.put(b"\r\n")?;
            }
            continue;
        }
        let name = line.split(|&b| b == b':').next().unwrap_or_default();
        let name = name.strip_suffix(b" ").unwrap_or(name);
        copying = match echoed(name) {
            Some(i) => {
                seen[i] = true;
                true
            }
            None => false,
        };
        if copying {
            w.put(line)?;
            w.put(b"\r\n")?;
        }
    }
    if !seen.iter().all(|&s| s) {
        return None;
    }
    w.put(b"Content-Length: 0\r\n\r\n")?;
    Some(w.len)
}

/// A reason phrase made of printable ASCII only.
fn sanitise(reason: &str) -> &str {
    if reason.bytes().all(|b| (0x20..0x7f).contains(&b)) { reason } else { "Bad Request" }
}

struct Writer<'a> {
    out: &'a mut [u8],
    len: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) -> Option<()> {
        self.out.get_mut(self.len..self.len + bytes.len())?.copy_from_slice(bytes);
        self.len += bytes.len();
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_the_needed_lines_only() {
        let req =
            b"INVITE sip:+15551230000@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.2;branch=z9hG4bKx\r\n \
                    ;rport\r\nf: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: abc\r\nCSeq: 1 INVITE\r\n\
                    Content-Length: 999\r\nX-Junk: yes\r\n\r\nbody";
        let mut out = [0u8; 1024];
        let n = bad_request(req, "Content-Length beyond the datagram", &mut out).unwrap();
        let text = std::str::from_utf8(&out[..n]).unwrap();
        assert!(text.starts_with("SIP/2.0 400 Content-Length beyond the datagram\r\n"));
        assert!(text.contains("Via: SIP/2.0/UDP 192.0.2.2;branch=z9hG4bKx\r\n ;rport\r\n"));
        assert!(text.contains("f: <sip:a@b>;tag=1\r\n"));
        assert!(!text.contains("X-Junk"));
        assert!(text.ends_with("Content-Length: 0\r\n\r\n"));
    }

    #[test]
    fn responses_and_unanswerable_requests_get_nothing() {
        let mut out = [0u8; 1024];
        assert_eq!(bad_request(b"SIP/2.0 200 OK\r\nVia: x\r\n\r\n", "r", &mut out), None);
        assert_eq!(bad_request(b"INVITE sip:x SIP/2.0\r\nVia: x\r\n\r\n", "r", &mut out), None);
        assert_eq!(bad_request(b"\x00\x01garbage", "r", &mut out), None);
        assert_eq!(bad_request(b"", "r", &mut out), None);
    }
}
