//! URIs (RFC 3261 §19.1, §25.1; RFC 3966 `tel:`; RFC 5118 IPv6 references). `sip:` and `sips:`
//! are parsed into their parts, `tel:` into number and parameters, other schemes kept opaque.
//! Every part borrows the message; `%` escapes are kept as they came and decoded on comparison.

use core::net::{Ipv4Addr, Ipv6Addr};

use super::chars::{
    HOSTNAME, PASSWORD, SCHEME, TEL, URIC, USER, all_escaped_in, all_in, eq_letters_ci, hex_val,
    leading_digits_word, run_in,
};
use super::error::{ErrorKind, Invalid, ParseError};
use super::params::{ParamGrammar, Params};
use super::scan;

/// A parsed URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uri<'b> {
    /// `sip:` or `sips:`.
    Sip(SipUri<'b>),
    /// `tel:` (RFC 3966).
    Tel(TelUri<'b>),
    /// Any other scheme, kept opaque (RFC 4475 §3.3.2: parse, then answer 416 if need be).
    Other {
        /// The scheme as it came.
        scheme: &'b str,
        /// Everything after the first `:`.
        opaque: &'b [u8],
    },
}

/// A `sip:` or `sips:` URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SipUri<'b> {
    /// True for `sips:`.
    pub secure: bool,
    /// The user part, `%` escapes kept (may contain `;`, RFC 4475 §3.1.1.9).
    pub user: Option<&'b [u8]>,
    /// The password, escapes kept.
    pub password: Option<&'b [u8]>,
    /// The host.
    pub host: Host<'b>,
    /// The port, when given.
    pub port: Option<u16>,
    /// The URI parameters (`user=phone`, `transport`, `lr`, ...).
    pub params: Params<'b>,
    /// The `?` headers part (without the `?`), escapes kept.
    pub headers: Option<&'b [u8]>,
}

/// A `tel:` URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TelUri<'b> {
    /// The number as it came: global (`+1-555-...`) or local.
    pub number: &'b [u8],
    /// The parameters (`phone-context`, `ext`, ...).
    pub params: Params<'b>,
}

/// The host of a SIP URI or Via sent-by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host<'b> {
    /// A host name, as it came (compare case-insensitively).
    Name(&'b str),
    /// An IPv4 address.
    Ipv4(Ipv4Addr),
    /// An IPv6 reference `[...]` (RFC 5118 forms, IPv4-mapped included).
    Ipv6(Ipv6Addr),
}

impl Host<'_> {
    /// Equality of hosts: names case-insensitive, addresses by value.
    pub fn matches(&self, other: &Host<'_>) -> bool {
        match (self, other) {
            (Host::Name(a), Host::Name(b)) => a.eq_ignore_ascii_case(b),
            (Host::Ipv4(a), Host::Ipv4(b)) => a == b,
            (Host::Ipv6(a), Host::Ipv6(b)) => a == b,
            _ => false,
        }
    }
}

impl<'b> Uri<'b> {
    /// Parses a URI (without surrounding `<>` or white space).
    pub fn parse(raw: &'b [u8]) -> Result<Uri<'b>, ParseError> {
        Self::parse_inner(raw).map_err(|e| e.within(raw))
    }

    pub(crate) fn parse_inner(raw: &'b [u8]) -> Result<Uri<'b>, Invalid> {
        // The schemes of nearly every URI, without the general scheme split.
        match raw {
            [s, i, p, b':', rest @ ..] if eq_letters_ci(&[*s, *i, *p], b"sip") => {
                return parse_sip(rest, false).map(Uri::Sip);
            }
            [s, i, p, s2, b':', rest @ ..] if eq_letters_ci(&[*s, *i, *p, *s2], b"sips") => {
                return parse_sip(rest, true).map(Uri::Sip);
            }
            _ => {}
        }
        let colon = raw.iter().position(|&b| b == b':').ok_or(Invalid::new(
            raw,
            ErrorKind::Uri,
            "URI without scheme",
        ))?;
        let scheme = raw.get(..colon).unwrap_or_default();
        let rest = raw.get(colon + 1..).unwrap_or_default();
        if !scheme.first().is_some_and(u8::is_ascii_alphabetic) || !all_in(scheme, &SCHEME) {
            return Err(Invalid::new(raw, ErrorKind::Uri, "malformed URI scheme"));
        }
        if scheme.eq_ignore_ascii_case(b"sip") {
            parse_sip(rest, false).map(Uri::Sip)
        } else if scheme.eq_ignore_ascii_case(b"sips") {
            parse_sip(rest, true).map(Uri::Sip)
        } else if scheme.eq_ignore_ascii_case(b"tel") {
            parse_tel(rest).map(Uri::Tel)
        } else if all_in(rest, &URIC) {
            let scheme = core::str::from_utf8(scheme)
                .map_err(|_| Invalid::new(raw, ErrorKind::Uri, "malformed URI scheme"))?;
            Ok(Uri::Other { scheme, opaque: rest })
        } else {
            Err(Invalid::new(rest, ErrorKind::Uri, "malformed opaque URI"))
        }
    }

    /// The SIP URI, when this is one.
    pub fn as_sip(&self) -> Option<&SipUri<'b>> {
        match self {
            Uri::Sip(s) => Some(s),
            _ => None,
        }
    }

    /// The user part of a SIP URI or the number of a tel URI, escapes kept.
    pub fn user(&self) -> Option<&'b [u8]> {
        match self {
            Uri::Sip(s) => s.user,
            Uri::Tel(t) => Some(t.number),
            Uri::Other { .. } => None,
        }
    }
}

impl<'b> SipUri<'b> {
    /// The `user=` URI parameter (`phone` for telephone numbers).
    pub fn user_param(&self) -> Option<&'b [u8]> {
        self.params.get("user").flatten()
    }

    /// True for `;user=phone`.
    pub fn is_phone(&self) -> bool {
        self.user_param().is_some_and(|u| u.eq_ignore_ascii_case(b"phone"))
    }

    /// The `transport=` URI parameter.
    pub fn transport(&self) -> Option<&'b [u8]> {
        self.params.get("transport").flatten()
    }

    /// True for the loose-routing `;lr` parameter.
    pub fn lr(&self) -> bool {
        self.params.has("lr")
    }

    /// The user part with `%` escapes decoded, byte by byte.
    pub fn user_unescaped(&self) -> Unescaped<'b> {
        Unescaped::new(self.user.unwrap_or_default())
    }

    /// URI equivalence after RFC 3261 §19.1.4: scheme, user and password (escapes decoded,
    /// case-sensitive), host (case-insensitive), port; the parameters `user`, `ttl`, `method`,
    /// `maddr` and `transport` must match where either side has them, others where both do;
    /// headers must match (escapes decoded).
    pub fn equivalent(&self, other: &SipUri<'_>) -> bool {
        const MUST_MATCH: [&str; 5] = ["user", "ttl", "method", "maddr", "transport"];
        let opt_eq = |a: Option<&[u8]>, b: Option<&[u8]>| match (a, b) {
            (None, None) => true,
            (Some(a), Some(b)) => unescaped_eq(a, b),
            _ => false,
        };
        let param_eq = |a: Option<Option<&[u8]>>, b: Option<Option<&[u8]>>| match (a, b) {
            (Some(a), Some(b)) => opt_eq(a, b) || a.zip(b).is_some_and(|(a, b)| unescaped_eq_ci(a, b)),
            (None, None) => true,
            _ => false,
        };
        self.secure == other.secure
            && opt_eq(self.user, other.user)
            && opt_eq(self.password, other.password)
            && self.host.matches(&other.host)
            && self.port == other.port
            && MUST_MATCH.iter().all(|n| param_eq(self.params.get(n), other.params.get(n)))
            // A name given twice counts by its first occurrence, on both sides alike.
            && self.params.iter().all(|(n, _)| match first_param(&other.params, n) {
                Some(theirs) => param_eq(first_param(&self.params, n), Some(theirs)),
                None => true,
            })
            && opt_eq(self.headers, other.headers)
    }
}

/// The value of the first parameter whose name equals `name` once unescaped (any case).
fn first_param<'b>(params: &Params<'b>, name: &[u8]) -> Option<Option<&'b [u8]>> {
    params.iter().find(|(n, _)| unescaped_eq_ci(n, name)).map(|(_, v)| v)
}

impl<'b> TelUri<'b> {
    /// The `phone-context` parameter of a local number.
    pub fn phone_context(&self) -> Option<&'b [u8]> {
        self.params.get("phone-context").flatten()
    }

    /// True for a global number (`+` and digits).
    pub fn is_global(&self) -> bool {
        self.number.first() == Some(&b'+')
    }
}

fn parse_sip(rest: &[u8], secure: bool) -> Result<SipUri<'_>, Invalid> {
    match parse_sip_fast(rest, secure) {
        Some(uri) => Ok(uri),
        None => parse_sip_general(rest, secure),
    }
}

/// The common shape of a SIP URI in one pass: `user@host[:port][;params]` with a user part
/// and no password, a host name or IPv4 address, no `?` headers. `None` for anything else,
/// valid or not, which [`parse_sip_general`] decides; where this returns a URI, that one
/// returns the same (the user part ends at its first byte outside `user`, which must be the
/// first `@`; the host at its first byte outside `hostname`, which must be `:`, `;` or the end).
#[inline]
fn parse_sip_fast(rest: &[u8], secure: bool) -> Option<SipUri<'_>> {
    // The common bytes of a user part (a telephone number) 16 at a time, then the rest of
    // the `user` run byte by byte (`user_simple_run` takes `user` bytes only).
    let mut i = scan::user_simple_run(rest);
    // The run usually ends at the `@` (not a `user` byte): the class run would stop there.
    if rest.get(i) != Some(&b'@') {
        i += run_in(rest.get(i..)?, &USER);
    }
    while rest.get(i) == Some(&b'%') && rest.get(i + 1..i + 3)?.iter().all(u8::is_ascii_hexdigit) {
        i += 3;
        i += run_in(rest.get(i..)?, &USER);
    }
    if i == 0 || rest.get(i) != Some(&b'@') {
        return None;
    }
    let (user, hp) = (rest.get(..i)?, rest.get(i + 1..)?);
    let (host, k) = host_run(hp)?;
    let mut after = hp.get(k..)?;
    let mut port = None;
    if let Some(digits) = after.strip_prefix(b":") {
        let (p, d) = port_run(digits)?;
        port = Some(p);
        after = digits.get(d..)?;
    }
    let params = match after.split_first() {
        None => Params::default(),
        // A `?` (headers) is not a `paramchar`: a list holding one fails here and goes the
        // general way, which splits the headers off first.
        Some((b';', p)) => Params::parse(p, ParamGrammar::Uri).ok()?,
        Some(_) => return None,
    };
    Some(SipUri { secure, user: Some(user), password: None, host, port, params, headers: None })
}

/// Any SIP URI, part by part: user and password, IPv6 references, headers, and every error.
#[cold]
fn parse_sip_general(rest: &[u8], secure: bool) -> Result<SipUri<'_>, Invalid> {
    // userinfo ends at the first '@': no part of the user, password, host, params or headers
    // may hold a bare '@'.
    let (userinfo, hostport_etc) = match memchr::memchr(b'@', rest) {
        Some(at) => (rest.get(..at), rest.get(at + 1..).unwrap_or_default()),
        None => (None, rest),
    };
    let (user, password) = match userinfo {
        None => (None, None),
        Some(ui) => {
            let (user, password) = match ui.iter().position(|&b| b == b':') {
                Some(c) => (ui.get(..c).unwrap_or_default(), ui.get(c + 1..)),
                None => (ui, None),
            };
            if user.is_empty() || !all_escaped_in(user, &USER) {
                return Err(Invalid::new(ui, ErrorKind::Uri, "malformed URI user part"));
            }
            if password.is_some_and(|p| !all_escaped_in(p, &PASSWORD)) {
                return Err(Invalid::new(ui, ErrorKind::Uri, "malformed URI password"));
            }
            (Some(user), password)
        }
    };
    let (hostport, after) = split_hostport(hostport_etc);
    let (host, port) = parse_hostport(hostport)?;
    let (params_raw, headers) = match after.first() {
        Some(b';') => match after.iter().position(|&b| b == b'?') {
            Some(q) => (after.get(..q).unwrap_or_default(), after.get(q + 1..)),
            None => (after, None),
        },
        Some(_) => (&[][..], after.get(1..)), // `?` (what split_hostport stops at)
        None => (after, None),
    };
    let params = match params_raw.split_first() {
        None => Params::default(),
        Some((b';', p)) => Params::parse(p, ParamGrammar::Uri)
            .map_err(|_| Invalid::new(params_raw, ErrorKind::Uri, "malformed URI parameter"))?,
        Some(_) => return Err(Invalid::new(params_raw, ErrorKind::Uri, "malformed URI host")),
    };
    if let Some(h) = headers {
        let ok = h.split(|&b| b == b'&').all(|hv| {
            let mut it = hv.splitn(2, |&b| b == b'=');
            let (name, value) = (it.next().unwrap_or_default(), it.next());
            !name.is_empty()
                && all_escaped_in(name, &super::chars::HNV)
                && value.is_some_and(|v| all_escaped_in(v, &super::chars::HNV))
        });
        if !ok {
            return Err(Invalid::new(h, ErrorKind::Uri, "malformed URI headers"));
        }
    }
    Ok(SipUri { secure, user, password, host, port, params, headers })
}

/// Splits `host[:port]` from what follows (`;params`, `?headers`).
fn split_hostport(s: &[u8]) -> (&[u8], &[u8]) {
    let end = s.iter().position(|&b| b == b';' || b == b'?').unwrap_or(s.len());
    (s.get(..end).unwrap_or_default(), s.get(end..).unwrap_or_default())
}

/// `hostport = host [ ":" port ]`, host a name, IPv4 address or `[IPv6]` reference.
pub(crate) fn parse_hostport(s: &[u8]) -> Result<(Host<'_>, Option<u16>), Invalid> {
    let (host_raw, port_raw) = if s.first() == Some(&b'[') {
        let close = s.iter().position(|&b| b == b']').ok_or(Invalid::new(
            s,
            ErrorKind::Uri,
            "unterminated IPv6 reference",
        ))?;
        (s.get(..=close).unwrap_or_default(), s.get(close + 1..).unwrap_or_default())
    } else {
        let colon = s.iter().position(|&b| b == b':').unwrap_or(s.len());
        (s.get(..colon).unwrap_or_default(), s.get(colon..).unwrap_or_default())
    };
    let host = parse_host(host_raw)?;
    let port = match port_raw.split_first() {
        None => None,
        Some((b':', digits)) => Some(parse_port(digits)?),
        Some(_) => return Err(Invalid::new(port_raw, ErrorKind::Uri, "garbage after host")),
    };
    Ok((host, port))
}

/// The port at the start of `s` (its longest run of digits) and the run's length, in one
/// pass, where [`parse_port`] accepts that run; `None` where it fails.
#[inline(always)]
pub(crate) fn port_run(s: &[u8]) -> Option<(u16, usize)> {
    /// Digits of the largest port.
    const MAX_PORT_DIGITS: usize = 5;
    // A port followed by three bytes or more (`;params`): from one word.
    if let Some((n, d)) = leading_digits_word(s) {
        if !(1..=MAX_PORT_DIGITS).contains(&d) {
            return None;
        }
        return Some((u16::try_from(n).ok()?, d));
    }
    port_run_bytes(s)
}

/// [`port_run`] digit by digit: values shorter than a word (and the reference in tests).
fn port_run_bytes(s: &[u8]) -> Option<(u16, usize)> {
    /// Digits of the largest port.
    const MAX_PORT_DIGITS: usize = 5;
    let mut n = 0u32;
    let mut d = 0;
    while let Some(&b) = s.get(d) {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            break;
        }
        if d == MAX_PORT_DIGITS {
            return None;
        }
        n = n * 10 + u32::from(digit);
        d += 1;
    }
    if d == 0 {
        return None;
    }
    Some((u16::try_from(n).ok()?, d))
}

/// A port: 1 to 5 digits, at most 65535.
pub(crate) fn parse_port(digits: &[u8]) -> Result<u16, Invalid> {
    if digits.is_empty() || digits.len() > 5 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(Invalid::new(digits, ErrorKind::Uri, "malformed port"));
    }
    let n = digits.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0'));
    u16::try_from(n).map_err(|_| Invalid::new(digits, ErrorKind::Uri, "port above 65535"))
}

/// A host: `[IPv6]`, an IPv4 address, or a host name.
pub(crate) fn parse_host(raw: &[u8]) -> Result<Host<'_>, Invalid> {
    let bad = || Invalid::new(raw, ErrorKind::Uri, "malformed host");
    if let [b'[', inner @ .., b']'] = raw {
        let text = core::str::from_utf8(inner).map_err(|_| bad())?;
        return text.parse::<Ipv6Addr>().map(Host::Ipv6).map_err(|_| bad());
    }
    // An IPv4 address is made of host name characters only, so it needs no class check.
    if raw.last().is_some_and(u8::is_ascii_digit)
        && let Some(v4) = parse_ipv4(raw)
    {
        return Ok(Host::Ipv4(v4));
    }
    if !all_in(raw, &HOSTNAME) {
        return Err(bad());
    }
    core::str::from_utf8(raw).map(Host::Name).map_err(|_| bad())
}

/// `IPv4address = 1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT`, each at most 255, without
/// leading zeros (as `Ipv4Addr::from_str`), straight from bytes.
pub(crate) fn parse_ipv4(s: &[u8]) -> Option<Ipv4Addr> {
    ipv4_prefix(s).filter(|&(_, n)| n == s.len()).map(|(a, _)| a)
}

/// The IPv4 address at the start of `s` and its length: each octet the longest run of up to
/// three digits (a leading zero stands alone), at most 255. What follows is not looked at.
#[inline(always)]
fn ipv4_prefix(s: &[u8]) -> Option<(Ipv4Addr, usize)> {
    let mut octets = [0u8; 4];
    let mut i = 0;
    for (k, octet) in octets.iter_mut().enumerate() {
        if k > 0 {
            if s.get(i) != Some(&b'.') {
                return None;
            }
            i += 1;
        }
        let first = s.get(i)?.wrapping_sub(b'0');
        if first > 9 {
            return None;
        }
        i += 1;
        let mut value = u16::from(first);
        if first != 0 {
            for _ in 0..2 {
                match s.get(i).map(|b| b.wrapping_sub(b'0')) {
                    Some(d) if d <= 9 => {
                        value = value * 10 + u16::from(d);
                        i += 1;
                    }
                    _ => break,
                }
            }
        }
        *octet = u8::try_from(value).ok()?;
    }
    Some((Ipv4Addr::from(octets), i))
}

/// The host at the start of `s` (up to its first byte outside `hostname`) and its length, as
/// [`parse_host`] reads that run: an IPv4 address is parsed in the same pass that finds its
/// end, anything else after a class run. `None` where `parse_host` fails.
#[inline(always)]
pub(crate) fn host_run(s: &[u8]) -> Option<(Host<'_>, usize)> {
    // An IPv4 address followed by a byte outside `hostname` is the whole run (its digits and
    // dots are `hostname` bytes), which `parse_host` reads as that address.
    if let Some((v4, n)) = ipv4_prefix(s)
        && !s.get(n).is_some_and(|&b| HOSTNAME[b as usize])
    {
        return Some((Host::Ipv4(v4), n));
    }
    let k = run_in(s, &HOSTNAME);
    Some((parse_host(s.get(..k)?).ok()?, k))
}

fn parse_tel(rest: &[u8]) -> Result<TelUri<'_>, Invalid> {
    let semi = rest.iter().position(|&b| b == b';').unwrap_or(rest.len());
    let number = rest.get(..semi).unwrap_or_default();
    let digits = number.strip_prefix(b"+").unwrap_or(number);
    if digits.is_empty()
        || !digits.iter().all(|&b| b.is_ascii_hexdigit() || b"-.()*#".contains(&b))
        || !all_in(rest, &TEL)
    {
        return Err(Invalid::new(rest, ErrorKind::Uri, "malformed tel URI number"));
    }
    let params = match rest.get(semi + 1..) {
        Some(p) => Params::parse(p, ParamGrammar::Uri)
            .map_err(|_| Invalid::new(p, ErrorKind::Uri, "malformed tel URI parameter"))?,
        None => Params::default(),
    };
    Ok(TelUri { number, params })
}

/// The bytes of a `%`-escaped string, decoded. An invalid escape is yielded as it came.
#[derive(Debug, Clone)]
pub struct Unescaped<'b> {
    rest: &'b [u8],
}

impl<'b> Unescaped<'b> {
    /// Decodes `s`.
    pub fn new(s: &'b [u8]) -> Self {
        Self { rest: s }
    }
}

impl Iterator for Unescaped<'_> {
    type Item = u8;
    fn next(&mut self) -> Option<u8> {
        match self.rest {
            [b'%', h, l, rest @ ..] => match (hex_val(*h), hex_val(*l)) {
                (Some(h), Some(l)) => {
                    self.rest = rest;
                    Some(h << 4 | l)
                }
                _ => {
                    self.rest = self.rest.get(1..).unwrap_or_default();
                    Some(b'%')
                }
            },
            [b, rest @ ..] => {
                self.rest = rest;
                Some(*b)
            }
            [] => None,
        }
    }
}

/// True when `a` and `b` are equal once `%` escapes are decoded (RFC 3261 §19.1.4).
pub fn unescaped_eq(a: &[u8], b: &[u8]) -> bool {
    Unescaped::new(a).eq(Unescaped::new(b))
}

/// Like [`unescaped_eq`], ignoring ASCII case.
pub fn unescaped_eq_ci(a: &[u8], b: &[u8]) -> bool {
    Unescaped::new(a).map(|c| c.to_ascii_lowercase()).eq(Unescaped::new(b).map(|c| c.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The word-wise port reader reads every input as the digit loop does.
        #[test]
        fn port_run_matches_the_digit_loop(s in proptest::collection::vec(
            proptest::sample::select(b"0123456789;:a\x80".to_vec()), 0..12)) {
            proptest::prop_assert_eq!(port_run(&s), port_run_bytes(&s));
        }
    }

    fn sip(s: &str) -> SipUri<'_> {
        match Uri::parse(s.as_bytes()) {
            Ok(Uri::Sip(u)) => u,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn sip_uris() {
        let u = sip("sip:+15551234567@198.51.100.10:5060;user=phone");
        assert_eq!(u.user, Some(&b"+15551234567"[..]));
        assert_eq!(u.host, Host::Ipv4(Ipv4Addr::new(198, 51, 100, 10)));
        assert_eq!(u.port, Some(5060));
        assert!(u.is_phone());

        let u = sip("sip:user;par=u%40example.net@example.com");
        assert_eq!(u.user, Some(&b"user;par=u%40example.net"[..]));
        assert_eq!(u.user_unescaped().collect::<Vec<_>>(), b"user;par=u@example.net");
        assert!(u.params.is_empty());
        assert_eq!(u.host, Host::Name("example.com"));

        let u = sip("sips:[2001:db8::10]:5061;transport=tls;lr?Subject=hi&Priority=urgent");
        assert!(u.secure && u.lr());
        assert_eq!(u.host, Host::Ipv6("2001:db8::10".parse().unwrap()));
        assert_eq!(u.port, Some(5061));
        assert_eq!(u.transport(), Some(&b"tls"[..]));
        assert_eq!(u.headers, Some(&b"Subject=hi&Priority=urgent"[..]));

        for (raw, v4) in [
            ("1.2.3.4", true),
            ("255.255.255.255", true),
            ("256.1.1.1", false),
            ("1.2.3", false),
            ("1.2.3.4.5", false),
            ("01.2.3.4", false),
            ("1..2.3", false),
            ("1.2.3.x", false),
            ("0.0.0.0", true),
            ("10.0.100.99", true),
            ("1.2.3.04", false),
            ("1.2.3.4.", false),
            (".1.2.3", false),
            ("1234.1.1.1", false),
            ("1.2.3.2555", false),
            ("", false),
        ] {
            assert_eq!(parse_ipv4(raw.as_bytes()), raw.parse().ok(), "{raw}");
            assert_eq!(parse_ipv4(raw.as_bytes()).is_some(), v4, "{raw}");
        }
        for digits in ["", "0", "5060", "65535", "65536", "99999", "123456", "0005060", "12x", "x"] {
            let run = digits.bytes().take_while(u8::is_ascii_digit).count();
            let want = parse_port(&digits.as_bytes()[..run]).ok().map(|p| (p, run));
            assert_eq!(port_run(digits.as_bytes()), want, "{digits}");
        }
        let u = sip("sip:[::ffff:192.0.2.1]");
        assert_eq!(u.host, Host::Ipv6("::ffff:192.0.2.1".parse().unwrap()));

        let u = sip(
            "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com",
        );
        assert_eq!(u.user, Some(&b"1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"[..]));
        assert_eq!(u.password, Some(&b"&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"[..]));
    }

    #[test]
    fn malformed_uris_are_errors() {
        let table = [
            "sip:",
            "sip:user@",
            "sip:host:",
            "sip:host:99999",
            "sip:[::1",
            "sip:a b",
            "sip:u%4@h",
            "sip:host;;lr",
            "sip:host?x",
            "1sip:x",
            "sip:host:5060x",
            "tel:",
            "tel:+1;;a",
            "nocolon",
            "<sip:host>",
            "x:a b",
        ];
        for s in table {
            assert!(Uri::parse(s.as_bytes()).is_err(), "{s}");
        }
    }

    #[test]
    fn tel_and_opaque_uris() {
        let Ok(Uri::Tel(t)) = Uri::parse(b"tel:+1-201-555-0123") else { panic!() };
        assert!(t.is_global());
        assert_eq!(t.number, b"+1-201-555-0123");
        let Ok(Uri::Tel(t)) = Uri::parse(b"tel:7042;phone-context=example.com") else { panic!() };
        assert_eq!(t.phone_context(), Some(&b"example.com"[..]));
        assert!(matches!(
            Uri::parse(b"nobodyKnowsThisScheme:totallyopaquecontent"),
            Ok(Uri::Other { scheme: "nobodyKnowsThisScheme", .. })
        ));
        assert!(matches!(Uri::parse(b"soap.beep://192.0.2.103:3002"), Ok(Uri::Other { .. })));
    }

    #[test]
    fn equivalence_after_rfc3261_19_1_4() {
        let eq = [
            ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
            ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
            (
                "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
                "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com",
            ),
            (
                "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
                "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
            ),
        ];
        for (a, b) in eq {
            assert!(sip(a).equivalent(&sip(b)), "{a} == {b}");
            assert!(sip(b).equivalent(&sip(a)), "{b} == {a}");
        }
        let ne = [
            ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),
            ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
            ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
            ("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;security=off"),
        ];
        for (a, b) in ne {
            assert!(!sip(a).equivalent(&sip(b)), "{a} != {b}");
        }
        assert!(unescaped_eq(b"sips%3Auser%40example.com", b"sips:user@example.com"));
        // Found by the fuzzer: a parameter given twice must not make a URI differ from itself.
        let twice = sip("sip:+1ip:+15551234567@198.51.100.10-5060;user=phon1.100.10-5060;user=phone");
        assert!(twice.equivalent(&twice));
        assert!(!unescaped_eq(b"%00", b"%00%00"));
    }
}
