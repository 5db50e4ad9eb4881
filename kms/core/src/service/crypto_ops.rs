//! Cryptographic services beyond Encrypt/Decrypt/Sign: MAC, MACVerify, Hash, RNGRetrieve,
//! RNGSeed; and Encrypt/Decrypt in the unauthenticated AES modes (ECB, CBC, CTR).

use super::*;
use crate::crypto::CryptoError;
use crate::crypto::mac::{self, HashAlg};
use crate::crypto::modes::{self, Mode};

/// Most bytes one RNGRetrieve returns.
pub(super) const MAX_RNG_BYTES: usize = 64 * 1024;

/// The `CryptographicParameters` attribute stored on an object (KMIP 2.1 §4.11: the defaults
/// its cryptographic operations use when a request names none).
pub(super) fn stored_params(a: &Attributes) -> KResult<Option<CryptographicParameters>> {
    match a.other.iter().find(|x| x.tag == "CryptographicParameters") {
        None => Ok(None),
        Some(p) => Ok(CryptographicParameters::opt(&Ttlv::structure(
            "Attributes",
            alloc::vec![p.clone()],
        ))?),
    }
}

/// The hash of an HMAC algorithm.
pub(super) fn hmac_hash(a: CryptographicAlgorithm) -> Option<HashAlg> {
    Some(match a {
        CryptographicAlgorithm::HMACSHA1 => HashAlg::Sha1,
        CryptographicAlgorithm::HMACSHA224 => HashAlg::Sha224,
        CryptographicAlgorithm::HMACSHA256 => HashAlg::Sha256,
        CryptographicAlgorithm::HMACSHA384 => HashAlg::Sha384,
        CryptographicAlgorithm::HMACSHA512 => HashAlg::Sha512,
        _ => return None,
    })
}

/// A KMIP hashing algorithm we compute.
pub(super) fn hash_alg(h: HashingAlgorithm) -> KResult<HashAlg> {
    Ok(match h {
        HashingAlgorithm::SHA1 => HashAlg::Sha1,
        HashingAlgorithm::SHA224 => HashAlg::Sha224,
        HashingAlgorithm::SHA256 => HashAlg::Sha256,
        HashingAlgorithm::SHA384 => HashAlg::Sha384,
        HashingAlgorithm::SHA512 => HashAlg::Sha512,
        _ => {
            return Err(kerr(
                ResultReason::UnsupportedCryptographicParameters,
                "unsupported HashingAlgorithm (SHA-1, SHA-224, SHA-256, SHA-384, SHA-512)",
            ));
        }
    })
}

/// The MAC a key computes: HMAC over a hash, or CMAC-AES (an AES key; KMIP has no CMAC
/// algorithm code, so an AES key or `CryptographicParameters` naming AES selects it, as PyKMIP
/// does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MacAlg {
    Hmac(HashAlg),
    CmacAes,
}

impl MacAlg {
    fn of(a: CryptographicAlgorithm) -> Option<Self> {
        match a {
            CryptographicAlgorithm::AES => Some(MacAlg::CmacAes),
            a => hmac_hash(a).map(MacAlg::Hmac),
        }
    }

    fn compute(self, key: &[u8], data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        match self {
            MacAlg::Hmac(h) => mac::hmac(h, key, data),
            MacAlg::CmacAes => mac::cmac_aes(key, data).map(|t| t.to_vec()),
        }
    }

    fn verify(self, key: &[u8], data: &[u8], tag: &[u8]) -> Result<bool, CryptoError> {
        match self {
            MacAlg::Hmac(h) => mac::hmac_verify(h, key, data, tag),
            MacAlg::CmacAes => mac::cmac_aes_verify(key, data, tag),
        }
    }
}

impl<S: Store> Kms<S> {
    /// The MAC algorithm and key for a MAC/MACVerify with `o`: the algorithm named by the
    /// request, else by the key's stored CryptographicParameters, else the key's own algorithm.
    fn mac_key<'o>(
        &self,
        o: &'o ManagedObject,
        now: i64,
        mask: u32,
        params: Option<&CryptographicParameters>,
    ) -> KResult<(MacAlg, &'o [u8])> {
        if o.object_type != ObjectType::SymmetricKey {
            return Err(kerr(
                ResultReason::InvalidObjectType,
                "MAC and MACVerify need a symmetric key",
            ));
        }
        self.usable(o, now, mask)?;
        let stored = stored_params(&o.attributes)?;
        let alg = params
            .and_then(|p| p.cryptographic_algorithm)
            .or(stored.and_then(|p| p.cryptographic_algorithm))
            .or(o.algorithm());
        let m = alg.and_then(MacAlg::of).ok_or(kerr(
            ResultReason::UnsupportedCryptographicParameters,
            "MAC supports HMAC-SHA-1/224/256/384/512 and CMAC-AES (an AES key): name one in \
             CryptographicParameters",
        ))?;
        // CMAC runs on the key's own AES material: an HMAC key is not an AES key.
        if m == MacAlg::CmacAes && o.algorithm() != Some(CryptographicAlgorithm::AES) {
            return Err(kerr(
                ResultReason::UnsupportedCryptographicParameters,
                "CMAC-AES needs an AES key",
            ));
        }
        let key = o.material.as_ref().ok_or(DESTROYED)?;
        Ok((m, key))
    }

    pub(super) async fn mac(
        &self,
        env: &mut Env<'_>,
        user: &str,
        uid: Option<&str>,
        params: Option<&CryptographicParameters>,
        data: &[u8],
        right: Right,
    ) -> KResult<Response> {
        let (o, _) = self.resolve(user, uid, right).await?;
        let (m, key) = self.mac_key(&o, env.now, usage::MAC_GENERATE, params)?;
        Ok(Response::Mac {
            uid: o.uid.clone(),
            mac: m.compute(key, data)?,
        })
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn mac_verify(
        &self,
        env: &mut Env<'_>,
        user: &str,
        uid: Option<&str>,
        params: Option<&CryptographicParameters>,
        data: &[u8],
        tag: &[u8],
        right: Right,
    ) -> KResult<Response> {
        let (o, _) = self.resolve(user, uid, right).await?;
        let (m, key) = self.mac_key(&o, env.now, usage::MAC_VERIFY, params)?;
        let valid = match m.verify(key, data, tag) {
            Ok(v) => v,
            // A tag of an impossible length is simply not valid.
            Err(CryptoError::InvalidTag) => false,
            Err(e) => return Err(e.into()),
        };
        Ok(Response::MacVerify {
            uid: o.uid.clone(),
            valid,
        })
    }

    pub(super) fn hash(
        &self,
        params: Option<&CryptographicParameters>,
        data: &[u8],
    ) -> KResult<Response> {
        let h = params.and_then(|p| p.hashing_algorithm).ok_or(kerr(
            ResultReason::MissingData,
            "Hash needs CryptographicParameters with a HashingAlgorithm",
        ))?;
        Ok(Response::Hash {
            digest: mac::digest(hash_alg(h)?, data),
        })
    }

    pub(super) fn rng_retrieve(&self, env: &mut Env<'_>, length: i32) -> KResult<Response> {
        let n = usize::try_from(length)
            .ok()
            .filter(|n| (1..=MAX_RNG_BYTES).contains(n))
            .ok_or(kerr(
                ResultReason::InvalidField,
                "DataLength must be between 1 and 65536",
            ))?;
        let mut data = alloc::vec![0u8; n];
        env.rng
            .fill(&mut data)
            .map_err(|_| KmsError::Internal("random number generator failure"))?;
        Ok(Response::RngRetrieve { data })
    }

    pub(super) fn rng_seed(&self, env: &mut Env<'_>, data: &[u8]) -> KResult<Response> {
        let accepted = env.rng.reseed(data);
        Ok(Response::RngSeed {
            accepted: i32::try_from(accepted).unwrap_or(i32::MAX),
        })
    }
}

/// The unauthenticated mode named by the request's CryptographicParameters, else by the key's
/// stored ones; `None` when they name none of these (the AEAD path then applies):
/// - AES keys: ECB, CBC, CTR. Padding: PKCS#5 only when asked for (PaddingMethod PKCS5), none
///   otherwise; any other padding, or padding with CTR, is refused.
/// - ChaCha20 keys (not ChaCha20Poly1305 ones): the plain ChaCha20 stream cipher when the
///   `IVCounterNonce` is 8 or 16 bytes and the parameters name no AEAD (no BlockCipherMode
///   AEAD, no CryptographicAlgorithm ChaCha20Poly1305); a 12-byte nonce, or none, keeps
///   ChaCha20-Poly1305, this KMS's default for ChaCha20 keys.
pub(super) fn block_mode(
    o: &ManagedObject,
    params: Option<&CryptographicParameters>,
    nonce: Option<&[u8]>,
) -> KResult<Option<Mode>> {
    if o.object_type != ObjectType::SymmetricKey {
        return Ok(None);
    }
    let stored = stored_params(&o.attributes)?.unwrap_or_default();
    let p = params.cloned().unwrap_or_default();
    if o.algorithm() == Some(CryptographicAlgorithm::ChaCha20) {
        let aead = p.block_cipher_mode.or(stored.block_cipher_mode).is_some()
            || p.cryptographic_algorithm
                .or(stored.cryptographic_algorithm)
                .is_some_and(|a| a != CryptographicAlgorithm::ChaCha20);
        let plain = nonce.is_some_and(|n| Mode::ChaCha20.iv_len_ok(n.len()));
        return Ok((plain && !aead).then_some(Mode::ChaCha20));
    }
    if o.algorithm() != Some(CryptographicAlgorithm::AES) {
        return Ok(None);
    }
    let bad_pad = kerr(
        ResultReason::UnsupportedCryptographicParameters,
        "ECB and CBC take PaddingMethod PKCS5 or None, CTR takes no padding",
    );
    let pad = p.padding_method.or(stored.padding_method);
    let padded = match pad {
        None | Some(PaddingMethod::None) => false,
        Some(PaddingMethod::PKCS5) => true,
        Some(_) => return Err(bad_pad),
    };
    Ok(Some(
        match p.block_cipher_mode.or(stored.block_cipher_mode) {
            Some(BlockCipherMode::ECB) => Mode::Ecb(padded),
            Some(BlockCipherMode::CBC) => Mode::Cbc(padded),
            Some(BlockCipherMode::CTR) if !padded => Mode::Ctr,
            Some(BlockCipherMode::CTR) => return Err(bad_pad),
            _ => return Ok(None),
        },
    ))
}

const NO_AEAD_FIELDS: KmsError = kerr(
    ResultReason::InvalidField,
    "ECB, CBC and CTR take no AuthenticatedEncryptionTag or AdditionalData (they do not \
     authenticate; use GCM for that)",
);

fn block_error(e: CryptoError) -> KmsError {
    match e {
        CryptoError::InvalidNonce => kerr(
            ResultReason::InvalidField,
            "the IVCounterNonce must be 16 bytes for CBC and CTR, absent for ECB, 8 or 16 for \
             ChaCha20",
        ),
        CryptoError::InvalidLength => kerr(
            ResultReason::InvalidField,
            "without padding, ECB and CBC data must be whole 16-byte blocks",
        ),
        e => e.into(),
    }
}

impl<S: Store> Kms<S> {
    /// Encrypt with an unauthenticated AES mode; the IV (CBC, CTR) is drawn here unless the
    /// caller gives one (a caller-chosen CTR counter needs the decrypt right, as GCM nonces do:
    /// re-using one exposes the XOR of two plaintexts).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn block_encrypt(
        &self,
        env: &mut Env<'_>,
        user: &str,
        o: &ManagedObject,
        mode: Mode,
        nonce: Option<Vec<u8>>,
        aad: bool,
        data: &[u8],
        spelling: crate::kmip::ops::NonceSpelling,
    ) -> KResult<Response> {
        self.usable(o, env.now, usage::ENCRYPT)?;
        if aad {
            return Err(NO_AEAD_FIELDS);
        }
        let key = o.material.as_ref().ok_or(DESTROYED)?;
        let iv = super::caller_nonce_or_random(
            env,
            user,
            o,
            matches!(mode, Mode::Ctr | Mode::ChaCha20),
            mode.iv_len(),
            nonce,
        )?;
        let ct = modes::encrypt(mode, key, &iv, data).map_err(block_error)?;
        Ok(Response::Encrypt {
            uid: o.uid.clone(),
            data: ct,
            nonce: iv,
            tag: Vec::new(),
            spelling,
            correlation: None,
        })
    }

    /// Decrypt with an unauthenticated AES mode.
    pub(super) fn block_decrypt(
        &self,
        env: &mut Env<'_>,
        o: &ManagedObject,
        mode: Mode,
        nonce: Option<&[u8]>,
        tag_or_aad: bool,
        data: &[u8],
    ) -> KResult<Response> {
        self.usable(o, env.now, usage::DECRYPT)?;
        if tag_or_aad {
            return Err(NO_AEAD_FIELDS);
        }
        let key = o.material.as_ref().ok_or(DESTROYED)?;
        let iv = nonce.unwrap_or(&[]);
        // Invalid Message, as the OASIS cases CS-BC-M-11/12/13 expect for a missing IV.
        if iv.is_empty() && mode.iv_len() != 0 {
            return Err(kerr(
                ResultReason::InvalidMessage,
                "missing IVCounterNonce: CBC and CTR decryption need the IV used to encrypt",
            ));
        }
        let pt = modes::decrypt(mode, key, iv, data).map_err(block_error)?;
        Ok(Response::Decrypt {
            uid: o.uid.clone(),
            data: pt.to_vec(),
        })
    }
}

/// KMIP 2.1 §4.56 Usage Limits: take `bytes` (Unit Byte) or one use (Unit Object) from the
/// key's remaining `UsageLimitsCount` (the `UsageLimitsTotal` until the first use), or refuse
/// with Permission Denied (as the OASIS case CS-BC-M-7 expects) when not enough is left. Usage
/// Limits count only the applying of protection (Encrypt here), not Decrypt. A key without
/// Usage Limits is not limited.
pub(super) fn consume_usage(o: &mut ManagedObject, bytes: usize) -> KResult<()> {
    let Some(limits) = o
        .attributes
        .other
        .iter_mut()
        .find(|t| t.tag == "UsageLimits")
    else {
        return Ok(());
    };
    let bad = kerr(
        ResultReason::InvalidField,
        "UsageLimits needs a UsageLimitsTotal (LongInteger) and a UsageLimitsUnit (Byte or \
         Object)",
    );
    let long = |tag: &str| match limits.get(tag).map(|t| &t.value) {
        Some(Value::LongInteger(v)) => Some(*v),
        _ => None,
    };
    let left = long("UsageLimitsCount")
        .or(long("UsageLimitsTotal"))
        .ok_or(bad.clone())?;
    let need = match UsageLimitsUnit::opt(limits).map_err(|_| bad.clone())? {
        Some(UsageLimitsUnit::Byte) => i64::try_from(bytes).unwrap_or(i64::MAX),
        Some(UsageLimitsUnit::Object) => 1,
        None => return Err(bad),
    };
    if need > left {
        return Err(kerr(
            ResultReason::PermissionDenied,
            "the key's Usage Limits are used up: it no longer encrypts",
        ));
    }
    let count = Ttlv::new("UsageLimitsCount", Value::LongInteger(left - need));
    if let Value::Structure(items) = &mut limits.value {
        items.retain(|t| t.tag != "UsageLimitsCount");
        items.push(count);
    }
    Ok(())
}
