//! Authenticated encryption with detached tags (the KMIP Encrypt/Decrypt shape: `Data`,
//! `IVCounterNonce`, `AuthenticatedEncryptionTag`).
//!
//! AES-GCM: NIST SP 800-38D; AES-GCM-SIV: RFC 8452; ChaCha20-Poly1305: RFC 8439.
//!
//! - Nonces: 96 bits everywhere by default (and the only size of AES-GCM-SIV and
//!   ChaCha20-Poly1305). AES-GCM also takes the IV lengths in [`GCM_NONCE_LENS`]: SP 800-38D
//!   §7.1 derives the pre-counter block J0 of a non-96-bit IV with GHASH, which the `aes-gcm`
//!   crate does through its `NonceSize` parameter (the OASIS case CS-BC-M-GCM-2 uses the 8- and
//!   60-byte IVs of the GCM specification's test cases).
//! - Tags: 16 bytes by default; AES-GCM and ChaCha20-Poly1305 take a `TagLength` of 12 to 16
//!   bytes ([`MIN_TAG_LEN`]: SP 800-38D §5.2.1.2 allows 128, 120, 112, 104 and 96 bits in
//!   general and 64 or 32 only for special applications (its Appendix C), which we refuse).
//!   A tag of t bytes is the first t bytes of the full tag (SP 800-38D §7.1 step 7: MSB_t).
//!   Checking a truncated tag recomputes the full one (see [`decrypt`]).

use aes_gcm::aead::consts::{U8, U12, U16, U60, U128};
use aes_gcm::aead::{AeadInOut, KeyInit};
use alloc::vec::Vec;
use zeroize::Zeroizing;

use super::CryptoError;

/// Default nonce length (96 bits) of every supported AEAD, and the one we draw.
pub const NONCE_LEN: usize = 12;
/// Full (default) tag length.
pub const TAG_LEN: usize = 16;
/// Shortest tag accepted (96 bits, SP 800-38D §5.2.1.2).
pub const MIN_TAG_LEN: usize = 12;
/// The AES-GCM IV lengths accepted (bytes). 12 is the recommended one; the others take the
/// GHASH derivation of SP 800-38D §7.1 step 2.
pub const GCM_NONCE_LENS: [usize; 5] = [8, 12, 16, 60, 128];

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

    /// Whether a tag of `len` bytes is one this construction produces and checks.
    pub fn tag_len_ok(self, len: usize) -> bool {
        match self {
            AeadAlg::AesGcmSiv => len == TAG_LEN,
            AeadAlg::AesGcm | AeadAlg::ChaCha20Poly1305 => (MIN_TAG_LEN..=TAG_LEN).contains(&len),
        }
    }

    /// Whether a nonce of `len` bytes is accepted.
    pub fn nonce_len_ok(self, len: usize) -> bool {
        match self {
            AeadAlg::AesGcm => GCM_NONCE_LENS.contains(&len),
            AeadAlg::AesGcmSiv | AeadAlg::ChaCha20Poly1305 => len == NONCE_LEN,
        }
    }
}

type Gcm<A, N> = aes_gcm::AesGcm<A, N>;

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

/// The construction for `alg` and this key and nonce length, as a pair of `seal`/`open`.
macro_rules! by_alg {
    ($alg:expr, $key:expr, $nonce:expr, $f:ident($($arg:expr),*)) => {
        match ($alg, $key.len(), $nonce.len()) {
            (AeadAlg::AesGcm, 16, 8) => $f::<Gcm<aes_gcm::aes::Aes128, U8>>($($arg),*),
            (AeadAlg::AesGcm, 16, 12) => $f::<Gcm<aes_gcm::aes::Aes128, U12>>($($arg),*),
            (AeadAlg::AesGcm, 16, 16) => $f::<Gcm<aes_gcm::aes::Aes128, U16>>($($arg),*),
            (AeadAlg::AesGcm, 16, 60) => $f::<Gcm<aes_gcm::aes::Aes128, U60>>($($arg),*),
            (AeadAlg::AesGcm, 16, 128) => $f::<Gcm<aes_gcm::aes::Aes128, U128>>($($arg),*),
            (AeadAlg::AesGcm, 24, 8) => $f::<Gcm<aes_gcm::aes::Aes192, U8>>($($arg),*),
            (AeadAlg::AesGcm, 24, 12) => $f::<Gcm<aes_gcm::aes::Aes192, U12>>($($arg),*),
            (AeadAlg::AesGcm, 24, 16) => $f::<Gcm<aes_gcm::aes::Aes192, U16>>($($arg),*),
            (AeadAlg::AesGcm, 24, 60) => $f::<Gcm<aes_gcm::aes::Aes192, U60>>($($arg),*),
            (AeadAlg::AesGcm, 24, 128) => $f::<Gcm<aes_gcm::aes::Aes192, U128>>($($arg),*),
            (AeadAlg::AesGcm, 32, 8) => $f::<Gcm<aes_gcm::aes::Aes256, U8>>($($arg),*),
            (AeadAlg::AesGcm, 32, 12) => $f::<Gcm<aes_gcm::aes::Aes256, U12>>($($arg),*),
            (AeadAlg::AesGcm, 32, 16) => $f::<Gcm<aes_gcm::aes::Aes256, U16>>($($arg),*),
            (AeadAlg::AesGcm, 32, 60) => $f::<Gcm<aes_gcm::aes::Aes256, U60>>($($arg),*),
            (AeadAlg::AesGcm, 32, 128) => $f::<Gcm<aes_gcm::aes::Aes256, U128>>($($arg),*),
            (AeadAlg::AesGcmSiv, 16, 12) => $f::<aes_gcm_siv::Aes128GcmSiv>($($arg),*),
            (AeadAlg::AesGcmSiv, 32, 12) => $f::<aes_gcm_siv::Aes256GcmSiv>($($arg),*),
            (AeadAlg::ChaCha20Poly1305, 32, 12) => {
                $f::<chacha20poly1305::ChaCha20Poly1305>($($arg),*)
            }
            (_, k, _) if !matches!(($alg, k), (AeadAlg::AesGcm, 16 | 24 | 32)
                | (AeadAlg::AesGcmSiv, 16 | 32) | (AeadAlg::ChaCha20Poly1305, 32)) => {
                Err(CryptoError::InvalidKey)
            }
            _ => Err(CryptoError::InvalidNonce),
        }
    };
}

/// Encrypt `plaintext`, returning `ciphertext` (same length) and a tag of `tag_len` bytes.
pub fn encrypt(
    alg: AeadAlg,
    key: &[u8],
    nonce: &[u8],
    aad: &[u8],
    plaintext: &[u8],
    tag_len: usize,
) -> Result<(Vec<u8>, Vec<u8>), CryptoError> {
    if !alg.nonce_len_ok(nonce.len()) {
        return Err(CryptoError::InvalidNonce);
    }
    if !alg.tag_len_ok(tag_len) {
        return Err(CryptoError::InvalidTag);
    }
    let mut buf = plaintext.to_vec();
    let tag = by_alg!(alg, key, nonce, seal(key, nonce, aad, &mut buf))?;
    Ok((
        buf,
        tag.get(..tag_len).ok_or(CryptoError::InvalidTag)?.to_vec(),
    ))
}

/// Decrypt `ciphertext` and check `tag` (12 to 16 bytes: a truncated tag is compared with the
/// same prefix of the full one). On failure no plaintext is returned.
///
/// A full tag goes through the crate's own check. A truncated one cannot (the AEAD APIs take
/// only full tags), so: both constructions encrypt by XOR with a keystream that depends only
/// on key and nonce, then authenticate the ciphertext; sealing the ciphertext therefore yields
/// the plaintext (its tag is discarded), and sealing that plaintext again yields the full tag
/// of the ciphertext, whose prefix is compared in constant time before the plaintext is
/// released.
pub fn decrypt(
    alg: AeadAlg,
    key: &[u8],
    nonce: &[u8],
    aad: &[u8],
    ciphertext: &[u8],
    tag: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    if !alg.nonce_len_ok(nonce.len()) {
        return Err(CryptoError::InvalidNonce);
    }
    if !alg.tag_len_ok(tag.len()) {
        return Err(CryptoError::InvalidTag);
    }
    let mut buf = ciphertext.to_vec();
    let r = if tag.len() == TAG_LEN {
        by_alg!(alg, key, nonce, open(key, nonce, aad, &mut buf, tag))
    } else {
        by_alg!(alg, key, nonce, seal(key, nonce, aad, &mut buf)).and_then(|_| {
            let mut again = Zeroizing::new(buf.clone());
            let full = by_alg!(alg, key, nonce, seal(key, nonce, aad, &mut again))?;
            let same = again[..] == ciphertext[..]
                && full.get(..tag.len()).is_some_and(|t| super::ct_eq(t, tag));
            if same {
                Ok(())
            } else {
                Err(CryptoError::AuthenticationFailed)
            }
        })
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
        let (ct, tag) = encrypt(AeadAlg::AesGcm, &key, &iv, &[], &[], 16).unwrap();
        assert!(ct.is_empty());
        assert_eq!(tag.to_vec(), unhex("bdc1ac884d332457a1d2664f168c76f0"));
    }

    /// The GCM specification's test cases 1-18 (AES-128/192/256, 96-, 64- and 480-bit IVs:
    /// the non-96-bit ones take the GHASH J0 of SP 800-38D §7.1) and four truncated tags
    /// (120 to 96 bits); source in the vector file. Each one encrypts to the published
    /// ciphertext and tag, decrypts back, and a flipped tag bit or ciphertext bit fails.
    #[test]
    fn gcm_spec_vectors_other_ivs_and_truncated_tags() {
        let v: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/data/gcm-spec-vectors.json")).unwrap();
        let mut ivs = alloc::collections::BTreeSet::new();
        let mut tags = alloc::collections::BTreeSet::new();
        for t in v["tests"].as_array().unwrap() {
            let h = |k: &str| unhex(t[k].as_str().unwrap());
            let (key, iv, pt, aad, ct, tag) =
                (h("key"), h("iv"), h("pt"), h("aad"), h("ct"), h("tag"));
            let tl = usize::try_from(t["tag_len"].as_u64().unwrap()).unwrap();
            let (c, g) = encrypt(AeadAlg::AesGcm, &key, &iv, &aad, &pt, tl).unwrap();
            assert_eq!((&c, &g), (&ct, &tag), "{t}");
            assert_eq!(
                decrypt(AeadAlg::AesGcm, &key, &iv, &aad, &ct, &tag).unwrap(),
                pt
            );
            let mut bad = tag.clone();
            bad[tl - 1] ^= 1;
            assert_eq!(
                decrypt(AeadAlg::AesGcm, &key, &iv, &aad, &ct, &bad),
                Err(CryptoError::AuthenticationFailed)
            );
            if !ct.is_empty() {
                let mut bad = ct.clone();
                bad[0] ^= 0x80;
                assert_eq!(
                    decrypt(AeadAlg::AesGcm, &key, &iv, &aad, &bad, &tag),
                    Err(CryptoError::AuthenticationFailed)
                );
            }
            ivs.insert(iv.len());
            tags.insert(tl);
        }
        assert_eq!(ivs.into_iter().collect::<Vec<_>>(), [8, 12, 60]);
        assert_eq!(tags.into_iter().collect::<Vec<_>>(), [12, 13, 14, 15, 16]);
    }

    /// RFC 8439 §2.8.2: the AEAD example (its tag 1ae10b594f09e26a7e902ecbd0600691), then the
    /// same tag truncated to 12 bytes, which checks; a wrong byte in the truncated tag fails.
    #[test]
    fn chacha20poly1305_rfc8439_and_truncated_tag() {
        let key = unhex("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f");
        let nonce = unhex("070000004041424344454647");
        let aad = unhex("50515253c0c1c2c3c4c5c6c7");
        let pt = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
        let alg = AeadAlg::ChaCha20Poly1305;
        let (ct, tag) = encrypt(alg, &key, &nonce, &aad, pt, 16).unwrap();
        assert_eq!(tag, unhex("1ae10b594f09e26a7e902ecbd0600691"));
        let expected = unhex(concat!(
            "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6",
            "3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36",
            "92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc",
            "3ff4def08e4b7a9de576d26586cec64b6116",
        ));
        assert_eq!(ct, expected);
        assert_eq!(
            decrypt(alg, &key, &nonce, &aad, &ct, &tag[..12]).unwrap(),
            pt
        );
        let (_, short) = encrypt(alg, &key, &nonce, &aad, pt, 12).unwrap();
        assert_eq!(short, tag[..12]);
        let mut bad = tag[..12].to_vec();
        bad[11] ^= 1;
        assert_eq!(
            decrypt(alg, &key, &nonce, &aad, &ct, &bad),
            Err(CryptoError::AuthenticationFailed)
        );
    }

    #[test]
    fn tag_and_nonce_lengths_refused() {
        let key = [0u8; 16];
        for tl in [0, 4, 8, 11, 17, 32] {
            assert_eq!(
                encrypt(AeadAlg::AesGcm, &key, &[0; 12], &[], b"x", tl).unwrap_err(),
                CryptoError::InvalidTag
            );
        }
        assert_eq!(
            encrypt(AeadAlg::AesGcmSiv, &key, &[0; 12], &[], b"x", 12).unwrap_err(),
            CryptoError::InvalidTag
        );
        assert_eq!(
            decrypt(AeadAlg::AesGcm, &key, &[0; 12], &[], b"x", &[0; 8]).unwrap_err(),
            CryptoError::InvalidTag
        );
        for n in [0, 1, 7, 11, 13, 61] {
            assert_eq!(
                encrypt(AeadAlg::AesGcm, &key, &alloc::vec![0; n], &[], b"x", 16).unwrap_err(),
                CryptoError::InvalidNonce
            );
        }
        assert_eq!(
            encrypt(AeadAlg::ChaCha20Poly1305, &[0; 32], &[0; 8], &[], b"x", 16).unwrap_err(),
            CryptoError::InvalidNonce
        );
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
            let (ct, tag) = encrypt(alg, &key, &nonce, b"ad", b"hello world", 16).unwrap();
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
            encrypt(AeadAlg::ChaCha20Poly1305, &[0; 16], &[0; 12], &[], b"x", 16).unwrap_err(),
            CryptoError::InvalidKey
        );
        assert_eq!(
            encrypt(AeadAlg::AesGcm, &[0; 16], &[0; 9], &[], b"x", 16).unwrap_err(),
            CryptoError::InvalidNonce
        );
    }
}
