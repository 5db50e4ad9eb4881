//! `kms-redis`: the KMS store on an untrusted Redis, with application-level encryption and a
//! Findex searchable index. Several KMS servers can share one Redis.
//!
//! Redis only ever sees ciphertext and pseudo-random tokens: object records are sealed with
//! AES-256-GCM-SIV (associated data binds the key name, hence the uid, and the version), object
//! key names are a PRF of the uid, and the tags and attributes Locate searches on live in a Findex
//! index whose addresses are AES tokens and whose words are XTS-AES encrypted. Every key comes
//! from the 32-byte database secret through HKDF-SHA256 ([`keys`]).
//!
//! Modules, in dependency order:
//! - [`url`]: URLs of the form `redis://[user:pass@]host:port[/db]`.
//! - [`resp`]: sans-IO RESP2 framing with reply limits (`Incomplete` is not an error).
//! - [`client`]: one connection over an async [`client::Stream`]: AUTH, SELECT, pipelining,
//!   `SCRIPT LOAD`/`EVALSHA` with reload on `NOSCRIPT`, reconnection.
//! - [`keys`]: the key hierarchy.
//! - [`findex`]: the searchable index, generic over a small memory trait.
//! - [`seal`]: sealed object records and tombstones, the wrong-secret canary.
//! - [`rollback`]: the newest object versions and index lengths this process has seen.
//! - [`cache`]: opened records in memory, invalidated by Redis (`CLIENT TRACKING`).
//! - [`store`]: [`RedisFindexStore`], the `kms::store::Store` implementation.
//!
//! Everything that talks to Redis is `async` (plain futures, no executor, not `Send`): a
//! transport whose socket would block returns `Poll::Pending` and the caller's driver polls
//! again later (the unikernel); the host transport blocks inside its futures instead, and
//! `kms::block_on` runs them.
//! - `host` (feature `std`): blocking TCP transport with timeouts, a connection pool with group
//!   commit of concurrent index appends, `RedisFindexStore::connect`, the secret-file reader.
//!
//! It does not: talk TLS to Redis, support Redis Cluster, compact the index, or detect a Redis
//! rollback across a restart (within a process lifetime, [`rollback`] refuses one; see
//! `docs/security.md`).
//! The core reads no clock: timeouts belong to the stream (socket timeouts on the host).
//!
//! ```
//! use kms_redis::findex::{Entry, Findex, InMemory, Op};
//! use kms_redis::keys::KeySet;
//! let keys = KeySet::derive(&[7u8; 32]);
//! let index = Findex::new(&keys.findex);
//! let mut memory = InMemory::default(); // Redis in production
//! let entry = Entry { op: Op::Insert, version: 1, uid: b"uid-1".to_vec() };
//! // The in-memory memory never waits: run each call to completion.
//! let changes = [(b"tag=payroll".as_slice(), entry)];
//! kms::block_on(index.append(&mut memory, &changes), || {}).unwrap();
//! let hits = kms::block_on(index.search(&mut memory, &[b"tag=payroll".as_slice()]), || {}).unwrap();
//! assert!(hits[0].contains_key(b"uid-1".as_slice()));
//! ```
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;
#[cfg(any(test, feature = "std"))]
extern crate std;

pub mod cache;
pub mod client;
pub mod findex;
#[cfg(feature = "std")]
pub mod host;
pub mod keys;
pub mod resp;
pub mod rollback;
pub mod seal;
pub mod store;
pub mod url;

#[cfg(feature = "std")]
pub use host::{ConnectError, ConnectOptions, StdPool};
pub use store::{NoBatcher, OpenError, Pool, RedisFindexStore, StoreOptions};
