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
//!   registers are written back. MMIO (exit reason 48, an EPT violation on a shared GPA) takes
//!   the SNP #VC handler's MMIO path (`super::vc::emulate_mmio_frame_with`): the `mov` at
//!   `RIP` decoded by `sev_guest::mmio` over all sixteen registers, its address checked
//!   against the device windows and against the #VE's GPA (shared bit cleared: the kernel's
//!   identity map), performed as `TDG.VP.VMCALL<#VE.RequestMMIO>` (GHCI §3.7;
//!   `crate::platform::tdx::TdxMmio`), `RIP` advanced by the decoded length (the #VE gives no
//!   instruction length for an EPT violation), under its own nesting guard. Anything refused
//!   ends the TD (`TDG.VP.VMCALL<ReportFatalError>`, GHCI §3.4) with the reason on the console.

use sev_guest::vc::NestingGuard;
use tdx_td::{Regs, Tdcall};

use super::idt::Frame;

/// A #VE raised while one is handled (after VEINFO.GET) would reuse the IST4 stack and
/// overwrite the outer frame: it is never serviced, the TD ends.
static GUARD: NestingGuard = NestingGuard::new();

/// The MMIO decoder's guard (taken inside the #VE's).
static MMIO_GUARD: NestingGuard = NestingGuard::new();

/// The kernel's `TDCALL` (the loopback stub's in the test build).
pub struct KernelTdcall;

impl KernelTdcall {
    /// Whether the TD's GPA space has a shared alias the page tables select with the shared
    /// bit (GHCI 348552 §1.3). On hardware it always has: the page-attribute rule is
    /// `PteRule::tdx(GPAW)`. The loopback stub says yes too (`crate::loopback_tdx::SHARED_ALIAS`):
    /// under TCG the runner gives QEMU 48 physical-address bits and a second mapping of guest
    /// RAM at GPA 2^47 (`image::run::tdx_alias_args`), so bit 47 selects a real alias. The seam
    /// stays so a build without that alias can say no (the rule is then none).
    #[cfg(not(feature = "loopback-tdx"))]
    pub const SHARED_ALIAS: bool = true;
    /// The loopback stub's answer (see the production item above).
    #[cfg(feature = "loopback-tdx")]
    pub const SHARED_ALIAS: bool = crate::loopback_tdx::SHARED_ALIAS;
}

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
        Ok(tdx_td::ve::VeOutcome::Mmio { gpa }) => {
            let mask = crate::platform::tdx::info().map_or(0, |i| i.shared_mask());
            let done = super::vc::emulate_mmio_frame_with(
                frame,
                Some(gpa & !mask),
                &MMIO_GUARD,
                &mut crate::platform::tdx::TdxMmio,
            );
            if let Err(e) = done {
                crate::platform::tdx::fatal("MMIO #VE not emulated", &format_args!("{e:?}"));
            }
        }
        Ok(tdx_td::ve::VeOutcome::Done) => {
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

/// What [`mmio_self_test`] checked.
#[cfg(feature = "loopback-tdx")]
#[derive(Clone, Copy, Debug)]
pub struct MmioSelfTest {
    /// The store's `RIP` advance (the decoded length of the `mov`).
    pub store_len: u64,
    /// The load's `RIP` advance.
    pub load_len: u64,
    /// What the load through the #VE returned.
    pub via_ve: u32,
    /// The same register read through the HAL (an explicit TDVMCALL).
    pub via_hal: u32,
    /// #VE.RequestMMIO TDVMCALLs the two `mov`s and the HAL read made.
    pub tdvmcalls: u64,
}

/// The loopback-TDX build's MMIO #VE self-test, on virtio's common configuration (the first
/// BAR a driver mapped): with the stub holding an EPT-violation #VE (exit reason 48) at the
/// shared GPA, a real `int 0x14` followed by a `mov` store of 1 to `device_feature_select`,
/// then the same for a `mov` load of `device_feature`. The handler reads the information with
/// VEINFO.GET, decodes each `mov` at `RIP` with the #VC path's decoder, performs it as
/// TDVMCALL<#VE.RequestMMIO> (the stub does it on QEMU's device) and skips it; the load must
/// equal the HAL's own read.
#[cfg(feature = "loopback-tdx")]
pub fn mmio_self_test() -> Result<MmioSelfTest, &'static str> {
    use sev_guest::mmio::Width;
    use tdx_td::ve::{EXIT_EPT_VIOLATION, VeInfo};

    let bar = super::mmio::first_bar().ok_or("no BAR registered")?;
    let info = crate::platform::tdx::info().ok_or("no TDX backend")?;
    let ept = |gpa: u64| VeInfo {
        exit_reason: EXIT_EPT_VIOLATION,
        qualification: 0,
        gla: gpa,
        gpa: gpa | info.shared_mask(),
        instr_len: 0,
        instr_info: 0,
    };
    let calls0 = crate::platform::tdx::mmio_calls();
    let (n0, _, _) = super::vc::mmio_emulated();
    crate::loopback_tdx::inject_ve(ept(bar));
    // SAFETY: vector 20's gate consumes the injected #VE, emulates the `mov` that follows
    // (a 32-bit store to virtio's device_feature_select, a read-write register) through
    // TDVMCALL and resumes after it, so the `mov` is never executed itself.
    unsafe {
        core::arch::asm!(
            "int 0x14",
            "mov dword ptr [{p}], {v:e}",
            p = in(reg) bar,
            v = in(reg) 1u32,
        )
    };
    let (n1, _, store_len) = super::vc::mmio_emulated();
    crate::loopback_tdx::inject_ve(ept(bar + 4));
    let via_ve: u32;
    // SAFETY: as above, for a 32-bit load of device_feature (read-only).
    unsafe {
        core::arch::asm!(
            "int 0x14",
            "mov {v:e}, dword ptr [{p}]",
            p = in(reg) bar + 4,
            v = out(reg) via_ve,
        )
    };
    let (n2, _, load_len) = super::vc::mmio_emulated();
    if n1 != n0 + 1 || n2 != n1 + 1 {
        return Err("the #VE MMIO path did not emulate both movs");
    }
    // SAFETY: the same register through the HAL (a window check, then TDVMCALL).
    let via_hal = unsafe { super::mmio::read(bar + 4, Width::B4) } as u32;
    Ok(MmioSelfTest {
        store_len,
        load_len,
        via_ve,
        via_hal,
        tdvmcalls: crate::platform::tdx::mmio_calls() - calls0,
    })
}
