//! Deterministic randomness for tests.

use kms::crypto::{Random, RngError};

/// xorshift64*: a deterministic, seedable [`Random`] for tests, so that runs are reproducible.
///
/// **Tests only**: it is predictable by design and must never provide keys outside a test.
#[derive(Debug, Clone)]
pub struct TestRng(u64);

impl TestRng {
    /// A generator started from `seed` (0, a fixed point of xorshift, is replaced by a constant).
    pub fn new(seed: u64) -> TestRng {
        TestRng(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    /// The next 32 bits (the high half of xorshift64*'s output).
    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

impl Random for TestRng {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), RngError> {
        for b in buf {
            *b = (self.next_u64() >> 56) as u8;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        let fill = |seed| {
            let mut b = [0u8; 32];
            assert_eq!(TestRng::new(seed).fill(&mut b), Ok(()));
            b
        };
        assert_eq!(fill(7), fill(7));
        assert_ne!(fill(7), fill(8));
        assert_ne!(fill(0), [0u8; 32]);
    }
}
