//! Test doubles of the store (unit tests only).

use alloc::string::String;
use alloc::vec::Vec;
use core::cell::Cell;
use core::future::Future;
use core::task::{Context, Poll};

use super::memory::MemoryStore;
use super::{Record, Store, StoreError, Version};

/// A future that is `Pending` `n` times (counting each in `pendings`), then ready.
pub(crate) struct Delay<'a> {
    pub(crate) left: usize,
    pub(crate) pendings: &'a Cell<usize>,
}

impl Future for Delay<'_> {
    type Output = ();
    fn poll(mut self: core::pin::Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        if self.left == 0 {
            return Poll::Ready(());
        }
        self.left -= 1;
        self.pendings.set(self.pendings.get() + 1);
        Poll::Pending
    }
}

/// [`MemoryStore`] behind a fake network: every call waits `delay` polls first.
pub(crate) struct SlowStore {
    pub(crate) inner: MemoryStore,
    pub(crate) delay: usize,
    pub(crate) pendings: Cell<usize>,
}

impl SlowStore {
    pub(crate) fn wait(&self) -> Delay<'_> {
        Delay {
            left: self.delay,
            pendings: &self.pendings,
        }
    }
}

impl Store for SlowStore {
    async fn insert(&self, record: &Record) -> Result<Version, StoreError> {
        self.wait().await;
        self.inner.insert(record).await
    }
    async fn get(&self, uid: &str) -> Result<Option<(Record, Version)>, StoreError> {
        self.wait().await;
        self.inner.get(uid).await
    }
    async fn update(&self, record: &Record, expected: Version) -> Result<Version, StoreError> {
        self.wait().await;
        self.inner.update(record, expected).await
    }
    async fn delete(&self, uid: &str, expected: Version) -> Result<(), StoreError> {
        self.wait().await;
        self.inner.delete(uid, expected).await
    }
    async fn search(&self, all_of: &[String]) -> Result<Vec<String>, StoreError> {
        self.wait().await;
        self.inner.search(all_of).await
    }
    async fn search_each(
        &self,
        all_of: &[String],
        alternatives: &[String],
    ) -> Result<Vec<Vec<String>>, StoreError> {
        self.wait().await;
        self.inner.search_each(all_of, alternatives).await
    }
}
