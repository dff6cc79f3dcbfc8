//! Firecracker-compatible boot timer: a guest that writes the byte 123 at `BOOT_TIMER_ADDR`
//! (the VMM's guest layout places it) when it has booted gets the time since the VM started being built logged, in wall-clock and
//! VMM CPU microseconds. Guests and benchmarks built for Firecracker work unchanged.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::bus::BusDevice;

/// The byte that marks "booted".
pub const MAGIC_BOOT_COMPLETE: u8 = 123;
/// The MMIO window the device answers in.
pub const BOOT_TIMER_LEN: u64 = 0x1000;

/// What the guest reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootTime {
    /// Wall-clock time from the start of VM build to the guest's write.
    pub wall: Duration,
    /// CPU time the VMM process used in that interval.
    pub cpu: Duration,
}

/// The boot timer device.
pub struct BootTimer {
    start: Instant,
    start_cpu: Duration,
    reported: Arc<Mutex<Option<BootTime>>>,
}

/// CPU time this process has used so far.
pub fn process_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own and has no other effect.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    // The kernel keeps tv_nsec below 10^9 and the CPU time non-negative.
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

impl BootTimer {
    /// A timer measuring from `start` (the moment VM building began) with the CPU time used at
    /// that moment. The first report is stored in `reported`.
    pub fn new(
        start: Instant,
        start_cpu: Duration,
        reported: Arc<Mutex<Option<BootTime>>>,
    ) -> BootTimer {
        BootTimer {
            start,
            start_cpu,
            reported,
        }
    }
}

impl BusDevice for BootTimer {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset != 0 || data != [MAGIC_BOOT_COMPLETE] {
            return;
        }
        let time = BootTime {
            wall: self.start.elapsed(),
            cpu: process_cpu_time().saturating_sub(self.start_cpu),
        };
        log::info!(
            "boot-timer: guest boot time = {} us ({} ms), {} CPU us ({} CPU ms)",
            time.wall.as_micros(),
            time.wall.as_millis(),
            time.cpu.as_micros(),
            time.cpu.as_millis()
        );
        boxlite_proto::sync::lock(&self.reported).get_or_insert(time);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_magic_byte_at_offset_zero_counts() {
        let reported = Arc::new(Mutex::new(None));
        let mut timer = BootTimer::new(Instant::now(), process_cpu_time(), reported.clone());
        timer.write(0, &[1]);
        timer.write(4, &[MAGIC_BOOT_COMPLETE]);
        timer.write(0, &[MAGIC_BOOT_COMPLETE, 0]);
        assert!(reported.lock().unwrap().is_none());
        timer.write(0, &[MAGIC_BOOT_COMPLETE]);
        let first = reported.lock().unwrap().unwrap();
        timer.write(0, &[MAGIC_BOOT_COMPLETE]);
        assert_eq!(
            reported.lock().unwrap().unwrap(),
            first,
            "first report kept"
        );
    }
}
