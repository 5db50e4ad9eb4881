//! The memory Findex runs on, and an in-memory implementation for tests.
//!
//! Contract: `batch_read(tokens) -> words` and `guarded_write(guard, expected, bindings) -> word
//! seen at guard`, where the write is atomic and happens only if the word at `guard` equals
//! `expected` (`None`: absent). The Redis implementation is `MGET` plus a Lua script
//! (`crate::store`). Both calls are `async`: a memory behind a network awaits its round trip.

use super::{Token, Word};
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;

/// One compare-and-swap: write `bindings` if the word at `guard` is `expected`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardedWrite {
    /// Token of the guard word (a list header).
    pub guard: Token,
    /// Expected current word at `guard` (`None`: absent).
    pub expected: Option<Word>,
    /// Words to write when the guard matches (includes the new guard word).
    pub bindings: Vec<(Token, Word)>,
}

/// An untrusted key-value memory of fixed-size words.
// `async fn` in a public trait: no `Send` bound on the futures, on purpose.
#[allow(async_fn_in_trait)]
pub trait Memory {
    /// Error of the memory.
    type Error;
    /// Read words (absent: `None`), one per token, in order.
    async fn batch_read(&mut self, tokens: &[Token]) -> Result<Vec<Option<Word>>, Self::Error>;
    /// Perform guarded writes (each atomic on its own) and return the word each guard held
    /// before (equal to `expected` exactly when the write happened).
    async fn batch_guarded_write(
        &mut self,
        writes: &[GuardedWrite],
    ) -> Result<Vec<Option<Word>>, Self::Error>;
}

/// Hook run before each guarded write (tests use it to simulate a concurrent writer).
pub type WriteHook = Box<dyn FnMut(&mut InMemory) + Send>;

/// A `BTreeMap` memory for unit tests.
#[derive(Default)]
pub struct InMemory {
    words: BTreeMap<Token, Word>,
    /// Run once before the next guarded write batch, then cleared.
    pub before_write: Option<WriteHook>,
    /// Number of guarded writes whose guard did not match.
    pub conflicts: usize,
}

impl InMemory {
    /// Every stored (token, word).
    pub fn iter(&self) -> impl Iterator<Item = (&Token, &Word)> {
        self.words.iter()
    }
    /// Overwrite a word (tests: tampering).
    pub fn poke(&mut self, t: Token, w: Word) {
        self.words.insert(t, w);
    }
}

impl Memory for InMemory {
    type Error = core::convert::Infallible;

    async fn batch_read(&mut self, tokens: &[Token]) -> Result<Vec<Option<Word>>, Self::Error> {
        Ok(tokens.iter().map(|t| self.words.get(t).copied()).collect())
    }

    async fn batch_guarded_write(
        &mut self,
        writes: &[GuardedWrite],
    ) -> Result<Vec<Option<Word>>, Self::Error> {
        if let Some(mut hook) = self.before_write.take() {
            hook(self);
        }
        let mut out = Vec::with_capacity(writes.len());
        for w in writes {
            let cur = self.words.get(&w.guard).copied();
            if cur == w.expected {
                for (t, word) in &w.bindings {
                    self.words.insert(*t, *word);
                }
            } else {
                self.conflicts += 1;
            }
            out.push(cur);
        }
        Ok(out)
    }
}
