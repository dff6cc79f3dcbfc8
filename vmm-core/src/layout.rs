//! The x86_64 guest physical address layout. Every address the VMM writes boot data to is here,
//! so the probe guests and tests can rely on one table.
//!
//! ```text
//! 0x0000_0500  GDT (boot segments)          0x0000_9000  PML4  ┐ identity map of the first
//! 0x0000_0520  IDT (empty)                  0x0000_a000  PDPT  │ 1 GiB, used by the 64-bit
//! 0x0000_1000  free for the guest           0x0000_b000  PD    ┘ Linux boot protocol
//! 0x0000_6000  PVH start_info + memmap      0x0002_0000  kernel command line
//! 0x0000_7000  Linux boot_params            0x0009_fc00  MP table (reserved in E820)
//! 0x0000_8ff0  boot stack (64-bit entry)    0x0010_0000  kernel (ELF p_paddr / bzImage)
//!              initrd: top of low RAM       0xc000_0000  MMIO hole (32-bit devices) .. 4 GiB
//! ```

/// Start of the GDT written for the boot vCPU.
pub const BOOT_GDT_START: u64 = 0x500;
/// Start of the (empty) IDT.
pub const BOOT_IDT_START: u64 = 0x520;
/// PVH `hvm_start_info`; its memory map and module list follow it.
pub const PVH_INFO_START: u64 = 0x6000;
/// Linux `boot_params` ("zero page").
pub const ZERO_PAGE_START: u64 = 0x7000;
/// Initial stack pointer for the 64-bit Linux boot protocol.
pub const BOOT_STACK_POINTER: u64 = 0x8ff0;
/// Level-4 page table of the boot identity map.
pub const PML4_START: u64 = 0x9000;
/// Level-3 page table of the boot identity map.
pub const PDPTE_START: u64 = 0xa000;
/// Level-2 page table (2 MiB pages) of the boot identity map.
pub const PDE_START: u64 = 0xb000;
/// Kernel command line.
pub const CMDLINE_START: u64 = 0x20000;
/// Largest command line accepted, terminating NUL included (Linux's COMMAND_LINE_SIZE).
pub const CMDLINE_MAX_SIZE: usize = 2048;
/// The MP table lives in the last KiB of base memory, where Linux looks for it.
pub const MPTABLE_START: u64 = 0x9fc00;
/// End of conventional base memory (start of the legacy VGA/BIOS hole).
pub const EBDA_END: u64 = 0xa0000;
/// Where high memory starts; kernels are loaded here or above.
pub const HIMEM_START: u64 = 0x10_0000;
/// Start of the 32-bit MMIO hole, below 4 GiB, where no RAM is mapped.
pub const MMIO_HOLE_START: u64 = 0xc000_0000;
/// End of the 32-bit MMIO hole.
pub const MMIO_HOLE_END: u64 = 0x1_0000_0000;
/// Firecracker-compatible boot timer: the guest writes byte 123 here when it has booted.
pub const BOOT_TIMER_ADDR: u64 = MMIO_HOLE_START;
/// First address for virtio-mmio devices (after the boot timer page).
pub const VIRTIO_MMIO_START: u64 = MMIO_HOLE_START + 0x1000;
/// IRQ line of the first virtio-mmio device; later devices take the following lines.
pub const VIRTIO_IRQ_START: u32 = 5;
/// I/O APIC base address (fixed by KVM's in-kernel irqchip).
pub const IOAPIC_ADDR: u32 = 0xfec0_0000;
/// Local APIC base address.
pub const LAPIC_ADDR: u32 = 0xfee0_0000;
/// KVM's TSS needs three pages below 4 GiB that the guest does not use.
pub const KVM_TSS_ADDRESS: usize = 0xfffb_d000;
/// Number of I/O APIC pins of KVM's in-kernel irqchip.
pub const IOAPIC_PINS: u8 = 24;
/// COM1 port base and IRQ.
pub const COM1_PORT: u16 = 0x3f8;
/// COM1 IRQ line.
pub const COM1_IRQ: u32 = 4;
/// CMOS RTC index port; the data port is this + 1.
pub const CMOS_PORT: u16 = 0x70;
/// i8042 controller data port; the command port is this + 4.
pub const I8042_PORT: u16 = 0x60;
/// Most vCPUs a VM may have: bounded by the MP table fitting in its 1 KiB slot.
pub const MAX_VCPUS: u8 = 32;
