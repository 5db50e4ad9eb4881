//! Authenticated encryption with detached tags (the KMIP Encrypt/Decrypt shape: `Data`,
//! `IVCounterNonce`, `AuthenticatedEncryptionTag`).
//!
//! AES-GCM: NIST SP 800-38D; AES-GCM-SIV: RFC 8452; ChaCha20-Poly1305: RFC 8439. All three
//! use 96-bit nonces and 128-bit tags here.

use aes_gcm::aead::{AeadInOut, KeyInit};
use alloc::vec::Vec;

use super::CryptoError;

/// Nonce length of every supported AEAD.
pub const NONCE_LEN: usize = 12;
/// Tag length of every supported AEAD.
pub const TAG_LEN: usize = 16;

/// The AEAD constructions the KMS offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AeadAlg {
    /// AES-GCM with a 128-, 192- or 256-bit key.
    AesGcm,
    /// AES-GCM-SIV with a 128- or 256-bit key (nonce-misuse resistant).
    AesGcmSiv,
    /// ChaCha20-Poly1305 with a 256-bit key.
    ChaCha20Poly1305,
}

impl AeadAlg {
    /// Whether encrypting twice under one (key, nonce) pair keeps confidentiality (RFC 8452:
    /// it reveals only that the two plaintexts are equal). AES-GCM and ChaCha20-Poly1305 lose
    /// it: the XOR of the two plaintexts leaks, and the authentication key with it.
    pub fn nonce_misuse_resistant(self) -> bool {
        matches!(self, AeadAlg::AesGcmSiv)
    }
}

type Aes192Gcm = aes_gcm::AesGcm<aes_gcm::aes::Aes192, aes_gcm::aead::consts::U12>;

fn seal<C: AeadInOut + KeyInit>(
    key: &[u8],
    nonce: &[u8],
    aad: &[u8],
    data: &mut [u8],
) -> Result<[u8; TAG_LEN], CryptoError> {
    let cipher = C::new_from_slice(key).map_err(|_| CryptoError::InvalidKey)?;
    let nonce =
        aes_gcm::aead::Nonce::<C>::try_from(nonce).map_err(|_| CryptoError::InvalidNonce)?;
    let tag = cipher
        .encrypt_inout_detached(&nonce, aad, data.into())
        .map_err(|_| CryptoError::Unsupported)?;
    let mut out = [0u8; TAG_LEN];
    if tag.len() != TAG_LEN {
        return Err(CryptoError::InvalidTag);
    }
    out.copy_from_slice(&tag);
    Ok(out)
}

fn open<C: AeadInOut + KeyInit>(
    key: &[u8],
    nonce: &[u8],
    aad: &[u8],
    data: &mut [u8],
    tag: &[u8],
) -> Result<(), CryptoError> {
    let cipher = C::new_from_slice(key).map_err(|_| CryptoError::InvalidKey)?;
    let nonce =
        aes_gcm::aead::Nonce::<C>::try_from(nonce).map_err(|_| CryptoError::InvalidNonce)?;
    let tag = aes_gcm::aead::Tag::<C>::try_from(tag).map_err(|_| CryptoError::InvalidTag)?;
    cipher
        .decrypt_inout_detached(&nonce, aad, data.into(), &tag)
        .map_err(|_| CryptoError::AuthenticationFailed)
}

/// Encrypt `plaintext`, returning `ciphertext` (same length) and the tag.
pub fn encrypt(
    alg: AeadAlg,
    key: &[u8],
    nonce: &[u8],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<(Vec<u8>, [u8; TAG_LEN]), CryptoError> {
    if nonce.len() != NONCE_LEN {
        return Err(CryptoError::InvalidNonce);
    }
    let mut buf = plaintext.to_vec();
    let tag = match (alg, key.len()) {
        (AeadAlg::AesGcm, 16) => seal::<aes_gcm::Aes128Gcm>(key, nonce, aad, &mut buf),
        (AeadAlg::AesGcm, 24) => seal::<Aes192Gcm>(key, nonce, aad, &mut buf),
        (AeadAlg::AesGcm, 32) => seal::<aes_gcm::Aes256Gcm>(key, nonce, aad, &mut buf),
        (AeadAlg::AesGcmSiv, 16) => seal::<aes_gcm_siv::Aes128GcmSiv>(key, nonce, aad, &mut buf),
        (AeadAlg::AesGcmSiv, 32) => seal::<aes_gcm_siv::Aes256GcmSiv>(key, nonce, aad, &mut buf),
        (AeadAlg::ChaCha20Poly1305, 32) => {
            seal::<chacha20poly1305::ChaCha20Poly1305>(key, nonce, aad, &mut buf)
        }
        _ => Err(CryptoError::InvalidKey),
    }?;
    Ok((buf, tag))
}

/// Decrypt `ciphertext` and check `tag`. On failure no plaintext is returned.
pub fn decrypt(
    alg: AeadAlg,
    key: &[u8],
    nonce: &[u8],
    aad: &[u8],
    ciphertext: &[u8],
    tag: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    if nonce.len() != NONCE_LEN {
        return Err(CryptoError::InvalidNonce);
    }
    if tag.len() != TAG_LEN {
        return Err(CryptoError::InvalidTag);
    }
    let mut buf = ciphertext.to_vec();
    let r = match (alg, key.len()) {
        (AeadAlg::AesGcm, 16) => open::<aes_gcm::Aes128Gcm>(key, nonce, aad, &mut buf, tag),
        (AeadAlg::AesGcm, 24) => open::<Aes192Gcm>(key, nonce, aad, &mut buf, tag),
        (AeadAlg::AesGcm, 32) => open::<aes_gcm::Aes256Gcm>(key, nonce, aad, &mut buf, tag),
        (AeadAlg::AesGcmSiv, 16) => {
            open::<aes_gcm_siv::Aes128GcmSiv>(key, nonce, aad, &mut buf, tag)
        }
        (AeadAlg::AesGcmSiv, 32) => {
            open::<aes_gcm_siv::Aes256GcmSiv>(key, nonce, aad, &mut buf, tag)
        }
        (AeadAlg::ChaCha20Poly1305, 32) => {
            open::<chacha20poly1305::ChaCha20Poly1305>(key, nonce, aad, &mut buf, tag)
        }
        _ => Err(CryptoError::InvalidKey),
    };
    match r {
        Ok(()) => Ok(buf),
        Err(e) => {
            crate::store::wipe(&mut buf);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        crate::kmip::json::unhex(s).expect("test vector is hex")
    }

    #[test]
    fn aes_gcm_nist_vector() {
        // NIST GCM test vector (gcmEncryptExtIV256.rsp, Count = 0 with PT/AAD), AES-256.
        let key = unhex("b52c505a37d78eda5dd34f20c22540ea1b58963cf8e5bf8ffa85f9f2492505b4");
        let iv = unhex("516c33929df5a3284ff463d7");
        let (ct, tag) = encrypt(AeadAlg::AesGcm, &key, &iv, &[], &[]).unwrap();
        assert!(ct.is_empty());
        assert_eq!(tag.to_vec(), unhex("bdc1ac884d332457a1d2664f168c76f0"));
    }

    #[test]
    fn round_trips_and_rejects_tampering() {
        for (alg, klen) in [
            (AeadAlg::AesGcm, 16),
            (AeadAlg::AesGcm, 24),
            (AeadAlg::AesGcm, 32),
            (AeadAlg::AesGcmSiv, 16),
            (AeadAlg::AesGcmSiv, 32),
            (AeadAlg::ChaCha20Poly1305, 32),
        ] {
            let key = alloc::vec![7u8; klen];
            let nonce = [9u8; 12];
            let (ct, tag) = encrypt(alg, &key, &nonce, b"ad", b"hello world").unwrap();
            assert_ne!(&ct[..], b"hello world");
            let pt = decrypt(alg, &key, &nonce, b"ad", &ct, &tag).unwrap();
            assert_eq!(pt, b"hello world");
            let mut bad = ct.clone();
            bad[0] ^= 1;
            assert_eq!(
                decrypt(alg, &key, &nonce, b"ad", &bad, &tag),
                Err(CryptoError::AuthenticationFailed)
            );
            assert_eq!(
                decrypt(alg, &key, &nonce, b"other", &ct, &tag),
                Err(CryptoError::AuthenticationFailed)
            );
        }
        assert_eq!(
            encrypt(AeadAlg::ChaCha20Poly1305, &[0; 16], &[0; 12], &[], b"x").unwrap_err(),
            CryptoError::InvalidKey
        );
        assert_eq!(
            encrypt(AeadAlg::AesGcm, &[0; 16], &[0; 8], &[], b"x").unwrap_err(),
            CryptoError::InvalidNonce
        );
    }
}
