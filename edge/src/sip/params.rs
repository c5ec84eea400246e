//! `;name[=value]` parameter lists, of URIs (RFC 3261 §19.1.1 `uri-parameters`) and of header
//! values (`generic-param`, with LWS around `;` and `=` and quoted-string values).
//! A list is checked once when its owner is parsed; iterating a checked list cannot fail.

use super::chars::{
    HNV, IN_HNV, IN_PARAMCHAR, IN_TOKEN, LWS, PARAM_CLASS, PARAM_QUOTE, PARAM_SEP, PARAMCHAR, TOKEN,
    all_escaped_in, all_in, trim_lws,
};
use super::error::{ErrorKind, Invalid};
use super::scan;

/// A checked parameter list, as it came (the bytes after the first `;`, or empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Params<'b> {
    raw: &'b [u8],
}

/// Which grammar a parameter list follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ParamGrammar {
    /// URI parameters: `paramchar` names and values, `%` escapes, no white space.
    Uri,
    /// Header parameters: token names; token, host or quoted-string values; LWS allowed.
    Header,
}

impl<'b> Params<'b> {
    /// Checks `raw` (the text after a first `;`) against `grammar`.
    pub(crate) fn parse(raw: &'b [u8], grammar: ParamGrammar) -> Result<Self, Invalid> {
        if fast_check(raw, grammar) {
            return Ok(Params { raw });
        }
        Self::parse_slow(raw, grammar)
    }

    /// [`Self::parse`] for lists with white space, quotes or escapes, and for errors.
    #[cold]
    #[inline(never)]
    fn parse_slow(raw: &'b [u8], grammar: ParamGrammar) -> Result<Self, Invalid> {
        let params = Params { raw };
        let mut rest = raw;
        loop {
            let (one, next) = split_param(rest);
            let (name, value) = name_value(one);
            if name.is_empty() {
                return Err(Invalid::new(one, ErrorKind::HeaderValue, "empty parameter"));
            }
            let ok = match grammar {
                ParamGrammar::Uri => {
                    !one.iter().any(|&b| LWS[b as usize])
                        && all_escaped_in(name, &PARAMCHAR)
                        && value.is_none_or(|v| !v.is_empty() && all_escaped_in(v, &PARAMCHAR))
                }
                ParamGrammar::Header => all_in(name, &TOKEN) && value.is_none_or(header_value_ok),
            };
            if !ok {
                return Err(Invalid::new(one, ErrorKind::HeaderValue, "malformed parameter"));
            }
            match next {
                Some(n) => rest = n,
                None => return Ok(params),
            }
        }
    }

    /// A list [`scan`] found valid.
    pub(crate) fn checked(raw: &'b [u8]) -> Self {
        Params { raw }
    }

    /// The list as it came (without the leading `;`).
    pub fn as_bytes(&self) -> &'b [u8] {
        self.raw
    }

    /// True when there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// The parameter named `name` (case-insensitive): `Some(None)` when present without a value.
    pub fn get(&self, name: &str) -> Option<Option<&'b [u8]>> {
        self.iter().find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes())).map(|(_, v)| v)
    }

    /// True when the parameter `name` is present, with or without a value.
    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// The parameters in order, names and values trimmed of white space.
    pub fn iter(&self) -> ParamIter<'b> {
        ParamIter { rest: if self.raw.is_empty() { None } else { Some(self.raw) } }
    }
}

impl<'b> IntoIterator for Params<'b> {
    type Item = (&'b [u8], Option<&'b [u8]>);
    type IntoIter = ParamIter<'b>;
    fn into_iter(self) -> ParamIter<'b> {
        self.iter()
    }
}

/// Iterator over a checked parameter list: `(name, value)`.
#[derive(Debug, Clone)]
pub struct ParamIter<'b> {
    rest: Option<&'b [u8]>,
}

impl<'b> Iterator for ParamIter<'b> {
    type Item = (&'b [u8], Option<&'b [u8]>);
    fn next(&mut self) -> Option<Self::Item> {
        let s = self.rest?;
        // One pass to the first `;`, noting the first `=`; a quote or a second `=` leaves it
        // to the general split.
        let mut i = 0;
        let mut eq = None;
        while let Some(&b) = s.get(i) {
            if PARAM_CLASS[b as usize] & (PARAM_SEP | PARAM_QUOTE) != 0 {
                if b == b';' {
                    break;
                }
                if b == b'"' || eq.is_some() {
                    return Some(self.next_general(s));
                }
                eq = Some(i);
            }
            i += 1;
        }
        self.rest = s.get(i + 1..);
        let one = s.get(..i).unwrap_or_default();
        Some(match eq {
            None => (trim_lws(one), None),
            Some(e) => (
                trim_lws(one.get(..e).unwrap_or_default()),
                Some(trim_lws(one.get(e + 1..).unwrap_or_default())),
            ),
        })
    }
}

impl<'b> ParamIter<'b> {
    /// [`Iterator::next`] for parameters with quotes or a second `=`.
    #[cold]
    fn next_general(&mut self, s: &'b [u8]) -> (&'b [u8], Option<&'b [u8]>) {
        let (one, next) = split_param(s);
        self.rest = next;
        name_value(one)
    }
}

/// One pass over a list without white space, quotes or `%` escapes: true when it is valid by
/// `grammar` (the same rules as the full check); false when the full check must decide (and
/// report). Each name and value keeps the AND of its bytes' [`PARAM_CLASS`] bits: a name is
/// valid when all its bytes share the name class, a header value when they are all token or
/// all `hnv` characters, a URI value when they are all `paramchar`.
fn fast_check(raw: &[u8], grammar: ParamGrammar) -> bool {
    is_user_phone(raw) || scan(raw, grammar, |_, _, _| true)
}

/// Whether `raw` is `user=phone` in any letter case: the parameter list of nearly every
/// telephone-number URI, valid in both grammars (letters, then `=`), decided by two word
/// compares instead of the byte loop. `b | 0x20` equals a lower-case letter only for that
/// letter in either case; the `=` is compared as it is.
#[inline(always)]
fn is_user_phone(raw: &[u8]) -> bool {
    /// The list in lower case, as the first eight bytes and the last two.
    const HEAD: u64 = u64::from_le_bytes(*b"user=pho");
    const TAIL: u16 = u16::from_le_bytes(*b"ne");
    /// 0x20 on the letters of the first eight bytes, 0 on the `=` (byte 4).
    const HEAD_FOLD: u64 = 0x2020_2000_2020_2020;
    match raw.split_first_chunk::<8>() {
        Some((head, &[t0, t1])) => {
            u64::from_le_bytes(*head) | HEAD_FOLD == HEAD && u16::from_le_bytes([t0, t1]) | 0x2020 == TAIL
        }
        _ => false,
    }
}

/// [`fast_check`] that also shows every parameter, in order, to `visit` (name and value as
/// they came, which with this shape of list is exactly what [`Params::iter`] yields, and
/// whether the value is all `token` characters). A header list of 16 to 63 bytes (a Via's
/// `branch=...;rport`) takes [`scan_by_mask`], anything else [`scan_bytes`]. False when
/// `visit` returns false, so that a header with rules of its own for some parameters (Via)
/// checks them in the same pass, falling back to the full check when one fails.
#[inline(always)]
pub(crate) fn scan<'b>(
    raw: &'b [u8],
    grammar: ParamGrammar,
    visit: impl FnMut(&'b [u8], Option<&'b [u8]>, bool) -> bool,
) -> bool {
    let (name_class, value_class) = match grammar {
        ParamGrammar::Uri => (IN_PARAMCHAR, IN_PARAMCHAR),
        ParamGrammar::Header => (IN_TOKEN, IN_TOKEN | IN_HNV),
    };
    // URI lists (`user=phone`, `transport=udp`, `lr`) are short: the byte loop alone is
    // cheaper there, with its caller's code smaller (measured on the carrier INVITE's URIs).
    let seps = match grammar {
        ParamGrammar::Header => scan::param_seps(raw),
        ParamGrammar::Uri => None,
    };
    match seps {
        Some(seps) => scan_by_mask(raw, seps, (name_class, value_class), visit),
        None => scan_bytes(raw, (name_class, value_class), visit),
    }
}

/// [`scan`] byte by byte: lists too short or too long for [`scan::param_seps`].
#[inline(always)]
fn scan_bytes<'b>(
    raw: &'b [u8],
    (name_class, value_class): (u8, u8),
    mut visit: impl FnMut(&'b [u8], Option<&'b [u8]>, bool) -> bool,
) -> bool {
    let mut acc = ALL;
    // Start of the current name, and of its value once `=` is seen.
    let mut start = 0usize;
    let mut eq: Option<usize> = None;
    let mut i = 0usize;
    loop {
        let b = raw.get(i).copied();
        let c = b.map_or(PARAM_SEP, |b| PARAM_CLASS[b as usize]);
        if c & PARAM_SEP == 0 {
            acc &= c;
            i += 1;
            continue;
        }
        let need = if eq.is_some() { value_class } else { name_class };
        let part_start = eq.map_or(start, |e| e + 1);
        if i == part_start || acc & need == 0 {
            return false;
        }
        let part_token = acc & IN_TOKEN != 0;
        acc = ALL;
        if b == Some(b'=') {
            if eq.is_some() {
                return false;
            }
            eq = Some(i);
        } else {
            let (name, value) = match eq {
                Some(e) => (raw.get(start..e).unwrap_or_default(), raw.get(e + 1..i)),
                None => (raw.get(start..i).unwrap_or_default(), None),
            };
            if !visit(name, value, value.is_some() && part_token) {
                return false;
            }
            if b.is_none() {
                return true;
            }
            (start, eq) = (i + 1, None);
        }
        i += 1;
    }
}

/// [`scan`] of a list whose separators (`;` and `=`) are the bits of `seps` (from
/// [`scan::param_seps`], so at most [`scan::PARAM_LIST_MAX_BYTES`] bytes): the same state
/// machine, but a part's class is the AND of its bytes' classes in one pass without a
/// separator test per byte, and the next separator is the next bit. `classes` are the name
/// and the value class.
#[inline(always)]
fn scan_by_mask<'b>(
    raw: &'b [u8],
    seps: u64,
    (name_class, value_class): (u8, u8),
    mut visit: impl FnMut(&'b [u8], Option<&'b [u8]>, bool) -> bool,
) -> bool {
    // The end of the list counts as a separator (`raw` is shorter than 64 bytes).
    let mut bits = seps | 1u64.checked_shl(raw.len() as u32).unwrap_or(0);
    let mut start = 0usize;
    let mut eq: Option<usize> = None;
    loop {
        let i = bits.trailing_zeros() as usize;
        bits &= bits.wrapping_sub(1);
        let part_start = eq.map_or(start, |e| e + 1);
        let part = raw.get(part_start..i).unwrap_or_default();
        let acc = part.iter().fold(ALL, |acc, &b| acc & PARAM_CLASS[b as usize]);
        let need = if eq.is_some() { value_class } else { name_class };
        if part.is_empty() || acc & need == 0 {
            return false;
        }
        let part_token = acc & IN_TOKEN != 0;
        let b = raw.get(i).copied();
        if b == Some(b'=') {
            if eq.is_some() {
                return false;
            }
            eq = Some(i);
        } else {
            let (name, value) = match eq {
                Some(e) => (raw.get(start..e).unwrap_or_default(), raw.get(e + 1..i)),
                None => (raw.get(start..i).unwrap_or_default(), None),
            };
            if !visit(name, value, value.is_some() && part_token) {
                return false;
            }
            if b.is_none() {
                return true;
            }
            (start, eq) = (i + 1, None);
        }
    }
}

/// AND identity of the class bits: a part's class before its first byte.
const ALL: u8 = u8::MAX;

/// `token / host / quoted-string` (RFC 3261 `gen-value`).
fn header_value_ok(v: &[u8]) -> bool {
    match v {
        [b'"', inner @ .., b'"'] => quoted_ok(inner),
        _ => all_in(v, &TOKEN) || all_in(v, &HNV),
    }
}

/// The inside of a quoted string: no bare `"`, every `\` escapes one byte.
pub(crate) fn quoted_ok(inner: &[u8]) -> bool {
    let mut i = 0;
    while let Some(&b) = inner.get(i) {
        match b {
            b'\\' if i + 1 < inner.len() => i += 2,
            b'\\' | b'"' => return false,
            _ => i += 1,
        }
    }
    true
}

/// Splits at the first `;` outside a quoted string.
fn split_param(s: &[u8]) -> (&[u8], Option<&[u8]>) {
    // Before the first `"` every `;` splits.
    for (i, &b) in s.iter().enumerate() {
        match b {
            b';' => return (s.get(..i).unwrap_or_default(), s.get(i + 1..)),
            b'"' => return split_param_quoted(s),
            _ => {}
        }
    }
    (s, None)
}

/// [`split_param`] for a list holding a quoted string.
fn split_param_quoted(s: &[u8]) -> (&[u8], Option<&[u8]>) {
    let mut in_quotes = false;
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        match b {
            b'\\' if in_quotes => i += 1,
            b'"' => in_quotes = !in_quotes,
            b';' if !in_quotes => return (s.get(..i).unwrap_or_default(), s.get(i + 1..)),
            _ => {}
        }
        i += 1;
    }
    (s, None)
}

/// `name [ = value ]`, both trimmed of LWS.
fn name_value(one: &[u8]) -> (&[u8], Option<&[u8]>) {
    match one.iter().position(|&b| b == b'=') {
        Some(eq) => (
            trim_lws(one.get(..eq).unwrap_or_default()),
            Some(trim_lws(one.get(eq + 1..).unwrap_or_default())),
        ),
        None => (trim_lws(one), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_params() {
        let table: &[(&[u8], bool)] = &[
            (b"branch=z9hG4bK1;rport", true),
            (b" branch  =   z9hG4bK9ikj8  ", true),
            (b"tag=a;x=\"quoted; with, separators\"", true),
            (b"received=[2001:db8::1]", true),
            (b";", false),
            (b"", false),
            (b"a;;b", false),
            (b"a=", false),
            (b"a=\"open", false),
            (b"bad name=1", false),
        ];
        for (raw, ok) in table {
            assert_eq!(
                Params::parse(raw, ParamGrammar::Header).is_ok(),
                *ok,
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
        let p = Params::parse(b" tag = 98asjd8 ;rport;x=\"a;b\"", ParamGrammar::Header).unwrap();
        assert_eq!(p.get("TAG"), Some(Some(&b"98asjd8"[..])));
        assert_eq!(p.get("rport"), Some(None));
        assert_eq!(p.get("x"), Some(Some(&b"\"a;b\""[..])));
        assert_eq!(p.iter().count(), 3);
    }

    proptest::proptest! {
        /// The one-pass iterator yields what splitting at `;` (outside quotes) and then at the
        /// first `=` yields.
        #[test]
        fn iteration_matches_split_then_name_value(raw in proptest::collection::vec(
            proptest::sample::select(b"a=;\" \\\t".to_vec()), 0..24)) {
            let mut want = Vec::new();
            let mut rest = (!raw.is_empty()).then_some(&raw[..]);
            while let Some(r) = rest {
                let (one, next) = split_param(r);
                want.push(name_value(one));
                rest = next;
            }
            let got: Vec<_> = Params { raw: &raw }.iter().collect();
            proptest::prop_assert_eq!(got, want);
        }

        /// The masked pass decides and shows every list as the byte loop does, in both
        /// grammars (lists of every length the mask takes).
        #[test]
        fn masked_scan_matches_byte_loop(raw in proptest::collection::vec(
            proptest::sample::select(b"ab9=;;\"%-.!~*'_+`:[]/ \x80".to_vec()), 0..70),
            header in proptest::bool::ANY) {
            let classes = if header { (IN_TOKEN, IN_TOKEN | IN_HNV) } else { (IN_PARAMCHAR, IN_PARAMCHAR) };
            let Some(seps) = scan::param_seps(&raw) else { return Ok(()) };
            let mut by_bytes = Vec::new();
            let bytes_ok = scan_bytes(&raw, classes, |n, v, t| { by_bytes.push((n, v, t)); true });
            let mut by_mask = Vec::new();
            let mask_ok = scan_by_mask(&raw, seps, classes, |n, v, t| { by_mask.push((n, v, t)); true });
            proptest::prop_assert_eq!(mask_ok, bytes_ok);
            proptest::prop_assert_eq!(by_mask, by_bytes);
        }
    }

    #[test]
    fn user_phone_in_any_case_and_nothing_else() {
        assert!(is_user_phone(b"user=phone"));
        assert!(is_user_phone(b"USER=Phone"));
        for raw in [
            &b"user=phon"[..],
            b"user=phonex",
            b"user:phone",
            b"user=phon\x05",
            b"usEr=p\x08one",
            b"user\x1dphone",
            b"",
        ] {
            assert!(!is_user_phone(raw), "{:?}", String::from_utf8_lossy(raw));
        }
        // Every one-byte change of the list is decided as the byte loop decides it.
        for i in 0..10 {
            for b in 0..=255u8 {
                let mut raw = *b"user=phone";
                raw[i] = b;
                if is_user_phone(&raw) {
                    assert!(
                        scan(&raw, ParamGrammar::Uri, |_, _, _| true)
                            && scan(&raw, ParamGrammar::Header, |_, _, _| true)
                    );
                    assert!(raw.eq_ignore_ascii_case(b"user=phone"), "{:?}", String::from_utf8_lossy(&raw));
                }
            }
        }
    }

    #[test]
    fn uri_params() {
        let table: &[(&[u8], bool)] = &[
            (b"user=phone", true),
            (b"lr;transport=tcp", true),
            (b"%6C%72;n%61me=v%61lue%25%34%31", true),
            (b"lr;unknownwith=value;unknown-no-value", true),
            (b" lr", false),
            (b"a;;b", false),
            (b"%zz", false),
        ];
        for (raw, ok) in table {
            assert_eq!(
                Params::parse(raw, ParamGrammar::Uri).is_ok(),
                *ok,
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }
}
