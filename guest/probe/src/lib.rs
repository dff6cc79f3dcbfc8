//! Probe guests for the boxlite VMM: bare-metal x86_64 programs that check
//! what the VMM handed them at boot and report on COM1 with `PROBE: ` lines,
//! then reset through the i8042.
//!
//! The two binaries (`probe-pvh`, `probe-linux64`) differ only in their entry
//! glue; everything else, including the 32-bit → 64-bit switch used by the
//! APs, lives here. Scenario is chosen with `probe=<name>` on the command line.

#![no_std]

pub mod arch;
mod blk_scenario;
pub mod boot;
pub mod deadline;
mod idle_scenario;
pub mod irq;
pub mod mptable;
pub mod phys;
pub mod serial;
pub mod smp;
pub mod virtio;
mod vsock_scenario;

pub use boot::Boot;
use serial::write_bytes;

/// Physical address of the Firecracker-style boot timer device.
const BOOT_TIMER: usize = 0xc000_0000;
/// Magic byte the boot timer expects.
const BOOT_TIMER_MAGIC: u8 = 123;

/// Run the scenario named on the command line, then reset (or halt / fault,
/// as the scenario demands). Called by both entry stubs on the boot stack.
pub fn run(boot: Boot) -> ! {
    probe!("start {}", boot.name());
    if let Err(e) = boot.validate() {
        probe!("error {}", e);
        finish();
    }
    let cmdline = match boot.cmdline() {
        Ok(c) => c,
        Err(e) => {
            probe!("error {}", e);
            finish();
        }
    };

    match scenario(cmdline) {
        Some(b"hello") => {
            write_bytes(b"PROBE: cmdline=");
            write_bytes(cmdline);
            write_bytes(b"\n");
        }
        Some(b"memmap") => {
            let res = boot.memmap(|r| probe!("e820 {:#x} {:#x} {}", r.start, r.end, r.kind));
            if let Err(e) = res {
                probe!("memmap error {}", e);
            }
        }
        Some(b"mptable") => match mptable::find() {
            Ok(t) => match t.ioapic() {
                Some(io) => probe!("mptable cpus={} ioapic={:#x}", t.cpus(), io),
                None => probe!("mptable error no ioapic entry"),
            },
            Err(e) => probe!("mptable error {}", e),
        },
        Some(b"smp") => smp::run(),
        Some(b"blk") => blk_scenario::run(cmdline),
        Some(b"vsock") => vsock_scenario::run(cmdline),
        Some(b"idle-ready") => idle_scenario::run(cmdline),
        Some(b"boottimer") => {
            // SAFETY: 0xc0000000 is identity-mapped uncached by the probe's
            // page tables; it is the VMM's boot-timer MMIO register, not RAM
            // any Rust object lives in.
            unsafe { core::ptr::write_volatile(BOOT_TIMER as *mut u8, BOOT_TIMER_MAGIC) };
            probe!("boot timer written");
        }
        Some(b"panic") => {
            // Same text as a Linux panic, so the host's panic detection fires.
            write_bytes(b"Kernel panic - not syncing: probe requested panic\n");
            arch::reset();
        }
        Some(b"triplefault") => {
            probe!("triple faulting");
            arch::triple_fault();
        }
        Some(b"hang") => {
            probe!("hanging");
            arch::halt_forever();
        }
        Some(other) => {
            write_bytes(b"PROBE: unknown scenario ");
            write_bytes(other);
            write_bytes(b"\n");
        }
        None => probe!("unknown scenario (none: no probe= on the command line)"),
    }
    finish()
}

/// The value of the first `probe=` word on the command line.
fn scenario(cmdline: &[u8]) -> Option<&[u8]> {
    cmdline
        .split(|&b| b == b' ')
        .find_map(|word| word.strip_prefix(b"probe="))
}

fn finish() -> ! {
    probe!("done");
    arch::reset()
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    match info.location() {
        Some(l) => probe!(
            "rust panic at {}:{}: {}",
            l.file(),
            l.line(),
            info.message()
        ),
        None => probe!("rust panic: {}", info.message()),
    }
    arch::reset()
}
