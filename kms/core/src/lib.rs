//! `kms`: the no_std + alloc, sans-IO core of the key management service.
//!
//! Modules in dependency order: `store` (the storage seam), `crypto`, `kmip` (JSON TTLV codec,
//! types, operations), `access`, `http` (HTTP/1.1 framing), `server` (per-connection sans-IO driver
//! and router). This crate does no I/O and reads no clock: time and randomness are inputs ([`Env`]).
#![no_std]
#![warn(missing_docs)]

extern crate alloc;

pub mod bootstrap;
pub mod access;
pub mod crypto;
pub mod error;
pub mod http;
pub mod kmip;
pub mod object;
pub mod server;
pub mod store;
mod service;

pub use error::KmsError;
pub use service::{Env, Kms, KmsConfig};
