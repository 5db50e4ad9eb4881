//! x86 I/O port access.
//!
//! Port I/O in this kernel only addresses devices QEMU/firmware define (UART, PIT, CMOS, PCI
//! configuration mechanism #1, isa-debug-exit); none of them can break memory safety.
//! Under SEV-ES/SNP and TDX, `in`/`out` trap (#VC / #VE) and must go through the GHCB or
//! TDVMCALL instead: that is the platform backends' job once they exist (this build stops
//! on SEV-ES/SNP/TDX before its own IDT is loaded; [`super::vc`] is the #VC safety net).

use core::arch::asm;

/// Writes a byte to an I/O port.
pub fn outb(port: u16, value: u8) {
    // SAFETY: port writes do not touch memory; the ports used are listed in the module doc.
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags))
    }
}

/// Reads a byte from an I/O port.
pub fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: see `outb`.
    unsafe {
        asm!("in al, dx", out("al") value, in("dx") port, options(nomem, nostack, preserves_flags))
    }
    value
}

/// Writes a 16-bit value to an I/O port.
pub fn outw(port: u16, value: u16) {
    // SAFETY: see `outb`.
    unsafe {
        asm!("out dx, ax", in("dx") port, in("ax") value, options(nomem, nostack, preserves_flags))
    }
}

/// Reads a 16-bit value from an I/O port.
pub fn inw(port: u16) -> u16 {
    let value: u16;
    // SAFETY: see `outb`.
    unsafe {
        asm!("in ax, dx", out("ax") value, in("dx") port, options(nomem, nostack, preserves_flags))
    }
    value
}

/// Writes a 32-bit value to an I/O port.
pub fn outl(port: u16, value: u32) {
    // SAFETY: see `outb`.
    unsafe {
        asm!("out dx, eax", in("dx") port, in("eax") value, options(nomem, nostack, preserves_flags))
    }
}

/// Reads a 32-bit value from an I/O port.
pub fn inl(port: u16) -> u32 {
    let value: u32;
    // SAFETY: see `outb`.
    unsafe {
        asm!("in eax, dx", out("eax") value, in("dx") port, options(nomem, nostack, preserves_flags))
    }
    value
}
