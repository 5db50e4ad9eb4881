//! The crate's error type.

use core::fmt;

use crate::info::PolicyError;
use crate::quote::QuoteBufferError;
use crate::tdcall::Status;
use crate::ve::TerminateReason;
use crate::vmcall::VmcallStatus;

/// Everything that can go wrong on the TDX guest side. The kernel stops the boot (or the TD)
/// on any of them except where a function documents a recoverable case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A TDCALL leaf completed with an unexpected status.
    Tdcall {
        /// The leaf called.
        leaf: u64,
        /// Its completion status.
        status: Status,
    },
    /// A TDG.VP.VMCALL sub-function returned an unexpected status in R10.
    Vmcall {
        /// The sub-function (R11 on entry).
        subfn: u64,
        /// The TDVMCALL status.
        status: VmcallStatus,
    },
    /// TDG.VP.VEINFO.GET found no valid #VE information (it was already read, or no #VE).
    NoVeInfo,
    /// The TD's configuration is refused by the policy.
    Policy(PolicyError),
    /// A #VE the kernel cannot or must not handle.
    Ve(TerminateReason),
    /// A GPA or length that is not aligned as the call requires.
    Misaligned {
        /// The address or length.
        value: u64,
        /// The alignment required.
        align: u64,
    },
    /// A range that is empty, wraps, or reaches the shared bit.
    BadRange {
        /// Start GPA.
        start: u64,
        /// Length.
        len: u64,
    },
    /// MapGPA returned RETRY with a resume address outside the remaining range.
    MapGpaBadResume {
        /// The address the host returned in R11.
        resume: u64,
    },
    /// MapGPA returned RETRY without progress too many times at this GPA.
    MapGpaStalled {
        /// Where it stalled.
        gpa: u64,
    },
    /// A page made private again was already accepted: the host did not remove it when it was
    /// shared, so the page state is not the one this guest asked for.
    AlreadyAccepted {
        /// The page.
        gpa: u64,
    },
    /// An RTMR index other than 0..=3.
    RtmrIndex(u64),
    /// An I/O or MMIO access size the exit does not allow.
    AccessSize(u64),
    /// The GetQuote buffer is malformed or reports a failure.
    QuoteBuffer(QuoteBufferError),
}

impl From<PolicyError> for Error {
    fn from(e: PolicyError) -> Self {
        Self::Policy(e)
    }
}

impl From<QuoteBufferError> for Error {
    fn from(e: QuoteBufferError) -> Self {
        Self::QuoteBuffer(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tdcall { leaf, status } => {
                write!(
                    f,
                    "TDCALL leaf {leaf} failed with status {:#018x}",
                    status.0
                )
            }
            Self::Vmcall { subfn, status } => {
                write!(f, "TDVMCALL {subfn:#x} failed: {status:?}")
            }
            Self::NoVeInfo => f.write_str("no valid #VE information"),
            Self::Policy(e) => write!(f, "TD refused: {e}"),
            Self::Ve(r) => write!(f, "unhandled #VE: {r:?}"),
            Self::Misaligned { value, align } => {
                write!(f, "{value:#x} is not aligned to {align:#x}")
            }
            Self::BadRange { start, len } => write!(f, "bad GPA range {start:#x}+{len:#x}"),
            Self::MapGpaBadResume { resume } => {
                write!(f, "MapGPA resume address {resume:#x} is outside the range")
            }
            Self::MapGpaStalled { gpa } => write!(f, "MapGPA makes no progress at {gpa:#x}"),
            Self::AlreadyAccepted { gpa } => write!(f, "page {gpa:#x} was already accepted"),
            Self::RtmrIndex(i) => write!(f, "RTMR index {i} is not 0..=3"),
            Self::AccessSize(s) => write!(f, "access size {s} is not allowed"),
            Self::QuoteBuffer(e) => write!(f, "GetQuote: {e}"),
        }
    }
}

impl core::error::Error for Error {}
