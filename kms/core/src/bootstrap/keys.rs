//! The bootstrap secret `sk` and the P-256 key pair derived from it.
//!
//! `sk` = HKDF-SHA256 (RFC 5869) over the platform's derived key (SEV-SNP: MSG_KEY_REQ, which mixes the launch
//! measurement into the key, AMD SEV-SNP ABI spec 56860 §7.2) with a fixed salt and label. Two machines of the
//! same platform running the same measured image derive the same `sk`; any other image derives another.
//! Without a platform key (`--attestation none`, TDX for now) `sk` is taken from the RNG instead.
//!
//! The key pair is derived deterministically from `sk`: HKDF-Expand(sk, label ‖ counter) gives 32 bytes; the
//! first value that is a valid non-zero P-256 scalar (FIPS 186-5 §A.2.2 "rejection sampling") is the key.

use core::fmt;

use hkdf::Hkdf;
use p256::ecdsa::SigningKey;
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

/// Salt of the HKDF extraction of `sk`; versioned so a future change derives a different key.
const SK_SALT: &[u8] = b"kms-unikernel/bootstrap/v1";
/// HKDF info of `sk`.
const SK_INFO: &[u8] = b"bootstrap sk";
/// HKDF info prefix of the P-256 key candidates (a one-byte counter follows).
const KEY_INFO: &[u8] = b"bootstrap p256 key";

/// Errors of the key derivation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyError {
    /// 256 candidates in a row were not valid scalars (probability about 2^-8192: a broken HKDF).
    NoValidScalar,
    /// HKDF refused the requested output length (cannot happen for 32 bytes).
    Hkdf,
    /// PKCS#8 encoding failed.
    Encoding,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::NoValidScalar => f.write_str("no valid P-256 scalar derived from sk"),
            KeyError::Hkdf => f.write_str("HKDF output length refused"),
            KeyError::Encoding => f.write_str("private key encoding failed"),
        }
    }
}

impl core::error::Error for KeyError {}

/// Where `sk` came from; reported at start and in the bootstrap state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkOrigin {
    /// Derived from the platform's measurement-bound key: stable across restarts of the same image.
    PlatformDerived,
    /// Random: a new key pair on every start (no platform key available).
    Random,
}

/// The 32-byte bootstrap secret. Zeroized on drop; never printed.
pub struct Sk {
    bytes: Zeroizing<[u8; 32]>,
    origin: SkOrigin,
}

impl Sk {
    /// Derives `sk` from the platform's derived key.
    pub fn from_platform_key(derived_key: &[u8; 32]) -> Result<Self, KeyError> {
        let hk = Hkdf::<Sha256>::new(Some(SK_SALT), derived_key);
        let mut bytes = Zeroizing::new([0u8; 32]);
        hk.expand(SK_INFO, bytes.as_mut_slice())
            .map_err(|_| KeyError::Hkdf)?;
        Ok(Sk {
            bytes,
            origin: SkOrigin::PlatformDerived,
        })
    }

    /// Uses 32 random bytes (from the caller's RNG) as `sk`.
    pub fn from_random(random: [u8; 32]) -> Self {
        let mut random = random;
        let sk = Sk {
            bytes: Zeroizing::new(random),
            origin: SkOrigin::Random,
        };
        random.zeroize();
        sk
    }

    /// Where this secret came from.
    pub fn origin(&self) -> SkOrigin {
        self.origin
    }

    /// Derives the bootstrap key pair.
    pub fn key_pair(&self) -> Result<BootstrapKey, KeyError> {
        let hk = Hkdf::<Sha256>::from_prk(self.bytes.as_slice()).map_err(|_| KeyError::Hkdf)?;
        for counter in 0u8..=255 {
            let mut candidate = Zeroizing::new([0u8; 32]);
            if hk
                .expand_multi_info(&[KEY_INFO, &[counter]], candidate.as_mut_slice())
                .is_err()
            {
                return Err(KeyError::Hkdf);
            }
            if let Ok(signing) = SigningKey::from_slice(candidate.as_slice()) {
                return Ok(BootstrapKey::new(signing, self.origin));
            }
        }
        Err(KeyError::NoValidScalar)
    }
}

impl fmt::Debug for Sk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sk")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

/// The bootstrap P-256 key pair: it signs the bootstrap certificate and the CSR, and it is the key of the API
/// certificate, so the TLS server uses it before and after `/start`. The scalar is wiped on drop by
/// `ecdsa::SigningKey`'s own `Drop`.
pub struct BootstrapKey {
    signing: SigningKey,
    public: [u8; 65],
    origin: SkOrigin,
}

impl BootstrapKey {
    fn new(signing: SigningKey, origin: SkOrigin) -> Self {
        let point = signing.verifying_key().to_sec1_point(false);
        let mut public = [0u8; 65];
        // An uncompressed SEC1 P-256 point is always 65 bytes (SEC 1 v2 §2.3.3).
        if let Some(src) = point.as_bytes().get(..65) {
            public.copy_from_slice(src);
        }
        BootstrapKey {
            signing,
            public,
            origin,
        }
    }

    /// The signing key (for certificate and CSR building, and for the TLS server).
    pub fn signing_key(&self) -> &SigningKey {
        &self.signing
    }

    /// The SEC1 uncompressed public key `04 ‖ X ‖ Y`.
    pub fn public_uncompressed(&self) -> &[u8; 65] {
        &self.public
    }

    /// SHA-256 of the uncompressed public key: the first half of every report_data this server asks for.
    pub fn public_key_hash(&self) -> [u8; 32] {
        Sha256::digest(self.public).into()
    }

    /// report_data = SHA-256(uncompressed public key) ‖ `suffix` (zeros in a certificate, a nonce in
    /// `/attestation`).
    pub fn report_data(&self, suffix: &[u8; 32]) -> [u8; 64] {
        attest::ratls::report_data_for_key(&self.public, suffix)
    }

    /// Where the underlying `sk` came from.
    pub fn origin(&self) -> SkOrigin {
        self.origin
    }

    /// PKCS#8 DER of the private key (RFC 5958), for the TLS server; wiped when dropped.
    pub fn to_pkcs8_der(&self) -> Result<Zeroizing<alloc::vec::Vec<u8>>, KeyError> {
        use p256::pkcs8::EncodePrivateKey;
        let doc = self
            .signing
            .to_pkcs8_der()
            .map_err(|_| KeyError::Encoding)?;
        Ok(Zeroizing::new(doc.as_bytes().to_vec()))
    }
}

impl fmt::Debug for BootstrapKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BootstrapKey")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_platform_key_same_key_pair() {
        let a = Sk::from_platform_key(&[7u8; 32])
            .unwrap()
            .key_pair()
            .unwrap();
        let b = Sk::from_platform_key(&[7u8; 32])
            .unwrap()
            .key_pair()
            .unwrap();
        assert_eq!(a.public_uncompressed(), b.public_uncompressed());
        assert_eq!(a.public_uncompressed()[0], 0x04);
        assert_eq!(a.origin(), SkOrigin::PlatformDerived);
    }

    #[test]
    fn other_platform_key_other_key_pair() {
        let a = Sk::from_platform_key(&[7u8; 32])
            .unwrap()
            .key_pair()
            .unwrap();
        let b = Sk::from_platform_key(&[8u8; 32])
            .unwrap()
            .key_pair()
            .unwrap();
        assert_ne!(a.public_uncompressed(), b.public_uncompressed());
    }

    #[test]
    fn sk_is_not_the_platform_key_and_key_is_not_sk() {
        let sk = Sk::from_platform_key(&[7u8; 32]).unwrap();
        assert_ne!(*sk.bytes, [7u8; 32]);
        let key = sk.key_pair().unwrap();
        assert_ne!(key.signing_key().to_bytes().as_slice(), sk.bytes.as_slice());
    }

    #[test]
    fn report_data_binds_key_and_suffix() {
        let key = Sk::from_random([1u8; 32]).key_pair().unwrap();
        let rd = key.report_data(&[0xAB; 32]);
        assert_eq!(
            &rd[..32],
            Sha256::digest(key.public_uncompressed()).as_slice()
        );
        assert_eq!(&rd[32..], &[0xAB; 32]);
        assert_eq!(key.origin(), SkOrigin::Random);
    }

    #[test]
    fn pkcs8_round_trip() {
        use p256::pkcs8::DecodePrivateKey;
        let key = Sk::from_random([3u8; 32]).key_pair().unwrap();
        let der = key.to_pkcs8_der().unwrap();
        let back = SigningKey::from_pkcs8_der(&der).unwrap();
        assert_eq!(back.to_bytes(), key.signing_key().to_bytes());
    }

    #[test]
    fn debug_does_not_print_secrets() {
        let sk = Sk::from_platform_key(&[7u8; 32]).unwrap();
        let s = alloc::format!("{sk:?} {:?}", sk.key_pair().unwrap());
        assert!(!s.contains("bytes") && !s.contains("signing"), "{s}");
    }
}
