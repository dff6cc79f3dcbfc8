//! COM1: a 16550 UART (vm-superio) whose output is the guest console.

use vm_superio::serial::NoEvents;
use vm_superio::Serial;

use crate::bus::BusDevice;
use crate::legacy::console::ConsoleWriter;
use crate::legacy::EventFdTrigger;

/// The UART occupies eight consecutive ports.
pub const SERIAL_PORT_COUNT: u64 = 8;

/// COM1 on the port-I/O bus; its interrupt is an irqfd on IRQ 4.
pub struct SerialDevice {
    uart: Serial<EventFdTrigger, NoEvents, ConsoleWriter>,
}

impl SerialDevice {
    /// A UART raising `interrupt` and writing to `console`.
    pub fn new(interrupt: EventFdTrigger, console: ConsoleWriter) -> SerialDevice {
        SerialDevice {
            uart: Serial::new(interrupt, console),
        }
    }
}

impl BusDevice for SerialDevice {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        // The UART has byte-wide registers; wider or out-of-range accesses read as all ones.
        match (u8::try_from(offset), data) {
            (Ok(offset), [byte]) if u64::from(offset) < SERIAL_PORT_COUNT => {
                *byte = self.uart.read(offset)
            }
            (_, data) => data.fill(0xff),
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let (Ok(offset), [byte]) = (u8::try_from(offset), data) {
            if u64::from(offset) < SERIAL_PORT_COUNT {
                if let Err(e) = self.uart.write(offset, *byte) {
                    log::warn!("serial: {e}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::legacy::console::{ConsoleSink, PanicWatch};
    use std::io::Write;
    use std::sync::{Arc, Mutex};
    use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn bytes_written_to_thr_reach_the_console_and_raise_the_irq() {
        let out = Shared::default();
        let irq = EventFd::new(EFD_NONBLOCK).unwrap();
        let console = ConsoleWriter::new(
            vec![ConsoleSink::new("test", Box::new(out.clone()))],
            Arc::new(PanicWatch::default()),
        );
        let mut serial = SerialDevice::new(EventFdTrigger(irq.try_clone().unwrap()), console);
        serial.write(1, &[0x02]); // IER: THR-empty interrupt
        for b in b"ok\n" {
            serial.write(0, &[*b]);
        }
        assert_eq!(&*out.0.lock().unwrap(), b"ok\n");
        assert!(irq.read().unwrap() >= 1);
        let mut lsr = [0u8];
        serial.read(5, &mut lsr);
        assert_ne!(lsr[0] & 0x20, 0, "transmitter empty");
    }

    #[test]
    fn odd_accesses_are_ignored() {
        let console = ConsoleWriter::new(vec![], Arc::new(PanicWatch::default()));
        let mut serial =
            SerialDevice::new(EventFdTrigger(EventFd::new(EFD_NONBLOCK).unwrap()), console);
        let mut wide = [0u8; 4];
        serial.read(0, &mut wide);
        assert_eq!(wide, [0xff; 4]);
        serial.write(u64::MAX, &[1]);
        serial.write(0, &[1, 2]);
        let mut byte = [0u8];
        serial.read(9, &mut byte);
        assert_eq!(byte, [0xff]);
    }
}
