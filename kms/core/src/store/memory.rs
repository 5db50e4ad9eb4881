//! An in-memory [`Store`]: a map behind a lock, with an inverted keyword index.
//!
//! The lock is any [`lock_api::RawMutex`]: a spin lock by default (no_std, the unikernel); a
//! host build can pick a blocking one (`MemoryStore::<parking_lot::RawMutex>::with_lock()`)
//! so that threads do not spin while the holder is descheduled.
//!
//! Used by the host server's `--database memory`, by tests, and by the freestanding no_std
//! check. Versions and compare-and-swap behave exactly as the trait documents, so code that is
//! correct against this store is correct against a shared remote one. Its futures complete on
//! their first poll (the lock is never held across an `.await`).

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::String;
use alloc::vec::Vec;
use lock_api::{Mutex, RawMutex};

use super::{Record, Store, StoreError, Version};

#[derive(Default)]
struct Inner {
    records: BTreeMap<String, (Record, Version)>,
    index: BTreeMap<String, BTreeSet<String>>,
}

impl Inner {
    fn index_add(&mut self, uid: &str, keywords: &[String]) {
        for k in keywords {
            self.index.entry(k.clone()).or_default().insert(uid.into());
        }
    }
    fn index_remove(&mut self, uid: &str, keywords: &[String]) {
        for k in keywords {
            if let Some(set) = self.index.get_mut(k) {
                set.remove(uid);
                if set.is_empty() {
                    self.index.remove(k);
                }
            }
        }
    }
}

/// A process-local store. Cheap to create; all data is lost when it is dropped.
pub struct MemoryStore<L: RawMutex = spin::Mutex<()>> {
    inner: Mutex<L, Inner>,
}

impl MemoryStore {
    /// An empty store behind a spin lock.
    pub fn new() -> Self {
        Self::with_lock()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl<L: RawMutex> MemoryStore<L> {
    /// An empty store behind a lock of type `L`.
    pub fn with_lock() -> Self {
        MemoryStore {
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.inner.lock().records.len()
    }

    /// True when the store holds no record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<L: RawMutex> Store for MemoryStore<L> {
    async fn insert(&self, record: &Record) -> Result<Version, StoreError> {
        let mut g = self.inner.lock();
        if g.records.contains_key(&record.uid) {
            return Err(StoreError::AlreadyExists);
        }
        g.index_add(&record.uid, &record.keywords);
        g.records
            .insert(record.uid.clone(), (record.clone(), Version(1)));
        Ok(Version(1))
    }

    async fn get(&self, uid: &str) -> Result<Option<(Record, Version)>, StoreError> {
        Ok(self.inner.lock().records.get(uid).cloned())
    }

    async fn update(&self, record: &Record, expected: Version) -> Result<Version, StoreError> {
        let mut g = self.inner.lock();
        let old_keywords = match g.records.get(&record.uid) {
            None => return Err(StoreError::NotFound),
            Some((_, v)) if *v != expected => return Err(StoreError::Conflict),
            Some((r, _)) => r.keywords.clone(),
        };
        let next = Version(
            expected
                .0
                .checked_add(1)
                .ok_or(StoreError::Backend("version overflow"))?,
        );
        g.index_remove(&record.uid, &old_keywords);
        g.index_add(&record.uid, &record.keywords);
        g.records.insert(record.uid.clone(), (record.clone(), next));
        Ok(next)
    }

    async fn delete(&self, uid: &str, expected: Version) -> Result<(), StoreError> {
        let mut g = self.inner.lock();
        match g.records.get(uid) {
            None => return Err(StoreError::NotFound),
            Some((_, v)) if *v != expected => return Err(StoreError::Conflict),
            Some(_) => {}
        }
        if let Some((r, _)) = g.records.remove(uid) {
            g.index_remove(uid, &r.keywords);
        }
        Ok(())
    }

    async fn search(&self, all_of: &[String]) -> Result<Vec<String>, StoreError> {
        let g = self.inner.lock();
        let Some((first, rest)) = all_of.split_first() else {
            return Ok(g.records.keys().cloned().collect());
        };
        let Some(base) = g.index.get(first) else {
            return Ok(Vec::new());
        };
        Ok(base
            .iter()
            .filter(|uid| {
                rest.iter()
                    .all(|k| g.index.get(k).is_some_and(|s| s.contains(*uid)))
            })
            .cloned()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn rec(uid: &str, kw: &[&str]) -> Record {
        Record {
            uid: uid.into(),
            body: vec![1, 2, 3],
            keywords: kw.iter().map(|s| String::from(*s)).collect(),
        }
    }

    fn run<F: core::future::Future>(f: F) -> F::Output {
        crate::block_on(f, || {})
    }

    #[test]
    fn cas_and_index() {
        let s = MemoryStore::new();
        let search = |q: &[&str]| {
            let q: Vec<String> = q.iter().map(|k| String::from(*k)).collect();
            run(s.search(&q)).unwrap()
        };
        assert_eq!(
            run(s.insert(&rec("a", &["tag=x", "owner=u"]))),
            Ok(Version(1))
        );
        assert_eq!(
            run(s.insert(&rec("a", &[]))),
            Err(StoreError::AlreadyExists)
        );
        assert_eq!(run(s.insert(&rec("b", &["tag=x"]))), Ok(Version(1)));
        let mut hits = search(&["tag=x"]);
        hits.sort();
        assert_eq!(hits, vec![String::from("a"), String::from("b")]);
        assert_eq!(search(&["tag=x", "owner=u"]), vec![String::from("a")]);
        let update = |r: Record, v: u64| run(s.update(&r, Version(v)));
        assert_eq!(update(rec("a", &["tag=y"]), 1), Ok(Version(2)));
        assert_eq!(update(rec("a", &["tag=z"]), 1), Err(StoreError::Conflict));
        assert_eq!(search(&["tag=x"]), vec![String::from("b")]);
        assert_eq!(search(&["tag=y"]), vec![String::from("a")]);
        assert_eq!(run(s.delete("a", Version(1))), Err(StoreError::Conflict));
        assert_eq!(run(s.delete("a", Version(2))), Ok(()));
        assert_eq!(run(s.get("a")), Ok(None));
        assert_eq!(search(&["tag=y"]), Vec::<String>::new());
        assert_eq!(search(&[]), vec![String::from("b")]);
        assert_eq!(update(rec("zz", &[]), 1), Err(StoreError::NotFound));
    }
}
