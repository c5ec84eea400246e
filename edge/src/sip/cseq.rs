//! CSeq and the other scalar headers (RFC 3261 §20.16, §20.19, §20.22; RFC 4028 §4):
//! ```text
//! CSeq            = "CSeq" HCOLON 1*DIGIT LWS Method
//! Max-Forwards    = "Max-Forwards" HCOLON 1*DIGIT
//! Expires         = "Expires" HCOLON delta-seconds
//! Session-Expires = ("Session-Expires" / "x") HCOLON delta-seconds *(SEMI se-params)
//! ```

use super::chars::{DecimalError, LWS, leading_digits_word, parse_decimal, trim_lws};
use super::error::{ErrorKind, Invalid};
use super::params::{ParamGrammar, Params};
use super::startline::Method;

/// A CSeq value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CSeq<'b> {
    /// The sequence number, below 2^31 in practice and at most 2^32-1 by the grammar.
    pub number: u32,
    /// The method.
    pub method: Method<'b>,
}

impl<'b> CSeq<'b> {
    pub(crate) fn parse(value: &'b [u8]) -> Result<CSeq<'b>, Invalid> {
        match Self::parse_fast(value) {
            Some(cseq) => Ok(cseq),
            None => Self::parse_general(value),
        }
    }

    /// `digits SP method` with one SP and nothing around it, in one pass; `None` for anything
    /// else, valid or not, which [`Self::parse_general`] decides (where this returns a CSeq,
    /// that one returns the same: the SP is the first LWS, the digits the number).
    #[inline(always)]
    fn parse_fast(value: &'b [u8]) -> Option<CSeq<'b>> {
        /// Digits of the largest CSeq number, 2^32-1.
        const MAX_DIGITS: usize = 10;
        // Up to seven digits from one word; the loop below then stops at once.
        let (mut n, mut i) = leading_digits_word(value).unwrap_or((0, 0));
        while let Some(&b) = value.get(i) {
            let digit = b.wrapping_sub(b'0');
            if digit > 9 {
                break;
            }
            if i == MAX_DIGITS {
                return None;
            }
            n = n * 10 + u64::from(digit);
            i += 1;
        }
        let method = match value.get(i..)? {
            [b' ', method @ ..] if i > 0 => method,
            _ => return None,
        };
        match (method.first(), method.last()) {
            (Some(&f), Some(&l)) if !LWS[f as usize] && !LWS[l as usize] => {}
            _ => return None,
        }
        // INVITE, the method of every call set-up, by one compare before the method table.
        let method = if method == b"INVITE" { Method::Invite } else { Method::from_bytes(method)? };
        Some(CSeq { number: u32::try_from(n).ok()?, method })
    }

    /// Any CSeq value, with every error.
    #[inline(never)]
    fn parse_general(value: &'b [u8]) -> Result<CSeq<'b>, Invalid> {
        let bad = |why| Invalid::new(value, ErrorKind::HeaderValue, why);
        let sp = value.iter().position(|&b| LWS[b as usize]).ok_or(bad("CSeq without method"))?;
        let number = number(value.get(..sp).unwrap_or_default(), u32::MAX.into(), "CSeq number")?;
        let method = trim_lws(value.get(sp..).unwrap_or_default());
        let method = Method::from_bytes(method).ok_or(bad("CSeq method is not a token"))?;
        Ok(CSeq { number: u32::try_from(number).map_err(|_| bad("CSeq number above 2^32-1"))?, method })
    }
}

/// A Session-Expires value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionExpires<'b> {
    /// The session interval, in seconds.
    pub seconds: u32,
    /// The parameters (`refresher`).
    pub params: Params<'b>,
}

impl<'b> SessionExpires<'b> {
    pub(crate) fn parse(value: &'b [u8]) -> Result<SessionExpires<'b>, Invalid> {
        let semi = value.iter().position(|&b| b == b';').unwrap_or(value.len());
        let seconds = delta_seconds(trim_lws(value.get(..semi).unwrap_or_default()))?;
        let params = match value.get(semi + 1..) {
            Some(p) => Params::parse(p, ParamGrammar::Header)?,
            None => Params::default(),
        };
        Ok(SessionExpires { seconds, params })
    }

    /// The `refresher` parameter (`uac` or `uas`).
    pub fn refresher(&self) -> Option<&'b [u8]> {
        self.params.get("refresher").flatten()
    }
}

/// `1*DIGIT` at most `max`, with distinct reasons for syntax and size.
pub(crate) fn number(s: &[u8], max: u64, what: &'static str) -> Result<u64, Invalid> {
    parse_decimal(s, max).map_err(|e| match e {
        DecimalError::Syntax => Invalid::new(s, ErrorKind::HeaderValue, what),
        DecimalError::TooLarge => Invalid::new(s, ErrorKind::NumberTooLarge, what),
    })
}

/// A number of one to four digits (at most 9,999, below every maximum [`number`] is given
/// with here: Content-Length's is 65,535), read at once; `None` for anything else, which
/// [`number`] decides.
#[inline(always)]
pub(crate) fn short_number(s: &[u8]) -> Option<u16> {
    /// Digits read at once.
    const MAX_DIGITS: usize = 4;
    if s.is_empty() || s.len() > MAX_DIGITS {
        return None;
    }
    s.iter().try_fold(0u16, |n, &b| {
        let d = b.wrapping_sub(b'0');
        (d <= 9).then(|| n * 10 + u16::from(d))
    })
}

/// `delta-seconds = 1*DIGIT`, at most 2^32-1.
pub(crate) fn delta_seconds(s: &[u8]) -> Result<u32, Invalid> {
    let n = number(s, u32::MAX.into(), "delta-seconds")?;
    u32::try_from(n).map_err(|_| Invalid::new(s, ErrorKind::NumberTooLarge, "delta-seconds"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Value, expected number and method.
    type Case<'a> = (&'a [u8], Option<(u32, Method<'a>)>);

    proptest::proptest! {
        /// Where the short reader takes a number, the general one reads the same.
        #[test]
        fn short_numbers_match_the_general_reader(s in proptest::collection::vec(
            proptest::sample::select(b"0123456789 x\x80".to_vec()), 0..7)) {
            if let Some(n) = short_number(&s) {
                proptest::prop_assert_eq!(number(&s, u16::MAX.into(), "n").ok(), Some(u64::from(n)));
            }
            if s.len() <= 4 && number(&s, u16::MAX.into(), "n").is_ok() {
                proptest::prop_assert!(short_number(&s).is_some());
            }
        }
    }

    #[test]
    fn cseq_values() {
        let table: &[Case<'_>] = &[
            (b"314159 INVITE", Some((314159, Method::Invite))),
            (b"0009\r\n  INVITE", Some((9, Method::Invite))),
            (b"29344 RE%47IST%45R", Some((29344, Method::Other("RE%47IST%45R")))),
            (b"4294967295 ACK", Some((u32::MAX, Method::Ack))),
            (b"4294967296 ACK", None),
            (b"36893488147419103232 REGISTER", None),
            (b"INVITE", None),
            (b"1", None),
            (b"1 INV ITE", None),
            (b"-1 INVITE", None),
        ];
        for (raw, want) in table {
            let got = CSeq::parse(raw).ok().map(|c| (c.number, c.method));
            assert_eq!(got, *want, "{:?}", String::from_utf8_lossy(raw));
        }
        let e = CSeq::parse(b"36893488147419103232 REGISTER").unwrap_err().within(b"");
        assert_eq!(e.kind(), ErrorKind::NumberTooLarge);
    }

    #[test]
    fn session_expires() {
        let s = SessionExpires::parse(b"1800;refresher=uac").unwrap();
        assert_eq!((s.seconds, s.refresher()), (1800, Some(&b"uac"[..])));
        assert_eq!(SessionExpires::parse(b"90").unwrap().refresher(), None);
        assert!(SessionExpires::parse(b"x;refresher=uac").is_err());
        assert!(delta_seconds(b"10000000000000000000000").is_err());
    }
}
