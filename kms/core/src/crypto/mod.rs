//! Crypto facade: every primitive the KMS uses, behind one small API, so the choice of
//! implementation stays local to this module (RustCrypto crates today).
//!
//! - [`Random`]: randomness is an input (the unikernel's RDRAND/ChaCha20 generator, the host's
//!   OS generator); nothing here draws entropy by itself.
//! - [`aead`]: AES-GCM (128/192/256; 96-bit and other IV lengths), AES-GCM-SIV (128/256),
//!   ChaCha20-Poly1305, detached tags of 12 to 16 bytes.
//! - [`asym`]: ECDSA P-256/P-384 (SHA-256/SHA-384) and Ed25519: key generation, PKCS#8 / SPKI
//!   encoding, raw import/export, sign and verify.
//! - [`mac`]: SHA-1/SHA-2 digests, HMAC over them, CMAC-AES.
//! - [`modes`]: AES ECB/CBC (PKCS#5 or no padding) and CTR, and plain ChaCha20 (original
//!   64-bit nonce, RFC 8439), unauthenticated, for CS-BC.
//! - [`rsa`]: RSA 2048/3072/4096: generation, PKCS#1/PKCS#8/SPKI, OAEP and PKCS#1 v1.5
//!   encryption, PSS and PKCS#1 v1.5 signatures.
//! - [`wrap`]: AES Key Wrap (RFC 3394), with padding (RFC 5649), AES-GCM key wrapping.
//!
//! Secret key material is held in [`zeroize::Zeroizing`] buffers and never printed.

pub mod aead;
pub mod asym;
pub mod mac;
pub mod modes;
pub mod rsa;
#[cfg(test)]
pub(crate) mod testing;
pub mod wrap;
#[cfg(test)]
mod wycheproof;

use core::fmt;

/// A source of cryptographically secure random bytes, provided by the caller.
pub trait Random {
    /// Fill `buf` with random bytes.
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), RngError>;

    /// Offer `seed` as additional input (the KMIP `RNGSeed` operation); returns how many bytes
    /// were mixed in. The default accepts none: a source that is not built to take outside
    /// input must not let a client steer it.
    fn reseed(&mut self, seed: &[u8]) -> usize {
        let _ = seed;
        0
    }
}

/// The random source failed (for example RDRAND kept returning CF=0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RngError;

impl fmt::Display for RngError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("random number generator failure")
    }
}

impl core::error::Error for RngError {}

/// Why a cryptographic operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CryptoError {
    /// The random source failed.
    Rng,
    /// A key has the wrong length or encoding for the algorithm.
    InvalidKey,
    /// The nonce/IV has the wrong length.
    InvalidNonce,
    /// The authentication tag has the wrong length.
    InvalidTag,
    /// AEAD decryption failed: the ciphertext, tag, nonce or associated data is not authentic.
    AuthenticationFailed,
    /// A signature could not be parsed.
    InvalidSignature,
    /// The algorithm or combination is not supported.
    Unsupported,
    /// Encoding a key failed.
    Encoding,
    /// The data length does not fit the mode and padding (not a whole number of blocks).
    InvalidLength,
    /// The key is stored and exported but too short to be used (RSA below 2048 bits).
    KeyTooShort,
}

impl fmt::Display for CryptoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CryptoError::Rng => "random number generator failure",
            CryptoError::InvalidKey => "invalid key material for the algorithm",
            CryptoError::InvalidNonce => "invalid nonce length",
            CryptoError::InvalidTag => "invalid authentication tag length",
            CryptoError::AuthenticationFailed => "decryption failed: data is not authentic",
            CryptoError::InvalidSignature => "malformed signature",
            CryptoError::Unsupported => "unsupported cryptographic algorithm or parameters",
            CryptoError::Encoding => "key encoding failed",
            CryptoError::InvalidLength => {
                "data length does not fit the mode and padding (whole 16-byte blocks)"
            }
            CryptoError::KeyTooShort => {
                "key too short for this operation (RSA keys below 2048 bits are only stored and exported)"
            }
        })
    }
}

impl core::error::Error for CryptoError {}

impl From<RngError> for CryptoError {
    fn from(_: RngError) -> Self {
        CryptoError::Rng
    }
}

/// Constant-time equality of two byte strings (length is not secret).
///
/// Compared eight bytes at a time with `subtle`'s `u64` comparison: `subtle`'s slice comparison
/// makes one optimisation barrier (an out-of-line call) per byte, which was ~2% of an Encrypt's
/// CPU (the decoded-object memo compares a whole record body, issue 15).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    if a.len() != b.len() {
        return false;
    }
    let (a_words, a_rest) = a.as_chunks::<8>();
    let (b_words, b_rest) = b.as_chunks::<8>();
    let mut equal = a_rest.ct_eq(b_rest);
    for (x, y) in a_words.iter().zip(b_words) {
        equal &= u64::from_ne_bytes(*x).ct_eq(&u64::from_ne_bytes(*y));
    }
    bool::from(equal)
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    let mut out = [0u8; 32];
    out.copy_from_slice(&sha2::Sha256::digest(data));
    out
}

#[cfg(test)]
mod ct_eq_tests {
    use super::ct_eq;

    /// Equal and unequal strings of every length around the 8-byte words, with the difference
    /// in every position (a word or the tail), and different lengths.
    #[test]
    fn ct_eq_matches_plain_equality() {
        for len in 0..=33usize {
            let a: alloc::vec::Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            assert!(ct_eq(&a, &a.clone()), "len {len}: equal");
            for pos in 0..len {
                let mut b = a.clone();
                b[pos] ^= 0x80;
                assert!(!ct_eq(&a, &b), "len {len}: differs at {pos}");
            }
            let mut longer = a.clone();
            longer.push(0);
            assert!(!ct_eq(&a, &longer), "len {len}: different lengths");
        }
    }
}
