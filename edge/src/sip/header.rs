//! Header names: [`HeaderKind`] and the one table that maps long and compact names to it
//! (RFC 3261 §7.3.3 and §20; compact forms from the IANA SIP parameters registry).
//! Names compare case-insensitively; a name not in the table is [`HeaderKind::Other`] and kept.

/// A header the parser knows by name. Unknown headers are [`HeaderKind::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
#[non_exhaustive]
pub enum HeaderKind {
    /// `Via` / `v`
    Via,
    /// `From` / `f`
    From,
    /// `To` / `t`
    To,
    /// `Call-ID` / `i`
    CallId,
    /// `CSeq`
    CSeq,
    /// `Max-Forwards`
    MaxForwards,
    /// `Contact` / `m`
    Contact,
    /// `Route`
    Route,
    /// `Record-Route`
    RecordRoute,
    /// `Content-Length` / `l`
    ContentLength,
    /// `Content-Type` / `c`
    ContentType,
    /// `P-Asserted-Identity`
    PAssertedIdentity,
    /// `Identity` / `y`
    Identity,
    /// `User-Agent`
    UserAgent,
    /// `Expires`
    Expires,
    /// `Session-Expires` / `x`
    SessionExpires,
    /// `Subject` / `s`
    Subject,
    /// `Supported` / `k`
    Supported,
    /// `Require`
    Require,
    /// `Proxy-Require`
    ProxyRequire,
    /// `Allow`
    Allow,
    /// `Accept`
    Accept,
    /// `Content-Encoding` / `e`
    ContentEncoding,
    /// `Event` / `o`
    Event,
    /// `Refer-To` / `r`
    ReferTo,
    /// `Allow-Events` / `u`
    AllowEvents,
    /// `Accept-Contact` / `a`
    AcceptContact,
    /// `Referred-By` / `b`
    ReferredBy,
    /// `Request-Disposition` / `d`
    RequestDisposition,
    /// `Reject-Contact` / `j`
    RejectContact,
    /// `Identity-Info` / `n`
    IdentityInfo,
    /// `Min-SE`
    MinSe,
    /// `Retry-After`
    RetryAfter,
    /// `Authorization`
    Authorization,
    /// `Proxy-Authorization`
    ProxyAuthorization,
    /// `WWW-Authenticate`
    WwwAuthenticate,
    /// `Proxy-Authenticate`
    ProxyAuthenticate,
    /// Any other header, kept as it came.
    Other,
}

/// Long name, compact form, kind: the one table of header names.
const NAMES: &[(&str, Option<u8>, HeaderKind)] = &[
    ("Via", Some(b'v'), HeaderKind::Via),
    ("From", Some(b'f'), HeaderKind::From),
    ("To", Some(b't'), HeaderKind::To),
    ("Call-ID", Some(b'i'), HeaderKind::CallId),
    ("CSeq", None, HeaderKind::CSeq),
    ("Max-Forwards", None, HeaderKind::MaxForwards),
    ("Contact", Some(b'm'), HeaderKind::Contact),
    ("Route", None, HeaderKind::Route),
    ("Record-Route", None, HeaderKind::RecordRoute),
    ("Content-Length", Some(b'l'), HeaderKind::ContentLength),
    ("Content-Type", Some(b'c'), HeaderKind::ContentType),
    ("P-Asserted-Identity", None, HeaderKind::PAssertedIdentity),
    ("Identity", Some(b'y'), HeaderKind::Identity),
    ("User-Agent", None, HeaderKind::UserAgent),
    ("Expires", None, HeaderKind::Expires),
    ("Session-Expires", Some(b'x'), HeaderKind::SessionExpires),
    ("Subject", Some(b's'), HeaderKind::Subject),
    ("Supported", Some(b'k'), HeaderKind::Supported),
    ("Require", None, HeaderKind::Require),
    ("Proxy-Require", None, HeaderKind::ProxyRequire),
    ("Allow", None, HeaderKind::Allow),
    ("Accept", None, HeaderKind::Accept),
    ("Content-Encoding", Some(b'e'), HeaderKind::ContentEncoding),
    ("Event", Some(b'o'), HeaderKind::Event),
    ("Refer-To", Some(b'r'), HeaderKind::ReferTo),
    ("Allow-Events", Some(b'u'), HeaderKind::AllowEvents),
    ("Accept-Contact", Some(b'a'), HeaderKind::AcceptContact),
    ("Referred-By", Some(b'b'), HeaderKind::ReferredBy),
    ("Request-Disposition", Some(b'd'), HeaderKind::RequestDisposition),
    ("Reject-Contact", Some(b'j'), HeaderKind::RejectContact),
    ("Identity-Info", Some(b'n'), HeaderKind::IdentityInfo),
    ("Min-SE", None, HeaderKind::MinSe),
    ("Retry-After", None, HeaderKind::RetryAfter),
    ("Authorization", None, HeaderKind::Authorization),
    ("Proxy-Authorization", None, HeaderKind::ProxyAuthorization),
    ("WWW-Authenticate", None, HeaderKind::WwwAuthenticate),
    ("Proxy-Authenticate", None, HeaderKind::ProxyAuthenticate),
];

/// Slots of the perfect hash over [`NAMES`] (a power of two).
const SLOTS: usize = 256;
/// log2 of [`SLOTS`].
const SLOT_BITS: u32 = 8;
/// An empty slot.
const EMPTY: u8 = u8::MAX;
/// Longest long name, in bytes: three 8-byte words.
const MAX_NAME_BYTES: usize = 24;
/// `| FOLD` folds the ASCII letters of eight bytes to lower case (it is used for hashing only:
/// the comparison folds letter positions alone, see [`Slot`]).
const FOLD: u64 = 0x2020_2020_2020_2020;

/// The bytes `s[i..i + 8]` as a little-endian word, zero past the end of `s`.
const fn word(s: &[u8], i: usize) -> u64 {
    let mut w = 0u64;
    let mut k = 0;
    while k < 8 && i + k < s.len() {
        w |= (s[i + k] as u64) << (8 * k);
        k += 1;
    }
    w
}

/// The three words a name of up to 24 bytes is compared by: bytes 0..8, 8..16 and 16..24,
/// zero past its end.
const fn words(s: &[u8]) -> [u64; 3] {
    [word(s, 0), word(s, 8), word(s, 16)]
}

/// `LOW_BYTES[n]`: the mask of the low `n` bytes of a word, `n` in 0..=8.
const LOW_BYTES: [u64; 9] = {
    let mut t = [0u64; 9];
    let mut n = 1;
    while n < 9 {
        t[n] = if n == 8 { u64::MAX } else { (1u64 << (8 * n)) - 1 };
        n += 1;
    }
    t
};

/// The hash of a name from its length and its first word (zero-padded), case folded.
const fn slot(len: usize, w0: u64, seed: u64) -> usize {
    (((w0 | FOLD) ^ len as u64).wrapping_mul(seed) >> (64 - SLOT_BITS)) as usize
}

/// Tries `seed`: the slot table when no two names share a slot.
const fn try_seed(seed: u64) -> Option<[u8; SLOTS]> {
    let mut t = [EMPTY; SLOTS];
    let mut i = 0;
    while i < NAMES.len() {
        let n = NAMES[i].0.as_bytes();
        let s = slot(n.len(), word(n, 0), seed);
        if t[s] != EMPTY {
            return None;
        }
        t[s] = i as u8;
        i += 1;
    }
    Some(t)
}

/// Seeds tried at compile time before giving up (a build error, not a run-time one).
const SEED_TRIES: u64 = 100_000;

/// The perfect hash, found at compile time: (seed, slot → index into [`NAMES`]).
const PERFECT: (u64, [u8; SLOTS]) = {
    assert!(NAMES.len() < EMPTY as usize);
    let mut k = 0;
    loop {
        assert!(k < SEED_TRIES, "no perfect hash seed for the header names");
        let seed = 0x9E37_79B9_7F4A_7C15u64.wrapping_add(k.wrapping_mul(2));
        if let Some(t) = try_seed(seed) {
            break (seed, t);
        }
        k += 1;
    }
};

/// One slot of [`BY_SLOT`]: a long name's [`words`] in lower case, the bits that fold each
/// word's letters (0x20 on letters, 0 on `-`), its length and kind. `(w | fold) == lower`
/// holds for a word `w` of a name exactly when its letters match in any case and every other
/// byte matches as it is, so a match also proves the name a token. An empty slot has `len` 0,
/// which no looked-up name has.
#[derive(Clone, Copy)]
struct Slot {
    lower: [u64; 3],
    fold: [u64; 3],
    len: usize,
    kind: HeaderKind,
}

/// The perfect hash's slots with what the comparison after the hash needs, so that a lookup
/// loads one entry.
static BY_SLOT: [Slot; SLOTS] = {
    let mut t = [Slot { lower: [0; 3], fold: [0; 3], len: 0, kind: HeaderKind::Other }; SLOTS];
    let mut s = 0;
    while s < SLOTS {
        let i = PERFECT.1[s];
        if i != EMPTY {
            let (name, _, kind) = NAMES[i as usize];
            let n = name.as_bytes();
            assert!(n.len() <= MAX_NAME_BYTES && n.len() >= 2);
            let mut lower = [0u8; MAX_NAME_BYTES];
            let mut fold = [0u8; MAX_NAME_BYTES];
            let mut j = 0;
            while j < n.len() {
                assert!(n[j].is_ascii_alphabetic() || n[j] == b'-');
                lower[j] = n[j].to_ascii_lowercase();
                fold[j] = if n[j].is_ascii_alphabetic() { 0x20 } else { 0 };
                j += 1;
            }
            let (lower, _) = lower.split_at(n.len());
            let (fold, _) = fold.split_at(n.len());
            t[s].lower = words(lower);
            t[s].fold = words(fold);
            t[s].len = n.len();
            t[s].kind = kind;
        }
        s += 1;
    }
    t
};
/// Compact forms, built at compile time: `a`..=`z` → kind.
static BY_LETTER: [HeaderKind; 26] = {
    let mut t = [HeaderKind::Other; 26];
    let mut i = 0;
    while i < NAMES.len() {
        if let Some(c) = NAMES[i].1 {
            t[(c - b'a') as usize] = NAMES[i].2;
        }
        i += 1;
    }
    t
};

impl HeaderKind {
    /// Number of kinds, [`HeaderKind::Other`] included.
    pub const COUNT: usize = HeaderKind::Other as usize + 1;

    /// The kind of a header name (long or compact form, any case).
    pub fn from_name(name: &[u8]) -> HeaderKind {
        match name {
            [] => HeaderKind::Other,
            [c] => Self::from_letter(*c),
            _ if name.len() > MAX_NAME_BYTES => HeaderKind::Other,
            _ => Self::from_words(name.len(), words(name)),
        }
    }

    /// [`Self::from_name`] for the first `len` bytes of `window` (the parser's 64 bytes from
    /// the start of a header line), read as whole words and masked to the name.
    #[inline(always)]
    pub(crate) fn from_window(window: &[u8; 64], len: usize) -> HeaderKind {
        let word = |i: usize| {
            let n = len.saturating_sub(i).min(8);
            let w =
                window.get(i..i + 8).and_then(|w| w.first_chunk::<8>()).map_or(0, |w| u64::from_le_bytes(*w));
            w & LOW_BYTES.get(n).copied().unwrap_or(0)
        };
        if !(2..=MAX_NAME_BYTES).contains(&len) {
            return if len == 1 { Self::from_letter(window[0]) } else { HeaderKind::Other };
        }
        let w0 = word(0);
        let Some(e) = BY_SLOT.get(slot(len, w0, PERFECT.0)).filter(|e| e.len == len) else {
            return HeaderKind::Other;
        };
        // Only the words the name reaches: the slot's others are zero, and so would be ours.
        let same = |k: usize, w: u64| (w | e.fold[k]) == e.lower[k];
        let matched = same(0, w0) && (len <= 8 || same(1, word(8))) && (len <= 16 || same(2, word(16)));
        if matched { e.kind } else { HeaderKind::Other }
    }

    /// A compact form (`a`..=`z`, any case).
    fn from_letter(c: u8) -> HeaderKind {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() {
            BY_LETTER.get(usize::from(c - b'a')).copied().unwrap_or(HeaderKind::Other)
        } else {
            HeaderKind::Other
        }
    }

    /// The lookup of a long name (2..=24 bytes) by its [`words`].
    #[inline]
    fn from_words(len: usize, w: [u64; 3]) -> HeaderKind {
        match BY_SLOT.get(slot(len, w[0], PERFECT.0)) {
            Some(e)
                if e.len == len
                    && ((w[0] | e.fold[0]) ^ e.lower[0])
                        | ((w[1] | e.fold[1]) ^ e.lower[1])
                        | ((w[2] | e.fold[2]) ^ e.lower[2])
                        == 0 =>
            {
                e.kind
            }
            _ => HeaderKind::Other,
        }
    }

    /// The canonical long name (`"Other"` for unknown headers).
    pub fn name(self) -> &'static str {
        NAMES.iter().find(|n| n.2 == self).map_or("Other", |n| n.0)
    }

    /// Headers whose value is a comma-separated list the accessors split (Via, Contact, Route,
    /// Record-Route).
    pub fn is_list(self) -> bool {
        matches!(self, HeaderKind::Via | HeaderKind::Contact | HeaderKind::Route | HeaderKind::RecordRoute)
    }

    /// Headers that must appear at most once (RFC 3261 §20: a second value is a 400).
    pub fn is_singleton(self) -> bool {
        matches!(
            self,
            HeaderKind::From
                | HeaderKind::To
                | HeaderKind::CallId
                | HeaderKind::CSeq
                | HeaderKind::MaxForwards
                | HeaderKind::ContentLength
                | HeaderKind::ContentType
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_and_compact_form_maps_to_its_kind() {
        for (long, compact, kind) in NAMES {
            assert_eq!(HeaderKind::from_name(long.as_bytes()), *kind, "{long}");
            assert_eq!(HeaderKind::from_name(long.to_ascii_uppercase().as_bytes()), *kind);
            assert_eq!(HeaderKind::from_name(long.to_ascii_lowercase().as_bytes()), *kind);
            if let Some(c) = compact {
                assert_eq!(HeaderKind::from_name(&[*c]), *kind, "{}", *c as char);
                assert_eq!(HeaderKind::from_name(&[c.to_ascii_uppercase()]), *kind);
            }
            assert_eq!(kind.name(), *long);
        }
    }

    #[test]
    fn one_changed_byte_is_another_name() {
        for (long, _, kind) in NAMES {
            for i in 0..long.len() {
                let mut n = long.as_bytes().to_vec();
                n[i] = if n[i] == b'x' { b'y' } else { b'x' };
                assert_ne!(HeaderKind::from_name(&n), *kind, "{}", String::from_utf8_lossy(&n));
            }
        }
    }

    #[test]
    fn lookup_in_a_window_matches_lookup_of_the_name() {
        let mut names: Vec<Vec<u8>> = NAMES.iter().map(|n| n.0.as_bytes().to_vec()).collect();
        names.extend(NAMES.iter().map(|n| n.0.to_ascii_uppercase().into_bytes()));
        names.extend(
            [
                &b"Call\rID"[..],
                b"Call-I",
                b"X-Custom",
                b"v",
                b"Q",
                b"Max-Forwards2",
                b"",
                b"Proxy-Authorization-X",
            ]
            .map(<[u8]>::to_vec),
        );
        for n in names {
            for fill in [b':', b'a', 0] {
                let mut window = [fill; 64];
                window[..n.len()].copy_from_slice(&n);
                assert_eq!(
                    HeaderKind::from_window(&window, n.len()),
                    HeaderKind::from_name(&n),
                    "{:?}",
                    String::from_utf8_lossy(&n)
                );
            }
        }
        assert_eq!(HeaderKind::from_name(b"Call\rID"), HeaderKind::Other);
    }

    #[test]
    fn unknown_names_are_other() {
        let table: &[&[u8]] =
            &[b"C%6Fntact", b"X-Custom", b"q", b"Vias", b"Vi", b"", b"1", b"NewFangledHeader"];
        for n in table {
            assert_eq!(HeaderKind::from_name(n), HeaderKind::Other, "{:?}", String::from_utf8_lossy(n));
        }
    }
}
