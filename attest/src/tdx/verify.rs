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

pub use super::policy::TdxPolicy;
use super::policy::{TdxPolicyError, check_body};
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
    /// The TD fields do not satisfy the policy.
    Policy(TdxPolicyError),
}

impl fmt::Display for TdxVerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Quote(e) => write!(f, "{e}"),
            Self::Collateral => f.write_str("collateral JSON does not parse"),
            Self::Dcap(e) => write!(f, "quote verification failed: {e}"),
            Self::TcbStatus(s) => write!(f, "platform TCB status {s} is not accepted"),
            Self::Policy(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for TdxVerifyError {}

impl From<QuoteError> for TdxVerifyError {
    fn from(e: QuoteError) -> Self {
        Self::Quote(e)
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
    check_body(&body, policy).map_err(TdxVerifyError::Policy)?;
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

    use crate::tdx::policy::TdField;

    fn mr_td() -> [u8; 48] {
        Quote::parse(QUOTE).unwrap().body.mr_td
    }

    /// The sample quote's TD: does it have SEPT_VE_DISABLE? The policy follows it so the
    /// other checks are reached.
    fn policy(m: [u8; 48]) -> TdxPolicy {
        let attrs = u64::from_le_bytes(Quote::parse(QUOTE).unwrap().body.td_attributes);
        TdxPolicy::new(m).require_sept_ve_disable(attrs & (1 << 28) != 0)
    }

    #[test]
    fn sample_quote_verifies() {
        let v = verify_tdx_quote(QUOTE, COLLATERAL, NOW, &policy(mr_td())).unwrap();
        assert_eq!(v.tcb_status(), "UpToDate");
        assert_eq!(v.body().mr_td, mr_td());
        let body = *Quote::parse(QUOTE).unwrap().body;
        let p = policy(mr_td())
            .rtmr(0, body.rtmr[0])
            .rtmr(3, body.rtmr[3])
            .report_data(body.report_data);
        assert!(verify_tdx_quote(QUOTE, COLLATERAL, NOW, &p).is_ok());
    }

    #[test]
    fn policy_mismatches_fail() {
        let mut m = mr_td();
        m[0] ^= 1;
        assert!(matches!(
            verify_tdx_quote(QUOTE, COLLATERAL, NOW, &policy(m)).unwrap_err(),
            TdxVerifyError::Policy(TdxPolicyError::Mismatch {
                field: TdField::MrTd,
                ..
            })
        ));
        let p = policy(mr_td()).rtmr(2, [7; 48]);
        assert!(matches!(
            verify_tdx_quote(QUOTE, COLLATERAL, NOW, &p).unwrap_err(),
            TdxVerifyError::Policy(TdxPolicyError::Mismatch {
                field: TdField::Rtmr(2),
                ..
            })
        ));
        let p = policy(mr_td()).report_data([7; 64]);
        assert_eq!(
            verify_tdx_quote(QUOTE, COLLATERAL, NOW, &p).unwrap_err(),
            TdxVerifyError::Policy(TdxPolicyError::ReportDataMismatch)
        );
    }

    #[test]
    fn tampering_or_stale_collateral_fails() {
        // Flip a byte of the TD body (signed by the attestation key) and of the signature data.
        for pos in [48 + 136, 48 + 520, 48 + 584 + 4 + 10, 48 + 584 + 4 + 100] {
            let mut q = QUOTE.to_vec();
            q[pos] ^= 1;
            let e = verify_tdx_quote(&q, COLLATERAL, NOW, &policy(mr_td()));
            assert!(
                matches!(e, Err(TdxVerifyError::Dcap(_))),
                "pos {pos}: {e:?}"
            );
        }
        // After the collateral's nextUpdate.
        let e = verify_tdx_quote(QUOTE, COLLATERAL, NOW + 60 * 86_400, &policy(mr_td()));
        assert!(matches!(e, Err(TdxVerifyError::Dcap(_))), "{e:?}");
        assert_eq!(
            verify_tdx_quote(QUOTE, b"{}", NOW, &policy(mr_td())).unwrap_err(),
            TdxVerifyError::Collateral
        );
    }
}
