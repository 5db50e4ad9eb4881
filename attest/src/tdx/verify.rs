//! TDX quote verification (feature `tdx-verify`): the quote's signature chain to Intel's SGX
//! root CA, the QE report and the TCB status are checked by `dcap-qvl` against collateral the
//! caller supplies (PCS/PCCS JSON: TCB info, QE identity, CRLs); the TD fields are then checked
//! against a [`TdxPolicy`] that always names the expected MRTD.
//!
//! Time is an input (`now_unix`): collateral validity depends on it and the caller owns the
//! clock.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use subtle::ConstantTimeEq;

use super::quote::{Quote, QuoteError, TdQuoteBody};

/// Why TDX verification failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TdxVerifyError {
    /// The quote is malformed.
    Quote(QuoteError),
    /// The collateral JSON does not parse.
    Collateral,
    /// dcap-qvl rejected the quote (signature, chain, collateral or time); its message.
    Dcap(String),
    /// The platform TCB status is not one the policy accepts.
    TcbStatus(String),
    /// The TD is debuggable and the policy does not allow it.
    DebugTd,
    /// MRTD is not the expected one.
    MrTdMismatch,
    /// An RTMR (index) is not the expected one.
    RtmrMismatch(usize),
    /// REPORTDATA is not the expected one.
    ReportDataMismatch,
}

impl fmt::Display for TdxVerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Quote(e) => write!(f, "{e}"),
            Self::Collateral => f.write_str("collateral JSON does not parse"),
            Self::Dcap(e) => write!(f, "quote verification failed: {e}"),
            Self::TcbStatus(s) => write!(f, "platform TCB status {s} is not accepted"),
            Self::DebugTd => f.write_str("the TD is debuggable"),
            Self::MrTdMismatch => f.write_str("MRTD differs from the expected one"),
            Self::RtmrMismatch(i) => write!(f, "RTMR{i} differs from the expected one"),
            Self::ReportDataMismatch => f.write_str("report_data differs from the expected one"),
        }
    }
}

impl core::error::Error for TdxVerifyError {}

impl From<QuoteError> for TdxVerifyError {
    fn from(e: QuoteError) -> Self {
        Self::Quote(e)
    }
}

/// What to require of a TD. Built with [`TdxPolicy::new`], which takes the expected MRTD.
#[derive(Debug, Clone)]
pub struct TdxPolicy {
    mr_td: [u8; 48],
    rtmr: [Option<[u8; 48]>; 4],
    report_data: Option<[u8; 64]>,
    allow_debug: bool,
    accepted_tcb_status: Vec<String>,
}

impl TdxPolicy {
    /// Require `expected_mr_td`, a non-debug TD and TCB status `UpToDate`.
    pub fn new(expected_mr_td: [u8; 48]) -> Self {
        Self {
            mr_td: expected_mr_td,
            rtmr: [None; 4],
            report_data: None,
            allow_debug: false,
            accepted_tcb_status: alloc::vec!["UpToDate".to_string()],
        }
    }
    /// Require RTMR `index` (0..=3; others are ignored) to equal `value`.
    pub fn rtmr(mut self, index: usize, value: [u8; 48]) -> Self {
        if let Some(slot) = self.rtmr.get_mut(index) {
            *slot = Some(value);
        }
        self
    }
    /// Require this REPORTDATA.
    pub fn report_data(mut self, report_data: [u8; 64]) -> Self {
        self.report_data = Some(report_data);
        self
    }
    /// Accept debuggable TDs.
    pub fn allow_debug(mut self, allow: bool) -> Self {
        self.allow_debug = allow;
        self
    }
    /// Also accept this TCB status (e.g. "SWHardeningNeeded", "OutOfDate").
    pub fn accept_tcb_status(mut self, status: &str) -> Self {
        self.accepted_tcb_status.push(status.to_string());
        self
    }
}

/// A quote that passed [`verify_tdx_quote`].
#[derive(Debug, Clone)]
pub struct VerifiedTdxQuote {
    body: TdQuoteBody,
    tcb_status: String,
    advisory_ids: Vec<String>,
}

impl VerifiedTdxQuote {
    /// The verified TD report body.
    pub fn body(&self) -> &TdQuoteBody {
        &self.body
    }
    /// The platform TCB status reported by the collateral.
    pub fn tcb_status(&self) -> &str {
        &self.tcb_status
    }
    /// Intel security advisories that apply.
    pub fn advisory_ids(&self) -> &[String] {
        &self.advisory_ids
    }
}

/// Verify a TDX quote v4 with PCS collateral (the JSON form of `dcap_qvl::QuoteCollateralV3`).
pub fn verify_tdx_quote(
    quote: &[u8],
    collateral_json: &[u8],
    now_unix: u64,
    policy: &TdxPolicy,
) -> Result<VerifiedTdxQuote, TdxVerifyError> {
    let parsed = Quote::parse(quote)?;
    let collateral: dcap_qvl::QuoteCollateralV3 =
        serde_json::from_slice(collateral_json).map_err(|_| TdxVerifyError::Collateral)?;
    let verified = dcap_qvl::verify::QuoteVerifier::new_prod()
        .with_config::<dcap_qvl::configs::RustCryptoConfig>()
        .verify(quote, &collateral, now_unix)
        .map_err(|e| TdxVerifyError::Dcap(e.to_string()))?;
    if !policy.accepted_tcb_status.contains(&verified.status) {
        return Err(TdxVerifyError::TcbStatus(verified.status));
    }
    let body = *parsed.body;
    if body.debug() && !policy.allow_debug {
        return Err(TdxVerifyError::DebugTd);
    }
    if !bool::from(body.mr_td.ct_eq(&policy.mr_td)) {
        return Err(TdxVerifyError::MrTdMismatch);
    }
    for (i, (got, want)) in body.rtmr.iter().zip(policy.rtmr.iter()).enumerate() {
        if let Some(want) = want
            && !bool::from(got.ct_eq(want))
        {
            return Err(TdxVerifyError::RtmrMismatch(i));
        }
    }
    if let Some(rd) = &policy.report_data
        && !bool::from(body.report_data.ct_eq(rd))
    {
        return Err(TdxVerifyError::ReportDataMismatch);
    }
    Ok(VerifiedTdxQuote {
        body,
        tcb_status: verified.status,
        advisory_ids: verified.advisory_ids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUOTE: &[u8] = include_bytes!("../../testdata/tdx/tdx_quote");
    const COLLATERAL: &[u8] = include_bytes!("../../testdata/tdx/tdx_quote_collateral.json");
    /// 2025-07-01T00:00:00Z, inside the sample collateral's validity (2025-06-19 .. 2025-07-19).
    const NOW: u64 = 1_751_328_000;

    fn mr_td() -> [u8; 48] {
        Quote::parse(QUOTE).unwrap().body.mr_td
    }

    #[test]
    fn sample_quote_verifies() {
        let v = verify_tdx_quote(QUOTE, COLLATERAL, NOW, &TdxPolicy::new(mr_td())).unwrap();
        assert_eq!(v.tcb_status(), "UpToDate");
        assert_eq!(v.body().mr_td, mr_td());
        let body = *Quote::parse(QUOTE).unwrap().body;
        let p = TdxPolicy::new(mr_td())
            .rtmr(0, body.rtmr[0])
            .rtmr(3, body.rtmr[3])
            .report_data(body.report_data);
        assert!(verify_tdx_quote(QUOTE, COLLATERAL, NOW, &p).is_ok());
    }

    #[test]
    fn policy_mismatches_fail() {
        let mut m = mr_td();
        m[0] ^= 1;
        assert_eq!(
            verify_tdx_quote(QUOTE, COLLATERAL, NOW, &TdxPolicy::new(m)).unwrap_err(),
            TdxVerifyError::MrTdMismatch
        );
        let p = TdxPolicy::new(mr_td()).rtmr(2, [7; 48]);
        assert_eq!(
            verify_tdx_quote(QUOTE, COLLATERAL, NOW, &p).unwrap_err(),
            TdxVerifyError::RtmrMismatch(2)
        );
        let p = TdxPolicy::new(mr_td()).report_data([7; 64]);
        assert_eq!(
            verify_tdx_quote(QUOTE, COLLATERAL, NOW, &p).unwrap_err(),
            TdxVerifyError::ReportDataMismatch
        );
    }

    #[test]
    fn tampering_or_stale_collateral_fails() {
        // Flip a byte of the TD body (signed by the attestation key) and of the signature data.
        for pos in [48 + 136, 48 + 520, 48 + 584 + 4 + 10, 48 + 584 + 4 + 100] {
            let mut q = QUOTE.to_vec();
            q[pos] ^= 1;
            let e = verify_tdx_quote(&q, COLLATERAL, NOW, &TdxPolicy::new(mr_td()));
            assert!(
                matches!(e, Err(TdxVerifyError::Dcap(_))),
                "pos {pos}: {e:?}"
            );
        }
        // After the collateral's nextUpdate.
        let e = verify_tdx_quote(
            QUOTE,
            COLLATERAL,
            NOW + 60 * 86_400,
            &TdxPolicy::new(mr_td()),
        );
        assert!(matches!(e, Err(TdxVerifyError::Dcap(_))), "{e:?}");
        assert_eq!(
            verify_tdx_quote(QUOTE, b"{}", NOW, &TdxPolicy::new(mr_td())).unwrap_err(),
            TdxVerifyError::Collateral
        );
    }
}
