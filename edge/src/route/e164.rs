//! E.164 normalisation of a dialled number, by the receiving trunk's numbering plan.
//!
//! Input: the Request-URI user part (or a `tel:` number) as bytes, and for `tel:` URIs an
//! optional `phone-context`. Output: a small `Copy` value, with no allocation: the number as a
//! `u64` key (its digits read as an integer; unique because no E.164 number starts with 0), an
//! emergency call, or a refusal with its SIP status.
//!
//! Rules, in order:
//! 1. Visual separators `-` `.` `(` `)` and spaces are dropped; a leading `+` is kept. The user
//!    part ends at the first `;` (telephone-subscriber parameters). Any other character (a
//!    letter, `*`, `#`, a `+` not in front) refuses the number with 404: it is not a number.
//! 2. A number dialled without `+` that is in the trunk's emergency list (or `+` followed by the
//!    trunk's country code and an emergency number) is an emergency call: never a DID.
//! 3. `+DIGITS`: already E.164. A `tel:` local number with a global `phone-context` (`+44`)
//!    takes the context's digits in front. A domain `phone-context` adds nothing.
//! 4. International prefix (`00`, `011`) then DIGITS: E.164 without `+`.
//! 5. National prefix (`0`, `1`) then the national significant number (NSN), or an NSN dialled
//!    without prefix: country code + NSN. An NSN shorter than the trunk's `min_national_digits`
//!    is a short code or incomplete and gets 484; it is never looked up.
//! 6. The result must be 7 to 15 digits, the first not 0: longer is 404, shorter is 484.

use control::config::{E164_MAX_DIGITS, MAX_EMERGENCY_DIGITS, MAX_EMERGENCY_NUMBERS, Trunk};

/// Shortest E.164 number we accept, in digits: Niue and Tokelau (`+683 XXXX`, `+690 XXXX`)
/// have the shortest assigned numbers. Anything shorter is incomplete (484).
pub const E164_MIN_DIGITS: usize = 7;

/// Most digits kept from a dialled string: an international prefix (at most 4 digits) and a
/// full E.164 number. Longer strings are refused (404) without further reading.
const MAX_DIALLED_DIGITS: usize = 4 + E164_MAX_DIGITS;

/// A short digit string (country code, prefixes, an emergency number), stored inline, and as
/// one word with its mask, so that "does this dialled string start with it" is one compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Digits {
    buf: [u8; MAX_EMERGENCY_DIGITS],
    len: u8,
    /// `buf` read as a little-endian word.
    word: u64,
    /// The bytes of `word` that hold digits.
    mask: u64,
}

impl Digits {
    /// `None` unless `s` is 0 to 8 ASCII digits (the configuration has validated this).
    fn new(s: &str) -> Option<Self> {
        let bytes = s.as_bytes();
        if bytes.len() > MAX_EMERGENCY_DIGITS || !bytes.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let mut buf = [0; MAX_EMERGENCY_DIGITS];
        buf[..bytes.len()].copy_from_slice(bytes);
        let mask = u64::MAX.checked_shr(64 - 8 * bytes.len() as u32).unwrap_or(0);
        Some(Self { buf, len: bytes.len() as u8, word: u64::from_le_bytes(buf), mask })
    }

    fn as_slice(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }

    /// `digits` without this leading string, if it leads. A dialled number has at least eight
    /// digits in the common case: one word compare then, no `memcmp` call.
    #[inline(always)]
    fn strip_from<'d>(&self, digits: &'d [u8]) -> Option<&'d [u8]> {
        match digits.first_chunk::<MAX_EMERGENCY_DIGITS>() {
            Some(head) => (u64::from_le_bytes(*head) & self.mask == self.word)
                .then(|| digits.get(usize::from(self.len)..))
                .flatten(),
            None => digits.strip_prefix(self.as_slice()),
        }
    }
}

/// Why a number cannot be E.164.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// Letters or other characters that are not digits or visual separators (404).
    NotANumber,
    /// More digits than E.164 allows (404).
    TooLong,
    /// Empty, only a prefix, or shorter than a complete number (484 Address Incomplete).
    Incomplete,
}

impl Refusal {
    /// The SIP status code the call is refused with.
    pub fn status(self) -> u16 {
        match self {
            Refusal::NotANumber | Refusal::TooLong => 404,
            Refusal::Incomplete => 484,
        }
    }

    /// A short reason for logs and the CLI.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::NotANumber => "not a number",
            Refusal::TooLong => "more than 15 digits",
            Refusal::Incomplete => "address incomplete",
        }
    }
}

/// Bits of [`E164`]'s word that hold the digit count (at most 15).
const DIGIT_COUNT_BITS: u32 = 4;

/// An E.164 number: its digits as an integer, and how many there are, in one word (the value
/// above [`DIGIT_COUNT_BITS`] bits of count), so that it and the decisions holding it are
/// small. Ordered by value, then digit count.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct E164(u64);

impl E164 {
    /// `value` (below 10^15) with `digits` (at most 15) digits.
    #[inline(always)]
    const fn new(value: u64, digits: u8) -> Self {
        Self(value << DIGIT_COUNT_BITS | digits as u64)
    }

    /// The DID table key: the digits read as an integer (at most 15 digits, so below 10^15).
    #[inline(always)]
    pub fn key(self) -> u64 {
        self.0 >> DIGIT_COUNT_BITS
    }

    /// Number of digits (7 to 15 for a routable number; 1 to 15 for a block prefix).
    #[inline(always)]
    pub fn digits(self) -> u8 {
        (self.0 & ((1 << DIGIT_COUNT_BITS) - 1)) as u8
    }

    /// Builds from digits without `+`: 1 to 15 digits, the first not 0.
    pub fn from_digits(digits: &[u8]) -> Option<Self> {
        if digits.is_empty() || digits.len() > E164_MAX_DIGITS || digits[0] == b'0' {
            return None;
        }
        let mut value = 0u64;
        for &d in digits {
            if !d.is_ascii_digit() {
                return None;
            }
            value = value * 10 + u64::from(d - b'0');
        }
        Some(Self::new(value, digits.len() as u8))
    }

    /// Parses the configuration's form: `+` then 1 to 15 digits, the first not 0.
    pub fn parse_plus(s: &str) -> Option<Self> {
        Self::from_digits(s.strip_prefix('+')?.as_bytes())
    }

    /// Rebuilds from a table key (the digit count is that of the integer).
    pub fn from_key(value: u64) -> Option<Self> {
        if value == 0 || value >= 10u64.pow(E164_MAX_DIGITS as u32) {
            return None;
        }
        Some(Self::new(value, value.ilog10() as u8 + 1))
    }
}

impl std::fmt::Display for E164 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "+{}", self.key())
    }
}

impl std::fmt::Debug for E164 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("E164").field("value", &self.key()).field("digits", &self.digits()).finish()
    }
}

/// What a dialled string is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Normalised {
    /// A routable E.164 number: look it up.
    Number(E164),
    /// An emergency number: route to the trunk's emergency target, never as a DID.
    Emergency,
    /// Refused with the refusal's status.
    Refused(Refusal),
}

/// Emergency numbers when the trunk lists none, by country calling code.
pub fn default_emergency_numbers(country_code: &str) -> &'static [&'static str] {
    match country_code {
        "1" => &["911"],
        "44" => &["999", "112"],
        "49" => &["110", "112"],
        "91" => &["112", "100", "101", "102", "108"],
        "61" => &["000", "112"],
        _ => &["112"],
    }
}

/// A trunk's numbering plan, prepared for normalisation.
#[derive(Debug, Clone)]
pub struct NumberingPlan {
    country_code: Digits,
    /// The country code's value (1 to 3 digits, the first not 0).
    country_value: u64,
    /// The country code's value minus the national prefix's (wrapping): added times 10^(NSN
    /// digits) to a nationally dialled string's value, it swaps the prefix for the country code.
    national_delta: u64,
    /// The international prefix's value (its digits may all be 0).
    international_value: u64,
    national_prefix: Digits,
    international_prefix: Digits,
    emergency: Vec<Digits>,
    min_national_digits: usize,
}

impl NumberingPlan {
    /// The plan of a validated trunk; `None` if a field is not what validation guarantees.
    pub fn from_trunk(t: &Trunk) -> Option<Self> {
        let emergency: Option<Vec<Digits>> = match &t.emergency_numbers {
            Some(list) => list.iter().map(|n| Digits::new(n)).collect(),
            None => default_emergency_numbers(&t.country_code).iter().map(|n| Digits::new(n)).collect(),
        };
        let emergency = emergency.filter(|e| e.len() <= MAX_EMERGENCY_NUMBERS)?;
        let country_code =
            Digits::new(&t.country_code).filter(|d| (1..=3).contains(&d.len) && d.buf[0] != b'0')?;
        let country_value = decimal(country_code.as_slice());
        let national_prefix = Digits::new(&t.national_prefix)?;
        let international_prefix = Digits::new(&t.international_prefix).filter(|d| d.len > 0)?;
        Some(Self {
            country_value,
            national_delta: country_value.wrapping_sub(decimal(national_prefix.as_slice())),
            international_value: decimal(international_prefix.as_slice()),
            country_code,
            national_prefix,
            international_prefix,
            emergency,
            min_national_digits: usize::from(t.min_national_digits),
        })
    }

    /// Normalises a dialled string (the Request-URI user part, or a `tel:` number) and, for a
    /// `tel:` URI, its `phone-context`. Allocation-free.
    ///
    /// The common forms (`+` and digits, or plain digits) are read in place, inline: this runs
    /// on every routed call, and each instruction saved lets the processor start the next
    /// call's table access sooner. A string with separators or parameters is copied out of line.
    #[inline(always)]
    pub fn normalise(&self, user: &[u8], phone_context: Option<&[u8]>) -> Normalised {
        // The commonest form of all, a number dialled in national or international form
        // without `+` (9 to 16 digits: too long to be an emergency number, and read as two
        // words that are checked and converted once).
        if (MAX_EMERGENCY_DIGITS + 1..=16).contains(&user.len())
            && let (Some(first), Some(last)) = (user.first_chunk::<8>(), user.last_chunk::<8>())
            && phone_context.is_none_or(|c| c.first() != Some(&b'+'))
        {
            let (first, last) = (u64::from_le_bytes(*first), u64::from_le_bytes(*last));
            if two_words_of_digits(first, last) {
                return self.classify_long(user, first, words_value(user.len(), first, last));
            }
        }
        match plain(user) {
            Some((plus, dialled)) if !dialled.is_empty() => self.classify(plus, dialled, phone_context),
            _ => self.normalise_stripped(user, phone_context),
        }
    }

    /// [`NumberingPlan::normalise`] of a string that is not plain digits: separators dropped.
    #[inline(never)]
    fn normalise_stripped(&self, user: &[u8], phone_context: Option<&[u8]>) -> Normalised {
        let mut buf = [0u8; MAX_DIALLED_DIGITS];
        match strip(user, &mut buf) {
            Ok((_, [])) => Normalised::Refused(Refusal::Incomplete),
            Ok((plus, dialled)) => self.classify(plus, dialled, phone_context),
            Err(r) => Normalised::Refused(r),
        }
    }

    /// Rules 2 to 6 on the digits of a dialled string (at least one), `plus` when `+` led.
    #[inline(always)]
    fn classify(&self, plus: bool, dialled: &[u8], phone_context: Option<&[u8]>) -> Normalised {
        if plus {
            if let Some(rest) = self.country_code.strip_from(dialled)
                && self.is_emergency(rest)
            {
                return Normalised::Emergency;
            }
            return finish(0, 0, dialled);
        }
        if self.is_emergency(dialled) {
            return Normalised::Emergency;
        }
        if let Some(ctx) = phone_context
            && ctx.first() == Some(&b'+')
        {
            return with_context(ctx, dialled);
        }
        if let Some(rest) = self.international_prefix.strip_from(dialled) {
            return finish(0, 0, rest);
        }
        let nsn = self.national_prefix.strip_from(dialled).unwrap_or(dialled);
        if nsn.len() < self.min_national_digits {
            return Normalised::Refused(Refusal::Incomplete);
        }
        finish(self.country_value, usize::from(self.country_code.len), nsn)
    }

    /// [`NumberingPlan::classify`] of 9 to 16 digits dialled without `+` nor a global
    /// `phone-context` (rules 4 to 6), from their first eight bytes and their value: the
    /// prefixes are compared in the word already loaded, and the number's value is the
    /// dialled string's with its prefix replaced arithmetically, not a second conversion.
    #[inline(always)]
    fn classify_long(&self, dialled: &[u8], first: u64, value: u64) -> Normalised {
        let len = dialled.len();
        let international = &self.international_prefix;
        if first & international.mask == international.word {
            // finish(0, 0, rest): its checks in its order (`rest` is not empty: a prefix has at
            // most 8 digits).
            let skip = usize::from(international.len);
            let rest = len - skip;
            if rest > E164_MAX_DIGITS {
                return Normalised::Refused(Refusal::TooLong);
            }
            if rest < E164_MIN_DIGITS {
                return Normalised::Refused(Refusal::Incomplete);
            }
            if dialled.get(skip) == Some(&b'0') {
                return Normalised::Refused(Refusal::NotANumber);
            }
            let value = value - self.international_value * POW10[rest];
            return Normalised::Number(E164::new(value, rest as u8));
        }
        let national = &self.national_prefix;
        let (nsn, delta) = if first & national.mask == national.word {
            (len - usize::from(national.len), self.national_delta)
        } else {
            (len, self.country_value)
        };
        if nsn < self.min_national_digits {
            return Normalised::Refused(Refusal::Incomplete);
        }
        // finish(country, country digits, nsn): its checks (the NSN is not empty, a country
        // code leads, so no leading-0 check).
        let total = usize::from(self.country_code.len) + nsn;
        if total > E164_MAX_DIGITS {
            return Normalised::Refused(Refusal::TooLong);
        }
        if total < E164_MIN_DIGITS {
            return Normalised::Refused(Refusal::Incomplete);
        }
        // nsn < total <= E164_MAX_DIGITS: in bounds.
        let value = value.wrapping_add(delta.wrapping_mul(POW10[nsn]));
        Normalised::Number(E164::new(value, total as u8))
    }

    #[inline(always)]
    fn is_emergency(&self, digits: &[u8]) -> bool {
        // Emergency numbers are short: a full-length number is never compared.
        digits.len() <= MAX_EMERGENCY_DIGITS && self.emergency.iter().any(|e| e.as_slice() == digits)
    }
}

/// The common forms, read in place: digits, or `+` and digits, with nothing to drop
/// (`None` otherwise: [`strip`] copies what is left once separators are dropped).
#[inline(always)]
fn plain(input: &[u8]) -> Option<(bool, &[u8])> {
    let (plus, digits) = match input.split_first() {
        Some((b'+', rest)) => (true, rest),
        _ => (false, input),
    };
    (digits.len() <= MAX_DIALLED_DIGITS && all_digits(digits)).then_some((plus, digits))
}

/// Every byte of each of 8 bytes is an ASCII digit (eight bytes at once).
const ASCII_ZEROS: u64 = u64::from_le_bytes([b'0'; 8]);
/// Added to a byte's value minus `'0'`: 0 to 9 stay below 0x80, 10 to 0x7F reach it.
const OVER_NINE: u64 = u64::from_le_bytes([0x80 - 10; 8]);
const HIGH_BITS: u64 = u64::from_le_bytes([0x80; 8]);

/// The high bit of each byte of `w - '0'` (or of `w - '0' + OVER_NINE`): clear in every byte
/// when all 8 bytes are ASCII digits, set in one at least otherwise. Bytes below `'0'` wrap to
/// 0xD0 or more, bytes above `'9'` reach 0x80 once `OVER_NINE` is added; the borrow or carry
/// such a byte passes to the next one only ever comes from a byte already flagged.
#[inline(always)]
fn not_digits(w: u64) -> u64 {
    let v = w.wrapping_sub(ASCII_ZEROS);
    v | v.wrapping_add(OVER_NINE)
}

/// True when the 8 bytes of `w` are ASCII digits.
#[inline(always)]
fn eight_digits(w: u64) -> bool {
    not_digits(w) & HIGH_BITS == 0
}

/// True when the 16 bytes of two words are ASCII digits (one test, one branch).
#[inline(always)]
fn two_words_of_digits(a: u64, b: u64) -> bool {
    (not_digits(a) | not_digits(b)) & HIGH_BITS == 0
}

/// True when every byte is an ASCII digit: 8 to 16 bytes in two (overlapping) words.
#[inline(always)]
fn all_digits(d: &[u8]) -> bool {
    match (d.first_chunk::<8>(), d.last_chunk::<8>()) {
        (Some(first), Some(last)) if d.len() <= 16 => {
            eight_digits(u64::from_le_bytes(*first)) && eight_digits(u64::from_le_bytes(*last))
        }
        _ => d.iter().all(u8::is_ascii_digit),
    }
}

/// The value of eight digit values (0 to 9, one per byte, the most significant first in
/// memory): three multiplications instead of eight dependent ones.
#[inline(always)]
fn eight_digit_value(v: u64) -> u64 {
    const PAIRS: u64 = 0x0000_00FF_0000_00FF;
    const MUL_HIGH: u64 = 100 + (1_000_000 << 32);
    const MUL_LOW: u64 = 1 + (10_000 << 32);
    let v = v.wrapping_mul(10).wrapping_add(v >> 8);
    ((v & PAIRS).wrapping_mul(MUL_HIGH).wrapping_add((v >> 16 & PAIRS).wrapping_mul(MUL_LOW))) >> 32
}

/// Powers of ten up to 10^15.
const POW10: [u64; E164_MAX_DIGITS + 1] = {
    let mut p = [1u64; E164_MAX_DIGITS + 1];
    let mut i = 1;
    while i < p.len() {
        p[i] = p[i - 1] * 10;
        i += 1;
    }
    p
};

/// Drops visual separators into `buf`; returns whether a `+` led and the digits.
fn strip<'b>(input: &[u8], buf: &'b mut [u8; MAX_DIALLED_DIGITS]) -> Result<(bool, &'b [u8]), Refusal> {
    let mut len = 0;
    let mut plus = false;
    for &b in input {
        match b {
            b'0'..=b'9' => {
                let slot = buf.get_mut(len).ok_or(Refusal::TooLong)?;
                *slot = b;
                len += 1;
            }
            b'-' | b'.' | b'(' | b')' | b' ' => {}
            b'+' if len == 0 && !plus => plus = true,
            b';' => break,
            _ => return Err(Refusal::NotANumber),
        }
    }
    Ok((plus, &buf[..len]))
}

/// The value of at most 16 ASCII digits; 8 or more are read as two words.
#[inline(always)]
fn decimal(digits: &[u8]) -> u64 {
    match (digits.first_chunk::<8>(), digits.last_chunk::<8>()) {
        (Some(first), Some(last)) if digits.len() <= 16 => {
            words_value(digits.len(), u64::from_le_bytes(*first), u64::from_le_bytes(*last))
        }
        _ => digits.iter().fold(0, |v, &d| v * 10 + u64::from(d - b'0')),
    }
}

/// The value of `len` (8 to 16) ASCII digits, from their first and last eight bytes.
#[inline(always)]
fn words_value(len: usize, first: u64, last: u64) -> u64 {
    let low = eight_digit_value(last.wrapping_sub(ASCII_ZEROS));
    // The first len - 8 digits, moved up so that zeros lead them.
    let shift = 8 * (16 - len) as u32;
    let first = first.wrapping_sub(ASCII_ZEROS).checked_shl(shift).unwrap_or(0);
    eight_digit_value(first) * 100_000_000 + low
}

/// A local number with a global `phone-context` (`+44-20`): the context's digits lead.
#[inline(never)]
fn with_context(ctx: &[u8], dialled: &[u8]) -> Normalised {
    let mut buf = [0u8; MAX_DIALLED_DIGITS];
    // The checks in `finish`'s order: too long, incomplete, then a leading 0.
    match strip(ctx, &mut buf) {
        Ok((_, head)) if head.len() + dialled.len() > E164_MAX_DIGITS => {
            Normalised::Refused(Refusal::TooLong)
        }
        Ok((_, head @ [b'0', ..]))
            if head.len() + dialled.len() >= E164_MIN_DIGITS && !dialled.is_empty() =>
        {
            Normalised::Refused(Refusal::NotANumber)
        }
        Ok((_, head)) => finish(decimal(head), head.len(), dialled),
        Err(r) => Normalised::Refused(r),
    }
}

/// Joins leading digits already read (a country code or a context: `head_len` digits of value
/// `head`, the first not 0; none when `head_len` is 0) and the rest into a checked E.164 number.
#[inline(always)]
fn finish(head: u64, head_len: usize, rest: &[u8]) -> Normalised {
    let total = head_len + rest.len();
    if total > E164_MAX_DIGITS {
        return Normalised::Refused(Refusal::TooLong);
    }
    let Some(&first) = rest.first() else { return Normalised::Refused(Refusal::Incomplete) };
    if total < E164_MIN_DIGITS {
        return Normalised::Refused(Refusal::Incomplete);
    }
    if head_len == 0 && first == b'0' {
        return Normalised::Refused(Refusal::NotANumber);
    }
    // rest.len() <= total <= E164_MAX_DIGITS: in bounds.
    let value = head * POW10[rest.len()] + decimal(rest);
    Normalised::Number(E164::new(value, total as u8))
}

#[cfg(test)]
mod tests {
    use super::*;
    use control::config::Config;

    /// A plan from a `[[trunk]]` body (country code, prefixes, options).
    fn plan(fields: &str) -> NumberingPlan {
        let text = format!("[[trunk]]\nname = \"t\"\nsources = [\"192.0.2.0/24\"]\n{fields}\n");
        let config = Config::from_toml(&text).unwrap();
        NumberingPlan::from_trunk(&config.trunks[0]).unwrap()
    }

    fn nanp() -> NumberingPlan {
        plan("country_code = \"1\"\nnational_prefix = \"1\"\ninternational_prefix = \"011\"")
    }
    fn uk() -> NumberingPlan {
        plan("country_code = \"44\"\nnational_prefix = \"0\"\ninternational_prefix = \"00\"")
    }
    fn germany() -> NumberingPlan {
        plan("country_code = \"49\"\nnational_prefix = \"0\"\ninternational_prefix = \"00\"")
    }
    fn india() -> NumberingPlan {
        plan("country_code = \"91\"\nnational_prefix = \"0\"\ninternational_prefix = \"00\"")
    }

    enum Want {
        Num(u64),
        Emergency,
        Refused(u16),
    }
    use Want::*;

    fn check(plan: &NumberingPlan, cases: &[(&str, Want)]) {
        for (input, want) in cases {
            let got = plan.normalise(input.as_bytes(), None);
            match (want, got) {
                (Num(v), Normalised::Number(n)) => {
                    assert_eq!(n.key(), *v, "{input:?}");
                    assert_eq!(usize::from(n.digits()), v.to_string().len(), "{input:?}");
                }
                (Emergency, Normalised::Emergency) => {}
                (Refused(code), Normalised::Refused(r)) => assert_eq!(r.status(), *code, "{input:?}: {r:?}"),
                (_, got) => panic!("{input:?}: got {got:?}"),
            }
        }
    }

    #[test]
    fn digits_are_checked_and_read_by_word_at_every_length() {
        let all = b"9876543210123456";
        for len in 1..=15 {
            let d = &all[..len];
            assert!(all_digits(d));
            assert_eq!(decimal(d), std::str::from_utf8(d).unwrap().parse::<u64>().unwrap(), "{len}");
            for bad in [b'/', b':', b'?', b'a', b' ', 0x80 + b'5', 0xFA, 0xFF, 0x09] {
                for at in 0..len {
                    let mut b = d.to_vec();
                    b[at] = bad;
                    assert!(!all_digits(&b), "{b:?}");
                }
            }
        }
        assert!(all_digits(all) && !all_digits(b"98765432101234567x"));
    }

    #[test]
    fn leading_digits_strip_by_word_and_by_slice() {
        type Case = (&'static str, &'static [u8], Option<&'static [u8]>);
        let cases: [Case; 8] = [
            ("", b"0044207946", Some(b"0044207946")),
            ("00", b"0044207946", Some(b"44207946")),
            ("011", b"0044207946", None),
            ("011", b"01144207946", Some(b"44207946")),
            ("12345678", b"12345678", Some(b"")),
            ("12345678", b"12345679", None),
            ("00", b"0012", Some(b"12")),
            ("00", b"0", None),
        ];
        for (prefix, digits, want) in cases {
            assert_eq!(Digits::new(prefix).unwrap().strip_from(digits), want, "{prefix:?} {digits:?}");
        }
    }

    #[test]
    fn nanp_numbers() {
        check(
            &nanp(),
            &[
                ("+15551230000", Num(15551230000)),
                ("+1 (555) 123-0000", Num(15551230000)),
                ("1-555-123-0000", Num(15551230000)),
                ("555.123.0000", Num(15551230000)),
                ("5551230000", Num(15551230000)),
                ("+15551230000;npdi;rn=+15551239999", Num(15551230000)),
                ("011 44 20 7946 0000", Num(442079460000)),
                ("011919876543210", Num(919876543210)),
                ("911", Emergency),
                ("+1911", Emergency),
                ("411", Refused(484)),
                ("1411", Refused(484)),
                ("555123", Refused(484)),
                ("011", Refused(484)),
                ("", Refused(484)),
                ("+", Refused(484)),
                ("- ()", Refused(484)),
                ("alice", Refused(404)),
                ("1-800-FLOWERS", Refused(404)),
                ("*67 5551230000", Refused(404)),
                ("555+1230000", Refused(404)),
                ("++15551230000", Refused(404)),
                ("+1234567890123456", Refused(404)),
                ("0115551234567890123", Refused(404)),
                ("99999999999999999999999999999", Refused(404)),
                ("+0123456789", Refused(404)),
                ("+123456", Refused(484)),
            ],
        );
    }

    #[test]
    fn uk_numbers() {
        check(
            &uk(),
            &[
                ("02079460000", Num(442079460000)),
                ("020 7946 0000", Num(442079460000)),
                // "(0)" is not special: parentheses are separators, so the 0 stays (in Italy it
                // belongs to the number) and this finds no DID rather than a guessed one.
                ("+44 (0)20 7946 0000", Num(4402079460000)),
                ("+442079460000", Num(442079460000)),
                ("00 1 555 123 0000", Num(15551230000)),
                ("0800 1111", Num(448001111)),
                ("999", Emergency),
                ("112", Emergency),
                ("+44999", Emergency),
                ("911", Refused(484)),
                ("118118", Refused(484)),
                ("0", Refused(484)),
                ("00", Refused(484)),
                ("000", Refused(484)),
            ],
        );
    }

    #[test]
    fn germany_numbers() {
        check(
            &germany(),
            &[
                ("030 1234567", Num(49301234567)),
                ("(089) 123456", Num(4989123456)),
                ("0049 30 1234567", Num(49301234567)),
                ("+49 30 1234567", Num(49301234567)),
                ("0151 23456789", Num(4915123456789)),
                ("110", Emergency),
                ("112", Emergency),
                ("116116", Refused(484)),
            ],
        );
    }

    #[test]
    fn india_numbers() {
        check(
            &india(),
            &[
                ("09876543210", Num(919876543210)),
                ("+91 98765 43210", Num(919876543210)),
                ("0091-98765-43210", Num(919876543210)),
                ("98765 43210", Num(919876543210)),
                ("112", Emergency),
                ("100", Emergency),
                ("108", Emergency),
            ],
        );
    }

    #[test]
    fn configured_emergency_numbers_replace_the_defaults() {
        let p = plan(
            "country_code = \"44\"\nnational_prefix = \"0\"\ninternational_prefix = \"00\"\nemergency_numbers = [\"999\", \"101\"]",
        );
        check(&p, &[("999", Emergency), ("101", Emergency), ("112", Refused(484))]);
        let p = plan("country_code = \"61\"\nnational_prefix = \"0\"\ninternational_prefix = \"0011\"");
        check(&p, &[("000", Emergency), ("112", Emergency), ("0011 44 20 7946 0000", Num(442079460000))]);
    }

    #[test]
    fn min_national_digits_is_per_trunk() {
        let p = plan(
            "country_code = \"683\"\nnational_prefix = \"\"\ninternational_prefix = \"00\"\nmin_national_digits = 4",
        );
        check(&p, &[("4002", Num(6834002)), ("400", Refused(484)), ("112", Emergency)]);
    }

    #[test]
    fn tel_phone_context() {
        let p = uk();
        let n = |user: &str, ctx: &str| p.normalise(user.as_bytes(), Some(ctx.as_bytes()));
        assert_eq!(n("555-123-0000", "+1"), Normalised::Number(E164::new(15551230000, 11)));
        assert_eq!(n("7946 0000", "+44-20"), Normalised::Number(E164::new(442079460000, 12)));
        // A domain context adds nothing: the trunk's rules apply.
        assert_eq!(n("02079460000", "example.com"), Normalised::Number(E164::new(442079460000, 12)));
        // A global number ignores the context.
        assert_eq!(n("+15551230000", "+44"), Normalised::Number(E164::new(15551230000, 11)));
        assert_eq!(n("999", "+44"), Normalised::Emergency);
        assert_eq!(n("12345678901234", "+44"), Normalised::Refused(Refusal::TooLong));
        assert_eq!(n("79460000", "+4x"), Normalised::Refused(Refusal::NotANumber));
    }

    #[test]
    fn e164_conversions() {
        let n = E164::parse_plus("+442079460000").unwrap();
        assert_eq!((n.key(), n.digits()), (442079460000, 12));
        assert_eq!(n.to_string(), "+442079460000");
        assert_eq!(E164::from_key(n.key()), Some(n));
        assert_eq!(E164::from_key(0), None);
        assert_eq!(E164::from_key(1_000_000_000_000_000), None);
        assert_eq!(E164::parse_plus("+0442079460000"), None);
        assert_eq!(E164::parse_plus("442079460000"), None);
        assert_eq!(E164::parse_plus("+1234567890123456"), None);
        assert_eq!(E164::parse_plus("+1"), Some(E164::new(1, 1)));
    }

    proptest::proptest! {
        /// Any E.164 number written with `+` and arbitrary separators normalises to itself.
        #[test]
        fn separators_never_change_the_number(
            digits in "[1-9][0-9]{6,14}",
            seps in proptest::collection::vec(proptest::sample::select(vec!["", "-", ".", " ", "(", ")"]), 16),
        ) {
            let mut s = String::from("+");
            for (d, sep) in digits.chars().zip(&seps) {
                s.push_str(sep);
                s.push(d);
            }
            let got = nanp().normalise(s.as_bytes(), None);
            let want = E164::from_digits(digits.as_bytes()).unwrap();
            // +1911-like inputs are emergency calls; everything else is the number itself.
            if digits != "1911" {
                proptest::prop_assert_eq!(got, Normalised::Number(want));
            }
        }

        /// A dialled string with separators normalises as its bare digits do (the copy out of
        /// line and the in-place read agree), on every trunk rule and with a `phone-context`.
        #[test]
        fn separators_take_the_same_rules(
            plus in proptest::bool::ANY,
            digits in "[0-9]{1,19}",
            seps in proptest::collection::vec(proptest::sample::select(vec!["-", ".", " ", "(", ")"]), 19),
            context in proptest::option::of("\\+[0-9]{0,16}|example\\.com"),
        ) {
            let bare = format!("{}{digits}", if plus { "+" } else { "" });
            let mut spaced = String::from(if plus { "+" } else { "" });
            for (d, sep) in digits.chars().zip(&seps) {
                spaced.push(d);
                spaced.push_str(sep);
            }
            let ctx = context.as_deref().map(str::as_bytes);
            // Italy: no national prefix; a made-up plan with long prefixes and a long minimum.
            let italy = plan("country_code = \"39\"\nnational_prefix = \"\"\ninternational_prefix = \"00\"");
            let long = plan(
                "country_code = \"998\"\nnational_prefix = \"8123\"\ninternational_prefix = \"8810\"\nmin_national_digits = 11",
            );
            for plan in [nanp(), uk(), india(), italy, long] {
                proptest::prop_assert_eq!(plan.normalise(bare.as_bytes(), ctx), plan.normalise(spaced.as_bytes(), ctx));
            }
        }

        /// Arbitrary bytes never panic and never yield a number outside E.164.
        #[test]
        fn arbitrary_input_is_total(input in proptest::collection::vec(proptest::num::u8::ANY, 0..40)) {
            if let Normalised::Number(n) = uk().normalise(&input, None) {
                proptest::prop_assert!((E164_MIN_DIGITS..=E164_MAX_DIGITS).contains(&usize::from(n.digits())));
                proptest::prop_assert_eq!(E164::from_key(n.key()), Some(n));
            }
        }
    }
}
