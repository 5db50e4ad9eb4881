//! Key wrapping on Get/Export (Key Wrapping Specification) and unwrapping on Register/Import
//! (a Key Block carrying Key Wrapping Data), KMIP 2.1 §2.1.5–§2.1.7.
//!
//! Implemented: Wrapping Method `Encrypt` with an Encryption Key Information naming
//! - an AES key: `BlockCipherMode` NISTKeyWrap (RFC 3394), AESKeyWrapPadding (RFC 5649),
//!   GCM (the Cosmian KMS's `nonce ‖ ciphertext ‖ tag`), or none (RFC 5649, the Cosmian KMS's
//!   default);
//! - an RSA public key (wrap) / private key (unwrap): OAEP, SHA-256 by default.
//!
//! The wrapping key must be Active with `WrapKey` (`UnwrapKey`) in its usage mask, and the
//! caller needs the `encrypt` (`decrypt`) right on it, as for using it directly. The key bytes
//! are wrapped as they are (Encoding Option `NoEncoding`). Everything else is refused with a
//! typed error: MAC/sign wrapping, TTLV encoding, attribute wrapping, other algorithms.

use super::rsa_ops::{enc_padding, is_rsa};
use super::*;
use crate::crypto::wrap::{self, WrapAlg};
use crate::kmip::ops::KeyWrappingData;

const UNSUPPORTED_METHOD: KmsError = kerr(
    ResultReason::UnsupportedCryptographicParameters,
    "key wrapping supports WrappingMethod Encrypt only (no MAC/sign wrapping)",
);
const UNSUPPORTED_ENCODING: KmsError = kerr(
    ResultReason::EncodingOptionError,
    "key wrapping wraps the key bytes (EncodingOption NoEncoding); TTLV encoding is not supported",
);
const UNSUPPORTED_SYM: KmsError = kerr(
    ResultReason::UnsupportedCryptographicParameters,
    "AES key wrapping takes BlockCipherMode NISTKeyWrap (RFC 3394), AESKeyWrapPadding \
     (RFC 5649, the default) or GCM",
);
const UNSUPPORTED_RSA: KmsError = kerr(
    ResultReason::UnsupportedCryptographicParameters,
    "RSA key wrapping takes PaddingMethod OAEP (HashingAlgorithm SHA-1/224/256/384/512)",
);
const UNSUPPORTED_KEY: KmsError = kerr(
    ResultReason::UnsupportedCryptographicParameters,
    "a wrapping key is an AES key or an RSA public key (an RSA private key to unwrap)",
);

/// The checks shared by wrapping and unwrapping; the wrapping key's uid.
fn check_spec(w: &KeyWrappingData) -> KResult<&str> {
    if w.method != WrappingMethod::Encrypt || w.mac_signature {
        return Err(UNSUPPORTED_METHOD);
    }
    if w.encoding == Some(EncodingOption::TTLVEncoding) {
        return Err(UNSUPPORTED_ENCODING);
    }
    if w.attribute_names {
        return Err(kerr(
            ResultReason::UnsupportedCryptographicParameters,
            "wrapping attributes with the key (AttributeName) is not supported",
        ));
    }
    w.key_uid.as_deref().filter(|u| !u.is_empty()).ok_or(kerr(
        ResultReason::MissingData,
        "key wrapping needs EncryptionKeyInformation with the wrapping key's UniqueIdentifier",
    ))
}

/// The AES construction the parameters ask for.
fn sym_alg(p: Option<&CryptographicParameters>) -> KResult<WrapAlg> {
    let p = p.cloned().unwrap_or_default();
    if p.cryptographic_algorithm
        .is_some_and(|a| a != CryptographicAlgorithm::AES)
        || p.padding_method.is_some()
        || p.hashing_algorithm.is_some()
    {
        return Err(UNSUPPORTED_SYM);
    }
    match p.block_cipher_mode {
        Some(BlockCipherMode::NISTKeyWrap) => Ok(WrapAlg::AesKw),
        None | Some(BlockCipherMode::AESKeyWrapPadding) => Ok(WrapAlg::AesKwp),
        Some(BlockCipherMode::GCM) => Ok(WrapAlg::AesGcm),
        Some(_) => Err(UNSUPPORTED_SYM),
    }
}

/// The RSA-OAEP padding the parameters ask for.
fn rsa_padding(p: Option<&CryptographicParameters>) -> KResult<crate::crypto::rsa::EncPadding> {
    let p = p.cloned().unwrap_or_default();
    if p.cryptographic_algorithm
        .is_some_and(|a| a != CryptographicAlgorithm::RSA)
        || !matches!(p.padding_method, None | Some(PaddingMethod::OAEP))
    {
        // RSA-AES hybrid wrapping (CKM_RSA_AES_KEY_WRAP) and PKCS#1 v1.5 are not offered.
        return Err(UNSUPPORTED_RSA);
    }
    enc_padding(&p).map_err(|_| UNSUPPORTED_RSA)
}

/// What a wrapping key is.
enum Kek {
    Aes,
    Rsa,
}

/// An AES key wraps and unwraps; an RSA public key wraps, its private key unwraps.
fn kek_kind(o: &ManagedObject, unwrap: bool) -> KResult<Kek> {
    if o.object_type == ObjectType::SymmetricKey
        && o.algorithm() == Some(CryptographicAlgorithm::AES)
    {
        return Ok(Kek::Aes);
    }
    let half = if unwrap {
        ObjectType::PrivateKey
    } else {
        ObjectType::PublicKey
    };
    if is_rsa(o) && o.object_type == half {
        return Ok(Kek::Rsa);
    }
    Err(UNSUPPORTED_KEY)
}

impl<S: Store> Kms<S> {
    /// Replace `key`'s material by its wrapping under the key `spec` names, and record `spec`
    /// in the Key Block. `wrapped_uid` is the uid of the key being wrapped (it may not wrap
    /// itself).
    pub(super) async fn wrap_block(
        &self,
        env: &mut Env<'_>,
        user: &str,
        key: &mut KeyBlock,
        spec: &KeyWrappingData,
        wrapped_uid: &str,
    ) -> KResult<()> {
        let uid = check_spec(spec)?;
        let (w, _) = self.resolve(user, Some(uid), Right::Encrypt).await?;
        if w.uid == wrapped_uid {
            return Err(kerr(
                ResultReason::InvalidField,
                "a key cannot be wrapped with itself",
            ));
        }
        let kind = kek_kind(&w, false)?;
        self.usable(&w, env.now, usage::WRAP_KEY)?;
        let kek = w.material.as_ref().ok_or(DESTROYED)?;
        let params = spec.params.as_ref();
        let wrapped = match kind {
            Kek::Aes => wrap::wrap(sym_alg(params)?, kek, &key.material, env.rng)?,
            Kek::Rsa => {
                let padding = rsa_padding(params)?;
                crate::crypto::rsa::encrypt(kek, &padding, &key.material, env.rng)?
            }
        };
        crate::store::wipe(&mut key.material);
        key.material = wrapped;
        key.curve = None;
        key.attributes = None;
        key.wrapping = Some(KeyWrappingData {
            key_uid: Some(w.uid.clone()),
            ..spec.clone()
        });
        Ok(())
    }

    /// Replace a wrapped `key`'s material by the key inside, unwrapped with the key its Key
    /// Wrapping Data names. A key block that is not wrapped is left alone.
    pub(super) async fn unwrap_block(
        &self,
        env: &mut Env<'_>,
        user: &str,
        key: &mut KeyBlock,
    ) -> KResult<()> {
        let Some(spec) = key.wrapping.take() else {
            return Ok(());
        };
        let uid = check_spec(&spec)?;
        let (w, _) = self.resolve(user, Some(uid), Right::Decrypt).await?;
        let kind = kek_kind(&w, true)?;
        self.usable(&w, env.now, usage::UNWRAP_KEY)?;
        let kek = w.material.as_ref().ok_or(DESTROYED)?;
        let params = spec.params.as_ref();
        let plain = match kind {
            Kek::Aes => wrap::unwrap(sym_alg(params)?, kek, &key.material)?,
            Kek::Rsa => {
                let padding = rsa_padding(params)?;
                crate::crypto::rsa::decrypt(kek, &padding, &key.material, env.rng)?
            }
        };
        key.material = plain.to_vec();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symmetric_modes() {
        let p = |m| CryptographicParameters {
            block_cipher_mode: m,
            ..CryptographicParameters::default()
        };
        assert_eq!(sym_alg(None), Ok(WrapAlg::AesKwp));
        assert_eq!(
            sym_alg(Some(&p(Some(BlockCipherMode::NISTKeyWrap)))),
            Ok(WrapAlg::AesKw)
        );
        assert_eq!(
            sym_alg(Some(&p(Some(BlockCipherMode::AESKeyWrapPadding)))),
            Ok(WrapAlg::AesKwp)
        );
        assert_eq!(
            sym_alg(Some(&p(Some(BlockCipherMode::GCM)))),
            Ok(WrapAlg::AesGcm)
        );
        assert_eq!(
            sym_alg(Some(&p(Some(BlockCipherMode::CBC)))),
            Err(UNSUPPORTED_SYM)
        );
    }

    #[test]
    fn rsa_parameters() {
        assert!(rsa_padding(None).is_ok());
        let pkcs1 = CryptographicParameters {
            padding_method: Some(PaddingMethod::PKCS1v15),
            ..CryptographicParameters::default()
        };
        assert_eq!(rsa_padding(Some(&pkcs1)).err(), Some(UNSUPPORTED_RSA));
        let hybrid = CryptographicParameters {
            cryptographic_algorithm: Some(CryptographicAlgorithm::AES),
            ..CryptographicParameters::default()
        };
        assert_eq!(rsa_padding(Some(&hybrid)).err(), Some(UNSUPPORTED_RSA));
    }

    #[test]
    fn spec_checks() {
        let ok = KeyWrappingData {
            method: WrappingMethod::Encrypt,
            key_uid: Some("k".into()),
            params: None,
            mac_signature: false,
            attribute_names: false,
            encoding: None,
        };
        assert_eq!(check_spec(&ok), Ok("k"));
        let mac = KeyWrappingData {
            method: WrappingMethod::MACSign,
            ..ok.clone()
        };
        assert_eq!(check_spec(&mac), Err(UNSUPPORTED_METHOD));
        let ttlv = KeyWrappingData {
            encoding: Some(EncodingOption::TTLVEncoding),
            ..ok.clone()
        };
        assert_eq!(check_spec(&ttlv), Err(UNSUPPORTED_ENCODING));
        let none = KeyWrappingData {
            key_uid: None,
            ..ok.clone()
        };
        assert_eq!(
            check_spec(&none).map_err(|e| e.result_reason()),
            Err(ResultReason::MissingData)
        );
    }
}
