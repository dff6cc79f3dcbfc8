//! Probe entered through the Linux 64-bit boot protocol: long mode already
//! on, paging with the VMM's identity map of the first 1 GiB, %rsi =
//! physical address of `struct boot_params`. No PVH note, so the VMM uses
//! the ELF entry point.

#![no_std]
#![no_main]

use boxlite_probe::{run, Boot};
use core::arch::global_asm;

global_asm!(
    r#"
    .section .text.entry, "ax"
    .code64
    .global _start
_start:
    // No interrupts (we install no IDT) and string ops count upwards.
    cli
    cld
    // Own stack in .bss (the VMM's 0x8ff0 stack is one small page).
    mov $probe_stack_top, %esp
    // Switch to the probe's own page tables: the VMM's map covers only
    // 1 GiB, the probe also needs 0xc0000000 (boot timer) and 0xfee00000
    // (LAPIC) uncached. Both maps identity-map this code, so the fetch
    // after the CR3 load is unaffected. The VMM's GDT and CS stay in use.
    mov $probe_pml4, %eax
    mov %rax, %cr3
    // Argument: boot_params physical address.
    mov %rsi, %rdi
    call {main}
    // main never returns; halt just in case.
2:
    cli
    hlt
    jmp 2b
"#,
    main = sym linux64_main,
    options(att_syntax),
);

/// 64-bit Rust entry, called by the stub above.
extern "C" fn linux64_main(boot_params: u64) -> ! {
    run(Boot::Linux64(boot_params))
}
