//! The Intel TDX instruction the kernel executes itself, `TDCALL`, and the #VE gate (vector
//! 20) that sits on it.
//!
//! - [`KernelTdcall`] implements `tdx_td::Tdcall`: every field of `tdx_td::Regs` is loaded
//!   into its register before `TDCALL` (`66 0F 01 CC`, TDX Module ABI spec 348551, "TDCALL
//!   Instruction") and stored back after it. Nothing is interpreted here; `tdx-td` (host-tested
//!   against its fake TDX module) decides everything from the returned registers.
//! - Why not the `tdx-guest` crate: it depends on the `x86_64` crate with that crate's default
//!   features, which include `nightly` (`asm_const`, `abi_x86_interrupt`, …); the kernel is
//!   built with stable Rust 1.95 only. One `asm!` statement is all `TDCALL` needs.
//! - This module is the seam of the loopback-TDX test build (`loopback-tdx` feature): there,
//!   and only there, [`KernelTdcall`] calls the stub in `src/loopback_tdx.rs` instead of the
//!   instruction, which TCG does not have. Everything above it — `tdx-td`, the TDX backend
//!   (`crate::platform::tdx`), the #VE handler below — is the same code in both builds.
//! - [`on_ve`]: the #VE handler (own IST stack, [`super::gdt::IST_VE`]). Its first action is
//!   TDG.VP.VEINFO.GET (ABI spec, "TDG.VP.VEINFO.GET Leaf": the information is valid once and
//!   a #VE while it is unread escalates to #DF), then `tdx_td::ve::handle_ve` services port
//!   I/O, CPUID, RDMSR/WRMSR and HLT through TDG.VP.VMCALL (GHCI 348552 §3.7–§3.11) and the
//!   registers are written back. MMIO (an EPT violation on a shared GPA, GHCI §3.7
//!   #VE.RequestMMIO) needs an instruction decoder for `mov` forms, which the decoder shared
//!   with the SNP #VC path (`sev_guest::vc`) does not have yet: the TD ends
//!   (`TDG.VP.VMCALL<ReportFatalError>`, GHCI §3.4) with the reason on the console.

use sev_guest::vc::NestingGuard;
use tdx_td::{Regs, Tdcall};

use super::idt::Frame;

/// A #VE raised while one is handled (after VEINFO.GET) would reuse the IST4 stack and
/// overwrite the outer frame: it is never serviced, the TD ends.
static GUARD: NestingGuard = NestingGuard::new();

/// The kernel's `TDCALL` (the loopback stub's in the test build).
pub struct KernelTdcall;

#[cfg(not(feature = "loopback-tdx"))]
impl Tdcall for KernelTdcall {
    fn tdcall(&mut self, regs: &mut Regs) {
        // SAFETY: a `KernelTdcall` is used only once the TDX backend is established
        // (`crate::platform::tdx`, after CPUID leaf 0x21 said "IntelTDX"), so TDCALL is
        // defined. The TDX module reads and writes exactly RAX, RCX, RDX, R8–R15 (declared
        // here; RBX, RSI, RDI, RBP and RSP are preserved by the module for the leaves
        // `tdx-td` issues, and a TDG.VP.VMCALL exposes only R10–R15: RCX = 0xFC00). Leaves
        // that write memory (TDG.MR.REPORT, TDG.MEM.PAGE.ACCEPT) write only buffers `tdx-td`
        // names and the caller owns: no `nomem`, so the compiler assumes memory changed.
        unsafe {
            core::arch::asm!(
                ".byte 0x66, 0x0f, 0x01, 0xcc",
                inout("rax") regs.rax,
                inout("rcx") regs.rcx,
                inout("rdx") regs.rdx,
                inout("r8") regs.r8,
                inout("r9") regs.r9,
                inout("r10") regs.r10,
                inout("r11") regs.r11,
                inout("r12") regs.r12,
                inout("r13") regs.r13,
                inout("r14") regs.r14,
                inout("r15") regs.r15,
                options(nostack),
            )
        }
    }
}

#[cfg(feature = "loopback-tdx")]
impl Tdcall for KernelTdcall {
    fn tdcall(&mut self, regs: &mut Regs) {
        crate::loopback_tdx::tdcall(regs);
    }
}

/// The #VE entry from the exception dispatcher: services the exit and returns (the stub
/// resumes at the advanced `RIP`), or ends the TD. Without an established TDX backend a #VE
/// is reported like any other exception.
pub fn on_ve(frame: &mut Frame) {
    let Ok(_token) = GUARD.enter() else {
        crate::platform::tdx::fatal("#VE inside the #VE handler", &"nested");
    };
    let mut ve = tdx_td::ve::VeFrame {
        rax: frame.rax,
        rbx: frame.rbx,
        rcx: frame.rcx,
        rdx: frame.rdx,
        rip: frame.rip,
        rflags: frame.rflags,
    };
    match crate::platform::tdx::handle_ve(&mut ve) {
        Ok(()) => {
            frame.rax = ve.rax;
            frame.rbx = ve.rbx;
            frame.rcx = ve.rcx;
            frame.rdx = ve.rdx;
            frame.rip = ve.rip;
        }
        Err(crate::platform::tdx::VeError::NoBackend) => super::idt::report_and_stop(frame),
        Err(e) => crate::platform::tdx::fatal("#VE not handled", &e),
    }
}

/// What [`self_test`] checked.
#[cfg(feature = "loopback-tdx")]
#[derive(Clone, Copy, Debug)]
pub struct SelfTest {
    /// CPUID leaf 0 through a #VE matched the instruction's vendor registers.
    pub cpuid: bool,
    /// `in al, dx` on COM1's line-status register through a #VE.
    pub io: bool,
    /// A second VEINFO.GET after the handler finds no information (consumed once).
    pub consumed_once: bool,
}

/// The loopback build's #VE self-test: a real `int 0x14` through the IDT gate on the #VE IST
/// stack, with the stub holding the #VE information the TDX module would have for the
/// instruction that follows (`cpuid` / `in al, dx`). The handler reads it with VEINFO.GET,
/// services it through TDVMCALL and skips the instruction, exactly as for a hardware #VE
/// (where `RIP` would point at the instruction itself; after `int` it points there too).
#[cfg(feature = "loopback-tdx")]
pub fn self_test() -> SelfTest {
    use tdx_td::ve::{EXIT_CPUID, EXIT_IO, VeInfo};

    let direct = super::cpuid(0, 0);
    crate::loopback_tdx::inject_ve(VeInfo {
        exit_reason: EXIT_CPUID,
        qualification: 0,
        gla: 0,
        gpa: 0,
        instr_len: 2,
        instr_info: 0,
    });
    let (eax, ebx, ecx, edx): (u32, u32, u32, u32);
    // SAFETY: vector 20's gate runs `on_ve`, which consumes the injected CPUID #VE, answers it
    // through TDVMCALL<Instruction.CPUID> into the four registers declared here and resumes
    // after the 2-byte `cpuid` (which is therefore never executed). RBX is saved around it
    // (LLVM reserves it).
    unsafe {
        core::arch::asm!(
            "mov {tmp:r}, rbx",
            "int 0x14",
            "cpuid",
            "xchg {tmp:r}, rbx",
            tmp = out(reg) ebx,
            inout("eax") 0u32 => eax,
            inout("ecx") 0u32 => ecx,
            out("edx") edx,
        )
    };
    let cpuid = [eax, ebx, ecx, edx] == [direct.eax, direct.ebx, direct.ecx, direct.edx];

    const COM1_LSR: u16 = 0x3fd;
    crate::loopback_tdx::inject_ve(VeInfo {
        exit_reason: EXIT_IO,
        // SDM Table 28-5: size − 1 = 0 (1 byte), bit 3 IN, port in bits 31:16.
        qualification: (u64::from(COM1_LSR) << 16) | (1 << 3),
        gla: 0,
        gpa: 0,
        instr_len: 1,
        instr_info: 0,
    });
    let rax: u64;
    // SAFETY: as above: the injected IO #VE is serviced through TDVMCALL<Instruction.IO>
    // (COM1's line-status register, read-only) into AL and the 1-byte `in` is skipped.
    unsafe {
        core::arch::asm!(
            "int 0x14",
            "in al, dx",
            inout("rax") 0xAAAA_AAAA_AAAA_AA00u64 => rax,
            in("dx") COM1_LSR,
        )
    };
    // Bits 5/6 (transmitter empty) are set on an idle 16550; RAX's upper bits are kept.
    let io = rax >> 8 == 0x00AA_AAAA_AAAA_AAAA && rax & 0x60 != 0;

    let consumed_once = matches!(
        tdx_td::ve::veinfo_get(&mut KernelTdcall),
        Err(tdx_td::Error::NoVeInfo)
    );
    SelfTest {
        cpuid,
        io,
        consumed_once,
    }
}
