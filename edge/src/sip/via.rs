//! Via (RFC 3261 §20.42, §25.1):
//! ```text
//! via-parm = sent-protocol LWS sent-by *( SEMI via-params )
//! sent-protocol = protocol-name SLASH protocol-version SLASH transport
//! sent-by = host [ COLON port ]
//! via-params = via-ttl / via-maddr / via-received / via-branch / response-port / via-extension
//! ```

use super::chars::{LWS, TOKEN, all_in, eq_letters_ci, parse_decimal, run_in};
use super::error::{ErrorKind, Invalid};
use super::params::{self, ParamGrammar, Params};
use super::scan;
use super::uri::{Host, host_run, parse_host, parse_hostport, parse_port, port_run};

/// The RFC 3261 branch prefix (§8.1.1.7).
pub const BRANCH_MAGIC_COOKIE: &[u8] = b"z9hG4bK";

/// One Via value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Via<'b> {
    /// The whole value as it came.
    pub raw: &'b [u8],
    /// Protocol name (`SIP`).
    pub protocol: &'b [u8],
    /// Protocol version (`2.0`).
    pub version: &'b [u8],
    /// Transport (`UDP`, `TCP`, `TLS`, `SCTP`, `WS`, or an unknown token).
    pub transport: &'b str,
    /// Host of sent-by.
    pub host: Host<'b>,
    /// Port of sent-by, when given.
    pub port: Option<u16>,
    /// The parameters (checked: branch is a token, ttl 0..=255, received an address, rport a port).
    pub params: Params<'b>,
    /// The value of the first `branch` parameter, found while checking them.
    branch: Option<&'b [u8]>,
}

impl<'b> Via<'b> {
    /// Parses one Via value (a list element, white space trimmed).
    pub(crate) fn parse(raw: &'b [u8]) -> Result<Via<'b>, Invalid> {
        match Self::parse_fast(raw) {
            Some(via) => Ok(via),
            None => Self::parse_general(raw),
        }
    }

    /// The common shape in one pass: `SIP/2.0/`, a token transport, a host name or IPv4
    /// sent-by, parameters with plain values that pass Via's own rules. `None` for anything
    /// else, valid or not, which [`Self::parse_general`] decides; where this returns a Via,
    /// that one returns the same (it takes the same steps, each on its fast branch).
    /// A value this accepts holds no `,`, `"` or `<` (no part of its shape admits one), so it
    /// is also the whole of a header value it was given: see [`super::SipMessage::top_via`].
    /// Inlined there, so that the Via is built in place.
    #[inline(always)]
    pub(crate) fn parse_fast(raw: &'b [u8]) -> Option<Via<'b>> {
        let (protocol, version) = match raw {
            [b'S', b'I', b'P', b'/', b'2', b'.', b'0', b'/', ..] => (raw.get(..3)?, raw.get(4..7)?),
            _ => return None,
        };
        // `UDP`, `TCP` or `TLS` and one SP, as the token and LWS steps below read them (the
        // SP ends the token).
        let (transport, mut c) = match raw.get(8..12) {
            Some(b"UDP ") => ("UDP", Cursor { s: raw, i: 12 }),
            Some(b"TCP ") => ("TCP", Cursor { s: raw, i: 12 }),
            Some(b"TLS ") => ("TLS", Cursor { s: raw, i: 12 }),
            _ => {
                let mut c = Cursor { s: raw, i: 8 };
                c.skip_lws();
                let transport = c.token()?;
                if c.skip_lws() == 0 {
                    return None;
                }
                let transport = match transport {
                    b"UDP" => "UDP",
                    b"TCP" => "TCP",
                    b"TLS" => "TLS",
                    other => core::str::from_utf8(other).ok()?,
                };
                (transport, c)
            }
        };
        c.skip_lws();
        let ((host, port), end) = sent_by_fast(c.rest())?;
        c.i += end;
        c.skip_lws();
        let mut branch = None;
        let params = match c.rest().split_first() {
            None => Params::default(),
            Some((b';', p)) if let Some(value) = branch_and_rport(p) => {
                branch = Some(value);
                Params::checked(p)
            }
            Some((b';', p)) => {
                let mut seen_branch = false;
                let plain = params::scan(p, ParamGrammar::Header, |name, value, value_token| {
                    if eq_letters_ci(name, b"branch") {
                        if !seen_branch {
                            (seen_branch, branch) = (true, value);
                        }
                        return value_token;
                    }
                    param_ok(name, value).is_ok()
                });
                if !plain {
                    return None;
                }
                Params::checked(p)
            }
            Some(_) => return None,
        };
        Some(Via { raw, protocol, version, transport, host, port, params, branch })
    }

    /// Any Via value, part by part, with every error.
    #[inline(never)]
    fn parse_general(raw: &'b [u8]) -> Result<Via<'b>, Invalid> {
        let bad = |at, why| Invalid::new(at, ErrorKind::HeaderValue, why);
        // `SIP/2.0/` as nearly every Via has it reads as the general grammar would read it.
        let (protocol, version, mut c) = match raw {
            [b'S', b'I', b'P', b'/', b'2', b'.', b'0', b'/', ..] => {
                (raw.get(..3).unwrap_or_default(), raw.get(4..7).unwrap_or_default(), Cursor { s: raw, i: 8 })
            }
            _ => Self::parse_protocol(raw)?,
        };
        c.skip_lws();
        let transport = c.token().ok_or(bad(raw, "Via transport is not a token"))?;
        if c.skip_lws() == 0 {
            return Err(bad(raw, "Via without LWS before sent-by"));
        }
        let rest = c.rest();
        let ((host, port), end) = match sent_by_fast(rest) {
            Some(found) => found,
            None => {
                let end = rest.iter().position(|&b| b == b';' || LWS[b as usize]).unwrap_or(rest.len());
                (parse_hostport(rest.get(..end).unwrap_or_default())?, end)
            }
        };
        c.i += end;
        c.skip_lws();
        // The parameters are checked, Via's own rules included, in one pass where the list has
        // the plain shape; otherwise by the general check and then one rule at a time.
        let mut branch = None;
        let (params, checked) = match c.rest().split_first() {
            None => (Params::default(), true),
            Some((b';', p)) => {
                let mut seen_branch = false;
                let fast = params::scan(p, ParamGrammar::Header, |name, value, value_token| {
                    if eq_letters_ci(name, b"branch") {
                        // The general rule below, with the token check the scan already did.
                        if !seen_branch {
                            (seen_branch, branch) = (true, value);
                        }
                        return value_token;
                    }
                    param_ok(name, value).is_ok()
                });
                if fast {
                    (Params::checked(p), true)
                } else {
                    (Params::parse(p, ParamGrammar::Header)?, false)
                }
            }
            Some(_) => return Err(bad(c.rest(), "garbage after Via sent-by")),
        };
        let transport = match transport {
            b"UDP" => "UDP",
            b"TCP" => "TCP",
            b"TLS" => "TLS",
            other => core::str::from_utf8(other).map_err(|_| bad(raw, "Via transport is not a token"))?,
        };
        if !checked {
            for (name, value) in params {
                param_ok(name, value).map_err(|why| Invalid::new(name, ErrorKind::HeaderValue, why))?;
            }
            branch = params.get("branch").flatten();
        }
        Ok(Via { raw, protocol, version, transport, host, port, params, branch })
    }

    /// `protocol-name SLASH protocol-version SLASH` (the LWS after it is left), for Vias not starting `SIP/2.0/`.
    fn parse_protocol(raw: &'b [u8]) -> Result<(&'b [u8], &'b [u8], Cursor<'b>), Invalid> {
        let bad = |at, why| Invalid::new(at, ErrorKind::HeaderValue, why);
        let mut c = Cursor { s: raw, i: 0 };
        let protocol = c.token().ok_or(bad(raw, "Via protocol name is not a token"))?;
        c.skip_lws();
        c.expect(b'/').ok_or(bad(raw, "Via without '/' after protocol"))?;
        c.skip_lws();
        let version = c.token().ok_or(bad(raw, "Via protocol version is not a token"))?;
        c.skip_lws();
        c.expect(b'/').ok_or(bad(raw, "Via without '/' after version"))?;
        Ok((protocol, version, c))
    }

    /// The `branch` parameter.
    pub fn branch(&self) -> Option<&'b [u8]> {
        self.branch
    }

    /// True when the branch starts with the RFC 3261 magic cookie (and has more after it).
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch()
            .is_some_and(|b| b.len() > BRANCH_MAGIC_COOKIE.len() && b.starts_with(BRANCH_MAGIC_COOKIE))
    }

    /// The `received` parameter, as it came.
    pub fn received(&self) -> Option<&'b [u8]> {
        self.params.get("received").flatten()
    }

    /// The `rport` parameter: `Some(None)` when present without a value (RFC 3581).
    pub fn rport(&self) -> Option<Option<u16>> {
        self.params.get("rport").map(|v| v.and_then(|v| parse_port(v).ok()))
    }

    /// The `maddr` parameter, as it came.
    pub fn maddr(&self) -> Option<&'b [u8]> {
        self.params.get("maddr").flatten()
    }

    /// The `ttl` parameter.
    pub fn ttl(&self) -> Option<u8> {
        self.params
            .get("ttl")
            .flatten()
            .and_then(|v| parse_decimal(v, u8::MAX.into()).ok())
            .and_then(|v| u8::try_from(v).ok())
    }
}

/// `host[:port]` at the start of `s` for a host name or IPv4 address, and where it ends (at
/// `;`, LWS or the end); `None` for anything else, which the general split decides (with the
/// same result where this one has one: the host name characters and digits hold no `;`, LWS
/// or second `:`).
fn sent_by_fast(s: &[u8]) -> Option<((Host<'_>, Option<u16>), usize)> {
    let (host, k) = host_run(s)?;
    let (port, end) = match s.get(k) {
        Some(b':') => {
            let (port, d) = port_run(s.get(k + 1..)?)?;
            (Some(port), k + 1 + d)
        }
        _ => (None, k),
    };
    match s.get(end) {
        None => Some(((host, port), end)),
        Some(&b) if b == b';' || LWS[b as usize] => Some(((host, port), end)),
        Some(_) => None,
    }
}

/// The branch of a parameter list that is `branch=` and a token, alone or followed by
/// `;rport` (names in any case): the usual Via list. What the list scan in
/// [`Via::parse_fast`] finds in it (a token branch, an `rport` without a value, which Via's
/// rules take), from word compares and a class run; `None` for any other list.
#[inline(always)]
fn branch_and_rport(p: &[u8]) -> Option<&[u8]> {
    /// `branch=` in lower case (seven bytes, a zero eighth), and the bits that fold its
    /// letters (not the `=`, byte 6).
    const BRANCH: u64 = u64::from_le_bytes(*b"branch=\0");
    const BRANCH_FOLD: u64 = 0x0000_2020_2020_2020;
    /// The seven bytes of `branch=`.
    const BRANCH_BYTES: usize = 7;
    /// The eighth byte, which the compare leaves out.
    const EIGHTH: u64 = 0xff00_0000_0000_0000;
    let head = u64::from_le_bytes(*p.first_chunk::<8>()?);
    if (head & !EIGHTH) | BRANCH_FOLD != BRANCH {
        return None;
    }
    let rest = p.get(BRANCH_BYTES..)?;
    // The usual branch bytes 16 at a time (all `token` bytes), then the `token` run.
    let simple = scan::token_simple_run(rest);
    let n = simple + run_in(rest.get(simple..)?, &TOKEN);
    let value = rest.get(..n).filter(|v| !v.is_empty())?;
    match rest.get(n..)? {
        [] => Some(value),
        [b';', rport @ ..] if eq_letters_ci(rport, b"rport") => Some(value),
        _ => None,
    }
}

/// Via's rules for its own parameters (RFC 3261 §20.42, RFC 3581): Ok, or why not.
#[inline]
fn param_ok(name: &[u8], value: Option<&[u8]>) -> Result<(), &'static str> {
    // Dispatch on the length first: most parameters are none of these.
    let (ok, why) = match name.len() {
        6 if eq_letters_ci(name, b"branch") => {
            (value.is_some_and(|v| all_in(v, &TOKEN)), "Via branch is not a token")
        }
        3 if eq_letters_ci(name, b"ttl") => {
            (value.is_some_and(|v| parse_decimal(v, u8::MAX.into()).is_ok()), "Via ttl is not 0..=255")
        }
        8 if eq_letters_ci(name, b"received") => {
            (value.is_some_and(is_address), "Via received is not an address")
        }
        5 if eq_letters_ci(name, b"rport") => {
            (value.is_none_or(|v| parse_port(v).is_ok()), "Via rport is not a port")
        }
        5 if eq_letters_ci(name, b"maddr") => {
            (value.is_some_and(|v| parse_host(v).is_ok()), "Via maddr is not a host")
        }
        _ => (true, ""),
    };
    if ok { Ok(()) } else { Err(why) }
}

/// `received = IPv4address / IPv6address` (RFC 3261 §20.42; brackets tolerated).
fn is_address(v: &[u8]) -> bool {
    let text = core::str::from_utf8(v).unwrap_or_default();
    text.parse::<core::net::IpAddr>().is_ok() || matches!(parse_host(v), Ok(Host::Ipv6(_)))
}

/// A small cursor over a value.
struct Cursor<'b> {
    s: &'b [u8],
    i: usize,
}

impl<'b> Cursor<'b> {
    fn rest(&self) -> &'b [u8] {
        self.s.get(self.i..).unwrap_or_default()
    }

    /// Skips LWS; returns how many bytes.
    fn skip_lws(&mut self) -> usize {
        let n = self.rest().iter().take_while(|&&b| LWS[b as usize]).count();
        self.i += n;
        n
    }

    fn token(&mut self) -> Option<&'b [u8]> {
        let rest = self.rest();
        // Byte by byte: the tokens of a Via (`SIP`, `2.0`, `UDP`) are shorter than a chunk.
        let n = rest.iter().take_while(|&&b| TOKEN[b as usize]).count();
        self.i += n;
        rest.get(..n).filter(|t| !t.is_empty())
    }

    fn expect(&mut self, b: u8) -> Option<()> {
        (self.rest().first() == Some(&b)).then(|| self.i += 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn via_values() {
        let v = Via::parse(b"SIP/2.0/UDP 203.0.113.17:5060;branch=z9hG4bK776asdhds-8a1f;rport").unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.host, Host::Ipv4("203.0.113.17".parse().unwrap()));
        assert_eq!(v.port, Some(5060));
        assert_eq!(v.branch(), Some(&b"z9hG4bK776asdhds-8a1f"[..]));
        assert_eq!(v.rport(), Some(None));
        assert!(v.has_rfc3261_branch());

        let v = Via::parse(b"SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!((v.transport, v.branch()), ("UDP", Some(&b"390skdjuw"[..])));
        assert!(!v.has_rfc3261_branch());

        let v = Via::parse(b"SIP  / 2.0  / TCP     spindle.example.com   ;\r\n  branch  =   z9hG4bK9ikj8")
            .unwrap();
        assert_eq!(v.host, Host::Name("spindle.example.com"));
        assert_eq!(v.branch(), Some(&b"z9hG4bK9ikj8"[..]));

        let v = Via::parse(
            b"SIP/2.0/TLS [2001:db8::9]:5061;received=2001:db8::10;rport=5070;ttl=16;maddr=224.2.0.1",
        )
        .unwrap();
        assert_eq!(v.port, Some(5061));
        assert_eq!(v.rport(), Some(Some(5070)));
        assert_eq!(v.ttl(), Some(16));
        assert_eq!(v.maddr(), Some(&b"224.2.0.1"[..]));
        assert_eq!(v.received(), Some(&b"2001:db8::10"[..]));
        assert!(!Via::parse(b"SIP/2.0/UDP host;branch=z9hG4bK").unwrap().has_rfc3261_branch());
    }

    /// What the list scan of [`Via::parse_fast`] makes of a list: `Some(branch)` when it takes it.
    fn scanned_branch(p: &[u8]) -> Option<Option<&[u8]>> {
        let mut branch = None;
        let mut seen_branch = false;
        let plain = params::scan(p, ParamGrammar::Header, |name, value, value_token| {
            if eq_letters_ci(name, b"branch") {
                if !seen_branch {
                    (seen_branch, branch) = (true, value);
                }
                return value_token;
            }
            param_ok(name, value).is_ok()
        });
        plain.then_some(branch)
    }

    #[test]
    fn branch_and_rport_takes_the_usual_lists_alone() {
        assert_eq!(
            branch_and_rport(b"branch=z9hG4bK776asdhds-8a1f;rport"),
            Some(&b"z9hG4bK776asdhds-8a1f"[..])
        );
        assert_eq!(branch_and_rport(b"BRANCH=z9hG4bK1;RPort"), Some(&b"z9hG4bK1"[..]));
        assert_eq!(branch_and_rport(b"branch=x"), Some(&b"x"[..]));
        for raw in [
            &b"branch="[..],
            b"branch=;rport",
            b"branch=a;rport=1",
            b"branch=a;rportx",
            b"branch=a;",
            b"branch=a b",
            b"branchx=a",
            b"branch:a",
            b"rport;branch=a",
            b"",
        ] {
            assert_eq!(branch_and_rport(raw), None, "{:?}", String::from_utf8_lossy(raw));
        }
    }

    proptest::proptest! {
        /// Where the shortcut takes a list, the list scan takes it with the same branch.
        #[test]
        fn branch_and_rport_agrees_with_the_list_scan(head in proptest::sample::select(vec![&b"branch="[..], b"BRANCH=", b"branc=", b"branch"]),
            raw in proptest::collection::vec(proptest::sample::select(b"z9K-.;=rportRPORT\" \x80".to_vec()), 0..24)) {
            let list = [head, &raw[..]].concat();
            if let Some(branch) = branch_and_rport(&list) {
                proptest::prop_assert_eq!(scanned_branch(&list), Some(Some(branch)));
            }
        }
    }

    #[test]
    fn bad_vias() {
        let table: &[&[u8]] = &[
            b"SIP/2.0/UDP 192.0.2.15;;",
            b"SIP/2.0/UDP 192.0.2.15;",
            b"SIP/2.0 192.0.2.15",
            b"SIP/2.0/UDP",
            b"SIP/2.0/UDP192.0.2.15",
            b"SIP/2.0/UDP host junk",
            b"SIP/2.0/UDP host;ttl=256",
            b"SIP/2.0/UDP host;received=example.com",
            b"SIP/2.0/UDP host;rport=x",
            b"SIP/2.0/UDP host;branch",
            b"SIP/2.0/UDP host:70000",
        ];
        for raw in table {
            assert!(Via::parse(raw).is_err(), "{:?}", String::from_utf8_lossy(raw));
        }
    }
}
