//! KMIP 2.1 §6.1.6 Certify: issue an X.509 v3 certificate (RFC 5280) with a KMS-held CA key.
//!
//! What is certified: the public key of a PKCS#10 certificate request (RFC 2986) carried in the
//! request (`CertificateRequestType` PKCS10 with DER, or PEM, in `CertificateRequestValue`),
//! whose self-signature must verify; or else the public key the `UniqueIdentifier` names (a
//! private key stands for the public key it links to, so a batch's ID placeholder after
//! CreateKeyPair works).
//!
//! The issuer: the request's `Attributes` carry a `Link` of type `PrivateKeyLink` naming the CA
//! private key and/or `CertificateLink` naming the CA certificate (the Cosmian KMS's
//! convention). A CA certificate without a private key link finds the key through its own
//! `PrivateKeyLink`; a CA private key without a certificate link uses its `CertificateLink`, if
//! any. The issuer name is the CA certificate's subject. Certifying the CA key's own public key
//! gives a self-signed certificate (a root; any CA certificate is then ignored); any other key
//! needs a CA certificate.
//!
//! The new certificate is Active from now (its notBefore) unless the request gives an
//! `ActivationDate`.
//!
//! Links (also on Register of a certificate): a certificate whose public key is a public key
//! object the caller owns gets `PublicKeyLink` to it (and `PrivateKeyLink` to that key's private
//! key); the public and private keys get `CertificateLink` to the certificate (the newest one).
//! An issued certificate gets `CertificateLink` to its issuer's certificate (KMIP 2.1 §4.27:
//! the parent certificate). Keys are found by the store keyword `spki=` (SHA-256 of the
//! canonical SubjectPublicKeyInfo), among the caller's own objects only.
//!
//! Rights: the caller needs the `sign` right on the CA private key (it signs), the `get` right on
//! the CA certificate and on a named public key; the CA key must be Active with the Sign usage.
//!
//! Subject: the `CertificateSubject<part>` attributes (KMIP 2.1 §4.7, `CertificateSubjectCN`,
//! `CertificateSubjectO`, ...; also inside a Cosmian `CertificateAttributes` structure; one RDN
//! each, in [`SUBJECT_PARTS`] order, with RFC 5280's string types), else the request's subject.
//! Validity: from now to `now + days`, `days` from the vendor attribute
//! `requested_validity_days` (any vendor, an integer or its text, 1 to 36500), else up to the
//! request's `DeactivationDate`, else [`DEFAULT_DAYS`]. Serial number: 16 random bytes, positive.
//! Extensions: subject and authority key identifiers, basic constraints (CA only for a
//! self-signed certificate, which also gets keyCertSign/cRLSign key usage) and the subject
//! alternative name of the request's extensionRequest (RFC 2985 §5.4.2), if any; other
//! requested extensions are ignored (a request does not choose its own CA status).
//!
//! Signature by the CA key's type: ECDSA P-256 with SHA-256, ECDSA P-384 with SHA-384, Ed25519,
//! RSA PKCS#1 v1.5 with SHA-256.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use core::time::Duration;

use der::asn1::BitString;
use der::oid::AssociatedOid;
use der::{Decode, DecodePem, Encode};
use p256::ecdsa::signature::Keypair;
use spki::{
    AlgorithmIdentifierOwned, DynSignatureAlgorithmIdentifier, EncodePublicKey, ObjectIdentifier,
    SubjectPublicKeyInfoOwned,
};
use x509_cert::builder::{Builder, CertificateBuilder, profile::BuilderProfile};
use x509_cert::certificate::TbsCertificate;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, KeyUsage, KeyUsages, SubjectAltName,
    SubjectKeyIdentifier,
};
use x509_cert::ext::{Extension, ToExtension};
use x509_cert::name::Name;
use x509_cert::request::{CertReq, ExtensionReq};
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};

use super::{Env, KResult, Kms, certs, curve_of, initial_state};
use crate::access::Right;
use crate::crypto::asym::{self, Curve};
use crate::crypto::mac::{self, HashAlg};
use crate::crypto::rsa::{self, SigPadding};
use crate::error::KmsError;
use crate::kmip::ops::Response;
use crate::kmip::ttlv::{Ttlv, Value};
use crate::kmip::types::*;
use crate::object::ManagedObject;
use crate::store::Store;

/// Validity of a certificate when the request says nothing, in days.
pub const DEFAULT_DAYS: i64 = 365;
/// Longest validity a request may ask for, in days.
pub const MAX_DAYS: i64 = 36_500;
/// The vendor attribute naming the validity in days (the Cosmian KMS's name).
pub const VALIDITY_DAYS_ATTRIBUTE: &str = "requested_validity_days";

const ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const ECDSA_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.4");
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const RSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const RSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const RSA_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");

/// Why a Certify request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertifyError {
    /// Neither a certificate request nor a public key uid.
    NothingToCertify,
    /// A CRMF request (only PKCS#10 is implemented).
    UnsupportedRequestType,
    /// The request value is not a DER or PEM PKCS#10 request.
    BadRequest,
    /// The request's self-signature does not verify.
    BadRequestSignature,
    /// The request is signed with an algorithm this server does not verify.
    UnsupportedRequestAlgorithm,
    /// No `PrivateKeyLink` / `CertificateLink` names the issuer.
    NoIssuer,
    /// The issuer private key is not a private key.
    IssuerNotPrivateKey,
    /// The issuer certificate link names something else than a certificate.
    IssuerNotCertificate,
    /// The issuer certificate does not hold the CA key's public key.
    IssuerMismatch,
    /// No issuer certificate and the certified key is not the CA key: nothing names the issuer.
    NotSelfSigned,
    /// The CA key's algorithm cannot sign certificates here.
    UnsupportedIssuerKey,
    /// The object named by `UniqueIdentifier` is not a public key.
    NotPublicKey,
    /// A public key certified without a request needs a subject.
    NoSubject,
    /// A subject attribute is not text, or the subject does not encode.
    BadSubject,
    /// The validity is not 1 to 36500 days.
    BadValidity,
    /// Building or encoding the certificate failed.
    Build,
}

impl CertifyError {
    /// The KMIP result reason.
    pub fn reason(self) -> ResultReason {
        match self {
            CertifyError::NothingToCertify | CertifyError::NoIssuer | CertifyError::NoSubject => {
                ResultReason::MissingData
            }
            CertifyError::UnsupportedRequestType
            | CertifyError::UnsupportedRequestAlgorithm
            | CertifyError::UnsupportedIssuerKey => {
                ResultReason::UnsupportedCryptographicParameters
            }
            CertifyError::BadRequest | CertifyError::BadSubject | CertifyError::BadValidity => {
                ResultReason::InvalidField
            }
            CertifyError::BadRequestSignature => ResultReason::CryptographicFailure,
            CertifyError::IssuerNotPrivateKey
            | CertifyError::IssuerNotCertificate
            | CertifyError::NotPublicKey => ResultReason::InvalidObjectType,
            CertifyError::IssuerMismatch | CertifyError::NotSelfSigned => {
                ResultReason::InvalidField
            }
            CertifyError::Build => ResultReason::GeneralFailure,
        }
    }

    /// The message.
    pub fn message(self) -> &'static str {
        match self {
            CertifyError::NothingToCertify => {
                "Certify needs a CertificateRequestValue or the UniqueIdentifier of a public key"
            }
            CertifyError::UnsupportedRequestType => {
                "only PKCS#10 certificate requests (PKCS10 or PEM) are supported"
            }
            CertifyError::BadRequest => {
                "CertificateRequestValue is not a DER or PEM PKCS#10 certificate request"
            }
            CertifyError::BadRequestSignature => {
                "the certificate request's signature does not verify with its public key"
            }
            CertifyError::UnsupportedRequestAlgorithm => {
                "the certificate request is signed with an unsupported algorithm (ECDSA P-256/P-384 \
                 with SHA-2, Ed25519, RSA PKCS#1 v1.5 with SHA-2 are verified)"
            }
            CertifyError::NoIssuer => {
                "Certify needs the issuer: a Link of type PrivateKeyLink (the CA private key) \
                 and/or CertificateLink (the CA certificate) in Attributes"
            }
            CertifyError::IssuerNotPrivateKey => "the issuer PrivateKeyLink is not a private key",
            CertifyError::IssuerNotCertificate => "the issuer CertificateLink is not a certificate",
            CertifyError::IssuerMismatch => {
                "the issuer certificate does not hold the public key of the issuer private key"
            }
            CertifyError::NotSelfSigned => {
                "no issuer certificate: link one (CertificateLink), or certify the CA key's own \
                 public key (self-signed)"
            }
            CertifyError::UnsupportedIssuerKey => {
                "the issuer key cannot sign certificates (ECDSA P-256/P-384, Ed25519 or RSA)"
            }
            CertifyError::NotPublicKey => "Certify without a request needs a public key",
            CertifyError::NoSubject => {
                "certifying a public key needs a subject (CertificateSubjectCN, ... attributes)"
            }
            CertifyError::BadSubject => "the certificate subject is not a valid name",
            CertifyError::BadValidity => "the certificate validity must be 1 to 36500 days",
            CertifyError::Build => "building the certificate failed",
        }
    }
}

impl fmt::Display for CertifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl core::error::Error for CertifyError {}

impl From<CertifyError> for KmsError {
    fn from(e: CertifyError) -> Self {
        KmsError::kmip(e.reason(), e.message())
    }
}

/// How the CA key signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CaAlg {
    Ec(Curve),
    Rsa,
}

impl CaAlg {
    fn of(o: &ManagedObject) -> Result<Self, CertifyError> {
        if super::rsa_ops::is_rsa(o) {
            return Ok(CaAlg::Rsa);
        }
        curve_of(&o.attributes)
            .map(CaAlg::Ec)
            .ok_or(CertifyError::UnsupportedIssuerKey)
    }

    fn algorithm(self) -> AlgorithmIdentifierOwned {
        match self {
            CaAlg::Ec(c) => AlgorithmIdentifierOwned {
                oid: match c {
                    Curve::P256 => ECDSA_SHA256,
                    Curve::P384 => ECDSA_SHA384,
                    Curve::Ed25519 => ED25519,
                },
                parameters: None,
            },
            // RFC 4055 §5: the parameters are NULL.
            CaAlg::Rsa => AlgorithmIdentifierOwned {
                oid: RSA_SHA256,
                parameters: Some(der::asn1::Null.into()),
            },
        }
    }

    /// The CA public key (SPKI DER) of a PKCS#8 private key.
    fn public(self, pkcs8: &[u8]) -> KResult<Vec<u8>> {
        Ok(match self {
            CaAlg::Ec(c) => asym::from_pkcs8(Some(c), pkcs8)?.1.public_spki,
            CaAlg::Rsa => rsa::public_of(pkcs8)?,
        })
    }

    fn sign(self, pkcs8: &[u8], tbs: &[u8], env: &mut Env<'_>) -> KResult<Vec<u8>> {
        Ok(match self {
            CaAlg::Ec(c) => asym::sign(c, pkcs8, tbs)?,
            CaAlg::Rsa => rsa::sign(
                pkcs8,
                SigPadding::Pkcs1v15(HashAlg::Sha256),
                tbs,
                false,
                env.rng,
            )?,
        })
    }
}

/// The public half of the CA key, as the certificate builder wants it.
#[derive(Clone)]
struct CaPublic(Vec<u8>);

impl EncodePublicKey for CaPublic {
    fn to_public_key_der(&self) -> spki::Result<der::Document> {
        der::Document::try_from(self.0.as_slice()).map_err(spki::Error::from)
    }
}

/// The builder's view of the CA: its public key and signature algorithm (the signature itself
/// is computed by [`CaAlg::sign`] over the finalized TBS certificate).
struct CaView {
    public: CaPublic,
    alg: AlgorithmIdentifierOwned,
}

impl Keypair for CaView {
    type VerifyingKey = CaPublic;
    fn verifying_key(&self) -> CaPublic {
        self.public.clone()
    }
}

impl DynSignatureAlgorithmIdentifier for CaView {
    fn signature_algorithm_identifier(&self) -> spki::Result<AlgorithmIdentifierOwned> {
        Ok(self.alg.clone())
    }
}

/// The profile of an issued certificate (see the module documentation).
struct Issued {
    subject: Name,
    issuer: Name,
    self_signed: bool,
    san: Option<SubjectAltName>,
}

impl BuilderProfile for Issued {
    fn get_issuer(&self, _subject: &Name) -> Name {
        self.issuer.clone()
    }

    fn get_subject(&self) -> Name {
        self.subject.clone()
    }

    fn build_extensions(
        &self,
        spk: spki::SubjectPublicKeyInfoRef<'_>,
        issuer_spk: spki::SubjectPublicKeyInfoRef<'_>,
        tbs: &TbsCertificate,
    ) -> x509_cert::builder::Result<Vec<Extension>> {
        let mut exts: Vec<Extension> = Vec::new();
        let ski = SubjectKeyIdentifier::try_from(spk)?;
        let aki = SubjectKeyIdentifier::try_from(issuer_spk)?;
        exts.push((&ski).to_extension(tbs.subject(), &exts)?);
        exts.push(
            (&AuthorityKeyIdentifier {
                key_identifier: Some(aki.0),
                ..Default::default()
            })
                .to_extension(tbs.subject(), &exts)?,
        );
        exts.push(
            (&BasicConstraints {
                ca: self.self_signed,
                path_len_constraint: None,
            })
                .to_extension(tbs.subject(), &exts)?,
        );
        if self.self_signed {
            exts.push(
                (&KeyUsage(
                    KeyUsages::KeyCertSign | KeyUsages::CRLSign | KeyUsages::DigitalSignature,
                ))
                    .to_extension(tbs.subject(), &exts)?,
            );
        }
        if let Some(san) = &self.san {
            exts.push(san.to_extension(tbs.subject(), &exts)?);
        }
        Ok(exts)
    }
}

/// A PKCS#10 request, its self-signature checked.
pub(super) struct CheckedRequest {
    /// The requested subject.
    pub subject: Name,
    /// The key to certify (SPKI DER).
    pub spki: Vec<u8>,
    /// The requested subject alternative name.
    san: Option<SubjectAltName>,
}

/// Parse a PKCS#10 request as Certify does (DER, or PEM `CERTIFICATE REQUEST`; CRMF is
/// refused) and verify its self-signature: the key it asks to certify (SubjectPublicKeyInfo DER).
pub fn check_certificate_request(
    kind: CertificateRequestType,
    value: &[u8],
) -> Result<Vec<u8>, CertifyError> {
    check_request(kind, value).map(|r| r.spki)
}

/// Parse a PKCS#10 request (DER, or PEM `CERTIFICATE REQUEST`) and verify its self-signature.
pub(super) fn check_request(
    kind: CertificateRequestType,
    value: &[u8],
) -> Result<CheckedRequest, CertifyError> {
    let req = match kind {
        CertificateRequestType::PKCS10 => CertReq::from_der(value)
            .or_else(|_| CertReq::from_pem(value))
            .map_err(|_| CertifyError::BadRequest)?,
        CertificateRequestType::PEM => {
            CertReq::from_pem(value).map_err(|_| CertifyError::BadRequest)?
        }
        CertificateRequestType::CRMF => return Err(CertifyError::UnsupportedRequestType),
    };
    let info = req.info.to_der().map_err(|_| CertifyError::BadRequest)?;
    let spki = req
        .info
        .public_key
        .to_der()
        .map_err(|_| CertifyError::BadRequest)?;
    let sig = req
        .signature
        .as_bytes()
        .ok_or(CertifyError::BadRequestSignature)?;
    if !verify_request(&req.algorithm, &spki, &info, sig)? {
        return Err(CertifyError::BadRequestSignature);
    }
    let mut san = None;
    for attr in req.info.attributes.iter() {
        if attr.oid != ExtensionReq::OID {
            continue;
        }
        for v in attr.values.iter() {
            let exts: ExtensionReq = v.decode_as().map_err(|_| CertifyError::BadRequest)?;
            for e in exts.0 {
                if e.extn_id == SubjectAltName::OID {
                    san = Some(
                        SubjectAltName::from_der(e.extn_value.as_bytes())
                            .map_err(|_| CertifyError::BadRequest)?,
                    );
                }
            }
        }
    }
    Ok(CheckedRequest {
        subject: req.info.subject,
        spki,
        san,
    })
}

/// Verify a request signature by its algorithm identifier. `Ok(false)`: a wrong signature.
fn verify_request(
    alg: &AlgorithmIdentifierOwned,
    spki: &[u8],
    msg: &[u8],
    sig: &[u8],
) -> Result<bool, CertifyError> {
    let unsupported = CertifyError::UnsupportedRequestAlgorithm;
    let hash = |oid: ObjectIdentifier| match oid {
        o if o == ECDSA_SHA256 || o == RSA_SHA256 => Some(HashAlg::Sha256),
        o if o == ECDSA_SHA384 || o == RSA_SHA384 => Some(HashAlg::Sha384),
        o if o == ECDSA_SHA512 || o == RSA_SHA512 => Some(HashAlg::Sha512),
        _ => None,
    };
    if [RSA_SHA256, RSA_SHA384, RSA_SHA512].contains(&alg.oid) {
        let h = hash(alg.oid).ok_or(unsupported)?;
        rsa::import_public(spki, false).map_err(|_| CertifyError::BadRequest)?;
        return rsa::verify(spki, SigPadding::Pkcs1v15(h), msg, false, sig).or(Ok(false));
    }
    let (curve, canonical) =
        asym::public_from_spki(None, spki).map_err(|_| CertifyError::BadRequest)?;
    match curve {
        Curve::Ed25519 if alg.oid == ED25519 => {
            asym::verify(curve, &canonical, msg, sig).or(Ok(false))
        }
        Curve::P256 | Curve::P384 => {
            let h = hash(alg.oid)
                .filter(|_| [ECDSA_SHA256, ECDSA_SHA384, ECDSA_SHA512].contains(&alg.oid))
                .ok_or(unsupported)?;
            asym::verify_prehashed(curve, &canonical, &mac::digest(h, msg), sig).or(Ok(false))
        }
        Curve::Ed25519 => Err(unsupported),
    }
}

/// How a name attribute's value is encoded (RFC 5280 Appendix A: country, serial number and DN
/// qualifier are PrintableString, e-mail and domain component IA5String, the rest UTF8String).
#[derive(Clone, Copy)]
enum Text {
    Utf8,
    Printable,
    Ia5,
}

/// The `CertificateSubject<suffix>` attributes, their attribute types and encodings, in X.500
/// order (most general first).
const SUBJECT_PARTS: &[(&str, &str, Text)] = &[
    ("DC", "0.9.2342.19200300.100.1.25", Text::Ia5),
    ("C", "2.5.4.6", Text::Printable),
    ("ST", "2.5.4.8", Text::Utf8),
    ("L", "2.5.4.7", Text::Utf8),
    ("O", "2.5.4.10", Text::Utf8),
    ("OU", "2.5.4.11", Text::Utf8),
    ("Title", "2.5.4.12", Text::Utf8),
    ("CN", "2.5.4.3", Text::Utf8),
    ("UID", "0.9.2342.19200300.100.1.1", Text::Utf8),
    ("SerialNumber", "2.5.4.5", Text::Printable),
    ("DNQualifier", "2.5.4.46", Text::Printable),
    ("Email", "1.2.840.113549.1.9.1", Text::Ia5),
];

/// The subject the attributes give (`CertificateSubject<part>`, directly or inside a
/// `CertificateAttributes` structure), one RDN per value, in [`SUBJECT_PARTS`] order.
fn subject_of(a: &Attributes) -> Result<Option<Name>, CertifyError> {
    use der::asn1::{Any, Ia5StringRef, PrintableStringRef, Utf8StringRef};
    use x509_cert::attr::AttributeTypeAndValue;
    use x509_cert::name::{RdnSequence, RelativeDistinguishedName};

    let mut items: Vec<&Ttlv> = a.other.iter().collect();
    for c in a.other.iter().filter(|x| x.tag == "CertificateAttributes") {
        items.extend(c.children().iter());
    }
    let mut seq = RdnSequence::default();
    for (suffix, oid, kind) in SUBJECT_PARTS {
        let tag = alloc::format!("CertificateSubject{suffix}");
        for t in items.iter().filter(|t| t.tag == tag) {
            let Value::TextString(s) = &t.value else {
                return Err(CertifyError::BadSubject);
            };
            if s.is_empty() {
                continue;
            }
            let value = match kind {
                Text::Utf8 => Utf8StringRef::new(s).and_then(|v| Any::encode_from(&v)),
                Text::Printable => PrintableStringRef::new(s).and_then(|v| Any::encode_from(&v)),
                Text::Ia5 => Ia5StringRef::new(s).and_then(|v| Any::encode_from(&v)),
            }
            .map_err(|_| CertifyError::BadSubject)?;
            let mut rdn = RelativeDistinguishedName::default();
            rdn.insert(AttributeTypeAndValue {
                oid: ObjectIdentifier::new(oid).map_err(|_| CertifyError::BadSubject)?,
                value,
            })
            .map_err(|_| CertifyError::BadSubject)?;
            seq.push(rdn);
        }
    }
    if seq.is_empty() {
        return Ok(None);
    }
    let der_name = seq.to_der().map_err(|_| CertifyError::BadSubject)?;
    Name::from_der(&der_name)
        .map(Some)
        .map_err(|_| CertifyError::BadSubject)
}

/// The validity in seconds after `now` (see the module documentation).
fn validity_secs(a: &Attributes, now: i64) -> Result<i64, CertifyError> {
    let days = a
        .vendor_attributes
        .iter()
        .find(|v| v.name == VALIDITY_DAYS_ATTRIBUTE)
        .map(|v| match &v.value.value {
            Value::Integer(d) => Ok(i64::from(*d)),
            Value::LongInteger(d) => Ok(*d),
            Value::TextString(s) => s
                .trim()
                .parse::<i64>()
                .map_err(|_| CertifyError::BadValidity),
            Value::ByteString(b) => core::str::from_utf8(b)
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .ok_or(CertifyError::BadValidity),
            _ => Err(CertifyError::BadValidity),
        })
        .transpose()?;
    let secs = match (days, a.deactivation_date) {
        (Some(d), _) => {
            if !(1..=MAX_DAYS).contains(&d) {
                return Err(CertifyError::BadValidity);
            }
            d * 86_400
        }
        (None, Some(end)) => {
            let s = end.saturating_sub(now);
            if !(1..=MAX_DAYS * 86_400).contains(&s) {
                return Err(CertifyError::BadValidity);
            }
            s
        }
        (None, None) => DEFAULT_DAYS * 86_400,
    };
    Ok(secs)
}

fn time_at(unix: i64) -> Result<Time, CertifyError> {
    let secs = u64::try_from(unix).map_err(|_| CertifyError::BadValidity)?;
    let dt = der::DateTime::from_unix_duration(Duration::from_secs(secs))
        .map_err(|_| CertifyError::BadValidity)?;
    Ok(Time::from(dt))
}

/// A 16-byte positive, non-zero serial number (RFC 5280 §4.1.2.2).
fn serial(env: &mut Env<'_>) -> KResult<SerialNumber> {
    let mut b = [0u8; 16];
    env.rng
        .fill(&mut b)
        .map_err(|_| KmsError::Internal("random number generator failure"))?;
    b[0] = (b[0] & 0x7F) | 0x40;
    SerialNumber::new(&b).map_err(|_| CertifyError::Build.into())
}

/// What [`build`] needs.
struct Plan<'a> {
    subject: Name,
    issuer: Option<Name>,
    spki: &'a [u8],
    san: Option<SubjectAltName>,
    validity_secs: i64,
}

/// Build and sign the certificate (DER).
fn build(plan: Plan<'_>, alg: CaAlg, ca_pkcs8: &[u8], env: &mut Env<'_>) -> KResult<Vec<u8>> {
    let ca_public = alg.public(ca_pkcs8)?;
    let self_signed = plan.issuer.is_none();
    if self_signed && !same_key(plan.spki, &ca_public) {
        return Err(CertifyError::NotSelfSigned.into());
    }
    let profile = Issued {
        issuer: plan.issuer.unwrap_or_else(|| plan.subject.clone()),
        subject: plan.subject,
        self_signed,
        san: plan.san,
    };
    let validity = Validity::new(
        time_at(env.now)?,
        time_at(env.now.saturating_add(plan.validity_secs))?,
    );
    let spki = SubjectPublicKeyInfoOwned::from_der(plan.spki).map_err(|_| CertifyError::Build)?;
    let mut builder = CertificateBuilder::new(profile, serial(env)?, validity, spki)
        .map_err(|_| CertifyError::Build)?;
    let view = CaView {
        public: CaPublic(ca_public),
        alg: alg.algorithm(),
    };
    let tbs = builder.finalize(&view).map_err(|_| CertifyError::Build)?;
    let sig = alg.sign(ca_pkcs8, &tbs, env)?;
    let bits = BitString::from_bytes(&sig).map_err(|_| CertifyError::Build)?;
    let cert = builder
        .assemble(bits, &view)
        .map_err(|_| CertifyError::Build)?;
    Ok(cert.to_der().map_err(|_| CertifyError::Build)?)
}

/// Whether two SPKI DER encodings hold the same key (compared in canonical form).
pub(super) fn same_key(a: &[u8], b: &[u8]) -> bool {
    match (
        crate::x509::canonical_spki(a),
        crate::x509::canonical_spki(b),
    ) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

fn link_of(a: &Attributes, t: LinkType) -> Option<&str> {
    a.links
        .iter()
        .find(|l| l.link_type == t)
        .map(|l| l.uid.as_str())
}

impl<S: Store> Kms<S> {
    /// KMIP Certify (see the module documentation).
    pub(super) async fn certify(
        &self,
        env: &mut Env<'_>,
        user: &str,
        uid: Option<String>,
        request: Option<(CertificateRequestType, Vec<u8>)>,
        attributes: &Attributes,
    ) -> KResult<Response> {
        // The key to certify and the subject.
        let (spki, subject, san, public_uid) = match (&request, &uid) {
            (Some((kind, value)), _) => {
                let r = check_request(*kind, value)?;
                let subject = subject_of(attributes)?.unwrap_or(r.subject);
                (r.spki, subject, r.san, None)
            }
            (None, Some(u)) => {
                let (mut o, _) = self.resolve(user, Some(u), Right::Get).await?;
                // A private key (the ID placeholder after CreateKeyPair) stands for its public
                // key.
                if o.object_type == ObjectType::PrivateKey
                    && let Some(p) = link_of(&o.attributes, LinkType::PublicKeyLink)
                {
                    let p = String::from(p);
                    o = self.resolve(user, Some(&p), Right::Get).await?.0;
                }
                if o.object_type != ObjectType::PublicKey {
                    return Err(CertifyError::NotPublicKey.into());
                }
                let spki = o.material.as_ref().ok_or(super::DESTROYED)?.to_vec();
                let subject = subject_of(attributes)?.ok_or(CertifyError::NoSubject)?;
                (spki, subject, None, Some(o))
            }
            (None, None) => return Err(CertifyError::NothingToCertify.into()),
        };
        // The issuer.
        let key_link = link_of(attributes, LinkType::PrivateKeyLink);
        let mut cert_link = link_of(attributes, LinkType::CertificateLink).map(String::from);
        let ca_uid = match (key_link, &cert_link) {
            (Some(k), _) => String::from(k),
            (None, Some(c)) => {
                let (ca_cert, _) = self.resolve(user, Some(c), Right::Get).await?;
                link_of(&ca_cert.attributes, LinkType::PrivateKeyLink)
                    .map(String::from)
                    .ok_or(CertifyError::NoIssuer)?
            }
            (None, None) => return Err(CertifyError::NoIssuer.into()),
        };
        let (ca, _) = self.resolve(user, Some(&ca_uid), Right::Sign).await?;
        if ca.object_type != ObjectType::PrivateKey {
            return Err(CertifyError::IssuerNotPrivateKey.into());
        }
        self.usable(&ca, env.now, usage::SIGN)?;
        let alg = CaAlg::of(&ca)?;
        let ca_pkcs8 = ca.material.as_ref().ok_or(super::DESTROYED)?;
        let ca_public = alg.public(ca_pkcs8)?;
        // The CA key's own public key: a self-signed certificate (a root), whatever
        // certificate the key already has.
        if same_key(&spki, &ca_public) {
            cert_link = None;
        } else if cert_link.is_none() {
            cert_link = link_of(&ca.attributes, LinkType::CertificateLink).map(String::from);
        }
        let issuer = match &cert_link {
            Some(c) => {
                let (ca_cert, _) = self.resolve(user, Some(c), Right::Get).await?;
                if ca_cert.object_type != ObjectType::Certificate {
                    return Err(CertifyError::IssuerNotCertificate.into());
                }
                let der_cert = ca_cert.material.as_ref().ok_or(super::DESTROYED)?;
                let parsed = x509_cert::Certificate::from_der(der_cert)
                    .map_err(|_| CertifyError::IssuerNotCertificate)?;
                let tbs = parsed.tbs_certificate();
                let cert_spki = tbs
                    .subject_public_key_info()
                    .to_der()
                    .map_err(|_| CertifyError::IssuerNotCertificate)?;
                if !same_key(&cert_spki, &ca_public) {
                    return Err(CertifyError::IssuerMismatch.into());
                }
                Some(tbs.subject().clone())
            }
            None => None,
        };
        let plan = Plan {
            subject,
            issuer,
            spki: &spki,
            san,
            validity_secs: validity_secs(attributes, env.now)?,
        };
        let der_cert = build(plan, alg, ca_pkcs8, env)?;

        // The new certificate object: the request's names and tags, the derived certificate
        // attributes, and the links of the module documentation.
        let mut attrs = attributes.clone();
        attrs.links.clear();
        attrs
            .vendor_attributes
            .retain(|v| v.name != VALIDITY_DAYS_ATTRIBUTE);
        attrs.other.retain(|x| x.tag != "CertificateAttributes");
        attrs.deactivation_date = None;
        attrs.cryptographic_usage_mask = None;
        // Valid from now (its notBefore): Active unless the request says otherwise.
        attrs.activation_date.get_or_insert(env.now);
        certs::absorb_registered(&mut attrs, &der_cert)?;
        if let Some(c) = &cert_link {
            attrs.links.push(Link {
                link_type: LinkType::CertificateLink,
                uid: c.clone(),
            });
        }
        let public = match public_uid {
            Some(o) => Some(o),
            None => self.owned_public_key(user, &spki).await?,
        };
        self.store_certificate(env, user, attrs, der_cert, public.as_ref())
            .await
            .map(|uid| Response::Certify { uid })
    }

    /// The first public key `user` owns whose key is `spki`.
    pub(super) async fn owned_public_key(
        &self,
        user: &str,
        spki: &[u8],
    ) -> KResult<Option<ManagedObject>> {
        let Some(fp) = crate::x509::spki_fingerprint(spki) else {
            return Ok(None);
        };
        let kw = [
            alloc::format!("spki={fp}"),
            alloc::format!("type={}", ObjectType::PublicKey.name()),
        ];
        let owner = [alloc::format!("owner={user}")];
        for u in self
            .store
            .search_each(&kw, &owner)
            .await?
            .into_iter()
            .flatten()
        {
            if let Some((o, _)) = self.load(&u).await?
                && o.owner == user
                && o.material.as_deref().is_some_and(|m| same_key(m, spki))
            {
                return Ok(Some(o));
            }
        }
        Ok(None)
    }

    /// Insert a certificate object and link it with `public` (its public key): the certificate
    /// gets `PublicKeyLink` (and `PrivateKeyLink` when the public key has one), the public key
    /// gets `CertificateLink` (when `user` owns it). Returns the certificate's uid.
    pub(super) async fn store_certificate(
        &self,
        env: &mut Env<'_>,
        user: &str,
        mut attrs: Attributes,
        der_cert: Vec<u8>,
        public: Option<&ManagedObject>,
    ) -> KResult<String> {
        if let Some(p) = public {
            link_to(&mut attrs, LinkType::PublicKeyLink, &p.uid);
            if let Some(k) = link_of(&p.attributes, LinkType::PrivateKeyLink).map(String::from) {
                link_to(&mut attrs, LinkType::PrivateKeyLink, &k);
            }
        }
        let (uid, a) = self.prepare_attributes(env, &attrs, ObjectType::Certificate)?;
        let o = ManagedObject {
            uid: uid.clone(),
            object_type: ObjectType::Certificate,
            state: initial_state(&a, env.now),
            owner: user.into(),
            material: Some(zeroize::Zeroizing::new(der_cert)),
            grants: Vec::new(),
            attributes: a,
        };
        self.insert(&o).await?;
        if let Some(p) = public
            && p.owner == user
        {
            self.link_public_key(user, p, &uid, env.now).await?;
        }
        Ok(uid)
    }

    /// Add `CertificateLink` → `cert_uid` to the public key `public` and to the private key it
    /// links to (`PrivateKeyLink`), when `user` owns them.
    pub(super) async fn link_public_key(
        &self,
        user: &str,
        public: &ManagedObject,
        cert_uid: &str,
        now: i64,
    ) -> KResult<()> {
        let mut uids = alloc::vec![public.uid.clone()];
        if let Some(k) = link_of(&public.attributes, LinkType::PrivateKeyLink) {
            uids.push(k.to_string());
        }
        for u in uids {
            let r = self
                .update(
                    user,
                    Some(&u),
                    Right::Get,
                    |o| {
                        if o.owner == user {
                            link_to(&mut o.attributes, LinkType::CertificateLink, cert_uid);
                        }
                        Ok(())
                    },
                    now,
                )
                .await;
            match r {
                // A private key that is gone (or not the caller's to see) keeps no link.
                Ok(_) => {}
                Err(_) if u != public.uid => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Set the link of type `t` to `uid` (replacing one of the same type).
fn link_to(a: &mut Attributes, t: LinkType, uid: &str) {
    a.links.retain(|l| l.link_type != t);
    a.links.push(Link {
        link_type: t,
        uid: uid.to_string(),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject_attrs(parts: &[(&str, &str)]) -> Attributes {
        let mut a = Attributes::default();
        for (p, v) in parts {
            a.other
                .push(Ttlv::text(&alloc::format!("CertificateSubject{p}"), v));
        }
        a
    }

    #[test]
    fn subject_in_x500_order_with_rfc5280_string_types() {
        let a = subject_attrs(&[("CN", "a,b+c"), ("C", "FR"), ("O", "Org")]);
        let n = subject_of(&a).unwrap().unwrap();
        assert_eq!(n.to_string(), "CN=a\\,b\\+c,O=Org,C=FR");
        // A country is a PrintableString: `@` is not printable.
        assert_eq!(
            subject_of(&subject_attrs(&[("C", "F@")])),
            Err(CertifyError::BadSubject)
        );
        // Inside a Cosmian CertificateAttributes structure too.
        let mut b = Attributes::default();
        b.other.push(Ttlv::structure(
            "CertificateAttributes",
            alloc::vec![Ttlv::text("CertificateSubjectCN", "x")],
        ));
        assert_eq!(subject_of(&b).unwrap().unwrap().to_string(), "CN=x");
        assert_eq!(subject_of(&Attributes::default()).unwrap(), None);
        let mut c = Attributes::default();
        c.other.push(Ttlv::int("CertificateSubjectCN", 1));
        assert_eq!(subject_of(&c), Err(CertifyError::BadSubject));
    }

    fn with_days(v: Ttlv) -> Attributes {
        let mut a = Attributes::default();
        a.vendor_attributes.push(VendorAttribute {
            vendor: VENDOR_COSMIAN.into(),
            name: VALIDITY_DAYS_ATTRIBUTE.into(),
            value: v,
        });
        a
    }

    #[test]
    fn validity_from_days_deactivation_or_default() {
        let now = 1_000_000;
        assert_eq!(
            validity_secs(&Attributes::default(), now),
            Ok(DEFAULT_DAYS * 86_400)
        );
        assert_eq!(
            validity_secs(&with_days(Ttlv::text("AttributeValue", "7")), now),
            Ok(7 * 86_400)
        );
        assert_eq!(
            validity_secs(&with_days(Ttlv::int("AttributeValue", 2)), now),
            Ok(2 * 86_400)
        );
        for bad in ["0", "36501", "-1", "ten"] {
            assert_eq!(
                validity_secs(&with_days(Ttlv::text("AttributeValue", bad)), now),
                Err(CertifyError::BadValidity),
                "{bad}"
            );
        }
        let a = Attributes {
            deactivation_date: Some(now + 3600),
            ..Attributes::default()
        };
        assert_eq!(validity_secs(&a, now), Ok(3600));
        let past = Attributes {
            deactivation_date: Some(now - 1),
            ..Attributes::default()
        };
        assert_eq!(validity_secs(&past, now), Err(CertifyError::BadValidity));
    }

    #[test]
    fn request_types_and_garbage() {
        assert_eq!(
            check_request(CertificateRequestType::CRMF, b"\x30\x00").err(),
            Some(CertifyError::UnsupportedRequestType)
        );
        assert_eq!(
            check_request(CertificateRequestType::PKCS10, b"\x30\x03\x02\x01\x01").err(),
            Some(CertifyError::BadRequest)
        );
        assert_eq!(
            check_request(CertificateRequestType::PEM, b"-----BEGIN nothing").err(),
            Some(CertifyError::BadRequest)
        );
    }

    #[test]
    fn pem_request_and_its_signature() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(alloc::vec!["a.example".to_string()]).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(rcgen::DnType::CommonName, "a");
        let csr = p.serialize_request(&key).unwrap();
        let pem = csr.pem().unwrap();
        let r = check_request(CertificateRequestType::PEM, pem.as_bytes()).unwrap();
        assert_eq!(r.subject.to_string(), "CN=a");
        assert_eq!(r.spki, rcgen::PublicKeyData::subject_public_key_info(&key));
        assert!(r.san.is_some());
        // The same request under another key's SPKI: its signature no longer verifies.
        let other = rcgen::KeyPair::generate().unwrap();
        let mut der = csr.der().to_vec();
        let (old, new) = (
            rcgen::PublicKeyData::subject_public_key_info(&key),
            rcgen::PublicKeyData::subject_public_key_info(&other),
        );
        let at = der.windows(old.len()).position(|w| w == old).unwrap();
        der[at..at + old.len()].copy_from_slice(&new);
        assert_eq!(
            check_request(CertificateRequestType::PKCS10, &der).err(),
            Some(CertifyError::BadRequestSignature)
        );
    }
}
