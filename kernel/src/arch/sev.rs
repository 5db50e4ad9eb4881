//! The SEV-ES/SNP instructions the kernel executes itself: `VMGEXIT` (`rep vmmcall`), the GHCB
//! MSR accesses that go with it, and `PVALIDATE` (AMD64 APM vol. 2 §15.35.5 "VMGEXIT",
//! §15.35.8 GHCB MSR, vol. 3 `PVALIDATE`; AMD 56421 §2.3.1). Used only after
//! [`crate::platform::detect_hardware`] has seen SEV-ES or SNP active in `SEV_STATUS`; on any
//! other CPU `rep vmmcall` is `vmmcall` and raises #UD.
//!
//! This module is the seam of the loopback-GHCB test build (`loopback-ghcb` feature): there,
//! and only there, [`vmgexit`], [`pvalidate`] and the GHCB MSR accessors call
//! the loopback stub's (`src/loopback.rs`) instead of the instructions (TCG has neither the instructions
//! nor the GHCB MSR). Everything above this module — `sev-guest`'s `GhcbSession`, the
//! kernel's `Vmgexit` implementation, the shared pool, the port I/O and MSR paths — is the
//! same code in both builds.

#[cfg(not(feature = "loopback-ghcb"))]
use core::arch::asm;

/// Writes the GHCB MSR.
///
/// # Safety
/// SEV-ES or SNP must be active (the MSR exists).
#[cfg(not(feature = "loopback-ghcb"))]
pub unsafe fn ghcb_msr_write(value: u64) {
    // SAFETY: caller contract: the GHCB MSR exists; writing it never raises #VC and changes
    // no memory.
    unsafe { super::wrmsr_instruction(sev_guest::msr::MSR_GHCB, value) }
}

/// Reads the GHCB MSR.
///
/// # Safety
/// SEV-ES or SNP must be active (the MSR exists).
#[cfg(not(feature = "loopback-ghcb"))]
pub unsafe fn ghcb_msr_read() -> u64 {
    // SAFETY: caller contract: the GHCB MSR exists; reading it never raises #VC.
    unsafe { super::rdmsr_instruction(sev_guest::msr::MSR_GHCB) }
}

/// `VMGEXIT`: hands the GHCB MSR (and, for a GHCB exit, the shared GHCB page) to the
/// hypervisor and returns when it resumes the guest.
///
/// # Safety
/// SEV-ES or SNP must be active. For a GHCB exit, the GHCB MSR holds the registered GHCB's
/// GPA and the page is shared: the hypervisor may write it (and only it, plus the pages the
/// request names, which the caller has made shared).
#[cfg(not(feature = "loopback-ghcb"))]
pub unsafe fn vmgexit() {
    // SAFETY: caller contract: `rep vmmcall` is VMGEXIT; no `nomem`, so the compiler treats
    // it as reading and writing memory (the shared GHCB page).
    unsafe { asm!("rep vmmcall", options(nostack)) }
}

/// `PVALIDATE` of the page at virtual address `va` (4 KiB when `large` is false): returns the
/// instruction's `EAX` and rFLAGS.CF ("not updated").
///
/// # Safety
/// SNP must be active, `va` identity-mapped, and the caller must own the page: validating
/// or rescinding it changes whether the kernel may use it as private memory.
#[cfg(not(feature = "loopback-ghcb"))]
pub unsafe fn pvalidate(va: u64, large: bool, validate: bool) -> (u32, bool) {
    let rax: u64;
    let cf: u8;
    // SAFETY: caller contract. F2 0F 01 FF is PVALIDATE (APM vol. 3): RAX = address,
    // ECX = page size, EDX = validate; returns EAX and CF. It touches no memory contents.
    unsafe {
        asm!(
            ".byte 0xf2, 0x0f, 0x01, 0xff",
            "setc {cf}",
            cf = out(reg_byte) cf,
            inlateout("rax") va => rax,
            in("ecx") u32::from(large),
            in("edx") u32::from(validate),
            options(nostack, nomem),
        )
    };
    (rax as u32, cf != 0)
}

#[cfg(feature = "loopback-ghcb")]
pub use crate::loopback::{ghcb_msr_read, ghcb_msr_write, pvalidate, vmgexit};

/// Writes `request` to the GHCB MSR and executes VMGEXIT (the GHCB MSR protocol,
/// 56421 §2.3.1). The response, when the request has one, is left in the GHCB MSR.
///
/// # Safety
/// SEV-ES or SNP must be active (`SEV_STATUS` bit 1 or 2): the GHCB MSR exists and VMGEXIT
/// is defined. The request must not make memory the kernel uses private/shared behind its
/// back (page-state changes are the caller's responsibility).
pub unsafe fn msr_protocol_exit(request: u64) -> u64 {
    // SAFETY: caller contract: SEV-ES/SNP active, so the GHCB MSR exists and VMGEXIT hands
    // it to the hypervisor and returns (or never returns, for a termination request). The
    // MSR protocol touches no memory of ours.
    unsafe {
        ghcb_msr_write(request);
        vmgexit();
        ghcb_msr_read()
    }
}
