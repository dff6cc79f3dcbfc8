//! A minimal MC146818 CMOS RTC at ports 0x70/0x71, reporting the host's UTC time.
//!
//! Without it, Linux's `rtc_cmos` driver and the x86 boot-time clock read spin on an update
//! flag that an undriven bus reports as always set: about four seconds of every boot. The clock
//! registers are computed from the host clock on each read and never "updating" (UIP clear), so
//! reads are consistent; guest writes to the time registers are ignored (the host clock is the
//! truth), other bytes are plain NVRAM.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::bus::BusDevice;

/// Ports 0x70 (index) and 0x71 (data).
pub const CMOS_PORT_COUNT: u64 = 2;

const REG_SECONDS: u8 = 0x00;
const REG_MINUTES: u8 = 0x02;
const REG_HOURS: u8 = 0x04;
const REG_DAY_OF_WEEK: u8 = 0x06;
const REG_DAY_OF_MONTH: u8 = 0x07;
const REG_MONTH: u8 = 0x08;
const REG_YEAR: u8 = 0x09;
const REG_A: u8 = 0x0a;
const REG_B: u8 = 0x0b;
const REG_C: u8 = 0x0c;
const REG_D: u8 = 0x0d;
const REG_CENTURY: u8 = 0x32;
/// Register A: 32.768 kHz time base, 1024 Hz periodic rate, update-in-progress clear.
const REG_A_VALUE: u8 = 0x26;
/// Register B: 24-hour mode, BCD data (DM bit clear).
const REG_B_VALUE: u8 = 0x02;
/// Register D: RAM and time valid.
const REG_D_VALUE: u8 = 0x80;

/// The calendar fields the RTC reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DateTime {
    year: u32,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    /// 1 = Sunday, as the MC146818 counts.
    weekday: u32,
}

/// Converts seconds since the Unix epoch to a UTC calendar date (proleptic Gregorian; the
/// days-to-civil algorithm by Howard Hinnant).
// Each field is bounded by the calendar (a year of the host's clock, 1..=12, 1..=31, ...).
#[expect(
    clippy::cast_possible_truncation,
    reason = "calendar fields fit in u32"
)]
fn civil_from_unix(secs: u64) -> DateTime {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    DateTime {
        year: year as u32,
        month: month as u32,
        day: day as u32,
        hour: (rem / 3600) as u32,
        minute: (rem / 60 % 60) as u32,
        second: (rem % 60) as u32,
        // 1970-01-01 was a Thursday (5 when Sunday is 1).
        weekday: ((days + 4) % 7 + 1) as u32,
    }
}

fn bcd(value: u32) -> u8 {
    let value = value % 100;
    // Two BCD digits: at most 0x99.
    u8::try_from(((value / 10) << 4) | (value % 10)).unwrap_or(0x99)
}

/// The CMOS device.
pub struct Cmos {
    index: u8,
    nvram: [u8; 128],
    now: fn() -> u64,
}

fn host_unix_time() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Default for Cmos {
    fn default() -> Cmos {
        Cmos::with_clock(host_unix_time)
    }
}

impl Cmos {
    /// A CMOS whose clock reads `now` (seconds since the Unix epoch).
    fn with_clock(now: fn() -> u64) -> Cmos {
        Cmos {
            index: 0,
            nvram: [0; 128],
            now,
        }
    }

    fn register(&self, index: u8) -> u8 {
        let time = || civil_from_unix((self.now)());
        match index {
            REG_SECONDS => bcd(time().second),
            REG_MINUTES => bcd(time().minute),
            REG_HOURS => bcd(time().hour),
            REG_DAY_OF_WEEK => bcd(time().weekday),
            REG_DAY_OF_MONTH => bcd(time().day),
            REG_MONTH => bcd(time().month),
            REG_YEAR => bcd(time().year),
            REG_CENTURY => bcd(time().year / 100),
            REG_A => REG_A_VALUE,
            REG_B => REG_B_VALUE,
            REG_C => 0,
            REG_D => REG_D_VALUE,
            other => self.nvram[usize::from(other)],
        }
    }
}

impl BusDevice for Cmos {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        match (offset, data) {
            (1, [byte]) => *byte = self.register(self.index),
            (0, [byte]) => *byte = self.index,
            (_, data) => data.fill(0xff),
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        match (offset, data) {
            // Bit 7 of the index port is the NMI mask; only the low 7 bits select a register.
            (0, [byte]) => self.index = byte & 0x7f,
            (1, [byte]) => {
                let index = usize::from(self.index);
                let is_clock = self.index <= REG_D || self.index == REG_CENTURY;
                if !is_clock {
                    self.nvram[index] = *byte;
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(cmos: &mut Cmos, index: u8) -> u8 {
        cmos.write(0, &[index]);
        let mut byte = [0u8];
        cmos.read(1, &mut byte);
        byte[0]
    }

    #[test]
    fn calendar_conversion_matches_known_dates() {
        let epoch = civil_from_unix(0);
        assert_eq!(
            (epoch.year, epoch.month, epoch.day, epoch.weekday),
            (1970, 1, 1, 5)
        );
        // 2026-11-23 05:22:20 UTC, a Monday.
        let t = civil_from_unix(1_795_411_340);
        assert_eq!(
            (t.year, t.month, t.day, t.hour, t.minute, t.second, t.weekday),
            (2026, 11, 23, 5, 22, 20, 2)
        );
        // 2000-02-29, a leap day.
        let leap = civil_from_unix(951_782_400);
        assert_eq!((leap.year, leap.month, leap.day), (2000, 2, 29));
    }

    #[test]
    fn clock_registers_are_bcd_and_never_updating() {
        let mut cmos = Cmos::with_clock(|| 1_795_411_340);
        assert_eq!(read(&mut cmos, REG_SECONDS), 0x20);
        assert_eq!(read(&mut cmos, REG_MINUTES), 0x22);
        assert_eq!(read(&mut cmos, REG_HOURS), 0x05);
        assert_eq!(read(&mut cmos, REG_DAY_OF_MONTH), 0x23);
        assert_eq!(read(&mut cmos, REG_MONTH), 0x11);
        assert_eq!(read(&mut cmos, REG_YEAR), 0x26);
        assert_eq!(read(&mut cmos, REG_CENTURY), 0x20);
        assert_eq!(read(&mut cmos, REG_A) & 0x80, 0, "UIP clear");
        assert_eq!(read(&mut cmos, REG_D), 0x80);
        // The NMI-mask bit does not change the register selected.
        assert_eq!(read(&mut cmos, 0x80 | REG_SECONDS), 0x20);
    }

    #[test]
    fn nvram_keeps_bytes_but_the_clock_ignores_writes() {
        let mut cmos = Cmos::with_clock(|| 0);
        cmos.write(0, &[0x40]);
        cmos.write(1, &[0xab]);
        assert_eq!(read(&mut cmos, 0x40), 0xab);
        cmos.write(0, &[REG_YEAR]);
        cmos.write(1, &[0x99]);
        assert_eq!(read(&mut cmos, REG_YEAR), 0x70);
        let mut wide = [0u8; 2];
        cmos.read(0, &mut wide);
        assert_eq!(wide, [0xff, 0xff]);
        cmos.write(5, &[1]);
    }
}
