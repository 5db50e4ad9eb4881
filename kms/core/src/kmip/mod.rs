//! KMIP 2.1 over JSON and binary TTLV, split like rustls's `msgs/`: the formats apart from the
//! semantics.
//!
//! - [`ttlv`]: the TTLV data model (tag, type, value), typed accessors and the tag table.
//! - [`json`]: the JSON TTLV codec with limits.
//! - [`binary`]: the binary TTLV codec (KMIP 2.1 §9.1) with the same limits, and the framing
//!   of a TTLV stream.
//! - [`types`]: enumerations and the `Attributes` structure.
//! - [`message`]: building a `RequestMessage` (header and batch items).
//! - [`ops`]: typed request/response payloads of the operations we implement.
//! - [`transparent`]: the Big Integer fields of transparent RSA and DSA key material.
//! - [`v1`]: KMIP 1.x messages (text-named attributes) mapped to and from the 2.x model.
//!
//! The semantics (what an operation does to the store) live in [`crate::Kms`].

pub mod binary;
pub mod json;
pub mod message;
pub mod ops;
pub mod transparent;
pub mod ttlv;
pub mod types;
pub mod v1;
