//! The i8042 keyboard controller, present for its CPU reset line: a guest writing 0xfe to the
//! command port (Linux `reboot=k`) asks for a reset, which ends the VM cleanly.

use vm_superio::I8042Device;

use crate::bus::BusDevice;
use crate::legacy::EventFdTrigger;

/// Ports 0x60 (data) through 0x64 (command/status).
pub const I8042_PORT_COUNT: u64 = 5;

/// The controller on the port-I/O bus.
pub struct I8042 {
    device: I8042Device<EventFdTrigger>,
}

impl I8042 {
    /// A controller that signals `reset` when the guest pulses the reset line.
    pub fn new(reset: EventFdTrigger) -> I8042 {
        I8042 {
            device: I8042Device::new(reset),
        }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        match (u8::try_from(offset), data) {
            (Ok(offset), [byte]) => *byte = self.device.read(offset),
            (_, data) => data.fill(0xff),
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let (Ok(offset), [byte]) = (u8::try_from(offset), data) {
            if let Err(e) = self.device.write(offset, *byte) {
                log::warn!("i8042: cannot signal the reset request: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

    #[test]
    fn reset_command_signals_the_event() {
        let reset = EventFd::new(EFD_NONBLOCK).unwrap();
        let mut i8042 = I8042::new(EventFdTrigger(reset.try_clone().unwrap()));
        let mut status = [0u8];
        i8042.read(4, &mut status);
        assert_eq!(
            status[0] & 0x02,
            0,
            "input buffer empty: Linux may send the command"
        );
        assert!(reset.read().is_err(), "nothing signalled yet");
        i8042.write(4, &[0xfe]);
        assert_eq!(reset.read().unwrap(), 1);
    }

    #[test]
    fn other_commands_and_wide_accesses_do_not_reset() {
        let reset = EventFd::new(EFD_NONBLOCK).unwrap();
        let mut i8042 = I8042::new(EventFdTrigger(reset.try_clone().unwrap()));
        i8042.write(4, &[0x20]);
        i8042.write(4, &[0xfe, 0xfe]);
        let mut wide = [0u8; 2];
        i8042.read(0, &mut wide);
        assert_eq!(wide, [0xff, 0xff]);
        assert!(reset.read().is_err());
    }
}
