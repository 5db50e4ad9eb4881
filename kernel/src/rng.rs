//! Entropy: RDSEED/RDRAND seed a ChaCha20 generator, which is reseeded from the hardware
//! every [`RESEED_BYTES`] of output and every [`RESEED_MICROS`] of monotonic time.
//!
//! The kernel refuses to boot without RDSEED or RDRAND: there is no other entropy source a
//! confidential VM can trust (timers and devices are host-controlled). Each reseed mixes the
//! new hardware seed with the generator's own output (XOR), so a reseed never lowers entropy
//! even if one hardware read were weak.

use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};
use zeroize::Zeroize;

use crate::arch::cpuid;
use crate::time::Instant;

/// Output bytes between reseeds.
pub const RESEED_BYTES: u64 = 1 << 20;
/// Time between reseeds (5 minutes).
pub const RESEED_MICROS: u64 = 300 * 1_000_000;

/// RNG failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RngError {
    /// Neither RDSEED nor RDRAND is available.
    NoHardwareSource,
    /// The hardware source kept failing (CF=0) past the retry budget.
    HardwareFailure,
    /// The generator was used before [`init`].
    NotInitialised,
}

impl core::fmt::Display for RngError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::NoHardwareSource => "no hardware random source (RDSEED/RDRAND) on this CPU",
            Self::HardwareFailure => "hardware random source keeps failing",
            Self::NotInitialised => "random generator not initialised",
        })
    }
}

impl core::error::Error for RngError {}

/// The CPU's random instructions.
#[derive(Clone, Copy, Debug)]
pub struct HwRng {
    rdseed: bool,
    rdrand: bool,
}

fn rdseed64() -> Option<u64> {
    let (v, ok): (u64, u8);
    // SAFETY: only called when CPUID reports RDSEED; writes the two named registers.
    unsafe {
        core::arch::asm!("rdseed {}", "setc {}", out(reg) v, out(reg_byte) ok, options(nomem, nostack))
    };
    (ok != 0).then_some(v)
}

fn rdrand64() -> Option<u64> {
    let (v, ok): (u64, u8);
    // SAFETY: only called when CPUID reports RDRAND; writes the two named registers.
    unsafe {
        core::arch::asm!("rdrand {}", "setc {}", out(reg) v, out(reg_byte) ok, options(nomem, nostack))
    };
    (ok != 0).then_some(v)
}

impl HwRng {
    /// Detects RDSEED (CPUID.(EAX=7,ECX=0):EBX bit 18) and RDRAND (CPUID.1:ECX bit 30).
    pub fn detect() -> Result<Self, RngError> {
        let rdrand = cpuid(1, 0).ecx & (1 << 30) != 0;
        let rdseed = cpuid(0, 0).eax >= 7 && cpuid(7, 0).ebx & (1 << 18) != 0;
        if !rdrand && !rdseed {
            return Err(RngError::NoHardwareSource);
        }
        Ok(Self { rdseed, rdrand })
    }

    /// Which instructions are used.
    pub fn describe(&self) -> &'static str {
        match (self.rdseed, self.rdrand) {
            (true, true) => "rdseed+rdrand",
            (true, false) => "rdseed",
            _ => "rdrand",
        }
    }

    /// One 64-bit hardware random value: RDSEED (retried), else RDRAND (retried, as Intel's
    /// DRNG guide recommends: 10 tries).
    fn next(&self) -> Result<u64, RngError> {
        if self.rdseed {
            for _ in 0..64 {
                if let Some(v) = rdseed64() {
                    return Ok(v);
                }
                core::hint::spin_loop();
            }
        }
        if self.rdrand {
            for _ in 0..10 {
                if let Some(v) = rdrand64() {
                    return Ok(v);
                }
            }
        }
        Err(RngError::HardwareFailure)
    }

    /// A 32-byte seed.
    pub fn seed(&self) -> Result<[u8; 32], RngError> {
        let mut seed = [0u8; 32];
        for chunk in seed.chunks_exact_mut(8) {
            chunk.copy_from_slice(&self.next()?.to_le_bytes());
        }
        Ok(seed)
    }
}

/// The kernel's CSPRNG.
pub struct Csprng {
    hw: HwRng,
    chacha: ChaCha20Rng,
    since_reseed: u64,
    last_reseed: Instant,
}

impl Csprng {
    /// Seeds a generator from the hardware.
    pub fn new(hw: HwRng) -> Result<Self, RngError> {
        let mut seed = hw.seed()?;
        let chacha = ChaCha20Rng::from_seed(seed);
        seed.zeroize();
        Ok(Self {
            hw,
            chacha,
            since_reseed: 0,
            last_reseed: Instant::now(),
        })
    }

    fn reseed(&mut self) -> Result<(), RngError> {
        let mut seed = self.hw.seed()?;
        let mut own = [0u8; 32];
        self.chacha.fill_bytes(&mut own);
        for (s, o) in seed.iter_mut().zip(own.iter()) {
            *s ^= *o;
        }
        self.chacha = ChaCha20Rng::from_seed(seed);
        seed.zeroize();
        own.zeroize();
        self.since_reseed = 0;
        self.last_reseed = Instant::now();
        Ok(())
    }

    /// Fills `buf`, reseeding first when due.
    pub fn fill(&mut self, buf: &mut [u8]) -> Result<(), RngError> {
        let due_bytes = self.since_reseed.saturating_add(buf.len() as u64) > RESEED_BYTES;
        let due_time = Instant::now().micros_since(self.last_reseed) > RESEED_MICROS;
        if due_bytes || due_time {
            self.reseed()?;
        }
        self.chacha.fill_bytes(buf);
        self.since_reseed = self.since_reseed.saturating_add(buf.len() as u64);
        Ok(())
    }
}

static RNG: spin::Mutex<Option<Csprng>> = spin::Mutex::new(None);

/// Detects the hardware source and seeds the kernel generator; refuses without hardware.
pub fn init() -> Result<&'static str, RngError> {
    let hw = HwRng::detect()?;
    let rng = Csprng::new(hw)?;
    *RNG.lock() = Some(rng);
    Ok(hw.describe())
}

/// Fills `buf` from the kernel generator.
pub fn fill(buf: &mut [u8]) -> Result<(), RngError> {
    RNG.lock()
        .as_mut()
        .ok_or(RngError::NotInitialised)?
        .fill(buf)
}

/// A random `u64`.
pub fn u64() -> Result<u64, RngError> {
    let mut b = [0u8; 8];
    fill(&mut b)?;
    Ok(u64::from_le_bytes(b))
}
