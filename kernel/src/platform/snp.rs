//! AMD SEV detection and the GHCB MSR protocol termination request.
//!
//! Detection follows AMD APM vol. 2, 15.34.10 "SEV_STATUS MSR": read MSR 0xC001_0131 only when
//! CPUID Fn8000_001F EAX bit 1 (SEV) says the MSR exists; bit 0 = SEV, bit 1 = SEV-ES,
//! bit 2 = SNP active. It runs before the kernel installs its own IDT
//! ([`crate::boot::early_platform`]): under SEV-ES/SNP the `cpuid` raises #VC, which the
//! firmware's still-live handler answers (from the SNP CPUID page); the `SEV_STATUS` read is
//! never intercepted.
//!
//! A configuration the kernel refuses under SEV-ES/SNP ends with the GHCB MSR protocol
//! termination request (AMD 56421 §2.3.1, `0x100`, reason set and code from
//! `sev_guest::msr`), never with port I/O: after the firmware's handlers are gone, `out`
//! would raise a #VC nobody can answer.

use sev_guest::msr::{self, MSR_SEV_STATUS, SEV_STATUS_SEV, SEV_STATUS_SEV_ES, SEV_STATUS_SNP};

use crate::arch::{self, cpuid, rdmsr_instruction};

/// Proof that SEV-ES or SNP is active, so the GHCB MSR and VMGEXIT exist. Only [`detect`]
/// makes one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GhcbMsr(());

/// What the SEV status says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SevState {
    /// Not an SEV guest.
    Absent,
    /// SEV without SEV-ES (no GHCB; port I/O is not intercepted).
    SevOnly,
    /// SEV-ES without SNP.
    SevEs(GhcbMsr),
    /// SEV-SNP is active (`SEV_STATUS` is kept for the console).
    Snp {
        /// The GHCB MSR protocol is available.
        ghcb: GhcbMsr,
        /// The whole `SEV_STATUS` value.
        status: u64,
    },
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
    // The instruction, never an MSR exit: the hypervisor must not answer this one.
    let status = unsafe { rdmsr_instruction(MSR_SEV_STATUS) };
    if status & SEV_STATUS_SNP != 0 {
        SevState::Snp {
            ghcb: GhcbMsr(()),
            status,
        }
    } else if status & SEV_STATUS_SEV_ES != 0 {
        SevState::SevEs(GhcbMsr(()))
    } else if status & SEV_STATUS_SEV != 0 {
        SevState::SevOnly
    } else {
        SevState::Absent
    }
}

/// Asks the hypervisor to terminate the guest with `reason` (GHCB MSR protocol `0x100`). A
/// hypervisor that ignores the request gets a guest halted forever with interrupts masked.
pub fn terminate(_proof: GhcbMsr, reason: msr::TerminateReason) -> ! {
    arch::disable_interrupts();
    // SAFETY: `GhcbMsr` exists only when SEV_STATUS says SEV-ES/SNP is active; a termination
    // request changes no page state.
    unsafe { arch::sev::msr_protocol_exit(msr::terminate_request(reason)) };
    arch::halt_forever()
}
