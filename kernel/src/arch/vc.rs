//! The #VC handler (vector 29, AMD64 APM vol. 2 §15.35.5): the safety net behind the
//! platform backend. Decoding and emulation are `sev_guest::vc` (host-tested); this module
//! reads the instruction bytes and the saved registers, performs the access through a
//! [`VcBackend`], writes the registers back and advances `RIP`.
//!
//! - Own IST stack (IST3, [`super::gdt::IST_VC`]), and a [`NestingGuard`]: a #VC raised
//!   while one is handled (the emulation itself trapping) is never emulated; the guest
//!   terminates (reason 0x09) before it prints anything, since printing is port I/O.
//! - MMIO (exit code NPF 0x400): the `mov` at `RIP` decoded by `sev_guest::mmio` over all
//!   sixteen registers, checked against the device windows, performed as a GHCB MMIO exit
//!   ([`on_vc`]; the loopback build's `ckms.test=unmapped-bar` reaches it through a #PF).
//! - Anything not emulated (string I/O, an unknown or mismatched instruction, a `RIP`
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

use core::sync::atomic::{AtomicU64, Ordering};

use sev_guest::mmio::{self, Gprs, MAX_MMIO_INSN_LEN, MmioError, MmioInsn};
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
    /// The MMIO path (exit code NPF) refused: decoding, window, or the GHCB exit.
    Mmio(MmioError),
}

impl VcFailure {
    fn terminate_reason(&self) -> TerminateReason {
        match self {
            Self::Vc(e) => e.terminate_reason(),
            Self::RipOutsideImage(_) => TerminateReason::Kms(KmsReason::VcUnsupported),
            Self::Mmio(e) => e.terminate_reason(),
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

/// Emulations by the MMIO path (for the unmapped-BAR self-test): count, and the last
/// instruction's `RIP` and length.
static MMIO_EMULATED: AtomicU64 = AtomicU64::new(0);
static MMIO_LAST_RIP: AtomicU64 = AtomicU64::new(0);
static MMIO_LAST_LEN: AtomicU64 = AtomicU64::new(0);

/// The MMIO path of the handler (#VC with exit code NPF 0x400, AMD 56421 §4.1.5: the
/// hypervisor reserved the page in the nested page tables; on SNP the guest gets no fault
/// address, so `fault` is `None`): reads the instruction at `RIP`, decodes the `mov` with
/// `sev_guest::mmio` over all sixteen saved registers, checks the address lies in a device
/// window ([`super::mmio::windows`]), performs it as a GHCB MMIO exit and advances `RIP`.
/// `fault` is `CR2` for the loopback build's #PF stand-in.
fn emulate_mmio_frame(frame: &mut Frame, fault: Option<u64>) -> Result<MmioInsn, VcFailure> {
    emulate_mmio_frame_with(frame, fault, &GUARD, &mut crate::platform::ghcb::GhcbMmio)
}

/// The MMIO fault path over any device backend: the GHCB MMIO exits above, TDVMCALL
/// #VE.RequestMMIO for TDX's EPT-violation #VE (`super::tdx::on_ve`, with its own `guard`).
pub(super) fn emulate_mmio_frame_with(
    frame: &mut Frame,
    fault: Option<u64>,
    guard: &NestingGuard,
    backend: &mut impl mmio::MmioBackend,
) -> Result<MmioInsn, VcFailure> {
    let rip = frame.rip;
    let in_image = rip >= crate::image_base()
        && rip
            .checked_add(MAX_MMIO_INSN_LEN as u64)
            .is_some_and(|end| end <= crate::image_end());
    if !in_image {
        return Err(VcFailure::RipOutsideImage(rip));
    }
    let mut bytes = [0u8; MAX_MMIO_INSN_LEN];
    for (i, b) in bytes.iter_mut().enumerate() {
        // SAFETY: inside the loaded image (checked above), mapped and readable for the
        // kernel's whole life; a byte read has no side effect.
        *b = unsafe { core::ptr::read_volatile((rip + i as u64) as *const u8) };
    }
    let f = &*frame;
    let mut g = Gprs {
        r: [
            f.rax, f.rcx, f.rdx, f.rbx, f.rsp, f.rbp, f.rsi, f.rdi, f.r8, f.r9, f.r10, f.r11,
            f.r12, f.r13, f.r14, f.r15,
        ],
        rip,
    };
    let windows = super::mmio::windows();
    let insn =
        mmio::handle(guard, &bytes, &mut g, fault, &windows, backend).map_err(VcFailure::Mmio)?;
    let [
        rax,
        rcx,
        rdx,
        rbx,
        rsp,
        rbp,
        rsi,
        rdi,
        r8,
        r9,
        r10,
        r11,
        r12,
        r13,
        r14,
        r15,
    ] = g.r;
    (frame.rax, frame.rcx, frame.rdx, frame.rbx) = (rax, rcx, rdx, rbx);
    (frame.rsp, frame.rbp, frame.rsi, frame.rdi) = (rsp, rbp, rsi, rdi);
    (frame.r8, frame.r9, frame.r10, frame.r11) = (r8, r9, r10, r11);
    (frame.r12, frame.r13, frame.r14, frame.r15) = (r12, r13, r14, r15);
    frame.rip = g.rip;
    MMIO_EMULATED.fetch_add(1, Ordering::Relaxed);
    MMIO_LAST_RIP.store(rip, Ordering::Relaxed);
    MMIO_LAST_LEN.store(u64::from(insn.len), Ordering::Relaxed);
    Ok(insn)
}

/// Ends the guest after a refused #VC (or MMIO fault).
fn vc_fatal(frame: &Frame, failure: VcFailure) -> ! {
    // Under SEV-ES/SNP terminate first: printing is port I/O, which would raise #VC again.
    if let Some(ghcb) = crate::platform::ghcb_msr() {
        crate::platform::snp::terminate(ghcb, failure.terminate_reason());
    }
    crate::console::emergency(format_args!("\nckms: #VC not emulated: {failure:?}\n"));
    super::idt::report_and_stop(frame)
}

/// The loopback build's stand-in for the NPF #VC: TCG raises no #VC, so with
/// `ckms.test=unmapped-bar` the BARs stay unmapped and a `mov` on one raises a not-present
/// #PF, which runs the same MMIO path with `CR2` as the fault address. `false`: not such a
/// fault (report it as usual).
#[cfg(feature = "loopback-ghcb")]
pub fn on_page_fault(frame: &mut Frame) -> bool {
    let cr2 = super::cr2();
    if !super::mmio::unmapped_bars()
        || frame.error_code & 1 != 0
        || !super::mmio::windows().contains(cr2, 1)
    {
        return false;
    }
    if let Err(failure) = emulate_mmio_frame(frame, Some(cr2)) {
        vc_fatal(frame, failure);
    }
    true
}

/// What the MMIO path did: emulations so far, last `RIP`, last length.
#[cfg(any(feature = "loopback-ghcb", feature = "loopback-tdx"))]
pub fn mmio_emulated() -> (u64, u64, u64) {
    (
        MMIO_EMULATED.load(Ordering::Relaxed),
        MMIO_LAST_RIP.load(Ordering::Relaxed),
        MMIO_LAST_LEN.load(Ordering::Relaxed),
    )
}

/// The #VC entry from the exception dispatcher: emulates and returns (the stub resumes at
/// the advanced `RIP`), or ends the guest.
pub fn on_vc(frame: &mut Frame) {
    if frame.error_code == exit_code::NPF {
        if let Err(failure) = emulate_mmio_frame(frame, None) {
            vc_fatal(frame, failure);
        }
        return;
    }
    let Err(failure) = emulate_frame(frame, &mut Native) else {
        return;
    };
    vc_fatal(frame, failure)
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
#[unsafe(naked)]
extern "C" fn insn_mov_load() {
    naked_asm!("mov eax, dword ptr [rdi + 8]", "ret")
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
    // An NPF #VC (the MMIO path) on a real `mov` whose address is no device's: refused
    // before any exit, nothing changed.
    let mut f = Frame::synthetic(29, exit_code::NPF, at(insn_mov_load));
    f.rdi = 0x1000;
    if emulate_mmio_frame(&mut f, None) != Err(VcFailure::Mmio(MmioError::OutsideWindows(0x1008)))
        || f.rip != at(insn_mov_load)
        || f.rax != 0
    {
        return Err("NPF #VC outside the device windows not refused");
    }
    Ok(SelfTest {
        in_len,
        cpuid_len,
        rdmsr_len,
    })
}

/// What [`unmapped_bar_self_test`] checked.
#[cfg(feature = "loopback-ghcb")]
#[derive(Clone, Copy, Debug)]
pub struct UnmappedBarTest {
    /// `RIP` advance of the store (`mov dword ptr [reg], 1`).
    pub store_len: u64,
    /// `RIP` advance of the load (`mov r32, dword ptr [reg + 4]`).
    pub load_len: u64,
    /// The value loaded (virtio `device_feature` bits 63:32).
    pub value: u32,
    /// GHCB MMIO exits the two instructions made.
    pub exits: u64,
}

/// `ckms.test=unmapped-bar` (loopback build): two real `mov`s on virtio's common configuration
/// (left unmapped): a store of 1 to `device_feature_select`, a load of `device_feature`. Each
/// faults, is decoded and performed as a GHCB MMIO exit; the handler must resume exactly after
/// each instruction (its recorded `RIP` and length equal the labels'), the loaded value must
/// equal what a direct GHCB MMIO read returns, and include VIRTIO_F_VERSION_1 (bit 32).
#[cfg(feature = "loopback-ghcb")]
pub fn unmapped_bar_self_test() -> Result<UnmappedBarTest, &'static str> {
    use sev_guest::mmio::Width;
    if !super::mmio::unmapped_bars() || !crate::platform::ghcb::established() {
        return Err("BARs mapped or no GHCB session");
    }
    let bar = super::mmio::first_bar().ok_or("no BAR registered")?;
    let (n0, _, _) = mmio_emulated();
    let exits0 = crate::platform::ghcb::stats().map_or(0, |s| s.mmio);
    let (store_at, load_at, end_at, value): (u64, u64, u64, u32);
    // SAFETY: `bar` is virtio's common configuration (virtio 1.2 §4.1.4.3), not present in the
    // page tables: both accesses fault and are emulated (a not-present #PF in a device window,
    // `on_page_fault`), writing 1 to `device_feature_select` (offset 0) and reading
    // `device_feature` (offset 4), which the driver no longer uses after negotiation.
    unsafe {
        core::arch::asm!(
            "lea {s}, [rip + 2f]",
            "lea {l}, [rip + 3f]",
            "lea {e}, [rip + 4f]",
            "2:",
            "mov dword ptr [{p}], 1",
            "3:",
            "mov {v:e}, dword ptr [{p} + 4]",
            "4:",
            p = in(reg) bar,
            s = out(reg) store_at,
            l = out(reg) load_at,
            e = out(reg) end_at,
            v = out(reg) value,
            options(nostack),
        );
    }
    let (n1, last_rip, last_len) = mmio_emulated();
    let exits = crate::platform::ghcb::stats().map_or(0, |s| s.mmio) - exits0;
    if n1 != n0 + 2 {
        return Err("the two movs were not both emulated");
    }
    if last_rip != load_at || last_rip + last_len != end_at {
        return Err("the load's RIP or length differs from the instruction's");
    }
    let direct = crate::platform::ghcb::mmio_read(bar + 4, Width::B4).ok_or("no session")?;
    if u64::from(value) != direct || value & 1 == 0 {
        return Err("the loaded value differs from a direct GHCB MMIO read");
    }
    Ok(UnmappedBarTest {
        store_len: load_at - store_at,
        load_len: end_at - load_at,
        value,
        exits,
    })
}
