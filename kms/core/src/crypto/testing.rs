//! The deterministic generator of the core's own unit tests. (Integration tests and other crates
//! use `testkit::TestRng`; the core's unit tests cannot, it would link a second copy of this
//! crate.)

use super::{Random, RngError};

/// xorshift64: deterministic, NOT random. Tests only.
pub(crate) struct TestRng(pub(crate) u64);

impl Random for TestRng {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), RngError> {
        for b in buf {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            *b = (self.0 >> 24) as u8;
        }
        Ok(())
    }
}
