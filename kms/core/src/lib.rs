//! `kms`: the no_std + alloc, sans-IO core of the key management service.
//!
//! Modules in dependency order:
//! - [`store`]: the storage seam (versioned records, compare-and-swap, keyword index) and
//!   [`store::memory::MemoryStore`];
//! - [`crypto`]: the one crypto facade (AEADs, ECDSA P-256/P-384, Ed25519, [`crypto::Random`]);
//! - [`kmip`]: KMIP 2.1 JSON TTLV: data model, codec with limits, enumerations/attributes,
//!   typed operation payloads;
//! - [`object`]: a managed object and its record serialization; [`access`]: rights and the
//!   `/access/*` JSON shapes; [`error`]: [`KmsError`] and its HTTP/KMIP mapping;
//! - [`Kms`]: operation semantics (lifecycle, usage masks, access rights) over a store; the
//!   operations that touch the store are `async` (plain futures, no executor), [`block_on`]
//!   runs one to completion;
//! - [`http`] (HTTP/1.1 framing), [`pace`] (per-phase connection deadlines), [`wipe`] (buffers
//!   that grow and shift without leaving plaintext behind), [`x509`] (peer identity, SPKI, PEM chains and keys),
//!   [`bootstrap`] (the zero-trust start);
//! - with the `tls` feature: [`tls`] (rustls, the only place that names it), [`app`] (the
//!   application: phases, TLS configurations, the one router) and [`conn`] (one connection: TLS →
//!   HTTP framing → App), which both servers drive.
//!
//! This crate does no I/O and reads no clock: time and randomness are inputs ([`Env`]), and a
//! store that waits on a network returns `Poll::Pending` to whoever polls the operation. It
//! does not do KMIP binary TTLV, key wrapping, certificates as KMIP objects, or RSA.
//!
//! ```
//! use kms::crypto::{Random, RngError};
//! use kms::store::memory::MemoryStore;
//! use kms::{Env, Kms, KmsConfig, block_on};
//!
//! struct NotRandom(u8); // tests only: use a real CSPRNG
//! impl Random for NotRandom {
//!     fn fill(&mut self, buf: &mut [u8]) -> Result<(), RngError> {
//!         buf.iter_mut().for_each(|b| { self.0 = self.0.wrapping_add(97); *b = self.0 });
//!         Ok(())
//!     }
//! }
//!
//! let kms = Kms::new(MemoryStore::new(), KmsConfig::default());
//! let mut rng = NotRandom(1);
//! let mut env = Env { now: 1_750_000_000, rng: &mut rng };
//! let create = br#"{"tag":"Create","value":[
//!   {"tag":"ObjectType","type":"Enumeration","value":"SymmetricKey"},
//!   {"tag":"Attributes","value":[
//!     {"tag":"CryptographicAlgorithm","type":"Enumeration","value":"AES"},
//!     {"tag":"CryptographicLength","type":"Integer","value":256},
//!     {"tag":"ActivationDate","type":"DateTime","value":"2025-01-01T00:00:00Z"}]}]}"#;
//! // The memory store never waits: run each operation to completion.
//! let out = block_on(kms.kmip_json(&mut env, "alice", create), || {}).unwrap();
//! assert!(out.starts_with(br#"{"tag":"CreateResponse""#));
//! // Bob has no right on alice's key.
//! let uid = String::from_utf8(out).unwrap();
//! let uid = uid.split("\"UniqueIdentifier\",\"type\":\"TextString\",\"value\":\"").nth(1).unwrap();
//! let uid = &uid[..36];
//! let get = format!(r#"{{"tag":"Get","value":[{{"tag":"UniqueIdentifier","type":"TextString","value":"{uid}"}}]}}"#);
//! let denied = block_on(kms.kmip_json(&mut env, "bob", get.as_bytes()), || {});
//! assert_eq!(denied.unwrap_err().http_status(), 422);
//! assert!(block_on(kms.kmip_json(&mut env, "alice", get.as_bytes()), || {}).is_ok());
//! ```
#![no_std]
#![warn(missing_docs)]

extern crate alloc;

pub mod access;
#[cfg(feature = "tls")]
pub mod app;
pub mod bootstrap;
#[cfg(feature = "tls")]
pub mod conn;
pub mod crypto;
pub mod error;
mod exec;
pub mod http;
pub mod kmip;
pub mod object;
pub mod pace;
mod service;
pub mod store;
#[cfg(feature = "tls")]
pub mod tls;
pub mod wipe;
pub mod x509;

pub use error::KmsError;
pub use exec::block_on;
pub use service::{
    CertifyError, Env, Kms, KmsConfig, check_certificate_request, kmip_error_response,
};
