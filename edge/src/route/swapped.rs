//! A value swapped whole while readers run ([`Swapped`]), and a reader's cached copy of it
//! ([`Cached`]) whose freshness check is a few inline instructions.
//!
//! `arc-swap` holds the value; a generation counter beside it moves on every swap. A worker's
//! [`Cached`] keeps an `Arc` of the value and the generation it saw, and on each use compares
//! that generation with the shared one: one load and one compare, inlined into the lookup.
//! `arc_swap::Cache` does the same check by comparing pointers, but in a function the compiler
//! does not inline into a routed call's long body (a call, a return and register spills on
//! every lookup).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::{ArcSwap, Guard};

/// A value replaced whole while readers use it.
#[derive(Debug)]
pub struct Swapped<T> {
    current: ArcSwap<T>,
    /// Moves on after every swap (Release), after the new value is stored.
    generation: AtomicU64,
}

impl<T> Swapped<T> {
    /// Holds `value`.
    pub fn new(value: T) -> Self {
        Self { current: ArcSwap::from_pointee(value), generation: AtomicU64::new(0) }
    }

    /// The current value (an `arc-swap` guard: for calls off a worker's hot path).
    pub fn load(&self) -> Guard<Arc<T>> {
        self.current.load()
    }

    /// The current value, as an `Arc` of its own.
    pub fn load_full(&self) -> Arc<T> {
        self.current.load_full()
    }

    /// Replaces the value; returns the old one. Readers see the new one at their next use.
    pub fn swap(&self, value: Arc<T>) -> Arc<T> {
        let old = self.current.swap(value);
        self.generation.fetch_add(1, Ordering::Release);
        old
    }
}

impl<T: Default> Default for Swapped<T> {
    fn default() -> Self {
        Self::new(T::default())
    }
}

/// One reader's copy of a [`Swapped`] value, refreshed when a swap moved the generation on.
#[derive(Debug)]
pub struct Cached<T> {
    shared: Arc<Swapped<T>>,
    value: Arc<T>,
    generation: u64,
}

impl<T> Cached<T> {
    /// A reader of `shared`, holding its current value.
    pub fn new(shared: Arc<Swapped<T>>) -> Self {
        let generation = shared.generation.load(Ordering::Acquire);
        Self { value: shared.current.load_full(), shared, generation }
    }

    /// The current value: the cached one unless a swap happened since it was taken.
    #[inline(always)]
    pub fn get(&mut self) -> &T {
        // Relaxed is enough to notice a swap; `refresh` synchronises with the swapper.
        if self.shared.generation.load(Ordering::Relaxed) != self.generation {
            self.refresh();
        }
        &self.value
    }

    /// Takes the current value (out of line: swaps are rare).
    #[cold]
    #[inline(never)]
    fn refresh(&mut self) {
        // The generation first (Acquire, paired with the swap's Release): the value loaded
        // after it is that generation's or a newer one, never an older one.
        self.generation = self.shared.generation.load(Ordering::Acquire);
        self.value = self.shared.current.load_full();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_sees_every_swap_at_its_next_use() {
        let shared = Arc::new(Swapped::new(1));
        let mut reader = Cached::new(Arc::clone(&shared));
        assert_eq!(*reader.get(), 1);
        assert_eq!(*shared.swap(Arc::new(2)), 1);
        assert_eq!(*reader.get(), 2);
        let mut late = Cached::new(Arc::clone(&shared));
        shared.swap(Arc::new(3));
        shared.swap(Arc::new(4));
        assert_eq!((*reader.get(), *late.get(), **shared.load()), (4, 4, 4));
    }
}
