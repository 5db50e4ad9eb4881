//! Signature keys: ECDSA over P-256 / P-384 (FIPS 186-5, with SHA-256 / SHA-384 and RFC 6979
//! deterministic nonces) and Ed25519 (RFC 8032).
//!
//! Canonical stored forms: private keys as PKCS#8 `PrivateKeyInfo` DER (RFC 5208 / RFC 8410),
//! public keys as X.509 `SubjectPublicKeyInfo` DER (RFC 5280 §4.1.2.7, RFC 5480, RFC 8410).
//! Raw forms: ECDSA private = big-endian scalar, public = SEC1 uncompressed point; Ed25519
//! private = 32-byte seed, public = 32-byte point. ECDSA signatures are DER (RFC 3279
//! `Ecdsa-Sig-Value`); verification also accepts the fixed-size `r ‖ s` form.

use alloc::vec::Vec;
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use zeroize::Zeroizing;

use super::{CryptoError, Random};

/// A signature algorithm / curve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    /// ECDSA on NIST P-256 with SHA-256.
    P256,
    /// ECDSA on NIST P-384 with SHA-384.
    P384,
    /// Ed25519 (pure, RFC 8032).
    Ed25519,
}

/// A freshly generated or imported key pair in canonical encodings.
pub struct KeyPair {
    /// PKCS#8 DER of the private key.
    pub private_pkcs8: Zeroizing<Vec<u8>>,
    /// SubjectPublicKeyInfo DER of the public key.
    pub public_spki: Vec<u8>,
}

macro_rules! ec_impl {
    ($m:ident, $crate_:ident, $len:expr) => {
        mod $m {
            use super::*;
            use $crate_::ecdsa::{Signature, SigningKey, VerifyingKey};
            use $crate_::{PublicKey, SecretKey};

            pub fn from_scalar(raw: &[u8]) -> Result<KeyPair, CryptoError> {
                if raw.len() != $len {
                    return Err(CryptoError::InvalidKey);
                }
                let sk = SecretKey::from_slice(raw).map_err(|_| CryptoError::InvalidKey)?;
                pair(&sk)
            }

            fn pair(sk: &SecretKey) -> Result<KeyPair, CryptoError> {
                let der = sk.to_pkcs8_der().map_err(|_| CryptoError::Encoding)?;
                let spki = sk
                    .public_key()
                    .to_public_key_der()
                    .map_err(|_| CryptoError::Encoding)?;
                Ok(KeyPair {
                    private_pkcs8: Zeroizing::new(der.as_bytes().to_vec()),
                    public_spki: spki.as_bytes().to_vec(),
                })
            }

            pub fn from_pkcs8(der: &[u8]) -> Result<KeyPair, CryptoError> {
                let sk = SecretKey::from_pkcs8_der(der).map_err(|_| CryptoError::InvalidKey)?;
                pair(&sk)
            }

            pub fn scalar(pkcs8: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
                let sk = SecretKey::from_pkcs8_der(pkcs8).map_err(|_| CryptoError::InvalidKey)?;
                Ok(Zeroizing::new(sk.to_bytes().to_vec()))
            }

            pub fn spki_from_point(raw: &[u8]) -> Result<Vec<u8>, CryptoError> {
                let pk = PublicKey::from_sec1_bytes(raw).map_err(|_| CryptoError::InvalidKey)?;
                Ok(pk
                    .to_public_key_der()
                    .map_err(|_| CryptoError::Encoding)?
                    .as_bytes()
                    .to_vec())
            }

            pub fn spki_canonical(der: &[u8]) -> Result<Vec<u8>, CryptoError> {
                let pk =
                    PublicKey::from_public_key_der(der).map_err(|_| CryptoError::InvalidKey)?;
                Ok(pk
                    .to_public_key_der()
                    .map_err(|_| CryptoError::Encoding)?
                    .as_bytes()
                    .to_vec())
            }

            pub fn point(spki: &[u8]) -> Result<Vec<u8>, CryptoError> {
                let pk =
                    PublicKey::from_public_key_der(spki).map_err(|_| CryptoError::InvalidKey)?;
                Ok(pk.to_sec1_bytes().to_vec())
            }

            pub fn sign(pkcs8: &[u8], msg: &[u8]) -> Result<Vec<u8>, CryptoError> {
                use $crate_::ecdsa::signature::Signer;
                let sk = SigningKey::from_pkcs8_der(pkcs8).map_err(|_| CryptoError::InvalidKey)?;
                let sig: Signature = sk.try_sign(msg).map_err(|_| CryptoError::InvalidKey)?;
                Ok(sig.to_der().as_bytes().to_vec())
            }

            pub fn sign_digest(pkcs8: &[u8], digest: &[u8]) -> Result<Vec<u8>, CryptoError> {
                use $crate_::ecdsa::signature::hazmat::PrehashSigner;
                if digest.len() != $len {
                    return Err(CryptoError::Unsupported);
                }
                let sk = SigningKey::from_pkcs8_der(pkcs8).map_err(|_| CryptoError::InvalidKey)?;
                let sig: Signature = sk.sign_prehash(digest).map_err(|_| CryptoError::InvalidKey)?;
                Ok(sig.to_der().as_bytes().to_vec())
            }

            pub fn verify_digest(spki: &[u8], digest: &[u8], sig: &[u8]) -> Result<bool, CryptoError> {
                use $crate_::ecdsa::signature::hazmat::PrehashVerifier;
                if digest.len() != $len {
                    return Err(CryptoError::Unsupported);
                }
                let vk = VerifyingKey::from_public_key_der(spki)
                    .map_err(|_| CryptoError::InvalidKey)?;
                let sig = if sig.len() == 2 * $len {
                    Signature::from_slice(sig)
                } else {
                    Signature::from_der(sig)
                }
                .map_err(|_| CryptoError::InvalidSignature)?;
                Ok(vk.verify_prehash(digest, &sig).is_ok())
            }

            pub fn verify_prehashed(spki: &[u8], digest: &[u8], sig: &[u8]) -> Result<bool, CryptoError> {
                use $crate_::ecdsa::signature::hazmat::PrehashVerifier;
                let vk = VerifyingKey::from_public_key_der(spki)
                    .map_err(|_| CryptoError::InvalidKey)?;
                let sig = Signature::from_der(sig).map_err(|_| CryptoError::InvalidSignature)?;
                Ok(vk.verify_prehash(digest, &sig).is_ok())
            }

            pub fn verify(spki: &[u8], msg: &[u8], sig: &[u8]) -> Result<bool, CryptoError> {
                use $crate_::ecdsa::signature::Verifier;
                let vk =
                    VerifyingKey::from_public_key_der(spki).map_err(|_| CryptoError::InvalidKey)?;
                let sig = if sig.len() == 2 * $len {
                    Signature::from_slice(sig)
                } else {
                    Signature::from_der(sig)
                }
                .map_err(|_| CryptoError::InvalidSignature)?;
                Ok(vk.verify(msg, &sig).is_ok())
            }
        }
    };
}

ec_impl!(p256_impl, p256, 32);
ec_impl!(p384_impl, p384, 48);

mod ed_impl {
    use super::*;
    use ed25519_dalek::{Signature, SigningKey, VerifyingKey};

    pub fn from_seed(raw: &[u8]) -> Result<KeyPair, CryptoError> {
        let seed: &[u8; 32] = raw.try_into().map_err(|_| CryptoError::InvalidKey)?;
        pair(&SigningKey::from_bytes(seed))
    }

    fn pair(sk: &SigningKey) -> Result<KeyPair, CryptoError> {
        let der = sk.to_pkcs8_der().map_err(|_| CryptoError::Encoding)?;
        let spki = sk
            .verifying_key()
            .to_public_key_der()
            .map_err(|_| CryptoError::Encoding)?;
        Ok(KeyPair {
            private_pkcs8: Zeroizing::new(der.as_bytes().to_vec()),
            public_spki: spki.as_bytes().to_vec(),
        })
    }

    pub fn from_pkcs8(der: &[u8]) -> Result<KeyPair, CryptoError> {
        let sk = SigningKey::from_pkcs8_der(der).map_err(|_| CryptoError::InvalidKey)?;
        pair(&sk)
    }

    pub fn seed(pkcs8: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let sk = SigningKey::from_pkcs8_der(pkcs8).map_err(|_| CryptoError::InvalidKey)?;
        Ok(Zeroizing::new(sk.to_bytes().to_vec()))
    }

    pub fn spki_from_point(raw: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let pk: &[u8; 32] = raw.try_into().map_err(|_| CryptoError::InvalidKey)?;
        let vk = VerifyingKey::from_bytes(pk).map_err(|_| CryptoError::InvalidKey)?;
        Ok(vk
            .to_public_key_der()
            .map_err(|_| CryptoError::Encoding)?
            .as_bytes()
            .to_vec())
    }

    pub fn spki_canonical(der: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let vk = VerifyingKey::from_public_key_der(der).map_err(|_| CryptoError::InvalidKey)?;
        Ok(vk
            .to_public_key_der()
            .map_err(|_| CryptoError::Encoding)?
            .as_bytes()
            .to_vec())
    }

    pub fn point(spki: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let vk = VerifyingKey::from_public_key_der(spki).map_err(|_| CryptoError::InvalidKey)?;
        Ok(vk.to_bytes().to_vec())
    }

    pub fn sign(pkcs8: &[u8], msg: &[u8]) -> Result<Vec<u8>, CryptoError> {
        use ed25519_dalek::Signer;
        let sk = SigningKey::from_pkcs8_der(pkcs8).map_err(|_| CryptoError::InvalidKey)?;
        Ok(sk.sign(msg).to_bytes().to_vec())
    }

    pub fn verify(spki: &[u8], msg: &[u8], sig: &[u8]) -> Result<bool, CryptoError> {
        let vk = VerifyingKey::from_public_key_der(spki).map_err(|_| CryptoError::InvalidKey)?;
        let sig = Signature::from_slice(sig).map_err(|_| CryptoError::InvalidSignature)?;
        Ok(vk.verify_strict(msg, &sig).is_ok())
    }
}

impl Curve {
    /// Size of the raw private key (scalar or seed) in bytes.
    pub fn private_len(self) -> usize {
        match self {
            Curve::P256 | Curve::Ed25519 => 32,
            Curve::P384 => 48,
        }
    }

    /// Key size in bits as KMIP reports it in `CryptographicLength`.
    pub fn bits(self) -> i32 {
        match self {
            Curve::P256 => 256,
            Curve::P384 => 384,
            Curve::Ed25519 => 255,
        }
    }
}

/// Generate a key pair. ECDSA scalars are drawn by rejection sampling (FIPS 186-5 A.2.2).
pub fn generate(curve: Curve, rng: &mut dyn Random) -> Result<KeyPair, CryptoError> {
    let mut seed = Zeroizing::new([0u8; 48]);
    let len = curve.private_len();
    for _ in 0..64 {
        let buf = seed.get_mut(..len).ok_or(CryptoError::InvalidKey)?;
        rng.fill(buf)?;
        match from_raw_private(curve, buf) {
            Ok(kp) => return Ok(kp),
            Err(CryptoError::InvalidKey) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(CryptoError::Rng)
}

/// Key pair from a raw private key (scalar / seed).
pub fn from_raw_private(curve: Curve, raw: &[u8]) -> Result<KeyPair, CryptoError> {
    match curve {
        Curve::P256 => p256_impl::from_scalar(raw),
        Curve::P384 => p384_impl::from_scalar(raw),
        Curve::Ed25519 => ed_impl::from_seed(raw),
    }
}

/// Key pair from a PKCS#8 DER private key; tries the given curve, or every curve.
pub fn from_pkcs8(curve: Option<Curve>, der: &[u8]) -> Result<(Curve, KeyPair), CryptoError> {
    let all = [Curve::P256, Curve::P384, Curve::Ed25519];
    for c in all {
        if curve.is_some_and(|x| x != c) {
            continue;
        }
        let r = match c {
            Curve::P256 => p256_impl::from_pkcs8(der),
            Curve::P384 => p384_impl::from_pkcs8(der),
            Curve::Ed25519 => ed_impl::from_pkcs8(der),
        };
        if let Ok(kp) = r {
            return Ok((c, kp));
        }
    }
    Err(CryptoError::InvalidKey)
}

/// The raw private key (scalar / seed) of a PKCS#8 key.
pub fn raw_private(curve: Curve, pkcs8: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    match curve {
        Curve::P256 => p256_impl::scalar(pkcs8),
        Curve::P384 => p384_impl::scalar(pkcs8),
        Curve::Ed25519 => ed_impl::seed(pkcs8),
    }
}

/// Canonical SPKI DER from an SPKI DER public key; tries the given curve, or every curve.
pub fn public_from_spki(curve: Option<Curve>, der: &[u8]) -> Result<(Curve, Vec<u8>), CryptoError> {
    for c in [Curve::P256, Curve::P384, Curve::Ed25519] {
        if curve.is_some_and(|x| x != c) {
            continue;
        }
        let r = match c {
            Curve::P256 => p256_impl::spki_canonical(der),
            Curve::P384 => p384_impl::spki_canonical(der),
            Curve::Ed25519 => ed_impl::spki_canonical(der),
        };
        if let Ok(spki) = r {
            return Ok((c, spki));
        }
    }
    Err(CryptoError::InvalidKey)
}

/// SPKI DER from a raw public key (SEC1 point / Ed25519 point).
pub fn public_from_raw(curve: Curve, raw: &[u8]) -> Result<Vec<u8>, CryptoError> {
    match curve {
        Curve::P256 => p256_impl::spki_from_point(raw),
        Curve::P384 => p384_impl::spki_from_point(raw),
        Curve::Ed25519 => ed_impl::spki_from_point(raw),
    }
}

/// The raw public key (uncompressed SEC1 point / Ed25519 point) of an SPKI DER key.
pub fn raw_public(curve: Curve, spki: &[u8]) -> Result<Vec<u8>, CryptoError> {
    match curve {
        Curve::P256 => p256_impl::point(spki),
        Curve::P384 => p384_impl::point(spki),
        Curve::Ed25519 => ed_impl::point(spki),
    }
}

/// Sign `msg` with a PKCS#8 private key.
pub fn sign(curve: Curve, pkcs8: &[u8], msg: &[u8]) -> Result<Vec<u8>, CryptoError> {
    match curve {
        Curve::P256 => p256_impl::sign(pkcs8, msg),
        Curve::P384 => p384_impl::sign(pkcs8, msg),
        Curve::Ed25519 => ed_impl::sign(pkcs8, msg),
    }
}

/// Sign a digest computed by the caller (SHA-256 for P-256, SHA-384 for P-384; ECDSA only:
/// Ed25519 signs messages, not digests).
pub fn sign_digest(curve: Curve, pkcs8: &[u8], digest: &[u8]) -> Result<Vec<u8>, CryptoError> {
    match curve {
        Curve::P256 => p256_impl::sign_digest(pkcs8, digest),
        Curve::P384 => p384_impl::sign_digest(pkcs8, digest),
        Curve::Ed25519 => Err(CryptoError::Unsupported),
    }
}

/// Verify `sig` over a digest computed by the caller (ECDSA only).
pub fn verify_digest(
    curve: Curve,
    spki: &[u8],
    digest: &[u8],
    sig: &[u8],
) -> Result<bool, CryptoError> {
    match curve {
        Curve::P256 => p256_impl::verify_digest(spki, digest, sig),
        Curve::P384 => p384_impl::verify_digest(spki, digest, sig),
        Curve::Ed25519 => Err(CryptoError::Unsupported),
    }
}

/// Verify a DER ECDSA signature over a digest of any SHA-2 length (X.509 and PKCS#10 pair
/// P-384 with SHA-256 and P-256 with SHA-384 too: FIPS 186-5 §6.4 truncates or pads the
/// digest). ECDSA only.
pub fn verify_prehashed(
    curve: Curve,
    spki: &[u8],
    digest: &[u8],
    sig: &[u8],
) -> Result<bool, CryptoError> {
    match curve {
        Curve::P256 => p256_impl::verify_prehashed(spki, digest, sig),
        Curve::P384 => p384_impl::verify_prehashed(spki, digest, sig),
        Curve::Ed25519 => Err(CryptoError::Unsupported),
    }
}

/// Verify `sig` over `msg` with an SPKI public key. `Ok(false)` = a well-formed but wrong
/// signature.
pub fn verify(curve: Curve, spki: &[u8], msg: &[u8], sig: &[u8]) -> Result<bool, CryptoError> {
    match curve {
        Curve::P256 => p256_impl::verify(spki, msg, sig),
        Curve::P384 => p384_impl::verify(spki, msg, sig),
        Curve::Ed25519 => ed_impl::verify(spki, msg, sig),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::crypto::testing::TestRng as Counter;

    #[test]
    fn sign_verify_and_encodings_round_trip() {
        let mut rng = Counter(3);
        for c in [Curve::P256, Curve::P384, Curve::Ed25519] {
            let kp = generate(c, &mut rng).unwrap();
            let sig = sign(c, &kp.private_pkcs8, b"message").unwrap();
            assert!(verify(c, &kp.public_spki, b"message", &sig).unwrap());
            assert!(!verify(c, &kp.public_spki, b"messagf", &sig).unwrap());
            // PKCS#8 and raw forms give back the same pair.
            let (c2, kp2) = from_pkcs8(None, &kp.private_pkcs8).unwrap();
            assert_eq!(c2, c);
            assert_eq!(kp2.public_spki, kp.public_spki);
            let raw = raw_private(c, &kp.private_pkcs8).unwrap();
            assert_eq!(raw.len(), c.private_len());
            let kp3 = from_raw_private(c, &raw).unwrap();
            assert_eq!(&kp3.private_pkcs8[..], &kp.private_pkcs8[..]);
            let point = raw_public(c, &kp.public_spki).unwrap();
            assert_eq!(public_from_raw(c, &point).unwrap(), kp.public_spki);
            assert_eq!(
                public_from_spki(None, &kp.public_spki).unwrap(),
                (c, kp.public_spki.clone())
            );
        }
    }

    #[test]
    fn digest_signatures_match_message_signatures() {
        use sha2::Digest;
        let mut rng = Counter(9);
        let kp = generate(Curve::P256, &mut rng).unwrap();
        let h = sha2::Sha256::digest(b"msg");
        let sig = sign(Curve::P256, &kp.private_pkcs8, b"msg").unwrap();
        assert!(verify_digest(Curve::P256, &kp.public_spki, &h, &sig).unwrap());
        let sig2 = sign_digest(Curve::P256, &kp.private_pkcs8, &h).unwrap();
        // RFC 6979: same key, same digest, same signature.
        assert_eq!(sig, sig2);
        assert_eq!(
            sign_digest(Curve::P256, &kp.private_pkcs8, &h[..31]),
            Err(CryptoError::Unsupported)
        );
        let kp = generate(Curve::P384, &mut rng).unwrap();
        let h = sha2::Sha384::digest(b"msg");
        let sig = sign_digest(Curve::P384, &kp.private_pkcs8, &h).unwrap();
        assert!(verify(Curve::P384, &kp.public_spki, b"msg", &sig).unwrap());
        let kp = generate(Curve::Ed25519, &mut rng).unwrap();
        assert_eq!(
            sign_digest(Curve::Ed25519, &kp.private_pkcs8, &[0; 32]),
            Err(CryptoError::Unsupported)
        );
    }

    #[test]
    fn rejects_garbage() {
        assert!(matches!(
            from_pkcs8(None, b"\x30\x03\x02\x01\x00"),
            Err(CryptoError::InvalidKey)
        ));
        assert_eq!(
            public_from_spki(None, b"nope"),
            Err(CryptoError::InvalidKey)
        );
        assert!(matches!(
            from_raw_private(Curve::P256, &[0u8; 32]),
            Err(CryptoError::InvalidKey)
        ));
        assert!(matches!(
            from_raw_private(Curve::P256, &[1u8; 31]),
            Err(CryptoError::InvalidKey)
        ));
    }
}
