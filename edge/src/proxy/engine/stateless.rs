//! Stateless forwarding (RFC 3261 §16.11): ACKs for 2xx, and requests within calls that the
//! transaction table has no room for, so that a BYE still ends its call when the table is full.
//!
//! The branch of a stateless forward names where its responses go and proves that the edge
//! wrote it: `z9hG4bK-sl-` then, in lower-case hex, a keyed 64-bit digest, the listen index
//! (2 digits), the port (4) and the address (8 for IPv4, 32 for IPv6) the request came from.
//! The digest covers that destination and the upstream's own branch (the response's second
//! Via), with a key drawn when the engine starts: a response is relayed only to where its
//! request came from, and a forged one (another destination, another upstream branch) is
//! dropped as stray. Retransmissions of a request get the same branch, as §16.11 asks.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::*;

/// Branch prefix of the edge's stateless forwards.
pub(super) const STATELESS_BRANCH_PREFIX: &[u8] = b"z9hG4bK-sl-";
/// Longest stateless branch, in bytes: the prefix, 16 + 2 + 4 digits and an IPv6 address.
const MAX_STATELESS_BRANCH_BYTES: usize = STATELESS_BRANCH_PREFIX.len() + 16 + 2 + 4 + 32;

/// Where a stateless forward's responses go, as its branch names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Upstream {
    addr: SocketAddr,
    listen: usize,
}

/// The hex digits of `s` as one number (at most 32 digits); `None` for anything else.
fn hex(s: &[u8]) -> Option<u128> {
    if s.is_empty() || s.len() > 32 {
        return None;
    }
    s.iter().try_fold(0u128, |acc, &b| Some(acc << 4 | u128::from(char::from(b).to_digit(16)?)))
}

/// Reads the part of a stateless branch after the prefix: (digest, upstream).
fn parse_branch(rest: &[u8]) -> Option<(u64, Upstream)> {
    let (digest, rest) = rest.split_at_checked(16)?;
    let (listen, rest) = rest.split_at_checked(2)?;
    let (port, ip) = rest.split_at_checked(4)?;
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(u32::try_from(hex(ip)?).ok()?)),
        32 => IpAddr::V6(Ipv6Addr::from(hex(ip)?)),
        _ => return None,
    };
    let upstream = Upstream {
        addr: SocketAddr::new(ip, u16::try_from(hex(port)?).ok()?),
        listen: usize::try_from(hex(listen)?).ok()?,
    };
    Some((u64::try_from(hex(digest)?).ok()?, upstream))
}

impl Engine {
    /// The keyed digest of a stateless branch.
    fn stateless_digest(&self, upstream_branch: &[u8], upstream: Upstream) -> u64 {
        self.hasher[0].hash_one((b"stateless", upstream_branch, upstream.addr, upstream.listen))
    }

    /// The branch of a stateless forward of a request whose top Via has `upstream_branch`.
    fn stateless_branch<'b>(
        &self,
        buf: &'b mut [u8; MAX_STATELESS_BRANCH_BYTES],
        upstream_branch: &[u8],
        upstream: Upstream,
    ) -> &'b str {
        let digest = self.stateless_digest(upstream_branch, upstream);
        let (listen, port) = (upstream.listen & 0xff, upstream.addr.port());
        let prefix = std::str::from_utf8(STATELESS_BRANCH_PREFIX).unwrap_or_default();
        match upstream.addr.ip() {
            IpAddr::V4(ip) => fixed_fmt(
                buf,
                format_args!("{prefix}{digest:016x}{listen:02x}{port:04x}{:08x}", u32::from(ip)),
            ),
            IpAddr::V6(ip) => fixed_fmt(
                buf,
                format_args!("{prefix}{digest:016x}{listen:02x}{port:04x}{:032x}", u128::from(ip)),
            ),
        }
    }

    /// Forwards `msg` to `hop` without a transaction; false when it was not sent (counted).
    pub(super) fn forward_stateless(&self, msg: &SipMessage<'_>, hop: &Hop, ctx: &mut Ctx<'_, '_>) -> bool {
        let received = msg.top_via().ok().and_then(|v| v.branch()).unwrap_or_default();
        let mut bbuf = [0u8; MAX_STATELESS_BRANCH_BYTES];
        let upstream = Upstream { addr: ctx.src, listen: ctx.listen };
        let branch = self.stateless_branch(&mut bbuf, received, upstream);
        let opts = ForwardOptions {
            via: ViaSpec {
                transport: "UDP",
                host: &ctx.local.host,
                port: ctx.local.addr.port(),
                branch,
                rport: true,
            },
            request_uri: hop.request_uri.as_ref().map(|(buf, len)| &buf[..*len]),
            pop_route: hop.pop_route,
            record_route: None,
        };
        let sent =
            ctx.sink.send_with(hop.dest, ctx.listen, &mut |buf| sip::forward_request(msg, &opts, buf).ok());
        if sent {
            ctx.sink.forwarded();
            inc(&self.counters.forwarded);
        } else {
            inc(&self.counters.send_refused);
        }
        sent
    }

    /// An ACK for a 2xx: forwarded without a transaction.
    pub(super) fn forward_in_dialog_stateless(
        &self,
        msg: &SipMessage<'_>,
        trunk: Option<TrunkIdx>,
        ctx: &mut Ctx<'_, '_>,
    ) {
        if matches!(msg.max_forwards(), Ok(Some(0)) | Err(_)) || self.is_loop(msg, ctx.local) {
            return;
        }
        let Some(hop) = self.in_dialog_next_hop(msg, trunk, ctx) else { return };
        self.forward_stateless(msg, &hop, ctx);
    }

    /// A request within a call that the transaction table has no room for: forwarded without
    /// a transaction (its responses come back through [`Engine::on_stateless_response`]) rather
    /// than refused, so that the call can still end.
    pub(super) fn forward_table_full(&self, msg: &SipMessage<'_>, hop: &Hop, ctx: &mut Ctx<'_, '_>) {
        if matches!(msg.max_forwards(), Ok(Some(0))) {
            return self.reply(msg, 483, "Too Many Hops", &[], ctx);
        }
        if self.is_loop(msg, ctx.local) {
            return self.reply(msg, 482, "Loop Detected", &[], ctx);
        }
        if self.forward_stateless(msg, hop, ctx) {
            inc(&self.counters.forwarded_stateless_table_full);
        }
    }

    /// A response whose top Via has a stateless branch (`true`: handled here, relayed or
    /// dropped), or not one (`false`).
    pub(super) fn on_stateless_response(
        &self,
        branch: &[u8],
        msg: &SipMessage<'_>,
        ctx: &mut Ctx<'_, '_>,
    ) -> bool {
        let Some(rest) = branch.strip_prefix(STATELESS_BRANCH_PREFIX) else { return false };
        let upstream_branch = match msg.vias().nth(1) {
            Some(Ok(via)) => via.branch().unwrap_or_default(),
            _ => {
                inc(&self.counters.stray_responses);
                return true;
            }
        };
        let Some((_, upstream)) =
            parse_branch(rest).filter(|&(d, u)| d == self.stateless_digest(upstream_branch, u))
        else {
            inc(&self.counters.stray_responses);
            return true;
        };
        let sent =
            ctx.sink.send_with(upstream.addr, upstream.listen, &mut |buf| sip::strip_top_via(msg, buf).ok());
        if sent {
            ctx.sink.forwarded();
            inc(&self.counters.responses_forwarded);
        } else {
            inc(&self.counters.send_refused);
        }
        // A BYE's final ends its call here as it does through a transaction.
        self.on_non_invite_final(msg, msg.status().unwrap_or(0));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branches_read_back_as_written_for_both_families() {
        let engine = Engine::new(
            Guard::from_config(&control::config::Config::from_toml("").unwrap()).unwrap(),
            Arc::new(Router::from_config(&control::config::Config::from_toml("").unwrap()).unwrap()),
            EngineConfig::default(),
        );
        for (addr, listen) in [("192.0.2.7:5060", 0), ("[2001:db8::1]:65535", 3)] {
            let upstream = Upstream { addr: addr.parse().unwrap(), listen };
            let mut buf = [0u8; MAX_STATELESS_BRANCH_BYTES];
            let branch = engine.stateless_branch(&mut buf, b"z9hG4bKup", upstream).to_owned();
            let rest = branch.as_bytes().strip_prefix(STATELESS_BRANCH_PREFIX).unwrap();
            let (digest, read) = parse_branch(rest).unwrap();
            assert_eq!(read, upstream);
            assert_eq!(digest, engine.stateless_digest(b"z9hG4bKup", upstream));
            assert_ne!(digest, engine.stateless_digest(b"z9hG4bKother", upstream));
        }
        for bad in [&b""[..], b"0123", b"0123456789abcdef00", b"0123456789abcdef0013c4c000020", b"zz"] {
            assert_eq!(parse_branch(bad), None, "{bad:?}");
        }
    }
}
