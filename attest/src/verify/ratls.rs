//! RA-TLS on the verifier side: take the quote and the public key out of a server certificate,
//! verify the quote, and check that its `REPORT_DATA` binds that key.
//!
//! The extension's `extnValue` (RFC 5280 §4.1) contents are the raw quote bytes (see
//! [`crate::ratls`]); the key is the certificate's P-256 `subjectPublicKey` (RFC 5480), which
//! the TLS handshake proves the server holds.

use alloc::vec::Vec;

use der::Decode;
use der::asn1::ObjectIdentifier;
use x509_cert::Certificate;

use super::{ChainSource, Policy, VerifiedReport, VerifyError, certs, verify_snp_report};
use crate::ratls::{
    CertKind, OID_SNP_QUOTE, OID_TDX_QUOTE, check_report_data_binding, parse_snp_quote,
};

const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_PRIME256V1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");

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

/// Extract the public key and the quote from an RA-TLS certificate (DER). Exactly one quote
/// extension must be present.
pub fn extract_evidence(cert_der: &[u8]) -> Result<RaTlsEvidence, VerifyError> {
    let cert = Certificate::from_der(cert_der)
        .map_err(|_| VerifyError::Certificate("RA-TLS certificate"))?;
    let snp = ObjectIdentifier::new(OID_SNP_QUOTE).map_err(|_| VerifyError::Certificate("OID"))?;
    let tdx = ObjectIdentifier::new(OID_TDX_QUOTE).map_err(|_| VerifyError::Certificate("OID"))?;
    let snp_q = certs::extension(&cert, &snp)?;
    let tdx_q = certs::extension(&cert, &tdx)?;
    let quote = match (snp_q, tdx_q) {
        (Some(q), None) => RaTlsQuote::Snp(q.to_vec()),
        (None, Some(q)) => RaTlsQuote::Tdx(q.to_vec()),
        _ => return Err(VerifyError::MissingExtension("exactly one RA-TLS quote")),
    };
    let spki = cert.tbs_certificate().subject_public_key_info();
    let curve: Option<ObjectIdentifier> = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
    if spki.algorithm.oid != OID_EC_PUBLIC_KEY || curve != Some(OID_PRIME256V1) {
        return Err(VerifyError::UnsupportedAlgorithm(
            "RA-TLS key (P-256 required)",
        ));
    }
    let key = spki
        .subject_public_key
        .as_bytes()
        .ok_or(VerifyError::Certificate("RA-TLS key"))?;
    let public_key: [u8; 65] = key
        .try_into()
        .map_err(|_| VerifyError::Certificate("RA-TLS key (uncompressed)"))?;
    if public_key[0] != 0x04 {
        return Err(VerifyError::Certificate("RA-TLS key (uncompressed)"));
    }
    Ok(RaTlsEvidence { public_key, quote })
}

/// Verify an SNP RA-TLS certificate: the quote's report against `chain` and `policy`, with the
/// VCEK from `vcek_der` or else from the quote's certificate table, and the binding
/// `REPORT_DATA = SHA-256(public key) ‖ nonce` (`nonce` is zero in a certificate).
pub fn verify_ratls_snp(
    cert_der: &[u8],
    vcek_der: Option<&[u8]>,
    chain: ChainSource<'_>,
    policy: &Policy,
    nonce: &[u8; 32],
) -> Result<VerifiedReport, VerifyError> {
    let ev = extract_evidence(cert_der)?;
    let RaTlsQuote::Snp(q) = ev.quote else {
        return Err(VerifyError::MissingExtension("SEV-SNP quote"));
    };
    let quote = parse_snp_quote(&q).map_err(|_| VerifyError::Certificate("SNP quote"))?;
    let vcek = match vcek_der {
        Some(v) => v,
        None => quote
            .cert(CertKind::Vcek)
            .or_else(|| quote.cert(CertKind::Vlek))
            .ok_or(VerifyError::MissingExtension("VCEK in the quote"))?,
    };
    let report = zerocopy::IntoBytes::as_bytes(&quote.report);
    let verified = verify_snp_report(report, vcek, chain, policy)?;
    check_report_data_binding(verified.report_data(), &ev.public_key, nonce)
        .map_err(|_| VerifyError::ReportDataMismatch)?;
    Ok(verified)
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
        let c = cert(&key(), &[(OID_TDX_QUOTE, b"tdx")]);
        assert_eq!(
            extract_evidence(&c).unwrap().quote,
            RaTlsQuote::Tdx(b"tdx".to_vec())
        );
        // None, or both: refused.
        assert!(extract_evidence(&cert(&key(), &[("2.5.29.14", b"\x04\x00")])).is_err());
        assert!(
            extract_evidence(&cert(&key(), &[(OID_SNP_QUOTE, &q), (OID_TDX_QUOTE, b"x")])).is_err()
        );
        let mut compressed = key();
        compressed[0] = 2;
        assert!(extract_evidence(&cert(&compressed, &[(OID_SNP_QUOTE, &q)])).is_err());
        assert!(extract_evidence(b"not a certificate").is_err());
    }

    #[test]
    fn snp_binding_is_checked() {
        // The real Milan report verifies, but its report_data does not bind our key.
        let q = encode_snp_quote(
            &milan_report(),
            &[CertEntry::new(CertKind::Vcek, VCEK.to_vec())],
        );
        let c = cert(&key(), &[(OID_SNP_QUOTE, &q)]);
        let chain = ChainSource::BuiltIn(Generation::Milan);
        let policy = Policy::new(measurement());
        assert_eq!(
            verify_ratls_snp(&c, None, chain, &policy, &[0; 32]).unwrap_err(),
            VerifyError::ReportDataMismatch
        );
        assert_ne!(
            milan_report()[0x50..0x90],
            report_data_for_key(&key(), &[0; 32])
        );
        // Without a VCEK in the quote or from the caller.
        let q = encode_snp_quote(&milan_report(), &[]);
        let c = cert(&key(), &[(OID_SNP_QUOTE, &q)]);
        assert_eq!(
            verify_ratls_snp(&c, None, chain, &policy, &[0; 32]).unwrap_err(),
            VerifyError::MissingExtension("VCEK in the quote")
        );
        // The caller's VCEK is used: still the binding that fails, not the chain.
        assert_eq!(
            verify_ratls_snp(&c, Some(VCEK), chain, &policy, &[0; 32]).unwrap_err(),
            VerifyError::ReportDataMismatch
        );
    }
}
