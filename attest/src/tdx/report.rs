//! `TDREPORT_STRUCT`: what TDG.MR.REPORT writes for a TD (1024 bytes, MAC-protected, local to
//! the platform; the quoting enclave turns it into a quote).
//!
//! Layout from Intel "TDX Module ABI Specification" (348551-001, §"TDREPORT_STRUCT"):
//! `REPORTMACSTRUCT` (256 bytes), `TEE_TCB_INFO` (239 bytes), 17 reserved bytes, `TDINFO_STRUCT`
//! (512 bytes).

use core::mem::{offset_of, size_of};

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Size of a TDREPORT.
pub const TDREPORT_SIZE: usize = 1024;

/// `REPORTMACSTRUCT`.
#[repr(C)]
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct ReportMac {
    /// REPORTTYPE: type (0x81 = TDX), subtype, version, reserved.
    pub report_type: [u8; 4],
    _reserved_0: [u8; 12],
    /// CPU SVN.
    pub cpu_svn: [u8; 16],
    /// SHA-384 of `TEE_TCB_INFO`.
    pub tee_tcb_info_hash: [u8; 48],
    /// SHA-384 of `TDINFO_STRUCT`.
    pub tee_info_hash: [u8; 48],
    /// REPORTDATA supplied by the TD.
    pub report_data: [u8; 64],
    _reserved_1: [u8; 32],
    /// MAC over the structure (checked by the platform only).
    pub mac: [u8; 32],
}

/// `TEE_TCB_INFO`.
#[repr(C)]
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct TeeTcbInfo {
    /// Which fields are valid.
    pub valid: [u8; 8],
    /// TEE_TCB_SVN of the TDX module.
    pub tee_tcb_svn: [u8; 16],
    /// Measurement of the TDX module.
    pub mr_seam: [u8; 48],
    /// Signer of the TDX module.
    pub mr_signer_seam: [u8; 48],
    /// SEAM attributes.
    pub attributes: [u8; 8],
    /// TEE_TCB_SVN2 (TDX 1.5).
    pub tee_tcb_svn2: [u8; 16],
    _reserved_0: [u8; 95],
}

/// `TDINFO_STRUCT`.
#[repr(C)]
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct TdInfo {
    /// TD attributes (bit 0: DEBUG).
    pub attributes: [u8; 8],
    /// XFAM.
    pub xfam: [u8; 8],
    /// MRTD.
    pub mr_td: [u8; 48],
    /// MRCONFIGID.
    pub mr_config_id: [u8; 48],
    /// MROWNER.
    pub mr_owner: [u8; 48],
    /// MROWNERCONFIG.
    pub mr_owner_config: [u8; 48],
    /// RTMR0..3.
    pub rtmr: [[u8; 48]; 4],
    /// SERVTD_HASH (TDX 1.5).
    pub servtd_hash: [u8; 48],
    _reserved_0: [u8; 64],
}

/// `TDREPORT_STRUCT`.
#[repr(C)]
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct TdReport {
    /// `REPORTMACSTRUCT`.
    pub mac: ReportMac,
    /// `TEE_TCB_INFO`.
    pub tee_tcb_info: TeeTcbInfo,
    _reserved_0: [u8; 17],
    /// `TDINFO_STRUCT`.
    pub td_info: TdInfo,
}

const _: () = {
    assert!(size_of::<ReportMac>() == 256);
    assert!(offset_of!(ReportMac, report_data) == 128);
    assert!(offset_of!(ReportMac, mac) == 224);
    assert!(size_of::<TeeTcbInfo>() == 239);
    assert!(offset_of!(TeeTcbInfo, mr_seam) == 24);
    assert!(size_of::<TdInfo>() == 512);
    assert!(offset_of!(TdInfo, mr_td) == 16);
    assert!(offset_of!(TdInfo, rtmr) == 208);
    assert!(offset_of!(TdInfo, servtd_hash) == 400);
    assert!(size_of::<TdReport>() == TDREPORT_SIZE);
    assert!(offset_of!(TdReport, tee_tcb_info) == 256);
    assert!(offset_of!(TdReport, td_info) == 512);
};

impl TdReport {
    /// View 1024 bytes as a TDREPORT (`None` for any other length).
    pub fn parse(bytes: &[u8]) -> Option<&Self> {
        Self::ref_from_bytes(bytes).ok()
    }

    /// TD attribute DEBUG.
    pub fn debug(&self) -> bool {
        self.td_info.attributes[0] & 1 != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_offsets_in_bytes() {
        let mut b = [0u8; TDREPORT_SIZE];
        b[0] = 0x81;
        b[128] = 0xAA; // REPORTDATA[0]
        b[256 + 24] = 0xBB; // MRSEAM[0]
        b[512] = 1; // ATTRIBUTES: DEBUG
        b[512 + 16] = 0xCC; // MRTD[0]
        b[512 + 208 + 48] = 0xDD; // RTMR1[0]
        let r = TdReport::parse(&b).unwrap();
        assert_eq!(r.mac.report_type[0], 0x81);
        assert_eq!(r.mac.report_data[0], 0xAA);
        assert_eq!(r.tee_tcb_info.mr_seam[0], 0xBB);
        assert!(r.debug());
        assert_eq!(r.td_info.mr_td[0], 0xCC);
        assert_eq!(r.td_info.rtmr[1][0], 0xDD);
        assert_eq!(r.as_bytes(), &b[..]);
        assert!(TdReport::parse(&b[1..]).is_none());
    }
}
