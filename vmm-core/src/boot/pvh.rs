//! The PVH boot ABI's `hvm_start_info`: command line, memory map and the initrd as module 0.

use linux_loader::configurator::pvh::PvhBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::elf::start_info::{
    hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info,
};
use vm_memory::{GuestAddress, GuestMemoryMmap};

use crate::boot::InitrdPlacement;
use crate::error::{Error, Result};
use crate::layout::{CMDLINE_START, PVH_INFO_START};
use crate::memory::MemoryMapEntry;

/// `hvm_start_info.magic`: "xEn3" with the top bit set.
const XEN_HVM_START_MAGIC_VALUE: u32 = 0x336e_c578;
/// Version 1 of the structure carries the memory map fields.
const START_INFO_VERSION: u32 = 1;

/// Guest addresses of the memory map and the module list that follow `start_info`.
fn table_addresses(memmap_entries: usize) -> (u64, u64) {
    let memmap = PVH_INFO_START + std::mem::size_of::<hvm_start_info>() as u64;
    let modlist = memmap + (memmap_entries * std::mem::size_of::<hvm_memmap_table_entry>()) as u64;
    (memmap, modlist)
}

/// The `hvm_start_info` for `map` and an optional initrd.
pub fn start_info(initrd: Option<InitrdPlacement>, map: &[MemoryMapEntry]) -> hvm_start_info {
    let (memmap, modlist) = table_addresses(map.len());
    hvm_start_info {
        magic: XEN_HVM_START_MAGIC_VALUE,
        version: START_INFO_VERSION,
        cmdline_paddr: CMDLINE_START,
        memmap_paddr: memmap,
        memmap_entries: map.len() as u32,
        nr_modules: u32::from(initrd.is_some()),
        modlist_paddr: if initrd.is_some() { modlist } else { 0 },
        ..Default::default()
    }
}

/// Writes `start_info`, the memory map and the module list at [`PVH_INFO_START`].
pub fn write_start_info(
    mem: &GuestMemoryMmap,
    initrd: Option<InitrdPlacement>,
    map: &[MemoryMapEntry],
) -> Result<()> {
    let (memmap_addr, modlist_addr) = table_addresses(map.len());
    let memmap: Vec<hvm_memmap_table_entry> = map
        .iter()
        .map(|e| hvm_memmap_table_entry {
            addr: e.addr,
            size: e.size,
            type_: e.kind,
            reserved: 0,
        })
        .collect();
    let mut params = BootParams::new(&start_info(initrd, map), GuestAddress(PVH_INFO_START));
    params.set_sections(&memmap, GuestAddress(memmap_addr));
    if let Some(initrd) = initrd {
        let module = hvm_modlist_entry {
            paddr: initrd.addr,
            size: initrd.size,
            ..Default::default()
        };
        params.set_modules(&[module], GuestAddress(modlist_addr));
    }
    PvhBootConfigurator::write_bootparams(&params, mem).map_err(|e| Error::BootSetup {
        what: "PVH start_info",
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{create_guest_memory, memory_map};
    use vm_memory::Bytes;

    #[test]
    fn start_info_points_at_cmdline_memmap_and_initrd() {
        let mem = create_guest_memory(64).unwrap();
        let map = memory_map(64 << 20);
        let initrd = InitrdPlacement {
            addr: 0x300_0000,
            size: 0x1234,
        };
        write_start_info(&mem, Some(initrd), &map).unwrap();

        let info: hvm_start_info = mem.read_obj(GuestAddress(PVH_INFO_START)).unwrap();
        assert_eq!(info.magic, XEN_HVM_START_MAGIC_VALUE);
        assert_eq!(info.cmdline_paddr, CMDLINE_START);
        assert_eq!(info.memmap_entries as usize, map.len());
        for (i, expected) in map.iter().enumerate() {
            let at = info.memmap_paddr + (i * std::mem::size_of::<hvm_memmap_table_entry>()) as u64;
            let entry: hvm_memmap_table_entry = mem.read_obj(GuestAddress(at)).unwrap();
            assert_eq!(
                (entry.addr, entry.size, entry.type_),
                (expected.addr, expected.size, expected.kind)
            );
        }
        assert_eq!(info.nr_modules, 1);
        let module: hvm_modlist_entry = mem.read_obj(GuestAddress(info.modlist_paddr)).unwrap();
        assert_eq!((module.paddr, module.size), (0x300_0000, 0x1234));
        // Everything stays in the page reserved for it.
        assert!(info.modlist_paddr + 32 <= PVH_INFO_START + 0x1000);
    }

    #[test]
    fn no_initrd_means_no_modules() {
        let info = start_info(None, &memory_map(64 << 20));
        assert_eq!((info.nr_modules, info.modlist_paddr), (0, 0));
    }
}
