//! CPU-level pieces shared by both probes: GDT, identity page tables, boot
//! stack, the 32-bit → 64-bit switch, the AP trampoline, and port/MMIO helpers.
//!
//! Everything the assembly needs is static data built at link time (page
//! tables included), so the boot path executes only a handful of
//! instructions: the PVM emulator runs guest kernel code at ~1 M instr/s.

use core::arch::{asm, global_asm};
use core::sync::atomic::AtomicU32;

/// Physical address the AP trampoline is copied to (4 KiB aligned, below
/// 1 MiB, inside the 0x1000–0x5fff window the VMM leaves untouched).
/// SIPI vector = address >> 12.
pub const TRAMPOLINE_ADDR: usize = 0x3000;

/// Number of APs that reached 64-bit mode (each adds 1 with `lock xadd`).
pub static AP_COUNT: AtomicU32 = AtomicU32::new(0);

// GDT selectors (must match the table below).
const SEL_CODE32: u32 = 0x08;
const SEL_DATA: u32 = 0x10;
const SEL_CODE64: u32 = 0x18;

global_asm!(
    r#"
    // ---------------------------------------------------------------------
    // GDT shared by the PVH entry and the APs: null, flat 32-bit code, flat
    // data, 64-bit code. Writable (.data) because the CPU sets the accessed
    // bit of a descriptor when a selector is loaded.
    // ---------------------------------------------------------------------
    .section .data.probe_gdt, "aw"
    .balign 16
probe_gdt:
    .quad 0
    .quad 0x00cf9a000000ffff        // {code32}: base 0, limit 4 GiB, 32-bit, exec/read
    .quad 0x00cf92000000ffff        // {data}: base 0, limit 4 GiB, read/write
    .quad 0x00af9a000000ffff        // {code64}: L=1 (64-bit), exec/read
probe_gdt_end:
    // Pseudo-descriptor: the 32-bit `lgdt` reads limit + low 4 bytes of the
    // base; a 64-bit `lgdt` would read all 8. The GDT lives below 4 GiB, so
    // one 10-byte descriptor serves both.
    .balign 8
    .global probe_gdt_desc
probe_gdt_desc:
    .word probe_gdt_end - probe_gdt - 1
    .quad probe_gdt

    // ---------------------------------------------------------------------
    // Identity page tables, fully built at link time so no boot instructions
    // are spent filling them: 0–1 GiB write-back (RAM, the probe itself, the
    // boot tables) and 3–4 GiB uncached (0xc0000000 boot timer, IOAPIC,
    // LAPIC at 0xfee00000), all with 2 MiB pages. 1–3 GiB is left unmapped:
    // the probes never touch it.
    // ---------------------------------------------------------------------
    .section .data.pagetables, "aw"
    .balign 4096
    .global probe_pml4
probe_pml4:
    .quad probe_pdpt + 0x3          // present | writable
    .fill 511, 8, 0
probe_pdpt:
    .quad probe_pd_low + 0x3        // 0–1 GiB
    .quad 0
    .quad 0
    .quad probe_pd_high + 0x3       // 3–4 GiB
    .fill 508, 8, 0
probe_pd_low:
    .set probe_pt_entry, 0x83       // present | writable | 2 MiB page
    .rept 512
    .quad probe_pt_entry
    .set probe_pt_entry, probe_pt_entry + 0x200000
    .endr
probe_pd_high:
    .set probe_pt_entry, 0xc0000000 + 0x9b  // ... | PWT | PCD: MMIO is uncached
    .rept 512
    .quad probe_pt_entry
    .set probe_pt_entry, probe_pt_entry + 0x200000
    .endr

    // ---------------------------------------------------------------------
    // BSP stack (the VMM's 0x8ff0 stack is only good for the Linux path and
    // has no guaranteed size).
    // ---------------------------------------------------------------------
    .section .bss.probe_stack, "aw", @nobits
    .balign 16
    .global probe_stack_top
probe_stack:
    .skip 16384
probe_stack_top:

    // ---------------------------------------------------------------------
    // probe_enter_long_mode32: 32-bit protected mode (paging off) → 64-bit.
    // In:  CS = flat 32-bit code segment; %edi = 64-bit continuation address
    //      (below 4 GiB); %ebx is preserved (PVH start_info pointer).
    // Clobbers %eax, %ecx, %edx. Used by the PVH entry and by every AP.
    // ---------------------------------------------------------------------
    .section .text.probe_lm32, "ax"
    .code32
    .global probe_enter_long_mode32
probe_enter_long_mode32:
    // Load our GDT through CS: DS may still be a real-mode segment with a
    // 64 KiB limit (APs) or point into a GDT we know nothing about (PVH).
    lgdtl %cs:probe_gdt_desc
    // Flat data segments from our GDT for the rest of the switch.
    mov ${data}, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    // Long mode needs PAE paging structures: CR4.PAE = 1.
    mov %cr4, %eax
    or $0x20, %eax
    mov %eax, %cr4
    // Point CR3 at the link-time identity map (below 4 GiB, fits in 32 bits).
    mov $probe_pml4, %eax
    mov %eax, %cr3
    // EFER.LME = 1: long mode becomes active once paging is enabled.
    mov $0xc0000080, %ecx
    rdmsr
    or $0x100, %eax
    wrmsr
    // CR0.PG = 1 (and PE, already set): now in compatibility mode. The next
    // fetch goes through the identity map, so execution simply continues.
    mov %cr0, %eax
    or $0x80000001, %eax
    mov %eax, %cr0
    // Far jump into the 64-bit code segment to leave compatibility mode.
    ljmpl ${code64}, $1f
    .code64
1:
    // Upper halves of the GPRs are undefined after the mode switch:
    // zero-extend the continuation address before jumping to it.
    mov %edi, %edi
    jmp *%rdi

    // ---------------------------------------------------------------------
    // AP trampoline: copied to {tramp} (SIPI vector {tramp} >> 12). An AP
    // starts here in real mode with CS = {tramp} >> 4, IP = 0. Only
    // position-independent code or absolute addresses may appear here.
    // ---------------------------------------------------------------------
    .section .text.probe_tramp, "ax"
    .code16
    .global probe_tramp_start
    .global probe_tramp_end
probe_tramp_start:
    cli
    // GDTR via a descriptor inside the trampoline, addressed CS-relative
    // (CS base = {tramp}); `lgdtl` loads the full 32-bit base.
    lgdtl %cs:(probe_tramp_gdt_desc - probe_tramp_start)
    // Continuation after the switch: count this AP in and park it.
    mov $probe_ap_entry64, %edi
    // CR0.PE = 1: protected mode, effective at the far jump below.
    mov %cr0, %eax
    or $1, %eax
    mov %eax, %cr0
    // Far jump with a 32-bit offset straight into the image's shared
    // 32-bit → 64-bit switch (an absolute address, valid after the copy).
    ljmpl ${code32}, $probe_enter_long_mode32
    .balign 8
probe_tramp_gdt_desc:
    .word probe_gdt_end - probe_gdt - 1
    .long probe_gdt
probe_tramp_end:

    // ---------------------------------------------------------------------
    // AP 64-bit continuation (runs in the image, not in the copied page):
    // count in atomically (lock xadd: the PVM emulator has no cmpxchg16b)
    // and park forever with interrupts off. No stack needed.
    // ---------------------------------------------------------------------
    .section .text.probe_ap64, "ax"
    .code64
probe_ap_entry64:
    mov $1, %eax
    lock xaddl %eax, {ap_count}(%rip)
2:
    cli
    hlt
    jmp 2b
"#,
    code32 = const SEL_CODE32,
    data = const SEL_DATA,
    code64 = const SEL_CODE64,
    tramp = const TRAMPOLINE_ADDR,
    ap_count = sym AP_COUNT,
    options(att_syntax),
);

unsafe extern "C" {
    static probe_tramp_start: u8;
    static probe_tramp_end: u8;
}

/// The AP trampoline's bytes as linked into the image.
pub fn trampoline_code() -> &'static [u8] {
    // SAFETY: both symbols are labels in the same .text section defined by the
    // global_asm above, start <= end, and the bytes between them are
    // initialised, immutable code for the whole program lifetime.
    unsafe {
        let start = core::ptr::addr_of!(probe_tramp_start);
        let end = core::ptr::addr_of!(probe_tramp_end);
        core::slice::from_raw_parts(start, end as usize - start as usize)
    }
}

/// Write one byte to an I/O port.
#[inline(always)]
pub fn outb(port: u16, val: u8) {
    // SAFETY: port I/O has no memory effects visible to Rust; the probe owns
    // the whole (virtual) machine and only touches the COM1 and i8042 ports.
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") val, options(nomem, nostack, preserves_flags))
    }
}

/// Read one byte from an I/O port.
#[inline(always)]
pub fn inb(port: u16) -> u8 {
    let val: u8;
    // SAFETY: as for `outb`; reading the UART status register has no side effects.
    unsafe {
        asm!("in al, dx", in("dx") port, out("al") val, options(nomem, nostack, preserves_flags))
    }
    val
}

/// Read the time-stamp counter.
#[inline(always)]
pub fn rdtsc() -> u64 {
    let lo: u32;
    let hi: u32;
    // SAFETY: rdtsc only reads the TSC into edx:eax; no memory is touched.
    unsafe { asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags)) }
    u64::from(hi) << 32 | u64::from(lo)
}

/// Disable interrupts and halt forever (`hlt` is repeated in case an NMI
/// or SMI wakes the CPU).
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: cli/hlt only stop this CPU; nothing is left in an
        // inconsistent state because we never return.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) }
    }
}

/// Reset through the i8042 (the VMM turns this into a clean VM exit); halt
/// if the write is ignored.
pub fn reset() -> ! {
    outb(0x64, 0xfe);
    halt_forever()
}

/// Load an empty IDT and raise #UD: the #UD cannot be delivered (#GP), nor
/// can the #GP (#DF), nor the #DF → triple fault → shutdown exit.
pub fn triple_fault() -> ! {
    // 10-byte IDT pseudo-descriptor: limit 0, base 0.
    let idtr = [0u16; 5];
    // SAFETY: deliberately destroys the CPU state (that is the point); the
    // IDTR operand is a valid 10-byte buffer on the stack.
    unsafe {
        asm!("lidt [{0}]", "ud2", in(reg) idtr.as_ptr(), options(noreturn, nostack));
    }
}

/// Read a 32-bit MMIO register.
#[inline(always)]
pub fn mmio_read32(addr: usize) -> u32 {
    // SAFETY: callers pass addresses of device registers inside the uncached
    // 3–4 GiB identity mapping; a volatile aligned read is the access the
    // device expects.
    unsafe { core::ptr::read_volatile(addr as *const u32) }
}

/// Write a 32-bit MMIO register.
#[inline(always)]
pub fn mmio_write32(addr: usize, val: u32) {
    // SAFETY: see `mmio_read32`.
    unsafe { core::ptr::write_volatile(addr as *mut u32, val) }
}
