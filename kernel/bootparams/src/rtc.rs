//! CMOS RTC register decoding (MC146818A datasheet: registers 0x00–0x09, status B bit 1 =
//! 24-hour mode, bit 2 = binary mode) and civil date to Unix time (through `der::DateTime`).
//!
//! The RTC is host-controlled: the kernel documents the result as untrusted wall-clock time.

/// The raw registers read from the RTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtcRegisters {
    /// Register 0x00.
    pub seconds: u8,
    /// Register 0x02.
    pub minutes: u8,
    /// Register 0x04 (bit 7 = PM in 12-hour mode).
    pub hours: u8,
    /// Register 0x07.
    pub day: u8,
    /// Register 0x08.
    pub month: u8,
    /// Register 0x09 (two digits).
    pub year: u8,
    /// Register 0x32 (ACPI FADT century register on PC platforms; 0 if absent).
    pub century: u8,
    /// Status register B.
    pub status_b: u8,
}

fn bcd(v: u8) -> Option<u8> {
    let (hi, lo) = (v >> 4, v & 0x0f);
    if hi > 9 || lo > 9 {
        None
    } else {
        Some(hi * 10 + lo)
    }
}

impl RtcRegisters {
    /// Unix seconds, or `None` for an impossible date (including a day the month does not
    /// have) or one before 1970.
    pub fn unix_seconds(&self) -> Option<i64> {
        let binary = self.status_b & 0x04 != 0;
        let h24 = self.status_b & 0x02 != 0;
        let conv = |v: u8| if binary { Some(v) } else { bcd(v) };
        let pm = self.hours & 0x80 != 0;
        let mut hour = conv(self.hours & 0x7f)?;
        if !h24 {
            if !(1..=12).contains(&hour) {
                return None;
            }
            hour %= 12;
            if pm {
                hour += 12;
            }
        }
        let century = conv(self.century)
            .filter(|c| (19..=99).contains(c))
            .unwrap_or(20);
        let year = u16::from(century) * 100 + u16::from(conv(self.year)?);
        let (month, day) = (conv(self.month)?, conv(self.day)?);
        let (minute, second) = (conv(self.minutes)?, conv(self.seconds)?);
        let t = der::DateTime::new(year, month, day, hour, minute, second).ok()?;
        i64::try_from(t.unix_duration().as_secs()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binary(year: u8, month: u8, day: u8) -> RtcRegisters {
        RtcRegisters {
            seconds: 0,
            minutes: 0,
            hours: 0,
            day,
            month,
            year,
            century: 20,
            status_b: 0x06,
        }
    }

    #[test]
    fn civil_dates() {
        assert_eq!(binary(0, 3, 1).unix_seconds(), Some(11_017 * 86_400));
        assert_eq!(binary(26, 11, 29).unix_seconds(), Some(20_786 * 86_400));
        assert_eq!(binary(24, 2, 29).unix_seconds(), Some(19_782 * 86_400));
        // Days the month does not have.
        assert_eq!(binary(25, 2, 29).unix_seconds(), None);
        assert_eq!(binary(26, 4, 31).unix_seconds(), None);
        // Before 1970.
        let r = RtcRegisters {
            century: 19,
            ..binary(69, 12, 31)
        };
        assert_eq!(r.unix_seconds(), None);
    }

    #[test]
    fn bcd_24h() {
        // 2026-11-29 08:15:25, BCD, 24-hour (QEMU's default status B = 0x02).
        let r = RtcRegisters {
            seconds: 0x25,
            minutes: 0x15,
            hours: 0x08,
            day: 0x29,
            month: 0x11,
            year: 0x26,
            century: 0x20,
            status_b: 0x02,
        };
        assert_eq!(r.unix_seconds(), Some(1_795_940_125));
    }

    #[test]
    fn binary_12h_pm() {
        let r = RtcRegisters {
            seconds: 0,
            minutes: 0,
            hours: 0x80 | 12,
            day: 1,
            month: 1,
            year: 70,
            century: 19,
            status_b: 0x04,
        };
        assert_eq!(r.unix_seconds(), Some(12 * 3600));
    }

    #[test]
    fn garbage_is_refused() {
        let mut r = RtcRegisters {
            seconds: 0x99,
            minutes: 0,
            hours: 0,
            day: 1,
            month: 1,
            year: 0,
            century: 0x20,
            status_b: 0x02,
        };
        assert_eq!(r.unix_seconds(), None);
        r.seconds = 0x1a; // not BCD
        assert_eq!(r.unix_seconds(), None);
        r.seconds = 0;
        r.month = 0x13;
        assert_eq!(r.unix_seconds(), None);
    }
}
