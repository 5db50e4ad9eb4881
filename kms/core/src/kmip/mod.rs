//! KMIP 2.1 over JSON, split like rustls's `msgs/`: the format apart from the semantics.
//!
//! - [`ttlv`]: the TTLV data model (tag, type, value) and typed accessors.
//! - [`json`]: the JSON TTLV codec with limits.
//! - [`types`]: enumerations and the `Attributes` structure.
//! - [`ops`]: typed request/response payloads of the operations we implement.
//!
//! The semantics (what an operation does to the store) live in [`crate::Kms`].

pub mod json;
pub mod ops;
pub mod ttlv;
pub mod types;
