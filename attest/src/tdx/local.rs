//! Signature checks of a TDX quote v4 against an explicitly given root certificate (feature
//! `std`): what DCAP's quote verification does before it consults collateral, for test chains
//! such as `tdx-emu`'s that have no Intel TCB info, QE identity or CRLs.
//!
//! Signature data layout (Intel "TDX DCAP Quoting Library API", Appendix A.3.8/A.3.9/A.3.11,
//! "ECDSA 256-bit Quote Signature Data Structure - Version 4"): ECDSA signature (r ‖ s, 64
//! bytes) over header ‖ body by the attestation key; the attestation public key (x ‖ y, 64);
//! certification data `{u16 type = 6, u32 size}` holding the QE report (384-byte SGX report
//! body), its ECDSA signature by the PCK key (64), `{u16 size, QE authentication data}`, and
//! `{u16 type = 5, u32 size, PEM chain PCK ‖ intermediate ‖ root}`.
//!
//! Checked: the PEM chain PCK → intermediate → root with each ECDSA-P256-SHA256 signature, the
//! root equal to the one given; the QE report signature by the PCK; QE report_data = SHA-256
//! (attestation key ‖ QE authentication data) ‖ 32 zero bytes; the quote signature. Not
//! checked (this is what `dcap-qvl` adds with Intel collateral): TCB levels, QE identity,
//! CRLs, certificate validity dates, the PCK's SGX extensions.

use alloc::vec::Vec;
use core::fmt;

use der::{Decode, Encode};
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};
use x509_cert::Certificate;

use super::quote::{Quote, QuoteError, TdQuoteBody};

/// Certification data type: QE report certification data.
pub const CERT_TYPE_QE_REPORT: u16 = 6;
/// Certification data type: PCK certificate chain (PEM).
pub const CERT_TYPE_PCK_CHAIN: u16 = 5;
/// Size of an SGX report body (the QE report).
pub const QE_REPORT_LEN: usize = 384;

/// Why a quote fails the local checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LocalVerifyError {
    /// The quote does not parse.
    Quote(QuoteError),
    /// The signature data is truncated or has the wrong certification data types.
    SignatureData,
    /// The PEM chain is not three parseable certificates.
    Chain,
    /// The chain's root is not the trusted root.
    UntrustedRoot,
    /// A certificate signature (0 = PCK by intermediate, 1 = intermediate by root, 2 = root
    /// self-signature) does not verify.
    CertSignature(usize),
    /// The QE report signature by the PCK key does not verify.
    QeReportSignature,
    /// QE report_data does not bind the attestation key.
    AttestationKeyBinding,
    /// The quote signature by the attestation key does not verify.
    QuoteSignature,
}

impl fmt::Display for LocalVerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Quote(e) => write!(f, "{e}"),
            Self::SignatureData => f.write_str("malformed quote signature data"),
            Self::Chain => f.write_str("malformed PCK certificate chain"),
            Self::UntrustedRoot => f.write_str("the PCK chain does not end at the trusted root"),
            Self::CertSignature(i) => write!(f, "certificate signature {i} does not verify"),
            Self::QeReportSignature => f.write_str("QE report signature does not verify"),
            Self::AttestationKeyBinding => {
                f.write_str("QE report does not bind the attestation key")
            }
            Self::QuoteSignature => f.write_str("quote signature does not verify"),
        }
    }
}

impl core::error::Error for LocalVerifyError {}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], LocalVerifyError> {
        let (h, t) = self
            .0
            .split_at_checked(n)
            .ok_or(LocalVerifyError::SignatureData)?;
        self.0 = t;
        Ok(h)
    }
    fn u16(&mut self) -> Result<u16, LocalVerifyError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, LocalVerifyError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

fn key_from_xy(xy: &[u8]) -> Result<VerifyingKey, LocalVerifyError> {
    let mut sec1 = Vec::with_capacity(65);
    sec1.push(4);
    sec1.extend_from_slice(xy);
    VerifyingKey::from_sec1_bytes(&sec1).map_err(|_| LocalVerifyError::SignatureData)
}

fn cert_key(c: &Certificate) -> Result<VerifyingKey, LocalVerifyError> {
    let spki = c.tbs_certificate().subject_public_key_info();
    VerifyingKey::from_sec1_bytes(spki.subject_public_key.raw_bytes())
        .map_err(|_| LocalVerifyError::Chain)
}

fn check_cert(c: &Certificate, issuer: &VerifyingKey, i: usize) -> Result<(), LocalVerifyError> {
    let tbs = c
        .tbs_certificate()
        .to_der()
        .map_err(|_| LocalVerifyError::Chain)?;
    let sig = Signature::from_der(c.signature().raw_bytes())
        .map_err(|_| LocalVerifyError::CertSignature(i))?;
    issuer
        .verify(&tbs, &sig)
        .map_err(|_| LocalVerifyError::CertSignature(i))
}

/// Parses the PEM chain of the certification data into DER certificates.
fn pem_chain(pem: &[u8]) -> Result<Vec<Certificate>, LocalVerifyError> {
    let text = core::str::from_utf8(pem).map_err(|_| LocalVerifyError::Chain)?;
    let text = text.trim_end_matches('\0');
    let mut certs = Vec::new();
    let end = "-----END CERTIFICATE-----";
    for block in text.split_inclusive(end).filter(|b| b.contains(end)) {
        let (_, der) =
            der::pem::decode_vec(block.trim().as_bytes()).map_err(|_| LocalVerifyError::Chain)?;
        certs.push(Certificate::from_der(&der).map_err(|_| LocalVerifyError::Chain)?);
    }
    Ok(certs)
}

/// Checks `quote`'s signatures to `root_der` (see the module docs for what is and is not
/// checked) and returns the TD report body.
pub fn verify_quote_signatures(
    quote: &[u8],
    root_der: &[u8],
) -> Result<TdQuoteBody, LocalVerifyError> {
    let q = Quote::parse(quote).map_err(LocalVerifyError::Quote)?;
    let mut c = Cursor(q.signature_data);
    let quote_sig = c.take(64)?;
    let att_key = c.take(64)?;
    if c.u16()? != CERT_TYPE_QE_REPORT {
        return Err(LocalVerifyError::SignatureData);
    }
    let size = c.u32()? as usize;
    let mut c = Cursor(c.take(size)?);
    let qe_report = c.take(QE_REPORT_LEN)?;
    let qe_sig = c.take(64)?;
    let auth_len = usize::from(c.u16()?);
    let auth = c.take(auth_len)?;
    if c.u16()? != CERT_TYPE_PCK_CHAIN {
        return Err(LocalVerifyError::SignatureData);
    }
    let chain_len = c.u32()? as usize;
    let chain = pem_chain(c.take(chain_len)?)?;
    let [pck, inter, root] = chain.as_slice() else {
        return Err(LocalVerifyError::Chain);
    };
    if root.to_der().map_err(|_| LocalVerifyError::Chain)? != root_der {
        return Err(LocalVerifyError::UntrustedRoot);
    }
    let root_key = cert_key(root)?;
    check_cert(root, &root_key, 2)?;
    check_cert(inter, &root_key, 1)?;
    check_cert(pck, &cert_key(inter)?, 0)?;
    let sig = |b: &[u8], e| Signature::from_slice(b).map_err(|_| e);
    cert_key(pck)?
        .verify(
            qe_report,
            &sig(qe_sig, LocalVerifyError::QeReportSignature)?,
        )
        .map_err(|_| LocalVerifyError::QeReportSignature)?;
    let mut h = Sha256::new();
    h.update(att_key);
    h.update(auth);
    let expect: [u8; 32] = h.finalize().into();
    // SGX REPORT_BODY: report_data at offset 320.
    let rd = qe_report
        .get(320..384)
        .ok_or(LocalVerifyError::SignatureData)?;
    if rd[..32] != expect || rd[32..].iter().any(|b| *b != 0) {
        return Err(LocalVerifyError::AttestationKeyBinding);
    }
    key_from_xy(att_key)?
        .verify(q.signed, &sig(quote_sig, LocalVerifyError::QuoteSignature)?)
        .map_err(|_| LocalVerifyError::QuoteSignature)?;
    Ok(*q.body)
}
