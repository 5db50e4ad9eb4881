//! RA-TLS on the verifier side: take the quote and the public key out of a server certificate,
//! pick the VCEK chain, verify the quote's report, and check that its `REPORT_DATA` binds that
//! key (and the verifier's nonce).
//!
//! The extension's `extnValue` (RFC 5280 §4.1) contents are the raw quote bytes (see
//! [`crate::ratls`]); the key is the certificate's P-256 `subjectPublicKey` (RFC 5480), which
//! the TLS handshake proves the server holds.
//!
//! - [`extract_evidence`] / [`certificate_public_key`]: what a certificate carries.
//! - [`verify_snp_quote`]: a quote (from a certificate or a fresh `/attestation` answer) against
//!   a key and a nonce.
//! - [`verify_ratls_snp`]: both, for an RA-TLS certificate (zero nonce).
//!
//! Every failure is a [`RaTlsVerifyError`] naming the check that failed.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;

use der::Decode;
use der::asn1::ObjectIdentifier;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use x509_cert::Certificate;

use super::{ChainSource, Policy, VerifiedReport, VerifyError, certs, verify_snp_report};
use crate::ratls::{CertKind, OID_SNP_QUOTE, OID_TDX_QUOTE, RaTlsError, SnpQuote, parse_snp_quote};

const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_PRIME256V1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");

/// Why an RA-TLS certificate or quote did not verify. The variants follow the order of the
/// checks.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RaTlsVerifyError {
    /// The certificate is not a DER X.509 certificate.
    Certificate,
    /// The certificate carries no RA-TLS quote extension.
    NoQuote,
    /// The certificate carries more than one quote extension (SNP and TDX, or a duplicate).
    AmbiguousQuote,
    /// The certificate's key is not an uncompressed P-256 public key.
    KeyAlgorithm,
    /// The quote is not an SEV-SNP quote (e.g. a TDX quote).
    NotSnp,
    /// The SNP quote does not decode.
    Quote(RaTlsError),
    /// Neither the caller nor the quote's certificate table provides a VCEK or VLEK.
    NoVcek,
    /// A trust root was given, but the quote carries no ASK/ASVK to chain the VCEK to it.
    NoIntermediate,
    /// The quote carries no ASK/ASVK and the report does not name its product, so no built-in
    /// AMD chain applies.
    UnknownProduct,
    /// The report verified up to its measurement, which is not the expected one.
    Measurement {
        /// The policy's measurement.
        expected: Box<[u8; 48]>,
        /// The report's.
        reported: Box<[u8; 48]>,
    },
    /// The report failed verification: chain, VCEK, signature or policy.
    Report(VerifyError),
    /// `REPORT_DATA[0..32]` is not SHA-256 of the certificate's public key.
    KeyNotBound,
    /// `REPORT_DATA[32..64]` is not the expected nonce (zero in a certificate).
    NonceMismatch,
    /// The quote is a TDX quote and the verifier expects an SEV-SNP one, or the reverse (the
    /// expectation names no measurement for that platform).
    NoExpectationFor(&'static str),
    /// TDX evidence failed ([`crate::tdx::evidence`]).
    Tdx(crate::tdx::evidence::TdxEvidenceError),
}

impl fmt::Display for RaTlsVerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Certificate => f.write_str("the certificate does not parse"),
            Self::NoQuote => f.write_str("the certificate carries no RA-TLS quote"),
            Self::AmbiguousQuote => f.write_str("the certificate carries more than one quote"),
            Self::KeyAlgorithm => {
                f.write_str("the certificate key is not an uncompressed P-256 public key")
            }
            Self::NotSnp => f.write_str("the quote is not an SEV-SNP quote"),
            Self::Quote(e) => write!(f, "the quote does not parse: {e}"),
            Self::NoVcek => f.write_str("the quote has no VCEK/VLEK certificate"),
            Self::NoIntermediate => f.write_str("the quote has no ASK to chain to the trust root"),
            Self::UnknownProduct => {
                f.write_str("the quote has no ASK and the report names no product")
            }
            Self::Measurement { .. } => f.write_str("measurement differs from the expected one"),
            Self::Report(e) => write!(f, "{e}"),
            Self::KeyNotBound => f.write_str("report_data does not bind the certificate key"),
            Self::NonceMismatch => f.write_str("report_data does not carry the expected nonce"),
            Self::NoExpectationFor(p) => write!(f, "no expected {p} measurement was given"),
            Self::Tdx(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for RaTlsVerifyError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Quote(e) => Some(e),
            Self::Report(e) => Some(e),
            Self::Tdx(e) => Some(e),
            _ => None,
        }
    }
}

/// The attestation evidence found in a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RaTlsQuote {
    /// An SNP quote (report ‖ certificate table), see [`crate::ratls::parse_snp_quote`].
    Snp(Vec<u8>),
    /// A TDX DCAP quote.
    Tdx(Vec<u8>),
}

/// What an RA-TLS certificate carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaTlsEvidence {
    /// The certificate's P-256 public key, SEC1 uncompressed.
    pub public_key: [u8; 65],
    /// The quote.
    pub quote: RaTlsQuote,
}

fn parse_cert(cert_der: &[u8]) -> Result<Certificate, RaTlsVerifyError> {
    Certificate::from_der(cert_der).map_err(|_| RaTlsVerifyError::Certificate)
}

fn p256_key(cert: &Certificate) -> Result<[u8; 65], RaTlsVerifyError> {
    let spki = cert.tbs_certificate().subject_public_key_info();
    let curve: Option<ObjectIdentifier> = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
    if spki.algorithm.oid != OID_EC_PUBLIC_KEY || curve != Some(OID_PRIME256V1) {
        return Err(RaTlsVerifyError::KeyAlgorithm);
    }
    let key = spki
        .subject_public_key
        .as_bytes()
        .ok_or(RaTlsVerifyError::KeyAlgorithm)?;
    let public_key: [u8; 65] = key.try_into().map_err(|_| RaTlsVerifyError::KeyAlgorithm)?;
    if public_key[0] != 0x04 {
        return Err(RaTlsVerifyError::KeyAlgorithm);
    }
    Ok(public_key)
}

/// The P-256 public key (SEC1 uncompressed) of a certificate (DER), quote or not.
pub fn certificate_public_key(cert_der: &[u8]) -> Result<[u8; 65], RaTlsVerifyError> {
    p256_key(&parse_cert(cert_der)?)
}

/// Extract the public key and the quote from an RA-TLS certificate (DER). Exactly one quote
/// extension must be present.
pub fn extract_evidence(cert_der: &[u8]) -> Result<RaTlsEvidence, RaTlsVerifyError> {
    let cert = parse_cert(cert_der)?;
    let ext = |dotted: &str| -> Result<Option<&[u8]>, RaTlsVerifyError> {
        let id = ObjectIdentifier::new(dotted).map_err(|_| RaTlsVerifyError::Certificate)?;
        certs::extension(&cert, &id).map_err(|_| RaTlsVerifyError::AmbiguousQuote)
    };
    let quote = match (ext(OID_SNP_QUOTE)?, ext(OID_TDX_QUOTE)?) {
        (Some(q), None) => RaTlsQuote::Snp(q.to_vec()),
        (None, Some(q)) => RaTlsQuote::Tdx(q.to_vec()),
        (None, None) => return Err(RaTlsVerifyError::NoQuote),
        (Some(_), Some(_)) => return Err(RaTlsVerifyError::AmbiguousQuote),
    };
    Ok(RaTlsEvidence {
        public_key: p256_key(&cert)?,
        quote,
    })
}

/// Where the VCEK chain of an RA-TLS quote comes from.
#[derive(Debug, Clone, Copy)]
pub enum RaTlsRoots<'a> {
    /// AMD's roots only: the quote's ASK/ASVK (and ARK, which must then be a built-in AMD ARK)
    /// if the quote carries one, else AMD's built-in ARK and ASK of the report's product.
    Amd,
    /// Only this explicitly trusted root (PEM or DER, e.g. an emulator's test ARK), with the
    /// quote's ASK/ASVK as the intermediate. Never used unless the caller asks for it.
    TrustRoot(&'a [u8]),
    /// Exactly this chain.
    Chain(ChainSource<'a>),
}

/// The chain to verify `quote`'s VCEK with, as [`RaTlsRoots`] says.
pub fn select_chain<'a>(
    quote: &'a SnpQuote,
    roots: RaTlsRoots<'a>,
) -> Result<ChainSource<'a>, RaTlsVerifyError> {
    // ASK and ASVK share the table GUID: `Ask` finds either.
    let intermediate = quote.cert(CertKind::Ask);
    match (roots, intermediate) {
        (RaTlsRoots::Chain(c), _) => Ok(c),
        (RaTlsRoots::TrustRoot(ark), Some(intermediate)) => {
            Ok(ChainSource::TrustRoot { ark, intermediate })
        }
        (RaTlsRoots::TrustRoot(_), None) => Err(RaTlsVerifyError::NoIntermediate),
        (RaTlsRoots::Amd, Some(intermediate)) => Ok(ChainSource::AmdCerts {
            intermediate,
            ark: quote.cert(CertKind::Ark),
        }),
        (RaTlsRoots::Amd, None) => quote
            .report
            .generation()
            .map(ChainSource::BuiltIn)
            .ok_or(RaTlsVerifyError::UnknownProduct),
    }
}

/// Verify an SNP quote: its report against the chain [`RaTlsRoots`] selects and `policy`, with
/// the VCEK from `vcek_der` or else from the quote's certificate table, and the binding
/// `REPORT_DATA = SHA-256(public_key) ‖ nonce` (`nonce` is zero for a certificate's quote).
pub fn verify_snp_quote(
    quote: &[u8],
    public_key: &[u8; 65],
    nonce: &[u8; 32],
    vcek_der: Option<&[u8]>,
    roots: RaTlsRoots<'_>,
    policy: &Policy,
) -> Result<VerifiedReport, RaTlsVerifyError> {
    let quote = parse_snp_quote(quote).map_err(RaTlsVerifyError::Quote)?;
    let vcek = match vcek_der {
        Some(v) => v,
        None => quote
            .cert(CertKind::Vcek)
            .or_else(|| quote.cert(CertKind::Vlek))
            .ok_or(RaTlsVerifyError::NoVcek)?,
    };
    let chain = select_chain(&quote, roots)?;
    let report = zerocopy::IntoBytes::as_bytes(&quote.report);
    let verified = verify_snp_report(report, vcek, chain, policy).map_err(|e| match e {
        VerifyError::MeasurementMismatch => RaTlsVerifyError::Measurement {
            expected: Box::new(*policy.measurement()),
            reported: Box::new(quote.report.measurement),
        },
        other => RaTlsVerifyError::Report(other),
    })?;
    let (key_hash, rest) = verified.report_data().split_at(32);
    if !bool::from(key_hash.ct_eq(&Sha256::digest(public_key))) {
        return Err(RaTlsVerifyError::KeyNotBound);
    }
    if !bool::from(rest.ct_eq(nonce)) {
        return Err(RaTlsVerifyError::NonceMismatch);
    }
    Ok(verified)
}

/// An RA-TLS certificate that passed [`verify_ratls_snp`].
#[derive(Debug, Clone)]
pub struct VerifiedRaTls {
    /// The certificate's P-256 public key (SEC1 uncompressed), bound by the report.
    pub public_key: [u8; 65],
    /// The verified report.
    pub report: VerifiedReport,
}

/// Verify an SNP RA-TLS certificate (DER): [`extract_evidence`], then [`verify_snp_quote`] with
/// the certificate's key and `nonce` (zero in a certificate).
pub fn verify_ratls_snp(
    cert_der: &[u8],
    vcek_der: Option<&[u8]>,
    roots: RaTlsRoots<'_>,
    policy: &Policy,
    nonce: &[u8; 32],
) -> Result<VerifiedRaTls, RaTlsVerifyError> {
    let ev = extract_evidence(cert_der)?;
    let RaTlsQuote::Snp(q) = &ev.quote else {
        return Err(RaTlsVerifyError::NotSnp);
    };
    let report = verify_snp_quote(q, &ev.public_key, nonce, vcek_der, roots, policy)?;
    Ok(VerifiedRaTls {
        public_key: ev.public_key,
        report,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratls::{CertEntry, encode_snp_quote, report_data_for_key};
    use crate::snp::report::Generation;
    use crate::test_util::milan_report;
    use alloc::vec;

    const VCEK: &[u8] = include_bytes!("../../testdata/snp/vcek_milan.der");

    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let n = content.len();
        if n < 0x80 {
            out.push(n as u8);
        } else if n < 0x100 {
            out.extend_from_slice(&[0x81, n as u8]);
        } else {
            out.extend_from_slice(&[0x82, (n >> 8) as u8, n as u8]);
        }
        out.extend_from_slice(content);
        out
    }

    fn oid(dotted: &str) -> Vec<u8> {
        der::Encode::to_der(&ObjectIdentifier::new(dotted).unwrap()).unwrap()
    }

    /// A minimal X.509 v3 certificate (unsigned: extraction does not check the self-signature).
    fn cert(key: &[u8; 65], exts: &[(&str, &[u8])]) -> Vec<u8> {
        let alg = tlv(0x30, &oid("1.2.840.10045.4.3.2"));
        let name = tlv(
            0x30,
            &tlv(
                0x31,
                &tlv(0x30, &[oid("2.5.4.3"), tlv(0x0C, b"kms")].concat()),
            ),
        );
        let validity = tlv(
            0x30,
            &[tlv(0x17, b"250101000000Z"), tlv(0x17, b"350101000000Z")].concat(),
        );
        let spki_alg = tlv(
            0x30,
            &[oid("1.2.840.10045.2.1"), oid("1.2.840.10045.3.1.7")].concat(),
        );
        let spki = tlv(
            0x30,
            &[spki_alg, tlv(0x03, &[&[0u8][..], key].concat())].concat(),
        );
        let ext_list: Vec<u8> = exts
            .iter()
            .flat_map(|(o, v)| tlv(0x30, &[oid(o), tlv(0x04, v)].concat()))
            .collect();
        let tbs = tlv(
            0x30,
            &[
                tlv(0xA0, &tlv(0x02, &[2])),
                tlv(0x02, &[1]),
                alg.clone(),
                name.clone(),
                validity,
                name,
                spki,
                tlv(0xA3, &tlv(0x30, &ext_list)),
            ]
            .concat(),
        );
        tlv(0x30, &[tbs, alg, tlv(0x03, &[0, 0x30, 0x00])].concat())
    }

    fn key() -> [u8; 65] {
        let mut k = [0x11u8; 65];
        k[0] = 4;
        k
    }

    fn measurement() -> [u8; 48] {
        milan_report()[0x90..0xC0].try_into().unwrap()
    }

    #[test]
    fn extract_snp_and_tdx() {
        let q = encode_snp_quote(
            &milan_report(),
            &[CertEntry::new(CertKind::Vcek, VCEK.to_vec())],
        );
        let c = cert(&key(), &[(OID_SNP_QUOTE, &q)]);
        let ev = extract_evidence(&c).unwrap();
        assert_eq!(ev.public_key, key());
        assert_eq!(ev.quote, RaTlsQuote::Snp(q.clone()));
        assert_eq!(certificate_public_key(&c), Ok(key()));
        let c = cert(&key(), &[(OID_TDX_QUOTE, b"tdx")]);
        assert_eq!(
            extract_evidence(&c).unwrap().quote,
            RaTlsQuote::Tdx(b"tdx".to_vec())
        );
        // A TDX certificate is not an SNP one.
        let policy = Policy::new(measurement());
        assert!(matches!(
            verify_ratls_snp(&c, None, RaTlsRoots::Amd, &policy, &[0; 32]),
            Err(RaTlsVerifyError::NotSnp)
        ));
        // None, both, or a duplicate: refused.
        let none = cert(&key(), &[("2.5.29.14", b"\x04\x00")]);
        assert_eq!(extract_evidence(&none), Err(RaTlsVerifyError::NoQuote));
        // The key is still readable from a certificate without a quote.
        assert_eq!(certificate_public_key(&none), Ok(key()));
        assert_eq!(
            extract_evidence(&cert(&key(), &[(OID_SNP_QUOTE, &q), (OID_TDX_QUOTE, b"x")])),
            Err(RaTlsVerifyError::AmbiguousQuote)
        );
        assert_eq!(
            extract_evidence(&cert(&key(), &[(OID_SNP_QUOTE, &q), (OID_SNP_QUOTE, &q)])),
            Err(RaTlsVerifyError::AmbiguousQuote)
        );
        let mut compressed = key();
        compressed[0] = 2;
        assert_eq!(
            extract_evidence(&cert(&compressed, &[(OID_SNP_QUOTE, &q)])),
            Err(RaTlsVerifyError::KeyAlgorithm)
        );
        assert_eq!(
            extract_evidence(b"not a certificate"),
            Err(RaTlsVerifyError::Certificate)
        );
    }

    #[test]
    fn snp_binding_is_checked() {
        // The real Milan report verifies, but its report_data does not bind our key.
        let q = encode_snp_quote(
            &milan_report(),
            &[CertEntry::new(CertKind::Vcek, VCEK.to_vec())],
        );
        let c = cert(&key(), &[(OID_SNP_QUOTE, &q)]);
        let chain = RaTlsRoots::Chain(ChainSource::BuiltIn(Generation::Milan));
        let policy = Policy::new(measurement());
        assert!(matches!(
            verify_ratls_snp(&c, None, chain, &policy, &[0; 32]),
            Err(RaTlsVerifyError::KeyNotBound)
        ));
        assert_ne!(
            milan_report()[0x50..0x90],
            report_data_for_key(&key(), &[0; 32])
        );
        // The Milan report has no product in it (version 2) and the quote no ASK: no AMD chain.
        assert!(matches!(
            verify_ratls_snp(&c, None, RaTlsRoots::Amd, &policy, &[0; 32]),
            Err(RaTlsVerifyError::UnknownProduct)
        ));
        // A trust root needs the quote's ASK.
        assert!(matches!(
            verify_ratls_snp(&c, None, RaTlsRoots::TrustRoot(b"ark"), &policy, &[0; 32]),
            Err(RaTlsVerifyError::NoIntermediate)
        ));
        // Another measurement: the error carries both.
        let other = Policy::new([7; 48]);
        match verify_ratls_snp(&c, None, chain, &other, &[0; 32]) {
            Err(RaTlsVerifyError::Measurement { expected, reported }) => {
                assert_eq!(*expected, [7; 48]);
                assert_eq!(*reported, measurement());
            }
            r => panic!("expected a measurement mismatch, got {r:?}"),
        }
        // Without a VCEK in the quote or from the caller.
        let q = encode_snp_quote(&milan_report(), &[]);
        let c = cert(&key(), &[(OID_SNP_QUOTE, &q)]);
        assert!(matches!(
            verify_ratls_snp(&c, None, chain, &policy, &[0; 32]),
            Err(RaTlsVerifyError::NoVcek)
        ));
        // The caller's VCEK is used: still the binding that fails, not the chain.
        assert!(matches!(
            verify_ratls_snp(&c, Some(VCEK), chain, &policy, &[0; 32]),
            Err(RaTlsVerifyError::KeyNotBound)
        ));
        // A quote that does not decode.
        assert!(matches!(
            verify_snp_quote(&q[..100], &key(), &[0; 32], Some(VCEK), chain, &policy),
            Err(RaTlsVerifyError::Quote(RaTlsError::Truncated(_)))
        ));
    }

    #[test]
    fn the_quote_chain_is_picked_from_its_table() {
        let ask = b"ask".to_vec();
        let ark = b"ark".to_vec();
        let quote =
            |certs: &[CertEntry]| parse_snp_quote(&encode_snp_quote(&milan_report(), certs));
        let with_ask = quote(&[
            CertEntry::new(CertKind::Ask, ask.clone()),
            CertEntry::new(CertKind::Ark, ark.clone()),
        ])
        .unwrap();
        assert!(matches!(
            select_chain(&with_ask, RaTlsRoots::Amd),
            Ok(ChainSource::AmdCerts { intermediate, ark: Some(a) }) if intermediate == b"ask" && a == b"ark"
        ));
        assert!(matches!(
            select_chain(&with_ask, RaTlsRoots::TrustRoot(b"mine")),
            Ok(ChainSource::TrustRoot { ark: b"mine", intermediate }) if intermediate == b"ask"
        ));
        let bare = quote(&[]).unwrap();
        assert!(matches!(
            select_chain(
                &bare,
                RaTlsRoots::Chain(ChainSource::BuiltIn(Generation::Genoa))
            ),
            Ok(ChainSource::BuiltIn(Generation::Genoa))
        ));
    }
}
