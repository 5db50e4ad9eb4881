//! AMD SEV-SNP wire formats (AMD publication 56860, "SEV Secure Nested Paging Firmware ABI
//! Specification", revision 1.58).

pub mod guest_msg;
pub mod report;

pub use report::{
    AttestationReport, FirmwareVersion, Generation, GuestPolicy, ReportError, TcbVersion,
};
