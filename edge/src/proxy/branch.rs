//! Our Via branch: `z9hG4bK-se-{shard}-{slot}-{generation}-{attempt}-{salt}` (hex fields).
//!
//! The branch locates the transaction a response belongs to (shard, slot and generation of its
//! table entry, and which serial attempt it was) without a second index; the salt, random per
//! process, makes a forged or stale branch fail the comparison with the stored one. The prefix
//! also marks our own Vias for loop detection.

use std::fmt::Write as _;

use super::table::Handle;

/// Prefix of every branch this proxy writes (RFC 3261 magic cookie, then our mark).
pub const OUR_BRANCH_PREFIX: &[u8] = b"z9hG4bK-se-";

/// Longest branch we write, in bytes.
pub const BRANCH_MAX_BYTES: usize = 64;

/// The decoded fields of one of our branches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Branch {
    /// Shard of the transaction table.
    pub shard: u32,
    /// Slot and generation of the entry.
    pub handle: Handle,
    /// Which serial attempt (failover) this branch is.
    pub attempt: u32,
    /// Per-process salt.
    pub salt: u64,
}

/// A branch written into a fixed buffer (no allocation).
#[derive(Debug, Clone, Copy)]
pub struct BranchText {
    buf: [u8; BRANCH_MAX_BYTES],
    len: usize,
}

impl BranchText {
    /// The text.
    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits and the prefix are ever written.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

struct Fixed<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl std::fmt::Write for Fixed<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        self.buf.get_mut(self.len..end).ok_or(std::fmt::Error)?.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

impl Branch {
    /// Writes the branch.
    pub fn text(&self) -> BranchText {
        let mut buf = [0u8; BRANCH_MAX_BYTES];
        let (slot, generation) = self.handle.parts();
        let mut w = Fixed { buf: &mut buf, len: 0 };
        // The fields are bounded (u32/u64 in hex), so this always fits in 64 bytes.
        let _ = write!(
            w,
            "z9hG4bK-se-{:x}-{:x}-{:x}-{:x}-{:x}",
            self.shard, slot, generation, self.attempt, self.salt
        );
        let len = w.len;
        BranchText { buf, len }
    }

    /// Decodes one of our branches; `None` for anyone else's or a malformed one.
    pub fn parse(branch: &[u8]) -> Option<Self> {
        let rest = branch.strip_prefix(OUR_BRANCH_PREFIX)?;
        let mut fields = rest.split(|&b| b == b'-');
        let mut next = || -> Option<u64> {
            let f = fields.next()?;
            if f.is_empty() || f.len() > 16 {
                return None;
            }
            u64::from_str_radix(std::str::from_utf8(f).ok()?, 16).ok()
        };
        let shard = u32::try_from(next()?).ok()?;
        let slot = u32::try_from(next()?).ok()?;
        let generation = u32::try_from(next()?).ok()?;
        let attempt = u32::try_from(next()?).ok()?;
        let salt = next()?;
        if fields.next().is_some() {
            return None;
        }
        Some(Self { shard, handle: Handle::from_parts(slot, generation), attempt, salt })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects() {
        let b = Branch { shard: 15, handle: Handle::from_parts(123_456, 7), attempt: 2, salt: u64::MAX };
        let t = b.text();
        assert!(t.as_str().starts_with("z9hG4bK-se-f-1e240-7-2-"));
        assert!(t.as_str().len() <= BRANCH_MAX_BYTES);
        assert_eq!(Branch::parse(t.as_str().as_bytes()), Some(b));
        for bad in [
            &b"z9hG4bK74bf9"[..],
            b"z9hG4bK-se-1-2-3-4",
            b"z9hG4bK-se-1-2-3-4-5-6",
            b"z9hG4bK-se-1-2-3-4-zz",
            b"z9hG4bK-se-1-2-3-4-11111111111111111",
            b"z9hG4bK-se-100000000-2-3-4-5",
        ] {
            assert_eq!(Branch::parse(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }
}
