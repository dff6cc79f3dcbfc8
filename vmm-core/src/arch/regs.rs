//! Initial register state for the two ways a kernel is entered: the PVH entry (32-bit protected
//! mode, paging off) and the Linux 64-bit boot protocol (long mode on an identity map).

use kvm_bindings::{kvm_fpu, kvm_regs, kvm_sregs};
use kvm_ioctls::VcpuFd;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::arch::gdt::{self, kvm_segment_from_gdt};
use crate::error::{Error, Result};
use crate::layout::{
    BOOT_GDT_START, BOOT_IDT_START, BOOT_STACK_POINTER, PDE_START, PDPTE_START, PML4_START,
    PVH_INFO_START, ZERO_PAGE_START,
};

const X86_CR0_PE: u64 = 1 << 0;
const X86_CR0_ET: u64 = 1 << 4;
const X86_CR0_PG: u64 = 1 << 31;
const X86_CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
/// Bit 1 of RFLAGS is reserved and always set.
const RFLAGS_RESERVED: u64 = 1 << 1;

/// How the boot vCPU enters the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryPoint {
    /// PVH: 32-bit protected mode at `entry`, %ebx = start_info.
    Pvh {
        /// Physical address of the 32-bit PVH entry.
        entry: u64,
    },
    /// Linux 64-bit boot protocol: long mode at `entry`, %rsi = boot_params.
    Linux64 {
        /// Physical address of the 64-bit entry.
        entry: u64,
    },
}

/// FPU state at reset: x87 control word with all exceptions masked, SSE exceptions masked.
pub fn setup_fpu(vcpu: &VcpuFd) -> Result<()> {
    let fpu = kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    };
    vcpu.set_fpu(&fpu).map_err(Error::kvm("KVM_SET_FPU"))
}

/// General-purpose registers for `entry`.
pub fn boot_regs(entry: EntryPoint) -> kvm_regs {
    match entry {
        EntryPoint::Pvh { entry } => kvm_regs {
            rflags: RFLAGS_RESERVED,
            rip: entry,
            rbx: PVH_INFO_START,
            ..Default::default()
        },
        EntryPoint::Linux64 { entry } => kvm_regs {
            rflags: RFLAGS_RESERVED,
            rip: entry,
            rsp: BOOT_STACK_POINTER,
            rbp: BOOT_STACK_POINTER,
            rsi: ZERO_PAGE_START,
            ..Default::default()
        },
    }
}

/// Writes the boot GDT/IDT (and, for the 64-bit protocol, the identity page tables) into guest
/// memory and returns `sregs` updated to match them.
pub fn boot_sregs(
    mem: &GuestMemoryMmap,
    entry: EntryPoint,
    mut sregs: kvm_sregs,
) -> Result<kvm_sregs> {
    let code = match entry {
        EntryPoint::Pvh { .. } => gdt::CODE32,
        EntryPoint::Linux64 { .. } => gdt::CODE64,
    };
    let table = gdt::boot_gdt(code);
    for (i, entry) in table.iter().enumerate() {
        write(mem, BOOT_GDT_START + 8 * i as u64, *entry, "GDT")?;
    }
    write(mem, BOOT_IDT_START, 0u64, "IDT")?;

    sregs.gdt.base = BOOT_GDT_START;
    sregs.gdt.limit = (std::mem::size_of_val(&table) - 1) as u16;
    sregs.idt.base = BOOT_IDT_START;
    sregs.idt.limit = 7;
    let data = kvm_segment_from_gdt(table[2], 2);
    sregs.cs = kvm_segment_from_gdt(table[1], 1);
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = kvm_segment_from_gdt(table[3], 3);
    sregs.cr0 = X86_CR0_PE | X86_CR0_ET;

    match entry {
        EntryPoint::Pvh { .. } => {
            // The PVH ABI: protected mode, paging off, no long mode.
            sregs.cr4 = 0;
            sregs.efer = 0;
        }
        EntryPoint::Linux64 { .. } => {
            write_identity_page_tables(mem)?;
            sregs.cr3 = PML4_START;
            sregs.cr4 |= X86_CR4_PAE;
            sregs.cr0 |= X86_CR0_PG;
            sregs.efer |= EFER_LME | EFER_LMA;
        }
    }
    Ok(sregs)
}

/// Identity-maps the first 1 GiB with 2 MiB pages: what the 64-bit boot protocol promises.
fn write_identity_page_tables(mem: &GuestMemoryMmap) -> Result<()> {
    const PRESENT_RW: u64 = 0x3;
    const HUGE_PAGE: u64 = 0x80;
    write(mem, PML4_START, PDPTE_START | PRESENT_RW, "PML4")?;
    write(mem, PDPTE_START, PDE_START | PRESENT_RW, "PDPT")?;
    for i in 0..512u64 {
        write(
            mem,
            PDE_START + i * 8,
            (i << 21) | HUGE_PAGE | PRESENT_RW,
            "PD",
        )?;
    }
    Ok(())
}

fn write(mem: &GuestMemoryMmap, addr: u64, value: u64, what: &'static str) -> Result<()> {
    mem.write_obj(value, GuestAddress(addr))
        .map_err(|e| Error::BootSetup {
            what,
            reason: e.to_string(),
        })
}

/// Sets FPU, general and special registers of the boot vCPU for `entry`.
pub fn setup_boot_registers(vcpu: &VcpuFd, mem: &GuestMemoryMmap, entry: EntryPoint) -> Result<()> {
    setup_fpu(vcpu)?;
    vcpu.set_regs(&boot_regs(entry))
        .map_err(Error::kvm("KVM_SET_REGS"))?;
    let sregs = vcpu.get_sregs().map_err(Error::kvm("KVM_GET_SREGS"))?;
    let sregs = boot_sregs(mem, entry, sregs)?;
    vcpu.set_sregs(&sregs).map_err(Error::kvm("KVM_SET_SREGS"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::create_guest_memory;

    #[test]
    fn pvh_entry_is_protected_mode_without_paging() {
        let mem = create_guest_memory(16).unwrap();
        let sregs = boot_sregs(
            &mem,
            EntryPoint::Pvh { entry: 0x100_0000 },
            kvm_sregs::default(),
        )
        .unwrap();
        assert_eq!(sregs.cr0 & (X86_CR0_PE | X86_CR0_PG), X86_CR0_PE);
        assert_eq!((sregs.efer, sregs.cr4), (0, 0));
        assert_eq!((sregs.cs.l, sregs.cs.db, sregs.cs.selector), (0, 1, 8));
        let regs = boot_regs(EntryPoint::Pvh { entry: 0x100_0000 });
        assert_eq!(
            (regs.rip, regs.rbx, regs.rflags),
            (0x100_0000, PVH_INFO_START, 2)
        );
        let gdt_code: u64 = mem.read_obj(GuestAddress(BOOT_GDT_START + 8)).unwrap();
        assert_eq!(gdt_code, gdt::gdt_entry(gdt::CODE32, 0, 0xfffff));
    }

    #[test]
    fn linux64_entry_is_long_mode_on_an_identity_map() {
        let mem = create_guest_memory(16).unwrap();
        let sregs = boot_sregs(
            &mem,
            EntryPoint::Linux64 { entry: 0x100_0000 },
            kvm_sregs::default(),
        )
        .unwrap();
        assert_eq!(
            sregs.cr0 & (X86_CR0_PE | X86_CR0_PG),
            X86_CR0_PE | X86_CR0_PG
        );
        assert_eq!(sregs.efer & (EFER_LME | EFER_LMA), EFER_LME | EFER_LMA);
        assert_eq!((sregs.cr3, sregs.cs.l), (PML4_START, 1));
        let pml4: u64 = mem.read_obj(GuestAddress(PML4_START)).unwrap();
        assert_eq!(pml4, PDPTE_START | 3);
        let last_pde: u64 = mem.read_obj(GuestAddress(PDE_START + 511 * 8)).unwrap();
        assert_eq!(last_pde, (511 << 21) | 0x83);
        let regs = boot_regs(EntryPoint::Linux64 { entry: 0x100_0000 });
        assert_eq!((regs.rsi, regs.rsp), (ZERO_PAGE_START, BOOT_STACK_POINTER));
    }
}
