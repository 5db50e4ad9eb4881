//! The `none` backend: an ordinary VM. No attestation, no derived key, no memory encryption.

use alloc::vec::Vec;

use super::{Capabilities, DerivedKey, PlatformError, PlatformKind, PlatformOps};

/// No confidential-computing platform.
pub struct NoPlatform;

impl PlatformOps for NoPlatform {
    fn kind(&self) -> PlatformKind {
        PlatformKind::None
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            attestation: false,
            derived_key: false,
            memory_encryption: false,
        }
    }

    fn attestation_report(&mut self, _report_data: &[u8; 64]) -> Result<Vec<u8>, PlatformError> {
        Err(PlatformError::NotSupported)
    }

    fn derived_key(&mut self) -> Result<Option<DerivedKey>, PlatformError> {
        Ok(None)
    }
}
