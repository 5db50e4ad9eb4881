//! Intel TDX guest side, without hardware access: every encoding and rule the KMS kernel needs
//! to run as a Trust Domain, behind one small trait ([`Tdcall`]) that the kernel implements
//! with the real `TDCALL` instruction, a loopback build with a test stub, and this crate's
//! tests with a fake TDX module.
//!
//! Specifications (cited by section beside each item):
//! - Intel TDX Module v1.5 ABI Specification (348551), "TDCALL leaves" (§5.4 in rev 004), the
//!   completion status codes and the `ATTRIBUTES` table.
//! - Intel TDX Guest-Hypervisor Communication Interface (GHCI) 1.5 (348552), §2.4 (TDG.VP.VMCALL
//!   register convention), §3 (the TDVMCALL sub-functions, status codes, the GetQuote buffer).
//! - Intel SDM vol. 3C, Appendix C (basic VM-exit reasons) and Table 28-5 (I/O exit
//!   qualification), which the #VE information reuses (TDX Module ABI, TDG.VP.VEINFO.GET).
//!
//! Modules, in dependency order:
//! - [`tdcall`]: registers, leaf numbers, completion status, the [`Tdcall`] trait.
//! - [`ccel`]: the ACPI CCEL table (where the firmware's CC event log lies), from the RSDP.
//! - [`info`]: TDG.VP.INFO (GPAW → shared bit, TD attributes) and the TD policy.
//! - [`vmcall`]: TDG.VP.VMCALL: status codes, the instruction exits (I/O, CPUID, MSR, HLT,
//!   MMIO), MapGPA with its retry rule, GetQuote, ReportFatalError.
//! - [`ve`]: TDG.VP.VEINFO.GET decoding, the #VE dispatch decision and the handler body.
//! - [`mem`]: TDG.MEM.PAGE.ACCEPT and the shared ⇄ private conversions (MapGPA + accept).
//! - [`mr`]: TDG.MR.REPORT and TDG.MR.RTMR.EXTEND.
//! - The shared bit (GPAW − 1) in page-table entries is `sev_guest::pte::PteRule::tdx`: one
//!   page-attribute rule for both platforms (SEV's C-bit and TDX's shared bit), host-tested there.
//! - [`quote`]: the GetQuote shared-buffer header (parse/emit, every status code).
//!
//! The crate holds no state and touches no memory: guest physical addresses are numbers the
//! caller computes (the kernel identity-maps RAM, so a buffer's address is its GPA) and the
//! [`Tdcall`] implementation executes the call. It does not decode x86 instructions (the MMIO
//! #VE case returns the GPA for the kernel's decoder, shared with the SNP #VC path).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod ccel;
pub mod info;
pub mod mem;
pub mod mr;
pub mod quote;
pub mod tdcall;
pub mod ve;
pub mod vmcall;

#[cfg(test)]
mod fake;

mod error;

pub use error::Error;
pub use tdcall::{Regs, Tdcall};

/// Size of a 4 KiB page.
pub const PAGE_SIZE: u64 = 4096;
