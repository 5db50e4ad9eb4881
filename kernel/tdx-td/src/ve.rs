//! The virtualization exception (#VE, vector 20): TDG.VP.VEINFO.GET, the dispatch decision,
//! and the handler body for the exits a TD services itself.
//!
//! TDX Module ABI spec §"TDG.VP.VEINFO.GET Leaf": RCX bits 31:0 = exit reason, RDX = exit
//! qualification, R8 = guest linear address, R9 = guest physical address, R10 bits 31:0 =
//! instruction length, R10 bits 63:32 = instruction information. The information is valid once:
//! the call marks it consumed, a second call returns TDX_NO_VALID_VE_INFO, and a #VE that
//! arrives while it is unread escalates to #DF. So the handler's first action is this call,
//! before anything that can raise another #VE (port I/O, MMIO, CPUID, MSRs).
//!
//! Exit reasons are the VMX basic exit reasons (SDM vol. 3C Appendix C); the I/O exit
//! qualification is SDM Table 28-5; GHCI §2.3 lists which instructions raise #VE in a TD.

use crate::tdcall::{Regs, Status, TDG_VP_VEINFO_GET, TDX_NO_VALID_VE_INFO, Tdcall};
use crate::{Error, vmcall};

/// VMX exit reason CPUID.
pub const EXIT_CPUID: u32 = 10;
/// VMX exit reason HLT.
pub const EXIT_HLT: u32 = 12;
/// VMX exit reason I/O instruction.
pub const EXIT_IO: u32 = 30;
/// VMX exit reason RDMSR.
pub const EXIT_RDMSR: u32 = 31;
/// VMX exit reason WRMSR.
pub const EXIT_WRMSR: u32 = 32;
/// VMX exit reason EPT violation.
pub const EXIT_EPT_VIOLATION: u32 = 48;

/// The information of one #VE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VeInfo {
    /// VMX basic exit reason.
    pub exit_reason: u32,
    /// Exit qualification.
    pub qualification: u64,
    /// Guest linear address (EPT violations).
    pub gla: u64,
    /// Guest physical address (EPT violations).
    pub gpa: u64,
    /// Length of the instruction that caused it (instruction exits).
    pub instr_len: u32,
    /// VMX instruction information.
    pub instr_info: u32,
}

impl VeInfo {
    /// Decode the output registers of TDG.VP.VEINFO.GET.
    pub fn from_regs(r: &Regs) -> Self {
        Self {
            exit_reason: r.rcx as u32,
            qualification: r.rdx,
            gla: r.r8,
            gpa: r.r9,
            instr_len: r.r10 as u32,
            instr_info: (r.r10 >> 32) as u32,
        }
    }
    /// Encode as the output registers of TDG.VP.VEINFO.GET (for fakes and stubs).
    pub fn to_regs(&self) -> Regs {
        Regs {
            rax: 0,
            rcx: u64::from(self.exit_reason),
            rdx: self.qualification,
            r8: self.gla,
            r9: self.gpa,
            r10: (u64::from(self.instr_info) << 32) | u64::from(self.instr_len),
            ..Regs::default()
        }
    }
}

/// TDG.VP.VEINFO.GET. [`Error::NoVeInfo`] if there is none (already read).
pub fn veinfo_get<T: Tdcall + ?Sized>(t: &mut T) -> Result<VeInfo, Error> {
    let mut regs = Regs::leaf(TDG_VP_VEINFO_GET);
    t.tdcall(&mut regs);
    let status = Status(regs.rax);
    if status.class() == TDX_NO_VALID_VE_INFO {
        return Err(Error::NoVeInfo);
    }
    if !status.is_success() {
        return Err(Error::Tdcall {
            leaf: TDG_VP_VEINFO_GET,
            status,
        });
    }
    Ok(VeInfo::from_regs(&regs))
}

/// A decoded port I/O exit (SDM Table 28-5: bits 2:0 size − 1, bit 3 direction (1 = IN),
/// bit 4 string, bit 5 REP, bit 6 immediate operand, bits 31:16 port).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoExit {
    /// Port.
    pub port: u16,
    /// Access size in bytes (1, 2, 4).
    pub size: u8,
    /// IN (true) or OUT.
    pub input: bool,
}

/// Why a #VE ends the TD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TerminateReason {
    /// An exit reason the kernel does not service (the value).
    UnexpectedExit(u32),
    /// String or REP port I/O (`ins`/`outs`): the kernel never uses it.
    StringIo,
    /// A port I/O size other than 1, 2, 4.
    IoSize(u8),
    /// An instruction exit with an instruction length outside 1..=15.
    InstrLen(u32),
    /// An EPT violation on a private GPA: with SEPT_VE_DISABLE the module does not raise #VE
    /// for pending pages, and the kernel never touches unaccepted memory, so this is an attack
    /// or a bug.
    PrivateEptViolation(u64),
}

/// What the #VE handler does for one #VE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VeAction {
    /// Port I/O through Instruction.IO, then RIP += `instr_len`.
    Io {
        /// The access.
        io: IoExit,
        /// Instruction length.
        instr_len: u8,
    },
    /// CPUID through Instruction.CPUID (EAX, ECX from the frame), then RIP += `instr_len`.
    Cpuid {
        /// Instruction length.
        instr_len: u8,
    },
    /// RDMSR (ECX) through Instruction.RDMSR, result in EDX:EAX, then RIP += `instr_len`.
    Rdmsr {
        /// Instruction length.
        instr_len: u8,
    },
    /// WRMSR (ECX, EDX:EAX) through Instruction.WRMSR, then RIP += `instr_len`.
    Wrmsr {
        /// Instruction length.
        instr_len: u8,
    },
    /// HLT through Instruction.HLT, then RIP += `instr_len`.
    Hlt {
        /// Instruction length.
        instr_len: u8,
    },
    /// MMIO at a shared GPA: the kernel decodes the instruction at RIP (the decoder it shares
    /// with the SNP #VC path), does #VE.RequestMMIO ([`vmcall::mmio_read`] /
    /// [`vmcall::mmio_write`]) and advances RIP by the decoded length.
    Mmio {
        /// The shared GPA accessed.
        gpa: u64,
    },
    /// Stop the TD.
    Terminate(TerminateReason),
}

fn instr_len(ve: &VeInfo) -> Result<u8, TerminateReason> {
    match ve.instr_len {
        1..=15 => Ok(ve.instr_len as u8),
        other => Err(TerminateReason::InstrLen(other)),
    }
}

/// The dispatch decision for `ve` in a TD whose shared bit is `shared_bit`.
pub fn dispatch(ve: &VeInfo, shared_bit: u32) -> VeAction {
    let with_len = |f: fn(u8) -> VeAction| match instr_len(ve) {
        Ok(l) => f(l),
        Err(r) => VeAction::Terminate(r),
    };
    match ve.exit_reason {
        EXIT_IO => {
            let q = ve.qualification;
            if q & (1 << 4) != 0 || q & (1 << 5) != 0 {
                return VeAction::Terminate(TerminateReason::StringIo);
            }
            let size = (q & 0x7) as u8 + 1;
            if !matches!(size, 1 | 2 | 4) {
                return VeAction::Terminate(TerminateReason::IoSize(size));
            }
            let io = IoExit {
                port: (q >> 16) as u16,
                size,
                input: q & (1 << 3) != 0,
            };
            match instr_len(ve) {
                Ok(instr_len) => VeAction::Io { io, instr_len },
                Err(r) => VeAction::Terminate(r),
            }
        }
        EXIT_CPUID => with_len(|instr_len| VeAction::Cpuid { instr_len }),
        EXIT_RDMSR => with_len(|instr_len| VeAction::Rdmsr { instr_len }),
        EXIT_WRMSR => with_len(|instr_len| VeAction::Wrmsr { instr_len }),
        EXIT_HLT => with_len(|instr_len| VeAction::Hlt { instr_len }),
        EXIT_EPT_VIOLATION => {
            if ve.gpa >> shared_bit & 1 == 1 {
                VeAction::Mmio { gpa: ve.gpa }
            } else {
                VeAction::Terminate(TerminateReason::PrivateEptViolation(ve.gpa))
            }
        }
        other => VeAction::Terminate(TerminateReason::UnexpectedExit(other)),
    }
}

/// The registers of the interrupted context the handler reads and changes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VeFrame {
    /// RAX.
    pub rax: u64,
    /// RBX.
    pub rbx: u64,
    /// RCX.
    pub rcx: u64,
    /// RDX.
    pub rdx: u64,
    /// RIP of the instruction that raised #VE.
    pub rip: u64,
    /// RFLAGS (IF tells HLT whether interrupts are blocked).
    pub rflags: u64,
}

/// What [`handle_ve`] left to the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VeOutcome {
    /// Serviced; the frame (registers, RIP) is updated.
    Done,
    /// MMIO at this shared GPA: decode the instruction at `frame.rip` and complete it.
    Mmio {
        /// The shared GPA.
        gpa: u64,
    },
}

const RFLAGS_IF: u64 = 1 << 9;

/// The #VE handler body: VEINFO.GET first, then the dispatch decision, then the service for
/// I/O, CPUID, MSRs and HLT. Register writes follow the instructions' semantics: an 8- or
/// 16-bit IN replaces AL/AX only, 32-bit results (IN EAX, CPUID, RDMSR) zero-extend.
pub fn handle_ve<T: Tdcall + ?Sized>(
    t: &mut T,
    frame: &mut VeFrame,
    shared_bit: u32,
) -> Result<VeOutcome, Error> {
    let ve = veinfo_get(t)?;
    let len = match dispatch(&ve, shared_bit) {
        VeAction::Io { io, instr_len } => {
            if io.input {
                let v = u64::from(vmcall::io_in(t, io.port, io.size)?);
                frame.rax = match io.size {
                    1 => (frame.rax & !0xFF) | v,
                    2 => (frame.rax & !0xFFFF) | v,
                    _ => v,
                };
            } else {
                vmcall::io_out(t, io.port, io.size, frame.rax as u32)?;
            }
            instr_len
        }
        VeAction::Cpuid { instr_len } => {
            let [a, b, c, d] = vmcall::cpuid(t, frame.rax as u32, frame.rcx as u32)?;
            frame.rax = u64::from(a);
            frame.rbx = u64::from(b);
            frame.rcx = u64::from(c);
            frame.rdx = u64::from(d);
            instr_len
        }
        VeAction::Rdmsr { instr_len } => {
            let v = vmcall::rdmsr(t, frame.rcx as u32)?;
            frame.rax = v & 0xFFFF_FFFF;
            frame.rdx = v >> 32;
            instr_len
        }
        VeAction::Wrmsr { instr_len } => {
            let v = (frame.rdx << 32) | (frame.rax & 0xFFFF_FFFF);
            vmcall::wrmsr(t, frame.rcx as u32, v)?;
            instr_len
        }
        VeAction::Hlt { instr_len } => {
            vmcall::hlt(t, frame.rflags & RFLAGS_IF == 0)?;
            instr_len
        }
        VeAction::Mmio { gpa } => return Ok(VeOutcome::Mmio { gpa }),
        VeAction::Terminate(reason) => return Err(Error::Ve(reason)),
    };
    frame.rip = frame.rip.wrapping_add(u64::from(len));
    Ok(VeOutcome::Done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeTdx;
    use crate::info::Attributes;

    const SB: u32 = 51;

    fn ve(exit_reason: u32, qualification: u64, gpa: u64, instr_len: u32) -> VeInfo {
        VeInfo {
            exit_reason,
            qualification,
            gla: 0,
            gpa,
            instr_len,
            instr_info: 0,
        }
    }

    fn io_q(port: u16, size: u8, input: bool) -> u64 {
        (u64::from(port) << 16) | (u64::from(input) << 3) | u64::from(size - 1)
    }

    #[test]
    fn veinfo_registers_round_trip() {
        let v = VeInfo {
            exit_reason: 48,
            qualification: 0x181,
            gla: 0xFFFF_8000_0000_1000,
            gpa: (1 << 51) | 0xFEB0_0000,
            instr_len: 0,
            instr_info: 0xABCD,
        };
        assert_eq!(VeInfo::from_regs(&v.to_regs()), v);
    }

    #[test]
    fn dispatch_decisions() {
        assert_eq!(
            dispatch(&ve(EXIT_IO, io_q(0x3F8, 1, false), 0, 1), SB),
            VeAction::Io {
                io: IoExit {
                    port: 0x3F8,
                    size: 1,
                    input: false
                },
                instr_len: 1
            }
        );
        assert_eq!(
            dispatch(&ve(EXIT_IO, io_q(0xCFC, 4, true), 0, 2), SB),
            VeAction::Io {
                io: IoExit {
                    port: 0xCFC,
                    size: 4,
                    input: true
                },
                instr_len: 2
            }
        );
        // String and REP I/O.
        assert_eq!(
            dispatch(&ve(EXIT_IO, io_q(0x80, 1, true) | 1 << 4, 0, 2), SB),
            VeAction::Terminate(TerminateReason::StringIo)
        );
        assert_eq!(
            dispatch(&ve(EXIT_IO, io_q(0x80, 1, true) | 1 << 5, 0, 2), SB),
            VeAction::Terminate(TerminateReason::StringIo)
        );
        // Size field 2 (3 bytes) is not an I/O size.
        assert_eq!(
            dispatch(&ve(EXIT_IO, 2, 0, 1), SB),
            VeAction::Terminate(TerminateReason::IoSize(3))
        );
        assert_eq!(
            dispatch(&ve(EXIT_CPUID, 0, 0, 2), SB),
            VeAction::Cpuid { instr_len: 2 }
        );
        assert_eq!(
            dispatch(&ve(EXIT_RDMSR, 0, 0, 2), SB),
            VeAction::Rdmsr { instr_len: 2 }
        );
        assert_eq!(
            dispatch(&ve(EXIT_WRMSR, 0, 0, 2), SB),
            VeAction::Wrmsr { instr_len: 2 }
        );
        assert_eq!(
            dispatch(&ve(EXIT_HLT, 0, 0, 1), SB),
            VeAction::Hlt { instr_len: 1 }
        );
        for bad in [0, 16, u32::MAX] {
            assert_eq!(
                dispatch(&ve(EXIT_CPUID, 0, 0, bad), SB),
                VeAction::Terminate(TerminateReason::InstrLen(bad))
            );
        }
        let shared = (1 << 51) | 0xFEB0_0010;
        assert_eq!(
            dispatch(&ve(EXIT_EPT_VIOLATION, 0, shared, 0), SB),
            VeAction::Mmio { gpa: shared }
        );
        assert_eq!(
            dispatch(&ve(EXIT_EPT_VIOLATION, 0, 0x20_0000, 0), SB),
            VeAction::Terminate(TerminateReason::PrivateEptViolation(0x20_0000))
        );
        // With GPAW 48, bit 51 is not the shared bit.
        assert_eq!(
            dispatch(&ve(EXIT_EPT_VIOLATION, 0, shared, 0), 47),
            VeAction::Terminate(TerminateReason::PrivateEptViolation(shared))
        );
        assert_eq!(
            dispatch(&ve(54, 0, 0, 2), SB),
            VeAction::Terminate(TerminateReason::UnexpectedExit(54))
        );
    }

    fn td() -> FakeTdx {
        FakeTdx::new(52, Attributes::SEPT_VE_DISABLE)
    }

    #[test]
    fn veinfo_is_valid_once() {
        let mut t = td();
        assert_eq!(veinfo_get(&mut t), Err(Error::NoVeInfo));
        let v = ve(EXIT_HLT, 0, 0, 1);
        t.raise_ve(v);
        assert_eq!(veinfo_get(&mut t), Ok(v));
        assert_eq!(veinfo_get(&mut t), Err(Error::NoVeInfo));
        // A second #VE while the first is unread escalates (the fake records a #DF).
        t.raise_ve(v);
        t.raise_ve(v);
        assert!(t.double_fault);
    }

    #[test]
    fn handler_services_io_cpuid_msr_hlt() {
        let mut t = td();
        t.port_value = 0x1234_5678;
        let mut f = VeFrame {
            rax: 0xFFFF_FFFF_FFFF_FF00,
            rip: 0x1000,
            ..VeFrame::default()
        };
        t.raise_ve(ve(EXIT_IO, io_q(0x71, 1, true), 0, 1));
        assert_eq!(handle_ve(&mut t, &mut f, SB), Ok(VeOutcome::Done));
        assert_eq!((f.rax, f.rip), (0xFFFF_FFFF_FFFF_FF78, 0x1001));
        t.raise_ve(ve(EXIT_IO, io_q(0x71, 2, true), 0, 2));
        handle_ve(&mut t, &mut f, SB).unwrap();
        assert_eq!(f.rax, 0xFFFF_FFFF_FFFF_5678);
        t.raise_ve(ve(EXIT_IO, io_q(0x71, 4, true), 0, 1));
        handle_ve(&mut t, &mut f, SB).unwrap();
        assert_eq!(f.rax, 0x1234_5678);
        f.rax = 0xAA41;
        t.raise_ve(ve(EXIT_IO, io_q(0x3F8, 1, false), 0, 1));
        handle_ve(&mut t, &mut f, SB).unwrap();
        assert_eq!(t.port_writes.last(), Some(&(0x3F8, 1, 0x41)));

        f.rax = 0xFFFF_FFFF_4000_0000;
        f.rcx = 0xFFFF_FFFF_0000_0000;
        t.raise_ve(ve(EXIT_CPUID, 0, 0, 2));
        let rip = f.rip;
        handle_ve(&mut t, &mut f, SB).unwrap();
        assert_eq!(
            (f.rax, f.rbx, f.rcx, f.rdx, f.rip),
            (0x4000_0001, 1, 2, 3, rip + 2)
        );

        f.rcx = 0x1B;
        f.rdx = 0x1;
        f.rax = 0xFFFF_FFFF_FEE0_0900;
        t.raise_ve(ve(EXIT_WRMSR, 0, 0, 2));
        handle_ve(&mut t, &mut f, SB).unwrap();
        assert_eq!(t.msrs.get(&0x1B), Some(&0x1_FEE0_0900));
        f.rax = 0;
        f.rdx = 0;
        t.raise_ve(ve(EXIT_RDMSR, 0, 0, 2));
        handle_ve(&mut t, &mut f, SB).unwrap();
        assert_eq!((f.rdx, f.rax), (1, 0xFEE0_0900));

        f.rflags = 1 << 9;
        t.raise_ve(ve(EXIT_HLT, 0, 0, 1));
        handle_ve(&mut t, &mut f, SB).unwrap();
        assert_eq!(t.last_hlt_blocked, Some(false));
    }

    #[test]
    fn handler_mmio_and_terminations() {
        let mut t = td();
        let mut f = VeFrame {
            rip: 0x2000,
            ..VeFrame::default()
        };
        let gpa = (1 << 51) | 0xFEB0_0000;
        t.raise_ve(ve(EXIT_EPT_VIOLATION, 0, gpa, 0));
        assert_eq!(handle_ve(&mut t, &mut f, SB), Ok(VeOutcome::Mmio { gpa }));
        assert_eq!(f.rip, 0x2000, "the kernel advances RIP after decoding");
        t.raise_ve(ve(EXIT_EPT_VIOLATION, 0, 0x30_0000, 0));
        assert_eq!(
            handle_ve(&mut t, &mut f, SB),
            Err(Error::Ve(TerminateReason::PrivateEptViolation(0x30_0000)))
        );
        t.raise_ve(ve(EXIT_IO, io_q(0x80, 1, true) | 1 << 4, 0, 2));
        assert_eq!(
            handle_ve(&mut t, &mut f, SB),
            Err(Error::Ve(TerminateReason::StringIo))
        );
        // No #VE pending: the handler was entered for nothing.
        assert_eq!(handle_ve(&mut t, &mut f, SB), Err(Error::NoVeInfo));
        // The VMM failing the I/O is reported, RIP unchanged.
        t.raise_ve(ve(EXIT_IO, io_q(0x71, 1, true), 0, 1));
        t.io_status = crate::vmcall::VmcallStatus::InvalidOperand;
        assert!(matches!(
            handle_ve(&mut t, &mut f, SB),
            Err(Error::Vmcall { subfn: 30, .. })
        ));
        assert_eq!(f.rip, 0x2000);
    }

    /// The kernel's device side for the #VE MMIO path: TDVMCALL #VE.RequestMMIO with the
    /// shared bit (as `platform::tdx::TdxMmio`).
    struct TdMmio<'a>(&'a mut FakeTdx, u64);

    impl sev_guest::mmio::MmioBackend for TdMmio<'_> {
        fn read(
            &mut self,
            gpa: u64,
            width: sev_guest::mmio::Width,
        ) -> Result<u64, sev_guest::mmio::MmioError> {
            vmcall::mmio_read(self.0, gpa | self.1, width.bytes())
                .map_err(|_| sev_guest::mmio::MmioError::Backend)
        }
        fn write(
            &mut self,
            gpa: u64,
            width: sev_guest::mmio::Width,
            value: u64,
        ) -> Result<(), sev_guest::mmio::MmioError> {
            vmcall::mmio_write(self.0, gpa | self.1, width.bytes(), value)
                .map_err(|_| sev_guest::mmio::MmioError::Backend)
        }
    }

    /// The whole #VE MMIO path as the kernel runs it (`arch::tdx::on_ve`): VEINFO.GET gives an
    /// EPT violation at a shared GPA, the `mov` at RIP is decoded by sev-guest's decoder, its
    /// address checked against the windows and the #VE's GPA (shared bit cleared), performed by
    /// TDVMCALL on the fake VMM, RIP advanced by the decoded length.
    #[test]
    fn mmio_ve_is_decoded_and_completed_by_tdvmcall() {
        use sev_guest::mmio::{Gprs, MmioError, Windows, handle};
        use sev_guest::vc::NestingGuard;

        let mut t = td();
        let mask = 1u64 << SB;
        let bar = 0xFEB0_0000u64;
        let mut w = Windows::new();
        w.add(bar, 0x1000).unwrap();
        let guard = NestingGuard::new();
        let mut f = VeFrame {
            rip: 0x2000,
            ..VeFrame::default()
        };
        let mut ve_gpa = |t: &mut FakeTdx, gpa: u64| {
            t.raise_ve(ve(EXIT_EPT_VIOLATION, 0, gpa, 0));
            match handle_ve(t, &mut f, SB) {
                Ok(VeOutcome::Mmio { gpa }) => gpa & !mask,
                other => panic!("{other:?}"),
            }
        };
        let mut g = Gprs::default();
        g.r[0] = 0xDEAD_BEEF_1234_5678; // RAX
        g.r[1] = u64::MAX; // RCX
        g.r[7] = bar; // RDI
        g.rip = 0x2000;

        // mov [rdi + 8], eax
        let fault = ve_gpa(&mut t, mask | (bar + 8));
        let insn = handle(
            &guard,
            &[0x89, 0x47, 0x08],
            &mut g,
            Some(fault),
            &w,
            &mut TdMmio(&mut t, mask),
        )
        .unwrap();
        assert_eq!((insn.len, g.rip), (3, 0x2003));
        assert_eq!(
            vmcall::mmio_read(&mut t, mask | (bar + 8), 4),
            Ok(0x1234_5678)
        );

        // mov ecx, [rdi + 8]: a 32-bit load zero-extends.
        let fault = ve_gpa(&mut t, mask | (bar + 8));
        let insn = handle(
            &guard,
            &[0x8b, 0x4f, 0x08],
            &mut g,
            Some(fault),
            &w,
            &mut TdMmio(&mut t, mask),
        )
        .unwrap();
        assert_eq!((insn.len, g.rip, g.r[1]), (3, 0x2006, 0x1234_5678));

        // The #VE names another GPA than the decoded `mov`: refused, nothing done.
        let fault = ve_gpa(&mut t, mask | (bar + 0x10));
        let before = g;
        assert_eq!(
            handle(
                &guard,
                &[0x89, 0x47, 0x08],
                &mut g,
                Some(fault),
                &w,
                &mut TdMmio(&mut t, mask)
            ),
            Err(MmioError::AddressMismatch {
                decoded: bar + 8,
                fault: bar + 0x10
            })
        );
        assert_eq!(g, before);

        // Outside every device window: refused before any TDVMCALL.
        g.r[7] = bar + 0x1000;
        let fault = ve_gpa(&mut t, mask | (bar + 0x1008));
        assert_eq!(
            handle(
                &guard,
                &[0x89, 0x47, 0x08],
                &mut g,
                Some(fault),
                &w,
                &mut TdMmio(&mut t, mask)
            ),
            Err(MmioError::OutsideWindows(bar + 0x1008))
        );
        assert_eq!(vmcall::mmio_read(&mut t, mask | (bar + 0x1008), 4), Ok(0));

        // A #VE inside the MMIO path (its guard held) is refused as nested.
        let _held = guard.enter().unwrap();
        g.r[7] = bar;
        assert_eq!(
            handle(
                &guard,
                &[0x89, 0x47, 0x08],
                &mut g,
                Some(bar + 8),
                &w,
                &mut TdMmio(&mut t, mask)
            ),
            Err(MmioError::Nested)
        );
    }
}
