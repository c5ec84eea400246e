//! Finding line ends: the one byte scan the parser does over the whole header section.
//!
//! [`LfScanner`] classifies 64 bytes at a time into a bit mask of LF positions and then hands
//! out the LFs of a block by counting trailing zeros, so that the per-line cost is a few
//! instructions instead of a `memchr` call (whose setup dominates on 20 to 100 byte lines);
//! only a line longer than a block is searched with `memchr`.
//! On x86_64 a block is classified with SSE2 (part of the x86_64 baseline, so no run-time
//! detection; the `unsafe` is the calls of the SSE2 intrinsics and their unaligned loads of
//! fixed-size arrays); elsewhere, and in tests through `byte_mask_portable`, byte by byte. Bytes
//! after the last full block are searched with `memchr`. [`line_masks`] finds the colon
//! ending a header name and the LF ending a short line the same way, in the 64 bytes from the
//! start of a line.

/// Bytes classified at once: one bit per byte of a `u64` mask.
const BLOCK_BYTES: usize = 64;
/// Blocks without an LF classified in one search before the rest goes to `memchr`.
const BLOCKS_BEFORE_MEMCHR: usize = 2;

/// Finds LFs in a buffer, front to back.
#[derive(Debug, Clone)]
pub(crate) struct LfScanner<'b> {
    buf: &'b [u8],
    /// Offset of the classified block.
    base: usize,
    /// End of the classified block (`base` when none is).
    end: usize,
    /// Bit `i` set when `buf[base + i]` is an LF.
    mask: u64,
}

impl<'b> LfScanner<'b> {
    /// A scanner over `buf`.
    pub(crate) fn new(buf: &'b [u8]) -> Self {
        Self { buf, base: 0, end: 0, mask: 0 }
    }

    /// The offset of the first LF at or after `from`. Cheapest when calls move forward.
    pub(crate) fn find(&mut self, from: usize) -> Option<usize> {
        let mut at = from;
        if at >= self.base && at < self.end {
            // `at - base` < BLOCK_BYTES: the shift cannot overflow.
            let m = self.mask >> (at - self.base);
            if m != 0 {
                return Some(at + m.trailing_zeros() as usize);
            }
            at = self.end;
        }
        // The blocks after it, up to `BLOCKS_BEFORE_MEMCHR` of them: a header line of 64 to
        // 128 bytes (a Via, a From) often starts near the end of a block.
        for _ in 0..BLOCKS_BEFORE_MEMCHR {
            let rest = self.buf.get(at..)?;
            let Some(block) = rest.first_chunk::<BLOCK_BYTES>() else {
                return memchr::memchr(b'\n', rest).map(|i| at + i);
            };
            let mask = lf_mask(block);
            (self.base, self.end, self.mask) = (at, at + BLOCK_BYTES, mask);
            if mask != 0 {
                return Some(at + mask.trailing_zeros() as usize);
            }
            at += BLOCK_BYTES;
        }
        // A long line (an Identity header, a folded one): its end is further away, where
        // `memchr`'s wider loop pays off. The next call classifies a block anew.
        memchr::memchr(b'\n', self.buf.get(at..)?).map(|i| at + i)
    }
}

/// Bit `i` set when `block[i]` is an LF.
#[inline(always)]
pub(crate) fn lf_mask(block: &[u8; BLOCK_BYTES]) -> u64 {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        byte_mask_sse2(block, b'\n')
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    {
        byte_mask_portable(block, b'\n')
    }
}

/// Bit `i` set when `lanes[i]` is an LF, for 16 bytes (one SSE2 compare): the bytes just
/// past a header line's window, where the lines of 64 to 80 bytes (a Via, a From) end.
#[inline(always)]
pub(crate) fn lf_mask_lanes(lanes: &[u8; LANE_BYTES]) -> u64 {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        byte_mask_sse2(lanes, b'\n')
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    {
        byte_mask_portable(lanes, b'\n')
    }
}

/// Bytes [`line_masks`] classifies from the start of a header line.
pub(crate) const WINDOW_BYTES: usize = 64;
/// Bytes from the start of a header line in which [`line_masks`] looks for the name's colon.
pub(crate) const NAME_WINDOW_BYTES: usize = 32;

/// The colons and the LFs among the first [`NAME_WINDOW_BYTES`] bytes of `window` (bit `i`
/// set when `window[i]` is `:`, or an LF): where the name of the header line starting at
/// `window[0]` ends and, for a line of up to 32 bytes, where the line ends, from one pass over
/// those bytes. [`lf_mask_window_tail`] gives the LFs of the rest of the window.
#[inline(always)]
pub(crate) fn line_masks(window: &[u8; WINDOW_BYTES]) -> (u32, u32) {
    let (head, _) = window.split_first_chunk::<NAME_WINDOW_BYTES>().unwrap_or((&[0; NAME_WINDOW_BYTES], &[]));
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    let (colons, lfs) = (byte_mask_sse2(head, b':'), byte_mask_sse2(head, b'\n'));
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    let (colons, lfs) = (byte_mask_portable(head, b':'), byte_mask_portable(head, b'\n'));
    // Both masks have NAME_WINDOW_BYTES (32) bits: the casts keep them all.
    (colons as u32, lfs as u32)
}

/// The LFs among the bytes of `window` after its first [`NAME_WINDOW_BYTES`] (bit `i` set when
/// `window[i]` is an LF, bits 0 to 31 clear).
#[inline(always)]
pub(crate) fn lf_mask_window_tail(window: &[u8; WINDOW_BYTES]) -> u64 {
    let (_, tail) = window.split_last_chunk::<NAME_WINDOW_BYTES>().unwrap_or((&[], &[0; NAME_WINDOW_BYTES]));
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    let lfs = byte_mask_sse2(tail, b'\n');
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    let lfs = byte_mask_portable(tail, b'\n');
    lfs << NAME_WINDOW_BYTES
}

/// Bytes [`find_byte`] compares at once.
pub(crate) const LANE_BYTES: usize = 16;

/// The index of the first `byte` in `s`: 16 bytes per SSE2 compare, then byte by byte. For
/// short values (a URI in `<>`), where `memchr`'s call and set-up cost more than the search.
#[inline(always)]
pub(crate) fn find_byte(s: &[u8], byte: u8) -> Option<usize> {
    let mut i = 0;
    while let Some(lanes) = s.get(i..).and_then(|r| r.first_chunk::<LANE_BYTES>()) {
        #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
        let m = byte_mask_sse2(lanes, byte);
        #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
        let m = byte_mask_portable(lanes, byte);
        if m != 0 {
            return Some(i + m.trailing_zeros() as usize);
        }
        i += LANE_BYTES;
    }
    let tail = s.get(i..)?;
    tail.iter().position(|&b| b == byte).map(|p| i + p)
}

/// Whether `b` is one of the bytes [`user_simple_run`] takes: letters, digits, `&'()*+,-./`
/// and `_`, all in RFC 3261 `user` (the rest of `user` is left to the caller's byte loop).
#[cfg(any(test, not(all(target_arch = "x86_64", target_feature = "sse2"))))]
fn user_simple(b: u8) -> bool {
    b.is_ascii_alphanumeric() || (b'&'..=b'/').contains(&b) || b == b'_'
}

/// The length of the run of common `user` bytes (see `user_simple`: a telephone number's
/// `+` and digits, letters, `-` and `.`) that starts `s`, within its first [`LANE_BYTES`]
/// bytes, from one SSE2 load and five compares; 0 for an `s` shorter than that. The caller
/// goes on from there byte by byte with the whole `user` class.
#[inline(always)]
pub(crate) fn user_simple_run(s: &[u8]) -> usize {
    let Some(lanes) = s.first_chunk::<LANE_BYTES>() else {
        return 0;
    };
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        use core::arch::x86_64::{
            __m128i, _mm_and_si128, _mm_cmpeq_epi8, _mm_cmpgt_epi8, _mm_loadu_si128, _mm_movemask_epi8,
            _mm_or_si128, _mm_set1_epi8,
        };
        // SAFETY: the intrinsics need SSE2 alone, which this build enables (the cfg on this
        // block; SSE2 is part of the x86_64 baseline); `lanes` is 16 readable bytes, exactly
        // what the unaligned 128-bit load reads. The compares are signed: bytes from 0x80 are
        // negative, so no range below takes them.
        let bits = unsafe {
            let v = _mm_loadu_si128(lanes.as_ptr().cast::<__m128i>());
            let between = |v, lo: u8, hi: u8| {
                _mm_and_si128(
                    _mm_cmpgt_epi8(v, _mm_set1_epi8(lo as i8 - 1)),
                    _mm_cmpgt_epi8(_mm_set1_epi8(hi as i8 + 1), v),
                )
            };
            // `&` to `9`: `&'()*+,-./` and the digits; letters folded to lower case.
            let marks_digits = between(v, b'&', b'9');
            let letters = between(_mm_or_si128(v, _mm_set1_epi8(0x20)), b'a', b'z');
            let underscore = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'_' as i8));
            _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(marks_digits, letters), underscore))
        };
        // movemask sets bits 0..16 only; the first clear bit ends the run (16 when none is).
        (!(bits as u32) & 0x1_ffff).trailing_zeros() as usize
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    {
        lanes.iter().take_while(|&&b| user_simple(b)).count()
    }
}

/// Whether `b` is one of the bytes [`token_simple_run`] takes: letters, digits, `-` and `.`,
/// all in RFC 3261 `token` (the rest of `token` is left to the caller's byte loop).
#[cfg(any(test, not(all(target_arch = "x86_64", target_feature = "sse2"))))]
fn token_simple(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'.'
}

/// The length of the run of common `token` bytes (see `token_simple`: a branch or tag's
/// letters, digits, `-` and `.`) that starts `s`, within its first [`LANE_BYTES`] bytes, from
/// one SSE2 load and six compares; 0 for an `s` shorter than that. The caller goes on from
/// there byte by byte with the whole `token` class.
#[inline(always)]
pub(crate) fn token_simple_run(s: &[u8]) -> usize {
    let Some(lanes) = s.first_chunk::<LANE_BYTES>() else {
        return 0;
    };
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        use core::arch::x86_64::{
            __m128i, _mm_and_si128, _mm_andnot_si128, _mm_cmpeq_epi8, _mm_cmpgt_epi8, _mm_loadu_si128,
            _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
        };
        // SAFETY: the intrinsics need SSE2 alone, which this build enables (the cfg on this
        // block; SSE2 is part of the x86_64 baseline); `lanes` is 16 readable bytes, exactly
        // what the unaligned 128-bit load reads. The compares are signed: bytes from 0x80 are
        // negative, so no range below takes them.
        let bits = unsafe {
            let v = _mm_loadu_si128(lanes.as_ptr().cast::<__m128i>());
            let between = |v, lo: u8, hi: u8| {
                _mm_and_si128(
                    _mm_cmpgt_epi8(v, _mm_set1_epi8(lo as i8 - 1)),
                    _mm_cmpgt_epi8(_mm_set1_epi8(hi as i8 + 1), v),
                )
            };
            // `-` to `9` but `/`: `-`, `.` and the digits; letters folded to lower case.
            let slash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'/' as i8));
            let marks_digits = _mm_andnot_si128(slash, between(v, b'-', b'9'));
            let letters = between(_mm_or_si128(v, _mm_set1_epi8(0x20)), b'a', b'z');
            _mm_movemask_epi8(_mm_or_si128(marks_digits, letters))
        };
        // movemask sets bits 0..16 only; the first clear bit ends the run (16 when none is).
        (!(bits as u32) & 0x1_ffff).trailing_zeros() as usize
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    {
        lanes.iter().take_while(|&&b| token_simple(b)).count()
    }
}

/// The index of the first `byte` in the first [`LANE_BYTES`] bytes of `s` when no `before`
/// comes ahead of it, from one load and two compares; `None` when `s` is shorter, when those
/// bytes hold no `byte`, or when a `before` comes first (the caller then searches its own way).
#[inline(always)]
pub(crate) fn find_byte_clear_of(s: &[u8], byte: u8, before: u8) -> Option<usize> {
    let lanes = s.first_chunk::<LANE_BYTES>()?;
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    let (hits, stops) = (byte_mask_sse2(lanes, byte), byte_mask_sse2(lanes, before));
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    let (hits, stops) = (byte_mask_portable(lanes, byte), byte_mask_portable(lanes, before));
    // The bits below the first hit.
    let ahead = (hits & hits.wrapping_neg()).wrapping_sub(1);
    (hits != 0 && stops & ahead == 0).then(|| hits.trailing_zeros() as usize)
}

/// For a value of at least [`LANE_BYTES`] bytes: whether it is `word [ "@" word ]` (RFC 3261
/// `callid`): every byte a `word` character but at most one `@`, which neither starts nor
/// ends it. 16 bytes per step (the last step overlaps the one before); `None` for a shorter
/// value, which the caller checks byte by byte.
#[inline(always)]
pub(crate) fn call_id_wide(v: &[u8]) -> Option<bool> {
    let n = v.len();
    let last = n.checked_sub(LANE_BYTES)?;
    let mut at: Option<usize> = None;
    // The offset of the step, and of the first byte no step has looked at yet (the last step
    // overlaps the one before).
    let (mut from, mut unseen) = (0, 0);
    loop {
        let lanes = v.get(from..)?.first_chunk::<LANE_BYTES>()?;
        let (words, ats) = word_and_at_masks(lanes);
        let fresh = !0u32 << (unseen - from);
        unseen = from + LANE_BYTES;
        if !(words | ats) & fresh & 0xffff != 0 {
            return Some(false);
        }
        let ats = ats & fresh;
        if ats != 0 {
            if at.is_some() || ats & (ats - 1) != 0 {
                return Some(false);
            }
            at = Some(from + ats.trailing_zeros() as usize);
        }
        if from == last {
            break;
        }
        from = (from + LANE_BYTES).min(last);
    }
    Some(at.is_none_or(|a| a > 0 && a + 1 < n))
}

/// Bit `i` of the first mask set when `lanes[i]` is a `word` character, of the second when it
/// is `@`.
#[inline(always)]
fn word_and_at_masks(lanes: &[u8; LANE_BYTES]) -> (u32, u32) {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        use core::arch::x86_64::{
            __m128i, _mm_and_si128, _mm_andnot_si128, _mm_cmpeq_epi8, _mm_cmpgt_epi8, _mm_cmplt_epi8,
            _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
        };
        // SAFETY: the intrinsics need SSE2 alone, which this build enables (the cfg on this
        // block; SSE2 is part of the x86_64 baseline); `lanes` is 16 readable bytes, exactly
        // what the unaligned 128-bit load reads.
        let (words, ats) = unsafe {
            let v = _mm_loadu_si128(lanes.as_ptr().cast::<__m128i>());
            let is = |b: u8| _mm_cmpeq_epi8(v, _mm_set1_epi8(b as i8));
            // The signed range `lo..=hi` (bytes from 0x80 are negative: no range here takes them).
            let between = |x, lo: u8, hi: u8| {
                _mm_and_si128(
                    _mm_cmpgt_epi8(x, _mm_set1_epi8((lo - 1) as i8)),
                    _mm_cmplt_epi8(x, _mm_set1_epi8((hi + 1) as i8)),
                )
            };
            let at = is(b'@');
            let ats = _mm_movemask_epi8(at);
            // The usual Call-ID bytes first: letters (folded to lower case), `-./` and the
            // digits, all `word` characters; when they and `@` are all 16, the rest of `word`
            // need not be looked at.
            let letters = between(_mm_or_si128(v, _mm_set1_epi8(0x20)), b'a', b'z');
            let simple = _mm_movemask_epi8(_mm_or_si128(letters, between(v, b'-', b'9')));
            if (simple | ats) & 0xffff == 0xffff {
                (!ats, ats)
            } else {
                // `word` is the printable ASCII (0x21..=0x7e) but for the nine below.
                let printable = between(v, 0x21, 0x7e);
                let excluded = [b'#', b'$', b'&', b',', b';', b'=', b'^', b'|']
                    .iter()
                    .fold(at, |m, &b| _mm_or_si128(m, is(b)));
                (_mm_movemask_epi8(_mm_andnot_si128(excluded, printable)), ats)
            }
        };
        // movemask sets bits 0..16 only.
        (words as u32 & 0xffff, ats as u32 & 0xffff)
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    {
        word_and_at_masks_portable(lanes)
    }
}

/// [`word_and_at_masks`] byte by byte: the fallback off x86_64, and the reference in tests.
#[cfg(any(test, not(all(target_arch = "x86_64", target_feature = "sse2"))))]
fn word_and_at_masks_portable(lanes: &[u8; LANE_BYTES]) -> (u32, u32) {
    lanes.iter().enumerate().fold((0, 0), |(w, a), (i, &b)| {
        (w | u32::from(super::chars::WORD[b as usize]) << i, a | u32::from(b == b'@') << i)
    })
}

/// Longest list [`param_seps`] classifies (its mask has one bit more, for the list's end).
pub(crate) const PARAM_LIST_MAX_BYTES: usize = 63;
/// Shortest list [`param_seps`] classifies: one 16-byte step. Below that (measured on
/// `user=phone` and `tag=...`) the byte loop is cheaper.
pub(crate) const PARAM_LIST_MIN_BYTES: usize = LANE_BYTES;

/// Bit `i` set when `s[i]` is `;` or `=` (the separators of a parameter list), for a list of
/// [`PARAM_LIST_MIN_BYTES`] to [`PARAM_LIST_MAX_BYTES`] bytes; `None` for any other length.
/// With SSE2, 16 bytes per compare: full 16-byte steps, then one step over the last 16 bytes
/// (overlapping the step before: each bit depends on its own byte alone, so the bits it sets
/// again are the same).
#[inline(always)]
pub(crate) fn param_seps(s: &[u8]) -> Option<u64> {
    let n = s.len();
    if !(PARAM_LIST_MIN_BYTES..=PARAM_LIST_MAX_BYTES).contains(&n) {
        return None;
    }
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        let mut mask = 0u64;
        let mut i = 0;
        while let Some(lanes) = s.get(i..).and_then(|r| r.first_chunk::<LANE_BYTES>()) {
            mask |= seps_lanes_sse2(lanes) << i;
            i += LANE_BYTES;
        }
        if i < n {
            mask |= seps_lanes_sse2(s.last_chunk::<LANE_BYTES>()?) << (n - LANE_BYTES);
        }
        Some(mask)
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    {
        Some(param_seps_portable(s))
    }
}

/// [`param_seps`] byte by byte: the fallback off x86_64, and the reference in tests.
#[cfg(any(test, not(all(target_arch = "x86_64", target_feature = "sse2"))))]
fn param_seps_portable(s: &[u8]) -> u64 {
    s.iter().enumerate().fold(0, |m, (i, &b)| m | (u64::from(b == b';' || b == b'=') << i))
}

/// The separator bits (0..16) of 16 bytes.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
fn seps_lanes_sse2(lanes: &[u8; LANE_BYTES]) -> u64 {
    use core::arch::x86_64::{__m128i, _mm_loadu_si128};
    // SAFETY: SSE2 is enabled (the cfg on this function; part of the x86_64 baseline);
    // `lanes` is 16 readable bytes, exactly what the unaligned 128-bit load reads.
    seps_vector(unsafe { _mm_loadu_si128(lanes.as_ptr().cast::<__m128i>()) })
}

/// The separator bits (0..16) of the 16 bytes of `v`.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
fn seps_vector(v: core::arch::x86_64::__m128i) -> u64 {
    use core::arch::x86_64::{_mm_cmpeq_epi8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8};
    // SAFETY: the intrinsics need SSE2 alone, which this build enables (the cfg on this
    // function; SSE2 is part of the x86_64 baseline); they read no memory.
    let bits = unsafe {
        let semi = _mm_cmpeq_epi8(v, _mm_set1_epi8(b';' as i8));
        let eq = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'=' as i8));
        _mm_movemask_epi8(_mm_or_si128(semi, eq))
    };
    // movemask sets bits 0..16 only: the cast to u16 keeps them all.
    u64::from(bits as u16)
}

/// Bit `i` set when `block[i] == byte`, byte by byte: the fallback off x86_64, and the
/// reference in tests.
#[cfg(any(test, not(all(target_arch = "x86_64", target_feature = "sse2"))))]
fn byte_mask_portable<const N: usize>(block: &[u8; N], byte: u8) -> u64 {
    block.iter().enumerate().fold(0, |m, (i, &b)| m | (u64::from(b == byte) << i))
}

/// Bit `i` set when `block[i] == byte`, with SSE2, 16 bytes per compare (`N` is a multiple of
/// 16 and at most 64, which the build checks). A plain function around the intrinsics, so
/// that it inlines into every caller.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
fn byte_mask_sse2<const N: usize>(block: &[u8; N], byte: u8) -> u64 {
    use core::arch::x86_64::{__m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8};
    /// Bytes per SSE2 vector.
    const LANES: usize = 16;
    const { assert!(N.is_multiple_of(LANES) && N <= 64) };
    let mut mask = 0u64;
    for (k, lanes) in block.chunks_exact(LANES).enumerate() {
        // SAFETY: the intrinsics need SSE2 alone, which this build enables (the cfg on this
        // function; SSE2 is part of the x86_64 baseline); `lanes` is 16 readable bytes
        // (chunks_exact), exactly what the unaligned 128-bit load reads.
        let bits = unsafe {
            let v = _mm_loadu_si128(lanes.as_ptr().cast::<__m128i>());
            _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(byte as i8)))
        };
        // movemask sets bits 0..16 only: the cast to u16 keeps them all.
        mask |= u64::from(bits as u16) << (k * LANES);
    }
    mask
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every LF, by the scanner and by a plain search.
    fn all_lfs(buf: &[u8]) -> (Vec<usize>, Vec<usize>) {
        let mut s = LfScanner::new(buf);
        let mut got = Vec::new();
        let mut from = 0;
        while let Some(i) = s.find(from) {
            got.push(i);
            from = i + 1;
        }
        let want = buf.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i).collect();
        (got, want)
    }

    #[test]
    fn finds_every_lf_across_blocks_and_the_tail() {
        for len in [0, 1, 63, 64, 65, 127, 128, 200] {
            for step in [1, 2, 7, 16, 63, 64, 65] {
                let buf: Vec<u8> = (0..len).map(|i| if i % step == 0 { b'\n' } else { b'a' }).collect();
                let (got, want) = all_lfs(&buf);
                assert_eq!(got, want, "len {len} step {step}");
            }
        }
    }

    #[test]
    fn word_masks_of_every_byte() {
        for b in 0..=255u8 {
            let mut lanes = [b'a'; LANE_BYTES];
            lanes[7] = b;
            assert_eq!(word_and_at_masks(&lanes), word_and_at_masks_portable(&lanes), "byte {b}");
        }
    }

    #[test]
    fn backwards_and_repeated_searches() {
        let buf = [b"abc\n".repeat(40), b"tail\n".to_vec()].concat();
        let mut s = LfScanner::new(&buf);
        assert_eq!(s.find(150), Some(151));
        assert_eq!(s.find(0), Some(3));
        assert_eq!(s.find(3), Some(3));
        assert_eq!(s.find(4), Some(7));
        assert_eq!(s.find(buf.len() - 1), Some(buf.len() - 1));
        assert_eq!(s.find(buf.len()), None);
        assert_eq!(s.find(buf.len() + 1), None);
    }

    #[test]
    fn token_simple_bytes_are_token_bytes() {
        for b in 0..=u8::MAX {
            assert!(!token_simple(b) || super::super::chars::TOKEN[b as usize], "{b}");
        }
    }

    #[test]
    fn user_simple_bytes_are_user_bytes() {
        for b in 0..=u8::MAX {
            assert!(!user_simple(b) || super::super::chars::USER[b as usize], "{b}");
        }
    }

    proptest! {
        #[test]
        fn scanner_matches_a_plain_search(buf in proptest::collection::vec(
            prop_oneof![Just(b'\n'), Just(b'\r'), Just(0x8a_u8), any::<u8>()], 0..300)) {
            let (got, want) = all_lfs(&buf);
            prop_assert_eq!(got, want);
        }

        #[test]
        fn block_masks_agree(block in proptest::array::uniform32(prop_oneof![Just(b'\n'), any::<u8>()]),
                             block2 in proptest::array::uniform32(prop_oneof![Just(b'\n'), any::<u8>()])) {
            let mut b = [0u8; BLOCK_BYTES];
            b[..32].copy_from_slice(&block);
            b[32..].copy_from_slice(&block2);
            prop_assert_eq!(lf_mask(&b), byte_mask_portable(&b, b'\n'));
        }

        #[test]
        fn lane_lf_masks_agree(lanes in proptest::array::uniform16(prop_oneof![Just(b'\n'), Just(b'\n' | 0x80), any::<u8>()])) {
            prop_assert_eq!(lf_mask_lanes(&lanes), byte_mask_portable(&lanes, b'\n'));
        }

        #[test]
        fn word_masks_match_the_word_class(lanes in proptest::array::uniform16(any::<u8>())) {
            prop_assert_eq!(word_and_at_masks(&lanes), word_and_at_masks_portable(&lanes));
        }

        #[test]
        fn find_byte_matches_a_plain_search(s in proptest::collection::vec(
            prop_oneof![Just(b'>'), Just(b'>' | 0x80), any::<u8>()], 0..80)) {
            prop_assert_eq!(find_byte(&s, b'>'), s.iter().position(|&b| b == b'>'));
        }

        #[test]
        fn param_seps_match_the_byte_loop(s in proptest::collection::vec(
            prop_oneof![Just(b';'), Just(b'='), Just(b';' | 0x80), any::<u8>()], 0..80)) {
            let want = (PARAM_LIST_MIN_BYTES..=PARAM_LIST_MAX_BYTES).contains(&s.len()).then(|| param_seps_portable(&s));
            prop_assert_eq!(param_seps(&s), want);
        }

        #[test]
        fn find_byte_clear_of_matches_the_byte_loop(s in proptest::collection::vec(
            prop_oneof![Just(b'"'), Just(b'\\'), any::<u8>()], 0..24)) {
            let want = if s.len() < LANE_BYTES { None } else {
                match s[..LANE_BYTES].iter().position(|&b| b == b'"' || b == b'\\') {
                    Some(i) if s[i] == b'"' => Some(i),
                    _ => None,
                }
            };
            prop_assert_eq!(find_byte_clear_of(&s, b'"', b'\\'), want);
        }

        #[test]
        fn user_simple_run_matches_the_byte_loop(s in proptest::collection::vec(
            prop_oneof![Just(b'@'), Just(b'+'), Just(b'0'), Just(b'%'), Just(b'A' | 0x80), any::<u8>()], 0..24)) {
            let want = if s.len() < LANE_BYTES { 0 } else {
                s[..LANE_BYTES].iter().take_while(|&&b| user_simple(b)).count()
            };
            prop_assert_eq!(user_simple_run(&s), want);
        }

        #[test]
        fn token_simple_run_matches_the_byte_loop(s in proptest::collection::vec(
            prop_oneof![Just(b';'), Just(b'/'), Just(b'-'), Just(b'.'), Just(b'0'), Just(b'A' | 0x80), any::<u8>()], 0..24)) {
            let want = if s.len() < LANE_BYTES { 0 } else {
                s[..LANE_BYTES].iter().take_while(|&&b| token_simple(b)).count()
            };
            prop_assert_eq!(token_simple_run(&s), want);
        }

        #[test]
        fn line_masks_find_colons_and_lfs(
            head in proptest::array::uniform32(prop_oneof![Just(b':'), Just(b'\n'), Just(b':' | 0x80), any::<u8>()]),
            tail in proptest::array::uniform32(prop_oneof![Just(b':'), Just(b'\n'), any::<u8>()])) {
            let mut window = [0u8; WINDOW_BYTES];
            window[..32].copy_from_slice(&head);
            window[32..].copy_from_slice(&tail);
            let (colons, lfs_head) = line_masks(&window);
            let lfs = u64::from(lfs_head) | lf_mask_window_tail(&window);
            for (i, &b) in window.iter().enumerate() {
                prop_assert_eq!(lfs >> i & 1 == 1, b == b'\n');
                if i < NAME_WINDOW_BYTES {
                    prop_assert_eq!(colons >> i & 1 == 1, b == b':');
                }
            }
        }
    }
}
