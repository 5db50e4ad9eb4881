//! X.509 pieces of the bootstrap: the self-signed RA-TLS bootstrap certificate, the PKCS#10 CSR for the API
//! certificate, and the validation of the chain the provisioner posts back.
//!
//! Profiles: RFC 5280 (certificates), RFC 2986 (PKCS#10), RFC 2985 §5.4.2 (extensionRequest attribute).
//! The RA-TLS extension is a non-critical extension whose extnValue (an OCTET STRING by RFC 5280 §4.1) holds
//! the quote bytes; its OID names the platform (SEV-SNP `1.2.840.113741.1337.7`, TDX `…1337.8`).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::net::IpAddr;
use core::str::FromStr;
use core::time::Duration;

use der::asn1::{Ia5String, OctetString};
use der::{Decode, Encode, EncodePem, pem::LineEnding};
use p256::ecdsa::DerSignature;
use sha2::{Digest, Sha256};
use spki::{EncodePublicKey, ObjectIdentifier, SubjectPublicKeyInfoOwned};
use x509_cert::builder::{Builder, CertificateBuilder, profile::BuilderProfile};
use x509_cert::certificate::{Certificate, TbsCertificate};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages, SubjectAltName,
};
use x509_cert::ext::{Extension, ToExtension};
use x509_cert::name::Name;
use x509_cert::request::RequestBuilder;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};

use super::keys::BootstrapKey;

/// id-kp-serverAuth (RFC 5280 §4.2.1.12).
const ID_KP_SERVER_AUTH: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.1");
/// id-kp-clientAuth (RFC 5280 §4.2.1.12).
const ID_KP_CLIENT_AUTH: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.2");
/// RA-TLS SEV-SNP quote extension.
pub const OID_SNP_QUOTE: ObjectIdentifier =
    ObjectIdentifier::new_unwrap(attest::ratls::OID_SNP_QUOTE);
/// RA-TLS TDX quote extension.
pub const OID_TDX_QUOTE: ObjectIdentifier =
    ObjectIdentifier::new_unwrap(attest::ratls::OID_TDX_QUOTE);
/// RA-TLS SGX quote extension (recognised when looking for a quote; never produced here).
pub const OID_SGX_QUOTE: ObjectIdentifier =
    ObjectIdentifier::new_unwrap(attest::ratls::OID_SGX_QUOTE);

/// Subject of the bootstrap certificate.
pub const BOOTSTRAP_SUBJECT: &str = "CN=KMS bootstrap (RA-TLS)";
/// The bootstrap certificate starts this long before the given time (clock skew between host and client).
const NOT_BEFORE_SKEW: u64 = 3600;
/// Lifetime of the bootstrap certificate after the given time.
const LIFETIME: u64 = 365 * 24 * 3600;
/// Largest posted chain we look at.
pub use crate::x509::MAX_CHAIN_CERTS;

/// Errors of certificate building and chain validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum X509Error {
    /// The subject is not an RFC 4514 distinguished name.
    BadSubject,
    /// A DNS name is not IA5 text.
    BadDnsName,
    /// An IP address does not parse.
    BadIpAddress,
    /// The time is before 1970 or past the encodable range.
    BadTime,
    /// ASN.1 encoding or building failed.
    Build(&'static str),
    /// A posted PEM has no `CERTIFICATE` block.
    NoCertificate,
    /// A posted PEM block does not decode as an X.509 certificate.
    BadCertificate,
    /// More than [`MAX_CHAIN_CERTS`] certificates.
    ChainTooLong,
    /// The leaf certificate's public key is not the bootstrap key.
    LeafKeyMismatch,
    /// Certificate `n`'s issuer is not certificate `n + 1`'s subject.
    ChainBroken(usize),
}

impl fmt::Display for X509Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            X509Error::BadSubject => {
                f.write_str("subject is not a distinguished name like \"CN=kms.example.com,O=Org\"")
            }
            X509Error::BadDnsName => f.write_str("a DNS name is not ASCII (IA5) text"),
            X509Error::BadIpAddress => f.write_str("an IP address does not parse"),
            X509Error::BadTime => f.write_str("time out of the certificate range"),
            X509Error::Build(what) => write!(f, "certificate building failed: {what}"),
            X509Error::NoCertificate => f.write_str("no PEM CERTIFICATE block found"),
            X509Error::BadCertificate => {
                f.write_str("a CERTIFICATE block is not a valid X.509 certificate")
            }
            X509Error::ChainTooLong => {
                write!(f, "chain has more than {MAX_CHAIN_CERTS} certificates")
            }
            X509Error::LeafKeyMismatch => {
                f.write_str("the leaf certificate's public key is not this server's bootstrap key")
            }
            X509Error::ChainBroken(n) => {
                write!(
                    f,
                    "certificate {n} of the chain is not issued by certificate {}",
                    n + 1
                )
            }
        }
    }
}

impl core::error::Error for X509Error {}

/// A quote to carry in an RA-TLS extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteExtension {
    /// The platform OID ([`OID_SNP_QUOTE`] or [`OID_TDX_QUOTE`]).
    pub oid: ObjectIdentifier,
    /// The quote bytes.
    pub quote: Vec<u8>,
}

impl QuoteExtension {
    fn to_extension(&self) -> Result<Extension, X509Error> {
        Ok(Extension {
            extn_id: self.oid,
            critical: false,
            extn_value: OctetString::new(self.quote.as_slice())
                .map_err(|_| X509Error::Build("quote too large"))?,
        })
    }
}

/// Self-signed leaf profile: fixed extensions (basic constraints, key usage, EKU serverAuth) plus the quote.
struct SelfSigned {
    subject: Name,
    extra: Vec<Extension>,
}

impl BuilderProfile for SelfSigned {
    fn get_issuer(&self, subject: &Name) -> Name {
        subject.clone()
    }

    fn get_subject(&self) -> Name {
        self.subject.clone()
    }

    fn build_extensions(
        &self,
        _spk: spki::SubjectPublicKeyInfoRef<'_>,
        _issuer_spk: spki::SubjectPublicKeyInfoRef<'_>,
        tbs: &TbsCertificate,
    ) -> x509_cert::builder::Result<Vec<Extension>> {
        let mut exts = Vec::new();
        exts.push(
            (&BasicConstraints {
                ca: false,
                path_len_constraint: None,
            })
                .to_extension(tbs.subject(), &[])?,
        );
        exts.push(
            (&KeyUsage(KeyUsages::DigitalSignature.into())).to_extension(tbs.subject(), &[])?,
        );
        exts.push(
            (&ExtendedKeyUsage(alloc::vec![ID_KP_SERVER_AUTH])).to_extension(tbs.subject(), &[])?,
        );
        exts.extend(self.extra.iter().cloned());
        Ok(exts)
    }
}

fn time_at(unix: u64) -> Result<Time, X509Error> {
    let dt = der::DateTime::from_unix_duration(Duration::from_secs(unix))
        .map_err(|_| X509Error::BadTime)?;
    Ok(Time::from(dt))
}

fn spki_of(key: &BootstrapKey) -> Result<SubjectPublicKeyInfoOwned, X509Error> {
    let der = key
        .signing_key()
        .verifying_key()
        .to_public_key_der()
        .map_err(|_| X509Error::Build("spki"))?;
    SubjectPublicKeyInfoOwned::from_der(der.as_bytes()).map_err(|_| X509Error::Build("spki"))
}

/// DER of the SubjectPublicKeyInfo of the bootstrap key.
pub fn spki_der(key: &BootstrapKey) -> Result<Vec<u8>, X509Error> {
    spki_of(key)?.to_der().map_err(|_| X509Error::Build("spki"))
}

/// Builds the self-signed bootstrap certificate (DER). `now` is untrusted unix time: it only sets the validity
/// window (one hour before `now` to one year after). The serial number is derived from the public key, so the
/// same key and time give the same certificate.
pub fn bootstrap_certificate(
    key: &BootstrapKey,
    now: i64,
    quote: Option<&QuoteExtension>,
) -> Result<Vec<u8>, X509Error> {
    let now = u64::try_from(now).map_err(|_| X509Error::BadTime)?;
    let not_before = time_at(now.saturating_sub(NOT_BEFORE_SKEW))?;
    let not_after = time_at(now.checked_add(LIFETIME).ok_or(X509Error::BadTime)?)?;
    let subject = Name::from_str(BOOTSTRAP_SUBJECT).map_err(|_| X509Error::BadSubject)?;
    let mut extra = Vec::new();
    if let Some(q) = quote {
        extra.push(q.to_extension()?);
    }
    let mut serial = [0u8; 16];
    serial.copy_from_slice(&key.public_key_hash()[..16]);
    serial[0] &= 0x7F; // positive (RFC 5280 §4.1.2.2)
    serial[0] |= 0x01; // and not zero / no leading zero octet
    let serial = SerialNumber::new(&serial).map_err(|_| X509Error::Build("serial"))?;
    let builder = CertificateBuilder::new(
        SelfSigned { subject, extra },
        serial,
        Validity::new(not_before, not_after),
        spki_of(key)?,
    )
    .map_err(|_| X509Error::Build("tbs"))?;
    let cert = builder
        .build::<_, DerSignature>(key.signing_key())
        .map_err(|_| X509Error::Build("signature"))?;
    cert.to_der().map_err(|_| X509Error::Build("encoding"))
}

/// What the provisioner asks to have in the CSR.
#[derive(Debug, Clone, Default)]
pub struct CsrParams<'a> {
    /// RFC 4514 subject, e.g. `CN=kms.example.com,O=Example`.
    pub subject: &'a str,
    /// DNS subjectAltNames.
    pub dns_names: &'a [String],
    /// IP subjectAltNames (text form, v4 or v6).
    pub ip_addresses: &'a [String],
}

/// Builds a PKCS#10 CSR (PEM) for the API certificate, signed with the bootstrap key; with `quote`, the RA-TLS
/// extension is requested too (so a CA that copies extensions issues an API RA-TLS certificate).
pub fn csr_pem(
    key: &BootstrapKey,
    params: &CsrParams<'_>,
    quote: Option<&QuoteExtension>,
) -> Result<String, X509Error> {
    let subject = Name::from_str(params.subject).map_err(|_| X509Error::BadSubject)?;
    let mut names = Vec::new();
    for dns in params.dns_names {
        names.push(GeneralName::DnsName(
            Ia5String::new(dns.as_str()).map_err(|_| X509Error::BadDnsName)?,
        ));
    }
    for ip in params.ip_addresses {
        let ip = IpAddr::from_str(ip.trim()).map_err(|_| X509Error::BadIpAddress)?;
        names.push(GeneralName::from(ip));
    }
    let mut builder = RequestBuilder::new(subject).map_err(|_| X509Error::BadSubject)?;
    if !names.is_empty() {
        builder
            .add_extension(&SubjectAltName(names))
            .map_err(|_| X509Error::Build("subjectAltName"))?;
    }
    builder
        .add_extension(&ExtendedKeyUsage(alloc::vec![
            ID_KP_SERVER_AUTH,
            ID_KP_CLIENT_AUTH
        ]))
        .map_err(|_| X509Error::Build("extendedKeyUsage"))?;
    if let Some(q) = quote {
        builder
            .add_extension(q.to_extension()?)
            .map_err(|_| X509Error::Build("quote extension"))?;
    }
    let req = builder
        .build::<_, DerSignature>(key.signing_key())
        .map_err(|_| X509Error::Build("signature"))?;
    req.to_pem(LineEnding::LF)
        .map_err(|_| X509Error::Build("pem"))
}

/// The certificates of a PEM bundle ([`crate::x509::pem_chain`]), with this module's errors.
pub fn parse_pem_chain(pem: &str) -> Result<Vec<Certificate>, X509Error> {
    crate::x509::pem_chain(pem.as_bytes()).map_err(|e| match e {
        crate::x509::PemError::Empty => X509Error::NoCertificate,
        crate::x509::PemError::TooMany => X509Error::ChainTooLong,
        _ => X509Error::BadCertificate,
    })
}

/// The RA-TLS quote carried by a certificate, if any.
pub fn quote_extension(cert: &Certificate) -> Option<QuoteExtension> {
    let exts = cert.tbs_certificate().extensions()?;
    let mut quotes = exts.iter().filter(|e| {
        e.extn_id == OID_SNP_QUOTE || e.extn_id == OID_TDX_QUOTE || e.extn_id == OID_SGX_QUOTE
    });
    let e = quotes.next()?;
    // Two quote extensions (a duplicate, or two kinds) are ambiguous: no quote at all.
    if quotes.next().is_some() {
        return None;
    }
    Some(QuoteExtension {
        oid: e.extn_id,
        quote: e.extn_value.as_bytes().to_vec(),
    })
}

/// Whether `cert` carries an SNP or TDX quote that parses and whose report_data binds `key` (zero
/// nonce, as in the bootstrap certificate). Only then may the RA-TLS port close at `/start`: an
/// extension with a quote OID and garbage content, or a quote for another key, keeps it open. (The
/// signature of the report is the verifier's business; the port stays a convenience for it.)
fn quote_binds_key(cert: &Certificate, key: &BootstrapKey) -> bool {
    let Some(q) = quote_extension(cert) else {
        return false;
    };
    let binds = |report_data: &[u8; 64]| {
        attest::ratls::check_report_data_binding(report_data, key.public_uncompressed(), &[0u8; 32])
            .is_ok()
    };
    if q.oid == OID_SNP_QUOTE {
        attest::ratls::parse_snp_quote(&q.quote).is_ok_and(|sq| binds(&sq.report.report_data))
    } else if q.oid == OID_TDX_QUOTE {
        attest::tdx::Quote::parse(&q.quote).is_ok_and(|tq| binds(&tq.body.report_data))
    } else {
        false
    }
}

/// A posted API certificate chain that passed [`validate_api_chain`].
#[derive(Clone)]
pub struct ApiChain {
    /// DER of each certificate, leaf first.
    pub der: Vec<Vec<u8>>,
    /// Whether the leaf carries an RA-TLS quote (if not, the RA-TLS port stays open after `/start`).
    pub leaf_has_quote: bool,
    /// SHA-256 of the leaf DER (for logs and the `/start` answer).
    pub leaf_sha256: [u8; 32],
}

impl fmt::Debug for ApiChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiChain")
            .field("certificates", &self.der.len())
            .field("leaf_has_quote", &self.leaf_has_quote)
            .finish()
    }
}

/// Validates a posted chain: it parses, the leaf's public key is exactly the bootstrap key (byte-equal
/// SubjectPublicKeyInfo), and each certificate names the next one as its issuer. Signatures of the CA are the
/// provisioner's business (it chose the CA); clients check them against their trust anchors.
pub fn validate_api_chain(key: &BootstrapKey, chain_pem: &str) -> Result<ApiChain, X509Error> {
    let certs = parse_pem_chain(chain_pem)?;
    let leaf = certs.first().ok_or(X509Error::NoCertificate)?;
    let ours = spki_der(key)?;
    let theirs = leaf
        .tbs_certificate()
        .subject_public_key_info()
        .to_der()
        .map_err(|_| X509Error::BadCertificate)?;
    if !bool::from(subtle::ConstantTimeEq::ct_eq(
        ours.as_slice(),
        theirs.as_slice(),
    )) {
        return Err(X509Error::LeafKeyMismatch);
    }
    for (n, pair) in certs.windows(2).enumerate() {
        if let [child, parent] = pair
            && child.tbs_certificate().issuer() != parent.tbs_certificate().subject()
        {
            return Err(X509Error::ChainBroken(n));
        }
    }
    let mut der = Vec::with_capacity(certs.len());
    for c in &certs {
        der.push(c.to_der().map_err(|_| X509Error::BadCertificate)?);
    }
    let leaf_der = der.first().ok_or(X509Error::NoCertificate)?;
    Ok(ApiChain {
        leaf_has_quote: quote_binds_key(leaf, key),
        leaf_sha256: Sha256::digest(leaf_der).into(),
        der,
    })
}

/// PEM of one DER certificate.
pub fn cert_pem(der: &[u8]) -> Result<String, X509Error> {
    crate::x509::cert_pem(der).map_err(|_| X509Error::BadCertificate)
}
