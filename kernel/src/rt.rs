//! Runtime glue that libc and the C runtime would otherwise provide: the entry point with
//! self-relocation, and the memory intrinsics LLVM emits calls to.
//!
//! The kernel is linked as a static PIE at address 0 (`link.ld`) and converted to a PE32+
//! image by `objcopy`. The PE carries only a placeholder base-relocation block (so the
//! loader does not treat the image as fixed-address), so `_start` applies the ELF
//! `R_X86_64_RELATIVE` relocations itself before any Rust code touches an absolute address.
//! `build.sh` checks that the ELF has no other relocation type.

use core::arch::{asm, global_asm, naked_asm};

// PE/COFF "Base Relocation Block" (PE/COFF spec, section 6.6.1): page RVA 0, block size 10,
// one IMAGE_REL_BASED_ABSOLUTE (padding) entry. Its presence keeps
// IMAGE_FILE_RELOCS_STRIPPED clear so the firmware may load us anywhere.
global_asm!(
    ".pushsection .reloc, \"a\"",
    ".long 0",
    ".long 10",
    ".word 0",
    ".popsection",
);

/// One `Elf64_Rela` entry (System V ABI, x86-64 supplement, "Relocation").
#[repr(C)]
struct Rela {
    offset: u64,
    info: u64,
    addend: i64,
}

const R_X86_64_NONE: u64 = 0;
const R_X86_64_RELATIVE: u64 = 8;

/// The UEFI entry point (UEFI spec 2.10, 4.1 "UEFI Image Entry Point"): `rcx` = image
/// handle, `rdx` = system table, Microsoft x64 ABI. Relocates the image, then tail-jumps to
/// [`crate::efi_main`] with the registers and stack exactly as the firmware set them.
#[unsafe(naked)]
#[unsafe(no_mangle)]
#[unsafe(link_section = ".text.start")]
unsafe extern "C" fn _start() -> ! {
    naked_asm!(
        "push rcx",
        "push rdx",
        "sub rsp, 8", // 16-byte alignment for the call below
        "lea rdi, [rip + __ImageBase]",
        "lea rsi, [rip + __rela_start]",
        "lea rdx, [rip + __rela_end]",
        "call {relocate}",
        "add rsp, 8",
        "pop rdx",
        "pop rcx",
        "jmp {main}",
        relocate = sym relocate,
        main = sym crate::efi_main,
    )
}

/// Applies `R_X86_64_RELATIVE` relocations for an image loaded at `base`.
///
/// Runs before relocation is complete: it must not use any absolute address (no
/// formatting, no statics holding pointers), only its arguments.
///
/// # Safety
/// `start..end` must be the image's own `.rela` entries and `base` its load address.
unsafe extern "C" fn relocate(base: u64, start: *const Rela, end: *const Rela) {
    let mut p = start;
    while p < end {
        // SAFETY: `p` lies within the `.rela` section (caller contract), which holds whole
        // `Rela` entries (the linker emits them 8-byte aligned and 24 bytes each).
        let rela = unsafe { &*p };
        match rela.info & 0xffff_ffff {
            R_X86_64_NONE => {}
            R_X86_64_RELATIVE => {
                let target = base.wrapping_add(rela.offset) as *mut u64;
                // SAFETY: the offset of a relocation the linker emitted for this image points
                // at a pointer-sized slot inside the loaded image.
                unsafe { target.write_unaligned(base.wrapping_add(rela.addend as u64)) };
            }
            // `build.sh` rejects images with other relocation types; stop rather than run
            // with a half-relocated image.
            _ => loop {
                // SAFETY: halting with interrupts masked only stops this CPU.
                unsafe { asm!("cli", "hlt", options(nomem, nostack)) };
            },
        }
        // SAFETY: stays within or one past the end of the `.rela` array.
        p = unsafe { p.add(1) };
    }
}

/// # Safety
/// Standard C `memcpy` contract: non-overlapping valid regions of `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcpy(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: caller contract; `rep movsb` copies exactly `n` bytes forwards (DF is clear
    // per the ABI).
    unsafe {
        asm!("rep movsb", inout("rcx") n => _, inout("rdi") dest => _, inout("rsi") src => _,
            options(nostack, preserves_flags));
    }
    dest
}

/// # Safety
/// Standard C `memmove` contract: valid regions of `n` bytes, possibly overlapping.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memmove(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dest as usize).wrapping_sub(src as usize) >= n {
        // Forward copy is safe: dest is before src, or the regions do not overlap.
        // SAFETY: caller contract.
        unsafe {
            asm!("rep movsb", inout("rcx") n => _, inout("rdi") dest => _, inout("rsi") src => _,
                options(nostack, preserves_flags));
        }
    } else if n > 0 {
        // SAFETY: caller contract; copies backwards from the last byte, then restores DF=0
        // as the ABI requires.
        unsafe {
            asm!("std", "rep movsb", "cld",
                inout("rcx") n => _,
                inout("rdi") dest.add(n - 1) => _,
                inout("rsi") src.add(n - 1) => _,
                options(nostack));
        }
    }
    dest
}

/// # Safety
/// Standard C `memset` contract: a valid writable region of `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memset(dest: *mut u8, c: i32, n: usize) -> *mut u8 {
    // SAFETY: caller contract.
    unsafe {
        asm!("rep stosb", inout("rcx") n => _, inout("rdi") dest => _, in("al") c as u8,
            options(nostack, preserves_flags));
    }
    dest
}

/// # Safety
/// Standard C `memcmp` contract: two valid readable regions of `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    let mut i = 0;
    while i < n {
        // SAFETY: `i < n`, caller contract. Volatile reads keep LLVM from turning this loop
        // back into a call to `memcmp`.
        let (x, y) = unsafe { (a.add(i).read_volatile(), b.add(i).read_volatile()) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
        i += 1;
    }
    0
}

/// # Safety
/// Standard `bcmp` contract, see [`memcmp`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: same contract as `memcmp`.
    unsafe { memcmp(a, b, n) }
}

/// # Safety
/// Standard C `strlen` contract: a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strlen(s: *const u8) -> usize {
    let mut n = 0;
    // SAFETY: caller guarantees a terminating NUL, so every byte up to it is readable.
    while unsafe { s.add(n).read_volatile() } != 0 {
        n += 1;
    }
    n
}

/// Referenced by the precompiled `alloc`/`core` (built with unwinding) once formatting code
/// from the KMS crates is linked; never called with `panic = "abort"`.
#[unsafe(no_mangle)]
pub extern "C" fn rust_eh_personality() {}

/// See [`rust_eh_personality`]; stops the VM if it is ever reached.
#[unsafe(no_mangle)]
pub extern "C" fn _Unwind_Resume() -> ! {
    crate::arch::stop(crate::arch::ExitCode::Fault)
}
