//! Object-creating and object-reading operations: Create, CreateKeyPair, Register/Import,
//! Get/Export, Add/Set/DeleteAttribute, Locate.

use super::*;
use crate::kmip::transparent;

/// Shortest HMAC key Create and Register accept (see [`crate::crypto::mac::MIN_HMAC_KEY_LEN`]).
const MIN_HMAC_BITS: usize = crate::crypto::mac::MIN_HMAC_KEY_LEN * 8;
/// Longest HMAC key Create and Register accept.
const MAX_HMAC_BITS: usize = 4096;

/// Does a Register of a private or public key hold an RSA key? Yes when the attributes or the
/// key block say RSA, or the format is PKCS#1; a PKCS#8 / SPKI key with no algorithm is RSA
/// when it parses as RSA (the curve formats are tried first).
fn rsa_import(a: &Attributes, kft: KeyFormatType, raw: &[u8]) -> bool {
    match a.cryptographic_algorithm {
        Some(CryptographicAlgorithm::RSA) => true,
        Some(_) => false,
        None if a.recommended_curve.is_some() => false,
        None => match kft {
            KeyFormatType::PKCS1
            | KeyFormatType::TransparentRSAPrivateKey
            | KeyFormatType::TransparentRSAPublicKey => true,
            KeyFormatType::PKCS8 => {
                asym::from_pkcs8(None, raw).is_err()
                    && crate::crypto::rsa::import_private(raw, false).is_ok()
            }
            KeyFormatType::X509 => {
                asym::public_from_spki(None, raw).is_err()
                    && crate::crypto::rsa::import_public(raw, false).is_ok()
            }
            _ => false,
        },
    }
}

/// What kind of key pair [`Kms::store_pair`] stores.
#[derive(Clone, Copy)]
enum KeyKind {
    Curve(Curve),
    Rsa(usize),
}

impl<S: Store> Kms<S> {
    pub(super) fn prepare_attributes(
        &self,
        env: &mut Env<'_>,
        attrs: &Attributes,
        object_type: ObjectType,
    ) -> KResult<(String, Attributes)> {
        let uid = match &attrs.unique_identifier {
            Some(u) => {
                check_uid(u)?;
                u.clone()
            }
            None => new_uid(env)?,
        };
        check_flags(attrs)?;
        let mut a = attrs.clone();
        a.unique_identifier = None;
        a.state = None;
        a.object_type = Some(object_type);
        a.initial_date = Some(env.now);
        a.last_change_date = Some(env.now);
        a.destroy_date = None;
        a.compromise_date = None;
        absorb_activation_skew(&mut a, env.now, self.config.activation_skew_secs);
        set_server_flags(&mut a);
        if let Some(t) = system_tag(object_type)
            && !a.tags.iter().any(|x| x == t)
        {
            a.tags.push(t.into());
        }
        Ok((uid, a))
    }

    pub(super) async fn create(
        &self,
        env: &mut Env<'_>,
        user: &str,
        object_type: ObjectType,
        attrs: &Attributes,
        dialect: Dialect,
    ) -> KResult<Response> {
        if object_type != ObjectType::SymmetricKey {
            return Err(kerr(
                ResultReason::InvalidObjectType,
                "Create makes symmetric keys; use CreateKeyPair for key pairs",
            ));
        }
        let alg = attrs.cryptographic_algorithm.ok_or(kerr(
            ResultReason::MissingData,
            "CryptographicAlgorithm is required",
        ))?;
        let bits = match (alg, attrs.cryptographic_length) {
            (CryptographicAlgorithm::AES, None) => 256,
            (CryptographicAlgorithm::AES, Some(l @ (128 | 192 | 256))) => l,
            (
                CryptographicAlgorithm::ChaCha20 | CryptographicAlgorithm::ChaCha20Poly1305,
                None | Some(256),
            ) => 256,
            // Legacy: stored and handed out only (see `tdes_key`).
            (CryptographicAlgorithm::THREE_DES, None | Some(TDES_BITS)) => TDES_BITS,
            (
                CryptographicAlgorithm::THREE_DES
                | CryptographicAlgorithm::AES
                | CryptographicAlgorithm::ChaCha20
                | CryptographicAlgorithm::ChaCha20Poly1305,
                _,
            ) => {
                return Err(kerr(
                    ResultReason::InvalidField,
                    "unsupported CryptographicLength for this algorithm",
                ));
            }
            (a, l) if crypto_ops::hmac_hash(a).is_some() => {
                let h = crypto_ops::hmac_hash(a).map_or(32, |h| h.output_len());
                match l.map(usize::try_from) {
                    None => i32::try_from(h * 8).unwrap_or(256),
                    Some(Ok(l)) if l % 8 == 0 && (MIN_HMAC_BITS..=MAX_HMAC_BITS).contains(&l) => {
                        i32::try_from(l).unwrap_or(256)
                    }
                    _ => {
                        return Err(kerr(
                            ResultReason::InvalidField,
                            "an HMAC key is 112 to 4096 bits, a multiple of 8",
                        ));
                    }
                }
            }
            _ => {
                return Err(kerr(
                    ResultReason::UnsupportedCryptographicParameters,
                    "Create supports AES, ChaCha20, HMAC-SHA-* and (legacy) 3DES keys",
                ));
            }
        };
        // Grover's search halves a symmetric key's strength: 256 bits keep 128.
        check_quantum_safe(attrs, bits >= 256)?;
        let (uid, mut a) = self.prepare_attributes(env, attrs, object_type)?;
        set_random_number_generator(&mut a);
        a.cryptographic_length = Some(bits);
        a.key_format_type = Some(match (attrs.key_format_type, dialect) {
            (Some(f @ (KeyFormatType::Raw | KeyFormatType::TransparentSymmetricKey)), _) => f,
            (_, Dialect::Cosmian) => KeyFormatType::TransparentSymmetricKey,
            (_, Dialect::Kmip) => KeyFormatType::Raw,
        });
        a.cryptographic_usage_mask
            .get_or_insert(if crypto_ops::hmac_hash(alg).is_some() {
                usage::MAC_GENERATE | usage::MAC_VERIFY
            } else {
                usage::ENCRYPT | usage::DECRYPT | usage::WRAP_KEY | usage::UNWRAP_KEY
            });
        let len = if alg == CryptographicAlgorithm::THREE_DES {
            TDES_KEY_LEN
        } else {
            usize::try_from(bits / 8).unwrap_or(32)
        };
        let mut key = Zeroizing::new(alloc::vec![0u8; len]);
        env.rng
            .fill(&mut key)
            .map_err(|_| KmsError::Internal("random number generator failure"))?;
        if alg == CryptographicAlgorithm::THREE_DES {
            set_des_parity(&mut key);
        }
        let o = ManagedObject {
            uid: uid.clone(),
            object_type,
            state: initial_state(&a, env.now),
            owner: user.into(),
            material: Some(key),
            grants: Vec::new(),
            attributes: a,
        };
        self.insert(&o).await?;
        Ok(Response::Create { object_type, uid })
    }

    pub(super) async fn create_key_pair(
        &self,
        env: &mut Env<'_>,
        user: &str,
        common: &Attributes,
        private: &Attributes,
        public: &Attributes,
    ) -> KResult<Response> {
        let pa = merge(common, private);
        let qa = merge(common, public);
        // RSA and elliptic-curve keys fall to a quantum computer (Shor).
        check_quantum_safe(&pa, false)?;
        check_quantum_safe(&qa, false)?;
        // The Cosmian CLI asks for EC keys as `ECDH`; the spec uses `EC` or `ECDSA`.
        let ec = |a: Option<CryptographicAlgorithm>| {
            matches!(
                a,
                None | Some(
                    CryptographicAlgorithm::EC
                        | CryptographicAlgorithm::ECDSA
                        | CryptographicAlgorithm::ECDH
                )
            )
        };
        let (alg, rc) = (pa.cryptographic_algorithm, pa.recommended_curve);
        if alg == Some(CryptographicAlgorithm::RSA) {
            let bits = match pa.cryptographic_length.map(usize::try_from) {
                None => 2048,
                Some(Ok(b)) if crate::crypto::rsa::SIZES.contains(&b) => b,
                _ => {
                    return Err(kerr(
                        ResultReason::InvalidField,
                        "an RSA key is 2048, 3072 or 4096 bits",
                    ));
                }
            };
            if rc.is_some() {
                return Err(kerr(
                    ResultReason::InvalidField,
                    "RecommendedCurve does not apply to RSA",
                ));
            }
            let kp = crate::crypto::rsa::generate(bits, env.rng)?;
            return self
                .store_pair(env, user, &pa, &qa, kp, KeyKind::Rsa(bits))
                .await;
        }
        let curve = match rc {
            _ if alg == Some(CryptographicAlgorithm::Ed25519)
                && matches!(rc, None | Some(RecommendedCurve::CURVEED25519)) =>
            {
                Curve::Ed25519
            }
            Some(RecommendedCurve::CURVEED25519) if ec(alg) => Curve::Ed25519,
            Some(RecommendedCurve::P256) if ec(alg) => Curve::P256,
            Some(RecommendedCurve::P384) if ec(alg) => Curve::P384,
            None if alg.is_some() && ec(alg) => Curve::P256,
            None if alg.is_none() => {
                return Err(kerr(
                    ResultReason::MissingData,
                    "CryptographicAlgorithm or RecommendedCurve is required",
                ));
            }
            _ => {
                return Err(kerr(
                    ResultReason::UnsupportedCryptographicParameters,
                    "CreateKeyPair supports ECDSA P-256/P-384 and Ed25519",
                ));
            }
        };
        let kp = asym::generate(curve, env.rng)?;
        self.store_pair(env, user, &pa, &qa, kp, KeyKind::Curve(curve))
            .await
    }

    /// Store a freshly generated pair as two linked objects.
    async fn store_pair(
        &self,
        env: &mut Env<'_>,
        user: &str,
        pa: &Attributes,
        qa: &Attributes,
        kp: asym::KeyPair,
        kind: KeyKind,
    ) -> KResult<Response> {
        let (sk_uid, mut sa) = self.prepare_attributes(env, pa, ObjectType::PrivateKey)?;
        let (pk_uid, mut pb) = self.prepare_attributes(env, qa, ObjectType::PublicKey)?;
        if sk_uid == pk_uid {
            return Err(kerr(
                ResultReason::InvalidField,
                "the two keys need different UniqueIdentifiers",
            ));
        }
        // RSA keys report PKCS#1 as their format (what the OASIS AKLC cases expect); the stored
        // form is PKCS#8 / SPKI either way, and Get converts.
        let rsa = matches!(kind, KeyKind::Rsa(_));
        for (a, kft, mask, link, other) in [
            (
                &mut sa,
                if rsa {
                    KeyFormatType::PKCS1
                } else {
                    KeyFormatType::PKCS8
                },
                if rsa {
                    usage::SIGN | usage::DECRYPT
                } else {
                    usage::SIGN
                },
                LinkType::PublicKeyLink,
                &pk_uid,
            ),
            (
                &mut pb,
                if rsa {
                    KeyFormatType::PKCS1
                } else {
                    KeyFormatType::X509
                },
                if rsa {
                    usage::VERIFY | usage::ENCRYPT
                } else {
                    usage::VERIFY
                },
                LinkType::PrivateKeyLink,
                &sk_uid,
            ),
        ] {
            match kind {
                KeyKind::Curve(curve) => {
                    a.cryptographic_algorithm = Some(curve_alg(curve, pa.cryptographic_algorithm));
                    a.cryptographic_length = Some(curve.bits());
                    a.recommended_curve = Some(curve_enum(curve));
                }
                KeyKind::Rsa(bits) => {
                    a.cryptographic_algorithm = Some(CryptographicAlgorithm::RSA);
                    a.cryptographic_length = Some(i32::try_from(bits).unwrap_or(0));
                    a.recommended_curve = None;
                }
            }
            a.key_format_type = Some(kft);
            set_random_number_generator(a);
            a.cryptographic_usage_mask.get_or_insert(mask);
            a.links.retain(|l| l.link_type != link);
            a.links.push(Link {
                link_type: link,
                uid: other.clone(),
            });
        }
        let sk = ManagedObject {
            uid: sk_uid.clone(),
            object_type: ObjectType::PrivateKey,
            state: initial_state(&sa, env.now),
            owner: user.into(),
            material: Some(Zeroizing::new(kp.private_pkcs8.to_vec())),
            grants: Vec::new(),
            attributes: sa,
        };
        let pk = ManagedObject {
            uid: pk_uid.clone(),
            object_type: ObjectType::PublicKey,
            state: initial_state(&pb, env.now),
            owner: user.into(),
            material: Some(Zeroizing::new(kp.public_spki.clone())),
            grants: Vec::new(),
            attributes: pb,
        };
        self.insert(&sk).await?;
        if let Err(e) = self.insert(&pk).await {
            // Do not leave half a pair behind.
            if let Ok(Some((_, v))) = self.store.get(&sk_uid).await {
                let _ = self.store.delete(&sk_uid, v).await;
            }
            return Err(e);
        }
        Ok(Response::CreateKeyPair {
            private_uid: sk_uid,
            public_uid: pk_uid,
        })
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn register(
        &self,
        env: &mut Env<'_>,
        user: &str,
        import: bool,
        uid: Option<String>,
        object_type: ObjectType,
        replace: bool,
        attributes: &Attributes,
        key: &mut KeyBlock,
        right: Right,
    ) -> KResult<Response> {
        // A wrapped key is unwrapped first (KMIP 2.1 §2.1.5), then registered as any other.
        self.unwrap_block(env, user, key).await?;
        let mut attrs = match &key.attributes {
            Some(inner) => merge(inner, attributes),
            None => attributes.clone(),
        };
        if let Some(u) = uid.filter(|u| !u.is_empty()) {
            attrs.unique_identifier = Some(u);
        }
        if attrs.cryptographic_algorithm.is_none() {
            attrs.cryptographic_algorithm = key.cryptographic_algorithm;
        }
        if attrs.recommended_curve.is_none() {
            attrs.recommended_curve = key.curve;
        }
        let raw = Zeroizing::new(core::mem::take(&mut key.material));
        let kft = key.key_format_type;
        let unsupported_format = kerr(
            ResultReason::KeyFormatTypeNotSupported,
            "unsupported key format for this object type",
        );
        let material: Zeroizing<Vec<u8>> = match object_type {
            ObjectType::SymmetricKey => {
                if !matches!(
                    kft,
                    KeyFormatType::Raw | KeyFormatType::TransparentSymmetricKey
                ) {
                    return Err(unsupported_format);
                }
                let alg = *attrs
                    .cryptographic_algorithm
                    .get_or_insert(CryptographicAlgorithm::AES);
                let ok = match alg {
                    CryptographicAlgorithm::AES => matches!(raw.len(), 16 | 24 | 32),
                    CryptographicAlgorithm::ChaCha20 | CryptographicAlgorithm::ChaCha20Poly1305 => {
                        raw.len() == 32
                    }
                    CryptographicAlgorithm::THREE_DES => raw.len() == TDES_KEY_LEN,
                    a if crypto_ops::hmac_hash(a).is_some() => {
                        (MIN_HMAC_BITS / 8..=MAX_HMAC_BITS / 8).contains(&raw.len())
                    }
                    _ => {
                        return Err(kerr(
                            ResultReason::UnsupportedCryptographicParameters,
                            "symmetric keys must be AES, ChaCha20, HMAC-SHA-* or (legacy) 3DES",
                        ));
                    }
                };
                if !ok {
                    return Err(kerr(
                        ResultReason::InvalidField,
                        "key length does not fit the algorithm",
                    ));
                }
                attrs.cryptographic_length = Some(if alg == CryptographicAlgorithm::THREE_DES {
                    TDES_BITS
                } else {
                    i32::try_from(raw.len() * 8).unwrap_or(0)
                });
                attrs.key_format_type = Some(kft);
                attrs.cryptographic_usage_mask.get_or_insert(
                    if crypto_ops::hmac_hash(alg).is_some() {
                        usage::MAC_GENERATE | usage::MAC_VERIFY
                    } else {
                        usage::ENCRYPT | usage::DECRYPT
                    },
                );
                raw
            }
            // KMIP 2.1 §2.2.7 Secret Data: opaque bytes (a password, a seed), kept as given.
            ObjectType::SecretData => {
                if !matches!(kft, KeyFormatType::Raw | KeyFormatType::Opaque) {
                    return Err(unsupported_format);
                }
                attrs.key_format_type = Some(kft);
                raw
            }
            // KMIP 2.1 §2.2.8 Opaque Object: bytes the server does not interpret.
            ObjectType::OpaqueObject => {
                if kft != KeyFormatType::Opaque {
                    return Err(unsupported_format);
                }
                raw
            }
            ObjectType::PrivateKey | ObjectType::PublicKey if rsa_import(&attrs, kft, &raw) => {
                let private = object_type == ObjectType::PrivateKey;
                let (bits, material) = match (private, kft) {
                    (true, KeyFormatType::PKCS1 | KeyFormatType::PKCS8) => {
                        let (b, kp) =
                            crate::crypto::rsa::import_private(&raw, kft == KeyFormatType::PKCS1)?;
                        (b, Zeroizing::new(kp.private_pkcs8.to_vec()))
                    }
                    (false, KeyFormatType::PKCS1 | KeyFormatType::X509) => {
                        let (b, spki) =
                            crate::crypto::rsa::import_public(&raw, kft == KeyFormatType::PKCS1)?;
                        (b, Zeroizing::new(spki))
                    }
                    (true, KeyFormatType::TransparentRSAPrivateKey) => {
                        let f = transparent::decode(kft, &raw)?;
                        let (b, kp) = crate::crypto::rsa::import_private_fields(&f)?;
                        (b, Zeroizing::new(kp.private_pkcs8.to_vec()))
                    }
                    (false, KeyFormatType::TransparentRSAPublicKey) => {
                        let f = transparent::decode(kft, &raw)?;
                        let (Some(Some(n)), Some(Some(e))) = (f.first(), f.get(1)) else {
                            return Err(unsupported_format);
                        };
                        let (b, spki) = crate::crypto::rsa::import_public_fields(n, e)?;
                        (b, Zeroizing::new(spki))
                    }
                    _ => return Err(unsupported_format),
                };
                attrs.cryptographic_algorithm = Some(CryptographicAlgorithm::RSA);
                attrs.recommended_curve = None;
                attrs.cryptographic_length = Some(i32::try_from(bits).unwrap_or(0));
                attrs.key_format_type = Some(kft);
                attrs.cryptographic_usage_mask.get_or_insert(if private {
                    usage::SIGN | usage::DECRYPT
                } else {
                    usage::VERIFY | usage::ENCRYPT
                });
                material
            }
            // KMIP 2.1 §2.1.7.3/4: DSA keys are stored as their transparent fields and only
            // exported so; the KMS has no DSA operation.
            ObjectType::PrivateKey | ObjectType::PublicKey
                if attrs.cryptographic_algorithm == Some(CryptographicAlgorithm::DSA)
                    || matches!(
                        kft,
                        KeyFormatType::TransparentDSAPrivateKey
                            | KeyFormatType::TransparentDSAPublicKey
                    ) =>
            {
                let private = object_type == ObjectType::PrivateKey;
                let want = if private {
                    KeyFormatType::TransparentDSAPrivateKey
                } else {
                    KeyFormatType::TransparentDSAPublicKey
                };
                if kft != want {
                    return Err(unsupported_format);
                }
                let bits = dsa_check(&transparent::decode(kft, &raw)?, private)?;
                attrs.cryptographic_algorithm = Some(CryptographicAlgorithm::DSA);
                attrs.recommended_curve = None;
                attrs.cryptographic_length = Some(i32::try_from(bits).unwrap_or(0));
                attrs.key_format_type = Some(kft);
                attrs.cryptographic_usage_mask.get_or_insert(if private {
                    usage::SIGN
                } else {
                    usage::VERIFY
                });
                raw
            }
            ObjectType::PrivateKey => {
                let (curve, kp) = match kft {
                    KeyFormatType::PKCS8 => asym::from_pkcs8(curve_of(&attrs), &raw)?,
                    KeyFormatType::Raw | KeyFormatType::TransparentECPrivateKey => {
                        let c = curve_of(&attrs).ok_or(kerr(
                            ResultReason::MissingData,
                            "a raw private key needs RecommendedCurve",
                        ))?;
                        // Transparent D is a BigInteger: strip sign padding / left-pad.
                        let want = c.private_len();
                        let trimmed: &[u8] = {
                            let mut s: &[u8] = &raw;
                            while s.len() > want && s.first() == Some(&0) {
                                s = s.get(1..).unwrap_or(&[]);
                            }
                            s
                        };
                        let mut buf = Zeroizing::new(alloc::vec![0u8; want]);
                        let off = want
                            .checked_sub(trimmed.len())
                            .ok_or(kerr(ResultReason::InvalidField, "private key too long"))?;
                        buf.get_mut(off..)
                            .ok_or(kerr(ResultReason::InvalidField, "private key too long"))?
                            .copy_from_slice(trimmed);
                        (c, asym::from_raw_private(c, &buf)?)
                    }
                    _ => return Err(unsupported_format),
                };
                attrs.cryptographic_algorithm =
                    Some(curve_alg(curve, attrs.cryptographic_algorithm));
                attrs.recommended_curve = Some(curve_enum(curve));
                attrs.cryptographic_length = Some(curve.bits());
                attrs.key_format_type = Some(KeyFormatType::PKCS8);
                attrs.cryptographic_usage_mask.get_or_insert(usage::SIGN);
                Zeroizing::new(kp.private_pkcs8.to_vec())
            }
            ObjectType::PublicKey => {
                let (curve, spki) = match kft {
                    KeyFormatType::X509 | KeyFormatType::PKCS8 => {
                        asym::public_from_spki(curve_of(&attrs), &raw)?
                    }
                    KeyFormatType::Raw | KeyFormatType::TransparentECPublicKey => {
                        let c = curve_of(&attrs).ok_or(kerr(
                            ResultReason::MissingData,
                            "a raw public key needs RecommendedCurve",
                        ))?;
                        (c, asym::public_from_raw(c, &raw)?)
                    }
                    _ => return Err(unsupported_format),
                };
                attrs.cryptographic_algorithm =
                    Some(curve_alg(curve, attrs.cryptographic_algorithm));
                attrs.recommended_curve = Some(curve_enum(curve));
                attrs.cryptographic_length = Some(curve.bits());
                attrs.key_format_type = Some(KeyFormatType::X509);
                attrs.cryptographic_usage_mask.get_or_insert(usage::VERIFY);
                Zeroizing::new(spki)
            }
            // KMIP 2.1 §2.2.1: an X.509 certificate, kept as its DER value.
            ObjectType::Certificate => {
                if kft != KeyFormatType::X509 {
                    return Err(unsupported_format);
                }
                certs::absorb_registered(&mut attrs, &raw)?;
                raw
            }
            _ => {
                return Err(kerr(
                    ResultReason::InvalidObjectType,
                    "only symmetric, private and public keys, certificates, secret data and opaque objects \
                     can be registered",
                ));
            }
        };
        // A certificate of a public key the caller owns: linked both ways (certify.rs).
        let public = if object_type == ObjectType::Certificate {
            match crate::x509::spki_der(&material) {
                Some(spki) => self.owned_public_key(user, &spki).await?,
                None => None,
            }
        } else {
            None
        };
        if let Some(p) = &public {
            if !attrs
                .links
                .iter()
                .any(|l| l.link_type == LinkType::PublicKeyLink)
            {
                attrs.links.push(Link {
                    link_type: LinkType::PublicKeyLink,
                    uid: p.uid.clone(),
                });
            }
            if let Some(k) = p
                .attributes
                .links
                .iter()
                .find(|l| l.link_type == LinkType::PrivateKeyLink)
                && !attrs
                    .links
                    .iter()
                    .any(|l| l.link_type == LinkType::PrivateKeyLink)
            {
                attrs.links.push(k.clone());
            }
        }
        let (uid, a) = self.prepare_attributes(env, &attrs, object_type)?;
        let mut o = ManagedObject {
            uid: uid.clone(),
            object_type,
            state: initial_state(&a, env.now),
            owner: user.into(),
            material: Some(material),
            grants: Vec::new(),
            attributes: a,
        };
        match self.insert(&o).await {
            Ok(()) => {}
            Err(KmsError::Kmip(KmipError {
                reason: ResultReason::ObjectAlreadyExists,
                ..
            })) if import && replace => {
                let now = env.now;
                self.update(
                    user,
                    Some(&uid),
                    right,
                    |old| {
                        // The `import` right does not let a grantee swap the key material
                        // behind the owner's uid (issue 12): replacing is the owner's.
                        if old.owner != user {
                            return Err(kerr(
                                ResultReason::PermissionDenied,
                                "permission denied: only the owner replaces an object \
                                 (Import with ReplaceExisting)",
                            ));
                        }
                        o.owner = old.owner.clone();
                        o.grants = old.grants.clone();
                        *old = o.clone();
                        Ok(())
                    },
                    now,
                )
                .await?;
            }
            Err(e) => return Err(e),
        }
        if let Some(p) = public {
            self.link_public_key(user, &p, &uid, env.now).await?;
        }
        Ok(Response::Register { import, uid })
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn get(
        &self,
        env: &mut Env<'_>,
        user: &str,
        uid: Option<&str>,
        kft: Option<KeyFormatType>,
        export: bool,
        wrap: Option<&crate::kmip::ops::KeyWrappingData>,
        right: Right,
        dialect: Dialect,
    ) -> KResult<Response> {
        let (o, _) = self.resolve(user, uid, right).await?;
        // Private key material leaves the KMS only to its owner or to a holder of the export
        // right: the get right alone lets a grantee read attributes and public or symmetric
        // keys, not the private half of a pair (for Get as for Export, or Get would bypass it).
        if o.object_type == ObjectType::PrivateKey && o.rights_of(user) & Right::Export.bit() == 0 {
            return Err(kerr(
                ResultReason::PermissionDenied,
                "permission denied: private key material needs the export right",
            ));
        }
        // KMIP 2.1 §4.47/§4.21: Sensitive keys only leave wrapped, non-extractable ones never
        // (both to everyone, the owner included).
        if wrap.is_none() && flag(&o.attributes, "Sensitive") == Some(true) {
            return Err(kerr(
                ResultReason::Sensitive,
                "the object is Sensitive: its key material is not released",
            ));
        }
        if flag(&o.attributes, "Extractable") == Some(false) {
            return Err(kerr(
                ResultReason::NotExtractable,
                "the object is not Extractable: its key material is not released",
            ));
        }
        let material = o.material.as_ref().ok_or(DESTROYED)?;
        let unsupported = kerr(
            ResultReason::KeyFormatTypeNotSupported,
            "this key cannot be exported in that format",
        );
        let curve = curve_of(&o.attributes);
        let rsa = o.algorithm() == Some(CryptographicAlgorithm::RSA);
        let stored_kft = o.attributes.key_format_type;
        let (format, bytes, tcurve): (KeyFormatType, Zeroizing<Vec<u8>>, Option<RecommendedCurve>) =
            match o.object_type {
                ObjectType::OpaqueObject => match kft {
                    None | Some(KeyFormatType::Opaque) => {
                        (KeyFormatType::Opaque, material.clone(), None)
                    }
                    _ => return Err(unsupported),
                },
                ObjectType::SymmetricKey | ObjectType::SecretData => {
                    // Raw is what the Cosmian KMS answers for symmetric keys (also those
                    // registered as TransparentSymmetricKey); KMIP's dialect answers in the
                    // registered format; secret data in its own format.
                    let f = kft.unwrap_or(match (stored_kft, dialect) {
                        (Some(KeyFormatType::Opaque), _)
                            if o.object_type == ObjectType::SecretData =>
                        {
                            KeyFormatType::Opaque
                        }
                        // KMIP: as registered (BL-M-3).
                        (Some(KeyFormatType::TransparentSymmetricKey), Dialect::Kmip)
                            if o.object_type == ObjectType::SymmetricKey =>
                        {
                            KeyFormatType::TransparentSymmetricKey
                        }
                        _ => KeyFormatType::Raw,
                    });
                    if o.object_type == ObjectType::SecretData
                        && matches!(f, KeyFormatType::Raw | KeyFormatType::Opaque)
                    {
                        (f, material.clone(), None)
                    } else {
                        if o.object_type != ObjectType::SymmetricKey
                            || !matches!(
                                f,
                                KeyFormatType::Raw | KeyFormatType::TransparentSymmetricKey
                            )
                        {
                            return Err(unsupported);
                        }
                        (f, material.clone(), None)
                    }
                }
                ObjectType::PrivateKey if rsa => {
                    match kft.or(stored_kft).unwrap_or(KeyFormatType::PKCS8) {
                        KeyFormatType::PKCS8 => (KeyFormatType::PKCS8, material.clone(), None),
                        KeyFormatType::PKCS1 => (
                            KeyFormatType::PKCS1,
                            crate::crypto::rsa::private_to_pkcs1(material)?,
                            None,
                        ),
                        f @ KeyFormatType::TransparentRSAPrivateKey => {
                            let v = crate::crypto::rsa::private_fields(material)?;
                            let refs: Vec<Option<&[u8]>> =
                                v.iter().map(|x| Some(x.as_slice())).collect();
                            (f, Zeroizing::new(transparent::encode(&refs)), None)
                        }
                        _ => return Err(unsupported),
                    }
                }
                ObjectType::PublicKey if rsa => {
                    match kft.or(stored_kft).unwrap_or(KeyFormatType::X509) {
                        KeyFormatType::X509 => (KeyFormatType::X509, material.clone(), None),
                        KeyFormatType::PKCS1 => (
                            KeyFormatType::PKCS1,
                            Zeroizing::new(crate::crypto::rsa::public_to_pkcs1(material)?),
                            None,
                        ),
                        f @ KeyFormatType::TransparentRSAPublicKey => {
                            let (n, e) = crate::crypto::rsa::public_fields(material)?;
                            let m = transparent::encode(&[Some(&n), Some(&e)]);
                            (f, Zeroizing::new(m), None)
                        }
                        _ => return Err(unsupported),
                    }
                }
                ObjectType::PrivateKey | ObjectType::PublicKey
                    if o.algorithm() == Some(CryptographicAlgorithm::DSA) =>
                {
                    match (kft.or(stored_kft), stored_kft) {
                        (Some(f), Some(s)) if f == s => (f, material.clone(), None),
                        _ => return Err(unsupported),
                    }
                }
                ObjectType::PrivateKey => {
                    let c = curve.ok_or(unsupported.clone())?;
                    match kft.unwrap_or(KeyFormatType::PKCS8) {
                        KeyFormatType::PKCS8 => (KeyFormatType::PKCS8, material.clone(), None),
                        KeyFormatType::Raw => {
                            (KeyFormatType::Raw, asym::raw_private(c, material)?, None)
                        }
                        KeyFormatType::TransparentECPrivateKey if c != Curve::Ed25519 => (
                            KeyFormatType::TransparentECPrivateKey,
                            asym::raw_private(c, material)?,
                            Some(curve_enum(c)),
                        ),
                        _ => return Err(unsupported),
                    }
                }
                ObjectType::PublicKey => {
                    let c = curve.ok_or(unsupported.clone())?;
                    match kft.unwrap_or(KeyFormatType::X509) {
                        f @ (KeyFormatType::X509 | KeyFormatType::PKCS8) => {
                            (f, material.clone(), None)
                        }
                        KeyFormatType::Raw => (
                            KeyFormatType::Raw,
                            Zeroizing::new(asym::raw_public(c, material)?),
                            None,
                        ),
                        KeyFormatType::TransparentECPublicKey if c != Curve::Ed25519 => (
                            KeyFormatType::TransparentECPublicKey,
                            Zeroizing::new(asym::raw_public(c, material)?),
                            Some(curve_enum(c)),
                        ),
                        _ => return Err(unsupported),
                    }
                }
                ObjectType::Certificate => match kft.unwrap_or(KeyFormatType::X509) {
                    KeyFormatType::X509 => (KeyFormatType::X509, material.clone(), None),
                    _ => return Err(unsupported),
                },
                _ => return Err(unsupported),
            };
        let full = self.full_attributes(&o, env.now);
        // KMIP 2.1 §4.21: served once, the object is no longer Fresh. The first Get of an
        // object is thus a write; best effort: a store that cannot take it (Redis stalled)
        // does not stop the key from being served, it stays Fresh until a later Get.
        if flag(&o.attributes, "Fresh") == Some(true) {
            let stale = |o: &mut ManagedObject| -> KResult<Vec<String>> {
                o.attributes.other.retain(|x| x.tag != "Fresh");
                o.attributes.other.push(Ttlv::boolean("Fresh", false));
                Ok(Vec::new())
            };
            let _ = self.update(user, Some(&o.uid), right, stale, env.now).await;
        }
        let mut key = KeyBlock {
            key_format_type: format,
            material: bytes.to_vec(),
            curve: tcurve,
            cryptographic_algorithm: o.attributes.cryptographic_algorithm,
            cryptographic_length: o.attributes.cryptographic_length,
            attributes: Some(full.clone()),
            wrapping: None,
        };
        if let Some(spec) = wrap {
            // Wrapped bytes are a key encoding; transparent RSA/DSA material is a structure.
            if transparent::fields(format).is_some() {
                return Err(kerr(
                    ResultReason::KeyFormatTypeNotSupported,
                    "a transparent RSA/DSA key cannot be wrapped: ask for PKCS1, PKCS8 or X509",
                ));
            }
            self.wrap_block(env, user, &mut key, spec, &o.uid).await?;
        }
        Ok(Response::Get {
            export,
            object_type: o.object_type,
            uid: o.uid.clone(),
            attributes: if export { Some(full) } else { None },
            key,
        })
    }

    pub(super) async fn modify_attribute(
        &self,
        env: &mut Env<'_>,
        user: &str,
        uid: Option<&str>,
        edit: AttrEdit<'_>,
        right: Right,
    ) -> KResult<String> {
        let now = env.now;
        let skew = self.config.activation_skew_secs;
        let target = match edit {
            AttrEdit::Add(a) | AttrEdit::Set(a) | AttrEdit::Delete(Some(a), _) => a.tag.as_str(),
            AttrEdit::Delete(None, Some(r)) => r,
            AttrEdit::Delete(None, None) => {
                return Err(kerr(ResultReason::MissingData, "no attribute named"));
            }
        };
        if READ_ONLY.contains(&target) || certs::read_only(target) {
            return Err(kerr(
                ResultReason::AttributeReadOnly,
                "this attribute is read-only",
            ));
        }
        let (uid, ()) = self
            .update(
                user,
                uid,
                right,
                |o| {
                    let owner = o.owner == user;
                    // KMIP 2.1 §4.1 Activation Date: set or changed only while PreActive.
                    if target == "ActivationDate"
                        && !matches!(edit, AttrEdit::Delete(..))
                        && o.effective_state(now) != State::PreActive
                    {
                        return Err(kerr(
                            ResultReason::WrongKeyLifecycleState,
                            "the Activation Date can only be set while the object is PreActive",
                        ));
                    }
                    let before = o.attributes.clone();
                    let a = &mut o.attributes;
                    match edit {
                        AttrEdit::Add(item) => {
                            let mut single = Attributes::default();
                            single.absorb(item)?;
                            // KMIP 2.1 Name (BL-M-8-21): a Name the object already has
                            // is not added twice.
                            if single.names.iter().any(|n| a.names.contains(n)) {
                                return Err(kerr(
                                    ResultReason::NonUniqueNameAttribute,
                                    "the object already has this Name",
                                ));
                            }
                            let clash = (single.activation_date.is_some()
                                && a.activation_date.is_some())
                                || (single.deactivation_date.is_some()
                                    && a.deactivation_date.is_some())
                                || (single.cryptographic_usage_mask.is_some()
                                    && a.cryptographic_usage_mask.is_some())
                                || single
                                    .other
                                    .iter()
                                    .any(|x| a.other.iter().any(|y| y.tag == x.tag));
                            if clash {
                                return Err(kerr(
                                    ResultReason::AttributeSingleValued,
                                    "the attribute is single-valued and already set: use \
                                     SetAttribute",
                                ));
                            }
                            *a = merge(a, &single);
                        }
                        AttrEdit::Set(item) => {
                            let mut single = Attributes::default();
                            single.absorb(item)?;
                            if item.tag == "Name" {
                                a.names.clear();
                            }
                            if matches!(item.tag.as_str(), "VendorAttribute" | "VendorAttributes")
                                && !single.tags.is_empty()
                            {
                                a.tags.retain(|t| is_system_tag(t));
                            }
                            if item.tag == "Link" {
                                for l in &single.links {
                                    a.links.retain(|x| x.link_type != l.link_type);
                                }
                            }
                            *a = merge(a, &single);
                        }
                        AttrEdit::Delete(Some(item), _) => {
                            let mut single = Attributes::default();
                            single.absorb(item)?;
                            a.names.retain(|n| !single.names.contains(n));
                            a.tags
                                .retain(|t| !single.tags.contains(t) || is_system_tag(t));
                            a.links.retain(|l| !single.links.contains(l));
                            for v in &single.vendor_attributes {
                                a.vendor_attributes
                                    .retain(|x| !(x.vendor == v.vendor && x.name == v.name));
                            }
                            if single.activation_date.is_some() {
                                a.activation_date = None;
                            }
                            if single.deactivation_date.is_some() {
                                a.deactivation_date = None;
                            }
                            if single.cryptographic_usage_mask.is_some() {
                                a.cryptographic_usage_mask = None;
                            }
                            a.other.retain(|x| x.tag != item.tag);
                        }
                        AttrEdit::Delete(None, Some(name)) => match name {
                            "Name" => a.names.clear(),
                            "tag" | "VendorAttribute" | "VendorAttributes" => {
                                a.tags.retain(|t| is_system_tag(t));
                                if name != "tag" {
                                    a.vendor_attributes.clear();
                                }
                            }
                            "Link" => a.links.clear(),
                            "ActivationDate" => a.activation_date = None,
                            "DeactivationDate" => a.deactivation_date = None,
                            "CryptographicUsageMask" => a.cryptographic_usage_mask = None,
                            other => {
                                let before = a.other.len();
                                a.other.retain(|x| x.tag != other);
                                a.vendor_attributes.retain(|x| x.name != other);
                                if a.other.len() == before {
                                    // Nothing named so: KMIP 2.1 §6.1.13 says Attribute Not Found.
                                }
                            }
                        },
                        AttrEdit::Delete(None, None) => {}
                    }
                    if target == "ActivationDate" && !matches!(edit, AttrEdit::Delete(..)) {
                        absorb_activation_skew(a, now, skew);
                    }
                    check_flags(a)?;
                    check_attribute_edit(&before, a, owner)?;
                    // An Activation Date set in the past on a PreActive object makes it Active.
                    if o.state == State::PreActive
                        && o.attributes.activation_date.is_some_and(|d| d <= now)
                    {
                        o.state = State::Active;
                    }
                    Ok(())
                },
                now,
            )
            .await?;
        Ok(uid)
    }

    pub(super) async fn locate(
        &self,
        env: &mut Env<'_>,
        user: &str,
        max_items: Option<i32>,
        offset_items: Option<i32>,
        a: &Attributes,
        ranges: &[DateRange],
    ) -> KResult<Response> {
        let mut kw = Vec::new();
        if let Some(t) = a.object_type {
            kw.push(alloc::format!("type={}", t.name()));
        }
        if let Some(x) = a.cryptographic_algorithm {
            kw.push(alloc::format!("alg={}", x.name()));
        }
        for t in &a.tags {
            kw.push(alloc::format!("tag={t}"));
        }
        for n in &a.names {
            kw.push(alloc::format!("name={n}"));
        }
        let mut uids: Vec<String> = match a.state {
            Some(s @ (State::Destroyed | State::DestroyedCompromised)) => {
                self.visible_with(
                    user,
                    &[alloc::format!("state={}", s.name())],
                    Some(Right::Locate),
                )
                .await?
            }
            Some(s) => {
                // States depend on dates: filter on the effective state of each candidate.
                let cands = self.candidates(user, &kw, a.object_type.is_none()).await?;
                let mut out = Vec::new();
                for u in cands {
                    if let Some((o, _)) = self.load(&u).await?
                        && o.effective_state(env.now) == s
                    {
                        out.push(u);
                    }
                }
                out
            }
            None => self.candidates(user, &kw, a.object_type.is_none()).await?,
        };
        uids.sort();
        uids.dedup();
        // Filters the index does not carry: compare with each candidate's attributes.
        if !a.other.is_empty()
            || !a.vendor_attributes.is_empty()
            || a.cryptographic_length.is_some()
            || a.cryptographic_usage_mask.is_some()
            || !ranges.is_empty()
        {
            let mut kept = Vec::with_capacity(uids.len());
            for u in uids {
                if let Some((o, _)) = self.load(&u).await?
                    && locate_matches(&o.attributes, a)
                    && ranges.iter().all(|r| {
                        date_of(&o.attributes, &r.tag).is_some_and(|d| (r.from..=r.to).contains(&d))
                    })
                {
                    kept.push(u);
                }
            }
            uids = kept;
        }
        let total = i32::try_from(uids.len()).unwrap_or(i32::MAX);
        let offset = usize::try_from(offset_items.unwrap_or(0).max(0)).unwrap_or(0);
        let max = match max_items {
            Some(m) if m >= 0 => usize::try_from(m).unwrap_or(usize::MAX),
            _ => usize::MAX,
        };
        let uids = uids.into_iter().skip(offset).take(max).collect();
        Ok(Response::Locate { total, uids })
    }

    /// Live objects the caller owns or may locate (never destroyed ones: those only carry `state=`, `owner=`, `grant=`).
    pub(super) async fn candidates(
        &self,
        user: &str,
        kw: &[String],
        any_type: bool,
    ) -> KResult<Vec<String>> {
        let locate = Some(Right::Locate);
        if !any_type || kw.iter().any(|k| !k.starts_with("type=")) && !kw.is_empty() {
            return self.visible_with(user, kw, locate).await;
        }
        let mut out = Vec::new();
        for t in [
            ObjectType::SymmetricKey,
            ObjectType::PrivateKey,
            ObjectType::PublicKey,
            ObjectType::Certificate,
        ] {
            let mut q = kw.to_vec();
            q.push(alloc::format!("type={}", t.name()));
            out.extend(self.visible_with(user, &q, locate).await?);
        }
        Ok(out)
    }
}

/// Big-endian magnitudes compared by value (public DSA parameters; X only against Q).
fn magnitude_lt(a: &[u8], b: &[u8]) -> bool {
    (a.len(), a) < (b.len(), b)
}

/// Bit length of a magnitude without leading zeros.
fn magnitude_bits(a: &[u8]) -> usize {
    a.first()
        .map_or(0, |b| a.len() * 8 - b.leading_zeros() as usize)
}

/// FIPS 186-4 §4.1 domain shape of transparent DSA fields `[P, Q, G, X|Y]` (magnitudes):
/// P of 512..=3072 bits, Q of 160..=256 bits and below P, 1 < G < P, 0 < X < Q or 1 < Y < P.
/// Returns the bits of P (the key's length).
fn dsa_check(f: &[Option<&[u8]>], private: bool) -> KResult<usize> {
    let bad = |m: &'static str| kerr(ResultReason::InvalidField, m);
    let [Some(p), Some(q), Some(g), Some(k)] = f else {
        return Err(bad("DSA keys need P, Q, G and X or Y"));
    };
    let bits = magnitude_bits(p);
    if !(512..=3072).contains(&bits) || !(160..=256).contains(&magnitude_bits(q)) {
        return Err(bad("unsupported DSA domain parameter sizes"));
    }
    let one: &[u8] = &[1];
    if !magnitude_lt(q, p) || !magnitude_lt(g, p) || !magnitude_lt(one, g) {
        return Err(bad("inconsistent DSA domain parameters"));
    }
    let in_range = if private {
        magnitude_lt(k, q)
    } else {
        magnitude_lt(one, k) && magnitude_lt(k, p)
    };
    if !in_range {
        return Err(bad("DSA key value out of range"));
    }
    Ok(bits)
}

/// KMIP 2.1 §4.44 Quantum Safe: a client asking for a quantum-safe key gets one or an error
/// (OASIS QS-M-2: AES-128 → General Failure). `safe`: whether the key to be made is.
fn check_quantum_safe(a: &Attributes, safe: bool) -> KResult<()> {
    if flag(a, "QuantumSafe") == Some(true) && !safe {
        return Err(kerr(
            ResultReason::GeneralFailure,
            "QuantumSafe: this key would not be quantum safe (use a 256-bit symmetric key)",
        ));
    }
    Ok(())
}

/// The Boolean attributes the server sets when an object is created or registered (KMIP 2.1
/// §4.3 Always Sensitive: the Sensitive value, which only ever goes false → true afterwards;
/// §4.34 Never Extractable: not Extractable, which only ever goes true → false; §4.21 Fresh:
/// true until the object is first served by Get or Export). What the client sent for them is
/// replaced.
fn set_server_flags(a: &mut Attributes) {
    let always_sensitive = flag(a, "Sensitive") == Some(true);
    let never_extractable = flag(a, "Extractable") == Some(false);
    a.other.retain(|x| {
        !matches!(
            x.tag.as_str(),
            "AlwaysSensitive" | "NeverExtractable" | "Fresh"
        )
    });
    a.other
        .push(Ttlv::boolean("AlwaysSensitive", always_sensitive));
    a.other
        .push(Ttlv::boolean("NeverExtractable", never_extractable));
    a.other.push(Ttlv::boolean("Fresh", true));
    // §4.47 Sensitive and §4.20 Extractable default to false and true.
    for (tag, default) in [("Sensitive", false), ("Extractable", true)] {
        if flag(a, tag).is_none() {
            a.other.push(Ttlv::boolean(tag, default));
        }
    }
}

/// KMIP 2.1 §4.46 Random Number Generator of a key the server generates: the driver's CSPRNG
/// ([`crate::crypto::Random`]: the host's OS generator, RDRAND in the image), which no KMIP RNG
/// Algorithm names, so `Unspecified`. Replaces what the client sent: the server made the key.
fn set_random_number_generator(a: &mut Attributes) {
    a.other.retain(|x| x.tag != "RandomNumberGenerator");
    a.other.push(Ttlv::structure(
        "RandomNumberGenerator",
        alloc::vec![RNGAlgorithm::Unspecified.to_ttlv()],
    ));
}

/// What an attribute edit may not do (issue 12). For everyone: `Sensitive` only goes from false
/// to true and `Extractable` only from true to false (PKCS#11's rule for the same flags), so
/// neither can be undone to release key material. For a grantee (setattribute, addattribute,
/// deleteattribute) the dates and the mask may only narrow what the key allows: no usage bit
/// the key did not have (an absent mask allows every use, so a grantee may not delete one), no
/// removing or postponing a `DeactivationDate`, and no adding or advancing an `ActivationDate`
/// (which would activate a PreActive key early: that is the owner's, or `activate`'s, call).
fn check_attribute_edit(before: &Attributes, after: &Attributes, owner: bool) -> KResult<()> {
    if flag(before, "Sensitive") == Some(true) && flag(after, "Sensitive") != Some(true) {
        return Err(kerr(
            ResultReason::PermissionDenied,
            "permission denied: Sensitive cannot be cleared once set",
        ));
    }
    if flag(before, "Extractable") == Some(false) && flag(after, "Extractable") != Some(false) {
        return Err(kerr(
            ResultReason::PermissionDenied,
            "permission denied: Extractable cannot be set again once cleared",
        ));
    }
    if owner {
        return Ok(());
    }
    let old_mask = before.cryptographic_usage_mask.unwrap_or(u32::MAX);
    let new_mask = after.cryptographic_usage_mask.unwrap_or(u32::MAX);
    if new_mask & !old_mask != 0 {
        return Err(kerr(
            ResultReason::PermissionDenied,
            "permission denied: only the owner widens a CryptographicUsageMask",
        ));
    }
    if let Some(d) = before.deactivation_date
        && after.deactivation_date.is_none_or(|n| n > d)
    {
        return Err(kerr(
            ResultReason::PermissionDenied,
            "permission denied: only the owner removes or postpones a DeactivationDate",
        ));
    }
    if let Some(n) = after.activation_date
        && before.activation_date.is_none_or(|d| n < d)
    {
        return Err(kerr(
            ResultReason::PermissionDenied,
            "permission denied: only the owner adds or advances an ActivationDate",
        ));
    }
    Ok(())
}

/// The value of a date attribute of `a`, by tag.
fn date_of(a: &Attributes, tag: &str) -> Option<i64> {
    match tag {
        "ActivationDate" => a.activation_date,
        "DeactivationDate" => a.deactivation_date,
        "CompromiseDate" => a.compromise_date,
        "DestroyDate" => a.destroy_date,
        "InitialDate" => a.initial_date,
        "LastChangeDate" => a.last_change_date,
        _ => a
            .other
            .iter()
            .find(|x| x.tag == tag)
            .and_then(|x| match x.value {
                Value::DateTime(d) => Some(d),
                _ => None,
            }),
    }
}

/// Locate's filters on attributes the index does not carry (KMIP 2.1 §6.1.27): every other
/// attribute given must be among the object's (equal), vendor attributes likewise; the length
/// must be equal; the usage mask's bits must all be set on the object.
fn locate_matches(have: &Attributes, want: &Attributes) -> bool {
    want.other.iter().all(|w| have.other.contains(w))
        && want
            .vendor_attributes
            .iter()
            .all(|w| have.vendor_attributes.contains(w))
        && want
            .cryptographic_length
            .is_none_or(|l| have.cryptographic_length == Some(l))
        && want
            .cryptographic_usage_mask
            .is_none_or(|m| have.cryptographic_usage_mask.is_some_and(|h| h & m == m))
}

/// Three-key Triple DES (TDEA, NIST SP 800-67): 24 bytes of key, 168 effective bits (the
/// `CryptographicLength` KMIP uses). Legacy: this KMS creates, registers and hands out such keys
/// (OASIS SKFF-M-4/8/12), but does not encrypt or decrypt with them (SP 800-131A Rev. 2
/// disallows TDEA encryption after 2023); two-key TDEA (16 bytes) is refused.
const TDES_KEY_LEN: usize = 24;
/// See [`TDES_KEY_LEN`].
const TDES_BITS: i32 = 168;

/// Set each byte's low bit so that it has odd parity, as DES keys carry (FIPS 46-3 §3).
fn set_des_parity(key: &mut [u8]) {
    for b in key {
        *b = (*b & 0xFE) | u8::from((*b >> 1).count_ones() % 2 == 0);
    }
}

#[cfg(test)]
mod tdes_tests {
    use super::set_des_parity;

    #[test]
    fn des_parity_is_odd_and_keeps_the_key_bits() {
        // The 3DES key of the OASIS case SKFF-M-8 (generated by a reference server) has odd
        // parity in every byte: setting it again changes nothing.
        let mut k = crate::kmip::json::unhex("7367578051012a6d134a855e25c8cd5e4ca131455729d3c8")
            .expect("hex");
        let before = k.clone();
        set_des_parity(&mut k);
        assert_eq!(k, before);
        let mut all: alloc::vec::Vec<u8> = (0..=255u8).collect();
        set_des_parity(&mut all);
        for (i, b) in all.iter().enumerate() {
            assert_eq!(b.count_ones() % 2, 1);
            assert_eq!(b & 0xFE, u8::try_from(i).expect("byte") & 0xFE);
        }
    }
}
