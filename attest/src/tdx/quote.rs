//! TDX DCAP quote, version 4.
//!
//! Layout from Intel "TDX DCAP Quoting Library API" (revision 0.9, March 2023), Appendix A.3
//! ("Version 4 Quote Format"): Table "TD Quote Header" (48 bytes), Table "TD Quote Body"
//! (584 bytes), then the u32 length of the "Quote Signature Data" and that data (ECDSA
//! signature, attestation key, QE certification data with the QE report and PCK chain).
//!
//! This module parses and exposes the fields; it does not verify anything (see
//! `attest::tdx::verify` with feature `tdx-verify`).

use core::fmt;
use core::mem::{offset_of, size_of};

use zerocopy::little_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::snp::report::Hex;

/// Quote version handled here.
pub const QUOTE_VERSION_4: u16 = 4;
/// Attestation key type ECDSA-256-with-P-256.
pub const ATT_KEY_ECDSA_P256: u16 = 2;
/// TEE type of TDX.
pub const TEE_TYPE_TDX: u32 = 0x81;
/// Largest signature data accepted (certification data holds a PEM chain of a few KiB).
pub const MAX_SIGNATURE_DATA: usize = 64 * 1024;

/// Errors from parsing a quote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum QuoteError {
    /// The quote is shorter than its fixed parts or its signature-data length.
    Truncated,
    /// Non-zero bytes follow the signature data.
    TrailingBytes,
    /// Not version 4.
    UnsupportedVersion(u16),
    /// Not an ECDSA P-256 attestation key.
    UnsupportedKeyType(u16),
    /// Not a TDX quote.
    NotTdx(u32),
    /// The signature data length is over [`MAX_SIGNATURE_DATA`].
    SignatureTooLarge(u32),
}

impl fmt::Display for QuoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("TDX quote truncated"),
            Self::TrailingBytes => f.write_str("TDX quote has trailing bytes"),
            Self::UnsupportedVersion(v) => write!(f, "unsupported TDX quote version {v}"),
            Self::UnsupportedKeyType(k) => write!(f, "unsupported attestation key type {k}"),
            Self::NotTdx(t) => write!(f, "TEE type {t:#x} is not TDX"),
            Self::SignatureTooLarge(n) => {
                write!(f, "quote signature data of {n} bytes is too large")
            }
        }
    }
}

impl core::error::Error for QuoteError {}

/// "TD Quote Header" (48 bytes).
#[repr(C)]
#[derive(Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct QuoteHeader {
    /// Quote version (4).
    pub version: U16,
    /// Attestation key type (2 = ECDSA-256-with-P-256).
    pub att_key_type: U16,
    /// TEE type (0x81 = TDX).
    pub tee_type: U32,
    _reserved_0: [u8; 4],
    /// QE vendor ID (Intel: 939a7233-f79c-4ca9-940a-0db3957f0607).
    pub qe_vendor_id: [u8; 16],
    /// Custom user data (the first 16 bytes are the platform identifier).
    pub user_data: [u8; 20],
}

const _: () = {
    assert!(size_of::<QuoteHeader>() == 48);
    assert!(offset_of!(QuoteHeader, qe_vendor_id) == 12);
    assert!(offset_of!(QuoteHeader, user_data) == 28);
};

/// "TD Quote Body" (584 bytes): the TD report as signed by the quoting enclave.
#[repr(C)]
#[derive(Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct TdQuoteBody {
    /// TEE_TCB_SVN of the TDX module.
    pub tee_tcb_svn: [u8; 16],
    /// Measurement of the TDX module.
    pub mr_seam: [u8; 48],
    /// Signer of the TDX module (zero for Intel's).
    pub mr_signer_seam: [u8; 48],
    /// SEAM attributes (zero).
    pub seam_attributes: [u8; 8],
    /// TD attributes (bit 0: DEBUG).
    pub td_attributes: [u8; 8],
    /// XFAM.
    pub xfam: [u8; 8],
    /// Build-time measurement of the TD (initial memory).
    pub mr_td: [u8; 48],
    /// Software-defined configuration ID.
    pub mr_config_id: [u8; 48],
    /// Owner ID.
    pub mr_owner: [u8; 48],
    /// Owner-defined configuration.
    pub mr_owner_config: [u8; 48],
    /// Run-time measurement registers 0..3.
    pub rtmr: [[u8; 48]; 4],
    /// Data supplied by the TD in TDG.MR.REPORT.
    pub report_data: [u8; 64],
}

const _: () = {
    assert!(size_of::<TdQuoteBody>() == 584);
    assert!(offset_of!(TdQuoteBody, mr_seam) == 16);
    assert!(offset_of!(TdQuoteBody, td_attributes) == 120);
    assert!(offset_of!(TdQuoteBody, mr_td) == 136);
    assert!(offset_of!(TdQuoteBody, mr_config_id) == 184);
    assert!(offset_of!(TdQuoteBody, rtmr) == 328);
    assert!(offset_of!(TdQuoteBody, report_data) == 520);
};

impl TdQuoteBody {
    /// TD attribute DEBUG (bit 0): the TD is debuggable by the host.
    pub fn debug(&self) -> bool {
        self.td_attributes[0] & 1 != 0
    }
}

impl fmt::Debug for TdQuoteBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TdQuoteBody")
            .field("mr_td", &Hex(&self.mr_td))
            .field("rtmr0", &Hex(&self.rtmr[0]))
            .field("rtmr1", &Hex(&self.rtmr[1]))
            .field("rtmr2", &Hex(&self.rtmr[2]))
            .field("rtmr3", &Hex(&self.rtmr[3]))
            .field("report_data", &Hex(&self.report_data))
            .field("td_attributes", &Hex(&self.td_attributes))
            .finish_non_exhaustive()
    }
}

/// A parsed (not verified) TDX quote v4, borrowing the input.
#[derive(Clone, Copy)]
pub struct Quote<'a> {
    /// The header.
    pub header: &'a QuoteHeader,
    /// The TD report body.
    pub body: &'a TdQuoteBody,
    /// The signature data (signature, attestation key, QE certification data).
    pub signature_data: &'a [u8],
    /// Header ‖ body: the bytes the attestation key signs.
    pub signed: &'a [u8],
}

impl fmt::Debug for Quote<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Quote")
            .field("version", &self.header.version.get())
            .field("tee_type", &self.header.tee_type.get())
            .field("body", self.body)
            .field("signature_data_len", &self.signature_data.len())
            .finish()
    }
}

impl<'a> Quote<'a> {
    /// Parse a v4 TDX quote (trailing zero padding is ignored).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, QuoteError> {
        let (header, rest) =
            QuoteHeader::ref_from_prefix(bytes).map_err(|_| QuoteError::Truncated)?;
        if header.version.get() != QUOTE_VERSION_4 {
            return Err(QuoteError::UnsupportedVersion(header.version.get()));
        }
        if header.att_key_type.get() != ATT_KEY_ECDSA_P256 {
            return Err(QuoteError::UnsupportedKeyType(header.att_key_type.get()));
        }
        if header.tee_type.get() != TEE_TYPE_TDX {
            return Err(QuoteError::NotTdx(header.tee_type.get()));
        }
        let (body, rest) = TdQuoteBody::ref_from_prefix(rest).map_err(|_| QuoteError::Truncated)?;
        let (len, rest) = rest.split_first_chunk::<4>().ok_or(QuoteError::Truncated)?;
        let len = u32::from_le_bytes(*len);
        if len as usize > MAX_SIGNATURE_DATA {
            return Err(QuoteError::SignatureTooLarge(len));
        }
        let (signature_data, tail) = rest
            .split_at_checked(len as usize)
            .ok_or(QuoteError::Truncated)?;
        // Quotes copied out of a fixed-size GetQuote buffer carry zero padding: accept only that.
        if tail.iter().any(|b| *b != 0) {
            return Err(QuoteError::TrailingBytes);
        }
        let signed = bytes.get(..48 + 584).ok_or(QuoteError::Truncated)?;
        Ok(Self {
            header,
            body,
            signature_data,
            signed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    /// A TDX v4 quote from dcap-qvl's samples (MIT), produced on real hardware.
    const QUOTE: &[u8] = include_bytes!("../../testdata/tdx/tdx_quote");

    #[test]
    fn parse_sample_quote() {
        let q = Quote::parse(QUOTE).unwrap();
        assert_eq!(q.header.version.get(), 4);
        assert_eq!(q.header.tee_type.get(), 0x81);
        // Intel's QE vendor ID.
        assert_eq!(q.header.qe_vendor_id[..4], [0x93, 0x9a, 0x72, 0x33]);
        assert_eq!(q.body.mr_td[..], QUOTE[48 + 136..48 + 184]);
        assert_eq!(q.body.report_data[..], QUOTE[48 + 520..48 + 584]);
        // The sample carries 70 bytes of zero padding after the signature data.
        assert_eq!(q.signature_data.len() + 48 + 584 + 4 + 70, QUOTE.len());
        // Round trip: header and body re-emit the same bytes.
        let mut emitted = Vec::new();
        emitted.extend_from_slice(q.header.as_bytes());
        emitted.extend_from_slice(q.body.as_bytes());
        assert_eq!(emitted, q.signed);
    }

    #[test]
    fn rejects_malformed() {
        for len in [0, 47, 48, 631, 635, QUOTE.len() - 71] {
            assert_eq!(
                Quote::parse(&QUOTE[..len]).unwrap_err(),
                QuoteError::Truncated,
                "len {len}"
            );
        }
        let mut q = QUOTE.to_vec();
        q.push(1);
        assert_eq!(Quote::parse(&q).unwrap_err(), QuoteError::TrailingBytes);
        let mut q = QUOTE.to_vec();
        q[0] = 5;
        assert_eq!(
            Quote::parse(&q).unwrap_err(),
            QuoteError::UnsupportedVersion(5)
        );
        let mut q = QUOTE.to_vec();
        q[4] = 0;
        assert_eq!(Quote::parse(&q).unwrap_err(), QuoteError::NotTdx(0));
        let mut q = QUOTE.to_vec();
        q[632..636].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            Quote::parse(&q).unwrap_err(),
            QuoteError::SignatureTooLarge(u32::MAX)
        );
    }
}
