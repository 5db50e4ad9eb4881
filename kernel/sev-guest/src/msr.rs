//! The GHCB MSR protocol: requests and responses exchanged through the GHCB MSR
//! (`0xC001_0130`) itself, before (or instead of) a registered GHCB page.
//!
//! AMD 56421 (GHCB specification, rev 2.03) §2.3.1 "GHCB MSR Protocol": bits 11:0 of the MSR
//! value name the operation (`GHCBInfo`), bits 63:12 carry its data (`GHCBData`). The guest
//! writes a request, executes VMGEXIT and reads the response from the same MSR. Every
//! response is checked for its `GHCBInfo` code and its reserved bits: the value comes from the
//! hypervisor and is untrusted.
//!
//! Deliberately absent: the CPUID request (0x004). CPUID answers come from the SNP CPUID page
//! ([`crate::cpuid`]) only; a hypervisor-supplied CPUID value is never used. AP reset hold
//! (0x006) is not needed by a one-vCPU guest.

use core::fmt;

/// The GHCB MSR number (AMD64 APM vol. 2 §15.35.8, `SEV_ES_GHCB`).
pub const MSR_GHCB: u32 = 0xC001_0130;
/// The `SEV_STATUS` MSR (APM vol. 2 §15.34.10).
pub const MSR_SEV_STATUS: u32 = 0xC001_0131;

/// `SEV_STATUS` bit 0: SEV is active.
pub const SEV_STATUS_SEV: u64 = 1 << 0;
/// `SEV_STATUS` bit 1: SEV-ES is active.
pub const SEV_STATUS_SEV_ES: u64 = 1 << 1;
/// `SEV_STATUS` bit 2: SEV-SNP is active.
pub const SEV_STATUS_SNP: u64 = 1 << 2;

/// The `SEV_STATUS` bits this guest runs with (APM vol. 2 §15.34.10, `SEV_STATUS` fields):
/// SEV, SEV-ES, SNP (0–2), and the features that need nothing from the guest: DebugSwap (7),
/// PreventHostIBS (8), BTBIsolation (9), IbsVirtualization (14), SmtProtection (17). Any
/// other bit — vTOM (3), ReflectVC (4), Restricted/AlternateInjection (5, 6), VmplSSS (10),
/// SecureTSC (11), VmgexitParameter (12), VmsaRegProt (16), and every bit not known here —
/// changes what the guest must do (Linux keeps the same split, `SNP_FEATURES_IMPL_REQ`), so
/// the guest refuses it (reason [`KmsReason::SnpFeatureUnsupported`]).
pub const SEV_STATUS_SUPPORTED: u64 =
    0b111 | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 14) | (1 << 17);

/// The `SEV_STATUS` bits that enable SNP features this guest does not implement (0 when it can
/// run).
pub fn unsupported_snp_features(status: u64) -> u64 {
    status & !SEV_STATUS_SUPPORTED
}

/// The GHCB protocol version this guest speaks: version 2 is the first with SNP (page-state
/// change, guest requests, hypervisor features).
pub const GHCB_PROTOCOL_VERSION: u16 = 2;

const INFO_MASK: u64 = 0xFFF;

/// `GHCBInfo` codes (§2.3.1).
pub mod info {
    /// SEV information response.
    pub const SEV_INFO_RESP: u16 = 0x001;
    /// SEV information request.
    pub const SEV_INFO_REQ: u16 = 0x002;
    /// Preferred GHCB GPA request.
    pub const PREFERRED_GPA_REQ: u16 = 0x010;
    /// Preferred GHCB GPA response.
    pub const PREFERRED_GPA_RESP: u16 = 0x011;
    /// Register GHCB GPA request.
    pub const REGISTER_GPA_REQ: u16 = 0x012;
    /// Register GHCB GPA response.
    pub const REGISTER_GPA_RESP: u16 = 0x013;
    /// SNP page-state change request.
    pub const PSC_REQ: u16 = 0x014;
    /// SNP page-state change response.
    pub const PSC_RESP: u16 = 0x015;
    /// Hypervisor feature support request.
    pub const HV_FEATURES_REQ: u16 = 0x080;
    /// Hypervisor feature support response.
    pub const HV_FEATURES_RESP: u16 = 0x081;
    /// Termination request.
    pub const TERMINATE_REQ: u16 = 0x100;
}

/// Why an MSR-protocol response is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsrProtocolError {
    /// The response's `GHCBInfo` is not the one that answers the request.
    UnexpectedResponse {
        /// The `GHCBInfo` expected.
        expected: u16,
        /// The `GHCBInfo` received.
        got: u16,
    },
    /// Reserved bits of the response are set.
    ReservedBits(u16),
    /// The hypervisor's protocol range `[min, max]` does not contain version 2.
    ProtocolVersion {
        /// Lowest version the hypervisor supports.
        min: u16,
        /// Highest version the hypervisor supports.
        max: u16,
    },
    /// The C-bit position is outside 32..=51 (a guest physical address has at most 52 bits).
    CbitOutOfRange(u8),
    /// The hypervisor does not advertise SEV-SNP support (feature bit 0).
    NoSnpFeature,
    /// The hypervisor registered a GHCB GFN other than the requested one.
    GpaMismatch {
        /// The GFN the guest asked for.
        requested: u64,
        /// The GFN in the response.
        got: u64,
    },
    /// The page-state change failed with this (non-zero) error code.
    PscFailed(u32),
    /// A GFN does not fit its field (40 bits for page-state change, 52 for the GHCB GPA).
    GfnTooLarge(u64),
}

impl fmt::Display for MsrProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnexpectedResponse { expected, got } => {
                write!(f, "GHCB MSR response {got:#x}, expected {expected:#x}")
            }
            Self::ReservedBits(i) => write!(f, "GHCB MSR response {i:#x}: reserved bits set"),
            Self::ProtocolVersion { min, max } => write!(
                f,
                "hypervisor GHCB protocol {min}..={max} excludes version {GHCB_PROTOCOL_VERSION}"
            ),
            Self::CbitOutOfRange(c) => write!(f, "C-bit position {c} out of range"),
            Self::NoSnpFeature => f.write_str("hypervisor does not support SEV-SNP"),
            Self::GpaMismatch { requested, got } => {
                write!(f, "GHCB GFN {got:#x} registered, {requested:#x} requested")
            }
            Self::PscFailed(e) => write!(f, "page-state change (MSR protocol) error {e:#x}"),
            Self::GfnTooLarge(g) => write!(f, "GFN {g:#x} does not fit the request"),
        }
    }
}

impl core::error::Error for MsrProtocolError {}

/// Splits a response into (`GHCBInfo`, `GHCBData`) and checks the code.
fn expect(value: u64, expected: u16) -> Result<u64, MsrProtocolError> {
    let got = (value & INFO_MASK) as u16;
    if got != expected {
        return Err(MsrProtocolError::UnexpectedResponse { expected, got });
    }
    Ok(value >> 12)
}

/// SEV information request (`0x002`).
pub const fn sev_info_request() -> u64 {
    info::SEV_INFO_REQ as u64
}

/// SEV information response (`0x001`): `[63:48]` max protocol, `[47:32]` min protocol,
/// `[31:24]` C-bit position, `[23:12]` reserved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SevInfo {
    /// Highest GHCB protocol version the hypervisor supports.
    pub max_version: u16,
    /// Lowest GHCB protocol version the hypervisor supports.
    pub min_version: u16,
    /// Position of the C-bit (encryption bit) in a page-table entry.
    pub cbit: u8,
}

impl SevInfo {
    /// Parse a response; checks the code and the reserved bits (the version range and the
    /// C-bit are checked by [`negotiate`](Self::negotiate)).
    pub fn parse(value: u64) -> Result<Self, MsrProtocolError> {
        let data = expect(value, info::SEV_INFO_RESP)?;
        if data & 0xFFF != 0 {
            return Err(MsrProtocolError::ReservedBits(info::SEV_INFO_RESP));
        }
        Ok(Self {
            max_version: (value >> 48) as u16,
            min_version: (value >> 32) as u16,
            cbit: (value >> 24) as u8,
        })
    }

    /// Emit (the hypervisor's side; for tests and the loopback harness).
    pub fn emit(&self) -> u64 {
        (u64::from(self.max_version) << 48)
            | (u64::from(self.min_version) << 32)
            | (u64::from(self.cbit) << 24)
            | u64::from(info::SEV_INFO_RESP)
    }

    /// Checks that version 2 is in range and the C-bit is plausible; returns the version to use.
    pub fn negotiate(&self) -> Result<u16, MsrProtocolError> {
        if self.min_version > GHCB_PROTOCOL_VERSION || self.max_version < GHCB_PROTOCOL_VERSION {
            return Err(MsrProtocolError::ProtocolVersion {
                min: self.min_version,
                max: self.max_version,
            });
        }
        if !(32..=51).contains(&self.cbit) {
            return Err(MsrProtocolError::CbitOutOfRange(self.cbit));
        }
        Ok(GHCB_PROTOCOL_VERSION)
    }
}

/// Hypervisor feature support request (`0x080`).
pub const fn hv_features_request() -> u64 {
    info::HV_FEATURES_REQ as u64
}

/// Hypervisor features (`0x081`, `[63:12]` a bitmap; §2.3.1 and §4.1.9 "Hypervisor Feature
/// Support").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HvFeatures(pub u64);

impl HvFeatures {
    /// Bit 0: SEV-SNP.
    pub const SNP: u64 = 1 << 0;
    /// Bit 1: SEV-SNP AP creation.
    pub const SNP_AP_CREATION: u64 = 1 << 1;
    /// Bit 2: SEV-SNP restricted injection.
    pub const SNP_RESTRICTED_INJECTION: u64 = 1 << 2;
    /// Bit 3: SEV-SNP restricted injection timer.
    pub const SNP_RESTRICTED_INJECTION_TIMER: u64 = 1 << 3;
    /// Bit 4: APIC ID list.
    pub const APIC_ID_LIST: u64 = 1 << 4;
    /// Bit 5: SEV-SNP multiple VMPL levels.
    pub const SNP_MULTI_VMPL: u64 = 1 << 5;

    /// Parse a response; requires the SNP feature.
    pub fn parse(value: u64) -> Result<Self, MsrProtocolError> {
        let features = expect(value, info::HV_FEATURES_RESP)?;
        if features & Self::SNP == 0 {
            return Err(MsrProtocolError::NoSnpFeature);
        }
        Ok(Self(features))
    }

    /// Emit (hypervisor side).
    pub fn emit(&self) -> u64 {
        (self.0 << 12) | u64::from(info::HV_FEATURES_RESP)
    }
}

const GFN_52: u64 = (1 << 52) - 1;
const GFN_40: u64 = (1 << 40) - 1;

/// Register GHCB GPA request (`0x012`, `[63:12]` the GHCB's GFN).
pub fn register_ghcb_request(gfn: u64) -> Result<u64, MsrProtocolError> {
    if gfn > GFN_52 {
        return Err(MsrProtocolError::GfnTooLarge(gfn));
    }
    Ok((gfn << 12) | u64::from(info::REGISTER_GPA_REQ))
}

/// Checks a register GHCB GPA response (`0x013`): the hypervisor echoes the GFN on success
/// (anything else, e.g. all ones, is a refusal).
pub fn parse_register_ghcb_response(value: u64, gfn: u64) -> Result<(), MsrProtocolError> {
    let got = expect(value, info::REGISTER_GPA_RESP)?;
    if got != gfn {
        return Err(MsrProtocolError::GpaMismatch {
            requested: gfn,
            got,
        });
    }
    Ok(())
}

/// Preferred GHCB GPA request (`0x010`).
pub const fn preferred_ghcb_request() -> u64 {
    info::PREFERRED_GPA_REQ as u64
}

/// Parses a preferred GHCB GPA response (`0x011`): `None` when the hypervisor has no
/// preference (`[63:12]` all ones).
pub fn parse_preferred_ghcb_response(value: u64) -> Result<Option<u64>, MsrProtocolError> {
    let gfn = expect(value, info::PREFERRED_GPA_RESP)?;
    Ok((gfn != GFN_52).then_some(gfn))
}

/// The page operation of a page-state change (§2.3.1 and §4.1.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageOp {
    /// Make the page private (assigned to the guest in the RMP).
    Private,
    /// Make the page shared (hypervisor-owned).
    Shared,
}

impl PageOp {
    /// The wire value (1 = private, 2 = shared).
    pub const fn to_bits(self) -> u64 {
        match self {
            Self::Private => 1,
            Self::Shared => 2,
        }
    }

    /// From the wire value.
    pub const fn from_bits(v: u64) -> Option<Self> {
        match v {
            1 => Some(Self::Private),
            2 => Some(Self::Shared),
            _ => None,
        }
    }
}

/// SNP page-state change request (`0x014`): `[55:52]` operation, `[51:12]` GFN. One 4 KiB page.
pub fn psc_request(gfn: u64, op: PageOp) -> Result<u64, MsrProtocolError> {
    if gfn > GFN_40 {
        return Err(MsrProtocolError::GfnTooLarge(gfn));
    }
    Ok((op.to_bits() << 52) | (gfn << 12) | u64::from(info::PSC_REQ))
}

/// Decodes a page-state change request (hypervisor side): `(gfn, op)`.
pub fn parse_psc_request(value: u64) -> Option<(u64, PageOp)> {
    if value & INFO_MASK != u64::from(info::PSC_REQ) || value >> 56 != 0 {
        return None;
    }
    Some((
        (value >> 12) & GFN_40,
        PageOp::from_bits((value >> 52) & 0xF)?,
    ))
}

/// Checks a page-state change response (`0x015`, `[63:32]` error code, 0 = success).
pub fn parse_psc_response(value: u64) -> Result<(), MsrProtocolError> {
    let data = expect(value, info::PSC_RESP)?;
    if data & 0xF_FFFF != 0 {
        return Err(MsrProtocolError::ReservedBits(info::PSC_RESP));
    }
    match (value >> 32) as u32 {
        0 => Ok(()),
        e => Err(MsrProtocolError::PscFailed(e)),
    }
}

/// A page-state change response (hypervisor side).
pub fn psc_response(error: u32) -> u64 {
    (u64::from(error) << 32) | u64::from(info::PSC_RESP)
}

/// Termination reason-code sets (§2.3.1 "Termination Request": `[15:12]` set, `[23:16]` code).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TerminateReason {
    /// Set 0 (defined by the GHCB specification), code 0: general termination request.
    General,
    /// Set 0, code 1: SEV-ES / SEV-SNP not supported.
    SevNotSupported,
    /// Set 0, code 2: GHCB protocol version not supported.
    ProtocolVersion,
    /// Set [`ZT_KMS_REASON_SET`]: a reason defined by this project.
    Kms(KmsReason),
}

/// The reason-code set this project uses for its own reasons (set 0 is the specification's;
/// Linux uses set 1). Reasons are listed in [`KmsReason`] and in the crate README.
pub const ZT_KMS_REASON_SET: u8 = 0xC;

/// The project's termination reasons (set [`ZT_KMS_REASON_SET`]). The values are stable: an
/// operator reads them from the host's KVM exit log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum KmsReason {
    /// SEV or SEV-ES is active without SNP: this configuration is refused.
    SnpNotActive = 0x01,
    /// The hypervisor does not advertise SEV-SNP in its features.
    HvNoSnp = 0x02,
    /// The GHCB could not be registered.
    GhcbRegistration = 0x03,
    /// A page-state change failed or was answered inconsistently.
    PageStateChange = 0x04,
    /// PVALIDATE failed, or found a page already in the requested state.
    Pvalidate = 0x05,
    /// The Confidential Computing blob or the CPUID page is missing or malformed.
    CpuidPage = 0x06,
    /// The secrets page is missing or malformed.
    SecretsPage = 0x07,
    /// A #VC for an exit the handler does not emulate.
    VcUnsupported = 0x08,
    /// A #VC raised while a #VC was being handled.
    VcNested = 0x09,
    /// The hypervisor answered an exit with a malformed or inconsistent response.
    HvProtocol = 0x0A,
    /// The C-bit position of the hypervisor and of the CPUID page differ.
    CbitMismatch = 0x0B,
    /// SEV-SNP is active with a feature in `SEV_STATUS` this guest does not implement
    /// ([`unsupported_snp_features`]); detected before the firmware's exception handlers are
    /// replaced.
    SnpFeatureUnsupported = 0x0C,
    /// A kernel panic.
    Panic = 0x0F,
}

impl TerminateReason {
    /// `(reason set, reason code)`.
    pub fn set_and_code(self) -> (u8, u8) {
        match self {
            Self::General => (0, 0),
            Self::SevNotSupported => (0, 1),
            Self::ProtocolVersion => (0, 2),
            Self::Kms(r) => (ZT_KMS_REASON_SET, r as u8),
        }
    }
}

/// Termination request (`0x100`). The hypervisor does not answer: the guest is stopped.
pub fn terminate_request(reason: TerminateReason) -> u64 {
    let (set, code) = reason.set_and_code();
    (u64::from(code) << 16) | (u64::from(set & 0xF) << 12) | u64::from(info::TERMINATE_REQ)
}

/// Decodes a termination request (hypervisor side): `(set, code)`.
pub fn parse_terminate_request(value: u64) -> Option<(u8, u8)> {
    if value & INFO_MASK != u64::from(info::TERMINATE_REQ) || value >> 24 != 0 {
        return None;
    }
    Some((((value >> 12) & 0xF) as u8, (value >> 16) as u8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sev_info_round_trip_and_negotiation() {
        // Linux/KVM today: min 1, max 2, C-bit 51 (Milan/Genoa).
        let v = 0x0002_0001_3300_0001u64;
        let i = SevInfo::parse(v).unwrap();
        assert_eq!(
            i,
            SevInfo {
                max_version: 2,
                min_version: 1,
                cbit: 51
            }
        );
        assert_eq!(i.emit(), v);
        assert_eq!(i.negotiate(), Ok(2));
        let old = SevInfo {
            max_version: 1,
            min_version: 1,
            cbit: 51,
        };
        assert_eq!(
            old.negotiate(),
            Err(MsrProtocolError::ProtocolVersion { min: 1, max: 1 })
        );
        let future = SevInfo {
            max_version: 9,
            min_version: 3,
            cbit: 51,
        };
        assert!(matches!(
            future.negotiate(),
            Err(MsrProtocolError::ProtocolVersion { min: 3, max: 9 })
        ));
        let bad = SevInfo { cbit: 12, ..i };
        assert_eq!(bad.negotiate(), Err(MsrProtocolError::CbitOutOfRange(12)));
        assert_eq!(
            SevInfo::parse(v | 0x1000),
            Err(MsrProtocolError::ReservedBits(1))
        );
        assert_eq!(
            SevInfo::parse(0x013),
            Err(MsrProtocolError::UnexpectedResponse {
                expected: 1,
                got: 0x13
            })
        );
        assert_eq!(sev_info_request(), 2);
    }

    #[test]
    fn hv_features() {
        let f = HvFeatures(HvFeatures::SNP | HvFeatures::SNP_AP_CREATION);
        assert_eq!(f.emit(), 0x3081);
        assert_eq!(HvFeatures::parse(0x3081), Ok(f));
        assert_eq!(
            HvFeatures::parse(0x2081),
            Err(MsrProtocolError::NoSnpFeature)
        );
        assert!(matches!(
            HvFeatures::parse(0x3001),
            Err(MsrProtocolError::UnexpectedResponse { .. })
        ));
        assert_eq!(hv_features_request(), 0x080);
    }

    #[test]
    fn register_ghcb() {
        assert_eq!(register_ghcb_request(0x1234), Ok(0x0123_4012));
        assert_eq!(parse_register_ghcb_response(0x0123_4013, 0x1234), Ok(()));
        // KVM answers all ones in GHCBData on failure.
        assert_eq!(
            parse_register_ghcb_response(0xFFFF_FFFF_FFFF_F013, 0x1234),
            Err(MsrProtocolError::GpaMismatch {
                requested: 0x1234,
                got: GFN_52
            })
        );
        assert_eq!(
            register_ghcb_request(1 << 52),
            Err(MsrProtocolError::GfnTooLarge(1 << 52))
        );
        assert_eq!(preferred_ghcb_request(), 0x010);
        assert_eq!(parse_preferred_ghcb_response(0x55_011), Ok(Some(0x55)));
        assert_eq!(
            parse_preferred_ghcb_response(0xFFFF_FFFF_FFFF_F011),
            Ok(None)
        );
    }

    #[test]
    fn page_state_change() {
        let r = psc_request(0xABCDE, PageOp::Shared).unwrap();
        assert_eq!(r, 0x0020_0000_ABCD_E014);
        assert_eq!(parse_psc_request(r), Some((0xABCDE, PageOp::Shared)));
        let r = psc_request(0x1, PageOp::Private).unwrap();
        assert_eq!(r, 0x0010_0000_0000_1014);
        assert_eq!(parse_psc_request(0x0030_0000_0000_1014), None);
        assert_eq!(
            psc_request(1 << 40, PageOp::Private),
            Err(MsrProtocolError::GfnTooLarge(1 << 40))
        );
        assert_eq!(parse_psc_response(psc_response(0)), Ok(()));
        assert_eq!(
            parse_psc_response(psc_response(0x10)),
            Err(MsrProtocolError::PscFailed(0x10))
        );
        assert_eq!(
            parse_psc_response(0x1015),
            Err(MsrProtocolError::ReservedBits(0x15))
        );
    }

    #[test]
    fn snp_features() {
        // SEV | SEV-ES | SNP: runs.
        assert_eq!(unsupported_snp_features(0b111), 0);
        // DebugSwap, PreventHostIBS, BTBIsolation, IbsVirtualization, SmtProtection: no guest
        // support needed.
        let harmless = 0b111 | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 14) | (1 << 17);
        assert_eq!(unsupported_snp_features(harmless), 0);
        // vTOM, ReflectVC, RestrictedInjection, AlternateInjection, VmplSSS, SecureTSC,
        // VmgexitParameter, VmsaRegProt: each refused on its own.
        for bit in [3, 4, 5, 6, 10, 11, 12, 16] {
            assert_eq!(
                unsupported_snp_features(0b111 | (1 << bit)),
                1 << bit,
                "bit {bit}"
            );
        }
        // Reserved and unknown bits are refused too.
        assert_eq!(unsupported_snp_features(0b111 | (1 << 13)), 1 << 13);
        assert_eq!(unsupported_snp_features(0b111 | (1 << 40)), 1 << 40);
    }

    #[test]
    fn terminate() {
        assert_eq!(terminate_request(TerminateReason::General), 0x100);
        assert_eq!(
            terminate_request(TerminateReason::ProtocolVersion),
            0x2_0100
        );
        let v = terminate_request(TerminateReason::Kms(KmsReason::VcNested));
        assert_eq!(v, 0x09_C100);
        assert_eq!(parse_terminate_request(v), Some((0xC, 0x09)));
        assert_eq!(parse_terminate_request(0x101), None);
        // The two reasons the kernel's early detection uses.
        let v = terminate_request(TerminateReason::Kms(KmsReason::SnpFeatureUnsupported));
        assert_eq!(v, 0x0C_C100);
        let v = terminate_request(TerminateReason::Kms(KmsReason::SnpNotActive));
        assert_eq!(parse_terminate_request(v), Some((0xC, 0x01)));
    }
}
