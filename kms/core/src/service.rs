//! [`Kms`]: KMIP operation semantics over a [`Store`] — lifecycle, usage masks, access rights.
//!
//! Every method takes `&self` (the struct is `Sync`), the caller's identity, and an [`Env`]
//! carrying the time and the random source. Each read-modify-write of an object is a
//! compare-and-swap on the record version, retried a bounded number of times, so several KMS
//! nodes can share one store.

use alloc::collections::BTreeSet;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use zeroize::Zeroizing;

use crate::access::{self, ObtainedAccess, OwnedObject, Right, SuccessResponse, UserAccess};
use crate::crypto::Random;
use crate::crypto::aead::{self, AeadAlg};
use crate::crypto::asym::{self, Curve};
use crate::error::{KmipError, KmsError};
use crate::kmip::json::{self, Limits};
use crate::kmip::ops::{CryptographicParameters, KeyBlock, Request, Response, operation_from_tag};
use crate::kmip::ttlv::{Ttlv, Value};
use crate::kmip::types::*;
use crate::object::ManagedObject;
use crate::store::{Store, StoreError, Version};

/// Time and randomness, supplied by the caller for each call.
pub struct Env<'a> {
    /// Current time, POSIX seconds. Comes from an untrusted clock: it decides only when
    /// activation/deactivation dates take effect, never anything security-critical.
    pub now: i64,
    /// The random source.
    pub rng: &'a mut dyn Random,
}

/// Configuration of a [`Kms`].
#[derive(Debug, Clone)]
pub struct KmsConfig {
    /// Limits on JSON TTLV request bodies.
    pub json_limits: Limits,
    /// Most batch items in one `RequestMessage`.
    pub max_batch_items: usize,
    /// Most compare-and-swap attempts for one object update.
    pub max_cas_retries: usize,
    /// Vendor identification reported by Query.
    pub vendor: &'static str,
    /// Server name reported by Query.
    pub server_name: &'static str,
}

impl Default for KmsConfig {
    fn default() -> Self {
        KmsConfig {
            json_limits: Limits::default(),
            max_batch_items: 256,
            max_cas_retries: 16,
            vendor: "cvm-kms",
            server_name: concat!("cvm-kms ", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// The key management service core.
pub struct Kms<S: Store> {
    store: S,
    config: KmsConfig,
}

type KResult<T> = Result<T, KmsError>;

const fn kerr(reason: ResultReason, msg: &'static str) -> KmsError {
    KmsError::kmip(reason, msg)
}

const NOT_FOUND: KmsError = kerr(ResultReason::ItemNotFound, "object not found");
const DENIED: KmsError = kerr(
    ResultReason::PermissionDenied,
    "permission denied: the user has no right for this operation on this object",
);
const DESTROYED: KmsError = kerr(
    ResultReason::ObjectDestroyed,
    "the object is destroyed: its key material is gone",
);

/// System tags the Cosmian KMS puts on objects by type.
fn system_tag(t: ObjectType) -> Option<&'static str> {
    match t {
        ObjectType::SymmetricKey => Some("_kk"),
        ObjectType::PrivateKey => Some("_sk"),
        ObjectType::PublicKey => Some("_pk"),
        ObjectType::Certificate => Some("_cert"),
        _ => None,
    }
}

fn is_system_tag(t: &str) -> bool {
    t.starts_with('_')
}

fn new_uid(env: &mut Env) -> KResult<String> {
    // RFC 9562 §5.4 UUID version 4.
    let mut b = [0u8; 16];
    env.rng
        .fill(&mut b)
        .map_err(|_| KmsError::Internal("random number generator failure"))?;
    b[6] = (b[6] & 0x0F) | 0x40;
    b[8] = (b[8] & 0x3F) | 0x80;
    let mut s = String::with_capacity(36);
    for (i, x) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push_str(&alloc::format!("{x:02x}"));
    }
    Ok(s)
}

fn check_uid(uid: &str) -> KResult<()> {
    if uid.is_empty()
        || uid.len() > 256
        || uid.starts_with('[')
        || uid.chars().any(char::is_control)
    {
        return Err(kerr(ResultReason::InvalidField, "invalid UniqueIdentifier"));
    }
    Ok(())
}

fn initial_state(a: &Attributes, now: i64) -> State {
    match a.activation_date {
        Some(d) if d <= now => State::Active,
        _ => State::PreActive,
    }
}

/// Field-wise union: `over` wins for single values, lists are merged.
fn merge(base: &Attributes, over: &Attributes) -> Attributes {
    let mut a = base.clone();
    macro_rules! or {
        ($($f:ident),*) => { $( if over.$f.is_some() { a.$f = over.$f.clone(); } )* };
    }
    or!(
        unique_identifier,
        object_type,
        cryptographic_algorithm,
        cryptographic_length,
        cryptographic_usage_mask,
        key_format_type,
        recommended_curve,
        state,
        activation_date,
        deactivation_date,
        compromise_date,
        destroy_date,
        initial_date,
        last_change_date
    );
    for n in &over.names {
        if !a.names.contains(n) {
            a.names.push(n.clone());
        }
    }
    for t in &over.tags {
        if !a.tags.contains(t) {
            a.tags.push(t.clone());
        }
    }
    a.links.extend(over.links.iter().cloned());
    for v in &over.vendor_attributes {
        a.vendor_attributes
            .retain(|x| !(x.vendor == v.vendor && x.name == v.name));
        a.vendor_attributes.push(v.clone());
    }
    for o in &over.other {
        a.other.retain(|x| x.tag != o.tag);
        a.other.push(o.clone());
    }
    a
}

fn curve_of(a: &Attributes) -> Option<Curve> {
    match (a.recommended_curve, a.cryptographic_algorithm) {
        (Some(RecommendedCurve::P256), _) => Some(Curve::P256),
        (Some(RecommendedCurve::P384), _) => Some(Curve::P384),
        (Some(RecommendedCurve::CURVEED25519), _)
        | (None, Some(CryptographicAlgorithm::Ed25519)) => Some(Curve::Ed25519),
        _ => None,
    }
}

fn curve_enum(c: Curve) -> RecommendedCurve {
    match c {
        Curve::P256 => RecommendedCurve::P256,
        Curve::P384 => RecommendedCurve::P384,
        Curve::Ed25519 => RecommendedCurve::CURVEED25519,
    }
}

fn curve_alg(c: Curve, asked: Option<CryptographicAlgorithm>) -> CryptographicAlgorithm {
    match (c, asked) {
        (Curve::Ed25519, _) => CryptographicAlgorithm::Ed25519,
        (_, Some(a @ (CryptographicAlgorithm::EC | CryptographicAlgorithm::ECDH))) => a,
        _ => CryptographicAlgorithm::ECDSA,
    }
}

/// Read-only attributes that Add/Set/DeleteAttribute refuse to touch.
const READ_ONLY: &[&str] = &[
    "UniqueIdentifier",
    "ObjectType",
    "State",
    "CryptographicAlgorithm",
    "CryptographicLength",
    "KeyFormatType",
    "InitialDate",
    "LastChangeDate",
    "DestroyDate",
    "CompromiseDate",
    "RecommendedCurve",
    "CryptographicDomainParameters",
];

impl<S: Store> Kms<S> {
    /// A KMS over `store`.
    pub fn new(store: S, config: KmsConfig) -> Self {
        Kms { store, config }
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The configuration.
    pub fn config(&self) -> &KmsConfig {
        &self.config
    }

    /// Handle a `POST /kmip/2_1` body: one operation (`{"tag":"Create",...}`) answered with its
    /// `...Response` payload, or a `RequestMessage` answered with a `ResponseMessage`.
    pub fn kmip_json(&self, env: &mut Env, user: &str, body: &[u8]) -> KResult<Vec<u8>> {
        if user.is_empty() {
            return Err(KmsError::Unauthenticated);
        }
        if body.len() > self.config.json_limits.max_bytes {
            return Err(KmsError::TooLarge);
        }
        let t = json::from_slice(body, &self.config.json_limits)?;
        let out = self.kmip(env, user, &t)?;
        Ok(json::to_vec(&out))
    }

    /// Handle a parsed request item (see [`Kms::kmip_json`]).
    pub fn kmip(&self, env: &mut Env, user: &str, t: &Ttlv) -> KResult<Ttlv> {
        if user.is_empty() {
            return Err(KmsError::Unauthenticated);
        }
        if t.tag == "RequestMessage" {
            return self.batch(env, user, t);
        }
        let op = operation_from_tag(&t.tag).ok_or(kerr(
            ResultReason::OperationNotSupported,
            "unknown or unsupported operation",
        ))?;
        let resp = self.execute(env, user, op, t)?;
        Ok(resp.to_ttlv(None))
    }

    fn batch(&self, env: &mut Env, user: &str, msg: &Ttlv) -> KResult<Ttlv> {
        let header = msg.req("RequestHeader")?;
        if let Some(pv) = header.get("ProtocolVersion") {
            let major = pv.opt_int("ProtocolVersionMajor")?.unwrap_or(2);
            if major != 2 {
                return Err(kerr(
                    ResultReason::UnsupportedProtocolVersion,
                    "only KMIP 2.x JSON is supported",
                ));
            }
        }
        let stop_on_error = match header.get("BatchErrorContinuationOption") {
            // KMIP 2.1 §11.4: 1 Continue, 2 Stop, 3 Undo.
            Some(o) => matches!(&o.value, Value::Enumeration(e) if matches!(e,
                crate::kmip::ttlv::EnumValue::Code(2))
                || matches!(e, crate::kmip::ttlv::EnumValue::Name(n) if n == "Stop")),
            None => false,
        };
        let items: Vec<&Ttlv> = msg.all("BatchItem").collect();
        if items.len() > self.config.max_batch_items {
            return Err(kerr(ResultReason::InvalidMessage, "too many batch items"));
        }
        let mut out = Vec::with_capacity(items.len() + 1);
        out.push(Ttlv::structure(
            "ResponseHeader",
            alloc::vec![
                Ttlv::structure(
                    "ProtocolVersion",
                    alloc::vec![
                        Ttlv::int("ProtocolVersionMajor", 2),
                        Ttlv::int("ProtocolVersionMinor", 1)
                    ],
                ),
                Ttlv::datetime("TimeStamp", env.now),
                Ttlv::int("BatchCount", i32::try_from(items.len()).unwrap_or(i32::MAX)),
            ],
        ));
        let mut failed = false;
        for item in items {
            let id = item.get("UniqueBatchItemID").cloned();
            let op_item = item.get("Operation").cloned();
            let result = if failed && stop_on_error {
                Err(kerr(
                    ResultReason::OperationCanceledByRequester,
                    "not executed: an earlier batch item failed",
                ))
            } else {
                match item.get("Operation").map(Operation::parse) {
                    None => Err(KmsError::from(crate::kmip::ttlv::FieldError::Missing(
                        "Operation",
                    ))),
                    Some(Err(_)) => Err(kerr(
                        ResultReason::OperationNotSupported,
                        "unknown or unsupported operation",
                    )),
                    Some(Ok(op)) => match item.get("RequestPayload") {
                        None => {
                            Err(crate::kmip::ttlv::FieldError::Missing("RequestPayload").into())
                        }
                        Some(p) => self.execute(env, user, op, p),
                    },
                }
            };
            let mut v = Vec::new();
            if let Some(o) = op_item {
                v.push(o);
            }
            if let Some(i) = id {
                v.push(i);
            }
            match result {
                Ok(resp) => {
                    v.push(ResultStatus::Success.to_ttlv());
                    v.push(resp.to_ttlv(Some("ResponsePayload")));
                }
                Err(e) => {
                    failed = true;
                    v.push(ResultStatus::OperationFailed.to_ttlv());
                    v.push(e.result_reason().to_ttlv());
                    v.push(Ttlv::text("ResultMessage", &e.to_string()));
                }
            }
            out.push(Ttlv::structure("BatchItem", v));
        }
        Ok(Ttlv::structure("ResponseMessage", out))
    }

    fn execute(
        &self,
        env: &mut Env,
        user: &str,
        op: Operation,
        payload: &Ttlv,
    ) -> KResult<Response> {
        let req = Request::parse(op, payload)?;
        match req {
            Request::Create {
                object_type,
                attributes,
            } => self.create(env, user, object_type, &attributes),
            Request::CreateKeyPair {
                common,
                private,
                public,
            } => self.create_key_pair(env, user, &common, &private, &public),
            Request::Register {
                import,
                uid,
                object_type,
                replace,
                attributes,
                mut key,
            } => self.register(
                env,
                user,
                import,
                uid,
                object_type,
                replace,
                &attributes,
                &mut key,
            ),
            Request::Get {
                uid,
                key_format_type,
                export,
            } => self.get(env, user, uid.as_deref(), key_format_type, export),
            Request::GetAttributes { uid, references } => {
                let (o, _) = self.resolve(user, uid.as_deref(), Right::GetAttributes)?;
                let all = self.full_attributes(&o, env.now);
                let attributes = if references.is_empty() {
                    all
                } else {
                    filter_attributes(&all, &references)
                };
                Ok(Response::GetAttributes {
                    uid: o.uid.clone(),
                    attributes,
                })
            }
            Request::GetAttributeList { uid } => {
                let (o, _) = self.resolve(user, uid.as_deref(), Right::GetAttributes)?;
                let all = self.full_attributes(&o, env.now).to_ttlv("Attributes");
                let mut references = Vec::new();
                let mut seen = BTreeSet::new();
                for c in all.children() {
                    if c.tag == "VendorAttributes" {
                        for v in c.children() {
                            let mut s = alloc::vec![];
                            if let Some(x) = v.get("VendorIdentification") {
                                s.push(x.clone());
                            }
                            if let Some(x) = v.get("AttributeName") {
                                s.push(x.clone());
                            }
                            references.push(Ttlv::structure("AttributeReference", s));
                        }
                    } else if seen.insert(c.tag.clone()) {
                        references.push(Ttlv::enumeration("AttributeReference", &c.tag));
                    }
                }
                Ok(Response::GetAttributeList {
                    uid: o.uid.clone(),
                    references,
                })
            }
            Request::AddAttribute { uid, attribute } => {
                let o =
                    self.modify_attribute(env, user, uid.as_deref(), AttrEdit::Add(&attribute))?;
                Ok(Response::AddAttribute { uid: o })
            }
            Request::SetAttribute { uid, attribute } => {
                let o =
                    self.modify_attribute(env, user, uid.as_deref(), AttrEdit::Set(&attribute))?;
                Ok(Response::SetAttribute { uid: o })
            }
            Request::DeleteAttribute {
                uid,
                current,
                reference,
            } => {
                let o = self.modify_attribute(
                    env,
                    user,
                    uid.as_deref(),
                    AttrEdit::Delete(current.as_ref(), reference.as_deref()),
                )?;
                Ok(Response::DeleteAttribute { uid: o })
            }
            Request::Locate {
                max_items,
                offset_items,
                attributes,
            } => self.locate(env, user, max_items, offset_items, &attributes),
            Request::Activate { uid } => {
                let now = env.now;
                let (uid, _) = self.update(
                    user,
                    uid.as_deref(),
                    Right::Activate,
                    |o| {
                        if o.effective_state(now) != State::PreActive {
                            return Err(kerr(
                                ResultReason::WrongKeyLifecycleState,
                                "only a PreActive object can be activated",
                            ));
                        }
                        o.state = State::Active;
                        o.attributes.activation_date = Some(now);
                        Ok(())
                    },
                    now,
                )?;
                Ok(Response::Activate { uid })
            }
            Request::Revoke {
                uid,
                reason,
                compromise_date,
            } => {
                let uid = self.revoke(env, user, uid.as_deref(), reason, compromise_date)?;
                Ok(Response::Revoke { uid })
            }
            Request::Destroy { uid } => {
                let uid = self.destroy(env, user, uid.as_deref())?;
                Ok(Response::Destroy { uid })
            }
            Request::ReKey { uid, attributes } => {
                self.rekey(env, user, uid.as_deref(), &attributes)
            }
            Request::Encrypt {
                uid,
                params,
                data,
                nonce,
                aad,
                spelling,
            } => {
                let (o, _) = self.resolve(user, uid.as_deref(), Right::Encrypt)?;
                let (alg, key) =
                    self.symmetric_for(&o, env.now, usage::ENCRYPT, params.as_ref())?;
                let nonce = match nonce {
                    Some(n) => n,
                    None => {
                        let mut n = alloc::vec![0u8; aead::NONCE_LEN];
                        env.rng
                            .fill(&mut n)
                            .map_err(|_| KmsError::Internal("random number generator failure"))?;
                        n
                    }
                };
                let (ct, tag) =
                    aead::encrypt(alg, key, &nonce, aad.as_deref().unwrap_or(&[]), &data)?;
                Ok(Response::Encrypt {
                    uid: o.uid.clone(),
                    data: ct,
                    nonce,
                    tag: tag.to_vec(),
                    spelling,
                })
            }
            Request::Decrypt {
                uid,
                params,
                data,
                nonce,
                tag,
                aad,
                ..
            } => {
                let (o, _) = self.resolve(user, uid.as_deref(), Right::Decrypt)?;
                let (alg, key) =
                    self.symmetric_for(&o, env.now, usage::DECRYPT, params.as_ref())?;
                let aad = aad.as_deref().unwrap_or(&[]);
                let pt = match (nonce, tag) {
                    (Some(n), Some(t)) => aead::decrypt(alg, key, &n, aad, &data, &t)?,
                    // Cosmian's file format: nonce ‖ ciphertext ‖ tag in Data.
                    (None, None) => {
                        let min = aead::NONCE_LEN + aead::TAG_LEN;
                        if data.len() < min {
                            return Err(kerr(
                                ResultReason::InvalidField,
                                "Data is shorter than nonce and tag",
                            ));
                        }
                        let (n, rest) = data.split_at(aead::NONCE_LEN);
                        let (c, t) = rest.split_at(rest.len() - aead::TAG_LEN);
                        aead::decrypt(alg, key, n, aad, c, t)?
                    }
                    _ => {
                        return Err(kerr(
                            ResultReason::MissingData,
                            "IVCounterNonce and AuthenticatedEncryptionTag go together",
                        ));
                    }
                };
                Ok(Response::Decrypt {
                    uid: o.uid.clone(),
                    data: pt,
                })
            }
            Request::Sign { uid, params, data } => {
                let (o, _) = self.resolve(user, uid.as_deref(), Right::Sign)?;
                if o.object_type != ObjectType::PrivateKey {
                    return Err(kerr(
                        ResultReason::InvalidObjectType,
                        "Sign needs a private key",
                    ));
                }
                self.usable(&o, env.now, usage::SIGN)?;
                let curve = curve_of(&o.attributes).ok_or(kerr(
                    ResultReason::CryptographicFailure,
                    "unknown key curve",
                ))?;
                check_sig_params(curve, params.as_ref())?;
                let material = o.material.as_ref().ok_or(DESTROYED)?;
                let signature = asym::sign(curve, material, &data)?;
                Ok(Response::Sign {
                    uid: o.uid.clone(),
                    signature,
                })
            }
            Request::SignatureVerify {
                uid,
                params,
                data,
                signature,
            } => {
                let (o, _) = self.resolve(user, uid.as_deref(), Right::SignatureVerify)?;
                let mask = match o.object_type {
                    ObjectType::PublicKey => usage::VERIFY,
                    ObjectType::PrivateKey => usage::VERIFY | usage::SIGN,
                    _ => {
                        return Err(kerr(
                            ResultReason::InvalidObjectType,
                            "SignatureVerify needs a public or private key",
                        ));
                    }
                };
                self.usable(&o, env.now, mask)?;
                let curve = curve_of(&o.attributes).ok_or(kerr(
                    ResultReason::CryptographicFailure,
                    "unknown key curve",
                ))?;
                check_sig_params(curve, params.as_ref())?;
                let material = o.material.as_ref().ok_or(DESTROYED)?;
                let spki = if o.object_type == ObjectType::PrivateKey {
                    asym::from_pkcs8(Some(curve), material)?.1.public_spki
                } else {
                    material.to_vec()
                };
                let valid = match asym::verify(curve, &spki, &data, &signature) {
                    Ok(v) => v,
                    Err(crate::crypto::CryptoError::InvalidSignature) => false,
                    Err(e) => return Err(e.into()),
                };
                Ok(Response::SignatureVerify {
                    uid: o.uid.clone(),
                    valid,
                })
            }
            Request::Query { functions } => {
                let all = functions.is_empty();
                let operations = if all || functions.contains(&QueryFunction::QueryOperations) {
                    Operation::ALL
                        .iter()
                        .copied()
                        .filter(|o| *o != Operation::ModifyAttribute)
                        .collect()
                } else {
                    Vec::new()
                };
                let object_types = if all || functions.contains(&QueryFunction::QueryObjects) {
                    alloc::vec![
                        ObjectType::SymmetricKey,
                        ObjectType::PrivateKey,
                        ObjectType::PublicKey
                    ]
                } else {
                    Vec::new()
                };
                Ok(Response::Query {
                    operations,
                    object_types,
                    vendor: self.config.vendor.into(),
                    server: self.config.server_name.into(),
                })
            }
            Request::DiscoverVersions => Ok(Response::DiscoverVersions),
        }
    }

    // ---------------------------------------------------------------- object access

    fn load(&self, uid: &str) -> KResult<Option<(ManagedObject, Version)>> {
        match self.store.get(uid)? {
            None => Ok(None),
            Some((r, v)) => Ok(Some((ManagedObject::from_record(&r)?, v))),
        }
    }

    /// Uids visible to `user` (owned or granted) matching every keyword.
    fn visible(&self, user: &str, keywords: &[String]) -> KResult<Vec<String>> {
        let mut q = keywords.to_vec();
        q.push(alloc::format!("owner={user}"));
        let mut uids: BTreeSet<String> = self.store.search(&q)?.into_iter().collect();
        if let Some(last) = q.last_mut() {
            *last = alloc::format!("grant={user}");
        }
        uids.extend(self.store.search(&q)?);
        Ok(uids.into_iter().collect())
    }

    /// Find the object `uid` names (a uid, or `["tag", ...]`) and check `user` holds `right`.
    fn resolve(
        &self,
        user: &str,
        uid: Option<&str>,
        right: Right,
    ) -> KResult<(ManagedObject, Version)> {
        let uid = uid.ok_or(kerr(
            ResultReason::MissingData,
            "UniqueIdentifier is required (ID placeholders are not supported)",
        ))?;
        let allowed = |o: &ManagedObject| {
            let m = o.rights_of(user);
            m & right.bit() != 0
                // Get implies Export and GetAttributes, as in the Cosmian KMS.
                || (matches!(right, Right::Export | Right::GetAttributes) && m & Right::Get.bit() != 0)
        };
        if uid.starts_with('[') {
            let tags = parse_tags(uid.as_bytes()).map_err(|_| {
                kerr(
                    ResultReason::InvalidField,
                    "invalid tag list in UniqueIdentifier",
                )
            })?;
            if tags.is_empty() {
                return Err(kerr(
                    ResultReason::InvalidField,
                    "empty tag list in UniqueIdentifier",
                ));
            }
            let kw: Vec<String> = tags.iter().map(|t| alloc::format!("tag={t}")).collect();
            let mut found = None;
            for u in self.visible(user, &kw)? {
                if let Some((o, v)) = self.load(&u)?
                    && allowed(&o)
                {
                    if found.is_some() {
                        return Err(kerr(
                            ResultReason::InvalidField,
                            "these tags select more than one object",
                        ));
                    }
                    found = Some((o, v));
                }
            }
            return found.ok_or(NOT_FOUND);
        }
        let (o, v) = self.load(uid)?.ok_or(NOT_FOUND)?;
        if !allowed(&o) {
            return Err(DENIED);
        }
        Ok((o, v))
    }

    /// Compare-and-swap update of one object with bounded retries; returns the uid and `f`'s
    /// result.
    fn update<R>(
        &self,
        user: &str,
        uid: Option<&str>,
        right: Right,
        mut f: impl FnMut(&mut ManagedObject) -> KResult<R>,
        now: i64,
    ) -> KResult<(String, R)> {
        for _ in 0..self.config.max_cas_retries {
            let (mut o, v) = self.resolve(user, uid, right)?;
            let r = f(&mut o)?;
            o.attributes.last_change_date = Some(now);
            match self.store.update(&o.to_record(), v) {
                Ok(_) => return Ok((o.uid.clone(), r)),
                Err(StoreError::Conflict) => continue,
                Err(StoreError::NotFound) => return Err(NOT_FOUND),
                Err(e) => return Err(e.into()),
            }
        }
        Err(KmsError::Store(StoreError::Conflict))
    }

    fn insert(&self, o: &ManagedObject) -> KResult<()> {
        match self.store.insert(&o.to_record()) {
            Ok(_) => Ok(()),
            Err(StoreError::AlreadyExists) => Err(kerr(
                ResultReason::ObjectAlreadyExists,
                "an object with this UniqueIdentifier exists",
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// Attributes as reported to clients: stored attributes plus the server-held ones.
    fn full_attributes(&self, o: &ManagedObject, now: i64) -> Attributes {
        let mut a = o.attributes.clone();
        a.unique_identifier = Some(o.uid.clone());
        a.object_type = Some(o.object_type);
        a.state = Some(o.effective_state(now));
        a
    }

    /// Lifecycle and usage-mask checks before a cryptographic use.
    fn usable(&self, o: &ManagedObject, now: i64, mask: u32) -> KResult<()> {
        match o.effective_state(now) {
            State::Active => {}
            State::PreActive => {
                return Err(kerr(
                    ResultReason::WrongKeyLifecycleState,
                    "the key is not active yet (PreActive): activate it first",
                ));
            }
            State::Deactivated | State::Compromised => {
                return Err(kerr(
                    ResultReason::WrongKeyLifecycleState,
                    "the key is revoked",
                ));
            }
            State::Destroyed | State::DestroyedCompromised => return Err(DESTROYED),
        }
        if let Some(m) = o.attributes.cryptographic_usage_mask
            && m & mask == 0
        {
            return Err(kerr(
                ResultReason::IncompatibleCryptographicUsageMask,
                "the key's usage mask does not allow this operation",
            ));
        }
        Ok(())
    }

    fn symmetric_for<'o>(
        &self,
        o: &'o ManagedObject,
        now: i64,
        mask: u32,
        params: Option<&CryptographicParameters>,
    ) -> KResult<(AeadAlg, &'o [u8])> {
        if o.object_type != ObjectType::SymmetricKey {
            return Err(kerr(
                ResultReason::InvalidObjectType,
                "only symmetric keys encrypt and decrypt here",
            ));
        }
        self.usable(o, now, mask)?;
        let key = o.material.as_ref().ok_or(DESTROYED)?;
        let unsupported = kerr(
            ResultReason::UnsupportedCryptographicParameters,
            "unsupported cryptographic parameters for this key",
        );
        let p = params.cloned().unwrap_or_default();
        if p.tag_length
            .is_some_and(|t| usize::try_from(t).ok() != Some(aead::TAG_LEN))
        {
            return Err(unsupported);
        }
        let alg = match o.algorithm() {
            Some(CryptographicAlgorithm::AES) => {
                if p.cryptographic_algorithm
                    .is_some_and(|a| a != CryptographicAlgorithm::AES)
                {
                    return Err(unsupported);
                }
                match p.block_cipher_mode {
                    None | Some(BlockCipherMode::GCM) => AeadAlg::AesGcm,
                    Some(BlockCipherMode::GCMSIV) => AeadAlg::AesGcmSiv,
                    _ => return Err(unsupported),
                }
            }
            Some(CryptographicAlgorithm::ChaCha20 | CryptographicAlgorithm::ChaCha20Poly1305) => {
                if p.cryptographic_algorithm.is_some_and(|a| {
                    !matches!(
                        a,
                        CryptographicAlgorithm::ChaCha20 | CryptographicAlgorithm::ChaCha20Poly1305
                    )
                }) || !matches!(p.block_cipher_mode, None | Some(BlockCipherMode::AEAD))
                {
                    return Err(unsupported);
                }
                AeadAlg::ChaCha20Poly1305
            }
            _ => return Err(unsupported),
        };
        Ok((alg, key))
    }

    // ---------------------------------------------------------------- operations

    fn prepare_attributes(
        &self,
        env: &mut Env,
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
        let mut a = attrs.clone();
        a.unique_identifier = None;
        a.state = None;
        a.object_type = Some(object_type);
        a.initial_date = Some(env.now);
        a.last_change_date = Some(env.now);
        a.destroy_date = None;
        a.compromise_date = None;
        if let Some(t) = system_tag(object_type)
            && !a.tags.iter().any(|x| x == t)
        {
            a.tags.push(t.into());
        }
        Ok((uid, a))
    }

    fn create(
        &self,
        env: &mut Env,
        user: &str,
        object_type: ObjectType,
        attrs: &Attributes,
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
            (
                CryptographicAlgorithm::AES
                | CryptographicAlgorithm::ChaCha20
                | CryptographicAlgorithm::ChaCha20Poly1305,
                _,
            ) => {
                return Err(kerr(
                    ResultReason::InvalidField,
                    "unsupported CryptographicLength for this algorithm",
                ));
            }
            _ => {
                return Err(kerr(
                    ResultReason::UnsupportedCryptographicParameters,
                    "Create supports AES and ChaCha20 keys",
                ));
            }
        };
        let (uid, mut a) = self.prepare_attributes(env, attrs, object_type)?;
        a.cryptographic_length = Some(bits);
        a.key_format_type = Some(match attrs.key_format_type {
            Some(KeyFormatType::Raw) => KeyFormatType::Raw,
            _ => KeyFormatType::TransparentSymmetricKey,
        });
        a.cryptographic_usage_mask
            .get_or_insert(usage::ENCRYPT | usage::DECRYPT | usage::WRAP_KEY | usage::UNWRAP_KEY);
        let mut key = Zeroizing::new(alloc::vec![0u8; usize::try_from(bits / 8).unwrap_or(32)]);
        env.rng
            .fill(&mut key)
            .map_err(|_| KmsError::Internal("random number generator failure"))?;
        let o = ManagedObject {
            uid: uid.clone(),
            object_type,
            state: initial_state(&a, env.now),
            owner: user.into(),
            material: Some(key),
            grants: Vec::new(),
            attributes: a,
        };
        self.insert(&o)?;
        Ok(Response::Create { object_type, uid })
    }

    fn create_key_pair(
        &self,
        env: &mut Env,
        user: &str,
        common: &Attributes,
        private: &Attributes,
        public: &Attributes,
    ) -> KResult<Response> {
        let pa = merge(common, private);
        let qa = merge(common, public);
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
        let (sk_uid, mut sa) = self.prepare_attributes(env, &pa, ObjectType::PrivateKey)?;
        let (pk_uid, mut pb) = self.prepare_attributes(env, &qa, ObjectType::PublicKey)?;
        if sk_uid == pk_uid {
            return Err(kerr(
                ResultReason::InvalidField,
                "the two keys need different UniqueIdentifiers",
            ));
        }
        for (a, kft, mask, link, other) in [
            (
                &mut sa,
                KeyFormatType::PKCS8,
                usage::SIGN,
                LinkType::PublicKeyLink,
                &pk_uid,
            ),
            (
                &mut pb,
                KeyFormatType::X509,
                usage::VERIFY,
                LinkType::PrivateKeyLink,
                &sk_uid,
            ),
        ] {
            a.cryptographic_algorithm = Some(curve_alg(curve, pa.cryptographic_algorithm));
            a.cryptographic_length = Some(curve.bits());
            a.recommended_curve = Some(curve_enum(curve));
            a.key_format_type = Some(kft);
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
        self.insert(&sk)?;
        if let Err(e) = self.insert(&pk) {
            // Do not leave half a pair behind.
            if let Ok(Some((_, v))) = self.store.get(&sk_uid) {
                let _ = self.store.delete(&sk_uid, v);
            }
            return Err(e);
        }
        Ok(Response::CreateKeyPair {
            private_uid: sk_uid,
            public_uid: pk_uid,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn register(
        &self,
        env: &mut Env,
        user: &str,
        import: bool,
        uid: Option<String>,
        object_type: ObjectType,
        replace: bool,
        attributes: &Attributes,
        key: &mut KeyBlock,
    ) -> KResult<Response> {
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
                    _ => {
                        return Err(kerr(
                            ResultReason::UnsupportedCryptographicParameters,
                            "symmetric keys must be AES or ChaCha20",
                        ));
                    }
                };
                if !ok {
                    return Err(kerr(
                        ResultReason::InvalidField,
                        "key length does not fit the algorithm",
                    ));
                }
                attrs.cryptographic_length = Some(i32::try_from(raw.len() * 8).unwrap_or(0));
                attrs.key_format_type = Some(kft);
                attrs
                    .cryptographic_usage_mask
                    .get_or_insert(usage::ENCRYPT | usage::DECRYPT);
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
            _ => {
                return Err(kerr(
                    ResultReason::InvalidObjectType,
                    "only symmetric, private and public keys can be registered",
                ));
            }
        };
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
        match self.insert(&o) {
            Ok(()) => {}
            Err(KmsError::Kmip(KmipError {
                reason: ResultReason::ObjectAlreadyExists,
                ..
            })) if import && replace => {
                let now = env.now;
                self.update(
                    user,
                    Some(&uid),
                    Right::Import,
                    |old| {
                        o.owner = old.owner.clone();
                        o.grants = old.grants.clone();
                        *old = o.clone();
                        Ok(())
                    },
                    now,
                )?;
            }
            Err(e) => return Err(e),
        }
        Ok(Response::Register { import, uid })
    }

    fn get(
        &self,
        env: &mut Env,
        user: &str,
        uid: Option<&str>,
        kft: Option<KeyFormatType>,
        export: bool,
    ) -> KResult<Response> {
        let (o, _) = self.resolve(user, uid, if export { Right::Export } else { Right::Get })?;
        let material = o.material.as_ref().ok_or(DESTROYED)?;
        let unsupported = kerr(
            ResultReason::KeyFormatTypeNotSupported,
            "this key cannot be exported in that format",
        );
        let curve = curve_of(&o.attributes);
        let (format, bytes, tcurve): (KeyFormatType, Zeroizing<Vec<u8>>, Option<RecommendedCurve>) =
            match o.object_type {
                ObjectType::SymmetricKey => {
                    // Raw is KMIP's default for symmetric keys, and what the Cosmian KMS answers.
                    let f = kft.unwrap_or(KeyFormatType::Raw);
                    if !matches!(
                        f,
                        KeyFormatType::Raw | KeyFormatType::TransparentSymmetricKey
                    ) {
                        return Err(unsupported);
                    }
                    (f, material.clone(), None)
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
                _ => return Err(unsupported),
            };
        let full = self.full_attributes(&o, env.now);
        let key = KeyBlock {
            key_format_type: format,
            material: bytes.to_vec(),
            curve: tcurve,
            cryptographic_algorithm: o.attributes.cryptographic_algorithm,
            cryptographic_length: o.attributes.cryptographic_length,
            attributes: Some(full.clone()),
        };
        Ok(Response::Get {
            export,
            object_type: o.object_type,
            uid: o.uid.clone(),
            attributes: if export { Some(full) } else { None },
            key,
        })
    }

    fn modify_attribute(
        &self,
        env: &mut Env,
        user: &str,
        uid: Option<&str>,
        edit: AttrEdit<'_>,
    ) -> KResult<String> {
        let now = env.now;
        let target = match edit {
            AttrEdit::Add(a) | AttrEdit::Set(a) | AttrEdit::Delete(Some(a), _) => a.tag.as_str(),
            AttrEdit::Delete(None, Some(r)) => r,
            AttrEdit::Delete(None, None) => {
                return Err(kerr(ResultReason::MissingData, "no attribute named"));
            }
        };
        if READ_ONLY.contains(&target) {
            return Err(kerr(
                ResultReason::InvalidField,
                "this attribute is read-only",
            ));
        }
        let right = match edit {
            AttrEdit::Add(_) => Right::AddAttribute,
            AttrEdit::Set(_) => Right::SetAttribute,
            AttrEdit::Delete(..) => Right::DeleteAttribute,
        };
        let (uid, ()) = self.update(
            user,
            uid,
            right,
            |o| {
                let a = &mut o.attributes;
                match edit {
                    AttrEdit::Add(item) => {
                        let mut single = Attributes::default();
                        single.absorb(item)?;
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
                                ResultReason::InvalidField,
                                "the attribute is already set: use SetAttribute",
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
                // An Activation Date set in the past on a PreActive object makes it Active.
                if o.state == State::PreActive
                    && o.attributes.activation_date.is_some_and(|d| d <= now)
                {
                    o.state = State::Active;
                }
                Ok(())
            },
            now,
        )?;
        Ok(uid)
    }

    fn locate(
        &self,
        env: &mut Env,
        user: &str,
        max_items: Option<i32>,
        offset_items: Option<i32>,
        a: &Attributes,
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
                self.visible(user, &[alloc::format!("state={}", s.name())])?
            }
            Some(s) => {
                // States depend on dates: filter on the effective state of each candidate.
                let cands = self.candidates(user, &kw, a.object_type.is_none())?;
                let mut out = Vec::new();
                for u in cands {
                    if let Some((o, _)) = self.load(&u)?
                        && o.effective_state(env.now) == s
                    {
                        out.push(u);
                    }
                }
                out
            }
            None => self.candidates(user, &kw, a.object_type.is_none())?,
        };
        uids.sort();
        uids.dedup();
        let total = i32::try_from(uids.len()).unwrap_or(i32::MAX);
        let offset = usize::try_from(offset_items.unwrap_or(0).max(0)).unwrap_or(0);
        let max = match max_items {
            Some(m) if m >= 0 => usize::try_from(m).unwrap_or(usize::MAX),
            _ => usize::MAX,
        };
        let uids = uids.into_iter().skip(offset).take(max).collect();
        Ok(Response::Locate { total, uids })
    }

    /// Live objects (never destroyed ones: those only carry `state=`, `owner=`, `grant=`).
    fn candidates(&self, user: &str, kw: &[String], any_type: bool) -> KResult<Vec<String>> {
        if !any_type || kw.iter().any(|k| !k.starts_with("type=")) && !kw.is_empty() {
            return self.visible(user, kw);
        }
        let mut out = Vec::new();
        for t in [
            ObjectType::SymmetricKey,
            ObjectType::PrivateKey,
            ObjectType::PublicKey,
        ] {
            let mut q = kw.to_vec();
            q.push(alloc::format!("type={}", t.name()));
            out.extend(self.visible(user, &q)?);
        }
        Ok(out)
    }

    fn revoke(
        &self,
        env: &mut Env,
        user: &str,
        uid: Option<&str>,
        reason: RevocationReasonCode,
        compromise: Option<i64>,
    ) -> KResult<String> {
        let now = env.now;
        let compromised = matches!(
            reason,
            RevocationReasonCode::KeyCompromise | RevocationReasonCode::CACompromise
        );
        let apply = |o: &mut ManagedObject| -> KResult<Vec<String>> {
            let next = match (o.effective_state(now), compromised) {
                (State::PreActive | State::Active | State::Deactivated, true) => State::Compromised,
                (State::PreActive | State::Active, false) => State::Deactivated,
                (State::Deactivated | State::Compromised, _) => {
                    return Err(kerr(
                        ResultReason::WrongKeyLifecycleState,
                        "the object is already revoked",
                    ));
                }
                (State::Destroyed | State::DestroyedCompromised, _) => return Err(DESTROYED),
            };
            if next == State::Compromised {
                o.attributes.compromise_date = Some(compromise.unwrap_or(now));
            }
            if o.attributes.deactivation_date.is_none_or(|d| d > now) {
                o.attributes.deactivation_date = Some(now);
            }
            o.state = next;
            Ok(pair_links(o))
        };
        let (uid, linked) = self.update(user, uid, Right::Revoke, apply, now)?;
        // The other half of a key pair follows (KMIP 2.1 §6.1.48 leaves it to the server).
        for l in linked {
            let _ = self.update(user, Some(&l), Right::Revoke, apply, now);
        }
        Ok(uid)
    }

    fn destroy(&self, env: &mut Env, user: &str, uid: Option<&str>) -> KResult<String> {
        let now = env.now;
        let apply = |o: &mut ManagedObject| -> KResult<Vec<String>> {
            o.state = match o.effective_state(now) {
                State::Active => {
                    return Err(kerr(
                        ResultReason::WrongKeyLifecycleState,
                        "the object is active: revoke it before destroying it",
                    ));
                }
                State::PreActive | State::Deactivated => State::Destroyed,
                State::Compromised => State::DestroyedCompromised,
                State::Destroyed | State::DestroyedCompromised => return Err(DESTROYED),
            };
            // Dropping the Zeroizing buffer wipes the key material.
            o.material = None;
            o.attributes.destroy_date = Some(now);
            Ok(pair_links(o))
        };
        let (uid, linked) = self.update(user, uid, Right::Destroy, apply, now)?;
        for l in linked {
            let _ = self.update(user, Some(&l), Right::Destroy, apply, now);
        }
        Ok(uid)
    }

    fn rekey(
        &self,
        env: &mut Env,
        user: &str,
        uid: Option<&str>,
        attrs: &Attributes,
    ) -> KResult<Response> {
        let now = env.now;
        let (old, _) = self.resolve(user, uid, Right::Rekey)?;
        if old.object_type != ObjectType::SymmetricKey {
            return Err(kerr(
                ResultReason::InvalidObjectType,
                "ReKey renews symmetric keys only",
            ));
        }
        let len = old.material.as_ref().ok_or(DESTROYED)?.len();
        let new_uid = match &attrs.unique_identifier {
            Some(u) => {
                check_uid(u)?;
                u.clone()
            }
            None => new_uid(env)?,
        };
        let mut key = Zeroizing::new(alloc::vec![0u8; len]);
        env.rng
            .fill(&mut key)
            .map_err(|_| KmsError::Internal("random number generator failure"))?;
        let mut a = merge(
            &old.attributes,
            &Attributes {
                unique_identifier: None,
                ..attrs.clone()
            },
        );
        a.initial_date = Some(now);
        a.last_change_date = Some(now);
        a.activation_date = Some(now);
        a.deactivation_date = None;
        a.compromise_date = None;
        a.destroy_date = None;
        a.links.retain(|l| {
            !matches!(
                l.link_type,
                LinkType::ReplacedObjectLink | LinkType::ReplacementObjectLink
            )
        });
        a.links.push(Link {
            link_type: LinkType::ReplacedObjectLink,
            uid: old.uid.clone(),
        });
        let new = ManagedObject {
            uid: new_uid.clone(),
            object_type: ObjectType::SymmetricKey,
            state: State::Active,
            owner: old.owner.clone(),
            material: Some(key),
            grants: old.grants.clone(),
            attributes: a,
        };
        self.insert(&new)?;
        // The old key keeps its material and state (old data stays decryptable) but hands its
        // tags and names to the new key, so `["tag"]` keeps selecting one object.
        let nu = new_uid.clone();
        self.update(
            user,
            Some(&old.uid),
            Right::Rekey,
            |o| {
                o.attributes.tags.retain(|t| is_system_tag(t));
                o.attributes.names.clear();
                o.attributes
                    .links
                    .retain(|l| l.link_type != LinkType::ReplacementObjectLink);
                o.attributes.links.push(Link {
                    link_type: LinkType::ReplacementObjectLink,
                    uid: nu.clone(),
                });
                Ok(())
            },
            now,
        )?;
        Ok(Response::ReKey { uid: new_uid })
    }

    // ---------------------------------------------------------------- access rights

    fn owned_object(&self, user: &str, uid: &str) -> KResult<(ManagedObject, Version)> {
        if user.is_empty() {
            return Err(KmsError::Unauthenticated);
        }
        let (o, v) = if uid.starts_with('[') {
            match self.resolve(user, Some(uid), Right::Get) {
                Ok(x) => x,
                Err(KmsError::Kmip(KmipError {
                    reason: ResultReason::ItemNotFound,
                    ..
                })) => return Err(KmsError::UnknownObject),
                Err(e) => return Err(e),
            }
        } else {
            self.load(uid)?.ok_or(KmsError::UnknownObject)?
        };
        if o.owner != user {
            return Err(kerr(
                ResultReason::PermissionDenied,
                "only the owner of an object manages its access rights",
            ));
        }
        Ok((o, v))
    }

    fn edit_grants(
        &self,
        user: &str,
        uid: &str,
        grantee: &str,
        ops: &[String],
        add: bool,
    ) -> KResult<String> {
        if grantee.is_empty() {
            return Err(kerr(ResultReason::MissingData, "user_id is required"));
        }
        if ops.is_empty() {
            return Err(kerr(
                ResultReason::MissingData,
                "operation_types is required",
            ));
        }
        let mut mask = 0u32;
        for op in ops {
            let r = Right::from_name(op).ok_or(kerr(
                ResultReason::InvalidField,
                "unknown operation type in access request",
            ))?;
            mask |= r.bit();
        }
        for _ in 0..self.config.max_cas_retries {
            let (mut o, v) = self.owned_object(user, uid)?;
            if grantee == o.owner {
                return Err(kerr(
                    ResultReason::InvalidField,
                    "the owner already holds every right",
                ));
            }
            match o.grants.iter_mut().find(|(u, _)| u == grantee) {
                Some((_, m)) if add => *m |= mask,
                Some((_, m)) => *m &= !mask,
                None if add => o.grants.push((grantee.into(), mask)),
                None => {}
            }
            o.grants.retain(|(_, m)| *m != 0);
            match self.store.update(&o.to_record(), v) {
                Ok(_) => return Ok(o.uid),
                Err(StoreError::Conflict) => continue,
                Err(StoreError::NotFound) => return Err(KmsError::UnknownObject),
                Err(e) => return Err(e.into()),
            }
        }
        Err(KmsError::Store(StoreError::Conflict))
    }

    /// `POST /access/grant`: the owner `user` gives `grantee` the rights named in `ops`.
    pub fn grant_access(
        &self,
        _env: &mut Env,
        user: &str,
        uid: &str,
        grantee: &str,
        ops: &[String],
    ) -> KResult<SuccessResponse> {
        let uid = self.edit_grants(user, uid, grantee, ops, true)?;
        Ok(SuccessResponse {
            success: alloc::format!("Access for {grantee} successfully added to object {uid}"),
        })
    }

    /// `POST /access/revoke`: the owner `user` takes the rights named in `ops` from `grantee`.
    pub fn revoke_access(
        &self,
        _env: &mut Env,
        user: &str,
        uid: &str,
        grantee: &str,
        ops: &[String],
    ) -> KResult<SuccessResponse> {
        let uid = self.edit_grants(user, uid, grantee, ops, false)?;
        Ok(SuccessResponse {
            success: alloc::format!("Access for {grantee} successfully deleted from object {uid}"),
        })
    }

    /// `GET /access/list/{uid}`: who holds which rights on an object (owner only).
    pub fn list_access(&self, user: &str, uid: &str) -> KResult<Vec<UserAccess>> {
        let (o, _) = self.owned_object(user, uid)?;
        Ok(o.grants
            .iter()
            .map(|(u, m)| UserAccess {
                user_id: u.clone(),
                operations: access::mask_names(*m),
            })
            .collect())
    }

    /// `GET /access/owned`: the objects `user` owns.
    pub fn owned(&self, user: &str) -> KResult<Vec<OwnedObject>> {
        if user.is_empty() {
            return Err(KmsError::Unauthenticated);
        }
        let mut out = Vec::new();
        let mut uids = self.store.search(&[alloc::format!("owner={user}")])?;
        uids.sort();
        for u in uids {
            if let Some((o, _)) = self.load(&u)? {
                if o.owner != user {
                    continue;
                }
                let mut m = serde_json::Map::new();
                m.insert("ObjectType".into(), o.object_type.name().into());
                if let Some(a) = o.attributes.cryptographic_algorithm {
                    m.insert("CryptographicAlgorithm".into(), a.name().into());
                }
                if let Some(l) = o.attributes.cryptographic_length {
                    m.insert("CryptographicLength".into(), l.into());
                }
                if let Some(k) = o.attributes.key_format_type {
                    m.insert("KeyFormatType".into(), k.name().into());
                }
                let tags: Vec<serde_json::Value> = o
                    .attributes
                    .tags
                    .iter()
                    .map(|t| serde_json::Value::from(t.as_str()))
                    .collect();
                m.insert("tags".into(), serde_json::Value::Array(tags));
                out.push(OwnedObject {
                    object_id: o.uid.clone(),
                    state: o.state.name().into(),
                    attributes: serde_json::Value::Object(m),
                    is_wrapped: false,
                });
            }
        }
        Ok(out)
    }

    /// `GET /access/obtained`: the objects other owners granted `user` rights on.
    pub fn obtained(&self, user: &str) -> KResult<Vec<ObtainedAccess>> {
        if user.is_empty() {
            return Err(KmsError::Unauthenticated);
        }
        let mut out = Vec::new();
        let mut uids = self.store.search(&[alloc::format!("grant={user}")])?;
        uids.sort();
        for u in uids {
            if let Some((o, _)) = self.load(&u)? {
                let m = o
                    .grants
                    .iter()
                    .find(|(g, _)| g == user)
                    .map_or(0, |(_, m)| *m);
                if m == 0 {
                    continue;
                }
                out.push(ObtainedAccess {
                    object_id: o.uid.clone(),
                    owner_id: o.owner.clone(),
                    state: o.state.name().into(),
                    operations: access::mask_names(m),
                    is_wrapped: false,
                });
            }
        }
        Ok(out)
    }

    /// `POST /access/grant` with its JSON body; returns the JSON answer.
    pub fn grant_access_json(&self, env: &mut Env, user: &str, body: &[u8]) -> KResult<Vec<u8>> {
        let r = parse_access(body)?;
        to_json(&self.grant_access(env, user, &r.unique_identifier, &r.user_id, &r.operations())?)
    }

    /// `POST /access/revoke` with its JSON body; returns the JSON answer.
    pub fn revoke_access_json(&self, env: &mut Env, user: &str, body: &[u8]) -> KResult<Vec<u8>> {
        let r = parse_access(body)?;
        to_json(&self.revoke_access(
            env,
            user,
            &r.unique_identifier,
            &r.user_id,
            &r.operations(),
        )?)
    }
}

fn parse_access(body: &[u8]) -> KResult<access::AccessRequest> {
    if body.len() > 64 * 1024 {
        return Err(KmsError::TooLarge);
    }
    serde_json::from_slice(body)
        .map_err(|_| KmsError::Malformed(crate::kmip::json::JsonError::Syntax))
}

/// Serialize an access-rights answer.
pub fn to_json<T: serde::Serialize>(v: &T) -> KResult<Vec<u8>> {
    serde_json::to_vec(v).map_err(|_| KmsError::Internal("JSON encoding failure"))
}

fn pair_links(o: &ManagedObject) -> Vec<String> {
    o.attributes
        .links
        .iter()
        .filter(|l| {
            matches!(
                l.link_type,
                LinkType::PublicKeyLink | LinkType::PrivateKeyLink
            )
        })
        .map(|l| l.uid.clone())
        .collect()
}

fn check_sig_params(curve: Curve, p: Option<&CryptographicParameters>) -> KResult<()> {
    let Some(p) = p else { return Ok(()) };
    let bad = kerr(
        ResultReason::UnsupportedCryptographicParameters,
        "signature parameters do not match the key",
    );
    let ok_hash = matches!(
        (curve, p.hashing_algorithm),
        (_, None)
            | (Curve::P256, Some(HashingAlgorithm::SHA256))
            | (Curve::P384, Some(HashingAlgorithm::SHA384))
            | (Curve::Ed25519, Some(HashingAlgorithm::SHA512))
    );
    let ok_dsa = matches!(
        (curve, p.digital_signature_algorithm),
        (_, None)
            | (
                Curve::P256,
                Some(DigitalSignatureAlgorithm::ECDSAWithSHA256)
            )
            | (
                Curve::P384,
                Some(DigitalSignatureAlgorithm::ECDSAWithSHA384)
            )
            | (Curve::Ed25519, Some(DigitalSignatureAlgorithm::Ed25519))
    );
    let ok_alg = matches!(
        (curve, p.cryptographic_algorithm),
        (_, None)
            | (
                Curve::P256 | Curve::P384,
                Some(
                    CryptographicAlgorithm::ECDSA
                        | CryptographicAlgorithm::EC
                        | CryptographicAlgorithm::ECDH
                )
            )
            | (Curve::Ed25519, Some(CryptographicAlgorithm::Ed25519))
    );
    if ok_hash && ok_dsa && ok_alg {
        Ok(())
    } else {
        Err(bad)
    }
}

#[derive(Clone, Copy)]
enum AttrEdit<'a> {
    Add(&'a Ttlv),
    Set(&'a Ttlv),
    Delete(Option<&'a Ttlv>, Option<&'a str>),
}

/// Keep only the attributes named in `refs` (tag names, or `tag` for the Cosmian tags).
fn filter_attributes(a: &Attributes, refs: &[String]) -> Attributes {
    let has = |n: &str| refs.iter().any(|r| r == n);
    let mut f = Attributes::default();
    macro_rules! keep {
        ($($f:ident = $n:literal),*) => { $( if has($n) { f.$f = a.$f.clone(); } )* };
    }
    keep!(
        unique_identifier = "UniqueIdentifier",
        object_type = "ObjectType",
        cryptographic_algorithm = "CryptographicAlgorithm",
        cryptographic_length = "CryptographicLength",
        cryptographic_usage_mask = "CryptographicUsageMask",
        key_format_type = "KeyFormatType",
        state = "State",
        activation_date = "ActivationDate",
        deactivation_date = "DeactivationDate",
        compromise_date = "CompromiseDate",
        destroy_date = "DestroyDate",
        initial_date = "InitialDate",
        last_change_date = "LastChangeDate",
        names = "Name",
        links = "Link"
    );
    if has("RecommendedCurve") || has("CryptographicDomainParameters") {
        f.recommended_curve = a.recommended_curve;
    }
    if has("tag") || has("VendorAttribute") || has("VendorAttributes") {
        f.tags = a.tags.clone();
    }
    f.vendor_attributes = a
        .vendor_attributes
        .iter()
        .filter(|v| has(&v.name) || has("VendorAttribute") || has("VendorAttributes"))
        .cloned()
        .collect();
    f.other = a.other.iter().filter(|o| has(&o.tag)).cloned().collect();
    f
}
