//! The legacy PC devices every VM has, reached the way a vCPU exit reaches them: COM1, the
//! i8042 and the CMOS on the port-I/O bus, the boot timer on the MMIO bus, wired as
//! `vmm-core`'s builder wires them, with the console going to a capped file and to memory.
//!
//! Oracles, besides "never panics":
//! - the bus: a port nobody owns reads as all ones (an undriven ISA bus);
//! - CMOS: the index port reads back what was selected, NVRAM bytes read back what was written,
//!   clock registers are valid BCD (the guest's RTC driver parses them as such);
//! - COM1: the console receives exactly the bytes written to the transmit register while the
//!   divisor latch is closed and loopback is off, in order; a panic line is only reported
//!   when the console really carried the kernel's panic banner;
//! - i8042: the reset line fires once per reset command (0xfe to the command port), never
//!   otherwise;
//! - boot timer: a boot time is recorded exactly when the guest wrote the magic byte;
//! - console file: never larger than its cap, whatever the guest prints.

#![no_main]

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use boxlite_devices::bus::Bus;
use boxlite_devices::legacy::boot_timer::{BootTimer, BOOT_TIMER_LEN, MAGIC_BOOT_COMPLETE};
use boxlite_devices::legacy::cmos::{Cmos, CMOS_PORT_COUNT};
use boxlite_devices::legacy::console::{
    CappedFile, ConsoleSink, ConsoleWriter, PanicWatch, PANIC_BANNER,
};
use boxlite_devices::legacy::i8042::{I8042, I8042_PORT_COUNT};
use boxlite_devices::legacy::serial::{SerialDevice, SERIAL_PORT_COUNT};
use boxlite_devices::legacy::EventFdTrigger;
use boxlite_fuzz::input::run_input;
use boxlite_vmm_core::layout::{BOOT_TIMER_ADDR, CMOS_PORT, COM1_PORT, I8042_PORT};
use libfuzzer_sys::fuzz_target;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};
use vmm_sys_util::tempdir::TempDir;

/// UART register offsets and bits the COM1 model follows (16550).
const UART_LCR: u16 = 3;
const UART_MCR: u16 = 4;
const LCR_DLAB: u8 = 0x80;
const MCR_LOOP: u8 = 0x10;
/// The i8042 command port and its CPU-reset command.
const I8042_COMMAND: u16 = I8042_PORT + 4;
const CMD_RESET_CPU: u8 = 0xfe;
/// CMOS registers that hold the clock (BCD), and the last status register.
const CMOS_CLOCK: [u8; 8] = [0x00, 0x02, 0x04, 0x06, 0x07, 0x08, 0x09, 0x32];
const CMOS_REG_D: u8 = 0x0d;

#[derive(Arbitrary, Debug)]
struct Input {
    /// Extra bytes over the console file's 4 KiB minimum cap.
    cap_extra: u16,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Read {
        port: Port,
        width: Width,
    },
    Write {
        port: Port,
        width: Width,
        value: u32,
    },
    /// The guest prints: each byte goes to the transmit register, as the kernel's console does.
    Print(Vec<u8>),
    BootTimer {
        offset: u16,
        data: Vec<u8>,
    },
}

/// A port near one of the devices (just before, inside, just after) or anywhere.
#[derive(Arbitrary, Debug)]
enum Port {
    Serial(u8),
    I8042(u8),
    Cmos(u8),
    Any(u16),
}

impl Port {
    fn get(&self) -> u16 {
        let near = |base: u16, count: u64, n: u8| base - 1 + u16::from(n) % (count as u16 + 2);
        match *self {
            Port::Serial(n) => near(COM1_PORT, SERIAL_PORT_COUNT, n),
            Port::I8042(n) => near(I8042_PORT, I8042_PORT_COUNT, n),
            Port::Cmos(n) => near(CMOS_PORT, CMOS_PORT_COUNT, n),
            Port::Any(port) => port,
        }
    }
}

/// Port I/O is 1, 2 or 4 bytes wide (KVM's `KVM_EXIT_IO` sizes).
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Width {
    Byte,
    Word,
    Long,
}

impl Width {
    fn len(self) -> usize {
        match self {
            Width::Byte => 1,
            Width::Word => 2,
            Width::Long => 4,
        }
    }
}

/// A console sink the harness can read back.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What the devices must have done, tracked from the guest's accesses alone.
#[derive(Default)]
struct Model {
    cmos_index: u8,
    nvram: Vec<(u8, u8)>,
    lcr: u8,
    mcr: u8,
    console: Vec<u8>,
    resets: u64,
    booted: bool,
}

impl Model {
    fn nvram(&self, index: u8) -> u8 {
        let written = self.nvram.iter().rev().find(|(i, _)| *i == index);
        written.map_or(0, |&(_, value)| value)
    }

    /// A byte-wide write that reached `port`.
    fn write(&mut self, port: u16, byte: u8) {
        match port {
            p if p == COM1_PORT && self.lcr & LCR_DLAB == 0 && self.mcr & MCR_LOOP == 0 => {
                self.console.push(byte)
            }
            p if p == COM1_PORT + UART_LCR => self.lcr = byte,
            p if p == COM1_PORT + UART_MCR => self.mcr = byte,
            I8042_COMMAND if byte == CMD_RESET_CPU => self.resets += 1,
            CMOS_PORT => self.cmos_index = byte & 0x7f,
            p if p == CMOS_PORT + 1 => {
                let index = self.cmos_index;
                if index > CMOS_REG_D && !CMOS_CLOCK.contains(&index) {
                    self.nvram.push((index, byte));
                }
            }
            _ => {}
        }
    }

    /// Checks a byte-wide read of the CMOS.
    fn check_cmos_read(&self, port: u16, byte: u8) {
        if port == CMOS_PORT {
            assert_eq!(byte, self.cmos_index, "the CMOS index does not read back");
        } else if port == CMOS_PORT + 1 {
            let index = self.cmos_index;
            if CMOS_CLOCK.contains(&index) {
                assert!(
                    byte >> 4 <= 9 && byte & 0xf <= 9,
                    "clock register {index:#x} is not BCD: {byte:#x}"
                );
            } else if index > CMOS_REG_D {
                assert_eq!(byte, self.nvram(index), "NVRAM {index:#x} lost its value");
            }
        }
    }
}

fn owned(port: u16) -> bool {
    let within =
        |base: u16, count: u64| (u64::from(base)..u64::from(base) + count).contains(&port.into());
    within(COM1_PORT, SERIAL_PORT_COUNT)
        || within(I8042_PORT, I8042_PORT_COUNT)
        || within(CMOS_PORT, CMOS_PORT_COUNT)
}

fn eventfd() -> EventFd {
    EventFd::new(EFD_NONBLOCK).expect("an eventfd can be created")
}

fn run(input: Input) {
    let dir = TempDir::new_with_prefix("/tmp/boxlite-fuzz-legacy").expect("a temporary folder");
    let console_path = dir.as_path().join("console.log");
    let cap = 4096 + u64::from(input.cap_extra);
    let file = CappedFile::open(&console_path, cap).expect("the console file opens");
    let captured = Captured::default();
    let watch = Arc::new(PanicWatch::default());
    let sinks = vec![
        ConsoleSink::new("file", Box::new(file)),
        ConsoleSink::new("memory", Box::new(captured.clone())),
    ];
    let console = ConsoleWriter::new(sinks, watch.clone());
    let reset = eventfd();
    let reset_trigger = EventFdTrigger(reset.try_clone().expect("dup"));

    let mut pio = Bus::new();
    let serial = SerialDevice::new(EventFdTrigger(eventfd()), console);
    pio.insert(
        COM1_PORT.into(),
        SERIAL_PORT_COUNT,
        Arc::new(Mutex::new(serial)),
    )
    .expect("COM1 fits");
    pio.insert(
        I8042_PORT.into(),
        I8042_PORT_COUNT,
        Arc::new(Mutex::new(I8042::new(reset_trigger))),
    )
    .expect("the i8042 fits");
    pio.insert(
        CMOS_PORT.into(),
        CMOS_PORT_COUNT,
        Arc::new(Mutex::new(Cmos::default())),
    )
    .expect("the CMOS fits");
    let boot_time = Arc::new(Mutex::new(None));
    let timer = BootTimer::new(Instant::now(), Duration::ZERO, boot_time.clone());
    let mut mmio = Bus::new();
    mmio.insert(BOOT_TIMER_ADDR, BOOT_TIMER_LEN, Arc::new(Mutex::new(timer)))
        .expect("the boot timer fits");

    let mut model = Model::default();
    for op in input.ops {
        match op {
            Op::Read { port, width } => {
                let port = port.get();
                let mut data = vec![0u8; width.len()];
                let mapped = pio.read(port.into(), &mut data);
                assert_eq!(mapped, owned(port));
                if !mapped {
                    assert!(
                        data.iter().all(|&b| b == 0xff),
                        "unowned port {port:#x} driven"
                    );
                } else if let [byte] = data[..] {
                    model.check_cmos_read(port, byte);
                }
            }
            Op::Write { port, width, value } => {
                let port = port.get();
                let data = &value.to_le_bytes()[..width.len()];
                pio.write(port.into(), data);
                if let [byte] = *data {
                    model.write(port, byte);
                }
            }
            Op::Print(bytes) => {
                for byte in bytes {
                    pio.write(COM1_PORT.into(), &[byte]);
                    model.write(COM1_PORT, byte);
                }
            }
            Op::BootTimer { offset, data } => {
                mmio.write(BOOT_TIMER_ADDR + u64::from(offset), &data);
                model.booted |= offset == 0 && data == [MAGIC_BOOT_COMPLETE];
            }
        }
    }

    assert_eq!(
        *captured.0.lock().unwrap(),
        model.console,
        "console bytes differ"
    );
    if watch.panic_line().is_some() {
        let banner = PANIC_BANNER.as_bytes();
        assert!(
            model.console.windows(banner.len()).any(|w| w == banner),
            "a panic was reported that the console never carried"
        );
    }
    assert_eq!(reset.read().unwrap_or(0), model.resets, "reset line count");
    assert_eq!(
        boot_time.lock().unwrap().is_some(),
        model.booted,
        "boot time"
    );
    let len = std::fs::metadata(&console_path)
        .expect("the console file exists")
        .len();
    assert!(
        len <= cap,
        "the console file grew to {len} bytes, over its {cap}-byte cap"
    );
}

fuzz_target!(|input: Input| run_input(input, false, run));
