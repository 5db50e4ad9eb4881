//! RSA keys in the operations: Encrypt/Decrypt (OAEP, PKCS#1 v1.5) and Sign/SignatureVerify
//! (PSS, PKCS#1 v1.5), with the parameters of the request, else of the key's stored
//! `CryptographicParameters`, else the defaults (OAEP and PSS with SHA-256).

use super::crypto_ops::{hash_alg, stored_params};
use super::*;
use crate::crypto::mac::HashAlg;
use crate::crypto::rsa::{self, EncPadding, SigPadding};

/// Is `o` an RSA key?
pub(super) fn is_rsa(o: &ManagedObject) -> bool {
    o.algorithm() == Some(CryptographicAlgorithm::RSA)
}

/// The request's parameters over the key's stored ones, field by field.
fn effective(
    o: &ManagedObject,
    req: Option<&CryptographicParameters>,
) -> KResult<CryptographicParameters> {
    let s = stored_params(&o.attributes)?.unwrap_or_default();
    let r = req.cloned().unwrap_or_default();
    if r.cryptographic_algorithm
        .or(s.cryptographic_algorithm)
        .is_some_and(|a| a != CryptographicAlgorithm::RSA)
    {
        return Err(kerr(
            ResultReason::UnsupportedCryptographicParameters,
            "the parameters name another algorithm than the key's (RSA)",
        ));
    }
    Ok(CryptographicParameters {
        block_cipher_mode: r.block_cipher_mode.or(s.block_cipher_mode),
        cryptographic_algorithm: Some(CryptographicAlgorithm::RSA),
        hashing_algorithm: r.hashing_algorithm.or(s.hashing_algorithm),
        digital_signature_algorithm: r
            .digital_signature_algorithm
            .or(s.digital_signature_algorithm),
        tag_length: r.tag_length.or(s.tag_length),
        padding_method: r.padding_method.or(s.padding_method),
        mask_generator_hashing_algorithm: r
            .mask_generator_hashing_algorithm
            .or(s.mask_generator_hashing_algorithm),
        salt_length: r.salt_length.or(s.salt_length),
        p_source: r.p_source.or(s.p_source),
    })
}

const BAD_ENC: KmsError = kerr(
    ResultReason::UnsupportedCryptographicParameters,
    "RSA encryption takes PaddingMethod OAEP (HashingAlgorithm and \
     MaskGeneratorHashingAlgorithm SHA-1/224/256/384/512, PSource label) or PKCS1_v1_5",
);

const BAD_SIG: KmsError = kerr(
    ResultReason::UnsupportedCryptographicParameters,
    "RSA signatures take PaddingMethod PSS (SaltLength) or PKCS1_v1_5 with a SHA-1/2 \
     HashingAlgorithm, or a SHA*WithRSAEncryption / RSASSA-PSS DigitalSignatureAlgorithm",
);

/// The encryption padding for `p` (default OAEP with SHA-256, MGF1 over the same hash).
pub(super) fn enc_padding(p: &CryptographicParameters) -> KResult<EncPadding> {
    if p.block_cipher_mode.is_some() || p.digital_signature_algorithm.is_some() {
        return Err(BAD_ENC);
    }
    match p.padding_method {
        None | Some(PaddingMethod::OAEP) => {
            let hash = match p.hashing_algorithm {
                Some(h) => hash_alg(h)?,
                None => HashAlg::Sha256,
            };
            let mgf = match p.mask_generator_hashing_algorithm {
                Some(h) => hash_alg(h)?,
                None => hash,
            };
            Ok(EncPadding::Oaep {
                hash,
                mgf,
                label: p.p_source.clone().filter(|l| !l.is_empty()),
            })
        }
        Some(PaddingMethod::PKCS1v15) => {
            if p.hashing_algorithm.is_some() || p.p_source.is_some() {
                return Err(BAD_ENC);
            }
            Ok(EncPadding::Pkcs1v15)
        }
        Some(_) => Err(BAD_ENC),
    }
}

/// The signature scheme for `p` (default PSS with SHA-256, salt as long as the hash).
pub(super) fn sig_padding(p: &CryptographicParameters) -> KResult<SigPadding> {
    let hash = p.hashing_algorithm.map(hash_alg).transpose()?;
    let salt = match p.salt_length {
        None => None,
        Some(n) => Some(usize::try_from(n).map_err(|_| BAD_SIG)?),
    };
    if p.mask_generator_hashing_algorithm
        .is_some_and(|m| Some(m) != p.hashing_algorithm)
    {
        // MGF1 over another hash than the message's: the `rsa` crate does not do it.
        return Err(BAD_SIG);
    }
    let from_dsa = match p.digital_signature_algorithm {
        None => None,
        Some(d) => Some(match d {
            DigitalSignatureAlgorithm::SHA1WithRSAEncryption => SigPadding::Pkcs1v15(HashAlg::Sha1),
            DigitalSignatureAlgorithm::SHA224WithRSAEncryption => {
                SigPadding::Pkcs1v15(HashAlg::Sha224)
            }
            DigitalSignatureAlgorithm::SHA256WithRSAEncryption => {
                SigPadding::Pkcs1v15(HashAlg::Sha256)
            }
            DigitalSignatureAlgorithm::SHA384WithRSAEncryption => {
                SigPadding::Pkcs1v15(HashAlg::Sha384)
            }
            DigitalSignatureAlgorithm::SHA512WithRSAEncryption => {
                SigPadding::Pkcs1v15(HashAlg::Sha512)
            }
            DigitalSignatureAlgorithm::RSASSAPSS => {
                SigPadding::Pss(hash.unwrap_or(HashAlg::Sha256), salt)
            }
            _ => return Err(BAD_SIG),
        }),
    };
    let from_pad = match p.padding_method {
        None => None,
        Some(PaddingMethod::PSS) => Some(SigPadding::Pss(hash.unwrap_or(HashAlg::Sha256), salt)),
        Some(PaddingMethod::PKCS1v15) => {
            Some(SigPadding::Pkcs1v15(hash.unwrap_or(HashAlg::Sha256)))
        }
        Some(_) => return Err(BAD_SIG),
    };
    let pad = match (from_dsa, from_pad) {
        (Some(a), Some(b)) if a != b => return Err(BAD_SIG),
        (Some(a), _) | (None, Some(a)) => a,
        (None, None) => SigPadding::Pss(hash.unwrap_or(HashAlg::Sha256), salt),
    };
    if let SigPadding::Pkcs1v15(h) = pad
        && (salt.is_some() || hash.is_some_and(|x| x != h))
    {
        return Err(BAD_SIG);
    }
    Ok(pad)
}

/// The SPKI of an RSA key object (the public half of a private key).
fn spki_of(o: &ManagedObject, material: &[u8]) -> KResult<Vec<u8>> {
    Ok(if o.object_type == ObjectType::PrivateKey {
        rsa::public_of(material)?
    } else {
        material.to_vec()
    })
}

impl<S: Store> Kms<S> {
    /// RSA encryption with a public key (or a private key's public half).
    pub(super) fn rsa_encrypt(
        &self,
        env: &mut Env<'_>,
        o: &ManagedObject,
        params: Option<&CryptographicParameters>,
        data: &[u8],
    ) -> KResult<Vec<u8>> {
        if !matches!(
            o.object_type,
            ObjectType::PublicKey | ObjectType::PrivateKey
        ) {
            return Err(kerr(
                ResultReason::InvalidObjectType,
                "RSA encryption needs a public key",
            ));
        }
        self.usable(o, env.now, usage::ENCRYPT)?;
        let pad = enc_padding(&effective(o, params)?)?;
        let material = o.material.as_ref().ok_or(DESTROYED)?;
        let spki = spki_of(o, material)?;
        rsa::encrypt(&spki, &pad, data, env.rng).map_err(|e| match e {
            crate::crypto::CryptoError::Unsupported => kerr(
                ResultReason::InvalidField,
                "the data is too long for this RSA key and padding",
            ),
            e => e.into(),
        })
    }

    /// RSA decryption with a private key.
    pub(super) fn rsa_decrypt(
        &self,
        env: &mut Env<'_>,
        o: &ManagedObject,
        params: Option<&CryptographicParameters>,
        data: &[u8],
    ) -> KResult<Zeroizing<Vec<u8>>> {
        if o.object_type != ObjectType::PrivateKey {
            return Err(kerr(
                ResultReason::InvalidObjectType,
                "RSA decryption needs a private key",
            ));
        }
        self.usable(o, env.now, usage::DECRYPT)?;
        let pad = enc_padding(&effective(o, params)?)?;
        let material = o.material.as_ref().ok_or(DESTROYED)?;
        Ok(rsa::decrypt(material, &pad, data, env.rng)?)
    }

    /// RSA signature with a private key over data or a digest.
    pub(super) fn rsa_sign(
        &self,
        env: &mut Env<'_>,
        o: &ManagedObject,
        params: Option<&CryptographicParameters>,
        input: &SignInput,
    ) -> KResult<Vec<u8>> {
        let pad = sig_padding(&effective(o, params)?)?;
        let material = o.material.as_ref().ok_or(DESTROYED)?;
        let (bytes, digest): (&[u8], bool) = match input {
            SignInput::Data(d) => (d, false),
            SignInput::Digest(h) => (h, true),
        };
        Ok(rsa::sign(material, pad, bytes, digest, env.rng)?)
    }

    /// RSA signature verification; a wrong signature is `Ok(false)`.
    pub(super) fn rsa_verify(
        &self,
        o: &ManagedObject,
        params: Option<&CryptographicParameters>,
        input: &SignInput,
        signature: &[u8],
    ) -> KResult<bool> {
        let pad = sig_padding(&effective(o, params)?)?;
        let material = o.material.as_ref().ok_or(DESTROYED)?;
        let spki = spki_of(o, material)?;
        let (bytes, digest): (&[u8], bool) = match input {
            SignInput::Data(d) => (d, false),
            SignInput::Digest(h) => (h, true),
        };
        Ok(rsa::verify(&spki, pad, bytes, digest, signature)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> CryptographicParameters {
        CryptographicParameters::default()
    }

    #[test]
    fn padding_choices_and_refusals() {
        assert_eq!(
            enc_padding(&p()).unwrap(),
            EncPadding::Oaep {
                hash: HashAlg::Sha256,
                mgf: HashAlg::Sha256,
                label: None
            }
        );
        let oaep = CryptographicParameters {
            padding_method: Some(PaddingMethod::OAEP),
            hashing_algorithm: Some(HashingAlgorithm::SHA384),
            mask_generator_hashing_algorithm: Some(HashingAlgorithm::SHA256),
            p_source: Some(b"L".to_vec()),
            ..p()
        };
        assert_eq!(
            enc_padding(&oaep).unwrap(),
            EncPadding::Oaep {
                hash: HashAlg::Sha384,
                mgf: HashAlg::Sha256,
                label: Some(b"L".to_vec())
            }
        );
        let v15 = CryptographicParameters {
            padding_method: Some(PaddingMethod::PKCS1v15),
            ..p()
        };
        assert_eq!(enc_padding(&v15).unwrap(), EncPadding::Pkcs1v15);
        for bad in [
            CryptographicParameters {
                padding_method: Some(PaddingMethod::PKCS5),
                ..p()
            },
            CryptographicParameters {
                block_cipher_mode: Some(BlockCipherMode::CBC),
                ..p()
            },
            CryptographicParameters {
                hashing_algorithm: Some(HashingAlgorithm::SHA256),
                ..v15.clone()
            },
        ] {
            assert!(matches!(
                enc_padding(&bad),
                Err(KmsError::Kmip(KmipError {
                    reason: ResultReason::UnsupportedCryptographicParameters,
                    ..
                }))
            ));
        }

        assert_eq!(
            sig_padding(&p()).unwrap(),
            SigPadding::Pss(HashAlg::Sha256, None)
        );
        let pss = CryptographicParameters {
            padding_method: Some(PaddingMethod::PSS),
            hashing_algorithm: Some(HashingAlgorithm::SHA512),
            salt_length: Some(222),
            ..p()
        };
        assert_eq!(
            sig_padding(&pss).unwrap(),
            SigPadding::Pss(HashAlg::Sha512, Some(222))
        );
        let dsa = CryptographicParameters {
            digital_signature_algorithm: Some(DigitalSignatureAlgorithm::SHA384WithRSAEncryption),
            ..p()
        };
        assert_eq!(
            sig_padding(&dsa).unwrap(),
            SigPadding::Pkcs1v15(HashAlg::Sha384)
        );
        for bad in [
            // DSA says v1.5 with SHA-384, the padding says PSS.
            CryptographicParameters {
                padding_method: Some(PaddingMethod::PSS),
                ..dsa.clone()
            },
            // DSA says SHA-384, the hash says SHA-256.
            CryptographicParameters {
                hashing_algorithm: Some(HashingAlgorithm::SHA256),
                ..dsa
            },
            CryptographicParameters {
                salt_length: Some(-1),
                ..p()
            },
            CryptographicParameters {
                digital_signature_algorithm: Some(DigitalSignatureAlgorithm::ECDSAWithSHA256),
                ..p()
            },
            CryptographicParameters {
                padding_method: Some(PaddingMethod::OAEP),
                ..p()
            },
        ] {
            assert!(matches!(
                sig_padding(&bad),
                Err(KmsError::Kmip(KmipError {
                    reason: ResultReason::UnsupportedCryptographicParameters,
                    ..
                }))
            ));
        }
    }
}
