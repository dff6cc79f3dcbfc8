//! Probe entered through the PVH boot ABI: the ELF carries a Xen
//! PHYS32_ENTRY note; the VMM starts the BSP at that address in 32-bit
//! protected mode, paging off, flat CS/DS/ES/SS, %ebx = physical address of
//! `struct hvm_start_info`, no usable stack.

#![no_std]
#![no_main]

use boxlite_probe::{run, Boot};
use core::arch::global_asm;

global_asm!(
    r#"
    // Xen ELF note, type 18 = XEN_ELFNOTE_PHYS32_ENTRY: tells the loader
    // (linux-loader, QEMU) the 32-bit physical entry point. The descriptor
    // is 8 bytes like Linux's (QEMU reads 8, linux-loader reads 4); the
    // section is 4-byte aligned because QEMU steps over the name using the
    // PT_NOTE p_align.
    .section .note.Xen, "a", @note
    .balign 4
    .long 4                     // namesz: "Xen\0"
    .long 8                     // descsz
    .long 18                    // type: XEN_ELFNOTE_PHYS32_ENTRY
    .asciz "Xen"
    .balign 4
    .quad _start
    .balign 4

    .section .text.entry, "ax"
    .code32
    .global _start
_start:
    // No interrupts (there is no IDT) and string ops count upwards.
    cli
    cld
    // Continue at 64-bit `2f`; %ebx (start_info) survives the switch.
    mov $2f, %edi
    jmp probe_enter_long_mode32

    .code64
2:
    // Own stack in .bss; 16-byte aligned before the call as the ABI wants.
    mov $probe_stack_top, %esp
    // Argument: start_info physical address (zero-extended from %ebx,
    // whose upper half is undefined after the mode switch).
    mov %ebx, %edi
    call {main}
    // main never returns; halt just in case.
3:
    cli
    hlt
    jmp 3b
"#,
    main = sym pvh_main,
    options(att_syntax),
);

/// 64-bit Rust entry, called by the stub above.
extern "C" fn pvh_main(start_info: u64) -> ! {
    run(Boot::Pvh(start_info))
}
