//! Cryptographic services beyond Encrypt/Decrypt/Sign: MAC, MACVerify, Hash, RNGRetrieve,
//! RNGSeed.

use super::*;
use crate::crypto::mac::{self, HashAlg};

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

impl<S: Store> Kms<S> {
    /// The HMAC hash and key for a MAC/MACVerify with `o`: the algorithm named by the request,
    /// else by the key's stored CryptographicParameters, else the key's own algorithm.
    fn mac_key<'o>(
        &self,
        o: &'o ManagedObject,
        now: i64,
        mask: u32,
        params: Option<&CryptographicParameters>,
    ) -> KResult<(HashAlg, &'o [u8])> {
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
        let h = alg.and_then(hmac_hash).ok_or(kerr(
            ResultReason::UnsupportedCryptographicParameters,
            "MAC supports HMAC-SHA-1/224/256/384/512: name one in CryptographicParameters \
             (CMAC is not implemented)",
        ))?;
        let key = o.material.as_ref().ok_or(DESTROYED)?;
        Ok((h, key))
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
        let (h, key) = self.mac_key(&o, env.now, usage::MAC_GENERATE, params)?;
        Ok(Response::Mac {
            uid: o.uid.clone(),
            mac: mac::hmac(h, key, data)?,
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
        let (h, key) = self.mac_key(&o, env.now, usage::MAC_VERIFY, params)?;
        let valid = match mac::hmac_verify(h, key, data, tag) {
            Ok(v) => v,
            // A tag of an impossible length is simply not valid.
            Err(crate::crypto::CryptoError::InvalidTag) => false,
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
