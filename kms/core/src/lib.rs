//! `kms`: the no_std + alloc, sans-IO core of the key management service.
#![no_std]
#![warn(missing_docs)]

extern crate alloc;

pub mod store;
