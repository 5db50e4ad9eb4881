//! RA-TLS: attestation evidence carried in a self-signed X.509 certificate.
//!
//! The server's certificate holds a non-critical extension whose `extnValue` (RFC 5280 §4.1, an
//! OCTET STRING) contains a *quote*: the attestation evidence of the TEE that owns the
//! certificate's key. The OIDs are those of the Intel-registered arc used by the Cosmian KMS
//! (`1.2.840.113741.1337.{6,7,8}` for SGX, SEV-SNP and TDX), so its verifier understands ours.
//!
//! An SNP quote is `report (0x4A0 bytes) ‖ u32-LE count ‖ count × (u32-LE len ‖ entry)`, where
//! each entry is a certificate-table entry of the SNP extended guest request (GHCB spec 56421,
//! section 4.1.8.1, "SNP Extended Guest Request"): a 16-byte GUID then the DER certificate.
//! A TDX quote is the raw DCAP quote (v4).
//!
//! The key binding: `report_data = SHA-256(SEC1 uncompressed public key) ‖ 32 bytes`, where the
//! last 32 bytes are zero in a certificate and a verifier's nonce in a fresh report.

use alloc::vec::Vec;
use core::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::snp::report::{AttestationReport, REPORT_SIZE, ReportError};

/// OID arc of the RA-TLS quote extensions, as dotted text.
pub const OID_SGX_QUOTE: &str = "1.2.840.113741.1337.6";
/// OID of the SEV-SNP quote extension.
pub const OID_SNP_QUOTE: &str = "1.2.840.113741.1337.7";
/// OID of the TDX quote extension.
pub const OID_TDX_QUOTE: &str = "1.2.840.113741.1337.8";

/// DER content octets (no tag/length) of [`OID_SNP_QUOTE`].
pub const OID_SNP_QUOTE_DER: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF8, 0x4D, 0x8A, 0x39, 0x07];
/// DER content octets (no tag/length) of [`OID_TDX_QUOTE`].
pub const OID_TDX_QUOTE_DER: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF8, 0x4D, 0x8A, 0x39, 0x08];
/// DER content octets (no tag/length) of [`OID_SGX_QUOTE`].
pub const OID_SGX_QUOTE_DER: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF8, 0x4D, 0x8A, 0x39, 0x06];

/// Most certificate-table entries a quote may carry (VCEK/VLEK, ASK/ASVK, ARK, plus a few).
pub const MAX_CERT_ENTRIES: usize = 16;
/// Largest certificate-table entry accepted (AMD certificates are about 1.3–2 KiB).
pub const MAX_CERT_ENTRY_LEN: usize = 64 * 1024;

/// Errors from decoding a quote or checking the key binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RaTlsError {
    /// The quote ended early; the context names the field.
    Truncated(&'static str),
    /// Bytes remain after the last certificate entry.
    TrailingBytes,
    /// More than [`MAX_CERT_ENTRIES`] entries.
    TooManyEntries(u32),
    /// An entry is shorter than its GUID or longer than [`MAX_CERT_ENTRY_LEN`].
    BadEntryLength(u32),
    /// The report inside the quote is malformed.
    Report(ReportError),
    /// `report_data` does not bind the certificate's public key (and nonce).
    BindingMismatch,
}

impl fmt::Display for RaTlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated(what) => write!(f, "SNP quote truncated in {what}"),
            Self::TrailingBytes => f.write_str("SNP quote has trailing bytes"),
            Self::TooManyEntries(n) => {
                write!(f, "SNP quote has too many certificate entries ({n})")
            }
            Self::BadEntryLength(n) => {
                write!(f, "SNP quote certificate entry has a bad length ({n})")
            }
            Self::Report(e) => write!(f, "SNP quote report: {e}"),
            Self::BindingMismatch => f.write_str("report_data does not bind the certificate key"),
        }
    }
}

impl core::error::Error for RaTlsError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Report(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ReportError> for RaTlsError {
    fn from(e: ReportError) -> Self {
        Self::Report(e)
    }
}

/// The kind of certificate in a table entry, from its GUID (GHCB spec 56421, Table 9 of rev 2.03).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertKind {
    /// AMD Root Key.
    Ark,
    /// AMD SEV Key (signs VCEKs).
    Ask,
    /// AMD SEV VLEK signing key.
    Asvk,
    /// Versioned Chip Endorsement Key.
    Vcek,
    /// Versioned Loaded Endorsement Key.
    Vlek,
    /// A GUID we do not know.
    Other,
}

/// GUIDs of the certificate table, in their on-wire (EFI, mixed-endian) byte order.
pub mod guid {
    /// `c0b406a4-a803-4952-9743-3fb6014cd0ae`
    pub const ARK: [u8; 16] = super::guid_le(
        0xc0b406a4,
        0xa803,
        0x4952,
        [0x97, 0x43, 0x3f, 0xb6, 0x01, 0x4c, 0xd0, 0xae],
    );
    /// `4ab7b379-bbac-4fe4-a02f-05aef327c782`
    pub const ASK: [u8; 16] = super::guid_le(
        0x4ab7b379,
        0xbbac,
        0x4fe4,
        [0xa0, 0x2f, 0x05, 0xae, 0xf3, 0x27, 0xc7, 0x82],
    );
    /// `63da758d-e664-4564-adc5-f4b93be8accd`
    pub const VCEK: [u8; 16] = super::guid_le(
        0x63da758d,
        0xe664,
        0x4564,
        [0xad, 0xc5, 0xf4, 0xb9, 0x3b, 0xe8, 0xac, 0xcd],
    );
    /// `a8074bc2-a25a-483e-aae6-39c045a0b8a1`
    pub const VLEK: [u8; 16] = super::guid_le(
        0xa8074bc2,
        0xa25a,
        0x483e,
        [0xaa, 0xe6, 0x39, 0xc0, 0x45, 0xa0, 0xb8, 0xa1],
    );
    /// `00000000-0000-0000-0000-000000000000`: terminates a table in guest memory.
    pub const END: [u8; 16] = [0; 16];
}

/// Byte image of an EFI GUID (`data1`–`data3` little-endian, `data4` as is).
pub const fn guid_le(d1: u32, d2: u16, d3: u16, d4: [u8; 8]) -> [u8; 16] {
    let a = d1.to_le_bytes();
    let b = d2.to_le_bytes();
    let c = d3.to_le_bytes();
    [
        a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d4[0], d4[1], d4[2], d4[3], d4[4], d4[5],
        d4[6], d4[7],
    ]
}

/// One certificate-table entry: a GUID naming the certificate and its DER bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct CertEntry {
    /// The GUID in wire byte order (see [`guid`]).
    pub guid: [u8; 16],
    /// The DER certificate.
    pub der: Vec<u8>,
}

impl CertEntry {
    /// An entry of a known kind (`Other` is not allowed here: use the fields directly).
    pub fn new(kind: CertKind, der: Vec<u8>) -> Self {
        let guid = match kind {
            CertKind::Ark => guid::ARK,
            CertKind::Ask | CertKind::Asvk => guid::ASK,
            CertKind::Vcek => guid::VCEK,
            CertKind::Vlek => guid::VLEK,
            CertKind::Other => guid::END,
        };
        Self { guid, der }
    }

    /// What the GUID says this certificate is.
    pub fn kind(&self) -> CertKind {
        match self.guid {
            guid::ARK => CertKind::Ark,
            guid::ASK => CertKind::Ask,
            guid::VCEK => CertKind::Vcek,
            guid::VLEK => CertKind::Vlek,
            _ => CertKind::Other,
        }
    }
}

impl fmt::Debug for CertEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertEntry")
            .field("kind", &self.kind())
            .field("der_len", &self.der.len())
            .finish()
    }
}

/// A decoded SNP quote.
#[derive(Debug, Clone)]
pub struct SnpQuote {
    /// The attestation report (format-validated, not yet verified).
    pub report: AttestationReport,
    /// The certificate-table entries, in order.
    pub certs: Vec<CertEntry>,
}

impl SnpQuote {
    /// The first entry of a given kind.
    pub fn cert(&self, kind: CertKind) -> Option<&[u8]> {
        self.certs
            .iter()
            .find(|c| c.kind() == kind)
            .map(|c| c.der.as_slice())
    }

    /// Re-encode (emit).
    pub fn encode(&self) -> Vec<u8> {
        encode_snp_quote(zerocopy::IntoBytes::as_bytes(&self.report), &self.certs)
    }
}

/// Encode an SNP quote from a raw report and certificate entries.
///
/// `report` is copied as given (callers pass the 0x4A0 bytes they received from the firmware).
pub fn encode_snp_quote(report: &[u8], certs: &[CertEntry]) -> Vec<u8> {
    let body: usize = certs.iter().map(|c| 4 + 16 + c.der.len()).sum();
    let mut out = Vec::with_capacity(report.len() + 4 + body);
    out.extend_from_slice(report);
    out.extend_from_slice(&(certs.len() as u32).to_le_bytes());
    for c in certs {
        out.extend_from_slice(&((16 + c.der.len()) as u32).to_le_bytes());
        out.extend_from_slice(&c.guid);
        out.extend_from_slice(&c.der);
    }
    out
}

/// Decode an SNP quote (untrusted bytes): the report is format-validated, every length checked.
pub fn parse_snp_quote(bytes: &[u8]) -> Result<SnpQuote, RaTlsError> {
    let (report_bytes, mut rest) = bytes
        .split_at_checked(REPORT_SIZE)
        .ok_or(RaTlsError::Truncated("report"))?;
    let report = AttestationReport::parse(report_bytes)?;
    let count = take_u32(&mut rest, "certificate count")?;
    if count as usize > MAX_CERT_ENTRIES {
        return Err(RaTlsError::TooManyEntries(count));
    }
    let mut certs = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let len = take_u32(&mut rest, "entry length")?;
        if (len as usize) < 16 || len as usize > MAX_CERT_ENTRY_LEN {
            return Err(RaTlsError::BadEntryLength(len));
        }
        let (entry, tail) = rest
            .split_at_checked(len as usize)
            .ok_or(RaTlsError::Truncated("entry"))?;
        rest = tail;
        let (g, der) = entry.split_at(16);
        let mut guid = [0u8; 16];
        guid.copy_from_slice(g);
        certs.push(CertEntry {
            guid,
            der: der.to_vec(),
        });
    }
    if !rest.is_empty() {
        return Err(RaTlsError::TrailingBytes);
    }
    Ok(SnpQuote { report, certs })
}

fn take_u32(rest: &mut &[u8], what: &'static str) -> Result<u32, RaTlsError> {
    let (head, tail) = rest
        .split_first_chunk::<4>()
        .ok_or(RaTlsError::Truncated(what))?;
    *rest = tail;
    Ok(u32::from_le_bytes(*head))
}

/// `report_data` binding a TLS key: `SHA-256(uncompressed P-256 public key) ‖ nonce`.
pub fn report_data_for_key(uncompressed_p256_pubkey: &[u8; 65], nonce: &[u8; 32]) -> [u8; 64] {
    let mut out = [0u8; 64];
    out[..32].copy_from_slice(&Sha256::digest(uncompressed_p256_pubkey));
    out[32..].copy_from_slice(nonce);
    out
}

/// Check (in constant time) that `report_data` binds `pubkey` and `nonce`
/// (use a zero nonce for the report inside a certificate).
pub fn check_report_data_binding(
    report_data: &[u8; 64],
    uncompressed_p256_pubkey: &[u8; 65],
    nonce: &[u8; 32],
) -> Result<(), RaTlsError> {
    let expected = report_data_for_key(uncompressed_p256_pubkey, nonce);
    if bool::from(expected.ct_eq(report_data)) {
        Ok(())
    } else {
        Err(RaTlsError::BindingMismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::milan_report;
    use alloc::vec;

    fn vcek() -> Vec<u8> {
        include_bytes!("../testdata/snp/vcek_milan.der").to_vec()
    }

    #[test]
    fn oid_der_matches_dotted() {
        // 1.2.840.113741.1337.7: 1*40+2 = 0x2A; 840 = 0x86 0x48; 113741 = 0x86 0xF8 0x4D; 1337 = 0x8A 0x39.
        assert_eq!(OID_SNP_QUOTE_DER[..8], OID_TDX_QUOTE_DER[..8]);
        assert_eq!(*OID_SNP_QUOTE_DER.last().unwrap(), 7);
        let arc: u32 = (0x86 & 0x7F) << 14 | (0xF8 & 0x7F) << 7 | 0x4D;
        assert_eq!(arc, 113741);
        assert_eq!((0x8A & 0x7F) << 7 | 0x39, 1337);
    }

    #[test]
    fn quote_round_trip() {
        let report = milan_report();
        let certs = vec![
            CertEntry::new(CertKind::Vcek, vcek()),
            CertEntry::new(CertKind::Ark, vec![1, 2, 3]),
        ];
        let q = encode_snp_quote(&report, &certs);
        assert_eq!(
            q.len(),
            REPORT_SIZE + 4 + (4 + 16 + vcek().len()) + (4 + 16 + 3)
        );
        assert_eq!(q[REPORT_SIZE..REPORT_SIZE + 4], 2u32.to_le_bytes());
        let parsed = parse_snp_quote(&q).unwrap();
        assert_eq!(parsed.certs, certs);
        assert_eq!(parsed.cert(CertKind::Vcek), Some(&vcek()[..]));
        assert_eq!(parsed.cert(CertKind::Ask), None);
        assert_eq!(parsed.encode(), q);
        // No certificates at all.
        let q0 = encode_snp_quote(&report, &[]);
        assert!(parse_snp_quote(&q0).unwrap().certs.is_empty());
    }

    #[test]
    fn quote_rejects_malformed() {
        let report = milan_report();
        let q = encode_snp_quote(&report, &[CertEntry::new(CertKind::Vcek, vcek())]);
        // Every truncation fails with an error, never a panic.
        for len in 0..q.len() {
            let r = parse_snp_quote(&q[..len]).map(|_| ());
            assert!(
                matches!(r, Err(RaTlsError::Truncated(_) | RaTlsError::Report(_))),
                "len {len}: {r:?}"
            );
        }
        let mut long = q.clone();
        long.push(0);
        assert_eq!(
            parse_snp_quote(&long).unwrap_err(),
            RaTlsError::TrailingBytes
        );
        let mut many = q.clone();
        many[REPORT_SIZE..REPORT_SIZE + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            parse_snp_quote(&many).unwrap_err(),
            RaTlsError::TooManyEntries(u32::MAX)
        );
        let mut short = q.clone();
        short[REPORT_SIZE + 4..REPORT_SIZE + 8].copy_from_slice(&15u32.to_le_bytes());
        assert_eq!(
            parse_snp_quote(&short).unwrap_err(),
            RaTlsError::BadEntryLength(15)
        );
        let mut huge = q.clone();
        huge[REPORT_SIZE + 4..REPORT_SIZE + 8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            parse_snp_quote(&huge).unwrap_err(),
            RaTlsError::BadEntryLength(u32::MAX)
        );
        let mut bad_report = q;
        bad_report[0] = 9;
        assert_eq!(
            parse_snp_quote(&bad_report).unwrap_err(),
            RaTlsError::Report(ReportError::UnsupportedVersion(9))
        );
    }

    #[test]
    fn binding() {
        let mut pk = [0u8; 65];
        pk[0] = 4;
        pk[1] = 0x42;
        let nonce = [7u8; 32];
        let rd = report_data_for_key(&pk, &nonce);
        // SHA-256 of the key, computed independently from the formula.
        assert_eq!(rd[..32], Sha256::digest(pk)[..]);
        assert_eq!(rd[32..], nonce);
        check_report_data_binding(&rd, &pk, &nonce).unwrap();
        assert_eq!(
            check_report_data_binding(&rd, &pk, &[0; 32]),
            Err(RaTlsError::BindingMismatch)
        );
        let mut pk2 = pk;
        pk2[64] ^= 1;
        assert_eq!(
            check_report_data_binding(&rd, &pk2, &nonce),
            Err(RaTlsError::BindingMismatch)
        );
    }

    #[test]
    fn guid_bytes() {
        assert_eq!(guid::VCEK[..4], [0x8d, 0x75, 0xda, 0x63]);
        assert_eq!(guid::VCEK[4..6], [0x64, 0xe6]);
        assert_eq!(
            guid::VCEK[8..],
            [0xad, 0xc5, 0xf4, 0xb9, 0x3b, 0xe8, 0xac, 0xcd]
        );
    }
}
