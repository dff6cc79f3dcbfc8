//! Polled COM1 output (16550-compatible transmit path only).
//!
//! No UART initialisation: the VMM's emulated UART (and QEMU's) transmit
//! without a configured baud rate, and every port access costs ~3.4 µs under
//! the PVM emulator.

use crate::arch::{inb, outb};
use core::fmt;

const COM1: u16 = 0x3f8;
const LSR: u16 = COM1 + 5;
/// Line status: transmit holding register empty.
const LSR_THRE: u8 = 0x20;

/// Write raw bytes to COM1.
pub fn write_bytes(bytes: &[u8]) {
    for &b in bytes {
        // Bounded wait for THRE: a UART that never reports "empty" must not
        // hang the probe; dropping into the write is the best we can do.
        let mut spins = 0u32;
        while inb(LSR) & LSR_THRE == 0 && spins < 10_000 {
            spins += 1;
        }
        outb(COM1, b);
    }
}

/// `core::fmt` sink for COM1.
pub struct Com1;

impl fmt::Write for Com1 {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_bytes(s.as_bytes());
        Ok(())
    }
}

/// Print `PROBE: <args>\n`.
pub fn probe_line(args: fmt::Arguments) {
    write_bytes(b"PROBE: ");
    // Com1 never fails, so the fmt::Result carries no information.
    let _ = fmt::write(&mut Com1, args);
    write_bytes(b"\n");
}

/// `probe!("...", args)` prints one `PROBE: ` line on COM1.
#[macro_export]
macro_rules! probe {
    ($($arg:tt)*) => {
        $crate::serial::probe_line(format_args!($($arg)*))
    };
}
