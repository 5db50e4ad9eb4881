//! RSA (RFC 8017) with the RustCrypto `rsa` crate: key generation (2048, 3072, 4096 bits,
//! e = 65537), PKCS#1 / PKCS#8 / SPKI encodings, RSAES-OAEP and RSAES-PKCS1-v1_5 encryption,
//! RSASSA-PSS and RSASSA-PKCS1-v1_5 signatures.
//!
//! Canonical stored forms, as for the curve keys: private keys as PKCS#8 DER, public keys as
//! SubjectPublicKeyInfo DER. Every private-key operation is blinded with the caller's
//! [`Random`]. PKCS#1 v1.5 decryption uses the `rsa` crate's implicit rejection (a malformed
//! padding yields a deterministic pseudo-random message, never a distinguishable error), the
//! countermeasure against Bleichenbacher/Marvin padding oracles.

use alloc::vec::Vec;
use rsa::pkcs1::{
    DecodeRsaPrivateKey, DecodeRsaPublicKey, EncodeRsaPrivateKey, EncodeRsaPublicKey,
};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use rsa::traits::PublicKeyParts;
use rsa::{Oaep, Pkcs1v15Encrypt, Pkcs1v15Sign, PrivateKey, Pss, PublicKey};
use zeroize::Zeroizing;

use super::asym::KeyPair;
use super::mac::{self, HashAlg};
use super::{CryptoError, Random, RngError};

/// Key sizes the KMS generates and accepts.
pub const SIZES: [usize; 3] = [2048, 3072, 4096];

/// The caller's [`Random`] as a `rand_core` generator.
struct Rng<'a>(&'a mut dyn Random);

impl rand_core::TryRng for Rng<'_> {
    type Error = RngError;
    fn try_next_u32(&mut self) -> Result<u32, RngError> {
        let mut b = [0u8; 4];
        self.0.fill(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn try_next_u64(&mut self) -> Result<u64, RngError> {
        let mut b = [0u8; 8];
        self.0.fill(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), RngError> {
        self.0.fill(dst)
    }
}

impl rand_core::TryCryptoRng for Rng<'_> {}

/// Encryption padding (KMIP `PaddingMethod` with its hashes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncPadding {
    /// RSAES-OAEP with `hash` for the label and `mgf` for MGF1, and an optional label.
    Oaep {
        /// Label hash.
        hash: HashAlg,
        /// MGF1 hash.
        mgf: HashAlg,
        /// Label (empty when `None`).
        label: Option<Vec<u8>>,
    },
    /// RSAES-PKCS1-v1_5 (legacy; decryption with implicit rejection).
    Pkcs1v15,
}

/// Signature scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigPadding {
    /// RSASSA-PSS with MGF1 over the same hash and a salt of the given length: signing
    /// defaults to the hash length, verification with `None` accepts any salt length
    /// (RFC 8017 §9.1.2 recovers it from the encoding).
    Pss(HashAlg, Option<usize>),
    /// RSASSA-PKCS1-v1_5 with a DigestInfo for the hash.
    Pkcs1v15(HashAlg),
}

impl SigPadding {
    fn hash(self) -> HashAlg {
        match self {
            SigPadding::Pss(h, _) | SigPadding::Pkcs1v15(h) => h,
        }
    }
}

fn pair(sk: &PrivateKey) -> Result<KeyPair, CryptoError> {
    let der = sk.to_pkcs8_der().map_err(|_| CryptoError::Encoding)?;
    let spki = sk
        .to_public_key()
        .to_public_key_der()
        .map_err(|_| CryptoError::Encoding)?;
    Ok(KeyPair {
        private_pkcs8: Zeroizing::new(der.as_bytes().to_vec()),
        public_spki: spki.as_bytes().to_vec(),
    })
}

fn check_size(bits: usize) -> Result<(), CryptoError> {
    if SIZES.contains(&bits) {
        Ok(())
    } else {
        Err(CryptoError::Unsupported)
    }
}

/// Generate a key pair of `bits` (one of [`SIZES`]), public exponent 65537.
pub fn generate(bits: usize, rng: &mut dyn Random) -> Result<KeyPair, CryptoError> {
    check_size(bits)?;
    let sk = PrivateKey::new(&mut Rng(rng), bits).map_err(|e| match e {
        rsa::Error::Rng => CryptoError::Rng,
        _ => CryptoError::Unsupported,
    })?;
    pair(&sk)
}

fn private(pkcs8: &[u8]) -> Result<PrivateKey, CryptoError> {
    PrivateKey::from_pkcs8_der(pkcs8).map_err(|_| CryptoError::InvalidKey)
}

fn public(spki: &[u8]) -> Result<PublicKey, CryptoError> {
    PublicKey::from_public_key_der(spki).map_err(|_| CryptoError::InvalidKey)
}

/// Key size in bits of a canonical private (PKCS#8) or public (SPKI) key.
pub fn bits_of_private(pkcs8: &[u8]) -> Result<usize, CryptoError> {
    Ok(private(pkcs8)?.size() * 8)
}

/// Key size in bits of an SPKI public key.
pub fn bits_of_public(spki: &[u8]) -> Result<usize, CryptoError> {
    Ok(public(spki)?.size() * 8)
}

/// A private key from PKCS#8 or PKCS#1 (`RSAPrivateKey`) DER, re-encoded canonically and
/// checked (consistent CRT values, a size in [`SIZES`]).
pub fn import_private(der: &[u8], pkcs1: bool) -> Result<(usize, KeyPair), CryptoError> {
    let sk = if pkcs1 {
        PrivateKey::from_pkcs1_der(der).map_err(|_| CryptoError::InvalidKey)?
    } else {
        PrivateKey::from_pkcs8_der(der).map_err(|_| CryptoError::InvalidKey)?
    };
    sk.validate().map_err(|_| CryptoError::InvalidKey)?;
    let bits = sk.size() * 8;
    check_size(bits)?;
    Ok((bits, pair(&sk)?))
}

/// A public key from SPKI or PKCS#1 (`RSAPublicKey`) DER, as canonical SPKI.
pub fn import_public(der: &[u8], pkcs1: bool) -> Result<(usize, Vec<u8>), CryptoError> {
    let pk = if pkcs1 {
        PublicKey::from_pkcs1_der(der).map_err(|_| CryptoError::InvalidKey)?
    } else {
        PublicKey::from_public_key_der(der).map_err(|_| CryptoError::InvalidKey)?
    };
    let bits = pk.size() * 8;
    check_size(bits)?;
    let spki = pk.to_public_key_der().map_err(|_| CryptoError::Encoding)?;
    Ok((bits, spki.as_bytes().to_vec()))
}

/// The PKCS#1 `RSAPrivateKey` DER of a canonical private key.
pub fn private_to_pkcs1(pkcs8: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let der = private(pkcs8)?
        .to_pkcs1_der()
        .map_err(|_| CryptoError::Encoding)?;
    Ok(Zeroizing::new(der.as_bytes().to_vec()))
}

/// The PKCS#1 `RSAPublicKey` DER of an SPKI public key.
pub fn public_to_pkcs1(spki: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let der = public(spki)?
        .to_pkcs1_der()
        .map_err(|_| CryptoError::Encoding)?;
    Ok(der.as_bytes().to_vec())
}

/// The SPKI of a canonical private key's public half.
pub fn public_of(pkcs8: &[u8]) -> Result<Vec<u8>, CryptoError> {
    Ok(pair(&private(pkcs8)?)?.public_spki)
}

/// `$body` with `$t` bound to the hash type of `$h`.
macro_rules! with_hash {
    ($h:expr, $t:ident => $body:expr) => {
        match $h {
            HashAlg::Sha1 => {
                type $t = sha1::Sha1;
                $body
            }
            HashAlg::Sha224 => {
                type $t = sha2::Sha224;
                $body
            }
            HashAlg::Sha256 => {
                type $t = sha2::Sha256;
                $body
            }
            HashAlg::Sha384 => {
                type $t = sha2::Sha384;
                $body
            }
            HashAlg::Sha512 => {
                type $t = sha2::Sha512;
                $body
            }
        }
    };
}

/// `$body` with `$pad` bound to the OAEP padding for `(hash, mgf, label)`.
macro_rules! with_oaep {
    ($hash:expr, $mgf:expr, $label:expr, $pad:ident => $body:expr) => {
        with_hash!($hash, H => with_hash!($mgf, M => {
            let $pad = match $label {
                Some(l) => Oaep::<H, M>::new_with_mgf_hash_and_label(l.to_vec()),
                None => Oaep::<H, M>::new_with_mgf_hash(),
            };
            $body
        }))
    };
}

/// Encrypt `data` to the SPKI public key.
pub fn encrypt(
    spki: &[u8],
    padding: &EncPadding,
    data: &[u8],
    rng: &mut dyn Random,
) -> Result<Vec<u8>, CryptoError> {
    let pk = public(spki)?;
    let r = match padding {
        EncPadding::Oaep { hash, mgf, label } => {
            with_oaep!(*hash, *mgf, label.as_deref(), p => pk.encrypt(&mut Rng(rng), p, data))
        }
        EncPadding::Pkcs1v15 => pk.encrypt(&mut Rng(rng), Pkcs1v15Encrypt, data),
    };
    r.map_err(|e| match e {
        rsa::Error::Rng => CryptoError::Rng,
        // The message is longer than the key and padding allow.
        _ => CryptoError::Unsupported,
    })
}

/// Decrypt `data` with the PKCS#8 private key. OAEP failures are all
/// [`CryptoError::AuthenticationFailed`] (one error, whatever the cause); PKCS#1 v1.5 never
/// fails on padding (implicit rejection), only on a ciphertext of the wrong length.
pub fn decrypt(
    pkcs8: &[u8],
    padding: &EncPadding,
    data: &[u8],
    rng: &mut dyn Random,
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let sk = private(pkcs8)?;
    let r = match padding {
        EncPadding::Oaep { hash, mgf, label } => {
            // Both checks always run and fail alike: one error, whichever failed.
            let lead = oaep_leading_octet_is_zero(&sk, data, rng)?;
            let r = with_oaep!(*hash, *mgf, label.as_deref(), p => sk.decrypt_blinded(&mut Rng(rng), p, data));
            match r {
                Ok(m) if !lead => {
                    drop(Zeroizing::new(m));
                    Err(rsa::Error::Decryption)
                }
                r => r,
            }
        }
        EncPadding::Pkcs1v15 => sk.decrypt_blinded(&mut Rng(rng), Pkcs1v15Encrypt, data),
    };
    r.map(Zeroizing::new).map_err(|e| match e {
        rsa::Error::Rng => CryptoError::Rng,
        _ => CryptoError::AuthenticationFailed,
    })
}

/// RFC 8017 §7.1.2 step 3g: the first octet `Y` of the OAEP encoded message must be zero.
/// The `rsa` crate (0.10) ignores that octet on purpose, so it accepts ciphertexts of messages
/// `m >= 256^(k-1)` that RFC 8017 (and Wycheproof's "First byte is 1" cases) reject. This
/// recomputes `m = c^d mod n` (blinded, with the crate's CRT check) and tests the leading
/// octets without branching on them; `false` for a ciphertext the crate refuses anyway (wrong
/// length, `c >= n`). It doubles the cost of an OAEP decryption, which only unwraps keys.
fn oaep_leading_octet_is_zero(
    sk: &PrivateKey,
    ct: &[u8],
    rng: &mut dyn Random,
) -> Result<bool, CryptoError> {
    let k = sk.size();
    if ct.len() != k {
        return Ok(false);
    }
    let Ok(c) = rsa::BoxedUint::from_be_slice(ct, sk.n_bits_precision()) else {
        return Ok(false);
    };
    let m = match rsa::hazmat::rsa_decrypt_and_check(sk, Some(&mut Rng(rng)), &c) {
        Ok(m) => Zeroizing::new(m),
        Err(rsa::Error::Rng) => return Err(CryptoError::Rng),
        Err(_) => return Ok(false),
    };
    let be = Zeroizing::new(m.to_be_bytes());
    // Every octet above the low k-1 ones (Y and the limb padding) must be zero.
    let high = be.len().saturating_sub(k.saturating_sub(1));
    let acc = be.get(..high).unwrap_or(&[]).iter().fold(0u8, |a, b| a | b);
    Ok(bool::from(subtle::ConstantTimeEq::ct_eq(&acc, &0u8)))
}

/// The hash a signature covers: the message's digest, or the caller's digest checked for
/// length.
fn prehash(h: HashAlg, msg: Option<&[u8]>, digest: Option<&[u8]>) -> Result<Vec<u8>, CryptoError> {
    match (msg, digest) {
        (Some(m), _) => Ok(mac::digest(h, m)),
        (None, Some(d)) if d.len() == h.output_len() => Ok(d.to_vec()),
        _ => Err(CryptoError::Unsupported),
    }
}

/// Sign a message (`digest == false`) or a digest the caller computed with the scheme's hash.
pub fn sign(
    pkcs8: &[u8],
    padding: SigPadding,
    input: &[u8],
    digest: bool,
    rng: &mut dyn Random,
) -> Result<Vec<u8>, CryptoError> {
    let sk = private(pkcs8)?;
    let h = padding.hash();
    let hashed = if digest {
        prehash(h, None, Some(input))?
    } else {
        prehash(h, Some(input), None)?
    };
    let r = match padding {
        SigPadding::Pss(h, salt) => with_hash!(h, D => {
            let p = match salt {
                Some(n) => Pss::<D>::new_with_salt(n),
                None => Pss::<D>::new(),
            };
            sk.sign_with_rng(&mut Rng(rng), p, &hashed)
        }),
        SigPadding::Pkcs1v15(h) => {
            with_hash!(h, D => sk.sign_with_rng(&mut Rng(rng), Pkcs1v15Sign::new::<D>(), &hashed))
        }
    };
    r.map_err(|e| match e {
        rsa::Error::Rng => CryptoError::Rng,
        _ => CryptoError::InvalidKey,
    })
}

/// Verify a signature over a message or a digest. A wrong signature is `Ok(false)`.
pub fn verify(
    spki: &[u8],
    padding: SigPadding,
    input: &[u8],
    digest: bool,
    sig: &[u8],
) -> Result<bool, CryptoError> {
    let pk = public(spki)?;
    let h = padding.hash();
    let hashed = if digest {
        prehash(h, None, Some(input))?
    } else {
        prehash(h, Some(input), None)?
    };
    let r = match padding {
        SigPadding::Pss(h, salt) => with_hash!(h, D => {
            let mut p = Pss::<D>::new();
            p.salt_len = salt;
            pk.verify(p, &hashed, sig)
        }),
        SigPadding::Pkcs1v15(h) => {
            with_hash!(h, D => pk.verify(Pkcs1v15Sign::new::<D>(), &hashed, sig))
        }
    };
    Ok(r.is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::testing::TestRng;

    fn unhex(s: &str) -> Vec<u8> {
        crate::kmip::json::unhex(s).expect("test vector is hex")
    }

    #[test]
    fn generate_encode_round_trips() {
        let mut rng = TestRng(0x5eed);
        let kp = generate(2048, &mut rng).unwrap();
        assert_eq!(bits_of_private(&kp.private_pkcs8).unwrap(), 2048);
        assert_eq!(bits_of_public(&kp.public_spki).unwrap(), 2048);
        assert_eq!(public_of(&kp.private_pkcs8).unwrap(), kp.public_spki);
        let p1 = private_to_pkcs1(&kp.private_pkcs8).unwrap();
        let (bits, back) = import_private(&p1, true).unwrap();
        assert_eq!(bits, 2048);
        assert_eq!(*back.private_pkcs8, *kp.private_pkcs8);
        let q1 = public_to_pkcs1(&kp.public_spki).unwrap();
        assert_eq!(import_public(&q1, true).unwrap().1, kp.public_spki);
        assert_eq!(
            import_public(&kp.public_spki, false).unwrap().1,
            kp.public_spki
        );
        assert_eq!(
            generate(1024, &mut rng).err(),
            Some(CryptoError::Unsupported)
        );
        assert_eq!(
            import_private(b"not der", false).err(),
            Some(CryptoError::InvalidKey)
        );

        for pad in [
            EncPadding::Oaep {
                hash: HashAlg::Sha256,
                mgf: HashAlg::Sha256,
                label: None,
            },
            EncPadding::Oaep {
                hash: HashAlg::Sha1,
                mgf: HashAlg::Sha1,
                label: Some(b"label".to_vec()),
            },
            EncPadding::Oaep {
                hash: HashAlg::Sha512,
                mgf: HashAlg::Sha256,
                label: None,
            },
            EncPadding::Pkcs1v15,
        ] {
            let ct = encrypt(&kp.public_spki, &pad, b"attack at dawn", &mut rng).unwrap();
            assert_eq!(ct.len(), 256);
            let pt = decrypt(&kp.private_pkcs8, &pad, &ct, &mut rng).unwrap();
            assert_eq!(&pt[..], b"attack at dawn");
            let mut bad = ct.clone();
            bad[10] ^= 1;
            match pad {
                // Implicit rejection: some other message, never an error.
                EncPadding::Pkcs1v15 => {
                    let other = decrypt(&kp.private_pkcs8, &pad, &bad, &mut rng).unwrap();
                    assert_ne!(&other[..], b"attack at dawn");
                }
                _ => assert_eq!(
                    decrypt(&kp.private_pkcs8, &pad, &bad, &mut rng).err(),
                    Some(CryptoError::AuthenticationFailed)
                ),
            }
        }
        // A label mismatch is an OAEP failure.
        let l = |x: &[u8]| EncPadding::Oaep {
            hash: HashAlg::Sha256,
            mgf: HashAlg::Sha256,
            label: Some(x.to_vec()),
        };
        let ct = encrypt(&kp.public_spki, &l(b"a"), b"m", &mut rng).unwrap();
        assert_eq!(
            decrypt(&kp.private_pkcs8, &l(b"b"), &ct, &mut rng).err(),
            Some(CryptoError::AuthenticationFailed)
        );

        for pad in [
            SigPadding::Pss(HashAlg::Sha256, None),
            SigPadding::Pss(HashAlg::Sha512, None),
            SigPadding::Pss(HashAlg::Sha256, Some(222)),
            SigPadding::Pss(HashAlg::Sha1, Some(0)),
            SigPadding::Pkcs1v15(HashAlg::Sha256),
            SigPadding::Pkcs1v15(HashAlg::Sha384),
        ] {
            let sig = sign(&kp.private_pkcs8, pad, b"msg", false, &mut rng).unwrap();
            assert_eq!(verify(&kp.public_spki, pad, b"msg", false, &sig), Ok(true));
            assert_eq!(verify(&kp.public_spki, pad, b"msh", false, &sig), Ok(false));
            let d = mac::digest(pad.hash(), b"msg");
            assert_eq!(verify(&kp.public_spki, pad, &d, true, &sig), Ok(true));
            let sig2 = sign(&kp.private_pkcs8, pad, &d, true, &mut rng).unwrap();
            assert_eq!(verify(&kp.public_spki, pad, b"msg", false, &sig2), Ok(true));
            assert_eq!(
                sign(&kp.private_pkcs8, pad, &d[1..], true, &mut rng).err(),
                Some(CryptoError::Unsupported)
            );
        }
    }

    /// OASIS KMIP 2.1 CS-AC-M-OAEP-{2,4,6,8}-21 (published vectors: the registered key, the
    /// ciphertext and the expected plaintext; RSA-2048, OAEP with SHA-256/384/512 and MGF1).
    #[test]
    fn oasis_oaep_decrypt_vector() {
        let v: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/data/oasis-rsa-oaep.json")).unwrap();
        let mut rng = TestRng(7);
        for t in v["tests"].as_array().unwrap() {
            let (_, kp) = import_private(&unhex(t["pkcs1"].as_str().unwrap()), true).unwrap();
            let h = |n: &str| match t[n].as_str().unwrap() {
                "SHA_1" => HashAlg::Sha1,
                "SHA_256" => HashAlg::Sha256,
                "SHA_384" => HashAlg::Sha384,
                _ => HashAlg::Sha512,
            };
            let pad = EncPadding::Oaep {
                hash: h("hash"),
                mgf: h("mgf"),
                label: None,
            };
            let pt = decrypt(
                &kp.private_pkcs8,
                &pad,
                &unhex(t["ciphertext"].as_str().unwrap()),
                &mut rng,
            )
            .unwrap();
            assert_eq!(
                pt.to_vec(),
                unhex(t["plaintext"].as_str().unwrap()),
                "{}",
                t["case"]
            );
        }
    }
}
