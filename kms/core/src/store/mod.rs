//! The storage seam: what the KMS needs from a database.
//!
//! The store is designed for a **remote, shared, fallible** database (Redis with Findex): every
//! call can fail, updates are compare-and-swap on a version so that several KMS nodes never lose
//! each other's writes, and Locate is an index query over keywords. The store never interprets
//! the record body: it is an opaque serialized object (key material, attributes, state, owner,
//! grants) that an untrusted backend must encrypt before it leaves the process.

pub mod memory;
#[cfg(test)]
pub(crate) mod testing;

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// Version of a stored record. Starts at 1 on insert and grows by one on every update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(pub u64);

/// One stored object.
///
/// `keywords` are the index terms Locate and the access-rights listings search on, written as
/// `"<kind>=<value>"` (for example `tag=MyTag`, `type=SymmetricKey`, `owner=alice`,
/// `grant=bob`). A backend must treat both `body` and `keywords` as secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Record {
    /// Unique identifier of the object.
    pub uid: String,
    /// Serialized object, opaque to the store. Holds key material: zeroized on drop.
    pub body: Vec<u8>,
    /// Index terms of this version of the object.
    pub keywords: Vec<String>,
}

impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the body or keywords: they are secret.
        f.debug_struct("Record")
            .field("uid", &self.uid)
            .field("body_len", &self.body.len())
            .field("keywords", &self.keywords.len())
            .finish()
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        wipe(&mut self.body);
    }
}

/// Overwrite a buffer with zeros in a way the optimizer keeps.
pub fn wipe(buf: &mut [u8]) {
    // `zeroize` uses volatile writes plus a compiler fence, so the stores are not elided.
    zeroize::Zeroize::zeroize(buf);
}

/// Why a store call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// `insert` of a uid that already exists.
    AlreadyExists,
    /// `update`/`delete` with a version that is no longer the current one (another writer won).
    Conflict,
    /// The uid does not exist (for `update`/`delete`).
    NotFound,
    /// The backend could not be reached or did not answer in time. Retrying later may work.
    Unavailable(&'static str),
    /// The backend answered with data that does not authenticate or parse (tampering, wrong
    /// database secret, corruption).
    Corrupt(&'static str),
    /// The backend answered with a state older than one this process has already seen (an
    /// older version of a record, a deleted record brought back, a shortened index): a replay
    /// by an untrusted backend. Retrying does not help; the backend's operator must be asked.
    Rollback(&'static str),
    /// Any other backend failure.
    Backend(&'static str),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::AlreadyExists => f.write_str("object already exists"),
            StoreError::Conflict => f.write_str("concurrent update conflict"),
            StoreError::NotFound => f.write_str("object not found"),
            StoreError::Unavailable(m) => write!(f, "storage unavailable: {m}"),
            StoreError::Corrupt(m) => write!(f, "storage integrity error: {m}"),
            StoreError::Rollback(m) => write!(
                f,
                "storage rollback detected: {m} (the database served an older state than this server has already seen)"
            ),
            StoreError::Backend(m) => write!(f, "storage error: {m}"),
        }
    }
}

impl core::error::Error for StoreError {}

/// What the KMS needs from a database.
///
/// Every method is an `async fn`: a backend behind a network (Redis) returns
/// [`Poll::Pending`](core::task::Poll::Pending) while it waits for the peer, so a single-threaded
/// driver can keep one request pending and serve others; a local backend ([`memory::MemoryStore`])
/// completes on the first poll. The futures are plain Rust futures (no executor is assumed,
/// [`crate::block_on`] runs one to completion) and are **not** required to be `Send`: the trait
/// has no `Send`/`Sync` bound either, a server that shares a store between threads picks a store
/// type that is `Sync` (the host's memory and Redis stores are).
///
/// Semantics do not depend on how the futures are polled: each call is one logical operation,
/// and the compare-and-swap on [`Version`] is what keeps concurrent writers (several pending
/// futures, threads or KMS nodes) from losing each other's writes.
// `async fn` in a public trait: the futures carry no `Send` bound on purpose (see above).
#[allow(async_fn_in_trait)]
pub trait Store {
    /// Store a new record at version 1. Fails with [`StoreError::AlreadyExists`] if the uid is taken.
    async fn insert(&self, record: &Record) -> Result<Version, StoreError>;
    /// Read a record and its current version.
    async fn get(&self, uid: &str) -> Result<Option<(Record, Version)>, StoreError>;
    /// Replace a record if its current version is `expected` (compare-and-swap); returns the new
    /// version. The index is updated from the old keywords to the new ones.
    async fn update(&self, record: &Record, expected: Version) -> Result<Version, StoreError>;
    /// Remove a record and its index entries if its current version is `expected`.
    async fn delete(&self, uid: &str, expected: Version) -> Result<(), StoreError>;
    /// Uids of the records whose keywords include **all** of `all_of` (an empty query returns
    /// every record). Hits that no longer resolve are filtered out by the implementation.
    async fn search(&self, all_of: &[String]) -> Result<Vec<String>, StoreError>;
    /// For each keyword `a` of `alternatives`, the uids [`Store::search`] returns for `all_of`
    /// plus `a` (one list per alternative, in order): a disjunction, such as "owned by or
    /// granted to the caller", that a backend can answer in one pass. The default runs one
    /// search per alternative.
    async fn search_each(
        &self,
        all_of: &[String],
        alternatives: &[String],
    ) -> Result<Vec<Vec<String>>, StoreError> {
        let mut out = Vec::with_capacity(alternatives.len());
        let mut q = all_of.to_vec();
        for a in alternatives {
            q.push(a.clone());
            out.push(self.search(&q).await?);
            q.pop();
        }
        Ok(out)
    }
}

/// A shared store is a store (`Kms<Arc<S>>`). `dyn Store` is not possible with `async fn`
/// methods: a server that picks its backend at run time uses an enum of the backends that
/// implements `Store` by delegating.
impl<T: Store> Store for alloc::sync::Arc<T> {
    async fn insert(&self, record: &Record) -> Result<Version, StoreError> {
        (**self).insert(record).await
    }
    async fn get(&self, uid: &str) -> Result<Option<(Record, Version)>, StoreError> {
        (**self).get(uid).await
    }
    async fn update(&self, record: &Record, expected: Version) -> Result<Version, StoreError> {
        (**self).update(record, expected).await
    }
    async fn delete(&self, uid: &str, expected: Version) -> Result<(), StoreError> {
        (**self).delete(uid, expected).await
    }
    async fn search(&self, all_of: &[String]) -> Result<Vec<String>, StoreError> {
        (**self).search(all_of).await
    }
    async fn search_each(
        &self,
        all_of: &[String],
        alternatives: &[String],
    ) -> Result<Vec<Vec<String>>, StoreError> {
        (**self).search_each(all_of, alternatives).await
    }
}
