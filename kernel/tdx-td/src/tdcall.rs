//! The TDCALL instruction's register interface: leaf numbers, completion status, and the
//! [`Tdcall`] trait the kernel implements.
//!
//! TDX Module ABI spec (348551) §"TDCALL Instruction Leaf Numbers": RAX holds the leaf on
//! entry and the completion status on return; inputs and outputs are in RCX, RDX, R8–R15 as
//! each leaf's table says.

/// TDG.VP.VMCALL: call the host VMM (GHCI §2.4.1; sub-function in R11, see [`crate::vmcall`]).
pub const TDG_VP_VMCALL: u64 = 0;
/// TDG.VP.INFO: TD execution environment (GPAW, ATTRIBUTES, vCPU counts).
pub const TDG_VP_INFO: u64 = 1;
/// TDG.MR.RTMR.EXTEND: extend an RTMR with a SHA-384 digest held in memory.
pub const TDG_MR_RTMR_EXTEND: u64 = 2;
/// TDG.VP.VEINFO.GET: the information of the last #VE (valid once).
pub const TDG_VP_VEINFO_GET: u64 = 3;
/// TDG.MR.REPORT: write a TDREPORT_STRUCT for a 64-byte REPORTDATA.
pub const TDG_MR_REPORT: u64 = 4;
/// TDG.MEM.PAGE.ACCEPT: accept a pending private page.
pub const TDG_MEM_PAGE_ACCEPT: u64 = 6;

/// The general-purpose registers a TDCALL reads and writes. Registers a leaf does not use are
/// passed as 0 (the ABI requires reserved inputs to be zero, and a TDVMCALL must not leak
/// guest state to the host through registers it exposes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Regs {
    /// Leaf on entry, completion status on return.
    pub rax: u64,
    /// RCX.
    pub rcx: u64,
    /// RDX.
    pub rdx: u64,
    /// R8.
    pub r8: u64,
    /// R9.
    pub r9: u64,
    /// R10.
    pub r10: u64,
    /// R11.
    pub r11: u64,
    /// R12.
    pub r12: u64,
    /// R13.
    pub r13: u64,
    /// R14.
    pub r14: u64,
    /// R15.
    pub r15: u64,
}

impl Regs {
    /// Registers for `leaf`, every other input zero.
    pub fn leaf(leaf: u64) -> Self {
        Self {
            rax: leaf,
            ..Self::default()
        }
    }
}

/// Executes TDCALL. Implementations: the kernel (`tdcall` through `asm!`, loading every field
/// of [`Regs`] and storing them all back), the loopback test build (a stub that services the
/// call on QEMU's devices), and the fake TDX module of this crate's tests.
///
/// The implementation does not interpret anything: it must return the registers exactly as
/// the TDX module left them. Every decision is made by this crate from the returned values.
pub trait Tdcall {
    /// Runs TDCALL with `regs` as input and overwrites `regs` with the output.
    fn tdcall(&mut self, regs: &mut Regs);
}

/// TDX module completion status (RAX after TDCALL), ABI spec §"Function Completion Status
/// Codes": bit 63 = error, bit 62 = non-recoverable; bits 63:32 name the status class, bits
/// 31:0 carry detail (usually the operand id), so statuses are compared on the upper half.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status(pub u64);

/// Upper-half mask of a completion status.
pub const STATUS_CLASS_MASK: u64 = 0xFFFF_FFFF_0000_0000;
/// TDX_SUCCESS.
pub const TDX_SUCCESS: u64 = 0;
/// TDX_OPERAND_INVALID.
pub const TDX_OPERAND_INVALID: u64 = 0xC000_0100_0000_0000;
/// TDX_OPERAND_BUSY (recoverable: retry).
pub const TDX_OPERAND_BUSY: u64 = 0x8000_0200_0000_0000;
/// TDX_NO_VALID_VE_INFO: TDG.VP.VEINFO.GET with no unread #VE information.
pub const TDX_NO_VALID_VE_INFO: u64 = 0xC000_0704_0000_0000;
/// TDX_EPT_WALK_FAILED: no Secure-EPT mapping for the GPA (e.g. accepting a page the host never
/// added).
pub const TDX_EPT_WALK_FAILED: u64 = 0xC000_0B00_0000_0000;
/// TDX_PAGE_ALREADY_ACCEPTED (a warning: bit 63 clear).
pub const TDX_PAGE_ALREADY_ACCEPTED: u64 = 0x0000_0B0A_0000_0000;
/// TDX_PAGE_SIZE_MISMATCH: accept at a level the Secure-EPT does not map the page at.
pub const TDX_PAGE_SIZE_MISMATCH: u64 = 0xC000_0B0B_0000_0000;

impl Status {
    /// The status class (upper 32 bits; detail bits cleared).
    pub fn class(self) -> u64 {
        self.0 & STATUS_CLASS_MASK
    }
    /// TDX_SUCCESS exactly.
    pub fn is_success(self) -> bool {
        self.0 == TDX_SUCCESS
    }
    /// Bit 63: the call failed.
    pub fn is_error(self) -> bool {
        self.0 >> 63 != 0
    }
}

/// Runs a TDCALL that must complete with TDX_SUCCESS.
pub(crate) fn call_ok<T: Tdcall + ?Sized>(t: &mut T, regs: &mut Regs) -> Result<(), crate::Error> {
    let leaf = regs.rax;
    t.tdcall(regs);
    let status = Status(regs.rax);
    if status.is_success() {
        Ok(())
    } else {
        Err(crate::Error::Tdcall { leaf, status })
    }
}
