//! The #VC handler (vector 29, AMD64 APM vol. 2 §15.35.5): the safety net behind the
//! platform backend. Decoding and emulation are `sev_guest::vc` (host-tested); this module
//! reads the instruction bytes and the saved registers, performs the access through a
//! [`VcBackend`], writes the registers back and advances `RIP`.
//!
//! - Own IST stack (IST3, [`super::gdt::IST_VC`]), and a [`NestingGuard`]: a #VC raised
//!   while one is handled (the emulation itself trapping) is never emulated; the guest
//!   terminates (reason 0x09) before it prints anything, since printing is port I/O.
//! - Anything not emulated (MMIO, string I/O, an unknown or mismatched instruction, a `RIP`
//!   outside the image) terminates through the GHCB MSR protocol with the reason
//!   `sev_guest` maps the error to (0x08), or, without SEV-ES, is reported like any other
//!   exception.
//! - The backend ([`Native`]) performs the access through the platform HAL: the GHCB session's
//!   IOIO/MSR exits and the CPUID page once `boot::snp_session` has set them up, the plain
//!   instructions before that. On SNP hardware a #VC between this IDT and the session (the
//!   console is held then, so none is expected) traps again and the nesting guard ends it.
//!   Under TCG no #VC ever happens; `ckms.test=vc` ([`self_test`]) drives the handler with
//!   synthetic frames on real instructions instead.

use core::arch::naked_asm;

use sev_guest::msr::{KmsReason, TerminateReason};
use sev_guest::nae::{IoSize, exit_code};
use sev_guest::vc::{self, Decoded, MAX_INSN_LEN, NestingGuard, Regs, VcBackend, VcError};

use super::idt::Frame;
use super::{cpuid, port, rdmsr, wrmsr};

static GUARD: NestingGuard = NestingGuard::new();

/// The plain instructions (no memory encryption, or the emulation of an access the
/// interrupted code was performing anyway).
pub struct Native;

impl VcBackend for Native {
    fn io_in(&mut self, p: u16, size: IoSize) -> Result<u32, TerminateReason> {
        Ok(match size {
            IoSize::B8 => u32::from(port::inb(p)),
            IoSize::B16 => u32::from(port::inw(p)),
            IoSize::B32 => port::inl(p),
        })
    }

    fn io_out(&mut self, p: u16, size: IoSize, value: u32) -> Result<(), TerminateReason> {
        match size {
            IoSize::B8 => port::outb(p, value as u8),
            IoSize::B16 => port::outw(p, value as u16),
            IoSize::B32 => port::outl(p, value),
        }
        Ok(())
    }

    fn rdmsr(&mut self, msr: u32) -> Result<u64, TerminateReason> {
        // SAFETY: the interrupted kernel code was executing exactly this `rdmsr`.
        Ok(unsafe { rdmsr(msr) })
    }

    fn wrmsr(&mut self, msr: u32, value: u64) -> Result<(), TerminateReason> {
        // SAFETY: the interrupted kernel code was executing exactly this `wrmsr`.
        unsafe { wrmsr(msr, value) };
        Ok(())
    }

    fn cpuid(&mut self, leaf: u32, subleaf: u32) -> Result<[u32; 4], TerminateReason> {
        let r = cpuid(leaf, subleaf);
        Ok([r.eax, r.ebx, r.ecx, r.edx])
    }
}

/// Why the handler did not emulate: `sev_guest`'s reasons plus a `RIP` outside the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VcFailure {
    /// Decoding or emulation refused.
    Vc(VcError),
    /// `RIP` is not inside the kernel image (no code of ours raised it).
    RipOutsideImage(u64),
}

impl VcFailure {
    fn terminate_reason(&self) -> TerminateReason {
        match self {
            Self::Vc(e) => e.terminate_reason(),
            Self::RipOutsideImage(_) => TerminateReason::Kms(KmsReason::VcUnsupported),
        }
    }
}

/// Decodes and emulates the #VC in `frame` through `backend` (no fatal action).
fn emulate_frame(frame: &mut Frame, backend: &mut impl VcBackend) -> Result<Decoded, VcFailure> {
    let rip = frame.rip;
    let in_image = rip >= crate::image_base()
        && rip
            .checked_add(MAX_INSN_LEN as u64)
            .is_some_and(|end| end <= crate::image_end());
    if !in_image {
        return Err(VcFailure::RipOutsideImage(rip));
    }
    let mut bytes = [0u8; MAX_INSN_LEN];
    for (i, b) in bytes.iter_mut().enumerate() {
        // SAFETY: [rip, rip + MAX_INSN_LEN) lies inside the loaded image (checked above),
        // which is mapped and readable for the kernel's whole life; a byte read has no side
        // effect.
        *b = unsafe { core::ptr::read_volatile((rip + i as u64) as *const u8) };
    }
    let mut regs = Regs {
        rax: frame.rax,
        rbx: frame.rbx,
        rcx: frame.rcx,
        rdx: frame.rdx,
        rip,
    };
    let decoded =
        vc::handle(&GUARD, frame.error_code, &bytes, &mut regs, backend).map_err(VcFailure::Vc)?;
    frame.rax = regs.rax;
    frame.rbx = regs.rbx;
    frame.rcx = regs.rcx;
    frame.rdx = regs.rdx;
    frame.rip = regs.rip;
    Ok(decoded)
}

/// The #VC entry from the exception dispatcher: emulates and returns (the stub resumes at
/// the advanced `RIP`), or ends the guest.
pub fn on_vc(frame: &mut Frame) {
    let Err(failure) = emulate_frame(frame, &mut Native) else {
        return;
    };
    // Under SEV-ES/SNP terminate first: printing is port I/O, which would raise #VC again.
    if let Some(ghcb) = crate::platform::ghcb_msr() {
        crate::platform::snp::terminate(ghcb, failure.terminate_reason());
    }
    crate::console::emergency(format_args!("\nckms: #VC not emulated: {failure:?}\n"));
    super::idt::report_and_stop(frame)
}

// Real instructions for the self-test's synthetic frames: never executed, only decoded.
#[unsafe(naked)]
extern "C" fn insn_in_al_dx() {
    naked_asm!("in al, dx", "ret")
}
#[unsafe(naked)]
extern "C" fn insn_cpuid() {
    naked_asm!("cpuid", "ret")
}
#[unsafe(naked)]
extern "C" fn insn_rdmsr() {
    naked_asm!("rdmsr", "ret")
}

/// What [`self_test`] checked.
#[derive(Clone, Copy, Debug)]
pub struct SelfTest {
    /// `in al, dx` on COM1's line-status register: `RIP` advance.
    pub in_len: u8,
    /// `cpuid` leaf 0: `RIP` advance (the vendor registers matched a direct `cpuid`).
    pub cpuid_len: u8,
    /// `rdmsr` of EFER: `RIP` advance (the value matched a direct `rdmsr`).
    pub rdmsr_len: u8,
}

/// `ckms.test=vc`: the handler on synthetic #VC frames whose `RIP` points at real `in`,
/// `cpuid` and `rdmsr` instructions in the image: registers and `RIP` as the CPU would leave
/// them, a nested #VC refused, an instruction that does not match the exit code refused.
pub fn self_test() -> Result<SelfTest, &'static str> {
    const EFER: u32 = 0xC000_0080;
    let at = |f: extern "C" fn()| f as usize as u64;

    let mut f = Frame::synthetic(29, exit_code::IOIO, at(insn_in_al_dx));
    f.rax = 0x1122_3344_5566_77AA;
    f.rdx = 0xFFFF_0000_0000_03FD; // COM1 line status; only DX counts
    let d = emulate_frame(&mut f, &mut Native).map_err(|_| "in al, dx not emulated")?;
    if f.rip != at(insn_in_al_dx) + 1 || f.rax >> 8 != 0x11_2233_4455_6677 {
        return Err("in al, dx: RIP or the upper RAX bits wrong");
    }
    let in_len = d.len;

    let mut f = Frame::synthetic(29, exit_code::CPUID, at(insn_cpuid));
    f.rax = 0xFFFF_FFFF_0000_0000; // leaf 0; the upper half must be cleared
    let d = emulate_frame(&mut f, &mut Native).map_err(|_| "cpuid not emulated")?;
    let direct = cpuid(0, 0);
    let want = [direct.eax, direct.ebx, direct.ecx, direct.edx].map(u64::from);
    if [f.rax, f.rbx, f.rcx, f.rdx] != want || f.rip != at(insn_cpuid) + 2 {
        return Err("cpuid: registers or RIP wrong");
    }
    let cpuid_len = d.len;

    let mut f = Frame::synthetic(29, exit_code::MSR, at(insn_rdmsr));
    f.rcx = u64::from(EFER);
    let d = emulate_frame(&mut f, &mut Native).map_err(|_| "rdmsr not emulated")?;
    // SAFETY: EFER exists on every x86-64 CPU.
    let efer = unsafe { rdmsr(EFER) };
    if (f.rdx << 32) | f.rax != efer || f.rip != at(insn_rdmsr) + 2 {
        return Err("rdmsr: EDX:EAX or RIP wrong");
    }
    let rdmsr_len = d.len;

    // A #VC while one is handled: refused, nothing changed.
    let mut f = Frame::synthetic(29, exit_code::IOIO, at(insn_in_al_dx));
    {
        let _outer = GUARD.enter().map_err(|_| "guard already held")?;
        if emulate_frame(&mut f, &mut Native) != Err(VcFailure::Vc(VcError::Nested)) {
            return Err("nested #VC not refused");
        }
    }
    if f.rip != at(insn_in_al_dx) || GUARD.is_active() {
        return Err("nested #VC changed RIP or left the guard held");
    }
    // An exit code that does not match the instruction.
    let mut f = Frame::synthetic(29, exit_code::IOIO, at(insn_cpuid));
    if !matches!(
        emulate_frame(&mut f, &mut Native),
        Err(VcFailure::Vc(VcError::Mismatch { .. }))
    ) {
        return Err("IOIO #VC on cpuid not refused");
    }
    // MMIO is not emulated by this handler.
    let mut f = Frame::synthetic(29, exit_code::MMIO_READ, at(insn_in_al_dx));
    if emulate_frame(&mut f, &mut Native)
        != Err(VcFailure::Vc(VcError::UnsupportedExit(
            exit_code::MMIO_READ,
        )))
    {
        return Err("MMIO #VC not refused");
    }
    Ok(SelfTest {
        in_len,
        cpuid_len,
        rdmsr_len,
    })
}
