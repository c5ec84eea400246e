//! `src_v4_hint`: one bit per IPv4 /16, set when some `src_v4` entry lies in that /16 or covers
//! it. The program reads the bit before the trie: a clear bit means no entry can match, so an
//! unknown source outside every listed /16 skips the trie walk. The bits must never be missing
//! for an entry the trie holds, so [`FilterMaps`](crate::FilterMaps) sets new bits before it
//! writes trie entries and clears old ones only after it removed them.

use crate::shared::V4_HINT_WORDS;
use crate::srctrie::Prefix;

/// Bits per hint word.
const WORD_BITS: u32 = 64;
/// The /16 index is the top 16 bits of an address.
const SLASH16_BITS: u32 = 16;

/// The hint words: word `i` bit `b` is /16 number `i * 64 + b`.
pub(crate) type Hint = Vec<u64>;

/// The hint for these `src_v4` prefixes.
pub(crate) fn hint_of<'a>(prefixes: impl IntoIterator<Item = &'a Prefix<4>>) -> Hint {
    let mut words = vec![0u64; V4_HINT_WORDS];
    for &(len, addr) in prefixes {
        let first = u32::from(u16::from_be_bytes([addr[0], addr[1]]));
        // A prefix of 16 bits or more lies in one /16; a shorter one covers 2^(16 - len).
        let count = 1u32 << SLASH16_BITS.saturating_sub(len.min(SLASH16_BITS));
        let first = first & !(count - 1);
        for slash16 in first..first + count {
            if let Some(w) = usize::try_from(slash16 / WORD_BITS).ok().and_then(|i| words.get_mut(i)) {
                *w |= 1u64 << (slash16 % WORD_BITS);
            }
        }
    }
    words
}

/// Bitwise union of two hints.
pub(crate) fn union(a: &Hint, b: &Hint) -> Hint {
    a.iter().zip(b).map(|(x, y)| x | y).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(h: &Hint, a: u8, b: u8) -> bool {
        let n = usize::from(u16::from_be_bytes([a, b]));
        h[n / 64] >> (n % 64) & 1 == 1
    }

    #[test]
    fn long_prefixes_mark_their_slash16_only() {
        let h = hint_of(&[(32, [198, 51, 100, 7]), (24, [203, 0, 113, 0]), (16, [10, 20, 0, 0])]);
        assert!(set(&h, 198, 51) && set(&h, 203, 0) && set(&h, 10, 20));
        assert!(!set(&h, 198, 50) && !set(&h, 203, 1) && !set(&h, 10, 21) && !set(&h, 192, 0));
        assert_eq!(h.iter().map(|w| w.count_ones()).sum::<u32>(), 3);
    }

    #[test]
    fn short_prefixes_mark_every_slash16_they_cover() {
        let h = hint_of(&[(12, [172, 16, 0, 0])]);
        assert!((16..32).all(|b| set(&h, 172, b)));
        assert!(!set(&h, 172, 15) && !set(&h, 172, 32));
        assert_eq!(hint_of(&[(0, [0; 4])]).iter().map(|w| w.count_ones()).sum::<u32>(), 65_536);
    }

    #[test]
    fn union_keeps_both() {
        let (a, b) = (hint_of(&[(32, [1, 2, 3, 4])]), hint_of(&[(32, [5, 6, 7, 8])]));
        let u = union(&a, &b);
        assert!(set(&u, 1, 2) && set(&u, 5, 6));
    }
}
