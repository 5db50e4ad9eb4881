//! Time: a monotonic clock from the TSC, calibrated against the 8254 PIT, and the RTC wall
//! clock.
//!
//! The monotonic clock is what timeouts and the network stack use. The wall clock comes from
//! the CMOS RTC, which the host controls: it is **untrusted** (a hostile host can set any
//! date), fine for log lines and certificate validity hints, never for security decisions
//! that must advance (replay windows, key expiry enforcement against a rollback).
//! Under SNP/TDX the TSC is the guest's own (SecureTSC / TDX TSC); under TCG it is QEMU's.
//!
//! The wall clock ([`wall_unix_seconds`]) is the RTC extended by the TSC: [`sync_wall_clock`]
//! waits once, at boot, for the RTC's seconds register to change and takes that edge as the
//! start of an RTC second; afterwards wall time is that second plus the TSC time since the
//! edge (sub-second, no port I/O per call). Every [`WALL_RECHECK_US`] the RTC is read again
//! and the wall time is clamped into the RTC's current second, so TSC calibration error does
//! not accumulate. QEMU seeds its RTC from the host's time truncated to the second
//! (`rtc_set_date_from_host`, hw/rtc/mc146818rtc.c), so the RTC's seconds lag the host's by a
//! fixed unknown fraction: true time is in `[wall, wall + 1 s)`, and [`wall_unix_seconds`]
//! returns the ceiling of the wall time, never earlier than a client's truncated clock
//! (e.g. an Activation Date set to the client's current second) and at most 1 s ahead.

use core::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

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

/// Unix microseconds minus monotonic microseconds (valid once [`WALL_SYNCED`]).
static WALL_OFFSET_US: AtomicI64 = AtomicI64::new(0);
/// Whether [`sync_wall_clock`] found an RTC edge.
static WALL_SYNCED: AtomicBool = AtomicBool::new(false);
/// Monotonic microseconds of the last comparison with the RTC.
static WALL_CHECKED_US: AtomicU64 = AtomicU64::new(0);

/// How often the TSC-extended wall clock is clamped back into the RTC's second.
pub const WALL_RECHECK_US: u64 = 5_000_000;

const US_PER_S: i64 = 1_000_000;

/// Aligns the wall clock to an RTC update edge (requires calibration): polls the RTC seconds
/// register until it changes (at most ~1.2 s), then reads the full date. Returns the RTC's
/// Unix time at the edge; `None` (the wall clock then reads the RTC directly) when the RTC
/// does not tick or cannot be read.
pub fn sync_wall_clock() -> Option<i64> {
    let start = Instant::now();
    let first = cmos(0x00);
    let edge = loop {
        // Skip reads during an update cycle (register A bit 7: UIP).
        if cmos(0x0a) & 0x80 == 0 && cmos(0x00) != first {
            break Instant::now();
        }
        if Instant::now().micros_since(start) > 1_200_000 {
            return None;
        }
        crate::arch::relax();
    };
    let secs = rtc_unix_seconds()?;
    let edge_us = i64::try_from(edge.micros_since_boot()).ok()?;
    WALL_OFFSET_US.store(
        secs.checked_mul(US_PER_S)?.checked_sub(edge_us)?,
        Ordering::Relaxed,
    );
    WALL_CHECKED_US.store(edge.micros_since_boot(), Ordering::Relaxed);
    WALL_SYNCED.store(true, Ordering::Relaxed);
    Some(secs)
}

/// Wall-clock Unix time in microseconds (RTC second + TSC), clamped into the RTC's current
/// second every [`WALL_RECHECK_US`]. **Untrusted** (host-controlled). Before a successful
/// [`sync_wall_clock`], the RTC's start of second.
pub fn wall_unix_micros() -> Option<i64> {
    if !WALL_SYNCED.load(Ordering::Relaxed) {
        return rtc_unix_seconds()?.checked_mul(US_PER_S);
    }
    let now = Instant::now().micros_since_boot();
    let now_us = i64::try_from(now).ok()?;
    let mut offset = WALL_OFFSET_US.load(Ordering::Relaxed);
    if now.saturating_sub(WALL_CHECKED_US.load(Ordering::Relaxed)) >= WALL_RECHECK_US {
        WALL_CHECKED_US.store(now, Ordering::Relaxed);
        if let Some(rtc_us) = rtc_unix_seconds().and_then(|r| r.checked_mul(US_PER_S)) {
            let wall = now_us.checked_add(offset)?;
            if wall < rtc_us {
                offset = offset.checked_add(rtc_us - wall)?;
            } else if wall >= rtc_us.checked_add(US_PER_S)? {
                offset = offset.checked_sub(wall - (rtc_us + US_PER_S - 1))?;
            }
            WALL_OFFSET_US.store(offset, Ordering::Relaxed);
        }
    }
    now_us.checked_add(offset)
}

/// Wall-clock Unix seconds: the ceiling of [`wall_unix_micros`] (see the module doc).
/// **Untrusted** (host-controlled).
pub fn wall_unix_seconds() -> Option<i64> {
    let us = wall_unix_micros()?;
    Some(us.checked_add(US_PER_S - 1)?.div_euclid(US_PER_S))
}
