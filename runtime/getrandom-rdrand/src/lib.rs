//! The getrandom 0.2 API (`getrandom`, `Error`) over RDRAND, for freestanding x86-64 builds that
//! link ring (which calls `getrandom::getrandom`). Not a general replacement: no OS source, no
//! `js`/`custom` features. Each 64-bit draw is retried 10 times (Intel DRNG Software
//! Implementation Guide, §5.2.1); without RDRAND (CPUID.01H:ECX bit 30) every call fails, and
//! ring then refuses to sign or generate keys instead of using weak randomness.
#![no_std]

use core::fmt;
use core::num::NonZeroU32;

/// An opaque error code, as in getrandom 0.2.
#[derive(Copy, Clone, PartialEq, Eq)]
pub struct Error(NonZeroU32);

impl Error {
    /// The CPU has no RDRAND instruction.
    pub const UNSUPPORTED: Error = Error(NonZeroU32::new(Self::INTERNAL_START + 1).unwrap());
    /// RDRAND kept failing (entropy exhausted or a faulty DRNG).
    pub const FAILED_RDRAND: Error = Error(NonZeroU32::new(Self::INTERNAL_START + 5).unwrap());
    /// Start of getrandom 0.2's internal error range.
    pub const INTERNAL_START: u32 = 1 << 31;
    /// Start of getrandom 0.2's custom error range.
    pub const CUSTOM_START: u32 = (1 << 31) + (1 << 30);

    /// The raw code.
    pub fn code(self) -> NonZeroU32 {
        self.0
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error({})", self)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Self::UNSUPPORTED {
            f.write_str("getrandom: RDRAND not supported")
        } else {
            f.write_str("getrandom: RDRAND failed")
        }
    }
}

impl core::error::Error for Error {}

impl From<NonZeroU32> for Error {
    fn from(code: NonZeroU32) -> Self {
        Error(code)
    }
}

fn has_rdrand() -> bool {
    // CPUID is available on every x86-64 CPU.
    let ecx = core::arch::x86_64::__cpuid(1).ecx;
    ecx & (1 << 30) != 0
}

fn rdrand64() -> Option<u64> {
    for _ in 0..10 {
        let value: u64;
        let ok: u8;
        // SAFETY: RDRAND only writes the destination register and CF; callers checked CPUID.
        unsafe {
            core::arch::asm!("rdrand {v}", "setc {ok}", v = out(reg) value, ok = out(reg_byte) ok,
                options(nomem, nostack));
        }
        if ok == 1 {
            return Some(value);
        }
    }
    None
}

/// Fills `dest` with random bytes from RDRAND.
pub fn getrandom(dest: &mut [u8]) -> Result<(), Error> {
    if dest.is_empty() {
        return Ok(());
    }
    if !has_rdrand() {
        return Err(Error::UNSUPPORTED);
    }
    for chunk in dest.chunks_mut(8) {
        let v = rdrand64().ok_or(Error::FAILED_RDRAND)?.to_le_bytes();
        chunk.copy_from_slice(v.get(..chunk.len()).ok_or(Error::FAILED_RDRAND)?);
    }
    Ok(())
}
