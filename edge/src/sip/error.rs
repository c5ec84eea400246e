//! Parse errors: what was wrong, where (byte offset into the message) and a static reason.
//! Every error is the peer's fault; none allocates.

use core::fmt;

/// The kind of a parse error. Limits have kinds of their own so that hostile input can be
/// counted apart from plain garbage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The message ends before its header section does (on a stream: read more; on UDP: malformed).
    Incomplete,
    /// The request line or status line is malformed.
    StartLine,
    /// The SIP version is well-formed but not `SIP/2.0` (answer 505).
    UnsupportedVersion,
    /// The status code is not three digits in 100..=699.
    StatusCode,
    /// A URI is malformed.
    Uri,
    /// A header line has no valid name or no colon.
    HeaderName,
    /// A header value does not follow its grammar.
    HeaderValue,
    /// A header that must appear exactly once appears more than once.
    DuplicateHeader,
    /// A header the message must carry is absent.
    MissingHeader,
    /// Content-Length is malformed or larger than the body that came.
    ContentLength,
    /// The CSeq method differs from the request method.
    CSeqMethodMismatch,
    /// A number does not fit its field (CSeq above 2^32-1, Max-Forwards above 255, ...).
    NumberTooLarge,
    /// The message is larger than `Limits::max_message_bytes`.
    MessageTooLarge,
    /// There are more header lines than the caller's index array holds.
    TooManyHeaders,
    /// A header line is longer than `Limits::max_header_line_bytes`.
    HeaderLineTooLong,
    /// There are more Via values than `Limits::max_vias`.
    TooManyVias,
}

impl ErrorKind {
    /// The SIP status a server answers a request failing this way with (RFC 3261 §21): 505 for a
    /// foreign version, 513 for an oversized message, 400 for the rest.
    pub fn status_code(self) -> u16 {
        match self {
            ErrorKind::UnsupportedVersion => 505,
            ErrorKind::MessageTooLarge => 513,
            _ => 400,
        }
    }

    /// True when the error is a configured limit being exceeded.
    pub fn is_limit(self) -> bool {
        matches!(
            self,
            ErrorKind::MessageTooLarge
                | ErrorKind::TooManyHeaders
                | ErrorKind::HeaderLineTooLong
                | ErrorKind::TooManyVias
        )
    }
}

/// A parse error: its kind, the byte offset into the message where it was found, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[error("{kind:?} at byte {pos}: {reason}")]
pub struct ParseError {
    kind: ErrorKind,
    pos: usize,
    reason: &'static str,
}

impl ParseError {
    pub(crate) const fn new(kind: ErrorKind, pos: usize, reason: &'static str) -> Self {
        Self { kind, pos, reason }
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Byte offset into the message (the datagram) where the problem was found.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// A static description of the problem.
    pub fn reason(&self) -> &'static str {
        self.reason
    }
}

/// Errors of the message writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The output buffer is too small for the message.
    #[error("output buffer too small ({capacity} bytes)")]
    BufferTooSmall {
        /// Length of the buffer the caller gave.
        capacity: usize,
    },
    /// Max-Forwards is 0: the request must not be forwarded (answer 483).
    #[error("Max-Forwards is 0")]
    MaxForwardsExhausted,
    /// The message lacks what the operation needs (a request for a response, a Via, ...).
    #[error("cannot write: {0}")]
    Unsuitable(&'static str),
    /// A header the writer reads is malformed.
    #[error("malformed input: {0}")]
    Parse(#[from] ParseError),
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// An error found inside a value, before it is placed in the message: `addr` is the address of
/// the offending byte, turned into an offset by [`Invalid::within`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Invalid {
    addr: usize,
    kind: ErrorKind,
    reason: &'static str,
}

impl Invalid {
    /// An error at the start of `at` (a sub-slice of the message being parsed).
    pub(crate) fn new(at: &[u8], kind: ErrorKind, reason: &'static str) -> Self {
        Self { addr: at.as_ptr() as usize, kind, reason }
    }

    /// The error as a [`ParseError`] with its offset into `buf`.
    pub(crate) fn within(self, buf: &[u8]) -> ParseError {
        let pos = self.addr.saturating_sub(buf.as_ptr() as usize).min(buf.len());
        ParseError::new(self.kind, pos, self.reason)
    }
}
