//! Byte classes of the RFC 3261 §25.1 grammar, as 256-entry tables built at compile time.
//! Each table quotes the ABNF it encodes.

/// A set of bytes: `TABLE[b as usize]` is true when `b` belongs to the class.
pub(crate) type ByteClass = [bool; 256];

/// Builds a class from an alphanumeric flag and a list of extra bytes.
const fn class(alphanum: bool, extra: &[u8]) -> ByteClass {
    let mut t = [false; 256];
    if alphanum {
        let mut b = b'0';
        while b <= b'9' {
            t[b as usize] = true;
            b += 1;
        }
        let mut b = b'a';
        while b <= b'z' {
            t[b as usize] = true;
            t[(b - 32) as usize] = true;
            b += 1;
        }
    }
    let mut i = 0;
    while i < extra.len() {
        t[extra[i] as usize] = true;
        i += 1;
    }
    t
}

/// ```text
/// token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~" )
/// ```
pub(crate) static TOKEN: ByteClass = class(true, b"-.!%*_+`'~");

/// ```text
/// word = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~" /
///        "(" / ")" / "<" / ">" / ":" / "\" / DQUOTE / "/" / "[" / "]" / "?" / "{" / "}" )
/// ```
pub(crate) static WORD: ByteClass = class(true, b"-.!%*_+`'~()<>:\\\"/[]?{}");

/// ```text
/// user           = 1*( unreserved / escaped / user-unreserved )
/// unreserved     = alphanum / mark
/// mark           = "-" / "_" / "." / "!" / "~" / "*" / "'" / "(" / ")"
/// user-unreserved = "&" / "=" / "+" / "$" / "," / ";" / "?" / "/"
/// ```
/// (`escaped` = `"%" HEXDIG HEXDIG` is checked apart.)
pub(crate) static USER: ByteClass = class(true, b"-_.!~*'()&=+$,;?/");

/// ```text
/// password = *( unreserved / escaped / "&" / "=" / "+" / "$" / "," )
/// ```
pub(crate) static PASSWORD: ByteClass = class(true, b"-_.!~*'()&=+$,");

/// ```text
/// paramchar       = param-unreserved / unreserved / escaped
/// param-unreserved = "[" / "]" / "/" / ":" / "&" / "+" / "$"
/// ```
pub(crate) static PARAMCHAR: ByteClass = class(true, b"-_.!~*'()[]/:&+$");

/// ```text
/// hname / hvalue  = 1*( hnv-unreserved / unreserved / escaped )
/// hnv-unreserved  = "[" / "]" / "/" / "?" / ":" / "+" / "$"
/// ```
pub(crate) static HNV: ByteClass = class(true, b"-_.!~*'()[]/?:+$");

/// ```text
/// hostname = *( domainlabel "." ) toplabel [ "." ]   ; alphanum and "-" in labels
/// ```
pub(crate) static HOSTNAME: ByteClass = class(true, b"-.");

/// ```text
/// scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
/// ```
pub(crate) static SCHEME: ByteClass = class(true, b"+-.");

/// ```text
/// uric     = reserved / unreserved / escaped
/// reserved = ";" / "/" / "?" / ":" / "@" / "&" / "=" / "+" / "$" / ","
/// ```
/// Used for the opaque part of URIs of schemes we do not interpret (`%` checked apart).
pub(crate) static URIC: ByteClass = class(true, b";/?:@&=+$,-_.!~*'()%[]#");

/// The characters of a `tel:` URI (RFC 3966): digits, visual separators, `+`, `*`, `#`, and
/// parameter characters.
pub(crate) static TEL: ByteClass = class(true, b"-_.!~*'()[]/:&+$;=%#");

/// ```text
/// LWS = [*WSP CRLF] 1*WSP ; WSP = SP / HTAB
/// ```
/// Inside a header value indexed by the parser a CR or LF is always part of a fold, so every
/// one of these bytes is linear white space there.
pub(crate) static LWS: ByteClass = class(false, b" \t\r\n");

/// Bit of [`PARAM_CLASS`]: the byte is in [`TOKEN`].
pub(crate) const IN_TOKEN: u8 = 1;
/// Bit of [`PARAM_CLASS`]: the byte is in [`HNV`].
pub(crate) const IN_HNV: u8 = 2;
/// Bit of [`PARAM_CLASS`]: the byte is in [`PARAMCHAR`] (`%` excluded: escapes are checked apart).
pub(crate) const IN_PARAMCHAR: u8 = 4;
/// Bit of [`PARAM_CLASS`]: the byte is `;` or `=`, a separator of parameter lists.
pub(crate) const PARAM_SEP: u8 = 8;
/// Bit of [`PARAM_CLASS`]: the byte is `"`, which opens a quoted string in header parameters.
pub(crate) const PARAM_QUOTE: u8 = 16;

/// [`TOKEN`], [`HNV`] and [`PARAMCHAR`] in one table (bits [`IN_TOKEN`], [`IN_HNV`],
/// [`IN_PARAMCHAR`]), plus [`PARAM_SEP`] and [`PARAM_QUOTE`], so that one load classifies a byte of a parameter list.
pub(crate) static PARAM_CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = 0;
        if TOKEN[i] {
            c |= IN_TOKEN;
        }
        if HNV[i] {
            c |= IN_HNV;
        }
        if PARAMCHAR[i] {
            c |= IN_PARAMCHAR;
        }
        if i == b';' as usize || i == b'=' as usize {
            c |= PARAM_SEP;
        }
        if i == b'"' as usize {
            c |= PARAM_QUOTE;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// True for SP and HTAB.
pub(crate) const fn is_wsp(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// The value of a hex digit.
pub(crate) const fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Bytes [`run_in`] and the parameter scan test at once.
pub(crate) const CHUNK_BYTES: usize = 8;

/// The length of the longest prefix of `s` whose bytes are all in `class`. Whole chunks of
/// [`CHUNK_BYTES`] are tested with one branch (the AND of their bytes' classes), the rest
/// byte by byte: about half the instructions of a plain loop on the 10 to 40 byte runs of
/// URIs, Call-IDs and parameters.
#[inline(always)]
pub(crate) fn run_in(s: &[u8], class: &ByteClass) -> usize {
    let mut i = 0;
    while let Some(chunk) = s.get(i..).and_then(|r| r.first_chunk::<CHUNK_BYTES>()) {
        if !chunk.iter().fold(true, |all, &b| all & class[b as usize]) {
            break;
        }
        i += CHUNK_BYTES;
    }
    while s.get(i).is_some_and(|&b| class[b as usize]) {
        i += 1;
    }
    i
}

/// True when every byte of `s` is in `class` (and `s` is not empty).
pub(crate) fn all_in(s: &[u8], class: &ByteClass) -> bool {
    !s.is_empty() && s.iter().all(|&b| class[b as usize])
}

/// True when every byte of `s` is in `class` or is part of a valid `%HH` escape.
pub(crate) fn all_escaped_in(s: &[u8], class: &ByteClass) -> bool {
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        if b == b'%' {
            match (s.get(i + 1).copied().and_then(hex_val), s.get(i + 2).copied().and_then(hex_val)) {
                (Some(_), Some(_)) => i += 3,
                _ => return false,
            }
        } else if class[b as usize] {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

/// `name.eq_ignore_ascii_case(lower)` for a `lower` made of lower-case ASCII letters only,
/// with one OR and compare per byte: `b | 0x20` is a lower-case letter `l` exactly when `b` is
/// `l` or its upper case.
#[inline(always)]
pub(crate) fn eq_letters_ci<const N: usize>(name: &[u8], lower: &[u8; N]) -> bool {
    const { assert!(N > 0) };
    match name.first_chunk::<N>() {
        Some(head) if name.len() == N => head.iter().zip(lower).all(|(&b, &l)| b | 0x20 == l),
        _ => false,
    }
}

/// Trims linear white space from both ends.
pub(crate) fn trim_lws(s: &[u8]) -> &[u8] {
    // Most values have no white space at either end: two table loads decide.
    if let (Some(&f), Some(&l)) = (s.first(), s.last())
        && !LWS[f as usize]
        && !LWS[l as usize]
    {
        return s;
    }
    let start = s.iter().position(|&b| !LWS[b as usize]).unwrap_or(s.len());
    let end = s.iter().rposition(|&b| !LWS[b as usize]).map_or(start, |p| p + 1);
    s.get(start..end).unwrap_or_default()
}

/// Parses `1*DIGIT` into a `u64`, rejecting empty input, non-digits and overflow past `max`.
pub(crate) fn parse_decimal(s: &[u8], max: u64) -> Result<u64, DecimalError> {
    if s.is_empty() {
        return Err(DecimalError::Syntax);
    }
    let mut n: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return Err(DecimalError::Syntax);
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(b - b'0')))
            .filter(|&n| n <= max)
            .ok_or(DecimalError::TooLarge)?;
    }
    Ok(n)
}

/// The number the leading digits of `value` spell and how many they are, for a value of at
/// least eight bytes whose first eight are not all digits, from one word: where the digits
/// stop from one subtract and one add (a borrow or carry runs only into the bytes after the
/// first non-digit), their value from three multiplies (each adding neighbouring lanes). `None`
/// for any other value, which the caller reads digit by digit.
#[inline(always)]
pub(crate) fn leading_digits_word(value: &[u8]) -> Option<(u64, usize)> {
    /// `0` in every byte.
    const ZEROS: u64 = 0x3030_3030_3030_3030;
    /// Adds 118 to every byte: a byte of 10 or more (less `0`) reaches its top bit.
    const TO_TOP: u64 = 0x7676_7676_7676_7676;
    /// The top bit of every byte.
    const TOPS: u64 = 0x8080_8080_8080_8080;
    let t = u64::from_le_bytes(*value.first_chunk::<8>()?).wrapping_sub(ZEROS);
    let stops = (t | t.wrapping_add(TO_TOP)) & TOPS;
    if stops == 0 {
        return None;
    }
    let len = stops.trailing_zeros() / 8;
    if len == 0 {
        return Some((0, 0));
    }
    // The digits to the top bytes (the first, most significant, lowest), zeros below them.
    let digits = t << (8 * (8 - len));
    let pairs = (digits.wrapping_mul(10 << 8 | 1) >> 8) & 0x00ff_00ff_00ff_00ff;
    let quads = (pairs.wrapping_mul(100 << 16 | 1) >> 16) & 0x0000_ffff_0000_ffff;
    let all = quads.wrapping_mul(10_000 << 32 | 1) >> 32;
    Some((all, len as usize))
}

/// Why [`parse_decimal`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DecimalError {
    /// Empty or not all digits.
    Syntax,
    /// Above the field's maximum.
    TooLarge,
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The word reader finds the digits and their number as a digit loop does.
        #[test]
        fn leading_digits_word_matches_a_digit_loop(s in proptest::collection::vec(
            proptest::sample::select(b"0123456789 /:I\x80\xb9".to_vec()), 0..12)) {
            let len = s.iter().take_while(|b| b.is_ascii_digit()).count();
            let want = (s.len() >= 8 && len < 8).then(|| {
                (s[..len].iter().fold(0u64, |n, &b| n * 10 + u64::from(b - b'0')), len)
            });
            proptest::prop_assert_eq!(leading_digits_word(&s), want);
        }

    }

    #[test]
    fn classes_match_the_abnf() {
        for b in b"abcXYZ019-.!%*_+`'~" {
            assert!(TOKEN[*b as usize], "{}", *b as char);
        }
        for b in b" \t\r\n:;,<>\"/()[]{}?=@\\" {
            assert!(!TOKEN[*b as usize], "{}", *b as char);
        }
        assert!(WORD[b'<' as usize] && WORD[b'"' as usize] && !WORD[b' ' as usize]);
        assert!(USER[b';' as usize] && USER[b'?' as usize] && !USER[b'@' as usize]);
        assert!(!USER[b'%' as usize] && !USER[b':' as usize]);
        assert!(!PASSWORD[b':' as usize] && PASSWORD[b'$' as usize]);
    }

    #[test]
    fn escapes_need_two_hex_digits() {
        let table: &[(&[u8], bool)] = &[
            (b"user", true),
            (b"u%40x", true),
            (b"%00%00", true),
            (b"%4", false),
            (b"%zz", false),
            (b"a b", false),
            (b"", true),
        ];
        for (s, ok) in table {
            assert_eq!(all_escaped_in(s, &USER), *ok, "{:?}", String::from_utf8_lossy(s));
        }
    }

    proptest::proptest! {
        #[test]
        fn run_in_matches_a_plain_loop(s in proptest::collection::vec(
            proptest::sample::select(b"ab-.;@ %\r".to_vec()), 0..40)) {
            for class in [&TOKEN, &HOSTNAME, &WORD, &USER] {
                proptest::prop_assert_eq!(run_in(&s, class), s.iter().take_while(|&&b| class[b as usize]).count());
            }
        }
    }

    #[test]
    fn letters_compare_in_any_case_and_nothing_else() {
        for name in [&b"branch"[..], b"BRANCH", b"Branch", b"bRaNcH"] {
            assert!(eq_letters_ci(name, b"branch"));
        }
        for b in 0..=255u8 {
            let name = [b, b'a', b'g'];
            assert_eq!(eq_letters_ci(&name, b"tag"), name.eq_ignore_ascii_case(b"tag"), "{b}");
        }
        assert!(!eq_letters_ci(b"branc", b"branch"));
        assert!(!eq_letters_ci(b"branchx", b"branch"));
        assert!(!eq_letters_ci(b"", b"tag"));
    }

    #[test]
    fn decimals() {
        assert_eq!(parse_decimal(b"0009", 255), Ok(9));
        assert_eq!(parse_decimal(b"300", 255), Err(DecimalError::TooLarge));
        assert_eq!(parse_decimal(b"36893488147419103232", u32::MAX.into()), Err(DecimalError::TooLarge));
        assert_eq!(parse_decimal(b"-1", 9), Err(DecimalError::Syntax));
        assert_eq!(parse_decimal(b"", 9), Err(DecimalError::Syntax));
        assert_eq!(trim_lws(b" \r\n a b\t"), b"a b");
        assert_eq!(trim_lws(b"  "), b"");
    }
}
