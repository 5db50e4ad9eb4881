//! Time: a monotonic clock from the TSC, calibrated against the 8254 PIT, and the RTC wall
//! clock.
//!
//! The monotonic clock is what timeouts and the network stack use. The wall clock comes from
//! the CMOS RTC, which the host controls: it is **untrusted** (a hostile host can set any
//! date), fine for log lines and certificate validity hints, never for security decisions
//! that must advance (replay windows, key expiry enforcement against a rollback).
//! Under SNP/TDX the TSC is the guest's own (SecureTSC / TDX TSC); under TCG it is QEMU's.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::arch::{port, rdtsc};

/// TSC ticks per microsecond, times 2^16 (0 until calibrated).
static TICKS_PER_US_Q16: AtomicU64 = AtomicU64::new(0);
/// TSC value taken as time zero.
static TSC_ZERO: AtomicU64 = AtomicU64::new(0);

/// PIT input clock (Hz), 8254 datasheet / IBM PC AT reference.
const PIT_HZ: u64 = 1_193_182;

/// Calibration failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeError {
    /// The PIT channel 2 output never went high.
    PitTimeout,
    /// The TSC did not advance during calibration.
    TscStuck,
}

impl core::fmt::Display for TimeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::PitTimeout => "PIT channel 2 did not count down",
            Self::TscStuck => "TSC did not advance",
        })
    }
}

/// A point on the monotonic clock (microseconds since boot).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Instant {
    micros: u64,
}

impl Instant {
    /// Now. Before calibration, always zero.
    pub fn now() -> Self {
        let q16 = TICKS_PER_US_Q16.load(Ordering::Relaxed);
        if q16 == 0 {
            return Self { micros: 0 };
        }
        let ticks = rdtsc().saturating_sub(TSC_ZERO.load(Ordering::Relaxed));
        Self {
            micros: ((u128::from(ticks) << 16) / u128::from(q16)) as u64,
        }
    }

    /// Microseconds since boot.
    pub fn micros_since_boot(self) -> u64 {
        self.micros
    }

    /// Milliseconds since boot.
    pub fn millis_since_boot(self) -> u64 {
        self.micros / 1000
    }

    /// Microseconds from `earlier` to `self` (0 if `earlier` is later).
    pub fn micros_since(self, earlier: Instant) -> u64 {
        self.micros.saturating_sub(earlier.micros)
    }
}

/// Calibrates the TSC over a 50 ms PIT channel-2 one-shot (mode 0, gate through port 0x61).
pub fn calibrate() -> Result<u64, TimeError> {
    const COUNT: u64 = PIT_HZ / 20; // 50 ms
    // Gate off (counting held), speaker off.
    let ctl = port::inb(0x61) & !0x03;
    port::outb(0x61, ctl);
    // Channel 2, lobyte/hibyte, mode 0 (interrupt on terminal count), binary: OUT2 goes low
    // now and high when the count reaches zero.
    port::outb(0x43, 0b1011_0000);
    port::outb(0x42, (COUNT & 0xff) as u8);
    port::outb(0x42, (COUNT >> 8) as u8);
    // Gate on: the count-down starts.
    let start = rdtsc();
    port::outb(0x61, ctl | 0x01);
    let mut spins: u64 = 0;
    while port::inb(0x61) & 0x20 == 0 {
        spins += 1;
        if spins > 100_000_000 {
            return Err(TimeError::PitTimeout);
        }
    }
    let ticks = rdtsc().wrapping_sub(start);
    if ticks == 0 {
        return Err(TimeError::TscStuck);
    }
    let micros = COUNT * 1_000_000 / PIT_HZ;
    let q16 = (ticks << 16) / micros;
    TSC_ZERO.store(start, Ordering::Relaxed);
    TICKS_PER_US_Q16.store(q16.max(1), Ordering::Relaxed);
    Ok(ticks * 1_000_000 / micros)
}

/// Busy-waits `micros` microseconds (requires calibration).
pub fn delay_us(micros: u64) {
    let start = Instant::now();
    while Instant::now().micros_since(start) < micros {
        crate::arch::relax();
    }
}

/// Reads a CMOS register (MC146818 layout).
fn cmos(reg: u8) -> u8 {
    port::outb(0x70, reg & 0x7f); // keep NMI enabled bit clear (bit 7)
    port::inb(0x71)
}

/// Wall-clock time from the RTC as Unix seconds. **Untrusted** (host-controlled).
pub fn rtc_unix_seconds() -> Option<i64> {
    let read = || {
        // Wait while an update is in progress (register A bit 7).
        let mut spins = 0;
        while cmos(0x0a) & 0x80 != 0 && spins < 1_000_000 {
            spins += 1;
        }
        bootparams::rtc::RtcRegisters {
            seconds: cmos(0x00),
            minutes: cmos(0x02),
            hours: cmos(0x04),
            day: cmos(0x07),
            month: cmos(0x08),
            year: cmos(0x09),
            century: cmos(0x32),
            status_b: cmos(0x0b),
        }
    };
    // Read until two consecutive reads agree, so a rollover mid-read is not seen.
    let mut last = read();
    for _ in 0..5 {
        let now = read();
        if now == last {
            return now.unix_seconds();
        }
        last = now;
    }
    None
}
