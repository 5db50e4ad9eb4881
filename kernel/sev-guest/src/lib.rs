//! The KMS kernel's SEV-SNP guest logic, host-tested: every encoding and rule of talking to an
//! SNP hypervisor and to the AMD secure processor, behind one small trait ([`Vmgexit`]) that
//! the kernel implements with the real instructions (`wrmsr`/`rdmsr` of the GHCB MSR, `rep
//! vmmcall`, `pvalidate`), a loopback harness implements under TCG, and the tests implement
//! with a fake hypervisor.
//!
//! Modules, in dependency order:
//! - [`msr`]: the GHCB MSR protocol (SEV information, hypervisor features, GHCB GPA
//!   registration, page-state change, termination with this project's reason codes).
//! - [`ghcb`]: the GHCB page layout and its valid bitmap.
//! - [`nae`]: non-automatic exits: exit codes, IOIO exit information, answer decoding.
//! - [`psc`]: the page-state-change descriptor, batching and partial-progress rules.
//! - [`cpuid`]: the SNP CPUID page and its lookup (never the hypervisor's CPUID).
//! - [`ccblob`]: the Confidential Computing blob (UEFI configuration table) and the secrets page.
//! - [`session`]: [`GhcbSession`], the exits built on the trait (I/O, MSR, MMIO, page-state
//!   change, guest request) with their answers checked.
//! - [`pte`]: the page-attribute rule of both platforms (`PteRule`): SEV's C-bit (set for
//!   private) and TDX's shared bit GPAW − 1 (set for shared), or none; and which parts of the
//!   identity map are RAM (private) or MMIO (shared).
//! - [`pool`]: the shared pool: the only memory ever made shared, with bounce-buffer access.
//! - [`greq`]: the guest-request driver over `attest::snp::guest_msg` (sequence numbers,
//!   BUSY, INVALID_LEN, VMPCK wipe).
//! - [`vc`]: the #VC safety net: decoding `in`/`out`/`rdmsr`/`wrmsr`/`cpuid` at `RIP`,
//!   emulating them on the saved registers, the nesting guard.
//!
//! No `unsafe`, no hardware access, no I/O: the kernel owns the instructions and the memory
//! mapping and passes them in through [`Vmgexit`]. Allocation (`alloc`) is used for the
//! guest-message buffers (as `attest` does) and the pool's page map.
//!
//! Specifications: AMD 56421 (SEV-ES Guest-Hypervisor Communication Block Standardization,
//! rev 2.03), AMD 56860 (SEV Secure Nested Paging Firmware ABI, rev 1.58), AMD64 APM vol. 2
//! (24593) §15.34–15.36, and EDK2/OVMF's `ConfidentialComputingSevSnpBlob` configuration
//! table. Each module names the section and table it follows.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod ccblob;
pub mod cpuid;
pub mod ghcb;
pub mod greq;
pub mod mmio;
pub mod msr;
pub mod nae;
pub mod pool;
pub mod psc;
pub mod pte;
pub mod session;
pub mod vc;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;

use core::fmt;

pub use ghcb::Ghcb;
pub use psc::PageSize;
pub use session::{EstablishError, GhcbSession};

/// The two SNP instructions and the shared memory, as the kernel provides them.
///
/// Implementations: the kernel (real instructions on identity-mapped memory), the loopback
/// harness under TCG (a stub that services each exit on QEMU's devices), and the tests' fake
/// hypervisor. Every value an implementation returns comes from the untrusted hypervisor and
/// is checked by the caller.
pub trait Vmgexit {
    /// GHCB MSR protocol: write `request` to the GHCB MSR, VMGEXIT, return the GHCB MSR.
    fn msr_protocol(&mut self, request: u64) -> u64;

    /// The guest-physical address of the (shared) GHCB page this implementation owns.
    fn ghcb_gpa(&self) -> u64;

    /// A GHCB exit: write the GHCB GPA to the GHCB MSR, copy `ghcb` into the shared GHCB page,
    /// VMGEXIT, then copy the shared page back into `ghcb`.
    fn exit(&mut self, ghcb: &mut Ghcb);

    /// PVALIDATE the page at `gpa` (validate or rescind). The kernel maps rFLAGS.CF = 1 ("not
    /// updated") to [`PvalidateError::NoUpdate`].
    fn pvalidate(&mut self, gpa: u64, size: PageSize, validate: bool)
    -> Result<(), PvalidateError>;

    /// Copy out of shared memory at `gpa` (mapped C=0). The kernel refuses any range outside
    /// its shared pool.
    fn read_shared(&mut self, gpa: u64, out: &mut [u8]) -> Result<(), SharedAccessError>;

    /// Copy into shared memory at `gpa` (mapped C=0).
    fn write_shared(&mut self, gpa: u64, data: &[u8]) -> Result<(), SharedAccessError>;

    /// Called before a guest request is resent after BUSY (`attempt` counts from 1): the
    /// kernel waits here. The default does not wait.
    fn busy_backoff(&mut self, attempt: u32) {
        let _ = attempt;
    }
}

/// PVALIDATE failures (APM vol. 3, `PVALIDATE`: `RAX` return codes, rFLAGS.CF).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PvalidateError {
    /// `FAIL_INPUT` (1): bad address or page size.
    FailInput,
    /// `FAIL_SIZEMISMATCH` (6): the RMP entry's page size differs.
    FailSizeMismatch,
    /// CF = 1: the page was already in the requested state (a double validation, which can
    /// mean the hypervisor remapped the page).
    NoUpdate,
    /// Any other return code.
    Unknown(u32),
}

impl fmt::Display for PvalidateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::FailInput => f.write_str("PVALIDATE: FAIL_INPUT"),
            Self::FailSizeMismatch => f.write_str("PVALIDATE: FAIL_SIZEMISMATCH"),
            Self::NoUpdate => f.write_str("PVALIDATE: page already in the requested state"),
            Self::Unknown(c) => write!(f, "PVALIDATE: return code {c}"),
        }
    }
}

impl core::error::Error for PvalidateError {}

/// A shared-memory access the implementation refuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SharedAccessError {
    /// The range is not (entirely) shared memory.
    NotShared {
        /// Start of the refused range.
        gpa: u64,
    },
}

impl fmt::Display for SharedAccessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotShared { gpa } => write!(f, "{gpa:#x} is not shared memory"),
        }
    }
}

impl core::error::Error for SharedAccessError {}

/// The crate's error: every leaf error, and the one mapping to a termination reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// GHCB MSR protocol.
    Msr(msr::MsrProtocolError),
    /// The hypervisor's answer to an exit.
    Hv(nae::HvError),
    /// Page-state change.
    Psc(psc::PscError),
    /// PVALIDATE.
    Pvalidate(PvalidateError),
    /// Shared-memory access.
    Shared(SharedAccessError),
    /// The shared pool.
    Pool(pool::PoolError),
    /// The caller passed an argument the operation cannot take (named).
    InvalidArgument(&'static str),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Msr(e) => e.fmt(f),
            Self::Hv(e) => e.fmt(f),
            Self::Psc(e) => e.fmt(f),
            Self::Pvalidate(e) => e.fmt(f),
            Self::Shared(e) => e.fmt(f),
            Self::Pool(e) => e.fmt(f),
            Self::InvalidArgument(w) => write!(f, "invalid argument: {w}"),
        }
    }
}

impl core::error::Error for Error {}

impl From<msr::MsrProtocolError> for Error {
    fn from(e: msr::MsrProtocolError) -> Self {
        Self::Msr(e)
    }
}
impl From<nae::HvError> for Error {
    fn from(e: nae::HvError) -> Self {
        Self::Hv(e)
    }
}
impl From<psc::PscError> for Error {
    fn from(e: psc::PscError) -> Self {
        Self::Psc(e)
    }
}
impl From<PvalidateError> for Error {
    fn from(e: PvalidateError) -> Self {
        Self::Pvalidate(e)
    }
}
impl From<SharedAccessError> for Error {
    fn from(e: SharedAccessError) -> Self {
        Self::Shared(e)
    }
}
impl From<pool::PoolError> for Error {
    fn from(e: pool::PoolError) -> Self {
        Self::Pool(e)
    }
}

impl Error {
    /// The termination reason the kernel reports when this error is fatal.
    pub fn terminate_reason(&self) -> msr::TerminateReason {
        use msr::{KmsReason as K, MsrProtocolError as M, TerminateReason as T};
        match self {
            Self::Msr(M::ProtocolVersion { .. }) => T::ProtocolVersion,
            Self::Msr(M::NoSnpFeature) => T::Kms(K::HvNoSnp),
            Self::Msr(M::GpaMismatch { .. }) => T::Kms(K::GhcbRegistration),
            Self::Msr(M::PscFailed(_)) | Self::Psc(_) => T::Kms(K::PageStateChange),
            Self::Msr(_) | Self::Hv(_) | Self::Shared(_) => T::Kms(K::HvProtocol),
            Self::Pvalidate(_) => T::Kms(K::Pvalidate),
            Self::Pool(_) | Self::InvalidArgument(_) => T::General,
        }
    }
}
