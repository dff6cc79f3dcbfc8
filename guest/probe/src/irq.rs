//! Just enough interrupt plumbing to take one device interrupt for real:
//! an IDT with three vectors, one I/O APIC redirection entry, and the
//! local APIC (EOI, plus a periodic timer so a `hlt` always wakes up).
//!
//! Only vectors [`DEVICE_VECTOR`], [`TIMER_VECTOR`] and [`SPURIOUS_VECTOR`]
//! have gates; every other vector (exceptions included) still ends in a
//! triple fault, as without an IDT.

use core::arch::{asm, global_asm};
use core::sync::atomic::{AtomicU32, Ordering};

use crate::arch::{mmio_read32, mmio_write32, outb};
use crate::deadline::Deadline;
use crate::virtio::virtq::Vol;

/// The device interrupt; the handler counts it in [`DEVICE_IRQS`].
pub const DEVICE_VECTOR: u8 = 0x30;
/// The watchdog tick of the local APIC timer.
const TIMER_VECTOR: u8 = 0x31;
/// Where the local APIC sends spurious interrupts.
const SPURIOUS_VECTOR: u8 = 0x3f;
const IDT_ENTRIES: usize = 0x40;

const LAPIC: usize = 0xfee0_0000;
const LAPIC_ID: usize = 0x20;
const LAPIC_TPR: usize = 0x80;
const LAPIC_EOI: usize = 0xb0;
const LAPIC_SVR: usize = 0xf0;
const LAPIC_LVT_TIMER: usize = 0x320;
const LAPIC_LVT_LINT0: usize = 0x350;
const LAPIC_TIMER_INIT: usize = 0x380;
const LAPIC_TIMER_DIV: usize = 0x3e0;
/// LVT / redirection entry mask bit.
const MASKED: u32 = 1 << 16;
const LVT_PERIODIC: u32 = 1 << 17;
/// Timer divide configuration 0b0011: bus clock / 16.
const DIV_16: u32 = 0x3;
/// Ticks per watchdog period: ~67 ms with KVM's 1 GHz APIC bus.
const WATCHDOG_COUNT: u32 = 1 << 22;

/// The VMM's I/O APIC (the MP table names it; see the mptable scenario).
const IOAPIC: usize = 0xfec0_0000;
const IOAPIC_SEL: usize = 0x00;
const IOAPIC_WIN: usize = 0x10;
const IOAPIC_PINS: u32 = 24;

/// Device interrupts taken so far.
pub static DEVICE_IRQS: AtomicU32 = AtomicU32::new(0);

global_asm!(
    r#"
    .section .text.probe_irq, "ax"
    .code64
    // Interrupt gates enter with IF=0 on the 16-byte aligned stack of the
    // interrupted `hlt`; each stub preserves every register it touches.
    .global probe_irq_device
probe_irq_device:
    // One CPU, interrupts off: a plain increment is atomic enough.
    incl {count}(%rip)
    // Fall through to the EOI.
    .global probe_irq_timer
probe_irq_timer:
    push %rax
    // 64-bit absolute address: a 32-bit displacement would sign-extend.
    mov ${eoi}, %eax
    movl $0, (%rax)
    pop %rax
    iretq
    // Spurious interrupts are not acknowledged with an EOI.
    .global probe_irq_spurious
probe_irq_spurious:
    iretq
"#,
    count = sym DEVICE_IRQS,
    eoi = const LAPIC + LAPIC_EOI,
    options(att_syntax),
);

// The stubs above. Never called from Rust (they end in `iretq`): only their
// addresses are taken, for the IDT gates.
unsafe extern "C" {
    fn probe_irq_device();
    fn probe_irq_timer();
    fn probe_irq_spurious();
}

/// The IDT: two u64 halves per 16-byte gate. The CPU reads it, so it is
/// written through volatile cells like the virtqueues.
#[repr(C, align(16))]
struct Idt([Vol<u64>; 2 * IDT_ENTRIES]);

static IDT: Idt = Idt([const { Vol::new(0) }; 2 * IDT_ENTRIES]);

/// Load the IDT and get the local APIC ready: enabled, priority 0, the
/// legacy PIC path (LINT0 ExtINT) masked so only I/O APIC interrupts arrive.
pub fn init() {
    let cs: u16;
    // SAFETY: reading CS has no side effects.
    unsafe { asm!("mov {0:x}, cs", out(reg) cs, options(nomem, nostack, preserves_flags)) };
    for (vector, handler) in [
        (DEVICE_VECTOR, probe_irq_device as *const () as u64),
        (TIMER_VECTOR, probe_irq_timer as *const () as u64),
        (SPURIOUS_VECTOR, probe_irq_spurious as *const () as u64),
    ] {
        set_gate(vector, handler, cs);
    }
    // lidt operand: u16 limit, then the u64 base (as 4 u16s, unaligned).
    let base = IDT.0.as_ptr() as u64;
    let limit = (core::mem::size_of::<Idt>() - 1) as u16;
    let idtr = [
        limit,
        base as u16,
        (base >> 16) as u16,
        (base >> 32) as u16,
        (base >> 48) as u16,
    ];
    // SAFETY: the IDT is a static that lives for the whole program; its
    // gates point at the handlers above; interrupts stay disabled (IF=0)
    // until `wait_device_irq`.
    unsafe {
        asm!("lidt [{0}]", in(reg) idtr.as_ptr(), options(readonly, nostack, preserves_flags))
    };

    // Mask both 8259 PICs (OCW1) in case a VMM routes them somewhere.
    outb(0x21, 0xff);
    outb(0xa1, 0xff);
    lapic_write(LAPIC_LVT_LINT0, lapic_read(LAPIC_LVT_LINT0) | MASKED);
    lapic_write(LAPIC_TPR, 0);
    // SVR: software enable (bit 8) and the spurious vector.
    lapic_write(LAPIC_SVR, 0x100 | u32::from(SPURIOUS_VECTOR));
}

/// A present 64-bit interrupt gate (type 0xe, DPL 0) for `vector`.
fn set_gate(vector: u8, handler: u64, cs: u16) {
    let low =
        (handler & 0xffff) | u64::from(cs) << 16 | 0x8e << 40 | ((handler >> 16) & 0xffff) << 48;
    let i = 2 * usize::from(vector);
    IDT.0[i].set(low);
    IDT.0[i + 1].set(handler >> 32);
}

/// Route I/O APIC pin `pin` (edge, active high) to [`DEVICE_VECTOR`] on
/// this CPU, or mask it again.
pub fn route(pin: u32, enable: bool) -> Result<(), &'static str> {
    if pin >= IOAPIC_PINS {
        return Err("interrupt line beyond the I/O APIC's 24 pins");
    }
    let apic_id = lapic_read(LAPIC_ID) >> 24;
    let low = if enable {
        u32::from(DEVICE_VECTOR)
    } else {
        MASKED
    };
    // Destination (high half) first, so the entry is never live with a
    // stale one.
    ioapic_write(0x11 + 2 * pin, apic_id << 24);
    ioapic_write(0x10 + 2 * pin, low);
    Ok(())
}

/// Halt until a device interrupt arrives (true) or `deadline` expires
/// (false). The periodic APIC timer wakes the `hlt` regularly so the
/// deadline is checked even if the device stays silent.
pub fn wait_device_irq(before: u32, deadline: &mut Deadline) -> bool {
    lapic_write(LAPIC_TIMER_DIV, DIV_16);
    lapic_write(LAPIC_LVT_TIMER, LVT_PERIODIC | u32::from(TIMER_VECTOR));
    lapic_write(LAPIC_TIMER_INIT, WATCHDOG_COUNT);
    let mut seen = false;
    loop {
        if DEVICE_IRQS.load(Ordering::SeqCst) != before {
            seen = true;
            break;
        }
        if deadline.expired() {
            break;
        }
        // `sti` takes effect after the next instruction, so an interrupt
        // already pending is taken in the `hlt` and cannot be missed
        // between the check above and the halt.
        // SAFETY: the IDT and APIC are set up (see `init`); the handlers
        // preserve all registers; memory may change (no `nomem`).
        unsafe { asm!("sti", "hlt", "cli", options(nostack)) };
    }
    lapic_write(LAPIC_LVT_TIMER, MASKED);
    lapic_write(LAPIC_TIMER_INIT, 0);
    seen
}

fn lapic_read(reg: usize) -> u32 {
    mmio_read32(LAPIC + reg)
}

fn lapic_write(reg: usize, value: u32) {
    mmio_write32(LAPIC + reg, value)
}

fn ioapic_write(index: u32, value: u32) {
    mmio_write32(IOAPIC + IOAPIC_SEL, index);
    mmio_write32(IOAPIC + IOAPIC_WIN, value);
}
