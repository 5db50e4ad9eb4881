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

/// Key sizes the KMS generates.
pub const SIZES: [usize; 3] = [2048, 3072, 4096];

/// Key sizes Register/Import accept: legacy 1024-bit keys (the OASIS KMIP test cases register
/// them) can be stored and exported, but every operation needs [`MIN_OPERATION_BITS`].
pub const IMPORT_BITS: core::ops::RangeInclusive<usize> = 1024..=4096;

/// The smallest key encrypt, decrypt, sign and verify use (NIST SP 800-131A: 2048 bits).
pub const MIN_OPERATION_BITS: usize = 2048;

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

fn check_import_size(bits: usize) -> Result<(), CryptoError> {
    if IMPORT_BITS.contains(&bits) {
        Ok(())
    } else {
        Err(CryptoError::Unsupported)
    }
}

fn check_operation_size(bits: usize) -> Result<(), CryptoError> {
    if bits < MIN_OPERATION_BITS {
        Err(CryptoError::KeyTooShort)
    } else {
        Ok(())
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

/// A private key for an operation: refused below [`MIN_OPERATION_BITS`].
fn operation_private(pkcs8: &[u8]) -> Result<PrivateKey, CryptoError> {
    let sk = private(pkcs8)?;
    check_operation_size(sk.size() * 8)?;
    Ok(sk)
}

/// A public key for an operation: refused below [`MIN_OPERATION_BITS`].
fn operation_public(spki: &[u8]) -> Result<PublicKey, CryptoError> {
    let pk = public(spki)?;
    check_operation_size(pk.size() * 8)?;
    Ok(pk)
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
/// checked (consistent CRT values, a size in [`IMPORT_BITS`]).
pub fn import_private(der: &[u8], pkcs1: bool) -> Result<(usize, KeyPair), CryptoError> {
    let sk = if pkcs1 {
        PrivateKey::from_pkcs1_der(der).map_err(|_| CryptoError::InvalidKey)?
    } else {
        PrivateKey::from_pkcs8_der(der).map_err(|_| CryptoError::InvalidKey)?
    };
    sk.validate().map_err(|_| CryptoError::InvalidKey)?;
    let bits = sk.size() * 8;
    check_import_size(bits)?;
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
    check_import_size(bits)?;
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

/// The fields of a Transparent RSA Private Key (KMIP 2.1 §2.1.7.5), in its table order.
const PRIVATE_FIELDS: usize = 8;

fn uint(v: &[u8], bits: usize) -> Result<rsa::BoxedUint, CryptoError> {
    let bits = u32::try_from(bits).map_err(|_| CryptoError::InvalidKey)?;
    rsa::BoxedUint::from_be_slice(v, bits).map_err(|_| CryptoError::InvalidKey)
}

/// The eight fields (Modulus, PrivateExponent, PublicExponent, P, Q, PrimeExponentP,
/// PrimeExponentQ, CRTCoefficient) of a PKCS#1 `RSAPrivateKey`, as big-endian magnitudes.
fn pkcs1_fields(pkcs1: &[u8]) -> Result<Zeroizing<Vec<Vec<u8>>>, CryptoError> {
    use rsa::pkcs1::der::Decode;
    let k = rsa::pkcs1::RsaPrivateKeyRef::from_der(pkcs1).map_err(|_| CryptoError::Encoding)?;
    Ok(Zeroizing::new(
        [
            k.modulus,
            k.private_exponent,
            k.public_exponent,
            k.prime1,
            k.prime2,
            k.exponent1,
            k.exponent2,
            k.coefficient,
        ]
        .iter()
        .map(|u| u.as_bytes().to_vec())
        .collect(),
    ))
}

/// The Transparent RSA Private Key fields (KMIP 2.1 §2.1.7.5, all eight, in its table
/// order) of a canonical private key.
pub fn private_fields(pkcs8: &[u8]) -> Result<Zeroizing<Vec<Vec<u8>>>, CryptoError> {
    pkcs1_fields(&private_to_pkcs1(pkcs8)?)
}

/// The (Modulus, PublicExponent) of an SPKI public key.
pub fn public_fields(spki: &[u8]) -> Result<(Vec<u8>, Vec<u8>), CryptoError> {
    use rsa::pkcs1::der::Decode;
    let der = public_to_pkcs1(spki)?;
    let k = rsa::pkcs1::RsaPublicKeyRef::from_der(&der).map_err(|_| CryptoError::Encoding)?;
    Ok((
        k.modulus.as_bytes().to_vec(),
        k.public_exponent.as_bytes().to_vec(),
    ))
}

/// A public key from its Modulus and PublicExponent (magnitudes), as canonical SPKI.
pub fn import_public_fields(n: &[u8], e: &[u8]) -> Result<(usize, Vec<u8>), CryptoError> {
    let pk = PublicKey::new(uint(n, n.len() * 8)?, uint(e, e.len() * 8)?)
        .map_err(|_| CryptoError::InvalidKey)?;
    let bits = pk.size() * 8;
    check_import_size(bits)?;
    let spki = pk.to_public_key_der().map_err(|_| CryptoError::Encoding)?;
    Ok((bits, spki.as_bytes().to_vec()))
}

/// A private key from Transparent RSA Private Key fields (magnitudes, `None` = absent, in the
/// order of [`private_fields`]). Modulus and PublicExponent are needed, and P and Q or the
/// PrivateExponent (the primes are then recovered, NIST SP 800-56B Appendix C.2); every field
/// given must equal the one of the key they define (a wrong CRT exponent or coefficient is
/// [`CryptoError::InvalidKey`], compared in constant time).
pub fn import_private_fields(f: &[Option<&[u8]>]) -> Result<(usize, KeyPair), CryptoError> {
    if f.len() != PRIVATE_FIELDS {
        return Err(CryptoError::InvalidKey);
    }
    let get = |i: usize| f.get(i).copied().flatten();
    let n = get(0).ok_or(CryptoError::InvalidKey)?;
    let e = get(2).ok_or(CryptoError::InvalidKey)?;
    let bits = n.len() * 8;
    let e_uint = uint(e, e.len() * 8)?;
    let sk = match (get(1), get(3), get(4)) {
        (Some(d), Some(p), Some(q)) => PrivateKey::from_components(
            uint(n, bits)?,
            e_uint,
            uint(d, bits)?,
            alloc::vec![uint(p, bits)?, uint(q, bits)?],
        ),
        (None, Some(p), Some(q)) => PrivateKey::from_p_q(uint(p, bits)?, uint(q, bits)?, e_uint),
        (Some(d), None, None) => {
            PrivateKey::from_components(uint(n, bits)?, e_uint, uint(d, bits)?, Vec::new())
        }
        _ => return Err(CryptoError::InvalidKey),
    }
    .map_err(|_| CryptoError::InvalidKey)?;
    sk.validate().map_err(|_| CryptoError::InvalidKey)?;
    let bits = sk.size() * 8;
    check_import_size(bits)?;
    let pkcs1 = Zeroizing::new(
        sk.to_pkcs1_der()
            .map_err(|_| CryptoError::Encoding)?
            .as_bytes()
            .to_vec(),
    );
    let have = pkcs1_fields(&pkcs1)?;
    let mut same = subtle::Choice::from(1u8);
    for (given, ours) in f.iter().zip(have.iter()) {
        if let Some(g) = given {
            let start = g.iter().position(|b| *b != 0).unwrap_or(g.len());
            same &= subtle::ConstantTimeEq::ct_eq(g.get(start..).unwrap_or(&[]), &ours[..]);
        }
    }
    if !bool::from(same) {
        return Err(CryptoError::InvalidKey);
    }
    Ok((bits, pair(&sk)?))
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
    let pk = operation_public(spki)?;
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
    let sk = operation_private(pkcs8)?;
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
/// length, `c >= n`). It costs a second private operation: `scripts/bench-rsa` measured an OAEP
/// decryption at 2.2x the crate's alone (RSA-2048, per CPU second). The crate's API offers no way around it:
/// its OAEP decoding (`oaep_decrypt`) is private and always follows its own private operation,
/// and the hazmat module gives the raw operation only, so a one-operation check would mean
/// decoding OAEP here by hand.
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
    let sk = operation_private(pkcs8)?;
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
    let pk = operation_public(spki)?;
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

    /// The `value` of the first `<tag type=...` element of an OASIS test case (hex).
    fn case_value(xml: &str, tag: &str) -> Vec<u8> {
        let start = xml
            .find(&alloc::format!("<{tag} type="))
            .expect("tag in case");
        let v = &xml[start..];
        let v = &v[v.find("value=\"").unwrap() + 7..];
        unhex(&v[..v.find('"').unwrap()])
    }

    fn strip(v: &[u8]) -> &[u8] {
        &v[v.iter().position(|b| *b != 0).unwrap_or(v.len())..]
    }

    /// The 1024-bit RSA key OASIS KMIP 2.1 BL-M-7-21 registers as PKCS#1 and BL-M-9-21 as
    /// Transparent fields (no CRTCoefficient): both give the same key, and every conversion
    /// (PKCS#1 <-> PKCS#8 <-> Transparent) round-trips. The key is stored but not usable.
    #[test]
    fn oasis_1024_bit_key_pkcs1_and_transparent_agree() {
        let m7 = include_str!("../../../conformance/cases/kmip-2.1/mandatory/BL-M-7-21.xml");
        let m9 = include_str!("../../../conformance/cases/kmip-2.1/mandatory/BL-M-9-21.xml");
        let m11 = include_str!("../../../conformance/cases/kmip-2.1/mandatory/BL-M-11-21.xml");
        let (bits, from_pkcs1) = import_private(&case_value(m7, "KeyMaterial"), true).unwrap();
        assert_eq!(bits, 1024);
        let (_, from_pkcs8) = import_private(&case_value(m11, "KeyMaterial"), false).unwrap();
        assert_eq!(bits_of_private(&from_pkcs8.private_pkcs8).unwrap(), 1024);

        let tags = [
            "Modulus",
            "PrivateExponent",
            "PublicExponent",
            "P",
            "Q",
            "PrimeExponentP",
            "PrimeExponentQ",
        ];
        let given: Vec<Vec<u8>> = tags.iter().map(|t| case_value(m9, t)).collect();
        let mut f: Vec<Option<&[u8]>> = given.iter().map(|v| Some(strip(v))).collect();
        f.push(None); // BL-M-9 sends no CRTCoefficient.
        let (bits, from_fields) = import_private_fields(&f).unwrap();
        assert_eq!(bits, 1024);
        assert_eq!(*from_fields.private_pkcs8, *from_pkcs1.private_pkcs8);

        // Export as Transparent: the seven fields given, plus the computed coefficient.
        let out = private_fields(&from_fields.private_pkcs8).unwrap();
        assert_eq!(out.len(), 8);
        for (i, g) in given.iter().enumerate() {
            assert_eq!(out[i], strip(g), "{}", tags[i]);
        }
        let all: Vec<Option<&[u8]>> = out.iter().map(|v| Some(v.as_slice())).collect();
        assert_eq!(
            *import_private_fields(&all).unwrap().1.private_pkcs8,
            *from_pkcs1.private_pkcs8
        );
        // n, e and d alone: the primes are recovered (SP 800-56B C.2).
        let ned = [all[0], all[1], all[2], None, None, None, None, None];
        assert_eq!(
            *import_private_fields(&ned).unwrap().1.private_pkcs8,
            *from_pkcs1.private_pkcs8
        );
        let pq = [all[0], None, all[2], all[3], all[4], None, None, None];
        assert!(import_private_fields(&pq).is_ok());

        // Public half: Modulus and PublicExponent round trip through SPKI.
        let spki = public_of(&from_fields.private_pkcs8).unwrap();
        let (n, e) = public_fields(&spki).unwrap();
        assert_eq!(
            (n.as_slice(), e.as_slice()),
            (strip(&given[0]), strip(&given[2]))
        );
        assert_eq!(import_public_fields(&n, &e).unwrap(), (1024, spki.clone()));

        // Stored, exported, but refused for every operation.
        let mut rng = TestRng(3);
        let pad = SigPadding::Pkcs1v15(HashAlg::Sha256);
        assert_eq!(
            sign(&from_fields.private_pkcs8, pad, b"m", false, &mut rng).err(),
            Some(CryptoError::KeyTooShort)
        );
        assert_eq!(
            verify(&spki, pad, b"m", false, &[0u8; 128]).err(),
            Some(CryptoError::KeyTooShort)
        );
        assert_eq!(
            encrypt(&spki, &EncPadding::Pkcs1v15, b"m", &mut rng).err(),
            Some(CryptoError::KeyTooShort)
        );
        assert_eq!(
            decrypt(
                &from_fields.private_pkcs8,
                &EncPadding::Pkcs1v15,
                &[1u8; 128],
                &mut rng
            )
            .err(),
            Some(CryptoError::KeyTooShort)
        );
    }

    #[test]
    fn inconsistent_transparent_fields_are_refused() {
        let mut rng = TestRng(0x7a);
        let kp = generate(2048, &mut rng).unwrap();
        let out = private_fields(&kp.private_pkcs8).unwrap();
        let all: Vec<Option<&[u8]>> = out.iter().map(|v| Some(v.as_slice())).collect();
        assert_eq!(
            *import_private_fields(&all).unwrap().1.private_pkcs8,
            *kp.private_pkcs8
        );
        // Each field changed by one bit: refused (wrong CRT value, n != p*q, d*e != 1, ...).
        for i in 0..8 {
            let mut bad = out[i].clone();
            let last = bad.len() - 1;
            bad[last] ^= 0x02;
            let mut f = all.clone();
            f[i] = Some(&bad);
            assert_eq!(
                import_private_fields(&f).err(),
                Some(CryptoError::InvalidKey),
                "field {i}"
            );
        }
        // Missing the public exponent, or both d and the primes.
        let mut f = all.clone();
        f[2] = None;
        assert_eq!(
            import_private_fields(&f).err(),
            Some(CryptoError::InvalidKey)
        );
        let only_n = [all[0], None, all[2], None, None, None, None, None];
        assert_eq!(
            import_private_fields(&only_n).err(),
            Some(CryptoError::InvalidKey)
        );
        assert_eq!(
            import_private_fields(&all[..7]).err(),
            Some(CryptoError::InvalidKey)
        );
        // A 512-bit modulus is below what the crate takes at all.
        assert_eq!(
            import_public_fields(&[0xC5; 64], &[1, 0, 1]).err(),
            Some(CryptoError::InvalidKey)
        );
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
