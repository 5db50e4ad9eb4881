//! Intel TDX detection. The backend (TDCALL/TDVMCALL, MapGPA for shared DMA pages, TDREPORT
//! and quotes) is a later issue.
//!
//! Detection per the Intel TDX Guest-Hypervisor Communication Interface spec, 2.4.1: CPUID
//! leaf 0x21, sub-leaf 0 returns the vendor string "IntelTDX    " in EBX, EDX, ECX.

use crate::arch::cpuid;

/// Whether we run inside a TD.
pub fn detect() -> bool {
    if cpuid(0, 0).eax < 0x21 {
        return false;
    }
    let r = cpuid(0x21, 0);
    let mut id = [0u8; 12];
    id[..4].copy_from_slice(&r.ebx.to_le_bytes());
    id[4..8].copy_from_slice(&r.edx.to_le_bytes());
    id[8..].copy_from_slice(&r.ecx.to_le_bytes());
    &id == b"IntelTDX    "
}
