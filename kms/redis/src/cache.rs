//! Cache of opened object records, kept correct across KMS servers sharing one Redis by Redis's
//! server-assisted client-side caching (`CLIENT TRACKING`).
//!
//! The store ([`crate::store::RedisFindexStore`]) keeps one dedicated Redis connection that
//! receives an invalidation message for every write of an object key (`kms:o:`, broadcasting
//! mode, whoever the writer is: this process or another server). Before every cache lookup the
//! store applies the messages that have already arrived on that connection, without waiting
//! ([`crate::client::Client::poll_invalidations`]). Redis queues a write's invalidation on that
//! connection no later than it sends the writer its reply, so a lookup that starts after another
//! server's Revoke, Destroy or grant change returned sees it, up to the network's delivery time
//! of the message (0 on one host: measured in `tests/cache.rs`).
//!
//! Correctness rules, all here:
//! - **Fills cannot resurrect**: a record read from Redis is only cached if no invalidation (of
//!   any key), flush or loss of the tracking connection happened since *before the read was sent*
//!   ([`RecordCache::ticket`] / [`RecordCache::fill`]); otherwise the read may predate a write
//!   whose invalidation was already applied.
//! - **No tracking, no cache**: when the tracking connection is down (not yet open, lost, or
//!   refused by an ACL), the cache is emptied and neither serves nor fills; messages may have
//!   been lost.
//! - **Never older than the rollback floor**: a lookup is given the newest version this process
//!   has seen of the object ([`crate::rollback`]) and drops an entry older than that.
//! - **Bounded and wiped**: at most `capacity` records, least recently used evicted first; an
//!   evicted, invalidated or flushed record is zeroized (body and keywords).
//!
//! A Redis that withholds invalidation messages keeps a server on an older record of an
//! object, which is what a Redis replaying that older record could do anyway to a server that
//! never saw the newer one: the cache does not weaken the store's trust argument
//! (docs/security.md, "The database").

use crate::rollback::Id;
use alloc::collections::BTreeMap;
use kms::store::{Record, Version, wipe};
use lock_api::{Mutex, RawMutex};

/// Default number of records a store caches.
pub const DEFAULT_CACHED: usize = 1024;

/// Counters of a [`RecordCache`] (tests and benchmarks read them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups served from memory.
    pub hits: u64,
    /// Lookups that went to Redis.
    pub misses: u64,
    /// Records dropped by an invalidation message or a write of this process.
    pub invalidations: u64,
    /// Whole-cache flushes (tracking lost or re-established, `FLUSHALL`, unknown message).
    pub flushes: u64,
    /// Records cached now.
    pub len: usize,
    /// The tracking connection is up (the cache serves and fills).
    pub live: bool,
}

/// Proof that the cache was live, at a given epoch, before a read was sent to Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(u64);

struct Entry {
    record: Record,
    version: Version,
    used: u64,
}

impl Drop for Entry {
    fn drop(&mut self) {
        // `Record` wipes its body; the keywords (tags, names, grantees) are wiped here.
        for k in &mut self.record.keywords {
            let mut bytes = core::mem::take(k).into_bytes();
            wipe(&mut bytes);
        }
    }
}

#[derive(Default)]
struct Inner {
    map: BTreeMap<Id, Entry>,
    /// last use → id
    lru: BTreeMap<u64, Id>,
    tick: u64,
    /// Bumped by every invalidation, flush and change of `live`.
    epoch: u64,
    live: bool,
    stats: CacheStats,
}

impl Inner {
    fn remove(&mut self, id: &Id) -> bool {
        match self.map.remove(id) {
            Some(e) => {
                let _ = self.lru.remove(&e.used);
                true
            }
            None => false,
        }
    }

    fn clear(&mut self) {
        self.map.clear();
        self.lru.clear();
        self.epoch = self.epoch.wrapping_add(1);
    }
}

/// Opened records by object id, bounded, invalidated from Redis (see the module docs). The lock
/// is any [`lock_api::RawMutex`] (the store's `Pool::Lock`): a spin lock by default.
pub struct RecordCache<L: RawMutex = spin::Mutex<()>> {
    inner: Mutex<L, Inner>,
    capacity: usize,
}

impl<L: RawMutex> core::fmt::Debug for RecordCache<L> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RecordCache")
            .field("capacity", &self.capacity)
            .field("stats", &self.stats())
            .finish()
    }
}

impl<L: RawMutex> RecordCache<L> {
    /// A cache of at most `capacity` records (at least 1), not live until
    /// [`RecordCache::set_live`].
    pub fn new(capacity: usize) -> Self {
        RecordCache {
            inner: Mutex::new(Inner::default()),
            capacity: capacity.max(1),
        }
    }

    /// The cached record of `id`, unless it is older than `floor` (the newest version seen of
    /// that object; such an entry is dropped). Counts a hit or a miss.
    pub fn lookup(&self, id: &Id, floor: u64) -> Option<(Record, Version)> {
        let mut g = self.inner.lock();
        let inner = &mut *g;
        let fresh = match inner.map.get(id) {
            Some(e) if inner.live && e.version.0 >= floor => true,
            Some(_) => {
                inner.remove(id);
                false
            }
            None => false,
        };
        if !fresh {
            inner.stats.misses += 1;
            return None;
        }
        inner.tick = inner.tick.wrapping_add(1);
        let tick = inner.tick;
        let e = inner.map.get_mut(id)?;
        let _ = inner.lru.remove(&e.used);
        e.used = tick;
        let _ = inner.lru.insert(tick, *id);
        inner.stats.hits += 1;
        Some((e.record.clone(), e.version))
    }

    /// Take before sending a read whose result may be cached; `None` while not live.
    pub fn ticket(&self) -> Option<Ticket> {
        let g = self.inner.lock();
        g.live.then_some(Ticket(g.epoch))
    }

    /// Cache `record` at `version`, read after `ticket` was taken, unless anything was
    /// invalidated since (the read may then predate a write already announced).
    pub fn fill(&self, id: &Id, ticket: Ticket, record: &Record, version: Version) {
        let mut g = self.inner.lock();
        let inner = &mut *g;
        if !inner.live || inner.epoch != ticket.0 {
            return;
        }
        inner.remove(id);
        while inner.map.len() >= self.capacity {
            match inner.lru.pop_first() {
                Some((_, old)) => {
                    let _ = inner.map.remove(&old);
                }
                None => break,
            }
        }
        inner.tick = inner.tick.wrapping_add(1);
        let tick = inner.tick;
        let entry = Entry {
            record: record.clone(),
            version,
            used: tick,
        };
        let _ = inner.map.insert(*id, entry);
        let _ = inner.lru.insert(tick, *id);
    }

    /// Drop `id` (an invalidation message, or a write of this process) and refuse the fills of
    /// reads sent before.
    pub fn invalidate(&self, id: &Id) {
        let mut g = self.inner.lock();
        g.epoch = g.epoch.wrapping_add(1);
        if g.remove(id) {
            g.stats.invalidations += 1;
        }
    }

    /// Drop everything and refuse the fills of reads sent before.
    pub fn flush(&self) {
        let mut g = self.inner.lock();
        g.clear();
        g.stats.flushes += 1;
    }

    /// The tracking connection came up (`true`) or was lost (`false`): flush either way.
    pub fn set_live(&self, live: bool) {
        let mut g = self.inner.lock();
        g.clear();
        g.stats.flushes += 1;
        g.live = live;
    }

    /// Counters and size.
    pub fn stats(&self) -> CacheStats {
        let g = self.inner.lock();
        CacheStats {
            len: g.map.len(),
            live: g.live,
            ..g.stats
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;

    fn rec(body: &[u8]) -> Record {
        Record {
            uid: "u".into(),
            body: body.to_vec(),
            keywords: alloc::vec![String::from("owner=alice")],
        }
    }

    #[test]
    fn serves_only_while_live_and_never_below_the_floor() {
        let c: RecordCache = RecordCache::new(4);
        let id = [1u8; 16];
        assert_eq!(c.ticket(), None, "not live: no fills");
        c.set_live(true);
        let t = c.ticket().unwrap();
        c.fill(&id, t, &rec(b"v2"), Version(2));
        assert_eq!(c.lookup(&id, 2).map(|(_, v)| v), Some(Version(2)));
        // a newer version was seen elsewhere (a search, a write): the entry is dropped
        assert_eq!(c.lookup(&id, 3), None);
        assert_eq!(c.stats().len, 0);
        let t = c.ticket().unwrap();
        c.fill(&id, t, &rec(b"v3"), Version(3));
        c.set_live(false);
        assert_eq!(c.lookup(&id, 0), None, "tracking lost: emptied");
        assert_eq!(c.stats().len, 0);
    }

    #[test]
    fn a_fill_racing_an_invalidation_is_refused() {
        let c: RecordCache = RecordCache::new(4);
        c.set_live(true);
        let (a, b) = ([1u8; 16], [2u8; 16]);
        let t = c.ticket().unwrap();
        // the read was sent, then an invalidation (of any key) was applied: no fill
        c.invalidate(&b);
        c.fill(&a, t, &rec(b"old"), Version(1));
        assert_eq!(c.lookup(&a, 0), None);
        let t = c.ticket().unwrap();
        c.flush();
        c.fill(&a, t, &rec(b"old"), Version(1));
        assert_eq!(c.lookup(&a, 0), None);
        let t = c.ticket().unwrap();
        c.fill(&a, t, &rec(b"new"), Version(2));
        assert_eq!(
            c.lookup(&a, 0).map(|(r, _)| r.body.clone()),
            Some(b"new".to_vec())
        );
        c.invalidate(&a);
        assert_eq!(c.lookup(&a, 0), None);
        let s = c.stats();
        assert_eq!((s.hits, s.invalidations), (1, 1));
    }

    #[test]
    fn bounded_least_recently_used_first_out() {
        let c: RecordCache = RecordCache::new(2);
        c.set_live(true);
        let ids = [[1u8; 16], [2u8; 16], [3u8; 16]];
        for (i, id) in ids.iter().take(2).enumerate() {
            let t = c.ticket().unwrap();
            c.fill(id, t, &rec(b"x"), Version(i as u64 + 1));
        }
        assert!(c.lookup(&ids[0], 0).is_some()); // ids[0] used last
        let t = c.ticket().unwrap();
        c.fill(&ids[2], t, &rec(b"x"), Version(1));
        assert_eq!(c.stats().len, 2);
        assert!(c.lookup(&ids[1], 0).is_none(), "least recently used went");
        assert!(c.lookup(&ids[0], 0).is_some());
        assert!(c.lookup(&ids[2], 0).is_some());
    }
}
