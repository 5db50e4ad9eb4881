//! Expected launch measurements, computed from the inputs of a launch.
//!
//! - [`snp`]: the SEV-SNP launch digest (`MEASUREMENT` in the attestation report).

pub mod snp;
