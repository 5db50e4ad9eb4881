//! Symmetric key wrapping: AES Key Wrap (RFC 3394 / NIST SP 800-38F KW), AES Key Wrap with
//! Padding (RFC 5649 / KWP), both from RustCrypto `aes-kw`, and AES-GCM wrapping in the Cosmian
//! KMS's layout (`nonce (12) ‖ ciphertext ‖ tag (16)`, no associated data).
//!
//! RSA-OAEP wrapping is [`super::rsa::encrypt`] / [`super::rsa::decrypt`] with
//! [`super::rsa::EncPadding::Oaep`]; the service picks between the two by the wrapping key.

use aes_kw::KeyInit;
use alloc::vec::Vec;
use zeroize::Zeroizing;

use super::aead::{self, AeadAlg, NONCE_LEN, TAG_LEN};
use super::{CryptoError, Random};

/// The symmetric wrapping constructions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WrapAlg {
    /// RFC 3394 AES Key Wrap: the key is a whole number of 8-byte blocks, at least 16 bytes.
    AesKw,
    /// RFC 5649 AES Key Wrap with Padding: any key of 1 byte or more.
    AesKwp,
    /// AES-GCM with a random 96-bit nonce: `nonce ‖ ciphertext ‖ tag`.
    AesGcm,
}

/// The 8-byte semiblock both AES-KW variants add.
const KW_OVERHEAD: usize = aes_kw::IV_LEN;

fn kw_error(e: aes_kw::Error) -> CryptoError {
    match e {
        aes_kw::Error::IntegrityCheckFailed => CryptoError::AuthenticationFailed,
        _ => CryptoError::InvalidLength,
    }
}

macro_rules! with_kek {
    ($kek:expr, $ty128:ty, $ty192:ty, $ty256:ty, $k:ident => $body:expr) => {
        match $kek.len() {
            16 => {
                let $k = <$ty128>::new_from_slice($kek).map_err(|_| CryptoError::InvalidKey)?;
                $body
            }
            24 => {
                let $k = <$ty192>::new_from_slice($kek).map_err(|_| CryptoError::InvalidKey)?;
                $body
            }
            32 => {
                let $k = <$ty256>::new_from_slice($kek).map_err(|_| CryptoError::InvalidKey)?;
                $body
            }
            _ => Err(CryptoError::InvalidKey),
        }
    };
}

/// Wrap `key` under the AES key-encryption key `kek` (16, 24 or 32 bytes).
pub fn wrap(
    alg: WrapAlg,
    kek: &[u8],
    key: &[u8],
    rng: &mut dyn Random,
) -> Result<Vec<u8>, CryptoError> {
    match alg {
        WrapAlg::AesKw => {
            // RFC 3394 §2: n >= 2 semiblocks.
            if key.len() < 16 || !key.len().is_multiple_of(KW_OVERHEAD) {
                return Err(CryptoError::InvalidLength);
            }
            let mut out = alloc::vec![0u8; key.len() + KW_OVERHEAD];
            with_kek!(kek, aes_kw::KwAes128, aes_kw::KwAes192, aes_kw::KwAes256, k => {
                k.wrap_key(key, &mut out).map(|_| ()).map_err(kw_error)
            })?;
            Ok(out)
        }
        WrapAlg::AesKwp => {
            if key.is_empty() {
                return Err(CryptoError::InvalidLength);
            }
            let padded = key.len().div_ceil(KW_OVERHEAD) * KW_OVERHEAD;
            let mut out = alloc::vec![0u8; padded + KW_OVERHEAD];
            with_kek!(kek, aes_kw::KwpAes128, aes_kw::KwpAes192, aes_kw::KwpAes256, k => {
                k.wrap_key(key, &mut out).map(|_| ()).map_err(kw_error)
            })?;
            Ok(out)
        }
        WrapAlg::AesGcm => {
            if !matches!(kek.len(), 16 | 24 | 32) {
                return Err(CryptoError::InvalidKey);
            }
            let mut nonce = [0u8; NONCE_LEN];
            rng.fill(&mut nonce)?;
            let (ct, tag) = aead::encrypt(AeadAlg::AesGcm, kek, &nonce, &[], key, TAG_LEN)?;
            let mut out = Vec::with_capacity(NONCE_LEN + ct.len() + TAG_LEN);
            out.extend_from_slice(&nonce);
            out.extend_from_slice(&ct);
            out.extend_from_slice(&tag);
            Ok(out)
        }
    }
}

/// Unwrap `wrapped` under `kek`. Any integrity failure is
/// [`CryptoError::AuthenticationFailed`]; no partial plaintext is returned.
pub fn unwrap(alg: WrapAlg, kek: &[u8], wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    match alg {
        WrapAlg::AesKw => {
            if wrapped.len() < 24 || !wrapped.len().is_multiple_of(KW_OVERHEAD) {
                return Err(CryptoError::InvalidLength);
            }
            let mut out = Zeroizing::new(alloc::vec![0u8; wrapped.len() - KW_OVERHEAD]);
            with_kek!(kek, aes_kw::KwAes128, aes_kw::KwAes192, aes_kw::KwAes256, k => {
                k.unwrap_key(wrapped, &mut out).map(|_| ()).map_err(kw_error)
            })?;
            Ok(out)
        }
        WrapAlg::AesKwp => {
            if wrapped.len() < 16 || !wrapped.len().is_multiple_of(KW_OVERHEAD) {
                return Err(CryptoError::InvalidLength);
            }
            let mut out = Zeroizing::new(alloc::vec![0u8; wrapped.len() - KW_OVERHEAD]);
            let n = with_kek!(kek, aes_kw::KwpAes128, aes_kw::KwpAes192, aes_kw::KwpAes256, k => {
                k.unwrap_key(wrapped, &mut out).map(<[u8]>::len).map_err(kw_error)
            })?;
            out.truncate(n);
            Ok(out)
        }
        WrapAlg::AesGcm => {
            let body_len = wrapped
                .len()
                .checked_sub(NONCE_LEN + TAG_LEN)
                .ok_or(CryptoError::InvalidLength)?;
            let (nonce, rest) = wrapped.split_at(NONCE_LEN);
            let (ct, tag) = rest.split_at(body_len);
            aead::decrypt(AeadAlg::AesGcm, kek, nonce, &[], ct, tag).map(Zeroizing::new)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::testing::TestRng;
    use alloc::string::String;

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    /// (section, KEK, key, wrapped key).
    type Vector = (String, Vec<u8>, Vec<u8>, Vec<u8>);

    fn vectors(kind: &str) -> Vec<Vector> {
        let v: serde_json::Value = serde_json::from_str(include_str!(
            "../../tests/data/rfc3394-rfc5649-keywrap.json"
        ))
        .unwrap();
        v[kind]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["section"].as_str().unwrap().into(),
                    unhex(t["kek"].as_str().unwrap()),
                    unhex(t["key"].as_str().unwrap()),
                    unhex(t["wrapped"].as_str().unwrap()),
                )
            })
            .collect()
    }

    #[test]
    fn rfc3394_vectors_wrap_and_unwrap() {
        let cases = vectors("kw");
        assert_eq!(cases.len(), 6);
        for (s, kek, key, wrapped) in cases {
            let got = wrap(WrapAlg::AesKw, &kek, &key, &mut TestRng(1)).unwrap();
            assert_eq!(got, wrapped, "RFC 3394 {s}");
            let back = unwrap(WrapAlg::AesKw, &kek, &wrapped).unwrap();
            assert_eq!(&back[..], &key[..], "RFC 3394 {s}");
        }
    }

    #[test]
    fn rfc5649_vectors_wrap_and_unwrap() {
        let cases = vectors("kwp");
        assert_eq!(cases.len(), 2);
        for (s, kek, key, wrapped) in cases {
            let got = wrap(WrapAlg::AesKwp, &kek, &key, &mut TestRng(1)).unwrap();
            assert_eq!(got, wrapped, "RFC 5649 {s}");
            let back = unwrap(WrapAlg::AesKwp, &kek, &wrapped).unwrap();
            assert_eq!(&back[..], &key[..], "RFC 5649 {s}");
        }
    }

    #[test]
    fn tampered_wraps_fail_integrity() {
        for (_, kek, _, mut wrapped) in vectors("kw") {
            wrapped[3] ^= 1;
            assert_eq!(
                unwrap(WrapAlg::AesKw, &kek, &wrapped),
                Err(CryptoError::AuthenticationFailed)
            );
        }
        for (_, kek, _, mut wrapped) in vectors("kwp") {
            let last = wrapped.len() - 1;
            wrapped[last] ^= 0x80;
            assert_eq!(
                unwrap(WrapAlg::AesKwp, &kek, &wrapped),
                Err(CryptoError::AuthenticationFailed)
            );
        }
        // A KW ciphertext is not a KWP one (different integrity check value).
        let (_, kek, _, wrapped) = vectors("kw").remove(2);
        assert_eq!(
            unwrap(WrapAlg::AesKwp, &kek, &wrapped),
            Err(CryptoError::AuthenticationFailed)
        );
    }

    #[test]
    fn bad_lengths_are_refused() {
        let kek = [7u8; 32];
        let rng = &mut TestRng(2);
        // RFC 3394 needs >= 2 semiblocks.
        assert_eq!(
            wrap(WrapAlg::AesKw, &kek, &[1u8; 8], rng),
            Err(CryptoError::InvalidLength)
        );
        assert_eq!(
            wrap(WrapAlg::AesKw, &kek, &[1u8; 20], rng),
            Err(CryptoError::InvalidLength)
        );
        assert_eq!(
            wrap(WrapAlg::AesKwp, &kek, &[], rng),
            Err(CryptoError::InvalidLength)
        );
        assert_eq!(
            wrap(WrapAlg::AesKw, &[0u8; 20], &[1u8; 16], rng),
            Err(CryptoError::InvalidKey)
        );
        assert_eq!(
            unwrap(WrapAlg::AesKw, &kek, &[0u8; 23]),
            Err(CryptoError::InvalidLength)
        );
        assert_eq!(
            unwrap(WrapAlg::AesGcm, &kek, &[0u8; 27]),
            Err(CryptoError::InvalidLength)
        );
    }

    #[test]
    fn aes_gcm_wrap_layout_and_round_trip() {
        let kek = [9u8; 32];
        let key = [5u8; 32];
        let w = wrap(WrapAlg::AesGcm, &kek, &key, &mut TestRng(3)).unwrap();
        assert_eq!(w.len(), NONCE_LEN + key.len() + TAG_LEN);
        // The layout is nonce ‖ ciphertext ‖ tag: AES-GCM decrypts the pieces.
        let (nonce, rest) = w.split_at(NONCE_LEN);
        let (ct, tag) = rest.split_at(key.len());
        let pt = aead::decrypt(AeadAlg::AesGcm, &kek, nonce, &[], ct, tag).unwrap();
        assert_eq!(pt, key);
        assert_eq!(&unwrap(WrapAlg::AesGcm, &kek, &w).unwrap()[..], &key[..]);
        let mut bad = w.clone();
        bad[NONCE_LEN] ^= 1;
        assert_eq!(
            unwrap(WrapAlg::AesGcm, &kek, &bad),
            Err(CryptoError::AuthenticationFailed)
        );
        assert_eq!(
            unwrap(WrapAlg::AesGcm, &[1u8; 32], &w),
            Err(CryptoError::AuthenticationFailed)
        );
    }
}
