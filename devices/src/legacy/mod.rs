//! Legacy PC devices every boxlite VM has: the COM1 serial console, the CMOS RTC, the i8042
//! controller (for its reset line) and the boot timer.

pub mod boot_timer;
pub mod cmos;
pub mod console;
pub mod i8042;
pub mod serial;

use std::io;

use vmm_sys_util::eventfd::EventFd;

/// An [`EventFd`] as a vm-superio interrupt/reset trigger.
pub struct EventFdTrigger(pub EventFd);

impl vm_superio::Trigger for EventFdTrigger {
    type E = io::Error;

    fn trigger(&self) -> io::Result<()> {
        self.0.write(1)
    }
}
