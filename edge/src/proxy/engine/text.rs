//! Fixed-buffer text: reason phrases, tags, Retry-After, Request-URIs.

use super::*;

/// The standard reason phrase of the codes the edge generates.
pub(super) fn reason_phrase(code: u16) -> &'static str {
    match code {
        403 => "Forbidden",
        404 => "Not Found",
        484 => "Address Incomplete",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// Formats into a fixed buffer; empty on overflow.
pub(super) fn fixed_fmt<'b>(buf: &'b mut [u8], args: std::fmt::Arguments<'_>) -> &'b str {
    let mut cursor = std::io::Cursor::new(&mut *buf);
    let n = match std::io::Write::write_fmt(&mut cursor, args) {
        Ok(()) => usize::try_from(cursor.position()).unwrap_or(0),
        Err(_) => 0,
    };
    std::str::from_utf8(&buf[..n]).unwrap_or_default()
}

pub(super) fn retry_after(buf: &mut [u8], secs: u32) -> &str {
    fixed_fmt(buf, format_args!("Retry-After: {secs}"))
}

/// A To tag for a response the edge generates: `se{salt}.{n}`, so that the ACK to it is known
/// as ours (see [`our_tag_prefix`]).
pub(super) fn next_tag<'b>(buf: &'b mut [u8], salt: u64, counter: &mut u64) -> &'b str {
    *counter += 1;
    fixed_fmt(buf, format_args!("se{salt:x}.{:x}", *counter))
}

/// The prefix of every tag [`next_tag`] writes in this process.
pub(super) fn our_tag_prefix(buf: &mut [u8], salt: u64) -> &str {
    fixed_fmt(buf, format_args!("se{salt:x}."))
}

/// `sip:{user}@{host:port of target_uri}` (the target URI without its scheme), or `None` to
/// keep the received Request-URI when the user part is empty.
pub(super) fn rewrite_request_uri<'b>(buf: &'b mut [u8], user: &[u8], target_uri: &str) -> Option<&'b [u8]> {
    let rest = target_uri.strip_prefix("sip:")?;
    let rest = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let mut n = 0;
    for part in [b"sip:".as_slice(), user, if user.is_empty() { b"" } else { b"@" }, rest.as_bytes()] {
        buf.get_mut(n..n + part.len())?.copy_from_slice(part);
        n += part.len();
    }
    Some(&buf[..n])
}

/// `sip:{user}@{addr}` into `buf`, returning its length.
pub(super) fn write_sip_uri(buf: &mut [u8], user: &[u8], addr: SocketAddr) -> Option<usize> {
    let mut host = [0u8; 64];
    let host = fixed_fmt(&mut host, format_args!("{addr}"));
    let mut n = 0;
    for part in [b"sip:".as_slice(), user, if user.is_empty() { b"" } else { b"@" }, host.as_bytes()] {
        buf.get_mut(n..n + part.len())?.copy_from_slice(part);
        n += part.len();
    }
    Some(n)
}
