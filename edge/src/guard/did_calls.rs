//! Concurrent calls per DID: a sharded map of live counts, updated once when a call starts and
//! once when it ends (never per packet), where an entry exists only while its DID has calls
//! (memory follows the active calls, not the inventory). DIDs without a limit are counted
//! against `u32::MAX`.

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;

/// Live call counts per DID, keyed by the E.164 key.
#[derive(Debug, Default)]
pub struct DidCalls {
    active: DashMap<u64, u32, ahash::RandomState>,
}

impl DidCalls {
    /// Takes a slot on `did` unless it already has `max` calls.
    pub fn try_admit(&self, did: u64, max: u32) -> bool {
        match self.active.entry(did) {
            Entry::Occupied(mut e) if *e.get() < max => {
                *e.get_mut() += 1;
                true
            }
            Entry::Occupied(_) => false,
            Entry::Vacant(e) if max > 0 => {
                e.insert(1);
                true
            }
            Entry::Vacant(_) => false,
        }
    }

    /// Gives a slot back; the entry goes when the DID has no call left.
    pub fn release(&self, did: u64) {
        if let Entry::Occupied(mut e) = self.active.entry(did) {
            if *e.get() <= 1 {
                e.remove();
            } else {
                *e.get_mut() -= 1;
            }
        }
    }

    /// Calls active on `did`.
    pub fn active(&self, did: u64) -> u32 {
        self.active.get(&did).map_or(0, |c| *c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_release_and_entries_freed() {
        let d = DidCalls::default();
        assert!(d.try_admit(15551230000, 2));
        assert!(d.try_admit(15551230000, 2));
        assert!(!d.try_admit(15551230000, 2));
        assert!(d.try_admit(15551230001, 2), "limits are per DID");
        d.release(15551230000);
        assert!(d.try_admit(15551230000, 2));
        for _ in 0..5 {
            d.release(15551230000);
        }
        assert_eq!(d.active(15551230000), 0, "never negative");
        d.release(15551230001);
        assert!(d.active.is_empty(), "idle DIDs take no memory");
        assert!(!d.try_admit(1, 0));
    }
}
