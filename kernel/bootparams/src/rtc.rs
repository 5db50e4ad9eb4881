//! CMOS RTC register decoding (MC146818A datasheet: registers 0x00–0x09, status B bit 1 =
//! 24-hour mode, bit 2 = binary mode) and civil date to Unix time.
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
    /// Unix seconds, or `None` for an impossible date.
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
        let century = match conv(self.century) {
            Some(c @ 19..=99) => i64::from(c),
            _ => 20,
        };
        let year = century * 100 + i64::from(conv(self.year)?);
        let month = conv(self.month)?;
        let day = conv(self.day)?;
        let (minute, second) = (conv(self.minutes)?, conv(self.seconds)?);
        if !(1..=12).contains(&month)
            || !(1..=31).contains(&day)
            || hour > 23
            || minute > 59
            || second > 59
        {
            return None;
        }
        let days = days_from_civil(year, month, day);
        Some(days * 86_400 + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second))
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
pub fn days_from_civil(year: i64, month: u8, day: u8) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2026, 11, 29), 20_786);
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
