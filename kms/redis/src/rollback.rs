//! Rollback detection within one process lifetime: the newest state seen of each object (its
//! version) and of each index list (its length), in bounded memory.
//!
//! An honest Redis only moves these forwards: object versions grow by compare-and-swap, index
//! lists are append-only. A reply older than what this process has already seen (read, or
//! written and acknowledged) *before it sent the request* is a replay by Redis, and the store
//! refuses it with `StoreError::Rollback`. Comparing with the floor as it was before the request
//! keeps concurrent requests of this process from being mistaken for a rollback: a read that
//! raced a newer write of another thread is merely stale, not rolled back.
//!
//! The memory is bounded ([`Floors::new`]): beyond its capacity, the least recently used entry
//! is forgotten, and a rollback of a forgotten object goes undetected, as after a restart (see
//! docs/security.md, "The database").

use alloc::collections::BTreeMap;
use lock_api::{Mutex, RawMutex};

/// Default number of objects, and of index lists, whose newest state a store remembers.
pub const DEFAULT_REMEMBERED: usize = 65_536;

/// Identifier of what is tracked: an object's key name or an index list's header token.
pub type Id = [u8; 16];

/// A reply older than a state seen before the request was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Older {
    /// The state seen before the request.
    pub seen: u64,
    /// The state Redis answered.
    pub got: u64,
}

/// The newest state seen per [`Id`], least recently used first out. The lock is any
/// [`lock_api::RawMutex`] (the store's `Pool::Lock`): a spin lock by default.
pub struct Floors<L: RawMutex = spin::Mutex<()>> {
    inner: Mutex<L, Inner>,
    capacity: usize,
}

#[derive(Default)]
struct Inner {
    /// id → (newest state, last use)
    floor: BTreeMap<Id, (u64, u64)>,
    /// last use → id
    lru: BTreeMap<u64, Id>,
    tick: u64,
}

impl<L: RawMutex> core::fmt::Debug for Floors<L> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Floors")
            .field("capacity", &self.capacity)
            .field("len", &self.len())
            .finish()
    }
}

impl<L: RawMutex> Floors<L> {
    /// Remember at most `capacity` ids (0 disables the detection).
    pub fn new(capacity: usize) -> Self {
        Floors {
            inner: Mutex::new(Inner::default()),
            capacity,
        }
    }

    /// Number of ids remembered.
    pub fn len(&self) -> usize {
        self.inner.lock().floor.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The newest state seen of `id` (0 when unknown): take it *before* sending the request
    /// whose reply [`Floors::observe`] then checks.
    pub fn get(&self, id: &Id) -> u64 {
        self.inner.lock().floor.get(id).map_or(0, |(f, _)| *f)
    }

    /// Check a reply `got` for `id` against `before` (from [`Floors::get`] before the request),
    /// then raise the remembered state to `got`. Our own acknowledged writes are observed with
    /// `before = 0`.
    pub fn observe(&self, id: &Id, before: u64, got: u64) -> Result<(), Older> {
        if got < before {
            return Err(Older { seen: before, got });
        }
        if self.capacity == 0 {
            return Ok(());
        }
        let mut g = self.inner.lock();
        let inner = &mut *g;
        inner.tick = inner.tick.wrapping_add(1);
        let tick = inner.tick;
        if let Some((f, used)) = inner.floor.get_mut(id) {
            let _ = inner.lru.remove(used);
            *used = tick;
            *f = (*f).max(got);
        } else {
            while inner.floor.len() >= self.capacity {
                match inner.lru.pop_first() {
                    Some((_, old)) => {
                        let _ = inner.floor.remove(&old);
                    }
                    None => break,
                }
            }
            let _ = inner.floor.insert(*id, (got, tick));
        }
        let _ = inner.lru.insert(tick, *id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn older_than_seen_before_the_request_is_refused() {
        let f: Floors = Floors::new(8);
        let a = [1u8; 16];
        assert_eq!(f.get(&a), 0);
        f.observe(&a, f.get(&a), 3).unwrap();
        let before = f.get(&a);
        assert_eq!(f.observe(&a, before, 2), Err(Older { seen: 3, got: 2 }));
        // a stale reply to a request sent before a newer state was seen is not a rollback
        let stale_before = 3;
        f.observe(&a, 0, 5).unwrap();
        assert_eq!(f.observe(&a, stale_before, 4), Ok(()));
        assert_eq!(f.get(&a), 5, "the floor never goes down");
    }

    #[test]
    fn bounded_least_recently_used_first_out() {
        let f: Floors = Floors::new(2);
        let (a, b, c) = ([1u8; 16], [2u8; 16], [3u8; 16]);
        f.observe(&a, 0, 1).unwrap();
        f.observe(&b, 0, 1).unwrap();
        f.observe(&a, 1, 2).unwrap(); // a used last
        f.observe(&c, 0, 1).unwrap(); // b goes
        assert_eq!((f.get(&a), f.get(&b), f.get(&c)), (2, 0, 1));
        assert_eq!(f.len(), 2);
        let off: Floors = Floors::new(0);
        off.observe(&a, 0, 9).unwrap();
        assert!(off.is_empty());
    }
}
