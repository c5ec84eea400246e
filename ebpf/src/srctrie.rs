//! The source tries (`src_v4`, `src_v6`) hold the allow-list and the blocklist together, so that
//! the program answers both with one longest-prefix lookup. Each entry is a prefix that is
//! itself allow-listed and/or blocked ("own" listing); its effective flags come from every listed
//! prefix covering it. The longest match for an address is then covered by exactly the listed
//! prefixes that contain the address (any prefix containing the address contains the longest
//! match too), so its effective flags are the whole answer.

use std::collections::HashMap;

use crate::shared::{OWN_ALLOW, OWN_BLOCK, SRC_ALLOWED, SRC_BLOCKED, SrcValue};

/// A prefix of one family: (length in bits, address bytes with the host bits zeroed).
pub(crate) type Prefix<const N: usize> = (u32, [u8; N]);

/// How one prefix is listed itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Own {
    /// Allow-listed, for this trunk index.
    pub(crate) allow: Option<u32>,
    /// Blocked until this deadline (0: never).
    pub(crate) block: Option<u64>,
}

impl Own {
    pub(crate) fn is_listed(&self) -> bool {
        self.allow.is_some() || self.block.is_some()
    }

    /// The own listing recorded in a trie value.
    pub(crate) fn of(v: &SrcValue) -> Own {
        Own {
            allow: (v.flags & OWN_ALLOW != 0).then_some(v.trunk),
            block: (v.flags & OWN_BLOCK != 0).then_some(v.own_block_expires_ns),
        }
    }
}

/// `addr` with every bit past `len` cleared.
pub(crate) fn mask<const N: usize>(mut addr: [u8; N], len: u32) -> [u8; N] {
    for (i, b) in addr.iter_mut().enumerate() {
        let first_bit = u32::try_from(i * 8).unwrap_or(u32::MAX);
        if first_bit >= len {
            *b = 0;
        } else if len - first_bit < 8 {
            *b &= 0xffu8 << (8 - (len - first_bit));
        }
    }
    addr
}

/// Later of two block deadlines, where 0 (never) outlasts every deadline.
fn later(a: u64, b: u64) -> u64 {
    if a == 0 || b == 0 { 0 } else { a.max(b) }
}

/// The trie contents for these own listings: every listed prefix with its effective flags.
pub(crate) fn derive<const N: usize>(own: &HashMap<Prefix<N>, Own>) -> HashMap<Prefix<N>, SrcValue> {
    own.iter()
        .filter(|(_, o)| o.is_listed())
        .map(|(&(len, addr), o)| {
            let mut v = SrcValue {
                own_block_expires_ns: o.block.unwrap_or(0),
                trunk: o.allow.unwrap_or(0),
                flags: if o.allow.is_some() { OWN_ALLOW } else { 0 }
                    | if o.block.is_some() { OWN_BLOCK } else { 0 },
                block_expires_ns: 0,
            };
            let mut blocked: Option<u64> = None;
            for l in 0..=len {
                let Some(cover) = own.get(&(l, mask(addr, l))) else { continue };
                if cover.allow.is_some() {
                    v.flags |= SRC_ALLOWED;
                }
                if let Some(exp) = cover.block {
                    blocked = Some(blocked.map_or(exp, |b| later(b, exp)));
                }
            }
            if let Some(exp) = blocked {
                v.flags |= SRC_BLOCKED;
                v.block_expires_ns = exp;
            }
            ((len, addr), v)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_clears_host_bits() {
        assert_eq!(mask([10, 1, 2, 255], 24), [10, 1, 2, 0]);
        assert_eq!(mask([10, 1, 2, 255], 25), [10, 1, 2, 128]);
        assert_eq!(mask([255; 4], 0), [0; 4]);
        assert_eq!(mask([255; 4], 32), [255; 4]);
    }

    #[test]
    fn covering_listings_flow_down_to_longer_prefixes() {
        let mut own: HashMap<Prefix<4>, Own> = HashMap::new();
        own.insert((24, [10, 0, 0, 0]), Own { allow: Some(3), block: None });
        own.insert((16, [10, 0, 0, 0]), Own { allow: None, block: Some(500) });
        own.insert((8, [10, 0, 0, 0]), Own { allow: None, block: Some(900) });
        own.insert((32, [10, 0, 0, 7]), Own { allow: None, block: Some(100) });
        own.insert((32, [192, 0, 2, 1]), Own { allow: Some(1), block: None });
        let d = derive(&own);
        let host = d[&(32, [10, 0, 0, 7])];
        assert_eq!(host.flags, SRC_ALLOWED | SRC_BLOCKED | OWN_BLOCK);
        assert_eq!(host.block_expires_ns, 900, "the latest covering deadline");
        let net = d[&(24, [10, 0, 0, 0])];
        assert_eq!((net.flags, net.trunk), (SRC_ALLOWED | SRC_BLOCKED | OWN_ALLOW, 3));
        assert_eq!(d[&(32, [192, 0, 2, 1])].flags, SRC_ALLOWED | OWN_ALLOW);
        own.insert((0, [0; 4]), Own { allow: None, block: Some(0) });
        assert_eq!(derive(&own)[&(24, [10, 0, 0, 0])].block_expires_ns, 0, "never outlasts all");
    }
}
