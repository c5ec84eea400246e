//! A zero-copy SIP message parser (RFC 3261 §7, §20, §25) and the writer the proxy needs.
//!
//! [`parse`] borrows the datagram and a caller-sized header index (reuse one per worker):
//! ```
//! use edge::sip::{self, HeaderIndexEntry, Method, MAX_HEADERS};
//! let datagram = b"OPTIONS sip:+15551230000@example.com;user=phone SIP/2.0\r\n\
//!     Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK74bf9\r\nMax-Forwards: 70\r\n\
//!     From: <sip:alice@example.com>;tag=9fxced76sl\r\nTo: <sip:+15551230000@example.com>\r\n\
//!     Call-ID: 3848276298220188511@192.0.2.1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
//! let mut index = [HeaderIndexEntry::EMPTY; MAX_HEADERS];
//! let msg = sip::parse(datagram, &mut index)?;
//! assert_eq!(msg.method(), Some(Method::Options));
//! assert_eq!(msg.top_via()?.branch(), Some(&b"z9hG4bK74bf9"[..]));
//! assert_eq!(msg.from()?.tag(), Some(&b"9fxced76sl"[..]));
//! assert_eq!(msg.cseq()?.number, 1);
//! # Ok::<(), edge::sip::ParseError>(())
//! ```
//! Parsing finds the start line, indexes every header line as byte ranges, checks framing
//! (Content-Length; octets after the body are discarded) and that single-valued headers appear
//! once. Header values are parsed only when an accessor asks, without allocating;
//! [`SipMessage::validate`] parses them all (what `sipedge sip lint` reports).
//!
//! What is checked when follows RFC 3261 §16.3 (a proxy validates what it uses; other
//! components, well-formed or not, are forwarded unchanged): [`parse`] checks the framing
//! eagerly (start line with its Request-URI, every header name and colon, Content-Length,
//! single-valued headers appearing once); each accessor checks in full the header it reads
//! before returning anything from it; a header no accessor reads is never checked and is
//! forwarded as it came. `validate` runs every accessor, so `sipedge sip lint` judges the
//! whole message.
//!
//! For speed, each grammar has a fast path for the shape nearly every message has (a header
//! name ending within 32 bytes of its line start and the line's end, found in one SSE2 pass
//! over the 64 bytes from the line start, the name matched word by word;
//! `user@host[:port];params` SIP URIs with IPv4 hosts parsed as they are found and the common
//! user-part bytes checked 16 at a time; `SIP/2.0/` Vias and From/To values with plain
//! parameters, whose branch and tag are found in the same pass, a list of 16 to 63 bytes split
//! at an SSE2 mask of its `;` and `=`, and the commonest lists (`user=phone`, `tag=...`,
//! `branch=...;rport`) taken whole by word compares; `digits SP method` CSeqs) and a general
//! path for everything else. A fast path returns a result only where the general path would return
//! the same one, and otherwise hands the input to it, so every error (kind, position,
//! reason) comes from the general path.

mod chars;
mod cseq;
mod error;
mod header;
mod limits;
mod list;
mod nameaddr;
mod params;
mod scan;
mod startline;
mod uri;
mod via;
mod writer;

pub use cseq::{CSeq, SessionExpires};
pub use error::{ErrorKind, ParseError, WriteError};
pub use header::HeaderKind;
pub use limits::{Limits, MAX_HEADER_LINE_BYTES, MAX_HEADERS, MAX_MESSAGE_BYTES, MAX_VIAS};
pub use nameaddr::NameAddr;
pub use params::{ParamIter, Params};
pub use startline::{Method, RequestLine, StartLine, StatusLine};
pub use uri::{Host, SipUri, TelUri, Unescaped, Uri, unescaped_eq, unescaped_eq_ci};
pub use via::{BRANCH_MAGIC_COOKIE, Via};
pub use writer::{
    ForwardOptions, InDialogRequest, MAX_FORWARDS_INITIAL, MAX_FORWARDS_INSERTED, RecordRouteSpec, ViaSpec,
    build_ack, build_cancel, build_in_dialog_request, forward_request, response_from_request, strip_top_via,
};

use chars::{LWS, TOKEN, WORD, all_in, is_wsp, run_in, trim_lws};
use error::Invalid;
use list::ListIter;

/// One header line in the index: byte offsets into the datagram (`u16`: a message is at most
/// [`MAX_MESSAGE_BYTES`]) and the header's kind. 12 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderIndexEntry {
    line_start: u16,
    name_end: u16,
    value_start: u16,
    value_end: u16,
    line_end: u16,
    kind: HeaderKind,
}

impl HeaderIndexEntry {
    /// An unused entry, to initialise index arrays.
    pub const EMPTY: HeaderIndexEntry = HeaderIndexEntry {
        line_start: 0,
        name_end: 0,
        value_start: 0,
        value_end: 0,
        line_end: 0,
        kind: HeaderKind::Other,
    };

    /// The header's kind.
    pub fn kind(&self) -> HeaderKind {
        self.kind
    }

    fn range(buf: &[u8], start: u16, end: u16) -> &[u8] {
        buf.get(usize::from(start)..usize::from(end)).unwrap_or_default()
    }

    /// The name as it came.
    pub(crate) fn name<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        Self::range(buf, self.line_start, self.name_end)
    }

    /// The value, LWS trimmed at both ends (folds inside kept).
    pub(crate) fn value<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        Self::range(buf, self.value_start, self.value_end)
    }

    /// The whole line, name to line end, CRLF included.
    pub(crate) fn line<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        Self::range(buf, self.line_start, self.line_end)
    }

    /// Offsets: line start, value start, value end, line end.
    pub(crate) fn offsets(&self) -> (usize, usize, usize, usize) {
        (
            usize::from(self.line_start),
            usize::from(self.value_start),
            usize::from(self.value_end),
            usize::from(self.line_end),
        )
    }
}

/// A header line of a parsed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Header<'b> {
    /// The kind (long and compact names map to the same kind).
    pub kind: HeaderKind,
    /// The name as it came.
    pub name: &'b [u8],
    /// The value, LWS trimmed at both ends; folded lines keep their CRLF and white space.
    pub value: &'b [u8],
}

/// A parsed SIP message borrowing its datagram and header index.
#[derive(Debug, Clone)]
pub struct SipMessage<'b> {
    /// The datagram up to the end of the body (trailing octets discarded).
    buf: &'b [u8],
    /// Offset of the start line (leading CRLFs are skipped, RFC 3261 §7.5).
    start_offset: u16,
    /// Offset of the empty line ending the header section.
    headers_end: u16,
    /// Offset of the body.
    body_start: u16,
    start: StartLine<'b>,
    headers: &'b [HeaderIndexEntry],
    /// Index of the first header line of each kind, or [`NO_HEADER`].
    first: [u16; HeaderKind::COUNT],
    content_length: Option<u16>,
    max_vias: usize,
}

/// Marks an absent kind in [`SipMessage::first`].
const NO_HEADER: u16 = u16::MAX;

/// Parses `buf` with the default [`Limits`], indexing header lines into `index` (its length is
/// the header-count limit).
pub fn parse<'b>(buf: &'b [u8], index: &'b mut [HeaderIndexEntry]) -> Result<SipMessage<'b>, ParseError> {
    parse_with_limits(buf, index, &Limits::DEFAULT)
}

/// Parses `buf` under `limits`, indexing header lines into `index`.
pub fn parse_with_limits<'b>(
    buf: &'b [u8],
    index: &'b mut [HeaderIndexEntry],
    limits: &Limits,
) -> Result<SipMessage<'b>, ParseError> {
    let err = |kind, pos, why| Err(ParseError::new(kind, pos, why));
    let max = limits.max_message_bytes.min(MAX_MESSAGE_BYTES);
    if buf.len() > max {
        return err(ErrorKind::MessageTooLarge, max, "message larger than the limit");
    }
    let max_line = limits.max_header_line_bytes;
    let mut pos = buf.iter().take_while(|&&b| b == b'\r' || b == b'\n').count();
    let start_offset = pos;
    let mut lfs = scan::LfScanner::new(buf);
    let Some(nl) = lfs.find(pos).map(|lf| lf - pos) else {
        return err(ErrorKind::Incomplete, buf.len(), "no end of start line");
    };
    if nl > max_line {
        return err(ErrorKind::HeaderLineTooLong, pos + max_line, "start line too long");
    }
    let line = buf.get(pos..pos + nl).unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let start = startline::parse_start_line(line).map_err(|e| e.within(buf))?;
    pos += nl + 1;

    let mut count = 0usize;
    let mut first = [NO_HEADER; HeaderKind::COUNT];
    let mut content_length = None;
    let mut padded = [0u8; scan::WINDOW_BYTES];
    let (headers_end, body_start) = loop {
        let window = match buf.get(pos..pos + scan::WINDOW_BYTES).and_then(|w| w.first_chunk()) {
            Some(window) => window,
            None => padded_window(&mut padded, buf.get(pos..).unwrap_or_default()),
        };
        // A padded window's zero (no byte) is no token character either.
        let line = if TOKEN[window[0] as usize] {
            match line_fast(buf, pos, window, &mut lfs, max_line) {
                Some(line) => line,
                None => line_slow(buf, pos, &mut lfs, max_line)?,
            }
        } else {
            match section_end(buf, pos)? {
                Some(end) => break end,
                None => line_slow(buf, pos, &mut lfs, max_line)?,
            }
        };
        let (kind, eol) = (line.kind, line.eol);
        let Some(slot) = index.get_mut(count) else {
            return err(ErrorKind::TooManyHeaders, pos, "more header lines than the index holds");
        };
        // Offsets fit in u16: the message is at most MAX_MESSAGE_BYTES (u16::MAX) long.
        *slot = HeaderIndexEntry {
            line_start: pos as u16,
            name_end: line.name_end as u16,
            value_start: line.value_start as u16,
            value_end: line.value_end as u16,
            line_end: (eol + 1) as u16,
            kind,
        };
        if kind != HeaderKind::Other {
            if let Some(f) = first.get_mut(kind as usize) {
                if *f == NO_HEADER {
                    *f = count as u16;
                } else if kind.is_singleton() {
                    return err(ErrorKind::DuplicateHeader, pos, "header must appear once");
                }
            }
            if kind == HeaderKind::ContentLength {
                let value = buf.get(line.value_start..line.value_end).unwrap_or_default();
                let n = match cseq::short_number(value) {
                    Some(n) => n,
                    None => cseq::number(value, MAX_MESSAGE_BYTES as u64, "Content-Length")
                        .map_err(|e| e.within(buf))
                        .map_err(|e| {
                            ParseError::new(ErrorKind::ContentLength, e.pos(), "malformed Content-Length")
                        })? as u16,
                };
                content_length = Some(n);
            }
        }
        count += 1;
        pos = eol + 1;
    };
    let available = buf.len() - body_start;
    let body_len = match content_length {
        Some(n) if usize::from(n) > available => {
            return err(ErrorKind::Incomplete, buf.len(), "body shorter than Content-Length");
        }
        Some(n) => usize::from(n),
        None => available,
    };
    let headers: &'b [HeaderIndexEntry] = index;
    Ok(SipMessage {
        buf: buf.get(..body_start + body_len).unwrap_or(buf),
        start_offset: start_offset as u16,
        headers_end: headers_end as u16,
        body_start: body_start as u16,
        start,
        headers: headers.get(..count).unwrap_or_default(),
        first,
        content_length,
        max_vias: limits.max_vias,
    })
}

/// Where the parts of one header line are (offsets into the datagram).
struct Line {
    /// End of the name.
    name_end: usize,
    /// Start and end of the value, LWS trimmed.
    value_start: usize,
    value_end: usize,
    /// The LF ending the line (the last one, when the line is folded).
    eol: usize,
    kind: HeaderKind,
}

/// At a line not starting with a token character: the offsets of the empty line ending the
/// header section and of the body, an error, or `None` for a line [`line_slow`] decides.
#[inline(never)]
fn section_end(buf: &[u8], pos: usize) -> Result<Option<(usize, usize)>, ParseError> {
    match buf.get(pos..).unwrap_or_default() {
        [] | [b'\r'] => Err(ParseError::new(ErrorKind::Incomplete, pos, "no empty line after the headers")),
        [b'\r', b'\n', ..] => Ok(Some((pos, pos + 2))),
        [b'\n', ..] => Ok(Some((pos, pos + 1))),
        [b' ' | b'\t', ..] => {
            Err(ParseError::new(ErrorKind::HeaderName, pos, "continuation line without a header"))
        }
        _ => Ok(None),
    }
}

/// The header line at `pos`, for the common shape: a name ending within
/// [`scan::NAME_WINDOW_BYTES`] bytes, followed at once by `:`, optional white space, a value
/// without folds or white space at its end. `None` for anything else, valid or not, which
/// [`line_slow`] then decides; where this returns a line, that one returns the same: the name
/// is the token before the colon (a known name matches the name table exactly, which proves
/// it a token; an unknown one is checked), the line ends at the first LF after the colon.
#[inline(always)]
fn line_fast(
    buf: &[u8],
    pos: usize,
    window: &[u8; scan::WINDOW_BYTES],
    lfs: &mut scan::LfScanner<'_>,
    max_line: usize,
) -> Option<Line> {
    let (colons, lfs_head) = scan::line_masks(window);
    if colons == 0 {
        return None;
    }
    // Offsets below are from `pos`; bytes at 64 and beyond are read from `buf` (a padded
    // window's zeros stand for bytes that are not there, which `buf.get` reads as none).
    let name_len = colons.trailing_zeros() as usize;
    let kind = HeaderKind::from_window(window, name_len);
    if kind == HeaderKind::Other && !all_in(window.get(..name_len)?, &TOKEN) {
        return None;
    }
    let at = |off: usize| match window.get(off) {
        Some(&b) => b,
        None => buf.get(pos + off).copied().unwrap_or(0),
    };
    // The name (a token) and the colon hold no LF: the window's first LF is the first after
    // the colon; without one in the window, it is the first after the window. A short line
    // ends in the 32 bytes already classified.
    let lfs_in_window = if lfs_head != 0 { u64::from(lfs_head) } else { scan::lf_mask_window_tail(window) };
    let nl = if lfs_in_window != 0 {
        lfs_in_window.trailing_zeros() as usize
    } else if let Some(m) = buf
        .get(pos + scan::WINDOW_BYTES..)
        .and_then(|r| r.first_chunk::<{ scan::LANE_BYTES }>())
        .map(scan::lf_mask_lanes)
        .filter(|&m| m != 0)
    {
        // A line of 64 to 80 bytes, from one 16-byte compare.
        scan::WINDOW_BYTES + m.trailing_zeros() as usize
    } else {
        match buf.get(pos + scan::WINDOW_BYTES..).and_then(|r| r.first_chunk::<{ scan::WINDOW_BYTES }>()) {
            // A longer line (an Identity header): its end is far enough away for `memchr`.
            Some(next) => match scan::lf_mask(next) {
                0 => {
                    let far = buf.get(pos + 2 * scan::WINDOW_BYTES..)?;
                    2 * scan::WINDOW_BYTES + memchr::memchr(b'\n', far)?
                }
                m => scan::WINDOW_BYTES + m.trailing_zeros() as usize,
            },
            None => lfs.find(pos + scan::WINDOW_BYTES)? - pos,
        }
    };
    if nl > max_line {
        return None;
    }
    // A line ending inside the window (nearly all) reads every byte below from the window
    // (offsets up to `nl + 1`), without the way out to `buf`; one ending in the 16 bytes after
    // it, from those 80 bytes.
    let (value_start, value_end) = if nl + 1 < scan::WINDOW_BYTES {
        value_bounds(name_len, nl, |off| window.get(off).copied().unwrap_or(0))?
    } else if let Some(wide) =
        buf.get(pos..pos + WIDE_WINDOW_BYTES).and_then(|w| w.first_chunk::<WIDE_WINDOW_BYTES>())
        && nl + 1 < WIDE_WINDOW_BYTES
    {
        value_bounds(name_len, nl, |off| wide.get(off).copied().unwrap_or(0))?
    } else {
        value_bounds(name_len, nl, at)?
    };
    Some(Line {
        name_end: pos + name_len,
        value_start: pos + value_start,
        value_end: pos + value_end,
        eol: pos + nl,
        kind,
    })
}

/// The window and the 16 bytes after it, where the lines of 64 to 80 bytes end.
const WIDE_WINDOW_BYTES: usize = scan::WINDOW_BYTES + scan::LANE_BYTES;

/// The value's bounds (offsets from the line start) of a header line whose colon is at
/// `name_len` and whose first LF is at `nl`, with `at` reading the line's bytes (0 past the
/// message): `None` when the line is folded (SP or HTAB after the LF), when the white space
/// after the colon runs past the window, or when the value starts or ends with LWS.
#[inline(always)]
fn value_bounds(name_len: usize, nl: usize, at: impl Fn(usize) -> u8) -> Option<(usize, usize)> {
    // The usual line, `name: value CRLF` with one SP after the colon and a value without LWS
    // at its ends, in one test: what the steps below find for it.
    let (start, end) = (name_len + 2, nl.saturating_sub(1));
    if at(name_len + 1) == b' '
        && at(end) == b'\r'
        && end > start
        && !LWS[at(start) as usize]
        && !LWS[at(end - 1) as usize]
        && !is_wsp(at(nl + 1))
    {
        return Some((start, end));
    }
    if matches!(at(nl + 1), b' ' | b'\t') {
        return None;
    }
    // White space after the colon stops at the line's end at the latest (an LF is not white
    // space); a run reaching past the window goes the general way.
    let mut value_start = name_len + 1;
    // The usual single SP first (the colon is within the first 32 bytes, so this stays
    // inside the window).
    if at(value_start) == b' ' {
        value_start += 1;
    }
    while is_wsp(at(value_start)) {
        value_start += 1;
        if value_start >= scan::WINDOW_BYTES {
            return None;
        }
    }
    let value_end = if nl > value_start && at(nl - 1) == b'\r' { nl - 1 } else { nl };
    if value_end > value_start && (LWS[at(value_start) as usize] || LWS[at(value_end - 1) as usize]) {
        return None;
    }
    Some((value_start, value_end))
}

/// The window of a line less than [`scan::WINDOW_BYTES`] bytes before the end of the message
/// (the last lines of one without a body): its bytes in `padded`, then zeros, which are
/// neither `:` nor LF, so that the window's masks are those of the bytes that are there.
#[cold]
#[inline(never)]
fn padded_window<'p>(padded: &'p mut [u8; scan::WINDOW_BYTES], rest: &[u8]) -> &'p [u8; scan::WINDOW_BYTES] {
    padded.fill(0);
    let n = rest.len().min(scan::WINDOW_BYTES);
    if let (Some(to), Some(from)) = (padded.get_mut(..n), rest.get(..n)) {
        to.copy_from_slice(from);
    }
    padded
}

/// The header line at `pos`, byte by byte: folded lines, names longer than the window, and
/// every error.
#[cold]
#[inline(never)]
fn line_slow(
    buf: &[u8],
    pos: usize,
    lfs: &mut scan::LfScanner<'_>,
    max_line: usize,
) -> Result<Line, ParseError> {
    let err = |kind, pos, why| Err(ParseError::new(kind, pos, why));
    let rest = buf.get(pos..).unwrap_or_default();
    let mut name_len = 0;
    while rest.get(name_len).is_some_and(|&b| TOKEN[b as usize]) {
        name_len += 1;
    }
    if name_len == 0 {
        return err(ErrorKind::HeaderName, pos, "header name is not a token");
    }
    let mut p = pos + name_len;
    while buf.get(p).is_some_and(|&b| is_wsp(b)) {
        p += 1;
    }
    match buf.get(p) {
        Some(b':') => p += 1,
        None => return err(ErrorKind::Incomplete, p, "header line without ':'"),
        Some(_) => return err(ErrorKind::HeaderName, p, "header name not followed by ':'"),
    }
    // The line ends at the first LF not followed by SP or HTAB (RFC 3261 §7.3.1 folding).
    let mut scan = p;
    let eol = loop {
        let Some(nl) = lfs.find(scan) else {
            return err(ErrorKind::Incomplete, buf.len(), "header line without end");
        };
        if nl - pos > max_line {
            return err(ErrorKind::HeaderLineTooLong, pos, "header line too long");
        }
        match buf.get(nl + 1) {
            Some(b' ' | b'\t') => scan = nl + 1,
            _ => break nl,
        }
    };
    // Drop the usual SP after the colon and the CR before the LF first, so that the trim
    // below usually finds nothing to do.
    let mut value_from = p;
    while buf.get(value_from).is_some_and(|&b| is_wsp(b)) {
        value_from += 1;
    }
    let value_to = if eol > value_from && buf.get(eol - 1) == Some(&b'\r') { eol - 1 } else { eol };
    let value = trim_lws(buf.get(value_from..value_to).unwrap_or_default());
    let value_start = value.as_ptr() as usize - buf.as_ptr() as usize;
    let kind = HeaderKind::from_name(buf.get(pos..pos + name_len).unwrap_or_default());
    Ok(Line { name_end: pos + name_len, value_start, value_end: value_start + value.len(), eol, kind })
}

impl<'b> SipMessage<'b> {
    /// The message as received, from its start line to the end of its body (leading CRLFs and
    /// trailing octets excluded).
    pub fn as_bytes(&self) -> &'b [u8] {
        self.buf.get(usize::from(self.start_offset)..).unwrap_or_default()
    }

    /// The datagram up to the end of the body: header offsets index into this.
    pub(crate) fn buf(&self) -> &'b [u8] {
        self.buf
    }

    /// The start line.
    pub fn start_line(&self) -> &StartLine<'b> {
        &self.start
    }

    /// True for a request.
    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request(_))
    }

    /// True for a response.
    pub fn is_response(&self) -> bool {
        matches!(self.start, StartLine::Response(_))
    }

    /// The request line of a request.
    pub fn request_line(&self) -> Option<&RequestLine<'b>> {
        match &self.start {
            StartLine::Request(r) => Some(r),
            StartLine::Response(_) => None,
        }
    }

    /// The method of a request.
    pub fn method(&self) -> Option<Method<'b>> {
        self.request_line().map(|r| r.method)
    }

    /// The Request-URI of a request.
    pub fn request_uri(&self) -> Option<&Uri<'b>> {
        self.request_line().map(|r| &r.uri)
    }

    /// The status code of a response.
    pub fn status(&self) -> Option<u16> {
        match &self.start {
            StartLine::Response(s) => Some(s.code),
            StartLine::Request(_) => None,
        }
    }

    /// Offsets of the header section's end (the empty line) and of the body.
    pub(crate) fn section_offsets(&self) -> (usize, usize, usize) {
        (usize::from(self.start_offset), usize::from(self.headers_end), usize::from(self.body_start))
    }

    /// The index entries, in order.
    pub(crate) fn entries(&self) -> &'b [HeaderIndexEntry] {
        self.headers
    }

    /// The entries from the first header line of `kind` on (empty when there is none).
    pub(crate) fn entries_from(&self, kind: HeaderKind) -> &'b [HeaderIndexEntry] {
        match self.first.get(kind as usize) {
            Some(&i) if i != NO_HEADER => self.headers.get(usize::from(i)..).unwrap_or_default(),
            _ => &[],
        }
    }

    /// Index (into [`Self::entries`]) of the first header line of `kind`.
    pub(crate) fn first_index(&self, kind: HeaderKind) -> Option<usize> {
        self.first.get(kind as usize).filter(|&&i| i != NO_HEADER).map(|&i| usize::from(i))
    }

    /// Number of header lines.
    pub fn header_count(&self) -> usize {
        self.headers.len()
    }

    /// Every header line, in order, unknown ones included.
    pub fn headers(&self) -> impl Iterator<Item = Header<'b>> + 'b {
        let buf = self.buf;
        self.headers.iter().map(move |e| Header { kind: e.kind, name: e.name(buf), value: e.value(buf) })
    }

    /// The header lines of one kind, in order.
    pub fn headers_of(&self, kind: HeaderKind) -> impl Iterator<Item = Header<'b>> + 'b {
        let buf = self.buf;
        self.entries_from(kind).iter().filter(move |e| e.kind == kind).map(move |e| Header {
            kind: e.kind,
            name: e.name(buf),
            value: e.value(buf),
        })
    }

    /// The value of the first header line of `kind`.
    #[inline]
    pub fn header_value(&self, kind: HeaderKind) -> Option<&'b [u8]> {
        self.first_index(kind).and_then(|i| self.headers.get(i)).map(|e| e.value(self.buf))
    }

    #[inline]
    fn required(&self, kind: HeaderKind, why: &'static str) -> Result<&'b [u8], ParseError> {
        self.header_value(kind).ok_or(ParseError::new(
            ErrorKind::MissingHeader,
            usize::from(self.headers_end),
            why,
        ))
    }

    /// Every Via value, top first, over all Via lines; more than `Limits::max_vias` is an error.
    pub fn vias(&self) -> Vias<'b> {
        Vias {
            list: ListIter::new(self.buf, self.entries_from(HeaderKind::Via), HeaderKind::Via),
            buf: self.buf,
            seen: 0,
            max: self.max_vias,
        }
    }

    /// The top Via value.
    #[inline(always)]
    pub fn top_via(&self) -> Result<Via<'b>, ParseError> {
        let first_line = self.required(HeaderKind::Via, "no Via header")?;
        // A value of the common shape holds no comma (see `Via::parse_fast`): it is the whole
        // first line, which the list would yield (the indexed value is trimmed), unsplit.
        if self.max_vias > 0
            && let Some(via) = Via::parse_fast(first_line)
        {
            return Ok(via);
        }
        self.vias().next().unwrap_or(Err(ParseError::new(ErrorKind::MissingHeader, 0, "no Via header")))
    }

    #[inline(always)]
    fn name_addr(&self, kind: HeaderKind, why: &'static str) -> Result<NameAddr<'b>, ParseError> {
        NameAddr::parse(self.required(kind, why)?).map_err(|e| e.within(self.buf))
    }

    /// The From header.
    #[inline(always)]
    pub fn from(&self) -> Result<NameAddr<'b>, ParseError> {
        self.name_addr(HeaderKind::From, "no From header")
    }

    /// The To header.
    #[inline]
    pub fn to(&self) -> Result<NameAddr<'b>, ParseError> {
        self.name_addr(HeaderKind::To, "no To header")
    }

    /// The Call-ID (`word [ "@" word ]`).
    #[inline]
    pub fn call_id(&self) -> Result<&'b [u8], ParseError> {
        let v = self.required(HeaderKind::CallId, "no Call-ID header")?;
        if call_id_ok(v) {
            Ok(v)
        } else {
            Err(Invalid::new(v, ErrorKind::HeaderValue, "malformed Call-ID").within(self.buf))
        }
    }

    /// The CSeq; in a request its method must be the request's method.
    #[inline]
    pub fn cseq(&self) -> Result<CSeq<'b>, ParseError> {
        let v = self.required(HeaderKind::CSeq, "no CSeq header")?;
        let c = CSeq::parse(v).map_err(|e| e.within(self.buf))?;
        match self.method() {
            Some(m) if m != c.method => Err(Invalid::new(
                v,
                ErrorKind::CSeqMethodMismatch,
                "CSeq method differs from the request method",
            )
            .within(self.buf)),
            _ => Ok(c),
        }
    }

    /// Max-Forwards (0..=255), when present.
    #[inline]
    pub fn max_forwards(&self) -> Result<Option<u8>, ParseError> {
        let Some(v) = self.header_value(HeaderKind::MaxForwards) else {
            return Ok(None);
        };
        // One to three digits, at most 255 (what nearly every value is), read at once; the
        // rest (leading zeros, errors) by the general number parser.
        let digit = |i: usize| v.get(i).map(|b| b.wrapping_sub(b'0')).filter(|&d| d <= 9).map(u16::from);
        let fast = match v.len() {
            1 => digit(0),
            2 => digit(0).zip(digit(1)).map(|(a, b)| a * 10 + b),
            3 => digit(0).zip(digit(1)).zip(digit(2)).map(|((a, b), c)| a * 100 + b * 10 + c),
            _ => None,
        };
        if let Some(n) = fast.and_then(|n| u8::try_from(n).ok()) {
            return Ok(Some(n));
        }
        cseq::number(v, u8::MAX.into(), "Max-Forwards").map(|n| Some(n as u8)).map_err(|e| e.within(self.buf))
    }

    /// Contact values in order (`*` included).
    pub fn contacts(&self) -> Contacts<'b> {
        Contacts {
            list: ListIter::new(self.buf, self.entries_from(HeaderKind::Contact), HeaderKind::Contact),
            buf: self.buf,
        }
    }

    fn addresses(&self, kind: HeaderKind) -> NameAddrs<'b> {
        NameAddrs { list: ListIter::new(self.buf, self.entries_from(kind), kind), buf: self.buf }
    }

    /// Route values in order.
    pub fn routes(&self) -> NameAddrs<'b> {
        self.addresses(HeaderKind::Route)
    }

    /// Record-Route values in order.
    pub fn record_routes(&self) -> NameAddrs<'b> {
        self.addresses(HeaderKind::RecordRoute)
    }

    /// P-Asserted-Identity values in order (RFC 3325).
    pub fn p_asserted_identities(&self) -> NameAddrs<'b> {
        self.addresses(HeaderKind::PAssertedIdentity)
    }

    /// The Content-Length, when given.
    pub fn content_length(&self) -> Option<usize> {
        self.content_length.map(usize::from)
    }

    /// The body (Content-Length octets; without Content-Length, the rest of the datagram).
    pub fn body(&self) -> &'b [u8] {
        self.buf.get(usize::from(self.body_start)..).unwrap_or_default()
    }

    /// The Content-Type value as it came.
    pub fn content_type(&self) -> Option<&'b [u8]> {
        self.header_value(HeaderKind::ContentType)
    }

    /// The Identity header value (RFC 8224), as it came.
    pub fn identity(&self) -> Option<&'b [u8]> {
        self.header_value(HeaderKind::Identity)
    }

    /// The User-Agent value, as it came.
    pub fn user_agent(&self) -> Option<&'b [u8]> {
        self.header_value(HeaderKind::UserAgent)
    }

    /// Expires, in seconds, when present.
    pub fn expires(&self) -> Result<Option<u32>, ParseError> {
        self.header_value(HeaderKind::Expires)
            .map(|v| cseq::delta_seconds(v).map_err(|e| e.within(self.buf)))
            .transpose()
    }

    /// Session-Expires (RFC 4028), when present.
    pub fn session_expires(&self) -> Result<Option<SessionExpires<'b>>, ParseError> {
        self.header_value(HeaderKind::SessionExpires)
            .map(|v| SessionExpires::parse(v).map_err(|e| e.within(self.buf)))
            .transpose()
    }

    /// Parses every header the accessors know and checks that the mandatory ones are there
    /// (Via, From, To, Call-ID, CSeq; RFC 3261 §8.1.1): what a server checks before answering
    /// anything but 400.
    pub fn validate(&self) -> Result<(), ParseError> {
        self.top_via()?;
        for v in self.vias() {
            v?;
        }
        self.from()?;
        self.to()?;
        self.call_id()?;
        self.cseq()?;
        self.max_forwards()?;
        self.expires()?;
        self.session_expires()?;
        for c in self.contacts() {
            c?;
        }
        for kind in [HeaderKind::Route, HeaderKind::RecordRoute, HeaderKind::PAssertedIdentity] {
            for a in self.addresses(kind) {
                a?;
            }
        }
        if let Some(ct) = self.content_type() {
            let media = ct.split(|&b| b == b';').next().unwrap_or_default();
            let mut parts = media.splitn(2, |&b| b == b'/');
            let ok = parts.all(|p| all_in(trim_lws(p), &TOKEN)) && media.contains(&b'/');
            if !ok {
                return Err(
                    Invalid::new(ct, ErrorKind::HeaderValue, "malformed Content-Type").within(self.buf)
                );
            }
        }
        Ok(())
    }
}

/// `callid = word [ "@" word ]`: 16 bytes at a time from 16 bytes on, else [`call_id_narrow`].
fn call_id_ok(v: &[u8]) -> bool {
    scan::call_id_wide(v).unwrap_or_else(|| call_id_narrow(v))
}

/// `callid = word [ "@" word ]`, in one pass (`@` is not a `word` character).
fn call_id_narrow(v: &[u8]) -> bool {
    let first = run_in(v, &WORD);
    match v.get(first..) {
        Some([]) => first > 0,
        Some([b'@', host @ ..]) => first > 0 && !host.is_empty() && run_in(host, &WORD) == host.len(),
        _ => false,
    }
}

/// Iterator over Via values; see [`SipMessage::vias`].
#[derive(Debug, Clone)]
pub struct Vias<'b> {
    list: ListIter<'b>,
    buf: &'b [u8],
    seen: usize,
    max: usize,
}

impl<'b> Iterator for Vias<'b> {
    type Item = Result<Via<'b>, ParseError>;
    fn next(&mut self) -> Option<Self::Item> {
        let raw = self.list.next()?;
        self.seen += 1;
        if self.seen > self.max {
            let at = raw.map_or(0, |r| r.as_ptr() as usize - self.buf.as_ptr() as usize);
            self.list = ListIter::new(self.buf, &[], HeaderKind::Via);
            return Some(Err(ParseError::new(ErrorKind::TooManyVias, at, "more Via values than the limit")));
        }
        Some(raw.and_then(Via::parse).map_err(|e| e.within(self.buf)))
    }
}

/// Iterator over address values (Route, Record-Route, P-Asserted-Identity).
#[derive(Debug, Clone)]
pub struct NameAddrs<'b> {
    list: ListIter<'b>,
    buf: &'b [u8],
}

impl<'b> Iterator for NameAddrs<'b> {
    type Item = Result<NameAddr<'b>, ParseError>;
    fn next(&mut self) -> Option<Self::Item> {
        Some(self.list.next()?.and_then(NameAddr::parse_outlined).map_err(|e| e.within(self.buf)))
    }
}

/// A Contact value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contact<'b> {
    /// `*` (REGISTER: remove all bindings).
    Any,
    /// An address.
    Address(NameAddr<'b>),
}

/// Iterator over Contact values.
#[derive(Debug, Clone)]
pub struct Contacts<'b> {
    list: ListIter<'b>,
    buf: &'b [u8],
}

impl<'b> Iterator for Contacts<'b> {
    type Item = Result<Contact<'b>, ParseError>;
    fn next(&mut self) -> Option<Self::Item> {
        let raw = self.list.next()?;
        Some(
            raw.and_then(|r| {
                if r == b"*" { Ok(Contact::Any) } else { NameAddr::parse_outlined(r).map(Contact::Address) }
            })
            .map_err(|e| e.within(self.buf)),
        )
    }
}

#[cfg(test)]
mod tests;
