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

use core::fmt;

use sev_guest::ccblob::{CcBlob, CcBlobError};
use sev_guest::cpuid::{Cpuid, CpuidError, CpuidResult};
use sev_guest::msr::{
    self, KmsReason, MSR_SEV_STATUS, SEV_STATUS_SEV, SEV_STATUS_SEV_ES, SEV_STATUS_SNP,
    TerminateReason,
};
use sev_guest::pte::{MaskError, PteRule};

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

/// The SNP CPUID page, once installed: the only CPUID source from then on.
static CPUID_PAGE: spin::Once<Cpuid> = spin::Once::new();

/// XCR0 the CPUID page is looked up with (leaf 0xD sub-leaves 0/1): this kernel never sets
/// CR4.OSXSAVE, so XCR0 keeps its reset value, x87 only.
const XCR0: u64 = 1;

/// Why the CPUID page could not be installed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuidPageError {
    /// No CC blob.
    NoCcBlob,
    /// The CC blob is malformed.
    CcBlob(CcBlobError),
    /// The CPUID page is malformed or lacks leaf 0x8000_001F.
    Page(CpuidError),
    /// The page's C-bit (CPUID 0x8000_001F EBX\[5:0\]) differs from the hypervisor's (SEV
    /// information, GHCB MSR protocol).
    CbitMismatch {
        /// From the CPUID page.
        page: u8,
        /// From the hypervisor.
        hypervisor: u8,
    },
    /// Installed twice.
    Twice,
    /// The C-bit was checked before a CPUID page was installed.
    NotInstalled,
}

impl CpuidPageError {
    /// The termination reason (set 0xC).
    pub fn terminate_reason(&self) -> TerminateReason {
        TerminateReason::Kms(match self {
            Self::CbitMismatch { .. } => KmsReason::CbitMismatch,
            _ => KmsReason::CpuidPage,
        })
    }
}

impl fmt::Display for CpuidPageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoCcBlob => f.write_str("SNP CPUID page: no Confidential Computing blob"),
            Self::CcBlob(e) => write!(f, "SNP CPUID page: {e}"),
            Self::Page(e) => write!(f, "SNP CPUID page: {e}"),
            Self::CbitMismatch { page, hypervisor } => write!(
                f,
                "SNP CPUID page: C-bit {page} differs from the hypervisor's {hypervisor}"
            ),
            Self::Twice => f.write_str("SNP CPUID page installed twice"),
            Self::NotInstalled => f.write_str("SNP CPUID page not installed"),
        }
    }
}

/// Copies the CPUID page the CC blob at `cc_blob_gpa` names (AMD 56860 §8.17.2: the page the
/// PSP checked at launch) into kernel memory and makes it the only CPUID source
/// ([`crate::arch::cpuid`]). Runs before the page tables are built, so their encryption mask
/// comes from this page's C-bit ([`page_rule`]); [`check_cbit`] compares it with the
/// hypervisor's once the GHCB session exists. Returns the C-bit.
pub fn install_cpuid_page(cc_blob_gpa: Option<u64>) -> Result<u8, CpuidPageError> {
    if CPUID_PAGE.is_completed() {
        return Err(CpuidPageError::Twice);
    }
    let gpa = cc_blob_gpa.ok_or(CpuidPageError::NoCcBlob)?;
    let mut raw = [0u8; 40];
    // SAFETY: the CC blob's address comes from the firmware's configuration table (the
    // loopback stub's in that build): identity-mapped RAM holding the 40-byte layout.
    unsafe { core::ptr::copy_nonoverlapping(gpa as *const u8, raw.as_mut_ptr(), raw.len()) };
    let blob = CcBlob::parse(&raw).map_err(CpuidPageError::CcBlob)?;
    let mut page = alloc::vec![0u8; 4096];
    // SAFETY: `CcBlob::parse` checked the CPUID page is non-zero, page-aligned and 4 KiB;
    // identity-mapped RAM the firmware reserved for it (validated private on SNP).
    unsafe { core::ptr::copy_nonoverlapping(blob.cpuid_gpa as *const u8, page.as_mut_ptr(), 4096) };
    let cpuid = Cpuid::parse(&page).map_err(CpuidPageError::Page)?;
    let cbit = cpuid.cbit().map_err(CpuidPageError::Page)?;
    let entries = cpuid.entries().len();
    CPUID_PAGE.call_once(|| cpuid);
    log::info!("snp: CPUID from the CPUID page ({entries} entries) from now on, C-bit {cbit}");
    Ok(cbit)
}

/// Checks the installed CPUID page's C-bit against the hypervisor's `hv_cbit` (SEV
/// information, GHCB MSR protocol): a mismatch ends the guest (reason 0x0B).
pub fn check_cbit(hv_cbit: u8) -> Result<u8, CpuidPageError> {
    let page = CPUID_PAGE.get().ok_or(CpuidPageError::NotInstalled)?;
    let cbit = page.cbit().map_err(CpuidPageError::Page)?;
    if cbit != hv_cbit {
        return Err(CpuidPageError::CbitMismatch {
            page: cbit,
            hypervisor: hv_cbit,
        });
    }
    Ok(cbit)
}

/// The page-attribute rule on SEV (`sev_guest::pte::PteRule::for_snp`): the CPUID page's
/// C-bit when `SEV_STATUS` (as detected at boot) says memory encryption is active, else none
/// (TCG, the loopback-GHCB build included).
pub fn page_rule() -> Result<PteRule, MaskError> {
    let status = match super::hardware() {
        Some(super::Hardware::Snp { status, .. }) => status,
        _ => 0,
    };
    let cbit = CPUID_PAGE.get().and_then(|c| c.cbit().ok());
    PteRule::for_snp(status, cbit)
}

/// CPUID from the installed page; `None` when no page is installed.
pub fn page_cpuid(leaf: u32, subleaf: u32) -> Option<Result<CpuidResult, CpuidError>> {
    Some(CPUID_PAGE.get()?.get(leaf, subleaf, XCR0, 0))
}

/// A CPUID leaf the page does not hold: never asked of the hypervisor; the guest ends
/// (reason set 0xC code 0x06) after saying which.
pub fn cpuid_page_fatal(e: CpuidError) -> ! {
    crate::console::emergency(format_args!("ckms: boot stopped: SNP CPUID page: {e}\n"));
    super::ghcb::terminate(TerminateReason::Kms(KmsReason::CpuidPage))
}
