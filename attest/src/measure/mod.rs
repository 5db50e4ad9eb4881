//! Expected launch measurements, computed from the inputs of a launch.
//!
//! - [`snp`]: the SEV-SNP launch digest (`MEASUREMENT` in the attestation report).
//! - [`tdx`]: the TDX MRTD of a TDVF image, and RTMR extension.

pub mod snp;
pub mod tdx;
