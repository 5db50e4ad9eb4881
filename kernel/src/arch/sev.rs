//! The SEV-ES/SNP instructions the kernel executes itself: `VMGEXIT` (`rep vmmcall`) and the
//! GHCB MSR write that precedes it (AMD64 APM vol. 2 §15.35.5 "VMGEXIT", §15.35.8 GHCB MSR;
//! AMD 56421 §2.3.1). Used only after [`crate::platform::detect_hardware`] has seen SEV-ES
//! or SNP active in `SEV_STATUS`; on any other CPU `rep vmmcall` is `vmmcall` and raises #UD.

use core::arch::asm;

use super::wrmsr;

/// `SEV_ES_GHCB`, the GHCB MSR.
pub const MSR_GHCB: u32 = sev_guest::msr::MSR_GHCB;

/// Writes `request` to the GHCB MSR and executes VMGEXIT (the GHCB MSR protocol,
/// 56421 §2.3.1). The response, when the request has one, is left in the GHCB MSR.
///
/// # Safety
/// SEV-ES or SNP must be active (`SEV_STATUS` bit 1 or 2): the GHCB MSR exists and VMGEXIT
/// is defined. The request must not make memory the kernel uses private/shared behind its
/// back (page-state changes are the caller's responsibility).
pub unsafe fn msr_protocol_exit(request: u64) {
    // SAFETY: caller contract: SEV-ES/SNP active, so the GHCB MSR exists (writes to it never
    // raise #VC) and `rep vmmcall` is VMGEXIT, which hands the MSR to the hypervisor and
    // returns (or never returns, for a termination request). It touches no memory of ours.
    unsafe {
        wrmsr(MSR_GHCB, request);
        asm!("rep vmmcall", options(nostack));
    }
}
