//! Runtime glue that the C runtime would otherwise provide: the entry point with
//! self-relocation, and `_Unwind_Resume`. The memory intrinsics LLVM emits calls to come from
//! the shared `freestanding-rt` crate (`runtime/`).
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

/// Referenced by the precompiled `alloc`/`core` (built with unwinding) once formatting code
/// from the KMS crates is linked; never called with `panic = "abort"`. Stops the VM if it is
/// ever reached. (The `mem*` functions and `rust_eh_personality` come from `freestanding-rt`.)
#[unsafe(no_mangle)]
pub extern "C" fn _Unwind_Resume() -> ! {
    crate::arch::stop(crate::arch::ExitCode::Fault)
}
