//! Start lines (RFC 3261 §7.1, §7.2): `Method SP Request-URI SP SIP-Version` and
//! `SIP-Version SP Status-Code SP Reason-Phrase`.

use super::chars::{TOKEN, all_in};
use super::error::{ErrorKind, Invalid};
use super::uri::Uri;

/// A request method. Methods are case-sensitive (RFC 3261 §7.1); anything else that is a
/// `token` is an extension method, kept as it came (`RE%47IST%45R` is not REGISTER).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method<'b> {
    /// INVITE
    Invite,
    /// ACK
    Ack,
    /// BYE
    Bye,
    /// CANCEL
    Cancel,
    /// OPTIONS
    Options,
    /// REGISTER
    Register,
    /// MESSAGE (RFC 3428)
    Message,
    /// PRACK (RFC 3262)
    Prack,
    /// UPDATE (RFC 3311)
    Update,
    /// INFO (RFC 6086)
    Info,
    /// REFER (RFC 3515)
    Refer,
    /// NOTIFY (RFC 6665)
    Notify,
    /// SUBSCRIBE (RFC 6665)
    Subscribe,
    /// PUBLISH (RFC 3903)
    Publish,
    /// An extension method.
    Other(&'b str),
}

impl<'b> Method<'b> {
    /// The method of a `token`, or `None` when `s` is not one.
    pub fn from_bytes(s: &'b [u8]) -> Option<Method<'b>> {
        // INVITE, the method of every call set-up, by one compare before the table.
        if s == b"INVITE" {
            return Some(Method::Invite);
        }
        Some(match s {
            b"INVITE" => Method::Invite,
            b"ACK" => Method::Ack,
            b"BYE" => Method::Bye,
            b"CANCEL" => Method::Cancel,
            b"OPTIONS" => Method::Options,
            b"REGISTER" => Method::Register,
            b"MESSAGE" => Method::Message,
            b"PRACK" => Method::Prack,
            b"UPDATE" => Method::Update,
            b"INFO" => Method::Info,
            b"REFER" => Method::Refer,
            b"NOTIFY" => Method::Notify,
            b"SUBSCRIBE" => Method::Subscribe,
            b"PUBLISH" => Method::Publish,
            _ if all_in(s, &TOKEN) => Method::Other(core::str::from_utf8(s).ok()?),
            _ => return None,
        })
    }

    /// The method's name.
    pub fn as_str(&self) -> &'b str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Register => "REGISTER",
            Method::Message => "MESSAGE",
            Method::Prack => "PRACK",
            Method::Update => "UPDATE",
            Method::Info => "INFO",
            Method::Refer => "REFER",
            Method::Notify => "NOTIFY",
            Method::Subscribe => "SUBSCRIBE",
            Method::Publish => "PUBLISH",
            Method::Other(s) => s,
        }
    }
}

/// A request line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RequestLine<'b> {
    /// The method.
    pub method: Method<'b>,
    /// The Request-URI, parsed.
    pub uri: Uri<'b>,
    /// The Request-URI as it came.
    pub uri_raw: &'b [u8],
}

/// A status line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct StatusLine<'b> {
    /// The status code, 100..=699.
    pub code: u16,
    /// The reason phrase as it came (UTF-8 in principle; may be empty).
    pub reason: &'b [u8],
}

/// The first line of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartLine<'b> {
    /// A request.
    Request(RequestLine<'b>),
    /// A response.
    Response(StatusLine<'b>),
}

/// The protocol version this parser speaks.
const SIP_2_0: &[u8] = b"SIP/2.0";

/// Parses a start line (without its CRLF).
#[inline(always)]
pub(crate) fn parse_start_line(line: &[u8]) -> Result<StartLine<'_>, Invalid> {
    if let Some(request) = parse_request_line_fast(line) {
        return Ok(StartLine::Request(request));
    }
    parse_start_line_general(line)
}

/// The usual request line, `token SP URI SP "SIP/2.0"`, in one pass over the method; `None`
/// for anything else, valid or not, which [`parse_start_line_general`] decides. Where this
/// returns a line, that one returns the same: the method ends at the first SP, the version
/// starts after the last, and a URI that parses holds no white space (no URI grammar admits
/// SP or HTAB), which is what the general parser checks before parsing it.
#[inline(always)]
fn parse_request_line_fast(line: &[u8]) -> Option<RequestLine<'_>> {
    let rest = line.strip_suffix(b" SIP/2.0")?;
    // `INVITE ` by one compare (the token run would stop at that SP), else the token run and
    // the method table.
    let (method, uri_raw) = match rest.split_first_chunk::<7>() {
        Some((b"INVITE ", uri_raw)) => (Method::Invite, uri_raw),
        _ => {
            let method_len = rest.iter().take_while(|&&b| TOKEN[b as usize]).count();
            if rest.get(method_len) != Some(&b' ') {
                return None;
            }
            (Method::from_bytes(rest.get(..method_len)?)?, rest.get(method_len + 1..)?)
        }
    };
    let uri_raw = Some(uri_raw).filter(|u| !u.is_empty())?;
    let uri = Uri::parse_inner(uri_raw).ok()?;
    Some(RequestLine { method, uri, uri_raw })
}

/// Any start line, part by part, with every error.
#[cold]
fn parse_start_line_general(line: &[u8]) -> Result<StartLine<'_>, Invalid> {
    if line.len() > 4 && line.get(..4).is_some_and(|p| p.eq_ignore_ascii_case(b"SIP/")) {
        return parse_status_line(line).map(StartLine::Response);
    }
    let bad = |at, why| Invalid::new(at, ErrorKind::StartLine, why);
    let sp1 = memchr::memchr(b' ', line).ok_or(bad(line, "request line without SP"))?;
    let sp2 = memchr::memrchr(b' ', line).unwrap_or(sp1);
    if sp2 == sp1 {
        return Err(bad(line, "request line without SIP version"));
    }
    let method_raw = line.get(..sp1).unwrap_or_default();
    let uri_raw = line.get(sp1 + 1..sp2).unwrap_or_default();
    let version = line.get(sp2 + 1..).unwrap_or_default();
    let method = Method::from_bytes(method_raw).ok_or(bad(line, "method is not a token"))?;
    check_version(version)?;
    if uri_raw.is_empty() || memchr::memchr2(b' ', b'\t', uri_raw).is_some() {
        return Err(Invalid::new(uri_raw, ErrorKind::Uri, "white space in Request-URI"));
    }
    let uri = Uri::parse_inner(uri_raw)?;
    Ok(StartLine::Request(RequestLine { method, uri, uri_raw }))
}

fn parse_status_line(line: &[u8]) -> Result<StatusLine<'_>, Invalid> {
    let bad = |at, why| Invalid::new(at, ErrorKind::StartLine, why);
    let sp1 = line.iter().position(|&b| b == b' ').ok_or(bad(line, "status line without SP"))?;
    check_version(line.get(..sp1).unwrap_or_default())?;
    let rest = line.get(sp1 + 1..).unwrap_or_default();
    let (code_raw, reason) = match rest.iter().position(|&b| b == b' ') {
        Some(sp) => (rest.get(..sp).unwrap_or_default(), rest.get(sp + 1..).unwrap_or_default()),
        None => return Err(bad(rest, "status line without SP after the code")),
    };
    let code = match code_raw {
        [a @ b'1'..=b'6', b, c] if b.is_ascii_digit() && c.is_ascii_digit() => {
            u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0')
        }
        _ => return Err(Invalid::new(code_raw, ErrorKind::StatusCode, "status code not in 100..=699")),
    };
    if reason.iter().any(|&b| b < 0x20 && b != b'\t') {
        return Err(bad(reason, "control character in reason phrase"));
    }
    Ok(StatusLine { code, reason })
}

/// `SIP-Version = "SIP" "/" 1*DIGIT "." 1*DIGIT`; only 2.0 is supported.
fn check_version(v: &[u8]) -> Result<(), Invalid> {
    if v.eq_ignore_ascii_case(SIP_2_0) {
        return Ok(());
    }
    let well_formed = v.len() > 4
        && v.get(..4).is_some_and(|p| p.eq_ignore_ascii_case(b"SIP/"))
        && v.get(4..).is_some_and(|n| {
            let mut parts = n.split(|&b| b == b'.');
            let ok = |p: Option<&[u8]>| p.is_some_and(|p| !p.is_empty() && p.iter().all(u8::is_ascii_digit));
            ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
        });
    if well_formed {
        Err(Invalid::new(v, ErrorKind::UnsupportedVersion, "SIP version other than 2.0"))
    } else {
        Err(Invalid::new(v, ErrorKind::StartLine, "malformed SIP version"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(line: &str) -> Result<StartLine<'_>, ErrorKind> {
        parse_start_line(line.as_bytes()).map_err(|e| e.within(line.as_bytes()).kind())
    }

    #[test]
    fn request_lines() {
        let Ok(StartLine::Request(r)) = kind("INVITE sip:+15551234567@198.51.100.10:5060;user=phone SIP/2.0")
        else {
            panic!()
        };
        assert_eq!(r.method, Method::Invite);
        assert_eq!(r.uri_raw, b"sip:+15551234567@198.51.100.10:5060;user=phone");
        let Ok(StartLine::Request(r)) = kind("RE%47IST%45R sip:registrar.example.com SIP/2.0") else {
            panic!()
        };
        assert_eq!(r.method, Method::Other("RE%47IST%45R"));
        assert!(matches!(
            kind("invite sip:a@b sip/2.0"),
            Ok(StartLine::Request(RequestLine { method: Method::Other("invite"), .. }))
        ));
    }

    #[test]
    fn bad_request_lines() {
        let table = [
            ("INVITE sip:user@example.com; lr SIP/2.0", ErrorKind::Uri),
            ("INVITE  sip:user@example.com  SIP/2.0", ErrorKind::Uri),
            ("INVITE <sip:user@example.com> SIP/2.0", ErrorKind::Uri),
            ("OPTIONS sip:user@example.com SIP/2.0  ", ErrorKind::StartLine),
            ("OPTIONS sip:t.watson@example.org SIP/7.0", ErrorKind::UnsupportedVersion),
            ("OPTIONS sip:t.watson@example.org SIP/2.0.1", ErrorKind::StartLine),
            ("INVITE sip:user@example.com", ErrorKind::StartLine),
            ("INV(ITE sip:a@b SIP/2.0", ErrorKind::StartLine),
            ("", ErrorKind::StartLine),
        ];
        for (line, k) in table {
            assert_eq!(kind(line).err(), Some(k), "{line}");
        }
    }

    #[test]
    fn status_lines() {
        let table: &[(&str, Option<(u16, &str)>)] = &[
            ("SIP/2.0 100 ", Some((100, ""))),
            ("SIP/2.0 200 OK", Some((200, "OK"))),
            (
                "SIP/2.0 200 = 2**3 * 5**2 но сто девяносто девять - простое",
                Some((200, "= 2**3 * 5**2 но сто девяносто девять - простое")),
            ),
            ("SIP/2.0 4294967301 better not break the receiver", None),
            ("SIP/2.0 099 Low", None),
            ("SIP/2.0 700 High", None),
            ("SIP/2.0 200", None),
            ("SIP/2.0 20 OK", None),
        ];
        for (line, want) in table {
            match (kind(line), want) {
                (Ok(StartLine::Response(s)), Some((code, reason))) => {
                    assert_eq!((s.code, s.reason), (*code, reason.as_bytes()), "{line}");
                }
                (Err(_), None) => {}
                (got, _) => panic!("{line}: {got:?}"),
            }
        }
    }
}
