//! Bounded waits: a TSC budget plus an iteration cap, so a device that never
//! answers turns into a reported timeout instead of a hung probe.
//!
//! Time rather than iterations is the main bound because a loop iteration
//! costs ~1 ns natively but ~5 µs under the PVM emulator; the cap only
//! matters if the TSC does not advance at all.

use crate::arch::rdtsc;

/// ~1.7 s at 2.5 GHz: one virtio request or packet.
pub const SHORT: u64 = 1 << 32;
/// ~14 s at 2.5 GHz: waiting on a host program that has to act first.
pub const LONG: u64 = 1 << 35;

pub struct Deadline {
    start: u64,
    ticks: u64,
    spins: u64,
}

impl Deadline {
    /// A deadline `ticks` TSC ticks from now.
    pub fn after(ticks: u64) -> Deadline {
        Deadline {
            start: rdtsc(),
            ticks,
            spins: 0,
        }
    }

    /// Counts one wait iteration; true once the budget is spent.
    pub fn expired(&mut self) -> bool {
        self.spins += 1;
        // One spin per 16 ticks: rdtsc alone takes longer natively, and a
        // spin costs thousands of ticks under the emulator, so the TSC
        // bound ends the wait unless the TSC is stuck.
        rdtsc().wrapping_sub(self.start) >= self.ticks || self.spins >= self.ticks >> 4
    }
}
