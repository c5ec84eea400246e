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
/// Longest long name, in bytes.
const MAX_NAME_BYTES: usize = 24;

/// The hash key of a long name: its length and its first, second and last bytes, case folded
/// (`| 0x20` folds ASCII letters and leaves the other token characters of these names alone).
const fn key(len: usize, first: u8, second: u8, last: u8) -> u32 {
    (len as u32)
        | ((first as u32 | 0x20) << 8)
        | ((second as u32 | 0x20) << 16)
        | ((last as u32 | 0x20) << 24)
}

const fn slot(key: u32, seed: u32) -> usize {
    (key.wrapping_mul(seed) >> (32 - SLOT_BITS)) as usize
}

const fn name_key(n: &[u8]) -> u32 {
    key(n.len(), n[0], n[1], n[n.len() - 1])
}

/// Tries `seed`: the slot table when no two names share a slot.
const fn try_seed(seed: u32) -> Option<[u8; SLOTS]> {
    let mut t = [EMPTY; SLOTS];
    let mut i = 0;
    while i < NAMES.len() {
        let s = slot(name_key(NAMES[i].0.as_bytes()), seed);
        if t[s] != EMPTY {
            return None;
        }
        t[s] = i as u8;
        i += 1;
    }
    Some(t)
}

/// Seeds tried at compile time before giving up (a build error, not a run-time one).
const SEED_TRIES: u32 = 100_000;

/// The perfect hash, found at compile time: (seed, slot → index into [`NAMES`]).
const PERFECT: (u32, [u8; SLOTS]) = {
    assert!(NAMES.len() < EMPTY as usize);
    let mut k = 0;
    loop {
        assert!(k < SEED_TRIES, "no perfect hash seed for the header names");
        let seed = 0x9E37_79B1u32.wrapping_add(k.wrapping_mul(2));
        if let Some(t) = try_seed(seed) {
            break (seed, t);
        }
        k += 1;
    }
};

/// One slot of [`BY_SLOT`]: a long name in lower case (`len` bytes of `lower`) and its kind;
/// an empty slot has `len` 0, which no name of two bytes or more matches.
#[derive(Clone, Copy)]
struct Slot {
    lower: [u8; MAX_NAME_BYTES],
    len: usize,
    kind: HeaderKind,
}

/// The perfect hash's slots with what the comparison after the hash needs, so that a lookup
/// loads one entry.
static BY_SLOT: [Slot; SLOTS] = {
    let mut t = [Slot { lower: [0; MAX_NAME_BYTES], len: 0, kind: HeaderKind::Other }; SLOTS];
    let mut s = 0;
    while s < SLOTS {
        let i = PERFECT.1[s];
        if i != EMPTY {
            let (name, _, kind) = NAMES[i as usize];
            let n = name.as_bytes();
            assert!(n.len() <= MAX_NAME_BYTES && n.len() >= 2);
            let mut j = 0;
            while j < n.len() {
                t[s].lower[j] = n[j].to_ascii_lowercase();
                j += 1;
            }
            t[s].len = n.len();
            t[s].kind = kind;
        }
        s += 1;
    }
    t
};

/// `name` (token characters) equals `lower` (lower-case letters, digits, `-`) ignoring case.
/// `| 0x20` folds exactly here: the only other bytes it maps onto `-` or a digit are control
/// characters, which a token cannot hold. Names of 8 bytes or more compare eight bytes at a time,
/// the last word overlapping the one before; shorter names as two overlapping halves.
fn eq_folded(name: &[u8], lower: &[u8]) -> bool {
    const FOLD8: u64 = 0x2020_2020_2020_2020;
    const FOLD4: u32 = 0x2020_2020;
    const FOLD2: u16 = 0x2020;
    if name.len() != lower.len() {
        return false;
    }
    let (mut a, mut b) = (name, lower);
    if a.len() >= 8 {
        while let (Some((x, ra)), Some((y, rb))) = (a.split_first_chunk::<8>(), b.split_first_chunk::<8>()) {
            if u64::from_le_bytes(*x) | FOLD8 != u64::from_le_bytes(*y) {
                return false;
            }
            (a, b) = (ra, rb);
        }
        return match (name.last_chunk::<8>(), lower.last_chunk::<8>()) {
            (Some(x), Some(y)) => u64::from_le_bytes(*x) | FOLD8 == u64::from_le_bytes(*y),
            _ => false,
        };
    }
    if a.len() >= 4 {
        return match (a.first_chunk::<4>(), b.first_chunk::<4>(), a.last_chunk::<4>(), b.last_chunk::<4>()) {
            (Some(x1), Some(y1), Some(x2), Some(y2)) => {
                u32::from_le_bytes(*x1) | FOLD4 == u32::from_le_bytes(*y1)
                    && u32::from_le_bytes(*x2) | FOLD4 == u32::from_le_bytes(*y2)
            }
            _ => false,
        };
    }
    match (a.first_chunk::<2>(), b.first_chunk::<2>(), a.last_chunk::<2>(), b.last_chunk::<2>()) {
        (Some(x1), Some(y1), Some(x2), Some(y2)) => {
            u16::from_le_bytes(*x1) | FOLD2 == u16::from_le_bytes(*y1)
                && u16::from_le_bytes(*x2) | FOLD2 == u16::from_le_bytes(*y2)
        }
        _ => a.iter().zip(b).all(|(x, y)| x | 0x20 == *y),
    }
}

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
            [c] => {
                let c = c.to_ascii_lowercase();
                if c.is_ascii_lowercase() {
                    BY_LETTER.get(usize::from(c - b'a')).copied().unwrap_or(HeaderKind::Other)
                } else {
                    HeaderKind::Other
                }
            }
            [first, second, rest @ ..] => {
                let last = rest.last().unwrap_or(second);
                let s = slot(key(name.len(), *first, *second, *last), PERFECT.0);
                match BY_SLOT.get(s) {
                    Some(e) if eq_folded(name, e.lower.get(..e.len).unwrap_or_default()) => e.kind,
                    _ => HeaderKind::Other,
                }
            }
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
    fn unknown_names_are_other() {
        let table: &[&[u8]] =
            &[b"C%6Fntact", b"X-Custom", b"q", b"Vias", b"Vi", b"", b"1", b"NewFangledHeader"];
        for n in table {
            assert_eq!(HeaderKind::from_name(n), HeaderKind::Other, "{:?}", String::from_utf8_lossy(n));
        }
    }
}
