//! x86 I/O port access, the platform HAL's port I/O path.
//!
//! Port I/O in this kernel only addresses devices QEMU/firmware define (UART, PIT, CMOS, PCI
//! configuration mechanism #1, isa-debug-exit); none of them can break memory safety.
//! [`outb`] and friends go through the GHCB (an IOIO exit, AMD 56421 §4.1.2) once a GHCB
//! session is established ([`crate::platform::ghcb`]: the loopback-GHCB build today), and
//! execute the instruction otherwise (`none`/`emulated`; before the session exists). Under
//! SEV-ES/SNP a bare `in`/`out` traps (#VC; [`super::vc`] is the safety net): on SNP the
//! console is held until the GHCB session exists (`boot::snp_session`). Under TDX they are
//! TDG.VP.VMCALL<Instruction.IO> (GHCI 348552 §3.9) once the TDX backend is established
//! ([`crate::platform::tdx`], right after detection: on TDX hardware and in the loopback-TDX
//! build; a stray `in`/`out` raises #VE, which [`super::tdx::on_ve`] services).
//! The `raw_*` functions are the instructions themselves, for the loopback stub.

use core::arch::asm;

use sev_guest::nae::IoSize;

use crate::platform::{ghcb, tdx};

/// `out` of a byte: the instruction.
pub fn raw_outb(port: u16, value: u8) {
    // SAFETY: port writes do not touch memory; the ports used are listed in the module doc.
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags))
    }
}

/// `in` of a byte: the instruction.
pub fn raw_inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: see `raw_outb`.
    unsafe {
        asm!("in al, dx", out("al") value, in("dx") port, options(nomem, nostack, preserves_flags))
    }
    value
}

/// `out` of 16 bits: the instruction.
pub fn raw_outw(port: u16, value: u16) {
    // SAFETY: see `raw_outb`.
    unsafe {
        asm!("out dx, ax", in("dx") port, in("ax") value, options(nomem, nostack, preserves_flags))
    }
}

/// `in` of 16 bits: the instruction.
pub fn raw_inw(port: u16) -> u16 {
    let value: u16;
    // SAFETY: see `raw_outb`.
    unsafe {
        asm!("in ax, dx", out("ax") value, in("dx") port, options(nomem, nostack, preserves_flags))
    }
    value
}

/// `out` of 32 bits: the instruction.
pub fn raw_outl(port: u16, value: u32) {
    // SAFETY: see `raw_outb`.
    unsafe {
        asm!("out dx, eax", in("dx") port, in("eax") value, options(nomem, nostack, preserves_flags))
    }
}

/// `in` of 32 bits: the instruction.
pub fn raw_inl(port: u16) -> u32 {
    let value: u32;
    // SAFETY: see `raw_outb`.
    unsafe {
        asm!("in eax, dx", out("eax") value, in("dx") port, options(nomem, nostack, preserves_flags))
    }
    value
}

/// Writes a byte to an I/O port.
pub fn outb(port: u16, value: u8) {
    if !ghcb::io_out(port, IoSize::B8, u32::from(value)) && !tdx::io_out(port, 1, value.into()) {
        raw_outb(port, value);
    }
}

/// Reads a byte from an I/O port.
pub fn inb(port: u16) -> u8 {
    ghcb::io_in(port, IoSize::B8)
        .or_else(|| tdx::io_in(port, 1))
        .map_or_else(|| raw_inb(port), |v| v as u8)
}

/// Writes a 16-bit value to an I/O port.
pub fn outw(port: u16, value: u16) {
    if !ghcb::io_out(port, IoSize::B16, u32::from(value)) && !tdx::io_out(port, 2, value.into()) {
        raw_outw(port, value);
    }
}

/// Reads a 16-bit value from an I/O port.
pub fn inw(port: u16) -> u16 {
    ghcb::io_in(port, IoSize::B16)
        .or_else(|| tdx::io_in(port, 2))
        .map_or_else(|| raw_inw(port), |v| v as u16)
}

/// Writes a 32-bit value to an I/O port.
pub fn outl(port: u16, value: u32) {
    if !ghcb::io_out(port, IoSize::B32, value) && !tdx::io_out(port, 4, value) {
        raw_outl(port, value);
    }
}

/// Reads a 32-bit value from an I/O port.
pub fn inl(port: u16) -> u32 {
    ghcb::io_in(port, IoSize::B32)
        .or_else(|| tdx::io_in(port, 4))
        .unwrap_or_else(|| raw_inl(port))
}
