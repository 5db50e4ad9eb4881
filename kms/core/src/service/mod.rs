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

use crate::access::{ObtainedAccess, OwnedObject, Right, SuccessResponse, UserAccess, right_for};
use crate::crypto::Random;
use crate::crypto::aead::{self, AeadAlg};
use crate::crypto::asym::{self, Curve};
use crate::error::{KmipError, KmsError};
use crate::kmip::binary;
use crate::kmip::json::{self, Limits};
use crate::kmip::ops::{
    CryptographicParameters, DateRange, KeyBlock, ProtocolVersion, Request, Response, SignInput,
    operation_from_tag,
};
use crate::kmip::ttlv::{Ttlv, Value};
use crate::kmip::types::*;
use crate::object::ManagedObject;
use crate::store::{Store, StoreError, Version};

mod certify;
mod certs;
mod crypto_ops;
mod decoded;
mod lifecycle;
mod objects;
mod rights;
mod rsa_ops;
mod streams;
mod wrap;

pub use certify::{CertifyError, check_certificate_request};
#[cfg(feature = "tls")]
pub use rights::to_json;

/// Time and randomness, supplied by the caller for each call.
pub struct Env<'a> {
    /// Current time, POSIX seconds. Comes from an untrusted clock (in the image, the RTC the
    /// host sets): it decides when activation/deactivation dates take effect and stamps
    /// dates; docs/security.md ("Time inside the CVM") says what a host can shift with it.
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
    /// Clock skew absorbed on activation, in seconds: an `ActivationDate` that a request sets
    /// at most this far ahead of the server's clock counts as "now" (the object is Active at
    /// once and the stored date is the server's now). Clients stamp "now" from their own clock,
    /// and the server's clock (the guest RTC, set by the host) may lag it; without this a fresh
    /// key would stay PreActive. Dates further ahead keep their meaning (a planned activation).
    pub activation_skew_secs: i64,
}

impl Default for KmsConfig {
    fn default() -> Self {
        KmsConfig {
            json_limits: Limits::default(),
            max_batch_items: 256,
            max_cas_retries: 16,
            vendor: "cvm-kms",
            server_name: concat!("cvm-kms ", env!("CARGO_PKG_VERSION")),
            // Kerberos's default tolerance for clocks that disagree (RFC 4120 §1.6 suggests 5 min).
            activation_skew_secs: 300,
        }
    }
}

/// The key management service core.
pub struct Kms<S: Store> {
    store: S,
    config: KmsConfig,
    /// Unfinished multi-part Encrypt operations (`streams.rs`).
    streams: streams::Streams,
    /// Decoded objects by uid and record body (`decoded.rs`).
    decoded: decoded::Decoded,
}

type KResult<T> = Result<T, KmsError>;

const fn kerr(reason: ResultReason, msg: &'static str) -> KmsError {
    KmsError::kmip(reason, msg)
}

const NOT_FOUND: KmsError = kerr(ResultReason::ObjectNotFound, "object not found");
const DENIED: KmsError = kerr(
    ResultReason::PermissionDenied,
    "permission denied: the user has no right for this operation on this object",
);
const CALLER_NONCE_DENIED: KmsError = kerr(
    ResultReason::PermissionDenied,
    "permission denied: a caller-supplied IVCounterNonce for AES-GCM or ChaCha20-Poly1305 needs \
     the decrypt right on the key; omit the nonce (the server picks a random one) or use GCM-SIV",
);
const RSA_NO_NONCE: KmsError = kerr(
    ResultReason::InvalidField,
    "RSA encryption takes no IVCounterNonce, AuthenticatedEncryptionTag or \
     AuthenticatedEncryptionAdditionalData (an OAEP label goes in CryptographicParameters' PSource)",
);
const DESTROYED: KmsError = kerr(
    ResultReason::ObjectDestroyed,
    "the object is destroyed: its key material is gone",
);

/// The `ResponseMessage` a KMIP client gets for a request that failed as a whole (not
/// TTLV, no identity, too large, ...): one failed batch item with the error's reason
/// (KMIP 2.1 §9.2), in the server's preferred protocol version.
pub fn kmip_error_response(now: i64, e: &KmsError) -> Ttlv {
    Ttlv::structure(
        "ResponseMessage",
        alloc::vec![
            response_header(now, ProtocolVersion::SUPPORTED[0], 1),
            Ttlv::structure(
                "BatchItem",
                alloc::vec![
                    ResultStatus::OperationFailed.to_ttlv(),
                    e.result_reason().to_ttlv(),
                    Ttlv::text("ResultMessage", &e.to_string()),
                ],
            ),
        ],
    )
}

/// A `ResponseHeader` (KMIP 2.1 §8.2): protocol version, time stamp, batch count.
fn response_header(now: i64, version: ProtocolVersion, batch_count: usize) -> Ttlv {
    Ttlv::structure(
        "ResponseHeader",
        alloc::vec![
            version.to_ttlv(),
            Ttlv::datetime("TimeStamp", now),
            Ttlv::int("BatchCount", i32::try_from(batch_count).unwrap_or(i32::MAX)),
        ],
    )
}

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

fn new_uid(env: &mut Env<'_>) -> KResult<String> {
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

/// Which dialect a request speaks: a bare operation (`{"tag":"Create",...}`) is the Cosmian
/// KMS's (ckms and its clients); a `RequestMessage` batch item is KMIP's own (binary clients,
/// the OASIS test cases). They differ in the defaults KMIP leaves to the server: a created
/// symmetric key is TransparentSymmetricKey for Cosmian, Raw for KMIP; Get without a Key Format
/// Type answers Raw for Cosmian, the format the key was registered in for KMIP (BL-M-3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Cosmian,
    Kmip,
}

/// A Boolean attribute we keep among the uninterpreted ones (`Sensitive`, `Extractable`).
fn flag(a: &Attributes, tag: &str) -> Option<bool> {
    a.other
        .iter()
        .find(|x| x.tag == tag)
        .map(|x| match x.value {
            Value::Boolean(b) => b,
            // Refused on input (`check_flags`); a stored odd value counts as the strict one.
            _ => tag == "Sensitive",
        })
}

/// `Sensitive` and `Extractable` must be Booleans.
fn check_flags(a: &Attributes) -> KResult<()> {
    for t in ["Sensitive", "Extractable"] {
        if a.other
            .iter()
            .any(|x| x.tag == t && !matches!(x.value, Value::Boolean(_)))
        {
            return Err(kerr(
                ResultReason::InvalidAttributeValue,
                "Sensitive and Extractable are Booleans",
            ));
        }
    }
    Ok(())
}

/// An `ActivationDate` at most `skew` seconds ahead of `now` becomes `now` (see
/// [`KmsConfig::activation_skew_secs`]); dates in the past or further ahead are kept.
fn absorb_activation_skew(a: &mut Attributes, now: i64, skew: i64) {
    if let Some(d) = a.activation_date
        && d > now
        && d <= now.saturating_add(skew.max(0))
    {
        a.activation_date = Some(now);
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
    "CompromiseOccurrenceDate",
    "RevocationReason",
    "AlwaysSensitive",
    "NeverExtractable",
    "Fresh",
    "RandomNumberGenerator",
    "Digest",
    "LeaseTime",
    "RecommendedCurve",
    "CryptographicDomainParameters",
];

impl<S: Store> Kms<S> {
    /// A KMS over `store`.
    pub fn new(store: S, config: KmsConfig) -> Self {
        Kms {
            store,
            config,
            streams: streams::Streams::default(),
            decoded: decoded::Decoded::default(),
        }
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
    pub async fn kmip_json(&self, env: &mut Env<'_>, user: &str, body: &[u8]) -> KResult<Vec<u8>> {
        if user.is_empty() {
            return Err(KmsError::Unauthenticated);
        }
        if body.len() > self.config.json_limits.max_bytes {
            return Err(KmsError::TooLarge);
        }
        let t = json::from_slice(body, &self.config.json_limits)?;
        let out = self.kmip(env, user, &t).await?;
        // A `RequestMessage` is KMIP's own protocol (the OASIS JSON test cases, KMIP clients):
        // its answer is in KMIP's shapes, as over binary. A bare operation is the Cosmian
        // dialect (ckms and the Cosmian clients) and keeps its wrappers.
        if t.tag == "RequestMessage" {
            return Ok(json::to_vec(&binary::wire_shape(&out)));
        }
        Ok(json::to_vec(&out))
    }

    /// Handle a binary TTLV `RequestMessage` (KMIP 2.1 §9.1: `POST /kmip` with
    /// `application/octet-stream`, and the KMIP port), answered with a binary
    /// `ResponseMessage` in the request's protocol version. Same limits, identities and rights
    /// as [`Kms::kmip_json`]; the answer is in KMIP's own shapes ([`binary::wire_shape`]).
    pub async fn kmip_binary(
        &self,
        env: &mut Env<'_>,
        user: &str,
        body: &[u8],
    ) -> KResult<Vec<u8>> {
        if user.is_empty() {
            return Err(KmsError::Unauthenticated);
        }
        if body.len() > self.config.json_limits.max_bytes {
            return Err(KmsError::TooLarge);
        }
        let t = binary::from_slice(body, &self.config.json_limits)?;
        if t.tag != "RequestMessage" {
            return Err(kerr(
                ResultReason::InvalidMessage,
                "a binary KMIP request must be a RequestMessage",
            ));
        }
        let out = self.kmip(env, user, &t).await?;
        Ok(binary::to_vec(&binary::wire_shape(&out))?)
    }

    /// Handle a parsed request item (see [`Kms::kmip_json`]).
    pub async fn kmip(&self, env: &mut Env<'_>, user: &str, t: &Ttlv) -> KResult<Ttlv> {
        if user.is_empty() {
            return Err(KmsError::Unauthenticated);
        }
        if t.tag == "RequestMessage" {
            // KMIP 1.x: text-named attributes mapped to the 2.x model and back (kmip::v1).
            if crate::kmip::v1::request_version(t).is_some() {
                let (v2, mut echo) = crate::kmip::v1::request_to_v2(t)?;
                // A 1.x DeleteAttribute answers the deleted attribute with its value: read it
                // first (as the caller; a refusal leaves the name-only answer, and the delete
                // itself then meets the same rights check).
                for (i, payload) in crate::kmip::v1::Echo::deletes(&v2) {
                    let (Some(uid), Some(r)) = (
                        payload.get("UniqueIdentifier"),
                        payload.get("AttributeReference"),
                    ) else {
                        continue;
                    };
                    let req =
                        Ttlv::structure("RequestPayload", alloc::vec![uid.clone(), r.clone()]);
                    if let Ok(resp) = self
                        .execute(env, user, Operation::GetAttributes, &req, Dialect::Kmip)
                        .await
                        && let Some(a) = binary::wire_shape(&resp.to_ttlv(None))
                            .get("Attributes")
                            .and_then(|a| a.children().first().cloned())
                    {
                        echo.set_deleted(i, &a);
                    }
                }
                let out = self.batch(env, user, &v2).await?;
                return Ok(crate::kmip::v1::response_to_v1(
                    &binary::wire_shape(&out),
                    &echo,
                ));
            }
            return self.batch(env, user, t).await;
        }
        let op = operation_from_tag(&t.tag).ok_or(kerr(
            ResultReason::OperationNotSupported,
            "unknown or unsupported operation",
        ))?;
        let resp = self.execute(env, user, op, t, Dialect::Cosmian).await?;
        Ok(resp.to_ttlv(None))
    }

    async fn batch(&self, env: &mut Env<'_>, user: &str, msg: &Ttlv) -> KResult<Ttlv> {
        let header = msg.req("RequestHeader")?;
        // KMIP 2.1 §8 (Protocol Version): answer in the request's version when we speak it;
        // otherwise a failed message in ours, and the client may DiscoverVersions.
        let version = match header.get("ProtocolVersion") {
            Some(pv) => ProtocolVersion::parse(pv)?,
            None => ProtocolVersion::SUPPORTED[0],
        };
        if !version.is_supported() {
            return Ok(kmip_error_response(
                env.now,
                &kerr(
                    ResultReason::UnsupportedProtocolVersion,
                    "unsupported protocol version: this server speaks KMIP 2.1, 2.0 and 1.4 to 1.0",
                ),
            ));
        }
        // KMIP 2.1 §7.8 Batch Error Continuation Option: Stop when absent.
        let on_error = BatchErrorContinuationOption::opt(header)?
            .unwrap_or(BatchErrorContinuationOption::Stop);
        let max_response = header.opt_int("MaximumResponseSize")?;
        let items: Vec<&Ttlv> = msg.all("BatchItem").collect();
        if items.len() > self.config.max_batch_items {
            return Err(kerr(ResultReason::InvalidMessage, "too many batch items"));
        }
        let mut head = response_header(env.now, version, items.len());
        if let Value::Structure(h) = &mut head.value {
            // KMIP 2.1 §8.2: the client's correlation value comes back; the server's is new
            // for every message (for the server's log).
            if let Some(c) = header.get("ClientCorrelationValue") {
                h.insert(1, c.clone());
            }
            let mut r = [0u8; 8];
            env.rng
                .fill(&mut r)
                .map_err(|_| KmsError::Internal("random number generator failure"))?;
            let mut hex = Vec::with_capacity(16);
            json::hex_upper(&r, &mut hex);
            h.insert(
                h.len() - 1,
                Ttlv::text("ServerCorrelationValue", &String::from_utf8_lossy(&hex)),
            );
        }
        // KMIP 2.1 §7.1 ID Placeholder: the uid the last item returned, used by an item that
        // names no object. Undo: the records touched and the objects created, to restore.
        let mut placeholder: Option<String> = None;
        let mut undo = Undo::default();
        let mut results: Vec<(Vec<Ttlv>, KResult<Response>)> = Vec::with_capacity(items.len());
        let mut failed = false;
        for item in items {
            let mut v = Vec::new();
            if let Some(o) = item.get("Operation") {
                v.push(o.clone());
            }
            if let Some(i) = item.get("UniqueBatchItemID") {
                v.push(i.clone());
            }
            let result = if failed && on_error != BatchErrorContinuationOption::Continue {
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
                        Some(p) => {
                            let p = with_placeholder(op, p, placeholder.as_deref());
                            if on_error == BatchErrorContinuationOption::Undo {
                                undo.snapshot(&self.store, &p).await?;
                            }
                            let r = self.execute(env, user, op, &p, Dialect::Kmip).await;
                            if let Ok(resp) = &r {
                                if let Some(u) = resp.placeholder_uid() {
                                    placeholder = Some(u.into());
                                }
                                if let Response::Create { uid, .. }
                                | Response::Register { uid, .. }
                                | Response::Certify { uid } = resp
                                {
                                    undo.created.push(uid.clone());
                                }
                                if let Response::CreateKeyPair {
                                    private_uid,
                                    public_uid,
                                } = resp
                                {
                                    undo.created.push(private_uid.clone());
                                    undo.created.push(public_uid.clone());
                                }
                            }
                            r
                        }
                    },
                }
            };
            failed |= result.is_err();
            results.push((v, result));
        }
        let undone = failed && on_error == BatchErrorContinuationOption::Undo;
        if undone {
            undo.restore(&self.store).await?;
        }
        let mut out = Vec::with_capacity(results.len() + 1);
        out.push(head);
        for (mut v, result) in results {
            match result {
                Ok(resp) => {
                    v.push(if undone {
                        ResultStatus::OperationUndone.to_ttlv()
                    } else {
                        ResultStatus::Success.to_ttlv()
                    });
                    v.push(resp.to_ttlv(Some("ResponsePayload")));
                }
                Err(e) => {
                    v.push(ResultStatus::OperationFailed.to_ttlv());
                    v.push(e.result_reason().to_ttlv());
                    v.push(Ttlv::text("ResultMessage", &e.to_string()));
                }
            }
            out.push(Ttlv::structure("BatchItem", v));
        }
        let message = Ttlv::structure("ResponseMessage", out);
        // KMIP 2.1 §7.17 Maximum Response Size (bytes of the binary encoding): too large, every
        // item fails with Response Too Large.
        if let Some(max) = max_response
            && binary::to_vec(&binary::wire_shape(&message)).map_or(0, |b| b.len())
                > usize::try_from(max).unwrap_or(0)
        {
            let too_large = kerr(
                ResultReason::ResponseTooLarge,
                "the response exceeds the request's MaximumResponseSize",
            );
            let mut v = Vec::new();
            for c in message.children() {
                if c.tag == "BatchItem" {
                    let mut i: Vec<Ttlv> = c
                        .children()
                        .iter()
                        .filter(|x| x.tag == "Operation" || x.tag == "UniqueBatchItemID")
                        .cloned()
                        .collect();
                    i.push(ResultStatus::OperationFailed.to_ttlv());
                    i.push(too_large.result_reason().to_ttlv());
                    i.push(Ttlv::text("ResultMessage", &too_large.to_string()));
                    v.push(Ttlv::structure("BatchItem", i));
                } else {
                    v.push(c.clone());
                }
            }
            return Ok(Ttlv::structure("ResponseMessage", v));
        }
        Ok(message)
    }

    async fn execute(
        &self,
        env: &mut Env<'_>,
        user: &str,
        op: Operation,
        payload: &Ttlv,
        dialect: Dialect,
    ) -> KResult<Response> {
        let req = Request::parse(op, payload)?;
        // The right each operation needs on the object it names: one table, `right_for`
        // (operations that only create objects, or touch none, have no entry and never ask).
        let right = || {
            right_for(op).ok_or(KmsError::Internal(
                "no access right is defined for this operation",
            ))
        };
        match req {
            Request::Create {
                object_type,
                attributes,
            } => {
                self.create(env, user, object_type, &attributes, dialect)
                    .await
            }
            Request::CreateKeyPair {
                common,
                private,
                public,
            } => {
                self.create_key_pair(env, user, &common, &private, &public)
                    .await
            }
            Request::Register {
                import,
                uid,
                object_type,
                replace,
                attributes,
                mut key,
            } => {
                self.register(
                    env,
                    user,
                    import,
                    uid,
                    object_type,
                    replace,
                    &attributes,
                    &mut key,
                    right()?,
                )
                .await
            }
            Request::Get {
                uid,
                key_format_type,
                export,
                wrap,
            } => {
                self.get(
                    env,
                    user,
                    uid.as_deref(),
                    key_format_type,
                    export,
                    wrap.as_ref(),
                    right()?,
                    dialect,
                )
                .await
            }
            Request::GetAttributes { uid, references } => {
                let (o, _) = self.resolve(user, uid.as_deref(), right()?).await?;
                // All attributes: the Cosmian set for its clients, with the derived ones for
                // KMIP's (OASIS TL-M-3).
                let attributes = match (references.is_empty(), dialect) {
                    (true, Dialect::Cosmian) => self.full_attributes(&o, env.now),
                    (true, Dialect::Kmip) => self.derived_attributes(&o, env.now),
                    (false, _) => {
                        filter_attributes(&self.derived_attributes(&o, env.now), &references)
                    }
                };
                Ok(Response::GetAttributes {
                    uid: o.uid.clone(),
                    attributes,
                })
            }
            Request::GetAttributeList { uid } => {
                let (o, _) = self.resolve(user, uid.as_deref(), right()?).await?;
                let all = self.derived_attributes(&o, env.now).to_ttlv("Attributes");
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
                let o = self
                    .modify_attribute(
                        env,
                        user,
                        uid.as_deref(),
                        AttrEdit::Add(&attribute),
                        right()?,
                    )
                    .await?;
                Ok(Response::AddAttribute { uid: o })
            }
            Request::SetAttribute { uid, attribute } => {
                let o = self
                    .modify_attribute(
                        env,
                        user,
                        uid.as_deref(),
                        AttrEdit::Set(&attribute),
                        right()?,
                    )
                    .await?;
                Ok(Response::SetAttribute { uid: o })
            }
            Request::DeleteAttribute {
                uid,
                current,
                reference,
            } => {
                let o = self
                    .modify_attribute(
                        env,
                        user,
                        uid.as_deref(),
                        AttrEdit::Delete(current.as_ref(), reference.as_deref()),
                        right()?,
                    )
                    .await?;
                Ok(Response::DeleteAttribute { uid: o })
            }
            Request::Locate {
                max_items,
                offset_items,
                attributes,
                date_ranges,
            } => {
                self.locate(
                    env,
                    user,
                    max_items,
                    offset_items,
                    &attributes,
                    &date_ranges,
                )
                .await
            }
            Request::Activate { uid } => {
                let now = env.now;
                let (uid, _) = self
                    .update(
                        user,
                        uid.as_deref(),
                        right()?,
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
                    )
                    .await?;
                Ok(Response::Activate { uid })
            }
            Request::Revoke {
                uid,
                reason,
                compromise_date,
            } => {
                let uid = self
                    .revoke(env, user, uid.as_deref(), reason, compromise_date, right()?)
                    .await?;
                Ok(Response::Revoke { uid })
            }
            Request::Destroy { uid } => {
                let uid = self.destroy(env, user, uid.as_deref(), right()?).await?;
                Ok(Response::Destroy { uid })
            }
            Request::ReKey { uid, attributes } => {
                self.rekey(env, user, uid.as_deref(), &attributes, right()?)
                    .await
            }
            Request::Encrypt {
                uid,
                params,
                data,
                nonce,
                aad,
                spelling,
                part,
            } => {
                // The plaintext is wiped whichever way this returns.
                let data = Zeroizing::new(data);
                let (mut o, _) = self.resolve(user, uid.as_deref(), right()?).await?;
                // Usage Limits are taken (and stored) before the encryption, so that
                // concurrent requests cannot overspend them.
                if o.attributes.other.iter().any(|t| t.tag == "UsageLimits") {
                    self.usable(&o, env.now, usage::ENCRYPT)?;
                    let (n, id) = (data.len(), o.uid.clone());
                    (_, o) = self
                        .update(
                            user,
                            Some(&id),
                            right()?,
                            |o| {
                                crypto_ops::consume_usage(o, n)?;
                                Ok(o.clone())
                            },
                            env.now,
                        )
                        .await?;
                }
                if let Some(part) = part {
                    return self.encrypt_part(
                        env,
                        user,
                        &o,
                        params.as_ref(),
                        &data,
                        nonce,
                        aad,
                        part,
                        spelling,
                    );
                }
                if rsa_ops::is_rsa(&o) {
                    if nonce.is_some() || aad.is_some() {
                        return Err(RSA_NO_NONCE);
                    }
                    return Ok(Response::Encrypt {
                        uid: o.uid.clone(),
                        data: self.rsa_encrypt(env, &o, params.as_ref(), &data)?,
                        nonce: Vec::new(),
                        tag: Vec::new(),
                        spelling,
                        correlation: None,
                    });
                }
                if let Some(mode) = crypto_ops::block_mode(&o, params.as_ref(), nonce.as_deref())? {
                    return self.block_encrypt(
                        env,
                        user,
                        &o,
                        mode,
                        nonce,
                        aad.is_some(),
                        &data,
                        spelling,
                    );
                }
                let (alg, key, tag_len) =
                    self.symmetric_for(&o, env.now, usage::ENCRYPT, params.as_ref())?;
                let nonce = caller_nonce_or_random(
                    env,
                    user,
                    &o,
                    !alg.nonce_misuse_resistant(),
                    aead::NONCE_LEN,
                    nonce,
                )?;
                let (ct, tag) = aead::encrypt(
                    alg,
                    key,
                    &nonce,
                    aad.as_deref().unwrap_or(&[]),
                    &data,
                    tag_len.unwrap_or(aead::TAG_LEN),
                )?;
                Ok(Response::Encrypt {
                    uid: o.uid.clone(),
                    data: ct,
                    nonce,
                    tag,
                    spelling,
                    correlation: None,
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
                let (o, _) = self.resolve(user, uid.as_deref(), right()?).await?;
                if rsa_ops::is_rsa(&o) {
                    if nonce.is_some() || tag.is_some() || aad.is_some() {
                        return Err(RSA_NO_NONCE);
                    }
                    return Ok(Response::Decrypt {
                        uid: o.uid.clone(),
                        data: self.rsa_decrypt(env, &o, params.as_ref(), &data)?.to_vec(),
                    });
                }
                if let Some(mode) = crypto_ops::block_mode(&o, params.as_ref(), nonce.as_deref())? {
                    return self.block_decrypt(
                        env,
                        &o,
                        mode,
                        nonce.as_deref(),
                        tag.is_some() || aad.is_some(),
                        &data,
                    );
                }
                let (alg, key, tag_len) =
                    self.symmetric_for(&o, env.now, usage::DECRYPT, params.as_ref())?;
                let aad = aad.as_deref().unwrap_or(&[]);
                let pt = match (nonce, tag) {
                    // A truncated tag only when TagLength says so (never guessed from the tag).
                    (Some(_), Some(t)) if t.len() != tag_len.unwrap_or(aead::TAG_LEN) => {
                        return Err(kerr(
                            ResultReason::InvalidField,
                            "the AuthenticatedEncryptionTag is not TagLength (default 16) bytes",
                        ));
                    }
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
            Request::Sign { uid, params, input } => {
                let (o, _) = self.resolve(user, uid.as_deref(), right()?).await?;
                if o.object_type != ObjectType::PrivateKey {
                    return Err(kerr(
                        ResultReason::InvalidObjectType,
                        "Sign needs a private key",
                    ));
                }
                self.usable(&o, env.now, usage::SIGN)?;
                if rsa_ops::is_rsa(&o) {
                    return Ok(Response::Sign {
                        uid: o.uid.clone(),
                        signature: self.rsa_sign(env, &o, params.as_ref(), &input)?,
                    });
                }
                let curve = curve_of(&o.attributes).ok_or(kerr(
                    ResultReason::CryptographicFailure,
                    "unknown key curve",
                ))?;
                check_sig_params(curve, params.as_ref())?;
                let material = o.material.as_ref().ok_or(DESTROYED)?;
                let signature = match &input {
                    SignInput::Data(d) => asym::sign(curve, material, d)?,
                    SignInput::Digest(h) => asym::sign_digest(curve, material, h)?,
                };
                Ok(Response::Sign {
                    uid: o.uid.clone(),
                    signature,
                })
            }
            Request::SignatureVerify {
                uid,
                params,
                input,
                signature,
            } => {
                let (o, _) = self.resolve(user, uid.as_deref(), right()?).await?;
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
                if rsa_ops::is_rsa(&o) {
                    return Ok(Response::SignatureVerify {
                        uid: o.uid.clone(),
                        valid: self.rsa_verify(&o, params.as_ref(), &input, &signature)?,
                    });
                }
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
                let checked = match &input {
                    SignInput::Data(d) => asym::verify(curve, &spki, d, &signature),
                    SignInput::Digest(h) => asym::verify_digest(curve, &spki, h, &signature),
                };
                let valid = match checked {
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
                    Operation::SUPPORTED.to_vec()
                } else {
                    Vec::new()
                };
                let object_types = if all || functions.contains(&QueryFunction::QueryObjects) {
                    alloc::vec![
                        ObjectType::SymmetricKey,
                        ObjectType::PrivateKey,
                        ObjectType::PublicKey,
                        ObjectType::SecretData
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
            // Interop and Log mark and comment a client's test run: accepted, no effect.
            Request::Interop { .. } => Ok(Response::Empty(Operation::Interop)),
            Request::Log { .. } => Ok(Response::Empty(Operation::Log)),
            Request::SetEndpointRole => Ok(Response::Empty(Operation::SetEndpointRole)),
            Request::Certify {
                uid,
                request,
                attributes,
            } => self.certify(env, user, uid, request, &attributes).await,
            Request::Check { uid, mask } => {
                // KMIP 2.1 §6.1.4: the object exists and its usage mask allows every asked use.
                let (o, _) = self
                    .resolve(user, uid.as_deref(), Right::GetAttributes)
                    .await?;
                if let (Some(asked), Some(allowed)) = (mask, o.attributes.cryptographic_usage_mask)
                    && asked & allowed != asked
                {
                    return Err(kerr(
                        ResultReason::IncompatibleCryptographicUsageMask,
                        "Check failed: the object's usage mask does not allow this use",
                    ));
                }
                Ok(Response::Check { uid: o.uid.clone() })
            }
            Request::Mac { uid, params, data } => {
                self.mac(env, user, uid.as_deref(), params.as_ref(), &data, right()?)
                    .await
            }
            Request::MacVerify {
                uid,
                params,
                data,
                mac,
            } => {
                self.mac_verify(
                    env,
                    user,
                    uid.as_deref(),
                    params.as_ref(),
                    &data,
                    &mac,
                    right()?,
                )
                .await
            }
            Request::Hash { params, data } => self.hash(params.as_ref(), &data),
            Request::RngRetrieve { length } => self.rng_retrieve(env, length),
            Request::RngSeed { data } => self.rng_seed(env, &data),
            Request::DiscoverVersions { offered } => Ok(Response::DiscoverVersions(
                ProtocolVersion::SUPPORTED
                    .iter()
                    .copied()
                    .filter(|v| offered.is_empty() || offered.contains(v))
                    .collect(),
            )),
        }
    }

    // ---------------------------------------------------------------- object access

    async fn load(&self, uid: &str) -> KResult<Option<(ManagedObject, Version)>> {
        match self.store.get(uid).await? {
            None => Ok(None),
            Some((r, v)) => Ok(Some((self.decoded.decode(&r)?, v))),
        }
    }

    /// Uids visible to `user` (owned or granted) matching every keyword.
    async fn visible(&self, user: &str, keywords: &[String]) -> KResult<Vec<String>> {
        self.visible_with(user, keywords, None).await
    }

    /// Uids `user` owns, or was granted `right` on (any right when `None`), matching every
    /// keyword. Granted objects are loaded to check the right (the index knows only that a
    /// grant exists); owned ones are not.
    async fn visible_with(
        &self,
        user: &str,
        keywords: &[String],
        right: Option<Right>,
    ) -> KResult<Vec<String>> {
        // One disjunctive search: owned, or granted (the backend answers both in one pass).
        let who = [
            alloc::format!("owner={user}"),
            alloc::format!("grant={user}"),
        ];
        let mut found = self.store.search_each(keywords, &who).await?.into_iter();
        let mut uids: BTreeSet<String> = found.next().unwrap_or_default().into_iter().collect();
        for u in found.next().unwrap_or_default() {
            if uids.contains(&u) {
                continue;
            }
            match right {
                None => {
                    uids.insert(u);
                }
                Some(r) => {
                    if let Some((o, _)) = self.load(&u).await?
                        && o.rights_of(user) & r.bit() != 0
                    {
                        uids.insert(u);
                    }
                }
            }
        }
        Ok(uids.into_iter().collect())
    }

    /// Find the object `uid` names (a uid, or `["tag", ...]`) and check `user` holds `right`.
    async fn resolve(
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
                // Get implies GetAttributes, and Export except of private keys (whose material
                // needs the export right, see `get`).
                || (m & Right::Get.bit() != 0
                    && (right == Right::GetAttributes
                        || (right == Right::Export && o.object_type != ObjectType::PrivateKey)))
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
            for u in self.visible(user, &kw).await? {
                if let Some((o, v)) = self.load(&u).await?
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
        let (o, v) = self.load(uid).await?.ok_or(NOT_FOUND)?;
        if !allowed(&o) {
            // To a user holding no right on it, an object that exists looks exactly like one
            // that does not: uids can be guessed, and existence is metadata.
            return Err(if o.rights_of(user) == 0 {
                NOT_FOUND
            } else {
                DENIED
            });
        }
        Ok((o, v))
    }

    /// Compare-and-swap update of one object with bounded retries; returns the uid and `f`'s
    /// result.
    async fn update<R>(
        &self,
        user: &str,
        uid: Option<&str>,
        right: Right,
        mut f: impl FnMut(&mut ManagedObject) -> KResult<R>,
        now: i64,
    ) -> KResult<(String, R)> {
        for _ in 0..self.config.max_cas_retries {
            let (mut o, v) = self.resolve(user, uid, right).await?;
            let r = f(&mut o)?;
            o.attributes.last_change_date = Some(now);
            match self.store.update(&o.to_record(), v).await {
                Ok(_) => return Ok((o.uid.clone(), r)),
                Err(StoreError::Conflict) => continue,
                Err(StoreError::NotFound) => return Err(NOT_FOUND),
                Err(e) => return Err(e.into()),
            }
        }
        Err(KmsError::Store(StoreError::Conflict))
    }

    async fn insert(&self, o: &ManagedObject) -> KResult<()> {
        match self.store.insert(&o.to_record()).await {
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

    /// [`Kms::full_attributes`] and the ones the server derives ([`maintained_attributes`]):
    /// for GetAttributes naming attributes or asking for all in KMIP's dialect (OASIS TL-M-3),
    /// and GetAttributeList. (A bare Cosmian GetAttributes of all attributes keeps the Cosmian
    /// KMS's set: its clients know those.)
    fn derived_attributes(&self, o: &ManagedObject, now: i64) -> Attributes {
        let mut a = self.full_attributes(o, now);
        for m in maintained_attributes(o) {
            if !a.other.iter().any(|x| x.tag == m.tag) {
                a.other.push(m);
            }
        }
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
        // KMIP 2.1 §4.37/§4.38: no protection (encrypt, sign, wrap, MAC) after the Protect
        // Stop Date, no processing (decrypt, verify, unwrap, MAC verify) before the Process
        // Start Date.
        let date = |tag: &str| {
            o.attributes
                .other
                .iter()
                .find(|t| t.tag == tag)
                .and_then(|t| match t.value {
                    Value::DateTime(d) | Value::DateTimeExtended(d) => Some(d),
                    _ => None,
                })
        };
        const PROTECT: u32 = usage::ENCRYPT | usage::SIGN | usage::WRAP_KEY | usage::MAC_GENERATE;
        const PROCESS: u32 = usage::DECRYPT | usage::VERIFY | usage::UNWRAP_KEY | usage::MAC_VERIFY;
        if mask & !PROTECT == 0 && date("ProtectStopDate").is_some_and(|d| d <= now) {
            return Err(kerr(
                ResultReason::WrongKeyLifecycleState,
                "the key's Protect Stop Date has passed: it no longer encrypts, signs or wraps",
            ));
        }
        if mask & !PROCESS == 0 && date("ProcessStartDate").is_some_and(|d| d > now) {
            return Err(kerr(
                ResultReason::WrongKeyLifecycleState,
                "the key's Process Start Date has not come: it does not decrypt, verify or \
                 unwrap yet",
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
    ) -> KResult<(AeadAlg, &'o [u8], Option<usize>)> {
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
            Some(CryptographicAlgorithm::THREE_DES) => {
                return Err(kerr(
                    ResultReason::UnsupportedCryptographicParameters,
                    "3DES keys are kept for legacy use only: this KMS does not encrypt or \
                     decrypt with them (NIST SP 800-131A Rev. 2)",
                ));
            }
            _ => return Err(unsupported),
        };
        // The OASIS cases (CS-BC-M-GCM-1, CHACHA20POLY1305-1) expect General Failure here.
        let tag_len = match p.tag_length.map(usize::try_from) {
            None => None,
            Some(Ok(t)) if alg.tag_len_ok(t) => Some(t),
            Some(_) => {
                return Err(kerr(
                    ResultReason::GeneralFailure,
                    "invalid TagLength: AES-GCM and ChaCha20-Poly1305 take 12 to 16 bytes, \
                     AES-GCM-SIV 16",
                ));
            }
        };
        Ok((alg, key, tag_len))
    }
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

/// Operations that never name an existing object: the ID placeholder is not theirs.
fn names_no_object(op: Operation) -> bool {
    matches!(
        op,
        Operation::Create
            | Operation::CreateKeyPair
            | Operation::Register
            | Operation::Import
            | Operation::Locate
            | Operation::Query
            | Operation::DiscoverVersions
            | Operation::Interop
            | Operation::Log
            | Operation::SetEndpointRole
    )
}

/// The payload of a batch item, with the ID placeholder (KMIP 2.1 §7.1, the uid an earlier
/// item of the batch returned) as its `UniqueIdentifier` when it names none.
fn with_placeholder(op: Operation, p: &Ttlv, placeholder: Option<&str>) -> Ttlv {
    match (placeholder, &p.value) {
        (Some(uid), Value::Structure(c))
            if !names_no_object(op) && p.get("UniqueIdentifier").is_none() =>
        {
            let mut c = c.clone();
            c.insert(0, Ttlv::text("UniqueIdentifier", uid));
            Ttlv::structure(&p.tag, c)
        }
        _ => p.clone(),
    }
}

/// What a batch with `BatchErrorContinuationOption` Undo restores when an item fails: the
/// stored records of the objects its items named (as they were before the batch), and the
/// objects it created.
#[derive(Default)]
struct Undo {
    before: Vec<(String, Option<crate::store::Record>)>,
    created: Vec<String>,
}

impl Undo {
    /// Remembers the record of the object `payload` names, the first time it is named.
    async fn snapshot<S: Store>(&mut self, store: &S, payload: &Ttlv) -> KResult<()> {
        let Some(uid) = payload
            .get("UniqueIdentifier")
            .and_then(|u| match &u.value {
                Value::TextString(s) => Some(s.clone()),
                _ => None,
            })
        else {
            return Ok(());
        };
        if self.before.iter().any(|(u, _)| *u == uid) || self.created.contains(&uid) {
            return Ok(());
        }
        let record = store.get(&uid).await?.map(|(r, _)| r);
        self.before.push((uid, record));
        Ok(())
    }

    /// Puts every remembered record back and deletes the created objects.
    async fn restore<S: Store>(&self, store: &S) -> KResult<()> {
        for uid in &self.created {
            if let Some((_, v)) = store.get(uid).await? {
                store.delete(uid, v).await?;
            }
        }
        for (uid, record) in &self.before {
            match (record, store.get(uid).await?) {
                (Some(old), Some((now, v))) if now != *old => {
                    store.update(old, v).await?;
                }
                (Some(old), None) => {
                    store.insert(old).await?;
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Attributes the server maintains and derives on request (KMIP 2.1 §4): Short Unique
/// Identifier (SHA-256 of the uid, §4.51), Original Creation Date (the Initial Date), and the
/// Digest while the material exists ([`digest`]).
fn maintained_attributes(o: &ManagedObject) -> Vec<Ttlv> {
    use sha2::Digest as _;
    let mut v = alloc::vec![Ttlv::bytes(
        "ShortUniqueIdentifier",
        &sha2::Sha256::digest(o.uid.as_bytes())
    )];
    if let Some(d) = o.attributes.initial_date {
        v.push(Ttlv::datetime("OriginalCreationDate", d));
    }
    if let Some(d) = digest(o) {
        v.push(d);
    }
    // §4.25 Lease Time: this server grants no leases (a client may keep what it got): the
    // longest Interval.
    v.push(Ttlv::new("LeaseTime", Value::Interval(u32::MAX)));
    // §4.42 Protection Storage Mask, unless the client asked for one: Software.
    if !o
        .attributes
        .other
        .iter()
        .any(|x| x.tag == "ProtectionStorageMask")
    {
        v.push(Ttlv::int("ProtectionStorageMask", 0x1));
    }
    v
}

/// The Digest attribute (KMIP 2.1 §4.13): SHA-256 of the key material in the object's Key
/// Format Type: Raw for symmetric keys and secret data, the stored format of an asymmetric key
/// (PKCS#1 for RSA keys, whose material is kept as PKCS#8 / SPKI and converted; the binary
/// TTLV of the Transparent key material for DSA keys; PKCS#8 and X.509 SPKI for the others). `None` once the material is destroyed, or if it does not convert.
fn digest(o: &ManagedObject) -> Option<Ttlv> {
    use sha2::Digest as _;
    let m = o.material.as_ref()?;
    let stored = o.attributes.key_format_type;
    let rsa = o.algorithm() == Some(CryptographicAlgorithm::RSA);
    let (format, value) = match o.object_type {
        ObjectType::OpaqueObject => (
            KeyFormatType::Opaque,
            sha2::Sha256::digest(m.as_slice()).to_vec(),
        ),
        ObjectType::SymmetricKey | ObjectType::SecretData => (
            KeyFormatType::Raw,
            sha2::Sha256::digest(m.as_slice()).to_vec(),
        ),
        // DSA keys are kept as their Transparent fields: the digest of the binary TTLV
        // `KeyMaterial` structure (the Key Material of a transparent format is a structure).
        ObjectType::PrivateKey | ObjectType::PublicKey
            if o.algorithm() == Some(CryptographicAlgorithm::DSA) =>
        {
            let f = stored?;
            let km = crate::kmip::transparent::emit(f, m).ok()?;
            let ttlv = Zeroizing::new(binary::to_vec(&km).ok()?);
            (f, sha2::Sha256::digest(ttlv.as_slice()).to_vec())
        }
        ObjectType::PrivateKey if rsa && stored == Some(KeyFormatType::PKCS1) => {
            let der = crate::crypto::rsa::private_to_pkcs1(m).ok()?;
            (
                KeyFormatType::PKCS1,
                sha2::Sha256::digest(der.as_slice()).to_vec(),
            )
        }
        ObjectType::PublicKey if rsa && stored == Some(KeyFormatType::PKCS1) => {
            let der = crate::crypto::rsa::public_to_pkcs1(m).ok()?;
            (KeyFormatType::PKCS1, sha2::Sha256::digest(&der).to_vec())
        }
        ObjectType::PrivateKey => (
            KeyFormatType::PKCS8,
            sha2::Sha256::digest(m.as_slice()).to_vec(),
        ),
        ObjectType::PublicKey => (
            KeyFormatType::X509,
            sha2::Sha256::digest(m.as_slice()).to_vec(),
        ),
        _ => return None,
    };
    Some(Ttlv::structure(
        "Digest",
        alloc::vec![
            HashingAlgorithm::SHA256.to_ttlv(),
            Ttlv::bytes("DigestValue", &value),
            format.to_ttlv(),
        ],
    ))
}

/// The nonce (or IV) of an encryption with `o` by `user`: the caller's, or `len` fresh random
/// bytes. `reuse_leaks` says whether a repeated nonce exposes plaintext (GCM, ChaCha20-Poly1305,
/// CTR, ChaCha20): a caller who picks such a nonce can re-use the nonce of someone else's
/// ciphertext and read it back by XOR (issue 12, High #2), so only callers who may decrypt
/// anyway choose nonces for these.
fn caller_nonce_or_random(
    env: &mut Env<'_>,
    user: &str,
    o: &ManagedObject,
    reuse_leaks: bool,
    len: usize,
    nonce: Option<Vec<u8>>,
) -> KResult<Vec<u8>> {
    match nonce {
        Some(_) if reuse_leaks && o.rights_of(user) & Right::Decrypt.bit() == 0 => {
            Err(CALLER_NONCE_DENIED)
        }
        Some(n) => Ok(n),
        None => {
            let mut n = alloc::vec![0u8; len];
            env.rng
                .fill(&mut n)
                .map_err(|_| KmsError::Internal("random number generator failure"))?;
            Ok(n)
        }
    }
}
