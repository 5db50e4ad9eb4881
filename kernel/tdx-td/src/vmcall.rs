//! TDG.VP.VMCALL (TDCALL leaf 0): requests to the host VMM (GHCI 1.5 §2.4.1 and §3).
//!
//! Register convention: RAX = 0, RCX = bitmap of the GPRs exposed to the VMM (bit n = GPR n;
//! this crate exposes R10–R15 only, [`EXPOSE_REGS`]), R10 = 0 (a GHCI-defined call, not a
//! vendor one), R11 = sub-function, R12–R15 = arguments. On return RAX is the TDCALL's own
//! completion status (non-zero means the call never reached the VMM), R10 the TDVMCALL status
//! ([`VmcallStatus`]) and R11 (or R12–R15) the outputs.
//!
//! Everything returned here comes from the untrusted host: the values are used as device data
//! only (an I/O read, an MMIO read, a CPUID leaf the TDX module lets the host choose).

use crate::tdcall::{Regs, Status, TDG_VP_VMCALL, Tdcall};
use crate::{Error, PAGE_SIZE};

/// GPRs exposed to the VMM: R10, R11, R12, R13, R14, R15 (GHCI §2.4.1, RCX bitmap).
pub const EXPOSE_REGS: u64 = 0xFC00;

/// Instruction.CPUID (GHCI §3.5; the VMX exit reason 10): R12 = EAX, R13 = ECX in; R12–R15 =
/// EAX, EBX, ECX, EDX out.
pub const VMCALL_CPUID: u64 = 10;
/// Instruction.HLT (GHCI §3.6; exit reason 12): R12 = "interrupts blocked" flag.
pub const VMCALL_HLT: u64 = 12;
/// Instruction.IO (GHCI §3.9; exit reason 30): R12 = size (1, 2, 4), R13 = direction (0 in,
/// 1 out), R14 = port, R15 = data out; R11 = data in.
pub const VMCALL_IO: u64 = 30;
/// Instruction.RDMSR (GHCI §3.10; exit reason 31): R12 = index; R11 = value.
pub const VMCALL_RDMSR: u64 = 31;
/// Instruction.WRMSR (GHCI §3.11; exit reason 32): R12 = index, R13 = value.
pub const VMCALL_WRMSR: u64 = 32;
/// #VE.RequestMMIO (GHCI §3.7; exit reason 48): R12 = size (1, 2, 4, 8), R13 = direction
/// (0 read, 1 write), R14 = GPA (shared), R15 = data out; R11 = data in.
pub const VMCALL_MMIO: u64 = 48;
/// GetTdVmCallInfo (GHCI §3.1).
pub const VMCALL_GET_INFO: u64 = 0x10000;
/// MapGPA (GHCI §3.2): R12 = start GPA (shared bit set: to shared; clear: to private),
/// R13 = size; on RETRY R11 = the GPA to resume from.
pub const VMCALL_MAP_GPA: u64 = 0x10001;
/// GetQuote (GHCI §3.3): R12 = shared GPA of the buffer, R13 = buffer size (4 KiB multiple).
pub const VMCALL_GET_QUOTE: u64 = 0x10002;
/// ReportFatalError (GHCI §3.4): R12 = error code, R13 = GPA of error data (0: none).
pub const VMCALL_REPORT_FATAL_ERROR: u64 = 0x10003;
/// SetupEventNotifyInterrupt (GHCI §3.5): R12 = vector.
pub const VMCALL_SETUP_EVENT_NOTIFY: u64 = 0x10004;

/// TDVMCALL statuses (R10 on return; GHCI Table "TDG.VP.VMCALL status codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmcallStatus {
    /// 0: TDG.VP.VMCALL_SUCCESS.
    Success,
    /// 1: TDG.VP.VMCALL_RETRY (MapGPA: R11 says where to resume).
    Retry,
    /// 0x8000_0000_0000_0000: TDG.VP.VMCALL_INVALID_OPERAND.
    InvalidOperand,
    /// 0x8000_0000_0000_0001: TDG.VP.VMCALL_GPA_INUSE (MapGPA).
    GpaInUse,
    /// 0x8000_0000_0000_0002: TDG.VP.VMCALL_ALIGN_ERROR.
    AlignError,
    /// Any other value (kept for the report).
    Unknown(u64),
}

impl VmcallStatus {
    /// Decode R10.
    pub fn from_u64(v: u64) -> Self {
        match v {
            0 => Self::Success,
            1 => Self::Retry,
            0x8000_0000_0000_0000 => Self::InvalidOperand,
            0x8000_0000_0000_0001 => Self::GpaInUse,
            0x8000_0000_0000_0002 => Self::AlignError,
            other => Self::Unknown(other),
        }
    }
    /// Encode for R10.
    pub fn to_u64(self) -> u64 {
        match self {
            Self::Success => 0,
            Self::Retry => 1,
            Self::InvalidOperand => 0x8000_0000_0000_0000,
            Self::GpaInUse => 0x8000_0000_0000_0001,
            Self::AlignError => 0x8000_0000_0000_0002,
            Self::Unknown(v) => v,
        }
    }
}

/// Registers for TDVMCALL `subfn` with arguments R12..R15.
pub fn vmcall_regs(subfn: u64, args: [u64; 4]) -> Regs {
    Regs {
        rax: TDG_VP_VMCALL,
        rcx: EXPOSE_REGS,
        r10: 0,
        r11: subfn,
        r12: args[0],
        r13: args[1],
        r14: args[2],
        r15: args[3],
        ..Regs::default()
    }
}

/// Runs a TDVMCALL; returns the output registers and the decoded status. A non-zero RAX (the
/// TDCALL itself failed: the TDX module refused the register bitmap) is an error.
pub fn vmcall_raw<T: Tdcall + ?Sized>(
    t: &mut T,
    subfn: u64,
    args: [u64; 4],
) -> Result<(Regs, VmcallStatus), Error> {
    let mut regs = vmcall_regs(subfn, args);
    t.tdcall(&mut regs);
    if regs.rax != 0 {
        return Err(Error::Tdcall {
            leaf: TDG_VP_VMCALL,
            status: Status(regs.rax),
        });
    }
    Ok((regs, VmcallStatus::from_u64(regs.r10)))
}

/// Runs a TDVMCALL that must succeed; returns the output registers.
pub fn vmcall<T: Tdcall + ?Sized>(t: &mut T, subfn: u64, args: [u64; 4]) -> Result<Regs, Error> {
    match vmcall_raw(t, subfn, args)? {
        (regs, VmcallStatus::Success) => Ok(regs),
        (_, status) => Err(Error::Vmcall { subfn, status }),
    }
}

fn io_size_mask(size: u8) -> Result<u64, Error> {
    match size {
        1 => Ok(0xFF),
        2 => Ok(0xFFFF),
        4 => Ok(0xFFFF_FFFF),
        other => Err(Error::AccessSize(u64::from(other))),
    }
}

/// Port input of `size` bytes (1, 2, 4); the result is masked to the size.
pub fn io_in<T: Tdcall + ?Sized>(t: &mut T, port: u16, size: u8) -> Result<u32, Error> {
    let mask = io_size_mask(size)?;
    let r = vmcall(t, VMCALL_IO, [u64::from(size), 0, u64::from(port), 0])?;
    Ok((r.r11 & mask) as u32)
}

/// Port output of `size` bytes (1, 2, 4); `value` is masked to the size.
pub fn io_out<T: Tdcall + ?Sized>(t: &mut T, port: u16, size: u8, value: u32) -> Result<(), Error> {
    let mask = io_size_mask(size)?;
    let data = u64::from(value) & mask;
    vmcall(t, VMCALL_IO, [u64::from(size), 1, u64::from(port), data]).map(|_| ())
}

/// CPUID leaf `eax`, sub-leaf `ecx` as the host answers it: `[eax, ebx, ecx, edx]`.
pub fn cpuid<T: Tdcall + ?Sized>(t: &mut T, eax: u32, ecx: u32) -> Result<[u32; 4], Error> {
    let r = vmcall(t, VMCALL_CPUID, [u64::from(eax), u64::from(ecx), 0, 0])?;
    Ok([r.r12 as u32, r.r13 as u32, r.r14 as u32, r.r15 as u32])
}

/// RDMSR through the host.
pub fn rdmsr<T: Tdcall + ?Sized>(t: &mut T, index: u32) -> Result<u64, Error> {
    vmcall(t, VMCALL_RDMSR, [u64::from(index), 0, 0, 0]).map(|r| r.r11)
}

/// WRMSR through the host.
pub fn wrmsr<T: Tdcall + ?Sized>(t: &mut T, index: u32, value: u64) -> Result<(), Error> {
    vmcall(t, VMCALL_WRMSR, [u64::from(index), value, 0, 0]).map(|_| ())
}

/// HLT through the host; `interrupts_blocked` = RFLAGS.IF was clear at the `hlt`.
pub fn hlt<T: Tdcall + ?Sized>(t: &mut T, interrupts_blocked: bool) -> Result<(), Error> {
    vmcall(t, VMCALL_HLT, [u64::from(interrupts_blocked), 0, 0, 0]).map(|_| ())
}

fn mmio_size_mask(size: u8) -> Result<u64, Error> {
    match size {
        1 | 2 | 4 => io_size_mask(size),
        8 => Ok(u64::MAX),
        other => Err(Error::AccessSize(u64::from(other))),
    }
}

/// MMIO read of `size` bytes (1, 2, 4, 8) at the shared GPA `gpa`.
pub fn mmio_read<T: Tdcall + ?Sized>(t: &mut T, gpa: u64, size: u8) -> Result<u64, Error> {
    let mask = mmio_size_mask(size)?;
    let r = vmcall(t, VMCALL_MMIO, [u64::from(size), 0, gpa, 0])?;
    Ok(r.r11 & mask)
}

/// MMIO write of `size` bytes (1, 2, 4, 8) at the shared GPA `gpa`.
pub fn mmio_write<T: Tdcall + ?Sized>(
    t: &mut T,
    gpa: u64,
    size: u8,
    value: u64,
) -> Result<(), Error> {
    let mask = mmio_size_mask(size)?;
    vmcall(t, VMCALL_MMIO, [u64::from(size), 1, gpa, value & mask]).map(|_| ())
}

/// ReportFatalError with an error code and no data page; the host is expected not to resume
/// the TD, so the caller halts afterwards whatever this returns.
pub fn report_fatal_error<T: Tdcall + ?Sized>(t: &mut T, code: u64) -> Result<(), Error> {
    vmcall(t, VMCALL_REPORT_FATAL_ERROR, [code, 0, 0, 0]).map(|_| ())
}

/// How often MapGPA may return RETRY without progress at the same GPA before the guest gives
/// up (the GHCI allows RETRY for a host that is busy; a host that never progresses must not
/// keep the guest spinning).
pub const MAP_GPA_MAX_STALLS: u32 = 3;

/// Checks a page-aligned, non-empty range below the shared bit.
pub(crate) fn check_range(start: u64, len: u64, shared_bit: u32) -> Result<u64, Error> {
    if !start.is_multiple_of(PAGE_SIZE) {
        return Err(Error::Misaligned {
            value: start,
            align: PAGE_SIZE,
        });
    }
    if !len.is_multiple_of(PAGE_SIZE) {
        return Err(Error::Misaligned {
            value: len,
            align: PAGE_SIZE,
        });
    }
    let end = start
        .checked_add(len)
        .ok_or(Error::BadRange { start, len })?;
    let limit = 1u64
        .checked_shl(shared_bit)
        .ok_or(Error::BadRange { start, len })?;
    if len == 0 || end > limit {
        return Err(Error::BadRange { start, len });
    }
    Ok(end)
}

/// MapGPA: converts `[start, start + len)` to shared (`shared = true`, the shared bit is set in
/// the GPA passed) or to private. GHCI §3.2: the host may stop part-way with RETRY and the GPA
/// to resume from in R11; that GPA must lie in the part not yet converted (a host that points
/// elsewhere is refused) and is where the next call starts. A RETRY without progress counts
/// against [`MAP_GPA_MAX_STALLS`]; progress resets the count.
///
/// Converting to private only asks the host to map private pages; they must then be accepted
/// ([`crate::mem::make_private`] does both).
pub fn map_gpa<T: Tdcall + ?Sized>(
    t: &mut T,
    start: u64,
    len: u64,
    shared: bool,
    shared_bit: u32,
) -> Result<(), Error> {
    let end = check_range(start, len, shared_bit)?;
    let tag = if shared { 1u64 << shared_bit } else { 0 };
    let mut cur = start;
    let mut stalls = 0;
    loop {
        let (regs, status) = vmcall_raw(t, VMCALL_MAP_GPA, [cur | tag, end - cur, 0, 0])?;
        match status {
            VmcallStatus::Success => return Ok(()),
            VmcallStatus::Retry => {
                let resume = regs.r11;
                // The host answers with the GPA in the form it was given (shared bit included).
                if resume & (1u64 << shared_bit) != tag {
                    return Err(Error::MapGpaBadResume { resume });
                }
                let resume_pa = resume & !tag;
                if resume_pa < cur || resume_pa >= end || resume_pa % PAGE_SIZE != 0 {
                    return Err(Error::MapGpaBadResume { resume });
                }
                if resume_pa == cur {
                    stalls += 1;
                    if stalls > MAP_GPA_MAX_STALLS {
                        return Err(Error::MapGpaStalled { gpa: cur });
                    }
                } else {
                    stalls = 0;
                    cur = resume_pa;
                }
            }
            status => {
                return Err(Error::Vmcall {
                    subfn: VMCALL_MAP_GPA,
                    status,
                });
            }
        }
    }
}

/// GetQuote: asks the host to turn the TDREPORT in the shared buffer at `shared_gpa` (with the
/// shared bit set, 4 KiB aligned, `len` a multiple of 4 KiB) into a quote. The call only
/// queues the request: the result arrives in the buffer's status field
/// ([`crate::quote::poll`]), which the guest polls (or waits for the event-notify interrupt).
pub fn get_quote<T: Tdcall + ?Sized>(
    t: &mut T,
    shared_gpa: u64,
    len: u64,
    shared_bit: u32,
) -> Result<(), Error> {
    let mask = 1u64 << shared_bit;
    if shared_gpa & mask == 0 {
        return Err(Error::BadRange {
            start: shared_gpa,
            len,
        });
    }
    check_range(shared_gpa & !mask, len, shared_bit)?;
    vmcall(t, VMCALL_GET_QUOTE, [shared_gpa, len, 0, 0]).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{FakeTdx, MapGpaScript};
    use crate::info::Attributes;

    const SB: u32 = 47;
    const SHARED: u64 = 1 << SB;

    fn td() -> FakeTdx {
        FakeTdx::new(48, Attributes::SEPT_VE_DISABLE)
    }

    #[test]
    fn status_codes_round_trip() {
        for v in [0, 1, 1 << 63, (1 << 63) | 1, (1 << 63) | 2, 0x1234] {
            assert_eq!(VmcallStatus::from_u64(v).to_u64(), v);
        }
        assert_eq!(
            VmcallStatus::from_u64(0x1234),
            VmcallStatus::Unknown(0x1234)
        );
    }

    #[test]
    fn register_convention() {
        let r = vmcall_regs(VMCALL_IO, [1, 0, 0x3F8, 0]);
        assert_eq!((r.rax, r.rcx, r.r10, r.r11), (0, 0xFC00, 0, 30));
        assert_eq!((r.r12, r.r13, r.r14, r.r15), (1, 0, 0x3F8, 0));
        // Nothing else leaks: registers the VMM does not read are zero.
        assert_eq!((r.rdx, r.r8, r.r9), (0, 0, 0));
    }

    #[test]
    fn instruction_exits() {
        let mut t = td();
        t.port_value = 0xDEAD_BEEF;
        assert_eq!(io_in(&mut t, 0x71, 1).unwrap(), 0xEF);
        assert_eq!(io_in(&mut t, 0x71, 2).unwrap(), 0xBEEF);
        assert_eq!(io_in(&mut t, 0x71, 4).unwrap(), 0xDEAD_BEEF);
        io_out(&mut t, 0x3F8, 1, 0x1234_5641).unwrap();
        assert_eq!(t.port_writes.last(), Some(&(0x3F8, 1, 0x41)));
        assert_eq!(io_in(&mut t, 0x71, 3), Err(Error::AccessSize(3)));
        assert_eq!(
            cpuid(&mut t, 0x4000_0000, 0).unwrap(),
            [0x4000_0001, 1, 2, 3]
        );
        wrmsr(&mut t, 0x1B, 0xFEE0_0900).unwrap();
        assert_eq!(rdmsr(&mut t, 0x1B).unwrap(), 0xFEE0_0900);
        hlt(&mut t, true).unwrap();
        assert_eq!(t.halts, 1);
        mmio_write(&mut t, SHARED | 0xFEB0_0000, 4, 0x1_0000_0007).unwrap();
        assert_eq!(mmio_read(&mut t, SHARED | 0xFEB0_0000, 4).unwrap(), 7);
        assert_eq!(
            mmio_read(&mut t, SHARED | 0xFEB0_0000, 16),
            Err(Error::AccessSize(16))
        );
        // An MMIO access to a private GPA is refused by the host model.
        assert_eq!(
            mmio_read(&mut t, 0xFEB0_0000, 4),
            Err(Error::Vmcall {
                subfn: VMCALL_MMIO,
                status: VmcallStatus::InvalidOperand
            })
        );
        // The TDCALL itself failing (bad RCX bitmap) is a TDCALL error, not a VMCALL one.
        t.fail_next_tdcall = Some(0xC000_0100_0000_0001);
        assert!(matches!(
            io_in(&mut t, 0x71, 1),
            Err(Error::Tdcall { leaf: 0, status }) if status.class() == crate::tdcall::TDX_OPERAND_INVALID
        ));
    }

    #[test]
    fn map_gpa_partial_progress_and_retry() {
        let mut t = td();
        t.add_private(0x10_0000, 8);
        // The host converts two pages per call, answering RETRY with the next GPA.
        t.map_gpa_script = MapGpaScript::PagesPerCall(2);
        map_gpa(&mut t, 0x10_0000, 8 * 4096, true, SB).unwrap();
        assert_eq!(t.map_gpa_calls, 4);
        assert!(t.is_shared(0x10_0000) && t.is_shared(0x10_7000));
        // Each call started where the previous one stopped, shared bit included.
        assert_eq!(
            t.map_gpa_starts,
            [
                SHARED | 0x10_0000,
                SHARED | 0x10_2000,
                SHARED | 0x10_4000,
                SHARED | 0x10_6000
            ]
        );
    }

    #[test]
    fn map_gpa_stall_and_bad_resume() {
        let mut t = td();
        t.add_private(0x10_0000, 4);
        t.map_gpa_script = MapGpaScript::RetryAt(SHARED | 0x10_0000);
        assert_eq!(
            map_gpa(&mut t, 0x10_0000, 4 * 4096, true, SB),
            Err(Error::MapGpaStalled { gpa: 0x10_0000 })
        );
        assert_eq!(t.map_gpa_calls, MAP_GPA_MAX_STALLS + 1);
        for resume in [
            SHARED | 0x0F_F000,
            SHARED | 0x10_4000,
            SHARED | 0x10_0800,
            0x10_1000,
        ] {
            let mut t = td();
            t.add_private(0x10_0000, 4);
            t.map_gpa_script = MapGpaScript::RetryAt(resume);
            assert_eq!(
                map_gpa(&mut t, 0x10_0000, 4 * 4096, true, SB),
                Err(Error::MapGpaBadResume { resume }),
                "{resume:#x}"
            );
        }
        let mut t = td();
        t.map_gpa_script = MapGpaScript::Fail(VmcallStatus::GpaInUse);
        assert_eq!(
            map_gpa(&mut t, 0x10_0000, 4096, true, SB),
            Err(Error::Vmcall {
                subfn: VMCALL_MAP_GPA,
                status: VmcallStatus::GpaInUse
            })
        );
    }

    #[test]
    fn map_gpa_range_checks() {
        let mut t = td();
        assert_eq!(
            map_gpa(&mut t, 0x1001, 4096, true, SB),
            Err(Error::Misaligned {
                value: 0x1001,
                align: 4096
            })
        );
        assert_eq!(
            map_gpa(&mut t, 0x1000, 100, true, SB),
            Err(Error::Misaligned {
                value: 100,
                align: 4096
            })
        );
        assert_eq!(
            map_gpa(&mut t, 0x1000, 0, true, SB),
            Err(Error::BadRange {
                start: 0x1000,
                len: 0
            })
        );
        assert_eq!(
            map_gpa(&mut t, SHARED - 4096, 8192, true, SB),
            Err(Error::BadRange {
                start: SHARED - 4096,
                len: 8192
            })
        );
        assert_eq!(
            map_gpa(&mut t, !0xFFF, 8192, true, SB),
            Err(Error::BadRange {
                start: !0xFFF,
                len: 8192
            })
        );
        assert_eq!(t.map_gpa_calls, 0);
    }
}
