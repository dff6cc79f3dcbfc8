//! AP bring-up: INIT + SIPI + SIPI to every enabled processor in the MP
//! table; each AP enters long mode through the shared trampoline, counts
//! itself in `AP_COUNT` and parks.

use crate::arch::{self, mmio_read32, mmio_write32, AP_COUNT, TRAMPOLINE_ADDR};
use crate::mptable::{self, Entry};
use crate::probe;
use core::sync::atomic::Ordering;

/// xAPIC MMIO base and registers.
const LAPIC: usize = 0xfee0_0000;
const LAPIC_ID: usize = 0x20;
const LAPIC_SVR: usize = 0xf0;
const LAPIC_ICR_LO: usize = 0x300;
const LAPIC_ICR_HI: usize = 0x310;
/// ICR: delivery status (send pending).
const ICR_BUSY: u32 = 1 << 12;
/// ICR: INIT, level-triggered, assert (what Linux sends).
const ICR_INIT: u32 = 0xc500;
/// ICR: start-up IPI; the vector is the trampoline's page number.
const ICR_SIPI: u32 = 0x4600 | (TRAMPOLINE_ADDR >> 12) as u32;
/// How long the BSP waits for APs, in TSC ticks: 2^31 is 0.7–2 s for a
/// 1–3 GHz TSC. A time bound rather than an iteration count, because a loop
/// iteration costs ~1 ns natively but ~5 µs under the PVM emulator.
const WAIT_TSC: u64 = 1 << 31;
/// Iteration cap in case the TSC does not advance at all.
const WAIT_SPINS_MAX: u32 = 10_000_000;

pub fn run() {
    let table = match mptable::find() {
        Ok(t) => t,
        Err(e) => {
            probe!("smp error mptable {}", e);
            return;
        }
    };

    let code = arch::trampoline_code();
    // SAFETY: the destination page (0x3000) is guest RAM the VMM contract
    // leaves free for the probe, identity-mapped, not part of the image (so
    // no overlap) and not referenced by any Rust object.
    unsafe {
        core::ptr::copy_nonoverlapping(code.as_ptr(), TRAMPOLINE_ADDR as *mut u8, code.len());
    }
    // Fresh RAM is zero, but do not depend on it.
    AP_COUNT.store(0, Ordering::SeqCst);

    // Software-enable the local APIC (SVR bit 8, spurious vector 0xff) so
    // IPIs are sent regardless of how the VMM left it.
    mmio_write32(LAPIC + LAPIC_SVR, mmio_read32(LAPIC + LAPIC_SVR) | 0x1ff);
    let me = mmio_read32(LAPIC + LAPIC_ID) >> 24;

    let mut expected = 0;
    for entry in table.entries() {
        if let Entry::Processor {
            apic_id,
            enabled: true,
        } = entry
        {
            if u32::from(apic_id) != me {
                expected += 1;
                start_ap(apic_id);
            }
        }
    }

    let start = arch::rdtsc();
    let mut spins = 0;
    while AP_COUNT.load(Ordering::Acquire) < expected
        && arch::rdtsc().wrapping_sub(start) < WAIT_TSC
        && spins < WAIT_SPINS_MAX
    {
        spins += 1;
    }
    probe!("smp cpus_up={}", 1 + AP_COUNT.load(Ordering::Acquire));
}

/// INIT, then two start-up IPIs (the second is ignored by a CPU that
/// already started). KVM's in-kernel LAPIC and QEMU queue INIT before SIPI,
/// so the spec's 10 ms / 200 µs waits shrink to short spins here.
fn start_ap(apic_id: u8) {
    send_ipi(apic_id, ICR_INIT);
    delay(64);
    send_ipi(apic_id, ICR_SIPI);
    delay(16);
    send_ipi(apic_id, ICR_SIPI);
}

fn send_ipi(apic_id: u8, icr_lo: u32) {
    // Destination first: writing ICR low is what sends the IPI.
    mmio_write32(LAPIC + LAPIC_ICR_HI, u32::from(apic_id) << 24);
    mmio_write32(LAPIC + LAPIC_ICR_LO, icr_lo);
    // Bounded wait for the send to complete (KVM reports idle at once).
    let mut spins = 0;
    while mmio_read32(LAPIC + LAPIC_ICR_LO) & ICR_BUSY != 0 && spins < 1000 {
        spins += 1;
    }
}

/// Busy-wait `n` iterations (the black_box keeps the loop from being
/// optimised out; no `pause`, whose emulation under PVM is unverified).
fn delay(n: u32) {
    for i in 0..n {
        core::hint::black_box(i);
    }
}
