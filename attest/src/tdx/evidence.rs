//! TDX evidence with an RA-TLS key binding (feature `std`): a DCAP quote v4 whose REPORTDATA is
//! `SHA-256(SEC1 uncompressed P-256 public key) ‖ nonce` (the binding of [`crate::ratls`], the
//! same as SEV-SNP's; the nonce is zero in a certificate), verified
//!
//! - against Intel's SGX root CA with `dcap-qvl` and PCS collateral ([`TdxRoots::Intel`],
//!   feature `tdx-verify`), or
//! - against a root given explicitly ([`TdxRoots::TrustRoot`], e.g. `tdx-emu`'s test root) with
//!   [`super::local::verify_quote_signatures`], which checks the signatures but no TCB
//!   collateral;
//!
//! then against a [`TdxPolicy`] ([`super::policy::check_body`]) and the binding.

use alloc::vec::Vec;
use core::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::local::{LocalVerifyError, verify_quote_signatures};
use super::policy::{TdxPolicy, TdxPolicyError, check_body};
use super::quote::TdQuoteBody;

/// Where trust in a quote's PCK chain comes from.
#[derive(Debug, Clone, Copy)]
pub enum TdxRoots<'a> {
    /// Intel's SGX root CA (built into dcap-qvl), with this PCS collateral JSON (TCB info, QE
    /// identity, CRLs: `dcap_qvl::QuoteCollateralV3`) at this time. Needs feature `tdx-verify`.
    Intel {
        /// The collateral JSON.
        collateral_json: &'a [u8],
        /// Now, in seconds since the Unix epoch (collateral validity).
        now_unix: u64,
    },
    /// Only this root certificate (PEM or DER), given explicitly; signatures only, no TCB status.
    TrustRoot(&'a [u8]),
}

/// Why TDX evidence did not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TdxEvidenceError {
    /// The explicit trust root is neither a PEM nor a DER certificate.
    TrustRoot,
    /// Intel verification was asked for, but this build has no `tdx-verify` feature.
    IntelUnavailable,
    /// Verification against Intel's root needs PCS collateral, and none was given.
    NoCollateral,
    /// The quote's signatures do not verify to the explicit root.
    Signatures(LocalVerifyError),
    /// dcap-qvl rejected the quote, its collateral or its TCB status.
    #[cfg(feature = "tdx-verify")]
    Intel(super::verify::TdxVerifyError),
    /// The TD does not satisfy the policy.
    Policy(TdxPolicyError),
    /// `REPORTDATA[0..32]` is not SHA-256 of the public key.
    KeyNotBound,
    /// `REPORTDATA[32..64]` is not the expected nonce.
    NonceMismatch,
}

impl fmt::Display for TdxEvidenceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TrustRoot => f.write_str("the trust root is not a PEM or DER certificate"),
            Self::IntelUnavailable => {
                f.write_str("verification against Intel's root is not built in (tdx-verify)")
            }
            Self::NoCollateral => f.write_str(
                "verifying a TDX quote against Intel's root needs PCS collateral (TCB info, QE identity, CRLs)",
            ),
            Self::Signatures(e) => write!(f, "TDX quote: {e}"),
            #[cfg(feature = "tdx-verify")]
            Self::Intel(e) => write!(f, "TDX quote: {e}"),
            Self::Policy(e) => write!(f, "TDX policy: {e}"),
            Self::KeyNotBound => f.write_str("report_data does not bind the certificate key"),
            Self::NonceMismatch => f.write_str("report_data does not carry the expected nonce"),
        }
    }
}

impl core::error::Error for TdxEvidenceError {}

/// How a verified quote was anchored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TdxAnchor {
    /// Intel's root, with this TCB status from the collateral.
    Intel(alloc::string::String),
    /// The explicit trust root (no TCB status).
    TrustRoot,
}

/// A quote that passed [`verify_tdx_evidence`].
#[derive(Clone)]
pub struct VerifiedTdx {
    body: TdQuoteBody,
    anchor: TdxAnchor,
}

impl fmt::Debug for VerifiedTdx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedTdx")
            .field("mr_td", &self.body.mr_td)
            .field("anchor", &self.anchor)
            .finish_non_exhaustive()
    }
}

impl VerifiedTdx {
    /// The verified TD quote body.
    pub fn body(&self) -> &TdQuoteBody {
        &self.body
    }
    /// How it was anchored.
    pub fn anchor(&self) -> &TdxAnchor {
        &self.anchor
    }
}

fn root_der(root: &[u8]) -> Result<Vec<u8>, TdxEvidenceError> {
    if root.starts_with(b"-----BEGIN") {
        let (_, der) = der::pem::decode_vec(root).map_err(|_| TdxEvidenceError::TrustRoot)?;
        Ok(der)
    } else if root.first() == Some(&0x30) {
        Ok(root.to_vec())
    } else {
        Err(TdxEvidenceError::TrustRoot)
    }
}

fn signed_body(
    quote: &[u8],
    roots: TdxRoots<'_>,
    policy: &TdxPolicy,
) -> Result<(TdQuoteBody, TdxAnchor), TdxEvidenceError> {
    match roots {
        TdxRoots::TrustRoot(root) => {
            let body = verify_quote_signatures(quote, &root_der(root)?)
                .map_err(TdxEvidenceError::Signatures)?;
            Ok((body, TdxAnchor::TrustRoot))
        }
        #[cfg(feature = "tdx-verify")]
        TdxRoots::Intel {
            collateral_json,
            now_unix,
        } => {
            use super::verify::{TdxVerifyError, verify_tdx_quote};
            let v = verify_tdx_quote(quote, collateral_json, now_unix, policy).map_err(
                |e| match e {
                    TdxVerifyError::Policy(p) => TdxEvidenceError::Policy(p),
                    other => TdxEvidenceError::Intel(other),
                },
            )?;
            Ok((*v.body(), TdxAnchor::Intel(v.tcb_status().into())))
        }
        #[cfg(not(feature = "tdx-verify"))]
        TdxRoots::Intel { .. } => {
            let _ = policy;
            Err(TdxEvidenceError::IntelUnavailable)
        }
    }
}

/// Verify a TDX quote: its signatures by `roots`, then `policy` (no key binding: see
/// [`verify_tdx_evidence`] for that).
pub fn verify_tdx_quote_with(
    quote: &[u8],
    roots: TdxRoots<'_>,
    policy: &TdxPolicy,
) -> Result<VerifiedTdx, TdxEvidenceError> {
    let (body, anchor) = signed_body(quote, roots, policy)?;
    check_body(&body, policy).map_err(TdxEvidenceError::Policy)?;
    Ok(VerifiedTdx { body, anchor })
}

/// Verify a TDX quote ([`verify_tdx_quote_with`]) and its binding
/// `REPORTDATA = SHA-256(public_key) ‖ nonce`.
pub fn verify_tdx_evidence(
    quote: &[u8],
    public_key: &[u8; 65],
    nonce: &[u8; 32],
    roots: TdxRoots<'_>,
    policy: &TdxPolicy,
) -> Result<VerifiedTdx, TdxEvidenceError> {
    let v = verify_tdx_quote_with(quote, roots, policy)?;
    let (key_hash, rest) = v.body.report_data.split_at(32);
    if !bool::from(key_hash.ct_eq(&Sha256::digest(public_key))) {
        return Err(TdxEvidenceError::KeyNotBound);
    }
    if !bool::from(rest.ct_eq(nonce)) {
        return Err(TdxEvidenceError::NonceMismatch);
    }
    Ok(v)
}
