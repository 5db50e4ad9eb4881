//! Findex: a searchable-encryption index over an untrusted key-value memory.
//!
//! Our own implementation of the scheme published by Cosmian ("Findex: A Concurrent and
//! Database-Independent Searchable Encryption Scheme", Cosmian, 2024; v8 shape), written from the
//! paper's description, not from its code. Byte compatibility with Cosmian's crate is not a goal.
//!
//! ## Layout
//! A keyword `w` has a 16-byte *address* `a = PRF(w)`. The list of `w` is a vector in memory: the
//! header word at `a` holds the number `n` of value words; value word `i` sits at address `a+1+i`
//! (128-bit big-endian addition). The memory never sees addresses: each one is replaced by its
//! *token* `AES-256(k_token, address)` (a PRP), and each word is encrypted with XTS-AES-256 using
//! the token as tweak, which is deterministic per address, so the memory can compare-and-swap
//! headers by comparing ciphertexts.
//!
//! ## Entries
//! A list is an append-only log of entries `op | version | uid` (see [`encoding`]): `Insert(v)` says
//! "this uid carries `w` since version `v`", `Delete(v)` says "every insert of this uid with a version
//! below `v` is obsolete". Search keeps a uid when one of its inserts is not below its highest
//! delete bound, so the result does not depend on the order in which concurrent writers appended.
//!
//! ## Concurrency
//! Append is lock-free: read the header, write the new value words and the new header *guarded*
//! on the old header ciphertext, and retry from the header the memory saw on conflict. Many
//! writers may share one memory (several KMS servers on one Redis).
//!
//! Modules: [`encoding`] (entries ↔ words), [`memory`] (the memory contract and an in-memory
//! implementation). This module adds the keys and the insert/search algorithms.

pub mod encoding;
pub mod memory;

use crate::keys::{Key32, prf};
use aes::Aes256;
use aes::cipher::{Array, BlockCipherEncrypt, KeyInit};
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;
use hkdf::Hkdf;
use sha2::Sha256;
use xts_mode::Xts128;
use zeroize::Zeroize;

pub use encoding::{Entry, Op};
pub use memory::{GuardedWrite, InMemory, Memory};

/// Size of a memory word (two AES blocks).
pub const WORD_LEN: usize = 32;
/// A memory word (ciphertext in memory, plaintext inside Findex).
pub type Word = [u8; WORD_LEN];
/// A 16-byte address token: what the memory sees instead of an address.
pub type Token = [u8; 16];
/// Default of [`Findex::with_max_read_words`]: most value words one search reads (32 MiB of
/// words). Lists themselves have no length limit: an append never reads value words.
pub const MAX_READ_WORDS: u64 = 1 << 20;
/// Attempts of the lock-free append loop before giving up with [`FindexError::Contention`].
pub const MAX_ATTEMPTS: usize = 10_000;

/// Findex failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FindexError<E> {
    /// The memory failed.
    Memory(E),
    /// The memory returned words that do not decode (tampering, corruption or another seed).
    Corrupt(&'static str),
    /// An entry is too long to encode (uid longer than [`encoding::MAX_UID`]).
    EntryTooLong,
    /// Too many retries of the append loop.
    Contention,
    /// The lists to read hold more words than the read limit ([`Findex::with_max_read_words`]).
    TooLarge,
}

impl<E: fmt::Display> fmt::Display for FindexError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FindexError::Memory(e) => write!(f, "index memory: {e}"),
            FindexError::Corrupt(m) => write!(f, "index corrupt: {m}"),
            FindexError::EntryTooLong => f.write_str("index entry too long"),
            FindexError::Contention => f.write_str("index contention: too many retries"),
            FindexError::TooLarge => f.write_str("index lists too long to read"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> core::error::Error for FindexError<E> {}

/// Findex keys and algorithms; the memory is passed to each call.
pub struct Findex {
    keyword_key: Key32,
    token: Aes256,
    xts: Xts128<Aes256>,
    max_read_words: u64,
}

impl fmt::Debug for Findex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Findex(<keys redacted>)")
    }
}

/// The live uids of one keyword, with the version they were inserted at.
pub type Hits = BTreeMap<Vec<u8>, u64>;

impl Findex {
    /// Derive the Findex keys from a 32-byte seed.
    pub fn new(seed: &Key32) -> Self {
        let hk = Hkdf::<Sha256>::new(Some(b"findex v1"), seed.expose());
        let mut k = [0u8; 32];
        let mut k1 = [0u8; 32];
        let mut k2 = [0u8; 32];
        let mut kw = [0u8; 32];
        // All lengths are 32 bytes: HKDF expand cannot fail.
        let _ = hk.expand(b"findex/keyword-prf", &mut kw);
        let _ = hk.expand(b"findex/token-prp", &mut k);
        let _ = hk.expand(b"findex/xts-data", &mut k1);
        let _ = hk.expand(b"findex/xts-tweak", &mut k2);
        let token = Aes256::new(&Array::from(k));
        let xts = Xts128::new(Aes256::new(&Array::from(k1)), Aes256::new(&Array::from(k2)));
        k.zeroize();
        k1.zeroize();
        k2.zeroize();
        Findex {
            keyword_key: Key32(kw),
            token,
            xts,
            max_read_words: MAX_READ_WORDS,
        }
    }

    /// Set the most value words one [`Findex::read_lists`] reads ([`MAX_READ_WORDS`] by
    /// default; tests lower it). Appends are not limited.
    pub fn with_max_read_words(mut self, words: u64) -> Self {
        self.max_read_words = words;
        self
    }

    /// Address of a keyword's header word.
    pub fn address(&self, keyword: &[u8]) -> u128 {
        let h = prf(&self.keyword_key, &[b"findex/keyword", keyword]);
        let mut a = [0u8; 16];
        a.copy_from_slice(&h[..16]);
        u128::from_be_bytes(a)
    }

    /// Token the memory sees for an address.
    pub fn token(&self, address: u128) -> Token {
        let mut b = Array::from(address.to_be_bytes());
        self.token.encrypt_block(&mut b);
        b.into()
    }

    fn encrypt_word(&self, token: &Token, mut w: Word) -> Word {
        self.xts.encrypt_sector(&mut w, Array::from(*token));
        w
    }

    fn decrypt_word(&self, token: &Token, mut w: Word) -> Word {
        self.xts.decrypt_sector(&mut w, Array::from(*token));
        w
    }

    fn header_word(&self, token: &Token, count: u64) -> Word {
        let mut w = [0u8; WORD_LEN];
        w[..8].copy_from_slice(&count.to_be_bytes());
        self.encrypt_word(token, w)
    }

    fn header_count<E>(&self, token: &Token, word: Option<&Word>) -> Result<u64, FindexError<E>> {
        let Some(word) = word else { return Ok(0) };
        let w = self.decrypt_word(token, *word);
        if w[8..].iter().any(|b| *b != 0) {
            return Err(FindexError::Corrupt("index header does not decrypt"));
        }
        let mut c = [0u8; 8];
        c.copy_from_slice(&w[..8]);
        Ok(u64::from_be_bytes(c))
    }

    /// Append entries to the lists of their keywords (lock-free, one guarded write per keyword,
    /// all keywords in one batch per round).
    pub async fn append<M: Memory>(
        &self,
        mem: &mut M,
        changes: &[(&[u8], Entry)],
    ) -> Result<(), FindexError<M::Error>> {
        // Group by keyword, keeping order.
        let mut lists: BTreeMap<u128, Vec<u8>> = BTreeMap::new();
        for (kw, entry) in changes {
            let stream = lists.entry(self.address(kw)).or_default();
            encoding::push_entry(stream, entry).map_err(|_| FindexError::EntryTooLong)?;
        }
        let mut pending: Vec<(u128, Token, Vec<Word>)> = lists
            .into_iter()
            .map(|(addr, stream)| (addr, self.token(addr), encoding::to_words(&stream)))
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        let header_tokens: Vec<Token> = pending.iter().map(|p| p.1).collect();
        let mut seen: Vec<Option<Word>> = mem
            .batch_read(&header_tokens)
            .await
            .map_err(FindexError::Memory)?;
        if seen.len() != pending.len() {
            return Err(FindexError::Corrupt(
                "memory answered the wrong number of words",
            ));
        }
        for _ in 0..MAX_ATTEMPTS {
            let mut writes = Vec::with_capacity(pending.len());
            for ((addr, tok, words), old) in pending.iter().zip(seen.iter()) {
                let n = self.header_count(tok, old.as_ref())?;
                // No length limit: appending reads no value word, whatever the list's size, so
                // a list one user fills never blocks the appends of others (issue 12 #6).
                let new_n = n
                    .checked_add(words.len() as u64)
                    .ok_or(FindexError::Corrupt("index list count overflows"))?;
                let mut bindings = Vec::with_capacity(words.len() + 1);
                for (i, w) in words.iter().enumerate() {
                    let a = addr
                        .wrapping_add(1)
                        .wrapping_add(u128::from(n))
                        .wrapping_add(i as u128);
                    let t = self.token(a);
                    bindings.push((t, self.encrypt_word(&t, *w)));
                }
                bindings.push((*tok, self.header_word(tok, new_n)));
                writes.push(GuardedWrite {
                    guard: *tok,
                    expected: *old,
                    bindings,
                });
            }
            let results = mem
                .batch_guarded_write(&writes)
                .await
                .map_err(FindexError::Memory)?;
            if results.len() != writes.len() {
                return Err(FindexError::Corrupt(
                    "memory answered the wrong number of words",
                ));
            }
            // Keep the lists whose guard did not match, with the header the memory saw.
            let mut next_pending = Vec::new();
            let mut next_seen = Vec::new();
            for ((p, w), r) in pending.into_iter().zip(writes.iter()).zip(results) {
                if r != w.expected {
                    next_pending.push(p);
                    next_seen.push(r);
                }
            }
            if next_pending.is_empty() {
                return Ok(());
            }
            pending = next_pending;
            seen = next_seen;
        }
        Err(FindexError::Contention)
    }

    /// Live uids of each keyword (same order as `keywords`): two memory batches in all.
    pub async fn search<M: Memory>(
        &self,
        mem: &mut M,
        keywords: &[&[u8]],
    ) -> Result<Vec<Hits>, FindexError<M::Error>> {
        let lists = self.lists(mem, keywords).await?;
        self.read_lists(mem, &lists).await
    }

    /// First phase of a search: read the list headers of the keywords (one memory batch). The
    /// sizes let a caller read only the lists worth reading (see [`Findex::read_lists`]).
    pub async fn lists<M: Memory>(
        &self,
        mem: &mut M,
        keywords: &[&[u8]],
    ) -> Result<Vec<List>, FindexError<M::Error>> {
        let addrs: Vec<u128> = keywords.iter().map(|k| self.address(k)).collect();
        let header_tokens: Vec<Token> = addrs.iter().map(|a| self.token(*a)).collect();
        let headers = mem
            .batch_read(&header_tokens)
            .await
            .map_err(FindexError::Memory)?;
        if headers.len() != addrs.len() {
            return Err(FindexError::Corrupt(
                "memory answered the wrong number of words",
            ));
        }
        let mut out = Vec::with_capacity(addrs.len());
        for ((address, tok), h) in addrs
            .into_iter()
            .zip(header_tokens.iter())
            .zip(headers.iter())
        {
            out.push(List {
                address,
                words: self.header_count(tok, h.as_ref())?,
            });
        }
        Ok(out)
    }

    /// Second phase: read and decode the value words of the given lists (one memory batch).
    pub async fn read_lists<M: Memory>(
        &self,
        mem: &mut M,
        lists: &[List],
    ) -> Result<Vec<Hits>, FindexError<M::Error>> {
        let total = lists
            .iter()
            .try_fold(0u64, |acc, l| acc.checked_add(l.words));
        if total.is_none_or(|t| t > self.max_read_words) {
            return Err(FindexError::TooLarge);
        }
        let mut value_tokens = Vec::new();
        for l in lists {
            for i in 0..l.words {
                value_tokens
                    .push(self.token(l.address.wrapping_add(1).wrapping_add(u128::from(i))));
            }
        }
        let values = if value_tokens.is_empty() {
            Vec::new()
        } else {
            mem.batch_read(&value_tokens)
                .await
                .map_err(FindexError::Memory)?
        };
        if values.len() != value_tokens.len() {
            return Err(FindexError::Corrupt(
                "memory answered the wrong number of words",
            ));
        }
        let mut out = Vec::with_capacity(lists.len());
        let mut at = 0usize;
        for l in lists {
            let n = l.words as usize;
            let mut plain = Vec::with_capacity(n);
            for i in at..at + n {
                let (Some(Some(w)), Some(t)) = (values.get(i), value_tokens.get(i)) else {
                    return Err(FindexError::Corrupt("index value word missing"));
                };
                plain.push(self.decrypt_word(t, *w));
            }
            at += n;
            let entries = encoding::decode_words(&plain)
                .map_err(|_| FindexError::Corrupt("index entry does not decode"))?;
            out.push(live(&entries));
        }
        Ok(out)
    }
}

/// A keyword's list as its header describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct List {
    /// Address of the header word.
    pub address: u128,
    /// Number of value words.
    pub words: u64,
}

/// Apply a list's entries: a uid is live when one of its inserts is at or above its highest
/// delete bound. The result does not depend on entry order.
pub fn live(entries: &[Entry]) -> Hits {
    let mut bound: BTreeMap<&[u8], u64> = BTreeMap::new();
    for e in entries {
        if e.op == Op::Delete {
            let b = bound.entry(e.uid.as_slice()).or_insert(0);
            *b = (*b).max(e.version);
        }
    }
    let mut hits = Hits::new();
    for e in entries {
        if e.op == Op::Insert && e.version >= bound.get(e.uid.as_slice()).copied().unwrap_or(0) {
            let v = hits.entry(e.uid.clone()).or_insert(e.version);
            *v = (*v).max(e.version);
        }
    }
    hits
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    /// Runs a future to completion (the in-memory memory never waits).
    trait Run: core::future::Future + Sized {
        fn run(self) -> Self::Output {
            kms::block_on(self, || {})
        }
    }
    impl<F: core::future::Future> Run for F {}

    fn fx() -> Findex {
        Findex::new(&Key32([3u8; 32]))
    }

    fn ins(uid: &str, v: u64) -> Entry {
        Entry {
            op: Op::Insert,
            version: v,
            uid: uid.as_bytes().to_vec(),
        }
    }
    fn del(uid: &str, v: u64) -> Entry {
        Entry {
            op: Op::Delete,
            version: v,
            uid: uid.as_bytes().to_vec(),
        }
    }

    #[test]
    fn insert_search_delete() {
        let f = fx();
        let mut m = InMemory::default();
        f.append(
            &mut m,
            &[
                (b"tag=a", ins("u1", 1)),
                (b"tag=b", ins("u1", 1)),
                (b"tag=a", ins("u2", 1)),
            ],
        )
        .run()
        .unwrap();
        let r = f
            .search(&mut m, &[b"tag=a", b"tag=b", b"tag=c"])
            .run()
            .unwrap();
        assert_eq!(
            r[0].keys().cloned().collect::<Vec<_>>(),
            vec![b"u1".to_vec(), b"u2".to_vec()]
        );
        assert_eq!(
            r[1].keys().cloned().collect::<Vec<_>>(),
            vec![b"u1".to_vec()]
        );
        assert!(r[2].is_empty());
        // u1 loses tag=a at version 2, gets it back at version 3
        f.append(&mut m, &[(b"tag=a", del("u1", 2))]).run().unwrap();
        assert_eq!(f.search(&mut m, &[b"tag=a"]).run().unwrap()[0].len(), 1);
        f.append(&mut m, &[(b"tag=a", ins("u1", 3))]).run().unwrap();
        assert_eq!(
            f.search(&mut m, &[b"tag=a"]).run().unwrap()[0].get(b"u1".as_slice()),
            Some(&3)
        );
    }

    #[test]
    fn delete_is_order_independent() {
        // A re-add at a newer version survives a delete appended after it.
        let a = live(&[ins("u", 1), ins("u", 3), del("u", 2)]);
        assert_eq!(a.get(b"u".as_slice()), Some(&3));
        let b = live(&[ins("u", 1), del("u", 2)]);
        assert!(b.is_empty());
    }

    #[test]
    fn memory_sees_no_plaintext_and_words_are_keyed() {
        let f = fx();
        let mut m = InMemory::default();
        f.append(&mut m, &[(b"tag=SECRETTAG", ins("uid-PLAIN", 1))])
            .run()
            .unwrap();
        for (k, v) in m.iter() {
            for needle in [b"SECRETTAG".as_slice(), b"uid-PLAIN", b"tag="] {
                assert!(!k.windows(needle.len()).any(|w| w == needle));
                assert!(!v.windows(needle.len()).any(|w| w == needle));
            }
        }
        // another seed finds nothing (different addresses)
        let g = Findex::new(&Key32([4u8; 32]));
        assert!(g.search(&mut m, &[b"tag=SECRETTAG"]).run().unwrap()[0].is_empty());
    }

    #[test]
    fn concurrent_writer_forces_retry_without_loss() {
        let f = fx();
        let mut m = InMemory::default();
        // Before our first guarded write lands, another writer appends to the same keyword.
        let other = fx();
        m.before_write = Some(alloc::boxed::Box::new(move |mem: &mut InMemory| {
            other
                .append(mem, &[(b"k", ins("theirs", 1))])
                .run()
                .unwrap();
        }));
        f.append(&mut m, &[(b"k", ins("ours", 1))]).run().unwrap();
        assert!(m.conflicts >= 1);
        let r = f.search(&mut m, &[b"k"]).run().unwrap();
        assert_eq!(r[0].len(), 2);
    }

    #[test]
    fn tampered_header_is_corrupt_not_panic() {
        let f = fx();
        let mut m = InMemory::default();
        f.append(&mut m, &[(b"k", ins("u", 1))]).run().unwrap();
        let tok = f.token(f.address(b"k"));
        m.poke(tok, [0xAA; WORD_LEN]);
        assert!(matches!(
            f.search(&mut m, &[b"k"]).run(),
            Err(FindexError::Corrupt(_))
        ));
        // a value word replaced by garbage: decodes to junk or fails, never panics
        let f2 = fx();
        let mut m2 = InMemory::default();
        f2.append(&mut m2, &[(b"k", ins("u", 1))]).run().unwrap();
        let vt = f2.token(f2.address(b"k").wrapping_add(1));
        m2.poke(vt, [0x55; WORD_LEN]);
        let _ = f2.search(&mut m2, &[b"k"]).run();
    }
}
