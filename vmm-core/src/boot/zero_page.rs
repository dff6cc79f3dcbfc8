//! The Linux x86 boot protocol's `boot_params` ("zero page") for 64-bit entry.

use linux_loader::configurator::linux::LinuxBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params, setup_header};
use vm_memory::{GuestAddress, GuestMemoryMmap};

use crate::boot::InitrdPlacement;
use crate::error::{Error, Result};
use crate::layout::{CMDLINE_START, ZERO_PAGE_START};
use crate::memory::MemoryMapEntry;

/// `setup_header.boot_flag` magic.
const KERNEL_BOOT_FLAG_MAGIC: u16 = 0xaa55;
/// `setup_header.header` magic: "HdrS".
const KERNEL_HDR_MAGIC: u32 = 0x5372_6448;
/// `type_of_loader` for a boot loader without an assigned id.
const KERNEL_LOADER_OTHER: u8 = 0xff;
/// Alignment a relocatable kernel must keep (16 MiB, the x86_64 default).
const KERNEL_MIN_ALIGNMENT_BYTES: u32 = 0x100_0000;

/// Builds the zero page. A bzImage's own setup header is kept (it carries the protocol version
/// and load flags the kernel checks); an ELF gets a minimal header.
pub fn boot_params_for(
    header: Option<setup_header>,
    cmdline_len: usize,
    initrd: Option<InitrdPlacement>,
    map: &[MemoryMapEntry],
) -> Result<boot_params> {
    let mut params = boot_params::default();
    if let Some(header) = header {
        params.hdr = header;
    }
    params.hdr.type_of_loader = KERNEL_LOADER_OTHER;
    params.hdr.boot_flag = KERNEL_BOOT_FLAG_MAGIC;
    params.hdr.header = KERNEL_HDR_MAGIC;
    params.hdr.cmd_line_ptr = CMDLINE_START as u32;
    params.hdr.cmdline_size = cmdline_len as u32;
    params.hdr.kernel_alignment = KERNEL_MIN_ALIGNMENT_BYTES;
    if let Some(initrd) = initrd {
        params.hdr.ramdisk_image = initrd.addr as u32;
        params.hdr.ramdisk_size = initrd.size as u32;
    }
    if map.len() > params.e820_table.len() {
        return Err(Error::BootSetup {
            what: "E820 map",
            reason: format!(
                "{} entries exceed the zero page's {}",
                map.len(),
                params.e820_table.len()
            ),
        });
    }
    for (slot, entry) in params.e820_table.iter_mut().zip(map) {
        *slot = boot_e820_entry {
            addr: entry.addr,
            size: entry.size,
            r#type: entry.kind,
        };
    }
    params.e820_entries = map.len() as u8;
    Ok(params)
}

/// Writes the zero page at [`ZERO_PAGE_START`].
pub fn write_boot_params(
    mem: &GuestMemoryMmap,
    header: Option<setup_header>,
    cmdline_len: usize,
    initrd: Option<InitrdPlacement>,
    map: &[MemoryMapEntry],
) -> Result<()> {
    let params = boot_params_for(header, cmdline_len, initrd, map)?;
    LinuxBootConfigurator::write_bootparams(
        &BootParams::new(&params, GuestAddress(ZERO_PAGE_START)),
        mem,
    )
    .map_err(|e| Error::BootSetup {
        what: "Linux boot_params",
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{create_guest_memory, memory_map};
    use vm_memory::Bytes;

    #[test]
    fn zero_page_fields_sit_where_the_kernel_reads_them() {
        let mem = create_guest_memory(64).unwrap();
        let map = memory_map(64 << 20);
        let initrd = InitrdPlacement {
            addr: 0x300_0000,
            size: 0x1234,
        };
        write_boot_params(&mem, None, 17, Some(initrd), &map).unwrap();
        let read_u32 =
            |off: u64| -> u32 { mem.read_obj(GuestAddress(ZERO_PAGE_START + off)).unwrap() };
        // Offsets from Documentation/arch/x86/boot.rst and zero-page.rst.
        assert_eq!(read_u32(0x228), CMDLINE_START as u32); // cmd_line_ptr
        assert_eq!(read_u32(0x238), 17); // cmdline_size
        assert_eq!(read_u32(0x218), 0x300_0000); // ramdisk_image
        assert_eq!(read_u32(0x21c), 0x1234); // ramdisk_size
        assert_eq!(read_u32(0x202), KERNEL_HDR_MAGIC);
        let entries: u8 = mem.read_obj(GuestAddress(ZERO_PAGE_START + 0x1e8)).unwrap();
        assert_eq!(entries as usize, map.len());
        let second_addr: u64 = mem
            .read_obj(GuestAddress(ZERO_PAGE_START + 0x2d0 + 20))
            .unwrap();
        assert_eq!(second_addr, map[1].addr);
    }

    #[test]
    fn a_bzimage_header_is_kept() {
        let header = setup_header {
            version: 0x20f,
            loadflags: 1,
            ..Default::default()
        };
        let params = boot_params_for(Some(header), 0, None, &[]).unwrap();
        let (version, loadflags) = (params.hdr.version, params.hdr.loadflags);
        assert_eq!((version, loadflags), (0x20f, 1));
        let ramdisk = params.hdr.ramdisk_image;
        assert_eq!(ramdisk, 0);
    }

    #[test]
    fn oversized_maps_are_refused() {
        let map = vec![
            MemoryMapEntry {
                addr: 0,
                size: 1,
                kind: 1
            };
            200
        ];
        assert!(boot_params_for(None, 0, None, &map).is_err());
    }
}
