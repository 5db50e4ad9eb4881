//! `freestanding-rt`: the few C library functions a freestanding x86-64 binary must provide
//! itself, because LLVM emits calls to them (`memcpy`, `memmove`, `memset`, `memcmp`, `bcmp`)
//! or precompiled `core`/`alloc` and ring's C reference them (`strlen`,
//! `rust_eh_personality`).
//!
//! Used by the kernel (`kernel/`) and by `kms/nostd-check`. A binary links it with
//! `extern crate freestanding_rt;` (an unreferenced dependency is not linked otherwise).
//! `_Unwind_Resume` is not here: what "never happens" should do differs per binary (the
//! kernel stops the VM, the check program exits).
//!
//! The functions use `rep movsb`/`rep stosb` (fast on every CPU with ERMSB, correct on all);
//! the comparisons read through volatile loads so that LLVM cannot turn the loop back into a
//! call to `memcmp` itself. The symbols are exported unmangled only outside `cfg(test)`: the
//! host test binary keeps libc's and calls these through their Rust paths.
#![no_std]

use core::arch::asm;

/// C `memcpy`.
///
/// # Safety
/// `dest` and `src` are valid for `n` bytes (writes and reads) and do not overlap.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn memcpy(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees both regions are valid for `n` bytes and disjoint;
    // `rep movsb` copies exactly `rcx` bytes forwards because DF is clear (System V ABI), and
    // touches no memory besides the two regions and no flags.
    unsafe {
        asm!("rep movsb", inout("rcx") n => _, inout("rdi") dest => _, inout("rsi") src => _,
            options(nostack, preserves_flags));
    }
    dest
}

/// C `memmove`.
///
/// # Safety
/// `dest` and `src` are valid for `n` bytes (writes and reads); they may overlap.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn memmove(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dest as usize).wrapping_sub(src as usize) >= n {
        // `dest` is below `src`, or the regions do not overlap: a forward copy never reads a
        // byte it has already overwritten.
        // SAFETY: the caller's contract, and the forward copy is correct here (see above).
        unsafe { memcpy(dest, src, n) };
    } else if n > 0 {
        // SAFETY: `dest` lies inside `src..src + n`, so copying backwards from the last byte
        // (DF set) reads every source byte before it is overwritten. `n > 0`, so `n - 1` does
        // not wrap and both `add`s stay within the caller's regions. DF is cleared again
        // before returning, as the ABI requires.
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

/// C `memset`.
///
/// # Safety
/// `dest` is valid for writes of `n` bytes.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn memset(dest: *mut u8, c: i32, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees `dest` is writable for `n` bytes; `rep stosb` stores `al`
    // into exactly `rcx` bytes forwards (DF clear per the ABI).
    unsafe {
        asm!("rep stosb", inout("rcx") n => _, inout("rdi") dest => _, in("al") c as u8,
            options(nostack, preserves_flags));
    }
    dest
}

/// C `memcmp`: the difference of the first differing bytes (as unsigned), or 0.
///
/// # Safety
/// `a` and `b` are valid for reads of `n` bytes.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    for i in 0..n {
        // SAFETY: `i < n` and both regions are readable for `n` bytes (caller contract).
        // Volatile reads keep LLVM from recognising the loop as `memcmp` and calling us.
        let (x, y) = unsafe { (a.add(i).read_volatile(), b.add(i).read_volatile()) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
    }
    0
}

/// `bcmp`: 0 when the regions are equal, non-zero otherwise.
///
/// # Safety
/// Same contract as [`memcmp`].
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: forwarded with the caller's arguments, whose contract is memcmp's.
    unsafe { memcmp(a, b, n) }
}

/// C `strlen`.
///
/// # Safety
/// `s` points to a readable NUL-terminated string.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn strlen(s: *const u8) -> usize {
    let mut n = 0;
    // SAFETY: the string is NUL-terminated (caller contract), so every byte up to and
    // including the NUL is readable and the loop stops at it.
    while unsafe { s.add(n).read_volatile() } != 0 {
        n += 1;
    }
    n
}

/// Referenced by the precompiled `core`/`alloc` (built with unwinding) once formatting code
/// is linked; never called with `panic = "abort"`.
#[cfg(not(test))]
#[unsafe(no_mangle)]
pub extern "C" fn rust_eh_personality() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_set_compare() {
        let src = *b"hello, freestanding";
        let mut dst = [0u8; 19];
        // SAFETY: both arrays are 19 bytes and distinct.
        unsafe { memcpy(dst.as_mut_ptr(), src.as_ptr(), src.len()) };
        assert_eq!(dst, src);
        // SAFETY: `dst` is 19 bytes long.
        unsafe { memset(dst.as_mut_ptr(), i32::from(b'x'), 5) };
        assert_eq!(&dst, b"xxxxx, freestanding");
        // SAFETY: both arrays are readable for 19 bytes.
        let (eq, lt, gt) = unsafe {
            (
                memcmp(src.as_ptr(), src.as_ptr(), src.len()),
                memcmp(dst.as_ptr(), src.as_ptr(), src.len()),
                bcmp(src.as_ptr(), dst.as_ptr(), src.len()),
            )
        };
        assert_eq!((eq, lt), (0, i32::from(b'x') - i32::from(b'h')));
        assert_ne!(gt, 0);
        // SAFETY: a NUL-terminated literal.
        assert_eq!(unsafe { strlen(c"abc".as_ptr().cast()) }, 3);
    }

    #[test]
    fn move_overlapping_both_ways() {
        let mut buf = *b"0123456789";
        let p = buf.as_mut_ptr();
        // Forwards overlap (dest below src).
        // SAFETY: both ranges lie inside the 10-byte buffer.
        unsafe { memmove(p, p.add(2), 8) };
        assert_eq!(&buf, b"2345678989");
        let mut buf = *b"0123456789";
        let p = buf.as_mut_ptr();
        // Backwards overlap (dest above src).
        // SAFETY: both ranges lie inside the 10-byte buffer.
        unsafe { memmove(p.add(2), p, 8) };
        assert_eq!(&buf, b"0101234567");
        // Zero length touches nothing.
        // SAFETY: zero bytes are copied.
        unsafe { memmove(p.add(1), p, 0) };
        assert_eq!(&buf, b"0101234567");
    }
}
