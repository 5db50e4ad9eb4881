//! x86-64 specifics: CPU registers and instructions, descriptor tables, exceptions, paging.

pub mod apic;
pub mod gdt;
pub mod idt;
pub mod mmio;
pub mod paging;
pub mod port;
pub mod sev;
pub mod tdx;
pub mod vc;

use core::arch::asm;

/// Result of `cpuid`.
#[derive(Clone, Copy, Debug)]
pub struct Cpuid {
    /// EAX.
    pub eax: u32,
    /// EBX.
    pub ebx: u32,
    /// ECX.
    pub ecx: u32,
    /// EDX.
    pub edx: u32,
}

/// CPUID for `leaf`/`subleaf` through the platform HAL: from the SNP CPUID page once one is
/// installed ([`crate::platform::snp::install_cpuid_page`]; never from the hypervisor then: a
/// leaf the page does not hold terminates the guest, reason 0x06), else the instruction.
pub fn cpuid(leaf: u32, subleaf: u32) -> Cpuid {
    match crate::platform::snp::page_cpuid(leaf, subleaf) {
        None => cpuid_instruction(leaf, subleaf),
        Some(Ok(r)) => Cpuid {
            eax: r.eax,
            ebx: r.ebx,
            ecx: r.ecx,
            edx: r.edx,
        },
        Some(Err(e)) => crate::platform::snp::cpuid_page_fatal(e),
    }
}

/// Executes the `cpuid` instruction for `leaf`/`subleaf` (under SEV-ES/SNP it raises #VC:
/// only the early detection, under the firmware's handlers, and the loopback stub use it).
pub fn cpuid_instruction(leaf: u32, subleaf: u32) -> Cpuid {
    // `rbx` is reserved by LLVM, so it is saved around the instruction.
    let (eax, ebx, ecx, edx): (u32, u32, u32, u32);
    // SAFETY: `cpuid` only writes the four registers declared here.
    unsafe {
        asm!(
            "mov {tmp:r}, rbx",
            "cpuid",
            "xchg {tmp:r}, rbx",
            tmp = out(reg) ebx,
            inout("eax") leaf => eax,
            inout("ecx") subleaf => ecx,
            out("edx") edx,
            options(nomem, nostack, preserves_flags),
        );
    }
    Cpuid { eax, ebx, ecx, edx }
}

/// Reads a model-specific register: through the GHCB (an MSR exit, 56421 §4.1.3) when a
/// GHCB session is established ([`crate::platform::ghcb`]), through TDG.VP.VMCALL<Instruction.RDMSR>
/// (GHCI 348552 §3.10) when the TDX backend is ([`crate::platform::tdx`]), else the instruction.
///
/// # Safety
/// `msr` must exist on this CPU (else #GP).
pub unsafe fn rdmsr(msr: u32) -> u64 {
    if let Some(v) = crate::platform::ghcb::rdmsr(msr).or_else(|| crate::platform::tdx::rdmsr(msr))
    {
        return v;
    }
    // SAFETY: caller contract.
    unsafe { rdmsr_instruction(msr) }
}

/// Writes a model-specific register: through the GHCB when a session is established, else
/// the instruction.
///
/// # Safety
/// `msr` must exist on this CPU (else #GP), and writing `value` must not break an invariant
/// the kernel relies on (the callers name the MSR and why).
pub unsafe fn wrmsr(msr: u32, value: u64) {
    if crate::platform::ghcb::wrmsr(msr, value) || crate::platform::tdx::wrmsr(msr, value) {
        return;
    }
    // SAFETY: caller contract.
    unsafe { wrmsr_instruction(msr, value) }
}

/// The `rdmsr` instruction itself, for MSRs that must never be asked of the hypervisor
/// (`SEV_STATUS`, the GHCB MSR) and for the loopback stub.
///
/// # Safety
/// `msr` must exist on this CPU (else #GP).
pub unsafe fn rdmsr_instruction(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: caller guarantees the MSR exists; reading it has no side effect on memory.
    unsafe {
        asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// The `wrmsr` instruction itself (see [`rdmsr_instruction`]).
///
/// # Safety
/// As [`wrmsr`].
pub unsafe fn wrmsr_instruction(msr: u32, value: u64) {
    // SAFETY: caller contract.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32,
            options(nostack, preserves_flags))
    };
}

/// Reads CR2 (the faulting address of the last page fault).
pub fn cr2() -> u64 {
    let v: u64;
    // SAFETY: reading CR2 has no side effects.
    unsafe { asm!("mov {}, cr2", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Reads CR3.
pub fn cr3() -> u64 {
    let v: u64;
    // SAFETY: reading CR3 has no side effects.
    unsafe { asm!("mov {}, cr3", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Makes sure SSE is usable (CR0.EM clear, CR0.MP set, CR4.OSFXSR | OSXMMEXCPT): it is part
/// of the x86-64 ABI the compiler targets. UEFI already requires it; this makes it explicit.
pub fn enable_sse() {
    // SAFETY: sets only the SSE enable bits; the FPU/SSE state stays as the firmware left it.
    unsafe {
        asm!(
            "mov rax, cr0",
            "and rax, ~(1 << 2)",
            "or rax, 1 << 1",
            "mov cr0, rax",
            "mov rax, cr4",
            "or rax, (1 << 9) | (1 << 10)",
            "mov cr4, rax",
            out("rax") _,
            options(nostack),
        );
    }
}

/// Masks both 8259 PICs. The kernel runs with interrupts disabled and polls its devices.
pub fn mask_pic() {
    port::outb(0x21, 0xff);
    port::outb(0xa1, 0xff);
}

/// Disables maskable interrupts.
pub fn disable_interrupts() {
    // SAFETY: `cli` only clears IF.
    unsafe { asm!("cli", options(nomem, nostack)) };
}

/// Waits a little (a `pause`).
pub fn relax() {
    core::hint::spin_loop();
}

/// Reads the time-stamp counter.
pub fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: `rdtsc` only writes edx:eax.
    unsafe {
        asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// How the VM ends. With `-device isa-debug-exit,iobase=0xf4,iosize=0x04` QEMU exits with
/// status `(code << 1) | 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitCode {
    /// The boot configuration was refused (bad command line, missing hardware RNG,
    /// unsupported platform): QEMU status 35.
    ConfigRefused = 0x11,
    /// Panic or CPU exception: QEMU status 37.
    Fault = 0x12,
}

/// Stops the VM: exits QEMU through isa-debug-exit when present, else halts forever.
pub fn stop(code: ExitCode) -> ! {
    disable_interrupts();
    port::outb(0xf4, code as u8);
    halt_forever()
}

/// Halts this CPU forever (interrupts should be masked by the caller).
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: `hlt` only waits for an interrupt; with interrupts disabled it parks the CPU.
        unsafe { asm!("hlt", options(nomem, nostack)) };
    }
}

/// Switches to a new stack and calls `f(arg)` there; never returns.
///
/// # Safety
/// `top` must be the 16-byte aligned top of an otherwise unused, mapped, writable stack.
pub unsafe fn run_on_stack(top: u64, f: extern "C" fn(usize) -> !, arg: usize) -> ! {
    // SAFETY: caller contract; the call never returns, so the old stack is abandoned.
    unsafe {
        asm!(
            "mov rsp, {top}",
            "xor ebp, ebp",
            "call {f}",
            "ud2",
            top = in(reg) top,
            f = in(reg) f,
            in("rdi") arg,
            options(noreturn),
        )
    }
}

/// An address in page 0, which the kernel keeps unmapped (a null-pointer guard).
pub const UNMAPPED_TEST_ADDRESS: u64 = 0x10;

/// Reads [`UNMAPPED_TEST_ADDRESS`]: the page-fault handler prints its report and stops the VM.
/// For the `ckms.test=fault` self-test (it checks the guard page and the exception path).
pub fn read_unmapped() -> ! {
    // SAFETY: deliberately faults (page 0 is not present); the #PF handler stops the VM and
    // never returns here. An asm load, not a Rust null dereference, so no UB is involved.
    unsafe {
        asm!("mov {tmp}, qword ptr [{addr}]", addr = in(reg) UNMAPPED_TEST_ADDRESS, tmp = out(reg) _,
            options(nostack, readonly));
    }
    stop(ExitCode::Fault)
}
