//! AMD SEV-SNP detection. The backend itself (GHCB, guest requests over the GHCB MSR protocol,
//! PVALIDATE and page-state changes for shared DMA pages) is a later issue.
//!
//! Detection follows AMD APM vol. 2, 15.34.10 "SEV_STATUS MSR": read MSR 0xC001_0131 only when
//! CPUID Fn8000_001F EAX bit 1 (SEV) says the MSR exists; bit 0 = SEV, bit 1 = SEV-ES,
//! bit 2 = SNP active.

use crate::arch::{cpuid, rdmsr};

const MSR_SEV_STATUS: u32 = 0xc001_0131;

/// What the SEV status says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SevState {
    /// Not an SEV guest.
    Absent,
    /// SEV or SEV-ES without SNP.
    SevOnly,
    /// SEV-SNP is active.
    Snp,
}

/// Reads the SEV status when the CPU advertises SEV.
pub fn detect() -> SevState {
    if cpuid(0x8000_0000, 0).eax < 0x8000_001f {
        return SevState::Absent;
    }
    if cpuid(0x8000_001f, 0).eax & (1 << 1) == 0 {
        return SevState::Absent;
    }
    // SAFETY: CPUID Fn8000_001F EAX[1] says SEV is supported, so the SEV_STATUS MSR exists.
    let status = unsafe { rdmsr(MSR_SEV_STATUS) };
    if status & (1 << 2) != 0 {
        SevState::Snp
    } else if status & 0b11 != 0 {
        SevState::SevOnly
    } else {
        SevState::Absent
    }
}
