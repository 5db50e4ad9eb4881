//! Key hierarchy: every key this crate uses is derived from the 32-byte database secret.
//!
//! ```text
//! db_secret (32 bytes, provisioned)
//!   └─ HKDF-SHA256 (RFC 5869), salt = "kms-redis v1", one `info` label per use:
//!        "kms-redis/objects/aead"  → AES-256-GCM-SIV key sealing object records
//!        "kms-redis/objects/nonce" → HMAC-SHA256 key deriving record nonces from (uid, version)
//!        "kms-redis/objects/name"  → HMAC-SHA256 key: Redis key name of an object = PRF(uid)
//!        "kms-redis/findex/seed"   → Findex seed (keyword PRF, address-token PRP, XTS word keys)
//!        "kms-redis/canary"        → AES-256-GCM-SIV key sealing the canary record
//! ```
//! Derived keys are zeroized on drop and never printed.

use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// HKDF salt: versions the whole hierarchy.
pub const SALT: &[u8] = b"kms-redis v1";
/// `info` label of the object sealing key.
pub const LABEL_OBJECTS: &[u8] = b"kms-redis/objects/aead";
/// `info` label of the record nonce PRF key.
pub const LABEL_NONCE: &[u8] = b"kms-redis/objects/nonce";
/// `info` label of the object key-name PRF key.
pub const LABEL_NAMES: &[u8] = b"kms-redis/objects/name";
/// `info` label of the Findex seed.
pub const LABEL_FINDEX: &[u8] = b"kms-redis/findex/seed";
/// `info` label of the canary key.
pub const LABEL_CANARY: &[u8] = b"kms-redis/canary";

/// A 32-byte secret key, zeroized on drop, redacted in `Debug`.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Key32(pub(crate) [u8; 32]);

impl core::fmt::Debug for Key32 {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Key32(<redacted>)")
    }
}

impl Key32 {
    /// The key bytes.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

/// All keys derived from one database secret.
#[derive(Debug, Clone)]
pub struct KeySet {
    /// Seals object records.
    pub objects: Key32,
    /// Derives record nonces.
    pub nonce: Key32,
    /// Derives object key names.
    pub names: Key32,
    /// Findex seed.
    pub findex: Key32,
    /// Seals the canary.
    pub canary: Key32,
}

impl KeySet {
    /// Derive the hierarchy from the database secret.
    pub fn derive(db_secret: &[u8; 32]) -> Self {
        let hk = Hkdf::<Sha256>::new(Some(SALT), db_secret);
        let k = |label: &[u8]| {
            let mut out = [0u8; 32];
            // 32 bytes is far below HKDF-SHA256's 255*32 output limit: expand cannot fail.
            let _ = hk.expand(label, &mut out);
            Key32(out)
        };
        KeySet {
            objects: k(LABEL_OBJECTS),
            nonce: k(LABEL_NONCE),
            names: k(LABEL_NAMES),
            findex: k(LABEL_FINDEX),
            canary: k(LABEL_CANARY),
        }
    }
}

/// HMAC-SHA256 of the length-prefixed parts (unambiguous concatenation).
pub fn prf(key: &Key32, parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length: new_from_slice cannot fail for 32 bytes.
    let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(&key.0) {
        Ok(m) => m,
        Err(_) => return [0u8; 32],
    };
    for p in parts {
        mac.update(&(p.len() as u64).to_be_bytes());
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_give_distinct_keys_and_secret_matters() {
        let a = KeySet::derive(&[7u8; 32]);
        let all = [&a.objects, &a.nonce, &a.names, &a.findex, &a.canary];
        for (i, x) in all.iter().enumerate() {
            for y in all.iter().skip(i + 1) {
                assert_ne!(x.0, y.0);
            }
            assert_ne!(x.0, [7u8; 32]);
        }
        let b = KeySet::derive(&[8u8; 32]);
        assert_ne!(a.objects.0, b.objects.0);
        assert_eq!(KeySet::derive(&[7u8; 32]).findex.0, a.findex.0);
        assert!(!alloc::format!("{a:?}").contains("7, 7"));
    }

    #[test]
    fn hkdf_matches_rfc5869_shape() {
        // RFC 5869 test case 1 (SHA-256), checks we use HKDF the standard way.
        let ikm = [0x0bu8; 22];
        let salt: [u8; 13] = core::array::from_fn(|i| i as u8);
        let info: [u8; 10] = core::array::from_fn(|i| 0xf0 + i as u8);
        let mut okm = [0u8; 42];
        Hkdf::<Sha256>::new(Some(&salt), &ikm)
            .expand(&info, &mut okm)
            .unwrap();
        assert_eq!(okm[..4], [0x3c, 0xb2, 0x5f, 0x25]);
        assert_eq!(okm[38..], [0x87, 0x18, 0x58, 0x65]);
    }
}
