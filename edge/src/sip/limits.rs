//! The parser's bounds, each a named constant with its unit. Exceeding one is an error of its
//! own kind ([`ErrorKind::MessageTooLarge`](super::ErrorKind::MessageTooLarge) and friends), so
//! that an operator can tell hostile input from garbage.

/// Largest message accepted, in bytes: a UDP datagram's payload can be no larger, and every
/// offset in the header index is a `u16` because of it.
pub const MAX_MESSAGE_BYTES: usize = u16::MAX as usize;

/// Suggested length of a caller's header index array (`[HeaderIndexEntry; MAX_HEADERS]`), in
/// header lines. The index array the caller passes is the real bound: a message with more
/// header lines than it holds fails with `TooManyHeaders`.
pub const MAX_HEADERS: usize = 96;

/// Default longest header line, in bytes, folded continuation lines included.
pub const MAX_HEADER_LINE_BYTES: usize = 4096;

/// Default largest number of Via values (hops) in one message.
pub const MAX_VIAS: usize = 64;

/// Bounds one parse applies; [`Limits::DEFAULT`] holds the constants above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest message, in bytes; values above [`MAX_MESSAGE_BYTES`] act as that.
    pub max_message_bytes: usize,
    /// Longest header line, in bytes, folded continuation lines included.
    pub max_header_line_bytes: usize,
    /// Largest number of Via values counted over all Via header lines.
    pub max_vias: usize,
}

impl Limits {
    /// The defaults: [`MAX_MESSAGE_BYTES`], [`MAX_HEADER_LINE_BYTES`], [`MAX_VIAS`].
    pub const DEFAULT: Limits = Limits {
        max_message_bytes: MAX_MESSAGE_BYTES,
        max_header_line_bytes: MAX_HEADER_LINE_BYTES,
        max_vias: MAX_VIAS,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}
