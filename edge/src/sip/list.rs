//! Comma-separated header values (RFC 3261 §7.3.1): the values of every header line of one
//! kind, in order, split at commas outside quoted strings and `<...>`.

use super::HeaderIndexEntry;
use super::chars::trim_lws;
use super::error::{ErrorKind, Invalid};
use super::header::HeaderKind;

/// Iterator over the raw values of all header lines of one kind, split at top-level commas.
#[derive(Debug, Clone)]
pub(crate) struct ListIter<'b> {
    buf: &'b [u8],
    entries: core::slice::Iter<'b, HeaderIndexEntry>,
    kind: HeaderKind,
    /// The rest of the current header line's value, if any.
    rest: Option<&'b [u8]>,
}

impl<'b> ListIter<'b> {
    /// Values of the header lines of `kind` among `entries` (which may start at the first one).
    pub(crate) fn new(buf: &'b [u8], entries: &'b [HeaderIndexEntry], kind: HeaderKind) -> Self {
        Self { buf, entries: entries.iter(), kind, rest: None }
    }
}

impl<'b> Iterator for ListIter<'b> {
    type Item = Result<&'b [u8], Invalid>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(rest) = self.rest.take() {
                let (one, next) = split_comma(rest);
                self.rest = next;
                let one = trim_lws(one);
                if one.is_empty() {
                    return Some(Err(Invalid::new(rest, ErrorKind::HeaderValue, "empty list element")));
                }
                return Some(Ok(one));
            }
            let e = self.entries.find(|e| e.kind == self.kind)?;
            self.rest = Some(e.value(self.buf));
        }
    }
}

/// Splits at the first comma outside a quoted string and outside `<...>`.
pub(crate) fn split_comma(s: &[u8]) -> (&[u8], Option<&[u8]>) {
    // Before the first `"` or `<` no state can change: a comma found first splits.
    match memchr::memchr3(b',', b'"', b'<', s) {
        None => return (s, None),
        Some(i) if s.get(i) == Some(&b',') => return (s.get(..i).unwrap_or_default(), s.get(i + 1..)),
        Some(_) => {}
    }
    let mut in_quotes = false;
    let mut in_angle = false;
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        match b {
            b'\\' if in_quotes => i += 1,
            b'"' if !in_angle => in_quotes = !in_quotes,
            b'<' if !in_quotes => in_angle = true,
            b'>' if !in_quotes => in_angle = false,
            b',' if !in_quotes && !in_angle => return (s.get(..i).unwrap_or_default(), s.get(i + 1..)),
            _ => {}
        }
        i += 1;
    }
    (s, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Value, first element, rest.
    type Case<'a> = (&'a [u8], &'a [u8], Option<&'a [u8]>);

    #[test]
    fn commas_split_outside_quotes_and_angles() {
        let table: &[Case<'_>] = &[
            (b"a, b", b"a", Some(b" b")),
            (b"\"x, y\" <sip:a>, b", b"\"x, y\" <sip:a>", Some(b" b")),
            (b"<sip:a,b@h>;x=1", b"<sip:a,b@h>;x=1", None),
            (b"\"q\\\",\" <sip:a>,", b"\"q\\\",\" <sip:a>", Some(b"")),
        ];
        for (s, first, rest) in table {
            assert_eq!(split_comma(s), (*first, *rest), "{:?}", String::from_utf8_lossy(s));
        }
    }
}
