//! Addresses with parameters: From, To, Contact, Route, Record-Route, P-Asserted-Identity
//! (RFC 3261 §20.10, §20.20, §20.39, §25.1):
//! ```text
//! from-spec    = ( name-addr / addr-spec ) *( SEMI from-param )
//! name-addr    = [ display-name ] LAQUOT addr-spec RAQUOT
//! display-name = *(token LWS) / quoted-string
//! ```
//! Without `<>`, parameters after the URI belong to the header, not the URI (§20.10).

use super::chars::{LWS, TOKEN, eq_letters_ci, run_in, trim_lws};
use super::error::{ErrorKind, Invalid};
use super::params::{self, ParamGrammar, Params};
use super::scan;
use super::uri::Uri;

/// One address value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct NameAddr<'b> {
    /// The display name: the inside of the quotes (escapes kept), or the tokens as they came.
    pub display_name: Option<&'b [u8]>,
    /// The URI, parsed.
    pub uri: Uri<'b>,
    /// The URI as it came (without `<>`).
    pub uri_raw: &'b [u8],
    /// The header parameters (`tag`, `expires`, `q`, ...).
    pub params: Params<'b>,
    /// The value of the first `tag` parameter, found while checking them.
    tag: Option<&'b [u8]>,
}

impl<'b> NameAddr<'b> {
    /// [`Self::parse`] as a call, for the list iterators (Contact, Route, Record-Route,
    /// P-Asserted-Identity), which need not carry its code inlined.
    #[inline(never)]
    pub(crate) fn parse_outlined(raw: &'b [u8]) -> Result<NameAddr<'b>, Invalid> {
        Self::parse(raw)
    }

    /// Parses one address value (a list element, white space trimmed). Inlined into From and
    /// To, so that the address is built in place.
    #[inline(always)]
    pub(crate) fn parse(raw: &'b [u8]) -> Result<NameAddr<'b>, Invalid> {
        let bad = |at, why| Invalid::new(at, ErrorKind::HeaderValue, why);
        let raw = trim_lws(raw);
        let (display_name, after_name) = match raw.first() {
            Some(b'"') => {
                // The first quote not escaped closes the string, so the inside holds no bare
                // quote and every `\` escapes a byte of it: it is a valid quoted-string.
                let close = closing_quote(raw).ok_or(bad(raw, "unterminated quoted display name"))?;
                let inner = raw.get(1..close).unwrap_or_default();
                // `raw` ends with no LWS: after one SP and a `<`, the trim below finds that `<`.
                let rest = match raw.get(close + 1..).unwrap_or_default() {
                    [b' ', after @ ..] if after.first() == Some(&b'<') => after,
                    rest => trim_lws(rest),
                };
                if rest.first() != Some(&b'<') {
                    return Err(bad(rest, "quoted display name without <URI>"));
                }
                (Some(inner), rest)
            }
            _ => {
                let n = raw.iter().take_while(|&&b| TOKEN[b as usize] || LWS[b as usize]).count();
                match raw.get(n) {
                    Some(b'<') => {
                        let name = trim_lws(raw.get(..n).unwrap_or_default());
                        (Some(name).filter(|n| !n.is_empty()), raw.get(n..).unwrap_or_default())
                    }
                    _ => (None, raw),
                }
            }
        };
        let (uri_raw, params_part) = if let Some(inner) = after_name.strip_prefix(b"<") {
            let close = scan::find_byte(inner, b'>').ok_or(bad(after_name, "'<' without '>'"))?;
            let uri_raw = inner.get(..close).unwrap_or_default();
            (uri_raw, trim_lws(inner.get(close + 1..).unwrap_or_default()))
        } else {
            let end = addr_spec_end(after_name);
            let uri_raw = after_name.get(..end).unwrap_or_default();
            if uri_raw.contains(&b'?') || uri_raw.contains(&b',') {
                return Err(bad(uri_raw, "URI with '?' or ',' must be enclosed in <>"));
            }
            (uri_raw, trim_lws(after_name.get(end..).unwrap_or_default()))
        };
        let uri = Uri::parse_inner(uri_raw)?;
        let mut tag = None;
        let params = match params_part.split_first() {
            None => Params::default(),
            Some((b';', p)) if let Some(value) = tag_only(p) => {
                tag = Some(value);
                Params::checked(p)
            }
            Some((b';', p)) => {
                let mut seen_tag = false;
                let plain = params::scan(p, ParamGrammar::Header, |name, value, _| {
                    if !seen_tag && eq_letters_ci(name, b"tag") {
                        (seen_tag, tag) = (true, value);
                    }
                    true
                });
                if plain {
                    Params::checked(p)
                } else {
                    let params = Params::parse(p, ParamGrammar::Header)?;
                    tag = params.get("tag").flatten();
                    params
                }
            }
            Some(_) => return Err(bad(params_part, "garbage after address")),
        };
        Ok(NameAddr { display_name, uri, uri_raw, params, tag })
    }

    /// The `tag` parameter (From, To).
    pub fn tag(&self) -> Option<&'b [u8]> {
        self.tag
    }
}

/// The value of a parameter list that is `tag=` (any case) and a token, nothing else (the
/// usual From and To list): what [`params::scan`] finds in it, one parameter named `tag` with
/// a token value, from one word compare and a class run. `None` for any other list.
#[inline(always)]
fn tag_only(p: &[u8]) -> Option<&[u8]> {
    /// `tag=` in lower case, and the bits that fold its letters (not the `=`, byte 3).
    const TAG: u32 = u32::from_le_bytes(*b"tag=");
    const TAG_FOLD: u32 = 0x0020_2020;
    let (head, value) = p.split_first_chunk::<4>()?;
    (u32::from_le_bytes(*head) | TAG_FOLD == TAG && !value.is_empty() && run_in(value, &TOKEN) == value.len())
        .then_some(value)
}

/// Index of the quote closing the quoted string that starts at `s[0]`.
#[inline]
fn closing_quote(s: &[u8]) -> Option<usize> {
    // Without a `\` before it, the first `"` after the opening one closes the string.
    let after = s.get(1..)?;
    // A display name within 16 bytes: the quote and any `\` before it from one load.
    if let Some(q) = scan::find_byte_clear_of(after, b'"', b'\\') {
        return Some(1 + q);
    }
    if let Some(q) = scan::find_byte(after, b'"')
        && scan::find_byte(after.get(..q)?, b'\\').is_none()
    {
        return Some(1 + q);
    }
    let mut i = 1;
    while let Some(&b) = s.get(i) {
        match b {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// End of an addr-spec not in `<>`: the first LWS, or the first `;` after the user part.
fn addr_spec_end(s: &[u8]) -> usize {
    let lws = s.iter().position(|&b| LWS[b as usize]).unwrap_or(s.len());
    let head = s.get(..lws).unwrap_or_default();
    let from = head.iter().position(|&b| b == b'@').map_or(0, |at| at + 1);
    head.get(from..).and_then(|h| h.iter().position(|&b| b == b';')).map_or(lws, |semi| from + semi)
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Where the `tag=token` shortcut takes a list, the list scan takes it too, with the
        /// same one parameter and the same tag.
        #[test]
        fn tag_only_agrees_with_the_list_scan(raw in proptest::collection::vec(
            proptest::sample::select(b"tagTAG=;x19-.\" %\x80".to_vec()), 0..24)) {
            let Some(value) = tag_only(&raw) else { return Ok(()) };
            let mut seen = Vec::new();
            let ok = params::scan(&raw, ParamGrammar::Header, |n, v, _| { seen.push((n, v)); true });
            proptest::prop_assert!(ok);
            proptest::prop_assert_eq!(seen.len(), 1);
            proptest::prop_assert!(seen[0].0.eq_ignore_ascii_case(b"tag"));
            proptest::prop_assert_eq!(seen[0].1, Some(value));
        }
    }

    #[test]
    fn tag_only_takes_tag_and_a_token_alone() {
        assert_eq!(tag_only(b"tag=1928301774"), Some(&b"1928301774"[..]));
        assert_eq!(tag_only(b"TAG=a.b-c"), Some(&b"a.b-c"[..]));
        for raw in
            [&b"tag="[..], b"tag", b"tag=a;x", b"tag=a b", b"tags=a", b"tag=\"a\"", b"t@g=a", b"tag:a", b""]
        {
            assert_eq!(tag_only(raw), None, "{:?}", String::from_utf8_lossy(raw));
        }
    }

    /// Value, display name, URI, tag, number of parameters.
    type Case<'a> = (&'a [u8], Option<&'a [u8]>, &'a [u8], Option<&'a [u8]>, usize);
    use crate::sip::uri::Host;

    #[test]
    fn addresses() {
        // (value, display name, URI, tag, number of params)
        let table: &[Case<'_>] = &[
            (
                b"\"ACME Corp\" <sip:+12125550100@203.0.113.17;user=phone>;tag=1928301774",
                Some(b"ACME Corp"),
                b"sip:+12125550100@203.0.113.17;user=phone",
                Some(b"1928301774"),
                1,
            ),
            (
                b"sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n",
                None,
                b"sip:vivekg@chair-dnrc.example.com",
                Some(b"1918181833n"),
                1,
            ),
            (
                b"\"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>\r\n  ;\r\n  tag = 98asjd8",
                Some(b"J Rosenberg \\\\\\\""),
                b"sip:jdrosen@example.com",
                Some(b"98asjd8"),
                1,
            ),
            (
                b"caller<sip:caller@example.com>;tag=323",
                Some(b"caller"),
                b"sip:caller@example.com",
                Some(b"323"),
                1,
            ),
            (
                b"token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;tag=x",
                Some(b"token1~` token2'+_ token3*%!.-"),
                b"sip:mundane@example.com",
                Some(b"x"),
                1,
            ),
            (
                b"sip:+19725552222@gw1.example.net;unknownparam",
                None,
                b"sip:+19725552222@gw1.example.net",
                None,
                1,
            ),
            (
                b"<sip:+19725552222@gw1.example.net;unknownparam>",
                None,
                b"sip:+19725552222@gw1.example.net;unknownparam",
                None,
                0,
            ),
            (b"isbn:2983792873", None, b"isbn:2983792873", None, 0),
            (
                b"<sip:user@example.com?Route=%3Csip:sip.example.com%3E>",
                None,
                b"sip:user@example.com?Route=%3Csip:sip.example.com%3E",
                None,
                0,
            ),
            (
                b"sip:user;par=u%40example.net@example.com;tag=1",
                None,
                b"sip:user;par=u%40example.net@example.com",
                Some(b"1"),
                1,
            ),
        ];
        for (raw, dn, uri, tag, n) in table {
            let a =
                NameAddr::parse(raw).unwrap_or_else(|e| panic!("{:?}: {e:?}", String::from_utf8_lossy(raw)));
            assert_eq!(a.display_name, *dn, "{:?}", String::from_utf8_lossy(raw));
            assert_eq!(a.uri_raw, *uri);
            assert_eq!(a.tag(), *tag);
            assert_eq!(a.params.iter().count(), *n);
        }
        let a = NameAddr::parse(b"<sip:[2001:db8::1]:5060;lr>").unwrap();
        assert_eq!(a.uri.as_sip().map(|u| u.host), Some(Host::Ipv6("2001:db8::1".parse().unwrap())));
    }

    #[test]
    fn bad_addresses() {
        let table: &[&[u8]] = &[
            b"\"Mr. J. User <sip:j.user@example.com>",
            b"Bell, Alexander <sip:a.g.bell@example.com>;tag=43",
            b"\"Joe\" <sip:joe@example.org>;;;;",
            b"<sip:a@b",
            b"\"Joe\" sip:joe@example.org",
            b"sip:user@example.com?Route=%3Csip:sip.example.com%3E",
            b"<sip:a@b> junk",
            b"",
            b"Watson, Thomas <sip:t.watson@example.org>",
        ];
        for raw in table {
            assert!(NameAddr::parse(raw).is_err(), "{:?}", String::from_utf8_lossy(raw));
        }
    }
}
