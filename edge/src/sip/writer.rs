//! Writing what a proxy sends, into a caller-provided buffer, without allocating. Bytes the
//! operation does not have to change are copied as they came (names in their received spelling,
//! folds, unknown headers, body), so a forwarded message differs from the received one only
//! where it must.

use super::error::WriteError;
use super::header::HeaderKind;
use super::list::split_comma;
use super::{HeaderIndexEntry, SipMessage, StartLine, chars::trim_lws};

/// The Via this proxy inserts: `SIP/2.0/{transport} {host}:{port};branch={branch}[;rport]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViaSpec<'a> {
    /// Transport token (`UDP`, `TCP`, `TLS`).
    pub transport: &'a str,
    /// Our host (name or address; an IPv6 address in brackets).
    pub host: &'a str,
    /// Our port.
    pub port: u16,
    /// The branch, magic cookie included (`z9hG4bK...`).
    pub branch: &'a str,
    /// Add an empty `rport` parameter (RFC 3581).
    pub rport: bool,
}

/// The Record-Route this proxy adds: `<sip:{host}:{port};lr>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRouteSpec<'a> {
    /// Our host (an IPv6 address in brackets).
    pub host: &'a str,
    /// Our port.
    pub port: u16,
}

/// How to forward a request; see [`forward_request`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardOptions<'a> {
    /// The Via to insert on top.
    pub via: ViaSpec<'a>,
    /// A new Request-URI, or `None` to keep the received one.
    pub request_uri: Option<&'a [u8]>,
    /// Remove the first Route value (loose routing, when the top Route is this proxy).
    pub pop_route: bool,
    /// A Record-Route to add on top of any others.
    pub record_route: Option<RecordRouteSpec<'a>>,
}

/// Max-Forwards of a request that came without one, after this hop (RFC 3261 §16.6 step 3:
/// 70, decremented).
pub const MAX_FORWARDS_INSERTED: u8 = 69;
/// Max-Forwards of requests the proxy originates (CANCEL, ACK), RFC 3261 §8.1.1.6.
pub const MAX_FORWARDS_INITIAL: u8 = 70;

/// Forwards a request (RFC 3261 §16.6): our Via on top, Max-Forwards decremented (or inserted
/// as 69), the Request-URI optionally rewritten, the first Route value optionally removed, a
/// Record-Route optionally added; every other byte as received. Returns the length written.
/// A request whose Max-Forwards is 0 is [`WriteError::MaxForwardsExhausted`] (answer 483).
pub fn forward_request(
    req: &SipMessage<'_>,
    opts: &ForwardOptions<'_>,
    out: &mut [u8],
) -> Result<usize, WriteError> {
    let StartLine::Request(line) = req.start_line() else {
        return Err(WriteError::Unsuitable("not a request"));
    };
    let max_forwards = match req.max_forwards()? {
        Some(0) => return Err(WriteError::MaxForwardsExhausted),
        Some(n) => Some(n - 1),
        None => None,
    };
    let route_line = if opts.pop_route {
        Some(req.first_index(HeaderKind::Route).ok_or(WriteError::Unsuitable("no Route to remove"))?)
    } else {
        None
    };
    check_spec(opts.via.transport)?;
    check_spec(opts.via.host)?;
    check_spec(opts.via.branch)?;
    let buf = req.buf();
    let (start, headers_end, _) = req.section_offsets();
    let first_header = req.entries().first().map_or(headers_end, |e| e.offsets().0);
    let mut w = Out::new(out);

    // Request line, with the URI swapped when asked.
    let uri_at = line.uri_raw.as_ptr() as usize - buf.as_ptr() as usize;
    w.put(buf.get(start..uri_at).unwrap_or_default())?;
    match opts.request_uri {
        Some(uri) => {
            check_spec_bytes(uri)?;
            w.put(uri)?;
        }
        None => w.put(line.uri_raw)?,
    }
    w.put(buf.get(uri_at + line.uri_raw.len()..first_header).unwrap_or_default())?;

    write_via(&mut w, &opts.via)?;
    if let Some(rr) = &opts.record_route {
        check_spec(rr.host)?;
        w.put(b"Record-Route: <sip:")?;
        w.put(rr.host.as_bytes())?;
        w.put(b":")?;
        w.num(rr.port.into())?;
        w.put(b";lr>\r\n")?;
    }
    if max_forwards.is_none() {
        w.put(b"Max-Forwards: ")?;
        w.num(MAX_FORWARDS_INSERTED.into())?;
        w.put(b"\r\n")?;
    }
    let mf_line = req.first_index(HeaderKind::MaxForwards);
    for (i, e) in req.entries().iter().enumerate() {
        if Some(i) == mf_line {
            let (ls, vs, ve, le) = e.offsets();
            w.put(buf.get(ls..vs).unwrap_or_default())?;
            w.num(max_forwards.unwrap_or(MAX_FORWARDS_INSERTED).into())?;
            w.put(buf.get(ve..le).unwrap_or_default())?;
        } else if Some(i) == route_line {
            put_without_first_value(&mut w, buf, e)?;
        } else {
            w.put(e.line(buf))?;
        }
    }
    w.put(buf.get(headers_end..).unwrap_or_default())?;
    Ok(w.len)
}

/// Builds a response to `req` (RFC 3261 §8.2.6): the status line, every Via, From, To (with
/// `to_tag` added when the To has no tag and `code` > 100), Call-ID and CSeq as received, the
/// `extra` header lines (each without CRLF, e.g. `Retry-After: 5`), and `Content-Length: 0`.
pub fn response_from_request(
    req: &SipMessage<'_>,
    code: u16,
    reason: &str,
    to_tag: Option<&str>,
    extra: &[&str],
    out: &mut [u8],
) -> Result<usize, WriteError> {
    if !req.is_request() {
        return Err(WriteError::Unsuitable("not a request"));
    }
    if !(100..=699).contains(&code) {
        return Err(WriteError::Unsuitable("status code not in 100..=699"));
    }
    if reason.bytes().any(|b| b == b'\r' || b == b'\n') {
        return Err(WriteError::Unsuitable("CR or LF in reason phrase"));
    }
    let add_tag = match to_tag {
        Some(tag) if code > 100 && req.to()?.tag().is_none() => {
            check_spec(tag)?;
            Some(tag)
        }
        _ => None,
    };
    let buf = req.buf();
    let mut w = Out::new(out);
    w.put(b"SIP/2.0 ")?;
    w.num(code.into())?;
    w.put(b" ")?;
    w.put(reason.as_bytes())?;
    w.put(b"\r\n")?;
    for e in req.entries() {
        match e.kind() {
            HeaderKind::To if add_tag.is_some() => {
                let (ls, _, ve, le) = e.offsets();
                w.put(buf.get(ls..ve).unwrap_or_default())?;
                w.put(b";tag=")?;
                w.put(add_tag.unwrap_or_default().as_bytes())?;
                w.put(buf.get(ve..le).unwrap_or_default())?;
            }
            HeaderKind::Via | HeaderKind::From | HeaderKind::To | HeaderKind::CallId | HeaderKind::CSeq => {
                w.put(e.line(buf))?;
            }
            _ => {}
        }
    }
    for line in extra {
        if line.bytes().any(|b| b == b'\r' || b == b'\n') || !line.contains(':') {
            return Err(WriteError::Unsuitable("extra header line is not one `Name: value` line"));
        }
        w.put(line.as_bytes())?;
        w.put(b"\r\n")?;
    }
    w.put(b"Content-Length: 0\r\n\r\n")?;
    Ok(w.len)
}

/// Copies a response with its top Via value removed (forwarding it upstream, §16.7 step 3).
pub fn strip_top_via(resp: &SipMessage<'_>, out: &mut [u8]) -> Result<usize, WriteError> {
    if !resp.is_response() {
        return Err(WriteError::Unsuitable("not a response"));
    }
    let via = resp.first_index(HeaderKind::Via).ok_or(WriteError::Unsuitable("no Via"))?;
    let buf = resp.buf();
    let (start, headers_end, _) = resp.section_offsets();
    let mut w = Out::new(out);
    let first_header = resp.entries().first().map_or(headers_end, |e| e.offsets().0);
    w.put(buf.get(start..first_header).unwrap_or_default())?;
    for (i, e) in resp.entries().iter().enumerate() {
        if i == via {
            put_without_first_value(&mut w, buf, e)?;
        } else {
            w.put(e.line(buf))?;
        }
    }
    w.put(buf.get(headers_end..).unwrap_or_default())?;
    Ok(w.len)
}

/// Builds the CANCEL for an INVITE we forwarded (RFC 3261 §9.1): same Request-URI, our top Via
/// (same branch), Route, From, To, Call-ID, CSeq number with method CANCEL.
pub fn build_cancel(invite: &SipMessage<'_>, out: &mut [u8]) -> Result<usize, WriteError> {
    build_in_transaction(invite, None, out)
}

/// Builds the ACK for a non-2xx final `response` to an INVITE we forwarded (RFC 3261
/// §17.1.1.3): as [`build_cancel`], but with the To of the response and method ACK.
pub fn build_ack(
    invite: &SipMessage<'_>,
    response: &SipMessage<'_>,
    out: &mut [u8],
) -> Result<usize, WriteError> {
    match response.status() {
        Some(code) if code >= 300 => build_in_transaction(invite, Some(response), out),
        _ => Err(WriteError::Unsuitable("ACK is built here only for non-2xx final responses")),
    }
}

fn build_in_transaction(
    invite: &SipMessage<'_>,
    response: Option<&SipMessage<'_>>,
    out: &mut [u8],
) -> Result<usize, WriteError> {
    let Some(line) = invite.request_line() else {
        return Err(WriteError::Unsuitable("not a request"));
    };
    if invite.method() != Some(super::Method::Invite) {
        return Err(WriteError::Unsuitable("not an INVITE"));
    }
    let method: &[u8] = if response.is_some() { b"ACK" } else { b"CANCEL" };
    let top_via = invite.top_via()?;
    let cseq = invite.cseq()?;
    let to_line = match response {
        Some(r) => line_of(r, HeaderKind::To)?,
        None => line_of(invite, HeaderKind::To)?,
    };
    let buf = invite.buf();
    let mut w = Out::new(out);
    w.put(method)?;
    w.put(b" ")?;
    w.put(line.uri_raw)?;
    w.put(b" SIP/2.0\r\nVia: ")?;
    w.put(top_via.raw)?;
    w.put(b"\r\n")?;
    for e in invite.entries().iter().filter(|e| e.kind() == HeaderKind::Route) {
        w.put(e.line(buf))?;
    }
    w.put(b"Max-Forwards: ")?;
    w.num(MAX_FORWARDS_INITIAL.into())?;
    w.put(b"\r\n")?;
    w.put(line_of(invite, HeaderKind::From)?)?;
    w.put(to_line)?;
    w.put(line_of(invite, HeaderKind::CallId)?)?;
    w.put(b"CSeq: ")?;
    w.num(cseq.number)?;
    w.put(b" ")?;
    w.put(method)?;
    w.put(b"\r\nContent-Length: 0\r\n\r\n")?;
    Ok(w.len)
}

/// A request this proxy originates within a dialog (RFC 3261 §12.2.1.1), such as the BYE that
/// ends a call past its maximum duration; see [`build_in_dialog_request`]. Every field is written
/// as given: header values must be single lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InDialogRequest<'a> {
    /// The method token (`BYE`).
    pub method: &'a str,
    /// The remote target: the Contact URI of the side the request goes to.
    pub request_uri: &'a [u8],
    /// Our Via (the only one).
    pub via: ViaSpec<'a>,
    /// The route set, first hop first: each URI becomes one `Route: <uri>` line.
    pub routes: &'a [&'a [u8]],
    /// The From value, tag included.
    pub from: &'a [u8],
    /// The To value, tag included.
    pub to: &'a [u8],
    /// The Call-ID.
    pub call_id: &'a [u8],
    /// The CSeq number.
    pub cseq: u32,
}

/// Builds a request within a dialog: request line, our Via, the Route lines, `Max-Forwards: 70`,
/// From, To, Call-ID, CSeq and `Content-Length: 0`. Returns the length written.
pub fn build_in_dialog_request(req: &InDialogRequest<'_>, out: &mut [u8]) -> Result<usize, WriteError> {
    check_spec(req.method)?;
    check_spec(req.via.transport)?;
    check_spec(req.via.host)?;
    check_spec(req.via.branch)?;
    check_spec_bytes(req.request_uri)?;
    for value in [req.from, req.to, req.call_id] {
        check_line_value(value)?;
    }
    for route in req.routes {
        check_spec_bytes(route)?;
        if route.iter().any(|&b| b == b'<' || b == b'>') {
            return Err(WriteError::Unsuitable("angle bracket in a Route URI"));
        }
    }
    let mut w = Out::new(out);
    w.put(req.method.as_bytes())?;
    w.put(b" ")?;
    w.put(req.request_uri)?;
    w.put(b" SIP/2.0\r\n")?;
    write_via(&mut w, &req.via)?;
    for route in req.routes {
        w.put(b"Route: <")?;
        w.put(route)?;
        w.put(b">\r\n")?;
    }
    w.put(b"Max-Forwards: ")?;
    w.num(MAX_FORWARDS_INITIAL.into())?;
    w.put(b"\r\nFrom: ")?;
    w.put(req.from)?;
    w.put(b"\r\nTo: ")?;
    w.put(req.to)?;
    w.put(b"\r\nCall-ID: ")?;
    w.put(req.call_id)?;
    w.put(b"\r\nCSeq: ")?;
    w.num(req.cseq)?;
    w.put(b" ")?;
    w.put(req.method.as_bytes())?;
    w.put(b"\r\nContent-Length: 0\r\n\r\n")?;
    Ok(w.len)
}

/// Rejects a header value that is empty or would not stay one line.
fn check_line_value(v: &[u8]) -> Result<(), WriteError> {
    if v.is_empty() || v.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(WriteError::Unsuitable("header value empty or not one line"));
    }
    Ok(())
}

/// The first header line of `kind`, CRLF included.
fn line_of<'b>(msg: &SipMessage<'b>, kind: HeaderKind) -> Result<&'b [u8], WriteError> {
    msg.entries_from(kind)
        .first()
        .map(|e| e.line(msg.buf()))
        .ok_or(WriteError::Unsuitable("a header the message needs is absent"))
}

/// Writes a list header line without its first value, or nothing when it has only one.
fn put_without_first_value(w: &mut Out<'_>, buf: &[u8], e: &HeaderIndexEntry) -> Result<(), WriteError> {
    let (ls, vs, ve, le) = e.offsets();
    let (_, rest) = split_comma(e.value(buf));
    match rest.map(trim_lws) {
        Some(rest) if !rest.is_empty() => {
            w.put(buf.get(ls..vs).unwrap_or_default())?;
            w.put(rest)?;
            w.put(buf.get(ve..le).unwrap_or_default())
        }
        _ => Ok(()),
    }
}

/// Rejects caller-given text that would break the message (white space, controls, `,`, `;`
/// are not expected in hosts, transports, branches and tags).
fn check_spec(s: &str) -> Result<(), WriteError> {
    if s.is_empty() || s.bytes().any(|b| b <= b' ' || b == 0x7f || b == b',' || b == b';') {
        return Err(WriteError::Unsuitable("empty field, or white space or separators in a field"));
    }
    Ok(())
}

/// Rejects a Request-URI with white space or controls.
fn check_spec_bytes(s: &[u8]) -> Result<(), WriteError> {
    if s.is_empty() || s.iter().any(|&b| b <= b' ' || b == 0x7f) {
        return Err(WriteError::Unsuitable("Request-URI empty or with white space"));
    }
    Ok(())
}

fn write_via(w: &mut Out<'_>, via: &ViaSpec<'_>) -> Result<(), WriteError> {
    w.put(b"Via: SIP/2.0/")?;
    w.put(via.transport.as_bytes())?;
    w.put(b" ")?;
    w.put(via.host.as_bytes())?;
    w.put(b":")?;
    w.num(via.port.into())?;
    w.put(b";branch=")?;
    w.put(via.branch.as_bytes())?;
    if via.rport {
        w.put(b";rport")?;
    }
    w.put(b"\r\n")
}

/// A write cursor over the caller's buffer.
struct Out<'o> {
    buf: &'o mut [u8],
    len: usize,
}

impl<'o> Out<'o> {
    fn new(buf: &'o mut [u8]) -> Self {
        Self { buf, len: 0 }
    }

    fn put(&mut self, s: &[u8]) -> Result<(), WriteError> {
        let end = self.len + s.len();
        let capacity = self.buf.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(WriteError::BufferTooSmall { capacity })?;
        dst.copy_from_slice(s);
        self.len = end;
        Ok(())
    }

    /// Writes `n` in decimal.
    fn num(&mut self, mut n: u32) -> Result<(), WriteError> {
        let mut digits = [0u8; 10];
        let mut i = digits.len();
        loop {
            i -= 1;
            if let Some(d) = digits.get_mut(i) {
                *d = b'0' + (n % 10) as u8;
            }
            n /= 10;
            if n == 0 || i == 0 {
                break;
            }
        }
        self.put(digits.get(i..).unwrap_or_default())
    }
}
