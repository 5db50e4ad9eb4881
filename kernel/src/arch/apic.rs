//! The local APIC timer, used only to wake the CPU from `hlt` when the kernel is idle
//! (Intel SDM vol. 3A, chapter 11 "Advanced Programmable Interrupt Controller").
//!
//! The kernel otherwise runs with interrupts masked and polls its devices. [`idle`] arms a
//! one-shot timer, enables interrupts for exactly one `hlt` (the `sti` shadow makes
//! `sti; hlt` atomic), and masks them again. The timer's handler only signals end of
//! interrupt. Works in xAPIC (MMIO) and x2APIC (MSR) mode, whichever the firmware left.

use core::arch::{asm, naked_asm};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use sev_guest::mmio::Width;

use super::{cpuid, rdmsr, wrmsr};

/// IDT vector of the timer.
pub const TIMER_VECTOR: u8 = 0x20;
/// IDT vector for spurious interrupts.
pub const SPURIOUS_VECTOR: u8 = 0xff;

const IA32_APIC_BASE: u32 = 0x1b;
const REG_EOI: u32 = 0xb0;
const REG_SVR: u32 = 0xf0;
const REG_LVT_TIMER: u32 = 0x320;
const REG_INITIAL_COUNT: u32 = 0x380;
const REG_CURRENT_COUNT: u32 = 0x390;
const REG_DIVIDE: u32 = 0x3e0;

static X2APIC: AtomicBool = AtomicBool::new(false);
static MMIO_BASE: AtomicU64 = AtomicU64::new(0);
/// Timer ticks per millisecond (0: timer unusable, `idle` only spins).
static TICKS_PER_MS: AtomicU64 = AtomicU64::new(0);

fn read(reg: u32) -> u32 {
    if X2APIC.load(Ordering::Relaxed) {
        // SAFETY: x2APIC mode is enabled (IA32_APIC_BASE bit 10), so MSRs 0x800+ exist.
        unsafe { rdmsr(0x800 + (reg >> 4)) as u32 }
    } else {
        let base = MMIO_BASE.load(Ordering::Relaxed);
        // SAFETY: `base` is the xAPIC page from IA32_APIC_BASE, identity-mapped (below 4 GiB)
        // and registered as an MMIO window; the register offsets are architectural.
        unsafe { super::mmio::read(base + u64::from(reg), Width::B4) as u32 }
    }
}

fn write(reg: u32, value: u32) {
    if X2APIC.load(Ordering::Relaxed) {
        // SAFETY: as in `read`; APIC register writes do not touch memory.
        unsafe { wrmsr(0x800 + (reg >> 4), u64::from(value)) };
    } else {
        let base = MMIO_BASE.load(Ordering::Relaxed);
        // SAFETY: as in `read`.
        unsafe { super::mmio::write(base + u64::from(reg), Width::B4, u64::from(value)) };
    }
}

/// Timer interrupt: acknowledge and return (the wake-up is the point).
#[unsafe(naked)]
pub(super) unsafe extern "C" fn timer_stub() {
    naked_asm!(
        "push rax", "push rcx", "push rdx", "push rsi", "push rdi",
        "push r8", "push r9", "push r10", "push r11", "push rbp",
        "mov rbp, rsp",
        "and rsp, -16",
        "cld",
        "call {eoi}",
        "mov rsp, rbp",
        "pop rbp", "pop r11", "pop r10", "pop r9", "pop r8",
        "pop rdi", "pop rsi", "pop rdx", "pop rcx", "pop rax",
        "iretq",
        eoi = sym eoi,
    )
}

/// Spurious interrupt: no EOI (SDM 11.9).
#[unsafe(naked)]
pub(super) unsafe extern "C" fn spurious_stub() {
    naked_asm!("iretq")
}

extern "C" fn eoi() {
    write(REG_EOI, 0);
}

/// Enables the local APIC and calibrates its timer against the (already calibrated) TSC
/// clock. Returns the timer frequency in kHz, or `None` if there is no usable APIC.
pub fn init() -> Option<u64> {
    if cpuid(1, 0).edx & (1 << 9) == 0 {
        return None;
    }
    // SAFETY: CPUID.1:EDX[9] says there is a local APIC, so IA32_APIC_BASE exists.
    let base = unsafe { rdmsr(IA32_APIC_BASE) };
    if base & (1 << 11) == 0 {
        return None; // globally disabled by the firmware: leave it so
    }
    X2APIC.store(base & (1 << 10) != 0, Ordering::Relaxed);
    MMIO_BASE.store(base & 0x000f_ffff_ffff_f000, Ordering::Relaxed);
    if base & (1 << 10) == 0 && super::mmio::add_window(base & 0x000f_ffff_ffff_f000, 4096).is_err()
    {
        return None;
    }
    write(REG_SVR, 0x100 | u32::from(SPURIOUS_VECTOR));
    write(REG_DIVIDE, 0b0011); // divide by 16
    write(REG_LVT_TIMER, 1 << 16); // masked while calibrating
    write(REG_INITIAL_COUNT, u32::MAX);
    crate::time::delay_us(10_000);
    let elapsed = u64::from(u32::MAX - read(REG_CURRENT_COUNT));
    write(REG_INITIAL_COUNT, 0);
    let per_ms = elapsed / 10;
    if per_ms == 0 {
        return None;
    }
    write(REG_LVT_TIMER, u32::from(TIMER_VECTOR)); // one-shot, unmasked
    TICKS_PER_MS.store(per_ms, Ordering::Relaxed);
    Some(per_ms)
}

/// Halts until the timer fires after about `micros` (at least 1 tick) or another interrupt
/// arrives. Without a usable timer it only pauses.
pub fn idle(micros: u64) {
    let per_ms = TICKS_PER_MS.load(Ordering::Relaxed);
    if per_ms == 0 {
        super::relax();
        return;
    }
    let ticks = (per_ms.saturating_mul(micros) / 1000).clamp(1, u64::from(u32::MAX)) as u32;
    write(REG_INITIAL_COUNT, ticks);
    // SAFETY: the IDT has gates for the timer and spurious vectors; `sti` takes effect after
    // `hlt` starts, so a timer that already expired still wakes it; `cli` masks again.
    unsafe { asm!("sti", "hlt", "cli", options(nomem, nostack)) };
    write(REG_INITIAL_COUNT, 0);
}
