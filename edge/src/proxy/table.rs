//! A bounded table of entries keyed by a short byte key (a Via branch), with a deadline heap.
//!
//! The table starts at [`INITIAL_SLOTS`] and grows with the load up to its `capacity`, then
//! reuses its slots: an idle edge with a large bound stays small, and a loaded one stops
//! allocating once it has reached its working size. A full table refuses the insert (the
//! caller answers 503 and counts it). Deadlines are kept lazily: re-arming pushes a new heap entry
//! and stale ones are skipped by generation when popped.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Instant;

/// Longest key kept, in bytes. RFC 3261 branches from real stacks are 20–60 bytes; a longer one
/// is refused rather than truncated (two truncated keys could collide).
pub const MAX_KEY_BYTES: usize = 96;

/// Slots, index entries and heap entries allocated at construction (the table grows from here).
pub const INITIAL_SLOTS: usize = 1024;

/// Heap entries kept per slot before stale ones are compacted away.
const HEAP_SLACK_PER_SLOT: usize = 4;

/// A key: up to [`MAX_KEY_BYTES`] bytes stored inline, plus a kind byte (so that an INVITE's
/// and a CANCEL's transactions with the same branch stay apart).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    kind: u8,
    len: u8,
    bytes: [u8; MAX_KEY_BYTES],
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({}, {:?})", self.kind, String::from_utf8_lossy(self.as_bytes()))
    }
}

impl Key {
    /// A key of `bytes` in namespace `kind`; `None` when `bytes` is empty or too long.
    pub fn new(kind: u8, bytes: &[u8]) -> Option<Self> {
        if bytes.is_empty() || bytes.len() > MAX_KEY_BYTES {
            return None;
        }
        let mut k = Self { kind, len: u8::try_from(bytes.len()).ok()?, bytes: [0; MAX_KEY_BYTES] };
        k.bytes[..bytes.len()].copy_from_slice(bytes);
        Some(k)
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The namespace byte.
    pub fn kind(&self) -> u8 {
        self.kind
    }
}

/// A handle to an occupied slot; stale once the entry is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Handle {
    slot: u32,
    generation: u32,
}

impl Handle {
    /// The slot and generation, for encoding into a branch.
    pub fn parts(self) -> (u32, u32) {
        (self.slot, self.generation)
    }

    /// A handle from decoded parts; a wrong one simply finds nothing.
    pub fn from_parts(slot: u32, generation: u32) -> Self {
        Self { slot, generation }
    }
}

#[derive(Debug)]
struct Slot<V> {
    generation: u32,
    entry: Option<(Key, V)>,
    deadline: Option<Instant>,
}

/// Why an insert was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InsertError {
    /// Every slot is taken.
    #[error("table full")]
    Full,
    /// The key is already present.
    #[error("key already present")]
    Duplicate,
}

/// The bounded table.
#[derive(Debug)]
pub struct Table<V> {
    slots: Vec<Slot<V>>,
    capacity: u32,
    free: Vec<u32>,
    index: HashMap<Key, u32>,
    heap: BinaryHeap<Reverse<(Instant, u32, u32)>>,
    refused_full: u64,
}

impl<V> Table<V> {
    /// A table of at most `capacity` entries.
    pub fn with_capacity(capacity: u32) -> Self {
        let cap = usize::try_from(capacity).unwrap_or(usize::MAX);
        let initial = cap.min(INITIAL_SLOTS);
        Self {
            slots: Vec::with_capacity(initial),
            capacity,
            free: Vec::with_capacity(initial),
            index: HashMap::with_capacity(initial),
            heap: BinaryHeap::with_capacity(initial.saturating_mul(HEAP_SLACK_PER_SLOT)),
            refused_full: 0,
        }
    }

    /// Entries present.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Inserts refused because the table was full.
    pub fn refused_full(&self) -> u64 {
        self.refused_full
    }

    /// Inserts an entry.
    pub fn insert(&mut self, key: Key, value: V) -> Result<Handle, InsertError> {
        if self.index.contains_key(&key) {
            return Err(InsertError::Duplicate);
        }
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None if (self.slots.len() as u64) < u64::from(self.capacity) => {
                self.slots.push(Slot { generation: 0, entry: None, deadline: None });
                (self.slots.len() - 1) as u32
            }
            None => {
                self.refused_full += 1;
                return Err(InsertError::Full);
            }
        };
        let s = &mut self.slots[slot as usize];
        s.entry = Some((key, value));
        s.deadline = None;
        self.index.insert(key, slot);
        Ok(Handle { slot, generation: s.generation })
    }

    /// The handle of a key.
    pub fn find(&self, key: &Key) -> Option<Handle> {
        let slot = *self.index.get(key)?;
        Some(Handle { slot, generation: self.slots[slot as usize].generation })
    }

    /// The entry behind a handle, if it is still the same entry.
    pub fn get_mut(&mut self, h: Handle) -> Option<&mut V> {
        let s = self.slots.get_mut(h.slot as usize)?;
        if s.generation != h.generation {
            return None;
        }
        s.entry.as_mut().map(|(_, v)| v)
    }

    /// The key of a handle's entry.
    pub fn key(&self, h: Handle) -> Option<&Key> {
        let s = self.slots.get(h.slot as usize)?;
        if s.generation != h.generation {
            return None;
        }
        s.entry.as_ref().map(|(k, _)| k)
    }

    /// Sets (or clears) the entry's deadline.
    pub fn set_deadline(&mut self, h: Handle, deadline: Option<Instant>) {
        let Some(s) = self.slots.get_mut(h.slot as usize) else { return };
        if s.generation != h.generation || s.entry.is_none() || s.deadline == deadline {
            return;
        }
        s.deadline = deadline;
        if let Some(at) = deadline {
            if self.heap.len() >= self.slots.len().max(1) * HEAP_SLACK_PER_SLOT {
                self.compact_heap();
            }
            self.heap.push(Reverse((at, h.slot, h.generation)));
        }
    }

    /// Drops heap entries that no longer match their slot's deadline.
    fn compact_heap(&mut self) {
        let slots = &self.slots;
        self.heap.retain(|Reverse((at, slot, generation))| {
            slots.get(*slot as usize).is_some_and(|s| s.generation == *generation && s.deadline == Some(*at))
        });
    }

    /// Removes an entry, returning it.
    pub fn remove(&mut self, h: Handle) -> Option<(Key, V)> {
        let s = self.slots.get_mut(h.slot as usize)?;
        if s.generation != h.generation {
            return None;
        }
        let (key, value) = s.entry.take()?;
        s.generation = s.generation.wrapping_add(1);
        s.deadline = None;
        self.index.remove(&key);
        self.free.push(h.slot);
        Some((key, value))
    }

    /// The earliest live deadline.
    pub fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(Reverse((at, slot, generation))) = self.heap.peek().copied() {
            let live = self.slots[slot as usize].generation == generation
                && self.slots[slot as usize].deadline == Some(at);
            if live {
                return Some(at);
            }
            self.heap.pop();
        }
        None
    }

    /// Pops one entry whose deadline is at or before `now`, clearing that deadline. The caller
    /// runs the entry's timers and sets its next deadline.
    pub fn pop_due(&mut self, now: Instant) -> Option<Handle> {
        let at = self.next_deadline()?;
        if at > now {
            return None;
        }
        let Reverse((_, slot, generation)) = self.heap.pop()?;
        self.slots[slot as usize].deadline = None;
        Some(Handle { slot, generation })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn key(s: &str) -> Key {
        Key::new(0, s.as_bytes()).unwrap()
    }

    #[test]
    fn bounded_insert_find_remove_and_stale_handles() {
        let mut t: Table<u32> = Table::with_capacity(2);
        let a = t.insert(key("z9hG4bKa"), 1).unwrap();
        let _b = t.insert(key("z9hG4bKb"), 2).unwrap();
        assert_eq!(t.insert(key("z9hG4bKc"), 3), Err(InsertError::Full));
        assert_eq!(t.refused_full(), 1);
        assert_eq!(t.insert(key("z9hG4bKa"), 9).err(), Some(InsertError::Duplicate));
        assert_eq!(t.find(&key("z9hG4bKa")), Some(a));
        assert_eq!(t.remove(a).map(|(_, v)| v), Some(1));
        assert_eq!(t.get_mut(a), None, "a removed entry's handle is stale");
        let c = t.insert(key("z9hG4bKc"), 3).unwrap();
        assert_eq!(t.get_mut(a), None, "a reused slot does not revive an old handle");
        assert_eq!(t.get_mut(c), Some(&mut 3));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn kinds_separate_equal_bytes_and_long_keys_are_refused() {
        assert_ne!(Key::new(1, b"x"), Key::new(2, b"x"));
        assert!(Key::new(0, &[b'a'; MAX_KEY_BYTES]).is_some());
        assert!(Key::new(0, &[b'a'; MAX_KEY_BYTES + 1]).is_none());
        assert!(Key::new(0, b"").is_none());
    }

    #[test]
    fn deadlines_pop_in_order_and_rearming_supersedes() {
        let t0 = Instant::now();
        let mut t: Table<&str> = Table::with_capacity(8);
        let a = t.insert(key("a"), "a").unwrap();
        let b = t.insert(key("b"), "b").unwrap();
        let c = t.insert(key("c"), "c").unwrap();
        t.set_deadline(a, Some(t0 + Duration::from_secs(3)));
        t.set_deadline(b, Some(t0 + Duration::from_secs(1)));
        t.set_deadline(c, Some(t0 + Duration::from_secs(2)));
        t.set_deadline(a, Some(t0 + Duration::from_millis(500)));
        t.remove(c);
        assert_eq!(t.next_deadline(), Some(t0 + Duration::from_millis(500)));
        assert_eq!(t.pop_due(t0 + Duration::from_secs(5)), Some(a));
        assert_eq!(t.pop_due(t0 + Duration::from_secs(5)), Some(b));
        assert_eq!(t.pop_due(t0 + Duration::from_secs(5)), None, "c was removed, a's old deadline is stale");
    }

    #[test]
    fn heap_stays_bounded_under_constant_rearming() {
        let t0 = Instant::now();
        let mut t: Table<()> = Table::with_capacity(4);
        let a = t.insert(key("a"), ()).unwrap();
        for i in 0..10_000u64 {
            t.set_deadline(a, Some(t0 + Duration::from_millis(i + 1)));
        }
        assert!(t.heap.len() <= 4 * HEAP_SLACK_PER_SLOT);
        assert_eq!(t.pop_due(t0 + Duration::from_secs(60)), Some(a));
        assert_eq!(t.pop_due(t0 + Duration::from_secs(60)), None);
    }
}
