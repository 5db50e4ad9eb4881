//! The #VC (VMM communication exception, vector 29) safety net: decoding the instruction that
//! raised it and emulating it on the guest's registers.
//!
//! AMD64 APM vol. 2 §15.35.5 "#VC Exception": the error code is the exit code the hypervisor
//! would have seen (56421 Table 6), `RIP` points at the instruction, which the handler must
//! emulate and skip. The kernel routes its own port I/O, MSR and CPUID through the platform
//! backend, so a #VC means something bypassed it (ring's `cpuid`, a forgotten path): the
//! handler emulates only the exits it can check —
//! - IOIO (0x7B): `in`/`out` with an 8-bit immediate port or `DX`, 8/16/32-bit (`0x66` prefix
//!   for 16 bits), APM vol. 3 "IN", "OUT" (opcodes `E4`–`E7`, `EC`–`EF`);
//! - MSR (0x7C): `rdmsr` (`0F 32`), `wrmsr` (`0F 30`);
//! - CPUID (0x72): `cpuid` (`0F A2`), answered by the backend from the CPUID page;
//!
//! and the caller terminates on anything else ([`VcError::terminate_reason`]): string I/O,
//! MMIO without a decoder, a prefix it does not know, or an instruction that does not match
//! the exit code. A #VC inside the #VC handler is refused by [`NestingGuard`] (the handler's
//! own port I/O would otherwise recurse on the same IST stack, which is how today's kernel
//! would hang on SNP).
//!
//! Compared with (read, not copied): Linux `arch/x86/coco/sev/vc-handle.c`
//! (`vc_handle_ioio`, `vc_handle_msr`, `vc_handle_cpuid`; Linux uses its full instruction
//! decoder), Coconut SVSM `kernel/src/cpu/vc.rs` and `insn.rs` (a small decoder for exactly
//! these forms).

use core::fmt;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::msr::{KmsReason, TerminateReason};
use crate::nae::{IoSize, exit_code};

/// The longest instruction the decoder reads (one prefix, two opcode bytes, an immediate).
pub const MAX_INSN_LEN: usize = 4;

/// Where an `in`/`out` takes its port from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortOperand {
    /// An 8-bit immediate.
    Imm(u8),
    /// `DX`.
    Dx,
}

/// An instruction the handler emulates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Insn {
    /// `in al/ax/eax, port`.
    In(PortOperand, IoSize),
    /// `out port, al/ax/eax`.
    Out(PortOperand, IoSize),
    /// `rdmsr`.
    Rdmsr,
    /// `wrmsr`.
    Wrmsr,
    /// `cpuid`.
    Cpuid,
}

/// A decoded instruction and its length (how far `RIP` advances).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// The instruction.
    pub insn: Insn,
    /// Its length in bytes.
    pub len: u8,
}

/// Why a #VC is not emulated: the kernel terminates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VcError {
    /// An exit code the handler does not emulate (MMIO, string I/O, anything else).
    UnsupportedExit(u64),
    /// The bytes at `RIP` are not a form the decoder knows (first byte given).
    UnknownInstruction(u8),
    /// The instruction does not match the exit code (the hypervisor or the guest lies).
    Mismatch {
        /// The exit code of the #VC.
        exit_code: u64,
        /// The decoded instruction.
        insn: Insn,
    },
    /// The instruction bytes ended early.
    Truncated,
    /// A #VC while a #VC was being handled.
    Nested,
    /// The backend could not perform the access (its error, mapped to a reason).
    Backend(TerminateReason),
}

impl fmt::Display for VcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnsupportedExit(c) => write!(f, "#VC for exit {c:#x} is not emulated"),
            Self::UnknownInstruction(b) => write!(f, "#VC on an unknown instruction ({b:#04x})"),
            Self::Mismatch { exit_code, insn } => {
                write!(f, "#VC exit {exit_code:#x} does not match {insn:?}")
            }
            Self::Truncated => f.write_str("#VC instruction bytes truncated"),
            Self::Nested => f.write_str("#VC inside the #VC handler"),
            Self::Backend(r) => write!(f, "#VC emulation failed ({r:?})"),
        }
    }
}

impl core::error::Error for VcError {}

impl VcError {
    /// The termination reason for this failure.
    pub fn terminate_reason(&self) -> TerminateReason {
        match self {
            Self::Nested => TerminateReason::Kms(KmsReason::VcNested),
            Self::Backend(r) => *r,
            Self::UnsupportedExit(_)
            | Self::UnknownInstruction(_)
            | Self::Mismatch { .. }
            | Self::Truncated => TerminateReason::Kms(KmsReason::VcUnsupported),
        }
    }
}

/// Decodes the instruction at `RIP` (`bytes`, at most [`MAX_INSN_LEN`] are read) and checks
/// it against the #VC error code.
pub fn decode(exit: u64, bytes: &[u8]) -> Result<Decoded, VcError> {
    if !matches!(exit, exit_code::IOIO | exit_code::MSR | exit_code::CPUID) {
        return Err(VcError::UnsupportedExit(exit));
    }
    let byte = |i: usize| bytes.get(i).copied().ok_or(VcError::Truncated);
    let mut at = 0usize;
    let mut opsize16 = false;
    if byte(0)? == 0x66 {
        opsize16 = true;
        at = 1;
    }
    let wide = if opsize16 { IoSize::B16 } else { IoSize::B32 };
    let op = byte(at)?;
    let (insn, len) = match op {
        0xE4 => (
            Insn::In(PortOperand::Imm(byte(at + 1)?), IoSize::B8),
            at + 2,
        ),
        0xE5 => (Insn::In(PortOperand::Imm(byte(at + 1)?), wide), at + 2),
        0xE6 => (
            Insn::Out(PortOperand::Imm(byte(at + 1)?), IoSize::B8),
            at + 2,
        ),
        0xE7 => (Insn::Out(PortOperand::Imm(byte(at + 1)?), wide), at + 2),
        0xEC => (Insn::In(PortOperand::Dx, IoSize::B8), at + 1),
        0xED => (Insn::In(PortOperand::Dx, wide), at + 1),
        0xEE => (Insn::Out(PortOperand::Dx, IoSize::B8), at + 1),
        0xEF => (Insn::Out(PortOperand::Dx, wide), at + 1),
        0x0F if !opsize16 => match byte(at + 1)? {
            0x30 => (Insn::Wrmsr, 2),
            0x32 => (Insn::Rdmsr, 2),
            0xA2 => (Insn::Cpuid, 2),
            _ => return Err(VcError::UnknownInstruction(op)),
        },
        _ => return Err(VcError::UnknownInstruction(byte(0)?)),
    };
    let expected = match insn {
        Insn::In(..) | Insn::Out(..) => exit_code::IOIO,
        Insn::Rdmsr | Insn::Wrmsr => exit_code::MSR,
        Insn::Cpuid => exit_code::CPUID,
    };
    if expected != exit {
        return Err(VcError::Mismatch {
            exit_code: exit,
            insn,
        });
    }
    Ok(Decoded {
        insn,
        len: len as u8,
    })
}

/// The registers the emulated instructions read and write, and `RIP`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Regs {
    /// RAX.
    pub rax: u64,
    /// RBX.
    pub rbx: u64,
    /// RCX.
    pub rcx: u64,
    /// RDX.
    pub rdx: u64,
    /// RIP.
    pub rip: u64,
}

/// The privileged accesses, as the platform backend performs them (GHCB exits and the CPUID
/// page on SNP; the plain instructions elsewhere).
pub trait VcBackend {
    /// `in`.
    fn io_in(&mut self, port: u16, size: IoSize) -> Result<u32, TerminateReason>;
    /// `out` (`value` already masked to `size`).
    fn io_out(&mut self, port: u16, size: IoSize, value: u32) -> Result<(), TerminateReason>;
    /// `rdmsr`.
    fn rdmsr(&mut self, msr: u32) -> Result<u64, TerminateReason>;
    /// `wrmsr`.
    fn wrmsr(&mut self, msr: u32, value: u64) -> Result<(), TerminateReason>;
    /// `cpuid` → `[eax, ebx, ecx, edx]`.
    fn cpuid(&mut self, leaf: u32, subleaf: u32) -> Result<[u32; 4], TerminateReason>;
}

fn size_mask(size: IoSize) -> u64 {
    match size {
        IoSize::B8 => 0xFF,
        IoSize::B16 => 0xFFFF,
        IoSize::B32 => 0xFFFF_FFFF,
    }
}

/// Emulates `decoded` on `regs` through `backend` and advances `RIP` past it. Register
/// semantics (APM vol. 3): an 8/16-bit `in` replaces only AL/AX; a 32-bit `in`, `rdmsr` and
/// `cpuid` write 32-bit registers, which zero-extend to 64 bits.
pub fn emulate(
    regs: &mut Regs,
    decoded: Decoded,
    backend: &mut impl VcBackend,
) -> Result<(), VcError> {
    let port = |p: PortOperand, rdx: u64| match p {
        PortOperand::Imm(i) => u16::from(i),
        PortOperand::Dx => rdx as u16,
    };
    match decoded.insn {
        Insn::In(p, size) => {
            let v = backend
                .io_in(port(p, regs.rdx), size)
                .map_err(VcError::Backend)?;
            let mask = size_mask(size);
            regs.rax = if size == IoSize::B32 {
                u64::from(v)
            } else {
                (regs.rax & !mask) | (u64::from(v) & mask)
            };
        }
        Insn::Out(p, size) => {
            let value = (regs.rax & size_mask(size)) as u32;
            backend
                .io_out(port(p, regs.rdx), size, value)
                .map_err(VcError::Backend)?;
        }
        Insn::Rdmsr => {
            let v = backend.rdmsr(regs.rcx as u32).map_err(VcError::Backend)?;
            regs.rax = v & 0xFFFF_FFFF;
            regs.rdx = v >> 32;
        }
        Insn::Wrmsr => {
            let v = ((regs.rdx & 0xFFFF_FFFF) << 32) | (regs.rax & 0xFFFF_FFFF);
            backend
                .wrmsr(regs.rcx as u32, v)
                .map_err(VcError::Backend)?;
        }
        Insn::Cpuid => {
            let [a, b, c, d] = backend
                .cpuid(regs.rax as u32, regs.rcx as u32)
                .map_err(VcError::Backend)?;
            regs.rax = u64::from(a);
            regs.rbx = u64::from(b);
            regs.rcx = u64::from(c);
            regs.rdx = u64::from(d);
        }
    }
    regs.rip = regs.rip.wrapping_add(u64::from(decoded.len));
    Ok(())
}

/// Refuses a #VC raised while the handler runs (one CPU: a flag, not a counter).
#[derive(Debug, Default)]
pub struct NestingGuard {
    active: AtomicBool,
}

/// Held while a #VC is being handled; dropping it re-arms the guard.
#[derive(Debug)]
pub struct NestingToken<'a> {
    guard: &'a NestingGuard,
}

impl NestingGuard {
    /// A guard with no #VC in progress.
    pub const fn new() -> Self {
        Self {
            active: AtomicBool::new(false),
        }
    }

    /// Enters the handler; [`VcError::Nested`] if a #VC is already being handled.
    pub fn enter(&self) -> Result<NestingToken<'_>, VcError> {
        if self.active.swap(true, Ordering::AcqRel) {
            return Err(VcError::Nested);
        }
        Ok(NestingToken { guard: self })
    }

    /// Whether a #VC is being handled.
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }
}

impl Drop for NestingToken<'_> {
    fn drop(&mut self) {
        self.guard.active.store(false, Ordering::Release);
    }
}

/// Decode, check and emulate one #VC under `guard`: the whole handler minus reading the
/// instruction bytes and the frame, which the kernel does.
pub fn handle(
    guard: &NestingGuard,
    exit: u64,
    insn_bytes: &[u8],
    regs: &mut Regs,
    backend: &mut impl VcBackend,
) -> Result<Decoded, VcError> {
    let _token = guard.enter()?;
    let decoded = decode(exit, insn_bytes)?;
    emulate(regs, decoded, backend)?;
    Ok(decoded)
}

#[cfg(test)]
mod tests {
    use alloc::vec::Vec;

    use super::*;

    #[derive(Default)]
    struct Dev {
        log: Vec<(char, u32, u64)>,
        fail: bool,
    }

    impl VcBackend for Dev {
        fn io_in(&mut self, port: u16, size: IoSize) -> Result<u32, TerminateReason> {
            if self.fail {
                return Err(TerminateReason::Kms(KmsReason::HvProtocol));
            }
            self.log.push(('i', u32::from(port), size.bytes() as u64));
            Ok(0xA1B2_C3D4)
        }
        fn io_out(&mut self, port: u16, size: IoSize, value: u32) -> Result<(), TerminateReason> {
            self.log.push(('o', u32::from(port), u64::from(value)));
            let _ = size;
            Ok(())
        }
        fn rdmsr(&mut self, msr: u32) -> Result<u64, TerminateReason> {
            self.log.push(('r', msr, 0));
            Ok(0x1122_3344_5566_7788)
        }
        fn wrmsr(&mut self, msr: u32, value: u64) -> Result<(), TerminateReason> {
            self.log.push(('w', msr, value));
            Ok(())
        }
        fn cpuid(&mut self, leaf: u32, subleaf: u32) -> Result<[u32; 4], TerminateReason> {
            self.log.push(('c', leaf, u64::from(subleaf)));
            Ok([1, 2, 3, 4])
        }
    }

    const IO: u64 = exit_code::IOIO;

    #[test]
    fn decodes_every_in_out_form() {
        let cases: &[(&[u8], Insn, u8)] = &[
            (
                &[0xE4, 0x71],
                Insn::In(PortOperand::Imm(0x71), IoSize::B8),
                2,
            ),
            (
                &[0xE5, 0x40],
                Insn::In(PortOperand::Imm(0x40), IoSize::B32),
                2,
            ),
            (
                &[0x66, 0xE5, 0x40],
                Insn::In(PortOperand::Imm(0x40), IoSize::B16),
                3,
            ),
            (
                &[0xE6, 0x80],
                Insn::Out(PortOperand::Imm(0x80), IoSize::B8),
                2,
            ),
            (
                &[0xE7, 0x80],
                Insn::Out(PortOperand::Imm(0x80), IoSize::B32),
                2,
            ),
            (
                &[0x66, 0xE7, 0x80],
                Insn::Out(PortOperand::Imm(0x80), IoSize::B16),
                3,
            ),
            (&[0xEC], Insn::In(PortOperand::Dx, IoSize::B8), 1),
            (&[0xED], Insn::In(PortOperand::Dx, IoSize::B32), 1),
            (&[0x66, 0xED], Insn::In(PortOperand::Dx, IoSize::B16), 2),
            (&[0xEE], Insn::Out(PortOperand::Dx, IoSize::B8), 1),
            (&[0xEF], Insn::Out(PortOperand::Dx, IoSize::B32), 1),
            (&[0x66, 0xEF], Insn::Out(PortOperand::Dx, IoSize::B16), 2),
        ];
        for &(bytes, insn, len) in cases {
            assert_eq!(decode(IO, bytes), Ok(Decoded { insn, len }), "{bytes:x?}");
        }
        assert_eq!(
            decode(exit_code::MSR, &[0x0F, 0x32, 0x90]),
            Ok(Decoded {
                insn: Insn::Rdmsr,
                len: 2
            })
        );
        assert_eq!(
            decode(exit_code::MSR, &[0x0F, 0x30]),
            Ok(Decoded {
                insn: Insn::Wrmsr,
                len: 2
            })
        );
        assert_eq!(
            decode(exit_code::CPUID, &[0x0F, 0xA2]),
            Ok(Decoded {
                insn: Insn::Cpuid,
                len: 2
            })
        );
    }

    #[test]
    fn refuses_what_it_cannot_check() {
        // String I/O (rep outsb), MMIO exits, unknown bytes, truncation, a mismatch.
        assert!(matches!(
            decode(IO, &[0xF3, 0x6E]),
            Err(VcError::UnknownInstruction(0xF3))
        ));
        assert!(matches!(
            decode(IO, &[0x6E]),
            Err(VcError::UnknownInstruction(0x6E))
        ));
        assert!(matches!(
            decode(exit_code::MMIO_READ, &[0x8B, 0x00]),
            Err(VcError::UnsupportedExit(exit_code::MMIO_READ))
        ));
        assert!(matches!(decode(IO, &[0xE4]), Err(VcError::Truncated)));
        assert!(matches!(decode(IO, &[]), Err(VcError::Truncated)));
        assert!(matches!(
            decode(exit_code::MSR, &[0x66, 0x0F, 0x32]),
            Err(VcError::UnknownInstruction(0x66))
        ));
        assert!(matches!(
            decode(exit_code::MSR, &[0xEC]),
            Err(VcError::Mismatch {
                exit_code: exit_code::MSR,
                insn: Insn::In(PortOperand::Dx, IoSize::B8)
            })
        ));
        assert!(matches!(
            decode(IO, &[0x0F, 0xA2]),
            Err(VcError::Mismatch {
                insn: Insn::Cpuid,
                ..
            })
        ));
        assert_eq!(
            VcError::UnsupportedExit(0).terminate_reason(),
            TerminateReason::Kms(KmsReason::VcUnsupported)
        );
    }

    #[test]
    fn emulation_writes_registers_like_the_cpu() {
        let mut dev = Dev::default();
        let base = Regs {
            rax: 0xFFFF_FFFF_FFFF_FFFF,
            rbx: 0xBB,
            rcx: 0xC001_0131,
            rdx: 0xFFFF_0000_0000_03F8,
            rip: 0x1000,
        };
        // in al, dx: only AL changes; port from DX.
        let mut r = base;
        handle(&NestingGuard::new(), IO, &[0xEC], &mut r, &mut dev).unwrap();
        assert_eq!(r.rax, 0xFFFF_FFFF_FFFF_FFD4);
        assert_eq!(r.rip, 0x1001);
        // in ax, 0x40 (16-bit): only AX.
        let mut r = base;
        handle(
            &NestingGuard::new(),
            IO,
            &[0x66, 0xE5, 0x40],
            &mut r,
            &mut dev,
        )
        .unwrap();
        assert_eq!(r.rax, 0xFFFF_FFFF_FFFF_C3D4);
        assert_eq!(r.rip, 0x1003);
        // in eax, dx: zero-extended.
        let mut r = base;
        handle(&NestingGuard::new(), IO, &[0xED], &mut r, &mut dev).unwrap();
        assert_eq!(r.rax, 0xA1B2_C3D4);
        // out dx, ax: masked value.
        let mut r = base;
        handle(&NestingGuard::new(), IO, &[0x66, 0xEF], &mut r, &mut dev).unwrap();
        // rdmsr / wrmsr / cpuid.
        let mut r = base;
        handle(
            &NestingGuard::new(),
            exit_code::MSR,
            &[0x0F, 0x32],
            &mut r,
            &mut dev,
        )
        .unwrap();
        assert_eq!((r.rax, r.rdx, r.rip), (0x5566_7788, 0x1122_3344, 0x1002));
        let mut r = base;
        r.rax = 0xDEAD_0000_89AB_CDEF;
        r.rdx = 0xBEEF_0000_0123_4567;
        handle(
            &NestingGuard::new(),
            exit_code::MSR,
            &[0x0F, 0x30],
            &mut r,
            &mut dev,
        )
        .unwrap();
        let mut r = base;
        r.rax = 0x8000_001F;
        r.rcx = 0;
        handle(
            &NestingGuard::new(),
            exit_code::CPUID,
            &[0x0F, 0xA2],
            &mut r,
            &mut dev,
        )
        .unwrap();
        assert_eq!((r.rax, r.rbx, r.rcx, r.rdx), (1, 2, 3, 4));
        assert_eq!(
            dev.log,
            [
                ('i', 0x3F8, 1),
                ('i', 0x40, 2),
                ('i', 0x3F8, 4),
                ('o', 0x3F8, 0xFFFF),
                ('r', 0xC001_0131, 0),
                ('w', 0xC001_0131, 0x0123_4567_89AB_CDEF),
                ('c', 0x8000_001F, 0),
            ]
        );
    }

    #[test]
    fn nesting_guard_and_backend_errors() {
        let guard = NestingGuard::new();
        let mut dev = Dev::default();
        let mut r = Regs::default();
        {
            let _outer = guard.enter().unwrap();
            assert!(guard.is_active());
            let nested = handle(&guard, IO, &[0xEC], &mut r, &mut dev);
            assert!(matches!(nested, Err(VcError::Nested)));
            assert_eq!(r.rip, 0, "a refused #VC does not advance RIP");
        }
        assert!(!guard.is_active());
        handle(&guard, IO, &[0xEC], &mut r, &mut dev).unwrap();
        assert!(!guard.is_active(), "the token re-arms the guard");
        assert_eq!(
            VcError::Nested.terminate_reason(),
            TerminateReason::Kms(KmsReason::VcNested)
        );
        dev.fail = true;
        let mut r = Regs::default();
        let e = handle(&guard, IO, &[0xEC], &mut r, &mut dev);
        assert!(matches!(
            e,
            Err(VcError::Backend(TerminateReason::Kms(
                KmsReason::HvProtocol
            )))
        ));
        assert_eq!(r.rip, 0);
        assert!(!guard.is_active());
    }
}
