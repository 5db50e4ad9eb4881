//! What a verifier requires of a TD ([`TdxPolicy`]) and the check of a TD quote body against it
//! ([`check_body`]), shared by the production path (`verify`, dcap-qvl and Intel collateral) and
//! the explicit-root path (`evidence` with `local`'s signature checks).
//!
//! Checked, in this order: DEBUG off (TD ATTRIBUTES bit 0, unless allowed), SEPT_VE_DISABLE on
//! (bit 28: a TD that takes #VE on EPT violations of pending pages can be attacked by its host),
//! TEE_TCB_SVN ≥ the minimum (component-wise, as the TCB levels of Intel's TCB info compare it),
//! MRTD, RTMR0–3 where given, MRCONFIGID / MROWNER / MROWNERCONFIG where given, REPORTDATA where
//! given. The expected MRTD is mandatory: there is no policy without a measurement.

use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use subtle::ConstantTimeEq;

use super::quote::TdQuoteBody;

/// TD ATTRIBUTES.DEBUG.
pub const ATTR_DEBUG: u64 = 1 << 0;
/// TD ATTRIBUTES.SEPT_VE_DISABLE.
pub const ATTR_SEPT_VE_DISABLE: u64 = 1 << 28;

/// Which TD field a policy check is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TdField {
    /// MRTD.
    MrTd,
    /// RTMR 0..=3.
    Rtmr(usize),
    /// MRCONFIGID.
    MrConfigId,
    /// MROWNER.
    MrOwner,
    /// MROWNERCONFIG.
    MrOwnerConfig,
}

impl fmt::Display for TdField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MrTd => f.write_str("MRTD"),
            Self::Rtmr(i) => write!(f, "RTMR{i}"),
            Self::MrConfigId => f.write_str("MRCONFIGID"),
            Self::MrOwner => f.write_str("MROWNER"),
            Self::MrOwnerConfig => f.write_str("MROWNERCONFIG"),
        }
    }
}

/// Why a TD quote body does not satisfy a [`TdxPolicy`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TdxPolicyError {
    /// The TD is debuggable and the policy does not allow it.
    DebugTd,
    /// SEPT_VE_DISABLE is clear.
    SeptVeNotDisabled,
    /// TEE_TCB_SVN is below the minimum (first lower component index).
    TeeTcbSvnTooLow(usize),
    /// A measurement register differs from the expected value.
    Mismatch {
        /// Which register.
        field: TdField,
        /// The policy's value.
        expected: Box<[u8; 48]>,
        /// The quote's.
        reported: Box<[u8; 48]>,
    },
    /// REPORTDATA is not the expected one.
    ReportDataMismatch,
}

impl fmt::Display for TdxPolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DebugTd => f.write_str("the TD is debuggable (ATTRIBUTES.DEBUG)"),
            Self::SeptVeNotDisabled => f.write_str("the TD has SEPT_VE_DISABLE clear"),
            Self::TeeTcbSvnTooLow(i) => {
                write!(f, "TEE_TCB_SVN component {i} is below the minimum")
            }
            Self::Mismatch { field, .. } => write!(f, "{field} differs from the expected one"),
            Self::ReportDataMismatch => f.write_str("report_data differs from the expected one"),
        }
    }
}

impl core::error::Error for TdxPolicyError {}

/// What to require of a TD. Built with [`TdxPolicy::new`], which takes the expected MRTD.
#[derive(Debug, Clone)]
pub struct TdxPolicy {
    pub(crate) mr_td: [u8; 48],
    pub(crate) rtmr: [Option<[u8; 48]>; 4],
    pub(crate) mr_config_id: Option<[u8; 48]>,
    pub(crate) mr_owner: Option<[u8; 48]>,
    pub(crate) mr_owner_config: Option<[u8; 48]>,
    pub(crate) report_data: Option<[u8; 64]>,
    pub(crate) allow_debug: bool,
    pub(crate) require_sept_ve_disable: bool,
    pub(crate) min_tee_tcb_svn: [u8; 16],
    pub(crate) accepted_tcb_status: Vec<String>,
}

impl TdxPolicy {
    /// Require `expected_mr_td`, a non-debug TD with SEPT_VE_DISABLE, and (with Intel
    /// collateral) TCB status `UpToDate`.
    pub fn new(expected_mr_td: [u8; 48]) -> Self {
        Self {
            mr_td: expected_mr_td,
            rtmr: [None; 4],
            mr_config_id: None,
            mr_owner: None,
            mr_owner_config: None,
            report_data: None,
            allow_debug: false,
            require_sept_ve_disable: true,
            min_tee_tcb_svn: [0; 16],
            accepted_tcb_status: alloc::vec!["UpToDate".to_string()],
        }
    }
    /// The expected MRTD.
    pub fn mr_td(&self) -> &[u8; 48] {
        &self.mr_td
    }
    /// Require RTMR `index` (0..=3; others are ignored) to equal `value`.
    pub fn rtmr(mut self, index: usize, value: [u8; 48]) -> Self {
        if let Some(slot) = self.rtmr.get_mut(index) {
            *slot = Some(value);
        }
        self
    }
    /// Require this MRCONFIGID.
    pub fn mr_config_id(mut self, v: [u8; 48]) -> Self {
        self.mr_config_id = Some(v);
        self
    }
    /// Require this MROWNER.
    pub fn mr_owner(mut self, v: [u8; 48]) -> Self {
        self.mr_owner = Some(v);
        self
    }
    /// Require this MROWNERCONFIG.
    pub fn mr_owner_config(mut self, v: [u8; 48]) -> Self {
        self.mr_owner_config = Some(v);
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
    /// Whether SEPT_VE_DISABLE must be set (default: yes).
    pub fn require_sept_ve_disable(mut self, require: bool) -> Self {
        self.require_sept_ve_disable = require;
        self
    }
    /// Minimum TEE_TCB_SVN (each of the 16 components).
    pub fn min_tee_tcb_svn(mut self, min: [u8; 16]) -> Self {
        self.min_tee_tcb_svn = min;
        self
    }
    /// Also accept this TCB status (e.g. "SWHardeningNeeded", "OutOfDate").
    pub fn accept_tcb_status(mut self, status: &str) -> Self {
        self.accepted_tcb_status.push(status.to_string());
        self
    }
}

fn same(field: TdField, reported: &[u8; 48], expected: &[u8; 48]) -> Result<(), TdxPolicyError> {
    if bool::from(reported.ct_eq(expected)) {
        Ok(())
    } else {
        Err(TdxPolicyError::Mismatch {
            field,
            expected: Box::new(*expected),
            reported: Box::new(*reported),
        })
    }
}

/// Checks a (signature-verified) TD quote body against `policy`; see the module docs.
pub fn check_body(body: &TdQuoteBody, policy: &TdxPolicy) -> Result<(), TdxPolicyError> {
    let attributes = u64::from_le_bytes(body.td_attributes);
    if attributes & ATTR_DEBUG != 0 && !policy.allow_debug {
        return Err(TdxPolicyError::DebugTd);
    }
    if policy.require_sept_ve_disable && attributes & ATTR_SEPT_VE_DISABLE == 0 {
        return Err(TdxPolicyError::SeptVeNotDisabled);
    }
    if let Some(i) = body
        .tee_tcb_svn
        .iter()
        .zip(policy.min_tee_tcb_svn.iter())
        .position(|(got, min)| got < min)
    {
        return Err(TdxPolicyError::TeeTcbSvnTooLow(i));
    }
    same(TdField::MrTd, &body.mr_td, &policy.mr_td)?;
    for (i, (got, want)) in body.rtmr.iter().zip(policy.rtmr.iter()).enumerate() {
        if let Some(want) = want {
            same(TdField::Rtmr(i), got, want)?;
        }
    }
    for (field, got, want) in [
        (
            TdField::MrConfigId,
            &body.mr_config_id,
            &policy.mr_config_id,
        ),
        (TdField::MrOwner, &body.mr_owner, &policy.mr_owner),
        (
            TdField::MrOwnerConfig,
            &body.mr_owner_config,
            &policy.mr_owner_config,
        ),
    ] {
        if let Some(want) = want {
            same(field, got, want)?;
        }
    }
    if let Some(rd) = &policy.report_data
        && !bool::from(body.report_data.ct_eq(rd))
    {
        return Err(TdxPolicyError::ReportDataMismatch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::FromZeros;

    fn body() -> TdQuoteBody {
        let mut b = TdQuoteBody::new_zeroed();
        b.td_attributes = ATTR_SEPT_VE_DISABLE.to_le_bytes();
        b.mr_td = [1; 48];
        b.rtmr = [[2; 48], [3; 48], [4; 48], [5; 48]];
        b.mr_owner = [6; 48];
        b.tee_tcb_svn = [3; 16];
        b
    }

    #[test]
    fn each_check_fails_with_its_error() {
        let p = TdxPolicy::new([1; 48]).rtmr(1, [3; 48]).rtmr(2, [4; 48]);
        assert_eq!(check_body(&body(), &p), Ok(()));
        let mut b = body();
        b.td_attributes[0] |= 1;
        assert_eq!(check_body(&b, &p), Err(TdxPolicyError::DebugTd));
        assert_eq!(check_body(&b, &p.clone().allow_debug(true)), Ok(()));
        let mut b = body();
        b.td_attributes = [0; 8];
        assert_eq!(check_body(&b, &p), Err(TdxPolicyError::SeptVeNotDisabled));
        let mut min = [3; 16];
        min[5] = 4;
        assert_eq!(
            check_body(&body(), &p.clone().min_tee_tcb_svn(min)),
            Err(TdxPolicyError::TeeTcbSvnTooLow(5))
        );
        assert!(matches!(
            check_body(&body(), &TdxPolicy::new([9; 48])),
            Err(TdxPolicyError::Mismatch {
                field: TdField::MrTd,
                ..
            })
        ));
        assert!(matches!(
            check_body(&body(), &p.clone().rtmr(0, [9; 48])),
            Err(TdxPolicyError::Mismatch {
                field: TdField::Rtmr(0),
                ..
            })
        ));
        assert_eq!(check_body(&body(), &p.clone().mr_owner([6; 48])), Ok(()));
        assert!(matches!(
            check_body(&body(), &p.clone().mr_owner([7; 48])),
            Err(TdxPolicyError::Mismatch {
                field: TdField::MrOwner,
                ..
            })
        ));
        assert!(matches!(
            check_body(&body(), &p.clone().mr_config_id([7; 48])),
            Err(TdxPolicyError::Mismatch {
                field: TdField::MrConfigId,
                ..
            })
        ));
        assert_eq!(
            check_body(&body(), &p.report_data([1; 64])),
            Err(TdxPolicyError::ReportDataMismatch)
        );
    }
}
